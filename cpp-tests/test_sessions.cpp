// Sessions and host-side services through the C API: need-ack sends, session
// introspection, back-pressure, heartbeats, timers, dispatch, user data, logging.
#include "test_util.hpp"

#include <atomic>
#include <mutex>

using namespace xt;

namespace {

uint64_t sum_count(const Ctx& c, uint32_t kind) {
  uint64_t n = 0;
  for (const Event& e : c.of(kind)) n += e.count;
  return n;
}

}  // namespace

TEST(Sessions, NeedAckToALivePeerIsDelivered) {
  Ctx a, b;
  ASSERT_TRUE(a && b) << xxnet_last_error();
  const uint16_t pb = b.listen();
  ASSERT_NE(pb, 0);
  std::vector<uint64_t> ids;
  for (uint32_t i = 0; i < 20; ++i) {
    uint64_t id = 0;
    xxnet_send_opts o = opts(i % 2, 100 + i);
    const std::string m = "need-ack " + std::to_string(i);
    ASSERT_EQ(xxnet_send_need_ack(a.get(), "127.0.0.1", pb, bytes(m), m.size(), &o, &id), XXNET_OK);
    ASSERT_NE(id, 0u);
    ids.push_back(id);
  }
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return a.count(XXNET_EVENT_DELIVERED) >= ids.size(); })) << a.dump();
  poll_for({&a, &b}, 50ms);
  std::vector<Event> delivered = a.of(XXNET_EVENT_DELIVERED);
  ASSERT_EQ(delivered.size(), ids.size()) << "exactly one DELIVERED per need-ack message";
  std::vector<uint64_t> got;
  for (const Event& d : delivered) {
    got.push_back(d.id);
    EXPECT_EQ(d.conn, a.first(XXNET_EVENT_CONNECTED)->conn);
  }
  std::sort(got.begin(), got.end());
  std::vector<uint64_t> want = ids;
  std::sort(want.begin(), want.end());
  EXPECT_EQ(got, want);
  EXPECT_EQ(std::unique(want.begin(), want.end()), want.end()) << "ids must be unique";
  EXPECT_EQ(a.count(XXNET_EVENT_EXPIRED), 0u) << a.dump();
  EXPECT_EQ(b.count(XXNET_EVENT_MESSAGE), ids.size());

  // Over a known connection, from the receiving side back.
  const uint64_t bconn = b.first(XXNET_EVENT_CONNECTED)->conn;
  uint64_t id = 0;
  ASSERT_EQ(xxnet_send_conn_need_ack(b.get(), bconn, bytes(std::string("back")), 4, nullptr, &id), XXNET_OK);
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return b.count(XXNET_EVENT_DELIVERED) == 1; })) << b.dump();
  EXPECT_EQ(b.first(XXNET_EVENT_DELIVERED)->id, id);
  EXPECT_EQ(a.messages().size(), 1u);
}

// Never sent, because no connection could be made before the deadline:
// EXPIRED with XXNET_E_EXPIRED_UNSENT, exactly once, and no SEND_FAILED for it.
TEST(Sessions, NeedAckThatCannotBeSentExpiresUnsent) {
  uint16_t port = 0;
  int fd = plain_listener("127.0.0.1", &port);
  ASSERT_GE(fd, 0);
  ::close(fd);  // nothing listens: the session keeps retrying
  Ctx a;
  ASSERT_TRUE(a) << xxnet_last_error();
  xxnet_send_opts o = opts(0, 9);
  o.ack_timeout_ms = 200;
  uint64_t id = 0;
  const auto t0 = Clock::now();
  ASSERT_EQ(xxnet_send_need_ack(a.get(), "127.0.0.1", port, bytes(std::string("lost")), 4, &o, &id), XXNET_OK);
  ASSERT_TRUE(poll_until(a, [&] { return a.count(XXNET_EVENT_EXPIRED) == 1; })) << a.dump();
  const double took = elapsed_ms(t0);
  const Event e = *a.first(XXNET_EVENT_EXPIRED);
  EXPECT_EQ(e.id, id);
  EXPECT_EQ(e.code, XXNET_E_EXPIRED_UNSENT) << e;
  EXPECT_GE(took, 150.0) << "expired before its deadline";
  EXPECT_LT(took, 2000.0);
  poll_for({&a}, 300ms);
  EXPECT_EQ(a.count(XXNET_EVENT_EXPIRED), 1u) << a.dump();
  EXPECT_EQ(sum_count(a, XXNET_EVENT_SEND_FAILED), 0u) << "a need-ack message is reported by EXPIRED only";
  EXPECT_EQ(a.count(XXNET_EVENT_DELIVERED), 0u);
}

