//! The MCP server (`codectx mcp`): the engine's context packs, search, read-span and status as Model
//! Context Protocol tools over stdio, through the official `rmcp` SDK, so coding agents
//! (Claude Code, Cursor, ...) can call codectx directly. Answers are text an agent reads:
//! each hit with its path, line span, symbol and code.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::Language;
use crate::retrieve::context::ContextRequest;
use crate::retrieve::{SearchMode, SearchRequest};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Arguments of the `search` tool.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchArgs {
    /// What to look for: identifiers, words, or a description of the code wanted.
    pub query: String,
    /// Repository root path or id; default: the repository `codectx mcp` was started for.
    pub repository: Option<String>,
    /// Git ref (`main`, a commit id, `worktree`); default: the repository's default ref.
    #[serde(rename = "ref")]
    pub ref_name: Option<String>,
    /// Hits wanted (1..=50, default 8).
    pub k: Option<u32>,
    /// `hybrid` (default), `lexical` or `dense`.
    pub mode: Option<String>,
    /// Only this language (`rust`, `python`, ...).
    pub language: Option<String>,
    /// Only paths matching this glob (`*` crosses directories).
    pub path_glob: Option<String>,
}

/// Arguments of the `read_span` tool.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadSpanArgs {
    /// Repository-relative path, `/`-separated.
    pub path: String,
    /// First line (1-based, default 1).
    pub start_line: Option<u32>,
    /// Last line (inclusive, default the end of the file).
    pub end_line: Option<u32>,
    /// Repository root path or id; default: the repository `codectx mcp` was started for.
    pub repository: Option<String>,
    /// Git ref; default: the repository's default ref.
    #[serde(rename = "ref")]
    pub ref_name: Option<String>,
}

/// Arguments of the `context` tool.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ContextArgs {
    /// The task: an issue, a commit message, a stack trace, in free text.
    pub task: String,
    /// Tokens the pack may take (default 8000).
    pub budget: Option<u32>,
    /// `cl100k` (default) or `o200k`: the tokenizer the budget counts with.
    pub tokenizer: Option<String>,
    /// Repository root path or id; default: the repository `codectx mcp` was started for.
    pub repository: Option<String>,
    /// Git ref; default: the repository's default ref.
    #[serde(rename = "ref")]
    pub ref_name: Option<String>,
}

/// Arguments of the `status` tool.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct StatusArgs {
    /// Repository root path or id; default: the repository `codectx mcp` was started for.
    pub repository: Option<String>,
}

/// The tools over one engine.
#[derive(Clone)]
pub struct McpServer {
    engine: Arc<Engine>,
    default_repo: Option<PathBuf>,
    tool_router: ToolRouter<Self>,
}

impl McpServer {
    fn repo(&self, named: Option<&str>) -> Result<PathBuf> {
        match named.filter(|s| !s.is_empty()) {
            Some(name) => match self.engine.find_repository(name) {
                Ok(root) => Ok(root),
                // An indexed path that was never registered is fine here.
                Err(_) if Path::new(name).is_absolute() => Ok(PathBuf::from(name)),
                Err(e) => Err(e),
            },
            None => self.default_repo.clone().ok_or_else(|| {
                Error::invalid("repository: required (codectx mcp was started without --repo)")
            }),
        }
    }

    /// Runs engine work off the async runtime; an error becomes the tool's error text.
    async fn blocking<T, F>(&self, f: F) -> Result<T, String>
    where
        F: FnOnce(&Engine) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let engine = Arc::clone(&self.engine);
        match tokio::task::spawn_blocking(move || f(&engine)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("internal error: {e}")),
        }
    }
}

#[tool_router(router = tool_router)]
impl McpServer {
    pub fn new(engine: Arc<Engine>, default_repo: Option<PathBuf>) -> McpServer {
        McpServer {
            engine,
            default_repo,
            tool_router: Self::tool_router(),
        }
    }

