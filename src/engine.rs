//! The one API of the core: index a repository, take snapshots, search, report status.
//! The CLI, the gRPC service, the agent and the gate are all clients of `Engine`.

use crate::config::Config;
use crate::embed::Embedder;
use crate::embed::cache::{CachedEmbedder, EmbeddingCache};
use crate::embed::http::HttpEmbedder;
use crate::embed::local::LocalEmbedder;
use crate::error::{Error, Result};
use crate::index::lexical::{CommitMeta, LexicalIndex, Opened, SCHEMA_VERSION, Snapshot};
use crate::index::vectors::{EmbeddedVectorStore, VectorFilter, VectorPoint, VectorStore};
use crate::model::Chunk;
use crate::retrieve::{self, FileHit, SearchHit, SearchMode, SearchRequest};
use crate::source::walk::{Candidate, WalkOutput, walk};
use crate::source::{SkipReason, Skipped, classify, git};
use crate::syntax::{self, Diagnostic};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Chunked files waiting for the writer (bounds memory when chunking outruns indexing).
const RESULTS_AHEAD: usize = 256;

/// Chunks embedded and committed to the vector store together.
const EMBED_BATCH: usize = 128;

/// Receives progress of long operations; the CLI draws a bar with it.
pub trait Progress: Sync {
    fn start(&self, _phase: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
}

/// Progress that goes nowhere.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What one indexing run did.
#[derive(Debug, Clone, Serialize)]
pub struct IndexReport {
    pub repo_root: String,
    pub head: Option<String>,
    pub branch: Option<String>,
    pub dirty: bool,
    pub files_indexed: u64,
    pub files_skipped: u64,
    pub skipped_by_reason: BTreeMap<String, u64>,
    pub skipped: Vec<Skipped>,
    pub diagnostics: Vec<Diagnostic>,
    pub chunks: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Set when an unusable old index was replaced.
    pub rebuilt: Option<String>,
}

/// A search answer and what it reflects.
#[derive(Debug, Clone, Serialize)]
pub struct SearchResponse {
    pub repo_root: String,
    /// The commit the answer reflects.
    pub commit: Option<String>,
    pub branch: Option<String>,
    /// The working tree had uncommitted changes when it was indexed.
    pub indexed_dirty: bool,
    pub mode: SearchMode,
    /// Why the dense lane did not contribute (the answer is then lexical); `None` when it did
    /// or was not asked.
    pub degraded: Option<String>,
    /// Share of the snapshot's chunks that have a vector (0..=1); `None` in lexical mode.
    pub dense_coverage: Option<f64>,
    pub hits: Vec<SearchHit>,
    /// The files of the candidates, best first.
    pub files: Vec<FileHit>,
    pub took_ms: f64,
}

/// What one embedding pass did.
#[derive(Debug, Clone, Serialize)]
pub struct EmbedReport {
    pub model: String,
    pub chunks: u64,
    pub vectors: u64,
    /// Texts the model embedded in this pass (cache misses).
    pub embedded: u64,
    /// Chunks whose vector came from the content-addressed cache.
    pub from_cache: u64,
    /// Vectors removed because their chunk left the index.
    pub removed: u64,
    pub coverage: f64,
    pub seconds: f64,
}

/// Where an index stands against its repository.
#[derive(Debug, Clone, Serialize)]
pub struct RepoStatus {
    pub repo_root: String,
    pub index_dir: String,
    pub indexed: Option<CommitMeta>,
    pub chunks: u64,
    pub files: u64,
    /// `HEAD` now.
    pub current_head: Option<String>,
    /// The index reflects another commit than `HEAD` now.
    pub stale: bool,
    /// The working tree has uncommitted changes now.
    pub dirty_now: bool,
    /// Chunks with a vector.
    pub vectors: u64,
    /// `vectors / chunks`.
    pub dense_coverage: f64,
}

struct Repo {
    root: PathBuf,
    lexical: LexicalIndex,
    /// One writer per repository inside this process.
    writer: Mutex<()>,
    /// `<repo dir>/vectors.redb`.
    vectors_path: PathBuf,
    vectors: Mutex<Option<Arc<EmbeddedVectorStore>>>,
}

impl Repo {
    /// The repository's vector store: opened for `model` (emptied if it held another
    /// model's vectors), or as it is when `model` is `None`; `None` when none exists yet.
    fn vectors(&self, model: Option<(&str, usize)>) -> Result<Option<Arc<EmbeddedVectorStore>>> {
        let mut slot = self.vectors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = slot.as_ref() {
            let (id, dims) = store.model();
            if model.is_none_or(|(m, d)| m == id && d == dims) {
                return Ok(Some(Arc::clone(store)));
            }
            *slot = None; // release the file before reopening it for another model
        }
        let store = match model {
            Some((id, dims)) => Some(EmbeddedVectorStore::open(&self.vectors_path, id, dims)?),
            None => EmbeddedVectorStore::open_existing(&self.vectors_path)?,
        };
        *slot = store.map(Arc::new);
        Ok(slot.clone())
    }
}

/// The engine: owns the data directory and the open indexes.
pub struct Engine {
    config: Config,
    repos: Mutex<HashMap<PathBuf, Arc<Repo>>>,
    /// Loaded on first use; a load failure is remembered (and reported) rather than retried.
    embedder: OnceLock<Result<Arc<dyn Embedder>, String>>,
    cache: OnceLock<Result<Arc<EmbeddingCache>, String>>,
}

impl Engine {
    pub fn new(config: Config) -> Result<Engine> {
        config.validate()?;
        Ok(Engine {
            config,
            repos: Mutex::new(HashMap::new()),
            embedder: OnceLock::new(),
            cache: OnceLock::new(),
        })
    }

