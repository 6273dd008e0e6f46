// max_connections, refused peers, failed connects, and the delivery-accounting guarantee.
#include "test_util.hpp"

#include <memory>

using namespace xt;

TEST(Limits, MaxConnectionsRefusesExtraClients) {
  xxnet_config scfg = default_config();
  scfg.max_connections = 2;
  Ctx server(scfg);
  ASSERT_TRUE(server) << xxnet_last_error();
  const uint16_t ps = server.listen();
  ASSERT_NE(ps, 0);

  constexpr int kClients = 5;
  constexpr uint32_t kPerClient = 3;
  std::vector<std::unique_ptr<Ctx>> clients;
  // Clients whose sessions give up at the first failure (by default a refused
  // session keeps retrying with backoff for reconnect_give_up_ms).
  const xxnet_config ccfg = no_retry_config();
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<Ctx>(ccfg));
    ASSERT_TRUE(*clients.back()) << xxnet_last_error();
  }
  for (int i = 0; i < kClients; ++i)
    for (uint32_t m = 0; m < kPerClient; ++m)
      ASSERT_EQ(clients[i]->send("127.0.0.1", ps, "client " + std::to_string(i), 0, m), XXNET_OK);

  auto settled = [&](const Ctx& c) {
    if (c.count(XXNET_EVENT_CONNECTED) > 0) return true;
    uint64_t failed = 0;
    for (const Event& e : c.of(XXNET_EVENT_SEND_FAILED)) failed += e.count;
    return c.count(XXNET_EVENT_CONNECT_FAILED) > 0 && failed >= kPerClient;
  };
  auto all_settled = [&] {
    for (auto& c : clients)
      if (!settled(*c)) return false;
    return server.count(XXNET_EVENT_MESSAGE) >= 2 * kPerClient;
  };
  std::initializer_list<Ctx*> everyone = {&server, clients[0].get(), clients[1].get(), clients[2].get(),
                                          clients[3].get(), clients[4].get()};
  const bool ok = poll_until(everyone, all_settled, 8000ms);
  poll_for(everyone, 200ms);  // late surprises (a third CONNECTED, ...) show up now
  std::string dumps;
  for (int i = 0; i < kClients; ++i) dumps += "\nclient " + std::to_string(i) + ": " + clients[i]->dump();
  dumps += "\nserver: " + server.dump();
  ASSERT_TRUE(ok) << dumps;

  int connected = 0, refused = 0;
  for (auto& c : clients) {
    if (c->count(XXNET_EVENT_CONNECTED) > 0) {
      ++connected;
      EXPECT_EQ(c->count(XXNET_EVENT_CONNECT_FAILED), 0u) << dumps;
      EXPECT_EQ(c->count(XXNET_EVENT_SEND_FAILED), 0u) << dumps;
      EXPECT_EQ(c->count(XXNET_EVENT_DISCONNECTED), 0u) << dumps;
      continue;
    }
    ++refused;
    const Event* cf = c->first(XXNET_EVENT_CONNECT_FAILED);
    ASSERT_NE(cf, nullptr);
        // reconnect_give_up_ms 0: a session makes one attempt, then reports what
    // it holds. Sends the reactor takes after that open a new session (a slow
    // host, e.g. under ASan, can spread the burst over two), so: one
    // SEND_FAILED per attempt, and every message reported (below).
    EXPECT_EQ(c->count(XXNET_EVENT_CONNECT_FAILED), c->count(XXNET_EVENT_SEND_FAILED))
        << "reconnect_give_up_ms 0: one attempt per session" << dumps;
    EXPECT_TRUE(cf->code == XXNET_E_PEER_BUSY || cf->code == XXNET_E_CONN_RESET)
        << "CONNECT_FAILED code " << cf->code << " (" << xxnet_strerror(cf->code) << ")";
    EXPECT_EQ(cf->peer_ip, "127.0.0.1");
    EXPECT_EQ(cf->peer_port, ps);
    uint64_t count = 0, total = 0;
    for (const Event& e : c->of(XXNET_EVENT_SEND_FAILED)) {
      count += e.count;
      total += e.total;
      EXPECT_NE(e.code, XXNET_OK);
      EXPECT_EQ(e.peer_port, ps);
      EXPECT_EQ(e.id, 0u) << "never sent";
    }
    EXPECT_EQ(count, kPerClient);
    EXPECT_EQ(total, kPerClient * std::string("client 0").size());
    const Event* sf = c->first(XXNET_EVENT_SEND_FAILED);
    EXPECT_EQ(sf->msg_id, 0u) << "SEND_FAILED names the first message covered";
    xxnet_stats_t s = settled_stats(*c, [&](const xxnet_stats_t& t) { return t.send_failed_msgs == count; });
    EXPECT_EQ(s.connect_failures, c->count(XXNET_EVENT_CONNECT_FAILED));
    EXPECT_EQ(s.send_failed_msgs, kPerClient);
    EXPECT_EQ(s.queued_msgs, 0u);
    EXPECT_EQ(s.open_connections, 0u);
  }
  EXPECT_EQ(connected, 2) << dumps;
  EXPECT_EQ(refused, kClients - 2) << dumps;
  EXPECT_EQ(server.count(XXNET_EVENT_CONNECTED), 2u) << dumps;
  EXPECT_EQ(server.count(XXNET_EVENT_MESSAGE), 2 * kPerClient) << dumps;
  xxnet_stats_t ss = settled_stats(server, [](const xxnet_stats_t& t) { return t.refused_connections >= 3; });
  EXPECT_GE(ss.refused_connections, 3u);
  EXPECT_EQ(ss.open_connections, 2u);
  EXPECT_GE(ss.accepted_connections, 5u);

  // Once an accepted client leaves, a refused one gets in on its next send.
  Ctx* leaver = nullptr;
  Ctx* retry = nullptr;
  for (auto& c : clients) {
    if (!leaver && c->count(XXNET_EVENT_CONNECTED) > 0) leaver = c.get();
    if (!retry && c->count(XXNET_EVENT_CONNECTED) == 0) retry = c.get();
  }
  ASSERT_TRUE(leaver && retry);
  ASSERT_EQ(xxnet_close(leaver->get(), leaver->first(XXNET_EVENT_CONNECTED)->conn), XXNET_OK);
  ASSERT_TRUE(poll_until({&server, leaver}, [&] {
    return server.count(XXNET_EVENT_DISCONNECTED) == 1 && server.stats().open_connections == 1;
  })) << server.dump();
  ASSERT_EQ(retry->send("127.0.0.1", ps, "second try", 0, 99), XXNET_OK);
  ASSERT_TRUE(poll_until({&server, retry}, [&] {
    return retry->count(XXNET_EVENT_CONNECTED) == 1 && server.count(XXNET_EVENT_MESSAGE) == 2 * kPerClient + 1;
  })) << "retry: " << retry->dump() << "\nserver: " << server.dump();
  EXPECT_EQ(server.messages().back().data, "second try");
}

