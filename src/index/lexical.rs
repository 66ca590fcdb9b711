//! The lexical index: one tantivy index per repository, BM25 over content, symbols and paths,
//! with the commit metadata stored atomically inside every tantivy commit.

use super::tokenizer::{CODE_TOKENIZER, CodeTokenizer, tokenize};
use crate::error::{Error, Result};
use crate::model::{Chunk, ChunkKind, Language, Span};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tantivy::collector::TopDocs;
use tantivy::query::{
    BooleanQuery, BoostQuery, ConstScoreQuery, Occur, Query, TermQuery, TermSetQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::{
    Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term, doc,
};

/// Bumped whenever the schema or the meaning of a stored field changes; a mismatch rebuilds.
pub const SCHEMA_VERSION: u32 = 1;

/// The id of the one document per index that holds the commit metadata.
const META_DOC_ID: &str = "__codectx_meta__";

/// Field boosts for BM25: a hit in a symbol name outranks one in the body.
const BOOSTS: &[(FieldName, f32)] = &[
    (FieldName::Content, 1.0),
    (FieldName::Symbol, 4.0),
    (FieldName::Symbols, 1.5),
    (FieldName::Path, 2.0),
    (FieldName::Scope, 0.5),
];

#[derive(Clone, Copy)]
enum FieldName {
    Content,
    Symbol,
    Symbols,
    Path,
    Scope,
}

/// What every commit records: which tree, which commit, which schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitMeta {
    pub schema_version: u32,
    /// Canonical path of the repository root.
    pub repo_root: String,
    /// The git commit the index reflects (`None` outside git).
    pub head: Option<String>,
    pub branch: Option<String>,
    /// The working tree had uncommitted changes to tracked files when indexed.
    pub dirty: bool,
    /// Seconds since the Unix epoch.
    pub indexed_at: u64,
    pub files: u64,
    pub chunks: u64,
    pub codectx_version: String,
}

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    path: Field,
    path_exact: Field,
    language: Field,
    kind: Field,
    symbol: Field,
    symbols: Field,
    scope: Field,
    signature: Field,
    doc: Field,
    content: Field,
    start_line: Field,
    end_line: Field,
    start_byte: Field,
    end_byte: Field,
    hash: Field,
    meta: Field,
    /// Indexed only on the metadata document, to find it.
    meta_marker: Field,
}

impl Fields {
    fn text(&self, name: FieldName) -> Field {
        match name {
            FieldName::Content => self.content,
            FieldName::Symbol => self.symbol,
            FieldName::Symbols => self.symbols,
            FieldName::Path => self.path,
            FieldName::Scope => self.scope,
        }
    }
}

fn build_schema() -> (Schema, Fields) {
    let code = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(CODE_TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let code_stored = code.clone().set_stored();
    let mut s = Schema::builder();
    let fields = Fields {
        // Unique per chunk: stored, not indexed (an inverted entry per chunk costs
        // dictionary-building time and buys no query we make).
        id: s.add_text_field("id", STORED),
        path: s.add_text_field("path", code_stored.clone()),
        path_exact: s.add_text_field("path_exact", STRING),
        language: s.add_text_field("language", STRING | STORED),
        kind: s.add_text_field("kind", STRING | STORED),
        symbol: s.add_text_field("symbol", code_stored.clone()),
        symbols: s.add_text_field("symbols", code_stored.clone()),
        scope: s.add_text_field("scope", code_stored.clone()),
        signature: s.add_text_field("signature", STORED),
        doc: s.add_text_field("doc", STORED),
        content: s.add_text_field("content", code_stored),
        start_line: s.add_u64_field("start_line", STORED),
        end_line: s.add_u64_field("end_line", STORED),
        start_byte: s.add_u64_field("start_byte", STORED),
        end_byte: s.add_u64_field("end_byte", STORED),
        hash: s.add_text_field("hash", STORED),
        meta: s.add_text_field("meta", STORED),
        meta_marker: s.add_text_field("meta_marker", STRING),
    };
    (s.build(), fields)
}

/// How opening went: the caller reports a rebuild to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    Existing,
    Created,
    /// The old index could not be used and was replaced by an empty one.
    Rebuilt {
        reason: String,
    },
}

/// A repository's lexical index on disk.
pub struct LexicalIndex {
    dir: PathBuf,
    index: Index,
    reader: IndexReader,
    fields: Fields,
}

