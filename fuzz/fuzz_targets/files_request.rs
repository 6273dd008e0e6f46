//! Decodes arbitrary bytes as a request of the `xxnet.files` service and as
//! a BLOCK reply (src/files/wire.rs). Must never panic. The body is shared
//! with the `proto_files_fuzz_smoke` test of the main crate.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/files_request_body.rs"]
mod body;

fuzz_target!(|data: &[u8]| body::run(data));
