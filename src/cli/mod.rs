//! The command line: a thin client of `Engine`. Parses flags into config structs, prints
//! results for people (or JSON for programs), and maps errors to exit codes.

use crate::config::Config;
use crate::engine::{Engine, IndexOptions, IndexReport, Progress, RepoStatus, SearchResponse};
use crate::error::{Error, ErrorKind};
use crate::model::Language;
use crate::retrieve::context::ContextRequest;
use crate::retrieve::{SearchMode, SearchRequest};
use clap::{Parser, Subcommand};
pub mod flow;
pub mod governance;
pub mod monitor;
pub mod out;
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

/// How long a hook-started writer waits for more of a burst before it reads the queue.
const COALESCE_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(300);

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
        /// The git ref to index (branch, tag, commit); default: the checked-out one, which
        /// searches then read by default. Refs share the storage of the files they share.
        #[arg(long = "ref", value_name = "REF")]
        ref_name: Option<String>,
        /// Index the files on disk, uncommitted changes included, as the ref `worktree`.
        #[arg(long, conflicts_with = "ref_name")]
        worktree: bool,
        /// Compare the whole tree with the index instead of diffing from the indexed commit.
        #[arg(long)]
        force: bool,
        /// If another process is indexing this repository, hand it this request and exit
        /// at once (what git hooks use); bursts become one reindex.
        #[arg(long)]
        coalesce: bool,
        /// Ask a running `codectx serve` to (re)index instead (its streamed Reindex); the
        /// path must be one the server can read. With --coalesce (what hooks installed with
        /// --server run), a server that cannot be reached means a local index instead.
        #[arg(long)]
        server: Option<String>,
        #[arg(long, env = "CODECTX_AUTH_TOKEN", hide_env_values = true)]
        auth_token: Option<String>,
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
        /// The indexed ref to search (`main`, a commit id, `worktree`); default: the ref
        /// last indexed from the checkout.
        #[arg(long = "ref", value_name = "REF")]
        ref_name: Option<String>,
        /// Ask a running `codectx serve` (e.g. `http://127.0.0.1:50051`) instead of opening
        /// the index here; the repository must be registered there.
        #[arg(long, env = "CODECTX_SERVER")]
        server: Option<String>,
    },
    /// Pack the context a task needs under a token budget: convention files, the code a
    /// stack trace or an identifier names, search hits, and what they use; a Markdown prompt
    /// section (or JSON with a reason per item).
    Context {
        /// The task: an issue, a commit message, a stack trace (`-` reads it from stdin).
        task: String,
        /// The repository root.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Tokens the pack may take (counted with --tokenizer).
        #[arg(long, default_value_t = 8000)]
        budget: usize,
        /// cl100k, o200k, or the path of a Hugging Face tokenizer.json.
        #[arg(long, default_value = "cl100k")]
        tokenizer: String,
        /// The search lane: lexical, dense or hybrid.
        #[arg(long, default_value = "hybrid")]
        mode: String,
        /// The indexed ref to read; default: the ref last indexed from the checkout.
        #[arg(long = "ref", value_name = "REF")]
        ref_name: Option<String>,
        /// Share of the budget convention files (AGENTS.md, CONVENTIONS.md, ...) may take.
        #[arg(long, default_value_t = 0.15)]
        convention_share: f64,
        /// Leave line numbers out of the code blocks.
        #[arg(long)]
        no_line_numbers: bool,
        /// Print the pack as JSON (items with path, lines, commit, tokens, reasons).
        #[arg(long)]
        json: bool,
        /// Ask a running `codectx serve` instead of opening the index here; the repository
        /// must be registered there.
        #[arg(long, env = "CODECTX_SERVER")]
        server: Option<String>,
    },
    /// Remove an indexed ref (a deleted branch, a closed pull request): its chunks and
    /// vectors go unless another ref shares them.
    Forget {
        /// The ref, as indexed (`feature`, `refs/heads/feature`, a commit id, `worktree`).
        #[arg(long = "ref", value_name = "REF")]
        ref_name: String,
        /// The repository root.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
    },
    /// Show what an index reflects and whether it is stale.
    Status {
        /// The repository root.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
        /// Ask a running `codectx serve` instead of opening the index here.
        #[arg(long)]
        server: Option<String>,
        #[arg(long, env = "CODECTX_AUTH_TOKEN", hide_env_values = true)]
        auth_token: Option<String>,
    },
    /// Git hooks that keep the index fresh on every commit, merge, checkout and rewrite.
    Hook {
        #[command(subcommand)]
        action: crate::hooks::HookCommand,
    },
    /// Serve the gRPC API (codectx.v1.CodeContext, health, reflection) until interrupted.
    Serve {
        /// A TOML file of these options (and `data_dir`, `max_file_bytes`); flags and
        /// environment variables win over it. The auth token is never read from it.
        #[arg(long, env = "CODECTX_SERVE_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:50051].
        #[arg(long, env = "CODECTX_LISTEN")]
        listen: Option<std::net::SocketAddr>,
        /// Register these repositories at start: paths, or git URLs the server clones and
        /// fetches on each reindex (more can be registered over the API).
        #[arg(long = "repo", value_name = "PATH|URL")]
        repos: Vec<PathBuf>,
        /// Require `authorization: Bearer <token>` on every API call (prefer the variable).
        #[arg(long, env = "CODECTX_AUTH_TOKEN", hide_env_values = true)]
        auth_token: Option<String>,
        /// API calls worked on at once; more get RESOURCE_EXHAUSTED at once [default: 64].
        #[arg(long, env = "CODECTX_MAX_IN_FLIGHT")]
        max_in_flight: Option<usize>,
        /// Serve Prometheus metrics on this address (`GET /metrics`), e.g. 127.0.0.1:9464.
        #[arg(long, env = "CODECTX_METRICS_LISTEN")]
        metrics_listen: Option<std::net::SocketAddr>,
        /// Serve TLS with this PEM certificate (chain); needs --tls-key. Clients then use
        /// `https://` URLs (and `CODECTX_TLS_CA` for a CA of your own).
        #[arg(long, env = "CODECTX_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, env = "CODECTX_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Mutual TLS: require client certificates that chain to this PEM CA.
        #[arg(long, env = "CODECTX_TLS_CLIENT_CA", requires = "tls_cert")]
        tls_client_ca: Option<PathBuf>,
        /// Clients may register (and reindex) repositories under this directory (repeat);
        /// without one they may register none. Never `/` or a system directory.
        #[arg(long = "allow-root", value_name = "DIR")]
        allow_roots: Vec<PathBuf>,
        /// Clients may register repositories by git URL from this host (repeat;
        /// `file` for file:// URLs); without one, by path only.
        #[arg(long = "allow-host", value_name = "HOST")]
        allow_hosts: Vec<String>,
    },
    /// Serve search, read_span and status as MCP tools over stdio (for Claude Code,
    /// Cursor and other agents that speak the Model Context Protocol).
    Mcp {
        /// The repository tools use when a call names none.
        #[arg(long)]
        repo: Option<PathBuf>,
    },
    /// Receive GitHub and GitLab push webhooks and reindex the pushed branch of a local
    /// clone (fetched first). Runs until interrupted.
    Webhooks {
        /// Address to listen on (its own port; nothing listens unless this command runs).
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: std::net::SocketAddr,
        /// A pushed repository and its local clone: `owner/name=/path/to/clone` (repeat).
        #[arg(long = "clone", value_name = "NAME=PATH", required = true)]
        clones: Vec<String>,
        /// The GitHub webhook secret (prefer the environment variable).
        #[arg(long, env = "CODECTX_GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
        github_secret: Option<String>,
        /// The GitLab webhook secret token (prefer the environment variable).
        #[arg(long, env = "CODECTX_GITLAB_WEBHOOK_TOKEN", hide_env_values = true)]
        gitlab_token: Option<String>,
    },
    /// The bundled coding agent: task -> context over gRPC -> model -> edit -> test ->
    /// a branch with a commit and a PR description.
    Agent {
        #[command(subcommand)]
        which: AgentCommand,
    },
    /// The gate runner: the gates a task type requires, on worktrees of base and head; a
    /// verdict and an auto-merge decision.
    Gate {
        #[command(subcommand)]
        which: GateCommand,
    },
    /// The post-merge monitor: watch a merge's metrics in Prometheus, revert it on a
    /// breach.
    Monitor {
        #[command(subcommand)]
        which: monitor::MonitorCommand,
    },
    /// The whole loop in one command: agent run and gate, then merge (when the policy
    /// allows it; else the branch goes to review with a pull request), the merge in the
    /// ledger, then the post-merge monitor. Exit 0 merged and healthy or sent to review, 1
    /// the agent, gate or monitor said no, 2 an error.
    Flow(flow::FlowArgs),
    /// The outcomes ledger and the graduation report.
    Governance {
        #[command(subcommand)]
        which: governance::GovernanceCommand,
    },
    /// Benchmarks (numbers go to docs/BENCHMARKS.md, never into tests).
    Bench {
        #[command(subcommand)]
        which: crate::bench::BenchCommand,
    },
}

