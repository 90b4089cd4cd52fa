//! Data-driven segments: groups of users with shared affinity that nobody
//! defined in advance (UNICON's "data-driven" segmentation), kept usable in
//! production.
//!
//! * **Discover** ([`Segments::build`]): communities of the users' kNN graph
//!   ([`community`]: Leiden, or Louvain) or spherical k-means ([`kmeans`]),
//!   both seeded.
//! * **Privacy floor**: groups below [`SegmentConfig::min_size`] are merged into
//!   their most similar group, and no segment below the floor is ever served.
//! * **Describe** ([`Segments::profiles`]): size, cohesion, representative
//!   users, and the items and categories most over-represented in the segment.
//! * **Assign online** ([`Segments::place`], [`Segments::assign`]): a new or
//!   updated user joins the segment of its nearest centroid (or a kNN vote)
//!   without a rebuild. Centroids stay those of the last build, so one user's
//!   arrival never moves a segment; rebuild to refresh them.
//! * **Stable ids** ([`Segments::rebuild`]): a rebuild warm-starts from the
//!   current segments and matches new segments to old ones by member overlap,
//!   so ids persist where segments barely changed; the report gives the churn.
//! * **Evaluate** ([`metrics`]): NMI, ARI, silhouette; modularity on the graph.

pub mod community;
mod floor;
pub mod kmeans;
pub mod metrics;
mod profile;
mod stable;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use community::{
    detect, detect_from, renumber, Algorithm, Communities, CommunityConfig, WeightedGraph,
};
pub use kmeans::{spherical_kmeans, spherical_kmeans_from, KMeans, KMeansConfig};
pub use profile::{Behaviour, Lift, ProfileOptions, SegmentProfile};
pub use stable::{KeptSegment, RebuildReport};

use crate::error::{Error, Result};
use crate::graph::KnnGraph;
use crate::index::{Filter, SearchOptions, UserIndex};
use crate::limits::{
    self, MAX_COMMUNITY_PASSES, MAX_EF, MAX_KMEANS_CLUSTERS, MAX_KMEANS_INITS,
    MAX_KMEANS_ITERATIONS, MAX_NEIGHBOURS, MAX_RESOLUTION,
};
use crate::vector::{dot, normalized};

/// A segment's id. Ids are never reused: a rebuild keeps the id of a segment
/// that barely changed and gives new segments ids never seen before.
pub type SegmentId = u32;

/// How segments are discovered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Method {
    /// Communities of the kNN graph (each user linked to its `k` nearest users,
    /// symmetrised, weighted by cosine similarity). The number of segments
    /// follows from the data and the resolution.
    Graph {
        /// Leiden (default) or Louvain.
        algorithm: Algorithm,
        /// Neighbours per user in the graph (default 15; 1..=[`MAX_NEIGHBOURS`]).
        k: usize,
        /// Resolution γ (default 1.0; in (0, [`MAX_RESOLUTION`]]); larger
        /// gives more, smaller segments.
        resolution: f64,
        /// Passes of the algorithm (default 2; 1..=[`MAX_COMMUNITY_PASSES`]).
        iterations: usize,
        /// Search width for the graph's neighbour lists (`None`: the index's
        /// default; 1..=[`MAX_EF`]; raise it for large populations, see
        /// BENCHMARKS.md).
        ef: Option<usize>,
    },
    /// Spherical k-means: exactly `k` groups before the privacy floor merges any.
    KMeans {
        /// Number of clusters (1..=[`MAX_KMEANS_CLUSTERS`]).
        k: usize,
        /// Maximum Lloyd iterations (default 100; 1..=[`MAX_KMEANS_ITERATIONS`]).
        max_iter: usize,
        /// Independent initialisations, best kept (default 3;
        /// 1..=[`MAX_KMEANS_INITS`]: one run of Lloyd's algorithm lands in a
        /// poor local optimum often enough to matter on real data).
        n_init: usize,
    },
}

impl Method {
    /// Leiden communities of a 15-NN graph at resolution 1.
    pub fn leiden() -> Self {
        Method::Graph {
            algorithm: Algorithm::Leiden,
            k: 15,
            resolution: 1.0,
            iterations: 2,
            ef: None,
        }
    }