// Sent to a peer that never acknowledges (a hand-written acceptor that stops
// after the handshake): EXPIRED with XXNET_E_ACK_TIMEOUT; conn_info shows it
// unacknowledged meanwhile.
TEST(Sessions, NeedAckNeverAcknowledgedExpiresWithAckTimeoutAndConnInfoShowsIt) {
  uint16_t port = 0;
  int lfd = plain_listener("127.0.0.1", &port);
  ASSERT_GE(lfd, 0);
  Ctx a;
  ASSERT_TRUE(a) << xxnet_last_error();
  xxnet_send_opts o = opts(0, 5);
  o.ack_timeout_ms = 400;
  uint64_t id = 0;
  ASSERT_EQ(xxnet_send_need_ack(a.get(), "127.0.0.1", port, bytes(std::string("unacked")), 7, &o, &id), XXNET_OK);
  int fd = raw_accept_handshake(lfd);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(poll_until(a, [&] { return a.count(XXNET_EVENT_CONNECTED) == 1; })) << a.dump();
  const uint64_t conn = a.first(XXNET_EVENT_CONNECTED)->conn;
  // The DATA frame arrives at our raw peer.
  std::string hdr, body;
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(recv_exact(fd, 16, hdr)) << "no frame from the connector";
    ASSERT_TRUE(recv_exact(fd, static_cast<size_t>(get_le(hdr, 0, 4)), body));
    if (static_cast<uint8_t>(hdr[4]) == kData) break;
  }
  ASSERT_EQ(static_cast<uint8_t>(hdr[4]), kData);
  EXPECT_EQ(body, "unacked");
  EXPECT_EQ(get_le(hdr, 8, 4), 5u);
  EXPECT_EQ(get_le(hdr, 12, 4), 1u) << "first seq of a new session";

  // conn_info: connected, one message sent and not acknowledged.
  xxnet_peer_info info;
  std::memset(&info, 0, sizeof info);
  ASSERT_TRUE(poll_until(a, [&] {
    return xxnet_conn_info(a.get(), conn, &info) == XXNET_OK && info.unacked_msgs == 1 && info.oldest_unacked_ms >= 50;
  })) << "state " << info.state << " unacked " << info.unacked_msgs << " oldest " << info.oldest_unacked_ms;
  EXPECT_EQ(info.state, static_cast<uint32_t>(XXNET_PEER_CONNECTED));
  EXPECT_EQ(info.unacked_bytes, 7u);
  EXPECT_EQ(info.queued_msgs, 0u);
  EXPECT_EQ(info.peer_port, port);
  EXPECT_STREQ(info.peer_ip, "127.0.0.1");

  ASSERT_TRUE(poll_until(a, [&] { return a.count(XXNET_EVENT_EXPIRED) == 1; })) << a.dump();
  const Event e = *a.first(XXNET_EVENT_EXPIRED);
  EXPECT_EQ(e.id, id);
  EXPECT_EQ(e.code, XXNET_E_ACK_TIMEOUT) << e;
  EXPECT_EQ(e.conn, conn);
  EXPECT_EQ(a.count(XXNET_EVENT_DELIVERED), 0u);
  ::close(fd);
  ::close(lfd);
}

