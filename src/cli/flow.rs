//! `codectx flow`: the whole loop as one local command, for teams without a CI service
//! (and what the example GitHub Actions workflow runs): agent run with its gate, then the
//! policy's decision (merge, or hand the branch to review with a pull request), the merge
//! recorded in the ledger, then the post-merge monitor.
//!
//! Each stage is this executable run as a child process, exactly as a user would run it,
//! so the flow adds no behaviour of its own beyond the order and the merge.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(clap::Args, Debug)]
pub struct FlowArgs {
    /// A structured task (JSON, see `codectx agent schema`).
    #[arg(long, required_unless_present = "issue", conflicts_with = "issue")]
    task: Option<PathBuf>,
    /// A free-text task (an issue body in Markdown, `Labels: a, b` lines classify it).
    #[arg(long)]
    issue: Option<PathBuf>,
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The merge policy (default: the shipped policy/default.toml).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The agent's TOML config (default `<repo>/.codectx/agent.toml`).
    #[arg(long)]
    agent_config: Option<PathBuf>,
    /// The monitor's config (default `<repo>/.codectx/monitor.toml`); its `[github]` also
    /// opens the pull request of a change that needs review.
    #[arg(long)]
    monitor_config: Option<PathBuf>,
    /// A running `codectx serve` for the agent's context (default: one for this run).
    #[arg(long)]
    server: Option<String>,
    /// Push the merged base branch, or the branch for review, to this remote.
    #[arg(long)]
    remote: Option<String>,
    /// The service the monitor watches (default: the repository's directory name).
    #[arg(long)]
    service: Option<String>,
    #[arg(long)]
    window: Option<String>,
    #[arg(long)]
    interval: Option<String>,
    /// Stop after the merge (no monitor).
    #[arg(long)]
    no_monitor: bool,
}

/// Runs the flow; the exit status is 0 merged and healthy (or handed to review), 1 the
/// agent, the gate or the monitor said no (rolled back), 2 an error.
pub fn run(a: FlowArgs, config: crate::config::Config) -> Result<()> {
    super::exit_with(flow(a, &config.data_dir))
}

fn step(what: &str) {
    eprintln!("{}", super::out::escape(&format!("flow: {what}")));
}

