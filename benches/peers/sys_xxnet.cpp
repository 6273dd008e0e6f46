// xxnet through its C API, as a game server's main loop uses it: a context
// from xxnet_config_default (io_threads set per row), xxnet_listen,
// xxnet_send to "127.0.0.1":port on the client side, xxnet_send_conn for
// replies, one xxnet_poll_recv per loop turn with a batch of 256 events, and
// XXNET_E_WOULD_BLOCK handled by polling until XXNET_EVENT_WRITABLE.
//
// W5's 10 000 clients are plain sockets that perform the xxnet handshake by
// hand (docs/PROTOCOL.md §1-3: preface, HELLO; the server answers with its
// preface and HELLO_ACK), since each xxnet context has its own thread.
#include <xxnet.h>

#include <sys/socket.h>
#include <unistd.h>

#include <cinttypes>
#include <deque>
#include <memory>
#include <unordered_map>

#include "common.hpp"

namespace pb {

namespace {

constexpr size_t kBatch = 256;
const char* const kIp = "127.0.0.1";

const char* kind_name(uint32_t k) {
  switch (k) {
    case XXNET_EVENT_MESSAGE: return "MESSAGE";
    case XXNET_EVENT_CONNECTED: return "CONNECTED";
    case XXNET_EVENT_DISCONNECTED: return "DISCONNECTED";
    case XXNET_EVENT_SEND_FAILED: return "SEND_FAILED";
    case XXNET_EVENT_CONNECT_FAILED: return "CONNECT_FAILED";
    case XXNET_EVENT_ERROR: return "ERROR";
    case XXNET_EVENT_WRITABLE: return "WRITABLE";
    case XXNET_EVENT_LINK_DOWN: return "LINK_DOWN";
    case XXNET_EVENT_LINK_UP: return "LINK_UP";
    default: return "other";
  }
}

[[noreturn]] void bad_event(const xxnet_event& e, const char* side) {
  die("xxnet %s: unexpected event %s (%u): code %d (%s), conn %" PRIu64 ", peer %s:%u, count %" PRIu64
      ", total %" PRIu64,
      side, kind_name(e.kind), e.kind, e.code, xxnet_strerror(e.code), e.conn, e.peer_ip, e.peer_port, e.count,
      e.total);
}

[[noreturn]] void bad_rc(int rc, const char* what) { die("xxnet: %s returned %d (%s)", what, rc, xxnet_strerror(rc)); }

class Ctx {
 public:
  Ctx(uint32_t io_threads, int w5_conns = 0) {
    xxnet_config cfg;
    xxnet_config_default(&cfg);
    cfg.io_threads = io_threads;
    if (w5_conns > 0) {
      cfg.idle_timeout_ms = 0;  // no heartbeats: idle means idle
      if (cfg.max_connections < static_cast<uint32_t>(w5_conns) + 64)
        cfg.max_connections = static_cast<uint32_t>(w5_conns) + 64;
    }
    ctx_ = xxnet_new(&cfg);
    if (ctx_ == nullptr) die("xxnet_new failed: %s", xxnet_last_error());
  }
  ~Ctx() { xxnet_free(ctx_); }
  Ctx(const Ctx&) = delete;
  Ctx& operator=(const Ctx&) = delete;
  xxnet_ctx* get() const { return ctx_; }

  uint16_t listen() {
    uint16_t port = 0;
    const int rc = xxnet_listen(ctx_, kIp, 0, &port);
    if (rc != XXNET_OK) bad_rc(rc, "xxnet_listen");
    return port;
  }

