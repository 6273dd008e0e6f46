// nng over tcp://127.0.0.1: push0 -> pull0 for one-way traffic and fan-in,
// pair0 for request/response and pipelining (the server sends back the
// nng_msg it received with nng_sendmsg). Senders use nng_send (a copy into
// a new message), receivers nng_recvmsg. TCP_NODELAY is nng's default and
// is set explicitly; send and receive buffers of 1024 messages are asked for
// where the protocol has them (comparable to ZeroMQ's HWM of 1000).
// Send/receive timeouts of 200 ms only let the loops check their deadline.
// W5: a rep0 server counting pipes with nng_pipe_notify; the client is one
// req0 socket with N dialers. (nng cannot be used in a child forked after
// nng was initialised, which is one reason every cell runs in fresh processes.)
#include <nng/nng.h>
#include <nng/protocol/pair0/pair.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include <unistd.h>

#include <atomic>
#include <string>

#include "common.hpp"

namespace pb {

namespace {

[[noreturn]] void ndie(int rv, const char* what) { die("nng: %s: %s", what, nng_strerror(rv)); }

void check(int rv, const char* what) {
  if (rv != 0) ndie(rv, what);
}

/// Owns the sockets of one side of a cell; closes them and finalises nng.
class NngSide {
 public:
  NngSide() = default;
  ~NngSide() {
    for (nng_socket s : socks_) nng_close(s);
    nng_fini();
  }
  NngSide(const NngSide&) = delete;
  NngSide& operator=(const NngSide&) = delete;

  nng_socket open(int (*opener)(nng_socket*)) {
    nng_socket s;
    check(opener(&s), "opening a socket");
    socks_.push_back(s);
    check(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 200), "NNG_OPT_RECVTIMEO");
    check(nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 200), "NNG_OPT_SENDTIMEO");
    check(nng_socket_set_bool(s, NNG_OPT_TCP_NODELAY, true), "NNG_OPT_TCP_NODELAY");
    // Not every protocol has these queues; those that do get 1024 messages.
    nng_socket_set_int(s, NNG_OPT_SENDBUF, 1024);
    nng_socket_set_int(s, NNG_OPT_RECVBUF, 1024);
    return s;
  }

 private:
  std::vector<nng_socket> socks_;
};

std::string url(uint16_t port) { return "tcp://127.0.0.1:" + std::to_string(port); }

uint16_t listen_any(nng_socket s) {
  nng_listener l;
  check(nng_listener_create(&l, s, "tcp://127.0.0.1:0"), "nng_listener_create");
  check(nng_listener_start(l, 0), "nng_listener_start");
  int port = 0;
  check(nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port), "NNG_OPT_TCP_BOUND_PORT");
  return static_cast<uint16_t>(port);
}

void dial(nng_socket s, uint16_t port) { check(nng_dial(s, url(port).c_str(), nullptr, 0), "nng_dial"); }

void send(nng_socket s, const void* p, size_t n, const char* what) {
  for (;;) {
    const int rv = nng_send(s, const_cast<void*>(p), n, 0);
    if (rv == 0) return;
    if (rv != NNG_ETIMEDOUT && rv != NNG_EAGAIN) ndie(rv, what);
    guard(what);
  }
}

nng_msg* recv(nng_socket s, const char* what) {
  for (;;) {
    nng_msg* m = nullptr;
    const int rv = nng_recvmsg(s, &m, 0);
    if (rv == 0) return m;
    if (rv != NNG_ETIMEDOUT && rv != NNG_EAGAIN) ndie(rv, what);
    guard(what);
  }
}

const uint8_t* body(nng_msg* m) { return static_cast<const uint8_t*>(nng_msg_body(m)); }

// ---------------------------------------------------------------------------
// W1 / W4: push0 -> pull0
// ---------------------------------------------------------------------------

void sink_server(const Spec& spec, Chan& ch, ServerOut& out, Report& rep) {
  NngSide side;
  nng_socket pull = side.open(nng_pull0_open);
  ch.send_tagged(kMsgPort, listen_any(pull));
  const uint32_t conns = spec.work == Work::W4 ? static_cast<uint32_t>(spec.conns) : 1;
  StreamCheck sc(conns, spec.size);
  const uint64_t total = uint64_t{conns} * (spec.count + 1);
  uint64_t received = 0;
  uint32_t warm = 0;
  while (received < total) {
    nng_msg* m = recv(pull, "receiving");
    const uint64_t key = sc.on_message(body(m), nng_msg_len(m), "nng server (pull0)");
    nng_msg_free(m);
    if (key_seq(key) == 0 && ++warm == conns) ch.send_tagged(kMsgGo);
    ++received;
    if ((received & 1023) == 0) guard("receiving");
  }
  out.t_last_ns = now_ns();
  out.received = received;
  finish(ch, rep);
}

