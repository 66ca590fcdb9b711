//! Ingest: brings one ref of a repository up to date with the least work. Plan (what changed
//! since the indexed commit), read and chunk only file versions the index has never seen,
//! embed them first when the change is small, commit the lexical index atomically with the
//! ref's manifest and commit, then drop the vectors nothing refers to any more.
//!
//! Crash safety follows from the order: vectors are keyed by content-derived chunk ids and
//! written before the lexical commit; the lexical commit (chunks, manifest, commit id
//! together) is the only watermark. A run killed at any point leaves the last commit intact,
//! at worst with vectors nothing refers to yet, which the next run reuses or removes.

pub mod lock;
pub mod plan;

use crate::config::Config;
use crate::embed::Embedder;
use crate::embed::cache::{CachedEmbedder, EmbeddingCache};
use crate::error::Result;
use crate::index::lexical::{LexicalIndex, SCHEMA_VERSION};
use crate::index::manifest::{
    self, FileVersion, IndexState, Manifest, ManifestEntry, RefSource, RefState,
};
use crate::index::vectors::{VectorPoint, VectorStore};
use crate::model::Chunk;
use crate::redact;
use crate::source::git::BlobReader;
use crate::source::{SkipReason, Skipped, classify};
use crate::syntax::{self, Diagnostic};
use plan::{ChangeCounts, Known, Plan, PlanKind, Work};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

/// Chunked files waiting for the writer (bounds memory when chunking outruns indexing).
const RESULTS_AHEAD: usize = 256;

/// Chunks embedded and committed to the vector store together.
pub const EMBED_BATCH: usize = 128;

/// The default of [`IndexOptions::embed_before_commit`] for the CLI, the service and the
/// webhooks: new chunks up to this many (a typical commit's worth) are embedded before the
/// lexical commit; a larger change commits lexically first and embeds behind it.
pub const EMBED_BEFORE_COMMIT: usize = 2048;

/// A run with more files to chunk than this writes in bulk mode (no merges meanwhile).
const BULK_FILES: usize = 1000;

/// What to index and how.
#[derive(Debug, Clone, Default)]
pub struct IndexOptions {
    /// The git ref (branch, tag, `HEAD`, commit id). `None`: the ref `HEAD` names, which
    /// also becomes the ref searches read by default; outside git, the files on disk.
    pub ref_name: Option<String>,
    /// Index the files on disk, uncommitted changes included, as the `worktree` ref.
    pub worktree: bool,
    /// Embed the new chunks before the lexical commit when there are at most this many, so
    /// the commit is searchable densely at once (0: never; larger changes embed after).
    pub embed_before_commit: usize,
    /// Re-plan from the whole tree even when the ref already reflects the commit.
    pub force: bool,
}

/// Receives progress of long operations; the CLI draws a bar with it.
pub trait Progress: Sync {
    fn start(&self, _phase: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
    /// Whether the caller wants a long pass to stop at its next safe point (the embedding
    /// pass checks between batches).
    fn cancelled(&self) -> bool {
        false
    }
}

/// Progress that goes nowhere.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What one indexing run did.
#[derive(Debug, Clone, Serialize)]
pub struct IndexReport {
    pub repo_root: String,
    /// The ref indexed (`refs/heads/main`, `HEAD`, `worktree`).
    pub ref_name: String,
    /// The commit it now reflects (`None` for a worktree).
    pub commit: Option<String>,
    /// The commit it reflected before (`None` when new).
    pub previous_commit: Option<String>,
    pub plan: PlanKind,
    pub changes: ChangeCounts,
    /// The checkout's branch, and whether it has uncommitted changes (not in a git ref).
    pub branch: Option<String>,
    pub dirty: bool,
    /// Files the ref holds with chunks now.
    pub files_indexed: u64,
    /// Files read and chunked by this run (versions never seen before).
    pub files_chunked: u64,
    /// Files this run left out (for a full run, all of them).
    pub files_skipped: u64,
    pub skipped_by_reason: BTreeMap<String, u64>,
    pub skipped: Vec<Skipped>,
    pub diagnostics: Vec<Diagnostic>,
    /// Chunks the ref holds now; chunk documents added and removed by this run.
    pub chunks: u64,
    pub chunks_added: u64,
    pub chunks_removed: u64,
    /// Vectors written before the lexical commit; vectors removed after it.
    pub vectors_added: u64,
    pub vectors_removed: u64,
    /// Why the new chunks were not embedded before the commit, if they were not.
    pub embed_deferred: Option<String>,
    /// Bytes read by this run.
    pub bytes: u64,
    /// Secrets replaced by a redaction marker in the files this run chunked (nothing
    /// indexed, embedded or packed ever holds them).
    pub secrets_redacted: u64,
    pub seconds: f64,
    /// Set when an unusable old index was replaced.
    pub rebuilt: Option<String>,
    /// Set when another process was indexing: this request was handed to it.
    pub queued: bool,
}

/// The dense side a run keeps in step: the store, and the model when one is available.
pub struct Dense<'a> {
    pub store: &'a dyn VectorStore,
    pub embed: Option<(&'a dyn Embedder, &'a EmbeddingCache)>,
    /// Exists while a run changes vectors around its lexical commit. Found at the start of a
    /// run, it means the last one died there: this run then reconciles the whole store.
    pub pending_marker: &'a Path,
}

