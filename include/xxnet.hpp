// xxnet.hpp: a header-only C++17 wrapper over the C ABI in xxnet.h.
//
//   xxnet::Context server;                       // throws xxnet::Error on failure
//   uint16_t port = server.listen("127.0.0.1");  // port 0: pick one
//   server.route(7, [&](const xxnet::Event& e) {
//     auto r = server.send_conn(e.conn(), e.data(), {e.lane(), e.msg_id()});  // echo
//     if (r.would_block()) { /* keep it and retry on Kind::Writable */ }
//   });
//   for (;;) server.dispatch(256, 100);          // run handlers, wait up to 100 ms
//
// Remote calls between named nodes (see "Remote calls" below):
//
//   xxnet::Context a(xxnet::Config().node_name("A")), b(xxnet::Config().node_name("B"));
//   b.cluster_set("B", "127.0.0.1:" + std::to_string(b.listen("127.0.0.1"))).check();
//   a.cluster_set("B", "127.0.0.1:...").check();             // or a.cluster_load("clustername.lua")
//   b.serve("echo", [](xxnet::Request& req) { (void)req.reply(XXNET_OK, req.data()); });
//   a.call("B", "echo", "hi", [](int code, std::string_view reply) { /* once */ }).check();
//
// Downloads between named nodes (see "Downloads" below):
//
//   b.files_serve("/srv/assets").check();                    // serve by content (md5 + size)
//   xxnet::Context a(xxnet::Config().node_name("A").download_dir("/var/cache/a"));
//   a.download("B", md5_hex, "maps/world.bin", size, [](xxnet::Download& d) {
//     if (d.ok()) load(d.path());                            // once; the file is released after
//   }, [](uint64_t done, uint64_t total) { /* progress, <= 4/s */ }).check();
//
// Error policy
//   * Throws xxnet::Error (a std::runtime_error carrying the XXNET_E_* code):
//     creating a Context (bad config, ABI mismatch), listen(), timer(),
//     stats(), files_stats(), set_log_handler(), and poll()/dispatch() called
//     from inside a handler (XXNET_E_REENTRANT). These are setup or
//     programming errors.
//   * Returns a [[nodiscard]] Result (ok(), code(), would_block(), message(),
//     error_code(), check() to throw instead): every send, close(),
//     set_user_data(), call(), cast(), serve(), reply(), files_serve(),
//     download(), download_cancel(), download_release() and the cluster_*()
//     calls (whose DetailedResult adds the library's explanation, detail()).
//     Their failures are ordinary flow in a game server:
//     XXNET_E_WOULD_BLOCK is back-pressure (wait for Kind::Writable), and
//     XXNET_E_UNKNOWN_CONN is a peer that just left.
//   * conn_info() returns std::optional (empty for an unknown connection).
//
// Handlers and dispatch
//   on(), route(), route_default() and timer() take any callable. They run
//   only inside dispatch() (or handle()), on the calling thread, and are
//   implemented in C++ on top of xxnet_poll_recv — xxnet_on/xxnet_dispatch
//   are not used — so handlers may throw: the exception leaves dispatch(),
//   and the events after the throwing one stay pending; the next dispatch()
//   or poll() delivers them first, payloads intact (no poll happened). A
//   handler may call anything on its context (send, close, on, route, timer,
//   cancel, call, cast, serve, reply, cluster_*, files_serve, download*,
//   shutdown, even replace or remove itself) except poll()/dispatch() (throws Error(XXNET_E_REENTRANT))
//   and destroying or moving the Context.
//   MESSAGE events go to their route, else the default route, else the
//   on(Kind::Message) handler, else are dropped, as with xxnet_dispatch.
//   CALL_RESULT events go to their call()'s callback, CALL_REQUEST events to
//   the serve() handler of their service, DOWNLOAD_DONE / DOWNLOAD_FAILED to
//   their download()'s on_done and DOWNLOAD_PROGRESS to its on_progress; each
//   falls back to on(kind) (a download started without a callback, or
//   through native()).
//
// Remote calls
//   Name the node (Config::node_name), fill the cluster directory
//   (cluster_load / cluster_set), serve() services and call() them. A call()
//   that returns ok() runs its callback exactly once, from dispatch(): with
//   the reply, the callee's own positive code, or an XXNET_E_* outcome
//   (TIMEOUT, NO_SERVICE, NODE_DOWN...). A call() that fails (UNKNOWN_NODE,
//   TOO_LARGE, INVALID_ARG, WOULD_BLOCK, SHUTDOWN) never runs it. shutdown()
//   and the destructor (also reset() and move-assignment) stop the network
//   first, so every callback still pending runs once with XXNET_E_SHUTDOWN
//   before the context is freed. The destructor runs only those callbacks
//   (no other handler) and swallows their exceptions: a callback that may
//   outlive the objects it captures must not touch them on XXNET_E_SHUTDOWN,
//   or call shutdown() before those objects die.
//
// Downloads
//   A node files_serve()s directories; another, configured with a cache
//   directory (Config::download_dir), download()s content from it by md5 and
//   size (the name is only a hint for the source). A download() that returns
//   ok() runs its on_done exactly once, from dispatch(), with a Download:
//   ok() and path() (the file in the cache) on success, else code() says why
//   (TIMEOUT, NODE_DOWN, NO_CONTENT, CHECKSUM, SIZE_MISMATCH, NO_SPACE, DISK,
//   CANCELLED after download_cancel(), SHUTDOWN). Like a pending call, a
//   pending download gets XXNET_E_SHUTDOWN from shutdown(), the destructor,
//   reset() and move-assignment. A download() that fails at once (BAD_PATH,
//   NO_SPACE, UNKNOWN_NODE, INVALID_ARG without a download_dir, SHUTDOWN,
//   NULL_POINTER for a moved-from Context) never runs it.
//   RELEASE: the library keeps a finished file from eviction until it is
//   released. With an on_done, the wrapper releases it when on_done returns
//   (or throws): read, copy or open the file inside on_done (an open file
//   survives a later eviction). To keep the hold, call Download::keep() in
//   on_done and download_release(task) later. Without an on_done (nullptr)
//   the Kind::DownloadDone event goes to on(Kind::DownloadDone) and
//   releasing it is up to the host (download_release(e.task())).
//
// Lifetimes and threads
//   Event::data(), path(), node() and service() (and Events returned by poll(), and
//   the same accessors of a Request) are borrowed: valid until the next
//   poll()/dispatch() on the context or its destruction. Copy what you keep
//   (std::string(e.data())). Event::peer_ip() lives in the Event. A Request
//   kept to answer later must not outlive its Context.
//   A Context belongs to one thread at a time; it is not thread-safe.
//   Handlers that capture the Context by reference must not outlive it, and
//   the Context must not be moved while they are registered.
#pragma once

#include "xxnet.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

static_assert(XXNET_ABI_VERSION == 3, "xxnet.hpp was written for ABI 3 of xxnet.h: review it before raising");

namespace xxnet {

using ConnId = uint64_t;   ///< A connection (session) id; never 0 for a real one.
using TimerId = uint64_t;  ///< A timer id from Context::timer(); never 0.
using TaskId = uint64_t;   ///< A download task from Context::download(); never 0.
using Stats = xxnet_stats_t;
using FileStats = xxnet_file_stats;  ///< Download counters, from Context::files_stats().

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// std::error_category for XXNET_E_* codes (message() is xxnet_strerror).
class ErrorCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "xxnet"; }
  std::string message(int code) const override { return xxnet_strerror(code); }
};
inline const std::error_category& category() noexcept {
  static const ErrorCategory c;
  return c;
}

/// Thrown by the calls listed in the error policy above.
class Error : public std::runtime_error {
 public:
  /// what() is "<context>: <xxnet_strerror(code)> (<code>)".
  Error(int code, const std::string& context)
      : std::runtime_error(context + ": " + xxnet_strerror(code) + " (" + std::to_string(code) + ")"), code_(code) {}
  int code() const noexcept { return code_; }                  ///< The XXNET_E_* code.
  const char* text() const noexcept { return xxnet_strerror(code_); }  ///< xxnet_strerror(code()).
  std::error_code error_code() const noexcept { return {code_, category()}; }

