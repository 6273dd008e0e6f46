// Remote calls between named nodes (issue 5), three contexts in one process
// over loopback, first through the C API (RpcC.*), then through the C++
// wrapper (RpcWrapper.*): calls both ways, a chained call A->B->C->B->A,
// every failure returned at once (and that no event follows it), NO_SERVICE,
// TIMEOUT, the callee's own code, casts, cluster files (a malformed one
// names file:line), and shutdown resolving pending calls with
// XXNET_E_SHUTDOWN. Self-contained (no test_util.hpp), so it builds with the
// wrapper's stricter warnings. Every wait is bounded; traffic stays on 127.0.0.1.
#include <xxnet.h>
#include <xxnet.hpp>

#include <stdlib.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using ms = std::chrono::milliseconds;

constexpr ms kWait = 5000ms;
constexpr int kMaxRounds = 1000000;
constexpr const char* kLo = "127.0.0.1";

double elapsed_ms(Clock::time_point since) {
  return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
}

const uint8_t* bytes(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

/// A temporary directory under /tmp, removed with its files at the end of the test.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/xxnet-rpc-XXXXXX";
    if (mkdtemp(tmpl) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    for (const std::string& f : files_) std::remove(f.c_str());
    if (!path_.empty()) rmdir(path_.c_str());
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  bool ok() const { return !path_.empty(); }
  /// Writes `text` to `name` in the directory; returns its path.
  std::string write(const std::string& name, const std::string& text) {
    std::string p = path_ + "/" + name;
    std::ofstream(p, std::ios::trunc) << text;
    files_.push_back(p);
    return p;
  }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

std::string addr(uint16_t port) { return std::string(kLo) + ":" + std::to_string(port); }

// ===========================================================================
// The C API
// ===========================================================================

/// An owned copy of an xxnet_event (payload and names are borrowed until the next poll).
struct Ev {
  uint32_t kind = 0;
  int code = 0;
  uint64_t conn = 0, id = 0;
  uint32_t lane = 0;
  std::string node, service, data;
};

/// A named context listening on 127.0.0.1:0, and every event it polled.
class Node {
 public:
  explicit Node(const char* name, xxnet_config cfg = defaults()) : name(name) {
    cfg.node_name = name;
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

  static xxnet_config defaults() {
    xxnet_config c;
    std::memset(&c, 0, sizeof c);
    xxnet_config_default(&c);
    return c;
  }

  xxnet_ctx* get() const { return ctx_; }

  /// Polls once (up to timeout_ms for the first event); copies what came into `log`.
  /// Returns the index in `log` of the first new event.
  size_t poll(int timeout_ms) {
    const size_t first = log.size();
    xxnet_event evs[64];
    std::memset(evs, 0, sizeof evs);
    const size_t n = xxnet_poll_recv(ctx_, evs, 64, timeout_ms);
    for (size_t i = 0; i < n; ++i) {
      const xxnet_event& e = evs[i];
      EXPECT_NE(e.node, nullptr) << "event node is never NULL";
      EXPECT_NE(e.service, nullptr) << "event service is never NULL";
      Ev c;
      c.kind = e.kind;
      c.code = e.code;
      c.conn = e.conn;
      c.id = e.id;
      c.lane = e.lane;
      c.node = e.node != nullptr ? e.node : "(null)";
      c.service = e.service != nullptr ? e.service : "(null)";
      if (e.data != nullptr && e.len > 0) c.data.assign(reinterpret_cast<const char*>(e.data), e.len);
      log.push_back(std::move(c));
    }
    return first;
  }

  int call(const char* node, const char* service, const std::string& data, uint32_t timeout_ms, uint64_t* session) {
    return xxnet_call(ctx_, node, service, bytes(data), data.size(), timeout_ms, session);
  }
  /// A call that must be accepted; returns its session (0 on failure, recorded).
  uint64_t must_call(const char* node, const char* service, const std::string& data, uint32_t timeout_ms = 0) {
    uint64_t s = 0;
    int rc = call(node, service, data, timeout_ms, &s);
    EXPECT_EQ(rc, XXNET_OK) << name << " -> " << node << "." << service << ": " << xxnet_strerror(rc);
    EXPECT_NE(s, 0u);
    return s;
  }
  int reply(uint64_t token, int code, const std::string& data) {
    return xxnet_reply(ctx_, token, code, bytes(data), data.size());
  }
  void serve(const char* service) { EXPECT_EQ(xxnet_service_register(ctx_, service), XXNET_OK) << service; }

  /// The CALL_RESULT of `session`, if it came.
  const Ev* result(uint64_t session) const {
    for (const Ev& e : log)
      if (e.kind == XXNET_EVENT_CALL_RESULT && e.id == session) return &e;
    return nullptr;
  }
  size_t count(uint32_t kind, uint64_t id) const {
    size_t n = 0;
    for (const Ev& e : log) n += e.kind == kind && e.id == id ? 1 : 0;
    return n;
  }
  size_t count(uint32_t kind) const {
    size_t n = 0;
    for (const Ev& e : log) n += e.kind == kind ? 1 : 0;
    return n;
  }
  std::string dump() const {
    std::string s;
    for (const Ev& e : log)
      s += "\n  kind=" + std::to_string(e.kind) + " code=" + std::to_string(e.code) + " id=" + std::to_string(e.id) +
           " node=" + e.node + " service=" + e.service + " len=" + std::to_string(e.data.size());
    return s;
  }

  std::string name;
  uint16_t port = 0;
  std::vector<Ev> log;

 private:
  xxnet_ctx* ctx_ = nullptr;
};

/// Every node knows every node (its own entry is where it listens already).
void introduce(const std::vector<Node*>& nodes) {
  for (Node* n : nodes)
    for (Node* o : nodes)
      EXPECT_EQ(xxnet_cluster_set(n->get(), o->name.c_str(), addr(o->port).c_str()), XXNET_OK)
          << n->name << " learns " << o->name << ": " << xxnet_last_error();
}

using Serve = std::function<void(Node&, const Ev&)>;

/// Polls the nodes in turn until done() or `timeout`; serve(node, event) sees each new event.
bool pump(const std::vector<Node*>& nodes, const Serve& serve, const std::function<bool()>& done,
          ms timeout = kWait) {
  const auto deadline = Clock::now() + timeout;
  for (int round = 0; round < kMaxRounds; ++round) {
    if (done()) return true;
    if (Clock::now() >= deadline) break;
    for (Node* n : nodes) {
      const size_t first = n->poll(1);
      for (size_t i = first; i < n->log.size(); ++i) {
        const Ev e = n->log[i];  // a copy: serve may poll nothing, but may grow the log indirectly
        if (serve) serve(*n, e);
      }
    }
  }
  return done();
}

void pump_for(const std::vector<Node*>& nodes, ms d, const Serve& serve = nullptr) {
  pump(nodes, serve, [] { return false; }, d);
}

TEST(RpcC, CallsBothWaysAndAChainThroughThreeNodes) {
  Node a("A"), b("B"), c("C");
  introduce({&a, &b, &c});
  for (Node* n : {&a, &b, &c}) n->serve("echo");
  b.serve("chain");
  c.serve("leaf");

  const uint64_t ab = a.must_call("B", "echo", "from A");
  const uint64_t ba = b.must_call("A", "echo", "from B");
  const uint64_t ca = c.must_call("A", "echo", "from C");
  // The chain: A calls B; B, before answering, calls C; C answers B; B answers A.
  const uint64_t chain = a.must_call("B", "chain", "hop");
  std::map<uint64_t, uint64_t> waiting;  // B's call to C -> A's reply token
  Serve serve = [&](Node& n, const Ev& e) {
    if (e.kind == XXNET_EVENT_CALL_REQUEST && e.service == "echo") {
      EXPECT_NE(e.id, 0u) << "a call carries a reply token";
      EXPECT_EQ(n.reply(e.id, XXNET_OK, e.data + " via " + n.name + " from " + e.node), XXNET_OK);
    } else if (e.kind == XXNET_EVENT_CALL_REQUEST && e.service == "chain") {
      EXPECT_EQ(e.node, "A") << "the caller's name travels with the request";
      waiting[n.must_call("C", "leaf", e.data + " > B")] = e.id;
    } else if (e.kind == XXNET_EVENT_CALL_REQUEST && e.service == "leaf") {
      EXPECT_EQ(e.node, "B");
      EXPECT_EQ(n.reply(e.id, XXNET_OK, e.data + " > C"), XXNET_OK);
    } else if (e.kind == XXNET_EVENT_CALL_RESULT && &n == &b) {
      auto w = waiting.find(e.id);
      if (w != waiting.end()) {
        EXPECT_EQ(e.code, XXNET_OK);
        EXPECT_EQ(e.node, "C");
        EXPECT_EQ(n.reply(w->second, XXNET_OK, e.data + " > B"), XXNET_OK);
        waiting.erase(w);
      }
    }
  };
  ASSERT_TRUE(pump({&a, &b, &c}, serve, [&] {
    return a.result(ab) && a.result(chain) && b.result(ba) && c.result(ca);
  })) << "A:" << a.dump() << "\nB:" << b.dump() << "\nC:" << c.dump();

  EXPECT_EQ(a.result(ab)->code, XXNET_OK);
  EXPECT_EQ(a.result(ab)->data, "from A via B from A");
  EXPECT_EQ(a.result(ab)->node, "B") << "the result names the node called";
  EXPECT_EQ(b.result(ba)->data, "from B via A from B");
  EXPECT_EQ(c.result(ca)->data, "from C via A from C");
  EXPECT_EQ(a.result(chain)->code, XXNET_OK);
  EXPECT_EQ(a.result(chain)->data, "hop > B > C > B") << "A->B->C->B->A";
  // Exactly one result per call, also after more polling.
  pump_for({&a, &b, &c}, 100ms, serve);
  for (uint64_t s : {ab, chain}) EXPECT_EQ(a.count(XXNET_EVENT_CALL_RESULT, s), 1u);
  EXPECT_EQ(b.count(XXNET_EVENT_CALL_RESULT), 2u);  // B->A and B->C
  EXPECT_EQ(c.count(XXNET_EVENT_CALL_RESULT, ca), 1u);
}

TEST(RpcC, FailuresReturnedAtOnceProduceNoEvent) {
  xxnet_config cfg = Node::defaults();
  cfg.max_message_size = 4096;
  Node a("A", cfg), b("B");
  introduce({&a, &b});
  b.serve("echo");
  const std::string small = "x", big(8192, 'x');
  const uint64_t kUntouched = 777;
  uint64_t s = kUntouched;
  EXPECT_EQ(a.call("nobody", "echo", small, 0, &s), XXNET_E_UNKNOWN_NODE);
  EXPECT_EQ(a.call("B", "echo", big, 0, &s), XXNET_E_TOO_LARGE);
  EXPECT_EQ(a.call("B", "bad name", small, 0, &s), XXNET_E_INVALID_ARG);
  EXPECT_EQ(a.call("B", "", small, 0, &s), XXNET_E_INVALID_ARG);
  EXPECT_EQ(a.call("B", std::string(129, 's').c_str(), small, 0, &s), XXNET_E_INVALID_ARG);
  EXPECT_EQ(a.call(nullptr, "echo", small, 0, &s), XXNET_E_NULL_POINTER);
  EXPECT_EQ(a.call("B", nullptr, small, 0, &s), XXNET_E_NULL_POINTER);
  EXPECT_EQ(xxnet_call(nullptr, "B", "echo", bytes(small), 1, 0, &s), XXNET_E_NULL_POINTER);
  xxnet_call_opts o;
  std::memset(&o, 0, sizeof o);
  o.lane = XXNET_LANES;
  EXPECT_EQ(xxnet_call_ex(a.get(), "B", "echo", bytes(small), 1, &o, &s), XXNET_E_INVALID_ARG);
  o.lane = 0;
  o.flags = 1;
  EXPECT_EQ(xxnet_call_ex(a.get(), "B", "echo", bytes(small), 1, &o, &s), XXNET_E_INVALID_ARG);
  EXPECT_EQ(s, kUntouched) << "no session is written for a failed call";
  // Casts fail the same way.
  EXPECT_EQ(xxnet_cast(a.get(), "nobody", "echo", bytes(small), 1), XXNET_E_UNKNOWN_NODE);
  EXPECT_EQ(xxnet_cast(a.get(), "B", "echo", bytes(big), big.size()), XXNET_E_TOO_LARGE);
  EXPECT_EQ(xxnet_cast(a.get(), "B", "bad name", bytes(small), 1), XXNET_E_INVALID_ARG);
  EXPECT_EQ(xxnet_cast_ex(a.get(), "B", "echo", bytes(small), 1, &o), XXNET_E_INVALID_ARG);
  // Services, replies and the directory.
  EXPECT_EQ(xxnet_service_register(b.get(), "echo"), XXNET_E_INVALID_ARG) << "registered twice";
  EXPECT_EQ(xxnet_service_register(b.get(), "bad name"), XXNET_E_INVALID_ARG);
  EXPECT_EQ(xxnet_service_unregister(b.get(), "never"), XXNET_E_NO_SERVICE);
  EXPECT_EQ(b.reply(12345, XXNET_OK, small), XXNET_E_UNKNOWN_TOKEN);
  EXPECT_EQ(b.reply(0, XXNET_OK, small), XXNET_E_UNKNOWN_TOKEN) << "0 is never a token";
  EXPECT_EQ(b.reply(12345, -1, small), XXNET_E_INVALID_ARG);
  EXPECT_EQ(xxnet_cluster_remove(a.get(), "nobody"), XXNET_E_UNKNOWN_NODE);
  EXPECT_EQ(xxnet_cluster_set(a.get(), "Z", "not an address"), XXNET_E_INVALID_ARG);
  EXPECT_EQ(xxnet_cluster_set(a.get(), "Z", "127.0.0.1:0"), XXNET_E_INVALID_ARG) << "port 0";
  EXPECT_EQ(xxnet_cluster_set(a.get(), "bad name", "127.0.0.1:1"), XXNET_E_INVALID_ARG);
  EXPECT_EQ(xxnet_cluster_set(a.get(), "Z", nullptr), XXNET_E_NULL_POINTER);

  // A good call still goes through, and nothing but its result follows.
  const uint64_t good = a.must_call("B", "echo", small);
  Serve serve = [](Node& n, const Ev& e) {
    if (e.kind == XXNET_EVENT_CALL_REQUEST) {
      EXPECT_EQ(n.reply(e.id, XXNET_OK, e.data), XXNET_OK);
    }
  };
  ASSERT_TRUE(pump({&a, &b}, serve, [&] { return a.result(good) != nullptr; })) << a.dump();
  pump_for({&a, &b}, 100ms, serve);
  EXPECT_EQ(a.count(XXNET_EVENT_CALL_RESULT), 1u) << a.dump();
  EXPECT_EQ(a.count(XXNET_EVENT_SEND_FAILED), 0u) << a.dump();
  EXPECT_EQ(b.count(XXNET_EVENT_CALL_REQUEST), 1u) << b.dump();
}

TEST(RpcC, NoServiceTimeoutTheCalleesCodeAndCasts) {
  Node a("A"), b("B");
  introduce({&a, &b});
  b.serve("echo");
  b.serve("silent");  // never answered in time
  b.serve("note");    // casts
  const uint64_t ok = a.must_call("B", "echo", "x");
  const uint64_t own = a.must_call("B", "echo", "code 7");
  const uint64_t none = a.must_call("B", "missing", "x");
  const auto t0 = Clock::now();
  const uint64_t slow = a.must_call("B", "silent", "x", 150);
  EXPECT_EQ(xxnet_cast(a.get(), "B", "note", bytes(std::string("n1")), 2), XXNET_OK);
  EXPECT_EQ(xxnet_cast(a.get(), "B", "nowhere", bytes(std::string("lost")), 4), XXNET_OK);
  double timeout_ms = -1;
  uint64_t silent_token = 0;
  Serve serve = [&](Node& n, const Ev& e) {
    if (e.kind == XXNET_EVENT_CALL_REQUEST && e.service == "echo") {
      EXPECT_EQ(n.reply(e.id, e.data == "code 7" ? 7 : XXNET_OK, "r:" + e.data), XXNET_OK);
    }
    if (e.kind == XXNET_EVENT_CALL_REQUEST && e.service == "silent") silent_token = e.id;
    if (e.kind == XXNET_EVENT_CALL_RESULT && e.id == slow) timeout_ms = elapsed_ms(t0);
  };
  ASSERT_TRUE(pump({&a, &b}, serve, [&] {
    return a.result(ok) && a.result(own) && a.result(none) && a.result(slow) &&
           a.count(XXNET_EVENT_SEND_FAILED) == 1 && b.count(XXNET_EVENT_CALL_REQUEST) >= 4;
  })) << "A:" << a.dump() << "\nB:" << b.dump();
  EXPECT_EQ(a.result(ok)->code, XXNET_OK);
  EXPECT_EQ(a.result(ok)->data, "r:x");
  EXPECT_EQ(a.result(own)->code, 7) << "the callee's own code";
  EXPECT_EQ(a.result(own)->data, "r:code 7");
  EXPECT_EQ(a.result(none)->code, XXNET_E_NO_SERVICE);
  EXPECT_TRUE(a.result(none)->data.empty());
  EXPECT_EQ(a.result(slow)->code, XXNET_E_TIMEOUT);
  EXPECT_TRUE(a.result(slow)->data.empty());
  EXPECT_GE(timeout_ms, 140.0) << "the deadline was kept";
  EXPECT_LT(timeout_ms, 3000.0);
  // The cast arrived with no token and the caster's name; the other was refused.
  const Ev* cast = nullptr;
  for (const Ev& e : b.log)
    if (e.kind == XXNET_EVENT_CALL_REQUEST && e.service == "note") cast = &e;
  ASSERT_NE(cast, nullptr) << b.dump();
  EXPECT_EQ(cast->id, 0u) << "a cast has no reply token";
  EXPECT_EQ(cast->node, "A");
  EXPECT_EQ(cast->data, "n1");
  for (const Ev& e : a.log) {
    if (e.kind != XXNET_EVENT_SEND_FAILED) continue;
    EXPECT_EQ(e.code, XXNET_E_NO_SERVICE);
    EXPECT_EQ(e.service, "nowhere");
  }
  // A late reply is dropped (no second result); a token answers once.
  ASSERT_NE(silent_token, 0u);
  EXPECT_EQ(b.reply(silent_token, XXNET_OK, "late"), XXNET_OK);
  EXPECT_EQ(b.reply(silent_token, XXNET_OK, "again"), XXNET_E_UNKNOWN_TOKEN);
  pump_for({&a, &b}, 200ms, serve);
  EXPECT_EQ(a.count(XXNET_EVENT_CALL_RESULT, slow), 1u);
}

TEST(RpcC, ClusterFileErrorsNameFileAndLine) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  Node a("A"), b("B");
  b.serve("echo");
  // Line 2 lacks quotes, line 4 has no port; nothing of the file is taken.
  const std::string bad = dir.write("clustername.lua", "A = \"" + addr(a.port) + "\"\nB = 127.0.0.1:" +
                                                           std::to_string(b.port) + "\n-- fine\nC = \"127.0.0.1\"\n");
  EXPECT_EQ(xxnet_cluster_load(a.get(), bad.c_str()), XXNET_E_CLUSTER_FILE);
  const std::string why = xxnet_last_error();
  EXPECT_NE(why.find(bad + ":2:"), std::string::npos) << why;
  EXPECT_NE(why.find(bad + ":4:"), std::string::npos) << why;
  EXPECT_EQ(why.find(bad + ":3:"), std::string::npos) << why;
  uint64_t s = 0;
  EXPECT_EQ(a.call("B", "echo", "x", 0, &s), XXNET_E_UNKNOWN_NODE) << "a malformed file changes nothing";
  EXPECT_EQ(xxnet_cluster_load(a.get(), (bad + ".missing").c_str()), XXNET_E_IO);
  EXPECT_NE(std::string(xxnet_last_error()).find(".missing"), std::string::npos) << xxnet_last_error();

  // A good file: calls reach B through it; one NODE_CHANGED per node.
  const std::string good =
      dir.write("good.lua", "-- the cluster\nA = \"" + addr(a.port) + "\"\nB = \"" + addr(b.port) + "\" -- B\n");
  ASSERT_EQ(xxnet_cluster_load(a.get(), good.c_str()), XXNET_OK) << xxnet_last_error();
  const uint64_t call = a.must_call("B", "echo", "via file");
  Serve serve = [](Node& n, const Ev& e) {
    if (e.kind == XXNET_EVENT_CALL_REQUEST) {
      EXPECT_EQ(n.reply(e.id, XXNET_OK, e.data), XXNET_OK);
    }
  };
  ASSERT_TRUE(pump({&a, &b}, serve, [&] { return a.result(call) != nullptr; })) << a.dump();
  EXPECT_EQ(a.result(call)->data, "via file");
  std::vector<std::string> changes;
  for (const Ev& e : a.log)
    if (e.kind == XXNET_EVENT_NODE_CHANGED) changes.push_back(e.node + ":" + std::to_string(e.id));
  EXPECT_EQ(changes, (std::vector<std::string>{"A:" + std::to_string(XXNET_NODE_ADDED),
                                               "B:" + std::to_string(XXNET_NODE_ADDED)}));
  // A reload without B removes it.
  const std::string less = dir.write("less.lua", "A = \"" + addr(a.port) + "\"\n");
  ASSERT_EQ(xxnet_cluster_reload(a.get(), less.c_str()), XXNET_OK) << xxnet_last_error();
  EXPECT_EQ(a.call("B", "echo", "x", 0, &s), XXNET_E_UNKNOWN_NODE);
  ASSERT_TRUE(pump({&a}, nullptr, [&] { return a.count(XXNET_EVENT_NODE_CHANGED, XXNET_NODE_REMOVED) == 1; }));
  for (const Ev& e : a.log)
    if (e.kind == XXNET_EVENT_NODE_CHANGED && e.id == XXNET_NODE_REMOVED) {
      EXPECT_EQ(e.node, "B");
    }
}

TEST(RpcC, ShutdownResolvesPendingCallsWithShutdown) {
  Node a("A"), b("B");
  introduce({&a, &b});
  b.serve("hold");  // never answers
  const uint64_t held = a.must_call("B", "hold", "x", 10000);
  ASSERT_TRUE(pump({&a, &b}, nullptr, [&] { return b.count(XXNET_EVENT_CALL_REQUEST) == 1; })) << b.dump();
  xxnet_shutdown(a.get());
  xxnet_shutdown(a.get());  // idempotent
  xxnet_shutdown(nullptr);  // a no-op
  uint64_t s = 0;
  EXPECT_EQ(a.call("B", "hold", "y", 0, &s), XXNET_E_SHUTDOWN);
  EXPECT_EQ(xxnet_cast(a.get(), "B", "hold", bytes(std::string("y")), 1), XXNET_E_SHUTDOWN);
  uint16_t port = 0;
  EXPECT_EQ(xxnet_listen(a.get(), kLo, 0, &port), XXNET_E_SHUTDOWN);
  // poll drains what is queued without waiting; the call resolves exactly once.
  const auto t0 = Clock::now();
  for (int i = 0; i < 100 && !a.result(held); ++i) a.poll(1000);
  ASSERT_NE(a.result(held), nullptr) << a.dump();
  EXPECT_EQ(a.result(held)->code, XXNET_E_SHUTDOWN);
  EXPECT_EQ(a.result(held)->node, "B");
  EXPECT_EQ(a.poll(1000), a.log.size()) << "nothing more, and no wait";
  EXPECT_LT(elapsed_ms(t0), 900.0) << "poll does not wait after a shutdown";
  EXPECT_EQ(a.count(XXNET_EVENT_CALL_RESULT, held), 1u);
}

TEST(RpcC, HeaderDeclaresTheRpcApi) {
  // The signatures, through typed pointers (a changed one fails to compile).
  int (*load)(xxnet_ctx*, const char*) = xxnet_cluster_load;
  int (*reload)(xxnet_ctx*, const char*) = xxnet_cluster_reload;
  int (*set)(xxnet_ctx*, const char*, const char*) = xxnet_cluster_set;
  int (*remove)(xxnet_ctx*, const char*) = xxnet_cluster_remove;
  int (*call)(xxnet_ctx*, const char*, const char*, const uint8_t*, size_t, uint32_t, uint64_t*) = xxnet_call;
  int (*call_ex)(xxnet_ctx*, const char*, const char*, const uint8_t*, size_t, const xxnet_call_opts*, uint64_t*) =
      xxnet_call_ex;
  int (*cast)(xxnet_ctx*, const char*, const char*, const uint8_t*, size_t) = xxnet_cast;
  int (*cast_ex)(xxnet_ctx*, const char*, const char*, const uint8_t*, size_t, const xxnet_call_opts*) = xxnet_cast_ex;
  int (*reg)(xxnet_ctx*, const char*) = xxnet_service_register;
  int (*unreg)(xxnet_ctx*, const char*) = xxnet_service_unregister;
  int (*reply)(xxnet_ctx*, uint64_t, int, const uint8_t*, size_t) = xxnet_reply;
  void (*shutdown)(xxnet_ctx*) = xxnet_shutdown;
  EXPECT_TRUE(load && reload && set && remove && call && call_ex && cast && cast_ex && reg && unreg && reply &&
              shutdown);
  static_assert(std::is_same_v<decltype(xxnet_event::node), const char*>);
  static_assert(std::is_same_v<decltype(xxnet_event::service), const char*>);
  static_assert(std::is_same_v<decltype(xxnet_config::node_name), const char*>);
  static_assert(std::is_same_v<decltype(xxnet_config::auth_secret), const uint8_t*>);
  static_assert(std::is_same_v<decltype(xxnet_config::auth_secret_len), size_t>);
  static_assert(std::is_same_v<decltype(xxnet_call_opts::timeout_ms), uint32_t>);
  static_assert(XXNET_E_TIMEOUT == -50 && XXNET_E_UNKNOWN_NODE == -51 && XXNET_E_NODE_UNREACHABLE == -52 &&
                XXNET_E_NODE_DOWN == -53 && XXNET_E_NODE_REMOVED == -54 && XXNET_E_NODE_MOVED == -55 &&
                XXNET_E_NO_SERVICE == -56 && XXNET_E_UNKNOWN_TOKEN == -57 && XXNET_E_AUTH == -58 &&
                XXNET_E_CLUSTER_FILE == -59);
  static_assert(XXNET_EVENT_CALL_REQUEST == 13 && XXNET_EVENT_CALL_RESULT == 14 && XXNET_EVENT_NODE_CHANGED == 15);
  static_assert(XXNET_NODE_ADDED == 1 && XXNET_NODE_MOVED == 2 && XXNET_NODE_REMOVED == 3);
  for (int code : {XXNET_E_TIMEOUT, XXNET_E_UNKNOWN_NODE, XXNET_E_NODE_UNREACHABLE, XXNET_E_NODE_DOWN,
                   XXNET_E_NODE_REMOVED, XXNET_E_NODE_MOVED, XXNET_E_NO_SERVICE, XXNET_E_UNKNOWN_TOKEN,
                   XXNET_E_AUTH, XXNET_E_CLUSTER_FILE})
    EXPECT_STRNE(xxnet_strerror(code), "unknown code") << code;
  // Defaults of the new config fields.
  xxnet_config c = Node::defaults();
  EXPECT_EQ(c.node_name, nullptr);
  EXPECT_EQ(c.auth_secret, nullptr);
  EXPECT_EQ(c.auth_secret_len, 0u);
  EXPECT_GT(c.call_timeout_ms, 0u);
  EXPECT_GT(c.call_cache_limit, 0u);
}

// ===========================================================================
// The C++ wrapper
// ===========================================================================

using xxnet::Context;
using xxnet::Event;
using xxnet::Kind;
using xxnet::Request;

/// A named wrapper context listening on 127.0.0.1:0.
struct Member {
  explicit Member(const std::string& n, xxnet::Config cfg = xxnet::Config())
      : name(n), ctx(cfg.node_name(n)), port(ctx.listen(kLo)) {}
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

/// Dispatches the contexts in turn until pred() holds or `timeout` passes.
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

/// One call's outcome as its callback saw it.
struct Outcome {
  int runs = 0;
  int code = 1000;
  std::string reply, node;
  uint64_t session = 0;
  /// A callback recording into *this (void(const Event&)).
  std::function<void(const Event&)> cb() {
    return [this](const Event& e) {
      ++runs;
      code = e.code();
      reply = std::string(e.data());
      node = std::string(e.node());
      session = e.session();
      EXPECT_EQ(e.kind(), Kind::CallResult);
    };
  }
};

TEST(RpcWrapper, CallsBothWaysAndAChainThroughThreeNodes) {
  Member a("A"), b("B"), c("C");
  meet({&a, &b, &c});
  for (Member* m : {&a, &b, &c}) {
    const std::string me = m->name;
    ASSERT_TRUE(m->ctx.serve("echo", [me](Request& req) {
      EXPECT_FALSE(req.is_cast());
      EXPECT_EQ(req.service(), "echo");
      (void)req.reply(XXNET_OK, std::string(req.data()) + " via " + me + " from " + std::string(req.node()));
    }).ok());
  }
  // B answers A only after its own call to C: the Request is kept in the callback.
  ASSERT_TRUE(b.ctx.serve("chain", [&](const Request& req) {
    EXPECT_EQ(req.node(), "A");
    xxnet::CallResult r = b.ctx.call("C", "leaf", std::string(req.data()) + " > B", [req](int code, std::string_view reply) {
      EXPECT_EQ(code, XXNET_OK);
      EXPECT_TRUE(req.reply(XXNET_OK, std::string(reply) + " > B").ok());
    });
    EXPECT_TRUE(r.ok()) << r.message();
  }).ok());
  ASSERT_TRUE(c.ctx.serve("leaf", [](Request& req) {
    EXPECT_EQ(req.node(), "B");
    EXPECT_TRUE(req.reply(XXNET_OK, std::string(req.data()) + " > C").ok());
  }).ok());

  Outcome ab, ba, ca, chain;
  const uint64_t s_ab = a.ctx.call("B", "echo", "from A", ab.cb()).check();
  (void)b.ctx.call("A", "echo", "from B", ba.cb()).check();
  (void)c.ctx.call("A", "echo", "from C", ca.cb(), xxnet::CallOptions{}.with_timeout_ms(5000)).check();
  (void)a.ctx.call("B", "chain", "hop", chain.cb()).check();
  ASSERT_TRUE(dispatch_until({&a, &b, &c}, [&] { return ab.runs && ba.runs && ca.runs && chain.runs; }));
  EXPECT_EQ(ab.code, XXNET_OK);
  EXPECT_EQ(ab.reply, "from A via B from A");
  EXPECT_EQ(ab.node, "B");
  EXPECT_EQ(ab.session, s_ab);
  EXPECT_EQ(ba.reply, "from B via A from B");
  EXPECT_EQ(ca.reply, "from C via A from C");
  EXPECT_EQ(chain.code, XXNET_OK);
  EXPECT_EQ(chain.reply, "hop > B > C > B");
  dispatch_for({&a, &b, &c}, 100ms);
  for (const Outcome* o : {&ab, &ba, &ca, &chain}) EXPECT_EQ(o->runs, 1) << "each callback runs once";
}

TEST(RpcWrapper, FailuresReturnedAtOnceNeverRunTheCallback) {
  Member a("A", xxnet::Config().max_message_size(4096)), b("B");
  meet({&a, &b});
  ASSERT_TRUE(b.ctx.serve("echo", [](Request& r) { (void)r.reply(XXNET_OK, r.data()); }).ok());
  int runs = 0;
  auto never = [&runs](const Event&) { ++runs; };
  xxnet::CallResult r = a.ctx.call("nobody", "echo", "x", never);
  EXPECT_EQ(r.code(), XXNET_E_UNKNOWN_NODE);
  EXPECT_EQ(r.session(), 0u);
  EXPECT_EQ(a.ctx.call("B", "echo", std::string(8192, 'x'), never).code(), XXNET_E_TOO_LARGE);
  EXPECT_EQ(a.ctx.call("B", "bad name", "x", never).code(), XXNET_E_INVALID_ARG);
  EXPECT_EQ(a.ctx.call("B", std::string_view("ec\0ho", 5), "x", never).code(), XXNET_E_INVALID_ARG);
  EXPECT_EQ(a.ctx.call("B", "echo", "x", never, {XXNET_LANES, 0}).code(), XXNET_E_INVALID_ARG);
  EXPECT_EQ(a.ctx.cast("nobody", "echo", "x").code(), XXNET_E_UNKNOWN_NODE);
  EXPECT_EQ(a.ctx.serve("bad name", [](Request&) {}).code(), XXNET_E_INVALID_ARG);
  EXPECT_EQ(a.ctx.reply(4242, XXNET_OK, "x").code(), XXNET_E_UNKNOWN_TOKEN);
  try {
    (void)a.ctx.call("nobody", "echo", "x", never).check("call");
    FAIL() << "check() did not throw";
  } catch (const xxnet::Error& e) {
    EXPECT_EQ(e.code(), XXNET_E_UNKNOWN_NODE);
  }
  // A moved-from Context: NULL_POINTER, no callback.
  Context moved = std::move(a.ctx);
  EXPECT_EQ(a.ctx.call("B", "echo", "x", never).code(), XXNET_E_NULL_POINTER);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(a.ctx.cast("B", "echo", "x").code(), XXNET_E_NULL_POINTER);
  EXPECT_EQ(a.ctx.serve("echo", [](Request&) {}).code(), XXNET_E_NULL_POINTER);
  EXPECT_EQ(a.ctx.cluster_set("B", addr(b.port)).code(), XXNET_E_NULL_POINTER);
  a.ctx.shutdown();  // a no-op
  a.ctx = std::move(moved);
  // A good call works, and the failed ones never ran their callback.
  Outcome good;
  (void)a.ctx.call("B", "echo", "fine", good.cb()).check();
  ASSERT_TRUE(dispatch_until({&a, &b}, [&] { return good.runs > 0; }));
  EXPECT_EQ(good.reply, "fine");
  dispatch_for({&a, &b}, 100ms);
  EXPECT_EQ(runs, 0);
}

TEST(RpcWrapper, OutcomesReachTheCallback) {
  Member a("A"), b("B");
  meet({&a, &b});
  std::vector<Request> held;
  ASSERT_TRUE(b.ctx.serve("echo", [](Request& r) {
    EXPECT_TRUE(r.reply(r.data() == "code 7" ? 7 : XXNET_OK, "r:" + std::string(r.data())).ok());
  }).ok());
  ASSERT_TRUE(b.ctx.serve("silent", [&](Request& r) { held.push_back(r); }).ok());
  std::vector<std::string> notes;
  ASSERT_TRUE(b.ctx.serve("note", [&](const Request& r) {
    EXPECT_TRUE(r.is_cast());
    EXPECT_EQ(r.token(), 0u);
    EXPECT_EQ(r.reply(XXNET_OK).code(), XXNET_E_UNKNOWN_TOKEN) << "a cast cannot be answered";
    notes.push_back(std::string(r.node()) + ":" + std::string(r.data()));
  }).ok());
  std::vector<std::string> refused;
  a.ctx.on(Kind::SendFailed, [&](const Event& e) { refused.push_back(std::string(e.service())); });
  std::vector<int> unrouted;  // results of calls made without a callback
  a.ctx.on(Kind::CallResult, [&](const Event& e) { unrouted.push_back(e.code()); });

  Outcome ok, own, none, slow;
  int two_args_code = 1000;
  std::string two_args_reply;
  (void)a.ctx.call("B", "echo", "x", ok.cb()).check();
  (void)a.ctx.call("B", "echo", "code 7", own.cb()).check();
  (void)a.ctx.call("B", "missing", "x", none.cb()).check();
  const auto t0 = Clock::now();
  double slow_ms = 0;
  (void)a.ctx.call("B", "silent", "x", [&](const Event& e) {
    slow_ms = elapsed_ms(t0);
    slow.cb()(e);
  }, {0, 150}).check();
  (void)a.ctx.call("B", "echo", "two", [&](int code, std::string_view reply) {
    two_args_code = code;
    two_args_reply = std::string(reply);
  }).check();
  (void)a.ctx.call("B", "echo", "unrouted").check();
  EXPECT_TRUE(a.ctx.cast("B", "note", "n1", {XXNET_LANE_BULK, 0}).ok());
  EXPECT_TRUE(a.ctx.cast("B", "nowhere", "lost").ok());
  ASSERT_TRUE(dispatch_until({&a, &b}, [&] {
    return ok.runs && own.runs && none.runs && slow.runs && two_args_code != 1000 && unrouted.size() == 1 &&
           notes.size() == 1 && refused.size() == 1;
  }));
  EXPECT_EQ(ok.code, XXNET_OK);
  EXPECT_EQ(ok.reply, "r:x");
  EXPECT_EQ(own.code, 7) << "the callee's own code";
  EXPECT_EQ(own.reply, "r:code 7");
  EXPECT_EQ(none.code, XXNET_E_NO_SERVICE);
  EXPECT_EQ(slow.code, XXNET_E_TIMEOUT);
  EXPECT_GE(slow_ms, 140.0);
  EXPECT_EQ(two_args_code, XXNET_OK);
  EXPECT_EQ(two_args_reply, "r:two");
  EXPECT_EQ(unrouted[0], XXNET_OK) << "no callback: the on(Kind::CallResult) handler";
  EXPECT_EQ(notes[0], "A:n1");
  EXPECT_EQ(refused[0], "nowhere");
  // A copy of a Request answers later; the second answer is refused.
  ASSERT_EQ(held.size(), 1u);
  const Request later = held[0];
  EXPECT_TRUE(later.reply(XXNET_OK, "late").ok());
  EXPECT_EQ(held[0].reply(XXNET_OK, "again").code(), XXNET_E_UNKNOWN_TOKEN);
  EXPECT_EQ(held[0].reply(-3).code(), XXNET_E_INVALID_ARG);
  dispatch_for({&a, &b}, 100ms);
  EXPECT_EQ(slow.runs, 1) << "the late reply made no second result";
}

TEST(RpcWrapper, ServeReplacesAndStopsAndHandlersMayCallIn) {
  Member a("A"), b("B");
  meet({&a, &b});
  int reentrant = 0;
  ASSERT_TRUE(b.ctx.serve("svc", [&](Request& r) {
    // The handler replaces itself, then answers.
    EXPECT_TRUE(b.ctx.serve("svc", [](Request& r2) { (void)r2.reply(XXNET_OK, "second"); }).ok());
    try {
      b.ctx.dispatch();
    } catch (const xxnet::Error& e) {
      reentrant = e.code();
    }
    (void)r.reply(XXNET_OK, "first");
  }).ok());
  Outcome one, two;
  int callback_reentrant = 0;
  (void)a.ctx.call("B", "svc", "", [&](const Event& e) {
    one.cb()(e);
    try {
      (void)a.ctx.poll();
    } catch (const xxnet::Error& err) {
      callback_reentrant = err.code();
    }
    // A callback may call again.
    (void)a.ctx.call("B", "svc", "", two.cb()).check();
  }).check();
  ASSERT_TRUE(dispatch_until({&a, &b}, [&] { return two.runs > 0; }));
  EXPECT_EQ(one.reply, "first");
  EXPECT_EQ(two.reply, "second");
  EXPECT_EQ(reentrant, XXNET_E_REENTRANT);
  EXPECT_EQ(callback_reentrant, XXNET_E_REENTRANT);
  // An empty handler stops serving. The library withdraws the service
  // asynchronously: a request already on its way may still arrive, and then
  // goes to on(Kind::CallRequest) (here answered with a code of our own).
  int late = 0;
  b.ctx.on(Kind::CallRequest, [&](const Event& e) {
    ++late;
    EXPECT_EQ(e.service(), "svc");
    EXPECT_TRUE(b.ctx.reply(e.token(), 404).ok());
  });
  EXPECT_TRUE(b.ctx.serve("svc", nullptr).ok());
  EXPECT_EQ(b.ctx.serve("svc", nullptr).code(), XXNET_E_NO_SERVICE);
  Outcome gone;
  (void)a.ctx.call("B", "svc", "", gone.cb()).check();
  ASSERT_TRUE(dispatch_until({&a, &b}, [&] { return gone.runs > 0; }));
  EXPECT_EQ(gone.code, late == 0 ? XXNET_E_NO_SERVICE : 404);
}

TEST(RpcWrapper, ClusterLoadReportsFileAndLine) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  Member a("A"), b("B");
  const std::string bad = dir.write("clustername.lua", "A = \"" + addr(a.port) + "\"\nB = nowhere\n");
  xxnet::DetailedResult r = a.ctx.cluster_load(bad);
  EXPECT_EQ(r.code(), XXNET_E_CLUSTER_FILE);
  EXPECT_NE(r.detail().find(bad + ":2:"), std::string::npos) << r.detail();
  try {
    r.check("cluster_load");
    FAIL() << "check() did not throw";
  } catch (const xxnet::Error& e) {
    EXPECT_EQ(e.code(), XXNET_E_CLUSTER_FILE);
    EXPECT_NE(std::string(e.what()).find(bad + ":2:"), std::string::npos) << e.what();
  }
  EXPECT_EQ(a.ctx.cluster_load(std::string_view("a\0b", 3)).code(), XXNET_E_INVALID_ARG);
  const std::string good = dir.write("good.lua", "A = \"" + addr(a.port) + "\"\nB = \"" + addr(b.port) + "\"\n");
  xxnet::DetailedResult loaded = a.ctx.cluster_load(good);
  EXPECT_TRUE(loaded.ok()) << loaded.detail();
  EXPECT_TRUE(loaded.detail().empty());
  std::vector<std::string> changed;
  a.ctx.on(Kind::NodeChanged, [&](const Event& e) { changed.push_back(std::string(e.node())); });
  ASSERT_TRUE(b.ctx.serve("echo", [](Request& q) { (void)q.reply(XXNET_OK, q.data()); }).ok());
  Outcome o;
  (void)a.ctx.call("B", "echo", "loaded", o.cb()).check();
  ASSERT_TRUE(dispatch_until({&a, &b}, [&] { return o.runs > 0; }));
  EXPECT_EQ(o.reply, "loaded");
  EXPECT_EQ(changed, (std::vector<std::string>{"A", "B"}));
  EXPECT_TRUE(a.ctx.cluster_remove("B").ok());
  EXPECT_EQ(a.ctx.cluster_remove("B").code(), XXNET_E_UNKNOWN_NODE);
  EXPECT_EQ(a.ctx.cluster_set("B", "no address").code(), XXNET_E_INVALID_ARG);
}

TEST(RpcWrapper, ShutdownRunsPendingCallbacksOnce) {
  Member a("A"), b("B");
  meet({&a, &b});
  ASSERT_TRUE(b.ctx.serve("hold", [](Request&) {}).ok());  // never answers
  Outcome held;
  std::vector<std::string> changed;
  a.ctx.on(Kind::NodeChanged, [&](const Event& e) { changed.push_back(std::string(e.node())); });
  (void)a.ctx.call("B", "hold", "x", held.cb(), {0, 10000}).check();
  dispatch_for({&a, &b}, 50ms);
  changed.clear();
  EXPECT_TRUE(a.ctx.cluster_set("Z", "127.0.0.1:9").ok());  // its NodeChanged event is queued, not dispatched
  const auto t0 = Clock::now();
  a.ctx.shutdown();
  EXPECT_LT(elapsed_ms(t0), 2000.0);
  EXPECT_EQ(held.runs, 1);
  EXPECT_EQ(held.code, XXNET_E_SHUTDOWN);
  EXPECT_EQ(changed, std::vector<std::string>{"Z"}) << "shutdown() runs the handlers of what was queued";
  int runs = 0;
  EXPECT_EQ(a.ctx.call("B", "hold", "y", [&](const Event&) { ++runs; }).code(), XXNET_E_SHUTDOWN);
  EXPECT_EQ(a.ctx.cast("B", "hold", "y").code(), XXNET_E_SHUTDOWN);
  a.ctx.shutdown();  // idempotent
  EXPECT_EQ(a.ctx.dispatch(256, 100), 0u);
  EXPECT_EQ(held.runs, 1);
  EXPECT_EQ(runs, 0);
  EXPECT_TRUE(a.ctx.valid()) << "the Context lives on until destroyed";
}

TEST(RpcWrapper, DestructionRunsPendingCallbacksOnce) {
  Member b("B");
  ASSERT_TRUE(b.ctx.serve("hold", [](Request&) {}).ok());
  std::vector<int> codes;
  int thrown = 0;
  {
    Member a("A");
    meet({&a, &b});
    (void)a.ctx.call("B", "hold", "1", [&](int code, std::string_view) { codes.push_back(code); }, {0, 10000}).check();
    (void)a.ctx.call("B", "hold", "2", [&](const Event&) {
      ++thrown;
      throw std::runtime_error("swallowed by the destructor");
    }, {0, 10000}).check();
    (void)a.ctx.call("B", "hold", "3", [&](int code, std::string_view) {
      codes.push_back(code);
      // Calls made now fail at once: the network is down.
      EXPECT_EQ(a.ctx.call("B", "hold", "4", [&](const Event&) { codes.push_back(999); }).code(), XXNET_E_SHUTDOWN);
    }, {0, 10000}).check();
    dispatch_until({&a, &b}, [&] { return false; }, 50ms);
    EXPECT_TRUE(codes.empty());
  }  // ~Context
  EXPECT_EQ(codes, (std::vector<int>{XXNET_E_SHUTDOWN, XXNET_E_SHUTDOWN}));
  EXPECT_EQ(thrown, 1);

  // reset() and move-assignment free the same way.
  Member c("C"), d("D");
  meet({&c, &b});
  meet({&d, &b});
  int c_runs = 0, d_runs = 0;
  (void)c.ctx.call("B", "hold", "x", [&](int code, std::string_view) { c_runs += code == XXNET_E_SHUTDOWN; }).check();
  (void)d.ctx.call("B", "hold", "x", [&](int code, std::string_view) { d_runs += code == XXNET_E_SHUTDOWN; }).check();
  c.ctx.reset();
  EXPECT_EQ(c_runs, 1);
  EXPECT_FALSE(c.ctx.valid());
  d.ctx = Context();
  EXPECT_EQ(d_runs, 1);
}

TEST(RpcWrapper, ConfigCarriesNodeNameAndSecret) {
  xxnet::Config cfg;
  cfg.node_name("N1").auth_secret(std::string("k\0ey", 4)).call_timeout_ms(1234).call_cache_limit(7);
  const xxnet_config raw = cfg.raw();
  ASSERT_NE(raw.node_name, nullptr);
  EXPECT_STREQ(raw.node_name, "N1");
  ASSERT_NE(raw.auth_secret, nullptr);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(raw.auth_secret), raw.auth_secret_len), std::string("k\0ey", 4));
  EXPECT_EQ(raw.call_timeout_ms, 1234u);
  EXPECT_EQ(raw.call_cache_limit, 7u);
  const xxnet::Config copy(raw);  // copies the strings
  const xxnet_config again = copy.raw();
  EXPECT_STREQ(again.node_name, "N1");
  EXPECT_NE(again.node_name, raw.node_name);
  EXPECT_EQ(again.auth_secret_len, 4u);
  EXPECT_EQ(xxnet::Config().raw().node_name, nullptr);
  EXPECT_THROW({ Context bad(xxnet::Config().node_name("bad name")); }, xxnet::Error);
  EXPECT_THROW({ Context bad(xxnet::Config().auth_secret(std::string())); }, xxnet::Error);
  // Two nodes with one secret call each other.
  Member a("A", xxnet::Config().auth_secret("s3cret")), b("B", xxnet::Config().auth_secret("s3cret"));
  meet({&a, &b});
  ASSERT_TRUE(b.ctx.serve("echo", [](Request& r) { (void)r.reply(XXNET_OK, r.data()); }).ok());
  Outcome o;
  (void)a.ctx.call("B", "echo", "authenticated", o.cb()).check();
  ASSERT_TRUE(dispatch_until({&a, &b}, [&] { return o.runs > 0; }));
  EXPECT_EQ(o.code, XXNET_OK);
  EXPECT_EQ(o.reply, "authenticated");
}

}  // namespace
