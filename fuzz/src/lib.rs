//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! Every parser target reads its first input byte as a *selector* that picks
//! the parser options (column names, delimiter, how the bytes are fed), and
//! the remaining bytes as the file contents. Seeds in `corpus/<target>/` start
//! with such a byte; see README.md for each target's bit layout.
//!
//! The snapshot and delta targets get past the checksum: [`frame`] wraps a
//! payload in a valid header, and [`edit`] changes a real payload value by
//! value (as a MessagePack tree), so that inputs reach the checks made on
//! decoded values rather than stopping at the decoder.

use std::io::Read;

use xxhash_rust::xxh3::Xxh3;

/// Splits fuzz input into the selector byte and the file bytes (empty input
/// gives selector 0 and no bytes).
pub fn split(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&first, rest)) => (first, rest),
        None => (0, &[]),
    }
}

/// A reader that hands out at most `chunk` bytes per `read` call, so the CSV
/// reader's buffer refills happen at arbitrary points inside fields, quotes
/// and line endings.
pub struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl<'a> Chunked<'a> {
    /// Wraps `data`, serving at most `chunk` (at least 1) bytes per read.
    pub fn new(data: &'a [u8], chunk: usize) -> Self {
        Chunked {
            data,
            chunk: chunk.max(1),
        }
    }
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        buf[..n].copy_from_slice(head);
        self.data = tail;
        Ok(n)
    }
}

/// The byte source for a parser: the whole slice at once, or (when `chunked`)
/// a [`Chunked`] reader serving `chunk` bytes per call.
pub fn source(data: &[u8], chunked: bool, chunk: usize) -> Box<dyn Read + '_> {
    if chunked {
        Box::new(Chunked::new(data, chunk))
    } else {
        Box::new(data)
    }
}

/// The delimiter and the source name for a target: tab or comma, either given
/// explicitly (`infer == false`) or left to the loader to infer from the
/// name's extension (`fuzz.<tab_ext>` for tab, `fuzz.csv` for comma).
pub fn delimiter_and_name(tab: bool, infer: bool, tab_ext: &str) -> (Option<u8>, String) {
    let delimiter = if tab { b'\t' } else { b',' };
    let name = if tab {
        format!("fuzz.{tab_ext}")
    } else {
        "fuzz.csv".to_string()
    };
    (if infer { None } else { Some(delimiter) }, name)
}

