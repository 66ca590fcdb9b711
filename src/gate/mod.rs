//! The gate runner, a client of the service's policy and of the repository under review:
//! per task type, run the required gates on worktrees of base and head, decide a verdict
//! and whether the change may merge without a person.
//!
//! Architecture Invariant: a gate whose tool is missing, crashes or cannot be configured is
//! an error, never a pass; auto-merge needs every required gate passed, a known task type
//! whose policy allows it, and low severity.

pub mod checks;
pub mod osv;
pub mod report;
pub mod review;

use crate::error::{Error, Result};
use crate::policy::{Classification, Gate, Policy, Severity};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// How each gate runs (`.codectx/gates.toml` of the base commit, or `--config`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    pub tests: TestsConfig,
    pub coverage: CoverageConfig,
    pub sast: SastConfig,
    pub deps: DepsConfig,
    pub performance: PerformanceConfig,
    pub limits: LimitsConfig,
    /// Run repository commands inside bubblewrap when it works here.
    pub isolate: Option<bool>,
    /// The optional model review (gate `llm_review`).
    pub llm_review: Option<review::ReviewConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestsConfig {
    /// Empty: guessed (cargo test, pytest, unittest, npm test, go test).
    pub command: String,
    pub timeout_s: u64,
}

impl Default for TestsConfig {
    fn default() -> Self {
        TestsConfig {
            command: String::new(),
            timeout_s: 1800,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoverageConfig {
    /// Produces `report` in the worktree, e.g. `coverage run -m pytest && coverage json`
    /// or `cargo llvm-cov --json --output-path coverage.json`.
    pub command: String,
    /// coverage.py JSON, cargo-llvm-cov JSON, or an lcov `.info` file.
    pub report: String,
    /// Head must reach this line coverage (percent).
    pub min_percent: f64,
    /// Head may lose at most this many percentage points against base.
    pub max_drop: f64,
    pub timeout_s: u64,
}

impl Default for CoverageConfig {
    fn default() -> Self {
        CoverageConfig {
            command: String::new(),
            report: String::new(),
            min_percent: 0.0,
            max_drop: 0.0,
            timeout_s: 1800,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SastConfig {
    /// Local semgrep rule files or directories (relative to the repository, read from
    /// base, or absolute). Registry rules are not used: no network.
    pub rules: Vec<String>,
    pub timeout_s: u64,
}

impl Default for SastConfig {
    fn default() -> Self {
        SastConfig {
            rules: Vec::new(),
            timeout_s: 900,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DepsConfig {
    /// `osv` (built in: lockfiles against a local OSV database), `cargo-audit` or
    /// `pip-audit`.
    pub tool: String,
    /// The local advisory database: a directory of OSV JSON files (`osv`), or
    /// cargo-audit's advisory-db checkout.
    pub advisories: String,
    pub timeout_s: u64,
}

impl Default for DepsConfig {
    fn default() -> Self {
        DepsConfig {
            tool: "osv".into(),
            advisories: String::new(),
            timeout_s: 600,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerformanceConfig {
    /// The benchmark; run on base and head alternately, `runs` times each.
    pub command: String,
    pub runs: u32,
    /// The seed's thresholds, as ratios: head may be 10% slower and use 5% more memory.
    pub max_latency_increase: f64,
    pub max_memory_increase: f64,
    pub timeout_s: u64,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        PerformanceConfig {
            command: String::new(),
            runs: 3,
            max_latency_increase: 0.10,
            max_memory_increase: 0.05,
            timeout_s: 1800,
        }
    }
}

/// Resource limits of every repository command.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub cpu_s: Option<u64>,
    pub memory_mb: Option<u64>,
    pub processes: Option<u64>,
    pub file_size_mb: Option<u64>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            cpu_s: Some(3600),
            memory_mb: None,
            processes: Some(4096),
            file_size_mb: Some(4096),
        }
    }
}

impl GateConfig {
    pub fn parse(text: &str, origin: &str) -> Result<GateConfig> {
        toml::from_str(text)
            .map_err(|e| Error::invalid(format!("gate config {origin}: {}", e.to_string().trim())))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Error,
}

/// One finding (a SAST match, a vulnerable dependency, a failed gate) for SARIF.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub tool: String,
    pub rule_id: String,
    /// `error`, `warning` or `note`.
    pub level: String,
    pub message: String,
    pub path: Option<String>,
    pub start_line: Option<u32>,
    pub end_line: Option<u32>,
    /// Stable across line shifts: rule, path and the matched line's text.
    pub fingerprint: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GateResult {
    pub gate: Gate,
    pub status: Status,
    pub details: String,
    pub duration_ms: u64,
    pub metrics: Value,
    pub findings: Vec<Finding>,
}

/// The whole answer.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub repository: PathBuf,
    pub base: String,
    pub head: String,
    pub base_commit: String,
    pub head_commit: String,
    pub classification: Classification,
    pub required_gates: Vec<Gate>,
    pub gates: Vec<GateResult>,
    pub failed_gates: Vec<Gate>,
    pub errored_gates: Vec<Gate>,
    /// `pass`, `fail` or `error`.
    pub verdict: Status,
    pub auto_merge: bool,
    pub auto_merge_reason: String,
    pub rollback_triggers: Vec<String>,
    pub review_timeout: String,
    pub notify: Vec<String>,
    /// `bubblewrap` or `rlimits` (bubblewrap is not usable here).
    pub isolation: String,
    pub duration_ms: u64,
}

impl Verdict {
    /// 0 pass, 1 fail, 2 error.
    pub fn exit_code(&self) -> i32 {
        match self.verdict {
            Status::Pass => 0,
            Status::Fail => 1,
            Status::Error => 2,
        }
    }
}

pub struct GateRequest {
    pub repo: PathBuf,
    pub base: String,
    pub head: String,
    pub task_type: String,
    pub policy: Policy,
    /// Overrides the base commit's `.codectx/gates.toml`.
    pub config: Option<GateConfig>,
    /// Gate name -> who approved (review gates).
    pub approvals: BTreeMap<String, String>,
    /// For `llm_review`: a running codectx server, or the engine config to serve one on a
    /// loopback port for this run.
    pub server: Option<String>,
    pub engine: Option<crate::config::Config>,
}

/// Detached worktrees of base and head, removed when dropped.
struct Worktrees {
    repo: PathBuf,
    scratch: tempfile::TempDir,
    base: PathBuf,
    head: PathBuf,
}

impl Drop for Worktrees {
    fn drop(&mut self) {
        for wt in [&self.base, &self.head] {
            let _ = Command::new("git")
                .arg("-C")
                .arg(&self.repo)
                .args(["worktree", "remove", "--force"])
                .arg(wt)
                .output();
        }
        let _ = Command::new("git")
            .arg("-C")
            .arg(&self.repo)
            .args(["worktree", "prune"])
            .output();
    }
}

pub(crate) fn git(dir: &Path, args: &[&str]) -> Result<String> {
    crate::source::git::git_text(dir, args)
}

/// Runs the gates `request.task_type` requires and decides.
pub fn run(request: &GateRequest) -> Result<Verdict> {
    let started = Instant::now();
    let repo = &request.repo;
    let commit = |r: &str| git(repo, &["rev-parse", "--verify", &format!("{r}^{{commit}}")]);
    let base_commit = commit(&request.base)?;
    let head_commit = commit(&request.head)?;
    let classification = request
        .policy
        .classify(Some(&request.task_type), &[], "", None);
    let rules = request.policy.rules(&classification.task_type);

    let scratch = tempfile::Builder::new()
        .prefix("codectx-gate-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let scratch_path = scratch
        .path()
        .canonicalize()
        .map_err(|e| Error::io(scratch.path(), e))?;
    let trees = Worktrees {
        repo: repo.clone(),
        base: scratch_path.join("base"),
        head: scratch_path.join("head"),
        scratch,
    };
    for (dir, c) in [(&trees.base, &base_commit), (&trees.head, &head_commit)] {
        git(
            repo,
            &[
                "worktree",
                "add",
                "-q",
                "--detach",
                &dir.to_string_lossy(),
                c,
            ],
        )?;
    }
    // The config comes from base: a change cannot loosen the gates that judge it.
    let config = match &request.config {
        Some(c) => c.clone(),
        None => {
            let path = trees.base.join(".codectx/gates.toml");
            match std::fs::read_to_string(&path) {
                Ok(text) => GateConfig::parse(&text, ".codectx/gates.toml (base)")?,
                Err(_) => GateConfig::default(),
            }
        }
    };
    let env = checks::Env {
        base: trees.base.clone(),
        head: trees.head.clone(),
        scratch: trees.scratch.path().join("tool"),
        config,
        approvals: request.approvals.clone(),
        repo: repo.clone(),
        base_commit: base_commit.clone(),
        head_commit: head_commit.clone(),
        server: request.server.clone(),
        engine: request.engine.clone(),
    };
    std::fs::create_dir_all(&env.scratch).map_err(|e| Error::io(&env.scratch, e))?;
    // Static gates first (they read the tree as committed), then the ones that run the
    // project's commands, then reviews: fast feedback, and no build output in what SAST
    // and the dependency audit read.
    let mut order = rules.required_gates.clone();
    order.sort_by_key(|g| match g {
        Gate::SastClean | Gate::DepsSafe => 0,
        Gate::TestsPass => 1,
        Gate::CoverageMaintained | Gate::PerformanceStable => 2,
        _ => 3,
    });
    order.dedup();
    let mut gates = Vec::new();
    for gate in &order {
        let t = Instant::now();
        let mut result = checks::run_gate(*gate, &env);
        result.duration_ms = t.elapsed().as_millis() as u64;
        tracing::info!(gate = gate.name(), status = ?result.status, "{}", result.details);
        gates.push(result);
    }
    drop(trees);
    let failed: Vec<Gate> = gates
        .iter()
        .filter(|g| g.status == Status::Fail)
        .map(|g| g.gate)
        .collect();
    let errored: Vec<Gate> = gates
        .iter()
        .filter(|g| g.status == Status::Error)
        .map(|g| g.gate)
        .collect();
    let verdict = if !errored.is_empty() {
        Status::Error
    } else if !failed.is_empty() {
        Status::Fail
    } else {
        Status::Pass
    };
    let (auto_merge, reason) = if !classification.known {
        (
            false,
            format!(
                "task type {:?} is not in the policy: HIGH severity, manual review",
                request.task_type
            ),
        )
    } else if verdict != Status::Pass {
        (false, "not every required gate passed".to_string())
    } else if !rules.auto_merge {
        (
            false,
            format!(
                "the policy does not auto-merge {}",
                classification.task_type
            ),
        )
    } else if classification.severity != Severity::Low {
        (
            false,
            format!("severity is {}", classification.severity.name()),
        )
    } else {
        (
            true,
            "every required gate passed; the type allows auto-merge at low severity".to_string(),
        )
    };
    Ok(Verdict {
        repository: repo.clone(),
        base: request.base.clone(),
        head: request.head.clone(),
        base_commit,
        head_commit,
        classification,
        required_gates: rules.required_gates.clone(),
        gates,
        failed_gates: failed,
        errored_gates: errored,
        verdict,
        auto_merge,
        auto_merge_reason: reason,
        rollback_triggers: rules.rollback_triggers.clone(),
        review_timeout: rules.review_timeout.clone(),
        notify: rules.notify.clone(),
        isolation: if env.config.isolate.unwrap_or(true) && crate::sandbox::bwrap_works() {
            "bubblewrap".into()
        } else {
            "rlimits".into()
        },
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
