//! C structs of the ABI and their conversions to and from the safe types.

use crate::codes::*;
use crate::config::Config;
use crate::host::{Event, SendOpts, Stats};
use std::ffi::CStr;
use std::net::IpAddr;
use std::os::raw::{c_char, c_int};

/// Context settings. Fill with `xxnet_config_default`, change fields, pass to `xxnet_new`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct xxnet_config {
    /// Inbound connections beyond this many open connections are refused and counted (default 10000).
    pub max_connections: u32,
    /// Largest message in bytes that may be sent or received (default 16 MiB; at most 4 GiB - 1).
    pub max_message_size: u64,
    /// Messages above this size travel in parts of this size (default 32 KiB; 1 KiB to 1 MiB).
    pub fragment_size: u32,
    /// Time in ms for a TCP connect plus the xxnet handshake (default 5000).
    pub connect_timeout_ms: u32,
    /// Time in ms an accepted connection has to complete its handshake (default 5000).
    pub handshake_timeout_ms: u32,
    /// Received bytes waiting for the host before the reactor stops reading sockets (default 64 MiB).
    pub recv_queue_limit: u64,
    /// Numeric IP announced to peers when this node listens on a wildcard address, or NULL:
    /// then the local address of each outgoing connection is announced. Read only during xxnet_new.
    pub advertise_ip: *const c_char,
    /// First reconnect delay in ms after a session loses its connection; doubles per failed attempt, with jitter (default 100).
    pub reconnect_min_ms: u32,
    /// Longest reconnect delay in ms (default 5000).
    pub reconnect_max_ms: u32,
    /// A session without a connection for this many ms gives up: everything it holds is reported
    /// (SEND_FAILED / EXPIRED) and DISCONNECTED follows (default 30000). 0: give up at the first failure.
    pub reconnect_give_up_ms: u32,
    /// A connection that receives nothing for this many ms is declared down (frozen peer, half-open
    /// TCP); idle connections send a PING after a third of it (default 10000). 0: no heartbeats.
    pub idle_timeout_ms: u32,
    /// Per destination (address or conn), queued plus unacknowledged bytes above which sends return
    /// XXNET_E_WOULD_BLOCK (default 32 MiB). A message is always accepted when nothing is outstanding.
    pub send_high_water: u64,
    /// Backlog under which a destination that returned XXNET_E_WOULD_BLOCK gets XXNET_EVENT_WRITABLE (default 16 MiB).
    pub send_low_water: u64,
    /// Default deadline in ms of a need-ack message (default 5000).
    pub ack_timeout_ms: u32,
    /// This node's name in the cluster directory, or NULL. It is announced to peers (CALL_REQUEST
    /// events carry it), and the directory entry of this name is the address the node listens on.
    /// Read only during xxnet_new.
    pub node_name: *const c_char,
    /// Shared secret of the cluster, or NULL: then every connection must prove knowledge of the
    /// same secret in its handshake (HMAC-SHA256 challenge-response; the secret never travels)
    /// before any message or call is accepted. Read only during xxnet_new.
    pub auth_secret: *const u8,
    /// Length of `auth_secret` in bytes (ignored when it is NULL; must be positive otherwise).
    pub auth_secret_len: usize,
    /// Default deadline in ms of a remote call (default 10000).
    pub call_timeout_ms: u32,
    /// Calls to one node that may wait while it is not connected; more fail at once with
    /// XXNET_E_WOULD_BLOCK (default 1024).
    pub call_cache_limit: u32,
    /// SO_RCVBUF of every connection in bytes (default 256 KiB; 0: the OS default with autotuning).
    /// A bounded kernel receive queue keeps a small message from waiting behind megabytes of bulk
    /// data already received; raise it (or use 0) for high-bandwidth links with long round trips.
    pub socket_recv_buffer: u32,
    /// Directory of the download cache, or NULL (downloads are then refused with
    /// XXNET_E_INVALID_ARG). Created if missing; `data/` holds the files and `index.json` what is
    /// downloaded, so a restarted node resumes partial files. Read only during xxnet_new.
    pub download_dir: *const c_char,
    /// Bytes the download cache may hold, partial files counted at their full size (default 0:
    /// no limit but the disk's free space). Least-recently-used files nobody holds are evicted
    /// to make room.
    pub download_quota: u64,
    /// A download request fails after this many ms (default 300000, the seed's 5 minutes).
    pub download_timeout_ms: u32,
    /// Block size of new downloads in bytes: a multiple of 64 KiB up to 4 MiB (default 1 MiB).
    pub download_block_size: u32,
    /// Blocks requested ahead per download (default 8, at most 64).
    pub download_window: u32,
    /// Bytes per second all downloads of this context may fetch together (default 0: no limit).
    pub download_rate_limit: u64,
    /// Reactor threads, 1..=64 (default 1). With N, each connection lives on reactor
    /// `conn % N` for its whole life (its reads and writes need no lock); listeners accept on
    /// reactor 0 and hand each socket over once its HELLO names the peer. Events of every
    /// reactor reach the host through the same xxnet_poll_recv.
    pub io_threads: u32,
}

