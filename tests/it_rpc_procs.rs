//! Remote calls between named nodes (issue 5) across three processes: the
//! test process is node A; B and C are child processes (this test binary
//! re-run with `--exact rpc_node --ignored`, see `Proc`). The parent learns
//! each child's port from its stdout, then hands every child the whole
//! directory on stdin (`set NAME ADDR`); children make calls on stdin
//! commands and print every outcome on stdout.
//!
//! Children serve "echo" (the payload back), "hold" (never answered),
//! "leaf" (C: payload + " > C"; held until "release" when the payload
//! contains "hold") and "chain" (B: calls C's "leaf" with payload + " > B",
//! then answers its caller with C's answer + " > B", or, when its call to C
//! failed, with the positive code -(C's result code)).
//!
//! Covered: calls both ways between all three processes and the chained
//! call A→B→C→B→A; a frozen node (SIGSTOP): every pending call to it
//! resolves with XXNET_E_NODE_DOWN within a few idle timeouts, and it
//! serves again after SIGCONT; a killed node (SIGKILL): pending calls get
//! XXNET_E_NODE_DOWN at once, later ones XXNET_E_NODE_UNREACHABLE, and a
//! chain through the dead node returns B's own error code; and in every
//! test exactly one CALL_RESULT per call (at A and at the children).
//!
//! Every wait is bounded; every child is resumed, killed and reaped by its
//! Drop guard, also when an assertion fails. The tests run one at a time
//! (a lock), so the timing bounds hold on a small shared machine.

mod common;

use common::*;
use std::collections::HashMap;
use std::ffi::CString;
use std::io::{BufRead, Write};
use std::os::unix::process::ExitStatusExt;
use std::sync::mpsc::Receiver;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use xxnet::*;

/// Selects the child mode of this binary; its value is the node's name.
const NODE_ENV: &str = "XXNET_RPC_NODE";
/// Comma-separated `field=value` settings of the child's config.
const CFG_ENV: &str = "XXNET_RPC_NODE_CFG";
/// Prefix of every line a child prints for the parent.
const TAG: &str = "XXRPC ";

/// The tests run one at a time: their timing bounds assume the machine is not
/// also busy with another test's three processes.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn config_with(name: &CString, settings: &str) -> xxnet::ffi::types::xxnet_config {
    let mut cfg = default_config();
    cfg.node_name = name.as_ptr();
    for kv in settings.split(',') {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        let v: u32 = v.trim().parse().expect("numeric config value");
        match k.trim() {
            "idle_timeout_ms" => cfg.idle_timeout_ms = v,
            "reconnect_give_up_ms" => cfg.reconnect_give_up_ms = v,
            "reconnect_min_ms" => cfg.reconnect_min_ms = v,
            "reconnect_max_ms" => cfg.reconnect_max_ms = v,
            "connect_timeout_ms" => cfg.connect_timeout_ms = v,
            "call_timeout_ms" => cfg.call_timeout_ms = v,
            other => panic!("unknown config field {other}"),
        }
    }
    cfg
}

// ----- the child side ----------------------------------------------------------

