//! Retrieval over a snapshot: request validation, the lexical lane, filters, reciprocal rank
//! fusion of lanes, and the file-level ranking.

pub mod context;
pub mod query;
pub mod rank;
pub mod ranker;
pub mod task;

use crate::error::{Error, Result};
use crate::index::lexical::{LexicalQuery, Snapshot};
use crate::model::{Chunk, Language};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

/// The most hits one search may ask for.
pub const MAX_K: usize = 1000;

/// Which lanes answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// BM25 only.
    Lexical,
    /// Embedding similarity only.
    Dense,
    /// Both, fused with reciprocal rank fusion; lexical alone when the dense lane cannot answer.
    Hybrid,
}

impl SearchMode {
    pub fn parse(s: &str) -> Option<SearchMode> {
        match s {
            "lexical" => Some(SearchMode::Lexical),
            "dense" => Some(SearchMode::Dense),
            "hybrid" => Some(SearchMode::Hybrid),
            _ => None,
        }
    }
}

/// Reciprocal rank fusion: a hit at rank r in a lane scores `weight / (k + r)`.
#[derive(Debug, Clone, Copy)]
pub struct Fusion {
    pub k: f32,
    pub lexical_weight: f32,
    pub dense_weight: f32,
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion {
            k: 60.0,
            lexical_weight: 1.0,
            dense_weight: 1.0,
        }
    }
}

/// A search, as every client (CLI, gRPC, agent) states it.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    pub k: usize,
    pub language: Option<Language>,
    /// A glob over repository-relative paths, e.g. `src/**/*.rs` or `*.py`.
    pub path_glob: Option<String>,
    pub mode: SearchMode,
    pub fusion: Fusion,
    /// The ref to read (`main`, `refs/heads/main`, a commit id); `None`: the default ref.
    pub ref_name: Option<String>,
}

impl SearchRequest {
    pub fn new(query: impl Into<String>) -> SearchRequest {
        SearchRequest {
            query: query.into(),
            k: 10,
            language: None,
            path_glob: None,
            mode: SearchMode::Lexical,
            fusion: Fusion::default(),
            ref_name: None,
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
        let f = self.fusion;
        let valid = f.k.is_finite()
            && f.k > 0.0
            && [f.lexical_weight, f.dense_weight]
                .iter()
                .all(|w| w.is_finite() && *w >= 0.0);
        if !valid {
            return Err(Error::invalid(
                "fusion: k must be positive and lane weights non-negative",
            ));
        }
        Ok(())
    }

    /// Candidates each lane contributes before fusion.
    pub fn lane_depth(&self) -> usize {
        (self.k * 3).clamp(30, MAX_K)
    }
}

/// One ranked chunk.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    /// 1-based rank in the answer.
    pub rank: usize,
    /// BM25 (lexical mode), cosine (dense mode) or the fused RRF score (hybrid).
    pub score: f32,
    /// 1-based rank in the lexical (BM25) lane.
    pub lexical_rank: Option<usize>,
    /// 1-based rank in the dense (embedding) lane.
    pub dense_rank: Option<usize>,
    pub chunk: Chunk,
}

/// A file, ranked by the hits in it: "which files should the agent open".
#[derive(Debug, Clone, Serialize)]
pub struct FileHit {
    pub path: String,
    pub score: f32,
    /// How many candidate chunks of the file the lanes returned.
    pub chunks: usize,
    /// The best rank any of its chunks reached in the answer's order (0: none of its chunks
    /// is among the hits; the file came from another lane).
    pub best_rank: usize,
    /// What the ranking model's score is made of: each feature's value and contribution,
    /// largest first (empty when files were ranked by RRF).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub why: Vec<ranker::Contribution>,
}

/// The query's weighted terms as the lexical lanes take them (see [`query::weighted_terms`]).
pub fn query_terms(query: &str) -> Vec<(String, f32)> {
    query::weighted_terms(query)
        .into_iter()
        .map(|t| (t.text, t.weight))
        .collect()
}

/// The lexical lane: BM25 of the query's weighted terms, with filters. Ranks are 1-based.
pub fn lexical_lane(
    snapshot: &Snapshot,
    req: &SearchRequest,
    terms: &[(String, f32)],
    paths: Option<BTreeSet<String>>,
    limit: usize,
) -> Result<Vec<(f32, Chunk)>> {
    snapshot.search(&LexicalQuery {
        text: req.query.clone(),
        // A query of stopwords alone still searches for its words.
        terms: (!terms.is_empty()).then(|| terms.to_vec()),
        limit,
        language: req.language,
        paths,
    })
}

/// Fuses ranked lanes by reciprocal rank fusion, deduplicated by chunk id; returns hits in
/// fused order with each lane's rank kept. Ties break by chunk path then start (stable).
pub fn fuse(lexical: Vec<Chunk>, dense: Vec<Chunk>, fusion: Fusion) -> Vec<SearchHit> {
    let mut by_id: HashMap<String, SearchHit> = HashMap::new();
    for (lane, chunks) in [(0, lexical), (1, dense)] {
        let weight = if lane == 0 {
            fusion.lexical_weight
        } else {
            fusion.dense_weight
        };
        for (i, chunk) in chunks.into_iter().enumerate() {
            let rank = i + 1;
            let hit = by_id.entry(chunk.id.clone()).or_insert_with(|| SearchHit {
                rank: 0,
                score: 0.0,
                lexical_rank: None,
                dense_rank: None,
                chunk,
            });
            hit.score += weight / (fusion.k + rank as f32);
            if lane == 0 {
                hit.lexical_rank = Some(rank);
            } else {
                hit.dense_rank = Some(rank);
            }
        }
    }
    let mut hits: Vec<SearchHit> = by_id.into_values().collect();
    hits.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.chunk.path.cmp(&b.chunk.path))
            .then_with(|| a.chunk.span.start_byte.cmp(&b.chunk.span.start_byte))
    });
    for (i, hit) in hits.iter_mut().enumerate() {
        hit.rank = i + 1;
    }
    hits
}