impl Default for xxnet_config {
    fn default() -> Self {
        let c = Config::default();
        xxnet_config {
            max_connections: c.max_connections as u32,
            max_message_size: c.max_message_size as u64,
            fragment_size: c.fragment_size as u32,
            connect_timeout_ms: c.connect_timeout_ms as u32,
            handshake_timeout_ms: c.handshake_timeout_ms as u32,
            recv_queue_limit: c.recv_queue_limit as u64,
            advertise_ip: std::ptr::null(),
            reconnect_min_ms: c.reconnect_min_ms as u32,
            reconnect_max_ms: c.reconnect_max_ms as u32,
            reconnect_give_up_ms: c.reconnect_give_up_ms as u32,
            idle_timeout_ms: c.idle_timeout_ms as u32,
            send_high_water: c.send_high_water as u64,
            send_low_water: c.send_low_water as u64,
            ack_timeout_ms: c.ack_timeout_ms as u32,
            node_name: std::ptr::null(),
            auth_secret: std::ptr::null(),
            auth_secret_len: 0,
            call_timeout_ms: c.call_timeout_ms as u32,
            call_cache_limit: c.call_cache_limit as u32,
            socket_recv_buffer: c.socket_recv_buffer as u32,
            download_dir: std::ptr::null(),
            download_quota: c.download_quota,
            download_timeout_ms: c.download_timeout_ms as u32,
            download_block_size: c.download_block_size,
            download_window: c.download_window,
            download_rate_limit: c.download_rate_limit,
            io_threads: c.io_threads as u32,
        }
    }
}

