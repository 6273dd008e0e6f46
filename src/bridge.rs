//! The boundary between the host's thread and the reactor threads.
//!
//! A context runs `io_threads` reactors (default 1). Each owns the sessions
//! whose conn id `c` has `c % N` equal to its index, for their whole life;
//! the [`Router`] sends every command to the reactor owning its destination.
//!
//! Host → reactor: a command queue per reactor ([`Inbox`]: pushed under a
//! short lock, swapped out whole by the reactor once per turn) plus a `mio::Waker`.
//! A wake is issued only when none is pending (`wake_pending`), so a burst of
//! sends costs one wakeup, and the reactor drains the whole queue per wakeup.
//! Reactor → host: events travel in batches (`Vec<Event>`, one channel
//! operation per reactor turn), all reactors into one channel. Counters are published once per turn into
//! relaxed atomics; backlog accounts are atomics the host adds to per send
//! and the reactor subtracts from once per turn. The locks, all short and
//! uncontended in the common case: each reactor's command [`Inbox`] (a push
//! per command, a swap per turn); the session-snapshot table, taken once per
//! turn by a reactor when a session changed and by the host only when it
//! asks (`xxnet_conn_info`); and, with several reactors, the route table
//! ([`Routes`]), taken by each send by address and when an accepted
//! connection is handed over.

pub use crate::proto::endpoint::{Dest, Outgoing, PeerSnapshot};
pub use crate::proto::event::Event;
use crossbeam_channel::{Receiver, Sender};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A request from the host to the reactor.
#[derive(Debug)]
pub enum Command {
    /// Start accepting on an already bound listener (reactor 0).
    Listen { listener: mio::net::TcpListener },
    /// A listener was bound on reactor 0: this is its address (announced in HELLOs).
    Listening { addr: std::net::SocketAddr },
    /// An accepted connection handed over by reactor 0 once its HELLO named
    /// the node: `read` holds the bytes read so far.
    Adopt {
        stream: mio::net::TcpStream,
        read: bytes::BytesMut,
        remote: std::net::SocketAddr,
        local: std::net::SocketAddr,
    },
    /// Queue one message.
    Send(Outgoing),
    /// A backlog account the host opened for a destination (sent before its first message).
    NewAccount {
        id: u32,
        account: Arc<Account>,
        dest: Dest,
    },
    /// End a session.
    Close { conn: u64 },
    /// Register (`serve`) or withdraw a service.
    Service { name: String, serve: bool },
    /// End the session with the node at `addr` (removed or moved in the directory).
    EndPeer {
        addr: std::net::SocketAddr,
        code: std::os::raw::c_int,
    },
    /// The files thread started: route file requests and its call results to it.
    Files { tx: Sender<crate::files::FilesMsg> },
    /// Stop the reactor; sockets close when it returns.
    Shutdown,
    /// Test hook: panic on the reactor thread.
    InjectPanic,
}

/// Backlog of one destination: payload bytes the host handed over that are
/// not yet acknowledged by the peer or reported failed.
#[derive(Debug, Default)]
pub struct Account {
    /// Bytes outstanding.
    pub bytes: AtomicU64,
    /// A send was refused with WOULD_BLOCK; a WRITABLE event is owed.
    pub blocked: AtomicBool,
}

/// Counters the reactor publishes once per turn.
#[derive(Debug, Default)]
pub struct SharedStats {
    pub open_connections: AtomicU64,
    pub msgs_in: AtomicU64,
    pub msgs_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub refused_connections: AtomicU64,
    pub connect_failures: AtomicU64,
    pub send_failed_msgs: AtomicU64,
    pub send_failed_bytes: AtomicU64,
    pub accepted_connections: AtomicU64,
    pub queued_msgs: AtomicU64,
    pub queued_bytes: AtomicU64,
    pub msgs_acked: AtomicU64,
    pub msgs_resent: AtomicU64,
    pub duplicates: AtomicU64,
    pub reconnects: AtomicU64,
}

