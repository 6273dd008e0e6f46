//! Per-lane reassembly of multi-part messages. STUB: to be implemented.

use super::{FrameHeader, ProtoError};
use bytes::Bytes;

/// A complete received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InMessage {
    pub lane: u8,
    pub msg_id: u32,
    pub seq: u32,
    pub payload: Bytes,
}

/// Joins DATA parts per lane and checks sizes, order and sequence numbers.
#[derive(Debug)]
pub struct Reassembler {}

impl Reassembler {
    pub fn new(_max_message: usize) -> Self {
        Reassembler {}
    }
    /// Feeds one DATA frame; returns a message when one completes.
    pub fn push(&mut self, _header: &FrameHeader, _body: Bytes) -> Result<Option<InMessage>, ProtoError> {
        todo!()
    }
    /// True while some lane has an incomplete message.
    pub fn has_partial(&self) -> bool {
        todo!()
    }
}
