//! `codectx bench`: measurements that belong in docs/BENCHMARKS.md, never in tests.

pub mod embed;
pub mod index;
pub mod reindex;
pub mod vectors;

use crate::config::Config;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Index throughput, peak memory and search latency on a corpus, against a
    /// read-every-byte reference (and ripgrep when installed) measured in the same run.
    Index {
        /// The corpus directory (see benches/corpus.sh).
        #[arg(long)]
        corpus: PathBuf,
        /// Search queries to time after indexing.
        #[arg(long, default_value_t = 500)]
        queries: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Embedding throughput of the indexing pipeline against raw model calls on the same
    /// chunks, and the model calls of a re-index of the unchanged tree (expected: zero).
    Embed {
        /// A directory to index and embed (a few hundred chunks take about a minute here).
        #[arg(long)]
        corpus: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reindex cost after commits of 1, 10 and 100 files of real edits (two releases of a
    /// package) against a full index of the same commit, with a warm embedding cache.
    Reindex {
        /// The older release's source tree (see benches/reindex.sh).
        #[arg(long)]
        old: PathBuf,
        /// The newer release's source tree.
        #[arg(long)]
        new: PathBuf,
        /// Scratch directory for the history and its clones (emptied first).
        #[arg(long)]
        work: PathBuf,
        /// Skip the full index with an empty embedding cache (the slow part).
        #[arg(long)]
        no_cold: bool,
        #[arg(long)]
        json: bool,
    },
    /// Vector search through the HNSW index against exact search on the same store:
    /// latency and recall@10.
    Vectors {
        #[arg(long, default_value_t = 100_000)]
        points: usize,
        #[arg(long, default_value_t = 384)]
        dims: usize,
        #[arg(long, default_value_t = 500)]
        queries: usize,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(which: BenchCommand, config: Config) -> crate::Result<()> {
    match which {
        BenchCommand::Index {
            corpus,
            queries,
            json,
        } => index::run(&corpus, queries, json, config),
        BenchCommand::Embed { corpus, json } => embed::run(&corpus, json, config),
        BenchCommand::Reindex {
            old,
            new,
            work,
            no_cold,
            json,
        } => reindex::run(
            &old,
            &new,
            &work,
            reindex::ReindexBench { cold: !no_cold },
            json,
            config,
        ),
        BenchCommand::Vectors {
            points,
            dims,
            queries,
            json,
        } => vectors::run(points, dims, queries, json),
    }
}

/// Peak resident set size of this process, in bytes (Linux `VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The value at quantile `q` (0..=1) of sorted samples.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}
