//! Planning a reindex: compare what a ref's manifest holds with the commit (or the files on
//! disk) it should now reflect, and list the few files that must be read and chunked.
//!
//! A git ref is diffed commit to commit (`git diff-tree`, cost in proportion to the change);
//! when the old commit is gone (a force push, a rebase and a gc) the new tree is compared with
//! the manifest by blob id instead, which is still exact. Outside git, files are compared by
//! size and modification time, then by content hash.

use crate::config::WalkConfig;
use crate::error::Result;
use crate::index::manifest::{FileVersion, Manifest, ManifestEntry, RefSource, RefState};
use crate::source::walk::{IGNORE_FILE, walk};
use crate::source::{Skipped, classify, git};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// How the change set was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanKind {
    /// The ref was not indexed: every file is new to it.
    Full,
    /// `git diff-tree` from the indexed commit.
    Diff,
    /// The indexed commit is gone: the new tree compared with the manifest by blob.
    Compare,
    /// Files on disk compared by stamp and content hash.
    Worktree,
    /// The ref already reflects the commit: nothing to do.
    UpToDate,
}

/// What changed for the ref, by path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChangeCounts {
    pub added: u64,
    pub modified: u64,
    pub deleted: u64,
    /// Paths deleted whose content reappeared under a new path (counted once, here).
    pub renamed: u64,
}

/// A file whose version has no documents yet: it must be read and chunked.
#[derive(Debug, Clone)]
pub struct Work {
    pub path: String,
    /// The git blob to read; `None` outside git (read `abs_path`, hash it).
    pub blob: Option<String>,
    pub abs_path: Option<PathBuf>,
    pub stamp: Option<(u64, u64)>,
}

/// What a run must do to bring one ref up to date.
#[derive(Debug)]
pub struct Plan {
    pub ref_name: String,
    pub source: RefSource,
    pub commit: Option<String>,
    pub previous_commit: Option<String>,
    pub kind: PlanKind,
    /// The new manifest, complete except for the files in `work`.
    pub manifest: Manifest,
    pub work: Vec<Work>,
    pub changes: ChangeCounts,
    /// Files left out before reading (names, ignore rules on disk, walk errors).
    pub skipped: Vec<Skipped>,
    /// The ref is checked out and the work tree has uncommitted changes it does not hold.
    pub dirty: bool,
}

/// Every file version the index has documents or a verdict for, with its entry.
pub type Known = HashMap<FileVersion, ManifestEntry>;

/// Plans the reindex of a git ref at `commit`.
pub fn plan_git(
    root: &Path,
    ref_name: &str,
    commit: &str,
    old: Option<(&RefState, &Manifest)>,
    known: &Known,
    walk_config: &WalkConfig,
    force: bool,
) -> Result<Plan> {
    let old_git = old.filter(|(s, _)| s.source == RefSource::Git);
    let previous_commit = old_git.and_then(|(s, _)| s.commit.clone());
    let mut plan = Plan {
        ref_name: ref_name.to_string(),
        source: RefSource::Git,
        commit: Some(commit.to_string()),
        previous_commit: previous_commit.clone(),
        kind: PlanKind::Full,
        manifest: Manifest::new(),
        work: Vec::new(),
        changes: ChangeCounts::default(),
        skipped: Vec::new(),
        dirty: false,
    };
    if !force && previous_commit.as_deref() == Some(commit) {
        plan.kind = PlanKind::UpToDate;
        plan.manifest = old_git.map(|(_, m)| m.clone()).unwrap_or_default();
        return Ok(plan);
    }
    let rules = IgnoreRules::of_commit(root, commit);
    let empty = Manifest::new();
    let old_manifest = old_git.map_or(&empty, |(_, m)| m);
    // The candidate entries of the new tree: from a diff when the old commit is there and the
    // ignore rules did not change, else the whole tree.
    let diff = match (&previous_commit, force) {
        (Some(prev), false) if git::commit_exists(root, prev) => {
            let changes = git::diff_tree(root, prev, commit)?;
            let rules_changed = changes
                .iter()
                .any(|c| c.path == IGNORE_FILE || c.path == ".ignore");
            (!rules_changed).then_some(changes)
        }
        _ => None,
    };
    let mut manifest;
    let touched: Vec<git::TreeEntry>;
    match diff {
        Some(changes) => {
            plan.kind = PlanKind::Diff;
            manifest = old_manifest.clone();
            let mut entries = Vec::new();
            for change in changes {
                manifest.remove(&change.path);
                if let Some(entry) = change.entry {
                    entries.push(entry);
                }
            }
            touched = entries;
        }
        None => {
            plan.kind = if old_git.is_some() {
                PlanKind::Compare
            } else {
                PlanKind::Full
            };
            manifest = Manifest::new();
            touched = git::ls_tree(root, commit)?;
        }
    }
    for entry in touched {
        if entry.kind != git::EntryKind::File || rules.ignores(&entry.path) {
            continue;
        }
        let version = crate::index::manifest::file_version(&entry.path, &entry.blob);
        if let Some(found) = known.get(&version) {
            let mut reused = found.clone();
            reused.stamp = None;
            manifest.insert(entry.path, reused);
            continue;
        }
        let name = entry.path.rsplit('/').next().unwrap_or(&entry.path);
        // Names alone decide secret files and lockfiles: never read them.
        if let Err((reason, detail)) = classify::check_name(name, 0, walk_config) {
            plan.skipped.push(Skipped {
                path: entry.path.clone(),
                reason,
                detail: detail.clone(),
            });
            manifest.insert(
                entry.path,
                ManifestEntry {
                    blob: entry.blob,
                    chunks: 0,
                    skipped: Some((reason, detail)),
                    stamp: None,
                },
            );
            continue;
        }
        plan.work.push(Work {
            path: entry.path,
            blob: Some(entry.blob),
            abs_path: None,
            stamp: None,
        });
    }
    plan.changes = count_changes(old_manifest, &manifest, &plan.work);
    plan.manifest = manifest;
    Ok(plan)
}

