//! A node that sends to its own listen address (a cluster routing table may
//! well contain the node itself). Whatever the library decides (deliver
//! through the loopback connection, or refuse), messages must not vanish:
//! each is delivered or reported in a SEND_FAILED event.

mod common;

use common::*;
use std::time::Duration;
use xxnet::*;

fn self_send(listen_ip: &str) {
    let mut a = Node::new();
    let pa = a.listen(listen_ip);
    for i in 0..5u32 {
        a.send_ok("127.0.0.1", pa, 0, i, b"to myself");
    }
    let settled = a.poll_until(Duration::from_secs(3), |log| {
        let delivered = count_msgs(log) as u64;
        let failed: u64 = log
            .iter()
            .filter(|e| e.kind == XXNET_EVENT_SEND_FAILED)
            .map(|e| e.count)
            .sum();
        delivered + failed >= 5
    });
    a.poll_for(Duration::from_millis(50));
    let s = a.stats();
    eprintln!(
        "self-send via {listen_ip}: delivered {}, reported failed {}; stats {s:?}\n{}",
        a.count_msgs(),
        s.send_failed_msgs,
        dump_log(&a.log)
    );
    assert!(
        settled,
        "messages sent to the node's own listen address were neither delivered nor reported \
         (msgs_out {}, msgs_in {}, send_failed_msgs {}):\n{}",
        s.msgs_out,
        s.msgs_in,
        s.send_failed_msgs,
        dump_log(&a.log)
    );
    let ids: Vec<u32> = a.messages().map(|e| e.msg_id).collect();
    assert!(
        ids.iter().enumerate().all(|(i, &id)| id == i as u32),
        "in order: {ids:?}"
    );
}

#[test]
fn send_to_own_address_is_not_silently_lost() {
    self_send("127.0.0.1");
}

#[test]
fn send_to_own_wildcard_listener_is_not_silently_lost() {
    self_send("0.0.0.0");
}
