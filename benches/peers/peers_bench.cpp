// xxnet_peers_bench: xxnet side by side with ZeroMQ, nng, libevent and raw
// TCP over 127.0.0.1 (issue 7).
//
//   xxnet_peers_bench [--runs N] [--quick] [--only W1,W3] [--systems xxnet,raw,...]
//                     [--timeout SECONDS] [--w5-conns N]
//
// --systems takes xxnet (both xxnet rows), zmq, nng, libevent, raw; --only
// takes W1..W5; --timeout bounds each cell (default 60 s: a stalled cell
// fails loudly); --quick: small counts, one run, W5 with 1 000 connections.
//
// Workloads (every message carries a sequence number and a pattern derived
// from it; any loss, duplicate, reorder or corruption fails the run loudly):
//   W1  one-way throughput over one connection: 64 B, 1 KiB, 64 KiB
//   W2  64 B request/response, one outstanding: mean, p50, p99; normally and
//       with both processes pinned to one CPU
//   W3  64 B pipelined requests, 64 in flight, echo server: requests/s
//   W4  fan-in: 100 connections sending 1 KiB messages to one server
//   W5  heap (mallinfo2) and RSS per idle connection on the server side
//
// Each cell runs in a fresh pair of processes: the bench forks the server
// side, which forks the client side before any library context or thread
// exists; CPU time is user+sys of both (getrusage of the server process +
// wait4 of its client). The suite is repeated
// --runs times, interleaved (run 1: every workload x every system, run 2:
// ...), and the tables show the median of each figure.
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common.hpp"

