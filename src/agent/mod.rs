//! The bundled agent loop, a client of the codectx service: task -> classification ->
//! context over gRPC -> model -> tools (edit, test) -> iterate until the tests pass or the
//! iteration limit -> commit on a branch, a PR description, and a JSONL audit log.
//!
//! Architecture Invariant: the agent reaches the index only through the gRPC service, and
//! every text it sends to a model has been through redaction.

pub mod audit;
pub mod config;
pub mod prompt;
pub mod task;
pub mod tools;

use crate::error::{Error, Result};
use crate::llm::{Block, LlmClient, Message, Role, Usage};
use crate::policy::{Classification, Policy};
use crate::server::client::Client;
use crate::server::grpc::pb;
use audit::Audit;
use config::AgentFile;
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use task::Task;

/// Everything one run needs.
pub struct RunOptions {
    /// The repository (its root); the agent works in a new worktree of it.
    pub repo: PathBuf,
    pub task: Task,
    pub config: AgentFile,
    pub policy: Policy,
    /// The CLI's `--max-iterations`; else the config's, else the policy's for the type.
    pub max_iterations: Option<u32>,
    /// The commit the branch starts from.
    pub base: String,
    /// Runs go to `<out_dir>/<run id>/`: the worktree, `audit.jsonl`, `pr.md`, `result.json`.
    pub out_dir: PathBuf,
    /// The codectx server (`http://host:port`).
    pub server: String,
    pub auth_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The tests pass; the change is committed on the branch.
    Passed,
    /// The iteration limit was reached with the tests failing.
    FailedAtLimit,
    /// The run could not go on (model or service unavailable, git failed, ...).
    Error,
}

impl Status {
    /// The documented exit status: 0 passed, 1 failed at limit, 2 error.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Passed => 0,
            Status::FailedAtLimit => 1,
            Status::Error => 2,
        }
    }
}

/// What a run did, written to `result.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run: String,
    pub status: Status,
    pub error: Option<String>,
    pub classification: Classification,
    /// Test runs (each ends an iteration).
    pub iterations: u32,
    pub max_iterations: u32,
    pub model: String,
    pub model_calls: u32,
    pub usage: Usage,
    pub cost_usd: f64,
    pub branch: String,
    pub base_commit: String,
    pub commit: Option<String>,
    pub files_changed: Vec<String>,
    pub test_command: String,
    pub summary: Option<String>,
    pub worktree: PathBuf,
    pub audit: PathBuf,
    pub pr_description: Option<PathBuf>,
    /// Per iteration: wall time less model and test time (the loop's own cost).
    pub overhead_ms: Vec<f64>,
    /// Secrets redacted from what the model was shown.
    pub redacted: usize,
}

/// A run identifier that sorts by time: `YYYYMMDD-HHMMSS-<pid>`.
pub fn run_id() -> String {
    format!(
        "{}-{}",
        crate::time::compact(crate::time::now_unix()),
        std::process::id()
    )
}

/// Runs git in `dir`, returning its trimmed stdout or an error quoting its stderr.
fn git(dir: &Path, args: &[&str]) -> Result<String> {
    crate::source::git::git_text(dir, args)
}

/// A branch-name-safe slug of the title.
fn slug(title: &str) -> String {
    let mut s: String = title
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let s = s.trim_matches('-');
    let s: String = s.chars().take(40).collect();
    let s = s.trim_end_matches('-');
    if s.is_empty() {
        "task".into()
    } else {
        s.into()
    }
}

/// The state of the conversation and its accounting.
struct Loop<'a> {
    llm: &'a dyn LlmClient,
    options: &'a RunOptions,
    audit: &'a mut Audit,
    ws: tools::Workspace,
    prompt: prompt::Prompt,
    usage: Usage,
    model_calls: u32,
    overhead_ms: Vec<f64>,
}

/// How the conversation ended.
enum End {
    Passed { summary: String },
    FailedAtLimit,
}

