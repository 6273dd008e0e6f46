//! Deterministic simulation of xxnet nodes: sans-IO `Endpoint`s wired
//! through in-memory TCP connections on a virtual clock.
//!
//! The harness drives each endpoint exactly the way `src/reactor/mod.rs`
//! does, minus sockets:
//!
//! - `Action::Connect` becomes a pending connect that completes after a
//!   random delay: the target endpoint (found by its listen address) gets
//!   `accept`, the connector gets `connected`; no listener means
//!   `link_failed(XXNET_E_CONNECT_REFUSED)`. A frozen target's "kernel"
//!   completes the connection, and `accept` runs when it thaws.
//! - `Action::Close` writes the goodbye (if any) and a FIN; without a
//!   goodbye and with unread input it is a reset, as Linux does.
//! - Writing: `take_flush` plus links whose last write was partial
//!   ("writable" later): loop `transmit` / `io_slices` / `written`, taking
//!   only what the pipe's buffer has room for, sometimes a random prefix.
//! - Reading: `read_buf` / `on_read` in random chunk sizes (1-byte reads
//!   included), then `on_eof` or `link_failed` once the pipe says so.
//! - Timers: `on_timeout(now)` when `next_timeout()` is due; events,
//!   releases and snapshots are taken after every call, actions carried out.
//!
//! Bytes written travel with the connection's latency; a cut drops what is
//! in flight (optionally also what arrived unread) and tells each side
//! (reset or EOF) after its own delay, or never (half-open: only the idle
//! timeout notices). A partition cuts the connections between two nodes and
//! makes connects between them hang. Nodes can be frozen (nothing runs,
//! nothing is read), killed (their sockets reset or FIN, connects refused)
//! and restarted (a new `Endpoint`, new instance id, same listen address).
//!
//! When nothing can happen at the current instant the clock jumps to the
//! earliest deadline (timers, arrivals, connects). A deadline that is still
//! due after a whole turn moves the clock 1 ms, as the reactor's rounded
//! poll timeout would (and is counted: `Node::hot_timer`). Everything comes
//! from one xorshift generator, so a seed replays exactly.
//!
//! Debugging: SIM_SEED=n runs one seed of a `for_seeds` test, SIM_TRACE=1
//! prints what the harness does, SIM_LOG=debug the library's log.
//!
//! The [`Ledger`] records every message sent (payloads carry source,
//! destination, lane and a sequence number) and checks every delivery:
//! right destination, intact payload, per lane strictly increasing (no
//! duplicate, no reordering), and for need-ack messages exactly one fate.

#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::IoSlice;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::raw::c_int;
use std::time::{Duration, Instant};
use xxnet::codes::*;
use xxnet::config::Config;
use xxnet::proto::endpoint::{Action, Counters, Dest, Endpoint, Outgoing};
use xxnet::proto::event::Event;

// ----- logging --------------------------------------------------------------------

struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        eprintln!(
            "             | log {} {}: {}",
            r.level(),
            r.target(),
            r.args()
        );
    }
    fn flush(&self) {}
}

/// The library's log output goes to stderr when SIM_LOG is set (debug, info, ...).
fn init_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Some(level) = std::env::var("SIM_LOG")
            .ok()
            .and_then(|l| l.parse::<log::LevelFilter>().ok())
        {
            let _ = log::set_logger(&StderrLog);
            log::set_max_level(level);
        }
    });
}

// ----- randomness -------------------------------------------------------------

/// xorshift64*: small, fast, deterministic.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66_D1CE_4E5B | 1);
        r.next();
        r
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    pub fn usize(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as u64, hi as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }
}

pub fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

// ----- configuration ------------------------------------------------------------

/// A configuration suited to simulation: small fragments (multi-part
/// messages are cheap), quick reconnects, short idle timeout.
pub fn sim_config() -> Config {
    Config {
        fragment_size: 1024,
        max_message_size: 1 << 20,
        connect_timeout_ms: 200,
        handshake_timeout_ms: 200,
        reconnect_min_ms: 10,
        reconnect_max_ms: 160,
        reconnect_give_up_ms: 3_600_000,
        idle_timeout_ms: 300,
        ack_timeout_ms: 60_000,
        ..Config::default()
    }
}

/// Shape of the simulated network.
#[derive(Clone, Debug)]
pub struct NetParams {
    /// One-way latency of a connection, chosen per connection (ms).
    pub latency_ms: (u64, u64),
    /// TCP connect time (ms).
    pub connect_ms: (u64, u64),
    /// Socket buffer room per direction, chosen per connection (bytes).
    pub buf_cap: (usize, usize),
    /// Percentage of connections that read in chunks of 1 to 7 bytes.
    pub tiny_read_pct: u64,
    /// Percentage of connections whose writes are often cut short.
    pub partial_write_pct: u64,
}

impl Default for NetParams {
    fn default() -> Self {
        NetParams {
            latency_ms: (0, 4),
            connect_ms: (0, 3),
            buf_cap: (256, 96 * 1024),
            tiny_read_pct: 30,
            partial_write_pct: 50,
        }
    }
}

// ----- the in-memory TCP connection ---------------------------------------------

#[derive(Debug)]
struct Seg {
    at: Instant,
    data: Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadMode {
    /// 1..=7 bytes per read.
    Tiny,
    /// Random sizes.
    Mixed,
    /// Everything that has arrived.
    Bulk,
}

/// One side of a connection.
#[derive(Debug)]
struct End {
    node: usize,
    /// Incarnation of the node this end belongs to.
    epoch: u32,
    /// The endpoint's link id; None before `accept` or after close.
    link: Option<usize>,
    local: SocketAddr,
    /// This side closed its socket (or its process died).
    closed: bool,
    /// Bytes travelling toward this side, in arrival order.
    inbox: VecDeque<Seg>,
    inbox_bytes: usize,
    /// The other side's FIN arrives then (after the inbox).
    eof_at: Option<Instant>,
    /// An error (reset) is noticed then (after what arrived is read).
    err_at: Option<(Instant, c_int)>,
    /// EOF or error was reported to the endpoint.
    told: bool,
}

impl End {
    fn new(node: usize, epoch: u32, local: SocketAddr) -> End {
        End {
            node,
            epoch,
            link: None,
            local,
            closed: false,
            inbox: VecDeque::new(),
            inbox_bytes: 0,
            eof_at: None,
            err_at: None,
            told: false,
        }
    }

    fn ready(&self, now: Instant) -> bool {
        self.inbox.front().is_some_and(|s| s.at <= now)
    }

    /// Takes up to `max` bytes that have arrived.
    fn take(&mut self, max: usize, now: Instant) -> BytesMut {
        let mut out = BytesMut::new();
        while out.len() < max {
            let Some(front) = self.inbox.front_mut() else {
                break;
            };
            if front.at > now {
                break;
            }
            let n = front.data.len().min(max - out.len());
            out.extend_from_slice(&front.data.split_to(n));
            if front.data.is_empty() {
                self.inbox.pop_front();
            }
        }
        self.inbox_bytes -= out.len();
        out
    }

    fn clear(&mut self) {
        self.inbox.clear();
        self.inbox_bytes = 0;
    }

    /// Drops what has not arrived yet.
    fn drop_in_flight(&mut self, now: Instant) {
        while self.inbox.back().is_some_and(|s| s.at > now) {
            let s = self.inbox.pop_back().expect("back exists");
            self.inbox_bytes -= s.data.len();
        }
    }
}

#[derive(Debug)]
struct Conn {
    /// [connector, acceptor]
    ends: [End; 2],
    latency: Duration,
    cap: usize,
    read: ReadMode,
    partial_writes: bool,
    /// Cut by a fault: whatever is written is lost.
    cut: bool,
}

#[derive(Debug)]
struct PendingConnect {
    node: usize,
    epoch: u32,
    link: usize,
    addr: SocketAddr,
    local: SocketAddr,
    at: Instant,
}

/// How a cut connection's side learns about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A reset after this delay.
    Reset(Duration),
    /// An EOF (FIN) after this delay.
    Eof(Duration),
    /// Never: the connection is half-open for this side.
    Never,
}

