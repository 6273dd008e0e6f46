//! End-to-end codec tests through the public API: a sender (preface, HELLO,
//! control frames, Outbound + WriteBuf) and a receiver (FrameDecoder +
//! Reassembler) with the byte stream split every possible way.

use bytes::{Bytes, BytesMut};
use std::io::IoSlice;
use xxnet::proto::handshake::{decode_goaway, decode_ping_token, encode_goaway, encode_ping};
use xxnet::proto::{
    DrainSummary, FillStats, FrameDecoder, FrameHeader, FrameType, Hello, InMessage, Outbound,
    Preface, ProtoError, Reassembler, WriteBuf,
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
}

/// A message as the sender queued it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sent {
    lane: u8,
    msg_id: u32,
    payload: Bytes,
}

fn payload(len: usize, tag: u32) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u32).wrapping_mul(31).wrapping_add(tag) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn hello() -> Hello {
    Hello {
        sync: Default::default(),
        instance: 0x1111,
        nonce: 0x2222,
        listen: Some("127.0.0.1:9000".parse().unwrap()),
        name: Some("sender".into()),
        challenge: Some([0x3C; 16]),
    }
}

/// What the receiver got out of a stream.
#[derive(Debug, Default, PartialEq)]
struct Received {
    hello: Option<Hello>,
    pings: Vec<u64>,
    goaway: Option<i32>,
    msgs: Vec<InMessage>,
}

/// Receiver side: a decoder, a reassembler and a read buffer.
struct Receiver {
    dec: FrameDecoder,
    re: Reassembler,
    buf: BytesMut,
    got: Received,
}