/// Runs the loop. Setup errors (no repository, bad base) are `Err`; failures once the run
/// has started (model or service down) end it with `Status::Error` in the report.
pub fn run(options: RunOptions, llm: &dyn LlmClient) -> Result<RunReport> {
    let run = run_id();
    let out = options.out_dir.join(&run);
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let out = out.canonicalize().map_err(|e| Error::io(&out, e))?;
    let mut audit = Audit::create(&out.join("audit.jsonl"), &run)?;
    let task = &options.task;
    let classification = options.policy.classify(
        task.task_type.as_deref(),
        &task.labels,
        &task.classification_text(),
        task.severity,
    );
    let rules = options.policy.rules(&classification.task_type);
    let max_iterations = options
        .max_iterations
        .or(options.config.agent.max_iterations)
        .unwrap_or(rules.max_iterations)
        .max(1);
    let base_commit = git(
        &options.repo,
        &[
            "rev-parse",
            "--verify",
            &format!("{}^{{commit}}", options.base),
        ],
    )?;
    let branch = format!(
        "{}{}-{}",
        options.config.agent.branch_prefix,
        slug(&task.title),
        run
    );
    let worktree = out.join("worktree");
    audit.log(
        "start",
        json!({
            "task": crate::redact::redact(&task.title).text,
            "classification": classification,
            "max_iterations": max_iterations,
            "model": llm.name(),
            "server": options.server,
            "repository": options.repo,
            "base": base_commit,
            "branch": branch,
        }),
    )?;
    let mut report = RunReport {
        run: run.clone(),
        status: Status::Error,
        error: None,
        classification,
        iterations: 0,
        max_iterations,
        model: llm.name(),
        model_calls: 0,
        usage: Usage::default(),
        cost_usd: 0.0,
        branch: branch.clone(),
        base_commit: base_commit.clone(),
        commit: None,
        files_changed: Vec::new(),
        test_command: String::new(),
        summary: None,
        worktree: worktree.clone(),
        audit: audit.path().to_path_buf(),
        pr_description: None,
        overhead_ms: Vec::new(),
        redacted: 0,
    };
    git(
        &options.repo,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            &branch,
            &worktree.to_string_lossy(),
            &base_commit,
        ],
    )?;
    let result = drive(
        &options,
        llm,
        &mut audit,
        &worktree,
        max_iterations,
        &mut report,
    );
    if let Err(e) = &result {
        report.status = Status::Error;
        report.error = Some(crate::redact::redact(&e.to_string()).text);
    }
    report.cost_usd = options.config.llm.cost(report.usage);
    audit.log("finish", serde_json::to_value(&report).unwrap_or_default())?;
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    let path = out.join("result.json");
    std::fs::write(&path, json).map_err(|e| Error::io(&path, e))?;
    Ok(report)
}

/// Everything after the worktree exists.
fn drive(
    options: &RunOptions,
    llm: &dyn LlmClient,
    audit: &mut Audit,
    worktree: &Path,
    max_iterations: u32,
    report: &mut RunReport,
) -> Result<()> {
    let agent = &options.config.agent;
    let counter = crate::tokens::counter(&agent.tokenizer)?;
    let test_command = if agent.test_command.trim().is_empty() {
        crate::sandbox::guess_test_command(worktree)?
    } else {
        agent.test_command.clone()
    };
    report.test_command = test_command.clone();
    let repository = options.repo.display().to_string();
    let started = Instant::now();
    let mut client = Client::connect(&options.server, options.auth_token.as_deref())?;
    let summary = client.reindex(pb::ReindexRequest {
        repository: repository.clone(),
        no_embed: !agent.reindex_embed,
        ..Default::default()
    })?;
    audit.log(
        "reindex",
        json!({"server": client.url(), "commit": summary.commit, "took_ms": started.elapsed().as_millis() as u64}),
    )?;
    let mut ws = tools::Workspace {
        root: worktree.to_path_buf(),
        repository,
        client,
        counter: counter.clone(),
        test_command,
        test_timeout: Duration::from_secs(agent.test_timeout_s.max(1)),
        output_budget: agent.tool_output_budget,
        context_budget: agent.context_budget,
        edited: Default::default(),
        redacted: 0,
    };
    let prompt = prompt::Prompt::build(options, &mut ws, audit)?;
    let mut state = Loop {
        llm,
        options,
        audit,
        ws,
        prompt,
        usage: Usage::default(),
        model_calls: 0,
        overhead_ms: Vec::new(),
    };
    let end = state.converse(max_iterations, report);
    report.model_calls = state.model_calls;
    report.usage = state.usage;
    report.overhead_ms = state.overhead_ms.clone();
    report.redacted = state.ws.redacted + state.prompt.redacted;
    match end? {
        End::FailedAtLimit => {
            report.status = Status::FailedAtLimit;
            Ok(())
        }
        End::Passed { summary } => {
            report.status = Status::Passed;
            report.summary = Some(summary.clone());
            state.commit(&summary, report)?;
            let pr = prompt::pr_description(options, report, &state.prompt);
            let path = worktree.parent().unwrap_or(worktree).join("pr.md");
            std::fs::write(&path, pr).map_err(|e| Error::io(&path, e))?;
            state.audit.log("pr", json!({"path": path}))?;
            report.pr_description = Some(path);
            Ok(())
        }
    }
}

