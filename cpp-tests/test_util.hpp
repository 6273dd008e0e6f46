// Shared helpers for the C++ tests: they use libxxnet only through its C API,
// as a C++ game server would. Every wait is bounded (poll until a predicate
// holds or a deadline passes), every loop has a count cap, network traffic
// stays on 127.0.0.1 / ::1, and only processes the tests started are killed,
// by pid.
#pragma once

#include <xxnet.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <ostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace xt {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using ms = std::chrono::milliseconds;

/// Default bound for waiting on the network.
constexpr ms kWait = 5000ms;
/// Upper bound on poll rounds in any wait loop (besides the deadline).
constexpr int kMaxRounds = 1000000;

inline const char* kind_name(uint32_t kind) {
  switch (kind) {
    case XXNET_EVENT_NONE: return "NONE";
    case XXNET_EVENT_MESSAGE: return "MESSAGE";
    case XXNET_EVENT_CONNECTED: return "CONNECTED";
    case XXNET_EVENT_DISCONNECTED: return "DISCONNECTED";
    case XXNET_EVENT_SEND_FAILED: return "SEND_FAILED";
    case XXNET_EVENT_CONNECT_FAILED: return "CONNECT_FAILED";
    case XXNET_EVENT_ERROR: return "ERROR";
    case XXNET_EVENT_DELIVERED: return "DELIVERED";
    case XXNET_EVENT_EXPIRED: return "EXPIRED";
    case XXNET_EVENT_WRITABLE: return "WRITABLE";
    case XXNET_EVENT_LINK_DOWN: return "LINK_DOWN";
    case XXNET_EVENT_LINK_UP: return "LINK_UP";
    case XXNET_EVENT_TIMER: return "TIMER";
    default: return "?";
  }
}

/// An owned copy of an xxnet_event (the payload is copied: the borrowed one dies at the next poll).
struct Event {
  uint32_t kind = XXNET_EVENT_NONE;
  int code = 0;
  uint64_t conn = 0, id = 0, count = 0, total = 0;
  uint32_t msg_id = 0, lane = 0;
  uint16_t peer_port = 0;
  std::string peer_ip;
  std::string data;
  uint64_t user_data = 0;

  static Event from(const xxnet_event& e) {
    Event o;
    o.kind = e.kind;
    o.code = e.code;
    o.conn = e.conn;
    o.id = e.id;
    o.count = e.count;
    o.total = e.total;
    o.msg_id = e.msg_id;
    o.lane = e.lane;
    o.peer_port = e.peer_port;
    o.peer_ip.assign(e.peer_ip, strnlen(e.peer_ip, sizeof e.peer_ip));
    if (e.data != nullptr && e.len > 0) o.data.assign(reinterpret_cast<const char*>(e.data), e.len);
    o.user_data = e.user_data;
    return o;
  }
  std::string peer() const { return peer_ip + ":" + std::to_string(peer_port); }
};

inline std::ostream& operator<<(std::ostream& os, const Event& e) {
  os << kind_name(e.kind) << "{conn=" << e.conn << " peer=" << e.peer() << " code=" << e.code << " ("
     << xxnet_strerror(e.code) << ")";
  if (e.kind == XXNET_EVENT_MESSAGE) os << " lane=" << e.lane << " msg_id=" << e.msg_id << " len=" << e.data.size();
  if (e.kind == XXNET_EVENT_SEND_FAILED) os << " count=" << e.count << " total=" << e.total << " sent=" << e.id;
  if (e.kind == XXNET_EVENT_DELIVERED || e.kind == XXNET_EVENT_EXPIRED || e.kind == XXNET_EVENT_TIMER)
    os << " id=" << e.id;
  if (e.kind == XXNET_EVENT_LINK_UP) os << " resent=" << e.count;
  if (e.kind == XXNET_EVENT_CONNECTED) os << " initiated=" << e.id;
  return os << "}";
}

inline std::string describe(const std::vector<Event>& evs, size_t max = 20) {
  std::ostringstream os;
  os << evs.size() << " events";
  size_t shown = 0;
  for (const Event& e : evs) {
    if (e.kind == XXNET_EVENT_MESSAGE) continue;  // messages are many; show the others
    if (shown++ == max) {
      os << " ...";
      break;
    }
    os << "\n    " << e;
  }
  return os.str();
}

