//! Need-ack messages over loopback (docs/PROTOCOL.md §6 "Need-ack"): every
//! id returned by xxnet_send_need_ack / xxnet_send_conn_need_ack is carried
//! by exactly one DELIVERED or EXPIRED event, never both. With a frozen peer
//! (SIGSTOP) and a short deadline, messages already sent expire with
//! XXNET_E_ACK_TIMEOUT (and may still arrive), messages never sent with
//! XXNET_E_EXPIRED_UNSENT (and never arrive).

mod common;

use common::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use xxnet::*;

#[test]
#[ignore = "the peer process of the tests in this file (they start it)"]
fn child_peer() {
    child_peer_main();
}

/// Every event about need-ack ids, by id.
fn fates(log: &[Ev]) -> HashMap<u64, Vec<&Ev>> {
    let mut m: HashMap<u64, Vec<&Ev>> = HashMap::new();
    for e in log
        .iter()
        .filter(|e| e.kind == XXNET_EVENT_DELIVERED || e.kind == XXNET_EVENT_EXPIRED)
    {
        m.entry(e.id).or_default().push(e);
    }
    m
}

fn resolved(log: &[Ev]) -> usize {
    log.iter()
        .filter(|e| e.kind == XXNET_EVENT_DELIVERED || e.kind == XXNET_EVENT_EXPIRED)
        .count()
}

#[test]
fn thousand_need_ack_messages_each_delivered_exactly_once() {
    let mut a = Node::new();
    let mut b = Node::new();
    let pb = b.listen("127.0.0.1");
    let mut ids = Vec::new();
    let mut per_lane = [0u32; 2];
    // 500 by address, then 500 by conn id: one session, one order per lane.
    for i in 0..1000u32 {
        let lane = i % 2;
        let idx = per_lane[lane as usize];
        let data = tagged_payload(lane, idx, 100 + (i as usize % 300));
        let id = if i < 500 {
            a.send_need_ack("127.0.0.1", pb, lane, idx, &data, 0)
        } else {
            if i == 500 {
                assert!(a.poll_until(WAIT, |log| log
                    .iter()
                    .any(|e| e.kind == XXNET_EVENT_CONNECTED)));
            }
            a.send_conn_need_ack(a.first_conn().unwrap(), lane, idx, &data, 0)
        }
        .unwrap_or_else(|c| panic!("need-ack send {i}: {}", strerror(c)));
        ids.push(id);
        per_lane[lane as usize] += 1;
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 1000, "ids are unique");
    assert!(!ids.contains(&0), "ids are never 0");

    assert!(
        a.poll_until(WAIT, |log| resolved(log) >= 1000),
        "{} of 1000 resolved:\n{}",
        resolved(&a.log),
        dump_events(&a.log, 20)
    );
    a.poll_for(Duration::from_millis(100)); // nothing more may come
    let conn = a.first_conn().unwrap();
    let f = fates(&a.log);
    assert_eq!(f.len(), 1000, "events only for issued ids");
    for id in &ids {
        let evs = &f[id];
        assert_eq!(
            evs.iter().map(|e| e.kind).collect::<Vec<_>>(),
            vec![XXNET_EVENT_DELIVERED],
            "id {id}: exactly one DELIVERED"
        );
        assert_eq!(evs[0].conn, conn, "{}", ev_str(evs[0]));
    }
    // DELIVERED means B's xxnet delivered it: B has them all, in order.
    assert!(b.poll_until(WAIT, |log| count_msgs(log) >= 1000));
    let mut next = [0u32; 2];
    for e in b.messages() {
        let lane = e.lane as usize;
        assert_eq!(e.msg_id, next[lane], "lane {lane} order");
        assert!(tagged_payload_ok(e.lane, e.msg_id, &e.payload));
        next[lane] += 1;
    }
    assert_eq!(next, [500, 500]);
    assert_eq!(a.stats().msgs_acked, 1000);
}

