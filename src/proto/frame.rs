//! Preface and frame header layout (docs/PROTOCOL.md §1-2).
//!
//! Every integer on the wire is little-endian. A frame is a 16-byte header
//! ([`FrameHeader`]) followed by `body_len` bytes of body.

use super::ProtoError;
use bytes::Bytes;

/// The 8-byte connection preface.
pub struct Preface;

impl Preface {
    /// Magic, version 1, reserved.
    pub const BYTES: [u8; 8] = *b"XXNT\x01\x00\x00\x00";
    /// Protocol version spoken.
    pub const VERSION: u16 = 1;
    /// Length of the preface in bytes.
    pub const LEN: usize = 8;
    /// The 4 magic bytes at the start of the preface.
    pub const MAGIC: [u8; 4] = *b"XXNT";
}

/// Frame types.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameType {
    /// Connector's first frame (§3).
    Hello = 1,
    /// Acceptor's answer to HELLO (§3).
    HelloAck = 2,
    /// A message or a part of one (§4).
    Data = 3,
    /// Heartbeat request; body: 8-byte token.
    Ping = 4,
    /// Heartbeat answer; body: the PING's 8-byte token.
    Pong = 5,
    /// The sender closes; body: 4-byte `XXNET_E_*` code.
    GoAway = 6,
    /// Cumulative acknowledgement: last delivered seq per lane.
    Ack = 7,
    /// Acceptor's authentication challenge (§3, "Authentication"); body: 16-byte challenge.
    Challenge = 8,
    /// Connector's answer to CHALLENGE; body: 32-byte HMAC-SHA256 proof.
    Auth = 9,
}

impl FrameType {
    /// The frame type for a wire byte, `None` if unknown.
    #[inline]
    pub fn from_u8(v: u8) -> Option<FrameType> {
        Some(match v {
            1 => FrameType::Hello,
            2 => FrameType::HelloAck,
            3 => FrameType::Data,
            4 => FrameType::Ping,
            5 => FrameType::Pong,
            6 => FrameType::GoAway,
            7 => FrameType::Ack,
            8 => FrameType::Challenge,
            9 => FrameType::Auth,
            _ => return None,
        })
    }

    /// Smallest body this type may carry (control frames may carry more).
    ///
    /// For DATA this is 0; a FIRST-only DATA part needs
    /// [`FrameHeader::min_body`]'s 4 bytes for `total_len`.
    #[inline]
    pub fn min_body(self) -> u32 {
        match self {
            FrameType::Hello => 19 + 32,
            FrameType::HelloAck => 20 + 32,
            FrameType::Ack => 16,
            FrameType::Data => 0,
            FrameType::Ping | FrameType::Pong => 8,
            FrameType::GoAway => 4,
            FrameType::Challenge => 16,
            FrameType::Auth => 32,
        }
    }
}

/// A parsed 16-byte frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Bytes of body after the header (at most [`FrameHeader::MAX_BODY`]).
    pub body_len: u32,
    /// Frame type.
    pub kind: FrameType,
    /// Per-type flags; DATA: [`FrameHeader::FIRST`] / [`FrameHeader::LAST`], others 0.
    pub flags: u8,
    /// Lane 0..[`FrameHeader::LANES`] for DATA, 0 otherwise.
    pub lane: u8,
    /// DATA: the route id; 0 for other types.
    pub msg_id: u32,
    /// DATA: per-lane message sequence number (never 0); 0 for other types.
    pub seq: u32,
}

impl FrameHeader {
    /// Header size in bytes.
    pub const LEN: usize = 16;
    /// Largest body a frame may announce.
    pub const MAX_BODY: u32 = (1 << 20) + 64;
    /// DATA flag: first part of a message.
    pub const FIRST: u8 = 1;
    /// DATA flag: last part of a message.
    pub const LAST: u8 = 2;
    /// DATA flag: the message is a remote-call envelope (docs/PROTOCOL.md §7), set on every part.
    pub const RPC: u8 = 4;
    /// Number of lanes.
    pub const LANES: usize = 4;
    /// Size of the `total_len` prefix of a FIRST-only DATA part.
    pub const TOTAL_LEN_BYTES: usize = 4;

