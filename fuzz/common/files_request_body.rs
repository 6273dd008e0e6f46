//! Body of the `files_request` fuzz target, shared with the main crate's
//! `tests/proto_files_fuzz_smoke.rs` (included there with `#[path]`), so
//! that `cargo test` runs exactly what the fuzzer runs.
//!
//! Checks, besides "never panics":
//! - `wire::decode`: whatever decodes re-encodes (`wire::open` /
//!   `wire::block`) to exactly the input bytes, so the decoder accepts
//!   nothing the encoders would not produce; decoded names pass
//!   `valid_name` and are plain relative paths (no `..` component, no NUL,
//!   no backslash, no leading `/`, within the length limits); decoded
//!   block ranges pass `valid_range`.
//! - `wire::check_block`, with lengths derived from the input (its first
//!   four bytes, and the length whose CRCs + data would fill the input
//!   exactly): a `Some` carries exactly `len` bytes, which are the input's
//!   tail after `4 × granules(len)` CRC bytes.
//! - The input taken as block data, prefixed with its own granule CRCs, is
//!   accepted and gives the data back; one flipped bit anywhere in that body
//!   is caught (CRC-32 detects every burst of up to 32 bits).

#![allow(dead_code)]

use bytes::{BufMut, Bytes, BytesMut};
use xxnet::files::wire::{self, Request, WireError};
use xxnet::files::{GRANULE, MAX_BLOCK};

pub fn run(data: &[u8]) {
    decode(data);
    check_block(data);
}

fn decode(data: &[u8]) {
    match wire::decode(data) {
        Ok(Request::Open { key, name }) => {
            assert_eq!(data[0], wire::OPEN);
            assert!(
                wire::valid_name(&name),
                "decoded name {name:?} is not valid"
            );
            plain_path(&name);
            let again = wire::open(&key, &name);
            assert_eq!(&again[..], data, "OPEN decode/encode round trip");
        }
        Ok(Request::Block { key, offset, len }) => {
            assert_eq!(data[0], wire::BLOCK);
            assert!(wire::valid_range(key.size, offset, len));
            assert!(len > 0 && len <= MAX_BLOCK);
            assert_eq!(offset % GRANULE as u64, 0);
            let end = offset + len as u64;
            assert!(end <= key.size);
            assert!(len % GRANULE == 0 || end == key.size);
            let again = wire::block(&key, offset, len);
            assert_eq!(&again[..], data, "BLOCK decode/encode round trip");
        }
        Err(WireError::BadName) => {
            // Only an OPEN with the right length and a refused name.
            assert_eq!(data[0], wire::OPEN);
            assert!(data.len() >= 27);
            let n = u16::from_le_bytes([data[25], data[26]]) as usize;
            assert_eq!(data.len(), 27 + n);
            if let Ok(name) = std::str::from_utf8(&data[27..]) {
                assert!(!wire::valid_name(name), "valid name {name:?} refused");
            }
        }
        Err(WireError::Malformed) => {}
    }
}

/// What a decoded name may never be, checked independently of `valid_name`.
fn plain_path(name: &str) {
    assert!(!name.is_empty());
    assert!(name.len() <= wire::MAX_NAME);
    assert!(!name.starts_with('/'), "{name:?}");
    assert!(!name.contains('\0'), "{name:?}");
    assert!(!name.contains('\\'), "{name:?}");
    assert!(!name.ends_with('/'), "{name:?}");
    for c in name.split('/') {
        assert!(c != ".." && c != "." && !c.is_empty(), "{name:?}");
        assert!(c.len() <= wire::MAX_COMPONENT, "{name:?}");
    }
    // No way to climb out of the directory the name is looked up under.
    let mut depth = 0i32;
    for c in std::path::Path::new(name).components() {
        match c {
            std::path::Component::Normal(_) => depth += 1,
            other => panic!("{name:?}: component {other:?}"),
        }
    }
    assert!(depth >= 1);
}

/// The `len` whose CRCs and data fill exactly `total` bytes, if there is one.
pub fn exact_len(total: usize) -> Option<u32> {
    let g = GRANULE as usize;
    let k = total.div_ceil(g + 4);
    let len = total.checked_sub(4 * k)?;
    let len = u32::try_from(len).ok()?;
    (wire::granules(len) == k).then_some(len)
}

fn check_block(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    let mut lens = vec![0u32, 1, GRANULE, MAX_BLOCK, u32::MAX];
    if data.len() >= 4 {
        lens.push(u32::from_le_bytes([data[0], data[1], data[2], data[3]]));
    }
    if data.len() >= 2 {
        lens.push(u16::from_le_bytes([data[0], data[1]]) as u32);
    }
    lens.extend(exact_len(data.len()));
    for len in lens {
        if let Some(got) = wire::check_block(&body, len) {
            assert_eq!(got.len(), len as usize, "check_block data length");
            let n = wire::granules(len);
            assert_eq!(n * 4 + len as usize, data.len());
            assert_eq!(&got[..], &data[n * 4..]);
        }
    }

    // The input as block data, with its true CRCs: accepted; one bit off: refused.
    let Ok(len) = u32::try_from(data.len()) else {
        return;
    };
    let mut good = BytesMut::with_capacity(wire::granules(len) * 4 + data.len());
    for c in wire::granule_crcs(data) {
        good.put_u32_le(c);
    }
    assert_eq!(good.len(), wire::granules(len) * 4);
    good.put_slice(data);
    let good = good.freeze();
    let got = wire::check_block(&good, len).expect("a block with its own CRCs is accepted");
    assert_eq!(&got[..], data);
    if !good.is_empty() {
        let h = data
            .iter()
            .fold(0usize, |h, &b| h.wrapping_mul(31).wrapping_add(b as usize));
        let at = h % good.len();
        let mut bad = good.to_vec();
        bad[at] ^= 1 << (h % 8);
        assert!(
            wire::check_block(&Bytes::from(bad), len).is_none(),
            "a flipped bit at {at} of a {}-byte body went unnoticed",
            good.len()
        );
    }
    // A body one byte short or long is refused.
    if !good.is_empty() {
        assert!(wire::check_block(&good.slice(..good.len() - 1), len).is_none());
    }
    let mut long = good.to_vec();
    long.push(0);
    assert!(wire::check_block(&Bytes::from(long), len).is_none());
}