/// Orders chunk hits by the ranking stage: a hit's score is the reciprocal-rank fusion
/// (k = 60) of its file's rank and its own rank in the lanes, so the best chunks of the best
/// files lead. Returns the first `k` hits and files.
pub fn order_by_files(
    mut hits: Vec<SearchHit>,
    ranked: Vec<rank::RankedFile>,
    k: usize,
) -> (Vec<SearchHit>, Vec<FileHit>) {
    const RRF_K: f32 = 60.0;
    let file_rank: HashMap<&str, usize> = ranked
        .iter()
        .enumerate()
        .map(|(i, f)| (f.path.as_str(), i + 1))
        .collect();
    let unranked = ranked.len() + 1;
    for hit in &mut hits {
        let r_file = file_rank
            .get(hit.chunk.path.as_str())
            .copied()
            .unwrap_or(unranked);
        hit.score = 1.0 / (RRF_K + r_file as f32) + 1.0 / (RRF_K + hit.rank as f32);
    }
    hits.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.rank.cmp(&b.rank))
    });
    hits.truncate(k);
    for (i, hit) in hits.iter_mut().enumerate() {
        hit.rank = i + 1;
    }
    let mut best: HashMap<&str, usize> = HashMap::new();
    for hit in &hits {
        best.entry(hit.chunk.path.as_str()).or_insert(hit.rank);
    }
    let files = ranked
        .into_iter()
        .take(k)
        .map(|f| FileHit {
            best_rank: best.get(f.path.as_str()).copied().unwrap_or(0),
            path: f.path,
            score: f.score,
            chunks: f.chunks,
            why: f.why,
        })
        .collect();
    (hits, files)
}

/// The indexed paths a glob matches. `*` crosses directories, so `*.rs` means every Rust file.
pub fn resolve_glob(snapshot: &Snapshot, glob: &str) -> Result<BTreeSet<String>> {
    let matcher = globset::GlobBuilder::new(glob)
        .literal_separator(false)
        .build()
        .map_err(|e| Error::invalid(format!("path glob {glob:?}: {e}")))?
        .compile_matcher();
    let mut paths = snapshot.paths()?;
    paths.retain(|p| matcher.is_match(p));
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChunkKind, Span};

    fn chunk(id: &str) -> Chunk {
        Chunk {
            id: id.into(),
            path: format!("{id}.rs"),
            language: Language::Rust,
            kind: ChunkKind::Function,
            symbol: id.into(),
            symbols: vec![id.into()],
            scope: String::new(),
            signature: String::new(),
            doc: String::new(),
            span: Span {
                start_byte: 0,
                end_byte: 1,
                start_line: 1,
                end_line: 1,
            },
            content: "x".into(),
            hash: String::new(),
        }
    }

    #[test]
    fn rrf_rewards_agreement_and_keeps_lane_ranks() {
        let hits = fuse(
            vec![chunk("a"), chunk("b"), chunk("c")],
            vec![chunk("c"), chunk("d"), chunk("a")],
            Fusion::default(),
        );
        let order: Vec<(&str, Option<usize>, Option<usize>)> = hits
            .iter()
            .map(|h| (h.chunk.id.as_str(), h.lexical_rank, h.dense_rank))
            .collect();
        // a: 1/61 + 1/63, c: 1/63 + 1/61 (tie, broken by path), b: 1/62, d: 1/62.
        assert_eq!(
            order,
            vec![
                ("a", Some(1), Some(3)),
                ("c", Some(3), Some(1)),
                ("b", Some(2), None),
                ("d", None, Some(2)),
            ]
        );
        assert!((hits[0].score - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-6);
        let only_dense = fuse(
            vec![chunk("a")],
            vec![chunk("b")],
            Fusion {
                lexical_weight: 0.0,
                ..Fusion::default()
            },
        );
        assert_eq!(only_dense[0].chunk.id, "b");
    }

    #[test]
    fn hits_follow_their_files_rank_then_their_own() {
        // Lane order: a, b, c (a.rs, b.rs, c.rs); the ranking stage puts c.rs first.
        let hits = fuse(
            vec![chunk("a"), chunk("b"), chunk("c")],
            vec![],
            Fusion::default(),
        );
        let ranked = ["c.rs", "a.rs", "b.rs"]
            .iter()
            .map(|p| rank::RankedFile {
                path: p.to_string(),
                score: 0.0,
                chunks: 1,
                why: Vec::new(),
            })
            .collect();
        let (hits, files) = order_by_files(hits, ranked, 2);
        let order: Vec<(&str, usize)> =
            hits.iter().map(|h| (h.chunk.id.as_str(), h.rank)).collect();
        // c: 1/61 + 1/63; a: 1/62 + 1/61; b: 1/63 + 1/62 (a and c tie on the sum of
        // reciprocals; the lane's order breaks it).
        assert_eq!(order, vec![("a", 1), ("c", 2)]);
        let files: Vec<(&str, usize)> = files
            .iter()
            .map(|f| (f.path.as_str(), f.best_rank))
            .collect();
        assert_eq!(files, vec![("c.rs", 2), ("a.rs", 1)]);
    }
}
