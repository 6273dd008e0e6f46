//! Sans-IO frame decoder (preface + frames). STUB: to be implemented.

use super::{Frame, ProtoError};
use bytes::BytesMut;

/// Splits a byte stream into frames. Feed it the connection's read buffer.
#[derive(Debug, Default)]
pub struct FrameDecoder {}

impl FrameDecoder {
    pub fn new() -> Self {
        FrameDecoder {}
    }

    /// Takes the next complete frame off the front of `buf`.
    /// `Ok(None)`: need more bytes. The preface is consumed first.
    pub fn decode(&mut self, _buf: &mut BytesMut) -> Result<Option<Frame>, ProtoError> {
        todo!()
    }

    /// Call at EOF with what is left in `buf`: `Err(Truncated)` if a partial preface or frame remains.
    pub fn finish(&self, _buf: &BytesMut) -> Result<(), ProtoError> {
        todo!()
    }

    /// True once the whole preface has been checked.
    pub fn preface_done(&self) -> bool {
        todo!()
    }

    /// Bytes still missing for the frame at the front of `buf` (0 if unknown); a hint for reserving.
    pub fn needed(&self, _buf: &BytesMut) -> usize {
        todo!()
    }
}
