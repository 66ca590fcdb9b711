//! Reads git through the `git` command line: refs and commits, trees and their diffs, blob
//! contents (one `git cat-file --batch` per run), and the state of the working tree.
//!
//! Why the CLI and not a library: it is on every machine that has a repository, it reads
//! every repository format git itself reads (packs, alternates, partial clones), and the
//! handful of plumbing commands used here are stable interfaces.

use crate::error::{Error, Result};
use std::io::{BufRead, BufReader, Read, Write};
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

fn command(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(root).args(args);
    // Hooks and the environment of a calling git (GIT_DIR, GIT_INDEX_FILE) must not
    // redirect our reads to another repository.
    for var in ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX"] {
        cmd.env_remove(var);
    }
    cmd
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = command(root, args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs git and returns its raw stdout; a failure names the command and quotes git's error.
pub fn git_checked(root: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let out = command(root, args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Unavailable(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(Error::FailedPrecondition(format!(
            "`git {}` failed in {}: {}",
            args.join(" "),
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// [`git_checked`]'s stdout as trimmed text.
pub fn git_text(root: &Path, args: &[&str]) -> Result<String> {
    git_checked(root, args).map(|out| String::from_utf8_lossy(&out).trim().to_string())
}

/// Reads `HEAD`, the branch and dirtiness; every failure reads as "not git".
pub fn state(root: &Path) -> GitState {
    let mut state = checkout(root);
    if state.head.is_some() {
        state.dirty = is_dirty(root);
    }
    state
}

/// Reads `HEAD` and the branch, not dirtiness (which stats every tracked file): for callers
/// that only need dirtiness when a particular commit is checked out.
pub fn checkout(root: &Path) -> GitState {
    let head = git(root, &["rev-parse", "--verify", "--quiet", "HEAD"]).filter(|s| !s.is_empty());
    if head.is_none() {
        return GitState::default();
    }
    let branch =
        git(root, &["symbolic-ref", "--quiet", "--short", "HEAD"]).filter(|s| !s.is_empty());
    GitState {
        head,
        branch,
        dirty: false,
    }
}

/// Whether tracked files differ from `HEAD`; never in a bare repository.
pub fn is_dirty(root: &Path) -> bool {
    !is_bare(root)
        && git(root, &["status", "--porcelain", "--untracked-files=no"])
            .is_some_and(|s| !s.is_empty())
}

/// Is `dir` (canonical) the top of a git repository: a work tree's root, or a bare
/// repository's directory? A directory inside a repository (a sub-project, an ignored
/// build directory) is not: it is indexed as the files on disk.
pub fn is_repository_root(dir: &Path) -> bool {
    let same = |p: String| {
        std::path::Path::new(&p)
            .canonicalize()
            .is_ok_and(|p| p == dir)
    };
    match git(dir, &["rev-parse", "--is-bare-repository"]).as_deref() {
        Some("true") => git(dir, &["rev-parse", "--absolute-git-dir"]).is_some_and(same),
        Some("false") => git(dir, &["rev-parse", "--show-toplevel"]).is_some_and(same),
        _ => false,
    }
}

/// Is `root` inside a git repository (work tree or bare) with at least one commit?
pub fn has_commits(root: &Path) -> bool {
    git(root, &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]).is_some_and(|s| !s.is_empty())
}

/// A ref resolved to the commit it names now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRef {
    /// The full name (`refs/heads/main`), or `HEAD` when detached, or the name as given when
    /// it is a commit id.
    pub name: String,
    pub commit: String,
}

/// Resolves a branch, tag, `HEAD` or commit id: `main` -> `refs/heads/main` at its commit.
pub fn resolve(root: &Path, name: &str) -> Result<ResolvedRef> {
    if name.is_empty() || name.starts_with('-') || name.contains(char::is_whitespace) {
        return Err(Error::invalid(format!("{name:?} is not a git ref")));
    }
    let spec = format!("{name}^{{commit}}");
    let commit = git(root, &["rev-parse", "--verify", "--quiet", &spec])
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Error::NotFound(format!(
                "{name:?} does not name a commit in {}",
                root.display()
            ))
        })?;
    let full = git(root, &["rev-parse", "--symbolic-full-name", name])
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| name.to_string());
    Ok(ResolvedRef { name: full, commit })
}

/// Does this commit exist in the repository (it may not after a rebase and a gc)?
pub fn commit_exists(root: &Path, commit: &str) -> bool {
    let spec = format!("{commit}^{{commit}}");
    git(root, &["cat-file", "-e", &spec]).is_some()
}

/// A commit's committer time (seconds since the epoch); `None` when it is not there.
pub fn commit_time(root: &Path, commit: &str) -> Option<i64> {
    if commit.starts_with('-') {
        return None;
    }
    git(root, &["log", "-1", "--format=%ct", commit, "--"])?
        .trim()
        .parse()
        .ok()
}

/// A commit of a repository's history, as the history lane indexes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryCommit {
    pub id: String,
    /// Committer time, seconds since the epoch.
    pub time: i64,
    pub message: String,
    /// The files it changed (new names of renamed files).
    pub paths: Vec<String>,
}

/// The non-merge commits reachable from `commit` and from none of `known` (commits whose
/// history was read before; ones that no longer exist are ignored), newest first, at most
/// `max`.
pub fn history(
    root: &Path,
    commit: &str,
    known: &[String],
    max: usize,
) -> Result<Vec<HistoryCommit>> {
    if max == 0 || commit.starts_with('-') {
        return Ok(Vec::new());
    }
    let max_count = format!("--max-count={max}");
    let mut args: Vec<&str> = vec![
        "log",
        "--no-merges",
        "--no-renames",
        "--format=%x1e%H%x1f%ct%x1f%B%x1f",
        "--name-only",
        &max_count,
        commit,
    ];
    let known: Vec<&String> = known
        .iter()
        .filter(|k| k.as_str() != commit && !k.starts_with('-') && commit_exists(root, k))
        .collect();
    if !known.is_empty() {
        args.push("--not");
        args.extend(known.iter().map(|k| k.as_str()));
    }
    args.push("--");
    let out = git_checked(root, &args)?;
    let text = String::from_utf8_lossy(&out);
    let mut commits = Vec::new();
    for record in text.split('\u{1e}').filter(|r| !r.trim().is_empty()) {
        let mut fields = record.splitn(4, '\u{1f}');
        let (Some(id), Some(time), Some(message), rest) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        commits.push(HistoryCommit {
            id: id.trim().to_string(),
            time: time.trim().parse().unwrap_or(0),
            message: message.trim().to_string(),
            paths: rest
                .unwrap_or_default()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
        });
    }
    Ok(commits)
}

/// The content of `path` at `commit`; `None` when it is not there.
pub fn show_file(root: &Path, commit: &str, path: &str) -> Option<Vec<u8>> {
    let spec = format!("{commit}:{path}");
    let out = command(root, &["cat-file", "blob", &spec])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout)
}

