// Raw TCP: the practical ceiling. Frames are a 4-byte little-endian length
// and the payload. Senders gather many frames into one buffer per send()
// (up to 256 KiB), receivers read up to 1 MiB per recv() and parse every
// complete frame in it. One connection: blocking sockets (with 200 ms
// timeouts so loops can check the deadline); many connections: epoll.
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include "common.hpp"

namespace pb {

namespace {

constexpr size_t kBatchBytes = 256 * 1024;
constexpr size_t kReadBytes = 1024 * 1024;

/// Receive buffer that yields complete frames.
class RxBuf {
 public:
  explicit RxBuf(size_t cap) : buf_(cap) {}

  /// One recv(); returns its result (0: EOF, -1 with errno EAGAIN: nothing yet).
  ssize_t fill(int fd) {
    if (end_ == buf_.size()) {  // only a partial frame is left: move it to the front
      std::memmove(buf_.data(), buf_.data() + start_, end_ - start_);
      end_ -= start_;
      start_ = 0;
    }
    ssize_t r;
    do {
      r = ::recv(fd, buf_.data() + end_, buf_.size() - end_, 0);
    } while (r < 0 && errno == EINTR);
    if (r > 0) end_ += static_cast<size_t>(r);
    return r;
  }

  /// Calls f(payload, len) for each complete frame.
  template <class F>
  void frames(size_t max_len, F&& f) {
    while (end_ - start_ >= 4) {
      const uint32_t len = load_u32(buf_.data() + start_);
      if (len > max_len) die("frame of %u bytes announced (at most %zu sent): stream corrupted", len, max_len);
      if (end_ - start_ < 4 + size_t{len}) break;
      f(buf_.data() + start_ + 4, size_t{len});
      start_ += 4 + size_t{len};
    }
    if (start_ == end_) start_ = end_ = 0;
  }

  bool empty() const { return start_ == end_; }

 private:
  std::vector<uint8_t> buf_;
  size_t start_ = 0, end_ = 0;
};

size_t rx_cap(size_t size) { return std::max(kReadBytes, 4 * (size + 4)); }

void append_frame(std::vector<uint8_t>& out, size_t size, uint64_t key) {
  const size_t at = out.size();
  out.resize(at + 4 + size);
  store_u32(out.data() + at, static_cast<uint32_t>(size));
  fill_payload(out.data() + at + 4, size, key);
}

void append_copy(std::vector<uint8_t>& out, const uint8_t* p, size_t n) {
  const size_t at = out.size();
  out.resize(at + 4 + n);
  store_u32(out.data() + at, static_cast<uint32_t>(n));
  std::memcpy(out.data() + at + 4, p, n);
}

/// Reads until the connection yields data or fails; returns false on EAGAIN (timeout).
bool read_some(int fd, RxBuf& rx, const char* what) {
  const ssize_t r = rx.fill(fd);
  if (r > 0) return true;
  if (r == 0) die("the peer closed the connection while %s", what);
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    guard(what);
    return false;
  }
  die_errno("recv while %s", what);
}

// ---------------------------------------------------------------------------
// W1: one connection, one way
// ---------------------------------------------------------------------------

void w1_server(const Spec& spec, Chan& ch, ServerOut& out) {
  uint16_t port;
  const int lfd = tcp_listen(&port, false);
  ch.send_tagged(kMsgPort, port);
  const int fd = accept_one(lfd, "accepting the client");
  set_io_timeouts(fd, 200);
  RxBuf rx(rx_cap(spec.size));
  const uint64_t total = spec.count + 1;  // seq 0 is the warm-up
  uint64_t seq = 0;
  while (seq < total) {
    if (!read_some(fd, rx, "receiving")) continue;
    rx.frames(spec.size, [&](const uint8_t* p, size_t n) {
      if (seq >= total) die("server: more messages than were sent (seq %lu)", static_cast<unsigned long>(seq));
      check_payload(p, n, spec.size, make_key(0, seq), "server");
      if (seq == 0) ch.send_tagged(kMsgGo);
      ++seq;
    });
  }
  out.t_last_ns = now_ns();
  out.received = seq;
  ::close(fd);
  ::close(lfd);
}

void w1_client(const Spec& spec, Chan& ch, Report& rep) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  const int fd = tcp_connect(port);
  set_io_timeouts(fd, 200);
  std::vector<uint8_t> batch;
  batch.reserve(std::max(kBatchBytes, spec.size + 4));
  append_frame(batch, spec.size, make_key(0, 0));
  write_all(fd, batch.data(), batch.size(), "sending the warm-up");
  ch.expect(kMsgGo, "waiting for go");
  rep.t0_ns = now_ns();
  uint64_t seq = 1;
  while (seq <= spec.count) {
    batch.clear();
    do {
      append_frame(batch, spec.size, make_key(0, seq++));
    } while (seq <= spec.count && batch.size() + 4 + spec.size <= kBatchBytes);
    write_all(fd, batch.data(), batch.size(), "sending");
  }
  rep.count = spec.count;
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "waiting for the server to finish");
  ::close(fd);
}

