//! The command line: a thin client of `Engine`. Parses flags into config structs, prints
//! results for people (or JSON for programs), and maps errors to exit codes.

use crate::config::Config;
use crate::engine::{Engine, IndexReport, Progress, RepoStatus, SearchResponse};
use crate::error::{Error, ErrorKind};
use crate::model::Language;
use crate::retrieve::{SearchMode, SearchRequest};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;

/// Exit status for success.
pub const EXIT_OK: i32 = 0;
/// Exit status for a failure while running (I/O, corrupt data, internal errors).
pub const EXIT_FAILURE: i32 = 1;
/// Exit status for bad input: usage errors, invalid arguments.
pub const EXIT_USAGE: i32 = 2;
/// Exit status for something missing: no such repository, not indexed yet.
pub const EXIT_NOT_FOUND: i32 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "codectx",
    version,
    about = "Semantic code index and context retrieval for coding agents"
)]
pub struct Cli {
    /// Where indexes live (default: the user's data directory, then `codectx`).
    #[arg(long, global = true, env = "CODECTX_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Index a repository (or any directory) so it can be searched.
    Index {
        /// The repository root.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Skip files larger than this many bytes.
        #[arg(long, env = "CODECTX_MAX_FILE_BYTES")]
        max_file_bytes: Option<u64>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// List every skipped file and diagnostic.
        #[arg(long, short)]
        verbose: bool,
        /// Build the lexical index only; skip embedding (hybrid search then answers lexically).
        #[arg(long)]
        no_embed: bool,
    },
    /// Search an indexed repository.
    Search {
        /// What to look for: words, identifiers, a description.
        query: String,
        /// The repository root.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// How many hits.
        #[arg(short, default_value_t = 10)]
        k: usize,
        /// Only this language (rust, python, javascript, typescript, tsx, go, java, c, cpp,
        /// csharp, ruby, php, bash, markdown, config, text).
        #[arg(long)]
        lang: Option<String>,
        /// Only paths matching this glob (`*` crosses directories: `*.rs`, `src/**/test_*`).
        #[arg(long)]
        path: Option<String>,
        /// lexical (BM25), dense (embeddings) or hybrid (both, fused by reciprocal rank).
        #[arg(long, default_value = "hybrid")]
        mode: String,
        /// Print hits as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what an index reflects and whether it is stale.
    Status {
        /// The repository root.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks (numbers go to docs/BENCHMARKS.md, never into tests).
    Bench {
        #[command(subcommand)]
        which: crate::bench::BenchCommand,
    },
}

/// Runs the command line and returns the process exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    init_tracing();
    match run(cli) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e}");
            exit_code(&e)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CODECTX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Maps an error kind to the documented exit status.
pub fn exit_code(e: &Error) -> i32 {
    match e.kind() {
        ErrorKind::InvalidInput => EXIT_USAGE,
        ErrorKind::NotFound | ErrorKind::FailedPrecondition => EXIT_NOT_FOUND,
        _ => EXIT_FAILURE,
    }
}

fn config(cli_data_dir: Option<PathBuf>) -> crate::Result<Config> {
    let mut config = Config::from_env()?;
    if let Some(dir) = cli_data_dir {
        config.data_dir = dir;
    }
    Ok(config)
}

fn run(cli: Cli) -> crate::Result<()> {
    let mut config = config(cli.data_dir)?;
    match cli.command {
        Command::Index {
            path,
            max_file_bytes,
            json,
            verbose,
            no_embed,
        } => {
            if let Some(max) = max_file_bytes {
                config.walk.max_file_bytes = max;
            }
            let engine = Engine::new(config)?;
            let progress = Bar::new(!json);
            let report = engine.index(&path, &progress)?;
            if !json {
                print_index_report(&report, verbose);
            }
            // The lexical index is committed and searchable; embedding follows and can be
            // interrupted at any time (each batch is kept).
            let embedded = if no_embed {
                None
            } else {
                match engine.embed(&path, &progress) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        eprintln!("warning: embedding skipped, search stays lexical: {e}");
                        None
                    }
                }
            };
            if json {
                print_json(&serde_json::json!({ "index": report, "embed": embedded }))
            } else {
                if let Some(r) = embedded {
                    println!(
                        "  embeddings     {} vectors for {} chunks ({:.0}% coverage): {} embedded now, {} from cache, in {:.1} s [{}]",
                        r.vectors,
                        r.chunks,
                        r.coverage * 100.0,
                        r.embedded,
                        r.from_cache,
                        r.seconds,
                        r.model
                    );
                }
                Ok(())
            }
        }
        Command::Search {
            query,
            repo,
            k,
            lang,
            path,
            mode,
            json,
        } => {
            let mode = SearchMode::parse(&mode).ok_or_else(|| {
                Error::invalid(format!(
                    "--mode {mode:?}: expected lexical, dense or hybrid"
                ))
            })?;
            let language = match lang {
                Some(l) => Some(Language::parse(&l).ok_or_else(|| {
                    let known: Vec<&str> = Language::ALL.iter().map(|l| l.name()).collect();
                    Error::invalid(format!(
                        "--lang {l:?}: unknown language (known: {})",
                        known.join(", ")
                    ))
                })?),
                None => None,
            };
            let engine = Engine::new(config)?;
            let request = SearchRequest {
                query,
                k,
                language,
                path_glob: path,
                mode,
                fusion: Default::default(),
            };
            let response = engine.search(&repo, &request)?;
            if json {
                print_json(&response)
            } else {
                print_search(&response);
                Ok(())
            }
        }
        Command::Status { repo, json } => {
            let engine = Engine::new(config)?;
            let status = engine.status(&repo)?;
            if json {
                print_json(&status)
            } else {
                print_status(&status);
                Ok(())
            }
        }
        Command::Bench { which } => crate::bench::run(which, config),
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> crate::Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Internal(format!("serialising output: {e}")))?;
    println!("{text}");
    Ok(())
}

