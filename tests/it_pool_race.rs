//! No duplicate 1:1 connections: two nodes that send to each other at the
//! same instant end up with exactly one connection, and every message arrives
//! exactly once and in order (docs/PROTOCOL.md §3, the tie-break).

mod common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use xxnet::*;

const N: u32 = 200;
const ROUNDS: usize = 50;

/// What one side saw in one race.
struct Side {
    name: &'static str,
    log: Vec<Ev>,
    open_connections: u64,
    accepted: u64,
    send_failed_msgs: u64,
    queued_msgs: u64,
    got_all: bool,
}

fn lane_of(i: u32, mixed: bool) -> u32 {
    if mixed {
        i % 2
    } else {
        0
    }
}

fn payload(from: &str, i: u32) -> Vec<u8> {
    let mut p = i.to_le_bytes().to_vec();
    p.extend_from_slice(from.as_bytes());
    p.extend(vec![i as u8; (i % 50) as usize]);
    p
}

/// One side of the race: wait for the barrier, send N messages to the peer,
/// poll until N arrived, wait for the other side, settle, read the stats.
fn run_side(
    mut node: Node,
    name: &'static str,
    peer_port: u16,
    mixed: bool,
    barrier: Arc<Barrier>,
    done: Arc<AtomicUsize>,
) -> (Side, Node) {
    barrier.wait();
    for i in 0..N {
        let rc = node.send(
            "127.0.0.1",
            peer_port,
            lane_of(i, mixed),
            i,
            &payload(name, i),
        );
        assert_eq!(rc, XXNET_OK, "{name}: send {i}: {}", strerror(rc));
    }
    let got_all = node.poll_until(WAIT, |log| count_msgs(log) >= N as usize);
    done.fetch_add(1, Ordering::AcqRel);
    // Keep draining while the other side finishes.
    let deadline = Instant::now() + WAIT;
    while done.load(Ordering::Acquire) < 2 && Instant::now() < deadline {
        node.poll(5);
    }
    // Let the losing connection's close play out.
    node.poll_for(Duration::from_millis(50));
    let s = node.stats();
    let side = Side {
        name,
        log: std::mem::take(&mut node.log),
        open_connections: s.open_connections,
        accepted: s.accepted_connections,
        send_failed_msgs: s.send_failed_msgs,
        queued_msgs: s.queued_msgs,
        got_all,
    };
    // The node is freed by the caller once both sides are done, so neither
    // side sees the other close while it is still settling.
    (side, node)
}

