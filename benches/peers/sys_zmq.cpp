// ZeroMQ (libzmq) over tcp://127.0.0.1, with its defaults (one I/O thread
// per context, HWM 1000 messages, TCP_NODELAY on): PUSH/PULL for one-way
// traffic and fan-in, DEALER -> ROUTER for request/response and pipelining
// (the ROUTER sends back the identity frame and the very zmq_msg_t it
// received). ZMQ_ROUTER_MANDATORY is set so a full peer makes the ROUTER
// block instead of dropping. Send/receive timeouts of 200 ms only let the
// loops check their deadline. W5: a ROUTER server, a socket monitor counts
// completed handshakes; the client has one DEALER per connection (spread over
// helper processes when RLIMIT_NOFILE is too low for two descriptors each).
#include <zmq.h>

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include <cerrno>
#include <cinttypes>
#include <cstdlib>
#include <string>

#include "common.hpp"

namespace pb {

namespace {

[[noreturn]] void zdie(const char* what) { die("zmq: %s: %s", what, zmq_strerror(zmq_errno())); }

void setopt_int(void* s, int opt, int v, const char* what) {
  if (zmq_setsockopt(s, opt, &v, sizeof v) != 0) zdie(what);
}

class ZCtx {
 public:
  ZCtx() : ctx_(zmq_ctx_new()) {
    if (ctx_ == nullptr) zdie("zmq_ctx_new");
  }
  ~ZCtx() {
    for (void* s : socks_) {
      int zero = 0;
      zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);  // everything was delivered already
      zmq_close(s);
    }
    zmq_ctx_term(ctx_);
  }
  ZCtx(const ZCtx&) = delete;
  ZCtx& operator=(const ZCtx&) = delete;
  void* get() const { return ctx_; }

  void* socket(int type) {
    void* s = zmq_socket(ctx_, type);
    if (s == nullptr) zdie("zmq_socket");
    setopt_int(s, ZMQ_RCVTIMEO, 200, "ZMQ_RCVTIMEO");
    setopt_int(s, ZMQ_SNDTIMEO, 200, "ZMQ_SNDTIMEO");
    socks_.push_back(s);
    return s;
  }

 private:
  void* ctx_;
  std::vector<void*> socks_;
};

uint16_t bind_any(void* s) {
  if (zmq_bind(s, "tcp://127.0.0.1:*") != 0) zdie("zmq_bind tcp://127.0.0.1:*");
  char ep[256];
  size_t len = sizeof ep;
  if (zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &len) != 0) zdie("ZMQ_LAST_ENDPOINT");
  const char* colon = std::strrchr(ep, ':');
  if (colon == nullptr) die("zmq: cannot parse endpoint %s", ep);
  return static_cast<uint16_t>(std::atoi(colon + 1));
}

std::string endpoint(uint16_t port) { return "tcp://127.0.0.1:" + std::to_string(port); }

void connect(void* s, uint16_t port) {
  if (zmq_connect(s, endpoint(port).c_str()) != 0) zdie("zmq_connect");
}

void send(void* s, const void* p, size_t n, int flags, const char* what) {
  for (;;) {
    if (zmq_send(s, p, n, flags) >= 0) return;
    if (zmq_errno() != EAGAIN && zmq_errno() != EINTR) zdie(what);
    guard(what);
  }
}

void send_msg(void* s, zmq_msg_t* m, int flags, const char* what) {
  for (;;) {
    if (zmq_msg_send(m, s, flags) >= 0) return;
    if (zmq_errno() != EAGAIN && zmq_errno() != EINTR) zdie(what);
    guard(what);
  }
}

void recv_msg(void* s, zmq_msg_t* m, const char* what) {
  for (;;) {
    if (zmq_msg_recv(m, s, 0) >= 0) return;
    if (zmq_errno() != EAGAIN && zmq_errno() != EINTR) zdie(what);
    guard(what);
  }
}

const uint8_t* bytes(zmq_msg_t* m) { return static_cast<const uint8_t*>(zmq_msg_data(m)); }

// ---------------------------------------------------------------------------
// W1 / W4: PUSH -> PULL
// ---------------------------------------------------------------------------

