//! The ONNX encoders: parity with Python onnxruntime on the committed reference
//! outputs, the contract's rules, and every error path.

use groupwise::data::ids::stable_id;
use groupwise::data::UserHistory;
use groupwise::encoder::InputKind;
use groupwise::{Encoder, EncoderOptions, Error, Sequence};
use groupwise_e2e::model;
use serde_json::Value;

const TOL: f32 = 1e-5;

fn load(name: &str) -> Encoder {
    Encoder::load(model(name), &EncoderOptions::default())
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

fn reference(name: &str) -> Value {
    let text =
        std::fs::read_to_string(model(&format!("reference/{name}"))).expect("reference file");
    serde_json::from_str(&text).expect("reference JSON")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_str().expect("string").to_string())
        .collect()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= TOL,
        "{what}: max |rust - python| = {worst:e} > {TOL:e}"
    );
}

/// Rows of a reference case: (external item ids as stable u64, weights, expected embedding).
fn case_rows(case: &Value) -> Vec<(Vec<u64>, Vec<f32>, Vec<f32>)> {
    let ids = case["external_ids"].as_array().expect("external_ids");
    let ws = case["weights"].as_array().expect("weights");
    let embs = case["embeddings"].as_array().expect("embeddings");
    ids.iter()
        .zip(ws)
        .zip(embs)
        .map(|((i, w), e)| {
            (
                strings(i).iter().map(|s| stable_id(s)).collect(),
                floats(w),
                floats(e),
            )
        })
        .collect()
}

#[test]
fn sequence_model_matches_python_onnxruntime() {
    let enc = load("ml100k-seq.onnx");
    let c = enc.contract();
    assert_eq!(c.kind, InputKind::ItemSequence);
    assert_eq!(
        (c.embedding_dim, c.padding_id, c.unknown_id, c.max_len),
        (64, 0, Some(1), Some(200))
    );
    assert!(c.normalized);
    assert_eq!(c.vocab_len(), 1682);

    let doc = reference("ml100k-seq.ref.json");
    let mut checked = 0;
    for case in doc["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let rows = case_rows(case);
        let (full, empty): (Vec<_>, Vec<_>) = rows.iter().partition(|r| !r.0.is_empty());
        let seqs: Vec<Sequence<'_>> = full
            .iter()
            .map(|r| Sequence::weighted(&r.0, &r.1))
            .collect();
        let out = enc
            .encode_sequences(&seqs)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for (i, r) in full.iter().enumerate() {
            assert_close(out.row(i), &r.2, &format!("{name} row {i}"));
            checked += 1;
        }
        match name {
            "unknown_items" => assert_eq!(
                out.stats.unknown_items, 5,
                "3 unknown ids in row 0, 2 in row 1"
            ),
            "long_sequence" => assert_eq!(out.stats.truncated, 1),
            "ragged_batch" => assert_eq!(
                out.stats.truncated, 0,
                "a row of exactly max_len is not truncated"
            ),
            _ => assert_eq!(out.stats.unknown_items, 0, "{name}"),
        }
        if !empty.is_empty() {
            // Python returns a zero vector for an empty row; groupwise refuses it.
            let all: Vec<Sequence<'_>> = rows
                .iter()
                .map(|r| Sequence::weighted(&r.0, &r.1))
                .collect();
            assert!(
                matches!(
                    enc.encode_sequences(&all),
                    Err(Error::EmptySequence { row: 0 })
                ),
                "{name}"
            );
        }
    }
    assert!(checked >= 30, "only {checked} rows checked");
}