/// The kind of tree entry codectx can index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file (mode 100644 or 100755).
    File,
    /// A symbolic link (mode 120000): its "content" is the target path, never followed.
    Symlink,
    /// A submodule (mode 160000): a commit of another repository.
    Submodule,
}

impl EntryKind {
    fn from_mode(mode: &str) -> Option<EntryKind> {
        match mode {
            "100644" | "100755" | "100664" => Some(EntryKind::File),
            "120000" => Some(EntryKind::Symlink),
            "160000" => Some(EntryKind::Submodule),
            _ => None,
        }
    }
}

/// One file of a commit's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub path: String,
    pub blob: String,
    pub kind: EntryKind,
}

/// Every file of `commit`'s tree, in path order (`git ls-tree -r`).
pub fn ls_tree(root: &Path, commit: &str) -> Result<Vec<TreeEntry>> {
    let out = git_checked(root, &["ls-tree", "-r", "-z", "--full-tree", commit])?;
    let mut entries = Vec::new();
    for record in out.split(|&b| b == 0).filter(|r| !r.is_empty()) {
        // "<mode> SP <type> SP <object> TAB <path>"
        let record = String::from_utf8_lossy(record);
        let Some((head, path)) = record.split_once('\t') else {
            continue;
        };
        let mut parts = head.split(' ');
        let (Some(mode), Some(_), Some(object)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if let Some(kind) = EntryKind::from_mode(mode) {
            entries.push(TreeEntry {
                path: path.to_string(),
                blob: object.to_string(),
                kind,
            });
        }
    }
    Ok(entries)
}

/// One path changed between two commits; `entry` is `None` when the path was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeChange {
    pub path: String,
    pub entry: Option<TreeEntry>,
}

