//! Context lifecycle: prompt xxnet_free under load, reactor failure, poll
//! timeouts, and failed connects reporting every queued message.

mod common;

use common::*;
use std::time::{Duration, Instant};
use xxnet::ffi::context::*;
use xxnet::ffi::types::xxnet_event;
use xxnet::*;

#[test]
fn free_while_streaming_returns_within_1s() {
    const N: u32 = 100_000; // 25.6 MB per direction: under the default 32 MiB send_high_water
    let mut a = Node::new();
    let mut b = Node::new();
    let pa = a.listen("127.0.0.1");
    let pb = b.listen("127.0.0.1");
    let payload = pattern(256, 1);
    // Connect one way first so the stream starts at once.
    a.send_ok("127.0.0.1", pb, 0, 0, &payload);
    assert!(
        b.poll_until(WAIT, |log| count_msgs(log) >= 1),
        "first message"
    );
    let t = Instant::now();
    for i in 1..N {
        a.send_ok("127.0.0.1", pb, i % 2, i, &payload);
        b.send_ok("127.0.0.1", pa, i % 2, i, &payload);
    }
    eprintln!("queued 2 x {N} messages of 256 B in {:.2?}", t.elapsed());
    // Traffic is flowing both ways.
    assert!(
        b.poll_until(WAIT, |log| count_msgs(log) >= 1000),
        "A→B traffic flows"
    );
    assert!(
        a.poll_until(WAIT, |log| count_msgs(log) >= 1000),
        "B→A traffic flows"
    );
    let sa = a.stats();
    eprintln!(
        "before free: A queued_msgs {} msgs_out {}; B msgs_in {}",
        sa.queued_msgs,
        sa.msgs_out,
        b.stats().msgs_in
    );

    let t = Instant::now();
    a.free();
    let took_a = t.elapsed();
    let t = Instant::now();
    b.free();
    let took_b = t.elapsed();
    eprintln!("xxnet_free under load: A {took_a:.2?}, B {took_b:.2?}");
    assert!(
        took_a < Duration::from_secs(1),
        "xxnet_free(A) took {took_a:?}"
    );
    assert!(
        took_b < Duration::from_secs(1),
        "xxnet_free(B) took {took_b:?}"
    );
}

#[test]
fn free_null_is_a_noop() {
    xxnet_free(std::ptr::null_mut());
}

#[test]
fn reactor_panic_makes_context_unusable() {
    let mut peer = Node::new();
    let pp = peer.listen("127.0.0.1");
    let mut a = Node::new();
    a.listen("127.0.0.1");
    // An established connection, so the reactor owns live sockets when it dies.
    a.send_ok("127.0.0.1", pp, 0, 1, b"hello");
    assert!(
        peer.poll_until(WAIT, |log| count_msgs(log) >= 1),
        "hello arrived"
    );

    let t = Instant::now();
    context_of(a.ctx)
        .expect("context_of returns the context")
        .inject_reactor_panic();
    let ok = a.poll_until(Duration::from_secs(1), |log| {
        log.iter().any(|e| e.kind == XXNET_EVENT_ERROR)
    });
    assert!(
        ok,
        "no ERROR event within 1 s of the reactor panic:\n{}",
        dump_log(&a.log)
    );
    eprintln!("ERROR event after {:.2?}", t.elapsed());
    let err = a.log.iter().find(|e| e.kind == XXNET_EVENT_ERROR).unwrap();
    assert_eq!(err.code, XXNET_E_INTERNAL, "ERROR code: {err}");

    let rc = a.send("127.0.0.1", pp, 0, 2, b"after");
    assert_eq!(
        rc,
        XXNET_E_INTERNAL,
        "send after the panic: {} {}",
        rc,
        strerror(rc)
    );
    let rc = a.try_listen("127.0.0.1", 0);
    assert_eq!(rc, Err(XXNET_E_INTERNAL), "listen after the panic");
    // Polling still works (returns nothing more, promptly).
    let t = Instant::now();
    a.poll(0);
    assert!(t.elapsed() < Duration::from_millis(100));

    let saw_disconnect = peer.poll_until(Duration::from_secs(2), |log| {
        log.iter().any(|e| e.kind == XXNET_EVENT_DISCONNECTED)
    });
    eprintln!("peer saw the dead context's connection close: {saw_disconnect}");

    let t = Instant::now();
    a.free();
    let took = t.elapsed();
    eprintln!("xxnet_free after a reactor panic: {took:.2?}");
    assert!(took < Duration::from_secs(1), "xxnet_free took {took:?}");
}

#[test]
fn poll_timeouts() {
    let mut a = Node::new();
    a.listen("127.0.0.1");
    for _ in 0..5 {
        let t = Instant::now();
        let n = a.poll(0);
        let took = t.elapsed();
        assert_eq!(n, 0, "no events on an idle context:\n{}", dump_log(&a.log));
        assert!(took < Duration::from_millis(20), "poll(0) took {took:?}");
    }
    for _ in 0..3 {
        let t = Instant::now();
        let n = a.poll(50);
        let took = t.elapsed();
        eprintln!("poll(50) on an idle context took {took:.2?}");
        assert_eq!(n, 0);
        assert!(
            took >= Duration::from_millis(50),
            "poll(50) returned after {took:?}"
        );
        assert!(took < Duration::from_millis(200), "poll(50) took {took:?}");
    }
    // max 0 and NULL events return 0 at once.
    let mut ev = [unsafe { std::mem::zeroed::<xxnet_event>() }; 1];
    let t = Instant::now();
    assert_eq!(xxnet_poll_recv(a.ctx, ev.as_mut_ptr(), 0, 1000), 0);
    assert_eq!(xxnet_poll_recv(a.ctx, std::ptr::null_mut(), 4, 1000), 0);
    assert_eq!(
        xxnet_poll_recv(std::ptr::null_mut(), ev.as_mut_ptr(), 1, 1000),
        0
    );
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "max 0 / NULL polls waited"
    );

    // A waiting poll wakes up when an event arrives, without waiting out its timeout.
    let b = Node::new();
    let pa = a.try_listen("127.0.0.1", 0).unwrap();
    b.send_ok("127.0.0.1", pa, 0, 1, b"wake");
    let t = Instant::now();
    let ok = a.poll_until(Duration::from_secs(5), |log| count_msgs(log) >= 1);
    assert!(ok, "message arrived");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "poll woke up late: {:?}",
        t.elapsed()
    );
}

