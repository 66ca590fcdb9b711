//! `codectx bench`: measurements that belong in docs/BENCHMARKS.md, never in tests.

pub mod agent;
pub mod context;
pub mod embed;
pub mod gate;
pub mod index;
pub mod load;
pub mod metrics;
pub mod mine;
pub mod quality;
pub mod reindex;
pub mod vectors;

use crate::config::Config;
use clap::Subcommand;
use std::path::PathBuf;

/// A seeded xorshift64 generator: the benchmarks' synthetic data, shuffles and resamples
/// come out the same on every run.
pub struct Xorshift(u64);

impl Xorshift {
    pub fn new(seed: u64) -> Xorshift {
        Xorshift(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Open-loop constant-rate search and get-context traffic over loopback gRPC against an
    /// indexed corpus: p50/p99/p99.9 per offered rate (HDR histograms), errors by code,
    /// the knee, and a run at 80% of the knee.
    Load {
        /// An indexed corpus (index it first with `codectx index`).
        #[arg(long)]
        corpus: PathBuf,
        /// Offered rates, requests per second, tried in order until the knee.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "10,20,40,60,80,100,130,160,200,250,300"
        )]
        rates: Vec<f64>,
        /// Seconds per rate.
        #[arg(long, default_value_t = 6.0)]
        seconds: f64,
        /// Share of searches; the rest are get-context calls.
        #[arg(long, default_value_t = 0.8)]
        search_share: f64,
        /// get-context budget (tokens).
        #[arg(long, default_value_t = 4000)]
        budget: u32,
        /// A running server instead of one in this process.
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The gate runner against the same commands run by hand (worktrees, semgrep, tests,
    /// coverage on base and head), alternately, on a generated Python repository.
    Gate {
        #[arg(long, default_value_t = 40)]
        modules: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long)]
        json: bool,
    },
    /// The agent loop's own cost per iteration (model and tests excluded) on a real
    /// repository through a real gRPC server, against one GetContext call in the same run.
    Agent {
        /// The repository to work on (a scratch branch and worktree are made and removed).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        #[arg(long, default_value_t = 20)]
        iterations: usize,
        #[arg(long)]
        json: bool,
    },
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
        /// Real embeddings instead of synthetic ones: every vector of the configured model
        /// in these data directories' embedding caches (repeatable).
        #[arg(long = "real-from", value_name = "DATA_DIR")]
        real_from: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Context-pack latency on an already indexed corpus, against a hybrid search of the
    /// same tasks (tasks are made from the corpus's own doc comments).
    Context {
        #[arg(long)]
        corpus: PathBuf,
        #[arg(long, default_value_t = 200)]
        queries: usize,
        #[arg(long, default_value_t = 8000)]
        budget: usize,
        /// Tasks from a JSONL dataset's `query` fields (real issue texts, say) instead of
        /// tasks made from the corpus's doc comments.
        #[arg(long)]
        tasks: Option<PathBuf>,
        /// `lexical` or `hybrid` (searches and packs).
        #[arg(long, default_value = "hybrid")]
        mode: String,
        #[arg(long)]
        json: bool,
    },
    /// Retrieval quality on a JSONL dataset (from `mine-commits` or `mine-docs`): file
    /// Acc@k and Recall@k, MRR, nDCG@10, chunk recall per ranking, and gold-line recall of
    /// context packs per budget, against whole-file BM25 ranking and packing.
    Quality {
        #[arg(long)]
        dataset: PathBuf,
        /// Rankings to measure, and `context` for packs (one per ranking mode).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "lexical,dense,hybrid,context"
        )]
        modes: Vec<String>,
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "2000,4000,8000,16000,32000"
        )]
        budgets: Vec<usize>,
        #[arg(long, default_value = "cl100k")]
        tokenizer: String,
        /// Only the first N usable entries.
        #[arg(long)]
        limit: Option<usize>,
        /// At most N entries per repository and commit (samples every package).
        #[arg(long)]
        per_repo: Option<usize>,
        /// Only entries of this split (`dev`, `test`).
        #[arg(long)]
        split: Option<String>,
        /// Also write quality.md, quality.json and quality.svg (the plot) here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write each query's candidate files, their ranking features and gold labels
        /// here (JSONL): the training data of `benches/train-ranker.sh`.
        #[arg(long)]
        features_out: Option<PathBuf>,
        /// The file ranking model: a model file, `rrf`, or `shipped` (default; also
        /// `CODECTX_RANKER`).
        #[arg(long)]
        ranker: Option<String>,
        /// Reciprocal rank fusion: k and the lanes' weights.
        #[arg(long, default_value_t = 60.0)]
        rrf_k: f32,
        #[arg(long, default_value_t = 1.0)]
        lexical_weight: f32,
        #[arg(long, default_value_t = 1.0)]
        dense_weight: f32,
        #[arg(long)]
        json: bool,
    },
    /// Mines a dataset from a repository's history: commit message -> modified source files,
    /// the parent commit indexed. Writes JSONL to stdout or --out.
    MineCommits {
        repo: PathBuf,
        #[arg(long, default_value_t = 500)]
        max: usize,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Mines a doc-comment dataset: the first sentence of each function's doc -> the
    /// function, from package sources under `--sources` (`rust/<name>/`, `python/<name>/`,
    /// see benches/docs.sh), with every doc comment stripped from the copies indexed
    /// (written under `--work/corpus`). Writes JSONL to --out.
    MineDocs {
        #[arg(long)]
        sources: PathBuf,
        #[arg(long)]
        work: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(which: BenchCommand, config: Config) -> crate::Result<()> {
    match which {
        BenchCommand::Index {
            corpus,
            queries,
            json,
        } => index::run(&corpus, queries, json, config),
        BenchCommand::Load {
            corpus,
            rates,
            seconds,
            search_share,
            budget,
            server,
            json,
        } => load::run(
            &corpus,
            load::LoadOptions {
                rates,
                step_seconds: seconds,
                search_share: search_share.clamp(0.0, 1.0),
                budget,
                server,
                json,
            },
            config,
        ),
        BenchCommand::Gate {
            modules,
            rounds,
            json,
        } => gate::run(modules, rounds, json),
        BenchCommand::Agent {
            repo,
            iterations,
            json,
        } => agent::run(&repo, iterations, json, config),
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
            real_from,
            json,
        } => vectors::run(points, dims, queries, &real_from, &config, json),
        BenchCommand::Context {
            corpus,
            queries,
            budget,
            tasks,
            mode,
            json,
        } => {
            let mode = crate::retrieve::SearchMode::parse(&mode).ok_or_else(|| {
                crate::Error::invalid(format!("--mode: {mode:?} is not lexical or hybrid"))
            })?;
            let options = context::ContextBenchOptions {
                queries,
                budget,
                tasks,
                mode,
            };
            context::run(&corpus, &options, json, config)
        }
        BenchCommand::Quality {
            dataset,
            modes,
            budgets,
            tokenizer,
            limit,
            per_repo,
            split,
            out,
            features_out,
            ranker,
            rrf_k,
            lexical_weight,
            dense_weight,
            json,
        } => {
            let mut config = config;
            match ranker.as_deref() {
                None => {}
                Some("shipped") => config.ranker = crate::config::RankerChoice::Shipped,
                Some("rrf") => config.ranker = crate::config::RankerChoice::Rrf,
                Some(path) => config.ranker = crate::config::RankerChoice::File(path.into()),
            }
            let mut search_modes = Vec::new();
            let mut context = false;
            for m in &modes {
                match m.as_str() {
                    "context" => context = true,
                    other => search_modes.push(
                        crate::retrieve::SearchMode::parse(other).ok_or_else(|| {
                            crate::Error::invalid(format!(
                                "--modes: {other:?} is not lexical, dense, hybrid or context"
                            ))
                        })?,
                    ),
                }
            }
            if context && search_modes.is_empty() {
                search_modes.push(crate::retrieve::SearchMode::Hybrid);
            }
            let options = quality::QualityOptions {
                dataset,
                modes: search_modes,
                context,
                budgets,
                tokenizer,
                limit,
                per_repo,
                split,
                out: out.clone(),
                fusion: crate::retrieve::Fusion {
                    k: rrf_k,
                    lexical_weight,
                    dense_weight,
                },
                features_out,
            };
            let engine = crate::Engine::new(config)?;
            let report = quality::run(&engine, &options)?;
            let md = quality::markdown(&report);
            if let Some(dir) = &out {
                std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
                let write = |name: &str, text: String| {
                    let path = dir.join(name);
                    std::fs::write(&path, text).map_err(|e| crate::Error::io(&path, e))
                };
                write("quality.md", md.clone())?;
                write(
                    "quality.json",
                    serde_json::to_string_pretty(&report)
                        .map_err(|e| crate::Error::Internal(e.to_string()))?,
                )?;
                write("quality.svg", quality::svg(&report))?;
            }
            if json {
                crate::cli::out::json(
                    &serde_json::to_string_pretty(&report)
                        .map_err(|e| crate::Error::Internal(e.to_string()))?,
                );
            } else {
                crate::out!("{md}");
            }
            Ok(())
        }
        BenchCommand::MineCommits { repo, max, out } => {
            let options = mine::CommitMining {
                max,
                ..Default::default()
            };
            let (entries, report) = mine::mine_commits(&repo, &options)?;
            write_jsonl(&entries, out.as_deref())?;
            eprintln!(
                "{} entries from {} commits; skipped: {:?}",
                report.kept, report.considered, report.skipped
            );
            Ok(())
        }
        BenchCommand::MineDocs { sources, work, out } => {
            let mut packages = Vec::new();
            for (dir, language) in [
                ("rust", crate::model::Language::Rust),
                ("python", crate::model::Language::Python),
            ] {
                let Ok(read) = std::fs::read_dir(sources.join(dir)) else {
                    continue;
                };
                for entry in read.flatten() {
                    if entry.path().is_dir() {
                        packages.push(mine::Package {
                            name: entry.file_name().to_string_lossy().into_owned(),
                            language,
                            root: entry.path(),
                        });
                    }
                }
            }
            if packages.is_empty() {
                return Err(crate::Error::NotFound(format!(
                    "no packages under {}/rust or {}/python (run benches/docs.sh)",
                    sources.display(),
                    sources.display()
                )));
            }
            let (entries, report) = mine::mine_docs(&packages, &work)?;
            write_jsonl(&entries, Some(&out))?;
            eprintln!(
                "{} entries from {} functions in {} packages; skipped: {:?}",
                report.kept,
                report.considered,
                packages.len(),
                report.skipped
            );
            Ok(())
        }
    }
}

/// Writes dataset entries as JSON lines to a file, or stdout.
fn write_jsonl(entries: &[quality::Entry], out: Option<&std::path::Path>) -> crate::Result<()> {
    let mut text = String::new();
    for e in entries {
        text.push_str(
            &serde_json::to_string(e).map_err(|e| crate::Error::Internal(e.to_string()))?,
        );
        text.push('\n');
    }
    match out {
        Some(path) => std::fs::write(path, text).map_err(|e| crate::Error::io(path, e)),
        None => {
            crate::out!("{text}");
            Ok(())
        }
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
