//! Sans-IO protocol logic: no sockets, no threads, no clocks.
//!
//! Bytes and `now` go in, frames, messages and decisions come out; the
//! reactor (`crate::reactor`) only moves bytes between sockets and these
//! types. Everything here is tested deterministically.

pub mod auth;
pub mod decoder;
pub mod endpoint;
pub mod error;
pub mod event;
pub mod frame;
pub mod handshake;
pub mod idmap;
pub mod outbound;
pub mod pool;
pub mod reassembly;
pub mod rpc;
pub mod session;

pub use decoder::FrameDecoder;
pub use error::ProtoError;
pub use frame::{Frame, FrameHeader, FrameType, Preface};
pub use handshake::{AckStatus, Hello, HelloAck, SessionSync};
pub use outbound::{Cancel, DrainSummary, FillStats, MsgInfo, MsgTag, Outbound, WriteBuf};
pub use reassembly::{InMessage, Reassembler};
