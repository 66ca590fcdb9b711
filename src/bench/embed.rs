//! The embedding benchmark: the indexing pipeline's embedding throughput against raw model
//! calls on the same chunk texts, and the cost of re-indexing an unchanged tree.

use crate::config::Config;
use crate::embed::document_text;
use crate::engine::{Engine, NoProgress};
use crate::error::{Error, Result};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Serialize)]
struct Report {
    corpus: String,
    model: String,
    chunks: u64,
    raw_seconds: f64,
    raw_chunks_s: f64,
    pipeline_seconds: f64,
    pipeline_chunks_s: f64,
    /// pipeline chunks/s divided by raw chunks/s, both measured in this run.
    pipeline_over_raw: f64,
    reindex_seconds: f64,
    reindex_model_texts: u64,
}

pub fn run(corpus: &Path, json: bool, mut config: Config) -> Result<()> {
    let scratch = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    config.data_dir = scratch.path().to_path_buf();
    let engine = Engine::new(config)?;
    engine.index(corpus, &NoProgress)?;
    let chunks = engine.snapshot(corpus)?.all_chunks()?;
    let texts: Vec<String> = chunks.iter().map(document_text).collect();
    let embedder = engine.embedder()?;

    // Warm the model up (first-call allocations) so neither side pays for it.
    embedder.embed_documents(&texts[..texts.len().min(32)])?;
    // Reference: the model alone on the same texts, in the pipeline's batch size.
    let started = Instant::now();
    for batch in texts.chunks(128) {
        embedder.embed_documents(batch)?;
    }
    let raw_seconds = started.elapsed().as_secs_f64();

    // The pipeline: snapshot scan, cache lookups, model, cache writes, vector-store commits.
    let report = engine.embed(corpus, &NoProgress)?;
    let pipeline_seconds = report.seconds;

    // Re-index and re-embed the unchanged tree.
    let started = Instant::now();
    engine.index(corpus, &NoProgress)?;
    let again = engine.embed(corpus, &NoProgress)?;
    let reindex_seconds = started.elapsed().as_secs_f64();

    let n = chunks.len() as f64;
    let out = Report {
        corpus: corpus.display().to_string(),
        model: embedder.model_id().to_string(),
        chunks: chunks.len() as u64,
        raw_seconds,
        raw_chunks_s: n / raw_seconds,
        pipeline_seconds,
        pipeline_chunks_s: n / pipeline_seconds,
        pipeline_over_raw: raw_seconds / pipeline_seconds,
        reindex_seconds,
        reindex_model_texts: again.embedded,
    };
    if json {
        crate::cli::out::json(&serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        crate::outln!(
            "corpus: {} ({} chunks, model {})",
            out.corpus,
            out.chunks,
            out.model
        );
        crate::outln!();
        crate::outln!("| measure | value |");
        crate::outln!("|---|---|");
        crate::outln!(
            "| raw model calls on the chunk texts | {:.1} s, {:.1} chunks/s |",
            out.raw_seconds,
            out.raw_chunks_s
        );
        crate::outln!(
            "| pipeline embedding pass (cache, model, vector store) | {:.1} s, {:.1} chunks/s |",
            out.pipeline_seconds,
            out.pipeline_chunks_s
        );
        crate::outln!(
            "| pipeline / raw throughput | {:.3} |",
            out.pipeline_over_raw
        );
        crate::outln!(
            "| re-index + re-embed of the unchanged tree | {:.2} s, {} texts sent to the model |",
            out.reindex_seconds,
            out.reindex_model_texts
        );
    }
    Ok(())
}
