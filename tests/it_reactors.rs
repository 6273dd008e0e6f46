//! Per-thread reactors (`io_threads`, issue 7, seed 003): sessions spread
//! over the reactors by conn id, each keeps its order and its reactor for its
//! whole life (across reconnects), results reach the host through the one
//! poll, max_connections counts every reactor, and bad values are refused.
//!
//! The whole integration suite also runs with `XXNET_TEST_IO_THREADS=2`
//! (scripts/test.sh); these tests set `io_threads` themselves.

mod common;

use common::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use xxnet::ffi::context::*;
use xxnet::ffi::types::xxnet_stats;
use xxnet::*;

fn reactor_stats(node: &Node, k: u32) -> Result<xxnet_stats, i32> {
    let mut s = xxnet_stats::default();
    match xxnet_reactor_stats(node.ctx, k, &mut s) {
        XXNET_OK => Ok(s),
        rc => Err(rc),
    }
}

fn server(io_threads: u32) -> (Node, u16) {
    let mut cfg = default_config();
    cfg.io_threads = io_threads;
    let node = Node::with_config(&cfg);
    let port = node.listen("127.0.0.1");
    (node, port)
}

fn payload(client: usize, seq: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&(client as u32).to_le_bytes());
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend((0..56u32).map(|i| (i * 7 + seq + client as u32) as u8));
    p
}

/// Clients each send `per` numbered messages; the server checks that every
/// session's messages arrive complete and in order, answers each session by
/// its conn id, and returns the conn ids it saw.
fn exchange(server: &mut Node, port: u16, clients: &mut [Node], per: u32) -> Vec<u64> {
    for (c, node) in clients.iter_mut().enumerate() {
        for seq in 0..per {
            // Sends queue without blocking while the session connects.
            node.send_ok("127.0.0.1", port, 0, 1, &payload(c, seq));
        }
    }
    let total = clients.len() * per as usize;
    assert!(
        server.poll_until(WAIT * 3, |log| log
            .iter()
            .filter(|e| e.kind == XXNET_EVENT_MESSAGE)
            .count()
            >= total),
        "server got {} of {total} messages",
        server.count_msgs()
    );
    // Per conn: which client, and the next expected sequence number.
    let mut next: HashMap<u64, (u32, u32)> = HashMap::new();
    for e in server.messages() {
        let client = u32::from_le_bytes(e.payload[0..4].try_into().unwrap());
        let seq = u32::from_le_bytes(e.payload[4..8].try_into().unwrap());
        let entry = next.entry(e.conn).or_insert((client, 0));
        assert_eq!(entry.0, client, "conn {} carries two clients", e.conn);
        assert_eq!(seq, entry.1, "conn {}: out of order", e.conn);
        assert_eq!(
            e.payload,
            payload(client as usize, seq),
            "payload corrupted"
        );
        entry.1 += 1;
    }
    assert_eq!(next.len(), clients.len(), "one session per client");
    assert!(next.values().all(|&(_, n)| n == per));
    // Answers by conn id go to the reactor owning each session.
    let conns: Vec<u64> = next.keys().copied().collect();
    for &conn in &conns {
        assert_eq!(server.send_conn(conn, 0, 2, &conn.to_le_bytes()), XXNET_OK);
    }
    for node in clients.iter_mut() {
        assert!(node.poll_until(WAIT, |log| log
            .iter()
            .any(|e| e.kind == XXNET_EVENT_MESSAGE && e.msg_id == 2)));
    }
    conns
}