/// Defaults, except that XXNET_TEST_IO_THREADS=N in the environment sets
/// io_threads (the test script runs ctest again with several reactors).
inline xxnet_config default_config() {
  xxnet_config c;
  std::memset(&c, 0, sizeof c);
  xxnet_config_default(&c);
  if (const char* n = std::getenv("XXNET_TEST_IO_THREADS")) c.io_threads = static_cast<uint32_t>(std::atoi(n));
  return c;
}

/// Defaults, except that a session gives up at its first failed connect
/// (reconnect_give_up_ms 0): CONNECT_FAILED is followed at once by the
/// SEND_FAILED of what it held, instead of retrying for 30 s.
inline xxnet_config no_retry_config() {
  xxnet_config c = default_config();
  c.reconnect_give_up_ms = 0;
  return c;
}

inline xxnet_send_opts opts(uint32_t lane, uint32_t msg_id) {
  xxnet_send_opts o;
  std::memset(&o, 0, sizeof o);
  o.lane = lane;
  o.msg_id = msg_id;
  return o;
}

inline const uint8_t* bytes(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

/// Deterministic payload of `len` bytes for message number `seed`.
inline std::string pattern(uint32_t seed, size_t len) {
  std::string s(len, '\0');
  uint32_t x = seed * 2654435761u + 12345u;
  for (size_t i = 0; i < len; ++i) {
    x = x * 1103515245u + 12345u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

/// RAII owner of an xxnet_ctx plus every event polled from it so far.
class Ctx {
 public:
  explicit Ctx(const xxnet_config* cfg = nullptr) : p_(xxnet_new(cfg)) {}
  explicit Ctx(const xxnet_config& cfg) : p_(xxnet_new(&cfg)) {}
  ~Ctx() { xxnet_free(p_); }
  Ctx(const Ctx&) = delete;
  Ctx& operator=(const Ctx&) = delete;
  Ctx(Ctx&& o) noexcept : events(std::move(o.events)), p_(o.p_) { o.p_ = nullptr; }

  xxnet_ctx* get() const { return p_; }
  explicit operator bool() const { return p_ != nullptr; }
  /// Frees the context now (xxnet_free), e.g. to time it.
  void free() {
    xxnet_free(p_);
    p_ = nullptr;
  }

  /// Polls once (waiting up to timeout_ms for the first event); appends copies to `events`.
  size_t poll(int timeout_ms) {
    xxnet_event evs[256];
    std::memset(evs, 0, sizeof evs);
    size_t n = xxnet_poll_recv(p_, evs, 256, timeout_ms);
    for (size_t i = 0; i < n; ++i) events.push_back(Event::from(evs[i]));
    return n;
  }

  /// Listens on ip:0 and returns the bound port (0 on failure, with a test failure recorded).
  uint16_t listen(const char* ip = "127.0.0.1") {
    uint16_t port = 0;
    int rc = xxnet_listen(p_, ip, 0, &port);
    EXPECT_EQ(rc, XXNET_OK) << "xxnet_listen(" << ip << ", 0): " << xxnet_strerror(rc);
    EXPECT_NE(port, 0) << "xxnet_listen wrote no port";
    return rc == XXNET_OK ? port : 0;
  }

  int send(const char* ip, uint16_t port, const std::string& data, uint32_t lane = 0, uint32_t msg_id = 0) {
    xxnet_send_opts o = opts(lane, msg_id);
    return xxnet_send_ex(p_, ip, port, bytes(data), data.size(), &o);
  }
  int send_conn(uint64_t conn, const std::string& data, uint32_t lane = 0, uint32_t msg_id = 0) {
    xxnet_send_opts o = opts(lane, msg_id);
    return xxnet_send_conn_ex(p_, conn, bytes(data), data.size(), &o);
  }

  xxnet_stats_t stats() const {
    xxnet_stats_t s;
    std::memset(&s, 0, sizeof s);
    int rc = xxnet_stats(p_, &s);
    EXPECT_EQ(rc, XXNET_OK) << "xxnet_stats: " << xxnet_strerror(rc);
    return s;
  }

  size_t count(uint32_t kind) const {
    return static_cast<size_t>(
        std::count_if(events.begin(), events.end(), [&](const Event& e) { return e.kind == kind; }));
  }
  std::vector<Event> of(uint32_t kind) const {
    std::vector<Event> out;
    for (const Event& e : events)
      if (e.kind == kind) out.push_back(e);
    return out;
  }
  std::vector<Event> messages() const { return of(XXNET_EVENT_MESSAGE); }
  const Event* first(uint32_t kind) const {
    for (const Event& e : events)
      if (e.kind == kind) return &e;
    return nullptr;
  }
  std::string dump() const { return describe(events); }

  std::vector<Event> events;

 private:
  xxnet_ctx* p_;
};

/// Polls `ctxs` in turn until `pred()` holds or `timeout` passes. Returns pred()'s last value.
template <class Pred>
bool poll_until(std::initializer_list<Ctx*> ctxs, Pred pred, ms timeout = kWait) {
  const auto deadline = Clock::now() + timeout;
  const int slice = ctxs.size() == 1 ? 20 : 2;
  for (int round = 0; round < kMaxRounds; ++round) {
    if (pred()) return true;
    if (Clock::now() >= deadline) break;
    for (Ctx* c : ctxs) c->poll(slice);
  }
  return pred();
}

template <class Pred>
bool poll_until(Ctx& c, Pred pred, ms timeout = kWait) {
  return poll_until({&c}, pred, timeout);
}

/// Stats once they satisfy `pred` (or the last read after `timeout`). Counters
/// are published by the reactor thread; tests whose subject is not the
/// counters' timing use this (FaultInjection.StatsAreCurrentWhenTheEventIsPolled is
/// the test that they never lag behind polled events).
template <class Pred>
xxnet_stats_t settled_stats(Ctx& c, Pred pred, ms timeout = 1000ms) {
  xxnet_stats_t s = c.stats();
  const auto deadline = Clock::now() + timeout;
  for (int round = 0; round < kMaxRounds && !pred(s) && Clock::now() < deadline; ++round) {
    std::this_thread::sleep_for(1ms);
    s = c.stats();
  }
  return s;
}

/// Keeps polling for `d` (to see that something does NOT happen, or to drain).
inline void poll_for(std::initializer_list<Ctx*> ctxs, ms d) {
  poll_until(ctxs, [] { return false; }, d);
}

/// Waits for a condition that needs no polling (e.g. a counter another thread updates).
template <class Pred>
bool wait_until(Pred pred, ms timeout = kWait) {
  const auto deadline = Clock::now() + timeout;
  for (int round = 0; round < kMaxRounds; ++round) {
    if (pred()) return true;
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(2ms);
  }
  return pred();
}

inline double elapsed_ms(Clock::time_point since) {
  return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
}

// ---------------------------------------------------------------------------
// Process-level helpers.
// ---------------------------------------------------------------------------

/// Number of entries in a /proc/self directory (fd, task).
inline int count_dir(const char* path) {
  DIR* d = opendir(path);
  if (d == nullptr) return -1;
  int n = 0;
  while (struct dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n;
}
inline int open_fds() { return count_dir("/proc/self/fd"); }
inline int threads() { return count_dir("/proc/self/task"); }

/// A child process started by a test, with pipes to its stdin and from its stdout.
/// The destructor kills it (by its pid) and reaps it if it is still running.
class Child {
 public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { kill_and_reap(); }

  /// Starts argv[0] with argv. Returns false (and records why) on failure.
  bool spawn(const std::vector<std::string>& argv) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0) return false;
    if (pipe2(out, O_CLOEXEC) != 0) {
      ::close(in[0]);
      ::close(in[1]);
      return false;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int rc = posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    ::close(out[1]);
    if (rc != 0) {
      pid_ = -1;
      ::close(in[1]);
      ::close(out[0]);
      ADD_FAILURE() << "posix_spawn(" << argv[0] << "): " << std::strerror(rc);
      return false;
    }
    in_ = in[1];
    out_ = out[0];
    return true;
  }

  /// Forks a child that only holds `fd` open (e.g. a listening socket) until it is killed.
  bool fork_holding(int fd) {
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
      // Child: only async-signal-safe calls. Keep `fd`, wait to be killed,
      // and leave by itself after 60 s at the latest.
      (void)fd;
      alarm(60);
      for (int i = 0; i < 100000; ++i) pause();
      _exit(0);
    }
    pid_ = pid;
    return true;
  }

  pid_t pid() const { return pid_; }

  /// Reads one line from the child's stdout (without the newline) within `timeout`.
  bool read_line(std::string& line, ms timeout = kWait) {
    const auto deadline = Clock::now() + timeout;
    for (int round = 0; round < kMaxRounds; ++round) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return true;
      }
      int left = static_cast<int>(std::chrono::duration_cast<ms>(deadline - Clock::now()).count());
      if (left <= 0 || out_ < 0) return false;
      struct pollfd p = {out_, POLLIN, 0};
      int r = ::poll(&p, 1, left);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      char tmp[512];
      ssize_t n = ::read(out_, tmp, sizeof tmp);
      if (n <= 0) return false;
      buf_.append(tmp, static_cast<size_t>(n));
    }
    return false;
  }

  void close_stdin() {
    if (in_ >= 0) ::close(in_);
    in_ = -1;
  }

  /// Waits for the child to exit within `timeout`; stores its wait status.
  bool wait_exit(ms timeout, int* status) {
    const auto deadline = Clock::now() + timeout;
    for (int round = 0; round < kMaxRounds && pid_ > 0; ++round) {
      int st = 0;
      pid_t r = waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        if (status) *status = st;
        return true;
      }
      if (r < 0) {
        pid_ = -1;
        return false;
      }
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }

  void kill_and_reap() {
    close_stdin();
    if (out_ >= 0) ::close(out_);
    out_ = -1;
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      waitpid(pid_, &st, 0);
      pid_ = -1;
    }
  }

 private:
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1;
  std::string buf_;
};

