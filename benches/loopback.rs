//! Loopback benchmark through the C ABI: two contexts in one process over
//! 127.0.0.1 (A → B).
//!
//! - One-way throughput for 64 B, 1 KiB and 64 KiB messages (3 runs each,
//!   median shown), with CPU time (user + sys, whole process) per message.
//! - Round trip for 64 B messages: A sends, B echoes on the event's conn
//!   (and, for scale, the same ping-pong over plain blocking TCP sockets).
//!
//! `cargo bench --bench loopback`; `XXNET_BENCH_QUICK=1` runs ~10x fewer messages.
//! Every message carries a sequence number in its first 8 bytes; loss or
//! reordering panics.

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xxnet::ffi::context::*;
use xxnet::ffi::types::{xxnet_event, xxnet_send_opts};
use xxnet::*;

/// Longest a throughput run keeps sending.
const SEND_CAP: Duration = Duration::from_secs(5);
/// Longest the receiver waits for the last message after the sender stopped.
const DRAIN_CAP: Duration = Duration::from_secs(20);
/// Payload bytes the sender lets run ahead of the receiver (keeps memory bounded).
const WINDOW_BYTES: u64 = 256 << 20;
const WINDOW_MSGS: u64 = 1_000_000;
const BATCH: usize = 256;

/// A context pointer that may move to another thread (used by one thread at a time).
struct Ctx(*mut xxnet_ctx);
unsafe impl Send for Ctx {}

impl Ctx {
    fn new() -> Ctx {
        let ctx = xxnet_new(std::ptr::null());
        if ctx.is_null() {
            let why = unsafe { CStr::from_ptr(xxnet_last_error()) }.to_string_lossy();
            panic!("xxnet_new failed: {why}");
        }
        Ctx(ctx)
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        xxnet_free(self.0);
    }
}

fn check(rc: i32, what: &str) {
    if rc != XXNET_OK {
        let text = unsafe { CStr::from_ptr(xxnet_strerror(rc)) }.to_string_lossy();
        panic!("{what} failed: {rc} {text}");
    }
}

fn events() -> Vec<xxnet_event> {
    vec![unsafe { std::mem::zeroed::<xxnet_event>() }; BATCH]
}

fn cpu_time() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Fails loudly on anything but MESSAGE / CONNECTED.
fn unexpected(e: &xxnet_event, who: &str) -> ! {
    let text = unsafe { CStr::from_ptr(xxnet_strerror(e.code)) }.to_string_lossy();
    panic!(
        "{who}: unexpected event kind {} code {} ({text}) conn {} count {}",
        e.kind, e.code, e.conn, e.count
    );
}

/// Listens on 127.0.0.1:0 and returns the port.
fn listen(ctx: &Ctx) -> u16 {
    let ip = CString::new("127.0.0.1").unwrap();
    let mut port = 0u16;
    check(
        xxnet_listen(ctx.0, ip.as_ptr(), 0, &mut port),
        "xxnet_listen",
    );
    port
}

/// Sends one warm-up message A → B and waits for it (connection set up before timing).
fn warm_up(a: &Ctx, b: &Ctx, ip: &CString, port: u16) {
    let opts = xxnet_send_opts {
        lane: 0,
        msg_id: 0,
        flags: 0,
        ack_timeout_ms: 0,
    };
    let data = [0u8; 8];
    check(
        xxnet_send_ex(a.0, ip.as_ptr(), port, data.as_ptr(), data.len(), &opts),
        "warm-up send",
    );
    let mut ev = events();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "warm-up message did not arrive");
        let n = xxnet_poll_recv(b.0, ev.as_mut_ptr(), ev.len(), 100);
        for e in &ev[..n] {
            match e.kind {
                XXNET_EVENT_CONNECTED => {}
                XXNET_EVENT_MESSAGE => return,
                _ => unexpected(e, "warm-up"),
            }
        }
    }
}