/// Where the loop stands within its iterations.
struct Progress {
    /// Test runs so far (each ends an iteration).
    runs: u32,
    last_passed: bool,
    /// Something changed since the tests last ran.
    dirty: bool,
    /// Model turns in the current iteration.
    turns: u32,
    started: Instant,
    /// Model and test time in the current iteration.
    excluded: Duration,
}

impl Loop<'_> {
    fn converse(&mut self, max_iterations: u32, report: &mut RunReport) -> Result<End> {
        let max_turns = self.options.config.agent.max_turns_per_iteration.max(1);
        let mut p = Progress {
            runs: 0,
            last_passed: false,
            dirty: true,
            turns: 0,
            started: Instant::now(),
            excluded: Duration::ZERO,
        };
        loop {
            if p.runs >= max_iterations && !p.last_passed {
                return Ok(End::FailedAtLimit);
            }
            if p.turns >= max_turns {
                // The model keeps talking without testing: the loop tests for it.
                let iteration = p.runs + 1;
                let r = self.ws.run_tests()?;
                let note = format!(
                    "The loop ran the tests after {} turns without a test run.\n{}",
                    p.turns, r.content
                );
                self.audit.log(
                    "tool",
                    json!({"iteration": iteration, "name": "run_tests", "forced": true, "ok": !r.is_error, "output": note}),
                )?;
                if let Some(o) = &r.tests {
                    self.tested(&mut p, o, iteration, report)?;
                }
                self.prompt.push(Message::user(note));
                continue;
            }
            if let Some(summary) = self.turn(&mut p, max_iterations, report)? {
                return Ok(End::Passed { summary });
            }
        }
    }

    /// One model call and the tools it asks for; `Some(summary)` when the task is done.
    fn turn(
        &mut self,
        p: &mut Progress,
        max_iterations: u32,
        report: &mut RunReport,
    ) -> Result<Option<String>> {
        let llm_config = &self.options.config.llm;
        let iteration = p.runs + 1;
        let request = self
            .prompt
            .request(llm_config, self.audit, iteration, p.turns + 1)?;
        let t = Instant::now();
        let response = self.llm.complete(&request)?;
        let took = t.elapsed();
        p.excluded += took;
        p.turns += 1;
        self.model_calls += 1;
        self.usage.input_tokens += response.usage.input_tokens;
        self.usage.output_tokens += response.usage.output_tokens;
        let mut text = String::new();
        let mut calls: Vec<(String, String, String)> = Vec::new();
        for b in &response.content {
            match b {
                Block::Text { text: t } => text.push_str(t),
                Block::ToolCall {
                    id,
                    name,
                    arguments,
                } => calls.push((id.clone(), name.clone(), arguments.clone())),
                Block::ToolResult { .. } => {}
            }
        }
        self.audit.log(
            "llm",
            json!({
                "iteration": iteration,
                "turn": p.turns,
                "took_ms": took.as_millis() as u64,
                "attempts": response.attempts,
                "stop": response.stop,
                "input_tokens": response.usage.input_tokens,
                "output_tokens": response.usage.output_tokens,
                "cost_usd": llm_config.cost(response.usage),
                "text": crate::redact::redact(&text).text,
                "tool_calls": calls.iter().map(|(_, n, a)| json!({"name": n, "arguments": crate::redact::redact(a).text})).collect::<Vec<_>>(),
            }),
        )?;
        self.prompt.push(Message {
            role: Role::Assistant,
            content: response.content.clone(),
        });
        if calls.is_empty() {
            // Ending the turn without a tool is taken as `finish`.
            calls.push((
                String::new(),
                "finish".into(),
                json!({ "summary": text }).to_string(),
            ));
        }
        let mut blocks = Vec::new();
        let mut finished: Option<String> = None;
        for (id, name, arguments) in &calls {
            let ended = finished.is_some() || (p.runs >= max_iterations && !p.last_passed);
            let iteration = p.runs + 1;
            let t = Instant::now();
            let r = if ended {
                tools::ToolResult::error("not run: the run has ended")
            } else {
                let mut r = self.ws.call(name, arguments);
                if let Some(summary) = r.finish.clone() {
                    if p.last_passed && !p.dirty {
                        finished = Some(summary);
                    } else if p.runs >= max_iterations {
                        r = tools::ToolResult::error("the iteration limit is reached");
                    } else {
                        // Finishing re-runs the tests when something changed since they passed.
                        let tests = self.ws.run_tests()?;
                        if tests.tests.as_ref().is_some_and(|o| o.success()) {
                            finished = Some(summary);
                            r = tests;
                        } else {
                            r = tools::ToolResult {
                                content: format!(
                                    "Not finished: the tests fail.\n{}",
                                    tests.content
                                ),
                                ..tests
                            };
                        }
                    }
                }
                r
            };
            if matches!(name.as_str(), "edit_file" | "apply_patch") && !r.is_error {
                p.dirty = true;
            }
            self.audit.log(
                "tool",
                json!({
                    "iteration": iteration,
                    "name": name,
                    "arguments": crate::redact::redact(arguments).text,
                    "ok": !r.is_error,
                    "took_ms": t.elapsed().as_millis() as u64,
                    "output": r.content,
                }),
            )?;
            if let Some(o) = &r.tests {
                self.tested(p, o, iteration, report)?;
            }
            if !id.is_empty() {
                blocks.push(Block::ToolResult {
                    id: id.clone(),
                    content: r.content.clone(),
                    is_error: r.is_error,
                });
            }
        }
        if !blocks.is_empty() {
            self.prompt.push(Message {
                role: Role::User,
                content: blocks,
            });
        }
        Ok(finished)
    }

    /// Accounts one test run: it ends the iteration.
    fn tested(
        &mut self,
        p: &mut Progress,
        o: &crate::sandbox::Outcome,
        iteration: u32,
        report: &mut RunReport,
    ) -> Result<()> {
        p.excluded += o.took;
        p.runs += 1;
        p.last_passed = o.success();
        p.dirty = false;
        let overhead = p.started.elapsed().saturating_sub(p.excluded);
        self.overhead_ms.push(overhead.as_secs_f64() * 1000.0);
        self.audit.log(
            "tests",
            json!({
                "iteration": iteration,
                "command": self.ws.test_command,
                "passed": p.last_passed,
                "outcome": o.describe(),
                "took_ms": o.took.as_millis() as u64,
            }),
        )?;
        self.audit.log(
            "iteration",
            json!({
                "iteration": iteration,
                "passed": p.last_passed,
                "wall_ms": p.started.elapsed().as_millis() as u64,
                "overhead_ms": overhead.as_secs_f64() * 1000.0,
            }),
        )?;
        report.iterations = p.runs;
        p.started = Instant::now();
        p.excluded = Duration::ZERO;
        p.turns = 0;
        Ok(())
    }

    /// Commits the worktree's changes on the branch.
    fn commit(&mut self, summary: &str, report: &mut RunReport) -> Result<()> {
        let root = self.ws.root.clone();
        // Only what the model changed through its tools: by-products of the test command
        // (Cargo.lock, caches, coverage files) stay out of the commit.
        let edited: Vec<String> = self.ws.edited.iter().cloned().collect();
        if !edited.is_empty() {
            let mut args = vec!["add", "-A", "--"];
            args.extend(edited.iter().map(String::as_str));
            git(&root, &args)?;
        }
        let changed = git(&root, &["diff", "--cached", "--name-only"])?;
        report.files_changed = changed.lines().map(str::to_string).collect();
        if report.files_changed.is_empty() {
            self.audit.log("commit", json!({"skipped": "no changes"}))?;
            return Ok(());
        }
        let task = &self.options.task;
        let message = format!(
            "{}\n\n{}\n\nTask-Type: {}\nCodectx-Run: {}\n",
            crate::redact::redact(&task.title).text,
            summary.trim(),
            report.classification.task_type,
            report.run
        );
        let has_identity = git(&root, &["config", "user.email"]).is_ok();
        let mut args: Vec<&str> = Vec::new();
        if !has_identity {
            args.extend([
                "-c",
                "user.name=codectx agent",
                "-c",
                "user.email=agent@codectx.invalid",
            ]);
        }
        args.extend(["commit", "-q", "--no-verify", "-m", &message]);
        git(&root, &args)?;
        let sha = git(&root, &["rev-parse", "HEAD"])?;
        self.audit.log(
            "commit",
            json!({"commit": sha, "branch": report.branch, "files": report.files_changed}),
        )?;
        report.commit = Some(sha);
        Ok(())
    }
}