/// A network fault on one connection.
#[derive(Clone, Copy, Debug)]
pub struct Cut {
    /// Bytes that already arrived but were not read yet stay readable.
    pub keep_arrived: bool,
    /// What the connector and the acceptor notice.
    pub notice: [Notice; 2],
}

impl Cut {
    /// A random cut: both sides mostly get a reset soon, sometimes late,
    /// sometimes never (the idle timeout must notice).
    pub fn random(rng: &mut Rng) -> Cut {
        let mut side = || match rng.below(10) {
            0 => Notice::Never,
            1 | 2 => Notice::Reset(rng.ms(20, 400)),
            _ => Notice::Reset(rng.ms(0, 5)),
        };
        let notice = [side(), side()];
        Cut {
            keep_arrived: rng.chance(50),
            notice,
        }
    }
}

/// How a killed node's connections end for the survivors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kill {
    /// Resets (the host vanished, or the socket had unread data).
    Reset,
    /// The kernel flushes what was written, then FIN (reset if unread data).
    Fin,
    /// Nothing at all: the peers only notice by the idle timeout.
    Silent,
}

// ----- nodes --------------------------------------------------------------------

/// An event as the host saw it, with its virtual time.
#[derive(Clone, Debug)]
pub struct Logged {
    pub at: Duration,
    pub epoch: u32,
    pub ev: Event,
}

pub struct Node {
    pub name: String,
    pub cfg: Config,
    pub ep: Endpoint,
    pub listen: Option<SocketAddr>,
    pub ip: IpAddr,
    /// False once killed (and not restarted): connects to it are refused.
    pub alive: bool,
    pub frozen: bool,
    /// Incarnation: 0, then +1 per restart.
    pub epoch: u32,
    /// Every host event (MESSAGE payloads dropped; the ledger checked them).
    pub log: Vec<Logged>,
    /// Conn id of the session with each peer node, from CONNECTED events.
    pub conn_to: BTreeMap<usize, u64>,
    /// Counters of earlier incarnations, summed.
    pub retired: Counters,
    links: BTreeMap<usize, (usize, usize)>,
    /// Links whose connect is in progress or failed, until the endpoint closes them.
    dialing: BTreeSet<usize>,
    blocked: BTreeSet<usize>,
    next_port: u16,
    /// Turns of the loop in which `on_timeout` left a deadline due, not the
    /// first time (the reactor would wake every millisecond while this lasts).
    pub hot_timer: u64,
    due_streak: u32,
    /// When this node last read bytes coming from each peer node.
    pub last_rx: BTreeMap<usize, Instant>,
    /// Payload bytes charged to backlog accounts by sends, and released.
    pub charged: u64,
    pub released: u64,
}

impl Node {
    /// Counters of all incarnations.
    pub fn counters(&self) -> Counters {
        add_counters(self.retired, self.ep.counters())
    }

    pub fn count(&self, kind: u32) -> usize {
        self.log.iter().filter(|l| l.ev.kind == kind).count()
    }

    pub fn events(&self, kind: u32) -> Vec<&Logged> {
        self.log.iter().filter(|l| l.ev.kind == kind).collect()
    }
}

fn add_counters(a: Counters, b: Counters) -> Counters {
    Counters {
        msgs_in: a.msgs_in + b.msgs_in,
        bytes_in: a.bytes_in + b.bytes_in,
        msgs_out: a.msgs_out + b.msgs_out,
        bytes_out: a.bytes_out + b.bytes_out,
        msgs_acked: a.msgs_acked + b.msgs_acked,
        msgs_resent: a.msgs_resent + b.msgs_resent,
        duplicates: a.duplicates + b.duplicates,
        protocol_errors: a.protocol_errors + b.protocol_errors,
        refused: a.refused + b.refused,
        accepted: a.accepted + b.accepted,
        connect_failures: a.connect_failures + b.connect_failures,
        failed_msgs: a.failed_msgs + b.failed_msgs,
        failed_bytes: a.failed_bytes + b.failed_bytes,
        reconnects: a.reconnects + b.reconnects,
        auth_failures: a.auth_failures + b.auth_failures,
    }
}

pub fn kind_name(kind: u32) -> &'static str {
    match kind {
        XXNET_EVENT_MESSAGE => "MESSAGE",
        XXNET_EVENT_CONNECTED => "CONNECTED",
        XXNET_EVENT_DISCONNECTED => "DISCONNECTED",
        XXNET_EVENT_SEND_FAILED => "SEND_FAILED",
        XXNET_EVENT_CONNECT_FAILED => "CONNECT_FAILED",
        XXNET_EVENT_ERROR => "ERROR",
        XXNET_EVENT_DELIVERED => "DELIVERED",
        XXNET_EVENT_EXPIRED => "EXPIRED",
        XXNET_EVENT_WRITABLE => "WRITABLE",
        XXNET_EVENT_LINK_DOWN => "LINK_DOWN",
        XXNET_EVENT_LINK_UP => "LINK_UP",
        _ => "?",
    }
}

// ----- the ledger -----------------------------------------------------------------

/// One message the test sent.
#[derive(Clone, Debug)]
pub struct SentMsg {
    pub seq: u64,
    pub len: usize,
    /// Need-ack id (0: none).
    pub track: u64,
    pub src_epoch: u32,
    /// Test-defined phase label at send time.
    pub phase: u32,
    pub sent_at: Duration,
    /// (receiver epoch, time) of each delivery.
    pub deliveries: Vec<(u32, Duration)>,
    /// DELIVERED or EXPIRED (kind, code) of a need-ack message.
    pub fate: Option<(u32, c_int)>,
}

/// A SEND_FAILED event.
#[derive(Clone, Debug)]
pub struct Failed {
    pub node: usize,
    pub epoch: u32,
    pub at: Duration,
    pub code: c_int,
    pub id: u64,
    pub count: u64,
    pub conn: u64,
}

#[derive(Default)]
pub struct Ledger {
    /// (src, dst, lane) → messages, index = seq - 1.
    pub lanes: BTreeMap<(usize, usize, u8), Vec<SentMsg>>,
    /// (src, track) → (src, dst, lane, index)
    tracks: BTreeMap<(usize, u64), (usize, usize, u8, usize)>,
    next_track: u64,
    last_delivered: BTreeMap<(usize, usize, u8), u64>,
    pub failed: Vec<Failed>,
    pub violations: Vec<String>,
    pub phase: u32,
    pub sent: u64,
    pub delivered: u64,
}

const MAGIC: u8 = 0xA5;
const HEADER: usize = 16;

fn filler(seq: u64, i: usize) -> u8 {
    (seq as u8).wrapping_mul(31).wrapping_add(i as u8)
}

fn msg_id_of(seq: u64, lane: u8) -> u32 {
    (seq as u32).wrapping_mul(7) ^ lane as u32
}

impl Ledger {
    fn violation(&mut self, s: String) {
        if self.violations.len() < 50 {
            self.violations.push(s);
        }
    }