// A peer that completes the handshake and then goes silent (a frozen
// process) is detected by the heartbeat: LINK_DOWN with XXNET_E_IDLE_TIMEOUT.
TEST(Sessions, SilentPeerIsDeclaredDownAfterIdleTimeout) {
  uint16_t port = 0;
  int lfd = plain_listener("127.0.0.1", &port);
  ASSERT_GE(lfd, 0);
  xxnet_config cfg = default_config();
  cfg.idle_timeout_ms = 300;
  Ctx a(cfg);
  ASSERT_TRUE(a) << xxnet_last_error();
  ASSERT_EQ(a.send("127.0.0.1", port, "hello?"), XXNET_OK);
  int fd = raw_accept_handshake(lfd);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(poll_until(a, [&] { return a.count(XXNET_EVENT_CONNECTED) == 1; })) << a.dump();
  const auto t0 = Clock::now();
  ASSERT_TRUE(poll_until(a, [&] { return a.count(XXNET_EVENT_LINK_DOWN) >= 1; })) << a.dump();
  const double took = elapsed_ms(t0);
  const Event d = *a.first(XXNET_EVENT_LINK_DOWN);
  EXPECT_EQ(d.code, XXNET_E_IDLE_TIMEOUT) << d;
  EXPECT_EQ(d.conn, a.first(XXNET_EVENT_CONNECTED)->conn);
  EXPECT_GE(took, 200.0);
  EXPECT_LT(took, 2000.0);
  // It sent PINGs to the silent peer before giving the link up.
  bool saw_ping = false;
  std::string hdr, body;
  for (int i = 0; i < 64 && !saw_ping && recv_exact(fd, 16, hdr, 200ms); ++i) {
    if (!recv_exact(fd, static_cast<size_t>(get_le(hdr, 0, 4)), body, 200ms)) break;
    saw_ping = static_cast<uint8_t>(hdr[4]) == kPing;
  }
  EXPECT_TRUE(saw_ping) << "no PING on an idle connection";
  ::close(fd);
  ::close(lfd);
}

// Back-pressure: past send_high_water a send returns XXNET_E_WOULD_BLOCK and
// queues nothing; once the backlog falls under send_low_water the host gets
// XXNET_EVENT_WRITABLE for that destination, and sends are accepted again.
TEST(Sessions, WouldBlockPastHighWaterThenWritable) {
  // B is not polled, so it acknowledges only what its reactor queues for its
  // host (recv_queue_limit, plus up to one read budget): A's backlog stays
  // far above the low-water mark until B's host drains.
  xxnet_config scfg = default_config();
  scfg.send_high_water = 4u << 20;
  scfg.send_low_water = 1u << 20;
  xxnet_config rcfg = default_config();
  rcfg.recv_queue_limit = 64u * 1024;
  Ctx a(scfg), b(rcfg);
  ASSERT_TRUE(a && b) << xxnet_last_error();
  const uint16_t pb = b.listen();
  ASSERT_NE(pb, 0);
  const std::string chunk = pattern(2, 64 * 1024);
  uint32_t accepted = 0;
  int rc = XXNET_OK;
  for (int i = 0; i < 100000 && rc == XXNET_OK; ++i) {
    rc = a.send("127.0.0.1", pb, chunk, 0, accepted);
    if (rc == XXNET_OK) ++accepted;
    if (i % 16 == 0) a.poll(1);  // let the reactor move bytes; B is not polled
  }
  ASSERT_EQ(rc, XXNET_E_WOULD_BLOCK) << xxnet_strerror(rc);
  EXPECT_GE(accepted, 64u) << "4 MiB of 64 KiB messages is at least 64 before blocking";
  const uint64_t queued_before = a.stats().queued_msgs;
  EXPECT_EQ(a.send("127.0.0.1", pb, chunk), XXNET_E_WOULD_BLOCK) << "still blocked";
  EXPECT_EQ(a.stats().queued_msgs, queued_before) << "a refused send queued nothing";
  EXPECT_EQ(a.count(XXNET_EVENT_WRITABLE), 0u);

  // Drain B: A's backlog falls, A gets WRITABLE for the address.
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return a.count(XXNET_EVENT_WRITABLE) >= 1; }, 10000ms))
      << "B got " << b.count(XXNET_EVENT_MESSAGE) << "/" << accepted << "\nA: " << a.dump();
  const Event w = *a.first(XXNET_EVENT_WRITABLE);
  EXPECT_EQ(w.peer_ip, "127.0.0.1");
  EXPECT_EQ(w.peer_port, pb);
  EXPECT_EQ(a.send("127.0.0.1", pb, chunk, 0, accepted), XXNET_OK);
  ++accepted;
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return b.count(XXNET_EVENT_MESSAGE) == accepted; }, 10000ms)) << b.dump();
  std::vector<Event> msgs = b.messages();
  for (uint32_t i = 0; i < msgs.size(); ++i) ASSERT_EQ(msgs[i].msg_id, i) << "nothing lost or reordered";
  EXPECT_EQ(a.count(XXNET_EVENT_SEND_FAILED), 0u) << a.dump();
}

