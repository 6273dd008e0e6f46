//! Argument checking and connection control through the C ABI: listen
//! errors, send argument errors, zero-length messages, xxnet_close and
//! xxnet_send_conn semantics (include/xxnet.h).

mod common;

use common::*;
use std::ffi::CString;
use std::time::Duration;
use xxnet::ffi::context::*;
use xxnet::ffi::types::xxnet_send_opts;
use xxnet::*;

#[test]
fn listen_errors() {
    let a = Node::new();
    let b = Node::new();
    let p = a.listen("127.0.0.1");
    assert_eq!(a.try_listen("127.0.0.1", p), Err(XXNET_E_ALREADY_LISTENING));
    assert_eq!(b.try_listen("127.0.0.1", p), Err(XXNET_E_ADDR_IN_USE));
    assert_eq!(a.try_listen("localhost", 0), Err(XXNET_E_INVALID_ARG));
    assert_eq!(a.try_listen("", 0), Err(XXNET_E_INVALID_ARG));
    // TEST-NET-1: not an address of this machine.
    assert_eq!(
        a.try_listen("192.0.2.1", 0),
        Err(XXNET_E_ADDR_NOT_AVAILABLE)
    );
    let mut port = 0u16;
    assert_eq!(
        xxnet_listen(a.ctx, std::ptr::null(), 0, &mut port),
        XXNET_E_NULL_POINTER
    );
    let ip = CString::new("127.0.0.1").unwrap();
    assert_eq!(
        xxnet_listen(std::ptr::null_mut(), ip.as_ptr(), 0, &mut port),
        XXNET_E_NULL_POINTER
    );
    // bound_port may be NULL.
    assert_eq!(
        xxnet_listen(a.ctx, ip.as_ptr(), 0, std::ptr::null_mut()),
        XXNET_OK
    );
}

#[test]
fn send_argument_errors() {
    let a = Node::new();
    let b = Node::new();
    let pb = b.listen("127.0.0.1");
    assert_eq!(
        a.send("127.0.0.1", pb, XXNET_LANES, 0, b"x"),
        XXNET_E_INVALID_ARG,
        "lane 4"
    );
    assert_eq!(
        a.send("localhost", pb, 0, 0, b"x"),
        XXNET_E_INVALID_ARG,
        "host name"
    );
    assert_eq!(
        a.send("127.0.0.1", 0, 0, 0, b"x"),
        XXNET_E_INVALID_ARG,
        "port 0"
    );
    assert_eq!(
        a.send("0.0.0.0", pb, 0, 0, b"x"),
        XXNET_E_INVALID_ARG,
        "wildcard"
    );
    let ip = CString::new("127.0.0.1").unwrap();
    let opts = xxnet_send_opts {
        lane: 0,
        msg_id: 0,
        flags: 2,
        ack_timeout_ms: 0,
    };
    assert_eq!(
        xxnet_send_ex(a.ctx, ip.as_ptr(), pb, b"x".as_ptr(), 1, &opts),
        XXNET_E_INVALID_ARG,
        "unknown flag bits"
    );
    assert_eq!(
        xxnet_send(a.ctx, ip.as_ptr(), pb, std::ptr::null(), 5),
        XXNET_E_NULL_POINTER,
        "NULL data with len 5"
    );
    assert_eq!(
        xxnet_send(std::ptr::null_mut(), ip.as_ptr(), pb, b"x".as_ptr(), 1),
        XXNET_E_NULL_POINTER
    );
    assert_eq!(a.send_conn(0, 0, 0, b"x"), XXNET_E_UNKNOWN_CONN, "conn 0");
    assert_eq!(
        a.send_conn(12345, 0, 0, b"x"),
        XXNET_E_UNKNOWN_CONN,
        "conn never issued"
    );
    assert_eq!(
        xxnet_close(a.ctx, 12345),
        XXNET_E_UNKNOWN_CONN,
        "close unknown"
    );
    // Nothing was queued by the refused calls.
    let s = a.stats();
    assert_eq!((s.queued_msgs, s.queued_bytes), (0, 0));
}

#[test]
fn zero_length_and_null_data_messages() {
    let a = Node::new();
    let mut b = Node::new();
    let pb = b.listen("127.0.0.1");
    a.send_ok("127.0.0.1", pb, 0, 1, b"");
    let ip = CString::new("127.0.0.1").unwrap();
    assert_eq!(
        xxnet_send(a.ctx, ip.as_ptr(), pb, std::ptr::null(), 0),
        XXNET_OK
    );
    a.send_ok("127.0.0.1", pb, 2, 3, b"");
    assert!(
        b.poll_until(WAIT, |log| count_msgs(log) >= 3),
        "{}",
        dump_log(&b.log)
    );
    let m: Vec<&Ev> = b.messages().collect();
    assert_eq!(
        m.iter()
            .map(|e| (e.msg_id, e.lane, e.payload.len()))
            .collect::<Vec<_>>(),
        vec![(1, 0, 0), (0, 0, 0), (3, 2, 0)]
    );
}