/// Everything a run works on.
pub struct Target<'a> {
    pub root: &'a Path,
    pub lexical: &'a LexicalIndex,
    pub config: &'a Config,
    pub dense: Option<Dense<'a>>,
}

/// The state and every ref's manifest as of the last commit, and the file versions known.
pub struct Current {
    pub state: IndexState,
    pub manifests: BTreeMap<String, Manifest>,
    /// Every file version some ref holds, with its entry.
    pub known: Known,
}

impl Current {
    pub fn load(lexical: &LexicalIndex, root: &Path) -> Result<Current> {
        let snapshot = lexical.snapshot_all()?;
        let state = snapshot
            .state()
            .cloned()
            .unwrap_or_else(|| IndexState::new(SCHEMA_VERSION, root.display().to_string()));
        let mut manifests = BTreeMap::new();
        for name in state.refs.keys() {
            let view = lexical.snapshot(Some(name))?;
            manifests.insert(name.clone(), view.manifest().cloned().unwrap_or_default());
        }
        let mut known = Known::new();
        for manifest in manifests.values() {
            for (path, entry) in manifest {
                known
                    .entry(entry.version(path))
                    .or_insert_with(|| entry.clone());
            }
        }
        Ok(Current {
            state,
            manifests,
            known,
        })
    }

    pub fn old(&self, ref_name: &str) -> Option<(&RefState, &Manifest)> {
        let state = self.state.refs.get(ref_name)?;
        Some((state, self.manifests.get(ref_name)?))
    }
}

/// One file's outcome, from the chunking pool to the writer.
enum FileResult {
    Chunked {
        blob: String,
        chunks: Vec<Chunk>,
        /// The modules it imports (the import graph's keys), kept on its first chunk.
        imports: Vec<String>,
        diagnostics: Vec<Diagnostic>,
        bytes: u64,
        /// Secrets replaced by a marker before chunking.
        redacted: u64,
    },
    /// Read and hashed outside git: a version the index already has.
    Known { blob: String, bytes: u64 },
    Skipped {
        blob: Option<String>,
        skipped: Skipped,
    },
}

/// What forgetting a ref did.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetReport {
    pub ref_name: String,
    /// Chunk documents and vectors removed (those no other ref holds).
    pub chunks_removed: u64,
    pub vectors_removed: u64,
    /// The default ref afterwards.
    pub default_ref: Option<String>,
}

/// Removes one ref: its manifest, its entry in the state, and the documents and vectors of
/// the file versions no other ref holds. A deleted branch (a push that deletes it, a PR
/// closed) stops costing storage.
pub fn forget(t: &Target, current: &Current, ref_name: &str) -> Result<ForgetReport> {
    let Some((_, old)) = current.old(ref_name) else {
        return Err(crate::error::Error::NotFound(format!(
            "ref {ref_name:?} is not indexed"
        )));
    };
    let kept: HashSet<FileVersion> = current
        .manifests
        .iter()
        .filter(|(name, _)| name.as_str() != ref_name)
        .flat_map(|(_, m)| m.iter().map(|(p, e)| e.version(p)))
        .collect();
    let before = t.lexical.snapshot_all()?;
    let mut writer = t.lexical.writer(t.config.writer_memory_bytes)?;
    let mut ids = Vec::new();
    for (path, entry) in old {
        let version = entry.version(path);
        if entry.chunks > 0 && !kept.contains(&version) {
            ids.extend(before.chunk_ids_of_version(version)?);
            writer.delete_version(version);
        }
    }
    drop(before);
    writer.remove_manifest(ref_name);
    let mut state = current.state.clone();
    state.refs.remove(ref_name);
    if state.default_ref.as_deref() == Some(ref_name) {
        state.default_ref = state
            .refs
            .values()
            .max_by_key(|r| r.indexed_at)
            .map(|r| r.name.clone());
    }
    writer.commit(&state)?;
    writer.finish()?;
    t.lexical.reload()?;
    let mut vectors_removed = 0;
    if let Some(dense) = &t.dense
        && !ids.is_empty()
    {
        dense.store.delete_ids(&ids)?;
        vectors_removed = ids.len() as u64;
        if let Err(e) = dense.store.flush() {
            tracing::warn!("{e}");
        }
    }
    Ok(ForgetReport {
        ref_name: ref_name.to_string(),
        chunks_removed: ids.len() as u64,
        vectors_removed,
        default_ref: state.default_ref,
    })
}

