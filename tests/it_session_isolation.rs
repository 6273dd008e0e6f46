//! Failure isolation: a bad peer must not hurt a good one. Node A talks to a
//! good peer B (5000 small messages over about 2 s, each echoed back by B,
//! round-trip time measured at A) while it also talks to a bad peer, in
//! each of these modes in turn:
//! - `resets`: a listener A sends to that resets every connection (SO_LINGER
//!   0), and raw clients that connect to A, half of them after a HELLO, and
//!   reset, about one per ms;
//! - `vanishes`: a child process A streams to, SIGKILLed a third of the way in;
//! - `stops-reading`: a context that never polls (its reactor stops reading
//!   at a 32 KiB receive queue), A streams to it past its high-water mark;
//! - `frozen`: a child process A streams to, SIGSTOPped a third of the way in.
//!
//! All good messages must come back, in order, without B's session ever
//! going down. Latency p50/p99/max of the good peer is printed per mode
//! next to a baseline run without a bad peer; only a generous p99 bound is
//! asserted (the machine is small and shared).

mod common;

use common::*;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xxnet::*;

#[test]
#[ignore = "the peer process of the tests in this file (they start it)"]
fn child_peer() {
    child_peer_main();
}

const GOOD: u32 = 5000;
/// Good messages per second: the run lasts about 2 s.
const GOOD_PER_MS: f64 = 2.5;
const BAD_SIZE: usize = 4096;
const P99_BOUND: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Baseline,
    Resets,
    Vanishes,
    StopsReading,
    Frozen,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Baseline => "baseline",
            Mode::Resets => "resets",
            Mode::Vanishes => "vanishes",
            Mode::StopsReading => "stops-reading",
            Mode::Frozen => "frozen",
        }
    }
}

/// The bad peer's resources; dropping it stops threads and kills children.
#[derive(Default)]
struct Bad {
    port: u16,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
    child: Option<ChildPeer>,
    slow: Option<Node>,
}

impl Drop for Bad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A listener that resets every connection it accepts.
fn resetting_listener(stop: Arc<AtomicBool>) -> (u16, std::thread::JoinHandle<u64>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    let t = std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((s, _)) => {
                    set_linger_zero(std::os::fd::AsRawFd::as_raw_fd(&s));
                    drop(s);
                    n += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        n
    });
    (port, t)
}

/// Raw clients that connect to `port` and reset, about one per ms; every
/// other one first sends a preface and HELLO (a new client instance each).
fn resetting_clients(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut n = 0u64;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while !stop.load(Ordering::SeqCst) {
            if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                if n % 2 == 1 {
                    let mut hello = PREFACE.to_vec();
                    hello.extend(hello_frame(random_instance() ^ n, 1, None));
                    let _ = std::io::Write::write_all(&mut s, &hello);
                    std::thread::sleep(Duration::from_micros(300));
                }
                set_linger_zero(std::os::fd::AsRawFd::as_raw_fd(&s));
                n += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        n
    })
}

struct Figures {
    p50: Duration,
    p99: Duration,
    max: Duration,
    max_gap: Duration,
    took: Duration,
    bad_note: String,
}

