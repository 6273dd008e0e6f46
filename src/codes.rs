//! Result codes and event kinds shared by the whole crate and the C ABI.
//!
//! The numbers are stable: never renumber a code, never reuse a retired one
//! (leave it here as a comment). Crate-level `pub const` items are exported
//! to the C header by cbindgen, so only C-visible constants live at crate
//! level; internal constants are associated constants or `pub(crate)`.

use std::ffi::CStr;
use std::os::raw::c_int;

/// Success.
pub const XXNET_OK: c_int = 0;
/// An argument is out of range or malformed (an address that is not numeric IPv4/IPv6, a lane that does not exist, unknown flag bits...).
pub const XXNET_E_INVALID_ARG: c_int = -1;
/// A required pointer argument was NULL.
pub const XXNET_E_NULL_POINTER: c_int = -2;
/// The connection id is 0, was never issued to this host, or its DISCONNECTED event was already delivered.
pub const XXNET_E_UNKNOWN_CONN: c_int = -3;
/// The address is held by another socket (another process, or another context).
pub const XXNET_E_ADDR_IN_USE: c_int = -4;
/// This context already listens on that address.
pub const XXNET_E_ALREADY_LISTENING: c_int = -5;
/// The message is larger than the configured maximum message size.
pub const XXNET_E_TOO_LARGE: c_int = -6;
/// The operation would exceed a queue limit; nothing was queued.
pub const XXNET_E_WOULD_BLOCK: c_int = -7;
/// The context or connection is closed or shutting down.
pub const XXNET_E_CLOSED: c_int = -8;
/// An internal error (for example the reactor thread failed); the context is unusable.
pub const XXNET_E_INTERNAL: c_int = -9;
/// A panic was caught at the C boundary.
pub const XXNET_E_PANIC: c_int = -10;
/// An operating-system error not covered by a more specific code.
pub const XXNET_E_IO: c_int = -11;
/// The local address to bind does not exist on this machine.
pub const XXNET_E_ADDR_NOT_AVAILABLE: c_int = -12;
/// The operating system refused the operation for lack of permission.
pub const XXNET_E_PERMISSION: c_int = -13;
/// The peer refused the TCP connection (nothing listens there).
pub const XXNET_E_CONNECT_REFUSED: c_int = -20;
/// The TCP connection or the handshake did not complete in time.
pub const XXNET_E_CONNECT_TIMEOUT: c_int = -21;
/// The connection was reset or broke with an I/O error.
pub const XXNET_E_CONN_RESET: c_int = -22;
/// The peer closed the connection in an orderly way.
pub const XXNET_E_PEER_CLOSED: c_int = -23;
/// The host closed the connection with xxnet_close.
pub const XXNET_E_LOCAL_CLOSE: c_int = -24;
/// The connection lost the simultaneous-connect tie-break; the other connection to the same peer carries the traffic.
pub const XXNET_E_DUPLICATE_CONN: c_int = -25;
/// The context is shutting down.
pub const XXNET_E_SHUTDOWN: c_int = -26;
/// The peer refused us because it already has max_connections connections.
pub const XXNET_E_PEER_BUSY: c_int = -27;
/// The destination is unreachable (no route, network down).
pub const XXNET_E_UNREACHABLE: c_int = -28;
/// The peer was silent past idle_timeout_ms (frozen process, half-open connection); its connection was closed.
pub const XXNET_E_IDLE_TIMEOUT: c_int = -29;
/// A need-ack message expired before any of it was sent; it will not be sent.
pub const XXNET_E_EXPIRED_UNSENT: c_int = -30;
/// A need-ack message was sent but not acknowledged in time; the peer may still receive it.
pub const XXNET_E_ACK_TIMEOUT: c_int = -31;
/// The peer restarted (a new instance): the old session ended with it.
pub const XXNET_E_PEER_RESTARTED: c_int = -32;
// -33 is retired (was XXNET_E_GAVE_UP; a session that gives up reports the last failure's code).
/// The timer id is not live (never started, stopped, or a one-shot that already fired).
pub const XXNET_E_UNKNOWN_TIMER: c_int = -34;
/// The call is not allowed here (for example polling from inside a dispatch handler).
pub const XXNET_E_REENTRANT: c_int = -35;
/// Protocol error: the peer violated the xxnet wire protocol in a way no more specific code names.
pub const XXNET_E_PROTOCOL: c_int = -40;
/// Protocol error: the peer does not speak xxnet (wrong connection preface).
pub const XXNET_E_BAD_PREFACE: c_int = -41;
/// Protocol error: the peer speaks an unsupported xxnet protocol version.
pub const XXNET_E_BAD_VERSION: c_int = -42;
/// Protocol error: a frame announced a body longer than the protocol allows.
pub const XXNET_E_FRAME_TOO_LARGE: c_int = -43;
/// Protocol error: the peer announced a message larger than max_message_size.
pub const XXNET_E_MESSAGE_TOO_LARGE: c_int = -44;
/// Protocol error: the peer closed the connection in the middle of a frame or of a multi-part message.
pub const XXNET_E_TRUNCATED: c_int = -45;
/// Protocol error: a malformed frame (unknown type, bad flags, bad lane, parts out of order, bad handshake).
pub const XXNET_E_BAD_FRAME: c_int = -46;
/// Authentication failed: the peer does not prove knowledge of our auth_secret, requires one we do not have, or refused our proof (another secret). The session gives up at once.
pub const XXNET_E_AUTH: c_int = -58;
/// Remote call: no reply within the call's deadline (the request is withdrawn if it was not yet sent).
pub const XXNET_E_TIMEOUT: c_int = -50;
/// Remote call or cast: the node name is not in the cluster directory.
pub const XXNET_E_UNKNOWN_NODE: c_int = -51;
/// Remote call: the node could not be reached (its connect attempts were exhausted).
pub const XXNET_E_NODE_UNREACHABLE: c_int = -52;
/// Remote call: the node's connection went down (closed, reset, silent past the idle timeout, restarted) while the call was pending; the request may or may not have run.
pub const XXNET_E_NODE_DOWN: c_int = -53;
/// Remote call: the node was removed from the cluster directory while the call was pending.
pub const XXNET_E_NODE_REMOVED: c_int = -54;
/// Remote call: the node moved to another address (directory change) while the call was pending.
pub const XXNET_E_NODE_MOVED: c_int = -55;
/// Remote call or cast: the called node has no service of that name registered.
pub const XXNET_E_NO_SERVICE: c_int = -56;
/// xxnet_reply: the reply token is unknown or was already answered.
pub const XXNET_E_UNKNOWN_TOKEN: c_int = -57;
/// A cluster directory file could not be used (malformed lines; xxnet_last_error() lists them with file and line).
pub const XXNET_E_CLUSTER_FILE: c_int = -59;
/// Download: the source node does not have content with that md5 and size (or serves no files).
pub const XXNET_E_NO_CONTENT: c_int = -60;
/// Download or serving: a file name or directory is refused (absolute, `..`, NUL byte, too long,
/// not a directory) or an md5 is not 32 hex digits. Nothing outside the cache and the served
/// directories is ever read or written.
pub const XXNET_E_BAD_PATH: c_int = -61;
/// Download: not enough room: the file is larger than download_quota, the downloads running (and
/// files the host still holds) need more than the quota together, or the disk is full.
pub const XXNET_E_NO_SPACE: c_int = -62;
/// Download: the content's md5 does not match (checked at the end; the partial file is
/// discarded), or a block kept arriving corrupt.
pub const XXNET_E_CHECKSUM: c_int = -63;
/// Download: the file's size does not match (the source's file under that name, or the cached
/// file at the end; a partial file is discarded).
pub const XXNET_E_SIZE_MISMATCH: c_int = -64;
/// Download: reading or writing the cache failed (details in the log).
pub const XXNET_E_DISK: c_int = -65;
/// Download: the host cancelled it (xxnet_download_cancel).
pub const XXNET_E_CANCELLED: c_int = -66;
/// Download: the task id is unknown, already finished or already released.
pub const XXNET_E_UNKNOWN_TASK: c_int = -67;