#[test]
fn frozen_peer_need_ack_expires_once_sent_or_unsent() {
    const N: u32 = 256;
    const SIZE: usize = 64 << 10; // 16 MiB in all: more than the socket buffers hold
    const DEADLINE_MS: u32 = 500;
    let mut child = ChildPeer::spawn("sink", "");
    let port = child.port;
    let mut a = Node::new(); // default idle timeout (10 s): the link stays up while frozen
    a.send_ok("127.0.0.1", port, 0, 0, &tagged_payload(0, 0, 100));
    assert!(a.poll_until(WAIT, |log| log
        .iter()
        .any(|e| e.kind == XXNET_EVENT_CONNECTED)));
    let conn = a.first_conn().unwrap();
    assert_eq!(
        child.report_until(WAIT, |r| r.msgs == 1).map(|r| r.msgs),
        Some(1)
    );
    // Its acknowledgement is back too (owed ACKs go out within 2 ms).
    let t = Instant::now();
    assert_eq!(
        a.stats_until(WAIT, |s| s.msgs_acked == 1).msgs_acked,
        1,
        "message 0 acknowledged before the freeze"
    );
    eprintln!(
        "message 0 acknowledged {:.2?} after the child reported it",
        t.elapsed()
    );

    child.freeze();
    let t = Instant::now();
    let mut ids = Vec::new();
    for i in 1..=N {
        let id = a
            .send_need_ack(
                "127.0.0.1",
                port,
                0,
                i,
                &tagged_payload(0, i, SIZE),
                DEADLINE_MS,
            )
            .unwrap_or_else(|c| panic!("send_need_ack {i}: {}", strerror(c)));
        ids.push(id);
    }
    assert!(
        a.poll_until(Duration::from_secs(10), |log| resolved(log) >= N as usize),
        "{} of {N} expired:\n{}",
        resolved(&a.log),
        dump_events(&a.log, 20)
    );
    let took = t.elapsed();
    let info = a.conn_info(conn).expect("conn_info while frozen");
    let f = fates(&a.log);
    let mut timed_out = Vec::new();
    let mut unsent = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let evs = &f[id];
        assert_eq!(
            evs.len(),
            1,
            "id {id}: {:?}",
            evs.iter().map(|e| ev_str(e)).collect::<Vec<_>>()
        );
        let e = evs[0];
        assert_eq!(e.kind, XXNET_EVENT_EXPIRED, "{}", ev_str(e));
        assert_eq!(e.conn, conn, "{}", ev_str(e));
        match e.code {
            XXNET_E_ACK_TIMEOUT => timed_out.push(i),
            XXNET_E_EXPIRED_UNSENT => unsent.push(i),
            _ => panic!("unexpected code: {}", ev_str(e)),
        }
    }
    let first = f.values().map(|v| v[0].at).min().unwrap();
    eprintln!(
        "frozen peer: {} ACK_TIMEOUT + {} EXPIRED_UNSENT of {N} x 64 KiB; first EXPIRED {:.2?} after the first send \
         (deadline {DEADLINE_MS} ms); A then held queued {} unacked {}",
        timed_out.len(),
        unsent.len(),
        first.duration_since(t),
        info.queued_msgs,
        info.unacked_msgs
    );
    assert!(took < Duration::from_secs(5), "expired in {took:?}");
    assert!(
        first.duration_since(t) >= Duration::from_millis(DEADLINE_MS as u64 * 9 / 10),
        "expired before the deadline"
    );
    assert!(
        !timed_out.is_empty(),
        "some were sent before the freeze filled the buffers"
    );
    assert!(!unsent.is_empty(), "some never left the queue");
    // Usually the sent ones are a prefix in send order; when the reactor is
    // slow, encoding goes on while earlier ones expire, and the two interleave.
    let prefix = timed_out == (0..timed_out.len()).collect::<Vec<_>>();
    eprintln!("ACK_TIMEOUT ids form a prefix of the sends: {prefix}");
    // The unsent ones were dropped; the sent ones are still held (one may be
    // partly sent, i.e. still queued) and may arrive later.
    assert_eq!(
        info.queued_msgs + info.unacked_msgs,
        timed_out.len() as u64,
        "A holds exactly the ACK_TIMEOUT messages"
    );
    assert!(
        info.queued_msgs <= 1,
        "at most one partly sent message queued"
    );

    // Thaw: the sent ones still arrive (that is what ACK_TIMEOUT allows),
    // the unsent ones never do, and no id gets a second event.
    child.thaw();
    let sent = 1 + timed_out.len() as u64;
    let r = child.report_until(WAIT, |r| r.msgs >= sent);
    a.stats_until(WAIT, |s| s.msgs_acked >= sent);
    std::thread::sleep(Duration::from_millis(200));
    let r2 = child.report(Duration::from_secs(2));
    a.poll_for(Duration::from_millis(100));
    eprintln!(
        "after thawing: child {r2:?}; A acked {}",
        a.stats().msgs_acked
    );
    let r = r2.or(r).expect("child report");
    // msg_id 0 (before the freeze) and i + 1 for the i-th need-ack send.
    let want: Vec<u64> = std::iter::once(0)
        .chain(timed_out.iter().map(|&i| i as u64 + 1))
        .collect();
    let want_sum = want.iter().sum::<u64>();
    let want_sq = want.iter().map(|x| x * x).sum::<u64>();
    assert_eq!(
        (r.msgs, r.dups, r.id_sum, r.id_sq),
        (sent, 0, want_sum, want_sq),
        "the child got exactly the ACK_TIMEOUT messages (and msg_id 0), once each, \
         and none of the EXPIRED_UNSENT ones: {r:?}"
    );
    assert_eq!(r.lanes[0], *want.last().unwrap() + 1, "in order");
    assert_eq!(a.stats().msgs_acked, sent);
    let f = fates(&a.log);
    for id in &ids {
        assert_eq!(
            f[id].len(),
            1,
            "id {id} got a second event after being acknowledged late: {:?}",
            f[id].iter().map(|e| ev_str(e)).collect::<Vec<_>>()
        );
    }
}

