// Implementation of common.hpp: failures, deadlines, payload checks, the
// pipe, socket helpers, memory figures.
#include "common.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdio>

namespace pb {

namespace {

std::string g_context = "setup";
bool g_is_child = false;
pid_t g_child = 0;
int64_t g_deadline_ns = 0;
int64_t g_next_child_check_ns = 0;

[[noreturn]] void vdie(const char* fmt, va_list ap, int err) {
  char msg[1024];
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  std::fflush(stdout);
  if (err != 0)
    std::fprintf(stderr, "\n*** xxnet_peers_bench FAILED [%s]: %s: %s ***\n", g_context.c_str(), msg,
                 std::strerror(err));
  else
    std::fprintf(stderr, "\n*** xxnet_peers_bench FAILED [%s]: %s ***\n", g_context.c_str(), msg);
  std::fflush(stderr);
  if (g_is_child) _exit(3);
  if (g_child > 0) {
    ::kill(g_child, SIGKILL);
    int st;
    ::waitpid(g_child, &st, 0);
  }
  _exit(1);
}

}  // namespace

void die(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vdie(fmt, ap, 0);
}

void die_errno(const char* fmt, ...) {
  const int err = errno;
  va_list ap;
  va_start(ap, fmt);
  vdie(fmt, ap, err);
}

void set_context(const Spec& s, bool child) {
  static const char* names[] = {"W1", "W2", "W3", "W4", "W5"};
  g_context = std::string(names[static_cast<int>(s.work)]) + " " + s.variant + " " + s.row +
              (child ? " (client side, child process)" : " (server side)");
  g_is_child = child;
  if (child) g_child = 0;
}

int64_t now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void set_deadline(double seconds_from_now) {
  g_deadline_ns = now_ns() + static_cast<int64_t>(seconds_from_now * 1e9);
  g_next_child_check_ns = 0;
}

bool deadline_passed() { return now_ns() > g_deadline_ns; }

int ms_left(int cap_ms) {
  const int64_t left = (g_deadline_ns - now_ns()) / 1000000;
  if (left <= 0) return 0;
  return static_cast<int>(std::min<int64_t>(left, cap_ms));
}

void set_child(pid_t pid) { g_child = pid; }

const char* progress(const char* what, uint64_t done, uint64_t total) {
  static char buf[256];
  std::snprintf(buf, sizeof buf, "%s (%" PRIu64 " of %" PRIu64 ")", what, done, total);
  return buf;
}

void guard(const char* what) {
  const int64_t t = now_ns();
  if (t > g_deadline_ns) die("timed out (stalled?) while %s", what);
  if (g_child > 0 && t >= g_next_child_check_ns) {
    g_next_child_check_ns = t + 50 * 1000000;
    siginfo_t info;
    std::memset(&info, 0, sizeof info);
    // WNOWAIT: look without reaping, so the harness still gets the rusage from wait4.
    if (::waitid(P_PID, static_cast<id_t>(g_child), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == g_child) {
      if (info.si_code == CLD_EXITED)
        die("the client (child) exited with status %d while the server was still %s", info.si_status, what);
      die("the client (child) was killed by signal %d while the server was still %s", info.si_status, what);
    }
  }
}

// ---------------------------------------------------------------------------
// Payload
// ---------------------------------------------------------------------------

namespace {
constexpr uint64_t kMul = 0x9E3779B97F4A7C15ull;
constexpr uint64_t kStep = 0xD1B54A32D192ED03ull;
}  // namespace

void fill_payload(uint8_t* p, size_t n, uint64_t key) {
  std::memcpy(p, &key, 8);
  const uint64_t base = key * kMul;
  const size_t words = n / 8;
  for (size_t i = 1; i < words; ++i) {
    const uint64_t w = base + i * kStep;
    std::memcpy(p + 8 * i, &w, 8);
  }
  if (n % 8 != 0) {
    const uint64_t w = base + words * kStep;
    std::memcpy(p + 8 * words, &w, n % 8);
  }
}

void check_payload(const uint8_t* p, size_t n, size_t want_n, uint64_t want_key, const char* where) {
  if (n != want_n)
    die("%s: message of %zu bytes where %zu were sent (seq %" PRIu64 " expected): size corrupted", where, n,
        want_n, key_seq(want_key));
  const uint64_t key = load_u64(p);
  if (key != want_key) {
    const uint64_t got = key_seq(key), want = key_seq(want_key);
    if (key_stream(key) != key_stream(want_key))
      die("%s: message of stream %u where stream %u (seq %" PRIu64 ") was expected: misrouted or corrupted",
          where, key_stream(key), key_stream(want_key), want);
    if (got < want)
      die("%s: DUPLICATE or REORDER: got seq %" PRIu64 " after seq %" PRIu64 " (stream %u)", where, got,
          want - 1, key_stream(key));
    die("%s: LOSS or REORDER: got seq %" PRIu64 " where seq %" PRIu64 " was expected (%" PRIu64
        " missing) (stream %u)",
        where, got, want, got - want, key_stream(key));
  }
  const uint64_t base = key * kMul;
  const size_t words = n / 8;
  uint64_t diff = 0;
  for (size_t i = 1; i < words; ++i) {
    uint64_t w;
    std::memcpy(&w, p + 8 * i, 8);
    diff |= w ^ (base + i * kStep);
  }
  if (n % 8 != 0) {
    const uint64_t w = base + words * kStep;
    uint64_t got = 0, want = 0;
    std::memcpy(&got, p + 8 * words, n % 8);
    std::memcpy(&want, &w, n % 8);
    diff |= got ^ want;
  }
  if (diff != 0) {
    std::vector<uint8_t> ref(n);
    fill_payload(ref.data(), n, key);
    size_t at = 0;
    while (at < n && ref[at] == p[at]) ++at;
    die("%s: CORRUPTED payload of seq %" PRIu64 " (stream %u, %zu bytes): first bad byte at offset %zu "
        "(0x%02x, expected 0x%02x)",
        where, key_seq(key), key_stream(key), n, at, p[at], ref[at]);
  }
}

uint64_t StreamCheck::on_message(const uint8_t* p, size_t n, const char* where) {
  if (n < 8) die("%s: message of %zu bytes (expected %zu)", where, n, size_);
  const uint64_t key = load_u64(p);
  const uint32_t s = key_stream(key);
  if (s >= next_.size()) die("%s: message names stream %u, only %zu exist: corrupted", where, s, next_.size());
  check_payload(p, n, size_, make_key(s, next_[s]), where);
  ++next_[s];
  return key;
}

// ---------------------------------------------------------------------------
// Pipe
// ---------------------------------------------------------------------------

void Chan::put(const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::write(wfd_, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die_errno("writing to the pipe to the other process");
    c += w;
    n -= static_cast<size_t>(w);
  }
}

void Chan::get(void* p, size_t n, const char* what) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    guard(what);
    struct pollfd pf = {rfd_, POLLIN, 0};
    const int r = ::poll(&pf, 1, ms_left(50));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) die_errno("poll on the pipe");
    if (r == 0) continue;
    const ssize_t got = ::read(rfd_, c, n);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) die_errno("reading the pipe while %s", what);
    if (got == 0) die("the other process closed the pipe (it died?) while %s", what);
    c += got;
    n -= static_cast<size_t>(got);
  }
}

