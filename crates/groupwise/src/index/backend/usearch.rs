//! The usearch backend: usearch's dense HNSW index keyed by slot.
//!
//! * **Metric.** Inner product on the unit vectors at f32 and f16; cosine at
//!   i8, where each vector is scaled by its largest component before
//!   rounding (cosine ignores the scale, and the codes use the whole i8
//!   range instead of the few values a unit vector's small components
//!   would get from a fixed scale).
//! * **Search width.** usearch's beam is the larger of its configured
//!   `expansion_search` and the number of results asked for. The index is
//!   built with `expansion_search` 1 and asks for `ef` results, so `ef` is
//!   chosen per search; the caller re-scores the `ef` candidates exactly.
//! * **Threads.** usearch serves a search from one of a fixed number of
//!   per-thread contexts and fails when none is free; a semaphore of the
//!   same size makes callers beyond it wait instead.
//! * **Snapshots** store usearch's own serialization. It is checked before
//!   usearch reads it ([`check_serialized`]: usearch trusts every length,
//!   level and link in it), then copied in, or viewed in place from a
//!   memory-mapped snapshot. A viewed graph is copied into memory on the
//!   first write.

use parking_lot::{Condvar, Mutex};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::{invalid, Backend, Bytes, Graph, Params, Precision};
use crate::error::{Error, Result};

/// The graph format version this build writes: usearch 2.x serialization.
pub(super) const FORMAT: u32 = 2;

/// Concurrent searches and inserts usearch is prepared for; more wait.
const THREADS: usize = 64;

/// The key usearch gives removed nodes.
const FREE_KEY: u64 = u64::MAX;

/// Levels no real graph reaches (2^-63 odds per node at M = 2).
const MAX_LEVEL: u64 = 63;

/// A counting semaphore over usearch's thread contexts.
struct Permits {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Permits {
    fn new(n: usize) -> Permits {
        Permits {
            free: Mutex::new(n),
            freed: Condvar::new(),
        }
    }

    fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        {
            let mut free = self.free.lock();
            while *free == 0 {
                self.freed.wait(&mut free);
            }
            *free -= 1;
        }
        struct Release<'a>(&'a Permits);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                *self.0.free.lock() += 1;
                self.0.freed.notify_one();
            }
        }
        let _release = Release(self);
        f()
    }
}

pub(super) struct UsearchGraph {
    /// Declared before `map`: a view must be dropped before its bytes.
    index: Index,
    params: Params,
    permits: Permits,
    /// The snapshot this graph views, until the first write copies it.
    map: Option<Bytes>,
}

fn options(p: &Params) -> IndexOptions {
    let (metric, quantization) = match p.precision {
        Precision::F32 => (MetricKind::IP, ScalarKind::F32),
        Precision::F16 => (MetricKind::IP, ScalarKind::F16),
        Precision::I8 => (MetricKind::Cos, ScalarKind::I8),
    };
    IndexOptions {
        dimensions: p.dim,
        metric,
        quantization,
        connectivity: p.m,
        expansion_add: p.ef_construction,
        expansion_search: 1,
        multi: false,
    }
}

fn usearch_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid("usearch", format!("{what}: {e}"))
}

/// i8 codes of a unit vector: each component scaled by 127 / the largest
/// magnitude and rounded (cosine does not see the scale).
fn i8_codes(v: &[f32]) -> Vec<i8> {
    let max = v
        .iter()
        .fold(0f32, |m, x| m.max(x.abs()))
        .max(f32::MIN_POSITIVE);
    v.iter()
        .map(|x| (x * 127.0 / max).round().clamp(-127.0, 127.0) as i8)
        .collect()
}

fn fresh(params: &Params, capacity: usize) -> Result<Index> {
    let index = Index::new(&options(params)).map_err(|e| usearch_error("cannot create", e))?;
    index
        .reserve_capacity_and_threads(capacity, THREADS)
        .map_err(|e| usearch_error("cannot reserve memory", e))?;
    Ok(index)
}

impl UsearchGraph {
    pub(super) fn new(params: Params, capacity: usize) -> Result<UsearchGraph> {
        Ok(UsearchGraph {
            index: fresh(&params, capacity.max(16))?,
            params,
            permits: Permits::new(THREADS),
            map: None,
        })
    }

