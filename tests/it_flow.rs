//! Flow control and limits: receive back-pressure, connect and handshake
//! timeouts, max_connections.

mod common;

use common::*;
use std::time::{Duration, Instant};
use xxnet::*;

#[test]
fn receive_backpressure_pauses_reading_until_the_host_polls() {
    const LIMIT: u64 = 1 << 20;
    const N: u32 = 300;
    const SIZE: usize = 100 << 10;
    // The reactor checks the limit before each read of at most 1 MiB (its
    // per-turn read budget, docs/ARCHITECTURE.md), so it may overshoot by one
    // read plus a partly read message.
    const BOUND: u64 = LIMIT + (1 << 20) + 2 * SIZE as u64;
    let mut cfg = default_config();
    cfg.recv_queue_limit = LIMIT;
    let a = Node::new();
    let mut b = Node::with_config(&cfg);
    let pb = b.listen("127.0.0.1");
    for i in 0..N {
        a.send_ok("127.0.0.1", pb, 0, i, &pattern(SIZE, i));
    }
    // B does not poll: its reactor must stop handing over messages near the limit.
    std::thread::sleep(Duration::from_millis(300));
    let s = b.stats();
    eprintln!(
        "back-pressure: B holds {} messages ({} bytes) unpolled with a {LIMIT} B limit",
        s.msgs_in, s.bytes_in
    );
    assert!(
        s.bytes_in <= BOUND,
        "B kept reading past recv_queue_limit: {} bytes handed over (bound {BOUND})",
        s.bytes_in
    );
    assert!(s.msgs_in > 0, "B received something");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        b.stats().bytes_in,
        s.bytes_in,
        "reading stays paused while the host does not poll"
    );
    // Drain in cycles: poll everything there is, wait, see how much the
    // reactor handed over meanwhile (it resumes below half the limit).
    let deadline = Instant::now() + WAIT;
    let mut held_max = 0u64;
    let mut cycles = 0;
    while count_msgs(&b.log) < N as usize && Instant::now() < deadline {
        while b.poll(0) > 0 {}
        std::thread::sleep(Duration::from_millis(30));
        let held = b.stats().bytes_in - b.messages().map(|e| e.payload.len() as u64).sum::<u64>();
        held_max = held_max.max(held);
        cycles += 1;
    }
    eprintln!("back-pressure: {cycles} drain cycles, at most {held_max} bytes held unpolled");
    assert_eq!(count_msgs(&b.log), N as usize, "all messages after polling");
    assert!(
        held_max <= BOUND,
        "B read past recv_queue_limit after resuming: {held_max} bytes handed over (bound {BOUND})"
    );
    for (i, m) in b.messages().enumerate() {
        assert_eq!(m.msg_id, i as u32);
        assert!(m.payload == pattern(SIZE, i as u32), "payload {i}");
    }
}

#[test]
fn connect_timeout_when_the_peer_never_answers() {
    // A socket that accepts at the TCP level (backlog) but never speaks.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = mute.local_addr().unwrap().port();
    let mut cfg = default_config();
    cfg.connect_timeout_ms = 300;
    cfg.reconnect_give_up_ms = 0; // report at the first failure (no reconnecting)
    let mut a = Node::with_config(&cfg);
    let t = Instant::now();
    for i in 0..3u32 {
        a.send_ok("127.0.0.1", port, 0, i, b"hello?");
    }
    let ok = a.poll_until(Duration::from_secs(5), |log| {
        log.iter().any(|e| e.kind == XXNET_EVENT_SEND_FAILED)
    });
    let took = t.elapsed();
    assert!(
        ok,
        "SEND_FAILED after the connect timeout:\n{}",
        dump_log(&a.log)
    );
    a.poll_for(Duration::from_millis(20));
    eprintln!("connect timeout reported after {took:.2?}");
    assert!(
        took >= Duration::from_millis(280),
        "timed out early: {took:?}"
    );
    assert!(took < Duration::from_secs(2), "timed out late: {took:?}");
    let cf = a.of_kind(XXNET_EVENT_CONNECT_FAILED);
    assert_eq!(cf.len(), 1, "{}", dump_log(&a.log));
    assert_eq!(cf[0].code, XXNET_E_CONNECT_TIMEOUT, "{}", cf[0]);
    let sf = a.of_kind(XXNET_EVENT_SEND_FAILED);
    assert_eq!(sf.len(), 1, "{}", dump_log(&a.log));
    assert_eq!(
        (sf[0].count, sf[0].total, sf[0].msg_id),
        (3, 18, 0),
        "{}",
        sf[0]
    );
    assert_eq!(sf[0].code, XXNET_E_CONNECT_TIMEOUT, "{}", sf[0]);
    let s = a.stats_until(Duration::from_secs(1), |s| s.open_connections == 0);
    assert_eq!(
        (s.connect_failures, s.queued_msgs, s.open_connections),
        (1, 0, 0)
    );
    drop(mute);
}

