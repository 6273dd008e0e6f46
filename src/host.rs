//! The safe context the C ABI wraps: everything that runs on the host's thread.
//!
//! The host thread never waits on the network: `listen` binds synchronously
//! (a local operation), sends copy the payload and push a command, and `poll`
//! drains event batches the reactor produced.

use crate::bridge::{self, Account, Command, HostLink, Outgoing};
pub use crate::bridge::{Dest, Event, PeerSnapshot};
use crate::codes::*;
use crate::config::Config;
use crate::reactor;
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::os::raw::c_int;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod files;
mod rpc;
pub use files::FileStats;
pub use rpc::CallOpts;

/// Per-message options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendOpts {
    /// Lane 0..XXNET_LANES-1.
    pub lane: u8,
    /// Route id.
    pub msg_id: u32,
    /// Need-ack deadline in ms (0: the config default).
    pub ack_timeout_ms: u32,
    /// More sends follow at once: do not wake the reactor for this one
    /// (`XXNET_SEND_MORE`; the next send without it, a flush or a poll does).
    pub more: bool,
}

/// A snapshot of the counters (meanings as in `xxnet_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Stats {
    pub open_connections: u64,
    pub msgs_in: u64,
    pub msgs_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub queued_bytes: u64,
    pub queued_msgs: u64,
    pub protocol_errors: u64,
    pub refused_connections: u64,
    pub connect_failures: u64,
    pub send_failed_msgs: u64,
    pub accepted_connections: u64,
    pub msgs_acked: u64,
    pub msgs_resent: u64,
    pub duplicates_dropped: u64,
    pub reconnects: u64,
}

impl Stats {
    /// Adds `o` field by field.
    fn add(&mut self, o: &Stats) {
        self.open_connections += o.open_connections;
        self.msgs_in += o.msgs_in;
        self.msgs_out += o.msgs_out;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.queued_bytes += o.queued_bytes;
        self.queued_msgs += o.queued_msgs;
        self.protocol_errors += o.protocol_errors;
        self.refused_connections += o.refused_connections;
        self.connect_failures += o.connect_failures;
        self.send_failed_msgs += o.send_failed_msgs;
        self.accepted_connections += o.accepted_connections;
        self.msgs_acked += o.msgs_acked;
        self.msgs_resent += o.msgs_resent;
        self.duplicates_dropped += o.duplicates_dropped;
        self.reconnects += o.reconnects;
    }
}

/// Parses numeric IPv4 or IPv6 text; names are refused (nothing resolves on the host's thread).
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    text.parse().ok()
}

/// Small payloads are copied into a shared arena so a send costs no allocation.
const ARENA_CHUNK: usize = 64 * 1024;
const ARENA_MAX_COPY: usize = 2048;

#[derive(Debug, Default)]
struct HostState {
    listeners: Vec<SocketAddr>,
    live_conns: crate::proto::idmap::IdSet<u64>,
    arena: BytesMut,
    /// Backlog accounts by destination.
    accounts: HashMap<Dest, (u32, Arc<Account>)>,
    last_account: Option<(Dest, u32, Arc<Account>)>,
    next_account: u32,
    next_track: u64,
    /// Main-thread timers.
    timers: crate::timers::Timers,
    /// Connection user data, by conn.
    user_data: crate::proto::idmap::IdMap<u64, u64>,
    pending: VecDeque<Event>,
    lent: Vec<Event>,
    /// Reactors (bit k) holding sends made with `XXNET_SEND_MORE` and not yet woken.
    owed_wakes: u64,
    lent_bytes: usize,
    shut_down: bool,
    /// Remote calls: directory, pending calls, reply tokens, services.
    rpc: rpc::RpcState,
    /// Downloads: open tasks, held files, the files thread.
    dl: files::DownloadState,
}

impl HostState {
    fn copy_payload(&mut self, data: &[u8]) -> Bytes {
        if data.len() > ARENA_MAX_COPY {
            return Bytes::copy_from_slice(data);
        }
        if self.arena.capacity() - self.arena.len() < data.len() {
            self.arena = BytesMut::with_capacity(ARENA_CHUNK);
        }
        self.arena.extend_from_slice(data);
        self.arena.split().freeze()
    }
}

