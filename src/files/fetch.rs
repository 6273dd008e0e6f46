//! One download's state machine, free of files, sockets and clocks.
//!
//! A [`Fetch`] is one content (md5 + size) being downloaded for one or more
//! requesters (host tasks). It opens the content on a source node, keeps up
//! to `window` block requests in flight, checks each block's granule CRCs
//! (a corrupt block is requested again, at most [`MAX_TRIES`] times),
//! moves to the next source (or waits [`RETRY`] and tries again) when a
//! source fails, and fails each requester at its own deadline. The worker
//! carries out its [`Act`]s and reports back (`on_result`, `written`,
//! `verified`).

use super::{wire, Key};
use crate::codes::*;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::os::raw::c_int;
use std::time::{Duration, Instant};

/// Requests of a corrupt block before the download fails with XXNET_E_CHECKSUM.
pub const MAX_TRIES: u8 = 4;
/// Pause before trying the sources again after all of them failed to answer.
pub const RETRY: Duration = Duration::from_millis(500);
/// Least time between two PROGRESS events of one task.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// What the worker must do for a fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Act {
    /// Make a call to `node` (bulk lane when `bulk`).
    Call {
        session: u64,
        node: String,
        body: Bytes,
        bulk: bool,
    },
    /// Write checked data at `offset`, then call `written(block, ..)`.
    Write {
        block: u32,
        offset: u64,
        data: Bytes,
    },
    /// A block arrived corrupt and was queued again (for the counters).
    Corrupt { block: u32 },
    /// Every block is written: check size and md5, then call `verified`.
    Verify,
    /// The cached data is wrong: delete the file and its index entry.
    Discard,
    /// For the host: task progress.
    Progress {
        task: u64,
        done: u64,
        total: u64,
        node: String,
    },
    /// For the host: task done.
    Done { task: u64, node: String },
    /// For the host: task failed.
    Failed {
        task: u64,
        code: c_int,
        done: u64,
        node: String,
    },
}

/// A host task waiting for this content.
#[derive(Clone, Debug)]
pub struct Requester {
    pub task: u64,
    pub node: String,
    pub deadline: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Needs an OPEN on the current source.
    Closed,
    /// OPEN sent.
    Opening(u64),
    /// Fetching blocks from the current source.
    Open,
    /// Every source failed to answer: try again at this time.
    Paused(Instant),
    /// All blocks written; the worker is verifying.
    Verifying,
    /// Done, failed, or no requester left.
    Finished,
}

/// A token bucket shared by every fetch of a worker (`download_rate_limit`).
#[derive(Clone, Debug)]
pub struct Bucket {
    rate: u64,
    tokens: f64,
    at: Option<Instant>,
}

impl Bucket {
    /// `rate` bytes per second (0: unlimited).
    pub fn new(rate: u64) -> Bucket {
        Bucket {
            rate,
            tokens: 0.0,
            at: None,
        }
    }

    fn refill(&mut self, now: Instant, burst: u64) {
        let at = *self.at.get_or_insert(now);
        let dt = now.saturating_duration_since(at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate as f64).min(burst.max(self.rate / 4) as f64);
        self.at = Some(now);
    }

    /// Takes `n` bytes if available.
    pub fn take(&mut self, n: u64, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        self.refill(now, n);
        if self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }

    /// When `n` bytes will be available.
    pub fn ready_at(&self, n: u64, now: Instant) -> Option<Instant> {
        if self.rate == 0 {
            return None;
        }
        let missing = (n as f64 - self.tokens).max(0.0);
        if missing == 0.0 {
            return Some(now);
        }
        // Rounded up, and a nanosecond more: at that instant `take(n)` succeeds.
        let ns = (missing * 1e9 / self.rate as f64).ceil() as u64;
        Some(now + Duration::from_nanos(ns.saturating_add(1)))
    }
}

/// Which blocks are in the cache.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Blocks {
    bits: Vec<u64>,
    count: u32,
    len: u32,
}

impl Blocks {
    /// `len` blocks, none done.
    pub fn new(len: u32) -> Blocks {
        Blocks {
            bits: vec![0; (len as usize).div_ceil(64)],
            count: 0,
            len,
        }
    }
    pub fn len(&self) -> u32 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn count(&self) -> u32 {
        self.count
    }
    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.bits[i as usize / 64] >> (i % 64) & 1 == 1
    }
    pub fn set(&mut self, i: u32) {
        if i < self.len && !self.get(i) {
            self.bits[i as usize / 64] |= 1 << (i % 64);
            self.count += 1;
        }
    }
    pub fn all(&self) -> bool {
        self.count == self.len
    }
    /// Runs of done blocks as half-open ranges.
    pub fn ranges(&self) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.len {
            if self.get(i) {
                let start = i;
                while i < self.len && self.get(i) {
                    i += 1;
                }
                out.push((start, i));
            } else {
                i += 1;
            }
        }
        out
    }
}

