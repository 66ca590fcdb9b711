//! codectx: a semantic code indexer and context-retrieval engine for coding agents.

pub mod agent;
pub mod background;
pub mod bench;
pub mod cli;
pub mod config;
pub mod embed;
pub mod engine;
pub mod error;
pub mod gate;
pub mod governance;
pub mod hooks;
pub mod index;
pub mod ingest;
pub mod ledger;
pub mod llm;
pub mod model;
pub mod monitor;
pub mod policy;
pub mod redact;
pub mod registry;
pub mod retrieve;
pub mod sandbox;
pub mod server;
pub mod source;
pub mod syntax;
pub mod time;
pub mod tokens;

pub use engine::Engine;
pub use error::{Error, ErrorKind, Result};
