//! The reactor thread: the only code that touches mio and sockets. STUB.

use crate::bridge::ReactorLink;
use crate::config::Config;
use mio::{Poll, Token, Waker};

/// Token of the waker.
pub const WAKER: Token = Token(0);

/// Creates the poll and its waker (on the host's thread, so errors surface in xxnet_new).
pub fn new_poll() -> std::io::Result<(Poll, Waker)> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    Ok((poll, waker))
}

/// Runs the reactor until shutdown.
pub fn run(_poll: Poll, _link: ReactorLink, _cfg: Config) {
    todo!()
}
