//! Exports for the context object: creation, listening, sending, polling.

use super::types::*;
use super::*;
use crate::host::{Context, Dest};
use std::net::SocketAddr;
use std::time::Duration;

/// An xxnet context: one reactor thread and everything it owns. Opaque.
///
/// Calls on one context must not run concurrently from several threads
/// (they are serialised internally, but events and borrowed payloads belong
/// to whichever thread polls). Use one context per host thread.
pub struct xxnet_ctx {
    pub(crate) inner: Context,
    pub(crate) handlers: std::sync::Mutex<super::dispatch::Handlers>,
    pub(crate) dispatching: std::sync::atomic::AtomicBool,
    pub(crate) dispatch_buf: std::sync::Mutex<Vec<xxnet_event>>,
}

/// Fills `*out` with the default configuration. NULL is ignored.
#[no_mangle]
pub extern "C" fn xxnet_config_default(out: *mut xxnet_config) {
    guard((), || {
        if let Some(out) = unsafe { out.as_mut() } {
            *out = xxnet_config::default();
        }
    })
}

/// Creates a context and starts its reactor thread. `cfg` NULL means defaults.
///
/// Returns NULL on failure; `xxnet_last_error()` then says why.
#[no_mangle]
pub extern "C" fn xxnet_new(cfg: *const xxnet_config) -> *mut xxnet_ctx {
    guard(std::ptr::null_mut(), || {
        super::logging::install();
        let cfg = match unsafe { cfg.as_ref() } {
            None => crate::config::Config::default(),
            Some(c) => match unsafe { c.to_config() } {
                Ok(c) => c,
                Err(msg) => {
                    set_last_error(&format!("invalid config: {msg}"));
                    return std::ptr::null_mut();
                }
            },
        };
        match Context::new(cfg) {
            Ok(inner) => Box::into_raw(Box::new(xxnet_ctx {
                inner,
                handlers: Default::default(),
                dispatching: Default::default(),
                dispatch_buf: Default::default(),
            })),
            Err(msg) => {
                set_last_error(&msg);
                std::ptr::null_mut()
            }
        }
    })
}

/// The reason the last `xxnet_new` on this thread returned NULL (empty if none).
/// Valid until the next xxnet call on this thread. Never NULL.
#[no_mangle]
pub extern "C" fn xxnet_last_error() -> *const c_char {
    last_error_ptr()
}

/// Stops and joins the reactor thread and closes every socket (within about
/// 1 s even while traffic flows). Peers are told (GOAWAY, best effort) and end
/// their sessions. Messages still held are dropped without events. Borrowed
/// payloads become invalid. NULL is a no-op.
#[no_mangle]
pub extern "C" fn xxnet_free(ctx: *mut xxnet_ctx) {
    guard((), || {
        if !ctx.is_null() {
            let ctx = unsafe { Box::from_raw(ctx) };
            ctx.inner.shutdown();
        }
    })
}

/// Text for a code. Never NULL; unknown codes give "unknown code". The string is static.
#[no_mangle]
pub extern "C" fn xxnet_strerror(code: c_int) -> *const c_char {
    crate::codes::describe_cstr(code).as_ptr()
}

/// Listens on a numeric IPv4 or IPv6 address. Binds synchronously; `port` 0
/// picks a free port. Writes the bound port to `*bound_port` on success
/// (`bound_port` may be NULL).
///
/// Returns XXNET_OK, XXNET_E_ALREADY_LISTENING (this context already listens
/// there), XXNET_E_ADDR_IN_USE (someone else does), XXNET_E_INVALID_ARG (not a
/// numeric address), XXNET_E_ADDR_NOT_AVAILABLE, XXNET_E_NULL_POINTER, ...
#[no_mangle]
pub extern "C" fn xxnet_listen(
    ctx: *mut xxnet_ctx,
    ip: *const c_char,
    port: u16,
    bound_port: *mut u16,
) -> c_int {
    guard_code(|| {
        let ctx = unsafe { ctx.as_ref() }.ok_or(XXNET_E_NULL_POINTER)?;
        let ip = unsafe { read_ip(ip) }?;
        let bound = ctx.inner.listen(SocketAddr::new(ip, port))?;
        if let Some(out) = unsafe { bound_port.as_mut() } {
            *out = bound;
        }
        Ok(())
    })
}