    /// Records a message on lane `key` = (src, dst, lane) and builds its payload.
    fn record_send(
        &mut self,
        key: (usize, usize, u8),
        src_epoch: u32,
        len: usize,
        tracked: bool,
        at: Duration,
    ) -> (Bytes, u32, u64) {
        let (src, dst, lane) = key;
        let len = len.max(HEADER);
        let list = self.lanes.entry((src, dst, lane)).or_default();
        let seq = list.len() as u64 + 1;
        let track = if tracked {
            self.next_track += 1;
            self.next_track
        } else {
            0
        };
        let mut p = BytesMut::with_capacity(len);
        p.extend_from_slice(&[MAGIC, src as u8, dst as u8, lane]);
        p.extend_from_slice(&src_epoch.to_le_bytes());
        p.extend_from_slice(&seq.to_le_bytes());
        for i in HEADER..len {
            p.extend_from_slice(&[filler(seq, i)]);
        }
        list.push(SentMsg {
            seq,
            len,
            track,
            src_epoch,
            phase: self.phase,
            sent_at: at,
            deliveries: Vec::new(),
            fate: None,
        });
        if track != 0 {
            self.tracks
                .insert((src, track), (src, dst, lane, seq as usize - 1));
        }
        self.sent += 1;
        (p.freeze(), msg_id_of(seq, lane), track)
    }

    fn on_message(&mut self, node: usize, epoch: u32, ev: &Event, at: Duration) {
        let d = &ev.data;
        if d.len() < HEADER || d[0] != MAGIC {
            return self.violation(format!("node {node}: foreign payload of {} bytes", d.len()));
        }
        let (src, dst, lane) = (d[1] as usize, d[2] as usize, d[3]);
        let seq = u64::from_le_bytes(d[8..16].try_into().expect("8 bytes"));
        if dst != node {
            return self.violation(format!(
                "node {node} got a message for node {dst} (src {src} lane {lane} seq {seq})"
            ));
        }
        if lane != ev.lane || ev.msg_id != msg_id_of(seq, lane) {
            self.violation(format!(
                "node {node}: lane/msg_id mismatch: event lane {} msg_id {}, payload lane {lane} seq {seq}",
                ev.lane, ev.msg_id
            ));
        }
        let key = (src, dst, lane);
        let Some(m) = self
            .lanes
            .get_mut(&key)
            .and_then(|l| l.get_mut(seq as usize - 1))
        else {
            return self.violation(format!("node {node}: unknown message {key:?} seq {seq}"));
        };
        let intact = d.len() == m.len && (HEADER..d.len()).all(|i| d[i] == filler(seq, i));
        m.deliveries.push((epoch, at));
        let n = m.deliveries.len();
        self.delivered += 1;
        if !intact {
            self.violation(format!(
                "{key:?} seq {seq}: corrupted payload at node {node}"
            ));
        }
        if n > 1 {
            self.violation(format!(
                "{key:?} seq {seq}: delivered {n} times (at {at:?})"
            ));
        }
        let last = self.last_delivered.entry(key).or_insert(0);
        if seq <= *last {
            let last = *last;
            self.violation(format!(
                "{key:?}: seq {seq} delivered after seq {last} (reordered or duplicate) at {at:?}"
            ));
        } else {
            *last = seq;
        }
    }

    fn on_fate(&mut self, node: usize, ev: &Event, at: Duration) {
        let Some(&(s, d, lane, idx)) = self.tracks.get(&(node, ev.id)) else {
            return self.violation(format!(
                "node {node}: {} for unknown need-ack id {}",
                kind_name(ev.kind),
                ev.id
            ));
        };
        let m = &mut self.lanes.get_mut(&(s, d, lane)).expect("lane")[idx];
        if let Some((k, c)) = m.fate {
            let msg = format!(
                "({s},{d},{lane}) seq {}: second fate {} {} after {} {} at {at:?}",
                m.seq,
                kind_name(ev.kind),
                describe(ev.code),
                kind_name(k),
                describe(c)
            );
            return self.violation(msg);
        }
        m.fate = Some((ev.kind, ev.code));
        let (seq, undelivered) = (m.seq, m.deliveries.is_empty());
        if ev.kind == XXNET_EVENT_DELIVERED && undelivered {
            let msg =
                format!("({s},{d},{lane}) seq {seq}: DELIVERED at {at:?} but never delivered");
            self.violation(msg);
        }
        if ev.kind == XXNET_EVENT_EXPIRED && ev.code == XXNET_E_EXPIRED_UNSENT && !undelivered {
            let msg = format!(
                "({s},{d},{lane}) seq {seq}: EXPIRED_UNSENT at {at:?} but already delivered"
            );
            self.violation(msg);
        }
    }

    /// All messages from `src` to `dst` (every lane), in lane then seq order.
    pub fn between(&self, src: usize, dst: usize) -> Vec<&SentMsg> {
        self.lanes
            .iter()
            .filter(|((s, d, _), _)| *s == src && *d == dst)
            .flat_map(|(_, v)| v.iter())
            .collect()
    }

    pub fn all(&self) -> impl Iterator<Item = (&(usize, usize, u8), &SentMsg)> {
        self.lanes
            .iter()
            .flat_map(|(k, v)| v.iter().map(move |m| (k, m)))
    }

    /// Panics with the violations, if any.
    pub fn assert_clean(&self, ctx: &str) {
        if !self.violations.is_empty() {
            panic!(
                "{ctx}: {} violation(s):\n  {}",
                self.violations.len(),
                self.violations.join("\n  ")
            );
        }
    }

    /// Every message delivered exactly once (delivery order was checked as it happened).
    pub fn assert_all_delivered_once(&self, ctx: &str) {
        let mut bad = Vec::new();
        for (k, m) in self.all() {
            if m.deliveries.len() != 1 && bad.len() < 20 {
                bad.push(format!(
                    "{k:?} seq {} (sent at {:?}, track {}) delivered {} times",
                    m.seq,
                    m.sent_at,
                    m.track,
                    m.deliveries.len()
                ));
            }
        }
        assert!(bad.is_empty(), "{ctx}:\n  {}", bad.join("\n  "));
    }
}

// ----- the simulation -----------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default)]
pub struct SimStats {
    pub cuts: u64,
    pub conns: u64,
    pub bytes: u64,
    pub steps: u64,
}

pub struct Sim {
    pub seed: u64,
    /// Print what the harness does (env SIM_TRACE=1).
    pub trace: bool,
    pub rng: Rng,
    base: Instant,
    pub now: Instant,
    pub nodes: Vec<Node>,
    conns: Vec<Option<Conn>>,
    live: BTreeSet<usize>,
    pending: Vec<PendingConnect>,
    pub net: NetParams,
    pub stats: SimStats,
    pub ledger: Ledger,
    /// Node pairs (smaller first) that cannot reach each other: connects hang.
    partitions: BTreeSet<(usize, usize)>,
}

impl Sim {
    pub fn new(seed: u64, net: NetParams) -> Sim {
        let base = Instant::now();
        init_log();
        Sim {
            seed,
            trace: std::env::var_os("SIM_TRACE").is_some(),
            rng: Rng::new(seed),
            base,
            now: base,
            nodes: Vec::new(),
            conns: Vec::new(),
            live: BTreeSet::new(),
            pending: Vec::new(),
            net,
            stats: SimStats::default(),
            ledger: Ledger::default(),
            partitions: BTreeSet::new(),
        }
    }

    fn tr(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("{:>12.3?} | {}", self.elapsed(), what());
        }
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    pub fn at(&self, offset: Duration) -> Instant {
        self.base + offset
    }

