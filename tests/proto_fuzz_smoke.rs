//! Runs the `frame_decoder` fuzz target's body (fuzz/common/) over a few
//! thousand deterministic inputs: random bytes, random frames, and mutated
//! valid streams. Nothing may panic.

#[path = "../fuzz/common/frame_decoder_body.rs"]
mod body;

use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use xxnet::proto::handshake::{
    encode_ack, encode_auth, encode_challenge, encode_goaway, encode_ping, encode_pong,
};
use xxnet::proto::{
    AckStatus, FrameDecoder, FrameHeader, FrameType, Hello, HelloAck, Outbound, Preface,
    ProtoError, Reassembler, SessionSync, WriteBuf,
};

/// xorshift64* — deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A valid stream: preface, HELLO or HELLO_ACK, control frames, and
/// messages on all lanes through Outbound.
fn valid_stream(rng: &mut Rng) -> Vec<u8> {
    let mut head = BytesMut::from(&Preface::BYTES[..]);
    let listen: Option<SocketAddr> = match rng.below(3) {
        0 => None,
        1 => Some("10.0.0.1:4000".parse().unwrap()),
        _ => Some("[fd00::7]:4001".parse().unwrap()),
    };
    if rng.below(2) == 0 {
        Hello {
            sync: SessionSync {
                send_id: rng.next(),
                recv_id: rng.next(),
                delivered: [rng.next() as u32, 0, 1, u32::MAX],
            },
            instance: rng.next(),
            nonce: rng.next() | 1,
            listen,
            name: (rng.below(2) == 0).then(|| format!("n{}", rng.next() % 1000)),
            challenge: (rng.below(2) == 0).then(|| [rng.next() as u8; 16]),
        }
        .encode(&mut head);
        if rng.below(2) == 0 {
            encode_auth(&[rng.next() as u8; 32], &mut head);
        }
    } else {
        HelloAck {
            sync: Default::default(),
            status: AckStatus::Accepted,
            instance: rng.next(),
            abandoned_nonce: 0,
            listen,
            name: (rng.below(2) == 0).then(|| format!("n{}", rng.next() % 1000)),
            proof: (rng.below(2) == 0).then(|| [rng.next() as u8; 32]),
        }
        .encode(&mut head);
        if rng.below(2) == 0 {
            encode_challenge(&[rng.next() as u8; 16], &mut head);
        }
    }
    encode_ping(rng.next(), &mut head);
    encode_ack(&[rng.next() as u32, 1, 2, 3], &mut head);
    encode_pong(rng.next(), &mut head);
    let mut w = WriteBuf::new();
    w.put_slice(&head);
    let frag = [1, 7, 64, 300][rng.below(4)];
    let mut o = Outbound::new(frag);
    for i in 0..rng.below(12) {
        let len = [0, 1, 5, 63, 64, 65, 299, 300, 301, 700][rng.below(10)];
        o.push(rng.below(4) as u8, i as u32, Bytes::from(rng.bytes(len)));
    }
    o.fill(&mut w, usize::MAX);
    let mut tail = BytesMut::new();
    if rng.below(4) == 0 {
        encode_goaway(-23, &mut tail);
    }
    w.put_slice(&tail);
    let mut out = Vec::with_capacity(w.len());
    while !w.is_empty() {
        let mut slices = [std::io::IoSlice::new(&[]); 16];
        let n = w.io_slices(&mut slices);
        let mut written = 0;
        for s in &slices[..n] {
            out.extend_from_slice(s);
            written += s.len();
        }
        w.advance(written);
    }
    out
}

fn mutate(rng: &mut Rng, v: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(v.len() + 1);
                let b = rng.next() as u8;
                v.insert(i, b);
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.remove(i);
            }
            4 => {
                let cut = rng.below(v.len() + 1);
                v.truncate(cut);
            }
            _ if v.len() >= 4 => {
                // Overwrite a u32 with an interesting value (lengths, seqs).
                let i = rng.below(v.len() - 3);
                let x = [
                    0u32,
                    1,
                    2,
                    3,
                    4,
                    0xFF,
                    0x1_0000,
                    FrameHeader::MAX_BODY,
                    FrameHeader::MAX_BODY + 1,
                    u32::MAX,
                ][rng.below(10)];
                v[i..i + 4].copy_from_slice(&x.to_le_bytes());
            }
            _ => {}
        }
    }
}