 private:
  int code_;
};

/// The outcome of a call whose failure is ordinary flow. [[nodiscard]]: a
/// dropped Result is a compiler warning; write `(void)` to ignore one on purpose.
class [[nodiscard]] Result {
 public:
  constexpr explicit Result(int code = XXNET_OK) noexcept : code_(code) {}
  bool ok() const noexcept { return code_ == XXNET_OK; }
  explicit operator bool() const noexcept { return ok(); }
  int code() const noexcept { return code_; }
  /// Back-pressure: nothing was queued; retry after a Kind::Writable event.
  bool would_block() const noexcept { return code_ == XXNET_E_WOULD_BLOCK; }
  const char* message() const noexcept { return xxnet_strerror(code_); }
  std::error_code error_code() const noexcept { return ok() ? std::error_code() : std::error_code(code_, category()); }
  /// Throws Error unless ok(): `ctx.send_conn(c, data).check();`
  void check(const char* context = "xxnet") const {
    if (!ok()) throw Error(code_, context);
  }

 private:
  int code_;
};
using SendResult = Result;

/// Result of a need-ack send: id() is matched by exactly one Kind::Delivered
/// or Kind::Expired event (Event::id()).
class [[nodiscard]] AckResult : public Result {
 public:
  constexpr AckResult(int code, uint64_t id) noexcept : Result(code), id_(code == XXNET_OK ? id : 0) {}
  uint64_t id() const noexcept { return id_; }  ///< 0 unless ok().
  /// Throws Error unless ok(); returns the id.
  uint64_t check(const char* context = "xxnet") const {
    Result::check(context);
    return id_;
  }

 private:
  uint64_t id_;
};

/// Result of Context::call(): when ok(), session() names the call (the
/// Event::session() of its Kind::CallResult event) and its callback will run
/// exactly once; otherwise the callback never runs.
class [[nodiscard]] CallResult : public Result {
 public:
  constexpr CallResult(int code, uint64_t session) noexcept
      : Result(code), session_(code == XXNET_OK ? session : 0) {}
  uint64_t session() const noexcept { return session_; }  ///< 0 unless ok().
  /// Throws Error unless ok(); returns the session.
  uint64_t check(const char* context = "xxnet") const {
    Result::check(context);
    return session_;
  }

 private:
  uint64_t session_;
};

/// Result of Context::download(): when ok(), task() names the download (the
/// Event::task() of its events, the argument of download_cancel() and
/// download_release()) and its on_done will run exactly once; otherwise it never runs.
class [[nodiscard]] DownloadResult : public Result {
 public:
  constexpr DownloadResult(int code, TaskId task) noexcept : Result(code), task_(code == XXNET_OK ? task : 0) {}
  TaskId task() const noexcept { return task_; }  ///< 0 unless ok().
  /// Throws Error unless ok(); returns the task.
  TaskId check(const char* context = "xxnet") const {
    Result::check(context);
    return task_;
  }

 private:
  TaskId task_;
};

/// Result of a cluster directory call (Context::cluster_load, cluster_reload,
/// cluster_set, cluster_remove). On failure detail() is the library's
/// explanation (xxnet_last_error()): for XXNET_E_CLUSTER_FILE one
/// "file:line: what" line per malformed line.
class [[nodiscard]] DetailedResult : public Result {
 public:
  explicit DetailedResult(int code = XXNET_OK, std::string detail = {}) : Result(code), detail_(std::move(detail)) {}
  const std::string& detail() const noexcept { return detail_; }  ///< Empty when ok().
  /// Throws Error unless ok(); its what() includes detail().
  void check(const char* context = "xxnet") const {
    if (!ok()) throw Error(code(), detail_.empty() ? std::string(context) : std::string(context) + ": " + detail_);
  }

 private:
  std::string detail_;
};

// ---------------------------------------------------------------------------
// Version, ABI, logging
// ---------------------------------------------------------------------------

inline std::string_view version() noexcept { return xxnet_version(); }  ///< e.g. "0.1.0"
inline bool abi_compatible() noexcept { return xxnet_abi_version() == XXNET_ABI_VERSION; }
/// Throws Error(XXNET_E_INTERNAL) when the loaded library implements another
/// ABI than this header. Every Context constructor calls it.
inline void check_abi() {
  if (!abi_compatible())
    throw Error(XXNET_E_INTERNAL, "xxnet: the loaded libxxnet implements ABI " + std::to_string(xxnet_abi_version()) +
                                      ", xxnet.h is ABI " + std::to_string(XXNET_ABI_VERSION));
}

/// level is XXNET_LOG_*; both strings are valid during the call only.
using LogHandler = std::function<void(int level, std::string_view target, std::string_view message)>;

namespace detail {
struct LogSink {
  LogHandler fn;
};
inline std::mutex& log_mutex() {
  static std::mutex m;
  return m;
}
// The installed sink; deliberately never freed at exit (reactor threads of
// contexts still alive then may log), replaced ones are freed.
inline LogSink*& log_sink() {
  static LogSink* sink = nullptr;
  return sink;
}
inline void log_trampoline(int level, const char* target, const char* message, void* user) noexcept {
  try {  // an exception must not unwind into the library
    static_cast<LogSink*>(user)->fn(level, target ? target : "", message ? message : "");
  } catch (...) {
  }
}
}  // namespace detail

/// Routes xxnet's log lines (process-wide, all contexts) with level <=
/// max_level to `fn`; an empty `fn` restores the default (stderr).
/// THREAD-SAFETY: `fn` runs on whichever thread logs — usually a context's
/// reactor thread, possibly several at once — so it must be thread-safe and
/// quick, must not call into xxnet, and its exceptions are swallowed. Once
/// set_log_handler() returns, the previous handler is no longer running and
/// is destroyed (the library swaps handlers under a write lock). Throws
/// Error(XXNET_E_INVALID_ARG) for a level outside XXNET_LOG_OFF..XXNET_LOG_TRACE.
inline void set_log_handler(LogHandler fn, int max_level = XXNET_LOG_INFO) {
  std::lock_guard<std::mutex> lock(detail::log_mutex());
  auto fresh = fn ? std::make_unique<detail::LogSink>(detail::LogSink{std::move(fn)}) : nullptr;
  int rc = xxnet_set_log_handler(fresh ? &detail::log_trampoline : nullptr, fresh.get(), max_level);
  if (rc != XXNET_OK) throw Error(rc, "xxnet::set_log_handler");
  delete std::exchange(detail::log_sink(), fresh.release());
}

// ---------------------------------------------------------------------------
// Values: config, send options, events, connection info
// ---------------------------------------------------------------------------

