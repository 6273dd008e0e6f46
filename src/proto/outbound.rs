//! Per-connection outbound lanes, fragmentation and the write buffer
//! (docs/PROTOCOL.md §4).
//!
//! [`Outbound`] holds the messages the host queued, per lane, and encodes
//! them as DATA frames into a [`WriteBuf`], interleaving lanes round robin.
//! [`WriteBuf`] holds the bytes waiting for the socket: small pieces are
//! copied into one contiguous buffer, large payloads are referenced, and
//! each message's end position is remembered so that [`WriteBuf::advance`]
//! can say which messages are completely written.

use super::FrameHeader;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::Instant;

/// End position of one message in a [`WriteBuf`]'s byte stream.
#[derive(Clone, Copy, Debug)]
struct Marker {
    /// Stream position (bytes ever appended) just after the message's last byte.
    end: u64,
    lane: u8,
    msg_id: u32,
    len: u64,
}

/// Bytes waiting to be written to a socket: small frames copied into one
/// contiguous buffer, large payloads referenced without a copy.
///
/// The pending bytes are `chunks` (in order) followed by `tail`. Appending a
/// payload of [`WriteBuf::COPY_LIMIT`] bytes or more freezes the tail into a
/// chunk and pushes the payload as its own chunk. Written bytes are dropped
/// from the front with `advance` (O(1) per chunk); the tail's allocation is
/// reused once the chunks split from it have been written and dropped.
#[derive(Debug, Default)]
pub struct WriteBuf {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    /// Pending bytes (chunks + tail).
    len: usize,
    /// Bytes ever appended.
    appended: u64,
    /// Bytes ever written (advanced over).
    written: u64,
    markers: VecDeque<Marker>,
}

impl WriteBuf {
    /// Payloads of at least this many bytes are referenced, smaller ones copied.
    pub const COPY_LIMIT: usize = 4096;

    /// An empty buffer.
    pub fn new() -> Self {
        WriteBuf::default()
    }

    /// Bytes pending.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no byte is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marked messages not completely written yet.
    pub fn pending_msgs(&self) -> usize {
        self.markers.len()
    }

    /// Appends raw bytes (preface, control frames), copying them.
    pub fn put_slice(&mut self, bytes: &[u8]) {
        self.tail.put_slice(bytes);
        self.len += bytes.len();
        self.appended += bytes.len() as u64;
    }

    /// Appends a payload slice; large ones are referenced, small ones copied.
    pub fn put_payload(&mut self, payload: Bytes) {
        if payload.len() < Self::COPY_LIMIT {
            self.put_slice(&payload);
        } else {
            self.push_chunk(payload);
        }
    }

    /// Like [`WriteBuf::put_payload`] for `payload[start..end]`, without
    /// touching the reference count when the piece is copied.
    fn put_payload_range(&mut self, payload: &Bytes, start: usize, end: usize) {
        if end - start < Self::COPY_LIMIT {
            self.put_slice(&payload[start..end]);
        } else {
            self.push_chunk(payload.slice(start..end));
        }
    }

    fn push_chunk(&mut self, chunk: Bytes) {
        if !self.tail.is_empty() {
            let small = self.tail.split().freeze();
            self.chunks.push_back(small);
        }
        self.len += chunk.len();
        self.appended += chunk.len() as u64;
        self.chunks.push_back(chunk);
    }

    /// Fills `dst` with slices of pending bytes in order; returns how many were filled.
    pub fn io_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for c in &self.chunks {
            if n == dst.len() {
                return n;
            }
            dst[n] = IoSlice::new(c);
            n += 1;
        }
        if n < dst.len() && !self.tail.is_empty() {
            dst[n] = IoSlice::new(&self.tail);
            n += 1;
        }
        n
    }

    /// Drops `n` written bytes from the front; returns the messages whose
    /// last byte is now written (see `end_message`).
    ///
    /// Panics if `n > self.len()`.
    pub fn advance(&mut self, n: usize) -> FillStats {
        assert!(
            n <= self.len,
            "advance({n}) past the {} pending bytes",
            self.len
        );
        let mut left = n;
        while left > 0 {
            match self.chunks.front_mut() {
                Some(c) if c.len() <= left => {
                    left -= c.len();
                    self.chunks.pop_front();
                }
                Some(c) => {
                    c.advance(left);
                    left = 0;
                }
                None => {
                    self.tail.advance(left);
                    left = 0;
                }
            }
        }
        if self.chunks.is_empty() && self.tail.is_empty() {
            // Lets the tail reuse its allocation from the start.
            self.tail.clear();
        }
        self.len -= n;
        self.written += n as u64;
        let mut stats = FillStats::default();
        while let Some(m) = self.markers.front() {
            if m.end > self.written {
                break;
            }
            stats.msgs += 1;
            stats.bytes += m.len;
            self.markers.pop_front();
        }
        stats
    }

    /// Gives back the memory of an empty buffer (an idle connection keeps
    /// none; a busy one would regrow it at once, so call this only when the
    /// link has been quiet for a while). Returns false if bytes are pending.
    pub fn release_if_empty(&mut self) -> bool {
        if self.len != 0 || !self.markers.is_empty() {
            return false;
        }
        self.tail = BytesMut::new();
        self.chunks = VecDeque::new();
        self.markers = VecDeque::new();
        true
    }

    /// Marks that the bytes appended so far complete one message (lane,
    /// msg_id, payload length): it counts as sent once they are all written.
    pub fn end_message(&mut self, lane: u8, msg_id: u32, payload_len: usize) {
        self.markers.push_back(Marker {
            end: self.appended,
            lane,
            msg_id,
            len: payload_len as u64,
        });
    }

    /// Clears the buffer and summarises the marked messages not completely
    /// written (they are reported as failed when a connection dies).
    ///
    /// `first` is the oldest of them. A marker whose bytes were all written
    /// but not yet reported by `advance` is not counted.
    pub fn drain_unwritten(&mut self) -> DrainSummary {
        self.chunks.clear();
        self.tail.clear();
        let written_before = self.written;
        self.written = self.appended;
        self.len = 0;
        let mut s = DrainSummary::default();
        for m in self.markers.drain(..) {
            if m.end <= written_before {
                continue;
            }
            s.msgs += 1;
            s.bytes += m.len;
            if s.first.is_none() {
                s.first = Some((m.lane, m.msg_id));
            }
        }
        s
    }
}

