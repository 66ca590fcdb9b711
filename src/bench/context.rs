//! `codectx bench context`: context-pack and search latency on an indexed corpus (both with
//! the ranking stage), against the bare lexical lane (chunk BM25, top 30) measured on the
//! same tasks in the same run.

use super::{mine::first_sentence, quantile};
use crate::config::Config;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::index::lexical::LexicalQuery;
use crate::retrieve::context::ContextRequest;
use crate::retrieve::{SearchMode, SearchRequest};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Serialize)]
struct Latency {
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn latency(mut samples: Vec<f64>) -> Latency {
    samples.sort_by(f64::total_cmp);
    Latency {
        p50_ms: quantile(&samples, 0.5),
        p90_ms: quantile(&samples, 0.9),
        p99_ms: quantile(&samples, 0.99),
        max_ms: samples.last().copied().unwrap_or(0.0),
    }
}

#[derive(Debug, Serialize)]
struct ContextBench {
    corpus: String,
    chunks: u64,
    dense_coverage: f64,
    tasks: usize,
    budget: usize,
    pack: Latency,
    /// The pack's phases: its search lane, the other lanes and expansion, packing.
    pack_search: Latency,
    pack_gather: Latency,
    pack_packing: Latency,
    /// A search (k = 10) of the same task, ranking stage included.
    search: Latency,
    /// The reference: the bare lexical lane (chunk BM25 of the task's words, top 30).
    lexical_lane: Latency,
    /// p99 of the pack, and of the search, over p99 of the lexical lane.
    p99_ratio: f64,
    search_p99_ratio: f64,
    mode: SearchMode,
    /// Mean task length in bytes.
    mean_task_bytes: f64,
    mean_items: f64,
    mean_tokens: f64,
    degraded: usize,
}

/// Tasks made from the corpus itself: a function's doc sentence and its name, as an issue
/// would put them (every `step`-th documented chunk, so the run is deterministic).
fn tasks(engine: &Engine, corpus: &Path, n: usize) -> Result<Vec<String>> {
    let snapshot = engine.snapshot(corpus)?;
    let chunks = snapshot.all_chunks()?;
    let documented: Vec<_> = chunks
        .iter()
        .filter(|c| !c.symbol.is_empty())
        .filter_map(|c| first_sentence(&c.doc).map(|s| (s, c.symbol.clone())))
        .collect();
    if documented.is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "{} has no documented definitions to make tasks from",
            corpus.display()
        )));
    }
    let step = (documented.len() / n.max(1)).max(1);
    Ok(documented
        .iter()
        .step_by(step)
        .take(n)
        .map(|(sentence, symbol)| {
            format!("{sentence} This goes wrong for empty input: fix `{symbol}` and keep its callers working.")
        })
        .collect())
}

/// What `bench context` runs.
pub struct ContextBenchOptions {
    pub queries: usize,
    pub budget: usize,
    /// A JSONL dataset whose `query` fields are the tasks.
    pub tasks: Option<PathBuf>,
    pub mode: SearchMode,
}

/// The first `n` queries of a JSONL dataset.
fn tasks_from(path: &Path, n: usize) -> Result<Vec<String>> {
    let (entries, _) = super::quality::load(path)?;
    let tasks: Vec<String> = entries.into_iter().take(n).map(|(_, e)| e.query).collect();
    if tasks.is_empty() {
        return Err(Error::invalid(format!(
            "{} has no usable entries",
            path.display()
        )));
    }
    Ok(tasks)
}

