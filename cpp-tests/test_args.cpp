// Argument checking at the C boundary: sizes, lanes, flags, NULLs, unknown ids.
#include "test_util.hpp"

#include <climits>

using namespace xt;

TEST(Args, TooLargeBadLaneAndFlagsAreRefusedAndQueueNothing) {
  xxnet_config cfg = default_config();
  cfg.max_message_size = 1u << 20;  // 1 MiB
  Ctx a(cfg), b(cfg);
  ASSERT_TRUE(a && b) << xxnet_last_error();
  const uint16_t pb = b.listen();
  ASSERT_NE(pb, 0);

  const std::string over(static_cast<size_t>(cfg.max_message_size) + 1, 'x');
  const std::string exact(static_cast<size_t>(cfg.max_message_size), 'y');
  EXPECT_EQ(xxnet_send(a.get(), "127.0.0.1", pb, bytes(over), over.size()), XXNET_E_TOO_LARGE);
  EXPECT_EQ(a.send("127.0.0.1", pb, over, 1, 7), XXNET_E_TOO_LARGE);
  for (uint32_t lane : {static_cast<uint32_t>(XXNET_LANES), 5u, 255u, 256u, UINT32_MAX}) {
    EXPECT_EQ(a.send("127.0.0.1", pb, "x", lane, 0), XXNET_E_INVALID_ARG) << "lane " << lane;
  }
  for (uint32_t flags : {2u, 3u, 0x80000000u, UINT32_MAX}) {  // bit 0 is XXNET_SEND_MORE
    xxnet_send_opts o = opts(0, 0);
    o.flags = flags;
    EXPECT_EQ(xxnet_send_ex(a.get(), "127.0.0.1", pb, bytes(std::string("x")), 1, &o), XXNET_E_INVALID_ARG)
        << "flags " << flags;
  }
  EXPECT_EQ(xxnet_send(a.get(), "127.0.0.1", 0, bytes(std::string("x")), 1), XXNET_E_INVALID_ARG) << "port 0";

  // The refused calls queued nothing and opened nothing.
  xxnet_stats_t s = a.stats();
  EXPECT_EQ(s.queued_msgs, 0u);
  EXPECT_EQ(s.queued_bytes, 0u);
  poll_for({&a, &b}, 100ms);
  EXPECT_TRUE(a.events.empty()) << a.dump();
  EXPECT_TRUE(b.events.empty()) << b.dump();

  // Exactly max_message_size, on the last lane, and an empty message (NULL data, len 0) are fine.
  ASSERT_EQ(a.send("127.0.0.1", pb, exact, XXNET_LANES - 1, 1), XXNET_OK);
  ASSERT_EQ(xxnet_send(a.get(), "127.0.0.1", pb, nullptr, 0), XXNET_OK);
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return b.count(XXNET_EVENT_MESSAGE) == 2; })) << a.dump() << b.dump();
  std::vector<Event> msgs = b.messages();
  // Different lanes: either order is allowed.
  const Event& big = msgs[0].data.empty() ? msgs[1] : msgs[0];
  const Event& empty = msgs[0].data.empty() ? msgs[0] : msgs[1];
  EXPECT_TRUE(big.data == exact);
  EXPECT_EQ(big.lane, static_cast<uint32_t>(XXNET_LANES - 1));
  EXPECT_EQ(big.msg_id, 1u);
  EXPECT_TRUE(empty.data.empty());
  EXPECT_EQ(empty.lane, 0u);

  // The same checks on a known connection (xxnet_send_conn_ex).
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return b.count(XXNET_EVENT_CONNECTED) == 1; }));
  const uint64_t conn = b.first(XXNET_EVENT_CONNECTED)->conn;
  EXPECT_EQ(b.send_conn(conn, over), XXNET_E_TOO_LARGE);
  EXPECT_EQ(b.send_conn(conn, "x", XXNET_LANES, 0), XXNET_E_INVALID_ARG);
  xxnet_send_opts bad_flags = opts(0, 0);
  bad_flags.flags = 4;
  EXPECT_EQ(xxnet_send_conn_ex(b.get(), conn, bytes(std::string("x")), 1, &bad_flags), XXNET_E_INVALID_ARG);
  EXPECT_EQ(b.send_conn(conn, "fine", 2, 3), XXNET_OK);
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return a.count(XXNET_EVENT_MESSAGE) == 1; })) << a.dump();
  EXPECT_EQ(a.messages()[0].data, "fine");
  EXPECT_EQ(a.messages()[0].lane, 2u);
  EXPECT_EQ(a.messages()[0].msg_id, 3u);
}