/// Messages counted by `Outbound::fill` (encoded) or `WriteBuf::advance` (written).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FillStats {
    /// Messages whose last part was encoded.
    pub msgs: u64,
    /// Payload bytes of those messages (counted when a message completes).
    pub bytes: u64,
}

/// Messages removed by `Outbound::drain` (reported in SEND_FAILED).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainSummary {
    /// Messages removed.
    pub msgs: u64,
    /// Their whole payload bytes.
    pub bytes: u64,
    /// Lane and msg_id of the first message removed.
    pub first: Option<(u8, u32)>,
}

/// Host-side bookkeeping carried by a message: which need-ack id it
/// answers to (0: none) and which backlog account it is charged to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsgTag {
    /// Need-ack id (0: not tracked).
    pub track: u64,
    /// Backlog account (see `crate::bridge::Account`); 0: none.
    pub acct: u32,
    /// Extra DATA flags set on every part ([`FrameHeader::RPC`] or 0).
    pub flags: u8,
}

/// What callbacks learn about a message leaving the queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsgInfo {
    /// Lane it travels on.
    pub lane: u8,
    /// Route id.
    pub msg_id: u32,
    /// Sequence number (0 if it was never encoded).
    pub seq: u32,
    /// Payload bytes.
    pub len: usize,
    /// Host bookkeeping.
    pub tag: MsgTag,
}

/// Result of `Outbound::cancel_unsent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cancel {
    /// Removed before any byte of it was encoded: it will never be sent.
    Removed,
    /// Some or all of it was already encoded (it may reach the peer).
    AlreadySent,
    /// No such message is held (already acknowledged or drained).
    NotFound,
}

/// A held message.
#[derive(Debug)]
struct OutMsg {
    msg_id: u32,
    /// 0 until its first part is encoded.
    seq: u32,
    payload: Bytes,
    tag: MsgTag,
    /// Cancelled while queued; skipped by `fill`.
    cancelled: bool,
    /// When it was completely encoded (for the oldest-unacknowledged age).
    sent_at: Option<Instant>,
}

impl OutMsg {
    fn info(&self, lane: usize) -> MsgInfo {
        MsgInfo {
            lane: lane as u8,
            msg_id: self.msg_id,
            seq: self.seq,
            len: self.payload.len(),
            tag: self.tag,
        }
    }
}

#[derive(Debug)]
struct Lane {
    /// Held messages in order: `msgs[..unsent]` are completely encoded and
    /// wait for the peer's acknowledgement (in flight); `msgs[unsent..]` are
    /// queued, the first of them possibly partly encoded (`sent`). A message
    /// stays in place when it completes: only `unsent` moves.
    msgs: VecDeque<OutMsg>,
    /// Number of in-flight messages at the front of `msgs`.
    unsent: usize,
    /// Seq the next message to start encoding gets.
    next_seq: u32,
    /// Payload bytes of the head message already encoded (multi-part only).
    sent: usize,
}

impl Default for Lane {
    fn default() -> Self {
        Lane {
            msgs: VecDeque::new(),
            unsent: 0,
            next_seq: 1,
            sent: 0,
        }
    }
}

impl Lane {
    /// Drops cancelled messages at the head of the queued part; true if a queued message remains.
    fn skip_cancelled(&mut self) -> bool {
        while self.msgs.get(self.unsent).is_some_and(|m| m.cancelled) {
            // Cancellation is rare: removing from the middle is fine.
            self.msgs.remove(self.unsent);
        }
        self.unsent < self.msgs.len()
    }

    /// The first queued message.
    fn head(&self) -> Option<&OutMsg> {
        self.msgs.get(self.unsent)
    }
}

/// True when `a` is at or before `b` in the wrapping sequence space.
pub fn seq_le(a: u32, b: u32) -> bool {
    b.wrapping_sub(a) < (1 << 31)
}