// Sending to a port where nothing listens, with a session that gives up at
// the first failure: CONNECT_FAILED (refused), then SEND_FAILED covering
// every queued message, with counts and bytes.
TEST(Limits, SendToClosedPortReportsConnectFailedAndSendFailed) {
  uint16_t port = 0;
  int fd = plain_listener("127.0.0.1", &port);
  ASSERT_GE(fd, 0);
  ::close(fd);  // nothing listens there any more

  Ctx a(no_retry_config());
  ASSERT_TRUE(a) << xxnet_last_error();
  size_t bytes_sent = 0;
  for (uint32_t i = 0; i < 4; ++i) {
    std::string m = pattern(i, 10 + i);
    bytes_sent += m.size();
    ASSERT_EQ(a.send("127.0.0.1", port, m, 0, 50 + i), XXNET_OK);
  }
  auto failed_count = [&] {
    uint64_t n = 0;
    for (const Event& e : a.of(XXNET_EVENT_SEND_FAILED)) n += e.count;
    return n;
  };
  ASSERT_TRUE(poll_until(a, [&] { return a.count(XXNET_EVENT_CONNECT_FAILED) >= 1 && failed_count() >= 4; }))
      << a.dump();
  const Event cf = *a.first(XXNET_EVENT_CONNECT_FAILED);
  EXPECT_EQ(cf.code, XXNET_E_CONNECT_REFUSED) << cf;
  EXPECT_EQ(cf.peer_ip, "127.0.0.1");
  EXPECT_EQ(cf.peer_port, port);
  uint64_t total = 0;
  for (const Event& e : a.of(XXNET_EVENT_SEND_FAILED)) {
    total += e.total;
    EXPECT_EQ(e.conn, 0u) << "no connection was ever made";
    EXPECT_EQ(e.id, 0u) << "none of them was sent";
    EXPECT_EQ(e.peer_port, port);
    EXPECT_NE(e.code, XXNET_OK);
  }
  EXPECT_EQ(failed_count(), 4u);
  EXPECT_EQ(total, bytes_sent);
  EXPECT_EQ(a.first(XXNET_EVENT_SEND_FAILED)->msg_id, 50u);
  EXPECT_EQ(a.count(XXNET_EVENT_CONNECTED), 0u);
  EXPECT_EQ(a.count(XXNET_EVENT_DISCONNECTED), 0u) << "DISCONNECTED is only for connections that were CONNECTED";
  // Each send may start its own attempt when the previous one already failed:
  // one CONNECT_FAILED per attempt, the four messages covered in all.
  xxnet_stats_t s = settled_stats(a, [](const xxnet_stats_t& t) { return t.send_failed_msgs == 4; });
  EXPECT_EQ(s.connect_failures, a.count(XXNET_EVENT_CONNECT_FAILED));
  for (const Event& e : a.of(XXNET_EVENT_CONNECT_FAILED)) EXPECT_EQ(e.code, XXNET_E_CONNECT_REFUSED) << e;
  EXPECT_EQ(s.send_failed_msgs, 4u);
  EXPECT_EQ(s.queued_msgs, 0u);
  EXPECT_EQ(s.queued_bytes, 0u);
  EXPECT_EQ(s.open_connections, 0u);
}

