//! The encoder contract: what a model's ONNX metadata must say so that a host
//! can load a model it did not build (documented in models/README.md).
//!
//! A model is read in two steps: its *metadata* (`groupwise.*` keys) says what
//! kind of input it takes and how item ids map to rows, and its *schema*
//! (input and output names, dtypes, shapes) is checked against that. A model
//! without `groupwise.*` metadata is accepted when its schema is unambiguous:
//! one float32 `[batch, F]` input (features) or one int64 `[batch, L]` input
//! (item ids used as model indices, padding 0), and a float32 `[batch, D]`
//! output with static `D`.

use std::collections::BTreeMap;
use std::path::Path;

use ort::session::Session;
use ort::value::{TensorElementType, ValueType};

use rustc_hash::FxHashMap;

use super::vocab::Vocab;
use crate::data::ids::stable_id;
use crate::error::{Error, Result};

/// The two kinds of behaviour input an encoder can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// Dense behaviour features, `float32 [batch, F]`.
    Features,
    /// Item-id sequences, `int64 [batch, L]`, right-padded with the padding id.
    ItemSequence,
}

/// Which end of a too-long sequence is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// Keep the most recent `max_len` items (default).
    KeepLast,
    /// Keep the oldest `max_len` items.
    KeepFirst,
}

/// Everything groupwise knows about a loaded encoder.
#[derive(Debug, Clone)]
pub struct ModelContract {
    /// Input kind.
    pub kind: InputKind,
    /// Output embedding dimension `D`.
    pub embedding_dim: usize,
    /// True when the model already L2-normalises its output.
    pub normalized: bool,
    /// Name of the output tensor.
    pub output: String,
    /// Features: name of the input tensor.
    pub features_input: Option<String>,
    /// Features: width `F`.
    pub feature_dim: Option<usize>,
    /// Sequences: name of the item-id input.
    pub ids_input: Option<String>,
    /// Sequences: name of the optional float32 `[batch, L]` weights input.
    pub weights_input: Option<String>,
    /// Sequences: name of the optional int64 `[batch]` lengths input.
    pub lengths_input: Option<String>,
    /// Sequences: the id used for padding (default 0).
    pub padding_id: i64,
    /// Sequences: the id unknown items map to; `None` drops unknown items.
    pub unknown_id: Option<i64>,
    /// Sequences: longest sequence the model takes (`None` = any length).
    pub max_len: Option<usize>,
    /// Sequences: which end of a longer sequence is kept.
    pub truncation: Truncation,
    /// Sequences: the model's id input has a static length (`max_len`), so every
    /// batch is padded to exactly that length.
    pub fixed_len: bool,
    /// External item id (stable u64) → model index; `None` means item ids are
    /// model indices already.
    pub(crate) vocab: Option<Vocab>,
    /// Every `groupwise.*` (and other custom) metadata entry, as found.
    pub metadata: BTreeMap<String, String>,
}

const PREFIX: &str = "groupwise.";

