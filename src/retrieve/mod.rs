//! Retrieval over a snapshot: request validation, the lexical lane, filters, hit shaping.

use crate::error::{Error, Result};
use crate::index::lexical::{LexicalQuery, Snapshot};
use crate::model::{Chunk, Language};
use serde::Serialize;

/// The most hits one search may ask for.
pub const MAX_K: usize = 1000;

/// A search, as every client (CLI, gRPC, agent) states it.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    pub k: usize,
    pub language: Option<Language>,
    /// A glob over repository-relative paths, e.g. `src/**/*.rs` or `*.py`.
    pub path_glob: Option<String>,
}

impl SearchRequest {
    pub fn new(query: impl Into<String>) -> SearchRequest {
        SearchRequest {
            query: query.into(),
            k: 10,
            language: None,
            path_glob: None,
        }
    }

    /// Rejects requests that cannot be answered, naming the field and the reason.
    pub fn validate(&self) -> Result<()> {
        if self.query.trim().is_empty() {
            return Err(Error::invalid("query: must not be empty"));
        }
        if self.k == 0 || self.k > MAX_K {
            return Err(Error::invalid(format!(
                "k: {} is out of range 1..={MAX_K}",
                self.k
            )));
        }
        Ok(())
    }
}

/// One ranked chunk.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    /// 1-based rank in the answer.
    pub rank: usize,
    pub score: f32,
    /// 1-based rank in the lexical (BM25) lane.
    pub lexical_rank: Option<usize>,
    pub chunk: Chunk,
}

/// Runs a validated search against one snapshot.
pub fn search(snapshot: &Snapshot, req: &SearchRequest) -> Result<Vec<SearchHit>> {
    req.validate()?;
    let paths = match &req.path_glob {
        Some(glob) => Some(resolve_glob(snapshot, glob)?),
        None => None,
    };
    let query = LexicalQuery {
        text: req.query.clone(),
        limit: req.k,
        language: req.language,
        paths,
    };
    let hits = snapshot.search(&query)?;
    Ok(hits
        .into_iter()
        .enumerate()
        .map(|(i, (score, chunk))| SearchHit {
            rank: i + 1,
            score,
            lexical_rank: Some(i + 1),
            chunk,
        })
        .collect())
}

/// The indexed paths a glob matches. `*` crosses directories, so `*.rs` means every Rust file.
pub fn resolve_glob(snapshot: &Snapshot, glob: &str) -> Result<std::collections::BTreeSet<String>> {
    let matcher = globset::GlobBuilder::new(glob)
        .literal_separator(false)
        .build()
        .map_err(|e| Error::invalid(format!("path glob {glob:?}: {e}")))?
        .compile_matcher();
    let mut paths = snapshot.paths()?;
    paths.retain(|p| matcher.is_match(p));
    Ok(paths)
}