namespace pb {
namespace {

// Targets of the final summary (issue 7). W3 "xxnet vs raw" names no factor: 1.0x.
constexpr double kTargetW1BigVsRaw = 0.9;      // W1 64 KiB: xxnet MB/s >= 0.9 x raw
constexpr double kTargetW3VsRaw = 1.0;         // W3: xxnet requests/s >= 1.0 x raw
constexpr double kTargetW2PinnedP50 = 1.5;     // W2 pinned: xxnet p50 <= 1.5 x raw p50
constexpr double kTargetW5HeapPerConn = 4096;  // W5: xxnet heap/conn <= 4 KiB

using ServerFn = void (*)(const Spec&, Chan&, ServerOut&, Report&);
using ClientFn = void (*)(const Spec&, Chan&);

struct RowDef {
  std::string label;   // table row
  std::string system;  // --systems name
  ServerFn server;
  ClientFn client;
  uint32_t io_threads;
  bool peer;  // one of ZeroMQ / nng / libevent (the "best peer" set)
  uint64_t count_div = 1;  // W1 (up to 1 KiB), W3, W4 counts are divided by this (rates stay comparable)
};

struct Sample {
  double rate = 0, mbps = 0, mean = 0, p50 = 0, p99 = 0, heap = 0, rss = 0, cpu = 0;
};

struct Options {
  int runs = 5;
  bool quick = false;
  std::set<std::string> only;     // empty: all
  std::set<std::string> systems;  // empty: all
  double timeout_s = 60;
  int w5_conns = 0;  // 0: 10000 (quick: 1000)
};

const char* work_name(Work w) {
  static const char* names[] = {"W1", "W2", "W3", "W4", "W5"};
  return names[static_cast<int>(w)];
}

// ---------------------------------------------------------------------------
// Watchdog: a cell that hangs in a blocking library call is ended by SIGALRM.
// ---------------------------------------------------------------------------

volatile sig_atomic_t g_watch_child = 0;
volatile sig_atomic_t g_in_child = 0;

void on_alarm(int) {
  static const char msg[] = "\n*** xxnet_peers_bench FAILED: watchdog: a cell hung past its timeout ***\n";
  ssize_t ignored = ::write(2, msg, sizeof msg - 1);
  (void)ignored;
  if (!g_in_child && g_watch_child > 0) ::kill(static_cast<pid_t>(g_watch_child), SIGKILL);
  _exit(g_in_child ? 4 : 2);
}

int thread_count() {
  DIR* d = ::opendir("/proc/self/task");
  if (d == nullptr) return -1;
  int n = 0;
  while (struct dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n;
}

double cpu_us(const struct rusage& r) {
  return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 +
         static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

// ---------------------------------------------------------------------------
// One cell. The bench process never touches a library: for each cell it
// forks a fresh server process (the "runner", serve_cell below), which forks
// the client before any library context or thread exists. A fresh pair per
// cell means no state, thread or heap of an earlier cell is inherited (nng
// even refuses to run in a child forked after nng was initialised, and the
// W5 heap and RSS figures start from a clean process).
// ---------------------------------------------------------------------------

Sample serve_cell(const RowDef& row, const Spec& spec) {
  set_context(spec, false);
  set_deadline(spec.timeout_s);
  const int threads = thread_count();
  if (threads != 1)
    std::fprintf(stderr, "warning: %d threads alive before the fork of %s %s %s (a library left one behind?)\n",
                 threads, work_name(spec.work), spec.variant.c_str(), row.label.c_str());

  cpu_set_t saved;
  CPU_ZERO(&saved);
  if (spec.pinned) {
    if (::sched_getaffinity(0, sizeof saved, &saved) != 0) die_errno("sched_getaffinity");
    int cpu = 0;
    while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &saved)) ++cpu;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (::sched_setaffinity(0, sizeof one, &one) != 0) die_errno("sched_setaffinity");
  }

  int p2c[2], c2p[2];
  if (::pipe2(p2c, O_CLOEXEC) != 0 || ::pipe2(c2p, O_CLOEXEC) != 0) die_errno("pipe2");
  struct rusage r0, r1, rc;
  std::memset(&rc, 0, sizeof rc);
  ::getrusage(RUSAGE_SELF, &r0);
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) die_errno("fork");
  if (pid == 0) {
    g_in_child = 1;
    set_context(spec, true);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) _exit(5);
    ::alarm(static_cast<unsigned>(spec.timeout_s) + 15);
    ::close(p2c[1]);
    ::close(c2p[0]);
    Chan ch(p2c[0], c2p[1]);
    row.client(spec, ch);
    std::fflush(stdout);
    std::fflush(stderr);
    _exit(0);
  }
  g_watch_child = pid;
  ::alarm(static_cast<unsigned>(spec.timeout_s) + 30);
  set_child(pid);
  ::close(p2c[0]);
  ::close(c2p[1]);
  Chan ch(c2p[0], p2c[1]);
  ServerOut out;
  Report rep;
  row.server(spec, ch, out, rep);