    /// An engine with a given embedder instead of the configured local model (other
    /// backends, tests).
    pub fn with_embedder(config: Config, embedder: Arc<dyn Embedder>) -> Result<Engine> {
        let engine = Engine::new(config)?;
        let _ = engine.embedder.set(Ok(embedder));
        Ok(engine)
    }

    /// The embedder, loaded once.
    pub fn embedder(&self) -> Result<Arc<dyn Embedder>> {
        self.embedder
            .get_or_init(|| {
                let loaded = match &self.config.embed.http {
                    Some(http) => HttpEmbedder::connect(http.clone())
                        .map(|e| Arc::new(e) as Arc<dyn Embedder>),
                    None => LocalEmbedder::load(&self.config.embed)
                        .map(|e| Arc::new(e) as Arc<dyn Embedder>),
                };
                loaded.map_err(|e| e.to_string())
            })
            .clone()
            .map_err(Error::Unavailable)
    }

    fn cache(&self) -> Result<Arc<EmbeddingCache>> {
        self.cache
            .get_or_init(|| {
                EmbeddingCache::open(&self.config.data_dir.join("embeddings.redb"))
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(Error::Unavailable)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The directory holding a repository's indexes: `<data>/repos/<name>-<hash of root>`.
    pub fn repo_dir(&self, root: &Path) -> PathBuf {
        let name: String = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "root".into())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let hash = blake3::hash(root.as_os_str().as_encoded_bytes()).to_hex();
        self.config
            .data_dir
            .join("repos")
            .join(format!("{name}-{}", &hash[..12]))
    }

    fn canonical_root(path: &Path) -> Result<PathBuf> {
        let root = path.canonicalize().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::NotFound(format!("{}: no such directory", path.display()))
            }
            _ => Error::io(path, e),
        })?;
        if !root.is_dir() {
            return Err(Error::invalid(format!(
                "{}: not a directory",
                path.display()
            )));
        }
        Ok(root)
    }

    /// Opens (or creates, for indexing) a repository's index, cached for this process.
    fn repo(&self, path: &Path, create: bool) -> Result<(Arc<Repo>, Option<String>)> {
        let root = Self::canonical_root(path)?;
        let mut repos = self.repos.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(repo) = repos.get(&root) {
            return Ok((Arc::clone(repo), None));
        }
        let dir = self.repo_dir(&root).join("lexical");
        let (lexical, rebuilt) = if create {
            let (index, opened) = LexicalIndex::open_or_create(&dir)?;
            let rebuilt = match opened {
                Opened::Rebuilt { reason } => Some(reason),
                _ => None,
            };
            (index, rebuilt)
        } else {
            let index = LexicalIndex::open(&dir).map_err(|e| match e {
                Error::NotFound(_) => Error::FailedPrecondition(format!(
                    "{} is not indexed yet; run `codectx index {}`",
                    root.display(),
                    root.display()
                )),
                other => other,
            })?;
            (index, None)
        };
        let repo = Arc::new(Repo {
            root: root.clone(),
            lexical,
            writer: Mutex::new(()),
            vectors_path: dir.with_file_name("vectors.redb"),
            vectors: Mutex::new(None),
        });
        repos.insert(root, Arc::clone(&repo));
        Ok((repo, rebuilt))
    }