void sink_server(const Spec& spec, Chan& ch, ServerOut& out, Report& rep) {
  ZCtx ctx;
  void* pull = ctx.socket(ZMQ_PULL);
  const uint16_t port = bind_any(pull);
  ch.send_tagged(kMsgPort, port);
  const uint32_t conns = spec.work == Work::W4 ? static_cast<uint32_t>(spec.conns) : 1;
  StreamCheck sc(conns, spec.size);
  const uint64_t total = uint64_t{conns} * (spec.count + 1);
  uint64_t received = 0;
  uint32_t warm = 0;
  zmq_msg_t m;
  zmq_msg_init(&m);
  while (received < total) {
    recv_msg(pull, &m, "receiving");
    const uint64_t key = sc.on_message(bytes(&m), zmq_msg_size(&m), "zmq server (PULL)");
    if (key_seq(key) == 0 && ++warm == conns) ch.send_tagged(kMsgGo);
    ++received;
    if ((received & 1023) == 0) guard("receiving");
  }
  out.t_last_ns = now_ns();
  out.received = received;
  zmq_msg_close(&m);
  finish(ch, rep);
}

void w1_client(const Spec& spec, Chan& ch, Report& rep) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  ZCtx ctx;
  void* push = ctx.socket(ZMQ_PUSH);
  connect(push, port);
  std::vector<uint8_t> msg(spec.size);
  fill_payload(msg.data(), msg.size(), make_key(0, 0));
  send(push, msg.data(), msg.size(), 0, "sending the warm-up");
  ch.expect(kMsgGo, "waiting for go");
  rep.t0_ns = now_ns();
  for (uint64_t seq = 1; seq <= spec.count; ++seq) {
    fill_payload(msg.data(), msg.size(), make_key(0, seq));
    send(push, msg.data(), msg.size(), 0, "sending");
  }
  rep.count = spec.count;
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "waiting for the server to finish");
}

void w4_client(const Spec& spec, Chan& ch, Report& rep) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  ZCtx ctx;
  const size_t nc = static_cast<size_t>(spec.conns);
  std::vector<void*> socks;
  std::vector<uint8_t> msg(spec.size);
  for (size_t i = 0; i < nc; ++i) {
    socks.push_back(ctx.socket(ZMQ_PUSH));
    connect(socks.back(), port);
    fill_payload(msg.data(), msg.size(), make_key(static_cast<uint32_t>(i), 0));
    send(socks.back(), msg.data(), msg.size(), 0, "sending the warm-up");
  }
  ch.expect(kMsgGo, "waiting for go");
  rep.t0_ns = now_ns();
  for (uint64_t base = 1; base <= spec.count; base += 8) {
    guard("sending on 100 sockets");
    for (size_t i = 0; i < nc; ++i) {
      for (uint64_t seq = base; seq < base + 8 && seq <= spec.count; ++seq) {
        fill_payload(msg.data(), msg.size(), make_key(static_cast<uint32_t>(i), seq));
        send(socks[i], msg.data(), msg.size(), 0, "sending");
      }
    }
  }
  rep.count = spec.count * nc;
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "waiting for the server to finish");
}

// ---------------------------------------------------------------------------
// W2 / W3: DEALER -> ROUTER echo
// ---------------------------------------------------------------------------

void echo_server(Chan& ch, ServerOut& out, Report& rep, uint64_t total) {
  ZCtx ctx;
  void* router = ctx.socket(ZMQ_ROUTER);
  setopt_int(router, ZMQ_ROUTER_MANDATORY, 1, "ZMQ_ROUTER_MANDATORY");
  const uint16_t port = bind_any(router);
  ch.send_tagged(kMsgPort, port);
  zmq_msg_t id, body;
  zmq_msg_init(&id);
  zmq_msg_init(&body);
  uint64_t echoed = 0;
  while (echoed < total) {
    recv_msg(router, &id, "echoing (identity)");
    if (!zmq_msg_more(&id)) die("zmq ROUTER: identity frame without a body");
    recv_msg(router, &body, "echoing (body)");
    if (zmq_msg_more(&body)) die("zmq ROUTER: more than one body frame");
    send_msg(router, &id, ZMQ_SNDMORE, "echoing (identity)");  // zmq_msg_send leaves the messages empty
    send_msg(router, &body, 0, "echoing (body)");
    ++echoed;
    if ((echoed & 1023) == 0) guard("echoing");
  }
  zmq_msg_close(&id);
  zmq_msg_close(&body);
  out.received = echoed;
  finish(ch, rep);
}

