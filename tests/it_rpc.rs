//! Remote calls between named nodes (issue 5), three nodes in one process
//! over loopback: calls both ways, a chained call A→B→C→B→A, every outcome
//! code produced for real, ordering of casts, pushes and replies on a lane,
//! the bounded call cache, reloads, big calls beside small ones, shutdown.
//! (Frozen and killed nodes are in it_rpc_procs.rs: they need processes.)

mod common;

use common::*;
use std::collections::HashMap;
use std::ffi::CString;
use std::time::{Duration, Instant};
use xxnet::*;

/// A named node listening on an ephemeral loopback port.
struct Member {
    node: Node,
    name: String,
    port: u16,
    seen: usize,
}

impl Member {
    fn new(name: &str) -> Member {
        Member::with(name, |_| {})
    }

    fn with(name: &str, tweak: impl FnOnce(&mut xxnet::ffi::types::xxnet_config)) -> Member {
        let cname = CString::new(name).unwrap();
        let mut cfg = default_config();
        cfg.node_name = cname.as_ptr();
        tweak(&mut cfg);
        let node = Node::with_config(&cfg);
        let port = node.listen("127.0.0.1");
        Member {
            node,
            name: name.to_string(),
            port,
            seen: 0,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Events that arrived since the last call.
    fn fresh(&mut self) -> Vec<Ev> {
        let new = self.node.log[self.seen..].to_vec();
        self.seen = self.node.log.len();
        new
    }
}

/// Every member knows every member (its own entry is where it listens already).
fn introduce(ms: &[&Member]) {
    for m in ms {
        for other in ms {
            assert_eq!(m.node.cluster_set(&other.name, &other.addr()), XXNET_OK);
        }
    }
}

/// Polls every member in turn until `done` holds or `timeout` passes;
/// `serve(i, event, members)` handles each new event of member `i`.
fn pump(
    ms: &mut [&mut Member],
    timeout: Duration,
    mut serve: impl FnMut(usize, &Ev, &mut [&mut Member]),
    mut done: impl FnMut(&mut [&mut Member]) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done(ms) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        for i in 0..ms.len() {
            ms[i].node.poll(1);
            for ev in ms[i].fresh() {
                serve(i, &ev, ms);
            }
        }
    }
}

fn result(m: &Member, session: u64) -> Option<Ev> {
    m.node.result_of(session).cloned()
}

fn no_serve(_: usize, _: &Ev, _: &mut [&mut Member]) {}

#[test]
fn calls_both_ways_and_a_chain_through_three_nodes() {
    let mut a = Member::new("A");
    let mut b = Member::new("B");
    let mut c = Member::new("C");
    introduce(&[&a, &b, &c]);
    for m in [&a, &b, &c] {
        m.node.serve("echo");
    }
    b.node.serve("chain");
    c.node.serve("leaf");

    // Plain calls, both directions.
    let ab = a.node.call("B", "echo", b"from A", 0, 0).unwrap();
    let ba = b.node.call("A", "echo", b"from B", 0, 0).unwrap();
    let ca = c.node.call("A", "echo", b"from C", 0, 0).unwrap();
    // The chain: A calls B; B, before answering, calls C; C answers B; B answers A.
    let chain = a.node.call("B", "chain", b"hop", 0, 0).unwrap();
    // B's outstanding chain requests: its call to C → A's token.
    let mut waiting: HashMap<u64, u64> = HashMap::new();
    let mut ms = [&mut a, &mut b, &mut c];
    let ok = pump(
        &mut ms,
        WAIT,
        |i, ev, ms| match ev.kind {
            XXNET_EVENT_CALL_REQUEST if ev.service == "echo" => {
                let mut out = ev.payload.clone();
                out.extend_from_slice(format!(" via {}", ms[i].name).as_bytes());
                assert_eq!(ms[i].node.reply(ev.id, 0, &out), XXNET_OK);
            }
            XXNET_EVENT_CALL_REQUEST if ev.service == "chain" => {
                assert_eq!(ev.node, "A", "the caller's name travels with the request");
                let mut out = ev.payload.clone();
                out.extend_from_slice(b" > B");
                let s = ms[i].node.call("C", "leaf", &out, 0, 0).unwrap();
                waiting.insert(s, ev.id);
            }
            XXNET_EVENT_CALL_REQUEST if ev.service == "leaf" => {
                assert_eq!(ev.node, "B");
                let mut out = ev.payload.clone();
                out.extend_from_slice(b" > C");
                assert_eq!(ms[i].node.reply(ev.id, 0, &out), XXNET_OK);
            }
            XXNET_EVENT_CALL_RESULT if i == 1 => {
                if let Some(token) = waiting.remove(&ev.id) {
                    assert_eq!(ev.code, XXNET_OK);
                    let mut out = ev.payload.clone();
                    out.extend_from_slice(b" > B");
                    assert_eq!(ms[i].node.reply(token, 0, &out), XXNET_OK);
                }
            }
            _ => {}
        },
        |ms| {
            result(ms[0], ab).is_some()
                && result(ms[0], chain).is_some()
                && result(ms[1], ba).is_some()
                && result(ms[2], ca).is_some()
        },
    );
    assert!(
        ok,
        "all calls resolve:\nA\n{}B\n{}C\n{}",
        dump_log(&ms[0].node.log),
        dump_log(&ms[1].node.log),
        dump_log(&ms[2].node.log)
    );
    let r = result(ms[0], ab).unwrap();
    assert_eq!(
        (r.code, r.payload.as_slice()),
        (XXNET_OK, &b"from A via B"[..])
    );
    assert_eq!(r.node, "B");
    assert_eq!(result(ms[1], ba).unwrap().payload, b"from B via A");
    assert_eq!(result(ms[2], ca).unwrap().payload, b"from C via A");
    let r = result(ms[0], chain).unwrap();
    assert_eq!(
        (r.code, String::from_utf8_lossy(&r.payload).into_owned()),
        (XXNET_OK, "hop > B > C > B".to_string())
    );
    // Exactly one result per call, after more polling too.
    pump(&mut ms, Duration::from_millis(100), no_serve, |_| false);
    for m in ms.iter() {
        let mut per: HashMap<u64, usize> = HashMap::new();
        for e in m.node.of_kind(XXNET_EVENT_CALL_RESULT) {
            *per.entry(e.id).or_default() += 1;
        }
        assert!(per.values().all(|&n| n == 1), "{per:?}");
    }
}

#[test]
fn each_outcome_has_its_own_code() {
    let mut a = Member::with("A", |c| {
        c.reconnect_min_ms = 20;
        c.reconnect_max_ms = 50;
        c.reconnect_give_up_ms = 300;
        c.connect_timeout_ms = 300;
    });
    let mut b = Member::new("B");
    introduce(&[&a, &b]);
    b.node.serve("echo");
    b.node.serve("silent"); // never answers
                            // A node in the directory that nobody serves: a port bound then closed.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    assert_eq!(
        a.node.cluster_set("Z", &format!("127.0.0.1:{dead_port}")),
        XXNET_OK
    );