/// Parsed once per process: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum GateCommand {
    /// Run the required gates: exit 0 pass, 1 fail, 2 error.
    Run {
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        #[arg(long)]
        base: String,
        #[arg(long, default_value = "HEAD")]
        head: String,
        /// A task type of the policy; an unknown one is HIGH and never auto-merged.
        #[arg(long)]
        task_type: String,
        /// The merge policy (default: the shipped policy/default.toml).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Gate commands and limits (default: `.codectx/gates.toml` of the base commit).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "md", value_parser = ["json", "sarif", "md"])]
        format: String,
        /// Also write each format: `<out>.json`, `<out>.sarif`, `<out>.md`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// A JSON object of review gate -> approver.
        #[arg(long)]
        approvals: Option<PathBuf>,
        /// A review approval, e.g. `manual_review_approved=alice` (repeatable).
        #[arg(long = "approve", value_name = "GATE=WHO")]
        approve: Vec<String>,
        /// A running `codectx serve` for llm_review's context (default: one on a loopback
        /// port for this run).
        #[arg(long)]
        server: Option<String>,
        /// The task this change is for (the agent run's id), kept in the outcomes ledger.
        #[arg(long)]
        task_id: Option<String>,
    },
    /// Validate a policy and print it as JSON (the shipped one by default).
    Policy {
        #[arg(long)]
        policy: Option<PathBuf>,
    },
}

