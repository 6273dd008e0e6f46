//! Session introspection with xxnet_conn_info: the state follows the
//! session through an outage (CONNECTED → RECONNECTING → CONNECTED, the same
//! conn id throughout); queued/unacknowledged messages and the age of the
//! oldest unacknowledged one grow while the peer is unreachable and return
//! to 0 after; unknown ids and NULL pointers are refused.
//!
//! The outage is made by a TCP proxy (tests/common `Proxy`) between A and B:
//! first it black-holes A's bytes (they are sent but never acknowledged),
//! then it cuts the connection and closes its port (reconnects are refused),
//! then it listens again on the same port.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::Duration;
use xxnet::ffi::context::*;
use xxnet::ffi::types::xxnet_peer_info;
use xxnet::*;

const SIZE: usize = 1000;

fn send_n(a: &Node, port: u16, next: &mut u32, n: u32) {
    for _ in 0..n {
        a.send_ok("127.0.0.1", port, 0, *next, &tagged_payload(0, *next, SIZE));
        *next += 1;
    }
}

fn show(i: &xxnet_peer_info) -> String {
    format!(
        "{} attempts {} queued {}/{} B unacked {}/{} B oldest_unacked {} ms peer {}:{}",
        state_name(i.state),
        i.attempts,
        i.queued_msgs,
        i.queued_bytes,
        i.unacked_msgs,
        i.unacked_bytes,
        i.oldest_unacked_ms,
        info_ip(i),
        i.peer_port
    )
}

#[test]
fn conn_info_follows_a_session_through_an_outage() {
    let mut b = Node::new();
    let pb = b.listen("127.0.0.1");
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], pb)));
    let pp = proxy.port();
    let mut cfg = default_config();
    cfg.reconnect_min_ms = 20;
    cfg.reconnect_max_ms = 100;
    cfg.reconnect_give_up_ms = 30_000;
    let mut a = Node::with_config(&cfg);
    let mut next = 0u32;

    // Connected and idle: nothing held.
    send_n(&a, pp, &mut next, 10);
    assert!(a.poll_until(WAIT, |log| log
        .iter()
        .any(|e| e.kind == XXNET_EVENT_CONNECTED)));
    let conn = a.first_conn().unwrap();
    let i = a
        .info_until(conn, WAIT, |i| i.unacked_msgs == 0 && i.queued_msgs == 0)
        .expect("conn_info");
    eprintln!("connected: {}", show(&i));
    assert_eq!(i.state, XXNET_PEER_CONNECTED);
    assert_eq!(
        (
            i.queued_msgs,
            i.queued_bytes,
            i.unacked_msgs,
            i.unacked_bytes
        ),
        (0, 0, 0, 0)
    );
    assert_eq!((i.oldest_unacked_ms, i.attempts), (0, 0));
    // The peer as B announced itself (its listen address), not the proxy.
    assert_eq!((info_ip(&i).as_str(), i.peer_port), ("127.0.0.1", pb));

    // Black hole: sent, never acknowledged.
    proxy.set_blackhole(true);
    send_n(&a, pp, &mut next, 20);
    let i = a
        .info_until(conn, WAIT, |i| {
            i.unacked_msgs == 20 && i.oldest_unacked_ms >= 200
        })
        .expect("conn_info");
    eprintln!("black hole: {}", show(&i));
    assert_eq!(i.state, XXNET_PEER_CONNECTED);
    assert_eq!(
        (i.queued_msgs, i.unacked_msgs, i.unacked_bytes),
        (0, 20, 20 * SIZE as u64)
    );
    let age1 = i.oldest_unacked_ms;
    a.poll_for(Duration::from_millis(200));
    let age2 = a.conn_info(conn).unwrap().oldest_unacked_ms;
    assert!(
        age2 >= age1 + 150,
        "the oldest unacknowledged message ages: {age1} ms then {age2} ms"
    );

    // Outage: cut (reset) and refuse; more messages queue up.
    proxy.pause(true);
    let i = a
        .info_until(conn, WAIT, |i| i.state == XXNET_PEER_RECONNECTING)
        .expect("conn_info");
    assert_eq!(
        i.state,
        XXNET_PEER_RECONNECTING,
        "after the cut: {}",
        show(&i)
    );
    send_n(&a, pp, &mut next, 30);
    let i = a
        .info_until(conn, WAIT, |i| i.attempts >= 2 && i.queued_msgs == 30)
        .expect("conn_info");
    eprintln!("outage: {}", show(&i));
    assert_eq!(i.state, XXNET_PEER_RECONNECTING);
    assert_eq!(
        (i.queued_msgs, i.queued_bytes),
        (30, 30 * SIZE as u64),
        "{}",
        show(&i)
    );
    assert_eq!(
        (i.unacked_msgs, i.unacked_bytes),
        (20, 20 * SIZE as u64),
        "{}",
        show(&i)
    );
    assert!(i.attempts >= 2, "{}", show(&i));
    assert!(i.oldest_unacked_ms > age2, "{}", show(&i));
    let refused = a
        .log
        .iter()
        .filter(|e| e.kind == XXNET_EVENT_CONNECT_FAILED)
        .count();
    assert!(refused >= 2, "reconnect attempts are refused");
    assert!(a
        .log
        .iter()
        .any(|e| e.kind == XXNET_EVENT_LINK_DOWN && e.conn == conn));

    // The proxy comes back: same conn, CONNECTED, nothing held.
    proxy.set_blackhole(false);
    proxy.resume();
    let i = a
        .info_until(conn, WAIT, |i| {
            i.state == XXNET_PEER_CONNECTED && i.queued_msgs == 0 && i.unacked_msgs == 0
        })
        .expect("conn_info");
    eprintln!("recovered: {}", show(&i));
    assert_eq!(i.state, XXNET_PEER_CONNECTED, "{}", show(&i));
    assert_eq!(
        (
            i.queued_msgs,
            i.queued_bytes,
            i.unacked_msgs,
            i.unacked_bytes
        ),
        (0, 0, 0, 0),
        "{}",
        show(&i)
    );
    assert_eq!((i.oldest_unacked_ms, i.attempts), (0, 0), "{}", show(&i));
    let up = a.of_kind(XXNET_EVENT_LINK_UP);
    assert_eq!(up.len(), 1, "{}", dump_events(&a.log, 30));
    assert_eq!(
        (up[0].conn, up[0].count),
        (conn, 20),
        "the 20 black-holed messages were resent"
    );
    assert!(b.poll_until(WAIT, |log| count_msgs(log) >= next as usize));
    b.poll_for(Duration::from_millis(50));
    let ids: Vec<u32> = b.messages().map(|e| e.msg_id).collect();
    assert_eq!(
        ids,
        (0..next).collect::<Vec<_>>(),
        "B got each message once, in order"
    );

    // Closed: the id is unknown from DISCONNECTED on.
    assert_eq!(xxnet_close(a.ctx, conn), XXNET_OK);
    assert!(a.poll_until(WAIT, |log| log
        .iter()
        .any(|e| e.kind == XXNET_EVENT_DISCONNECTED && e.conn == conn)));
    assert_eq!(a.conn_info(conn).map(|_| ()), Err(XXNET_E_UNKNOWN_CONN));
}

