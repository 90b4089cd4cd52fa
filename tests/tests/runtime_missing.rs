//! A missing or wrong ONNX Runtime library is a clear error, never a panic or a
//! hang. This file is its own test binary (its own process), because the first
//! successful load of ONNX Runtime is final for a process.

use std::path::PathBuf;

use groupwise::runtime::{resolve_library, RuntimeConfig};
use groupwise::{Encoder, EncoderOptions, Error};
use groupwise_e2e::model;

fn options(path: &str) -> EncoderOptions {
    EncoderOptions {
        runtime: RuntimeConfig {
            library_path: Some(PathBuf::from(path)),
        },
        ..Default::default()
    }
}

#[test]
fn missing_or_wrong_library_gives_the_documented_error() {
    // An explicit path that does not exist: no fallback, and the message says
    // how to fix it in an embedder's terms (the checkout's scripts/setup.sh is
    // the command line's advice, not the library's).
    let err = Encoder::load(
        model("ml100k-seq.onnx"),
        &options("/nonexistent/libonnxruntime.so"),
    )
    .expect_err("missing library");
    let msg = err.to_string();
    assert!(matches!(err, Error::RuntimeUnavailable { .. }), "{msg}");
    assert!(msg.contains("/nonexistent/libonnxruntime.so"), "{msg}");
    assert!(
        msg.contains("ORT_DYLIB_PATH") && msg.contains("RuntimeConfig::library_path"),
        "{msg}"
    );
    assert!(!msg.contains("scripts/setup.sh"), "{msg}");

    // A file that is not a shared library at all.
    let err = Encoder::load(
        model("ml100k-seq.onnx"),
        &options(model("README.md").to_str().expect("utf-8")),
    )
    .expect_err("not a library");
    assert!(matches!(err, Error::RuntimeUnavailable { .. }), "{err}");

    // A real shared library that is not ONNX Runtime.
    let libm = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .expect("libm is on every Linux");
    let err =
        Encoder::load(model("ml100k-seq.onnx"), &options(libm)).expect_err("not ONNX Runtime");
    assert!(err.to_string().contains("OrtGetApiBase"), "{err}");

    // ORT_DYLIB_PATH pointing nowhere is reported as such (no explicit path set).
    // SAFETY of set_var: this is the only test in this binary.
    std::env::set_var("ORT_DYLIB_PATH", "/nowhere/libonnxruntime.so");
    let err = resolve_library(&RuntimeConfig::default()).expect_err("bad env var");
    assert!(
        err.to_string()
            .contains("ORT_DYLIB_PATH points to /nowhere"),
        "{err}"
    );
    std::env::remove_var("ORT_DYLIB_PATH");

    // After all that, the real library still loads and works in this process.
    let enc =
        Encoder::load(model("ml100k-seq.onnx"), &EncoderOptions::default()).expect("real library");
    assert_eq!(enc.dim(), 64);
}