struct Run {
    msgs: u64,
    secs: f64,
    cpu: Duration,
    capped: bool,
    /// Sends that returned XXNET_E_WOULD_BLOCK (and waited for WRITABLE).
    would_block: u64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.msgs as f64 / self.secs
    }
}

/// One throughput run: `n` messages of `size` bytes A → B.
fn throughput_run(size: usize, n: u64) -> Run {
    let a = Ctx::new();
    let b = Ctx::new();
    let port = listen(&b);
    let ip = CString::new("127.0.0.1").unwrap();
    warm_up(&a, &b, &ip, port);

    let received = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let sender_done = Arc::new(AtomicBool::new(false));
    let window = WINDOW_MSGS.min((WINDOW_BYTES / size as u64).max(64));

    let cpu0 = cpu_time();
    let start = Instant::now();

    let receiver = {
        let (received, sent, sender_done) = (received.clone(), sent.clone(), sender_done.clone());
        std::thread::spawn(move || {
            let b = b;
            let mut ev = events();
            let mut next: u64 = 0;
            let mut drain_deadline: Option<Instant> = None;
            loop {
                if sender_done.load(Ordering::Acquire) {
                    if next == sent.load(Ordering::Acquire) {
                        break;
                    }
                    let d = *drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN_CAP);
                    if Instant::now() > d {
                        panic!(
                            "message loss: received {next} of {} messages of {size} B",
                            sent.load(Ordering::Acquire)
                        );
                    }
                }
                let k = xxnet_poll_recv(b.0, ev.as_mut_ptr(), ev.len(), 10);
                for e in &ev[..k] {
                    match e.kind {
                        XXNET_EVENT_MESSAGE => {
                            if e.len != size {
                                panic!("message {next}: length {} != {size}", e.len);
                            }
                            let data = unsafe { std::slice::from_raw_parts(e.data, 8) };
                            let seq = u64::from_le_bytes(data.try_into().unwrap());
                            if seq != next {
                                panic!("reorder or loss: expected message {next}, got {seq}");
                            }
                            next += 1;
                        }
                        XXNET_EVENT_CONNECTED => {}
                        _ => unexpected(e, "receiver"),
                    }
                }
                received.store(next, Ordering::Release);
            }
            (Instant::now(), next, b)
        })
    };

    let sender = {
        let (received, sent, sender_done) = (received.clone(), sent.clone(), sender_done.clone());
        std::thread::spawn(move || {
            let a = a;
            let mut buf = vec![0xA5u8; size];
            let opts = xxnet_send_opts {
                lane: 0,
                msg_id: 1,
                flags: 0,
                ack_timeout_ms: 0,
            };
            let mut ev = events();
            let mut capped = false;
            let mut would_block: u64 = 0;
            let mut i: u64 = 0;
            while i < n {
                if i % 4096 == 0 {
                    if start.elapsed() > SEND_CAP {
                        capped = true;
                        break;
                    }
                    // Drain A's own events (CONNECTED, WRITABLE; anything else is a failure).
                    let k = xxnet_poll_recv(a.0, ev.as_mut_ptr(), ev.len(), 0);
                    for e in &ev[..k] {
                        if e.kind != XXNET_EVENT_CONNECTED && e.kind != XXNET_EVENT_WRITABLE {
                            unexpected(e, "sender");
                        }
                    }
                }
                // Bounded in-flight window.
                while i - received.load(Ordering::Acquire) >= window {
                    if start.elapsed() > SEND_CAP + DRAIN_CAP {
                        panic!(
                            "receiver stalled at {} of {i}",
                            received.load(Ordering::Acquire)
                        );
                    }
                    std::thread::yield_now();
                }
                buf[..8].copy_from_slice(&i.to_le_bytes());
                let rc = xxnet_send_ex(a.0, ip.as_ptr(), port, buf.as_ptr(), buf.len(), &opts);
                match rc {
                    XXNET_OK => {
                        i += 1;
                        if i % 1024 == 0 {
                            sent.store(i, Ordering::Release);
                        }
                    }
                    XXNET_E_WOULD_BLOCK => {
                        // Backlog full: wait for WRITABLE (bounded), then retry.
                        would_block += 1;
                        let deadline = Instant::now() + DRAIN_CAP;
                        'writable: loop {
                            if Instant::now() > deadline {
                                panic!("no WRITABLE within {DRAIN_CAP:?} after WOULD_BLOCK");
                            }
                            let k = xxnet_poll_recv(a.0, ev.as_mut_ptr(), ev.len(), 5);
                            for e in &ev[..k] {
                                match e.kind {
                                    XXNET_EVENT_WRITABLE => break 'writable,
                                    XXNET_EVENT_CONNECTED => {}
                                    _ => unexpected(e, "sender"),
                                }
                            }
                        }
                    }
                    rc => check(rc, "xxnet_send_ex"),
                }
            }
            sent.store(i, Ordering::Release);
            sender_done.store(true, Ordering::Release);
            (capped, would_block, a)
        })
    };

    let (capped, would_block, a) = sender.join().expect("sender thread");
    let (end, got, b) = receiver.join().expect("receiver thread");
    let cpu = cpu_time() - cpu0;
    drop(a);
    drop(b);
    Run {
        msgs: got,
        secs: (end - start).as_secs_f64(),
        cpu,
        capped,
        would_block,
    }
}

