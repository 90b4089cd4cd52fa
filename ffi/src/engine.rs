//! The engine handle and its entry points: open, free, encoders, users,
//! search, lookalike, segments, snapshots and stats. Slates and replica
//! deltas are in [`crate::slates`].
//!
//! Each entry point is `guard` + argument helpers + one core call (see
//! [`crate::guard`]).

use std::ffi::c_char;

use groupwise_core::engine::{inspect, LoadOptions, Upserted};
use groupwise_core::lookalike::{Level, LookalikeRequest, Scorer, Seeds, Size};
use groupwise_core::{Engine, EngineConfig, RuntimeConfig};

use crate::error::{gw_result, FfiError};
use crate::guard::{c_str, guard, path, report_size, slice, utf8, Out, OutSlice};
use crate::handle::{self, Handle};

/// An engine: encoders, user index, segments and slate bandit of one
/// deployment (the C side of `groupwise::Engine`). Opaque; created by
/// `gw_engine_new`, `gw_engine_open_json`, `gw_engine_open_file` or
/// `gw_engine_load`, released by exactly one `gw_engine_free`.
///
/// Thread-safety: may be shared across threads. Every function taking a
/// `const gw_engine *` may be called concurrently on the same handle (the
/// engine synchronises internally); `gw_engine_free` must not run
/// concurrently with any other use of the handle.
#[allow(non_camel_case_types)]
pub struct gw_engine {
    _private: [u8; 0],
}

// SAFETY: zero-sized, never constructed by Rust; every pointer to it comes
// from `handle::into_raw::<gw_engine>` of an `Engine`.
unsafe impl Handle for gw_engine {
    type Target = Engine;
}

/// "No segment" in `int64_t` segment outputs.
pub const GW_NO_SEGMENT: i64 = -1;

/// Lookalike scorer: cosine similarity to the mean seed vector.
pub const GW_SCORER_CENTROID: u32 = 0;
/// Lookalike scorer: mean similarity to the most similar seeds.
pub const GW_SCORER_KNN: u32 = 1;
/// Lookalike scorer: seeds-vs-population logistic regression (the default).
pub const GW_SCORER_CLASSIFIER: u32 = 2;
/// Lookalike scorer: personalised PageRank over the kNN graph.
pub const GW_SCORER_DIFFUSION: u32 = 3;
/// Lookalike scorer: rank fusion of kNN density, classifier and diffusion.
pub const GW_SCORER_FUSION: u32 = 4;

/// Lookalike size: `size_value` users.
pub const GW_SIZE_COUNT: u32 = 0;
/// Lookalike size: the share `size_value` in (0, 1] of the population.
pub const GW_SIZE_FRACTION: u32 = 1;
/// Lookalike size: 1 % of the population (`size_value` ignored).
pub const GW_SIZE_NARROW: u32 = 2;
/// Lookalike size: 5 % of the population (`size_value` ignored).
pub const GW_SIZE_BALANCED: u32 = 3;
/// Lookalike size: 10 % of the population (`size_value` ignored).
pub const GW_SIZE_BROAD: u32 = 4;

fn scorer_of(code: u32) -> Result<Scorer, FfiError> {
    Ok(match code {
        GW_SCORER_CENTROID => Scorer::Centroid,
        GW_SCORER_KNN => Scorer::KnnDensity,
        GW_SCORER_CLASSIFIER => Scorer::Classifier,
        GW_SCORER_DIFFUSION => Scorer::Diffusion,
        GW_SCORER_FUSION => Scorer::Fusion,
        other => {
            return Err(FfiError::invalid(
                "scorer",
                format!("{other} is not a GW_SCORER_* value"),
            ))
        }
    })
}

fn size_of(kind: u32, value: f64) -> Result<Size, FfiError> {
    Ok(match kind {
        GW_SIZE_COUNT if value.is_finite() && value >= 0.0 && value.fract() == 0.0 => {
            Size::Count(value as usize)
        }
        GW_SIZE_COUNT => {
            return Err(FfiError::invalid(
                "size_value",
                format!("{value} is not a whole number of users"),
            ))
        }
        GW_SIZE_FRACTION => Size::Fraction(value),
        GW_SIZE_NARROW => Size::Level(Level::Narrow),
        GW_SIZE_BALANCED => Size::Level(Level::Balanced),
        GW_SIZE_BROAD => Size::Level(Level::Broad),
        other => {
            return Err(FfiError::invalid(
                "size_kind",
                format!("{other} is not a GW_SIZE_* value"),
            ))
        }
    })
}

