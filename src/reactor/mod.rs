//! The reactor thread: the only code that touches mio and sockets.
//!
//! One thread owns the `Poll`, every listener and every connection. Each turn
//! it waits for readiness (or the earliest deadline), reads and writes until
//! `WouldBlock`, drains the whole command queue, flushes the peers that got
//! messages, fires due deadlines, and hands the turn's events to the host in
//! one batch. Protocol decisions come from `crate::proto`.

mod conn;
mod peers;

use crate::bridge::{Command, Dest, Event, ReactorLink};
use crate::codes::*;
use crate::config::Config;
use crate::proto::pool::{decide_hello, HelloDecision, PeerView};
use crate::proto::{
    AckStatus, DrainSummary, Frame, FrameType, Hello, HelloAck, Preface, ProtoError,
};
use bytes::{Bytes, BytesMut};
use conn::{Conn, ConnState, ReadOutcome};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use peers::{Peer, Pool};
use slab::Slab;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Token of the waker.
pub const WAKER: Token = Token(0);
const LISTENER_BASE: usize = 1;
const MAX_LISTENERS: usize = 1 << 16;
const CONN_BASE: usize = LISTENER_BASE + MAX_LISTENERS;

/// Refill the write buffer from the lanes when it holds less than this.
const WBUF_LOW: usize = 64 * 1024;
/// Encode at most about this much ahead of the socket, so a small message on
/// one lane never waits behind much of a large one on another.
const WBUF_HIGH: usize = 256 * 1024;
/// Bytes read from one connection per turn before others get a go.
const READ_BUDGET: usize = 1 << 20;
/// Commands drained per turn before sockets get a go.
const COMMAND_BUDGET: usize = 1 << 16;

/// Creates the poll and its waker (on the host's thread, so errors surface in xxnet_new).
pub fn new_poll() -> std::io::Result<(Poll, Waker)> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    Ok((poll, waker))
}

/// Runs the reactor until shutdown. A panic is caught here: the context is
/// marked failed, every socket is closed (dropped while unwinding), and the
/// host receives an `XXNET_EVENT_ERROR`.
pub fn run(poll: Poll, link: ReactorLink, cfg: Config) {
    let shared = link.shared.clone();
    let events = link.events.clone();
    let outcome = catch_unwind(AssertUnwindSafe(move || {
        Reactor::new(poll, link, cfg).run()
    }));
    if let Err(payload) = outcome {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        log::error!(target: "xxnet::reactor", "reactor thread panicked: {msg}; the context is unusable");
        shared.failed.store(true, Ordering::SeqCst);
        let _ = events.send(vec![Event {
            kind: XXNET_EVENT_ERROR,
            code: XXNET_E_INTERNAL,
            ..Event::default()
        }]);
    }
}

