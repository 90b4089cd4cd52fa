//! `groupwise segments`: embeddings in, segments out (assignments, profiles,
//! and a picture), plus the pieces the demo and `eval segments` share: the
//! method options, the profile table and the segment picture.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use groupwise::data::ids::stable_id;
use groupwise::data::{Interactions, ItemMetadata, ItemMetadataSpec};
use groupwise::io::EmbeddingTable;
use groupwise::segments::{
    Algorithm, Behaviour, Method, ProfileOptions, SegmentConfig, SegmentProfile, Segments,
};
use groupwise::UserIndex;

use crate::neighbors::load_index;
use crate::plot;

/// How to discover segments (shared by `segments`, `demo` and `eval segments`).
#[derive(clap::Args, Debug, Clone)]
pub struct MethodArgs {
    /// leiden (communities of the kNN graph), louvain, or kmeans.
    #[arg(long, default_value = "leiden")]
    pub method: String,
    /// Number of clusters for kmeans.
    #[arg(long, default_value_t = 20, value_parser = crate::args::at_least_one)]
    pub clusters: usize,
    /// Neighbours per user in the kNN graph (leiden, louvain).
    #[arg(long, default_value_t = 15, value_parser = crate::args::at_least_one)]
    pub knn: usize,
    /// Resolution of leiden/louvain: larger gives more, smaller segments.
    #[arg(long, default_value_t = 1.0)]
    pub resolution: f64,
    /// Search width for the kNN graph (default: the index's).
    #[arg(long)]
    pub ef: Option<usize>,
    /// Privacy floor: smallest segment served.
    #[arg(long, default_value_t = 50, value_parser = crate::args::at_least_one)]
    pub min_size: usize,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl MethodArgs {
    /// The method named by `--method`.
    pub fn method(&self) -> Result<Method, String> {
        let graph = |algorithm| Method::Graph {
            algorithm,
            k: self.knn,
            resolution: self.resolution,
            iterations: 2,
            ef: self.ef,
        };
        match self.method.as_str() {
            "leiden" => Ok(graph(Algorithm::Leiden)),
            "louvain" => Ok(graph(Algorithm::Louvain)),
            "kmeans" => Ok(Method::kmeans(self.clusters)),
            other => Err(format!(
                "unknown method {other:?}: use leiden, louvain or kmeans"
            )),
        }
    }

    /// The full configuration.
    pub fn config(&self) -> Result<SegmentConfig, String> {
        Ok(SegmentConfig {
            method: self.method()?,
            min_size: self.min_size,
            seed: self.seed,
            ..Default::default()
        })
    }
}

/// Arguments of `groupwise segments`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Embeddings file written by `groupwise encode` (`.npy` + `.ids.txt`).
    #[arg(long)]
    pub embeddings: PathBuf,
    #[command(flatten)]
    pub method: MethodArgs,
    /// Interactions file, for the items over-represented in each segment.
    #[arg(long)]
    pub interactions: Option<PathBuf>,
    #[command(flatten)]
    pub columns: crate::columns::Columns,
    /// Item metadata file (item id, categories, optional title), for category
    /// lifts and readable item names.
    #[arg(long, requires = "interactions")]
    pub items: Option<PathBuf>,
    /// Category column of the items file.
    #[arg(long, default_value = "class")]
    pub category_col: String,
    /// Separator between categories inside the category field.
    #[arg(long, default_value_t = ' ')]
    pub category_sep: char,
    /// Title column of the items file.
    #[arg(long)]
    pub title_col: Option<String>,
    /// Write `user<TAB>segment` lines here.
    #[arg(long)]
    pub assignments: Option<PathBuf>,
    /// Write the profiles (JSON) here.
    #[arg(long)]
    pub profiles: Option<PathBuf>,
    /// Write a picture of the segments (SVG) here.
    #[arg(long)]
    pub picture: Option<PathBuf>,
}

