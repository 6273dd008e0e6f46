/* Compile check of include/xxnet.h as strict C11 (-std=c11 -Wall -Wextra
 * -Werror -pedantic): every struct, typedef and function name is used. Run
 * as a ctest, it also calls the functions that need no network and checks
 * their documented results. Exit status 0 means every check held. */
#include <xxnet.h>

#include <stdio.h>
#include <string.h>

/* Every exported function, through a typed pointer (so a changed signature fails to compile). */
struct xxnet_api {
  void (*config_default)(struct xxnet_config *);
  struct xxnet_ctx *(*new_ctx)(const struct xxnet_config *);
  const char *(*last_error)(void);
  void (*free_ctx)(struct xxnet_ctx *);
  const char *(*strerror_fn)(int);
  int (*listen)(struct xxnet_ctx *, const char *, uint16_t, uint16_t *);
  int (*send)(struct xxnet_ctx *, const char *, uint16_t, const uint8_t *, size_t);
  int (*send_ex)(struct xxnet_ctx *, const char *, uint16_t, const uint8_t *, size_t, const struct xxnet_send_opts *);
  int (*send_conn)(struct xxnet_ctx *, uint64_t, const uint8_t *, size_t);
  int (*send_conn_ex)(struct xxnet_ctx *, uint64_t, const uint8_t *, size_t, const struct xxnet_send_opts *);
  int (*send_need_ack)(struct xxnet_ctx *, const char *, uint16_t, const uint8_t *, size_t,
                       const struct xxnet_send_opts *, uint64_t *);
  int (*send_conn_need_ack)(struct xxnet_ctx *, uint64_t, const uint8_t *, size_t, const struct xxnet_send_opts *,
                            uint64_t *);
  int (*conn_info)(struct xxnet_ctx *, uint64_t, struct xxnet_peer_info *);
  int (*close)(struct xxnet_ctx *, uint64_t);
  size_t (*poll_recv)(struct xxnet_ctx *, struct xxnet_event *, size_t, int32_t);
  int (*timer_start)(struct xxnet_ctx *, uint32_t, uint32_t, uint64_t, uint64_t *);
  int (*timer_stop)(struct xxnet_ctx *, uint64_t);
  int (*conn_set_user_data)(struct xxnet_ctx *, uint64_t, uint64_t);
  const char *(*version)(void);
  uint32_t (*abi_version)(void);
  int (*stats)(struct xxnet_ctx *, struct xxnet_stats *);
  int (*on)(struct xxnet_ctx *, uint32_t, xxnet_handler, void *);
  int (*route)(struct xxnet_ctx *, uint32_t, xxnet_handler, void *);
  int (*route_default)(struct xxnet_ctx *, xxnet_handler, void *);
  size_t (*dispatch)(struct xxnet_ctx *, size_t, int32_t);
  int (*set_log_handler)(xxnet_log_fn, void *, int);
  int (*cluster_load)(struct xxnet_ctx *, const char *);
  int (*cluster_reload)(struct xxnet_ctx *, const char *);
  int (*cluster_set)(struct xxnet_ctx *, const char *, const char *);
  int (*cluster_remove)(struct xxnet_ctx *, const char *);
  int (*call)(struct xxnet_ctx *, const char *, const char *, const uint8_t *, size_t, uint32_t, uint64_t *);
  int (*call_ex)(struct xxnet_ctx *, const char *, const char *, const uint8_t *, size_t,
                 const struct xxnet_call_opts *, uint64_t *);
  int (*cast)(struct xxnet_ctx *, const char *, const char *, const uint8_t *, size_t);
  int (*cast_ex)(struct xxnet_ctx *, const char *, const char *, const uint8_t *, size_t,
                 const struct xxnet_call_opts *);
  int (*service_register)(struct xxnet_ctx *, const char *);
  int (*service_unregister)(struct xxnet_ctx *, const char *);
  int (*reply)(struct xxnet_ctx *, uint64_t, int, const uint8_t *, size_t);
  void (*shutdown)(struct xxnet_ctx *);
};

