//! One TCP connection: its socket, read buffer, decoder, reassembler and
//! write buffer. Moves bytes; the reactor decides what they mean.

use crate::proto::{FrameDecoder, Reassembler, WriteBuf};
use bytes::BytesMut;
use mio::net::TcpStream;
use std::io::{self, IoSlice, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Outbound: TCP connect in progress.
    Connecting,
    /// Outbound: preface and HELLO sent, waiting for HELLO_ACK.
    AwaitAck,
    /// Inbound: waiting for the peer's preface and HELLO.
    AwaitHello,
    /// Handshake done; DATA flows.
    Established,
    /// Refused or closing: flush what is buffered (a HELLO_ACK), then close.
    Closing,
}

/// Result of a read pass.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Drained the socket (WouldBlock).
    Drained,
    /// Stopped at the byte budget; more may be waiting.
    Budget,
    /// The peer closed its side.
    Eof,
}

/// Read buffer growth step.
pub const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug)]
pub struct Conn {
    pub id: u64,
    pub stream: TcpStream,
    pub state: ConnState,
    /// We opened it.
    pub outgoing: bool,
    /// Nonce of our HELLO (outgoing only).
    pub nonce: u64,
    /// Socket peer address.
    pub remote: SocketAddr,
    /// Peer-table key once known.
    pub peer: Option<usize>,
    /// Address shown in events: the peer's listen address, else `remote`.
    pub shown: SocketAddr,
    pub rbuf: BytesMut,
    pub decoder: FrameDecoder,
    pub reasm: Reassembler,
    pub wbuf: WriteBuf,
    /// CONNECTED was emitted, so DISCONNECTED must be too.
    pub announced: bool,
    /// Handshake / connect deadline.
    pub deadline: Option<Instant>,
    /// Reading is paused because the host's receive queue is full.
    pub read_paused: bool,
}

impl Conn {
    pub fn new(
        id: u64,
        stream: TcpStream,
        remote: SocketAddr,
        outgoing: bool,
        max_message: usize,
    ) -> Conn {
        Conn {
            id,
            stream,
            state: if outgoing {
                ConnState::Connecting
            } else {
                ConnState::AwaitHello
            },
            outgoing,
            nonce: 0,
            remote,
            peer: None,
            shown: remote,
            rbuf: BytesMut::new(),
            decoder: FrameDecoder::new(),
            reasm: Reassembler::new(max_message),
            wbuf: WriteBuf::new(),
            announced: false,
            deadline: None,
            read_paused: false,
        }
    }

    /// Reads into `rbuf` until WouldBlock, EOF or `budget` bytes.
    pub fn read_some(&mut self, budget: usize) -> io::Result<(ReadOutcome, usize)> {
        let fd = self.stream.as_raw_fd();
        let mut total = 0usize;
        loop {
            let want = READ_CHUNK.max(self.decoder.needed(&self.rbuf));
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                self.rbuf.reserve(want);
            }
            let spare = self.rbuf.spare_capacity_mut();
            // SAFETY: reading into the spare capacity of our own buffer; the
            // kernel writes at most `spare.len()` bytes, and only those
            // written are made visible by `set_len`.
            let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), spare.len()) };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::WouldBlock => return Ok((ReadOutcome::Drained, total)),
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(err),
                }
            }
            if n == 0 {
                return Ok((ReadOutcome::Eof, total));
            }
            let n = n as usize;
            // SAFETY: the kernel initialised `n` bytes of the spare capacity.
            unsafe { self.rbuf.set_len(self.rbuf.len() + n) };
            total += n;
            if total >= budget {
                return Ok((ReadOutcome::Budget, total));
            }
        }
    }

    /// Writes as much of `wbuf` as the socket takes. Returns (bytes written, drained-to-WouldBlock).
    pub fn write_some(&mut self) -> io::Result<(usize, bool)> {
        let mut slices = [IoSlice::new(&[]); 64];
        let n = self.wbuf.io_slices(&mut slices);
        if n == 0 {
            return Ok((0, false));
        }
        loop {
            match self.stream.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => return Ok((w, false)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((0, true)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Best-effort, non-blocking write of a few last bytes before closing.
    pub fn write_last(&mut self, bytes: &[u8]) {
        let _ = self.stream.write(bytes);
    }
}