impl Receiver {
    fn new() -> Self {
        Receiver {
            dec: FrameDecoder::new(),
            re: Reassembler::new(16 << 20),
            buf: BytesMut::new(),
            got: Received::default(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), ProtoError> {
        self.buf.extend_from_slice(bytes);
        while let Some(f) = self.dec.decode(&mut self.buf)? {
            match f.header.kind {
                FrameType::Hello => self.got.hello = Some(Hello::decode(&f.body)?),
                FrameType::Ping => self.got.pings.push(decode_ping_token(&f.body)?),
                FrameType::GoAway => self.got.goaway = Some(decode_goaway(&f.body)?),
                FrameType::Data => {
                    if let Some(m) = self.re.push(&f.header, f.body)? {
                        self.got.msgs.push(m);
                    }
                }
                k => panic!("unexpected {k:?}"),
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Received, ProtoError> {
        self.dec.finish(&self.buf)?;
        if self.re.has_partial() {
            return Err(ProtoError::Truncated);
        }
        Ok(self.got)
    }
}

/// Per-lane (msg_id, payload) lists, with each lane's seqs checked to be 1, 2, ...
fn by_lane_received(msgs: &[InMessage]) -> Vec<Vec<(u32, Bytes)>> {
    let mut lanes = vec![Vec::new(); FrameHeader::LANES];
    for m in msgs {
        let l: &mut Vec<(u32, Bytes)> = &mut lanes[m.lane as usize];
        assert_eq!(m.seq as usize, l.len() + 1, "lane {} seq", m.lane);
        l.push((m.msg_id, m.payload.clone()));
    }
    lanes
}

fn by_lane_sent(msgs: &[Sent]) -> Vec<Vec<(u32, Bytes)>> {
    let mut lanes = vec![Vec::new(); FrameHeader::LANES];
    for m in msgs {
        lanes[m.lane as usize].push((m.msg_id, m.payload.clone()));
    }
    lanes
}

/// Writes everything pending in `w` into `wire`, through io_slices/advance.
fn write_all(w: &mut WriteBuf, wire: &mut Vec<u8>) -> FillStats {
    let mut total = FillStats::default();
    while !w.is_empty() {
        let mut slices = [IoSlice::new(&[]); 8];
        let n = w.io_slices(&mut slices);
        let mut k = 0;
        for s in &slices[..n] {
            wire.extend_from_slice(s);
            k += s.len();
        }
        let st = w.advance(k);
        total.msgs += st.msgs;
        total.bytes += st.bytes;
    }
    total
}

/// The mixed message set: every lane, sizes from 0 to several fragments.
fn mixed_messages(frag: usize) -> Vec<Sent> {
    let sizes = [
        0,
        1,
        17,
        64,
        frag - 1,
        frag,
        frag + 1,
        2 * frag,
        3 * frag + 5,
        0,
        200,
    ];
    let mut v = Vec::new();
    let mut id = 100;
    for (i, &len) in sizes.iter().enumerate() {
        for lane in 0..4u8 {
            if (i + lane as usize) % 3 == 0 || len < 100 {
                id += 1;
                v.push(Sent {
                    lane,
                    msg_id: id,
                    payload: payload(len, id),
                });
            }
        }
    }
    v
}

/// Preface + HELLO + PING + all `msgs` through Outbound (fill limit `limit`
/// per round) + GOAWAY.
fn build_stream(msgs: &[Sent], frag: usize, limit: usize) -> Vec<u8> {
    let mut w = WriteBuf::new();
    let mut ctl = BytesMut::from(&Preface::BYTES[..]);
    hello().encode(&mut ctl);
    encode_ping(77, &mut ctl);
    w.put_slice(&ctl);
    let mut o = Outbound::new(frag);
    for m in msgs {
        o.push(m.lane, m.msg_id, m.payload.clone());
    }
    let mut wire = Vec::new();
    let mut filled = 0;
    while !o.is_empty() {
        filled += o.fill(&mut w, limit).msgs;
        write_all(&mut w, &mut wire);
    }
    assert_eq!(filled as usize, msgs.len());
    let mut ctl = BytesMut::new();
    encode_goaway(-24, &mut ctl);
    w.put_slice(&ctl);
    write_all(&mut w, &mut wire);
    wire
}

fn check(got: &Received, msgs: &[Sent]) {
    assert_eq!(got.hello.as_ref(), Some(&hello()));
    assert_eq!(got.pings, vec![77]);
    assert_eq!(got.goaway, Some(-24));
    assert_eq!(got.msgs.len(), msgs.len());
    assert_eq!(by_lane_received(&got.msgs), by_lane_sent(msgs));
}

/// How many frames of one lane sit between a FIRST and a LAST of another.
fn interleaved_parts(wire: &[u8]) -> usize {
    let mut d = FrameDecoder::new();
    let mut buf = BytesMut::from(wire);
    let mut open = [false; FrameHeader::LANES];
    let mut n = 0;
    while let Some(f) = d.decode(&mut buf).unwrap() {
        let h = f.header;
        if h.kind != FrameType::Data {
            continue;
        }
        if open
            .iter()
            .enumerate()
            .any(|(l, &o)| o && l != h.lane as usize)
        {
            n += 1;
        }
        match h.flags {
            FrameHeader::FIRST => open[h.lane as usize] = true,
            FrameHeader::LAST => open[h.lane as usize] = false,
            _ => {}
        }
    }
    n
}

#[test]
fn stream_split_at_every_byte_boundary() {
    // A stream of a few KB, with multi-part messages interleaved on lanes.
    let frag = 64;
    let msgs = mixed_messages(frag);
    let wire = build_stream(&msgs, frag, 100);
    assert!(
        wire.len() > 2000 && wire.len() < 20_000,
        "stream is {} bytes",
        wire.len()
    );
    assert!(
        interleaved_parts(&wire) > 0,
        "no multi-part message interleaved with another lane"
    );
    let mut r = Receiver::new();
    r.feed(&wire).unwrap();
    let all = r.finish().unwrap();
    check(&all, &msgs);

    for k in 0..=wire.len() {
        let mut r = Receiver::new();
        r.feed(&wire[..k]).unwrap();
        r.feed(&wire[k..]).unwrap();
        let got = r.finish().unwrap_or_else(|e| panic!("split at {k}: {e}"));
        assert_eq!(got, all, "split at {k}");
    }
}

#[test]
fn stream_with_fragment_1024_split_everywhere() {
    let frag = 1024;
    let msgs = mixed_messages(frag);
    let wire = build_stream(&msgs, frag, 2 * frag);
    assert!(interleaved_parts(&wire) > 0);
    let mut r = Receiver::new();
    r.feed(&wire).unwrap();
    let all = r.finish().unwrap();
    check(&all, &msgs);
    // Every split point of the first few KB (where the handshake and the
    // first interleaved parts are), then a stride over the rest.
    let mut points: Vec<usize> = (0..=6000.min(wire.len())).collect();
    points.extend((6000..wire.len()).step_by(97));
    for k in points {
        let mut r = Receiver::new();
        r.feed(&wire[..k]).unwrap();
        r.feed(&wire[k..]).unwrap();
        assert_eq!(r.finish().unwrap(), all, "split at {k}");
    }
}

#[test]
fn stream_in_one_byte_and_random_chunks() {
    let frag = 1024;
    let msgs = mixed_messages(frag);
    let wire = build_stream(&msgs, frag, 3000);
    let mut r = Receiver::new();
    for b in wire.chunks(1) {
        r.feed(b).unwrap();
    }
    check(&r.finish().unwrap(), &msgs);
    let mut rng = Rng(0x5EED);
    for _ in 0..50 {
        let mut r = Receiver::new();
        let mut pos = 0;
        while pos < wire.len() {
            let n = (1 + rng.below(3000)).min(wire.len() - pos);
            r.feed(&wire[pos..pos + n]).unwrap();
            pos += n;
        }
        check(&r.finish().unwrap(), &msgs);
    }
}

#[test]
fn truncated_streams() {
    let frag = 64;
    let msgs = mixed_messages(frag);
    let wire = build_stream(&msgs, frag, 100);
    // Cutting the stream anywhere but at a frame boundary is Truncated at
    // EOF (a cut between parts of a message too: has_partial).
    let mut boundaries = vec![0usize, 8];
    let mut d = FrameDecoder::new();
    let mut buf = BytesMut::from(&wire[..]);
    while let Some(f) = d.decode(&mut buf).unwrap() {
        boundaries.push(boundaries.last().unwrap() + 16 + f.body.len());
    }
    for cut in 0..wire.len() {
        let mut r = Receiver::new();
        r.feed(&wire[..cut]).unwrap();
        let partial_msg = r.re.has_partial();
        let res = r.finish();
        if boundaries.contains(&cut) && !partial_msg {
            assert!(res.is_ok(), "cut at frame boundary {cut}");
        } else {
            assert_eq!(res, Err(ProtoError::Truncated), "cut at {cut}");
        }
    }
}

/// Simulates a socket that accepts a random number of bytes per write.
fn random_partial_write(rng: &mut Rng, w: &mut WriteBuf, wire: &mut Vec<u8>) -> FillStats {
    let mut slices = [IoSlice::new(&[]); 4];
    let n = w.io_slices(&mut slices);
    let avail: usize = slices[..n].iter().map(|s| s.len()).sum();
    let want = match rng.below(4) {
        0 => 0,
        1 => avail,
        _ => rng.below(avail + 1),
    };
    let mut left = want;
    for s in &slices[..n] {
        let k = left.min(s.len());
        wire.extend_from_slice(&s[..k]);
        left -= k;
    }
    w.advance(want)
}

/// Messages for the WriteBuf path: large enough that parts of 8 KiB are
/// referenced chunks, not copies.
fn big_mixed_messages(rng: &mut Rng) -> Vec<Sent> {
    let sizes = [0, 1, 64, 4095, 4096, 8191, 8192, 8193, 20_000, 50_000, 100];
    (0..40)
        .map(|i| {
            let len = sizes[rng.below(sizes.len())];
            Sent {
                lane: rng.below(4) as u8,
                msg_id: i,
                payload: payload(len, i),
            }
        })
        .collect()
}

#[test]
fn writebuf_random_partial_writes() {
    let mut rng = Rng(0xFEED_FACE);
    for round in 0..30 {
        let frag = [8192, 1024, 100][round % 3];
        let msgs = big_mixed_messages(&mut rng);
        let mut o = Outbound::new(frag);
        let mut w = WriteBuf::new();
        let mut ctl = BytesMut::from(&Preface::BYTES[..]);
        hello().encode(&mut ctl);
        encode_ping(77, &mut ctl);
        w.put_slice(&ctl);
        let mut wire = Vec::new();
        let mut written = FillStats::default();
        let mut encoded = FillStats::default();
        // Push in a few batches while writing.
        for batch in msgs.chunks(7) {
            for m in batch {
                o.push(m.lane, m.msg_id, m.payload.clone());
            }
            for _ in 0..5 {
                let st = o.fill(&mut w, 2 * frag + 100);
                encoded.msgs += st.msgs;
                encoded.bytes += st.bytes;
                let st = random_partial_write(&mut rng, &mut w, &mut wire);
                written.msgs += st.msgs;
                written.bytes += st.bytes;
            }
        }
        while !o.is_empty() || !w.is_empty() {
            let st = o.fill(&mut w, 2 * frag + 100);
            encoded.msgs += st.msgs;
            encoded.bytes += st.bytes;
            let st = random_partial_write(&mut rng, &mut w, &mut wire);
            written.msgs += st.msgs;
            written.bytes += st.bytes;
        }
        let total_bytes: u64 = msgs.iter().map(|m| m.payload.len() as u64).sum();
        assert_eq!(
            encoded,
            FillStats {
                msgs: msgs.len() as u64,
                bytes: total_bytes
            }
        );
        assert_eq!(written, encoded);
        let mut ctl = BytesMut::new();
        encode_goaway(-24, &mut ctl);
        w.put_slice(&ctl);
        write_all(&mut w, &mut wire);
        let mut r = Receiver::new();
        r.feed(&wire).unwrap();
        check(&r.finish().unwrap(), &msgs);
    }
}

#[test]
fn drain_after_partial_writes_reports_exactly_the_unwritten() {
    let mut rng = Rng(0xABCD_0123);
    let (mut with_unwritten, mut with_queued) = (0, 0);
    for round in 0..200 {
        let frag = [8192, 1024, 100][round % 3];
        let msgs = big_mixed_messages(&mut rng);
        let mut o = Outbound::new(frag);
        let mut w = WriteBuf::new();
        w.put_slice(&Preface::BYTES);
        for m in &msgs {
            o.push(m.lane, m.msg_id, m.payload.clone());
        }
        let mut wire = Vec::new();
        let mut written = FillStats::default();
        for _ in 0..rng.below(60) {
            o.fill(&mut w, 2 * frag + 100);
            let st = random_partial_write(&mut rng, &mut w, &mut wire);
            written.msgs += st.msgs;
            written.bytes += st.bytes;
        }
        // The connection dies here. What the receiver got is exactly what
        // advance() reported as written.
        let mut pending = Vec::new();
        let mut slices = [IoSlice::new(&[]); 1024];
        let n = w.io_slices(&mut slices);
        for s in &slices[..n] {
            pending.extend_from_slice(s);
        }
        assert_eq!(pending.len(), w.len());
        let mut r = Receiver::new();
        r.feed(&wire).unwrap();
        let got = r.got.msgs.clone();
        assert_eq!(got.len() as u64, written.msgs, "round {round}");
        assert_eq!(
            got.iter().map(|m| m.payload.len() as u64).sum::<u64>(),
            written.bytes
        );
        // The marked-but-unwritten messages are those completing in the
        // pending bytes, oldest first.
        let mut full = wire.clone();
        full.extend_from_slice(&pending);
        let mut r2 = Receiver::new();
        r2.feed(&full).unwrap();
        let completing = &r2.got.msgs[got.len()..];
        let unwritten = w.drain_unwritten();
        assert_eq!(unwritten.msgs as usize, completing.len(), "round {round}");
        assert_eq!(
            unwritten.bytes,
            completing
                .iter()
                .map(|m| m.payload.len() as u64)
                .sum::<u64>()
        );
        assert_eq!(
            unwritten.first,
            completing.first().map(|m| (m.lane, m.msg_id))
        );
        assert!(w.is_empty());
        // Every encoded message (written or not) stays in flight until the
        // peer acknowledges it; the rest is still queued (a partly encoded
        // one included). Nothing was acknowledged, so the Outbound holds all.
        let queued = o.queued_msgs();
        let inflight = o.inflight_msgs() as u64;
        assert_eq!(inflight, written.msgs + unwritten.msgs, "round {round}");
        let drained = o.drain();
        assert_eq!(drained.msgs, queued as u64 + inflight);
        assert_eq!(drained.msgs, msgs.len() as u64);
        let total_bytes: u64 = msgs.iter().map(|m| m.payload.len() as u64).sum();
        assert_eq!(drained.bytes, total_bytes);
        // `first` of the Outbound drain: the oldest message of the lowest
        // non-empty lane.
        let mut summary = DrainSummary::default();
        summary.merge(unwritten);
        summary.merge(drained);
        assert_eq!(summary.msgs, unwritten.msgs + drained.msgs);
        let first = (0..4u8)
            .find_map(|lane| msgs.iter().find(|m| m.lane == lane))
            .unwrap();
        assert_eq!(drained.first, Some((first.lane, first.msg_id)));
        assert!(o.is_idle());
        assert_eq!(o.queued_bytes(), 0);
        with_unwritten += (unwritten.msgs > 0) as u32;
        with_queued += (queued > 0) as u32;
    }
    // Both kinds of leftovers occurred often.
    assert!(
        with_unwritten > 30 && with_queued > 30,
        "{with_unwritten} {with_queued}"
    );
}

#[test]
fn bulk_lane_does_not_starve_default_lane() {
    let frag = 32 * 1024;
    let mut o = Outbound::new(frag);
    o.push(1, 1, payload(1 << 20, 1));
    o.push(0, 2, payload(64, 2));
    let mut w = WriteBuf::new();
    w.put_slice(&Preface::BYTES);
    let mut wire = Vec::new();
    // Small fills, as a reactor with a bounded write buffer would do.
    while !o.is_empty() {
        o.fill(&mut w, frag);
        write_all(&mut w, &mut wire);
    }
    let mut d = FrameDecoder::new();
    let mut buf = BytesMut::from(&wire[..]);
    let mut order = Vec::new();
    while let Some(f) = d.decode(&mut buf).unwrap() {
        order.push((f.header.lane, f.header.flags));
    }
    let small = order.iter().position(|&(l, _)| l == 0).unwrap();
    let second_big = order
        .iter()
        .enumerate()
        .filter(|(_, &(l, _))| l == 1)
        .nth(1)
        .unwrap()
        .0;
    assert!(small < second_big);
    assert_eq!(order.len(), 1 + (1 << 20) / frag);

    // And the other way round: a long run of small messages on lane 0 does
    // not hold the bulk lane back for more than a fragment's worth.
    let mut o = Outbound::new(frag);
    for i in 0..10_000 {
        o.push(0, i, payload(64, i));
    }
    o.push(1, 99_999, payload(100_000, 0));
    let mut w = WriteBuf::new();
    o.fill(&mut w, 3 * frag);
    let mut wire = Preface::BYTES.to_vec();
    write_all(&mut w, &mut wire);
    let mut d = FrameDecoder::new();
    let mut buf = BytesMut::from(&wire[..]);
    let mut saw_bulk = false;
    while let Some(f) = d.decode(&mut buf).unwrap() {
        saw_bulk |= f.header.lane == 1;
    }
    assert!(saw_bulk, "bulk lane got no turn within 3 fragments");
}
