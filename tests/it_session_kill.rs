//! A peer process killed with SIGKILL mid-stream (docs/PROTOCOL.md §5
//! "Reconnecting", §6 "Every message's fate is reported"): the survivor
//! loses the link, fails to reconnect, gives up after reconnect_give_up_ms
//! and reports every message it held: SEND_FAILED (id 1: sent, not
//! acknowledged; id 0: never sent) and EXPIRED for need-ack messages, then
//! DISCONNECTED. Reported + acknowledged (stats msgs_acked) == sent.
//!
//! The peer is a child process: this test binary re-run with
//! `--exact child_peer --ignored` (see `ChildPeer` in tests/common).

mod common;

use common::*;
use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};
use xxnet::*;

#[test]
#[ignore = "the peer process of the tests in this file (they start it)"]
fn child_peer() {
    child_peer_main();
}

const SIZE: usize = 1000;
const GIVE_UP_MS: u32 = 500;

/// A stream on 2 lanes (msg_id numbers each lane from 0); every 50th is need-ack.
struct Stream {
    port: u16,
    sent: u64,
    per_lane: [u32; 2],
    need_ack: Vec<u64>,
}

impl Stream {
    fn send(&mut self, a: &Node, n: u32) {
        for _ in 0..n {
            let lane = (self.sent % 2) as u32;
            let idx = self.per_lane[lane as usize];
            let data = tagged_payload(lane, idx, SIZE);
            if self.sent % 50 == 49 {
                let id = a
                    .send_need_ack("127.0.0.1", self.port, lane, idx, &data, 0)
                    .unwrap_or_else(|c| panic!("send_need_ack: {}", strerror(c)));
                self.need_ack.push(id);
            } else {
                a.send_ok("127.0.0.1", self.port, lane, idx, &data);
            }
            self.per_lane[lane as usize] += 1;
            self.sent += 1;
        }
    }
}