uint64_t Chan::expect(uint64_t tag, const char* what) {
  uint64_t m[2];
  get(m, sizeof m, what);
  if (m[0] != tag) die("pipe protocol: got tag 0x%" PRIx64 " while %s", m[0], what);
  return m[1];
}

bool Chan::readable() const {
  struct pollfd pf = {rfd_, POLLIN, 0};
  return ::poll(&pf, 1, 0) == 1;
}

// ---------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a;
  std::memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

int tcp_listen(uint16_t* port, bool nonblocking, int backlog) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) die_errno("socket");
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = loopback(0);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die_errno("bind 127.0.0.1:0");
  if (::listen(fd, backlog) != 0) die_errno("listen");
  socklen_t len = sizeof a;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) die_errno("getsockname");
  *port = ntohs(a.sin_port);
  return fd;
}

void set_nodelay(int fd) {
  const int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) die_errno("TCP_NODELAY");
}

void set_nonblocking(int fd) {
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) die_errno("O_NONBLOCK");
}

void set_io_timeouts(int fd, int ms) {
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
    die_errno("SO_RCVTIMEO/SO_SNDTIMEO");
}

int tcp_connect(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die_errno("socket");
  sockaddr_in a = loopback(port);
  for (;;) {
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) break;
    if (errno == EINTR) continue;
    die_errno("connect to 127.0.0.1:%u", port);
  }
  set_nodelay(fd);
  return fd;
}

void write_all(int fd, const void* p, size_t n, const char* what) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::send(fd, c, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        guard(what);
        continue;
      }
      die_errno("write while %s", what);
    }
    c += w;
    n -= static_cast<size_t>(w);
  }
}

void read_exact(int fd, void* p, size_t n, const char* what) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    const ssize_t r = ::recv(fd, c, n, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        guard(what);
        continue;
      }
      die_errno("read while %s", what);
    }
    if (r == 0) die("the peer closed the connection while %s", what);
    c += r;
    n -= static_cast<size_t>(r);
  }
}

int accept_one(int lfd, const char* what) {
  for (;;) {
    guard(what);
    struct pollfd pf = {lfd, POLLIN, 0};
    const int r = ::poll(&pf, 1, ms_left(50));
    if (r < 0 && errno != EINTR) die_errno("poll on the listening socket");
    if (r <= 0) continue;
    const int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      die_errno("accept");
    }
    set_nodelay(fd);
    return fd;
  }
}

void plain_idle_client(const Spec& spec, Chan& ch) {
  const uint16_t port = static_cast<uint16_t>(ch.expect(kMsgPort, "waiting for the server's port"));
  std::vector<int> fds;
  fds.reserve(static_cast<size_t>(spec.conns));
  for (int i = 0; i < spec.conns; ++i) {
    if (i % 64 == 0) guard("opening idle connections");
    fds.push_back(tcp_connect(port));
  }
  Report rep;
  rep.count = fds.size();
  ch.put(&rep, sizeof rep);
  ch.expect(kMsgDone, "holding idle connections");
  for (int fd : fds) ::close(fd);
}

size_t heap_in_use() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

size_t rss_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) die_errno("open /proc/self/statm");
  unsigned long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  if (n != 2) die("cannot parse /proc/self/statm");
  return resident * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}

void summarize_latencies(std::vector<double>& us, Report& r) {
  r.count = us.size();
  if (us.empty()) return;
  double sum = 0;
  for (double v : us) sum += v;
  r.mean_us = sum / static_cast<double>(us.size());
  std::sort(us.begin(), us.end());
  auto pct = [&](double q) {
    size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(us.size())));
    if (i > 0) --i;
    return us[std::min(i, us.size() - 1)];
  };
  r.p50_us = pct(0.50);
  r.p99_us = pct(0.99);
}

}  // namespace pb
