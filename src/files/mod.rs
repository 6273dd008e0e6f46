//! The download subsystem (issue 6, seed 000 §3.1.3): content-addressed
//! files served by md5 + size, fetched in checked blocks into a resumable
//! cache that stays within a quota.
//!
//! Threads: a files thread per context (started on first use) does every
//! disk read, write and hash, so neither the reactor nor the host's thread
//! ever waits on a disk. It talks to peers through the remote-call machinery
//! (service [`SERVICE`], calls tagged with [`FILES_BIT`]), which the reactor
//! routes to it instead of to the host, and it hands the host its events
//! (PROGRESS, DONE, FAILED) on the host's event channel.
//!
//! - [`wire`]: request and reply encoding, name and md5 checks (sans-IO).
//! - [`fetch`]: one download's state machine: blocks, window, retries,
//!   requesters, deadlines, progress (sans-IO, driven with explicit times).
//! - [`index`]: the persisted cache index, quota and LRU eviction.
//! - [`serve`]: the served directories' content table and hashing.
//! - [`worker`]: the files thread that drives them with real files.

pub mod fetch;
pub mod index;
pub mod serve;
pub mod wire;
pub mod worker;

use crate::bridge::Event;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;

/// Blocks are checked in granules of this many bytes (one CRC-32 each).
pub const GRANULE: u32 = 64 << 10;
/// Largest block a request may ask for.
pub const MAX_BLOCK: u32 = 4 << 20;
/// The remote-call service that serves files. Hosts cannot register it: host
/// service names have no dots.
pub const SERVICE: &str = "xxnet.files";
/// Marks the call sessions of the files thread (the host's are small counters).
pub const FILES_BIT: u64 = 1 << 62;
/// The backlog account of the files thread's messages. Their failures are
/// not reported to the host (they are the files thread's, not the host's).
pub const FILES_ACCT: u32 = u32::MAX;

/// Connection changes the files thread also gets a copy of (a download
/// whose deadline passes while its source has no connection reports the
/// node down).
pub fn copied_to_files(ev: &Event) -> bool {
    use crate::codes::*;
    matches!(
        ev.kind,
        XXNET_EVENT_LINK_DOWN
            | XXNET_EVENT_LINK_UP
            | XXNET_EVENT_CONNECTED
            | XXNET_EVENT_DISCONNECTED
            | XXNET_EVENT_CONNECT_FAILED
    ) && ev.peer.is_some()
}

/// Whether the reactor hands `ev` to the files thread: requests for
/// [`SERVICE`] and the results of calls the files thread made.
pub fn routed_to_files(ev: &Event) -> bool {
    use crate::codes::*;
    match ev.kind {
        XXNET_EVENT_CALL_RESULT => ev.id & FILES_BIT != 0,
        XXNET_EVENT_CALL_REQUEST => {
            ev.service.len() == SERVICE.len() + 1 && ev.service.starts_with(SERVICE.as_bytes())
        }
        _ => false,
    }
}

/// Content identity: md5 and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub md5: [u8; 16],
    pub size: u64,
}

impl Key {
    /// Lowercase hex of the md5.
    pub fn hex(&self) -> String {
        wire::hex(&self.md5)
    }

    /// The cache's file name for this content (never derived from a host or peer string).
    pub fn file_name(&self) -> String {
        format!("{}-{}", self.hex(), self.size)
    }
}

/// A message to the files thread.
#[derive(Debug)]
pub enum FilesMsg {
    /// Calls, replies and results the reactor routed here.
    Net(Vec<Event>),
    /// Start (or join) a download for host task `task`.
    Download {
        task: u64,
        node: String,
        key: Key,
        name: String,
        timeout_ms: u64,
    },
    /// The host cancelled `task` (its FAILED event was already produced by the host);
    /// also releases a finished task's hold on its file.
    Cancel { task: u64 },
    /// The host no longer needs the file of finished task `task`.
    Release { task: u64 },
    /// Serve the files under this (canonical) directory.
    Serve { dir: std::path::PathBuf },
    /// The cluster directory now reads: name → address.
    Nodes(Vec<(String, SocketAddr)>),
    /// Test hook: corrupt the data of the next `n` blocks this node serves.
    CorruptNext(u32),
    /// Save the index and exit.
    Stop,
}

/// Counters of the files thread (monotonic; read with `xxnet_files_stats`).
#[derive(Debug, Default)]
pub struct FilesStats {
    /// Blocks received, checked and written to the cache.
    pub blocks_fetched: AtomicU64,
    /// Blocks that arrived corrupt and were requested again.
    pub blocks_refetched: AtomicU64,
    /// Blocks this node served to others.
    pub blocks_served: AtomicU64,
    /// Bytes written to the cache.
    pub bytes_fetched: AtomicU64,
    /// Bytes of block data served.
    pub bytes_served: AtomicU64,
    /// Downloads finished (DONE to at least one requester).
    pub downloads_done: AtomicU64,
    /// Cached files evicted to make room.
    pub evictions: AtomicU64,
    /// Bytes the cache holds now (finished and partial files).
    pub cache_bytes: AtomicU64,
    /// Distinct contents this node serves now.
    pub served_files: AtomicU64,
}