/// A peer's outgoing messages, per lane: queued (waiting to be framed) and
/// in flight (framed, waiting for an acknowledgement).
///
/// A message gets its lane's next `seq` when its first part is encoded, so
/// a message cancelled before that leaves no gap. `fill` gives the non-empty
/// lanes turns round robin (the position persists across calls): a turn is
/// one fragment of a message larger than the fragment size, or a run of
/// whole small messages of about the fragment size in total. Completed
/// messages move to the lane's in-flight list until `ack` releases them;
/// `rewind` puts them back in front of the queue, with their numbers, to be
/// sent again on a new connection.
#[derive(Debug)]
pub struct Outbound {
    fragment: usize,
    lanes: [Lane; FrameHeader::LANES],
    /// Lane whose turn is next (if it has data).
    next_lane: usize,
    queued_msgs: usize,
    queued_bytes: usize,
    inflight_msgs: usize,
    inflight_bytes: usize,
}

impl Outbound {
    /// Largest payload `push` accepts (`total_len` is a u32 on the wire).
    pub const MAX_MESSAGE: usize = u32::MAX as usize;

    /// Queues that cut messages above `fragment_size` payload bytes into
    /// parts. The size is clamped to 1..=`FrameHeader::MAX_BODY` - 4 so that
    /// every frame fits the protocol's body limit.
    pub fn new(fragment_size: usize) -> Self {
        let max = FrameHeader::MAX_BODY as usize - FrameHeader::TOTAL_LEN_BYTES;
        Outbound {
            fragment: fragment_size.clamp(1, max),
            lanes: Default::default(),
            next_lane: 0,
            queued_msgs: 0,
            queued_bytes: 0,
            inflight_msgs: 0,
            inflight_bytes: 0,
        }
    }

    /// The fragment size in use (after clamping).
    pub fn fragment_size(&self) -> usize {
        self.fragment
    }

    /// Queues one untagged message on a lane (lane < FrameHeader::LANES).
    pub fn push(&mut self, lane: u8, msg_id: u32, payload: Bytes) {
        self.push_tagged(lane, msg_id, payload, MsgTag::default());
    }

    /// Queues one message with host bookkeeping.
    ///
    /// Panics if `lane` is out of range or the payload is above
    /// [`Outbound::MAX_MESSAGE`]; callers validate both first.
    pub fn push_tagged(&mut self, lane: u8, msg_id: u32, payload: Bytes, tag: MsgTag) {
        assert!(
            (lane as usize) < FrameHeader::LANES,
            "lane {lane} out of range"
        );
        assert!(
            payload.len() <= Self::MAX_MESSAGE,
            "message of {} bytes",
            payload.len()
        );
        self.queued_msgs += 1;
        self.queued_bytes += payload.len();
        self.lanes[lane as usize].msgs.push_back(OutMsg {
            msg_id,
            seq: 0,
            payload,
            tag,
            cancelled: false,
            sent_at: None,
        });
    }

    /// Gives back the queue memory of lanes that hold no message (after a
    /// burst a lane's queue keeps its peak capacity otherwise).
    pub fn release_idle(&mut self) {
        for l in self.lanes.iter_mut() {
            if l.msgs.is_empty() && l.msgs.capacity() > 0 {
                l.msgs = VecDeque::new();
            }
        }
    }

    /// True when nothing waits to be framed (in-flight messages may remain).
    pub fn is_empty(&self) -> bool {
        self.queued_msgs == 0
    }

    /// True when nothing is held at all.
    pub fn is_idle(&self) -> bool {
        self.queued_msgs == 0 && self.inflight_msgs == 0
    }

    /// Messages not yet completely encoded.
    pub fn queued_msgs(&self) -> usize {
        self.queued_msgs
    }

    /// Payload bytes of messages not yet completely encoded.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Messages encoded and not yet acknowledged.
    pub fn inflight_msgs(&self) -> usize {
        self.inflight_msgs
    }

    /// Payload bytes of messages encoded and not yet acknowledged.
    pub fn inflight_bytes(&self) -> usize {
        self.inflight_bytes
    }

    /// When the oldest unacknowledged message was completely encoded.
    pub fn oldest_inflight(&self) -> Option<Instant> {
        self.lanes
            .iter()
            .filter_map(|l| {
                l.msgs
                    .front()
                    .filter(|_| l.unsent > 0)
                    .and_then(|m| m.sent_at)
            })
            .min()
    }

    /// Encodes DATA frames into `out`, interleaving lanes, until `out.len() >= limit` or nothing is left.
    pub fn fill(&mut self, out: &mut WriteBuf, limit: usize) -> FillStats {
        self.fill_at(out, limit, None)
    }

    /// `fill`, stamping completed messages with `now` (for the oldest-unacknowledged age).
    ///
    /// Calls `out.end_message` after each message's last byte. Returns the
    /// messages completely encoded by this call.
    pub fn fill_at(&mut self, out: &mut WriteBuf, limit: usize, now: Option<Instant>) -> FillStats {
        let mut stats = FillStats::default();
        while out.len() < limit && self.queued_msgs > 0 {
            let lane = (0..FrameHeader::LANES)
                .map(|i| (self.next_lane + i) % FrameHeader::LANES)
                .find(|&l| self.lanes[l].skip_cancelled())
                .expect("a lane with data");
            self.turn(lane, out, limit, now, &mut stats);
            self.next_lane = (lane + 1) % FrameHeader::LANES;
        }
        stats
    }

    /// Gives the head message its sequence number if it has none yet.
    fn number_head(lane: &mut Lane) {
        let next = lane.next_seq;
        let m = &mut lane.msgs[lane.unsent];
        if m.seq == 0 {
            m.seq = next;
            lane.next_seq = FrameHeader::next_seq(next);
        }
    }