    /// Adds a node; `listens`: it listens on 10.0.0.<n+1>:1000 (else it is a
    /// client at 10.0.1.<n+1> that listens nowhere).
    pub fn add_node(&mut self, cfg: Config, listens: bool) -> usize {
        let n = self.nodes.len();
        let ip = if listens {
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, n as u8 + 1))
        } else {
            IpAddr::V4(Ipv4Addr::new(10, 0, 1, n as u8 + 1))
        };
        let listen = listens.then(|| SocketAddr::new(ip, 1000));
        let ep = self.new_endpoint(&cfg, listen);
        self.nodes.push(Node {
            name: format!("n{n}"),
            cfg,
            ep,
            listen,
            ip,
            alive: true,
            frozen: false,
            epoch: 0,
            log: Vec::new(),
            conn_to: BTreeMap::new(),
            retired: Counters::default(),
            links: BTreeMap::new(),
            dialing: BTreeSet::new(),
            blocked: BTreeSet::new(),
            next_port: 40_000,
            last_rx: BTreeMap::new(),
            hot_timer: 0,
            due_streak: 0,
            charged: 0,
            released: 0,
        });
        n
    }

    fn new_endpoint(&mut self, cfg: &Config, listen: Option<SocketAddr>) -> Endpoint {
        let instance = self.rng.next() | 1;
        let seed = self.rng.next();
        let mut ep = Endpoint::new(cfg.clone(), instance, seed);
        if let Some(a) = listen {
            ep.add_listener(a);
        }
        ep
    }

    fn runnable(&self, n: usize) -> bool {
        let node = &self.nodes[n];
        node.alive && !node.frozen
    }

    fn node_of_ip(&self, ip: IpAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.ip == ip)
    }

    // ----- sending ---------------------------------------------------------------

    /// Where `src` sends to reach `dst`: its listen address, or the conn id
    /// of the session `dst` opened (None while unknown).
    pub fn dest(&self, src: usize, dst: usize) -> Option<Dest> {
        match self.nodes[dst].listen {
            Some(a) => Some(Dest::Addr(a)),
            None => self.nodes[src].conn_to.get(&dst).map(|&c| Dest::Conn(c)),
        }
    }

    /// Sends one message of `len` bytes (at least 16) from `src` to `dst`;
    /// `track`: need-ack, with this deadline (None: the config's default).
    /// Returns the need-ack id (0 if untracked), or None if `dst` cannot be
    /// addressed yet.
    pub fn send(
        &mut self,
        src: usize,
        dst: usize,
        lane: u8,
        len: usize,
        track: Option<Option<Duration>>,
    ) -> Option<u64> {
        let dest = self.dest(src, dst)?;
        Some(self.send_to(src, dst, dest, lane, len, track))
    }

    /// Like `send` with an explicit destination.
    pub fn send_to(
        &mut self,
        src: usize,
        dst: usize,
        dest: Dest,
        lane: u8,
        len: usize,
        track: Option<Option<Duration>>,
    ) -> u64 {
        let at = self.elapsed();
        let epoch = self.nodes[src].epoch;
        let (data, msg_id, id) =
            self.ledger
                .record_send((src, dst, lane), epoch, len, track.is_some(), at);
        let ack_timeout_ms = track.flatten().map_or(0, |d| d.as_millis() as u32);
        let node = &mut self.nodes[src];
        node.charged += data.len() as u64;
        node.ep.send(
            Outgoing {
                dest,
                lane,
                msg_id,
                data,
                track: id,
                acct: dst as u32 + 1,
                ack_timeout_ms,
                flags: 0,
            },
            self.now,
        );
        self.after_call(src);
        id
    }

    /// The host of `n` closes its session with `peer` (xxnet_close).
    pub fn close_conn(&mut self, n: usize, conn: u64) {
        let now = self.now;
        self.nodes[n].ep.close_conn(conn, now);
        self.after_call(n);
    }

    // ----- event collection and actions ------------------------------------------------

    fn collect(&mut self, n: usize) {
        let mut evs = Vec::new();
        self.nodes[n].ep.take_events(&mut evs);
        let at = self.elapsed();
        let epoch = self.nodes[n].epoch;
        for mut ev in evs {
            if self.trace && ev.kind != XXNET_EVENT_MESSAGE {
                eprintln!(
                    "{at:>12.3?} | n{n} event {} code {} conn {} id {} count {}",
                    kind_name(ev.kind),
                    ev.code,
                    ev.conn,
                    ev.id,
                    ev.count
                );
            }
            match ev.kind {
                XXNET_EVENT_MESSAGE => {
                    self.ledger.on_message(n, epoch, &ev, at);
                    ev.data = Bytes::new();
                }
                XXNET_EVENT_DELIVERED | XXNET_EVENT_EXPIRED => {
                    self.ledger.on_fate(n, &ev, at);
                }
                XXNET_EVENT_SEND_FAILED => self.ledger.failed.push(Failed {
                    node: n,
                    epoch,
                    at,
                    code: ev.code,
                    id: ev.id,
                    count: ev.count,
                    conn: ev.conn,
                }),
                XXNET_EVENT_CONNECTED => {
                    if let Some(p) = ev.peer.and_then(|p| self.node_of_ip(p.ip())) {
                        self.nodes[n].conn_to.insert(p, ev.conn);
                    }
                }
                XXNET_EVENT_DISCONNECTED => {
                    self.nodes[n].conn_to.retain(|_, c| *c != ev.conn);
                }
                _ => {}
            }
            self.nodes[n].log.push(Logged { at, epoch, ev });
        }
        let mut rel = Vec::new();
        self.nodes[n].ep.take_releases(&mut rel);
        self.nodes[n].released += rel.iter().map(|(_, b)| *b).sum::<u64>();
        self.nodes[n].ep.take_snapshots(|_, _| {});
    }

    /// After any call into node `n`'s endpoint: its events, then its actions.
    fn after_call(&mut self, n: usize) {
        self.collect(n);
        while let Some(a) = self.nodes[n].ep.poll_action() {
            match a {
                Action::Connect { link, addr } => {
                    self.tr(|| format!("n{n} CONNECT link {link} -> {addr}"));
                    let node = &mut self.nodes[n];
                    node.next_port = node.next_port.wrapping_add(1).max(40_000);
                    let local = SocketAddr::new(node.ip, node.next_port);
                    let at = self.now + self.rng.ms(self.net.connect_ms.0, self.net.connect_ms.1);
                    let epoch = self.nodes[n].epoch;
                    self.nodes[n].dialing.insert(link);
                    self.pending.push(PendingConnect {
                        node: n,
                        epoch,
                        link,
                        addr,
                        local,
                        at,
                    });
                }
                Action::Close { link, goodbye } => self.on_close(n, link, goodbye),
            }
        }
    }

    /// Node `n` closed the socket of `link`.
    fn on_close(&mut self, n: usize, link: usize, goodbye: Option<Bytes>) {
        self.tr(|| {
            format!(
                "n{n} CLOSE link {link} goodbye {:?}",
                goodbye.as_ref().map(|g| g.len())
            )
        });
        if self.nodes[n].dialing.remove(&link) {
            // Connect in progress or failed: the socket just goes away.
            self.pending.retain(|p| !(p.node == n && p.link == link));
            return;
        }
        let Some((c, side)) = self.nodes[n].links.remove(&link) else {
            panic!(
                "seed {}: node {n} closed link {link} the harness does not know",
                self.seed
            );
        };
        self.nodes[n].blocked.remove(&link);
        let now = self.now;
        let conn = self.conns[c].as_mut().expect("live conn");
        // Linux resets instead of FIN when unread bytes sit in the socket.
        let abort = goodbye.is_none() && conn.ends[side].ready(now);
        let e = &mut conn.ends[side];
        e.link = None;
        e.closed = true;
        e.clear();
        self.hang_up(c, side, goodbye, abort, now);
    }

    /// Side `side` of `c` is gone: the other side gets `goodbye`, then FIN
    /// (or a reset if `abort`).
    fn hang_up(
        &mut self,
        c: usize,
        side: usize,
        goodbye: Option<Bytes>,
        abort: bool,
        now: Instant,
    ) {
        let conn = self.conns[c].as_mut().expect("live conn");
        let lat = conn.latency;
        let cut = conn.cut;
        let other = &mut conn.ends[1 - side];
        if !cut && !other.closed {
            if let Some(b) = goodbye {
                if !b.is_empty() {
                    other.inbox_bytes += b.len();
                    other.inbox.push_back(Seg {
                        at: now + lat,
                        data: b,
                    });
                }
            }
            if abort {
                other.err_at.get_or_insert((now + lat, XXNET_E_CONN_RESET));
            } else {
                other.eof_at.get_or_insert(now + lat);
            }
        }
        if conn.ends.iter().all(|e| e.closed) {
            self.conns[c] = None;
            self.live.remove(&c);
        }
    }

    // ----- connecting -------------------------------------------------------------------

    fn listener(&self, addr: SocketAddr) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.alive && n.listen == Some(addr))
    }

    fn complete_connects(&mut self) -> bool {
        let mut progress = false;
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            if p.at > self.now || !self.runnable(p.node) || self.blackholed(p.node, p.addr) {
                i += 1;
                continue;
            }
            let p = self.pending.remove(i);
            progress = true;
            if self.nodes[p.node].epoch != p.epoch {
                continue;
            }
            let now = self.now;
            match self.listener(p.addr) {
                None => {
                    self.tr(|| format!("n{} link {} connect REFUSED", p.node, p.link));
                    self.nodes[p.node]
                        .ep
                        .link_failed(p.link, XXNET_E_CONNECT_REFUSED, now);
                    self.after_call(p.node);
                }
                Some(m) => {
                    let net = self.net.clone();
                    let conn = Conn {
                        ends: [
                            End::new(p.node, p.epoch, p.local),
                            End::new(m, self.nodes[m].epoch, p.addr),
                        ],
                        latency: self.rng.ms(net.latency_ms.0, net.latency_ms.1),
                        cap: self.rng.usize(net.buf_cap.0, net.buf_cap.1),
                        read: match self.rng.below(100) {
                            x if x < net.tiny_read_pct => ReadMode::Tiny,
                            x if x < net.tiny_read_pct + (100 - net.tiny_read_pct) / 2 => {
                                ReadMode::Mixed
                            }
                            _ => ReadMode::Bulk,
                        },
                        partial_writes: self.rng.chance(net.partial_write_pct),
                        cut: false,
                    };
                    let c = self.conns.len();
                    self.conns.push(Some(conn));
                    self.live.insert(c);
                    self.stats.conns += 1;
                    self.conns[c].as_mut().expect("new").ends[0].link = Some(p.link);
                    self.nodes[p.node].dialing.remove(&p.link);
                    self.nodes[p.node].links.insert(p.link, (c, 0));
                    if self.runnable(m) {
                        self.accept_end(c);
                    }
                    self.tr(|| {
                        let conn = self.conns[c].as_ref().expect("new");
                        format!(
                            "n{} link {} CONNECTED conn c{c} to n{m} (lat {:?} cap {} {:?} partial {})",
                            p.node, p.link, conn.latency, conn.cap, conn.read, conn.partial_writes
                        )
                    });
                    self.nodes[p.node].ep.connected(p.link, p.local, now);
                    self.after_call(p.node);
                }
            }
        }
        progress
    }

    fn accept_end(&mut self, c: usize) {
        let now = self.now;
        let conn = self.conns[c].as_mut().expect("live conn");
        let (remote, local, m) = (conn.ends[0].local, conn.ends[1].local, conn.ends[1].node);
        match self.nodes[m].ep.accept(remote, local, now) {
            Ok(l) => {
                conn.ends[1].link = Some(l);
                self.nodes[m].links.insert(l, (c, 1));
                self.tr(|| format!("n{m} ACCEPT c{c} as link {l}"));
            }
            Err(refusal) => {
                conn.ends[1].closed = true;
                self.tr(|| format!("n{m} REFUSES c{c}"));
                self.hang_up(c, 1, Some(refusal), false, now);
            }
        }
        self.after_call(m);
    }

    /// Connections waiting in node `m`'s accept backlog.
    fn accept_backlog(&mut self, m: usize) -> bool {
        let epoch = self.nodes[m].epoch;
        let waiting: Vec<usize> = self
            .live
            .iter()
            .copied()
            .filter(|&c| {
                let e = &self.conns[c].as_ref().expect("live").ends[1];
                e.node == m && e.epoch == epoch && e.link.is_none() && !e.closed
            })
            .collect();
        for &c in &waiting {
            if self.conns[c].is_some() {
                self.accept_end(c);
            }
        }
        !waiting.is_empty()
    }

    // ----- reading ------------------------------------------------------------------------

    fn read_link(&mut self, n: usize, link: usize) -> bool {
        let Some(&(c, side)) = self.nodes[n].links.get(&link) else {
            return false;
        };
        let mut progress = false;
        let budget = self.rng.usize(512, 64 * 1024);
        let mut total = 0;
        let now = self.now;
        loop {
            let conn = self.conns[c].as_mut().expect("live conn");
            if !conn.ends[side].ready(now) {
                break;
            }
            if !self.nodes[n].ep.wants_read(link) {
                break;
            }
            let max = match conn.read {
                ReadMode::Tiny => {
                    if self.rng.chance(50) {
                        1
                    } else {
                        self.rng.usize(1, 7)
                    }
                }
                ReadMode::Mixed => {
                    let bits = self.rng.range(1, 14);
                    self.rng.usize(1, 1 << bits)
                }
                ReadMode::Bulk => usize::MAX,
            };
            let data = conn.ends[side].take(max, now);
            let from = conn.ends[1 - side].node;
            self.nodes[n].last_rx.insert(from, now);
            let Some((buf, _need)) = self.nodes[n].ep.read_buf(link) else {
                break;
            };
            buf.extend_from_slice(&data);
            total += data.len();
            self.stats.bytes += data.len() as u64;
            self.nodes[n].ep.on_read(link, now);
            progress = true;
            self.after_call(n);
            if self.nodes[n].links.get(&link) != Some(&(c, side)) {
                return true;
            }
            if total >= budget {
                return true;
            }
        }
        let e = &mut self.conns[c].as_mut().expect("live conn").ends[side];
        if e.told || e.inbox_bytes > 0 {
            return progress;
        }
        if let Some((at, code)) = e.err_at.filter(|(at, _)| *at <= now) {
            let _ = at;
            e.told = true;
            self.tr(|| format!("n{n} link {link} (c{c}) ERROR {code}"));
            self.nodes[n].ep.link_failed(link, code, now);
            self.after_call(n);
            return true;
        }
        if e.eof_at.is_some_and(|at| at <= now) {
            e.told = true;
            self.tr(|| format!("n{n} link {link} (c{c}) EOF"));
            self.nodes[n].ep.on_eof(link, now);
            self.after_call(n);
            return true;
        }
        progress
    }

    // ----- writing ------------------------------------------------------------------------

    fn write_link(&mut self, n: usize, link: usize) -> bool {
        let Some(&(c, side)) = self.nodes[n].links.get(&link) else {
            // Still connecting (it is listed again once connected), or gone.
            self.nodes[n].blocked.remove(&link);
            return false;
        };
        let now = self.now;
        let mut progress = false;
        loop {
            let conn = self.conns[c].as_ref().expect("live conn");
            let other = &conn.ends[1 - side];
            let void = conn.cut || other.closed;
            let space = if void {
                usize::MAX
            } else {
                conn.cap.saturating_sub(other.inbox_bytes)
            };
            let partial = conn.partial_writes;
            let Some(wbuf) = self.nodes[n].ep.transmit(link, now) else {
                self.nodes[n].blocked.remove(&link);
                break;
            };
            let pending = wbuf.len();
            if pending == 0 {
                self.nodes[n].blocked.remove(&link);
                break;
            }
            if space == 0 {
                self.nodes[n].blocked.insert(link);
                break;
            }
            let mut want = pending.min(space);
            if partial && self.rng.chance(40) {
                want = self.rng.usize(1, want);
            }
            let mut out = BytesMut::with_capacity(want.min(1 << 20));
            {
                let mut slices = [IoSlice::new(&[]); 64];
                let k = wbuf.io_slices(&mut slices);
                for s in &slices[..k] {
                    let take = s.len().min(want - out.len());
                    out.extend_from_slice(&s[..take]);
                    if out.len() == want {
                        break;
                    }
                }
            }
            let wrote = out.len();
            self.nodes[n].ep.written(link, wrote, now);
            progress = true;
            let conn = self.conns[c].as_mut().expect("live conn");
            let lat = conn.latency;
            let void = conn.cut || conn.ends[1 - side].closed;
            if !void {
                let o = &mut conn.ends[1 - side];
                o.inbox_bytes += wrote;
                o.inbox.push_back(Seg {
                    at: now + lat,
                    data: out.freeze(),
                });
            }
            self.after_call(n);
            if self.nodes[n].links.get(&link) != Some(&(c, side)) {
                break;
            }
            if wrote < pending {
                // The socket took less than offered: wait for "writable".
                self.nodes[n].blocked.insert(link);
                break;
            }
        }
        progress
    }

    fn write_all(&mut self, n: usize) -> bool {
        let mut list = Vec::new();
        self.nodes[n].ep.take_flush(&mut list);
        list.extend(self.nodes[n].blocked.iter().copied());
        let mut progress = false;
        let mut seen = BTreeSet::new();
        for link in list {
            if seen.insert(link) {
                progress |= self.write_link(n, link);
            }
        }
        progress
    }

    // ----- the loop -------------------------------------------------------------------------

    /// Everything that can happen at the current instant, once. True if anything did.
    pub fn step(&mut self) -> bool {
        self.stats.steps += 1;
        let mut progress = self.complete_connects();
        for n in 0..self.nodes.len() {
            if !self.runnable(n) {
                continue;
            }
            progress |= self.accept_backlog(n);
            let links: Vec<usize> = self.nodes[n].links.keys().copied().collect();
            for link in links {
                progress |= self.read_link(n, link);
            }
            let timed = self.nodes[n]
                .ep
                .next_timeout()
                .is_some_and(|t| t <= self.now);
            if timed {
                self.nodes[n].ep.on_timeout(self.now);
                self.after_call(n);
            }
            progress |= self.write_all(n);
            if timed {
                let node = &mut self.nodes[n];
                if node.ep.next_timeout().is_some_and(|t| t <= self.now) {
                    // Still due after a whole turn: the reactor polls again
                    // 1 ms later (it rounds its timeout up by 1 ms). Once is
                    // a stale entry; turn after turn is a deadline that
                    // handling does not clear.
                    node.due_streak += 1;
                    if node.due_streak >= 2 {
                        node.hot_timer += 1;
                    }
                } else {
                    node.due_streak = 0;
                    progress = true;
                }
            }
        }
        progress
    }

    /// The earliest instant after now at which something can happen.
    fn next_wake(&self) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut min = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        for (n, node) in self.nodes.iter().enumerate() {
            if self.runnable(n) {
                if let Some(t) = node.ep.next_timeout() {
                    min(t);
                }
            }
        }
        for p in &self.pending {
            if self.runnable(p.node) && !self.blackholed(p.node, p.addr) {
                min(p.at);
            }
        }
        for &c in &self.live {
            let conn = self.conns[c].as_ref().expect("live");
            for e in &conn.ends {
                if e.link.is_none() || !self.runnable(e.node) || e.epoch != self.nodes[e.node].epoch
                {
                    continue;
                }
                if let Some(s) = e.inbox.front() {
                    min(s.at);
                }
                if !e.told {
                    if let Some(t) = e.eof_at {
                        min(t);
                    }
                    if let Some((t, _)) = e.err_at {
                        min(t);
                    }
                }
            }
        }
        at
    }

    /// Runs until virtual time `t` (inclusive of what happens at `t`).
    pub fn run_until(&mut self, t: Instant) {
        let mut spins = 0u32;
        loop {
            if self.step() {
                spins += 1;
                assert!(
                    spins < 2_000_000,
                    "seed {}: livelock at {:?}",
                    self.seed,
                    self.elapsed()
                );
                continue;
            }
            spins = 0;
            if self.now >= t {
                return;
            }
            let next = match self.next_wake() {
                Some(w) if w > self.now => w,
                // A deadline that stays due: the reactor polls again 1 ms
                // later (it rounds its poll timeout up by 1 ms).
                Some(_) => self.now + Duration::from_millis(1),
                None => t,
            };
            self.now = next.min(t);
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Runs until `done` holds (checked whenever the clock moves) or `limit`
    /// of virtual time passed; returns whether it held.
    pub fn run_until_pred(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            let t = (self.now + ms(5)).min(end);
            self.run_until(t);
        }
        done(self)
    }

    // ----- faults ---------------------------------------------------------------------------

    /// Connections with both sides attached and not cut, as (conn, node, node).
    pub fn connections(&self) -> Vec<(usize, usize, usize)> {
        self.live
            .iter()
            .filter_map(|&c| {
                let conn = self.conns[c].as_ref().expect("live");
                let ok = !conn.cut
                    && conn
                        .ends
                        .iter()
                        .all(|e| e.link.is_some() && !e.closed && !e.told);
                ok.then_some((c, conn.ends[0].node, conn.ends[1].node))
            })
            .collect()
    }

    /// Cuts connection `c`.
    pub fn cut(&mut self, c: usize, cut: Cut) {
        let now = self.now;
        let Some(conn) = self.conns[c].as_mut() else {
            return;
        };
        if conn.cut {
            return;
        }
        conn.cut = true;
        self.stats.cuts += 1;
        if self.trace {
            eprintln!("{:>12.3?} | CUT c{c} {cut:?}", self.now - self.base);
        }
        for (side, e) in conn.ends.iter_mut().enumerate() {
            e.drop_in_flight(now);
            if !cut.keep_arrived {
                e.clear();
            }
            if e.closed {
                continue;
            }
            match cut.notice[side] {
                Notice::Reset(d) => {
                    e.err_at.get_or_insert((now + d, XXNET_E_CONN_RESET));
                }
                Notice::Eof(d) => {
                    e.eof_at.get_or_insert(now + d);
                }
                Notice::Never => {}
            }
        }
    }

    /// Cuts a random live connection; returns whether there was one.
    pub fn cut_random(&mut self) -> bool {
        let conns = self.connections();
        if conns.is_empty() {
            return false;
        }
        let (c, _, _) = conns[self.rng.below(conns.len() as u64) as usize];
        let cut = Cut::random(&mut self.rng);
        self.cut(c, cut);
        true
    }

    /// A connect from `n` to `addr` goes nowhere (a partition): it hangs
    /// until the endpoint's connect timeout.
    fn blackholed(&self, n: usize, addr: SocketAddr) -> bool {
        self.listener(addr)
            .is_some_and(|m| self.partitions.contains(&(n.min(m), n.max(m))))
    }

    /// Nodes `a` and `b` can no longer reach each other: their connections
    /// are cut as `cut` says and connects between them hang.
    pub fn partition(&mut self, a: usize, b: usize, cut: Cut) {
        self.tr(|| format!("PARTITION n{a} n{b}"));
        self.partitions.insert((a.min(b), a.max(b)));
        for (c, x, y) in self.connections() {
            if (x, y) == (a, b) || (x, y) == (b, a) {
                self.cut(c, cut);
            }
        }
    }

    /// Ends the partition of `a` and `b`.
    pub fn heal(&mut self, a: usize, b: usize) {
        self.tr(|| format!("HEAL n{a} n{b}"));
        self.partitions.remove(&(a.min(b), a.max(b)));
    }

    /// Node `n` stops running (a stalled process): nothing is read, written
    /// or timed; its kernel still completes connects to it.
    pub fn freeze(&mut self, n: usize) {
        self.tr(|| format!("FREEZE n{n}"));
        self.nodes[n].frozen = true;
    }

    pub fn thaw(&mut self, n: usize) {
        self.tr(|| format!("THAW n{n}"));
        self.nodes[n].frozen = false;
    }

    /// The process of node `n` dies: its sockets end as `how` says, its
    /// pending connects vanish, connects to it are refused.
    pub fn kill(&mut self, n: usize, how: Kill) {
        self.tr(|| format!("KILL n{n} {how:?}"));
        let now = self.now;
        let epoch = self.nodes[n].epoch;
        let mine: Vec<(usize, usize)> = self
            .live
            .iter()
            .copied()
            .flat_map(|c| {
                let conn = self.conns[c].as_ref().expect("live");
                (0..2)
                    .filter(|&s| {
                        let e = &conn.ends[s];
                        e.node == n && e.epoch == epoch && !e.closed
                    })
                    .map(move |s| (c, s))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (c, side) in mine {
            let Some(conn) = self.conns[c].as_mut() else {
                continue;
            };
            if how == Kill::Silent {
                conn.cut = true;
            }
            let e = &mut conn.ends[side];
            let unread = e.ready(now);
            e.closed = true;
            e.link = None;
            e.clear();
            let abort = match how {
                Kill::Silent => false,
                Kill::Reset => true,
                Kill::Fin => unread,
            };
            self.hang_up(c, side, None, abort, now);
        }
        self.pending.retain(|p| p.node != n);
        let node = &mut self.nodes[n];
        node.links.clear();
        node.dialing.clear();
        node.blocked.clear();
        node.alive = false;
        node.conn_to.clear();
    }

    /// Kills node `n` and starts a new process (new instance id) on the same address.
    pub fn restart(&mut self, n: usize, how: Kill) {
        self.kill(n, how);
        self.revive(n);
    }

    /// Starts a new process (new instance id) for the killed node `n`, on its old address.
    pub fn revive(&mut self, n: usize) {
        assert!(!self.nodes[n].alive, "node {n} is alive");
        self.tr(|| format!("REVIVE n{n}"));
        let cfg = self.nodes[n].cfg.clone();
        let listen = self.nodes[n].listen;
        let ep = self.new_endpoint(&cfg, listen);
        let node = &mut self.nodes[n];
        let old = std::mem::replace(&mut node.ep, ep);
        node.retired = add_counters(node.retired, old.counters());
        node.epoch += 1;
        node.alive = true;
        node.frozen = false;
        node.charged = 0;
        node.released = 0;
    }

    // ----- inspection ---------------------------------------------------------------------------

    /// Messages and bytes all live endpoints hold.
    pub fn backlog(&self) -> (u64, u64) {
        self.nodes
            .iter()
            .filter(|n| n.alive)
            .fold((0, 0), |(m, b), n| {
                let (a, c) = n.ep.backlog();
                (m + a, b + c)
            })
    }

    /// Every message sent was delivered at least once, and nothing is held.
    pub fn all_delivered_and_idle(&self) -> bool {
        self.ledger.all().all(|(_, m)| !m.deliveries.is_empty()) && self.backlog() == (0, 0)
    }

    /// Bytes in the pipes (not yet read).
    pub fn bytes_in_pipes(&self) -> usize {
        self.live
            .iter()
            .map(|&c| {
                let conn = self.conns[c].as_ref().expect("live");
                conn.ends.iter().map(|e| e.inbox_bytes).sum::<usize>()
            })
            .sum()
    }

    /// Every backlog account was released exactly as much as was charged,
    /// given nothing is held any more.
    pub fn assert_accounts_settled(&self, ctx: &str) {
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.alive {
                continue;
            }
            let (_, held) = n.ep.backlog();
            assert_eq!(
                n.charged - n.released,
                held,
                "{ctx}: node {i}: charged {} released {} but {held} bytes held",
                n.charged,
                n.released
            );
        }
    }

    /// A short dump of a node's host events (for failure messages).
    pub fn dump(&self, n: usize) -> String {
        let mut s = String::new();
        for l in &self.nodes[n].log {
            if l.ev.kind == XXNET_EVENT_MESSAGE {
                continue;
            }
            s += &format!(
                "\n    {:>10.3?} e{} {} code={} ({}) conn={} id={} count={}",
                l.at,
                l.epoch,
                kind_name(l.ev.kind),
                l.ev.code,
                describe(l.ev.code),
                l.ev.conn,
                l.ev.id,
                l.ev.count
            );
        }
        s
    }
}

/// Figures accumulated over many runs, for the summary line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Figures {
    pub seeds: u64,
    pub msgs: u64,
    pub cuts: u64,
    pub conns: u64,
    pub resent: u64,
    pub duplicates: u64,
    pub reconnects: u64,
    pub protocol_errors: u64,
    pub hot_timer: u64,
    pub virtual_ms: u64,
}