 private:
  xxnet_ctx* ctx_;
};

/// Polls once (timeout_ms: 0 = don't wait); returns the number of events.
size_t poll(xxnet_ctx* c, std::vector<xxnet_event>& evs, int timeout_ms) {
  return xxnet_poll_recv(c, evs.data(), evs.size(), timeout_ms);
}

/// Client side: events that need no action (CONNECTED, WRITABLE) pass,
/// anything else fails; returns true if a WRITABLE was seen.
bool client_events(const std::vector<xxnet_event>& evs, size_t n) {
  bool writable = false;
  for (size_t i = 0; i < n; ++i) {
    const xxnet_event& e = evs[i];
    if (e.kind == XXNET_EVENT_WRITABLE)
      writable = true;
    else if (e.kind != XXNET_EVENT_CONNECTED)
      bad_event(e, "client");
  }
  return writable;
}

/// Sends one message by address; on XXNET_E_WOULD_BLOCK polls until WRITABLE and retries.
void send_blocking(xxnet_ctx* c, uint16_t port, const uint8_t* p, size_t n, std::vector<xxnet_event>& evs) {
  for (;;) {
    const int rc = xxnet_send(c, kIp, port, p, n);
    if (rc == XXNET_OK) return;
    if (rc != XXNET_E_WOULD_BLOCK) bad_rc(rc, "xxnet_send");
    bool writable = false;
    while (!writable) {
      guard("waiting for XXNET_EVENT_WRITABLE");
      writable = client_events(evs, poll(c, evs, ms_left(50)));
    }
  }
}

// ---------------------------------------------------------------------------
// W1 / W4 server: a sink
// ---------------------------------------------------------------------------

void sink_server(const Spec& spec, Chan& ch, ServerOut& out, Report& rep) {
  Ctx ctx(spec.io_threads);
  const uint16_t port = ctx.listen();
  ch.send_tagged(kMsgPort, port);
  std::vector<xxnet_event> evs(kBatch);
  const uint32_t conns = spec.work == Work::W4 ? static_cast<uint32_t>(spec.conns) : 1;
  StreamCheck sc(conns, spec.size);
  std::unordered_map<uint64_t, uint32_t> stream_of;  // conn -> stream
  const uint64_t total = uint64_t{conns} * (spec.count + 1);
  uint64_t received = 0;
  uint32_t warm = 0;
  while (received < total) {
    guard("receiving");
    const size_t n = poll(ctx.get(), evs, ms_left(50));
    for (size_t i = 0; i < n; ++i) {
      const xxnet_event& e = evs[i];
      if (e.kind == XXNET_EVENT_MESSAGE) {
        const uint64_t key = sc.on_message(e.data, e.len, "xxnet server");
        auto it = stream_of.emplace(e.conn, key_stream(key)).first;
        if (it->second != key_stream(key))
          die("xxnet server: stream %u arrived on conn %" PRIu64 " which carried stream %u", key_stream(key), e.conn,
              it->second);
        if (key_seq(key) == 0 && ++warm == conns) ch.send_tagged(kMsgGo);
        ++received;
      } else if (e.kind != XXNET_EVENT_CONNECTED) {
        bad_event(e, "server");
      }
    }
  }
  out.t_last_ns = now_ns();
  out.received = received;
  ch.get(&rep, sizeof rep, "waiting for the client's report");
  ch.send_tagged(kMsgDone);
}

void w1_client(const Spec& spec, Chan& ch, Report& rep) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  Ctx ctx(spec.io_threads_client ? spec.io_threads : 1);
  std::vector<xxnet_event> evs(kBatch);
  std::vector<uint8_t> msg(spec.size);
  fill_payload(msg.data(), msg.size(), make_key(0, 0));
  send_blocking(ctx.get(), port, msg.data(), msg.size(), evs);
  ch.expect(kMsgGo, "waiting for go");
  rep.t0_ns = now_ns();
  for (uint64_t seq = 1; seq <= spec.count; ++seq) {
    fill_payload(msg.data(), msg.size(), make_key(0, seq));
    send_blocking(ctx.get(), port, msg.data(), msg.size(), evs);
    if ((seq & 255) == 0) {
      guard("sending");
      client_events(evs, poll(ctx.get(), evs, 0));
    }
  }
  client_events(evs, poll(ctx.get(), evs, 0));
  rep.count = spec.count;
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "waiting for the server to finish");
}

