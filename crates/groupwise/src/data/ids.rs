//! Stable numeric ids for the string ids found in logs.
//!
//! Hosts key users and items by whatever their logs use. groupwise works with
//! `u64` everywhere, so string ids are mapped by a fixed, documented rule that
//! gives the same number on every machine and in every run:
//!
//! * a decimal string without sign or leading zeros whose value is below 2^63 maps
//!   to that value (`"196"` → 196), so numeric ids stay readable;
//! * any other string maps to its 64-bit FNV-1a hash with the top bit set, so it
//!   can never equal a plain numeric id.
//!
//! Hash collisions between two different strings are possible in principle
//! (about 1 in 10^10 for a million ids); [`IdMapper`] detects them and reports an
//! error instead of silently merging two users.

use std::collections::HashMap;

use crate::error::{Error, Result};

const HASHED_BIT: u64 = 1 << 63;

/// Maps a string id to its stable numeric id (see the module docs for the rule).
pub fn stable_id(raw: &str) -> u64 {
    if let Some(n) = plain_decimal(raw) {
        return n;
    }
    fnv1a64(raw.as_bytes()) | HASHED_BIT
}

fn plain_decimal(raw: &str) -> Option<u64> {
    let bytes = raw.as_bytes();
    if bytes.is_empty() || bytes.len() > 19 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if bytes.len() > 1 && bytes[0] == b'0' {
        return None;
    }
    let n: u64 = raw.parse().ok()?;
    (n < HASHED_BIT).then_some(n)
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Maps string ids to stable numeric ids and remembers the strings, so that
/// collisions are caught and ids can be printed as the host wrote them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IdMapper {
    names: HashMap<u64, String>,
}

impl IdMapper {
    /// An empty mapper.
    pub fn new() -> Self {
        Self::default()
    }

    /// The numeric id of `raw`; an error if a different string already has it.
    pub fn map(&mut self, raw: &str) -> Result<u64> {
        let id = stable_id(raw);
        match self.names.get(&id) {
            Some(existing) if existing != raw => Err(Error::IdCollision {
                first: existing.clone(),
                second: raw.to_string(),
                id,
            }),
            Some(_) => Ok(id),
            None => {
                self.names.insert(id, raw.to_string());
                Ok(id)
            }
        }
    }

    /// The string a numeric id came from, if it was mapped here.
    pub fn name(&self, id: u64) -> Option<&str> {
        self.names.get(&id).map(String::as_str)
    }

    /// Number of distinct ids mapped.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when nothing was mapped.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Every mapped `(numeric id, original string)` pair, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &str)> + '_ {
        self.names.iter().map(|(&id, name)| (id, name.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_ids_map_to_themselves() {
        assert_eq!(stable_id("0"), 0);
        assert_eq!(stable_id("196"), 196);
        assert_eq!(stable_id("9223372036854775807"), (1 << 63) - 1);
    }

    #[test]
    fn other_strings_hash_with_the_top_bit_set() {
        for raw in ["007", "-1", "abc", "", "9223372036854775808", "1.0"] {
            let id = stable_id(raw);
            assert!(id & HASHED_BIT != 0, "{raw:?} -> {id}");
        }
        // FNV-1a of "a" is a published test vector.
        assert_eq!(stable_id("a"), 0xaf63_dc4c_8601_ec8c | HASHED_BIT);
        assert_ne!(stable_id("abc"), stable_id("abd"));
    }

    #[test]
    fn mapper_remembers_names() -> Result<()> {
        let mut m = IdMapper::new();
        let a = m.map("user-a")?;
        assert_eq!(m.map("user-a")?, a);
        assert_eq!(m.name(a), Some("user-a"));
        assert_eq!(m.len(), 1);
        let b = m.map("7")?;
        let mut all: Vec<(u64, &str)> = m.iter().collect();
        all.sort_unstable();
        assert_eq!(all, [(7, "7"), (a, "user-a")]);
        assert_eq!(b, 7);
        Ok(())
    }
}