    // Answered at once by the call itself: no event follows.
    assert_eq!(
        a.node.call("nobody", "echo", b"", 0, 0),
        Err(XXNET_E_UNKNOWN_NODE)
    );
    let big = vec![0u8; 16 << 20];
    assert_eq!(a.node.call("B", "echo", &big, 0, 0), Err(XXNET_E_TOO_LARGE));
    assert_eq!(
        a.node.call("B", "bad name", b"", 0, 0),
        Err(XXNET_E_INVALID_ARG)
    );
    assert_eq!(
        a.node.call("B", "echo", b"", 9, 0),
        Err(XXNET_E_INVALID_ARG)
    );

    let ok = a.node.call("B", "echo", b"x", 0, 0).unwrap();
    let own = a.node.call("B", "echo", b"code 7", 0, 0).unwrap();
    let none = a.node.call("B", "missing", b"x", 0, 0).unwrap();
    let slow = a.node.call("B", "silent", b"x", 0, 150).unwrap();
    let unreachable = a.node.call("Z", "echo", b"x", 0, 5_000).unwrap();
    // A cast to a service the node does not have is reported, not lost silently.
    assert_eq!(a.node.cast("B", "missing", b"12345", 0), XXNET_OK);
    let mut ms = [&mut a, &mut b];
    let done = pump(
        &mut ms,
        WAIT,
        |i, ev, ms| {
            if ev.kind == XXNET_EVENT_CALL_REQUEST && ev.service == "echo" {
                let code = if ev.payload == b"code 7" { 7 } else { 0 };
                assert_eq!(ms[i].node.reply(ev.id, code, b"r"), XXNET_OK);
            }
        },
        |ms| {
            [ok, own, none, slow, unreachable]
                .iter()
                .all(|&s| result(ms[0], s).is_some())
                && !ms[0].node.of_kind(XXNET_EVENT_SEND_FAILED).is_empty()
        },
    );
    let f = ms[0].node.of_kind(XXNET_EVENT_SEND_FAILED)[0].clone();
    assert_eq!(
        (f.code, f.count, f.total, f.service.as_str()),
        (XXNET_E_NO_SERVICE, 1, 5, "missing"),
        "{f}"
    );
    assert!(done, "{}", dump_log(&ms[0].node.log));
    let code = |s| result(ms[0], s).unwrap().code;
    assert_eq!(code(ok), XXNET_OK);
    assert_eq!(code(own), 7, "the callee's own code");
    assert_eq!(code(none), XXNET_E_NO_SERVICE);
    assert_eq!(code(slow), XXNET_E_TIMEOUT);
    assert_eq!(code(unreachable), XXNET_E_NODE_UNREACHABLE);
    let t = result(ms[0], slow).unwrap();
    assert!(t.payload.is_empty());

