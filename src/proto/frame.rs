//! Preface and frame header layout (docs/PROTOCOL.md §1-2). STUB: to be implemented.

use super::ProtoError;
use bytes::Bytes;

/// The 8-byte connection preface.
pub struct Preface;

impl Preface {
    /// Magic, version 1, reserved.
    pub const BYTES: [u8; 8] = *b"XXNT\x01\x00\x00\x00";
    /// Protocol version spoken.
    pub const VERSION: u16 = 1;
}

/// Frame types.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameType {
    Hello = 1,
    HelloAck = 2,
    Data = 3,
    Ping = 4,
    Pong = 5,
    GoAway = 6,
}

/// A parsed 16-byte frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub body_len: u32,
    pub kind: FrameType,
    pub flags: u8,
    pub lane: u8,
    pub msg_id: u32,
    pub seq: u32,
}

impl FrameHeader {
    /// Header size in bytes.
    pub const LEN: usize = 16;
    /// Largest body a frame may announce.
    pub const MAX_BODY: u32 = (1 << 20) + 64;
    /// DATA flag: first part of a message.
    pub const FIRST: u8 = 1;
    /// DATA flag: last part of a message.
    pub const LAST: u8 = 2;
    /// Number of lanes.
    pub const LANES: usize = 4;

    /// Serialises the header.
    pub fn to_bytes(&self) -> [u8; 16] {
        todo!()
    }

    /// Parses and validates a header (type, flags, lane, reserved, body_len limit).
    pub fn parse(_b: &[u8; 16]) -> Result<FrameHeader, ProtoError> {
        todo!()
    }
}

/// One complete frame; the body is split off the read buffer without a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub header: FrameHeader,
    pub body: Bytes,
}
