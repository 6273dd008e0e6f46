//! Shared helpers for the integration tests: a safe wrapper over the C ABI
//! (`Node`), owned copies of events (`Ev`), and a hand-built encoder of the
//! wire protocol (docs/PROTOCOL.md) for raw-socket clients.
//!
//! Everything here is bounded: every wait has a deadline, every loop ends.

#![allow(dead_code)]

use std::ffi::{CStr, CString};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use xxnet::ffi::context::*;
use xxnet::ffi::types::{xxnet_config, xxnet_event, xxnet_send_opts, xxnet_stats};
use xxnet::*;

/// Default bound for any wait in the tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// An owned copy of one `xxnet_event`.
#[derive(Clone, Debug)]
pub struct Ev {
    pub kind: u32,
    pub code: i32,
    pub conn: u64,
    pub id: u64,
    pub count: u64,
    pub total: u64,
    pub msg_id: u32,
    pub lane: u32,
    pub peer_ip: String,
    pub peer_port: u16,
    pub payload: Vec<u8>,
    /// The connection's (or timer's) user data.
    pub user_data: u64,
    /// Node name (CALL_REQUEST, CALL_RESULT, NODE_CHANGED), or "".
    pub node: String,
    /// Service name (CALL_REQUEST), or "".
    pub service: String,
    /// When `poll` returned this event.
    pub at: Instant,
}

impl Ev {
    fn from_raw(e: &xxnet_event, at: Instant) -> Ev {
        let peer_ip = unsafe { CStr::from_ptr(e.peer_ip.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let payload = if e.data.is_null() || e.len == 0 {
            Vec::new()
        } else {
            unsafe { std::slice::from_raw_parts(e.data, e.len) }.to_vec()
        };
        Ev {
            kind: e.kind,
            code: e.code,
            conn: e.conn,
            id: e.id,
            count: e.count,
            total: e.total,
            msg_id: e.msg_id,
            lane: e.lane,
            peer_ip,
            peer_port: e.peer_port,
            payload,
            user_data: e.user_data,
            node: unsafe { CStr::from_ptr(e.node) }
                .to_string_lossy()
                .into_owned(),
            service: unsafe { CStr::from_ptr(e.service) }
                .to_string_lossy()
                .into_owned(),
            at,
        }
    }

    pub fn is_msg(&self) -> bool {
        self.kind == XXNET_EVENT_MESSAGE
    }
}

impl std::fmt::Display for Ev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} code={} ({}) conn={} id={} count={} total={} msg_id={} lane={} peer={}:{} len={} node={:?} service={:?}",
            kind_name(self.kind),
            self.code,
            strerror(self.code),
            self.conn,
            self.id,
            self.count,
            self.total,
            self.msg_id,
            self.lane,
            self.peer_ip,
            self.peer_port,
            self.payload.len(),
            self.node,
            self.service
        )
    }
}

pub fn kind_name(kind: u32) -> &'static str {
    match kind {
        XXNET_EVENT_NONE => "NONE",
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
        XXNET_EVENT_TIMER => "TIMER",
        XXNET_EVENT_CALL_REQUEST => "CALL_REQUEST",
        XXNET_EVENT_CALL_RESULT => "CALL_RESULT",
        XXNET_EVENT_NODE_CHANGED => "NODE_CHANGED",
        XXNET_EVENT_DOWNLOAD_PROGRESS => "DOWNLOAD_PROGRESS",
        XXNET_EVENT_DOWNLOAD_DONE => "DOWNLOAD_DONE",
        XXNET_EVENT_DOWNLOAD_FAILED => "DOWNLOAD_FAILED",
        _ => "UNKNOWN",
    }
}

pub fn strerror(code: i32) -> String {
    unsafe { CStr::from_ptr(xxnet_strerror(code)) }
        .to_string_lossy()
        .into_owned()
}

/// Prints the non-MESSAGE events of a log (and a count of messages), for failure diagnostics.
pub fn dump_log(log: &[Ev]) -> String {
    let mut s = String::new();
    let mut msgs = 0usize;
    for e in log {
        if e.is_msg() {
            msgs += 1;
        } else {
            s.push_str(&format!("  {e}\n"));
        }
    }
    s.push_str(&format!("  ({msgs} MESSAGE events)\n"));
    s
}

/// The default configuration, as the C ABI fills it, except that
/// `XXNET_TEST_IO_THREADS=N` in the environment sets `io_threads` (the test
/// script runs the integration tests again with several reactors).
pub fn default_config() -> xxnet_config {
    let mut cfg = std::mem::MaybeUninit::<xxnet_config>::uninit();
    xxnet_config_default(cfg.as_mut_ptr());
    let mut cfg = unsafe { cfg.assume_init() };
    if let Some(n) = test_io_threads() {
        cfg.io_threads = n;
    }
    cfg
}

