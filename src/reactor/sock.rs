//! One TCP socket: non-blocking reads into the endpoint's buffer and
//! vectored writes from its write buffer.

use crate::proto::WriteBuf;
use bytes::BytesMut;
use mio::net::TcpStream;
use std::io::{self, IoSlice, Write};
use std::os::fd::AsRawFd;

/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    /// This thread's shared read chunk (see `Sock::read_into`): reads for
    /// links without a partial frame land here and leave as slices of it.
    static READ_CHUNK_SHARED: std::cell::RefCell<BytesMut> =
        std::cell::RefCell::new(BytesMut::new());
}

/// What one read call produced.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Bytes were appended to the buffer.
    Data(usize),
    /// Nothing more for now.
    WouldBlock,
    /// The peer closed its side.
    Eof,
}

#[derive(Debug)]
pub struct Sock {
    pub stream: TcpStream,
    /// A non-blocking connect is in progress.
    pub connecting: bool,
    /// Reading is paused because the host's receive queue is full.
    pub read_paused: bool,
}

impl Sock {
    pub fn new(stream: TcpStream, connecting: bool) -> Sock {
        Sock {
            stream,
            connecting,
            read_paused: false,
        }
    }

    /// One `read(2)` of at most `max` bytes into `buf`, reserving at least
    /// `need` bytes (the rest of the frame at its front).
    ///
    /// An empty `buf` (the endpoint holds no partial frame for this link,
    /// which is every idle link) owns no memory: the bytes are read into this
    /// thread's shared read chunk and handed over as a slice of it, so an
    /// idle connection costs no read buffer, and many connections share one
    /// 64 KiB allocation instead of holding one each. A link only gets a
    /// buffer of its own while a frame is incomplete.
    pub fn read_into(
        &mut self,
        buf: &mut BytesMut,
        need: usize,
        max: usize,
    ) -> io::Result<ReadOutcome> {
        if buf.is_empty() {
            return READ_CHUNK_SHARED.with(|chunk| {
                let mut chunk = chunk.borrow_mut();
                let r = self.read_spare(&mut chunk, need, max);
                if let Ok(ReadOutcome::Data(_)) = r {
                    *buf = chunk.split();
                }
                r
            });
        }
        self.read_spare(buf, need, max)
    }

    fn read_spare(
        &mut self,
        buf: &mut BytesMut,
        need: usize,
        max: usize,
    ) -> io::Result<ReadOutcome> {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 || buf.capacity() - buf.len() < need {
            buf.reserve(READ_CHUNK.max(need));
        }
        let fd = self.stream.as_raw_fd();
        loop {
            let spare = buf.spare_capacity_mut();
            let len = spare.len().min(max.max(1));
            // SAFETY: reading into the spare capacity of the buffer; the
            // kernel writes at most `len <= spare.len()` bytes, and only
            // those written are made visible by `set_len`.
            let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), len) };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::WouldBlock => return Ok(ReadOutcome::WouldBlock),
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(err),
                }
            }
            if n == 0 {
                return Ok(ReadOutcome::Eof);
            }
            // SAFETY: the kernel initialised `n` bytes of the spare capacity.
            unsafe { buf.set_len(buf.len() + n as usize) };
            return Ok(ReadOutcome::Data(n as usize));
        }
    }

    /// One `writev(2)` of up to 64 pieces of `wbuf`. `Ok(None)`: would block.
    pub fn write_from(&mut self, wbuf: &WriteBuf) -> io::Result<Option<usize>> {
        let mut slices = [IoSlice::new(&[]); 64];
        let n = wbuf.io_slices(&mut slices);
        loop {
            match self.stream.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => return Ok(Some(w)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes what the socket takes now; returns the rest.
    pub fn write_some_of(&mut self, mut bytes: bytes::Bytes) -> bytes::Bytes {
        while !bytes.is_empty() {
            match self.stream.write(&bytes) {
                Ok(0) => return bytes::Bytes::new(),
                Ok(n) => {
                    let _ = bytes.split_to(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return bytes,
                Err(_) => return bytes::Bytes::new(),
            }
        }
        bytes
    }

    /// Reads and discards what is readable; true once the peer closed (or the socket failed).
    pub fn discard_input(&mut self) -> bool {
        let mut sink = [0u8; 4096];
        loop {
            match std::io::Read::read(&mut self.stream, &mut sink) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => return true,
            }
        }
    }

    /// Best-effort, non-blocking write of the last bytes before closing,
    /// then a half-close (FIN after them) and a drain of what the peer
    /// already sent, so closing does not turn into a reset that could
    /// discard those bytes at the peer.
    pub fn write_last(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            match self.stream.write(rest) {
                Ok(0) | Err(_) => break,
                Ok(n) => rest = &rest[n..],
            }
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let mut sink = [0u8; 4096];
        for _ in 0..64 {
            match std::io::Read::read(&mut self.stream, &mut sink) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }
}

/// Keeps at most this many not-yet-sent bytes in a connection's kernel send
/// buffer (Linux `TCP_NOTSENT_LOWAT`). Lanes are interleaved in user space;
/// bytes handed to the kernel can no longer be overtaken, so a deep kernel
/// queue of bulk data would delay a small message behind it.
const NOTSENT_LOWAT: libc::c_int = 128 << 10;

/// Socket options for every connection (best effort: errors are ignored).
/// `recv_buffer`: SO_RCVBUF in bytes, 0 to leave the OS default.
pub fn tune(stream: &mio::net::TcpStream, recv_buffer: usize) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let v: libc::c_int = NOTSENT_LOWAT;
        // SAFETY: a valid socket fd and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                &v as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            let r = recv_buffer.min(libc::c_int::MAX as usize) as libc::c_int;
            if r > 0 {
                libc::setsockopt(
                    stream.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    &r as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (stream, recv_buffer);
}