/// Parsed once per process: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Run one task: exit 0 when the tests pass and the change is committed on a new
    /// branch, 1 when the iteration limit stops the loop, 2 on an error.
    Run {
        /// A structured task (JSON, see `codectx agent schema`).
        #[arg(long, required_unless_present = "issue", conflicts_with = "issue")]
        task: Option<PathBuf>,
        /// A free-text task (an issue body in Markdown); `-` reads standard input.
        #[arg(long)]
        issue: Option<PathBuf>,
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Test runs before giving up (default: the config's, else the policy's for the
        /// task type, 7).
        #[arg(long)]
        max_iterations: Option<u32>,
        /// The agent's TOML config (`[llm]`, `[agent]`); default `<repo>/.codectx/agent.toml`
        /// when it exists.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The merge policy (default: the shipped policy/default.toml).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// A running `codectx serve`; without it a server is started on a loopback port
        /// for this run (the agent talks gRPC either way).
        #[arg(long)]
        server: Option<String>,
        #[arg(long, env = "CODECTX_AUTH_TOKEN", hide_env_values = true)]
        auth_token: Option<String>,
        /// The commit the branch starts from.
        #[arg(long, default_value = "HEAD")]
        base: String,
        /// Where runs go (default `<data dir>/agent-runs`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Overrides agent.test_command.
        #[arg(long)]
        test_command: Option<String>,
        /// Print the run report as JSON instead of the PR description.
        #[arg(long)]
        json: bool,
        /// When the run passes, hand the branch to `codectx gate run` (the task's type,
        /// base..branch); its verdict goes to `<run>/gate.{json,sarif,md}`.
        #[arg(long)]
        gate: bool,
    },
    /// Print the JSON Schema of a structured task.
    Schema,
    /// Validate a structured task and show how the policy classifies it.
    Validate {
        task: PathBuf,
        #[arg(long)]
        policy: Option<PathBuf>,
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
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,codectx::access=info"));
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

/// `https://host/x.git`, `git@host:x.git`: a `--repo` that names a remote, not a path.
fn looks_like_git_url(text: &str) -> bool {
    text.contains("://")
        || text
            .split_once(':')
            .is_some_and(|(host, _)| host.contains('@') && !host.contains('/'))
}

/// `codectx serve --config FILE`: every serve option, plus where the data lives.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeFile {
    listen: Option<std::net::SocketAddr>,
    #[serde(default)]
    repos: Vec<PathBuf>,
    max_in_flight: Option<usize>,
    metrics_listen: Option<std::net::SocketAddr>,
    data_dir: Option<PathBuf>,
    max_file_bytes: Option<u64>,
    /// `[tls] cert = .., key = .., client_ca = ..`
    tls: Option<crate::server::grpc::TlsFiles>,
    /// What clients may register: directories and git hosts.
    #[serde(default)]
    allow_roots: Vec<PathBuf>,
    #[serde(default)]
    allow_hosts: Vec<String>,
    /// `[[clients]] name = .., token_env = .., repositories = [..]`: clients with tokens
    /// of their own (read from the named environment variables), each limited to its
    /// repositories.
    #[serde(default)]
    clients: Vec<ClientFile>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    name: String,
    /// The environment variable that holds this client's token.
    token_env: String,
    /// Roots (absolute paths) or repository ids; `["*"]` for every repository.
    repositories: Vec<String>,
}

impl ClientFile {
    fn client(self) -> crate::Result<crate::server::admission::Client> {
        use crate::server::admission::{Client, Scope};
        let token = std::env::var(&self.token_env)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "serve config: client {:?}: ${} is not set (a client's token comes from the environment only)",
                    self.name, self.token_env
                ))
            })?;
        let scope = if self.repositories.iter().any(|r| r == "*") {
            Scope::all()
        } else {
            // Paths as the server registers them: canonical when they exist.
            Scope::only(
                self.repositories
                    .into_iter()
                    .map(|r| {
                        std::fs::canonicalize(&r)
                            .ok()
                            .filter(|_| r.starts_with('/'))
                            .map_or(r, |p| p.to_string_lossy().into_owned())
                    })
                    .collect(),
            )
        };
        Ok(Client {
            name: self.name,
            token: token.trim().to_string(),
            scope,
        })
    }
}