/// `XXNET_TEST_IO_THREADS`, if set to a number.
pub fn test_io_threads() -> Option<u32> {
    std::env::var("XXNET_TEST_IO_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
}

/// One context, owned. Drop frees it. Use from one thread at a time.
pub struct Node {
    pub ctx: *mut xxnet_ctx,
    /// Every event polled so far, in order.
    pub log: Vec<Ev>,
    batch: Vec<xxnet_event>,
}

// A context may be moved to another thread; it is used from one thread at a time.
unsafe impl Send for Node {}

impl Node {
    pub fn new() -> Node {
        Node::with_config(&default_config())
    }

    pub fn with_config(cfg: &xxnet_config) -> Node {
        let ctx = xxnet_new(cfg);
        if ctx.is_null() {
            let why = unsafe { CStr::from_ptr(xxnet_last_error()) }.to_string_lossy();
            panic!("xxnet_new failed: {why}");
        }
        Node {
            ctx,
            log: Vec::new(),
            batch: vec![unsafe { std::mem::zeroed::<xxnet_event>() }; 64],
        }
    }

    /// Listens on `ip:port`; returns the bound port or the error code.
    pub fn try_listen(&self, ip: &str, port: u16) -> Result<u16, i32> {
        let ip = CString::new(ip).unwrap();
        let mut bound = 0u16;
        match xxnet_listen(self.ctx, ip.as_ptr(), port, &mut bound) {
            XXNET_OK => Ok(bound),
            code => Err(code),
        }
    }

    /// Listens on `ip:0`; returns the bound port (panics on failure).
    pub fn listen(&self, ip: &str) -> u16 {
        match self.try_listen(ip, 0) {
            Ok(p) => {
                assert_ne!(p, 0, "bound port is 0");
                p
            }
            Err(code) => panic!("xxnet_listen({ip}) failed: {code} {}", strerror(code)),
        }
    }

    /// xxnet_send_ex; returns the code.
    pub fn send(&self, ip: &str, port: u16, lane: u32, msg_id: u32, data: &[u8]) -> i32 {
        let ip = CString::new(ip).unwrap();
        let opts = xxnet_send_opts {
            lane,
            msg_id,
            flags: 0,
            ack_timeout_ms: 0,
        };
        xxnet_send_ex(
            self.ctx,
            ip.as_ptr(),
            port,
            data.as_ptr(),
            data.len(),
            &opts,
        )
    }

    /// xxnet_send_ex that must succeed.
    pub fn send_ok(&self, ip: &str, port: u16, lane: u32, msg_id: u32, data: &[u8]) {
        let rc = self.send(ip, port, lane, msg_id, data);
        assert_eq!(
            rc,
            XXNET_OK,
            "xxnet_send_ex to {ip}:{port} failed: {}",
            strerror(rc)
        );
    }

    /// xxnet_send_conn_ex; returns the code.
    pub fn send_conn(&self, conn: u64, lane: u32, msg_id: u32, data: &[u8]) -> i32 {
        let opts = xxnet_send_opts {
            lane,
            msg_id,
            flags: 0,
            ack_timeout_ms: 0,
        };
        xxnet_send_conn_ex(self.ctx, conn, data.as_ptr(), data.len(), &opts)
    }

    /// One xxnet_poll_recv; appends to the log; returns how many events came.
    pub fn poll(&mut self, timeout_ms: i32) -> usize {
        let n = xxnet_poll_recv(
            self.ctx,
            self.batch.as_mut_ptr(),
            self.batch.len(),
            timeout_ms,
        );
        assert!(n <= self.batch.len(), "poll returned {n} > max");
        let at = Instant::now();
        for e in &self.batch[..n] {
            self.log.push(Ev::from_raw(e, at));
        }
        n
    }

    /// Polls until `pred(log)` holds or `timeout` passes; returns whether it held.
    pub fn poll_until(&mut self, timeout: Duration, mut pred: impl FnMut(&[Ev]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.log) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let left = (deadline - now).as_millis().clamp(1, 20) as i32;
            self.poll(left);
        }
    }

    /// Polls for `dur`, collecting whatever comes.
    pub fn poll_for(&mut self, dur: Duration) {
        let deadline = Instant::now() + dur;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let left = (deadline - now).as_millis().clamp(1, 20) as i32;
            self.poll(left);
        }
        // Drain what is already there.
        for _ in 0..1000 {
            if self.poll(0) == 0 {
                break;
            }
        }
    }

    pub fn stats(&self) -> xxnet_stats {
        let mut s = xxnet_stats::default();
        let rc = xxnet_stats(self.ctx, &mut s);
        assert_eq!(rc, XXNET_OK, "xxnet_stats failed: {}", strerror(rc));
        s
    }

    /// Reads the stats until `pred` holds (counters are published once per
    /// reactor turn) or `timeout` passes; returns the last reading.
    pub fn stats_until(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&xxnet_stats) -> bool,
    ) -> xxnet_stats {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.stats();
            if pred(&s) || Instant::now() >= deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Events of one kind in the log.
    pub fn of_kind(&self, kind: u32) -> Vec<&Ev> {
        self.log.iter().filter(|e| e.kind == kind).collect()
    }

    pub fn messages(&self) -> impl Iterator<Item = &Ev> {
        self.log.iter().filter(|e| e.is_msg())
    }

    pub fn count_msgs(&self) -> usize {
        self.messages().count()
    }

    // ----- remote calls ------------------------------------------------

    /// xxnet_cluster_set; returns the code.
    pub fn cluster_set(&self, name: &str, addr: &str) -> i32 {
        let (n, a) = (CString::new(name).unwrap(), CString::new(addr).unwrap());
        xxnet::ffi::rpc::xxnet_cluster_set(self.ctx, n.as_ptr(), a.as_ptr())
    }

    /// xxnet_cluster_remove; returns the code.
    pub fn cluster_remove(&self, name: &str) -> i32 {
        let n = CString::new(name).unwrap();
        xxnet::ffi::rpc::xxnet_cluster_remove(self.ctx, n.as_ptr())
    }

    /// xxnet_cluster_load (reload); returns the code and xxnet_last_error().
    pub fn cluster_load(&self, path: &str) -> (i32, String) {
        let p = CString::new(path).unwrap();
        let rc = xxnet::ffi::rpc::xxnet_cluster_reload(self.ctx, p.as_ptr());
        let why = unsafe { CStr::from_ptr(xxnet_last_error()) }
            .to_string_lossy()
            .into_owned();
        (rc, why)
    }

    /// xxnet_service_register that must succeed.
    pub fn serve(&self, name: &str) {
        let n = CString::new(name).unwrap();
        let rc = xxnet::ffi::rpc::xxnet_service_register(self.ctx, n.as_ptr());
        assert_eq!(rc, XXNET_OK, "register {name}: {}", strerror(rc));
    }

    /// xxnet_call_ex: Ok(session) or Err(code).
    pub fn call(
        &self,
        node: &str,
        service: &str,
        data: &[u8],
        lane: u32,
        timeout_ms: u32,
    ) -> Result<u64, i32> {
        let (n, s) = (CString::new(node).unwrap(), CString::new(service).unwrap());
        let opts = xxnet::ffi::types::xxnet_call_opts {
            lane,
            timeout_ms,
            flags: 0,
        };
        let mut session = 0u64;
        match xxnet::ffi::rpc::xxnet_call_ex(
            self.ctx,
            n.as_ptr(),
            s.as_ptr(),
            data.as_ptr(),
            data.len(),
            &opts,
            &mut session,
        ) {
            XXNET_OK => {
                assert_ne!(session, 0, "a call's session is never 0");
                Ok(session)
            }
            code => Err(code),
        }
    }

    /// xxnet_cast_ex; returns the code.
    pub fn cast(&self, node: &str, service: &str, data: &[u8], lane: u32) -> i32 {
        let (n, s) = (CString::new(node).unwrap(), CString::new(service).unwrap());
        let opts = xxnet::ffi::types::xxnet_call_opts {
            lane,
            timeout_ms: 0,
            flags: 0,
        };
        xxnet::ffi::rpc::xxnet_cast_ex(
            self.ctx,
            n.as_ptr(),
            s.as_ptr(),
            data.as_ptr(),
            data.len(),
            &opts,
        )
    }

    /// xxnet_reply; returns the code.
    pub fn reply(&self, token: u64, code: i32, data: &[u8]) -> i32 {
        xxnet::ffi::rpc::xxnet_reply(self.ctx, token, code, data.as_ptr(), data.len())
    }

    /// xxnet_shutdown.
    pub fn shutdown(&self) {
        xxnet::ffi::rpc::xxnet_shutdown(self.ctx);
    }

    /// xxnet_files_serve; returns the code.
    pub fn files_serve(&self, dir: &std::path::Path) -> i32 {
        let d = CString::new(dir.to_str().unwrap()).unwrap();
        xxnet::ffi::files::xxnet_files_serve(self.ctx, d.as_ptr())
    }

    /// xxnet_download: Ok(task) or Err(code).
    pub fn download(&self, node: &str, md5: &str, name: &str, size: u64) -> Result<u64, i32> {
        let (n, m, f) = (
            CString::new(node).unwrap(),
            CString::new(md5).unwrap(),
            CString::new(name).unwrap(),
        );
        let mut task = 0u64;
        match xxnet::ffi::files::xxnet_download(
            self.ctx,
            n.as_ptr(),
            m.as_ptr(),
            f.as_ptr(),
            size,
            &mut task,
        ) {
            XXNET_OK => {
                assert_ne!(task, 0, "a task id is never 0");
                Ok(task)
            }
            code => Err(code),
        }
    }

    /// The DOWNLOAD_DONE or DOWNLOAD_FAILED of `task` in the log, if it came.
    pub fn download_end(&self, task: u64) -> Option<&Ev> {
        self.log.iter().find(|e| {
            e.id == task
                && (e.kind == XXNET_EVENT_DOWNLOAD_DONE || e.kind == XXNET_EVENT_DOWNLOAD_FAILED)
        })
    }

    /// Test hook: the next `n` blocks this node serves arrive corrupt.
    pub fn inject_corruption(&self, n: u32) {
        xxnet::ffi::context::context_of(self.ctx)
            .expect("live context")
            .inject_block_corruption(n);
    }

    /// xxnet_files_stats.
    pub fn files_stats(&self) -> xxnet::ffi::files::xxnet_file_stats {
        let mut s = xxnet::ffi::files::xxnet_file_stats::default();
        assert_eq!(
            xxnet::ffi::files::xxnet_files_stats(self.ctx, &mut s),
            XXNET_OK
        );
        s
    }

    /// The CALL_RESULT of `session` in the log, if it came.
    pub fn result_of(&self, session: u64) -> Option<&Ev> {
        self.log
            .iter()
            .find(|e| e.kind == XXNET_EVENT_CALL_RESULT && e.id == session)
    }

    /// Frees the context now (also what Drop does).
    pub fn free(&mut self) {
        if !self.ctx.is_null() {
            xxnet_free(self.ctx);
            self.ctx = std::ptr::null_mut();
        }
    }
}

