//! The reactor thread: the only code that touches mio and sockets.
//!
//! It moves bytes between sockets and the sans-IO [`Endpoint`], which makes
//! every protocol decision. Each turn: wait for readiness (or the endpoint's
//! earliest deadline), accept/connect/read/write until `WouldBlock`, drain
//! the whole command queue, run due deadlines, carry out the endpoint's
//! socket actions, write every link with data, and hand the turn's events to
//! the host in one batch.
//!
//! A context may run several reactors (`io_threads`, seed 003): each owns
//! the sessions with `conn % N == index` and their sockets for their whole
//! life, so reads and writes need no lock. Reactor 0 also owns the
//! listeners: it reads an accepted connection until its HELLO names the
//! node, then hands the socket (and the bytes read) to the reactor that owns
//! that node ([`crate::bridge::Routes`]).

mod sock;

use crate::bridge::{Account, Command, Dest, Event, ReactorLink};
use crate::codes::*;
use crate::config::Config;
use crate::proto::endpoint::{Action, Endpoint};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use sock::{ReadOutcome, Sock};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Token of the waker.
pub const WAKER: Token = Token(0);
const LISTENER_BASE: usize = 1;
const MAX_LISTENERS: usize = 1 << 16;
const CONN_BASE: usize = LISTENER_BASE + MAX_LISTENERS;
/// Tokens of accepted sockets whose HELLO reactor 0 is waiting for (several reactors).
const PENDING_BASE: usize = 1 << 39;
/// Tokens of sockets being closed gracefully (their link id may be reused).
const CLOSING_BASE: usize = 1 << 40;
/// Bytes reactor 0 reads from an accepted connection before handing it over
/// unnamed (a HELLO is far smaller; the owning endpoint reports the error).
const PEEK_LIMIT: usize = 4096;
/// Longest a graceful close may take before the socket is dropped.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Bytes read from one connection per turn before others get a go.
const READ_BUDGET: usize = 1 << 20;
/// Bytes written to one connection before the reactor turns to commands and
/// other sockets: a small call made during a bulk transfer is taken in (and
/// can overtake the bulk lane) within one budget.
const WRITE_BUDGET: usize = 256 << 10;
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
pub fn run(poll: Poll, link: ReactorLink, cfg: Config, instance: u64) {
    let shared = link.shared.clone();
    let events = link.events.clone();
    let inbox = link.commands.clone();
    let outcome = catch_unwind(AssertUnwindSafe(move || {
        Reactor::new(poll, link, cfg, instance).run()
    }));
    // Whatever is still queued is dropped; later commands are refused.
    inbox.close();
    if let Err(payload) = outcome {
        let msg = crate::codes::panic_text(&*payload);
        log::error!(target: "xxnet::reactor", "reactor thread panicked: {msg}; the context is unusable");
        shared.common.failed.store(true, Ordering::SeqCst);
        let _ = events.send(vec![Event {
            kind: XXNET_EVENT_ERROR,
            code: XXNET_E_INTERNAL,
            ..Event::default()
        }]);
    }
}

/// A random 64-bit value (the context's instance id, endpoint seeds).
pub fn random_u64() -> u64 {
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

/// 32 bytes from the operating system's CSPRNG (getrandom(2), else
/// /dev/urandom), keying the endpoint's authentication challenges. If both
/// fail (no such kernel interface), a keyed-hash mix of time and process id
/// is the last resort, with a warning.
fn os_random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut got = 0;
        while got < key.len() {
            // SAFETY: the pointer and length describe the unfilled tail of `key`.
            let n = unsafe { libc::getrandom(key[got..].as_mut_ptr().cast(), key.len() - got, 0) };
            if n > 0 {
                got += n as usize;
            } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break;
            }
        }
        if got == key.len() {
            return key;
        }
    }
    use std::io::Read;
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .is_ok()
    {
        return key;
    }
    log::warn!(target: "xxnet::reactor", "no OS random source: authentication challenges are weaker");
    for (i, chunk) in key.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(random_u64() ^ i as u64).to_le_bytes());
    }
    key
}

