// Strangers and protocol violations on the wire (docs/PROTOCOL.md), seen from
// a plain POSIX socket. A protocol error closes only the connection it
// happened on; the server keeps serving everybody else.
#include "test_util.hpp"

using namespace xt;

namespace {

/// A well-behaved client keeps exchanging messages with the server.
void expect_round_trip(Ctx& server, Ctx& good, uint16_t port, const std::string& text) {
  const size_t before_s = server.count(XXNET_EVENT_MESSAGE), before_g = good.count(XXNET_EVENT_MESSAGE);
  ASSERT_EQ(good.send("127.0.0.1", port, text, 0, 1), XXNET_OK);
  ASSERT_TRUE(poll_until({&server, &good}, [&] { return server.count(XXNET_EVENT_MESSAGE) == before_s + 1; }))
      << "server: " << server.dump() << "\ngood: " << good.dump();
  const Event m = server.messages().back();
  EXPECT_EQ(m.data, text);
  ASSERT_EQ(server.send_conn(m.conn, "re: " + text), XXNET_OK);
  ASSERT_TRUE(poll_until({&server, &good}, [&] { return good.count(XXNET_EVENT_MESSAGE) == before_g + 1; }))
      << "good: " << good.dump();
  EXPECT_EQ(good.messages().back().data, "re: " + text);
}

}  // namespace

TEST(Protocol, GarbageClientIsDisconnectedOthersUnaffected) {
  Ctx server, good;
  ASSERT_TRUE(server && good) << xxnet_last_error();
  const uint16_t port = server.listen();
  ASSERT_NE(port, 0);
  expect_round_trip(server, good, port, "before");

  int fd = raw_connect(port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "GET / HTTP/1.1\r\n\r\n"));
  const auto t0 = Clock::now();
  bool closed = false;
  poll_until({&server, &good}, [&] {
    struct pollfd p = {fd, POLLIN, 0};
    if (::poll(&p, 1, 0) > 0) closed = wait_closed(fd, 5ms) || closed;
    return closed;
  }, 2000ms);
  const double took = elapsed_ms(t0);
  ::close(fd);
  EXPECT_TRUE(closed) << "the raw socket saw no EOF/reset within 2 s";
  EXPECT_LT(took, 2000.0);
  EXPECT_TRUE(poll_until({&server, &good}, [&] { return server.stats().protocol_errors >= 1; }))
      << "protocol_errors " << server.stats().protocol_errors;

  expect_round_trip(server, good, port, "after");
  EXPECT_EQ(server.count(XXNET_EVENT_MESSAGE), 2u) << "the garbage became a message";
  EXPECT_EQ(server.count(XXNET_EVENT_CONNECTED), 1u) << server.dump();
  EXPECT_EQ(good.count(XXNET_EVENT_DISCONNECTED), 0u) << good.dump();
  EXPECT_TRUE(poll_until(server, [&] { return server.stats().open_connections == 1; }));
}

TEST(Protocol, WrongVersionAndBadPrefaceAreRefused) {
  Ctx server;
  ASSERT_TRUE(server) << xxnet_last_error();
  const uint16_t port = server.listen();
  ASSERT_NE(port, 0);
  std::string reserved = preface();
  reserved[7] = 1;
  const std::string inputs[] = {preface(2) + hello(1, 1), reserved + hello(1, 1), std::string("XXNU"),
                                std::string(8, '\0')};
  uint64_t expected_errors = 0;
  for (const std::string& in : inputs) {
    int fd = raw_connect(port);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, in));
    const auto t0 = Clock::now();
    bool closed = false;
    poll_until(server, [&] {
      struct pollfd p = {fd, POLLIN, 0};
      if (::poll(&p, 1, 0) > 0) closed = wait_closed(fd, 5ms) || closed;
      return closed;
    }, 2000ms);
    ::close(fd);
    EXPECT_TRUE(closed) << "input of " << in.size() << " bytes was not refused";
    EXPECT_LT(elapsed_ms(t0), 2000.0);
    ++expected_errors;
    EXPECT_TRUE(poll_until(server, [&] { return server.stats().protocol_errors >= expected_errors; }));
  }
  EXPECT_EQ(server.count(XXNET_EVENT_CONNECTED), 0u) << server.dump();
  EXPECT_EQ(server.count(XXNET_EVENT_MESSAGE), 0u);
}

