//! Deterministic simulation of sessions across connection faults
//! (docs/PROTOCOL.md §5 and §6): random cuts, lost bytes, tiny reads,
//! partial writes, reconnects and simultaneous connects, on a virtual clock.
//! The harness is `tests/sim/mod.rs`.

mod sim;

use sim::*;
use std::time::Duration;
use xxnet::codes::*;

/// Property 1: every node listens (either side redials); random cuts of
/// every kind; thousands of messages on four lanes in every direction.
#[test]
fn cuts_with_both_sides_listening_deliver_everything_once_in_order() {
    let fig = for_seeds("both listen, random cuts", 0..200, |seed, fig| {
        let mut sim = Sim::new(seed, NetParams::default());
        let n = if seed % 4 == 3 { 3 } else { 2 };
        for _ in 0..n {
            sim.add_node(sim_config(), true);
        }
        let mut t = Traffic::new(all_pairs(n), 300, Duration::from_millis(1500));
        t.cut_every_ms = Some((10, 120));
        sim.drive(&t);
        let settled = sim.settle(Duration::from_secs(120));
        fig.add(&sim);
        strict(&sim, settled)
    });
    assert!(fig.cuts > 1000, "too few cuts to mean anything");
    // Messages written again over a new connection after a cut. (The
    // handshake's session block credits what the peer delivered, so the
    // receiver rarely sees a repeat: `duplicates` stays near 0 by design.)
    assert!(fig.resent > 1000, "too few resends to mean anything");
}

/// Property 2: a client that listens nowhere; only it can reconnect. The
/// server answers by conn id.
#[test]
fn cuts_with_a_client_that_listens_nowhere() {
    let fig = for_seeds(
        "client listens nowhere, random cuts",
        0..200,
        |seed, fig| {
            let mut sim = Sim::new(seed, NetParams::default());
            let server = sim.add_node(sim_config(), true);
            let client = sim.add_node(sim_config(), false);
            // The client speaks first, so the server learns its conn id.
            sim.send(client, server, 0, 16, None);
            let mut t = Traffic::new(
                vec![(client, server), (server, client)],
                300,
                Duration::from_millis(1500),
            );
            t.cut_every_ms = Some((10, 120));
            sim.drive(&t);
            let settled = sim.settle(Duration::from_secs(120));
            fig.add(&sim);
            strict(&sim, settled)?;
            check(sim.nodes[server].count(XXNET_EVENT_CONNECTED) == 1, || {
                format!("server saw more than one session{}", dumps(&sim))
            })
        },
    );
    assert!(fig.cuts > 1000);
    assert!(fig.duplicates > 0 || fig.resent > 0);
}