/// Context settings, starting from xxnet_config_default; chain the setters:
/// `xxnet::Context ctx(xxnet::Config().max_message_size(1 << 20).idle_timeout_ms(0));`
/// Invalid values make the Context constructor throw Error(XXNET_E_INVALID_ARG).
class Config {
 public:
  Config() noexcept {
    std::memset(&c_, 0, sizeof c_);
    xxnet_config_default(&c_);
  }
  explicit Config(const xxnet_config& raw) : c_(raw) {
    if (raw.advertise_ip != nullptr) advertise_ip_ = raw.advertise_ip;
    if (raw.node_name != nullptr) node_name_ = raw.node_name;
    if (raw.auth_secret != nullptr)
      auth_secret_ = std::string(reinterpret_cast<const char*>(raw.auth_secret), raw.auth_secret_len);
    if (raw.download_dir != nullptr) download_dir_ = raw.download_dir;
  }
  // One setter per xxnet_config field; see xxnet.h for meanings and defaults.
  Config& max_connections(uint32_t v) noexcept { return set(c_.max_connections, v); }
  Config& max_message_size(uint64_t v) noexcept { return set(c_.max_message_size, v); }
  Config& fragment_size(uint32_t v) noexcept { return set(c_.fragment_size, v); }
  Config& connect_timeout_ms(uint32_t v) noexcept { return set(c_.connect_timeout_ms, v); }
  Config& handshake_timeout_ms(uint32_t v) noexcept { return set(c_.handshake_timeout_ms, v); }
  Config& recv_queue_limit(uint64_t v) noexcept { return set(c_.recv_queue_limit, v); }
  Config& reconnect_min_ms(uint32_t v) noexcept { return set(c_.reconnect_min_ms, v); }
  Config& reconnect_max_ms(uint32_t v) noexcept { return set(c_.reconnect_max_ms, v); }
  Config& reconnect_give_up_ms(uint32_t v) noexcept { return set(c_.reconnect_give_up_ms, v); }
  Config& idle_timeout_ms(uint32_t v) noexcept { return set(c_.idle_timeout_ms, v); }
  Config& send_high_water(uint64_t v) noexcept { return set(c_.send_high_water, v); }
  Config& send_low_water(uint64_t v) noexcept { return set(c_.send_low_water, v); }
  Config& ack_timeout_ms(uint32_t v) noexcept { return set(c_.ack_timeout_ms, v); }
  Config& call_timeout_ms(uint32_t v) noexcept { return set(c_.call_timeout_ms, v); }
  Config& call_cache_limit(uint32_t v) noexcept { return set(c_.call_cache_limit, v); }
  Config& socket_recv_buffer(uint32_t v) noexcept { return set(c_.socket_recv_buffer, v); }
  Config& download_quota(uint64_t v) noexcept { return set(c_.download_quota, v); }
  Config& download_timeout_ms(uint32_t v) noexcept { return set(c_.download_timeout_ms, v); }
  Config& download_block_size(uint32_t v) noexcept { return set(c_.download_block_size, v); }
  Config& download_window(uint32_t v) noexcept { return set(c_.download_window, v); }
  Config& download_rate_limit(uint64_t v) noexcept { return set(c_.download_rate_limit, v); }
  Config& io_threads(uint32_t v) noexcept { return set(c_.io_threads, v); }
  Config& advertise_ip(std::optional<std::string> ip) {
    advertise_ip_ = std::move(ip);
    return *this;
  }
  /// This node's name in the cluster directory (announced to the nodes it calls).
  Config& node_name(std::optional<std::string> name) {
    node_name_ = std::move(name);
    return *this;
  }
  /// The cluster's shared secret (any bytes, not empty); std::nullopt: none.
  Config& auth_secret(std::optional<std::string> secret) {
    auth_secret_ = std::move(secret);
    return *this;
  }
  /// The download cache directory (created if missing); std::nullopt (the
  /// default): none, and download() fails with XXNET_E_INVALID_ARG.
  Config& download_dir(std::optional<std::string> dir) {
    download_dir_ = std::move(dir);
    return *this;
  }
  /// The C struct; its advertise_ip, node_name, auth_secret and download_dir point into
  /// *this (valid while it lives unchanged; xxnet_new reads them only while it runs).
  xxnet_config raw() const noexcept {
    xxnet_config c = c_;
    c.advertise_ip = advertise_ip_ ? advertise_ip_->c_str() : nullptr;
    c.node_name = node_name_ ? node_name_->c_str() : nullptr;
    c.auth_secret = auth_secret_ ? reinterpret_cast<const uint8_t*>(auth_secret_->data()) : nullptr;
    c.auth_secret_len = auth_secret_ ? auth_secret_->size() : 0;
    c.download_dir = download_dir_ ? download_dir_->c_str() : nullptr;
    return c;
  }

 private:
  template <class T>
  Config& set(T& field, T v) noexcept {
    field = v;
    return *this;
  }
  xxnet_config c_;
  std::optional<std::string> advertise_ip_;
  std::optional<std::string> node_name_;
  std::optional<std::string> auth_secret_;
  std::optional<std::string> download_dir_;
};

/// Per-send options; an aggregate: `{lane, msg_id}` or `SendOptions{}.with_msg_id(7)`.
struct SendOptions {
  uint32_t lane = XXNET_LANE_DEFAULT;  ///< 0..XXNET_LANES-1; order is kept per lane.
  uint32_t msg_id = 0;                 ///< Route id delivered with the message.
  uint32_t ack_timeout_ms = 0;         ///< Need-ack sends only; 0: the config's ack_timeout_ms.
  /// More sends follow at once (XXNET_SEND_MORE): no reactor wakeup for this one; the next
  /// send without it, Context::flush() or the next poll/dispatch hands the burst over.
  bool more = false;
  SendOptions& with_more(bool v = true) noexcept {
    more = v;
    return *this;
  }
  SendOptions& with_lane(uint32_t v) noexcept {
    lane = v;
    return *this;
  }
  SendOptions& with_msg_id(uint32_t v) noexcept {
    msg_id = v;
    return *this;
  }
  SendOptions& with_ack_timeout_ms(uint32_t v) noexcept {
    ack_timeout_ms = v;
    return *this;
  }
  xxnet_send_opts raw() const noexcept {
    xxnet_send_opts o;
    std::memset(&o, 0, sizeof o);
    o.lane = lane;
    o.msg_id = msg_id;
    o.ack_timeout_ms = ack_timeout_ms;
    o.flags = more ? XXNET_SEND_MORE : 0u;
    return o;
  }
};

/// Options of a call or cast; an aggregate: `{lane, timeout_ms}` or `CallOptions{}.with_timeout_ms(500)`.
struct CallOptions {
  uint32_t lane = XXNET_LANE_DEFAULT;  ///< 0..XXNET_LANES-1; the reply travels on the request's lane.
  uint32_t timeout_ms = 0;             ///< Calls only; 0: the config's call_timeout_ms.
  CallOptions& with_lane(uint32_t v) noexcept {
    lane = v;
    return *this;
  }
  CallOptions& with_timeout_ms(uint32_t v) noexcept {
    timeout_ms = v;
    return *this;
  }
  xxnet_call_opts raw() const noexcept {
    xxnet_call_opts o;
    std::memset(&o, 0, sizeof o);
    o.lane = lane;
    o.timeout_ms = timeout_ms;
    return o;
  }
};

/// XXNET_EVENT_* as an enum; see xxnet.h for which Event fields each kind fills.
enum class Kind : uint32_t {
  None = XXNET_EVENT_NONE,
  Message = XXNET_EVENT_MESSAGE,
  Connected = XXNET_EVENT_CONNECTED,
  Disconnected = XXNET_EVENT_DISCONNECTED,
  SendFailed = XXNET_EVENT_SEND_FAILED,
  ConnectFailed = XXNET_EVENT_CONNECT_FAILED,
  Error = XXNET_EVENT_ERROR,
  Delivered = XXNET_EVENT_DELIVERED,
  Expired = XXNET_EVENT_EXPIRED,
  Writable = XXNET_EVENT_WRITABLE,
  LinkDown = XXNET_EVENT_LINK_DOWN,
  LinkUp = XXNET_EVENT_LINK_UP,
  Timer = XXNET_EVENT_TIMER,
  CallRequest = XXNET_EVENT_CALL_REQUEST,
  CallResult = XXNET_EVENT_CALL_RESULT,
  NodeChanged = XXNET_EVENT_NODE_CHANGED,
  DownloadProgress = XXNET_EVENT_DOWNLOAD_PROGRESS,
  DownloadDone = XXNET_EVENT_DOWNLOAD_DONE,
  DownloadFailed = XXNET_EVENT_DOWNLOAD_FAILED,
};
constexpr size_t kKindCount = XXNET_EVENT_DOWNLOAD_FAILED + 1;

inline const char* to_string(Kind k) noexcept {
  static const char* const names[kKindCount] = {
      "None",     "Message", "Connected", "Disconnected", "SendFailed",  "ConnectFailed",
      "Error",    "Delivered", "Expired", "Writable",     "LinkDown",    "LinkUp",
      "Timer",    "CallRequest", "CallResult", "NodeChanged", "DownloadProgress", "DownloadDone",
      "DownloadFailed"};
  auto i = static_cast<size_t>(k);
  return i < kKindCount ? names[i] : "Unknown";
}

/// One event: a copy of the xxnet_event. Everything in it is owned by the
/// Event except the payload, data(), which is borrowed (see the top comment).
class Event {
 public:
  Event() noexcept { std::memset(&e_, 0, sizeof e_); }
  explicit Event(const xxnet_event& e) noexcept : e_(e) { e_.peer_ip[sizeof e_.peer_ip - 1] = '\0'; }

