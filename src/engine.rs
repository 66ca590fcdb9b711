//! The one API of the core: index a repository, take snapshots, search, report status.
//! The CLI, the gRPC service, the agent and the gate are all clients of `Engine`.

use crate::config::{Config, RankerChoice};
use crate::embed::Embedder;
use crate::embed::cache::{CachedEmbedder, EmbeddingCache};
use crate::embed::http::HttpEmbedder;
use crate::embed::local::LocalEmbedder;
use crate::error::{Error, Result};
use crate::index::lexical::{LexicalIndex, Opened, Snapshot};
use crate::index::manifest::{RefState, WORKTREE_REF};
use crate::index::qdrant::{QdrantConfig, QdrantStore};
use crate::index::vectors::{EmbeddedVectorStore, VectorFilter, VectorStore};
use crate::ingest::plan::{plan_git, plan_worktree};
use crate::ingest::{self, Current, Dense, Target, lock};
pub use crate::ingest::{IndexOptions, IndexReport, NoProgress, Progress};
use crate::model::Chunk;
use crate::registry;
use crate::retrieve::context::{self, ContextPack, ContextRequest};
use crate::retrieve::ranker::{self, Ranker};
use crate::retrieve::{self, FileHit, SearchHit, SearchMode, SearchRequest, rank, task};
use crate::source::git;
use crate::tokens::{self, TokenCounter};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A search answer and what it reflects.
#[derive(Debug, Clone, Serialize)]
pub struct SearchResponse {
    pub repo_root: String,
    /// The ref the answer reads (`refs/heads/main`, `worktree`).
    pub ref_name: Option<String>,
    /// The commit the answer reflects (`None` for a worktree).
    pub commit: Option<String>,
    /// The ref was checked out with uncommitted changes, which the answer does not reflect.
    pub indexed_dirty: bool,
    pub mode: SearchMode,
    /// What could not contribute, and why: the dense lane (the answer is then lexical), or
    /// the ranking model (files ranked by RRF); `None` when everything asked for answered.
    pub degraded: Option<String>,
    /// Share of the snapshot's chunks that have a vector (0..=1); `None` in lexical mode.
    pub dense_coverage: Option<f64>,
    pub hits: Vec<SearchHit>,
    /// The files of the candidates, best first.
    pub files: Vec<FileHit>,
    /// What ranked the files: the model's id, or `rrf`.
    pub ranker: String,
    /// Every candidate file with its features (what the ranking model read), for training
    /// and benchmarks; not part of any client's answer.
    #[serde(skip)]
    pub candidates: Vec<crate::retrieve::rank::FileFeatures>,
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
    /// The pass stopped early because its progress said so (what it did is kept).
    pub interrupted: bool,
}

/// Where an index stands against its repository.
#[derive(Debug, Clone, Serialize)]
pub struct RepoStatus {
    pub repo_root: String,
    pub index_dir: String,
    /// The default ref (what searches naming none read).
    pub indexed: Option<RefState>,
    /// Every indexed ref.
    pub refs: Vec<RefState>,
    /// Files and chunks of the default ref.
    pub chunks: u64,
    pub files: u64,
    /// Chunk documents stored for every ref together (refs share the files they share).
    pub stored_chunks: u64,
    /// `HEAD` now.
    pub current_head: Option<String>,
    /// The default ref reflects another commit than `HEAD` now.
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
    /// `<repo dir>/vectors.redb` (the embedded store; beside it, markers of both backends).
    vectors_path: PathBuf,
    /// Where the vectors live when not in the embedded store.
    qdrant: Option<QdrantConfig>,
    vectors: Mutex<Option<Arc<dyn VectorStore>>>,
}

/// What a repository's Qdrant collection holds, kept beside its index (`vectors.qdrant`).
#[derive(Serialize, serde::Deserialize)]
struct QdrantMarker {
    collection: String,
    model: String,
    dims: usize,
}

impl Repo {
    /// Exists while the vector store may hold vectors of chunks that left the index (a run
    /// died around its lexical commit, or the index was rebuilt): the next run with a store,
    /// or the next full embedding pass, reconciles the whole store and removes it.
    fn pending_marker(&self) -> PathBuf {
        self.vectors_path.with_file_name("vectors.pending")
    }

    /// Where the repository's Qdrant collection is named ([`QdrantMarker`]).
    fn qdrant_marker(&self) -> PathBuf {
        self.vectors_path.with_file_name("vectors.qdrant")
    }

    /// Whether this repository ever had vectors (in either backend).
    fn has_vector_store(&self) -> bool {
        self.vectors_path.exists() || self.qdrant_marker().exists()
    }

