//! `groupwise encode`: interaction log (or feature rows) → embeddings file.

use std::path::{Path, PathBuf};

use groupwise::io::{ids_path, EmbeddingTable};
use groupwise::{Encoder, EncoderOptions, RuntimeConfig};

use crate::paths;

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
    /// Output `.npy` file; the user ids go next to it, one per line, with
    /// `.ids.txt` in place of the extension (`emb.npy` → `emb.ids.txt`).
    /// Missing folders are created.
    #[arg(long)]
    pub out: PathBuf,
    /// Rows per model call.
    #[arg(long, default_value_t = 256, value_parser = crate::args::at_least_one)]
    pub batch_size: usize,
    /// Path to libonnxruntime.so (default: ORT_DYLIB_PATH, then .groupwise/lib).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
}

pub fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    // A bad --out is reported before the encoding, not after it.
    prepare_out(&a.out)?;
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
    let log = a.columns.load("--interactions", interactions)?;
    let histories = log.histories();
    let enc = crate::embed::encode_histories(&encoder, &histories, a.columns.weighted())?;
    let ids = histories
        .iter()
        .map(|h| log.users.name(h.user).unwrap_or_default().to_string())
        .collect();
    save(
        &a.out,
        &EmbeddingTable {
            ids,
            data: enc.data,
            dim: enc.dim,
        },
    )?;
    eprintln!(
        "encoded {} users ({} interactions, {} unknown items) with {} -> {} ({}-d)",
        histories.len(),
        log.len(),
        enc.unknown_items,
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
    let in_file = |e: csv::Error| format!("--features {}: {e}", path.display());
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_path(path)
        .map_err(in_file)?;
    let header = reader.headers().map_err(in_file)?.clone();
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
    let mut line_of: std::collections::HashMap<String, u64> = Default::default();
    for rec in reader.records() {
        let rec = rec.map_err(in_file)?;
        let line = rec.position().map_or(0, csv::Position::line);
        for (i, v) in rec.iter().enumerate() {
            if i == id_at {
                if let Some(first) = line_of.insert(v.to_string(), line) {
                    return Err(format!(
                        "{}:{line}: user id {v:?} is listed twice (lines {first} and {line})",
                        path.display()
                    )
                    .into());
                }
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
    if ids.is_empty() {
        return Err(format!(
            "--features {}: the file has no data rows (only a header)",
            path.display()
        )
        .into());
    }
    let enc = encoder.encode_features(&rows)?;
    save(
        out,
        &EmbeddingTable {
            ids,
            data: enc.embeddings,
            dim: encoder.dim(),
        },
    )?;
    eprintln!(
        "encoded {} feature rows -> {}",
        enc.stats.rows,
        out.display()
    );
    Ok(())
}

/// Gets the embeddings file given with `--out` and its ids file ready to be
/// written (missing folders created; a directory refused, naming the flag).
fn prepare_out(out: &Path) -> Result<(), String> {
    paths::prepare_output("--out", out)?;
    paths::prepare_output("--out (its ids file)", &ids_path(out))
}

/// Writes the embeddings file given with `--out` and its ids file.
fn save(out: &Path, table: &EmbeddingTable) -> Result<(), Box<dyn std::error::Error>> {
    prepare_out(out)?;
    table.save(out)?;
    Ok(())
}
