//! The vector store: one trait, and the embedded default: points in redb on disk, held in
//! memory; searched exactly when small or filtered, through an HNSW index (usearch) when
//! large. Every write is one redb transaction, so a kill -9 loses at most the batch in
//! flight and never corrupts what was committed.

use crate::error::{Error, Result};
use crate::model::Language;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::RwLock;

/// A chunk's vector and the payload filters need.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorPoint {
    pub id: String,
    pub path: String,
    pub language: Language,
    pub vector: Vec<f32>,
}

/// One search result: the chunk id, its file, and the cosine similarity.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorHit {
    pub id: String,
    pub path: String,
    pub score: f32,
}

/// Restricts a vector search, like the lexical filters.
#[derive(Debug, Clone, Default)]
pub struct VectorFilter {
    pub language: Option<Language>,
    pub paths: Option<BTreeSet<String>>,
}

/// Where dense vectors live. Scores are cosine similarities, best first.
pub trait VectorStore: Send + Sync {
    /// The model the vectors came from (`model id`, dimensions).
    fn model(&self) -> (String, usize);
    fn upsert(&self, points: &[VectorPoint]) -> Result<()>;
    fn delete_ids(&self, ids: &[String]) -> Result<()>;
    fn delete_paths(&self, paths: &[String]) -> Result<()>;
    fn ids(&self) -> HashSet<String>;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn search(&self, query: &[f32], k: usize, filter: &VectorFilter) -> Result<Vec<VectorHit>>;
    /// Makes what was written durable and fast to reopen (the embedded store saves its
    /// HNSW index; a server-side store has nothing left to do).
    fn flush(&self) -> Result<()>;
}

/// From this many points on, unfiltered searches use the HNSW index.
pub const ANN_MIN_POINTS: usize = 10_000;

/// The HNSW index over the points, keyed by a 64-bit hash of the chunk id.
struct Ann {
    index: usearch::Index,
    ids: HashMap<u64, String>,
}

/// A chunk id's 64-bit point key (the HNSW label here, the point id in Qdrant).
pub fn point_key(id: &str) -> u64 {
    let hash = blake3::hash(id.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(bytes)
}

fn ann_error(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("vector index: {e}"))
}

/// Writes the index beside `path` and renames it into place: a process killed mid-save
/// leaves the old file or none, never a torn one.
fn save_atomically(index: &usearch::Index, path: &Path) -> Result<()> {
    let tmp = path.with_extension("usearch.tmp");
    index.save(&tmp.to_string_lossy()).map_err(ann_error)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn new_ann_index(dims: usize, capacity: usize) -> Result<usearch::Index> {
    let options = usearch::IndexOptions {
        dimensions: dims,
        metric: usearch::MetricKind::Cos,
        quantization: usearch::ScalarKind::F32,
        connectivity: 16,
        expansion_add: 128,
        expansion_search: 256,
        multi: false,
    };
    let index = usearch::Index::new(&options).map_err(ann_error)?;
    index.reserve(capacity.max(16)).map_err(ann_error)?;
    Ok(index)
}

const POINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("points");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

/// How long a writer (an index, an embedding pass) waits for another process to let go of a
/// store file before giving up: searches hold it for milliseconds, so a reindex started
/// during a loop of searches gets its turn instead of failing.
pub const WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// How long a search waits for the file before it answers without the dense lane.
pub const READER_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Opens (or creates) a redb file that another codectx process may hold: retried with
/// backoff for up to `wait`, then a clear `Unavailable` error naming the file, never a
/// `Corrupt` one (which would invite a rebuild).
pub fn open_database(path: &Path, what: &str, wait: std::time::Duration) -> Result<Database> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(20);
    loop {
        match Database::create(path) {
            Ok(db) => return Ok(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if started.elapsed() < wait => {
                std::thread::sleep(pause.min(wait.saturating_sub(started.elapsed())));
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
            }
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(Error::Unavailable(format!(
                    "{what} {}: held by another codectx process (a search, an index or a \
                     server) for over {:.1} s; retry, or index through the server (--server)",
                    path.display(),
                    wait.as_secs_f64()
                )));
            }
            Err(e) => return Err(Error::Corrupt(format!("{what} {}: {e}", path.display()))),
        }
    }
}

