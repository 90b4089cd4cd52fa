//! `groupwise encode`: interaction log (or feature rows) → embeddings file.

use std::path::PathBuf;

use groupwise::data::{Interactions, InteractionsSpec};
use groupwise::io::EmbeddingTable;
use groupwise::{Encoder, EncoderOptions, RuntimeConfig};

use crate::paths;
use crate::progress;

/// Arguments of `groupwise encode`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Encoder model (default: models/ml100k-seq.onnx of this checkout).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Interactions file (CSV/TSV with a header).
    #[arg(long)]
    pub interactions: PathBuf,
    /// User id column.
    #[arg(long, default_value = "user_id")]
    pub user_col: String,
    /// Item id column.
    #[arg(long, default_value = "item_id")]
    pub item_col: String,
    /// Optional time column (histories are ordered by it; file order otherwise).
    #[arg(long)]
    pub time_col: Option<String>,
    /// Optional weight column, used as per-item weights.
    #[arg(long)]
    pub weight_col: Option<String>,
    /// Field delimiter (default: tab for .tsv/.inter files, comma otherwise).
    #[arg(long)]
    pub delimiter: Option<char>,
    /// Output `.npy` file; user ids go to `<out>.ids.txt`.
    #[arg(long)]
    pub out: PathBuf,
    /// Rows per model call.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Path to libonnxruntime.so (default: ORT_DYLIB_PATH, then .groupwise/lib).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
}

pub fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let model = match &a.model {
        Some(m) => m.clone(),
        None => paths::model("ml100k-seq.onnx")?,
    };
    let delimiter = a
        .delimiter
        .map(|c| u8::try_from(c).map_err(|_| format!("delimiter {c:?} is not a single byte")))
        .transpose()?;
    let spec = InteractionsSpec {
        user_col: a.user_col.clone(),
        item_col: a.item_col.clone(),
        weight_col: a.weight_col.clone(),
        time_col: a.time_col.clone(),
        delimiter,
    };
    let log = Interactions::load(&a.interactions, &spec)?;
    let histories = log.histories();
    let encoder = Encoder::load(
        &model,
        &EncoderOptions {
            runtime: RuntimeConfig {
                library_path: a.ort_lib.clone(),
            },
            batch_size: a.batch_size,
            ..Default::default()
        },
    )?;
    let pb = progress::bar(histories.len() as u64, "encoding");
    let mut data = Vec::with_capacity(histories.len() * encoder.dim());
    let mut unknown = 0;
    for chunk in histories.chunks(4096) {
        let enc = encoder.encode_histories(chunk, a.weight_col.is_some())?;
        unknown += enc.stats.unknown_items;
        data.extend_from_slice(&enc.embeddings);
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    let ids = histories
        .iter()
        .map(|h| log.users.name(h.user).unwrap_or_default().to_string())
        .collect();
    let table = EmbeddingTable {
        ids,
        data,
        dim: encoder.dim(),
    };
    table.save(&a.out)?;
    eprintln!(
        "encoded {} users ({} interactions, {} unknown items) with {} -> {} ({}-d)",
        histories.len(),
        log.len(),
        unknown,
        model.display(),
        a.out.display(),
        encoder.dim()
    );
    Ok(())
}
