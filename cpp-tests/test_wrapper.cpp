// Tests of include/xxnet.hpp, the header-only C++17 wrapper: RAII and move
// semantics, string_view payloads, handlers/routes/timers as lambdas, the
// error policy (throw vs [[nodiscard]] Result), need-ack, conn_info, user
// data, back-pressure and the log handler. Self-contained (no test_util.hpp).
// Every wait is bounded; traffic stays on 127.0.0.1.
#include <xxnet.hpp>

#include <dirent.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <initializer_list>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using xxnet::Context;
using xxnet::Event;
using xxnet::Kind;

constexpr auto kWait = 5000ms;
constexpr const char* kLo = "127.0.0.1";

/// Dispatches `ctxs` in turn until `pred()` holds or `timeout` passes.
template <class Pred>
bool dispatch_until(std::initializer_list<Context*> ctxs, Pred pred, std::chrono::milliseconds timeout = kWait) {
  const auto deadline = Clock::now() + timeout;
  for (int round = 0; round < 1000000 && !pred() && Clock::now() < deadline; ++round)
    for (Context* c : ctxs) c->dispatch(256, ctxs.size() == 1 ? 10 : 2);
  return pred();
}

/// Threads of this process (each context owns one reactor thread).
int threads() {
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return -1;
  int n = 0;
  while (struct dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n;
}

template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout = kWait) {
  const auto deadline = Clock::now() + timeout;
  while (!pred() && Clock::now() < deadline) std::this_thread::sleep_for(2ms);
  return pred();
}

/// A server listening on 127.0.0.1 and a client connected to it (handshake done on both sides).
struct Pair {
  Context server, client;
  uint16_t port = 0;
  xxnet::ConnId server_conn = 0, client_conn = 0;  // the connection as each side names it

  explicit Pair(const xxnet::Config& client_cfg = xxnet::Config()) : client(client_cfg) {
    port = server.listen(kLo);
    server.on(Kind::Connected, [this](const Event& e) { server_conn = e.conn(); });
    client.on(Kind::Connected, [this](const Event& e) { client_conn = e.conn(); });
    // A message opens the connection.
    bool hello = false;
    server.on(Kind::Message, [&](const Event& e) { hello = e.data() == "hello"; });
    EXPECT_TRUE(client.send(kLo, port, "hello").ok());
    EXPECT_TRUE(dispatch_until({&server, &client}, [&] { return server_conn != 0 && client_conn != 0 && hello; }));
    server.on(Kind::Connected, nullptr);
    client.on(Kind::Connected, nullptr);
    server.on(Kind::Message, nullptr);
  }
};

TEST(Wrapper, VersionAndAbi) {
  EXPECT_EQ(xxnet::version(), std::string_view(xxnet_version()));
  EXPECT_FALSE(xxnet::version().empty());
  EXPECT_TRUE(xxnet::abi_compatible());
  EXPECT_NO_THROW(xxnet::check_abi());
  EXPECT_STREQ(xxnet::to_string(Kind::Delivered), "Delivered");
}

TEST(Wrapper, ContextIsMoveOnly) {
  static_assert(!std::is_copy_constructible_v<Context> && !std::is_copy_assignable_v<Context>);
  static_assert(std::is_nothrow_move_constructible_v<Context> && std::is_nothrow_move_assignable_v<Context>);
  Context a;
  xxnet_ctx* raw = a.native();
  ASSERT_NE(raw, nullptr);
  Context b(std::move(a));
  EXPECT_EQ(b.native(), raw);
  EXPECT_TRUE(b.valid());
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): inert by contract
}

