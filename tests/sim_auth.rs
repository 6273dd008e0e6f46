//! Deterministic simulation of the handshake extensions (docs/PROTOCOL.md
//! §3, "Node names" and "Authentication"): names learned both ways, the
//! shared-secret challenge-response in every combination of secrets, and raw
//! peers that try to get in without the secret. The harness is
//! `tests/sim/mod.rs`; raw peers are its `raw_connect` connections.

mod sim;

use bytes::BytesMut;
use sim::*;
use std::net::SocketAddr;
use std::os::raw::c_int;
use std::time::Duration;
use xxnet::codes::*;
use xxnet::config::Config;
use xxnet::proto::handshake::{decode_challenge, encode_auth};
use xxnet::proto::{
    AckStatus, Frame, FrameDecoder, FrameHeader, FrameType, Hello, HelloAck, Preface,
};

fn config(secret: Option<&[u8]>, name: Option<&str>) -> Config {
    Config {
        auth_secret: secret.map(|s| s.to_vec()),
        node_name: name.map(str::to_string),
        ..sim_config()
    }
}

fn names_ok(sim: &Sim, a: usize, b: usize, a_name: &str, b_name: &str) -> Result<(), String> {
    for (me, other, want) in [(a, b, b_name), (b, a, a_name)] {
        let conn = *sim.nodes[me]
            .conn_to
            .get(&other)
            .ok_or_else(|| format!("node {me} has no session with {other}{}", dumps(sim)))?;
        let got = sim.nodes[me].ep.peer_name(conn);
        check(got == Some(want.as_bytes()), || {
            format!(
                "node {me} learned name {:?} for node {other}, want {want:?}",
                got.map(String::from_utf8_lossy)
            )
        })?;
    }
    Ok(())
}

/// Fates of the messages `src` sent to `dst`: (reported with `code`, reported otherwise,
/// not reported), counting SEND_FAILED counts and EXPIRED events of need-ack messages.
fn reported(sim: &Sim, src: usize, code: c_int) -> (u64, u64) {
    let mut right = 0;
    let mut wrong = 0;
    for f in sim.ledger.failed.iter().filter(|f| f.node == src) {
        if f.code == code {
            right += f.count;
        } else {
            wrong += f.count;
        }
    }
    for (_, m) in sim.ledger.all() {
        if let Some((kind, c)) = m.fate {
            if kind == XXNET_EVENT_EXPIRED {
                if c == code {
                    right += 1;
                } else {
                    wrong += 1;
                }
            }
        }
    }
    (right, wrong)
}

/// (a) The same secret on both sides: connections are made, messages flow
/// both ways exactly once, and each side learns the other's node name (the
/// acceptor from HELLO, the connector from HELLO_ACK).
#[test]
fn same_secret_connects_and_names_are_learned_both_ways() {
    for_seeds("auth: same secret", 0..60, |seed, fig| {
        let mut sim = Sim::new(seed, NetParams::default());
        let a = sim.add_node(config(Some(b"cluster secret"), Some("alpha")), true);
        let b = sim.add_node(config(Some(b"cluster secret"), Some("beta")), true);
        // Only A sends first: A is the connector, B the acceptor.
        let t = Traffic::new(vec![(a, b)], 40, Duration::from_millis(100));
        sim.drive(&t);
        let settled = sim.settle(Duration::from_secs(10));
        strict(&sim, settled)?;
        names_ok(&sim, a, b, "alpha", "beta")?;
        let connected: Vec<u64> = sim.nodes[a]
            .events(XXNET_EVENT_CONNECTED)
            .iter()
            .map(|l| l.ev.id)
            .collect();
        check(connected == vec![1], || {
            format!("A should have initiated its one connection: {connected:?}")
        })?;
        // Then both ways.
        let t = Traffic::new(all_pairs(2), 100, Duration::from_millis(200));
        sim.drive(&t);
        let settled = sim.settle(Duration::from_secs(10));
        fig.add(&sim);
        strict(&sim, settled)?;
        for n in [a, b] {
            let c = sim.nodes[n].counters();
            check(c.auth_failures == 0 && c.protocol_errors == 0, || {
                format!("node {n}: {c:?}")
            })?;
        }
        Ok(())
    });
}

