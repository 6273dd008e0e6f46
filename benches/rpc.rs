//! Remote-call benchmark through the C ABI: two named nodes in one process
//! over 127.0.0.1, each context driven by its own thread. The callee thread
//! (node "B") polls and replies at once; the caller thread (node "A") makes
//! calls and polls their results.
//!
//! 1. Sequential 64 B calls (one at a time): p50, p99, calls/s.
//! 2. Pipelined 64 B calls, 64 in flight: calls/s, p50/p99 latency.
//! 3. One 16 MiB call on the bulk lane (small reply): time, median of several.
//! 4. 64 B calls on the default lane, one at a time, while a 16 MiB call is
//!    in flight on the bulk lane: p50/p99/max round trip (target p99 < 5 ms).
//!
//! Each figure is printed next to the reference for skynet's cluster on this
//! kind of machine (issue 5) and the ratio xxnet/skynet.
//!
//! `cargo bench --bench rpc`; `XXNET_BENCH_QUICK=1` runs ~10x fewer calls;
//! `XXNET_BENCH_ONLY=3,4` runs only the parts listed.
//! Every loop is bounded in count and by a deadline; traffic stays on 127.0.0.1.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use xxnet::ffi::context::*;
use xxnet::ffi::rpc::{xxnet_call_ex, xxnet_cluster_set, xxnet_reply, xxnet_service_register};
use xxnet::ffi::types::{xxnet_call_opts, xxnet_config, xxnet_event};
use xxnet::*;

const SMALL: usize = 64;
const BIG: usize = 16 << 20;
/// Reply to the big call.
const BIG_REPLY: usize = 64;
/// A call envelope adds a few bytes: 16 MiB of payload needs a larger limit.
const MAX_MESSAGE: u64 = 32 << 20;
const WINDOW: usize = 64;
const BATCH: usize = 256;
/// Deadline of every small call (it then resolves with XXNET_E_TIMEOUT, which panics).
const CALL_TIMEOUT_MS: u32 = 10_000;
/// Deadline of a 16 MiB call.
const BIG_TIMEOUT_MS: u32 = 60_000;
/// Longest the caller waits for one result beyond its call's deadline.
const RESULT_WAIT: Duration = Duration::from_secs(70);
/// Longest a measured phase keeps issuing calls (it then stops and says "capped").
const PHASE_CAP: Duration = Duration::from_secs(30);
/// The callee thread stops by itself this long after it started, whatever happens.
const CALLEE_CAP: Duration = Duration::from_secs(900);

// Reference figures for skynet's cluster on this kind of machine (issue 5).
const SKYNET_SEQ_RATE: f64 = 800.0;
const SKYNET_SEQ_P50_MS: f64 = 0.68;
const SKYNET_PIPE_RATE: f64 = 30_000.0;
const SKYNET_BIG_MS: f64 = 46.0;
/// Target for small calls beside a 16 MiB call.
const TARGET_P99_MS: f64 = 5.0;

/// A context pointer that may move to another thread (used by one thread at a time).
struct Node(*mut xxnet_ctx);
unsafe impl Send for Node {}

impl Node {
    fn new(name: &CStr) -> Node {
        let mut cfg = std::mem::MaybeUninit::<xxnet_config>::uninit();
        xxnet_config_default(cfg.as_mut_ptr());
        let mut cfg = unsafe { cfg.assume_init() };
        cfg.node_name = name.as_ptr();
        cfg.max_message_size = MAX_MESSAGE;
        let ctx = xxnet_new(&cfg);
        if ctx.is_null() {
            let why = unsafe { CStr::from_ptr(xxnet_last_error()) }.to_string_lossy();
            panic!("xxnet_new failed: {why}");
        }
        Node(ctx)
    }

    /// Listens on 127.0.0.1:0; returns "127.0.0.1:port".
    fn listen(&self) -> String {
        let ip = CString::new("127.0.0.1").unwrap();
        let mut port = 0u16;
        check(
            xxnet_listen(self.0, ip.as_ptr(), 0, &mut port),
            "xxnet_listen",
        );
        format!("127.0.0.1:{port}")
    }

    fn cluster_set(&self, name: &CStr, addr: &str) {
        let addr = CString::new(addr).unwrap();
        check(
            xxnet_cluster_set(self.0, name.as_ptr(), addr.as_ptr()),
            "xxnet_cluster_set",
        );
    }

