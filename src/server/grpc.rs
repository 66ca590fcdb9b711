//! The gRPC service (`codectx.v1.CodeContext`): thin handlers that turn wire requests into
//! `Engine` calls on the blocking pool and engine answers into wire messages. Errors become
//! gRPC statuses in one place (`status`). Health and reflection (v1 and v1alpha) are served
//! beside it.

use super::status::{blocking, to_status};
use crate::engine::{Engine, IndexOptions, Progress, RepoStatus};
use crate::error::{Error, Result};
use crate::index::manifest::RefState;
use crate::model::Language;
use crate::retrieve::context::{ContextRequest, ItemForm};
use crate::retrieve::{SearchMode, SearchRequest};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// The generated API.
pub mod pb {
    tonic::include_proto!("codectx.v1");
    /// For server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("codectx_v1_descriptor");
}

use pb::code_context_server::{CodeContext, CodeContextServer};

/// Largest request the server decodes, and largest answer it encodes.
const MAX_DECODE_BYTES: usize = 4 * 1024 * 1024;
pub(crate) const MAX_ENCODE_BYTES: usize = 32 * 1024 * 1024;

/// Longest a unary call may run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Requests served at once per connection; more wait (bounded by HTTP/2 stream limits).
const CONCURRENCY_PER_CONNECTION: usize = 64;

/// How the server protects itself and its data.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// When set, every `CodeContext` call must carry `authorization: Bearer <token>`
    /// (health and reflection stay open for probes and tools).
    pub auth_token: Option<String>,
    /// Calls the engine works on at once; more are refused at once with RESOURCE_EXHAUSTED
    /// rather than queued without bound.
    pub max_in_flight: usize,
    /// Where to serve Prometheus metrics (`GET /metrics`); none when unset.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Serve TLS (rustls) with this certificate; plaintext HTTP/2 when unset.
    pub tls: Option<TlsFiles>,
    /// Embed behind the lexical index on a background worker (and resume, at start, what
    /// an earlier run left unembedded); otherwise a reindex embeds before it answers.
    pub embed_in_background: bool,
    /// What clients may register (`codectx serve`: only under `--allow-root`; the default,
    /// for servers codectx starts for its own clients, anything but system directories).
    pub admission: super::admission::Admission,
    /// Clients with tokens of their own, each seeing only its repositories (`auth_token`
    /// is a client that sees every repository). With any, every call needs a token.
    pub clients: Vec<super::admission::Client>,
}

/// PEM files of a TLS server: its certificate chain and key, and optionally the CA that
/// client certificates must chain to (mutual TLS: a client without one is refused).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub client_ca: Option<std::path::PathBuf>,
}

impl TlsFiles {
    /// Reads the PEM files; a missing or unreadable file is named in the error.
    fn server_config(&self) -> Result<tonic::transport::ServerTlsConfig> {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let read = |what: &str, path: &Path| {
            std::fs::read(path)
                .map_err(|e| Error::invalid(format!("TLS {what} {}: {e}", path.display())))
        };
        let identity =
            Identity::from_pem(read("certificate", &self.cert)?, read("key", &self.key)?);
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(Certificate::from_pem(read("client CA", ca)?));
        }
        Ok(config)
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            auth_token: None,
            max_in_flight: 64,
            metrics_listen: None,
            tls: None,
            embed_in_background: true,
            admission: super::admission::Admission::open(),
            clients: Vec::new(),
        }
    }
}

/// The service over one engine.
pub struct Service {
    engine: Arc<Engine>,
    in_flight: Arc<tokio::sync::Semaphore>,
    metrics: super::metrics::Metrics,
    /// Embeds what a reindex left behind its commit; `None` embeds inside the reindex.
    embedding: Option<Arc<crate::background::EmbedWorker>>,
    admission: Arc<super::admission::Admission>,
}

impl Service {
    pub fn new(engine: Arc<Engine>, max_in_flight: usize) -> Service {
        Service::with_metrics(engine, max_in_flight, Default::default())
    }

