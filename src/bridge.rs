//! The boundary between the host's thread and the reactor thread.
//!
//! Host → reactor: an unbounded lock-free command channel plus a `mio::Waker`.
//! A wake is issued only when none is pending (`wake_pending`), so a burst of
//! sends costs one wakeup, and the reactor drains the whole queue per wakeup.
//! Reactor → host: events travel in batches (`Vec<Event>`, one channel
//! operation per reactor turn). Counters are published once per turn into
//! relaxed atomics; backlog accounts are atomics the host adds to per send
//! and the reactor subtracts from once per turn. The only lock is the
//! session-snapshot table, taken once per turn by the reactor when a session
//! changed and by the host only when it asks (`xxnet_conn_info`).

pub use crate::proto::endpoint::{Dest, Outgoing, PeerSnapshot};
pub use crate::proto::event::Event;
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A request from the host to the reactor.
#[derive(Debug)]
pub enum Command {
    /// Start accepting on an already bound listener.
    Listen { listener: mio::net::TcpListener },
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

/// State both threads see.
#[derive(Debug)]
pub struct Shared {
    pub waker: mio::Waker,
    /// A wake has been issued and the reactor has not yet started draining.
    pub wake_pending: AtomicBool,
    /// The reactor thread died (panic); the context is unusable.
    pub failed: AtomicBool,
    /// Received payload bytes handed to the host and not yet released by its next poll.
    pub recv_queued: AtomicUsize,
    /// The reactor stopped reading because `recv_queued` passed the limit.
    pub reading_paused: AtomicBool,
    pub stats: SharedStats,
    /// Latest snapshot of every live session, by conn id.
    pub sessions: Mutex<HashMap<u64, PeerSnapshot>>,
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

/// The host's end.
#[derive(Debug)]
pub struct HostLink {
    pub commands: Sender<Command>,
    pub events: Receiver<Vec<Event>>,
    /// A sender of the event channel, for the files thread.
    pub events_tx: Sender<Vec<Event>>,
    pub shared: Arc<Shared>,
}

/// The reactor's end.
#[derive(Debug)]
pub struct ReactorLink {
    pub commands: Receiver<Command>,
    pub events: Sender<Vec<Event>>,
    pub shared: Arc<Shared>,
}

/// Creates both ends around a waker registered with the reactor's poll.
pub fn link(waker: mio::Waker) -> (HostLink, ReactorLink) {
    let (ctx, crx) = crossbeam_channel::unbounded();
    let (etx, erx) = crossbeam_channel::unbounded();
    let shared = Arc::new(Shared {
        waker,
        wake_pending: AtomicBool::new(false),
        failed: AtomicBool::new(false),
        recv_queued: AtomicUsize::new(0),
        reading_paused: AtomicBool::new(false),
        stats: SharedStats::default(),
        sessions: Mutex::new(HashMap::new()),
    });
    (
        HostLink {
            commands: ctx,
            events: erx,
            events_tx: etx.clone(),
            shared: shared.clone(),
        },
        ReactorLink {
            commands: crx,
            events: etx,
            shared,
        },
    )
}