#[test]
#[ignore = "node B or C of the tests in this file (they start it)"]
fn rpc_node() {
    let Ok(name) = std::env::var(NODE_ENV) else {
        eprintln!("rpc_node: not started as a child node; nothing to do");
        return;
    };
    let cname = CString::new(name.clone()).unwrap();
    let cfg = config_with(&cname, &std::env::var(CFG_ENV).unwrap_or_default());
    let mut node = Node::with_config(&cfg);
    let port = node.listen("127.0.0.1");
    println!("\n{TAG}port={port}");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                return;
            }
        }
        let _ = tx.send("exit".into());
    });
    for s in ["echo", "hold"] {
        node.serve(s);
    }
    match name.as_str() {
        "B" => node.serve("chain"),
        "C" => node.serve("leaf"),
        _ => {}
    }
    // Calls made on a stdin command: session → tag.
    let mut tagged: HashMap<u64, String> = HashMap::new();
    // B's calls to C for a chain: session → the chain request's token.
    let mut chains: HashMap<u64, u64> = HashMap::new();
    // C's held leaf requests: (token, payload).
    let mut held: Vec<(u64, Vec<u8>)> = Vec::new();
    // "hold" tokens are kept (never answered) so nothing reclaims them.
    let mut holds: Vec<u64> = Vec::new();
    let mut seen = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        node.poll(5);
        let fresh: Vec<Ev> = node.log[seen..].to_vec();
        seen = node.log.len();
        for ev in fresh {
            match ev.kind {
                XXNET_EVENT_CALL_REQUEST => {
                    println!(
                        "{TAG}req service={} from={} len={}",
                        ev.service,
                        ev.node,
                        ev.payload.len()
                    );
                    match ev.service.as_str() {
                        "echo" => {
                            let rc = node.reply(ev.id, 0, &ev.payload);
                            assert_eq!(rc, XXNET_OK, "echo reply: {}", strerror(rc));
                        }
                        "hold" => holds.push(ev.id),
                        "leaf" => {
                            if ev.payload.windows(4).any(|w| w == b"hold") {
                                held.push((ev.id, ev.payload.clone()));
                                println!("{TAG}held n={}", held.len());
                            } else {
                                let mut out = ev.payload.clone();
                                out.extend_from_slice(b" > C");
                                let rc = node.reply(ev.id, 0, &out);
                                assert_eq!(rc, XXNET_OK, "leaf reply: {}", strerror(rc));
                            }
                        }
                        "chain" => {
                            let mut out = ev.payload.clone();
                            out.extend_from_slice(b" > B");
                            match node.call("C", "leaf", &out, 0, 0) {
                                Ok(s) => {
                                    chains.insert(s, ev.id);
                                }
                                Err(code) => {
                                    let rc = node.reply(ev.id, -code, b"call to C refused");
                                    println!("{TAG}chain code={code} reply_rc={rc}");
                                }
                            }
                        }
                        _ => {}
                    }
                }
                XXNET_EVENT_CALL_RESULT => {
                    if let Some(tag) = tagged.remove(&ev.id) {
                        println!(
                            "{TAG}result tag={tag} code={} node={} payload={}",
                            ev.code,
                            ev.node,
                            hex(&ev.payload)
                        );
                    } else if let Some(token) = chains.remove(&ev.id) {
                        let rc = if ev.code == XXNET_OK {
                            let mut out = ev.payload.clone();
                            out.extend_from_slice(b" > B");
                            node.reply(token, 0, &out)
                        } else {
                            // Propagate C's failure as a code of B's own.
                            let msg = format!("leaf failed: {}", ev.code);
                            node.reply(token, -ev.code, msg.as_bytes())
                        };
                        println!("{TAG}chain code={} reply_rc={rc}", ev.code);
                    } else {
                        println!("{TAG}stray result session={} code={}", ev.id, ev.code);
                    }
                }
                _ => {}
            }
        }
        while let Ok(cmd) = rx.try_recv() {
            let parts: Vec<&str> = cmd.trim().splitn(6, ' ').collect();
            match parts.as_slice() {
                ["set", n, addr] => {
                    let rc = node.cluster_set(n, addr);
                    assert_eq!(rc, XXNET_OK, "cluster_set {n} {addr}: {}", strerror(rc));
                }
                ["ready"] => println!("{TAG}ready"),
                ["call", tag, n, service, timeout, rest @ ..] => {
                    let payload = rest.first().copied().unwrap_or("");
                    let timeout: u32 = timeout.parse().unwrap();
                    match node.call(n, service, payload.as_bytes(), 0, timeout) {
                        Ok(s) => {
                            tagged.insert(s, tag.to_string());
                        }
                        Err(code) => {
                            println!("{TAG}result tag={tag} code={code} node={n} payload=")
                        }
                    }
                }
                ["release"] => {
                    for (token, mut p) in held.drain(..) {
                        p.extend_from_slice(b" > C");
                        let rc = node.reply(token, 0, &p);
                        println!("{TAG}released rc={rc}");
                    }
                }
                ["exit"] => std::process::exit(0),
                _ => eprintln!("rpc_node {name}: unknown command {cmd:?}"),
            }
        }
        if Instant::now() > deadline {
            eprintln!("rpc_node {name}: 60 s are up, exiting");
            std::process::exit(3);
        }
    }
}

