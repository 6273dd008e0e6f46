//! Sessions across connection cuts (docs/PROTOCOL.md §5, §6): node A sends
//! to node B through a TCP proxy (inside the test, tests/common `Proxy`)
//! that cuts all its connections at random intervals of 5–50 ms, and also
//! cuts each connection after a random number of bytes (exactly at that
//! byte, so mostly in the middle of a frame), all from PRNGs with fixed
//! seeds, while 20 000 messages (about 2.5 s of traffic) flow on 2 lanes,
//! every 100th need-ack. At the end nothing may be lost, duplicated or
//! reordered, every need-ack message is DELIVERED exactly once, no session
//! ends, and the stats show reconnects and resends.
//!
//! Topology. A sends to the proxy's address, so A's session is keyed by it
//! (plus B's announced address, learnt from HELLO_ACK); B listens behind
//! the proxy.
//! - one-way variants (`resets`, `fins`): A listens nowhere, so B cannot
//!   dial A: only A reconnects, always through the proxy.
//! - `two-way`: as above, and B streams back to A by conn id over the same
//!   session, so both directions are cut.
//! - `both-listen`: A listens too. After a cut B redials A *directly* while
//!   A redials through the proxy; the two race (§3 tie-break) and whichever
//!   connection is set up first carries the session. Once B's direct
//!   connection wins, the proxy no longer sees traffic (it cannot cut what
//!   does not pass through it), so this variant shows the race, not a cut count.

mod common;

use common::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xxnet::*;

const LANES: u32 = 2;
const TOTAL: u32 = 20_000;
/// Messages per ms of wall clock: the stream lasts about 2.5 s.
const RATE_PER_MS: u64 = 8;
const NEED_ACK_EVERY: u32 = 100;
const LIMIT: Duration = Duration::from_secs(30);

fn session_config() -> xxnet::ffi::types::xxnet_config {
    let mut cfg = default_config();
    cfg.reconnect_min_ms = 5;
    cfg.reconnect_max_ms = 50;
    cfg.reconnect_give_up_ms = 60_000;
    cfg.connect_timeout_ms = 1_000;
    cfg
}

/// Per-lane order, duplicate and integrity check of a received stream whose
/// msg_ids number each lane from 0 (payloads from `tagged_payload`).
#[derive(Default, Debug)]
struct StreamCheck {
    next: [u32; 4],
    count: u64,
    dups: u64,
    out_of_order: u64,
    corrupt: u64,
    first_problem: Option<String>,
}

impl StreamCheck {
    fn on_msg(&mut self, e: &Ev) {
        self.count += 1;
        let lane = e.lane as usize;
        let want = self.next[lane];
        if e.msg_id == want {
            self.next[lane] += 1;
        } else if e.msg_id < want {
            self.dups += 1;
            self.note(format!(
                "lane {lane}: msg_id {} again (next {want})",
                e.msg_id
            ));
        } else {
            self.out_of_order += 1;
            self.note(format!(
                "lane {lane}: msg_id {} while {want} was next",
                e.msg_id
            ));
            self.next[lane] = e.msg_id + 1;
        }
        if !tagged_payload_ok(e.lane, e.msg_id, &e.payload) {
            self.corrupt += 1;
            self.note(format!(
                "lane {lane}: payload of msg_id {} ({} bytes) corrupt",
                e.msg_id,
                e.payload.len()
            ));
        }
    }

    fn note(&mut self, s: String) {
        if self.first_problem.is_none() {
            self.first_problem = Some(s);
        }
    }

    fn clean(&self) -> bool {
        self.dups == 0 && self.out_of_order == 0 && self.corrupt == 0
    }
}

/// The size of message `i` of a stream: mostly small, some of a few KiB,
/// some multi-part (40 KiB travels as two parts of the 32 KiB fragment size).
fn size_of(rng: &mut Rng, i: u32) -> usize {
    if i % 997 == 500 {
        40 << 10
    } else if i % 101 == 7 {
        rng.range(1000, 6000) as usize
    } else {
        rng.range(8, 200) as usize
    }
}

#[derive(Clone, Copy)]
enum Target {
    Addr(u16),
    Conn(u64),
}

/// One stream of `TOTAL` messages over `LANES` lanes, paced by the clock;
/// msg_id numbers each lane from 0; every `NEED_ACK_EVERY`-th is need-ack.
struct Sender {
    rng: Rng,
    start: Instant,
    i: u32,
    per_lane: [u32; 4],
    need_ack: Vec<u64>,
}