fn serve_file(path: Option<&std::path::Path>) -> crate::Result<ServeFile> {
    let Some(path) = path else {
        return Ok(ServeFile::default());
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    toml::from_str(&text).map_err(|e| {
        Error::invalid(format!(
            "serve config {}: {}",
            path.display(),
            e.to_string().trim()
        ))
    })
}

fn run(cli: Cli) -> crate::Result<()> {
    let data_dir_given = cli.data_dir.is_some();
    let mut config = config(cli.data_dir)?;
    match cli.command {
        Command::Index {
            path,
            max_file_bytes,
            json,
            verbose,
            no_embed,
            ref_name,
            worktree,
            force,
            coalesce,
            server,
            auth_token,
        } => {
            if let Some(url) = server {
                let remote = remote_index(
                    &url,
                    auth_token.as_deref(),
                    &path,
                    ref_name.clone(),
                    worktree,
                    force,
                    no_embed,
                    json,
                );
                match remote {
                    Err(e) if coalesce && e.kind() == crate::error::ErrorKind::Unavailable => {
                        eprintln!("warning: {e}; indexing locally instead");
                    }
                    other => return other,
                }
            }
            if let Some(max) = max_file_bytes {
                config.walk.max_file_bytes = max;
            }
            let engine = Engine::new(config)?;
            let progress = Bar::new(!json);
            let options = IndexOptions {
                ref_name,
                worktree,
                force,
                embed_before_commit: if no_embed {
                    0
                } else {
                    crate::ingest::EMBED_BEFORE_COMMIT
                },
            };
            let reports = if coalesce {
                match engine.index_coalesced(&path, &options, COALESCE_DEBOUNCE, &progress)? {
                    Some(reports) => reports,
                    None => {
                        if !json {
                            crate::outln!("another codectx is indexing this repository; queued");
                        }
                        return Ok(());
                    }
                }
            } else {
                vec![engine.index_with(&path, &options, &progress)?]
            };
            if !json {
                for report in &reports {
                    print_index_report(report, verbose);
                }
            }
            // The lexical index is committed and searchable; what was not embedded before
            // the commit is embedded now, and can be interrupted at any time (each batch is
            // kept).
            let embedded = if no_embed {
                None
            } else {
                match engine.embed_behind(&path, &progress) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("warning: embedding skipped, search stays lexical: {e}");
                        None
                    }
                }
            };
            let report = reports.last();
            if json {
                let coverage = engine.dense_coverage(&path).ok();
                print_json(&serde_json::json!({
                    "index": report,
                    "embed": embedded,
                    "dense_coverage": coverage,
                }))
            } else {
                if let Some(r) = embedded {
                    crate::outln!(
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
            ref_name,
            server,
        } => {
            if let Some(url) = server {
                return remote_search(&url, &repo, query, k, lang, path, &mode, ref_name, json);
            }
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
                ref_name,
            };
            let response = engine.search(&repo, &request)?;
            if json {
                print_json(&response)
            } else {
                print_search(&response);
                Ok(())
            }
        }
        Command::Context {
            task,
            repo,
            budget,
            tokenizer,
            mode,
            ref_name,
            convention_share,
            no_line_numbers,
            json,
            server,
        } => {
            let task = if task == "-" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .map_err(|e| Error::invalid(format!("reading the task from stdin: {e}")))?;
                text
            } else {
                task
            };
            let mode = SearchMode::parse(&mode).ok_or_else(|| {
                Error::invalid(format!(
                    "--mode {mode:?}: expected lexical, dense or hybrid"
                ))
            })?;
            if let Some(url) = server {
                let request = crate::server::grpc::pb::GetContextRequest {
                    repository: canonical(&repo)?.display().to_string(),
                    r#ref: ref_name.unwrap_or_default(),
                    task,
                    budget: u32::try_from(budget)
                        .map_err(|_| Error::invalid(format!("--budget {budget}: too large")))?,
                    tokenizer,
                    mode: match mode {
                        SearchMode::Hybrid => crate::server::grpc::pb::SearchMode::Hybrid,
                        SearchMode::Lexical => crate::server::grpc::pb::SearchMode::Lexical,
                        SearchMode::Dense => crate::server::grpc::pb::SearchMode::Dense,
                    } as i32,
                    convention_share: Some(convention_share),
                    no_line_numbers,
                };
                let pack =
                    crate::server::grpc::remote_context(&url, auth_token().as_deref(), request)?;
                if json {
                    let items: Vec<serde_json::Value> = pack
                        .items
                        .iter()
                        .map(|i| {
                            serde_json::json!({
                                "path": i.path, "language": i.language,
                                "start_line": i.start_line, "end_line": i.end_line,
                                "commit": i.commit, "symbol": i.symbol, "kind": i.kind,
                                "form": i.form, "tokens": i.tokens, "reasons": i.reasons,
                                "convention": i.convention, "text": i.text,
                            })
                        })
                        .collect();
                    return print_json(&serde_json::json!({
                        "repository": pack.repository, "ref_name": pack.r#ref,
                        "commit": pack.commit, "budget": pack.budget,
                        "tokenizer": pack.tokenizer, "tokens_used": pack.tokens_used,
                        "items": items, "candidates": pack.candidates,
                        "left_out": pack.left_out, "redacted": pack.redacted,
                        "degraded": (!pack.degraded.is_empty()).then_some(&pack.degraded),
                        "markdown": pack.markdown, "took_ms": pack.took_ms,
                    }));
                }
                crate::out!("{}", pack.markdown);
                eprintln!(
                    "{} items, {} of {} tokens ({}), {} candidates left out, {} secrets redacted (served by {url})",
                    pack.items.len(),
                    pack.tokens_used,
                    pack.budget,
                    pack.tokenizer,
                    pack.left_out,
                    pack.redacted
                );
                return Ok(());
            }
            let engine = Engine::new(config)?;
            let mut request = ContextRequest::new(task, budget);
            request.tokenizer = tokenizer;
            request.mode = mode;
            request.ref_name = ref_name;
            request.options.convention_share = convention_share;
            request.options.line_numbers = !no_line_numbers;
            let pack = engine.context(&repo, &request)?;
            if json {
                print_json(&pack)
            } else {
                crate::out!("{}", pack.markdown);
                eprintln!(
                    "{} items, {} of {} tokens ({}), {} candidates left out, {} secrets redacted{}",
                    pack.items.len(),
                    pack.tokens_used,
                    pack.budget,
                    pack.tokenizer,
                    pack.left_out,
                    pack.redacted,
                    pack.degraded
                        .as_deref()
                        .map(|d| format!("; lexical only: {d}"))
                        .unwrap_or_default()
                );
                Ok(())
            }
        }
        Command::Status {
            repo,
            json,
            server,
            auth_token,
        } => {
            if let Some(url) = server {
                return remote_status(&url, auth_token.as_deref(), &repo, json);
            }
            let engine = Engine::new(config)?;
            let status = engine.status(&repo)?;
            if json {
                print_json(&status)
            } else {
                print_status(&status);
                Ok(())
            }
        }
        Command::Forget { ref_name, repo } => {
            let engine = Engine::new(config)?;
            let report = engine.forget_ref(&repo, &ref_name)?;
            crate::outln!(
                "forgot {}: {} chunks and {} vectors removed; default ref now {}",
                report.ref_name,
                report.chunks_removed,
                report.vectors_removed,
                report.default_ref.as_deref().unwrap_or("(none)")
            );
            Ok(())
        }
        Command::Hook { action } => crate::hooks::run(action, &config),
        Command::Mcp { repo } => {
            let engine = std::sync::Arc::new(Engine::new(config)?);
            let repo = match repo {
                Some(r) => Some(
                    std::path::absolute(&r)
                        .and_then(|p| p.canonicalize())
                        .map_err(|e| Error::io(&r, e))?,
                ),
                None => None,
            };
            crate::server::mcp::run_stdio(engine, repo)
        }
        Command::Serve {
            config: file,
            listen,
            repos,
            auth_token,
            max_in_flight,
            metrics_listen,
            tls_cert,
            tls_key,
            tls_client_ca,
            allow_roots,
            allow_hosts,
        } => {
            // Flags and environment first, then the file, then the defaults.
            let file = serve_file(file.as_deref())?;
            if !data_dir_given && let Some(dir) = file.data_dir {
                config.data_dir = dir;
            }
            if let Some(max) = file.max_file_bytes
                && std::env::var_os("CODECTX_MAX_FILE_BYTES").is_none()
            {
                config.walk.max_file_bytes = max;
            }
            let listen = listen
                .or(file.listen)
                .unwrap_or_else(|| ([127, 0, 0, 1], 50051).into());
            let max_in_flight = max_in_flight.or(file.max_in_flight).unwrap_or(64);
            let metrics_listen = metrics_listen.or(file.metrics_listen);
            let repos = if repos.is_empty() { file.repos } else { repos };
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(crate::server::grpc::TlsFiles {
                    cert,
                    key,
                    client_ca: tls_client_ca,
                }),
                _ => file.tls,
            };
            let scheme = if tls.is_some() { "https" } else { "http" };
            let allow_roots = if allow_roots.is_empty() {
                file.allow_roots
            } else {
                allow_roots
            };
            let allow_hosts = if allow_hosts.is_empty() {
                file.allow_hosts
            } else {
                allow_hosts
            };
            let admission = crate::server::admission::Admission::only(&allow_roots, &allow_hosts)?;
            let clients = file
                .clients
                .into_iter()
                .map(ClientFile::client)
                .collect::<crate::Result<Vec<_>>>()?;
            let engine = std::sync::Arc::new(Engine::new(config)?);
            for repo in repos {
                let text = repo.to_string_lossy();
                let root = if looks_like_git_url(&text) && !repo.exists() {
                    engine.register_remote(&text)?
                } else {
                    let path = std::path::absolute(&repo).map_err(|e| Error::io(&repo, e))?;
                    engine.register(&path)?
                };
                crate::outln!("registered {}", root.display());
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Internal(format!("cannot start the runtime: {e}")))?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .map_err(|e| Error::Unavailable(format!("cannot listen on {listen}: {e}")))?;
                let addr = listener
                    .local_addr()
                    .map_err(|e| Error::Unavailable(format!("{listen}: {e}")))?;
                crate::outln!(
                    "serving codectx.v1.CodeContext (with health and reflection) on \
                     {scheme}://{addr}"
                );
                let options = crate::server::grpc::ServeOptions {
                    auth_token: auth_token.filter(|t| !t.is_empty()),
                    max_in_flight,
                    metrics_listen,
                    tls,
                    admission,
                    clients,
                    ..Default::default()
                };
                if let Some(m) = metrics_listen {
                    crate::outln!("serving Prometheus metrics on http://{m}/metrics");
                }
                crate::server::grpc::serve(engine, listener, options, shutdown_signal()).await
            })
        }
        Command::Webhooks {
            listen,
            clones,
            github_secret,
            gitlab_token,
        } => {
            let mut map = std::collections::BTreeMap::new();
            for spec in clones {
                let (name, path) = spec.split_once('=').ok_or_else(|| {
                    Error::invalid(format!("--clone {spec:?}: expected owner/name=/path"))
                })?;
                map.insert(name.to_string(), PathBuf::from(path));
            }
            let webhooks = crate::server::webhook::WebhookConfig {
                github_secret,
                gitlab_token,
                clones: map,
            };
            let engine = std::sync::Arc::new(Engine::new(config)?);
            let running = crate::server::webhook::spawn(engine, webhooks, listen)?;
            crate::outln!(
                "listening for push webhooks on http://{}/webhooks/github and /webhooks/gitlab",
                running.addr
            );
            running.wait();
            Ok(())
        }
        Command::Agent { which } => agent(which, config),
        Command::Gate { which } => gate(which, config),
        Command::Monitor { which } => monitor::run(which, config),
        Command::Governance { which } => governance::run(which, config),
        Command::Flow(args) => flow::run(args, config),
        Command::Bench { which } => crate::bench::run(which, config),
    }
}