    pub fn with_metrics(
        engine: Arc<Engine>,
        max_in_flight: usize,
        metrics: super::metrics::Metrics,
    ) -> Service {
        Service {
            engine,
            in_flight: Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1))),
            metrics,
            embedding: None,
            admission: Arc::new(super::admission::Admission::open()),
        }
    }

    /// Lets clients register only what `admission` admits.
    pub fn with_admission(mut self, admission: super::admission::Admission) -> Service {
        self.admission = Arc::new(admission);
        self
    }

    /// Hands embedding to `worker`: a reindex answers once the lexical index is committed.
    pub fn with_embedding(mut self, worker: Arc<crate::background::EmbedWorker>) -> Service {
        self.embedding = Some(worker);
        self
    }

    /// A slot for one call, or RESOURCE_EXHAUSTED when all are taken.
    fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| {
                Status::resource_exhausted(
                    "the server is at its in-flight limit; retry with backoff",
                )
            })
    }
}

/// Checks `authorization: Bearer <token>` in constant time against every client's token
/// and hands the handlers who called ([`Caller`]).
#[derive(Clone)]
struct Auth(Arc<Vec<super::admission::Client>>);

/// Who made a call and what it may see (every repository when the server has no tokens).
#[derive(Clone)]
struct Caller {
    name: Arc<str>,
    scope: super::admission::Scope,
}

impl Default for Caller {
    fn default() -> Self {
        Caller {
            name: Arc::from("anonymous"),
            scope: super::admission::Scope::all(),
        }
    }
}

impl Caller {
    fn of<T>(request: &Request<T>) -> Caller {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or_default()
    }

    /// An error unless this caller may use the repository at `root`.
    fn check(&self, engine: &Engine, root: &Path) -> Result<()> {
        self.scope
            .check(&self.name, root, &engine.repository_id(root))
    }
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if self.0.is_empty() {
            return Ok(request);
        }
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return Err(Status::unauthenticated(
                "this server requires `authorization: Bearer <token>`",
            ));
        };
        // Every token is compared, so the time taken says nothing about which matched.
        let mut found = None;
        for client in self.0.iter() {
            if super::constant_time_eq(given.as_bytes(), client.token.as_bytes()) {
                found = found.or(Some(client));
            }
        }
        match found {
            Some(client) => {
                request.extensions_mut().insert(Caller {
                    name: Arc::from(client.name.as_str()),
                    scope: client.scope.clone(),
                });
                Ok(request)
            }
            None => Err(Status::permission_denied(
                "the bearer token is not accepted",
            )),
        }
    }
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn ref_status(r: &RefState) -> pb::RefStatus {
    pb::RefStatus {
        name: r.name.clone(),
        commit: r.commit.clone().unwrap_or_default(),
        files: r.files,
        chunks: r.chunks,
        skipped_files: r.skipped,
        indexed_at: r.indexed_at,
        indexed_dirty: r.dirty,
    }
}

fn repository(engine: &Engine, root: &Path, status: Option<&RepoStatus>) -> pb::Repository {
    pb::Repository {
        id: engine.repository_id(root),
        root: root.display().to_string(),
        refs: status
            .map(|s| s.refs.iter().map(ref_status).collect())
            .unwrap_or_default(),
        default_ref: status
            .and_then(|s| s.indexed.as_ref())
            .map(|r| r.name.clone())
            .unwrap_or_default(),
        url: engine.remote_of(root).ok().flatten().unwrap_or_default(),
    }
}

/// A repository's status, or `None` when it was never indexed.
fn status_if_indexed(engine: &Engine, root: &Path) -> Result<Option<RepoStatus>> {
    match engine.status(root) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == crate::error::ErrorKind::FailedPrecondition => Ok(None),
        Err(e) => Err(e),
    }
}

/// The repository a request names: registered id or path; for reindexing, an absolute
/// path not yet registered is registered if `admission` admits it.
fn resolve(
    engine: &Engine,
    register_as: Option<(&super::admission::Admission, &Caller)>,
    name: &str,
) -> Result<PathBuf> {
    match (engine.find_repository(name), register_as) {
        (Ok(root), Some((_, caller))) => caller.check(engine, &root).map(|()| root),
        (Ok(root), None) => Ok(root),
        (Err(e), Some((admission, caller))) if e.kind() == crate::error::ErrorKind::NotFound => {
            register(engine, admission, caller, Path::new(name))
        }
        (Err(e), _) => Err(e),
    }
}

