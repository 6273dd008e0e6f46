// libevent 2.1: one event_base per process, bufferevents on sockets,
// frames with a 4-byte little-endian length prefix. Senders bufferevent_write
// the prefix and the payload of each message and let libevent coalesce them
// into large writes; they refill when the output buffer drains under a
// write low-watermark (256 KiB high, 64 KiB low). Receivers read the prefix
// with evbuffer_copyout, take a complete frame with evbuffer_pullup and
// evbuffer_drain. The echo server moves complete frames from input to output
// with evbuffer_remove_buffer. bufferevent max single read/write are raised
// from 16 KiB to 1 MiB (the documented knob for bulk throughput);
// TCP_NODELAY on every socket. A 50 ms timer checks the deadline.
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>

#include "common.hpp"

namespace pb {

namespace {

constexpr size_t kHigh = 256 * 1024;
constexpr size_t kLow = 64 * 1024;

/// An event_base with a deadline tick; run() returns on stop() (loopbreak).
class Loop {
 public:
  Loop() : base_(event_base_new()) {
    if (base_ == nullptr) die("event_base_new failed");
    tick_ = event_new(base_, -1, EV_PERSIST, on_tick, this);
    const struct timeval tv = {0, 50000};
    event_add(tick_, &tv);
  }
  ~Loop() {
    event_free(tick_);
    event_base_free(base_);
  }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
  event_base* base() const { return base_; }
  void run(const char* what) {
    what_ = what;
    if (event_base_dispatch(base_) < 0) die("event_base_dispatch failed");
  }
  void stop() { event_base_loopbreak(base_); }