/// Plans the reindex of the files on disk under `root` (the `worktree` ref).
pub fn plan_worktree(
    root: &Path,
    ref_name: &str,
    old: Option<(&RefState, &Manifest)>,
    walk_config: &WalkConfig,
    exclude: &[PathBuf],
) -> Result<Plan> {
    let out = walk(root, walk_config, exclude)?;
    let empty = Manifest::new();
    let old_manifest = old
        .filter(|(s, _)| s.source == RefSource::Worktree)
        .map_or(&empty, |(_, m)| m);
    let mut manifest = Manifest::new();
    let mut work = Vec::new();
    for file in out.files {
        let stamp = std::fs::metadata(&file.abs_path).ok().map(|m| {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as u64);
            (m.len(), mtime)
        });
        match old_manifest.get(&file.rel_path) {
            // Same size and mtime: the content is taken to be the same, as git's index does.
            Some(entry) if stamp.is_some() && entry.stamp == stamp => {
                manifest.insert(file.rel_path, entry.clone());
            }
            _ => work.push(Work {
                path: file.rel_path,
                blob: None,
                abs_path: Some(file.abs_path),
                stamp,
            }),
        }
    }
    let changes = count_changes(old_manifest, &manifest, &work);
    Ok(Plan {
        ref_name: ref_name.to_string(),
        source: RefSource::Worktree,
        commit: None,
        previous_commit: None,
        kind: if old.is_some() {
            PlanKind::Worktree
        } else {
            PlanKind::Full
        },
        manifest,
        work,
        changes,
        skipped: out.skipped,
        dirty: false,
    })
}

/// Counts added, modified, deleted and renamed paths. Files still in `work` have no blob yet
/// outside git; they count as modified when their path was there, added otherwise.
fn count_changes(old: &Manifest, new: &Manifest, work: &[Work]) -> ChangeCounts {
    let mut counts = ChangeCounts::default();
    let mut new_blobs: HashSet<String> = HashSet::new();
    let mut added_paths = Vec::new();
    let mut visit = |path: &str, blob: Option<&str>| match old.get(path) {
        Some(prev) if blob == Some(prev.blob.as_str()) => {}
        Some(_) => counts.modified += 1,
        None => {
            added_paths.push(path.to_string());
            if let Some(b) = blob {
                new_blobs.insert(b.to_string());
            }
        }
    };
    for (path, entry) in new {
        visit(path, Some(&entry.blob));
    }
    for w in work {
        visit(&w.path, w.blob.as_deref());
    }
    let work_paths: HashSet<&str> = work.iter().map(|w| w.path.as_str()).collect();
    let in_new = |p: &str| new.contains_key(p) || work_paths.contains(p);
    let mut renamed = 0;
    for (path, entry) in old {
        if in_new(path) {
            continue;
        }
        if new_blobs.remove(&entry.blob) {
            renamed += 1;
        } else {
            counts.deleted += 1;
        }
    }
    counts.renamed = renamed;
    counts.added = added_paths.len() as u64 - renamed;
    counts
}

/// The root `.codectxignore` and `.ignore` of a commit, applied to its paths (git already
/// keeps `.gitignore`d files out of commits).
struct IgnoreRules(Option<ignore::gitignore::Gitignore>);

impl IgnoreRules {
    fn of_commit(root: &Path, commit: &str) -> IgnoreRules {
        let mut builder = ignore::gitignore::GitignoreBuilder::new("");
        let mut any = false;
        for file in [IGNORE_FILE, ".ignore"] {
            let Some(text) = git::show_file(root, commit, file) else {
                continue;
            };
            for line in String::from_utf8_lossy(&text).lines() {
                if builder.add_line(None, line).is_ok() {
                    any = true;
                }
            }
        }
        IgnoreRules(any.then(|| builder.build().ok()).flatten())
    }

    fn ignores(&self, path: &str) -> bool {
        self.0
            .as_ref()
            .is_some_and(|g| g.matched_path_or_any_parents(path, false).is_ignore())
    }
}