fn flow(a: FlowArgs, data_dir: &Path) -> Result<i32> {
    let repo = super::canonical(&a.repo)?;
    let repo_s = repo.to_string_lossy().to_string();
    let git = |args: &[&str]| crate::source::git::git_text(&repo, args);
    let me = std::env::current_exe().map_err(|e| Error::io("current executable", e))?;
    let codectx = |args: &[&str]| {
        let mut c = Command::new(&me);
        c.arg("--data-dir").arg(data_dir).args(args);
        c
    };
    let path_s = |p: &Path| p.to_string_lossy().to_string();

    // 1. The agent, with the gate runner on its branch.
    let mut args: Vec<String> = vec![
        "agent".into(),
        "run".into(),
        "--repo".into(),
        repo_s.clone(),
    ];
    match (&a.task, &a.issue) {
        (Some(t), _) => args.extend(["--task".into(), path_s(t)]),
        (None, Some(i)) => args.extend(["--issue".into(), path_s(i)]),
        (None, None) => return Err(Error::invalid("give --task FILE or --issue FILE")),
    }
    for (flag, value) in [
        ("--policy", a.policy.as_deref().map(path_s)),
        ("--config", a.agent_config.as_deref().map(path_s)),
        ("--server", a.server.clone()),
    ] {
        if let Some(v) = value {
            args.extend([flag.into(), v]);
        }
    }
    args.extend(["--gate".into(), "--json".into()]);
    step("agent run (then the gate)");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = codectx(&refs)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Error::Unavailable(format!("cannot start `codectx agent run`: {e}")))?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|_| {
        Error::Unavailable(format!(
            "`codectx agent run` exited {} without a report",
            out.status.code().unwrap_or(-1)
        ))
    })?;
    match out.status.code() {
        Some(0) => {}
        Some(1) => {
            step("the agent stopped at its iteration limit: nothing to merge");
            return Ok(1);
        }
        _ => {
            return Err(Error::Unavailable(format!(
                "the agent run failed: {}",
                report["error"].as_str().unwrap_or("(no reason given)")
            )));
        }
    }
    let field = |k: &str| report[k].as_str().unwrap_or_default().to_string();
    let (run, branch) = (field("run"), field("branch"));
    let task_type = report["classification"]["task_type"]
        .as_str()
        .unwrap_or(crate::policy::UNKNOWN)
        .to_string();
    let gate_path = Path::new(&field("audit")).with_file_name("gate.json");
    let verdict: serde_json::Value = std::fs::read_to_string(&gate_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| Error::Unavailable(format!("no gate verdict at {}", gate_path.display())))?;
    let passed = verdict["verdict"] == "pass";
    let auto_merge = passed && verdict["auto_merge"] == true;
    let reason = verdict["auto_merge_reason"].as_str().unwrap_or_default();
    step(&format!(
        "gate: {} for {task_type} ({reason})",
        verdict["verdict"].as_str().unwrap_or("error")
    ));
    if !passed {
        return Ok(if verdict["verdict"] == "fail" { 1 } else { 2 });
    }

    // 2. The policy's decision.
    if !auto_merge {
        if let Some(remote) = &a.remote {
            git(&[
                "push",
                "--quiet",
                remote,
                &format!("refs/heads/{branch}:refs/heads/{branch}"),
            ])?;
            step(&format!("pushed {branch} to {remote} for review"));
        }
        let monitor = crate::monitor::MonitorConfig::load(a.monitor_config.as_deref(), &repo)?;
        if let Some(gh) = &monitor.github {
            let body = std::fs::read_to_string(Path::new(&field("audit")).with_file_name("pr.md"))
                .unwrap_or_default();
            let title = git(&["log", "-1", "--format=%s", &branch])?;
            let url = crate::monitor::notify::open_pull_request(gh, &title, &branch, &body)?;
            step(&format!("pull request for review: {url}"));
        }
        crate::outln!("review required: {reason}; branch {branch}");
        return Ok(0);
    }
    if !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "{} has uncommitted changes: the flow merges {branch} into its checkout",
            repo.display()
        )));
    }
    let title = git(&["log", "-1", "--format=%s", &branch])?;
    let msg = format!(
        "Merge {branch}: {title}\n\nAuto-merged by codectx flow (task {run}, {task_type}): {reason}."
    );
    git(&[
        "-c",
        "user.name=codectx flow",
        "-c",
        "user.email=flow@codectx.invalid",
        "merge",
        "--quiet",
        "--no-ff",
        "-m",
        &msg,
        &branch,
    ])?;
    let merge = git(&["rev-parse", "HEAD"])?;
    step(&format!("merged {branch} as {}", &merge[..12]));
    let mut record: Vec<String> = [
        "governance",
        "record-merge",
        "--commit",
        &merge,
        "--task-type",
        &task_type,
        "--task-id",
        &run,
        "--auto",
        "--branch",
        &branch,
    ]
    .map(String::from)
    .to_vec();
    if let Some(p) = &a.policy {
        record.extend(["--policy".into(), path_s(p)]);
    }
    let refs: Vec<&str> = record.iter().map(String::as_str).collect();
    let status = codectx(&refs)
        .status()
        .map_err(|e| Error::Unavailable(format!("cannot record the merge: {e}")))?;
    if !status.success() {
        return Err(Error::Unavailable(
            "recording the merge in the ledger failed".into(),
        ));
    }
    if let Some(remote) = &a.remote {
        git(&["push", "--quiet", remote, "HEAD"])?;
        step(&format!("pushed the merge to {remote}"));
    }
    if a.no_monitor {
        crate::outln!(
            "merged {} ({task_type}); not monitored (--no-monitor)",
            &merge[..12]
        );
        return Ok(0);
    }

    // 3. The monitor.
    let mut args: Vec<String> = [
        "monitor",
        "watch",
        "--repo",
        &repo_s,
        "--merge",
        &merge,
        "--task-type",
        &task_type,
        "--task-id",
        &run,
    ]
    .map(String::from)
    .to_vec();
    for (flag, value) in [
        ("--policy", a.policy.as_deref().map(path_s)),
        ("--config", a.monitor_config.as_deref().map(path_s)),
        ("--service", a.service.clone()),
        ("--window", a.window.clone()),
        ("--interval", a.interval.clone()),
        (
            "--task",
            a.task.as_deref().or(a.issue.as_deref()).map(path_s),
        ),
    ] {
        if let Some(v) = value {
            args.extend([flag.into(), v]);
        }
    }
    step("monitor watch");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let status = codectx(&refs)
        .status()
        .map_err(|e| Error::Unavailable(format!("cannot start the monitor: {e}")))?;
    Ok(status.code().unwrap_or(2))
}