impl Default for Node {
    fn default() -> Self {
        Node::new()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.free();
    }
}

pub fn count_msgs(log: &[Ev]) -> usize {
    log.iter().filter(|e| e.is_msg()).count()
}

/// A deterministic, non-periodic byte pattern.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let x = (i as u32).wrapping_add(seed).wrapping_mul(2_654_435_761);
            (x >> 24) as u8 ^ (i >> 20) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The wire protocol, built by hand from docs/PROTOCOL.md (independent of src/proto).

pub const PREFACE: [u8; 8] = *b"XXNT\x01\x00\x00\x00";
pub const T_HELLO: u8 = 1;
pub const T_HELLO_ACK: u8 = 2;
pub const T_DATA: u8 = 3;
pub const T_PING: u8 = 4;
pub const T_PONG: u8 = 5;
pub const T_GOAWAY: u8 = 6;
pub const T_ACK: u8 = 7;

/// A whole ACK frame: the last delivered sequence number per lane.
pub fn ack_frame(delivered: [u32; 4]) -> Vec<u8> {
    let body: Vec<u8> = delivered.iter().flat_map(|d| d.to_le_bytes()).collect();
    frame(T_ACK, 0, 0, 0, 0, &body)
}
pub const F_FIRST: u8 = 1;
pub const F_LAST: u8 = 2;

/// A 16-byte frame header (§2).
pub fn header(body_len: u32, kind: u8, flags: u8, lane: u8, msg_id: u32, seq: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(16);
    h.extend_from_slice(&body_len.to_le_bytes());
    h.push(kind);
    h.push(flags);
    h.push(lane);
    h.push(0);
    h.extend_from_slice(&msg_id.to_le_bytes());
    h.extend_from_slice(&seq.to_le_bytes());
    h
}

/// A whole frame: header plus body.
pub fn frame(kind: u8, flags: u8, lane: u8, msg_id: u32, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut f = header(body.len() as u32, kind, flags, lane, msg_id, seq);
    f.extend_from_slice(body);
    f
}

fn push_addr(body: &mut Vec<u8>, listen: Option<SocketAddr>) {
    match listen {
        None => {
            body.extend_from_slice(&0u16.to_le_bytes());
            body.push(0);
        }
        Some(a) => {
            body.extend_from_slice(&a.port().to_le_bytes());
            match a.ip() {
                IpAddr::V4(v4) => {
                    body.push(4);
                    body.extend_from_slice(&v4.octets());
                }
                IpAddr::V6(v6) => {
                    body.push(16);
                    body.extend_from_slice(&v6.octets());
                }
            }
        }
    }
}

/// Size of the session-sync block in HELLO and HELLO_ACK (send_id, recv_id, delivered[4]).
pub const SYNC_LEN: usize = 32;

/// A whole HELLO frame (§3).
pub fn hello_frame(instance: u64, nonce: u64, listen: Option<SocketAddr>) -> Vec<u8> {
    // Session sync all zero: a fresh session.
    hello_frame_with_sync(instance, nonce, listen, [0u8; SYNC_LEN])
}

/// A whole HELLO frame carrying a session block (§5): send_id, recv_id, delivered[4].
pub fn hello_frame_with_sync(
    instance: u64,
    nonce: u64,
    listen: Option<SocketAddr>,
    sync: [u8; SYNC_LEN],
) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&instance.to_le_bytes());
    body.extend_from_slice(&nonce.to_le_bytes());
    body.extend_from_slice(&sync);
    push_addr(&mut body, listen);
    frame(T_HELLO, 0, 0, 0, 0, &body)
}

/// A session block: `send_id`, `recv_id` and the delivered seq per lane.
pub fn sync_block(send_id: u64, recv_id: u64, delivered: [u32; 4]) -> [u8; SYNC_LEN] {
    let mut b = [0u8; SYNC_LEN];
    b[..8].copy_from_slice(&send_id.to_le_bytes());
    b[8..16].copy_from_slice(&recv_id.to_le_bytes());
    for (i, d) in delivered.iter().enumerate() {
        b[16 + 4 * i..20 + 4 * i].copy_from_slice(&d.to_le_bytes());
    }
    b
}

/// A whole HELLO_ACK frame (§3).
pub fn hello_ack_frame(
    status: u8,
    instance: u64,
    abandoned: u64,
    listen: Option<SocketAddr>,
) -> Vec<u8> {
    let mut body = vec![status];
    body.extend_from_slice(&instance.to_le_bytes());
    body.extend_from_slice(&abandoned.to_le_bytes());
    body.extend_from_slice(&[0u8; SYNC_LEN]); // session sync: a fresh session
    push_addr(&mut body, listen);
    frame(T_HELLO_ACK, 0, 0, 0, 0, &body)
}

/// A frame read off a raw socket.
#[derive(Debug)]
pub struct RawFrame {
    pub kind: u8,
    pub flags: u8,
    pub lane: u8,
    pub msg_id: u32,
    pub seq: u32,
    pub body: Vec<u8>,
}

/// A parsed HELLO body.
#[derive(Debug)]
pub struct HelloBody {
    pub instance: u64,
    pub nonce: u64,
    /// The sender's send_id (first field of its session block).
    pub send_id: u64,
    pub listen_port: u16,
    pub listen_ip: Vec<u8>,
}

