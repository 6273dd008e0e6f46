//! Deterministic simulation of the ways a session ends or survives a sick
//! peer (docs/PROTOCOL.md §5, §6): giving up on a peer gone for good, a
//! peer restart, idle timeouts of a frozen peer, heartbeats of an idle
//! connection, and ending a session on purpose. The harness is
//! `tests/sim/mod.rs`.

mod sim;

use sim::*;
use std::time::{Duration, Instant};
use xxnet::codes::*;

/// The events of `n` of this kind after `t`.
fn after(sim: &Sim, n: usize, kind: u32, t: Duration) -> Vec<Logged> {
    sim.nodes[n]
        .log
        .iter()
        .filter(|l| l.ev.kind == kind && l.at >= t)
        .cloned()
        .collect()
}

/// SEND_FAILED totals (id 0: never sent, id 1: sent, maybe received) of node `n`.
fn send_failed(sim: &Sim, n: usize) -> (u64, u64) {
    sim.ledger
        .failed
        .iter()
        .filter(|f| f.node == n)
        .fold((0, 0), |(a, b), f| {
            if f.id == 0 {
                (a + f.count, b)
            } else {
                (a, b + f.count)
            }
        })
}

/// The fate of every message `src` sent `dst` (`src` has no other peer)
/// once the session ended: need-ack messages have exactly one fate (the
/// ledger checks "exactly"), DELIVERED only for delivered ones; plain
/// messages are acknowledged or counted in a SEND_FAILED, and the counts
/// agree with what `dst` really delivered: delivered ⊆ acked ∪ id 1, and id 0
/// covers only messages never delivered.
fn every_fate_reported(sim: &Sim, src: usize, dst: usize) -> Result<(), String> {
    let msgs = sim.ledger.between(src, dst);
    let mut sent_plain = 0u64;
    let mut delivered_plain = 0u64;
    let mut delivered_events = 0u64;
    for m in &msgs {
        if m.track == 0 {
            sent_plain += 1;
            delivered_plain += !m.deliveries.is_empty() as u64;
        } else {
            match m.fate {
                None => {
                    return Err(format!(
                        "need-ack seq {} (track {}) has no fate{}",
                        m.seq,
                        m.track,
                        dumps(sim)
                    ))
                }
                Some((XXNET_EVENT_DELIVERED, _)) => delivered_events += 1,
                Some(_) => {}
            }
        }
    }
    let (id0, id1) = send_failed(sim, src);
    let acked_plain = sim.nodes[src].counters().msgs_acked - delivered_events;
    check(acked_plain + id0 + id1 == sent_plain, || {
        format!(
            "node {src}: {sent_plain} plain messages sent, {acked_plain} acknowledged + {id0} SEND_FAILED id 0 + {id1} id 1 do not add up{}",
            dumps(sim)
        )
    })?;
    check(
        delivered_plain >= acked_plain && delivered_plain - acked_plain <= id1,
        || {
            format!(
                "node {src}: {delivered_plain} plain messages delivered, {acked_plain} acknowledged, but only {id1} reported as maybe received (id 1){}",
                dumps(sim)
            )
        },
    )?;
    check(id0 <= sent_plain - delivered_plain, || {
        format!(
            "node {src}: {id0} reported never sent (id 0) but only {} were not delivered",
            sent_plain - delivered_plain
        )
    })
}

/// Every report about `conn` at node `n` comes before its DISCONNECTED,
/// which is the last event about it.
fn disconnected_last(sim: &Sim, n: usize, conn: u64) -> Result<(), String> {
    let log = &sim.nodes[n].log;
    let about: Vec<&Logged> = log.iter().filter(|l| l.ev.conn == conn).collect();
    let pos = about
        .iter()
        .position(|l| l.ev.kind == XXNET_EVENT_DISCONNECTED);
    check(pos == Some(about.len() - 1), || {
        format!(
            "node {n}: DISCONNECTED of conn {conn} missing or not last{}",
            dumps(sim)
        )
    })
}

