//! Value parsers shared by the commands' flags: a bad value is refused by the
//! parser, with the flag's name, before any work starts.

/// A count that must be at least 1 (`-k`, `--splits`, `--batch-size`, ...).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// A share strictly between 0 and 1 (`--hide`).
pub fn open_unit(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        Ok(_) => Err("must be strictly between 0 and 1".into()),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}