    /// The repository's vector store: opened for `model` (emptied if it held another
    /// model's vectors), or as it is when `model` is `None`; `None` when none exists yet.
    fn vectors(&self, model: Option<(&str, usize)>) -> Result<Option<Arc<dyn VectorStore>>> {
        let mut slot = self.vectors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = slot.as_ref() {
            let (id, dims) = store.model();
            if model.is_none_or(|(m, d)| m == id && d == dims) {
                return Ok(Some(Arc::clone(store)));
            }
            *slot = None; // release the file before reopening it for another model
        }
        let store: Option<Arc<dyn VectorStore>> = match (&self.qdrant, model) {
            (None, Some((id, dims))) => Some(Arc::new(EmbeddedVectorStore::open(
                &self.vectors_path,
                id,
                dims,
            )?)),
            (None, None) => EmbeddedVectorStore::open_existing(&self.vectors_path)?
                .map(|s| Arc::new(s) as Arc<dyn VectorStore>),
            (Some(config), Some((id, dims))) => {
                // One collection per repository and model: another model never mixes in.
                let dir = self.vectors_path.parent().unwrap_or(Path::new("."));
                let name: String = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                let model_hash = blake3::hash(format!("{id}\0{dims}").as_bytes()).to_hex();
                let marker = QdrantMarker {
                    collection: format!("codectx-{name}-{}", &model_hash[..8]),
                    model: id.to_string(),
                    dims,
                };
                let store = QdrantStore::open(config, &marker.collection, id, dims)?;
                let path = self.qdrant_marker();
                let json = serde_json::to_vec(&marker)
                    .map_err(|e| Error::Internal(format!("qdrant marker: {e}")))?;
                std::fs::write(&path, json).map_err(|e| Error::io(&path, e))?;
                Some(Arc::new(store))
            }
            (Some(config), None) => {
                let path = self.qdrant_marker();
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        let m: QdrantMarker = serde_json::from_slice(&bytes)
                            .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?;
                        Some(Arc::new(QdrantStore::open(
                            config,
                            &m.collection,
                            &m.model,
                            m.dims,
                        )?))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(Error::io(&path, e)),
                }
            }
        };
        *slot = store;
        Ok(slot.clone())
    }
}

/// The engine: owns the data directory and the open indexes.
pub struct Engine {
    config: Config,
    /// The registered repositories (cached; shared with other processes through the file).
    registry: registry::Registry,
    repos: Mutex<HashMap<PathBuf, Arc<Repo>>>,
    /// Loaded on first use; a load failure is remembered (and reported) rather than retried.
    embedder: OnceLock<Result<Arc<dyn Embedder>, String>>,
    cache: OnceLock<Result<Arc<EmbeddingCache>, String>>,
    /// Token counters by name (a Hugging Face tokenizer takes a while to load).
    counters: Mutex<HashMap<String, Arc<dyn TokenCounter>>>,
    /// The file ranking model, loaded on first use: `Ok(None)` when RRF was chosen, `Err`
    /// the reason a model could not be used (every answer then says so).
    ranker: OnceLock<Result<Option<Arc<Ranker>>, String>>,
}

impl Engine {
    pub fn new(config: Config) -> Result<Engine> {
        config.validate()?;
        Ok(Engine {
            registry: registry::Registry::new(&config.data_dir),
            config,
            repos: Mutex::new(HashMap::new()),
            embedder: OnceLock::new(),
            cache: OnceLock::new(),
            counters: Mutex::new(HashMap::new()),
            ranker: OnceLock::new(),
        })
    }

    /// The file ranking model, loaded once (see [`crate::config::RankerChoice`]).
    pub fn ranker(&self) -> Result<Option<Arc<Ranker>>, String> {
        self.ranker
            .get_or_init(|| {
                let loaded = match &self.config.ranker {
                    RankerChoice::Rrf => return Ok(None),
                    RankerChoice::Shipped => Ranker::parse(ranker::DEFAULT_MODEL, rank::FEATURES),
                    RankerChoice::File(path) => Ranker::load(path, rank::FEATURES),
                };
                loaded.map(|r| Some(Arc::new(r))).map_err(|e| {
                    tracing::warn!("files are ranked by RRF: {e}");
                    e.to_string()
                })
            })
            .clone()
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

    /// Starts what dense queries need (the embedder and its query sessions) ahead of the
    /// first search; a server calls it at start. Without a model this does nothing: the
    /// searches will say why they answer lexically.
    pub fn prepare_queries(&self) {
        if let Err(e) = self.embedder().and_then(|e| e.prepare_queries()) {
            tracing::debug!("dense queries not prepared: {e}");
        }
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

    pub fn canonical_root(path: &Path) -> Result<PathBuf> {
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
            qdrant: self.config.qdrant.clone(),
            vectors: Mutex::new(None),
        });
        repos.insert(root, Arc::clone(&repo));
        Ok((repo, rebuilt))
    }

    /// Indexes the tree at `path` (its checked-out ref in git, the files on disk otherwise)
    /// and commits it atomically. See [`Engine::index_with`].
    pub fn index(&self, path: &Path, progress: &dyn Progress) -> Result<IndexReport> {
        self.index_with(path, &IndexOptions::default(), progress)
    }

