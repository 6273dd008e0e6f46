//! Runs the `files_request` fuzz target's body (fuzz/common/) over
//! deterministic inputs: random bytes, valid OPEN and BLOCK requests, the
//! same with bytes flipped, cut or appended, hand-made hostile names and
//! ranges, and BLOCK reply bodies of one and several granules. Nothing may
//! panic.

#[path = "../fuzz/common/files_request_body.rs"]
mod body;

use bytes::{BufMut, Bytes, BytesMut};
use xxnet::files::wire::{self, Request, WireError};
use xxnet::files::{Key, GRANULE, MAX_BLOCK};

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

const NAMES: [&str; 12] = [
    "a",
    "maps/level-1.bin",
    "x/y/z.pak",
    "..",
    "../x",
    "a/../b",
    "/etc/passwd",
    "a\\b",
    "a\0b",
    "a//b",
    "./a",
    "a..b/c..",
];

fn key(rng: &mut Rng) -> Key {
    let mut md5 = [0u8; 16];
    md5.iter_mut().for_each(|b| *b = rng.next() as u8);
    let size = match rng.below(4) {
        0 => rng.next() % (4 * GRANULE as u64),
        1 => rng.next() % (1 << 40),
        2 => u64::MAX - rng.next() % (2 * GRANULE as u64),
        _ => (rng.below(64) as u64) * GRANULE as u64,
    };
    Key { md5, size }
}

fn valid(rng: &mut Rng) -> Vec<u8> {
    let k = key(rng);
    if rng.below(2) == 0 {
        let name = NAMES[rng.below(NAMES.len())];
        wire::open(&k, name).to_vec()
    } else if rng.below(2) == 0 {
        // A range a fetch would ask for: granule-aligned, ending at a
        // granule boundary or at the end of the file.
        let g = GRANULE as u64;
        let size = 1 + rng.next() % (1 << 30);
        let offset = rng.next() % size.div_ceil(g) * g;
        let len = (GRANULE * (1 + rng.below(64) as u32)).min((size - offset) as u32);
        let k = Key { size, ..k };
        wire::block(&k, offset, len).to_vec()
    } else {
        let offset = match rng.below(3) {
            0 => (rng.next() % 64) * GRANULE as u64,
            1 => k.size / GRANULE as u64 * GRANULE as u64,
            _ => rng.next(),
        };
        let len = match rng.below(4) {
            0 => GRANULE * (1 + rng.below(64) as u32),
            1 => k.size.saturating_sub(offset).min(u32::MAX as u64) as u32,
            2 => MAX_BLOCK,
            _ => rng.next() as u32,
        };
        wire::block(&k, offset, len).to_vec()
    }
}

