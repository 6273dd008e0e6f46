//! Malformed input from raw TCP clients closes only the offending connection
//! with the documented code (docs/PROTOCOL.md §1-4), while a well-behaved
//! peer keeps exchanging messages with the same server before, during and after.

mod common;

use common::*;
use std::net::Shutdown;
use std::time::Duration;
use xxnet::*;

const MAX_MSG: u64 = 1 << 20;

/// A server, a good peer that talks to it both ways, and bookkeeping.
struct Harness {
    server: Node,
    good: Node,
    ps: u16,
    pg: u16,
    to_server: u32,
    to_good: u32,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_give_up(default_config().reconnect_give_up_ms)
    }

    /// A harness whose server gives up on a silent session after `give_up_ms`.
    fn with_give_up(give_up_ms: u32) -> Harness {
        let mut cfg = default_config();
        cfg.max_message_size = MAX_MSG;
        cfg.reconnect_give_up_ms = give_up_ms;
        let server = Node::with_config(&cfg);
        let good = Node::new();
        let ps = server.listen("127.0.0.1");
        let pg = good.listen("127.0.0.1");
        let mut h = Harness {
            server,
            good,
            ps,
            pg,
            to_server: 0,
            to_good: 0,
        };
        // Connect from the good peer first (the simultaneous-connect race is
        // tested in it_pool_race), then talk both ways.
        h.good
            .send_ok("127.0.0.1", ps, 0, 0, &good_payload(b'G', 0));
        h.to_server = 1;
        let ok = h.server.poll_until(WAIT, |log| count_msgs(log) >= 1);
        assert!(
            ok,
            "server: first good message missing:\n{}",
            dump_log(&h.server.log)
        );
        h.exchange(20);
        h.wait_good_traffic();
        h
    }

    /// The good peer sends `k` messages to the server and the server `k` back.
    fn exchange(&mut self, k: u32) {
        for _ in 0..k {
            let i = self.to_server;
            self.good
                .send_ok("127.0.0.1", self.ps, 0, i, &good_payload(b'G', i));
            self.to_server += 1;
            let j = self.to_good;
            self.server
                .send_ok("127.0.0.1", self.pg, 0, j, &good_payload(b'S', j));
            self.to_good += 1;
        }
    }

    /// Waits until everything exchanged so far arrived, then checks it.
    fn wait_good_traffic(&mut self) {
        let n = self.to_server as usize;
        let ok = self.server.poll_until(WAIT, |log| count_msgs(log) >= n);
        assert!(
            ok,
            "server: good peer's messages missing:\n{}",
            dump_log(&self.server.log)
        );
        let n = self.to_good as usize;
        let ok = self.good.poll_until(WAIT, |log| count_msgs(log) >= n);
        assert!(
            ok,
            "good peer: server's messages missing:\n{}",
            dump_log(&self.good.log)
        );
        self.check_good_traffic();
    }

    fn check_good_traffic(&self) {
        let pg = self.pg;
        let from_good: Vec<&Ev> = self
            .server
            .log
            .iter()
            .filter(|e| e.is_msg() && e.peer_port == pg)
            .collect();
        assert_eq!(
            from_good.len(),
            self.to_server as usize,
            "server got each good message once:\n{}",
            dump_log(&self.server.log)
        );
        for (i, e) in from_good.iter().enumerate() {
            assert_eq!(e.msg_id, i as u32, "good message order at the server");
            assert_eq!(e.payload, good_payload(b'G', i as u32), "good payload {i}");
            assert_eq!(e.peer_ip, "127.0.0.1");
        }
        let from_server: Vec<&Ev> = self.good.messages().collect();
        assert_eq!(
            from_server.len(),
            self.to_good as usize,
            "good peer got each message once"
        );
        for (i, e) in from_server.iter().enumerate() {
            assert_eq!(e.msg_id, i as u32, "server message order at the good peer");
            assert_eq!(
                e.payload,
                good_payload(b'S', i as u32),
                "server payload {i}"
            );
        }
        // The good connection never broke.
        for n in [&self.server, &self.good] {
            for e in &n.log {
                assert!(
                    !(e.kind == XXNET_EVENT_DISCONNECTED && e.peer_port == pg)
                        && e.kind != XXNET_EVENT_SEND_FAILED
                        && e.kind != XXNET_EVENT_ERROR,
                    "good traffic disturbed: {e}"
                );
            }
        }
    }

    /// The server's current protocol_errors.
    fn protocol_errors(&self) -> u64 {
        self.server.stats().protocol_errors
    }

    /// Waits until protocol_errors reaches `want`.
    fn expect_protocol_errors(&self, want: u64) {
        let s = self
            .server
            .stats_until(Duration::from_secs(2), |s| s.protocol_errors >= want);
        assert_eq!(s.protocol_errors, want, "protocol_errors");
    }

    /// Raw client that completed the handshake; returns it and the server's conn id for it.
    fn raw_handshaken(&mut self) -> (Raw, u64) {
        let mut raw = Raw::connect(self.ps);
        let ack = raw.handshake();
        assert_eq!(ack.status, 0, "HELLO_ACK accepts: {ack:?}");
        assert_eq!(ack.listen_port, self.ps, "HELLO_ACK listen_port: {ack:?}");
        assert_eq!(
            ack.listen_ip,
            vec![127, 0, 0, 1],
            "HELLO_ACK listen_ip: {ack:?}"
        );
        let port = raw.local_port();
        let ok = self
            .server
            .poll_until(WAIT, |log| raw_connected(log, port).is_some());
        assert!(
            ok,
            "server emitted no CONNECTED for the raw client (port {port}):\n{}",
            dump_log(&self.server.log)
        );
        let conn = raw_connected(&self.server.log, port).unwrap();
        (raw, conn)
    }

    /// Waits for the DISCONNECTED of `conn` and checks its code.
    fn expect_disconnected(&mut self, conn: u64, code: i32) {
        let ok = self.server.poll_until(WAIT, |log| {
            log.iter()
                .any(|e| e.kind == XXNET_EVENT_DISCONNECTED && e.conn == conn)
        });
        assert!(
            ok,
            "no DISCONNECTED for raw conn {conn}:\n{}",
            dump_log(&self.server.log)
        );
        let e = self
            .server
            .log
            .iter()
            .find(|e| e.kind == XXNET_EVENT_DISCONNECTED && e.conn == conn)
            .unwrap();
        assert_eq!(
            e.code,
            code,
            "DISCONNECTED code for raw conn: got {} ({}), want {} ({})",
            e.code,
            strerror(e.code),
            code,
            strerror(code)
        );
    }

    /// Asserts the server emitted no CONNECTED/DISCONNECTED for a raw client
    /// that never completed the handshake.
    fn expect_no_conn_events(&self, port: u16) {
        for e in &self.server.log {
            assert!(
                !((e.kind == XXNET_EVENT_CONNECTED || e.kind == XXNET_EVENT_DISCONNECTED)
                    && e.peer_port == port),
                "event for a connection that never completed the handshake: {e}"
            );
        }
    }

    /// More traffic, then the final check; the server is still fully usable.
    fn finish(mut self) {
        self.exchange(20);
        self.wait_good_traffic();
        let s = self.server.stats();
        assert_eq!(
            s.open_connections, 1,
            "only the good connection is left open"
        );
    }
}