    /// A graph from checked bytes: viewed in place when they are mapped,
    /// copied otherwise.
    pub(super) fn load(
        params: Params,
        bytes: Bytes,
        _rows: &[f32],
        present: &[bool],
    ) -> Result<UsearchGraph> {
        check_serialized(bytes.as_slice(), &params, present)?;
        // Thread contexts are carried over from the empty index into the
        // loaded one.
        let index = fresh(&params, 0)?;
        let map = match bytes {
            Bytes::Mapped { .. } => {
                // SAFETY: the bytes are a read-only private mapping owned
                // by `map`, which this graph keeps (and drops after
                // `index`) for as long as the view is used; the first
                // write replaces the view by a copy first.
                unsafe { index.view_from_buffer(bytes.as_slice()) }
                    .map_err(|e| usearch_error("cannot view the stored graph", e))?;
                Some(bytes)
            }
            Bytes::Owned(ref b) => {
                index
                    .load_from_buffer(b)
                    .map_err(|e| usearch_error("cannot load the stored graph", e))?;
                None
            }
        };
        Ok(UsearchGraph {
            index,
            params,
            permits: Permits::new(THREADS),
            map,
        })
    }

    fn add(&self, slot: usize, vector: &[f32]) -> Result<()> {
        let key = slot as u64;
        let added = match self.params.precision {
            Precision::I8 => self.index.add(key, &i8_codes(vector)),
            _ => self.index.add(key, vector),
        };
        added.map_err(|e| usearch_error(&format!("cannot insert slot {slot}"), e))
    }
}

impl Graph for UsearchGraph {
    fn backend(&self) -> Backend {
        Backend::Usearch
    }

    fn prepare_write(&mut self, slots: usize) -> Result<()> {
        if let Some(bytes) = self.map.take() {
            let copy = fresh(&self.params, 0)?;
            copy.load_from_buffer(bytes.as_slice())
                .map_err(|e| usearch_error("cannot copy the mapped graph", e))?;
            self.index = copy;
        }
        let capacity = self.index.capacity();
        if slots > capacity {
            let want = slots.max(capacity.saturating_mul(2)).max(16);
            self.index
                .reserve_capacity_and_threads(want, THREADS)
                .map_err(|e| usearch_error("cannot reserve memory", e))?;
        }
        Ok(())
    }

    fn insert(&self, slot: usize, vector: &[f32]) -> Result<()> {
        self.permits.run(|| self.add(slot, vector))
    }

    fn remove(&self, slot: usize) -> Result<bool> {
        self.index
            .remove(slot as u64)
            .map_err(|e| usearch_error(&format!("cannot remove slot {slot}"), e))?;
        Ok(true)
    }

    fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: Option<&(dyn Fn(usize) -> bool + Sync)>,
    ) -> Result<Vec<usize>> {
        let count = ef.max(k).max(1);
        let codes = (self.params.precision == Precision::I8).then(|| i8_codes(query));
        let found = self.permits.run(|| match keep {
            None => match &codes {
                Some(c) => self.index.search(c, count),
                None => self.index.search(query, count),
            },
            Some(keep) => {
                // The predicate runs inside usearch's C++: a panic must not
                // unwind through it. A panicking filter keeps nothing.
                let guarded = |key: u64| {
                    key != FREE_KEY
                        && std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            keep(key as usize)
                        }))
                        .unwrap_or(false)
                };
                match &codes {
                    Some(c) => self.index.filtered_search(c, count, guarded),
                    None => self.index.filtered_search(query, count, guarded),
                }
            }
        });
        let found = found.map_err(|e| usearch_error("search failed", e))?;
        Ok(found
            .keys
            .into_iter()
            .filter(|&k| k != FREE_KEY)
            .map(|k| k as usize)
            .collect())
    }

    fn base_layer(&self, slots: usize) -> Vec<Vec<u32>> {
        use rayon::prelude::*;
        (0..slots)
            .into_par_iter()
            .map(|s| {
                if !self.index.contains(s as u64) {
                    return Vec::new();
                }
                self.index
                    .neighbors(s as u64, 0)
                    .filter(|&n| n < slots as u64)
                    .map(|n| n as u32)
                    .collect()
            })
            .collect()
    }

    fn memory_bytes(&self) -> usize {
        if self.map.is_some() {
            0
        } else {
            self.index.memory_usage()
        }
    }

    fn is_mapped(&self) -> bool {
        self.map.is_some()
    }

    fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.index.serialized_length()];
        self.index
            .save_to_buffer(&mut out)
            .map_err(|e| usearch_error("cannot serialize the graph", e))?;
        Ok(out)
    }
}

/// A little-endian reader that fails instead of reading past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| invalid(format!("ends early (needs {n} bytes at {})", self.at)))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