  Kind kind() const noexcept { return static_cast<Kind>(e_.kind); }
  int code() const noexcept { return e_.code; }            ///< XXNET_OK or why (Disconnected, SendFailed...).
  ConnId conn() const noexcept { return e_.conn; }
  std::string_view peer_ip() const noexcept { return e_.peer_ip; }
  uint16_t peer_port() const noexcept { return e_.peer_port; }
  uint32_t lane() const noexcept { return e_.lane; }
  uint32_t msg_id() const noexcept { return e_.msg_id; }
  /// The payload of a Message; borrowed until the next poll()/dispatch().
  std::string_view data() const noexcept {
    return e_.data ? std::string_view(reinterpret_cast<const char*>(e_.data), e_.len) : std::string_view();
  }
  const uint8_t* bytes() const noexcept { return e_.data; }
  size_t size() const noexcept { return e_.len; }
  /// Need-ack id, timer id, Connected: 1 if we initiated, CallRequest: reply token,
  /// CallResult: the call's session, NodeChanged: XXNET_NODE_ADDED / MOVED / REMOVED.
  uint64_t id() const noexcept { return e_.id; }
  uint64_t count() const noexcept { return e_.count; }
  uint64_t total() const noexcept { return e_.total; }
  uint64_t user_data() const noexcept { return e_.user_data; }
  bool initiated() const noexcept { return kind() == Kind::Connected && e_.id == 1; }
  std::string peer() const { return std::string(peer_ip()) + ":" + std::to_string(e_.peer_port); }
  /// CallRequest: the calling node ("" for an unnamed client); CallResult: the
  /// node called; NodeChanged: the node. "" otherwise. Borrowed like data().
  std::string_view node() const noexcept { return e_.node ? e_.node : ""; }
  /// CallRequest: the service called (also SendFailed of a cast refused with
  /// XXNET_E_NO_SERVICE). "" otherwise. Borrowed like data().
  std::string_view service() const noexcept { return e_.service ? e_.service : ""; }
  /// CallRequest: the reply token (0 for a cast, and for other kinds).
  uint64_t token() const noexcept { return kind() == Kind::CallRequest ? e_.id : 0; }
  /// CallResult: the call's session, as CallResult::session() returned it (0 for other kinds).
  uint64_t session() const noexcept { return kind() == Kind::CallResult ? e_.id : 0; }
  /// DownloadProgress / DownloadDone / DownloadFailed: the task, as
  /// DownloadResult::task() returned it (0 for other kinds). count() is then
  /// the bytes in the cache, total() the file's size, node() the source node.
  TaskId task() const noexcept { return is_download() ? e_.id : 0; }
  bool is_download() const noexcept {
    return kind() == Kind::DownloadProgress || kind() == Kind::DownloadDone || kind() == Kind::DownloadFailed;
  }
  /// DownloadDone: the file's local path (borrowed like data()); "" for other kinds.
  std::string_view path() const noexcept { return kind() == Kind::DownloadDone ? data() : std::string_view(); }
  const xxnet_event& raw() const noexcept { return e_; }

 private:
  xxnet_event e_;
};

/// A batch of events returned by Context::poll(); valid until the next poll()/dispatch().
class Events {
 public:
  Events() noexcept = default;
  Events(const Event* b, const Event* e) noexcept : b_(b), e_(e) {}
  const Event* begin() const noexcept { return b_; }
  const Event* end() const noexcept { return e_; }
  size_t size() const noexcept { return static_cast<size_t>(e_ - b_); }
  bool empty() const noexcept { return b_ == e_; }
  const Event& operator[](size_t i) const noexcept { return b_[i]; }

 private:
  const Event* b_ = nullptr;
  const Event* e_ = nullptr;
};

enum class PeerState : uint32_t {
  Connecting = XXNET_PEER_CONNECTING,
  Connected = XXNET_PEER_CONNECTED,
  Reconnecting = XXNET_PEER_RECONNECTING,
};

/// A session's state (xxnet_peer_info), from Context::conn_info().
struct ConnInfo {
  PeerState state;
  uint32_t attempts;
  uint64_t queued_msgs, queued_bytes, unacked_msgs, unacked_bytes, oldest_unacked_ms;
  std::string peer_ip;
  uint16_t peer_port;
};

namespace detail {
/// A payload pointer for the C API: never NULL, even for an empty message.
inline const uint8_t* bytes_of(std::string_view d) noexcept {
  static const uint8_t empty = 0;
  return d.data() ? reinterpret_cast<const uint8_t*>(d.data()) : &empty;
}
}  // namespace detail

class Context;

/// A call or cast received by a service that Context::serve() routes to a
/// handler. A small copyable handle: keep a copy (for example in the callback
/// of a call of your own) to answer later. All copies name one request,
/// answered once: a second reply() returns XXNET_E_UNKNOWN_TOKEN. node(),
/// service() and data() are borrowed like Event::data() (valid until the
/// next poll()/dispatch()); token() and reply() stay usable until answered.
/// A Request must not outlive its Context.
class Request {
 public:
  std::string_view node() const noexcept { return ev_.node(); }  ///< The caller ("" for an unnamed client).
  std::string_view service() const noexcept { return ev_.service(); }
  std::string_view data() const noexcept { return ev_.data(); }
  uint32_t lane() const noexcept { return ev_.lane(); }  ///< The reply travels on this lane.
  ConnId conn() const noexcept { return ev_.conn(); }    ///< The caller's session.
  uint64_t token() const noexcept { return ev_.token(); }  ///< 0 for a cast.
  bool is_cast() const noexcept { return ev_.token() == 0; }  ///< A cast wants no reply.
  const Event& event() const noexcept { return ev_; }

  /// Answers with `code` (XXNET_OK or a positive code of the host's own: the
  /// caller's callback gets it) and a copy of `data` (xxnet_reply). Fails with
  /// XXNET_E_UNKNOWN_TOKEN (already answered, or a cast),
  /// XXNET_E_UNKNOWN_CONN (the caller's session ended), XXNET_E_TOO_LARGE
  /// (still unanswered: answer again, smaller), XXNET_E_INVALID_ARG (a
  /// negative code), XXNET_E_SHUTDOWN.
  Result reply(int code, std::string_view data = {}) const {
    return Result(xxnet_reply(ctx_, ev_.token(), code, detail::bytes_of(data), data.size()));
  }

 private:
  friend class Context;
  Request(xxnet_ctx* ctx, const Event& ev) noexcept : ctx_(ctx), ev_(ev) {}
  xxnet_ctx* ctx_;
  Event ev_;
};

/// The outcome of one Context::download(), handed once to its on_done. All
/// of it is owned (copied from the event), so it may be kept after on_done
/// returns; the file behind path() may be evicted once released (see keep()).
class Download {
 public:
  TaskId task() const noexcept { return task_; }
  /// XXNET_OK, or why it failed (XXNET_E_TIMEOUT, _NODE_DOWN, _NO_CONTENT,
  /// _CHECKSUM, _SIZE_MISMATCH, _NO_SPACE, _DISK, _CANCELLED, _SHUTDOWN...).
  int code() const noexcept { return code_; }
  bool ok() const noexcept { return code_ == XXNET_OK; }
  explicit operator bool() const noexcept { return ok(); }
  const char* message() const noexcept { return xxnet_strerror(code_); }
  /// The file in the download cache; empty unless ok().
  const std::string& path() const noexcept { return path_; }
  uint64_t size() const noexcept { return size_; }  ///< The content's size in bytes.
  /// Bytes in the cache: size() when ok(); on failure what a later download resumes from.
  uint64_t bytes_done() const noexcept { return done_; }
  /// The source node (as given to download()).
  const std::string& node() const noexcept { return node_; }
  /// Keeps the library's hold on the file after on_done returns (no effect
  /// unless ok()): it is never evicted until Context::download_release(task()).
  void keep() noexcept { keep_ = true; }
  bool kept() const noexcept { return keep_; }

 private:
  friend class Context;
  Download(TaskId task, int code, std::string path, uint64_t size, uint64_t done, std::string node)
      : task_(task), code_(code), path_(std::move(path)), size_(size), done_(done), node_(std::move(node)) {}
  TaskId task_;
  int code_;
  std::string path_;
  uint64_t size_;
  uint64_t done_;
  std::string node_;
  bool keep_ = false;
};