    // A reply to a call that already timed out is dropped, and a token answers once.
    let silent_tokens: Vec<u64> = ms[1]
        .node
        .of_kind(XXNET_EVENT_CALL_REQUEST)
        .iter()
        .filter(|e| e.service == "silent")
        .map(|e| e.id)
        .collect();
    assert_eq!(silent_tokens.len(), 1);
    assert_eq!(ms[1].node.reply(silent_tokens[0], 0, b"late"), XXNET_OK);
    assert_eq!(
        ms[1].node.reply(silent_tokens[0], 0, b"again"),
        XXNET_E_UNKNOWN_TOKEN
    );
    assert_eq!(
        ms[1].node.reply(silent_tokens[0] + 1000, 0, b""),
        XXNET_E_UNKNOWN_TOKEN
    );
    assert_eq!(
        ms[1].node.reply(silent_tokens[0], -5, b""),
        XXNET_E_INVALID_ARG
    );
    pump(&mut ms, Duration::from_millis(200), no_serve, |_| false);
    assert_eq!(
        ms[0]
            .node
            .of_kind(XXNET_EVENT_CALL_RESULT)
            .iter()
            .filter(|e| e.id == slow)
            .count(),
        1,
        "the late reply produced no second result"
    );

    // Node removed while a call is pending.
    let removed = ms[0].node.call("B", "silent", b"x", 0, 10_000).unwrap();
    pump(&mut ms, Duration::from_millis(100), no_serve, |_| false);
    assert_eq!(ms[0].node.cluster_remove("B"), XXNET_OK);
    assert!(pump(&mut ms, WAIT, no_serve, |ms| result(ms[0], removed)
        .is_some()));
    assert_eq!(result(ms[0], removed).unwrap().code, XXNET_E_NODE_REMOVED);
    assert_eq!(
        ms[0].node.call("B", "echo", b"", 0, 0),
        Err(XXNET_E_UNKNOWN_NODE)
    );