  // The client exits once it has seen kMsgDone and torn its side down.
  int status = 0;
  const int64_t wait_until = now_ns() + 20 * int64_t{1000000000};
  for (;;) {
    const pid_t w = ::wait4(pid, &status, WNOHANG, &rc);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) die_errno("wait4");
    if (now_ns() > wait_until) die("the client did not exit within 20 s after the run (teardown hang?)");
    ::usleep(1000);
  }
  set_child(0);
  g_watch_child = 0;
  ::alarm(0);
  ::getrusage(RUSAGE_SELF, &r1);
  if (spec.pinned && ::sched_setaffinity(0, sizeof saved, &saved) != 0) die_errno("restoring the CPU affinity");
  ::close(p2c[1]);
  ::close(c2p[0]);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    die("the client (child) ended badly: %s %d", WIFEXITED(status) ? "exit status" : "signal",
        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));

  const double cpu = cpu_us(r1) - cpu_us(r0) + cpu_us(rc);
  Sample s;
  switch (spec.work) {
    case Work::W1:
    case Work::W4: {
      const uint64_t conns = spec.work == Work::W4 ? static_cast<uint64_t>(spec.conns) : 1;
      const uint64_t timed = spec.count * conns;
      if (out.received != (spec.count + 1) * conns)
        die("server received %" PRIu64 " messages, %" PRIu64 " were sent", out.received, (spec.count + 1) * conns);
      const double secs = static_cast<double>(out.t_last_ns - rep.t0_ns) / 1e9;
      if (secs <= 0) die("bad timing: %f s", secs);
      s.rate = static_cast<double>(timed) / secs;
      s.mbps = s.rate * static_cast<double>(spec.size) / 1e6;
      s.cpu = cpu / static_cast<double>((spec.count + 1) * conns);
      break;
    }
    case Work::W2:
      if (rep.count != spec.count) die("client timed %" PRIu64 " round trips of %" PRIu64, rep.count, spec.count);
      s.mean = rep.mean_us;
      s.p50 = rep.p50_us;
      s.p99 = rep.p99_us;
      s.cpu = cpu / static_cast<double>(spec.warmup + spec.count);
      break;
    case Work::W3: {
      if (rep.count != spec.count) die("client completed %" PRIu64 " requests of %" PRIu64, rep.count, spec.count);
      const double secs = static_cast<double>(rep.t1_ns - rep.t0_ns) / 1e9;
      if (secs <= 0) die("bad timing: %f s", secs);
      s.rate = static_cast<double>(spec.count) / secs;
      s.cpu = cpu / static_cast<double>(spec.count + 1);
      break;
    }
    case Work::W5:
      if (out.conns != static_cast<uint64_t>(spec.conns))
        die("server saw %" PRIu64 " connections of %d", out.conns, spec.conns);
      s.heap = out.heap_per_conn;
      s.rss = out.rss_per_conn;
      s.cpu = cpu / spec.conns;
      break;
  }
  return s;
}

Sample run_cell(const RowDef& row, const Spec& spec) {
  set_context(spec, false);
  int res[2];
  if (::pipe2(res, O_CLOEXEC) != 0) die_errno("pipe2");
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) die_errno("fork");
  if (pid == 0) {
    ::close(res[0]);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    const Sample s = serve_cell(row, spec);
    Chan(-1, res[1]).put(&s, sizeof s);
    std::fflush(stdout);
    std::fflush(stderr);
    _exit(0);
  }
  ::close(res[1]);
  set_child(pid);
  Sample s;
  size_t got = 0;
  int status = 0;
  bool exited = false;
  const int64_t until = now_ns() + static_cast<int64_t>((spec.timeout_s + 60) * 1e9);
  while (!exited) {
    const pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) exited = true;
    if (w < 0 && errno != EINTR) die_errno("waitpid");
    // Read the result as it comes (it is written just before the runner exits).
    struct pollfd pf = {res[0], POLLIN, 0};
    if (got < sizeof s && ::poll(&pf, 1, exited ? 0 : 10) == 1) {
      const ssize_t r = ::read(res[0], reinterpret_cast<char*>(&s) + got, sizeof s - got);
      if (r > 0) got += static_cast<size_t>(r);
    }
    if (!exited && now_ns() > until) die("the cell's server process hung past its timeout");
  }
  while (got < sizeof s) {
    const ssize_t r = ::read(res[0], reinterpret_cast<char*>(&s) + got, sizeof s - got);
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  set_child(0);
  ::close(res[0]);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fflush(stdout);
    std::fprintf(stderr, "*** xxnet_peers_bench FAILED: %s %s %s: the cell's server process ended with %s %d ***\n",
                 work_name(spec.work), spec.variant.c_str(), row.label.c_str(),
                 WIFEXITED(status) ? "exit status" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    std::exit(1);
  }
  if (got != sizeof s) die("the cell's server process exited without a result");
  return s;
}

// ---------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------

struct Cell {
  Work work;
  std::string variant;
  Spec spec;  // without row / io_threads
};

