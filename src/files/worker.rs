//! The files thread: carries out the fetches' acts with real files, serves
//! blocks, hashes, and keeps the index on disk.
//!
//! One loop: take messages (host commands, network events routed by the
//! reactor), do at most one bounded piece of hashing, serve blocks while
//! the served backlog allows, pump every fetch, save the index when due,
//! then hand the host its events and the reactor its messages in one batch
//! each.

use super::fetch::{Act, Bucket, Fetch, Requester};
use super::index::{Entry, Index};
use super::serve::{self, Hint};
use super::wire::{self, Request, WireError};
use super::{FilesMsg, FilesStats, Key, FILES_ACCT, FILES_BIT, GRANULE, SERVICE};
use crate::bridge::{Account, Command, Dest, Event, Outgoing, Router};
use crate::codes::*;
use crate::proto::endpoint::CALL_BIT;
use crate::proto::rpc;
use bytes::{BufMut, Bytes, BytesMut};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use md5::{Digest, Md5};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::os::raw::c_int;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Served block bytes queued in the reactor above which serving waits.
const SERVE_BACKLOG: u64 = 32 << 20;
/// Deadline of one call the files thread makes.
const CALL_TIMEOUT_MS: u32 = 60_000;
/// Least time between two index saves while downloads run.
const SAVE_EVERY: Duration = Duration::from_millis(200);
/// Blocks already on disk hashed inline after a write (the rest at the end).
const CATCH_UP: u32 = 8;

/// Settings the files thread needs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub dir: Option<PathBuf>,
    pub quota: u64,
    pub block: u32,
    pub window: u32,
    pub rate: u64,
    pub max_message: usize,
}

/// Channels to the rest of the context.
pub struct Links {
    pub rx: Receiver<FilesMsg>,
    pub router: Router,
    pub events: Sender<Vec<Event>>,
    pub stats: Arc<FilesStats>,
}

/// A running download with its open file and whole-file md5 state.
struct Running {
    fetch: Fetch,
    file: File,
    md5: Md5,
    /// Blocks hashed into `md5` (a prefix).
    hashed: u32,
    /// Set while the final check runs in steps.
    verifying: bool,
    synced: bool,
}

/// A BLOCK request waiting for the served backlog to drain.
struct Parked {
    conn: u64,
    session: u64,
    lane: u8,
    req: Request,
}

struct Worker {
    cfg: Settings,
    links: Links,
    account: Arc<Account>,
    cache: Option<PathBuf>,
    cache_error: Option<c_int>,
    index: Index,
    index_dirty: bool,
    saved_at: Instant,
    running: HashMap<Key, Running>,
    sessions: HashMap<u64, Key>,
    next_session: u64,
    /// Finished tasks whose file the host holds.
    pins: HashMap<u64, Key>,
    nodes: HashMap<String, SocketAddr>,
    /// Peers (by address) whose connection is down.
    down: HashSet<SocketAddr>,
    bucket: Bucket,
    table: serve::Table,
    /// OPEN requests waiting for hashing to finish.
    opens: Vec<Parked>,
    blocks: VecDeque<Parked>,
    corrupt_next: u32,
    files: HashMap<PathBuf, File>,
    out_events: Vec<Event>,
    out_cmds: Vec<Command>,
    names: HashMap<String, Bytes>,
}

/// Runs the files thread until `Stop` or until every sender is gone. A
/// panic makes the context unusable (as one on the reactor thread does):
/// the host gets an XXNET_EVENT_ERROR and every later call XXNET_E_INTERNAL.
pub fn run(cfg: Settings, links: Links) {
    let common = links.router.common.clone();
    let events = links.events.clone();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_inner(cfg, links)));
    if let Err(payload) = outcome {
        let msg = crate::codes::panic_text(&*payload);
        log::error!(target: "xxnet::files", "files thread panicked: {msg}; the context is unusable");
        common.failed.store(true, Ordering::SeqCst);
        let _ = events.send(vec![Event {
            kind: XXNET_EVENT_ERROR,
            code: XXNET_E_INTERNAL,
            ..Event::default()
        }]);
    }
}

