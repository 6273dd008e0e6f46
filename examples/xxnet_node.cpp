// xxnet_node: a small xxnet peer in its own process.
//
//   xxnet_node --listen 127.0.0.1:0 --echo [--max-lifetime 60] [--verbose] [--ignore-stdin]
//
// Listens, prints "PORT <n>" on stdout (flushed) once listening, and with
// --echo sends every message back on the connection it came from, with the
// same lane and msg_id. Exits 0 on stdin EOF (unless --ignore-stdin), on
// SIGINT/SIGTERM, or after --max-lifetime seconds (default 60). Exits 1 if an
// echo could not be queued, 2 on a usage or setup error. The two-process
// test in cpp-tests/ drives it.
#include <xxnet.h>

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

volatile sig_atomic_t g_stop = 0;

void on_signal(int) { g_stop = 1; }

// Watchdog: armed for max-lifetime + 10 s, in case a library call never returns.
void on_alarm(int) {
  const char msg[] = "xxnet_node: watchdog: still running 10 s past max lifetime\n";
  ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)ignored;
  _exit(3);
}

const char* kind_name(uint32_t kind) {
  switch (kind) {
    case XXNET_EVENT_MESSAGE: return "MESSAGE";
    case XXNET_EVENT_CONNECTED: return "CONNECTED";
    case XXNET_EVENT_DISCONNECTED: return "DISCONNECTED";
    case XXNET_EVENT_SEND_FAILED: return "SEND_FAILED";
    case XXNET_EVENT_CONNECT_FAILED: return "CONNECT_FAILED";
    case XXNET_EVENT_ERROR: return "ERROR";
    default: return "NONE";
  }
}

// Splits "IP:PORT" or "[IPv6]:PORT" (a bare IPv6 also works: the last colon separates the port).
bool parse_endpoint(const std::string& text, std::string& ip, uint16_t& port) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 >= text.size()) return false;
  ip = text.substr(0, colon);
  if (ip.size() >= 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  char* end = nullptr;
  unsigned long p = std::strtoul(text.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || p > 65535) return false;
  port = static_cast<uint16_t>(p);
  return !ip.empty();
}

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s --listen IP:PORT [--echo] [--max-lifetime SECONDS] [--verbose] [--ignore-stdin]\n",
               argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen_at = "127.0.0.1:0";
  bool echo = false, verbose = false, watch_stdin = true;
  double max_lifetime_s = 60.0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--listen" && i + 1 < argc) {
      listen_at = argv[++i];
    } else if (a == "--echo") {
      echo = true;
    } else if (a == "--verbose") {
      verbose = true;
    } else if (a == "--ignore-stdin") {
      watch_stdin = false;
    } else if (a == "--max-lifetime" && i + 1 < argc) {
      max_lifetime_s = std::atof(argv[++i]);
      if (max_lifetime_s <= 0) return usage(argv[0]);
    } else {
      return usage(argv[0]);
    }
  }
  std::string ip;
  uint16_t port = 0;
  if (!parse_endpoint(listen_at, ip, port)) return usage(argv[0]);

  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGALRM, on_alarm);
  alarm(static_cast<unsigned>(max_lifetime_s) + 10);

  xxnet_ctx* ctx = xxnet_new(nullptr);
  if (!ctx) {
    std::fprintf(stderr, "xxnet_node: xxnet_new failed: %s\n", xxnet_last_error());
    return 2;
  }
  uint16_t bound = 0;
  int rc = xxnet_listen(ctx, ip.c_str(), port, &bound);
  if (rc != XXNET_OK) {
    std::fprintf(stderr, "xxnet_node: listen on %s failed: %s (%d)\n", listen_at.c_str(), xxnet_strerror(rc), rc);
    xxnet_free(ctx);
    return 2;
  }
  std::printf("PORT %u\n", static_cast<unsigned>(bound));
  std::fflush(stdout);

  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(max_lifetime_s * 1000.0));
  uint64_t messages = 0, echo_failures = 0;
  const char* why = "max lifetime reached";
  xxnet_event evs[256];
  while (true) {
    if (g_stop) {
      why = "signal";
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    if (watch_stdin) {
      struct pollfd pfd = {STDIN_FILENO, POLLIN, 0};
      if (poll(&pfd, 1, 0) > 0) {
        char buf[256];
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
          why = "stdin closed";
          break;
        }
      }
    }
    size_t n = xxnet_poll_recv(ctx, evs, sizeof evs / sizeof evs[0], 20);
    for (size_t i = 0; i < n; ++i) {
      const xxnet_event& ev = evs[i];
      if (verbose && ev.kind != XXNET_EVENT_MESSAGE) {
        std::fprintf(stderr, "xxnet_node: %s conn=%" PRIu64 " peer=%s:%u code=%d (%s)\n", kind_name(ev.kind), ev.conn,
                     ev.peer_ip, static_cast<unsigned>(ev.peer_port), ev.code, xxnet_strerror(ev.code));
      }
      if (ev.kind != XXNET_EVENT_MESSAGE) continue;
      ++messages;
      if (!echo) continue;
      xxnet_send_opts opts;
      std::memset(&opts, 0, sizeof opts);
      opts.lane = ev.lane;
      opts.msg_id = ev.msg_id;
      int src = xxnet_send_conn_ex(ctx, ev.conn, ev.data, ev.len, &opts);
      if (src != XXNET_OK) {
        ++echo_failures;
        std::fprintf(stderr, "xxnet_node: echo of msg_id %u failed: %s (%d)\n", ev.msg_id, xxnet_strerror(src), src);
      }
    }
  }
  xxnet_stats_t st;
  std::memset(&st, 0, sizeof st);
  xxnet_stats(ctx, &st);
  if (verbose) {
    std::fprintf(stderr,
                 "xxnet_node: exiting (%s): %" PRIu64 " messages, msgs_in=%" PRIu64 " msgs_out=%" PRIu64
                 " protocol_errors=%" PRIu64 "\n",
                 why, messages, st.msgs_in, st.msgs_out, st.protocol_errors);
  }
  xxnet_free(ctx);
  return echo_failures == 0 ? 0 : 1;
}
