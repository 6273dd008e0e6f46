//! The sans-IO node: links (TCP connections), peers (sessions), the pool,
//! the handshake and its tie-break, reconnecting, heartbeats and
//! acknowledgements. No socket, thread or clock: the reactor feeds it bytes,
//! socket outcomes and `now`, and carries out the `Action`s it asks for.
//! Tests drive two endpoints through in-memory pipes on a virtual clock.
//!
//! Vocabulary: a *link* is one TCP connection and its framing state; a
//! *peer* is the other node (or client) and its [`Session`], which outlives
//! links. The host's `conn` id names a peer's session.

use super::auth::{self, Challenge, ChallengeSource};
use super::event::Event;
use super::handshake::{self, SessionSync};
use super::outbound::MsgTag;
use super::pool::{decide_hello, HelloDecision, PeerView};
use super::rpc::{self, Rpc};
use super::session::{Accept, Report, Session, SessionEvent};
use super::{
    AckStatus, Cancel, FrameDecoder, FrameType, Hello, HelloAck, Preface, ProtoError, Reassembler,
    WriteBuf,
};
use crate::codes::*;
use crate::config::Config;
use bytes::{Bytes, BytesMut};
use slab::Slab;
use smallvec::SmallVec;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::os::raw::c_int;
use std::time::{Duration, Instant};

/// Refill a link's write buffer from its session when it holds less than this.
const WBUF_LOW: usize = 64 * 1024;
/// Encode at most about this much ahead of the socket, so a small message on
/// one lane never waits behind much of a large one on another.
const WBUF_HIGH: usize = 256 * 1024;
/// How long an owed acknowledgement may wait for a frame to ride along with.
const ACK_DELAY: Duration = Duration::from_millis(2);

/// What the reactor must do with sockets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection for `link` to `addr`; report with `connected` or `link_failed`.
    Connect { link: usize, addr: SocketAddr },
    /// Write `goodbye` if possible (best effort, non-blocking), then close the socket of `link`.
    /// The link id may be reused after this.
    Close { link: usize, goodbye: Option<Bytes> },
}

/// Where a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dest {
    /// The peer listening at this address (pooled, opened on demand).
    Addr(SocketAddr),
    /// A session by its conn id.
    Conn(u64),
}

/// A message the host hands over.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub dest: Dest,
    pub lane: u8,
    pub msg_id: u32,
    pub data: Bytes,
    /// Need-ack id (0: none) and backlog account, flattened (a nested
    /// `MsgTag` would carry 4 bytes of padding into every command).
    pub track: u64,
    pub acct: u32,
    /// Deadline of a need-ack message (or of a call) in ms after the reactor takes it (0: the config default).
    /// (A u32 instead of an `Option<Instant>` keeps the command 16 bytes smaller.)
    pub ack_timeout_ms: u32,
    /// Extra DATA flags ([`rpc::FLAG`] for calls, casts and replies; else 0).
    pub flags: u8,
}

/// `Outgoing::track` of a call request: this bit plus the call's session.
pub const CALL_BIT: u64 = 1 << 63;

/// A call this node made that has not resolved yet.
#[derive(Debug)]
struct PendingCall {
    pid: usize,
    lane: u8,
    acct: u32,
    deadline: Instant,
}

/// Counters (monotonic) the reactor publishes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub msgs_in: u64,
    pub bytes_in: u64,
    /// Messages completely written to a socket for the first time.
    pub msgs_out: u64,
    pub bytes_out: u64,
    pub msgs_acked: u64,
    pub msgs_resent: u64,
    pub duplicates: u64,
    pub protocol_errors: u64,
    pub refused: u64,
    pub accepted: u64,
    pub connect_failures: u64,
    pub failed_msgs: u64,
    pub failed_bytes: u64,
    pub reconnects: u64,
    /// Handshakes that failed authentication, either side (docs/PROTOCOL.md §3).
    pub auth_failures: u64,
}

/// Session state as the host sees it.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// First connection being made.
    Connecting = 1,
    /// A connection is up.
    Connected = 2,
    /// The connection was lost; reconnecting (or waiting for the peer to).
    Reconnecting = 3,
}

/// A snapshot of one session for introspection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerSnapshot {
    pub conn: u64,
    pub state: PeerState,
    pub queued_msgs: u64,
    pub queued_bytes: u64,
    pub unacked_msgs: u64,
    pub unacked_bytes: u64,
    /// When the oldest unacknowledged message was sent.
    pub oldest_unacked: Option<Instant>,
    /// Connection attempts since the last success.
    pub attempts: u32,
    pub peer: SocketAddr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinkState {
    /// Outbound: TCP connect in progress.
    Connecting,
    /// Outbound: preface and HELLO sent, waiting for HELLO_ACK.
    AwaitAck,
    /// Inbound: waiting for the peer's preface and HELLO.
    AwaitHello,
    /// Inbound with a shared secret: HELLO held, CHALLENGE sent, waiting
    /// for AUTH. Nothing else is accepted (§3 "Authentication").
    AwaitAuth,
    /// Handshake done; DATA flows.
    Established,
    /// Refused: flush the HELLO_ACK, then close.
    Closing,
}

#[derive(Debug)]
struct Link {
    serial: u64,
    state: LinkState,
    nonce: u64,
    remote: SocketAddr,
    local: Option<SocketAddr>,
    peer: Option<usize>,
    rbuf: BytesMut,
    decoder: FrameDecoder,
    reasm: Reassembler,
    wbuf: WriteBuf,
    last_recv: Instant,
    last_send: Instant,
    /// Handshake deadline.
    deadline: Option<Instant>,
    /// The reactor stopped reading it (the host's receive queue is full):
    /// silence from the peer proves nothing meanwhile.
    read_paused: bool,
    /// Listed in `Endpoint::flush`.
    flush_listed: bool,
    /// When the link's timer is scheduled.
    timer_at: Option<Instant>,
    /// Authentication state while handshaking with a shared secret.
    auth: Option<Box<LinkAuth>>,
    /// Our preface went out (with HELLO, or before a CHALLENGE).
    preface_sent: bool,
}

/// One handshake's authentication (docs/PROTOCOL.md §3 "Authentication").
#[derive(Debug)]
struct LinkAuth {
    /// Our challenge: Cc in our HELLO (connector), Ca in our CHALLENGE (acceptor).
    ours: Challenge,
    /// The other side's: Ca once its CHALLENGE came (connector), Cc from the HELLO (acceptor).
    theirs: Option<Challenge>,
    /// SHA-256 of the HELLO body.
    hello_digest: [u8; 32],
    /// Acceptor: the HELLO, held until AUTH proves the connector.
    hello: Option<Hello>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Never connected yet.
    New,
    Up,
    Down,
}

#[derive(Debug)]
struct Peer {
    /// Host-visible session id.
    id: u64,
    /// Addresses it is pooled under; empty for a client that listens nowhere.
    keys: SmallVec<[SocketAddr; 2]>,
    /// The peer's instance (0 until a handshake).
    instance: u64,
    shown: SocketAddr,
    /// The peer's node name as announced in its handshake, NUL-terminated
    /// (empty until known, or if it announces none).
    name: Bytes,
    session: Session,
    active: Option<usize>,
    attempt: Option<usize>,
    abandoned: SmallVec<[u64; 2]>,
    phase: Phase,
    /// When the peer last lost (or started seeking) a connection.
    since: Instant,
    attempts: u32,
    next_try: Option<Instant>,
    /// Our attempt was refused as a duplicate: the peer's own should arrive by then.
    wait_until: Option<Instant>,
    /// Why the last link or attempt failed.
    last_error: c_int,
    /// Highest HELLO nonce accepted from the peer's current instance.
    last_nonce: u64,
    /// CONNECTED was emitted for `id`.
    announced: bool,
    timer_at: Option<Instant>,
    flush_listed: bool,
    snapshot_dirty: bool,
    /// Pending calls to this peer (entries of `Endpoint::calls`).
    calls: usize,
    /// Of those, calls made while it had no connection (the bounded call cache).
    waiting_calls: usize,
}

