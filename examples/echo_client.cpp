// xxnet_echo_client: sends messages to an echo server and checks the echoes,
// written with the C++ wrapper (xxnet.hpp).
//
//   xxnet_echo_client IP:PORT [--count N] [--size BYTES] [--timeout SECONDS]
//
// Sends N messages (default 1000) of BYTES bytes (default 256; never less
// than a short header) to IP:PORT, alternating lanes 0 and 1, message i with
// msg_id i. Waits for every echo, checks its payload, and that each lane's
// echoes come back in order. A send that meets back-pressure (would_block)
// is retried after Kind::Writable.
// Prints a summary; exits 0 when all N came back intact within the timeout
// (default 10 s, enforced by an xxnet timer), 1 otherwise, 2 on a usage error.
#include <xxnet.hpp>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

namespace {

// The payload of message i: recognisable text, then filler up to `size` bytes.
std::string payload(uint32_t i, size_t size) {
  std::string s = "echo #" + std::to_string(i) + " ";
  const size_t head = s.size();
  if (size > head) s.resize(size);
  for (size_t k = head; k < s.size(); ++k) s[k] = static_cast<char>('a' + (i + k) % 26);
  return s;
}

int usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s IP:PORT [--count N] [--size BYTES] [--timeout SECONDS]\n", argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage(argv[0]);
  const std::string target = argv[1];
  const size_t colon = target.rfind(':');
  if (colon == std::string::npos || colon == 0) return usage(argv[0]);
  std::string ip = target.substr(0, colon);
  if (ip.size() > 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);  // [IPv6]:PORT
  char* end = nullptr;
  const unsigned long port = std::strtoul(target.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || port == 0 || port > 65535) return usage(argv[0]);
  unsigned long count = 1000, size = 256;
  double timeout_s = 10;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return usage(argv[0]);
    const char* v = argv[++i];
    if (a == "--count") count = std::strtoul(v, &end, 10);
    else if (a == "--size") size = std::strtoul(v, &end, 10);
    else if (a == "--timeout") timeout_s = std::strtod(v, &end);
    else return usage(argv[0]);
    if (*end != '\0' || count > 10000000 || size > (16u << 20) || timeout_s <= 0 || timeout_s > 3600)
      return usage(argv[0]);
  }

  try {
    xxnet::Context ctx;
    uint64_t echoed = 0, bad = 0, out_of_order = 0, bytes = 0, blocked = 0;
    uint32_t next_expected[2] = {0, 1};  // per lane: the msg_id expected next (lane = msg_id % 2)
    bool writable = true, timed_out = false, failed = false;

    ctx.route_default([&](const xxnet::Event& ev) {
      const uint32_t i = ev.msg_id();
      if (i >= count || ev.lane() != i % 2 || ev.data() != payload(i, size)) {
        ++bad;
        return;
      }
      if (i != next_expected[ev.lane()]) ++out_of_order;
      next_expected[ev.lane()] = i + 2;
      ++echoed;
      bytes += ev.size();
    });
    ctx.on(xxnet::Kind::Writable, [&](const xxnet::Event&) { writable = true; });
    auto fail = [&](const xxnet::Event& ev) {
      std::fprintf(stderr, "%s %s: %s\n", xxnet::to_string(ev.kind()), ev.peer().c_str(), xxnet_strerror(ev.code()));
      failed = true;
    };
    ctx.on(xxnet::Kind::ConnectFailed, fail);
    ctx.on(xxnet::Kind::SendFailed, fail);
    ctx.on(xxnet::Kind::Disconnected, fail);
    ctx.on(xxnet::Kind::Error, fail);
    // The time limit is an xxnet timer: it fires from dispatch() like any event.
    ctx.timer(static_cast<uint32_t>(timeout_s * 1000), [&] { timed_out = true; });

    const auto start = std::chrono::steady_clock::now();
    uint32_t sent = 0;
    while (!timed_out && !failed && echoed + bad < count) {
      // Send while the connection takes more; then let dispatch() run handlers.
      while (sent < count && writable) {
        xxnet::SendResult r = ctx.send(ip, static_cast<uint16_t>(port), payload(sent, size), {sent % 2, sent});
        if (r.would_block()) {
          writable = false;  // Kind::Writable sets it again
          ++blocked;
        } else if (!r.ok()) {
          std::fprintf(stderr, "send #%u: %s\n", sent, r.message());
          return 1;
        } else {
          ++sent;
        }
      }
      ctx.dispatch(1024, sent < count && writable ? 0 : 50);
    }
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();

    std::printf("sent %u of %lu, echoed %" PRIu64 " (%" PRIu64 " bytes), bad %" PRIu64 ", out of order %" PRIu64
                ", %.1f ms (%.0f msg/s), waited for Writable %" PRIu64 " times%s\n",
                sent, count, echoed, bytes, bad, out_of_order, ms, ms > 0 ? 1000.0 * static_cast<double>(echoed) / ms : 0.0,
                blocked, timed_out ? ", TIMED OUT" : "");
    return echoed == count && bad == 0 && out_of_order == 0 && !failed ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo client: %s\n", e.what());
    return 1;
  }
}