struct Reactor {
    poll: Poll,
    link: ReactorLink,
    cfg: Config,
    ep: Endpoint,
    listeners: Vec<TcpListener>,
    /// Sockets by endpoint link id.
    socks: Vec<Option<Sock>>,
    accounts: HashMap<u32, (Arc<Account>, Dest)>,
    conn_accounts: crate::proto::idmap::IdMap<u64, Vec<u32>>,
    events: Vec<Event>,
    flush: Vec<usize>,
    releases: Vec<(u32, u64)>,
    read_again: Vec<usize>,
    /// Links that used their write budget and have more to write.
    write_again: Vec<usize>,
    paused: Vec<usize>,
    /// Payload bytes of MESSAGE events collected this turn.
    events_bytes: usize,
    /// Sockets finishing a graceful close: goodbye bytes left, and a deadline.
    closing: slab::Slab<(Sock, bytes::Bytes, Instant)>,
    /// The files thread, once started: file requests and the results of its calls go there.
    files: Option<crossbeam_channel::Sender<crate::files::FilesMsg>>,
    /// Reactors of the context.
    reactors: usize,
    /// Reactor 0 with several reactors: accepted sockets waiting for their HELLO.
    pending: slab::Slab<Pending>,
    gone_instances: Vec<u64>,
    learned: Vec<std::net::SocketAddr>,
    /// Connections adopted since the last publish (see `Common::handed_over`).
    adopted: usize,
    /// Emptied link lists kept for reuse (no allocation per turn).
    spare: Spare,
    /// Commands taken from the inbox and not yet carried out (past the budget).
    cmds: std::collections::VecDeque<Command>,
}

/// Link lists a turn iterates while new entries may be added to the live one:
/// the iterated vector comes back here, emptied, for the next swap.
#[derive(Default)]
struct Spare(Vec<Vec<usize>>);

impl Spare {
    fn take(&mut self) -> Vec<usize> {
        self.0.pop().unwrap_or_default()
    }

    fn give(&mut self, v: &mut Vec<usize>) {
        v.clear();
        if self.0.len() < 4 {
            self.0.push(std::mem::take(v));
        }
    }
}

/// An accepted socket reactor 0 reads until its HELLO names the node.
struct Pending {
    stream: TcpStream,
    read: bytes::BytesMut,
    remote: std::net::SocketAddr,
    local: std::net::SocketAddr,
    deadline: Instant,
}

impl Reactor {
    fn new(poll: Poll, link: ReactorLink, cfg: Config, instance: u64) -> Reactor {
        let mut ep = Endpoint::new(cfg.clone(), instance, random_u64());
        // Authentication challenges must be unguessable: key them from the OS.
        ep.seed_challenges(os_random_key());
        let reactors = link.router.count();
        ep.set_conn_ids((reactors + link.index) as u64, reactors as u64);
        Reactor {
            poll,
            link,
            cfg,
            ep,
            listeners: Vec::new(),
            socks: Vec::new(),
            accounts: HashMap::new(),
            conn_accounts: Default::default(),
            events: Vec::new(),
            flush: Vec::new(),
            releases: Vec::new(),
            read_again: Vec::new(),
            write_again: Vec::new(),
            paused: Vec::new(),
            events_bytes: 0,
            closing: slab::Slab::new(),
            files: None,
            reactors,
            pending: slab::Slab::new(),
            gone_instances: Vec::new(),
            learned: Vec::new(),
            cmds: std::collections::VecDeque::new(),
            spare: Spare::default(),
            adopted: 0,
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
            let now = Instant::now();
            for ev in events.iter() {
                let t = ev.token().0;
                if t == WAKER.0 {
                    continue;
                } else if t >= CLOSING_BASE {
                    self.progress_close(t - CLOSING_BASE);
                } else if t >= PENDING_BASE {
                    self.progress_pending(t - PENDING_BASE, now);
                } else if t < CONN_BASE {
                    self.accept(t - LISTENER_BASE, now);
                } else {
                    let link = t - CONN_BASE;
                    if ev.is_writable() {
                        self.on_writable(link, now);
                    }
                    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                        self.read(link, now);
                    }
                }
            }
            if !self.drain_commands(now) {
                self.shutdown();
                return;
            }
            self.resume_reads(now);
            let mut again = std::mem::replace(&mut self.read_again, self.spare.take());
            for &link in &again {
                self.read(link, now);
            }
            self.spare.give(&mut again);
            self.ep.on_timeout(Instant::now());
            self.do_actions(now);
            let mut again = std::mem::replace(&mut self.write_again, self.spare.take());
            for &link in &again {
                self.write(link, now);
            }
            self.spare.give(&mut again);
            self.write_all(now);
            self.publish();
            self.expire_closing(Instant::now());
            self.expire_pending(Instant::now());
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.read_again.is_empty() || !self.write_again.is_empty() {
            return Some(Duration::ZERO);
        }
        let closing = self
            .closing
            .iter()
            .map(|(_, (_, _, at))| *at)
            .chain(self.pending.iter().map(|(_, p)| p.deadline))
            .min();
        let at = match (self.ep.next_timeout(), closing) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        at.map(|at| {
            // Round up so we never wake a hair before the deadline.
            at.saturating_duration_since(Instant::now()) + Duration::from_millis(1)
        })
    }