impl Figures {
    pub fn add(&mut self, sim: &Sim) {
        self.seeds += 1;
        self.msgs += sim.ledger.sent;
        self.cuts += sim.stats.cuts;
        self.conns += sim.stats.conns;
        self.virtual_ms += sim.elapsed().as_millis() as u64;
        for n in &sim.nodes {
            let c = n.counters();
            self.resent += c.msgs_resent;
            self.duplicates += c.duplicates;
            self.reconnects += c.reconnects;
            self.protocol_errors += c.protocol_errors;
            self.hot_timer += n.hot_timer;
        }
    }

    pub fn print(&self, name: &str) {
        eprintln!(
            "[sim] {name}: seeds {} | messages {} | connections {} | cuts {} | reconnects {} | resent {} | duplicates dropped {} | protocol errors counted {} | timer wake-ups with nothing to do {} | virtual time {:.1} s",
            self.seeds,
            self.msgs,
            self.conns,
            self.cuts,
            self.reconnects,
            self.resent,
            self.duplicates,
            self.protocol_errors,
            self.hot_timer,
            self.virtual_ms as f64 / 1000.0
        );
    }
}

// ----- traffic ------------------------------------------------------------------------------

/// A load to drive through a simulation.
#[derive(Clone, Debug)]
pub struct Traffic {
    /// (src, dst) pairs messages go between.
    pub pairs: Vec<(usize, usize)>,
    /// Messages to send in all.
    pub msgs: usize,
    /// Virtual time the sending is spread over.
    pub period: Duration,
    /// Lanes used: 0..lanes.
    pub lanes: u8,
    /// Percentage of messages larger than the fragment size (multi-part).
    pub big_pct: u64,
    /// Percentage of huge messages (64 KiB to 320 KiB: beyond the write
    /// buffer's encoding window, so a cut can leave one partly encoded).
    pub huge_pct: u64,
    /// Random cuts, this many ms apart (None: no cuts).
    pub cut_every_ms: Option<(u64, u64)>,
    /// Percentage of need-ack messages.
    pub track_pct: u64,
    /// Deadline range of need-ack messages (None: the config's default).
    pub deadline_ms: Option<(u64, u64)>,
}