fn short(commit: &Option<String>) -> String {
    match commit {
        Some(c) => c.chars().take(10).collect(),
        None => "(not a git commit)".into(),
    }
}

fn print_index_report(r: &IndexReport, verbose: bool) {
    if let Some(reason) = &r.rebuilt {
        println!("note: the old index was unusable ({reason}) and was rebuilt");
    }
    let branch = r
        .branch
        .as_deref()
        .map(|b| format!(" ({b})"))
        .unwrap_or_default();
    let dirty = if r.dirty {
        " + uncommitted changes"
    } else {
        ""
    };
    println!(
        "indexed {} @ {}{branch}{dirty}",
        r.repo_root,
        short(&r.head)
    );
    println!("  files indexed  {}", r.files_indexed);
    let reasons: Vec<String> = r
        .skipped_by_reason
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if reasons.is_empty() {
        println!("  files skipped  0");
    } else {
        println!(
            "  files skipped  {} ({})",
            r.files_skipped,
            reasons.join(", ")
        );
    }
    println!("  chunks         {}", r.chunks);
    let mb = r.bytes as f64 / 1e6;
    println!(
        "  source         {mb:.2} MB in {:.2} s ({:.1} MB/s)",
        r.seconds,
        mb / r.seconds.max(1e-9)
    );
    let fallbacks = r.diagnostics.iter().filter(|d| d.fallback).count();
    if fallbacks > 0 {
        println!("  fell back to line windows: {fallbacks} files");
    }
    let limit = if verbose { usize::MAX } else { 10 };
    for s in r.skipped.iter().take(limit) {
        println!("  skipped {}: {} ({})", s.path, s.reason, s.detail);
    }
    if r.skipped.len() > limit {
        println!(
            "  ... and {} more skipped (use --verbose)",
            r.skipped.len() - limit
        );
    }
    for d in r
        .diagnostics
        .iter()
        .filter(|d| verbose || d.fallback)
        .take(limit)
    {
        println!("  note {}: {}", d.path, d.message);
    }
}

fn print_search(r: &SearchResponse) {
    for hit in &r.hits {
        let c = &hit.chunk;
        let name = if c.symbol.is_empty() {
            String::new()
        } else {
            format!("  {}", c.symbol)
        };
        let lanes = match (hit.lexical_rank, hit.dense_rank) {
            (Some(l), Some(d)) => format!("  (lexical #{l}, dense #{d})"),
            (Some(l), None) if r.mode == SearchMode::Hybrid => format!("  (lexical #{l})"),
            (None, Some(d)) if r.mode == SearchMode::Hybrid => format!("  (dense #{d})"),
            _ => String::new(),
        };
        println!(
            "{}:{}-{}{name}  [{} {}]  score {:.3}{lanes}",
            c.path, c.span.start_line, c.span.end_line, c.language, c.kind, hit.score
        );
        if !c.scope.is_empty() {
            println!("    in {}", c.scope);
        }
        for line in c.content.lines().take(4) {
            let line: String = line.chars().take(120).collect();
            println!("    | {line}");
        }
    }
    let dirty = if r.indexed_dirty {
        " + uncommitted changes"
    } else {
        ""
    };
    println!(
        "{} hits in {} @ {}{dirty} ({:.1} ms)",
        r.hits.len(),
        r.repo_root,
        short(&r.commit),
        r.took_ms
    );
}

fn print_status(s: &RepoStatus) {
    println!("repository  {}", s.repo_root);
    println!("index       {}", s.index_dir);
    match &s.indexed {
        Some(m) => {
            println!(
                "indexed     {}{}",
                short(&m.head),
                if m.dirty {
                    " + uncommitted changes"
                } else {
                    ""
                }
            );
            println!("at          {} (unix seconds)", m.indexed_at);
        }
        None => println!("indexed     never committed"),
    }
    println!("files       {}", s.files);
    println!("chunks      {}", s.chunks);
    println!(
        "vectors     {} ({:.0}% dense coverage)",
        s.vectors,
        s.dense_coverage * 100.0
    );
    println!("HEAD now    {}", short(&s.current_head));
    if s.stale {
        println!("stale       yes: HEAD moved since indexing; run `codectx index`");
    }
    if s.dirty_now {
        println!("dirty       yes: uncommitted changes are not in the index");
    }
}

/// An indicatif bar on a terminal, nothing otherwise.
struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    fn new(enabled: bool) -> Bar {
        if enabled && std::io::stderr().is_terminal() {
            Bar(Some(indicatif::ProgressBar::new(0)))
        } else {
            Bar(None)
        }
    }
}

impl Progress for Bar {
    fn start(&self, phase: &str, total: u64) {
        if let Some(bar) = &self.0 {
            bar.set_length(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} files ({per_sec}, {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(phase.to_string());
        }
    }
    fn advance(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
