//! Context configuration (the safe Rust side of `xxnet_config`).

use std::net::IpAddr;

/// Settings fixed when a context is created.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Inbound connections beyond this many open connections are refused (the seed's MaxConn).
    pub max_connections: usize,
    /// Largest message a host may send or a peer may announce.
    pub max_message_size: usize,
    /// Messages larger than this travel in parts of at most this many bytes.
    pub fragment_size: usize,
    /// Time allowed for TCP connect plus the xxnet handshake.
    pub connect_timeout_ms: u64,
    /// Time an accepted connection has to send its preface and HELLO.
    pub handshake_timeout_ms: u64,
    /// Received payload bytes waiting for the host; above it the reactor stops reading sockets until the host polls.
    pub recv_queue_limit: usize,
    /// Address announced to peers when listening on a wildcard address; None: the local address of each outgoing connection.
    pub advertise_ip: Option<IpAddr>,
    /// First reconnect delay; doubles per failed attempt (with jitter) up to `reconnect_max_ms`.
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay.
    pub reconnect_max_ms: u64,
    /// A session without a connection for this long gives up: what it holds is reported failed.
    /// 0: give up at the first failure (no reconnecting).
    pub reconnect_give_up_ms: u64,
    /// A connection silent this long is declared down; PINGs go out after a third of it without sending. 0: no heartbeats.
    pub idle_timeout_ms: u64,
    /// Per destination, queued plus unacknowledged bytes above which sends return XXNET_E_WOULD_BLOCK.
    pub send_high_water: usize,
    /// Backlog under which a blocked destination gets XXNET_EVENT_WRITABLE.
    pub send_low_water: usize,
    /// Default deadline of a need-ack message.
    pub ack_timeout_ms: u64,
    /// This node's name in the cluster directory (issue 5): announced in the
    /// handshake, and the directory entry of that name is the address it listens on.
    pub node_name: Option<String>,
    /// Shared secret: when set, every connection proves knowledge of it in the
    /// handshake (HMAC-SHA256 challenge-response) before anything else is accepted.
    pub auth_secret: Option<Vec<u8>>,
    /// Default deadline of a remote call.
    pub call_timeout_ms: u64,
    /// Calls to one node that may wait for its connection; more fail at once with XXNET_E_WOULD_BLOCK.
    pub call_cache_limit: usize,
    /// SO_RCVBUF of every connection in bytes (0: the OS default with autotuning). A bounded
    /// kernel receive queue keeps small messages from waiting behind megabytes of bulk data.
    pub socket_recv_buffer: usize,
    /// Directory of the download cache (issue 6): `data/` holds the files, `index.json`
    /// what is downloaded. None: downloads are refused.
    pub download_dir: Option<std::path::PathBuf>,
    /// Bytes the cache may hold (0: no limit but the disk's free space).
    pub download_quota: u64,
    /// A download request fails after this long (the seed's 5 minutes).
    pub download_timeout_ms: u64,
    /// Block size of new downloads: a multiple of 64 KiB, at most 4 MiB.
    pub download_block_size: u32,
    /// Blocks requested ahead per download.
    pub download_window: u32,
    /// Bytes per second all downloads together may fetch (0: no limit).
    pub download_rate_limit: u64,
    /// Reactor threads (issue 7, seed 003): each connection lives on reactor
    /// `conn_id % io_threads` for its whole life; listeners accept on reactor 0.
    pub io_threads: usize,
}

impl Config {
    /// Largest fragment size a node may use (a frame body is a fragment plus a small header).
    pub const MAX_FRAGMENT: usize = 1 << 20;
    /// Smallest fragment size accepted.
    pub const MIN_FRAGMENT: usize = 1024;
    /// Most reactor threads a context may run.
    pub const MAX_IO_THREADS: usize = 64;

    /// Checks ranges; returns a description of the first bad field.
    pub fn validate(&self) -> Result<(), String> {
        if !(Self::MIN_FRAGMENT..=Self::MAX_FRAGMENT).contains(&self.fragment_size) {
            return Err(format!(
                "fragment_size {} is outside {}..={}",
                self.fragment_size,
                Self::MIN_FRAGMENT,
                Self::MAX_FRAGMENT
            ));
        }
        if self.max_message_size == 0 || self.max_message_size > u32::MAX as usize {
            return Err(format!(
                "max_message_size {} is outside 1..=4294967295",
                self.max_message_size
            ));
        }
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if self.connect_timeout_ms == 0 || self.handshake_timeout_ms == 0 {
            return Err("timeouts must be at least 1 ms".into());
        }
        if self.reconnect_min_ms == 0 || self.reconnect_max_ms < self.reconnect_min_ms {
            return Err("reconnect_min_ms must be at least 1 and at most reconnect_max_ms".into());
        }
        if self.send_low_water > self.send_high_water || self.send_high_water == 0 {
            return Err(
                "send_low_water must not exceed send_high_water, which must be positive".into(),
            );
        }
        if self.ack_timeout_ms == 0 {
            return Err("ack_timeout_ms must be at least 1".into());
        }
        if self.call_timeout_ms == 0 {
            return Err("call_timeout_ms must be at least 1".into());
        }
        if let Some(name) = &self.node_name {
            if !crate::cluster::directory::valid_name(name) {
                return Err(format!("node_name {name:?} is not a valid node name"));
            }
        }
        if self.auth_secret.as_ref().is_some_and(|s| s.is_empty()) {
            return Err("auth_secret must not be empty (pass NULL for none)".into());
        }
        if self.download_block_size == 0
            || self.download_block_size % crate::files::GRANULE != 0
            || self.download_block_size > crate::files::MAX_BLOCK
        {
            return Err(format!(
                "download_block_size {} is not a multiple of 64 KiB up to 4 MiB",
                self.download_block_size
            ));
        }
        if self.download_window == 0 || self.download_window > 64 {
            return Err("download_window must be 1..=64".into());
        }
        if self.download_timeout_ms == 0 {
            return Err("download_timeout_ms must be at least 1".into());
        }
        if self.io_threads == 0 || self.io_threads > Self::MAX_IO_THREADS {
            return Err(format!(
                "io_threads {} is outside 1..={}",
                self.io_threads,
                Self::MAX_IO_THREADS
            ));
        }
        if self.recv_queue_limit < self.fragment_size {
            return Err("recv_queue_limit must be at least fragment_size".into());
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_connections: 10_000,
            max_message_size: 16 << 20,
            fragment_size: 32 << 10,
            connect_timeout_ms: 5_000,
            handshake_timeout_ms: 5_000,
            recv_queue_limit: 64 << 20,
            advertise_ip: None,
            reconnect_min_ms: 100,
            reconnect_max_ms: 5_000,
            reconnect_give_up_ms: 30_000,
            idle_timeout_ms: 10_000,
            send_high_water: 32 << 20,
            send_low_water: 16 << 20,
            ack_timeout_ms: 5_000,
            node_name: None,
            auth_secret: None,
            call_timeout_ms: 10_000,
            call_cache_limit: 1024,
            socket_recv_buffer: 256 << 10,
            download_dir: None,
            download_quota: 0,
            download_timeout_ms: 300_000,
            download_block_size: 1 << 20,
            download_window: 8,
            download_rate_limit: 0,
            io_threads: 1,
        }
    }
}