 private:
  static void on_tick(evutil_socket_t, short, void* arg) { guard(static_cast<Loop*>(arg)->what_); }
  event_base* base_;
  event* tick_;
  const char* what_ = "running the event loop";
};

bufferevent* make_bev(event_base* base, evutil_socket_t fd) {
  bufferevent* bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
  if (bev == nullptr) die("bufferevent_socket_new failed");
  bufferevent_set_max_single_read(bev, 1 << 20);
  bufferevent_set_max_single_write(bev, 1 << 20);
  return bev;
}

/// A listener on 127.0.0.1:0 calling cb for each accepted socket.
struct Listener {
  evconnlistener* l = nullptr;
  uint16_t port = 0;
  Listener(event_base* base, evconnlistener_cb cb, void* arg) {
    sockaddr_in a = loopback(0);
    l = evconnlistener_new_bind(base, cb, arg, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
                                4096, reinterpret_cast<sockaddr*>(&a), sizeof a);
    if (l == nullptr) die_errno("evconnlistener_new_bind");
    socklen_t len = sizeof a;
    if (::getsockname(evconnlistener_get_fd(l), reinterpret_cast<sockaddr*>(&a), &len) != 0) die_errno("getsockname");
    port = ntohs(a.sin_port);
  }
  ~Listener() { evconnlistener_free(l); }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
};

/// Connects a new bufferevent to 127.0.0.1:port (TCP_NODELAY is set once connected).
bufferevent* connect_bev(event_base* base, uint16_t port) {
  bufferevent* bev = make_bev(base, -1);
  sockaddr_in a = loopback(port);
  if (bufferevent_socket_connect(bev, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    die("bufferevent_socket_connect failed");
  return bev;
}

void write_frame(bufferevent* bev, const uint8_t* p, size_t n) {
  uint8_t hdr[4];
  store_u32(hdr, static_cast<uint32_t>(n));
  if (bufferevent_write(bev, hdr, 4) != 0 || bufferevent_write(bev, p, n) != 0) die("bufferevent_write failed");
}

/// The next complete frame's payload length, or -1 if it is not all there.
long complete_frame(evbuffer* in, size_t max_len) {
  const size_t avail = evbuffer_get_length(in);
  if (avail < 4) return -1;
  uint8_t hdr[4];
  evbuffer_copyout(in, hdr, 4);
  const uint32_t len = load_u32(hdr);
  if (len > max_len) die("frame of %u bytes announced (at most %zu sent): stream corrupted", len, max_len);
  if (avail < 4 + size_t{len}) return -1;
  return static_cast<long>(len);
}

// ---------------------------------------------------------------------------
// W1 / W4 server: a sink
// ---------------------------------------------------------------------------

struct Sink;
struct SinkConn {
  Sink* sink;
  bufferevent* bev;
  int64_t stream = -1;
};

struct Sink {
  const Spec* spec;
  Chan* ch;
  Loop loop;
  StreamCheck sc;
  uint32_t conns;
  uint64_t total, received = 0;
  uint32_t warm = 0;
  std::vector<std::unique_ptr<SinkConn>> cs;
  Sink(const Spec& s, Chan& c, uint32_t n)
      : spec(&s), ch(&c), sc(n, s.size), conns(n), total(uint64_t{n} * (s.count + 1)) {}
  ~Sink() {
    for (auto& c : cs) bufferevent_free(c->bev);
  }
};

void sink_read(bufferevent* bev, void* arg) {
  SinkConn* c = static_cast<SinkConn*>(arg);
  Sink* s = c->sink;
  evbuffer* in = bufferevent_get_input(bev);
  long len;
  while ((len = complete_frame(in, s->spec->size)) >= 0) {
    const uint8_t* p = evbuffer_pullup(in, 4 + len);
    const uint64_t key = s->sc.on_message(p + 4, static_cast<size_t>(len), "libevent server");
    if (c->stream < 0) c->stream = key_stream(key);
    if (c->stream != key_stream(key))
      die("libevent server: stream %u arrived on the connection of stream %ld", key_stream(key),
          static_cast<long>(c->stream));
    evbuffer_drain(in, 4 + static_cast<size_t>(len));
    if (key_seq(key) == 0 && ++s->warm == s->conns) s->ch->send_tagged(kMsgGo);
    if (++s->received == s->total) s->loop.stop();
  }
}

void conn_event(bufferevent*, short what, void*) {
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
    die("libevent: a connection closed early (%s%s)", what & BEV_EVENT_EOF ? "EOF" : "",
        what & BEV_EVENT_ERROR ? "error" : "");
}

void sink_accept(evconnlistener* l, evutil_socket_t fd, sockaddr*, int, void* arg) {
  Sink* s = static_cast<Sink*>(arg);
  set_nodelay(fd);
  bufferevent* bev = make_bev(evconnlistener_get_base(l), fd);
  s->cs.push_back(std::make_unique<SinkConn>(SinkConn{s, bev}));
  bufferevent_setcb(bev, sink_read, nullptr, conn_event, s->cs.back().get());
  bufferevent_enable(bev, EV_READ);
}

void sink_server(const Spec& spec, Chan& ch, ServerOut& out, Report& rep) {
  const uint32_t conns = spec.work == Work::W4 ? static_cast<uint32_t>(spec.conns) : 1;
  Sink s(spec, ch, conns);
  {
    Listener l(s.loop.base(), sink_accept, &s);
    ch.send_tagged(kMsgPort, l.port);
    s.loop.run("receiving");
  }
  out.t_last_ns = now_ns();
  out.received = s.received;
  finish(ch, rep);
}

// ---------------------------------------------------------------------------
// W1 / W4 client: sources refilled on the write low-watermark
// ---------------------------------------------------------------------------

struct Source;
struct SourceConn {
  Source* src;
  bufferevent* bev;
  uint32_t stream;
  uint64_t next = 1;
  bool draining = false;
};

struct Source {
  const Spec* spec;
  Chan* ch;
  Loop loop;
  std::vector<std::unique_ptr<SourceConn>> cs;
  std::vector<uint8_t> msg;
  size_t connected = 0, finished = 0;
  event* go = nullptr;
  Report* rep;
  ~Source() {
    if (go != nullptr) event_free(go);
    for (auto& c : cs) bufferevent_free(c->bev);
  }
};

void refill(SourceConn* c) {
  Source* s = c->src;
  evbuffer* out = bufferevent_get_output(c->bev);
  while (c->next <= s->spec->count && evbuffer_get_length(out) < kHigh) {
    fill_payload(s->msg.data(), s->msg.size(), make_key(c->stream, c->next++));
    write_frame(c->bev, s->msg.data(), s->msg.size());
  }
  if (c->next > s->spec->count && !c->draining) {
    c->draining = true;
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);  // the write callback now means "all written"
  }
}

void source_write(bufferevent* bev, void* arg) {
  SourceConn* c = static_cast<SourceConn*>(arg);
  if (!c->draining) {
    refill(c);
  } else if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
    if (++c->src->finished == c->src->cs.size()) c->src->loop.stop();
  }
}

void source_event(bufferevent* bev, short what, void* arg) {
  SourceConn* c = static_cast<SourceConn*>(arg);
  if (what & BEV_EVENT_CONNECTED) {
    set_nodelay(bufferevent_getfd(bev));
    fill_payload(c->src->msg.data(), c->src->msg.size(), make_key(c->stream, 0));
    write_frame(bev, c->src->msg.data(), c->src->msg.size());
    ++c->src->connected;
    return;
  }
  conn_event(bev, what, arg);
}

void source_go(evutil_socket_t, short, void* arg) {
  Source* s = static_cast<Source*>(arg);
  s->ch->expect(kMsgGo, "waiting for go");
  s->rep->t0_ns = now_ns();
  for (auto& c : s->cs) {
    bufferevent_setwatermark(c->bev, EV_WRITE, kLow, 0);
    bufferevent_setcb(c->bev, nullptr, source_write, source_event, c.get());
    refill(c.get());
  }
}

void source_client(const Spec& spec, Chan& ch, Report& rep) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  const size_t nc = spec.work == Work::W4 ? static_cast<size_t>(spec.conns) : 1;
  Source s;
  s.spec = &spec;
  s.ch = &ch;
  s.rep = &rep;
  s.msg.resize(spec.size);
  for (size_t i = 0; i < nc; ++i) {
    bufferevent* bev = connect_bev(s.loop.base(), port);
    s.cs.push_back(std::make_unique<SourceConn>(SourceConn{&s, bev, static_cast<uint32_t>(i)}));
    bufferevent_setcb(bev, nullptr, nullptr, source_event, s.cs.back().get());
    bufferevent_enable(bev, EV_WRITE);
  }
  s.go = event_new(s.loop.base(), ch.rfd(), EV_READ, source_go, &s);
  event_add(s.go, nullptr);
  s.loop.run("sending");
  rep.count = spec.count * nc;
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "waiting for the server to finish");
}

