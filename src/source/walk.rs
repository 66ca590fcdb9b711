//! Walks a repository with the `ignore` crate: honours ignore files, stays inside the root,
//! and reports every path it leaves out with a reason.

use super::classify::check_name;
use super::{SkipReason, Skipped};
use crate::config::WalkConfig;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Our own ignore file, read like `.gitignore` at every level.
pub const IGNORE_FILE: &str = ".codectxignore";

/// A file the walker found that passed the name and size checks.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub abs_path: PathBuf,
    /// Repository-relative, `/`-separated.
    pub rel_path: String,
    pub size: u64,
}

/// What a walk found.
#[derive(Debug, Default)]
pub struct WalkOutput {
    pub files: Vec<Candidate>,
    pub skipped: Vec<Skipped>,
}

/// Lists the indexable files under `root`, sorted by path.
///
/// `exclude` holds absolute paths never to enter (e.g. a data directory inside the root).
pub fn walk(root: &Path, config: &WalkConfig, exclude: &[PathBuf]) -> Result<WalkOutput> {
    let root = root.canonicalize().map_err(|e| Error::io(root, e))?;
    if !root.is_dir() {
        return Err(Error::invalid(format!(
            "{}: not a directory",
            root.display()
        )));
    }
    let escapes: Arc<Mutex<Vec<Skipped>>> = Arc::default();
    let mut builder = ignore::WalkBuilder::new(&root);
    builder
        .hidden(false)
        .parents(true)
        .ignore(true)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .require_git(false)
        .follow_links(config.follow_links)
        .add_custom_ignore_filename(IGNORE_FILE)
        .sort_by_file_path(|a, b| a.cmp(b));
    {
        let root = root.clone();
        let escapes = Arc::clone(&escapes);
        let exclude: Vec<PathBuf> = exclude
            .iter()
            .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
            .collect();
        builder.filter_entry(move |entry| {
            if entry.depth() == 0 {
                return true;
            }
            if entry.file_name() == ".git" {
                return false;
            }
            if exclude.iter().any(|x| x == entry.path()) {
                return false;
            }
            if entry.path_is_symlink() {
                let inside = entry
                    .path()
                    .canonicalize()
                    .map(|target| target.starts_with(&root));
                let detail = match inside {
                    Ok(true) => return true,
                    Ok(false) => "resolves outside the repository root".to_string(),
                    Err(e) => format!("cannot be resolved: {e}"),
                };
                let rel = relative(&root, entry.path());
                escapes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Skipped {
                        path: rel,
                        reason: SkipReason::SymlinkEscape,
                        detail,
                    });
                return false;
            }
            true
        });
    }

    let mut out = WalkOutput::default();
    for item in builder.build() {
        let entry = match item {
            Ok(entry) => entry,
            Err(err) => {
                out.skipped.push(walk_error(&root, &err));
                continue;
            }
        };
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let rel_path = relative(&root, entry.path());
        let size = match entry.metadata() {
            Ok(m) => m.len(),
            Err(e) => {
                out.skipped.push(Skipped {
                    path: rel_path,
                    reason: SkipReason::Unreadable,
                    detail: e.to_string(),
                });
                continue;
            }
        };
        let name = entry.file_name().to_string_lossy();
        if let Err((reason, detail)) = check_name(&name, size, config) {
            out.skipped.push(Skipped {
                path: rel_path,
                reason,
                detail,
            });
            continue;
        }
        out.files.push(Candidate {
            abs_path: entry.into_path(),
            rel_path,
            size,
        });
    }
    out.skipped
        .extend(escapes.lock().unwrap_or_else(|p| p.into_inner()).drain(..));
    out.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// `path` relative to `root`, with `/` separators, lossy for non-UTF-8 names.
pub fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

fn walk_error(root: &Path, err: &ignore::Error) -> Skipped {
    fn find_loop(err: &ignore::Error) -> Option<(&Path, &Path)> {
        match err {
            ignore::Error::Loop { ancestor, child } => Some((ancestor, child)),
            ignore::Error::WithPath { err, .. }
            | ignore::Error::WithDepth { err, .. }
            | ignore::Error::WithLineNumber { err, .. } => find_loop(err),
            _ => None,
        }
    }
    fn find_path(err: &ignore::Error) -> Option<&Path> {
        match err {
            ignore::Error::WithPath { path, .. } => Some(path),
            ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
                find_path(err)
            }
            _ => None,
        }
    }
    if let Some((ancestor, child)) = find_loop(err) {
        return Skipped {
            path: relative(root, child),
            reason: SkipReason::SymlinkLoop,
            detail: format!("links back to {}", relative(root, ancestor)),
        };
    }
    Skipped {
        path: find_path(err)
            .map(|p| relative(root, p))
            .unwrap_or_else(|| "<walk>".into()),
        reason: SkipReason::Unreadable,
        detail: err.to_string(),
    }
}
