//! `codectx monitor watch`: the post-merge monitor's command line. Exit 0 healthy for the
//! whole window, 1 rolled back, 2 error; `--json` streams one event per line.

use crate::error::{Error, Result};
use crate::monitor::{self, Event, MonitorConfig, Outcome, WatchRequest};
use clap::Subcommand;
use std::io::IsTerminal;
use std::path::PathBuf;

use crate::cli::out::escape;

/// A line on stderr, control characters escaped (queries and errors quote the outside).
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("{}", escape(&format!($($arg)*)))
    };
}

#[derive(Subcommand, Debug)]
pub enum MonitorCommand {
    /// Watch a merge's metrics in Prometheus for a window; on a breach of the policy's
    /// thresholds or the task type's rollback triggers, revert it on a branch
    /// `codectx/revert/<sha>` (pushed, with a pull request and a notification when
    /// configured). Exit 0 healthy, 1 rolled back, 2 error.
    Watch(WatchArgs),
}

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The merge commit.
    #[arg(long)]
    merge: String,
    /// A task type of the policy (its thresholds and rollback triggers apply).
    #[arg(long)]
    task_type: String,
    /// The service's name, `$service` in the metrics' queries (default: the
    /// repository's directory name).
    #[arg(long)]
    service: Option<String>,
    /// How long to watch (default: the config's, 15m).
    #[arg(long)]
    window: Option<String>,
    /// Time between checks (default: the config's, 30s).
    #[arg(long)]
    interval: Option<String>,
    /// The merge policy (default: the shipped policy/default.toml).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The monitor's config (default: `<repo>/.codectx/monitor.toml` when it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Prometheus's address (overrides the config's).
    #[arg(long, env = "CODECTX_PROMETHEUS_URL")]
    prometheus: Option<String>,
    /// The merge time as Unix seconds (default: the merge commit's committer time).
    #[arg(long)]
    merged_at: Option<i64>,
    /// Where the revert branch starts (default: HEAD).
    #[arg(long, default_value = "HEAD")]
    base: String,
    /// The original task (a structured task's JSON, or an issue's text): quoted in
    /// revert.md; a structured task's rollback_condition is checked too.
    #[arg(long)]
    task: Option<PathBuf>,
    #[arg(long)]
    task_id: Option<String>,
    /// The merged pull request's text for revert.md (default: the merge's message).
    #[arg(long)]
    pr_text: Option<PathBuf>,
    /// Where revert.md and events.jsonl go (default: `<data dir>/monitor-runs/<time>-<sha>`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// One JSON event per line on stdout (the summary last).
    #[arg(long)]
    json: bool,
}

pub fn run(which: MonitorCommand, config: crate::config::Config) -> Result<()> {
    match which {
        MonitorCommand::Watch(args) => super::exit_with(watch(args, config)),
    }
}

fn watch(a: WatchArgs, engine: crate::config::Config) -> Result<i32> {
    let repo = super::canonical(&a.repo)?;
    let mut config = MonitorConfig::load(a.config.as_deref(), &repo)?;
    if let Some(w) = a.window {
        config.watch.window = w;
    }
    if let Some(i) = a.interval {
        config.watch.interval = i;
    }
    if let Some(p) = a.prometheus {
        config.prometheus.url = p;
    }
    let task = match &a.task {
        None => None,
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            Some(if text.trim_start().starts_with('{') {
                crate::agent::task::Task::from_json(&text, &p.display().to_string())?
            } else {
                crate::agent::task::Task::from_text(&text)?
            })
        }
    };
    let pr_text = match &a.pr_text {
        None => None,
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?),
    };
    let service = a.service.unwrap_or_else(|| {
        repo.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "service".into())
    });
    let out = a.out.unwrap_or_else(|| {
        let merge: String = a
            .merge
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        engine.data_dir.join("monitor-runs").join(format!(
            "{}-{merge}-{}",
            crate::time::compact(crate::time::now_unix()),
            std::process::id()
        ))
    });
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let request = WatchRequest {
        repo,
        merge: a.merge,
        task_type: a.task_type,
        service,
        policy: crate::policy::Policy::load(a.policy.as_deref())?,
        config,
        merged_at: a.merged_at,
        base: a.base,
        task,
        task_id: a.task_id,
        pr_text,
        out: out.clone(),
    };
    let events_path = out.join("events.jsonl");
    let mut events = std::fs::File::create(&events_path).map_err(|e| Error::io(&events_path, e))?;
    let terminal = std::io::stderr().is_terminal();
    let json = a.json;
    let mut emit = |event: &Event| {
        let line = serde_json::to_string(event).unwrap_or_default();
        let _ = std::io::Write::write_all(&mut events, format!("{line}\n").as_bytes());
        if json {
            crate::cli::out::raw(&format!("{line}\n"));
        } else {
            human(event, terminal);
        }
    };
    let summary = match monitor::watch(&request, &mut emit) {
        Ok(s) => s,
        Err(e) => {
            record(&engine, &request, Outcome::Error, &e.to_string(), None);
            return Err(e);
        }
    };
    record(
        &engine,
        &request,
        summary.outcome,
        &summary.reason,
        Some(summary.merge.clone()),
    );
    if summary.outcome == Outcome::Error && json {
        say!("error: {}", summary.reason);
    }
    if !json {
        eprintln!("events: {}", events_path.display());
    }
    Ok(summary.exit_code)
}