// ---------------------------------------------------------------------------
// W2 / W3 server: echo by moving frames from input to output
// ---------------------------------------------------------------------------

struct Echo {
  const Spec* spec;
  Loop loop;
  uint64_t echoed = 0;
  bufferevent* bev = nullptr;
  ~Echo() {
    if (bev != nullptr) bufferevent_free(bev);
  }
};

void echo_read(bufferevent* bev, void* arg) {
  Echo* e = static_cast<Echo*>(arg);
  evbuffer* in = bufferevent_get_input(bev);
  evbuffer* out = bufferevent_get_output(bev);
  long len;
  while ((len = complete_frame(in, e->spec->size)) >= 0) {
    if (evbuffer_remove_buffer(in, out, 4 + static_cast<size_t>(len)) != 4 + len) die("evbuffer_remove_buffer");
    ++e->echoed;
  }
}

void echo_event(bufferevent*, short what, void* arg) {
  Echo* e = static_cast<Echo*>(arg);
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
    die("libevent server: the connection closed early after %lu echoes", static_cast<unsigned long>(e->echoed));
}

void echo_accept(evconnlistener* l, evutil_socket_t fd, sockaddr*, int, void* arg) {
  Echo* e = static_cast<Echo*>(arg);
  if (e->bev != nullptr) die("libevent server: a second connection");
  set_nodelay(fd);
  e->bev = make_bev(evconnlistener_get_base(l), fd);
  bufferevent_setcb(e->bev, echo_read, nullptr, echo_event, e);
  bufferevent_enable(e->bev, EV_READ | EV_WRITE);
}

void stop_loop(evutil_socket_t, short, void* arg) { static_cast<Loop*>(arg)->stop(); }

void echo_server(const Spec& spec, Chan& ch, ServerOut& out, Report& rep, uint64_t total) {
  Echo e;
  e.spec = &spec;
  Listener l(e.loop.base(), echo_accept, &e);
  ch.send_tagged(kMsgPort, l.port);
  // Runs until the client's report arrives on the pipe: the last echoes must be written first.
  event* report = event_new(e.loop.base(), ch.rfd(), EV_READ, stop_loop, &e.loop);
  event_add(report, nullptr);
  e.loop.run("echoing");
  event_free(report);
  if (e.echoed != total)
    die("libevent server: echoed %lu requests, the client sent %lu", static_cast<unsigned long>(e.echoed),
        static_cast<unsigned long>(total));
  out.received = e.echoed;
  finish(ch, rep);
}

// ---------------------------------------------------------------------------
// W2 / W3 client
// ---------------------------------------------------------------------------

struct Asker {
  const Spec* spec;
  Loop loop;
  bufferevent* bev = nullptr;
  std::vector<uint8_t> msg;
  std::vector<double> lat;
  uint64_t next = 0, expect = 0, total = 0;
  int64_t t_sent = 0;
  bool pipelined = false;
  Report* rep;
  ~Asker() {
    if (bev != nullptr) bufferevent_free(bev);
  }
  void send_next() {
    fill_payload(msg.data(), msg.size(), make_key(0, next++));
    write_frame(bev, msg.data(), msg.size());
  }
};