#[test]
fn valid_streams_decode_cleanly() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    for _ in 0..300 {
        let s = valid_stream(&mut rng);
        for chunk in [1, 3, 16, 4096] {
            let o = body::feed(&s, chunk, 1 << 20);
            assert_eq!(o.end, Ok(()));
            assert!(o.frames >= 3);
        }
        let mut input = vec![rng.next() as u8 & 0x0F];
        input.extend_from_slice(&s);
        body::run(&input);
    }
}

#[test]
fn fuzz_smoke_mutated_valid_streams() {
    let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
    let mut errors = 0;
    for _ in 0..3000 {
        let mut s = valid_stream(&mut rng);
        mutate(&mut rng, &mut s);
        // Control byte: random chunk size and max, no extra preface (the
        // stream has its own).
        let mut input = vec![rng.next() as u8 & 0x4F];
        input.extend_from_slice(&s);
        body::run(&input);
        if body::feed(&s, usize::MAX, 1 << 20).end.is_err() {
            errors += 1;
        }
    }
    // The mutations do hit the validation paths.
    assert!(errors > 500, "only {errors} mutated streams were rejected");
}

#[test]
fn fuzz_smoke_random_bytes() {
    let mut rng = Rng(0x0BAD_5EED_0000_0001);
    for i in 0..4000 {
        let len = rng.below(if i % 10 == 0 { 2000 } else { 120 });
        let mut input = rng.bytes(len);
        if let Some(c) = input.first_mut() {
            // Mostly with a valid preface in front, so frames get parsed.
            if i % 4 != 0 {
                *c |= 0x80;
            }
        }
        body::run(&input);
    }
}

#[test]
fn fuzz_smoke_random_frames() {
    // Syntactically plausible headers with random fields and short bodies.
    let mut rng = Rng(42);
    for _ in 0..3000 {
        let mut s = vec![rng.next() as u8 | 0x80];
        for _ in 0..1 + rng.below(8) {
            let body_len = rng.below(40);
            let kind = 1 + rng.below(9) as u8;
            let data = kind == FrameType::Data as u8;
            let flags = if data { rng.below(4) as u8 } else { 0 };
            let lane = if data { rng.below(4) as u8 } else { 0 };
            let seq = if data { 1 + rng.below(3) as u32 } else { 0 };
            let msg_id = if data { rng.below(2) as u32 } else { 0 };
            let mut h = FrameHeader::control(FrameType::Hello, body_len as u32).to_bytes();
            h[4] = kind;
            h[5] = flags;
            h[6] = lane;
            h[8..12].copy_from_slice(&msg_id.to_le_bytes());
            h[12..16].copy_from_slice(&seq.to_le_bytes());
            s.extend_from_slice(&h);
            let mut b = rng.bytes(body_len);
            if data && flags == FrameHeader::FIRST && b.len() >= 4 {
                let total = rng.below(80) as u32;
                b[..4].copy_from_slice(&total.to_le_bytes());
            }
            s.extend_from_slice(&b);
        }
        body::run(&s);
    }
}

#[test]
fn oversize_lengths_rejected_without_allocating() {
    // A header announcing u32::MAX bytes: FrameTooLarge with only 16 bytes read.
    let mut buf = BytesMut::from(&Preface::BYTES[..]);
    let mut h = FrameHeader::data(0, 3, 0, 0, 1).to_bytes();
    h[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    buf.extend_from_slice(&h);
    let cap = buf.capacity();
    let mut d = FrameDecoder::new();
    assert_eq!(d.needed(&buf), 0);
    assert_eq!(d.decode(&mut buf), Err(ProtoError::FrameTooLarge(u32::MAX)));
    assert!(buf.capacity() <= cap);
    // DATA FIRST announcing total_len u32::MAX with a 16 MiB maximum.
    let mut r = Reassembler::new(16 << 20);
    let mut body = u32::MAX.to_le_bytes().to_vec();
    body.extend_from_slice(b"abc");
    let hdr = FrameHeader::data(body.len() as u32, FrameHeader::FIRST, 1, 5, 1);
    assert_eq!(
        r.push(&hdr, Bytes::from(body)),
        Err(ProtoError::MessageTooLarge(u32::MAX as u64))
    );
    assert_eq!(r.buffered(), 0);
    assert!(!r.has_partial());
}