// A hand-written client that follows the spec interoperates: the handshake,
// one whole message, one message in three parts, and a reply frame whose
// header carries flags, lane, msg_id and seq as documented.
TEST(Protocol, HandWrittenClientInteroperates) {
  xxnet_config cfg = default_config();
  cfg.reconnect_give_up_ms = 300;  // how long the server waits for a vanished client to come back
  Ctx server(cfg);
  ASSERT_TRUE(server) << xxnet_last_error();
  const uint16_t port = server.listen();
  ASSERT_NE(port, 0);
  int fd = raw_handshake(port);
  ASSERT_GE(fd, 0);

  // Whole message: FIRST|LAST, lane 2, msg_id 77, seq 1.
  ASSERT_TRUE(send_all(fd, frame(kData, "hi raw", 3, 2, 77, 1)));
  // Three parts on lane 0: total_len 3000, fragments of 1000.
  const std::string big = pattern(5, 3000);
  std::string first_body;
  put_le(first_body, 3000, 4);
  first_body += big.substr(0, 1000);
  ASSERT_TRUE(send_all(fd, frame(kData, first_body, 1, 0, 88, 1) + frame(kData, big.substr(1000, 1000), 0, 0, 88, 1) +
                               frame(kData, big.substr(2000), 2, 0, 88, 1)));
  // Second whole message on lane 2: seq 2.
  ASSERT_TRUE(send_all(fd, frame(kData, "", 3, 2, 78, 2)));
  // A PING is allowed at any time (control frames may carry trailing bytes).
  ASSERT_TRUE(send_all(fd, frame(kPing, std::string("12345678") + "extra")));

  ASSERT_TRUE(poll_until(server, [&] { return server.count(XXNET_EVENT_MESSAGE) == 3; })) << server.dump();
  ASSERT_EQ(server.count(XXNET_EVENT_CONNECTED), 1u);
  const Event c = *server.first(XXNET_EVENT_CONNECTED);  // a copy: polling may grow server.events
  EXPECT_EQ(c.id, 0u);
  EXPECT_EQ(c.peer_ip, "127.0.0.1");
  sockaddr_in local;
  socklen_t sl = sizeof local;
  getsockname(fd, reinterpret_cast<sockaddr*>(&local), &sl);
  EXPECT_EQ(c.peer_port, ntohs(local.sin_port)) << "a peer that listens nowhere is named by its socket's port";
  std::vector<Event> msgs = server.messages();
  const Event* on2[2] = {nullptr, nullptr};
  const Event* on0 = nullptr;
  for (const Event& m : msgs) {
    if (m.lane == 2 && !on2[0]) on2[0] = &m;
    else if (m.lane == 2) on2[1] = &m;
    else on0 = &m;
  }
  ASSERT_TRUE(on2[0] && on2[1] && on0) << server.dump();
  EXPECT_EQ(on2[0]->data, "hi raw");
  EXPECT_EQ(on2[0]->msg_id, 77u);
  EXPECT_EQ(on2[1]->data, "");
  EXPECT_EQ(on2[1]->msg_id, 78u);
  EXPECT_EQ(on0->msg_id, 88u);
  EXPECT_TRUE(on0->data == big) << "reassembled " << on0->data.size() << " bytes";

  // Reply: the server's DATA frame as the spec says. A PONG for our PING and
  // ACKs for our messages may come first.
  ASSERT_EQ(server.send_conn(c.conn, "pong!", 1, 4242), XXNET_OK);
  server.poll(0);
  bool got_data = false, got_ack = false;
  for (int i = 0; i < 16 && !got_data; ++i) {
    std::string hdr, body;
    ASSERT_TRUE(recv_exact(fd, 16, hdr)) << "no frame from the server";
    const uint32_t len = static_cast<uint32_t>(get_le(hdr, 0, 4));
    ASSERT_LE(len, 1024u);
    ASSERT_TRUE(recv_exact(fd, len, body));
    if (static_cast<uint8_t>(hdr[4]) == kPong) {
      EXPECT_EQ(body.substr(0, 8), "12345678");
      continue;
    }
    if (static_cast<uint8_t>(hdr[4]) == kAck) {
      // Cumulative: last delivered seq per lane. We sent seq 1 on lane 0 and seq 1, 2 on lane 2.
      ASSERT_GE(body.size(), 16u);
      EXPECT_LE(get_le(body, 0, 4), 1u);
      EXPECT_LE(get_le(body, 8, 4), 2u);
      got_ack = true;
      continue;
    }
    ASSERT_EQ(static_cast<uint8_t>(hdr[4]), kData) << "unexpected frame type " << static_cast<int>(hdr[4]);
    got_data = true;
    EXPECT_EQ(static_cast<uint8_t>(hdr[5]), 3) << "FIRST|LAST";
    EXPECT_EQ(static_cast<uint8_t>(hdr[6]), 1) << "lane";
    EXPECT_EQ(static_cast<uint8_t>(hdr[7]), 0) << "reserved";
    EXPECT_EQ(get_le(hdr, 8, 4), 4242u) << "msg_id";
    EXPECT_EQ(get_le(hdr, 12, 4), 1u) << "seq of the first message on lane 1";
    EXPECT_EQ(body, "pong!");
  }
  EXPECT_TRUE(got_data);
  (void)got_ack;  // an ACK may also ride later; its presence is not required here
  // Closing without GOAWAY is a lost link, not the end of the session: LINK_DOWN,
  // then (the client listens nowhere, so the server can only wait for it)
  // DISCONNECTED once reconnect_give_up_ms has passed.
  ::close(fd);
  ASSERT_TRUE(poll_until(server, [&] { return server.count(XXNET_EVENT_DISCONNECTED) == 1; })) << server.dump();
  const Event* down = server.first(XXNET_EVENT_LINK_DOWN);
  ASSERT_NE(down, nullptr) << server.dump();
  EXPECT_EQ(down->conn, c.conn);
  EXPECT_TRUE(down->code == XXNET_E_PEER_CLOSED || down->code == XXNET_E_CONN_RESET) << *down;
  EXPECT_EQ(server.first(XXNET_EVENT_DISCONNECTED)->conn, c.conn);
  EXPECT_EQ(server.stats().protocol_errors, 0u);
}