    /// Louvain communities of a 15-NN graph at resolution 1.
    pub fn louvain() -> Self {
        Method::Graph {
            algorithm: Algorithm::Louvain,
            k: 15,
            resolution: 1.0,
            iterations: 2,
            ef: None,
        }
    }

    /// Spherical k-means with `k` clusters.
    pub fn kmeans(k: usize) -> Self {
        Method::KMeans {
            k,
            max_iter: 100,
            n_init: 3,
        }
    }

    /// A short name: "leiden", "louvain" or "kmeans".
    pub fn name(&self) -> &'static str {
        match self {
            Method::Graph {
                algorithm: Algorithm::Leiden,
                ..
            } => "leiden",
            Method::Graph {
                algorithm: Algorithm::Louvain,
                ..
            } => "louvain",
            Method::KMeans { .. } => "kmeans",
        }
    }
}

/// How a user is assigned online, between rebuilds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum AssignRule {
    /// The segment whose centroid is most similar (default; O(segments)).
    Centroid,
    /// The segment with the largest summed similarity among the user's `k`
    /// nearest indexed users that have a segment; falls back to the centroid
    /// rule when none has. Follows the graph method's notion of a segment more
    /// closely, at the cost of one index search.
    KnnVote {
        /// Neighbours that vote (1..=[`MAX_NEIGHBOURS`]).
        k: usize,
    },
}

/// Parameters of segment discovery and serving.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegmentConfig {
    /// Discovery method (default: Leiden on a 15-NN graph).
    pub method: Method,
    /// Privacy floor: the minimum size of a served segment (default 50; at
    /// least 1).
    pub min_size: usize,
    /// Online assignment rule (default: nearest centroid).
    pub assign: AssignRule,
    /// Least Jaccard overlap of members for a rebuilt segment to keep an old
    /// segment's id (default 0.5: most members shared; in (0, 1]).
    pub min_overlap: f64,
    /// Seed of every random choice (any value).
    pub seed: u64,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        SegmentConfig {
            method: Method::leiden(),
            min_size: 50,
            assign: AssignRule::Centroid,
            min_overlap: 0.5,
            seed: 42,
        }
    }
}

impl SegmentConfig {
    /// Checks every setting against its documented range (see the field
    /// docs); errors name the key as in an engine config
    /// (`segments.method.Graph.k`).
    pub(crate) fn validate(&self) -> Result<()> {
        limits::count("segments.min_size", self.min_size, 1..=usize::MAX)?;
        limits::real("segments.min_overlap", self.min_overlap, 0.0, true, 1.0)?;
        if let AssignRule::KnnVote { k } = self.assign {
            limits::count("segments.assign.KnnVote.k", k, 1..=MAX_NEIGHBOURS)?;
        }
        match &self.method {
            Method::Graph {
                k,
                resolution,
                iterations,
                ef,
                ..
            } => {
                limits::count("segments.method.Graph.k", *k, 1..=MAX_NEIGHBOURS)?;
                limits::real(
                    "segments.method.Graph.resolution",
                    *resolution,
                    0.0,
                    true,
                    MAX_RESOLUTION,
                )?;
                limits::count(
                    "segments.method.Graph.iterations",
                    *iterations,
                    1..=MAX_COMMUNITY_PASSES,
                )?;
                if let Some(ef) = ef {
                    limits::count("segments.method.Graph.ef", *ef, 1..=MAX_EF)?;
                }
            }
            Method::KMeans {
                k,
                max_iter,
                n_init,
            } => {
                limits::count("segments.method.KMeans.k", *k, 1..=MAX_KMEANS_CLUSTERS)?;
                limits::count(
                    "segments.method.KMeans.max_iter",
                    *max_iter,
                    1..=MAX_KMEANS_ITERATIONS,
                )?;
                limits::count(
                    "segments.method.KMeans.n_init",
                    *n_init,
                    1..=MAX_KMEANS_INITS,
                )?;
            }
        }
        Ok(())
    }
}