fn agent(which: AgentCommand, config: crate::config::Config) -> crate::Result<()> {
    use crate::agent::{self, task::Task};
    match which {
        AgentCommand::Schema => {
            crate::out!("{}", agent::task::schema());
            Ok(())
        }
        AgentCommand::Validate { task, policy } => {
            let task = Task::load(&task, true)?;
            let policy = crate::policy::Policy::load(policy.as_deref())?;
            let c = policy.classify(
                task.task_type.as_deref(),
                &task.labels,
                &task.classification_text(),
                task.severity,
            );
            print_json(&c)
        }
        AgentCommand::Run {
            task,
            issue,
            repo,
            max_iterations,
            config: agent_config,
            policy,
            server,
            auth_token,
            base,
            out,
            test_command,
            json,
            gate,
        } => exit_with(agent_run(
            task,
            issue,
            repo,
            max_iterations,
            agent_config,
            policy,
            server,
            auth_token,
            base,
            out,
            test_command,
            json,
            gate,
            config,
        )),
    }
}

/// Exits with a run's documented status (0 passed, 1 failed), or 2 for any error.
pub(crate) fn exit_with(result: crate::Result<i32>) -> crate::Result<()> {
    let code = result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        2
    });
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

fn gate(which: GateCommand, engine_config: crate::config::Config) -> crate::Result<()> {
    match which {
        GateCommand::Policy { policy } => {
            let policy = crate::policy::Policy::load(policy.as_deref())?;
            print_json(&policy)
        }
        GateCommand::Run {
            repo,
            base,
            head,
            task_type,
            policy,
            config,
            format,
            out,
            approvals,
            approve,
            server,
            task_id,
        } => exit_with(gate_run(
            repo,
            base,
            head,
            task_type,
            policy,
            config,
            &format,
            out,
            approvals,
            approve,
            server,
            task_id,
            engine_config,
        )),
    }
}