/// A client that listens nowhere authenticates too, and a node without a
/// name is learned as nameless.
#[test]
fn a_client_authenticates_and_a_nameless_node_has_no_name() {
    for_seeds("auth: client", 0..30, |seed, fig| {
        let mut sim = Sim::new(seed, NetParams::default());
        let server = sim.add_node(config(Some(b"k"), Some("server")), true);
        let client = sim.add_node(config(Some(b"k"), None), false);
        sim.send(client, server, 0, 100, None);
        sim.run_for(Duration::from_millis(300));
        let t = Traffic::new(all_pairs(2), 60, Duration::from_millis(100));
        sim.drive(&t);
        let settled = sim.settle(Duration::from_secs(10));
        fig.add(&sim);
        strict(&sim, settled)?;
        let conn = sim.nodes[client].conn_to[&server];
        check(
            sim.nodes[client].ep.peer_name(conn) == Some(&b"server"[..]),
            || "the client did not learn the server's name".into(),
        )?;
        let conn = sim.nodes[server].conn_to[&client];
        check(sim.nodes[server].ep.peer_name(conn).is_none(), || {
            "a nameless client got a name".into()
        })
    });
}

/// Authentication under load: three nodes with the same secret, random cuts,
/// simultaneous connects (the tie-break runs only after AUTH). Everything is
/// delivered exactly once, nothing is reported failed.
#[test]
fn authenticated_sessions_survive_cuts_and_connect_races() {
    for_seeds("auth: cuts and races", 0..80, |seed, fig| {
        let mut sim = Sim::new(seed, NetParams::default());
        for i in 0..3 {
            sim.add_node(config(Some(b"s"), Some(&format!("n{i}"))), true);
        }
        let mut t = Traffic::new(all_pairs(3), 300, Duration::from_millis(1500));
        t.cut_every_ms = Some((20, 120));
        t.track_pct = 10;
        sim.drive(&t);
        let settled = sim.settle(Duration::from_secs(60));
        fig.add(&sim);
        strict(&sim, settled)?;
        for n in 0..3 {
            let c = sim.nodes[n].counters();
            check(c.auth_failures == 0, || format!("node {n}: {c:?}"))?;
        }
        names_ok(&sim, 0, 1, "n0", "n1")?;
        names_ok(&sim, 1, 2, "n1", "n2")?;
        names_ok(&sim, 0, 2, "n0", "n2")
    });
}

/// What a refused pair must look like: the connector got CONNECT_FAILED with
/// XXNET_E_AUTH (once: no retry), no CONNECTED anywhere, nothing delivered,
/// every message the connector sent reported with XXNET_E_AUTH, nothing
/// held, no connection left; the connector counted `auth_failures` failures.
fn refused(
    sim: &Sim,
    connector: usize,
    acceptor: usize,
    sent: u64,
    auth_failures: u64,
) -> Result<(), String> {
    let fails = sim.nodes[connector].events(XXNET_EVENT_CONNECT_FAILED);
    check(fails.len() == 1 && fails[0].ev.code == XXNET_E_AUTH, || {
        format!(
            "connector: want one CONNECT_FAILED XXNET_E_AUTH{}",
            dumps(sim)
        )
    })?;
    check(
        sim.nodes[connector].count(XXNET_EVENT_CONNECTED) == 0,
        || format!("the connector got CONNECTED{}", dumps(sim)),
    )?;
    check(sim.ledger.delivered == 0, || {
        format!(
            "{} message(s) delivered{}",
            sim.ledger.delivered,
            dumps(sim)
        )
    })?;
    check(sim.nodes[acceptor].count(XXNET_EVENT_MESSAGE) == 0, || {
        "the acceptor got a MESSAGE".into()
    })?;
    let (right, wrong) = reported(sim, connector, XXNET_E_AUTH);
    check(right == sent && wrong == 0, || {
        format!(
            "{sent} sent: {right} reported with XXNET_E_AUTH, {wrong} otherwise{}",
            dumps(sim)
        )
    })?;
    check(sim.nodes[connector].ep.backlog() == (0, 0), || {
        "the connector still holds messages".into()
    })?;
    check(
        sim.nodes[connector].counters().auth_failures == auth_failures,
        || format!("connector: {:?}", sim.nodes[connector].counters()),
    )?;
    for n in [connector, acceptor] {
        check(sim.nodes[n].ep.link_count() == 0, || {
            format!(
                "node {n} still has {} link(s)",
                sim.nodes[n].ep.link_count()
            )
        })?;
    }
    Ok(())
}