// ---------------------------------------------------------------------------
// W2 / W3: echo server, one connection
// ---------------------------------------------------------------------------

void echo_server(const Spec& spec, Chan& ch, ServerOut& out, uint64_t total) {
  uint16_t port;
  const int lfd = tcp_listen(&port, false);
  ch.send_tagged(kMsgPort, port);
  const int fd = accept_one(lfd, "accepting the client");
  set_io_timeouts(fd, 200);
  RxBuf rx(rx_cap(spec.size));
  std::vector<uint8_t> reply;
  reply.reserve(kBatchBytes);
  uint64_t echoed = 0;
  while (echoed < total) {
    if (!read_some(fd, rx, "echoing")) continue;
    rx.frames(spec.size, [&](const uint8_t* p, size_t n) {
      append_copy(reply, p, n);
      ++echoed;
    });
    if (!reply.empty()) {
      write_all(fd, reply.data(), reply.size(), "echoing");
      reply.clear();
    }
  }
  out.received = echoed;
  ::close(fd);
  ::close(lfd);
}

void w2_client(const Spec& spec, Chan& ch, Report& rep) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  const int fd = tcp_connect(port);
  set_io_timeouts(fd, 200);
  std::vector<uint8_t> req, rsp(4 + spec.size);
  std::vector<double> lat;
  lat.reserve(spec.count);
  const uint64_t total = spec.warmup + spec.count;
  for (uint64_t i = 0; i < total; ++i) {
    req.clear();
    append_frame(req, spec.size, make_key(0, i));
    const int64_t t = now_ns();
    write_all(fd, req.data(), req.size(), "sending a request");
    read_exact(fd, rsp.data(), rsp.size(), "waiting for a reply");
    const int64_t t2 = now_ns();
    check_payload(rsp.data() + 4, load_u32(rsp.data()), spec.size, make_key(0, i), "client (reply)");
    if (i >= spec.warmup) lat.push_back(static_cast<double>(t2 - t) / 1e3);
    if ((i & 255) == 0) guard("round trips");
  }
  summarize_latencies(lat, rep);
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "waiting for the server to finish");
  ::close(fd);
}

void w3_client(const Spec& spec, Chan& ch, Report& rep) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  const int fd = tcp_connect(port);
  set_io_timeouts(fd, 200);
  std::vector<uint8_t> out;
  out.reserve(kBatchBytes);
  // Warm-up: one round trip (seq 0).
  append_frame(out, spec.size, make_key(0, 0));
  write_all(fd, out.data(), out.size(), "sending the warm-up");
  std::vector<uint8_t> one(4 + spec.size);
  read_exact(fd, one.data(), one.size(), "waiting for the warm-up reply");
  check_payload(one.data() + 4, load_u32(one.data()), spec.size, make_key(0, 0), "client (reply)");

  rep.t0_ns = now_ns();
  uint64_t next = 1, expect = 1;
  out.clear();
  while (next <= spec.count && next <= static_cast<uint64_t>(spec.window))
    append_frame(out, spec.size, make_key(0, next++));
  write_all(fd, out.data(), out.size(), "sending requests");
  RxBuf rx(rx_cap(spec.size));
  while (expect <= spec.count) {
    if (!read_some(fd, rx, "waiting for replies")) continue;
    out.clear();
    rx.frames(spec.size, [&](const uint8_t* p, size_t n) {
      if (expect > spec.count) die("client: more replies than requests");
      check_payload(p, n, spec.size, make_key(0, expect), "client (reply)");
      ++expect;
      if (next <= spec.count) append_frame(out, spec.size, make_key(0, next++));
    });
    if (!out.empty()) write_all(fd, out.data(), out.size(), "sending requests");
  }
  rep.t1_ns = now_ns();
  rep.count = spec.count;
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "waiting for the server to finish");
  ::close(fd);
}