    /// Indexes the tree at `path` and commits it atomically: readers see the old index until
    /// the commit, then the new one. One unreadable file never stops the run.
    pub fn index(&self, path: &Path, progress: &dyn Progress) -> Result<IndexReport> {
        let started = Instant::now();
        let (repo, rebuilt) = self.repo(path, true)?;
        let _one_writer = repo.writer.lock().unwrap_or_else(|p| p.into_inner());
        let root = &repo.root;
        let git_state = git::state(root);
        let data_dir = self.config.data_dir.clone();
        let WalkOutput { files, mut skipped } = walk(root, &self.config.walk, &[data_dir])?;
        let mut diagnostics = Vec::new();
        let mut files_indexed = 0u64;
        let mut chunks_total = 0u64;
        let mut bytes = 0u64;

        let mut writer = repo.lexical.writer(self.config.writer_memory_bytes)?;
        writer.bulk_mode();
        writer.delete_all()?;
        progress.start("indexing", files.len() as u64);
        // Chunking (a rayon pool) and indexing (tantivy's threads, fed from here) overlap:
        // a producer thread chunks batches ahead while this thread hands chunks to the writer.
        // Chunking (the rayon pool) and indexing (tantivy's threads, fed from here) overlap:
        // files are chunked in parallel as they come, and handed to the writer in path order
        // so that the index is the same whatever the scheduling.
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, FileResult)>(RESULTS_AHEAD);
            let files = &files;
            scope.spawn(move || {
                let _ = files
                    .par_iter()
                    .enumerate()
                    .try_for_each_with(tx, |tx, (i, c)| {
                        // An error means the writer side stopped listening: stop too.
                        tx.send((i, self.process_file(c)))
                    });
            });
            let mut pending = BTreeMap::new();
            let mut next = 0;
            for (i, result) in rx {
                pending.insert(i, result);
                while let Some(result) = pending.remove(&next) {
                    next += 1;
                    progress.advance(1);
                    match result {
                        FileResult::Chunked {
                            chunks,
                            diagnostics: d,
                            bytes: b,
                        } => {
                            files_indexed += 1;
                            bytes += b;
                            chunks_total += chunks.len() as u64;
                            diagnostics.extend(d);
                            for chunk in &chunks {
                                writer.add(chunk)?;
                            }
                        }
                        FileResult::Skipped(s) => skipped.push(s),
                    }
                }
            }
            Ok(())
        })?;
        let meta = CommitMeta {
            schema_version: SCHEMA_VERSION,
            repo_root: root.display().to_string(),
            head: git_state.head.clone(),
            branch: git_state.branch.clone(),
            dirty: git_state.dirty,
            indexed_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
            files: files_indexed,
            chunks: chunks_total,
            codectx_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        writer.commit(&meta)?;
        writer.finish()?;
        repo.lexical.reload()?;
        progress.finish();

        skipped.sort_by(|a, b| a.path.cmp(&b.path));
        let mut skipped_by_reason = BTreeMap::new();
        for s in &skipped {
            *skipped_by_reason
                .entry(s.reason.name().to_string())
                .or_insert(0) += 1;
        }
        Ok(IndexReport {
            repo_root: root.display().to_string(),
            head: git_state.head,
            branch: git_state.branch,
            dirty: git_state.dirty,
            files_indexed,
            files_skipped: skipped.len() as u64,
            skipped_by_reason,
            skipped,
            diagnostics,
            chunks: chunks_total,
            bytes,
            seconds: started.elapsed().as_secs_f64(),
            rebuilt,
        })
    }

    /// Reads, classifies and chunks one file. Never fails: problems become a skip.
    fn process_file(&self, candidate: &Candidate) -> FileResult {
        let skip = |reason: SkipReason, detail: String| {
            FileResult::Skipped(Skipped {
                path: candidate.rel_path.clone(),
                reason,
                detail,
            })
        };
        let bytes = match std::fs::read(&candidate.abs_path) {
            Ok(b) => b,
            Err(e) => return skip(SkipReason::Unreadable, e.to_string()),
        };
        let text = match classify::decode(&bytes, &self.config.walk) {
            Ok(t) => t,
            Err((reason, detail)) => return skip(reason, detail),
        };
        let name = candidate
            .rel_path
            .rsplit('/')
            .next()
            .unwrap_or(&candidate.rel_path);
        let language = classify::detect_language(name, &text);
        let out = syntax::chunk_file(&candidate.rel_path, language, &text, &self.config.chunk);
        FileResult::Chunked {
            chunks: out.chunks,
            diagnostics: out.diagnostics,
            bytes: bytes.len() as u64,
        }
    }

    /// A read snapshot of a repository's index.
    pub fn snapshot(&self, path: &Path) -> Result<Snapshot> {
        let (repo, _) = self.repo(path, false)?;
        repo.lexical.snapshot()
    }

    /// Gives every chunk of the repository's current snapshot a vector: from the cache when
    /// the text was ever embedded by this model, else from the model. Vectors of chunks that
    /// left the index are removed. Each batch is committed, so an interrupted pass keeps
    /// what it did and the next one resumes.
    pub fn embed(&self, path: &Path, progress: &dyn Progress) -> Result<EmbedReport> {
        let started = Instant::now();
        let (repo, _) = self.repo(path, false)?;
        let _one_writer = repo.writer.lock().unwrap_or_else(|p| p.into_inner());
        let embedder = self.embedder()?;
        let cache = self.cache()?;
        let store = repo
            .vectors(Some((embedder.model_id(), embedder.dims())))?
            .ok_or_else(|| Error::Internal("vector store not created".into()))?;
        let chunks = repo.lexical.snapshot()?.all_chunks()?;
        let live: HashSet<&str> = chunks.iter().map(|c| c.id.as_str()).collect();
        let have = store.ids();
        let stale: Vec<String> = have
            .iter()
            .filter(|id| !live.contains(id.as_str()))
            .cloned()
            .collect();
        store.delete_ids(&stale)?;
        let missing: Vec<Chunk> = chunks
            .iter()
            .filter(|c| !have.contains(&c.id))
            .cloned()
            .collect();
        let cached = CachedEmbedder::new(embedder.as_ref(), &cache);
        progress.start("embedding", missing.len() as u64);
        for batch in missing.chunks(EMBED_BATCH) {
            let vectors = cached.embed_chunks(batch)?;
            let points: Vec<VectorPoint> = batch
                .iter()
                .zip(vectors)
                .map(|(c, vector)| VectorPoint {
                    id: c.id.clone(),
                    path: c.path.clone(),
                    language: c.language,
                    vector,
                })
                .collect();
            store.upsert(&points)?;
            progress.advance(batch.len() as u64);
        }
        progress.finish();
        if let Err(e) = store.save_ann() {
            tracing::warn!("{e}");
        }
        let vectors = store.len() as u64;
        Ok(EmbedReport {
            model: embedder.model_id().to_string(),
            chunks: chunks.len() as u64,
            vectors,
            embedded: cached
                .stats
                .texts_embedded
                .load(std::sync::atomic::Ordering::Relaxed),
            from_cache: cached
                .stats
                .cache_hits
                .load(std::sync::atomic::Ordering::Relaxed),
            removed: stale.len() as u64,
            coverage: coverage(vectors, chunks.len() as u64),
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Searches a repository's index in the requested mode. The dense lane never fails a
    /// search: when it cannot answer, the answer is lexical and `degraded` says why.
    pub fn search(&self, path: &Path, req: &SearchRequest) -> Result<SearchResponse> {
        let started = Instant::now();
        req.validate()?;
        let (repo, _) = self.repo(path, false)?;
        let snapshot = repo.lexical.snapshot()?;
        let paths = match &req.path_glob {
            Some(glob) => Some(retrieve::resolve_glob(&snapshot, glob)?),
            None => None,
        };
        let depth = req.lane_depth();
        let mut degraded = None;
        let mut dense_coverage = None;
        let dense = if req.mode == SearchMode::Lexical {
            Vec::new()
        } else {
            match self.dense_lane(&repo, &snapshot, req, paths.clone(), depth) {
                Ok((chunks, cov)) => {
                    dense_coverage = Some(cov);
                    chunks
                }
                Err(reason) => {
                    tracing::info!("dense lane unavailable: {reason}");
                    degraded = Some(reason);
                    dense_coverage = Some(0.0);
                    Vec::new()
                }
            }
        };
        let lexical_only = req.mode == SearchMode::Lexical || degraded.is_some();
        let mut hits = if lexical_only {
            let lexical = retrieve::lexical_lane(&snapshot, req, paths, depth)?;
            lexical
                .into_iter()
                .enumerate()
                .map(|(i, (score, chunk))| SearchHit {
                    rank: i + 1,
                    score,
                    lexical_rank: Some(i + 1),
                    dense_rank: None,
                    chunk,
                })
                .collect()
        } else if req.mode == SearchMode::Dense {
            dense
                .into_iter()
                .enumerate()
                .map(|(i, (score, chunk))| SearchHit {
                    rank: i + 1,
                    score,
                    lexical_rank: None,
                    dense_rank: Some(i + 1),
                    chunk,
                })
                .collect()
        } else {
            let lexical = retrieve::lexical_lane(&snapshot, req, paths, depth)?;
            retrieve::fuse(
                lexical.into_iter().map(|(_, c)| c).collect(),
                dense.into_iter().map(|(_, c)| c).collect(),
                req.fusion,
            )
        };
        let files = retrieve::rank_files(&hits, req.k);
        hits.truncate(req.k);
        let meta = snapshot.meta();
        Ok(SearchResponse {
            repo_root: repo.root.display().to_string(),
            commit: meta.and_then(|m| m.head.clone()),
            branch: meta.and_then(|m| m.branch.clone()),
            indexed_dirty: meta.is_some_and(|m| m.dirty),
            mode: req.mode,
            degraded,
            dense_coverage,
            hits,
            files,
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }

    /// Embeds a query on a helper thread and waits at most `query_timeout`; a slow embedder
    /// (a loaded model server, say) then costs the search its dense lane, not its latency.
    fn embed_query_within(
        &self,
        embedder: Arc<dyn Embedder>,
        query: &str,
    ) -> Result<Vec<f32>, String> {
        let timeout = self.config.embed.query_timeout;
        let (tx, rx) = std::sync::mpsc::channel();
        let query = query.to_string();
        std::thread::Builder::new()
            .name("codectx-query-embed".into())
            .spawn(move || {
                let _ = tx.send(embedder.embed_query(&query));
            })
            .map_err(|e| format!("cannot start the query embedding: {e}"))?;
        match rx.recv_timeout(timeout) {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "query embedding took longer than {} ms",
                timeout.as_millis()
            )),
        }
    }

    /// The dense lane: (cosine, chunk) best first, and the coverage; `Err` is the reason it
    /// cannot answer (no vectors yet, no model, another model's vectors, an embedding error).
    fn dense_lane(
        &self,
        repo: &Repo,
        snapshot: &Snapshot,
        req: &SearchRequest,
        paths: Option<std::collections::BTreeSet<String>>,
        depth: usize,
    ) -> Result<(Vec<(f32, Chunk)>, f64), String> {
        let not_yet = "no vectors yet: run `codectx index` to embed this repository".to_string();
        let store = repo
            .vectors(None)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| not_yet.clone())?;
        if store.is_empty() {
            return Err(not_yet);
        }
        let embedder = self.embedder().map_err(|e| e.to_string())?;
        let (id, dims) = store.model();
        if id != embedder.model_id() || dims != embedder.dims() {
            return Err(format!(
                "the vectors were made by {id}, the model is {}; run `codectx index` to re-embed",
                embedder.model_id()
            ));
        }
        let query = self.embed_query_within(embedder, &req.query)?;
        let filter = VectorFilter {
            language: req.language,
            paths,
        };
        let found = store
            .search(&query, depth, &filter)
            .map_err(|e| e.to_string())?;
        let mut files: HashMap<String, Vec<Chunk>> = HashMap::new();
        let mut out = Vec::with_capacity(found.len());
        for hit in found {
            if !files.contains_key(&hit.path) {
                let chunks = snapshot.chunks_of(&hit.path).map_err(|e| e.to_string())?;
                files.insert(hit.path.clone(), chunks);
            }
            // A vector whose chunk is not in this snapshot (embedding lags indexing) is skipped.
            if let Some(chunk) = files[&hit.path].iter().find(|c| c.id == hit.id) {
                out.push((hit.score, chunk.clone()));
            }
        }
        let chunks = snapshot.num_chunks();
        Ok((out, coverage(store.len() as u64, chunks)))
    }

    /// Where a repository's index stands against the tree now.
    pub fn status(&self, path: &Path) -> Result<RepoStatus> {
        let (repo, _) = self.repo(path, false)?;
        let snapshot = repo.lexical.snapshot()?;
        let now = git::state(&repo.root);
        let indexed = snapshot.meta().cloned();
        let stale = indexed.as_ref().is_some_and(|m| m.head != now.head);
        let vectors = repo.vectors(None)?.map(|v| v.len() as u64).unwrap_or(0);
        Ok(RepoStatus {
            repo_root: repo.root.display().to_string(),
            index_dir: repo.lexical.dir().display().to_string(),
            files: snapshot.paths()?.len() as u64,
            chunks: snapshot.num_chunks(),
            indexed,
            current_head: now.head,
            stale,
            dirty_now: now.dirty,
            vectors,
            dense_coverage: coverage(vectors, snapshot.num_chunks()),
        })
    }
}

fn coverage(vectors: u64, chunks: u64) -> f64 {
    if chunks == 0 {
        1.0
    } else {
        (vectors as f64 / chunks as f64).min(1.0)
    }
}

enum FileResult {
    Chunked {
        chunks: Vec<Chunk>,
        diagnostics: Vec<Diagnostic>,
        bytes: u64,
    },
    Skipped(Skipped),
}