// Main-thread timers: TIMER events with the id and user data, never early,
// repeating until stopped.
TEST(Sessions, TimersFireFromPollAndStop) {
  Ctx a;
  ASSERT_TRUE(a) << xxnet_last_error();
  uint64_t once = 0, every = 0;
  const auto t0 = Clock::now();
  ASSERT_EQ(xxnet_timer_start(a.get(), 50, 0, 1111, &once), XXNET_OK);
  ASSERT_EQ(xxnet_timer_start(a.get(), 20, 20, 2222, &every), XXNET_OK);
  ASSERT_NE(once, 0u);
  ASSERT_NE(every, 0u);
  ASSERT_NE(once, every);
  double first_once = -1;
  ASSERT_TRUE(poll_until(a, [&] {
    for (const Event& e : a.of(XXNET_EVENT_TIMER))
      if (e.id == once && first_once < 0) first_once = elapsed_ms(t0);
    size_t n = 0;
    for (const Event& e : a.of(XXNET_EVENT_TIMER)) n += e.id == every;
    return first_once >= 0 && n >= 5;
  })) << a.dump();
  EXPECT_GE(first_once, 49.0) << "a timer fired early";
  for (const Event& e : a.of(XXNET_EVENT_TIMER)) EXPECT_EQ(e.user_data, e.id == once ? 1111u : 2222u);
  EXPECT_EQ(xxnet_timer_stop(a.get(), once), XXNET_E_UNKNOWN_TIMER) << "a fired one-shot is no longer live";
  EXPECT_EQ(xxnet_timer_stop(a.get(), every), XXNET_OK);
  EXPECT_EQ(xxnet_timer_stop(a.get(), every), XXNET_E_UNKNOWN_TIMER);
  poll_for({&a}, 30ms);  // a TIMER already drained may still be in hand
  const size_t after_stop = a.count(XXNET_EVENT_TIMER);
  poll_for({&a}, 100ms);
  EXPECT_EQ(a.count(XXNET_EVENT_TIMER), after_stop) << "a stopped timer fired";
  size_t once_fired = 0;
  for (const Event& e : a.of(XXNET_EVENT_TIMER)) once_fired += e.id == once;
  EXPECT_EQ(once_fired, 1u);
}

namespace {

struct Dispatch {
  xxnet_ctx* ctx = nullptr;
  std::vector<std::string> routed, fallback;
  int connected = 0, reentrant_dispatch = -1, reentrant_poll = -1;
};

void on_route(const xxnet_event* e, void* user) {
  auto* d = static_cast<Dispatch*>(user);
  d->routed.emplace_back(reinterpret_cast<const char*>(e->data), e->len);
  // Polling from inside a handler is not allowed.
  d->reentrant_dispatch = static_cast<int>(xxnet_dispatch(d->ctx, 16, 0));
  xxnet_event tmp[2];
  d->reentrant_poll = static_cast<int>(xxnet_poll_recv(d->ctx, tmp, 2, 0));
}
void on_default(const xxnet_event* e, void* user) {
  static_cast<Dispatch*>(user)->fallback.emplace_back(reinterpret_cast<const char*>(e->data), e->len);
}
void on_connected(const xxnet_event*, void* user) { ++static_cast<Dispatch*>(user)->connected; }

}  // namespace