/// Copies `len` bytes and queues one message (lane 0, msg_id 0) to the peer
/// listening at ip:port. Opens a connection if there is none; messages wait
/// in order while it connects. One pooled connection per peer carries all
/// traffic. Never waits on the network. A failure to deliver later is
/// reported by an XXNET_EVENT_SEND_FAILED event.
#[no_mangle]
pub extern "C" fn xxnet_send(
    ctx: *mut xxnet_ctx,
    ip: *const c_char,
    port: u16,
    data: *const u8,
    len: usize,
) -> c_int {
    xxnet_send_ex(ctx, ip, port, data, len, std::ptr::null())
}

/// Like `xxnet_send` with options: lane, msg_id, flags. `opts` NULL means defaults.
#[no_mangle]
pub extern "C" fn xxnet_send_ex(
    ctx: *mut xxnet_ctx,
    ip: *const c_char,
    port: u16,
    data: *const u8,
    len: usize,
    opts: *const xxnet_send_opts,
) -> c_int {
    guard_code(|| send_to_addr(ctx, ip, port, data, len, opts, false).map(|_| ()))
}

/// The argument checks of every send by address; returns the need-ack id (or 0).
fn send_to_addr(
    ctx: *mut xxnet_ctx,
    ip: *const c_char,
    port: u16,
    data: *const u8,
    len: usize,
    opts: *const xxnet_send_opts,
    need_ack: bool,
) -> Result<u64, c_int> {
    let ctx = unsafe { ctx.as_ref() }.ok_or(XXNET_E_NULL_POINTER)?;
    let ip = unsafe { read_ip(ip) }?;
    if port == 0 {
        return Err(XXNET_E_INVALID_ARG);
    }
    let data = unsafe { read_bytes(data, len) }?;
    let opts = unsafe { opts.as_ref() }
        .copied()
        .unwrap_or_default()
        .to_opts()?;
    ctx.inner
        .send(Dest::Addr(SocketAddr::new(ip, port)), opts, data, need_ack)
}

/// The argument checks of every send by connection; returns the need-ack id (or 0).
fn send_to_conn(
    ctx: *mut xxnet_ctx,
    conn: u64,
    data: *const u8,
    len: usize,
    opts: *const xxnet_send_opts,
    need_ack: bool,
) -> Result<u64, c_int> {
    let ctx = unsafe { ctx.as_ref() }.ok_or(XXNET_E_NULL_POINTER)?;
    let data = unsafe { read_bytes(data, len) }?;
    let opts = unsafe { opts.as_ref() }
        .copied()
        .unwrap_or_default()
        .to_opts()?;
    ctx.inner.send(Dest::Conn(conn), opts, data, need_ack)
}

/// Copies `len` bytes and queues one message (lane 0, msg_id 0) on a known
/// connection, e.g. to a client that connected to us and listens nowhere.
/// Returns XXNET_E_UNKNOWN_CONN for an id this host was never given or whose
/// DISCONNECTED event it already received.
#[no_mangle]
pub extern "C" fn xxnet_send_conn(
    ctx: *mut xxnet_ctx,
    conn: u64,
    data: *const u8,
    len: usize,
) -> c_int {
    xxnet_send_conn_ex(ctx, conn, data, len, std::ptr::null())
}

/// Like `xxnet_send_conn` with options. `opts` NULL means defaults.
#[no_mangle]
pub extern "C" fn xxnet_send_conn_ex(
    ctx: *mut xxnet_ctx,
    conn: u64,
    data: *const u8,
    len: usize,
    opts: *const xxnet_send_opts,
) -> c_int {
    guard_code(|| send_to_conn(ctx, conn, data, len, opts, false).map(|_| ()))
}

/// Like `xxnet_send_ex`, and the host learns the message's fate: exactly one
/// XXNET_EVENT_DELIVERED (the peer's xxnet received it) or XXNET_EVENT_EXPIRED
/// (not acknowledged within opts->ack_timeout_ms, or the config's
/// ack_timeout_ms when 0; the code says whether it was never sent or may still
/// arrive) carries the id written to `*out_id` (never 0). `out_id` must not be NULL.
#[no_mangle]
pub extern "C" fn xxnet_send_need_ack(
    ctx: *mut xxnet_ctx,
    ip: *const c_char,
    port: u16,
    data: *const u8,
    len: usize,
    opts: *const xxnet_send_opts,
    out_id: *mut u64,
) -> c_int {
    guard_code(|| {
        let out_id = unsafe { out_id.as_mut() }.ok_or(XXNET_E_NULL_POINTER)?;
        *out_id = send_to_addr(ctx, ip, port, data, len, opts, true)?;
        Ok(())
    })
}