/// What an empty graph with these parameters serializes to: the expected
/// vector size, file header (minus the counts) and link capacities.
struct Reference {
    bytes_per_vector: u32,
    head: Vec<u8>,
    connectivity: u64,
    connectivity_base: u64,
}

const HEAD_BYTES: usize = 64;
/// Offsets of `count_present` and `count_deleted` in the 64-byte head
/// (after the 7-byte magic, three u16 version numbers and four one-byte
/// kinds: metric, scalar, key, slot).
const COUNTS: std::ops::Range<usize> = 17..33;

fn reference(params: &Params) -> Result<Reference> {
    let bytes = fresh(params, 0)?;
    let mut out = vec![0u8; bytes.serialized_length()];
    bytes
        .save_to_buffer(&mut out)
        .map_err(|e| usearch_error("cannot serialize an empty graph", e))?;
    let mut r = Reader { bytes: &out, at: 0 };
    let _rows = r.u32()?;
    let bytes_per_vector = r.u32()?;
    let head = r.take(HEAD_BYTES)?.to_vec();
    let _size = r.u64()?;
    let connectivity = r.u64()?;
    let connectivity_base = r.u64()?;
    Ok(Reference {
        bytes_per_vector,
        head,
        connectivity,
        connectivity_base,
    })
}

