//! The one API of the core: index a repository, take snapshots, search, report status.
//! The CLI, the gRPC service, the agent and the gate are all clients of `Engine`.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::index::lexical::{CommitMeta, LexicalIndex, Opened, SCHEMA_VERSION, Snapshot};
use crate::model::Chunk;
use crate::retrieve::{self, SearchHit, SearchRequest};
use crate::source::walk::{Candidate, WalkOutput, walk};
use crate::source::{SkipReason, Skipped, classify, git};
use crate::syntax::{self, Diagnostic};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Chunked files waiting for the writer (bounds memory when chunking outruns indexing).
const RESULTS_AHEAD: usize = 256;

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
    pub hits: Vec<SearchHit>,
    pub took_ms: f64,
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
}

struct Repo {
    root: PathBuf,
    lexical: LexicalIndex,
    /// One writer per repository inside this process.
    writer: Mutex<()>,
}

/// The engine: owns the data directory and the open indexes.
pub struct Engine {
    config: Config,
    repos: Mutex<HashMap<PathBuf, Arc<Repo>>>,
}

impl Engine {
    pub fn new(config: Config) -> Result<Engine> {
        config.validate()?;
        Ok(Engine {
            config,
            repos: Mutex::new(HashMap::new()),
        })
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

    /// Searches a repository's index.
    pub fn search(&self, path: &Path, req: &SearchRequest) -> Result<SearchResponse> {
        let started = Instant::now();
        req.validate()?;
        let (repo, _) = self.repo(path, false)?;
        let snapshot = repo.lexical.snapshot()?;
        let hits = retrieve::search(&snapshot, req)?;
        let meta = snapshot.meta();
        Ok(SearchResponse {
            repo_root: repo.root.display().to_string(),
            commit: meta.and_then(|m| m.head.clone()),
            branch: meta.and_then(|m| m.branch.clone()),
            indexed_dirty: meta.is_some_and(|m| m.dirty),
            hits,
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }

    /// Where a repository's index stands against the tree now.
    pub fn status(&self, path: &Path) -> Result<RepoStatus> {
        let (repo, _) = self.repo(path, false)?;
        let snapshot = repo.lexical.snapshot()?;
        let now = git::state(&repo.root);
        let indexed = snapshot.meta().cloned();
        let stale = indexed.as_ref().is_some_and(|m| m.head != now.head);
        Ok(RepoStatus {
            repo_root: repo.root.display().to_string(),
            index_dir: repo.lexical.dir().display().to_string(),
            files: snapshot.paths()?.len() as u64,
            chunks: snapshot.num_chunks(),
            indexed,
            current_head: now.head,
            stale,
            dirty_now: now.dirty,
        })
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
