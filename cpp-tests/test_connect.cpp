// Connecting on first send, connection pooling, ordering, two contexts in one process.
#include "test_util.hpp"

using namespace xt;

namespace {

std::string numbered(uint32_t i) { return "msg-" + std::to_string(i) + "-" + pattern(i, i % 300); }

}  // namespace

// The first send to an address opens the connection; everything sent before it
// is up waits and arrives, in order; later sends reuse the same connection.
TEST(Connect, FirstSendConnectsQueuedMessagesArriveInOrderAndConnectionIsReused) {
  Ctx a, b;
  ASSERT_TRUE(a && b) << xxnet_last_error();
  const uint16_t pb = b.listen();
  ASSERT_NE(pb, 0);

  constexpr uint32_t kFirst = 1000, kLater = 100;
  for (uint32_t i = 0; i < kFirst; ++i) ASSERT_EQ(a.send("127.0.0.1", pb, numbered(i), 0, i), XXNET_OK) << i;

  ASSERT_TRUE(poll_until({&a, &b}, [&] { return b.count(XXNET_EVENT_MESSAGE) >= kFirst; }))
      << "receiver got " << b.count(XXNET_EVENT_MESSAGE) << "/" << kFirst << "\nA: " << a.dump() << "\nB: " << b.dump();
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return a.count(XXNET_EVENT_CONNECTED) >= 1; })) << a.dump();

  // Later sends: the connection is up and must be reused.
  for (uint32_t i = kFirst; i < kFirst + kLater; ++i)
    ASSERT_EQ(a.send("127.0.0.1", pb, numbered(i), 0, i), XXNET_OK) << i;
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return b.count(XXNET_EVENT_MESSAGE) >= kFirst + kLater; })) << b.dump();
  poll_for({&a, &b}, 100ms);  // anything unexpected (a second CONNECTED, duplicates) shows up now

  const std::vector<Event> msgs = b.messages();
  ASSERT_EQ(msgs.size(), kFirst + kLater);
  for (uint32_t i = 0; i < msgs.size(); ++i) {
    ASSERT_EQ(msgs[i].msg_id, i) << "message " << i << " out of order";
    ASSERT_EQ(msgs[i].lane, 0u);
    ASSERT_EQ(msgs[i].data, numbered(i)) << "payload of message " << i;
  }

  ASSERT_EQ(a.count(XXNET_EVENT_CONNECTED), 1u) << a.dump();
  ASSERT_EQ(b.count(XXNET_EVENT_CONNECTED), 1u) << b.dump();
  const Event& ca = *a.first(XXNET_EVENT_CONNECTED);
  const Event& cb = *b.first(XXNET_EVENT_CONNECTED);
  EXPECT_EQ(ca.id, 1u) << "A initiated the connection";
  EXPECT_EQ(cb.id, 0u) << "B accepted the connection";
  EXPECT_NE(ca.conn, 0u);
  EXPECT_NE(cb.conn, 0u);
  EXPECT_LT(ca.conn, 1ull << 53);
  EXPECT_EQ(ca.peer_ip, "127.0.0.1");
  EXPECT_EQ(ca.peer_port, pb);
  EXPECT_EQ(cb.peer_ip, "127.0.0.1");
  for (const Event& m : msgs) ASSERT_EQ(m.conn, cb.conn);
  EXPECT_EQ(a.count(XXNET_EVENT_SEND_FAILED) + a.count(XXNET_EVENT_CONNECT_FAILED) +
                a.count(XXNET_EVENT_DISCONNECTED),
            0u)
      << a.dump();
  EXPECT_EQ(b.count(XXNET_EVENT_DISCONNECTED), 0u) << b.dump();

  // Counters are published by the reactor; give them a moment to settle.
  EXPECT_TRUE(poll_until({&a, &b}, [&] {
    xxnet_stats_t sa = a.stats(), sb = b.stats();
    return sa.open_connections == 1 && sb.open_connections == 1 && sa.msgs_out == kFirst + kLater &&
           sa.queued_msgs == 0 && sa.queued_bytes == 0 && sb.msgs_in == kFirst + kLater;
  }));
  xxnet_stats_t sa = a.stats(), sb = b.stats();
  EXPECT_EQ(sa.open_connections, 1u);
  EXPECT_EQ(sb.open_connections, 1u);
  EXPECT_EQ(sa.msgs_out, kFirst + kLater);
  EXPECT_EQ(sb.msgs_in, kFirst + kLater);
  EXPECT_EQ(sa.queued_msgs, 0u);
  EXPECT_EQ(sb.accepted_connections, 1u);
  EXPECT_EQ(sa.bytes_out, sb.bytes_in);
}

