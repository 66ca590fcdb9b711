//! The repositories a server knows: canonical root paths in `<data>/registry.json`, written
//! atomically (temporary file, then rename).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    repositories: Vec<PathBuf>,
}

/// Reads the registry; a missing file is an empty registry.
pub fn load(data_dir: &Path) -> Result<Vec<PathBuf>> {
    let path = data_dir.join("registry.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<File>(&bytes)
            .map(|f| f.repositories)
            .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Replaces the registry with `roots` (sorted, deduplicated).
pub fn save(data_dir: &Path, roots: &[PathBuf]) -> Result<()> {
    std::fs::create_dir_all(data_dir).map_err(|e| Error::io(data_dir, e))?;
    let mut repositories = roots.to_vec();
    repositories.sort();
    repositories.dedup();
    let json = serde_json::to_vec_pretty(&File { repositories })
        .map_err(|e| Error::Internal(format!("serialising the registry: {e}")))?;
    let path = data_dir.join("registry.json");
    let tmp = data_dir.join("registry.json.tmp");
    std::fs::write(&tmp, json).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}