    /// Brings one ref of the repository at `path` up to date with the least work: only
    /// files changed since the indexed commit are read, only file versions never seen are
    /// chunked and embedded. Readers see the old state until the commit, then the new one.
    /// Waits while another process writes this repository's index.
    pub fn index_with(
        &self,
        path: &Path,
        options: &IndexOptions,
        progress: &dyn Progress,
    ) -> Result<IndexReport> {
        let root = Self::canonical_root(path)?;
        let _writer = lock::lock(&self.repo_dir(&root))?;
        self.index_locked(&root, options, progress)
    }

    /// Like [`Engine::index_with`], but when another process is writing this repository's
    /// index the request is queued for it and `None` returned at once: a burst of requests
    /// (hooks firing on ten commits in a second) becomes one reindex to the newest state.
    /// The writer waits `debounce` before it reads what is queued.
    pub fn index_coalesced(
        &self,
        path: &Path,
        options: &IndexOptions,
        debounce: Duration,
        progress: &dyn Progress,
    ) -> Result<Option<Vec<IndexReport>>> {
        let root = Self::canonical_root(path)?;
        let dir = self.repo_dir(&root);
        let request = lock::Request {
            ref_name: options.ref_name.clone(),
            worktree: options.worktree,
        };
        let mut reports = Vec::new();
        loop {
            lock::enqueue(&dir, &request)?;
            let Some(held) = lock::try_lock(&dir)? else {
                return Ok(if reports.is_empty() {
                    None
                } else {
                    Some(reports)
                });
            };
            std::thread::sleep(debounce);
            loop {
                let queued = lock::take(&dir)?;
                if queued.is_empty() {
                    break;
                }
                for r in queued {
                    let opts = IndexOptions {
                        ref_name: r.ref_name,
                        worktree: r.worktree,
                        ..options.clone()
                    };
                    reports.push(self.index_locked(&root, &opts, progress)?);
                }
            }
            drop(held);
            // A request queued between the last take and the unlock found the lock held:
            // go round and serve it (or leave it to whoever took the lock since).
            if !lock::pending(&dir) {
                return Ok(Some(reports));
            }
        }
    }

    fn index_locked(
        &self,
        root: &Path,
        options: &IndexOptions,
        progress: &dyn Progress,
    ) -> Result<IndexReport> {
        let (repo, rebuilt) = self.repo(root, true)?;
        let _one_writer = repo.writer.lock().unwrap_or_else(|p| p.into_inner());
        // A rebuilt index may name its chunks differently: the vectors of the old ones are
        // removed by reconciling the store, which the marker asks for.
        if rebuilt.is_some() && repo.has_vector_store() {
            let marker = repo.pending_marker();
            std::fs::write(&marker, b"").map_err(|e| Error::io(&marker, e))?;
        }
        let root = &repo.root;
        let current = Current::load(&repo.lexical, root)?;
        // Git mode only at a repository's root: any other directory (a sub-directory, an
        // ignored build directory) is the files on disk.
        let is_repo = git::is_repository_root(root);
        let git_state = if is_repo {
            git::checkout(root)
        } else {
            git::GitState::default()
        };
        let use_git = !options.worktree && is_repo && git::has_commits(root);
        let plan = if use_git {
            let resolved = git::resolve(root, options.ref_name.as_deref().unwrap_or("HEAD"))?;
            let mut plan = plan_git(
                root,
                &resolved.name,
                &resolved.commit,
                current.old(&resolved.name),
                &current.known,
                &self.config.walk,
                options.force,
            )?;
            // Dirtiness (a `git status`) only matters when this commit is the checkout.
            let checked_out = git_state.head.as_deref() == Some(resolved.commit.as_str());
            plan.dirty = checked_out && git::is_dirty(root);
            plan
        } else {
            if let Some(name) = &options.ref_name {
                return Err(Error::invalid(format!(
                    "--ref {name}: {} is not the root of a git repository with commits",
                    root.display()
                )));
            }
            plan_worktree(
                root,
                WORKTREE_REF,
                current.old(WORKTREE_REF),
                &self.config.walk,
                std::slice::from_ref(&self.config.data_dir),
            )?
        };
        // The model is only loaded when this run may use it.
        let embedder = if options.embed_before_commit > 0 && !plan.work.is_empty() {
            self.embedder().ok()
        } else {
            None
        };
        let cache = embedder.as_ref().and_then(|_| self.cache().ok());
        let store = match (&embedder, &cache) {
            (Some(e), Some(_)) => repo.vectors(Some((e.model_id(), e.dims()))),
            _ => repo.vectors(None),
        };
        // A vector server that cannot be reached never stops the lexical index: its vectors
        // catch up on the next embedding pass (stale ones are removed there too).
        let store = match store {
            Err(e) if e.kind() == crate::error::ErrorKind::Unavailable => {
                tracing::warn!("indexing lexically only: {e}");
                None
            }
            other => other?,
        };
        let embed = match (&embedder, &cache) {
            (Some(e), Some(c)) => Some((e.as_ref(), c.as_ref())),
            _ => None,
        };
        let marker = repo.pending_marker();
        let target = Target {
            root,
            lexical: &repo.lexical,
            config: &self.config,
            dense: store.as_deref().map(|store| Dense {
                store,
                embed,
                pending_marker: &marker,
            }),
        };
        let mut report = ingest::run(&target, &current, plan, options, progress)?;
        // Chunks left while their vectors could not be reached (a vector server down):
        // those vectors wait for the next reconciling pass, which the marker asks for.
        if target.dense.is_none() && report.chunks_removed > 0 && repo.has_vector_store() {
            std::fs::write(&marker, b"").map_err(|e| Error::io(&marker, e))?;
        }
        report.rebuilt = rebuilt;
        report.branch = git_state.branch;
        Ok(report)
    }