    /// Moves the completely encoded head message to the in-flight list.
    fn complete_head(&mut self, lane_no: usize, now: Option<Instant>) {
        let lane = &mut self.lanes[lane_no];
        let m = &mut lane.msgs[lane.unsent];
        m.sent_at = now;
        let len = m.payload.len();
        lane.unsent += 1;
        lane.sent = 0;
        self.queued_msgs -= 1;
        self.inflight_msgs += 1;
        self.inflight_bytes += len;
    }

    /// One lane's turn: one part of a large message, or a run of small ones.
    fn turn(
        &mut self,
        lane_no: usize,
        out: &mut WriteBuf,
        limit: usize,
        now: Option<Instant>,
        stats: &mut FillStats,
    ) {
        let frag = self.fragment;
        let lane = &mut self.lanes[lane_no];
        Self::number_head(lane);
        let m = lane.head().expect("non-empty lane");
        let total = m.payload.len();
        if total > frag {
            // One part of a multi-part message.
            let start = lane.sent;
            let rest = total - start;
            let (flags, end) = if start == 0 {
                (FrameHeader::FIRST, frag)
            } else if rest > frag {
                (0, start + frag)
            } else {
                (FrameHeader::LAST, total)
            };
            let extra = if start == 0 {
                FrameHeader::TOTAL_LEN_BYTES
            } else {
                0
            };
            let h = FrameHeader::data(
                (end - start + extra) as u32,
                flags | m.tag.flags,
                lane_no as u8,
                m.msg_id,
                m.seq,
            );
            out.put_slice(&h.to_bytes());
            if start == 0 {
                out.put_slice(&(total as u32).to_le_bytes());
            }
            out.put_payload_range(&m.payload, start, end);
            self.queued_bytes -= end - start;
            if end == total {
                out.end_message(lane_no as u8, m.msg_id, total);
                stats.msgs += 1;
                stats.bytes += total as u64;
                self.complete_head(lane_no, now);
            } else {
                lane.sent = end;
            }
            return;
        }
        // A run of whole messages, at least one, up to about `frag` bytes
        // (headers counted, so that empty messages end a run too).
        let mut used = 0;
        loop {
            let lane = &mut self.lanes[lane_no];
            if !lane.skip_cancelled() {
                break;
            }
            let Some(m) = lane.head() else { break };
            let len = m.payload.len();
            if len > frag
                || (used > 0 && (used + FrameHeader::LEN + len > frag || out.len() >= limit))
            {
                break;
            }
            Self::number_head(lane);
            let m = lane.head().expect("head message");
            let h = FrameHeader::data(
                len as u32,
                FrameHeader::FIRST | FrameHeader::LAST | m.tag.flags,
                lane_no as u8,
                m.msg_id,
                m.seq,
            );
            out.put_slice(&h.to_bytes());
            out.put_payload_range(&m.payload, 0, len);
            out.end_message(lane_no as u8, m.msg_id, len);
            stats.msgs += 1;
            stats.bytes += len as u64;
            used += FrameHeader::LEN + len;
            self.queued_bytes -= len;
            self.complete_head(lane_no, now);
        }
    }

    /// Releases the in-flight messages of `lane` up to and including `upto`
    /// (the peer's cumulative acknowledgement), calling `f` for each.
    pub fn ack(&mut self, lane: u8, upto: u32, mut f: impl FnMut(MsgInfo)) -> FillStats {
        let mut st = FillStats::default();
        let Some(l) = self.lanes.get_mut(lane as usize) else {
            return st;
        };
        while l.unsent > 0 {
            let m = l.msgs.front().expect("in-flight message");
            if upto == 0 || !seq_le(m.seq, upto) {
                break;
            }
            let m = l.msgs.pop_front().expect("front exists");
            l.unsent -= 1;
            self.inflight_msgs -= 1;
            self.inflight_bytes -= m.payload.len();
            st.msgs += 1;
            st.bytes += m.payload.len() as u64;
            f(m.info(lane as usize));
        }
        st
    }

    /// Puts every in-flight message back in front of its lane's queue (with
    /// its sequence number) and restarts a partly encoded message, so a new
    /// connection carries them again. Returns how many will be resent.
    pub fn rewind(&mut self) -> usize {
        let mut n = 0;
        for lane in self.lanes.iter_mut() {
            if lane.sent > 0 {
                self.queued_bytes += lane.sent;
                lane.sent = 0;
                n += 1;
            }
            for m in lane.msgs.range_mut(..lane.unsent) {
                m.sent_at = None;
                self.inflight_msgs -= 1;
                self.inflight_bytes -= m.payload.len();
                self.queued_msgs += 1;
                self.queued_bytes += m.payload.len();
                n += 1;
            }
            lane.unsent = 0;
        }
        n
    }

    /// Cancels the queued message tracked as `track` on `lane` if none of it
    /// was encoded yet.
    pub fn cancel_unsent(&mut self, lane: u8, track: u64) -> Cancel {
        self.cancel_unsent_info(lane, track).0
    }

