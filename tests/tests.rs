//! The one integration-test binary: real grammars, real tantivy indexes on disk, real git.

pub(crate) mod agent;
mod chunks;
mod cli;
mod context;
mod crash;
mod embed;
mod gate;
mod governance;
mod grpc;
mod hooks;
mod http_embed;
mod hybrid;
mod mcp;
mod monitor;
mod quality;
mod ranking;
mod reindex;
mod search;
mod support;
mod walk;
mod webhooks;