/// Geometry of a file cut in blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub size: u64,
    pub block: u32,
}

impl Layout {
    pub fn blocks(&self) -> u32 {
        self.size.div_ceil(self.block as u64) as u32
    }
    pub fn offset(&self, i: u32) -> u64 {
        i as u64 * self.block as u64
    }
    pub fn len(&self, i: u32) -> u32 {
        (self.size - self.offset(i)).min(self.block as u64) as u32
    }
    /// Bytes of the done blocks.
    pub fn bytes(&self, done: &Blocks) -> u64 {
        let mut n = done.count() as u64 * self.block as u64;
        if !done.is_empty() && done.get(done.len() - 1) {
            n -= self.block as u64 - self.len(done.len() - 1) as u64;
        }
        n
    }
}

/// A source's failure: the content is not there (try another source, never
/// this one again), or the node did not answer (try again later).
fn is_content_error(code: c_int) -> bool {
    matches!(
        code,
        XXNET_E_NO_CONTENT
            | XXNET_E_NO_SERVICE
            | XXNET_E_BAD_PATH
            | XXNET_E_SIZE_MISMATCH
            | XXNET_E_CHECKSUM
            | XXNET_E_INVALID_ARG
            | XXNET_E_AUTH
            | XXNET_E_DISK
    )
}

/// One content being downloaded.
#[derive(Debug)]
pub struct Fetch {
    pub key: Key,
    pub name: String,
    pub layout: Layout,
    pub done: Blocks,
    window: usize,
    phase: Phase,
    wanted: VecDeque<u32>,
    inflight: HashMap<u64, u32>,
    writing: usize,
    tries: HashMap<u32, u8>,
    requesters: Vec<Requester>,
    sources: Vec<String>,
    /// Content errors per source (a source that answered one is skipped).
    refused: Vec<Option<c_int>>,
    src: usize,
    /// Why the sources last failed to answer (reported at a deadline).
    trouble: Option<c_int>,
    /// The current source has no connection now (told by the worker).
    source_down: bool,
    progress_at: Option<Instant>,
    progress_bytes: u64,
}

impl Fetch {
    /// A fetch of `key` in `block`-byte blocks, `done` already in the cache.
    pub fn new(key: Key, name: String, block: u32, done: Blocks, window: usize) -> Fetch {
        let layout = Layout {
            size: key.size,
            block,
        };
        debug_assert_eq!(done.len(), layout.blocks());
        let wanted = (0..layout.blocks()).filter(|&i| !done.get(i)).collect();
        Fetch {
            key,
            name,
            layout,
            done,
            window: window.max(1),
            phase: Phase::Closed,
            wanted,
            inflight: HashMap::new(),
            writing: 0,
            tries: HashMap::new(),
            requesters: Vec::new(),
            sources: Vec::new(),
            refused: Vec::new(),
            src: 0,
            trouble: None,
            source_down: false,
            progress_at: None,
            progress_bytes: u64::MAX,
        }
    }

    /// Bytes in the cache.
    pub fn done_bytes(&self) -> u64 {
        self.layout.bytes(&self.done)
    }

    /// Adds a requester; its node becomes a further source.
    pub fn join(&mut self, r: Requester) {
        if !self.sources.contains(&r.node) {
            self.sources.push(r.node.clone());
            self.refused.push(None);
        }
        self.requesters.push(r);
    }

    /// Removes a requester without an event (the host reported it). True if it was one.
    pub fn leave(&mut self, task: u64) -> bool {
        let before = self.requesters.len();
        self.requesters.retain(|r| r.task != task);
        if self.requesters.is_empty() && self.phase != Phase::Finished {
            self.phase = Phase::Finished;
        }
        self.requesters.len() != before
    }

    /// True once nothing more will happen (finished, or nobody waits).
    pub fn finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// Whether a result for `session` is still wanted.
    pub fn owns(&self, session: u64) -> bool {
        self.phase != Phase::Finished
            && (self.phase == Phase::Opening(session) || self.inflight.contains_key(&session))
    }

    fn source(&self) -> &str {
        &self.sources[self.src]
    }