// ----- property 4: give up ---------------------------------------------------------------

struct GiveUp {
    down_at: Duration,
    disc: Logged,
}

/// A and B trade messages; B's process dies for good (connects refused
/// from then on) while A still sends; A gives up after
/// `reconnect_give_up_ms` without a connection.
fn give_up_run(sim: &mut Sim, how: Kill, b_listens: bool) -> Result<GiveUp, String> {
    let a = sim.add_node(give_up_config(), true);
    let b = sim.add_node(give_up_config(), b_listens);
    // B speaks first, so that A knows its conn id if B is a client.
    sim.send(b, a, 0, 16, None);
    let mut t = Traffic::new(all_pairs(2), 150, Duration::from_millis(250));
    t.track_pct = 30;
    sim.drive(&t);
    let conn = *sim.nodes[a].conn_to.get(&b).ok_or("A never connected")?;
    let killed = sim.elapsed();
    sim.kill(b, how);
    // A keeps sending for a while: some go out before A notices, the rest wait.
    sim.ledger.phase = 1;
    let mut t = Traffic::new(vec![(a, b)], 30, Duration::from_millis(100));
    t.track_pct = 30;
    sim.drive(&t);
    let gave_up = sim.run_until_pred(Duration::from_secs(10), |s| {
        s.nodes[a].count(XXNET_EVENT_DISCONNECTED) > 0
    });
    check(gave_up, || format!("A never gave up{}", dumps(sim)))?;
    let disc = after(sim, a, XXNET_EVENT_DISCONNECTED, killed)[0].clone();
    // A stays quiet afterwards.
    let quiet_from = sim.elapsed();
    sim.run_for(Duration::from_secs(2));
    violations(sim)?;
    let downs = after(sim, a, XXNET_EVENT_LINK_DOWN, killed);
    check(!downs.is_empty(), || {
        format!("no LINK_DOWN at A{}", dumps(sim))
    })?;
    let down_at = downs[0].at;
    check(disc.ev.conn == conn, || {
        format!("DISCONNECTED for conn {} not {conn}", disc.ev.conn)
    })?;
    every_fate_reported(sim, a, b)?;
    disconnected_last(sim, a, conn)?;
    // Messages sent after A knew the link was down were never sent: id 0 or EXPIRED.
    let (id0, _) = send_failed(sim, a);
    let late: Vec<_> = sim
        .ledger
        .between(a, b)
        .into_iter()
        .filter(|m| m.sent_at > down_at)
        .collect();
    let late_plain = late.iter().filter(|m| m.track == 0).count() as u64;
    check(late_plain <= id0, || {
        format!("{late_plain} plain messages sent after LINK_DOWN but only {id0} reported as never sent")
    })?;
    for m in &late {
        check(m.deliveries.is_empty(), || {
            format!("seq {} sent after LINK_DOWN was delivered", m.seq)
        })?;
        if m.track != 0 {
            check(matches!(m.fate, Some((XXNET_EVENT_EXPIRED, _))), || {
                format!(
                    "need-ack seq {} sent after LINK_DOWN: fate {:?}",
                    m.seq, m.fate
                )
            })?;
        }
    }
    let node = &sim.nodes[a];
    check(
        node.ep.link_count() == 0 && node.ep.backlog() == (0, 0) && node.conn_to.is_empty(),
        || {
            format!(
                "A still holds something: {} links, backlog {:?}",
                node.ep.link_count(),
                node.ep.backlog()
            )
        },
    )?;
    check(
        node.log
            .iter()
            .all(|l| l.at <= disc.at || l.at < quiet_from),
        || format!("A was not quiet after giving up{}", dumps(sim)),
    )?;
    sim.assert_accounts_settled("give up");
    Ok(GiveUp { down_at, disc })
}