// Every export with NULL / bogus arguments returns the documented code and never crashes.
TEST(Args, FfiSafetyNullPointersAndUnknownIds) {
  const uint8_t byte = 1;
  xxnet_event evs[4];
  xxnet_stats_t st;
  xxnet_send_opts o = opts(0, 0);

  // NULL context.
  EXPECT_EQ(xxnet_listen(nullptr, "127.0.0.1", 0, nullptr), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_send(nullptr, "127.0.0.1", 1, &byte, 1), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_send_ex(nullptr, "127.0.0.1", 1, &byte, 1, &o), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_send_conn(nullptr, 1, &byte, 1), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_send_conn_ex(nullptr, 1, &byte, 1, &o), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_close(nullptr, 1), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_stats(nullptr, &st), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_poll_recv(nullptr, evs, 4, 0), 0u);
  EXPECT_EQ(xxnet_poll_recv(nullptr, evs, 4, 100), 0u);
  uint64_t id = 0;
  xxnet_peer_info info;
  EXPECT_EQ(xxnet_send_need_ack(nullptr, "127.0.0.1", 1, &byte, 1, &o, &id), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_send_conn_need_ack(nullptr, 1, &byte, 1, &o, &id), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_conn_info(nullptr, 1, &info), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_timer_start(nullptr, 1, 0, 0, &id), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_timer_stop(nullptr, 1), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_conn_set_user_data(nullptr, 1, 1), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_on(nullptr, XXNET_EVENT_MESSAGE, nullptr, nullptr), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_route(nullptr, 1, nullptr, nullptr), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_route_default(nullptr, nullptr, nullptr), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_dispatch(nullptr, 16, 0), 0u);
  EXPECT_EQ(xxnet_dispatch(nullptr, 16, 100), 0u);
  ASSERT_NE(xxnet_version(), nullptr);
  EXPECT_GT(std::strlen(xxnet_version()), 0u);
  EXPECT_EQ(xxnet_abi_version(), static_cast<uint32_t>(XXNET_ABI_VERSION)) << "header and library disagree";
  EXPECT_EQ(xxnet_set_log_handler(nullptr, nullptr, -1), XXNET_E_INVALID_ARG);
  EXPECT_EQ(xxnet_set_log_handler(nullptr, nullptr, 6), XXNET_E_INVALID_ARG);
  EXPECT_EQ(xxnet_set_log_handler(nullptr, nullptr, XXNET_LOG_WARN), XXNET_OK);
  xxnet_free(nullptr);             // no-op
  xxnet_config_default(nullptr);   // ignored

  // strerror: never NULL, static text, "unknown code" for codes that do not exist.
  const int documented[] = {
      XXNET_OK, XXNET_E_INVALID_ARG, XXNET_E_NULL_POINTER, XXNET_E_UNKNOWN_CONN, XXNET_E_ADDR_IN_USE,
      XXNET_E_ALREADY_LISTENING, XXNET_E_TOO_LARGE, XXNET_E_WOULD_BLOCK, XXNET_E_CLOSED, XXNET_E_INTERNAL,
      XXNET_E_PANIC, XXNET_E_IO, XXNET_E_ADDR_NOT_AVAILABLE, XXNET_E_PERMISSION, XXNET_E_CONNECT_REFUSED,
      XXNET_E_CONNECT_TIMEOUT, XXNET_E_CONN_RESET, XXNET_E_PEER_CLOSED, XXNET_E_LOCAL_CLOSE,
      XXNET_E_DUPLICATE_CONN, XXNET_E_SHUTDOWN, XXNET_E_PEER_BUSY, XXNET_E_UNREACHABLE, XXNET_E_IDLE_TIMEOUT,
      XXNET_E_EXPIRED_UNSENT, XXNET_E_ACK_TIMEOUT, XXNET_E_PEER_RESTARTED, XXNET_E_UNKNOWN_TIMER,
      XXNET_E_REENTRANT, XXNET_E_PROTOCOL,
      XXNET_E_BAD_PREFACE, XXNET_E_BAD_VERSION, XXNET_E_FRAME_TOO_LARGE, XXNET_E_MESSAGE_TOO_LARGE,
      XXNET_E_TRUNCATED, XXNET_E_BAD_FRAME};
  for (int code : documented) {
    const char* text = xxnet_strerror(code);
    ASSERT_NE(text, nullptr) << code;
    EXPECT_GT(std::strlen(text), 0u) << code;
    EXPECT_STRNE(text, "unknown code") << "code " << code << " is documented in xxnet.h";
  }
  for (int code : {999999, -999999, 1, 12345, INT_MAX, INT_MIN, -14, -19, -36, -39, -47, -100}) {
    const char* text = xxnet_strerror(code);
    ASSERT_NE(text, nullptr) << code;
    EXPECT_STREQ(text, "unknown code") << code;
  }
  for (int code = -200; code <= 200; ++code) ASSERT_NE(xxnet_strerror(code), nullptr) << code;

  // Invalid config: xxnet_new returns NULL and says why.
  xxnet_config bad = default_config();
  bad.fragment_size = 0;
  ASSERT_EQ(xxnet_new(&bad), nullptr);
  ASSERT_NE(xxnet_last_error(), nullptr);
  EXPECT_GT(std::strlen(xxnet_last_error()), 0u);
  bad = default_config();
  bad.max_message_size = 0;
  EXPECT_EQ(xxnet_new(&bad), nullptr);
  bad = default_config();
  bad.advertise_ip = "localhost";
  EXPECT_EQ(xxnet_new(&bad), nullptr);
  EXPECT_GT(std::strlen(xxnet_last_error()), 0u);

  // A valid context with NULL / bogus arguments.
  Ctx a;
  ASSERT_TRUE(a) << xxnet_last_error();
  xxnet_ctx* c = a.get();
  EXPECT_EQ(xxnet_listen(c, nullptr, 0, nullptr), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_send(c, nullptr, 1, &byte, 1), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_send(c, "127.0.0.1", 1, nullptr, 1), XXNET_E_NULL_POINTER) << "len > 0 with NULL data";
  EXPECT_EQ(xxnet_send_ex(c, "127.0.0.1", 1, nullptr, 10, &o), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_send_conn_ex(c, 1, nullptr, 10, &o), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_stats(c, nullptr), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_poll_recv(c, nullptr, 4, 0), 0u);
  EXPECT_EQ(xxnet_poll_recv(c, evs, 0, 0), 0u);
  EXPECT_EQ(xxnet_send_need_ack(c, "127.0.0.1", 1, &byte, 1, &o, nullptr), XXNET_E_NULL_POINTER) << "out_id NULL";
  EXPECT_EQ(xxnet_send_need_ack(c, "127.0.0.1", 1, nullptr, 1, &o, &id), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_send_need_ack(c, "localhost", 1, &byte, 1, &o, &id), XXNET_E_INVALID_ARG);
  EXPECT_EQ(xxnet_conn_info(c, 1, nullptr), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_dispatch(c, 0, 0), 0u);
  for (uint64_t timer : {0ull, 1ull, 12345ull, ~0ull}) EXPECT_EQ(xxnet_timer_stop(c, timer), XXNET_E_UNKNOWN_TIMER);
  for (uint64_t conn : {0ull, 1ull, 12345ull, (1ull << 53) - 1, ~0ull}) {
    EXPECT_EQ(xxnet_send_conn_need_ack(c, conn, &byte, 1, &o, &id), XXNET_E_UNKNOWN_CONN) << conn;
    EXPECT_EQ(xxnet_conn_info(c, conn, &info), XXNET_E_UNKNOWN_CONN) << conn;
    EXPECT_EQ(xxnet_conn_set_user_data(c, conn, 1), XXNET_E_UNKNOWN_CONN) << conn;
    EXPECT_EQ(xxnet_send_conn(c, conn, &byte, 1), XXNET_E_UNKNOWN_CONN) << conn;
    EXPECT_EQ(xxnet_send_conn_ex(c, conn, &byte, 1, nullptr), XXNET_E_UNKNOWN_CONN) << conn;
    EXPECT_EQ(xxnet_send_conn_ex(c, conn, &byte, 1, &o), XXNET_E_UNKNOWN_CONN) << conn;
    EXPECT_EQ(xxnet_close(c, conn), XXNET_E_UNKNOWN_CONN) << conn;
  }
  EXPECT_EQ(xxnet_stats(c, &st), XXNET_OK);
  EXPECT_EQ(st.queued_msgs, 0u);
  EXPECT_EQ(st.open_connections, 0u);

  // poll with no event: a 0 timeout returns at once, a short one returns after about that long.
  auto t0 = Clock::now();
  EXPECT_EQ(xxnet_poll_recv(c, evs, 4, 0), 0u);
  EXPECT_LT(elapsed_ms(t0), 100.0);
  t0 = Clock::now();
  EXPECT_EQ(xxnet_poll_recv(c, evs, 4, 50), 0u);
  EXPECT_GE(elapsed_ms(t0), 40.0);
  EXPECT_LT(elapsed_ms(t0), 1000.0);
}

