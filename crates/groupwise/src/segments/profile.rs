//! Segment profiles: what a person needs to name a segment.
//!
//! * size, and cohesion (mean cosine of members to the centroid);
//! * representative users: the members closest to the centroid;
//! * with interactions, the **items** most over-represented: the share of the
//!   segment's users who interacted with the item, divided by that share in the
//!   whole segmented population (lift), with the number of segment users
//!   behind it (support);
//! * with item metadata too, the **categories** most over-represented: the
//!   share of the segment's interactions that fall in the category over the
//!   population's share (interaction-level, because nearly every user touches
//!   a broad category like "Drama" at least once).
//!
//! Items and categories below [`ProfileOptions::min_support`] are left out,
//! and the rest are ranked by a *conservative* lift: the lower end of the 95 %
//! Wilson interval of the segment share, over the population share. A lift of
//! 6 from five users describes those five users; a lift of 2.5 from 80 users
//! describes the segment, and ranks first.

use std::collections::{HashMap, HashSet};

use crate::data::{ItemMetadata, UserHistory};
use crate::error::Result;
use crate::index::{Neighbor, UserIndex};
use crate::vector::dot;

use super::{SegmentId, Segments};

/// Behaviour that describes segments.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour<'a> {
    /// Users' interaction histories (users without a segment are ignored).
    pub histories: &'a [UserHistory],
    /// Item categories and titles, for category lifts and readable item labels.
    pub items: Option<&'a ItemMetadata>,
}

/// Options of [`Segments::profiles`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileOptions {
    /// Representative users per segment (default 5).
    pub representatives: usize,
    /// Over-represented items per segment (default 10).
    pub top_items: usize,
    /// Over-represented categories per segment (default 5).
    pub top_categories: usize,
    /// Least support for an item (segment users) or a category (segment
    /// interactions) to be listed (default 5).
    pub min_support: u64,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        ProfileOptions {
            representatives: 5,
            top_items: 10,
            top_categories: 5,
            min_support: 5,
        }
    }
}

/// An item or category over-represented in a segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Lift {
    /// Item id, or category index into `ItemMetadata::category_names`.
    pub key: u64,
    /// Item title (or id) or category name.
    pub label: String,
    /// Segment share over population share (> 1: over-represented).
    pub lift: f64,
    /// The lower end of the 95 % Wilson interval of the segment share over
    /// the population share: the ranking key (small supports count less).
    pub lift_lower: f64,
    /// Segment users (items) or segment interactions (categories) behind it.
    pub support: u64,
    /// Share in the segment.
    pub segment_share: f64,
    /// Share in the population.
    pub population_share: f64,
}

/// A description of one segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentProfile {
    /// The segment.
    pub id: SegmentId,
    /// Members.
    pub size: usize,
    /// Mean cosine similarity of the members (still indexed) to the centroid.
    pub cohesion: f64,
    /// Members closest to the centroid, most central first.
    pub representatives: Vec<Neighbor>,
    /// Most over-represented items, highest lift first (empty without behaviour).
    pub top_items: Vec<Lift>,
    /// Most over-represented categories, highest lift first (empty without
    /// item metadata).
    pub top_categories: Vec<Lift>,
}

/// Per-segment counts behind the lifts.
#[derive(Default)]
struct Counts {
    users: u64,
    interactions: u64,
    item_users: HashMap<u64, u64>,
    category: HashMap<u32, u64>,
}

impl Segments {
    /// Profiles of every served segment, by increasing id. `index` supplies
    /// the members' vectors (cohesion, representatives); `behaviour`, when
    /// given, the item and category lifts.
    pub fn profiles(
        &self,
        index: &UserIndex,
        behaviour: Option<&Behaviour<'_>>,
        options: &ProfileOptions,
    ) -> Result<Vec<SegmentProfile>> {
        let mut counts: HashMap<SegmentId, Counts> = HashMap::new();
        let mut population = Counts::default();
        if let Some(b) = behaviour {
            for h in b.histories {
                let Some(s) = self.segment_of(h.user) else {
                    continue;
                };
                let seg = counts.entry(s).or_default();
                seg.users += 1;
                population.users += 1;
                let distinct: HashSet<u64> = h.items.iter().copied().collect();
                for item in distinct {
                    *seg.item_users.entry(item).or_insert(0) += 1;
                    *population.item_users.entry(item).or_insert(0) += 1;
                }
                if let Some(meta) = b.items {
                    for &item in &h.items {
                        for &c in meta.categories(item) {
                            *seg.category.entry(c).or_insert(0) += 1;
                            *population.category.entry(c).or_insert(0) += 1;
                            seg.interactions += 1;
                            population.interactions += 1;
                        }
                    }
                }
            }
        }
        let empty = Counts::default();
        self.ids()
            .into_iter()
            .map(|id| {
                let c = counts.get(&id).unwrap_or(&empty);
                self.profile_of(id, index, c, &population, behaviour, options)
            })
            .collect()
    }

