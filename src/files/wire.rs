//! Requests and replies of the [`super::SERVICE`] remote-call service
//! (docs/PROTOCOL.md §8), and the checks applied to names and md5s.
//!
//! ```text
//! OPEN  request = 1 | md5 [16] | size u64 | name_len u16 | name
//!       reply   = (code only; no body)
//! BLOCK request = 2 | md5 [16] | size u64 | offset u64 | len u32
//!       reply   = crc u32 × ceil(len / 64 KiB) | data (len bytes)
//! ```
//! Integers are little-endian. `offset` is a multiple of [`GRANULE`]; `len`
//! is at most [`MAX_BLOCK`] and a multiple of the granule unless the block
//! ends the file. Each CRC-32 covers one 64 KiB granule of the block, as the
//! server computed it when it hashed the file.

use super::{Key, GRANULE, MAX_BLOCK};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Opens a download: does the server have this content?
pub const OPEN: u8 = 1;
/// Asks for one block.
pub const BLOCK: u8 = 2;

/// Longest file name accepted, in bytes.
pub const MAX_NAME: usize = 1024;
/// Longest path component accepted, in bytes.
pub const MAX_COMPONENT: usize = 255;

/// A decoded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Open { key: Key, name: String },
    Block { key: Key, offset: u64, len: u32 },
}

/// Why a request could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Malformed (truncated, unknown op, trailing bytes, bad range).
    Malformed,
    /// The name is not an acceptable relative path.
    BadName,
}

/// Encodes an OPEN request.
pub fn open(key: &Key, name: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(27 + name.len());
    b.put_u8(OPEN);
    b.put_slice(&key.md5);
    b.put_u64_le(key.size);
    b.put_u16_le(name.len() as u16);
    b.put_slice(name.as_bytes());
    b.freeze()
}

/// Encodes a BLOCK request.
pub fn block(key: &Key, offset: u64, len: u32) -> Bytes {
    let mut b = BytesMut::with_capacity(37);
    b.put_u8(BLOCK);
    b.put_slice(&key.md5);
    b.put_u64_le(key.size);
    b.put_u64_le(offset);
    b.put_u32_le(len);
    b.freeze()
}

/// Decodes a request body. Never panics; checks every length before use.
pub fn decode(mut b: &[u8]) -> Result<Request, WireError> {
    if b.len() < 25 {
        return Err(WireError::Malformed);
    }
    let op = b.get_u8();
    let mut md5 = [0u8; 16];
    b.copy_to_slice(&mut md5);
    let size = b.get_u64_le();
    let key = Key { md5, size };
    match op {
        OPEN => {
            if b.len() < 2 {
                return Err(WireError::Malformed);
            }
            let n = b.get_u16_le() as usize;
            if b.len() != n {
                return Err(WireError::Malformed);
            }
            let name = std::str::from_utf8(b).map_err(|_| WireError::BadName)?;
            if !valid_name(name) {
                return Err(WireError::BadName);
            }
            Ok(Request::Open {
                key,
                name: name.to_string(),
            })
        }
        BLOCK => {
            if b.len() != 12 {
                return Err(WireError::Malformed);
            }
            let offset = b.get_u64_le();
            let len = b.get_u32_le();
            if !valid_range(size, offset, len) {
                return Err(WireError::Malformed);
            }
            Ok(Request::Block { key, offset, len })
        }
        _ => Err(WireError::Malformed),
    }
}

/// A block range a server may be asked for.
pub fn valid_range(size: u64, offset: u64, len: u32) -> bool {
    len > 0
        && len <= MAX_BLOCK
        && offset % GRANULE as u64 == 0
        && offset
            .checked_add(len as u64)
            .is_some_and(|end| end <= size && (len % GRANULE == 0 || end == size))
}

/// Number of granules (CRCs) in a block of `len` bytes.
pub fn granules(len: u32) -> usize {
    len.div_ceil(GRANULE) as usize
}

/// The CRC-32 of every granule of `data`.
pub fn granule_crcs(data: &[u8]) -> impl Iterator<Item = u32> + '_ {
    data.chunks(GRANULE as usize).map(crc32fast::hash)
}

