//! Network endpoints, clients of `Engine`: today the push-webhook receiver (its own port,
//! off by default). Only this module names HTTP (axum) types.

pub mod webhook;