fn good_payload(tag: u8, i: u32) -> Vec<u8> {
    let mut p = vec![tag];
    p.extend_from_slice(&i.to_le_bytes());
    p.extend(vec![tag ^ i as u8; (i % 100) as usize]);
    p
}

fn raw_connected(log: &[Ev], port: u16) -> Option<u64> {
    log.iter()
        .find(|e| e.kind == XXNET_EVENT_CONNECTED && e.peer_port == port)
        .map(|e| {
            assert_eq!(e.peer_ip, "127.0.0.1", "raw client's peer_ip");
            assert_eq!(e.id, 0, "raw client's connection was accepted");
            e.conn
        })
}

/// Writes `bytes` as a stranger and checks the server hangs up within `limit`.
fn stranger(h: &mut Harness, bytes: &[u8], limit: Duration, what: &str) {
    let before = h.protocol_errors();
    let mut raw = Raw::connect(h.ps);
    let port = raw.local_port();
    raw.write(bytes);
    h.exchange(5);
    let took = raw.wait_closed(Duration::from_secs(3));
    eprintln!("{what}: server closed after {took:?}");
    let took = took.unwrap_or_else(|| panic!("{what}: server did not close the connection"));
    assert!(
        took < limit,
        "{what}: closed after {took:?}, limit {limit:?}"
    );
    h.expect_protocol_errors(before + 1);
    h.server.poll_for(Duration::from_millis(20));
    h.expect_no_conn_events(port);
}

#[test]
fn a_garbage_bytes() {
    let mut h = Harness::new();
    let mut junk = pattern(200, 5);
    junk[0] = 0x17;
    stranger(&mut h, &junk, Duration::from_secs(2), "garbage");
    stranger(
        &mut h,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(2),
        "HTTP request",
    );
    h.finish();
}

#[test]
fn b_wrong_preface_byte_closes_at_once() {
    let mut h = Harness::new();
    stranger(&mut h, b"Q", Duration::from_secs(1), "wrong first byte");
    stranger(&mut h, b"XXNQ", Duration::from_secs(1), "wrong fourth byte");
    h.finish();
}

