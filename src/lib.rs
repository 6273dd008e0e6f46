//! xxnet: cluster networking for game-server main loops.
//!
//! A host (C++ game server, LuaJIT engine) links `libxxnet.so` and calls the
//! C ABI in `include/xxnet.h`. Background reactor threads (`io_threads`,
//! default 1) own every socket; everything they produce comes back as events
//! the host drains on its own thread with `xxnet_poll_recv`.
//!
//! Layers (dependencies point one way: ffi → host/bridge → reactor → proto):
//! - [`proto`]: sans-IO framing, handshake, lanes, reassembly, pool decisions.
//! - [`reactor`]: the mio threads, the only code that touches sockets.
//! - [`bridge`]: the command queue and waker to the reactor, events back.
//! - [`host`]: the safe Rust context the C ABI wraps.
//! - [`ffi`]: the C boundary.

#![allow(non_camel_case_types)]

pub mod bridge;
pub mod cluster;
pub mod codes;
pub mod config;
pub mod ffi;
pub mod files;
pub mod host;
pub mod proto;
pub mod reactor;
pub mod timers;

pub use codes::*;
