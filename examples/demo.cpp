// xxnet demo, in two parts, all in one process on 127.0.0.1.
//
// Part 1 (the C API): two nodes (contexts A and B) exchanging messages. Both listen. A sends B a few small messages on lane 0 (each with its own
// msg_id) and one 100 KiB message on the bulk lane 1 (it travels in parts).
// B answers each small message with xxnet_send(peer_ip, peer_port) — the
// address in the event is A's listen address, so the answer reuses the same
// pooled connection — and sends A its own 100 KiB message. Then A closes the
// connection and both sides see DISCONNECTED. Every event is printed, then
// each node's stats.
//
// Part 2 (the C++ wrapper, xxnet.hpp): a cluster of three named nodes A, B
// and C making remote calls. Each serves "echo"; C serves "upper"; B serves
// "chain", which calls C before answering (A -> B -> C -> B -> A); B's
// "slow" never answers. A and C make calls, one to a service nobody serves
// (NO_SERVICE), one past its deadline (TIMEOUT), one to an unknown node
// (refused at once). Every result is printed.
//
// Part 3 (the C++ wrapper): a download between two named nodes. S serves a
// temp directory holding a generated 32 MiB file; D, whose downloads are
// rate-limited to 24 MiB/s so the transfer takes about 1.3 s, downloads it
// by md5 and size into its cache directory and draws a progress bar from
// the progress events. D compares the file it got with the served bytes (inside on_done,
// while the library still holds it), then both temp directories are removed.
//
// Exits 0 only if every expected message arrived intact within 10 s, every
// call ended as expected within 5 s and the download arrived intact within 10 s.
#include <xxnet.h>
#include <xxnet.hpp>

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace {

constexpr uint32_t kSmall = 5;                 // small messages A -> B, lane 0
constexpr uint32_t kFirstId = 100;             // their msg_ids: 100..104
constexpr uint32_t kReplyOffset = 1000;        // B's replies carry msg_id + 1000
constexpr uint32_t kBulkId = 900;              // the large message's msg_id
constexpr size_t kBulkSize = 100 * 1024;       // 100 KiB on lane 1
constexpr auto kTimeLimit = std::chrono::seconds(10);

struct Node {
  const char* name;
  xxnet_ctx* ctx = nullptr;
  uint16_t port = 0;
  uint64_t conn = 0;
  uint32_t small_in = 0;     // in-order small messages (A: replies, B: requests)
  bool bulk_ok = false;      // the 100 KiB message arrived intact
  bool disconnected = false;
  uint32_t errors = 0;       // unexpected events or content
};

std::vector<uint8_t> bulk_payload(uint8_t seed) {
  std::vector<uint8_t> v(kBulkSize);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>((i * 31 + seed) & 0xff);
  return v;
}

// Options for a send; zero-filled first, so fields added to the struct later keep their defaults.
xxnet_send_opts send_opts(uint32_t lane, uint32_t msg_id) {
  xxnet_send_opts o;
  std::memset(&o, 0, sizeof o);
  o.lane = lane;
  o.msg_id = msg_id;
  return o;
}

std::string small_text(const char* what, uint32_t i) { return std::string(what) + " #" + std::to_string(i); }

void print_event(const Node& n, const xxnet_event& ev) {
  switch (ev.kind) {
    case XXNET_EVENT_CONNECTED:
      std::printf("[%s] CONNECTED     conn=%" PRIu64 " peer=%s:%u (%s)\n", n.name, ev.conn, ev.peer_ip,
                  static_cast<unsigned>(ev.peer_port), ev.id == 1 ? "we connected" : "they connected");
      break;
    case XXNET_EVENT_MESSAGE: {
      std::printf("[%s] MESSAGE       conn=%" PRIu64 " peer=%s:%u lane=%u msg_id=%u len=%zu", n.name, ev.conn,
                  ev.peer_ip, static_cast<unsigned>(ev.peer_port), ev.lane, ev.msg_id, ev.len);
      if (ev.len > 0 && ev.len <= 64)
        std::printf(" \"%.*s\"", static_cast<int>(ev.len), reinterpret_cast<const char*>(ev.data));
      std::printf("\n");
      break;
    }
    case XXNET_EVENT_DISCONNECTED:
      std::printf("[%s] DISCONNECTED  conn=%" PRIu64 " peer=%s:%u code=%d (%s)\n", n.name, ev.conn, ev.peer_ip,
                  static_cast<unsigned>(ev.peer_port), ev.code, xxnet_strerror(ev.code));
      break;
    case XXNET_EVENT_SEND_FAILED:
      std::printf("[%s] SEND_FAILED   peer=%s:%u count=%" PRIu64 " bytes=%" PRIu64 " code=%d (%s)\n", n.name,
                  ev.peer_ip, static_cast<unsigned>(ev.peer_port), ev.count, ev.total, ev.code,
                  xxnet_strerror(ev.code));
      break;
    case XXNET_EVENT_CONNECT_FAILED:
      std::printf("[%s] CONNECT_FAILED peer=%s:%u code=%d (%s)\n", n.name, ev.peer_ip,
                  static_cast<unsigned>(ev.peer_port), ev.code, xxnet_strerror(ev.code));
      break;
    default:
      std::printf("[%s] event kind=%u code=%d (%s)\n", n.name, ev.kind, ev.code, xxnet_strerror(ev.code));
  }
}

void print_stats(const Node& n) {
  xxnet_stats_t s;
  std::memset(&s, 0, sizeof s);
  int rc = xxnet_stats(n.ctx, &s);
  if (rc != XXNET_OK) {
    std::printf("[%s] stats: %s\n", n.name, xxnet_strerror(rc));
    return;
  }
  std::printf("[%s] stats: open=%" PRIu64 " msgs_in=%" PRIu64 " msgs_out=%" PRIu64 " bytes_in=%" PRIu64
              " bytes_out=%" PRIu64 " queued_msgs=%" PRIu64 " accepted=%" PRIu64 " protocol_errors=%" PRIu64
              " send_failed=%" PRIu64 "\n",
              n.name, s.open_connections, s.msgs_in, s.msgs_out, s.bytes_in, s.bytes_out, s.queued_msgs,
              s.accepted_connections, s.protocol_errors, s.send_failed_msgs);
}

// Watchdog: the demo must end even if a library call never returns.
void on_alarm(int) {
  const char msg[] = "demo FAILED: still running after 30 s (a library call did not return)\n";
  ssize_t ignored = write(STDOUT_FILENO, msg, sizeof msg - 1);
  (void)ignored;
  _exit(3);
}

int check(int rc, const char* what) {
  if (rc != XXNET_OK) std::printf("%s failed: %s (%d)\n", what, xxnet_strerror(rc), rc);
  return rc;
}

// Part 2: three named nodes making remote calls. True if every call ended as expected.
bool cluster_demo() {
  std::printf("\n== part 2: a cluster of three named nodes making remote calls ==\n");
  xxnet::Context a(xxnet::Config().node_name("A")), b(xxnet::Config().node_name("B")),
      c(xxnet::Config().node_name("C"));
  xxnet::Context* nodes[] = {&a, &b, &c};
  const char* names[] = {"A", "B", "C"};
  std::string addrs[3];
  for (int i = 0; i < 3; ++i) addrs[i] = "127.0.0.1:" + std::to_string(nodes[i]->listen("127.0.0.1"));
  for (xxnet::Context* n : nodes)  // every node knows every node (the same as a clustername.lua file)
    for (int j = 0; j < 3; ++j) n->cluster_set(names[j], addrs[j]).check("cluster_set");
  std::printf("A at %s, B at %s, C at %s\n", addrs[0].c_str(), addrs[1].c_str(), addrs[2].c_str());

  for (int i = 0; i < 3; ++i) {
    const std::string me = names[i];
    nodes[i]->serve("echo", [me](xxnet::Request& req) {
      std::printf("[%s] echo request from %.*s\n", me.c_str(), static_cast<int>(req.node().size()), req.node().data());
      (void)req.reply(XXNET_OK, std::string(req.data()) + " (echoed by " + me + ")");
    }).check("serve echo");
  }
  c.serve("upper", [](xxnet::Request& req) {
    std::string up(req.data());
    for (char& ch : up) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    (void)req.reply(XXNET_OK, up + " (C)");
  }).check("serve upper");
  b.serve("chain", [&b](xxnet::Request& req) {
    std::printf("[B] chain request from %.*s: B calls C.upper before answering\n", static_cast<int>(req.node().size()),
                req.node().data());
    // The Request is a copyable handle: answer from the callback of B's own call.
    xxnet::CallResult r = b.call("C", "upper", req.data(), [req](int code, std::string_view reply) {
      (void)req.reply(code >= 0 ? code : 1, std::string(reply) + " (via B)");
    });
    if (!r.ok()) (void)req.reply(1, r.message());
  }).check("serve chain");
  b.serve("slow", [](xxnet::Request&) {}).check("serve slow");  // never answers

  int pending = 0;
  bool ok = true;
  auto expect = [&](const char* what, int want) {
    ++pending;
    return [&pending, &ok, what, want](const xxnet::Event& e) {
      --pending;
      std::printf("%-26s -> %s: code %d (%s), reply \"%.*s\"\n", what, std::string(e.node()).c_str(), e.code(),
                  xxnet_strerror(e.code()), static_cast<int>(e.data().size()), e.data().data());
      if (e.code() != want) {
        std::printf("  unexpected: wanted code %d\n", want);
        ok = false;
      }
    };
  };
  a.call("B", "echo", "hello B", expect("A calls B.echo", XXNET_OK)).check("call");
  c.call("A", "echo", "hello A", expect("C calls A.echo", XXNET_OK)).check("call");
  a.call("B", "chain", "chained call", expect("A calls B.chain", XXNET_OK)).check("call");
  a.call("B", "nosuch", "?", expect("A calls B.nosuch", XXNET_E_NO_SERVICE)).check("call");
  a.call("B", "slow", "?", expect("A calls B.slow (100 ms)", XXNET_E_TIMEOUT), {XXNET_LANE_DEFAULT, 100})
      .check("call");
  xxnet::CallResult refused = a.call("Z", "echo", "?", [&ok](const xxnet::Event&) { ok = false; });
  std::printf("%-26s -> refused at once: code %d (%s)\n", "A calls Z.echo", refused.code(), refused.message());
  ok = ok && refused.code() == XXNET_E_UNKNOWN_NODE;

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (pending > 0 && std::chrono::steady_clock::now() < deadline)
    for (xxnet::Context* n : nodes) n->dispatch(64, 2);
  if (pending > 0) std::printf("%d call(s) still pending after 5 s\n", pending);
  return ok && pending == 0;
}

// ---------------------------------------------------------------------------
// Part 3: a download between two nodes.
// ---------------------------------------------------------------------------

constexpr size_t kFileSize = 32u << 20;              // 32 MiB
constexpr uint64_t kRateLimit = 24u << 20;           // D fetches at most 24 MiB/s: about 1.3 s
constexpr auto kDownloadLimit = std::chrono::seconds(10);

/// The md5 of a file as 32 hex digits, from coreutils' md5sum ("" on failure).
/// A game would take it from its asset manifest.
std::string md5sum(const std::string& path) {
  const std::string cmd = "md5sum '" + path + "'";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return "";
  char hex[33] = {};
  const bool ok = std::fscanf(p, "%32s", hex) == 1;
  pclose(p);
  return ok && std::strlen(hex) == 32 ? std::string(hex) : "";
}

/// True if the file at `path` holds exactly `want`.
bool same_bytes(const std::string& path, const std::vector<uint8_t>& want) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  std::vector<uint8_t> got(want.size() + 1);
  const size_t n = std::fread(got.data(), 1, got.size(), f);
  std::fclose(f);
  return n == want.size() && std::memcmp(got.data(), want.data(), n) == 0;
}

