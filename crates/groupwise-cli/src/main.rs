//! `groupwise`: the command-line face of the groupwise engine.
//!
//! * `groupwise demo`: the main job, on MovieLens 100K (see README.md).
//! * `groupwise encode`: interactions (or feature rows) → embeddings file.
//! * `groupwise neighbors`: a user's nearest users from an embeddings file.
//! * `groupwise lookalike`: expand a seed segment (seeds file in, ranked users out).
//! * `groupwise segments`: discover segments (assignments, profiles, picture).
//! * `groupwise eval lookalike`: the held-out evaluation of the lookalike scorers.
//! * `groupwise synth`: clustered synthetic vectors for benchmarks.
//! * `groupwise snapshot inspect|check`: what an engine snapshot holds.
//! * `groupwise bench encode|index|lookalike|slates|snapshot`: benchmark rows
//!   (JSON lines) that bench/report.py sets next to the Python peers.

mod alloc;
mod args;
mod bench;
mod bench_engine;
mod bench_slates;
mod columns;
mod demo;
mod embed;
mod encode;
mod errors;
mod eval;
mod eval_segments;
mod eval_slates;
mod lookalike;
mod neighbors;
mod paths;
mod plot;
mod progress;
mod segments;
mod snapshot;
mod synth;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Group personalisation engine: user encoders, user index, lookalike, segments.
#[derive(Parser)]
#[command(name = "groupwise", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the main job on MovieLens 100K: encode every user, index them, show
    /// neighbours with the genres they share, and check the index against exact search.
    Demo(demo::Args),
    /// Encode users into an embeddings file (`.npy` + `.ids.txt`).
    Encode(encode::Args),
    /// Print a user's nearest users from an embeddings file.
    Neighbors(neighbors::Args),
    /// Expand a seed segment with the users most like it (seeds file in, ranked users out).
    Lookalike(lookalike::Args),
    /// Discover segments in an embeddings file: assignments, profiles, a picture.
    Segments(segments::Args),
    /// Built-in evaluations on real data (see EVALUATION.md).
    #[command(subcommand)]
    Eval(eval::Command),
    /// Write clustered synthetic unit vectors (and queries) for benchmarks.
    Synth(synth::Args),
    /// Benchmarks that print JSON lines (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(bench::Command),
    /// Inspect or check an engine snapshot file.
    #[command(subcommand)]
    Snapshot(snapshot::Command),
}

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

fn main() -> ExitCode {
    let root = Cli::command();
    let matches = root.clone().get_matches();
    let cli =
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut root.clone()).exit());
    let result = match cli.command {
        Command::Demo(a) => demo::run(&a),
        Command::Encode(a) => encode::run(&a),
        Command::Neighbors(a) => neighbors::run(&a),
        Command::Lookalike(a) => lookalike::run(&a),
        Command::Segments(a) => segments::run(&a),
        Command::Eval(c) => eval::run(&c),
        Command::Synth(a) => synth::run(&a),
        Command::Bench(c) => bench::run(&c),
        Command::Snapshot(c) => snapshot::run(&c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let command = errors::active_command(&root, &matches);
            eprintln!("error: {}", errors::message(e.as_ref(), &command));
            ExitCode::FAILURE
        }
    }
}