fn throughput(size: usize, n: u64, label: &str) {
    let mut runs: Vec<Run> = (0..3).map(|_| throughput_run(size, n)).collect();
    let all: Vec<String> = runs
        .iter()
        .map(|r| {
            let mut s = format!("{:.0}", r.rate());
            if r.would_block > 0 {
                s += &format!(" ({} would-block)", r.would_block);
            }
            if r.capped {
                s += " (capped)";
            }
            s
        })
        .collect();
    runs.sort_by(|x, y| x.rate().total_cmp(&y.rate()));
    let m = &runs[1];
    let mbps = m.rate() * size as f64 / 1e6;
    let cpu_ns = m.cpu.as_nanos() as f64 / m.msgs as f64;
    println!(
        "{label:>8} | {:>10} | {:>12.0} | {:>9.1} | {:>8.2} | {:>9.0} | {}",
        m.msgs,
        m.rate(),
        mbps,
        m.secs,
        cpu_ns,
        all.join(", ")
    );
}

fn round_trip(warm: usize, n: usize) {
    let a = Ctx::new();
    let b = Ctx::new();
    let port = listen(&b);
    let ip = CString::new("127.0.0.1").unwrap();
    warm_up(&a, &b, &ip, port);
    let total = warm + n;

    let echo = std::thread::spawn(move || {
        let b = b;
        let mut ev = events();
        let mut echoed = 0usize;
        let deadline = Instant::now() + Duration::from_secs(120);
        while echoed < total {
            assert!(Instant::now() < deadline, "echo: timed out at {echoed}");
            let k = xxnet_poll_recv(b.0, ev.as_mut_ptr(), ev.len(), 100);
            for e in &ev[..k] {
                match e.kind {
                    XXNET_EVENT_MESSAGE => {
                        let opts = xxnet_send_opts {
                            lane: 0,
                            msg_id: e.msg_id,
                            flags: 0,
                            ack_timeout_ms: 0,
                        };
                        check(
                            xxnet_send_conn_ex(b.0, e.conn, e.data, e.len, &opts),
                            "echo send",
                        );
                        echoed += 1;
                    }
                    XXNET_EVENT_CONNECTED => {}
                    _ => unexpected(e, "echo"),
                }
            }
        }
        b
    });

    let mut ev = events();
    let mut buf = [0x5Au8; 64];
    let opts = xxnet_send_opts {
        lane: 0,
        msg_id: 2,
        flags: 0,
        ack_timeout_ms: 0,
    };
    let mut rtts: Vec<f64> = Vec::with_capacity(n);
    let cpu0 = cpu_time();
    let t_all = Instant::now();
    for i in 0..total as u64 {
        buf[..8].copy_from_slice(&i.to_le_bytes());
        let t = Instant::now();
        check(
            xxnet_send_ex(a.0, ip.as_ptr(), port, buf.as_ptr(), buf.len(), &opts),
            "rtt send",
        );
        let deadline = t + Duration::from_secs(10);
        'wait: loop {
            assert!(
                Instant::now() < deadline,
                "round trip {i}: no echo within 10 s"
            );
            let k = xxnet_poll_recv(a.0, ev.as_mut_ptr(), ev.len(), 100);
            for e in &ev[..k] {
                match e.kind {
                    XXNET_EVENT_MESSAGE => {
                        let data = unsafe { std::slice::from_raw_parts(e.data, e.len) };
                        let seq = u64::from_le_bytes(data[..8].try_into().unwrap());
                        assert_eq!(seq, i, "echo out of order");
                        assert_eq!(data, &buf[..], "echo payload");
                        break 'wait;
                    }
                    XXNET_EVENT_CONNECTED => {}
                    _ => unexpected(e, "rtt"),
                }
            }
        }
        if i as usize >= warm {
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let elapsed = t_all.elapsed();
    let cpu = cpu_time() - cpu0;
    let b = echo.join().expect("echo thread");
    drop(b);
    drop(a);
    rtts.sort_by(|x, y| x.total_cmp(y));
    let pct = |p: f64| rtts[((rtts.len() as f64 * p) as usize).min(rtts.len() - 1)];
    let mean = rtts.iter().sum::<f64>() / rtts.len() as f64;
    println!(
        "round trip 64 B: {n} after {warm} warm-up in {:.2?}: mean {mean:.1} us, p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us; CPU {:.1} us per round trip",
        elapsed,
        pct(0.50),
        pct(0.99),
        pct(0.999),
        rtts[rtts.len() - 1],
        cpu.as_secs_f64() * 1e6 / total as f64
    );
}

/// Baseline: the same 64 B ping-pong over plain blocking std TCP sockets.
fn tcp_baseline(warm: usize, n: usize) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let total = warm + n;
    let echo = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = [0u8; 64];
        for _ in 0..total {
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        }
    });
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [7u8; 64];
    let mut rtts = Vec::with_capacity(n);
    for i in 0..total {
        let t = Instant::now();
        s.write_all(&buf).unwrap();
        s.read_exact(&mut buf).unwrap();
        if i >= warm {
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    echo.join().unwrap();
    rtts.sort_by(|x, y| x.total_cmp(y));
    let pct = |p: f64| rtts[((rtts.len() as f64 * p) as usize).min(rtts.len() - 1)];
    let mean = rtts.iter().sum::<f64>() / rtts.len() as f64;
    println!(
        "baseline, plain blocking TCP 64 B ping-pong: mean {mean:.1} us, p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us",
        pct(0.50),
        pct(0.99),
        pct(0.999)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let quick = std::env::var("XXNET_BENCH_QUICK").is_ok_and(|v| v == "1");
    let div = if quick { 10 } else { 1 };
    println!(
        "xxnet loopback benchmark (127.0.0.1, A → B through the C ABI){}; {} CPUs",
        if quick { ", quick mode" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "throughput: median of 3 runs; time from first send to last receive; CPU = user+sys of the whole process"
    );
    println!(
        "{:>8} | {:>10} | {:>12} | {:>9} | {:>8} | {:>9} | all runs (msg/s)",
        "size", "messages", "msg/s", "MB/s", "seconds", "CPU ns/msg"
    );
    throughput(64, 5_000_000 / div, "64 B");
    throughput(1024, 2_000_000 / div, "1 KiB");
    throughput(64 << 10, 60_000 / div, "64 KiB");
    round_trip(1_000 / div as usize, 20_000 / div as usize);
    tcp_baseline(1_000 / div as usize, 20_000 / div as usize);
}
