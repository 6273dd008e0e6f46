//! Deterministic profiling driver (issue 7): two contexts in one process over
//! 127.0.0.1, driven through the C ABI from one host thread, with a counting
//! global allocator.
//!
//! Modes (`cargo build --release --example profile`, then run
//! `target/release/examples/profile MODE [N] [WINDOW]`):
//!
//! - `oneway N W` (default 200000 256): A sends N 64 B messages to B by
//!   address, W at a time; after each window the thread polls B until the
//!   window has arrived (and drains A's events). Prints allocations and
//!   allocated bytes per message over the N messages (after a warm-up).
//! - `rtt N`: N 64 B round trips (A sends, B echoes on the event's conn, A
//!   waits for the echo), allocations per round trip.
//! - `burst N W` (default 100000 4096): one connection carries N messages W
//!   at a time, then idles 4 s; prints the heap held after the burst and
//!   after the idle period (both contexts, one connection each).
//! - `idle M` (default 1000): B listens, M raw TCP sockets connect and do the
//!   handshake (preface + HELLO, as a client that listens nowhere); prints
//!   B's heap growth per idle connection (the raw clients hold no heap). Add
//!   `shrink` as the third argument to wait 1.5 s first (idle-buffer release
//!   is time based).
//!
//! Instructions per message (primary figure, repeatable on a noisy box):
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.N \
//!     target/release/examples/profile oneway 200000
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.0 \
//!     target/release/examples/profile oneway 0
//! # (Ir(N) - Ir(0)) / N  = instructions per message, all threads
//! callgrind_annotate --inclusive=yes /tmp/cg.N | head -60
//! callgrind_annotate /tmp/cg.N | head -60          # exclusive
//! ```
//!
//! Heap per idle connection by allocation site:
//! `valgrind --tool=dhat target/release/examples/profile idle 1000`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::{CStr, CString};
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use xxnet::ffi::context::*;
use xxnet::ffi::types::{xxnet_event, xxnet_send_opts};
use xxnet::*;

/// Counts allocations and live heap bytes (all threads).
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(l.size() as u64, Ordering::Relaxed);
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(l.size() as u64, Ordering::Relaxed);
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(new as u64, Ordering::Relaxed);
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn snap() -> (u64, u64) {
    (
        ALLOCS.load(Ordering::Relaxed),
        ALLOC_BYTES.load(Ordering::Relaxed),
    )
}

struct Ctx(*mut xxnet_ctx);

impl Ctx {
    fn new() -> Ctx {
        let ctx = xxnet_new(std::ptr::null());
        assert!(!ctx.is_null(), "xxnet_new: {:?}", unsafe {
            CStr::from_ptr(xxnet_last_error())
        });
        Ctx(ctx)
    }
    fn listen(&self) -> u16 {
        let ip = CString::new("127.0.0.1").unwrap();
        let mut port = 0u16;
        check(xxnet_listen(self.0, ip.as_ptr(), 0, &mut port), "listen");
        port
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        xxnet_free(self.0);
    }
}

fn check(rc: i32, what: &str) {
    assert_eq!(rc, XXNET_OK, "{what}: {:?}", unsafe {
        CStr::from_ptr(xxnet_strerror(rc))
    });
}

const OPTS: xxnet_send_opts = xxnet_send_opts {
    lane: 0,
    msg_id: 1,
    flags: 0,
    ack_timeout_ms: 0,
};

/// Polls `ctx` until `want` MESSAGE events came; returns the conn of the last.
fn receive(ctx: &Ctx, ev: &mut [xxnet_event], want: usize, next: &mut u64) -> u64 {
    let mut got = 0;
    let mut conn = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < want {
        assert!(Instant::now() < deadline, "stalled at {got} of {want}");
        let k = xxnet_poll_recv(ctx.0, ev.as_mut_ptr(), ev.len(), 100);
        for e in &ev[..k] {
            match e.kind {
                XXNET_EVENT_MESSAGE => {
                    let d = unsafe { std::slice::from_raw_parts(e.data, 8) };
                    assert_eq!(u64::from_le_bytes(d.try_into().unwrap()), *next);
                    *next += 1;
                    got += 1;
                    conn = e.conn;
                }
                XXNET_EVENT_CONNECTED | XXNET_EVENT_WRITABLE => {}
                k => panic!("unexpected event {k} code {}", e.code),
            }
        }
    }
    conn
}

