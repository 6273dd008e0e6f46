// Closing connections, freeing contexts under load, and leak checks (fds, threads).
#include "test_util.hpp"

using namespace xt;

TEST(Lifecycle, CloseLiveConnectionDisconnectsBothSidesThenReconnects) {
  Ctx a, b;
  ASSERT_TRUE(a && b) << xxnet_last_error();
  const uint16_t pb = b.listen();
  ASSERT_NE(pb, 0);
  ASSERT_EQ(a.send("127.0.0.1", pb, "one"), XXNET_OK);
  ASSERT_TRUE(poll_until({&a, &b}, [&] {
    return a.count(XXNET_EVENT_CONNECTED) == 1 && b.count(XXNET_EVENT_MESSAGE) == 1;
  })) << a.dump() << b.dump();
  const uint64_t conn = a.first(XXNET_EVENT_CONNECTED)->conn;
  const uint64_t bconn = b.first(XXNET_EVENT_CONNECTED)->conn;
  // Wait for B's acknowledgement, so nothing is outstanding when A closes.
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return a.stats().msgs_acked == 1; })) << "msgs_acked " << a.stats().msgs_acked;

  ASSERT_EQ(xxnet_close(a.get(), conn), XXNET_OK);
  ASSERT_TRUE(poll_until({&a, &b}, [&] {
    return a.count(XXNET_EVENT_DISCONNECTED) == 1 && b.count(XXNET_EVENT_DISCONNECTED) == 1;
  })) << "A: " << a.dump() << "\nB: " << b.dump();
  const Event da = *a.first(XXNET_EVENT_DISCONNECTED), db = *b.first(XXNET_EVENT_DISCONNECTED);
  EXPECT_EQ(da.conn, conn);
  EXPECT_EQ(da.code, XXNET_E_LOCAL_CLOSE) << da;
  EXPECT_EQ(da.peer_port, pb);
  EXPECT_EQ(db.conn, bconn);
  EXPECT_EQ(db.code, XXNET_E_PEER_CLOSED) << "A's GOAWAY ends B's side of the session: " << db;
  EXPECT_EQ(b.count(XXNET_EVENT_LINK_DOWN), 0u) << "B must not wait for a reconnect: " << b.dump();
  EXPECT_EQ(a.count(XXNET_EVENT_SEND_FAILED), 0u) << "nothing was queued: " << a.dump();

  // The id is dead once its DISCONNECTED was delivered.
  EXPECT_EQ(xxnet_close(a.get(), conn), XXNET_E_UNKNOWN_CONN);
  EXPECT_EQ(a.send_conn(conn, "late"), XXNET_E_UNKNOWN_CONN);
  EXPECT_EQ(b.send_conn(bconn, "late"), XXNET_E_UNKNOWN_CONN);
  EXPECT_TRUE(poll_until({&a, &b}, [&] {
    return a.stats().open_connections == 0 && b.stats().open_connections == 0;
  }));

  // The next send to the address opens a new connection with a new id.
  ASSERT_EQ(a.send("127.0.0.1", pb, "two"), XXNET_OK);
  ASSERT_TRUE(poll_until({&a, &b}, [&] {
    return a.count(XXNET_EVENT_CONNECTED) == 2 && b.count(XXNET_EVENT_MESSAGE) == 2;
  })) << a.dump() << b.dump();
  EXPECT_NE(a.of(XXNET_EVENT_CONNECTED)[1].conn, conn);
  EXPECT_EQ(b.messages()[1].data, "two");
}

