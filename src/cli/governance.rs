//! `codectx governance`: the outcomes ledger's entries for merges (`record-merge`) and the
//! graduation report (`report`); also how agent runs and gate verdicts become ledger lines.

use crate::error::{Error, Result};
use crate::ledger::{self, Entry, Kind};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum GovernanceCommand {
    /// Per task type: runs, gate pass rate, merges, 24h and 7d rollback rates with 95%
    /// intervals, and whether to graduate it to auto-merge or demote it (never applied:
    /// the TOML change is printed).
    Report {
        /// Only ledger entries this recent (`30d`, `12h`).
        #[arg(long, default_value = "30d")]
        since: String,
        #[arg(long, default_value = "md", value_parser = ["md", "json"])]
        format: String,
        /// The merge policy (default: the shipped policy/default.toml).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// The ledger (default: `<data dir>/ledger.jsonl`).
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
    /// Record a merge in the ledger (what CI runs after it merges a change).
    RecordMerge {
        /// The merge commit (any revision of --repo), or a full commit id without --repo.
        #[arg(long)]
        commit: String,
        #[arg(long)]
        task_type: String,
        #[arg(long)]
        task_id: Option<String>,
        /// Merged by policy without a person.
        #[arg(long, conflicts_with = "review_hours")]
        auto: bool,
        /// Hours from the pull request to its approval (a reviewed merge).
        #[arg(long)]
        review_hours: Option<f64>,
        #[arg(long)]
        branch: Option<String>,
        #[arg(long)]
        repo: Option<PathBuf>,
        #[arg(long)]
        ledger: Option<PathBuf>,
        /// The merge policy the severity is read from (default: the shipped one).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
}

pub fn run(which: GovernanceCommand, config: crate::config::Config) -> Result<()> {
    match which {
        GovernanceCommand::Report {
            since,
            format,
            policy,
            ledger: path,
        } => {
            let since = crate::time::parse_duration(&since, "--since")?;
            let policy = crate::policy::Policy::load(policy.as_deref())?;
            let path = path.unwrap_or_else(|| ledger::path_in(&config.data_dir));
            let read = ledger::read(&path)?;
            for s in &read.skipped {
                eprintln!("warning: {s}");
            }
            let now = crate::time::now_unix();
            let mut report = crate::governance::report(
                &read.entries,
                &policy,
                now - since.as_secs() as i64,
                now,
            );
            report.skipped = read.skipped;
            match format.as_str() {
                "json" => super::print_json(&report),
                _ => {
                    crate::outln!("{}", report.to_markdown());
                    Ok(())
                }
            }
        }
        GovernanceCommand::RecordMerge {
            commit,
            task_type,
            task_id,
            auto,
            review_hours,
            branch,
            repo,
            ledger: path,
            policy,
        } => {
            let commit = match &repo {
                Some(r) => crate::source::git::git_text(
                    r,
                    &[
                        "rev-parse",
                        "--verify",
                        "--quiet",
                        &format!("{commit}^{{commit}}"),
                    ],
                )
                .map_err(|_| {
                    Error::NotFound(format!(
                        "--commit {commit:?}: no such commit in {}",
                        r.display()
                    ))
                })?,
                None if commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit()) => {
                    commit
                }
                None => {
                    return Err(Error::invalid(format!(
                        "--commit {commit:?}: give a commit id, or --repo to resolve a revision"
                    )));
                }
            };
            if review_hours.is_some_and(|h| !(h.is_finite() && h >= 0.0)) {
                return Err(Error::invalid(
                    "--review-hours must be a number of hours >= 0",
                ));
            }
            let policy = crate::policy::Policy::load(policy.as_deref())?;
            let mut entry = Entry::now(Kind::Merge);
            entry.severity = Some(policy.rules(&task_type).severity.name().to_string());
            entry.task_type = Some(task_type);
            entry.task_id = task_id;
            entry.merge_commit = Some(commit);
            entry.auto_merged = Some(auto);
            entry.review_hours = review_hours;
            entry.branch = branch;
            let path = path.unwrap_or_else(|| ledger::path_in(&config.data_dir));
            ledger::append(&path, &entry)?;
            eprintln!("recorded in {}", path.display());
            Ok(())
        }
    }
}

/// Appends `entry` to the data directory's ledger; a failure is a warning, never the
/// end of the run that produced it.
pub fn record(config: &crate::config::Config, entry: &Entry) {
    let path = ledger::path_in(&config.data_dir);
    if let Err(e) = ledger::append(&path, entry) {
        eprintln!("warning: the outcomes ledger {}: {e}", path.display());
    }
}

/// The ledger line of an agent run.
pub fn agent_run_entry(report: &crate::agent::RunReport) -> Entry {
    let mut e = Entry::now(Kind::AgentRun);
    e.task_id = Some(report.run.clone());
    e.task_type = Some(report.classification.task_type.clone());
    e.severity = Some(report.classification.severity.name().to_string());
    e.branch = Some(report.branch.clone());
    e.base_commit = Some(report.base_commit.clone());
    e.head_commit = report.commit.clone();
    e.status = serde_json::to_value(report.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string));
    e.reason = report.error.clone();
    e.tokens = Some(report.usage.input_tokens + report.usage.output_tokens);
    e.cost_usd = Some(report.cost_usd);
    e
}

/// The ledger line of a gate verdict.
pub fn gate_entry(verdict: &crate::gate::Verdict, task_id: Option<String>) -> Entry {
    let name = |s: crate::gate::Status| {
        serde_json::to_value(s)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let mut e = Entry::now(Kind::Gate);
    e.task_id = task_id;
    e.task_type = Some(verdict.classification.task_type.clone());
    e.severity = Some(verdict.classification.severity.name().to_string());
    e.branch = Some(verdict.head.clone());
    e.base_commit = Some(verdict.base_commit.clone());
    e.head_commit = Some(verdict.head_commit.clone());
    e.status = Some(name(verdict.verdict));
    e.gates = verdict
        .gates
        .iter()
        .map(|g| (g.gate.name().to_string(), name(g.status)))
        .collect();
    e.auto_merged = None;
    e.reason = Some(verdict.auto_merge_reason.clone());
    e
}
