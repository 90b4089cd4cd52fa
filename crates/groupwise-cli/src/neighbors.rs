//! `groupwise neighbors`: a user's nearest users from an embeddings file.

use std::path::PathBuf;

use groupwise::io::EmbeddingTable;
use groupwise::{IndexConfig, SearchMode, SearchOptions, UserIndex};

/// Arguments of `groupwise neighbors`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Embeddings file written by `groupwise encode` (`.npy` + `.ids.txt`).
    #[arg(long)]
    pub embeddings: PathBuf,
    /// The user id (as in the ids file).
    #[arg(long)]
    pub user: String,
    /// Number of neighbours (at least 1).
    #[arg(short, long, default_value_t = 10, value_parser = crate::args::at_least_one)]
    pub k: usize,
    /// Exact search instead of the HNSW graph.
    #[arg(long)]
    pub exact: bool,
    /// Search width of the graph.
    #[arg(long)]
    pub ef: Option<usize>,
}

pub fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let table = EmbeddingTable::load(&a.embeddings)?;
    let index = load_index(&table)?;
    let id = groupwise::data::ids::stable_id(&a.user);
    let opts = SearchOptions {
        ef: a.ef,
        mode: if a.exact {
            SearchMode::Exact
        } else {
            SearchMode::Auto
        },
        ..Default::default()
    };
    let names: std::collections::HashMap<u64, &str> = table
        .ids
        .iter()
        .map(|s| (groupwise::data::ids::stable_id(s), s.as_str()))
        .collect();
    println!("rank\tuser\tsimilarity");
    for (rank, n) in index.neighbors(id, a.k, &opts)?.iter().enumerate() {
        println!(
            "{}\t{}\t{:.4}",
            rank + 1,
            names.get(&n.id).copied().unwrap_or("?"),
            n.similarity
        );
    }
    Ok(())
}

/// An index over every row of an embeddings table (ids mapped with the stable
/// rule; two ids that map to the same number are an error, not a lost row),
/// built in chunks behind a progress bar.
pub fn load_index(table: &EmbeddingTable) -> groupwise::Result<UserIndex> {
    let mut mapper = groupwise::data::ids::IdMapper::new();
    let ids: Vec<u64> = table
        .ids
        .iter()
        .map(|s| mapper.map(s))
        .collect::<groupwise::Result<_>>()?;
    index_rows(&ids, &table.data, table.dim)
}

/// An index of `ids` with their rows of `data` (`dim` wide), built in chunks
/// behind a progress bar.
pub fn index_rows(ids: &[u64], data: &[f32], dim: usize) -> groupwise::Result<UserIndex> {
    const CHUNK: usize = 10_000;
    let mut config = IndexConfig::new(dim);
    config.capacity_hint = ids.len();
    let index = UserIndex::new(config)?;
    let pb = crate::progress::bar(ids.len() as u64, "indexing");
    for (chunk, rows) in ids.chunks(CHUNK).zip(data.chunks(CHUNK * dim.max(1))) {
        index.upsert_batch(chunk, rows)?;
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok(index)
}