std::vector<Cell> make_cells(const Options& o) {
  std::vector<Cell> cells;
  auto want = [&](const char* w) { return o.only.empty() || o.only.count(w) != 0; };
  const bool q = o.quick;
  if (want("W1")) {
    struct {
      const char* name;
      size_t size;
      uint64_t full, quick;
    } sizes[] = {{"64 B", 64, 1000000, 20000}, {"1 KiB", 1024, 400000, 10000}, {"64 KiB", 65536, 20000, 1000}};
    for (auto& z : sizes) {
      Spec s;
      s.work = Work::W1;
      s.variant = z.name;
      s.size = z.size;
      s.count = q ? z.quick : z.full;
      cells.push_back({Work::W1, z.name, s});
    }
  }
  if (want("W2")) {
    for (bool pinned : {false, true}) {
      Spec s;
      s.work = Work::W2;
      s.variant = pinned ? "pinned" : "normal";
      s.size = 64;
      s.count = q ? 1000 : 20000;
      s.warmup = q ? 100 : 1000;
      s.pinned = pinned;
      cells.push_back({Work::W2, s.variant, s});
    }
  }
  if (want("W3")) {
    Spec s;
    s.work = Work::W3;
    s.variant = "64 in flight";
    s.size = 64;
    s.count = q ? 10000 : 200000;
    s.window = 64;
    cells.push_back({Work::W3, s.variant, s});
  }
  if (want("W4")) {
    Spec s;
    s.work = Work::W4;
    s.variant = "100 conns";
    s.size = 1024;
    s.conns = 100;
    s.count = q ? 100 : 4000;
    cells.push_back({Work::W4, s.variant, s});
  }
  if (want("W5")) {
    Spec s;
    s.work = Work::W5;
    s.conns = o.w5_conns > 0 ? o.w5_conns : (q ? 1000 : 10000);
    s.variant = std::to_string(s.conns) + " idle";
    cells.push_back({Work::W5, s.variant, s});
  }
  for (auto& c : cells) c.spec.timeout_s = o.timeout_s;
  return cells;
}

std::vector<RowDef> all_rows() {
  return {
      {"xxnet", "xxnet", xxnet_server, xxnet_client, 1, false},
      {"xxnet io2", "xxnet", xxnet_server, xxnet_client, 2, false},
      {"zmq", "zmq", zmq_server, zmq_client, 1, true},
      // nng moves ~30k small messages/s per connection here: 1/8 of the counts keeps its cells short.
      {"nng", "nng", nng_server, nng_client, 1, true, 8},
      {"libevent", "libevent", libevent_server, libevent_client, 1, true},
      {"raw", "raw", raw_server, raw_client, 1, false},
  };
}

bool row_applies(const RowDef& r, Work w) {
  // The io_threads = 2 row exists for W1 and W4 only.
  return r.io_threads == 1 || w == Work::W1 || w == Work::W4;
}

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

Sample median_of(const std::vector<Sample>& ss) {
  auto pick = [&](double Sample::*f) {
    std::vector<double> v;
    for (auto& s : ss) v.push_back(s.*f);
    return median(v);
  };
  Sample m;
  m.rate = pick(&Sample::rate);
  m.mbps = pick(&Sample::mbps);
  m.mean = pick(&Sample::mean);
  m.p50 = pick(&Sample::p50);
  m.p99 = pick(&Sample::p99);
  m.heap = pick(&Sample::heap);
  m.rss = pick(&Sample::rss);
  m.cpu = pick(&Sample::cpu);
  return m;
}

std::string key_of(const Cell& c, const RowDef& r) { return std::string(work_name(c.work)) + "|" + c.variant + "|" + r.label; }

std::string fmt_rate(double v) {
  char b[32];
  if (std::isnan(v)) return "-";
  if (v >= 1e6)
    std::snprintf(b, sizeof b, "%.3f M", v / 1e6);
  else if (v >= 1e3)
    std::snprintf(b, sizeof b, "%.1f k", v / 1e3);
  else
    std::snprintf(b, sizeof b, "%.0f", v);
  return b;
}

