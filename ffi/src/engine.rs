//! The engine handle. Its entry points (`gw_engine_new`, `gw_engine_free`,
//! and one per `groupwise::Engine` method) are added here by the engine
//! wrapper, each as `guard` + argument helpers + one core call.

/// An engine: embeddings, index, segments and bandit of one deployment
/// (the C side of `groupwise::Engine`). Opaque; created by a `gw_engine_*`
/// constructor and released by exactly one `gw_engine_free`.
///
/// Thread-safety: may be shared across threads. Every `gw_engine_*` function
/// taking a `const gw_engine *` may be called concurrently on the same
/// handle; `gw_engine_free` must not run concurrently with any other use.
#[allow(non_camel_case_types)]
pub struct gw_engine {
    _private: [u8; 0],
}
