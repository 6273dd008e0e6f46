//! Per-connection outbound lanes, fragmentation and the write buffer. STUB: to be implemented.

use bytes::Bytes;
use std::io::IoSlice;

/// Bytes waiting to be written to a socket: small frames copied into one
/// contiguous buffer, large payloads referenced without a copy.
#[derive(Debug, Default)]
pub struct WriteBuf {}

impl WriteBuf {
    pub fn new() -> Self {
        WriteBuf {}
    }
    /// Bytes pending.
    pub fn len(&self) -> usize {
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Appends raw bytes (preface, control frames), copying them.
    pub fn put_slice(&mut self, _bytes: &[u8]) {
        todo!()
    }
    /// Appends a payload slice; large ones are referenced, small ones copied.
    pub fn put_payload(&mut self, _payload: Bytes) {
        todo!()
    }
    /// Fills `dst` with slices of pending bytes in order; returns how many were filled.
    pub fn io_slices<'a>(&'a self, _dst: &mut [IoSlice<'a>]) -> usize {
        todo!()
    }
    /// Drops `n` written bytes from the front; returns the messages whose
    /// last byte is now written (see `end_message`).
    pub fn advance(&mut self, _n: usize) -> FillStats {
        todo!()
    }
    /// Marks that the bytes appended so far complete one message (lane,
    /// msg_id, payload length): it counts as sent once they are all written.
    pub fn end_message(&mut self, _lane: u8, _msg_id: u32, _payload_len: usize) {
        todo!()
    }
    /// Clears the buffer and summarises the marked messages not completely
    /// written (they are reported as failed when a connection dies).
    pub fn drain_unwritten(&mut self) -> DrainSummary {
        todo!()
    }
}

/// Messages counted by `Outbound::fill` (encoded) or `WriteBuf::advance` (written).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FillStats {
    /// Messages whose last part was encoded.
    pub msgs: u64,
    /// Payload bytes of those messages (counted when a message completes).
    pub bytes: u64,
}

/// Messages removed by `Outbound::drain` (reported in SEND_FAILED).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainSummary {
    pub msgs: u64,
    pub bytes: u64,
    /// Lane and msg_id of the first message removed.
    pub first: Option<(u8, u32)>,
}

/// Per-lane queues of messages waiting to be framed.
#[derive(Debug)]
pub struct Outbound {}

impl Outbound {
    pub fn new(_fragment_size: usize) -> Self {
        Outbound {}
    }
    /// Queues one message on a lane (lane < FrameHeader::LANES).
    pub fn push(&mut self, _lane: u8, _msg_id: u32, _payload: Bytes) {
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        todo!()
    }
    /// Messages not yet completely encoded.
    pub fn queued_msgs(&self) -> usize {
        todo!()
    }
    /// Encodes DATA frames into `out`, interleaving lanes, until `out.len() >= limit` or nothing is left.
    pub fn fill(&mut self, _out: &mut WriteBuf, _limit: usize) -> FillStats {
        todo!()
    }
    /// Removes every message not completely encoded.
    pub fn drain(&mut self) -> DrainSummary {
        todo!()
    }
}

impl DrainSummary {
    /// Adds another summary after this one (keeps the earlier `first`).
    pub fn merge(&mut self, other: DrainSummary) {
        self.msgs += other.msgs;
        self.bytes += other.bytes;
        if self.first.is_none() {
            self.first = other.first;
        }
    }
}