fn open(
    engine: groupwise_core::Result<Engine>,
    out: Out<'_, *mut gw_engine>,
) -> Result<(), FfiError> {
    let engine = engine?;
    out.write(handle::into_raw::<gw_engine>(engine));
    Ok(())
}

/// Points ONNX Runtime at `library_path` (libonnxruntime.so) before any
/// encoder is loaded. Optional: without it, `ORT_DYLIB_PATH` and then
/// `.groupwise/lib` are searched. The runtime is loaded once per process: a
/// later call naming the same file returns `GW_OK`, one naming another file
/// `GW_ERR_INVALID_ARGUMENT` (the first library stays). Thread-safe.
///
/// # Safety
/// `library_path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn gw_runtime_init(library_path: *const c_char) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let p = unsafe { path(library_path, "library_path") }?;
        groupwise_core::runtime::environment(&RuntimeConfig {
            library_path: Some(p.to_path_buf()),
        })?;
        let same = |a: &std::path::Path, b: &std::path::Path| {
            a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
        };
        match groupwise_core::runtime::loaded_library() {
            Some(loaded) if !same(loaded, p) => Err(FfiError::invalid(
                "library_path",
                format!(
                    "ONNX Runtime is already loaded from {}; one runtime per process",
                    loaded.display()
                ),
            )),
            _ => Ok(()),
        }
    })
}

/// Creates an engine with the default configuration for embeddings of
/// dimension `dim`, and writes it to `*out_engine`.
///
/// Slate bandit defaults (also for any field a JSON configuration's
/// `bandit` section leaves out; the README lists every setting):
///
/// - **Click model: position-based (PBM) with examination 1 / (1 + slot)**
///   for 20 slots (1, 1/2, 1/3, ...; slots beyond 20 count as unseen).
///   A host whose users scan top-down and stop at a click must set
///   `"bandit": {"click_model": "Cascade"}`; a PBM host with other
///   examination probabilities lists them,
///   `{"click_model": {"Pbm": {"examination": [1, 0.6, 0.3]}}}`.
///   Learning with the wrong model costs regret (EVALUATION.md).
/// - Base prior Beta(1, 49) (pessimistic: an item earns its exposure),
///   pooling of the other segments' evidence up to 10 observations,
///   user strength 20, the learned host-score blend.
/// - **Seed 42** (`"bandit": {"seed": N}`): draws follow the seed and the
///   number of decisions made, so engines with the same seed fed the same
///   requests make the same slates. Give each engine that must not mirror
///   another its own seed.
///
/// # Safety
/// `out_engine` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_new(dim: usize, out_engine: *mut *mut gw_engine) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a writable pointer.
        let out = unsafe { Out::new(out_engine, "out_engine") }?;
        open(Engine::new(EngineConfig::new(dim)), out)
    })
}

/// Creates an engine from a JSON configuration (`json`, `len` bytes of
/// UTF-8; every field but `dim` optional, see `groupwise::EngineConfig`),
/// loading the encoders it lists. Relative encoder paths are relative to the
/// working directory. A `replica_id` above `GW_MAX_REPLICA_ID` is
/// `GW_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `json` points to `len` readable bytes (or is NULL with `len` 0);
/// `out_engine` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_open_json(
    json: *const c_char,
    len: usize,
    out_engine: *mut *mut gw_engine,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes `len` readable bytes or NULL with 0.
        let text = unsafe { utf8(json, len, "json") }?;
        // SAFETY: the caller passes NULL or a writable pointer.
        let out = unsafe { Out::new(out_engine, "out_engine") }?;
        open(EngineConfig::from_json(text).and_then(Engine::new), out)
    })
}

/// Creates an engine from a JSON configuration file (relative encoder
/// paths are relative to the file's folder), loading the encoders it lists.
///
/// # Safety
/// `config_path` is NULL or NUL-terminated; `out_engine` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_open_file(
    config_path: *const c_char,
    out_engine: *mut *mut gw_engine,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let p = unsafe { path(config_path, "config_path") }?;
        // SAFETY: the caller passes NULL or a writable pointer.
        let out = unsafe { Out::new(out_engine, "out_engine") }?;
        open(EngineConfig::from_file(p).and_then(Engine::new), out)
    })
}