/// Property 3: need-ack messages with deadlines short enough to expire
/// during outages. Each gets exactly one DELIVERED or EXPIRED; DELIVERED
/// ones were delivered; EXPIRED_UNSENT ones never are; everything else
/// arrives exactly once, in order.
#[test]
fn need_ack_messages_resolve_exactly_once_across_cuts() {
    let mut expired_unsent = 0;
    let mut ack_timeout = 0;
    let mut delivered_ev = 0;
    let fig = for_seeds(
        "need-ack with deadlines, random cuts",
        0..200,
        |seed, fig| {
            let mut sim = Sim::new(seed, NetParams::default());
            let n = 2;
            for _ in 0..n {
                sim.add_node(sim_config(), true);
            }
            let mut t = Traffic::new(all_pairs(n), 300, Duration::from_millis(1500));
            t.cut_every_ms = Some((20, 150));
            t.track_pct = 60;
            t.deadline_ms = Some((5, 300));
            sim.drive(&t);
            // Settled: every tracked message has its fate, every message that
            // can still arrive arrived, nothing is held.
            let done = |s: &Sim| {
                s.backlog() == (0, 0)
                    && s.ledger.all().all(|(_, m)| {
                        (m.track == 0 || m.fate.is_some())
                            && (!m.deliveries.is_empty()
                                || m.fate == Some((XXNET_EVENT_EXPIRED, XXNET_E_EXPIRED_UNSENT)))
                    })
            };
            let settled = sim.run_until_pred(Duration::from_secs(120), done);
            fig.add(&sim);
            violations(&sim)?;
            check(settled, || {
                let stuck: Vec<String> = sim
                    .ledger
                    .all()
                    .filter(|(_, m)| {
                        (m.track != 0 && m.fate.is_none())
                            || (m.deliveries.is_empty()
                                && m.fate != Some((XXNET_EVENT_EXPIRED, XXNET_E_EXPIRED_UNSENT)))
                    })
                    .take(10)
                    .map(|(k, m)| {
                        format!(
                            "{k:?} seq {} track {} fate {:?} deliveries {}",
                            m.seq,
                            m.track,
                            m.fate,
                            m.deliveries.len()
                        )
                    })
                    .collect();
                format!(
                    "not settled (backlog {:?}): {stuck:?}{}",
                    sim.backlog(),
                    dumps(&sim)
                )
            })?;
            for (k, m) in sim.ledger.all() {
                check(m.deliveries.len() <= 1, || {
                    format!("{k:?} seq {} delivered twice", m.seq)
                })?;
                match m.fate {
                    Some((XXNET_EVENT_DELIVERED, _)) => delivered_ev += 1,
                    Some((XXNET_EVENT_EXPIRED, XXNET_E_EXPIRED_UNSENT)) => {
                        expired_unsent += 1;
                        check(m.deliveries.is_empty(), || {
                            format!("{k:?} seq {}: EXPIRED_UNSENT but delivered", m.seq)
                        })?;
                    }
                    Some((XXNET_EVENT_EXPIRED, XXNET_E_ACK_TIMEOUT)) => ack_timeout += 1,
                    Some((kind, code)) => {
                        return Err(format!(
                            "{k:?} seq {}: unexpected fate {} {}",
                            m.seq,
                            kind_name(kind),
                            describe(code)
                        ))
                    }
                    None => check(m.track == 0, || format!("{k:?} seq {}: no fate", m.seq))?,
                }
            }
            for (i, node) in sim.nodes.iter().enumerate() {
                for kind in [XXNET_EVENT_SEND_FAILED, XXNET_EVENT_DISCONNECTED] {
                    check(node.count(kind) == 0, || {
                        format!("node {i} reported {}{}", kind_name(kind), dumps(&sim))
                    })?;
                }
                let (_, held) = node.ep.backlog();
                check(node.charged - node.released == held, || {
                    format!(
                        "node {i}: charged {} released {} held {held}",
                        node.charged, node.released
                    )
                })?;
            }
            Ok(())
        },
    );
    eprintln!(
        "[sim] need-ack fates: DELIVERED {delivered_ev}, EXPIRED unsent {expired_unsent}, EXPIRED ack-timeout {ack_timeout}"
    );
    assert!(fig.msgs > 0);
    assert!(
        expired_unsent > 0,
        "no deadline expired unsent: deadlines too long"
    );
    assert!(ack_timeout > 0, "no deadline expired after sending");
}

/// Property 1 with huge messages among small ones: parts of several
/// messages interleave on the wire, a cut often falls inside a message that
/// is only partly encoded, and the resend starts it over.
#[test]
fn huge_messages_across_cuts_arrive_whole_once_in_order() {
    let fig = for_seeds("huge messages, random cuts", 0..50, |seed, fig| {
        // 1-byte reads of megabytes are slow to simulate: fewer tiny readers.
        let net = NetParams {
            tiny_read_pct: 10,
            ..NetParams::default()
        };
        let mut sim = Sim::new(seed, net);
        for _ in 0..2 {
            sim.add_node(sim_config(), true);
        }
        let mut t = Traffic::new(all_pairs(2), 60, Duration::from_millis(600));
        t.huge_pct = 15;
        t.big_pct = 20;
        t.cut_every_ms = Some((5, 80));
        sim.drive(&t);
        let settled = sim.settle(Duration::from_secs(120));
        fig.add(&sim);
        strict(&sim, settled)
    });
    assert!(fig.resent > 0);
}

/// Property 7: both nodes send to each other at t=0 (each dials the
/// other): one connection survives per pair, nothing is lost.
#[test]
fn simultaneous_connect_keeps_one_link_and_loses_nothing() {
    for_seeds("simultaneous connect", 0..300, |seed, fig| {
        let net = NetParams {
            connect_ms: (0, 6),
            ..NetParams::default()
        };
        let mut sim = Sim::new(seed, net);
        let a = sim.add_node(sim_config(), true);
        let b = sim.add_node(sim_config(), true);
        let k = 1 + (seed % 20) as usize;
        for i in 0..k {
            sim.send(a, b, (i % 4) as u8, 16 + i, None);
            sim.send(b, a, (i % 4) as u8, 16 + i, None);
        }
        sim.run_for(Duration::from_millis(50));
        let mut t = Traffic::new(all_pairs(2), 50, Duration::from_millis(100));
        t.big_pct = 10;
        sim.drive(&t);
        let settled = sim.settle(Duration::from_secs(10));
        fig.add(&sim);
        strict(&sim, settled)?;
        for n in [a, b] {
            let node = &sim.nodes[n];
            check(node.ep.link_count() == 1, || {
                format!("node {n} has {} links{}", node.ep.link_count(), dumps(&sim))
            })?;
            check(node.count(XXNET_EVENT_CONNECTED) == 1, || {
                format!("node {n}: CONNECTED not exactly once{}", dumps(&sim))
            })?;
            check(
                node.count(XXNET_EVENT_LINK_DOWN) == 0 && node.count(XXNET_EVENT_LINK_UP) == 0,
                || format!("node {n}: the established link changed{}", dumps(&sim)),
            )?;
        }
        check(sim.connections().len() == 1, || {
            format!("{} connections survive", sim.connections().len())
        })
    });
}

