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

/// Starts xxnet_node --echo on 127.0.0.1:0 and returns its port (0 on failure).
uint16_t start_echo_node(Child& node) {
  const std::string path = node_path();
  if (access(path.c_str(), X_OK) != 0) {
    ADD_FAILURE() << "xxnet_node not found at " << path << " (set XXNET_NODE)";
    return 0;
  }
  if (!node.spawn({path, "--listen", "127.0.0.1:0", "--echo", "--max-lifetime", "60", "--verbose"})) return 0;
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

TEST(TwoProcess, KilledPeerProcessGivesDisconnectedAndFailedConnects) {
  Child node;
  const uint16_t port = start_echo_node(node);
  ASSERT_NE(port, 0);
  Ctx me;
  ASSERT_TRUE(me) << xxnet_last_error();
  ASSERT_EQ(me.send("127.0.0.1", port, "are you there"), XXNET_OK);
  ASSERT_TRUE(poll_until(me, [&] { return me.count(XXNET_EVENT_MESSAGE) == 1; })) << me.dump();

  node.kill_and_reap();  // SIGKILL: the kernel closes its sockets
  ASSERT_TRUE(poll_until(me, [&] { return me.count(XXNET_EVENT_DISCONNECTED) == 1; })) << me.dump();
  const int code = me.first(XXNET_EVENT_DISCONNECTED)->code;
  EXPECT_TRUE(code == XXNET_E_PEER_CLOSED || code == XXNET_E_CONN_RESET) << code << " " << xxnet_strerror(code);

  // Nobody listens there any more: the next send fails to connect and reports the message.
  ASSERT_EQ(me.send("127.0.0.1", port, "anyone?"), XXNET_OK);
  ASSERT_TRUE(poll_until(me, [&] {
    return me.count(XXNET_EVENT_CONNECT_FAILED) == 1 && me.count(XXNET_EVENT_SEND_FAILED) == 1;
  })) << me.dump();
  EXPECT_EQ(me.first(XXNET_EVENT_CONNECT_FAILED)->code, XXNET_E_CONNECT_REFUSED);
  EXPECT_EQ(me.first(XXNET_EVENT_SEND_FAILED)->count, 1u);
}
