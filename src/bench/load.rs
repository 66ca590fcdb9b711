//! `codectx bench load`: open-loop, constant-rate search and get-context traffic over
//! loopback gRPC against an indexed corpus; latency from each request's scheduled send
//! time (no coordinated omission) in HDR histograms, per offered rate, up to the knee,
//! then a run at 80% of the knee.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::server::client::AsyncClient;
use crate::server::grpc::pb;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct LoadOptions {
    pub rates: Vec<f64>,
    pub step_seconds: f64,
    /// The share of requests that are searches; the rest are get-context calls.
    pub search_share: f64,
    pub budget: u32,
    pub server: Option<String>,
    pub json: bool,
}

#[derive(Default)]
struct Step {
    search: Option<Histogram<u64>>,
    context: Option<Histogram<u64>>,
    errors: BTreeMap<String, u64>,
    sent: u64,
    done: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Queries from the corpus itself: documented definitions' first doc sentences (search)
/// and issue-like tasks naming them (get-context).
fn workload(engine: &crate::Engine, corpus: &Path, n: usize) -> Result<(Vec<String>, Vec<String>)> {
    let snapshot = engine.snapshot(corpus)?;
    let chunks = snapshot.all_chunks()?;
    let documented: Vec<(String, String)> = chunks
        .iter()
        .filter(|c| !c.symbol.is_empty())
        .filter_map(|c| super::mine::first_sentence(&c.doc).map(|s| (s, c.symbol.clone())))
        .collect();
    if documented.is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "{} has no documented definitions to make queries from",
            corpus.display()
        )));
    }
    let step = (documented.len() / n.max(1)).max(1);
    let picked: Vec<_> = documented.into_iter().step_by(step).take(n).collect();
    let searches = picked.iter().map(|(s, _)| s.clone()).collect();
    let tasks = picked
        .iter()
        .map(|(s, sym)| {
            format!("{s} This fails for empty input: fix `{sym}` and keep its callers working.")
        })
        .collect();
    Ok((searches, tasks))
}

