// Two processes: this test and examples/xxnet_node (an echo peer).
#include "test_util.hpp"

using namespace xt;

namespace {

// Path of the xxnet_node binary: $XXNET_NODE, else the one CMake built.
std::string node_path() {
  const char* env = std::getenv("XXNET_NODE");
  if (env != nullptr && *env != '\0') return env;
#ifdef XXNET_NODE_PATH
  return XXNET_NODE_PATH;
#else
  return "xxnet_node";
#endif
}

/// Starts xxnet_node --echo on 127.0.0.1:`port` (0: any) and returns its port (0 on failure).
uint16_t start_echo_node(Child& node, uint16_t port_wanted = 0) {
  const std::string path = node_path();
  if (access(path.c_str(), X_OK) != 0) {
    ADD_FAILURE() << "xxnet_node not found at " << path << " (set XXNET_NODE)";
    return 0;
  }
  const std::string listen = "127.0.0.1:" + std::to_string(port_wanted);
  if (!node.spawn({path, "--listen", listen, "--echo", "--max-lifetime", "60", "--verbose"})) return 0;
  std::string line;
  if (!node.read_line(line, kWait)) {
    ADD_FAILURE() << "xxnet_node printed no PORT line within 5 s";
    return 0;
  }
  unsigned port = 0;
  if (std::sscanf(line.c_str(), "PORT %u", &port) != 1 || port == 0 || port > 65535) {
    ADD_FAILURE() << "unexpected first line from xxnet_node: " << line;
    return 0;
  }
  return static_cast<uint16_t>(port);
}

}  // namespace

TEST(TwoProcess, EchoNodeReturnsEveryMessageIntactInOrderPerLane) {
  Child node;
  const uint16_t port = start_echo_node(node);
  ASSERT_NE(port, 0);

  Ctx me;
  ASSERT_TRUE(me) << xxnet_last_error();
  constexpr uint32_t kN = 1000;
  auto size_of = [](uint32_t i) -> size_t {
    if (i % 100 == 99) return 100 * 1024 + i;  // multi-part messages
    if (i % 50 == 7) return 0;                 // empty messages
    return (i * 7919u) % 5000u;
  };
  uint64_t sent_bytes = 0;
  for (uint32_t i = 0; i < kN; ++i) {
    const std::string m = pattern(i, size_of(i));
    sent_bytes += m.size();
    ASSERT_EQ(me.send("127.0.0.1", port, m, i % XXNET_LANES, i), XXNET_OK) << i;
  }
  ASSERT_TRUE(poll_until(me, [&] { return me.count(XXNET_EVENT_MESSAGE) >= kN; }, 15000ms))
      << "echoed " << me.count(XXNET_EVENT_MESSAGE) << "/" << kN << ": " << me.dump();
  poll_for({&me}, 100ms);

  const std::vector<Event> msgs = me.messages();
  ASSERT_EQ(msgs.size(), kN);
  uint32_t next[XXNET_LANES];
  for (uint32_t l = 0; l < XXNET_LANES; ++l) next[l] = l;
  uint64_t got_bytes = 0;
  for (const Event& m : msgs) {
    ASSERT_LT(m.lane, static_cast<uint32_t>(XXNET_LANES));
    ASSERT_EQ(m.msg_id, next[m.lane]) << "lane " << m.lane << " out of order";
    next[m.lane] += XXNET_LANES;
    ASSERT_EQ(m.data.size(), size_of(m.msg_id)) << "msg " << m.msg_id;
    ASSERT_TRUE(m.data == pattern(m.msg_id, m.data.size())) << "payload of msg " << m.msg_id << " corrupted";
    ASSERT_EQ(m.peer_port, port);
    got_bytes += m.data.size();
  }
  EXPECT_EQ(got_bytes, sent_bytes);
  EXPECT_EQ(me.count(XXNET_EVENT_CONNECTED), 1u) << me.dump();
  EXPECT_EQ(me.count(XXNET_EVENT_DISCONNECTED), 0u) << me.dump();
  EXPECT_EQ(me.count(XXNET_EVENT_SEND_FAILED), 0u) << me.dump();

  // Closing its stdin ends the node cleanly.
  node.close_stdin();
  int status = 0;
  ASSERT_TRUE(node.wait_exit(5000ms, &status)) << "xxnet_node did not exit after stdin EOF";
  EXPECT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  ASSERT_TRUE(poll_until(me, [&] { return me.count(XXNET_EVENT_DISCONNECTED) == 1; })) << me.dump();
  const int code = me.first(XXNET_EVENT_DISCONNECTED)->code;
  EXPECT_TRUE(code == XXNET_E_PEER_CLOSED || code == XXNET_E_CONN_RESET || code == XXNET_E_SHUTDOWN)
      << code << " " << xxnet_strerror(code);
}