pub fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    // Bad output paths are reported before the work, not after it.
    for (flag, p) in [
        ("--assignments", &a.assignments),
        ("--profiles", &a.profiles),
        ("--picture", &a.picture),
    ] {
        if let Some(p) = p {
            crate::paths::prepare_output(flag, p)?;
        }
    }
    let table = EmbeddingTable::load(&a.embeddings)?;
    let index = load_index(&table)?;
    let names: HashMap<u64, &str> = table
        .ids
        .iter()
        .map(|s| (stable_id(s), s.as_str()))
        .collect();
    let config = a.method.config()?;
    let segments = Segments::build(&index, config)?;
    let log = match &a.interactions {
        Some(p) => Some(a.columns.load("--interactions", p)?),
        None => None,
    };
    let meta = match &a.items {
        Some(p) => Some(ItemMetadata::load(
            p,
            &ItemMetadataSpec {
                item_col: a.columns.item_col.clone(),
                category_col: a.category_col.clone(),
                category_sep: a.category_sep,
                title_col: a.title_col.clone(),
                delimiter: a.columns.delimiter_byte()?,
            },
        )?),
        None => None,
    };
    let histories = log.as_ref().map(Interactions::histories);
    let behaviour = histories.as_deref().map(|h| Behaviour {
        histories: h,
        items: meta.as_ref(),
    });
    let profiles = segments.profiles(&index, behaviour.as_ref(), &ProfileOptions::default())?;
    let name = |u: u64| {
        names
            .get(&u)
            .map_or_else(|| u.to_string(), |s| s.to_string())
    };
    print!("{}", summary(&segments));
    print!("{}", profile_table(&profiles, &name, 3));
    if let Some(p) = &a.assignments {
        let mut text = String::from("user\tsegment\n");
        for (u, s) in segments.assignments() {
            let _ = writeln!(text, "{}\t{s}", name(u));
        }
        crate::paths::write_output("--assignments", p, text)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &a.profiles {
        let json = profiles_json(&segments, &profiles, &name);
        crate::paths::write_output("--profiles", p, serde_json::to_string_pretty(&json)?)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &a.picture {
        let svg = picture(&segments, &index, &profiles, "groupwise segments");
        crate::paths::write_output("--picture", p, svg)?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

/// One line on what the build found.
pub fn summary(segments: &Segments) -> String {
    let r = segments.report();
    let mut s = format!(
        "{} segments ({}) over {} users; the method found {} groups, {} below the privacy floor of {} merged ({} users); cohesion {:.3}",
        r.segments,
        r.method,
        r.users,
        r.groups_found,
        r.merged_groups,
        segments.config().min_size,
        r.merged_users,
        r.cohesion
    );
    if let (Some(q), Some(e)) = (r.modularity, r.graph_edges) {
        let _ = write!(s, "; modularity {q:.3} on a kNN graph of {e} edges");
    }
    let _ = writeln!(
        s,
        " [{:.2} s graph, {:.2} s clustering]",
        r.graph_seconds, r.cluster_seconds
    );
    s
}

/// The profiles as a table: size, cohesion, top categories and items by lift.
pub fn profile_table(
    profiles: &[SegmentProfile],
    name: &dyn Fn(u64) -> String,
    top: usize,
) -> String {
    let mut s = String::new();
    for p in profiles {
        let cats: Vec<String> = p
            .top_categories
            .iter()
            .take(top)
            .map(|l| format!("{} {:.2}x ({})", l.label, l.lift, l.support))
            .collect();
        let items: Vec<String> = p
            .top_items
            .iter()
            .take(top)
            .map(|l| format!("{} {:.1}x ({})", l.label, l.lift, l.support))
            .collect();
        let reps: Vec<String> = p.representatives.iter().map(|n| name(n.id)).collect();
        let _ = writeln!(
            s,
            "segment {:>3}  {:>5} users  cohesion {:.3}  representative users: {}",
            p.id,
            p.size,
            p.cohesion,
            reps.join(", ")
        );
        if !cats.is_empty() {
            let _ = writeln!(s, "    over-represented genres: {}", cats.join(", "));
        }
        if !items.is_empty() {
            let _ = writeln!(s, "    over-represented items:  {}", items.join(", "));
        }
    }
    s
}

fn profiles_json(
    segments: &Segments,
    profiles: &[SegmentProfile],
    name: &dyn Fn(u64) -> String,
) -> serde_json::Value {
    let lifts = |ls: &[groupwise::segments::Lift]| -> Vec<serde_json::Value> {
        ls.iter()
            .map(|l| {
                serde_json::json!({
                    "key": l.key, "label": l.label, "lift": l.lift, "lift_lower": l.lift_lower, "support": l.support,
                    "segment_share": l.segment_share, "population_share": l.population_share,
                })
            })
            .collect()
    };
    serde_json::json!({
        "report": {
            "method": segments.report().method,
            "users": segments.report().users,
            "segments": segments.report().segments,
            "groups_found": segments.report().groups_found,
            "merged_groups": segments.report().merged_groups,
            "modularity": segments.report().modularity,
            "cohesion": segments.report().cohesion,
            "min_size": segments.config().min_size,
        },
        "segments": profiles.iter().map(|p| serde_json::json!({
            "id": p.id,
            "size": p.size,
            "cohesion": p.cohesion,
            "representatives": p.representatives.iter().map(|n| name(n.id)).collect::<Vec<_>>(),
            "top_categories": lifts(&p.top_categories),
            "top_items": lifts(&p.top_items),
        })).collect::<Vec<_>>(),
    })
}

/// Most points drawn in a picture (a seeded-free, evenly spaced subsample above).
const MAX_POINTS: usize = 20_000;

/// An SVG of the users projected on the two principal axes of the segment
/// centroids (weighted by size): the plane that separates segments best among
/// linear views. Coloured by segment; the legend names each by its top genres.
pub fn picture(
    segments: &Segments,
    index: &UserIndex,
    profiles: &[SegmentProfile],
    title: &str,
) -> String {
    let dim = segments.dim();
    let ids = segments.ids();
    let mut centroids = Vec::with_capacity(ids.len() * dim);
    let mut weights = Vec::with_capacity(ids.len());
    for &id in &ids {
        if let (Ok(c), Ok(n)) = (segments.centroid(id), segments.size(id)) {
            centroids.extend_from_slice(c);
            weights.push(n as f64);
        }
    }
    let [ax, ay] = plot::principal_axes(&centroids, dim, &weights);
    let position: HashMap<u32, usize> = ids.iter().enumerate().map(|(i, &s)| (s, i)).collect();
    let all = segments.assignments();
    let step = all.len().div_ceil(MAX_POINTS).max(1);
    let mut xy = Vec::new();
    let mut group = Vec::new();
    for &(u, s) in all.iter().step_by(step) {
        if let Some(v) = index.vector(u) {
            let px: f64 = v.iter().zip(&ax).map(|(&a, b)| f64::from(a) * b).sum();
            let py: f64 = v.iter().zip(&ay).map(|(&a, b)| f64::from(a) * b).sum();
            xy.push((px, py));
            group.push(position[&s]);
        }
    }
    let legend: Vec<String> = ids
        .iter()
        .map(|&id| {
            let p = profiles.iter().find(|p| p.id == id);
            let size = p.map_or(0, |p| p.size);
            let tops: Vec<&str> = p
                .map(|p| {
                    p.top_categories
                        .iter()
                        .take(2)
                        .map(|l| l.label.as_str())
                        .collect()
                })
                .unwrap_or_default();
            if tops.is_empty() {
                format!("segment {id} ({size})")
            } else {
                format!("segment {id} ({size}): {}", tops.join(", "))
            }
        })
        .collect();
    plot::scatter_svg(title, &xy, &group, &legend)
}