fn run_inner(cfg: Settings, links: Links) {
    let account = Arc::new(Account::default());
    let _ = links.router.route(Command::NewAccount {
        id: FILES_ACCT,
        account: account.clone(),
        dest: Dest::Addr(SocketAddr::from(([0, 0, 0, 0], 0))),
    });
    let mut w = Worker {
        bucket: Bucket::new(cfg.rate),
        cfg,
        links,
        account,
        cache: None,
        cache_error: None,
        index: Index::default(),
        index_dirty: false,
        saved_at: Instant::now(),
        running: HashMap::new(),
        sessions: HashMap::new(),
        next_session: 0,
        pins: HashMap::new(),
        nodes: HashMap::new(),
        down: HashSet::new(),
        table: serve::Table::default(),
        opens: Vec::new(),
        blocks: VecDeque::new(),
        corrupt_next: 0,
        files: HashMap::new(),
        out_events: Vec::new(),
        out_cmds: Vec::new(),
        names: HashMap::new(),
    };
    w.open_cache();
    w.main_loop();
    w.save_index();
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn disk_code(e: &std::io::Error) -> c_int {
    if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
        XXNET_E_NO_SPACE
    } else {
        XXNET_E_DISK
    }
}

/// Free bytes for an unprivileged writer on the file system of `dir`.
fn free_space(dir: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return u64::MAX;
    };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return u64::MAX;
        }
        (st.f_bavail as u64).saturating_mul(st.f_frsize as u64)
    }
}

/// Reserves `size` bytes for `file` (falls back to a sparse length where
/// the file system cannot preallocate).
fn preallocate(file: &File, size: u64) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    if size > 0 {
        // SAFETY: a valid open descriptor; the call only reads its arguments.
        let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, size as libc::off_t) };
        if r != 0 && r != libc::EOPNOTSUPP && r != libc::EINVAL {
            return Err(std::io::Error::from_raw_os_error(r));
        }
    }
    file.set_len(size)
}

impl Worker {
    // ----- the cache --------------------------------------------------------

    fn data_path(&self, key: &Key) -> PathBuf {
        self.cache
            .as_ref()
            .expect("cache open")
            .join("data")
            .join(key.file_name())
    }

