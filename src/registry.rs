//! The repositories a server knows: canonical root paths, and for those registered by git
//! URL the URL their managed clone follows, in `<data>/registry.json`. Written atomically
//! (temporary file, then rename) under a cross-process lock file, cached in memory and read
//! again only when a `stat` shows the file changed (another process registered something).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What the registry file holds.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entries {
    /// Canonical roots, sorted and unique.
    pub repositories: Vec<PathBuf>,
    /// Root -> the git URL of a repository registered by URL (its root is a bare clone
    /// under `<data>/clones` that codectx owns and fetches).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub remotes: BTreeMap<PathBuf, String>,
}

impl Entries {
    /// Adds a root (once).
    pub fn add(&mut self, root: &Path) {
        if !self.repositories.iter().any(|r| r == root) {
            self.repositories.push(root.to_path_buf());
        }
    }
}

/// Identifies one version of the file: a save renames a new file into place, so the inode
/// changes even when the size and the clock's granularity would not tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

/// The registry of one data directory.
pub struct Registry {
    dir: PathBuf,
    /// The entries and the file version they were read from (`None`: no file yet).
    cache: Mutex<Option<(Option<Stamp>, Arc<Entries>)>>,
}

impl Registry {
    pub fn new(data_dir: &Path) -> Registry {
        Registry {
            dir: data_dir.to_path_buf(),
            cache: Mutex::new(None),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("registry.json")
    }

    fn stamp(&self) -> Result<Option<Stamp>> {
        let path = self.path();
        match std::fs::metadata(&path) {
            Ok(meta) => Ok(Some(Stamp {
                modified: meta.modified().ok(),
                len: meta.len(),
                #[cfg(unix)]
                inode: std::os::unix::fs::MetadataExt::ino(&meta),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn read(&self) -> Result<Entries> {
        let path = self.path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Entries>(&bytes)
                .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Entries::default()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// The current entries: from memory unless the file changed since it was read.
    pub fn get(&self) -> Result<Arc<Entries>> {
        let stamp = self.stamp()?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, entries)) = cache.as_ref()
            && *seen == stamp
        {
            return Ok(Arc::clone(entries));
        }
        let entries = Arc::new(self.read()?);
        *cache = Some((stamp, Arc::clone(&entries)));
        Ok(entries)
    }

    /// Changes the entries under the lock (this process's and other processes'), then saves
    /// them; returns what `change` returned. Nothing is written when nothing changed.
    pub fn update<T>(&self, change: impl FnOnce(&mut Entries) -> T) -> Result<T> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let lock_path = self.dir.join("registry.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        lock.lock().map_err(|e| Error::io(&lock_path, e))?;
        // Under the lock the file is read fresh: another process may have just saved it.
        let before = self.read()?;
        let mut entries = before.clone();
        let result = change(&mut entries);
        entries.repositories.sort();
        entries.repositories.dedup();
        let roots = &entries.repositories;
        entries.remotes.retain(|root, _| roots.contains(root));
        if entries != before {
            let json = serde_json::to_vec_pretty(&entries)
                .map_err(|e| Error::Internal(format!("serialising the registry: {e}")))?;
            let path = self.path();
            let tmp = self.dir.join("registry.json.tmp");
            std::fs::write(&tmp, json).map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        }
        *cache = Some((self.stamp()?, Arc::new(entries)));
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_process_writing_the_file_is_seen_and_an_unchanged_file_is_not_reread() {
        let dir = tempfile::tempdir().unwrap();
        let ours = Registry::new(dir.path());
        let theirs = Registry::new(dir.path());
        assert!(ours.get().unwrap().repositories.is_empty());
        ours.update(|e| e.repositories.push("/b".into())).unwrap();
        ours.update(|e| e.repositories.push("/a".into())).unwrap();
        assert_eq!(
            theirs.get().unwrap().repositories,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        // The same Arc comes back while the file is unchanged: no read, no parse.
        let first = ours.get().unwrap();
        assert!(Arc::ptr_eq(&first, &ours.get().unwrap()));
        theirs
            .update(|e| {
                e.repositories.push("/c".into());
                e.remotes
                    .insert("/c".into(), "https://example.com/c.git".into());
            })
            .unwrap();
        let seen = ours.get().unwrap();
        assert_eq!(seen.repositories.len(), 3);
        assert_eq!(seen.remotes.len(), 1);
        // A remote never outlives its repository.
        ours.update(|e| e.repositories.retain(|r| r != Path::new("/c")))
            .unwrap();
        assert!(theirs.get().unwrap().remotes.is_empty());
        // A damaged file is reported with its path, not treated as empty.
        std::fs::write(dir.path().join("registry.json"), b"{not json").unwrap();
        let err = ours.get().unwrap_err().to_string();
        assert!(err.contains("registry.json"), "{err}");
    }
}