    /// `cancel_unsent`, also describing the removed message.
    pub fn cancel_unsent_info(&mut self, lane: u8, track: u64) -> (Cancel, Option<MsgInfo>) {
        let lane_no = lane as usize;
        let Some(l) = self.lanes.get_mut(lane_no) else {
            return (Cancel::NotFound, None);
        };
        let partial = l.sent > 0;
        let unsent = l.unsent;
        for (i, m) in l.msgs.range_mut(unsent..).enumerate() {
            if m.tag.track == track && !m.cancelled {
                if m.seq != 0 || (i == 0 && partial) {
                    return (Cancel::AlreadySent, None);
                }
                m.cancelled = true;
                self.queued_msgs -= 1;
                self.queued_bytes -= m.payload.len();
                return (Cancel::Removed, Some(m.info(lane_no)));
            }
        }
        if l.msgs.range(..l.unsent).any(|m| m.tag.track == track) {
            return (Cancel::AlreadySent, None);
        }
        (Cancel::NotFound, None)
    }

    /// Removes every message held (in flight and queued), calling `f` for
    /// each in lane order 0..3, oldest first, and restarts every lane's
    /// numbering at 1: the end of a session.
    pub fn drain_with(&mut self, mut f: impl FnMut(MsgInfo)) -> DrainSummary {
        let mut s = DrainSummary::default();
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            lane.unsent = 0;
            for m in lane.msgs.drain(..).filter(|m| !m.cancelled) {
                if s.first.is_none() {
                    s.first = Some((i as u8, m.msg_id));
                }
                s.msgs += 1;
                s.bytes += m.payload.len() as u64;
                f(m.info(i));
            }
            lane.sent = 0;
            lane.next_seq = 1;
        }
        self.queued_msgs = 0;
        self.queued_bytes = 0;
        self.inflight_msgs = 0;
        self.inflight_bytes = 0;
        s
    }

    /// `drain_with` without a callback.
    pub fn drain(&mut self) -> DrainSummary {
        self.drain_with(|_| {})
    }
}