// ---------------------------------------------------------------------------
// Context
// ---------------------------------------------------------------------------

/// RAII owner of an xxnet_ctx (one reactor thread). Move-only; a moved-from
/// Context is inert: valid() is false, sends return XXNET_E_NULL_POINTER,
/// poll()/dispatch() return nothing, throwing calls throw that code.
class Context {
 public:
  using Handler = std::function<void(const Event&)>;
  /// The callback of one call(): gets its Kind::CallResult event.
  using CallHandler = std::function<void(const Event&)>;
  /// The handler of a served service: gets each request (see Request).
  using ServiceHandler = std::function<void(Request&)>;
  /// The on_done of one download(): gets its outcome, once.
  using DownloadHandler = std::function<void(Download&)>;
  /// The on_progress of one download(): bytes in the cache and the size.
  using ProgressHandler = std::function<void(uint64_t done, uint64_t total)>;

  /// Creates the context; throws Error (XXNET_E_INVALID_ARG for a bad config,
  /// XXNET_E_INTERNAL otherwise, what() says why) or on an ABI mismatch.
  explicit Context(const Config& cfg = Config()) { open(cfg.raw()); }
  explicit Context(const xxnet_config& cfg) { open(cfg); }
  Context(Context&&) noexcept = default;
  /// Frees the context it held (as the destructor does), then takes `o`'s.
  Context& operator=(Context&& o) noexcept {
    if (this != &o) {
      close_now();
      p_ = std::move(o.p_);
    }
    return *this;
  }
  /// Runs the callbacks of calls and downloads still pending
  /// (XXNET_E_SHUTDOWN), then xxnet_free: joins the reactor thread.
  ~Context() { close_now(); }

  bool valid() const noexcept { return p_ != nullptr; }
  explicit operator bool() const noexcept { return valid(); }
  /// The C handle (nullptr when moved-from), to call the C API directly.
  xxnet_ctx* native() const noexcept { return p_ ? p_->ctx : nullptr; }
  /// Frees the context now (as the destructor does); *this becomes inert.
  void reset() noexcept { close_now(); }

  /// Listens on a numeric IPv4/IPv6 address; port 0 picks one. Returns the bound port; throws Error.
  uint16_t listen(std::string_view ip, uint16_t port = 0) {
    CStr cip(ip);
    uint16_t bound = 0;
    int rc = cip.ok ? xxnet_listen(native(), cip.buf, port, &bound) : XXNET_E_INVALID_ARG;
    if (rc != XXNET_OK) throw Error(rc, "xxnet::Context::listen(" + std::string(ip) + ":" + std::to_string(port) + ")");
    return bound;
  }

  /// Queues a copy of `data` for the peer listening at ip:port (xxnet_send_ex).
  SendResult send(std::string_view ip, uint16_t port, std::string_view data, const SendOptions& o = {}) {
    CStr cip(ip);
    const xxnet_send_opts so = o.raw();
    return Result(cip.ok ? xxnet_send_ex(native(), cip.buf, port, bytes(data), data.size(), &so) : XXNET_E_INVALID_ARG);
  }
  /// Queues a copy of `data` on a known connection (xxnet_send_conn_ex).
  SendResult send_conn(ConnId conn, std::string_view data, const SendOptions& o = {}) {
    const xxnet_send_opts so = o.raw();
    return Result(xxnet_send_conn_ex(native(), conn, bytes(data), data.size(), &so));
  }
  /// Like send(), and exactly one Delivered or Expired event with id() follows.
  AckResult send_need_ack(std::string_view ip, uint16_t port, std::string_view data, const SendOptions& o = {}) {
    CStr cip(ip);
    const xxnet_send_opts so = o.raw();
    uint64_t id = 0;
    int rc = cip.ok ? xxnet_send_need_ack(native(), cip.buf, port, bytes(data), data.size(), &so, &id)
                    : XXNET_E_INVALID_ARG;
    return AckResult(rc, id);
  }
  AckResult send_conn_need_ack(ConnId conn, std::string_view data, const SendOptions& o = {}) {
    const xxnet_send_opts so = o.raw();
    uint64_t id = 0;
    int rc = xxnet_send_conn_need_ack(native(), conn, bytes(data), data.size(), &so, &id);
    return AckResult(rc, id);
  }

  /// Closes a connection (SendFailed for what it held, then Disconnected).
  Result close(ConnId conn) { return Result(xxnet_close(native(), conn)); }
  /// Hands over the sends made with SendOptions::more (xxnet_flush).
  Result flush() { return Result(xxnet_flush(native())); }
  /// Attaches a value copied into user_data() of every later event of `conn`.
  Result set_user_data(ConnId conn, uint64_t value) { return Result(xxnet_conn_set_user_data(native(), conn, value)); }
  /// The session's state; empty for an unknown (or already disconnected) conn.
  [[nodiscard]] std::optional<ConnInfo> conn_info(ConnId conn) const {
    xxnet_peer_info pi;
    std::memset(&pi, 0, sizeof pi);
    if (xxnet_conn_info(native(), conn, &pi) != XXNET_OK) return std::nullopt;
    pi.peer_ip[sizeof pi.peer_ip - 1] = '\0';
    return ConnInfo{static_cast<PeerState>(pi.state), pi.attempts, pi.queued_msgs, pi.queued_bytes, pi.unacked_msgs,
                    pi.unacked_bytes, pi.oldest_unacked_ms, pi.peer_ip, pi.peer_port};
  }
  /// The context's counters; throws Error.
  [[nodiscard]] Stats stats() const {
    Stats s;
    std::memset(&s, 0, sizeof s);
    int rc = xxnet_stats(native(), &s);
    if (rc != XXNET_OK) throw Error(rc, "xxnet::Context::stats");
    return s;
  }
  /// The counters of reactor `index` alone (0 ≤ index < io_threads); throws Error.
  [[nodiscard]] Stats reactor_stats(uint32_t index) const {
    Stats s;
    std::memset(&s, 0, sizeof s);
    int rc = xxnet_reactor_stats(native(), index, &s);
    if (rc != XXNET_OK) throw Error(rc, "xxnet::Context::reactor_stats");
    return s;
  }

  /// Returns up to `max` (at most 1024) events, waiting up to timeout_ms (-1:
  /// forever) for the first. Handlers are NOT run, including timer()
  /// callbacks (their Kind::Timer events are returned; handle() runs them).
  [[nodiscard]] Events poll(int timeout_ms = 0, size_t max = 256) {
    if (!p_ || max == 0) return {};
    Impl& im = *p_;
    if (im.busy) throw Error(XXNET_E_REENTRANT, "xxnet::Context::poll inside a handler");
    if (im.next >= im.batch.size()) fill(im, max, timeout_ms);
    const Event* b = im.batch.data() + im.next;
    const size_t n = std::min(max, im.batch.size() - im.next);
    im.next += n;
    return Events(b, b + n);
  }

  /// Polls like poll() and runs the handlers of up to `max` events; returns
  /// how many events were handled (events without a handler count, and are dropped).
  size_t dispatch(size_t max = 256, int timeout_ms = 0) {
    if (!p_ || max == 0) return 0;
    Impl& im = *p_;
    if (im.busy) throw Error(XXNET_E_REENTRANT, "xxnet::Context::dispatch inside a handler");
    if (im.next >= im.batch.size()) fill(im, max, timeout_ms);
    Busy busy(im);
    size_t handled = 0;
    while (im.next < im.batch.size() && handled < max) {
      const Event& ev = im.batch[im.next++];  // advance first: a throwing handler's event is consumed
      ++handled;
      deliver(im, ev);
    }
    return handled;
  }

  /// Runs the handler `dispatch()` would run for `ev` (e.g. an event from poll()).
  void handle(const Event& ev) {
    if (!p_) return;
    Busy busy(*p_);
    deliver(*p_, ev);
  }

