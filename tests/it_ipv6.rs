//! IPv6 loopback: listen on ::1, send to ::1, peers are shown as "::1".

mod common;

use common::*;
use xxnet::*;

fn ipv6_loopback_available() -> bool {
    match std::net::TcpListener::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping: cannot bind [::1]:0 on this machine: {e}");
            false
        }
    }
}

#[test]
fn send_over_ipv6_loopback() {
    if !ipv6_loopback_available() {
        return;
    }
    let mut a = Node::new();
    let mut b = Node::new();
    let pa = a.listen("::1");
    let pb = b.listen("::1");

    b.send_ok("::1", pa, 0, 5, b"over v6");
    assert!(
        a.poll_until(WAIT, |log| count_msgs(log) >= 1),
        "message over ::1:\n{}",
        dump_log(&a.log)
    );
    let m = a.messages().next().unwrap().clone();
    assert_eq!(m.payload, b"over v6");
    assert_eq!(m.msg_id, 5);
    assert_eq!(m.peer_ip, "::1", "peer_ip");
    assert_eq!(m.peer_port, pb, "peer_port is the sender's listen port");
    let c = a.of_kind(XXNET_EVENT_CONNECTED);
    assert_eq!(c.len(), 1, "one CONNECTED:\n{}", dump_log(&a.log));
    assert_eq!(
        (c[0].peer_ip.as_str(), c[0].peer_port, c[0].id),
        ("::1", pb, 0)
    );

    // The reply to the announced address travels over the same connection.
    a.send_ok(&m.peer_ip, m.peer_port, 0, 6, b"reply");
    assert!(
        b.poll_until(WAIT, |log| count_msgs(log) >= 1),
        "reply over ::1:\n{}",
        dump_log(&b.log)
    );
    let r = b.messages().next().unwrap();
    assert_eq!(
        (r.payload.as_slice(), r.peer_ip.as_str(), r.peer_port),
        (&b"reply"[..], "::1", pa)
    );
    assert_eq!(
        b.stats().accepted_connections,
        0,
        "reply reused the pooled connection"
    );
    assert_eq!(a.stats().accepted_connections, 1);

    // A sender that listens nowhere shows its socket address.
    let c = Node::new();
    c.send_ok("::1", pa, 0, 7, b"from a client");
    assert!(
        a.poll_until(WAIT, |log| count_msgs(log) >= 2),
        "client message"
    );
    let m = a.messages().nth(1).unwrap();
    assert_eq!(m.peer_ip, "::1");
    assert_ne!(m.peer_port, 0);
    assert_ne!(m.peer_port, pb);
}
