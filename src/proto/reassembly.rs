//! Per-lane reassembly of multi-part messages (docs/PROTOCOL.md §4).
//!
//! A whole message (`FIRST|LAST`) is handed on without a copy. A multi-part
//! message is collected in one buffer of exactly `total_len` bytes,
//! allocated only after `total_len` was checked against the maximum.

use super::{FrameHeader, FrameType, ProtoError};
use bytes::{Bytes, BytesMut};

/// A complete received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InMessage {
    /// Lane it arrived on.
    pub lane: u8,
    /// Route id.
    pub msg_id: u32,
    /// Per-lane sequence number.
    pub seq: u32,
    /// Message-level DATA flags ([`FrameHeader::RPC`] or 0).
    pub flags: u8,
    /// The whole payload.
    pub payload: Bytes,
}

/// A message whose FIRST part arrived and whose LAST has not.
#[derive(Debug)]
struct Partial {
    msg_id: u32,
    seq: u32,
    flags: u8,
    total: usize,
    buf: BytesMut,
}

#[derive(Debug, Default)]
struct LaneState {
    partial: Option<Partial>,
}

/// Joins DATA parts per lane and checks sizes and part order. Sequence
/// numbers across messages are the session's business
/// (`proto::session::Session::accept`).
#[derive(Debug)]
pub struct Reassembler {
    max_message: usize,
    lanes: [LaneState; FrameHeader::LANES],
    /// Bytes held in partial messages.
    buffered: usize,
}

impl Reassembler {
    /// Most bytes reserved for a multi-part message before its parts arrive;
    /// the rest of `total_len` is reserved once this much has been received.
    pub const INITIAL_RESERVE: usize = 1 << 20;

    /// A reassembler that refuses messages above `max_message` payload bytes.
    pub fn new(max_message: usize) -> Self {
        Reassembler {
            max_message,
            lanes: Default::default(),
            buffered: 0,
        }
    }

    /// Feeds one DATA frame; returns a message when one completes.
    ///
    /// Errors (the connection must close): [`ProtoError::MessageTooLarge`]
    /// for a whole message or an announced `total_len` above the maximum
    /// (checked before allocating); [`ProtoError::BadFrame`] for a non-DATA
    /// header, a lane out of range, a FIRST-only body under 4 bytes, a
    /// `total_len` not larger than the first fragment, a FIRST while the lane
    /// has an open message, a middle/LAST part with none open or with another
    /// `msg_id`/`seq`, and parts adding up to more or less than `total_len`.
    pub fn push(
        &mut self,
        header: &FrameHeader,
        body: Bytes,
    ) -> Result<Option<InMessage>, ProtoError> {
        if header.kind != FrameType::Data {
            return Err(ProtoError::BadFrame("not a DATA frame"));
        }
        let lane_no = header.lane;
        let lane = self
            .lanes
            .get_mut(lane_no as usize)
            .ok_or(ProtoError::BadFrame("lane out of range"))?;
        let first = header.flags & FrameHeader::FIRST != 0;
        let last = header.flags & FrameHeader::LAST != 0;
        if header.flags & !(FrameHeader::FIRST | FrameHeader::LAST | FrameHeader::RPC) != 0 {
            return Err(ProtoError::BadFrame("undefined DATA flag bits"));
        }
        let msg_flags = header.flags & FrameHeader::RPC;
        if first {
            if lane.partial.is_some() {
                return Err(ProtoError::BadFrame(
                    "FIRST while a message is open on the lane",
                ));
            }
            if last {
                if body.len() > self.max_message {
                    return Err(ProtoError::MessageTooLarge(body.len() as u64));
                }
                return Ok(Some(InMessage {
                    lane: lane_no,
                    msg_id: header.msg_id,
                    seq: header.seq,
                    flags: msg_flags,
                    payload: body,
                }));
            }
            if body.len() < FrameHeader::TOTAL_LEN_BYTES {
                return Err(ProtoError::BadFrame("FIRST part without total_len"));
            }
            let total = u32::from_le_bytes([body[0], body[1], body[2], body[3]]) as u64;
            if total > self.max_message as u64 {
                return Err(ProtoError::MessageTooLarge(total));
            }
            let total = total as usize;
            let frag = &body[FrameHeader::TOTAL_LEN_BYTES..];
            if total <= frag.len() {
                return Err(ProtoError::BadFrame(
                    "total_len not larger than the first fragment",
                ));
            }
            // Reserve at most INITIAL_RESERVE up front: a peer must send real
            // bytes before we commit memory to the whole announced size.
            let mut buf = BytesMut::with_capacity(total.min(Self::INITIAL_RESERVE));
            buf.extend_from_slice(frag);
            self.buffered += frag.len();
            lane.partial = Some(Partial {
                msg_id: header.msg_id,
                seq: header.seq,
                flags: msg_flags,
                total,
                buf,
            });
            return Ok(None);
        }
        // Middle or LAST part.
        let p = lane
            .partial
            .as_mut()
            .ok_or(ProtoError::BadFrame("part without an open message"))?;
        if p.msg_id != header.msg_id || p.seq != header.seq || p.flags != msg_flags {
            return Err(ProtoError::BadFrame("part of another message"));
        }
        if body.len() > p.total - p.buf.len() {
            return Err(ProtoError::BadFrame("parts exceed total_len"));
        }
        if last && p.buf.len() + body.len() != p.total {
            return Err(ProtoError::BadFrame("parts add up to less than total_len"));
        }
        if p.buf.capacity() - p.buf.len() < body.len() {
            // Past the initial reservation: the rest is announced and checked.
            p.buf.reserve(p.total - p.buf.len());
        }
        p.buf.extend_from_slice(&body);
        self.buffered += body.len();
        if !last {
            return Ok(None);
        }
        let p = lane.partial.take().expect("open message");
        self.buffered -= p.total;
        Ok(Some(InMessage {
            lane: lane_no,
            msg_id: p.msg_id,
            seq: p.seq,
            flags: p.flags,
            payload: p.buf.freeze(),
        }))
    }