impl Sender {
    fn new(seed: u64) -> Sender {
        Sender {
            rng: Rng(seed),
            start: Instant::now(),
            i: 0,
            per_lane: [0; 4],
            need_ack: Vec::new(),
        }
    }

    fn done(&self) -> bool {
        self.i >= TOTAL
    }

    /// Sends the messages due by now.
    fn send_due(&mut self, node: &Node, to: Target) {
        let due = (self.start.elapsed().as_millis() as u64 + 1) * RATE_PER_MS;
        while !self.done() && (self.i as u64) < due {
            let lane = self.i % LANES;
            let idx = self.per_lane[lane as usize];
            let len = size_of(&mut self.rng, self.i);
            let data = tagged_payload(lane, idx, len);
            if self.i % NEED_ACK_EVERY == NEED_ACK_EVERY - 1 {
                let r = match to {
                    Target::Addr(port) => {
                        node.send_need_ack("127.0.0.1", port, lane, idx, &data, 25_000)
                    }
                    Target::Conn(c) => node.send_conn_need_ack(c, lane, idx, &data, 25_000),
                };
                match r {
                    Ok(id) => self.need_ack.push(id),
                    Err(code) => panic!("need-ack send #{}: {code} {}", self.i, strerror(code)),
                }
            } else {
                let rc = match to {
                    Target::Addr(port) => node.send("127.0.0.1", port, lane, idx, &data),
                    Target::Conn(c) => node.send_conn(c, lane, idx, &data),
                };
                assert_eq!(rc, XXNET_OK, "send #{}: {}", self.i, strerror(rc));
            }
            self.per_lane[lane as usize] += 1;
            self.i += 1;
        }
    }
}

/// Checks that every need-ack id got exactly one DELIVERED and nothing else.
fn check_need_ack(who: &str, log: &[Ev], ids: &[u64]) {
    let mut fates: HashMap<u64, Vec<u32>> = ids.iter().map(|&id| (id, Vec::new())).collect();
    for e in log {
        if e.kind == XXNET_EVENT_DELIVERED || e.kind == XXNET_EVENT_EXPIRED {
            fates
                .get_mut(&e.id)
                .unwrap_or_else(|| panic!("{who}: {} for an id never issued", ev_str(e)))
                .push(e.kind);
        }
    }
    let bad: Vec<_> = fates
        .iter()
        .filter(|(_, f)| f.as_slice() != [XXNET_EVENT_DELIVERED])
        .take(5)
        .collect();
    assert!(
        bad.is_empty(),
        "{who}: need-ack ids without exactly one DELIVERED (first 5, id → kinds): {bad:?}\n{}",
        dump_events(log, 40)
    );
}

fn resolved(log: &[Ev]) -> usize {
    log.iter()
        .filter(|e| e.kind == XXNET_EVENT_DELIVERED || e.kind == XXNET_EVENT_EXPIRED)
        .count()
}

fn count_kind(log: &[Ev], kind: u32) -> usize {
    log.iter().filter(|e| e.kind == kind).count()
}

fn ended_sessions(log: &[Ev]) -> Vec<String> {
    log.iter()
        .filter(|e| {
            matches!(
                e.kind,
                XXNET_EVENT_DISCONNECTED | XXNET_EVENT_SEND_FAILED | XXNET_EVENT_ERROR
            )
        })
        .take(6)
        .map(ev_str)
        .collect()
}

struct Variant {
    name: &'static str,
    seed: u64,
    /// Share of timed cuts that reset (the rest are FINs).
    rst_percent: u64,
    /// Byte-exact cuts: (lo, hi, rst_percent), or none.
    byte_cuts: Option<(u64, u64, u64)>,
    a_listens: bool,
    b_streams_back: bool,
}