TEST(Wrapper, MovedFromContextIsInert) {
  Context a;
  Context b = std::move(a);
  EXPECT_FALSE(static_cast<bool>(a));  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(a.native(), nullptr);
  EXPECT_EQ(a.send(kLo, 1, "x").code(), XXNET_E_NULL_POINTER);
  EXPECT_EQ(a.send_conn(1, "x").code(), XXNET_E_NULL_POINTER);
  EXPECT_EQ(a.send_need_ack(kLo, 1, "x").code(), XXNET_E_NULL_POINTER);
  EXPECT_EQ(a.close(1).code(), XXNET_E_NULL_POINTER);
  EXPECT_EQ(a.set_user_data(1, 2).code(), XXNET_E_NULL_POINTER);
  EXPECT_FALSE(a.conn_info(1).has_value());
  EXPECT_TRUE(a.poll(10).empty());
  EXPECT_EQ(a.dispatch(16, 10), 0u);
  EXPECT_FALSE(a.cancel(1));
  a.on(Kind::Message, [](const Event&) {});  // ignored
  a.route(1, [](const Event&) {});
  try {
    (void)a.listen(kLo);
    FAIL() << "listen on a moved-from context did not throw";
  } catch (const xxnet::Error& e) {
    EXPECT_EQ(e.code(), XXNET_E_NULL_POINTER);
  }
  EXPECT_THROW((void)a.stats(), xxnet::Error);
  EXPECT_THROW(a.timer(1, [] {}), xxnet::Error);
  // A moved-from context can be assigned a live one again.
  a = std::move(b);
  EXPECT_TRUE(a.valid());
  EXPECT_NE(a.listen(kLo), 0);
}

TEST(Wrapper, DestructorAndMoveAssignFreeTheContext) {
  const int before = threads();
  ASSERT_GT(before, 0);
  {
    Context a;
    EXPECT_EQ(threads(), before + 1);
    Context b;
    EXPECT_EQ(threads(), before + 2);
    a = std::move(b);  // frees a's old context (joins its reactor thread)
    EXPECT_EQ(threads(), before + 1);
    a.reset();
    EXPECT_FALSE(a.valid());
    EXPECT_TRUE(wait_until([&] { return threads() == before; }));
    Context c;
    EXPECT_EQ(threads(), before + 1);
  }
  EXPECT_TRUE(wait_until([&] { return threads() == before; })) << threads() << " threads, " << before << " before";
}

TEST(Wrapper, BadConfigThrows) {
  try {
    Context c(xxnet::Config().fragment_size(1));
    FAIL() << "a fragment_size of 1 was accepted";
  } catch (const xxnet::Error& e) {
    EXPECT_EQ(e.code(), XXNET_E_INVALID_ARG);
    EXPECT_NE(std::string(e.what()).find("fragment_size"), std::string::npos) << e.what();
    EXPECT_STREQ(e.text(), xxnet_strerror(XXNET_E_INVALID_ARG));
    EXPECT_EQ(e.error_code(), std::error_code(XXNET_E_INVALID_ARG, xxnet::category()));
  }
  // A raw xxnet_config works too, and is an std::runtime_error.
  xxnet_config raw = xxnet::Config().raw();
  raw.max_connections = 0;
  EXPECT_THROW(Context{raw}, std::runtime_error);
}

TEST(Wrapper, ListenErrorsThrow) {
  Context a, b;
  auto code_of = [](auto&& fn) {
    try {
      fn();
    } catch (const xxnet::Error& e) {
      return e.code();
    }
    return XXNET_OK;
  };
  EXPECT_EQ(code_of([&] { (void)a.listen("not-an-ip"); }), XXNET_E_INVALID_ARG);
  EXPECT_EQ(code_of([&] { (void)a.listen("localhost"); }), XXNET_E_INVALID_ARG);  // numeric only
  EXPECT_EQ(code_of([&] { (void)a.listen(std::string(100, '1')); }), XXNET_E_INVALID_ARG);
  const uint16_t port = a.listen(kLo);
  ASSERT_NE(port, 0);
  EXPECT_EQ(code_of([&] { (void)a.listen(kLo, port); }), XXNET_E_ALREADY_LISTENING);
  EXPECT_EQ(code_of([&] { (void)b.listen(kLo, port); }), XXNET_E_ADDR_IN_USE);
  // A string_view that is not NUL-terminated.
  const std::string padded = "127.0.0.1XYZ";
  EXPECT_NE(b.listen(std::string_view(padded).substr(0, 9)), 0);
}

