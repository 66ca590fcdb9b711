//! The run's audit log: one JSON object per line, every step of the loop (prompt section
//! sizes, model calls, tool calls and outputs, tests, the commit), with a millisecond
//! timestamp. Callers hand it redacted text; keys never reach it.

use crate::error::{Error, Result};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Audit {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    run: String,
}

impl Audit {
    pub fn create(path: &Path, run: &str) -> Result<Audit> {
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(Audit {
            path: path.to_path_buf(),
            file: std::io::BufWriter::new(file),
            run: run.to_string(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `{"ts_ms", "run", "event", ...fields}` and flushes, so a killed run keeps
    /// every step it took.
    pub fn log(&mut self, event: &str, fields: Value) -> Result<()> {
        let ts_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut line = json!({"ts_ms": ts_ms, "run": self.run, "event": event});
        if let (Some(obj), Value::Object(more)) = (line.as_object_mut(), fields) {
            obj.extend(more);
        }
        serde_json::to_writer(&mut self.file, &line)
            .map_err(|e| Error::Internal(format!("audit log: {e}")))?;
        self.file
            .write_all(b"\n")
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}