#[allow(clippy::too_many_arguments)]
fn gate_run(
    repo: PathBuf,
    base: String,
    head: String,
    task_type: String,
    policy: Option<PathBuf>,
    config: Option<PathBuf>,
    format: &str,
    out: Option<PathBuf>,
    approvals_file: Option<PathBuf>,
    approve: Vec<String>,
    gate_server: Option<String>,
    task_id: Option<String>,
    engine_config: crate::config::Config,
) -> crate::Result<i32> {
    use crate::gate::{self, report};
    let mut approvals = std::collections::BTreeMap::new();
    if let Some(path) = approvals_file {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let map: std::collections::BTreeMap<String, String> = serde_json::from_str(&text)
            .map_err(|e| Error::invalid(format!("approvals {}: {e}", path.display())))?;
        approvals.extend(map);
    }
    for a in approve {
        let (g, who) = a
            .split_once('=')
            .ok_or_else(|| Error::invalid(format!("--approve {a:?}: expected GATE=WHO")))?;
        approvals.insert(g.trim().to_string(), who.trim().to_string());
    }
    let config = match config {
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
            Some(gate::GateConfig::parse(&text, &p.display().to_string())?)
        }
        None => None,
    };
    let request = gate::GateRequest {
        repo: canonical(&repo)?,
        base,
        head,
        task_type,
        policy: crate::policy::Policy::load(policy.as_deref())?,
        config,
        approvals,
        server: gate_server,
        engine: Some(engine_config.clone()),
    };
    let verdict = gate::run(&request)?;
    governance::record(&engine_config, &governance::gate_entry(&verdict, task_id));
    let render = |f: &str| match f {
        "json" => report::to_json(&verdict),
        "sarif" => report::to_sarif(&verdict),
        _ => report::to_markdown(&verdict),
    };
    if let Some(out) = out {
        for f in ["json", "sarif", "md"] {
            let path = out.with_extension(f);
            std::fs::write(&path, render(f)).map_err(|e| Error::io(&path, e))?;
        }
    }
    crate::outln!("{}", render(format));
    Ok(verdict.exit_code())
}

/// Runs `codectx gate run` on the agent's branch in a child process: the agent and the
/// gate runner are both clients and never call each other's code.
fn hand_to_gate(
    repo: &std::path::Path,
    report: &crate::agent::RunReport,
    policy: Option<&std::path::Path>,
    data_dir: &std::path::Path,
) -> crate::Result<()> {
    let exe = std::env::current_exe().map_err(|e| Error::io("current executable", e))?;
    let out = report.audit.with_file_name("gate");
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--data-dir")
        .arg(data_dir)
        .args(["gate", "run", "--repo"])
        .arg(repo)
        .args(["--base", &report.base_commit, "--head", &report.branch])
        .args(["--task-type", &report.classification.task_type])
        .args(["--task-id", &report.run])
        .args(["--format", "md", "--out"])
        .arg(&out);
    if let Some(p) = policy {
        cmd.arg("--policy").arg(p);
    }
    let status = cmd
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| Error::Unavailable(format!("cannot start the gate runner: {e}")))?;
    eprintln!(
        "gate: {} (exit {}); verdict in {}",
        match status.code() {
            Some(0) => "pass",
            Some(1) => "fail",
            _ => "error",
        },
        status.code().unwrap_or(-1),
        out.with_extension("md").display()
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn agent_run(
    task: Option<PathBuf>,
    issue: Option<PathBuf>,
    repo: PathBuf,
    max_iterations: Option<u32>,
    agent_config: Option<PathBuf>,
    policy: Option<PathBuf>,
    server: Option<String>,
    auth_token: Option<String>,
    base: String,
    out: Option<PathBuf>,
    test_command: Option<String>,
    json: bool,
    gate: bool,
    config: crate::config::Config,
) -> crate::Result<i32> {
    use crate::agent::{self, config::AgentFile, task::Task};
    let repo = canonical(&repo)?;
    let task = match (task, issue) {
        (Some(t), _) => Task::load(&t, true)?,
        (None, Some(i)) if i.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| Error::io("<stdin>", e))?;
            Task::from_text(&text)?
        }
        (None, Some(i)) => Task::load(&i, false)?,
        (None, None) => return Err(Error::invalid("give --task FILE or --issue FILE")),
    };
    let config_path = agent_config.or_else(|| {
        let p = repo.join(".codectx/agent.toml");
        p.is_file().then_some(p)
    });
    let mut file = AgentFile::load(config_path.as_deref())?;
    if let Some(cmd) = test_command {
        file.agent.test_command = cmd;
    }
    let policy_path = policy.clone();
    let policy = crate::policy::Policy::load(policy.as_deref())?;
    let llm = crate::llm::client(&file.llm)?;
    let out = out.unwrap_or_else(|| config.data_dir.join("agent-runs"));
    let config_for_ledger = config.clone();
    // Without --server, this process serves its own engine on a loopback port and the
    // agent still reaches it over gRPC.
    let local;
    let server = match server {
        Some(s) => s,
        None => {
            let engine = std::sync::Arc::new(Engine::new(config)?);
            local = crate::server::grpc::spawn_local(engine, ([127, 0, 0, 1], 0).into())?;
            local.url.clone()
        }
    };
    let options = agent::RunOptions {
        repo,
        task,
        config: file,
        policy,
        max_iterations,
        base,
        out_dir: out,
        server,
        auth_token: auth_token.filter(|t| !t.is_empty()),
    };
    let repo_root = options.repo.clone();
    let ledger_config = config_for_ledger;
    let report = agent::run(options, &*llm)?;
    governance::record(&ledger_config, &governance::agent_run_entry(&report));
    if gate && report.commit.is_some() {
        hand_to_gate(
            &repo_root,
            &report,
            policy_path.as_deref(),
            &ledger_config.data_dir,
        )?;
    }
    if json {
        print_json(&report)?;
    } else {
        if let Some(text) = report
            .pr_description
            .as_ref()
            .and_then(|pr| std::fs::read_to_string(pr).ok())
        {
            crate::outln!("{text}");
        }
        eprintln!(
            "{:?} after {} iteration(s) of {}; branch {}{}; audit log {}",
            report.status,
            report.iterations,
            report.max_iterations,
            report.branch,
            report
                .commit
                .as_deref()
                .map(|c| format!(" at {}", &c[..12.min(c.len())]))
                .unwrap_or_default(),
            report.audit.display()
        );
        if let Some(e) = &report.error {
            eprintln!("error: {e}");
        }
    }
    Ok(report.status.exit_code())
}