impl xxnet_config {
    /// Converts and validates.
    ///
    /// # Safety
    /// `advertise_ip` and `node_name` are NULL or NUL-terminated strings;
    /// `auth_secret` is NULL or points to `auth_secret_len` readable bytes.
    pub(crate) unsafe fn to_config(self) -> Result<Config, String> {
        let node_name = if self.node_name.is_null() {
            None
        } else {
            Some(
                CStr::from_ptr(self.node_name)
                    .to_str()
                    .map_err(|_| "node_name is not UTF-8".to_string())?
                    .to_string(),
            )
        };
        let auth_secret = if self.auth_secret.is_null() {
            None
        } else {
            Some(std::slice::from_raw_parts(self.auth_secret, self.auth_secret_len).to_vec())
        };
        let advertise_ip = if self.advertise_ip.is_null() {
            None
        } else {
            let text = CStr::from_ptr(self.advertise_ip)
                .to_str()
                .map_err(|_| "advertise_ip is not UTF-8".to_string())?;
            Some(
                crate::host::parse_ip(text)
                    .ok_or_else(|| format!("advertise_ip {text:?} is not a numeric IP address"))?,
            )
        };
        let download_dir = if self.download_dir.is_null() {
            None
        } else {
            let text = CStr::from_ptr(self.download_dir)
                .to_str()
                .map_err(|_| "download_dir is not UTF-8".to_string())?;
            if text.is_empty() {
                return Err("download_dir is empty (pass NULL for none)".into());
            }
            Some(std::path::PathBuf::from(text))
        };
        let cfg = Config {
            max_connections: self.max_connections as usize,
            max_message_size: usize::try_from(self.max_message_size).unwrap_or(usize::MAX),
            fragment_size: self.fragment_size as usize,
            connect_timeout_ms: self.connect_timeout_ms as u64,
            handshake_timeout_ms: self.handshake_timeout_ms as u64,
            recv_queue_limit: usize::try_from(self.recv_queue_limit).unwrap_or(usize::MAX),
            advertise_ip,
            reconnect_min_ms: self.reconnect_min_ms as u64,
            reconnect_max_ms: self.reconnect_max_ms as u64,
            reconnect_give_up_ms: self.reconnect_give_up_ms as u64,
            idle_timeout_ms: self.idle_timeout_ms as u64,
            send_high_water: usize::try_from(self.send_high_water).unwrap_or(usize::MAX),
            send_low_water: usize::try_from(self.send_low_water).unwrap_or(usize::MAX),
            ack_timeout_ms: self.ack_timeout_ms as u64,
            node_name,
            auth_secret,
            call_timeout_ms: self.call_timeout_ms as u64,
            call_cache_limit: self.call_cache_limit as usize,
            socket_recv_buffer: self.socket_recv_buffer as usize,
            download_dir,
            download_quota: self.download_quota,
            download_timeout_ms: self.download_timeout_ms as u64,
            download_block_size: self.download_block_size,
            download_window: self.download_window,
            download_rate_limit: self.download_rate_limit,
            io_threads: self.io_threads as usize,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Options for `xxnet_send_ex`. Zero-initialised means defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xxnet_send_opts {
    /// Lane 0..XXNET_LANES-1; order is kept per lane (0: default, 1: bulk).
    pub lane: u32,
    /// Route id delivered with the message; receivers dispatch on it.
    pub msg_id: u32,
    /// XXNET_SEND_* bits (0: none); unknown bits return XXNET_E_INVALID_ARG.
    pub flags: u32,
    /// Need-ack sends: the deadline in ms (0: the config's ack_timeout_ms). Ignored by other sends.
    pub ack_timeout_ms: u32,
}

impl xxnet_send_opts {
    pub(crate) fn to_opts(self) -> Result<SendOpts, c_int> {
        if self.lane >= XXNET_LANES || self.flags & !XXNET_SEND_MORE != 0 {
            return Err(XXNET_E_INVALID_ARG);
        }
        Ok(SendOpts {
            lane: self.lane as u8,
            msg_id: self.msg_id,
            ack_timeout_ms: self.ack_timeout_ms,
            more: self.flags & XXNET_SEND_MORE != 0,
        })
    }
}

/// Options for `xxnet_call_ex` and `xxnet_cast_ex`. Zero-initialised means defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xxnet_call_opts {
    /// Lane 0..XXNET_LANES-1 (0: default, 1: bulk). Calls and casts to one node on one lane arrive
    /// in the order they were made; the reply travels on the request's lane.
    pub lane: u32,
    /// Deadline of a call in ms (0: the config's call_timeout_ms). Ignored by casts.
    pub timeout_ms: u32,
    /// Reserved flag bits; must be 0 for now (unknown bits return XXNET_E_INVALID_ARG).
    pub flags: u32,
}

impl xxnet_call_opts {
    pub(crate) fn to_opts(self) -> Result<crate::host::CallOpts, c_int> {
        if self.lane >= XXNET_LANES || self.flags != 0 {
            return Err(XXNET_E_INVALID_ARG);
        }
        Ok(crate::host::CallOpts {
            lane: self.lane as u8,
            timeout_ms: self.timeout_ms,
        })
    }
}

/// One event drained by `xxnet_poll_recv`. Which fields are meaningful depends on `kind`.
///
/// `data`, `node` and `service` are borrowed: they stay valid until the next
/// `xxnet_poll_recv` or `xxnet_free` on the same context. Copy what you keep.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct xxnet_event {
    /// XXNET_EVENT_* kind; 0 (XXNET_EVENT_NONE) for an unused slot.
    pub kind: u32,
    /// XXNET_OK or an XXNET_E_* code saying why (DISCONNECTED, SEND_FAILED, CONNECT_FAILED, ERROR).
    pub code: c_int,
    /// Connection id (never 0 for a real connection, below 2^53), or 0.
    pub conn: u64,
    /// Kind-specific id (CONNECTED: 1 if we initiated the connection, 0 if we accepted it).
    pub id: u64,
    /// Kind-specific count (SEND_FAILED: number of messages covered).
    pub count: u64,
    /// Kind-specific total (SEND_FAILED: bytes covered).
    pub total: u64,
    /// Route id of a MESSAGE (or of the first message a SEND_FAILED covers).
    pub msg_id: u32,
    /// Lane of a MESSAGE (or of the first message a SEND_FAILED covers).
    pub lane: u32,
    /// The peer's port: its listen port for a peer that listens, else its socket's port.
    pub peer_port: u16,
    /// The peer's numeric IP, NUL-terminated: its announced listen address for a peer that listens, else its socket's address. Empty when unknown.
    pub peer_ip: [c_char; 48],
    /// Payload of a MESSAGE, CALL_REQUEST or CALL_RESULT; the local path of a DOWNLOAD_DONE's
    /// file (NUL-terminated, `len` excludes the NUL). Borrowed until the next poll; NULL if none.
    pub data: *const u8,
    /// Length of `data` in bytes.
    pub len: usize,
    /// The connection's user data (xxnet_conn_set_user_data), or a TIMER's user data.
    pub user_data: u64,
    /// Node name, NUL-terminated (CALL_REQUEST: the calling node, empty for an unnamed client;
    /// CALL_RESULT: the node called; NODE_CHANGED: the node). Never NULL: "" when not meaningful.
    pub node: *const c_char,
    /// Service name, NUL-terminated (CALL_REQUEST; SEND_FAILED of a cast refused with
    /// XXNET_E_NO_SERVICE). Never NULL: "" when not meaningful.
    pub service: *const c_char,
}

impl xxnet_event {
    pub(crate) const EMPTY: xxnet_event = xxnet_event {
        kind: XXNET_EVENT_NONE,
        code: XXNET_OK,
        conn: 0,
        id: 0,
        count: 0,
        total: 0,
        msg_id: 0,
        lane: 0,
        peer_port: 0,
        peer_ip: [0; 48],
        data: std::ptr::null(),
        len: 0,
        user_data: 0,
        node: EMPTY_TEXT.as_ptr(),
        service: EMPTY_TEXT.as_ptr(),
    };