#[test]
fn files_request_decoder_never_panics() {
    let mut rng = Rng(0x5eed_f11e_0006);
    let (mut opens, mut blocks, mut bad_names) = (0, 0, 0);
    for _ in 0..20_000 {
        let mut v = valid(&mut rng);
        match rng.below(5) {
            0 => {}
            1 => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            2 => v.truncate(rng.below(v.len() + 1)),
            3 => v.push(rng.next() as u8),
            _ => v = (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        }
        match wire::decode(&v) {
            Ok(Request::Open { .. }) => opens += 1,
            Ok(Request::Block { .. }) => blocks += 1,
            Err(WireError::BadName) => bad_names += 1,
            Err(WireError::Malformed) => {}
        }
        body::run(&v);
    }
    assert!(opens > 1_000, "valid OPENs decode: {opens}");
    assert!(blocks > 1_000, "valid BLOCKs decode: {blocks}");
    assert!(bad_names > 1_000, "hostile names refused: {bad_names}");
}

#[test]
fn hand_made_requests() {
    let k = Key {
        md5: [0xab; 16],
        size: 3 * GRANULE as u64 + 5,
    };
    let long_component = "x".repeat(256);
    let long_name = "ab/".repeat(341) + "abc";
    let max_name = "a/".repeat(511) + "ab";
    assert_eq!(max_name.len(), wire::MAX_NAME);
    let hostile = [
        "",
        "/",
        "/a",
        "a/",
        "..",
        "../a",
        "a/..",
        "a/../../b",
        ".",
        "./a",
        "a/./b",
        "a//b",
        "a\0",
        "\0",
        "a\\..\\b",
        "C:\\x",
        long_component.as_str(),
        long_name.as_str(),
    ];
    for name in hostile {
        let v = wire::open(&k, name);
        assert!(wire::decode(&v).is_err(), "{name:?}");
        body::run(&v);
    }
    for name in ["a", "a..b", "...", "a/b.c/d", "ü/名前", max_name.as_str()] {
        let v = wire::open(&k, name);
        assert_eq!(
            wire::decode(&v),
            Ok(Request::Open {
                key: k,
                name: name.to_string()
            }),
            "{name:?}"
        );
        body::run(&v);
    }
    // A name that is not UTF-8, and name lengths that disagree with the body.
    let mut v = wire::open(&k, "ab").to_vec();
    v[27] = 0xff;
    assert_eq!(wire::decode(&v), Err(WireError::BadName));
    body::run(&v);
    let v = wire::open(&k, "abc").to_vec();
    for cut in 0..v.len() {
        assert!(wire::decode(&v[..cut]).is_err());
        body::run(&v[..cut]);
    }
    let mut more = v.clone();
    more.push(b'd');
    assert_eq!(wire::decode(&more), Err(WireError::Malformed));
    body::run(&more);
    // Unknown ops.
    for op in [0u8, 3, 0x81, 0xff] {
        let mut v = wire::block(&k, 0, GRANULE).to_vec();
        v[0] = op;
        assert_eq!(wire::decode(&v), Err(WireError::Malformed));
        body::run(&v);
    }

    // Ranges.
    let g = GRANULE as u64;
    let ok = [(0, GRANULE), (g, 2 * GRANULE + 5), (3 * g, 5)];
    for (offset, len) in ok {
        let v = wire::block(&k, offset, len);
        assert!(wire::decode(&v).is_ok(), "{offset} {len}");
        body::run(&v);
    }
    let refused = [
        (0, 0),
        (1, GRANULE),
        (0, GRANULE + 1),
        (3 * g, 6),
        (4 * g, GRANULE),
        (u64::MAX - g + 1, GRANULE),
        (u64::MAX / g * g, u32::MAX),
    ];
    for (offset, len) in refused {
        let v = wire::block(&k, offset, len);
        assert_eq!(
            wire::decode(&v),
            Err(WireError::Malformed),
            "{offset} {len}"
        );
        body::run(&v);
    }
    let huge = Key {
        md5: [1; 16],
        size: u64::MAX,
    };
    for (offset, len, good) in [
        (0, MAX_BLOCK, true),
        (0, MAX_BLOCK + GRANULE, false),
        (u64::MAX / g * g - g, GRANULE, true),
        (u64::MAX / g * g, GRANULE, false),
        (u64::MAX / g * g, (u64::MAX % g) as u32, true),
    ] {
        let v = wire::block(&huge, offset, len);
        assert_eq!(wire::decode(&v).is_ok(), good, "{offset} {len}");
        body::run(&v);
    }
}

fn reply(data: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    for c in wire::granule_crcs(data) {
        b.put_u32_le(c);
    }
    b.put_slice(data);
    b.to_vec()
}

#[test]
fn block_replies() {
    let mut rng = Rng(0xb10c_4e91);
    let g = GRANULE as usize;
    for len in [0, 1, g - 1, g, g + 1, 2 * g, 3 * g + 7, MAX_BLOCK as usize] {
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let body = reply(&data);
        assert_eq!(body::exact_len(body.len()), Some(len as u32), "{len}");
        assert_eq!(
            wire::check_block(&Bytes::from(body.clone()), len as u32).as_deref(),
            Some(&data[..])
        );
        body::run(&body);
        body::run(&data);
        // One bit flipped at a few places, in the CRCs and in the data.
        for _ in 0..4 {
            if body.is_empty() {
                break;
            }
            let mut bad = body.clone();
            let at = rng.below(bad.len());
            bad[at] ^= 1 << rng.below(8);
            assert!(wire::check_block(&Bytes::from(bad.clone()), len as u32).is_none());
            body::run(&bad);
        }
        // Wrong lengths.
        for l in [len as u32 + 1, (len as u32).saturating_sub(1), u32::MAX] {
            if l != len as u32 {
                assert!(wire::check_block(&Bytes::from(body.clone()), l).is_none());
            }
        }
    }
    // Small random bodies whose length fits a block exactly.
    for _ in 0..2_000 {
        let v: Vec<u8> = (0..rng.below(300)).map(|_| rng.next() as u8).collect();
        body::run(&v);
        let mut r = reply(&v[..v.len() / 2]);
        r.extend_from_slice(&v[v.len() / 2..]);
        body::run(&r);
    }
}