// ---------------------------------------------------------------------------
// W2 / W3 server: echo on the event's conn
// ---------------------------------------------------------------------------

void echo_server(const Spec& spec, Chan& ch, ServerOut& out, Report& rep, uint64_t total) {
  Ctx ctx(spec.io_threads);
  const uint16_t port = ctx.listen();
  ch.send_tagged(kMsgPort, port);
  std::vector<xxnet_event> evs(kBatch);
  struct Held {
    uint64_t conn;
    std::vector<uint8_t> data;
  };
  std::deque<Held> held;  // echoes refused with WOULD_BLOCK, in order
  uint64_t echoed = 0;
  auto flush = [&]() {
    while (!held.empty()) {
      const int rc = xxnet_send_conn(ctx.get(), held.front().conn, held.front().data.data(), held.front().data.size());
      if (rc == XXNET_E_WOULD_BLOCK) return;
      if (rc != XXNET_OK) bad_rc(rc, "xxnet_send_conn (echo)");
      held.pop_front();
      ++echoed;
    }
  };
  // The echoes of one polled batch go out with one reactor wakeup:
  // XXNET_SEND_MORE on each, xxnet_flush after the batch.
  xxnet_send_opts more;
  std::memset(&more, 0, sizeof more);
  more.flags = XXNET_SEND_MORE;
  while (echoed < total) {
    guard("echoing");
    const size_t n = poll(ctx.get(), evs, ms_left(50));
    for (size_t i = 0; i < n; ++i) {
      const xxnet_event& e = evs[i];
      if (e.kind == XXNET_EVENT_MESSAGE) {
        if (held.empty()) {
          const int rc = xxnet_send_conn_ex(ctx.get(), e.conn, e.data, e.len, &more);
          if (rc == XXNET_OK) {
            ++echoed;
            continue;
          }
          if (rc != XXNET_E_WOULD_BLOCK) bad_rc(rc, "xxnet_send_conn (echo)");
        }
        held.push_back({e.conn, std::vector<uint8_t>(e.data, e.data + e.len)});
      } else if (e.kind == XXNET_EVENT_WRITABLE) {
        flush();
      } else if (e.kind != XXNET_EVENT_CONNECTED) {
        bad_event(e, "server");
      }
    }
    if (n > 0) xxnet_flush(ctx.get());
  }
  out.received = echoed;
  // The last echoes may still be on their way: the context stays up until the client has them all.
  ch.get(&rep, sizeof rep, "waiting for the client's report");
  ch.send_tagged(kMsgDone);
}

/// Waits for exactly one reply and checks it.
void await_reply(xxnet_ctx* c, std::vector<xxnet_event>& evs, const Spec& spec, uint64_t seq) {
  for (;;) {
    guard("waiting for a reply");
    const size_t n = poll(c, evs, ms_left(50));
    bool got = false;
    for (size_t i = 0; i < n; ++i) {
      const xxnet_event& e = evs[i];
      if (e.kind == XXNET_EVENT_MESSAGE) {
        if (got) die("xxnet client: a second reply arrived for request %" PRIu64 " (duplicate)", seq);
        check_payload(e.data, e.len, spec.size, make_key(0, seq), "xxnet client (reply)");
        got = true;
      } else if (e.kind != XXNET_EVENT_CONNECTED && e.kind != XXNET_EVENT_WRITABLE) {
        bad_event(e, "client");
      }
    }
    if (got) return;
  }
}

