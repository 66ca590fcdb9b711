//! Dense embeddings: the `Embedder` seam, the text a chunk is embedded as, and the
//! content-addressed cache that makes a chunk's embedding a one-time cost.

pub mod cache;
pub mod http;
pub mod local;

use crate::error::Result;
use crate::model::Chunk;

/// Turns text into vectors. Implementations: the local ONNX model through fastembed
/// (`local::LocalEmbedder`); more backends plug in here.
pub trait Embedder: Send + Sync {
    /// Identifies the model and its settings; part of every cache key.
    fn model_id(&self) -> &str;
    /// Length of every vector this embedder returns.
    fn dims(&self) -> usize;
    /// Embeds document texts (chunks), one vector per text, in order.
    fn embed_documents(&self, texts: &[String]) -> Result<Vec<Vec<f32>>>;
    /// Embeds a search query (with the model's query prefix, if it has one).
    fn embed_query(&self, text: &str) -> Result<Vec<f32>>;
    /// Does the one-off work queries need (starting sessions from local files), so that a
    /// query's time limit measures the query and not the start: otherwise the first search
    /// after a start, on a loaded machine, would lose its dense lane and answer differently
    /// from the same search a moment later. Nothing here may wait on the network.
    fn prepare_queries(&self) -> Result<()> {
        Ok(())
    }
}

/// Bytes of chunk body kept in the embedded text; the model reads about 256 tokens anyway.
const MAX_BODY_BYTES: usize = 2000;

/// The text a chunk is embedded as: where it is, what it is, then its code.
///
/// The path, enclosing scope, symbol, signature and doc comment come first so that they
/// survive the model's truncation.
pub fn document_text(chunk: &Chunk) -> String {
    let mut text = String::with_capacity(MAX_BODY_BYTES + 256);
    text.push_str(&chunk.path);
    if !chunk.scope.is_empty() {
        text.push_str(" | ");
        text.push_str(&chunk.scope);
    }
    if !chunk.symbol.is_empty() {
        text.push_str(" | ");
        text.push_str(&chunk.kind.to_string());
        text.push(' ');
        text.push_str(&chunk.symbol);
    }
    text.push('\n');
    if !chunk.doc.is_empty() && !chunk.content.contains(chunk.doc.as_str()) {
        text.push_str(&chunk.doc);
        text.push('\n');
    }
    let cut = crate::source::classify::floor_char_boundary(&chunk.content, MAX_BODY_BYTES);
    text.push_str(&chunk.content[..cut]);
    text
}

/// Cosine similarity; 0 when either vector is all zeros.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}