void w1_client(const Spec& spec, Chan& ch, Report& rep) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  NngSide side;
  nng_socket push = side.open(nng_push0_open);
  dial(push, port);
  std::vector<uint8_t> msg(spec.size);
  fill_payload(msg.data(), msg.size(), make_key(0, 0));
  send(push, msg.data(), msg.size(), "sending the warm-up");
  ch.expect(kMsgGo, "waiting for go");
  rep.t0_ns = now_ns();
  for (uint64_t seq = 1; seq <= spec.count; ++seq) {
    fill_payload(msg.data(), msg.size(), make_key(0, seq));
    send(push, msg.data(), msg.size(), "sending");
  }
  rep.count = spec.count;
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "waiting for the server to finish");
}

void w4_client(const Spec& spec, Chan& ch, Report& rep) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  NngSide side;
  const size_t nc = static_cast<size_t>(spec.conns);
  std::vector<nng_socket> socks;
  std::vector<uint8_t> msg(spec.size);
  for (size_t i = 0; i < nc; ++i) {
    socks.push_back(side.open(nng_push0_open));
    dial(socks.back(), port);
    fill_payload(msg.data(), msg.size(), make_key(static_cast<uint32_t>(i), 0));
    send(socks.back(), msg.data(), msg.size(), "sending the warm-up");
  }
  ch.expect(kMsgGo, "waiting for go");
  rep.t0_ns = now_ns();
  for (uint64_t base = 1; base <= spec.count; base += 8) {
    guard("sending on 100 sockets");
    for (size_t i = 0; i < nc; ++i) {
      for (uint64_t seq = base; seq < base + 8 && seq <= spec.count; ++seq) {
        fill_payload(msg.data(), msg.size(), make_key(static_cast<uint32_t>(i), seq));
        send(socks[i], msg.data(), msg.size(), "sending");
      }
    }
  }
  rep.count = spec.count * nc;
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "waiting for the server to finish");
}

// ---------------------------------------------------------------------------
// W2 / W3: pair0 echo
// ---------------------------------------------------------------------------

void echo_server(Chan& ch, ServerOut& out, Report& rep, uint64_t total) {
  NngSide side;
  nng_socket s = side.open(nng_pair0_open);
  ch.send_tagged(kMsgPort, listen_any(s));
  uint64_t echoed = 0;
  while (echoed < total) {
    nng_msg* m = recv(s, "echoing");
    for (;;) {
      const int rv = nng_sendmsg(s, m, 0);  // on success nng owns m
      if (rv == 0) break;
      if (rv != NNG_ETIMEDOUT && rv != NNG_EAGAIN) ndie(rv, "echoing");
      guard("echoing");
    }
    ++echoed;
    if ((echoed & 1023) == 0) guard("echoing");
  }
  out.received = echoed;
  finish(ch, rep);
}

void w2_client(const Spec& spec, Chan& ch, Report& rep) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  NngSide side;
  nng_socket s = side.open(nng_pair0_open);
  dial(s, port);
  std::vector<uint8_t> msg(spec.size);
  std::vector<double> lat;
  lat.reserve(spec.count);
  for (uint64_t i = 0; i < spec.warmup + spec.count; ++i) {
    fill_payload(msg.data(), msg.size(), make_key(0, i));
    const int64_t t = now_ns();
    send(s, msg.data(), msg.size(), "sending a request");
    nng_msg* m = recv(s, "waiting for a reply");
    const int64_t t2 = now_ns();
    check_payload(body(m), nng_msg_len(m), spec.size, make_key(0, i), "nng client (reply)");
    nng_msg_free(m);
    if (i >= spec.warmup) lat.push_back(static_cast<double>(t2 - t) / 1e3);
  }
  summarize_latencies(lat, rep);
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "waiting for the server to finish");
}