  /// Handler for events of `kind`; an empty function removes it.
  void on(Kind kind, Handler fn) {
    auto i = static_cast<size_t>(kind);
    if (p_ && i < kKindCount) p_->on[i] = wrap(std::move(fn));
  }
  /// Handler for MESSAGE events with this msg_id; an empty function removes it.
  void route(uint32_t msg_id, Handler fn) {
    if (!p_) return;
    if (fn) p_->routes[msg_id] = wrap(std::move(fn));
    else p_->routes.erase(msg_id);
  }
  /// Handler for MESSAGE events whose msg_id has no route; empty removes it.
  void route_default(Handler fn) {
    if (p_) p_->default_route = wrap(std::move(fn));
  }

  /// Calls `fn` (void() or void(TimerId)) from dispatch() after delay_ms, then
  /// every repeat_ms (0: once). Returns the id for cancel(); throws Error.
  template <class F>
  TimerId timer(uint32_t delay_ms, F&& fn, uint32_t repeat_ms = 0) {
    std::function<void(TimerId)> cb;
    if constexpr (std::is_invocable_v<std::decay_t<F>&, TimerId>) {
      cb = std::forward<F>(fn);
    } else {
      static_assert(std::is_invocable_v<std::decay_t<F>&>, "timer callback must be void() or void(xxnet::TimerId)");
      cb = [f = std::forward<F>(fn)](TimerId) mutable { f(); };
    }
    TimerId id = 0;
    int rc = xxnet_timer_start(native(), delay_ms, repeat_ms, kTimerTag, &id);
    if (rc != XXNET_OK) throw Error(rc, "xxnet::Context::timer");
    p_->timers[id] = std::make_shared<TimerEntry>(TimerEntry{std::move(cb), repeat_ms != 0});
    return id;
  }
  /// Stops a timer; after this its callback never runs again (even for an
  /// event already polled). Returns false if it was not live (e.g. a one-shot that fired).
  bool cancel(TimerId id) {
    if (!p_) return false;
    int rc = xxnet_timer_stop(p_->ctx, id);
    return p_->timers.erase(id) > 0 && rc == XXNET_OK;
  }

  // -------------------------------------------------------------------------
  // Remote calls between named nodes
  // -------------------------------------------------------------------------

  /// Loads the cluster directory from a clustername.lua file (`name =
  /// "ip:port"` lines); this node listens on its own entry. A malformed file
  /// changes nothing: XXNET_E_CLUSTER_FILE, detail() lists "file:line: what".
  DetailedResult cluster_load(std::string_view path) { return cluster(xxnet_cluster_load, path); }
  /// Hot reload: removed nodes lose their session (pending calls:
  /// XXNET_E_NODE_REMOVED), moved ones their old one (XXNET_E_NODE_MOVED),
  /// unchanged ones keep theirs. One Kind::NodeChanged event per change.
  DetailedResult cluster_reload(std::string_view path) { return cluster(xxnet_cluster_reload, path); }
  /// Adds node `name` at `addr` ("ip:port", "[v6]:port"), or moves it there.
  DetailedResult cluster_set(std::string_view name, std::string_view addr) {
    std::string n, a;
    if (!c_string(name, n) || !c_string(addr, a)) return DetailedResult(XXNET_E_INVALID_ARG, "NUL byte in a name or address");
    return detailed(xxnet_cluster_set(native(), n.c_str(), a.c_str()));
  }
  /// Removes node `name` from the directory (XXNET_E_UNKNOWN_NODE if absent).
  DetailedResult cluster_remove(std::string_view name) { return cluster(xxnet_cluster_remove, name); }

  /// Calls `service` on `node` with a copy of `data` (xxnet_call_ex). When the
  /// result is ok(), `on_result` runs exactly once, from dispatch() (or
  /// handle()): with the reply (code XXNET_OK), the callee's own positive
  /// code, or an XXNET_E_* outcome: TIMEOUT, NO_SERVICE, NODE_UNREACHABLE,
  /// NODE_DOWN, NODE_REMOVED, NODE_MOVED, WOULD_BLOCK (call cache full),
  /// SHUTDOWN (shutdown() or the destructor came first). When the call fails
  /// at once (UNKNOWN_NODE, TOO_LARGE, INVALID_ARG, WOULD_BLOCK, SHUTDOWN,
  /// NULL_POINTER for a moved-from Context) it never runs.
  /// `on_result` is void(const Event&) (the Kind::CallResult event: code(),
  /// data(), node(), session()) or void(int code, std::string_view reply);
  /// nullptr sends the result to the on(Kind::CallResult) handler instead.
  template <class F = std::nullptr_t>
  CallResult call(std::string_view node, std::string_view service, std::string_view data, F&& on_result = nullptr,
                  const CallOptions& o = {}) {
    CallHandler cb = call_handler(std::forward<F>(on_result));
    std::string n, svc;
    if (!c_string(node, n) || !c_string(service, svc)) return CallResult(XXNET_E_INVALID_ARG, 0);
    const xxnet_call_opts co = o.raw();
    uint64_t session = 0;
    int rc = xxnet_call_ex(native(), n.c_str(), svc.c_str(), bytes(data), data.size(), &co, &session);
    if (rc == XXNET_OK && cb) p_->calls.emplace(session, std::move(cb));
    return CallResult(rc, session);
  }

  /// Sends a copy of `data` to `service` on `node`, no reply expected
  /// (xxnet_cast_ex; o.timeout_ms is ignored). Its loss is reported by a
  /// Kind::SendFailed event (code XXNET_E_NO_SERVICE for a missing service).
  Result cast(std::string_view node, std::string_view service, std::string_view data, const CallOptions& o = {}) {
    std::string n, svc;
    if (!c_string(node, n) || !c_string(service, svc)) return Result(XXNET_E_INVALID_ARG);
    const xxnet_call_opts co = o.raw();
    return Result(xxnet_cast_ex(native(), n.c_str(), svc.c_str(), bytes(data), data.size(), &co));
  }

  /// Serves `service` (xxnet_service_register): each request for it (call or
  /// cast) runs `fn` from dispatch() with a Request to answer, at once or
  /// later. Serving a name already served replaces its handler. An empty `fn`
  /// stops serving it (xxnet_service_unregister): later requests get
  /// XXNET_E_NO_SERVICE; requests already queued, or already on their way
  /// (the library withdraws the service asynchronously), go to
  /// on(Kind::CallRequest) or are dropped (their callers time out). XXNET_E_INVALID_ARG for a name
  /// that is not an identifier of at most 128 bytes, or one registered
  /// through native().
  Result serve(std::string_view service, ServiceHandler fn) {
    std::string name;
    if (!c_string(service, name)) return Result(XXNET_E_INVALID_ARG);
    if (!p_) return Result(XXNET_E_NULL_POINTER);
    Impl& im = *p_;
    auto it = im.services.find(name);
    if (!fn) {
      int rc = xxnet_service_unregister(im.ctx, name.c_str());
      if (it != im.services.end()) im.services.erase(it);
      return Result(rc);
    }
    auto h = std::make_shared<const ServiceHandler>(std::move(fn));
    if (it != im.services.end()) {
      it->second = std::move(h);
      return Result(XXNET_OK);
    }
    int rc = xxnet_service_register(im.ctx, name.c_str());
    if (rc == XXNET_OK) im.services.emplace(std::move(name), std::move(h));
    return Result(rc);
  }

  /// Answers a request by its token (Event::token(), Request::token()); see Request::reply().
  Result reply(uint64_t token, int code, std::string_view data = {}) {
    return Result(xxnet_reply(native(), token, code, bytes(data), data.size()));
  }

  // -------------------------------------------------------------------------
  // Downloads
  // -------------------------------------------------------------------------

  /// Serves the files under `dir` (and its subdirectories) to other nodes by
  /// content (xxnet_files_serve); hashed in the background. XXNET_E_BAD_PATH
  /// if `dir` is not an existing directory.
  Result files_serve(std::string_view dir) {
    std::string d;
    if (!c_string(dir, d)) return Result(XXNET_E_BAD_PATH);
    return Result(xxnet_files_serve(native(), d.c_str()));
  }