impl Traffic {
    pub fn new(pairs: Vec<(usize, usize)>, msgs: usize, period: Duration) -> Traffic {
        Traffic {
            pairs,
            msgs,
            period,
            lanes: 4,
            big_pct: 5,
            huge_pct: 0,
            cut_every_ms: None,
            track_pct: 0,
            deadline_ms: None,
        }
    }
}

/// Every ordered pair of distinct nodes among `0..n`.
pub fn all_pairs(n: usize) -> Vec<(usize, usize)> {
    (0..n)
        .flat_map(|a| (0..n).filter(move |&b| b != a).map(move |b| (a, b)))
        .collect()
}

impl Sim {
    /// A random message size: mostly small, sometimes multi-part.
    pub fn random_len(&mut self, big_pct: u64) -> usize {
        if self.rng.chance(big_pct) {
            self.rng.usize(1025, 5000)
        } else if self.rng.chance(10) {
            16
        } else {
            self.rng.usize(16, 300)
        }
    }

    /// Sends `t.msgs` messages spread over `t.period` (in bursts), cutting
    /// connections as `t` says. Returns how many were sent (pairs whose
    /// destination is not addressable yet are skipped).
    pub fn drive(&mut self, t: &Traffic) -> usize {
        let start = self.now;
        let end = start + t.period;
        let avg_us = (t.period.as_micros() as u64 / t.msgs.max(1) as u64).max(1);
        let mut next_cut = t.cut_every_ms.map(|(a, b)| self.now + self.rng.ms(a, b));
        let mut sent = 0;
        let mut attempts = 0;
        while sent < t.msgs && attempts < t.msgs * 20 {
            // Bursts: sometimes many at once (builds a backlog), else one.
            let burst = if self.rng.chance(10) {
                self.rng.usize(2, 20)
            } else {
                1
            };
            let gap = Duration::from_micros(self.rng.range(0, 2 * avg_us * burst as u64));
            let target = (self.now + gap).min(end.max(self.now));
            while let Some(c) = next_cut.filter(|&c| c <= target) {
                self.run_until(c);
                self.cut_random();
                let (a, b) = t.cut_every_ms.expect("cuts configured");
                next_cut = Some(c + self.rng.ms(a, b));
            }
            self.run_until(target);
            for _ in 0..burst {
                attempts += 1;
                let (src, dst) = t.pairs[self.rng.below(t.pairs.len() as u64) as usize];
                if !self.nodes[src].alive || !self.nodes[dst].alive {
                    continue;
                }
                let lane = self.rng.below(t.lanes as u64) as u8;
                let len = if self.rng.chance(t.huge_pct) {
                    self.rng.usize(64 << 10, 320 << 10)
                } else {
                    self.random_len(t.big_pct)
                };
                let track = self.rng.chance(t.track_pct).then(|| {
                    t.deadline_ms
                        .map(|(a, b)| Duration::from_millis(self.rng.range(a, b)))
                });
                if self.send(src, dst, lane, len, track).is_some() {
                    sent += 1;
                }
            }
        }
        sent
    }

