//! Reads git state through the `git` command line: the commit a tree reflects, and dirtiness.

use std::path::Path;
use std::process::{Command, Stdio};

/// The git facts an index records next to its commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitState {
    /// `HEAD`'s commit id, `None` outside a git repository or before the first commit.
    pub head: Option<String>,
    /// The checked-out branch, `None` when detached or outside git.
    pub branch: Option<String>,
    /// Whether tracked files differ from `HEAD` (uncommitted changes).
    pub dirty: bool,
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Reads `HEAD`, the branch and dirtiness; every failure reads as "not git".
pub fn state(root: &Path) -> GitState {
    let head = git(root, &["rev-parse", "--verify", "--quiet", "HEAD"]).filter(|s| !s.is_empty());
    if head.is_none() {
        return GitState::default();
    }
    let branch =
        git(root, &["symbolic-ref", "--quiet", "--short", "HEAD"]).filter(|s| !s.is_empty());
    let dirty = git(root, &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|s| !s.is_empty());
    GitState {
        head,
        branch,
        dirty,
    }
}
