//! Body of the `frame_decoder` fuzz target, shared with the main crate's
//! `tests/proto_fuzz_smoke.rs` (included there with `#[path]`), so that
//! `cargo test` runs exactly what the fuzzer runs.
//!
//! Input layout: the first byte is a control byte, the rest is the stream.
//! - bits 0-3 pick the chunk size the stream is fed in;
//! - bit 6 picks a small maximum message size (64 bytes) instead of 1 MiB;
//! - bit 7 prepends a valid preface, so the fuzzer spends its time on frames.
//!
//! Checks, besides "never panics": decoded frames have the announced body
//! length; `Ok(None)` never consumes a partial frame; errors are sticky;
//! control bodies that decode re-encode to the same value; and feeding the
//! stream in chunks gives exactly the same frames, messages and error as
//! feeding it at once. `handshake::peek_hello` (reactor 0's look at an
//! accepted connection) never changes its answer once it has one, as the
//! stream grows, and agrees with the decoder when it finds a HELLO.

#![allow(dead_code)]

use bytes::BytesMut;
use xxnet::proto::handshake::{
    decode_ack, decode_auth, decode_challenge, decode_goaway, decode_ping_token, encode_ack,
    peek_hello, HelloPeek,
};
use xxnet::proto::{
    FrameDecoder, FrameHeader, FrameType, Hello, HelloAck, Preface, ProtoError, Reassembler,
};

const CHUNKS: [usize; 16] = [
    1,
    2,
    3,
    5,
    7,
    8,
    13,
    16,
    17,
    31,
    64,
    100,
    1000,
    4096,
    65536,
    usize::MAX,
];

/// What one pass over a stream produced.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Digest of every frame and message, in order.
    pub digest: u64,
    /// Frames decoded.
    pub frames: usize,
    /// Messages completed.
    pub messages: usize,
    /// The first error (decoder, reassembler or body decoder), or `finish`'s.
    pub end: Result<(), ProtoError>,
}

fn mix(h: &mut u64, v: u64) {
    *h = (*h ^ v).wrapping_mul(0x0000_0100_0000_01B3);
}

/// Runs one fuzz input.
pub fn run(data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let chunk = CHUNKS[(ctl & 0x0F) as usize];
    let max = if ctl & 0x40 != 0 { 64 } else { 1 << 20 };
    let stream: std::borrow::Cow<[u8]> = if ctl & 0x80 != 0 {
        let mut v = Preface::BYTES.to_vec();
        v.extend_from_slice(rest);
        v.into()
    } else {
        rest.into()
    };
    check_peek(&stream);
    let chunked = feed(&stream, chunk, max);
    if chunk != usize::MAX {
        let whole = feed(&stream, usize::MAX, max);
        assert_eq!(chunked, whole, "chunking changed the result");
    }
}

/// `peek_hello` over every prefix (up to 4 KiB, reactor 0's limit): once
/// it answers something other than `More` it keeps that answer, and a
/// `Found` is the HELLO the decoder reads first.
pub fn check_peek(stream: &[u8]) {
    let n = stream.len().min(4096);
    let mut settled: Option<HelloPeek> = None;
    for end in 0..=n {
        let p = peek_hello(&stream[..end]);
        match settled {
            Some(s) => assert_eq!(p, s, "peek_hello changed its answer at {end} bytes"),
            None if p != HelloPeek::More => settled = Some(p),
            None => {}
        }
    }
    if let Some(HelloPeek::Found { instance, listen }) = settled {
        let mut dec = FrameDecoder::new();
        let mut b = BytesMut::from(stream);
        let f = dec
            .decode(&mut b)
            .expect("peek_hello found a HELLO the decoder refuses")
            .expect("peek_hello found a HELLO the decoder finds incomplete");
        assert_eq!(f.header.kind, FrameType::Hello);
        let h = Hello::decode(&f.body).expect("the HELLO body decodes");
        assert_eq!((h.instance, h.listen), (instance, listen));
    }
}