#[test]
fn features_model_matches_python_onnxruntime() {
    let enc = load("ml100k-bag.onnx");
    let f = enc.contract().feature_dim.expect("feature dim");
    assert_eq!(f, 1684);
    let doc = reference("ml100k-bag.ref.json");
    for case in doc["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let sparse = case["features"].as_array().expect("features");
        let embs = case["embeddings"].as_array().expect("embeddings");
        let mut rows = Vec::new();
        let mut want = Vec::new();
        for (row, e) in sparse.iter().zip(embs) {
            let entries = row.as_array().expect("row");
            if entries.is_empty() {
                continue;
            }
            let mut dense = vec![0.0f32; f];
            for kv in entries {
                let col = kv[0].as_u64().expect("column") as usize;
                dense[col] = kv[1].as_f64().expect("value") as f32;
            }
            rows.extend(dense);
            want.extend(floats(e));
        }
        let out = enc
            .encode_features(&rows)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_close(&out.embeddings, &want, name);
    }
}

#[test]
fn bag_of_items_and_sequence_models_agree_on_histories() {
    let seq = load("ml100k-seq.onnx");
    let bag = load("ml100k-bag.onnx");
    let doc = reference("ml100k-seq.ref.json");
    let case = &doc["cases"][0];
    let histories: Vec<UserHistory> = case_rows(case)
        .into_iter()
        .enumerate()
        .map(|(u, (items, weights, _))| UserHistory {
            user: u as u64,
            times: (0..items.len()).map(|t| t as f64).collect(),
            items,
            weights,
        })
        .collect();
    let a = seq.encode_histories(&histories, true).expect("seq");
    let b = bag.encode_histories(&histories, true).expect("bag");
    assert_close(&a.embeddings, &b.embeddings, "seq vs bag");
}

#[test]
fn models_without_metadata_follow_the_documented_defaults() {
    // plain_features: y = x W with W[i][j] = (i + 1) * 0.1 - j * 0.05, no groupwise metadata.
    let enc = load("fixtures/plain_features.onnx");
    assert_eq!(enc.contract().kind, InputKind::Features);
    assert_eq!((enc.contract().feature_dim, enc.dim()), (Some(8), 4));
    let x: Vec<f32> = (0..16).map(|i| (i as f32 * 0.3).sin()).collect();
    let out = enc.encode_features(&x).expect("encode");
    for b in 0..2 {
        for j in 0..4 {
            let want: f32 = (0..8)
                .map(|i| x[b * 8 + i] * ((i + 1) as f32 * 0.1 - j as f32 * 0.05))
                .sum();
            assert!((out.row(b)[j] - want).abs() < 1e-5, "row {b} col {j}");
        }
    }

    // plain_sequence: ids are model indices, padding 0, output = sum of rows of E.
    let enc = load("fixtures/plain_sequence.onnx");
    assert_eq!(enc.contract().kind, InputKind::ItemSequence);
    let (a, b) = ([1u64, 2, 4], [3u64]);
    let out = enc
        .encode_sequences(&[Sequence::new(&a), Sequence::new(&b)])
        .expect("encode");
    assert_eq!(out.row(0), &[2.0, 2.0, 1.0]);
    assert_eq!(
        out.row(1),
        &[0.0, 0.0, 1.0],
        "right padding with id 0 adds nothing"
    );
}