    fn sock(&mut self, link: usize) -> Option<&mut Sock> {
        self.socks.get_mut(link).and_then(|s| s.as_mut())
    }

    // ----- socket actions ----------------------------------------------------

    fn do_actions(&mut self, now: Instant) {
        while let Some(action) = self.ep.poll_action() {
            match action {
                Action::Connect { link, addr } => match TcpStream::connect(addr) {
                    Ok(stream) => self.install(link, stream, true),
                    Err(e) => {
                        log::debug!(target: "xxnet::reactor", "connect to {addr} failed at once: {e}");
                        self.ep.link_failed(link, from_io(&e), now);
                    }
                },
                Action::Close { link, goodbye } => {
                    if let Some(mut s) = self.socks.get_mut(link).and_then(|s| s.take()) {
                        let _ = self.poll.registry().deregister(&mut s.stream);
                        if let Some(bytes) = goodbye {
                            self.start_close(s, bytes, now);
                        }
                    }
                }
            }
        }
    }

    /// Graceful close: write the goodbye, half-close, and wait (at most
    /// CLOSE_LINGER) for the peer's FIN, reading and discarding meanwhile, so
    /// the close never turns into a reset that could destroy the goodbye.
    fn start_close(&mut self, mut s: Sock, goodbye: bytes::Bytes, now: Instant) {
        let rest = s.write_some_of(goodbye);
        if rest.is_empty() {
            let _ = s.stream.shutdown(std::net::Shutdown::Write);
        }
        let entry = self.closing.vacant_entry();
        let token = Token(CLOSING_BASE + entry.key());
        if self
            .poll
            .registry()
            .register(
                &mut s.stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_ok()
        {
            entry.insert((s, rest, now + CLOSE_LINGER));
        }
    }

    fn progress_close(&mut self, key: usize) {
        let Some((s, rest, _)) = self.closing.get_mut(key) else {
            return;
        };
        if !rest.is_empty() {
            *rest = s.write_some_of(std::mem::take(rest));
            if rest.is_empty() {
                let _ = s.stream.shutdown(std::net::Shutdown::Write);
            }
        }
        if s.discard_input() {
            let (mut s, _, _) = self.closing.remove(key);
            let _ = self.poll.registry().deregister(&mut s.stream);
        }
    }

    fn expire_closing(&mut self, now: Instant) {
        let due: Vec<usize> = self
            .closing
            .iter()
            .filter(|(_, (_, _, at))| *at <= now)
            .map(|(k, _)| k)
            .collect();
        for key in due {
            let (mut s, _, _) = self.closing.remove(key);
            let _ = self.poll.registry().deregister(&mut s.stream);
        }
    }

    fn install(&mut self, link: usize, mut stream: TcpStream, connecting: bool) {
        sock::tune(&stream, self.cfg.socket_recv_buffer);
        self.poll
            .registry()
            .register(
                &mut stream,
                Token(CONN_BASE + link),
                Interest::READABLE | Interest::WRITABLE,
            )
            .expect("register connection");
        if self.socks.len() <= link {
            self.socks.resize_with(link + 1, || None);
        }
        debug_assert!(
            self.socks[link].is_none(),
            "link id {link} reused before its Close was carried out"
        );
        self.socks[link] = Some(Sock::new(stream, connecting));
    }

    fn accept(&mut self, idx: usize, now: Instant) {
        loop {
            let Some(listener) = self.listeners.get(idx) else {
                return;
            };
            match listener.accept() {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    let local = stream.local_addr().unwrap_or(remote);
                    if self.reactors > 1 {
                        self.hold_accepted(stream, remote, local, now);
                        continue;
                    }
                    // A Close still pending would otherwise hit the socket
                    // installed under a reused link id.
                    self.do_actions(now);
                    match self.ep.accept(remote, local, now) {
                        Ok(link) => self.install(link, stream, false),
                        Err(refusal) => {
                            let mut s = Sock::new(stream, false);
                            s.write_last(&refusal);
                        }
                    }
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

    // ----- handing accepted sockets over (several reactors) -------------------

    /// Reactor 0 keeps an accepted socket until its HELLO names the node.
    fn hold_accepted(
        &mut self,
        mut stream: TcpStream,
        remote: std::net::SocketAddr,
        local: std::net::SocketAddr,
        now: Instant,
    ) {
        // max_connections counts every reactor's published links plus the
        // accepted connections not yet published anywhere. An owner publishes
        // its count before it takes its adopted ones off `handed_over`, and
        // this reads `handed_over` first (all SeqCst): a connection may be
        // counted twice for a moment, never missed.
        let common = &self.link.router.common;
        let handed = common.handed_over.load(Ordering::SeqCst);
        let open: u64 = self
            .link
            .router
            .all()
            .map(|s| s.stats.open_connections.load(Ordering::SeqCst))
            .sum();
        self.ep.count_accepted();
        if open as usize + handed >= self.cfg.max_connections {
            let refusal = self.ep.refuse_busy(remote, local);
            let mut s = Sock::new(stream, false);
            s.write_last(&refusal);
            return;
        }
        let entry = self.pending.vacant_entry();
        let token = Token(PENDING_BASE + entry.key());
        if self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
            .is_err()
        {
            return;
        }
        common.handed_over.fetch_add(1, Ordering::SeqCst);
        entry.insert(Pending {
            stream,
            read: bytes::BytesMut::new(),
            remote,
            local,
            deadline: now + Duration::from_millis(self.cfg.handshake_timeout_ms),
        });
    }

    /// Reads what a held socket sent; hands it over once its HELLO is in (or
    /// it sent something else, or closed: the owning endpoint reports that).
    fn progress_pending(&mut self, key: usize, now: Instant) {
        use crate::proto::handshake::{peek_hello, HelloPeek};
        use std::io::Read;
        let Some(p) = self.pending.get_mut(key) else {
            return;
        };
        let mut chunk = [0u8; 1024];
        let mut eof = false;
        loop {
            match p.stream.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    p.read.extend_from_slice(&chunk[..n]);
                    if p.read.len() >= PEEK_LIMIT {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    let mut p = self.pending.remove(key);
                    let _ = self.poll.registry().deregister(&mut p.stream);
                    self.link
                        .router
                        .common
                        .handed_over
                        .fetch_sub(1, Ordering::SeqCst);
                    return;
                }
            }
        }
        let n = self.reactors;
        let owner = match peek_hello(&p.read) {
            HelloPeek::More if !eof && p.read.len() < PEEK_LIMIT => return,
            HelloPeek::Found { instance, listen } => {
                // A context dialling its own listen address is served like a client.
                let listen = listen.filter(|_| instance != self.ep.instance());
                self.link
                    .router
                    .common
                    .routes()
                    .for_hello(instance, listen, n)
            }
            _ => self.link.router.common.routes().pick(n),
        };
        let mut p = self.pending.remove(key);
        let _ = self.poll.registry().deregister(&mut p.stream);
        if owner == self.link.index {
            self.adopt(p.stream, p.read, p.remote, p.local, now);
        } else {
            let _ = self.link.router.send_to(
                owner,
                Command::Adopt {
                    stream: p.stream,
                    read: p.read,
                    remote: p.remote,
                    local: p.local,
                },
            );
        }
    }

    /// Held sockets that sent no HELLO within the handshake timeout are closed.
    fn expire_pending(&mut self, now: Instant) {
        if self.pending.is_empty() {
            return;
        }
        let due: Vec<usize> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(k, _)| k)
            .collect();
        for key in due {
            let mut p = self.pending.remove(key);
            log::debug!(target: "xxnet::reactor", "{}: no HELLO within the handshake timeout", p.remote);
            let _ = self.poll.registry().deregister(&mut p.stream);
            self.link
                .router
                .common
                .handed_over
                .fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Takes over an accepted connection (from reactor 0): the endpoint
    /// accepts it and processes the bytes already read.
    fn adopt(
        &mut self,
        stream: TcpStream,
        read: bytes::BytesMut,
        remote: std::net::SocketAddr,
        local: std::net::SocketAddr,
        now: Instant,
    ) {
        // Counted in `handed_over` until this turn's counts are published.
        self.adopted += 1;
        self.do_actions(now);
        match self.ep.take_accepted(remote, local, now) {
            Ok(link) => {
                self.install(link, stream, false);
                if let Some((buf, _)) = self.ep.read_buf(link) {
                    buf.extend_from_slice(&read);
                }
                self.ep.on_read(link, now);
                self.do_actions(now);
                self.read(link, now);
            }
            Err(refusal) => {
                let mut s = Sock::new(stream, false);
                s.write_last(&refusal);
            }
        }
    }

    fn on_writable(&mut self, link: usize, now: Instant) {
        let Some(s) = self.sock(link) else { return };
        if !s.connecting {
            self.write(link, now);
            return;
        }
        // Finish a non-blocking connect: take_error, then peer_addr.
        match s.stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => {
                self.ep.link_failed(link, from_io(&e), now);
                return self.do_actions(now);
            }
        }
        match s.stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => return,
            Err(e) => {
                self.ep.link_failed(link, from_io(&e), now);
                return self.do_actions(now);
            }
        }
        s.connecting = false;
        let _ = s.stream.set_nodelay(true);
        let local = s.stream.local_addr();
        match local {
            Ok(local) => self.ep.connected(link, local, now),
            Err(e) => self.ep.link_failed(link, from_io(&e), now),
        }
        self.do_actions(now);
        self.write(link, now);
    }

    // ----- reading -----------------------------------------------------------

    /// Received bytes the host holds, plus this turn's not yet published, exceed `limit`.
    fn recv_over(&self, limit: usize) -> bool {
        self.link.shared.common.recv_queued.load(Ordering::SeqCst)
            + self.events_bytes
            + self.ep.event_bytes()
            > limit
    }

    fn read(&mut self, link: usize, now: Instant) {
        let paused_or_connecting = match self.sock(link) {
            None => return,
            Some(s) => s.read_paused || s.connecting,
        };
        if paused_or_connecting || !self.ep.wants_read(link) {
            return;
        }
        if self.recv_over(self.cfg.recv_queue_limit) {
            if let Some(s) = self.sock(link) {
                s.read_paused = true;
            }
            self.ep.set_read_paused(link, true, now);
            self.paused.push(link);
            self.link
                .shared
                .reading_paused
                .store(true, Ordering::SeqCst);
            return;
        }
        let mut total = 0;
        // The endpoint may close the link while handling what was read: the
        // loop then ends, and its Close is carried out below before anything
        // can reuse the link id.
        while let (Some(s), Some((buf, need))) = (
            self.socks.get_mut(link).and_then(|s| s.as_mut()),
            self.ep.read_buf(link),
        ) {
            match s.read_into(buf, need, READ_BUDGET - total) {
                Ok(ReadOutcome::Data(n)) => {
                    total += n;
                    // Events stay in the endpoint until `publish` (one move per turn);
                    // `recv_over` counts their bytes through `ep.event_bytes()`.
                    self.ep.on_read(link, now);
                    if total >= READ_BUDGET {
                        self.read_again.push(link);
                        break;
                    }
                }
                Ok(ReadOutcome::WouldBlock) => break,
                Ok(ReadOutcome::Eof) => {
                    self.ep.on_eof(link, now);
                    break;
                }
                Err(e) => {
                    self.ep.link_failed(link, from_io(&e), now);
                    break;
                }
            }
        }
        self.do_actions(now);
    }

    fn resume_reads(&mut self, now: Instant) {
        if self.paused.is_empty() {
            return;
        }
        self.link
            .shared
            .reading_paused
            .store(true, Ordering::SeqCst);
        if self.recv_over(self.cfg.recv_queue_limit / 2) {
            return;
        }
        self.link
            .shared
            .reading_paused
            .store(false, Ordering::SeqCst);
        for link in std::mem::take(&mut self.paused) {
            if let Some(s) = self.sock(link) {
                s.read_paused = false;
                self.ep.set_read_paused(link, false, now);
                self.read(link, now);
            }
        }
    }

    // ----- writing -----------------------------------------------------------

    fn write_all(&mut self, now: Instant) {
        self.ep.take_flush(&mut self.flush);
        let mut flush = std::mem::replace(&mut self.flush, self.spare.take());
        for &link in &flush {
            self.write(link, now);
        }
        self.spare.give(&mut flush);
        self.do_actions(now);
    }

    fn write(&mut self, link: usize, now: Instant) {
        let mut total = 0;
        loop {
            if total >= WRITE_BUDGET {
                if !self.write_again.contains(&link) {
                    self.write_again.push(link);
                }
                return;
            }
            let Some(s) = self.socks.get_mut(link).and_then(|s| s.as_mut()) else {
                return;
            };
            if s.connecting {
                return;
            }
            let Some(wbuf) = self.ep.transmit(link, now) else {
                // `written` closed it (a refusal fully flushed).
                return self.do_actions(now);
            };
            if wbuf.is_empty() {
                return;
            }
            match s.write_from(wbuf) {
                Ok(Some(n)) => {
                    total += n;
                    self.ep.written(link, n, now);
                }
                Ok(None) => return,
                Err(e) => {
                    self.ep.link_failed(link, from_io(&e), now);
                    self.do_actions(now);
                    return;
                }
            }
        }
    }

    // ----- host commands -----------------------------------------------------

    /// Drains the command queue. Returns false on shutdown.
    fn drain_commands(&mut self, now: Instant) -> bool {
        self.link.shared.wake_pending.store(false, Ordering::SeqCst);
        self.link.commands.take_into(&mut self.cmds);
        for _ in 0..COMMAND_BUDGET {
            let Some(cmd) = self.cmds.pop_front() else {
                return true;
            };
            match cmd {
                Command::Send(m) => self.ep.send(m, now),
                Command::NewAccount { id, account, dest } => {
                    if let Dest::Conn(c) = dest {
                        self.conn_accounts.entry(c).or_default().push(id);
                    }
                    self.accounts.insert(id, (account, dest));
                }
                Command::Listen { mut listener } => {
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
                    self.listeners.push(listener);
                    self.ep.add_listener(addr);
                }
                Command::Listening { addr } => self.ep.add_listener(addr),
                Command::Adopt {
                    stream,
                    read,
                    remote,
                    local,
                } => self.adopt(stream, read, remote, local, now),
                Command::Close { conn } => self.ep.close_conn(conn, now),
                Command::Service { name, serve } => self.ep.set_service(&name, serve),
                Command::EndPeer { addr, code } => self.ep.end_peer(addr, code),
                Command::Files { tx } => self.files = Some(tx),
                Command::Shutdown => return false,
                Command::InjectPanic => panic!("injected reactor panic (test hook)"),
            }
        }
        // More commands wait: come back without sleeping.
        self.link.shared.wake();
        true
    }

    /// The context is going away: goodbyes are written best effort at once
    /// (xxnet_free must return promptly), then every socket closes.
    fn shutdown(&mut self) {
        self.ep.shutdown();
        while let Some(action) = self.ep.poll_action() {
            if let Action::Close { link, goodbye } = action {
                if let Some(mut s) = self.socks.get_mut(link).and_then(|s| s.take()) {
                    if let Some(bytes) = goodbye {
                        s.write_last(&bytes);
                    }
                }
            }
        }
    }

    // ----- publishing ----------------------------------------------------------

    fn collect_events(&mut self) {
        let start = self.events.len();
        self.ep.take_events(&mut self.events);
        if let Some(tx) = &self.files {
            use crate::files::{copied_to_files, routed_to_files};
            let fresh = &self.events[start..];
            if fresh
                .iter()
                .any(|e| routed_to_files(e) || copied_to_files(e))
            {
                let mut routed = Vec::new();
                let mut keep = start;
                for i in start..self.events.len() {
                    if routed_to_files(&self.events[i]) {
                        routed.push(std::mem::take(&mut self.events[i]));
                        continue;
                    }
                    if copied_to_files(&self.events[i]) {
                        let e = &self.events[i];
                        routed.push(Event {
                            kind: e.kind,
                            peer: e.peer,
                            ..Event::default()
                        });
                    }
                    self.events.swap(keep, i);
                    keep += 1;
                }
                self.events.truncate(keep);
                let _ = tx.send(crate::files::FilesMsg::Net(routed));
            }
        }
        for ev in &self.events[start..] {
            self.events_bytes += ev.queued_bytes();
        }
    }

    /// Hands this turn's events to the host and publishes counters, backlogs and sessions.
    fn publish(&mut self) {
        self.collect_events();
        self.ep.take_releases(&mut self.releases);
        for (acct, bytes) in self.releases.drain(..) {
            let Some((a, dest)) = self.accounts.get(&acct) else {
                continue;
            };
            let before = a.bytes.fetch_sub(bytes, Ordering::SeqCst);
            let after = before.saturating_sub(bytes);
            if after <= self.cfg.send_low_water as u64
                && a.blocked.load(Ordering::SeqCst)
                && a.blocked.swap(false, Ordering::SeqCst)
            {
                let (conn, peer) = match *dest {
                    Dest::Conn(c) => (c, None),
                    Dest::Addr(addr) => (0, Some(addr)),
                };
                self.events.push(Event {
                    kind: XXNET_EVENT_WRITABLE,
                    conn,
                    peer,
                    total: after,
                    ..Event::default()
                });
            }
        }
        let shared = &self.link.shared;
        {
            let accounts = &mut self.accounts;
            let conn_accounts = &mut self.conn_accounts;
            let mut table = None;
            self.ep.take_snapshots(|conn, snap| {
                let t = table.get_or_insert_with(|| {
                    shared
                        .common
                        .sessions
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                });
                match snap {
                    Some(s) => {
                        t.insert(conn, s);
                    }
                    None => {
                        t.remove(&conn);
                        for id in conn_accounts.remove(&conn).unwrap_or_default() {
                            accounts.remove(&id);
                        }
                    }
                }
            });
        }
        self.ep.take_gone_instances(&mut self.gone_instances);
        self.ep.take_learned(&mut self.learned);
        if self.reactors > 1 && !(self.gone_instances.is_empty() && self.learned.is_empty()) {
            let mut routes = shared.common.routes();
            for addr in self.learned.drain(..) {
                routes.learned(addr, self.link.index);
            }
            for i in self.gone_instances.drain(..) {
                routes.instance_gone(i, self.link.index);
            }
        } else {
            self.gone_instances.clear();
            self.learned.clear();
        }
        let c = self.ep.counters();
        let s = &shared.stats;
        let set = |a: &std::sync::atomic::AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        s.open_connections
            .store(self.ep.link_count() as u64, Ordering::SeqCst);
        if self.adopted > 0 {
            shared
                .common
                .handed_over
                .fetch_sub(std::mem::take(&mut self.adopted), Ordering::SeqCst);
        }
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
        set(&s.msgs_acked, c.msgs_acked);
        set(&s.msgs_resent, c.msgs_resent);
        set(&s.duplicates, c.duplicates);
        set(&s.reconnects, c.reconnects);
        let (held_msgs, held_bytes) = self.ep.backlog();
        set(&s.queued_msgs, held_msgs);
        set(&s.queued_bytes, held_bytes);
        // Events go last: the counters are stored before the batch is sent
        // (a release), so a host that polls an event and then reads the
        // stats sees counters at least as new as the event.
        if !self.events.is_empty() {
            shared
                .common
                .recv_queued
                .fetch_add(self.events_bytes, Ordering::SeqCst);
            self.events_bytes = 0;
            // The next turn's buffer: one the host is done with, else one of
            // this turn's size (no regrowth by doubling).
            let next = shared.common.batch_vec(self.events.len());
            let batch = std::mem::replace(&mut self.events, next);
            // The host may be gone during shutdown; nothing to do then.
            let _ = self.link.events.send(batch);
        }
    }
}