fn run_mode(mode: Mode) -> Figures {
    let name = mode.name();
    let mut cfg = default_config();
    cfg.reconnect_min_ms = 5;
    cfg.reconnect_max_ms = 50;
    cfg.reconnect_give_up_ms = 1_000;
    cfg.connect_timeout_ms = 500;
    cfg.idle_timeout_ms = 1_000;
    cfg.send_high_water = 1 << 20;
    cfg.send_low_water = 256 << 10;
    let mut a = Node::with_config(&cfg);
    let pa = a.listen("127.0.0.1");

    // The good peer echoes every message back on its conn.
    let mut b = Node::new();
    let pb = b.listen("127.0.0.1");
    let stop_b = Arc::new(AtomicBool::new(false));
    let sb = stop_b.clone();
    let echo = std::thread::spawn(move || {
        let mut echoed = 0u64;
        while !sb.load(Ordering::SeqCst) {
            b.poll(5);
            for e in std::mem::take(&mut b.log) {
                if e.is_msg() {
                    let rc = b.send_conn(e.conn, e.lane, e.msg_id, &e.payload);
                    assert_eq!(rc, XXNET_OK, "B echoes: {}", strerror(rc));
                    echoed += 1;
                } else {
                    assert!(
                        !matches!(
                            e.kind,
                            XXNET_EVENT_LINK_DOWN
                                | XXNET_EVENT_DISCONNECTED
                                | XXNET_EVENT_SEND_FAILED
                        ),
                        "B: {}",
                        ev_str(&e)
                    );
                }
            }
        }
        echoed
    });

    // The bad peer.
    let mut bad = Bad::default();
    match mode {
        Mode::Baseline => {}
        Mode::Resets => {
            let (port, t) = resetting_listener(bad.stop.clone());
            bad.port = port;
            bad.threads.push(t);
            bad.threads.push(resetting_clients(pa, bad.stop.clone()));
        }
        Mode::Vanishes | Mode::Frozen => {
            let c = ChildPeer::spawn("sink", "");
            bad.port = c.port;
            bad.child = Some(c);
        }
        Mode::StopsReading => {
            let mut scfg = default_config();
            scfg.recv_queue_limit = 32 << 10;
            let slow = Node::with_config(&scfg);
            bad.port = slow.listen("127.0.0.1");
            bad.slow = Some(slow);
        }
    }

    // Both streams from A's one thread: good messages carry their send time.
    let base = Instant::now();
    let deadline = base + Duration::from_secs(20);
    let mut sent = 0u32;
    let mut bad_sent = 0u64;
    let mut bad_refused = 0u64;
    let mut turned = false;
    let mut rtts = Vec::with_capacity(GOOD as usize);
    let mut arrivals: Vec<Instant> = Vec::with_capacity(GOOD as usize);
    let mut next_echo = 0u32;
    let mut good_conn = None;
    let mut good_troubles = Vec::new();
    let bad_payload = vec![0xBDu8; BAD_SIZE];
    let mut others: Vec<Ev> = Vec::new();
    while next_echo < GOOD && Instant::now() < deadline {
        let ms = base.elapsed().as_secs_f64() * 1000.0;
        let due = ((ms * GOOD_PER_MS) as u32 + 1).min(GOOD);
        while sent < due {
            let mut p = [0u8; 64];
            p[0..4].copy_from_slice(&sent.to_le_bytes());
            p[4..12].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_le_bytes());
            a.send_ok("127.0.0.1", pb, 0, sent, &p);
            sent += 1;
        }
        // The bad stream: one 4 KiB message per ms (catching up if this
        // thread was held up).
        while mode != Mode::Baseline && bad_sent < ms as u64 {
            match a.send("127.0.0.1", bad.port, 0, bad_sent as u32, &bad_payload) {
                XXNET_OK => {}
                XXNET_E_WOULD_BLOCK => bad_refused += 1,
                rc => panic!("{name}: send to the bad peer: {}", strerror(rc)),
            }
            bad_sent += 1;
        }
        // A third of the way in, the child peer goes bad (A keeps streaming to it).
        if next_echo >= GOOD / 3 && !turned {
            turned = true;
            if let Some(c) = bad.child.as_mut() {
                match mode {
                    Mode::Vanishes => {
                        c.kill();
                    }
                    Mode::Frozen => c.freeze(),
                    _ => {}
                }
            }
        }
        a.poll(1);
        for e in std::mem::take(&mut a.log) {
            if e.is_msg() && e.peer_port == pb {
                let seq = u32::from_le_bytes(e.payload[0..4].try_into().unwrap());
                let t = u64::from_le_bytes(e.payload[4..12].try_into().unwrap());
                assert_eq!(seq, next_echo, "{name}: echoes in order");
                good_conn.get_or_insert(e.conn);
                next_echo += 1;
                rtts.push(e.at.duration_since(base + Duration::from_nanos(t)));
                arrivals.push(e.at);
            } else if Some(e.conn) == good_conn
                && matches!(
                    e.kind,
                    XXNET_EVENT_LINK_DOWN | XXNET_EVENT_DISCONNECTED | XXNET_EVENT_SEND_FAILED
                )
            {
                good_troubles.push(ev_str(&e));
            } else if !e.is_msg() && others.len() < 200_000 {
                others.push(e); // the bad peer's events, for the figures
            }
        }
    }
    let took = base.elapsed();
    let stats = a.stats();
    let bad_events = |kind: u32| {
        others
            .iter()
            .filter(|e| e.kind == kind && Some(e.conn) != good_conn)
            .count()
    };
    let bad_note = match mode {
        Mode::Baseline => String::new(),
        _ => {
            let mut codes: Vec<i32> = others
                .iter()
                .filter(|e| e.kind == XXNET_EVENT_LINK_DOWN)
                .map(|e| e.code)
                .collect();
            codes.sort();
            codes.dedup();
            let codes: Vec<String> = codes.iter().map(|&c| strerror(c)).collect();
            format!(
                "bad peer: {bad_sent} sends ({bad_refused} WOULD_BLOCK); A: {} connect failures, {} LINK_DOWN {codes:?}, \
                 {} DISCONNECTED, {} accepted connections",
                stats.connect_failures,
                bad_events(XXNET_EVENT_LINK_DOWN),
                bad_events(XXNET_EVENT_DISCONNECTED),
                stats.accepted_connections
            )
        }
    };
    stop_b.store(true, Ordering::SeqCst);
    let echoed = echo.join().expect("B's echo thread");
    let threads: Vec<u64> = bad
        .threads
        .drain(..)
        .map(|t| {
            bad.stop.store(true, Ordering::SeqCst);
            t.join().unwrap()
        })
        .collect();
    drop(bad);

    assert!(
        good_troubles.is_empty(),
        "{name}: the good peer's session was hurt:\n  {}",
        good_troubles.join("\n  ")
    );
    assert_eq!(
        next_echo, GOOD,
        "{name}: {next_echo} of {GOOD} good messages came back in {took:.2?} (B echoed {echoed})"
    );
    // The bad peer really was bad.
    match mode {
        Mode::Baseline => {}
        Mode::Resets => assert!(
            threads.iter().all(|&n| n > 50) && stats.connect_failures > 5,
            "{name}: resets happened ({threads:?} by the listener / clients)"
        ),
        Mode::Vanishes => assert!(
            bad_events(XXNET_EVENT_LINK_DOWN) + bad_events(XXNET_EVENT_DISCONNECTED) > 0,
            "{name}: A noticed the vanished peer"
        ),
        Mode::StopsReading => assert!(bad_refused > 0, "{name}: the bad destination blocked"),
        Mode::Frozen => assert!(
            bad_events(XXNET_EVENT_LINK_DOWN) > 0,
            "{name}: A declared the frozen peer down"
        ),
    }
    let max_gap = arrivals
        .windows(2)
        .map(|w| w[1].duration_since(w[0]))
        .max()
        .unwrap_or_default();
    let (p50, p99, max) = latency_figures(&mut rtts);
    Figures {
        p50,
        p99,
        max,
        max_gap,
        took,
        bad_note,
    }
}

