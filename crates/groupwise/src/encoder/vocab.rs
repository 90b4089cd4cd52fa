//! Item vocabulary: the host's stable item ids → the model's row indices.
//!
//! Lookups sit on the encode hot path (one per item of every history), so the
//! table is a plain array when the ids are dense enough (MovieLens-style
//! numeric ids: one indexed load per item), and an Fx hash map otherwise.

use rustc_hash::FxHashMap;

/// At most this many array slots per known id before falling back to hashing.
const MAX_SPREAD: u64 = 4;
/// Never allocate more than this many array slots (128 MiB of i64).
const MAX_SLOTS: u64 = 1 << 24;

/// Item id → model index.
#[derive(Debug, Clone)]
pub(crate) enum Vocab {
    /// `table[id - base]`, −1 when unknown.
    Dense {
        base: u64,
        table: Vec<i64>,
        len: usize,
    },
    /// Sparse or huge ids.
    Hashed(FxHashMap<u64, i64>),
}

impl Vocab {
    pub fn from_pairs(pairs: FxHashMap<u64, i64>) -> Self {
        let (Some(&min), Some(&max)) = (pairs.keys().min(), pairs.keys().max()) else {
            return Vocab::Hashed(pairs);
        };
        let span = max - min + 1;
        if span <= MAX_SLOTS && span <= MAX_SPREAD * pairs.len() as u64 + 1024 {
            let mut table = vec![-1i64; span as usize];
            for (&id, &ix) in &pairs {
                table[(id - min) as usize] = ix;
            }
            Vocab::Dense {
                base: min,
                table,
                len: pairs.len(),
            }
        } else {
            Vocab::Hashed(pairs)
        }
    }

    #[inline]
    pub fn get(&self, id: u64) -> Option<i64> {
        match self {
            Vocab::Dense { base, table, .. } => id
                .checked_sub(*base)
                .and_then(|o| table.get(usize::try_from(o).ok()?))
                .copied()
                .filter(|&ix| ix >= 0),
            Vocab::Hashed(m) => m.get(&id).copied(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Vocab::Dense { len, .. } => *len,
            Vocab::Hashed(m) => m.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_and_hashed_tables_answer_alike() {
        let dense: FxHashMap<u64, i64> = (10..60u64).map(|id| (id, id as i64 - 8)).collect();
        let sparse: FxHashMap<u64, i64> = [(5u64, 2i64), (1 << 40, 3), (u64::MAX, 4)]
            .into_iter()
            .collect();
        let d = Vocab::from_pairs(dense);
        assert!(matches!(d, Vocab::Dense { .. }));
        assert_eq!(
            (d.get(10), d.get(59), d.get(9), d.get(60), d.get(u64::MAX)),
            (Some(2), Some(51), None, None, None)
        );
        let h = Vocab::from_pairs(sparse);
        assert!(matches!(h, Vocab::Hashed(_)));
        assert_eq!(
            (h.get(5), h.get(1 << 40), h.get(u64::MAX), h.get(6)),
            (Some(2), Some(3), Some(4), None)
        );
        assert_eq!((d.len(), h.len()), (50, 3));
    }
}
