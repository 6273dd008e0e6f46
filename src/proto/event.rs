//! Events for the host, as the endpoint produces them (field meanings follow `xxnet_event`).

use bytes::Bytes;
use std::net::SocketAddr;
use std::os::raw::c_int;

/// Something the network produced, for the host.
#[derive(Clone, Debug, Default)]
pub struct Event {
    /// `XXNET_EVENT_*` kind.
    pub kind: u32,
    /// `XXNET_OK` or an `XXNET_E_*` reason.
    pub code: c_int,
    /// Session (connection) id, or 0.
    pub conn: u64,
    /// Kind-specific id (need-ack id; 1 for a CONNECTED we initiated).
    pub id: u64,
    /// Kind-specific count (SEND_FAILED: messages; LINK_UP: messages resent).
    pub count: u64,
    /// Kind-specific total (SEND_FAILED: bytes).
    pub total: u64,
    /// Route id of a MESSAGE (or of the first message a SEND_FAILED covers).
    pub msg_id: u32,
    /// Lane of a MESSAGE (or of the first message a SEND_FAILED covers).
    pub lane: u8,
    /// The peer: its listen address if it listens, else its socket address.
    pub peer: Option<SocketAddr>,
    /// Payload of a MESSAGE.
    pub data: Bytes,
    /// The connection's user data (`xxnet_conn_set_user_data`) or the timer's.
    pub user_data: u64,
    /// Node name, NUL-terminated (CALL_REQUEST: the caller; CALL_RESULT: the
    /// node called; NODE_CHANGED), or empty.
    pub node: Bytes,
    /// Service name, NUL-terminated (CALL_REQUEST), or empty.
    pub service: Bytes,
}

impl Event {
    /// Payload bytes this event holds against `recv_queue_limit` until the
    /// host's next poll (received payloads: messages, requests, replies).
    #[inline]
    pub fn queued_bytes(&self) -> usize {
        match self.kind {
            crate::codes::XXNET_EVENT_MESSAGE
            | crate::codes::XXNET_EVENT_CALL_REQUEST
            | crate::codes::XXNET_EVENT_CALL_RESULT => self.data.len(),
            _ => 0,
        }
    }
}