#[test]
fn c_unsupported_version_or_reserved_bytes() {
    let mut h = Harness::new();
    stranger(
        &mut h,
        b"XXNT\x02\x00\x00\x00",
        Duration::from_secs(2),
        "version 2",
    );
    stranger(
        &mut h,
        b"XXNT\x01\x00\x01\x00",
        Duration::from_secs(2),
        "reserved byte set",
    );
    h.finish();
}

#[test]
fn d_frame_too_large() {
    let mut h = Harness::new();
    let before = h.protocol_errors();
    let (mut raw, conn) = h.raw_handshaken();
    h.exchange(5);
    // Only the header: the server must not wait for (or reserve) 4 GiB.
    raw.write(&header(0xFFFF_FFFF, T_DATA, F_FIRST | F_LAST, 0, 1, 1));
    h.exchange(5);
    h.expect_disconnected(conn, XXNET_E_FRAME_TOO_LARGE);
    assert!(
        raw.wait_closed(Duration::from_secs(2)).is_some(),
        "raw socket closed"
    );
    h.expect_protocol_errors(before + 1);
    h.finish();
}

#[test]
fn e_message_too_large() {
    let mut h = Harness::new();
    let before = h.protocol_errors();
    for total in [MAX_MSG as u32 + 1, u32::MAX] {
        let (mut raw, conn) = h.raw_handshaken();
        h.exchange(5);
        let mut body = total.to_le_bytes().to_vec();
        body.extend(vec![0xAB; 100]);
        raw.write(&frame(T_DATA, F_FIRST, 0, 9, 1, &body));
        h.exchange(5);
        h.expect_disconnected(conn, XXNET_E_MESSAGE_TOO_LARGE);
        assert!(
            raw.wait_closed(Duration::from_secs(2)).is_some(),
            "raw socket closed"
        );
    }
    h.expect_protocol_errors(before + 2);
    h.finish();
}

#[test]
fn f_truncated() {
    // A connection that ends mid-frame is a protocol error (logged, counted,
    // the connection closed at once: LINK_DOWN), but it is also what a crash
    // looks like, so the session waits for the peer to come back; this raw
    // client never does, and the session gives up after 300 ms.
    let mut h = Harness::with_give_up(300);
    let before = h.protocol_errors();
    let whole = frame(T_DATA, F_FIRST | F_LAST, 0, 4, 1, &[0x5A; 100]);
    let mut multi = 5000u32.to_le_bytes().to_vec();
    multi.extend(vec![0x33; 1000]);
    let cases: [(&str, Vec<u8>); 3] = [
        ("half a header", whole[..8].to_vec()),
        ("header and half the body", whole[..16 + 50].to_vec()),
        (
            "first part of a multi-part message",
            frame(T_DATA, F_FIRST, 0, 4, 1, &multi),
        ),
    ];
    for (what, bytes) in cases {
        let (mut raw, conn) = h.raw_handshaken();
        h.exchange(5);
        raw.write(&bytes);
        raw.s.shutdown(Shutdown::Write).unwrap();
        h.exchange(5);
        eprintln!("truncated: {what}");
        let ok = h.server.poll_until(WAIT, |log| {
            log.iter()
                .any(|e| e.kind == XXNET_EVENT_LINK_DOWN && e.conn == conn)
        });
        assert!(ok, "LINK_DOWN for {what}:\n{}", dump_log(&h.server.log));
        let down = h
            .server
            .log
            .iter()
            .find(|e| e.kind == XXNET_EVENT_LINK_DOWN && e.conn == conn)
            .unwrap();
        assert_eq!(down.code, XXNET_E_TRUNCATED, "{down}");
        h.expect_disconnected(conn, XXNET_E_TRUNCATED);
        assert!(
            raw.wait_closed(Duration::from_secs(2)).is_some(),
            "raw socket closed"
        );
    }
    h.expect_protocol_errors(before + 3);
    h.finish();
}

#[test]
fn g_unknown_frame_type() {
    let mut h = Harness::new();
    let before = h.protocol_errors();
    for kind in [99u8, 0] {
        let (mut raw, conn) = h.raw_handshaken();
        h.exchange(5);
        raw.write(&frame(kind, 0, 0, 0, 0, &[]));
        h.exchange(5);
        h.expect_disconnected(conn, XXNET_E_BAD_FRAME);
        assert!(
            raw.wait_closed(Duration::from_secs(2)).is_some(),
            "raw socket closed"
        );
    }
    h.expect_protocol_errors(before + 2);
    h.finish();
}