/// `index --server`: the server's streamed Reindex, its summary printed.
#[allow(clippy::too_many_arguments)]
fn remote_index(
    url: &str,
    token: Option<&str>,
    path: &std::path::Path,
    ref_name: Option<String>,
    worktree: bool,
    force: bool,
    no_embed: bool,
    json: bool,
) -> crate::Result<()> {
    let repository = canonical(path)?.display().to_string();
    let mut client = crate::server::client::Client::connect(url, token)?;
    let s = client.reindex(crate::server::grpc::pb::ReindexRequest {
        repository: repository.clone(),
        r#ref: ref_name.unwrap_or_default(),
        worktree,
        force,
        no_embed,
        wait_for_embedding: false,
    })?;
    let value = serde_json::json!({
        "repository": repository,
        "ref": s.r#ref,
        "commit": s.commit,
        "previous_commit": s.previous_commit,
        "plan": s.plan,
        "files": {"added": s.files_added, "modified": s.files_modified, "deleted": s.files_deleted,
                  "renamed": s.files_renamed, "chunked": s.files_chunked, "indexed": s.files_indexed,
                  "skipped": s.files_skipped},
        "chunks": s.chunks,
        "chunks_added": s.chunks_added,
        "chunks_removed": s.chunks_removed,
        "vectors_added": s.vectors_added,
        "dense_coverage": s.dense_coverage,
        "seconds": s.seconds,
        "embed_note": s.embed_note,
    });
    if json {
        return print_json(&value);
    }
    crate::outln!(
        "indexed {repository} {} at {} through {url}: {} files chunked, {} skipped, {} chunks (+{} -{}), {} vectors added, dense coverage {:.0}%, {:.1} s",
        s.r#ref,
        &s.commit[..s.commit.len().min(12)],
        s.files_chunked,
        s.files_skipped,
        s.chunks,
        s.chunks_added,
        s.chunks_removed,
        s.vectors_added,
        s.dense_coverage * 100.0,
        s.seconds
    );
    if !s.embed_note.is_empty() {
        crate::outln!("note: {}", s.embed_note);
    }
    Ok(())
}

/// `status --server`.
fn remote_status(
    url: &str,
    token: Option<&str>,
    repo: &std::path::Path,
    json: bool,
) -> crate::Result<()> {
    let repository = canonical(repo)?.display().to_string();
    let s = crate::server::client::Client::connect(url, token)?.status(&repository)?;
    let r = s.repository.unwrap_or_default();
    let refs: Vec<serde_json::Value> = r
        .refs
        .iter()
        .map(|x| serde_json::json!({"name": x.name, "commit": x.commit, "files": x.files, "chunks": x.chunks, "indexed_at": x.indexed_at}))
        .collect();
    let value = serde_json::json!({
        "repository": r.root,
        "id": r.id,
        "default_ref": r.default_ref,
        "refs": refs,
        "current_head": s.current_head,
        "stale": s.stale,
        "dirty_now": s.dirty_now,
        "chunks": s.chunks,
        "vectors": s.vectors,
        "dense_coverage": s.dense_coverage,
    });
    if json {
        return print_json(&value);
    }
    crate::outln!("repository  {} ({})", r.root, r.id);
    for x in &r.refs {
        crate::outln!(
            "ref         {} @ {} ({} files, {} chunks)",
            x.name,
            &x.commit[..x.commit.len().min(12)],
            x.files,
            x.chunks
        );
    }
    crate::outln!(
        "HEAD now    {}{}",
        &s.current_head[..s.current_head.len().min(12)],
        if s.stale {
            " (the default ref is stale)"
        } else {
            ""
        }
    );
    crate::outln!(
        "chunks      {} ({} embedded, {:.0}%)",
        s.chunks,
        s.vectors,
        s.dense_coverage * 100.0
    );
    Ok(())
}

/// A repository path as the server knows it: absolute and canonical.
pub(crate) fn canonical(repo: &std::path::Path) -> crate::Result<PathBuf> {
    std::path::absolute(repo)
        .map_err(|e| Error::io(repo, e))?
        .canonicalize()
        .map_err(|e| Error::io(repo, e))
}