fn line(mode: Mode, f: &Figures) -> String {
    format!(
        "{:>13}: good RTT p50 {:>9.2?} p99 {:>9.2?} max {:>9.2?}; longest pause {:>9.2?}; {GOOD} in {:.2?}. {}",
        mode.name(),
        f.p50,
        f.p99,
        f.max,
        f.max_gap,
        f.took,
        f.bad_note
    )
}

#[test]
fn good_peer_keeps_flowing_whatever_a_bad_peer_does() {
    let mut report = Vec::new();
    let mut failures = Vec::new();
    let mut bound = P99_BOUND;
    for mode in [
        Mode::Baseline,
        Mode::Resets,
        Mode::Vanishes,
        Mode::StopsReading,
        Mode::Frozen,
    ] {
        let mut f = run_mode(mode);
        eprintln!("{}", line(mode, &f));
        if mode == Mode::Baseline {
            // On a loaded machine the baseline itself is slow: the bound is
            // P99_BOUND or 4 x the baseline's p99, whichever is larger.
            bound = bound.max(f.p99 * 4);
        } else if f.p99 >= bound {
            // One retry: a single scheduling hiccup on a shared 2-core
            // machine is not a bad peer hurting a good one.
            let again = run_mode(mode);
            eprintln!("{} (retry)", line(mode, &again));
            if again.p99 < f.p99 {
                f = again;
            }
        }
        if f.p99 >= bound {
            failures.push(format!("{}: p99 {:?} >= {bound:?}", mode.name(), f.p99));
        }
        report.push(line(mode, &f));
    }
    eprintln!(
        "isolation summary (p99 bound {bound:?}):\n{}",
        report.join("\n")
    );
    assert!(failures.is_empty(), "good-peer latency: {failures:?}");
}
