//! `codectx bench agent`: the agent loop's own cost per iteration (everything but the model
//! and the tests), on a real repository through a real gRPC server, with a loopback model
//! that answers instantly from a script and a test command that does nothing.

use crate::agent::{self, config::AgentFile, task::Task};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::llm::{LlmConfig, Provider};
use crate::server::client::Client;
use crate::server::grpc::pb;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// One iteration's tool calls: the read-heavy shape of a real iteration.
const TURNS_PER_ITERATION: usize = 5;

/// The scripted model: iteration after iteration of search, read_span, get_context, an
/// edit and a test run, then finish. OpenAI wire format.
async fn scripted(
    axum::extract::State((turn, iterations)): axum::extract::State<(Arc<AtomicUsize>, usize)>,
    _body: String,
) -> axum::response::Response {
    let n = turn.fetch_add(1, Ordering::SeqCst);
    let (iteration, step) = (n / TURNS_PER_ITERATION, n % TURNS_PER_ITERATION);
    let (name, args) = if iteration >= iterations {
        ("finish", json!({"summary": "benchmark"}))
    } else {
        match step {
            0 => (
                "search",
                json!({"query": "context pack token budget", "k": 10}),
            ),
            1 => (
                "read_span",
                json!({"path": "src/engine.rs", "start_line": 1, "end_line": 120}),
            ),
            2 => (
                "get_context",
                json!({"query": "how does the engine pack context under a budget", "budget": 3000}),
            ),
            3 if iteration == 0 => (
                "edit_file",
                json!({"path": "BENCH_SCRATCH.md", "search": "", "replace": "a\n"}),
            ),
            3 if iteration % 2 == 1 => (
                "edit_file",
                json!({"path": "BENCH_SCRATCH.md", "search": "a\n", "replace": "b\n"}),
            ),
            3 => (
                "edit_file",
                json!({"path": "BENCH_SCRATCH.md", "search": "b\n", "replace": "a\n"}),
            ),
            _ => ("run_tests", json!({})),
        }
    };
    let body = json!({
        "id": format!("chatcmpl-{n}"),
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [{"id": format!("call_{n}"), "type": "function",
                "function": {"name": name, "arguments": args.to_string()}}]}}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0},
    });
    ([("content-type", "application/json")], body.to_string()).into_response()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn run(repo: &Path, iterations: usize, json_out: bool, config: Config) -> Result<()> {
    let repo = repo.canonicalize().map_err(|e| Error::io(repo, e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("runtime: {e}")))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| Error::Unavailable(format!("cannot listen: {e}")))?;
    let model_addr = listener
        .local_addr()
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(scripted))
        .with_state((Arc::new(AtomicUsize::new(0)), iterations));
    runtime.spawn(async move { axum::serve(listener, app).await });

    let data_dir = config.data_dir.clone();
    let engine = Arc::new(crate::Engine::new(config)?);
    let server = crate::server::grpc::spawn_local(engine, ([127, 0, 0, 1], 0).into())?;
    eprintln!(
        "indexing {} (lexical) through {}",
        repo.display(),
        server.url
    );
    let mut client = Client::connect(&server.url, None)?;
    client.reindex(pb::ReindexRequest {
        repository: repo.display().to_string(),
        no_embed: true,
        ..Default::default()
    })?;
    // The reference, measured in this run: one GetContext round trip at the same budget.
    let mut reference = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        client.context(pb::GetContextRequest {
            repository: repo.display().to_string(),
            task: "how does the engine pack context under a budget".into(),
            budget: 3000,
            ..Default::default()
        })?;
        reference.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    reference.sort_by(f64::total_cmp);

    let mut file = AgentFile {
        llm: LlmConfig {
            provider: Provider::Openai,
            model: "scripted".into(),
            base_url: Some(format!("http://{model_addr}/v1")),
            ..LlmConfig::default()
        },
        ..AgentFile::default()
    };
    file.agent.test_command = "true".into();
    file.agent.reindex_embed = false;
    let llm = crate::llm::client(&file.llm)?;
    let out = tempfile::Builder::new()
        .prefix("bench-agent-")
        .tempdir_in(&data_dir)
        .map_err(|e| Error::io(&data_dir, e))?;
    let options = agent::RunOptions {
        repo: repo.clone(),
        task: Task::from_text(
            "# Benchmark the loop\n\nRead code, edit a scratch file, run the tests.",
        )?,
        config: file,
        policy: crate::policy::Policy::default_policy(),
        max_iterations: Some(iterations as u32 + 1),
        base: "HEAD".into(),
        out_dir: out.path().to_path_buf(),
        server: server.url.clone(),
        auth_token: None,
    };
    let started = Instant::now();
    let report = agent::run(options, &*llm)?;
    let wall = started.elapsed().as_secs_f64();
    // The branch the run made is scratch: remove it with its worktree.
    let _ = std::process::Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["worktree", "remove", "--force"])
        .arg(&report.worktree)
        .status();
    let _ = std::process::Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["branch", "-D", &report.branch])
        .status();
    if report.status != agent::Status::Passed {
        return Err(Error::Internal(format!(
            "the benchmark run ended {:?}: {}",
            report.status,
            report.error.unwrap_or_default()
        )));
    }
    // Where an iteration's time goes, from the run's own audit log.
    let mut by_step: std::collections::BTreeMap<String, (f64, usize)> = Default::default();
    let log = std::fs::read_to_string(&report.audit).map_err(|e| Error::io(&report.audit, e))?;
    for line in log.lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let key = match e["event"].as_str() {
            Some("tool") => format!("tool {}", e["name"].as_str().unwrap_or("?")),
            Some("llm") => "model call (loopback)".to_string(),
            _ => continue,
        };
        let slot = by_step.entry(key).or_default();
        slot.0 += e["took_ms"].as_f64().unwrap_or(0.0);
        slot.1 += 1;
    }
    let breakdown: Value = by_step
        .iter()
        .map(|(k, (total, n))| (k.clone(), json!(total / *n as f64)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let mut overhead = report.overhead_ms.clone();
    // The last "iteration" is finish's verification run; keep whole iterations only.
    overhead.truncate(iterations);
    overhead.sort_by(f64::total_cmp);
    let p50 = percentile(&overhead, 0.5);
    let result: Value = json!({
        "repository": repo,
        "iterations": overhead.len(),
        "tool_calls_per_iteration": TURNS_PER_ITERATION,
        "overhead_ms": {"p50": p50, "p90": percentile(&overhead, 0.9), "max": overhead.last().copied().unwrap_or(0.0)},
        "reference_get_context_ms": {"p50": percentile(&reference, 0.5), "p90": percentile(&reference, 0.9)},
        "overhead_over_get_context_p50": p50 / percentile(&reference, 0.5).max(1e-9),
        "mean_ms_by_step": breakdown,
        "model_calls": report.model_calls,
        "wall_s": wall,
    });
    if json_out {
        crate::cli::out::json(&serde_json::to_string_pretty(&result).unwrap_or_default());
    } else {
        crate::outln!(
            "agent loop overhead per iteration ({} iterations of {} tool calls, model and tests excluded): p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
            overhead.len(),
            TURNS_PER_ITERATION,
            p50,
            percentile(&overhead, 0.9),
            overhead.last().copied().unwrap_or(0.0)
        );
        crate::outln!(
            "reference, one GetContext round trip (budget 3000) in this run: p50 {:.1} ms; overhead / reference = {:.2}",
            percentile(&reference, 0.5),
            result["overhead_over_get_context_p50"]
                .as_f64()
                .unwrap_or(0.0)
        );
        for (k, v) in breakdown.as_object().into_iter().flatten() {
            crate::outln!("  mean {k}: {:.1} ms", v.as_f64().unwrap_or(0.0));
        }
    }
    Ok(())
}