/// Loads an engine from a snapshot file written by `gw_engine_save`
/// (checksum and format version checked first: a damaged file is
/// `GW_ERR_CORRUPT_SNAPSHOT`), re-opening the encoders its config names.
/// With `load_encoders` false the encoders are not opened (upserts from
/// behaviour then need `gw_engine_load_encoder`).
///
/// # Safety
/// `snapshot_path` is NULL or NUL-terminated; `out_engine` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_load(
    snapshot_path: *const c_char,
    load_encoders: bool,
    out_engine: *mut *mut gw_engine,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let p = unsafe { path(snapshot_path, "snapshot_path") }?;
        // SAFETY: the caller passes NULL or a writable pointer.
        let out = unsafe { Out::new(out_engine, "out_engine") }?;
        open(
            Engine::load_with(
                p,
                LoadOptions {
                    load_encoders,
                    ..LoadOptions::default()
                },
            ),
            out,
        )
    })
}

/// Releases an engine. NULL is a no-op. Must not run concurrently with any
/// other use of the handle.
///
/// # Safety
/// `engine` is NULL or a live handle, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_free(engine: *mut gw_engine) {
    crate::guard::guard_value((), || {
        // SAFETY: the caller passes NULL or a live handle it gives up.
        unsafe { handle::free(engine) }
    })
}

/// Saves a snapshot of the whole engine to `snapshot_path`, atomically
/// (temporary file, fsync, rename, fsync of the folder): the previous file
/// stays valid until the new one is complete.
///
/// # Safety
/// `engine` is NULL or live; `snapshot_path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_save(
    engine: *const gw_engine,
    snapshot_path: *const c_char,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a live handle.
        let engine = unsafe { handle::borrow(engine, "engine") }?;
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let p = unsafe { path(snapshot_path, "snapshot_path") }?;
        engine.save(p)?;
        Ok(())
    })
}

/// What a snapshot file holds (see `gw_snapshot_inspect`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct gw_snapshot_info {
    /// Format version.
    pub version: u32,
    /// File size in bytes.
    pub bytes: u64,
    /// The XXH3-64 checksum (verified).
    pub checksum: u64,
    /// Embedding dimension.
    pub dim: usize,
    /// Live users.
    pub users: usize,
    /// Served segments (0 when never built).
    pub segments: usize,
    /// Whether the HNSW graph is stored.
    pub graph_stored: bool,
    /// Decisions awaiting feedback.
    pub pending_decisions: usize,
    /// Feedback events the bandit applied.
    pub feedback_applied: u64,
}

/// Checks a snapshot file (checksum, version) and describes it without
/// building an engine.
///
/// # Safety
/// `snapshot_path` is NULL or NUL-terminated; `out_info` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn gw_snapshot_inspect(
    snapshot_path: *const c_char,
    out_info: *mut gw_snapshot_info,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let p = unsafe { path(snapshot_path, "snapshot_path") }?;
        // SAFETY: the caller passes NULL or a writable struct.
        let out = unsafe { Out::new(out_info, "out_info") }?;
        let i = inspect(p)?;
        out.write(gw_snapshot_info {
            version: i.version,
            bytes: i.bytes,
            checksum: i.checksum,
            dim: i.dim,
            users: i.users,
            segments: i.segments.unwrap_or(0),
            graph_stored: i.graph_stored,
            pending_decisions: i.pending_decisions,
            feedback_applied: i.bandit_stats.feedback_applied,
        });
        Ok(())
    })
}

/// Loads (or replaces) the encoder `name` from an ONNX file; its output
/// dimension must be the engine's.
///
/// # Safety
/// `engine` is NULL or live; `name` and `model_path` are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_load_encoder(
    engine: *const gw_engine,
    name: *const c_char,
    model_path: *const c_char,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a live handle.
        let engine = unsafe { handle::borrow(engine, "engine") }?;
        // SAFETY: the caller passes NULL or NUL-terminated strings.
        let name = unsafe { c_str(name, "name") }?;
        // SAFETY: as above.
        let p = unsafe { path(model_path, "model_path") }?;
        engine.load_encoder(name, p)?;
        Ok(())
    })
}