/// Sends `k` messages from `a` to `b`, a third of them need-ack.
fn send_some(sim: &mut Sim, a: usize, b: usize, k: usize) {
    for i in 0..k {
        let track = (i % 3 == 0).then_some(None);
        sim.send(a, b, (i % 4) as u8, 50 + i, track);
    }
}

/// (b) Different secrets: the acceptor's check of AUTH fails, it refuses
/// (AuthFailed); the connector fails with XXNET_E_AUTH and gives up at once.
#[test]
fn different_secrets_are_refused_and_the_session_gives_up() {
    for_seeds("auth: different secrets", 0..40, |seed, fig| {
        let mut sim = Sim::new(seed, NetParams::default());
        let a = sim.add_node(config(Some(b"one"), Some("a")), true);
        let b = sim.add_node(config(Some(b"two"), Some("b")), true);
        send_some(&mut sim, a, b, 9);
        sim.run_for(Duration::from_secs(3));
        fig.add(&sim);
        violations(&sim)?;
        refused(&sim, a, b, 9, 1)?;
        check(sim.nodes[b].count(XXNET_EVENT_CONNECTED) == 0, || {
            format!("the acceptor got CONNECTED{}", dumps(&sim))
        })?;
        check(sim.nodes[b].counters().auth_failures == 1, || {
            format!("acceptor: {:?}", sim.nodes[b].counters())
        })?;
        // Nobody reconnects: nothing more happens.
        let conns = sim.stats.conns;
        sim.run_for(Duration::from_secs(5));
        check(sim.stats.conns == conns, || {
            "a connection was retried".into()
        })
    });
}

/// Different secrets with both sides sending at once: both sessions end,
/// each reporting its messages with XXNET_E_AUTH, and nothing is delivered.
#[test]
fn different_secrets_both_sending_both_give_up() {
    for_seeds("auth: different secrets, both ways", 0..40, |seed, fig| {
        let mut sim = Sim::new(seed, NetParams::default());
        let a = sim.add_node(config(Some(b"one"), None), true);
        let b = sim.add_node(config(Some(b"two"), None), true);
        send_some(&mut sim, a, b, 5);
        send_some(&mut sim, b, a, 4);
        sim.run_for(Duration::from_secs(3));
        fig.add(&sim);
        violations(&sim)?;
        check(sim.ledger.delivered == 0, || {
            format!("delivered{}", dumps(&sim))
        })?;
        for (n, sent) in [(a, 5), (b, 4)] {
            let node = &sim.nodes[n];
            check(node.count(XXNET_EVENT_CONNECTED) == 0, || {
                format!("node {n} got CONNECTED{}", dumps(&sim))
            })?;
            let bad = node
                .events(XXNET_EVENT_CONNECT_FAILED)
                .iter()
                .any(|l| l.ev.code != XXNET_E_AUTH);
            check(!bad, || {
                format!("node {n}: a failure other than AUTH{}", dumps(&sim))
            })?;
            let failed: u64 = sim
                .ledger
                .failed
                .iter()
                .filter(|f| f.node == n)
                .map(|f| f.count)
                .sum();
            let expired = sim
                .ledger
                .between(n, 1 - n)
                .iter()
                .filter(|m| m.fate == Some((XXNET_EVENT_EXPIRED, XXNET_E_AUTH)))
                .count() as u64;
            check(failed + expired == sent, || {
                format!(
                    "node {n}: {failed} + {expired} of {sent} reported{}",
                    dumps(&sim)
                )
            })?;
            check(
                node.ep.backlog() == (0, 0) && node.ep.link_count() == 0,
                || format!("node {n} still holds something{}", dumps(&sim)),
            )?;
        }
        Ok(())
    });
}