static const struct xxnet_api api = {
    xxnet_config_default, xxnet_new,           xxnet_last_error,         xxnet_free,
    xxnet_strerror,       xxnet_listen,        xxnet_send,               xxnet_send_ex,
    xxnet_send_conn,      xxnet_send_conn_ex,  xxnet_send_need_ack,      xxnet_send_conn_need_ack,
    xxnet_conn_info,      xxnet_close,         xxnet_poll_recv,          xxnet_timer_start,
    xxnet_timer_stop,     xxnet_conn_set_user_data, xxnet_version,       xxnet_abi_version,
    xxnet_stats,          xxnet_on,            xxnet_route,              xxnet_route_default,
    xxnet_dispatch,       xxnet_set_log_handler,
    xxnet_cluster_load,   xxnet_cluster_reload, xxnet_cluster_set,       xxnet_cluster_remove,
    xxnet_call,           xxnet_call_ex,       xxnet_cast,               xxnet_cast_ex,
    xxnet_service_register, xxnet_service_unregister, xxnet_reply,       xxnet_shutdown,
};

/* A handler and a log function with the typedefs' signatures. */
static int handled = 0;
static void on_event(const struct xxnet_event *event, void *user) {
  (void)event;
  (void)user;
  ++handled;
}
static void on_log(int level, const char *target, const char *message, void *user) {
  (void)level;
  (void)target;
  (void)message;
  (void)user;
}
static const xxnet_handler handler = on_event;
static const xxnet_log_fn log_fn = on_log;

static int failures = 0;

#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) {                                                   \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                    \
    }                                                                \
  } while (0)

