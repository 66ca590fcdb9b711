//! Storage of chunks: the lexical (tantivy) index, its code tokenizer, the per-ref manifests
//! and the vector stores.

pub mod lexical;
pub mod manifest;
pub mod qdrant;
pub mod tokenizer;
pub mod vectors;
