//! Prometheus metrics of the service: calls by method and code, latency histograms by
//! method, reindex durations and outcomes, and, read at scrape time, index sizes and the
//! embedding backlog per repository. Text exposition format 0.0.4 on `GET /metrics`.
//!
//! The format is a few lines of text; writing it here keeps the hot path to one mutex and
//! a few additions per call, with no registry indirection.

use crate::engine::Engine;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            let n = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
struct State {
    requests: BTreeMap<(String, String), u64>,
    latency: BTreeMap<String, Histogram>,
    reindex: BTreeMap<String, Histogram>,
}

/// Shared by the gRPC handlers (which record) and the HTTP endpoint (which renders).
#[derive(Default, Clone)]
pub struct Metrics {
    state: Arc<Mutex<State>>,
    /// The background embedding worker, when the server runs one.
    worker: Arc<std::sync::OnceLock<Arc<crate::background::EmbedWorker>>>,
}

/// Label values escaped as the format requires.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// One finished call: its method, gRPC code name (`OK`, `NotFound`, ...) and duration.
    pub fn record(&self, method: &str, code: &str, seconds: f64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *s.requests
            .entry((method.to_string(), code.to_string()))
            .or_default() += 1;
        s.latency
            .entry(method.to_string())
            .or_default()
            .observe(seconds);
    }

    /// One finished reindex, `ok` or `error`.
    pub fn record_reindex(&self, outcome: &str, seconds: f64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.reindex
            .entry(outcome.to_string())
            .or_default()
            .observe(seconds);
    }

    /// Reports the background embedding worker's queue from now on.
    pub fn watch_worker(&self, worker: Arc<crate::background::EmbedWorker>) {
        let _ = self.worker.set(worker);
    }

    /// The exposition text; index gauges are read from `engine` now.
    pub fn render(&self, engine: &Engine) -> String {
        let mut out = String::new();
        if let Some(w) = self.worker.get() {
            let _ = writeln!(
                out,
                "# HELP codectx_embedding_queue_repositories Repositories queued for (or in) background embedding.\n# TYPE codectx_embedding_queue_repositories gauge\ncodectx_embedding_queue_repositories {}",
                w.depth()
            );
            let _ = writeln!(
                out,
                "# HELP codectx_embedding_passes_total Background embedding passes finished (interrupted or not).\n# TYPE codectx_embedding_passes_total counter\ncodectx_embedding_passes_total {}",
                w.passes()
            );
        }
        {
            let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            out.push_str("# HELP codectx_requests_total gRPC calls by method and status code.\n# TYPE codectx_requests_total counter\n");
            for ((method, code), n) in &s.requests {
                let _ = writeln!(
                    out,
                    "codectx_requests_total{{method=\"{}\",code=\"{}\"}} {n}",
                    escape(method),
                    escape(code)
                );
            }
            out.push_str("# HELP codectx_request_duration_seconds gRPC call latency by method.\n# TYPE codectx_request_duration_seconds histogram\n");
            for (method, h) in &s.latency {
                h.write(
                    &mut out,
                    "codectx_request_duration_seconds",
                    &format!("method=\"{}\"", escape(method)),
                );
            }
            out.push_str("# HELP codectx_reindex_duration_seconds Reindex runs by outcome.\n# TYPE codectx_reindex_duration_seconds histogram\n");
            for (outcome, h) in &s.reindex {
                h.write(
                    &mut out,
                    "codectx_reindex_duration_seconds",
                    &format!("outcome=\"{}\"", escape(outcome)),
                );
            }
        }
        let mut chunks = String::new();
        let mut vectors = String::new();
        let mut backlog = String::new();
        for root in engine.repositories().unwrap_or_default() {
            let Ok(status) = engine.status(&root) else {
                continue;
            };
            let label = format!("repository=\"{}\"", escape(&engine.repository_id(&root)));
            let _ = writeln!(chunks, "codectx_index_chunks{{{label}}} {}", status.chunks);
            let _ = writeln!(
                vectors,
                "codectx_index_vectors{{{label}}} {}",
                status.vectors
            );
            let _ = writeln!(
                backlog,
                "codectx_embedding_backlog_chunks{{{label}}} {}",
                status.chunks.saturating_sub(status.vectors)
            );
        }
        out.push_str("# HELP codectx_index_chunks Chunks in the default ref's index.\n# TYPE codectx_index_chunks gauge\n");
        out.push_str(&chunks);
        out.push_str("# HELP codectx_index_vectors Embedded chunks in the vector store.\n# TYPE codectx_index_vectors gauge\n");
        out.push_str(&vectors);
        out.push_str("# HELP codectx_embedding_backlog_chunks Chunks of the default ref not embedded yet (the embedding queue).\n# TYPE codectx_embedding_backlog_chunks gauge\n");
        out.push_str(&backlog);
        out
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    metrics: Metrics,
    engine: Arc<Engine>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            let engine = Arc::clone(&engine);
            async move {
                let text = tokio::task::spawn_blocking(move || metrics.render(&engine))
                    .await
                    .unwrap_or_default();
                ([("content-type", "text/plain; version=0.0.4")], text)
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!("the metrics endpoint stopped: {e}");
    }
}
