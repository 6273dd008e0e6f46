//! Sans-IO frame decoder (preface + frames).
//!
//! The reactor appends whatever the socket returned to a `BytesMut` and calls
//! [`FrameDecoder::decode`] until it returns `Ok(None)`. The decoder never
//! allocates: frame bodies are split off the read buffer, and a frame's
//! announced size is validated before the caller is told (through
//! [`FrameDecoder::needed`]) how much to reserve.

use super::frame::Preface;
use super::{Frame, FrameHeader, ProtoError};
use bytes::{Buf, BytesMut};

/// Splits a byte stream into frames. Feed it the connection's read buffer.
///
/// State: how many preface bytes were checked so far, and the first error
/// (after an error every call returns that error again).
#[derive(Debug, Default)]
pub struct FrameDecoder {
    /// Preface bytes already checked and consumed (0..=8).
    preface_pos: u8,
    /// Low byte of the version, kept between calls while the high byte is missing.
    version_lo: u8,
    /// The first violation; sticky.
    error: Option<ProtoError>,
}

impl FrameDecoder {
    /// A decoder expecting the preface.
    pub fn new() -> Self {
        FrameDecoder::default()
    }

    /// Takes the next complete frame off the front of `buf`.
    /// `Ok(None)`: need more bytes. The preface is consumed first.
    ///
    /// Preface bytes are checked and consumed as they arrive (a wrong magic
    /// byte fails at once). A partial frame is never consumed. A complete
    /// frame is split off the front of `buf`; its body shares `buf`'s
    /// allocation (no copy). The header is validated (see
    /// [`FrameHeader::parse`], plus the minimum body size of its type) as
    /// soon as its 16 bytes are present, before the body arrives.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtoError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if (self.preface_pos as usize) < Preface::LEN {
            match self.consume_preface(buf) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(e) => return Err(self.fail(e)),
            }
        }
        if buf.len() < FrameHeader::LEN {
            return Ok(None);
        }
        let mut raw = [0u8; FrameHeader::LEN];
        raw.copy_from_slice(&buf[..FrameHeader::LEN]);
        let header = match FrameHeader::parse(&raw) {
            Ok(h) => h,
            Err(e) => return Err(self.fail(e)),
        };
        if header.body_len < header.min_body() {
            return Err(self.fail(ProtoError::BadFrame("body too short for its frame type")));
        }
        let body_len = header.body_len as usize;
        if buf.len() < FrameHeader::LEN + body_len {
            return Ok(None);
        }
        buf.advance(FrameHeader::LEN);
        let body = buf.split_to(body_len).freeze();
        Ok(Some(Frame { header, body }))
    }

    /// Call at EOF with what is left in `buf`: `Err(Truncated)` if a partial preface or frame remains.
    ///
    /// Call it after `decode` returned `Ok(None)`: any byte left in `buf` is
    /// then a partial frame. A stream that never sent a byte is `Ok` (the
    /// decoder remembers whether any preface byte was seen). After an error
    /// this returns that error again.
    pub fn finish(&self, buf: &BytesMut) -> Result<(), ProtoError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let pos = self.preface_pos as usize;
        if (pos > 0 && pos < Preface::LEN) || !buf.is_empty() {
            return Err(ProtoError::Truncated);
        }
        Ok(())
    }

    /// True once the whole preface has been checked.
    pub fn preface_done(&self) -> bool {
        self.preface_pos as usize == Preface::LEN
    }

    /// True once at least one preface byte has been received and checked.
    pub fn started(&self) -> bool {
        self.preface_pos > 0
    }

    /// The error this decoder stopped on, if any.
    pub fn error(&self) -> Option<&ProtoError> {
        self.error.as_ref()
    }

    /// Bytes still missing for the frame at the front of `buf` (0 if unknown); a hint for reserving.
    ///
    /// While the header is incomplete this is what completes the header
    /// (and the rest of the preface, if it is not done); once the header is
    /// there, what completes the body. 0 if the frame is complete, the
    /// decoder has failed, or the announced body is over the limit (the next
    /// `decode` fails; nothing should be reserved for it).
    pub fn needed(&self, buf: &BytesMut) -> usize {
        if self.error.is_some() {
            return 0;
        }
        let preface_left = Preface::LEN - self.preface_pos as usize;
        if buf.len() < preface_left + FrameHeader::LEN {
            return preface_left + FrameHeader::LEN - buf.len();
        }
        let h = &buf[preface_left..];
        let body_len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        if body_len > FrameHeader::MAX_BODY {
            return 0;
        }
        (FrameHeader::LEN + body_len as usize).saturating_sub(h.len())
    }

    fn fail(&mut self, e: ProtoError) -> ProtoError {
        self.error = Some(e.clone());
        e
    }

    /// Checks and consumes preface bytes; `Ok(true)` once the preface is done.
    fn consume_preface(&mut self, buf: &mut BytesMut) -> Result<bool, ProtoError> {
        let mut pos = self.preface_pos as usize;
        let mut used = 0;
        while pos < Preface::LEN && used < buf.len() {
            let b = buf[used];
            match pos {
                0..=3 => {
                    if b != Preface::MAGIC[pos] {
                        return Err(ProtoError::BadPreface);
                    }
                }
                4 => self.version_lo = b,
                5 => {
                    let v = u16::from_le_bytes([self.version_lo, b]);
                    if v != Preface::VERSION {
                        return Err(ProtoError::BadVersion(v));
                    }
                }
                _ => {
                    if b != 0 {
                        return Err(ProtoError::BadPreface);
                    }
                }
            }
            pos += 1;
            used += 1;
        }
        buf.advance(used);
        self.preface_pos = pos as u8;
        Ok(pos == Preface::LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::FrameType;
    use bytes::BufMut;

    fn ping_frame(token: u64) -> Vec<u8> {
        let mut v = FrameHeader::control(FrameType::Ping, 8).to_bytes().to_vec();
        v.extend_from_slice(&token.to_le_bytes());
        v
    }

    fn data_frame(flags: u8, lane: u8, msg_id: u32, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut v = FrameHeader::data(body.len() as u32, flags, lane, msg_id, seq)
            .to_bytes()
            .to_vec();
        v.extend_from_slice(body);
        v
    }

    fn decode_all(bytes: &[u8]) -> Result<Vec<Frame>, ProtoError> {
        let mut d = FrameDecoder::new();
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(f) = d.decode(&mut buf)? {
            out.push(f);
        }
        d.finish(&buf)?;
        Ok(out)
    }

    #[test]
    fn preface_then_frames() {
        let mut s = Preface::BYTES.to_vec();
        s.extend(ping_frame(42));
        s.extend(data_frame(3, 2, 9, 1, b"hello"));
        s.extend(data_frame(3, 0, 9, 1, b""));
        let frames = decode_all(&s).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].header.kind, FrameType::Ping);
        assert_eq!(&frames[0].body[..], &42u64.to_le_bytes());
        assert_eq!(frames[1].header, FrameHeader::data(5, 3, 2, 9, 1));
        assert_eq!(&frames[1].body[..], b"hello");
        assert!(frames[2].body.is_empty());
    }

    #[test]
    fn body_is_not_copied() {
        let mut s = Preface::BYTES.to_vec();
        s.extend(data_frame(3, 0, 1, 1, &[7u8; 100]));
        let mut buf = BytesMut::from(&s[..]);
        let base = buf.as_ptr() as usize;
        let mut d = FrameDecoder::new();
        let f = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(f.body.as_ptr() as usize, base + 8 + 16);
    }

    #[test]
    fn preface_errors_byte_by_byte() {
        // (input, expected error) — each fails as soon as the bad byte is seen.
        let cases: Vec<(&[u8], ProtoError)> = vec![
            (b"G", ProtoError::BadPreface),
            (b"GET / HTTP/1.1\r\n", ProtoError::BadPreface),
            (b"XG", ProtoError::BadPreface),
            (b"XXNX", ProtoError::BadPreface),
            (b"XXNT\x02\x00", ProtoError::BadVersion(2)),
            (b"XXNT\x00\x00", ProtoError::BadVersion(0)),
            (b"XXNT\x01\x01", ProtoError::BadVersion(257)),
            (b"XXNT\x01\x00\x01", ProtoError::BadPreface),
            (b"XXNT\x01\x00\x00\x01", ProtoError::BadPreface),
        ];
        // A correct prefix is accepted and consumed.
        let mut d = FrameDecoder::new();
        let mut buf = BytesMut::from(&b"XXN"[..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert!(buf.is_empty());
        assert!(d.started() && !d.preface_done());
        for (input, want) in cases {
            // All at once.
            let mut d = FrameDecoder::new();
            let mut buf = BytesMut::from(input);
            assert_eq!(d.decode(&mut buf), Err(want.clone()), "{input:?}");
            // Sticky.
            assert_eq!(d.decode(&mut buf), Err(want.clone()));
            assert_eq!(d.finish(&buf), Err(want.clone()));
            assert_eq!(d.needed(&buf), 0);
            // One byte at a time: the error comes exactly with the last byte
            // of `input` (every case's last byte is the first bad one, except
            // the HTTP line, whose first byte already is).
            let mut d = FrameDecoder::new();
            let mut buf = BytesMut::new();
            let mut got = None;
            for (i, &b) in input.iter().enumerate() {
                buf.put_u8(b);
                match d.decode(&mut buf) {
                    Ok(None) => {}
                    Ok(Some(_)) => panic!("frame from a preface"),
                    Err(e) => {
                        got = Some((i, e));
                        break;
                    }
                }
            }
            let (i, e) = got.expect("error");
            assert_eq!(e, want);
            if input[0] == b'G' {
                assert_eq!(i, 0);
            } else {
                assert_eq!(i, input.len() - 1, "{input:?}");
            }
        }
    }

    #[test]
    fn version_split_across_calls() {
        let mut d = FrameDecoder::new();
        let mut buf = BytesMut::from(&b"XXNT\x03"[..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.put_u8(0);
        assert_eq!(d.decode(&mut buf), Err(ProtoError::BadVersion(3)));
    }

    #[test]
    fn min_body_per_type() {
        let short = |kind: FrameType, len: u32| {
            let mut s = Preface::BYTES.to_vec();
            s.extend(FrameHeader::control(kind, len).to_bytes());
            s
        };
        let cases = [
            (FrameType::Ping, 8),
            (FrameType::Pong, 8),
            (FrameType::GoAway, 4),
            (FrameType::Hello, 51),
            (FrameType::HelloAck, 52),
            (FrameType::Ack, 16),
            (FrameType::Challenge, 16),
            (FrameType::Auth, 32),
        ];
        for (kind, min) in cases {
            // One byte short fails with only the header present.
            let mut d = FrameDecoder::new();
            let mut buf = BytesMut::from(&short(kind, min - 1)[..]);
            assert_eq!(
                d.decode(&mut buf),
                Err(ProtoError::BadFrame("body too short for its frame type")),
                "{kind:?}"
            );
            // Exactly the minimum, and more, is fine.
            for len in [min, min + 5] {
                let mut s = short(kind, len);
                s.extend(vec![0u8; len as usize]);
                let mut d = FrameDecoder::new();
                let mut buf = BytesMut::from(&s[..]);
                let f = d.decode(&mut buf).unwrap().unwrap();
                assert_eq!(f.body.len(), len as usize);
            }
        }
        // DATA FIRST-only needs 4 bytes; other DATA parts may be empty.
        for (flags, ok_len0) in [(1u8, false), (0, true), (2, true), (3, true)] {
            let mut s = Preface::BYTES.to_vec();
            s.extend(data_frame(flags, 0, 0, 1, b""));
            let r = decode_all(&s);
            assert_eq!(r.is_ok(), ok_len0, "flags {flags}");
            if !ok_len0 {
                assert_eq!(
                    r.unwrap_err(),
                    ProtoError::BadFrame("body too short for its frame type")
                );
                let mut s = Preface::BYTES.to_vec();
                s.extend(data_frame(flags, 0, 0, 1, &[0, 0, 0]));
                assert!(decode_all(&s).is_err());
                let mut s = Preface::BYTES.to_vec();
                s.extend(data_frame(flags, 0, 0, 1, &[0, 0, 0, 0]));
                assert!(decode_all(&s).is_ok());
            }
        }
    }

    #[test]
    fn header_errors_surface_from_decode() {
        let mut s = Preface::BYTES.to_vec();
        let mut h = FrameHeader::data(0, 3, 0, 0, 1).to_bytes();
        h[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        s.extend(h);
        // Only the header: rejected before any body byte (and nothing reserved).
        let mut d = FrameDecoder::new();
        let mut buf = BytesMut::from(&s[..]);
        let cap = buf.capacity();
        assert_eq!(d.needed(&buf), 0);
        assert_eq!(d.decode(&mut buf), Err(ProtoError::FrameTooLarge(u32::MAX)));
        assert!(buf.capacity() <= cap);
        assert_eq!(
            ProtoError::FrameTooLarge(0).code(),
            crate::codes::XXNET_E_FRAME_TOO_LARGE
        );

        let mut s = Preface::BYTES.to_vec();
        let mut h = FrameHeader::data(0, 3, 0, 0, 1).to_bytes();
        h[4] = 10;
        s.extend(h);
        assert_eq!(
            decode_all(&s).unwrap_err(),
            ProtoError::BadFrame("unknown frame type")
        );
    }

    #[test]
    fn partial_frame_not_consumed_and_needed() {
        let mut s = Preface::BYTES.to_vec();
        s.extend(data_frame(3, 1, 5, 1, &[1u8; 40]));
        let mut d = FrameDecoder::new();
        assert_eq!(d.needed(&BytesMut::new()), 8 + 16);
        let mut buf = BytesMut::new();
        for (i, &b) in s.iter().enumerate() {
            let have = i + 1;
            buf.put_u8(b);
            let before = buf.len();
            let r = d.decode(&mut buf).unwrap();
            if have < s.len() {
                assert!(r.is_none());
                if have > 8 {
                    assert_eq!(buf.len(), before, "partial frame consumed");
                    let want = if have < 24 { 24 - have } else { s.len() - have };
                    assert_eq!(d.needed(&buf), want);
                } else {
                    assert!(buf.is_empty());
                    assert_eq!(d.needed(&buf), 8 - have + 16);
                }
                let clean = if have == 8 {
                    Ok(())
                } else {
                    Err(ProtoError::Truncated)
                };
                assert_eq!(d.finish(&buf), clean);
            } else {
                let f = r.unwrap();
                assert_eq!(f.body.len(), 40);
                assert!(buf.is_empty());
                assert_eq!(d.finish(&buf), Ok(()));
                assert_eq!(d.needed(&buf), 16);
            }
        }
    }

    #[test]
    fn needed_counts_unconsumed_preface_bytes() {
        // Bytes not yet passed through decode: the preface is still in buf.
        let d = FrameDecoder::new();
        let mut s = Preface::BYTES.to_vec();
        s.extend(data_frame(3, 0, 0, 1, &[0u8; 10]));
        let buf = BytesMut::from(&s[..20]);
        assert_eq!(d.needed(&buf), 4);
        let buf = BytesMut::from(&s[..30]);
        assert_eq!(d.needed(&buf), 4);
        let buf = BytesMut::from(&s[..]);
        assert_eq!(d.needed(&buf), 0);
    }

    #[test]
    fn finish_rules() {
        // Nothing ever received: a clean close.
        let d = FrameDecoder::new();
        assert_eq!(d.finish(&BytesMut::new()), Ok(()));
        assert!(!d.started());
        // Truncated preface (consumed by decode, buffer empty).
        for n in 1..8 {
            let mut d = FrameDecoder::new();
            let mut buf = BytesMut::from(&Preface::BYTES[..n]);
            assert_eq!(d.decode(&mut buf), Ok(None));
            assert!(buf.is_empty());
            assert_eq!(d.finish(&buf), Err(ProtoError::Truncated), "{n}");
        }
        // Complete preface only.
        let mut d = FrameDecoder::new();
        let mut buf = BytesMut::from(&Preface::BYTES[..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert!(d.preface_done());
        assert_eq!(d.finish(&buf), Ok(()));
        // Truncated header and truncated body.
        let frame = ping_frame(1);
        for cut in [1, 15, 16, 20, 23] {
            let mut s = Preface::BYTES.to_vec();
            s.extend(&frame[..cut]);
            let mut d = FrameDecoder::new();
            let mut buf = BytesMut::from(&s[..]);
            assert_eq!(d.decode(&mut buf), Ok(None));
            assert_eq!(d.finish(&buf), Err(ProtoError::Truncated), "cut {cut}");
        }
        // Bytes never decoded count as truncated too.
        let d = FrameDecoder::new();
        assert_eq!(
            d.finish(&BytesMut::from(&b"X"[..])),
            Err(ProtoError::Truncated)
        );
    }

    #[test]
    fn every_split_point_of_a_small_stream() {
        let mut s = Preface::BYTES.to_vec();
        s.extend(ping_frame(7));
        s.extend(data_frame(1, 0, 3, 1, &[10, 0, 0, 0, 1, 2]));
        s.extend(data_frame(0, 0, 3, 1, &[3, 4]));
        s.extend(data_frame(2, 0, 3, 1, &[5, 6]));
        s.extend(data_frame(3, 3, 4, 1, b""));
        let want = decode_all(&s).unwrap();
        assert_eq!(want.len(), 5);
        for k in 0..=s.len() {
            let mut d = FrameDecoder::new();
            let mut buf = BytesMut::from(&s[..k]);
            let mut got = Vec::new();
            while let Some(f) = d.decode(&mut buf).unwrap() {
                got.push(f);
            }
            buf.extend_from_slice(&s[k..]);
            while let Some(f) = d.decode(&mut buf).unwrap() {
                got.push(f);
            }
            assert_eq!(d.finish(&buf), Ok(()));
            assert_eq!(got, want, "split at {k}");
        }
    }
}