impl HelloBody {
    pub fn parse(b: &[u8]) -> HelloBody {
        const S: usize = SYNC_LEN;
        assert!(b.len() >= 19 + S, "HELLO body too short: {b:?}");
        let ip_len = b[18 + S] as usize;
        assert!(
            matches!(ip_len, 0 | 4 | 16) && b.len() >= 19 + S + ip_len,
            "HELLO ip_len"
        );
        HelloBody {
            instance: u64::from_le_bytes(b[0..8].try_into().unwrap()),
            nonce: u64::from_le_bytes(b[8..16].try_into().unwrap()),
            send_id: u64::from_le_bytes(b[16..24].try_into().unwrap()),
            listen_port: u16::from_le_bytes(b[16 + S..18 + S].try_into().unwrap()),
            listen_ip: b[19 + S..19 + S + ip_len].to_vec(),
        }
    }
}

impl Ack {
    pub fn parse(b: &[u8]) -> Ack {
        const S: usize = SYNC_LEN;
        assert!(b.len() >= 20 + S, "HELLO_ACK body too short: {b:?}");
        let ip_len = b[19 + S] as usize;
        assert!(
            matches!(ip_len, 0 | 4 | 16) && b.len() >= 20 + S + ip_len,
            "HELLO_ACK ip_len"
        );
        Ack {
            status: b[0],
            instance: u64::from_le_bytes(b[1..9].try_into().unwrap()),
            abandoned_nonce: u64::from_le_bytes(b[9..17].try_into().unwrap()),
            listen_port: u16::from_le_bytes(b[17 + S..19 + S].try_into().unwrap()),
            listen_ip: b[20 + S..20 + S + ip_len].to_vec(),
        }
    }
}

/// A random-enough instance id for a raw client.
pub fn random_instance() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish() | 1
}

/// A parsed HELLO_ACK.
#[derive(Debug)]
pub struct Ack {
    pub status: u8,
    pub instance: u64,
    pub abandoned_nonce: u64,
    pub listen_port: u16,
    pub listen_ip: Vec<u8>,
}

/// A raw TCP client speaking the wire protocol by hand.
pub struct Raw {
    pub s: TcpStream,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let s = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(5),
        )
        .expect("raw connect");
        s.set_nodelay(true).unwrap();
        Raw { s }
    }

    /// Connects to any address.
    pub fn connect_to(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("raw connect");
        s.set_nodelay(true).unwrap();
        Raw { s }
    }

    /// Accepts one connection on `l` within `timeout`.
    pub fn accept(l: &std::net::TcpListener, timeout: Duration) -> Raw {
        l.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            match l.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_nodelay(true).unwrap();
                    return Raw { s };
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no connection to accept");
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    pub fn local_port(&self) -> u16 {
        self.s.local_addr().unwrap().port()
    }

    pub fn write(&mut self, b: &[u8]) {
        self.s.write_all(b).expect("raw write");
        self.s.flush().unwrap();
    }

    /// Reads exactly `n` bytes within `timeout`.
    pub fn read_exact_within(&mut self, n: usize, timeout: Duration) -> std::io::Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; n];
        let mut got = 0;
        while got < n {
            let now = Instant::now();
            if now >= deadline {
                return Err(ErrorKind::TimedOut.into());
            }
            self.s.set_read_timeout(Some(deadline - now)).unwrap();
            match self.s.read(&mut buf[got..]) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(k) => got += k,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(buf)
    }

    /// Reads and checks the peer's 8-byte preface.
    pub fn read_preface(&mut self) {
        let pre = self
            .read_exact_within(8, Duration::from_secs(5))
            .expect("peer preface");
        assert_eq!(pre, PREFACE, "peer preface");
    }

    /// Reads one whole frame within `timeout`.
    pub fn read_frame(&mut self, timeout: Duration) -> std::io::Result<RawFrame> {
        let h = self.read_exact_within(16, timeout)?;
        let body_len = u32::from_le_bytes(h[0..4].try_into().unwrap()) as usize;
        assert!(body_len <= (1 << 20) + 64, "frame body_len {body_len}");
        assert_eq!(h[7], 0, "reserved header byte");
        let body = self.read_exact_within(body_len, timeout)?;
        Ok(RawFrame {
            kind: h[4],
            flags: h[5],
            lane: h[6],
            msg_id: u32::from_le_bytes(h[8..12].try_into().unwrap()),
            seq: u32::from_le_bytes(h[12..16].try_into().unwrap()),
            body,
        })
    }

    /// Reads frames until one of `kind` comes (skipping PING/PONG).
    pub fn read_frame_of(&mut self, kind: u8, timeout: Duration) -> RawFrame {
        for _ in 0..1000 {
            let f = self
                .read_frame(timeout)
                .unwrap_or_else(|e| panic!("waiting for frame type {kind}: {e}"));
            if f.kind == kind {
                return f;
            }
            assert!(
                f.kind == T_PING || f.kind == T_PONG,
                "waiting for frame type {kind}, got {f:?}"
            );
        }
        panic!("no frame of type {kind}");
    }

    /// Sends preface + HELLO (`nonce`, announcing `listen`), reads the acceptor's preface and HELLO_ACK.
    pub fn handshake_as(&mut self, instance: u64, nonce: u64, listen: Option<SocketAddr>) -> Ack {
        self.handshake_with_sync(instance, nonce, listen, [0u8; SYNC_LEN])
    }

    /// `handshake_as` with a session block in the HELLO.
    pub fn handshake_with_sync(
        &mut self,
        instance: u64,
        nonce: u64,
        listen: Option<SocketAddr>,
        sync: [u8; SYNC_LEN],
    ) -> Ack {
        let mut out = PREFACE.to_vec();
        out.extend(hello_frame_with_sync(instance, nonce, listen, sync));
        self.write(&out);
        self.read_preface();
        let f = self.read_frame(Duration::from_secs(5)).expect("HELLO_ACK");
        assert_eq!(f.kind, T_HELLO_ACK, "first frame from the acceptor: {f:?}");
        Ack::parse(&f.body)
    }

    /// Sends preface + HELLO (listening nowhere), reads the acceptor's preface and HELLO_ACK.
    pub fn handshake(&mut self) -> Ack {
        self.handshake_as(random_instance(), 1, None)
    }

    /// Waits until the peer closes: returns the time it took, or None if still
    /// open after `timeout`. Data the peer sends meanwhile (e.g. GOAWAY) is discarded.
    pub fn wait_closed(&mut self, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            self.s.set_read_timeout(Some(deadline - now)).unwrap();
            match self.s.read(&mut buf) {
                Ok(0) => return Some(start.elapsed()),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Some(start.elapsed()),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Process-wide resource counts (Linux).

pub fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map(|d| d.count()).unwrap_or(0)
}

pub fn fd_count() -> usize {
    count_dir("/proc/self/fd")
}

pub fn thread_count() -> usize {
    count_dir("/proc/self/task")
}

// ---------------------------------------------------------------------------
// Session helpers (tests/it_session_*.rs): names of every event kind,
// need-ack and conn_info wrappers, tagged payloads, latency figures, a TCP
// proxy that cuts its connections, and child peer processes.

/// Name of any event kind (including the session kinds `kind_name` predates).
pub fn event_name(kind: u32) -> &'static str {
    match kind {
        XXNET_EVENT_DELIVERED => "DELIVERED",
        XXNET_EVENT_EXPIRED => "EXPIRED",
        XXNET_EVENT_WRITABLE => "WRITABLE",
        XXNET_EVENT_LINK_DOWN => "LINK_DOWN",
        XXNET_EVENT_LINK_UP => "LINK_UP",
        k => kind_name(k),
    }
}