fn drain(ctx: &Ctx, ev: &mut [xxnet_event]) {
    let k = xxnet_poll_recv(ctx.0, ev.as_mut_ptr(), ev.len(), 0);
    for e in &ev[..k] {
        assert!(
            e.kind == XXNET_EVENT_CONNECTED || e.kind == XXNET_EVENT_WRITABLE,
            "unexpected event {} code {}",
            e.kind,
            e.code
        );
    }
}

fn oneway(n: u64, window: u64) {
    let a = Ctx::new();
    let b = Ctx::new();
    let port = b.listen();
    let ip = CString::new("127.0.0.1").unwrap();
    let mut ev = vec![unsafe { std::mem::zeroed::<xxnet_event>() }; 256];
    let mut buf = [0xA5u8; 64];
    let mut seq = 0u64;
    let mut next = 0u64;
    let mut send_window = |k: u64, seq: &mut u64| {
        for _ in 0..k {
            buf[..8].copy_from_slice(&seq.to_le_bytes());
            loop {
                match xxnet_send_ex(a.0, ip.as_ptr(), port, buf.as_ptr(), buf.len(), &OPTS) {
                    XXNET_OK => break,
                    XXNET_E_WOULD_BLOCK => std::thread::sleep(Duration::from_millis(1)),
                    rc => check(rc, "send"),
                }
            }
            *seq += 1;
        }
    };
    // Warm-up: connection set up, buffers grown.
    for _ in 0..4 {
        send_window(window, &mut seq);
        receive(&b, &mut ev, window as usize, &mut next);
        drain(&a, &mut ev);
    }
    let (c0, b0) = snap();
    let t0 = Instant::now();
    let mut left = n;
    while left > 0 {
        let k = left.min(window);
        send_window(k, &mut seq);
        receive(&b, &mut ev, k as usize, &mut next);
        drain(&a, &mut ev);
        left -= k;
    }
    let secs = t0.elapsed().as_secs_f64();
    let (c1, b1) = snap();
    let per = |x: u64| x as f64 / n.max(1) as f64;
    println!(
        "oneway {n} x 64 B, window {window}: {:.0} msg/s, {:.3} allocs/msg, {:.1} alloc bytes/msg",
        n as f64 / secs,
        per(c1 - c0),
        per(b1 - b0)
    );
}

fn rtt(n: u64) {
    let a = Ctx::new();
    let b = Ctx::new();
    let port = b.listen();
    let ip = CString::new("127.0.0.1").unwrap();
    let mut ev = vec![unsafe { std::mem::zeroed::<xxnet_event>() }; 256];
    let mut buf = [0x5Au8; 64];
    let (mut na, mut nb) = (0u64, 0u64);
    let mut one = |i: u64, na: &mut u64, nb: &mut u64| {
        buf[..8].copy_from_slice(&i.to_le_bytes());
        check(
            xxnet_send_ex(a.0, ip.as_ptr(), port, buf.as_ptr(), buf.len(), &OPTS),
            "send",
        );
        let conn = receive(&b, &mut ev, 1, nb);
        check(
            xxnet_send_conn_ex(b.0, conn, buf.as_ptr(), buf.len(), &OPTS),
            "echo",
        );
        receive(&a, &mut ev, 1, na);
    };
    for i in 0..100 {
        one(i, &mut na, &mut nb);
    }
    let (c0, b0) = snap();
    let t0 = Instant::now();
    for i in 100..100 + n {
        one(i, &mut na, &mut nb);
    }
    let us = t0.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64;
    let (c1, b1) = snap();
    let per = |x: u64| x as f64 / n.max(1) as f64;
    println!(
        "rtt {n} x 64 B: mean {us:.1} us, {:.3} allocs/rt, {:.1} alloc bytes/rt",
        per(c1 - c0),
        per(b1 - b0)
    );
}

