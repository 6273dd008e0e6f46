// Per-thread reactors through the C API and the C++ wrapper: io_threads in
// the config, xxnet_reactor_stats, one poll for every reactor's events.
#include "test_util.hpp"

#include <xxnet.hpp>

#include <map>
#include <memory>
#include <set>

using namespace xt;

namespace {

xxnet_stats_t reactor(Ctx& c, uint32_t k, int* rc = nullptr) {
  xxnet_stats_t s;
  std::memset(&s, 0, sizeof s);
  int r = xxnet_reactor_stats(c.get(), k, &s);
  if (rc) *rc = r;
  return s;
}

}  // namespace

TEST(Reactors, TwoReactorsServeEightClientsThroughOnePoll) {
  xxnet_config cfg = default_config();
  cfg.io_threads = 2;
  Ctx server(cfg);
  ASSERT_TRUE(server);
  uint16_t port = server.listen();
  std::vector<std::unique_ptr<Ctx>> clients;
  for (int i = 0; i < 8; ++i) {
    clients.push_back(std::make_unique<Ctx>());
    for (uint32_t seq = 0; seq < 300; ++seq)
      ASSERT_EQ(clients.back()->send("127.0.0.1", port, pattern(seq * 8 + static_cast<uint32_t>(i), 100), 0, seq), XXNET_OK);
  }
  ASSERT_TRUE(poll_until(server, [&] { return server.count(XXNET_EVENT_MESSAGE) == 8 * 300; })) << server.dump();
  std::map<uint64_t, uint32_t> next;  // per conn: next msg_id expected
  std::set<uint64_t> residues;
  for (const Event& e : server.messages()) {
    uint32_t& n = next[e.conn];
    ASSERT_EQ(e.msg_id, n) << "conn " << e.conn << " out of order";
    ++n;
    residues.insert(e.conn % 2);
  }
  EXPECT_EQ(next.size(), 8u);
  EXPECT_EQ(residues.size(), 2u) << "sessions on both reactors";
  xxnet_stats_t all = settled_stats(server, [](const xxnet_stats_t& s) { return s.msgs_in == 2400; });
  xxnet_stats_t r0 = reactor(server, 0), r1 = reactor(server, 1);
  EXPECT_EQ(r0.msgs_in + r1.msgs_in, all.msgs_in);
  EXPECT_EQ(r0.open_connections + r1.open_connections, 8u);
  EXPECT_GT(r0.open_connections, 0u);
  EXPECT_GT(r1.open_connections, 0u);
}

TEST(Reactors, ReactorStatsArguments) {
  xxnet_config cfg = default_config();
  cfg.io_threads = 3;
  Ctx c(cfg);
  ASSERT_TRUE(c);
  int rc = 0;
  for (uint32_t k = 0; k < 3; ++k) {
    reactor(c, k, &rc);
    EXPECT_EQ(rc, XXNET_OK) << k;
  }
  reactor(c, 3, &rc);
  EXPECT_EQ(rc, XXNET_E_INVALID_ARG);
  xxnet_stats_t s;
  EXPECT_EQ(xxnet_reactor_stats(nullptr, 0, &s), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_reactor_stats(c.get(), 0, nullptr), XXNET_E_NULL_POINTER);
  xxnet_config bad = default_config();
  bad.io_threads = 0;
  EXPECT_EQ(xxnet_new(&bad), nullptr);
  EXPECT_NE(std::string(xxnet_last_error()).find("io_threads"), std::string::npos) << xxnet_last_error();
}

TEST(Reactors, WrapperSetsIoThreads) {
  xxnet::Context server(xxnet::Config().io_threads(2));
  xxnet::Context client;
  uint16_t port = server.listen("127.0.0.1");
  int got = 0;
  server.route(5, [&](const xxnet::Event&) { ++got; });
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(client.send("127.0.0.1", port, "x", {0, 5}).ok());
  // A burst marked `more`, handed over by flush().
  xxnet::SendOptions more;
  more.msg_id = 5;
  more.with_more();
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(client.send("127.0.0.1", port, "y", more).ok());
  ASSERT_TRUE(client.flush().ok());
  for (int round = 0; round < 500 && got < 100; ++round) {
    client.dispatch(256, 0);
    server.dispatch(256, 10);
  }
  EXPECT_EQ(got, 100);
  EXPECT_EQ(server.reactor_stats(0).msgs_in + server.reactor_stats(1).msgs_in, server.stats().msgs_in);
  EXPECT_THROW((void)server.reactor_stats(2), xxnet::Error);
}