    /// Heals the network (no more faults) and runs until every message was
    /// delivered and nothing is held, at most `limit`.
    pub fn settle(&mut self, limit: Duration) -> bool {
        self.run_until_pred(limit, |s| s.all_delivered_and_idle())
    }
}

// ----- raw peers --------------------------------------------------------------------------------

/// Node index of the connector end of a raw connection (no endpoint behind it).
const RAW: usize = usize::MAX;

impl Sim {
    /// Opens a raw TCP connection from `from` to node `dst`'s listen
    /// address: the test plays the connector by hand, writing and reading
    /// its bytes with `raw_send` / `raw_recv`. Returns the connection id.
    /// The raw end is never part of `connections()` (so never cut at random).
    pub fn raw_connect(&mut self, dst: usize, from: SocketAddr) -> usize {
        let addr = self.nodes[dst]
            .listen
            .expect("raw_connect: the node listens");
        let conn = Conn {
            ends: [
                End::new(RAW, 0, from),
                End::new(dst, self.nodes[dst].epoch, addr),
            ],
            latency: ms(1),
            cap: 1 << 20,
            read: ReadMode::Mixed,
            partial_writes: false,
            cut: false,
        };
        let c = self.conns.len();
        self.conns.push(Some(conn));
        self.live.insert(c);
        self.stats.conns += 1;
        self.tr(|| format!("RAW c{c} {from} -> n{dst}"));
        if self.runnable(dst) {
            self.accept_end(c);
        }
        c
    }

