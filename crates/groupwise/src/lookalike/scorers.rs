//! The lookalike scorers. Each maps the candidates (index slots) to scores,
//! higher = more like the seeds; [`score`] dispatches on the request.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use super::logistic::Logistic;
use super::{LookalikeConfig, LookalikeRequest, Scorer, SeedSet};
use crate::error::{Error, Result};
use crate::graph::KnnGraph;
use crate::index::{exact_top_k, Population};
use crate::vector::dot;

/// Candidates gathered per block when scoring against many seeds.
const BLOCK: usize = 16_384;

pub(super) fn score(
    pop: &Population<'_>,
    graph: Option<&KnnGraph>,
    seeds: &SeedSet,
    candidates: &[usize],
    request: &LookalikeRequest<'_>,
    config: &LookalikeConfig,
    rng: &mut StdRng,
) -> Result<Vec<f64>> {
    match request.scorer {
        Scorer::Centroid => Ok(centroid(pop, seeds, candidates)),
        Scorer::KnnDensity => Ok(knn_density(pop, seeds, candidates, config, rng)),
        Scorer::Classifier => classifier(pop, seeds, candidates, request, config, rng),
        Scorer::Diffusion => {
            let g = graph.ok_or_else(|| Error::invalid("scorer", "diffusion needs a kNN graph"))?;
            diffusion(pop, g, seeds, candidates, config)
        }
        Scorer::Fusion => {
            // The centroid is left out: on every segment evaluated it ranks
            // below the classifier, whose linear view it duplicates.
            let mut parts = vec![
                knn_density(pop, seeds, candidates, config, rng),
                classifier(pop, seeds, candidates, request, config, rng)?,
            ];
            if let Some(g) = graph {
                parts.push(diffusion(pop, g, seeds, candidates, config)?);
            }
            Ok(mean_rank_fusion(pop, candidates, &parts))
        }
    }
}

/// Cosine similarity to the mean seed direction.
pub(super) fn centroid(pop: &Population<'_>, seeds: &SeedSet, candidates: &[usize]) -> Vec<f64> {
    let dim = pop.dim();
    let mut c = vec![0.0f32; dim];
    for s in seeds.vectors.chunks(dim) {
        for (a, b) in c.iter_mut().zip(s) {
            *a += b;
        }
    }
    let n = crate::vector::norm(&c);
    if n > 0.0 {
        c.iter_mut().for_each(|x| *x /= n);
    }
    candidates
        .par_iter()
        .map(|&slot| f64::from(dot(&c, pop.vector(slot))))
        .collect()
}

/// Mean similarity to the `knn_k` nearest seeds (of a seeded sample of at
/// most `knn_max_seeds` seeds), computed exactly by blocked matrix products.
fn knn_density(
    pop: &Population<'_>,
    seeds: &SeedSet,
    candidates: &[usize],
    config: &LookalikeConfig,
    rng: &mut StdRng,
) -> Vec<f64> {
    let dim = pop.dim();
    let m = seeds.len();
    let sample: Vec<f32> = if m > config.knn_max_seeds {
        let mut rows: Vec<usize> = (0..m).collect();
        rows.shuffle(rng);
        rows.truncate(config.knn_max_seeds);
        rows.sort_unstable();
        rows.iter()
            .flat_map(|&r| seeds.vectors[r * dim..(r + 1) * dim].iter().copied())
            .collect()
    } else {
        seeds.vectors.clone()
    };
    let k = config.knn_k.clamp(1, sample.len() / dim);
    let mut out = Vec::with_capacity(candidates.len());
    let mut block = Vec::with_capacity(BLOCK.min(candidates.len()) * dim);
    for chunk in candidates.chunks(BLOCK) {
        block.clear();
        for &slot in chunk {
            block.extend_from_slice(pop.vector(slot));
        }
        for near in exact_top_k(&sample, dim, &block, k) {
            out.push(near.iter().map(|&(_, s)| f64::from(s)).sum::<f64>() / k as f64);
        }
    }
    out
}

/// Log-odds of a logistic regression: seeds (positives) against a seeded
/// random sample of the candidates plus the excluded users (negatives).
fn classifier(
    pop: &Population<'_>,
    seeds: &SeedSet,
    candidates: &[usize],
    request: &LookalikeRequest<'_>,
    config: &LookalikeConfig,
    rng: &mut StdRng,
) -> Result<Vec<f64>> {
    let dim = pop.dim();
    let m = seeds.len();
    let want = (m * config.negatives_per_seed)
        .clamp(
            config.min_negatives,
            config.max_negatives.max(config.min_negatives),
        )
        .min(candidates.len());
    let mut pool: Vec<usize> = candidates.to_vec();
    pool.shuffle(rng);
    pool.truncate(want);
    // Excluded users in the index are known non-members: use them too.
    if let Some(ex) = request.exclude {
        let mut extra: Vec<usize> = ex.iter().filter_map(|&id| pop.slot_of(id)).collect();
        extra.sort_unstable();
        pool.extend(extra);
    }
    let mut x = Vec::with_capacity((m + pool.len()) * dim);
    let mut y = Vec::with_capacity(m + pool.len());
    x.extend_from_slice(&seeds.vectors);
    y.extend(std::iter::repeat_n(true, m));
    for &slot in &pool {
        x.extend_from_slice(pop.vector(slot));
        y.push(false);
    }
    let model = Logistic::fit(&x, &y, dim, config.l2, 25);
    if model.w.iter().any(|w| !w.is_finite()) || !model.b.is_finite() {
        return Err(Error::invalid(
            "seeds",
            "the classifier did not converge on these seeds",
        ));
    }
    Ok(candidates
        .par_iter()
        .map(|&slot| model.score(pop.vector(slot)))
        .collect())
}