// A listener that never accepts (the kernel completes the TCP handshake, but
// no HELLO_ACK ever comes) fails the attempt after connect_timeout_ms.
TEST(Limits, HandshakeThatNeverCompletesTimesOut) {
  uint16_t port = 0;
  int fd = plain_listener("127.0.0.1", &port);
  ASSERT_GE(fd, 0);
  xxnet_config cfg = no_retry_config();
  cfg.connect_timeout_ms = 300;
  Ctx a(cfg);
  ASSERT_TRUE(a) << xxnet_last_error();
  const auto t0 = Clock::now();
  ASSERT_EQ(a.send("127.0.0.1", port, "into the void"), XXNET_OK);
  ASSERT_TRUE(poll_until(a, [&] { return a.count(XXNET_EVENT_CONNECT_FAILED) >= 1 && a.count(XXNET_EVENT_SEND_FAILED) >= 1; }))
      << a.dump();
  const double took = elapsed_ms(t0);
  ::close(fd);
  EXPECT_EQ(a.first(XXNET_EVENT_CONNECT_FAILED)->code, XXNET_E_CONNECT_TIMEOUT);
  EXPECT_GE(took, 250.0);
  EXPECT_LT(took, 3000.0);
  EXPECT_EQ(a.first(XXNET_EVENT_SEND_FAILED)->count, 1u);
}

// An accepted connection that never says anything is closed after handshake_timeout_ms.
TEST(Limits, SilentInboundConnectionIsClosedAfterHandshakeTimeout) {
  xxnet_config cfg = default_config();
  cfg.handshake_timeout_ms = 300;
  Ctx s(cfg);
  ASSERT_TRUE(s) << xxnet_last_error();
  const uint16_t port = s.listen();
  ASSERT_NE(port, 0);
  int fd = raw_connect(port);
  ASSERT_GE(fd, 0);
  const auto t0 = Clock::now();
  bool closed = false;
  // Keep polling the server context while waiting (a host would).
  poll_until(s, [&] {
    struct pollfd p = {fd, POLLIN, 0};
    if (::poll(&p, 1, 0) > 0) closed = wait_closed(fd, 10ms) || closed;
    return closed;
  });
  const double took = elapsed_ms(t0);
  ::close(fd);
  EXPECT_TRUE(closed) << "the silent connection was not closed";
  EXPECT_GE(took, 250.0);
  EXPECT_LT(took, 3000.0);
  EXPECT_EQ(s.count(XXNET_EVENT_CONNECTED), 0u) << s.dump();
  EXPECT_EQ(s.count(XXNET_EVENT_MESSAGE), 0u);
  EXPECT_TRUE(poll_until(s, [&] { return s.stats().open_connections == 0; }));
}