/// What a build did and measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildReport {
    /// "leiden", "louvain" or "kmeans".
    pub method: String,
    /// Users segmented.
    pub users: usize,
    /// Segments served.
    pub segments: usize,
    /// Groups the method found, before the privacy floor.
    pub groups_found: usize,
    /// Groups merged away by the privacy floor.
    pub merged_groups: usize,
    /// Users whose group was merged into another by the privacy floor, each
    /// counted once (at most `users`), even when merges cascade.
    pub merged_users: usize,
    /// Undirected edges of the kNN graph (graph method).
    pub graph_edges: Option<usize>,
    /// Modularity of the served segments on the kNN graph (graph method).
    pub modularity: Option<f64>,
    /// Mean cosine of users to their segment centroid.
    pub cohesion: f64,
    /// Seconds spent building the kNN graph (graph method).
    pub graph_seconds: f64,
    /// Seconds spent clustering (communities or k-means) and merging.
    pub cluster_seconds: f64,
}

/// One served segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Segment {
    /// Unit centroid at the last build.
    centroid: Vec<f32>,
    members: BTreeSet<u64>,
}

/// Where [`Segments::place`] or [`Segments::assign`] put a user.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// The segment.
    pub segment: SegmentId,
    /// Cosine similarity of the user to the segment's centroid.
    pub similarity: f32,
}

/// What [`Segments::remove`] changed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Removal {
    /// The segment the user left (`None` if the user had none).
    pub segment: Option<SegmentId>,
    /// Set when that segment fell below the privacy floor and was dissolved:
    /// its remaining members, each with the segment it moved to.
    pub dissolved: Option<Vec<(u64, SegmentId)>>,
}

/// One page of a segment's members, in increasing user id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembersPage {
    /// Members on this page.
    pub members: Vec<u64>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next: Option<u64>,
}

/// The current segmentation: segments, their centroids and members, with
/// membership both ways. Serializable (snapshots). Not internally locked:
/// share it behind a `RwLock` (reads are `&self`, updates `&mut self`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segments {
    config: SegmentConfig,
    dim: usize,
    segments: BTreeMap<SegmentId, Segment>,
    member_of: HashMap<u64, SegmentId>,
    next_id: SegmentId,
    report: BuildReport,
}

/// Live users of the index in a fixed order, with their unit vectors.
struct Snapshot {
    users: Vec<u64>,
    data: Vec<f32>,
}

fn snapshot(index: &UserIndex, users: Vec<u64>) -> Snapshot {
    let dim = index.dim();
    index.with_population(|p| {
        let mut kept = Vec::with_capacity(users.len());
        let mut data = Vec::with_capacity(users.len() * dim);
        for u in users {
            if let Some(s) = p.slot_of(u) {
                kept.push(u);
                data.extend_from_slice(p.vector(s));
            }
        }
        Snapshot { users: kept, data }
    })
}

impl Segments {
    /// Discovers segments among the users of `index`.
    pub fn build(index: &UserIndex, config: SegmentConfig) -> Result<Self> {
        Self::discover(index, config, None)
    }

    /// Discovers segments again (same configuration), warm-started from these
    /// segments, and keeps the id of every new segment whose members overlap
    /// an old one's by at least [`SegmentConfig::min_overlap`] (Jaccard).
    pub fn rebuild(&self, index: &UserIndex) -> Result<(Segments, RebuildReport)> {
        let mut next = Self::discover(index, self.config.clone(), Some(self))?;
        let report = next.inherit_ids(self);
        Ok((next, report))
    }

