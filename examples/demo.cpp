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
// Exits 0 only if every expected message arrived intact within 10 s and
// every call ended as expected within 5 s.
#include <xxnet.h>
#include <xxnet.hpp>

#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
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
  std::printf("demo %s\n", ok && cluster_ok ? "OK" : "FAILED");
  return ok && cluster_ok ? 0 : 1;
}
