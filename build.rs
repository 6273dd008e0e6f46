//! Generates the C header with cbindgen.
//!
//! The header is always written to `$OUT_DIR/xxnet.h`; the test
//! `tests/header.rs` fails when it differs from the committed
//! `include/xxnet.h`. Set `XXNET_UPDATE_HEADER=1` to rewrite the committed copy.
use std::{env, path::PathBuf};

fn main() {
    // A versioned SONAME: hosts link against libxxnet.so.<major>, so an
    // incompatible release can be installed beside this one.
    let major = env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libxxnet.so.{major}");
    }
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=src/codes.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=XXNET_UPDATE_HEADER");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable");
    // Only the C-facing files are parsed, so internal constants never leak
    // into the header.
    let mut builder = cbindgen::Builder::new().with_config(config);
    for file in [
        "src/codes.rs",
        "src/ffi/types.rs",
        "src/ffi/context.rs",
        "src/ffi/dispatch.rs",
        "src/ffi/logging.rs",
        "src/ffi/rpc.rs",
        "src/ffi/files.rs",
    ] {
        builder = builder.with_src(crate_dir.join(file));
    }
    let bindings = builder
        .generate()
        .expect("cbindgen can generate the header");
    let mut raw = Vec::new();
    bindings.write(&mut raw);
    let header = untypedef_stats(String::from_utf8(raw).expect("header is UTF-8"));
    std::fs::write(out_dir.join("xxnet.h"), &header).expect("write OUT_DIR/xxnet.h");
    if env::var_os("XXNET_UPDATE_HEADER").is_some_and(|v| v == "1") {
        std::fs::write(crate_dir.join("include/xxnet.h"), &header).expect("write include/xxnet.h");
    }
}

/// The ABI names both a function and a struct `xxnet_stats`. C allows that
/// only when the struct is a plain tag (tags live in their own namespace),
/// so the typedef cbindgen emits is replaced by the tag and an `_t` alias.
fn untypedef_stats(header: String) -> String {
    let open = "typedef struct xxnet_stats {";
    let close = "} xxnet_stats;";
    assert!(
        header.contains(open) && header.contains(close),
        "xxnet_stats struct not found"
    );
    header
        .replace(open, "struct xxnet_stats {")
        .replace(close, "};\n\n/** Alias for `struct xxnet_stats` (the bare name is the function). */\ntypedef struct xxnet_stats xxnet_stats_t;")
}