/// Registers `path` if `admission` admits its canonical form (a registered repository is
/// always itself again).
fn register(
    engine: &Engine,
    admission: &super::admission::Admission,
    caller: &Caller,
    path: &Path,
) -> Result<PathBuf> {
    if let Ok(root) = engine.find_repository(&path.to_string_lossy()) {
        return caller.check(engine, &root).map(|()| root);
    }
    if path.is_absolute() {
        let root = Engine::canonical_root(path)?;
        admission.check_path(&root)?;
        caller.check(engine, &root)?;
    }
    engine.register(path)
}

fn mode(m: i32) -> Result<SearchMode> {
    match pb::SearchMode::try_from(m) {
        Ok(pb::SearchMode::Unspecified | pb::SearchMode::Hybrid) => Ok(SearchMode::Hybrid),
        Ok(pb::SearchMode::Lexical) => Ok(SearchMode::Lexical),
        Ok(pb::SearchMode::Dense) => Ok(SearchMode::Dense),
        Err(_) => Err(Error::invalid(format!("mode: unknown value {m}"))),
    }
}

/// Sends progress to the stream, at most every 1% (and at each phase's start and end).
struct StreamProgress {
    tx: mpsc::Sender<Result<pb::ReindexProgress, Status>>,
    state: std::sync::Mutex<(String, u64, u64, u64)>,
}

impl StreamProgress {
    fn send(&self, phase: &str, done: u64, total: u64) {
        let _ = self.tx.blocking_send(Ok(pb::ReindexProgress {
            phase: phase.to_string(),
            done,
            total,
            summary: None,
        }));
    }
}

impl Progress for StreamProgress {
    fn start(&self, phase: &str, total: u64) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = (phase.to_string(), 0, total, 0);
        self.send(phase, 0, total);
    }
    fn advance(&self, n: u64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.1 += n;
        let step = (s.2 / 100).max(1);
        if s.1 - s.3 >= step {
            s.3 = s.1;
            let (phase, done, total) = (s.0.clone(), s.1, s.2);
            drop(s);
            self.send(&phase, done, total);
        }
    }
    fn finish(&self) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.send(&s.0, s.1, s.2);
    }
}

#[tonic::async_trait]
impl CodeContext for Service {
    async fn register_repository(
        &self,
        request: Request<pb::RegisterRepositoryRequest>,
    ) -> Result<Response<pb::Repository>, Status> {
        let _permit = self.admit()?;
        let caller = Caller::of(&request);
        let pb::RegisterRepositoryRequest { path, url } = request.into_inner();
        let engine = Arc::clone(&self.engine);
        let admission = Arc::clone(&self.admission);
        blocking(move || {
            let root = match (path.is_empty(), url.is_empty()) {
                (true, true) => return Err(Error::invalid("path or url: one must be given")),
                (false, false) => {
                    return Err(Error::invalid("path and url: give one, not both"));
                }
                (false, true) => register(&engine, &admission, &caller, Path::new(&path))?,
                (true, false) => {
                    if !caller.scope.is_all() {
                        return Err(Error::PermissionDenied(format!(
                            "client {:?} may register repositories in its scope by path only",
                            caller.name
                        )));
                    }
                    admission.check_url(&url)?;
                    engine.register_remote(&url)?
                }
            };
            let status = status_if_indexed(&engine, &root)?;
            Ok(repository(&engine, &root, status.as_ref()))
        })
        .await
        .map(Response::new)
    }

    async fn list_repositories(
        &self,
        request: Request<pb::ListRepositoriesRequest>,
    ) -> Result<Response<pb::ListRepositoriesResponse>, Status> {
        let _permit = self.admit()?;
        let caller = Caller::of(&request);
        let engine = Arc::clone(&self.engine);
        blocking(move || {
            let mut repositories = Vec::new();
            for root in engine.repositories()? {
                if caller.check(&engine, &root).is_err() {
                    continue;
                }
                let status = status_if_indexed(&engine, &root).unwrap_or(None);
                repositories.push(repository(&engine, &root, status.as_ref()));
            }
            Ok(pb::ListRepositoriesResponse { repositories })
        })
        .await
        .map(Response::new)
    }

