//! The revert of a merge that breached: a branch `codectx/revert/<short-sha>` made in a
//! temporary worktree (the user's checkout is never touched), `revert.md` saying why, and
//! the push of that branch.

use super::WatchRequest;
use super::condition::{Judgement, number};
use crate::error::{Error, Result};
use crate::source::git::git_text;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Why the merge is reverted.
#[derive(Debug, Clone)]
pub struct Why {
    pub condition: String,
    pub origin: String,
    pub comparison: String,
    pub judgement: Judgement,
    pub query: String,
    pub window: String,
    pub merged_at: String,
    pub service: String,
    pub task_type: String,
}

/// What the revert made.
#[derive(Debug, Clone, Serialize)]
pub struct Reverted {
    pub branch: String,
    pub commit: String,
    /// `revert.md`.
    pub report: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<String>,
    /// The text of `revert.md` (the pull request's body).
    #[serde(skip)]
    pub markdown: String,
}

/// Reverts `merge` on a new branch from `request.base` and writes `revert.md`.
pub fn revert(request: &WatchRequest, merge: &str, why: &Why) -> Result<Reverted> {
    let repo = &request.repo;
    let short = &merge[..merge.len().min(12)];
    let branch = format!("codectx/revert/{short}");
    if git_text(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ],
    )
    .is_ok()
    {
        return Err(Error::FailedPrecondition(format!(
            "branch {branch} already exists (an earlier revert of {short}?): delete it to revert again"
        )));
    }
    let base = git_text(
        repo,
        &[
            "rev-parse",
            "--verify",
            &format!("{}^{{commit}}", request.base),
        ],
    )
    .map_err(|_| Error::NotFound(format!("--base {:?}: no such commit", request.base)))?;
    if git_text(repo, &["merge-base", "--is-ancestor", merge, &base]).is_err() {
        return Err(Error::FailedPrecondition(format!(
            "merge {short} is not in the history of {} ({}): nothing to revert there",
            request.base,
            &base[..12.min(base.len())]
        )));
    }
    let parents = git_text(repo, &["rev-list", "--parents", "-n", "1", merge])?
        .split_whitespace()
        .count()
        .saturating_sub(1);
    let subject = git_text(repo, &["show", "-s", "--format=%s", merge])?;
    let pr_text = match &request.pr_text {
        Some(t) => t.clone(),
        None => git_text(repo, &["show", "-s", "--format=%B", merge])?,
    };
    std::fs::create_dir_all(&request.out).map_err(|e| Error::io(&request.out, e))?;
    let markdown = report(
        why,
        merge,
        &subject,
        &branch,
        request.task.as_ref(),
        &pr_text,
    );
    let report_path = request.out.join("revert.md");
    std::fs::write(&report_path, &markdown).map_err(|e| Error::io(&report_path, e))?;

    let scratch = tempfile::Builder::new()
        .prefix("codectx-revert-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let worktree = scratch.path().join("wt");
    let wt = worktree.to_string_lossy().to_string();
    git_text(
        repo,
        &["worktree", "add", "--quiet", "-b", &branch, &wt, &base],
    )?;
    let result = (|| -> Result<String> {
        let mut args = vec!["revert", "--no-commit"];
        if parents > 1 {
            args.extend(["-m", "1"]);
        }
        args.push(merge);
        git_text(&worktree, &args).map_err(|e| {
            Error::FailedPrecondition(format!(
                "git revert of {short} onto {} does not apply cleanly, revert by hand: {e}",
                request.base
            ))
        })?;
        if git_text(&worktree, &["diff", "--cached", "--quiet"]).is_ok() {
            return Err(Error::FailedPrecondition(format!(
                "reverting {short} changes nothing on {} (already reverted, or an empty merge): nothing to roll back",
                request.base
            )));
        }
        let message = format!(
            "Revert \"{subject}\"\n\nThis reverts commit {merge}.\n\ncodectx monitor: {} ({}) breached: {} = {} {}, {} after the merge at {}.\nSee revert.md for the details.\n",
            why.condition,
            why.origin,
            why.judgement.metric,
            number(why.judgement.value),
            why.comparison,
            why.window,
            why.merged_at
        );
        let msg_file = scratch.path().join("message");
        std::fs::write(&msg_file, message).map_err(|e| Error::io(&msg_file, e))?;
        let msg = msg_file.to_string_lossy().to_string();
        let has_identity = git_text(&worktree, &["config", "user.email"]).is_ok();
        let mut commit = Vec::new();
        if !has_identity {
            commit.extend([
                "-c",
                "user.name=codectx monitor",
                "-c",
                "user.email=monitor@codectx.invalid",
            ]);
        }
        commit.extend(["commit", "--quiet", "--no-verify", "-F", &msg]);
        git_text(&worktree, &commit)?;
        git_text(&worktree, &["rev-parse", "HEAD"])
    })();
    // The worktree goes whatever happened; the branch stays only when the revert committed.
    let _ = git_text(repo, &["worktree", "remove", "--force", &wt]);
    let commit = match result {
        Ok(c) => c,
        Err(e) => {
            let _ = git_text(repo, &["branch", "-D", &branch]);
            return Err(e);
        }
    };
    Ok(Reverted {
        branch,
        commit,
        report: report_path,
        pushed_to: None,
        pull_request: None,
        markdown,
    })
}

/// Pushes the revert branch to `remote`.
pub fn push(repo: &Path, remote: &str, branch: &str) -> Result<()> {
    git_text(
        repo,
        &[
            "push",
            "--quiet",
            remote,
            &format!("refs/heads/{branch}:refs/heads/{branch}"),
        ],
    )
    .map(|_| ())
}

/// `revert.md`: which metric, its baseline, value and threshold, the window, and the
/// original task and pull request text (redacted: it becomes a public PR body).
fn report(
    why: &Why,
    merge: &str,
    subject: &str,
    branch: &str,
    task: Option<&crate::agent::task::Task>,
    pr_text: &str,
) -> String {
    let j = &why.judgement;
    let mut out = format!(
        "# Revert of {} ({}): {} breached\n\n\
         codectx monitor reverted merge `{merge}` (\"{}\") of service `{}`, task type `{}`, on branch `{branch}`.\n\n\
         | | |\n|---|---|\n\
         | Condition | `{}` ({}) |\n\
         | Metric | `{}` |\n\
         | Value | {} |\n\
         | Baseline (hour before the merge) | {} |\n\
         | Threshold | {} ({}) |\n\
         | Window | {} after the merge at {} |\n\
         | Query | `{}` |\n",
        &merge[..merge.len().min(12)],
        why.task_type,
        why.condition,
        subject.replace('|', "\\|"),
        why.service,
        why.task_type,
        why.condition,
        why.origin,
        j.metric,
        number(j.value),
        j.baseline.map_or("none".to_string(), number),
        number(j.threshold),
        why.comparison,
        why.window,
        why.merged_at,
        why.query.replace('|', "\\|"),
    );
    if let Some(t) = task {
        out.push_str("\n## The original task\n\n");
        out.push_str(&t.render());
    }
    out.push_str("\n## The merged pull request\n\n");
    out.push_str(pr_text.trim());
    out.push('\n');
    crate::redact::redact(&out).text
}