/// No event (an unused slot).
pub const XXNET_EVENT_NONE: u32 = 0;
/// A message arrived: `conn`, `peer_ip`/`peer_port`, `lane`, `msg_id`, `data`/`len`.
pub const XXNET_EVENT_MESSAGE: u32 = 1;
/// A connection completed its handshake: `conn`, `peer_ip`/`peer_port`; `id` is 1 when we initiated it, 0 when we accepted it.
pub const XXNET_EVENT_CONNECTED: u32 = 2;
/// A connection that was CONNECTED has closed: `conn`, peer, `code` says why.
pub const XXNET_EVENT_DISCONNECTED: u32 = 3;
/// Messages the host handed over will not be delivered by xxnet: `count` messages totalling `total` bytes, to `conn` (0 if no session was ever established) and `peer_ip`/`peer_port`; `code` says why; `msg_id` and `lane` are those of the first message covered. `id` 0: none of them was sent. `id` 1: they were sent but never acknowledged: the peer may have received some (a session ending reports each kind in its own event).
pub const XXNET_EVENT_SEND_FAILED: u32 = 4;
/// An outgoing connection attempt to `peer_ip`/`peer_port` failed before its handshake completed; `code` says why.
pub const XXNET_EVENT_CONNECT_FAILED: u32 = 5;
/// The context hit an internal error (for example a panic on the reactor thread); `code` is XXNET_E_INTERNAL and the context is unusable.
pub const XXNET_EVENT_ERROR: u32 = 6;