/// Checks a BLOCK reply body of a `len`-byte block: every granule's CRC.
/// Returns the data (a slice of the body, no copy) when all match.
pub fn check_block(body: &Bytes, len: u32) -> Option<Bytes> {
    let n = granules(len);
    if body.len() != n * 4 + len as usize {
        return None;
    }
    let data = body.slice(n * 4..);
    let ok = body[..n * 4]
        .chunks_exact(4)
        .zip(granule_crcs(&data))
        .all(|(want, got)| u32::from_le_bytes(want.try_into().expect("4 bytes")) == got);
    ok.then_some(data)
}

/// A file name a host may ask for and a server may look up: a relative path
/// of plain components (no `..`, `.`, empty component, backslash or NUL),
/// at most [`MAX_NAME`] bytes, each component at most [`MAX_COMPONENT`].
/// The name is only a hint: the cache never uses it as a path.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('/')
        && !name.contains(['\0', '\\'])
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && c.len() <= MAX_COMPONENT)
}

/// Parses 32 hex digits.
pub fn parse_md5(text: &str) -> Option<[u8; 16]> {
    let t = text.as_bytes();
    if t.len() != 32 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 16];
    for (i, pair) in t.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key {
            md5: [7; 16],
            size: 3 * GRANULE as u64 + 5,
        }
    }

    #[test]
    fn requests_round_trip() {
        let k = key();
        assert_eq!(
            decode(&open(&k, "maps/a.bin")),
            Ok(Request::Open {
                key: k,
                name: "maps/a.bin".into()
            })
        );
        let b = block(&k, GRANULE as u64, 2 * GRANULE + 5);
        assert_eq!(
            decode(&b),
            Ok(Request::Block {
                key: k,
                offset: GRANULE as u64,
                len: 2 * GRANULE + 5
            })
        );
        for cut in 0..b.len() {
            assert_eq!(decode(&b[..cut]), Err(WireError::Malformed));
        }
    }

    #[test]
    fn names_outside_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a\0b",
            "a\\..\\b",
            "..",
            ".",
            "a/",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(!valid_name(&"x".repeat(256)));
        assert!(!valid_name(&"ab/".repeat(400)));
        assert!(valid_name("maps/level-1.bin"));
        assert!(valid_name(&"x".repeat(255)));
        let k = key();
        assert_eq!(decode(&open(&k, "../x")), Err(WireError::BadName));
    }

    #[test]
    fn ranges_are_checked() {
        let size = 3 * GRANULE as u64 + 5;
        assert!(valid_range(size, 0, GRANULE));
        assert!(valid_range(size, 3 * GRANULE as u64, 5));
        assert!(!valid_range(size, 3 * GRANULE as u64, 6));
        assert!(!valid_range(size, 1, GRANULE));
        assert!(!valid_range(size, 0, GRANULE + 1));
        assert!(!valid_range(size, 0, 0));
        assert!(!valid_range(u64::MAX, u64::MAX - 65535, GRANULE));
        assert!(!valid_range(1 << 40, 0, MAX_BLOCK + GRANULE));
    }

    #[test]
    fn block_check_catches_one_flipped_byte() {
        let data: Vec<u8> = (0..GRANULE as usize * 2 + 9).map(|i| i as u8).collect();
        let mut body = BytesMut::new();
        for c in granule_crcs(&data) {
            body.put_u32_le(c);
        }
        body.put_slice(&data);
        let body = body.freeze();
        assert_eq!(
            check_block(&body, data.len() as u32).as_deref(),
            Some(&data[..])
        );
        let mut bad = body.to_vec();
        let at = bad.len() - 3;
        bad[at] ^= 1;
        assert!(check_block(&Bytes::from(bad), data.len() as u32).is_none());
        assert!(check_block(&body.slice(1..), data.len() as u32).is_none());
    }

    #[test]
    fn md5_hex() {
        let m = parse_md5("d41d8cd98f00b204e9800998ecf8427E").unwrap();
        assert_eq!(hex(&m), "d41d8cd98f00b204e9800998ecf8427e");
        assert!(parse_md5("d41d8cd98f00b204e9800998ecf8427").is_none());
        assert!(parse_md5("g41d8cd98f00b204e9800998ecf8427e").is_none());
        assert!(parse_md5("../../../../../../../../../../..").is_none());
    }
}
