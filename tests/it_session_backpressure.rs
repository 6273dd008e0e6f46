//! Send back-pressure (docs/PROTOCOL.md §6 "Back-pressure"): per
//! destination, queued plus unacknowledged bytes stay under send_high_water;
//! past it a send returns XXNET_E_WOULD_BLOCK and queues nothing; once the
//! backlog falls under send_low_water the host gets XXNET_EVENT_WRITABLE for
//! that destination (peer_ip/peer_port for sends by address, conn for sends
//! by conn). Everything accepted arrives exactly once, in order.
//!
//! The slow receiver is a context whose host does not poll: its reactor keeps
//! reading and acknowledging until recv_queue_limit (small here) is reached,
//! then stops reading, so the sender's backlog grows until the high-water mark.

mod common;

use common::*;
use std::time::{Duration, Instant};
use xxnet::*;

const HIGH: u64 = 1 << 20;
const LOW: u64 = 256 << 10;
const MSG: usize = 4096;
/// Messages sent in all (about 10 MiB, ten times the high-water mark).
const TOTAL: u32 = 2500;
/// msg_ids of refused sends: they must never arrive.
const REFUSED_BASE: u32 = 0xF000_0000;

fn sender_config() -> xxnet::ffi::types::xxnet_config {
    let mut cfg = default_config();
    cfg.send_high_water = HIGH;
    cfg.send_low_water = LOW;
    cfg
}