int main(void) {
  xxnet_config cfg;            /* typedef name */
  struct xxnet_config cfg2;    /* struct tag */
  xxnet_send_opts opts;
  struct xxnet_send_opts opts2;
  xxnet_call_opts copts;       /* typedef name */
  struct xxnet_call_opts copts2;
  xxnet_event ev[2];
  struct xxnet_event ev2;
  struct xxnet_stats st;       /* tag: the bare name is the function */
  xxnet_stats_t st2;           /* the typedef alias */
  xxnet_peer_info info;        /* typedef name */
  struct xxnet_peer_info info2;
  uint64_t id = 0;
  xxnet_ctx *ctx = NULL;       /* opaque typedef */
  struct xxnet_ctx *ctx2 = NULL;
  uint16_t port = 0;
  const uint8_t byte = 7;

  memset(&cfg, 0, sizeof cfg);
  memset(&opts, 0, sizeof opts);
  memset(&opts2, 0, sizeof opts2);
  memset(&copts, 0, sizeof copts);
  memset(&copts2, 0, sizeof copts2);
  memset(ev, 0, sizeof ev);
  memset(&ev2, 0, sizeof ev2);
  memset(&st, 0, sizeof st);
  memset(&st2, 0, sizeof st2);
  memset(&info, 0, sizeof info);
  memset(&info2, 0, sizeof info2);

  api.config_default(&cfg);
  xxnet_config_default(NULL);
  cfg2 = cfg;
  CHECK(cfg.max_connections == 10000u);
  CHECK(cfg.fragment_size == 32u * 1024u);
  CHECK(cfg.advertise_ip == NULL);
  CHECK(cfg.node_name == NULL && cfg.auth_secret == NULL && cfg.auth_secret_len == 0);
  CHECK(cfg.call_timeout_ms > 0 && cfg.call_cache_limit > 0);
  CHECK(ev2.node == NULL && ev2.service == NULL); /* memset; polled events never carry NULL */
  CHECK(XXNET_EVENT_CALL_REQUEST == 13 && XXNET_EVENT_CALL_RESULT == 14 && XXNET_EVENT_NODE_CHANGED == 15);
  CHECK(XXNET_NODE_ADDED == 1 && XXNET_NODE_MOVED == 2 && XXNET_NODE_REMOVED == 3);
  CHECK(XXNET_E_TIMEOUT == -50 && XXNET_E_CLUSTER_FILE == -59);
  CHECK(sizeof ev[0].peer_ip == 48);
  CHECK(XXNET_LANES == 4 && XXNET_LANE_DEFAULT == 0 && XXNET_LANE_BULK == 1);
  CHECK(ev2.kind == XXNET_EVENT_NONE);

  /* Calls that need no network. */
  CHECK(api.strerror_fn(XXNET_OK) != NULL);
  CHECK(strcmp(xxnet_strerror(999999), "unknown code") == 0);
  CHECK(api.last_error() != NULL);
  api.free_ctx(NULL);
  CHECK(api.poll_recv(NULL, ev, 2, 0) == 0);
  CHECK(api.listen(NULL, "127.0.0.1", 0, &port) == XXNET_E_NULL_POINTER);
  CHECK(api.send(NULL, "127.0.0.1", 1, &byte, 1) == XXNET_E_NULL_POINTER);
  CHECK(api.send_ex(NULL, "127.0.0.1", 1, &byte, 1, &opts) == XXNET_E_NULL_POINTER);
  CHECK(api.send_conn(NULL, 1, &byte, 1) == XXNET_E_NULL_POINTER);
  CHECK(api.send_conn_ex(NULL, 1, &byte, 1, &opts2) == XXNET_E_NULL_POINTER);
  CHECK(api.close(NULL, 1) == XXNET_E_NULL_POINTER);
  CHECK(api.stats(NULL, &st) == XXNET_E_NULL_POINTER);
  CHECK(xxnet_stats(NULL, &st2) == XXNET_E_NULL_POINTER);
  CHECK(api.send_need_ack(NULL, "127.0.0.1", 1, &byte, 1, &opts, &id) == XXNET_E_NULL_POINTER);
  CHECK(api.send_conn_need_ack(NULL, 1, &byte, 1, &opts, &id) == XXNET_E_NULL_POINTER);
  CHECK(api.conn_info(NULL, 1, &info) == XXNET_E_NULL_POINTER);
  CHECK(api.timer_start(NULL, 1, 0, 0, &id) == XXNET_E_NULL_POINTER);
  CHECK(api.timer_stop(NULL, 1) == XXNET_E_NULL_POINTER);
  CHECK(api.conn_set_user_data(NULL, 1, 2) == XXNET_E_NULL_POINTER);
  CHECK(api.on(NULL, XXNET_EVENT_MESSAGE, handler, NULL) == XXNET_E_NULL_POINTER);
  CHECK(api.route(NULL, 1, handler, NULL) == XXNET_E_NULL_POINTER);
  CHECK(api.route_default(NULL, handler, NULL) == XXNET_E_NULL_POINTER);
  CHECK(api.dispatch(NULL, 16, 0) == 0);
  CHECK(api.cluster_load(NULL, "x.lua") == XXNET_E_NULL_POINTER);
  CHECK(api.cluster_reload(NULL, "x.lua") == XXNET_E_NULL_POINTER);
  CHECK(api.cluster_set(NULL, "A", "127.0.0.1:1") == XXNET_E_NULL_POINTER);
  CHECK(api.cluster_remove(NULL, "A") == XXNET_E_NULL_POINTER);
  CHECK(api.call(NULL, "A", "svc", &byte, 1, 0, &id) == XXNET_E_NULL_POINTER);
  CHECK(api.call_ex(NULL, "A", "svc", &byte, 1, &copts, &id) == XXNET_E_NULL_POINTER);
  CHECK(api.cast(NULL, "A", "svc", &byte, 1) == XXNET_E_NULL_POINTER);
  CHECK(api.cast_ex(NULL, "A", "svc", &byte, 1, &copts2) == XXNET_E_NULL_POINTER);
  CHECK(api.service_register(NULL, "svc") == XXNET_E_NULL_POINTER);
  CHECK(api.service_unregister(NULL, "svc") == XXNET_E_NULL_POINTER);
  CHECK(api.reply(NULL, 1, XXNET_OK, &byte, 1) == XXNET_E_NULL_POINTER);
  api.shutdown(NULL);
  CHECK(api.version() != NULL && api.version()[0] != '\0');
  CHECK(api.abi_version() == XXNET_ABI_VERSION);
  CHECK(api.set_log_handler(log_fn, NULL, XXNET_LOG_OFF) == XXNET_OK);
  CHECK(api.set_log_handler(NULL, NULL, 99) == XXNET_E_INVALID_ARG);
  CHECK(api.set_log_handler(NULL, NULL, XXNET_LOG_WARN) == XXNET_OK);

  cfg2.fragment_size = 0;
  CHECK(api.new_ctx(&cfg2) == NULL);
  CHECK(xxnet_last_error()[0] != '\0');

  /* A context: create, query, free (no traffic). */
  ctx = api.new_ctx(&cfg);
  CHECK(ctx != NULL);
  ctx2 = ctx;
  if (ctx2 != NULL) {
    CHECK(xxnet_stats(ctx2, &st) == XXNET_OK);
    CHECK(st.open_connections == 0);
    CHECK(xxnet_send_conn(ctx2, 12345, &byte, 1) == XXNET_E_UNKNOWN_CONN);
    CHECK(xxnet_close(ctx2, 0) == XXNET_E_UNKNOWN_CONN);
    CHECK(xxnet_poll_recv(ctx2, ev, 2, 0) == 0);
    CHECK(xxnet_conn_info(ctx2, 12345, &info2) == XXNET_E_UNKNOWN_CONN);
    CHECK(xxnet_conn_set_user_data(ctx2, 12345, 1) == XXNET_E_UNKNOWN_CONN);
    CHECK(xxnet_route(ctx2, 77, handler, NULL) == XXNET_OK);
    CHECK(xxnet_route_default(ctx2, handler, NULL) == XXNET_OK);
    CHECK(xxnet_on(ctx2, XXNET_EVENT_TIMER, handler, NULL) == XXNET_OK);
    /* A one-shot timer, dispatched to the handler. */
    CHECK(xxnet_timer_start(ctx2, 1, 0, 42, &id) == XXNET_OK && id != 0);
    {
      int i;
      for (i = 0; i < 200 && handled == 0; ++i) xxnet_dispatch(ctx2, 16, 10);
    }
    CHECK(handled == 1);
    CHECK(xxnet_timer_stop(ctx2, id) == XXNET_E_UNKNOWN_TIMER); /* a fired one-shot is no longer live */
    /* Remote calls that need no network. */
    CHECK(xxnet_call(ctx2, "nobody", "svc", &byte, 1, 0, &id) == XXNET_E_UNKNOWN_NODE);
    CHECK(xxnet_cluster_remove(ctx2, "nobody") == XXNET_E_UNKNOWN_NODE);
    CHECK(xxnet_cluster_set(ctx2, "Z", "not an address") == XXNET_E_INVALID_ARG);
    CHECK(xxnet_service_register(ctx2, "svc") == XXNET_OK);
    CHECK(xxnet_service_unregister(ctx2, "svc") == XXNET_OK);
    CHECK(xxnet_reply(ctx2, 12345, XXNET_OK, &byte, 1) == XXNET_E_UNKNOWN_TOKEN);
    xxnet_shutdown(ctx2);
    CHECK(xxnet_cluster_set(ctx2, "Z", "127.0.0.1:9") != XXNET_OK);
    CHECK(xxnet_poll_recv(ctx2, ev, 2, 1000) == 0); /* no wait after a shutdown */
    api.free_ctx(ctx2);
  }

  if (failures != 0) {
    fprintf(stderr, "header_c11: %d check(s) failed\n", failures);
    return 1;
  }
  printf("header_c11: xxnet.h compiles as C11 and the API checks hold\n");
  return 0;
}
