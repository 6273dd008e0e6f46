//! Heartbeats (docs/PROTOCOL.md §5 "Heartbeats"): a frozen peer process
//! (SIGSTOP) is declared down within about idle_timeout_ms (LINK_DOWN with
//! XXNET_E_IDLE_TIMEOUT, the session RECONNECTING), and when it thaws
//! (SIGCONT) the session comes back (LINK_UP) and what was queued meanwhile
//! is delivered exactly once. An idle but healthy pair stays connected:
//! PINGs keep it alive.
//!
//! The frozen peer is a child process (`ChildPeer` in tests/common); its
//! Drop guard always resumes, kills and reaps it, also when an assertion fails.

mod common;

use common::*;
use std::time::{Duration, Instant};
use xxnet::*;

#[test]
#[ignore = "the peer process of the tests in this file (they start it)"]
fn child_peer() {
    child_peer_main();
}

const IDLE_MS: u32 = 600;

fn send_lane0(a: &Node, port: u16, next: &mut u32, n: u32) {
    for _ in 0..n {
        a.send_ok("127.0.0.1", port, 0, *next, &tagged_payload(0, *next, 300));
        *next += 1;
    }
}

#[test]
fn frozen_peer_is_declared_down_then_recovers_when_it_thaws() {
    let mut child = ChildPeer::spawn("sink", "");
    let port = child.port;
    let mut cfg = default_config();
    cfg.idle_timeout_ms = IDLE_MS;
    cfg.connect_timeout_ms = 500;
    cfg.reconnect_min_ms = 20;
    cfg.reconnect_max_ms = 200;
    cfg.reconnect_give_up_ms = 30_000;
    let mut a = Node::with_config(&cfg);
    let mut next = 0u32;

    // A healthy stream first.
    send_lane0(&a, port, &mut next, 200);
    assert!(
        a.poll_until(WAIT, |log| log
            .iter()
            .any(|e| e.kind == XXNET_EVENT_CONNECTED)),
        "connected:\n{}",
        dump_events(&a.log, 20)
    );
    let conn = a.first_conn().unwrap();
    let r = child.report_until(WAIT, |r| r.msgs >= 200);
    assert_eq!(r.as_ref().map(|r| r.msgs), Some(200), "{r:?}");
    // Heartbeats keep the quiet connection up for a while (3 × the PING interval).
    a.poll_for(Duration::from_millis(IDLE_MS as u64));
    assert!(
        a.log.iter().all(|e| e.kind != XXNET_EVENT_LINK_DOWN),
        "no LINK_DOWN while the peer is alive:\n{}",
        dump_events(&a.log, 20)
    );

    // Freeze it, right after a burst (some messages in flight at the freeze).
    send_lane0(&a, port, &mut next, 50);
    let frozen_at = Instant::now();
    child.freeze();
    let down = a.poll_until(Duration::from_millis(IDLE_MS as u64 * 5), |log| {
        log.iter().any(|e| e.kind == XXNET_EVENT_LINK_DOWN)
    });
    assert!(
        down,
        "LINK_DOWN after the peer froze:\n{}",
        dump_events(&a.log, 20)
    );
    let ld = a.of_kind(XXNET_EVENT_LINK_DOWN)[0].clone();
    let took = ld.at.duration_since(frozen_at);
    eprintln!(
        "frozen peer declared down {took:.2?} after SIGSTOP (idle_timeout_ms = {IDLE_MS}): {}",
        ev_str(&ld)
    );
    assert_eq!(ld.code, XXNET_E_IDLE_TIMEOUT, "{}", ev_str(&ld));
    assert_eq!(ld.conn, conn);
    assert!(
        took < Duration::from_millis(2 * IDLE_MS as u64),
        "declared down {took:?} after the freeze (idle_timeout_ms = {IDLE_MS})"
    );
    assert!(
        took >= Duration::from_millis(IDLE_MS as u64 / 2),
        "declared down too early: {took:?}"
    );
    let info = a
        .info_until(conn, Duration::from_secs(1), |i| {
            i.state == XXNET_PEER_RECONNECTING
        })
        .expect("conn_info while frozen");
    assert_eq!(
        state_name(info.state),
        "RECONNECTING",
        "conn_info while the peer is frozen"
    );

    // Messages queued while it is frozen.
    send_lane0(&a, port, &mut next, 300);
    a.poll_for(Duration::from_millis(1200)); // a few reconnect attempts time out meanwhile
    let info = a.conn_info(conn).expect("conn_info while frozen");
    eprintln!(
        "while frozen: state {} attempts {} queued {} unacked {} oldest_unacked {} ms",
        state_name(info.state),
        info.attempts,
        info.queued_msgs,
        info.unacked_msgs,
        info.oldest_unacked_ms
    );
    assert_eq!(info.state, XXNET_PEER_RECONNECTING);
    assert!(
        info.queued_msgs + info.unacked_msgs >= 300,
        "the messages sent meanwhile are held: {} queued, {} unacked",
        info.queued_msgs,
        info.unacked_msgs
    );
    let failed_attempts = a.of_kind(XXNET_EVENT_CONNECT_FAILED).len();
    assert!(failed_attempts > 0, "A kept trying to reconnect");
    assert!(
        a.log.iter().all(|e| e.kind != XXNET_EVENT_DISCONNECTED),
        "the session is kept"
    );

    // Thaw: the session comes back and everything is delivered once.
    let thawed_at = Instant::now();
    child.thaw();
    let up = a.poll_until(Duration::from_secs(10), |log| {
        log.iter().any(|e| e.kind == XXNET_EVENT_LINK_UP)
    });
    assert!(up, "LINK_UP after SIGCONT:\n{}", dump_events(&a.log, 40));
    let lu = a.of_kind(XXNET_EVENT_LINK_UP)[0].clone();
    eprintln!(
        "LINK_UP {:.2?} after SIGCONT ({} failed attempts meanwhile); resent {}",
        lu.at.duration_since(thawed_at),
        failed_attempts,
        lu.count
    );
    assert_eq!(lu.conn, conn, "same session: {}", ev_str(&lu));
    let s = a.stats_until(WAIT, |s| s.msgs_acked >= next as u64);
    assert_eq!(s.msgs_acked, next as u64, "every message acknowledged");
    let r = child.report_until(WAIT, |r| r.msgs >= next as u64);
    eprintln!(
        "child got {r:?}; A: reconnects {} resent {}",
        s.reconnects, s.msgs_resent
    );
    let r = r.expect("child report");
    assert_eq!(
        (r.msgs, r.dups, r.gaps, r.lanes[0]),
        (next as u64, 0, 0, next as u64),
        "the child got every message once, in order"
    );
    assert_eq!(r.connected, 1, "one session at the child");
    assert_eq!(r.disconnected, 0, "the child's session never ended");
    assert!(s.reconnects >= 1);
    let info = a.conn_info(conn).expect("conn_info after recovery");
    assert_eq!(info.state, XXNET_PEER_CONNECTED);
    assert!(
        a.log
            .iter()
            .all(|e| !matches!(e.kind, XXNET_EVENT_DISCONNECTED | XXNET_EVENT_SEND_FAILED)),
        "nothing failed:\n{}",
        dump_events(&a.log, 40)
    );
}

