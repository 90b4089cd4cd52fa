//! A host service's view of groupwise: load the reference encoder, encode users
//! from an interaction log, index them, and answer "users like this one" from
//! several threads at once while new users keep arriving.
//!
//! ```text
//! scripts/setup.sh   # ONNX Runtime + MovieLens 100K into .groupwise/
//! cargo run --release -p groupwise --example similar_users -- \
//!     .groupwise/data/ml-100k/ml-100k.inter models/ml100k-seq.onnx
//! ```

use std::error::Error;

use groupwise::data::{Interactions, InteractionsSpec};
use groupwise::{Encoder, EncoderOptions, IndexConfig, SearchOptions, UserIndex};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let log_path = args
        .next()
        .ok_or("usage: similar_users <interactions.tsv> <encoder.onnx>")?;
    let model = args
        .next()
        .ok_or("usage: similar_users <interactions.tsv> <encoder.onnx>")?;

    // Logs with user_id / item_id / rating / timestamp columns.
    let log = Interactions::load(&log_path, &InteractionsSpec::movielens())?;
    let histories = log.histories();
    let (first, later) = histories.split_at(histories.len() * 9 / 10);

    // One encoder and one index, shared by every thread (both are Send + Sync).
    let encoder = Encoder::load(&model, &EncoderOptions::default())?;
    let index = UserIndex::new(IndexConfig::new(encoder.dim()))?;
    let enc = encoder.encode_histories(first, false)?;
    let ids: Vec<u64> = first.iter().map(|h| h.user).collect();
    index.upsert_batch(&ids, &enc.embeddings)?;
    println!("indexed {} users", index.len());

    std::thread::scope(|s| -> Result<(), Box<dyn Error + Send + Sync>> {
        // A writer: users that arrive while the service runs.
        let writer = s.spawn(|| -> Result<(), groupwise::Error> {
            for h in later {
                let e = encoder.encode_histories(std::slice::from_ref(h), false)?;
                index.upsert(h.user, e.row(0))?;
            }
            Ok(())
        });
        // Readers: "users like this one" requests.
        let readers: Vec<_> = (0..2)
            .map(|t| {
                let (index, ids) = (&index, &ids);
                s.spawn(move || -> Result<usize, groupwise::Error> {
                    let mut served = 0;
                    for &u in ids.iter().skip(t).step_by(2).take(200) {
                        let similar = index.neighbors(u, 10, &SearchOptions::default())?;
                        served += usize::from(!similar.is_empty());
                    }
                    Ok(served)
                })
            })
            .collect();
        writer.join().map_err(|_| "writer thread panicked")??;
        for r in readers {
            let served = r.join().map_err(|_| "reader thread panicked")??;
            println!("a reader served {served} requests");
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;

    let probe = histories[0].user;
    println!(
        "users most like user {}:",
        log.users.name(probe).unwrap_or("?")
    );
    for n in index.neighbors(probe, 5, &SearchOptions::default())? {
        println!(
            "  {:>6}  {:.3}",
            log.users.name(n.id).unwrap_or("?"),
            n.similarity
        );
    }
    println!("index now holds {} users", index.len());
    Ok(())
}
