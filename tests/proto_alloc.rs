//! Allocation behaviour of the codec, measured with a counting global
//! allocator (per thread, so parallel tests do not disturb each other):
//! oversized lengths are refused before anything is reserved, and the
//! steady-state send and receive paths do not allocate per message.

use bytes::{Bytes, BytesMut};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::IoSlice;
use xxnet::proto::{
    FrameDecoder, FrameHeader, FrameType, Outbound, Preface, ProtoError, Reassembler, WriteBuf,
};

struct Counting;

thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = TRACK.try_with(|t| {
        if t.get() {
            COUNT.with(|c| c.set(c.get() + 1));
            LARGEST.with(|l| l.set(l.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns (allocations, largest allocation) made by this thread meanwhile.
fn measure<R>(f: impl FnOnce() -> R) -> (R, u64, usize) {
    COUNT.with(|c| c.set(0));
    LARGEST.with(|l| l.set(0));
    TRACK.with(|t| t.set(true));
    let r = f();
    TRACK.with(|t| t.set(false));
    (r, COUNT.with(|c| c.get()), LARGEST.with(|l| l.get()))
}

#[test]
fn oversized_frame_reserves_nothing() {
    let mut buf = BytesMut::from(&Preface::BYTES[..]);
    let mut h = FrameHeader::data(0, 3, 0, 0, 1).to_bytes();
    h[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    buf.extend_from_slice(&h);
    let mut d = FrameDecoder::new();
    let (r, n, _) = measure(|| (d.needed(&buf), d.decode(&mut buf)));
    assert_eq!(r, (0, Err(ProtoError::FrameTooLarge(u32::MAX))));
    assert_eq!(n, 0, "allocated while refusing an oversized frame");
}

#[test]
fn oversized_message_allocates_nothing() {
    let mut r = Reassembler::new(16 << 20);
    let mut body = u32::MAX.to_le_bytes().to_vec();
    body.extend_from_slice(&[0; 100]);
    let body = Bytes::from(body);
    let hdr = FrameHeader::data(body.len() as u32, FrameHeader::FIRST, 0, 1, 1);
    let body2 = body.clone(); // promote outside the measurement
    let (res, n, _) = measure(|| r.push(&hdr, body2));
    assert_eq!(res, Err(ProtoError::MessageTooLarge(u32::MAX as u64)));
    assert_eq!(n, 0);
    // A legal multi-part message: the first part reserves at most
    // INITIAL_RESERVE, whatever total_len announces.
    let mut r = Reassembler::new(16 << 20);
    let total = 10 << 20;
    let mut body = (total as u32).to_le_bytes().to_vec();
    body.extend_from_slice(&[0; 100]);
    let body = Bytes::from(body);
    let hdr = FrameHeader::data(body.len() as u32, FrameHeader::FIRST, 0, 1, 1);
    let body2 = body.clone();
    let (res, n, largest) = measure(|| r.push(&hdr, body2));
    assert_eq!(res, Ok(None));
    assert_eq!((n, largest), (1, Reassembler::INITIAL_RESERVE));
    // Once that much has really arrived, the rest is reserved exactly once.
    let part = Bytes::from(vec![0u8; Reassembler::INITIAL_RESERVE]);
    let part2 = part.clone();
    let mid = FrameHeader::data(part.len() as u32, 0, 0, 1, 1);
    let (res, n, largest) = measure(|| r.push(&mid, part2));
    assert_eq!(res, Ok(None));
    assert_eq!((n, largest), (1, total));
}

#[test]
fn steady_state_send_path_does_not_allocate_per_message() {
    let payload = Bytes::from(vec![7u8; 64]);
    let _shared = payload.clone(); // promote once, so clones are refcounts
    let big = Bytes::from(vec![9u8; 100_000]);
    let _shared_big = big.clone();
    let mut o = Outbound::new(32 * 1024);
    let mut w = WriteBuf::new();
    let round = |o: &mut Outbound, w: &mut WriteBuf| {
        let mut msgs = 0;
        for i in 0..10_000u32 {
            o.push((i % 3) as u8, i, payload.clone());
        }
        o.push(3, 1, big.clone());
        while !o.is_empty() {
            o.fill(w, 64 * 1024);
            let mut slices = [IoSlice::new(&[]); 16];
            let n = w.io_slices(&mut slices);
            let k: usize = slices[..n].iter().map(|s| s.len()).sum();
            msgs += w.advance(k).msgs;
        }
        assert!(w.is_empty());
        msgs
    };
    for _ in 0..3 {
        assert_eq!(round(&mut o, &mut w), 10_001); // warm-up: queues and buffers grow
    }
    let (msgs, n, _) = measure(|| round(&mut o, &mut w));
    assert_eq!(msgs, 10_001);
    assert!(n <= 4, "{n} allocations for 10001 messages");
}

#[test]
fn steady_state_receive_path_does_not_allocate_per_frame() {
    let mut o = Outbound::new(32 * 1024);
    for i in 0..10_000u32 {
        o.push((i % 4) as u8, i, Bytes::from(vec![i as u8; 64]));
    }
    let mut w = WriteBuf::new();
    w.put_slice(&Preface::BYTES);
    o.fill(&mut w, usize::MAX);
    let mut wire = Vec::new();
    let mut slices = [IoSlice::new(&[]); 4];
    let n = w.io_slices(&mut slices);
    for s in &slices[..n] {
        wire.extend_from_slice(s);
    }
    let mut buf = BytesMut::from(&wire[..]);
    let mut d = FrameDecoder::new();
    let mut r = Reassembler::new(1 << 20);
    let mut got = Vec::with_capacity(10_000);
    let (_, n, _) = measure(|| {
        while let Some(f) = d.decode(&mut buf).unwrap() {
            assert_eq!(f.header.kind, FrameType::Data);
            got.push(r.push(&f.header, f.body).unwrap().unwrap());
        }
    });
    assert_eq!(got.len(), 10_000);
    assert!(n <= 2, "{n} allocations for 10000 frames");
}

/// Rough throughput of fill + a simulated socket write + decode for 64-byte
/// messages. `cargo test --release --test proto_alloc -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput_64_byte_messages() {
    let payload = Bytes::from(vec![7u8; 64]);
    let _shared = payload.clone();
    let mut o = Outbound::new(32 * 1024);
    let mut w = WriteBuf::new();
    let n = 5_000_000u32;
    let t = std::time::Instant::now();
    let mut written = 0u64;
    let mut wire_bytes = 0usize;
    let mut i = 0;
    while i < n {
        for _ in 0..1000 {
            o.push((i % 2) as u8, i, payload.clone());
            i += 1;
        }
        while !o.is_empty() {
            o.fill(&mut w, 256 * 1024);
            let mut slices = [IoSlice::new(&[]); 64];
            let k = w.io_slices(&mut slices);
            let len: usize = slices[..k].iter().map(|s| s.len()).sum();
            wire_bytes += len;
            written += w.advance(len).msgs;
        }
    }
    let dt = t.elapsed();
    assert_eq!(written, n as u64);
    println!(
        "send path: {:.1} M msgs/s, {:.0} MB/s",
        n as f64 / dt.as_secs_f64() / 1e6,
        wire_bytes as f64 / dt.as_secs_f64() / 1e6
    );
    // Receive path.
    let mut o = Outbound::new(32 * 1024);
    for i in 0..1_000_000u32 {
        o.push((i % 2) as u8, i, payload.clone());
    }
    let mut w = WriteBuf::new();
    w.put_slice(&Preface::BYTES);
    o.fill(&mut w, usize::MAX);
    let mut wire = BytesMut::new();
    let mut slices = [IoSlice::new(&[]); 4];
    let k = w.io_slices(&mut slices);
    for s in &slices[..k] {
        wire.extend_from_slice(s);
    }
    let t = std::time::Instant::now();
    let mut d = FrameDecoder::new();
    let mut r = Reassembler::new(1 << 20);
    let mut got = 0;
    while let Some(f) = d.decode(&mut wire).unwrap() {
        got += r.push(&f.header, f.body).unwrap().is_some() as u32;
    }
    let dt = t.elapsed();
    assert_eq!(got, 1_000_000);
    println!("receive path: {:.1} M msgs/s", 1e6 / dt.as_secs_f64() / 1e6);
}