#[test]
fn reply_on_conn_and_close() {
    let mut a = Node::new();
    let mut b = Node::new();
    let pb = b.listen("127.0.0.1");
    // A listens nowhere: B can only answer on the connection id.
    a.send_ok("127.0.0.1", pb, 0, 1, b"ping");
    assert!(b.poll_until(WAIT, |log| count_msgs(log) >= 1));
    let m = b.messages().next().unwrap().clone();
    assert_eq!(m.peer_ip, "127.0.0.1");
    assert_ne!(m.peer_port, 0, "a non-listening peer shows its socket port");
    assert_eq!(b.send_conn(m.conn, 1, 9, b"pong"), XXNET_OK);
    assert!(
        a.poll_until(WAIT, |log| count_msgs(log) >= 1),
        "{}",
        dump_log(&a.log)
    );
    let r = a.messages().next().unwrap().clone();
    assert_eq!(
        (r.payload.as_slice(), r.lane, r.msg_id),
        (&b"pong"[..], 1, 9)
    );
    assert_eq!(r.peer_port, pb);

    // A closes with lots still queued: SEND_FAILED (LOCAL_CLOSE) then DISCONNECTED (LOCAL_CLOSE).
    let big = pattern(64 << 10, 1);
    const N: u64 = 400; // 25 MiB: under the default 32 MiB send_high_water
    for i in 0..N {
        a.send_ok("127.0.0.1", pb, 1, 100 + i as u32, &big);
    }
    assert_eq!(xxnet_close(a.ctx, r.conn), XXNET_OK);
    let ok = a.poll_until(WAIT, |log| {
        log.iter()
            .any(|e| e.kind == XXNET_EVENT_DISCONNECTED && e.conn == r.conn)
    });
    assert!(ok, "DISCONNECTED after xxnet_close:\n{}", dump_log(&a.log));
    let sf: Vec<&Ev> = a.of_kind(XXNET_EVENT_SEND_FAILED);
    let disc_at = a
        .log
        .iter()
        .position(|e| e.kind == XXNET_EVENT_DISCONNECTED)
        .unwrap();
    let d = &a.log[disc_at];
    assert_eq!(d.code, XXNET_E_LOCAL_CLOSE, "DISCONNECTED code: {d}");
    let failed: u64 = sf.iter().map(|e| e.count).sum();
    for e in &sf {
        assert_eq!(e.code, XXNET_E_LOCAL_CLOSE, "SEND_FAILED code: {e}");
        assert_eq!(e.conn, r.conn, "{e}");
        assert_eq!(e.total, e.count * big.len() as u64, "{e}");
    }
    assert!(
        a.log[..disc_at]
            .iter()
            .filter(|e| e.kind == XXNET_EVENT_SEND_FAILED)
            .count()
            == sf.len(),
        "SEND_FAILED comes before DISCONNECTED:\n{}",
        dump_log(&a.log)
    );
    let s = a.stats_until(Duration::from_secs(1), |s| s.queued_msgs == 0);
    eprintln!(
        "close with {N} queued: {} acknowledged, {failed} reported failed",
        s.msgs_acked - 1
    );
    assert_eq!(s.queued_msgs, 0);
    assert_eq!(
        s.msgs_acked - 1 + failed,
        N,
        "every message is acknowledged by the peer or reported"
    );
    assert_eq!(s.send_failed_msgs, failed);
    if let Some(first) = sf.first() {
        assert_eq!(
            first.msg_id as u64,
            100 + s.msgs_acked - 1,
            "first failed msg_id: the first one the peer had not acknowledged"
        );
    }
    // The id is dead now.
    assert_eq!(a.send_conn(r.conn, 0, 0, b"x"), XXNET_E_UNKNOWN_CONN);
    assert_eq!(xxnet_close(a.ctx, r.conn), XXNET_E_UNKNOWN_CONN);

    // B sees the connection go, receives a prefix in order, then its id is dead too.
    let ok = b.poll_until(WAIT, |log| {
        log.iter().any(|e| e.kind == XXNET_EVENT_DISCONNECTED)
    });
    assert!(ok, "B sees DISCONNECTED:\n{}", dump_log(&b.log));
    let got: Vec<u32> = b.messages().skip(1).map(|e| e.msg_id).collect();
    // What B can have got: what it acknowledged, plus what A reports as
    // "sent, not acknowledged" (SEND_FAILED id 1); never the unsent ones.
    let maybe: u64 = sf.iter().filter(|e| e.id == 1).map(|e| e.count).sum();
    let acked = s.msgs_acked - 1; // minus the ping
    assert!(
        got.len() as u64 <= acked + maybe && got.len() as u64 >= acked,
        "B got {} but A saw {acked} acknowledged and {maybe} sent unacknowledged",
        got.len()
    );
    assert!(
        got.iter().enumerate().all(|(i, &id)| id == 100 + i as u32),
        "in order"
    );
    assert_eq!(b.send_conn(m.conn, 0, 0, b"x"), XXNET_E_UNKNOWN_CONN);

    // A new send to B opens a new connection.
    let before = count_msgs(&b.log);
    a.send_ok("127.0.0.1", pb, 0, 7, b"again");
    assert!(
        b.poll_until(WAIT, |log| count_msgs(log) > before),
        "{}",
        dump_log(&b.log)
    );
    assert_ne!(
        b.messages().last().unwrap().conn,
        m.conn,
        "a new connection id"
    );
}