    /// Removes a ref from the index (by full or short name): its manifest, and the chunks
    /// and vectors of files no other ref holds.
    pub fn forget_ref(&self, path: &Path, ref_name: &str) -> Result<ingest::ForgetReport> {
        let root = Self::canonical_root(path)?;
        let _writer = lock::lock(&self.repo_dir(&root))?;
        let (repo, _) = self.repo(&root, false)?;
        let _one_writer = repo.writer.lock().unwrap_or_else(|p| p.into_inner());
        let current = Current::load(&repo.lexical, &repo.root)?;
        let name = current
            .state
            .find(ref_name)
            .map(|r| r.name.clone())
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "ref {ref_name:?} is not indexed in {}",
                    repo.root.display()
                ))
            })?;
        let store = repo.vectors(None)?;
        let marker = repo.pending_marker();
        let target = Target {
            root: &repo.root,
            lexical: &repo.lexical,
            config: &self.config,
            dense: store.as_deref().map(|store| Dense {
                store,
                embed: None,
                pending_marker: &marker,
            }),
        };
        ingest::forget(&target, &current, &name)
    }

    /// The stable id of a repository: its index directory's name (`<name>-<hash of root>`).
    pub fn repository_id(&self, root: &Path) -> String {
        self.repo_dir(root)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Adds a repository to the registry (idempotent); returns its canonical root.
    pub fn register(&self, path: &Path) -> Result<PathBuf> {
        if !path.is_absolute() {
            return Err(Error::invalid(format!(
                "path {:?}: must be absolute (a path on the server)",
                path.display()
            )));
        }
        let root = Self::canonical_root(path)?;
        self.registry.update(|e| e.add(&root))?;
        Ok(root)
    }

    /// Registers a repository by git URL: clones it bare under `<data>/clones` (once; the
    /// same URL again is the same repository) and returns the clone's root, which is then
    /// indexed like any bare repository. [`Engine::fetch_remote`] brings it up to date.
    pub fn register_remote(&self, url: &str) -> Result<PathBuf> {
        git::check_remote_url(url)?;
        let dest = self.clone_dir(url);
        let ours = |dir: &Path| {
            git::is_bare(dir)
                && git::git_text(dir, &["config", "--get", "remote.origin.url"])
                    .is_ok_and(|u| u == url)
        };
        if !ours(&dest) {
            if dest.exists() {
                // Left by a crash between clone and registration, or a different URL
                // hashing alike: neither is ours to reuse.
                std::fs::remove_dir_all(&dest).map_err(|e| Error::io(&dest, e))?;
            }
            match git::clone_bare(url, &dest) {
                Ok(()) => {}
                // Another request cloned the same URL meanwhile.
                Err(_) if ours(&dest) => {}
                Err(e) => return Err(e),
            }
        }
        let root = Self::canonical_root(&dest)?;
        self.registry.update(|e| {
            e.add(&root);
            e.remotes.insert(root.clone(), url.to_string());
        })?;
        Ok(root)
    }

    /// Where the clone of `url` lives: `<data>/clones/<name>-<hash of the URL>.git`.
    fn clone_dir(&self, url: &str) -> PathBuf {
        let name: String = url
            .trim_end_matches('/')
            .trim_end_matches(".git")
            .rsplit(['/', ':'])
            .next()
            .unwrap_or_default()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        let hash = blake3::hash(url.as_bytes()).to_hex();
        let name = if name.is_empty() { "repo".into() } else { name };
        self.config
            .data_dir
            .join("clones")
            .join(format!("{name}-{}.git", &hash[..16]))
    }

    /// The git URL a repository was registered by, if it was.
    pub fn remote_of(&self, root: &Path) -> Result<Option<String>> {
        Ok(self.registry.get()?.remotes.get(root).cloned())
    }

    /// Fetches every branch of a repository registered by URL; `false` (and nothing done)
    /// for a local repository, whose owner keeps it current.
    pub fn fetch_remote(&self, root: &Path) -> Result<bool> {
        if self.remote_of(root)?.is_none() {
            return Ok(false);
        }
        let _writer = lock::lock(&self.repo_dir(root))?;
        git::fetch_origin(root)?;
        Ok(true)
    }

    /// Every registered repository's root, sorted.
    pub fn repositories(&self) -> Result<Vec<PathBuf>> {
        Ok(self.registry.get()?.repositories.clone())
    }

    /// Finds a registered repository by id or root path.
    pub fn find_repository(&self, name: &str) -> Result<PathBuf> {
        if name.is_empty() {
            return Err(Error::invalid("repository: must not be empty"));
        }
        let roots = self.repositories()?;
        if let Some(root) = roots.iter().find(|r| self.repository_id(r) == name) {
            return Ok(root.clone());
        }
        let path = Path::new(name);
        if path.is_absolute()
            && let Ok(root) = path.canonicalize()
            && roots.contains(&root)
        {
            return Ok(root);
        }
        Err(Error::NotFound(format!(
            "repository {name:?} is not registered (register it, or reindex its path)"
        )))
    }

    /// Removes a repository from the registry and deletes its index (not the repository).
    pub fn unregister(&self, name: &str) -> Result<PathBuf> {
        let root = self.find_repository(name)?;
        let dir = self.repo_dir(&root);
        let _writer = lock::lock(&dir)?;
        let remote = self.registry.update(|e| {
            e.repositories.retain(|r| r != &root);
            e.remotes.remove(&root)
        })?;
        // A clone made for a URL is ours; a local repository is never touched.
        let clones = self.config.data_dir.join("clones");
        if remote.is_some()
            && clones.canonicalize().is_ok_and(|c| root.starts_with(c))
            && let Err(e) = std::fs::remove_dir_all(&root)
        {
            tracing::warn!("removing the clone {}: {e}", root.display());
        }
        self.repos
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&root);
        // A Qdrant collection of this repository goes with it.
        let marker = dir.join("vectors.qdrant");
        if let (Some(config), Ok(bytes)) = (&self.config.qdrant, std::fs::read(&marker))
            && let Ok(m) = serde_json::from_slice::<QdrantMarker>(&bytes)
        {
            let dropped = QdrantStore::open(config, &m.collection, &m.model, m.dims)
                .and_then(QdrantStore::drop_collection);
            if let Err(e) = dropped {
                tracing::warn!("removing the qdrant collection {}: {e}", m.collection);
            }
        }
        for sub in [
            "lexical",
            "vectors.qdrant",
            "vectors.redb",
            "vectors.usearch",
            "vectors.pending",
            "pending",
        ] {
            let p = dir.join(sub);
            let removed = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            if let Err(e) = removed
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(Error::io(&p, e));
            }
        }
        Ok(root)
    }

    /// Lines `start..=end` (1-based; 0 = first / last) of one file of a ref: from the ref's
    /// indexed commit in git, from disk for `worktree`. The path is checked before anything
    /// is read: relative, no `..`, no NUL, not a secret-bearing name, and (on disk) not
    /// leading outside the repository through a link.
    pub fn read_span(
        &self,
        path: &Path,
        ref_name: Option<&str>,
        rel: &str,
        lines: (usize, usize),
    ) -> Result<SpanText> {
        check_relative_path(rel)?;
        let snapshot = self.snapshot_of(path, ref_name)?;
        let (repo, _) = self.repo(path, false)?;
        let state = snapshot.ref_state().ok_or_else(|| {
            Error::FailedPrecondition(format!("{} is not indexed yet", repo.root.display()))
        })?;
        // Only what the index holds at this ref is served: never an ignored, skipped or
        // never-indexed file, even one on disk in the worktree.
        if !snapshot.holds_file(rel)? {
            return Err(Error::NotFound(format!(
                "{rel:?} is not an indexed file of {} (only indexed files are served)",
                state.name
            )));
        }
        let bytes = match &state.commit {
            Some(commit) => git::show_file(&repo.root, commit, rel).ok_or_else(|| {
                Error::NotFound(format!("{rel:?} is not in {} at {commit}", state.name))
            })?,
            None => {
                let full = repo.root.join(rel);
                let real = full
                    .canonicalize()
                    .map_err(|_| Error::NotFound(format!("{rel:?} does not exist")))?;
                if !real.starts_with(&repo.root) {
                    return Err(Error::invalid(format!(
                        "path {rel:?}: leads outside the repository"
                    )));
                }
                std::fs::read(&real).map_err(|e| Error::io(&real, e))?
            }
        };
        // What a span read returns goes into prompts: secrets are redacted like indexed text.
        let text = crate::redact::redact(&String::from_utf8_lossy(&bytes)).text;
        let all: Vec<&str> = text.lines().collect();
        let total = all.len();
        let start = lines.0.max(1);
        let mut end = if lines.1 == 0 {
            total
        } else {
            lines.1.min(total)
        };
        if start > end.max(1) || (total > 0 && start > total) {
            return Err(Error::invalid(format!(
                "lines {start}..{}: outside the file's {total} lines",
                lines.1
            )));
        }
        let truncated = end + 1 - start.min(end + 1) > MAX_SPAN_LINES;
        if truncated {
            end = start + MAX_SPAN_LINES - 1;
        }
        let body = if total == 0 {
            String::new()
        } else {
            all[start - 1..end].join("\n")
        };
        Ok(SpanText {
            path: rel.to_string(),
            ref_name: state.name.clone(),
            commit: state.commit.clone(),
            start_line: start,
            end_line: end,
            total_lines: total,
            text: body,
            truncated,
        })
    }

    /// A read snapshot of a repository's default ref.
    pub fn snapshot(&self, path: &Path) -> Result<Snapshot> {
        self.snapshot_of(path, None)
    }

    /// A read snapshot of one ref (`None`: the default ref).
    pub fn snapshot_of(&self, path: &Path, ref_name: Option<&str>) -> Result<Snapshot> {
        let (repo, _) = self.repo(path, false)?;
        repo.lexical.snapshot(ref_name)
    }

    /// Gives every chunk of every ref of the repository a vector: from the cache when
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
        let chunks = repo.lexical.snapshot_all()?.all_chunks()?;
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
        let mut interrupted = false;
        for batch in missing.chunks(ingest::EMBED_BATCH) {
            // Between batches only: each batch is committed whole.
            if progress.cancelled() {
                interrupted = true;
                break;
            }
            ingest::upsert_batch(store.as_ref(), &cached, batch)?;
            progress.advance(batch.len() as u64);
        }
        progress.finish();
        if let Err(e) = store.flush() {
            tracing::warn!("{e}");
        }
        if !interrupted {
            // The store now holds exactly the index's chunks: nothing is left to reconcile.
            let marker = repo.pending_marker();
            match std::fs::remove_file(&marker) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&marker, e)),
            }
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
            interrupted,
        })
    }

    /// Searches a repository's index in the requested mode. The dense lane never fails a
    /// search: when it cannot answer, the answer is lexical and `degraded` says why.
    pub fn search(&self, path: &Path, req: &SearchRequest) -> Result<SearchResponse> {
        let started = Instant::now();
        req.validate()?;
        let (repo, _) = self.repo(path, false)?;
        let snapshot = repo.lexical.snapshot(req.ref_name.as_deref())?;
        self.search_in(&repo, &snapshot, req, started)
    }

    /// Builds a context pack for a task: see [`crate::retrieve::context`]. The pack never
    /// exceeds the budget counted with the requested tokenizer, and its text is redacted.
    pub fn context(&self, path: &Path, req: &ContextRequest) -> Result<ContextPack> {
        let started = Instant::now();
        req.validate()?;
        let counter = self.token_counter(&req.tokenizer)?;
        let (repo, _) = self.repo(path, false)?;
        let snapshot = repo.lexical.snapshot(req.ref_name.as_deref())?;
        let signals = task::read_task(&req.task);
        let mut search = SearchRequest::new(req.task.clone());
        // A larger budget has room for more: about one candidate per 250 tokens (each lane
        // reads three times as many; reading them is most of a pack's search time).
        search.k = (req.budget / 250).clamp(req.options.search_depth, retrieve::MAX_K);
        search.mode = req.mode;
        search.fusion = req.fusion;
        search.ref_name = req.ref_name.clone();
        // A task without searchable words (a bare stack trace of symbols) still has its
        // other lanes; any other search error is the caller's to see.
        let (hits, files, degraded) = if crate::index::tokenizer::tokenize(&req.task).is_empty() {
            (Vec::new(), Vec::new(), None)
        } else {
            let r = self.search_in(&repo, &snapshot, &search, started)?;
            (r.hits, r.files, r.degraded)
        };
        let search_ms = started.elapsed().as_secs_f64() * 1000.0;
        let gathered = context::gather(
            &snapshot,
            &signals,
            &hits,
            &files,
            context::breadth(&req.task),
            req.budget,
            &req.options,
        )?;
        let gather_ms = started.elapsed().as_secs_f64() * 1000.0 - search_ms;
        let candidates = gathered.len();
        let state = snapshot.ref_state();
        let repo_name = repo
            .root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let source = context::PackSource {
            repo_name: &repo_name,
            ref_name: state.map(|s| s.name.as_str()),
            commit: state.and_then(|s| s.commit.as_deref()),
        };
        let packed = context::pack(
            gathered,
            &source,
            req.budget,
            counter.as_ref(),
            &req.options,
        );
        Ok(ContextPack {
            repo_root: repo.root.display().to_string(),
            ref_name: state.map(|s| s.name.clone()),
            commit: state.and_then(|s| s.commit.clone()),
            budget: req.budget,
            tokenizer: counter.name().to_string(),
            tokens_used: packed.tokens,
            redacted: packed
                .items
                .iter()
                .map(|i| crate::redact::markers_in(&i.text))
                .sum(),
            items: packed.items,
            candidates,
            left_out: packed.left_out,
            degraded,
            markdown: packed.markdown,
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
            search_ms,
            gather_ms,
            pack_ms: started.elapsed().as_secs_f64() * 1000.0 - search_ms - gather_ms,
        })
    }

    /// A token counter by name, loaded once per engine.
    pub fn token_counter(&self, spec: &str) -> Result<Arc<dyn TokenCounter>> {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = counters.get(spec) {
            return Ok(Arc::clone(c));
        }
        let c = tokens::counter(spec)?;
        counters.insert(spec.to_string(), Arc::clone(&c));
        Ok(c)
    }

    fn search_in(
        &self,
        repo: &Repo,
        snapshot: &Snapshot,
        req: &SearchRequest,
        started: Instant,
    ) -> Result<SearchResponse> {
        let paths = match &req.path_glob {
            Some(glob) => Some(retrieve::resolve_glob(snapshot, glob)?),
            None => None,
        };
        let terms = retrieve::query_terms(&req.query);
        let depth = req.lane_depth();
        // The ranking stage reads deeper into the chunk lane than fusion does: its
        // candidate files come from there.
        let lexical_depth = depth.max(rank::LEXICAL_DEPTH);
        let mut degraded = None;
        let mut dense_coverage = None;
        // The lanes run side by side: the query embedding (most of a hybrid search's time)
        // overlaps the lexical lane.
        let (dense, lexical) = std::thread::scope(|scope| {
            let lexical = (req.mode != SearchMode::Dense).then(|| {
                let paths = paths.clone();
                let terms = &terms;
                scope.spawn(move || {
                    retrieve::lexical_lane(snapshot, req, terms, paths, lexical_depth)
                })
            });
            let dense = (req.mode != SearchMode::Lexical)
                .then(|| self.dense_lane(repo, snapshot, req, paths.clone(), depth));
            let lexical = lexical.map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(Error::Internal("the lexical lane panicked".into())))
            });
            (dense, lexical)
        });
        let dense = match dense {
            None => None,
            Some(Ok((chunks, cov))) => {
                dense_coverage = Some(cov);
                Some(chunks)
            }
            Some(Err(reason)) => {
                tracing::info!("dense lane unavailable: {reason}");
                degraded = Some(reason);
                dense_coverage = Some(0.0);
                None
            }
        };
        let lexical_only = req.mode == SearchMode::Lexical || degraded.is_some();
        let lexical = match lexical {
            Some(result) => result?,
            // Dense mode that fell back: the lexical lane was not run yet.
            None if lexical_only => {
                retrieve::lexical_lane(snapshot, req, &terms, paths.clone(), lexical_depth)?
            }
            None => Vec::new(),
        };
        let lane = |chunks: &[(f32, Chunk)], dense: bool| -> Vec<SearchHit> {
            chunks
                .iter()
                .take(depth)
                .enumerate()
                .map(|(i, (score, chunk))| SearchHit {
                    rank: i + 1,
                    score: *score,
                    lexical_rank: (!dense).then_some(i + 1),
                    dense_rank: dense.then_some(i + 1),
                    chunk: chunk.clone(),
                })
                .collect()
        };
        let hits = if lexical_only {
            lane(&lexical, false)
        } else if req.mode == SearchMode::Dense {
            lane(dense.as_deref().unwrap_or_default(), true)
        } else {
            retrieve::fuse(
                lexical.iter().take(depth).map(|(_, c)| c.clone()).collect(),
                dense.iter().flatten().map(|(_, c)| c.clone()).collect(),
                req.fusion,
            )
        };
        // The ranking stage: every lane's candidate files, scored by the model.
        let signals = task::read_task(&req.query);
        let input = rank::RankInput {
            task: &req.query,
            signals: &signals,
            terms: &terms,
            lexical: if req.mode == SearchMode::Dense && !lexical_only {
                &[]
            } else {
                &lexical
            },
            dense: dense.as_deref(),
            paths: paths.as_ref(),
            language: req.language,
        };
        let candidates = rank::features(snapshot, &input)?;
        let (scorer, ranker_name) = match self.ranker() {
            Ok(Some(model)) => (Some(model), None),
            Ok(None) => (None, None),
            Err(reason) => (None, Some(reason)),
        };
        let ranked = match &scorer {
            Some(model) => rank::rank(candidates.clone(), &rank::Scorer::Model(model)),
            None => rank::rank(candidates.clone(), &rank::Scorer::Rrf),
        };
        if let Some(reason) = &ranker_name {
            let note = format!("ranking model unusable, files ranked by RRF: {reason}");
            degraded = Some(match degraded {
                Some(d) => format!("{d}; {note}"),
                None => note,
            });
        }
        let (hits, files) = retrieve::order_by_files(hits, ranked, req.k);
        let indexed = snapshot.ref_state();
        Ok(SearchResponse {
            repo_root: repo.root.display().to_string(),
            ref_name: indexed.map(|r| r.name.clone()),
            commit: indexed.and_then(|r| r.commit.clone()),
            indexed_dirty: indexed.is_some_and(|r| r.dirty),
            mode: req.mode,
            degraded,
            dense_coverage,
            hits,
            files,
            ranker: scorer.map_or_else(|| "rrf".to_string(), |m| m.id().to_string()),
            candidates,
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
        // A secret pasted into a query never reaches the model either.
        let text = crate::redact::redact(&req.query).text;
        embedder.prepare_queries().map_err(|e| e.to_string())?;
        let query = self.embed_query_within(embedder, &text)?;
        let filter = VectorFilter {
            language: req.language,
            paths,
        };
        // Other refs' vectors share the store: ask for more when this ref is not all of it.
        let shared = snapshot.state().is_some_and(|s| s.refs.len() > 1);
        let found = store
            .search(&query, if shared { depth * 2 } else { depth }, &filter)
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
        // Vectors serve every ref, so coverage is measured over every chunk document.
        let chunks = repo
            .lexical
            .snapshot_all()
            .map_err(|e| e.to_string())?
            .num_chunks();
        Ok((out, coverage(store.len() as u64, chunks)))
    }

    /// Embeds what the last index left behind its commit (a large change commits
    /// lexically first): runs [`Engine::embed`] only when some chunk has no vector yet;
    /// `None` when every chunk has one.
    pub fn embed_behind(
        &self,
        path: &Path,
        progress: &dyn Progress,
    ) -> Result<Option<EmbedReport>> {
        if !self.needs_embedding(path)? {
            return Ok(None);
        }
        self.embed(path, progress).map(Some)
    }

    /// Whether an embedding pass has work: a chunk without a vector, or a vector without a
    /// chunk. Equal counts mean neither only while no vector can have outlived its chunk;
    /// when one may (the marker), or the counts differ either way, a pass is due.
    pub fn needs_embedding(&self, path: &Path) -> Result<bool> {
        let (repo, _) = self.repo(path, false)?;
        let chunks = repo.lexical.snapshot_all()?.num_chunks();
        let vectors = repo.vectors(None)?.map(|v| v.len() as u64).unwrap_or(0);
        Ok(vectors != chunks || repo.pending_marker().exists())
    }

    /// The share of the repository's chunk documents (every ref) that have a vector.
    pub fn dense_coverage(&self, path: &Path) -> Result<f64> {
        let (repo, _) = self.repo(path, false)?;
        let chunks = repo.lexical.snapshot_all()?.num_chunks();
        let vectors = repo.vectors(None)?.map(|v| v.len() as u64).unwrap_or(0);
        Ok(coverage(vectors, chunks))
    }

    /// Where a repository's index stands against the tree now.
    pub fn status(&self, path: &Path) -> Result<RepoStatus> {
        let (repo, _) = self.repo(path, false)?;
        let snapshot = repo.lexical.snapshot(None)?;
        let all = repo.lexical.snapshot_all()?.num_chunks();
        let now = git::state(&repo.root);
        let indexed = snapshot.ref_state().cloned();
        let stale = indexed
            .as_ref()
            .is_some_and(|r| r.commit.is_some() && r.commit != now.head);
        // Another process (an indexer) may hold the vector store open: report none then.
        let vectors = match repo.vectors(None) {
            Ok(store) => store.map(|v| v.len() as u64).unwrap_or(0),
            Err(e) => {
                tracing::warn!("vector store unavailable: {e}");
                0
            }
        };
        Ok(RepoStatus {
            repo_root: repo.root.display().to_string(),
            index_dir: repo.lexical.dir().display().to_string(),
            files: indexed.as_ref().map_or(0, |r| r.files),
            chunks: snapshot.num_chunks(),
            stored_chunks: all,
            refs: snapshot
                .state()
                .map(|s| s.refs.values().cloned().collect())
                .unwrap_or_default(),
            indexed,
            current_head: now.head,
            stale,
            dirty_now: now.dirty,
            vectors,
            dense_coverage: coverage(vectors, all),
        })
    }
}

