// Shared pieces of xxnet_peers_bench: the workload description, the payload
// pattern and its checks, deadlines, the pipe between the server process (the
// server side) and its forked child (the client side), and small socket
// helpers. Each system lives in its own sys_*.cpp and exports a server and a
// client function (see the bottom of this file).
//
// Process structure of one cell: the bench process forks a fresh server
// process, which forks the client process before any library context or
// thread exists. They talk over two pipes (Chan): the server sends its port,
// "go" (W1/W4, once every connection delivered its warm-up message) and
// "done"; the client sends its Report.
#pragma once

#include <netinet/in.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace pb {

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

enum class Work { W1, W2, W3, W4, W5 };

/// One cell of the suite as both sides see it (the child gets a copy through fork).
struct Spec {
  Work work = Work::W1;
  std::string row;         // system row label ("xxnet io2", "zmq", ...), for messages
  std::string variant;     // "64 B", "pinned", ... for messages
  size_t size = 64;        // payload bytes of one message (W1..W4)
  uint64_t count = 0;      // W1/W4: timed messages per connection; W2: timed round trips; W3: requests
  uint64_t warmup = 0;     // W2: untimed round trips before the timed ones
  int conns = 1;           // W4: connections; W5: idle connections
  int window = 64;         // W3: requests in flight
  bool pinned = false;     // W2: both processes on one CPU
  uint32_t io_threads = 1; // xxnet only
  bool io_threads_client = true;  // xxnet: also set io_threads on the client context(s)
  double timeout_s = 60;   // the whole cell must finish within this
};

/// What the client (the child) sends back over the pipe once it is done.
/// Plain data, written in one piece (well under PIPE_BUF).
struct Report {
  int64_t t0_ns = 0;      // CLOCK_MONOTONIC at the first timed send
  int64_t t1_ns = 0;      // CLOCK_MONOTONIC when the client saw its last reply (W2, W3)
  uint64_t count = 0;     // timed operations the client completed
  double mean_us = 0, p50_us = 0, p99_us = 0;  // W2
};

/// What the server side (the cell's server process) measured.
struct ServerOut {
  int64_t t_last_ns = 0;  // CLOCK_MONOTONIC when the last message arrived (W1, W4)
  uint64_t received = 0;  // messages received (or echoed)
  double heap_per_conn = 0, rss_per_conn = 0;  // W5, bytes
  uint64_t conns = 0;     // W5: connections the server saw established
};

// ---------------------------------------------------------------------------
// Failing loudly, deadlines
// ---------------------------------------------------------------------------