fn give_up_config() -> xxnet::config::Config {
    let mut cfg = sim_config();
    cfg.reconnect_give_up_ms = 500;
    cfg.reconnect_max_ms = 80;
    cfg
}

/// Property 4: the survivor reports every held message once the give-up
/// time passed, then DISCONNECTED; SEND_FAILED id 1 / id 0 split agrees
/// with what the dead peer really delivered.
#[test]
fn a_peer_gone_for_good_is_given_up_and_every_message_reported() {
    let give_up = Duration::from_millis(give_up_config().reconnect_give_up_ms);
    for_seeds("give up on a dead peer", 0..150, |seed, fig| {
        let mut sim = Sim::new(seed, NetParams::default());
        let how = if seed % 3 == 2 {
            Kill::Silent
        } else {
            Kill::Reset
        };
        // One run in four, B is a client: A cannot redial, it only waits.
        let b_listens = seed % 4 != 3;
        let r = give_up_run(&mut sim, how, b_listens);
        fig.add(&sim);
        let r = r?;
        // A session that gives up reports the last failure's code: its
        // reconnect attempts were refused, or (a client) the link's failure.
        let want = match (b_listens, how) {
            (true, _) => XXNET_E_CONNECT_REFUSED,
            (false, Kill::Silent) => XXNET_E_IDLE_TIMEOUT,
            (false, _) => XXNET_E_CONN_RESET,
        };
        check(r.disc.ev.code == want, || {
            format!(
                "DISCONNECTED code {} ({}){}",
                r.disc.ev.code,
                describe(r.disc.ev.code),
                dumps(&sim)
            )
        })?;
        let waited = r.disc.at - r.down_at;
        // The last attempt may still be in flight at the deadline: it fails
        // within a connect time (<= 3 ms) plus a timer tick.
        check(
            waited >= give_up && waited <= give_up + Duration::from_millis(10),
            || {
                format!(
                    "gave up {waited:?} after the link went down, expected {give_up:?}{}",
                    dumps(&sim)
                )
            },
        )
    });
}

// ----- property 5: restart ------------------------------------------------------------------

