//! Network endpoints, clients of `Engine`: the gRPC service (`grpc`, with health and
//! reflection) and the push-webhook receiver (`webhook`, its own port, off by default).
//! Only this module names transport types (tonic, axum); `status` maps engine errors to
//! gRPC codes in one place.

pub mod admission;
pub mod client;
pub mod grpc;
pub mod mcp;
pub mod metrics;
pub mod status;
pub mod webhook;

use sha2::{Digest, Sha256};

/// Equality that takes the same time wherever the inputs differ (and whatever their
/// lengths): both sides are hashed, then the digests compared without an early exit. For
/// secrets: webhook tokens, bearer tokens.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}
