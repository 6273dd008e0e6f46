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
            "{} code={} ({}) conn={} id={} count={} total={} msg_id={} lane={} peer={}:{} len={}",
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
            self.payload.len()
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

/// The default configuration, as the C ABI fills it.
pub fn default_config() -> xxnet_config {
    let mut cfg = std::mem::MaybeUninit::<xxnet_config>::uninit();
    xxnet_config_default(cfg.as_mut_ptr());
    unsafe { cfg.assume_init() }
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
    let mut body = Vec::new();
    body.extend_from_slice(&instance.to_le_bytes());
    body.extend_from_slice(&nonce.to_le_bytes());
    body.extend_from_slice(&[0u8; SYNC_LEN]); // session sync: a fresh session
    push_addr(&mut body, listen);
    frame(T_HELLO, 0, 0, 0, 0, &body)
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
        let mut out = PREFACE.to_vec();
        out.extend(hello_frame(instance, nonce, listen));
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