// ---------------------------------------------------------------------------
// Plain POSIX sockets (a stranger on the wire).
// ---------------------------------------------------------------------------

/// A listening TCP socket bound to ip:0 (IPv4 or IPv6); returns the fd (or -1) and the port.
inline int plain_listener(const char* ip, uint16_t* port) {
  sockaddr_storage ss;
  std::memset(&ss, 0, sizeof ss);
  socklen_t len;
  int family;
  if (std::strchr(ip, ':') != nullptr) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
    a6->sin6_family = AF_INET6;
    if (inet_pton(AF_INET6, ip, &a6->sin6_addr) != 1) return -1;
    len = sizeof *a6;
    family = AF_INET6;
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
    a4->sin_family = AF_INET;
    if (inet_pton(AF_INET, ip, &a4->sin_addr) != 1) return -1;
    len = sizeof *a4;
    family = AF_INET;
  }
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd, 16) != 0) {
    ::close(fd);
    return -1;
  }
  socklen_t sl = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl);
  *port = family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                             : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return fd;
}

/// A blocking TCP connection to 127.0.0.1:port (receive timeout set to `timeout`); -1 on failure.
inline int raw_connect(uint16_t port, ms timeout = kWait) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a;
  std::memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv;
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

inline bool send_all(int fd, const std::string& data) {
  size_t off = 0;
  for (int round = 0; round < kMaxRounds && off < data.size(); ++round) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return off == data.size();
}