    /// The raw side of `c` writes `bytes` (lost if the node closed its side).
    pub fn raw_send(&mut self, c: usize, bytes: &[u8]) {
        let now = self.now;
        let Some(conn) = self.conns[c].as_mut() else {
            return;
        };
        if conn.ends[0].closed || conn.ends[1].closed {
            return;
        }
        let lat = conn.latency;
        let node_end = &mut conn.ends[1];
        node_end.inbox_bytes += bytes.len();
        node_end.inbox.push_back(Seg {
            at: now + lat,
            data: Bytes::copy_from_slice(bytes),
        });
    }

    /// Takes everything that has arrived for the raw side of `c`.
    pub fn raw_recv(&mut self, c: usize) -> BytesMut {
        let now = self.now;
        match self.conns[c].as_mut() {
            Some(conn) => conn.ends[0].take(usize::MAX, now),
            None => BytesMut::new(),
        }
    }

    /// The node closed its side of `c`: its FIN or reset has reached the raw side.
    pub fn raw_closed(&self, c: usize) -> bool {
        let now = self.now;
        self.conns[c].as_ref().is_none_or(|conn| {
            let e = &conn.ends[0];
            e.eof_at.is_some_and(|t| t <= now) || e.err_at.is_some_and(|(t, _)| t <= now)
        })
    }

    /// The raw side closes (FIN).
    pub fn raw_close(&mut self, c: usize) {
        let now = self.now;
        let Some(conn) = self.conns[c].as_mut() else {
            return;
        };
        let e = &mut conn.ends[0];
        if e.closed {
            return;
        }
        e.closed = true;
        e.clear();
        self.hang_up(c, 0, None, false, now);
    }
}

// ----- test helpers ---------------------------------------------------------------------------

/// Runs `f` for every seed, collecting failures instead of stopping at the first.
pub fn for_seeds(
    name: &str,
    seeds: std::ops::Range<u64>,
    mut f: impl FnMut(u64, &mut Figures) -> Result<(), String>,
) -> Figures {
    let mut fig = Figures::default();
    let mut failures = Vec::new();
    let only: Option<u64> = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok());
    for seed in seeds {
        if only.is_some_and(|o| o != seed) {
            continue;
        }
        if let Err(e) = f(seed, &mut fig) {
            failures.push(format!("seed {seed}: {e}"));
        }
    }
    fig.print(name);
    if !failures.is_empty() {
        let n = failures.len();
        failures.truncate(3);
        panic!(
            "{name}: {n} seed(s) failed; first ones:\n{}",
            failures.join("\n\n")
        );
    }
    fig
}

pub fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

pub fn violations(sim: &Sim) -> Result<(), String> {
    check(sim.ledger.violations.is_empty(), || {
        format!(
            "{} violation(s):\n  {}{}",
            sim.ledger.violations.len(),
            sim.ledger.violations.join("\n  "),
            dumps(sim)
        )
    })
}

pub fn dumps(sim: &Sim) -> String {
    (0..sim.nodes.len())
        .map(|n| format!("\n  node {n} events:{}", sim.dump(n)))
        .collect()
}

/// The strict outcome: everything delivered exactly once (order was checked
/// as it happened), nothing reported failed, no session ended, nothing held,
/// every byte charged to a backlog account released.
pub fn strict(sim: &Sim, settled: bool) -> Result<(), String> {
    violations(sim)?;
    let undelivered: Vec<String> = sim
        .ledger
        .all()
        .filter(|(_, m)| m.deliveries.len() != 1)
        .take(10)
        .map(|(k, m)| {
            format!(
                "{k:?} seq {} sent at {:?}: {} deliveries",
                m.seq,
                m.sent_at,
                m.deliveries.len()
            )
        })
        .collect();
    check(settled && undelivered.is_empty(), || {
        format!(
            "not settled after {:?} (backlog {:?}, {} bytes in pipes); undelivered: {undelivered:?}{}",
            sim.elapsed(),
            sim.backlog(),
            sim.bytes_in_pipes(),
            dumps(sim)
        )
    })?;
    for (i, n) in sim.nodes.iter().enumerate() {
        for kind in [
            XXNET_EVENT_SEND_FAILED,
            XXNET_EVENT_EXPIRED,
            XXNET_EVENT_DISCONNECTED,
        ] {
            check(n.count(kind) == 0, || {
                format!("node {i} reported {}:{}", kind_name(kind), dumps(sim))
            })?;
        }
        let (_, held) = n.ep.backlog();
        check(n.charged - n.released == held, || {
            format!(
                "node {i}: charged {} released {} held {held}",
                n.charged, n.released
            )
        })?;
    }
    Ok(())
}
