//! Plain data shared by every layer: languages, chunks, spans, ids and commits.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A source language codectx knows how to chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Rust,
    Python,
    JavaScript,
    TypeScript,
    Tsx,
    Go,
    Java,
    C,
    Cpp,
    CSharp,
    Ruby,
    Php,
    Bash,
    Markdown,
    /// Config and data formats (TOML, YAML, JSON, ...): chunked by line windows.
    Config,
    /// Any other text file: chunked by line windows.
    Text,
}

impl Language {
    pub const ALL: [Language; 16] = [
        Language::Rust,
        Language::Python,
        Language::JavaScript,
        Language::TypeScript,
        Language::Tsx,
        Language::Go,
        Language::Java,
        Language::C,
        Language::Cpp,
        Language::CSharp,
        Language::Ruby,
        Language::Php,
        Language::Bash,
        Language::Markdown,
        Language::Config,
        Language::Text,
    ];

    /// The stable lowercase name used in the index, on the CLI and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::JavaScript => "javascript",
            Language::TypeScript => "typescript",
            Language::Tsx => "tsx",
            Language::Go => "go",
            Language::Java => "java",
            Language::C => "c",
            Language::Cpp => "cpp",
            Language::CSharp => "csharp",
            Language::Ruby => "ruby",
            Language::Php => "php",
            Language::Bash => "bash",
            Language::Markdown => "markdown",
            Language::Config => "config",
            Language::Text => "text",
        }
    }

    /// Parses a user-supplied language name, accepting common aliases.
    pub fn parse(name: &str) -> Option<Language> {
        let lower = name.trim().to_ascii_lowercase();
        let found = match lower.as_str() {
            "rs" => Language::Rust,
            "py" => Language::Python,
            "js" | "jsx" => Language::JavaScript,
            "ts" => Language::TypeScript,
            "golang" => Language::Go,
            "c++" | "cxx" | "cc" => Language::Cpp,
            "c#" | "cs" | "c-sharp" => Language::CSharp,
            "rb" => Language::Ruby,
            "sh" | "shell" => Language::Bash,
            "md" => Language::Markdown,
            other => return Language::ALL.into_iter().find(|l| l.name() == other),
        };
        Some(found)
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a chunk is, semantically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChunkKind {
    Function,
    Method,
    Class,
    Struct,
    Enum,
    Trait,
    Interface,
    Impl,
    Module,
    Macro,
    Type,
    Constant,
    /// Several small adjacent definitions merged into one chunk.
    Group,
    /// Module-level code that belongs to no definition (imports, statements).
    Block,
    /// A Markdown section.
    Section,
    /// A window of lines of a file without (usable) syntax.
    Lines,
}

impl ChunkKind {
    pub fn name(self) -> &'static str {
        match self {
            ChunkKind::Function => "function",
            ChunkKind::Method => "method",
            ChunkKind::Class => "class",
            ChunkKind::Struct => "struct",
            ChunkKind::Enum => "enum",
            ChunkKind::Trait => "trait",
            ChunkKind::Interface => "interface",
            ChunkKind::Impl => "impl",
            ChunkKind::Module => "module",
            ChunkKind::Macro => "macro",
            ChunkKind::Type => "type",
            ChunkKind::Constant => "constant",
            ChunkKind::Group => "group",
            ChunkKind::Block => "block",
            ChunkKind::Section => "section",
            ChunkKind::Lines => "lines",
        }
    }

    pub fn parse(name: &str) -> Option<ChunkKind> {
        use ChunkKind::*;
        [
            Function, Method, Class, Struct, Enum, Trait, Interface, Impl, Module, Macro, Type,
            Constant, Group, Block, Section, Lines,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

impl fmt::Display for ChunkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A half-open byte range and the inclusive, 1-based line range it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start_byte: usize,
    pub end_byte: usize,
    /// First line, 1-based.
    pub start_line: usize,
    /// Last line, 1-based, inclusive.
    pub end_line: usize,
}

/// A content hash (BLAKE3, hex), used to address chunk text and file blobs.
pub type ContentHash = String;

/// Hashes text the way every content address in codectx is computed.
pub fn content_hash(bytes: &[u8]) -> ContentHash {
    blake3::hash(bytes).to_hex().to_string()
}

/// A semantic unit of source code, the thing that is indexed and retrieved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Stable id: derived from the path, the file's content, the span start and the chunk's
    /// content hash.
    pub id: String,
    /// Repository-relative path with `/` separators.
    pub path: String,
    pub language: Language,
    pub kind: ChunkKind,
    /// The main symbol defined (function, class, heading...), empty when none.
    pub symbol: String,
    /// Every symbol defined inside the chunk, the main one first.
    pub symbols: Vec<String>,
    /// The enclosing scopes, outermost first, e.g. `impl Foo` or `class Bar`.
    pub scope: String,
    /// The definition's header on one line (up to the body).
    pub signature: String,
    /// The doc comment attached to the definition, comment markers kept.
    pub doc: String,
    pub span: Span,
    /// The chunk's text (for split definitions, without the parent header).
    pub content: String,
    /// BLAKE3 of `content`.
    pub hash: ContentHash,
}

impl Chunk {
    /// The id of a chunk is a function of where it is and what it says, and of the file
    /// version it belongs to: two versions of a file never share a chunk id, so a version's
    /// vectors can be dropped with it (the embedding cache, keyed by text, still spares the
    /// model an unchanged chunk).
    pub fn make_id(path: &str, file_hash: &str, start_byte: usize, hash: &str) -> String {
        let mut h = blake3::Hasher::new();
        h.update(path.as_bytes());
        h.update(&[0]);
        h.update(file_hash.as_bytes());
        h.update(&[0]);
        h.update(start_byte.to_string().as_bytes());
        h.update(&[0]);
        h.update(hash.as_bytes());
        h.finalize().to_hex()[..32].to_string()
    }
}