// Each violation, sent after a valid handshake, closes that connection with
// its documented code and the raw socket sees the close. A protocol error
// ends the session (DISCONNECTED) and counts in protocol_errors; a stream
// cut mid-frame (XXNET_E_TRUNCATED) only takes the link down (LINK_DOWN), as
// a crashed peer would (docs/PROTOCOL.md §2).
TEST(Protocol, ViolationsAfterHandshakeCloseWithTheirCode) {
  struct Case {
    const char* name;
    std::string bytes;
    int code;
    bool half_close;  // shut down our write side after sending; then only the link goes down
    size_t legit = 0;  // valid messages sent before the violation
  };
  std::string too_big_first;
  put_le(too_big_first, 1u << 20, 4);  // total_len 1 MiB > max_message_size 64 KiB
  too_big_first += std::string(100, 'a');
  std::string part_first;
  put_le(part_first, 5000, 4);
  part_first += std::string(1000, 'p');
  std::string small_total;
  put_le(small_total, 10, 4);  // total_len not larger than the first fragment
  small_total += std::string(100, 's');
  const Case cases[] = {
      {"frame body over MAX_FRAME_BODY", frame_header(0xFFFFFFF0u, kData, 3, 0, 1, 1), XXNET_E_FRAME_TOO_LARGE, false},
      {"frame body just over MAX_FRAME_BODY", frame_header((1u << 20) + 65, kData, 3, 0, 1, 1),
       XXNET_E_FRAME_TOO_LARGE, false},
      {"total_len over max_message_size", frame(kData, too_big_first, 1, 0, 1, 1), XXNET_E_MESSAGE_TOO_LARGE, false},
      {"unknown frame type", frame(9, "x"), XXNET_E_BAD_FRAME, false},
      {"lane 4", frame(kData, "x", 3, 4, 1, 1), XXNET_E_BAD_FRAME, false},
      {"undefined DATA flag", frame(kData, "x", 3 | 4, 0, 1, 1), XXNET_E_BAD_FRAME, false},
      {"reserved byte set", [] { std::string f = frame(kData, "x", 3, 0, 1, 1); f[7] = 1; return f; }(),
       XXNET_E_BAD_FRAME, false},
      {"seq does not start at 1", frame(kData, "x", 3, 0, 1, 5), XXNET_E_BAD_FRAME, false},
      {"seq skips", frame(kData, "x", 3, 0, 1, 1) + frame(kData, "y", 3, 0, 1, 3), XXNET_E_BAD_FRAME, false, 1},
      {"middle part with no message open", frame(kData, "x", 0, 0, 1, 1), XXNET_E_BAD_FRAME, false},
      {"FIRST while a message is open", frame(kData, part_first, 1, 0, 1, 1) + frame(kData, part_first, 1, 0, 1, 1),
       XXNET_E_BAD_FRAME, false},
      {"part with another msg_id", frame(kData, part_first, 1, 0, 1, 1) + frame(kData, "zz", 0, 0, 2, 1),
       XXNET_E_BAD_FRAME, false},
      {"parts add up to more than total_len",
       frame(kData, part_first, 1, 0, 1, 1) + frame(kData, std::string(4500, 'q'), 2, 0, 1, 1), XXNET_E_BAD_FRAME,
       false},
      {"total_len not larger than the first fragment", frame(kData, small_total, 1, 0, 1, 1), XXNET_E_BAD_FRAME,
       false},
      {"FIRST body shorter than 4 bytes", frame(kData, "ab", 1, 0, 1, 1), XXNET_E_BAD_FRAME, false},
      {"second HELLO", hello(1, 2), XXNET_E_BAD_FRAME, false},
      {"EOF mid-frame", frame(kData, "abcdef", 3, 0, 1, 1).substr(0, 19), XXNET_E_TRUNCATED, true},
      {"EOF mid-message", frame(kData, part_first, 1, 0, 1, 1), XXNET_E_TRUNCATED, true},
  };
  xxnet_config cfg = default_config();
  cfg.max_message_size = 64u << 10;
  Ctx server(cfg), good;
  ASSERT_TRUE(server && good) << xxnet_last_error();
  const uint16_t port = server.listen();
  ASSERT_NE(port, 0);
  expect_round_trip(server, good, port, "first");
  uint64_t errors = 0;
  size_t legit = 1;  // "first"
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    const uint32_t kind = k.half_close ? XXNET_EVENT_LINK_DOWN : XXNET_EVENT_DISCONNECTED;
    const size_t before = server.count(kind);
    int fd = raw_handshake(port);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, k.bytes));
    if (k.half_close) ::shutdown(fd, SHUT_WR);
    ASSERT_TRUE(poll_until({&server, &good}, [&] { return server.count(kind) > before; })) << server.dump();
    const Event d = server.of(kind).back();
    EXPECT_EQ(d.code, k.code) << "got " << d.code << " (" << xxnet_strerror(d.code) << ")";
    EXPECT_TRUE(wait_closed(fd, 2000ms)) << "the raw socket was not closed";
    ::close(fd);
    legit += k.legit;
    if (k.half_close) continue;
    ++errors;
    EXPECT_TRUE(poll_until(server, [&] { return server.stats().protocol_errors >= errors; }))
        << "protocol_errors " << server.stats().protocol_errors << ", want " << errors;
  }
  EXPECT_GE(server.stats().protocol_errors, errors);
  EXPECT_EQ(server.count(XXNET_EVENT_MESSAGE), legit) << "no violating input became a message";
  expect_round_trip(server, good, port, "last");
}
