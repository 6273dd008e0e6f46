//! No fd or thread leak: contexts that listened, connected and exchanged
//! traffic give back every file descriptor and thread when freed.
//!
//! Alone in its test binary: other tests would open fds and threads meanwhile.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// One cycle: two contexts, listeners, traffic both ways (lanes 0 and 1,
/// small and multi-part messages), a closed raw socket, then free.
fn cycle() {
    // Give up reconnecting quickly so the dead port below is reported fast.
    let mut cfg = default_config();
    cfg.reconnect_min_ms = 20;
    cfg.reconnect_max_ms = 80;
    cfg.reconnect_give_up_ms = 300;
    let mut a = Node::with_config(&cfg);
    let mut b = Node::new();
    let pa = a.listen("127.0.0.1");
    let pb = b.listen("127.0.0.1");
    let big = pattern(200_000, 1);
    for i in 0..100u32 {
        a.send_ok(
            "127.0.0.1",
            pb,
            i % 2,
            i,
            if i % 10 == 0 { &big } else { b"x" },
        );
    }
    assert!(
        b.poll_until(WAIT, |log| count_msgs(log) >= 100),
        "A→B traffic"
    );
    for i in 0..100u32 {
        b.send_ok("127.0.0.1", pa, i % 2, i, b"y");
    }
    assert!(
        a.poll_until(WAIT, |log| count_msgs(log) >= 100),
        "B→A traffic"
    );
    // A stranger connects and is thrown out.
    let mut raw = Raw::connect(pa);
    raw.write(b"nope");
    assert!(
        raw.wait_closed(Duration::from_secs(2)).is_some(),
        "stranger closed"
    );
    drop(raw);
    // A failed connect (nothing listens on that port).
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    a.send_ok("127.0.0.1", dead, 0, 0, b"lost");
    assert!(
        a.poll_until(WAIT, |log| log
            .iter()
            .any(|e| e.kind == xxnet::XXNET_EVENT_SEND_FAILED)),
        "SEND_FAILED for the dead port:\n{}",
        dump_log(&a.log)
    );
    a.free();
    b.free();
}

/// Reads (fds, threads) until they come back to `want` or 500 ms pass.
fn settle(want: (usize, usize)) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        let now = (fd_count(), thread_count());
        if now == want || Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn no_fd_or_thread_leak() {
    let initial = (fd_count(), thread_count());
    // Warm-up: one-time process-wide initialisation is not a leak.
    cycle();
    let baseline = settle(initial);
    eprintln!("fds/threads: initial {initial:?}, after a warm-up cycle {baseline:?}");
    for _ in 0..3 {
        cycle();
    }
    let after = settle(baseline);
    eprintln!("fds/threads after 3 more cycles: {after:?}");
    assert_eq!(after.0, baseline.0, "file descriptors leaked");
    assert_eq!(after.1, baseline.1, "threads leaked");
    assert_eq!(baseline, initial, "the first cycle leaked (fds, threads)");
}