/// The paths that differ between two commits (`git diff-tree -r`, renames as delete + add):
/// the work is in proportion to the change, not to the tree.
pub fn diff_tree(root: &Path, old: &str, new: &str) -> Result<Vec<TreeChange>> {
    let out = git_checked(
        root,
        &["diff-tree", "-r", "-z", "--no-renames", "--raw", old, new],
    )?;
    let mut changes = Vec::new();
    let mut records = out.split(|&b| b == 0);
    // ":<old mode> <new mode> <old object> <new object> <status>" NUL "<path>" NUL
    while let Some(head) = records.next() {
        if head.is_empty() {
            continue;
        }
        let Some(path) = records.next() else { break };
        let head = String::from_utf8_lossy(head);
        let fields: Vec<&str> = head.trim_start_matches(':').split(' ').collect();
        let [_, new_mode, _, new_object, ..] = fields[..] else {
            continue;
        };
        let path = String::from_utf8_lossy(path).into_owned();
        let entry = EntryKind::from_mode(new_mode).map(|kind| TreeEntry {
            path: path.clone(),
            blob: new_object.to_string(),
            kind,
        });
        changes.push(TreeChange { path, entry });
    }
    Ok(changes)
}

/// Reads the content of blobs through one `git cat-file --batch` process.
pub struct BlobReader {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl BlobReader {
    pub fn start(root: &Path) -> Result<BlobReader> {
        let mut child = command(root, &["cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Unavailable(format!("cannot run git cat-file: {e}")))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::with_capacity(1 << 16, child.stdout.take().expect("piped stdout"));
        Ok(BlobReader {
            child,
            stdin,
            stdout,
        })
    }

    /// The content of one blob; `Ok(None)` when the object is missing.
    pub fn read(&mut self, blob: &str) -> Result<Option<Vec<u8>>> {
        let broken = |e: std::io::Error| Error::Unavailable(format!("git cat-file: {e}"));
        writeln!(self.stdin, "{blob}").map_err(broken)?;
        self.stdin.flush().map_err(broken)?;
        let mut header = String::new();
        self.stdout.read_line(&mut header).map_err(broken)?;
        // "<object> <type> <size>\n" or "<object> missing\n"
        let fields: Vec<&str> = header.split_whitespace().collect();
        match fields[..] {
            [_, "missing"] => Ok(None),
            [_, _, size] => {
                let size: usize = size
                    .parse()
                    .map_err(|_| Error::Internal(format!("git cat-file: bad header {header:?}")))?;
                let mut content = vec![0; size];
                self.stdout.read_exact(&mut content).map_err(broken)?;
                let mut newline = [0u8; 1];
                self.stdout.read_exact(&mut newline).map_err(broken)?;
                Ok(Some(content))
            }
            _ => Err(Error::Internal(format!(
                "git cat-file: unexpected header {header:?}"
            ))),
        }
    }
}

impl Drop for BlobReader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The directory git runs hooks from (`core.hooksPath` when set), absolute.
pub fn hooks_dir(root: &Path) -> Result<std::path::PathBuf> {
    let out = git_checked(root, &["rev-parse", "--git-path", "hooks"])?;
    let rel = String::from_utf8_lossy(&out).trim().to_string();
    let path = std::path::PathBuf::from(&rel);
    Ok(if path.is_absolute() {
        path
    } else {
        root.join(path)
    })
}

/// Is `root` a bare repository?
pub fn is_bare(root: &Path) -> bool {
    git(root, &["rev-parse", "--is-bare-repository"]).is_some_and(|s| s == "true")
}

/// The repository's top directory: the work tree root, or the git dir of a bare repository.
pub fn toplevel(root: &Path) -> Option<std::path::PathBuf> {
    if is_bare(root) {
        let dir = git(root, &["rev-parse", "--absolute-git-dir"])?;
        return Some(dir.into());
    }
    git(root, &["rev-parse", "--show-toplevel"]).map(Into::into)
}

/// Checks a URL given to `git clone` for a repository registered by URL: `https://`,
/// `http://`, `ssh://`, `git://`, `file://` or scp-like `user@host:path`. Refused: anything
/// git would read as an option (a leading `-`), transport helpers (`ext::`, which runs
/// commands), whitespace and control characters.
pub fn check_remote_url(url: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::invalid(format!("url {url:?}: {why}")));
    if url.is_empty() {
        return bad("must not be empty");
    }
    if url.starts_with('-') {
        return bad("must not start with '-'");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain whitespace or control characters");
    }
    if url.contains("::") {
        return bad("git transport helpers (`helper::address`) are not accepted");
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        if !["https", "http", "ssh", "git", "file"].contains(&scheme) {
            return bad("the scheme must be https, http, ssh, git or file");
        }
        if rest.is_empty() {
            return bad("names no repository");
        }
        return Ok(());
    }
    // scp-like syntax: `[user@]host:path`, with no slash before the colon.
    match url.split_once(':') {
        Some((host, path)) if !host.is_empty() && !host.contains('/') && !path.is_empty() => Ok(()),
        _ => bad("expected a URL (https://host/owner/name.git) or user@host:path"),
    }
}

/// A git command for a remote: no credential prompts (a server has no terminal), and no
/// transport that runs commands.
fn remote_command(args: &[&std::ffi::OsStr]) -> Command {
    let mut cmd = Command::new("git");
    cmd.args(["-c", "protocol.ext.allow=never"])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("SSH_ASKPASS", "true")
        .stdin(Stdio::null());
    for var in ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX"] {
        cmd.env_remove(var);
    }
    cmd
}

fn run_remote(what: &str, mut cmd: Command) -> Result<()> {
    let out = cmd
        .output()
        .map_err(|e| Error::Unavailable(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(Error::Unavailable(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Clones `url` bare into `dest` (which must not exist), its branches mapped onto its own
/// `refs/heads/*` so that a later [`fetch_origin`] brings every branch up to date. Written
/// into a temporary sibling and renamed, so a failed clone leaves nothing behind.
pub fn clone_bare(url: &str, dest: &Path) -> Result<()> {
    check_remote_url(url)?;
    let parent = dest
        .parent()
        .ok_or_else(|| Error::Internal(format!("{}: no parent", dest.display())))?;
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".clone-")
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    let into = tmp.path().join("repo.git");
    let cmd = remote_command(&[
        "clone".as_ref(),
        "--bare".as_ref(),
        "--quiet".as_ref(),
        "--".as_ref(),
        url.as_ref(),
        into.as_os_str(),
    ]);
    run_remote(&format!("git clone {url}"), cmd)?;
    git_checked(
        &into,
        &[
            "config",
            "remote.origin.fetch",
            "+refs/heads/*:refs/heads/*",
        ],
    )?;
    std::fs::rename(&into, dest).map_err(|e| Error::io(dest, e))
}

/// Fetches every branch of `origin` into a clone made by [`clone_bare`] (deleted branches
/// are pruned).
pub fn fetch_origin(clone: &Path) -> Result<()> {
    let cmd = remote_command(&[
        "-C".as_ref(),
        clone.as_os_str(),
        "fetch".as_ref(),
        "--quiet".as_ref(),
        "--prune".as_ref(),
        "--no-tags".as_ref(),
        "origin".as_ref(),
    ]);
    run_remote(&format!("git fetch origin in {}", clone.display()), cmd)
}