/// Most lines one `read_span` returns.
pub const MAX_SPAN_LINES: usize = 2000;

/// Lines of one file, and where they come from.
#[derive(Debug, Clone, Serialize)]
pub struct SpanText {
    pub path: String,
    pub ref_name: String,
    pub commit: Option<String>,
    pub start_line: usize,
    pub end_line: usize,
    pub total_lines: usize,
    pub text: String,
    pub truncated: bool,
}

/// Rejects a repository-relative path that could name something outside the repository or
/// a secret: empty, absolute, `..`, NUL, backslashes, secret-bearing names.
pub fn check_relative_path(rel: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::invalid(format!("path {rel:?}: {why}")));
    if rel.is_empty() {
        return bad("must not be empty");
    }
    if rel.contains('\0') {
        return bad("contains NUL");
    }
    if rel.starts_with('/') || rel.contains('\\') || Path::new(rel).is_absolute() {
        return bad("must be relative to the repository root, with `/` separators");
    }
    if rel.split('/').any(|part| part == "..") {
        return bad("must not contain `..`");
    }
    if rel.split('/').any(|part| part.eq_ignore_ascii_case(".git")) {
        return bad("git's own files are never served");
    }
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if crate::source::classify::is_secret_file(name) {
        return bad("secret-bearing files are never served");
    }
    Ok(())
}

fn coverage(vectors: u64, chunks: u64) -> f64 {
    if chunks == 0 {
        1.0
    } else {
        (vectors as f64 / chunks as f64).min(1.0)
    }
}
