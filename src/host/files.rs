//! Downloads and file serving on the host's side (docs/DOWNLOADS.md).
//!
//! The files thread does the work; the host keeps what it must answer
//! synchronously: which tasks are open (so each ends with exactly one DONE
//! or FAILED, also when cancelled or at shutdown) and which finished tasks
//! still hold their file.

use super::{Context, HostState};
use crate::bridge::{Command, Event};
use crate::codes::*;
use crate::files::worker::{self, Links, Settings};
use crate::files::{wire, FilesMsg, FilesStats, Key};
use bytes::Bytes;
use crossbeam_channel::Sender;
use std::collections::{HashMap, HashSet, VecDeque};
use std::os::raw::c_int;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

/// A snapshot of the download counters (meanings as in `xxnet_files_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct FileStats {
    pub blocks_fetched: u64,
    pub blocks_refetched: u64,
    pub blocks_served: u64,
    pub bytes_fetched: u64,
    pub bytes_served: u64,
    pub downloads_done: u64,
    pub evictions: u64,
    pub cache_bytes: u64,
    pub served_files: u64,
}

/// The running files thread.
#[derive(Debug)]
pub(super) struct FilesThread {
    tx: Sender<FilesMsg>,
    handle: Option<JoinHandle<()>>,
}

impl FilesThread {
    /// Stops the thread (it saves the index first) and waits for it.
    pub(super) fn stop(mut self) {
        let _ = self.tx.send(FilesMsg::Stop);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// An open download task: its node (NUL-terminated) and size.
#[derive(Debug)]
struct Task {
    node: Bytes,
    size: u64,
    /// Ended by the host (cancel, shutdown) with this code: only the FAILED
    /// the host queued passes; what the files thread still sends is dropped.
    ending: Option<c_int>,
}

/// Host-side download state.
#[derive(Debug, Default)]
pub(super) struct DownloadState {
    open: HashMap<u64, Task>,
    /// Finished tasks whose file the host has not released.
    held: HashSet<u64>,
    next_task: u64,
    pub(super) thread: Option<FilesThread>,
    pub(super) stats: Arc<FilesStats>,
}

impl DownloadState {
    /// Bookkeeping of a download event before the host sees it; false drops it
    /// (a task already ended: cancelled, or failed at shutdown).
    pub(super) fn admit(&mut self, ev: &Event) -> bool {
        let Some(t) = self.open.get(&ev.id) else {
            return false;
        };
        let pass = match (ev.kind, t.ending) {
            (XXNET_EVENT_DOWNLOAD_PROGRESS, ending) => return ending.is_none(),
            (XXNET_EVENT_DOWNLOAD_FAILED, Some(code)) => ev.code == code,
            (_, Some(_)) => false,
            (_, None) => true,
        };
        if pass {
            self.open.remove(&ev.id);
            if ev.kind == XXNET_EVENT_DOWNLOAD_DONE {
                self.held.insert(ev.id);
            }
        }
        pass
    }

    /// Queues a FAILED with `code` for every open task (oldest first).
    pub(super) fn fail_all(&mut self, code: c_int, out: &mut VecDeque<Event>) {
        let mut open: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, t)| t.ending.is_none())
            .map(|(&id, _)| id)
            .collect();
        open.sort_unstable();
        for task in open {
            out.push_back(self.end(task, code));
        }
    }

    /// Marks `task` ended by the host with `code`; returns its FAILED event.
    fn end(&mut self, task: u64, code: c_int) -> Event {
        let t = self.open.get_mut(&task).expect("open task");
        t.ending = Some(code);
        Event {
            kind: XXNET_EVENT_DOWNLOAD_FAILED,
            code,
            id: task,
            total: t.size,
            node: t.node.clone(),
            ..Event::default()
        }
    }

    /// Takes the files thread out, to be stopped without the host lock held.
    pub(super) fn take_thread(&mut self) -> Option<FilesThread> {
        self.thread.take()
    }
}

