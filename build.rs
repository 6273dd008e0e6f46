//! Generates the C header with cbindgen.
//!
//! The header is always written to `$OUT_DIR/xxnet.h`; the test
//! `tests/header.rs` fails when it differs from the committed
//! `include/xxnet.h`. Set `XXNET_UPDATE_HEADER=1` to rewrite the committed copy.
use std::{env, path::PathBuf};

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=XXNET_UPDATE_HEADER");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen can generate the header");
    bindings.write_to_file(out_dir.join("xxnet.h"));
    if env::var_os("XXNET_UPDATE_HEADER").is_some_and(|v| v == "1") {
        bindings.write_to_file(crate_dir.join("include/xxnet.h"));
    }
}
