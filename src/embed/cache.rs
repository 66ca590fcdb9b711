//! The embedding cache: content-addressed vectors persisted in the data directory and shared
//! by every repository, ref and commit, so that a text is embedded once per model, ever.

use super::{Embedder, document_text};
use crate::error::{Error, Result};
use crate::model::{Chunk, content_hash};
use redb::{Database, ReadableDatabase, TableDefinition};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// key: `model id \0 dims \0 BLAKE3 of the embedded text`; value: the vector, f32 little-endian.
const VECTORS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("vectors");

/// The key is the hash of the text actually embedded (path, scope and symbol included), not
/// of the chunk body alone: a moved chunk reads differently to the model and is re-embedded.
fn key(model_id: &str, dims: usize, text_hash: &str) -> Vec<u8> {
    format!("{model_id}\0{dims}\0{text_hash}").into_bytes()
}

fn db_error(e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("embedding cache: {e}"))
}

pub struct EmbeddingCache {
    db: Database,
}

impl EmbeddingCache {
    /// Opens (or creates) the cache file; redb makes every write transaction atomic.
    pub fn open(path: &Path) -> Result<EmbeddingCache> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let db = crate::index::vectors::open_database(
            path,
            "embedding cache",
            crate::index::vectors::WRITER_WAIT,
        )?;
        let txn = db.begin_write().map_err(db_error)?;
        txn.open_table(VECTORS).map_err(db_error)?;
        txn.commit().map_err(db_error)?;
        Ok(EmbeddingCache { db })
    }

    /// The cached vectors for these text hashes (`None` where absent).
    pub fn get_many(
        &self,
        model_id: &str,
        dims: usize,
        hashes: &[String],
    ) -> Result<Vec<Option<Vec<f32>>>> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(VECTORS).map_err(db_error)?;
        hashes
            .iter()
            .map(|h| {
                let found = table
                    .get(key(model_id, dims, h).as_slice())
                    .map_err(db_error)?;
                Ok(found.and_then(|v| decode(v.value(), dims)))
            })
            .collect()
    }

    /// Stores vectors under their text hashes in one transaction.
    pub fn put_many(
        &self,
        model_id: &str,
        dims: usize,
        items: &[(String, Vec<f32>)],
    ) -> Result<()> {
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut table = txn.open_table(VECTORS).map_err(db_error)?;
            for (hash, vector) in items {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                table
                    .insert(key(model_id, dims, hash).as_slice(), bytes.as_slice())
                    .map_err(db_error)?;
            }
        }
        txn.commit().map_err(db_error)
    }

    /// Number of cached vectors (all models).
    pub fn len(&self) -> Result<u64> {
        use redb::ReadableTableMetadata;
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(VECTORS).map_err(db_error)?;
        table.len().map_err(db_error)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Every vector of one model, in key order (text hash), at most `limit` of them: the
    /// benchmark's source of real embeddings.
    pub fn vectors_of(&self, model_id: &str, dims: usize, limit: usize) -> Result<Vec<Vec<f32>>> {
        let prefix = format!("{model_id}\0{dims}\0").into_bytes();
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(VECTORS).map_err(db_error)?;
        let mut out = Vec::new();
        for entry in table.range(prefix.as_slice()..).map_err(db_error)? {
            let (k, v) = entry.map_err(db_error)?;
            if !k.value().starts_with(&prefix) || out.len() >= limit {
                break;
            }
            if let Some(vector) = decode(v.value(), dims) {
                out.push(vector);
            }
        }
        Ok(out)
    }
}

/// A vector whose length does not match is treated as absent (and re-embedded).
fn decode(bytes: &[u8], dims: usize) -> Option<Vec<f32>> {
    if bytes.len() != dims * 4 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

/// How much work the model did; the cache's whole point is to keep `texts_embedded` at 0
/// for anything seen before.
#[derive(Debug, Default)]
pub struct EmbedStats {
    pub cache_hits: AtomicU64,
    pub texts_embedded: AtomicU64,
    pub model_calls: AtomicU64,
}

/// An embedder in front of the cache: only texts never seen by this model reach it.
pub struct CachedEmbedder<'a> {
    pub embedder: &'a dyn Embedder,
    pub cache: &'a EmbeddingCache,
    pub stats: EmbedStats,
}

impl<'a> CachedEmbedder<'a> {
    pub fn new(embedder: &'a dyn Embedder, cache: &'a EmbeddingCache) -> Self {
        CachedEmbedder {
            embedder,
            cache,
            stats: EmbedStats::default(),
        }
    }

    /// One vector per chunk, in order: from the cache where possible, else from the model
    /// (in one call for all misses), then stored.
    pub fn embed_chunks(&self, chunks: &[Chunk]) -> Result<Vec<Vec<f32>>> {
        let (id, dims) = (self.embedder.model_id(), self.embedder.dims());
        let texts: Vec<String> = chunks.iter().map(document_text).collect();
        let hashes: Vec<String> = texts.iter().map(|t| content_hash(t.as_bytes())).collect();
        let mut vectors = self.cache.get_many(id, dims, &hashes)?;
        let missing: Vec<usize> = (0..chunks.len())
            .filter(|&i| vectors[i].is_none())
            .collect();
        self.stats
            .cache_hits
            .fetch_add((chunks.len() - missing.len()) as u64, Ordering::Relaxed);
        if !missing.is_empty() {
            let batch: Vec<String> = missing.iter().map(|&i| texts[i].clone()).collect();
            self.stats.model_calls.fetch_add(1, Ordering::Relaxed);
            self.stats
                .texts_embedded
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            let fresh = self.embedder.embed_documents(&batch)?;
            let stored: Vec<(String, Vec<f32>)> = missing
                .iter()
                .zip(&fresh)
                .map(|(&i, v)| (hashes[i].clone(), v.clone()))
                .collect();
            self.cache.put_many(id, dims, &stored)?;
            for (&i, v) in missing.iter().zip(fresh) {
                vectors[i] = Some(v);
            }
        }
        Ok(vectors.into_iter().map(Option::unwrap_or_default).collect())
    }
}