// xxnet_dispatch: routes by msg_id, a default route, handlers per event kind.
TEST(Sessions, DispatchRoutesMessagesAndEvents) {
  Ctx a, b;
  ASSERT_TRUE(a && b) << xxnet_last_error();
  const uint16_t pb = b.listen();
  ASSERT_NE(pb, 0);
  Dispatch d;
  d.ctx = b.get();
  ASSERT_EQ(xxnet_route(b.get(), 7, on_route, &d), XXNET_OK);
  ASSERT_EQ(xxnet_route_default(b.get(), on_default, &d), XXNET_OK);
  ASSERT_EQ(xxnet_on(b.get(), XXNET_EVENT_CONNECTED, on_connected, &d), XXNET_OK);
  for (uint32_t i = 0; i < 6; ++i) ASSERT_EQ(a.send("127.0.0.1", pb, "m" + std::to_string(i), 0, i % 2 ? 7 : 8), XXNET_OK);
  const auto deadline = Clock::now() + kWait;
  for (int i = 0; i < 1000 && d.routed.size() + d.fallback.size() < 6 && Clock::now() < deadline; ++i) {
    xxnet_dispatch(b.get(), 64, 10);
    a.poll(0);
  }
  EXPECT_EQ(d.routed, (std::vector<std::string>{"m1", "m3", "m5"}));
  EXPECT_EQ(d.fallback, (std::vector<std::string>{"m0", "m2", "m4"}));
  EXPECT_EQ(d.connected, 1);
  EXPECT_EQ(d.reentrant_dispatch, 0) << "xxnet_dispatch from inside a handler must return 0";
  EXPECT_EQ(d.reentrant_poll, 0) << "xxnet_poll_recv from inside a handler must not poll";
  // Removing a route sends its messages to the default route.
  ASSERT_EQ(xxnet_route(b.get(), 7, nullptr, nullptr), XXNET_OK);
  ASSERT_EQ(a.send("127.0.0.1", pb, "late", 0, 7), XXNET_OK);
  for (int i = 0; i < 1000 && d.fallback.size() < 4 && Clock::now() < deadline + kWait; ++i) xxnet_dispatch(b.get(), 64, 10);
  EXPECT_EQ(d.fallback.back(), "late");
  EXPECT_EQ(d.routed.size(), 3u);
}

// Connection user data is copied into every later event of that connection.
TEST(Sessions, UserDataFollowsTheConnection) {
  Ctx a, b;
  ASSERT_TRUE(a && b) << xxnet_last_error();
  const uint16_t pb = b.listen();
  ASSERT_NE(pb, 0);
  ASSERT_EQ(a.send("127.0.0.1", pb, "one"), XXNET_OK);
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return b.count(XXNET_EVENT_MESSAGE) == 1; })) << b.dump();
  const uint64_t bconn = b.first(XXNET_EVENT_CONNECTED)->conn;
  EXPECT_EQ(b.messages()[0].user_data, 0u);
  ASSERT_EQ(xxnet_conn_set_user_data(b.get(), bconn, 0xC0FFEEull), XXNET_OK);
  ASSERT_EQ(a.send("127.0.0.1", pb, "two"), XXNET_OK);
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return b.count(XXNET_EVENT_MESSAGE) == 2; })) << b.dump();
  EXPECT_EQ(b.messages()[1].user_data, 0xC0FFEEull);
  ASSERT_EQ(xxnet_close(a.get(), a.first(XXNET_EVENT_CONNECTED)->conn), XXNET_OK);
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return b.count(XXNET_EVENT_DISCONNECTED) == 1; })) << b.dump();
  EXPECT_EQ(b.first(XXNET_EVENT_DISCONNECTED)->user_data, 0xC0FFEEull);
}

namespace {

struct LogSink {
  std::mutex mu;
  std::vector<std::string> lines;
  std::atomic<int> over_level{0};
  int max_level = 0;
};

void log_to_sink(int level, const char* target, const char* message, void* user) {
  auto* s = static_cast<LogSink*>(user);
  if (level > s->max_level || level < XXNET_LOG_ERROR) s->over_level.fetch_add(1);
  std::lock_guard<std::mutex> g(s->mu);
  s->lines.push_back(std::to_string(level) + " " + (target ? target : "?") + ": " + (message ? message : "?"));
}

}  // namespace

// The log handler receives xxnet's lines up to the level asked for.
TEST(Sessions, LogHandlerGetsLinesUpToItsLevel) {
  LogSink sink;
  sink.max_level = XXNET_LOG_INFO;
  ASSERT_EQ(xxnet_set_log_handler(log_to_sink, &sink, XXNET_LOG_INFO), XXNET_OK);
  {
    Ctx a;
    ASSERT_TRUE(a) << xxnet_last_error();
    a.listen();  // "listening on ..." is an INFO line
  }
  // Back to the default before the sink goes away (the reactor thread logs too).
  ASSERT_EQ(xxnet_set_log_handler(nullptr, nullptr, XXNET_LOG_WARN), XXNET_OK);
  std::lock_guard<std::mutex> g(sink.mu);
  EXPECT_FALSE(sink.lines.empty()) << "no log line at INFO level";
  EXPECT_EQ(sink.over_level.load(), 0) << "a line above the requested level";
}