/// State every thread of a context sees.
#[derive(Debug)]
pub struct Common {
    /// A reactor thread (or the files thread) died; the context is unusable.
    pub failed: AtomicBool,
    /// Received payload bytes handed to the host and not yet released by its next poll.
    pub recv_queued: AtomicUsize,
    /// Latest snapshot of every live session, by conn id.
    pub sessions: Mutex<crate::proto::idmap::IdMap<u64, PeerSnapshot>>,
    /// Which reactor owns the session of a node (several reactors only).
    pub routes: Mutex<Routes>,
    /// Connections reactor 0 accepted (several reactors) that no reactor's
    /// published `open_connections` counts yet: held for their HELLO, or
    /// handed over and not yet published by their owner. With the published
    /// counts it keeps `max_connections` exact across reactors.
    pub handed_over: AtomicUsize,
    /// Event vectors the host is done with, emptied, for the reactors' next
    /// batches: in a steady stream no batch allocates or regrows.
    pub spare_batches: Mutex<Vec<Vec<Event>>>,
}

impl Common {
    /// The route table, locked (plain data: a panic while held leaves nothing half-done).
    pub fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Most spare batch vectors kept.
    const SPARE_BATCHES: usize = 4;

    /// Keeps `v` (emptied) for a later batch.
    pub fn recycle(&self, mut v: Vec<Event>) {
        if v.capacity() == 0 {
            return;
        }
        v.clear();
        let mut spare = self.spare_batches.lock().unwrap_or_else(|p| p.into_inner());
        if spare.len() < Self::SPARE_BATCHES {
            spare.push(v);
        }
    }

    /// An empty vector for a batch: a recycled one, else a new one with room for `hint`.
    pub fn batch_vec(&self, hint: usize) -> Vec<Event> {
        self.spare_batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(hint))
    }
}

/// With several reactors: the reactor owning the session of each node.
///
/// An address the host sends to, or a node announces as its listen address
/// in a HELLO, is bound to a reactor the first time it is seen and stays
/// bound (the table grows with the number of distinct node addresses). Nodes
/// that listen nowhere are bound by their instance id until their session
/// ends. Conn ids need no table: conn `c` lives on reactor `c % N`.
#[derive(Debug, Default)]
pub struct Routes {
    by_addr: HashMap<SocketAddr, usize>,
    by_instance: HashMap<u64, usize>,
    next: usize,
}

impl Routes {
    /// A reactor for a connection that names no node (round-robin).
    pub fn pick(&mut self, n: usize) -> usize {
        let k = self.next % n;
        self.next = self.next.wrapping_add(1);
        k
    }

    /// The reactor of the node at `addr`, bound round-robin on first use.
    pub fn for_addr(&mut self, addr: SocketAddr, n: usize) -> usize {
        if let Some(&k) = self.by_addr.get(&addr) {
            return k;
        }
        let k = self.pick(n);
        self.by_addr.insert(addr, k);
        k
    }

    /// The reactor for an accepted connection whose HELLO names `instance`
    /// and announces `listen`: the one already holding that node, else a new
    /// binding (round-robin).
    pub fn for_hello(&mut self, instance: u64, listen: Option<SocketAddr>, n: usize) -> usize {
        if let Some(addr) = listen {
            return self.for_addr(addr, n);
        }
        if let Some(&k) = self.by_instance.get(&instance) {
            return k;
        }
        let k = self.pick(n);
        self.by_instance.insert(instance, k);
        k
    }

    /// Reactor `k` reached a node announcing `listen` (maybe through another
    /// address, behind a proxy): the node's own connections to us go to `k`
    /// unless that address is already bound elsewhere.
    pub fn learned(&mut self, listen: SocketAddr, k: usize) {
        self.by_addr.entry(listen).or_insert(k);
    }

    /// A node without a listen address ended its session on reactor `k`.
    pub fn instance_gone(&mut self, instance: u64, k: usize) {
        if self.by_instance.get(&instance) == Some(&k) {
            self.by_instance.remove(&instance);
        }
    }
}

/// State of one reactor that other threads see.
#[derive(Debug)]
pub struct Shared {
    pub waker: mio::Waker,
    /// A wake has been issued and the reactor has not yet started draining.
    pub wake_pending: AtomicBool,
    /// The reactor stopped reading because `recv_queued` passed the limit.
    pub reading_paused: AtomicBool,
    pub stats: SharedStats,
    pub common: Arc<Common>,
}

