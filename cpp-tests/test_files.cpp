// Downloads between named nodes (issue 6), two or three contexts in one
// process over loopback, first through the C API (FilesC.*), then through
// the C++ wrapper (FilesWrapper.*): a served temp directory with generated
// files (md5 computed by coreutils' md5sum), downloads into a temp cache
// directory, DONE at once from the cache, two tasks joining one transfer,
// cancel (exactly one FAILED CANCELLED, nothing after it), every failure
// returned at once (and that no event follows it), failures with a reason
// (NO_CONTENT, SIZE_MISMATCH), shutdown, and the wrapper's exactly-once
// on_done including destruction with downloads pending.
// Self-contained (no test_util.hpp), so it builds with the wrapper's stricter
// warnings. Every wait is bounded (at most 10 s); traffic stays on
// 127.0.0.1; temp directories are unique per test and removed after it.
#include <xxnet.h>
#include <xxnet.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using ms = std::chrono::milliseconds;

constexpr ms kWait = 10000ms;  // a download on loopback takes well under a second
constexpr int kMaxRounds = 1000000;
constexpr const char* kLo = "127.0.0.1";
constexpr uint32_t kBlock = 256 << 10;  // download_block_size of the tests: several blocks per file
constexpr const char* kAbsentMd5 = "0123456789abcdef0123456789abcdef";

std::string addr(uint16_t port) { return std::string(kLo) + ":" + std::to_string(port); }

uint64_t blocks_of(uint64_t size) { return (size + kBlock - 1) / kBlock; }