    /// Converts an event in place: every field of `self` is set (the slot
    /// may hold anything), without building and copying a whole event per
    /// message. `ip_cache` keeps the last formatted address so a batch from
    /// one peer formats its IP once.
    pub(crate) fn set_from(&mut self, ev: &Event, ip_cache: &mut Option<(IpAddr, [c_char; 48])>) {
        self.kind = ev.kind;
        self.code = ev.code;
        self.conn = ev.conn;
        self.id = ev.id;
        self.count = ev.count;
        self.total = ev.total;
        self.msg_id = ev.msg_id;
        self.lane = ev.lane as u32;
        self.user_data = ev.user_data;
        match ev.peer {
            Some(peer) => {
                self.peer_port = peer.port();
                match ip_cache {
                    Some((ip, text)) if *ip == peer.ip() => self.peer_ip = *text,
                    _ => {
                        write_ip(&mut self.peer_ip, peer.ip());
                        *ip_cache = Some((peer.ip(), self.peer_ip));
                    }
                }
            }
            None => {
                self.peer_port = 0;
                self.peer_ip = [0; 48];
            }
        }
        if ev.data.is_empty() {
            self.data = std::ptr::null();
            self.len = 0;
        } else {
            self.data = ev.data.as_ptr();
            self.len = ev.data.len();
        }
        // Names are stored NUL-terminated by the producers.
        self.node = match ev.node.last() {
            Some(&0) => ev.node.as_ptr() as *const c_char,
            _ => EMPTY_TEXT.as_ptr(),
        };
        self.service = match ev.service.last() {
            Some(&0) => ev.service.as_ptr() as *const c_char,
            _ => EMPTY_TEXT.as_ptr(),
        };
    }
}

static EMPTY_TEXT: &std::ffi::CStr = c"";

fn write_ip(dst: &mut [c_char; 48], ip: IpAddr) {
    use std::io::Write;
    let mut buf = [0u8; 47];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{ip}");
    let n = cursor.position() as usize;
    for (d, s) in dst.iter_mut().zip(buf[..n].iter()) {
        *d = *s as c_char;
    }
    dst[n.min(47)] = 0;
}

/// Counters read with `xxnet_stats`. Counts are since xxnet_new.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xxnet_stats {
    /// Connections currently open (handshake complete or in progress).
    pub open_connections: u64,
    /// Messages received and handed to the host queue.
    pub msgs_in: u64,
    /// Messages written to sockets.
    pub msgs_out: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Payload bytes written to sockets.
    pub bytes_out: u64,
    /// Payload bytes the host handed over that are not yet written or reported failed.
    pub queued_bytes: u64,
    /// Messages the host handed over that are not yet written or reported failed.
    pub queued_msgs: u64,
    /// Connections closed because the peer broke the protocol.
    pub protocol_errors: u64,
    /// Inbound connections refused (max_connections reached).
    pub refused_connections: u64,
    /// Outgoing connection attempts that failed.
    pub connect_failures: u64,
    /// Messages reported undelivered: counted in SEND_FAILED events, plus need-ack messages reported EXPIRED without being sent.
    pub send_failed_msgs: u64,
    /// Connections accepted from peers (including refused ones).
    pub accepted_connections: u64,
    /// Messages the peers acknowledged.
    pub msgs_acked: u64,
    /// Messages sent again after a reconnect because the peer had not acknowledged them.
    pub msgs_resent: u64,
    /// Received messages dropped because they were already delivered.
    pub duplicates_dropped: u64,
    /// Sessions that got a connection back after losing one.
    pub reconnects: u64,
}

