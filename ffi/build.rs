//! Link settings for the shared library.
//!
//! `hnsw_rs` marks some of its functions `#[no_mangle] extern "C"`, and rustc
//! exports every such symbol of every linked crate from a `cdylib`. Those
//! symbols are not part of our ABI (and could clash with another copy of
//! hnsw_rs in the host process), so the linker is told to hide every symbol
//! that comes from a static archive: each dependency's rlib is one, while our
//! own `gw_` entry points are in this crate's object files and stay exported.
//! `ffi/check-symbols.sh` checks the result.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // `--exclude-libs` is an ELF linker option (GNU ld, gold, lld).
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,--exclude-libs,ALL");
    }
}
