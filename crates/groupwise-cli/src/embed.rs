//! Histories → embeddings: the one encoding path of every command (`encode`,
//! `eval lookalike`, `eval segments`, `eval slates`, `demo`), so that the same
//! user with the same options gets the same embedding whichever command
//! computes it.

use groupwise::data::UserHistory;
use groupwise::{Encoder, UserIndex};

use crate::progress;

/// Users per call to the encoder (a multiple of the default batch size, so
/// the model sees the same batches whether a command encodes at once or not).
const CHUNK: usize = 4096;

/// Embeddings of a list of histories, in their order.
pub struct Embedded {
    /// Row-major `histories.len() × dim` values.
    pub data: Vec<f32>,
    /// Embedding dimension.
    pub dim: usize,
    /// Interactions whose item the model does not know (summed over users).
    pub unknown_items: u64,
}

/// Encodes `histories` in order, behind a progress bar. `weighted` passes
/// each interaction's weight (the `--weight-col` values) to the model; without
/// it every interaction weighs 1.
pub fn encode_histories(
    encoder: &Encoder,
    histories: &[UserHistory],
    weighted: bool,
) -> groupwise::Result<Embedded> {
    let pb = progress::bar(histories.len() as u64, "encoding");
    let mut data = Vec::with_capacity(histories.len() * encoder.dim());
    let mut unknown_items = 0;
    for chunk in histories.chunks(CHUNK) {
        let enc = encoder.encode_histories(chunk, weighted)?;
        unknown_items += enc.stats.unknown_items;
        data.extend_from_slice(&enc.embeddings);
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok(Embedded {
        data,
        dim: encoder.dim(),
        unknown_items,
    })
}

/// Every history encoded (as [`encode_histories`]) and indexed, users keyed
/// by their history's user id.
pub fn index_histories(
    encoder: &Encoder,
    histories: &[UserHistory],
    weighted: bool,
) -> groupwise::Result<UserIndex> {
    let emb = encode_histories(encoder, histories, weighted)?;
    let ids: Vec<u64> = histories.iter().map(|h| h.user).collect();
    crate::neighbors::index_rows(&ids, &emb.data, emb.dim)
}