impl Context {
    /// The files thread, started on first use.
    fn files_tx(&self, st: &mut HostState) -> Result<Sender<FilesMsg>, c_int> {
        if let Some(t) = &st.dl.thread {
            return Ok(t.tx.clone());
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let settings: Settings = self.files_settings.clone();
        let links = Links {
            rx,
            router: self.link.router.clone(),
            events: self.link.events_tx.clone(),
            stats: st.dl.stats.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("xxnet-files".into())
            .spawn(move || worker::run(settings, links))
            .map_err(|_| XXNET_E_INTERNAL)?;
        self.submit(Command::Files { tx: tx.clone() })?;
        let _ = tx.send(FilesMsg::Nodes(st.rpc.dir.entries()));
        st.dl.thread = Some(FilesThread {
            tx: tx.clone(),
            handle: Some(handle),
        });
        Ok(tx)
    }

    /// Tells a running files thread the directory changed.
    pub(super) fn files_nodes_changed(&self, st: &HostState) {
        if let Some(t) = &st.dl.thread {
            let _ = t.tx.send(FilesMsg::Nodes(st.rpc.dir.entries()));
        }
    }

    /// Serves the files under `dir` by content (md5 + size) to other nodes.
    /// The directory is hashed by the files thread; requests wait for it.
    pub fn files_serve(&self, dir: &str) -> Result<(), c_int> {
        let canon = std::fs::canonicalize(dir).map_err(|_| XXNET_E_BAD_PATH)?;
        if !canon.is_dir() {
            return Err(XXNET_E_BAD_PATH);
        }
        let mut st = self.state();
        self.check_usable(&st)?;
        let tx = self.files_tx(&mut st)?;
        tx.send(FilesMsg::Serve { dir: canon })
            .map_err(|_| XXNET_E_INTERNAL)?;
        // Requests are routed to the files thread from now on, behind the Serve above.
        self.submit(Command::Service {
            name: crate::files::SERVICE.to_string(),
            serve: true,
        })
    }

    /// Starts (or joins) the download of content `md5_hex` + `size` from
    /// `node`; returns the task id. Exactly one DOWNLOAD_DONE or
    /// DOWNLOAD_FAILED event with that id follows.
    pub fn download(&self, node: &str, md5_hex: &str, name: &str, size: u64) -> Result<u64, c_int> {
        let md5 = wire::parse_md5(md5_hex).ok_or(XXNET_E_BAD_PATH)?;
        if !wire::valid_name(name) {
            return Err(XXNET_E_BAD_PATH);
        }
        if self.files_settings.dir.is_none() {
            return Err(XXNET_E_INVALID_ARG);
        }
        let quota = self.files_settings.quota;
        if quota != 0 && size > quota {
            return Err(XXNET_E_NO_SPACE);
        }
        let mut st = self.state();
        self.check_usable(&st)?;
        if st.rpc.dir.get(node).is_none() {
            return Err(XXNET_E_UNKNOWN_NODE);
        }
        let tx = self.files_tx(&mut st)?;
        st.dl.next_task += 1;
        let task = st.dl.next_task;
        let node_bytes = st.rpc.name_bytes(node);
        st.dl.open.insert(
            task,
            Task {
                node: node_bytes,
                size,
                ending: None,
            },
        );
        let sent = tx.send(FilesMsg::Download {
            task,
            node: node.to_string(),
            key: Key { md5, size },
            name: name.to_string(),
            timeout_ms: self.download_timeout_ms,
        });
        if sent.is_err() {
            st.dl.open.remove(&task);
            return Err(XXNET_E_INTERNAL);
        }
        Ok(task)
    }

    /// Cancels a running download: its DOWNLOAD_FAILED (XXNET_E_CANCELLED)
    /// comes from the next poll. Other requesters of the same content go on.
    pub fn download_cancel(&self, task: u64) -> Result<(), c_int> {
        let mut st = self.state();
        if st.dl.open.get(&task).is_none_or(|t| t.ending.is_some()) {
            return Err(XXNET_E_UNKNOWN_TASK);
        }
        let ev = st.dl.end(task, XXNET_E_CANCELLED);
        st.pending.push_back(ev);
        if let Some(th) = &st.dl.thread {
            let _ = th.tx.send(FilesMsg::Cancel { task });
        }
        Ok(())
    }

    /// Releases the file of a finished task: it may be evicted from now on.
    pub fn download_release(&self, task: u64) -> Result<(), c_int> {
        let mut st = self.state();
        if !st.dl.held.remove(&task) {
            return Err(XXNET_E_UNKNOWN_TASK);
        }
        if let Some(th) = &st.dl.thread {
            let _ = th.tx.send(FilesMsg::Release { task });
        }
        Ok(())
    }

    /// A snapshot of the download counters.
    pub fn files_stats(&self) -> FileStats {
        let s = self.state().dl.stats.clone();
        let r = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        FileStats {
            blocks_fetched: r(&s.blocks_fetched),
            blocks_refetched: r(&s.blocks_refetched),
            blocks_served: r(&s.blocks_served),
            bytes_fetched: r(&s.bytes_fetched),
            bytes_served: r(&s.bytes_served),
            downloads_done: r(&s.downloads_done),
            evictions: r(&s.evictions),
            cache_bytes: r(&s.cache_bytes),
            served_files: r(&s.served_files),
        }
    }

    /// Test hook: the next `n` blocks this node serves arrive corrupt.
    #[doc(hidden)]
    pub fn inject_block_corruption(&self, n: u32) {
        let mut st = self.state();
        if let Ok(tx) = self.files_tx(&mut st) {
            let _ = tx.send(FilesMsg::CorruptNext(n));
        }
    }
}