  /// Downloads the content `md5_hex` (32 hex digits) of `size` bytes from
  /// `node` into the cache (xxnet_download); `name` is a hint for the source
  /// (a path relative to a directory it serves). Content already cached
  /// finishes at once; content already downloading is joined. When the
  /// result is ok(), `on_done` runs exactly once from dispatch() (or
  /// handle(), or shutdown() / the destructor with XXNET_E_SHUTDOWN), and
  /// the file is released when it returns unless it called Download::keep()
  /// (see "Downloads" at the top). `on_progress` (void(uint64_t done,
  /// uint64_t total) or void(const Event&)) runs for its DownloadProgress
  /// events, at most 4 per second; empty: they go to
  /// on(Kind::DownloadProgress). `on_done` nullptr: the Done/Failed event
  /// goes to on(kind) and the host releases the file itself. Fails at once,
  /// never running either: XXNET_E_BAD_PATH (md5, or a name that is
  /// absolute, has `..`, `.`, `\\`, a NUL byte...), XXNET_E_NO_SPACE (size
  /// above download_quota), XXNET_E_UNKNOWN_NODE, XXNET_E_INVALID_ARG (no
  /// download_dir), XXNET_E_SHUTDOWN, XXNET_E_NULL_POINTER (moved-from).
  template <class F = std::nullptr_t, class P = std::nullptr_t>
  DownloadResult download(std::string_view node, std::string_view md5_hex, std::string_view name, uint64_t size,
                          F&& on_done = nullptr, P&& on_progress = nullptr) {
    DownloadHandler done = download_handler(std::forward<F>(on_done));
    std::shared_ptr<const Handler> progress = progress_handler(std::forward<P>(on_progress));
    std::string n, m, f;
    if (!c_string(node, n)) return DownloadResult(XXNET_E_UNKNOWN_NODE, 0);
    if (!c_string(md5_hex, m) || !c_string(name, f)) return DownloadResult(XXNET_E_BAD_PATH, 0);
    TaskId task = 0;
    int rc = xxnet_download(native(), n.c_str(), m.c_str(), f.c_str(), size, &task);
    if (rc == XXNET_OK && (done || progress))
      p_->downloads.emplace(task, DownloadEntry{std::move(done), std::move(progress), std::move(n), size});
    return DownloadResult(rc, task);
  }

  /// Cancels a running download (xxnet_download_cancel): its on_done runs
  /// with XXNET_E_CANCELLED from the next dispatch(), and no progress
  /// follows. XXNET_E_UNKNOWN_TASK if it is not running (already finished,
  /// even when its on_done has not run yet).
  Result download_cancel(TaskId task) { return Result(xxnet_download_cancel(native(), task)); }

  /// Releases the file of a finished download (xxnet_download_release): it
  /// may be evicted from now on. Needed only after Download::keep() or for a
  /// download without on_done. XXNET_E_UNKNOWN_TASK if it is not held.
  Result download_release(TaskId task) { return Result(xxnet_download_release(native(), task)); }

  /// The download counters; throws Error.
  [[nodiscard]] FileStats files_stats() const {
    FileStats s;
    std::memset(&s, 0, sizeof s);
    int rc = xxnet_files_stats(native(), &s);
    if (rc != XXNET_OK) throw Error(rc, "xxnet::Context::files_stats");
    return s;
  }

  /// Stops the network (xxnet_shutdown: sockets closed, peers told) and
  /// drains: runs the handlers of the events still queued, then every call
  /// and download callback still pending, with XXNET_E_SHUTDOWN. The Context stays valid
  /// for that last drain; later sends, calls, casts and listens return
  /// XXNET_E_SHUTDOWN. Idempotent. From inside a handler it only stops the
  /// network: the next dispatch() (or the destructor) delivers the rest. An
  /// exception from a handler leaves shutdown() (the events after it stay
  /// queued; call shutdown() again to go on).
  void shutdown() {
    if (!p_) return;
    xxnet_shutdown(p_->ctx);
    if (p_->busy) return;
    for (int round = 0; round < kDrainRounds; ++round)
      if (dispatch(1024, 0) == 0) break;
    resolve_leftovers(*p_, false);
  }

 private:
  // user_data of the timers started by timer(): their TIMER events run the
  // callback; TIMER events of timers started through native() go to on(Kind::Timer).
  static constexpr uint64_t kTimerTag = 0x78786e65742b2b74ull;  // "xxnet++t"

  struct TimerEntry {
    std::function<void(TimerId)> fn;
    bool repeating;
  };
  // Bound on the drain loops of shutdown() and the destructor (each round is
  // up to 1024 events; after xxnet_shutdown nothing but due timers is added).
  static constexpr int kDrainRounds = 1 << 16;

  // A download() with callbacks, until its Done or Failed event. `node` and
  // `size` make the XXNET_E_SHUTDOWN outcome of one whose event never comes.
  struct DownloadEntry {
    DownloadHandler done;
    std::shared_ptr<const Handler> progress;
    std::string node;
    uint64_t size;
  };

  struct Impl {
    xxnet_ctx* ctx = nullptr;
    std::vector<xxnet_event> raw;  // xxnet_poll_recv's buffer
    std::vector<Event> batch;      // the last batch; [next, size) not yet handed out
    size_t next = 0;
    bool busy = false;             // inside a handler
    std::array<std::shared_ptr<const Handler>, kKindCount> on;
    std::unordered_map<uint32_t, std::shared_ptr<const Handler>> routes;
    std::shared_ptr<const Handler> default_route;
    std::unordered_map<TimerId, std::shared_ptr<TimerEntry>> timers;
    std::unordered_map<uint64_t, CallHandler> calls;  // call() callbacks by session, until their result
    std::unordered_map<TaskId, DownloadEntry> downloads;  // download() callbacks by task, until Done/Failed
    std::map<std::string, std::shared_ptr<const ServiceHandler>, std::less<>> services;
    Impl() = default;
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;
    ~Impl() { xxnet_free(ctx); }
  };
  struct Busy {  // marks "inside handlers" for the scope, exception-safe
    explicit Busy(Impl& im) : im_(im), was_(im.busy) { im.busy = true; }
    ~Busy() { im_.busy = was_; }
    Busy(const Busy&) = delete;
    Busy& operator=(const Busy&) = delete;
    Impl& im_;
    bool was_;
  };
  struct CStr {  // a NUL-terminated copy of a short string (an IP address)
    explicit CStr(std::string_view s) noexcept : ok(s.size() < sizeof buf && s.find('\0') == std::string_view::npos) {
      if (ok) {
        std::memcpy(buf, s.data(), s.size());
        buf[s.size()] = '\0';
      }
    }
    bool ok;
    char buf[64];
  };

  static const uint8_t* bytes(std::string_view d) noexcept { return detail::bytes_of(d); }
  static std::shared_ptr<const Handler> wrap(Handler fn) {
    return fn ? std::make_shared<const Handler>(std::move(fn)) : nullptr;
  }
  // A NUL-terminated copy of a name or path; false if it holds a NUL byte.
  static bool c_string(std::string_view s, std::string& out) {
    if (s.find('\0') != std::string_view::npos) return false;
    out.assign(s.data(), s.size());
    return true;
  }
  DetailedResult detailed(int rc) const {
    if (rc == XXNET_OK) return DetailedResult();
    // xxnet_last_error() is per thread and explains the failure just returned.
    return DetailedResult(rc, native() != nullptr ? xxnet_last_error() : "");
  }
  DetailedResult cluster(int (*fn)(xxnet_ctx*, const char*), std::string_view arg) {
    std::string a;
    if (!c_string(arg, a)) return DetailedResult(XXNET_E_INVALID_ARG, "NUL byte in a name or path");
    return detailed(fn(native(), a.c_str()));
  }

  template <class F>
  static CallHandler call_handler(F&& f) {
    using D = std::decay_t<F>;
    if constexpr (std::is_same_v<D, std::nullptr_t>) {
      return CallHandler();
    } else if constexpr (std::is_invocable_v<D&, const Event&>) {
      return CallHandler(std::forward<F>(f));
    } else {
      static_assert(std::is_invocable_v<D&, int, std::string_view>,
                    "call callback must be void(const xxnet::Event&) or void(int code, std::string_view reply)");
      return [fn = std::forward<F>(f)](const Event& e) mutable { fn(e.code(), e.data()); };
    }
  }

