//! Turns a file's text into chunks: tree-sitter definitions for code, headings for Markdown,
//! line windows for everything else. The chunker does no I/O and never fails.

pub mod code;
pub mod imports;
pub mod spec;
pub mod text;

use crate::config::ChunkConfig;
use crate::model::{Chunk, ChunkKind, Language, Span, content_hash};
use serde::Serialize;

/// Something the chunker noticed about a file; never fatal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub path: String,
    pub message: String,
    /// The file was chunked by line windows instead of by its syntax.
    pub fallback: bool,
}

/// The chunker's answer: the chunks, in file order and non-overlapping, plus diagnostics.
#[derive(Debug, Default)]
pub struct ChunkOutput {
    pub chunks: Vec<Chunk>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Chunks one file. Pure: same inputs, same chunks.
pub fn chunk_file(path: &str, language: Language, text: &str, config: &ChunkConfig) -> ChunkOutput {
    let mut builder = Builder::new(path, language, text, config);
    match language {
        Language::Markdown => text::markdown(&mut builder),
        Language::Config | Language::Text => {
            text::windows(&mut builder, 0, text.len(), &Meta::lines())
        }
        _ => code::chunk(&mut builder),
    }
    builder.finish()
}

/// Byte offset -> 1-based line number.
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// The 1-based line holding `byte`.
    pub fn line(&self, byte: usize) -> usize {
        match self.starts.binary_search(&byte) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// The byte where 1-based `line` starts (the text's end past the last line).
    pub fn line_start(&self, line: usize, text_len: usize) -> usize {
        self.starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(text_len)
    }

    pub fn line_count(&self) -> usize {
        self.starts.len()
    }
}

/// What a chunk says about itself beyond its span.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub kind: Option<ChunkKind>,
    pub symbol: String,
    pub symbols: Vec<String>,
    pub scope: String,
    pub signature: String,
    pub doc: String,
}

impl Meta {
    pub fn lines() -> Meta {
        Meta {
            kind: Some(ChunkKind::Lines),
            ..Meta::default()
        }
    }
}

/// Accumulates chunks for one file and owns the span arithmetic.
pub struct Builder<'a> {
    pub path: &'a str,
    pub language: Language,
    pub text: &'a str,
    pub config: &'a ChunkConfig,
    pub lines: LineIndex,
    /// BLAKE3 of the whole file: part of every chunk id.
    file_hash: String,
    out: ChunkOutput,
}

impl<'a> Builder<'a> {
    pub fn new(path: &'a str, language: Language, text: &'a str, config: &'a ChunkConfig) -> Self {
        Builder {
            path,
            language,
            text,
            config,
            lines: LineIndex::new(text),
            file_hash: content_hash(text.as_bytes()),
            out: ChunkOutput::default(),
        }
    }

    pub fn diagnose(&mut self, message: impl Into<String>, fallback: bool) {
        self.out.diagnostics.push(Diagnostic {
            path: self.path.to_string(),
            message: message.into(),
            fallback,
        });
    }

    /// `[start, end)` shrunk to exclude surrounding whitespace.
    pub fn trim(&self, start: usize, end: usize) -> (usize, usize) {
        let s = &self.text[start..end];
        let lead = s.len() - s.trim_start().len();
        let trail = s.len() - s.trim_end().len();
        if lead == s.len() {
            return (start, start);
        }
        (start + lead, end - trail)
    }

    /// Emits `[start, end)` as one chunk (after trimming whitespace); empty ranges are dropped.
    pub fn emit(&mut self, start: usize, end: usize, meta: &Meta) {
        let (start, end) = self.trim(start, end);
        if start >= end {
            return;
        }
        let content = &self.text[start..end];
        let hash = content_hash(content.as_bytes());
        let mut symbols = meta.symbols.clone();
        if !meta.symbol.is_empty() && !symbols.contains(&meta.symbol) {
            symbols.insert(0, meta.symbol.clone());
        }
        self.out.chunks.push(Chunk {
            id: Chunk::make_id(self.path, &self.file_hash, start, &hash),
            path: self.path.to_string(),
            language: self.language,
            kind: meta.kind.unwrap_or(ChunkKind::Block),
            symbol: meta.symbol.clone(),
            symbols,
            scope: meta.scope.clone(),
            signature: meta.signature.clone(),
            doc: meta.doc.clone(),
            span: Span {
                start_byte: start,
                end_byte: end,
                start_line: self.lines.line(start),
                end_line: self.lines.line(end - 1),
            },
            content: content.to_string(),
            hash,
        });
    }

    fn finish(self) -> ChunkOutput {
        self.out
    }
}