    // Node moved while a call is pending: B gets a second listener.
    let b_addr = ms[1].addr();
    assert_eq!(ms[0].node.cluster_set("B", &b_addr), XXNET_OK);
    let moved = ms[0].node.call("B", "silent", b"x", 0, 10_000).unwrap();
    pump(&mut ms, Duration::from_millis(100), no_serve, |_| false);
    let port2 = ms[1].node.listen("127.0.0.1");
    assert_eq!(
        ms[0].node.cluster_set("B", &format!("127.0.0.1:{port2}")),
        XXNET_OK
    );
    assert!(pump(&mut ms, WAIT, no_serve, |ms| result(ms[0], moved).is_some()));
    assert_eq!(result(ms[0], moved).unwrap().code, XXNET_E_NODE_MOVED);
    // Calls now go to the new address and work.
    let after = ms[0].node.call("B", "echo", b"x", 0, 0).unwrap();
    let done = pump(
        &mut ms,
        WAIT,
        |i, ev, ms| {
            if ev.kind == XXNET_EVENT_CALL_REQUEST && ev.service == "echo" {
                ms[i].node.reply(ev.id, 0, b"moved ok");
            }
        },
        |ms| result(ms[0], after).is_some(),
    );
    assert!(done);
    assert_eq!(result(ms[0], after).unwrap().payload, b"moved ok");

    // Node down: its context goes away while a call is pending.
    let down = ms[0].node.call("B", "silent", b"x", 0, 10_000).unwrap();
    pump(&mut ms, Duration::from_millis(100), no_serve, |_| false);
    ms[1].node.free();
    let t0 = Instant::now();
    let mut a_only = [&mut *ms[0]];
    assert!(pump(&mut a_only, WAIT, no_serve, |ms| result(ms[0], down)
        .is_some()));
    assert_eq!(result(a_only[0], down).unwrap().code, XXNET_E_NODE_DOWN);
    eprintln!(
        "node down resolved {:?} after the callee closed",
        t0.elapsed()
    );

    // Shutting down: pending calls resolve with XXNET_E_SHUTDOWN, later calls are refused.
    let pending = a_only[0].node.call("Z", "echo", b"x", 0, 10_000).unwrap();
    a_only[0].node.shutdown();
    assert_eq!(
        a_only[0].node.call("Z", "echo", b"x", 0, 0),
        Err(XXNET_E_SHUTDOWN)
    );
    assert!(pump(&mut a_only, WAIT, no_serve, |ms| result(
        ms[0], pending
    )
    .is_some()));
    assert_eq!(result(a_only[0], pending).unwrap().code, XXNET_E_SHUTDOWN);
}