/// (c) A secret only on the acceptor: the HELLO carries no challenge, the
/// acceptor refuses (AuthRequired) without challenging.
#[test]
fn secret_only_on_the_acceptor_is_refused() {
    for_seeds("auth: acceptor only", 0..40, |seed, fig| {
        let mut sim = Sim::new(seed, NetParams::default());
        let a = sim.add_node(config(None, Some("a")), true);
        let b = sim.add_node(config(Some(b"secret"), Some("b")), true);
        send_some(&mut sim, a, b, 6);
        sim.run_for(Duration::from_secs(3));
        fig.add(&sim);
        violations(&sim)?;
        refused(&sim, a, b, 6, 1)?;
        check(sim.nodes[b].count(XXNET_EVENT_CONNECTED) == 0, || {
            format!("the acceptor got CONNECTED{}", dumps(&sim))
        })?;
        check(sim.nodes[b].counters().auth_failures == 1, || {
            format!("acceptor: {:?}", sim.nodes[b].counters())
        })
    });
}

/// (d) A secret only on the connector: the acceptor (no secret) accepts at
/// once, but its HELLO_ACK proves nothing, so the connector refuses it
/// (XXNET_E_AUTH) before sending anything. The acceptor's session then
/// tries to reconnect, meets a node that requires authentication, and ends
/// with XXNET_E_AUTH too.
#[test]
fn secret_only_on_the_connector_is_refused_by_the_connector() {
    for_seeds("auth: connector only", 0..40, |seed, fig| {
        let mut sim = Sim::new(seed, NetParams::default());
        let a = sim.add_node(config(Some(b"secret"), Some("a")), true);
        let b = sim.add_node(config(None, Some("b")), true);
        send_some(&mut sim, a, b, 7);
        sim.run_for(Duration::from_secs(3));
        fig.add(&sim);
        violations(&sim)?;
        // A refused B's HELLO_ACK, then (as acceptor) B's reconnect without a challenge.
        refused(&sim, a, b, 7, 2)?;
        // B had accepted (it could not know better), then lost the session for good.
        let ended = sim.nodes[b].events(XXNET_EVENT_DISCONNECTED);
        check(ended.len() == 1 && ended[0].ev.code == XXNET_E_AUTH, || {
            format!(
                "the acceptor's session should end with XXNET_E_AUTH{}",
                dumps(&sim)
            )
        })?;
        check(sim.nodes[b].ep.backlog() == (0, 0), || {
            "B holds messages".into()
        })
    });
}

// ----- raw peers -------------------------------------------------------------------------------

const MALLORY: &str = "10.0.9.9:5555";

fn mallory() -> SocketAddr {
    MALLORY.parse().unwrap()
}

/// Preface and HELLO of a raw peer claiming to listen on `listen`.
fn raw_hello(listen: Option<SocketAddr>, challenge: Option<[u8; 16]>) -> Vec<u8> {
    let mut b = BytesMut::from(&Preface::BYTES[..]);
    Hello {
        sync: Default::default(),
        instance: 0xBAD_BAD,
        nonce: 7,
        listen,
        name: Some("mallory".into()),
        challenge,
    }
    .encode(&mut b);
    b.to_vec()
}

fn data_frame(body: &[u8]) -> Vec<u8> {
    let mut b = FrameHeader::data(
        body.len() as u32,
        FrameHeader::FIRST | FrameHeader::LAST,
        0,
        1,
        1,
    )
    .to_bytes()
    .to_vec();
    b.extend_from_slice(body);
    b
}

/// What a raw peer reads: every frame after the node's preface.
struct RawReader {
    dec: FrameDecoder,
    buf: BytesMut,
}

impl RawReader {
    fn new() -> RawReader {
        RawReader {
            dec: FrameDecoder::new(),
            buf: BytesMut::new(),
        }
    }

    fn frames(&mut self, sim: &mut Sim, c: usize) -> Vec<Frame> {
        self.buf.extend_from_slice(&sim.raw_recv(c));
        let mut out = Vec::new();
        while let Some(f) = self
            .dec
            .decode(&mut self.buf)
            .expect("the node speaks xxnet")
        {
            out.push(f);
        }
        out
    }
}

