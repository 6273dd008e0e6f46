//! Lanes interleave: a small message on the default lane overtakes a 64 MiB
//! message on the bulk lane (docs/PROTOCOL.md §4); size limits are exact.

mod common;

use common::*;
use std::time::{Duration, Instant};
use xxnet::*;

const MIB: usize = 1 << 20;

#[test]
fn small_message_overtakes_bulk_transfer() {
    let mut cfg = default_config();
    cfg.max_message_size = 80 * MIB as u64;
    cfg.send_high_water = 128 * MIB as u64; // the backlog must hold 64 MiB + the small one
    cfg.send_low_water = 64 * MIB as u64;
    let a = Node::with_config(&cfg);
    let mut b = Node::with_config(&cfg);
    let pb = b.listen("127.0.0.1");

    // Establish the connection first so the race is about lanes, not connecting.
    a.send_ok("127.0.0.1", pb, XXNET_LANE_DEFAULT, 1, b"warm-up");
    assert!(
        b.poll_until(WAIT, |log| count_msgs(log) >= 1),
        "warm-up message did not arrive:\n{}",
        dump_log(&b.log)
    );
    b.log.clear();

    let big = pattern(64 * MIB, 7);
    let small = pattern(64, 99);
    let t0 = Instant::now();
    a.send_ok("127.0.0.1", pb, XXNET_LANE_BULK, 2, &big);
    a.send_ok("127.0.0.1", pb, XXNET_LANE_DEFAULT, 3, &small);
    let sent = t0.elapsed();

    let ok = b.poll_until(Duration::from_secs(30), |log| count_msgs(log) >= 2);
    assert!(ok, "both messages did not arrive:\n{}", dump_log(&b.log));
    let msgs: Vec<&Ev> = b.messages().collect();
    assert_eq!(msgs.len(), 2, "exactly two messages:\n{}", dump_log(&b.log));
    let small_at = msgs
        .iter()
        .position(|e| e.msg_id == 3)
        .expect("small message");
    let big_at = msgs
        .iter()
        .position(|e| e.msg_id == 2)
        .expect("big message");
    let (s, g) = (msgs[small_at], msgs[big_at]);
    eprintln!(
        "interleave: both sends took {sent:.2?}; 64 B (lane 0) arrived after {:.2?}, 64 MiB (lane 1) after {:.2?}; gap {:.2?}",
        s.at - t0,
        g.at - t0,
        g.at.saturating_duration_since(s.at)
    );
    assert!(
        small_at < big_at,
        "the 64 B lane-0 message must arrive before the 64 MiB lane-1 message completes (64 B at {:.2?}, 64 MiB at {:.2?})",
        s.at - t0,
        g.at - t0
    );
    assert_eq!(s.lane, XXNET_LANE_DEFAULT);
    assert_eq!(g.lane, XXNET_LANE_BULK);
    assert_eq!(s.payload, small, "64 B payload");
    assert_eq!(g.payload.len(), big.len(), "64 MiB payload length");
    if let Some(i) = g.payload.iter().zip(&big).position(|(x, y)| x != y) {
        panic!("64 MiB payload differs first at byte {i}");
    }
    assert_eq!(s.conn, g.conn, "same pooled connection");
}

#[test]
fn max_message_size_is_exact() {
    let mut cfg = default_config();
    cfg.max_message_size = MIB as u64;
    let a = Node::with_config(&cfg);
    let mut b = Node::with_config(&cfg);
    let pb = b.listen("127.0.0.1");

    let too_big = vec![1u8; MIB + 1];
    let rc = a.send("127.0.0.1", pb, XXNET_LANE_DEFAULT, 1, &too_big);
    assert_eq!(
        rc,
        XXNET_E_TOO_LARGE,
        "max+1 bytes: got {rc} {}",
        strerror(rc)
    );
    let rc = a.send("127.0.0.1", pb, XXNET_LANE_BULK, 1, &too_big);
    assert_eq!(
        rc, XXNET_E_TOO_LARGE,
        "max+1 bytes on the bulk lane: got {rc}"
    );

    let exact = pattern(MIB, 3);
    a.send_ok("127.0.0.1", pb, XXNET_LANE_BULK, 2, &exact);
    a.send_ok("127.0.0.1", pb, XXNET_LANE_DEFAULT, 3, b"after");
    let ok = b.poll_until(WAIT, |log| count_msgs(log) >= 2);
    assert!(ok, "messages did not arrive:\n{}", dump_log(&b.log));
    let m = b
        .messages()
        .find(|e| e.msg_id == 2)
        .expect("max-size message");
    assert_eq!(m.payload.len(), MIB);
    assert!(m.payload == exact, "max-size payload differs");
    assert_eq!(b.count_msgs(), 2, "the too-large messages must not arrive");
    assert!(
        b.of_kind(XXNET_EVENT_DISCONNECTED).is_empty(),
        "no disconnect:\n{}",
        dump_log(&b.log)
    );
    let s = a.stats_until(Duration::from_secs(1), |s| s.msgs_out >= 2);
    assert_eq!(s.send_failed_msgs, 0);
    assert_eq!(s.msgs_out, 2, "only the two accepted messages are sent");
}
