//! One connection per peer pair: the simultaneous-connect tie-break
//! (docs/PROTOCOL.md §3). Pure decisions, no sockets.

use std::cmp::Ordering;
use std::net::{IpAddr, SocketAddr};

/// What the pool knows about a peer when a HELLO from it arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerView {
    /// We have an established connection to the peer.
    pub established: bool,
    /// We have our own connect attempt to the peer in progress.
    pub pending_attempt: bool,
    /// The peer told us earlier it abandoned the attempt with this HELLO's nonce.
    pub nonce_abandoned: bool,
}

/// The answer to a HELLO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelloDecision {
    /// Accept; nothing else changes.
    Accept,
    /// Accept and close the established connection it replaces (the peer lost it).
    AcceptReplacing,
    /// Accept and drop our own pending attempt (its nonce goes in HELLO_ACK).
    AcceptAbandoningOurs,
    /// Refuse as a duplicate: our own attempt (or the established connection) wins.
    RefuseDuplicate,
}

/// Orders announced addresses the same way on every node: IPv4 before IPv6, then IP bytes, then port.
pub fn compare_addrs(a: &SocketAddr, b: &SocketAddr) -> Ordering {
    fn key(ip: &IpAddr) -> (u8, [u8; 16]) {
        match ip {
            IpAddr::V4(v4) => {
                let mut k = [0u8; 16];
                k[..4].copy_from_slice(&v4.octets());
                (4, k)
            }
            IpAddr::V6(v6) => (6, v6.octets()),
        }
    }
    key(&a.ip())
        .cmp(&key(&b.ip()))
        .then(a.port().cmp(&b.port()))
}

/// Decides what to do with a HELLO from a listening peer `theirs`, given our
/// own announced address `ours` and what we know about the peer.
pub fn decide_hello(
    ours: Option<&SocketAddr>,
    theirs: &SocketAddr,
    view: PeerView,
) -> HelloDecision {
    if view.nonce_abandoned {
        return HelloDecision::RefuseDuplicate;
    }
    if view.established {
        return HelloDecision::AcceptReplacing;
    }
    if view.pending_attempt {
        // The connection opened by the smaller address wins.
        let we_are_smaller = match ours {
            Some(o) => compare_addrs(o, theirs) == Ordering::Less,
            None => false,
        };
        return if we_are_smaller {
            HelloDecision::RefuseDuplicate
        } else {
            HelloDecision::AcceptAbandoningOurs
        };
    }
    HelloDecision::Accept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const PENDING: PeerView = PeerView {
        established: false,
        pending_attempt: true,
        nonce_abandoned: false,
    };

    #[test]
    fn both_sides_of_a_race_keep_the_same_connection() {
        let (x, y) = (a("127.0.0.1:5000"), a("127.0.0.1:6000"));
        // x receives y's HELLO while x's attempt is pending: x is smaller, refuses.
        assert_eq!(
            decide_hello(Some(&x), &y, PENDING),
            HelloDecision::RefuseDuplicate
        );
        // y receives x's HELLO while y's attempt is pending: y is larger, accepts x's.
        assert_eq!(
            decide_hello(Some(&y), &x, PENDING),
            HelloDecision::AcceptAbandoningOurs
        );
    }

    #[test]
    fn ordering_is_total_and_antisymmetric() {
        let addrs = [
            a("127.0.0.1:1"),
            a("127.0.0.2:1"),
            a("[::1]:1"),
            a("10.0.0.1:2"),
            a("[::1]:2"),
        ];
        for p in &addrs {
            for q in &addrs {
                assert_eq!(compare_addrs(p, q), compare_addrs(q, p).reverse());
            }
        }
        assert_eq!(
            compare_addrs(&addrs[0], &addrs[2]),
            Ordering::Less,
            "v4 sorts before v6"
        );
    }

    #[test]
    fn abandoned_nonce_is_refused_even_when_established() {
        let view = PeerView {
            established: true,
            pending_attempt: false,
            nonce_abandoned: true,
        };
        assert_eq!(
            decide_hello(Some(&a("127.0.0.1:1")), &a("127.0.0.1:2"), view),
            HelloDecision::RefuseDuplicate
        );
    }

    #[test]
    fn new_hello_while_established_replaces() {
        let view = PeerView {
            established: true,
            pending_attempt: false,
            nonce_abandoned: false,
        };
        assert_eq!(
            decide_hello(Some(&a("127.0.0.1:1")), &a("127.0.0.1:2"), view),
            HelloDecision::AcceptReplacing
        );
    }

    #[test]
    fn fresh_peer_is_accepted_and_non_listener_never_wins() {
        let none = PeerView {
            established: false,
            pending_attempt: false,
            nonce_abandoned: false,
        };
        assert_eq!(
            decide_hello(None, &a("127.0.0.1:2"), none),
            HelloDecision::Accept
        );
        assert_eq!(
            decide_hello(None, &a("127.0.0.1:2"), PENDING),
            HelloDecision::AcceptAbandoningOurs
        );
    }
}
