//! Main-thread timers through the C ABI with 100 000 live timers: the cost of
//! starting, stopping and firing one (`cargo bench --bench timers`).

use std::time::{Duration, Instant};
use xxnet::ffi::context::*;
use xxnet::ffi::types::xxnet_event;
use xxnet::*;

const LIVE: usize = 100_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::var_os("XXNET_BENCH_QUICK").is_some();
    let rounds = if quick { 1 } else { 5 };
    let mut start_ns = Vec::new();
    let mut stop_ns = Vec::new();
    let mut fire_ns = Vec::new();
    let mut idle_poll_ns = Vec::new();
    for _ in 0..rounds {
        let ctx = xxnet_new(std::ptr::null());
        assert!(!ctx.is_null());
        // 100k live timers far in the future.
        let mut ids = vec![0u64; LIVE];
        let t = Instant::now();
        for (i, id) in ids.iter_mut().enumerate() {
            assert_eq!(
                xxnet_timer_start(ctx, 3_600_000 + i as u32, 0, i as u64, id),
                XXNET_OK
            );
        }
        start_ns.push(t.elapsed().as_nanos() as f64 / LIVE as f64);
        // A poll with nothing due costs little despite 100k timers.
        let mut evs = vec![unsafe { std::mem::zeroed::<xxnet_event>() }; 1024];
        let t = Instant::now();
        for _ in 0..10_000 {
            xxnet_poll_recv(ctx, evs.as_mut_ptr(), evs.len(), 0);
        }
        idle_poll_ns.push(t.elapsed().as_nanos() as f64 / 10_000.0);
        // Stop half of them.
        let t = Instant::now();
        for id in ids.iter().step_by(2) {
            assert_eq!(xxnet_timer_stop(ctx, *id), XXNET_OK);
        }
        stop_ns.push(t.elapsed().as_nanos() as f64 / (LIVE / 2) as f64);
        // 100k timers due at once (with 50k live far ones around): fire them all.
        for i in 0..LIVE {
            let mut id = 0;
            assert_eq!(xxnet_timer_start(ctx, 0, 0, i as u64, &mut id), XXNET_OK);
        }
        std::thread::sleep(Duration::from_millis(2));
        let t = Instant::now();
        let mut fired = 0;
        while fired < LIVE {
            let n = xxnet_poll_recv(ctx, evs.as_mut_ptr(), evs.len(), 0);
            fired += evs[..n]
                .iter()
                .filter(|e| e.kind == XXNET_EVENT_TIMER)
                .count();
            assert!(t.elapsed() < Duration::from_secs(30), "timers did not fire");
        }
        fire_ns.push(t.elapsed().as_nanos() as f64 / LIVE as f64);
        xxnet_free(ctx);
    }
    println!("xxnet timers through the C ABI, {LIVE} live timers, median of {rounds} rounds");
    println!("  start:            {:7.0} ns per timer", median(start_ns));
    println!("  stop:             {:7.0} ns per timer", median(stop_ns));
    println!("  fire (as events): {:7.0} ns per timer", median(fire_ns));
    println!(
        "  idle poll:        {:7.0} ns per xxnet_poll_recv(timeout 0)",
        median(idle_poll_ns)
    );
}