fn write_segment(out: Option<Out<'_, i64>>, segment: Option<u32>) {
    if let Some(out) = out {
        out.write(segment.map_or(GW_NO_SEGMENT, i64::from));
    }
}

/// An optional out-parameter: NULL means "not wanted".
///
/// # Safety
/// `ptr` is NULL or writable.
pub(crate) unsafe fn optional<'a, T>(
    ptr: *mut T,
    name: &str,
) -> Result<Option<Out<'a, T>>, FfiError> {
    if ptr.is_null() {
        Ok(None)
    } else {
        // SAFETY: non-NULL, and the caller passes a writable pointer.
        unsafe { Out::new(ptr, name) }.map(Some)
    }
}

/// Inserts or replaces `user` from its embedding (`dim` floats; validated
/// and normalised), placing it in a segment when segments are built.
/// `out_segment` (may be NULL) receives the segment or `GW_NO_SEGMENT`.
///
/// # Safety
/// `engine` is NULL or live; `vector` points to `len` floats (or is NULL
/// with `len` 0); `out_segment` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_upsert_embedding(
    engine: *const gw_engine,
    user: u64,
    vector: *const f32,
    len: usize,
    out_segment: *mut i64,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a live handle.
        let engine = unsafe { handle::borrow(engine, "engine") }?;
        // SAFETY: the caller passes `len` readable floats or NULL with 0.
        let v = unsafe { slice(vector, len, "vector") }?;
        // SAFETY: the caller passes NULL or a writable int64_t.
        let out = unsafe { optional(out_segment, "out_segment") }?;
        let up = engine.upsert_embedding(user, v)?;
        write_segment(out, up.segment);
        Ok(())
    })
}

/// The shared body of the upserts from behaviour: the encoder's name, the
/// behaviour buffer, then `upsert` on the core engine.
///
/// # Safety
/// As `gw_engine_upsert_features`, with `data` pointing to `len` elements.
unsafe fn upsert_encoded<T>(
    engine: *const gw_engine,
    encoder: *const c_char,
    data: *const T,
    len: usize,
    data_name: &str,
    out_segment: *mut i64,
    upsert: impl FnOnce(&Engine, &str, &[T]) -> groupwise_core::Result<Upserted>,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a live handle.
        let engine = unsafe { handle::borrow(engine, "engine") }?;
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let name = unsafe { c_str(encoder, "encoder") }?;
        // SAFETY: the caller passes `len` readable elements or NULL with 0.
        let data = unsafe { slice(data, len, data_name) }?;
        // SAFETY: the caller passes NULL or a writable int64_t.
        let out = unsafe { optional(out_segment, "out_segment") }?;
        let up = upsert(engine, name, data)?;
        write_segment(out, up.segment);
        Ok(())
    })
}

/// Encodes `user`'s dense features with the encoder `encoder`, then
/// upserts the embedding (see `gw_engine_upsert_embedding`).
///
/// # Safety
/// As `gw_engine_upsert_embedding`; `encoder` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_upsert_features(
    engine: *const gw_engine,
    encoder: *const c_char,
    user: u64,
    features: *const f32,
    len: usize,
    out_segment: *mut i64,
) -> gw_result {
    // SAFETY: the caller's contract is the helper's.
    unsafe {
        upsert_encoded(
            engine,
            encoder,
            features,
            len,
            "features",
            out_segment,
            |e, n, f| e.upsert_features(n, user, f),
        )
    }
}

/// Encodes `user`'s items (oldest first) with the encoder `encoder`
/// (item-sequence models, or item-bag feature models), then upserts the
/// embedding (see `gw_engine_upsert_embedding`).
///
/// # Safety
/// As `gw_engine_upsert_embedding`, with `items` pointing to `len` ids.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_upsert_sequence(
    engine: *const gw_engine,
    encoder: *const c_char,
    user: u64,
    items: *const u64,
    len: usize,
    out_segment: *mut i64,
) -> gw_result {
    // SAFETY: the caller's contract is the helper's.
    unsafe {
        upsert_encoded(
            engine,
            encoder,
            items,
            len,
            "items",
            out_segment,
            |e, n, i| e.upsert_sequence(n, user, i),
        )
    }
}