  template <class F>
  static DownloadHandler download_handler(F&& f) {
    using D = std::decay_t<F>;
    if constexpr (std::is_same_v<D, std::nullptr_t>) {
      return DownloadHandler();
    } else {
      static_assert(std::is_invocable_v<D&, Download&>,
                    "download on_done must be void(xxnet::Download&) or void(const xxnet::Download&)");
      return DownloadHandler(std::forward<F>(f));
    }
  }
  template <class P>
  static std::shared_ptr<const Handler> progress_handler(P&& p) {
    using D = std::decay_t<P>;
    if constexpr (std::is_same_v<D, std::nullptr_t>) {
      return nullptr;
    } else if constexpr (std::is_invocable_v<D&, const Event&>) {
      return wrap(Handler(std::forward<P>(p)));
    } else {
      static_assert(std::is_invocable_v<D&, uint64_t, uint64_t>,
                    "download on_progress must be void(uint64_t done, uint64_t total) or void(const xxnet::Event&)");
      ProgressHandler fn(std::forward<P>(p));
      if (!fn) return nullptr;
      return wrap([fn](const Event& e) { fn(e.count(), e.total()); });
    }
  }

  // Runs on_done of a download with `result`, once (the entry is already
  // out of the map: on_done may start downloads of its own), then releases
  // the file unless on_done kept it, also when on_done throws.
  static void finish_download(Impl& im, DownloadHandler& done, Download& result) {
    struct Release {
      xxnet_ctx* ctx;
      const Download& d;
      ~Release() {
        if (d.ok() && !d.kept()) (void)xxnet_download_release(ctx, d.task());
      }
    } release{im.ctx, result};
    if (done) done(result);
  }

  // Runs on_done of the download `ev` (Done or Failed) ends; false if it has none.
  static bool run_download(Impl& im, const Event& ev) {
    auto d = im.downloads.find(ev.id());
    if (d == im.downloads.end()) return false;
    DownloadEntry entry = std::move(d->second);
    im.downloads.erase(d);
    if (!entry.done) return false;  // progress only: the end goes to on(kind)
    Download result(ev.id(), ev.code(), ev.kind() == Kind::DownloadDone ? std::string(ev.data()) : std::string(),
                    ev.total(), ev.count(), std::string(ev.node()));
    finish_download(im, entry.done, result);
    return true;
  }

  // Runs the callback of the call `ev` resolves, once; false if it has none.
  static bool run_call(Impl& im, const Event& ev) {
    auto c = im.calls.find(ev.id());
    if (c == im.calls.end()) return false;
    CallHandler cb = std::move(c->second);
    im.calls.erase(c);  // first: the callback may make calls of its own
    cb(ev);
    return true;
  }

  // Callbacks whose result will never be dispatched (the context shut down
  // and its queue is drained; a result taken by poll() and never handed to
  // handle()) run with a CALL_RESULT made here: XXNET_E_SHUTDOWN, oldest first.
  static void resolve_leftovers(Impl& im, bool swallow) {
    Busy busy(im);
    for (int round = 0; round < kDrainRounds && !im.calls.empty(); ++round) {
      uint64_t oldest = im.calls.begin()->first;
      for (const auto& c : im.calls) oldest = std::min(oldest, c.first);
      xxnet_event raw;
      std::memset(&raw, 0, sizeof raw);
      raw.kind = XXNET_EVENT_CALL_RESULT;
      raw.code = XXNET_E_SHUTDOWN;
      raw.id = oldest;
      raw.node = "";
      raw.service = "";
      const Event ev(raw);
      if (!swallow) {
        run_call(im, ev);
        continue;
      }
      try {
        run_call(im, ev);
      } catch (...) {  // the destructor must not throw
      }
    }
    for (int round = 0; round < kDrainRounds && !im.downloads.empty(); ++round) {
      auto oldest = im.downloads.begin();
      for (auto d = im.downloads.begin(); d != im.downloads.end(); ++d)
        if (d->first < oldest->first) oldest = d;
      const TaskId task = oldest->first;
      DownloadEntry entry = std::move(oldest->second);
      im.downloads.erase(oldest);
      Download result(task, XXNET_E_SHUTDOWN, std::string(), entry.size, 0, std::move(entry.node));
      if (!swallow) {
        finish_download(im, entry.done, result);
        continue;
      }
      try {
        finish_download(im, entry.done, result);
      } catch (...) {  // the destructor must not throw
      }
    }
  }

  // The destructor's end: when calls or downloads are pending, stop the
  // network and run their callbacks (only those: no progress, no other
  // handler) with what the queue still holds, then free.
  void close_now() noexcept {
    if (!p_) return;
    Impl& im = *p_;
    auto pending = [&im] { return !im.calls.empty() || !im.downloads.empty(); };
    if (pending()) {
      xxnet_shutdown(im.ctx);
      Busy busy(im);
      for (int round = 0; round < kDrainRounds && pending(); ++round) {
        while (im.next < im.batch.size() && pending()) {
          const Event& ev = im.batch[im.next++];
          try {
            if (ev.kind() == Kind::CallResult) run_call(im, ev);
            if (ev.kind() == Kind::DownloadDone || ev.kind() == Kind::DownloadFailed) run_download(im, ev);
          } catch (...) {  // the destructor must not throw
          }
        }
        if (!pending()) break;
        try {
          fill(im, 1024, 0);
        } catch (...) {
          break;
        }
        if (im.batch.empty()) break;
      }
      resolve_leftovers(im, true);
    }
    p_.reset();
  }

  void open(const xxnet_config& cfg) {
    check_abi();
    auto im = std::make_unique<Impl>();
    im->ctx = xxnet_new(&cfg);
    if (im->ctx == nullptr) {
      std::string why = xxnet_last_error();
      int code = why.rfind("invalid config", 0) == 0 ? XXNET_E_INVALID_ARG : XXNET_E_INTERNAL;
      throw Error(code, "xxnet_new failed: " + why);
    }
    p_ = std::move(im);
  }

  static void fill(Impl& im, size_t max, int timeout_ms) {
    max = std::max<size_t>(1, std::min<size_t>(max, 1024));
    if (im.raw.size() < max) im.raw.resize(max);
    size_t n = xxnet_poll_recv(im.ctx, im.raw.data(), max, static_cast<int32_t>(timeout_ms));
    im.batch.clear();
    for (size_t i = 0; i < n; ++i) im.batch.emplace_back(im.raw[i]);
    im.next = 0;
  }

  // Handlers are held by shared_ptr and copied before the call, so a handler
  // may replace or remove itself (or cancel its own timer) while it runs.
  static void deliver(Impl& im, const Event& ev) {
    std::shared_ptr<const Handler> h;
    if (ev.kind() == Kind::Message) {
      auto r = im.routes.find(ev.msg_id());
      h = r != im.routes.end() ? r->second : im.default_route;
    } else if (ev.kind() == Kind::CallResult) {
      if (run_call(im, ev)) return;
    } else if (ev.kind() == Kind::DownloadDone || ev.kind() == Kind::DownloadFailed) {
      if (run_download(im, ev)) return;
    } else if (ev.kind() == Kind::DownloadProgress) {
      auto d = im.downloads.find(ev.id());
      if (d != im.downloads.end()) h = d->second.progress;  // a copy: it may start downloads of its own
    } else if (ev.kind() == Kind::CallRequest) {
      auto s = im.services.find(ev.service());
      if (s != im.services.end()) {
        std::shared_ptr<const ServiceHandler> sh = s->second;  // it may replace or remove itself
        Request req(im.ctx, ev);
        (*sh)(req);
        return;
      }
    } else if (ev.kind() == Kind::Timer && ev.user_data() == kTimerTag) {
      auto t = im.timers.find(ev.id());
      if (t == im.timers.end()) return;  // cancelled
      std::shared_ptr<TimerEntry> entry = t->second;
      if (!entry->repeating) im.timers.erase(t);
      entry->fn(ev.id());
      return;
    }
    auto k = static_cast<size_t>(ev.kind());
    if (!h && k < kKindCount) h = im.on[k];
    if (h) (*h)(ev);
  }

  std::unique_ptr<Impl> p_;
};

}  // namespace xxnet