fn db_error(e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("vector store: {e}"))
}

struct Entry {
    path: String,
    language: Language,
    /// Unit length, so the dot product is the cosine.
    unit: Vec<f32>,
}

/// The embedded store: points persisted in a redb file, held in memory for search.
pub struct EmbeddedVectorStore {
    db: Database,
    model_id: String,
    dims: usize,
    points: RwLock<HashMap<String, Entry>>,
    /// `<store>.usearch`: the saved HNSW index, present only while it matches the points.
    ann_path: std::path::PathBuf,
    ann: RwLock<Option<Ann>>,
}

fn normalise(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        v.to_vec()
    } else {
        v.iter().map(|x| x / norm).collect()
    }
}

fn encode(p: &VectorPoint) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.path.len() + 16 + p.vector.len() * 4);
    out.extend_from_slice(p.path.as_bytes());
    out.push(0);
    out.extend_from_slice(p.language.name().as_bytes());
    out.push(0);
    for x in &p.vector {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

fn decode(bytes: &[u8], dims: usize) -> Option<Entry> {
    let mut parts = bytes.splitn(3, |&b| b == 0);
    let path = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let language = Language::parse(std::str::from_utf8(parts.next()?).ok()?)?;
    let raw = parts.next()?;
    if raw.len() != dims * 4 {
        return None;
    }
    let v: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Some(Entry {
        path,
        language,
        unit: normalise(&v),
    })
}

impl EmbeddedVectorStore {
    /// Opens an existing store with the model recorded in it; `None` when there is none.
    pub fn open_existing(path: &Path) -> Result<Option<EmbeddedVectorStore>> {
        if !path.is_file() {
            return Ok(None);
        }
        let recorded = {
            let db = open_database(path, "vector store", READER_WAIT)?;
            let txn = db.begin_read().map_err(db_error)?;
            let meta = match txn.open_table(META) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(db_error(e)),
            };
            meta.get("model")
                .map_err(db_error)?
                .map(|v| v.value().to_string())
        };
        let Some((id, dims)) = recorded.as_deref().and_then(|m| m.rsplit_once('/')) else {
            return Ok(None);
        };
        let dims: usize = dims.parse().map_err(|_| {
            Error::Corrupt(format!("vector store {}: bad model record", path.display()))
        })?;
        Self::open_within(path, id, dims, READER_WAIT).map(Some)
    }

    /// Opens the store for vectors of `model_id` with `dims` dimensions. A store written by
    /// another model is emptied (its vectors are not comparable) and says so in the log.
    pub fn open(path: &Path, model_id: &str, dims: usize) -> Result<EmbeddedVectorStore> {
        Self::open_within(path, model_id, dims, WRITER_WAIT)
    }

    fn open_within(
        path: &Path,
        model_id: &str,
        dims: usize,
        wait: std::time::Duration,
    ) -> Result<EmbeddedVectorStore> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let db = open_database(path, "vector store", wait)?;
        let expected = format!("{model_id}/{dims}");
        let txn = db.begin_write().map_err(db_error)?;
        {
            let mut meta = txn.open_table(META).map_err(db_error)?;
            let current = meta
                .get("model")
                .map_err(db_error)?
                .map(|v| v.value().to_string());
            if current.as_deref() != Some(expected.as_str()) {
                if let Some(old) = current {
                    tracing::warn!(
                        "vector store {} holds {old} vectors; emptied for {expected}",
                        path.display()
                    );
                }
                txn.delete_table(POINTS).map_err(db_error)?;
                meta.insert("model", expected.as_str()).map_err(db_error)?;
            }
            txn.open_table(POINTS).map_err(db_error)?;
        }
        txn.commit().map_err(db_error)?;

        let mut points = HashMap::new();
        {
            let txn = db.begin_read().map_err(db_error)?;
            let table = txn.open_table(POINTS).map_err(db_error)?;
            for item in table.iter().map_err(db_error)? {
                let (k, v) = item.map_err(db_error)?;
                if let Some(entry) = decode(v.value(), dims) {
                    points.insert(k.value().to_string(), entry);
                }
            }
        }
        Ok(EmbeddedVectorStore {
            db,
            model_id: model_id.to_string(),
            dims,
            points: RwLock::new(points),
            ann_path: path.with_extension("usearch"),
            ann: RwLock::new(None),
        })
    }

    /// Makes sure the HNSW index exists when the store is large enough: loaded from its file
    /// when that matches the points, else built (in parallel) and saved.
    fn ensure_ann(&self) -> Result<()> {
        if self.len() < ANN_MIN_POINTS
            || self.ann.read().unwrap_or_else(|p| p.into_inner()).is_some()
        {
            return Ok(());
        }
        let mut slot = self.ann.write().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return Ok(());
        }
        let points = self.points.read().unwrap_or_else(|p| p.into_inner());
        let ids: HashMap<u64, String> = points
            .keys()
            .map(|id| (point_key(id), id.clone()))
            .collect();
        let path = self.ann_path.to_string_lossy().into_owned();
        let index = new_ann_index(self.dims, points.len() + points.len() / 4)?;
        let loaded = self.ann_path.is_file()
            && index.load(&path).is_ok()
            && index.size() == points.len()
            && index.reserve(points.len() + points.len() / 4).is_ok();
        let index = if loaded {
            index
        } else {
            let index = new_ann_index(self.dims, points.len() + points.len() / 4)?;
            use rayon::prelude::*;
            let entries: Vec<(&String, &Entry)> = points.iter().collect();
            entries
                .par_iter()
                .try_for_each(|(id, e)| index.add(point_key(id), &e.unit).map_err(ann_error))?;
            if let Err(e) = save_atomically(&index, &self.ann_path) {
                tracing::warn!("cannot save the vector index to {path}: {e}");
            }
            index
        };
        *slot = Some(Ann { index, ids });
        Ok(())
    }

    /// Called before a write: the saved index no longer matches, and the in-memory one is
    /// updated by the write itself.
    fn invalidate_saved_ann(&self) {
        let _ = std::fs::remove_file(&self.ann_path);
    }

    /// Sets the HNSW search breadth (usearch's `expansion_search`): higher is slower and
    /// more exact.
    pub fn set_search_expansion(&self, n: usize) -> Result<()> {
        self.ensure_ann()?;
        if let Some(ann) = self.ann.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            ann.index.change_expansion_search(n);
        }
        Ok(())
    }

    /// Saves the HNSW index (if built) so the next process loads instead of rebuilding.
    pub fn save_ann(&self) -> Result<()> {
        let slot = self.ann.read().unwrap_or_else(|p| p.into_inner());
        if let Some(ann) = slot.as_ref() {
            save_atomically(&ann.index, &self.ann_path)?;
        }
        Ok(())
    }

    /// Exact search over every point (the reference the HNSW index is measured against).
    pub fn exact_search(
        &self,
        query: &[f32],
        k: usize,
        filter: &VectorFilter,
    ) -> Result<Vec<VectorHit>> {
        self.check_query(query)?;
        let q = normalise(query);
        let map = self.points.read().unwrap_or_else(|p| p.into_inner());
        let mut scored: Vec<(f32, &String, &Entry)> = map
            .iter()
            .filter(|(_, e)| filter.language.is_none_or(|l| l == e.language))
            .filter(|(_, e)| filter.paths.as_ref().is_none_or(|p| p.contains(&e.path)))
            .map(|(id, e)| {
                (
                    e.unit.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>(),
                    id,
                    e,
                )
            })
            .collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        scored.truncate(k);
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        Ok(scored
            .into_iter()
            .map(|(score, id, e)| VectorHit {
                id: id.clone(),
                path: e.path.clone(),
                score,
            })
            .collect())
    }

    /// Search through the HNSW index; `None` when there is none (small store).
    pub fn ann_search(&self, query: &[f32], k: usize) -> Result<Option<Vec<VectorHit>>> {
        self.check_query(query)?;
        self.ensure_ann()?;
        let slot = self.ann.read().unwrap_or_else(|p| p.into_inner());
        let Some(ann) = slot.as_ref() else {
            return Ok(None);
        };
        let matches = ann.index.search(&normalise(query), k).map_err(ann_error)?;
        let points = self.points.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(matches.keys.len());
        for (key, distance) in matches.keys.iter().zip(&matches.distances) {
            let Some(id) = ann.ids.get(key) else { continue };
            let Some(entry) = points.get(id) else {
                continue;
            };
            out.push(VectorHit {
                id: id.clone(),
                path: entry.path.clone(),
                score: 1.0 - distance,
            });
        }
        Ok(Some(out))
    }

    fn check_query(&self, query: &[f32]) -> Result<()> {
        if query.len() != self.dims {
            return Err(Error::invalid(format!(
                "query vector has {} dimensions, the store holds {}",
                query.len(),
                self.dims
            )));
        }
        Ok(())
    }

    /// Applies a write to the in-memory HNSW index, if one is built.
    fn update_ann(&self, add: &[VectorPoint], remove: &[String]) -> Result<()> {
        let mut slot = self.ann.write().unwrap_or_else(|p| p.into_inner());
        let Some(ann) = slot.as_mut() else {
            return Ok(());
        };
        for id in remove.iter().chain(add.iter().map(|p| &p.id)) {
            let key = point_key(id);
            if ann.ids.remove(&key).is_some() {
                ann.index.remove(key).map_err(ann_error)?;
            }
        }
        if ann.index.size() + add.len() > ann.index.capacity() {
            let grown = (ann.index.size() + add.len()) * 2;
            ann.index.reserve(grown).map_err(ann_error)?;
        }
        for p in add {
            let key = point_key(&p.id);
            ann.index
                .add(key, &normalise(&p.vector))
                .map_err(ann_error)?;
            ann.ids.insert(key, p.id.clone());
        }
        Ok(())
    }

    fn write<F>(&self, f: F) -> Result<()>
    where
        F: FnOnce(&mut redb::Table<&str, &[u8]>) -> Result<()>,
    {
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut table = txn.open_table(POINTS).map_err(db_error)?;
            f(&mut table)?;
        }
        txn.commit().map_err(db_error)
    }
}

