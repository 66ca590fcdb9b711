//! The one integration-test binary: real grammars, real tantivy indexes on disk, real git.

mod chunks;
mod cli;
mod embed;
mod http_embed;
mod hybrid;
mod search;
mod support;
mod walk;
