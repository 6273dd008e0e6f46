//! A session: what survives a peer's TCP connections (docs/PROTOCOL.md §5).
//!
//! The sending half numbers messages per lane, keeps every message until the
//! peer acknowledges it, and hands unacknowledged ones out again on a new
//! connection. The receiving half delivers each sequence number once, drops
//! repeats, and owes the peer cumulative acknowledgements. Need-ack
//! messages carry a tracking id and a deadline. No clock is read here: `now`
//! comes in from the caller.

use super::handshake::SessionSync;
use super::outbound::{seq_le, Cancel, MsgInfo, Outbound};
use super::{FrameHeader, ProtoError};
use crate::codes::*;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::os::raw::c_int;
use std::time::{Duration, Instant};

/// Number of lanes.
const LANES: usize = FrameHeader::LANES;

/// Something the session did that the host must hear about (or an account must be credited for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// The peer acknowledged the message; `report`: it is a need-ack message not yet resolved (emit DELIVERED).
    Acked { info: MsgInfo, report: bool },
    /// A run of acknowledged untracked messages charged to one account:
    /// nothing to report but counters and the account's release.
    AckedRun { acct: u32, msgs: u64, bytes: u64 },
    /// The message left the session undelivered (the session ended); `report`
    /// says how it is reported: as part of a SEND_FAILED count, as EXPIRED
    /// (need-ack), or not at all (a need-ack message already resolved).
    Failed { info: MsgInfo, report: Report },
    /// A need-ack message passed its deadline: report EXPIRED with `code`.
    /// `removed` is set when it was cancelled before being sent (credit its bytes).
    Expired {
        track: u64,
        code: c_int,
        removed: Option<MsgInfo>,
    },
}

/// How a failed message is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// Counted in a SEND_FAILED event.
    SendFailed,
    /// Its own EXPIRED event (need-ack message).
    Expired,
    /// Already resolved (its EXPIRED was emitted earlier).
    Silent,
}

/// Whether a received message is new.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accept {
    /// The next message on its lane: deliver it.
    Deliver,
    /// Already delivered in this session: drop it.
    Duplicate,
}

/// What a handshake changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resumed {
    /// The peer is a new instance: the old session's messages were failed
    /// with XXNET_E_PEER_RESTARTED and numbering restarted.
    pub restarted: bool,
    /// Messages that will be sent again because the peer had not acknowledged them.
    pub resent: usize,
    /// Same instance, but it no longer knows our numbering (it ended the
    /// session on its side, e.g. xxnet_close or giving up while we were
    /// apart): our held messages were failed with XXNET_E_PEER_CLOSED and
    /// numbering restarted.
    pub ended_by_peer: bool,
}

/// Acknowledge at once when this many messages or bytes are owed.
const ACK_EVERY_MSGS: u32 = 32;
const ACK_EVERY_BYTES: usize = 128 * 1024;

/// Per-peer session state.
#[derive(Debug)]
pub struct Session {
    /// Id of our current send session (our numbering toward this peer).
    send_id: u64,
    /// Peer instance the send session is bound to (0 until the first handshake).
    bound_instance: u64,
    /// Outgoing messages: queued and in flight.
    pub out: Outbound,
    /// The peer's send-session id our receive state belongs to.
    recv_id: u64,
    /// Last delivered sequence number per lane.
    delivered: [u32; LANES],
    /// Last sequence number per lane the peer acknowledged (0: none).
    acked: [u32; LANES],
    /// Messages and bytes delivered since our last ACK.
    owed_msgs: u32,
    owed_bytes: usize,
    /// When the owed ACK must go out at the latest.
    ack_due: Option<Instant>,
    /// Unresolved need-ack messages: id → lane.
    tracked: HashMap<u64, u8>,
    expiries: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Repeats dropped by the receiving half.
    pub duplicates: u64,
}

impl Session {
    /// A session numbering from 1 under `send_id` (random, nonzero).
    pub fn new(send_id: u64, fragment_size: usize) -> Session {
        Session {
            send_id,
            bound_instance: 0,
            out: Outbound::new(fragment_size),
            recv_id: 0,
            delivered: [0; LANES],
            acked: [0; LANES],
            owed_msgs: 0,
            owed_bytes: 0,
            ack_due: None,
            tracked: HashMap::new(),
            expiries: BinaryHeap::new(),
            duplicates: 0,
        }
    }