fn run(v: Variant) {
    let name = v.name;
    let start = Instant::now();
    let deadline = start + LIMIT;
    let cfg = session_config();
    let mut a = Node::with_config(&cfg);
    let mut b = Node::with_config(&cfg);
    let pb = b.listen("127.0.0.1");
    if v.a_listens {
        a.listen("127.0.0.1");
    }
    let mut proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], pb)));
    let pp = proxy.port();
    if let Some((lo, hi, rst)) = v.byte_cuts {
        proxy.cut_at_random_bytes(v.seed ^ 0xC07, lo, hi, rst);
    }
    proxy.start_cutting(v.seed, 5, 50, v.rst_percent);
    let two_way = v.b_streams_back;

    // Either side seeing its session end settles the outcome: both stop
    // shortly after (so a failing run does not wait for LIMIT).
    let ended = Arc::new(AtomicBool::new(false));
    let grace = Duration::from_millis(300);
    let settled = move |ended: &AtomicBool, log: &[Ev], since: &mut Option<Instant>| {
        if !ended_sessions(log).is_empty() {
            ended.store(true, Ordering::SeqCst);
        }
        if ended.load(Ordering::SeqCst) && since.is_none() {
            *since = Some(Instant::now());
        }
        since.is_some_and(|t| t.elapsed() > grace)
    };

    // B: receives; in the two-way variant it streams back by conn id, from
    // its first message on.
    let seed = v.seed;
    let b_ended = ended.clone();
    let b_thread = std::thread::spawn(move || {
        let mut since = None;
        let mut check = StreamCheck::default();
        let mut sender = Sender::new(seed ^ 0xB);
        let mut conn = None;
        let mut other = Vec::new();
        while Instant::now() < deadline {
            if let (true, Some(c), false) = (two_way, conn, sender.done()) {
                sender.send_due(&b, Target::Conn(c));
            }
            b.poll(1);
            for e in b.log.drain(..) {
                if e.is_msg() {
                    if conn.is_none() {
                        conn = Some(e.conn);
                        sender.start = Instant::now();
                    }
                    check.on_msg(&e);
                } else {
                    other.push(e);
                }
            }
            let b_done = !two_way || (sender.done() && resolved(&other) >= sender.need_ack.len());
            if (check.count >= TOTAL as u64 && b_done) || settled(&b_ended, &other, &mut since) {
                break;
            }
        }
        b.log = other;
        (b, check, sender)
    });

    // A: streams to the proxy and collects its events.
    let mut sender = Sender::new(v.seed);
    let mut check = StreamCheck::default();
    let mut other = Vec::new();
    let mut sent_at = None;
    let mut cuts_stopped_at = None;
    let mut since = None;
    while Instant::now() < deadline {
        if !sender.done() {
            sender.send_due(&a, Target::Addr(pp));
            if sender.done() {
                sent_at = Some(start.elapsed());
            }
        }
        a.poll(1);
        for e in a.log.drain(..) {
            if e.is_msg() {
                check.on_msg(&e);
            } else {
                other.push(e);
            }
        }
        let a_done = sender.done()
            && resolved(&other) >= sender.need_ack.len()
            && (!two_way || check.count >= TOTAL as u64);
        if (a_done || settled(&ended, &other, &mut since)) && b_thread.is_finished() {
            break;
        }
        // Keep cutting until the streams are through, at most 10 s after the
        // last send; then let the tail finish undisturbed (bounded either way).
        if cuts_stopped_at.is_none()
            && sent_at.is_some_and(|t| start.elapsed() > t + Duration::from_secs(10))
        {
            proxy.stop_cutting();
            cuts_stopped_at = Some(start.elapsed());
        }
    }
    proxy.stop_cutting();
    let (b, b_check, b_sender) = b_thread.join().expect("B thread");
    a.log = other;
    let sa = a.stats_until(Duration::from_secs(2), |s| {
        s.msgs_acked >= TOTAL as u64 && s.queued_msgs == 0
    });
    let sb = b.stats();
    let (accepted, rounds, cut, up, down) = proxy.counts();
    eprintln!(
        "{name}: {:.2?} (stream sent after {sent_at:.2?}{}); proxy: {accepted} connections accepted, \
         {rounds} timed cut rounds, {cut} connections cut, {up} B to B, {down} B back",
        start.elapsed(),
        cuts_stopped_at.map_or(String::new(), |t| format!(", cuts stopped at {t:.2?}"))
    );
    eprintln!(
        "{name}: A: reconnects {} msgs_resent {} msgs_acked {} connect_failures {} duplicates_dropped {}; \
         B: reconnects {} msgs_resent {} msgs_acked {} duplicates_dropped {} msgs_in {}",
        sa.reconnects,
        sa.msgs_resent,
        sa.msgs_acked,
        sa.connect_failures,
        sa.duplicates_dropped,
        sb.reconnects,
        sb.msgs_resent,
        sb.msgs_acked,
        sb.duplicates_dropped,
        sb.msgs_in
    );
    eprintln!(
        "{name}: A saw {} LINK_DOWN, {} LINK_UP, {} CONNECT_FAILED; B saw {} LINK_DOWN, {} LINK_UP, {} CONNECT_FAILED",
        count_kind(&a.log, XXNET_EVENT_LINK_DOWN),
        count_kind(&a.log, XXNET_EVENT_LINK_UP),
        count_kind(&a.log, XXNET_EVENT_CONNECT_FAILED),
        count_kind(&b.log, XXNET_EVENT_LINK_DOWN),
        count_kind(&b.log, XXNET_EVENT_LINK_UP),
        count_kind(&b.log, XXNET_EVENT_CONNECT_FAILED),
    );

    // No session ended: no DISCONNECTED, no SEND_FAILED on either side.
    for (who, log) in [("B", &b.log), ("A", &a.log)] {
        let ended = ended_sessions(log);
        assert!(
            ended.is_empty(),
            "{name}: {who}'s session must survive every cut, but it saw:\n  {}\nA events:\n{}B events:\n{}",
            ended.join("\n  "),
            dump_events(&a.log, 30),
            dump_events(&b.log, 30)
        );
    }
    // A→B: everything, once, in order, intact.
    assert!(
        b_check.clean(),
        "{name}: A→B stream at B: {b_check:?}\nB events:\n{}",
        dump_events(&b.log, 30)
    );
    assert_eq!(
        b_check.count,
        TOTAL as u64,
        "{name}: B received {} of {TOTAL} (next msg_id per lane: {:?})\nA events:\n{}B events:\n{}",
        b_check.count,
        b_check.next,
        dump_events(&a.log, 30),
        dump_events(&b.log, 30)
    );
    check_need_ack(&format!("{name}: A"), &a.log, &sender.need_ack);
    assert_eq!(sa.msgs_acked, TOTAL as u64, "{name}: A's msgs_acked");
    assert_eq!(sa.queued_msgs, 0, "{name}: A holds nothing at the end");
    if two_way {
        assert!(check.clean(), "{name}: B→A stream at A: {check:?}");
        assert_eq!(
            check.count, TOTAL as u64,
            "{name}: A received {} of {TOTAL}",
            check.count
        );
        check_need_ack(&format!("{name}: B"), &b.log, &b_sender.need_ack);
    }
    // The cuts really hit the stream.
    assert!(rounds > 10, "{name}: too few cut rounds ({rounds})");
    if !v.a_listens {
        assert!(cut > 10, "{name}: too few connections cut ({cut})");
        assert!(sa.reconnects > 0, "{name}: A's stats show no reconnect");
        assert!(
            sa.msgs_resent + sb.msgs_resent > 0,
            "{name}: no message had to be resent"
        );
    } else {
        assert!(cut > 0, "{name}: no connection was cut");
        assert!(
            sa.reconnects + sb.reconnects > 0,
            "{name}: no reconnect at all"
        );
    }
}

