//! The column options every command that reads an interactions file shares,
//! and the one loader of interactions files given on the command line.

use std::path::Path;

use groupwise::data::{Interactions, InteractionsSpec};

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

    /// True when `--weight-col` is given: the model gets each interaction's
    /// weight (every command that encodes histories honours it).
    pub fn weighted(&self) -> bool {
        self.weight_col.is_some()
    }

    /// Loads the interactions file given with `flag`; a file with a header and
    /// no data rows is an error (nothing would be encoded or evaluated).
    pub fn load(
        &self,
        flag: &str,
        path: &Path,
    ) -> Result<Interactions, Box<dyn std::error::Error>> {
        let log = Interactions::load(path, &self.spec()?)?;
        if log.is_empty() {
            return Err(format!(
                "{flag} {}: the file has no data rows (only a header)",
                path.display()
            )
            .into());
        }
        Ok(log)
    }
}