    /// Our side of the handshake's session block.
    pub fn sync(&self) -> SessionSync {
        SessionSync {
            send_id: self.send_id,
            recv_id: self.recv_id,
            delivered: self.delivered,
        }
    }

    /// The peer instance this session is bound to (0: none yet).
    pub fn bound_instance(&self) -> u64 {
        self.bound_instance
    }

    /// Applies the peer's handshake block: detects a restart, credits what
    /// the peer already delivered, and rewinds the rest for resending.
    pub fn on_handshake(
        &mut self,
        peer_instance: u64,
        theirs: &SessionSync,
        out: &mut Vec<SessionEvent>,
    ) -> Resumed {
        let mut r = Resumed::default();
        if self.bound_instance != 0 && self.bound_instance != peer_instance {
            // The peer restarted: nothing it had is left. Fail what we held
            // and number from 1 again (same send id: the new instance has
            // never seen our old numbering).
            r.restarted = true;
            self.fail_all(out);
        } else if self.bound_instance != 0 && self.peer_forgot(theirs) {
            // Same instance, it acknowledged some of our numbering once, and
            // no longer tracks it: it ended the session on its side.
            // Resending into its fresh state would leave a gap; end ours too.
            // (A peer that never learned our send id acknowledged nothing:
            // everything we sent is still held, numbered from 1, and goes
            // again below.)
            r.ended_by_peer = true;
            self.fail_all(out);
        }
        self.bound_instance = peer_instance;
        if theirs.send_id != self.recv_id {
            // A send session we have not seen: its numbering starts at 1.
            self.recv_id = theirs.send_id;
            self.delivered = [0; LANES];
            self.owed_msgs = 0;
            self.owed_bytes = 0;
            self.ack_due = None;
        }
        if theirs.recv_id == self.send_id {
            for (lane, &upto) in theirs.delivered.iter().enumerate() {
                self.ack_lane(lane as u8, upto, out);
            }
        }
        r.resent = self.out.rewind();
        r
    }

    /// True when the peer's block shows it delivered less of our numbering
    /// than it once acknowledged: it dropped its receive state (ended the
    /// session on its side). A peer only acknowledges what it delivered, so
    /// within one session its `delivered` never falls behind our `acked`.
    fn peer_forgot(&self, theirs: &SessionSync) -> bool {
        let delivered = if theirs.recv_id == self.send_id {
            theirs.delivered
        } else {
            [0; LANES]
        };
        self.acked
            .iter()
            .zip(delivered)
            .any(|(&acked, d)| acked != 0 && (d == 0 || !seq_le(acked, d)))
    }

    /// Ends the send session: every held message fails (the caller reports it
    /// with its reason), and numbering restarts under `new_send_id` (so the
    /// peer resets its receive state).
    pub fn end(&mut self, new_send_id: u64, out: &mut Vec<SessionEvent>) {
        self.fail_all(out);
        self.send_id = new_send_id;
        self.bound_instance = 0;
    }

    fn fail_all(&mut self, out: &mut Vec<SessionEvent>) {
        let tracked = &mut self.tracked;
        self.out.drain_with(|info| {
            let report = if info.tag.track == 0 {
                Report::SendFailed
            } else if tracked.remove(&info.tag.track).is_some() {
                Report::Expired
            } else {
                Report::Silent
            };
            out.push(SessionEvent::Failed { info, report });
        });
        self.tracked.clear();
        self.expiries.clear();
        self.acked = [0; LANES];
    }

    /// Checks a received message's sequence number.
    pub fn accept(&mut self, lane: u8, seq: u32) -> Result<Accept, ProtoError> {
        let d = self.delivered[lane as usize];
        if seq == FrameHeader::next_seq(d) {
            self.delivered[lane as usize] = seq;
            return Ok(Accept::Deliver);
        }
        if d != 0 && seq_le(seq, d) {
            self.duplicates += 1;
            return Ok(Accept::Duplicate);
        }
        Err(ProtoError::BadFrame("message seq out of order"))
    }