void w2_client(const Spec& spec, Chan& ch, Report& rep) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  Ctx ctx(spec.io_threads);
  std::vector<xxnet_event> evs(kBatch);
  std::vector<uint8_t> msg(spec.size);
  std::vector<double> lat;
  lat.reserve(spec.count);
  for (uint64_t i = 0; i < spec.warmup + spec.count; ++i) {
    fill_payload(msg.data(), msg.size(), make_key(0, i));
    const int64_t t = now_ns();
    send_blocking(ctx.get(), port, msg.data(), msg.size(), evs);
    await_reply(ctx.get(), evs, spec, i);
    const int64_t t2 = now_ns();
    if (i >= spec.warmup) lat.push_back(static_cast<double>(t2 - t) / 1e3);
  }
  summarize_latencies(lat, rep);
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "waiting for the server to finish");
}

void w3_client(const Spec& spec, Chan& ch, Report& rep) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  Ctx ctx(spec.io_threads);
  std::vector<xxnet_event> evs(kBatch);
  std::vector<uint8_t> msg(spec.size);
  fill_payload(msg.data(), msg.size(), make_key(0, 0));
  send_blocking(ctx.get(), port, msg.data(), msg.size(), evs);
  await_reply(ctx.get(), evs, spec, 0);

  rep.t0_ns = now_ns();
  uint64_t next = 1, expect = 1, owed = 0;  // owed: sends refused with WOULD_BLOCK, retried on WRITABLE
  // The requests refilled from one polled batch go out with one wakeup (XXNET_SEND_MORE, then xxnet_flush).
  xxnet_send_opts more;
  std::memset(&more, 0, sizeof more);
  more.flags = XXNET_SEND_MORE;
  auto send_next = [&]() {
    fill_payload(msg.data(), msg.size(), make_key(0, next));
    const int rc = xxnet_send_ex(ctx.get(), kIp, port, msg.data(), msg.size(), &more);
    if (rc == XXNET_OK) {
      ++next;
      return true;
    }
    if (rc != XXNET_E_WOULD_BLOCK) bad_rc(rc, "xxnet_send");
    return false;
  };
  for (int i = 0; i < spec.window && next <= spec.count; ++i)
    if (!send_next()) ++owed;
  xxnet_flush(ctx.get());
  while (expect <= spec.count) {
    guard("waiting for replies");
    const size_t n = poll(ctx.get(), evs, ms_left(50));
    for (size_t i = 0; i < n; ++i) {
      const xxnet_event& e = evs[i];
      if (e.kind == XXNET_EVENT_MESSAGE) {
        if (expect > spec.count) die("xxnet client: more replies than requests");
        check_payload(e.data, e.len, spec.size, make_key(0, expect), "xxnet client (reply)");
        ++expect;
        if (next + owed <= spec.count) {
          if (owed > 0 || !send_next()) ++owed;
        }
      } else if (e.kind == XXNET_EVENT_WRITABLE) {
        while (owed > 0 && send_next()) --owed;
      } else if (e.kind != XXNET_EVENT_CONNECTED) {
        bad_event(e, "client");
      }
    }
    if (n > 0) xxnet_flush(ctx.get());
  }
  rep.t1_ns = now_ns();
  rep.count = spec.count;
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "waiting for the server to finish");
}

// ---------------------------------------------------------------------------
// W4 client: 100 contexts (one session per peer per context), one host
// thread sending round-robin in bursts of 64, polling each context once per turn.
// ---------------------------------------------------------------------------