#[test]
fn handshake_timeout_closes_silent_clients() {
    let mut cfg = default_config();
    cfg.handshake_timeout_ms = 300;
    let mut server = Node::with_config(&cfg);
    let ps = server.listen("127.0.0.1");
    let mut silent = Raw::connect(ps);
    let mut partial = Raw::connect(ps);
    partial.write(b"XXNT\x01\x00"); // 6 of the 8 preface bytes
    let mut no_hello = Raw::connect(ps);
    no_hello.write(&PREFACE);
    let t = Instant::now();
    for (what, raw) in [
        ("silent", &mut silent),
        ("partial preface", &mut partial),
        ("preface, no HELLO", &mut no_hello),
    ] {
        let closed = raw.wait_closed(Duration::from_secs(3));
        let at = t.elapsed();
        eprintln!("handshake timeout, {what}: closed {closed:?} ({at:.2?} after connecting)");
        assert!(closed.is_some(), "{what}: still open after 3 s");
        assert!(
            at >= Duration::from_millis(250),
            "{what}: closed early ({at:?})"
        );
        assert!(at < Duration::from_secs(2), "{what}: closed late ({at:?})");
    }
    server.poll_for(Duration::from_millis(20));
    assert!(
        server
            .log
            .iter()
            .all(|e| e.kind != XXNET_EVENT_CONNECTED && e.kind != XXNET_EVENT_DISCONNECTED),
        "no CONNECTED/DISCONNECTED for connections that never completed the handshake:\n{}",
        dump_log(&server.log)
    );
    let s = server.stats_until(Duration::from_secs(1), |s| s.open_connections == 0);
    assert_eq!(s.open_connections, 0);
    assert_eq!(s.accepted_connections, 3);
}

#[test]
fn max_connections_refuses_with_peer_busy() {
    let mut cfg = default_config();
    cfg.max_connections = 1;
    let mut server = Node::with_config(&cfg);
    let ps = server.listen("127.0.0.1");
    let first = Node::new();
    first.send_ok("127.0.0.1", ps, 0, 1, b"first");
    assert!(server.poll_until(WAIT, |log| count_msgs(log) >= 1), "first");

    let mut no_retry = default_config();
    no_retry.reconnect_give_up_ms = 0; // report at the first failure (no reconnecting)
    let mut second = Node::with_config(&no_retry);
    second.send_ok("127.0.0.1", ps, 0, 2, b"second");
    let ok = second.poll_until(WAIT, |log| {
        log.iter().any(|e| e.kind == XXNET_EVENT_SEND_FAILED)
    });
    assert!(ok, "second peer is refused:\n{}", dump_log(&second.log));
    let cf = second.of_kind(XXNET_EVENT_CONNECT_FAILED);
    assert_eq!(cf.len(), 1, "{}", dump_log(&second.log));
    assert_eq!(cf[0].code, XXNET_E_PEER_BUSY, "{}", cf[0]);
    let sf = second.of_kind(XXNET_EVENT_SEND_FAILED);
    assert_eq!(
        (sf[0].count, sf[0].code),
        (1, XXNET_E_PEER_BUSY),
        "{}",
        sf[0]
    );

    let s = server.stats_until(Duration::from_secs(1), |s| s.refused_connections >= 1);
    assert_eq!(s.refused_connections, 1);
    assert_eq!(s.accepted_connections, 2, "refused ones count as accepted");
    assert_eq!(s.open_connections, 1);
    server.poll_for(Duration::from_millis(20));
    assert_eq!(
        server.count_msgs(),
        1,
        "the refused peer's message never arrives"
    );
    assert_eq!(server.of_kind(XXNET_EVENT_CONNECTED).len(), 1);
    // The first peer still works.
    first.send_ok("127.0.0.1", ps, 0, 3, b"still here");
    assert!(
        server.poll_until(WAIT, |log| count_msgs(log) >= 2),
        "first still works"
    );
}