impl ModelContract {
    /// Reads and checks the contract of a session created from `path`.
    pub(crate) fn read(session: &Session, path: &Path) -> Result<Self> {
        let bad = |problem: String| Error::ModelContract {
            model: path.to_path_buf(),
            problem,
        };
        let meta = session
            .metadata()
            .map_err(|e| Error::onnx("reading model metadata", e))?;
        let mut metadata = BTreeMap::new();
        for key in meta
            .custom_keys()
            .map_err(|e| Error::onnx("reading model metadata", e))?
        {
            if let Some(v) = meta.custom(&key) {
                metadata.insert(key, v);
            }
        }
        drop(meta);
        let get = |k: &str| metadata.get(&format!("{PREFIX}{k}")).map(String::as_str);
        let parse_usize = |k: &str| -> Result<Option<usize>> {
            get(k)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| {
                        bad(format!("{PREFIX}{k} = {v:?} is not a non-negative integer"))
                    })
                })
                .transpose()
        };
        let parse_i64 = |k: &str| -> Result<Option<i64>> {
            get(k)
                .map(|v| {
                    v.trim()
                        .parse::<i64>()
                        .map_err(|_| bad(format!("{PREFIX}{k} = {v:?} is not an integer")))
                })
                .transpose()
        };

        if let Some(v) = get("contract") {
            if v.trim() != "1" {
                return Err(bad(format!(
                    "contract version {v:?} is not supported by this groupwise (it reads version 1)"
                )));
            }
        }

        let inputs: Vec<(String, TensorElementType, Vec<i64>)> = session
            .inputs()
            .iter()
            .map(|o| {
                tensor_info(o.name(), o.dtype())
                    .ok_or_else(|| bad(format!("input `{}` is not a tensor", o.name())))
            })
            .collect::<Result<_>>()?;
        let outputs: Vec<(String, TensorElementType, Vec<i64>)> = session
            .outputs()
            .iter()
            .map(|o| {
                tensor_info(o.name(), o.dtype())
                    .ok_or_else(|| bad(format!("output `{}` is not a tensor", o.name())))
            })
            .collect::<Result<_>>()?;
        let find_input = |name: &str| inputs.iter().find(|(n, ..)| n == name);

        let kind = match get("input_kind") {
            Some("features") => InputKind::Features,
            Some("item_sequence") => InputKind::ItemSequence,
            Some(other) => {
                return Err(bad(format!(
                    "{PREFIX}input_kind = {other:?}; expected \"features\" or \"item_sequence\""
                )))
            }
            None => match inputs.as_slice() {
                [(_, TensorElementType::Float32, _)] => InputKind::Features,
                [(_, TensorElementType::Int64, _)] => InputKind::ItemSequence,
                _ => {
                    return Err(bad(format!(
                        "no {PREFIX}input_kind metadata and the inputs ({}) are not one float32 or one int64 tensor",
                        describe(&inputs)
                    )))
                }
            },
        };

        // Output.
        let output = match get("output") {
            Some(name) => name.to_string(),
            None => outputs
                .first()
                .map(|o| o.0.clone())
                .ok_or_else(|| bad("the model has no output".into()))?,
        };
        let (_, out_ty, out_shape) =
            outputs.iter().find(|(n, ..)| *n == output).ok_or_else(|| {
                bad(format!(
                    "no output named `{output}` (outputs: {})",
                    describe(&outputs)
                ))
            })?;
        if *out_ty != TensorElementType::Float32 || out_shape.len() != 2 {
            return Err(bad(format!(
                "output `{output}` is {out_ty:?} {out_shape:?}; expected float32 [batch, D]"
            )));
        }
        let embedding_dim = match (parse_usize("embedding_dim")?, out_shape[1]) {
            (Some(d), s) if s > 0 && s as usize != d => {
                return Err(bad(format!(
                    "{PREFIX}embedding_dim = {d} but output `{output}` has static width {s}"
                )))
            }
            (Some(d), _) => d,
            (None, s) if s > 0 => s as usize,
            (None, _) => {
                return Err(bad(format!(
                    "output `{output}` has a dynamic width; set {PREFIX}embedding_dim"
                )))
            }
        };
        if embedding_dim == 0 {
            return Err(bad("embedding dimension is 0".into()));
        }
        let normalized = match get("normalized") {
            None | Some("none") => false,
            Some("l2") => true,
            Some(other) => {
                return Err(bad(format!(
                    "{PREFIX}normalized = {other:?}; expected \"l2\" or \"none\""
                )))
            }
        };

        let mut contract = ModelContract {
            kind,
            embedding_dim,
            normalized,
            output,
            features_input: None,
            feature_dim: None,
            ids_input: None,
            weights_input: None,
            lengths_input: None,
            padding_id: parse_i64("padding_id")?.unwrap_or(0),
            unknown_id: parse_i64("unknown_id")?,
            max_len: parse_usize("max_len")?.filter(|&l| l > 0),
            truncation: match get("truncation") {
                None | Some("keep_last") => Truncation::KeepLast,
                Some("keep_first") => Truncation::KeepFirst,
                Some(other) => {
                    return Err(bad(format!(
                        "{PREFIX}truncation = {other:?}; expected \"keep_last\" or \"keep_first\""
                    )))
                }
            },
            fixed_len: false,
            vocab: None,
            metadata: BTreeMap::new(),
        };

        match kind {
            InputKind::Features => {
                let name = get("input.features")
                    .map(str::to_string)
                    .or_else(|| find_input("features").map(|i| i.0.clone()))
                    .or_else(|| single_of(&inputs, TensorElementType::Float32))
                    .or_else(|| only(&inputs))
                    .ok_or_else(|| bad(format!("set {PREFIX}input.features: cannot tell which input takes the features")))?;
                let (_, ty, shape) = find_input(&name).ok_or_else(|| {
                    bad(format!(
                        "no input named `{name}` (inputs: {})",
                        describe(&inputs)
                    ))
                })?;
                if *ty != TensorElementType::Float32 || shape.len() != 2 {
                    return Err(bad(format!(
                        "input `{name}` is {ty:?} {shape:?}; expected float32 [batch, F]"
                    )));
                }
                let dim = match (parse_usize("feature_dim")?, shape[1]) {
                    (Some(f), s) if s > 0 && s as usize != f => {
                        return Err(bad(format!(
                            "{PREFIX}feature_dim = {f} but input `{name}` has static width {s}"
                        )))
                    }
                    (Some(f), _) => f,
                    (None, s) if s > 0 => s as usize,
                    (None, _) => {
                        return Err(bad(format!(
                            "input `{name}` has a dynamic width; set {PREFIX}feature_dim"
                        )))
                    }
                };
                contract.features_input = Some(name);
                contract.feature_dim = Some(dim);
                if inputs.len() != 1 {
                    return Err(bad(format!(
                        "a features model takes exactly one input; this one has {}",
                        describe(&inputs)
                    )));
                }
            }
            InputKind::ItemSequence => {
                let name = get("input.ids")
                    .map(str::to_string)
                    .or_else(|| find_input("item_ids").map(|i| i.0.clone()))
                    .or_else(|| single_of(&inputs, TensorElementType::Int64))
                    .or_else(|| only(&inputs))
                    .ok_or_else(|| {
                        bad(format!(
                            "set {PREFIX}input.ids: cannot tell which input takes the item ids"
                        ))
                    })?;
                let check =
                    |name: &str, want: TensorElementType, rank: usize, what: &str| -> Result<()> {
                        let (_, ty, shape) = find_input(name).ok_or_else(|| {
                            bad(format!(
                                "no input named `{name}` (inputs: {})",
                                describe(&inputs)
                            ))
                        })?;
                        if *ty != want || shape.len() != rank {
                            return Err(bad(format!(
                                "input `{name}` is {ty:?} {shape:?}; expected {what}"
                            )));
                        }
                        Ok(())
                    };
                check(&name, TensorElementType::Int64, 2, "int64 [batch, L]")?;
                let (_, _, shape) =
                    find_input(&name).ok_or_else(|| bad(format!("no input `{name}`")))?;
                if shape[1] > 0 {
                    // A model with a fixed sequence length takes exactly that length.
                    contract.max_len = Some(shape[1] as usize);
                    contract.fixed_len = true;
                }
                contract.ids_input = Some(name);
                if let Some(w) = get("input.weights") {
                    check(w, TensorElementType::Float32, 2, "float32 [batch, L]")?;
                    contract.weights_input = Some(w.to_string());
                }
                if let Some(l) = get("input.lengths") {
                    check(l, TensorElementType::Int64, 1, "int64 [batch]")?;
                    contract.lengths_input = Some(l.to_string());
                }
                let known: Vec<&str> = [
                    &contract.ids_input,
                    &contract.weights_input,
                    &contract.lengths_input,
                ]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect();
                if let Some((extra, ..)) =
                    inputs.iter().find(|(n, ..)| !known.contains(&n.as_str()))
                {
                    return Err(bad(format!(
                        "input `{extra}` is not described by the metadata (set {PREFIX}input.weights or {PREFIX}input.lengths)"
                    )));
                }
            }
        }

        // Vocabulary: inline list or a file next to the model.
        let vocab_text = match (get("vocab"), get("vocab_file")) {
            (Some(v), _) => Some(v.to_string()),
            (None, Some(f)) => {
                let p = path.parent().unwrap_or(Path::new(".")).join(f);
                Some(crate::files::read_text(&p, None)?)
            }
            (None, None) => None,
        };
        if let Some(text) = vocab_text {
            let offset = parse_i64("vocab_offset")?.unwrap_or(0);
            let mut vocab = FxHashMap::default();
            for (i, raw) in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .enumerate()
            {
                let index = offset + i as i64;
                if vocab.insert(stable_id(raw), index).is_some() {
                    return Err(bad(format!("item {raw:?} appears twice in the vocabulary")));
                }
            }
            if let Some(fd) = contract.feature_dim {
                if kind == InputKind::Features && vocab.values().any(|&i| i < 0 || i as usize >= fd)
                {
                    return Err(bad(
                        "a vocabulary index falls outside the feature width".into()
                    ));
                }
            }
            contract.vocab = Some(Vocab::from_pairs(vocab));
        }
        contract.metadata = metadata;
        Ok(contract)
    }

    /// Model index of an external item id, or `None` if the item is unknown.
    #[inline]
    pub fn item_index(&self, item: u64) -> Option<i64> {
        match &self.vocab {
            Some(v) => v.get(item),
            None => i64::try_from(item).ok(),
        }
    }

    /// The model index an item is fed as, by the documented rule: its
    /// vocabulary index; an unknown item (or one mapping to the padding id)
    /// becomes `unknown_id`, or `None` (dropped) when the model has none. The
    /// flag says whether the item was unknown.
    #[inline]
    pub fn feed_index(&self, item: u64) -> (Option<i64>, bool) {
        match self.item_index(item) {
            Some(ix) if ix != self.padding_id => (Some(ix), false),
            _ => (self.unknown_id, true),
        }
    }

    /// Number of items the vocabulary knows (0 without a vocabulary).
    pub fn vocab_len(&self) -> usize {
        self.vocab.as_ref().map_or(0, Vocab::len)
    }
}

fn tensor_info(name: &str, dtype: &ValueType) -> Option<(String, TensorElementType, Vec<i64>)> {
    match dtype {
        ValueType::Tensor { ty, shape, .. } => {
            Some((name.to_string(), *ty, shape.iter().copied().collect()))
        }
        _ => None,
    }
}

fn single_of(
    inputs: &[(String, TensorElementType, Vec<i64>)],
    ty: TensorElementType,
) -> Option<String> {
    let mut it = inputs.iter().filter(|(_, t, _)| *t == ty);
    match (it.next(), it.next()) {
        (Some((n, ..)), None) => Some(n.clone()),
        _ => None,
    }
}

fn only(inputs: &[(String, TensorElementType, Vec<i64>)]) -> Option<String> {
    match inputs {
        [(n, ..)] => Some(n.clone()),
        _ => None,
    }
}

fn describe(list: &[(String, TensorElementType, Vec<i64>)]) -> String {
    list.iter()
        .map(|(n, t, s)| format!("`{n}` {t:?} {s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