/// The same seed replays the same run, event for event.
#[test]
fn a_seed_replays_exactly() {
    let run = |seed| {
        let mut sim = Sim::new(seed, NetParams::default());
        for _ in 0..3 {
            sim.add_node(sim_config(), true);
        }
        let mut t = Traffic::new(all_pairs(3), 200, Duration::from_millis(800));
        t.cut_every_ms = Some((10, 80));
        t.track_pct = 30;
        t.deadline_ms = Some((5, 200));
        sim.drive(&t);
        sim.run_for(Duration::from_secs(5));
        let mut trace = Vec::new();
        for n in &sim.nodes {
            for l in &n.log {
                trace.push(format!(
                    "{:?} {} {} {} {} {}",
                    l.at, l.ev.kind, l.ev.code, l.ev.conn, l.ev.id, l.ev.count
                ));
            }
        }
        let deliveries: Vec<_> = sim
            .ledger
            .all()
            .map(|(_, m)| m.deliveries.clone())
            .collect();
        (trace, deliveries, sim.stats.steps)
    };
    for seed in [1, 7, 42] {
        assert!(run(seed) == run(seed), "seed {seed} is not deterministic");
    }
}

/// Property 1 under a rougher mix: cuts, partitions that last a while (so
/// reconnect attempts time out and back off), and short stalls of a node
/// (shorter than the idle timeout), with three nodes half of the time.
#[test]
fn partitions_stalls_and_cuts_lose_nothing() {
    let fig = for_seeds("partitions, stalls and cuts", 0..150, |seed, fig| {
        let mut sim = Sim::new(seed, NetParams::default());
        let n = 2 + (seed % 2) as usize;
        for i in 0..n {
            // One node in three is a client when there are three.
            sim.add_node(sim_config(), !(n == 3 && i == 2));
        }
        let idle = sim_config().idle_timeout_ms;
        let pairs = all_pairs(n);
        if n == 3 {
            // The client speaks first: the servers answer by conn id.
            sim.send(2, 0, 0, 16, None);
            sim.send(2, 1, 0, 16, None);
        }
        let end = sim.now + Duration::from_millis(2000);
        let mut healed: Vec<(std::time::Instant, usize, usize)> = Vec::new();
        let mut thaw: Option<(std::time::Instant, usize)> = None;
        while sim.now < end {
            let gap = sim.rng.ms(1, 30);
            sim.run_for(gap);
            let now = sim.now;
            for &(_, a, b) in healed.iter().filter(|(t, _, _)| *t <= now) {
                sim.heal(a, b);
            }
            healed.retain(|(t, _, _)| *t > now);
            if let Some((_, x)) = thaw.filter(|(t, _)| *t <= now) {
                sim.thaw(x);
                thaw = None;
            }
            match sim.rng.below(100) {
                0..=7 => {
                    sim.cut_random();
                }
                8..=9 if healed.is_empty() => {
                    let a = sim.rng.usize(0, n - 1);
                    let b = (a + sim.rng.usize(1, n - 1)) % n;
                    let cut = Cut::random(&mut sim.rng);
                    sim.partition(a, b, cut);
                    let until = now + sim.rng.ms(20, 600);
                    healed.push((until, a, b));
                }
                10..=11 if thaw.is_none() => {
                    let x = sim.rng.usize(0, n - 1);
                    sim.freeze(x);
                    thaw = Some((now + sim.rng.ms(1, idle / 2), x));
                }
                _ => {}
            }
            for _ in 0..sim.rng.usize(0, 6) {
                let (src, dst) = pairs[sim.rng.below(pairs.len() as u64) as usize];
                let lane = sim.rng.below(4) as u8;
                let len = sim.random_len(5);
                sim.send(src, dst, lane, len, None);
            }
        }
        for (_, a, b) in healed {
            sim.heal(a, b);
        }
        if let Some((_, x)) = thaw {
            sim.thaw(x);
        }
        let settled = sim.settle(Duration::from_secs(120));
        fig.add(&sim);
        strict(&sim, settled)
    });
    assert!(fig.cuts > 500);
}