    /// Finds the code relevant to a query in an indexed repository: hybrid (keyword and
    /// embedding) search over functions, classes and other definitions, each hit with its
    /// file, line span, symbol and code, and the commit the answer reflects.
    #[tool(name = "search")]
    async fn search(&self, Parameters(args): Parameters<SearchArgs>) -> Result<String, String> {
        let root = self
            .repo(args.repository.as_deref())
            .map_err(|e| e.to_string())?;
        self.blocking(move |engine| {
            let m = args.mode.as_deref().unwrap_or("hybrid");
            let mode = SearchMode::parse(m).ok_or_else(|| {
                Error::invalid(format!("mode: {m:?} is not hybrid, lexical or dense"))
            })?;
            let language = match args.language.as_deref().filter(|s| !s.is_empty()) {
                Some(l) => Some(
                    Language::parse(l)
                        .ok_or_else(|| Error::invalid(format!("language: unknown {l:?}")))?,
                ),
                None => None,
            };
            let request = SearchRequest {
                query: args.query,
                k: args.k.unwrap_or(8).clamp(1, 50) as usize,
                language,
                path_glob: args.path_glob.filter(|s| !s.is_empty()),
                mode,
                fusion: Default::default(),
                ref_name: args.ref_name.filter(|s| !s.is_empty()),
            };
            let r = engine.search(&root, &request)?;
            let mut out = String::new();
            let _ = writeln!(
                out,
                "{} hits in {} ({} @ {}){}{}",
                r.hits.len(),
                r.repo_root,
                r.ref_name.as_deref().unwrap_or("-"),
                r.commit
                    .as_deref()
                    .map(|c| &c[..c.len().min(10)])
                    .unwrap_or("-"),
                if r.indexed_dirty {
                    "; the checkout has uncommitted changes not reflected here"
                } else {
                    ""
                },
                r.degraded
                    .as_deref()
                    .map(|d| format!("; keyword results only: {d}"))
                    .unwrap_or_default()
            );
            for hit in &r.hits {
                let c = &hit.chunk;
                let _ = writeln!(
                    out,
                    "\n## {}:{}-{} {} {}",
                    c.path, c.span.start_line, c.span.end_line, c.kind, c.symbol
                );
                if !c.scope.is_empty() {
                    let _ = writeln!(out, "in {}", c.scope);
                }
                let _ = writeln!(out, "```{}\n{}\n```", c.language, c.content);
            }
            Ok(out)
        })
        .await
    }

    /// Gathers the context a task needs, packed under a token budget: the repository's
    /// convention files, the code its stack traces and identifiers name, the most relevant
    /// code by search, and the definitions, class headers and tests those use, each with
    /// the reason it was chosen. Answers a ready Markdown section; secrets are redacted.
    #[tool(name = "context")]
    async fn context(&self, Parameters(args): Parameters<ContextArgs>) -> Result<String, String> {
        let root = self
            .repo(args.repository.as_deref())
            .map_err(|e| e.to_string())?;
        self.blocking(move |engine| {
            let mut request = ContextRequest::new(args.task, args.budget.unwrap_or(8000) as usize);
            request.ref_name = args.ref_name.filter(|s| !s.is_empty());
            if let Some(t) = args.tokenizer.filter(|s| !s.is_empty()) {
                // Only the built-in encodings: a path would let a client probe server files.
                if t.contains('/') || t.contains('\\') {
                    return Err(Error::invalid(format!(
                        "tokenizer: {t:?} is not cl100k or o200k"
                    )));
                }
                request.tokenizer = t;
            }
            let pack = engine.context(&root, &request)?;
            Ok(pack.markdown)
        })
        .await
    }

    /// Reads lines of one file of an indexed repository, at the commit the index reflects.
    #[tool(name = "read_span")]
    async fn read_span(
        &self,
        Parameters(args): Parameters<ReadSpanArgs>,
    ) -> Result<String, String> {
        let root = self
            .repo(args.repository.as_deref())
            .map_err(|e| e.to_string())?;
        self.blocking(move |engine| {
            let span = engine.read_span(
                &root,
                args.ref_name.as_deref().filter(|s| !s.is_empty()),
                &args.path,
                (
                    args.start_line.unwrap_or(0) as usize,
                    args.end_line.unwrap_or(0) as usize,
                ),
            )?;
            Ok(format!(
                "{}:{}-{} of {} lines ({} @ {}){}\n{}",
                span.path,
                span.start_line,
                span.end_line,
                span.total_lines,
                span.ref_name,
                span.commit.as_deref().unwrap_or("-"),
                if span.truncated { " (truncated)" } else { "" },
                span.text
            ))
        })
        .await
    }

    /// What an indexed repository reflects: refs and commits, chunk counts, embedding
    /// coverage, and whether HEAD moved or the checkout has uncommitted changes.
    #[tool(name = "status")]
    async fn status(&self, Parameters(args): Parameters<StatusArgs>) -> Result<String, String> {
        let root = self
            .repo(args.repository.as_deref())
            .map_err(|e| e.to_string())?;
        self.blocking(move |engine| {
            let s = engine.status(&root)?;
            serde_json::to_string_pretty(&s).map_err(|e| Error::Internal(e.to_string()))
        })
        .await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("codectx", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "codectx indexes git repositories into searchable chunks. Use `context` for the \
                 code a task needs under a token budget, `search` to find code, `read_span` to read more of a file, `status` to \
                 see which commit the index reflects.",
            )
    }
}

/// Serves the tools on stdin/stdout until the client closes them.
pub fn run_stdio(engine: Arc<Engine>, default_repo: Option<PathBuf>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let server = McpServer::new(engine, default_repo);
        let running = server
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| Error::Unavailable(format!("MCP handshake failed: {e}")))?;
        running
            .waiting()
            .await
            .map_err(|e| Error::Internal(format!("MCP server: {e}")))?;
        Ok(())
    })
}