std::string fmt(double v, const char* f) {
  if (std::isnan(v) || std::isinf(v)) return "-";
  char b[32];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

struct Results {
  std::map<std::string, std::vector<Sample>> samples;
  bool has(const Cell& c, const RowDef& r) const { return samples.count(key_of(c, r)) != 0; }
  Sample med(const Cell& c, const RowDef& r) const { return median_of(samples.at(key_of(c, r))); }
};

/// The figure a ratio compares: rate (W1, W3, W4), p50 (W2), heap (W5).
double figure(Work w, const Sample& s) {
  if (w == Work::W2) return s.p50;
  if (w == Work::W5) return s.heap;
  return s.rate;
}
bool higher_is_better(Work w) { return w != Work::W2 && w != Work::W5; }

void print_tables(const std::vector<Cell>& cells, const std::vector<RowDef>& rows, const Results& res, int runs) {
  std::printf("\nMedians of %d run%s. Ratios: this row's figure / raw's, and (xxnet rows) / the best of ZeroMQ, nng,\n"
              "libevent. Rate workloads: higher is better; latency and heap: lower is better. CPU = user+sys of both\n"
              "processes (server + client) for the whole cell / messages (W2: round trips, W5: connections).\n"
              "nng cells of W1 (64 B, 1 KiB), W3 and W4 send 1/8 of the messages (nng is slow here; rates compare).\n",
              runs, runs == 1 ? "" : "s");
  Work last = Work::W5;
  bool first = true;
  for (const Cell& c : cells) {
    if (first || c.work != last) {
      first = false;
      last = c.work;
      switch (c.work) {
        case Work::W1:
          std::printf("\nW1 one-way throughput, one connection (MB/s = 10^6 payload bytes/s)\n");
          std::printf("%-8s %-10s %12s %10s %11s %8s %10s\n", "size", "system", "msg/s", "MB/s", "CPU us/msg", "x raw",
                      "x best peer");
          break;
        case Work::W2:
          std::printf("\nW2 request/response round trip, 64 B, one outstanding (microseconds)\n");
          std::printf("%-8s %-10s %9s %9s %9s %11s %8s %10s\n", "mode", "system", "mean", "p50", "p99", "CPU us/rt",
                      "x raw p50", "x best peer");
          break;
        case Work::W3:
          std::printf("\nW3 pipelined requests, 64 B, 64 in flight, echo server\n");
          std::printf("%-12s %-10s %12s %11s %8s %10s\n", "", "system", "requests/s", "CPU us/req", "x raw",
                      "x best peer");
          break;
        case Work::W4:
          std::printf("\nW4 fan-in: 100 connections sending 1 KiB messages to one server (total at the server)\n");
          std::printf("%-10s %-10s %12s %10s %11s %8s %10s\n", "", "system", "msg/s", "MB/s", "CPU us/msg", "x raw",
                      "x best peer");
          break;
        case Work::W5:
          std::printf("\nW5 idle connections: server-side growth per connection (bytes)\n");
          std::printf("%-12s %-10s %12s %12s %12s %10s %10s\n", "", "system", "heap/conn", "RSS/conn", "CPU us/conn",
                      "x raw heap", "x best peer");
          break;
      }
    }
    // Reference figures for the ratios.
    double raw = NAN, best = NAN;
    for (const RowDef& r : rows) {
      if (!res.has(c, r)) continue;
      const double f = figure(c.work, res.med(c, r));
      if (r.system == "raw") raw = f;
      if (r.peer && (std::isnan(best) || (higher_is_better(c.work) ? f > best : f < best))) best = f;
    }
    for (const RowDef& r : rows) {
      if (!res.has(c, r)) continue;
      const Sample m = res.med(c, r);
      const double f = figure(c.work, m);
      const std::string xr = fmt(f / raw, "%.2f");
      const std::string xb = r.system == "xxnet" ? fmt(f / best, "%.2f") : "";
      switch (c.work) {
        case Work::W1:
          std::printf("%-8s %-10s %12s %10s %11s %8s %10s\n", c.variant.c_str(), r.label.c_str(), fmt_rate(m.rate).c_str(),
                      fmt(m.mbps, "%.1f").c_str(), fmt(m.cpu, "%.3f").c_str(), xr.c_str(), xb.c_str());
          break;
        case Work::W2:
          std::printf("%-8s %-10s %9s %9s %9s %11s %8s %10s\n", c.variant.c_str(), r.label.c_str(),
                      fmt(m.mean, "%.1f").c_str(), fmt(m.p50, "%.1f").c_str(), fmt(m.p99, "%.1f").c_str(),
                      fmt(m.cpu, "%.2f").c_str(), xr.c_str(), xb.c_str());
          break;
        case Work::W3:
          std::printf("%-12s %-10s %12s %11s %8s %10s\n", c.variant.c_str(), r.label.c_str(), fmt_rate(m.rate).c_str(),
                      fmt(m.cpu, "%.3f").c_str(), xr.c_str(), xb.c_str());
          break;
        case Work::W4:
          std::printf("%-10s %-10s %12s %10s %11s %8s %10s\n", c.variant.c_str(), r.label.c_str(), fmt_rate(m.rate).c_str(),
                      fmt(m.mbps, "%.1f").c_str(), fmt(m.cpu, "%.3f").c_str(), xr.c_str(), xb.c_str());
          break;
        case Work::W5:
          std::printf("%-12s %-10s %12s %12s %12s %10s %10s\n", c.variant.c_str(), r.label.c_str(), fmt(m.heap, "%.0f").c_str(),
                      fmt(m.rss, "%.0f").c_str(), fmt(m.cpu, "%.1f").c_str(), xr.c_str(), xb.c_str());
          break;
      }
    }
  }
}

void print_summary(const std::vector<Cell>& cells, const std::vector<RowDef>& rows, const Results& res) {
  std::printf("\nTargets (medians)\n");
  auto find_row = [&](const std::string& label) -> const RowDef* {
    for (const RowDef& r : rows)
      if (r.label == label) return &r;
    return nullptr;
  };
  // One line per target: what, the verdict, the figures behind it.
  auto line = [](const std::string& what, bool known, bool ok, const std::string& detail) {
    std::printf("  %-34s %-8s %s\n", what.c_str(), !known ? "n/a" : ok ? "met" : "not met",
                known ? detail.c_str() : "(the reference was not measured)");
  };
  char d[256];
  const RowDef* raw = find_row("raw");
  for (const Cell& c : cells) {
    if (c.work != Work::W1) continue;
    for (const char* label : {"xxnet", "xxnet io2"}) {
      const RowDef* x = find_row(label);
      if (x == nullptr || !res.has(c, *x)) continue;
      const double xr = res.med(c, *x).rate;
      double best = NAN;
      std::string best_name;
      for (const RowDef& r : rows)
        if (r.peer && res.has(c, r) && (std::isnan(best) || res.med(c, r).rate > best)) {
          best = res.med(c, r).rate;
          best_name = r.label;
        }
      std::snprintf(d, sizeof d, "%s msg/s vs %s %s msg/s (%.2fx)", fmt_rate(xr).c_str(), best_name.c_str(),
                    fmt_rate(best).c_str(), xr / best);
      line("W1 " + c.variant + " " + label + " >= best peer", !std::isnan(best), xr >= best, d);
    }
  }
  const RowDef* x = find_row("xxnet");
  for (const Cell& c : cells) {
    if (x == nullptr || !res.has(c, *x)) continue;
    const bool have_raw = raw != nullptr && res.has(c, *raw);
    const Sample xm = res.med(c, *x);
    const Sample rm = have_raw ? res.med(c, *raw) : Sample{};
    if (c.work == Work::W1 && c.spec.size == 65536) {
      std::snprintf(d, sizeof d, "%.1f MB/s vs raw %.1f MB/s (%.2fx)", xm.mbps, rm.mbps, xm.mbps / rm.mbps);
      line("W1 64 KiB xxnet >= " + fmt(kTargetW1BigVsRaw, "%.1f") + "x raw", have_raw,
           xm.mbps >= kTargetW1BigVsRaw * rm.mbps, d);
    }
    if (c.work == Work::W3) {
      std::snprintf(d, sizeof d, "%s req/s vs raw %s req/s (%.2fx)", fmt_rate(xm.rate).c_str(),
                    fmt_rate(rm.rate).c_str(), xm.rate / rm.rate);
      line("W3 xxnet >= " + fmt(kTargetW3VsRaw, "%.1f") + "x raw", have_raw, xm.rate >= kTargetW3VsRaw * rm.rate, d);
    }
    if (c.work == Work::W2 && c.spec.pinned) {
      std::snprintf(d, sizeof d, "p50 %.1f us vs raw %.1f us (%.2fx)", xm.p50, rm.p50, xm.p50 / rm.p50);
      line("W2 pinned p50 xxnet <= " + fmt(kTargetW2PinnedP50, "%.1f") + "x raw", have_raw,
           xm.p50 <= kTargetW2PinnedP50 * rm.p50, d);
    }
    if (c.work == Work::W5) {
      std::snprintf(d, sizeof d, "%.0f B/conn (%d connections)", xm.heap, c.spec.conns);
      line("W5 xxnet heap/conn <= 4 KiB", true, xm.heap <= kTargetW5HeapPerConn, d);
    }
  }
}

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--runs N] [--quick] [--only W1,W2,...] [--systems xxnet,zmq,nng,libevent,raw]\n"
               "          [--timeout SECONDS] [--w5-conns N]\n",
               argv0);
  return 2;
}