/// Deletes `user` everywhere (segment, index, its own bandit state).
/// `out_deleted` (may be NULL) receives false if the user was not indexed.
///
/// # Safety
/// `engine` is NULL or live; `out_deleted` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_delete_user(
    engine: *const gw_engine,
    user: u64,
    out_deleted: *mut bool,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a live handle.
        let engine = unsafe { handle::borrow(engine, "engine") }?;
        // SAFETY: the caller passes NULL or a writable bool.
        let out = unsafe { optional(out_deleted, "out_deleted") }?;
        let deleted = engine.delete_user(user)?;
        if let Some(out) = out {
            out.write(deleted);
        }
        Ok(())
    })
}

/// The size query and the parallel outputs of a neighbour list.
fn write_neighbors(
    found: &[groupwise_core::Neighbor],
    ids: OutSlice<'_, u64>,
    sims: OutSlice<'_, f32>,
    out_len: Out<'_, usize>,
) -> Result<(), FfiError> {
    report_size(out_len, found.len(), ids.capacity(), "out_ids")?;
    ids.write_iter(found.iter().map(|n| n.id))?;
    sims.write_iter(found.iter().map(|n| n.similarity))?;
    Ok(())
}

/// Writes up to `k` users most similar to indexed `user` (itself excluded),
/// best first: ids and cosine similarities in parallel arrays of
/// `capacity` elements (size query: see the conventions).
///
/// # Safety
/// `engine` is NULL or live; `out_ids` and `out_similarities` are NULL or
/// hold `capacity` elements; `out_len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_neighbors(
    engine: *const gw_engine,
    user: u64,
    k: usize,
    out_ids: *mut u64,
    out_similarities: *mut f32,
    capacity: usize,
    out_len: *mut usize,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a live handle.
        let engine = unsafe { handle::borrow(engine, "engine") }?;
        // SAFETY: the caller passes NULL or `capacity` writable elements.
        let ids = unsafe { OutSlice::new(out_ids, capacity, "out_ids") }?;
        // SAFETY: as above.
        let sims = unsafe { OutSlice::new(out_similarities, capacity, "out_similarities") }?;
        // SAFETY: the caller passes NULL or a writable size_t.
        let out_len = unsafe { Out::new(out_len, "out_len") }?;
        write_neighbors(&engine.neighbors(user, k)?, ids, sims, out_len)
    })
}

/// Writes up to `k` users most similar to a vector (`len` = the engine's
/// dimension), best first (size query: see the conventions).
///
/// # Safety
/// As `gw_engine_neighbors`, with `vector` pointing to `len` floats.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_search(
    engine: *const gw_engine,
    vector: *const f32,
    len: usize,
    k: usize,
    out_ids: *mut u64,
    out_similarities: *mut f32,
    capacity: usize,
    out_len: *mut usize,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a live handle.
        let engine = unsafe { handle::borrow(engine, "engine") }?;
        // SAFETY: the caller passes `len` readable floats or NULL with 0.
        let v = unsafe { slice(vector, len, "vector") }?;
        // SAFETY: the caller passes NULL or `capacity` writable elements.
        let ids = unsafe { OutSlice::new(out_ids, capacity, "out_ids") }?;
        // SAFETY: as above.
        let sims = unsafe { OutSlice::new(out_similarities, capacity, "out_similarities") }?;
        // SAFETY: the caller passes NULL or a writable size_t.
        let out_len = unsafe { Out::new(out_len, "out_len") }?;
        write_neighbors(&engine.search(v, k)?, ids, sims, out_len)
    })
}

