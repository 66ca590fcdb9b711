//! Storage of chunks: the lexical (tantivy) index and its code tokenizer.

pub mod lexical;
pub mod tokenizer;
pub mod vectors;