#[test]
fn bad_inputs_are_errors_that_name_the_problem() {
    let bag = load("ml100k-bag.onnx");
    let seq = load("ml100k-seq.onnx");

    let err = bag.encode_features(&[0.0; 1683]).expect_err("wrong width");
    assert!(
        matches!(&err, Error::ShapeMismatch { input, expected, .. } if input == "features" && expected.contains("1684")),
        "{err}"
    );

    let mut row = vec![0.0f32; 1684];
    row[7] = f32::NAN;
    assert!(matches!(
        bag.encode_features(&row),
        Err(Error::NonFinite { position: 7, .. })
    ));
    row[7] = f32::INFINITY;
    assert!(matches!(
        bag.encode_features(&row),
        Err(Error::NonFinite { .. })
    ));

    let items = [stable_id("1"), stable_id("2")];
    let err = seq
        .encode_sequences(&[Sequence::weighted(&items, &[1.0])])
        .expect_err("weights length");
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    let err = seq
        .encode_sequences(&[
            Sequence::new(&items),
            Sequence::weighted(&items, &[1.0, f32::NAN]),
        ])
        .expect_err("NaN weight");
    assert!(err.to_string().contains("row 1"), "{err}");
    assert!(matches!(
        seq.encode_sequences(&[Sequence::new(&[])]),
        Err(Error::EmptySequence { row: 0 })
    ));
    assert!(matches!(
        seq.encode_features(&row),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        bag.encode_sequences(&[Sequence::new(&items)]),
        Err(Error::InvalidArgument { .. })
    ));

    // A model that produces NaN is caught on the way out.
    let nan = load("fixtures/nan_output.onnx");
    let err = nan
        .encode_features(&[1.0, 2.0, 3.0, 4.0])
        .expect_err("NaN output");
    assert!(
        matches!(&err, Error::NonFinite { what, .. } if what.contains("output")),
        "{err}"
    );

    // A model whose output is wider at run time than it declared.
    let wide = load("fixtures/wrong_width_at_run_time.onnx");
    assert_eq!(
        wide.encode_features(&[1.0, 2.0, 3.0, 4.0])
            .expect("4 wide is fine")
            .dim,
        4
    );
    let err = wide
        .encode_features(&[1.0, 2.0, 3.0, 5.0])
        .expect_err("5 wide");
    assert!(
        matches!(&err, Error::ShapeMismatch { got, .. } if got.contains('5')),
        "{err}"
    );
}

#[test]
fn models_that_break_the_contract_are_rejected_at_load() {
    let cases = [
        ("kind_mismatch", "expected float32 [batch, F]"),
        ("dim_mismatch", "embedding_dim = 32"),
        ("future_contract", "contract version"),
        ("int32_ids", "not one float32 or one int64"),
        ("rank1_output", "expected float32 [batch, D]"),
    ];
    for (name, needle) in cases {
        match Encoder::load(
            model(&format!("fixtures/{name}.onnx")),
            &EncoderOptions::default(),
        ) {
            Err(Error::ModelContract { problem, .. }) => {
                assert!(problem.contains(needle), "{name}: {problem}")
            }
            other => panic!("{name}: expected a contract error, got {other:?}"),
        }
    }
    let err = Encoder::load(model("does-not-exist.onnx"), &EncoderOptions::default())
        .expect_err("missing");
    assert!(matches!(err, Error::Io { .. }), "{err}");
    // Not an ONNX file at all.
    let err = Encoder::load(model("README.md"), &EncoderOptions::default()).expect_err("not onnx");
    assert!(matches!(err, Error::Onnx { .. }), "{err}");
}

#[test]
fn one_encoder_serves_many_threads_with_the_same_answers() {
    let enc = load("ml100k-seq.onnx");
    let doc = reference("ml100k-seq.ref.json");
    let rows = case_rows(&doc["cases"][0]);
    std::thread::scope(|s| {
        for t in 0..6 {
            let (enc, rows) = (&enc, &rows);
            s.spawn(move || {
                for round in 0..40 {
                    let r = &rows[(t * 7 + round) % rows.len()];
                    let out = enc
                        .encode_sequences(&[Sequence::weighted(&r.0, &r.1)])
                        .expect("encode");
                    assert_close(out.row(0), &r.2, "threaded");
                }
            });
        }
    });
    assert_eq!(enc.stats().rows, 240);
}

#[test]
fn large_batches_are_split_and_reassembled_in_order() {
    let enc = Encoder::load(
        model("ml100k-seq.onnx"),
        &EncoderOptions {
            batch_size: 3,
            ..Default::default()
        },
    )
    .expect("load");
    let doc = reference("ml100k-seq.ref.json");
    let rows = case_rows(&doc["cases"][0]);
    let seqs: Vec<Sequence<'_>> = rows
        .iter()
        .map(|r| Sequence::weighted(&r.0, &r.1))
        .collect();
    let out = enc.encode_sequences(&seqs).expect("encode");
    for (i, r) in rows.iter().enumerate() {
        assert_close(out.row(i), &r.2, &format!("row {i}"));
    }
}