/// Checks usearch's serialization of a graph before usearch reads it:
/// layout, types and sizes as an empty graph of the same parameters has
/// them; every count, level and link in range (a link at level `l` goes to
/// another node that has level `l`); every key a distinct slot the index
/// expects in the graph (`present`), or the key of a removed node; and
/// nothing after the last node.
pub(super) fn check_serialized(bytes: &[u8], params: &Params, present: &[bool]) -> Result<()> {
    let want = reference(params)?;
    let mut r = Reader { bytes, at: 0 };
    let rows = r.u32()? as u64;
    let bytes_per_vector = r.u32()?;
    if bytes_per_vector != want.bytes_per_vector {
        return Err(invalid(format!(
            "vectors of {bytes_per_vector} bytes where {} are expected",
            want.bytes_per_vector
        )));
    }
    let vector_bytes = (rows as usize)
        .checked_mul(bytes_per_vector as usize)
        .ok_or_else(|| invalid("its vector matrix is impossibly large"))?;
    r.take(vector_bytes)?;
    let head = r.take(HEAD_BYTES)?;
    let same_outside_counts = head[..COUNTS.start] == want.head[..COUNTS.start]
        && head[COUNTS.end..] == want.head[COUNTS.end..];
    if !same_outside_counts {
        return Err(invalid(
            "its header names another format, metric, precision or dimension",
        ));
    }
    let count = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().expect("8 bytes"));
    let (count_present, count_deleted) = (count(COUNTS.start), count(COUNTS.start + 8));
    let size = r.u64()?;
    let connectivity = r.u64()?;
    let connectivity_base = r.u64()?;
    let max_level = r.u64()?;
    let entry = r.u64()?;
    if size != rows || count_present.checked_add(count_deleted) != Some(size) {
        return Err(invalid(format!(
            "{rows} vectors, {size} nodes, {count_present} present and {count_deleted} deleted do not agree"
        )));
    }
    if (connectivity, connectivity_base) != (want.connectivity, want.connectivity_base) {
        return Err(invalid(format!(
            "links per node {connectivity}/{connectivity_base} where the config gives {}/{}",
            want.connectivity, want.connectivity_base
        )));
    }
    if size > present.len() as u64 {
        return Err(invalid(format!("{size} nodes for {} slots", present.len())));
    }
    let size = size as usize;
    if size == 0 {
        if present.iter().any(|&p| p) {
            return Err(invalid("the graph is empty but the index has users"));
        }
        return if r.at == bytes.len() {
            Ok(())
        } else {
            Err(invalid("bytes after the end of the graph"))
        };
    }
    if max_level > MAX_LEVEL || entry >= size as u64 {
        return Err(invalid(format!(
            "top level {max_level} or entry node {entry} out of range"
        )));
    }
    let mut levels = Vec::with_capacity(size);
    for i in 0..size {
        let level = r.u16()? as i16;
        if level < 0 || level as u64 > max_level {
            return Err(invalid(format!("node {i} has level {level}")));
        }
        levels.push(level as usize);
    }
    if (levels[entry as usize] as u64) < max_level {
        return Err(invalid("the entry node is below the top level"));
    }
    let mut seen = vec![false; present.len()];
    let mut keys = 0u64;
    for (i, &level) in levels.iter().enumerate() {
        let key = r.u64()?;
        let node_level = r.u16()? as i16;
        if node_level as isize != level as isize {
            return Err(invalid(format!(
                "node {i}'s level disagrees with the level table"
            )));
        }
        if key != FREE_KEY {
            let slot = usize::try_from(key)
                .ok()
                .filter(|&s| s < present.len() && present[s] && !seen[s])
                .ok_or_else(|| {
                    invalid(format!(
                        "node {i} has key {key}, not a slot of the index or a repeat"
                    ))
                })?;
            seen[slot] = true;
            keys += 1;
        }
        for l in 0..=level {
            let capacity = if l == 0 {
                connectivity_base
            } else {
                connectivity
            } as usize;
            let links = r.u32()? as usize;
            if links > capacity {
                return Err(invalid(format!("node {i} has {links} links at level {l}")));
            }
            let slots = r.take(capacity * 4)?;
            for j in 0..links {
                let n = u32::from_le_bytes(slots[j * 4..j * 4 + 4].try_into().expect("4 bytes"))
                    as usize;
                if n >= size || n == i || levels[n] < l {
                    return Err(invalid(format!("node {i} links to node {n} at level {l}")));
                }
            }
        }
    }
    if keys != count_present || present.iter().zip(&seen).any(|(&p, &s)| p && !s) {
        return Err(invalid(
            "the graph's keys are not the slots the index expects in it",
        ));
    }
    if r.at != bytes.len() {
        return Err(invalid("bytes after the end of the graph"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(precision: Precision) -> Params {
        Params {
            dim: 8,
            m: 8,
            ef_construction: 64,
            precision,
        }
    }

    fn unit(i: usize) -> Vec<f32> {
        let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let v: Vec<f32> = (0..8)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        crate::vector::normalized("v", &v, 8).expect("unit")
    }

    fn graph(precision: Precision, n: usize) -> UsearchGraph {
        let mut g = UsearchGraph::new(params(precision), 4).expect("graph");
        g.prepare_write(n).expect("reserve");
        for i in 0..n {
            g.insert(i, &unit(i)).expect("insert");
        }
        g
    }

    #[test]
    fn every_single_byte_change_is_refused_or_loads_a_well_formed_graph() {
        let g = graph(Precision::F16, 60);
        g.remove(7).expect("remove");
        let mut present = vec![true; 60];
        present[7] = false;
        let bytes = g.to_bytes().expect("bytes");
        check_serialized(&bytes, &params(Precision::F16), &present).expect("valid");
        // Any byte changed: either refused, or still a graph usearch can
        // read safely (vector bytes and unused link entries are free).
        for at in 0..bytes.len() {
            for delta in [1u8, 0x80] {
                let mut b = bytes.clone();
                b[at] = b[at].wrapping_add(delta);
                if check_serialized(&b, &params(Precision::F16), &present).is_ok() {
                    let loaded =
                        UsearchGraph::load(params(Precision::F16), Bytes::Owned(b), &[], &present)
                            .expect("a checked graph loads");
                    let found = loaded.search(&unit(3), 5, 16, None).expect("search");
                    assert!(found.iter().all(|&s| s < 60 && s != 7));
                }
            }
        }
        // Truncated anywhere: refused.
        for len in 0..bytes.len() {
            assert!(check_serialized(&bytes[..len], &params(Precision::F16), &present).is_err());
        }
        // Other parameters: refused.
        assert!(check_serialized(&bytes, &params(Precision::F32), &present).is_err());
        assert!(check_serialized(&bytes, &params(Precision::F16), &[true; 60]).is_err());
    }

    #[test]
    fn searches_find_the_nearest_at_every_precision() {
        for p in Precision::ALL {
            let g = graph(p, 200);
            for i in [0, 50, 199] {
                let found = g.search(&unit(i), 1, 32, None).expect("search");
                assert_eq!(found.first(), Some(&i), "{p}");
            }
            let even = |s: usize| s % 2 == 0;
            let found = g.search(&unit(51), 5, 32, Some(&even)).expect("search");
            assert!(!found.is_empty() && found.iter().all(|s| s % 2 == 0), "{p}");
        }
    }

    #[test]
    fn a_panicking_filter_keeps_nothing_and_does_not_cross_into_cpp() {
        let g = graph(Precision::F32, 50);
        let boom = |_: usize| -> bool { panic!("filter") };
        let found = g.search(&unit(1), 5, 16, Some(&boom)).expect("search");
        assert!(found.is_empty());
    }

    #[test]
    fn i8_codes_use_the_whole_range() {
        let c = i8_codes(&[0.1, -0.05, 0.0, 0.02]);
        assert_eq!(c, vec![127, -64, 0, 25]);
    }
}