TEST(Wrapper, SendAndReceiveStringView) {
  Context server, client;
  const uint16_t port = server.listen(kLo);
  const std::string binary("a\0b\xff\x01", 5);  // embedded NUL and high bytes
  const std::string big(200 * 1024, 'z');         // travels in parts
  ASSERT_TRUE(client.send(kLo, port, std::string_view(binary), {1, 42}).ok());
  ASSERT_TRUE(client.send(kLo, port, big, xxnet::SendOptions{}.with_msg_id(43).with_lane(XXNET_LANE_BULK)).ok());
  ASSERT_TRUE(client.send(kLo, port, std::string_view(), {1, 44}).ok());  // an empty message
  // (all three on lane 1, the bulk lane: order is kept per lane)

  // poll(): events are values; the payload is borrowed until the next poll.
  std::vector<Event> kept;
  std::vector<std::string> payloads;
  const auto deadline = Clock::now() + kWait;
  while (payloads.size() < 3 && Clock::now() < deadline) {
    for (const Event& e : server.poll(20)) {
      if (e.kind() != Kind::Message) continue;
      kept.push_back(e);
      payloads.emplace_back(e.data());
    }
  }
  ASSERT_EQ(payloads.size(), 3u);
  EXPECT_EQ(payloads[0], binary);
  EXPECT_EQ(kept[0].msg_id(), 42u);
  EXPECT_EQ(kept[0].lane(), 1u);
  EXPECT_EQ(kept[0].size(), binary.size());
  EXPECT_TRUE(payloads[1] == big) << "the 200 KiB message differs (" << payloads[1].size() << " bytes)";
  EXPECT_EQ(kept[1].msg_id(), 43u);
  EXPECT_EQ(payloads[2], "");
  EXPECT_EQ(kept[2].msg_id(), 44u);
  // Owned parts of an Event outlive later polls.
  (void)server.poll(0);
  EXPECT_EQ(kept[0].peer_ip(), "127.0.0.1");
  EXPECT_NE(kept[0].peer_port(), 0);
  EXPECT_NE(kept[0].conn(), 0u);
  EXPECT_EQ(kept[0].peer(), "127.0.0.1:" + std::to_string(kept[0].peer_port()));

  // The answer goes back on the connection; the client receives it by route.
  std::string answer;
  client.route(7, [&](const Event& e) { answer = std::string(e.data()); });
  ASSERT_TRUE(server.send_conn(kept[0].conn(), "answer", {0, 7}).ok());
  EXPECT_TRUE(dispatch_until({&server, &client}, [&] { return !answer.empty(); }));
  EXPECT_EQ(answer, "answer");
}

