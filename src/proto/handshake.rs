//! HELLO / HELLO_ACK bodies (docs/PROTOCOL.md §3). STUB: to be implemented.

use super::ProtoError;
use bytes::BytesMut;
use std::net::SocketAddr;

/// Connector's first frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub instance: u64,
    pub nonce: u64,
    pub listen: Option<SocketAddr>,
}

/// HELLO_ACK status.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckStatus {
    Accepted = 0,
    Duplicate = 1,
    Busy = 2,
}

/// Acceptor's first frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloAck {
    pub status: AckStatus,
    pub instance: u64,
    pub abandoned_nonce: u64,
    pub listen: Option<SocketAddr>,
}

impl Hello {
    /// Appends the whole frame (header + body).
    pub fn encode(&self, _out: &mut BytesMut) {
        todo!()
    }
    /// Parses a HELLO body; trailing bytes are ignored.
    pub fn decode(_body: &[u8]) -> Result<Hello, ProtoError> {
        todo!()
    }
}

impl HelloAck {
    /// Appends the whole frame (header + body).
    pub fn encode(&self, _out: &mut BytesMut) {
        todo!()
    }
    /// Parses a HELLO_ACK body; trailing bytes are ignored.
    pub fn decode(_body: &[u8]) -> Result<HelloAck, ProtoError> {
        todo!()
    }
}