/// Personalised PageRank from the seeds over the symmetric kNN graph:
/// `r = restart * e + (1 - restart) * P^T r`, with `e` uniform over the seed
/// nodes and `P` the similarity-weighted random walk. Index seeds are their
/// own nodes; vector seeds start from their nearest user in the graph. Users
/// the walk never reaches (score 0) are ordered by centroid similarity.
fn diffusion(
    pop: &Population<'_>,
    graph: &KnnGraph,
    seeds: &SeedSet,
    candidates: &[usize],
    config: &LookalikeConfig,
) -> Result<Vec<f64>> {
    let n = graph.len();
    if n == 0 {
        return Err(Error::EmptyPopulation);
    }
    let mut start: Vec<u32> = seeds.users.iter().filter_map(|&u| graph.node(u)).collect();
    if seeds.users.is_empty() {
        // Vector seeds: the nearest graph user of each.
        let dim = pop.dim();
        let mut data = Vec::with_capacity(n * dim);
        let mut nodes = Vec::with_capacity(n);
        for (node, &u) in graph.users().iter().enumerate() {
            if let Some(slot) = pop.slot_of(u) {
                data.extend_from_slice(pop.vector(slot));
                nodes.push(node as u32);
            }
        }
        for near in exact_top_k(&data, dim, &seeds.vectors, 1) {
            if let Some(&(row, _)) = near.first() {
                start.push(nodes[row]);
            }
        }
    }
    start.sort_unstable();
    start.dedup();
    if start.is_empty() {
        return Err(Error::invalid(
            "graph",
            "no seed is a node of the kNN graph; rebuild the graph",
        ));
    }
    let degree: Vec<f64> = (0..n as u32)
        .map(|v| graph.neighbors(v).1.iter().map(|&w| f64::from(w)).sum())
        .collect();
    let mut e = vec![0.0f64; n];
    for &s in &start {
        e[s as usize] = 1.0 / start.len() as f64;
    }
    let alpha = config.restart.clamp(1e-6, 1.0);
    let mut r = e.clone();
    let mut sent = vec![0.0f64; n];
    for _ in 0..config.iterations {
        // What each node sends along one unit of edge weight this step.
        sent.par_iter_mut().enumerate().for_each(|(u, x)| {
            *x = if degree[u] > 0.0 {
                r[u] / degree[u]
            } else {
                0.0
            };
        });
        // Pull form (the graph is symmetric): every node sums what its
        // neighbours send; parallel over nodes, no atomics.
        r = (0..n)
            .into_par_iter()
            .map(|v| {
                let (nbrs, ws) = graph.neighbors(v as u32);
                let inflow: f64 = nbrs
                    .iter()
                    .zip(ws)
                    .map(|(&u, &w)| sent[u as usize] * f64::from(w))
                    .sum();
                alpha * e[v] + (1.0 - alpha) * inflow
            })
            .collect();
    }
    let cent = centroid(pop, seeds, candidates);
    Ok(candidates
        .iter()
        .zip(cent)
        .map(|(&slot, c)| {
            let ppr = graph.node(pop.id(slot)).map_or(0.0, |v| r[v as usize]);
            // A tiny centroid term only orders the users PageRank ties at 0.
            ppr + 1e-15 * (1.0 + c)
        })
        .collect())
}

/// Mean-rank (Borda) fusion: the score is minus the candidate's mean rank
/// across the scorers, as a share of the candidates (so in [-1, 0]). Unlike
/// reciprocal-rank fusion, one scorer's confident head cannot outvote the
/// others: a user only rises if most scorers rank it well, which is what makes
/// fusion robust when one of its parts fails (a linear classifier on seeds
/// that straddle a third taste).
fn mean_rank_fusion(pop: &Population<'_>, candidates: &[usize], parts: &[Vec<f64>]) -> Vec<f64> {
    let n = candidates.len() as f64;
    let mut fused = vec![0.0f64; candidates.len()];
    let ids: Vec<u64> = candidates.iter().map(|&s| pop.id(s)).collect();
    for scores in parts {
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.par_sort_unstable_by(|&a, &b| {
            scores[b].total_cmp(&scores[a]).then(ids[a].cmp(&ids[b]))
        });
        for (rank, &i) in order.iter().enumerate() {
            fused[i] -= rank as f64 / (n * parts.len() as f64);
        }
    }
    fused
}