/// Checks one side's observations; `peer_name` is who sent to it.
fn check_side(round: usize, side: &Side, peer_name: &str, mixed: bool) -> u64 {
    let ctx = format!("round {round} side {}:\n{}", side.name, dump_log(&side.log));
    assert!(side.got_all, "not all {N} messages arrived; {ctx}");

    // Connection bookkeeping: every DISCONNECTED refers to a CONNECTED conn;
    // every MESSAGE arrives on a connection that is CONNECTED at that moment.
    let mut live: HashMap<u64, u64> = HashMap::new(); // conn -> id (1 initiated, 0 accepted)
    let mut ever: HashSet<u64> = HashSet::new();
    let (mut connected, mut disconnected) = (0i64, 0i64);
    // Lane 0 carries 0,1,2.. (or 0,2,4.. when mixed); lane 1 carries 1,3,5..
    let mut next_per_lane = [0u32, 1, 0, 0];
    let mut seen = vec![false; N as usize];
    for e in &side.log {
        match e.kind {
            XXNET_EVENT_CONNECTED => {
                connected += 1;
                assert!(e.conn != 0, "CONNECTED with conn 0; {ctx}");
                assert!(
                    ever.insert(e.conn),
                    "second CONNECTED for conn {}; {ctx}",
                    e.conn
                );
                assert!(e.id <= 1, "CONNECTED id {}; {ctx}", e.id);
                live.insert(e.conn, e.id);
            }
            XXNET_EVENT_DISCONNECTED => {
                disconnected += 1;
                assert!(
                    live.remove(&e.conn).is_some(),
                    "DISCONNECTED (code {} {}) for conn {} that never had CONNECTED; {ctx}",
                    e.code,
                    strerror(e.code),
                    e.conn
                );
            }
            XXNET_EVENT_MESSAGE => {
                assert!(
                    live.contains_key(&e.conn),
                    "MESSAGE on conn {} that is not CONNECTED; {ctx}",
                    e.conn
                );
                assert!(e.payload.len() >= 4, "short payload; {ctx}");
                let i = u32::from_le_bytes(e.payload[0..4].try_into().unwrap());
                assert!(i < N, "bad message number {i}; {ctx}");
                assert_eq!(
                    e.payload,
                    payload(peer_name, i),
                    "payload of message {i}; {ctx}"
                );
                assert_eq!(e.msg_id, i, "msg_id of message {i}; {ctx}");
                let lane = lane_of(i, mixed);
                assert_eq!(e.lane, lane, "lane of message {i}; {ctx}");
                assert!(!seen[i as usize], "message {i} arrived twice; {ctx}");
                seen[i as usize] = true;
                // In order per lane: message i is the next one sent on its lane.
                let expect = next_per_lane[lane as usize];
                assert_eq!(i, expect, "message {i} out of order on lane {lane}; {ctx}");
                next_per_lane[lane as usize] = if mixed { i + 2 } else { i + 1 };
            }
            XXNET_EVENT_SEND_FAILED => {
                panic!("SEND_FAILED during the race (messages lost): {e}; {ctx}")
            }
            XXNET_EVENT_ERROR => panic!("ERROR event: {e}; {ctx}"),
            _ => {}
        }
    }
    assert!(seen.iter().all(|&s| s), "some messages missing; {ctx}");
    assert_eq!(
        connected - disconnected,
        1,
        "CONNECTED ({connected}) - DISCONNECTED ({disconnected}) must be 1; {ctx}"
    );
    assert_eq!(
        side.open_connections, 1,
        "open_connections after settling; {ctx}"
    );
    assert_eq!(side.send_failed_msgs, 0, "send_failed_msgs; {ctx}");
    assert_eq!(side.queued_msgs, 0, "queued_msgs; {ctx}");
    assert_eq!(live.len(), 1, "one live connection; {ctx}");
    *live.values().next().unwrap()
}

fn race(mixed: bool) {
    race_on(mixed, "127.0.0.1")
}

/// The race; A listens on `a_ip` (B always sends to 127.0.0.1).
fn race_on(mixed: bool, a_ip: &str) {
    let start = Instant::now();
    let mut double_tcp = 0usize;
    let mut losers_seen = 0usize;
    let mut connect_failed = 0usize;
    for round in 0..ROUNDS {
        let a = Node::new();
        let b = Node::new();
        let pa = a.listen(a_ip);
        let pb = b.listen("127.0.0.1");
        let barrier = Arc::new(Barrier::new(2));
        let done = Arc::new(AtomicUsize::new(0));
        let ta = {
            let (barrier, done) = (barrier.clone(), done.clone());
            std::thread::spawn(move || run_side(a, "A", pb, mixed, barrier, done))
        };
        let tb = {
            let (barrier, done) = (barrier.clone(), done.clone());
            std::thread::spawn(move || run_side(b, "B", pa, mixed, barrier, done))
        };
        let (sa, na) = ta.join().expect("side A panicked");
        let (sb, nb) = tb.join().expect("side B panicked");
        drop((na, nb));
        let ida = check_side(round, &sa, "B", mixed);
        let idb = check_side(round, &sb, "A", mixed);
        assert_eq!(
            ida + idb,
            1,
            "round {round}: the surviving connection must be initiated by one side and accepted by the other (A id {ida}, B id {idb})"
        );
        if sa.accepted + sb.accepted > 1 {
            double_tcp += 1;
        }
        for s in [&sa, &sb] {
            losers_seen += s
                .log
                .iter()
                .filter(|e| e.code == XXNET_E_DUPLICATE_CONN)
                .count();
            connect_failed += s
                .log
                .iter()
                .filter(|e| e.kind == XXNET_EVENT_CONNECT_FAILED)
                .count();
        }
    }
    eprintln!(
        "pool race (lanes {}, A on {a_ip}): {ROUNDS} rounds in {:.2?}; two simultaneous TCP connections in {double_tcp}/{ROUNDS} rounds; events with XXNET_E_DUPLICATE_CONN: {losers_seen}; CONNECT_FAILED events: {connect_failed}",
        if mixed { "0+1" } else { "0" },
        start.elapsed()
    );
}