fn slow_receiver_config() -> xxnet::ffi::types::xxnet_config {
    let mut cfg = default_config();
    cfg.recv_queue_limit = 32 << 10; // the minimum: the fragment size
    cfg
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dest {
    Addr(u16),
    Conn(u64),
}

fn send_to(s: &Node, dest: Dest, msg_id: u32) -> i32 {
    let data = tagged_payload(0, msg_id, MSG);
    match dest {
        Dest::Addr(port) => s.send("127.0.0.1", port, 0, msg_id, &data),
        Dest::Conn(c) => s.send_conn(c, 0, msg_id, &data),
    }
}

fn backlog(s: &Node, conn: u64) -> (u64, u64) {
    let i = s.conn_info(conn).expect("conn_info");
    (
        i.queued_msgs + i.unacked_msgs,
        i.queued_bytes + i.unacked_bytes,
    )
}

/// Checks the memory bound (stats queued_bytes: everything held, queued and
/// unacknowledged) and records the largest reading.
fn check_bound(s: &Node, max_seen: &mut u64) {
    let q = s.stats().queued_bytes;
    *max_seen = (*max_seen).max(q);
    assert!(
        q <= HIGH + MSG as u64,
        "the sender holds {q} bytes, above send_high_water ({HIGH}) + one message"
    );
}

fn writable_count(log: &[Ev]) -> usize {
    log.iter()
        .filter(|e| e.kind == XXNET_EVENT_WRITABLE)
        .count()
}

fn run(by_conn: bool) {
    let name = if by_conn { "by conn" } else { "by address" };
    let mut r = Node::with_config(&slow_receiver_config());
    let pr = r.listen("127.0.0.1");
    let mut s = Node::with_config(&sender_config());
    // The session: message 0 by address (the receiver does not poll yet).
    s.send_ok("127.0.0.1", pr, 0, 0, &tagged_payload(0, 0, MSG));
    assert!(
        s.poll_until(WAIT, |log| log
            .iter()
            .any(|e| e.kind == XXNET_EVENT_CONNECTED)),
        "connected"
    );
    let conn = s.first_conn().unwrap();
    let dest = if by_conn {
        Dest::Conn(conn)
    } else {
        Dest::Addr(pr)
    };
    let mut next = 1u32;
    let mut max_held = 0u64;

    // 1. Send until WOULD_BLOCK.
    let mut first_block = None;
    for _ in 0..100_000 {
        match send_to(&s, dest, next) {
            XXNET_OK => next += 1,
            XXNET_E_WOULD_BLOCK => {
                first_block = Some(next);
                break;
            }
            rc => panic!("{name}: send {next}: {rc} {}", strerror(rc)),
        }
        if next % 16 == 0 {
            check_bound(&s, &mut max_held);
        }
    }
    let first_block = first_block.expect("WOULD_BLOCK eventually");
    // 2. The receiver's reactor keeps acknowledging what it reads until its
    // receive queue is full: keep offering the next message until sends stay
    // refused for 300 ms (the backlog has stalled at the high-water mark).
    let mut refused = 0u32;
    let mut refused_since = Instant::now();
    let stall_deadline = Instant::now() + Duration::from_secs(5);
    while refused_since.elapsed() < Duration::from_millis(300) {
        assert!(
            Instant::now() < stall_deadline,
            "{name}: the backlog never stalls"
        );
        match send_to(&s, dest, next) {
            XXNET_E_WOULD_BLOCK => refused += 1,
            XXNET_OK => {
                next += 1;
                refused_since = Instant::now();
            }
            rc => panic!("{name}: send {next}: {}", strerror(rc)),
        }
        std::thread::sleep(Duration::from_millis(10));
        check_bound(&s, &mut max_held);
    }
    std::thread::sleep(Duration::from_millis(50));
    let (held_msgs, held_bytes) = backlog(&s, conn);
    let accepted = next as u64 * MSG as u64;
    let acked = s.stats().msgs_acked;
    eprintln!(
        "{name}: first WOULD_BLOCK after {first_block} messages; stalled after {next} messages ({} KiB): \
         backlog {held_msgs} messages / {held_bytes} B (high water {HIGH}); receiver acked {acked}; \
         {refused} sends refused meanwhile",
        accepted / 1024
    );
    assert!(
        held_bytes <= HIGH + MSG as u64 && held_bytes + 2 * MSG as u64 > HIGH,
        "{name}: the backlog at WOULD_BLOCK ({held_bytes} B) is about send_high_water ({HIGH} B)"
    );
    // The first refusal came when the backlog (at most the messages accepted
    // so far) plus that message would have passed the high-water mark.
    assert!(
        (first_block as u64 + 1) * MSG as u64 > HIGH,
        "{name}: WOULD_BLOCK after only {first_block} messages of {MSG} B (high water {HIGH} B)"
    );
    // A refused send queues nothing.
    let before = (backlog(&s, conn), s.stats().queued_msgs);
    for i in 0..5 {
        assert_eq!(
            send_to(&s, dest, REFUSED_BASE + i),
            XXNET_E_WOULD_BLOCK,
            "{name}: the stalled backlog refuses sends"
        );
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        (backlog(&s, conn), s.stats().queued_msgs),
        before,
        "{name}: refused sends changed the backlog"
    );
    // WRITABLE events so far belong to earlier episodes (the receiver's
    // reactor acknowledged what it read before it paused); none may come
    // while the backlog stays stalled.
    s.poll_for(Duration::from_millis(20));
    let baseline = writable_count(&s.log);
    s.poll_for(Duration::from_millis(100));
    assert_eq!(
        writable_count(&s.log),
        baseline,
        "{name}: no WRITABLE while the backlog is stalled above send_low_water"
    );

    // 3. The receiver drains (in its own thread): WRITABLE for the destination.
    let deadline = Instant::now() + Duration::from_secs(30);
    let receiver = std::thread::spawn(move || {
        let mut got: Vec<u32> = Vec::new();
        let mut bad = Vec::new();
        while Instant::now() < deadline && got.len() < TOTAL as usize {
            r.poll(5);
            for e in r.log.drain(..) {
                if e.is_msg() {
                    if !tagged_payload_ok(0, e.msg_id, &e.payload) || e.lane != 0 {
                        bad.push(e.msg_id);
                    }
                    got.push(e.msg_id);
                }
            }
        }
        (got, bad, r)
    });
    let t = Instant::now();
    assert!(
        s.poll_until(Duration::from_secs(10), |log| writable_count(log)
            > baseline),
        "{name}: WRITABLE after the receiver drains:\n{}",
        dump_events(&s.log, 20)
    );
    let w = s.of_kind(XXNET_EVENT_WRITABLE)[baseline].clone();
    let (_, at_writable) = backlog(&s, conn);
    eprintln!(
        "{name}: WRITABLE {:.2?} after the receiver started polling: {}",
        t.elapsed(),
        ev_str(&w)
    );
    match dest {
        Dest::Addr(port) => {
            assert_eq!(
                (w.conn, w.peer_ip.as_str(), w.peer_port),
                (0, "127.0.0.1", port),
                "{name}: WRITABLE names the address: {}",
                ev_str(&w)
            );
        }
        Dest::Conn(c) => assert_eq!(w.conn, c, "{name}: WRITABLE names the conn: {}", ev_str(&w)),
    }
    assert!(
        at_writable <= LOW,
        "{name}: backlog {at_writable} B at WRITABLE, above send_low_water ({LOW} B)"
    );

    // 4. The rest, waiting for WRITABLE whenever a send is refused: from
    // here on every refusal starts a new episode that owes one WRITABLE.
    let mut episodes = baseline + 1;
    while next < TOTAL {
        match send_to(&s, dest, next) {
            XXNET_OK => next += 1,
            XXNET_E_WOULD_BLOCK => {
                episodes += 1;
                assert!(
                    s.poll_until(Duration::from_secs(10), |log| writable_count(log)
                        >= episodes),
                    "{name}: WRITABLE #{episodes}:\n{}",
                    dump_events(&s.log, 20)
                );
            }
            rc => panic!("{name}: send {next}: {}", strerror(rc)),
        }
        if next % 64 == 0 {
            check_bound(&s, &mut max_held);
            s.poll(0);
        }
    }
    let (got, bad, _r) = receiver.join().unwrap();
    let sa = s.stats_until(WAIT, |st| st.msgs_acked >= TOTAL as u64);
    s.poll_for(Duration::from_millis(50));
    eprintln!(
        "{name}: {TOTAL} messages, {} WOULD_BLOCK episodes after the stall ({baseline} WRITABLE before it), \
         {} WRITABLE events in all; sender held at most {max_held} B",
        episodes - baseline,
        writable_count(&s.log)
    );
    assert!(
        bad.is_empty(),
        "{name}: corrupt messages: {:?}",
        &bad[..bad.len().min(10)]
    );
    let refused_arrived: Vec<&u32> = got.iter().filter(|&&id| id >= REFUSED_BASE).collect();
    assert!(
        refused_arrived.is_empty(),
        "{name}: refused sends arrived: {refused_arrived:?}"
    );
    assert_eq!(got.len(), TOTAL as usize, "{name}: all messages arrived");
    assert!(
        got.iter().enumerate().all(|(i, &id)| id == i as u32),
        "{name}: in order, once each"
    );
    assert_eq!(sa.msgs_acked, TOTAL as u64);
    assert_eq!(
        writable_count(&s.log),
        episodes,
        "{name}: one WRITABLE per WOULD_BLOCK episode\n{}",
        dump_events(&s.log, 40)
    );
    assert!(
        s.log
            .iter()
            .all(|e| !matches!(e.kind, XXNET_EVENT_SEND_FAILED | XXNET_EVENT_LINK_DOWN)),
        "{name}: back-pressure never breaks the session:\n{}",
        dump_events(&s.log, 40)
    );
}

#[test]
fn would_block_past_high_water_and_writable_by_address() {
    run(false);
}

#[test]
fn would_block_past_high_water_and_writable_by_conn() {
    run(true);
}

/// A receiver whose host is slow to poll has paused reading on purpose
/// (recv_queue_limit), but its peer is alive and keeps sending (data, then
/// PINGs). That is not a silent peer: neither side may declare the
/// connection idle, tear it down and resend everything.
#[test]
fn paused_receiver_is_not_declared_idle() {
    const IDLE: u32 = 400;
    const N: u32 = 1000;
    let mut rcfg = slow_receiver_config();
    rcfg.idle_timeout_ms = IDLE;
    let mut scfg = default_config();
    scfg.idle_timeout_ms = IDLE;
    let mut r = Node::with_config(&rcfg);
    let pr = r.listen("127.0.0.1");
    let mut s = Node::with_config(&scfg);
    for i in 0..N {
        s.send_ok("127.0.0.1", pr, 0, i, &tagged_payload(0, i, MSG));
    }
    // The receiver's host does not poll for about 4 idle timeouts.
    s.poll_for(Duration::from_millis(4 * IDLE as u64));
    let paused = r.stats();
    assert!(
        paused.msgs_in < N as u64,
        "the receiver paused reading ({} of {N} messages read)",
        paused.msgs_in
    );
    let t = Instant::now();
    while r.count_msgs() < N as usize && t.elapsed() < Duration::from_secs(15) {
        r.poll(5);
        s.poll(0);
    }
    s.poll_for(Duration::from_millis(50));
    let (ss, rs) = (s.stats(), r.stats());
    eprintln!(
        "paused receiver: read {} of {N} while paused; then got {} messages; sender reconnects {} resent {}, \
         receiver reconnects {} duplicates dropped {}",
        paused.msgs_in,
        r.count_msgs(),
        ss.reconnects,
        ss.msgs_resent,
        rs.reconnects,
        rs.duplicates_dropped
    );
    let ids: Vec<u32> = r.messages().map(|e| e.msg_id).collect();
    assert!(
        ids.iter().enumerate().all(|(i, &id)| id == i as u32) && ids.len() == N as usize,
        "every message once, in order ({} received)",
        ids.len()
    );
    for (who, n) in [("receiver", &r), ("sender", &s)] {
        let downs: Vec<String> = n
            .log
            .iter()
            .filter(|e| matches!(e.kind, XXNET_EVENT_LINK_DOWN | XXNET_EVENT_DISCONNECTED))
            .map(ev_str)
            .collect();
        assert!(
            downs.is_empty(),
            "the {who} dropped a live connection while the receiver's host was slow to poll:\n  {}\nreceiver events:\n{}sender events:\n{}",
            downs.join("\n  "),
            dump_events(&r.log, 20),
            dump_events(&s.log, 20)
        );
    }
}