    /// A control (non-DATA) frame header: lane, flags, msg_id and seq are 0.
    #[inline]
    pub fn control(kind: FrameType, body_len: u32) -> FrameHeader {
        FrameHeader {
            body_len,
            kind,
            flags: 0,
            lane: 0,
            msg_id: 0,
            seq: 0,
        }
    }

    /// A DATA frame header.
    #[inline]
    pub fn data(body_len: u32, flags: u8, lane: u8, msg_id: u32, seq: u32) -> FrameHeader {
        FrameHeader {
            body_len,
            kind: FrameType::Data,
            flags,
            lane,
            msg_id,
            seq,
        }
    }

    /// The sequence number that follows `seq` on a lane: `seq + 1`,
    /// wrapping at 2^32 and skipping 0. `next_seq(0)` is 1 (the first).
    #[inline]
    pub fn next_seq(seq: u32) -> u32 {
        match seq.wrapping_add(1) {
            0 => 1,
            n => n,
        }
    }

    /// Smallest body this header's type and flags allow: the type's minimum,
    /// and 4 (`total_len`) for a DATA part with FIRST but not LAST.
    #[inline]
    pub fn min_body(&self) -> u32 {
        if self.kind == FrameType::Data && self.flags == FrameHeader::FIRST {
            FrameHeader::TOTAL_LEN_BYTES as u32
        } else {
            self.kind.min_body()
        }
    }

    /// Serialises the header.
    #[inline]
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.body_len.to_le_bytes());
        b[4] = self.kind as u8;
        b[5] = self.flags;
        b[6] = self.lane;
        b[7] = 0;
        b[8..12].copy_from_slice(&self.msg_id.to_le_bytes());
        b[12..16].copy_from_slice(&self.seq.to_le_bytes());
        b
    }

    /// Parses and validates a header (type, flags, lane, reserved, body_len limit).
    ///
    /// `body_len` is checked first, so an oversized frame is rejected with
    /// [`ProtoError::FrameTooLarge`] before anyone reserves memory for it.
    /// Everything else is [`ProtoError::BadFrame`]: an unknown type, a
    /// non-zero reserved byte, undefined flag bits, a lane ≥ [`Self::LANES`],
    /// a non-DATA frame with a lane, msg_id or seq other than 0, a DATA frame
    /// with seq 0. The minimum body size is not checked here (see
    /// [`FrameHeader::min_body`]; the decoder checks it).
    #[inline]
    pub fn parse(b: &[u8; 16]) -> Result<FrameHeader, ProtoError> {
        let body_len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if body_len > FrameHeader::MAX_BODY {
            return Err(ProtoError::FrameTooLarge(body_len));
        }
        let kind = FrameType::from_u8(b[4]).ok_or(ProtoError::BadFrame("unknown frame type"))?;
        let flags = b[5];
        let lane = b[6];
        if b[7] != 0 {
            return Err(ProtoError::BadFrame("reserved header byte is not 0"));
        }
        let msg_id = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        let seq = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
        if kind == FrameType::Data {
            if flags & !(FrameHeader::FIRST | FrameHeader::LAST | FrameHeader::RPC) != 0 {
                return Err(ProtoError::BadFrame("undefined DATA flag bits"));
            }
            if lane as usize >= FrameHeader::LANES {
                return Err(ProtoError::BadFrame("lane out of range"));
            }
            if seq == 0 {
                return Err(ProtoError::BadFrame("DATA frame with seq 0"));
            }
        } else {
            if flags != 0 {
                return Err(ProtoError::BadFrame("flags on a control frame"));
            }
            if lane != 0 {
                return Err(ProtoError::BadFrame("lane on a control frame"));
            }
            if msg_id != 0 || seq != 0 {
                return Err(ProtoError::BadFrame("msg_id or seq on a control frame"));
            }
        }
        Ok(FrameHeader {
            body_len,
            kind,
            flags,
            lane,
            msg_id,
            seq,
        })
    }
}