/// `xxnet_send_need_ack` over a known connection.
#[no_mangle]
pub extern "C" fn xxnet_send_conn_need_ack(
    ctx: *mut xxnet_ctx,
    conn: u64,
    data: *const u8,
    len: usize,
    opts: *const xxnet_send_opts,
    out_id: *mut u64,
) -> c_int {
    guard_code(|| {
        let out_id = unsafe { out_id.as_mut() }.ok_or(XXNET_E_NULL_POINTER)?;
        *out_id = send_to_conn(ctx, conn, data, len, opts, true)?;
        Ok(())
    })
}

/// Reads the state of session `conn`: connecting, connected or
/// reconnecting, queued and unacknowledged messages and bytes, the age of
/// the oldest unacknowledged message. The figures are at most one reactor
/// turn old. Returns XXNET_E_UNKNOWN_CONN for an id this host does not know
/// (or whose DISCONNECTED event it already received).
#[no_mangle]
pub extern "C" fn xxnet_conn_info(
    ctx: *mut xxnet_ctx,
    conn: u64,
    out: *mut xxnet_peer_info,
) -> c_int {
    guard_code(|| {
        let ctx = unsafe { ctx.as_ref() }.ok_or(XXNET_E_NULL_POINTER)?;
        let out = unsafe { out.as_mut() }.ok_or(XXNET_E_NULL_POINTER)?;
        let snap = ctx.inner.peer_info(conn)?;
        *out = xxnet_peer_info::from_snapshot(&snap, std::time::Instant::now());
        Ok(())
    })
}

/// Ends the session `conn`: messages it still holds are reported
/// (SEND_FAILED / EXPIRED with XXNET_E_LOCAL_CLOSE), then a DISCONNECTED event
/// follows. The peer is told (GOAWAY after what was already buffered) and
/// ends its side at once (XXNET_E_PEER_CLOSED) instead of reconnecting.
/// Returns XXNET_E_UNKNOWN_CONN for an unknown id.
#[no_mangle]
pub extern "C" fn xxnet_close(ctx: *mut xxnet_ctx, conn: u64) -> c_int {
    guard_code(|| {
        let ctx = unsafe { ctx.as_ref() }.ok_or(XXNET_E_NULL_POINTER)?;
        ctx.inner.close(conn)
    })
}

/// Drains up to `max` events into `events` and returns how many were written.
///
/// Waits at most `timeout_ms` for the first event: 0 never waits, -1 waits
/// until an event arrives. Payload pointers of events returned by the
/// previous call become invalid when this is called. Returns 0 when `ctx` or
/// `events` is NULL or `max` is 0.
#[no_mangle]
pub extern "C" fn xxnet_poll_recv(
    ctx: *mut xxnet_ctx,
    events: *mut xxnet_event,
    max: usize,
    timeout_ms: i32,
) -> usize {
    guard(0, || {
        let Some(ctx) = (unsafe { ctx.as_ref() }) else {
            return 0;
        };
        if events.is_null() || max == 0 {
            return 0;
        }
        if ctx.dispatching.load(std::sync::atomic::Ordering::Acquire) {
            log::warn!(target: "xxnet::ffi", "xxnet_poll_recv called from inside a dispatch handler: ignored");
            return 0;
        }
        let out = unsafe { std::slice::from_raw_parts_mut(events, max) };
        poll_into(ctx, out, timeout_ms)
    })
}

/// Polls into `out` (shared by xxnet_poll_recv and xxnet_dispatch).
pub(crate) fn poll_into(ctx: &xxnet_ctx, out: &mut [xxnet_event], timeout_ms: i32) -> usize {
    let timeout = match timeout_ms {
        t if t < 0 => None,
        t => Some(Duration::from_millis(t as u64)),
    };
    // The last peer address formatted on this thread, kept across polls: a
    // poll that returns one message (request/response traffic) would
    // otherwise format the same address again every time (~1 100
    // instructions through `fmt`).
    let mut ip_cache = PEER_IP_TEXT.take();
    let n = ctx.inner.poll(out.len(), timeout, |i, ev| {
        out[i].set_from(ev, &mut ip_cache);
    });
    PEER_IP_TEXT.set(ip_cache);
    n
}

thread_local! {
    static PEER_IP_TEXT: std::cell::Cell<Option<(std::net::IpAddr, [std::os::raw::c_char; 48])>> =
        const { std::cell::Cell::new(None) };
}

