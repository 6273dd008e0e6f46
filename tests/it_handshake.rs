//! The handshake and the tie-break rules (docs/PROTOCOL.md §3), driven
//! deterministically by a raw peer P that speaks the protocol by hand: P
//! listens on a std TcpListener, the node under test connects to it, and P
//! opens its own connections to the node at chosen moments.
//!
//! Addresses compare by IP bytes first, so the node under test and P listen
//! on 127.0.0.1 and 127.0.0.2 to decide which of them is "smaller".

mod common;

use common::*;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;
use xxnet::*;

const T: Duration = Duration::from_secs(5);

fn addr(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

fn bind(ip: &str) -> Option<(TcpListener, SocketAddr)> {
    match TcpListener::bind(format!("{ip}:0")) {
        Ok(l) => {
            let a = l.local_addr().unwrap();
            Some((l, a))
        }
        Err(e) => {
            eprintln!("skipping: cannot bind {ip}: {e}");
            None
        }
    }
}

fn data_frame(f: &RawFrame) -> (u8, u32, u32, Vec<u8>) {
    assert_eq!(f.kind, T_DATA, "{f:?}");
    (f.flags, f.msg_id, f.seq, f.body.clone())
}

/// Asserts the node reported nothing but the given CONNECTED/DISCONNECTED/MESSAGE events.
fn no_failures(n: &Node) {
    for e in &n.log {
        assert!(
            !matches!(
                e.kind,
                XXNET_EVENT_SEND_FAILED | XXNET_EVENT_CONNECT_FAILED | XXNET_EVENT_ERROR
            ),
            "unexpected {e}\n{}",
            dump_log(&n.log)
        );
    }
}

#[test]
fn smaller_node_refuses_incoming_while_its_attempt_is_pending() {
    let Some((pl, pa)) = bind("127.0.0.2") else {
        return;
    };
    let mut node = Node::new();
    let pn = node.listen("127.0.0.1");
    let instance = random_instance();

    node.send_ok("127.0.0.2", pa.port(), 0, 1, b"m1");
    let mut s1 = Raw::accept(&pl, T);
    s1.read_preface();
    let hello = HelloBody::parse(&s1.read_frame_of(T_HELLO, T).body);
    assert_ne!(hello.nonce, 0, "{hello:?}");
    assert_eq!(
        (hello.listen_port, hello.listen_ip.as_slice()),
        (pn, &[127, 0, 0, 1][..])
    );

    // P's own attempt crosses: the node (smaller) refuses it.
    let mut c2 = Raw::connect_to(addr("127.0.0.1", pn));
    let ack = c2.handshake_as(instance, 77, Some(pa));
    assert_eq!(ack.status, 1, "refused as a duplicate: {ack:?}");
    assert!(c2.wait_closed(T).is_some(), "refused connection is closed");

    // P (larger) accepts the node's connection and names its abandoned attempt.
    let mut ackf = PREFACE.to_vec();
    ackf.extend(hello_ack_frame(0, instance, 77, Some(pa)));
    s1.write(&ackf);
    assert_eq!(
        data_frame(&s1.read_frame_of(T_DATA, T)),
        (F_FIRST | F_LAST, 1, 1, b"m1".to_vec()),
        "the queued message goes out on the surviving connection"
    );
    assert!(node.poll_until(T, |log| log.iter().any(|e| e.kind == XXNET_EVENT_CONNECTED)));

    // Rule 2: a late HELLO carrying the abandoned nonce is refused; the connection stays.
    let mut late = Raw::connect_to(addr("127.0.0.1", pn));
    let ack = late.handshake_as(instance, 77, Some(pa));
    assert_eq!(
        ack.status, 1,
        "late HELLO with the abandoned nonce: {ack:?}"
    );
    assert!(late.wait_closed(T).is_some());
    node.send_ok("127.0.0.2", pa.port(), 0, 2, b"m2");
    assert_eq!(
        data_frame(&s1.read_frame_of(T_DATA, T)),
        (F_FIRST | F_LAST, 2, 2, b"m2".to_vec()),
        "still on the first connection"
    );

    node.poll_for(Duration::from_millis(50));
    no_failures(&node);
    let c = node.of_kind(XXNET_EVENT_CONNECTED);
    assert_eq!(c.len(), 1, "{}", dump_log(&node.log));
    assert_eq!(
        (c[0].id, c[0].peer_ip.as_str(), c[0].peer_port),
        (1, "127.0.0.2", pa.port())
    );
    assert!(
        node.of_kind(XXNET_EVENT_DISCONNECTED).is_empty(),
        "{}",
        dump_log(&node.log)
    );
    let s = node.stats_until(Duration::from_secs(1), |s| s.open_connections == 1);
    assert_eq!(s.open_connections, 1);

    // P acknowledges what it received (the session releases m1 and m2).
    s1.write(&ack_frame([2, 0, 0, 0]));
    let s = node.stats_until(Duration::from_secs(1), |s| s.msgs_acked == 2);
    assert_eq!((s.msgs_acked, s.queued_msgs), (2, 0));

    // Rule 3: a HELLO with a fresh nonce means P lost its connection: it
    // replaces the old one. P brings its session block: it tracks the node's
    // send id and delivered 2 on lane 0.
    let mut c4 = Raw::connect_to(addr("127.0.0.1", pn));
    let sync = sync_block(0x5e55, hello.send_id, [2, 0, 0, 0]);
    let ack = c4.handshake_with_sync(instance, 78, Some(pa), sync);
    assert_eq!(
        ack.status, 0,
        "a fresh HELLO replaces the connection: {ack:?}"
    );
    assert!(
        s1.wait_closed(T).is_some(),
        "the replaced connection is closed"
    );
    node.send_ok("127.0.0.2", pa.port(), 0, 3, b"m3");
    assert_eq!(
        data_frame(&c4.read_frame_of(T_DATA, T)),
        (F_FIRST | F_LAST, 3, 3, b"m3".to_vec()),
        "traffic moves to the new connection; the session's numbering goes on, nothing acknowledged is resent"
    );
    // The session survives the replacement: same conn, no DISCONNECTED, no second CONNECTED.
    node.poll_for(Duration::from_millis(50));
    assert!(
        node.of_kind(XXNET_EVENT_DISCONNECTED).is_empty(),
        "{}",
        dump_log(&node.log)
    );
    let c = node.of_kind(XXNET_EVENT_CONNECTED);
    assert_eq!(c.len(), 1, "{}", dump_log(&node.log));
    no_failures(&node);
}

#[test]
fn larger_node_accepts_incoming_and_abandons_its_attempt() {
    let Some((pl, pa)) = bind("127.0.0.1") else {
        return;
    };
    let mut node = Node::new();
    let pn = match node.try_listen("127.0.0.2", 0) {
        Ok(p) => p,
        Err(code) => {
            eprintln!("skipping: cannot listen on 127.0.0.2: {}", strerror(code));
            return;
        }
    };
    let instance = random_instance();

    node.send_ok("127.0.0.1", pa.port(), 1, 5, b"m1");
    let mut s1 = Raw::accept(&pl, T);
    s1.read_preface();
    let hello = HelloBody::parse(&s1.read_frame_of(T_HELLO, T).body);
    assert_eq!(
        (hello.listen_port, hello.listen_ip.as_slice()),
        (pn, &[127, 0, 0, 2][..])
    );

    // P's own attempt crosses: the node (larger) accepts it and abandons its own.
    let mut c2 = Raw::connect_to(addr("127.0.0.2", pn));
    let ack = c2.handshake_as(instance, 77, Some(pa));
    assert_eq!(ack.status, 0, "accepted: {ack:?}");
    assert_eq!(
        ack.abandoned_nonce, hello.nonce,
        "names its abandoned attempt: {ack:?}"
    );
    assert_eq!(
        (ack.listen_port, ack.listen_ip.as_slice()),
        (pn, &[127, 0, 0, 2][..])
    );
    assert_eq!(
        data_frame(&c2.read_frame_of(T_DATA, T)),
        (F_FIRST | F_LAST, 5, 1, b"m1".to_vec()),
        "the queued message moves to the accepted connection"
    );
    // P (smaller) refuses the node's attempt.
    let mut refuse = PREFACE.to_vec();
    refuse.extend(hello_ack_frame(1, instance, 0, Some(pa)));
    s1.write(&refuse);
    let _ = s1.s.shutdown(std::net::Shutdown::Write);
    assert!(s1.wait_closed(T).is_some());

    node.send_ok("127.0.0.1", pa.port(), 1, 6, b"m2");
    assert_eq!(
        data_frame(&c2.read_frame_of(T_DATA, T)),
        (F_FIRST | F_LAST, 6, 2, b"m2".to_vec())
    );
    // P acknowledges both (lane 1): nothing stays held.
    c2.write(&ack_frame([0, 2, 0, 0]));
    node.poll_for(Duration::from_millis(50));
    no_failures(&node);
    let c = node.of_kind(XXNET_EVENT_CONNECTED);
    assert_eq!(c.len(), 1, "{}", dump_log(&node.log));
    assert_eq!(
        (c[0].id, c[0].peer_ip.as_str(), c[0].peer_port),
        (0, "127.0.0.1", pa.port())
    );
    assert!(
        node.of_kind(XXNET_EVENT_DISCONNECTED).is_empty(),
        "{}",
        dump_log(&node.log)
    );
    let s = node.stats_until(Duration::from_secs(1), |s| s.open_connections == 1);
    assert_eq!(
        (s.open_connections, s.send_failed_msgs, s.queued_msgs),
        (1, 0, 0)
    );
    eprintln!(
        "abandoned attempt: connect_failures = {}",
        s.connect_failures
    );
}

#[test]
fn raw_client_data_and_extensions() {
    let mut node = Node::new();
    let pn = node.listen("127.0.0.1");
    let mut raw = Raw::connect(pn);
    // A HELLO with an extension of a later revision (unknown TLV type 0xEE,
    // 7 bytes of value: docs/PROTOCOL.md §3, Extensions) is accepted.
    let mut out = PREFACE.to_vec();
    let mut hello = hello_frame(random_instance(), 1, None);
    hello.extend_from_slice(&[0xEE, 7, 0]);
    hello.extend_from_slice(&[0xEE; 7]);
    let len = u32::from_le_bytes(hello[0..4].try_into().unwrap()) + 10;
    hello[0..4].copy_from_slice(&len.to_le_bytes());
    out.extend(hello);
    raw.write(&out);
    raw.read_preface();
    let ack = Ack::parse(&raw.read_frame_of(T_HELLO_ACK, T).body);
    assert_eq!(ack.status, 0, "{ack:?}");

    // One whole message on lane 2, then a three-part message on lane 1.
    raw.write(&frame(T_DATA, F_FIRST | F_LAST, 2, 42, 1, b"whole"));
    let payload = pattern(3000, 9);
    let mut first = 3000u32.to_le_bytes().to_vec();
    first.extend_from_slice(&payload[..1000]);
    raw.write(&frame(T_DATA, F_FIRST, 1, 43, 1, &first));
    raw.write(&frame(T_DATA, 0, 1, 43, 1, &payload[1000..2000]));
    raw.write(&frame(T_DATA, F_LAST, 1, 43, 1, &payload[2000..]));
    assert!(
        node.poll_until(T, |log| count_msgs(log) >= 2),
        "{}",
        dump_log(&node.log)
    );
    let m: Vec<&Ev> = node.messages().collect();
    assert_eq!(
        (m[0].lane, m[0].msg_id, m[0].payload.as_slice()),
        (2, 42, &b"whole"[..])
    );
    assert_eq!((m[1].lane, m[1].msg_id), (1, 43));
    assert!(m[1].payload == payload, "reassembled payload");
    let conn = m[0].conn;

    // The next message on lane 2 skips a sequence number: BAD_FRAME.
    let before = node.stats().protocol_errors;
    raw.write(&frame(T_DATA, F_FIRST | F_LAST, 2, 44, 3, b"gap"));
    assert!(node.poll_until(T, |log| {
        log.iter()
            .any(|e| e.kind == XXNET_EVENT_DISCONNECTED && e.conn == conn)
    }));
    let d = node
        .log
        .iter()
        .find(|e| e.kind == XXNET_EVENT_DISCONNECTED)
        .unwrap();
    assert_eq!(d.code, XXNET_E_BAD_FRAME, "{d}");
    assert_eq!(node.count_msgs(), 2);
    assert!(raw.wait_closed(T).is_some());
    let s = node.stats_until(Duration::from_secs(1), |s| s.protocol_errors > before);
    assert_eq!(s.protocol_errors, before + 1);
}

#[test]
fn data_before_hello_is_refused() {
    let mut node = Node::new();
    let pn = node.listen("127.0.0.1");
    let mut raw = Raw::connect(pn);
    let mut out = PREFACE.to_vec();
    out.extend(frame(T_DATA, F_FIRST | F_LAST, 0, 1, 1, b"early"));
    raw.write(&out);
    assert!(raw.wait_closed(Duration::from_secs(2)).is_some(), "closed");
    let s = node.stats_until(Duration::from_secs(1), |s| s.protocol_errors >= 1);
    assert_eq!(s.protocol_errors, 1);
    node.poll_for(Duration::from_millis(20));
    assert!(node.log.is_empty(), "no events:\n{}", dump_log(&node.log));
}