    /// The node currently asked, if any.
    pub fn current_source(&self) -> Option<&str> {
        self.sources.get(self.src).map(String::as_str)
    }

    /// Whether the current source has a connection: a deadline passing
    /// while it has none is reported as the node being down.
    pub fn set_source_down(&mut self, down: bool) {
        self.source_down = down;
    }

    /// Issues what can be issued at `now`: the OPEN, block requests, progress, deadlines.
    pub fn pump(
        &mut self,
        now: Instant,
        next_session: &mut impl FnMut() -> u64,
        bucket: &mut Bucket,
        out: &mut Vec<Act>,
    ) {
        self.expire(now, out);
        if self.phase == Phase::Finished {
            return;
        }
        if let Phase::Paused(until) = self.phase {
            if now < until {
                return;
            }
            self.src = self.first_usable().unwrap_or(0);
            self.phase = Phase::Closed;
        }
        if self.phase == Phase::Closed {
            let session = next_session();
            out.push(Act::Call {
                session,
                node: self.source().to_string(),
                body: wire::open(&self.key, &self.name),
                bulk: false,
            });
            self.phase = Phase::Opening(session);
            return;
        }
        if self.phase == Phase::Open {
            while self.inflight.len() < self.window {
                let Some(&block) = self.wanted.front() else {
                    break;
                };
                let len = self.layout.len(block);
                if !bucket.take(len as u64, now) {
                    break;
                }
                self.wanted.pop_front();
                let session = next_session();
                self.inflight.insert(session, block);
                out.push(Act::Call {
                    session,
                    node: self.source().to_string(),
                    body: wire::block(&self.key, self.layout.offset(block), len),
                    bulk: true,
                });
            }
            self.maybe_verify(out);
        }
        self.progress(now, out);
    }

    /// When `pump` has something to do next (deadline, retry, progress, rate limit).
    pub fn next_wakeup(&self, now: Instant, bucket: &Bucket) -> Option<Instant> {
        if self.phase == Phase::Finished {
            return None;
        }
        let mut t = self.requesters.iter().map(|r| r.deadline).min();
        let mut at = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        if let Phase::Paused(until) = self.phase {
            at(until);
        }
        if let Some(p) = self.progress_at {
            if self.done_bytes() != self.progress_bytes {
                at(p + PROGRESS_EVERY);
            }
        }
        if self.phase == Phase::Open && self.inflight.len() < self.window {
            if let Some(&b) = self.wanted.front() {
                if let Some(r) = bucket.ready_at(self.layout.len(b) as u64, now) {
                    at(r);
                }
            }
        }
        t
    }

    fn expire(&mut self, now: Instant, out: &mut Vec<Act>) {
        if !self.requesters.iter().any(|r| r.deadline <= now) {
            return;
        }
        let code = match (self.phase, self.trouble) {
            (_, t) if self.source_down => t.unwrap_or(XXNET_E_NODE_DOWN),
            (Phase::Paused(_) | Phase::Opening(_) | Phase::Closed, Some(c)) => c,
            _ => XXNET_E_TIMEOUT,
        };
        let done = self.done_bytes();
        self.requesters.retain(|r| {
            if r.deadline > now {
                return true;
            }
            out.push(Act::Failed {
                task: r.task,
                code,
                done,
                node: r.node.clone(),
            });
            false
        });
        if self.requesters.is_empty() {
            self.phase = Phase::Finished;
        }
    }

    fn progress(&mut self, now: Instant, out: &mut Vec<Act>) {
        let done = self.done_bytes();
        if done == self.progress_bytes || self.progress_at.is_some_and(|p| now < p + PROGRESS_EVERY)
        {
            return;
        }
        self.progress_at = Some(now);
        self.progress_bytes = done;
        for r in &self.requesters {
            out.push(Act::Progress {
                task: r.task,
                done,
                total: self.key.size,
                node: r.node.clone(),
            });
        }
    }

    fn first_usable(&self) -> Option<usize> {
        let n = self.sources.len();
        (0..n)
            .map(|i| (self.src + i) % n)
            .find(|&i| self.refused[i].is_none())
    }

