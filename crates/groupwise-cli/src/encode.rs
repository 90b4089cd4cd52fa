//! `groupwise encode`: interaction log (or feature rows) → embeddings file.

use std::path::{Path, PathBuf};

use groupwise::data::Interactions;
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
    /// Interactions file (CSV/TSV with a header), for item-sequence models and
    /// `item_bag` features models.
    #[arg(
        long,
        required_unless_present = "features",
        conflicts_with = "features"
    )]
    pub interactions: Option<PathBuf>,
    /// Dense feature rows (CSV/TSV with a header: the `--user-col` column, then
    /// exactly the model's F numeric columns), for features models.
    #[arg(long)]
    pub features: Option<PathBuf>,
    #[command(flatten)]
    pub columns: crate::columns::Columns,
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
    let delimiter = a.columns.delimiter_byte()?;
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
    let Some(interactions) = &a.interactions else {
        let path = a
            .features
            .as_deref()
            .ok_or("pass --interactions or --features")?;
        return encode_features(&encoder, path, &a.columns.user_col, delimiter, &a.out);
    };
    let log = Interactions::load(interactions, &a.columns.spec()?)?;
    let histories = log.histories();
    let pb = progress::bar(histories.len() as u64, "encoding");
    let mut data = Vec::with_capacity(histories.len() * encoder.dim());
    let mut unknown = 0;
    for chunk in histories.chunks(4096) {
        let enc = encoder.encode_histories(chunk, a.columns.weight_col.is_some())?;
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

/// Reads `id, f1, ..., fF` rows and encodes them with a features model.
fn encode_features(
    encoder: &Encoder,
    path: &Path,
    id_col: &str,
    delimiter: Option<u8>,
    out: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let f = encoder
        .contract()
        .feature_dim
        .ok_or("this model takes item sequences; pass --interactions")?;
    let delimiter = delimiter.unwrap_or(if path.extension().is_some_and(|e| e == "tsv") {
        b'\t'
    } else {
        b','
    });
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_path(path)?;
    let header = reader.headers()?.clone();
    let id_at = header
        .iter()
        .position(|h| h == id_col || h.split(':').next() == Some(id_col))
        .ok_or_else(|| format!("{}: no column `{id_col}`", path.display()))?;
    if header.len() != f + 1 {
        return Err(format!(
            "{}: {} feature columns, the model takes {f}",
            path.display(),
            header.len().saturating_sub(1)
        )
        .into());
    }
    let (mut ids, mut rows) = (Vec::new(), Vec::new());
    for rec in reader.records() {
        let rec = rec?;
        let line = rec.position().map_or(0, csv::Position::line);
        for (i, v) in rec.iter().enumerate() {
            if i == id_at {
                ids.push(v.to_string());
            } else {
                rows.push(
                    v.trim()
                        .parse::<f32>()
                        .map_err(|_| format!("{}:{line}: {v:?} is not a number", path.display()))?,
                );
            }
        }
    }
    let enc = encoder.encode_features(&rows)?;
    EmbeddingTable {
        ids,
        data: enc.embeddings,
        dim: encoder.dim(),
    }
    .save(out)?;
    eprintln!(
        "encoded {} feature rows -> {}",
        enc.stats.rows,
        out.display()
    );
    Ok(())
}
