//! The vector store: one trait, and the embedded default (redb on disk, an exact in-memory
//! scan for search). Every write is one redb transaction, so a kill -9 loses at most the
//! batch in flight and never corrupts what was committed.

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
}

const POINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("points");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

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
            let db = Database::create(path)
                .map_err(|e| Error::Corrupt(format!("vector store {}: {e}", path.display())))?;
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
        Self::open(path, id, dims).map(Some)
    }

    /// Opens the store for vectors of `model_id` with `dims` dimensions. A store written by
    /// another model is emptied (its vectors are not comparable) and says so in the log.
    pub fn open(path: &Path, model_id: &str, dims: usize) -> Result<EmbeddedVectorStore> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let db = Database::create(path)
            .map_err(|e| Error::Corrupt(format!("vector store {}: {e}", path.display())))?;
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
        })
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
        if query.len() != self.dims {
            return Err(Error::invalid(format!(
                "query vector has {} dimensions, the store holds {}",
                query.len(),
                self.dims
            )));
        }
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
}