/// One xxnet context: a reactor thread and the host-side state.
#[derive(Debug)]
pub struct Context {
    link: HostLink,
    state: Mutex<HostState>,
    reactors: Mutex<Vec<JoinHandle<()>>>,
    max_message: usize,
    recv_queue_limit: usize,
    high_water: u64,
    low_water: u64,
    user_data_changes: std::sync::atomic::AtomicU64,
    node_name: Option<String>,
    files_settings: crate::files::worker::Settings,
    download_timeout_ms: u64,
}

impl Context {
    /// Starts the reactor threads (`io_threads` of them).
    pub fn new(cfg: Config) -> Result<Context, String> {
        cfg.validate()?;
        let mut polls = Vec::new();
        let mut wakers = Vec::new();
        for _ in 0..cfg.io_threads {
            let (poll, waker) =
                reactor::new_poll().map_err(|e| format!("cannot create poll: {e}"))?;
            polls.push(poll);
            wakers.push(waker);
        }
        let (host, reactor_ends) = bridge::link(wakers);
        let max_message = cfg.max_message_size;
        let recv_queue_limit = cfg.recv_queue_limit;
        let high_water = cfg.send_high_water as u64;
        let low_water = cfg.send_low_water as u64;
        let node_name = cfg.node_name.clone();
        let files_settings = crate::files::worker::Settings {
            dir: cfg.download_dir.clone(),
            quota: cfg.download_quota,
            block: cfg.download_block_size,
            window: cfg.download_window,
            rate: cfg.download_rate_limit,
            max_message: cfg.max_message_size,
        };
        let download_timeout_ms = cfg.download_timeout_ms;
        // One identity for the whole context, whichever reactor holds a session.
        let instance = reactor::random_u64();
        let mut handles = Vec::new();
        for (poll, end) in polls.into_iter().zip(reactor_ends) {
            let name = match end.index {
                0 => "xxnet-reactor".to_string(),
                k => format!("xxnet-reactor-{k}"),
            };
            let cfg = cfg.clone();
            match std::thread::Builder::new()
                .name(name)
                .spawn(move || reactor::run(poll, end, cfg, instance))
            {
                Ok(h) => handles.push(h),
                Err(e) => {
                    // Stop the ones already running before failing.
                    let _ = host.router.route(Command::Shutdown);
                    for h in handles {
                        let _ = h.join();
                    }
                    return Err(format!("cannot start a reactor thread: {e}"));
                }
            }
        }
        Ok(Context {
            link: host,
            state: Mutex::new(HostState::default()),
            reactors: Mutex::new(handles),
            max_message,
            recv_queue_limit,
            high_water,
            low_water,
            user_data_changes: Default::default(),
            node_name,
            files_settings,
            download_timeout_ms,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HostState> {
        // A panic while holding the lock leaves plain data; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_usable(&self, st: &HostState) -> Result<(), c_int> {
        if self.link.common().failed.load(Ordering::Acquire) {
            return Err(XXNET_E_INTERNAL);
        }
        if st.shut_down {
            return Err(XXNET_E_SHUTDOWN);
        }
        Ok(())
    }

    fn submit(&self, cmd: Command) -> Result<(), c_int> {
        self.link.router.route(cmd)
    }

    /// Binds `addr` and hands the listener to the reactor. Returns the bound port.
    pub fn listen(&self, addr: SocketAddr) -> Result<u16, c_int> {
        let mut st = self.state();
        self.check_usable(&st)?;
        self.listen_locked(&mut st, addr)
    }

    fn listen_locked(&self, st: &mut HostState, addr: SocketAddr) -> Result<u16, c_int> {
        let overlaps = |l: &SocketAddr| {
            addr.port() != 0
                && l.port() == addr.port()
                && (l.ip() == addr.ip() || l.ip().is_unspecified() || addr.ip().is_unspecified())
                && l.is_ipv4() == addr.is_ipv4()
        };
        if st.listeners.iter().any(overlaps) {
            return Err(XXNET_E_ALREADY_LISTENING);
        }
        let listener = mio::net::TcpListener::bind(addr).map_err(|e| from_io(&e))?;
        let local = listener.local_addr().map_err(|e| from_io(&e))?;
        self.submit(Command::Listen { listener })?;
        st.listeners.push(local);
        log::info!(target: "xxnet::host", "listening on {local}");
        Ok(local.port())
    }

    /// Copies `data` and queues it for `dest`. With `need_ack`, returns the
    /// id its DELIVERED or EXPIRED event will carry (else 0).
    pub fn send(
        &self,
        dest: Dest,
        opts: SendOpts,
        data: &[u8],
        need_ack: bool,
    ) -> Result<u64, c_int> {
        if data.len() > self.max_message {
            return Err(XXNET_E_TOO_LARGE);
        }
        if opts.lane as u32 >= XXNET_LANES {
            return Err(XXNET_E_INVALID_ARG);
        }
        let mut st = self.state();
        self.check_usable(&st)?;
        match dest {
            Dest::Conn(c) if !st.live_conns.contains(&c) => return Err(XXNET_E_UNKNOWN_CONN),
            Dest::Addr(a) if a.port() == 0 || a.ip().is_unspecified() => {
                return Err(XXNET_E_INVALID_ARG)
            }
            _ => {}
        }
        let acct_id = self.charge(&mut st, dest, data.len() as u64, false)?;
        let track = if need_ack {
            st.next_track += 1;
            st.next_track
        } else {
            0
        };
        let payload = st.copy_payload(data);
        let router = &self.link.router;
        let k = router.owner(dest);
        router.push_to(
            k,
            Command::Send(Outgoing {
                dest,
                lane: opts.lane,
                msg_id: opts.msg_id,
                data: payload,
                track,
                acct: acct_id,
                ack_timeout_ms: if need_ack { opts.ack_timeout_ms } else { 0 },
                flags: 0,
            }),
        )?;
        if opts.more {
            st.owed_wakes |= 1 << k;
        } else {
            st.owed_wakes &= !(1 << k);
            router.shared(k).wake();
            Self::pay_wakes(router, &mut st);
        }
        Ok(track)
    }

    /// Wakes the reactors that sends with `XXNET_SEND_MORE` left unwoken.
    fn pay_wakes(router: &bridge::Router, st: &mut HostState) {
        while st.owed_wakes != 0 {
            let k = st.owed_wakes.trailing_zeros() as usize;
            st.owed_wakes &= !(1 << k);
            router.shared(k).wake();
        }
    }

    /// Hands over what sends with `XXNET_SEND_MORE` left waiting (wakes the reactors).
    pub fn flush(&self) -> Result<(), c_int> {
        let mut st = self.state();
        self.check_usable(&st)?;
        Self::pay_wakes(&self.link.router, &mut st);
        Ok(())
    }

    /// Charges `len` bytes to the backlog account of `dest` and returns the
    /// account id, or refuses with `XXNET_E_WOULD_BLOCK` past the high-water
    /// mark (unless `force`: replies are never refused).
    fn charge(&self, st: &mut HostState, dest: Dest, len: u64, force: bool) -> Result<u32, c_int> {
        let acct_id = self.account(st, dest)?;
        // Borrow the cached account (no Arc clone per send).
        let refused = {
            let acct: &Account = &st.last_account.as_ref().expect("set by account()").2;
            let outstanding = acct.bytes.load(Ordering::SeqCst);
            if !force && outstanding > 0 && outstanding + len > self.high_water {
                acct.blocked.store(true, Ordering::SeqCst);
                // The reactor may have released everything between our load and
                // the store: then no WRITABLE would come from it; owe it here.
                let owed = (acct.bytes.load(Ordering::SeqCst) <= self.low_water
                    && acct.blocked.swap(false, Ordering::SeqCst))
                .then(|| acct.bytes.load(Ordering::SeqCst));
                Some(owed)
            } else {
                acct.bytes.fetch_add(len, Ordering::SeqCst);
                None
            }
        };
        if let Some(owed) = refused {
            if let Some(outstanding) = owed {
                st.pending.push_back(writable_event(dest, outstanding));
            }
            return Err(XXNET_E_WOULD_BLOCK);
        }
        Ok(acct_id)
    }

    /// The backlog account of `dest`, opened (and announced to the reactor) on first use.
    /// Leaves it in `st.last_account`.
    fn account(&self, st: &mut HostState, dest: Dest) -> Result<u32, c_int> {
        if let Some((d, id, _)) = &st.last_account {
            if *d == dest {
                return Ok(*id);
            }
        }
        let (id, acct) = match st.accounts.get(&dest) {
            Some((id, a)) => (*id, a.clone()),
            None => {
                st.next_account += 1;
                let id = st.next_account;
                let account = Arc::new(Account::default());
                self.submit(Command::NewAccount {
                    id,
                    account: account.clone(),
                    dest,
                })?;
                st.accounts.insert(dest, (id, account.clone()));
                (id, account)
            }
        };
        st.last_account = Some((dest, id, acct));
        Ok(id)
    }

    /// The latest state of session `conn`.
    pub fn peer_info(&self, conn: u64) -> Result<PeerSnapshot, c_int> {
        {
            let st = self.state();
            self.check_usable(&st)?;
            if !st.live_conns.contains(&conn) {
                return Err(XXNET_E_UNKNOWN_CONN);
            }
        }
        let table = self
            .link
            .common()
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        table.get(&conn).copied().ok_or(XXNET_E_UNKNOWN_CONN)
    }

    /// Asks the reactor to close `conn`.
    pub fn close(&self, conn: u64) -> Result<(), c_int> {
        let st = self.state();
        self.check_usable(&st)?;
        if !st.live_conns.contains(&conn) {
            return Err(XXNET_E_UNKNOWN_CONN);
        }
        drop(st);
        self.submit(Command::Close { conn })
    }

    /// Drains up to `max` events, waiting up to `timeout` (None: forever) for
    /// the first; the wait also ends when a timer is due. Calls
    /// `visit(i, event)` for each; the events (and their payloads) stay alive
    /// until the next call. Returns how many.
    pub fn poll(
        &self,
        max: usize,
        timeout: Option<Duration>,
        mut visit: impl FnMut(usize, &Event),
    ) -> usize {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.state();
        Self::pay_wakes(&self.link.router, &mut st);
        self.release_lent(&mut st);
        if max == 0 {
            return 0;
        }
        // A batch that arrives while nothing is pending is handed out from
        // its own vector (admitted in place, no copy through `pending`).
        let mut direct: Option<Vec<Event>> = None;
        loop {
            Self::fire_timers(&mut st, Instant::now());
            while let Ok(batch) = self.link.events.try_recv() {
                Self::take_batch(&mut st, &mut direct, batch);
                if st.pending.len() + direct.as_ref().map_or(0, Vec::len) >= max {
                    break;
                }
            }
            if !st.pending.is_empty() || direct.is_some() || st.shut_down {
                break;
            }
            // Wait without holding the lock, until an event batch, the next
            // timer, or the caller's deadline.
            let wake = match (deadline, st.timers.next_due()) {
                (Some(d), Some(t)) => Some(d.min(t)),
                (d, t) => d.or(t),
            };
            drop(st);
            let got = match wake {
                None => self.link.events.recv().ok(),
                Some(w) => match w.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => self.link.events.recv_timeout(left).ok(),
                    _ => None,
                },
            };
            st = self.state();
            match got {
                Some(batch) => Self::take_batch(&mut st, &mut direct, batch),
                None if deadline.is_some_and(|d| Instant::now() >= d) => {
                    Self::fire_timers(&mut st, Instant::now());
                    break;
                }
                None => {} // a timer came due: fire it on the next round
            }
        }
        let mut lent = std::mem::take(&mut st.lent);
        if let Some(mut batch) = direct {
            // Events after the first `max` wait in front of the later ones.
            if batch.len() > max {
                for ev in batch.drain(max..).rev() {
                    st.pending.push_front(ev);
                }
            }
            batch.retain_mut(|ev| Self::admit(&mut st, ev));
            self.link
                .common()
                .recycle(std::mem::replace(&mut lent, batch));
        }
        while lent.len() < max {
            let Some(mut ev) = st.pending.pop_front() else {
                break;
            };
            if Self::admit(&mut st, &mut ev) {
                lent.push(ev);
            }
        }
        let answers = std::mem::take(&mut st.rpc.outbox);
        for (i, ev) in lent.iter().enumerate() {
            visit(i, ev);
        }
        let n = lent.len();
        st.lent = lent;
        drop(st);
        for m in answers {
            // A failure means the reactor is gone; the caller learns otherwise.
            let _ = self.submit(Command::Send(m));
        }
        n
    }

    /// Queues a batch from the reactor behind what is pending: kept whole in
    /// `direct` when nothing is pending yet, else appended to `pending`.
    fn take_batch(st: &mut HostState, direct: &mut Option<Vec<Event>>, batch: Vec<Event>) {
        if direct.is_none() && st.pending.is_empty() {
            *direct = Some(batch);
        } else {
            st.pending.extend(batch);
        }
    }

    /// Host-side bookkeeping of an event about to be handed out; false drops it.
    fn admit(st: &mut HostState, ev: &mut Event) -> bool {
        {
            st.lent_bytes += ev.queued_bytes();
            if ev.conn != 0 {
                if let Some(&u) = st.user_data.get(&ev.conn) {
                    ev.user_data = u;
                }
            }
            match ev.kind {
                XXNET_EVENT_CONNECTED => {
                    st.live_conns.insert(ev.conn);
                }
                XXNET_EVENT_DISCONNECTED => {
                    st.live_conns.remove(&ev.conn);
                    st.user_data.remove(&ev.conn);
                    st.accounts.remove(&Dest::Conn(ev.conn));
                    if st
                        .last_account
                        .as_ref()
                        .is_some_and(|(d, _, _)| *d == Dest::Conn(ev.conn))
                    {
                        st.last_account = None;
                    }
                }
                XXNET_EVENT_CALL_REQUEST | XXNET_EVENT_CALL_RESULT => return st.rpc.admit(ev),
                XXNET_EVENT_DOWNLOAD_PROGRESS
                | XXNET_EVENT_DOWNLOAD_DONE
                | XXNET_EVENT_DOWNLOAD_FAILED => return st.dl.admit(ev),
                _ => {}
            }
            if ev.kind == XXNET_EVENT_DISCONNECTED {
                st.rpc.conn_gone(ev.conn);
            }
        }
        true
    }

    /// Appends a TIMER event for every timer due at `now`.
    fn fire_timers(st: &mut HostState, now: Instant) {
        let HostState {
            timers, pending, ..
        } = st;
        timers.fire(now, usize::MAX, |id, user_data| {
            pending.push_back(Event {
                kind: XXNET_EVENT_TIMER,
                id,
                user_data,
                ..Event::default()
            });
        });
    }

    /// Starts a main-thread timer; it fires from `poll`. Returns its id.
    pub fn timer_start(
        &self,
        delay: Duration,
        interval: Duration,
        user_data: u64,
    ) -> Result<u64, c_int> {
        let mut st = self.state();
        self.check_usable(&st)?;
        Ok(st.timers.start(Instant::now(), delay, interval, user_data))
    }

    /// Stops a timer; `XXNET_E_UNKNOWN_TIMER` if it is not live.
    pub fn timer_stop(&self, id: u64) -> Result<(), c_int> {
        let mut st = self.state();
        if st.timers.stop(id) {
            Ok(())
        } else {
            Err(XXNET_E_UNKNOWN_TIMER)
        }
    }

    /// Sets the value copied into `user_data` of every later event of `conn`.
    pub fn set_user_data(&self, conn: u64, value: u64) -> Result<(), c_int> {
        let mut st = self.state();
        self.check_usable(&st)?;
        if !st.live_conns.contains(&conn) {
            return Err(XXNET_E_UNKNOWN_CONN);
        }
        st.user_data.insert(conn, value);
        for ev in st.pending.iter_mut().filter(|e| e.conn == conn) {
            ev.user_data = value;
        }
        self.user_data_changes.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Counts `set_user_data` calls, so a dispatcher can tell whether a
    /// handler changed them.
    pub fn user_data_changes(&self) -> u64 {
        self.user_data_changes.load(Ordering::Acquire)
    }

    /// The user data of `conn` (0 if none).
    pub fn user_data(&self, conn: u64) -> u64 {
        self.state().user_data.get(&conn).copied().unwrap_or(0)
    }

    /// Drops the events lent by the previous poll and credits their bytes back.
    fn release_lent(&self, st: &mut HostState) {
        st.lent.clear();
        if st.lent_bytes > 0 {
            let released = std::mem::take(&mut st.lent_bytes);
            let before = self
                .link
                .common()
                .recv_queued
                .fetch_sub(released, Ordering::AcqRel);
            let after = before.saturating_sub(released);
            if after <= self.recv_queue_limit / 2 {
                for shared in self.link.router.all() {
                    if shared.reading_paused.load(Ordering::Acquire) {
                        shared.wake();
                    }
                }
            }
        }
    }

    /// A snapshot of the counters: the sums over every reactor.
    pub fn stats(&self) -> Stats {
        let mut sum = Stats::default();
        for k in 0..self.link.router.count() {
            sum.add(&Self::read_stats(&self.link.router.shared(k).stats));
        }
        sum
    }

    /// The counters of reactor `k` alone (`None` if there is no such reactor).
    pub fn reactor_stats(&self, k: usize) -> Option<Stats> {
        (k < self.link.router.count()).then(|| Self::read_stats(&self.link.router.shared(k).stats))
    }

    fn read_stats(s: &bridge::SharedStats) -> Stats {
        let r = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            open_connections: r(&s.open_connections),
            msgs_in: r(&s.msgs_in),
            msgs_out: r(&s.msgs_out),
            bytes_in: r(&s.bytes_in),
            bytes_out: r(&s.bytes_out),
            queued_bytes: r(&s.queued_bytes),
            queued_msgs: r(&s.queued_msgs),
            protocol_errors: r(&s.protocol_errors),
            refused_connections: r(&s.refused_connections),
            connect_failures: r(&s.connect_failures),
            send_failed_msgs: r(&s.send_failed_msgs),
            accepted_connections: r(&s.accepted_connections),
            msgs_acked: r(&s.msgs_acked),
            msgs_resent: r(&s.msgs_resent),
            duplicates_dropped: r(&s.duplicates),
            reconnects: r(&s.reconnects),
        }
    }

    /// Stops the reactor, joins it, closes every socket (peers are told with
    /// GOAWAY). Events already produced stay queued for `poll`, followed by a
    /// CALL_RESULT with `XXNET_E_SHUTDOWN` for every call still pending; later
    /// sends and calls return `XXNET_E_SHUTDOWN`. Idempotent.
    pub fn close_network(&self) {
        {
            let mut st = self.state();
            if st.shut_down {
                return;
            }
            st.shut_down = true;
        }
        // The files thread first: it saves the index and stops sending.
        let files = self.state().dl.take_thread();
        if let Some(t) = files {
            t.stop();
        }
        let _ = self.link.router.route(Command::Shutdown);
        let handles = std::mem::take(&mut *self.reactors.lock().unwrap_or_else(|p| p.into_inner()));
        for h in handles {
            let _ = h.join();
        }
        let mut st = self.state();
        while let Ok(batch) = self.link.events.try_recv() {
            st.pending.extend(batch);
        }
        let HostState {
            rpc, pending, dl, ..
        } = &mut *st;
        rpc.resolve_all(XXNET_E_SHUTDOWN, pending);
        dl.fail_all(XXNET_E_SHUTDOWN, pending);
    }

    /// `close_network`, then drops every queued event. Idempotent.
    pub fn shutdown(&self) {
        self.close_network();
        let mut st = self.state();
        st.pending.clear();
        st.lent.clear();
    }

    /// Test hook: makes the reactor thread panic.
    #[doc(hidden)]
    pub fn inject_reactor_panic(&self) {
        let _ = self.submit(Command::InjectPanic);
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn writable_event(dest: Dest, outstanding: u64) -> Event {
    let (conn, peer) = match dest {
        Dest::Conn(c) => (c, None),
        Dest::Addr(a) => (0, Some(a)),
    };
    Event {
        kind: XXNET_EVENT_WRITABLE,
        conn,
        peer,
        total: outstanding,
        ..Event::default()
    }
}