/// Property 5: B restarts (new instance, same address). A's old session
/// reports what it held with XXNET_E_PEER_RESTARTED, A gets DISCONNECTED for
/// the old conn then CONNECTED with a new one; nothing old reaches the new
/// B; new messages flow cleanly both ways.
fn restart_run(seed: u64, how: Kill, fig: &mut Figures) -> Result<(), String> {
    let mut sim = Sim::new(seed, NetParams::default());
    let a = sim.add_node(sim_config(), true);
    let b = sim.add_node(sim_config(), true);
    let mut t = Traffic::new(all_pairs(2), 150, Duration::from_millis(300));
    t.track_pct = 30;
    sim.drive(&t);
    let old = *sim.nodes[a].conn_to.get(&b).ok_or("A never connected")?;
    let killed = sim.elapsed();
    sim.kill(b, how);
    sim.ledger.phase = 1;
    let mut t = Traffic::new(vec![(a, b)], 10, Duration::from_millis(50));
    t.track_pct = 30;
    sim.drive(&t);
    let down = sim.rng.ms(0, 400);
    sim.run_for(down);
    sim.revive(b);
    sim.ledger.phase = 2;
    if seed % 2 == 0 {
        // The new B speaks first (it dials A).
        sim.send(b, a, 0, 40, None);
    }
    let learned = sim.run_until_pred(Duration::from_secs(5), |s| {
        s.nodes[a].conn_to.get(&b).is_some_and(|&c| c != old)
    });
    check(learned, || {
        format!("A never connected to the new B{}", dumps(&sim))
    })?;
    let mut t = Traffic::new(all_pairs(2), 100, Duration::from_millis(200));
    t.track_pct = 30;
    sim.drive(&t);
    let settled = sim.run_until_pred(Duration::from_secs(30), |s| {
        s.backlog() == (0, 0)
            && s.ledger
                .all()
                .filter(|(_, m)| m.phase == 2)
                .all(|(_, m)| !m.deliveries.is_empty())
    });
    fig.add(&sim);
    violations(&sim)?;
    check(settled, || format!("phase 2 not delivered{}", dumps(&sim)))?;
    // Old messages never reach the new instance; new ones arrive once.
    for (k, m) in sim.ledger.all() {
        if k.1 == b && m.phase < 2 {
            check(m.deliveries.iter().all(|&(e, _)| e == 0), || {
                format!(
                    "{k:?} seq {} (before the restart) delivered to the new B",
                    m.seq
                )
            })?;
        }
        if m.phase == 2 {
            check(m.deliveries.len() == 1, || {
                format!("{k:?} seq {} delivered {} times", m.seq, m.deliveries.len())
            })?;
            if m.track != 0 {
                check(matches!(m.fate, Some((XXNET_EVENT_DELIVERED, _))), || {
                    format!("{k:?} seq {} fate {:?}", m.seq, m.fate)
                })?;
            }
        }
    }
    // A's events about the old conn: reports with PEER_RESTARTED, then
    // DISCONNECTED(PEER_RESTARTED), then CONNECTED with the new conn.
    let log = &sim.nodes[a].log;
    let disc = log
        .iter()
        .position(|l| l.ev.kind == XXNET_EVENT_DISCONNECTED && l.ev.conn == old)
        .ok_or_else(|| format!("no DISCONNECTED for the old conn{}", dumps(&sim)))?;
    check(log[disc].ev.code == XXNET_E_PEER_RESTARTED, || {
        format!(
            "DISCONNECTED code {} ({}){}",
            log[disc].ev.code,
            describe(log[disc].ev.code),
            dumps(&sim)
        )
    })?;
    let new = *sim.nodes[a].conn_to.get(&b).expect("learned");
    let conn_ev = log
        .iter()
        .position(|l| l.ev.kind == XXNET_EVENT_CONNECTED && l.ev.conn == new)
        .expect("CONNECTED of the new conn");
    check(conn_ev > disc, || {
        format!("CONNECTED(new) before DISCONNECTED(old){}", dumps(&sim))
    })?;
    disconnected_last(&sim, a, old)?;
    for l in log.iter().filter(|l| l.ev.conn == old && l.at >= killed) {
        if matches!(l.ev.kind, XXNET_EVENT_SEND_FAILED | XXNET_EVENT_EXPIRED) {
            check(l.ev.code == XXNET_E_PEER_RESTARTED, || {
                format!(
                    "{} for the old conn with code {}{}",
                    kind_name(l.ev.kind),
                    describe(l.ev.code),
                    dumps(&sim)
                )
            })?;
        }
    }
    // Every old A→B message: delivered to the old B and acknowledged, or reported.
    let olds: Vec<&SentMsg> = sim
        .ledger
        .between(a, b)
        .into_iter()
        .filter(|m| m.phase < 2)
        .collect();
    let mut sent_plain = 0;
    let mut delivered_plain = 0;
    for m in &olds {
        if m.track == 0 {
            sent_plain += 1;
            delivered_plain += !m.deliveries.is_empty() as u64;
        } else {
            check(m.fate.is_some(), || {
                format!("old need-ack seq {} has no fate{}", m.seq, dumps(&sim))
            })?;
        }
    }
    let (id0, id1) = sim
        .ledger
        .failed
        .iter()
        .filter(|f| f.node == a && f.conn == old)
        .fold((0, 0), |(x, y), f| {
            if f.id == 0 {
                (x + f.count, y)
            } else {
                (x, y + f.count)
            }
        });
    check(sent_plain - delivered_plain <= id0 + id1, || {
        format!(
            "{} old plain messages never delivered but only {} reported{}",
            sent_plain - delivered_plain,
            id0 + id1,
            dumps(&sim)
        )
    })?;
    // A peer killed mid-write leaves a truncated frame: it is counted as a
    // protocol error (docs/PROTOCOL.md §2) but only takes the link down.
    // No other protocol error, and none ends a session.
    for n in [a, b] {
        let bad = sim.nodes[n].log.iter().find(|l| {
            xxnet::is_protocol_error(l.ev.code)
                && (l.ev.code != XXNET_E_TRUNCATED || l.ev.kind != XXNET_EVENT_LINK_DOWN)
        });
        check(bad.is_none(), || {
            format!("node {n}: protocol error event {bad:?}{}", dumps(&sim))
        })?;
    }
    check(
        after(&sim, b, XXNET_EVENT_DISCONNECTED, killed).is_empty()
            && after(&sim, b, XXNET_EVENT_SEND_FAILED, killed).is_empty(),
        || format!("the new B lost something{}", dumps(&sim)),
    )?;
    sim.assert_accounts_settled("restart");
    Ok(())
}