    fn discover(
        index: &UserIndex,
        config: SegmentConfig,
        previous: Option<&Segments>,
    ) -> Result<Self> {
        config.validate()?;
        let dim = index.dim();
        if let Some(p) = previous {
            if p.dim != dim {
                return Err(Error::DimensionMismatch {
                    what: "index (against the previous segments)".into(),
                    expected: p.dim,
                    got: dim,
                });
            }
        }
        let population = index.len();
        if population < config.min_size {
            return Err(Error::BelowPrivacyFloor {
                users: population,
                floor: config.min_size,
            });
        }
        let started = Instant::now();
        let mut graph_seconds = 0.0;
        let (snap, mut labels, graph) = match &config.method {
            Method::Graph {
                algorithm,
                k,
                resolution,
                iterations,
                ef,
            } => {
                let options = SearchOptions {
                    ef: *ef,
                    ..Default::default()
                };
                let knn = KnnGraph::build(index, *k, &options)?;
                let snap = snapshot(index, knn.users().to_vec());
                if snap.users.len() != knn.len() {
                    return Err(Error::invalid(
                        "index",
                        "users were deleted while the kNN graph was built; build again",
                    ));
                }
                let graph = WeightedGraph::from_knn(&knn);
                graph_seconds = started.elapsed().as_secs_f64();
                let communities_config = CommunityConfig {
                    algorithm: *algorithm,
                    resolution: *resolution,
                    iterations: *iterations,
                    seed: config.seed,
                    ..Default::default()
                };
                let initial = warm_labels(&snap.users, previous);
                let found = detect_from(&graph, &communities_config, &initial)?;
                (snap, found.membership, Some(graph))
            }
            Method::KMeans {
                k,
                max_iter,
                n_init,
            } => {
                let snap = snapshot(index, index.ids());
                let kconfig = KMeansConfig {
                    k: (*k).min(snap.users.len()),
                    max_iter: *max_iter,
                    n_init: *n_init,
                    seed: config.seed,
                    ..KMeansConfig::new(*k)
                };
                let found = match previous {
                    Some(p) => {
                        let initial: Vec<f32> = p
                            .segments
                            .values()
                            .take(kconfig.k)
                            .flat_map(|s| s.centroid.iter().copied())
                            .collect();
                        spherical_kmeans_from(&snap.data, dim, &kconfig, &initial)?
                    }
                    None => spherical_kmeans(&snap.data, dim, &kconfig)?,
                };
                (snap, found.labels, None)
            }
        };
        let floor_report = floor::enforce(
            &mut labels,
            &snap.data,
            dim,
            config.min_size,
            graph.as_ref(),
        );
        let modularity = match (&graph, &config.method) {
            (Some(g), Method::Graph { resolution, .. }) => Some(g.modularity(&labels, *resolution)),
            _ => None,
        };
        let mut segments = Self::assemble(config, dim, &snap, &labels);
        segments.report.groups_found = floor_report.groups_before;
        segments.report.merged_groups = floor_report.merged_groups;
        segments.report.merged_users = floor_report.merged_users;
        segments.report.graph_edges = graph.as_ref().map(WeightedGraph::edge_count);
        segments.report.modularity = modularity;
        segments.report.graph_seconds = graph_seconds;
        segments.report.cluster_seconds = started.elapsed().as_secs_f64() - graph_seconds;
        Ok(segments)
    }