/// Expands a seed segment: writes the users most like `seeds` (indexed
/// user ids; unknown ones are skipped), best first, with their scores.
/// `exclude` (may be empty) are never returned. The size is
/// `(size_kind, size_value)`: `GW_SIZE_COUNT` with a whole number of users,
/// `GW_SIZE_FRACTION` with a share in (0, 1], or a level (`GW_SIZE_NARROW`,
/// `GW_SIZE_BALANCED`, `GW_SIZE_BROAD`). `scorer` is a `GW_SCORER_*`.
/// Too few usable seeds is `GW_ERR_TOO_FEW_SEEDS`. The result holds at most
/// the asked size: with buffers that large no size query is needed (a size
/// query runs the whole expansion).
///
/// # Safety
/// `engine` is NULL or live; `seeds` and `exclude` point to their lengths
/// of ids (or are NULL with 0); the outputs hold `capacity` elements or are
/// NULL with 0; `out_len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_lookalike(
    engine: *const gw_engine,
    seeds: *const u64,
    n_seeds: usize,
    exclude: *const u64,
    n_exclude: usize,
    size_kind: u32,
    size_value: f64,
    scorer: u32,
    out_ids: *mut u64,
    out_scores: *mut f64,
    capacity: usize,
    out_len: *mut usize,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a live handle.
        let engine = unsafe { handle::borrow(engine, "engine") }?;
        // SAFETY: the caller passes `n_seeds` readable ids or NULL with 0.
        let seeds = unsafe { slice(seeds, n_seeds, "seeds") }?;
        // SAFETY: as above for `exclude`.
        let exclude = unsafe { slice(exclude, n_exclude, "exclude") }?;
        // SAFETY: the caller passes NULL or `capacity` writable elements.
        let ids = unsafe { OutSlice::new(out_ids, capacity, "out_ids") }?;
        // SAFETY: as above.
        let scores = unsafe { OutSlice::new(out_scores, capacity, "out_scores") }?;
        // SAFETY: the caller passes NULL or a writable size_t.
        let out_len = unsafe { Out::new(out_len, "out_len") }?;
        let excluded: std::collections::HashSet<u64> = exclude.iter().copied().collect();
        let mut request =
            LookalikeRequest::new(Seeds::Users(seeds), size_of(size_kind, size_value)?);
        request.scorer = scorer_of(scorer)?;
        if !excluded.is_empty() {
            request.exclude = Some(&excluded);
        }
        let expansion = engine.lookalike(&request)?;
        report_size(out_len, expansion.users.len(), capacity, "out_ids")?;
        ids.write_iter(expansion.users.iter().map(|u| u.id))?;
        scores.write_iter(expansion.users.iter().map(|u| u.score))?;
        Ok(())
    })
}

/// Builds the segments (first call) or rebuilds them (moving the bandit's
/// segment counts to the new segments). `out_segments` (may be NULL)
/// receives the number of served segments. Too few users for one segment
/// of the privacy floor is `GW_ERR_BELOW_PRIVACY_FLOOR`.
///
/// # Safety
/// `engine` is NULL or live; `out_segments` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_build_segments(
    engine: *const gw_engine,
    out_segments: *mut usize,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a live handle.
        let engine = unsafe { handle::borrow(engine, "engine") }?;
        // SAFETY: the caller passes NULL or a writable size_t.
        let out = unsafe { optional(out_segments, "out_segments") }?;
        let report = engine.build_segments()?;
        if let Some(out) = out {
            out.write(report.build.segments);
        }
        Ok(())
    })
}

/// Writes `user`'s segment. `GW_ERR_UNKNOWN_USER` if the user is not
/// indexed, `GW_ERR_NO_SEGMENTS` before the first build.
///
/// # Safety
/// `engine` is NULL or live; `out_segment` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_segment_of(
    engine: *const gw_engine,
    user: u64,
    out_segment: *mut u32,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a live handle.
        let engine = unsafe { handle::borrow(engine, "engine") }?;
        // SAFETY: the caller passes NULL or a writable uint32_t.
        let out = unsafe { Out::new(out_segment, "out_segment") }?;
        if !engine.contains(user) {
            return Err(groupwise_core::Error::UnknownUser(user).into());
        }
        let segment = engine
            .segment_of(user)
            .ok_or(groupwise_core::Error::NoSegments)?;
        out.write(segment);
        Ok(())
    })
}

/// Writes the ids of the served segments, increasing (size query: see the
/// conventions).
///
/// # Safety
/// `engine` is NULL or live; `out_ids` holds `capacity` elements or is NULL
/// with 0; `out_len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_segment_ids(
    engine: *const gw_engine,
    out_ids: *mut u32,
    capacity: usize,
    out_len: *mut usize,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a live handle.
        let engine = unsafe { handle::borrow(engine, "engine") }?;
        // SAFETY: the caller passes NULL or `capacity` writable elements.
        let ids = unsafe { OutSlice::new(out_ids, capacity, "out_ids") }?;
        // SAFETY: the caller passes NULL or a writable size_t.
        let out_len = unsafe { Out::new(out_len, "out_len") }?;
        let all = engine.segment_ids();
        report_size(out_len, all.len(), capacity, "out_ids")?;
        ids.write(&all)?;
        Ok(())
    })
}

