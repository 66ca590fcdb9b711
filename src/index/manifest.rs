//! What an index holds per ref: the manifest (path -> blob -> chunk count), the state stored
//! in every commit (which refs, at which commits), and the file-version key that lets refs
//! share the documents and vectors of the files they have in common.

use crate::source::{SkipReason, Skipped};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A file at one content: `(path, blob)` hashed to 64 bits. Chunk documents carry it, so a
/// file version indexed for one ref serves every ref that has it.
pub type FileVersion = u64;

pub fn file_version(path: &str, blob: &str) -> FileVersion {
    let mut h = blake3::Hasher::new();
    h.update(path.as_bytes());
    h.update(&[0]);
    h.update(blob.as_bytes());
    let bytes = h.finalize();
    u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// One file of a ref.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// The git blob id, or the BLAKE3 of the content outside git.
    #[serde(rename = "b")]
    pub blob: String,
    /// Chunk documents of this file version (0 when skipped or empty).
    #[serde(rename = "c", default)]
    pub chunks: u32,
    /// Why the file is not indexed, if it is not.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<(SkipReason, String)>,
    /// Outside git: `(size, mtime in ns)` when hashed, to skip rereading unchanged files.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<(u64, u64)>,
}

impl ManifestEntry {
    pub fn version(&self, path: &str) -> FileVersion {
        file_version(path, &self.blob)
    }

    pub fn skip(&self, path: &str) -> Option<Skipped> {
        self.skipped.as_ref().map(|(reason, detail)| Skipped {
            path: path.to_string(),
            reason: *reason,
            detail: detail.clone(),
        })
    }
}

/// Every file of one ref, by path.
pub type Manifest = BTreeMap<String, ManifestEntry>;

/// Where a ref's files come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefSource {
    /// A commit, read from git's objects (uncommitted changes are not in it).
    Git,
    /// The files on disk, walked with the ignore rules (outside git, or `--worktree`).
    Worktree,
}

/// The name of the ref that holds a directory's files on disk.
pub const WORKTREE_REF: &str = "worktree";

/// One indexed ref.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefState {
    /// `refs/heads/main`, `HEAD` (detached), a commit id, or `worktree`.
    pub name: String,
    pub source: RefSource,
    /// The commit the ref's documents reflect (`None` for a worktree).
    pub commit: Option<String>,
    /// Seconds since the Unix epoch.
    pub indexed_at: u64,
    /// Files with chunks, chunks, files skipped.
    pub files: u64,
    pub chunks: u64,
    pub skipped: u64,
    /// BLAKE3 of the stored manifest: a cache key for readers.
    pub manifest_hash: String,
    /// The ref was checked out with uncommitted changes (not indexed) when it was indexed.
    #[serde(default)]
    pub dirty: bool,
    /// The commit's committer time (seconds since the epoch): the history lane reads only
    /// commits up to it.
    #[serde(default)]
    pub commit_time: Option<i64>,
}

impl RefState {
    /// `main` for `refs/heads/main`, `v1` for `refs/tags/v1`; other names as they are.
    pub fn short_name(&self) -> &str {
        short_ref(&self.name)
    }
}

pub fn short_ref(name: &str) -> &str {
    name.strip_prefix("refs/heads/")
        .or_else(|| name.strip_prefix("refs/tags/"))
        .or_else(|| name.strip_prefix("refs/remotes/"))
        .unwrap_or(name)
}

/// What every lexical commit records, in its payload and in its state document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexState {
    pub schema_version: u32,
    /// Canonical path of the repository root.
    pub repo_root: String,
    pub codectx_version: String,
    pub refs: BTreeMap<String, RefState>,
    /// The ref searches use when they name none: the one last indexed without naming one
    /// (the checkout's branch then).
    pub default_ref: Option<String>,
    /// What the history lane holds.
    #[serde(default)]
    pub history: HistoryState,
}

/// The commits whose messages and changed files the index holds (one document each,
/// shared by every ref): the history of every commit in `tips`, up to a cap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryState {
    /// Commits whose history has been read (newest last; a few are kept).
    pub tips: Vec<String>,
    /// Commit documents in the index.
    pub commits: u64,
}

impl IndexState {
    pub fn new(schema_version: u32, repo_root: String) -> IndexState {
        IndexState {
            schema_version,
            repo_root,
            codectx_version: env!("CARGO_PKG_VERSION").to_string(),
            refs: BTreeMap::new(),
            default_ref: None,
            history: HistoryState::default(),
        }
    }

    /// Finds a ref by its full or short name (`refs/heads/main` or `main`).
    pub fn find(&self, name: &str) -> Option<&RefState> {
        self.refs.get(name).or_else(|| {
            self.refs
                .values()
                .find(|r| r.short_name() == name || r.commit.as_deref() == Some(name))
        })
    }

    /// The ref a search that names none reads.
    pub fn default(&self) -> Option<&RefState> {
        self.default_ref
            .as_deref()
            .and_then(|n| self.refs.get(n))
            .or_else(|| self.refs.values().max_by_key(|r| r.indexed_at))
    }
}

/// The serialised manifest and its hash.
pub fn encode(manifest: &Manifest) -> (String, String) {
    let json = serde_json::to_string(manifest).expect("a manifest serialises");
    let hash = blake3::hash(json.as_bytes()).to_hex().to_string();
    (json, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_versions_differ_by_path_and_blob() {
        let a = file_version("a.rs", "1234");
        assert_eq!(a, file_version("a.rs", "1234"));
        assert_ne!(a, file_version("b.rs", "1234"));
        assert_ne!(a, file_version("a.rs", "1235"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(file_version("ab", "c"), file_version("a", "bc"));
    }

    #[test]
    fn finds_refs_by_short_name_and_commit() {
        let mut state = IndexState::new(2, "/r".into());
        state.refs.insert(
            "refs/heads/main".into(),
            RefState {
                name: "refs/heads/main".into(),
                source: RefSource::Git,
                commit: Some("abc".into()),
                indexed_at: 1,
                files: 0,
                chunks: 0,
                skipped: 0,
                manifest_hash: String::new(),
                dirty: false,
                commit_time: None,
            },
        );
        assert!(state.find("main").is_some());
        assert!(state.find("refs/heads/main").is_some());
        assert!(state.find("abc").is_some());
        assert!(state.find("dev").is_none());
        assert_eq!(state.default().unwrap().name, "refs/heads/main");
    }
}
