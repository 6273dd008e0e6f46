// Tests that widen race windows inside the library by injecting delays.
//
// This file is its own test executable (xxnet_fault_tests) because it
// interposes libc's syscall(): the Rust standard library wakes parked threads
// with syscall(SYS_futex, ..., FUTEX_WAKE, ...), and a definition of
// `syscall` in the executable takes precedence over libc's for libxxnet.so
// too. When a test arms the injection, every futex wake issued by the
// reactor thread ("xxnet-reactor") is followed by a short sleep, so whatever
// the reactor does right after waking the host happens late. Correct code is
// unaffected (only slower); code that publishes state after waking the host
// is caught deterministically instead of once in a few hundred runs.
#include "test_util.hpp"

#include <dlfcn.h>
#include <linux/futex.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <atomic>
#include <cstdarg>

namespace {

std::atomic<int> g_wake_delay_us{0};
std::atomic<int> g_delayed_wakes{0};

bool on_reactor_thread() {
  char name[16] = {0};
  if (prctl(PR_GET_NAME, name, 0, 0, 0) != 0) return false;
  return std::strncmp(name, "xxnet-reactor", sizeof name) == 0;
}

using syscall_fn = long (*)(long, ...);

syscall_fn real_syscall() {
  static syscall_fn real = reinterpret_cast<syscall_fn>(dlsym(RTLD_NEXT, "syscall"));
  return real;
}

}  // namespace

extern "C" long syscall(long number, ...) noexcept {
  // Up to six register arguments, as the kernel takes them (x86-64/aarch64 ABI).
  va_list ap;
  va_start(ap, number);
  long a[6];
  for (long& v : a) v = va_arg(ap, long);
  va_end(ap);
  const long r = real_syscall()(number, a[0], a[1], a[2], a[3], a[4], a[5]);
  const int delay = g_wake_delay_us.load(std::memory_order_relaxed);
  if (delay > 0 && number == SYS_futex && (a[1] & FUTEX_CMD_MASK) == FUTEX_WAKE && on_reactor_thread()) {
    g_delayed_wakes.fetch_add(1);
    usleep(static_cast<useconds_t>(delay));
  }
  return r;
}

using namespace xt;

namespace {

struct ArmWakeDelay {
  explicit ArmWakeDelay(int us) {
    g_delayed_wakes.store(0);
    g_wake_delay_us.store(us);
  }
  ~ArmWakeDelay() { g_wake_delay_us.store(0); }
  static int delayed() { return g_delayed_wakes.load(); }
};

}  // namespace

// Stats must already count what an event the host holds reports. The reactor
// is slowed right after it wakes the polling host; if it hands the event
// batch over before it publishes the counters, the host reads stale stats.
TEST(FaultInjection, StatsAreCurrentWhenTheEventIsPolled) {
  // A listener that never accepts: each attempt fails after connect_timeout_ms,
  // by which time the host is parked in xxnet_poll_recv and must be woken.
  uint16_t port = 0;
  int fd = plain_listener("127.0.0.1", &port);
  ASSERT_GE(fd, 0);
  xxnet_config cfg = no_retry_config();  // report at the first failure
  cfg.connect_timeout_ms = 50;
  Ctx a(cfg);
  ASSERT_TRUE(a) << xxnet_last_error();
  ArmWakeDelay arm(20000);  // 20 ms after each futex wake by the reactor
  uint64_t reported = 0, connect_failed = 0;
  for (int round = 0; round < 5; ++round) {
    ASSERT_EQ(a.send("127.0.0.1", port, "x"), XXNET_OK);
    uint64_t got = 0;
    const auto deadline = Clock::now() + kWait;
    for (int i = 0; i < 1000 && got == 0 && Clock::now() < deadline; ++i) {
      xxnet_event evs[8];
      const size_t n = xxnet_poll_recv(a.get(), evs, 8, 1000);
      for (size_t k = 0; k < n; ++k) {
        if (evs[k].kind == XXNET_EVENT_SEND_FAILED) got += evs[k].count;
        if (evs[k].kind == XXNET_EVENT_CONNECT_FAILED) ++connect_failed;
      }
    }
    ASSERT_EQ(got, 1u) << "round " << round << ": no SEND_FAILED within 5 s";
    reported += got;
    const xxnet_stats_t s = a.stats();
    EXPECT_EQ(s.send_failed_msgs, reported)
        << "round " << round << ": the SEND_FAILED event reached the host before the counters were published";
    EXPECT_EQ(s.queued_msgs, 0u) << "round " << round << ": a message already reported failed still counts as queued";
    EXPECT_EQ(s.connect_failures, connect_failed) << "round " << round;
    if (HasFailure()) break;
  }
  ::close(fd);
  EXPECT_GT(ArmWakeDelay::delayed(), 0) << "the injection never fired: this test proved nothing";
}

// The same for messages: once the host holds a MESSAGE, msgs_in counts it.
TEST(FaultInjection, MsgsInIsCurrentWhenTheMessageIsPolled) {
  Ctx a, b;
  ASSERT_TRUE(a && b) << xxnet_last_error();
  const uint16_t pb = b.listen();
  ASSERT_NE(pb, 0);
  ASSERT_EQ(a.send("127.0.0.1", pb, "warm-up"), XXNET_OK);
  ASSERT_TRUE(poll_until({&a, &b}, [&] { return b.count(XXNET_EVENT_MESSAGE) == 1; })) << b.dump();
  ArmWakeDelay arm(20000);
  for (uint64_t round = 2; round < 7; ++round) {
    // Send from another thread a little later, so B's host is parked in its poll when the message comes.
    std::thread sender([&] {
      std::this_thread::sleep_for(30ms);
      EXPECT_EQ(a.send("127.0.0.1", pb, "m"), XXNET_OK);
    });
    const bool got = poll_until(b, [&] { return b.count(XXNET_EVENT_MESSAGE) == round; });
    sender.join();
    ASSERT_TRUE(got) << b.dump();
    const xxnet_stats_t s = b.stats();
    EXPECT_EQ(s.msgs_in, round) << "the MESSAGE reached the host before msgs_in was published";
    if (HasFailure()) break;
  }
  EXPECT_GT(ArmWakeDelay::delayed(), 0) << "the injection never fired: this test proved nothing";
}