#[test]
fn conn_info_refuses_unknown_ids_and_null_pointers() {
    let mut a = Node::new();
    let mut b = Node::new();
    let pb = b.listen("127.0.0.1");
    assert_eq!(a.conn_info(0).map(|_| ()), Err(XXNET_E_UNKNOWN_CONN));
    assert_eq!(
        a.conn_info(1).map(|_| ()),
        Err(XXNET_E_UNKNOWN_CONN),
        "never issued"
    );
    a.send_ok("127.0.0.1", pb, 0, 0, b"x");
    assert!(a.poll_until(WAIT, |log| log
        .iter()
        .any(|e| e.kind == XXNET_EVENT_CONNECTED)));
    let conn = a.first_conn().unwrap();
    assert!(a.conn_info(conn).is_ok());
    assert_eq!(
        a.conn_info(conn + 1000).map(|_| ()),
        Err(XXNET_E_UNKNOWN_CONN)
    );
    assert_eq!(a.conn_info(u64::MAX).map(|_| ()), Err(XXNET_E_UNKNOWN_CONN));
    assert!(b.poll_until(WAIT, |log| log
        .iter()
        .any(|e| e.kind == XXNET_EVENT_CONNECTED)));
    let mut info = std::mem::MaybeUninit::<xxnet_peer_info>::zeroed();
    assert_eq!(
        xxnet_conn_info(std::ptr::null_mut(), conn, info.as_mut_ptr()),
        XXNET_E_NULL_POINTER
    );
    assert_eq!(
        xxnet_conn_info(a.ctx, conn, std::ptr::null_mut()),
        XXNET_E_NULL_POINTER
    );
    // The peer's side: B sees A as a client (A listens nowhere).
    let bconn = b.first_conn().unwrap();
    let i = b.conn_info(bconn).expect("B's conn_info");
    assert_eq!(i.state, XXNET_PEER_CONNECTED);
    assert_eq!(info_ip(&i), "127.0.0.1");
    assert_ne!(i.peer_port, 0, "a client's socket port");
}
