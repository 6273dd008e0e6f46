//! Decodes arbitrary bytes as a remote-call envelope (src/proto/rpc.rs).
//! Must never panic. The body is shared with the `proto_rpc_fuzz_smoke`
//! test of the main crate.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/rpc_envelope_body.rs"]
mod body;

fuzz_target!(|data: &[u8]| body::run(data));
