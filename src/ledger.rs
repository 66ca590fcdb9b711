//! The outcomes ledger: one append-only JSONL file in the data directory (`ledger.jsonl`)
//! where every agent run, gate verdict, merge and monitor result leaves a line. The
//! governance report reads it.
//!
//! Architecture Invariant: a line is written whole or not at all as far as readers can
//! tell. Appends take an exclusive lock, end a torn last line (a writer killed mid-write)
//! with a newline first, write the new line in one call and sync it. A reader skips and
//! reports a line that does not parse; it never fails on one.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// What a line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    AgentRun,
    Gate,
    Merge,
    Monitor,
}

/// One line. Fields that do not apply to its kind are left out.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Entry {
    /// Unix seconds.
    pub ts: i64,
    /// The same time in RFC 3339 (UTC), for people reading the file.
    #[serde(default)]
    pub time: String,
    pub kind: Option<Kind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_commit: Option<String>,
    /// The merge commit (merge and monitor lines): what joins a merge to its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_commit: Option<String>,
    /// agent run: passed | failed | error; gate: pass | fail | error; monitor: healthy |
    /// rolled_back | error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Gate name -> pass | fail | error.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gates: BTreeMap<String, String>,
    /// Merge: merged by policy without a person (true) or after review (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_merged: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_hours: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl Entry {
    /// An entry of `kind` stamped now.
    pub fn now(kind: Kind) -> Entry {
        let ts = crate::time::now_unix();
        Entry {
            ts,
            time: crate::time::rfc3339(ts),
            kind: Some(kind),
            ..Entry::default()
        }
    }
}

/// What reading found: the entries in file order and the lines skipped, each with why.
#[derive(Debug, Default)]
pub struct Contents {
    pub entries: Vec<Entry>,
    pub skipped: Vec<String>,
}

/// The ledger file of a data directory.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join("ledger.jsonl")
}

/// Appends `entry` to the ledger at `path` (created with its directory when missing).
pub fn append(path: &Path, entry: &Entry) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let mut line =
        serde_json::to_string(entry).map_err(|e| Error::Internal(format!("ledger entry: {e}")))?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let _lock = Lock::exclusive(&file, path)?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))
            .and_then(|_| file.read_exact(&mut last))
            .map_err(|e| Error::io(path, e))?;
        if last[0] != b'\n' {
            // A writer died mid-line: end that line so this one stands on its own.
            line.insert(0, '\n');
        }
    }
    file.write_all(line.as_bytes())
        .and_then(|_| file.sync_data())
        .map_err(|e| Error::io(path, e))
}

/// Reads the ledger at `path`; a missing file is an empty ledger.
pub fn read(path: &Path) -> Result<Contents> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Contents::default()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut out = Contents::default();
    let complete = bytes.ends_with(b"\n");
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let n = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let last_torn = i + 1 == n && !complete;
        match serde_json::from_slice::<Entry>(line) {
            Ok(e) if e.kind.is_some() && !last_torn => out.entries.push(e),
            Ok(_) if last_torn => out.skipped.push(format!(
                "{}:{}: the last line has no newline (a write was cut short); skipped",
                path.display(),
                i + 1
            )),
            Ok(_) => out
                .skipped
                .push(format!("{}:{}: no `kind`; skipped", path.display(), i + 1)),
            Err(e) => out.skipped.push(format!(
                "{}:{}: {}{e}; skipped",
                path.display(),
                i + 1,
                if last_torn { "a write cut short: " } else { "" }
            )),
        }
    }
    Ok(out)
}

/// An advisory lock on the open ledger (its descriptor), released on drop; the file must
/// outlive it.
struct Lock(std::os::fd::RawFd);

impl Lock {
    fn exclusive(file: &std::fs::File, path: &Path) -> Result<Lock> {
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: flock on an open descriptor.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(Lock(file.as_raw_fd()));
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::io(path, err));
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: unlocking the descriptor locked in `exclusive`, still open (the file is
        // dropped after the lock).
        unsafe {
            libc::flock(self.0, libc::LOCK_UN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_skipped_and_the_next_append_stands_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let mut merge = Entry::now(Kind::Merge);
        merge.task_type = Some("documentation".into());
        append(&path, &merge).unwrap();
        // What a writer killed halfway leaves behind.
        let whole = serde_json::to_string(&merge).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&whole.as_bytes()[..whole.len() / 2]).unwrap();
        drop(f);
        let read_torn = read(&path).unwrap();
        assert_eq!(read_torn.entries.len(), 1);
        assert_eq!(read_torn.skipped.len(), 1, "{:?}", read_torn.skipped);
        assert!(
            read_torn.skipped[0].contains(":2: "),
            "{:?}",
            read_torn.skipped
        );

        let mut monitor = Entry::now(Kind::Monitor);
        monitor.rolled_back = Some(true);
        append(&path, &monitor).unwrap();
        let after = read(&path).unwrap();
        assert_eq!(after.entries, vec![merge, monitor]);
        assert_eq!(after.skipped.len(), 1, "{:?}", after.skipped);
        assert!(after.skipped[0].contains(":2: "), "{:?}", after.skipped);
    }
}