/// A directory under /tmp for the demo's files, removed with them at the end.
struct DemoDir {
  DemoDir() {
    char tmpl[] = "/tmp/xxnet-demo-XXXXXX";
    if (mkdtemp(tmpl) != nullptr) path = tmpl;
  }
  ~DemoDir() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove_all(path, ec);
  }
  DemoDir(const DemoDir&) = delete;
  DemoDir& operator=(const DemoDir&) = delete;
  std::string path;
};

/// One line of progress, redrawn in place: [#######.......]  45%  14.4 / 32.0 MiB
void draw_bar(uint64_t done, uint64_t total) {
  constexpr uint64_t kWidth = 40;
  const uint64_t filled = total == 0 ? kWidth : std::min(kWidth, done * kWidth / total);
  const unsigned percent = total == 0 ? 100u : static_cast<unsigned>(std::min<uint64_t>(100, done * 100 / total));
  std::printf("\r[%s%s] %3u%% %5.1f / %.1f MiB", std::string(filled, '#').c_str(),
              std::string(kWidth - filled, '.').c_str(), percent, static_cast<double>(done) / (1 << 20),
              static_cast<double>(total) / (1 << 20));
  std::fflush(stdout);  // stdout is line-buffered: \r updates need a flush
}

// Part 3: D downloads a file from S and draws its progress. True if it arrived intact.
bool download_demo() {
  std::printf("\n== part 3: node D downloads a %zu MiB file from node S (at most %" PRIu64 " MiB/s) ==\n",
              kFileSize >> 20, kRateLimit >> 20);
  DemoDir dir;
  if (dir.path.empty()) {
    std::printf("cannot create a temp directory under /tmp\n");
    return false;
  }
  const std::string served = dir.path + "/served", cache = dir.path + "/cache";
  std::error_code ec;
  std::filesystem::create_directories(served + "/assets", ec);

  // The file S serves, and its md5: downloads name content by md5 and size.
  std::vector<uint8_t> content(kFileSize);
  uint32_t x = 2024;
  for (uint8_t& b : content) {
    x = x * 1103515245u + 12345u;
    b = static_cast<uint8_t>(x >> 24);
  }
  const std::string name = "assets/world.bin";
  FILE* f = std::fopen((served + "/" + name).c_str(), "wb");
  const bool written = f != nullptr && std::fwrite(content.data(), 1, content.size(), f) == content.size();
  if (f != nullptr) std::fclose(f);
  const std::string want = written ? md5sum(served + "/" + name) : "";
  if (want.empty()) {
    std::printf("cannot write %s/%s or take its md5\n", served.c_str(), name.c_str());
    return false;
  }
  std::printf("S serves %s (%zu MiB, md5 %s); D caches in %s\n", name.c_str(), kFileSize >> 20, want.c_str(),
              cache.c_str());

  xxnet::Context s(xxnet::Config().node_name("S")),
      d(xxnet::Config().node_name("D").download_dir(cache).download_rate_limit(kRateLimit));
  const std::string at_s = "127.0.0.1:" + std::to_string(s.listen("127.0.0.1"));
  const std::string at_d = "127.0.0.1:" + std::to_string(d.listen("127.0.0.1"));
  for (xxnet::Context* n : {&s, &d}) {
    n->cluster_set("S", at_s).check("cluster_set");
    n->cluster_set("D", at_d).check("cluster_set");
  }
  s.files_serve(served).check("files_serve");

  bool finished = false, intact = false;
  const auto t0 = std::chrono::steady_clock::now();
  double took_ms = 0;
  draw_bar(0, kFileSize);
  d.download(
       "S", want, name, kFileSize,
       [&](xxnet::Download& r) {  // once; the file is released when this returns
         took_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
         finished = true;
         if (!r.ok()) {
           std::printf("\ndownload failed: %s (%d)\n", r.message(), r.code());
           return;
         }
         draw_bar(r.size(), r.size());
         std::printf("\nD got %s from %s\n", r.path().c_str(), r.node().c_str());
         // DONE means xxnet checked size and md5; compare the bytes anyway.
         intact = r.size() == kFileSize && same_bytes(r.path(), content);
       },
       [](uint64_t done, uint64_t total) { draw_bar(done, total); })
      .check("download");

  const auto deadline = t0 + kDownloadLimit;
  while (!finished && std::chrono::steady_clock::now() < deadline) {
    s.dispatch(64, 1);
    d.dispatch(64, 1);
  }
  if (!finished) {
    std::printf("\ndownload still running after 10 s\n");
    return false;  // ~Context runs on_done with XXNET_E_SHUTDOWN
  }
  const xxnet::FileStats st = d.files_stats();
  std::printf("D: %" PRIu64 " blocks fetched, %" PRIu64 " refetched, cache holds %" PRIu64 " bytes; S served %" PRIu64
              " blocks\n",
              st.blocks_fetched, st.blocks_refetched, st.cache_bytes, s.files_stats().blocks_served);
  if (intact) {
    std::printf("downloaded %zu MiB in %.0f ms (%.1f MiB/s), md5 ok, bytes identical\n", kFileSize >> 20, took_ms,
                static_cast<double>(kFileSize >> 20) * 1000.0 / took_ms);
  } else if (finished) {
    std::printf("downloaded file differs from the served one\n");
  }
  return intact;
}

}  // namespace