/// A need-ack message was acknowledged by the peer's xxnet: `id` is the id xxnet_send_need_ack returned, `conn` the session.
pub const XXNET_EVENT_DELIVERED: u32 = 7;
/// A need-ack message was not acknowledged: `id`, `conn` (0 if no session was ever established), `code` says why (XXNET_E_EXPIRED_UNSENT, XXNET_E_ACK_TIMEOUT, or the reason the session ended).
pub const XXNET_EVENT_EXPIRED: u32 = 8;
/// A destination's backlog fell under the low-water mark after a send returned XXNET_E_WOULD_BLOCK: `conn` (for sends by connection) or `peer_ip`/`peer_port` (for sends by address).
pub const XXNET_EVENT_WRITABLE: u32 = 9;
/// A session lost its connection and is reconnecting (or waiting for the peer to reconnect); nothing it holds is lost yet. `conn`, peer, `code` says why.
pub const XXNET_EVENT_LINK_DOWN: u32 = 10;
/// A session that was LINK_DOWN has a connection again and resent what the peer had not acknowledged: `conn`, peer; `count` is the number of messages resent.
pub const XXNET_EVENT_LINK_UP: u32 = 11;

/// A main-thread timer fired: `id` is its id, `user_data` the value given to xxnet_timer_start.
pub const XXNET_EVENT_TIMER: u32 = 12;