void w3_client(const Spec& spec, Chan& ch, Report& rep) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  NngSide side;
  nng_socket s = side.open(nng_pair0_open);
  dial(s, port);
  std::vector<uint8_t> msg(spec.size);
  fill_payload(msg.data(), msg.size(), make_key(0, 0));
  send(s, msg.data(), msg.size(), "sending the warm-up");
  nng_msg* m = recv(s, "waiting for the warm-up reply");
  check_payload(body(m), nng_msg_len(m), spec.size, make_key(0, 0), "nng client (reply)");
  nng_msg_free(m);

  rep.t0_ns = now_ns();
  uint64_t next = 1;
  for (int i = 0; i < spec.window && next <= spec.count; ++i, ++next) {
    fill_payload(msg.data(), msg.size(), make_key(0, next));
    send(s, msg.data(), msg.size(), "sending requests");
  }
  for (uint64_t expect = 1; expect <= spec.count; ++expect) {
    m = recv(s, "waiting for replies");
    check_payload(body(m), nng_msg_len(m), spec.size, make_key(0, expect), "nng client (reply)");
    nng_msg_free(m);
    if (next <= spec.count) {
      fill_payload(msg.data(), msg.size(), make_key(0, next++));
      send(s, msg.data(), msg.size(), "sending requests");
    }
    if ((expect & 1023) == 0) guard("waiting for replies");
  }
  rep.t1_ns = now_ns();
  rep.count = spec.count;
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "waiting for the server to finish");
}

// ---------------------------------------------------------------------------
// W5: idle connections to a rep0 server
// ---------------------------------------------------------------------------

std::atomic<uint64_t> g_pipes{0};

void on_pipe(nng_pipe, nng_pipe_ev ev, void*) {
  if (ev == NNG_PIPE_EV_ADD_POST) g_pipes.fetch_add(1);
}

void w5_server(const Spec& spec, Chan& ch, ServerOut& out, Report& rep) {
  NngSide side;
  nng_socket s = side.open(nng_rep0_open);
  g_pipes = 0;
  check(nng_pipe_notify(s, NNG_PIPE_EV_ADD_POST, on_pipe, nullptr), "nng_pipe_notify");
  const uint16_t port = listen_any(s);
  const size_t heap0 = heap_in_use(), rss0 = rss_bytes();
  ch.send_tagged(kMsgPort, port);
  while (g_pipes.load() < static_cast<uint64_t>(spec.conns)) {
    guard(progress("waiting for the pipes of the idle connections", g_pipes.load(), spec.conns));
    ::usleep(1000);
  }
  ::usleep(300000);
  out.conns = g_pipes.load();
  out.heap_per_conn = (static_cast<double>(heap_in_use()) - static_cast<double>(heap0)) / spec.conns;
  out.rss_per_conn = (static_cast<double>(rss_bytes()) - static_cast<double>(rss0)) / spec.conns;
  finish(ch, rep);
}

void w5_client(const Spec& spec, Chan& ch) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  NngSide side;
  nng_socket s = side.open(nng_req0_open);
  for (int i = 0; i < spec.conns; ++i) {
    if (i % 64 == 0) guard("opening idle connections");
    dial(s, port);
  }
  Report rep;
  rep.count = static_cast<uint64_t>(spec.conns);
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "holding idle connections");
  // Closing 10 000 dialers one by one takes nng over 20 s here; nothing is
  // measured after this point, so leave and let the kernel close the sockets.
  std::fflush(stdout);
  std::fflush(stderr);
  _exit(0);
}

}  // namespace

std::string nng_version() { return ::nng_version(); }

void nng_server(const Spec& spec, Chan& ch, ServerOut& out, Report& rep) {
  switch (spec.work) {
    case Work::W1:
    case Work::W4: sink_server(spec, ch, out, rep); break;
    case Work::W2: echo_server(ch, out, rep, spec.warmup + spec.count); break;
    case Work::W3: echo_server(ch, out, rep, spec.count + 1); break;
    case Work::W5: w5_server(spec, ch, out, rep); break;
  }
}

void nng_client(const Spec& spec, Chan& ch) {
  Report rep;
  switch (spec.work) {
    case Work::W1: w1_client(spec, ch, rep); break;
    case Work::W2: w2_client(spec, ch, rep); break;
    case Work::W3: w3_client(spec, ch, rep); break;
    case Work::W4: w4_client(spec, ch, rep); break;
    case Work::W5: w5_client(spec, ch); break;
  }
}

}  // namespace pb