/// Deterministic bytes.
std::string pattern(size_t len, uint32_t seed) {
  std::string s(len, '\0');
  uint32_t x = seed * 2654435761u + 12345u;
  for (size_t i = 0; i < len; ++i) {
    x = x * 1103515245u + 12345u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// The md5 of a file as lowercase hex, computed by coreutils' md5sum ("" on failure).
std::string md5sum(const std::string& path) {
  const std::string cmd = "md5sum '" + path + "'";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return "";
  char buf[64];
  std::memset(buf, 0, sizeof buf);
  const size_t n = std::fread(buf, 1, 32, p);
  pclose(p);
  return n == 32 ? std::string(buf, 32) : "";
}

/// A directory under /tmp unique to this test, removed with its contents at the end.
class TempDir {
 public:
  explicit TempDir(const char* tag) {
    std::string tmpl = std::string("/tmp/xxnet-files-") + tag + "-XXXXXX";
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
    EXPECT_FALSE(path_.empty()) << "mkdtemp: " << std::strerror(errno);
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  bool ok() const { return !path_.empty(); }

 private:
  std::string path_;
};

/// A generated file in a served directory: its bytes, md5 and size.
struct Content {
  std::string name, bytes, md5;
  uint64_t size = 0;
};

/// Writes `len` pattern bytes to dir/name (subdirectories created) and hashes it with md5sum.
Content make_file(const std::string& dir, const std::string& name, size_t len, uint32_t seed) {
  Content c;
  c.name = name;
  c.bytes = pattern(len, seed);
  c.size = len;
  const fs::path p = fs::path(dir) / name;
  std::error_code ec;
  fs::create_directories(p.parent_path(), ec);
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(c.bytes.data(), static_cast<std::streamsize>(len));
  c.md5 = md5sum(p.string());
  EXPECT_EQ(c.md5.size(), 32u) << "md5sum " << p;
  return c;
}

/// A free loopback port nothing listens on (bound, then closed).
uint16_t dead_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a;
  std::memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  uint16_t port = 9;  // discard: nothing listens there either, as a fallback
  if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

bool is_download(uint32_t kind) {
  return kind == XXNET_EVENT_DOWNLOAD_PROGRESS || kind == XXNET_EVENT_DOWNLOAD_DONE ||
         kind == XXNET_EVENT_DOWNLOAD_FAILED;
}

// ===========================================================================
// The C API
// ===========================================================================

/// An owned copy of an xxnet_event (payload and names are borrowed until the next poll).
struct Ev {
  uint32_t kind = 0;
  int code = 0;
  uint64_t id = 0, count = 0, total = 0;
  std::string node, data;
  bool nul_terminated = false;  // data[len] == '\0' (DONE's path)
  size_t poll_no = 0;           // which poll() returned it
};

/// A named context listening on 127.0.0.1:0, with an optional download cache, and every event it polled.
class Node {
 public:
  Node(const std::string& name, const std::string& cache, const std::function<void(xxnet_config&)>& tweak = nullptr)
      : name(name), cache_(cache) {
    xxnet_config cfg;
    std::memset(&cfg, 0, sizeof cfg);
    xxnet_config_default(&cfg);
    cfg.node_name = this->name.c_str();
    cfg.download_dir = cache_.empty() ? nullptr : cache_.c_str();
    cfg.download_block_size = kBlock;
    if (tweak) tweak(cfg);
    ctx_ = xxnet_new(&cfg);
    EXPECT_NE(ctx_, nullptr) << "xxnet_new(" << name << "): " << xxnet_last_error();
    if (ctx_ != nullptr) {
      int rc = xxnet_listen(ctx_, kLo, 0, &port);
      EXPECT_EQ(rc, XXNET_OK) << xxnet_strerror(rc);
    }
  }
  ~Node() { xxnet_free(ctx_); }
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  xxnet_ctx* get() const { return ctx_; }

  /// Polls once (up to timeout_ms for the first event); copies what came into `log`. Returns how many came.
  size_t poll(int timeout_ms) {
    ++polls_;
    xxnet_event evs[64];
    std::memset(evs, 0, sizeof evs);
    const size_t n = xxnet_poll_recv(ctx_, evs, 64, timeout_ms);
    for (size_t i = 0; i < n; ++i) {
      const xxnet_event& e = evs[i];
      Ev c;
      c.kind = e.kind;
      c.code = e.code;
      c.id = e.id;
      c.count = e.count;
      c.total = e.total;
      c.node = e.node != nullptr ? e.node : "(null)";
      if (e.data != nullptr && e.len > 0) c.data.assign(reinterpret_cast<const char*>(e.data), e.len);
      c.nul_terminated = e.data != nullptr && e.data[e.len] == 0;
      c.poll_no = polls_;
      log.push_back(std::move(c));
    }
    return n;
  }
  size_t polls() const { return polls_; }

  int download(const char* node, const char* md5, const char* name, uint64_t size, uint64_t* task) {
    return xxnet_download(ctx_, node, md5, name, size, task);
  }
  /// A download that must be accepted; returns its task (0 on failure, recorded).
  uint64_t must_download(const char* node, const Content& c) {
    uint64_t t = 0;
    int rc = download(node, c.md5.c_str(), c.name.c_str(), c.size, &t);
    EXPECT_EQ(rc, XXNET_OK) << name << " <- " << node << ":" << c.name << ": " << xxnet_strerror(rc);
    EXPECT_NE(t, 0u) << "a task is never 0";
    return t;
  }
  void serve(const std::string& dir) { EXPECT_EQ(xxnet_files_serve(ctx_, dir.c_str()), XXNET_OK) << dir; }

  xxnet_file_stats stats() const {
    xxnet_file_stats s;
    std::memset(&s, 0, sizeof s);
    EXPECT_EQ(xxnet_files_stats(ctx_, &s), XXNET_OK);
    return s;
  }

  /// The DONE or FAILED of `task`, if it came.
  const Ev* end_of(uint64_t task) const {
    for (const Ev& e : log)
      if (e.id == task && (e.kind == XXNET_EVENT_DOWNLOAD_DONE || e.kind == XXNET_EVENT_DOWNLOAD_FAILED)) return &e;
    return nullptr;
  }
  size_t count(uint32_t kind, uint64_t id) const {
    size_t n = 0;
    for (const Ev& e : log) n += e.kind == kind && e.id == id ? 1u : 0u;
    return n;
  }
  size_t downloads_events() const {
    size_t n = 0;
    for (const Ev& e : log) n += is_download(e.kind) ? 1u : 0u;
    return n;
  }
  std::string dump() const {
    std::string s;
    for (const Ev& e : log)
      s += "\n  kind=" + std::to_string(e.kind) + " code=" + std::to_string(e.code) + " (" + xxnet_strerror(e.code) +
           ") id=" + std::to_string(e.id) + " count=" + std::to_string(e.count) + " total=" + std::to_string(e.total) +
           " node=" + e.node + " data=" + e.data.substr(0, 120);
    return s;
  }

  std::string name;
  uint16_t port = 0;
  std::vector<Ev> log;

 private:
  std::string cache_;  // download_dir: must outlive xxnet_new
  xxnet_ctx* ctx_ = nullptr;
  size_t polls_ = 0;
};

/// Every node knows every node.
void introduce(const std::vector<Node*>& nodes) {
  for (Node* n : nodes)
    for (Node* o : nodes)
      EXPECT_EQ(xxnet_cluster_set(n->get(), o->name.c_str(), addr(o->port).c_str()), XXNET_OK)
          << n->name << " learns " << o->name << ": " << xxnet_last_error();
}

/// Polls the nodes in turn until done() or `timeout`.
bool pump(const std::vector<Node*>& nodes, const std::function<bool()>& done, ms timeout = kWait) {
  const auto deadline = Clock::now() + timeout;
  for (int round = 0; round < kMaxRounds; ++round) {
    if (done()) return true;
    if (Clock::now() >= deadline) break;
    for (Node* n : nodes) n->poll(1);
  }
  return done();
}

void pump_for(const std::vector<Node*>& nodes, ms d) {
  pump(nodes, [] { return false; }, d);
}

/// A file server S (serving its own temp dir) and a downloader C (its own temp cache).
struct Pair {
  explicit Pair(const std::function<void(xxnet_config&)>& tweak_c = nullptr)
      : served("srv"), cache("cache"), s("S", ""), c("C", cache.path(), tweak_c) {
    introduce({&s, &c});
  }
  TempDir served, cache;
  Node s, c;
};

TEST(FilesC, DownloadArrivesWholeUnderTheCacheDir) {
  Pair p;
  ASSERT_TRUE(p.served.ok() && p.cache.ok());
  const Content f = make_file(p.served.path(), "maps/world.bin", 3 * kBlock + 123, 1);
  make_file(p.served.path(), "other.bin", 1000, 2);
  p.s.serve(p.served.path());
  const uint64_t t = p.c.must_download("S", f);
  ASSERT_TRUE(pump({&p.s, &p.c}, [&] { return p.c.end_of(t) != nullptr; })) << p.c.dump();
  const Ev done = *p.c.end_of(t);
  ASSERT_EQ(done.kind, static_cast<uint32_t>(XXNET_EVENT_DOWNLOAD_DONE)) << p.c.dump();
  EXPECT_EQ(done.code, XXNET_OK);
  EXPECT_EQ(done.count, f.size);
  EXPECT_EQ(done.total, f.size);
  EXPECT_EQ(done.node, "S") << "the source node";
  EXPECT_TRUE(done.nul_terminated) << "the path is NUL-terminated";
  const std::string path = done.data;
  const std::string cache = fs::canonical(p.cache.path()).string() + "/";
  EXPECT_EQ(fs::weakly_canonical(path).string().rfind(cache, 0), 0u) << path << " is not under " << cache;
  EXPECT_EQ(path.find(f.name), std::string::npos) << "the host's name is never the local path: " << path;
  EXPECT_EQ(fs::file_size(path), f.size);
  EXPECT_TRUE(read_file(path) == f.bytes) << "the downloaded bytes differ";
  EXPECT_EQ(md5sum(path), f.md5);
  // Progress: about this task, within the size, never going back.
  uint64_t last = 0;
  for (const Ev& e : p.c.log) {
    if (e.kind != XXNET_EVENT_DOWNLOAD_PROGRESS) continue;
    EXPECT_EQ(e.id, t);
    EXPECT_EQ(e.total, f.size);
    EXPECT_EQ(e.node, "S");
    EXPECT_LE(e.count, f.size);
    EXPECT_GE(e.count, last);
    last = e.count;
  }
  const xxnet_file_stats cs = p.c.stats(), ss = p.s.stats();
  EXPECT_EQ(cs.blocks_fetched, blocks_of(f.size));
  EXPECT_EQ(cs.bytes_fetched, f.size);
  EXPECT_EQ(cs.downloads_done, 1u);
  EXPECT_EQ(cs.blocks_refetched, 0u);
  EXPECT_GE(cs.cache_bytes, f.size);
  EXPECT_EQ(ss.blocks_served, cs.blocks_fetched);
  EXPECT_EQ(ss.bytes_served, f.size);
  EXPECT_EQ(ss.served_files, 2u) << "both files of the served directory";
  // Exactly one end; the task is finished: cancel refuses it, release works once.
  pump_for({&p.s, &p.c}, 100ms);
  EXPECT_EQ(p.c.count(XXNET_EVENT_DOWNLOAD_DONE, t) + p.c.count(XXNET_EVENT_DOWNLOAD_FAILED, t), 1u);
  EXPECT_EQ(xxnet_download_cancel(p.c.get(), t), XXNET_E_UNKNOWN_TASK);
  EXPECT_EQ(xxnet_download_release(p.c.get(), t), XXNET_OK);
  EXPECT_EQ(xxnet_download_release(p.c.get(), t), XXNET_E_UNKNOWN_TASK);
  EXPECT_TRUE(fs::exists(path)) << "a released file stays in the cache";
}

TEST(FilesC, CachedContentIsDoneAtOnce) {
  Pair p;
  ASSERT_TRUE(p.served.ok() && p.cache.ok());
  const Content f = make_file(p.served.path(), "a.bin", 2 * kBlock + 7, 3);
  p.s.serve(p.served.path());
  const uint64_t t1 = p.c.must_download("S", f);
  ASSERT_TRUE(pump({&p.s, &p.c}, [&] { return p.c.end_of(t1) != nullptr; })) << p.c.dump();
  ASSERT_EQ(p.c.end_of(t1)->kind, static_cast<uint32_t>(XXNET_EVENT_DOWNLOAD_DONE)) << p.c.dump();
  const std::string path = p.c.end_of(t1)->data;
  const xxnet_file_stats before = p.c.stats();
  const uint64_t served_before = p.s.stats().blocks_served;

  // Asked again, under another name, with only the downloader polling: nothing travels.
  uint64_t t2 = 0;
  ASSERT_EQ(p.c.download("S", f.md5.c_str(), "any/other-name", f.size, &t2), XXNET_OK);
  EXPECT_NE(t2, t1);
  const auto t0 = Clock::now();
  ASSERT_TRUE(pump({&p.c}, [&] { return p.c.end_of(t2) != nullptr; }, 2000ms)) << p.c.dump();
  const double took = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  const Ev again = *p.c.end_of(t2);
  EXPECT_EQ(again.kind, static_cast<uint32_t>(XXNET_EVENT_DOWNLOAD_DONE)) << p.c.dump();
  EXPECT_EQ(again.data, path);
  EXPECT_EQ(again.count, f.size);
  EXPECT_EQ(again.node, "S");
  EXPECT_LT(took, 500.0) << "DONE at once";
  EXPECT_EQ(p.c.count(XXNET_EVENT_DOWNLOAD_PROGRESS, t2), 0u) << p.c.dump();
  EXPECT_EQ(p.c.stats().blocks_fetched, before.blocks_fetched) << "nothing fetched again";
  EXPECT_EQ(p.s.stats().blocks_served, served_before);
  EXPECT_TRUE(read_file(again.data) == f.bytes);
  EXPECT_EQ(xxnet_download_release(p.c.get(), t1), XXNET_OK);
  EXPECT_EQ(xxnet_download_release(p.c.get(), t2), XXNET_OK);
}

TEST(FilesC, TwoTasksOfOneContentJoinOneTransfer) {
  Pair p;
  ASSERT_TRUE(p.served.ok() && p.cache.ok());
  const Content f = make_file(p.served.path(), "big.bin", 6 * kBlock + 1, 4);
  p.s.serve(p.served.path());
  const uint64_t t1 = p.c.must_download("S", f);
  uint64_t t2 = 0;
  ASSERT_EQ(p.c.download("S", f.md5.c_str(), "another/name.bin", f.size, &t2), XXNET_OK);
  EXPECT_NE(t1, t2);
  ASSERT_TRUE(pump({&p.s, &p.c}, [&] { return p.c.end_of(t1) && p.c.end_of(t2); })) << p.c.dump();
  for (uint64_t t : {t1, t2}) {
    const Ev& e = *p.c.end_of(t);
    EXPECT_EQ(e.kind, static_cast<uint32_t>(XXNET_EVENT_DOWNLOAD_DONE)) << p.c.dump();
    EXPECT_EQ(e.count, f.size);
  }
  EXPECT_EQ(p.c.end_of(t1)->data, p.c.end_of(t2)->data) << "one file";
  EXPECT_TRUE(read_file(p.c.end_of(t1)->data) == f.bytes);
  pump_for({&p.s, &p.c}, 100ms);
  const xxnet_file_stats cs = p.c.stats();
  EXPECT_EQ(cs.blocks_fetched, blocks_of(f.size)) << "the bytes travelled once";
  EXPECT_EQ(cs.bytes_fetched, f.size);
  EXPECT_EQ(cs.downloads_done, 1u) << "one per content";
  EXPECT_EQ(p.s.stats().blocks_served, blocks_of(f.size));
  for (uint64_t t : {t1, t2}) {
    EXPECT_EQ(p.c.count(XXNET_EVENT_DOWNLOAD_DONE, t) + p.c.count(XXNET_EVENT_DOWNLOAD_FAILED, t), 1u);
    EXPECT_EQ(xxnet_download_release(p.c.get(), t), XXNET_OK);
  }
}

TEST(FilesC, CancelFailsTheTaskOnceAndTheOtherTaskGoesOn) {
  // 4 MiB/s: the 4 MiB file takes about a second, so the cancel finds it running.
  Pair p([](xxnet_config& c) { c.download_rate_limit = 4u << 20; });
  ASSERT_TRUE(p.served.ok() && p.cache.ok());
  const Content f = make_file(p.served.path(), "slow.bin", 16 * kBlock, 5);
  p.s.serve(p.served.path());
  const uint64_t cancelled = p.c.must_download("S", f);
  const uint64_t kept = p.c.must_download("S", f);
  ASSERT_TRUE(pump({&p.s, &p.c}, [&] {
    for (const Ev& e : p.c.log)
      if (e.kind == XXNET_EVENT_DOWNLOAD_PROGRESS && e.id == cancelled && e.count > 0) return true;
    return false;
  })) << p.c.dump();
  ASSERT_EQ(p.c.end_of(cancelled), nullptr) << "still running" << p.c.dump();
  ASSERT_EQ(xxnet_download_cancel(p.c.get(), cancelled), XXNET_OK);
  EXPECT_EQ(xxnet_download_cancel(p.c.get(), cancelled), XXNET_E_UNKNOWN_TASK) << "cancelled already";
  EXPECT_EQ(xxnet_download_release(p.c.get(), cancelled), XXNET_E_UNKNOWN_TASK) << "it did not end with DONE";
  // Its FAILED comes from the very next poll.
  const size_t next = p.c.polls() + 1;
  p.c.poll(0);
  const Ev* end = p.c.end_of(cancelled);
  ASSERT_NE(end, nullptr) << p.c.dump();
  EXPECT_EQ(end->poll_no, next);
  EXPECT_EQ(end->kind, static_cast<uint32_t>(XXNET_EVENT_DOWNLOAD_FAILED));
  EXPECT_EQ(end->code, XXNET_E_CANCELLED);
  EXPECT_EQ(end->total, f.size);
  EXPECT_EQ(end->node, "S");
  size_t end_index = 0;
  for (size_t i = 0; i < p.c.log.size(); ++i)
    if (&p.c.log[i] == end) end_index = i;
  // The other task of the same content finishes; nothing more about the cancelled one.
  ASSERT_TRUE(pump({&p.s, &p.c}, [&] { return p.c.end_of(kept) != nullptr; })) << p.c.dump();
  EXPECT_EQ(p.c.end_of(kept)->kind, static_cast<uint32_t>(XXNET_EVENT_DOWNLOAD_DONE)) << p.c.dump();
  EXPECT_TRUE(read_file(p.c.end_of(kept)->data) == f.bytes);
  pump_for({&p.s, &p.c}, 300ms);
  for (size_t i = end_index + 1; i < p.c.log.size(); ++i)
    EXPECT_NE(p.c.log[i].id == cancelled && is_download(p.c.log[i].kind), true)
        << "an event for the cancelled task after its FAILED:" << p.c.dump();
  EXPECT_EQ(p.c.count(XXNET_EVENT_DOWNLOAD_FAILED, cancelled), 1u);
  EXPECT_EQ(p.c.count(XXNET_EVENT_DOWNLOAD_DONE, cancelled), 0u);
  EXPECT_EQ(p.c.stats().blocks_fetched, blocks_of(f.size)) << "the transfer went on once";
  EXPECT_EQ(xxnet_download_release(p.c.get(), kept), XXNET_OK);
}

TEST(FilesC, CancelOfTheOnlyTaskStopsTheTransferAndKeepsThePartialFile) {
  Pair p([](xxnet_config& c) { c.download_rate_limit = 2u << 20; });  // 2 MiB: about 1 s
  ASSERT_TRUE(p.served.ok() && p.cache.ok());
  const Content f = make_file(p.served.path(), "partial.bin", 8 * kBlock, 6);
  p.s.serve(p.served.path());
  const uint64_t t = p.c.must_download("S", f);
  ASSERT_TRUE(pump({&p.s, &p.c}, [&] { return p.c.stats().blocks_fetched >= 1; })) << p.c.dump();
  ASSERT_EQ(xxnet_download_cancel(p.c.get(), t), XXNET_OK);
  p.c.poll(0);
  ASSERT_NE(p.c.end_of(t), nullptr);
  EXPECT_EQ(p.c.end_of(t)->code, XXNET_E_CANCELLED);
  pump_for({&p.s, &p.c}, 600ms);
  const uint64_t fetched = p.c.stats().blocks_fetched;
  pump_for({&p.s, &p.c}, 600ms);
  EXPECT_EQ(p.c.stats().blocks_fetched, fetched) << "the transfer stopped";
  EXPECT_LT(fetched, blocks_of(f.size));
  EXPECT_EQ(p.c.count(XXNET_EVENT_DOWNLOAD_FAILED, t), 1u) << p.c.dump();
  EXPECT_EQ(p.c.count(XXNET_EVENT_DOWNLOAD_DONE, t), 0u);
  // Asked again: it resumes; the blocks already there are not fetched again.
  const uint64_t again = p.c.must_download("S", f);
  ASSERT_TRUE(pump({&p.s, &p.c}, [&] { return p.c.end_of(again) != nullptr; })) << p.c.dump();
  EXPECT_EQ(p.c.end_of(again)->kind, static_cast<uint32_t>(XXNET_EVENT_DOWNLOAD_DONE)) << p.c.dump();
  EXPECT_TRUE(read_file(p.c.end_of(again)->data) == f.bytes);
  EXPECT_EQ(p.c.stats().blocks_fetched, blocks_of(f.size)) << "resumed, not restarted";
}

TEST(FilesC, FailuresReturnedAtOnceProduceNoEvent) {
  TempDir cache("cache");
  ASSERT_TRUE(cache.ok());
  Node s("S", ""), c("C", cache.path(), [](xxnet_config& cfg) { cfg.download_quota = 1u << 20; });
  Node nodir("N", "");
  introduce({&s, &c, &nodir});
  const char* md5 = kAbsentMd5;
  const uint64_t kUntouched = 777;
  uint64_t t = kUntouched;
  // md5: 32 hex digits.
  for (const char* bad : {"", "0123", "0123456789abcdef0123456789abcdeg", "0123456789abcdef0123456789abcdef0",
                          " 123456789abcdef0123456789abcdef"})
    EXPECT_EQ(c.download("S", bad, "f.bin", 10, &t), XXNET_E_BAD_PATH) << "md5 '" << bad << "'";
  // File names: relative, no `..`, `.`, `\`, empty components, not too long.
  const std::string long_name(1025, 'n'), long_component = "d/" + std::string(256, 'c');
  for (const std::string& bad : {std::string("../x"), std::string("/etc/passwd"), std::string("a/../../b"),
                                 std::string("./x"), std::string("a\\b"), std::string(""), std::string("a//b"),
                                 std::string("dir/"), long_name, long_component})
    EXPECT_EQ(c.download("S", md5, bad.c_str(), 10, &t), XXNET_E_BAD_PATH) << "name '" << bad.substr(0, 40) << "'";
  EXPECT_EQ(c.download("nobody", md5, "f.bin", 10, &t), XXNET_E_UNKNOWN_NODE);
  EXPECT_EQ(c.download("", md5, "f.bin", 10, &t), XXNET_E_UNKNOWN_NODE);
  EXPECT_EQ(c.download("S", md5, "f.bin", (1u << 20) + 1, &t), XXNET_E_NO_SPACE) << "above download_quota";
  EXPECT_EQ(nodir.download("S", md5, "f.bin", 10, &t), XXNET_E_INVALID_ARG) << "no download_dir";
  EXPECT_EQ(c.download(nullptr, md5, "f.bin", 10, &t), XXNET_E_NULL_POINTER);
  EXPECT_EQ(c.download("S", nullptr, "f.bin", 10, &t), XXNET_E_NULL_POINTER);
  EXPECT_EQ(c.download("S", md5, nullptr, 10, &t), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_download(nullptr, "S", md5, "f.bin", 10, &t), XXNET_E_NULL_POINTER);
  EXPECT_EQ(t, kUntouched) << "no task is written for a refused download";
  // Serving, cancel, release, stats.
  EXPECT_EQ(xxnet_files_serve(s.get(), (cache.path() + "/missing").c_str()), XXNET_E_BAD_PATH);
  const std::string file = cache.path() + "/plain-file";
  std::ofstream(file) << "x";
  EXPECT_EQ(xxnet_files_serve(s.get(), file.c_str()), XXNET_E_BAD_PATH) << "not a directory";
  EXPECT_EQ(xxnet_files_serve(s.get(), nullptr), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_files_serve(nullptr, cache.path().c_str()), XXNET_E_NULL_POINTER);
  for (uint64_t task : {uint64_t{0}, uint64_t{1}, uint64_t{12345}}) {
    EXPECT_EQ(xxnet_download_cancel(c.get(), task), XXNET_E_UNKNOWN_TASK) << task;
    EXPECT_EQ(xxnet_download_release(c.get(), task), XXNET_E_UNKNOWN_TASK) << task;
  }
  EXPECT_EQ(xxnet_download_cancel(nullptr, 1), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_download_release(nullptr, 1), XXNET_E_NULL_POINTER);
  xxnet_file_stats st;
  EXPECT_EQ(xxnet_files_stats(nullptr, &st), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_files_stats(c.get(), nullptr), XXNET_E_NULL_POINTER);
  // No event follows any of them.
  pump_for({&s, &c, &nodir}, 200ms);
  EXPECT_EQ(c.downloads_events(), 0u) << c.dump();
  EXPECT_EQ(nodir.downloads_events(), 0u) << nodir.dump();
  // After a shutdown: SHUTDOWN.
  xxnet_shutdown(c.get());
  EXPECT_EQ(c.download("S", md5, "f.bin", 10, &t), XXNET_E_SHUTDOWN);
  EXPECT_EQ(t, kUntouched);
}

TEST(FilesC, FailuresCarryTheirReason) {
  TempDir served("srv"), cache("cache");
  ASSERT_TRUE(served.ok() && cache.ok());
  Node s("S", ""), bare("Bare", ""), c("C", cache.path());
  introduce({&s, &bare, &c});
  const Content f = make_file(served.path(), "known.bin", kBlock + 5, 7);
  s.serve(served.path());
  // An md5 the server does not have; a node that serves no files at all;
  // a known name asked with another size.
  uint64_t absent = 0, nothing = 0, resized = 0;
  ASSERT_EQ(c.download("S", kAbsentMd5, "unknown.bin", 1000, &absent), XXNET_OK);
  ASSERT_EQ(c.download("Bare", f.md5.c_str(), f.name.c_str(), f.size, &nothing), XXNET_OK);
  ASSERT_EQ(c.download("S", f.md5.c_str(), f.name.c_str(), f.size + 1, &resized), XXNET_OK);
  ASSERT_TRUE(pump({&s, &bare, &c}, [&] { return c.end_of(absent) && c.end_of(nothing) && c.end_of(resized); }))
      << c.dump();
  struct Want {
    uint64_t task;
    int code;
    uint64_t size;
    const char* node;
  };
  for (const Want& w : {Want{absent, XXNET_E_NO_CONTENT, 1000, "S"}, Want{nothing, XXNET_E_NO_CONTENT, f.size, "Bare"},
                        Want{resized, XXNET_E_SIZE_MISMATCH, f.size + 1, "S"}}) {
    const Ev& e = *c.end_of(w.task);
    EXPECT_EQ(e.kind, static_cast<uint32_t>(XXNET_EVENT_DOWNLOAD_FAILED)) << c.dump();
    EXPECT_EQ(e.code, w.code) << "task " << w.task << ": " << xxnet_strerror(e.code);
    EXPECT_EQ(e.count, 0u);
    EXPECT_EQ(e.total, w.size);
    EXPECT_EQ(e.node, w.node);
    EXPECT_TRUE(e.data.empty());
    EXPECT_EQ(xxnet_download_release(c.get(), w.task), XXNET_E_UNKNOWN_TASK) << "a failed task holds nothing";
  }
  pump_for({&s, &bare, &c}, 100ms);
  for (uint64_t t : {absent, nothing, resized})
    EXPECT_EQ(c.count(XXNET_EVENT_DOWNLOAD_DONE, t) + c.count(XXNET_EVENT_DOWNLOAD_FAILED, t), 1u);
  EXPECT_EQ(c.stats().blocks_fetched, 0u);
  EXPECT_EQ(c.stats().downloads_done, 0u);
}

TEST(FilesC, ShutdownFailsRunningDownloadsOnce) {
  TempDir cache("cache");
  ASSERT_TRUE(cache.ok());
  Node c("C", cache.path());
  ASSERT_EQ(xxnet_cluster_set(c.get(), "Z", addr(dead_port()).c_str()), XXNET_OK);  // nothing listens there
  uint64_t t = 0;
  ASSERT_EQ(c.download("Z", kAbsentMd5, "f.bin", 1000, &t), XXNET_OK);
  pump_for({&c}, 50ms);
  ASSERT_EQ(c.end_of(t), nullptr) << c.dump();
  xxnet_shutdown(c.get());
  for (int i = 0; i < 100 && c.end_of(t) == nullptr; ++i) c.poll(100);
  ASSERT_NE(c.end_of(t), nullptr) << c.dump();
  EXPECT_EQ(c.end_of(t)->kind, static_cast<uint32_t>(XXNET_EVENT_DOWNLOAD_FAILED));
  EXPECT_EQ(c.end_of(t)->code, XXNET_E_SHUTDOWN);
  EXPECT_EQ(c.end_of(t)->node, "Z");
  EXPECT_EQ(c.end_of(t)->total, 1000u);
  c.poll(0);
  EXPECT_EQ(c.count(XXNET_EVENT_DOWNLOAD_FAILED, t), 1u);
  EXPECT_EQ(xxnet_download_cancel(c.get(), t), XXNET_E_UNKNOWN_TASK);
}

TEST(FilesC, HeaderDeclaresTheDownloadApi) {
  int (*serve)(xxnet_ctx*, const char*) = xxnet_files_serve;
  int (*download)(xxnet_ctx*, const char*, const char*, const char*, uint64_t, uint64_t*) = xxnet_download;
  int (*cancel)(xxnet_ctx*, uint64_t) = xxnet_download_cancel;
  int (*release)(xxnet_ctx*, uint64_t) = xxnet_download_release;
  int (*stats)(xxnet_ctx*, xxnet_file_stats*) = xxnet_files_stats;
  EXPECT_TRUE(serve && download && cancel && release && stats);
  static_assert(XXNET_EVENT_DOWNLOAD_PROGRESS == 16 && XXNET_EVENT_DOWNLOAD_DONE == 17 &&
                XXNET_EVENT_DOWNLOAD_FAILED == 18);
  static_assert(XXNET_E_NO_CONTENT == -60 && XXNET_E_BAD_PATH == -61 && XXNET_E_NO_SPACE == -62 &&
                XXNET_E_CHECKSUM == -63 && XXNET_E_SIZE_MISMATCH == -64 && XXNET_E_DISK == -65 &&
                XXNET_E_CANCELLED == -66 && XXNET_E_UNKNOWN_TASK == -67);
  for (int code : {XXNET_E_NO_CONTENT, XXNET_E_BAD_PATH, XXNET_E_NO_SPACE, XXNET_E_CHECKSUM, XXNET_E_SIZE_MISMATCH,
                   XXNET_E_DISK, XXNET_E_CANCELLED, XXNET_E_UNKNOWN_TASK})
    EXPECT_STRNE(xxnet_strerror(code), "unknown code") << code;
  xxnet_config c;
  std::memset(&c, 0, sizeof c);
  xxnet_config_default(&c);
  EXPECT_EQ(c.download_dir, nullptr);
  EXPECT_EQ(c.download_quota, 0u);
  EXPECT_EQ(c.download_block_size, 1u << 20);
  EXPECT_GT(c.download_timeout_ms, 0u);
  EXPECT_GT(c.download_window, 0u);
  EXPECT_EQ(c.download_rate_limit, 0u);
  // Bad settings are refused by xxnet_new.
  for (uint32_t block : {uint32_t{1000}, uint32_t{8u << 20}}) {
    xxnet_config bad = c;
    bad.download_block_size = block;
    xxnet_ctx* ctx = xxnet_new(&bad);
    EXPECT_EQ(ctx, nullptr) << "download_block_size " << block;
    xxnet_free(ctx);
  }
}

// ===========================================================================
// The C++ wrapper
// ===========================================================================

using xxnet::Context;
using xxnet::Download;
using xxnet::Event;
using xxnet::Kind;

/// A named wrapper context listening on 127.0.0.1:0.
struct Member {
  explicit Member(const std::string& n, xxnet::Config cfg = xxnet::Config())
      : name(n), ctx(cfg.node_name(n).download_block_size(kBlock)), port(ctx.listen(kLo)) {}
  std::string name;
  Context ctx;
  uint16_t port;
};

void meet(const std::vector<Member*>& members) {
  for (Member* m : members)
    for (Member* o : members) {
      xxnet::DetailedResult r = m->ctx.cluster_set(o->name, addr(o->port));
      EXPECT_TRUE(r.ok()) << r.message() << ": " << r.detail();
    }
}

template <class Pred>
bool dispatch_until(const std::vector<Member*>& members, Pred pred, ms timeout = kWait) {
  const auto deadline = Clock::now() + timeout;
  for (int round = 0; round < kMaxRounds && !pred() && Clock::now() < deadline; ++round)
    for (Member* m : members) m->ctx.dispatch(256, 1);
  return pred();
}

void dispatch_for(const std::vector<Member*>& members, ms d) {
  dispatch_until(members, [] { return false; }, d);
}

/// One download's outcome as its on_done saw it.
struct Outcome {
  int runs = 0;
  int code = 1000;
  uint64_t task = 0, size = 0, done = 0;
  std::string path, node, bytes;
  bool keep = false;  // call Download::keep()
  /// An on_done recording into *this (and reading the file while it is held).
  std::function<void(Download&)> cb() {
    return [this](Download& d) {
      ++runs;
      code = d.code();
      task = d.task();
      size = d.size();
      done = d.bytes_done();
      path = d.path();
      node = d.node();
      if (d.ok()) bytes = read_file(d.path());
      if (keep) d.keep();
    };
  }
};

TEST(FilesWrapper, OnDoneRunsOnceAndTheFileIsReleasedAfterIt) {
  TempDir served("srv"), cache("cache");
  ASSERT_TRUE(served.ok() && cache.ok());
  const Content f = make_file(served.path(), "level/1.pak", 8 * kBlock + 99, 8);
  // 8 MiB/s: about a quarter second, so progress is reported.
  Member a("A", xxnet::Config().download_dir(cache.path()).download_rate_limit(8u << 20)), b("B");
  meet({&a, &b});
  ASSERT_TRUE(b.ctx.files_serve(served.path()).ok());
  Outcome o;
  std::vector<std::pair<uint64_t, uint64_t>> progress;
  const xxnet::DownloadResult r =
      a.ctx.download("B", f.md5, f.name, f.size, o.cb(), [&](uint64_t done, uint64_t total) {
        progress.emplace_back(done, total);
      });
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_NE(r.task(), 0u);
  ASSERT_TRUE(dispatch_until({&a, &b}, [&] { return o.runs > 0; })) << "no on_done";
  EXPECT_EQ(o.code, XXNET_OK);
  EXPECT_EQ(o.task, r.task());
  EXPECT_EQ(o.size, f.size);
  EXPECT_EQ(o.done, f.size);
  EXPECT_EQ(o.node, "B");
  EXPECT_EQ(o.path.rfind(fs::canonical(cache.path()).string() + "/", 0), 0u) << o.path;
  EXPECT_TRUE(o.bytes == f.bytes) << "the file read inside on_done differs";
  EXPECT_FALSE(progress.empty()) << "no progress at 8 MiB/s";
  for (const auto& pr : progress) {
    EXPECT_EQ(pr.second, f.size);
    EXPECT_LE(pr.first, f.size);
  }
  // Released when on_done returned: a second release finds nothing held.
  EXPECT_EQ(a.ctx.download_release(r.task()).code(), XXNET_E_UNKNOWN_TASK);
  EXPECT_EQ(a.ctx.download_cancel(r.task()).code(), XXNET_E_UNKNOWN_TASK);
  const xxnet::FileStats st = a.ctx.files_stats();
  EXPECT_EQ(st.blocks_fetched, blocks_of(f.size));
  EXPECT_EQ(st.downloads_done, 1u);
  EXPECT_EQ(b.ctx.files_stats().blocks_served, blocks_of(f.size));

  // Again, from the cache, keeping the file: the host releases it, once.
  Outcome kept;
  kept.keep = true;
  const uint64_t t2 = a.ctx.download("B", f.md5, "whatever.pak", f.size, kept.cb()).check();
  ASSERT_TRUE(dispatch_until({&a}, [&] { return kept.runs > 0; }, 2000ms));
  EXPECT_EQ(kept.code, XXNET_OK);
  EXPECT_EQ(kept.path, o.path);
  EXPECT_TRUE(a.ctx.download_release(t2).ok()) << "keep() kept the hold";
  EXPECT_EQ(a.ctx.download_release(t2).code(), XXNET_E_UNKNOWN_TASK);
  dispatch_for({&a, &b}, 100ms);
  EXPECT_EQ(o.runs, 1);
  EXPECT_EQ(kept.runs, 1);
  EXPECT_EQ(a.ctx.files_stats().blocks_fetched, blocks_of(f.size)) << "the cached copy was used";
}

TEST(FilesWrapper, FailuresReturnedAtOnceNeverRunOnDone) {
  TempDir cache("cache");
  ASSERT_TRUE(cache.ok());
  Member a("A", xxnet::Config().download_dir(cache.path()).download_quota(1u << 20)), b("B"), nodir("N");
  meet({&a, &b, &nodir});
  int runs = 0;
  auto never = [&runs](const Download&) { ++runs; };
  const std::string md5 = kAbsentMd5;
  xxnet::DownloadResult r = a.ctx.download("nobody", md5, "f.bin", 10, never);
  EXPECT_EQ(r.code(), XXNET_E_UNKNOWN_NODE);
  EXPECT_EQ(r.task(), 0u);
  EXPECT_EQ(a.ctx.download("B", "xyz", "f.bin", 10, never).code(), XXNET_E_BAD_PATH);
  EXPECT_EQ(a.ctx.download("B", md5, "../f.bin", 10, never).code(), XXNET_E_BAD_PATH);
  EXPECT_EQ(a.ctx.download("B", md5, "/etc/passwd", 10, never).code(), XXNET_E_BAD_PATH);
  EXPECT_EQ(a.ctx.download("B", md5, std::string_view("f\0.bin", 6), 10, never).code(), XXNET_E_BAD_PATH);
  EXPECT_EQ(a.ctx.download(std::string_view("B\0", 2), md5, "f.bin", 10, never).code(), XXNET_E_UNKNOWN_NODE);
  EXPECT_EQ(a.ctx.download("B", md5, "f.bin", (1u << 20) + 1, never).code(), XXNET_E_NO_SPACE);
  EXPECT_EQ(nodir.ctx.download("B", md5, "f.bin", 10, never).code(), XXNET_E_INVALID_ARG);
  EXPECT_EQ(a.ctx.files_serve(cache.path() + "/missing").code(), XXNET_E_BAD_PATH);
  EXPECT_EQ(a.ctx.files_serve(std::string_view("/tmp\0x", 6)).code(), XXNET_E_BAD_PATH);
  try {
    (void)a.ctx.download("nobody", md5, "f.bin", 10, never).check("download");
    FAIL() << "check() did not throw";
  } catch (const xxnet::Error& e) {
    EXPECT_EQ(e.code(), XXNET_E_UNKNOWN_NODE);
  }
  // A moved-from Context: NULL_POINTER, no callback; files_stats throws.
  Context moved = std::move(a.ctx);
  EXPECT_EQ(a.ctx.download("B", md5, "f.bin", 10, never).code(), XXNET_E_NULL_POINTER);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(a.ctx.files_serve(cache.path()).code(), XXNET_E_NULL_POINTER);
  EXPECT_EQ(a.ctx.download_cancel(1).code(), XXNET_E_NULL_POINTER);
  EXPECT_EQ(a.ctx.download_release(1).code(), XXNET_E_NULL_POINTER);
  EXPECT_THROW((void)a.ctx.files_stats(), xxnet::Error);
  a.ctx = std::move(moved);
  dispatch_for({&a, &b, &nodir}, 100ms);
  EXPECT_EQ(runs, 0);
  a.ctx.shutdown();
  EXPECT_EQ(a.ctx.download("B", md5, "f.bin", 10, never).code(), XXNET_E_SHUTDOWN);
  EXPECT_EQ(runs, 0);
}

TEST(FilesWrapper, CancelFromProgressRunsOnDoneWithCancelledOnce) {
  TempDir served("srv"), cache("cache");
  ASSERT_TRUE(served.ok() && cache.ok());
  const Content f = make_file(served.path(), "slow.bin", 16 * kBlock, 9);
  Member a("A", xxnet::Config().download_dir(cache.path()).download_rate_limit(2u << 20)), b("B");
  meet({&a, &b});
  ASSERT_TRUE(b.ctx.files_serve(served.path()).ok());
  Outcome o;
  uint64_t task = 0;
  int progress_runs = 0, cancel_code = 1000;
  // The progress handler (an Event overload) cancels its own download once bytes came.
  task = a.ctx.download("B", f.md5, f.name, f.size, o.cb(), [&](const Event& e) {
    ++progress_runs;
    EXPECT_EQ(e.kind(), Kind::DownloadProgress);
    EXPECT_EQ(e.task(), task);
    EXPECT_EQ(e.total(), f.size);
    EXPECT_EQ(e.node(), "B");
    if (e.count() > 0 && cancel_code == 1000) cancel_code = a.ctx.download_cancel(e.task()).code();
  }).check();
  ASSERT_TRUE(dispatch_until({&a, &b}, [&] { return o.runs > 0; }));
  EXPECT_EQ(cancel_code, XXNET_OK);
  EXPECT_EQ(o.code, XXNET_E_CANCELLED);
  EXPECT_EQ(o.task, task);
  EXPECT_TRUE(o.path.empty());
  EXPECT_EQ(o.node, "B");
  const int progress_at_end = progress_runs;
  dispatch_for({&a, &b}, 300ms);
  EXPECT_EQ(o.runs, 1);
  EXPECT_EQ(progress_runs, progress_at_end) << "no progress after the end";
}

TEST(FilesWrapper, EventsWithoutCallbacksGoToOnKind) {
  TempDir served("srv"), cache("cache");
  ASSERT_TRUE(served.ok() && cache.ok());
  const Content f = make_file(served.path(), "x.bin", kBlock + 1, 10);
  Member a("A", xxnet::Config().download_dir(cache.path())), b("B");
  meet({&a, &b});
  ASSERT_TRUE(b.ctx.files_serve(served.path()).ok());
  std::vector<std::string> done_paths;
  std::vector<int> failed_codes;
  a.ctx.on(Kind::DownloadDone, [&](const Event& e) {
    EXPECT_EQ(e.path(), e.data());
    done_paths.push_back(std::string(e.path()));
    EXPECT_TRUE(a.ctx.download_release(e.task()).ok()) << "the host releases it";
  });
  a.ctx.on(Kind::DownloadFailed, [&](const Event& e) {
    EXPECT_TRUE(e.path().empty());
    failed_codes.push_back(e.code());
  });
  const uint64_t t = a.ctx.download("B", f.md5, f.name, f.size).check();
  (void)a.ctx.download("B", kAbsentMd5, "gone.bin", 10).check();
  ASSERT_TRUE(dispatch_until({&a, &b}, [&] { return done_paths.size() == 1 && failed_codes.size() == 1; }));
  EXPECT_TRUE(read_file(done_paths[0]) == f.bytes);
  EXPECT_EQ(failed_codes[0], XXNET_E_NO_CONTENT);
  EXPECT_EQ(a.ctx.download_release(t).code(), XXNET_E_UNKNOWN_TASK);
  EXPECT_STREQ(xxnet::to_string(Kind::DownloadProgress), "DownloadProgress");
  EXPECT_STREQ(xxnet::to_string(Kind::DownloadFailed), "DownloadFailed");
}

TEST(FilesWrapper, ShutdownRunsPendingOnDoneOnce) {
  TempDir cache("cache");
  ASSERT_TRUE(cache.ok());
  Member a("A", xxnet::Config().download_dir(cache.path()));
  ASSERT_TRUE(a.ctx.cluster_set("Z", addr(dead_port())).ok());
  Outcome o;
  (void)a.ctx.download("Z", kAbsentMd5, "f.bin", 1000, o.cb()).check();
  dispatch_for({&a}, 50ms);
  EXPECT_EQ(o.runs, 0);
  a.ctx.shutdown();
  EXPECT_EQ(o.runs, 1);
  EXPECT_EQ(o.code, XXNET_E_SHUTDOWN);
  EXPECT_EQ(o.node, "Z");
  EXPECT_EQ(o.size, 1000u);
  a.ctx.shutdown();
  EXPECT_EQ(a.ctx.dispatch(256, 50), 0u);
  EXPECT_EQ(o.runs, 1);
}

TEST(FilesWrapper, DestructionRunsPendingOnDoneOnceWithShutdown) {
  TempDir cache("cache");
  ASSERT_TRUE(cache.ok());
  const std::string dead = addr(dead_port());
  std::vector<int> codes;
  std::vector<std::string> nodes;
  int thrown = 0;
  {
    Member a("A", xxnet::Config().download_dir(cache.path()));
    ASSERT_TRUE(a.ctx.cluster_set("Z", dead).ok());
    (void)a.ctx.download("Z", kAbsentMd5, "one.bin", 10, [&](const Download& d) {
      codes.push_back(d.code());
      nodes.push_back(d.node());
    }).check();
    (void)a.ctx.download("Z", "11111111111111111111111111111111", "two.bin", 10, [&](const Download&) {
      ++thrown;
      throw std::runtime_error("swallowed by the destructor");
    }).check();
    (void)a.ctx.download("Z", "22222222222222222222222222222222", "three.bin", 10, [&](const Download& d) {
      codes.push_back(d.code());
      // Downloads started now fail at once: the network is down.
      EXPECT_EQ(a.ctx.download("Z", kAbsentMd5, "four.bin", 10, [&](const Download&) { codes.push_back(999); }).code(),
                XXNET_E_SHUTDOWN);
    }).check();
    dispatch_for({&a}, 50ms);
    EXPECT_TRUE(codes.empty());
  }  // ~Context
  EXPECT_EQ(codes, (std::vector<int>{XXNET_E_SHUTDOWN, XXNET_E_SHUTDOWN}));
  EXPECT_EQ(nodes, std::vector<std::string>{"Z"});
  EXPECT_EQ(thrown, 1);

  // reset() and move-assignment end them the same way.
  Member c("C", xxnet::Config().download_dir(cache.path())), d("D", xxnet::Config().download_dir(cache.path()));
  ASSERT_TRUE(c.ctx.cluster_set("Z", dead).ok());
  ASSERT_TRUE(d.ctx.cluster_set("Z", dead).ok());
  int c_runs = 0, d_runs = 0;
  (void)c.ctx.download("Z", kAbsentMd5, "f", 10, [&](const Download& r) { c_runs += r.code() == XXNET_E_SHUTDOWN; })
      .check();
  (void)d.ctx.download("Z", kAbsentMd5, "f", 10, [&](const Download& r) { d_runs += r.code() == XXNET_E_SHUTDOWN; })
      .check();
  c.ctx.reset();
  EXPECT_EQ(c_runs, 1);
  EXPECT_FALSE(c.ctx.valid());
  d.ctx = Context();
  EXPECT_EQ(d_runs, 1);
}

TEST(FilesWrapper, ConfigCarriesTheDownloadSettings) {
  xxnet::Config cfg;
  cfg.download_dir("/tmp/some-cache")
      .download_quota(123)
      .download_timeout_ms(4567)
      .download_block_size(128 << 10)
      .download_window(3)
      .download_rate_limit(999);
  const xxnet_config raw = cfg.raw();
  ASSERT_NE(raw.download_dir, nullptr);
  EXPECT_STREQ(raw.download_dir, "/tmp/some-cache");
  EXPECT_EQ(raw.download_quota, 123u);
  EXPECT_EQ(raw.download_timeout_ms, 4567u);
  EXPECT_EQ(raw.download_block_size, 128u << 10);
  EXPECT_EQ(raw.download_window, 3u);
  EXPECT_EQ(raw.download_rate_limit, 999u);
  const xxnet::Config copy(raw);  // copies the string
  const xxnet_config again = copy.raw();
  EXPECT_STREQ(again.download_dir, "/tmp/some-cache");
  EXPECT_NE(again.download_dir, raw.download_dir);
  EXPECT_EQ(xxnet::Config().raw().download_dir, nullptr);
  EXPECT_THROW({ Context bad(xxnet::Config().download_block_size(1000)); }, xxnet::Error);
}

}  // namespace