    /// Notes a delivered message: an ACK is owed, at once past a threshold, else within `delay`.
    /// Returns true when the ACK's due time moved earlier (the caller re-arms its timer only then).
    pub fn owe_ack(&mut self, bytes: usize, now: Instant, delay: Duration) -> bool {
        self.owed_msgs += 1;
        self.owed_bytes += bytes;
        let due = if self.owed_msgs >= ACK_EVERY_MSGS || self.owed_bytes >= ACK_EVERY_BYTES {
            now
        } else {
            now + delay
        };
        match self.ack_due {
            Some(d) if d <= due => false,
            _ => {
                self.ack_due = Some(due);
                true
            }
        }
    }

    /// When an owed ACK must be sent.
    pub fn ack_due(&self) -> Option<Instant> {
        self.ack_due
    }

    /// Takes the owed acknowledgement, if any.
    pub fn take_ack(&mut self) -> Option<[u32; LANES]> {
        self.ack_due?;
        self.ack_due = None;
        self.owed_msgs = 0;
        self.owed_bytes = 0;
        Some(self.delivered)
    }

    /// Applies a cumulative ACK from the peer.
    pub fn on_ack(&mut self, acked: &[u32; LANES], out: &mut Vec<SessionEvent>) {
        for (lane, &upto) in acked.iter().enumerate() {
            self.ack_lane(lane as u8, upto, out);
        }
    }

    fn ack_lane(&mut self, lane: u8, upto: u32, out: &mut Vec<SessionEvent>) {
        let tracked = &mut self.tracked;
        let acked = &mut self.acked[lane as usize];
        self.out.ack(lane, upto, |info| {
            *acked = info.seq;
            if info.tag.track == 0 {
                // The common case: fold into the previous run of the same account.
                if let Some(SessionEvent::AckedRun { acct, msgs, bytes }) = out.last_mut() {
                    if *acct == info.tag.acct {
                        *msgs += 1;
                        *bytes += info.len as u64;
                        return;
                    }
                }
                out.push(SessionEvent::AckedRun {
                    acct: info.tag.acct,
                    msgs: 1,
                    bytes: info.len as u64,
                });
                return;
            }
            let report = tracked.remove(&info.tag.track).is_some();
            out.push(SessionEvent::Acked { info, report });
        });
    }

    /// Registers a need-ack message (already pushed on `lane`) with its deadline.
    pub fn track(&mut self, track: u64, lane: u8, deadline: Instant) {
        self.tracked.insert(track, lane);
        self.expiries.push(Reverse((deadline, track)));
    }

    /// Unresolved need-ack messages.
    pub fn tracked(&self) -> usize {
        self.tracked.len()
    }

