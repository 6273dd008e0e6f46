//! Maps keyed by ids this process hands out itself (conn ids, call ids):
//! they need no protection against chosen keys, so a multiply is hash
//! enough (SipHash showed up in profiles of the per-message path).
//! Keys a peer chooses (instance ids, addresses) keep the standard hasher.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Fibonacci hashing of one integer key.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only integer keys are expected; still hash anything correctly.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by a local id.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
/// A set of local ids.
pub type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_spread_and_round_trip() {
        let mut m: IdMap<u64, u64> = IdMap::default();
        for i in 0..10_000u64 {
            m.insert(i * 3 + 1, i);
        }
        for i in 0..10_000u64 {
            assert_eq!(m.get(&(i * 3 + 1)), Some(&i));
        }
        assert_eq!(m.get(&0), None);
        // Distinct sequential keys give distinct hashes.
        let hashes: std::collections::HashSet<u64> = (0..10_000u64)
            .map(|i| {
                let mut h = IdHasher::default();
                h.write_u64(i);
                h.finish()
            })
            .collect();
        assert_eq!(hashes.len(), 10_000);
    }
}