impl Shared {
    /// Wakes the reactor unless a wake is already pending.
    pub fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            // A failed wake means the poll is gone: the reactor is exiting.
            let _ = self.waker.wake();
        }
    }
}

/// The command queue of one reactor: a vector behind a mutex that the
/// senders push to and the reactor swaps out whole once per turn, so a send
/// costs a short uncontended lock and a push, and the reactor takes a whole
/// burst at once. Order is kept across every kind of command.
#[derive(Debug, Default)]
pub struct Inbox {
    queue: Mutex<VecDeque<Command>>,
    /// The reactor has exited: pushes are refused.
    closed: AtomicBool,
}

impl Inbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Command>> {
        // Plain data: a panic while holding it leaves nothing half-done.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `cmd`; refused once the reactor has exited.
    pub fn push(&self, cmd: Command) -> Result<(), std::os::raw::c_int> {
        let mut q = self.lock();
        if self.closed.load(Ordering::Acquire) {
            return Err(crate::codes::XXNET_E_INTERNAL);
        }
        q.push_back(cmd);
        Ok(())
    }

    /// Moves everything queued to the back of `into` (the reactor's side).
    pub fn take_into(&self, into: &mut VecDeque<Command>) {
        let mut q = self.lock();
        if into.is_empty() {
            // Swap: the emptied vector, capacity kept, goes back to the senders.
            std::mem::swap(&mut *q, into);
        } else {
            into.append(&mut q);
        }
    }

    /// The reactor exits: later pushes fail, and what is queued is dropped
    /// (sockets handed over close).
    pub fn close(&self) {
        let mut q = self.lock();
        self.closed.store(true, Ordering::Release);
        q.clear();
    }
}

/// The command queue of one reactor, as the senders see it.
#[derive(Debug)]
struct Handle {
    inbox: Arc<Inbox>,
    shared: Arc<Shared>,
}

/// Sends commands to the reactor that owns what they are about. Cheap to
/// clone; the host, the files thread and reactor 0 (for handing accepted
/// sockets over) each hold one.
#[derive(Clone, Debug)]
pub struct Router {
    handles: Arc<[Handle]>,
    pub common: Arc<Common>,
}

impl Router {
    /// Number of reactors.
    pub fn count(&self) -> usize {
        self.handles.len()
    }

    /// The shared state of reactor `k`.
    pub fn shared(&self, k: usize) -> &Arc<Shared> {
        &self.handles[k].shared
    }