std::set<std::string> split(const std::string& s) {
  std::set<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.insert(item);
  return out;
}

void raise_nofile(int need) {
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) die_errno("getrlimit");
  const rlim_t want = static_cast<rlim_t>(std::max(need, 65536));
  if (rl.rlim_cur >= want) return;
  struct rlimit nl = rl;
  nl.rlim_cur = want;
  if (nl.rlim_max < want) nl.rlim_max = want;  // needs root (CAP_SYS_RESOURCE)
  if (::setrlimit(RLIMIT_NOFILE, &nl) != 0) {
    nl.rlim_cur = rl.rlim_max;
    nl.rlim_max = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &nl);
  }
  ::getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < static_cast<rlim_t>(need))
    die("RLIMIT_NOFILE is %lu; W5 needs at least %d open files (run as root or raise ulimit -n)",
        static_cast<unsigned long>(rl.rlim_cur), need);
}

}  // namespace
}  // namespace pb

int main(int argc, char** argv) {
  using namespace pb;
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) std::exit(usage(argv[0]));
      return argv[++i];
    };
    if (a == "--runs") {
      o.runs = std::atoi(next().c_str());
      if (o.runs < 1 || o.runs > 100) return usage(argv[0]);
    } else if (a == "--quick") {
      o.quick = true;
    } else if (a == "--only") {
      o.only = split(next());
      for (auto& w : o.only)
        if (w != "W1" && w != "W2" && w != "W3" && w != "W4" && w != "W5") return usage(argv[0]);
    } else if (a == "--systems") {
      o.systems = split(next());
      for (auto& s : o.systems)
        if (s != "xxnet" && s != "zmq" && s != "nng" && s != "libevent" && s != "raw") return usage(argv[0]);
    } else if (a == "--timeout") {
      o.timeout_s = std::atof(next().c_str());
      if (o.timeout_s < 1) return usage(argv[0]);
    } else if (a == "--w5-conns") {
      o.w5_conns = std::atoi(next().c_str());
      if (o.w5_conns < 1 || o.w5_conns > 100000) return usage(argv[0]);
    } else {
      return usage(argv[0]);
    }
  }
  bool runs_given = false;
  for (int i = 1; i < argc; ++i) runs_given |= std::string(argv[i]) == "--runs";
  if (o.quick && !runs_given) o.runs = 1;

  ::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  ::sigaction(SIGALRM, &sa, nullptr);

  std::vector<Cell> cells = make_cells(o);
  std::vector<RowDef> rows;
  for (const RowDef& r : all_rows())
    if (o.systems.empty() || o.systems.count(r.system) != 0) rows.push_back(r);
  int max_conns = 0;
  for (const Cell& c : cells)
    if (c.work == Work::W5) max_conns = c.spec.conns;
  raise_nofile(max_conns + 4096);

  cpu_set_t mask;
  CPU_ZERO(&mask);
  ::sched_getaffinity(0, sizeof mask, &mask);
  std::printf("xxnet_peers_bench: %s, %d run%s, interleaved\n", o.quick ? "quick" : "full", o.runs,
              o.runs == 1 ? "" : "s");
  std::printf("cores: %ld online (sysconf _SC_NPROCESSORS_ONLN), %d in this process's affinity mask\n",
              ::sysconf(_SC_NPROCESSORS_ONLN), CPU_COUNT(&mask));
  std::printf("versions: xxnet %s; ZeroMQ %s; nng %s; libevent %s\n", xxnet_version().c_str(), zmq_version().c_str(),
              nng_version().c_str(), libevent_version().c_str());
  std::fflush(stdout);

  Results res;
  const int64_t t_start = now_ns();
  for (int run = 1; run <= o.runs; ++run) {
    for (const Cell& c : cells) {
      for (const RowDef& r : rows) {
        if (!row_applies(r, c.work)) continue;
        Spec s = c.spec;
        s.row = r.label;
        s.io_threads = r.io_threads;
        // W4: io_threads is a server setting (each client context has one connection).
        s.io_threads_client = c.work != Work::W4;
        if ((c.work == Work::W1 && s.size <= 1024) || c.work == Work::W3 || c.work == Work::W4)
          s.count = std::max<uint64_t>(s.count / r.count_div, 100);
        const int64_t t0 = now_ns();
        const Sample m = run_cell(r, s);
        res.samples[key_of(c, r)].push_back(m);
        const double took = static_cast<double>(now_ns() - t0) / 1e9;
        switch (c.work) {
          case Work::W1:
          case Work::W4:
            std::fprintf(stderr, "[run %d/%d] %s %-9s %-10s %10s msg/s %9.1f MB/s %8.3f CPU us/msg  (%.1f s)\n", run,
                         o.runs, work_name(c.work), c.variant.c_str(), r.label.c_str(), fmt_rate(m.rate).c_str(),
                         m.mbps, m.cpu, took);
            break;
          case Work::W2:
            std::fprintf(stderr,
                         "[run %d/%d] %s %-9s %-10s mean %.1f p50 %.1f p99 %.1f us %8.3f CPU us/rt  (%.1f s)\n", run,
                         o.runs, work_name(c.work), c.variant.c_str(), r.label.c_str(), m.mean, m.p50, m.p99, m.cpu,
                         took);
            break;
          case Work::W3:
            std::fprintf(stderr, "[run %d/%d] %s %-9s %-10s %10s req/s %8.3f CPU us/req  (%.1f s)\n", run, o.runs,
                         work_name(c.work), c.variant.c_str(), r.label.c_str(), fmt_rate(m.rate).c_str(), m.cpu, took);
            break;
          case Work::W5:
            std::fprintf(stderr, "[run %d/%d] %s %-9s %-10s heap %.0f B/conn RSS %.0f B/conn %.1f CPU us/conn  (%.1f s)\n",
                         run, o.runs, work_name(c.work), c.variant.c_str(), r.label.c_str(), m.heap, m.rss, m.cpu, took);
            break;
        }
      }
    }
  }
  print_tables(cells, rows, res, o.runs);
  print_summary(cells, rows, res);
  std::printf("\nall runs verified (counts, order, payloads); total %.1f s\n",
              static_cast<double>(now_ns() - t_start) / 1e9);
  std::fflush(stdout);
  return 0;
}