#[test]
fn idle_healthy_pair_stays_connected() {
    let mut cfg = default_config();
    cfg.idle_timeout_ms = 300;
    let mut a = Node::with_config(&cfg);
    let mut b = Node::with_config(&cfg);
    let pb = b.listen("127.0.0.1");
    a.send_ok("127.0.0.1", pb, 0, 1, b"hello");
    assert!(
        b.poll_until(WAIT, |log| count_msgs(log) == 1),
        "first message"
    );
    assert!(a.poll_until(WAIT, |log| log
        .iter()
        .any(|e| e.kind == XXNET_EVENT_CONNECTED)));
    let conn = a.first_conn().unwrap();
    // 2 s without traffic, about 7 idle timeouts: only PINGs flow.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        a.poll(10);
        b.poll(10);
    }
    for (who, n) in [("A", &a), ("B", &b)] {
        assert!(
            n.log.iter().all(|e| !matches!(
                e.kind,
                XXNET_EVENT_LINK_DOWN | XXNET_EVENT_DISCONNECTED | XXNET_EVENT_LINK_UP
            )),
            "{who} kept its connection:\n{}",
            dump_events(&n.log, 20)
        );
        let s = n.stats();
        assert_eq!((s.reconnects, s.open_connections), (0, 1), "{who}");
    }
    assert_eq!(a.conn_info(conn).map(|i| i.state), Ok(XXNET_PEER_CONNECTED));
    // The connection is still the same and works at once.
    let t = Instant::now();
    a.send_ok("127.0.0.1", pb, 0, 2, b"still there");
    assert!(b.poll_until(WAIT, |log| count_msgs(log) == 2));
    eprintln!(
        "idle pair: connected after 2 s with idle_timeout_ms = 300; next message took {:.2?}",
        t.elapsed()
    );
    assert_eq!(b.stats().accepted_connections, 1, "no new connection");
}
