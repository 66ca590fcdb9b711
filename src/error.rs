//! The one error type of the core, with kinds a caller (CLI, transport) can act on.

use std::path::PathBuf;

/// What went wrong, in terms a client can map to an exit code or a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong (bad query, bad filter, bad path).
    InvalidInput,
    /// The thing asked for does not exist (repository, index, file).
    NotFound,
    /// The thing exists but is not ready (e.g. a repository not yet indexed).
    FailedPrecondition,
    /// The caller may not do this (a path outside a server's allowed roots).
    PermissionDenied,
    /// A transient failure: retrying may help (index locked by another writer).
    Unavailable,
    /// Stored data could not be read as expected.
    Corrupt,
    /// An operating-system I/O failure.
    Io,
    /// A bug or an unexpected failure inside codectx.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Corrupt(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            Error::PermissionDenied(_) => ErrorKind::PermissionDenied,
            Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::Corrupt(_) => ErrorKind::Corrupt,
            Error::Io { .. } => ErrorKind::Io,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Error {
        Error::InvalidInput(msg.into())
    }
}

/// Quotes user input for a message, clipped to its first 80 characters (with the total
/// size) so that an error never echoes a megabyte of query back.
pub fn quote_clipped(input: &str) -> String {
    const MAX_CHARS: usize = 80;
    match input.char_indices().nth(MAX_CHARS) {
        None => format!("{input:?}"),
        Some((end, _)) => format!("{:?}... ({} bytes)", &input[..end], input.len()),
    }
}

impl From<tantivy::TantivyError> for Error {
    fn from(e: tantivy::TantivyError) -> Error {
        use tantivy::TantivyError as T;
        match e {
            T::LockFailure(..) => Error::Unavailable(format!(
                "the index is locked by another writer (is another `codectx index` running?): {e}"
            )),
            T::DataCorruption(_) | T::SchemaError(_) | T::IncompatibleIndex(_) => {
                Error::Corrupt(format!("index data could not be read: {e}"))
            }
            T::IndexAlreadyExists => Error::Internal(e.to_string()),
            T::InvalidArgument(msg) => Error::InvalidInput(msg),
            other => Error::Internal(format!("index error: {other}")),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