#[test]
fn calls_wait_for_a_connection_in_a_bounded_cache() {
    let mut a = Member::with("A", |c| {
        c.call_cache_limit = 4;
        c.reconnect_give_up_ms = 60_000;
        c.reconnect_min_ms = 50;
    });
    // B is in the directory but not started yet.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b_port = l.local_addr().unwrap().port();
    drop(l);
    assert_eq!(
        a.node.cluster_set("B", &format!("127.0.0.1:{b_port}")),
        XXNET_OK
    );
    let sessions: Vec<u64> = (0..6)
        .map(|i| {
            a.node
                .call("B", "echo", format!("{i}").as_bytes(), 0, 20_000)
                .unwrap()
        })
        .collect();
    let mut ms = [&mut a];
    assert!(pump(&mut ms, WAIT, no_serve, |ms| result(
        ms[0],
        sessions[5]
    )
    .is_some()
        && result(ms[0], sessions[4]).is_some()));
    assert_eq!(
        result(ms[0], sessions[4]).unwrap().code,
        XXNET_E_WOULD_BLOCK
    );
    assert_eq!(
        result(ms[0], sessions[5]).unwrap().code,
        XXNET_E_WOULD_BLOCK
    );
    // B starts on that port: the four cached calls go out on connect, in order.
    let bname = CString::new("B").unwrap();
    let mut cfg = default_config();
    cfg.node_name = bname.as_ptr();
    let bn = Node::with_config(&cfg);
    assert_eq!(bn.try_listen("127.0.0.1", b_port), Ok(b_port));
    bn.serve("echo");
    let mut b = Member {
        node: bn,
        name: "B".into(),
        port: b_port,
        seen: 0,
    };
    let mut order = Vec::new();
    let mut ms = [&mut a, &mut b];
    let done = pump(
        &mut ms,
        WAIT,
        |i, ev, ms| {
            if ev.kind == XXNET_EVENT_CALL_REQUEST {
                order.push(ev.payload.clone());
                ms[i].node.reply(ev.id, 0, &ev.payload);
            }
        },
        |ms| sessions[..4].iter().all(|&s| result(ms[0], s).is_some()),
    );
    assert!(done, "{}", dump_log(&ms[0].node.log));
    for (i, &s) in sessions[..4].iter().enumerate() {
        let r = result(ms[0], s).unwrap();
        assert_eq!(
            (r.code, r.payload.clone()),
            (XXNET_OK, format!("{i}").into_bytes())
        );
    }
    assert_eq!(
        order,
        vec![b"0".to_vec(), b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]
    );
}

#[test]
fn casts_pushes_and_replies_keep_their_order_on_a_lane() {
    let mut a = Member::new("A");
    let mut b = Member::new("B");
    introduce(&[&a, &b]);
    a.node.serve("push");
    b.node.serve("work");
    b.node.serve("note");
    // A interleaves casts and calls on lane 0 (and some on lane 2).
    let mut calls = Vec::new();
    for i in 0..300u32 {
        let lane = if i % 7 == 0 { 2 } else { 0 };
        let body = format!("{lane}:{i}");
        if i % 3 == 0 {
            calls.push((
                i,
                a.node.call("B", "work", body.as_bytes(), lane, 0).unwrap(),
            ));
        } else {
            assert_eq!(a.node.cast("B", "note", body.as_bytes(), lane), XXNET_OK);
        }
    }
    let n_calls = calls.len();
    // B: for each call, first pushes two casts to A on the same lane, then replies.
    let mut b_seen: Vec<(u32, u32)> = Vec::new();
    let mut ms = [&mut a, &mut b];
    let done = pump(
        &mut ms,
        WAIT,
        |i, ev, ms| {
            if i == 1 && ev.kind == XXNET_EVENT_CALL_REQUEST {
                let text = String::from_utf8(ev.payload.clone()).unwrap();
                let (lane, n) = text.split_once(':').unwrap();
                let (lane, n): (u32, u32) = (lane.parse().unwrap(), n.parse().unwrap());
                assert_eq!(ev.lane, lane, "requests arrive on their lane");
                b_seen.push((lane, n));
                if ev.service == "work" {
                    assert_ne!(ev.id, 0);
                    for k in 0..2 {
                        let push = format!("{n}.{k}");
                        assert_eq!(
                            ms[i].node.cast("A", "push", push.as_bytes(), lane),
                            XXNET_OK
                        );
                    }
                    assert_eq!(ms[i].node.reply(ev.id, 0, text.as_bytes()), XXNET_OK);
                } else {
                    assert_eq!(ev.id, 0, "a cast carries no reply token");
                }
            }
        },
        |ms| ms[0].node.of_kind(XXNET_EVENT_CALL_RESULT).len() == n_calls,
    );
    assert!(done, "{}", dump_log(&ms[0].node.log));
    // B saw each lane's requests in the order A made them.
    for lane in [0, 2] {
        let seq: Vec<u32> = b_seen.iter().filter(|x| x.0 == lane).map(|x| x.1).collect();
        let mut sorted = seq.clone();
        sorted.sort_unstable();
        assert_eq!(seq, sorted, "lane {lane} order");
    }
    assert_eq!(b_seen.len(), 300);
    // At A, both pushes of a call arrive before its reply.
    let mut pushes_before: HashMap<u32, usize> = HashMap::new();
    for e in &ms[0].node.log {
        match e.kind {
            XXNET_EVENT_CALL_REQUEST => {
                let t = String::from_utf8(e.payload.clone()).unwrap();
                let n: u32 = t.split_once('.').unwrap().0.parse().unwrap();
                *pushes_before.entry(n).or_default() += 1;
            }
            XXNET_EVENT_CALL_RESULT => {
                let (n, _) = calls.iter().find(|(_, s)| *s == e.id).unwrap();
                assert_eq!(e.code, XXNET_OK);
                assert_eq!(
                    pushes_before.get(n).copied().unwrap_or(0),
                    2,
                    "reply to call {n} overtook a push"
                );
            }
            _ => {}
        }
    }
}