/// A remote call or cast arrived for a registered service: `node` (the calling node's name, empty
/// for an unnamed client), `service`, `conn` (the caller's session), `lane`, `data`/`len`. `id` is
/// the reply token to pass to xxnet_reply, or 0 for a cast (no reply expected).
pub const XXNET_EVENT_CALL_REQUEST: u32 = 13;
/// A call made with xxnet_call resolved (exactly once per call): `id` is its session, `node` the
/// node called, `code` XXNET_OK, the callee's own code (positive) or an XXNET_E_* outcome;
/// `data`/`len` the reply payload (empty unless the callee replied); `conn`, `lane`.
pub const XXNET_EVENT_CALL_RESULT: u32 = 14;
/// The cluster directory changed (xxnet_cluster_load/reload/set/remove): `node` is the name,
/// `id` one of XXNET_NODE_ADDED / XXNET_NODE_MOVED / XXNET_NODE_REMOVED, `peer_ip`/`peer_port`
/// its address (the new one when it moved).
pub const XXNET_EVENT_NODE_CHANGED: u32 = 15;
/// A download advanced (at most 4 per second per task): `id` is the task, `count` the bytes
/// already in the cache, `total` the file's size, `node` the source node.
pub const XXNET_EVENT_DOWNLOAD_PROGRESS: u32 = 16;
/// A download finished (exactly one DONE or FAILED per task): `id` is the task, `data`/`len` the
/// local path of the file (NUL-terminated; valid until the next poll, the file itself until
/// xxnet_download_release), `count` = `total` = its size, `node` the source node.
pub const XXNET_EVENT_DOWNLOAD_DONE: u32 = 17;
/// A download failed (exactly one DONE or FAILED per task): `id` is the task, `code` the reason
/// (XXNET_E_TIMEOUT, XXNET_E_NODE_DOWN, XXNET_E_NO_CONTENT, XXNET_E_CHECKSUM,
/// XXNET_E_SIZE_MISMATCH, XXNET_E_NO_SPACE, XXNET_E_DISK, XXNET_E_CANCELLED, XXNET_E_SHUTDOWN,
/// ...), `count` the bytes in the cache so far (kept for a later resume unless the content was
/// found wrong; 0 when the host ended the task: CANCELLED, SHUTDOWN), `total` the size, `node`
/// the source node.
pub const XXNET_EVENT_DOWNLOAD_FAILED: u32 = 18;

/// XXNET_EVENT_NODE_CHANGED: a node was added to the directory.
pub const XXNET_NODE_ADDED: u64 = 1;
/// XXNET_EVENT_NODE_CHANGED: a node's address changed; its old session ended (pending calls: XXNET_E_NODE_MOVED).
pub const XXNET_NODE_MOVED: u64 = 2;
/// XXNET_EVENT_NODE_CHANGED: a node left the directory; its session ended (pending calls: XXNET_E_NODE_REMOVED).
pub const XXNET_NODE_REMOVED: u64 = 3;

/// Session state: the first connection is being made.
pub const XXNET_PEER_CONNECTING: u32 = 1;
/// Session state: connected.
pub const XXNET_PEER_CONNECTED: u32 = 2;
/// Session state: the connection was lost; reconnecting, or waiting for the peer to reconnect.
pub const XXNET_PEER_RECONNECTING: u32 = 3;

/// The ABI version of this header; raised whenever an export, struct or
/// constant changes incompatibly. Compare with xxnet_abi_version().
pub const XXNET_ABI_VERSION: u32 = 3;

/// `xxnet_send_opts.flags`: more sends follow at once. The message is queued
/// but the reactor is not woken for it; the next send without this flag,
/// xxnet_flush, xxnet_poll_recv or xxnet_dispatch hands the whole burst over
/// with one wakeup. Use it on all but the last message of a burst (the
/// replies to one polled batch, a frame's updates to many peers).
pub const XXNET_SEND_MORE: u32 = 1;

/// Number of lanes; a lane is 0..XXNET_LANES-1. Order is kept per lane.
pub const XXNET_LANES: u32 = 4;
/// The default lane.
pub const XXNET_LANE_DEFAULT: u32 = 0;
/// The bulk lane: large transfers that must not delay the default lane.
pub const XXNET_LANE_BULK: u32 = 1;

/// Human-readable text for a code. Never empty.
pub fn describe(code: c_int) -> &'static str {
    describe_cstr(code).to_str().unwrap_or("unknown code")
}