    /// A call made for this fetch resolved.
    pub fn on_result(
        &mut self,
        session: u64,
        code: c_int,
        body: &Bytes,
        now: Instant,
        out: &mut Vec<Act>,
    ) {
        if self.phase == Phase::Finished {
            return;
        }
        if self.phase == Phase::Opening(session) {
            if code == XXNET_OK {
                self.phase = Phase::Open;
                self.trouble = None;
            } else {
                self.source_failed(code, now, out);
            }
            return;
        }
        let Some(block) = self.inflight.remove(&session) else {
            return;
        };
        if code != XXNET_OK {
            // Requeued with the rest of the window, in block order.
            self.inflight.insert(session, block);
            self.source_failed(code, now, out);
            return;
        }
        let len = self.layout.len(block);
        match wire::check_block(body, len) {
            Some(data) => {
                self.writing += 1;
                out.push(Act::Write {
                    block,
                    offset: self.layout.offset(block),
                    data,
                });
            }
            None => {
                let tries = self.tries.entry(block).or_insert(1);
                *tries += 1;
                if *tries > MAX_TRIES {
                    self.fail_all(XXNET_E_CHECKSUM, out);
                    return;
                }
                out.push(Act::Corrupt { block });
                self.wanted.push_front(block);
            }
        }
    }

    /// The current source failed with `code`: requeue what was in flight
    /// and move to the next source, or pause, or fail when no source has the content.
    fn source_failed(&mut self, code: c_int, now: Instant, out: &mut Vec<Act>) {
        let mut blocks: Vec<u32> = self.inflight.drain().map(|(_, b)| b).collect();
        blocks.sort_unstable();
        for b in blocks.into_iter().rev() {
            self.wanted.push_front(b);
        }
        let code = if code == XXNET_E_NO_SERVICE {
            XXNET_E_NO_CONTENT
        } else {
            code
        };
        if is_content_error(code) {
            self.refused[self.src] = Some(code);
            match self.first_usable() {
                Some(i) => {
                    self.src = i;
                    self.phase = Phase::Closed;
                }
                None => self.fail_all(code, out),
            }
            return;
        }
        self.trouble = Some(match code {
            XXNET_E_NODE_REMOVED | XXNET_E_UNKNOWN_NODE => XXNET_E_NODE_REMOVED,
            XXNET_E_NODE_UNREACHABLE => XXNET_E_NODE_UNREACHABLE,
            _ => XXNET_E_NODE_DOWN,
        });
        // Next source if any; after a full round, pause.
        let next = (self.src + 1..self.sources.len()).find(|&i| self.refused[i].is_none());
        match next {
            Some(i) => {
                self.src = i;
                self.phase = Phase::Closed;
            }
            None => {
                self.src = 0;
                self.phase = Phase::Paused(now + RETRY);
            }
        }
    }

    /// When a paused fetch tries its sources again.
    pub fn retry_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Paused(t) => Some(t),
            _ => None,
        }
    }

    /// The worker wrote (or failed to write) `block`.
    pub fn written(&mut self, block: u32, result: Result<(), c_int>, out: &mut Vec<Act>) {
        self.writing = self.writing.saturating_sub(1);
        match result {
            Ok(()) => {
                self.done.set(block);
                self.maybe_verify(out);
            }
            Err(code) => self.fail_all(code, out),
        }
    }

    fn maybe_verify(&mut self, out: &mut Vec<Act>) {
        if self.phase == Phase::Open && self.done.all() && self.writing == 0 {
            self.phase = Phase::Verifying;
            out.push(Act::Verify);
        }
    }

    /// The worker checked the finished file.
    pub fn verified(&mut self, result: Result<(), c_int>, out: &mut Vec<Act>) {
        if self.phase != Phase::Verifying {
            return;
        }
        match result {
            Ok(()) => {
                for r in self.requesters.drain(..) {
                    out.push(Act::Done {
                        task: r.task,
                        node: r.node,
                    });
                }
                self.phase = Phase::Finished;
            }
            Err(code) => {
                if matches!(code, XXNET_E_CHECKSUM | XXNET_E_SIZE_MISMATCH) {
                    out.push(Act::Discard);
                    self.done = Blocks::new(self.layout.blocks());
                }
                self.fail_all(code, out);
            }
        }
    }

    fn fail_all(&mut self, code: c_int, out: &mut Vec<Act>) {
        let done = self.done_bytes();
        for r in self.requesters.drain(..) {
            out.push(Act::Failed {
                task: r.task,
                code,
                done,
                node: r.node,
            });
        }
        self.inflight.clear();
        self.phase = Phase::Finished;
    }

    /// Fails every requester with `code` (shutdown, disk error outside a write).
    pub fn abort(&mut self, code: c_int, out: &mut Vec<Act>) {
        self.fail_all(code, out);
    }
}

#[cfg(test)]
mod tests;