impl VectorStore for EmbeddedVectorStore {
    fn model(&self) -> (String, usize) {
        (self.model_id.clone(), self.dims)
    }

    fn flush(&self) -> Result<()> {
        self.save_ann()
    }

    fn upsert(&self, points: &[VectorPoint]) -> Result<()> {
        if let Some(p) = points.iter().find(|p| p.vector.len() != self.dims) {
            return Err(Error::invalid(format!(
                "vector for {} has {} dimensions, the store holds {}",
                p.id,
                p.vector.len(),
                self.dims
            )));
        }
        self.write(|table| {
            for p in points {
                table
                    .insert(p.id.as_str(), encode(p).as_slice())
                    .map_err(db_error)?;
            }
            Ok(())
        })?;
        let mut map = self.points.write().unwrap_or_else(|p| p.into_inner());
        for p in points {
            map.insert(
                p.id.clone(),
                Entry {
                    path: p.path.clone(),
                    language: p.language,
                    unit: normalise(&p.vector),
                },
            );
        }
        Ok(())
    }

    fn delete_ids(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.invalidate_saved_ann();
        self.update_ann(&[], ids)?;
        self.write(|table| {
            for id in ids {
                table.remove(id.as_str()).map_err(db_error)?;
            }
            Ok(())
        })?;
        let mut map = self.points.write().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            map.remove(id);
        }
        Ok(())
    }

    fn delete_paths(&self, paths: &[String]) -> Result<()> {
        let wanted: HashSet<&str> = paths.iter().map(String::as_str).collect();
        let ids: Vec<String> = {
            let map = self.points.read().unwrap_or_else(|p| p.into_inner());
            map.iter()
                .filter(|(_, e)| wanted.contains(e.path.as_str()))
                .map(|(id, _)| id.clone())
                .collect()
        };
        self.delete_ids(&ids)
    }

    fn ids(&self) -> HashSet<String> {
        let map = self.points.read().unwrap_or_else(|p| p.into_inner());
        map.keys().cloned().collect()
    }

    fn len(&self) -> usize {
        self.points.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn search(&self, query: &[f32], k: usize, filter: &VectorFilter) -> Result<Vec<VectorHit>> {
        // Filters go exact: they shrink the candidate set, and a filtered graph walk can
        // come back short.
        if filter.language.is_none()
            && filter.paths.is_none()
            && let Some(hits) = self.ann_search(query, k)?
        {
            return Ok(hits);
        }
        self.exact_search(query, k, filter)
    }
}