// Two contexts in one process, both listening, messages both ways. The
// receiver's peer_ip:peer_port is the sender's LISTEN address, so answering
// with xxnet_send(peer_ip, peer_port) reuses the pooled connection.
TEST(Connect, TwoContextsBothWaysReplyToPeerAddressReusesConnection) {
  Ctx a, b;
  ASSERT_TRUE(a && b) << xxnet_last_error();
  const uint16_t pa = a.listen(), pb = b.listen();
  ASSERT_TRUE(pa && pb);

  constexpr uint32_t kN = 50;
  for (uint32_t i = 0; i < kN; ++i) ASSERT_EQ(a.send("127.0.0.1", pb, "ping " + std::to_string(i), 0, i), XXNET_OK);

  // B answers every message at the address the event names.
  size_t answered = 0;
  auto pump = [&] {
    std::vector<Event> msgs = b.messages();
    for (; answered < msgs.size(); ++answered) {
      const Event& m = msgs[answered];
      EXPECT_EQ(xxnet_send(b.get(), m.peer_ip.c_str(), m.peer_port, bytes("pong " + m.data.substr(5)),
                           m.data.size()),
                XXNET_OK);
    }
    return a.count(XXNET_EVENT_MESSAGE) >= kN;
  };
  ASSERT_TRUE(poll_until({&a, &b}, pump)) << "A got " << a.count(XXNET_EVENT_MESSAGE) << " replies\nA: " << a.dump()
                                          << "\nB: " << b.dump();
  poll_for({&a, &b}, 100ms);

  const std::vector<Event> at_b = b.messages(), at_a = a.messages();
  ASSERT_EQ(at_b.size(), kN);
  ASSERT_EQ(at_a.size(), kN);
  for (uint32_t i = 0; i < kN; ++i) {
    EXPECT_EQ(at_b[i].peer_ip, "127.0.0.1");
    EXPECT_EQ(at_b[i].peer_port, pa) << "B must see A's listen port, not its socket's";
    EXPECT_EQ(at_b[i].data, "ping " + std::to_string(i));
    EXPECT_EQ(at_b[i].msg_id, i);
    EXPECT_EQ(at_a[i].peer_ip, "127.0.0.1");
    EXPECT_EQ(at_a[i].peer_port, pb);
    EXPECT_EQ(at_a[i].data, "pong " + std::to_string(i));
  }
  ASSERT_EQ(a.count(XXNET_EVENT_CONNECTED), 1u) << a.dump();
  ASSERT_EQ(b.count(XXNET_EVENT_CONNECTED), 1u) << b.dump();
  EXPECT_EQ(b.first(XXNET_EVENT_CONNECTED)->peer_port, pa);
  for (const Event& m : at_a) EXPECT_EQ(m.conn, a.first(XXNET_EVENT_CONNECTED)->conn);
  for (const Event& m : at_b) EXPECT_EQ(m.conn, b.first(XXNET_EVENT_CONNECTED)->conn);

  // Now B sends on its own initiative to A's listen address: still one connection.
  ASSERT_EQ(b.send("127.0.0.1", pa, "unprompted", 1, 4242), XXNET_OK);
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return a.count(XXNET_EVENT_MESSAGE) >= kN + 1; })) << a.dump();
  EXPECT_EQ(a.messages().back().data, "unprompted");
  EXPECT_EQ(a.messages().back().lane, 1u);
  EXPECT_EQ(a.messages().back().msg_id, 4242u);
  EXPECT_TRUE(poll_until({&a, &b}, [&] {
    return a.stats().open_connections == 1 && b.stats().open_connections == 1;
  }));
  EXPECT_EQ(a.stats().open_connections, 1u);
  EXPECT_EQ(b.stats().open_connections, 1u);
  EXPECT_EQ(a.count(XXNET_EVENT_CONNECTED), 1u) << a.dump();
  EXPECT_EQ(b.count(XXNET_EVENT_CONNECTED), 1u) << b.dump();
}