impl From<Stats> for xxnet_stats {
    fn from(s: Stats) -> Self {
        xxnet_stats {
            open_connections: s.open_connections,
            msgs_in: s.msgs_in,
            msgs_out: s.msgs_out,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            queued_bytes: s.queued_bytes,
            queued_msgs: s.queued_msgs,
            protocol_errors: s.protocol_errors,
            refused_connections: s.refused_connections,
            connect_failures: s.connect_failures,
            send_failed_msgs: s.send_failed_msgs,
            accepted_connections: s.accepted_connections,
            msgs_acked: s.msgs_acked,
            msgs_resent: s.msgs_resent,
            duplicates_dropped: s.duplicates_dropped,
            reconnects: s.reconnects,
        }
    }
}

/// A session's state for introspection, read with `xxnet_conn_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct xxnet_peer_info {
    /// XXNET_PEER_CONNECTING, XXNET_PEER_CONNECTED or XXNET_PEER_RECONNECTING.
    pub state: u32,
    /// Connection attempts since the session last had a connection.
    pub attempts: u32,
    /// Messages waiting to be sent.
    pub queued_msgs: u64,
    /// Payload bytes waiting to be sent.
    pub queued_bytes: u64,
    /// Messages sent and not yet acknowledged by the peer.
    pub unacked_msgs: u64,
    /// Payload bytes sent and not yet acknowledged.
    pub unacked_bytes: u64,
    /// Age in ms of the oldest unacknowledged message (0 if none).
    pub oldest_unacked_ms: u64,
    /// The peer's port (listen port for a peer that listens).
    pub peer_port: u16,
    /// The peer's numeric IP, NUL-terminated.
    pub peer_ip: [c_char; 48],
}

impl xxnet_peer_info {
    pub(crate) fn from_snapshot(s: &crate::bridge::PeerSnapshot, now: std::time::Instant) -> Self {
        let mut out = xxnet_peer_info {
            state: s.state as u32,
            attempts: s.attempts,
            queued_msgs: s.queued_msgs,
            queued_bytes: s.queued_bytes,
            unacked_msgs: s.unacked_msgs,
            unacked_bytes: s.unacked_bytes,
            oldest_unacked_ms: s
                .oldest_unacked
                .map_or(0, |t| now.saturating_duration_since(t).as_millis() as u64),
            peer_port: s.peer.port(),
            peer_ip: [0; 48],
        };
        write_ip(&mut out.peer_ip, s.peer.ip());
        out
    }
}