    /// True while some lane has an incomplete message.
    pub fn has_partial(&self) -> bool {
        self.lanes.iter().any(|l| l.partial.is_some())
    }

    /// Payload bytes held in incomplete messages.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// The largest message accepted.
    pub fn max_message(&self) -> usize {
        self.max_message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: u8 = FrameHeader::FIRST;
    const L: u8 = FrameHeader::LAST;

    fn hdr(flags: u8, lane: u8, msg_id: u32, seq: u32, len: usize) -> FrameHeader {
        FrameHeader::data(len as u32, flags, lane, msg_id, seq)
    }

    fn first_body(total: u32, frag: &[u8]) -> Bytes {
        let mut v = total.to_le_bytes().to_vec();
        v.extend_from_slice(frag);
        Bytes::from(v)
    }

    /// Pushes a frame built from (flags, lane, msg_id, seq, body).
    fn push(
        r: &mut Reassembler,
        flags: u8,
        lane: u8,
        msg_id: u32,
        seq: u32,
        body: Bytes,
    ) -> Result<Option<InMessage>, ProtoError> {
        r.push(&hdr(flags, lane, msg_id, seq, body.len()), body)
    }

    #[test]
    fn whole_message_is_zero_copy() {
        let mut r = Reassembler::new(100);
        let body = Bytes::from(vec![5u8; 100]);
        let ptr = body.as_ptr();
        let m = push(&mut r, F | L, 2, 77, 1, body).unwrap().unwrap();
        assert_eq!(m.payload.as_ptr(), ptr);
        assert_eq!((m.lane, m.msg_id, m.seq), (2, 77, 1));
        let m = push(&mut r, F | L, 2, 77, 2, Bytes::new())
            .unwrap()
            .unwrap();
        assert!(m.payload.is_empty());
        assert!(!r.has_partial());
    }

    #[test]
    fn multi_part_message() {
        let mut r = Reassembler::new(1000);
        assert_eq!(push(&mut r, F, 1, 5, 1, first_body(10, b"abc")), Ok(None));
        assert!(r.has_partial());
        assert_eq!(r.buffered(), 3);
        assert_eq!(
            push(&mut r, 0, 1, 5, 1, Bytes::from_static(b"defg")),
            Ok(None)
        );
        assert_eq!(push(&mut r, 0, 1, 5, 1, Bytes::new()), Ok(None));
        assert_eq!(r.buffered(), 7);
        let m = push(&mut r, L, 1, 5, 1, Bytes::from_static(b"hij"))
            .unwrap()
            .unwrap();
        assert_eq!(&m.payload[..], b"abcdefghij");
        assert_eq!((m.lane, m.msg_id, m.seq), (1, 5, 1));
        assert!(!r.has_partial());
        assert_eq!(r.buffered(), 0);
        // A middle part can complete the bytes; an empty LAST then closes it.
        assert_eq!(push(&mut r, F, 1, 5, 2, first_body(2, b"a")), Ok(None));
        assert_eq!(push(&mut r, 0, 1, 5, 2, Bytes::from_static(b"b")), Ok(None));
        assert_eq!(
            &push(&mut r, L, 1, 5, 2, Bytes::new())
                .unwrap()
                .unwrap()
                .payload[..],
            b"ab"
        );
        // Empty first fragment.
        assert_eq!(push(&mut r, F, 1, 5, 3, first_body(1, b"")), Ok(None));
        assert_eq!(
            &push(&mut r, L, 1, 5, 3, Bytes::from_static(b"z"))
                .unwrap()
                .unwrap()
                .payload[..],
            b"z"
        );
    }

    #[test]
    fn lanes_interleave() {
        let mut r = Reassembler::new(1000);
        assert_eq!(push(&mut r, F, 0, 1, 1, first_body(4, b"ab")), Ok(None));
        assert_eq!(push(&mut r, F, 3, 2, 1, first_body(4, b"wx")), Ok(None));
        let m = push(&mut r, F | L, 2, 3, 1, Bytes::from_static(b"!"))
            .unwrap()
            .unwrap();
        assert_eq!(m.lane, 2);
        assert_eq!(r.buffered(), 4);
        let m = push(&mut r, L, 3, 2, 1, Bytes::from_static(b"yz"))
            .unwrap()
            .unwrap();
        assert_eq!((&m.payload[..], m.lane), (&b"wxyz"[..], 3));
        assert!(r.has_partial());
        let m = push(&mut r, L, 0, 1, 1, Bytes::from_static(b"cd"))
            .unwrap()
            .unwrap();
        assert_eq!((&m.payload[..], m.lane), (&b"abcd"[..], 0));
        assert!(!r.has_partial());
        // Each lane counts its own seq.
        for lane in 0..4 {
            let seq = if lane == 1 { 1 } else { 2 };
            assert!(push(&mut r, F | L, lane, 9, seq, Bytes::new())
                .unwrap()
                .is_some());
        }
    }

    #[test]
    fn size_limits() {
        let max = 16 << 20;
        let mut r = Reassembler::new(max);
        // total_len = u32::MAX with a 16 MiB max: refused before allocating.
        assert_eq!(
            push(&mut r, F, 0, 1, 1, first_body(u32::MAX, b"x")),
            Err(ProtoError::MessageTooLarge(u32::MAX as u64))
        );
        assert_eq!(r.buffered(), 0);
        assert!(!r.has_partial());
        let mut r = Reassembler::new(10);
        assert_eq!(
            push(&mut r, F, 0, 1, 1, first_body(11, b"x")),
            Err(ProtoError::MessageTooLarge(11))
        );
        let mut r = Reassembler::new(10);
        assert_eq!(push(&mut r, F, 0, 1, 1, first_body(10, b"x")), Ok(None));
        assert_eq!(r.lanes[0].partial.as_ref().unwrap().buf.capacity(), 10);
        let mut r = Reassembler::new(10);
        assert_eq!(
            push(&mut r, F | L, 0, 1, 1, Bytes::from(vec![0; 11])),
            Err(ProtoError::MessageTooLarge(11))
        );
        let mut r = Reassembler::new(10);
        assert!(push(&mut r, F | L, 0, 1, 1, Bytes::from(vec![0; 10]))
            .unwrap()
            .is_some());
        assert_eq!(
            ProtoError::MessageTooLarge(0).code(),
            crate::codes::XXNET_E_MESSAGE_TOO_LARGE
        );
    }

    /// One row per BadFrame rule: a setup sequence that must succeed, then
    /// the offending frame.
    #[test]
    fn bad_frame_rules() {
        type Step = (u8, u8, u32, u32, Bytes);
        let open = || (F, 0u8, 7u32, 1u32, first_body(10, b"abc"));
        let cases: Vec<(&str, Vec<Step>, Step, &str)> = vec![
            (
                "FIRST without total_len",
                vec![],
                (F, 0, 7, 1, Bytes::from_static(b"abc")),
                "FIRST part without total_len",
            ),
            (
                "total_len == first fragment",
                vec![],
                (F, 0, 7, 1, first_body(3, b"abc")),
                "total_len not larger than the first fragment",
            ),
            (
                "total_len < first fragment",
                vec![],
                (F, 0, 7, 1, first_body(2, b"abc")),
                "total_len not larger than the first fragment",
            ),
            (
                "total_len 0",
                vec![],
                (F, 0, 7, 1, first_body(0, b"")),
                "total_len not larger than the first fragment",
            ),
            (
                "FIRST while open",
                vec![open()],
                (F, 0, 7, 2, first_body(10, b"abc")),
                "FIRST while a message is open on the lane",
            ),
            (
                "whole while open",
                vec![open()],
                (F | L, 0, 7, 2, Bytes::new()),
                "FIRST while a message is open on the lane",
            ),
            (
                "middle without open",
                vec![],
                (0, 0, 7, 1, Bytes::from_static(b"x")),
                "part without an open message",
            ),
            (
                "LAST without open",
                vec![],
                (L, 0, 7, 1, Bytes::from_static(b"x")),
                "part without an open message",
            ),
            (
                "LAST on another lane",
                vec![open()],
                (L, 1, 7, 1, Bytes::from(vec![0; 7])),
                "part without an open message",
            ),
            (
                "middle msg_id mismatch",
                vec![open()],
                (0, 0, 8, 1, Bytes::from_static(b"x")),
                "part of another message",
            ),
            (
                "LAST seq mismatch",
                vec![open()],
                (L, 0, 7, 2, Bytes::from(vec![0; 7])),
                "part of another message",
            ),
            (
                "middle exceeds total",
                vec![open()],
                (0, 0, 7, 1, Bytes::from(vec![0; 8])),
                "parts exceed total_len",
            ),
            (
                "LAST exceeds total",
                vec![open()],
                (L, 0, 7, 1, Bytes::from(vec![0; 8])),
                "parts exceed total_len",
            ),
            (
                "LAST short of total",
                vec![open()],
                (L, 0, 7, 1, Bytes::from(vec![0; 6])),
                "parts add up to less than total_len",
            ),
            (
                "RPC flag differs between parts",
                vec![open()],
                (FrameHeader::RPC, 0, 7, 1, Bytes::from(vec![0; 2])),
                "part of another message",
            ),
            (
                "flag bits",
                vec![],
                (8, 0, 7, 1, Bytes::new()),
                "undefined DATA flag bits",
            ),
        ];
        for (name, setup, (flags, lane, id, seq, body), why) in cases {
            let mut r = Reassembler::new(100);
            for (f, l, i, s, b) in setup {
                push(&mut r, f, l, i, s, b).unwrap_or_else(|e| panic!("{name}: setup failed: {e}"));
            }
            assert_eq!(
                push(&mut r, flags, lane, id, seq, body),
                Err(ProtoError::BadFrame(why)),
                "{name}"
            );
        }
        // Header-level problems, in case a header was built by hand.
        let mut r = Reassembler::new(100);
        assert_eq!(
            r.push(&FrameHeader::control(FrameType::Ping, 8), Bytes::new()),
            Err(ProtoError::BadFrame("not a DATA frame"))
        );
        assert_eq!(
            r.push(&hdr(F | L, 4, 0, 1, 0), Bytes::new()),
            Err(ProtoError::BadFrame("lane out of range"))
        );
    }
}
