//! Handshake authentication over real loopback sockets, through the C ABI
//! (docs/PROTOCOL.md §3, "Authentication"): two contexts with the same
//! `auth_secret` talk; with different secrets, or a secret on one side only,
//! the connecting side's session fails with XXNET_E_AUTH at once and
//! reports its messages; a raw client without the secret is refused.

mod common;

use common::*;
use std::ffi::CString;
use std::time::Duration;
use xxnet::*;

const T: Duration = Duration::from_secs(5);

/// A context with an optional shared secret and node name. The strings are
/// read only during xxnet_new, so they may be dropped right after.
fn node(secret: Option<&[u8]>, name: Option<&str>) -> Node {
    let mut cfg = default_config();
    cfg.reconnect_min_ms = 20;
    cfg.reconnect_max_ms = 100;
    let name = name.map(|n| CString::new(n).unwrap());
    cfg.node_name = name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr());
    cfg.auth_secret = secret.map_or(std::ptr::null(), |s| s.as_ptr());
    cfg.auth_secret_len = secret.map_or(0, |s| s.len());
    Node::with_config(&cfg)
}

fn kinds(n: &Node, kind: u32) -> Vec<&Ev> {
    n.log.iter().filter(|e| e.kind == kind).collect()
}

#[test]
fn same_secret_connects_and_messages_flow() {
    let mut a = node(Some(b"0123456789abcdef0123456789abcdef"), Some("alpha"));
    let mut b = node(Some(b"0123456789abcdef0123456789abcdef"), Some("beta"));
    let pa = a.listen("127.0.0.1");
    let pb = b.listen("127.0.0.1");
    for i in 0..50u32 {
        a.send_ok("127.0.0.1", pb, i % 4, i, &pattern(100 + i as usize, i));
    }
    assert!(
        b.poll_until(T, |log| count_msgs(log) == 50),
        "B got {} of 50\nA:\n{}B:\n{}",
        b.count_msgs(),
        dump_log(&a.log),
        dump_log(&b.log)
    );
    let mut ids: Vec<u32> = b.messages().map(|m| m.msg_id).collect();
    for m in b.messages() {
        let i = m.msg_id;
        assert_eq!(
            m.payload,
            pattern(100 + i as usize, i),
            "message {i} intact"
        );
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..50).collect::<Vec<u32>>(), "each message once");
    // And back over the same connection.
    for i in 0..10u32 {
        b.send_ok("127.0.0.1", pa, 0, i, b"reply");
    }
    assert!(
        a.poll_until(T, |log| count_msgs(log) == 10),
        "{}",
        dump_log(&a.log)
    );
    for n in [&a, &b] {
        assert_eq!(
            kinds(n, XXNET_EVENT_CONNECTED).len(),
            1,
            "{}",
            dump_log(&n.log)
        );
        assert!(kinds(n, XXNET_EVENT_CONNECT_FAILED).is_empty());
        assert_eq!(n.stats().protocol_errors, 0);
    }
}

/// The connector's view of a refused pair: one CONNECT_FAILED XXNET_E_AUTH,
/// its messages reported with XXNET_E_AUTH, no retry.
fn assert_refused(connector: &mut Node, acceptor: &mut Node, sent: u64) {
    let all_reported = |log: &[Ev]| {
        log.iter()
            .filter(|e| e.kind == XXNET_EVENT_SEND_FAILED)
            .map(|e| e.count)
            .sum::<u64>()
            == sent
    };
    assert!(
        connector.poll_until(T, all_reported),
        "connector:\n{}",
        dump_log(&connector.log)
    );
    // Give a retry time to show up (reconnect_min_ms is 20 ms): there must be none.
    connector.poll_for(Duration::from_millis(300));
    acceptor.poll_for(Duration::from_millis(50));
    let fails = kinds(connector, XXNET_EVENT_CONNECT_FAILED);
    assert_eq!(
        fails.len(),
        1,
        "one attempt, no retry:\n{}",
        dump_log(&connector.log)
    );
    assert_eq!(fails[0].code, XXNET_E_AUTH, "{}", fails[0]);
    for e in kinds(connector, XXNET_EVENT_SEND_FAILED) {
        assert_eq!(e.code, XXNET_E_AUTH, "{e}");
    }
    assert!(kinds(connector, XXNET_EVENT_CONNECTED).is_empty());
    assert_eq!(acceptor.count_msgs(), 0, "{}", dump_log(&acceptor.log));
    assert_eq!(connector.stats().connect_failures, 1);
}

#[test]
fn different_secrets_are_refused() {
    let mut a = node(Some(b"secret one"), Some("a"));
    let mut b = node(Some(b"secret two"), Some("b"));
    a.listen("127.0.0.1");
    let pb = b.listen("127.0.0.1");
    for i in 0..3 {
        a.send_ok("127.0.0.1", pb, 0, i, b"must not arrive");
    }
    assert_refused(&mut a, &mut b, 3);
    assert!(
        kinds(&b, XXNET_EVENT_CONNECTED).is_empty(),
        "{}",
        dump_log(&b.log)
    );
}

#[test]
fn a_secret_on_the_acceptor_only_refuses_the_connector() {
    let mut a = node(None, None);
    let mut b = node(Some(b"secret"), None);
    a.listen("127.0.0.1");
    let pb = b.listen("127.0.0.1");
    a.send_ok("127.0.0.1", pb, 0, 1, b"must not arrive");
    a.send_ok("127.0.0.1", pb, 1, 2, b"nor this");
    assert_refused(&mut a, &mut b, 2);
    assert!(
        kinds(&b, XXNET_EVENT_CONNECTED).is_empty(),
        "{}",
        dump_log(&b.log)
    );
}

#[test]
fn a_secret_on_the_connector_only_makes_it_refuse_the_acceptor() {
    let mut a = node(Some(b"secret"), None);
    let mut b = node(None, None);
    let pb = b.listen("127.0.0.1");
    a.send_ok("127.0.0.1", pb, 0, 1, b"must not arrive");
    assert_refused(&mut a, &mut b, 1);
}

/// A raw client without the secret: HELLO without a challenge is answered
/// with HELLO_ACK status 3 (authentication required), then the connection
/// closes; the host sees nothing.
#[test]
fn a_raw_client_without_the_secret_is_refused() {
    let mut b = node(Some(b"secret"), Some("b"));
    let pb = b.listen("127.0.0.1");
    let mut raw = Raw::connect(pb);
    let ack = raw.handshake();
    assert_eq!(ack.status, 3, "{ack:?}");
    assert!(
        raw.wait_closed(T).is_some(),
        "the refused connection closes"
    );
    b.poll_for(Duration::from_millis(50));
    assert!(
        kinds(&b, XXNET_EVENT_CONNECTED).is_empty(),
        "{}",
        dump_log(&b.log)
    );
    assert_eq!(b.stats().protocol_errors, 0);
}
