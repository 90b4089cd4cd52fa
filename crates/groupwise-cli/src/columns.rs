//! The column options every command that reads an interactions file shares.

use groupwise::data::InteractionsSpec;

/// Which columns of an interactions file hold what (flattened into commands).
#[derive(clap::Args, Debug, Clone)]
pub struct Columns {
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
}

impl Columns {
    /// The delimiter as a byte.
    pub fn delimiter_byte(&self) -> Result<Option<u8>, String> {
        self.delimiter
            .map(|c| u8::try_from(c).map_err(|_| format!("delimiter {c:?} is not a single byte")))
            .transpose()
    }

    /// The loader spec.
    pub fn spec(&self) -> Result<InteractionsSpec, String> {
        Ok(InteractionsSpec {
            user_col: self.user_col.clone(),
            item_col: self.item_col.clone(),
            weight_col: self.weight_col.clone(),
            time_col: self.time_col.clone(),
            delimiter: self.delimiter_byte()?,
        })
    }
}