/// A segment's summary (see `gw_engine_segment_profile`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct gw_segment_profile {
    /// The segment.
    pub id: u32,
    /// Members.
    pub size: usize,
    /// Mean cosine similarity of the members to the centroid.
    pub cohesion: f64,
}

/// Describes a served segment: its summary in `*out_profile`, and its
/// representative users (most central first) in `out_representatives`
/// (size query on the representatives: see the conventions). A segment
/// below the privacy floor is `GW_ERR_BELOW_PRIVACY_FLOOR`; an unknown one
/// `GW_ERR_UNKNOWN_SEGMENT`.
///
/// # Safety
/// `engine` is NULL or live; `out_profile` and `out_len` are NULL or
/// writable; `out_representatives` holds `capacity` ids or is NULL with 0.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_segment_profile(
    engine: *const gw_engine,
    segment: u32,
    out_profile: *mut gw_segment_profile,
    out_representatives: *mut u64,
    capacity: usize,
    out_len: *mut usize,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a live handle.
        let engine = unsafe { handle::borrow(engine, "engine") }?;
        // SAFETY: the caller passes NULL or a writable struct.
        let profile_out = unsafe { Out::new(out_profile, "out_profile") }?;
        // SAFETY: the caller passes NULL or `capacity` writable ids.
        let reps = unsafe { OutSlice::new(out_representatives, capacity, "out_representatives") }?;
        // SAFETY: the caller passes NULL or a writable size_t.
        let out_len = unsafe { Out::new(out_len, "out_len") }?;
        let p = engine.segment_profile(segment)?;
        report_size(
            out_len,
            p.representatives.len(),
            capacity,
            "out_representatives",
        )?;
        reps.write_iter(p.representatives.iter().map(|n| n.id))?;
        profile_out.write(gw_segment_profile {
            id: p.id,
            size: p.size,
            cohesion: p.cohesion,
        });
        Ok(())
    })
}

/// Engine counters and sizes (see `gw_engine_get_stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct gw_engine_stats {
    /// Users in the index.
    pub users: usize,
    /// Served segments.
    pub segments: usize,
    /// Loaded encoders.
    pub encoders: usize,
    /// Upserts accepted.
    pub upserts: u64,
    /// Users deleted.
    pub deletes: u64,
    /// Lookalike expansions answered.
    pub lookalikes: u64,
    /// Snapshots saved by `gw_engine_save` over this state's lineage: an
    /// engine loaded from a snapshot continues from that file's count (which
    /// counts itself). Every counter here survives a save and load.
    pub snapshots: u64,
    /// Slate decisions made.
    pub decisions: u64,
    /// Feedback events applied.
    pub feedback_applied: u64,
    /// Feedback refused: unknown, repeated or evicted decisions.
    pub rejected_unknown_decision: u64,
    /// Feedback refused for its clicks: a slot outside the slate or the
    /// visible slots, or clicked twice.
    pub rejected_bad_position: u64,
    /// Clicks recorded (never more than `impressions`).
    pub clicks: u64,
    /// Slots recorded as shown.
    pub impressions: u64,
    /// Replica deltas merged.
    pub merged_deltas: u64,
}