/// Executes `plan` against the index: the single writer's whole job for one ref.
pub fn run(
    t: &Target,
    current: &Current,
    plan: Plan,
    options: &IndexOptions,
    progress: &dyn Progress,
) -> Result<IndexReport> {
    let started = std::time::Instant::now();
    let known = &current.known;
    let Plan {
        ref_name,
        source,
        commit,
        previous_commit,
        kind,
        mut manifest,
        work,
        changes,
        mut skipped,
        dirty,
    } = plan;
    let mut report = IndexReport {
        repo_root: t.root.display().to_string(),
        ref_name: ref_name.clone(),
        commit: commit.clone(),
        previous_commit,
        plan: kind,
        changes,
        branch: None,
        dirty,
        files_indexed: 0,
        files_chunked: 0,
        files_skipped: 0,
        skipped_by_reason: BTreeMap::new(),
        skipped: Vec::new(),
        diagnostics: Vec::new(),
        chunks: 0,
        chunks_added: 0,
        chunks_removed: 0,
        vectors_added: 0,
        vectors_removed: 0,
        embed_deferred: None,
        bytes: 0,
        seconds: 0.0,
        rebuilt: None,
        queued: false,
        secrets_redacted: 0,
    };
    if kind == PlanKind::UpToDate {
        // Only the work tree's state and which ref is the default can have changed: record
        // them so answers say so.
        let mut state = current.state.clone();
        if let Some(r) = state.refs.get_mut(&ref_name) {
            r.dirty = dirty;
        }
        if options.ref_name.is_none() {
            state.default_ref = Some(ref_name.clone());
        }
        if state != current.state {
            let mut writer = t.lexical.writer(t.config.writer_memory_bytes)?;
            writer.commit(&state)?;
            writer.finish()?;
            t.lexical.reload()?;
        }
        if let Some(dense) = &t.dense
            && dense.pending_marker.exists()
        {
            report.vectors_removed += recover_vectors(t.lexical, dense)?;
        }
        finish_report(&mut report, &manifest, skipped, started);
        return Ok(report);
    }

    let mut writer = t.lexical.writer(t.config.writer_memory_bytes)?;
    if work.len() > BULK_FILES {
        writer.bulk_mode();
    }
    // New chunks kept for embedding before the commit, while there are few enough.
    let embed_limit = if t.dense.as_ref().is_some_and(|d| d.embed.is_some()) {
        options.embed_before_commit
    } else {
        0
    };
    let mut fresh: Option<Vec<Chunk>> = (embed_limit > 0).then(Vec::new);
    let blobs = match source {
        RefSource::Git if !work.is_empty() => Some(Mutex::new(BlobReader::start(t.root)?)),
        _ => None,
    };
    progress.start("indexing", work.len() as u64);
    // Chunking (the rayon pool) and indexing (tantivy's threads, fed from here) overlap:
    // files are chunked in parallel as they come, and handed to the writer in plan order so
    // that the index is the same whatever the scheduling.
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, FileResult)>(RESULTS_AHEAD);
        let work = &work;
        let blobs = &blobs;
        scope.spawn(move || {
            let _ = work
                .par_iter()
                .enumerate()
                .try_for_each_with(tx, |tx, (i, w)| {
                    // An error means the writer side stopped listening: stop too.
                    tx.send((i, process(t.config, w, blobs.as_ref(), known)))
                });
        });
        let mut pending = BTreeMap::new();
        let mut next = 0;
        for (i, result) in rx {
            pending.insert(i, result);
            while let Some(result) = pending.remove(&next) {
                let w = &work[next];
                next += 1;
                progress.advance(1);
                match result {
                    FileResult::Chunked {
                        blob,
                        chunks,
                        imports,
                        diagnostics,
                        bytes,
                        redacted,
                    } => {
                        report.files_chunked += 1;
                        report.secrets_redacted += redacted;
                        report.bytes += bytes;
                        report.diagnostics.extend(diagnostics);
                        let version = manifest::file_version(&w.path, &blob);
                        for (i, chunk) in chunks.iter().enumerate() {
                            let imports: &[String] = if i == 0 { &imports } else { &[] };
                            writer.add(chunk, version, imports)?;
                        }
                        report.chunks_added += chunks.len() as u64;
                        if let Some(list) = fresh.as_mut() {
                            list.extend(chunks.iter().cloned());
                            if list.len() > embed_limit {
                                fresh = None;
                            }
                        }
                        manifest.insert(
                            w.path.clone(),
                            ManifestEntry {
                                blob,
                                chunks: chunks.len() as u32,
                                skipped: None,
                                stamp: w.stamp,
                            },
                        );
                    }
                    FileResult::Known { blob, bytes } => {
                        report.bytes += bytes;
                        let version = manifest::file_version(&w.path, &blob);
                        let mut entry = known.get(&version).cloned().unwrap_or(ManifestEntry {
                            blob,
                            chunks: 0,
                            skipped: None,
                            stamp: None,
                        });
                        entry.stamp = w.stamp;
                        if let Some(s) = entry.skip(&w.path) {
                            skipped.push(s);
                        }
                        manifest.insert(w.path.clone(), entry);
                    }
                    FileResult::Skipped { blob, skipped: s } => {
                        // Outside git an unreadable file has no version: it is retried next
                        // run rather than remembered.
                        if let Some(blob) = blob {
                            manifest.insert(
                                w.path.clone(),
                                ManifestEntry {
                                    blob,
                                    chunks: 0,
                                    skipped: Some((s.reason, s.detail.clone())),
                                    stamp: w.stamp,
                                },
                            );
                        }
                        skipped.push(s);
                    }
                }
            }
        }
        Ok(())
    })?;
    progress.finish();

    // File versions this ref no longer holds and no other ref holds either leave the index.
    let kept: HashSet<FileVersion> = current
        .manifests
        .iter()
        .filter(|(name, _)| **name != ref_name)
        .flat_map(|(_, m)| m.iter().map(|(p, e)| e.version(p)))
        .chain(manifest.iter().map(|(p, e)| e.version(p)))
        .collect();
    let before = t.lexical.snapshot_all()?;
    let mut dropped: Vec<(String, FileVersion)> = Vec::new();
    if let Some((_, old)) = current.old(&ref_name) {
        for (path, entry) in old {
            let version = entry.version(path);
            if entry.chunks > 0 && !kept.contains(&version) {
                dropped.push((path.clone(), version));
            }
        }
    }
    let mut dropped_ids: Vec<(String, Vec<String>)> = Vec::new();
    for (path, version) in &dropped {
        let ids = before.chunk_ids_of_version(*version)?;
        report.chunks_removed += ids.len() as u64;
        dropped_ids.push((path.clone(), ids));
        writer.delete_version(*version);
    }
    drop(before);

    let recovering = t.dense.as_ref().is_some_and(|d| d.pending_marker.exists());
    if let Some(dense) = &t.dense
        && (fresh.is_some() || !dropped_ids.is_empty())
    {
        std::fs::write(dense.pending_marker, b"")
            .map_err(|e| crate::error::Error::io(dense.pending_marker, e))?;
    }
    // Vectors first: the commit below then publishes chunks that already have them.
    if let (Some(dense), Some(chunks)) = (&t.dense, fresh.as_ref()) {
        if let Some((embedder, cache)) = dense.embed {
            match embed_into(dense.store, embedder, cache, chunks) {
                Ok(n) => report.vectors_added = n,
                Err(e) => report.embed_deferred = Some(format!("embedding failed: {e}")),
            }
        }
    } else if report.chunks_added > 0 {
        report.embed_deferred = Some(if embed_limit == 0 {
            "no embedding before the commit (disabled or no model)".into()
        } else {
            format!("more than {embed_limit} new chunks: embedded after the commit")
        });
    }

    let (json, hash) = manifest::encode(&manifest);
    writer.put_manifest(&ref_name, &json)?;
    let mut state = current.state.clone();
    state.schema_version = SCHEMA_VERSION;
    state.codectx_version = env!("CARGO_PKG_VERSION").to_string();
    let files = manifest.values().filter(|e| e.chunks > 0).count() as u64;
    let chunks: u64 = manifest.values().map(|e| u64::from(e.chunks)).sum();
    state.refs.insert(
        ref_name.clone(),
        RefState {
            name: ref_name.clone(),
            source,
            commit,
            indexed_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
            files,
            chunks,
            skipped: manifest.values().filter(|e| e.skipped.is_some()).count() as u64,
            manifest_hash: hash,
            dirty,
            commit_time: None,
        },
    );
    if options.ref_name.is_none() || state.default_ref.is_none() {
        state.default_ref = Some(ref_name.clone());
    }
    if let (RefSource::Git, Some(c)) = (source, state.refs[&ref_name].commit.clone()) {
        add_history(t, &mut writer, &mut state, &ref_name, &c);
    }
    writer.commit(&state)?;
    writer.finish()?;
    t.lexical.reload()?;

    // After the commit: remove the vectors of the dropped versions' chunks (chunk ids belong
    // to one file version, so nothing else refers to them).
    if let Some(dense) = &t.dense {
        let gone: Vec<String> = dropped_ids.into_iter().flat_map(|(_, ids)| ids).collect();
        if !gone.is_empty() {
            dense.store.delete_ids(&gone)?;
            report.vectors_removed = gone.len() as u64;
        }
        if recovering {
            report.vectors_removed += recover_vectors(t.lexical, dense)?;
        } else {
            if (report.vectors_added > 0 || report.vectors_removed > 0)
                && let Err(e) = dense.store.flush()
            {
                tracing::warn!("{e}");
            }
            remove_marker(dense.pending_marker)?;
        }
    }
    finish_report(&mut report, &manifest, skipped, started);
    Ok(report)
}

