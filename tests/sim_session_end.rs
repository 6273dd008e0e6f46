//! Deterministic simulation of a session that one side ends while the other
//! cannot hear it (docs/PROTOCOL.md §2 "truncated", §5 "Ending on purpose",
//! "Handshake sync"): a connection that ends mid-frame, a give-up on one
//! side only, and `close_conn` while the link is down. The harness is
//! `tests/sim/mod.rs`.

mod sim;

use sim::*;
use std::time::Duration;
use xxnet::codes::*;

/// Property 1 with cuts that end in EOF instead of a reset: a FIN after a
/// partial frame, as a peer produces when it closes a link whose socket
/// buffer holds the front of a frame (its idle timeout, a replaced
/// connection). The session must survive like it survives a reset: the
/// partial frame was never delivered, the handshake sync resends it.
#[test]
fn eof_in_the_middle_of_a_frame_does_not_end_the_session() {
    for_seeds("cuts ending in EOF", 0..200, |seed, fig| {
        let mut sim = Sim::new(seed, NetParams::default());
        for _ in 0..2 {
            sim.add_node(sim_config(), true);
        }
        let end = sim.now + Duration::from_millis(1500);
        while sim.now < end {
            let gap = sim.rng.ms(5, 60);
            sim.run_for(gap);
            let conns = sim.connections();
            if let Some(&(c, _, _)) = conns.first() {
                if sim.rng.chance(40) {
                    let d0 = sim.rng.ms(0, 5);
                    let d1 = sim.rng.ms(0, 5);
                    sim.cut(
                        c,
                        Cut {
                            keep_arrived: true,
                            notice: [Notice::Eof(d0), Notice::Eof(d1)],
                        },
                    );
                }
            }
            for _ in 0..sim.rng.usize(1, 10) {
                let (src, dst) = if sim.rng.chance(50) { (0, 1) } else { (1, 0) };
                let lane = sim.rng.below(4) as u8;
                let len = sim.random_len(30);
                sim.send(src, dst, lane, len, None);
            }
        }
        let settled = sim.settle(Duration::from_secs(60));
        fig.add(&sim);
        strict(&sim, settled)
    });
}

/// One side gives up on the session (a shorter reconnect_give_up_ms, or it
/// noticed the outage earlier) and reports what it held; the network heals
/// and the other side, still holding its session, reconnects. Its resends
/// must not be taken for a protocol error (a gap in the new numbering),
/// every message is delivered at most once or reported, and new messages
/// flow afterwards.
#[test]
fn a_session_only_one_side_gave_up_on_resyncs_without_protocol_errors() {
    for_seeds("one-sided give-up", 0..100, |seed, fig| {
        let mut sim = Sim::new(seed, NetParams::default());
        let mut quick = sim_config();
        quick.reconnect_give_up_ms = 300;
        let a = sim.add_node(quick, true);
        let b = sim.add_node(sim_config(), true);
        let t = Traffic::new(all_pairs(2), 100, Duration::from_millis(200));
        sim.drive(&t);
        let keep = sim.rng.chance(50);
        sim.partition(
            a,
            b,
            Cut {
                keep_arrived: keep,
                notice: [Notice::Reset(Duration::ZERO); 2],
            },
        );
        // Both keep sending during the outage.
        let t = Traffic::new(all_pairs(2), 20, Duration::from_millis(100));
        sim.drive(&t);
        let gave_up = sim.run_until_pred(Duration::from_secs(5), |s| {
            s.nodes[a].count(XXNET_EVENT_DISCONNECTED) > 0
        });
        check(gave_up, || format!("A never gave up{}", dumps(&sim)))?;
        sim.heal(a, b);
        sim.run_for(Duration::from_secs(1));
        // Afterwards, a fresh batch both ways arrives exactly once.
        sim.ledger.phase = 1;
        let t = Traffic::new(all_pairs(2), 60, Duration::from_millis(100));
        sim.drive(&t);
        let settled = sim.run_until_pred(Duration::from_secs(30), |s| {
            s.backlog() == (0, 0)
                && s.ledger
                    .all()
                    .filter(|(_, m)| m.phase == 1)
                    .all(|(_, m)| !m.deliveries.is_empty())
        });
        fig.add(&sim);
        violations(&sim)?;
        for n in [a, b] {
            let errs = sim.nodes[n].counters().protocol_errors;
            check(errs == 0, || {
                format!(
                    "node {n}: {errs} protocol error(s) after the resync{}",
                    dumps(&sim)
                )
            })?;
        }
        check(settled, || {
            format!("the fresh batch did not get through{}", dumps(&sim))
        })?;
        for (k, m) in sim.ledger.all() {
            if m.phase == 1 {
                check(m.deliveries.len() == 1, || {
                    format!(
                        "{k:?} seq {} delivered {} times{}",
                        m.seq,
                        m.deliveries.len(),
                        dumps(&sim)
                    )
                })?;
            }
        }
        Ok(())
    });
}