    /// Segments from labels `0..g`: centroids, members, ids by decreasing size.
    fn assemble(config: SegmentConfig, dim: usize, snap: &Snapshot, labels: &[u32]) -> Self {
        let groups = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
        let mut sums = vec![0.0f64; groups * dim];
        let mut members: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); groups];
        for (v, &l) in labels.iter().enumerate() {
            let l = l as usize;
            members[l].insert(snap.users[v]);
            for (s, &x) in sums[l * dim..(l + 1) * dim]
                .iter_mut()
                .zip(&snap.data[v * dim..(v + 1) * dim])
            {
                *s += f64::from(x);
            }
        }
        let mut order: Vec<usize> = (0..groups).collect();
        // Largest first; ties by smallest member id, so ids do not depend on labels.
        order.sort_by_key(|&g| {
            (
                std::cmp::Reverse(members[g].len()),
                members[g].first().copied(),
            )
        });
        let mut id_of = vec![0 as SegmentId; groups];
        let mut segments = BTreeMap::new();
        let mut member_of = HashMap::with_capacity(labels.len());
        for (id, &g) in order.iter().enumerate() {
            let id = id as SegmentId;
            id_of[g] = id;
            let sum = &sums[g * dim..(g + 1) * dim];
            let norm = norm64(sum);
            let centroid: Vec<f32> = sum.iter().map(|&x| (x / norm) as f32).collect();
            for &u in &members[g] {
                member_of.insert(u, id);
            }
            segments.insert(
                id,
                Segment {
                    centroid,
                    members: std::mem::take(&mut members[g]),
                },
            );
        }
        let cohesion = labels
            .iter()
            .enumerate()
            .map(|(v, &l)| {
                let c = &segments[&id_of[l as usize]].centroid;
                f64::from(dot(&snap.data[v * dim..(v + 1) * dim], c))
            })
            .sum::<f64>()
            / labels.len().max(1) as f64;
        Segments {
            report: BuildReport {
                method: config.method.name().into(),
                users: labels.len(),
                segments: groups,
                groups_found: groups,
                merged_groups: 0,
                merged_users: 0,
                graph_edges: None,
                modularity: None,
                cohesion,
                graph_seconds: 0.0,
                cluster_seconds: 0.0,
            },
            config,
            dim,
            next_id: groups as SegmentId,
            segments,
            member_of,
        }
    }

    /// The configuration the segments were built with.
    pub fn config(&self) -> &SegmentConfig {
        &self.config
    }

    /// What the last build did and measured.
    pub fn report(&self) -> &BuildReport {
        &self.report
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of served segments.
    pub fn len(&self) -> usize {
        self.served().count()
    }

    /// True when no segment is served.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids of the served segments, increasing.
    pub fn ids(&self) -> Vec<SegmentId> {
        self.served().map(|(&id, _)| id).collect()
    }

    /// Segments at or above the privacy floor.
    fn served(&self) -> impl Iterator<Item = (&SegmentId, &Segment)> {
        self.segments
            .iter()
            .filter(|(_, s)| s.members.len() >= self.config.min_size)
    }

    fn get(&self, id: SegmentId) -> Result<&Segment> {
        match self.segments.get(&id) {
            Some(s) if s.members.len() >= self.config.min_size => Ok(s),
            Some(s) => Err(Error::BelowPrivacyFloor {
                users: s.members.len(),
                floor: self.config.min_size,
            }),
            None => Err(Error::UnknownSegment(id)),
        }
    }

    /// Number of members of a segment.
    pub fn size(&self, id: SegmentId) -> Result<usize> {
        Ok(self.get(id)?.members.len())
    }

    /// Unit centroid of a segment (from the last build).
    pub fn centroid(&self, id: SegmentId) -> Result<&[f32]> {
        Ok(&self.get(id)?.centroid)
    }

    /// The served segment of a user (`None` if the user has none).
    pub fn segment_of(&self, user: u64) -> Option<SegmentId> {
        let id = *self.member_of.get(&user)?;
        self.get(id).ok().map(|_| id)
    }

    /// Members of a segment in increasing id order, `limit` at a time, after
    /// user `after` (`None` for the first page). Paging by id stays correct
    /// while users join and leave.
    pub fn members(&self, id: SegmentId, after: Option<u64>, limit: usize) -> Result<MembersPage> {
        let segment = self.get(id)?;
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(a),
            None => std::ops::Bound::Unbounded,
        };
        let mut iter = segment
            .members
            .range((start, std::ops::Bound::Unbounded))
            .copied();
        let members: Vec<u64> = iter.by_ref().take(limit).collect();
        let next = match (iter.next(), members.last()) {
            (Some(_), Some(&last)) => Some(last),
            _ => None,
        };
        Ok(MembersPage { members, next })
    }

    /// Every user with a served segment and that segment, by increasing user id.
    pub fn assignments(&self) -> Vec<(u64, SegmentId)> {
        let mut out: Vec<(u64, SegmentId)> = self
            .member_of
            .iter()
            .filter(|(_, &s)| self.get(s).is_ok())
            .map(|(&u, &s)| (u, s))
            .collect();
        out.sort_unstable();
        out
    }

    /// The served segment whose centroid is most similar to `vector`
    /// (ties to the lower id).
    pub fn nearest(&self, vector: &[f32]) -> Result<Placement> {
        let v = normalized("vector", vector, self.dim)?;
        self.nearest_unit(&v, None).ok_or(Error::EmptyPopulation)
    }

    fn nearest_unit(&self, v: &[f32], except: Option<SegmentId>) -> Option<Placement> {
        let mut best: Option<Placement> = None;
        for (&id, s) in self.served().filter(|(&id, _)| Some(id) != except) {
            let sim = dot(v, &s.centroid);
            if best.is_none_or(|b| sim > b.similarity) {
                best = Some(Placement {
                    segment: id,
                    similarity: sim,
                });
            }
        }
        best
    }

    /// The segment a vector would join under the configured [`AssignRule`],
    /// without recording anything (e.g. for an anonymous session's vector).
    /// `index` supplies the neighbours for [`AssignRule::KnnVote`]; `user`,
    /// when given, is left out of its own vote.
    pub fn assign(
        &self,
        index: &UserIndex,
        vector: &[f32],
        user: Option<u64>,
    ) -> Result<Placement> {
        let v = normalized("vector", vector, self.dim)?;
        if let AssignRule::KnnVote { k } = self.config.assign {
            let deny: std::collections::HashSet<u64> = user.into_iter().collect();
            let options = SearchOptions {
                filter: Some(Filter::Deny(&deny)),
                ..Default::default()
            };
            let mut votes: BTreeMap<SegmentId, f32> = BTreeMap::new();
            for n in index.search(&v, k, &options)? {
                if let Some(s) = self.segment_of(n.id) {
                    *votes.entry(s).or_insert(0.0) += n.similarity.max(0.0);
                }
            }
            let winner = votes
                .iter()
                .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(&s, _)| s);
            if let Some(segment) = winner {
                let similarity = dot(&v, &self.segments[&segment].centroid);
                return Ok(Placement {
                    segment,
                    similarity,
                });
            }
        }
        self.nearest_unit(&v, None).ok_or(Error::EmptyPopulation)
    }

    /// Puts an indexed user (new, or with an updated vector) into a segment
    /// under the configured rule and records it; returns where it went. A user
    /// moving out of a segment may leave it below the floor: see [`Segments::remove`].
    pub fn place(&mut self, index: &UserIndex, user: u64) -> Result<Placement> {
        let vector = index.vector(user).ok_or(Error::UnknownUser(user))?;
        let placement = self.assign(index, &vector, Some(user))?;
        if self.member_of.get(&user) != Some(&placement.segment) {
            self.remove(index, user)?;
            if let Some(s) = self.segments.get_mut(&placement.segment) {
                s.members.insert(user);
                self.member_of.insert(user, placement.segment);
            }
        }
        Ok(placement)
    }

    /// Takes a user out of its segment (e.g. after deleting it from the index).
    /// If the segment falls below the privacy floor it is dissolved: each
    /// remaining member moves to its nearest other segment by centroid (using
    /// its vector in `index`; members no longer indexed just leave). The last
    /// segment is never dissolved; while it is below the floor it is not served.
    pub fn remove(&mut self, index: &UserIndex, user: u64) -> Result<Removal> {
        let Some(id) = self.member_of.remove(&user) else {
            return Ok(Removal::default());
        };
        let mut removal = Removal {
            segment: Some(id),
            dissolved: None,
        };
        let others = self.segments.len().saturating_sub(1);
        let Some(segment) = self.segments.get_mut(&id) else {
            return Ok(removal);
        };
        segment.members.remove(&user);
        if segment.members.len() >= self.config.min_size || others == 0 {
            return Ok(removal);
        }
        let Some(dissolved) = self.segments.remove(&id) else {
            return Ok(removal);
        };
        let mut moved = Vec::with_capacity(dissolved.members.len());
        for member in dissolved.members {
            self.member_of.remove(&member);
            let Some(v) = index.vector(member) else {
                continue;
            };
            if let Some(p) = self.nearest_any(&v) {
                if let Some(s) = self.segments.get_mut(&p) {
                    s.members.insert(member);
                    self.member_of.insert(member, p);
                    moved.push((member, p));
                }
            }
        }
        removal.dissolved = Some(moved);
        Ok(removal)
    }

    /// Takes out every member that is no longer a live user of `index`
    /// (deleted while a build ran), as [`remove`](Self::remove) would;
    /// returns how many left.
    pub fn retain_indexed(&mut self, index: &UserIndex) -> Result<usize> {
        let mut gone: Vec<u64> = self
            .member_of
            .keys()
            .copied()
            .filter(|&u| !index.contains(u))
            .collect();
        gone.sort_unstable();
        for &user in &gone {
            self.remove(index, user)?;
        }
        Ok(gone.len())
    }

    /// Nearest centroid among all segments (served or not): used when
    /// dissolving, where the floor is about to be met again.
    fn nearest_any(&self, v: &[f32]) -> Option<SegmentId> {
        self.segments
            .iter()
            .map(|(&id, s)| (id, dot(v, &s.centroid)))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|(id, _)| id)
    }
}

