//! Engine errors to gRPC statuses, in one place. Messages of client errors name the field
//! and the reason; internal failures are logged in full and answered with a generic
//! message, so no paths or internals leak to callers.

use crate::error::{Error, ErrorKind};
use tonic::Status;

pub fn to_status(e: Error) -> Status {
    let message = e.to_string();
    match e.kind() {
        ErrorKind::InvalidInput => Status::invalid_argument(message),
        ErrorKind::NotFound => Status::not_found(message),
        ErrorKind::FailedPrecondition => Status::failed_precondition(message),
        ErrorKind::PermissionDenied => Status::permission_denied(message),
        ErrorKind::Unavailable => Status::unavailable(message),
        ErrorKind::Corrupt | ErrorKind::Io | ErrorKind::Internal => {
            tracing::error!("internal error answered as INTERNAL: {message}");
            Status::internal("internal error (details are in the server log)")
        }
    }
}

/// A status from a server as our error (the client side of `to_status`).
pub fn from_status(s: Status) -> Error {
    let message = s.message().to_string();
    match s.code() {
        tonic::Code::InvalidArgument => Error::InvalidInput(message),
        tonic::Code::NotFound => Error::NotFound(message),
        tonic::Code::FailedPrecondition => Error::FailedPrecondition(message),
        tonic::Code::PermissionDenied => Error::PermissionDenied(message),
        tonic::Code::Unavailable => Error::Unavailable(message),
        code => Error::Internal(format!("{code}: {message}")),
    }
}

/// Runs engine work on the blocking pool (never on the async runtime) and maps its error.
pub async fn blocking<T, F>(f: F) -> Result<T, Status>
where
    F: FnOnce() -> crate::Result<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(to_status),
        Err(e) => {
            tracing::error!("a request's worker failed: {e}");
            Err(Status::internal(
                "internal error (details are in the server log)",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn kinds_map_to_codes_and_internals_do_not_leak() {
        let cases = [
            (
                Error::invalid("query: must not be empty"),
                Code::InvalidArgument,
            ),
            (Error::NotFound("ref \"x\"".into()), Code::NotFound),
            (
                Error::FailedPrecondition("not indexed".into()),
                Code::FailedPrecondition,
            ),
            (Error::Unavailable("locked".into()), Code::Unavailable),
            (
                Error::Corrupt("/secret/path/meta.json".into()),
                Code::Internal,
            ),
            (Error::Internal("bug at /home/x".into()), Code::Internal),
        ];
        for (error, code) in cases {
            let status = to_status(error);
            assert_eq!(status.code(), code);
            if code == Code::Internal {
                assert!(!status.message().contains('/'), "{}", status.message());
            }
        }
    }
}
