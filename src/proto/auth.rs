//! Handshake authentication with a shared secret (docs/PROTOCOL.md §3,
//! "Authentication"): HMAC-SHA256 challenge-response. The secret never
//! travels; each side proves it knows it by a MAC over both sides' fresh
//! challenges and a digest of the connector's HELLO.
//!
//! ```text
//! proof_C = HMAC-SHA256(secret, "xxnet-auth-c" | Ca | Cc | SHA-256(HELLO body))   (AUTH, connector)
//! proof_A = HMAC-SHA256(secret, "xxnet-auth-a" | Cc | Ca | SHA-256(HELLO body))   (HELLO_ACK, acceptor)
//! ```
//!
//! Every input has a fixed length, so the concatenation is unambiguous; the
//! two labels keep a proof from ever serving in the other direction.
//!
//! Challenges come from [`ChallengeSource`]: HMAC-SHA256 keyed with 32
//! bytes of entropy, over a counter. The reactor keys it from the operating
//! system's random source (`Endpoint::seed_challenges`); without that call
//! the key is derived from the endpoint's seed, which keeps simulations
//! deterministic but is not secret. No syscall here (sans-IO).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of a challenge (Cc in HELLO, Ca in CHALLENGE).
pub const CHALLENGE_LEN: usize = 16;
/// Bytes of a proof (AUTH, HELLO_ACK).
pub const PROOF_LEN: usize = 32;

/// A fresh random challenge.
pub type Challenge = [u8; CHALLENGE_LEN];
/// An HMAC-SHA256 proof of knowledge of the secret.
pub type Proof = [u8; PROOF_LEN];

const LABEL_CONNECTOR: &[u8] = b"xxnet-auth-c";
const LABEL_ACCEPTOR: &[u8] = b"xxnet-auth-a";

/// SHA-256 of a HELLO frame body (what both proofs bind).
pub fn hello_digest(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

fn mac(
    secret: &[u8],
    label: &[u8],
    first: &Challenge,
    second: &Challenge,
    digest: &[u8; 32],
) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    m.update(label);
    m.update(first);
    m.update(second);
    m.update(digest);
    m
}

/// The connector's proof (AUTH body): `HMAC(secret, "xxnet-auth-c" | Ca | Cc | digest)`.
pub fn connector_proof(secret: &[u8], ca: &Challenge, cc: &Challenge, digest: &[u8; 32]) -> Proof {
    mac(secret, LABEL_CONNECTOR, ca, cc, digest)
        .finalize()
        .into_bytes()
        .into()
}

/// The acceptor's proof (HELLO_ACK extension): `HMAC(secret, "xxnet-auth-a" | Cc | Ca | digest)`.
pub fn acceptor_proof(secret: &[u8], cc: &Challenge, ca: &Challenge, digest: &[u8; 32]) -> Proof {
    mac(secret, LABEL_ACCEPTOR, cc, ca, digest)
        .finalize()
        .into_bytes()
        .into()
}

/// Checks a connector's proof in constant time.
pub fn verify_connector(
    secret: &[u8],
    ca: &Challenge,
    cc: &Challenge,
    digest: &[u8; 32],
    proof: &Proof,
) -> bool {
    mac(secret, LABEL_CONNECTOR, ca, cc, digest)
        .verify_slice(proof)
        .is_ok()
}

/// Checks an acceptor's proof in constant time.
pub fn verify_acceptor(
    secret: &[u8],
    cc: &Challenge,
    ca: &Challenge,
    digest: &[u8; 32],
    proof: &Proof,
) -> bool {
    mac(secret, LABEL_ACCEPTOR, cc, ca, digest)
        .verify_slice(proof)
        .is_ok()
}

/// Unpredictable challenges: `HMAC-SHA256(key, "xxnet-challenge" | counter)`,
/// truncated to 16 bytes, the counter advancing per challenge. As long as
/// the key is secret (32 bytes from the OS), outputs cannot be guessed from
/// earlier ones (HMAC is a PRF).
pub struct ChallengeSource {
    key: [u8; 32],
    counter: u64,
}

impl std::fmt::Debug for ChallengeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("ChallengeSource")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl ChallengeSource {
    /// A source keyed with `key` (32 bytes of entropy).
    pub fn new(key: [u8; 32]) -> ChallengeSource {
        ChallengeSource { key, counter: 0 }
    }

    /// A deterministic source derived from a seed (tests and simulations;
    /// not secret: production keys it from the OS, see the module doc).
    pub fn from_seed(seed: u64, instance: u64) -> ChallengeSource {
        let mut h = Sha256::new();
        h.update(b"xxnet-challenge-seed");
        h.update(seed.to_le_bytes());
        h.update(instance.to_le_bytes());
        ChallengeSource::new(h.finalize().into())
    }

    /// The next challenge.
    pub fn next_challenge(&mut self) -> Challenge {
        self.counter += 1;
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        m.update(b"xxnet-challenge");
        m.update(&self.counter.to_le_bytes());
        let out = m.finalize().into_bytes();
        let mut c = [0u8; CHALLENGE_LEN];
        c.copy_from_slice(&out[..CHALLENGE_LEN]);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_and_are_direction_bound() {
        let (cc, ca) = ([1u8; 16], [2u8; 16]);
        let d = hello_digest(b"hello body");
        let pc = connector_proof(b"secret", &ca, &cc, &d);
        let pa = acceptor_proof(b"secret", &cc, &ca, &d);
        assert!(verify_connector(b"secret", &ca, &cc, &d, &pc));
        assert!(verify_acceptor(b"secret", &cc, &ca, &d, &pa));
        // Another secret, challenge or HELLO fails.
        assert!(!verify_connector(b"secreT", &ca, &cc, &d, &pc));
        assert!(!verify_connector(b"secret", &cc, &ca, &d, &pc));
        assert!(!verify_connector(
            b"secret",
            &ca,
            &cc,
            &hello_digest(b"other"),
            &pc
        ));
        // A proof never serves in the other direction, even with the challenges swapped.
        assert_ne!(pc, pa);
        assert!(!verify_acceptor(b"secret", &cc, &ca, &d, &pc));
        assert!(!verify_acceptor(b"secret", &ca, &cc, &d, &pc));
        assert!(!verify_connector(b"secret", &cc, &ca, &d, &pa));
        let mut bad = pc;
        bad[31] ^= 1;
        assert!(!verify_connector(b"secret", &ca, &cc, &d, &bad));
    }

    #[test]
    fn known_answer() {
        // HMAC-SHA256 test vector (RFC 4231 case 2) through the same primitive.
        let mut m = HmacSha256::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        let out = m.finalize().into_bytes();
        assert_eq!(
            out[..4],
            [0x5b, 0xdc, 0xc1, 0x46],
            "RFC 4231 test case 2 prefix"
        );
    }

    #[test]
    fn challenges_differ_and_depend_on_the_key() {
        let mut a = ChallengeSource::from_seed(1, 2);
        let mut b = ChallengeSource::from_seed(1, 2);
        let mut c = ChallengeSource::new([7; 32]);
        let xs: Vec<Challenge> = (0..100).map(|_| a.next_challenge()).collect();
        let ys: Vec<Challenge> = (0..100).map(|_| b.next_challenge()).collect();
        assert_eq!(xs, ys, "deterministic for a seed");
        let set: std::collections::HashSet<_> = xs.iter().collect();
        assert_eq!(set.len(), 100);
        assert_ne!(c.next_challenge(), xs[0]);
        assert!(!format!("{c:?}").contains("key"));
    }
}