/// Prints "*** FAILED ..." with the current cell and exits non-zero (the
/// parent kills its child first; a child _exits). Never returns.
[[noreturn]] void die(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
/// Same as die() for a failed system call: appends strerror(errno).
[[noreturn]] void die_errno(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/// Describes the running cell in failure messages ("W1 64 B zmq (client)").
void set_context(const Spec& s, bool child);

int64_t now_ns();

/// The current cell's deadline (set by the harness before each cell, in
/// both processes). guard() dies when it has passed, and in the parent also
/// when the child has died; call it in every wait loop.
void set_deadline(double seconds_from_now);
bool deadline_passed();
/// Milliseconds left until the deadline (at least 0, at most cap_ms).
int ms_left(int cap_ms);
void guard(const char* what);
/// "what (done of total)" in a static buffer, for guard() messages.
const char* progress(const char* what, uint64_t done, uint64_t total);
/// Registers the child's pid in the parent so guard() can see it die (0: none).
void set_child(pid_t pid);

// ---------------------------------------------------------------------------
// Payload: 8-byte key (little-endian), then a pattern derived from the key.
// key = stream << 40 | seq. Sizes must be at least 8 bytes.
// ---------------------------------------------------------------------------

constexpr uint64_t kSeqMask = (uint64_t{1} << 40) - 1;

inline uint64_t make_key(uint32_t stream, uint64_t seq) { return (uint64_t{stream} << 40) | seq; }
inline uint32_t key_stream(uint64_t key) { return static_cast<uint32_t>(key >> 40); }
inline uint64_t key_seq(uint64_t key) { return key & kSeqMask; }

inline uint64_t load_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void store_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

/// Writes the key and the pattern it determines into p[0..n).
void fill_payload(uint8_t* p, size_t n, uint64_t key);
/// Checks size, key and pattern; dies with a precise message otherwise.
/// `where` names the receiving side ("server", "client reply").
void check_payload(const uint8_t* p, size_t n, size_t want_n, uint64_t want_key, const char* where);

/// Per-stream order check for messages whose stream comes from the key (W4).
class StreamCheck {
 public:
  StreamCheck(uint32_t streams, size_t size) : next_(streams, 0), size_(size) {}
  /// Checks one message; returns its key.
  uint64_t on_message(const uint8_t* p, size_t n, const char* where);
  uint64_t next(uint32_t stream) const { return next_[stream]; }

 private:
  std::vector<uint64_t> next_;
  size_t size_;
};

// ---------------------------------------------------------------------------
// The pipe between the two processes.
// ---------------------------------------------------------------------------

enum : uint64_t { kMsgPort = 0x504f5254, kMsgGo = 0x474f, kMsgDone = 0x444f4e45 };

class Chan {
 public:
  Chan(int rfd, int wfd) : rfd_(rfd), wfd_(wfd) {}
  void put(const void* p, size_t n);
  /// Reads exactly n bytes before the deadline, or dies.
  void get(void* p, size_t n, const char* what);
  void put_u64(uint64_t v) { put(&v, sizeof v); }
  uint64_t get_u64(const char* what) {
    uint64_t v;
    get(&v, sizeof v, what);
    return v;
  }
  /// Waits for a tagged value (port, go, done) and checks its tag.
  uint64_t expect(uint64_t tag, const char* what);
  void send_tagged(uint64_t tag, uint64_t value = 0) {
    uint64_t m[2] = {tag, value};
    put(m, sizeof m);
  }
  /// True when data is waiting (never blocks).
  bool readable() const;
  int rfd() const { return rfd_; }

 private:
  int rfd_, wfd_;
};

/// The server's last step, while its library context is still up: read the
/// client's report, then tell it to tear down.
inline void finish(Chan& ch, Report& rep) {
  ch.get(&rep, sizeof rep, "waiting for the client's report");
  ch.send_tagged(kMsgDone);
}

// ---------------------------------------------------------------------------
// Sockets (raw TCP, and the plain-socket clients of W5)
// ---------------------------------------------------------------------------

/// 127.0.0.1:port.
sockaddr_in loopback(uint16_t port);
/// A listening TCP socket on 127.0.0.1 with an ephemeral port.
int tcp_listen(uint16_t* port, bool nonblocking, int backlog = 4096);
/// A connected TCP socket to 127.0.0.1:port (blocking connect), TCP_NODELAY on.
int tcp_connect(uint16_t port);
void set_nodelay(int fd);
void set_nonblocking(int fd);
/// SO_RCVTIMEO / SO_SNDTIMEO, so blocking calls wake up to check the deadline.
void set_io_timeouts(int fd, int ms);
/// Writes all n bytes (blocking socket with timeouts), or dies.
void write_all(int fd, const void* p, size_t n, const char* what);
/// Reads exactly n bytes (blocking socket with timeouts), or dies.
void read_exact(int fd, void* p, size_t n, const char* what);

/// glibc heap in use (mallinfo2: uordblks + hblkhd) and resident set, bytes.
size_t heap_in_use();
size_t rss_bytes();

/// The W5 client of systems without a protocol of their own (raw TCP,
/// libevent): spec.conns plain connections, held open and idle until the
/// server says done.
void plain_idle_client(const Spec& spec, Chan& ch);

/// Accepts one connection on a blocking listening socket within the deadline.
int accept_one(int lfd, const char* what);

/// Latency summary of a W2 run (microseconds).
void summarize_latencies(std::vector<double>& us, Report& r);

// ---------------------------------------------------------------------------
// The systems. server(): the cell's server process (listens, sends the
// port, measures, ends with reading the client's Report and sending
// kMsgDone while its library context is still up). client(): the forked
// child's side. Both die() on any failure.
// ---------------------------------------------------------------------------

#define PB_SYSTEM(name)                                                    \
  void name##_server(const Spec& spec, Chan& ch, ServerOut& out, Report& rep); \
  void name##_client(const Spec& spec, Chan& ch);                           \
  std::string name##_version();

PB_SYSTEM(xxnet)
PB_SYSTEM(zmq)
PB_SYSTEM(nng)
PB_SYSTEM(libevent)
PB_SYSTEM(raw)
#undef PB_SYSTEM

}  // namespace pb