#[test]
fn sessions_spread_over_reactors_by_conn_id_and_keep_their_order() {
    let (mut srv, port) = server(2);
    let mut clients: Vec<Node> = (0..6).map(|_| Node::new()).collect();
    let conns = exchange(&mut srv, port, &mut clients, 2_000);
    let on = |k: u64| conns.iter().filter(|&&c| c % 2 == k).count();
    eprintln!(
        "conns {conns:?}: {} on reactor 0, {} on reactor 1",
        on(0),
        on(1)
    );
    assert!(
        on(0) >= 1 && on(1) >= 1,
        "six accepted sessions all landed on one reactor: {conns:?}"
    );
    // Each reactor's own counters: its sessions and the messages they carried.
    let deadline = Instant::now() + WAIT;
    let (r0, r1) = loop {
        let r0 = reactor_stats(&srv, 0).unwrap();
        let r1 = reactor_stats(&srv, 1).unwrap();
        if r0.msgs_in + r1.msgs_in == 12_000 || Instant::now() > deadline {
            break (r0, r1);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(r0.open_connections as usize, on(0));
    assert_eq!(r1.open_connections as usize, on(1));
    assert_eq!(r0.msgs_in as usize, on(0) * 2_000);
    assert_eq!(r1.msgs_in as usize, on(1) * 2_000);
    let all = srv.stats();
    assert_eq!(all.msgs_in, 12_000);
    assert_eq!(all.open_connections, 6);
    assert_eq!(all.accepted_connections, 6);
    assert_eq!(
        reactor_stats(&srv, 2).unwrap_err(),
        XXNET_E_INVALID_ARG,
        "no third reactor"
    );
}

#[test]
fn outgoing_sessions_spread_too_and_reach_the_host_through_one_poll() {
    // A client with 3 reactors dialling 6 servers: its sessions spread, and
    // every server's answer comes back through the client's one poll.
    let mut cfg = default_config();
    cfg.io_threads = 3;
    let mut client = Node::with_config(&cfg);
    let mut servers: Vec<(Node, u16)> = (0..6).map(|_| server(1)).collect();
    for (i, (_, port)) in servers.iter().enumerate() {
        for seq in 0..500u32 {
            client.send_ok("127.0.0.1", *port, 0, 1, &payload(i, seq));
        }
    }
    for (i, (srv, _)) in servers.iter_mut().enumerate() {
        assert!(srv.poll_until(WAIT, |log| log
            .iter()
            .filter(|e| e.kind == XXNET_EVENT_MESSAGE)
            .count()
            == 500));
        for (seq, e) in srv.messages().enumerate() {
            assert_eq!(
                e.payload,
                payload(i, seq as u32),
                "server {i}: order or payload"
            );
        }
        let conn = srv.messages().next().unwrap().conn;
        assert_eq!(srv.send_conn(conn, 0, 9, &[i as u8]), XXNET_OK);
    }
    assert!(client.poll_until(WAIT, |log| log
        .iter()
        .filter(|e| e.kind == XXNET_EVENT_MESSAGE && e.msg_id == 9)
        .count()
        == 6));
    let conns: Vec<u64> = client
        .of_kind(XXNET_EVENT_CONNECTED)
        .iter()
        .map(|e| e.conn)
        .collect();
    assert_eq!(conns.len(), 6);
    for k in 0..3 {
        let here = conns.iter().filter(|&&c| c % 3 == k).count();
        let s = reactor_stats(&client, k as u32).unwrap();
        assert_eq!(s.open_connections as usize, here, "reactor {k}");
        assert_eq!(s.msgs_out as usize, here * 500, "reactor {k}");
    }
    assert!(
        (0..3).all(|k| conns.iter().any(|&c| c % 3 == k)),
        "six destinations bound round-robin cover all three reactors: {conns:?}"
    );
}

#[test]
fn a_session_keeps_its_reactor_and_conn_id_across_a_reconnect() {
    // Both sides have 2 reactors. The server closes the connection; the
    // client's session redials and resumes: same conn id on both sides,
    // nothing lost or repeated.
    let (mut srv, port) = server(2);
    let mut cfg = default_config();
    cfg.io_threads = 2;
    let mut cli = Node::with_config(&cfg);
    for seq in 0..100u32 {
        cli.send_ok("127.0.0.1", port, 0, 1, &payload(0, seq));
    }
    assert!(srv.poll_until(WAIT, |l| l
        .iter()
        .filter(|e| e.kind == XXNET_EVENT_MESSAGE)
        .count()
        == 100));
    let conn = srv.messages().next().unwrap().conn;
    let before = srv.stats();
    // Cut the TCP connection under the session from the server side: find
    // its socket by the client's port and shut it down.
    let cli_conn = {
        assert!(cli.poll_until(WAIT, |l| l.iter().any(|e| e.kind == XXNET_EVENT_CONNECTED)));
        cli.of_kind(XXNET_EVENT_CONNECTED)[0].conn
    };
    assert!(kill_tcp_to(port), "no established connection found to cut");
    for seq in 100..200u32 {
        cli.send_ok("127.0.0.1", port, 0, 1, &payload(0, seq));
    }
    assert!(
        srv.poll_until(WAIT, |l| l
            .iter()
            .filter(|e| e.kind == XXNET_EVENT_MESSAGE)
            .count()
            == 200),
        "{}",
        dump_log(&srv.log)
    );
    for (seq, e) in srv.messages().enumerate() {
        assert_eq!(e.conn, conn, "the session kept its conn id");
        assert_eq!(e.payload, payload(0, seq as u32));
    }
    cli.poll_for(Duration::from_millis(50));
    assert!(cli
        .log
        .iter()
        .filter(|e| e.kind == XXNET_EVENT_CONNECTED)
        .all(|e| e.conn == cli_conn));
    assert!(cli.of_kind(XXNET_EVENT_DISCONNECTED).is_empty());
    let after = srv.stats_until(WAIT, |s| s.accepted_connections >= 2);
    assert_eq!(
        after.accepted_connections,
        before.accepted_connections + 1,
        "it reconnected"
    );
    let owner = (conn % 2) as u32;
    let s = reactor_stats(&srv, owner).unwrap();
    assert_eq!(s.msgs_in, 200, "every message went through reactor {owner}");
    assert_eq!(reactor_stats(&srv, 1 - owner).unwrap().msgs_in, 0);
}

/// Cuts one established TCP connection whose local port is `port` (an
/// accepted socket of a server in this process) from outside the library:
/// finds it among this process's descriptors and shuts it down (shutdown(2)).
fn kill_tcp_to(port: u16) -> bool {
    use std::os::fd::RawFd;
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    for entry in dir.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let rc = unsafe {
            libc::getsockname(fd, (&mut addr as *mut libc::sockaddr_in).cast(), &mut len)
        };
        if rc != 0 || addr.sin_family != libc::AF_INET as libc::sa_family_t {
            continue;
        }
        let mut peer: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut plen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let connected = unsafe {
            libc::getpeername(fd, (&mut peer as *mut libc::sockaddr_in).cast(), &mut plen)
        } == 0;
        if connected && u16::from_be(addr.sin_port) == port {
            return unsafe { libc::shutdown(fd, libc::SHUT_RDWR) } == 0;
        }
    }
    false
}

#[test]
fn max_connections_counts_every_reactor() {
    let mut cfg = default_config();
    cfg.io_threads = 2;
    cfg.max_connections = 3;
    let mut srv = Node::with_config(&cfg);
    let port = srv.listen("127.0.0.1");
    let mut cfg = default_config();
    cfg.reconnect_give_up_ms = 0;
    let mut clients: Vec<Node> = (0..5).map(|_| Node::with_config(&cfg)).collect();
    // One at a time, so each reactor has published its count before the next arrives.
    for (i, c) in clients.iter_mut().enumerate() {
        c.send_ok("127.0.0.1", port, 0, 1, b"hi");
        let ok = c.poll_until(WAIT, |l| {
            l.iter()
                .any(|e| e.kind == XXNET_EVENT_CONNECTED || e.kind == XXNET_EVENT_CONNECT_FAILED)
        });
        assert!(ok, "client {i} neither connected nor failed");
        srv.poll_for(Duration::from_millis(30));
    }
    let connected = clients
        .iter()
        .filter(|c| !c.of_kind(XXNET_EVENT_CONNECTED).is_empty())
        .count();
    let refused: Vec<i32> = clients
        .iter()
        .flat_map(|c| c.of_kind(XXNET_EVENT_CONNECT_FAILED))
        .map(|e| e.code)
        .collect();
    assert_eq!(connected, 3, "{}", dump_log(&srv.log));
    assert_eq!(refused, vec![XXNET_E_PEER_BUSY; 2]);
    let s = srv.stats_until(WAIT, |s| s.refused_connections == 2);
    assert_eq!(s.refused_connections, 2);
    assert_eq!(s.open_connections, 3);
}

#[test]
fn max_connections_holds_when_clients_connect_at_once() {
    // Eight clients dial a two-reactor server with room for three, all at
    // once: exactly three get in, whichever reactors they land on.
    for round in 0..3 {
        let mut cfg = default_config();
        cfg.io_threads = 2;
        cfg.max_connections = 3;
        let mut srv = Node::with_config(&cfg);
        let port = srv.listen("127.0.0.1");
        let mut cfg = default_config();
        cfg.reconnect_give_up_ms = 0;
        let mut clients: Vec<Node> = (0..8).map(|_| Node::with_config(&cfg)).collect();
        for c in &clients {
            c.send_ok("127.0.0.1", port, 0, 1, b"hi");
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let settled = clients.iter_mut().all(|c| {
                c.poll(0);
                c.log.iter().any(|e| {
                    e.kind == XXNET_EVENT_CONNECTED || e.kind == XXNET_EVENT_CONNECT_FAILED
                })
            });
            srv.poll(1);
            if settled || Instant::now() > deadline {
                break;
            }
        }
        let connected = clients
            .iter()
            .filter(|c| !c.of_kind(XXNET_EVENT_CONNECTED).is_empty())
            .count();
        assert_eq!(connected, 3, "round {round}:\n{}", dump_log(&srv.log));
        let s = srv.stats_until(WAIT, |s| s.refused_connections == 5);
        assert_eq!(
            (s.open_connections, s.refused_connections),
            (3, 5),
            "round {round}"
        );
    }
}

#[test]
fn io_threads_out_of_range_is_refused_with_a_reason() {
    for bad in [0u32, 65, 1000] {
        let mut cfg = default_config();
        cfg.io_threads = bad;
        let ctx = xxnet_new(&cfg);
        assert!(ctx.is_null(), "io_threads {bad} accepted");
        let why = unsafe { std::ffi::CStr::from_ptr(xxnet_last_error()) }.to_string_lossy();
        assert!(why.contains("io_threads"), "reason: {why}");
    }
    let mut cfg = default_config();
    cfg.io_threads = 64;
    let ctx = xxnet_new(&cfg);
    assert!(!ctx.is_null(), "64 reactors are allowed");
    xxnet_free(ctx);
    let mut d = std::mem::MaybeUninit::uninit();
    xxnet_config_default(d.as_mut_ptr());
    assert_eq!(
        unsafe { d.assume_init() }.io_threads,
        1,
        "one reactor by default"
    );
}

fn send_more(node: &Node, conn: u64, seq: u32, more: bool) -> i32 {
    let opts = xxnet::ffi::types::xxnet_send_opts {
        lane: 0,
        msg_id: 3,
        flags: if more { XXNET_SEND_MORE } else { 0 },
        ack_timeout_ms: 0,
    };
    let data = payload(0, seq);
    xxnet_send_conn_ex(node.ctx, conn, data.as_ptr(), data.len(), &opts)
}

#[test]
fn sends_marked_more_go_out_at_the_next_plain_send_flush_or_poll() {
    // On both one and two reactors: a burst queued with XXNET_SEND_MORE is
    // handed over whole by whatever comes next, in order.
    for io in [1u32, 2] {
        let (mut srv, port) = server(io);
        let mut cfg = default_config();
        cfg.io_threads = io;
        let mut cli = Node::with_config(&cfg);
        cli.send_ok("127.0.0.1", port, 0, 1, b"hello");
        assert!(srv.poll_until(WAIT, |l| l.iter().any(|e| e.kind == XXNET_EVENT_MESSAGE)));
        let conn = srv.messages().next().unwrap().conn;
        let mut seq = 0u32;
        let mut expect = 0usize;
        // 1. Ended by a plain send.
        for _ in 0..50 {
            assert_eq!(send_more(&srv, conn, seq, true), XXNET_OK);
            seq += 1;
        }
        assert_eq!(send_more(&srv, conn, seq, false), XXNET_OK);
        seq += 1;
        expect += 51;
        // 2. Ended by xxnet_flush.
        for _ in 0..50 {
            assert_eq!(send_more(&srv, conn, seq, true), XXNET_OK);
            seq += 1;
        }
        assert_eq!(xxnet_flush(srv.ctx), XXNET_OK);
        expect += 50;
        assert!(
            cli.poll_until(WAIT, |l| l.iter().filter(|e| e.msg_id == 3).count()
                == expect),
            "io {io}: flush"
        );
        // 3. Ended by the server's next poll.
        for _ in 0..50 {
            assert_eq!(send_more(&srv, conn, seq, true), XXNET_OK);
            seq += 1;
        }
        srv.poll(0);
        expect += 50;
        assert!(
            cli.poll_until(WAIT, |l| l.iter().filter(|e| e.msg_id == 3).count()
                == expect),
            "io {io}: poll"
        );
        let got: Vec<&Ev> = cli.log.iter().filter(|e| e.msg_id == 3).collect();
        for (i, e) in got.iter().enumerate() {
            assert_eq!(e.payload, payload(0, i as u32), "io {io}: order");
        }
        // Unknown flag bits are refused; NULL context is refused.
        let bad = xxnet::ffi::types::xxnet_send_opts {
            lane: 0,
            msg_id: 0,
            flags: 2,
            ack_timeout_ms: 0,
        };
        assert_eq!(
            xxnet_send_conn_ex(srv.ctx, conn, b"x".as_ptr(), 1, &bad),
            XXNET_E_INVALID_ARG
        );
        assert_eq!(xxnet_flush(std::ptr::null_mut()), XXNET_E_NULL_POINTER);
    }
}