    async fn remove_repository(
        &self,
        request: Request<pb::RemoveRepositoryRequest>,
    ) -> Result<Response<pb::RemoveRepositoryResponse>, Status> {
        let _permit = self.admit()?;
        let caller = Caller::of(&request);
        let name = request.into_inner().repository;
        let engine = Arc::clone(&self.engine);
        blocking(move || {
            caller.check(&engine, &resolve(&engine, None, &name)?)?;
            engine
                .unregister(&name)
                .map(|_| pb::RemoveRepositoryResponse {})
        })
        .await
        .map(Response::new)
    }

    type ReindexStream = ReceiverStream<Result<pb::ReindexProgress, Status>>;

    async fn reindex(
        &self,
        request: Request<pb::ReindexRequest>,
    ) -> Result<Response<Self::ReindexStream>, Status> {
        let permit = self.admit()?;
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let engine = Arc::clone(&self.engine);
        let root = {
            let engine = Arc::clone(&engine);
            let name = req.repository.clone();
            let admission = Arc::clone(&self.admission);
            blocking(move || resolve(&engine, Some((&admission, &caller)), &name)).await?
        };
        let (tx, rx) = mpsc::channel(64);
        let metrics = self.metrics.clone();
        let worker = self.embedding.clone();
        tokio::task::spawn_blocking(move || {
            // The slot is held until the reindex is over, not just until the stream opens.
            let _permit = permit;
            let started = std::time::Instant::now();
            let progress = StreamProgress {
                tx: tx.clone(),
                state: std::sync::Mutex::new((String::new(), 0, 0, 0)),
            };
            let options = IndexOptions {
                ref_name: opt(req.r#ref),
                worktree: req.worktree,
                force: req.force,
                embed_before_commit: if req.no_embed {
                    0
                } else {
                    crate::ingest::EMBED_BEFORE_COMMIT
                },
            };
            let fetched = match engine.remote_of(&root) {
                Ok(Some(_)) => {
                    progress.send("fetch", 0, 1);
                    engine
                        .fetch_remote(&root)
                        .map(|_| progress.send("fetch", 1, 1))
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            // A background pass over this repository gives up the writer after its batch.
            if let Some(w) = &worker {
                w.interrupt(&root);
            }
            // With a worker, what the commit left unembedded is embedded behind it; without
            // one (or when the client asks to wait), before the stream ends.
            let behind = worker.is_some() && !req.wait_for_embedding;
            let result = fetched
                .and_then(|()| engine.index_with(&root, &options, &progress))
                .map(|report| {
                    let mut note = report.embed_deferred.clone().unwrap_or_default();
                    if !req.no_embed
                        && !behind
                        && let Err(e) = engine.embed_behind(&root, &progress)
                    {
                        note = format!("embedding skipped, search stays lexical: {e}");
                    }
                    let coverage = engine.dense_coverage(&root).unwrap_or(0.0);
                    if !req.no_embed && behind && engine.needs_embedding(&root).unwrap_or(false) {
                        note = "embedding in the background; Status reports the dense \
                                coverage as it rises"
                            .into();
                    }
                    (report, coverage, note)
                });
            // Whatever is unembedded now (this change, or a pass this reindex interrupted)
            // goes back to the worker.
            if let Some(w) = &worker
                && !req.no_embed
                && engine.needs_embedding(&root).unwrap_or(false)
            {
                w.enqueue(&root);
            }
            let message = match result {
                Ok((r, coverage, embed_note)) => Ok(pb::ReindexProgress {
                    phase: "done".into(),
                    done: r.files_chunked,
                    total: r.files_chunked,
                    summary: Some(pb::ReindexSummary {
                        r#ref: r.ref_name,
                        commit: r.commit.unwrap_or_default(),
                        previous_commit: r.previous_commit.unwrap_or_default(),
                        plan: serde_json::to_value(r.plan)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        files_added: r.changes.added,
                        files_modified: r.changes.modified,
                        files_deleted: r.changes.deleted,
                        files_renamed: r.changes.renamed,
                        files_chunked: r.files_chunked,
                        files_indexed: r.files_indexed,
                        files_skipped: r.files_skipped,
                        chunks: r.chunks,
                        chunks_added: r.chunks_added,
                        chunks_removed: r.chunks_removed,
                        vectors_added: r.vectors_added,
                        seconds: r.seconds,
                        dense_coverage: coverage,
                        embed_note,
                    }),
                }),
                Err(e) => Err(to_status(e)),
            };
            let outcome = if message.is_ok() { "ok" } else { "error" };
            metrics.record_reindex(outcome, started.elapsed().as_secs_f64());
            let _ = tx.blocking_send(message);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let _permit = self.admit()?;
        let caller = Caller::of(&request);
        let name = request.into_inner().repository;
        let engine = Arc::clone(&self.engine);
        let repo_name = name.clone();
        let worker = self.embedding.clone();
        logged(
            &self.metrics,
            "Status",
            repo_name,
            blocking(move || {
                let root = resolve(&engine, None, &name)?;
                caller.check(&engine, &root)?;
                let s = engine.status(&root)?;
                Ok(pb::StatusResponse {
                    repository: Some(repository(&engine, &root, Some(&s))),
                    current_head: s.current_head.clone().unwrap_or_default(),
                    stale: s.stale,
                    dirty_now: s.dirty_now,
                    chunks: s.chunks,
                    stored_chunks: s.stored_chunks,
                    vectors: s.vectors,
                    dense_coverage: s.dense_coverage,
                    embedding: worker.is_some_and(|w| w.pending(&root)),
                })
            }),
        )
        .await
    }

    async fn search(
        &self,
        request: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let _permit = self.admit()?;
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let engine = Arc::clone(&self.engine);
        let repo_name = req.repository.clone();
        logged(
            &self.metrics,
            "Search",
            repo_name,
            blocking(move || {
                let root = resolve(&engine, None, &req.repository)?;
                caller.check(&engine, &root)?;
                let language = match opt(req.language) {
                    Some(l) => Some(
                        Language::parse(&l)
                            .ok_or_else(|| Error::invalid(format!("language: unknown {l:?}")))?,
                    ),
                    None => None,
                };
                let search = SearchRequest {
                    query: req.query,
                    k: if req.k == 0 { 10 } else { req.k as usize },
                    language,
                    path_glob: opt(req.path_glob),
                    mode: mode(req.mode)?,
                    fusion: Default::default(),
                    ref_name: opt(req.r#ref),
                };
                let r = engine.search(&root, &search)?;
                Ok(pb::SearchResponse {
                    repository: engine.repository_id(&root),
                    r#ref: r.ref_name.unwrap_or_default(),
                    commit: r.commit.unwrap_or_default(),
                    indexed_dirty: r.indexed_dirty,
                    degraded: r.degraded.unwrap_or_default(),
                    dense_coverage: r.dense_coverage.unwrap_or(-1.0),
                    hits: r
                        .hits
                        .into_iter()
                        .map(|h| pb::SearchHit {
                            rank: h.rank as u32,
                            score: h.score,
                            lexical_rank: h.lexical_rank.unwrap_or(0) as u32,
                            dense_rank: h.dense_rank.unwrap_or(0) as u32,
                            chunk: Some(pb::Chunk {
                                id: h.chunk.id,
                                path: h.chunk.path,
                                language: h.chunk.language.name().to_string(),
                                kind: h.chunk.kind.name().to_string(),
                                symbol: h.chunk.symbol,
                                scope: h.chunk.scope,
                                signature: h.chunk.signature,
                                doc: h.chunk.doc,
                                start_line: h.chunk.span.start_line as u32,
                                end_line: h.chunk.span.end_line as u32,
                                content: h.chunk.content,
                            }),
                        })
                        .collect(),
                    files: r
                        .files
                        .into_iter()
                        .map(|f| pb::FileHit {
                            path: f.path,
                            score: f.score,
                            hits: f.chunks as u32,
                            why: f
                                .why
                                .into_iter()
                                .map(|c| pb::Contribution {
                                    feature: c.feature,
                                    value: c.value,
                                    contribution: c.contribution,
                                })
                                .collect(),
                        })
                        .collect(),
                    took_ms: r.took_ms,
                    ranker: r.ranker,
                })
            }),
        )
        .await
    }

    async fn get_context(
        &self,
        request: Request<pb::GetContextRequest>,
    ) -> Result<Response<pb::GetContextResponse>, Status> {
        let _permit = self.admit()?;
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let engine = Arc::clone(&self.engine);
        let repo_name = req.repository.clone();
        logged(
            &self.metrics,
            "GetContext",
            repo_name,
            blocking(move || {
                let root = resolve(&engine, None, &req.repository)?;
                caller.check(&engine, &root)?;
                let budget = if req.budget == 0 {
                    8000
                } else {
                    req.budget as usize
                };
                let mut context = ContextRequest::new(req.task, budget);
                context.ref_name = opt(req.r#ref);
                context.mode = mode(req.mode)?;
                if let Some(t) = opt(req.tokenizer) {
                    context.tokenizer = t;
                }
                if let Some(share) = req.convention_share {
                    context.options.convention_share = share;
                }
                context.options.line_numbers = !req.no_line_numbers;
                let pack = engine.context(&root, &context)?;
                Ok(pb::GetContextResponse {
                    repository: engine.repository_id(&root),
                    r#ref: pack.ref_name.unwrap_or_default(),
                    commit: pack.commit.unwrap_or_default(),
                    budget: pack.budget as u32,
                    tokenizer: pack.tokenizer,
                    tokens_used: pack.tokens_used as u32,
                    items: pack
                        .items
                        .into_iter()
                        .map(|i| pb::ContextItem {
                            path: i.path,
                            language: i.language.name().to_string(),
                            start_line: i.start_line as u32,
                            end_line: i.end_line as u32,
                            commit: i.commit.unwrap_or_default(),
                            symbol: i.symbol,
                            kind: i.kind.name().to_string(),
                            form: match i.form {
                                ItemForm::Full => "full".into(),
                                ItemForm::Signature => "signature".into(),
                            },
                            tokens: i.tokens as u32,
                            reasons: i.reasons,
                            convention: i.convention,
                            text: i.text,
                        })
                        .collect(),
                    candidates: pack.candidates as u32,
                    left_out: pack.left_out as u32,
                    redacted: pack.redacted as u32,
                    degraded: pack.degraded.unwrap_or_default(),
                    markdown: pack.markdown,
                    took_ms: pack.took_ms,
                })
            }),
        )
        .await
    }

    async fn read_span(
        &self,
        request: Request<pb::ReadSpanRequest>,
    ) -> Result<Response<pb::ReadSpanResponse>, Status> {
        let _permit = self.admit()?;
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let engine = Arc::clone(&self.engine);
        let repo_name = req.repository.clone();
        logged(
            &self.metrics,
            "ReadSpan",
            repo_name,
            blocking(move || {
                let root = resolve(&engine, None, &req.repository)?;
                caller.check(&engine, &root)?;
                let span = engine.read_span(
                    &root,
                    opt(req.r#ref).as_deref(),
                    &req.path,
                    (req.start_line as usize, req.end_line as usize),
                )?;
                Ok(pb::ReadSpanResponse {
                    path: span.path,
                    r#ref: span.ref_name,
                    commit: span.commit.unwrap_or_default(),
                    start_line: span.start_line as u32,
                    end_line: span.end_line as u32,
                    total_lines: span.total_lines as u32,
                    text: span.text,
                    truncated: span.truncated,
                })
            }),
        )
        .await
    }
}

/// Awaits one handler and writes its access-log line (target `codectx::access`):
/// method, repository, outcome, milliseconds.
async fn logged<T>(
    metrics: &super::metrics::Metrics,
    method: &str,
    repository: String,
    call: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<Response<T>, Status> {
    let started = std::time::Instant::now();
    let result = call.await;
    let seconds = started.elapsed().as_secs_f64();
    let code = match &result {
        Ok(_) => "OK".to_string(),
        Err(s) => format!("{:?}", s.code()),
    };
    metrics.record(method, &code, seconds);
    let ms = seconds * 1000.0;
    match &result {
        Ok(_) => {
            tracing::info!(target: "codectx::access", "{method} repository={repository:?} ok {ms:.1}ms")
        }
        Err(s) => tracing::info!(
            target: "codectx::access",
            "{method} repository={repository:?} {:?} {ms:.1}ms: {}",
            s.code(),
            s.message()
        ),
    }
    result.map(Response::new)
}

/// `Search` on a running server (the CLI's `--server`).
pub fn remote_search(
    url: &str,
    token: Option<&str>,
    request: pb::SearchRequest,
) -> Result<pb::SearchResponse> {
    super::client::Client::connect(url, token)?.search(request)
}

/// `GetContext` on a running server (the CLI's `--server`).
pub fn remote_context(
    url: &str,
    token: Option<&str>,
    request: pb::GetContextRequest,
) -> Result<pb::GetContextResponse> {
    super::client::Client::connect(url, token)?.context(request)
}

/// Serves the API, health and reflection on `listener` until `shutdown` resolves; then
/// health turns NOT_SERVING and in-flight requests finish before it returns.
pub async fn serve(
    engine: Arc<Engine>,
    listener: tokio::net::TcpListener,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<CodeContextServer<Service>>().await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    let metrics = super::metrics::Metrics::default();
    let mut api =
        Service::with_metrics(Arc::clone(&engine), options.max_in_flight, metrics.clone())
            .with_admission(options.admission.clone());
    if options.embed_in_background {
        let worker = Arc::new(crate::background::EmbedWorker::start(Arc::clone(&engine)));
        // What an earlier run left unembedded (a large change, a kill) is resumed.
        let (resume, for_resume) = (Arc::clone(&engine), Arc::clone(&worker));
        tokio::task::spawn_blocking(move || {
            for root in resume.repositories().unwrap_or_default() {
                if resume.needs_embedding(&root).unwrap_or(false) {
                    for_resume.enqueue(&root);
                }
            }
            // The first hybrid search should not pay for starting the query sessions.
            resume.prepare_queries();
        });
        metrics.watch_worker(Arc::clone(&worker));
        api = api.with_embedding(worker);
    }
    let service = tonic::service::interceptor::InterceptedService::new(
        CodeContextServer::new(api)
            .max_decoding_message_size(MAX_DECODE_BYTES)
            .max_encoding_message_size(MAX_ENCODE_BYTES),
        Auth(Arc::new(
            options
                .auth_token
                .map(|token| super::admission::Client {
                    name: "default".into(),
                    token,
                    scope: super::admission::Scope::all(),
                })
                .into_iter()
                .chain(options.clients)
                .collect(),
        )),
    );
    let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(addr) = options.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot listen on {addr} for metrics: {e}")))?;
        tokio::spawn(super::metrics::serve(metrics, engine, listener, async {
            let _ = metrics_stopped.await;
        }));
    }
    let drain = async move {
        shutdown.await;
        let _ = metrics_stop.send(());
        // Tell load balancers first, then stop accepting and let in-flight calls finish.
        reporter
            .set_not_serving::<CodeContextServer<Service>>()
            .await;
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &options.tls {
        // A bad certificate or key is reported here, before the first client sees it.
        builder = builder
            .tls_config(tls.server_config()?)
            .map_err(|e| Error::invalid(format!("TLS {}: {e}", tls.cert.display())))?;
    }
    builder
        .timeout(REQUEST_TIMEOUT)
        .concurrency_limit_per_connection(CONCURRENCY_PER_CONNECTION)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming_nodelay(listener), drain)
        .await
        .map_err(|e| Error::Unavailable(format!("gRPC server: {e}")))
}

/// Accepted connections with Nagle's algorithm off. The builder's `tcp_nodelay` applies
/// only to listeners tonic binds itself; without this a small answer waits for the
/// client's delayed ACK (~40 ms per call on Linux).
fn incoming_nodelay(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

/// A server on its own thread and runtime (for `codectx agent` without `--server`).
pub struct LocalServer {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves `engine` on `listen` (port 0 picks one) until the returned handle is dropped.
pub fn spawn_local(engine: Arc<Engine>, listen: std::net::SocketAddr) -> Result<LocalServer> {
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| Error::Unavailable(format!("cannot listen on {listen}: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::Unavailable(format!("{listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Unavailable(format!("{listen}: {e}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the server runtime: {e}")))?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("codectx-grpc".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return tracing::error!("the local server cannot listen: {e}"),
                };
                let stop = async {
                    let _ = rx.await;
                };
                if let Err(e) = serve(engine, listener, ServeOptions::default(), stop).await {
                    tracing::error!("the local server stopped: {e}");
                }
            })
        })
        .map_err(|e| Error::Internal(format!("cannot start the server thread: {e}")))?;
    Ok(LocalServer {
        url: format!("http://{addr}"),
        stop: Some(tx),
        thread: Some(thread),
    })
}