/// How many commit tips the history state remembers (their ancestors are not read again).
const HISTORY_TIPS: usize = 16;

/// Stages the commit documents of the history lane that `commit` brings (its ancestors not
/// read before, up to `Config::history_commits` in all), redacted like everything indexed,
/// and records the ref's commit time. History is evidence, not content: a failure to read
/// it is logged and the run goes on without it.
fn add_history(
    t: &Target,
    writer: &mut crate::index::lexical::LexicalWriter,
    state: &mut IndexState,
    ref_name: &str,
    commit: &str,
) {
    if let Some(r) = state.refs.get_mut(ref_name) {
        r.commit_time = crate::source::git::commit_time(t.root, commit);
    }
    let room = t
        .config
        .history_commits
        .saturating_sub(state.history.commits as usize);
    if room == 0 || state.history.tips.iter().any(|c| c == commit) {
        return;
    }
    let commits = match crate::source::git::history(t.root, commit, &state.history.tips, room) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("history of {commit} not indexed: {e}");
            return;
        }
    };
    // Commits another ref's history brought already (its tip forgotten since) stay single.
    let snapshot = t.lexical.snapshot_all().ok();
    for mut c in commits {
        if snapshot
            .as_ref()
            .is_some_and(|s| s.has_history_commit(&c.id))
        {
            continue;
        }
        c.message = redact::redact(&c.message).text;
        if let Err(e) = writer.add_history(&c) {
            tracing::warn!("history of {commit} not indexed: {e}");
            return;
        }
        state.history.commits += 1;
    }
    state.history.tips.push(commit.to_string());
    if state.history.tips.len() > HISTORY_TIPS {
        state.history.tips.remove(0);
    }
}