/// The host closes a session whose link is down: no GOAWAY can be sent.
/// When the peer reconnects it must learn that the session ended (and end
/// its side with XXNET_E_PEER_CLOSED), not resume its numbering into a new
/// session and be cut off for a sequence gap.
#[test]
fn closing_a_session_while_its_link_is_down_ends_it_on_the_peer_too() {
    for_seeds("close_conn while down", 0..100, |seed, fig| {
        let mut sim = Sim::new(seed, NetParams::default());
        let a = sim.add_node(sim_config(), true);
        let b = sim.add_node(sim_config(), true);
        let t = Traffic::new(all_pairs(2), 100, Duration::from_millis(200));
        sim.drive(&t);
        let conn = *sim.nodes[a].conn_to.get(&b).ok_or("A never connected")?;
        let conn_b = *sim.nodes[b].conn_to.get(&a).ok_or("B never connected")?;
        let (c, _, _) = *sim.connections().first().ok_or("no connection")?;
        sim.cut(
            c,
            Cut {
                keep_arrived: false,
                notice: [Notice::Reset(Duration::ZERO); 2],
            },
        );
        sim.run_for(Duration::from_millis(1));
        sim.close_conn(a, conn);
        sim.run_for(Duration::from_secs(2));
        fig.add(&sim);
        violations(&sim)?;
        for n in [a, b] {
            let errs = sim.nodes[n].counters().protocol_errors;
            check(errs == 0, || {
                format!("node {n}: {errs} protocol error(s){}", dumps(&sim))
            })?;
        }
        let db: Vec<&Logged> = sim.nodes[b]
            .log
            .iter()
            .filter(|l| l.ev.kind == XXNET_EVENT_DISCONNECTED && l.ev.conn == conn_b)
            .collect();
        check(
            db.len() == 1 && db[0].ev.code == XXNET_E_PEER_CLOSED,
            || format!("B: DISCONNECTED of its session: {db:?}{}", dumps(&sim)),
        )?;
        // Everything B held was reported, nothing is held any more.
        check(sim.backlog() == (0, 0), || {
            format!("backlog {:?}{}", sim.backlog(), dumps(&sim))
        })
    });
}

/// The plainest case of the above, step by step: B stalls while A sends a
/// 3000-byte message (three DATA frames) into a 1000-byte socket buffer;
/// A's idle timeout closes the link (FIN after the first 1000 bytes, the
/// front of a frame); B wakes, reads the partial frame and the EOF. B must
/// treat that like a lost connection (LINK_DOWN, resume), not end the
/// session with XXNET_E_TRUNCATED and report everything it held.
#[test]
fn a_link_closed_by_the_idle_timeout_mid_frame_does_not_end_the_peers_session() {
    let net = NetParams {
        latency_ms: (1, 1),
        connect_ms: (1, 1),
        buf_cap: (1000, 1000),
        tiny_read_pct: 0,
        partial_write_pct: 0,
    };
    let mut sim = Sim::new(1, net);
    let cfg = sim_config();
    let a = sim.add_node(cfg.clone(), true);
    let b = sim.add_node(cfg.clone(), true);
    sim.send(a, b, 0, 100, None);
    sim.send(b, a, 0, 100, None);
    assert!(sim.settle(Duration::from_secs(1)));
    sim.freeze(b);
    sim.send(a, b, 0, 3000, None);
    let down = sim.run_until_pred(Duration::from_secs(1), |s| {
        s.nodes[a].count(XXNET_EVENT_LINK_DOWN) > 0
    });
    assert!(down, "A: {}", sim.dump(a));
    let downs = sim.nodes[a].events(XXNET_EVENT_LINK_DOWN);
    assert_eq!(downs[0].ev.code, XXNET_E_IDLE_TIMEOUT);
    // B wakes before A redials (reconnect_min_ms): it reads the old link first.
    sim.thaw(b);
    sim.send(b, a, 1, 50, None);
    let settled = sim.settle(Duration::from_secs(10));
    let b_ended = sim.nodes[b].events(XXNET_EVENT_DISCONNECTED);
    assert!(
        b_ended.is_empty(),
        "B ended its session when the link closed mid-frame: {}{}",
        sim.dump(b),
        sim.dump(a)
    );
    strict(&sim, settled).unwrap();
}