// Both nodes send to each other at the same instant (each opens a connection):
// the tie-break keeps one connection, and nothing is lost, duplicated or
// reordered (docs/PROTOCOL.md §3).
TEST(Connect, SimultaneousSendsSettleOnOneConnection) {
  constexpr int kRounds = 10;
  constexpr uint32_t kN = 200;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    Ctx a, b;
    ASSERT_TRUE(a && b) << xxnet_last_error();
    const uint16_t pa = a.listen(), pb = b.listen();
    ASSERT_TRUE(pa && pb);
    for (uint32_t i = 0; i < kN; ++i) {
      ASSERT_EQ(a.send("127.0.0.1", pb, "a" + std::to_string(i), i % 2, i), XXNET_OK);
      ASSERT_EQ(b.send("127.0.0.1", pa, "b" + std::to_string(i), i % 2, i), XXNET_OK);
    }
    ASSERT_TRUE(poll_until({&a, &b}, [&] {
      return a.count(XXNET_EVENT_MESSAGE) >= kN && b.count(XXNET_EVENT_MESSAGE) >= kN;
    })) << "A: " << a.dump() << "\nB: " << b.dump();
    poll_for({&a, &b}, 50ms);
    for (Ctx* c : {&a, &b}) {
      const char* who = c == &a ? "b" : "a";
      std::vector<Event> msgs = c->messages();
      ASSERT_EQ(msgs.size(), kN);
      uint32_t next[2] = {0, 1};
      for (const Event& m : msgs) {
        ASSERT_LT(m.lane, 2u);
        ASSERT_EQ(m.msg_id, next[m.lane]) << "lane " << m.lane << " out of order";
        ASSERT_EQ(m.data, who + std::to_string(m.msg_id));
        next[m.lane] += 2;
      }
      EXPECT_EQ(c->count(XXNET_EVENT_CONNECTED), 1u) << c->dump();
      EXPECT_EQ(c->count(XXNET_EVENT_SEND_FAILED), 0u) << c->dump();
      EXPECT_EQ(c->count(XXNET_EVENT_DISCONNECTED), 0u) << c->dump();
      for (const Event& f : c->of(XXNET_EVENT_CONNECT_FAILED))
        EXPECT_EQ(f.code, XXNET_E_DUPLICATE_CONN) << "only the tie-break may fail an attempt: " << f;
    }
    EXPECT_TRUE(poll_until({&a, &b}, [&] {
      return a.stats().open_connections == 1 && b.stats().open_connections == 1;
    })) << "open: A " << a.stats().open_connections << ", B " << b.stats().open_connections;
  }
}

// Lanes are independent: a small message on lane 0 sent after a large one on
// the bulk lane does not wait for the whole large message (PROTOCOL.md §4).
TEST(Connect, BulkLaneDoesNotBlockDefaultLane) {
  xxnet_config cfg = default_config();
  cfg.max_message_size = 64u << 20;
  Ctx a(cfg), b(cfg);
  ASSERT_TRUE(a && b) << xxnet_last_error();
  const uint16_t pb = b.listen();
  ASSERT_NE(pb, 0);
  // Establish the connection first so both messages meet a live connection.
  ASSERT_EQ(a.send("127.0.0.1", pb, "hello"), XXNET_OK);
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return b.count(XXNET_EVENT_MESSAGE) == 1; })) << b.dump();

  // 24 MiB: far more than the kernel buffers hold, under the default per-destination send limit.
  const std::string big = pattern(9, 24u << 20);
  ASSERT_EQ(a.send("127.0.0.1", pb, big, XXNET_LANE_BULK, 1), XXNET_OK);
  ASSERT_EQ(a.send("127.0.0.1", pb, "urgent", XXNET_LANE_DEFAULT, 2), XXNET_OK);
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return b.count(XXNET_EVENT_MESSAGE) == 3; }, 20000ms)) << b.dump();
  std::vector<Event> msgs = b.messages();
  EXPECT_EQ(msgs[1].msg_id, 2u) << "the lane-0 message waited for the whole 24 MiB bulk message";
  EXPECT_EQ(msgs[1].data, "urgent");
  const Event& bulk = msgs[1].msg_id == 1 ? msgs[1] : msgs[2];
  EXPECT_EQ(bulk.lane, static_cast<uint32_t>(XXNET_LANE_BULK));
  EXPECT_TRUE(bulk.data == big) << "bulk payload corrupted (len " << bulk.data.size() << ")";
}