pub fn run(corpus: &Path, options: &ContextBenchOptions, json: bool, config: Config) -> Result<()> {
    let (budget, mode) = (options.budget, options.mode);
    let engine = Engine::new(config)?;
    let status = engine.status(corpus)?;
    let tasks = match &options.tasks {
        Some(path) => tasks_from(path, options.queries)?,
        None => tasks(&engine, corpus, options.queries)?,
    };
    let request = |task: &str| {
        let mut r = ContextRequest::new(task.to_string(), budget);
        r.mode = mode;
        r
    };
    // Warm-up: the model, the counters, the OS cache.
    for task in tasks.iter().take(3) {
        engine.context(corpus, &request(task))?;
    }
    let mut pack_ms = Vec::new();
    let (mut phase_search, mut phase_gather, mut phase_pack) = (Vec::new(), Vec::new(), Vec::new());
    let (mut search_ms, mut lane_ms) = (Vec::new(), Vec::new());
    let (mut items, mut tokens, mut degraded) = (0usize, 0usize, 0usize);
    for task in &tasks {
        let started = Instant::now();
        let snapshot = engine.snapshot(corpus)?;
        let lane = snapshot.search(&LexicalQuery {
            text: task.clone(),
            limit: 30,
            ..LexicalQuery::default()
        });
        if let Err(e) = lane
            && e.kind() != crate::ErrorKind::InvalidInput
        {
            return Err(e);
        }
        lane_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        let search = SearchRequest {
            k: 10,
            mode,
            ..SearchRequest::new(task.clone())
        };
        engine.search(corpus, &search)?;
        search_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        let pack = engine.context(corpus, &request(task))?;
        pack_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        phase_search.push(pack.search_ms);
        phase_gather.push(pack.gather_ms);
        phase_pack.push(pack.pack_ms);
        items += pack.items.len();
        tokens += pack.tokens_used;
        degraded += usize::from(pack.degraded.is_some());
    }
    let n = tasks.len().max(1) as f64;
    let pack = latency(pack_ms);
    let search = latency(search_ms);
    let lexical_lane = latency(lane_ms);
    let result = ContextBench {
        corpus: corpus.display().to_string(),
        chunks: status.chunks,
        dense_coverage: status.dense_coverage,
        tasks: tasks.len(),
        budget,
        p99_ratio: pack.p99_ms / lexical_lane.p99_ms.max(1e-9),
        search_p99_ratio: search.p99_ms / lexical_lane.p99_ms.max(1e-9),
        mode,
        mean_task_bytes: tasks.iter().map(String::len).sum::<usize>() as f64 / n,
        lexical_lane,
        pack,
        pack_search: latency(phase_search),
        pack_gather: latency(phase_gather),
        pack_packing: latency(phase_pack),
        search,
        mean_items: items as f64 / n,
        mean_tokens: tokens as f64 / n,
        degraded,
    };
    if json {
        crate::cli::out::json(
            &serde_json::to_string_pretty(&result).map_err(|e| Error::Internal(e.to_string()))?,
        );
    } else {
        crate::outln!(
            "{} tasks on {} ({} chunks, {:.0}% embedded), budget {budget}\n\
             pack    p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({:.1} items, {:.0} tokens on average)\n\
             \x20 phases p50 / p99: search lane {:.1} / {:.1} ms, other lanes and expansion {:.1} / {:.1} ms, packing {:.1} / {:.1} ms\n\
             search  p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({:?}, k = 10, ranking stage included)\n\
             lexical lane  p50 {:.1} ms  p99 {:.1} ms  (chunk BM25, top 30: the reference)\n\
             pack p99 / lane p99 = {:.2}, search p99 / lane p99 = {:.2}; {} packs were lexical only; tasks of {:.0} bytes on average",
            result.tasks,
            result.corpus,
            result.chunks,
            result.dense_coverage * 100.0,
            result.pack.p50_ms,
            result.pack.p90_ms,
            result.pack.p99_ms,
            result.pack.max_ms,
            result.mean_items,
            result.mean_tokens,
            result.pack_search.p50_ms,
            result.pack_search.p99_ms,
            result.pack_gather.p50_ms,
            result.pack_gather.p99_ms,
            result.pack_packing.p50_ms,
            result.pack_packing.p99_ms,
            result.search.p50_ms,
            result.search.p90_ms,
            result.search.p99_ms,
            result.search.max_ms,
            result.mode,
            result.lexical_lane.p50_ms,
            result.lexical_lane.p99_ms,
            result.p99_ratio,
            result.search_p99_ratio,
            result.degraded,
            result.mean_task_bytes
        );
    }
    Ok(())
}