/// Starts a main-thread timer: it fires as an XXNET_EVENT_TIMER event (`id` =
/// the timer id, `user_data` = `user_data`) from xxnet_poll_recv or
/// xxnet_dispatch, on the polling thread, `delay_ms` from now (never early),
/// then every `interval_ms` (0: once). A poll's wait ends when a timer is
/// due. Writes the id (never 0) to `*timer_id` (may be NULL).
#[no_mangle]
pub extern "C" fn xxnet_timer_start(
    ctx: *mut xxnet_ctx,
    delay_ms: u32,
    interval_ms: u32,
    user_data: u64,
    timer_id: *mut u64,
) -> c_int {
    guard_code(|| {
        let ctx = unsafe { ctx.as_ref() }.ok_or(XXNET_E_NULL_POINTER)?;
        let id = ctx.inner.timer_start(
            Duration::from_millis(delay_ms as u64),
            Duration::from_millis(interval_ms as u64),
            user_data,
        )?;
        if let Some(out) = unsafe { timer_id.as_mut() } {
            *out = id;
        }
        Ok(())
    })
}

/// Stops a timer. XXNET_E_UNKNOWN_TIMER if it is not live (a one-shot timer
/// that already fired is no longer live). A TIMER event already drained but
/// not yet handled is not taken back.
#[no_mangle]
pub extern "C" fn xxnet_timer_stop(ctx: *mut xxnet_ctx, timer_id: u64) -> c_int {
    guard_code(|| {
        let ctx = unsafe { ctx.as_ref() }.ok_or(XXNET_E_NULL_POINTER)?;
        ctx.inner.timer_stop(timer_id)
    })
}

/// Attaches a value to a connection (Paguma's connection property): it is
/// copied into `user_data` of every later event of `conn`, including its
/// DISCONNECTED. XXNET_E_UNKNOWN_CONN for an id this host does not know.
#[no_mangle]
pub extern "C" fn xxnet_conn_set_user_data(
    ctx: *mut xxnet_ctx,
    conn: u64,
    user_data: u64,
) -> c_int {
    guard_code(|| {
        let ctx = unsafe { ctx.as_ref() }.ok_or(XXNET_E_NULL_POINTER)?;
        ctx.inner.set_user_data(conn, user_data)
    })
}

/// The library version, e.g. "0.1.0". Static, never NULL.
#[no_mangle]
pub extern "C" fn xxnet_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The ABI version this library implements (XXNET_ABI_VERSION of its header).
/// Bindings compare it with the value they were generated from at load time.
#[no_mangle]
pub extern "C" fn xxnet_abi_version() -> u32 {
    XXNET_ABI_VERSION
}

/// Copies the context's counters into `*out`.
#[no_mangle]
pub extern "C" fn xxnet_stats(ctx: *mut xxnet_ctx, out: *mut xxnet_stats) -> c_int {
    guard_code(|| {
        let ctx = unsafe { ctx.as_ref() }.ok_or(XXNET_E_NULL_POINTER)?;
        let out = unsafe { out.as_mut() }.ok_or(XXNET_E_NULL_POINTER)?;
        *out = ctx.inner.stats().into();
        Ok(())
    })
}

/// Wakes the reactors for the messages queued with XXNET_SEND_MORE, so they go
/// out now rather than at the next send without the flag or the next poll.
/// XXNET_OK, or XXNET_E_SHUTDOWN / XXNET_E_INTERNAL for an unusable context.
#[no_mangle]
pub extern "C" fn xxnet_flush(ctx: *mut xxnet_ctx) -> c_int {
    guard_code(|| {
        let ctx = unsafe { ctx.as_ref() }.ok_or(XXNET_E_NULL_POINTER)?;
        ctx.inner.flush()
    })
}

/// Copies the counters of reactor `index` alone into `*out` (0 ≤ index < the
/// config's `io_threads`): with several reactors, shows how sessions and
/// traffic are spread (`open_connections`, `msgs_in`, ...). xxnet_stats
/// gives their sums. XXNET_E_INVALID_ARG for an index past the last reactor.
#[no_mangle]
pub extern "C" fn xxnet_reactor_stats(
    ctx: *mut xxnet_ctx,
    index: u32,
    out: *mut xxnet_stats,
) -> c_int {
    guard_code(|| {
        let ctx = unsafe { ctx.as_ref() }.ok_or(XXNET_E_NULL_POINTER)?;
        let out = unsafe { out.as_mut() }.ok_or(XXNET_E_NULL_POINTER)?;
        let s = ctx
            .inner
            .reactor_stats(index as usize)
            .ok_or(XXNET_E_INVALID_ARG)?;
        *out = s.into();
        Ok(())
    })
}

/// Test hook for Rust tests: access the safe context behind a pointer.
#[doc(hidden)]
pub fn context_of<'a>(ctx: *mut xxnet_ctx) -> Option<&'a Context> {
    unsafe { ctx.as_ref() }.map(|c| &c.inner)
}