/// Counters kept on the reactor thread and published once per turn.
#[derive(Debug, Default)]
struct Counters {
    msgs_in: u64,
    msgs_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    protocol_errors: u64,
    refused: u64,
    connect_failures: u64,
    failed_msgs: u64,
    failed_bytes: u64,
    accepted: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Deadline {
    /// Handshake or connect deadline of a connection (slab key, id).
    Conn(usize, u64),
    /// A peer waiting for the connection that won the tie-break.
    PeerWait(usize),
}

struct Reactor {
    poll: Poll,
    link: ReactorLink,
    cfg: Config,
    instance: u64,
    next_nonce: u64,
    next_conn_id: u64,
    listeners: Vec<(TcpListener, SocketAddr)>,
    conns: Slab<Conn>,
    conn_ids: HashMap<u64, usize>,
    pool: Pool,
    events: Vec<Event>,
    batch_recv_bytes: usize,
    counters: Counters,
    flush_list: Vec<usize>,
    connect_list: Vec<usize>,
    read_again: Vec<(usize, u64)>,
    paused: Vec<(usize, u64)>,
    deadlines: BinaryHeap<Reverse<(Instant, Deadline)>>,
    /// One-entry cache of the last address sent to.
    last_dest: Option<(SocketAddr, usize)>,
}

fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

impl Reactor {
    fn new(poll: Poll, link: ReactorLink, cfg: Config) -> Reactor {
        Reactor {
            poll,
            link,
            cfg,
            instance: random_u64(),
            next_nonce: 1,
            next_conn_id: 1,
            listeners: Vec::new(),
            conns: Slab::new(),
            conn_ids: HashMap::new(),
            pool: Pool::default(),
            events: Vec::new(),
            batch_recv_bytes: 0,
            counters: Counters::default(),
            flush_list: Vec::new(),
            connect_list: Vec::new(),
            read_again: Vec::new(),
            paused: Vec::new(),
            deadlines: BinaryHeap::new(),
            last_dest: None,
        }
    }

    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                panic!("poll failed: {e}");
            }
            for ev in events.iter() {
                let t = ev.token().0;
                if t == WAKER.0 {
                    continue;
                } else if t < CONN_BASE {
                    self.accept(t - LISTENER_BASE);
                } else {
                    let key = t - CONN_BASE;
                    if ev.is_writable() {
                        self.on_writable(key);
                    }
                    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                        self.on_readable(key);
                    }
                }
            }
            if !self.drain_commands() {
                return;
            }
            self.resume_reads();
            self.retry_budgeted_reads();
            self.start_connects();
            self.flush_peers();
            self.fire_deadlines(Instant::now());
            self.publish();
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.read_again.is_empty() {
            return Some(Duration::ZERO);
        }
        self.deadlines.peek().map(|Reverse((at, _))| {
            // Round up so we never wake a hair before the deadline.
            at.saturating_duration_since(Instant::now()) + Duration::from_millis(1)
        })
    }

    // ----- host commands -------------------------------------------------

    /// Drains the command queue. Returns false on shutdown.
    fn drain_commands(&mut self) -> bool {
        self.link.shared.wake_pending.store(false, Ordering::SeqCst);
        for _ in 0..COMMAND_BUDGET {
            let cmd = match self.link.commands.try_recv() {
                Ok(c) => c,
                Err(_) => return true,
            };
            match cmd {
                Command::Send {
                    dest,
                    lane,
                    msg_id,
                    data,
                } => self.queue_message(dest, lane, msg_id, data),
                Command::Listen { listener } => self.add_listener(listener),
                Command::Close { conn } => {
                    if let Some(&key) = self.conn_ids.get(&conn) {
                        self.close_conn(key, XXNET_E_LOCAL_CLOSE);
                    }
                }
                Command::Shutdown => return false,
                Command::InjectPanic => panic!("injected reactor panic (test hook)"),
            }
        }
        // More commands wait: come back without sleeping.
        self.link.shared.wake();
        true
    }

    fn add_listener(&mut self, mut listener: TcpListener) {
        let idx = self.listeners.len();
        assert!(idx < MAX_LISTENERS, "too many listeners");
        let addr = listener
            .local_addr()
            .expect("bound listener has an address");
        self.poll
            .registry()
            .register(
                &mut listener,
                Token(LISTENER_BASE + idx),
                Interest::READABLE,
            )
            .expect("register listener");
        self.listeners.push((listener, addr));
    }

    fn queue_message(&mut self, dest: Dest, lane: u8, msg_id: u32, data: Bytes) {
        let pid = match dest {
            Dest::Addr(addr) => match self.last_dest {
                Some((a, pid)) if a == addr => pid,
                _ => {
                    let pid = match self.pool.lookup(&addr) {
                        Some(pid) => pid,
                        None => {
                            let pid = self
                                .pool
                                .insert(Peer::new(addr, self.cfg.fragment_size), Some(addr));
                            self.connect_list.push(pid);
                            pid
                        }
                    };
                    self.last_dest = Some((addr, pid));
                    pid
                }
            },
            Dest::Conn(id) => match self.conn_ids.get(&id).and_then(|&k| self.conns[k].peer) {
                Some(pid) => pid,
                None => {
                    self.fail_one(id, lane, msg_id, data.len());
                    return;
                }
            },
        };
        let peer = &mut self.pool.peers[pid];
        peer.outbound.push(lane, msg_id, data);
        if !peer.dirty {
            peer.dirty = true;
            self.flush_list.push(pid);
        }
    }

    /// A message to a connection that is gone: report it (coalescing a run).
    fn fail_one(&mut self, conn: u64, lane: u8, msg_id: u32, len: usize) {
        self.counters.failed_msgs += 1;
        self.counters.failed_bytes += len as u64;
        if let Some(last) = self.events.last_mut() {
            if last.kind == XXNET_EVENT_SEND_FAILED
                && last.conn == conn
                && last.code == XXNET_E_CLOSED
            {
                last.count += 1;
                last.total += len as u64;
                return;
            }
        }
        self.events.push(Event {
            kind: XXNET_EVENT_SEND_FAILED,
            code: XXNET_E_CLOSED,
            conn,
            count: 1,
            total: len as u64,
            msg_id,
            lane,
            ..Event::default()
        });
    }

    // ----- connecting ----------------------------------------------------

    fn start_connects(&mut self) {
        while let Some(pid) = self.connect_list.pop() {
            let Some(peer) = self.pool.peers.get(pid) else {
                continue;
            };
            if peer.active.is_some() || peer.attempt.is_some() || peer.wait_deadline.is_some() {
                continue;
            }
            let addr = peer.keys[0];
            match TcpStream::connect(addr) {
                Ok(stream) => {
                    let key = self.add_conn(stream, addr, true);
                    let nonce = self.next_nonce;
                    self.next_nonce += 1;
                    let conn = &mut self.conns[key];
                    conn.nonce = nonce;
                    conn.peer = Some(pid);
                    self.pool.peers[pid].attempt = Some(key);
                    self.arm(key, self.cfg.connect_timeout_ms);
                }
                Err(e) => {
                    log::debug!(target: "xxnet::reactor", "connect to {addr} failed at once: {e}");
                    self.fail_peer(pid, 0, from_io(&e), true);
                }
            }
        }
    }

    fn add_conn(&mut self, mut stream: TcpStream, remote: SocketAddr, outgoing: bool) -> usize {
        let id = self.next_conn_id;
        self.next_conn_id += 1;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        self.poll
            .registry()
            .register(
                &mut stream,
                Token(CONN_BASE + key),
                Interest::READABLE | Interest::WRITABLE,
            )
            .expect("register connection");
        entry.insert(Conn::new(
            id,
            stream,
            remote,
            outgoing,
            self.cfg.max_message_size,
        ));
        self.conn_ids.insert(id, key);
        key
    }

    fn arm(&mut self, key: usize, ms: u64) {
        let at = Instant::now() + Duration::from_millis(ms);
        let conn = &mut self.conns[key];
        conn.deadline = Some(at);
        self.deadlines
            .push(Reverse((at, Deadline::Conn(key, conn.id))));
    }

    /// The address we announce on a connection whose local IP is `local`.
    fn announced(&self, local: Option<IpAddr>) -> Option<SocketAddr> {
        let (_, addr) = self.listeners.first()?;
        if !addr.ip().is_unspecified() {
            return Some(*addr);
        }
        let ip = self.cfg.advertise_ip.or(local)?;
        Some(SocketAddr::new(ip, addr.port()))
    }

    fn local_ip(&self, key: usize) -> Option<IpAddr> {
        self.conns[key].stream.local_addr().ok().map(|a| a.ip())
    }

    fn on_writable(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.state != ConnState::Connecting {
            self.flush_conn(key);
            return;
        }
        // Finish a non-blocking connect: take_error, then peer_addr.
        match conn.stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return self.close_conn(key, from_io(&e)),
        }
        match conn.stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => return,
            Err(e) => return self.close_conn(key, from_io(&e)),
        }
        let _ = conn.stream.set_nodelay(true);
        let hello = Hello {
            sync: Default::default(),
            instance: self.instance,
            nonce: conn.nonce,
            listen: self.announced(self.local_ip(key)),
        };
        let conn = &mut self.conns[key];
        conn.state = ConnState::AwaitAck;
        let mut out = BytesMut::with_capacity(64);
        out.extend_from_slice(&Preface::BYTES);
        hello.encode(&mut out);
        conn.wbuf.put_slice(&out);
        self.flush_conn(key);
    }

    // ----- accepting -----------------------------------------------------

    fn accept(&mut self, idx: usize) {
        loop {
            let Some((listener, _)) = self.listeners.get(idx) else {
                return;
            };
            match listener.accept() {
                Ok((stream, remote)) => {
                    self.counters.accepted += 1;
                    if self.conns.len() >= self.cfg.max_connections {
                        self.refuse_busy(stream, remote);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let key = self.add_conn(stream, remote, false);
                    self.arm(key, self.cfg.handshake_timeout_ms);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: stop for this turn rather than spin.
                    log::warn!(target: "xxnet::reactor", "accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Over max_connections: tell the peer why (best effort) and close.
    fn refuse_busy(&mut self, mut stream: TcpStream, remote: SocketAddr) {
        use std::io::Write;
        self.counters.refused += 1;
        log::warn!(target: "xxnet::reactor", "refusing {remote}: max_connections ({}) reached", self.cfg.max_connections);
        let ack = HelloAck {
            sync: Default::default(),
            status: AckStatus::Busy,
            instance: self.instance,
            abandoned_nonce: 0,
            listen: self.announced(stream.local_addr().ok().map(|a| a.ip())),
        };
        let mut out = BytesMut::with_capacity(64);
        out.extend_from_slice(&Preface::BYTES);
        ack.encode(&mut out);
        let _ = stream.write(&out);
    }

    // ----- reading -------------------------------------------------------

    fn recv_over_limit(&self) -> bool {
        self.link.shared.recv_queued.load(Ordering::SeqCst) + self.batch_recv_bytes
            > self.cfg.recv_queue_limit
    }

    fn on_readable(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.read_paused || conn.state == ConnState::Connecting {
            return;
        }
        if self.recv_over_limit() {
            let conn = &mut self.conns[key];
            conn.read_paused = true;
            self.paused.push((key, conn.id));
            self.link
                .shared
                .reading_paused
                .store(true, Ordering::SeqCst);
            return;
        }
        let conn = &mut self.conns[key];
        let id = conn.id;
        let outcome = conn.read_some(READ_BUDGET);
        if let Err(code) = self.process_frames(key) {
            return self.close_conn(key, code);
        }
        match outcome {
            Err(e) => self.close_conn(key, from_io(&e)),
            Ok((ReadOutcome::Drained, _)) => {}
            Ok((ReadOutcome::Budget, _)) => self.read_again.push((key, id)),
            Ok((ReadOutcome::Eof, _)) => {
                let Some(conn) = self.conns.get(key) else {
                    return;
                };
                let code = match conn.decoder.finish(&conn.rbuf) {
                    Err(e) => e.code(),
                    Ok(()) if conn.reasm.has_partial() => XXNET_E_TRUNCATED,
                    Ok(()) => XXNET_E_PEER_CLOSED,
                };
                self.close_conn(key, code);
            }
        }
    }

    fn retry_budgeted_reads(&mut self) {
        for (key, id) in std::mem::take(&mut self.read_again) {
            if self.conns.get(key).is_some_and(|c| c.id == id) {
                self.on_readable(key);
            }
        }
    }

    fn resume_reads(&mut self) {
        if self.paused.is_empty() || self.recv_over_limit_half() {
            return;
        }
        self.link
            .shared
            .reading_paused
            .store(false, Ordering::SeqCst);
        for (key, id) in std::mem::take(&mut self.paused) {
            if let Some(conn) = self.conns.get_mut(key) {
                if conn.id == id {
                    conn.read_paused = false;
                    self.on_readable(key);
                }
            }
        }
    }

    fn recv_over_limit_half(&self) -> bool {
        self.link.shared.recv_queued.load(Ordering::SeqCst) + self.batch_recv_bytes
            > self.cfg.recv_queue_limit / 2
    }

    /// Decodes every complete frame in the read buffer.
    fn process_frames(&mut self, key: usize) -> Result<(), c_int> {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return Ok(());
            };
            let frame = match conn.decoder.decode(&mut conn.rbuf) {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.protocol_error(key, e)),
            };
            match (conn.state, frame.header.kind) {
                (ConnState::Established, FrameType::Data) => {
                    match conn.reasm.push(&frame.header, frame.body) {
                        Ok(Some(msg)) => {
                            let len = msg.payload.len();
                            self.counters.msgs_in += 1;
                            self.counters.bytes_in += len as u64;
                            self.batch_recv_bytes += len;
                            let ev = Event {
                                kind: XXNET_EVENT_MESSAGE,
                                conn: conn.id,
                                peer: Some(conn.shown),
                                lane: msg.lane,
                                msg_id: msg.msg_id,
                                data: msg.payload,
                                ..Event::default()
                            };
                            self.events.push(ev);
                        }
                        Ok(None) => {}
                        Err(e) => return Err(self.protocol_error(key, e)),
                    }
                }
                (ConnState::Established, FrameType::Ping) => {
                    let token = crate::proto::handshake::decode_ping_token(&frame.body)
                        .map_err(|e| self.protocol_error(key, e))?;
                    let mut out = BytesMut::with_capacity(24);
                    crate::proto::handshake::encode_pong(token, &mut out);
                    self.conns[key].wbuf.put_slice(&out);
                    self.flush_conn(key);
                }
                (ConnState::Established, FrameType::Pong) => {}
                (ConnState::Established, FrameType::GoAway) => {
                    let why = crate::proto::handshake::decode_goaway(&frame.body)
                        .unwrap_or(XXNET_E_PROTOCOL);
                    log::debug!(target: "xxnet::reactor", "peer {} closes: {}", conn.shown, describe(why));
                    return Err(XXNET_E_PEER_CLOSED);
                }
                (ConnState::AwaitHello, FrameType::Hello) => self.on_hello(key, frame)?,
                (ConnState::AwaitAck, FrameType::HelloAck) => self.on_hello_ack(key, frame)?,
                (ConnState::Closing, _) => {}
                _ => {
                    return Err(self.protocol_error(
                        key,
                        ProtoError::BadFrame("frame not allowed in this state"),
                    ))
                }
            }
        }
    }

    fn protocol_error(&mut self, key: usize, e: ProtoError) -> c_int {
        if let Some(conn) = self.conns.get(key) {
            log::warn!(target: "xxnet::reactor", "protocol error from {} (conn {}): {e}", conn.remote, conn.id);
        }
        e.code()
    }

    // ----- handshake -----------------------------------------------------

    fn on_hello(&mut self, key: usize, frame: Frame) -> Result<(), c_int> {
        let hello = Hello::decode(&frame.body).map_err(|e| self.protocol_error(key, e))?;
        let ours = self.announced(self.local_ip(key));
        let remote = self.conns[key].remote;
        let pooled = hello.listen.filter(|_| hello.instance != self.instance);
        let Some(theirs) = pooled else {
            // A client that listens nowhere, or this very context dialling
            // its own listen address (a cluster table may list the node
            // itself): an anonymous peer, not pooled by address. Our own
            // outgoing connection stays the pooled one for that address.
            let pid = self
                .pool
                .insert(Peer::new(remote, self.cfg.fragment_size), None);
            self.establish_inbound(key, pid, 0, ours);
            return Ok(());
        };
        let pid = self.pool.lookup(&theirs);
        let view = match pid.map(|p| &self.pool.peers[p]) {
            None => PeerView {
                established: false,
                pending_attempt: false,
                nonce_abandoned: false,
            },
            Some(p) => PeerView {
                established: p.active.is_some(),
                pending_attempt: p.attempt.is_some(),
                nonce_abandoned: p.abandoned.contains(&hello.nonce),
            },
        };
        let decision = decide_hello(ours.as_ref(), &theirs, view);
        log::debug!(target: "xxnet::reactor", "HELLO from {theirs} nonce {}: {decision:?}", hello.nonce);
        let mut abandoned = 0;
        match decision {
            HelloDecision::RefuseDuplicate => {
                self.refuse(key, AckStatus::Duplicate, ours);
                return Ok(());
            }
            HelloDecision::AcceptReplacing => {
                let p = pid.expect("established implies a peer");
                if let Some(old) = self.pool.peers[p].active.take() {
                    // The new connection numbers lanes from 1 and restarts a
                    // half-encoded message from its first part.
                    self.pool.peers[p].outbound.restart_sequences();
                    self.close_conn(old, XXNET_E_DUPLICATE_CONN);
                }
            }
            HelloDecision::AcceptAbandoningOurs => {
                let p = pid.expect("pending implies a peer");
                if let Some(att) = self.pool.peers[p].attempt.take() {
                    abandoned = self.conns[att].nonce;
                    self.close_conn(att, XXNET_E_DUPLICATE_CONN);
                }
            }
            HelloDecision::Accept => {}
        }
        let pid = match pid {
            Some(p) => p,
            None => self
                .pool
                .insert(Peer::new(theirs, self.cfg.fragment_size), Some(theirs)),
        };
        self.establish_inbound(key, pid, abandoned, ours);
        Ok(())
    }

    fn establish_inbound(
        &mut self,
        key: usize,
        pid: usize,
        abandoned: u64,
        ours: Option<SocketAddr>,
    ) {
        let ack = HelloAck {
            sync: Default::default(),
            status: AckStatus::Accepted,
            instance: self.instance,
            abandoned_nonce: abandoned,
            listen: ours,
        };
        let mut out = BytesMut::with_capacity(64);
        out.extend_from_slice(&Preface::BYTES);
        ack.encode(&mut out);
        let peer = &mut self.pool.peers[pid];
        peer.active = Some(key);
        peer.wait_deadline = None;
        let shown = peer.shown;
        let conn = &mut self.conns[key];
        conn.wbuf.put_slice(&out);
        conn.peer = Some(pid);
        conn.shown = shown;
        self.mark_established(key, 0);
    }

    fn mark_established(&mut self, key: usize, initiated: u64) {
        let conn = &mut self.conns[key];
        conn.state = ConnState::Established;
        conn.deadline = None;
        conn.announced = true;
        let ev = Event {
            kind: XXNET_EVENT_CONNECTED,
            conn: conn.id,
            id: initiated,
            peer: Some(conn.shown),
            ..Event::default()
        };
        self.events.push(ev);
        let pid = conn.peer.expect("established connection has a peer");
        self.mark_dirty(pid);
        self.flush_conn(key);
    }

    fn mark_dirty(&mut self, pid: usize) {
        let peer = &mut self.pool.peers[pid];
        if !peer.dirty {
            peer.dirty = true;
            self.flush_list.push(pid);
        }
    }

    fn refuse(&mut self, key: usize, status: AckStatus, ours: Option<SocketAddr>) {
        let ack = HelloAck {
            sync: Default::default(),
            status,
            instance: self.instance,
            abandoned_nonce: 0,
            listen: ours,
        };
        let mut out = BytesMut::with_capacity(64);
        out.extend_from_slice(&Preface::BYTES);
        ack.encode(&mut out);
        let conn = &mut self.conns[key];
        conn.wbuf.put_slice(&out);
        conn.state = ConnState::Closing;
        self.flush_conn(key);
    }

    fn on_hello_ack(&mut self, key: usize, frame: Frame) -> Result<(), c_int> {
        let ack = HelloAck::decode(&frame.body).map_err(|e| self.protocol_error(key, e))?;
        let pid = self.conns[key]
            .peer
            .expect("outgoing connection has a peer");
        let ours = self.pool.peers[pid].attempt == Some(key);
        match ack.status {
            AckStatus::Accepted if ours => {
                let peer = &mut self.pool.peers[pid];
                peer.attempt = None;
                peer.active = Some(key);
                peer.wait_deadline = None;
                if ack.abandoned_nonce != 0 {
                    if peer.abandoned.len() >= 4 {
                        peer.abandoned.remove(0);
                    }
                    peer.abandoned.push(ack.abandoned_nonce);
                }
                if let Some(listen) = ack.listen {
                    self.pool.peers[pid].shown = listen;
                    self.pool.add_key(pid, listen);
                    self.conns[key].shown = listen;
                }
                self.mark_established(key, 1);
                Ok(())
            }
            AckStatus::Accepted => Err(XXNET_E_DUPLICATE_CONN),
            AckStatus::Duplicate => {
                // The peer keeps its own connection to us; wait for it.
                let peer = &mut self.pool.peers[pid];
                if ours {
                    peer.attempt = None;
                    if peer.active.is_none() {
                        let at =
                            Instant::now() + Duration::from_millis(self.cfg.connect_timeout_ms);
                        peer.wait_deadline = Some(at);
                        self.deadlines.push(Reverse((at, Deadline::PeerWait(pid))));
                    }
                }
                Err(XXNET_E_DUPLICATE_CONN)
            }
            AckStatus::Busy => Err(XXNET_E_PEER_BUSY),
        }
    }

    // ----- writing -------------------------------------------------------

    fn flush_peers(&mut self) {
        for pid in std::mem::take(&mut self.flush_list) {
            let Some(peer) = self.pool.peers.get_mut(pid) else {
                continue;
            };
            peer.dirty = false;
            if let Some(key) = peer.active {
                self.flush_conn(key);
            }
        }
    }

    /// Encodes from the peer's lanes and writes until the socket would block.
    fn flush_conn(&mut self, key: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.state == ConnState::Established && conn.wbuf.len() < WBUF_LOW {
                if let Some(peer) = conn.peer.and_then(|p| self.pool.peers.get_mut(p)) {
                    if peer.active == Some(key) {
                        peer.outbound.fill(&mut conn.wbuf, WBUF_HIGH);
                    }
                }
            }
            if conn.wbuf.is_empty() {
                if conn.state == ConnState::Closing {
                    self.close_conn(key, XXNET_E_DUPLICATE_CONN);
                }
                return;
            }
            match conn.write_some() {
                Ok((_, true)) => return,
                Ok((n, false)) => {
                    let done = conn.wbuf.advance(n);
                    self.counters.msgs_out += done.msgs;
                    self.counters.bytes_out += done.bytes;
                }
                Err(e) => return self.close_conn(key, from_io(&e)),
            }
        }
    }

    // ----- closing -------------------------------------------------------

    /// Closes a connection and reports what it takes with it.
    fn close_conn(&mut self, key: usize, code: c_int) {
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.conn_ids.remove(&conn.id);
        if is_protocol_error(code) {
            self.counters.protocol_errors += 1;
            if conn.wbuf.is_empty() {
                let mut out = BytesMut::with_capacity(24);
                crate::proto::handshake::encode_goaway(code, &mut out);
                conn.write_last(&out);
            }
        } else if code == XXNET_E_LOCAL_CLOSE && conn.wbuf.is_empty() {
            let mut out = BytesMut::with_capacity(24);
            crate::proto::handshake::encode_goaway(code, &mut out);
            conn.write_last(&out);
        }
        log::debug!(target: "xxnet::reactor", "conn {} to {} closed: {}", conn.id, conn.shown, describe(code));
        let mut failed = conn.wbuf.drain_unwritten();
        if let Some(pid) = conn.peer {
            let peer = &mut self.pool.peers[pid];
            if peer.active == Some(key) {
                peer.active = None;
                failed.merge(peer.outbound.drain());
                self.remove_peer(pid);
            } else if peer.attempt == Some(key) {
                peer.attempt = None;
                if peer.active.is_none() {
                    self.counters.connect_failures += 1;
                    self.events.push(Event {
                        kind: XXNET_EVENT_CONNECT_FAILED,
                        code,
                        peer: Some(conn.shown),
                        ..Event::default()
                    });
                    failed.merge(self.pool.peers[pid].outbound.drain());
                    self.remove_peer(pid);
                }
            }
        }
        if failed.msgs > 0 {
            let conn_id = if conn.announced { conn.id } else { 0 };
            self.report_failed(failed, conn_id, conn.shown, code);
        }
        if conn.announced {
            self.events.push(Event {
                kind: XXNET_EVENT_DISCONNECTED,
                code,
                conn: conn.id,
                peer: Some(conn.shown),
                ..Event::default()
            });
        }
    }

    fn report_failed(&mut self, failed: DrainSummary, conn: u64, peer: SocketAddr, code: c_int) {
        self.counters.failed_msgs += failed.msgs;
        self.counters.failed_bytes += failed.bytes;
        let (lane, msg_id) = failed.first.unwrap_or((0, 0));
        self.events.push(Event {
            kind: XXNET_EVENT_SEND_FAILED,
            code,
            conn,
            count: failed.msgs,
            total: failed.bytes,
            lane,
            msg_id,
            peer: Some(peer),
            ..Event::default()
        });
    }

    /// Fails a peer that has no usable connection: reports its queue and forgets it.
    fn fail_peer(&mut self, pid: usize, conn: u64, code: c_int, connect_failed: bool) {
        let shown = self.pool.peers[pid].shown;
        if connect_failed {
            self.counters.connect_failures += 1;
            self.events.push(Event {
                kind: XXNET_EVENT_CONNECT_FAILED,
                code,
                peer: Some(shown),
                ..Event::default()
            });
        }
        let failed = self.pool.peers[pid].outbound.drain();
        if failed.msgs > 0 {
            self.report_failed(failed, conn, shown, code);
        }
        self.remove_peer(pid);
    }

    fn remove_peer(&mut self, pid: usize) {
        let peer = self.pool.remove(pid);
        debug_assert!(peer.active.is_none());
        if let Some(att) = peer.attempt {
            if let Some(c) = self.conns.get_mut(att) {
                c.peer = None;
            }
        }
        if self.last_dest.is_some_and(|(_, p)| p == pid) {
            self.last_dest = None;
        }
    }

    // ----- deadlines and publishing --------------------------------------

    fn fire_deadlines(&mut self, now: Instant) {
        while let Some(Reverse((at, what))) = self.deadlines.peek().copied() {
            if at > now {
                return;
            }
            self.deadlines.pop();
            match what {
                Deadline::Conn(key, id) => {
                    let due = self
                        .conns
                        .get(key)
                        .is_some_and(|c| c.id == id && c.deadline == Some(at));
                    if due {
                        let code = if self.conns[key].outgoing {
                            XXNET_E_CONNECT_TIMEOUT
                        } else if self.conns[key].state == ConnState::Closing {
                            XXNET_E_DUPLICATE_CONN
                        } else {
                            XXNET_E_CONNECT_TIMEOUT
                        };
                        self.close_conn(key, code);
                    }
                }
                Deadline::PeerWait(pid) => {
                    let due = self
                        .pool
                        .peers
                        .get(pid)
                        .is_some_and(|p| p.wait_deadline == Some(at) && p.active.is_none());
                    if due {
                        self.fail_peer(pid, 0, XXNET_E_CONNECT_TIMEOUT, true);
                    }
                }
            }
        }
    }

    /// Hands this turn's events to the host and publishes the counters.
    fn publish(&mut self) {
        let shared = &self.link.shared;
        if !self.events.is_empty() {
            shared
                .recv_queued
                .fetch_add(self.batch_recv_bytes, Ordering::SeqCst);
            self.batch_recv_bytes = 0;
            let batch = std::mem::take(&mut self.events);
            // The host may be gone during shutdown; nothing to do then.
            let _ = self.link.events.send(batch);
        }
        let s = &shared.stats;
        let c = &self.counters;
        let set = |a: &std::sync::atomic::AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&s.open_connections, self.conns.len() as u64);
        set(&s.msgs_in, c.msgs_in);
        set(&s.msgs_out, c.msgs_out);
        set(&s.bytes_in, c.bytes_in);
        set(&s.bytes_out, c.bytes_out);
        set(&s.protocol_errors, c.protocol_errors);
        set(&s.refused_connections, c.refused);
        set(&s.connect_failures, c.connect_failures);
        set(&s.send_failed_msgs, c.failed_msgs);
        set(&s.send_failed_bytes, c.failed_bytes);
        set(&s.accepted_connections, c.accepted);
    }
}
