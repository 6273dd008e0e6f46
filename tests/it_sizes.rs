//! Message sizes around the fragment boundaries, with sender and receiver
//! using different fragment sizes (the receiver accepts any part size up to
//! the protocol's frame limit), on every lane.

mod common;

use common::*;
use xxnet::*;

fn round_trip_sizes(sender_fragment: u32, receiver_fragment: u32, sizes: &[usize]) {
    let mut cs = default_config();
    cs.fragment_size = sender_fragment;
    cs.max_message_size = 4 << 20;
    let mut cr = default_config();
    cr.fragment_size = receiver_fragment;
    cr.max_message_size = 4 << 20;
    let a = Node::with_config(&cs);
    let mut b = Node::with_config(&cr);
    let pb = b.listen("127.0.0.1");
    let mut sent = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let lane = (i % 4) as u32;
        let p = pattern(n, i as u32);
        a.send_ok("127.0.0.1", pb, lane, i as u32, &p);
        sent.push((lane, i as u32, p));
    }
    assert!(
        b.poll_until(WAIT, |log| count_msgs(log) >= sizes.len()),
        "fragments {sender_fragment}->{receiver_fragment}: {} of {} arrived:\n{}",
        count_msgs(&b.log),
        sizes.len(),
        dump_log(&b.log)
    );
    for lane in 0..4u32 {
        let want: Vec<&(u32, u32, Vec<u8>)> = sent.iter().filter(|s| s.0 == lane).collect();
        let got: Vec<&Ev> = b.messages().filter(|e| e.lane == lane).collect();
        assert_eq!(got.len(), want.len(), "lane {lane}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.msg_id, w.1, "lane {lane} order");
            assert!(
                g.payload == w.2,
                "payload of message {} ({} bytes, fragments {sender_fragment}->{receiver_fragment}) differs",
                w.1,
                w.2.len()
            );
        }
    }
    assert!(
        b.of_kind(XXNET_EVENT_DISCONNECTED).is_empty(),
        "{}",
        dump_log(&b.log)
    );
}

fn sizes_around(f: usize) -> Vec<usize> {
    vec![
        0,
        1,
        f - 5,
        f - 4,
        f - 1,
        f,
        f + 1,
        f + 4,
        2 * f - 1,
        2 * f,
        2 * f + 1,
        3 * f + 7,
    ]
}

#[test]
fn small_fragments() {
    round_trip_sizes(1024, 1024, &sizes_around(1024));
}

#[test]
fn largest_fragments() {
    round_trip_sizes(1 << 20, 1 << 20, &sizes_around(1 << 20));
}

#[test]
fn sender_fragments_larger_than_receivers() {
    round_trip_sizes(1 << 20, 1024, &sizes_around(1 << 20));
}

#[test]
fn sender_fragments_smaller_than_receivers() {
    round_trip_sizes(1024, 1 << 20, &sizes_around(1024));
}