#[test]
fn reload_adds_moves_and_removes_nodes_and_keeps_the_unchanged() {
    let dir = std::env::temp_dir().join(format!("xxnet-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("clustername.lua");
    let mut a = Member::new("A");
    let mut b = Member::new("B");
    let mut c = Member::new("C");
    for m in [&b, &c] {
        m.node.serve("echo");
    }
    c.node.serve("hold");
    let write = |text: String| std::fs::write(&file, text).unwrap();
    write(format!(
        "-- the cluster\nA = \"{}\"\nB = \"{}\" -- keeps its address\nC = \"{}\"\n",
        a.addr(),
        b.addr(),
        c.addr()
    ));
    let path = file.to_str().unwrap().to_string();
    assert_eq!(a.node.cluster_load(&path).0, XXNET_OK);
    let added: Vec<String> = a
        .node
        .of_kind(XXNET_EVENT_NODE_CHANGED)
        .iter()
        .map(|e| e.node.clone())
        .collect();
    assert!(added.is_empty(), "events come from poll");
    let b1 = a.node.call("B", "echo", b"1", 0, 0).unwrap();
    let c1 = a.node.call("C", "echo", b"1", 0, 0).unwrap();
    let serve = |i: usize, ev: &Ev, ms: &mut [&mut Member]| {
        if ev.kind == XXNET_EVENT_CALL_REQUEST {
            ms[i].node.reply(ev.id, 0, &ev.payload);
        }
    };
    let mut ms = [&mut a, &mut b, &mut c];
    assert!(pump(&mut ms, WAIT, serve, |ms| result(ms[0], b1).is_some()
        && result(ms[0], c1).is_some()));
    let changes: Vec<(String, u64)> = ms[0]
        .node
        .of_kind(XXNET_EVENT_NODE_CHANGED)
        .iter()
        .map(|e| (e.node.clone(), e.id))
        .collect();
    assert_eq!(
        changes,
        vec![
            ("A".into(), XXNET_NODE_ADDED),
            ("B".into(), XXNET_NODE_ADDED),
            ("C".into(), XXNET_NODE_ADDED)
        ]
    );
    let b_conn = result(ms[0], b1).unwrap().conn;

    // A malformed file changes nothing and names the line.
    write(format!("A = \"{}\"\nB = 127.0.0.1:1\n", ms[0].addr()));
    let (rc, why) = ms[0].node.cluster_load(&path);
    assert_eq!(rc, XXNET_E_CLUSTER_FILE);
    assert!(why.contains("clustername.lua:2:"), "{why}");
    assert_eq!(
        ms[0].node.call("C", "echo", b"still", 0, 0).map(|_| ()),
        Ok(())
    );

    // Reload: C removed (a call pending to it), D added; B unchanged.
    let held = ms[0].node.call("C", "hold", b"", 0, 10_000).unwrap();
    pump(&mut ms, Duration::from_millis(100), |_, _, _| {}, |_| false);
    write(format!(
        "A = \"{}\"\nB = \"{}\"\nD = \"127.0.0.1:9\"\n",
        ms[0].addr(),
        ms[1].addr()
    ));
    assert_eq!(ms[0].node.cluster_load(&path).0, XXNET_OK);
    let b2 = ms[0].node.call("B", "echo", b"2", 0, 0).unwrap();
    assert!(pump(&mut ms, WAIT, serve, |ms| result(ms[0], held)
        .is_some()
        && result(ms[0], b2).is_some()));
    assert_eq!(result(ms[0], held).unwrap().code, XXNET_E_NODE_REMOVED);
    let r = result(ms[0], b2).unwrap();
    assert_eq!((r.code, r.conn), (XXNET_OK, b_conn), "B kept its session");
    let changes: Vec<(String, u64)> = ms[0]
        .node
        .of_kind(XXNET_EVENT_NODE_CHANGED)
        .iter()
        .skip(3)
        .map(|e| (e.node.clone(), e.id))
        .collect();
    assert_eq!(
        changes,
        vec![
            ("C".into(), XXNET_NODE_REMOVED),
            ("D".into(), XXNET_NODE_ADDED)
        ]
    );
    assert!(
        ms[0]
            .node
            .of_kind(XXNET_EVENT_DISCONNECTED)
            .iter()
            .all(|e| e.conn != b_conn),
        "B was not disconnected"
    );
    assert_eq!(
        ms[0].node.call("C", "echo", b"", 0, 0),
        Err(XXNET_E_UNKNOWN_NODE)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_big_call_on_the_bulk_lane_leaves_small_calls_flowing() {
    // A 16 MiB payload plus its envelope: above the default 16 MiB maximum.
    let mut a = Member::with("A", |c| c.max_message_size = 32 << 20);
    let mut b = Member::with("B", |c| c.max_message_size = 32 << 20);
    introduce(&[&a, &b]);
    b.node.serve("echo");
    b.node.serve("bulk");
    let big = pattern(16 << 20, 3);
    let big_call = a
        .node
        .call("B", "bulk", &big, XXNET_LANE_BULK, 30_000)
        .unwrap();
    let first_small = a.node.call("B", "echo", b"small", 0, 0).unwrap();
    let mut small_done = 0usize;
    let mut in_flight: Option<(u64, Instant)> = Some((first_small, Instant::now()));
    let mut rtts = Vec::new();
    let mut ms = [&mut a, &mut b];
    let done = pump(
        &mut ms,
        Duration::from_secs(30),
        |i, ev, ms| {
            if ev.kind == XXNET_EVENT_CALL_REQUEST {
                let body = if ev.service == "bulk" {
                    assert_eq!(ev.payload, big, "the big request arrived intact");
                    ev.payload[..1024].to_vec()
                } else {
                    ev.payload.clone()
                };
                ms[i].node.reply(ev.id, 0, &body);
            }
        },
        |ms| {
            if let Some((s, t0)) = in_flight {
                if result(ms[0], s).is_some() {
                    rtts.push(t0.elapsed());
                    small_done += 1;
                    in_flight = None;
                }
            }
            let big_done = result(ms[0], big_call).is_some();
            if in_flight.is_none() && !big_done {
                let s = ms[0].node.call("B", "echo", b"small", 0, 0).unwrap();
                in_flight = Some((s, Instant::now()));
            }
            big_done && in_flight.is_none()
        },
    );
    assert!(done, "{}", dump_log(&ms[0].node.log));
    let r = result(ms[0], big_call).unwrap();
    assert_eq!((r.code, r.payload.len()), (XXNET_OK, 1024));
    // The first small call went out right after the big one and resolved
    // first: lane 0 was not stuck behind 16 MiB on the bulk lane.
    let pos = |id| {
        ms[0]
            .node
            .log
            .iter()
            .position(|e| e.kind == XXNET_EVENT_CALL_RESULT && e.id == id)
            .unwrap()
    };
    assert!(small_done >= 1);
    assert!(
        pos(first_small) < pos(big_call),
        "the small call resolved before the big one"
    );
    rtts.sort();
    eprintln!(
        "{small_done} small calls during the 16 MiB call; median {:?}, max {:?}",
        rtts[rtts.len() / 2],
        rtts.last().unwrap()
    );
}

#[test]
fn calls_need_the_shared_secret_when_one_is_set() {
    let good = b"cluster secret 1".to_vec();
    let bad = b"another secret".to_vec();
    let with_secret = |secret: &Vec<u8>| {
        let p = secret.as_ptr();
        let n = secret.len();
        move |c: &mut xxnet::ffi::types::xxnet_config| {
            c.auth_secret = p;
            c.auth_secret_len = n;
            c.reconnect_give_up_ms = 300;
            c.reconnect_min_ms = 20;
        }
    };
    let mut a = Member::with("A", with_secret(&good));
    let mut b = Member::with("B", with_secret(&good));
    let mut c = Member::with("C", with_secret(&bad));
    introduce(&[&a, &b, &c]);
    for m in [&b, &c] {
        m.node.serve("echo");
    }
    let ok = a.node.call("B", "echo", b"hi", 0, 0).unwrap();
    let refused = a.node.call("C", "echo", b"hi", 0, 5_000).unwrap();
    let serve = |i: usize, ev: &Ev, ms: &mut [&mut Member]| {
        if ev.kind == XXNET_EVENT_CALL_REQUEST {
            ms[i].node.reply(ev.id, 0, &ev.payload);
        }
    };
    let mut ms = [&mut a, &mut b, &mut c];
    assert!(pump(&mut ms, WAIT, serve, |ms| result(ms[0], ok).is_some()
        && result(ms[0], refused).is_some()));
    assert_eq!(result(ms[0], ok).unwrap().code, XXNET_OK);
    assert_eq!(result(ms[0], refused).unwrap().code, XXNET_E_AUTH);
    assert!(
        ms[2].node.of_kind(XXNET_EVENT_CALL_REQUEST).is_empty(),
        "the node with another secret never saw the request"
    );
}

#[test]
fn a_request_for_a_service_withdrawn_while_it_travelled_gets_no_such_service() {
    let mut a = Member::new("A");
    let mut b = Member::new("B");
    introduce(&[&a, &b]);
    b.node.serve("svc");
    let s = a.node.call("B", "svc", b"x", 0, 0).unwrap();
    assert_eq!(a.node.cast("B", "svc", b"abc", 0), XXNET_OK);
    // Let both reach B's queue (B does not poll meanwhile), then withdraw the service.
    let deadline = Instant::now() + WAIT;
    while b.node.stats().msgs_in < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let name = CString::new("svc").unwrap();
    assert_eq!(
        xxnet::ffi::rpc::xxnet_service_unregister(b.node.ctx, name.as_ptr()),
        XXNET_OK
    );
    let mut ms = [&mut a, &mut b];
    assert!(pump(&mut ms, WAIT, no_serve, |ms| result(ms[0], s)
        .is_some()
        && !ms[0].node.of_kind(XXNET_EVENT_SEND_FAILED).is_empty()));
    assert_eq!(result(ms[0], s).unwrap().code, XXNET_E_NO_SERVICE);
    let f = ms[0].node.of_kind(XXNET_EVENT_SEND_FAILED)[0].clone();
    assert_eq!((f.code, f.total), (XXNET_E_NO_SERVICE, 3));
    assert!(ms[1].node.of_kind(XXNET_EVENT_CALL_REQUEST).is_empty());
}