/// Nothing from a raw peer reached the host of node `n`.
fn untouched(sim: &Sim, n: usize) -> Result<(), String> {
    for kind in [XXNET_EVENT_CONNECTED, XXNET_EVENT_MESSAGE] {
        check(sim.nodes[n].count(kind) == 0, || {
            format!("node {n}: {}{}", kind_name(kind), dumps(sim))
        })?;
    }
    Ok(())
}

/// (e) A raw peer that sends HELLO (with a challenge) and then DATA
/// without answering the CHALLENGE: a protocol error, nothing delivered.
/// DATA right behind the HELLO (one read) or after the CHALLENGE came.
#[test]
fn data_before_auth_is_a_protocol_error() {
    for wait_for_challenge in [false, true] {
        let mut sim = Sim::new(1, NetParams::default());
        let b = sim.add_node(config(Some(b"secret"), Some("b")), true);
        let c = sim.raw_connect(b, mallory());
        let mut r = RawReader::new();
        let mut bytes = raw_hello(Some(mallory()), Some([1; 16]));
        if wait_for_challenge {
            sim.raw_send(c, &bytes);
            sim.run_for(Duration::from_millis(20));
            let frames = r.frames(&mut sim, c);
            assert_eq!(frames.len(), 1, "{frames:?}");
            assert_eq!(frames[0].header.kind, FrameType::Challenge);
            decode_challenge(&frames[0].body).unwrap();
            bytes.clear();
        }
        bytes.extend(data_frame(b"let me in"));
        sim.raw_send(c, &bytes);
        sim.run_for(Duration::from_millis(50));
        // Whatever was still buffered (a CHALLENGE) may be dropped: it broke the protocol.
        let frames = r.frames(&mut sim, c);
        assert!(
            frames.iter().all(|f| f.header.kind == FrameType::Challenge),
            "{frames:?}"
        );
        assert!(sim.raw_closed(c), "the connection is closed");
        assert_eq!(sim.nodes[b].counters().protocol_errors, 1);
        assert_eq!(sim.nodes[b].ep.link_count(), 0);
        untouched(&sim, b).unwrap();
        sim.ledger.assert_clean("raw DATA");
    }
}

/// A raw peer without a challenge is refused at once (AuthRequired, then
/// closed); DATA it sends after is ignored.
#[test]
fn hello_without_challenge_is_refused() {
    let mut sim = Sim::new(2, NetParams::default());
    let b = sim.add_node(config(Some(b"secret"), None), true);
    let c = sim.raw_connect(b, mallory());
    let mut bytes = raw_hello(Some(mallory()), None);
    bytes.extend(data_frame(b"ignored"));
    sim.raw_send(c, &bytes);
    sim.run_for(Duration::from_millis(50));
    let frames = RawReader::new().frames(&mut sim, c);
    assert_eq!(frames.len(), 1, "{frames:?}");
    let ack = HelloAck::decode(&frames[0].body).unwrap();
    assert_eq!(ack.status, AckStatus::AuthRequired);
    assert_eq!((ack.name, ack.proof), (None, None), "nothing for strangers");
    assert!(sim.raw_closed(c));
    assert_eq!(sim.nodes[b].counters().auth_failures, 1);
    assert_eq!(sim.nodes[b].counters().protocol_errors, 0);
    assert_eq!(sim.nodes[b].ep.link_count(), 0);
    untouched(&sim, b).unwrap();
}

/// A wrong AUTH is refused (AuthFailed, then closed); a peer that never
/// answers the CHALLENGE is closed at the handshake timeout.
#[test]
fn wrong_or_missing_auth_is_refused() {
    let mut sim = Sim::new(3, NetParams::default());
    let b = sim.add_node(config(Some(b"secret"), None), true);
    // Wrong proof.
    let c = sim.raw_connect(b, mallory());
    sim.raw_send(c, &raw_hello(Some(mallory()), Some([2; 16])));
    sim.run_for(Duration::from_millis(20));
    let mut r = RawReader::new();
    let frames = r.frames(&mut sim, c);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header.kind, FrameType::Challenge);
    let mut auth = BytesMut::new();
    encode_auth(&[0x42; 32], &mut auth);
    sim.raw_send(c, &auth);
    sim.run_for(Duration::from_millis(20));
    let frames = r.frames(&mut sim, c);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(
        HelloAck::decode(&frames[0].body).unwrap().status,
        AckStatus::AuthFailed
    );
    assert!(sim.raw_closed(c));
    assert_eq!(sim.nodes[b].counters().auth_failures, 1);
    // No answer at all: the handshake timeout (200 ms) applies in AwaitAuth.
    let c = sim.raw_connect(b, "10.0.9.10:5555".parse().unwrap());
    sim.raw_send(c, &raw_hello(None, Some([3; 16])));
    sim.run_for(Duration::from_millis(150));
    assert!(!sim.raw_closed(c), "closed before the handshake timeout");
    assert_eq!(sim.nodes[b].ep.link_count(), 1);
    sim.run_for(Duration::from_millis(100));
    assert!(sim.raw_closed(c), "not closed at the handshake timeout");
    assert_eq!(sim.nodes[b].ep.link_count(), 0);
    untouched(&sim, b).unwrap();
}