/// One event as text, with every kind named.
pub fn ev_str(e: &Ev) -> String {
    format!(
        "{} code={} ({}) conn={} id={} count={} total={} msg_id={} lane={} peer={}:{} len={}",
        event_name(e.kind),
        e.code,
        strerror(e.code),
        e.conn,
        e.id,
        e.count,
        e.total,
        e.msg_id,
        e.lane,
        e.peer_ip,
        e.peer_port,
        e.payload.len()
    )
}

/// Like `dump_log`, naming every kind; at most `max` lines (then a count of the rest).
pub fn dump_events(log: &[Ev], max: usize) -> String {
    let mut s = String::new();
    let (mut msgs, mut shown, mut hidden) = (0usize, 0usize, 0usize);
    for e in log {
        if e.is_msg() {
            msgs += 1;
        } else if shown < max {
            shown += 1;
            s.push_str(&format!("  {}\n", ev_str(e)));
        } else {
            hidden += 1;
        }
    }
    if hidden > 0 {
        s.push_str(&format!("  ... {hidden} more events\n"));
    }
    s.push_str(&format!("  ({msgs} MESSAGE events)\n"));
    s
}

/// The IP text of a peer info.
pub fn info_ip(info: &xxnet::ffi::types::xxnet_peer_info) -> String {
    unsafe { CStr::from_ptr(info.peer_ip.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Name of a session state.
pub fn state_name(state: u32) -> &'static str {
    match state {
        XXNET_PEER_CONNECTING => "CONNECTING",
        XXNET_PEER_CONNECTED => "CONNECTED",
        XXNET_PEER_RECONNECTING => "RECONNECTING",
        _ => "UNKNOWN",
    }
}

impl Node {
    /// xxnet_send_need_ack by address; the id or the error code.
    pub fn send_need_ack(
        &self,
        ip: &str,
        port: u16,
        lane: u32,
        msg_id: u32,
        data: &[u8],
        ack_timeout_ms: u32,
    ) -> Result<u64, i32> {
        let ip = CString::new(ip).unwrap();
        let opts = xxnet_send_opts {
            lane,
            msg_id,
            flags: 0,
            ack_timeout_ms,
        };
        let mut id = 0u64;
        match xxnet_send_need_ack(
            self.ctx,
            ip.as_ptr(),
            port,
            data.as_ptr(),
            data.len(),
            &opts,
            &mut id,
        ) {
            XXNET_OK => Ok(id),
            code => Err(code),
        }
    }

    /// xxnet_send_conn_need_ack; the id or the error code.
    pub fn send_conn_need_ack(
        &self,
        conn: u64,
        lane: u32,
        msg_id: u32,
        data: &[u8],
        ack_timeout_ms: u32,
    ) -> Result<u64, i32> {
        let opts = xxnet_send_opts {
            lane,
            msg_id,
            flags: 0,
            ack_timeout_ms,
        };
        let mut id = 0u64;
        match xxnet_send_conn_need_ack(self.ctx, conn, data.as_ptr(), data.len(), &opts, &mut id) {
            XXNET_OK => Ok(id),
            code => Err(code),
        }
    }

    /// xxnet_conn_info; the info or the error code.
    pub fn conn_info(&self, conn: u64) -> Result<xxnet::ffi::types::xxnet_peer_info, i32> {
        let mut info = std::mem::MaybeUninit::<xxnet::ffi::types::xxnet_peer_info>::zeroed();
        match xxnet_conn_info(self.ctx, conn, info.as_mut_ptr()) {
            XXNET_OK => Ok(unsafe { info.assume_init() }),
            code => Err(code),
        }
    }

    /// Reads xxnet_conn_info until `pred` holds (polling meanwhile, so
    /// events are collected) or `timeout` passes; returns the last reading.
    pub fn info_until(
        &mut self,
        conn: u64,
        timeout: Duration,
        mut pred: impl FnMut(&xxnet::ffi::types::xxnet_peer_info) -> bool,
    ) -> Result<xxnet::ffi::types::xxnet_peer_info, i32> {
        let deadline = Instant::now() + timeout;
        loop {
            let info = self.conn_info(conn);
            match &info {
                Ok(i) if pred(i) => return info,
                _ if Instant::now() >= deadline => return info,
                _ => {}
            }
            self.poll(2);
        }
    }

    /// The conn id of the first CONNECTED event in the log.
    pub fn first_conn(&self) -> Option<u64> {
        self.log
            .iter()
            .find(|e| e.kind == XXNET_EVENT_CONNECTED)
            .map(|e| e.conn)
    }
}

/// A payload that names its lane and per-lane index, then a pattern: a
/// receiver can check it was not mixed up with another message.
pub fn tagged_payload(lane: u32, idx: u32, len: usize) -> Vec<u8> {
    let mut v = pattern(len.max(8), idx.wrapping_mul(7).wrapping_add(lane));
    v[0..4].copy_from_slice(&lane.to_le_bytes());
    v[4..8].copy_from_slice(&idx.to_le_bytes());
    v.truncate(len.max(8));
    v
}

/// Checks a payload made by `tagged_payload`.
pub fn tagged_payload_ok(lane: u32, idx: u32, data: &[u8]) -> bool {
    data.len() >= 8 && data == tagged_payload(lane, idx, data.len()).as_slice()
}

/// A small deterministic PRNG (xorshift64*), for reproducible fault schedules.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0 | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in lo..=hi.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// p50, p99 and max of a set of durations (zeros when empty).
pub fn latency_figures(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    if samples.is_empty() {
        return (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    }
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    (at(0.50), at(0.99), samples[samples.len() - 1])
}

/// Makes the next close of `fd` send a RST (SO_LINGER with a zero timeout).
pub fn set_linger_zero(fd: std::os::fd::RawFd) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt(SO_LINGER)");
}

// ----- a TCP proxy that cuts its connections ---------------------------------

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};

struct ProxyPair {
    client: TcpStream,
    server: TcpStream,
    /// The pumps must stop now (a reset cut, or a broken pair).
    cut: AtomicBool,
    /// An orderly cut: both sides got a FIN; the pumps read and drop what
    /// comes until each side closes too (closing with unread bytes would
    /// turn the orderly close into a reset).
    draining: AtomicBool,
    /// The pair was cut (once).
    done: AtomicBool,
    /// Bytes each direction (client→server, server→client) forwards before
    /// the pair is cut at exactly that byte (None: no limit).
    budget: [Option<u64>; 2],
    /// A budget cut resets (else FIN).
    budget_rst: bool,
}

/// Settings of byte-exact cuts: a PRNG, the budget range, the share of resets.
struct ByteCuts {
    rng: Rng,
    lo: u64,
    hi: u64,
    rst_percent: u64,
}

#[derive(Default)]
struct ProxyShared {
    stop: AtomicBool,
    accepting: AtomicBool,
    listening: AtomicBool,
    cutting: AtomicBool,
    /// Read and drop client→server bytes instead of forwarding them.
    blackhole: AtomicBool,
    pairs: Mutex<Vec<Arc<ProxyPair>>>,
    byte_cuts: Mutex<Option<ByteCuts>>,
    pumps: Mutex<Vec<std::thread::JoinHandle<()>>>,
    accepted: AtomicU64,
    cuts: AtomicU64,
    cut_pairs: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// A TCP proxy on 127.0.0.1 in front of `upstream`: one thread per
/// direction per connection (blocking sockets with 5 ms timeouts, so every
/// thread notices a cut or the end within a few ms). It can cut every
/// connection (FIN or RST), stop accepting (connections refused) and resume
/// on the same port, or drop client→server bytes (a black hole).
pub struct Proxy {
    pub addr: SocketAddr,
    pub upstream: SocketAddr,
    shared: Arc<ProxyShared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(ProxyShared::default());
        shared.accepting.store(true, AtomicOrdering::SeqCst);
        shared.listening.store(true, AtomicOrdering::SeqCst);
        let sh = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name("proxy-accept".into())
            .spawn(move || Proxy::accept_loop(sh, Some(listener), addr, upstream))
            .unwrap();
        Proxy {
            addr,
            upstream,
            shared,
            threads: vec![acceptor],
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    fn accept_loop(
        sh: Arc<ProxyShared>,
        mut listener: Option<std::net::TcpListener>,
        addr: SocketAddr,
        upstream: SocketAddr,
    ) {
        if let Some(l) = &listener {
            l.set_nonblocking(true).unwrap();
        }
        while !sh.stop.load(AtomicOrdering::SeqCst) {
            if !sh.accepting.load(AtomicOrdering::SeqCst) {
                listener = None;
                sh.listening.store(false, AtomicOrdering::SeqCst);
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let Some(l) = &listener else {
                // Resume on the same port (std sets SO_REUSEADDR).
                match std::net::TcpListener::bind(addr) {
                    Ok(l) => {
                        l.set_nonblocking(true).unwrap();
                        listener = Some(l);
                        sh.listening.store(true, AtomicOrdering::SeqCst);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
                continue;
            };
            match l.accept() {
                Ok((client, _)) => {
                    sh.accepted.fetch_add(1, AtomicOrdering::SeqCst);
                    let server = match TcpStream::connect_timeout(&upstream, Duration::from_secs(2))
                    {
                        Ok(s) => s,
                        Err(_) => continue, // drops the client: it sees a close
                    };
                    for s in [&client, &server] {
                        s.set_nonblocking(false).unwrap();
                        s.set_nodelay(true).unwrap();
                        s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
                        s.set_write_timeout(Some(Duration::from_millis(5))).unwrap();
                    }
                    let (budget, budget_rst) = match sh.byte_cuts.lock().unwrap().as_mut() {
                        Some(c) => {
                            let (lo, hi) = (c.lo, c.hi);
                            (
                                [Some(c.rng.range(lo, hi)), Some(c.rng.range(lo, hi))],
                                c.rng.range(0, 99) < c.rst_percent,
                            )
                        }
                        None => ([None, None], false),
                    };
                    let pair = Arc::new(ProxyPair {
                        client,
                        server,
                        cut: AtomicBool::new(false),
                        draining: AtomicBool::new(false),
                        done: AtomicBool::new(false),
                        budget,
                        budget_rst,
                    });
                    sh.pairs.lock().unwrap().push(pair.clone());
                    let mut pumps = sh.pumps.lock().unwrap();
                    pumps.retain(|h| !h.is_finished());
                    for up in [true, false] {
                        let (p, s) = (pair.clone(), sh.clone());
                        pumps.push(
                            std::thread::Builder::new()
                                .name("proxy-pump".into())
                                .spawn(move || Proxy::pump(s, p, up))
                                .unwrap(),
                        );
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }

    /// Copies one direction until EOF, an error, a cut or the end.
    fn pump(sh: Arc<ProxyShared>, pair: Arc<ProxyPair>, up: bool) {
        let (mut src, mut dst) = if up {
            (&pair.client, &pair.server)
        } else {
            (&pair.server, &pair.client)
        };
        let counter = if up { &sh.bytes_up } else { &sh.bytes_down };
        let mut budget = pair.budget[if up { 0 } else { 1 }];
        let mut buf = vec![0u8; 64 * 1024];
        let mut drain_since: Option<Instant> = None;
        let alive =
            || !pair.cut.load(AtomicOrdering::SeqCst) && !sh.stop.load(AtomicOrdering::SeqCst);
        'outer: while alive() {
            if pair.draining.load(AtomicOrdering::SeqCst) {
                // Bounded: a side that never closes is dropped after 2 s.
                if drain_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(2) {
                    return;
                }
            }
            let n = match src.read(&mut buf) {
                Ok(0) => {
                    // Orderly close: pass the FIN on, keep the other direction.
                    let _ = dst.shutdown(std::net::Shutdown::Write);
                    return;
                }
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(_) => break,
            };
            if pair.draining.load(AtomicOrdering::SeqCst)
                || (up && sh.blackhole.load(AtomicOrdering::SeqCst))
            {
                continue;
            }
            // A byte budget cuts the pair right after its last byte.
            let (n, cut_after) = match budget {
                Some(b) if n as u64 >= b => (b as usize, true),
                Some(b) => {
                    budget = Some(b - n as u64);
                    (n, false)
                }
                None => (n, false),
            };
            let mut off = 0;
            while off < n {
                if !alive() {
                    break 'outer;
                }
                match dst.write(&buf[off..n]) {
                    Ok(0) => break 'outer,
                    Ok(k) => {
                        off += k;
                        counter.fetch_add(k as u64, AtomicOrdering::Relaxed);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                        ) => {}
                    Err(_) => break 'outer,
                }
            }
            if cut_after {
                budget = None;
                Proxy::cut_one(&sh, &pair, pair.budget_rst);
            }
        }
        // A broken or reset pair: end the other direction too.
        pair.cut.store(true, AtomicOrdering::SeqCst);
    }

    fn cut_one(sh: &ProxyShared, pair: &Arc<ProxyPair>, rst: bool) {
        sh.pairs.lock().unwrap().retain(|p| !Arc::ptr_eq(p, pair));
        if !pair.done.swap(true, AtomicOrdering::SeqCst) {
            Proxy::cut_now(pair, rst);
            sh.cut_pairs.fetch_add(1, AtomicOrdering::SeqCst);
        }
    }

    fn cut_now(p: &ProxyPair, rst: bool) {
        if rst {
            // The sockets close (RST) when the pumps drop the last reference.
            set_linger_zero(p.client.as_raw_fd());
            set_linger_zero(p.server.as_raw_fd());
            p.cut.store(true, AtomicOrdering::SeqCst);
        } else {
            // FIN to both sides at once; the pumps drain until both close.
            p.draining.store(true, AtomicOrdering::SeqCst);
            let _ = p.client.shutdown(std::net::Shutdown::Write);
            let _ = p.server.shutdown(std::net::Shutdown::Write);
        }
    }

    /// Also cuts each new connection after a random number of bytes
    /// (`lo..=hi`, drawn per direction) at exactly that byte, so cuts fall
    /// in the middle of frames; `rst_percent` % of those cuts reset.
    pub fn cut_at_random_bytes(&self, seed: u64, lo: u64, hi: u64, rst_percent: u64) {
        *self.shared.byte_cuts.lock().unwrap() = Some(ByteCuts {
            rng: Rng(seed),
            lo,
            hi,
            rst_percent,
        });
    }

    /// Stops the byte-budget cuts of new connections.
    pub fn stop_byte_cuts(&self) {
        *self.shared.byte_cuts.lock().unwrap() = None;
    }

    /// Cuts every connection now: with `rst`, both sockets are reset (RST);
    /// else both sides get a FIN at once (an orderly close at whatever byte
    /// the stream was at) and what they send after is dropped. Returns how
    /// many pairs were cut.
    pub fn cut_all(&self, rst: bool) -> usize {
        Proxy::cut_pairs(&self.shared, rst)
    }

    fn cut_pairs(sh: &ProxyShared, rst: bool) -> usize {
        let pairs: Vec<Arc<ProxyPair>> = std::mem::take(&mut *sh.pairs.lock().unwrap());
        let mut n = 0;
        for p in &pairs {
            if !p.done.swap(true, AtomicOrdering::SeqCst) {
                Proxy::cut_now(p, rst);
                n += 1;
            }
        }
        sh.cuts.fetch_add(1, AtomicOrdering::SeqCst);
        sh.cut_pairs.fetch_add(n as u64, AtomicOrdering::SeqCst);
        n
    }

    /// Starts cutting every connection at random intervals of `min_ms..=max_ms`
    /// (a PRNG seeded with `seed`), resetting them with probability `rst_percent` %.
    pub fn start_cutting(&mut self, seed: u64, min_ms: u64, max_ms: u64, rst_percent: u64) {
        let sh = self.shared.clone();
        sh.cutting.store(true, AtomicOrdering::SeqCst);
        self.threads.push(
            std::thread::Builder::new()
                .name("proxy-cutter".into())
                .spawn(move || {
                    let mut rng = Rng(seed);
                    while !sh.stop.load(AtomicOrdering::SeqCst) {
                        let wait = Duration::from_millis(rng.range(min_ms, max_ms));
                        let rst = rng.range(0, 99) < rst_percent;
                        let t = Instant::now();
                        while t.elapsed() < wait && !sh.stop.load(AtomicOrdering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        if sh.cutting.load(AtomicOrdering::SeqCst) {
                            Proxy::cut_pairs(&sh, rst);
                        }
                    }
                })
                .unwrap(),
        );
    }

    /// Stops the random cuts, timed and byte-exact (the thread stays until drop).
    pub fn stop_cutting(&self) {
        self.shared.cutting.store(false, AtomicOrdering::SeqCst);
        self.stop_byte_cuts();
    }

    /// Stops accepting (new connections are refused: the port is closed)
    /// and cuts every connection.
    pub fn pause(&self, rst: bool) {
        self.shared.accepting.store(false, AtomicOrdering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.shared.listening.load(AtomicOrdering::SeqCst) {
            assert!(Instant::now() < deadline, "proxy did not stop listening");
            std::thread::sleep(Duration::from_millis(1));
        }
        self.cut_all(rst);
    }

    /// Listens again on the same port.
    pub fn resume(&self) {
        self.shared.accepting.store(true, AtomicOrdering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.shared.listening.load(AtomicOrdering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "proxy could not listen again on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Drop client→server bytes (true) or forward them (false).
    pub fn set_blackhole(&self, on: bool) {
        self.shared.blackhole.store(on, AtomicOrdering::SeqCst);
    }

    /// (connections accepted, cut rounds, connections cut, bytes client→server, bytes server→client)
    pub fn counts(&self) -> (u64, u64, u64, u64, u64) {
        let s = &self.shared;
        (
            s.accepted.load(AtomicOrdering::SeqCst),
            s.cuts.load(AtomicOrdering::SeqCst),
            s.cut_pairs.load(AtomicOrdering::SeqCst),
            s.bytes_up.load(AtomicOrdering::SeqCst),
            s.bytes_down.load(AtomicOrdering::SeqCst),
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, AtomicOrdering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        Proxy::cut_pairs(&self.shared, false);
        let pumps: Vec<_> = std::mem::take(&mut *self.shared.pumps.lock().unwrap());
        for p in pumps {
            let _ = p.join();
        }
    }
}

use std::os::fd::AsRawFd;

// ----- child peer processes ----------------------------------------------------

/// Environment variable that makes the `child_peer` test of a test binary
/// act as a peer process; its value is the mode (see `child_peer_main`).
pub const CHILD_ENV: &str = "XXNET_SESSION_CHILD";
/// Comma-separated `field=value` settings of the child's config.
pub const CHILD_CFG_ENV: &str = "XXNET_SESSION_CHILD_CFG";

/// What a child peer received, per its `report` command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildReport {
    pub msgs: u64,
    pub bytes: u64,
    /// Messages whose msg_id was below the next expected one on its lane.
    pub dups: u64,
    /// Messages whose msg_id skipped ahead on its lane.
    pub gaps: u64,
    /// Next expected msg_id per lane (= messages in order so far when the sender numbers from 0).
    pub lanes: [u64; 4],
    pub connected: u64,
    pub disconnected: u64,
    /// Sum and sum of squares (wrapping) of the msg_ids received: a
    /// fingerprint of the exact set of messages.
    pub id_sum: u64,
    pub id_sq: u64,
}

impl ChildReport {
    fn line(&self) -> String {
        format!(
            "XXNET_CHILD_REPORT msgs={} bytes={} dups={} gaps={} lane0={} lane1={} lane2={} lane3={} connected={} disconnected={} id_sum={} id_sq={}",
            self.msgs,
            self.bytes,
            self.dups,
            self.gaps,
            self.lanes[0],
            self.lanes[1],
            self.lanes[2],
            self.lanes[3],
            self.connected,
            self.disconnected,
            self.id_sum,
            self.id_sq
        )
    }

    fn parse(line: &str) -> Option<ChildReport> {
        let rest = line.strip_prefix("XXNET_CHILD_REPORT ")?;
        let mut r = ChildReport::default();
        for kv in rest.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            let v: u64 = v.parse().ok()?;
            match k {
                "msgs" => r.msgs = v,
                "bytes" => r.bytes = v,
                "dups" => r.dups = v,
                "gaps" => r.gaps = v,
                "lane0" => r.lanes[0] = v,
                "lane1" => r.lanes[1] = v,
                "lane2" => r.lanes[2] = v,
                "lane3" => r.lanes[3] = v,
                "connected" => r.connected = v,
                "disconnected" => r.disconnected = v,
                "id_sum" => r.id_sum = v,
                "id_sq" => r.id_sq = v,
                _ => {}
            }
        }
        Some(r)
    }

    fn take(&mut self, log: &mut Vec<Ev>) {
        for e in log.drain(..) {
            match e.kind {
                XXNET_EVENT_MESSAGE => {
                    self.msgs += 1;
                    self.bytes += e.payload.len() as u64;
                    let next = &mut self.lanes[(e.lane as usize).min(3)];
                    let id = e.msg_id as u64;
                    self.id_sum = self.id_sum.wrapping_add(id);
                    self.id_sq = self.id_sq.wrapping_add(id.wrapping_mul(id));
                    if id < *next {
                        self.dups += 1;
                    } else {
                        if id > *next {
                            self.gaps += 1;
                        }
                        *next = id + 1;
                    }
                }
                XXNET_EVENT_CONNECTED => self.connected += 1,
                XXNET_EVENT_DISCONNECTED => self.disconnected += 1,
                _ => {}
            }
        }
    }
}

/// A peer in a child process: the current test binary re-run with
/// `--exact child_peer --ignored` and `CHILD_ENV` set. It listens on
/// 127.0.0.1 and prints its port. Drop resumes (SIGCONT), kills (SIGKILL)
/// and reaps it. It also exits when its stdin closes (the parent died) or
/// after 60 s.
pub struct ChildPeer {
    pub pid: i32,
    pub port: u16,
    child: Option<std::process::Child>,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
}

impl ChildPeer {
    /// Starts a child in `mode`: "sink" (polls, counts, checks per-lane
    /// msg_id order) or "nopoll" (never polls until told "poll").
    /// `cfg` is a comma-separated list of config `field=value`.
    pub fn spawn(mode: &str, cfg: &str) -> ChildPeer {
        let (mut child, lines) = spawn_self(
            "child_peer",
            &[(CHILD_ENV, mode), (CHILD_CFG_ENV, cfg)],
            "child",
            |l| Some(l.to_string()),
        );
        let pid = child.id() as i32;
        let stdin = child.stdin.take();
        let mut c = ChildPeer {
            pid,
            port: 0,
            child: Some(child),
            stdin,
            lines,
        };
        let line = c
            .wait_line("XXNET_CHILD_PORT=", Duration::from_secs(10))
            .expect("the child peer printed its port");
        c.port = line["XXNET_CHILD_PORT=".len()..].trim().parse().unwrap();
        c
    }

    fn wait_line(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.lines.recv_timeout(left) {
                // The harness may print "test child_peer ... " on the same line.
                Ok(l) if l.contains(prefix) => {
                    return Some(l[l.find(prefix).unwrap()..].to_string())
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Sends one command line to the child ("report", "poll", "exit").
    pub fn command(&mut self, cmd: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = writeln!(s, "{cmd}");
            let _ = s.flush();
        }
    }

    /// Asks the child what it received (None if it does not answer in time).
    pub fn report(&mut self, timeout: Duration) -> Option<ChildReport> {
        self.command("report");
        let line = self.wait_line("XXNET_CHILD_REPORT ", timeout)?;
        ChildReport::parse(&line)
    }

    /// Polls reports until `pred` holds or `timeout` passes; the last report.
    pub fn report_until(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&ChildReport) -> bool,
    ) -> Option<ChildReport> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(r) = self.report(Duration::from_secs(2)) {
                if pred(&r) {
                    return Some(r);
                }
                last = Some(r);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        last
    }

    pub fn signal(&self, sig: i32) {
        if self.child.is_some() {
            let rc = unsafe { libc::kill(self.pid, sig) };
            assert_eq!(rc, 0, "kill({}, {sig})", self.pid);
        }
    }

    /// SIGSTOP: the process freezes (its sockets stay open). Returns once
    /// every thread of it is stopped (signals are delivered asynchronously).
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
        wait_stopped(self.pid);
    }

    /// SIGCONT.
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    /// SIGKILL and reap; returns the wait status.
    pub fn kill(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        unsafe {
            libc::kill(self.pid, libc::SIGCONT);
            libc::kill(self.pid, libc::SIGKILL);
        }
        self.stdin = None;
        child.wait().ok()
    }
}

impl Drop for ChildPeer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Body of the `child_peer` test of a binary that spawns `ChildPeer`s.
/// Does nothing unless `CHILD_ENV` is set.
pub fn child_peer_main() {
    use std::io::BufRead;
    let Ok(mut mode) = std::env::var(CHILD_ENV) else {
        eprintln!("child_peer: not started as a child peer; nothing to do");
        return;
    };
    let mut cfg = default_config();
    for kv in std::env::var(CHILD_CFG_ENV).unwrap_or_default().split(',') {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        let v: u64 = v.trim().parse().expect("numeric child config value");
        match k.trim() {
            "idle_timeout_ms" => cfg.idle_timeout_ms = v as u32,
            "recv_queue_limit" => cfg.recv_queue_limit = v,
            "reconnect_give_up_ms" => cfg.reconnect_give_up_ms = v as u32,
            "handshake_timeout_ms" => cfg.handshake_timeout_ms = v as u32,
            other => panic!("unknown child config field {other}"),
        }
    }
    let mut node = Node::with_config(&cfg);
    let port = node.listen("127.0.0.1");
    println!("\nXXNET_CHILD_PORT={port}");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                return;
            }
        }
        let _ = tx.send("eof".into());
    });
    let mut tally = ChildReport::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if mode == "nopoll" {
            std::thread::sleep(Duration::from_millis(5));
        } else {
            node.poll(5);
            tally.take(&mut node.log);
        }
        while let Ok(cmd) = rx.try_recv() {
            match cmd.trim() {
                "report" => println!("{}", tally.line()),
                "poll" => mode = "sink".into(),
                "eof" | "exit" => std::process::exit(0),
                _ => {}
            }
        }
        if Instant::now() > deadline {
            eprintln!("child_peer: 60 s are up, exiting");
            std::process::exit(3);
        }
    }
}

/// Re-runs this test binary as a child process that executes only the
/// ignored test `test_name`, with `envs` set and stdin, stdout and stderr
/// piped. Returns the child and its stdout lines, each passed through `keep`
/// (None drops it); stderr lines are echoed prefixed with `label` and the pid.
pub fn spawn_self(
    test_name: &str,
    envs: &[(&str, &str)],
    label: &str,
    keep: impl Fn(&str) -> Option<String> + Send + 'static,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        test_name,
        "--nocapture",
        "--ignored",
        "--test-threads=1",
    ]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a child test process");
    let pid = child.id();
    let (tx, lines) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Some(kept) = keep(&line) {
                if tx.send(kept).is_err() {
                    break;
                }
            }
        }
    });
    let err = child.stderr.take().unwrap();
    let label = label.to_string();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            eprintln!("[{label} {pid}] {line}");
        }
    });
    (child, lines)
}

/// Waits (at most 5 s, else panics) until every thread of process `pid` is
/// stopped (state T in /proc), as it is some time after SIGSTOP.
pub fn wait_stopped(pid: i32) {
    let all_stopped = || {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return false;
        };
        tasks.flatten().all(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            // "pid (comm) S ...": the state follows the last ')'.
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['T', 't']))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !all_stopped() {
        assert!(
            Instant::now() < deadline,
            "process {pid} did not stop within 5 s"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}