TEST(Wrapper, HandlersAndRoutes) {
  Context server, client;
  const uint16_t port = server.listen(kLo);
  std::vector<std::string> log;
  xxnet::ConnId conn = 0;
  bool initiated_on_server = true, initiated_on_client = false;
  server.on(Kind::Connected, [&](const Event& e) {
    conn = e.conn();
    initiated_on_server = e.initiated();
  });
  client.on(Kind::Connected, [&](const Event& e) { initiated_on_client = e.initiated(); });
  server.route(1, [&](const Event& e) { log.push_back("route1:" + std::string(e.data())); });
  server.route(2, [&](const Event& e) { log.push_back("route2:" + std::string(e.data())); });
  server.route_default([&](const Event& e) { log.push_back("default:" + std::to_string(e.msg_id())); });
  server.on(Kind::Message, [&](const Event&) { log.push_back("on-message"); });  // routes take precedence

  for (uint32_t id : {1u, 2u, 3u}) ASSERT_TRUE(client.send(kLo, port, "m" + std::to_string(id), {0, id}).ok());
  ASSERT_TRUE(dispatch_until({&server, &client}, [&] { return log.size() == 3; }));
  EXPECT_EQ(log, (std::vector<std::string>{"route1:m1", "route2:m2", "default:3"}));
  EXPECT_NE(conn, 0u);
  EXPECT_FALSE(initiated_on_server);
  EXPECT_TRUE(initiated_on_client);

  // Removing the route sends msg_id 1 to the default route; removing that to on(Message).
  log.clear();
  server.route(1, nullptr);
  ASSERT_TRUE(client.send(kLo, port, "x", {0, 1}).ok());
  ASSERT_TRUE(dispatch_until({&server, &client}, [&] { return log.size() == 1; }));
  server.route_default(nullptr);
  ASSERT_TRUE(client.send(kLo, port, "x", {0, 1}).ok());
  ASSERT_TRUE(dispatch_until({&server, &client}, [&] { return log.size() == 2; }));
  EXPECT_EQ(log, (std::vector<std::string>{"default:1", "on-message"}));

  // Disconnected after close(), on both sides; the server's carries the code.
  int server_code = 0;
  bool client_down = false;
  server.on(Kind::Disconnected, [&](const Event& e) { server_code = e.code(); });
  client.on(Kind::Disconnected, [&](const Event&) { client_down = true; });
  ASSERT_TRUE(server.close(conn).ok());
  ASSERT_TRUE(dispatch_until({&server, &client}, [&] { return server_code != 0 && client_down; }));
  EXPECT_EQ(server_code, XXNET_E_LOCAL_CLOSE);
  EXPECT_EQ(server.close(conn).code(), XXNET_E_UNKNOWN_CONN);  // gone after its Disconnected
}

TEST(Wrapper, HandlerMayReplaceItselfAndThrow) {
  Context server, client;
  const uint16_t port = server.listen(kLo);
  std::vector<std::string> got;
  server.route(5, [&](const Event& e) {
    got.push_back("first:" + std::string(e.data()));
    // Replace itself while running (its std::function must stay alive until it returns).
    server.route(5, [&](const Event& e2) {
      got.push_back("second:" + std::string(e2.data()));
      if (e2.data() == "b") throw std::runtime_error("handler failed");
    });
  });
  for (const char* m : {"a", "b", "c", "d"}) ASSERT_TRUE(client.send(kLo, port, m, {0, 5}).ok());
  // Wait until all four are queued at the server, so that they arrive in one batch.
  ASSERT_TRUE(wait_until([&] { return server.stats().msgs_in == 4; }));
  bool threw = false;
  const auto deadline = Clock::now() + kWait;
  while (got.size() < 4 && Clock::now() < deadline) {
    try {
      server.dispatch(256, 10);
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "handler failed");
      threw = true;
    }
  }
  EXPECT_TRUE(threw);
  // The events after the throwing one were delivered by the next dispatch, payloads intact.
  EXPECT_EQ(got, (std::vector<std::string>{"first:a", "second:b", "second:c", "second:d"}));
}

TEST(Wrapper, PollOrDispatchInsideAHandlerThrows) {
  Context c;
  int code = 0;
  c.timer(0, [&] {
    try {
      c.dispatch();
    } catch (const xxnet::Error& e) {
      code = e.code();
    }
    EXPECT_THROW((void)c.poll(), xxnet::Error);
  });
  ASSERT_TRUE(dispatch_until({&c}, [&] { return code != 0; }));
  EXPECT_EQ(code, XXNET_E_REENTRANT);
  EXPECT_EQ(c.dispatch(16, 0), 0u);  // usable again afterwards
}