// Closing a connection with messages still queued reports them in SEND_FAILED
// (code LOCAL_CLOSE) before DISCONNECTED, and every message is accounted
// for: acknowledged by the peer, or reported failed ("sent, not acknowledged"
// with id 1, "never sent" with id 0).
TEST(Lifecycle, CloseWithQueuedMessagesReportsSendFailed) {
  xxnet_config rcfg = default_config();
  rcfg.recv_queue_limit = 1u << 20;  // the receiver stops reading early: the sender's queue backs up
  Ctx a, b(rcfg);
  ASSERT_TRUE(a && b) << xxnet_last_error();
  const uint16_t pb = b.listen();
  ASSERT_NE(pb, 0);
  ASSERT_EQ(a.send("127.0.0.1", pb, "hello"), XXNET_OK);
  ASSERT_TRUE(poll_until({&a, &b}, [&] {
    return a.count(XXNET_EVENT_CONNECTED) == 1 && b.count(XXNET_EVENT_MESSAGE) == 1 && a.stats().msgs_acked == 1;
  }));
  const uint64_t conn = a.first(XXNET_EVENT_CONNECTED)->conn;

  constexpr uint32_t kN = 96;
  // 24 MiB in all: more than the kernel buffers hold, under the default per-destination send limit.
  const std::string chunk = pattern(1, 256 * 1024);
  for (uint32_t i = 0; i < kN; ++i) ASSERT_EQ(a.send("127.0.0.1", pb, chunk, 1, i), XXNET_OK);
  // Let some of it go out (B is not polled, so it stops reading), then close.
  poll_for({&a}, 200ms);
  ASSERT_EQ(xxnet_close(a.get(), conn), XXNET_OK);
  ASSERT_TRUE(poll_until(a, [&] { return a.count(XXNET_EVENT_DISCONNECTED) == 1; })) << a.dump();

  uint64_t failed = 0, failed_bytes = 0, unsent = 0;
  uint32_t first_failed = UINT32_MAX;
  size_t failed_at = 0, disc_at = 0;
  for (size_t i = 0; i < a.events.size(); ++i) {
    const Event& e = a.events[i];
    if (e.kind == XXNET_EVENT_SEND_FAILED) {
      failed += e.count;
      failed_bytes += e.total;
      if (e.id == 0) unsent += e.count;
      first_failed = std::min(first_failed, e.msg_id);
      failed_at = i;
      EXPECT_EQ(e.code, XXNET_E_LOCAL_CLOSE) << e;
      EXPECT_EQ(e.conn, conn);
      EXPECT_EQ(e.lane, 1u);
      EXPECT_LE(e.id, 1u);
    }
    if (e.kind == XXNET_EVENT_DISCONNECTED) disc_at = i;
  }
  EXPECT_GT(failed, 0u) << "all 24 MiB were acknowledged although the receiver stopped reading? " << a.dump();
  EXPECT_GT(unsent, 0u) << "nothing was left unsent? " << a.dump();
  EXPECT_LT(failed_at, disc_at) << "SEND_FAILED must come before DISCONNECTED";
  EXPECT_EQ(failed_bytes, failed * chunk.size());
  EXPECT_EQ(a.first(XXNET_EVENT_DISCONNECTED)->code, XXNET_E_LOCAL_CLOSE);
  // Accounting: every message handed over is acknowledged or reported failed;
  // the failed ones are the tail.
  xxnet_stats_t s = settled_stats(a, [&](const xxnet_stats_t& t) { return t.send_failed_msgs == failed; });
  EXPECT_EQ(s.msgs_acked + s.send_failed_msgs, kN + 1);
  EXPECT_EQ(s.send_failed_msgs, failed);
  EXPECT_EQ(s.queued_msgs, 0u);
  EXPECT_EQ(s.queued_bytes, 0u);
  EXPECT_EQ(first_failed, kN - failed) << "the failed messages are the last ones sent";

  // B receives whole messages, in order: at least those A saw acknowledged,
  // and none that A reports as never sent. A's GOAWAY ends B's session.
  poll_until(b, [&] { return b.count(XXNET_EVENT_DISCONNECTED) == 1; }, 10000ms);
  EXPECT_EQ(b.count(XXNET_EVENT_DISCONNECTED), 1u) << b.dump();
  std::vector<Event> got = b.messages();
  ASSERT_GE(got.size(), 1u);
  const uint64_t got_chunks = got.size() - 1;
  EXPECT_GE(got_chunks, s.msgs_acked - 1);
  EXPECT_LE(got_chunks, kN - unsent);
  for (size_t i = 1; i < got.size(); ++i) {
    ASSERT_EQ(got[i].msg_id, i - 1);
    ASSERT_TRUE(got[i].data == chunk);
  }
}