// ----- the parent side ---------------------------------------------------------

/// One child node process. Drop resumes (SIGCONT), kills (SIGKILL) and reaps it.
/// It also exits when its stdin closes or after 60 s.
struct Proc {
    name: String,
    pid: i32,
    port: u16,
    child: Option<std::process::Child>,
    stdin: Option<std::process::ChildStdin>,
    rx: Receiver<String>,
    /// Every `XXRPC` line so far (without the prefix), in order.
    lines: Vec<String>,
}

impl Proc {
    fn spawn(name: &str, cfg: &str) -> Proc {
        // The harness may print "test rpc_node ... " on the same line as a tagged one.
        let (mut child, rx) = spawn_self(
            "rpc_node",
            &[(NODE_ENV, name), (CFG_ENV, cfg)],
            name,
            |line| line.find(TAG).map(|i| line[i + TAG.len()..].to_string()),
        );
        let pid = child.id() as i32;
        let mut p = Proc {
            name: name.to_string(),
            pid,
            port: 0,
            stdin: child.stdin.take(),
            child: Some(child),
            rx,
            lines: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.port == 0 {
            assert!(Instant::now() < deadline, "child {name} printed no port");
            p.drain();
            if let Some(l) = p.lines.iter().find(|l| l.starts_with("port=")) {
                p.port = l["port=".len()..].trim().parse().unwrap();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        p
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn drain(&mut self) {
        while let Ok(l) = self.rx.try_recv() {
            self.lines.push(l);
        }
    }

    fn command(&mut self, cmd: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = writeln!(s, "{cmd}");
            let _ = s.flush();
        }
    }

    /// Tells the child to call `service` on `node`; its outcome comes as a `result tag=` line.
    fn call(&mut self, tag: &str, node: &str, service: &str, timeout_ms: u32, payload: &str) {
        assert!(!payload.contains(' ') && !tag.contains(' '));
        self.command(&format!(
            "call {tag} {node} {service} {timeout_ms} {payload}"
        ));
    }

    fn count(&self, prefix: &str) -> usize {
        self.lines.iter().filter(|l| l.starts_with(prefix)).count()
    }

    /// The child's result lines for `tag`: (code, node, payload).
    fn results(&self, tag: &str) -> Vec<(i32, String, Vec<u8>)> {
        let want = format!("result tag={tag} ");
        self.lines
            .iter()
            .filter(|l| l.starts_with(&want))
            .map(|l| {
                let kv: HashMap<&str, &str> =
                    l.split(' ').filter_map(|x| x.split_once('=')).collect();
                (
                    kv["code"].parse().unwrap(),
                    kv["node"].to_string(),
                    unhex(kv["payload"]),
                )
            })
            .collect()
    }

    fn result(&self, tag: &str) -> Option<(i32, String, Vec<u8>)> {
        self.results(tag).into_iter().next()
    }

    fn signal(&self, sig: i32) {
        if self.child.is_some() {
            let rc = unsafe { libc::kill(self.pid, sig) };
            assert_eq!(rc, 0, "kill({}, {sig})", self.pid);
        }
    }

    /// SIGSTOP; returns once every thread of the child is stopped.
    fn freeze(&self) {
        self.signal(libc::SIGSTOP);
        wait_stopped(self.pid);
    }

    fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    /// SIGKILL and reap; the wait status.
    fn kill(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        unsafe {
            libc::kill(self.pid, libc::SIGCONT);
            libc::kill(self.pid, libc::SIGKILL);
        }
        self.stdin = None;
        child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Node A (this process) and the children B and C.
struct Net {
    a: Node,
    seen: usize,
    b: Proc,
    c: Proc,
    /// Sessions of the calls A made.
    issued: Vec<u64>,
    /// Tags of the calls the children made, per child (0: B, 1: C).
    tags: [Vec<String>; 2],
}

impl Net {
    /// A with `a_cfg`, B with `b_cfg`, C with `c_cfg`; everybody knows everybody.
    fn start(a_cfg: &str, b_cfg: &str, c_cfg: &str) -> Net {
        let t0 = Instant::now();
        let name = CString::new("A").unwrap();
        let a = Node::with_config(&config_with(&name, a_cfg));
        let a_port = a.listen("127.0.0.1");
        a.serve("echo");
        let b = Proc::spawn("B", b_cfg);
        let c = Proc::spawn("C", c_cfg);
        let mut net = Net {
            a,
            seen: 0,
            b,
            c,
            issued: Vec::new(),
            tags: [Vec::new(), Vec::new()],
        };
        let dir = [
            ("A", format!("127.0.0.1:{a_port}")),
            ("B", net.b.addr()),
            ("C", net.c.addr()),
        ];
        for (n, addr) in &dir {
            assert_eq!(net.a.cluster_set(n, addr), XXNET_OK);
            for p in [&mut net.b, &mut net.c] {
                p.command(&format!("set {n} {addr}"));
            }
        }
        net.b.command("ready");
        net.c.command("ready");
        let ok = net.pump_until(WAIT, |n| n.b.count("ready") == 1 && n.c.count("ready") == 1);
        assert!(ok, "children got the directory");
        eprintln!(
            "three nodes up in {:?}: A {a_port}, B {} (pid {}), C {} (pid {})",
            t0.elapsed(),
            net.b.port,
            net.b.pid,
            net.c.port,
            net.c.pid
        );
        net
    }

    fn proc(&mut self, i: usize) -> &mut Proc {
        if i == 0 {
            &mut self.b
        } else {
            &mut self.c
        }
    }

    /// A calls; the call must be accepted.
    fn call(&mut self, node: &str, service: &str, payload: &[u8], timeout_ms: u32) -> u64 {
        let s = self
            .a
            .call(node, service, payload, 0, timeout_ms)
            .unwrap_or_else(|c| panic!("A's call {node}.{service}: {}", strerror(c)));
        self.issued.push(s);
        s
    }

    /// Child `i` (0: B, 1: C) calls.
    fn child_call(
        &mut self,
        i: usize,
        tag: &str,
        node: &str,
        service: &str,
        timeout_ms: u32,
        payload: &str,
    ) {
        self.tags[i].push(tag.to_string());
        self.proc(i).call(tag, node, service, timeout_ms, payload);
    }

    /// One round: A polls and serves, the children's lines are collected.
    fn step(&mut self) {
        self.a.poll(2);
        let fresh: Vec<Ev> = self.a.log[self.seen..].to_vec();
        self.seen = self.a.log.len();
        for ev in fresh {
            if ev.kind == XXNET_EVENT_CALL_REQUEST && ev.service == "echo" {
                let rc = self.a.reply(ev.id, 0, &ev.payload);
                assert_eq!(rc, XXNET_OK, "A's echo reply: {}", strerror(rc));
            }
        }
        self.b.drain();
        self.c.drain();
    }

    fn pump_until(&mut self, timeout: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.step();
        }
    }

    fn pump_for(&mut self, dur: Duration) {
        self.pump_until(dur, |_| false);
    }

    fn result(&self, s: u64) -> Option<&Ev> {
        self.a.result_of(s)
    }

    fn results_in(&self, ss: &[u64]) -> bool {
        ss.iter().all(|&s| self.result(s).is_some())
    }

    fn diag(&self) -> String {
        format!(
            "A's events:\n{}B's lines: {:?}\nC's lines: {:?}",
            dump_log(&self.a.log),
            self.b.lines,
            self.c.lines
        )
    }

    /// Exactly one CALL_RESULT per call made at A (none for a session A did not
    /// make), and exactly one result line per call a child made, after more
    /// polling (a late duplicate would show).
    fn exactly_once(&mut self) {
        self.pump_for(Duration::from_millis(300));
        let mut per: HashMap<u64, usize> = HashMap::new();
        for e in self.a.of_kind(XXNET_EVENT_CALL_RESULT) {
            *per.entry(e.id).or_default() += 1;
        }
        for s in &self.issued {
            assert_eq!(
                per.get(s),
                Some(&1),
                "CALL_RESULTs of session {s} at A:\n{}",
                self.diag()
            );
        }
        assert_eq!(
            per.len(),
            self.issued.len(),
            "results for sessions A never made: {per:?}"
        );
        for i in 0..2 {
            let p = if i == 0 { &self.b } else { &self.c };
            for t in &self.tags[i] {
                assert_eq!(
                    p.results(t).len(),
                    1,
                    "{}'s results for {t}: {:?}",
                    p.name,
                    p.lines
                );
            }
            assert_eq!(
                p.count("result "),
                self.tags[i].len(),
                "{}: {:?}",
                p.name,
                p.lines
            );
            assert_eq!(p.count("stray "), 0, "{}: {:?}", p.name, p.lines);
        }
        eprintln!(
            "exactly once: {} calls from A, {} from B, {} from C, one result each",
            self.issued.len(),
            self.tags[0].len(),
            self.tags[1].len()
        );
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ----- the tests -----------------------------------------------------------------

#[test]
fn calls_both_ways_and_a_chain_across_three_processes() {
    let _serial = serial();
    let t0 = Instant::now();
    let mut net = Net::start("", "", "");

    // A → B, A → C, and the chain A → B → C → B → A, several of each at once.
    let mut plain = Vec::new();
    for i in 0..10 {
        for node in ["B", "C"] {
            let body = format!("a{i}-to-{node}").into_bytes();
            plain.push((net.call(node, "echo", &body, 0), node, body));
        }
    }
    let chains: Vec<(u64, String)> = (0..5)
        .map(|i| {
            let body = format!("hop{i}");
            (net.call("B", "chain", body.as_bytes(), 0), body)
        })
        .collect();
    // The other directions: B → A, C → A, B → C, C → B.
    for i in 0..5 {
        net.child_call(0, &format!("b2a{i}"), "A", "echo", 0, &format!("b{i}-to-A"));
        net.child_call(1, &format!("c2a{i}"), "A", "echo", 0, &format!("c{i}-to-A"));
        net.child_call(0, &format!("b2c{i}"), "C", "echo", 0, &format!("b{i}-to-C"));
        net.child_call(1, &format!("c2b{i}"), "B", "echo", 0, &format!("c{i}-to-B"));
    }
    let mut sessions: Vec<u64> = plain.iter().map(|p| p.0).collect();
    sessions.extend(chains.iter().map(|c| c.0));
    let ok = net.pump_until(WAIT, |n| {
        n.results_in(&sessions)
            && (0..5).all(|i| {
                n.b.result(&format!("b2a{i}")).is_some()
                    && n.b.result(&format!("b2c{i}")).is_some()
                    && n.c.result(&format!("c2a{i}")).is_some()
                    && n.c.result(&format!("c2b{i}")).is_some()
            })
    });
    assert!(ok, "every call resolves:\n{}", net.diag());
    for (s, node, body) in &plain {
        let r = net.result(*s).unwrap();
        assert_eq!(
            (r.code, r.node.as_str(), &r.payload),
            (XXNET_OK, *node, body),
            "{r}"
        );
    }
    for (s, body) in &chains {
        let r = net.result(*s).unwrap();
        assert_eq!(
            (r.code, r.node.as_str(), text(&r.payload)),
            (XXNET_OK, "B", format!("{body} > B > C > B")),
            "the chained call A→B→C→B→A"
        );
    }
    for i in 0..5 {
        for (p, tag, node, body) in [
            (&net.b, format!("b2a{i}"), "A", format!("b{i}-to-A")),
            (&net.b, format!("b2c{i}"), "C", format!("b{i}-to-C")),
            (&net.c, format!("c2a{i}"), "A", format!("c{i}-to-A")),
            (&net.c, format!("c2b{i}"), "B", format!("c{i}-to-B")),
        ] {
            let (code, n, payload) = p.result(&tag).unwrap();
            assert_eq!(
                (code, n.as_str(), text(&payload)),
                (XXNET_OK, node, body),
                "{tag}"
            );
        }
    }
    // The callers' names travel with the requests: A saw B and C, C saw A's chain through B.
    let from: Vec<String> = net
        .a
        .of_kind(XXNET_EVENT_CALL_REQUEST)
        .iter()
        .map(|e| e.node.clone())
        .collect();
    assert_eq!(from.iter().filter(|n| *n == "B").count(), 5, "{from:?}");
    assert_eq!(from.iter().filter(|n| *n == "C").count(), 5, "{from:?}");
    assert_eq!(
        net.c.count("req service=leaf from=B"),
        5,
        "{:?}",
        net.c.lines
    );
    assert_eq!(
        net.b.count("req service=chain from=A"),
        5,
        "{:?}",
        net.b.lines
    );
    assert_eq!(
        net.b.count("req service=echo from=C"),
        5,
        "{:?}",
        net.b.lines
    );
    net.exactly_once();
    eprintln!("calls both ways and chains: {:?} in all", t0.elapsed());
}

const IDLE_MS: u64 = 600;

#[test]
fn a_frozen_node_fails_its_pending_calls_then_serves_again() {
    let _serial = serial();
    let t_all = Instant::now();
    let mut net = Net::start(
        &format!(
            "idle_timeout_ms={IDLE_MS},connect_timeout_ms=500,reconnect_min_ms=20,\
             reconnect_max_ms=200,reconnect_give_up_ms=30000"
        ),
        "",
        "",
    );
    // Connections up and working.
    let warm = [
        net.call("B", "echo", b"warm", 0),
        net.call("B", "chain", b"warm", 0),
    ];
    assert!(
        net.pump_until(WAIT, |n| n.results_in(&warm)),
        "{}",
        net.diag()
    );
    assert_eq!(net.result(warm[1]).unwrap().payload, b"warm > B > C > B");

    // Pending on B: three "hold" calls, and a chain whose leaf C holds.
    let mut pending: Vec<u64> = (0..3)
        .map(|i| net.call("B", "hold", format!("h{i}").as_bytes(), 10_000))
        .collect();
    pending.push(net.call("B", "chain", b"please-hold", 10_000));
    let arrived = net.pump_until(WAIT, |n| {
        n.b.count("req service=hold from=A") == 3 && n.c.count("held n=1") == 1
    });
    assert!(
        arrived,
        "B holds 3 requests and C the chain's:\n{}",
        net.diag()
    );
    assert!(
        pending.iter().all(|&s| net.result(s).is_none()),
        "{}",
        net.diag()
    );

    let frozen_at = Instant::now();
    net.b.freeze();
    // C is not affected meanwhile.
    let c_ok = net.call("C", "echo", b"C still fine", 0);
    let ok = net.pump_until(Duration::from_millis(IDLE_MS * 6), |n| {
        n.results_in(&pending)
    });
    assert!(
        ok,
        "every pending call to frozen B resolved:\n{}",
        net.diag()
    );
    let mut last = Duration::ZERO;
    for &s in &pending {
        let r = net.result(s).unwrap().clone();
        assert_eq!(r.code, XXNET_E_NODE_DOWN, "{r}");
        assert!(r.payload.is_empty());
        assert_eq!(r.node, "B");
        last = last.max(r.at.duration_since(frozen_at));
    }
    let first = pending
        .iter()
        .map(|&s| net.result(s).unwrap().at.duration_since(frozen_at))
        .min()
        .unwrap();
    eprintln!(
        "frozen B: {} pending calls resolved with XXNET_E_NODE_DOWN {first:.2?} .. {last:.2?} after SIGSTOP \
         (idle_timeout_ms = {IDLE_MS})",
        pending.len()
    );
    assert!(
        last <= Duration::from_millis(3 * IDLE_MS),
        "NODE_DOWN took {last:?} (bound 3 × {IDLE_MS} ms)"
    );
    assert!(
        first >= Duration::from_millis(IDLE_MS / 2),
        "declared down before the idle timeout could pass: {first:?}"
    );
    assert!(net.pump_until(WAIT, |n| n.result(c_ok).is_some()));
    let r = net.result(c_ok).unwrap();
    assert_eq!(
        (r.code, r.payload.as_slice()),
        (XXNET_OK, &b"C still fine"[..])
    );

    // A call made while B is still frozen waits for the connection.
    let during = net.call("B", "echo", b"made while frozen", 10_000);
    net.pump_for(Duration::from_millis(300));
    assert!(net.result(during).is_none(), "{}", net.diag());
    let frozen_for = frozen_at.elapsed();
    net.b.thaw();
    let thawed_at = Instant::now();
    // C answers the held leaf now: B answers A's chain request late; A already
    // resolved that call, so the late reply must not make a second result.
    net.c.command("release");
    let after = [
        net.call("B", "echo", b"after thaw", 0),
        net.call("B", "chain", b"again", 0),
    ];
    let ok = net.pump_until(WAIT, |n| {
        n.result(during).is_some() && n.results_in(&after) && n.b.count("chain code=0 ") == 3
    });
    assert!(ok, "B serves again after SIGCONT:\n{}", net.diag());
    let since_thaw = |s: u64| {
        net.result(s)
            .unwrap()
            .at
            .saturating_duration_since(thawed_at)
    };
    eprintln!(
        "B was frozen {frozen_for:.2?}; after SIGCONT: the call made while frozen resolved {:.2?} later, \
         new echo {:.2?}, new chain {:.2?}; B's chain lines (the 2nd is the late reply to A's resolved call): {:?}",
        since_thaw(during),
        since_thaw(after[0]),
        since_thaw(after[1]),
        net.b.lines.iter().filter(|l| l.starts_with("chain ")).collect::<Vec<_>>()
    );
    let r = net.result(during).unwrap();
    assert_eq!(
        (r.code, r.payload.as_slice()),
        (XXNET_OK, &b"made while frozen"[..]),
        "{r}"
    );
    let r = net.result(after[0]).unwrap();
    assert_eq!(
        (r.code, r.payload.as_slice()),
        (XXNET_OK, &b"after thaw"[..]),
        "{r}"
    );
    let r = net.result(after[1]).unwrap();
    assert_eq!(
        (r.code, text(&r.payload)),
        (XXNET_OK, "again > B > C > B".into()),
        "{r}"
    );
    net.exactly_once();
    eprintln!("frozen node test: {:?} in all", t_all.elapsed());
}

const GIVE_UP_MS: u64 = 500;

#[test]
fn a_killed_node_fails_pending_calls_then_is_unreachable() {
    let _serial = serial();
    let t_all = Instant::now();
    let fast = format!("reconnect_min_ms=20,reconnect_max_ms=100,reconnect_give_up_ms={GIVE_UP_MS},connect_timeout_ms=500");
    let mut net = Net::start(&fast, &format!("{fast},call_timeout_ms=5000"), "");
    let warm = [
        net.call("C", "echo", b"warm", 0),
        net.call("B", "chain", b"warm", 0),
    ];
    assert!(
        net.pump_until(WAIT, |n| n.results_in(&warm)),
        "{}",
        net.diag()
    );
    assert_eq!(net.result(warm[1]).unwrap().payload, b"warm > B > C > B");

    // Pending on C: three calls from A, one from B.
    let pending: Vec<u64> = (0..3)
        .map(|i| net.call("C", "hold", format!("h{i}").as_bytes(), 10_000))
        .collect();
    net.child_call(0, "b-hold", "C", "hold", 10_000, "from-B");
    let arrived = net.pump_until(WAIT, |n| {
        n.c.count("req service=hold from=A") == 3 && n.c.count("req service=hold from=B") == 1
    });
    assert!(arrived, "C holds 4 requests:\n{}", net.diag());

    let killed_at = Instant::now();
    let status = net.c.kill(); // SIGKILL by pid, then waitpid
    let reaped = killed_at.elapsed();
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "C died of SIGKILL, reaped"
    );
    let ok = net.pump_until(WAIT, |n| {
        n.results_in(&pending) && n.b.result("b-hold").is_some()
    });
    assert!(ok, "pending calls to killed C resolved:\n{}", net.diag());
    let mut last = Duration::ZERO;
    for &s in &pending {
        let r = net.result(s).unwrap();
        assert_eq!((r.code, r.node.as_str()), (XXNET_E_NODE_DOWN, "C"), "{r}");
        last = last.max(r.at.duration_since(killed_at));
    }
    let (code, _, _) = net.b.result("b-hold").unwrap();
    assert_eq!(code, XXNET_E_NODE_DOWN, "B's pending call to C");
    eprintln!(
        "killed C (reaped {reaped:.2?} after SIGKILL): A's {} pending calls resolved with \
         XXNET_E_NODE_DOWN {last:.2?} after SIGKILL",
        pending.len()
    );
    assert!(
        last < Duration::from_millis(1000),
        "NODE_DOWN took {last:?}"
    );

    // A's session with C gives up after reconnect_give_up_ms.
    let c_conn = net.result(pending[0]).unwrap().conn;
    let ended = net.pump_until(WAIT, |n| {
        n.a.log
            .iter()
            .any(|e| e.kind == XXNET_EVENT_DISCONNECTED && e.conn == c_conn)
    });
    assert!(ended, "A's session with C ended:\n{}", net.diag());
    let disc = net
        .a
        .log
        .iter()
        .find(|e| e.kind == XXNET_EVENT_DISCONNECTED && e.conn == c_conn)
        .unwrap()
        .clone();
    eprintln!(
        "A gave C up {:.2?} after SIGKILL (reconnect_give_up_ms = {GIVE_UP_MS}): {}",
        disc.at.duration_since(killed_at),
        ev_str(&disc)
    );

    // Later calls to C: unreachable, whether the node's give-up or the call's
    // own (shorter) deadline comes first.
    let asked_at = Instant::now();
    let late_long = net.call("C", "echo", b"anyone?", 10_000);
    let late_short = net.call("C", "echo", b"anyone, quick?", 200);
    // And the chain through dead C: B's call to C fails; B answers A with a code of its own.
    let chain = net.call("B", "chain", b"to-dead-C", 10_000);
    let ok = net.pump_until(WAIT, |n| {
        n.results_in(&[late_long, late_short, chain]) && n.b.count("chain ") == 2
    });
    assert!(ok, "{}", net.diag());
    for (s, what) in [
        (late_long, "deadline 10 s"),
        (late_short, "deadline 200 ms"),
    ] {
        let r = net.result(s).unwrap();
        eprintln!(
            "later call to dead C ({what}): {} after {:.2?}",
            strerror(r.code),
            r.at.duration_since(asked_at)
        );
        assert_eq!(r.code, XXNET_E_NODE_UNREACHABLE, "{what}: {r}");
    }
    let r = net.result(chain).unwrap().clone();
    eprintln!(
        "chain through dead C: A got code {} payload {:?} after {:.2?}; B's lines {:?}",
        r.code,
        text(&r.payload),
        r.at.duration_since(asked_at),
        net.b
            .lines
            .iter()
            .filter(|l| l.starts_with("chain "))
            .collect::<Vec<_>>()
    );
    assert_eq!(r.node, "B");
    assert_eq!(
        (r.code, text(&r.payload)),
        (
            -XXNET_E_NODE_UNREACHABLE,
            format!("leaf failed: {XXNET_E_NODE_UNREACHABLE}")
        ),
        "B propagated its failed call to C as its own positive code"
    );
    // B and A still talk.
    let b_ok = net.call("B", "echo", b"B fine", 0);
    assert!(net.pump_until(WAIT, |n| n.result(b_ok).is_some()));
    assert_eq!(net.result(b_ok).unwrap().code, XXNET_OK);
    net.exactly_once();
    eprintln!("killed node test: {:?} in all", t_all.elapsed());
}