/// The bearer token `--server` calls carry (`CODECTX_AUTH_TOKEN`).
fn auth_token() -> Option<String> {
    std::env::var("CODECTX_AUTH_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
}

/// `codectx search --server URL`: the same question over gRPC.
#[allow(clippy::too_many_arguments)]
fn remote_search(
    url: &str,
    repo: &std::path::Path,
    query: String,
    k: usize,
    lang: Option<String>,
    path: Option<String>,
    mode: &str,
    ref_name: Option<String>,
    json: bool,
) -> crate::Result<()> {
    use crate::server::grpc::pb;
    let mode = match mode {
        "hybrid" => pb::SearchMode::Hybrid,
        "lexical" => pb::SearchMode::Lexical,
        "dense" => pb::SearchMode::Dense,
        other => {
            return Err(Error::invalid(format!(
                "--mode {other:?}: expected lexical, dense or hybrid"
            )));
        }
    };
    let repository = canonical(repo)?;
    let request = pb::SearchRequest {
        repository: repository.display().to_string(),
        query,
        r#ref: ref_name.unwrap_or_default(),
        k: k as u32,
        mode: mode as i32,
        language: lang.unwrap_or_default(),
        path_glob: path.unwrap_or_default(),
    };
    let r = crate::server::grpc::remote_search(url, auth_token().as_deref(), request)?;
    if json {
        let hits: Vec<serde_json::Value> = r
            .hits
            .iter()
            .map(|h| {
                let c = h.chunk.clone().unwrap_or_default();
                serde_json::json!({
                    "rank": h.rank, "score": h.score, "lexical_rank": h.lexical_rank,
                    "dense_rank": h.dense_rank, "path": c.path, "start_line": c.start_line,
                    "end_line": c.end_line, "symbol": c.symbol, "kind": c.kind,
                    "language": c.language, "content": c.content,
                })
            })
            .collect();
        return print_json(&serde_json::json!({
            "ref": r.r#ref, "commit": r.commit, "degraded": r.degraded,
            "dense_coverage": r.dense_coverage, "took_ms": r.took_ms, "hits": hits,
        }));
    }
    for h in &r.hits {
        let c = h.chunk.clone().unwrap_or_default();
        crate::outln!(
            "{}:{}-{}  {}  [{} {}]  score {:.3}",
            c.path,
            c.start_line,
            c.end_line,
            c.symbol,
            c.language,
            c.kind,
            h.score
        );
        for line in c.content.lines().take(4) {
            let line: String = line.chars().take(120).collect();
            crate::outln!("    | {line}");
        }
    }
    let degraded = if r.degraded.is_empty() {
        String::new()
    } else {
        format!(" (lexical only: {})", r.degraded)
    };
    crate::outln!(
        "{} hits from {url}: {} @ {}{degraded} ({:.1} ms on the server)",
        r.hits.len(),
        crate::index::manifest::short_ref(&r.r#ref),
        r.commit.chars().take(10).collect::<String>(),
        r.took_ms
    );
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("shutting down: health is NOT_SERVING, finishing in-flight requests");
}

pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> crate::Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Internal(format!("serialising output: {e}")))?;
    out::json(&text);
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
        crate::outln!("note: the old index was unusable ({reason}) and was rebuilt");
    }
    let branch = r
        .branch
        .as_deref()
        .map(|b| format!(" ({b})"))
        .unwrap_or_default();
    let dirty = if r.dirty {
        " (uncommitted changes not indexed; --worktree indexes them)"
    } else {
        ""
    };
    let name = crate::index::manifest::short_ref(&r.ref_name);
    let at = match &r.commit {
        Some(c) => format!(" @ {}", short(&Some(c.clone()))),
        None => String::new(),
    };
    crate::outln!("indexed {} {name}{at}{branch}{dirty}", r.repo_root);
    let c = &r.changes;
    let plan = serde_json::to_value(r.plan)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    crate::outln!(
        "  change         {plan}: {} added, {} modified, {} deleted, {} renamed; {} files chunked",
        c.added,
        c.modified,
        c.deleted,
        c.renamed,
        r.files_chunked
    );
    crate::outln!("  files indexed  {}", r.files_indexed);
    let reasons: Vec<String> = r
        .skipped_by_reason
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if reasons.is_empty() {
        crate::outln!("  files skipped  0");
    } else {
        crate::outln!(
            "  files skipped  {} ({})",
            r.files_skipped,
            reasons.join(", ")
        );
    }
    crate::outln!(
        "  chunks         {} (+{} -{}; vectors +{} -{})",
        r.chunks,
        r.chunks_added,
        r.chunks_removed,
        r.vectors_added,
        r.vectors_removed
    );
    let mb = r.bytes as f64 / 1e6;
    crate::outln!(
        "  source         {mb:.2} MB in {:.2} s ({:.1} MB/s)",
        r.seconds,
        mb / r.seconds.max(1e-9)
    );
    let fallbacks = r.diagnostics.iter().filter(|d| d.fallback).count();
    if fallbacks > 0 {
        crate::outln!("  fell back to line windows: {fallbacks} files");
    }
    let limit = if verbose { usize::MAX } else { 10 };
    for s in r.skipped.iter().take(limit) {
        crate::outln!("  skipped {}: {} ({})", s.path, s.reason, s.detail);
    }
    if r.skipped.len() > limit {
        crate::outln!(
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
        crate::outln!("  note {}: {}", d.path, d.message);
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
        crate::outln!(
            "{}:{}-{}{name}  [{} {}]  score {:.3}{lanes}",
            c.path,
            c.span.start_line,
            c.span.end_line,
            c.language,
            c.kind,
            hit.score
        );
        if !c.scope.is_empty() {
            crate::outln!("    in {}", c.scope);
        }
        for line in c.content.lines().take(4) {
            let line: String = line.chars().take(120).collect();
            crate::outln!("    | {line}");
        }
    }
    let dirty = if r.indexed_dirty {
        " + uncommitted changes"
    } else {
        ""
    };
    let name = r
        .ref_name
        .as_deref()
        .map(crate::index::manifest::short_ref)
        .unwrap_or("(nothing indexed)");
    crate::outln!(
        "{} hits in {} {name} @ {}{dirty} ({:.1} ms)",
        r.hits.len(),
        r.repo_root,
        short(&r.commit),
        r.took_ms
    );
}

fn print_status(s: &RepoStatus) {
    crate::outln!("repository  {}", s.repo_root);
    crate::outln!("index       {}", s.index_dir);
    match &s.indexed {
        Some(m) => {
            crate::outln!(
                "indexed     {} @ {}{}",
                m.short_name(),
                short(&m.commit),
                if m.dirty {
                    " (uncommitted changes were not indexed)"
                } else {
                    ""
                }
            );
            crate::outln!("at          {} (unix seconds)", m.indexed_at);
        }
        None => crate::outln!("indexed     never committed"),
    }
    if s.refs.len() > 1 {
        for r in &s.refs {
            crate::outln!(
                "ref         {} @ {}: {} files, {} chunks",
                r.short_name(),
                short(&r.commit),
                r.files,
                r.chunks
            );
        }
    }
    crate::outln!("files       {}", s.files);
    crate::outln!("chunks      {}", s.chunks);
    crate::outln!(
        "vectors     {} ({:.0}% dense coverage)",
        s.vectors,
        s.dense_coverage * 100.0
    );
    crate::outln!("HEAD now    {}", short(&s.current_head));
    if s.stale {
        crate::outln!("stale       yes: HEAD is not the indexed commit; run `codectx index`");
    }
    if s.dirty_now {
        crate::outln!("dirty       yes: uncommitted changes are not in the index");
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