// ---------------------------------------------------------------------------
// W4: fan-in over epoll
// ---------------------------------------------------------------------------

struct SinkConn {
  int fd;
  RxBuf rx;
  int64_t stream = -1;
  SinkConn(int f, size_t cap) : fd(f), rx(cap) {}
};

void w4_server(const Spec& spec, Chan& ch, ServerOut& out) {
  uint16_t port;
  const int lfd = tcp_listen(&port, true);
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die_errno("epoll_create1");
  struct epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0) die_errno("epoll_ctl");
  ch.send_tagged(kMsgPort, port);

  std::vector<std::unique_ptr<SinkConn>> conns;
  StreamCheck sc(static_cast<uint32_t>(spec.conns), spec.size);
  const uint64_t total = static_cast<uint64_t>(spec.conns) * (spec.count + 1);
  uint64_t received = 0;
  int warm = 0;
  std::vector<struct epoll_event> evs(256);
  const size_t cap = std::max<size_t>(256 * 1024, 4 * (spec.size + 4));
  while (received < total) {
    guard("receiving from 100 connections");
    const int n = ::epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), ms_left(50));
    if (n < 0 && errno != EINTR) die_errno("epoll_wait");
    for (int i = 0; i < n; ++i) {
      if (evs[i].data.ptr == nullptr) {
        for (;;) {
          const int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
          if (fd < 0) break;
          set_nodelay(fd);
          conns.push_back(std::make_unique<SinkConn>(fd, cap));
          struct epoll_event cev = {};
          cev.events = EPOLLIN;
          cev.data.ptr = conns.back().get();
          if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) != 0) die_errno("epoll_ctl");
        }
        continue;
      }
      SinkConn* c = static_cast<SinkConn*>(evs[i].data.ptr);
      const ssize_t r = c->rx.fill(c->fd);
      if (r == 0) die("a client connection closed early (%lu of %lu messages received)",
                      static_cast<unsigned long>(received), static_cast<unsigned long>(total));
      if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) continue;
        die_errno("recv");
      }
      c->rx.frames(spec.size, [&](const uint8_t* p, size_t len) {
        const uint64_t key = sc.on_message(p, len, "server");
        if (c->stream < 0) c->stream = key_stream(key);
        if (c->stream != key_stream(key))
          die("server: stream %u arrived on the connection of stream %ld", key_stream(key),
              static_cast<long>(c->stream));
        if (key_seq(key) == 0 && ++warm == spec.conns) ch.send_tagged(kMsgGo);
        ++received;
      });
    }
  }
  out.t_last_ns = now_ns();
  out.received = received;
  for (auto& c : conns) ::close(c->fd);
  ::close(ep);
  ::close(lfd);
}

struct SourceConn {
  int fd;
  uint32_t stream;
  uint64_t next = 1;
  std::vector<uint8_t> out;
  size_t off = 0;
};

void w4_client(const Spec& spec, Chan& ch, Report& rep) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  std::vector<SourceConn> conns(static_cast<size_t>(spec.conns));
  std::vector<uint8_t> warm;
  for (size_t i = 0; i < conns.size(); ++i) {
    conns[i].fd = tcp_connect(port);
    conns[i].stream = static_cast<uint32_t>(i);
    conns[i].out.reserve(64 * 1024 + spec.size + 4);
    warm.clear();
    append_frame(warm, spec.size, make_key(conns[i].stream, 0));
    set_io_timeouts(conns[i].fd, 200);
    write_all(conns[i].fd, warm.data(), warm.size(), "sending the warm-up");
    set_nonblocking(conns[i].fd);
  }
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die_errno("epoll_create1");
  for (auto& c : conns) {
    struct epoll_event ev = {};
    ev.events = EPOLLOUT;
    ev.data.ptr = &c;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev) != 0) die_errno("epoll_ctl");
  }
  ch.expect(kMsgGo, "waiting for go");
  rep.t0_ns = now_ns();
  size_t active = conns.size();
  std::vector<struct epoll_event> evs(256);
  while (active > 0) {
    guard("sending on 100 connections");
    const int n = ::epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), ms_left(50));
    if (n < 0 && errno != EINTR) die_errno("epoll_wait");
    for (int i = 0; i < n; ++i) {
      SourceConn& c = *static_cast<SourceConn*>(evs[i].data.ptr);
      for (;;) {
        if (c.off == c.out.size()) {
          c.out.clear();
          c.off = 0;
          while (c.next <= spec.count && c.out.size() + 4 + spec.size <= 64 * 1024)
            append_frame(c.out, spec.size, make_key(c.stream, c.next++));
          if (c.out.empty() && c.next <= spec.count) append_frame(c.out, spec.size, make_key(c.stream, c.next++));
          if (c.out.empty()) {
            if (::epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr) != 0) die_errno("epoll_ctl");
            --active;
            break;
          }
        }
        const ssize_t w = ::send(c.fd, c.out.data() + c.off, c.out.size() - c.off, MSG_NOSIGNAL);
        if (w < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
          die_errno("send");
        }
        c.off += static_cast<size_t>(w);
      }
    }
  }
  rep.count = spec.count * conns.size();
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "waiting for the server to finish");
  for (auto& c : conns) ::close(c.fd);
  ::close(ep);
}