/// `payload` framed like `frame.rs` does: `prefix` (magic and version, 12
/// bytes), flags 0, the length, the XXH3-64 of bytes 8..24 and the payload,
/// then the payload. The checksum is valid whatever the payload.
pub fn frame(prefix: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = prefix[..12].to_vec();
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let mut h = Xxh3::new();
    h.update(&out[8..24]);
    h.update(payload);
    out.extend_from_slice(&h.digest().to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Structure-aware edits of a MessagePack payload: the payload is decoded
/// into a value tree, nodes are changed one by one (numbers set to the
/// values validation must refuse, lists shortened, elements repeated or
/// removed, blobs overwritten with non-finite floats, nodes copied over
/// others), and the tree is encoded again. Each edit is 11 input bytes:
///
/// | bytes | meaning |
/// |-------|---------|
/// | 0-1   | node (little-endian `u16`, modulo the number of nodes, pre-order) |
/// | 2     | operation (modulo 13, see [`apply`]) |
/// | 3-10  | argument (little-endian `u64`) |
pub mod edit {
    use rmpv::Value;

    /// Bytes per edit.
    pub const EDIT_LEN: usize = 11;

    /// Doubles that validation must refuse somewhere (and a few it must
    /// accept), indexed by an edit's argument.
    const F64S: [f64; 12] = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -1.0,
        0.0,
        -0.0,
        1e308,
        9_007_199_254_740_993.0,
        0.5,
        f64::MIN_POSITIVE,
        1.0,
        -1e-300,
    ];

    /// Singles likewise (vector components are stored as f32 bytes).
    const F32S: [f32; 9] = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -1.0,
        0.0,
        1e30,
        0.5,
        1.0,
        f32::MIN_POSITIVE,
    ];

    fn f64_of(arg: u64) -> f64 {
        match (arg % (F64S.len() as u64 + 1)) as usize {
            i if i < F64S.len() => F64S[i],
            _ => f64::from_bits(arg),
        }
    }

    fn f32_of(arg: u64) -> f32 {
        match (arg % (F32S.len() as u64 + 1)) as usize {
            i if i < F32S.len() => F32S[i],
            _ => f32::from_bits((arg >> 32) as u32),
        }
    }

    /// Number of nodes of `v` (itself included).
    pub fn count(v: &Value) -> usize {
        1 + match v {
            Value::Array(a) => a.iter().map(count).sum(),
            Value::Map(m) => m.iter().map(|(k, v)| count(k) + count(v)).sum(),
            _ => 0,
        }
    }

    /// The `n`-th node of `v` in pre-order, counting down `n`.
    fn nth<'a>(v: &'a mut Value, n: &mut usize) -> Option<&'a mut Value> {
        if *n == 0 {
            return Some(v);
        }
        *n -= 1;
        match v {
            Value::Array(a) => {
                for x in a.iter_mut() {
                    if let Some(found) = nth(x, n) {
                        return Some(found);
                    }
                }
                None
            }
            Value::Map(m) => {
                for (k, x) in m.iter_mut() {
                    if let Some(found) = nth(k, n) {
                        return Some(found);
                    }
                    if let Some(found) = nth(x, n) {
                        return Some(found);
                    }
                }
                None
            }
            _ => None,
        }
    }

    /// Node `index` (modulo the number of nodes) of `v`, in pre-order.
    fn node_mut(v: &mut Value, index: usize) -> &mut Value {
        let mut n = index % count(v);
        nth(v, &mut n).expect("an index below the count")
    }

    /// Applies one edit (`op` modulo 13) to the node `node` of `tree`.
    pub fn apply_one(tree: &mut Value, node: usize, op: u8, arg: u64) {
        // Operation 12 copies another node over this one: take it first.
        let copied = (op % 13 == 12).then(|| node_mut(tree, arg as usize).clone());
        let v = node_mut(tree, node);
        let small = arg as usize;
        match op % 13 {
            0 => *v = Value::from(arg),
            1 => *v = Value::from(arg as i64),
            2 => *v = Value::F64(f64_of(arg)),
            3 => *v = Value::F32(f32_of(arg)),
            4 => match v {
                // Overwrite 4 aligned bytes of a blob (vectors are f32 blobs).
                Value::Binary(b) if b.len() >= 4 => {
                    let at = ((small >> 8) % (b.len() / 4)) * 4;
                    b[at..at + 4].copy_from_slice(&f32_of(arg & 0xff).to_le_bytes());
                }
                // Nudge an integer by a little (off-by-one lengths, ids).
                Value::Integer(i) => {
                    let delta = i64::from(arg as i8);
                    *v = match (i.as_u64(), i.as_i64()) {
                        (Some(u), _) => Value::from(u.wrapping_add(delta as u64)),
                        (_, Some(s)) => Value::from(s.wrapping_add(delta)),
                        _ => Value::from(delta),
                    };
                }
                Value::F64(x) => *x *= f64::from(arg as i8),
                _ => {}
            },
            5 => match v {
                Value::Array(a) => a.truncate(small % (a.len() + 1)),
                Value::Map(m) => m.truncate(small % (m.len() + 1)),
                Value::Binary(b) => b.truncate(small % (b.len() + 1)),
                Value::String(_) => *v = Value::from(""),
                _ => {}
            },
            6 => match v {
                Value::Array(a) if !a.is_empty() => {
                    let x = a[small % a.len()].clone();
                    a.insert((small >> 16) % (a.len() + 1), x);
                }
                Value::Map(m) if !m.is_empty() => {
                    let x = m[small % m.len()].clone();
                    m.insert((small >> 16) % (m.len() + 1), x);
                }
                Value::Binary(b) if b.len() >= 4 => {
                    let at = (small % (b.len() / 4)) * 4;
                    let chunk: Vec<u8> = b[at..at + 4].to_vec();
                    b.splice(at..at, chunk);
                }
                _ => {}
            },
            7 => match v {
                Value::Array(a) if !a.is_empty() => {
                    a.remove(small % a.len());
                }
                Value::Map(m) if !m.is_empty() => {
                    m.remove(small % m.len());
                }
                _ => {}
            },
            8 => {
                if let Value::Array(a) = v {
                    if !a.is_empty() {
                        let (i, j) = (small % a.len(), (small >> 16) % a.len());
                        a.swap(i, j);
                    }
                }
            }
            9 => *v = Value::Nil,
            10 => *v = Value::Boolean(arg & 1 == 1),
            11 => match v {
                Value::Binary(b) if !b.is_empty() => {
                    let at = small % b.len();
                    b[at] ^= ((arg >> 32) as u8) | 1;
                }
                Value::Boolean(b) => *b = !*b,
                _ => *v = Value::Array(Vec::new()),
            },
            _ => {
                if let Some(c) = copied {
                    *v = c;
                }
            }
        }
    }

    /// Applies the edits in `ops` (see the module docs; at most 32, a
    /// trailing partial edit is ignored) to `tree`.
    pub fn apply(tree: &mut Value, ops: &[u8]) {
        for e in ops.chunks_exact(EDIT_LEN).take(32) {
            let node = usize::from(u16::from_le_bytes([e[0], e[1]]));
            let mut arg = [0u8; 8];
            arg.copy_from_slice(&e[3..11]);
            apply_one(tree, node, e[2], u64::from_le_bytes(arg));
        }
    }

    /// Decodes a MessagePack payload into a tree.
    pub fn decode(payload: &[u8]) -> Value {
        rmpv::decode::read_value(&mut &payload[..]).expect("a valid MessagePack payload")
    }

    /// Encodes a tree.
    pub fn encode(tree: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, tree).expect("writing to a Vec");
        out
    }
}