impl DrainSummary {
    /// Adds another summary after this one (keeps the earlier `first`).
    pub fn merge(&mut self, other: DrainSummary) {
        self.msgs += other.msgs;
        self.bytes += other.bytes;
        if self.first.is_none() {
            self.first = other.first;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Frame, FrameDecoder, FrameType, Preface};

    /// All pending bytes of a WriteBuf, through io_slices.
    fn pending(w: &WriteBuf) -> Vec<u8> {
        let mut v = Vec::new();
        let mut slices = [IoSlice::new(&[]); 64];
        let n = w.io_slices(&mut slices);
        for s in &slices[..n] {
            v.extend_from_slice(s);
        }
        v
    }

    fn frames(bytes: &[u8]) -> Vec<Frame> {
        let mut buf = BytesMut::from(&Preface::BYTES[..]);
        buf.extend_from_slice(bytes);
        let mut d = FrameDecoder::new();
        let mut out = Vec::new();
        while let Some(f) = d.decode(&mut buf).unwrap() {
            out.push(f);
        }
        d.finish(&buf).unwrap();
        out
    }

    #[test]
    fn writebuf_small_and_large_pieces_keep_order() {
        let mut w = WriteBuf::new();
        w.put_slice(b"ab");
        w.put_payload(Bytes::from(vec![1u8; 100]));
        let big = Bytes::from(vec![2u8; 5000]);
        let big_ptr = big.as_ptr();
        w.put_payload(big);
        w.put_slice(b"cd");
        w.put_payload(Bytes::from(vec![3u8; WriteBuf::COPY_LIMIT]));
        w.put_payload(Bytes::from(vec![4u8; WriteBuf::COPY_LIMIT - 1]));
        assert_eq!(w.len(), 2 + 100 + 5000 + 2 + 4096 + 4095);
        let mut slices = [IoSlice::new(&[]); 8];
        let n = w.io_slices(&mut slices);
        assert_eq!(n, 5);
        assert_eq!(slices[1].as_ptr(), big_ptr, "large payload is referenced");
        let mut want = b"ab".to_vec();
        want.extend(vec![1u8; 100]);
        want.extend(vec![2u8; 5000]);
        want.extend(b"cd");
        want.extend(vec![3u8; 4096]);
        want.extend(vec![4u8; 4095]);
        assert_eq!(pending(&w), want);
        // Fewer slots than chunks.
        let mut two = [IoSlice::new(&[]); 2];
        assert_eq!(w.io_slices(&mut two), 2);
        assert_eq!(w.io_slices(&mut []), 0);
        // Partial advances across chunk boundaries.
        let mut off = 0;
        for step in [1, 50, 51, 4999, 1, 1, 3000, 1096, 4096] {
            w.advance(step);
            off += step;
            assert_eq!(w.len(), want.len() - off);
            assert_eq!(pending(&w), want[off..]);
        }
        assert!(w.is_empty());
        assert_eq!(w.io_slices(&mut [IoSlice::new(&[]); 4]), 0);
    }

    #[test]
    #[should_panic]
    fn writebuf_advance_past_end_panics() {
        let mut w = WriteBuf::new();
        w.put_slice(b"abc");
        w.advance(4);
    }

    #[test]
    fn writebuf_markers() {
        let mut w = WriteBuf::new();
        w.put_slice(&[0; 10]);
        w.end_message(0, 1, 10);
        w.put_payload(Bytes::from(vec![0; 5000]));
        w.end_message(1, 2, 5000);
        w.put_slice(&[0; 20]);
        w.end_message(2, 3, 20);
        assert_eq!(w.pending_msgs(), 3);
        assert_eq!(w.advance(9), FillStats::default());
        assert_eq!(w.advance(1), FillStats { msgs: 1, bytes: 10 });
        assert_eq!(
            w.advance(5000 + 19),
            FillStats {
                msgs: 1,
                bytes: 5000
            }
        );
        assert_eq!(
            w.drain_unwritten(),
            DrainSummary {
                msgs: 1,
                bytes: 20,
                first: Some((2, 3))
            }
        );
        assert!(w.is_empty());
        assert_eq!(w.pending_msgs(), 0);
        // Usable after a drain: positions stay consistent.
        w.put_slice(&[0; 4]);
        w.end_message(3, 4, 4);
        assert_eq!(w.advance(4), FillStats { msgs: 1, bytes: 4 });
        assert_eq!(w.drain_unwritten(), DrainSummary::default());
    }

    #[test]
    fn writebuf_reuses_its_allocation() {
        let mut w = WriteBuf::new();
        w.put_slice(&[1; 1000]);
        let p = w.tail.as_ptr();
        w.advance(1000);
        w.put_slice(&[2; 1000]);
        assert_eq!(w.tail.as_ptr(), p);
        assert_eq!(pending(&w), vec![2; 1000]);
    }

    #[test]
    fn small_messages_are_whole_frames() {
        let mut o = Outbound::new(1024);
        o.push(0, 10, Bytes::from_static(b"hello"));
        o.push(0, 11, Bytes::new());
        o.push(0, 12, Bytes::from(vec![9u8; 1024]));
        assert_eq!(o.queued_msgs(), 3);
        assert_eq!(o.queued_bytes(), 1029);
        let mut w = WriteBuf::new();
        let st = o.fill(&mut w, usize::MAX);
        assert_eq!(
            st,
            FillStats {
                msgs: 3,
                bytes: 1029
            }
        );
        assert!(o.is_empty());
        assert_eq!(o.queued_bytes(), 0);
        let fs = frames(&pending(&w));
        assert_eq!(fs.len(), 3);
        for (i, f) in fs.iter().enumerate() {
            assert_eq!(f.header.kind, FrameType::Data);
            assert_eq!(f.header.flags, FrameHeader::FIRST | FrameHeader::LAST);
            assert_eq!(f.header.msg_id, 10 + i as u32);
            assert_eq!(f.header.seq, 1 + i as u32);
        }
        assert_eq!(&fs[0].body[..], b"hello");
        assert!(fs[1].body.is_empty());
        assert_eq!(fs[2].body.len(), 1024);
        assert_eq!(
            w.advance(w.len()),
            FillStats {
                msgs: 3,
                bytes: 1029
            }
        );
    }

    #[test]
    fn large_message_parts() {
        let frag = 1024;
        for len in [1025usize, 2048, 2049, 3000, 3072, 10_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut o = Outbound::new(frag);
            o.push(2, 99, Bytes::from(payload.clone()));
            let mut w = WriteBuf::new();
            let st = o.fill(&mut w, usize::MAX);
            assert_eq!(
                st,
                FillStats {
                    msgs: 1,
                    bytes: len as u64
                }
            );
            let fs = frames(&pending(&w));
            assert_eq!(fs.len(), len.div_ceil(frag), "len {len}");
            let mut got = Vec::new();
            for (i, f) in fs.iter().enumerate() {
                let h = f.header;
                assert_eq!((h.lane, h.msg_id, h.seq), (2, 99, 1));
                if i == 0 {
                    assert_eq!(h.flags, FrameHeader::FIRST);
                    assert_eq!(&f.body[..4], &(len as u32).to_le_bytes());
                    assert_eq!(f.body.len(), 4 + frag);
                    got.extend_from_slice(&f.body[4..]);
                } else if i == fs.len() - 1 {
                    assert_eq!(h.flags, FrameHeader::LAST);
                    assert!(!f.body.is_empty() && f.body.len() <= frag);
                    got.extend_from_slice(&f.body);
                } else {
                    assert_eq!(h.flags, 0);
                    assert_eq!(f.body.len(), frag);
                    got.extend_from_slice(&f.body);
                }
            }
            assert_eq!(got, payload);
        }
    }

    #[test]
    fn seq_per_lane_and_wrap() {
        let mut o = Outbound::new(100);
        o.lanes[3].next_seq = u32::MAX;
        for lane in [0u8, 3, 0, 3, 1] {
            o.push(lane, 0, Bytes::new());
        }
        let mut w = WriteBuf::new();
        o.fill(&mut w, usize::MAX);
        let seqs: Vec<(u8, u32)> = frames(&pending(&w))
            .iter()
            .map(|f| (f.header.lane, f.header.seq))
            .collect();
        assert_eq!(seqs, vec![(0, 1), (0, 2), (1, 1), (3, u32::MAX), (3, 1)]);
    }

    #[test]
    fn fill_respects_limit_and_resumes() {
        let mut o = Outbound::new(1000);
        for i in 0..100 {
            o.push(0, i, Bytes::from(vec![0u8; 84]));
        }
        let mut w = WriteBuf::new();
        // Stops as soon as out.len() >= limit.
        let st = o.fill(&mut w, 250);
        assert_eq!(st.msgs, 3);
        assert_eq!(w.len(), 300);
        assert_eq!(o.queued_msgs(), 97);
        assert_eq!(o.fill(&mut w, 250), FillStats::default());
        w.advance(300);
        let st = o.fill(&mut w, usize::MAX);
        assert_eq!(st.msgs, 97);
        assert!(o.is_empty());
        assert_eq!(o.fill(&mut w, usize::MAX), FillStats::default());
    }

    #[test]
    fn small_runs_are_bounded_by_fragment_size() {
        // 64-byte messages on lanes 0 and 1, fragment 400: runs of 5 (5 * 80 = 400).
        let mut o = Outbound::new(400);
        for i in 0..20 {
            o.push(0, i, Bytes::from(vec![0u8; 64]));
            o.push(1, 100 + i, Bytes::from(vec![1u8; 64]));
        }
        let mut w = WriteBuf::new();
        o.fill(&mut w, usize::MAX);
        let lanes: Vec<u8> = frames(&pending(&w)).iter().map(|f| f.header.lane).collect();
        let mut want = Vec::new();
        for _ in 0..4 {
            want.extend([0u8; 5]);
            want.extend([1u8; 5]);
        }
        assert_eq!(lanes, want);
    }

    #[test]
    fn small_message_overtakes_bulk() {
        let frag = 32 * 1024;
        let mut o = Outbound::new(frag);
        o.push(1, 1, Bytes::from(vec![7u8; 1 << 20]));
        o.push(0, 2, Bytes::from(vec![8u8; 64]));
        let mut w = WriteBuf::new();
        o.fill(&mut w, usize::MAX);
        let fs = frames(&pending(&w));
        let small = fs.iter().position(|f| f.header.lane == 0).unwrap();
        let second_big = fs
            .iter()
            .enumerate()
            .filter(|(_, f)| f.header.lane == 1)
            .nth(1)
            .unwrap()
            .0;
        assert!(
            small < second_big,
            "small at {small}, 2nd big fragment at {second_big}"
        );

        // Same when the bulk message's first fragment is already out and
        // the small one is pushed afterwards.
        let mut o = Outbound::new(frag);
        o.push(1, 1, Bytes::from(vec![7u8; 1 << 20]));
        let mut w = WriteBuf::new();
        o.fill(&mut w, 1);
        assert_eq!(w.len(), 16 + 4 + frag);
        o.push(0, 2, Bytes::from(vec![8u8; 64]));
        o.fill(&mut w, usize::MAX);
        let fs = frames(&pending(&w));
        assert_eq!(fs[1].header.lane, 0);
        // And a small message behind a large one on the same lane waits for it.
        let mut o = Outbound::new(frag);
        o.push(1, 1, Bytes::from(vec![7u8; 100_000]));
        o.push(1, 2, Bytes::from(vec![8u8; 64]));
        let mut w = WriteBuf::new();
        o.fill(&mut w, usize::MAX);
        let fs = frames(&pending(&w));
        assert_eq!(fs.last().unwrap().header.msg_id, 2);
    }

    #[test]
    fn fill_marks_message_ends() {
        let mut o = Outbound::new(1024);
        o.push(0, 1, Bytes::from(vec![0u8; 3000]));
        o.push(2, 2, Bytes::from(vec![0u8; 10]));
        let mut w = WriteBuf::new();
        let st = o.fill(&mut w, usize::MAX);
        assert_eq!(
            st,
            FillStats {
                msgs: 2,
                bytes: 3010
            }
        );
        // Stream: [0 FIRST 1044][2 whole 26][0 middle 1040][0 LAST 968]
        assert_eq!(w.advance(1044), FillStats::default());
        assert_eq!(w.advance(26), FillStats { msgs: 1, bytes: 10 });
        assert_eq!(w.advance(1040 + 967), FillStats::default());
        assert_eq!(
            w.advance(1),
            FillStats {
                msgs: 1,
                bytes: 3000
            }
        );
    }

    #[test]
    fn drain_reports_everything_held_and_restarts_numbering() {
        let mut o = Outbound::new(100);
        o.push(2, 20, Bytes::from(vec![0u8; 250]));
        o.push(2, 21, Bytes::from(vec![0u8; 5]));
        o.push(1, 10, Bytes::from(vec![0u8; 7]));
        let mut w = WriteBuf::new();
        // Lane 1 goes first (round robin starts at 0), then lane 2's FIRST part.
        let st = o.fill(&mut w, 23 + 120);
        assert_eq!(st, FillStats { msgs: 1, bytes: 7 });
        assert_eq!((o.queued_msgs(), o.queued_bytes()), (2, 150 + 5));
        assert_eq!((o.inflight_msgs(), o.inflight_bytes()), (1, 7));
        let mut seen = Vec::new();
        let s = o.drain_with(|m| seen.push((m.lane, m.msg_id, m.seq)));
        assert_eq!(
            s,
            DrainSummary {
                msgs: 3,
                bytes: 262,
                first: Some((1, 10))
            }
        );
        assert_eq!(seen, vec![(1, 10, 1), (2, 20, 1), (2, 21, 0)]);
        assert!(o.is_idle());
        assert_eq!(o.drain(), DrainSummary::default());
        // A new session numbers every lane from 1 again.
        o.push(2, 22, Bytes::new());
        o.push(1, 11, Bytes::new());
        let mut w = WriteBuf::new();
        o.fill(&mut w, usize::MAX);
        let seqs: Vec<(u8, u32)> = frames(&pending(&w))
            .iter()
            .map(|f| (f.header.lane, f.header.seq))
            .collect();
        assert_eq!(seqs, vec![(1, 1), (2, 1)]);
    }

    #[test]
    fn ack_releases_in_order_up_to_the_cumulative_seq() {
        let mut o = Outbound::new(100);
        for i in 0..5u32 {
            o.push(0, i, Bytes::from(vec![1u8; 10]));
        }
        let mut w = WriteBuf::new();
        o.fill(&mut w, usize::MAX);
        assert_eq!((o.queued_msgs(), o.inflight_msgs()), (0, 5));
        let mut acked = Vec::new();
        let st = o.ack(0, 3, |m| acked.push(m.seq));
        assert_eq!((st.msgs, st.bytes), (3, 30));
        assert_eq!(acked, vec![1, 2, 3]);
        // Stale or repeated acknowledgements release nothing more.
        assert_eq!(o.ack(0, 2, |_| panic!("stale ack")).msgs, 0);
        assert_eq!(o.ack(0, 0, |_| panic!("ack 0")).msgs, 0);
        assert_eq!(o.ack(1, 5, |_| panic!("other lane")).msgs, 0);
        assert_eq!(o.inflight_msgs(), 2);
        assert_eq!(o.ack(0, 5, |_| {}).msgs, 2);
        assert!(o.is_idle());
    }

    #[test]
    fn rewind_resends_unacknowledged_with_their_numbers() {
        let mut o = Outbound::new(100);
        o.push(0, 1, Bytes::new());
        o.push(0, 2, Bytes::from(vec![1u8; 300]));
        o.push(0, 3, Bytes::new());
        let mut w = WriteBuf::new();
        o.fill(&mut w, 17 + 1); // msg 1 and the FIRST part of msg 2
        assert_eq!(o.queued_bytes(), 200);
        assert_eq!(o.inflight_msgs(), 1);
        // The connection breaks; the peer had delivered nothing.
        assert_eq!(o.rewind(), 2);
        assert_eq!(
            (o.queued_msgs(), o.queued_bytes(), o.inflight_msgs()),
            (3, 300, 0)
        );
        let mut w = WriteBuf::new();
        o.fill(&mut w, usize::MAX);
        let fs = frames(&pending(&w));
        let seqs: Vec<(u32, u32, u8)> = fs
            .iter()
            .map(|f| (f.header.msg_id, f.header.seq, f.header.flags))
            .collect();
        assert_eq!(
            seqs,
            vec![(1, 1, 3), (2, 2, 1), (2, 2, 0), (2, 2, 2), (3, 3, 3)],
            "same numbers, the big one again from its first part"
        );
        o.push(0, 4, Bytes::new());
        o.fill(&mut w, usize::MAX);
        assert_eq!(frames(&pending(&w)).last().unwrap().header.seq, 4);
    }

    #[test]
    fn cancel_unsent_only_before_encoding() {
        let mut o = Outbound::new(100);
        let tag = |t| MsgTag {
            track: t,
            ..MsgTag::default()
        };
        o.push_tagged(0, 1, Bytes::from(vec![0u8; 250]), tag(1));
        o.push_tagged(0, 2, Bytes::from(vec![0u8; 5]), tag(2));
        o.push_tagged(0, 3, Bytes::from(vec![0u8; 5]), tag(3));
        let mut w = WriteBuf::new();
        o.fill(&mut w, 1); // FIRST part of message 1 only
        assert_eq!(o.cancel_unsent(0, 1), Cancel::AlreadySent);
        assert_eq!(o.cancel_unsent(0, 2), Cancel::Removed);
        assert_eq!(o.cancel_unsent(0, 2), Cancel::NotFound);
        assert_eq!(o.cancel_unsent(0, 9), Cancel::NotFound);
        assert_eq!((o.queued_msgs(), o.queued_bytes()), (2, 150 + 5));
        o.fill(&mut w, usize::MAX);
        let ids: Vec<(u32, u32)> = frames(&pending(&w))
            .iter()
            .map(|f| (f.header.msg_id, f.header.seq))
            .collect();
        // No gap in the numbering where message 2 was.
        assert_eq!(ids, vec![(1, 1), (1, 1), (1, 1), (3, 2)]);
        assert_eq!(o.cancel_unsent(0, 3), Cancel::AlreadySent);
        assert_eq!(o.drain().msgs, 2);
    }

    #[test]
    fn seq_comparison_wraps() {
        assert!(seq_le(1, 1) && seq_le(1, 2) && !seq_le(2, 1));
        assert!(seq_le(u32::MAX, 1), "1 follows u32::MAX (0 is skipped)");
        assert!(!seq_le(1, u32::MAX));
    }

    #[test]
    fn fragment_size_is_clamped() {
        assert_eq!(Outbound::new(0).fragment_size(), 1);
        assert_eq!(
            Outbound::new(usize::MAX).fragment_size(),
            FrameHeader::MAX_BODY as usize - 4
        );
        let mut o = Outbound::new(0);
        o.push(0, 1, Bytes::from_static(b"abc"));
        o.push(0, 2, Bytes::from_static(b"x"));
        let mut w = WriteBuf::new();
        o.fill(&mut w, usize::MAX);
        let fs = frames(&pending(&w));
        assert_eq!(fs.len(), 4);
        assert_eq!(fs[3].header.flags, 3);
    }
}
