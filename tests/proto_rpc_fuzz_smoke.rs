//! Runs the `rpc_envelope` fuzz target's body (fuzz/common/) over
//! deterministic inputs: random bytes, valid envelopes, and valid envelopes
//! with bytes flipped, cut or appended. Nothing may panic.

#[path = "../fuzz/common/rpc_envelope_body.rs"]
mod body;

use bytes::BytesMut;
use xxnet::proto::rpc;

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

fn valid(rng: &mut Rng) -> Vec<u8> {
    let names = ["a", "echo", "_svc9", "x_y_z"];
    let name = names[rng.below(names.len())];
    let body: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
    let mut b = BytesMut::new();
    match rng.below(4) {
        0 => rpc::put_call(&mut b, rng.next(), name),
        1 => rpc::put_cast(&mut b, name),
        2 => rpc::put_reply(&mut b, rng.next(), rng.next() as i32),
        _ => {
            let mut n = name.as_bytes().to_vec();
            n.push(0);
            return rpc::reject(rng.next() as i32, rng.next() as u32, &n).to_vec();
        }
    }
    b.extend_from_slice(&body);
    b.to_vec()
}

#[test]
fn rpc_envelope_decoder_never_panics() {
    let mut rng = Rng(0x5eed_0f42_4242);
    let mut decoded = 0;
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
        if rpc::decode(&bytes::Bytes::from(v.clone())).is_ok() {
            decoded += 1;
        }
        body::run(&v);
    }
    assert!(decoded > 5_000, "valid envelopes decode: {decoded}");
}