/// The last run died between its vector writes and its lexical commit: drop the vectors no
/// chunk document refers to (the next embedding pass fills in missing ones), then clear the
/// marker. Returns how many were dropped.
fn recover_vectors(lexical: &LexicalIndex, dense: &Dense) -> Result<u64> {
    let live: HashSet<String> = lexical
        .snapshot_all()?
        .all_chunks()?
        .into_iter()
        .map(|c| c.id)
        .collect();
    let orphans: Vec<String> = dense
        .store
        .ids()
        .into_iter()
        .filter(|id| !live.contains(id))
        .collect();
    if !orphans.is_empty() {
        tracing::info!("removing {} orphaned vectors", orphans.len());
        dense.store.delete_ids(&orphans)?;
        if let Err(e) = dense.store.flush() {
            tracing::warn!("{e}");
        }
    }
    remove_marker(dense.pending_marker)?;
    Ok(orphans.len() as u64)
}

fn remove_marker(marker: &Path) -> Result<()> {
    match std::fs::remove_file(marker) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(crate::error::Error::io(marker, e)),
    }
}

fn finish_report(
    report: &mut IndexReport,
    manifest: &Manifest,
    mut skipped: Vec<Skipped>,
    started: std::time::Instant,
) {
    if report.plan == PlanKind::Full {
        // A full run reports every file the ref leaves out, reused verdicts included.
        let listed: HashSet<String> = skipped.iter().map(|s| s.path.clone()).collect();
        skipped.extend(
            manifest
                .iter()
                .filter(|(p, _)| !listed.contains(*p))
                .filter_map(|(p, e)| e.skip(p)),
        );
    }
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    for s in &skipped {
        *report
            .skipped_by_reason
            .entry(s.reason.name().to_string())
            .or_insert(0) += 1;
    }
    report.files_skipped = skipped.len() as u64;
    report.skipped = skipped;
    report.files_indexed = manifest.values().filter(|e| e.chunks > 0).count() as u64;
    report.chunks = manifest.values().map(|e| u64::from(e.chunks)).sum();
    report.seconds = started.elapsed().as_secs_f64();
}