    fn serve(&self, service: &CStr) {
        check(
            xxnet_service_register(self.0, service.as_ptr()),
            "xxnet_service_register",
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        xxnet_free(self.0);
    }
}

fn strerror(rc: i32) -> String {
    unsafe { CStr::from_ptr(xxnet_strerror(rc)) }
        .to_string_lossy()
        .into_owned()
}

fn check(rc: i32, what: &str) {
    if rc != XXNET_OK {
        panic!("{what} failed: {rc} {}", strerror(rc));
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

/// Fails loudly on an event neither side expects.
fn unexpected(e: &xxnet_event, who: &str) -> ! {
    panic!(
        "{who}: unexpected event kind {} code {} ({}) conn {} id {}",
        e.kind,
        e.code,
        strerror(e.code),
        e.conn,
        e.id
    );
}

/// Events that may come at any time and mean nothing here.
fn benign(kind: u32) -> bool {
    matches!(
        kind,
        XXNET_EVENT_CONNECTED | XXNET_EVENT_NODE_CHANGED | XXNET_EVENT_LINK_UP
    )
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// Sets `stop` when dropped (also when the caller panics), so the callee ends.
struct StopOnDrop<'a>(&'a AtomicBool);
impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// What the callee thread did.
#[derive(Default)]
struct Served {
    small: u64,
    big: u64,
}

/// The callee: polls and answers every request at once ("echo" echoes,
/// "bulk" answers BIG_REPLY bytes), until `stop` or its own deadline.
fn serve(b: Node, stop: &AtomicBool) -> Served {
    let deadline = Instant::now() + CALLEE_CAP;
    let mut ev = events();
    let mut served = Served::default();
    while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
        let k = xxnet_poll_recv(b.0, ev.as_mut_ptr(), ev.len(), 5);
        for e in &ev[..k] {
            match e.kind {
                XXNET_EVENT_CALL_REQUEST => {
                    let service = unsafe { CStr::from_ptr(e.service) }.to_bytes();
                    let rc = match service {
                        b"echo" => {
                            assert_eq!(e.len, SMALL, "small request length");
                            served.small += 1;
                            xxnet_reply(b.0, e.id, XXNET_OK, e.data, e.len)
                        }
                        b"bulk" => {
                            assert_eq!(e.len, BIG, "big request length");
                            let data = unsafe { std::slice::from_raw_parts(e.data, e.len) };
                            // Spot checks (a full comparison would add to the measured time).
                            for at in [0, BIG / 2, BIG - 1] {
                                assert_eq!(data[at], big_byte(at), "big request byte {at}");
                            }
                            served.big += 1;
                            xxnet_reply(b.0, e.id, XXNET_OK, e.data, BIG_REPLY)
                        }
                        other => panic!(
                            "callee: unknown service {:?}",
                            String::from_utf8_lossy(other)
                        ),
                    };
                    check(rc, "xxnet_reply");
                }
                k if benign(k) => {}
                // A went away at the end of a run (stop is set before it is freed),
                // taking the acknowledgement of the last replies with it.
                XXNET_EVENT_DISCONNECTED | XXNET_EVENT_LINK_DOWN | XXNET_EVENT_SEND_FAILED
                    if stop.load(Ordering::Acquire) => {}
                _ => unexpected(e, "callee"),
            }
        }
    }
    drop(b);
    served
}

fn big_byte(i: usize) -> u8 {
    (i as u32).wrapping_mul(2_654_435_761).rotate_right(13) as u8
}

/// One CALL_RESULT, copied out of the event.
struct Res {
    session: u64,
    code: i32,
    len: usize,
    head: [u8; 8],
}

/// The caller's side: node "A", driven by the caller thread.
struct Caller {
    a: Node,
    ev: Vec<xxnet_event>,
    node: CString,
    echo: CString,
    bulk: CString,
    big: Vec<u8>,
    /// Calls refused with XXNET_E_WOULD_BLOCK (retried after polling).
    would_block: u64,
}

impl Caller {
    /// xxnet_call_ex: Ok(session) or Err(code).
    fn call(&self, big: bool, data: &[u8], lane: u32, timeout_ms: u32) -> Result<u64, i32> {
        let opts = xxnet_call_opts {
            lane,
            timeout_ms,
            flags: 0,
        };
        let service = if big { &self.bulk } else { &self.echo };
        let mut session = 0u64;
        match xxnet_call_ex(
            self.a.0,
            self.node.as_ptr(),
            service.as_ptr(),
            data.as_ptr(),
            data.len(),
            &opts,
            &mut session,
        ) {
            XXNET_OK => Ok(session),
            rc => Err(rc),
        }
    }

    /// A small call on the default lane carrying `seq` in its first 8 bytes.
    fn small(&self, seq: u64) -> Result<u64, i32> {
        let mut buf = [0x5Au8; SMALL];
        buf[..8].copy_from_slice(&seq.to_le_bytes());
        self.call(false, &buf, XXNET_LANE_DEFAULT, CALL_TIMEOUT_MS)
    }

    /// A small call that must be accepted; retries (bounded) after WOULD_BLOCK.
    fn small_ok(&mut self, seq: u64) -> u64 {
        let deadline = Instant::now() + RESULT_WAIT;
        loop {
            match self.small(seq) {
                Ok(s) => return s,
                Err(XXNET_E_WOULD_BLOCK) if Instant::now() < deadline => {
                    self.would_block += 1;
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err(rc) => check(rc, "small xxnet_call_ex"),
            }
        }
    }

    /// One poll; returns the CALL_RESULTs (checked: code OK) and when the poll returned.
    fn poll(&mut self, timeout_ms: i32, out: &mut Vec<Res>) -> Instant {
        out.clear();
        let k = xxnet_poll_recv(self.a.0, self.ev.as_mut_ptr(), self.ev.len(), timeout_ms);
        let at = Instant::now();
        for e in &self.ev[..k] {
            match e.kind {
                XXNET_EVENT_CALL_RESULT => {
                    if e.code != XXNET_OK {
                        // The caller's counters help tell a lost request from a slow one.
                        let mut st = xxnet::ffi::types::xxnet_stats::default();
                        xxnet::ffi::context::xxnet_stats(self.a.0, &mut st);
                        eprintln!("caller stats: {st:?}");
                        panic!(
                            "call session {} failed: {} {}",
                            e.id,
                            e.code,
                            strerror(e.code)
                        );
                    }
                    let mut head = [0u8; 8];
                    if e.len >= 8 {
                        head.copy_from_slice(unsafe { std::slice::from_raw_parts(e.data, 8) });
                    }
                    out.push(Res {
                        session: e.id,
                        code: e.code,
                        len: e.len,
                        head,
                    });
                }
                k if benign(k) => {}
                _ => unexpected(e, "caller"),
            }
        }
        at
    }

    /// Makes one small call and waits for its result; returns the round trip.
    fn small_round_trip(&mut self, seq: u64) -> Duration {
        let t = Instant::now();
        let s = self.small_ok(seq);
        let deadline = t + RESULT_WAIT;
        let mut res = Vec::new();
        loop {
            assert!(Instant::now() < deadline, "call {seq}: no result");
            let at = self.poll(100, &mut res);
            if let Some(r) = res.first() {
                assert_eq!(res.len(), 1, "one call, one result");
                assert_eq!(r.session, s, "a result for another call");
                assert_eq!((r.code, r.len), (XXNET_OK, SMALL));
                assert_eq!(u64::from_le_bytes(r.head), seq, "echo payload");
                return at - t;
            }
        }
    }
}

/// Builds nodes A (caller) and B (callee) on 127.0.0.1, each knowing both,
/// runs the callee on its thread and `f` on the caller thread (after a
/// warm-up that connects A to B), then stops both.
fn with_pair<R: Send>(f: impl FnOnce(&mut Caller) -> R + Send) -> R {
    let (na, nb) = (cstr("A"), cstr("B"));
    let a = Node::new(&na);
    let b = Node::new(&nb);
    let (addr_a, addr_b) = (a.listen(), b.listen());
    for n in [&a, &b] {
        n.cluster_set(&na, &addr_a);
        n.cluster_set(&nb, &addr_b);
    }
    b.serve(&cstr("echo"));
    b.serve(&cstr("bulk"));
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let callee = std::thread::Builder::new()
            .name("callee".into())
            .spawn_scoped(s, || serve(b, &stop))
            .unwrap();
        let caller = std::thread::Builder::new()
            .name("caller".into())
            .spawn_scoped(s, || {
                let _stop = StopOnDrop(&stop);
                let mut c = Caller {
                    a,
                    ev: events(),
                    node: nb.clone(),
                    echo: cstr("echo"),
                    bulk: cstr("bulk"),
                    big: Vec::new(),
                    would_block: 0,
                };
                // Warm-up: the first call opens the session; a few more warm the path.
                for i in 0..200 {
                    c.small_round_trip(u64::MAX - i);
                }
                let r = f(&mut c);
                // The callee stops before A goes away (it then sees A close).
                stop.store(true, Ordering::Release);
                drop(c);
                r
            })
            .unwrap();
        let r = caller.join();
        stop.store(true, Ordering::Release);
        let served = callee.join().expect("callee thread");
        let r = r.unwrap_or_else(|p| std::panic::resume_unwind(p));
        assert!(served.small >= 200, "the callee answered the warm-up calls");
        r
    })
}

/// Sorted latencies in microseconds.
struct Lat(Vec<f64>);

impl Lat {
    fn new(mut v: Vec<f64>) -> Lat {
        v.sort_by(|x, y| x.total_cmp(y));
        Lat(v)
    }
    fn pct(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0[((self.0.len() as f64 * p) as usize).min(self.0.len() - 1)]
    }
    fn max(&self) -> f64 {
        self.0.last().copied().unwrap_or(f64::NAN)
    }
}

fn ms(us: f64) -> String {
    if us < 1000.0 {
        format!("{:.3} ms", us / 1000.0)
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

struct RateRun {
    calls: u64,
    secs: f64,
    cpu: Duration,
    lat: Lat,
    capped: bool,
}

impl RateRun {
    fn rate(&self) -> f64 {
        self.calls as f64 / self.secs
    }
}

/// Sequential calls: one at a time.
fn sequential_run(c: &mut Caller, n: u64) -> RateRun {
    let mut lat = Vec::with_capacity(n as usize);
    let cpu0 = cpu_time();
    let start = Instant::now();
    let mut capped = false;
    for i in 0..n {
        if i % 256 == 0 && start.elapsed() > PHASE_CAP {
            capped = true;
            break;
        }
        lat.push(c.small_round_trip(i).as_secs_f64() * 1e6);
    }
    let secs = start.elapsed().as_secs_f64();
    RateRun {
        calls: lat.len() as u64,
        secs,
        cpu: cpu_time() - cpu0,
        lat: Lat::new(lat),
        capped,
    }
}

/// Pipelined calls: up to WINDOW in flight.
fn pipelined_run(c: &mut Caller, n: u64) -> RateRun {
    let mut in_flight: HashMap<u64, (u64, Instant)> = HashMap::with_capacity(WINDOW * 2);
    let mut lat = Vec::with_capacity(n as usize);
    let mut res = Vec::new();
    let cpu0 = cpu_time();
    let start = Instant::now();
    let mut issued = 0u64;
    let mut capped = false;
    while (lat.len() as u64) < n {
        let now = Instant::now();
        if now - start > PHASE_CAP && !capped {
            capped = true;
        }
        if now - start > PHASE_CAP + RESULT_WAIT {
            panic!("pipelined: {} results missing", in_flight.len());
        }
        while !capped && issued < n && in_flight.len() < WINDOW {
            let t = Instant::now();
            match c.small(issued) {
                Ok(s) => {
                    in_flight.insert(s, (issued, t));
                    issued += 1;
                }
                Err(XXNET_E_WOULD_BLOCK) => {
                    c.would_block += 1;
                    break;
                }
                Err(rc) => check(rc, "pipelined xxnet_call_ex"),
            }
        }
        if capped && in_flight.is_empty() {
            break;
        }
        let at = c.poll(10, &mut res);
        for r in &res {
            let (seq, t) = in_flight
                .remove(&r.session)
                .unwrap_or_else(|| panic!("result for unknown session {}", r.session));
            assert_eq!((r.code, r.len), (XXNET_OK, SMALL));
            assert_eq!(u64::from_le_bytes(r.head), seq, "echo payload");
            lat.push((at - t).as_secs_f64() * 1e6);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    RateRun {
        calls: lat.len() as u64,
        secs,
        cpu: cpu_time() - cpu0,
        lat: Lat::new(lat),
        capped,
    }
}

/// Median run (by rate) of `runs` and every run's rate.
fn median_run(mut runs: Vec<RateRun>) -> (RateRun, String) {
    let all: Vec<String> = runs
        .iter()
        .map(|r| format!("{:.0}{}", r.rate(), if r.capped { " (capped)" } else { "" }))
        .collect();
    runs.sort_by(|x, y| x.rate().total_cmp(&y.rate()));
    let m = runs.swap_remove(runs.len() / 2);
    (m, all.join(", "))
}

fn sequential(n: u64, runs: usize) {
    let (m, all) = with_pair(|c| {
        let runs: Vec<RateRun> = (0..runs).map(|_| sequential_run(c, n)).collect();
        median_run(runs)
    });
    println!("1. sequential 64 B calls, one at a time ({runs} runs of {n}; median run; all runs calls/s: {all})");
    println!(
        "   calls/s {:>10.0}   skynet ~{SKYNET_SEQ_RATE:.0}   xxnet/skynet {:.1} (higher is better)",
        m.rate(),
        m.rate() / SKYNET_SEQ_RATE
    );
    let p50 = m.lat.pct(0.50);
    println!(
        "   p50     {:>10}   skynet {SKYNET_SEQ_P50_MS} ms   xxnet/skynet {:.3} (lower is better)",
        ms(p50),
        p50 / 1000.0 / SKYNET_SEQ_P50_MS
    );
    println!(
        "   p99 {}, p99.9 {}, max {}; CPU (whole process) {:.1} us per call",
        ms(m.lat.pct(0.99)),
        ms(m.lat.pct(0.999)),
        ms(m.lat.max()),
        m.cpu.as_secs_f64() * 1e6 / m.calls as f64
    );
}

fn pipelined(n: u64, runs: usize) {
    let (m, all, wb) = with_pair(|c| {
        let runs: Vec<RateRun> = (0..runs).map(|_| pipelined_run(c, n)).collect();
        let (m, all) = median_run(runs);
        (m, all, c.would_block)
    });
    println!(
        "2. pipelined 64 B calls, {WINDOW} in flight ({runs} runs of {n}; median run; all runs calls/s: {all})"
    );
    println!(
        "   calls/s {:>10.0}   skynet ~{SKYNET_PIPE_RATE:.0}   xxnet/skynet {:.1} (higher is better)",
        m.rate(),
        m.rate() / SKYNET_PIPE_RATE
    );
    println!(
        "   latency p50 {}, p99 {}, p99.9 {}, max {}; CPU (whole process) {:.2} us per call; {} would-block",
        ms(m.lat.pct(0.50)),
        ms(m.lat.pct(0.99)),
        ms(m.lat.pct(0.999)),
        ms(m.lat.max()),
        m.cpu.as_secs_f64() * 1e6 / m.calls as f64,
        wb
    );
}

fn big_payload() -> Vec<u8> {
    (0..BIG).map(big_byte).collect()
}

/// Makes the 16 MiB call; `during` is called between polls while it is in
/// flight (it may make small calls). Returns the big call's time.
fn big_call(c: &mut Caller, mut during: impl FnMut(&mut Caller, &[Res], bool) -> bool) -> Duration {
    let big = std::mem::take(&mut c.big);
    let t = Instant::now();
    let s = match c.call(true, &big, XXNET_LANE_BULK, BIG_TIMEOUT_MS) {
        Ok(s) => s,
        Err(rc) => panic!("big xxnet_call_ex failed: {rc} {}", strerror(rc)),
    };
    c.big = big;
    let deadline = t + RESULT_WAIT;
    let mut res = Vec::new();
    let mut took = None;
    // The first small call goes out at once, before the first poll.
    during(c, &[], false);
    loop {
        assert!(Instant::now() < deadline, "big call: no result");
        let at = c.poll(1, &mut res);
        if let Some(r) = res.iter().find(|r| r.session == s) {
            assert_eq!((r.code, r.len), (XXNET_OK, BIG_REPLY));
            took = Some(at - t);
        }
        // `during` sees the other results; returns whether it still waits for one.
        let others: Vec<Res> = res.drain(..).filter(|r| r.session != s).collect();
        let waiting = during(c, &others, took.is_some());
        if let (Some(took), false) = (took, waiting) {
            return took;
        }
    }
}

fn big_alone(repeat: usize) {
    let times = with_pair(|c| {
        c.big = big_payload();
        // One unmeasured big call first (allocations, socket buffers).
        big_call(c, |_, _, _| false);
        (0..repeat)
            .map(|_| big_call(c, |_, _, _| false).as_secs_f64() * 1e3)
            .collect::<Vec<f64>>()
    });
    let mut sorted = times.clone();
    sorted.sort_by(|x, y| x.total_cmp(y));
    let med = sorted[sorted.len() / 2];
    let all: Vec<String> = times.iter().map(|t| format!("{t:.1}")).collect();
    println!("3. one 16 MiB call on the bulk lane, 64 B reply ({repeat} calls after 1 warm-up; median; all ms: {})", all.join(", "));
    println!(
        "   time    {:>7.1} ms   skynet {SKYNET_BIG_MS:.0} ms   xxnet/skynet {:.2} (lower is better); {:.0} MB/s",
        med,
        med / SKYNET_BIG_MS,
        BIG as f64 / (med / 1e3) / 1e6
    );
}

/// Part 4: big calls one after the other (at least `min_bigs`, at most
/// `max_bigs`, within PHASE_CAP) until `want` small calls completed beside them.
fn big_with_small(min_bigs: usize, max_bigs: usize, want: usize) {
    let (lat, first, per_big, bigs) = with_pair(|c| {
        c.big = big_payload();
        big_call(c, |_, _, _| false);
        let mut lat = Vec::new();
        // The round trip of the first small call of each big call (made right after it).
        let mut first = Vec::new();
        let mut per_big = Vec::new();
        let mut bigs = Vec::new();
        let mut seq = 0u64;
        let start = Instant::now();
        while bigs.len() < max_bigs
            && (bigs.len() < min_bigs || lat.len() < want)
            && start.elapsed() < PHASE_CAP
        {
            // At most one small call in flight: (session, seq, start).
            let mut small: Option<(u64, u64, Instant)> = None;
            let before = lat.len();
            let took = big_call(c, |c, res, big_done| {
                for r in res {
                    let (s, q, t) = small.take().expect("a small result without a small call");
                    assert_eq!(r.session, s, "a result for another call");
                    assert_eq!((r.code, r.len), (XXNET_OK, SMALL));
                    assert_eq!(u64::from_le_bytes(r.head), q, "echo payload");
                    let us = t.elapsed().as_secs_f64() * 1e6;
                    if lat.len() == before {
                        first.push(us);
                    }
                    lat.push(us);
                }
                if small.is_none() && !big_done {
                    let t = Instant::now();
                    seq += 1;
                    small = Some((c.small_ok(seq), seq, t));
                }
                small.is_some()
            });
            per_big.push(lat.len() - before);
            bigs.push(took.as_secs_f64() * 1e3);
        }
        (Lat::new(lat), Lat::new(first), per_big, bigs)
    });
    let n = lat.0.len();
    let p99 = lat.pct(0.99);
    let mut sorted = per_big.clone();
    sorted.sort_unstable();
    println!(
        "4. 64 B calls on the default lane, one at a time, while a 16 MiB call is in flight on the bulk lane ({} big calls in a row)",
        bigs.len()
    );
    println!(
        "   {n} small calls completed (per big call: min {}, median {}, max {}); p50 {}, p99 {}, max {}; target p99 < {TARGET_P99_MS} ms: {}",
        sorted[0],
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        ms(lat.pct(0.50)),
        ms(p99),
        ms(lat.max()),
        if p99 / 1000.0 < TARGET_P99_MS { "met" } else { "MISSED" }
    );
    println!(
        "   first small call of each big call (made right after it): p50 {}, max {}",
        ms(first.pct(0.50)),
        ms(first.max())
    );
    let mut sorted = bigs.clone();
    sorted.sort_by(|x, y| x.total_cmp(y));
    println!(
        "   16 MiB call beside them: median {:.1} ms (skynet {SKYNET_BIG_MS:.0} ms alone, xxnet/skynet {:.2})",
        sorted[sorted.len() / 2],
        sorted[sorted.len() / 2] / SKYNET_BIG_MS
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let quick = std::env::var("XXNET_BENCH_QUICK").is_ok_and(|v| v == "1");
    let div = if quick { 10 } else { 1 };
    let t0 = Instant::now();
    println!(
        "xxnet remote-call benchmark (nodes A → B on 127.0.0.1 through the C ABI, one thread per node){}; {} CPUs",
        if quick { ", quick mode" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("skynet figures: its cluster on this kind of machine, from issue 5");
    // `XXNET_BENCH_ONLY=1,4` runs only those parts.
    let only = std::env::var("XXNET_BENCH_ONLY").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only.split(',').any(|p| p.trim() == part);
    if run("1") {
        sequential(20_000 / div, 3);
    }
    if run("2") {
        pipelined(200_000 / div, 3);
    }
    if run("3") {
        big_alone(if quick { 3 } else { 7 });
    }
    if run("4") {
        if quick {
            big_with_small(3, 20, 20);
        } else {
            big_with_small(10, 1000, 1000);
        }
    }
    println!("total {:.1?}", t0.elapsed());
}