/// Reads exactly n bytes within `timeout`; false on EOF, error or timeout.
inline bool recv_exact(int fd, size_t n, std::string& out, ms timeout = kWait) {
  out.clear();
  const auto deadline = Clock::now() + timeout;
  for (int round = 0; round < kMaxRounds && out.size() < n; ++round) {
    int left = static_cast<int>(std::chrono::duration_cast<ms>(deadline - Clock::now()).count());
    if (left <= 0) return false;
    struct pollfd p = {fd, POLLIN, 0};
    int r = ::poll(&p, 1, left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    char tmp[4096];
    ssize_t got = ::recv(fd, tmp, std::min(sizeof tmp, n - out.size()), 0);
    if (got <= 0) return false;
    out.append(tmp, static_cast<size_t>(got));
  }
  return out.size() == n;
}

/// Reads and discards until EOF or a reset, within `timeout`. True if the peer closed.
inline bool wait_closed(int fd, ms timeout) {
  const auto deadline = Clock::now() + timeout;
  for (int round = 0; round < kMaxRounds; ++round) {
    int left = static_cast<int>(std::chrono::duration_cast<ms>(deadline - Clock::now()).count());
    if (left <= 0) return false;
    struct pollfd p = {fd, POLLIN, 0};
    int r = ::poll(&p, 1, left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    char tmp[4096];
    ssize_t got = ::recv(fd, tmp, sizeof tmp, 0);
    if (got == 0) return true;                                   // EOF
    if (got < 0 && errno != EINTR && errno != EAGAIN) return true;  // reset
  }
  return false;
}

// ---------------------------------------------------------------------------
// Wire-format helpers (docs/PROTOCOL.md), for tests that speak raw bytes.
// ---------------------------------------------------------------------------

inline void put_le(std::string& s, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline uint64_t get_le(const std::string& s, size_t off, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(s[off + i])) << (8 * i);
  return v;
}

inline std::string preface(uint16_t version = 1) {
  std::string s = "XXNT";
  put_le(s, version, 2);
  put_le(s, 0, 2);
  return s;
}

enum FrameType : uint8_t { kHello = 1, kHelloAck = 2, kData = 3, kPing = 4, kPong = 5, kGoaway = 6, kAck = 7 };

inline std::string frame_header(uint32_t body_len, uint8_t type, uint8_t flags = 0, uint8_t lane = 0,
                                uint32_t msg_id = 0, uint32_t seq = 0) {
  std::string s;
  put_le(s, body_len, 4);
  s.push_back(static_cast<char>(type));
  s.push_back(static_cast<char>(flags));
  s.push_back(static_cast<char>(lane));
  s.push_back('\0');
  put_le(s, msg_id, 4);
  put_le(s, seq, 4);
  return s;
}

inline std::string frame(uint8_t type, const std::string& body, uint8_t flags = 0, uint8_t lane = 0,
                         uint32_t msg_id = 0, uint32_t seq = 0) {
  return frame_header(static_cast<uint32_t>(body.size()), type, flags, lane, msg_id, seq) + body;
}

/// A HELLO from a node that listens nowhere and brings no session state.
inline std::string hello(uint64_t instance, uint64_t nonce) {
  std::string b;
  put_le(b, instance, 8);
  put_le(b, nonce, 8);
  b.append(32, '\0');  // session sync: send_id, recv_id, delivered[4] (nothing yet)
  put_le(b, 0, 2);  // listen_port
  b.push_back('\0');  // ip_len
  return frame(kHello, b);
}

/// Connects to 127.0.0.1:port and completes the xxnet handshake by hand.
/// Returns the fd, or -1 with a test failure recorded.
inline int raw_handshake(uint16_t port) {
  int fd = raw_connect(port);
  if (fd < 0) {
    ADD_FAILURE() << "raw connect to port " << port << " failed";
    return -1;
  }
  if (!send_all(fd, preface() + hello(0x1122334455667788ull, 1))) {
    ADD_FAILURE() << "raw send of preface+HELLO failed";
    ::close(fd);
    return -1;
  }
  std::string pre, hdr, body;
  bool ok = recv_exact(fd, 8, pre) && pre == preface() && recv_exact(fd, 16, hdr) && hdr[4] == kHelloAck;
  if (ok) {
    uint32_t len = static_cast<uint32_t>(get_le(hdr, 0, 4));
    ok = len >= 1 && len < 4096 && recv_exact(fd, len, body) && body[0] == 0;  // status 0: accepted
  }
  if (!ok) {
    ADD_FAILURE() << "no accepting preface+HELLO_ACK from the xxnet listener";
    ::close(fd);
    return -1;
  }
  return fd;
}

/// Accepts one connection on listening socket `lfd` (within `timeout`) and
/// answers its HELLO like an xxnet acceptor would (status 0, a session
/// block that starts fresh, listening nowhere), then leaves the connection to
/// the caller: a peer that speaks the handshake and nothing more (it never
/// ACKs, never answers PINGs). Returns the fd, or -1 with a test failure.
inline int raw_accept_handshake(int lfd, ms timeout = kWait) {
  struct pollfd p = {lfd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
    ADD_FAILURE() << "no connection to accept";
    return -1;
  }
  int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) {
    ADD_FAILURE() << "accept: " << std::strerror(errno);
    return -1;
  }
  std::string pre, hdr, body;
  bool ok = recv_exact(fd, 8, pre) && pre == preface() && recv_exact(fd, 16, hdr) && hdr[4] == kHello;
  const uint32_t len = ok ? static_cast<uint32_t>(get_le(hdr, 0, 4)) : 0;
  ok = ok && len >= 48 && len < 4096 && recv_exact(fd, len, body);
  if (!ok) {
    ADD_FAILURE() << "no preface+HELLO from the xxnet connector";
    ::close(fd);
    return -1;
  }
  const uint64_t their_send_id = get_le(body, 16, 8);
  std::string ack;
  ack.push_back('\0');                   // status: accepted
  put_le(ack, 0xA11CEull, 8);            // instance
  put_le(ack, 0, 8);                     // abandoned_nonce
  put_le(ack, 0x5E55107ull, 8);          // sync.send_id (ours, nonzero)
  put_le(ack, their_send_id, 8);         // sync.recv_id: we track their numbering...
  ack.append(16, '\0');                  // ...and delivered nothing yet
  put_le(ack, 0, 2);                     // listen_port: nowhere
  ack.push_back('\0');                   // ip_len
  if (!send_all(fd, preface() + frame(kHelloAck, ack))) {
    ADD_FAILURE() << "sending HELLO_ACK failed";
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace xt