#[test]
fn need_ack_to_a_peer_that_never_answers_expires_unsent() {
    // Accepts at the TCP level (backlog) and never speaks: no session ever.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = mute.local_addr().unwrap().port();
    let mut cfg = default_config();
    cfg.connect_timeout_ms = 1_000;
    cfg.reconnect_give_up_ms = 0;
    let mut a = Node::with_config(&cfg);
    let ids: Vec<u64> = (0..20u32)
        .map(|i| {
            a.send_need_ack("127.0.0.1", port, i % 4, i, b"never", 200)
                .unwrap()
        })
        .collect();
    assert!(a.poll_until(WAIT, |log| resolved(log) >= 20));
    // Then the connect times out: nothing is left to report.
    assert!(a.poll_until(WAIT, |log| log
        .iter()
        .any(|e| e.kind == XXNET_EVENT_CONNECT_FAILED)));
    a.poll_for(Duration::from_millis(100));
    let f = fates(&a.log);
    for id in &ids {
        let evs = &f[id];
        assert_eq!(evs.len(), 1, "id {id}");
        assert_eq!(
            (evs[0].kind, evs[0].code, evs[0].conn),
            (XXNET_EVENT_EXPIRED, XXNET_E_EXPIRED_UNSENT, 0),
            "{}",
            ev_str(evs[0])
        );
    }
    assert!(
        a.log.iter().all(|e| e.kind != XXNET_EVENT_SEND_FAILED),
        "expired messages are not reported again:\n{}",
        dump_events(&a.log, 20)
    );
    let s = a.stats();
    assert_eq!((s.queued_msgs, s.msgs_acked), (0, 0));
    drop(mute);
}