impl Segments {
    /// Checks segments read from outside (a snapshot) against the index
    /// they serve: the config in its ranges, centroids finite unit (or zero)
    /// vectors of the index's dimension, every member a live user of the index in
    /// exactly one segment (membership recorded both ways), ids below the
    /// next id to give, and the report's numbers finite.
    pub(crate) fn check(&self, index: &UserIndex) -> Result<()> {
        let bad = |problem: String| Err(Error::invalid("segments", problem));
        self.config.validate()?;
        if self.dim != index.dim() {
            return bad(format!(
                "segments of dimension {} over an index of dimension {}",
                self.dim,
                index.dim()
            ));
        }
        // Ids are never reused, so the next one is far from overflowing.
        if self.next_id > SegmentId::MAX / 2 {
            return bad(format!(
                "the next segment id {} is out of range",
                self.next_id
            ));
        }
        let mut members = 0usize;
        for (&id, segment) in &self.segments {
            if id >= self.next_id {
                return bad(format!(
                    "segment {id} is not below the next id to give ({})",
                    self.next_id
                ));
            }
            // A unit vector, or zero where a group's members cancel out.
            let c = &segment.centroid;
            let norm = c
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
                .sqrt();
            if c.len() != self.dim || !((norm - 1.0).abs() < 1e-3 || norm == 0.0) {
                return bad(format!(
                    "the centroid of segment {id} is not a finite unit vector of dimension {}",
                    self.dim
                ));
            }
            for &user in &segment.members {
                if self.member_of.get(&user) != Some(&id) {
                    return bad(format!(
                        "user {user} is a member of segment {id} but not recorded as such"
                    ));
                }
                if !index.contains(user) {
                    return bad(format!(
                        "user {user} of segment {id} is not a live user of the index"
                    ));
                }
            }
            members += segment.members.len();
        }
        if members != self.member_of.len() {
            return bad(format!(
                "{} users are recorded in a segment but segments hold {members}",
                self.member_of.len()
            ));
        }
        let r = &self.report;
        let finite = [r.cohesion, r.graph_seconds, r.cluster_seconds]
            .into_iter()
            .chain(r.modularity)
            .all(f64::is_finite);
        if !finite {
            return bad("the build report holds a non-finite number".into());
        }
        Ok(())
    }
}