TEST(Wrapper, OneShotTimer) {
  Context c;
  int fired = 0;
  xxnet::TimerId seen = 0;
  const auto start = Clock::now();
  std::chrono::milliseconds after{0};
  const xxnet::TimerId id = c.timer(30, [&](xxnet::TimerId t) {
    ++fired;
    seen = t;
    after = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  });
  EXPECT_NE(id, 0u);
  ASSERT_TRUE(dispatch_until({&c}, [&] { return fired == 1; }));
  EXPECT_EQ(seen, id);
  EXPECT_GE(after.count(), 30);  // never early
  dispatch_until({&c}, [] { return false; }, 100ms);
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(c.cancel(id));  // a one-shot that fired is not live
}

TEST(Wrapper, RepeatingTimerAndCancel) {
  Context c;
  int ticks = 0, self_cancelling = 0;
  const xxnet::TimerId id = c.timer(5, [&] { ++ticks; }, 5);
  // A repeating timer that cancels itself from its own callback on the 3rd tick.
  c.timer(
      5,
      [&](xxnet::TimerId me) {
        if (++self_cancelling == 3) {
          EXPECT_TRUE(c.cancel(me));
        }
      },
      5);
  ASSERT_TRUE(dispatch_until({&c}, [&] { return ticks >= 5 && self_cancelling >= 3; }));
  EXPECT_TRUE(c.cancel(id));
  EXPECT_FALSE(c.cancel(id));
  const int at_cancel = ticks;
  dispatch_until({&c}, [] { return false; }, 100ms);
  EXPECT_EQ(ticks, at_cancel);
  EXPECT_EQ(self_cancelling, 3);
}

TEST(Wrapper, CancelledTimerNeverRunsEvenIfAlreadyPolled) {
  Context c;
  bool second_ran = false;
  xxnet::TimerId second = 0;
  c.timer(20, [&] { (void)c.cancel(second); });
  second = c.timer(20, [&] { second_ran = true; });  // due with the first: likely in the same batch
  int fired_first = 0;
  c.timer(60, [&] { ++fired_first; });
  ASSERT_TRUE(dispatch_until({&c}, [&] { return fired_first == 1; }));
  EXPECT_FALSE(second_ran);
}

TEST(Wrapper, PollReturnsTimerEventsAndHandleRunsThem) {
  Context c;
  int fired = 0, other = 0;
  const xxnet::TimerId id = c.timer(0, [&] { ++fired; });
  // A timer started through the C API goes to on(Kind::Timer) with its user data.
  uint64_t native_id = 0;
  ASSERT_EQ(xxnet_timer_start(c.native(), 0, 0, 77, &native_id), XXNET_OK);
  c.on(Kind::Timer, [&](const Event& e) {
    EXPECT_EQ(e.id(), native_id);
    EXPECT_EQ(e.user_data(), 77u);
    ++other;
  });
  std::vector<Event> timers;
  const auto deadline = Clock::now() + kWait;
  while (timers.size() < 2 && Clock::now() < deadline)
    for (const Event& e : c.poll(10))
      if (e.kind() == Kind::Timer) timers.push_back(e);
  ASSERT_EQ(timers.size(), 2u);
  EXPECT_EQ(fired, 0);  // poll() runs no handler
  for (const Event& e : timers) c.handle(e);
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(other, 1);
  EXPECT_TRUE(timers[0].id() == id || timers[1].id() == id);
}

TEST(Wrapper, UserData) {
  Pair p;
  ASSERT_TRUE(p.server.set_user_data(p.server_conn, 0xC0FFEE).ok());
  uint64_t on_message = 0, on_disconnect = 0;
  p.server.route(9, [&](const Event& e) { on_message = e.user_data(); });
  p.server.on(Kind::Disconnected, [&](const Event& e) { on_disconnect = e.user_data(); });
  ASSERT_TRUE(p.client.send_conn(p.client_conn, "x", {0, 9}).ok());
  ASSERT_TRUE(dispatch_until({&p.server, &p.client}, [&] { return on_message != 0; }));
  EXPECT_EQ(on_message, 0xC0FFEEu);
  ASSERT_TRUE(p.client.close(p.client_conn).ok());
  ASSERT_TRUE(dispatch_until({&p.server, &p.client}, [&] { return on_disconnect != 0; }));
  EXPECT_EQ(on_disconnect, 0xC0FFEEu);
  EXPECT_EQ(p.server.set_user_data(p.server_conn, 1).code(), XXNET_E_UNKNOWN_CONN);
}

