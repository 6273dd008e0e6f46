//! Protocol violations by a peer. Each maps to one `XXNET_E_*` code.

use crate::codes::*;
use std::fmt;
use std::os::raw::c_int;

/// Why a connection's byte stream was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtoError {
    /// The peer does not speak xxnet (wrong magic or reserved preface bytes).
    BadPreface,
    /// Right magic, unsupported version.
    BadVersion(u16),
    /// A frame header announced a body above `FrameHeader::MAX_BODY`.
    FrameTooLarge(u32),
    /// A message announced above the receiver's max_message_size.
    MessageTooLarge(u64),
    /// The stream ended mid-preface, mid-frame or mid-message.
    Truncated,
    /// Any other malformed frame; the text says what.
    BadFrame(&'static str),
}

impl ProtoError {
    /// The `XXNET_E_*` code reported to the host.
    pub fn code(&self) -> c_int {
        match self {
            ProtoError::BadPreface => XXNET_E_BAD_PREFACE,
            ProtoError::BadVersion(_) => XXNET_E_BAD_VERSION,
            ProtoError::FrameTooLarge(_) => XXNET_E_FRAME_TOO_LARGE,
            ProtoError::MessageTooLarge(_) => XXNET_E_MESSAGE_TOO_LARGE,
            ProtoError::Truncated => XXNET_E_TRUNCATED,
            ProtoError::BadFrame(_) => XXNET_E_BAD_FRAME,
        }
    }
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::BadPreface => write!(f, "bad preface: peer does not speak xxnet"),
            ProtoError::BadVersion(v) => write!(f, "unsupported protocol version {v}"),
            ProtoError::FrameTooLarge(n) => write!(f, "frame body of {n} bytes is too large"),
            ProtoError::MessageTooLarge(n) => {
                write!(f, "announced message of {n} bytes is too large")
            }
            ProtoError::Truncated => write!(f, "stream ended mid-frame"),
            ProtoError::BadFrame(why) => write!(f, "malformed frame: {why}"),
        }
    }
}

impl std::error::Error for ProtoError {}
