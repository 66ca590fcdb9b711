//! The index benchmark: end-to-end indexing of a corpus against reading every byte of it.

use super::{peak_rss_bytes, quantile};
use crate::config::Config;
use crate::engine::{Engine, NoProgress};
use crate::error::{Error, Result};
use crate::retrieve::SearchRequest;
use crate::source::walk::walk;
use serde::Serialize;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[derive(Debug, Serialize)]
struct Report {
    corpus: String,
    reference_files: u64,
    reference_bytes: u64,
    reference_seconds: f64,
    reference_mb_s: f64,
    ripgrep_seconds: Option<f64>,
    index_files: u64,
    index_bytes: u64,
    index_chunks: u64,
    index_seconds: f64,
    index_mb_s: f64,
    index_files_s: f64,
    index_chunks_s: f64,
    /// index MB/s divided by reference MB/s, both measured in this run.
    throughput_ratio: f64,
    peak_rss_mb: f64,
    search_queries: usize,
    search_p50_ms: f64,
    search_p99_ms: f64,
    search_max_ms: f64,
}

/// Queries in the words a person or an agent would use, plus identifiers drawn from the index.
const SEED_QUERIES: &[&str] = &[
    "parse http request headers",
    "read file to string",
    "serialize json value",
    "hash map insert entry",
    "error handling result",
    "tokenizer split words",
    "thread pool spawn worker",
    "open database connection",
    "compress buffer",
    "utf8 decode bytes",
    "iterator next item",
    "render template",
    "url path join",
    "regex match pattern",
    "retry with backoff",
    "lock mutex guard",
    "parse command line arguments",
    "write to socket",
    "format date time",
    "test assert equal",
];

pub fn run(corpus: &Path, queries: usize, json: bool, mut config: Config) -> Result<()> {
    if !corpus.is_dir() {
        return Err(Error::NotFound(format!(
            "{}: corpus directory not found (build it with benches/corpus.sh)",
            corpus.display()
        )));
    }
    let scratch = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    config.data_dir = scratch.path().to_path_buf();

    // Reference: the same walk, reading every byte and counting lines.
    let started = Instant::now();
    let walked = walk(corpus, &config.walk, &[])?;
    let mut ref_bytes = 0u64;
    let mut lines = 0u64;
    for file in &walked.files {
        if let Ok(bytes) = std::fs::read(&file.abs_path) {
            ref_bytes += bytes.len() as u64;
            lines += bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        }
    }
    let reference_seconds = started.elapsed().as_secs_f64();
    std::hint::black_box(lines);

    let ripgrep_seconds = ripgrep(corpus);

    let engine = Engine::new(config)?;
    let started = Instant::now();
    let report = engine.index(corpus, &NoProgress)?;
    let index_seconds = started.elapsed().as_secs_f64();
    let peak = peak_rss_bytes().unwrap_or(0) as f64 / 1e6;

    let latencies = time_searches(&engine, corpus, queries)?;
    let mb = |bytes: u64, secs: f64| bytes as f64 / 1e6 / secs.max(1e-9);
    let out = Report {
        corpus: corpus.display().to_string(),
        reference_files: walked.files.len() as u64,
        reference_bytes: ref_bytes,
        reference_seconds,
        reference_mb_s: mb(ref_bytes, reference_seconds),
        ripgrep_seconds,
        index_files: report.files_indexed,
        index_bytes: report.bytes,
        index_chunks: report.chunks,
        index_seconds,
        index_mb_s: mb(report.bytes, index_seconds),
        index_files_s: report.files_indexed as f64 / index_seconds,
        index_chunks_s: report.chunks as f64 / index_seconds,
        throughput_ratio: mb(report.bytes, index_seconds) / mb(ref_bytes, reference_seconds),
        peak_rss_mb: peak,
        search_queries: latencies.len(),
        search_p50_ms: quantile(&latencies, 0.5),
        search_p99_ms: quantile(&latencies, 0.99),
        search_max_ms: latencies.last().copied().unwrap_or(0.0),
    };
    if json {
        crate::cli::out::json(&serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print_markdown(&out);
    }
    Ok(())
}

fn ripgrep(corpus: &Path) -> Option<f64> {
    let started = Instant::now();
    let status = Command::new("rg")
        .args(["--count", "--no-messages", ""])
        .arg(corpus)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    status.code().filter(|c| *c <= 1)?;
    Some(started.elapsed().as_secs_f64())
}

fn time_searches(engine: &Engine, corpus: &Path, n: usize) -> Result<Vec<f64>> {
    // Identifiers from the index make the rest of the query set.
    let mut queries: Vec<String> = SEED_QUERIES.iter().map(|s| s.to_string()).collect();
    for seed in SEED_QUERIES {
        let mut req = SearchRequest::new(*seed);
        req.k = 25;
        for hit in engine.search(corpus, &req)?.hits {
            if !hit.chunk.symbol.is_empty() && queries.len() < n {
                queries.push(hit.chunk.symbol.clone());
            }
        }
    }
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let mut req = SearchRequest::new(queries[i % queries.len()].clone());
        req.k = 10;
        let started = Instant::now();
        let response = engine.search(corpus, &req);
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        if let Err(e) = response
            && e.kind() != crate::ErrorKind::InvalidInput
        {
            return Err(e);
        }
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    Ok(latencies)
}

fn print_markdown(r: &Report) {
    crate::outln!("corpus: {}", r.corpus);
    crate::outln!();
    crate::outln!("| measure | value |");
    crate::outln!("|---|---|");
    crate::outln!(
        "| files (walked / indexed) | {} / {} |",
        r.reference_files,
        r.index_files
    );
    crate::outln!(
        "| source bytes indexed | {:.1} MB |",
        r.index_bytes as f64 / 1e6
    );
    crate::outln!("| chunks | {} |", r.index_chunks);
    crate::outln!(
        "| reference: walk + read every byte | {:.2} s, {:.1} MB/s |",
        r.reference_seconds,
        r.reference_mb_s
    );
    match r.ripgrep_seconds {
        Some(s) => crate::outln!("| ripgrep `rg --count ''` over the corpus | {s:.2} s |"),
        None => crate::outln!("| ripgrep | not installed |"),
    }
    crate::outln!(
        "| codectx index (walk, read, chunk, tantivy commit) | {:.2} s |",
        r.index_seconds
    );
    crate::outln!(
        "| index throughput | {:.1} MB/s, {:.0} files/s, {:.0} chunks/s |",
        r.index_mb_s,
        r.index_files_s,
        r.index_chunks_s
    );
    crate::outln!(
        "| index / reference throughput | {:.3} |",
        r.throughput_ratio
    );
    crate::outln!("| peak RSS | {:.0} MB |", r.peak_rss_mb);
    crate::outln!(
        "| search ({} queries, k=10) p50 / p99 / max | {:.2} / {:.2} / {:.2} ms |",
        r.search_queries,
        r.search_p50_ms,
        r.search_p99_ms,
        r.search_max_ms
    );
}