fn record(
    engine: &crate::config::Config,
    request: &WatchRequest,
    outcome: Outcome,
    reason: &str,
    merge: Option<String>,
) {
    let mut e = crate::ledger::Entry::now(crate::ledger::Kind::Monitor);
    e.task_id = request.task_id.clone();
    e.task_type = Some(request.task_type.clone());
    e.severity = Some(
        request
            .policy
            .rules(&request.task_type)
            .severity
            .name()
            .to_string(),
    );
    e.merge_commit = merge.or_else(|| Some(request.merge.clone()));
    e.status = serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string));
    e.rolled_back = Some(outcome == Outcome::RolledBack);
    e.reason = Some(reason.to_string());
    super::governance::record(engine, &e);
}

/// One line per event for a person; checks overwrite each other on a terminal.
fn human(event: &Event, terminal: bool) {
    // On a terminal the last check line is overwritten in place: end it first.
    let nl = if terminal { "\n" } else { "" };
    let num = |v: &Option<f64>| v.map_or("-".into(), monitor::condition::number);
    match event {
        Event::Start {
            merge,
            merged_at,
            task_type,
            service,
            prometheus,
            window_s,
            interval_s,
            baselines,
            conditions,
            off,
        } => {
            say!(
                "watching {} ({task_type}) of {service} merged at {merged_at}: {window_s:.0}s, a check every {interval_s:.0}s, Prometheus {prometheus}",
                &merge[..merge.len().min(12)]
            );
            for (m, b) in baselines {
                say!("  baseline {m} = {}", num(b));
            }
            for c in conditions {
                say!("  rollback if {c}");
            }
            for o in off {
                say!("  not checked: {o}");
            }
        }
        Event::Check {
            n,
            elapsed_s,
            values,
            healthy,
            ..
        } => {
            let vals: Vec<String> = values
                .iter()
                .map(|(k, v)| format!("{k}={}", num(v)))
                .collect();
            let line = format!(
                "check {n} at {elapsed_s:.0}s: {} {}",
                if *healthy { "ok" } else { "BREACH" },
                vals.join(" ")
            );
            if terminal {
                eprint!("\r\x1b[2K{}", escape(&line));
            } else {
                say!("{line}");
            }
        }
        Event::Unreachable {
            error,
            for_s,
            grace_s,
            ..
        } => say!("{nl}unreachable for {for_s:.0}s of {grace_s:.0}s grace: {error}"),
        Event::NoData {
            metric,
            for_s,
            grace_s,
            ..
        } => say!("{nl}{metric}: no data for {for_s:.0}s of {grace_s:.0}s grace"),
        Event::Breach {
            judgement,
            consecutive,
        } => say!(
            "{nl}breach: {} ({} = {} against {}, {consecutive} checks in a row)",
            judgement.condition,
            judgement.metric,
            monitor::condition::number(judgement.value),
            monitor::condition::number(judgement.threshold)
        ),
        Event::Revert { revert } => {
            say!("reverted on branch {} ({})", revert.branch, revert.commit);
            say!("  report: {}", revert.report.display());
            if let Some(r) = &revert.pushed_to {
                say!("  pushed to {r}");
            }
            if let Some(pr) = &revert.pull_request {
                say!("  pull request: {pr}");
            }
        }
        Event::Alert { reason } => say!("{nl}ALERT: {reason}"),
        Event::Warning { message } => say!("warning: {message}"),
        Event::Summary { summary } => {
            crate::outln!(
                "{}: {} (exit {})",
                match summary.outcome {
                    Outcome::Healthy => "healthy",
                    Outcome::RolledBack => "rolled back",
                    Outcome::Error => "error",
                },
                summary.reason,
                summary.exit_code
            )
        }
    }
}