int main() {
  signal(SIGALRM, on_alarm);
  alarm(30);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // line by line, also into a pipe
  Node a{"A"}, b{"B"};
  a.ctx = xxnet_new(nullptr);
  b.ctx = xxnet_new(nullptr);
  if (!a.ctx || !b.ctx) {
    std::printf("xxnet_new failed: %s\n", xxnet_last_error());
    xxnet_free(a.ctx);
    xxnet_free(b.ctx);
    return 1;
  }
  int rc = check(xxnet_listen(a.ctx, "127.0.0.1", 0, &a.port), "A listen");
  if (rc == XXNET_OK) rc = check(xxnet_listen(b.ctx, "127.0.0.1", 0, &b.port), "B listen");
  if (rc != XXNET_OK) {
    xxnet_free(a.ctx);
    xxnet_free(b.ctx);
    return 1;
  }
  std::printf("A listens on 127.0.0.1:%u, B listens on 127.0.0.1:%u\n", static_cast<unsigned>(a.port),
              static_cast<unsigned>(b.port));

  // A -> B: small messages on lane 0, then 100 KiB on lane 1. The first send
  // opens the connection; the rest wait in order until it is up.
  const std::vector<uint8_t> bulk_a = bulk_payload(7), bulk_b = bulk_payload(42);
  for (uint32_t i = 0; i < kSmall && rc == XXNET_OK; ++i) {
    std::string text = small_text("hello from A", i);
    xxnet_send_opts o = send_opts(XXNET_LANE_DEFAULT, kFirstId + i);
    rc = check(xxnet_send_ex(a.ctx, "127.0.0.1", b.port, reinterpret_cast<const uint8_t*>(text.data()), text.size(),
                             &o),
               "A send");
  }
  const xxnet_send_opts bulk_opts = send_opts(XXNET_LANE_BULK, kBulkId);
  if (rc == XXNET_OK)
    rc = check(xxnet_send_ex(a.ctx, "127.0.0.1", b.port, bulk_a.data(), bulk_a.size(), &bulk_opts), "A send bulk");
  std::printf("A queued %u small messages and one %zu-byte message for 127.0.0.1:%u\n", kSmall, kBulkSize,
              static_cast<unsigned>(b.port));

  const auto deadline = std::chrono::steady_clock::now() + kTimeLimit;
  bool closed = false;
  xxnet_event evs[64];
  auto done_messages = [&] { return a.small_in == kSmall && a.bulk_ok && b.small_in == kSmall && b.bulk_ok; };
  while (rc == XXNET_OK && std::chrono::steady_clock::now() < deadline) {
    if (done_messages() && !closed) {
      std::printf("all messages arrived; A closes its connection to B\n");
      rc = check(xxnet_close(a.ctx, a.conn), "A close");
      closed = true;
    }
    if (closed && a.disconnected && b.disconnected) break;
    for (Node* n : {&a, &b}) {
      size_t got = xxnet_poll_recv(n->ctx, evs, 64, 5);
      for (size_t i = 0; i < got; ++i) {
        const xxnet_event& ev = evs[i];
        print_event(*n, ev);
        if (ev.kind == XXNET_EVENT_CONNECTED) {
          n->conn = ev.conn;
        } else if (ev.kind == XXNET_EVENT_DISCONNECTED) {
          n->disconnected = true;
          if (!closed) ++n->errors;
        } else if (ev.kind == XXNET_EVENT_MESSAGE) {
          const std::string body(reinterpret_cast<const char*>(ev.data), ev.len);
          if (ev.lane == XXNET_LANE_BULK && ev.msg_id == kBulkId) {
            const std::vector<uint8_t>& want = n == &b ? bulk_a : bulk_b;
            n->bulk_ok = ev.len == want.size() && std::memcmp(ev.data, want.data(), want.size()) == 0;
            if (!n->bulk_ok) ++n->errors;
            if (n == &b) {  // B sends its own large message back
              rc = check(xxnet_send_ex(b.ctx, ev.peer_ip, ev.peer_port, bulk_b.data(), bulk_b.size(), &bulk_opts),
                         "B send bulk");
            }
          } else if (n == &b && ev.lane == XXNET_LANE_DEFAULT && ev.msg_id == kFirstId + b.small_in &&
                     body == small_text("hello from A", b.small_in)) {
            // Reply to the sender's listen address: same pooled connection.
            std::string reply = small_text("reply from B", b.small_in);
            xxnet_send_opts o = send_opts(XXNET_LANE_DEFAULT, ev.msg_id + kReplyOffset);
            rc = check(xxnet_send_ex(b.ctx, ev.peer_ip, ev.peer_port, reinterpret_cast<const uint8_t*>(reply.data()),
                                     reply.size(), &o),
                       "B reply");
            ++b.small_in;
          } else if (n == &a && ev.lane == XXNET_LANE_DEFAULT &&
                     ev.msg_id == kFirstId + kReplyOffset + a.small_in &&
                     body == small_text("reply from B", a.small_in)) {
            ++a.small_in;
          } else {
            std::printf("[%s] unexpected message\n", n->name);
            ++n->errors;
          }
        } else {
          ++n->errors;  // SEND_FAILED, CONNECT_FAILED, ERROR: not expected here
        }
      }
    }
  }

  print_stats(a);
  print_stats(b);
  const bool ok = rc == XXNET_OK && done_messages() && a.disconnected && b.disconnected && a.errors == 0 &&
                  b.errors == 0;
  xxnet_free(a.ctx);
  xxnet_free(b.ctx);
  if (ok) {
    std::printf("part 1 OK: B got %u messages + %zu bytes on lane 1, A got %u replies + %zu bytes on lane 1\n",
                b.small_in, kBulkSize, a.small_in, kBulkSize);
  } else {
    std::printf("part 1 FAILED: A got %u/%u replies (bulk %s), B got %u/%u messages (bulk %s), errors A=%u B=%u%s\n",
                a.small_in, kSmall, a.bulk_ok ? "ok" : "missing", b.small_in, kSmall, b.bulk_ok ? "ok" : "missing",
                a.errors, b.errors, std::chrono::steady_clock::now() >= deadline ? ", time limit (10 s) reached" : "");
  }

  bool cluster_ok = false;
  try {
    cluster_ok = cluster_demo();
  } catch (const std::exception& e) {
    std::printf("part 2: %s\n", e.what());
  }
  std::printf("part 2 %s\n", cluster_ok ? "OK: every call ended as expected" : "FAILED");

  bool download_ok = false;
  try {
    download_ok = download_demo();
  } catch (const std::exception& e) {
    std::printf("part 3: %s\n", e.what());
  }
  std::printf("part 3 %s\n", download_ok ? "OK: the file arrived intact" : "FAILED");
  const bool all_ok = ok && cluster_ok && download_ok;
  std::printf("demo %s\n", all_ok ? "OK" : "FAILED");
  return all_ok ? 0 : 1;
}