    /// Creates the cache directories, loads the index, drops entries whose
    /// data file is missing or of the wrong size, and deletes stray files.
    fn open_cache(&mut self) {
        let Some(dir) = self.cfg.dir.clone() else {
            return;
        };
        if let Err(e) = std::fs::create_dir_all(dir.join("data")) {
            log::error!(target: "xxnet::files", "cannot create the download cache {}: {e}", dir.display());
            self.cache_error = Some(XXNET_E_DISK);
            return;
        }
        self.cache = Some(dir.clone());
        match std::fs::read_to_string(dir.join("index.json")) {
            Ok(text) => match Index::parse(&text) {
                Ok((idx, warnings)) => {
                    for w in warnings {
                        log::warn!(target: "xxnet::files", "{w}");
                    }
                    self.index = idx;
                }
                Err(m) => log::warn!(target: "xxnet::files", "{m}; starting with an empty cache"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!(target: "xxnet::files", "cannot read index.json: {e}"),
        }
        let keys: Vec<Key> = self.index.entries.keys().copied().collect();
        for k in keys {
            let ok = std::fs::metadata(self.data_path(&k)).is_ok_and(|m| m.len() == k.size);
            if !ok {
                log::warn!(target: "xxnet::files", "cache file {} missing or resized; dropped", k.file_name());
                self.index.entries.remove(&k);
                let _ = std::fs::remove_file(self.data_path(&k));
                self.index_dirty = true;
            }
        }
        let known: HashSet<String> = self.index.entries.keys().map(Key::file_name).collect();
        if let Ok(rd) = std::fs::read_dir(dir.join("data")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !known.contains(&name) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let _ = std::fs::remove_file(dir.join("index.json.tmp"));
        self.publish_cache_bytes();
        if self.index_dirty {
            self.save_index();
        }
    }

    fn publish_cache_bytes(&self) {
        self.links
            .stats
            .cache_bytes
            .store(self.index.used(), Ordering::Relaxed);
    }

    /// Syncs written data, then replaces the index (write, fsync, rename).
    fn save_index(&mut self) {
        let Some(dir) = self.cache.clone() else {
            return;
        };
        for r in self.running.values_mut() {
            if !r.synced {
                if let Err(e) = r.file.sync_data() {
                    log::warn!(target: "xxnet::files", "sync of {} failed: {e}", r.fetch.key.file_name());
                }
                r.synced = true;
            }
        }
        let tmp = dir.join("index.json.tmp");
        let res = (|| -> std::io::Result<()> {
            let f = File::create(&tmp)?;
            f.write_all_at(self.index.to_json().as_bytes(), 0)?;
            f.sync_all()?;
            std::fs::rename(&tmp, dir.join("index.json"))?;
            File::open(&dir)?.sync_all()
        })();
        if let Err(e) = res {
            log::error!(target: "xxnet::files", "cannot save the download index: {e}");
        }
        self.index_dirty = false;
        self.saved_at = Instant::now();
        self.publish_cache_bytes();
    }

    fn release_use(&mut self, key: &Key) {
        if let Some(e) = self.index.entries.get_mut(key) {
            e.users = e.users.saturating_sub(1);
        }
    }

    // ----- the loop ---------------------------------------------------------

    fn main_loop(&mut self) {
        loop {
            let now = Instant::now();
            let wait = self.wait_time(now);
            match self.links.rx.recv_timeout(wait) {
                Ok(FilesMsg::Stop) => return,
                Ok(m) => self.handle(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            for _ in 0..256 {
                match self.links.rx.try_recv() {
                    Ok(FilesMsg::Stop) => {
                        self.flush();
                        return;
                    }
                    Ok(m) => self.handle(m),
                    Err(_) => break,
                }
            }
            self.flush();
            self.background_step();
            self.serve_parked();
            self.pump();
            if self.index_dirty && self.saved_at.elapsed() >= SAVE_EVERY {
                self.save_index();
            }
            self.flush();
        }
    }

    fn wait_time(&self, now: Instant) -> Duration {
        if self.table.busy() || self.running.values().any(|r| r.verifying) {
            return Duration::ZERO;
        }
        let mut t = now + Duration::from_secs(1);
        if !self.blocks.is_empty() {
            t = t.min(now + Duration::from_millis(2));
        }
        if self.index_dirty {
            t = t.min(self.saved_at + SAVE_EVERY);
        }
        for r in self.running.values() {
            if let Some(w) = r.fetch.next_wakeup(now, &self.bucket) {
                t = t.min(w);
            }
        }
        t.saturating_duration_since(now)
    }

    fn flush(&mut self) {
        if !self.out_events.is_empty() {
            let _ = self.links.events.send(std::mem::take(&mut self.out_events));
        }
        if !self.out_cmds.is_empty() {
            for c in self.out_cmds.drain(..) {
                let _ = self.links.router.route(c);
            }
        }
    }

    fn handle(&mut self, m: FilesMsg) {
        match m {
            FilesMsg::Net(events) => {
                for ev in events {
                    self.on_net(ev);
                }
            }
            FilesMsg::Download {
                task,
                node,
                key,
                name,
                timeout_ms,
            } => self.start(task, node, key, name, timeout_ms),
            FilesMsg::Cancel { task } => {
                let keys: Vec<Key> = self.running.keys().copied().collect();
                for k in keys {
                    if self
                        .running
                        .get_mut(&k)
                        .is_some_and(|r| r.fetch.leave(task))
                    {
                        self.finish_if_done(&k);
                    }
                }
                self.unpin(task);
            }
            FilesMsg::Release { task } => self.unpin(task),
            // The host registered the service with the reactor after sending this.
            FilesMsg::Serve { dir } => self.table.add_dir(dir),
            FilesMsg::Nodes(list) => self.nodes = list.into_iter().collect(),
            FilesMsg::CorruptNext(n) => self.corrupt_next += n,
            FilesMsg::Stop => {}
        }
    }

    fn unpin(&mut self, task: u64) {
        if let Some(k) = self.pins.remove(&task) {
            self.release_use(&k);
        }
    }

    fn background_step(&mut self) {
        if self.table.busy() {
            self.table.step();
            self.links
                .stats
                .served_files
                .store(self.table.len() as u64, Ordering::Relaxed);
            if !self.table.busy() {
                let opens = std::mem::take(&mut self.opens);
                for p in opens {
                    self.answer_open(p);
                }
            }
            return;
        }
        let key = self
            .running
            .iter()
            .find(|(_, r)| r.verifying)
            .map(|(k, _)| *k);
        if let Some(k) = key {
            self.verify_step(&k);
        }
    }

    fn pump(&mut self) {
        let now = Instant::now();
        let keys: Vec<Key> = self.running.keys().copied().collect();
        let mut acts = Vec::new();
        for k in keys {
            let Some(r) = self.running.get_mut(&k) else {
                continue;
            };
            let down = r
                .fetch
                .current_source()
                .and_then(|n| self.nodes.get(n))
                .is_some_and(|a| self.down.contains(a));
            r.fetch.set_source_down(down);
            let (sessions, next) = (&mut self.sessions, &mut self.next_session);
            let mut alloc = || {
                *next += 1;
                let s = FILES_BIT | *next;
                sessions.insert(s, k);
                s
            };
            r.fetch.pump(now, &mut alloc, &mut self.bucket, &mut acts);
            self.run_acts(&k, &mut acts);
            self.finish_if_done(&k);
        }
    }

    // ----- downloads ----------------------------------------------------------

    fn event(
        &mut self,
        kind: u32,
        task: u64,
        code: c_int,
        done: u64,
        total: u64,
        node: &str,
    ) -> Event {
        let node = match self.names.get(node) {
            Some(b) => b.clone(),
            None => {
                let mut v = node.as_bytes().to_vec();
                v.push(0);
                let b = Bytes::from(v);
                self.names.insert(node.to_string(), b.clone());
                b
            }
        };
        Event {
            kind,
            code,
            id: task,
            count: done,
            total,
            node,
            ..Event::default()
        }
    }

    fn fail_now(&mut self, task: u64, code: c_int, key: &Key, node: &str) {
        let ev = self.event(XXNET_EVENT_DOWNLOAD_FAILED, task, code, 0, key.size, node);
        self.out_events.push(ev);
    }

    fn done_event(&mut self, task: u64, key: &Key, node: &str) {
        let mut ev = self.event(
            XXNET_EVENT_DOWNLOAD_DONE,
            task,
            XXNET_OK,
            key.size,
            key.size,
            node,
        );
        let path = self.data_path(key);
        let mut bytes = path.as_os_str().to_string_lossy().into_owned().into_bytes();
        let len = bytes.len();
        bytes.push(0);
        ev.data = Bytes::from(bytes).slice(..len);
        self.out_events.push(ev);
        self.pins.insert(task, *key);
        if let Some(e) = self.index.entries.get_mut(key) {
            e.users += 1;
        }
    }

    fn start(&mut self, task: u64, node: String, key: Key, name: String, timeout_ms: u64) {
        if self.cache.is_none() {
            let code = self.cache_error.unwrap_or(XXNET_E_INVALID_ARG);
            return self.fail_now(task, code, &key, &node);
        }
        let now = Instant::now();
        let deadline = now + Duration::from_millis(timeout_ms);
        let stamp = now_ms();
        if let Some(r) = self.running.get_mut(&key) {
            r.fetch.join(Requester {
                task,
                node,
                deadline,
            });
            if let Some(e) = self.index.entries.get_mut(&key) {
                e.last_used = stamp;
            }
            self.index_dirty = true;
            return;
        }
        let cached = self.index.entries.get(&key).is_some_and(|e| e.complete());
        if cached && !std::fs::metadata(self.data_path(&key)).is_ok_and(|m| m.len() == key.size) {
            log::warn!(target: "xxnet::files", "cached {} vanished; fetching it again", key.file_name());
            self.index.entries.remove(&key);
        }
        if let Some(e) = self.index.entries.get_mut(&key) {
            e.last_used = stamp;
            self.index_dirty = true;
            if e.complete() {
                log::debug!(target: "xxnet::files", "{} already cached", key.file_name());
                // Recorded last-use times survive a crash too.
                self.save_index();
                return self.done_event(task, &key, &node);
            }
        } else {
            let free = free_space(self.cache.as_ref().expect("cache open"));
            let evict = match self.index.plan_room(key.size, self.cfg.quota, free) {
                Ok(v) => v,
                Err(_) => return self.fail_now(task, XXNET_E_NO_SPACE, &key, &node),
            };
            for k in evict {
                log::info!(target: "xxnet::files", "evicting {} to make room", k.file_name());
                let _ = std::fs::remove_file(self.data_path(&k));
                self.index.entries.remove(&k);
                self.links.stats.evictions.fetch_add(1, Ordering::Relaxed);
            }
            let block = self.block_size();
            self.index
                .entries
                .insert(key, Entry::new(key, name.clone(), block, stamp));
            self.index_dirty = true;
        }
        let path = self.data_path(&key);
        let fresh = self.index.entries[&key].done.count() == 0;
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .and_then(|f| {
                if fresh {
                    preallocate(&f, key.size)?;
                }
                Ok(f)
            });
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                log::error!(target: "xxnet::files", "cannot create {}: {e}", path.display());
                let code = disk_code(&e);
                self.index.entries.remove(&key);
                let _ = std::fs::remove_file(&path);
                self.index_dirty = true;
                return self.fail_now(task, code, &key, &node);
            }
        };
        let e = self.index.entries.get_mut(&key).expect("inserted");
        e.users += 1;
        let mut fetch = Fetch::new(key, name, e.block, e.done.clone(), self.cfg.window as usize);
        fetch.join(Requester {
            task,
            node,
            deadline,
        });
        self.running.insert(
            key,
            Running {
                fetch,
                file,
                md5: Md5::new(),
                hashed: 0,
                verifying: false,
                synced: true,
            },
        );
        self.publish_cache_bytes();
    }

    /// Block size of a new download: the setting, within what one reply may carry.
    fn block_size(&self) -> u32 {
        let fits = self.cfg.max_message.saturating_sub(1024) as u64 * GRANULE as u64
            / (GRANULE as u64 + 4);
        let fits = (fits / GRANULE as u64 * GRANULE as u64).max(GRANULE as u64);
        (self.cfg.block as u64).min(fits) as u32
    }

    fn on_result(&mut self, ev: Event) {
        let Some(key) = self.sessions.remove(&ev.id) else {
            return;
        };
        let Some(r) = self.running.get_mut(&key) else {
            return;
        };
        if !r.fetch.owns(ev.id) {
            return;
        }
        let mut acts = Vec::new();
        r.fetch
            .on_result(ev.id, ev.code, &ev.data, Instant::now(), &mut acts);
        self.run_acts(&key, &mut acts);
        self.finish_if_done(&key);
    }

    fn run_acts(&mut self, key: &Key, acts: &mut Vec<Act>) {
        let mut i = 0;
        while i < acts.len() {
            let act = acts[i].clone();
            i += 1;
            match act {
                Act::Call {
                    session,
                    node,
                    body,
                    bulk,
                } => match self.nodes.get(&node) {
                    Some(&addr) => {
                        let mut head = BytesMut::with_capacity(rpc::MAX_HEADER + body.len());
                        rpc::put_call(&mut head, session, SERVICE);
                        head.put_slice(&body);
                        self.send(Outgoing {
                            dest: Dest::Addr(addr),
                            lane: if bulk { XXNET_LANE_BULK as u8 } else { 0 },
                            msg_id: 0,
                            data: head.freeze(),
                            track: session | CALL_BIT,
                            acct: FILES_ACCT,
                            ack_timeout_ms: CALL_TIMEOUT_MS,
                            flags: rpc::FLAG,
                        });
                    }
                    None => {
                        self.sessions.remove(&session);
                        if let Some(r) = self.running.get_mut(key) {
                            r.fetch.on_result(
                                session,
                                XXNET_E_UNKNOWN_NODE,
                                &Bytes::new(),
                                Instant::now(),
                                acts,
                            );
                        }
                    }
                },
                Act::Write {
                    block,
                    offset,
                    data,
                } => {
                    let Some(r) = self.running.get_mut(key) else {
                        continue;
                    };
                    let res = r.file.write_all_at(&data, offset).map_err(|e| {
                        log::error!(target: "xxnet::files", "write to {} failed: {e}", key.file_name());
                        disk_code(&e)
                    });
                    if res.is_ok() {
                        r.synced = false;
                        let s = &self.links.stats;
                        s.blocks_fetched.fetch_add(1, Ordering::Relaxed);
                        s.bytes_fetched
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                        if let Some(e) = self.index.entries.get_mut(key) {
                            e.done.set(block);
                        }
                        self.index_dirty = true;
                    }
                    r.fetch.written(block, res, acts);
                    if res.is_ok() {
                        Self::hash_inline(r, block, &data);
                    }
                }
                Act::Corrupt { block } => {
                    log::warn!(target: "xxnet::files", "block {block} of {} arrived corrupt; fetching it again", key.file_name());
                    self.links
                        .stats
                        .blocks_refetched
                        .fetch_add(1, Ordering::Relaxed);
                }
                Act::Verify => {
                    if let Some(r) = self.running.get_mut(key) {
                        r.verifying = true;
                    }
                }
                Act::Discard => {
                    log::warn!(target: "xxnet::files", "{} is wrong on disk; discarded", key.file_name());
                    let _ = std::fs::remove_file(self.data_path(key));
                    self.index.entries.remove(key);
                    self.index_dirty = true;
                }
                Act::Progress {
                    task,
                    done,
                    total,
                    node,
                } => {
                    let ev = self.event(
                        XXNET_EVENT_DOWNLOAD_PROGRESS,
                        task,
                        XXNET_OK,
                        done,
                        total,
                        &node,
                    );
                    self.out_events.push(ev);
                }
                Act::Done { task, node } => {
                    if let Some(e) = self.index.entries.get_mut(key) {
                        e.last_used = now_ms();
                    }
                    self.done_event(task, key, &node);
                }
                Act::Failed {
                    task,
                    code,
                    done,
                    node,
                } => {
                    let ev = self.event(
                        XXNET_EVENT_DOWNLOAD_FAILED,
                        task,
                        code,
                        done,
                        key.size,
                        &node,
                    );
                    self.out_events.push(ev);
                }
            }
        }
        acts.clear();
    }

    /// Advances the whole-file md5 over blocks written in order.
    fn hash_inline(r: &mut Running, block: u32, data: &Bytes) {
        if r.hashed != block {
            return;
        }
        r.md5.update(data);
        r.hashed += 1;
        let mut budget = CATCH_UP;
        let mut buf = Vec::new();
        while budget > 0 && r.hashed < r.fetch.done.len() && r.fetch.done.get(r.hashed) {
            let l = r.fetch.layout;
            buf.resize(l.len(r.hashed) as usize, 0);
            if r.file.read_exact_at(&mut buf, l.offset(r.hashed)).is_err() {
                return;
            }
            r.md5.update(&buf);
            r.hashed += 1;
            budget -= 1;
        }
    }

    /// One step of the final check: hash up to 4 MiB more, then compare.
    fn verify_step(&mut self, key: &Key) {
        let Some(r) = self.running.get_mut(key) else {
            return;
        };
        let l = r.fetch.layout;
        let mut budget = serve::STEP as u64;
        let mut buf = Vec::new();
        let mut result = None;
        while r.hashed < l.blocks() && budget > 0 {
            buf.resize(l.len(r.hashed) as usize, 0);
            if let Err(e) = r.file.read_exact_at(&mut buf, l.offset(r.hashed)) {
                log::error!(target: "xxnet::files", "read of {} failed: {e}", key.file_name());
                result = Some(Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    XXNET_E_SIZE_MISMATCH
                } else {
                    XXNET_E_DISK
                }));
                break;
            }
            r.md5.update(&buf);
            r.hashed += 1;
            budget = budget.saturating_sub(buf.len() as u64);
        }
        if result.is_none() && r.hashed == l.blocks() {
            let len = r.file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
            let md5: [u8; 16] = std::mem::take(&mut r.md5).finalize().into();
            result = Some(if len != key.size {
                Err(XXNET_E_SIZE_MISMATCH)
            } else if md5 != key.md5 {
                Err(XXNET_E_CHECKSUM)
            } else {
                Ok(())
            });
        }
        let Some(res) = result else {
            return;
        };
        r.verifying = false;
        if res.is_ok() {
            if let Err(e) = r.file.sync_data() {
                log::warn!(target: "xxnet::files", "sync of {} failed: {e}", key.file_name());
            }
            r.synced = true;
            self.links
                .stats
                .downloads_done
                .fetch_add(1, Ordering::Relaxed);
        }
        let mut acts = Vec::new();
        r.fetch.verified(res, &mut acts);
        if res.is_ok() {
            if let Some(e) = self.index.entries.get_mut(key) {
                e.verified = true;
            }
            self.index_dirty = true;
            self.save_index();
        }
        self.run_acts(key, &mut acts);
        self.finish_if_done(key);
    }

    /// Drops a fetch nobody waits for any more; its partial file stays for a resume.
    fn finish_if_done(&mut self, key: &Key) {
        if !self.running.get(key).is_some_and(|r| r.fetch.finished()) {
            return;
        }
        if let Some(r) = self.running.remove(key) {
            // Data first: the index saved below records these blocks.
            if !r.synced {
                if let Err(e) = r.file.sync_data() {
                    log::warn!(target: "xxnet::files", "sync of {} failed: {e}", key.file_name());
                }
            }
        }
        self.sessions.retain(|_, k| k != key);
        self.release_use(key);
        // Nothing downloaded (the source never had it, say): give the room back.
        let empty = self
            .index
            .entries
            .get(key)
            .is_some_and(|e| !e.complete() && e.done.count() == 0 && e.users == 0);
        if empty {
            self.index.entries.remove(key);
            let _ = std::fs::remove_file(self.data_path(key));
        }
        self.index_dirty = true;
        self.save_index();
    }

    // ----- network events -------------------------------------------------------

    fn on_net(&mut self, ev: Event) {
        match ev.kind {
            XXNET_EVENT_LINK_DOWN | XXNET_EVENT_DISCONNECTED | XXNET_EVENT_CONNECT_FAILED => {
                self.down.extend(ev.peer);
            }
            XXNET_EVENT_LINK_UP | XXNET_EVENT_CONNECTED => {
                if let Some(a) = ev.peer {
                    self.down.remove(&a);
                }
            }
            XXNET_EVENT_CALL_RESULT => self.on_result(ev),
            XXNET_EVENT_CALL_REQUEST if ev.id != 0 => {
                let p = |req| Parked {
                    conn: ev.conn,
                    session: ev.id,
                    lane: ev.lane,
                    req,
                };
                match wire::decode(&ev.data) {
                    Ok(req @ Request::Open { .. }) => self.answer_open(p(req)),
                    Ok(req @ Request::Block { .. }) => self.blocks.push_back(p(req)),
                    Err(WireError::BadName) => {
                        self.reply(ev.conn, ev.id, ev.lane, XXNET_E_BAD_PATH)
                    }
                    Err(WireError::Malformed) => {
                        self.reply(ev.conn, ev.id, ev.lane, XXNET_E_INVALID_ARG)
                    }
                }
            }
            _ => {}
        }
    }

    /// Queues a message for the reactor, charged to the files account (the
    /// reactor credits exactly its length back when it leaves the session).
    fn send(&mut self, m: Outgoing) {
        debug_assert_eq!(m.acct, FILES_ACCT);
        self.account
            .bytes
            .fetch_add(m.data.len() as u64, Ordering::Relaxed);
        self.out_cmds.push(Command::Send(m));
    }

    fn reply(&mut self, conn: u64, session: u64, lane: u8, code: c_int) {
        self.send(Outgoing {
            dest: Dest::Conn(conn),
            lane,
            msg_id: 0,
            data: rpc::reply(session, code),
            track: 0,
            acct: FILES_ACCT,
            ack_timeout_ms: 0,
            flags: rpc::FLAG,
        });
    }

    fn answer_open(&mut self, p: Parked) {
        let Request::Open { key, name } = &p.req else {
            return;
        };
        let code = if self.table.get(key).is_some() {
            XXNET_OK
        } else if self.table.busy() {
            // Hashing is under way: the answer may be in it.
            return self.opens.push(p);
        } else {
            match self.table.hint(key, name) {
                Hint::Missing => XXNET_E_NO_CONTENT,
                Hint::WrongSize => XXNET_E_SIZE_MISMATCH,
                Hint::WrongContent => XXNET_E_CHECKSUM,
                Hint::Hash(path) => {
                    self.table.hash_first(path);
                    return self.opens.push(p);
                }
            }
        };
        self.reply(p.conn, p.session, p.lane, code);
    }

    fn serve_parked(&mut self) {
        while let Some(p) = self.blocks.front() {
            if self.account.bytes.load(Ordering::Relaxed) > SERVE_BACKLOG {
                return;
            }
            let Request::Block { key, offset, len } = p.req else {
                self.blocks.pop_front();
                continue;
            };
            let p = self.blocks.pop_front().expect("front");
            let reply = self.read_block(&key, offset, len, p.session);
            let data = match reply {
                Ok(b) => b,
                Err(code) => rpc::reply(p.session, code),
            };
            self.send(Outgoing {
                dest: Dest::Conn(p.conn),
                lane: p.lane,
                msg_id: 0,
                data,
                track: 0,
                acct: FILES_ACCT,
                ack_timeout_ms: 0,
                flags: rpc::FLAG,
            });
        }
    }

    /// A whole REPLY envelope carrying block (`offset`, `len`) of `key`.
    fn read_block(
        &mut self,
        key: &Key,
        offset: u64,
        len: u32,
        session: u64,
    ) -> Result<Bytes, c_int> {
        let n = wire::granules(len);
        let total = 13 + n * 4 + len as usize;
        if total > self.cfg.max_message {
            return Err(XXNET_E_INVALID_ARG);
        }
        let served = self.table.get(key).ok_or(XXNET_E_NO_CONTENT)?;
        let first = (offset / GRANULE as u64) as usize;
        let crcs = served
            .crcs
            .get(first..first + n)
            .ok_or(XXNET_E_INVALID_ARG)?
            .to_vec();
        let path = served.path.clone();
        let mut b = BytesMut::with_capacity(total);
        rpc::put_reply(&mut b, session, XXNET_OK);
        for c in crcs {
            b.put_u32_le(c);
        }
        let head = b.len();
        b.resize(total, 0);
        if self.files.len() > 64 {
            self.files.clear();
        }
        let file = match self.files.get(&path) {
            Some(f) => f,
            None => {
                let f = File::open(&path).map_err(|_| XXNET_E_NO_CONTENT)?;
                self.files.entry(path.clone()).or_insert(f)
            }
        };
        if let Err(e) = file.read_exact_at(&mut b[head..], offset) {
            log::warn!(target: "xxnet::files", "read of {} failed: {e}", path.display());
            self.files.remove(&path);
            return Err(XXNET_E_DISK);
        }
        if self.corrupt_next > 0 {
            self.corrupt_next -= 1;
            let last = b.len() - 1;
            b[last] ^= 0x5a;
        }
        let s = &self.links.stats;
        s.blocks_served.fetch_add(1, Ordering::Relaxed);
        s.bytes_served.fetch_add(len as u64, Ordering::Relaxed);
        Ok(b.freeze())
    }
}