impl Peer {
    fn dialable(&self) -> bool {
        !self.keys.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Link(usize, u64),
    Peer(usize, u64),
}

/// The sans-IO node.
#[derive(Debug)]
pub struct Endpoint {
    cfg: Config,
    instance: u64,
    rng: u64,
    /// Authentication challenges (keyed from the OS by the reactor).
    challenges: ChallengeSource,
    next_nonce: u64,
    next_serial: u64,
    next_conn: u64,
    /// Conn ids advance by this (the number of reactors; see `set_conn_ids`).
    conn_step: u64,
    /// Instances of ended sessions of nodes that listen nowhere (`take_gone_instances`).
    gone_instances: Vec<u64>,
    /// Announced listen addresses of the nodes this endpoint reached as connector.
    learned: Vec<SocketAddr>,
    listeners: Vec<SocketAddr>,
    links: Slab<Link>,
    peers: Slab<Peer>,
    by_addr: HashMap<SocketAddr, usize>,
    by_instance: HashMap<u64, usize>,
    by_conn: super::idmap::IdMap<u64, usize>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    events: Vec<Event>,
    actions: std::collections::VecDeque<Action>,
    flush: Vec<usize>,
    flush_peers: Vec<usize>,
    /// Bytes leaving sessions, per backlog account.
    releases: Vec<(u32, u64)>,
    /// Sessions whose snapshot changed; ended sessions as (conn, None).
    snapshots: Vec<(u64, Option<usize>)>,
    scratch: Vec<SessionEvent>,
    /// Payload bytes of the MESSAGE events in `events`.
    event_bytes: usize,
    counters: Counters,
    /// Messages and payload bytes held by all sessions (see `backlog`).
    held_msgs: u64,
    held_bytes: u64,
    last_dest: Option<(SocketAddr, usize)>,
    shutting_down: bool,
    /// Calls made and not resolved, by session.
    calls: HashMap<u64, PendingCall>,
    /// Call deadlines (stale entries are skipped; compacted when mostly stale).
    call_deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Services registered by the host (names without NUL).
    services: HashSet<Box<[u8]>>,
}

impl Endpoint {
    /// A node with this configuration, context instance id and random seed.
    pub fn new(cfg: Config, instance: u64, seed: u64) -> Endpoint {
        Endpoint {
            cfg,
            instance,
            rng: seed | 1,
            challenges: ChallengeSource::from_seed(seed, instance),
            next_nonce: 1,
            next_serial: 1,
            next_conn: 1,
            conn_step: 1,
            gone_instances: Vec::new(),
            learned: Vec::new(),
            listeners: Vec::new(),
            links: Slab::new(),
            peers: Slab::new(),
            by_addr: HashMap::new(),
            by_instance: HashMap::new(),
            by_conn: Default::default(),
            timers: BinaryHeap::new(),
            events: Vec::new(),
            actions: Default::default(),
            flush: Vec::new(),
            flush_peers: Vec::new(),
            releases: Vec::new(),
            snapshots: Vec::new(),
            scratch: Vec::new(),
            event_bytes: 0,
            counters: Counters::default(),
            held_msgs: 0,
            held_bytes: 0,
            last_dest: None,
            shutting_down: false,
            calls: HashMap::new(),
            call_deadlines: BinaryHeap::new(),
            services: HashSet::new(),
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: deterministic for a given seed.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn new_send_id(&mut self) -> u64 {
        loop {
            let v = self.random();
            if v != 0 {
                return v;
            }
        }
    }

    /// Keys the generator of authentication challenges with 32 bytes from
    /// the operating system's random source (the reactor does, before any
    /// connection). Without this call challenges derive from `new`'s seed:
    /// deterministic for simulations, but guessable.
    pub fn seed_challenges(&mut self, key: [u8; 32]) {
        self.challenges = ChallengeSource::new(key);
    }

    /// The node name the peer of session `conn` announced in its last
    /// handshake (without the NUL); None for an unknown session or a peer
    /// that announced none.
    pub fn peer_name(&self, conn: u64) -> Option<&[u8]> {
        let p = &self.peers[*self.by_conn.get(&conn)?];
        p.name.split_last().map(|(_nul, name)| name)
    }

    // ----- outputs ---------------------------------------------------------

    /// The next socket action.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Links that have bytes to write (each listed once until taken).
    pub fn take_flush(&mut self, into: &mut Vec<usize>) {
        // By index, keeping the vectors' allocations (a `take` here cost an
        // allocation per message when each turn carries one).
        for i in 0..self.flush_peers.len() {
            let pid = self.flush_peers[i];
            if let Some(p) = self.peers.get_mut(pid) {
                p.flush_listed = false;
                if let Some(l) = p.active {
                    self.list_flush(l);
                }
            }
        }
        self.flush_peers.clear();
        for l in self.flush.drain(..) {
            if let Some(link) = self.links.get_mut(l) {
                link.flush_listed = false;
                into.push(l);
            }
        }
    }

    /// Moves the pending host events into `into`.
    pub fn take_events(&mut self, into: &mut Vec<Event>) {
        self.event_bytes = 0;
        if into.is_empty() {
            // Hand the whole buffer over (no copy of 112-byte events); keep
            // the caller's spare allocation for the next events.
            std::mem::swap(into, &mut self.events);
        } else {
            into.append(&mut self.events);
        }
    }

    /// Payload bytes of the MESSAGE events not yet taken.
    pub fn event_bytes(&self) -> usize {
        self.event_bytes
    }

    /// Bytes released per backlog account since the last call.
    pub fn take_releases(&mut self, into: &mut Vec<(u32, u64)>) {
        into.append(&mut self.releases);
    }

    /// Snapshots of sessions that changed, and `(conn, None)` for ended ones.
    pub fn take_snapshots(&mut self, mut f: impl FnMut(u64, Option<PeerSnapshot>)) {
        // By index, keeping the allocation (see `take_flush`).
        for i in 0..self.snapshots.len() {
            let (conn, pid) = self.snapshots[i];
            match pid.and_then(|p| self.peers.get_mut(p).map(|peer| (p, peer))) {
                Some((p, peer)) if peer.id == conn => {
                    peer.snapshot_dirty = false;
                    let snap = self.snapshot(p);
                    f(conn, Some(snap));
                }
                _ => f(conn, None),
            }
        }
        self.snapshots.clear();
    }

    fn snapshot(&self, pid: usize) -> PeerSnapshot {
        let p = &self.peers[pid];
        let out = &p.session.out;
        PeerSnapshot {
            conn: p.id,
            state: match p.phase {
                Phase::New => PeerState::Connecting,
                Phase::Up => PeerState::Connected,
                Phase::Down => PeerState::Reconnecting,
            },
            queued_msgs: out.queued_msgs() as u64,
            queued_bytes: out.queued_bytes() as u64,
            unacked_msgs: out.inflight_msgs() as u64,
            unacked_bytes: out.inflight_bytes() as u64,
            oldest_unacked: out.oldest_inflight(),
            attempts: p.attempts,
            peer: p.shown,
        }
    }

    fn touch(&mut self, pid: usize) {
        let p = &mut self.peers[pid];
        if !p.snapshot_dirty {
            p.snapshot_dirty = true;
            self.snapshots.push((p.id, Some(pid)));
        }
    }

    /// Monotonic counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Messages and payload bytes held by all sessions (queued and unacknowledged).
    ///
    /// Kept as running totals (in `send` and `leave`), so publishing it each
    /// reactor turn does not walk every peer. (Bytes count whole messages:
    /// a message half encoded is still wholly held.)
    pub fn backlog(&self) -> (u64, u64) {
        debug_assert_eq!(
            self.held_msgs,
            self.peers
                .iter()
                .map(|(_, p)| (p.session.out.queued_msgs() + p.session.out.inflight_msgs()) as u64)
                .sum::<u64>(),
            "running backlog count drifted"
        );
        (self.held_msgs, self.held_bytes)
    }

    /// Open links (handshaking or established).
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// The earliest deadline.
    pub fn next_timeout(&self) -> Option<Instant> {
        let t = self.timers.peek().map(|Reverse((at, _))| *at);
        let c = self.call_deadlines.peek().map(|Reverse((at, _))| *at);
        match (t, c) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn list_flush(&mut self, link: usize) {
        if let Some(l) = self.links.get_mut(link) {
            if !l.flush_listed {
                l.flush_listed = true;
                self.flush.push(link);
            }
        }
    }

    fn list_peer_flush(&mut self, pid: usize) {
        let p = &mut self.peers[pid];
        if !p.flush_listed && p.active.is_some() {
            p.flush_listed = true;
            self.flush_peers.push(pid);
        }
    }

    // ----- timers ----------------------------------------------------------

    fn link_deadline(&self, l: &Link) -> Option<Instant> {
        match l.state {
            LinkState::Established if self.cfg.idle_timeout_ms > 0 => {
                let idle = Duration::from_millis(self.cfg.idle_timeout_ms);
                Some((l.last_send + idle / 3).min(l.last_recv + idle))
            }
            LinkState::Established => None,
            _ => l.deadline,
        }
    }

    fn arm_link(&mut self, link: usize) {
        let Some(l) = self.links.get(link) else {
            return;
        };
        let Some(at) = self.link_deadline(l) else {
            return;
        };
        let serial = l.serial;
        let l = &mut self.links[link];
        if l.timer_at.is_none_or(|t| at < t) {
            l.timer_at = Some(at);
            self.timers.push(Reverse((at, Timer::Link(link, serial))));
        }
    }

    fn peer_deadline(&self, p: &Peer) -> Option<Instant> {
        // Only conditions the timer will act on (and so clear) count.
        let mut at = p.session.ack_due().filter(|_| p.active.is_some());
        let mut min = |t: Option<Instant>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        };
        min(p.session.next_expiry());
        min(p.next_try);
        min(p.wait_until);
        if p.phase != Phase::Up && p.attempt.is_none() {
            // With an attempt in flight, its own deadline decides.
            min(Some(
                p.since + Duration::from_millis(self.cfg.reconnect_give_up_ms),
            ));
        }
        at
    }

    fn arm_peer(&mut self, pid: usize) {
        let Some(p) = self.peers.get(pid) else { return };
        let Some(at) = self.peer_deadline(p) else {
            return;
        };
        let id = p.id;
        let p = &mut self.peers[pid];
        if p.timer_at.is_none_or(|t| at < t) {
            p.timer_at = Some(at);
            self.timers.push(Reverse((at, Timer::Peer(pid, id))));
        }
    }

    /// Handles every deadline that is due. Deadlines armed while handling
    /// them wait for the next call, so a condition that stays true cannot
    /// spin here.
    pub fn on_timeout(&mut self, now: Instant) {
        self.expire_calls(now);
        let mut due: SmallVec<[(Instant, Timer); 8]> = SmallVec::new();
        while let Some(&Reverse((at, timer))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            due.push((at, timer));
        }
        for (at, timer) in due {
            match timer {
                Timer::Link(link, serial) => {
                    let ok = self
                        .links
                        .get(link)
                        .is_some_and(|l| l.serial == serial && l.timer_at == Some(at));
                    if ok {
                        self.links[link].timer_at = None;
                        self.link_timer(link, now);
                        self.arm_link(link);
                    }
                }
                Timer::Peer(pid, id) => {
                    let ok = self
                        .peers
                        .get(pid)
                        .is_some_and(|p| p.id == id && p.timer_at == Some(at));
                    if ok {
                        self.peers[pid].timer_at = None;
                        self.peer_timer(pid, now);
                        self.arm_peer(pid);
                    }
                }
            }
        }
    }

    fn link_timer(&mut self, link: usize, now: Instant) {
        let l = &self.links[link];
        match l.state {
            LinkState::Established => {
                if self.cfg.idle_timeout_ms == 0 {
                    return;
                }
                let idle = Duration::from_millis(self.cfg.idle_timeout_ms);
                if now >= l.last_send + idle / 3 {
                    // Quiet for a third of the idle timeout: give back the
                    // memory a past burst left in the buffers.
                    let pid = l.peer;
                    let l = &mut self.links[link];
                    l.wbuf.release_if_empty();
                    if l.rbuf.is_empty() {
                        l.rbuf = BytesMut::new();
                    }
                    if let Some(p) = pid.and_then(|p| self.peers.get_mut(p)) {
                        p.session.out.release_idle();
                    }
                }
                let l = &self.links[link];
                if l.read_paused {
                    // We are not reading: the peer may well be talking. Our
                    // PINGs below still go out, so the peer hears from us.
                    self.links[link].last_recv = now;
                }
                let l = &self.links[link];
                if now >= l.last_recv + idle {
                    log::warn!(target: "xxnet::endpoint", "peer {} silent for {} ms: declaring it down", l.remote, self.cfg.idle_timeout_ms);
                    self.link_down(link, XXNET_E_IDLE_TIMEOUT, now);
                } else if now >= l.last_send + idle / 3 {
                    let token = self.random();
                    let l = &mut self.links[link];
                    let mut b = BytesMut::with_capacity(24);
                    handshake::encode_ping(token, &mut b);
                    l.wbuf.put_slice(&b);
                    // Counts as sending: the next ping is a third of the timeout away.
                    l.last_send = now;
                    self.list_flush(link);
                }
            }
            _ => {
                if l.deadline.is_some_and(|d| now >= d) {
                    let code = if l.state == LinkState::Closing {
                        XXNET_E_DUPLICATE_CONN
                    } else {
                        XXNET_E_CONNECT_TIMEOUT
                    };
                    self.link_down(link, code, now);
                }
            }
        }
    }

    fn peer_timer(&mut self, pid: usize, now: Instant) {
        if self.peers[pid].session.ack_due().is_some_and(|d| d <= now) {
            if let Some(l) = self.peers[pid].active {
                self.list_flush(l);
            }
        }
        if self.peers[pid]
            .session
            .next_expiry()
            .is_some_and(|d| d <= now)
        {
            let mut evs = std::mem::take(&mut self.scratch);
            self.peers[pid].session.expire(now, &mut evs);
            self.report_session_events(pid, &mut evs, XXNET_OK);
            self.scratch = evs;
            self.touch(pid);
        }
        let p = &self.peers[pid];
        if p.phase == Phase::Up {
            return;
        }
        let give_up = p.since + Duration::from_millis(self.cfg.reconnect_give_up_ms);
        if now >= give_up && p.attempt.is_none() {
            let code = p.last_error;
            self.end_session(pid, code);
            return;
        }
        if p.wait_until.is_some_and(|w| now >= w) {
            let p = &mut self.peers[pid];
            p.wait_until = None;
            p.last_error = XXNET_E_CONNECT_TIMEOUT;
            self.schedule_retry(pid, now);
            return;
        }
        if p.next_try.is_some_and(|t| now >= t) {
            self.peers[pid].next_try = None;
            self.start_connect(pid, now);
        }
    }

    // ----- host commands ---------------------------------------------------

    /// With `step` reactors, this one hands out the conn ids `first`,
    /// `first + step`, ... (so conn `c` lives on reactor `c % step`). Call
    /// before any session exists.
    pub fn set_conn_ids(&mut self, first: u64, step: u64) {
        debug_assert!(self.peers.is_empty() && step > 0 && first > 0);
        self.next_conn = first;
        self.conn_step = step.max(1);
    }

    /// Moves out the announced listen addresses of the nodes reached as
    /// connector since the last call (they may differ from the address
    /// dialled, behind a proxy). With several reactors they are bound
    /// to this one, so the node's own connections to us are handed here.
    pub fn take_learned(&mut self, into: &mut Vec<SocketAddr>) {
        into.append(&mut self.learned);
    }

    /// This context's instance id (the same on every reactor).
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Moves out the instance ids of nodes without a listen address whose
    /// session ended since the last call.
    pub fn take_gone_instances(&mut self, into: &mut Vec<u64>) {
        into.append(&mut self.gone_instances);
    }

    /// Registers a listening address (for the announced address).
    pub fn add_listener(&mut self, addr: SocketAddr) {
        self.listeners.push(addr);
    }

    fn announced(&self, local: Option<IpAddr>) -> Option<SocketAddr> {
        let addr = self.listeners.first()?;
        if !addr.ip().is_unspecified() {
            return Some(*addr);
        }
        let ip = self.cfg.advertise_ip.or(local)?;
        Some(SocketAddr::new(ip, addr.port()))
    }

    fn new_peer(&mut self, shown: SocketAddr, key: Option<SocketAddr>, now: Instant) -> usize {
        let id = self.next_conn;
        self.next_conn += self.conn_step;
        let send_id = self.new_send_id();
        let pid = self.peers.insert(Peer {
            id,
            keys: SmallVec::new(),
            instance: 0,
            shown,
            name: Bytes::new(),
            session: Session::new(send_id, self.cfg.fragment_size),
            active: None,
            attempt: None,
            abandoned: SmallVec::new(),
            phase: Phase::New,
            since: now,
            attempts: 0,
            next_try: None,
            wait_until: None,
            last_error: XXNET_E_CONNECT_TIMEOUT,
            last_nonce: 0,
            announced: false,
            timer_at: None,
            flush_listed: false,
            snapshot_dirty: false,
            calls: 0,
            waiting_calls: 0,
        });
        self.by_conn.insert(id, pid);
        if let Some(k) = key {
            self.add_key(pid, k);
        }
        pid
    }

    fn add_key(&mut self, pid: usize, key: SocketAddr) {
        if self.by_addr.contains_key(&key) {
            return;
        }
        self.by_addr.insert(key, pid);
        self.peers[pid].keys.push(key);
    }

    /// Queues a message. A destination that is gone gets it reported at once.
    pub fn send(&mut self, m: Outgoing, now: Instant) {
        if self.shutting_down {
            return;
        }
        let pid = match m.dest {
            Dest::Addr(addr) => match self.last_dest {
                Some((a, pid)) if a == addr && self.peers.contains(pid) => pid,
                _ => {
                    let pid = match self.by_addr.get(&addr) {
                        Some(&pid) => pid,
                        None => {
                            let pid = self.new_peer(addr, Some(addr), now);
                            self.start_connect(pid, now);
                            pid
                        }
                    };
                    self.last_dest = Some((addr, pid));
                    pid
                }
            },
            Dest::Conn(id) => match self.by_conn.get(&id) {
                Some(&pid) => pid,
                None => return self.fail_unrouted(id, &m),
            },
        };
        let track = m.track;
        if track & CALL_BIT != 0 && !self.start_call(pid, &m, now) {
            return;
        }
        self.held_msgs += 1;
        self.held_bytes += m.data.len() as u64;
        let p = &mut self.peers[pid];
        let tag = MsgTag {
            track,
            acct: m.acct,
            flags: m.flags,
        };
        p.session.out.push_tagged(m.lane, m.msg_id, m.data, tag);
        if track != 0 && track & CALL_BIT == 0 {
            let ms = match m.ack_timeout_ms {
                0 => self.cfg.ack_timeout_ms,
                ms => ms as u64,
            };
            let deadline = now + Duration::from_millis(ms);
            p.session.track(track, m.lane, deadline);
            self.arm_peer(pid);
        }
        self.list_peer_flush(pid);
        self.touch(pid);
    }

    /// A message for a session that no longer exists.
    fn fail_unrouted(&mut self, conn: u64, m: &Outgoing) {
        let len = m.data.len() as u64;
        self.release(m.acct, len);
        self.counters.failed_msgs += 1;
        self.counters.failed_bytes += len;
        if m.acct == crate::files::FILES_ACCT {
            return; // the files thread's own message: it retries by itself
        }
        if m.track != 0 {
            self.events.push(Event {
                kind: XXNET_EVENT_EXPIRED,
                code: XXNET_E_CLOSED,
                conn,
                id: m.track,
                ..Event::default()
            });
            return;
        }
        if let Some(last) = self.events.last_mut() {
            if last.kind == XXNET_EVENT_SEND_FAILED
                && last.conn == conn
                && last.code == XXNET_E_CLOSED
            {
                last.count += 1;
                last.total += len;
                return;
            }
        }
        self.events.push(Event {
            kind: XXNET_EVENT_SEND_FAILED,
            code: XXNET_E_CLOSED,
            conn,
            count: 1,
            total: len,
            msg_id: m.msg_id,
            lane: m.lane,
            ..Event::default()
        });
    }

    /// Messages leaving a session (acknowledged, failed, or cancelled
    /// unsent): they stop counting in the backlog and credit their account.
    fn leave(&mut self, acct: u32, msgs: u64, bytes: u64) {
        self.held_msgs -= msgs;
        self.held_bytes -= bytes;
        self.release(acct, bytes);
    }

    fn release(&mut self, acct: u32, bytes: u64) {
        if acct == 0 {
            return;
        }
        match self.releases.last_mut() {
            Some((a, b)) if *a == acct => *b += bytes,
            _ => self.releases.push((acct, bytes)),
        }
    }

    /// Ends a session at the host's request (xxnet_close).
    pub fn close_conn(&mut self, conn: u64, _now: Instant) {
        if let Some(&pid) = self.by_conn.get(&conn) {
            self.end_session(pid, XXNET_E_LOCAL_CLOSE);
        }
    }

    /// Says goodbye on every link and closes them all; nothing is reported
    /// (the host is going away).
    pub fn shutdown(&mut self) {
        self.shutting_down = true;
        let keys: Vec<usize> = self.links.iter().map(|(k, _)| k).collect();
        for k in keys {
            let l = self.links.remove(k);
            let goodbye = farewell(l, XXNET_E_SHUTDOWN);
            self.actions.push_back(Action::Close { link: k, goodbye });
        }
    }

    // ----- connecting ------------------------------------------------------

    fn start_connect(&mut self, pid: usize, now: Instant) {
        let p = &self.peers[pid];
        if p.active.is_some() || p.attempt.is_some() || !p.dialable() || self.shutting_down {
            return;
        }
        let addr = p.keys[0];
        let nonce = self.next_nonce;
        self.next_nonce += 1;
        let link = self.add_link(addr, true, now);
        let l = &mut self.links[link];
        l.nonce = nonce;
        l.peer = Some(pid);
        l.deadline = Some(now + Duration::from_millis(self.cfg.connect_timeout_ms));
        self.peers[pid].attempt = Some(link);
        self.arm_link(link);
        self.actions.push_back(Action::Connect { link, addr });
    }

    fn add_link(&mut self, remote: SocketAddr, outgoing: bool, now: Instant) -> usize {
        let serial = self.next_serial;
        self.next_serial += 1;
        self.links.insert(Link {
            serial,
            state: if outgoing {
                LinkState::Connecting
            } else {
                LinkState::AwaitHello
            },
            nonce: 0,
            remote,
            local: None,
            peer: None,
            rbuf: BytesMut::new(),
            decoder: FrameDecoder::new(),
            reasm: Reassembler::new(self.cfg.max_message_size),
            wbuf: WriteBuf::new(),
            last_recv: now,
            last_send: now,
            deadline: None,
            read_paused: false,
            flush_listed: false,
            timer_at: None,
            auth: None,
            preface_sent: false,
        })
    }

    /// The TCP connect of `link` completed; `local` is the socket's local address.
    pub fn connected(&mut self, link: usize, local: SocketAddr, now: Instant) {
        let Some(l) = self.links.get(link) else {
            return;
        };
        if l.state != LinkState::Connecting {
            return;
        }
        let (pid, nonce) = (l.peer, l.nonce);
        let sync = pid
            .map(|p| self.peers[p].session.sync())
            .unwrap_or_default();
        let challenge = match self.cfg.auth_secret {
            Some(_) => Some(self.challenges.next_challenge()),
            None => None,
        };
        let hello = Hello {
            sync,
            instance: self.instance,
            nonce,
            listen: self.announced(Some(local.ip())),
            name: self.cfg.node_name.clone(),
            challenge,
        };
        let mut b = BytesMut::with_capacity(128);
        b.extend_from_slice(&Preface::BYTES);
        hello.encode(&mut b);
        let auth = challenge.map(|cc| {
            let body = &b[Preface::LEN + super::FrameHeader::LEN..];
            Box::new(LinkAuth {
                ours: cc,
                theirs: None,
                hello_digest: auth::hello_digest(body),
                hello: None,
            })
        });
        let l = &mut self.links[link];
        l.local = Some(local);
        l.state = LinkState::AwaitAck;
        l.last_recv = now;
        l.auth = auth;
        l.preface_sent = true;
        l.wbuf.put_slice(&b);
        self.list_flush(link);
    }

    /// Counts an accepted connection refused because the context is at
    /// `max_connections` (or shutting down) and returns the HELLO_ACK (Busy)
    /// to write before closing it. Reactor 0 calls it directly when several
    /// reactors together hold `max_connections`.
    /// (The connection is counted as accepted by `accept` / `count_accepted`.)
    pub fn refuse_busy(&mut self, remote: SocketAddr, local: SocketAddr) -> Bytes {
        self.counters.refused += 1;
        log::warn!(target: "xxnet::endpoint", "refusing {remote}: max_connections ({}) reached", self.cfg.max_connections);
        let ack = HelloAck {
            status: AckStatus::Busy,
            instance: self.instance,
            abandoned_nonce: 0,
            listen: self.announced(Some(local.ip())),
            sync: SessionSync::default(),
            name: None,
            proof: None,
        };
        let mut b = BytesMut::with_capacity(96);
        b.extend_from_slice(&Preface::BYTES);
        ack.encode(&mut b);
        b.freeze()
    }

    /// A connection was accepted. Returns the new link, or the bytes of a
    /// refusal to write before closing (max_connections reached).
    pub fn accept(
        &mut self,
        remote: SocketAddr,
        local: SocketAddr,
        now: Instant,
    ) -> Result<usize, Bytes> {
        self.counters.accepted += 1;
        self.take_accepted(remote, local, now)
    }

    /// Counts a connection reactor 0 accepted and holds until its HELLO
    /// names the node (several reactors); the owner then calls `take_accepted`.
    pub fn count_accepted(&mut self) {
        self.counters.accepted += 1;
    }

    /// Like `accept`, for a connection already counted by `count_accepted`.
    pub fn take_accepted(
        &mut self,
        remote: SocketAddr,
        local: SocketAddr,
        now: Instant,
    ) -> Result<usize, Bytes> {
        if self.links.len() >= self.cfg.max_connections || self.shutting_down {
            return Err(self.refuse_busy(remote, local));
        }
        let link = self.add_link(remote, false, now);
        let l = &mut self.links[link];
        l.local = Some(local);
        l.deadline = Some(now + Duration::from_millis(self.cfg.handshake_timeout_ms));
        self.arm_link(link);
        Ok(link)
    }

    // ----- reading ---------------------------------------------------------

    /// The read buffer of `link`, and how many more bytes the frame at its front needs.
    pub fn read_buf(&mut self, link: usize) -> Option<(&mut BytesMut, usize)> {
        let l = self.links.get_mut(link)?;
        let need = l.decoder.needed(&l.rbuf);
        Some((&mut l.rbuf, need))
    }

    /// The reactor stopped (`true`) or resumed reading `link` because of the
    /// host's receive queue. While paused the idle timeout does not run on
    /// this side (our PINGs keep going out, so the peer's does).
    pub fn set_read_paused(&mut self, link: usize, paused: bool, now: Instant) {
        if let Some(l) = self.links.get_mut(link) {
            l.read_paused = paused;
            l.last_recv = now;
        }
    }

    /// False for links that are gone or connecting (nothing to read yet).
    pub fn wants_read(&self, link: usize) -> bool {
        self.links
            .get(link)
            .is_some_and(|l| l.state != LinkState::Connecting)
    }

    /// Processes what was read into `link`'s buffer.
    pub fn on_read(&mut self, link: usize, now: Instant) {
        if let Some(l) = self.links.get_mut(link) {
            l.last_recv = now;
        }
        if let Err(code) = self.process(link, now) {
            self.link_down(link, code, now);
        }
    }

    /// The peer closed its side of `link`.
    ///
    /// A connection ending mid-frame or mid-message (`XXNET_E_TRUNCATED`) is
    /// logged and counted as a protocol error, but it is what a crash or a
    /// closed stalled connection looks like too, so only the link goes: the
    /// session reconnects and resends.
    pub fn on_eof(&mut self, link: usize, now: Instant) {
        let Some(l) = self.links.get(link) else {
            return;
        };
        let code = match l.decoder.finish(&l.rbuf) {
            Err(e) => self.protocol_error(link, e),
            Ok(()) if l.reasm.has_partial() => self.protocol_error(link, ProtoError::Truncated),
            Ok(()) => XXNET_E_PEER_CLOSED,
        };
        self.link_down(link, code, now);
    }

    /// `link` failed with an I/O error (or its connect failed).
    pub fn link_failed(&mut self, link: usize, code: c_int, now: Instant) {
        self.link_down(link, code, now);
    }

    fn protocol_error(&mut self, link: usize, e: ProtoError) -> c_int {
        self.counters.protocol_errors += 1;
        if let Some(l) = self.links.get(link) {
            log::warn!(target: "xxnet::endpoint", "protocol error from {}: {e}", l.remote);
        }
        e.code()
    }

    fn process(&mut self, link: usize, now: Instant) -> Result<(), c_int> {
        loop {
            let Some(l) = self.links.get_mut(link) else {
                return Ok(());
            };
            let frame = match l.decoder.decode(&mut l.rbuf) {
                Ok(Some(f)) => f,
                Ok(None) => {
                    if l.rbuf.is_empty() {
                        // Hold no memory between frames: an empty slice of a
                        // shared read chunk still pins the chunk, and an
                        // idle link needs no buffer (the reactor reads into
                        // a shared chunk while this is empty).
                        l.rbuf = BytesMut::new();
                    }
                    return Ok(());
                }
                Err(e) => return Err(self.protocol_error(link, e)),
            };
            let state = l.state;
            match (state, frame.header.kind) {
                (LinkState::Established, FrameType::Data) => {
                    let pid = l.peer.expect("established link has a peer");
                    let msg = match l.reasm.push(&frame.header, frame.body) {
                        Ok(Some(m)) => m,
                        Ok(None) => continue,
                        Err(e) => return Err(self.protocol_error(link, e)),
                    };
                    let p = &mut self.peers[pid];
                    match p.session.accept(msg.lane, msg.seq) {
                        Ok(Accept::Deliver) => {}
                        Ok(Accept::Duplicate) => {
                            self.counters.duplicates += 1;
                            continue;
                        }
                        Err(e) => return Err(self.protocol_error(link, e)),
                    }
                    let len = msg.payload.len();
                    let rearm = p.session.owe_ack(len, now, ACK_DELAY);
                    self.counters.msgs_in += 1;
                    self.counters.bytes_in += len as u64;
                    if rearm {
                        self.arm_peer(pid);
                    }
                    if msg.flags & rpc::FLAG != 0 {
                        let m =
                            rpc::decode(&msg.payload).map_err(|e| self.protocol_error(link, e))?;
                        self.on_rpc(pid, msg.lane, m);
                        continue;
                    }
                    let p = &self.peers[pid];
                    self.event_bytes += len;
                    self.events.push(Event {
                        kind: XXNET_EVENT_MESSAGE,
                        conn: p.id,
                        peer: Some(p.shown),
                        lane: msg.lane,
                        msg_id: msg.msg_id,
                        data: msg.payload,
                        ..Event::default()
                    });
                }
                (LinkState::Established, FrameType::Ack) => {
                    let pid = l.peer.expect("established link has a peer");
                    let acked = handshake::decode_ack(&frame.body)
                        .map_err(|e| self.protocol_error(link, e))?;
                    let mut evs = std::mem::take(&mut self.scratch);
                    self.peers[pid].session.on_ack(&acked, &mut evs);
                    self.report_session_events(pid, &mut evs, XXNET_OK);
                    self.scratch = evs;
                    self.touch(pid);
                }
                (LinkState::Established, FrameType::Ping) => {
                    let token = handshake::decode_ping_token(&frame.body)
                        .map_err(|e| self.protocol_error(link, e))?;
                    let mut b = BytesMut::with_capacity(24);
                    handshake::encode_pong(token, &mut b);
                    self.links[link].wbuf.put_slice(&b);
                    self.list_flush(link);
                }
                (LinkState::Established, FrameType::Pong) => {}
                (LinkState::Established, FrameType::GoAway) => {
                    let why = handshake::decode_goaway(&frame.body).unwrap_or(XXNET_E_PROTOCOL);
                    let pid = l.peer.expect("established link has a peer");
                    log::info!(target: "xxnet::endpoint", "peer {} ends the session: {}", self.peers[pid].shown, describe(why));
                    self.end_session(pid, XXNET_E_PEER_CLOSED);
                    return Ok(());
                }
                (LinkState::AwaitHello, FrameType::Hello) => {
                    let hello =
                        Hello::decode(&frame.body).map_err(|e| self.protocol_error(link, e))?;
                    if self.cfg.auth_secret.is_some() {
                        // Nothing with side effects before the connector proves itself.
                        self.challenge(link, hello, &frame.body);
                    } else {
                        self.on_hello(link, hello, now);
                    }
                }
                (LinkState::AwaitAuth, FrameType::Auth) => {
                    let proof = handshake::decode_auth(&frame.body)
                        .map_err(|e| self.protocol_error(link, e))?;
                    self.on_auth(link, &proof, now);
                }
                (LinkState::AwaitAck, FrameType::Challenge) => {
                    let ca = handshake::decode_challenge(&frame.body)
                        .map_err(|e| self.protocol_error(link, e))?;
                    self.on_challenge(link, ca)?;
                }
                (LinkState::AwaitAck, FrameType::HelloAck) => {
                    let ack =
                        HelloAck::decode(&frame.body).map_err(|e| self.protocol_error(link, e))?;
                    self.on_hello_ack(link, ack, now)?;
                }
                (LinkState::Closing, _) => {}
                _ => {
                    return Err(self.protocol_error(
                        link,
                        ProtoError::BadFrame("frame not allowed in this state"),
                    ));
                }
            }
        }
    }

    // ----- handshake -------------------------------------------------------

    fn on_hello(&mut self, link: usize, hello: Hello, now: Instant) {
        let local = self.links[link].local.map(|a| a.ip());
        let ours = self.announced(local);
        let remote = self.links[link].remote;
        // A context dialling its own listen address is served like a client:
        // its outgoing link stays the pooled one for that address.
        let pooled = hello.listen.filter(|_| hello.instance != self.instance);
        let Some(theirs) = pooled else {
            let pid = match self.by_instance.get(&hello.instance) {
                Some(&pid) => {
                    if let Some(old) = self.peers[pid].active.take() {
                        self.close_link(old, XXNET_E_DUPLICATE_CONN);
                    }
                    pid
                }
                None => {
                    let pid = self.new_peer(remote, None, now);
                    self.by_instance.insert(hello.instance, pid);
                    pid
                }
            };
            let name = hello.name.as_deref();
            self.establish(
                link,
                pid,
                hello.instance,
                &hello.sync,
                0,
                false,
                ours,
                name,
                now,
            );
            return;
        };
        let pid = self.by_addr.get(&theirs).copied();
        if let Some(p) = pid.map(|p| &self.peers[p]) {
            if p.instance == hello.instance && hello.nonce <= p.last_nonce {
                // A connect attempt older than one already accepted (it sat
                // in our accept backlog while we stalled): not a new link.
                log::debug!(target: "xxnet::endpoint", "stale HELLO from {theirs} nonce {}", hello.nonce);
                self.refuse_duplicate(link, ours);
                return;
            }
        }
        let view = match pid.map(|p| &self.peers[p]) {
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
        log::debug!(target: "xxnet::endpoint", "HELLO from {theirs} nonce {}: {decision:?}", hello.nonce);
        let mut abandoned = 0;
        match decision {
            HelloDecision::RefuseDuplicate => {
                self.refuse_duplicate(link, ours);
                return;
            }
            HelloDecision::AcceptReplacing => {
                let p = pid.expect("established implies a peer");
                if let Some(old) = self.peers[p].active.take() {
                    self.close_link(old, XXNET_E_DUPLICATE_CONN);
                }
            }
            HelloDecision::AcceptAbandoningOurs => {
                let p = pid.expect("pending implies a peer");
                if let Some(att) = self.peers[p].attempt.take() {
                    abandoned = self.links[att].nonce;
                    self.close_link(att, XXNET_E_DUPLICATE_CONN);
                }
            }
            HelloDecision::Accept => {}
        }
        let pid = match pid {
            Some(p) => p,
            None => self.new_peer(theirs, Some(theirs), now),
        };
        self.peers[pid].last_nonce = hello.nonce;
        self.establish(
            link,
            pid,
            hello.instance,
            &hello.sync,
            abandoned,
            false,
            ours,
            hello.name.as_deref(),
            now,
        );
    }

    /// Answers a HELLO with a duplicate refusal, then closes.
    fn refuse_duplicate(&mut self, link: usize, ours: Option<SocketAddr>) {
        self.refuse(link, AckStatus::Duplicate, ours);
    }

    /// Answers a HELLO with a refusing HELLO_ACK, then closes.
    fn refuse(&mut self, link: usize, status: AckStatus, ours: Option<SocketAddr>) {
        let ack = HelloAck {
            status,
            instance: self.instance,
            abandoned_nonce: 0,
            listen: ours,
            sync: SessionSync::default(),
            name: None,
            proof: None,
        };
        let l = &mut self.links[link];
        let mut b = BytesMut::with_capacity(96);
        if !l.preface_sent {
            b.extend_from_slice(&Preface::BYTES);
            l.preface_sent = true;
        }
        ack.encode(&mut b);
        l.wbuf.put_slice(&b);
        l.state = LinkState::Closing;
        l.auth = None;
        self.list_flush(link);
    }

    /// Acceptor with a secret, on HELLO: holds it and challenges the
    /// connector. Nothing else happens (no tie-break, no session, no link
    /// replaced) until AUTH proves it knows the secret.
    fn challenge(&mut self, link: usize, hello: Hello, body: &[u8]) {
        let Some(cc) = hello.challenge else {
            self.auth_refuse(
                link,
                AckStatus::AuthRequired,
                "sent no challenge (no auth_secret?)",
            );
            return;
        };
        let ca = self.challenges.next_challenge();
        let mut b = BytesMut::with_capacity(Preface::LEN + 32);
        b.extend_from_slice(&Preface::BYTES);
        handshake::encode_challenge(&ca, &mut b);
        let l = &mut self.links[link];
        l.auth = Some(Box::new(LinkAuth {
            ours: ca,
            theirs: Some(cc),
            hello_digest: auth::hello_digest(body),
            hello: Some(hello),
        }));
        l.state = LinkState::AwaitAuth;
        l.preface_sent = true;
        l.wbuf.put_slice(&b);
        self.list_flush(link);
    }

    /// Acceptor, on AUTH: a right proof carries on with the held HELLO
    /// exactly as without a secret; a wrong one is refused.
    fn on_auth(&mut self, link: usize, proof: &auth::Proof, now: Instant) {
        let secret = self
            .cfg
            .auth_secret
            .as_deref()
            .expect("AwaitAuth only with a secret");
        let a = self.links[link]
            .auth
            .as_mut()
            .expect("AwaitAuth has auth state");
        let cc = a.theirs.expect("the HELLO's challenge");
        if !auth::verify_connector(secret, &a.ours, &cc, &a.hello_digest, proof) {
            self.auth_refuse(
                link,
                AckStatus::AuthFailed,
                "failed authentication (another auth_secret?)",
            );
            return;
        }
        let hello = a.hello.take().expect("the held HELLO");
        self.on_hello(link, hello, now);
    }

    /// Acceptor: refuses a connector that did not authenticate, then closes.
    fn auth_refuse(&mut self, link: usize, status: AckStatus, why: &str) {
        self.counters.auth_failures += 1;
        log::warn!(target: "xxnet::endpoint", "refusing {}: it {why}", self.links[link].remote);
        self.refuse(link, status, None);
    }

    /// Connector, on CHALLENGE: answers with its proof (AUTH); without a
    /// secret the attempt fails.
    fn on_challenge(&mut self, link: usize, ca: Challenge) -> Result<(), c_int> {
        let Some(secret) = self.cfg.auth_secret.as_deref() else {
            return Err(self.auth_failed(link, "requires authentication; no auth_secret is set"));
        };
        let l = &mut self.links[link];
        let a = l
            .auth
            .as_mut()
            .expect("a connector with a secret sent a challenge");
        if a.theirs.is_some() {
            return Err(self.protocol_error(link, ProtoError::BadFrame("second CHALLENGE")));
        }
        a.theirs = Some(ca);
        let proof = auth::connector_proof(secret, &ca, &a.ours, &a.hello_digest);
        let mut b = BytesMut::with_capacity(48);
        handshake::encode_auth(&proof, &mut b);
        l.wbuf.put_slice(&b);
        self.list_flush(link);
        Ok(())
    }

    /// Connector: whether an accepting HELLO_ACK completes authentication
    /// (always, without a secret): a CHALLENGE came, and the HELLO_ACK's
    /// proof shows the acceptor knows the secret.
    fn acceptor_proved(&self, link: usize, ack: &HelloAck) -> bool {
        let Some(secret) = self.cfg.auth_secret.as_deref() else {
            return true;
        };
        let Some(a) = self.links[link].auth.as_deref() else {
            return false;
        };
        match (a.theirs, ack.proof) {
            (Some(ca), Some(p)) => auth::verify_acceptor(secret, &a.ours, &ca, &a.hello_digest, &p),
            _ => false,
        }
    }

    /// Connector: authentication failed; logged and counted. The attempt
    /// fails with XXNET_E_AUTH, which ends the session (no retry).
    fn auth_failed(&mut self, link: usize, why: &str) -> c_int {
        self.counters.auth_failures += 1;
        log::warn!(target: "xxnet::endpoint", "peer {} {why}", self.links[link].remote);
        XXNET_E_AUTH
    }

    fn on_hello_ack(&mut self, link: usize, ack: HelloAck, now: Instant) -> Result<(), c_int> {
        let Some(pid) = self.links[link].peer else {
            return Err(XXNET_E_DUPLICATE_CONN);
        };
        if self.peers[pid].attempt != Some(link) {
            return Err(XXNET_E_DUPLICATE_CONN);
        }
        match ack.status {
            AckStatus::Accepted => {
                if !self.acceptor_proved(link, &ack) {
                    let why = "accepted us without proving it knows our auth_secret";
                    return Err(self.auth_failed(link, why));
                }
                self.peers[pid].attempt = None;
                if ack.abandoned_nonce != 0 {
                    let p = &mut self.peers[pid];
                    if p.abandoned.len() >= 4 {
                        p.abandoned.remove(0);
                    }
                    p.abandoned.push(ack.abandoned_nonce);
                }
                if let Some(listen) = ack.listen {
                    self.add_key(pid, listen);
                    self.peers[pid].shown = listen;
                    if ack.instance != self.instance {
                        self.learned.push(listen);
                    }
                }
                let name = ack.name.as_deref();
                self.establish(link, pid, ack.instance, &ack.sync, 0, true, None, name, now);
                Ok(())
            }
            AckStatus::Duplicate => {
                // The peer keeps its own connection to us; wait for it.
                let p = &mut self.peers[pid];
                p.attempt = None;
                if p.active.is_none() {
                    p.wait_until = Some(now + Duration::from_millis(self.cfg.connect_timeout_ms));
                    self.arm_peer(pid);
                }
                self.links[link].peer = None;
                Err(XXNET_E_DUPLICATE_CONN)
            }
            AckStatus::Busy => Err(XXNET_E_PEER_BUSY),
            AckStatus::AuthRequired => {
                Err(self.auth_failed(link, "requires authentication; no auth_secret is set"))
            }
            AckStatus::AuthFailed => {
                Err(self.auth_failed(link, "refused our authentication (another auth_secret?)"))
            }
        }
    }

    /// Makes `link` the peer's connection: session sync, events, flush.
    #[allow(clippy::too_many_arguments)]
    fn establish(
        &mut self,
        link: usize,
        pid: usize,
        instance: u64,
        theirs: &SessionSync,
        abandoned: u64,
        initiated: bool,
        ours: Option<SocketAddr>,
        name: Option<&str>,
        now: Instant,
    ) {
        let mut evs = std::mem::take(&mut self.scratch);
        let resumed = self.peers[pid]
            .session
            .on_handshake(instance, theirs, &mut evs);
        self.peers[pid].waiting_calls = 0;
        if resumed.restarted || resumed.ended_by_peer {
            // Requests of pending calls were just dropped with the old session.
            self.fail_peer_calls(pid, XXNET_E_NODE_DOWN, false);
            let code = if resumed.restarted {
                XXNET_E_PEER_RESTARTED
            } else {
                XXNET_E_PEER_CLOSED
            };
            self.report_session_events(pid, &mut evs, code);
            let p = &mut self.peers[pid];
            if p.announced {
                let (id, shown) = (p.id, p.shown);
                self.events.push(Event {
                    kind: XXNET_EVENT_DISCONNECTED,
                    code,
                    conn: id,
                    peer: Some(shown),
                    ..Event::default()
                });
                self.snapshots.push((id, None));
                self.by_conn.remove(&id);
                let new_id = self.next_conn;
                self.next_conn += self.conn_step;
                let p = &mut self.peers[pid];
                p.id = new_id;
                p.announced = false;
                p.snapshot_dirty = false;
                p.timer_at = None;
                self.by_conn.insert(new_id, pid);
            }
        } else {
            self.report_session_events(pid, &mut evs, XXNET_OK);
        }
        self.scratch = evs;
        if !initiated {
            // The acceptor answers after applying the connector's block.
            // After a CHALLENGE / AUTH exchange it proves we know the secret too.
            let proof = self.links[link].auth.as_deref().and_then(|a| {
                let secret = self.cfg.auth_secret.as_deref()?;
                Some(auth::acceptor_proof(
                    secret,
                    &a.theirs?,
                    &a.ours,
                    &a.hello_digest,
                ))
            });
            let ack = HelloAck {
                status: AckStatus::Accepted,
                instance: self.instance,
                abandoned_nonce: abandoned,
                listen: ours,
                sync: self.peers[pid].session.sync(),
                name: self.cfg.node_name.clone(),
                proof,
            };
            let l = &mut self.links[link];
            let mut b = BytesMut::with_capacity(160);
            if !l.preface_sent {
                b.extend_from_slice(&Preface::BYTES);
                l.preface_sent = true;
            }
            ack.encode(&mut b);
            l.wbuf.put_slice(&b);
        }
        let p = &mut self.peers[pid];
        p.instance = instance;
        // The name the peer announced in this handshake, NUL-terminated (empty: none).
        p.name = name.map_or_else(Bytes::new, |n| Bytes::from([n.as_bytes(), b"\0"].concat()));
        p.active = Some(link);
        p.wait_until = None;
        p.next_try = None;
        p.attempts = 0;
        let was = p.phase;
        p.phase = Phase::Up;
        let (id, shown) = (p.id, p.shown);
        let l = &mut self.links[link];
        l.peer = Some(pid);
        l.state = LinkState::Established;
        l.auth = None;
        l.deadline = None;
        l.last_recv = now;
        l.last_send = now;
        if !self.peers[pid].announced {
            self.peers[pid].announced = true;
            self.events.push(Event {
                kind: XXNET_EVENT_CONNECTED,
                conn: id,
                id: initiated as u64,
                peer: Some(shown),
                ..Event::default()
            });
        } else if was == Phase::Down {
            self.counters.reconnects += 1;
            self.counters.msgs_resent += resumed.resent as u64;
            self.events.push(Event {
                kind: XXNET_EVENT_LINK_UP,
                conn: id,
                count: resumed.resent as u64,
                peer: Some(shown),
                ..Event::default()
            });
        }
        self.touch(pid);
        self.list_flush(link);
        self.arm_link(link);
        self.arm_peer(pid);
    }

    // ----- remote calls ----------------------------------------------------

    /// Registers (or withdraws) a service the host serves.
    pub fn set_service(&mut self, name: &str, serve: bool) {
        if serve {
            self.services.insert(name.as_bytes().into());
        } else {
            self.services.remove(name.as_bytes());
        }
    }

    /// Pending calls (for tests and introspection).
    pub fn pending_calls(&self) -> usize {
        self.calls.len()
    }

    /// Ends the session with the node at `addr` (it left the directory or
    /// moved): its pending calls resolve with `code`, the rest is reported.
    pub fn end_peer(&mut self, addr: SocketAddr, code: c_int) {
        if let Some(&pid) = self.by_addr.get(&addr) {
            self.end_session(pid, code);
        }
    }

    /// Registers the call `m` carries (its session in `m.track`). False when
    /// the call was resolved at once (the cache of calls waiting for a
    /// connection is full) and must not be queued.
    fn start_call(&mut self, pid: usize, m: &Outgoing, now: Instant) -> bool {
        let session = m.track & !CALL_BIT;
        let p = &mut self.peers[pid];
        if p.phase != Phase::Up {
            if p.waiting_calls >= self.cfg.call_cache_limit {
                let (conn, shown) = (if p.announced { p.id } else { 0 }, p.shown);
                self.release(m.acct, m.data.len() as u64);
                self.events.push(Event {
                    kind: XXNET_EVENT_CALL_RESULT,
                    code: XXNET_E_WOULD_BLOCK,
                    conn,
                    id: session,
                    lane: m.lane,
                    peer: Some(shown),
                    ..Event::default()
                });
                return false;
            }
            p.waiting_calls += 1;
        }
        p.calls += 1;
        let ms = match m.ack_timeout_ms {
            0 => self.cfg.call_timeout_ms,
            ms => ms as u64,
        };
        let deadline = now + Duration::from_millis(ms);
        self.calls.insert(
            session,
            PendingCall {
                pid,
                lane: m.lane,
                acct: m.acct,
                deadline,
            },
        );
        self.call_deadlines.push(Reverse((deadline, session)));
        if self.call_deadlines.len() > 1024 && self.call_deadlines.len() > 4 * self.calls.len() {
            // Mostly calls that resolved before their deadline: rebuild.
            self.call_deadlines = self
                .calls
                .iter()
                .map(|(&s, c)| Reverse((c.deadline, s)))
                .collect();
        }
        true
    }

    /// Resolves calls whose deadline passed.
    fn expire_calls(&mut self, now: Instant) {
        while let Some(&Reverse((at, session))) = self.call_deadlines.peek() {
            if at > now {
                return;
            }
            self.call_deadlines.pop();
            let Some(c) = self.calls.get(&session) else {
                continue; // resolved meanwhile
            };
            if c.deadline != at {
                continue;
            }
            let p = &self.peers[c.pid];
            // A request that never left because the node could not be
            // reached says so, rather than blaming a slow callee.
            let code = if p.phase != Phase::Up && p.attempts > 0 {
                XXNET_E_NODE_UNREACHABLE
            } else {
                XXNET_E_TIMEOUT
            };
            self.resolve_call(session, code, Bytes::new(), true);
        }
    }

    /// Resolves a pending call once: a CALL_RESULT event. With `withdraw`,
    /// a request not yet sent is taken out of the queue (it will never run).
    fn resolve_call(&mut self, session: u64, code: c_int, data: Bytes, withdraw: bool) {
        let Some(c) = self.calls.remove(&session) else {
            return;
        };
        let p = &mut self.peers[c.pid];
        p.calls -= 1;
        let mut removed = None;
        if withdraw {
            if let (Cancel::Removed, Some(info)) =
                p.session.out.cancel_unsent_info(c.lane, session | CALL_BIT)
            {
                removed = Some(info.len as u64);
                p.waiting_calls = p.waiting_calls.saturating_sub(1);
            }
        }
        let (conn, shown) = (if p.announced { p.id } else { 0 }, p.shown);
        if let Some(len) = removed {
            self.leave(c.acct, 1, len);
            self.touch(c.pid);
        }
        self.event_bytes += data.len();
        self.events.push(Event {
            kind: XXNET_EVENT_CALL_RESULT,
            code,
            conn,
            id: session,
            lane: c.lane,
            peer: Some(shown),
            data,
            ..Event::default()
        });
    }

    /// Resolves every pending call to peer `pid` with `code`, oldest first.
    fn fail_peer_calls(&mut self, pid: usize, code: c_int, withdraw: bool) {
        if self.peers[pid].calls == 0 {
            return;
        }
        let mut sessions: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.pid == pid)
            .map(|(&s, _)| s)
            .collect();
        sessions.sort_unstable();
        for s in sessions {
            self.resolve_call(s, code, Bytes::new(), withdraw);
        }
        self.peers[pid].waiting_calls = 0;
    }

    /// Queues an internal RPC message (an automatic reply) to peer `pid`.
    fn push_internal(&mut self, pid: usize, lane: u8, data: Bytes) {
        self.held_msgs += 1;
        self.held_bytes += data.len() as u64;
        let tag = MsgTag {
            flags: rpc::FLAG,
            ..MsgTag::default()
        };
        self.peers[pid].session.out.push_tagged(lane, 0, data, tag);
        self.list_peer_flush(pid);
        self.touch(pid);
    }

    /// A delivered RPC message from peer `pid`.
    fn on_rpc(&mut self, pid: usize, lane: u8, m: Rpc) {
        let p = &self.peers[pid];
        let (conn, shown) = (p.id, p.shown);
        let (session, service, body) = match m {
            Rpc::Call {
                session,
                service,
                body,
            } => (session, service, body),
            Rpc::Cast { service, body } => (0, service, body),
            Rpc::Reply {
                session,
                code,
                body,
            } => {
                if self.calls.get(&session).is_some_and(|c| c.pid == pid) {
                    self.resolve_call(session, code, body, false);
                } else {
                    // Resolved already (timeout, node down): the reply is late.
                    log::debug!(target: "xxnet::rpc", "late reply for call {session} from {shown} dropped");
                }
                return;
            }
            Rpc::Reject { code, len, service } => {
                log::warn!(target: "xxnet::rpc", "cast to {shown} dropped there: {} ({})", describe(code), rpc::name_text(&service));
                self.counters.failed_msgs += 1;
                self.counters.failed_bytes += len as u64;
                self.events.push(Event {
                    kind: XXNET_EVENT_SEND_FAILED,
                    code,
                    conn,
                    id: 1,
                    count: 1,
                    total: len as u64,
                    lane,
                    peer: Some(shown),
                    service,
                    ..Event::default()
                });
                return;
            }
        };
        let name = &service[..service.len() - 1];
        if !self.services.contains(name) {
            log::debug!(target: "xxnet::rpc", "request from {shown} for unknown service {}", rpc::name_text(&service));
            let answer = if session != 0 {
                rpc::reply(session, XXNET_E_NO_SERVICE)
            } else {
                rpc::reject(XXNET_E_NO_SERVICE, body.len() as u32, &service)
            };
            self.push_internal(pid, lane, answer);
            return;
        }
        self.event_bytes += body.len();
        let node = self.peers[pid].name.clone();
        self.events.push(Event {
            kind: XXNET_EVENT_CALL_REQUEST,
            conn,
            id: session,
            lane,
            peer: Some(shown),
            data: body,
            node,
            service,
            ..Event::default()
        });
    }

    // ----- writing ---------------------------------------------------------

    /// The write buffer of `link`, refilled from its session. None if the link is gone.
    pub fn transmit(&mut self, link: usize, now: Instant) -> Option<&mut WriteBuf> {
        let l = self.links.get_mut(link)?;
        if l.state == LinkState::Established {
            let pid = l.peer.expect("established link has a peer");
            let p = &mut self.peers[pid];
            if p.active == Some(link) {
                // An owed ACK goes out even when data is backed up behind it.
                if let Some(acked) = p.session.take_ack() {
                    l.wbuf.put_slice(&handshake::ack_frame(&acked));
                }
            }
        }
        if l.state == LinkState::Established && l.wbuf.len() < WBUF_LOW {
            let pid = l.peer.expect("established link has a peer");
            let p = &mut self.peers[pid];
            if p.active == Some(link) {
                let before = p.session.out.queued_msgs();
                p.session.out.fill_at(&mut l.wbuf, WBUF_HIGH, Some(now));
                if p.session.out.queued_msgs() != before && !p.snapshot_dirty {
                    p.snapshot_dirty = true;
                    self.snapshots.push((p.id, Some(pid)));
                }
            }
        }
        Some(&mut self.links[link].wbuf)
    }

    /// `n` bytes of `link`'s write buffer reached the socket.
    pub fn written(&mut self, link: usize, n: usize, now: Instant) {
        let Some(l) = self.links.get_mut(link) else {
            return;
        };
        let done = l.wbuf.advance(n);
        l.last_send = now;
        self.counters.msgs_out += done.msgs;
        self.counters.bytes_out += done.bytes;
        if l.state == LinkState::Closing && l.wbuf.is_empty() {
            self.close_link(link, XXNET_E_DUPLICATE_CONN);
        }
    }

    // ----- failures --------------------------------------------------------

    /// Removes a link and asks the reactor to close its socket; no reporting.
    fn close_link(&mut self, link: usize, code: c_int) {
        let Some(l) = self.links.try_remove(link) else {
            return;
        };
        log::debug!(target: "xxnet::endpoint", "link to {} closed: {}", l.remote, describe(code));
        let goodbye = if is_protocol_error(code)
            || matches!(
                code,
                XXNET_E_LOCAL_CLOSE | XXNET_E_NODE_REMOVED | XXNET_E_NODE_MOVED
            ) {
            farewell(l, code)
        } else {
            None
        };
        self.actions.push_back(Action::Close { link, goodbye });
    }

    /// A link died: close it, and move its peer on (reconnect, wait, or fail).
    fn link_down(&mut self, link: usize, code: c_int, now: Instant) {
        let Some(l) = self.links.get(link) else {
            return;
        };
        let pid = l.peer;
        let outgoing_attempt =
            pid.is_some_and(|p| self.peers.get(p).is_some_and(|p| p.attempt == Some(link)));
        let was_active =
            pid.is_some_and(|p| self.peers.get(p).is_some_and(|p| p.active == Some(link)));
        self.close_link(link, code);
        let Some(pid) = pid else { return };
        if was_active {
            // Pending calls resolve now: a caller learns within the idle
            // timeout that a frozen or vanished node will not answer.
            self.fail_peer_calls(pid, XXNET_E_NODE_DOWN, true);
            let p = &mut self.peers[pid];
            p.active = None;
            p.phase = Phase::Down;
            p.since = now;
            p.attempts = 0;
            p.last_error = code;
            let (id, shown) = (p.id, p.shown);
            self.touch(pid);
            if self.cfg.reconnect_give_up_ms == 0
                || (is_protocol_error(code) && code != XXNET_E_TRUNCATED)
            {
                // A peer that broke the protocol would only break it again.
                return self.end_session(pid, code);
            }
            self.events.push(Event {
                kind: XXNET_EVENT_LINK_DOWN,
                code,
                conn: id,
                peer: Some(shown),
                ..Event::default()
            });
            if self.peers[pid].dialable() {
                // Reconnect soon, with jitter, so both sides do not collide every time.
                let delay = self.backoff(0);
                self.peers[pid].next_try = Some(now + delay);
            }
            self.arm_peer(pid);
        } else if outgoing_attempt {
            self.counters.connect_failures += 1;
            let p = &mut self.peers[pid];
            p.attempt = None;
            p.last_error = code;
            let shown = p.shown;
            self.events.push(Event {
                kind: XXNET_EVENT_CONNECT_FAILED,
                code,
                peer: Some(shown),
                ..Event::default()
            });
            if self.peers[pid].active.is_none() {
                self.schedule_retry(pid, now);
            }
        }
    }

    fn backoff(&mut self, attempts: u32) -> Duration {
        let min = self.cfg.reconnect_min_ms;
        let max = self.cfg.reconnect_max_ms;
        let base = min.saturating_mul(1u64 << attempts.min(20)).min(max);
        // Jitter: 50..100 % of the base.
        let jitter = self.random() % (base / 2 + 1);
        Duration::from_millis(base - jitter)
    }

    fn schedule_retry(&mut self, pid: usize, now: Instant) {
        let give_up = Duration::from_millis(self.cfg.reconnect_give_up_ms);
        let p = &self.peers[pid];
        if self.cfg.reconnect_give_up_ms == 0
            || now >= p.since + give_up
            || is_fatal_connect_error(p.last_error)
        {
            let code = p.last_error;
            return self.end_session(pid, code);
        }
        let attempts = p.attempts;
        let delay = self.backoff(attempts);
        let p = &mut self.peers[pid];
        p.attempts += 1;
        p.next_try = Some(now + delay);
        self.touch(pid);
        self.arm_peer(pid);
    }

    /// Ends a session: what it holds is reported failed with `code`, the host
    /// gets DISCONNECTED (if it saw CONNECTED), and the peer is forgotten.
    fn end_session(&mut self, pid: usize, code: c_int) {
        let call_code = match code {
            XXNET_E_NODE_REMOVED | XXNET_E_NODE_MOVED | XXNET_E_AUTH => code,
            _ if self.peers[pid].phase == Phase::Up => XXNET_E_NODE_DOWN,
            // Calls still pending were made while it had no connection.
            _ => XXNET_E_NODE_UNREACHABLE,
        };
        self.fail_peer_calls(pid, call_code, false);
        if let Some(l) = self.peers[pid].active.take() {
            self.close_link(l, code);
        }
        if let Some(l) = self.peers[pid].attempt.take() {
            self.close_link(l, code);
        }
        let mut evs = std::mem::take(&mut self.scratch);
        let new_id = self.new_send_id();
        self.peers[pid].session.end(new_id, &mut evs);
        self.report_session_events(pid, &mut evs, code);
        self.scratch = evs;
        let p = self.peers.remove(pid);
        for k in &p.keys {
            if self.by_addr.get(k) == Some(&pid) {
                self.by_addr.remove(k);
            }
        }
        if self.by_instance.get(&p.instance) == Some(&pid) {
            self.by_instance.remove(&p.instance);
            self.gone_instances.push(p.instance);
        }
        self.by_conn.remove(&p.id);
        if self.last_dest.is_some_and(|(_, d)| d == pid) {
            self.last_dest = None;
        }
        self.snapshots.push((p.id, None));
        if p.announced {
            self.events.push(Event {
                kind: XXNET_EVENT_DISCONNECTED,
                code,
                conn: p.id,
                peer: Some(p.shown),
                ..Event::default()
            });
        }
    }

    /// Turns session events into host events and account releases.
    fn report_session_events(&mut self, pid: usize, evs: &mut Vec<SessionEvent>, code: c_int) {
        let (conn, shown, announced) = {
            let p = &self.peers[pid];
            (p.id, p.shown, p.announced)
        };
        let conn = if announced { conn } else { 0 };
        // Two reports: messages never sent (id 0), and messages sent but not
        // acknowledged, which the peer may have received (id 1).
        let mut failed = [0u64, 1].map(|id| Event {
            kind: XXNET_EVENT_SEND_FAILED,
            code,
            conn,
            id,
            peer: Some(shown),
            ..Event::default()
        });
        for ev in evs.drain(..) {
            match ev {
                SessionEvent::AckedRun { acct, msgs, bytes } => {
                    self.counters.msgs_acked += msgs;
                    self.leave(acct, msgs, bytes);
                }
                SessionEvent::Acked { info, report } => {
                    self.counters.msgs_acked += 1;
                    self.leave(info.tag.acct, 1, info.len as u64);
                    if report {
                        self.events.push(Event {
                            kind: XXNET_EVENT_DELIVERED,
                            conn,
                            id: info.tag.track,
                            peer: Some(shown),
                            ..Event::default()
                        });
                    }
                }
                SessionEvent::Failed { info, report } => {
                    self.leave(info.tag.acct, 1, info.len as u64);
                    self.counters.failed_msgs += 1;
                    self.counters.failed_bytes += info.len as u64;
                    match report {
                        // The files thread's messages: it retries by itself.
                        Report::SendFailed if info.tag.acct == crate::files::FILES_ACCT => {}
                        Report::SendFailed => {
                            let f = &mut failed[(info.seq != 0) as usize];
                            if f.count == 0 {
                                f.lane = info.lane;
                                f.msg_id = info.msg_id;
                            }
                            f.count += 1;
                            f.total += info.len as u64;
                        }
                        Report::Expired => self.events.push(Event {
                            kind: XXNET_EVENT_EXPIRED,
                            code,
                            conn,
                            id: info.tag.track,
                            peer: Some(shown),
                            ..Event::default()
                        }),
                        Report::Silent => {}
                    }
                }
                SessionEvent::Expired {
                    track,
                    code,
                    removed,
                } => {
                    if let Some(info) = removed {
                        self.leave(info.tag.acct, 1, info.len as u64);
                        self.counters.failed_msgs += 1;
                        self.counters.failed_bytes += info.len as u64;
                    }
                    self.events.push(Event {
                        kind: XXNET_EVENT_EXPIRED,
                        code,
                        conn,
                        id: track,
                        peer: Some(shown),
                        ..Event::default()
                    });
                }
            }
        }
        let [unsent, maybe] = failed;
        for f in [maybe, unsent] {
            if f.count > 0 {
                self.events.push(f);
            }
        }
    }
}

/// Connect failures no retry can fix: the session gives up at once, like
/// after a protocol error (XXNET_E_AUTH: the peer does not share our secret).
fn is_fatal_connect_error(code: c_int) -> bool {
    code == XXNET_E_AUTH
}

/// The last bytes of an established link that ends on purpose: whatever is
/// still buffered (whole frames), then GOAWAY with the reason, so the peer
/// ends the session at once instead of waiting to reconnect.
fn farewell(l: Link, code: c_int) -> Option<Bytes> {
    if l.state != LinkState::Established {
        return None;
    }
    let mut b = BytesMut::with_capacity(l.wbuf.len() + 24);
    let mut pending = l.wbuf;
    loop {
        let mut slices = [std::io::IoSlice::new(&[]); 64];
        let n = pending.io_slices(&mut slices);
        if n == 0 {
            break;
        }
        let taken: usize = slices[..n].iter().map(|s| s.len()).sum();
        for s in &slices[..n] {
            b.extend_from_slice(s);
        }
        pending.advance(taken);
    }
    handshake::encode_goaway(code, &mut b);
    Some(b.freeze())
}