// ---------------------------------------------------------------------------
// W5: idle connections. Per connection the server keeps what a small epoll
// server would: the socket registered with epoll and a small struct whose
// read buffer is allocated on first use (never, here).
// ---------------------------------------------------------------------------

struct IdleConn {
  int fd;
  std::vector<uint8_t> rx;
};

void w5_server(const Spec& spec, Chan& ch, ServerOut& out) {
  uint16_t port;
  const int lfd = tcp_listen(&port, true);
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die_errno("epoll_create1");
  struct epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0) die_errno("epoll_ctl");
  std::vector<struct epoll_event> evs(256);
  const size_t heap0 = heap_in_use(), rss0 = rss_bytes();
  ch.send_tagged(kMsgPort, port);

  std::vector<std::unique_ptr<IdleConn>> conns;
  int64_t idle_until = 0;
  for (;;) {
    guard(progress("accepting idle connections", conns.size(), spec.conns));
    if (idle_until != 0 && now_ns() >= idle_until) break;
    const int n = ::epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), ms_left(20));
    if (n < 0 && errno != EINTR) die_errno("epoll_wait");
    for (int i = 0; i < n; ++i) {
      if (evs[i].data.ptr == nullptr) {
        for (;;) {
          const int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
          if (fd < 0) break;
          conns.push_back(std::make_unique<IdleConn>());
          conns.back()->fd = fd;
          struct epoll_event cev = {};
          cev.events = EPOLLIN;
          cev.data.ptr = conns.back().get();
          if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) != 0) die_errno("epoll_ctl");
        }
        continue;
      }
      die("an idle connection became readable (data or EOF) before the measurement");
    }
    if (idle_until == 0 && conns.size() == static_cast<size_t>(spec.conns)) idle_until = now_ns() + 300000000;
  }
  out.conns = conns.size();
  out.heap_per_conn = (static_cast<double>(heap_in_use()) - static_cast<double>(heap0)) / spec.conns;
  out.rss_per_conn = (static_cast<double>(rss_bytes()) - static_cast<double>(rss0)) / spec.conns;
  Report rep;
  ch.get(&rep, sizeof rep, "waiting for the client's report");
  ch.send_tagged(kMsgDone);
  for (auto& c : conns) ::close(c->fd);
  ::close(ep);
  ::close(lfd);
}

}  // namespace

std::string raw_version() { return "Linux TCP sockets"; }

void raw_server(const Spec& spec, Chan& ch, ServerOut& out, Report& rep) {
  switch (spec.work) {
    case Work::W1: w1_server(spec, ch, out); break;
    case Work::W2: echo_server(spec, ch, out, spec.warmup + spec.count); break;
    case Work::W3: echo_server(spec, ch, out, spec.count + 1); break;
    case Work::W4: w4_server(spec, ch, out); break;
    case Work::W5: w5_server(spec, ch, out); return;
  }
  ch.get(&rep, sizeof rep, "waiting for the client's report");
  ch.send_tagged(kMsgDone);
}

void raw_client(const Spec& spec, Chan& ch) {
  Report rep;
  switch (spec.work) {
    case Work::W1: w1_client(spec, ch, rep); break;
    case Work::W2: w2_client(spec, ch, rep); break;
    case Work::W3: w3_client(spec, ch, rep); break;
    case Work::W4: w4_client(spec, ch, rep); break;
    case Work::W5: plain_idle_client(spec, ch); break;
  }
}

}  // namespace pb