TEST(Wrapper, SendErrorsAreResults) {
  Context c(xxnet::Config().max_message_size(1024));
  const uint16_t port = c.listen(kLo);
  const std::string too_big(1025, 'x');
  xxnet::SendResult r = c.send(kLo, port, too_big);
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(static_cast<bool>(r));
  EXPECT_EQ(r.code(), XXNET_E_TOO_LARGE);
  EXPECT_FALSE(r.would_block());
  EXPECT_STREQ(r.message(), xxnet_strerror(XXNET_E_TOO_LARGE));
  EXPECT_EQ(r.error_code().value(), XXNET_E_TOO_LARGE);
  EXPECT_STREQ(r.error_code().category().name(), "xxnet");
  EXPECT_EQ(r.error_code().message(), xxnet_strerror(XXNET_E_TOO_LARGE));
  EXPECT_EQ(c.send_need_ack(kLo, port, too_big).code(), XXNET_E_TOO_LARGE);

  EXPECT_EQ(c.send_conn(12345, "x").code(), XXNET_E_UNKNOWN_CONN);
  EXPECT_EQ(c.send_conn(0, "x").code(), XXNET_E_UNKNOWN_CONN);
  EXPECT_EQ(c.close(12345).code(), XXNET_E_UNKNOWN_CONN);
  EXPECT_FALSE(c.conn_info(12345).has_value());
  EXPECT_EQ(c.send("not-an-ip", port, "x").code(), XXNET_E_INVALID_ARG);
  EXPECT_EQ(c.send(kLo, 0, "x").code(), XXNET_E_INVALID_ARG);
  EXPECT_EQ(c.send(kLo, port, "x", {XXNET_LANES, 0}).code(), XXNET_E_INVALID_ARG);  // no such lane
  const xxnet::AckResult ack = c.send_conn_need_ack(12345, "x");
  EXPECT_EQ(ack.code(), XXNET_E_UNKNOWN_CONN);
  EXPECT_EQ(ack.id(), 0u);

  // check() turns a Result into an exception.
  try {
    c.send_conn(12345, "x").check("send to 12345");
    FAIL() << "check() did not throw";
  } catch (const xxnet::Error& e) {
    EXPECT_EQ(e.code(), XXNET_E_UNKNOWN_CONN);
    EXPECT_EQ(std::string(e.what()).rfind("send to 12345: ", 0), 0u) << e.what();
  }
  EXPECT_TRUE(xxnet::Result().ok());
  EXPECT_FALSE(xxnet::Result().error_code());
  EXPECT_NO_THROW(xxnet::Result().check());
}

TEST(Wrapper, NeedAckIsDelivered) {
  Pair p;
  std::vector<uint64_t> delivered;
  p.client.on(Kind::Delivered, [&](const Event& e) { delivered.push_back(e.id()); });
  p.client.on(Kind::Expired, [&](const Event& e) { ADD_FAILURE() << "expired: " << e.id() << " code " << e.code(); });
  const xxnet::AckResult by_addr = p.client.send_need_ack(kLo, p.port, "by address", {0, 1});
  ASSERT_TRUE(by_addr.ok());
  EXPECT_NE(by_addr.id(), 0u);
  const uint64_t by_conn = p.client.send_conn_need_ack(p.client_conn, "by conn", {0, 1, 3000}).check();
  EXPECT_NE(by_conn, by_addr.id());
  ASSERT_TRUE(dispatch_until({&p.server, &p.client}, [&] { return delivered.size() == 2; }));
  EXPECT_EQ(delivered, (std::vector<uint64_t>{by_addr.id(), by_conn}));
}