/// Streams to a child peer in `mode`, kills it after `kill_after` messages,
/// sends `after_kill` more, then checks that every message is accounted for.
fn kill_mid_stream(
    mode: &str,
    child_cfg: &str,
    kill_after: u32,
    after_kill: u32,
) -> (u64, u64, u64) {
    let mut child = ChildPeer::spawn(mode, child_cfg);
    let port = child.port;
    let mut cfg = default_config();
    cfg.reconnect_min_ms = 20;
    cfg.reconnect_max_ms = 100;
    cfg.reconnect_give_up_ms = GIVE_UP_MS;
    cfg.ack_timeout_ms = 30_000; // need-ack messages resolve by the session's end, not by deadline
    let mut a = Node::with_config(&cfg);

    let mut st = Stream {
        port,
        sent: 0,
        per_lane: [0; 2],
        need_ack: Vec::new(),
    };

    // Stream, paced (100 messages per 2 ms), until `kill_after`.
    let t0 = Instant::now();
    while st.sent < kill_after as u64 {
        st.send(&a, 100);
        a.poll(2);
    }
    assert!(
        a.poll_until(WAIT, |log| log
            .iter()
            .any(|e| e.kind == XXNET_EVENT_CONNECTED)),
        "A connects to the child:\n{}",
        dump_events(&a.log, 20)
    );
    let conn = a.first_conn().unwrap();
    // Let some acknowledgements come back before the kill.
    a.stats_until(Duration::from_secs(5), |s| s.msgs_acked > 0);
    // A burst right before the kill, so messages are in flight when it lands.
    st.send(&a, 200);
    let before = a.conn_info(conn).expect("conn_info before the kill");
    let status = child.kill(); // SIGKILL by pid, then waitpid
    let killed_at = Instant::now();
    eprintln!(
        "{mode}: killed the child (pid {}) after {} messages, {:.2?} into the stream; \
         A then held queued {} / unacked {} messages; child status {status:?}",
        child.pid,
        st.sent,
        t0.elapsed(),
        before.queued_msgs,
        before.unacked_msgs
    );
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "the child died of SIGKILL and was reaped"
    );
    // More messages while the session is down: never sent.
    st.send(&a, after_kill);
    let (sent, need_ack) = (st.sent, st.need_ack);

    let ended = a.poll_until(Duration::from_secs(10), |log| {
        log.iter().any(|e| e.kind == XXNET_EVENT_DISCONNECTED)
    });
    a.poll_for(Duration::from_millis(50));
    assert!(
        ended,
        "{mode}: DISCONNECTED after giving up:\n{}",
        dump_events(&a.log, 40)
    );
    let log = &a.log;
    let pos = |kind: u32| log.iter().position(|e| e.kind == kind);
    let down = pos(XXNET_EVENT_LINK_DOWN).expect("LINK_DOWN before giving up");
    let disc_at = pos(XXNET_EVENT_DISCONNECTED).unwrap();
    let disc = &log[disc_at];
    let gave_up_after = disc.at.duration_since(log[down].at);
    eprintln!(
        "{mode}: LINK_DOWN {} ({:.2?} after the kill); DISCONNECTED {} {:.2?} after LINK_DOWN",
        strerror(log[down].code),
        log[down].at.duration_since(killed_at),
        strerror(disc.code),
        gave_up_after
    );
    assert!(down < disc_at, "LINK_DOWN comes first");
    assert_eq!(disc.conn, conn, "{}", ev_str(disc));
    assert!(
        [XXNET_E_CONN_RESET, XXNET_E_PEER_CLOSED].contains(&log[down].code),
        "LINK_DOWN code: {}",
        ev_str(&log[down])
    );
    assert!(
        gave_up_after >= Duration::from_millis(GIVE_UP_MS as u64 * 8 / 10)
            && gave_up_after < Duration::from_millis(GIVE_UP_MS as u64 * 6),
        "gave up {gave_up_after:?} after LINK_DOWN with reconnect_give_up_ms = {GIVE_UP_MS}"
    );
    assert_eq!(
        log.iter()
            .filter(|e| e.kind == XXNET_EVENT_DISCONNECTED)
            .count(),
        1,
        "one DISCONNECTED:\n{}",
        dump_events(log, 40)
    );
    // The reconnect attempts were refused (nothing listens any more).
    let attempts = log
        .iter()
        .filter(|e| e.kind == XXNET_EVENT_CONNECT_FAILED)
        .count();
    assert!(attempts > 0, "A tried to reconnect");

    // Every report belongs to this session and comes before DISCONNECTED.
    let sf: Vec<&Ev> = log
        .iter()
        .filter(|e| e.kind == XXNET_EVENT_SEND_FAILED)
        .collect();
    for e in &sf {
        assert_eq!(e.conn, conn, "{}", ev_str(e));
        assert_eq!(
            e.code,
            disc.code,
            "same reason as DISCONNECTED: {}",
            ev_str(e)
        );
        assert!(e.id <= 1, "{}", ev_str(e));
        assert_eq!(e.total, e.count * SIZE as u64, "bytes of {}", ev_str(e));
    }
    let last_report = log
        .iter()
        .rposition(|e| matches!(e.kind, XXNET_EVENT_SEND_FAILED | XXNET_EVENT_EXPIRED));
    assert!(
        last_report.is_some_and(|p| p < disc_at),
        "reports come before DISCONNECTED:\n{}",
        dump_events(log, 40)
    );
    let unsent: u64 = sf.iter().filter(|e| e.id == 0).map(|e| e.count).sum();
    let maybe: u64 = sf.iter().filter(|e| e.id == 1).map(|e| e.count).sum();
    assert!(
        sf.iter().filter(|e| e.id == 0).count() <= 1
            && sf.iter().filter(|e| e.id == 1).count() <= 1,
        "one SEND_FAILED per kind:\n{}",
        dump_events(log, 40)
    );

    // Need-ack: exactly one DELIVERED or EXPIRED each.
    let mut fate: HashMap<u64, Vec<&Ev>> = need_ack.iter().map(|&id| (id, Vec::new())).collect();
    for e in log
        .iter()
        .filter(|e| e.kind == XXNET_EVENT_DELIVERED || e.kind == XXNET_EVENT_EXPIRED)
    {
        fate.get_mut(&e.id)
            .unwrap_or_else(|| panic!("{} for an id never issued", ev_str(e)))
            .push(e);
    }
    let mut delivered = 0u64;
    let mut expired = 0u64;
    for (id, evs) in &fate {
        assert_eq!(
            evs.len(),
            1,
            "need-ack {id}: {:?}",
            evs.iter().map(|e| ev_str(e)).collect::<Vec<_>>()
        );
        if evs[0].kind == XXNET_EVENT_DELIVERED {
            delivered += 1;
        } else {
            expired += 1;
            assert_eq!(evs[0].conn, conn, "{}", ev_str(evs[0]));
            assert_eq!(evs[0].code, disc.code, "{}", ev_str(evs[0]));
        }
    }

    let s = a.stats_until(Duration::from_secs(1), |s| s.queued_msgs == 0);
    eprintln!(
        "{mode}: sent {sent} ({} need-ack); acked {} (DELIVERED {delivered}); SEND_FAILED never sent {unsent}, \
         sent-unacked {maybe}; EXPIRED {expired}; {attempts} reconnect attempts; stats send_failed_msgs {}",
        need_ack.len(),
        s.msgs_acked,
        s.send_failed_msgs
    );
    assert_eq!(
        unsent + maybe + expired + s.msgs_acked,
        sent,
        "{mode}: reported ({unsent} + {maybe} SEND_FAILED, {expired} EXPIRED) + acknowledged ({}) == sent",
        s.msgs_acked
    );
    assert!(
        unsent >= after_kill as u64 - after_kill as u64 / 50,
        "the messages sent after the kill are reported as never sent (id 0): {unsent}"
    );
    assert_eq!(s.queued_msgs, 0, "nothing held any more");
    assert_eq!(s.queued_bytes, 0, "nothing held any more");
    assert_eq!(s.open_connections, 0);
    assert_eq!(
        a.conn_info(conn).map(|_| ()),
        Err(XXNET_E_UNKNOWN_CONN),
        "the session is gone after DISCONNECTED"
    );
    (unsent, maybe, expired)
}

#[test]
fn killed_peer_that_stopped_reading_every_message_is_reported() {
    // The child never polls (its reactor stops reading past a 64 KiB receive
    // queue), so many messages are in flight, unacknowledged, at the kill.
    let (unsent, maybe, expired) = kill_mid_stream("nopoll", "recv_queue_limit=65536", 3000, 300);
    assert!(
        maybe > 0,
        "some messages were sent but never acknowledged (id 1)"
    );
    assert!(unsent > 0 && expired > 0);
}

#[test]
fn killed_peer_that_was_consuming_every_message_is_reported() {
    // The child consumes everything: most messages are acknowledged, the rest
    // (in flight at the kill, or sent after it) are reported.
    let (unsent, _maybe, expired) = kill_mid_stream("sink", "", 3000, 300);
    assert!(unsent > 0 && expired > 0);
}