/// Feeds `stream` in pieces of `chunk` bytes and returns what came out.
pub fn feed(stream: &[u8], chunk: usize, max: usize) -> Outcome {
    let mut dec = FrameDecoder::new();
    let mut re = Reassembler::new(max);
    let mut buf = BytesMut::new();
    let mut out = Outcome {
        digest: 0xCBF2_9CE4_8422_2325,
        frames: 0,
        messages: 0,
        end: Ok(()),
    };
    let mut pos = 0;
    while pos < stream.len() {
        let n = chunk.min(stream.len() - pos);
        buf.extend_from_slice(&stream[pos..pos + n]);
        pos += n;
        loop {
            let preface_was_done = dec.preface_done();
            let before = buf.len();
            match dec.decode(&mut buf) {
                Ok(Some(f)) => {
                    assert_eq!(f.body.len(), f.header.body_len as usize);
                    assert!(f.header.body_len <= FrameHeader::MAX_BODY);
                    if preface_was_done {
                        assert_eq!(before - buf.len(), FrameHeader::LEN + f.body.len());
                    }
                    out.frames += 1;
                    mix(&mut out.digest, f.header.body_len as u64);
                    mix(&mut out.digest, f.header.kind as u64);
                    if let Err(e) = frame(&mut re, &f.header, f.body, &mut out) {
                        out.end = Err(e);
                        return out;
                    }
                }
                Ok(None) => {
                    if preface_was_done {
                        assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    }
                    if dec.preface_done() {
                        assert!(dec.needed(&buf) > 0, "Ok(None) with nothing needed");
                    } else {
                        assert!(buf.is_empty(), "preface bytes left unchecked");
                    }
                    break;
                }
                Err(e) => {
                    assert_eq!(dec.decode(&mut buf), Err(e.clone()), "error not sticky");
                    assert_eq!(dec.finish(&buf), Err(e.clone()));
                    assert_eq!(dec.needed(&buf), 0);
                    out.end = Err(e);
                    return out;
                }
            }
        }
    }
    out.end = dec.finish(&buf);
    if out.end.is_ok() {
        assert!(buf.is_empty());
    }
    out
}

fn frame(
    re: &mut Reassembler,
    h: &FrameHeader,
    body: bytes::Bytes,
    out: &mut Outcome,
) -> Result<(), ProtoError> {
    match h.kind {
        FrameType::Data => {
            mix(
                &mut out.digest,
                ((h.lane as u64) << 40) | ((h.flags as u64) << 32) | h.msg_id as u64,
            );
            mix(&mut out.digest, h.seq as u64);
            if let Some(m) = re.push(h, body)? {
                assert!(m.payload.len() <= re.max_message());
                assert_eq!((m.lane, m.msg_id, m.seq), (h.lane, h.msg_id, h.seq));
                out.messages += 1;
                mix(&mut out.digest, m.payload.len() as u64);
                for &b in m.payload.iter().take(64) {
                    mix(&mut out.digest, b as u64);
                }
            }
            assert!(re.buffered() <= FrameHeader::LANES * re.max_message());
            assert!(re.buffered() == 0 || re.has_partial());
        }
        FrameType::Hello => {
            let hello = Hello::decode(&body)?;
            let mut enc = BytesMut::new();
            hello.encode(&mut enc);
            assert_eq!(Hello::decode(&enc[FrameHeader::LEN..]), Ok(hello.clone()));
            mix(&mut out.digest, hello.nonce);
        }
        FrameType::HelloAck => {
            let ack = HelloAck::decode(&body)?;
            let mut enc = BytesMut::new();
            ack.encode(&mut enc);
            assert_eq!(HelloAck::decode(&enc[FrameHeader::LEN..]), Ok(ack.clone()));
            mix(&mut out.digest, ack.instance);
        }
        FrameType::Ping | FrameType::Pong => {
            let token = decode_ping_token(&body).expect("decoder checked the PING/PONG body size");
            mix(&mut out.digest, token);
        }
        FrameType::GoAway => {
            let code = decode_goaway(&body).expect("decoder checked the GOAWAY body size");
            mix(&mut out.digest, code as u64);
        }
        FrameType::Ack => {
            let acked = decode_ack(&body).expect("decoder checked the ACK body size");
            let mut enc = BytesMut::new();
            encode_ack(&acked, &mut enc);
            assert_eq!(decode_ack(&enc[FrameHeader::LEN..]), Ok(acked));
            for a in acked {
                mix(&mut out.digest, a as u64);
            }
        }
        FrameType::Challenge => {
            let c = decode_challenge(&body).expect("decoder checked the CHALLENGE body size");
            mix(&mut out.digest, c[0] as u64);
        }
        FrameType::Auth => {
            let p = decode_auth(&body).expect("decoder checked the AUTH body size");
            mix(&mut out.digest, p[0] as u64);
        }
    }
    Ok(())
}