void w2_client(const Spec& spec, Chan& ch, Report& rep) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  ZCtx ctx;
  void* dealer = ctx.socket(ZMQ_DEALER);
  connect(dealer, port);
  std::vector<uint8_t> msg(spec.size);
  std::vector<double> lat;
  lat.reserve(spec.count);
  zmq_msg_t m;
  zmq_msg_init(&m);
  for (uint64_t i = 0; i < spec.warmup + spec.count; ++i) {
    fill_payload(msg.data(), msg.size(), make_key(0, i));
    const int64_t t = now_ns();
    send(dealer, msg.data(), msg.size(), 0, "sending a request");
    recv_msg(dealer, &m, "waiting for a reply");
    const int64_t t2 = now_ns();
    check_payload(bytes(&m), zmq_msg_size(&m), spec.size, make_key(0, i), "zmq client (reply)");
    if (i >= spec.warmup) lat.push_back(static_cast<double>(t2 - t) / 1e3);
  }
  zmq_msg_close(&m);
  summarize_latencies(lat, rep);
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "waiting for the server to finish");
}

void w3_client(const Spec& spec, Chan& ch, Report& rep) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  ZCtx ctx;
  void* dealer = ctx.socket(ZMQ_DEALER);
  connect(dealer, port);
  std::vector<uint8_t> msg(spec.size);
  zmq_msg_t m;
  zmq_msg_init(&m);
  fill_payload(msg.data(), msg.size(), make_key(0, 0));
  send(dealer, msg.data(), msg.size(), 0, "sending the warm-up");
  recv_msg(dealer, &m, "waiting for the warm-up reply");
  check_payload(bytes(&m), zmq_msg_size(&m), spec.size, make_key(0, 0), "zmq client (reply)");

  rep.t0_ns = now_ns();
  uint64_t next = 1;
  for (int i = 0; i < spec.window && next <= spec.count; ++i, ++next) {
    fill_payload(msg.data(), msg.size(), make_key(0, next));
    send(dealer, msg.data(), msg.size(), 0, "sending requests");
  }
  for (uint64_t expect = 1; expect <= spec.count; ++expect) {
    recv_msg(dealer, &m, "waiting for replies");
    check_payload(bytes(&m), zmq_msg_size(&m), spec.size, make_key(0, expect), "zmq client (reply)");
    if (next <= spec.count) {
      fill_payload(msg.data(), msg.size(), make_key(0, next++));
      send(dealer, msg.data(), msg.size(), 0, "sending requests");
    }
    if ((expect & 1023) == 0) guard("waiting for replies");
  }
  rep.t1_ns = now_ns();
  rep.count = spec.count;
  zmq_msg_close(&m);
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "waiting for the server to finish");
}

// ---------------------------------------------------------------------------
// W5: idle connections to a ROUTER
// ---------------------------------------------------------------------------

/// Reads one monitor event (two frames); returns its id, or 0 on timeout.
uint16_t monitor_event(void* mon) {
  zmq_msg_t m;
  zmq_msg_init(&m);
  if (zmq_msg_recv(&m, mon, 0) < 0) {
    zmq_msg_close(&m);
    if (zmq_errno() == EAGAIN || zmq_errno() == EINTR) return 0;
    zdie("reading the socket monitor");
  }
  uint16_t ev = 0;
  if (zmq_msg_size(&m) >= 2) std::memcpy(&ev, zmq_msg_data(&m), 2);
  while (zmq_msg_more(&m))
    if (zmq_msg_recv(&m, mon, 0) < 0) zdie("reading the socket monitor (endpoint frame)");
  zmq_msg_close(&m);
  return ev;
}

void* monitor(ZCtx& ctx, void* s, const char* name, int events) {
  if (zmq_socket_monitor(s, name, events) != 0) zdie("zmq_socket_monitor");
  void* mon = ctx.socket(ZMQ_PAIR);
  if (zmq_connect(mon, name) != 0) zdie("connecting to the socket monitor");
  setopt_int(mon, ZMQ_RCVTIMEO, 20, "ZMQ_RCVTIMEO");
  return mon;
}

