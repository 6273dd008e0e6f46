//! The host's side (issue 4): main-thread timers, dispatch with handlers and
//! routes, connection user data, the log handler, versions.

mod common;

use common::*;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use xxnet::ffi::context::*;
use xxnet::ffi::dispatch::*;
use xxnet::ffi::logging::*;
use xxnet::ffi::types::xxnet_event;
use xxnet::*;

#[test]
fn timers_fire_on_the_polling_thread_never_early_and_end_the_wait() {
    let mut a = Node::new();
    let t0 = Instant::now();
    let mut once = 0u64;
    assert_eq!(xxnet_timer_start(a.ctx, 30, 0, 7, &mut once), XXNET_OK);
    let mut rep = 0u64;
    assert_eq!(xxnet_timer_start(a.ctx, 10, 10, 9, &mut rep), XXNET_OK);
    assert!(once != 0 && rep != 0 && once != rep);
    // A long poll returns when the first timer is due, not at its own timeout.
    let n = a.poll(5_000);
    let waited = t0.elapsed();
    assert!(n >= 1, "a timer event");
    assert!(
        waited >= Duration::from_millis(10),
        "never early: {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(500),
        "the wait ended at the timer: {waited:?}"
    );
    let e = &a.log[0];
    assert_eq!((e.kind, e.id, e.user_data), (XXNET_EVENT_TIMER, rep, 9));
    // Collect for a while: the one-shot fires once, the repeating one keeps going.
    a.poll_for(Duration::from_millis(120));
    let fired = |id: u64| {
        a.log
            .iter()
            .filter(|e| e.kind == XXNET_EVENT_TIMER && e.id == id)
            .count()
    };
    assert_eq!(fired(once), 1);
    assert!(
        fired(rep) >= 5,
        "repeating timer fired {} times",
        fired(rep)
    );
    assert_eq!(
        xxnet_timer_stop(a.ctx, once),
        XXNET_E_UNKNOWN_TIMER,
        "one-shot is gone"
    );
    assert_eq!(xxnet_timer_stop(a.ctx, rep), XXNET_OK);
    let before = fired(rep);
    a.poll_for(Duration::from_millis(50));
    assert_eq!(
        a.log
            .iter()
            .filter(|e| e.kind == XXNET_EVENT_TIMER && e.id == rep)
            .count(),
        before
    );
    assert_eq!(xxnet_timer_stop(a.ctx, 12345), XXNET_E_UNKNOWN_TIMER);
    assert_eq!(
        xxnet_timer_start(std::ptr::null_mut(), 1, 0, 0, std::ptr::null_mut()),
        XXNET_E_NULL_POINTER
    );
}

#[derive(Default)]
struct Seen {
    routed: Vec<(u32, Vec<u8>, u64)>,
    default: Vec<u32>,
    kinds: Vec<u32>,
    thread: Option<std::thread::ThreadId>,
    reentrant: usize,
}

struct Ctx {
    seen: Mutex<Seen>,
    ctx: *mut xxnet::ffi::context::xxnet_ctx,
}

unsafe extern "C" fn on_route(ev: *const xxnet_event, user: *mut c_void) {
    let c = &*(user as *const Ctx);
    let ev = &*ev;
    let data = std::slice::from_raw_parts(ev.data, ev.len).to_vec();
    let mut s = c.seen.lock().unwrap();
    s.routed.push((ev.msg_id, data, ev.user_data));
    s.thread = Some(std::thread::current().id());
    // Polling from inside a handler is refused.
    let mut evs = [xxnet_event_zero(); 4];
    s.reentrant += xxnet_poll_recv(c.ctx, evs.as_mut_ptr(), 4, 0);
    s.reentrant += xxnet_dispatch(c.ctx, 4, 0);
}

unsafe extern "C" fn on_default(ev: *const xxnet_event, user: *mut c_void) {
    let c = &*(user as *const Ctx);
    c.seen.lock().unwrap().default.push((*ev).msg_id);
}

unsafe extern "C" fn on_kind(ev: *const xxnet_event, user: *mut c_void) {
    let c = &*(user as *const Ctx);
    let ev = &*ev;
    c.seen.lock().unwrap().kinds.push(ev.kind);
    if ev.kind == XXNET_EVENT_CONNECTED {
        // Paguma's OnConnStart: tag the connection; later events carry it.
        assert_eq!(xxnet_conn_set_user_data(c.ctx, ev.conn, 4242), XXNET_OK);
    }
}

fn xxnet_event_zero() -> xxnet_event {
    unsafe { std::mem::zeroed() }
}