/// The same text as a C string with static lifetime.
pub fn describe_cstr(code: c_int) -> &'static CStr {
    match code {
        XXNET_OK => c"ok",
        XXNET_E_INVALID_ARG => c"invalid argument",
        XXNET_E_NULL_POINTER => c"null pointer",
        XXNET_E_UNKNOWN_CONN => c"unknown connection",
        XXNET_E_ADDR_IN_USE => c"address in use",
        XXNET_E_ALREADY_LISTENING => c"already listening on that address",
        XXNET_E_TOO_LARGE => c"message too large",
        XXNET_E_WOULD_BLOCK => c"would block: queue limit reached",
        XXNET_E_CLOSED => c"closed",
        XXNET_E_INTERNAL => c"internal error",
        XXNET_E_PANIC => c"panic caught at the C boundary",
        XXNET_E_IO => c"operating-system I/O error",
        XXNET_E_ADDR_NOT_AVAILABLE => c"address not available on this machine",
        XXNET_E_PERMISSION => c"permission denied",
        XXNET_E_CONNECT_REFUSED => c"connection refused",
        XXNET_E_CONNECT_TIMEOUT => c"connect or handshake timed out",
        XXNET_E_CONN_RESET => c"connection reset",
        XXNET_E_PEER_CLOSED => c"peer closed the connection",
        XXNET_E_LOCAL_CLOSE => c"closed by the host",
        XXNET_E_DUPLICATE_CONN => c"duplicate connection closed by tie-break",
        XXNET_E_SHUTDOWN => c"context shutting down",
        XXNET_E_PEER_BUSY => c"peer refused: too many connections",
        XXNET_E_UNREACHABLE => c"destination unreachable",
        XXNET_E_IDLE_TIMEOUT => c"peer silent past the idle timeout",
        XXNET_E_EXPIRED_UNSENT => c"need-ack message expired before it was sent",
        XXNET_E_ACK_TIMEOUT => c"need-ack message sent but not acknowledged in time",
        XXNET_E_PEER_RESTARTED => c"peer restarted: its session ended",
        XXNET_E_UNKNOWN_TIMER => c"unknown timer",
        XXNET_E_REENTRANT => c"not allowed from inside a dispatch handler",
        XXNET_E_PROTOCOL => c"protocol error",
        XXNET_E_BAD_PREFACE => c"protocol error: peer does not speak xxnet",
        XXNET_E_BAD_VERSION => c"protocol error: unsupported protocol version",
        XXNET_E_FRAME_TOO_LARGE => c"protocol error: frame too large",
        XXNET_E_MESSAGE_TOO_LARGE => {
            c"protocol error: peer announced a message above max_message_size"
        }
        XXNET_E_TRUNCATED => c"protocol error: connection ended mid-frame",
        XXNET_E_BAD_FRAME => c"protocol error: malformed frame",
        XXNET_E_AUTH => c"authentication failed: no shared secret with the peer",
        XXNET_E_TIMEOUT => c"call timed out",
        XXNET_E_UNKNOWN_NODE => c"unknown node: not in the cluster directory",
        XXNET_E_NODE_UNREACHABLE => c"node unreachable: connect attempts exhausted",
        XXNET_E_NODE_DOWN => c"node went down while the call was pending",
        XXNET_E_NODE_REMOVED => c"node removed from the cluster directory",
        XXNET_E_NODE_MOVED => c"node moved to another address",
        XXNET_E_NO_SERVICE => c"no such service on the called node",
        XXNET_E_UNKNOWN_TOKEN => c"unknown or already answered reply token",
        XXNET_E_CLUSTER_FILE => c"malformed cluster directory file",
        XXNET_E_NO_CONTENT => c"the source has no content with that md5 and size",
        XXNET_E_BAD_PATH => c"file name, directory or md5 refused",
        XXNET_E_NO_SPACE => c"no space: download quota or disk full",
        XXNET_E_CHECKSUM => c"md5 mismatch (or a block kept arriving corrupt)",
        XXNET_E_SIZE_MISMATCH => c"file size mismatch",
        XXNET_E_DISK => c"disk error in the download cache",
        XXNET_E_CANCELLED => c"download cancelled",
        XXNET_E_UNKNOWN_TASK => c"unknown download task",
        _ => c"unknown code",
    }
}

/// The message of a caught panic ("panic" when it carries none).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// True for codes that mean the peer broke the wire protocol.
pub fn is_protocol_error(code: c_int) -> bool {
    (XXNET_E_BAD_FRAME..=XXNET_E_PROTOCOL).contains(&code)
}

