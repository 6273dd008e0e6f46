// Listening: duplicates, ports held elsewhere, IPv6, address validation.
#include "test_util.hpp"

using namespace xt;

TEST(Listen, TwiceInOneContextIsAlreadyListening_PortHeldElsewhereIsAddrInUse) {
  Ctx a, other, client;
  ASSERT_TRUE(a && other && client) << xxnet_last_error();
  const uint16_t pa = a.listen();
  ASSERT_NE(pa, 0);

  // Same context, same ip:port.
  uint16_t bound = 0;
  EXPECT_EQ(xxnet_listen(a.get(), "127.0.0.1", pa, &bound), XXNET_E_ALREADY_LISTENING);

  // Another context in this process holds it.
  EXPECT_EQ(xxnet_listen(other.get(), "127.0.0.1", pa, &bound), XXNET_E_ADDR_IN_USE);

  // Another process holds a port: a plain listening socket kept open by a forked child.
  uint16_t held = 0;
  int fd = plain_listener("127.0.0.1", &held);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  Child holder;
  ASSERT_TRUE(holder.fork_holding(fd));
  ::close(fd);  // only the child holds it now
  EXPECT_EQ(xxnet_listen(a.get(), "127.0.0.1", held, &bound), XXNET_E_ADDR_IN_USE);
  EXPECT_EQ(xxnet_listen(other.get(), "127.0.0.1", held, nullptr), XXNET_E_ADDR_IN_USE);
  holder.kill_and_reap();

  // The existing listener keeps working after the refused attempts.
  ASSERT_EQ(client.send("127.0.0.1", pa, "still there"), XXNET_OK);
  ASSERT_TRUE(poll_until({&a, &client}, [&] { return a.count(XXNET_EVENT_MESSAGE) == 1; }))
      << "A: " << a.dump() << "\nclient: " << client.dump();
  EXPECT_EQ(a.messages()[0].data, "still there");

  // A failed listen leaves the context able to listen elsewhere, and the port
  // freed by the killed child can now be taken.
  uint16_t second = 0;
  EXPECT_EQ(xxnet_listen(a.get(), "127.0.0.1", 0, &second), XXNET_OK);
  EXPECT_NE(second, 0);
  EXPECT_NE(second, pa);
  EXPECT_EQ(xxnet_listen(other.get(), "127.0.0.1", held, &bound), XXNET_OK);
  EXPECT_EQ(bound, held);
}

TEST(Listen, BoundPortMayBeNullAndExplicitPortIsKept) {
  Ctx a, b;
  ASSERT_TRUE(a && b) << xxnet_last_error();
  // Find a free port, release it, then listen on it explicitly.
  uint16_t port = 0;
  int fd = plain_listener("127.0.0.1", &port);
  ASSERT_GE(fd, 0);
  ::close(fd);
  uint16_t bound = 1;
  ASSERT_EQ(xxnet_listen(a.get(), "127.0.0.1", port, &bound), XXNET_OK);
  EXPECT_EQ(bound, port);
  EXPECT_EQ(xxnet_listen(b.get(), "127.0.0.1", 0, nullptr), XXNET_OK);
  ASSERT_EQ(b.send("127.0.0.1", port, "to explicit port"), XXNET_OK);
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return a.count(XXNET_EVENT_MESSAGE) == 1; })) << a.dump() << b.dump();
}

TEST(Listen, Ipv6Loopback) {
  uint16_t probe_port = 0;
  int probe = plain_listener("::1", &probe_port);
  if (probe < 0) GTEST_SKIP() << "cannot bind ::1 on this machine: " << std::strerror(errno);
  ::close(probe);

  Ctx a, b;
  ASSERT_TRUE(a && b) << xxnet_last_error();
  const uint16_t pa = a.listen("::1"), pb = b.listen("::1");
  ASSERT_TRUE(pa && pb);
  ASSERT_EQ(b.send("::1", pa, "over v6", 0, 6), XXNET_OK);
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return a.count(XXNET_EVENT_MESSAGE) == 1; })) << a.dump() << b.dump();
  const Event m = a.messages()[0];
  EXPECT_EQ(m.data, "over v6");
  EXPECT_EQ(m.msg_id, 6u);
  EXPECT_EQ(m.peer_ip, "::1");
  EXPECT_EQ(m.peer_port, pb);
  // Reply to the announced address: same connection.
  ASSERT_EQ(xxnet_send(a.get(), m.peer_ip.c_str(), m.peer_port, bytes(std::string("back")), 4), XXNET_OK);
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return b.count(XXNET_EVENT_MESSAGE) == 1; })) << a.dump() << b.dump();
  EXPECT_EQ(b.messages()[0].data, "back");
  EXPECT_EQ(b.messages()[0].peer_ip, "::1");
  EXPECT_EQ(b.messages()[0].peer_port, pa);
  EXPECT_EQ(a.count(XXNET_EVENT_CONNECTED), 1u);
  EXPECT_EQ(b.count(XXNET_EVENT_CONNECTED), 1u);
  ASSERT_NE(b.first(XXNET_EVENT_CONNECTED), nullptr);
  EXPECT_EQ(b.first(XXNET_EVENT_CONNECTED)->peer_ip, "::1");
  EXPECT_EQ(b.first(XXNET_EVENT_CONNECTED)->peer_port, pa);
}

TEST(Listen, NamesAndMalformedAddressesAreInvalid) {
  Ctx a;
  ASSERT_TRUE(a) << xxnet_last_error();
  const char* bad[] = {"localhost", "1.2.3", "", "256.0.0.1", "127.0.0.1:80", "[::1]", "example.com", " 127.0.0.1", "::g"};
  const std::string data = "x";
  for (const char* ip : bad) {
    SCOPED_TRACE(std::string("address \"") + ip + "\"");
    uint16_t bound = 0;
    EXPECT_EQ(xxnet_listen(a.get(), ip, 0, &bound), XXNET_E_INVALID_ARG);
    EXPECT_EQ(xxnet_send(a.get(), ip, 9, bytes(data), data.size()), XXNET_E_INVALID_ARG);
    xxnet_send_opts o = opts(0, 1);
    EXPECT_EQ(xxnet_send_ex(a.get(), ip, 9, bytes(data), data.size(), &o), XXNET_E_INVALID_ARG);
  }
  // Nothing was queued by the refused calls.
  EXPECT_EQ(a.stats().queued_msgs, 0u);
  poll_for({&a}, 50ms);
  EXPECT_TRUE(a.events.empty()) << a.dump();
}

TEST(Listen, AddressNotOnThisMachineIsAddrNotAvailable) {
  Ctx a;
  ASSERT_TRUE(a) << xxnet_last_error();
  // 192.0.2.1 is TEST-NET-1 (RFC 5737): never a local address. Binding sends nothing.
  EXPECT_EQ(xxnet_listen(a.get(), "192.0.2.1", 0, nullptr), XXNET_E_ADDR_NOT_AVAILABLE);
}