#[test]
fn messages_larger_than_the_receive_limit_still_flow() {
    // recv_queue_limit at its minimum (the fragment size), messages 32x larger.
    let mut cfg = default_config();
    cfg.recv_queue_limit = cfg.fragment_size as u64;
    let a = Node::new();
    let mut b = Node::with_config(&cfg);
    let pb = b.listen("127.0.0.1");
    for i in 0..20u32 {
        a.send_ok("127.0.0.1", pb, i % 2, i, &pattern(1 << 20, i));
        a.send_ok("127.0.0.1", pb, 2, 1000 + i, b"small");
    }
    assert!(
        b.poll_until(WAIT, |log| count_msgs(log) >= 40),
        "{} of 40 arrived:\n{}",
        count_msgs(&b.log),
        dump_log(&b.log)
    );
    let big: Vec<&Ev> = b.messages().filter(|e| e.msg_id < 1000).collect();
    for (i, e) in big.iter().enumerate() {
        assert_eq!(e.msg_id, i as u32);
        assert!(e.payload == pattern(1 << 20, i as u32), "payload {i}");
    }
}

#[test]
fn peer_restart_on_the_same_port() {
    let mut a = Node::new();
    let mut b = Node::new();
    let pb = b.listen("127.0.0.1");
    a.send_ok("127.0.0.1", pb, 0, 1, b"one");
    assert!(b.poll_until(WAIT, |log| count_msgs(log) >= 1));
    b.free();
    assert!(
        a.poll_until(WAIT, |log| log
            .iter()
            .any(|e| e.kind == XXNET_EVENT_DISCONNECTED)),
        "A sees B go:\n{}",
        dump_log(&a.log)
    );
    let d = a.of_kind(XXNET_EVENT_DISCONNECTED)[0].clone();
    assert!(
        d.code == XXNET_E_PEER_CLOSED || d.code == XXNET_E_CONN_RESET,
        "DISCONNECTED code: {d}"
    );
    let mut b2 = Node::new();
    assert_eq!(
        b2.try_listen("127.0.0.1", pb),
        Ok(pb),
        "rebind the same port"
    );
    a.send_ok("127.0.0.1", pb, 0, 2, b"two");
    assert!(
        b2.poll_until(WAIT, |log| count_msgs(log) >= 1),
        "the restarted peer gets new messages:\n{}\nA:\n{}",
        dump_log(&b2.log),
        dump_log(&a.log)
    );
    assert_eq!(b2.messages().next().unwrap().payload, b"two");
    a.poll_until(WAIT, |log| {
        log.iter()
            .filter(|e| e.kind == XXNET_EVENT_CONNECTED)
            .count()
            >= 2
    });
    let c = a.of_kind(XXNET_EVENT_CONNECTED);
    assert_eq!(c.len(), 2, "a second connection:\n{}", dump_log(&a.log));
    assert_ne!(c[0].conn, c[1].conn, "a new connection id");
}
