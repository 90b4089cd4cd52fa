//! The committed C header must be exactly what cbindgen generates from the
//! current sources, so a change to the ABI cannot land without its header.
//!
//! Regenerate it with `GW_BLESS=1 cargo test -p groupwise-ffi --test header`.

use std::path::Path;

#[test]
fn committed_header_is_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("ffi/cbindgen.toml");
    // Parsing the sources directly (rather than `with_crate`, which runs
    // `cargo metadata`) keeps the test fast and free of cargo locks; the
    // crate has no `extern crate` whose items would need cargo's help.
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen failed to generate the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);

    let committed_path = dir.join("include/groupwise.h");
    if std::env::var_os("GW_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&committed_path, &generated).expect("write ffi/include/groupwise.h");
        return;
    }
    let committed = std::fs::read(&committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "ffi/include/groupwise.h is stale (or missing): it differs from what cbindgen generates \
         from ffi/src. Regenerate it with\n\n    GW_BLESS=1 cargo test -p groupwise-ffi --test header\n\n\
         and commit the result.\n--- generated ---\n{}",
        String::from_utf8_lossy(&generated)
    );
}
