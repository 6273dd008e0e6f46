// xxnet_echo_server: an echo server written with the C++ wrapper (xxnet.hpp).
//
//   xxnet_echo_server [PORT] [--ip IP] [--max-lifetime SECONDS]
//
// Listens on IP:PORT (default 127.0.0.1:0, i.e. a free port), prints
// "PORT <n>" on stdout (flushed) once listening, and sends every message back
// on the connection it came from with the same lane and msg_id. Echoes that
// hit back-pressure (Result::would_block()) wait in a per-connection queue
// until the connection is Writable again, so their order is kept. Runs until
// SIGINT/SIGTERM, or for --max-lifetime seconds (0, the default: no limit);
// then prints its counters and exits 0. Exits 2 on a usage or setup error.
#include <xxnet.hpp>

#include <signal.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <string>
#include <unordered_map>

namespace {

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct Echo {  // an echo waiting for its connection to drain
  uint32_t lane, msg_id;
  std::string data;
};

int usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [PORT] [--ip IP] [--max-lifetime SECONDS]\n", argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string ip = "127.0.0.1";
  unsigned long port = 0;
  double max_lifetime_s = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    char* end = nullptr;
    if (a == "--ip" && i + 1 < argc) {
      ip = argv[++i];
    } else if (a == "--max-lifetime" && i + 1 < argc) {
      max_lifetime_s = std::strtod(argv[++i], &end);
      if (*end != '\0' || max_lifetime_s < 0) return usage(argv[0]);
    } else if (!a.empty() && a[0] != '-') {
      port = std::strtoul(a.c_str(), &end, 10);
      if (*end != '\0' || port > 65535) return usage(argv[0]);
    } else {
      return usage(argv[0]);
    }
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);

  try {
    xxnet::Context ctx;
    const uint16_t bound = ctx.listen(ip, static_cast<uint16_t>(port));
    std::printf("PORT %u\n", static_cast<unsigned>(bound));
    std::fflush(stdout);

    std::unordered_map<xxnet::ConnId, std::deque<Echo>> waiting;  // conns under back-pressure
    uint64_t echoed = 0, failed = 0, deferred = 0;

    // Sends what a connection has waiting; stops at the first would_block.
    auto flush = [&](xxnet::ConnId conn) {
      auto it = waiting.find(conn);
      if (it == waiting.end()) return;
      while (!it->second.empty()) {
        const Echo& e = it->second.front();
        xxnet::SendResult r = ctx.send_conn(conn, e.data, {e.lane, e.msg_id});
        if (r.would_block()) return;  // Kind::Writable will call us again
        if (r.ok())
          ++echoed;
        else
          ++failed;
        it->second.pop_front();
      }
      waiting.erase(it);
    };

    // Every message, whatever its msg_id: no route() needed, the default route takes them all.
    ctx.route_default([&](const xxnet::Event& ev) {
      auto it = waiting.find(ev.conn());
      if (it == waiting.end()) {
        xxnet::SendResult r = ctx.send_conn(ev.conn(), ev.data(), {ev.lane(), ev.msg_id()});
        if (r.ok()) {
          ++echoed;
          return;
        }
        if (!r.would_block()) {  // e.g. the connection is already gone
          ++failed;
          std::fprintf(stderr, "echo to conn %" PRIu64 " failed: %s\n", ev.conn(), r.message());
          return;
        }
        it = waiting.emplace(ev.conn(), std::deque<Echo>()).first;
      }
      ++deferred;
      it->second.push_back(Echo{ev.lane(), ev.msg_id(), std::string(ev.data())});  // copy: data() is borrowed
    });
    ctx.on(xxnet::Kind::Writable, [&](const xxnet::Event& ev) { flush(ev.conn()); });
    ctx.on(xxnet::Kind::Connected, [](const xxnet::Event& ev) {
      std::fprintf(stderr, "conn %" PRIu64 " from %s\n", ev.conn(), ev.peer().c_str());
    });
    ctx.on(xxnet::Kind::Disconnected, [&](const xxnet::Event& ev) {
      std::fprintf(stderr, "conn %" PRIu64 " closed: %s\n", ev.conn(), xxnet_strerror(ev.code()));
      waiting.erase(ev.conn());
    });
    ctx.on(xxnet::Kind::Error, [](const xxnet::Event& ev) {
      throw xxnet::Error(ev.code(), "xxnet context failed");
    });

    const auto start = std::chrono::steady_clock::now();
    const auto limit = std::chrono::duration<double>(max_lifetime_s);
    while (!g_stop && (max_lifetime_s == 0 || std::chrono::steady_clock::now() - start < limit))
      ctx.dispatch(1024, 100);

    const xxnet::Stats s = ctx.stats();
    std::fprintf(stderr,
                 "echo server: %" PRIu64 " echoed (%" PRIu64 " after back-pressure), %" PRIu64 " failed; %" PRIu64 " connections accepted, %" PRIu64
                 " messages in, %" PRIu64 " out\n",
                 echoed, deferred, failed, s.accepted_connections, s.msgs_in, s.msgs_out);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo server: %s\n", e.what());
    return 2;
  }
}
