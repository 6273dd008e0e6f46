//! A node listening on a wildcard address announces the local IP of the
//! connection, or `advertise_ip` when configured (docs/PROTOCOL.md §3).

mod common;

use common::*;
use std::ffi::CString;
use xxnet::*;

/// `w` (listening on 0.0.0.0:`pw`) sends to `o`; `o` must see `want_ip`:`pw`,
/// and its reply to that address must reach `w` over the same connection.
fn check_announced(w: &mut Node, pw: u16, o: &mut Node, po: u16, want_ip: &str) {
    let before = count_msgs(&o.log);
    w.send_ok("127.0.0.1", po, 0, 1, b"from the wildcard node");
    assert!(
        o.poll_until(WAIT, |log| count_msgs(log) > before),
        "message arrived:\n{}",
        dump_log(&o.log)
    );
    let m = o.messages().nth(before).unwrap().clone();
    assert_eq!(m.payload, b"from the wildcard node");
    assert_eq!(m.peer_ip, want_ip, "peer_ip of the wildcard node");
    assert_eq!(
        m.peer_port, pw,
        "peer_port is the wildcard node's listen port"
    );
    let c = o
        .log
        .iter()
        .find(|e| e.kind == XXNET_EVENT_CONNECTED && e.conn == m.conn)
        .expect("CONNECTED before the message");
    assert_eq!(
        (c.peer_ip.as_str(), c.peer_port),
        (want_ip, pw),
        "CONNECTED peer"
    );

    o.send_ok(&m.peer_ip, m.peer_port, 0, 2, b"reply");
    assert!(
        w.poll_until(WAIT, |log| count_msgs(log) >= 1),
        "reply to the announced address arrived:\n{}",
        dump_log(&w.log)
    );
    let r = w.messages().next().unwrap();
    assert_eq!(r.payload, b"reply");
    assert_eq!(
        w.stats().accepted_connections,
        0,
        "the reply used the pooled connection"
    );
}

#[test]
fn wildcard_announces_connection_local_ip() {
    let mut w = Node::new();
    let mut o = Node::new();
    let pw = w.listen("0.0.0.0");
    let po = o.listen("127.0.0.1");
    check_announced(&mut w, pw, &mut o, po, "127.0.0.1");
}

#[test]
fn wildcard_announces_advertise_ip() {
    let adv = CString::new("127.0.0.2").unwrap();
    let mut cfg = default_config();
    cfg.advertise_ip = adv.as_ptr();
    let mut w = Node::with_config(&cfg);
    drop(adv); // read only during xxnet_new
    let mut o = Node::new();
    let pw = w.listen("0.0.0.0");
    let po = o.listen("127.0.0.1");
    check_announced(&mut w, pw, &mut o, po, "127.0.0.2");
}

#[test]
fn bad_advertise_ip_is_refused() {
    let adv = CString::new("localhost").unwrap();
    let mut cfg = default_config();
    cfg.advertise_ip = adv.as_ptr();
    let ctx = xxnet::ffi::context::xxnet_new(&cfg);
    assert!(ctx.is_null(), "a non-numeric advertise_ip must be refused");
}