    /// The earliest need-ack deadline.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiries.peek().map(|Reverse((at, _))| *at)
    }

    /// Expires need-ack messages whose deadline has passed.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<SessionEvent>) {
        while let Some(&Reverse((at, track))) = self.expiries.peek() {
            if at > now {
                return;
            }
            self.expiries.pop();
            let Some(lane) = self.tracked.remove(&track) else {
                continue; // resolved meanwhile
            };
            let ev = match self.out.cancel_unsent_info(lane, track) {
                (Cancel::Removed, info) => SessionEvent::Expired {
                    track,
                    code: XXNET_E_EXPIRED_UNSENT,
                    removed: info,
                },
                _ => SessionEvent::Expired {
                    track,
                    code: XXNET_E_ACK_TIMEOUT,
                    removed: None,
                },
            };
            out.push(ev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::outbound::MsgTag;
    use crate::proto::WriteBuf;
    use bytes::Bytes;

    fn sync(s: &Session) -> SessionSync {
        s.sync()
    }

    #[test]
    fn accept_delivers_in_order_and_drops_repeats() {
        let mut s = Session::new(1, 1024);
        assert_eq!(s.accept(0, 1), Ok(Accept::Deliver));
        assert_eq!(s.accept(0, 2), Ok(Accept::Deliver));
        assert_eq!(s.accept(0, 2), Ok(Accept::Duplicate));
        assert_eq!(s.accept(0, 1), Ok(Accept::Duplicate));
        assert!(s.accept(0, 4).is_err(), "a gap is a protocol error");
        assert!(s.accept(1, 2).is_err(), "lanes start at 1");
        assert_eq!(s.accept(1, 1), Ok(Accept::Deliver));
        assert_eq!(s.duplicates, 2);
    }

    #[test]
    fn handshake_credits_what_the_peer_delivered_and_resends_the_rest() {
        let mut a = Session::new(11, 1024);
        let mut b = Session::new(22, 1024);
        let mut ev = Vec::new();
        a.on_handshake(2, &sync(&b), &mut ev);
        b.on_handshake(1, &sync(&a), &mut ev);
        for i in 0..5u32 {
            a.out.push(0, i, Bytes::from_static(b"x"));
        }
        let mut w = WriteBuf::new();
        a.out.fill(&mut w, usize::MAX);
        // b delivered three before the connection broke.
        for seq in 1..=3 {
            assert_eq!(b.accept(0, seq), Ok(Accept::Deliver));
        }
        // Reconnect: exchange blocks again.
        let r = a.on_handshake(2, &sync(&b), &mut ev);
        assert_eq!(
            r,
            Resumed {
                restarted: false,
                resent: 2,
                ended_by_peer: false
            }
        );
        assert_eq!(
            ev.iter()
                .map(|e| match e {
                    SessionEvent::Acked { .. } => 1,
                    SessionEvent::AckedRun { msgs, .. } => *msgs,
                    _ => 0,
                })
                .sum::<u64>(),
            3
        );
        let mut w = WriteBuf::new();
        a.out.fill(&mut w, usize::MAX);
        assert_eq!(a.out.inflight_msgs(), 2);
        assert_eq!(b.accept(0, 4), Ok(Accept::Deliver));
    }

    #[test]
    fn peer_restart_fails_everything_held_and_renumbers() {
        let mut a = Session::new(11, 1024);
        let b = Session::new(22, 1024);
        let mut ev = Vec::new();
        a.on_handshake(2, &sync(&b), &mut ev);
        a.out.push_tagged(
            0,
            7,
            Bytes::from_static(b"t"),
            MsgTag {
                track: 99,
                ..MsgTag::default()
            },
        );
        a.track(99, 0, Instant::now() + Duration::from_secs(60));
        a.out.push(1, 8, Bytes::from_static(b"u"));
        let mut w = WriteBuf::new();
        a.out.fill(&mut w, usize::MAX);
        let fresh = Session::new(33, 1024);
        let r = a.on_handshake(3, &sync(&fresh), &mut ev);
        assert!(r.restarted);
        let reports: Vec<Report> = ev
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Failed { report, .. } => Some(*report),
                _ => None,
            })
            .collect();
        assert_eq!(reports, vec![Report::Expired, Report::SendFailed]);
        assert!(a.out.is_idle());
        a.out.push(0, 9, Bytes::new());
        let mut w = WriteBuf::new();
        a.out.fill(&mut w, usize::MAX);
        let mut fresh = fresh;
        fresh.on_handshake(1, &a.sync(), &mut Vec::new());
        assert_eq!(
            fresh.accept(0, 1),
            Ok(Accept::Deliver),
            "numbering restarted"
        );
    }

    #[test]
    fn need_ack_resolves_exactly_once() {
        let t0 = Instant::now();
        let mut a = Session::new(11, 1024);
        let mut ev = Vec::new();
        a.on_handshake(2, &Session::new(22, 1024).sync(), &mut ev);
        let tag = |t| MsgTag {
            track: t,
            ..MsgTag::default()
        };
        a.out.push_tagged(0, 1, Bytes::from_static(b"a"), tag(1));
        a.track(1, 0, t0 + Duration::from_millis(100));
        a.out.push_tagged(0, 2, Bytes::from_static(b"b"), tag(2));
        a.track(2, 0, t0 + Duration::from_millis(100));
        a.out.push_tagged(0, 3, Bytes::from_static(b"c"), tag(3));
        a.track(3, 0, t0 + Duration::from_millis(100));
        let mut w = WriteBuf::new();
        a.out.fill(&mut w, 1); // message 1 only
        let so_far = w.len();
        a.out.fill(&mut w, so_far + 1); // and 2
        a.on_ack(&[1, 0, 0, 0], &mut ev);
        assert!(ev.contains(&SessionEvent::Acked {
            info: MsgInfo {
                lane: 0,
                msg_id: 1,
                seq: 1,
                len: 1,
                tag: tag(1)
            },
            report: true
        }));
        ev.clear();
        a.expire(t0 + Duration::from_millis(100), &mut ev);
        let codes: Vec<(u64, c_int)> = ev
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Expired { track, code, .. } => Some((*track, *code)),
                _ => None,
            })
            .collect();
        assert!(codes.contains(&(2, XXNET_E_ACK_TIMEOUT)));
        assert!(codes.contains(&(3, XXNET_E_EXPIRED_UNSENT)));
        assert_eq!(a.tracked(), 0);
        // A late ACK for message 2 releases it without a second report.
        ev.clear();
        a.on_ack(&[2, 0, 0, 0], &mut ev);
        assert_eq!(
            ev,
            vec![SessionEvent::Acked {
                info: MsgInfo {
                    lane: 0,
                    msg_id: 2,
                    seq: 2,
                    len: 1,
                    tag: tag(2)
                },
                report: false
            }]
        );
        // Message 3 was cancelled: never sent, no gap.
        let mut w = WriteBuf::new();
        assert_eq!(a.out.fill(&mut w, usize::MAX).msgs, 0);
    }

    #[test]
    fn acks_are_batched() {
        let t0 = Instant::now();
        let d = Duration::from_millis(5);
        let mut s = Session::new(1, 1024);
        assert_eq!(s.take_ack(), None);
        s.owe_ack(10, t0, d);
        assert_eq!(s.ack_due(), Some(t0 + d));
        for _ in 1..ACK_EVERY_MSGS {
            s.owe_ack(10, t0, d);
        }
        assert_eq!(s.ack_due(), Some(t0), "due at once past the threshold");
        assert_eq!(s.take_ack(), Some([0; LANES]));
        assert_eq!(s.take_ack(), None);
    }

    #[test]
    fn a_peer_that_forgot_our_numbering_ends_the_session_cleanly() {
        let mut a = Session::new(11, 1024);
        let mut b = Session::new(22, 1024);
        let mut ev = Vec::new();
        a.on_handshake(2, &b.sync(), &mut ev);
        b.on_handshake(1, &a.sync(), &mut ev);
        for i in 0..4u32 {
            a.out.push(0, i, Bytes::from_static(b"x"));
        }
        let mut w = WriteBuf::new();
        a.out.fill(&mut w, usize::MAX);
        for seq in 1..=2 {
            b.accept(0, seq).unwrap();
        }
        a.on_ack(&[2, 0, 0, 0], &mut ev);
        // b ends its side (xxnet_close while apart): a fresh session, same instance.
        let fresh = Session::new(33, 1024);
        ev.clear();
        let r = a.on_handshake(2, &fresh.sync(), &mut ev);
        assert!(r.ended_by_peer && !r.restarted, "{r:?}");
        assert_eq!(ev.len(), 2, "the two unacknowledged messages are reported");
        // Its fresh state re-learns our id but delivered nothing: same verdict.
        let mut a = Session::new(11, 1024);
        let mut b = Session::new(22, 1024);
        a.on_handshake(2, &b.sync(), &mut ev);
        b.on_handshake(1, &a.sync(), &mut ev);
        a.out.push(0, 1, Bytes::from_static(b"x"));
        a.out.fill(&mut WriteBuf::new(), usize::MAX);
        a.on_ack(&[1, 0, 0, 0], &mut ev);
        let mut fresh = Session::new(44, 1024);
        fresh.on_handshake(1, &a.sync(), &mut ev);
        assert!(a.on_handshake(2, &fresh.sync(), &mut ev).ended_by_peer);
        // A peer that simply never learned our id (nothing acknowledged) is not "ended".
        let mut a = Session::new(11, 1024);
        a.on_handshake(2, &Session::new(22, 1024).sync(), &mut ev);
        a.out.push(0, 1, Bytes::from_static(b"x"));
        a.out.fill(&mut WriteBuf::new(), usize::MAX);
        let r = a.on_handshake(2, &Session::new(22, 1024).sync(), &mut ev);
        assert_eq!((r.ended_by_peer, r.resent), (false, 1));
    }
}
