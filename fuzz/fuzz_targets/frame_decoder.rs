//! Feeds arbitrary bytes, in chunks, through FrameDecoder + Reassembler and
//! the HELLO / HELLO_ACK / PING / GOAWAY body decoders. Must never panic.
//! The body is shared with the `proto_fuzz_smoke` test of the main crate.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/frame_decoder_body.rs"]
mod body;

fuzz_target!(|data: &[u8]| body::run(data));
