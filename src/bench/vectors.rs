//! The vector-store benchmark: HNSW search against exact search on the same store, latency
//! and recall@10, at a given size.

use super::quantile;
use crate::error::{Error, Result};
use crate::index::vectors::{EmbeddedVectorStore, VectorFilter, VectorPoint, VectorStore};
use crate::model::Language;
use serde::Serialize;
use std::collections::HashSet;
use std::time::Instant;

#[derive(Debug, Serialize)]
struct Report {
    points: usize,
    dims: usize,
    queries: usize,
    upsert_seconds: f64,
    index_build_seconds: f64,
    reopen_seconds: f64,
    exact_p50_ms: f64,
    exact_p99_ms: f64,
    hnsw: Vec<Row>,
}

#[derive(Debug, Serialize)]
struct Row {
    expansion_search: usize,
    p50_ms: f64,
    p99_ms: f64,
    recall_at_10: f64,
}

/// Vectors clustered around 256 centroids, like embeddings of code are (xorshift, seeded).
pub fn clustered(n: usize, dims: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = super::Xorshift::new(seed);
    let mut next = move || (rng.next_u64() % 20_001) as f32 / 10_000.0 - 1.0;
    let centroids: Vec<Vec<f32>> = (0..256)
        .map(|_| (0..dims).map(|_| next()).collect())
        .collect();
    (0..n)
        .map(|i| {
            centroids[i % 256]
                .iter()
                .map(|c| c + 0.5 * next())
                .collect()
        })
        .collect()
}

type Vectors = Vec<Vec<f32>>;

/// Real embeddings from the caches of `data_dirs` (one model), deduplicated and shuffled
/// (seeded): the first `queries` are held out as queries, the rest (up to `points`) indexed.
fn real(
    data_dirs: &[std::path::PathBuf],
    model_id: &str,
    dims: usize,
    points: usize,
    queries: usize,
) -> Result<(Vectors, Vectors)> {
    let mut seen = HashSet::new();
    let mut all = Vec::new();
    for dir in data_dirs {
        let cache = crate::embed::cache::EmbeddingCache::open(&dir.join("embeddings.redb"))?;
        for v in cache.vectors_of(model_id, dims, usize::MAX)? {
            let bits: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
            if seen.insert(bits) {
                all.push(v);
            }
        }
    }
    // Fisher-Yates with xorshift: the same split every run.
    let mut rng = super::Xorshift::new(0x9E37_79B9_7F4A_7C15);
    for i in (1..all.len()).rev() {
        all.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    if all.len() <= queries {
        return Err(Error::invalid(format!(
            "only {} vectors of {model_id} in those caches; need more than {queries}",
            all.len()
        )));
    }
    let rest = all.split_off(queries);
    Ok((rest.into_iter().take(points).collect(), all))
}

pub fn run(
    points: usize,
    dims: usize,
    queries: usize,
    real_from: &[std::path::PathBuf],
    config: &crate::config::Config,
    json: bool,
) -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let path = dir.path().join("vectors.redb");
    let (vectors, qs, source) = if real_from.is_empty() {
        let qs = clustered(queries, dims, 7);
        (
            clustered(points, dims, 42),
            qs,
            "clustered synthetic vectors".to_string(),
        )
    } else {
        use crate::embed::Embedder;
        let model = crate::embed::local::LocalEmbedder::load(&config.embed)?;
        let (v, q) = real(real_from, model.model_id(), model.dims(), points, queries)?;
        let source = format!(
            "real {} embeddings of code chunks; held-out chunks as queries",
            model.model_id()
        );
        (v, q, source)
    };
    let (points, dims, queries) = (vectors.len(), vectors[0].len(), qs.len());
    let store = EmbeddedVectorStore::open(&path, "bench", dims)?;
    let started = Instant::now();
    for (b, batch) in vectors.chunks(10_000).enumerate() {
        let batch: Vec<VectorPoint> = batch
            .iter()
            .enumerate()
            .map(|(i, v)| VectorPoint {
                id: format!("chunk{}", b * 10_000 + i),
                path: format!("src/file{}.rs", (b * 10_000 + i) / 20),
                language: Language::Rust,
                vector: v.clone(),
            })
            .collect();
        store.upsert(&batch)?;
    }
    let upsert_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    store.ann_search(&qs[0], 10)?;
    let index_build_seconds = started.elapsed().as_secs_f64();
    store.save_ann()?;
    drop(store);
    let started = Instant::now();
    let store = EmbeddedVectorStore::open(&path, "bench", dims)?;
    store.ann_search(&qs[0], 10)?;
    let reopen_seconds = started.elapsed().as_secs_f64();

    let mut exact_ms = Vec::new();
    let mut exact_sets = Vec::new();
    for q in &qs {
        let t = Instant::now();
        let exact = store.exact_search(q, 10, &VectorFilter::default())?;
        exact_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        exact_sets.push(exact.into_iter().map(|h| h.id).collect::<HashSet<String>>());
    }
    exact_ms.sort_by(|a, b| a.total_cmp(b));
    let mut rows = Vec::new();
    for ef in [64usize, 128, 256, 512] {
        store.set_search_expansion(ef)?;
        let (mut ms, mut found) = (Vec::new(), 0usize);
        for (q, exact) in qs.iter().zip(&exact_sets) {
            let t = Instant::now();
            let ann = store.search(q, 10, &VectorFilter::default())?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            found += ann.iter().filter(|h| exact.contains(&h.id)).count();
        }
        ms.sort_by(|a, b| a.total_cmp(b));
        rows.push(Row {
            expansion_search: ef,
            p50_ms: quantile(&ms, 0.5),
            p99_ms: quantile(&ms, 0.99),
            recall_at_10: found as f64 / (10 * queries) as f64,
        });
    }
    let out = Report {
        points,
        dims,
        queries,
        upsert_seconds,
        index_build_seconds,
        reopen_seconds,
        exact_p50_ms: quantile(&exact_ms, 0.5),
        exact_p99_ms: quantile(&exact_ms, 0.99),
        hnsw: rows,
    };
    if json {
        crate::cli::out::json(&serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        crate::outln!("{points} points x {dims} dims, {queries} queries ({source})");
        crate::outln!();
        crate::outln!("| measure | value |");
        crate::outln!("|---|---|");
        crate::outln!(
            "| upsert (redb commits of 10k) | {:.1} s |",
            out.upsert_seconds
        );
        crate::outln!(
            "| HNSW build (first search) | {:.1} s |",
            out.index_build_seconds
        );
        crate::outln!("| reopen + load saved HNSW | {:.2} s |", out.reopen_seconds);
        crate::outln!(
            "| exact search p50 / p99 | {:.2} / {:.2} ms |",
            out.exact_p50_ms,
            out.exact_p99_ms
        );
        for r in &out.hnsw {
            crate::outln!(
                "| HNSW (expansion_search {}) p50 / p99, recall@10 | {:.2} / {:.2} ms, {:.3} |",
                r.expansion_search,
                r.p50_ms,
                r.p99_ms,
                r.recall_at_10
            );
        }
    }
    Ok(())
}