// Messages of every size around the fragment boundary, on all lanes, arrive intact.
TEST(Connect, SizesAroundFragmentBoundaryArriveIntact) {
  xxnet_config cfg = default_config();
  cfg.fragment_size = 1024;  // small fragments: many parts per message
  Ctx a(cfg), b;
  ASSERT_TRUE(a && b) << xxnet_last_error();
  const uint16_t pb = b.listen();
  ASSERT_NE(pb, 0);
  const std::vector<size_t> sizes = {0, 1, 1023, 1024, 1025, 2047, 2048, 2049, 4096, 65536 + 3, 300000};
  uint32_t id = 0;
  for (uint32_t lane = 0; lane < XXNET_LANES; ++lane)
    for (size_t s : sizes) {
      ASSERT_EQ(a.send("127.0.0.1", pb, pattern(id, s), lane, id), XXNET_OK);
      ++id;
    }
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return b.count(XXNET_EVENT_MESSAGE) >= id; })) << b.dump();
  std::vector<Event> msgs = b.messages();
  ASSERT_EQ(msgs.size(), id);
  uint32_t next[XXNET_LANES] = {0};
  for (const Event& m : msgs) {
    ASSERT_LT(m.lane, static_cast<uint32_t>(XXNET_LANES));
    const uint32_t want = m.lane * static_cast<uint32_t>(sizes.size()) + next[m.lane]++;
    ASSERT_EQ(m.msg_id, want) << "lane " << m.lane;
    ASSERT_EQ(m.data.size(), sizes[want % sizes.size()]);
    ASSERT_TRUE(m.data == pattern(want, m.data.size())) << "payload of msg " << want;
  }
}

// A receiver that polls slowly, with a small recv_queue_limit, still gets
// everything, in order: the reactor stops reading and resumes as the host
// drains (nothing is dropped), and the sender's queue absorbs the rest.
TEST(Connect, SlowReceiverWithSmallRecvQueueGetsEverything) {
  xxnet_config rcfg = default_config();
  rcfg.recv_queue_limit = 256u * 1024;
  Ctx a, b(rcfg);
  ASSERT_TRUE(a && b) << xxnet_last_error();
  const uint16_t pb = b.listen();
  ASSERT_NE(pb, 0);
  constexpr uint32_t kN = 64;
  const size_t size = 256 * 1024;  // 16 MiB in all
  for (uint32_t i = 0; i < kN; ++i) ASSERT_EQ(a.send("127.0.0.1", pb, pattern(i, size), i % 2, i), XXNET_OK);
  // Drain B a few events at a time, with pauses, while A keeps its reactor busy.
  std::vector<std::string> got[2];
  const auto deadline = Clock::now() + 20000ms;
  size_t total = 0;
  for (int round = 0; round < kMaxRounds && total < kN && Clock::now() < deadline; ++round) {
    xxnet_event evs[2];
    const size_t n = xxnet_poll_recv(b.get(), evs, 2, 10);
    for (size_t i = 0; i < n; ++i) {
      if (evs[i].kind != XXNET_EVENT_MESSAGE) continue;
      ASSERT_LT(evs[i].lane, 2u);
      ASSERT_EQ(evs[i].msg_id, got[evs[i].lane].size() * 2 + evs[i].lane) << "lane " << evs[i].lane;
      got[evs[i].lane].emplace_back(reinterpret_cast<const char*>(evs[i].data), evs[i].len);
      ++total;
    }
    a.poll(0);
    if (round % 8 == 0) std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(total, kN) << "B got " << total << "/" << kN << "; A: " << a.dump();
  for (uint32_t lane = 0; lane < 2; ++lane)
    for (size_t k = 0; k < got[lane].size(); ++k) {
      const uint32_t id = static_cast<uint32_t>(k * 2 + lane);
      ASSERT_TRUE(got[lane][k] == pattern(id, size)) << "payload of msg " << id;
    }
  EXPECT_EQ(a.count(XXNET_EVENT_SEND_FAILED), 0u) << a.dump();
}
