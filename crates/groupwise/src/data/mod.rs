//! Loading the host's logs: interactions (who touched what, when, how much),
//! item metadata (item → categories) and user labels (user → segment).
//!
//! Both loaders read delimited text (CSV, TSV, or anything with a one-byte
//! delimiter) with a header row, find columns by name, and map string ids to
//! stable `u64` ids (see [`ids`]). A malformed row is an error naming the file
//! and line; nothing is skipped silently. MovieLens 100K as shipped in the
//! recbole wheel is one instance of this format, not a special case.

pub mod ids;
mod interactions;
mod items;
mod labels;
mod table;

pub use interactions::{Interaction, Interactions, InteractionsSpec, UserHistory};
pub use items::{ItemMetadata, ItemMetadataSpec};
pub use labels::Labels;