/// Embeds `chunks` (from the cache where it can) and upserts their vectors.
pub fn embed_into(
    store: &dyn VectorStore,
    embedder: &dyn Embedder,
    cache: &EmbeddingCache,
    chunks: &[Chunk],
) -> Result<u64> {
    let cached = CachedEmbedder::new(embedder, cache);
    let mut n = 0;
    for batch in chunks.chunks(EMBED_BATCH) {
        n += upsert_batch(store, &cached, batch)?;
    }
    Ok(n)
}

/// Embeds one batch through the cache and upserts it.
pub fn upsert_batch(
    store: &dyn VectorStore,
    cached: &CachedEmbedder,
    batch: &[Chunk],
) -> Result<u64> {
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
    Ok(points.len() as u64)
}

/// Reads, classifies and chunks one file. Never fails: problems become a skip.
fn process(
    config: &Config,
    work: &Work,
    blobs: Option<&Mutex<BlobReader>>,
    known: &Known,
) -> FileResult {
    let skip = |blob: Option<String>, reason: SkipReason, detail: String| FileResult::Skipped {
        blob,
        skipped: Skipped {
            path: work.path.clone(),
            reason,
            detail,
        },
    };
    let (bytes, blob) = match (&work.blob, blobs, &work.abs_path) {
        (Some(blob), Some(reader), _) => {
            let read = reader.lock().unwrap_or_else(|p| p.into_inner()).read(blob);
            match read {
                Ok(Some(bytes)) => (bytes, blob.clone()),
                Ok(None) => {
                    return skip(
                        Some(blob.clone()),
                        SkipReason::Unreadable,
                        format!("git object {blob} is missing"),
                    );
                }
                Err(e) => return skip(None, SkipReason::Unreadable, e.to_string()),
            }
        }
        (_, _, Some(abs_path)) => match std::fs::read(abs_path) {
            Ok(bytes) => {
                let blob = crate::model::content_hash(&bytes);
                if known.contains_key(&manifest::file_version(&work.path, &blob)) {
                    let n = bytes.len() as u64;
                    return FileResult::Known { blob, bytes: n };
                }
                (bytes, blob)
            }
            Err(e) => return skip(None, SkipReason::Unreadable, e.to_string()),
        },
        _ => {
            return skip(
                None,
                SkipReason::Unreadable,
                "nothing to read it from".into(),
            );
        }
    };
    let text = match classify::decode(&bytes, &config.walk) {
        Ok(t) => t,
        Err((reason, detail)) => return skip(Some(blob), reason, detail),
    };
    let name = work.path.rsplit('/').next().unwrap_or(&work.path);
    let language = classify::detect_language(name, &text);
    // Secrets go before anything else sees the text: chunks, the index, embeddings, packs.
    let redacted = redact::redact(&text);
    let out = syntax::chunk_file(&work.path, language, &redacted.text, &config.chunk);
    FileResult::Chunked {
        blob,
        imports: syntax::imports::imports(language, &work.path, &redacted.text),
        chunks: out.chunks,
        diagnostics: out.diagnostics,
        bytes: bytes.len() as u64,
        redacted: redacted.count() as u64,
    }
}