#[test]
fn simultaneous_sends_keep_one_connection() {
    race(false);
}

#[test]
fn simultaneous_sends_keep_one_connection_mixed_lanes() {
    race(true);
}

#[test]
fn simultaneous_sends_keep_one_connection_wildcard_listener() {
    race_on(false, "0.0.0.0");
}

/// Four nodes all sending to each other at once: one connection per pair.
#[test]
fn mesh_of_four_keeps_one_connection_per_pair() {
    const NODES: usize = 4;
    const M: u32 = 50;
    let start = Instant::now();
    for round in 0..10 {
        let nodes: Vec<Node> = (0..NODES).map(|_| Node::new()).collect();
        let ports: Vec<u16> = nodes.iter().map(|n| n.listen("127.0.0.1")).collect();
        let barrier = Arc::new(Barrier::new(NODES));
        let done = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = nodes
            .into_iter()
            .enumerate()
            .map(|(me, mut node)| {
                let (barrier, done, ports) = (barrier.clone(), done.clone(), ports.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for i in 0..M {
                        for (j, &p) in ports.iter().enumerate() {
                            if j != me {
                                let mut body = (me as u32).to_le_bytes().to_vec();
                                body.extend_from_slice(&i.to_le_bytes());
                                node.send_ok("127.0.0.1", p, 0, i, &body);
                            }
                        }
                    }
                    let want = (NODES - 1) * M as usize;
                    let got_all = node.poll_until(WAIT, |log| count_msgs(log) >= want);
                    done.fetch_add(1, Ordering::AcqRel);
                    let deadline = Instant::now() + WAIT;
                    while done.load(Ordering::Acquire) < NODES && Instant::now() < deadline {
                        node.poll(5);
                    }
                    node.poll_for(Duration::from_millis(50));
                    let s = node.stats();
                    (got_all, s, node)
                })
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("node thread"))
            .collect();
        for (me, (got_all, s, node)) in results.iter().enumerate() {
            let ctx = format!("round {round} node {me}:\n{}", dump_log(&node.log));
            assert!(got_all, "not all messages arrived; {ctx}");
            // Per sender: exactly once, in order, on one connection.
            for from in (0..NODES).filter(|&j| j != me) {
                let msgs: Vec<&Ev> = node
                    .messages()
                    .filter(|e| {
                        u32::from_le_bytes(e.payload[0..4].try_into().unwrap()) == from as u32
                    })
                    .collect();
                let ids: Vec<u32> = msgs.iter().map(|e| e.msg_id).collect();
                assert_eq!(ids, (0..M).collect::<Vec<_>>(), "from node {from}; {ctx}");
                assert!(
                    msgs.iter().all(|e| e.conn == msgs[0].conn),
                    "one connection from {from}; {ctx}"
                );
                assert_eq!(msgs[0].peer_port, ports[from], "peer_port of {from}; {ctx}");
            }
            let connected = node.of_kind(XXNET_EVENT_CONNECTED).len();
            let disconnected = node.of_kind(XXNET_EVENT_DISCONNECTED).len();
            assert_eq!(
                connected - disconnected,
                NODES - 1,
                "live connections; {ctx}"
            );
            assert_eq!(
                s.open_connections,
                (NODES - 1) as u64,
                "open_connections; {ctx}"
            );
            assert_eq!((s.send_failed_msgs, s.queued_msgs), (0, 0), "{ctx}");
        }
        drop(results);
    }
    eprintln!("mesh of {NODES}: 10 rounds in {:.2?}", start.elapsed());
}