    /// The profile of one served segment without behaviour: size, cohesion
    /// and representatives (no lifts). Unknown segments and segments below
    /// the privacy floor are errors, as everywhere.
    pub fn profile(
        &self,
        index: &UserIndex,
        id: SegmentId,
        options: &ProfileOptions,
    ) -> Result<SegmentProfile> {
        self.size(id)?;
        let empty = Counts::default();
        self.profile_of(id, index, &empty, &empty, None, options)
    }

    fn profile_of(
        &self,
        id: SegmentId,
        index: &UserIndex,
        seg: &Counts,
        population: &Counts,
        behaviour: Option<&Behaviour<'_>>,
        options: &ProfileOptions,
    ) -> Result<SegmentProfile> {
        let centroid = self.centroid(id)?;
        let members = &self.segments[&id].members;
        let (cohesion, representatives) = index.with_population(|p| {
            let mut sims: Vec<Neighbor> = members
                .iter()
                .filter_map(|&u| {
                    p.slot_of(u).map(|s| Neighbor {
                        id: u,
                        similarity: dot(p.vector(s), centroid),
                    })
                })
                .collect();
            let cohesion = sims.iter().map(|n| f64::from(n.similarity)).sum::<f64>()
                / sims.len().max(1) as f64;
            sims.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then(a.id.cmp(&b.id)));
            sims.truncate(options.representatives);
            (cohesion, sims)
        });
        let meta = behaviour.and_then(|b| b.items);
        let top_items = top_lifts(
            seg.item_users.iter().map(|(&k, &v)| (k, v)),
            seg.users,
            |k| population.item_users.get(&k).copied().unwrap_or(0),
            population.users,
            options.min_support,
            options.top_items,
            |k| {
                meta.and_then(|m| m.title(k))
                    .map_or_else(|| k.to_string(), str::to_string)
            },
        );
        let top_categories = match meta {
            Some(m) => top_lifts(
                seg.category.iter().map(|(&k, &v)| (u64::from(k), v)),
                seg.interactions,
                |k| population.category.get(&(k as u32)).copied().unwrap_or(0),
                population.interactions,
                options.min_support,
                options.top_categories,
                |k| {
                    m.category_names
                        .get(k as usize)
                        .cloned()
                        .unwrap_or_else(|| k.to_string())
                },
            ),
            None => Vec::new(),
        };
        Ok(SegmentProfile {
            id,
            size: members.len(),
            cohesion,
            representatives,
            top_items,
            top_categories,
        })
    }
}

/// The `top` keys by conservative lift (ties: more support, then lower key)
/// among those with at least `min_support` segment count and lift above 1.
fn top_lifts(
    segment: impl Iterator<Item = (u64, u64)>,
    segment_total: u64,
    population: impl Fn(u64) -> u64,
    population_total: u64,
    min_support: u64,
    top: usize,
    label: impl Fn(u64) -> String,
) -> Vec<Lift> {
    if segment_total == 0 || population_total == 0 {
        return Vec::new();
    }
    let mut lifts: Vec<Lift> = segment
        .filter(|&(_, n)| n >= min_support)
        .filter_map(|(key, n)| {
            let segment_share = n as f64 / segment_total as f64;
            let population_share = population(key) as f64 / population_total as f64;
            let lift = segment_share / population_share;
            let lift_lower = wilson_lower(n, segment_total) / population_share;
            (population_share > 0.0 && lift > 1.0).then(|| Lift {
                key,
                label: String::new(),
                lift,
                lift_lower,
                support: n,
                segment_share,
                population_share,
            })
        })
        .collect();
    lifts.sort_by(|a, b| {
        b.lift_lower
            .total_cmp(&a.lift_lower)
            .then(b.support.cmp(&a.support))
            .then(a.key.cmp(&b.key))
    });
    lifts.truncate(top);
    for l in &mut lifts {
        l.label = label(l.key);
    }
    lifts
}

/// Lower end of the 95 % Wilson score interval for `k` successes in `n` trials.
fn wilson_lower(k: u64, n: u64) -> f64 {
    const Z: f64 = 1.959_963_984_540_054;
    let n = n as f64;
    let p = k as f64 / n;
    let z2 = Z * Z;
    let centre = p + z2 / (2.0 * n);
    let spread = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - spread) / (1.0 + z2 / n)).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_lower_bound_matches_the_textbook_value() {
        // 8 of 10: the 95 % Wilson interval is [0.4902, 0.9433].
        assert!((wilson_lower(8, 10) - 0.490_16).abs() < 1e-4);
        assert_eq!(wilson_lower(0, 10), 0.0);
    }

    #[test]
    fn well_supported_lifts_rank_above_large_lifts_from_few_users() {
        // Segment of 100 users: item 1 held by 5 (pop share 2 %: lift 2.5),
        // item 2 by 60 (pop share 25 %: lift 2.4).
        let seg = [(1u64, 5u64), (2, 60)];
        let pop = |k: u64| if k == 1 { 20 } else { 250 };
        let top = top_lifts(seg.into_iter(), 100, pop, 1000, 5, 10, |k| k.to_string());
        assert_eq!(top.len(), 2);
        assert!(top[1].lift > top[0].lift, "raw lift favours the rare item");
        assert_eq!(
            top[0].key, 2,
            "the conservative lift ranks the supported one first"
        );
        assert!((top[0].lift - 2.4).abs() < 1e-12);
    }
}
