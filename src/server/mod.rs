//! Network endpoints, clients of `Engine`: the gRPC service (`grpc`, with health and
//! reflection) and the push-webhook receiver (`webhook`, its own port, off by default).
//! Only this module names transport types (tonic, axum); `status` maps engine errors to
//! gRPC codes in one place.

pub mod grpc;
pub mod status;
pub mod webhook;