#[test]
fn a_restarted_peer_gets_a_new_session_and_nothing_old_is_replayed() {
    for_seeds("peer restart (reset / silent)", 0..150, |seed, fig| {
        let how = if seed % 3 == 1 {
            Kill::Silent
        } else {
            Kill::Reset
        };
        restart_run(seed, how, fig)
    });
}

/// A process that dies with nothing unread: its kernel flushes what it
/// had written, then FIN. That can be the front of a frame.
#[test]
fn a_restarted_peer_whose_sockets_end_with_fin() {
    for_seeds("peer restart (FIN)", 0..150, |seed, fig| {
        restart_run(seed, Kill::Fin, fig)
    });
}

// ----- property 6: idle timeout ----------------------------------------------------------------

/// Property 6: B freezes past the idle timeout while A keeps sending. A
/// declares the link down (IDLE_TIMEOUT) exactly `idle_timeout_ms` after it
/// last heard from B; once B thaws the session resumes: LINK_UP, everything
/// delivered once, in order, nothing reported.
fn freeze_run(seed: u64, a_sends: bool, fig: &mut Figures) -> Result<(), String> {
    let cfg = sim_config();
    let idle = Duration::from_millis(cfg.idle_timeout_ms);
    let mut sim = Sim::new(seed, NetParams::default());
    let a = sim.add_node(cfg.clone(), true);
    let b = sim.add_node(cfg.clone(), seed % 4 != 3);
    sim.send(b, a, 0, 16, None);
    let t = Traffic::new(all_pairs(2), 40, Duration::from_millis(100));
    sim.drive(&t);
    check(sim.settle(Duration::from_secs(5)), || {
        format!("warm-up not settled{}", dumps(&sim))
    })?;
    let phase = sim.rng.ms(0, 300);
    sim.run_for(phase);
    let frozen_at = sim.elapsed();
    sim.freeze(b);
    let span = sim.rng.ms(450, 1500);
    if a_sends {
        let t = Traffic::new(vec![(a, b)], 100, span);
        sim.drive(&t);
    }
    sim.run_until(sim.at(frozen_at + span));
    let downs = after(&sim, a, XXNET_EVENT_LINK_DOWN, frozen_at);
    check(!downs.is_empty(), || {
        format!("A never declared the frozen B down{}", dumps(&sim))
    })?;
    let d = &downs[0];
    check(d.ev.code == XXNET_E_IDLE_TIMEOUT, || {
        format!(
            "first LINK_DOWN code {} ({}){}",
            d.ev.code,
            describe(d.ev.code),
            dumps(&sim)
        )
    })?;
    let heard: Instant = *sim.nodes[a].last_rx.get(&b).expect("A heard from B");
    let silent = sim.at(d.at) - heard;
    check(
        silent >= idle && silent <= idle + Duration::from_millis(1),
        || {
            format!(
                "LINK_DOWN after {silent:?} of silence, idle timeout {idle:?}{}",
                dumps(&sim)
            )
        },
    )?;
    let since_freeze = d.at - frozen_at;
    check(since_freeze <= idle + Duration::from_millis(6), || {
        format!("LINK_DOWN {since_freeze:?} after the freeze{}", dumps(&sim))
    })?;
    sim.thaw(b);
    let t = Traffic::new(all_pairs(2), 40, Duration::from_millis(100));
    sim.drive(&t);
    let settled = sim.settle(Duration::from_secs(60));
    fig.add(&sim);
    strict(&sim, settled)?;
    check(
        !after(&sim, a, XXNET_EVENT_LINK_UP, d.at).is_empty(),
        || format!("no LINK_UP at A after the thaw{}", dumps(&sim)),
    )
}