// xxnet_free while traffic flows both ways returns within 1 s and leaves no
// socket or thread behind.
TEST(Lifecycle, FreeUnderTrafficIsFastAndLeaksNothing) {
  const int fds0 = open_fds(), threads0 = threads();
  ASSERT_GT(fds0, 0);
  ASSERT_GT(threads0, 0);
  {
    Ctx a, b;
    ASSERT_TRUE(a && b) << xxnet_last_error();
    const uint16_t pa = a.listen(), pb = b.listen();
    ASSERT_TRUE(pa && pb);
    const std::string chunk = pattern(3, 64 * 1024);
    // Keep both directions busy for a while; poll only part of the time.
    const auto until = Clock::now() + 300ms;
    // A send may be refused with XXNET_E_WOULD_BLOCK once a destination's backlog is over the limit.
    for (int i = 0; i < 2000 && Clock::now() < until; ++i) {
      const int ra = a.send("127.0.0.1", pb, chunk, i % 2, static_cast<uint32_t>(i));
      const int rb = b.send("127.0.0.1", pa, chunk, i % 2, static_cast<uint32_t>(i));
      ASSERT_TRUE(ra == XXNET_OK || ra == XXNET_E_WOULD_BLOCK) << xxnet_strerror(ra);
      ASSERT_TRUE(rb == XXNET_OK || rb == XXNET_E_WOULD_BLOCK) << xxnet_strerror(rb);
      if (i % 4 == 0) {
        a.poll(1);
        b.poll(1);
      }
    }
    ASSERT_GT(threads(), threads0) << "no reactor threads running?";
    EXPECT_GT(a.count(XXNET_EVENT_MESSAGE) + b.count(XXNET_EVENT_MESSAGE), 0u) << "no traffic flowed";
    auto t0 = Clock::now();
    a.free();
    const double free_a = elapsed_ms(t0);
    t0 = Clock::now();
    b.free();
    const double free_b = elapsed_ms(t0);
    EXPECT_LT(free_a, 1000.0) << "xxnet_free took " << free_a << " ms";
    EXPECT_LT(free_b, 1000.0) << "xxnet_free took " << free_b << " ms";
  }
  // Let the counts settle for a moment (nothing should be left, but a thread may still be exiting).
  EXPECT_TRUE(wait_until([&] { return open_fds() == fds0 && threads() == threads0; }, 500ms))
      << "fds " << fds0 << " -> " << open_fds() << ", threads " << threads0 << " -> " << threads();
}

// Many contexts created and freed in a row: no growth in fds or threads.
TEST(Lifecycle, RepeatedNewFreeLeaksNothing) {
  const int fds0 = open_fds(), threads0 = threads();
  for (int i = 0; i < 50; ++i) {
    Ctx a;
    ASSERT_TRUE(a) << xxnet_last_error();
    a.listen();
    if (i % 10 == 0) {
      Ctx b;
      ASSERT_TRUE(b);
      ASSERT_EQ(b.send("127.0.0.1", 1, "x"), XXNET_OK);  // port 1: refused, asynchronously
    }
  }
  EXPECT_TRUE(wait_until([&] { return open_fds() == fds0 && threads() == threads0; }, 500ms))
      << "fds " << fds0 << " -> " << open_fds() << ", threads " << threads0 << " -> " << threads();
}

// A peer that is freed while connected: the other side sees DISCONNECTED.
TEST(Lifecycle, PeerFreedGivesDisconnected) {
  Ctx a, b;
  ASSERT_TRUE(a && b) << xxnet_last_error();
  const uint16_t pb = b.listen();
  ASSERT_NE(pb, 0);
  ASSERT_EQ(a.send("127.0.0.1", pb, "hi"), XXNET_OK);
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return a.count(XXNET_EVENT_CONNECTED) == 1 && b.count(XXNET_EVENT_MESSAGE) == 1; }));
  b.free();
  ASSERT_TRUE(poll_until(a, [&] { return a.count(XXNET_EVENT_DISCONNECTED) == 1; })) << a.dump();
  const Event d = *a.first(XXNET_EVENT_DISCONNECTED);
  EXPECT_TRUE(d.code == XXNET_E_PEER_CLOSED || d.code == XXNET_E_CONN_RESET || d.code == XXNET_E_SHUTDOWN) << d;
  EXPECT_TRUE(poll_until(a, [&] { return a.stats().open_connections == 0; }));
}