/// Ways to damage segments, for the tests of [`Segments::check`].
#[cfg(test)]
impl Segments {
    pub(crate) fn first_centroid_mut(&mut self) -> &mut Vec<f32> {
        &mut self
            .segments
            .values_mut()
            .next()
            .expect("a segment")
            .centroid
    }

    /// Makes `user` a member of the first segment, both ways.
    pub(crate) fn add_member(&mut self, user: u64) {
        let (&id, s) = self.segments.iter_mut().next().expect("a segment");
        s.members.insert(user);
        self.member_of.insert(user, id);
    }

    pub(crate) fn member_of_mut(&mut self) -> &mut HashMap<u64, SegmentId> {
        &mut self.member_of
    }

    pub(crate) fn next_id_mut(&mut self) -> &mut SegmentId {
        &mut self.next_id
    }

    pub(crate) fn report_mut(&mut self) -> &mut BuildReport {
        &mut self.report
    }
}

/// Euclidean norm of a summed vector, never 0 (so dividing by it is safe).
pub(crate) fn norm64(v: &[f64]) -> f64 {
    v.iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE)
}

/// Starting labels for a warm rebuild: each user's previous segment, and a
/// fresh singleton label for users that had none.
fn warm_labels(users: &[u64], previous: Option<&Segments>) -> Vec<u32> {
    let Some(p) = previous else {
        return (0..users.len() as u32).collect();
    };
    let mut fresh = p.next_id;
    users
        .iter()
        .map(|u| match p.member_of.get(u) {
            Some(&s) => s,
            None => {
                fresh += 1;
                fresh
            }
        })
        .collect()
}