TEST(Args, ConfigDefaultsAreTheDocumentedOnes) {
  xxnet_config c;
  std::memset(&c, 0xab, sizeof c);
  xxnet_config_default(&c);
  EXPECT_EQ(c.max_connections, 10000u);
  EXPECT_EQ(c.max_message_size, 16ull << 20);
  EXPECT_EQ(c.fragment_size, 32u << 10);
  EXPECT_EQ(c.connect_timeout_ms, 5000u);
  EXPECT_EQ(c.handshake_timeout_ms, 5000u);
  EXPECT_EQ(c.recv_queue_limit, 64ull << 20);
  EXPECT_EQ(c.advertise_ip, nullptr);
  EXPECT_EQ(c.reconnect_min_ms, 100u);
  EXPECT_EQ(c.reconnect_max_ms, 5000u);
  EXPECT_EQ(c.reconnect_give_up_ms, 30000u);
  EXPECT_EQ(c.idle_timeout_ms, 10000u);
  EXPECT_EQ(c.send_high_water, 32ull << 20);
  EXPECT_EQ(c.send_low_water, 16ull << 20);
  EXPECT_EQ(c.ack_timeout_ms, 5000u);
  // NULL config means defaults.
  xxnet_ctx* ctx = xxnet_new(nullptr);
  ASSERT_NE(ctx, nullptr) << xxnet_last_error();
  xxnet_free(ctx);
}