void w4_client(const Spec& spec, Chan& ch, Report& rep) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  const size_t nc = static_cast<size_t>(spec.conns);
  std::vector<std::unique_ptr<Ctx>> ctxs;
  std::vector<xxnet_event> evs(kBatch);
  std::vector<uint8_t> msg(spec.size);
  for (size_t i = 0; i < nc; ++i) {
    ctxs.push_back(std::make_unique<Ctx>(spec.io_threads_client ? spec.io_threads : 1));
    fill_payload(msg.data(), msg.size(), make_key(static_cast<uint32_t>(i), 0));
    send_blocking(ctxs.back()->get(), port, msg.data(), msg.size(), evs);
  }
  ch.expect(kMsgGo, "waiting for go");
  rep.t0_ns = now_ns();
  std::vector<uint64_t> next(nc, 1);
  std::vector<char> blocked(nc, 0);
  size_t active = nc;
  while (active > 0) {
    guard("sending on 100 contexts");
    bool sent = false;
    for (size_t i = 0; i < nc; ++i) {
      if (next[i] > spec.count) continue;
      xxnet_ctx* c = ctxs[i]->get();
      if (client_events(evs, poll(c, evs, 0))) blocked[i] = 0;
      if (blocked[i]) continue;
      for (int k = 0; k < 64 && next[i] <= spec.count; ++k) {
        fill_payload(msg.data(), msg.size(), make_key(static_cast<uint32_t>(i), next[i]));
        const int rc = xxnet_send(c, kIp, port, msg.data(), msg.size());
        if (rc == XXNET_E_WOULD_BLOCK) {
          blocked[i] = 1;
          break;
        }
        if (rc != XXNET_OK) bad_rc(rc, "xxnet_send");
        ++next[i];
        sent = true;
      }
      if (next[i] > spec.count) --active;
    }
    if (!sent && active > 0) ::usleep(100);  // every context is waiting for WRITABLE
  }
  for (auto& c : ctxs) client_events(evs, poll(c->get(), evs, 0));
  rep.count = spec.count * nc;
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "waiting for the server to finish");
}

// ---------------------------------------------------------------------------
// W5: idle connections
// ---------------------------------------------------------------------------

void w5_server(const Spec& spec, Chan& ch, ServerOut& out, Report& rep) {
  Ctx ctx(spec.io_threads, spec.conns);
  const uint16_t port = ctx.listen();
  std::vector<xxnet_event> evs(kBatch);
  const size_t heap0 = heap_in_use(), rss0 = rss_bytes();
  ch.send_tagged(kMsgPort, port);
  uint64_t connected = 0;
  int64_t idle_until = 0;
  for (;;) {
    guard(progress("waiting for the CONNECTED events of the idle connections", connected, spec.conns));
    if (idle_until != 0 && now_ns() >= idle_until) break;
    const size_t n = poll(ctx.get(), evs, ms_left(20));
    for (size_t i = 0; i < n; ++i) {
      if (evs[i].kind == XXNET_EVENT_CONNECTED && evs[i].id == 0)
        ++connected;
      else
        bad_event(evs[i], "server (idle connections)");
    }
    if (idle_until == 0 && connected == static_cast<uint64_t>(spec.conns)) idle_until = now_ns() + 300000000;
  }
  out.conns = connected;
  out.heap_per_conn = (static_cast<double>(heap_in_use()) - static_cast<double>(heap0)) / spec.conns;
  out.rss_per_conn = (static_cast<double>(rss_bytes()) - static_cast<double>(rss0)) / spec.conns;
  xxnet_stats_t st;
  if (xxnet_stats(ctx.get(), &st) == XXNET_OK && st.open_connections != static_cast<uint64_t>(spec.conns))
    die("xxnet server: %" PRIu64 " open connections after %" PRIu64 " CONNECTED events (%d expected)",
        st.open_connections, connected, spec.conns);
  ch.get(&rep, sizeof rep, "waiting for the client's report");
  ch.send_tagged(kMsgDone);
}