/// Maps an OS error to the closest code.
pub fn from_io(err: &std::io::Error) -> c_int {
    use std::io::ErrorKind as K;
    match err.kind() {
        K::AddrInUse => XXNET_E_ADDR_IN_USE,
        K::AddrNotAvailable => XXNET_E_ADDR_NOT_AVAILABLE,
        K::PermissionDenied => XXNET_E_PERMISSION,
        K::ConnectionRefused => XXNET_E_CONNECT_REFUSED,
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => XXNET_E_CONN_RESET,
        K::TimedOut => XXNET_E_CONNECT_TIMEOUT,
        K::NetworkUnreachable | K::HostUnreachable | K::NetworkDown => XXNET_E_UNREACHABLE,
        K::UnexpectedEof => XXNET_E_PEER_CLOSED,
        _ => XXNET_E_IO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_text_and_codes_are_distinct() {
        let codes = [
            XXNET_OK,
            XXNET_E_INVALID_ARG,
            XXNET_E_NULL_POINTER,
            XXNET_E_UNKNOWN_CONN,
            XXNET_E_ADDR_IN_USE,
            XXNET_E_ALREADY_LISTENING,
            XXNET_E_TOO_LARGE,
            XXNET_E_WOULD_BLOCK,
            XXNET_E_CLOSED,
            XXNET_E_INTERNAL,
            XXNET_E_PANIC,
            XXNET_E_IO,
            XXNET_E_ADDR_NOT_AVAILABLE,
            XXNET_E_PERMISSION,
            XXNET_E_CONNECT_REFUSED,
            XXNET_E_CONNECT_TIMEOUT,
            XXNET_E_CONN_RESET,
            XXNET_E_PEER_CLOSED,
            XXNET_E_LOCAL_CLOSE,
            XXNET_E_DUPLICATE_CONN,
            XXNET_E_SHUTDOWN,
            XXNET_E_PEER_BUSY,
            XXNET_E_UNREACHABLE,
            XXNET_E_IDLE_TIMEOUT,
            XXNET_E_EXPIRED_UNSENT,
            XXNET_E_ACK_TIMEOUT,
            XXNET_E_PEER_RESTARTED,
            XXNET_E_UNKNOWN_TIMER,
            XXNET_E_REENTRANT,
            XXNET_E_PROTOCOL,
            XXNET_E_BAD_PREFACE,
            XXNET_E_BAD_VERSION,
            XXNET_E_FRAME_TOO_LARGE,
            XXNET_E_MESSAGE_TOO_LARGE,
            XXNET_E_TRUNCATED,
            XXNET_E_BAD_FRAME,
            XXNET_E_AUTH,
            XXNET_E_TIMEOUT,
            XXNET_E_UNKNOWN_NODE,
            XXNET_E_NODE_UNREACHABLE,
            XXNET_E_NODE_DOWN,
            XXNET_E_NODE_REMOVED,
            XXNET_E_NODE_MOVED,
            XXNET_E_NO_SERVICE,
            XXNET_E_UNKNOWN_TOKEN,
            XXNET_E_CLUSTER_FILE,
            XXNET_E_NO_CONTENT,
            XXNET_E_BAD_PATH,
            XXNET_E_NO_SPACE,
            XXNET_E_CHECKSUM,
            XXNET_E_SIZE_MISMATCH,
            XXNET_E_DISK,
            XXNET_E_CANCELLED,
            XXNET_E_UNKNOWN_TASK,
        ];
        let mut seen = std::collections::HashSet::new();
        for c in codes {
            assert!(seen.insert(c), "code {c} used twice");
            assert_ne!(describe(c), "unknown code", "code {c} has no text");
        }
        assert_eq!(describe(12345), "unknown code");
        assert!(is_protocol_error(XXNET_E_TRUNCATED));
        assert!(!is_protocol_error(XXNET_E_CONN_RESET));
    }
}