    /// Every reactor's shared state.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Shared>> {
        self.handles.iter().map(|h| &h.shared)
    }

    /// The reactor that owns `dest`.
    pub fn owner(&self, dest: Dest) -> usize {
        let n = self.handles.len();
        if n == 1 {
            return 0;
        }
        match dest {
            Dest::Conn(c) => (c % n as u64) as usize,
            Dest::Addr(a) => self.common.routes().for_addr(a, n),
        }
    }

    /// Queues `cmd` on reactor `k` without waking it (the caller wakes it,
    /// `shared(k).wake()`, before anything waits on the command).
    pub fn push_to(&self, k: usize, cmd: Command) -> Result<(), std::os::raw::c_int> {
        self.handles[k].inbox.push(cmd)
    }

    /// Queues `cmd` on reactor `k` and wakes it.
    pub fn send_to(&self, k: usize, cmd: Command) -> Result<(), std::os::raw::c_int> {
        let h = &self.handles[k];
        // Refused when the reactor is gone (it panicked or shut down).
        h.inbox.push(cmd)?;
        h.shared.wake();
        Ok(())
    }

    /// Queues `cmd` on every reactor that must see it: the owner of its
    /// destination, reactor 0 for listeners, all of them for context-wide
    /// settings and shutdown.
    pub fn route(&self, cmd: Command) -> Result<(), std::os::raw::c_int> {
        if self.handles.len() == 1 {
            return self.send_to(0, cmd);
        }
        let k = match &cmd {
            Command::Send(m) => self.owner(m.dest),
            Command::NewAccount { dest, .. } => match dest {
                // The files thread's account is used on every reactor.
                Dest::Addr(a) if a.ip().is_unspecified() => return self.broadcast(cmd),
                d => self.owner(*d),
            },
            Command::Close { conn } => self.owner(Dest::Conn(*conn)),
            Command::Listen { listener } => {
                // Every reactor announces the listen address in its handshakes.
                if let Ok(addr) = listener.local_addr() {
                    for k in 1..self.handles.len() {
                        self.send_to(k, Command::Listening { addr })?;
                    }
                }
                0
            }
            Command::Listening { .. } | Command::InjectPanic | Command::Adopt { .. } => 0,
            Command::Service { .. }
            | Command::EndPeer { .. }
            | Command::Files { .. }
            | Command::Shutdown => return self.broadcast(cmd),
        };
        self.send_to(k, cmd)
    }

    fn broadcast(&self, cmd: Command) -> Result<(), std::os::raw::c_int> {
        let copy = |k: usize| -> Command {
            match &cmd {
                Command::NewAccount { id, account, dest } => Command::NewAccount {
                    id: *id,
                    account: account.clone(),
                    dest: *dest,
                },
                Command::Service { name, serve } => Command::Service {
                    name: name.clone(),
                    serve: *serve,
                },
                Command::EndPeer { addr, code } => Command::EndPeer {
                    addr: *addr,
                    code: *code,
                },
                Command::Files { tx } => Command::Files { tx: tx.clone() },
                Command::Shutdown => Command::Shutdown,
                _ => unreachable!("command {k} is not broadcast"),
            }
        };
        let mut ok = Ok(());
        for k in 0..self.handles.len() {
            if self.send_to(k, copy(k)).is_err() {
                ok = Err(crate::codes::XXNET_E_INTERNAL);
            }
        }
        ok
    }
}

/// The host's end.
#[derive(Debug)]
pub struct HostLink {
    pub router: Router,
    pub events: Receiver<Vec<Event>>,
    /// A sender of the event channel, for the files thread.
    pub events_tx: Sender<Vec<Event>>,
}

impl HostLink {
    /// State every thread sees.
    pub fn common(&self) -> &Common {
        &self.router.common
    }
}

/// One reactor's end.
#[derive(Debug)]
pub struct ReactorLink {
    /// This reactor's index: it owns the conn ids `c` with `c % N == index`.
    pub index: usize,
    pub commands: Arc<Inbox>,
    pub events: Sender<Vec<Event>>,
    pub shared: Arc<Shared>,
    /// Reactor 0 hands accepted sockets to the others through it.
    pub router: Router,
}

/// Creates the host's end and one end per reactor, around wakers registered
/// with each reactor's poll.
pub fn link(wakers: Vec<mio::Waker>) -> (HostLink, Vec<ReactorLink>) {
    let (etx, erx) = crossbeam_channel::unbounded();
    let common = Arc::new(Common {
        failed: AtomicBool::new(false),
        recv_queued: AtomicUsize::new(0),
        sessions: Mutex::new(Default::default()),
        routes: Mutex::new(Routes::default()),
        spare_batches: Mutex::new(Vec::new()),
        handed_over: AtomicUsize::new(0),
    });
    let mut handles = Vec::new();
    let mut receivers = Vec::new();
    for waker in wakers {
        let inbox = Arc::new(Inbox::default());
        handles.push(Handle {
            inbox: inbox.clone(),
            shared: Arc::new(Shared {
                waker,
                wake_pending: AtomicBool::new(false),
                reading_paused: AtomicBool::new(false),
                stats: SharedStats::default(),
                common: common.clone(),
            }),
        });
        receivers.push(inbox);
    }
    let router = Router {
        handles: handles.into(),
        common,
    };
    let reactors = receivers
        .into_iter()
        .enumerate()
        .map(|(index, commands)| ReactorLink {
            index,
            commands,
            events: etx.clone(),
            shared: router.shared(index).clone(),
            router: router.clone(),
        })
        .collect();
    (
        HostLink {
            router,
            events: erx,
            events_tx: etx,
        },
        reactors,
    )
}
