//! The connection pool: peers keyed by their listen address.

use crate::proto::Outbound;
use slab::Slab;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

/// Another node (or an anonymous client): its message queue and connections.
#[derive(Debug)]
pub struct Peer {
    /// Addresses this peer is pooled under (its listen address, and the one we dialled if different). Empty for a client that listens nowhere.
    pub keys: SmallVec<[SocketAddr; 2]>,
    /// Address shown in events.
    pub shown: SocketAddr,
    /// Messages waiting to be framed, per lane.
    pub outbound: Outbound,
    /// The established connection (slab key).
    pub active: Option<usize>,
    /// Our own connect attempt in progress (slab key).
    pub attempt: Option<usize>,
    /// Nonces of the peer's attempts it told us it abandoned.
    pub abandoned: SmallVec<[u64; 2]>,
    /// Our attempt was refused as a duplicate: the peer's own connection should arrive by then.
    pub wait_deadline: Option<Instant>,
    /// Queued in the reactor's flush list this turn.
    pub dirty: bool,
}

impl Peer {
    pub fn new(shown: SocketAddr, fragment_size: usize) -> Peer {
        Peer {
            keys: SmallVec::new(),
            shown,
            outbound: Outbound::new(fragment_size),
            active: None,
            attempt: None,
            abandoned: SmallVec::new(),
            wait_deadline: None,
            dirty: false,
        }
    }
}

/// All peers, with the address index.
#[derive(Debug, Default)]
pub struct Pool {
    pub peers: Slab<Peer>,
    pub by_addr: HashMap<SocketAddr, usize>,
}

impl Pool {
    /// The peer pooled under `addr`.
    pub fn lookup(&self, addr: &SocketAddr) -> Option<usize> {
        self.by_addr.get(addr).copied()
    }

    /// Adds a peer and indexes it under `key` if given.
    pub fn insert(&mut self, peer: Peer, key: Option<SocketAddr>) -> usize {
        let id = self.peers.insert(peer);
        if let Some(k) = key {
            self.add_key(id, k);
        }
        id
    }

    /// Indexes peer `id` under another address too, unless that address already belongs to someone.
    pub fn add_key(&mut self, id: usize, key: SocketAddr) {
        if self.by_addr.contains_key(&key) {
            return;
        }
        self.by_addr.insert(key, id);
        self.peers[id].keys.push(key);
    }

    /// Removes a peer and its index entries.
    pub fn remove(&mut self, id: usize) -> Peer {
        let peer = self.peers.remove(id);
        for k in &peer.keys {
            if self.by_addr.get(k) == Some(&id) {
                self.by_addr.remove(k);
            }
        }
        peer
    }
}