void w5_server(const Spec& spec, Chan& ch, ServerOut& out, Report& rep) {
  ZCtx ctx;
  void* router = ctx.socket(ZMQ_ROUTER);
  setopt_int(router, ZMQ_BACKLOG, 4096, "ZMQ_BACKLOG");
  void* mon = monitor(ctx, router, "inproc://pb-w5-server", ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
  const uint16_t port = bind_any(router);
  const size_t heap0 = heap_in_use(), rss0 = rss_bytes();
  ch.send_tagged(kMsgPort, port);
  uint64_t ready = 0;
  while (ready < static_cast<uint64_t>(spec.conns)) {
    guard(progress("waiting for the handshakes of the idle connections", ready, spec.conns));
    if (monitor_event(mon) == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) ++ready;
  }
  const int64_t idle_until = now_ns() + 300000000;
  while (now_ns() < idle_until) {
    guard("idling");
    const uint16_t ev = monitor_event(mon);
    if (ev != 0) die("zmq server: monitor event 0x%x on an idle socket", ev);
  }
  out.conns = ready;
  out.heap_per_conn = (static_cast<double>(heap_in_use()) - static_cast<double>(heap0)) / spec.conns;
  out.rss_per_conn = (static_cast<double>(rss_bytes()) - static_cast<double>(rss0)) / spec.conns;
  finish(ch, rep);
  zmq_socket_monitor(router, nullptr, 0);
}

/// Opens n DEALER sockets, each connected once (libzmq makes one connection
/// per endpoint and socket). Connects are asynchronous (the I/O thread makes
/// them): they are paced so the server's accept queue does not overflow.
void open_dealers(ZCtx& ctx, uint16_t port, int n) {
  if (zmq_ctx_set(ctx.get(), ZMQ_MAX_SOCKETS, n + 16) != 0) zdie("ZMQ_MAX_SOCKETS");
  for (int i = 0; i < n; ++i) {
    if (i % 64 == 0) guard("opening idle connections");
    if (i % 256 == 255) ::usleep(10000);
    connect(ctx.socket(ZMQ_DEALER), port);
  }
}

/// Blocks until fd is readable (or closed), checking the deadline.
void wait_readable(int fd, const char* what) {
  for (;;) {
    guard(what);
    struct pollfd pf = {fd, POLLIN, 0};
    if (::poll(&pf, 1, ms_left(50)) == 1) return;
  }
}

/// Each DEALER holds two descriptors (its mailbox and its connection). When
/// that exceeds RLIMIT_NOFILE (20000 here, and it cannot be raised without
/// CAP_SYS_RESOURCE), the client's sockets are spread over helper processes
/// forked before any ZeroMQ context exists. Their CPU time reaches the
/// harness through the client's wait4 (it waits for them).
void w5_client(const Spec& spec, Chan& ch) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) die_errno("getrlimit");
  const long per_proc = std::max<long>(256, static_cast<long>(rl.rlim_cur) - 256) / 2;
  const int parts = static_cast<int>((spec.conns + per_proc - 1) / per_proc);
  int ready[2], done[2];
  if (::pipe(ready) != 0 || ::pipe(done) != 0) die_errno("pipe");
  std::vector<pid_t> helpers;
  int mine = spec.conns;
  for (int p = 1; p < parts; ++p) {
    const int share = spec.conns / parts;
    mine -= share;
    const pid_t pid = ::fork();
    if (pid < 0) die_errno("fork");
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::close(ready[0]);
      ::close(done[1]);
      {
        ZCtx ctx;
        open_dealers(ctx, port, share);
        const char one = 1;
        if (::write(ready[1], &one, 1) != 1) die_errno("helper: write");
        wait_readable(done[0], "holding idle connections (helper)");  // EOF: done
      }
      _exit(0);
    }
    helpers.push_back(pid);
  }
  ::close(ready[1]);
  ::close(done[0]);
  {
    ZCtx ctx;
    open_dealers(ctx, port, mine);
    for (size_t h = 0; h < helpers.size(); ++h) {
      wait_readable(ready[0], "waiting for the helper processes");
      char c;
      if (::read(ready[0], &c, 1) != 1) die("a helper process of the client died");
    }
    Report rep;
    rep.count = static_cast<uint64_t>(spec.conns);
    ch.put(&rep, sizeof rep);
    ch.expect(kMsgDone, "holding idle connections");
    ::close(done[1]);  // the helpers see EOF and tear down
    for (pid_t pid : helpers) {
      int st = 0;
      while (::waitpid(pid, &st, WNOHANG) == 0) {
        guard("waiting for the helper processes to exit");
        ::usleep(1000);
      }
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) die("a helper process of the client failed");
    }
  }
}

}  // namespace

std::string zmq_version() {
  int a, b, c;
  ::zmq_version(&a, &b, &c);
  return std::to_string(a) + "." + std::to_string(b) + "." + std::to_string(c);
}

void zmq_server(const Spec& spec, Chan& ch, ServerOut& out, Report& rep) {
  switch (spec.work) {
    case Work::W1:
    case Work::W4: sink_server(spec, ch, out, rep); break;
    case Work::W2: echo_server(ch, out, rep, spec.warmup + spec.count); break;
    case Work::W3: echo_server(ch, out, rep, spec.count + 1); break;
    case Work::W5: w5_server(spec, ch, out, rep); break;
  }
}

void zmq_client(const Spec& spec, Chan& ch) {
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
