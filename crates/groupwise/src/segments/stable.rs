//! Stable segment ids across rebuilds.
//!
//! Every pair of (new, old) segments that share members is scored by the
//! Jaccard overlap of their member sets; pairs are taken greedily from the
//! highest overlap down, each segment matched at most once, as long as the
//! overlap reaches [`SegmentConfig::min_overlap`](super::SegmentConfig::min_overlap).
//! A matched new segment takes the old id; the others get ids never used
//! before. Churn is the share of users present in both builds whose segment
//! id changed.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{SegmentId, Segments};

/// An old segment id carried over by a rebuild.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeptSegment {
    /// The id, the same before and after.
    pub id: SegmentId,
    /// Jaccard overlap of the old and new member sets.
    pub overlap: f64,
}

/// What a rebuild changed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RebuildReport {
    /// Share of users segmented both before and after whose segment id changed.
    pub churn: f64,
    /// Users segmented both before and after.
    pub users_compared: usize,
    /// Segments that kept their id.
    pub kept: Vec<KeptSegment>,
    /// Ids given to segments that match no old one.
    pub created: Vec<SegmentId>,
    /// Old ids no new segment took.
    pub retired: Vec<SegmentId>,
}

impl Segments {
    /// `(old segment, new segment, users in both)` for every pair of a
    /// segment here and one in `newer` that share users: what
    /// [`SlateBandit::migrate_segments`](crate::bandit::SlateBandit::migrate_segments)
    /// needs to carry learning over a rebuild.
    pub fn overlaps(&self, newer: &Segments) -> Vec<(SegmentId, SegmentId, usize)> {
        let mut counts: HashMap<(SegmentId, SegmentId), usize> = HashMap::new();
        for (user, &old) in &self.member_of {
            if let Some(&new) = newer.member_of.get(user) {
                *counts.entry((old, new)).or_insert(0) += 1;
            }
        }
        let mut out: Vec<(SegmentId, SegmentId, usize)> =
            counts.into_iter().map(|((a, b), n)| (a, b, n)).collect();
        out.sort_unstable();
        out
    }

    /// Renumbers these (freshly built) segments so that each one overlapping
    /// an old segment enough keeps the old id; reports the churn.
    pub(super) fn inherit_ids(&mut self, previous: &Segments) -> RebuildReport {
        let size_new = |s: SegmentId| self.segments.get(&s).map_or(0, |x| x.members.len());
        let size_old = |s: SegmentId| previous.segments.get(&s).map_or(0, |x| x.members.len());
        let mut pairs: Vec<(f64, SegmentId, SegmentId)> = previous
            .overlaps(self)
            .into_iter()
            .map(|(old, new, both)| {
                let union = size_new(new) + size_old(old) - both;
                (both as f64 / union.max(1) as f64, new, old)
            })
            .filter(|&(j, _, _)| j >= self.config.min_overlap)
            .collect();
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
        let mut id_of: HashMap<SegmentId, SegmentId> = HashMap::new();
        let mut taken: HashSet<SegmentId> = HashSet::new();
        let mut kept = Vec::new();
        for (j, new, old) in pairs {
            if id_of.contains_key(&new) || taken.contains(&old) {
                continue;
            }
            id_of.insert(new, old);
            taken.insert(old);
            kept.push(KeptSegment {
                id: old,
                overlap: j,
            });
        }
        // Unmatched segments, largest first (they are keyed by size rank),
        // get fresh ids.
        let mut next_id = previous.next_id;
        let mut created = Vec::new();
        for &new in self.segments.keys() {
            if let std::collections::hash_map::Entry::Vacant(e) = id_of.entry(new) {
                e.insert(next_id);
                created.push(next_id);
                next_id += 1;
            }
        }
        let old_segments = std::mem::take(&mut self.segments);
        self.segments = old_segments
            .into_iter()
            .map(|(s, seg)| (id_of[&s], seg))
            .collect::<BTreeMap<_, _>>();
        for s in self.member_of.values_mut() {
            *s = id_of[s];
        }
        self.next_id = next_id;
        kept.sort_by_key(|k| k.id);
        let retired = previous
            .segments
            .keys()
            .copied()
            .filter(|s| !taken.contains(s))
            .collect();
        let mut compared = 0usize;
        let mut changed = 0usize;
        for (user, &new) in &self.member_of {
            if let Some(&old) = previous.member_of.get(user) {
                compared += 1;
                if new != old {
                    changed += 1;
                }
            }
        }
        RebuildReport {
            churn: if compared == 0 {
                0.0
            } else {
                changed as f64 / compared as f64
            },
            users_compared: compared,
            kept,
            created,
            retired,
        }
    }
}