TEST(Wrapper, ConnInfoAndStats) {
  Pair p;
  const std::optional<xxnet::ConnInfo> info = p.client.conn_info(p.client_conn);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->state, xxnet::PeerState::Connected);
  EXPECT_EQ(info->peer_ip, "127.0.0.1");
  EXPECT_EQ(info->peer_port, p.port);
  ASSERT_TRUE(p.server.conn_info(p.server_conn).has_value());

  const xxnet::Stats s = p.server.stats();
  EXPECT_EQ(s.accepted_connections, 1u);
  EXPECT_GE(s.msgs_in, 1u);  // the "hello" that opened the connection
  EXPECT_TRUE(wait_until([&] { return p.client.stats().msgs_out >= 1; }));
}

TEST(Wrapper, WouldBlockIsSurfacedAndWritableFollows) {
  Context server;
  Context client(xxnet::Config().send_high_water(4096).send_low_water(1024));
  const uint16_t port = server.listen(kLo);
  const std::string chunk(64 * 1024, 'w');
  // The first message is always accepted; the next ones exceed the high-water
  // mark while it is still unacknowledged (the connection is not even up yet).
  xxnet::SendResult r;
  int accepted = 0;
  for (int i = 0; i < 1000; ++i) {
    r = client.send(kLo, port, chunk);
    if (!r.ok()) break;
    ++accepted;
  }
  ASSERT_TRUE(r.would_block()) << r.code() << " " << r.message();
  EXPECT_EQ(r.code(), XXNET_E_WOULD_BLOCK);
  EXPECT_GE(accepted, 1);

  bool writable = false;
  uint16_t writable_port = 0;
  int received = 0;
  client.on(Kind::Writable, [&](const Event& e) {
    writable = true;
    writable_port = e.peer_port();
  });
  server.on(Kind::Message, [&](const Event& e) {
    EXPECT_EQ(e.data(), chunk);
    ++received;
  });
  ASSERT_TRUE(dispatch_until({&server, &client}, [&] { return writable && received == accepted; }));
  EXPECT_EQ(writable_port, port);
  EXPECT_TRUE(client.send(kLo, port, chunk).ok());  // accepted again
}

TEST(Wrapper, LogHandler) {
  struct Lines {
    std::mutex m;
    std::vector<std::string> v;
  };
  auto lines = std::make_shared<Lines>();
  std::atomic<int> calls{0};
  // Called on the reactor thread (or the calling one): thread-safe, quick, may even throw.
  xxnet::set_log_handler(
      [lines, &calls](int level, std::string_view target, std::string_view msg) {
        {
          std::lock_guard<std::mutex> lock(lines->m);
          lines->v.push_back(std::to_string(level) + " " + std::string(target) + " " + std::string(msg));
        }
        if (calls.fetch_add(1) == 0) throw std::runtime_error("swallowed by the wrapper");
      },
      XXNET_LOG_DEBUG);
  {
    Context c;
    (void)c.listen(kLo);  // logs "listening on ..." at INFO
    EXPECT_TRUE(wait_until([&] {
      std::lock_guard<std::mutex> lock(lines->m);
      for (const std::string& l : lines->v)
        if (l.find("listening on 127.0.0.1:") != std::string::npos && l.rfind("3 xxnet", 0) == 0) return true;
      return false;
    }));
  }
  EXPECT_THROW(xxnet::set_log_handler(nullptr, 9), xxnet::Error);
  // Back to the default (stderr, warnings); the previous handler is destroyed
  // when set_log_handler returns, so `calls` is not touched afterwards.
  xxnet::set_log_handler(nullptr, XXNET_LOG_WARN);
  EXPECT_EQ(lines.use_count(), 1);
  const int at_reset = calls.load();
  {
    Context c;
    (void)c.listen(kLo);
  }
  EXPECT_EQ(calls.load(), at_reset);
}

}  // namespace