/// Writes the engine's counters.
///
/// # Safety
/// `engine` is NULL or live; `out_stats` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_get_stats(
    engine: *const gw_engine,
    out_stats: *mut gw_engine_stats,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a live handle.
        let engine = unsafe { handle::borrow(engine, "engine") }?;
        // SAFETY: the caller passes NULL or a writable struct.
        let out = unsafe { Out::new(out_stats, "out_stats") }?;
        let s = engine.stats();
        out.write(gw_engine_stats {
            users: s.users,
            segments: s.segments,
            encoders: s.encoders,
            upserts: s.upserts,
            deletes: s.deletes,
            lookalikes: s.lookalikes,
            snapshots: s.snapshots,
            decisions: s.bandit.decisions,
            feedback_applied: s.bandit.feedback_applied,
            rejected_unknown_decision: s.bandit.rejected_unknown_decision,
            rejected_bad_position: s.bandit.rejected_bad_position,
            clicks: s.bandit.clicks,
            impressions: s.bandit.impressions,
            merged_deltas: s.bandit.merged_deltas,
        });
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ptr::{null, null_mut};

    fn engine(dim: usize) -> *mut gw_engine {
        let mut e = null_mut();
        // SAFETY: `e` is writable.
        assert_eq!(unsafe { gw_engine_new(dim, &mut e) }, gw_result::GW_OK);
        e
    }

    #[test]
    fn users_neighbors_and_errors_through_the_abi() {
        let e = engine(4);
        let rows: [[f32; 4]; 3] = [
            [1.0, 0.0, 0.0, 0.0],
            [0.9, 0.1, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ];
        for (i, r) in rows.iter().enumerate() {
            let mut seg = 7;
            // SAFETY: live engine, 4 floats, writable segment.
            let rc = unsafe { gw_engine_upsert_embedding(e, i as u64, r.as_ptr(), 4, &mut seg) };
            assert_eq!(rc, gw_result::GW_OK);
            assert_eq!(seg, GW_NO_SEGMENT);
        }
        // Size query, then the answer.
        let mut n = 0;
        // SAFETY: NULL buffers with capacity 0 are a size query.
        let rc = unsafe { gw_engine_neighbors(e, 0, 2, null_mut(), null_mut(), 0, &mut n) };
        assert_eq!((rc, n), (gw_result::GW_ERR_BUFFER_TOO_SMALL, 2));
        let (mut ids, mut sims) = ([0u64; 2], [0f32; 2]);
        // SAFETY: buffers of 2.
        let rc =
            unsafe { gw_engine_neighbors(e, 0, 2, ids.as_mut_ptr(), sims.as_mut_ptr(), 2, &mut n) };
        assert_eq!(rc, gw_result::GW_OK);
        assert_eq!(ids, [1, 2]);
        // Wrong dimension, NaN, unknown user, NULL engine: codes, nothing written.
        let mut seg = 5;
        // SAFETY: 3 floats passed with len 3.
        let rc = unsafe { gw_engine_upsert_embedding(e, 9, rows[0].as_ptr(), 3, &mut seg) };
        assert_eq!((rc, seg), (gw_result::GW_ERR_DIMENSION_MISMATCH, 5));
        let nan = [f32::NAN, 0.0, 0.0, 0.0];
        // SAFETY: 4 floats.
        let rc = unsafe { gw_engine_upsert_embedding(e, 9, nan.as_ptr(), 4, null_mut()) };
        assert_eq!(rc, gw_result::GW_ERR_NON_FINITE);
        // SAFETY: as above.
        let rc = unsafe {
            gw_engine_neighbors(e, 99, 2, ids.as_mut_ptr(), sims.as_mut_ptr(), 2, &mut n)
        };
        assert_eq!(rc, gw_result::GW_ERR_UNKNOWN_USER);
        // SAFETY: a NULL engine is rejected before use.
        let rc = unsafe {
            gw_engine_neighbors(
                null::<gw_engine>(),
                0,
                2,
                ids.as_mut_ptr(),
                sims.as_mut_ptr(),
                2,
                &mut n,
            )
        };
        assert_eq!(rc, gw_result::GW_ERR_NULL_ARGUMENT);
        // SAFETY: NULL strings are rejected.
        assert_eq!(
            unsafe { gw_engine_save(e, null()) },
            gw_result::GW_ERR_NULL_ARGUMENT
        );
        let mut s = gw_engine_stats::default();
        // SAFETY: live engine, writable stats.
        assert_eq!(unsafe { gw_engine_get_stats(e, &mut s) }, gw_result::GW_OK);
        assert_eq!((s.users, s.upserts), (3, 3));
        // SAFETY: `e` came from gw_engine_new; freed once; NULL is a no-op.
        unsafe {
            gw_engine_free(e);
            gw_engine_free(null_mut());
        }
    }

    #[test]
    fn invalid_enum_values_are_errors_not_undefined_behaviour() {
        assert!(scorer_of(5).is_err());
        assert!(size_of(9, 1.0).is_err());
        assert!(size_of(GW_SIZE_COUNT, 2.5).is_err());
        assert_eq!(size_of(GW_SIZE_COUNT, 3.0).ok(), Some(Size::Count(3)));
    }
}