/// One complete frame; the body is split off the read buffer without a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The validated header.
    pub header: FrameHeader,
    /// Exactly `header.body_len` bytes.
    pub body: Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_hdr() -> FrameHeader {
        FrameHeader::data(
            100,
            FrameHeader::FIRST | FrameHeader::LAST,
            3,
            0xDEAD_BEEF,
            7,
        )
    }

    #[test]
    fn header_layout_is_little_endian() {
        let h = FrameHeader::data(0x0403_0201, 1, 2, 0x0C0B_0A09, 0x100F_0E0D);
        // body_len over MAX_BODY is fine to serialise, not to parse.
        assert_eq!(
            h.to_bytes(),
            [1, 2, 3, 4, 3, 1, 2, 0, 9, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10]
        );
    }

    #[test]
    fn header_round_trips_every_type() {
        let mut hs = vec![
            data_hdr(),
            FrameHeader::data(0, 0, 0, 0, 1),
            FrameHeader::data(
                FrameHeader::MAX_BODY,
                FrameHeader::FIRST,
                1,
                u32::MAX,
                u32::MAX,
            ),
            FrameHeader::data(5, FrameHeader::LAST, 2, 1, 2),
        ];
        for k in [
            FrameType::Hello,
            FrameType::HelloAck,
            FrameType::Ping,
            FrameType::Pong,
            FrameType::GoAway,
            FrameType::Ack,
            FrameType::Challenge,
            FrameType::Auth,
        ] {
            hs.push(FrameHeader::control(k, k.min_body()));
            hs.push(FrameHeader::control(k, FrameHeader::MAX_BODY));
        }
        for h in hs {
            assert_eq!(FrameHeader::parse(&h.to_bytes()), Ok(h), "{h:?}");
        }
    }

    #[test]
    fn frame_type_from_u8() {
        for v in 0..=255u8 {
            match FrameType::from_u8(v) {
                Some(k) => assert_eq!(k as u8, v),
                None => assert!(v == 0 || v > 9),
            }
        }
    }

    #[test]
    fn next_seq_wraps_skipping_zero() {
        assert_eq!(FrameHeader::next_seq(0), 1);
        assert_eq!(FrameHeader::next_seq(1), 2);
        assert_eq!(FrameHeader::next_seq(u32::MAX - 1), u32::MAX);
        assert_eq!(FrameHeader::next_seq(u32::MAX), 1);
    }

    /// One row per validation rule of `FrameHeader::parse`.
    #[test]
    fn header_validation_rules() {
        let good = data_hdr().to_bytes();
        let ctl = FrameHeader::control(FrameType::Ping, 8).to_bytes();
        type Mutate = fn(&mut [u8; 16]);
        let cases: Vec<(&str, [u8; 16], Mutate, ProtoError)> = vec![
            (
                "body_len too large",
                good,
                |b| b[0..4].copy_from_slice(&(FrameHeader::MAX_BODY + 1).to_le_bytes()),
                ProtoError::FrameTooLarge(FrameHeader::MAX_BODY + 1),
            ),
            (
                "body_len u32::MAX",
                good,
                |b| b[0..4].copy_from_slice(&u32::MAX.to_le_bytes()),
                ProtoError::FrameTooLarge(u32::MAX),
            ),
            (
                "body_len u32::MAX on garbage",
                good,
                |b| {
                    b.fill(0xFF);
                },
                ProtoError::FrameTooLarge(u32::MAX),
            ),
            (
                "type 0",
                good,
                |b| b[4] = 0,
                ProtoError::BadFrame("unknown frame type"),
            ),
            (
                "type 10",
                good,
                |b| b[4] = 10,
                ProtoError::BadFrame("unknown frame type"),
            ),
            (
                "type 255",
                good,
                |b| b[4] = 255,
                ProtoError::BadFrame("unknown frame type"),
            ),
            (
                "reserved",
                good,
                |b| b[7] = 1,
                ProtoError::BadFrame("reserved header byte is not 0"),
            ),
            (
                "data flag bit 3",
                good,
                |b| b[5] = 8,
                ProtoError::BadFrame("undefined DATA flag bits"),
            ),
            (
                "data flag bit 7",
                good,
                |b| b[5] = 0x83,
                ProtoError::BadFrame("undefined DATA flag bits"),
            ),
            (
                "data lane 4",
                good,
                |b| b[6] = 4,
                ProtoError::BadFrame("lane out of range"),
            ),
            (
                "data lane 255",
                good,
                |b| b[6] = 255,
                ProtoError::BadFrame("lane out of range"),
            ),
            (
                "data seq 0",
                good,
                |b| b[12..16].fill(0),
                ProtoError::BadFrame("DATA frame with seq 0"),
            ),
            (
                "control flags",
                ctl,
                |b| b[5] = 1,
                ProtoError::BadFrame("flags on a control frame"),
            ),
            (
                "control lane",
                ctl,
                |b| b[6] = 1,
                ProtoError::BadFrame("lane on a control frame"),
            ),
            (
                "control msg_id",
                ctl,
                |b| b[8] = 1,
                ProtoError::BadFrame("msg_id or seq on a control frame"),
            ),
            (
                "control seq",
                ctl,
                |b| b[15] = 1,
                ProtoError::BadFrame("msg_id or seq on a control frame"),
            ),
        ];
        for (name, base, mutate, want) in cases {
            let mut b = base;
            mutate(&mut b);
            assert_eq!(FrameHeader::parse(&b), Err(want.clone()), "{name}");
            assert_eq!(
                FrameHeader::parse(&b).unwrap_err().code(),
                want.code(),
                "{name}"
            );
        }
        // Control frames of every type reject a lane; DATA accepts lanes 0..3 and flags 0..3.
        for k in [1u8, 2, 4, 5, 6, 7, 8, 9] {
            let mut b = FrameHeader::control(FrameType::from_u8(k).unwrap(), 20).to_bytes();
            b[6] = 2;
            assert!(FrameHeader::parse(&b).is_err());
        }
        for lane in 0..4u8 {
            for flags in 0..4u8 {
                let mut b = good;
                b[5] = flags;
                b[6] = lane;
                assert!(FrameHeader::parse(&b).is_ok());
            }
        }
    }

    #[test]
    fn min_body_per_type() {
        assert_eq!(FrameHeader::control(FrameType::Ping, 0).min_body(), 8);
        assert_eq!(FrameHeader::control(FrameType::Pong, 0).min_body(), 8);
        assert_eq!(FrameHeader::control(FrameType::GoAway, 0).min_body(), 4);
        assert_eq!(FrameHeader::control(FrameType::Hello, 0).min_body(), 51);
        assert_eq!(FrameHeader::control(FrameType::HelloAck, 0).min_body(), 52);
        assert_eq!(FrameHeader::control(FrameType::Ack, 0).min_body(), 16);
        assert_eq!(FrameHeader::control(FrameType::Challenge, 0).min_body(), 16);
        assert_eq!(FrameHeader::control(FrameType::Auth, 0).min_body(), 32);
        assert_eq!(
            FrameHeader::data(0, FrameHeader::FIRST, 0, 0, 1).min_body(),
            4
        );
        assert_eq!(
            FrameHeader::data(0, FrameHeader::FIRST | FrameHeader::LAST, 0, 0, 1).min_body(),
            0
        );
        assert_eq!(FrameHeader::data(0, 0, 0, 0, 1).min_body(), 0);
        assert_eq!(
            FrameHeader::data(0, FrameHeader::LAST, 0, 0, 1).min_body(),
            0
        );
    }
}