#[test]
fn a_frozen_peer_is_declared_down_at_the_idle_timeout_and_the_session_resumes() {
    for_seeds("freeze past idle timeout, quiet", 0..100, |seed, fig| {
        freeze_run(seed, false, fig)
    });
}

/// The same while A keeps sending to the frozen B: its socket buffer fills
/// and A's writes stop part-way through a frame.
#[test]
fn a_peer_frozen_while_receiving_resumes_without_loss() {
    for_seeds("freeze past idle timeout, busy", 0..100, |seed, fig| {
        freeze_run(seed, true, fig)
    });
}

/// Property 6, second half: a healthy connection without traffic stays up
/// on PINGs for ten idle timeouts.
#[test]
fn an_idle_healthy_connection_stays_up() {
    for_seeds("idle connection", 0..100, |seed, fig| {
        let cfg = sim_config();
        let idle = Duration::from_millis(cfg.idle_timeout_ms);
        let mut sim = Sim::new(seed, NetParams::default());
        let a = sim.add_node(cfg.clone(), true);
        let b = sim.add_node(cfg.clone(), seed % 2 == 0);
        sim.send(b, a, 0, 16, None);
        sim.send(a, b, 1, 16, None);
        check(sim.settle(Duration::from_secs(5)), || "not settled".into())?;
        let quiet = sim.elapsed();
        let bytes = sim.stats.bytes;
        sim.run_for(idle * 10);
        fig.add(&sim);
        for n in [a, b] {
            let node = &sim.nodes[n];
            check(node.log.iter().all(|l| l.at < quiet), || {
                format!("node {n} reported something while idle{}", dumps(&sim))
            })?;
            check(node.ep.link_count() == 1, || {
                format!("node {n} has {} links", node.ep.link_count())
            })?;
        }
        check(sim.connections().len() == 1, || {
            "the connection changed".into()
        })?;
        // PING and PONG frames are 24 bytes: at least 3 per timeout and direction.
        check(sim.stats.bytes - bytes >= 24 * 2 * 10 * 3, || {
            format!("only {} bytes of heartbeats", sim.stats.bytes - bytes)
        })
    });
}

// ----- property 8: ending a session on purpose ----------------------------------------------------