/// Queues 10 messages to a port where nothing listens; checks every one is
/// reported exactly once, in order. Returns how many SEND_FAILED events
/// covered them (1 unless the host thread was preempted mid-burst and the
/// reactor already failed the first attempt; the rest then start a new one).
fn connect_refused_once() -> usize {
    // A port where nothing listens: bind, note the port, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // Reconnect quickly and give up after 300 ms, so the session's attempts
    // (several CONNECT_FAILED) and its final report both show.
    let mut cfg = default_config();
    cfg.reconnect_min_ms = 20;
    cfg.reconnect_max_ms = 80;
    cfg.reconnect_give_up_ms = 300;
    let mut a = Node::with_config(&cfg);
    let mut total = 0u64;
    for i in 0..10u32 {
        let p = pattern(100 + i as usize, i);
        total += p.len() as u64;
        a.send_ok("127.0.0.1", port, 0, 7 + i, &p);
    }
    let ok = a.poll_until(WAIT, |log| {
        log.iter()
            .filter(|e| e.kind == XXNET_EVENT_SEND_FAILED)
            .map(|e| e.count)
            .sum::<u64>()
            >= 10
    });
    assert!(ok, "SEND_FAILED for 10 messages:\n{}", dump_log(&a.log));
    a.poll_for(Duration::from_millis(50));

    let failed = a.of_kind(XXNET_EVENT_CONNECT_FAILED);
    let sf = a.of_kind(XXNET_EVENT_SEND_FAILED);
    eprintln!(
        "connect refused: {} CONNECT_FAILED, {} SEND_FAILED events",
        failed.len(),
        sf.len()
    );
    assert!(!failed.is_empty(), "CONNECT_FAILED:\n{}", dump_log(&a.log));
    for e in &failed {
        assert_eq!(e.code, XXNET_E_CONNECT_REFUSED, "CONNECT_FAILED code: {e}");
        assert_eq!(e.peer_ip, "127.0.0.1", "{e}");
        assert_eq!(e.peer_port, port, "{e}");
    }
    // Every message is reported exactly once, in order, with its first msg_id.
    let mut next_id = 7u32;
    let (mut count, mut bytes) = (0u64, 0u64);
    for e in &sf {
        assert_eq!(e.code, XXNET_E_CONNECT_REFUSED, "SEND_FAILED code: {e}");
        assert_eq!(e.conn, 0, "no connection was ever made: {e}");
        assert_eq!(e.peer_ip, "127.0.0.1", "{e}");
        assert_eq!(e.peer_port, port, "{e}");
        assert_eq!(e.msg_id, next_id, "first msg_id covered: {e}");
        assert_eq!(e.lane, 0, "{e}");
        assert!(e.count > 0, "{e}");
        next_id += e.count as u32;
        count += e.count;
        bytes += e.total;
    }
    assert_eq!(count, 10, "SEND_FAILED count");
    assert_eq!(bytes, total, "SEND_FAILED total bytes");
    assert!(
        failed.len() >= 2,
        "the session retried before giving up:\n{}",
        dump_log(&a.log)
    );
    assert_eq!(sf.len(), 1, "one SEND_FAILED when the session gives up");
    assert!(
        a.log
            .iter()
            .all(|e| e.kind != XXNET_EVENT_CONNECTED && e.kind != XXNET_EVENT_DISCONNECTED),
        "no CONNECTED/DISCONNECTED:\n{}",
        dump_log(&a.log)
    );

    let s = a.stats_until(Duration::from_secs(1), |s| s.send_failed_msgs >= 10);
    assert_eq!(s.send_failed_msgs, 10, "stats send_failed_msgs");
    assert_eq!(s.queued_msgs, 0, "stats queued_msgs");
    assert_eq!(s.queued_bytes, 0, "stats queued_bytes");
    assert_eq!(
        s.connect_failures,
        failed.len() as u64,
        "stats connect_failures"
    );
    assert_eq!(s.open_connections, 0, "stats open_connections");
    sf.len()
}

#[test]
fn connect_refused_reports_every_queued_message() {
    // The whole burst is queued within microseconds, long before a refused
    // connect comes back, so one SEND_FAILED covers all 10. Under heavy load
    // the host thread can be preempted mid-burst; retry a few times then.
    let mut events = Vec::new();
    for _ in 0..5 {
        let n = connect_refused_once();
        events.push(n);
        if n == 1 {
            break;
        }
    }
    eprintln!("SEND_FAILED events per attempt: {events:?}");
    assert_eq!(
        events.last(),
        Some(&1),
        "one SEND_FAILED covering all 10 queued messages (events per attempt: {events:?})"
    );
}
