//! Where source text comes from: the walker, file classification and git.

pub mod classify;
pub mod git;
pub mod walk;

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a file was not indexed. Every skip is counted and reported, never silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// Contains NUL bytes: not text.
    Binary,
    /// Larger than the configured size cap.
    TooLarge,
    /// Very long lines: minified or bundled output.
    Minified,
    /// Carries a generated-code marker (`@generated`, `DO NOT EDIT`).
    Generated,
    /// A dependency lockfile.
    Lockfile,
    /// Neither UTF-8 nor UTF-16 with a byte-order mark.
    InvalidEncoding,
    /// A file that holds secrets by convention (`.env`, private keys): never indexed.
    SecretFile,
    /// A symbolic link that resolves outside the repository root.
    SymlinkEscape,
    /// A symbolic link that leads back into one of its ancestors.
    SymlinkLoop,
    /// The file could not be read (permissions, vanished, I/O error).
    Unreadable,
}

impl SkipReason {
    pub fn name(self) -> &'static str {
        match self {
            SkipReason::Binary => "binary",
            SkipReason::TooLarge => "too-large",
            SkipReason::Minified => "minified",
            SkipReason::Generated => "generated",
            SkipReason::Lockfile => "lockfile",
            SkipReason::InvalidEncoding => "invalid-encoding",
            SkipReason::SecretFile => "secret-file",
            SkipReason::SymlinkEscape => "symlink-escape",
            SkipReason::SymlinkLoop => "symlink-loop",
            SkipReason::Unreadable => "unreadable",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One file left out of the index, with the reason and a human detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Repository-relative path (or the path as the walker reported it).
    pub path: String,
    pub reason: SkipReason,
    pub detail: String,
}