/// Property 8: A closes its session with B: B ends its side at once
/// (DISCONNECTED with XXNET_E_PEER_CLOSED) instead of reconnecting; both
/// report what they held.
#[test]
fn closing_a_session_ends_it_on_both_sides_without_reconnecting() {
    for_seeds("close_conn", 0..150, |seed, fig| {
        let mut sim = Sim::new(seed, NetParams::default());
        let a = sim.add_node(sim_config(), true);
        let b = sim.add_node(sim_config(), seed % 3 != 2);
        sim.send(b, a, 0, 16, None);
        let mut t = Traffic::new(all_pairs(2), 150, Duration::from_millis(200));
        t.track_pct = 30;
        sim.drive(&t);
        // Sometimes close with everything settled, mostly with traffic in flight.
        if seed % 5 == 0 {
            sim.settle(Duration::from_secs(5));
        }
        let conn = *sim.nodes[a].conn_to.get(&b).ok_or("A never connected")?;
        let conn_b = *sim.nodes[b].conn_to.get(&a).ok_or("B never connected")?;
        let closed = sim.elapsed();
        sim.close_conn(a, conn);
        sim.run_for(Duration::from_secs(2));
        fig.add(&sim);
        violations(&sim)?;
        let da = after(&sim, a, XXNET_EVENT_DISCONNECTED, closed);
        let db = after(&sim, b, XXNET_EVENT_DISCONNECTED, closed);
        check(
            da.len() == 1 && da[0].ev.conn == conn && da[0].ev.code == XXNET_E_LOCAL_CLOSE,
            || format!("A: DISCONNECTED {da:?}{}", dumps(&sim)),
        )?;
        check(
            db.len() == 1 && db[0].ev.conn == conn_b && db[0].ev.code == XXNET_E_PEER_CLOSED,
            || format!("B: DISCONNECTED {db:?}{}", dumps(&sim)),
        )?;
        check(db[0].at <= closed + Duration::from_millis(50), || {
            format!("B noticed the close only after {:?}", db[0].at - closed)
        })?;
        for n in [a, b] {
            let node = &sim.nodes[n];
            check(
                node.ep.link_count() == 0 && node.ep.backlog() == (0, 0),
                || {
                    format!(
                        "node {n}: {} links, backlog {:?} after the close{}",
                        node.ep.link_count(),
                        node.ep.backlog(),
                        dumps(&sim)
                    )
                },
            )?;
            for kind in [
                XXNET_EVENT_CONNECTED,
                XXNET_EVENT_LINK_UP,
                XXNET_EVENT_CONNECT_FAILED,
                XXNET_EVENT_LINK_DOWN,
            ] {
                check(after(&sim, n, kind, closed).is_empty(), || {
                    format!(
                        "node {n}: {} after the close{}",
                        kind_name(kind),
                        dumps(&sim)
                    )
                })?;
            }
        }
        every_fate_reported(&sim, a, b)?;
        every_fate_reported(&sim, b, a)?;
        disconnected_last(&sim, a, conn)?;
        disconnected_last(&sim, b, conn_b)?;
        for f in &sim.ledger.failed {
            let want = if f.node == a {
                XXNET_E_LOCAL_CLOSE
            } else {
                XXNET_E_PEER_CLOSED
            };
            check(f.code == want, || {
                format!("SEND_FAILED {f:?}, expected code {want}")
            })?;
        }
        sim.assert_accounts_settled("close");
        Ok(())
    });
}

// ----- deadlines ------------------------------------------------------------------------------------

/// An acknowledgement falls due while the link's write buffer holds more
/// than the refill threshold (64 KiB): the peer stopped reading. The peer
/// timer must not stay due (`on_timeout` handles it and re-arms it in the
/// past), or the reactor wakes every millisecond, doing nothing, until the
/// link drains or dies.
#[test]
fn an_owed_ack_on_a_write_blocked_link_does_not_keep_a_deadline_due() {
    let net = NetParams {
        latency_ms: (1, 1),
        connect_ms: (1, 1),
        buf_cap: (1000, 1000),
        tiny_read_pct: 0,
        partial_write_pct: 0,
    };
    let mut sim = Sim::new(1, net);
    let a = sim.add_node(sim_config(), true);
    let b = sim.add_node(sim_config(), true);
    sim.send(a, b, 0, 100, None);
    assert!(sim.settle(Duration::from_secs(1)));
    // A queues 300 KiB for B while B sends A a few small messages; then B stalls.
    sim.send(a, b, 1, 300 << 10, None);
    for i in 0..5 {
        sim.send(b, a, 0, 40 + i, None);
    }
    sim.run_for(Duration::from_millis(1));
    sim.freeze(b);
    sim.run_for(Duration::from_millis(200));
    let hot = sim.nodes[a].hot_timer;
    assert_eq!(
        hot,
        0,
        "A's deadline stayed due {hot} times in 200 ms: the reactor would wake every millisecond{}",
        dumps(&sim)
    );
}