// A peer process that dies: the session loses its link (LINK_DOWN), retries
// with backoff (each failed attempt a CONNECT_FAILED), and gives up after
// reconnect_give_up_ms (DISCONNECTED), reporting what it held.
TEST(TwoProcess, KilledPeerGivesLinkDownRetriesThenGivesUp) {
  Child node;
  const uint16_t port = start_echo_node(node);
  ASSERT_NE(port, 0);
  xxnet_config cfg = default_config();
  cfg.reconnect_min_ms = 20;
  cfg.reconnect_max_ms = 100;
  cfg.reconnect_give_up_ms = 600;
  Ctx me(cfg);
  ASSERT_TRUE(me) << xxnet_last_error();
  ASSERT_EQ(me.send("127.0.0.1", port, "are you there"), XXNET_OK);
  ASSERT_TRUE(poll_until(me, [&] { return me.count(XXNET_EVENT_MESSAGE) == 1; })) << me.dump();
  const uint64_t conn = me.first(XXNET_EVENT_CONNECTED)->conn;

  node.kill_and_reap();  // SIGKILL: the kernel closes its sockets, no GOAWAY
  ASSERT_TRUE(poll_until(me, [&] { return me.count(XXNET_EVENT_LINK_DOWN) == 1; })) << me.dump();
  const Event down = *me.first(XXNET_EVENT_LINK_DOWN);
  EXPECT_EQ(down.conn, conn);
  EXPECT_TRUE(down.code == XXNET_E_PEER_CLOSED || down.code == XXNET_E_CONN_RESET) << down;
  // Sent while the link is down: held by the session, reported when it gives up.
  ASSERT_EQ(me.send("127.0.0.1", port, "anyone?", 0, 7), XXNET_OK);
  const auto t0 = Clock::now();
  ASSERT_TRUE(poll_until(me, [&] { return me.count(XXNET_EVENT_DISCONNECTED) == 1; })) << me.dump();
  const double took = elapsed_ms(t0);
  const Event d = *me.first(XXNET_EVENT_DISCONNECTED);
  EXPECT_EQ(d.conn, conn);
  // The reason is the last failure: the refused reconnects (or the lost link).
  EXPECT_TRUE(d.code == XXNET_E_CONNECT_REFUSED || d.code == down.code) << d;
  EXPECT_GE(took, 400.0) << "gave up before reconnect_give_up_ms";
  EXPECT_LT(took, 3000.0);
  EXPECT_GE(me.count(XXNET_EVENT_CONNECT_FAILED), 2u) << "it should have retried: " << me.dump();
  for (const Event& f : me.of(XXNET_EVENT_CONNECT_FAILED)) EXPECT_EQ(f.code, XXNET_E_CONNECT_REFUSED) << f;
  uint64_t failed = 0;
  for (const Event& f : me.of(XXNET_EVENT_SEND_FAILED)) {
    failed += f.count;
    EXPECT_EQ(f.conn, conn);
  }
  EXPECT_EQ(failed, 1u) << me.dump();
  EXPECT_EQ(me.count(XXNET_EVENT_LINK_UP), 0u);
  EXPECT_EQ(me.send_conn(conn, "late"), XXNET_E_UNKNOWN_CONN);
}

// A peer process that restarts on the same port: the session reconnects,
// sees a new instance, and ends the old session (DISCONNECTED with
// XXNET_E_PEER_RESTARTED, its held messages reported, never replayed); a new
// session (CONNECTED, new conn id) carries new traffic.
TEST(TwoProcess, RestartedPeerEndsTheOldSessionAndStartsANewOne) {
  Child node;
  const uint16_t port = start_echo_node(node);
  ASSERT_NE(port, 0);
  xxnet_config cfg = default_config();
  cfg.reconnect_min_ms = 20;
  cfg.reconnect_max_ms = 100;
  Ctx me(cfg);
  ASSERT_TRUE(me) << xxnet_last_error();
  ASSERT_EQ(me.send("127.0.0.1", port, "first life"), XXNET_OK);
  ASSERT_TRUE(poll_until(me, [&] { return me.count(XXNET_EVENT_MESSAGE) == 1; })) << me.dump();
  const uint64_t old_conn = me.first(XXNET_EVENT_CONNECTED)->conn;

  node.kill_and_reap();
  ASSERT_TRUE(poll_until(me, [&] { return me.count(XXNET_EVENT_LINK_DOWN) == 1; })) << me.dump();
  ASSERT_EQ(me.send("127.0.0.1", port, "sent while it was dead", 0, 1), XXNET_OK);
  Child reborn;
  ASSERT_EQ(start_echo_node(reborn, port), port);
  // The session reconnects by itself, meets the new instance, and starts over.
  ASSERT_TRUE(poll_until(me, [&] {
    return me.count(XXNET_EVENT_DISCONNECTED) == 1 && me.count(XXNET_EVENT_CONNECTED) == 2;
  })) << me.dump();
  ASSERT_EQ(me.send("127.0.0.1", port, "second life", 0, 2), XXNET_OK);
  ASSERT_TRUE(poll_until(me, [&] { return me.count(XXNET_EVENT_MESSAGE) >= 2; })) << me.dump();
  poll_for({&me}, 100ms);
  const Event d = *me.first(XXNET_EVENT_DISCONNECTED);
  EXPECT_EQ(d.conn, old_conn);
  EXPECT_EQ(d.code, XXNET_E_PEER_RESTARTED) << d;
  const Event c2 = me.of(XXNET_EVENT_CONNECTED)[1];
  EXPECT_NE(c2.conn, old_conn);
  EXPECT_EQ(c2.peer_port, port);
  // Nothing of the old session reaches the new instance; what it held is reported.
  std::vector<Event> msgs = me.messages();
  ASSERT_EQ(msgs.size(), 2u) << me.dump();
  EXPECT_EQ(msgs[1].data, "second life");
  EXPECT_EQ(msgs[1].conn, c2.conn);
  uint64_t reported = 0;
  for (const Event& f : me.of(XXNET_EVENT_SEND_FAILED)) {
    reported += f.count;
    EXPECT_EQ(f.conn, old_conn);
    EXPECT_EQ(f.code, XXNET_E_PEER_RESTARTED) << f;
  }
  EXPECT_EQ(reported, 1u) << "\"sent while it was dead\" belongs to the old session: " << me.dump();
  reborn.close_stdin();
  int status = 0;
  EXPECT_TRUE(reborn.wait_exit(5000ms, &status));
}