void ask_read(bufferevent* bev, void* arg) {
  Asker* a = static_cast<Asker*>(arg);
  evbuffer* in = bufferevent_get_input(bev);
  long len;
  while ((len = complete_frame(in, a->spec->size)) >= 0) {
    const int64_t t = now_ns();
    if (a->expect >= a->total) die("libevent client: more replies than requests");
    const uint8_t* p = evbuffer_pullup(in, 4 + len);
    check_payload(p + 4, static_cast<size_t>(len), a->spec->size, make_key(0, a->expect), "libevent client (reply)");
    evbuffer_drain(in, 4 + static_cast<size_t>(len));
    const uint64_t done = a->expect++;
    if (!a->pipelined) {  // W2: one outstanding
      if (done >= a->spec->warmup) a->lat.push_back(static_cast<double>(t - a->t_sent) / 1e3);
      if (a->next < a->total) {
        a->t_sent = now_ns();
        a->send_next();
      }
    } else if (done == 0) {  // W3: the warm-up reply; start the window
      a->rep->t0_ns = now_ns();
      for (int i = 0; i < a->spec->window && a->next < a->total; ++i) a->send_next();
    } else if (a->next < a->total) {
      a->send_next();
    }
    if (a->expect == a->total) {
      a->rep->t1_ns = now_ns();
      a->loop.stop();
    }
  }
}

void ask_event(bufferevent* bev, short what, void* arg) {
  Asker* a = static_cast<Asker*>(arg);
  if (what & BEV_EVENT_CONNECTED) {
    set_nodelay(bufferevent_getfd(bev));
    a->t_sent = now_ns();
    a->send_next();
    return;
  }
  conn_event(bev, what, arg);
}

void ask_client(const Spec& spec, Chan& ch, Report& rep, bool pipelined) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  Asker a;
  a.spec = &spec;
  a.rep = &rep;
  a.pipelined = pipelined;
  a.msg.resize(spec.size);
  a.total = pipelined ? spec.count + 1 : spec.warmup + spec.count;
  a.lat.reserve(spec.count);
  a.bev = connect_bev(a.loop.base(), port);
  bufferevent_setcb(a.bev, ask_read, nullptr, ask_event, &a);
  bufferevent_enable(a.bev, EV_READ | EV_WRITE);
  a.loop.run(pipelined ? "pipelined requests" : "round trips");
  if (pipelined)
    rep.count = spec.count;
  else
    summarize_latencies(a.lat, rep);
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "waiting for the server to finish");
}

// ---------------------------------------------------------------------------
// W5: idle bufferevents
// ---------------------------------------------------------------------------

struct Idle {
  const Spec* spec;
  Loop loop;
  std::vector<bufferevent*> bevs;
  ~Idle() {
    for (bufferevent* b : bevs) bufferevent_free(b);
  }
};

void idle_read(bufferevent*, void*) { die("libevent server: an idle connection sent data"); }
void idle_event(bufferevent*, short what, void*) {
  die("libevent server: event 0x%x on an idle connection before the measurement", what);
}

void idle_accept(evconnlistener* l, evutil_socket_t fd, sockaddr*, int, void* arg) {
  Idle* s = static_cast<Idle*>(arg);
  set_nodelay(fd);
  bufferevent* bev = make_bev(evconnlistener_get_base(l), fd);
  bufferevent_setcb(bev, idle_read, nullptr, idle_event, s);
  bufferevent_enable(bev, EV_READ);
  s->bevs.push_back(bev);
  if (s->bevs.size() == static_cast<size_t>(s->spec->conns)) {
    const struct timeval idle = {0, 300000};
    event_base_loopexit(s->loop.base(), &idle);
  }
}

void w5_server(const Spec& spec, Chan& ch, ServerOut& out, Report& rep) {
  Idle s;
  s.spec = &spec;
  Listener l(s.loop.base(), idle_accept, &s);
  const size_t heap0 = heap_in_use(), rss0 = rss_bytes();
  ch.send_tagged(kMsgPort, l.port);
  s.loop.run("accepting idle connections");
  out.conns = s.bevs.size();
  out.heap_per_conn = (static_cast<double>(heap_in_use()) - static_cast<double>(heap0)) / spec.conns;
  out.rss_per_conn = (static_cast<double>(rss_bytes()) - static_cast<double>(rss0)) / spec.conns;
  finish(ch, rep);
}

}  // namespace

std::string libevent_version() { return event_get_version(); }

void libevent_server(const Spec& spec, Chan& ch, ServerOut& out, Report& rep) {
  switch (spec.work) {
    case Work::W1:
    case Work::W4: sink_server(spec, ch, out, rep); break;
    case Work::W2: echo_server(spec, ch, out, rep, spec.warmup + spec.count); break;
    case Work::W3: echo_server(spec, ch, out, rep, spec.count + 1); break;
    case Work::W5: w5_server(spec, ch, out, rep); break;
  }
}

void libevent_client(const Spec& spec, Chan& ch) {
  Report rep;
  switch (spec.work) {
    case Work::W1:
    case Work::W4: source_client(spec, ch, rep); break;
    case Work::W2: ask_client(spec, ch, rep, false); break;
    case Work::W3: ask_client(spec, ch, rep, true); break;
    case Work::W5: plain_idle_client(spec, ch); break;
  }
}

}  // namespace pb