/// One step at `rate` requests per second for `seconds`.
async fn step(
    client: &AsyncClient,
    repository: &str,
    searches: &[String],
    tasks: &[String],
    rate: f64,
    seconds: f64,
    options: &LoadOptions,
) -> (Step, f64) {
    let state = Arc::new(Mutex::new(Step {
        search: Some(histogram()),
        context: Some(histogram()),
        ..Default::default()
    }));
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = (rate * seconds).round() as u64;
    let start = tokio::time::Instant::now();
    let mut handles = Vec::with_capacity(total as usize);
    for i in 0..total {
        let at = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(at).await;
        let is_search = (i as f64 * options.search_share).floor()
            != ((i + 1) as f64 * options.search_share).floor();
        let client = client.clone();
        let state = Arc::clone(&state);
        let repository = repository.to_string();
        let query = if is_search {
            searches[i as usize % searches.len()].clone()
        } else {
            tasks[i as usize % tasks.len()].clone()
        };
        let budget = options.budget;
        state.lock().unwrap_or_else(|p| p.into_inner()).sent += 1;
        handles.push(tokio::spawn(async move {
            let outcome = if is_search {
                client
                    .search(pb::SearchRequest {
                        repository,
                        query,
                        k: 10,
                        ..Default::default()
                    })
                    .await
            } else {
                client
                    .context(pb::GetContextRequest {
                        repository,
                        task: query,
                        budget,
                        ..Default::default()
                    })
                    .await
            };
            // From the scheduled send time: a slow server delays later sends' start, not
            // their measured latency.
            let micros = at.elapsed().as_micros().max(1) as u64;
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            s.done += 1;
            match outcome {
                Ok(()) => {
                    let h = if is_search {
                        s.search.as_mut()
                    } else {
                        s.context.as_mut()
                    };
                    if let Some(h) = h {
                        let _ = h.record(micros.min(120_000_000));
                    }
                }
                Err(code) => *s.errors.entry(code).or_default() += 1,
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let done = {
        let s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.done
    };
    let achieved = done as f64 / elapsed.max(1e-9);
    let step = Arc::try_unwrap(state)
        .ok()
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_default();
    (step, achieved)
}

fn row(rate: f64, achieved: f64, s: &Step) -> Value {
    let sh = s.search.as_ref().expect("histogram");
    let ch = s.context.as_ref().expect("histogram");
    json!({
        "offered_qps": rate,
        "achieved_qps": achieved,
        "sent": s.sent,
        "search_ms": {"n": sh.len(), "p50": ms(sh, 0.5), "p99": ms(sh, 0.99), "p999": ms(sh, 0.999)},
        "context_ms": {"n": ch.len(), "p50": ms(ch, 0.5), "p99": ms(ch, 0.99), "p999": ms(ch, 0.999)},
        "errors": s.errors,
    })
}

pub fn run(corpus: &Path, options: LoadOptions, config: Config) -> Result<()> {
    let corpus = corpus.canonicalize().map_err(|e| Error::io(corpus, e))?;
    let engine = Arc::new(crate::Engine::new(config)?);
    let (searches, tasks) = workload(&engine, &corpus, 500)?;
    // The service answers for registered repositories only.
    engine.register(&corpus)?;
    let local;
    let url = match &options.server {
        Some(u) => u.clone(),
        None => {
            local =
                crate::server::grpc::spawn_local(Arc::clone(&engine), ([127, 0, 0, 1], 0).into())?;
            local.url.clone()
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("runtime: {e}")))?;
    let repository = corpus.display().to_string();
    let client = runtime.block_on(AsyncClient::connect(&url))?;
    // Warm the server's caches (readers, model) before measuring.
    let warm = LoadOptions {
        rates: vec![],
        ..options_clone(&options)
    };
    runtime.block_on(step(
        &client,
        &repository,
        &searches,
        &tasks,
        5.0,
        2.0,
        &warm,
    ));

    let mut rows = Vec::new();
    let mut base_p99: Option<f64> = None;
    let mut knee: Option<f64> = None;
    for &rate in &options.rates {
        let (s, achieved) = runtime.block_on(step(
            &client,
            &repository,
            &searches,
            &tasks,
            rate,
            options.step_seconds,
            &options,
        ));
        let r = row(rate, achieved, &s);
        let p99 = r["search_ms"]["p99"].as_f64().unwrap_or(f64::MAX);
        let errors: u64 = s.errors.values().sum();
        eprintln!(
            "offered {rate:>6.0}/s achieved {achieved:>6.1}/s  search p50 {:>6.1} p99 {:>7.1} ms  context p99 {:>7.1} ms  errors {errors} {:?}",
            r["search_ms"]["p50"].as_f64().unwrap_or(0.0),
            p99,
            r["context_ms"]["p99"].as_f64().unwrap_or(0.0),
            s.errors,
        );
        rows.push(r);
        let base = *base_p99.get_or_insert(p99);
        // The knee: latency turns up (p99 over 3x the lowest rate's and over 50 ms), the
        // server falls behind, or errors appear.
        let turned = (p99 > 3.0 * base && p99 > 50.0) || achieved < 0.95 * rate || errors > 0;
        if turned {
            break;
        }
        knee = Some(rate);
    }
    let knee = knee.ok_or_else(|| {
        Error::Internal("even the lowest offered rate overloads the server: lower --rates".into())
    })?;
    let target = (knee * 0.8).max(1.0);
    let (s, achieved) = runtime.block_on(step(
        &client,
        &repository,
        &searches,
        &tasks,
        target,
        options.step_seconds * 2.0,
        &options,
    ));
    let at80 = row(target, achieved, &s);
    let result = json!({
        "corpus": corpus,
        "search_share": options.search_share,
        "budget": options.budget,
        "steps": rows,
        "knee_qps": knee,
        "at_80_percent_of_knee": at80,
    });
    if options.json {
        crate::cli::out::json(&serde_json::to_string_pretty(&result).unwrap_or_default());
    } else {
        crate::outln!(
            "knee: {knee:.0} requests/s ({:.0}% search)",
            options.search_share * 100.0
        );
        crate::outln!(
            "at 80% of the knee ({target:.0}/s offered, {achieved:.1}/s achieved): search p50 {:.1} / p99 {:.1} / p99.9 {:.1} ms; get-context p50 {:.1} / p99 {:.1} / p99.9 {:.1} ms; errors {:?}",
            at80["search_ms"]["p50"].as_f64().unwrap_or(0.0),
            at80["search_ms"]["p99"].as_f64().unwrap_or(0.0),
            at80["search_ms"]["p999"].as_f64().unwrap_or(0.0),
            at80["context_ms"]["p50"].as_f64().unwrap_or(0.0),
            at80["context_ms"]["p99"].as_f64().unwrap_or(0.0),
            at80["context_ms"]["p999"].as_f64().unwrap_or(0.0),
            s.errors
        );
    }
    Ok(())
}

fn options_clone(o: &LoadOptions) -> LoadOptions {
    LoadOptions {
        rates: o.rates.clone(),
        step_seconds: o.step_seconds,
        search_share: o.search_share,
        budget: o.budget,
        server: o.server.clone(),
        json: o.json,
    }
}