fn idle(m: usize, settle: bool) {
    use xxnet::proto::{Hello, Preface, SessionSync};
    let b = Ctx::new();
    let port = b.listen();
    let mut ev = vec![unsafe { std::mem::zeroed::<xxnet_event>() }; 256];
    drain(&b, &mut ev);
    std::thread::sleep(Duration::from_millis(100));
    let live0 = LIVE.load(Ordering::Relaxed);
    let mut socks = Vec::with_capacity(m);
    let mut connected = 0;
    for i in 0..m {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let hello = Hello {
            sync: SessionSync {
                send_id: 0x1000 + i as u64,
                ..SessionSync::default()
            },
            instance: 0x7777_0000 + i as u64,
            nonce: 1,
            listen: None,
            name: None,
            challenge: None,
        };
        let mut out = bytes::BytesMut::new();
        out.extend_from_slice(&Preface::BYTES);
        hello.encode(&mut out);
        s.write_all(&out).expect("hello");
        socks.push(s);
        // Keep the accept backlog short.
        if i % 64 == 63 {
            connected += count_connected(&b, &mut ev, 0);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while connected < m {
        assert!(Instant::now() < deadline, "{connected} of {m} connected");
        connected += count_connected(&b, &mut ev, 50);
    }
    if settle {
        let until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < until {
            count_connected(&b, &mut ev, 50);
        }
    }
    // Release what the last poll lent.
    xxnet_poll_recv(b.0, ev.as_mut_ptr(), ev.len(), 0);
    std::thread::sleep(Duration::from_millis(100));
    let live1 = LIVE.load(Ordering::Relaxed);
    println!(
        "idle {m} connections: heap {} -> {} bytes, {:.0} bytes per idle connection",
        live0,
        live1,
        (live1 as f64 - live0 as f64) / m as f64
    );
    drop(socks);
}

/// One connection A → B carries a burst, then idles: live heap right after
/// the burst and after 4 s of quiet (past the heartbeat timer, a third of the
/// default 10 s idle timeout, which gives back idle buffers).
fn burst(n: u64, window: u64) {
    let a = Ctx::new();
    let b = Ctx::new();
    let port = b.listen();
    let ip = CString::new("127.0.0.1").unwrap();
    let mut ev = vec![unsafe { std::mem::zeroed::<xxnet_event>() }; 256];
    let live0 = LIVE.load(Ordering::Relaxed);
    let buf = [0u8; 64];
    let (mut seq, mut next) = (0u64, 0u64);
    while seq < n {
        for _ in 0..window {
            let mut b8 = buf;
            b8[..8].copy_from_slice(&seq.to_le_bytes());
            check(
                xxnet_send_ex(a.0, ip.as_ptr(), port, b8.as_ptr(), b8.len(), &OPTS),
                "send",
            );
            seq += 1;
        }
        receive(&b, &mut ev, window as usize, &mut next);
    }
    let settle = |ms: u64, ev: &mut [xxnet_event]| {
        let until = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < until {
            drain(&a, ev);
            drain(&b, ev);
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    settle(200, &mut ev);
    let live1 = LIVE.load(Ordering::Relaxed);
    settle(4000, &mut ev);
    let live2 = LIVE.load(Ordering::Relaxed);
    println!(
        "burst of {n} x 64 B (window {window}) over one connection: heap +{} bytes after the burst, +{} bytes after 4 s idle",
        live1 as i64 - live0 as i64,
        live2 as i64 - live0 as i64
    );
}

fn count_connected(b: &Ctx, ev: &mut [xxnet_event], timeout_ms: i32) -> usize {
    let k = xxnet_poll_recv(b.0, ev.as_mut_ptr(), ev.len(), timeout_ms);
    ev[..k]
        .iter()
        .filter(|e| e.kind == XXNET_EVENT_CONNECTED)
        .count()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: u64| args.get(i).map_or(d, |s| s.parse().expect("number"));
    match args.first().map(String::as_str).unwrap_or("oneway") {
        "oneway" => oneway(num(1, 200_000), num(2, 256)),
        "rtt" => rtt(num(1, 2_000)),
        "burst" => burst(num(1, 100_000), num(2, 4096)),
        "idle" => idle(
            num(1, 1000) as usize,
            args.get(2).is_some_and(|s| s == "shrink"),
        ),
        m => panic!("unknown mode {m} (oneway, rtt, burst, idle)"),
    }
}
