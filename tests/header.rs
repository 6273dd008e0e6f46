//! The committed header must match what cbindgen generates from the code.

#[test]
fn committed_header_matches_generated() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/xxnet.h"));
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/xxnet.h"))
            .expect("include/xxnet.h exists");
    assert!(
        generated == committed,
        "include/xxnet.h is stale: regenerate with XXNET_UPDATE_HEADER=1 cargo build and commit it"
    );
}