#[test]
fn dispatch_routes_by_msg_id_on_the_calling_thread() {
    let a = Node::new();
    let b = Node::new();
    let pb = b.listen("127.0.0.1");
    let state = Box::new(Ctx {
        seen: Mutex::new(Seen::default()),
        ctx: b.ctx,
    });
    let user = &*state as *const Ctx as *mut c_void;
    assert_eq!(xxnet_route(b.ctx, 10, Some(on_route), user), XXNET_OK);
    assert_eq!(xxnet_route_default(b.ctx, Some(on_default), user), XXNET_OK);
    assert_eq!(
        xxnet_on(b.ctx, XXNET_EVENT_CONNECTED, Some(on_kind), user),
        XXNET_OK
    );
    assert_eq!(
        xxnet_on(b.ctx, 999, Some(on_kind), user),
        XXNET_E_INVALID_ARG
    );
    for id in [10u32, 11, 10, 12] {
        a.send_ok("127.0.0.1", pb, 0, id, format!("m{id}").as_bytes());
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        xxnet_dispatch(b.ctx, 64, 20);
        let s = state.seen.lock().unwrap();
        if s.routed.len() + s.default.len() >= 4 {
            break;
        }
    }
    let s = state.seen.lock().unwrap();
    assert_eq!(s.kinds, vec![XXNET_EVENT_CONNECTED]);
    assert_eq!(
        s.routed
            .iter()
            .map(|(id, d, _)| (*id, d.clone()))
            .collect::<Vec<_>>(),
        vec![(10, b"m10".to_vec()), (10, b"m10".to_vec())]
    );
    assert!(
        s.routed.iter().all(|r| r.2 == 4242),
        "user data set in OnConnStart reaches later events"
    );
    assert_eq!(s.default, vec![11, 12]);
    assert_eq!(
        s.thread,
        Some(std::thread::current().id()),
        "handlers run on the dispatching thread"
    );
    assert_eq!(
        s.reentrant, 0,
        "poll and dispatch inside a handler are refused"
    );
    drop(s);
    // Removing a route sends its messages to the default route.
    assert_eq!(xxnet_route(b.ctx, 10, None, std::ptr::null_mut()), XXNET_OK);
    a.send_ok("127.0.0.1", pb, 0, 10, b"again");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !state.seen.lock().unwrap().default.contains(&10) {
        xxnet_dispatch(b.ctx, 64, 20);
    }
    assert!(state.seen.lock().unwrap().default.contains(&10));
    drop(a);
    drop(b);
}

#[test]
fn user_data_unknown_conn_and_null() {
    let a = Node::new();
    assert_eq!(xxnet_conn_set_user_data(a.ctx, 77, 1), XXNET_E_UNKNOWN_CONN);
    assert_eq!(
        xxnet_conn_set_user_data(std::ptr::null_mut(), 1, 1),
        XXNET_E_NULL_POINTER
    );
    assert_eq!(xxnet_dispatch(std::ptr::null_mut(), 8, 0), 0);
    assert_eq!(
        xxnet_route(std::ptr::null_mut(), 1, None, std::ptr::null_mut()),
        XXNET_E_NULL_POINTER
    );
}

static LINES: Mutex<Vec<(c_int, String, String)>> = Mutex::new(Vec::new());

unsafe extern "C" fn log_sink(
    level: c_int,
    target: *const c_char,
    msg: *const c_char,
    _user: *mut c_void,
) {
    let t = std::ffi::CStr::from_ptr(target)
        .to_string_lossy()
        .into_owned();
    let m = std::ffi::CStr::from_ptr(msg).to_string_lossy().into_owned();
    LINES.lock().unwrap().push((level, t, m));
}

#[test]
fn log_lines_reach_the_host_handler_up_to_its_level() {
    assert_eq!(
        xxnet_set_log_handler(Some(log_sink), std::ptr::null_mut(), 9),
        XXNET_E_INVALID_ARG
    );
    assert_eq!(
        xxnet_set_log_handler(Some(log_sink), std::ptr::null_mut(), XXNET_LOG_INFO),
        XXNET_OK
    );
    let a = Node::new();
    a.listen("127.0.0.1"); // logs "listening on ..." at info
    let ok = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(5));
        LINES.lock().unwrap().iter().any(|(l, t, m)| {
            *l == XXNET_LOG_INFO && t.starts_with("xxnet") && m.contains("listening")
        })
    });
    assert!(ok, "info line delivered: {:?}", LINES.lock().unwrap());
    assert!(LINES
        .lock()
        .unwrap()
        .iter()
        .all(|(l, _, _)| *l <= XXNET_LOG_INFO));
    // Silence: nothing more arrives.
    assert_eq!(
        xxnet_set_log_handler(Some(log_sink), std::ptr::null_mut(), XXNET_LOG_OFF),
        XXNET_OK
    );
    let before = LINES.lock().unwrap().len();
    a.listen("127.0.0.1");
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(LINES.lock().unwrap().len(), before);
    // Back to the default: warnings and errors on stderr.
    assert_eq!(
        xxnet_set_log_handler(None, std::ptr::null_mut(), XXNET_LOG_WARN),
        XXNET_OK
    );
}

#[test]
fn versions() {
    let v = unsafe { std::ffi::CStr::from_ptr(xxnet_version()) }
        .to_str()
        .unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    assert_eq!(xxnet_abi_version(), XXNET_ABI_VERSION);
}
