//! One writer per repository across processes: an advisory lock file, and a queue file
//! through which a request that finds the writer busy hands its work to that writer, so a
//! burst of requests (ten commits in a second) becomes one reindex to the newest state.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "writer.lock";
const QUEUE_FILE: &str = "pending";

/// Held while a process writes a repository's indexes; released on drop (or process death:
/// the kernel drops advisory locks with the process, so a kill -9 never leaves it stuck).
pub struct WriterLock {
    _file: File,
}

fn open_lock(dir: &Path) -> Result<File> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(LOCK_FILE);
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))
}

/// Waits for the writer lock of the repository whose index lives in `dir`.
pub fn lock(dir: &Path) -> Result<WriterLock> {
    let file = open_lock(dir)?;
    file.lock().map_err(|e| Error::io(dir.join(LOCK_FILE), e))?;
    Ok(WriterLock { _file: file })
}

/// Takes the writer lock if it is free.
pub fn try_lock(dir: &Path) -> Result<Option<WriterLock>> {
    let file = open_lock(dir)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(WriterLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(dir.join(LOCK_FILE), e)),
    }
}

/// A queued reindex request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// `None`: the ref `HEAD` names when the request runs.
    pub ref_name: Option<String>,
    pub worktree: bool,
}

/// Appends a request to the queue (one JSON line; appends of one line are atomic).
pub fn enqueue(dir: &Path, request: &Request) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(QUEUE_FILE);
    let mut line = serde_json::to_string(request).expect("a request serialises");
    line.push('\n');
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| Error::io(&path, e))
}

/// Takes every queued request (deduplicated, in first-seen order) and empties the queue.
/// Only the lock holder calls this.
pub fn take(dir: &Path) -> Result<Vec<Request>> {
    let path = dir.join(QUEUE_FILE);
    let taken: PathBuf = dir.join(format!("{QUEUE_FILE}.taken"));
    match std::fs::rename(&path, &taken) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    }
    let text = std::fs::read_to_string(&taken).map_err(|e| Error::io(&taken, e))?;
    let _ = std::fs::remove_file(&taken);
    let mut out: Vec<Request> = Vec::new();
    for line in text.lines() {
        match serde_json::from_str::<Request>(line) {
            Ok(r) if !out.contains(&r) => out.push(r),
            Ok(_) => {}
            Err(e) => tracing::warn!("ignoring a bad queued request {line:?}: {e}"),
        }
    }
    Ok(out)
}

/// Is a request waiting?
pub fn pending(dir: &Path) -> bool {
    dir.join(QUEUE_FILE).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_exclusive_and_the_queue_dedupes() {
        let dir = tempfile::tempdir().unwrap();
        let held = try_lock(dir.path()).unwrap().expect("free");
        assert!(try_lock(dir.path()).unwrap().is_none());
        let main = Request {
            ref_name: Some("main".into()),
            worktree: false,
        };
        let head = Request {
            ref_name: None,
            worktree: false,
        };
        for r in [&main, &head, &main, &main] {
            enqueue(dir.path(), r).unwrap();
        }
        assert!(pending(dir.path()));
        assert_eq!(take(dir.path()).unwrap(), vec![main, head]);
        assert!(!pending(dir.path()));
        assert!(take(dir.path()).unwrap().is_empty());
        drop(held);
        assert!(try_lock(dir.path()).unwrap().is_some());
    }
}