#[test]
fn stream_survives_random_resets() {
    run(Variant {
        name: "resets",
        seed: 0x5EED_0001,
        rst_percent: 100,
        byte_cuts: Some((2_000, 100_000, 100)),
        a_listens: false,
        b_streams_back: false,
    });
}

#[test]
fn stream_survives_random_orderly_closes_mid_frame() {
    // Orderly closes (FIN) at arbitrary byte positions: the receiver sees EOF
    // in the middle of a frame. That is a broken connection (a proxy or NAT
    // dropping it, a middlebox restarting), and §6 promises exactly-once
    // delivery "whatever happens to the TCP connections under it".
    run(Variant {
        name: "fins",
        seed: 0x5EED_0002,
        rst_percent: 0,
        byte_cuts: Some((2_000, 100_000, 0)),
        a_listens: false,
        b_streams_back: false,
    });
}

/// Two-way traffic with orderly cuts (FIN, mid-frame). With reset cuts
/// (SO_LINGER 0) and both directions streaming, this in-test proxy was seen
/// to splice two TCP streams: a plain-socket probe through the same `Proxy`
/// (no xxnet code at all) received another connection's bytes mid-stream in
/// about 1 of 3 eight-second runs. Until that harness defect is found, reset
/// cuts are exercised by the one-way variants above and below.
#[test]
fn two_way_streams_survive_random_cuts() {
    run(Variant {
        name: "two-way",
        seed: 0x5EED_0003,
        rst_percent: 0,
        byte_cuts: Some((2_000, 100_000, 0)),
        a_listens: false,
        b_streams_back: true,
    });
}

#[test]
fn both_listening_sides_redial_and_race_without_loss() {
    run(Variant {
        name: "both-listen",
        seed: 0x5EED_0004,
        rst_percent: 100,
        byte_cuts: Some((2_000, 100_000, 100)),
        a_listens: true,
        b_streams_back: false,
    });
}