impl LexicalIndex {
    /// Opens the index in `dir`; a missing one is `NotFound`, an unusable one `FailedPrecondition`.
    pub fn open(dir: &Path) -> Result<LexicalIndex> {
        if !dir.join("meta.json").exists() {
            return Err(Error::NotFound(format!("no index at {}", dir.display())));
        }
        Self::open_checked(dir).map_err(|reason| {
            Error::FailedPrecondition(format!(
                "the index at {} cannot be used ({reason}); run `codectx index` to rebuild it",
                dir.display()
            ))
        })
    }

    /// Opens the index in `dir`, creating it, or replacing it when its schema or format
    /// does not match this build. Never leaves a half-deleted directory behind.
    pub fn open_or_create(dir: &Path) -> Result<(LexicalIndex, Opened)> {
        if dir.join("meta.json").exists() {
            match Self::open_checked(dir) {
                Ok(index) => return Ok((index, Opened::Existing)),
                Err(reason) => {
                    tracing::warn!("rebuilding the index at {}: {reason}", dir.display());
                    std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                    let index = Self::create(dir)?;
                    return Ok((index, Opened::Rebuilt { reason }));
                }
            }
        }
        Ok((Self::create(dir)?, Opened::Created))
    }

    fn create(dir: &Path) -> Result<LexicalIndex> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let (schema, _) = build_schema();
        let index = Index::create_in_dir(dir, schema)?;
        Self::wrap(dir, index)
    }

    /// Opens and checks schema and version; the error is the reason it cannot be used.
    fn open_checked(dir: &Path) -> Result<LexicalIndex, String> {
        let index = Index::open_in_dir(dir).map_err(|e| format!("unreadable: {e}"))?;
        let (expected, _) = build_schema();
        if index.schema() != expected {
            return Err("its schema differs from this version of codectx".into());
        }
        let metas = index.load_metas().map_err(|e| format!("unreadable: {e}"))?;
        if let Some(payload) = metas.payload.as_deref() {
            let meta: CommitMeta = serde_json::from_str(payload)
                .map_err(|e| format!("unreadable commit payload: {e}"))?;
            if meta.schema_version != SCHEMA_VERSION {
                return Err(format!(
                    "it has schema version {}, this codectx uses {SCHEMA_VERSION}",
                    meta.schema_version
                ));
            }
        }
        Self::wrap(dir, index).map_err(|e| e.to_string())
    }

    fn wrap(dir: &Path, index: Index) -> Result<LexicalIndex> {
        index.tokenizers().register(CODE_TOKENIZER, CodeTokenizer);
        let (_, fields) = build_schema();
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(LexicalIndex {
            dir: dir.to_path_buf(),
            index,
            reader,
            fields,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The one writer of this index. Tantivy's lock file enforces one across processes.
    pub fn writer(&self, memory_bytes: usize) -> Result<LexicalWriter> {
        let writer = self.index.writer(memory_bytes)?;
        Ok(LexicalWriter {
            writer,
            fields: self.fields,
        })
    }

    /// Makes the latest commit visible to new snapshots.
    pub fn reload(&self) -> Result<()> {
        Ok(self.reader.reload()?)
    }

    /// A consistent read view: one tantivy commit, with the metadata of that same commit.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let searcher = self.reader.searcher();
        let meta = read_meta(&searcher, &self.fields)?;
        Ok(Snapshot {
            searcher,
            fields: self.fields,
            meta,
        })
    }
}

fn read_meta(searcher: &Searcher, fields: &Fields) -> Result<Option<CommitMeta>> {
    let query = TermQuery::new(
        Term::from_field_text(fields.meta_marker, META_DOC_ID),
        IndexRecordOption::Basic,
    );
    let top = searcher.search(&query, &TopDocs::with_limit(1).order_by_score())?;
    let Some((_, address)) = top.first() else {
        return Ok(None);
    };
    let doc: TantivyDocument = searcher.doc(*address)?;
    let json = doc
        .get_first(fields.meta)
        .and_then(|v| v.as_str())
        .ok_or_else(|| Error::Corrupt("the commit metadata document has no payload".into()))?;
    serde_json::from_str(json)
        .map(Some)
        .map_err(|e| Error::Corrupt(format!("the commit metadata cannot be read: {e}")))
}

/// The single writer: stage deletions and additions, then commit them atomically.
pub struct LexicalWriter {
    writer: IndexWriter,
    fields: Fields,
}

impl LexicalWriter {
    /// For a bulk rebuild: no background merges while the segments are being written.
    pub fn bulk_mode(&mut self) {
        self.writer
            .set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
    }

    pub fn delete_all(&mut self) -> Result<()> {
        self.writer.delete_all_documents()?;
        Ok(())
    }

    /// Stages the removal of every chunk of `path`.
    pub fn delete_path(&mut self, path: &str) {
        self.writer
            .delete_term(Term::from_field_text(self.fields.path_exact, path));
    }

    pub fn add(&mut self, chunk: &Chunk) -> Result<()> {
        let f = &self.fields;
        self.writer.add_document(doc!(
            f.id => chunk.id.as_str(),
            f.path => chunk.path.as_str(),
            f.path_exact => chunk.path.as_str(),
            f.language => chunk.language.name(),
            f.kind => chunk.kind.name(),
            f.symbol => chunk.symbol.as_str(),
            f.symbols => chunk.symbols.join("\n"),
            f.scope => chunk.scope.as_str(),
            f.signature => chunk.signature.as_str(),
            f.doc => chunk.doc.as_str(),
            f.content => chunk.content.as_str(),
            f.start_line => chunk.span.start_line as u64,
            f.end_line => chunk.span.end_line as u64,
            f.start_byte => chunk.span.start_byte as u64,
            f.end_byte => chunk.span.end_byte as u64,
            f.hash => chunk.hash.as_str(),
        ))?;
        Ok(())
    }

    /// Commits everything staged, with `meta` in the tantivy payload and in the meta document,
    /// so that a reader sees the chunks and the commit they reflect together or not at all.
    pub fn commit(&mut self, meta: &CommitMeta) -> Result<()> {
        let json = serde_json::to_string(meta)
            .map_err(|e| Error::Internal(format!("serialising commit metadata: {e}")))?;
        let f = &self.fields;
        self.writer
            .delete_term(Term::from_field_text(f.meta_marker, META_DOC_ID));
        self.writer
            .add_document(doc!(f.meta_marker => META_DOC_ID, f.meta => json.as_str()))?;
        let mut prepared = self.writer.prepare_commit()?;
        prepared.set_payload(&json);
        prepared.commit()?;
        Ok(())
    }

    /// Drops everything staged since the last commit.
    pub fn rollback(&mut self) -> Result<()> {
        self.writer.rollback()?;
        Ok(())
    }

    /// Waits for merge threads; call before dropping to leave a tidy directory.
    pub fn finish(self) -> Result<()> {
        self.writer.wait_merging_threads()?;
        Ok(())
    }
}

/// A lexical query with its filters.
#[derive(Debug, Clone, Default)]
pub struct LexicalQuery {
    pub text: String,
    pub limit: usize,
    pub language: Option<Language>,
    /// Restrict to these repository paths (already resolved from a glob).
    pub paths: Option<BTreeSet<String>>,
}

/// A read view of the index at one commit.
pub struct Snapshot {
    searcher: Searcher,
    fields: Fields,
    meta: Option<CommitMeta>,
}

impl Snapshot {
    /// The commit this snapshot reflects; `None` for an index never committed.
    pub fn meta(&self) -> Option<&CommitMeta> {
        self.meta.as_ref()
    }

    /// Number of chunks (the metadata document excluded).
    pub fn num_chunks(&self) -> u64 {
        let docs = self.searcher.num_docs();
        docs.saturating_sub(u64::from(self.meta.is_some()))
    }

    /// Every indexed path, sorted.
    pub fn paths(&self) -> Result<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        for segment in self.searcher.segment_readers() {
            let inverted = segment.inverted_index(self.fields.path_exact)?;
            let mut stream = inverted
                .terms()
                .stream()
                .map_err(|e| Error::Internal(format!("reading the path dictionary: {e}")))?;
            while stream.advance() {
                let Ok(path) = std::str::from_utf8(stream.key()) else {
                    continue;
                };
                // Deleted documents leave their terms behind until a merge.
                if segment.has_deletes() && !self.any_alive(segment, &inverted, path)? {
                    continue;
                }
                out.insert(path.to_string());
            }
        }
        Ok(out)
    }

    fn any_alive(
        &self,
        segment: &tantivy::SegmentReader,
        inverted: &tantivy::InvertedIndexReader,
        path: &str,
    ) -> Result<bool> {
        use tantivy::DocSet;
        let term = Term::from_field_text(self.fields.path_exact, path);
        let Some(mut postings) = inverted
            .read_postings(&term, IndexRecordOption::Basic)
            .map_err(|e| Error::Internal(format!("reading postings of {path:?}: {e}")))?
        else {
            return Ok(false);
        };
        let alive = segment.alive_bitset();
        let mut doc = postings.doc();
        while doc != tantivy::TERMINATED {
            if alive.is_none_or(|a| a.is_alive(doc)) {
                return Ok(true);
            }
            doc = postings.advance();
        }
        Ok(false)
    }

    /// Every chunk in the snapshot, in index order.
    pub fn all_chunks(&self) -> Result<Vec<Chunk>> {
        let mut addresses: Vec<_> = self
            .searcher
            .search(
                &tantivy::query::AllQuery,
                &tantivy::collector::DocSetCollector,
            )?
            .into_iter()
            .collect();
        addresses.sort();
        let mut out = Vec::with_capacity(addresses.len());
        for address in addresses {
            let doc: TantivyDocument = self.searcher.doc(address)?;
            if doc.get_first(self.fields.meta).is_some() {
                continue;
            }
            out.push(self.to_chunk(&doc)?);
        }
        Ok(out)
    }

    /// The chunks of one file, in file order.
    pub fn chunks_of(&self, path: &str) -> Result<Vec<Chunk>> {
        let term = Term::from_field_text(self.fields.path_exact, path);
        let query = TermQuery::new(term, IndexRecordOption::Basic);
        let top = self
            .searcher
            .search(&query, &TopDocs::with_limit(100_000).order_by_score())?;
        let mut out = Vec::with_capacity(top.len());
        for (_, address) in top {
            let doc: TantivyDocument = self.searcher.doc(address)?;
            out.push(self.to_chunk(&doc)?);
        }
        out.sort_by_key(|c| c.span.start_byte);
        Ok(out)
    }

    /// BM25 search; an empty result is not an error, a query without words is.
    pub fn search(&self, q: &LexicalQuery) -> Result<Vec<(f32, Chunk)>> {
        let words: BTreeSet<String> = tokenize(&q.text).into_iter().collect();
        if words.is_empty() {
            return Err(Error::invalid(format!(
                "query {:?} has no searchable words (letters or digits)",
                q.text
            )));
        }
        let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for word in &words {
            for (name, boost) in BOOSTS {
                let term = Term::from_field_text(self.fields.text(*name), word);
                let query = TermQuery::new(term, IndexRecordOption::WithFreqs);
                should.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(Box::new(query), *boost)),
                ));
            }
        }
        let mut must: Vec<(Occur, Box<dyn Query>)> =
            vec![(Occur::Must, Box::new(BooleanQuery::new(should)))];
        if let Some(lang) = q.language {
            let term = Term::from_field_text(self.fields.language, lang.name());
            let filter = TermQuery::new(term, IndexRecordOption::Basic);
            must.push((
                Occur::Must,
                Box::new(ConstScoreQuery::new(Box::new(filter), 0.0)),
            ));
        }
        if let Some(paths) = &q.paths {
            if paths.is_empty() {
                return Ok(Vec::new());
            }
            let terms = paths
                .iter()
                .map(|p| Term::from_field_text(self.fields.path_exact, p));
            let filter = TermSetQuery::new(terms);
            must.push((
                Occur::Must,
                Box::new(ConstScoreQuery::new(Box::new(filter), 0.0)),
            ));
        }
        let query = BooleanQuery::new(must);
        let limit = q.limit.max(1);
        let top = self
            .searcher
            .search(&query, &TopDocs::with_limit(limit).order_by_score())?;
        let mut out = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = self.searcher.doc(address)?;
            out.push((score, self.to_chunk(&doc)?));
        }
        Ok(out)
    }

    fn to_chunk(&self, doc: &TantivyDocument) -> Result<Chunk> {
        let f = &self.fields;
        let text = |field: Field| {
            doc.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let num = |field: Field| {
            doc.get_first(field)
                .and_then(|v| v.as_u64())
                .unwrap_or_default() as usize
        };
        let language = Language::parse(&text(f.language)).ok_or_else(|| {
            Error::Corrupt(format!(
                "unknown language {:?} in the index",
                text(f.language)
            ))
        })?;
        let kind = ChunkKind::parse(&text(f.kind)).ok_or_else(|| {
            Error::Corrupt(format!(
                "unknown chunk kind {:?} in the index",
                text(f.kind)
            ))
        })?;
        let symbols = text(f.symbols);
        Ok(Chunk {
            id: text(f.id),
            path: text(f.path),
            language,
            kind,
            symbol: text(f.symbol),
            symbols: symbols
                .lines()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            scope: text(f.scope),
            signature: text(f.signature),
            doc: text(f.doc),
            span: Span {
                start_byte: num(f.start_byte),
                end_byte: num(f.end_byte),
                start_line: num(f.start_line),
                end_line: num(f.end_line),
            },
            content: text(f.content),
            hash: text(f.hash),
        })
    }
}