void put_le(std::vector<uint8_t>& b, uint64_t v, int bytes) {  // bytes <= 8
  for (int i = 0; i < bytes; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

uint64_t mix(uint64_t x) {  // splitmix64 finaliser: distinct, well-spread ids
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// Preface + HELLO of a client that listens nowhere and brings no session state.
std::vector<uint8_t> hello_bytes(uint64_t instance, uint64_t send_id) {
  std::vector<uint8_t> b = {'X', 'X', 'N', 'T', 1, 0, 0, 0};  // magic, version 1, reserved
  constexpr uint32_t body_len = 8 + 8 + 32 + 2 + 1;
  put_le(b, body_len, 4);
  b.push_back(1);  // type HELLO
  b.push_back(0);  // flags
  b.push_back(0);  // lane
  b.push_back(0);  // reserved
  put_le(b, 0, 4);  // msg_id
  put_le(b, 0, 4);  // seq
  put_le(b, instance, 8);
  put_le(b, 1, 8);        // nonce: first attempt
  put_le(b, send_id, 8);  // sync.send_id
  put_le(b, 0, 8);        // sync.recv_id: nothing received
  b.insert(b.end(), 16, 0);  // sync.delivered[4]
  put_le(b, 0, 2);        // listen_port: listens nowhere
  b.push_back(0);         // ip_len
  return b;
}

void w5_client(const Spec& spec, Chan& ch) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  const uint64_t seed = mix(static_cast<uint64_t>(now_ns()) ^ static_cast<uint64_t>(::getpid()));
  std::vector<int> fds;
  fds.reserve(static_cast<size_t>(spec.conns));
  const size_t batch = 128;
  uint8_t buf[4096];
  for (size_t first = 0; first < static_cast<size_t>(spec.conns); first += batch) {
    guard("opening idle connections with a hand-made xxnet handshake");
    const size_t last = std::min(first + batch, static_cast<size_t>(spec.conns));
    for (size_t i = first; i < last; ++i) {
      const int fd = tcp_connect(port);
      set_io_timeouts(fd, 200);
      const std::vector<uint8_t> h = hello_bytes(mix(seed + 2 * i) | 1, mix(seed + 2 * i + 1) | 1);
      write_all(fd, h.data(), h.size(), "sending preface + HELLO");
      fds.push_back(fd);
    }
    for (size_t i = first; i < last; ++i) {
      read_exact(fds[i], buf, 8 + 16, "waiting for preface + HELLO_ACK");
      if (std::memcmp(buf, "XXNT\x01\x00\x00\x00", 8) != 0)
        die("hand-made xxnet client: the server's preface is not XXNT v1");
      const uint32_t body_len = load_u32(buf + 8);
      if (buf[8 + 4] != 2) die("hand-made xxnet client: first frame has type %u, not HELLO_ACK (2)", buf[8 + 4]);
      if (body_len < 1 || body_len > sizeof buf) die("hand-made xxnet client: HELLO_ACK body of %u bytes", body_len);
      read_exact(fds[i], buf, body_len, "reading the HELLO_ACK body");
      if (buf[0] != 0)
        die("hand-made xxnet client: connection %zu refused, HELLO_ACK status %u (1 duplicate, 2 too many "
            "connections, 3/4 authentication)",
            i, buf[0]);
    }
  }
  Report rep;
  rep.count = fds.size();
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "holding idle connections");
  for (int fd : fds) ::close(fd);
}

}  // namespace

std::string xxnet_version() { return ::xxnet_version(); }

void xxnet_server(const Spec& spec, Chan& ch, ServerOut& out, Report& rep) {
  switch (spec.work) {
    case Work::W1:
    case Work::W4: sink_server(spec, ch, out, rep); break;
    case Work::W2: echo_server(spec, ch, out, rep, spec.warmup + spec.count); break;
    case Work::W3: echo_server(spec, ch, out, rep, spec.count + 1); break;
    case Work::W5: w5_server(spec, ch, out, rep); break;
  }
}

void xxnet_client(const Spec& spec, Chan& ch) {
  Report rep;
  switch (spec.work) {
    case Work::W1: w1_client(spec, ch, rep); break;
    case Work::W2: w2_client(spec, ch, rep); break;
    case Work::W3: w3_client(spec, ch, rep); break;
    case Work::W4: w4_client(spec, ch, rep); break;
    case Work::W5: w5_client(spec, ch); break;
  }
}

}  // namespace pb