/// A raw peer claiming the listen address of a legitimate, connected peer A
/// (as a reconnecting A would) must not replace A's connection before it
/// authenticates: B holds the HELLO, A's link stays up, messages keep
/// flowing. Without a secret the same HELLO does replace it (the control
/// that shows the test would notice).
#[test]
fn an_unauthenticated_hello_does_not_replace_an_established_link() {
    for secret in [Some(&b"secret"[..]), None] {
        for_seeds("auth: no hijack", 0..20, |seed, fig| {
            let mut sim = Sim::new(seed, NetParams::default());
            let a = sim.add_node(config(secret, Some("a")), true);
            let b = sim.add_node(config(secret, Some("b")), true);
            let t = Traffic::new(all_pairs(2), 40, Duration::from_millis(100));
            sim.drive(&t);
            let settled = sim.settle(Duration::from_secs(10));
            strict(&sim, settled)?;
            let before = sim.connections();
            check(before.len() == 1, || format!("connections {before:?}"))?;
            let a_addr = sim.nodes[a].listen.unwrap();

            // Mallory claims to be A: HELLO, then garbage AUTH (or DATA, or silence).
            let c = sim.raw_connect(b, mallory());
            sim.raw_send(c, &raw_hello(Some(a_addr), Some([9; 16])));
            sim.run_for(Duration::from_millis(20));
            match seed % 3 {
                0 => {
                    let mut auth = BytesMut::new();
                    encode_auth(&[0; 32], &mut auth);
                    sim.raw_send(c, &auth);
                }
                1 => sim.raw_send(c, &data_frame(b"spoofed")),
                _ => {}
            }
            // Traffic goes on meanwhile.
            sim.ledger.phase = 1;
            let t = Traffic::new(all_pairs(2), 40, Duration::from_millis(100));
            sim.drive(&t);
            sim.run_for(Duration::from_millis(300));
            fig.add(&sim);
            if secret.is_none() {
                // Control: without authentication the HELLO replaces A's link.
                let downs = sim.nodes[b].count(XXNET_EVENT_LINK_DOWN)
                    + sim.nodes[b].count(XXNET_EVENT_DISCONNECTED);
                return check(downs > 0 || !sim.connections().contains(&before[0]), || {
                    "control: the spoofed HELLO did not replace the link".into()
                });
            }
            let settled = sim.settle(Duration::from_secs(10));
            strict(&sim, settled)?;
            check(sim.connections() == before, || {
                format!(
                    "A's connection was replaced: {before:?} -> {:?}{}",
                    sim.connections(),
                    dumps(&sim)
                )
            })?;
            for n in [a, b] {
                for kind in [XXNET_EVENT_LINK_DOWN, XXNET_EVENT_DISCONNECTED] {
                    check(sim.nodes[n].count(kind) == 0, || {
                        format!("node {n}: {}{}", kind_name(kind), dumps(&sim))
                    })?;
                }
            }
            check(sim.raw_closed(c), || {
                "Mallory's connection is still open".into()
            })?;
            // A wrong AUTH is an auth failure, DATA a protocol error, silence a timeout.
            let cb = sim.nodes[b].counters();
            let want = match seed % 3 {
                0 => (1, 0),
                1 => (0, 1),
                _ => (0, 0),
            };
            check((cb.auth_failures, cb.protocol_errors) == want, || {
                format!("B: {cb:?}")
            })
        });
    }
}
