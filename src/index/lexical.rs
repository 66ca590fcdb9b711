//! The lexical index: one tantivy index per repository, BM25 over content, symbols and paths.
//! Chunk documents carry their file version, so the refs of a repository share the documents
//! of the files they have in common; each ref's manifest and the index state are documents
//! too, committed atomically with the chunks they describe.

use super::manifest::{FileVersion, IndexState, Manifest, RefState};
use super::tokenizer::{CODE_TOKENIZER, CodeTokenizer, tokenize};
use crate::error::{Error, Result, quote_clipped};
use crate::model::{Chunk, ChunkKind, Language, Span};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tantivy::collector::{DocSetCollector, FilterCollector, TopDocs};
use tantivy::query::{
    BooleanQuery, BoostQuery, ConstScoreQuery, Occur, Query, TermQuery, TermSetQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::{
    Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term, doc,
};

/// Bumped whenever the schema or the meaning of a stored field changes; a mismatch rebuilds.
/// (3: chunk text is redacted of secrets before it is stored; 4: commit documents of the
/// history lane.)
pub const SCHEMA_VERSION: u32 = 4;

/// The marker of the one document per index that holds the [`IndexState`].
const STATE_DOC_ID: &str = "__codectx_state__";

/// The marker of a ref's manifest document: this prefix and the ref's name.
const MANIFEST_DOC_PREFIX: &str = "__codectx_manifest__:";

/// The fast field that holds a chunk document's [`FileVersion`].
const FV_FIELD: &str = "fv";

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
    /// The chunk's file version: indexed (to delete a version) and fast (to filter by ref).
    fv: Field,
    /// The JSON of the state and manifest documents.
    meta: Field,
    /// Indexed only on the state and manifest documents, to find them.
    meta_marker: Field,
    /// Commit documents (the history lane): the message, the files changed (one term
    /// each), the committer time and the commit id.
    hist_message: Field,
    hist_path: Field,
    hist_time: Field,
    hist_id: Field,
    /// The import graph: the keys of the modules a file imports (on its first chunk).
    imports: Field,
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

/// The commit message field: the code tokenizer, with frequencies (BM25), stored.
fn code_stored_history() -> TextOptions {
    TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(CODE_TOKENIZER)
                .set_index_option(IndexRecordOption::WithFreqs),
        )
        .set_stored()
}

/// The most characters of a commit message the history lane keeps.
const HISTORY_MESSAGE_CHARS: usize = 2000;
/// The most changed files a commit document lists (a sweeping commit says little of each).
pub const HISTORY_MAX_PATHS: usize = 64;

/// A past commit the history lane found.
#[derive(Debug, Clone)]
pub struct HistoryHit {
    pub score: f32,
    pub id: String,
    pub time: i64,
    /// The message's first line.
    pub subject: String,
    pub paths: Vec<String>,
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
        fv: s.add_u64_field(FV_FIELD, INDEXED | FAST),
        meta: s.add_text_field("meta", STORED),
        meta_marker: s.add_text_field("meta_marker", STRING),
        hist_message: s.add_text_field("hist_message", code_stored_history()),
        hist_path: s.add_text_field("hist_path", STRING | STORED),
        hist_time: s.add_i64_field("hist_time", INDEXED | FAST | STORED),
        hist_id: s.add_text_field("hist_id", STRING | STORED),
        imports: s.add_text_field("imports", STRING | STORED),
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
    /// The state of the searcher generation last read, so a search reads it once per commit.
    state: Mutex<Option<(u64, Option<Arc<IndexState>>)>>,
    /// Manifests by hash, with the set of their file versions that have chunks.
    manifests: Mutex<HashMap<String, Arc<LoadedManifest>>>,
    /// Content tokens per file version, for the searcher generation last read.
    lengths: LengthsCache,
}

/// Content tokens per file version (the sum of its chunks' field norms): the document
/// lengths of whole-file BM25.
pub type FileLengths = HashMap<FileVersion, u32>;

/// The file lengths of one searcher generation, shared by the index and its snapshots.
type LengthsCache = Arc<Mutex<Option<(u64, Arc<FileLengths>)>>>;

/// A manifest as readers use it.
pub struct LoadedManifest {
    pub manifest: Manifest,
    versions: HashSet<FileVersion>,
    /// The path of each version that has chunks.
    paths: HashMap<FileVersion, String>,
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
            // Read only the version, so that any older payload format is recognised as old.
            let value: serde_json::Value = serde_json::from_str(payload)
                .map_err(|e| format!("unreadable commit payload: {e}"))?;
            let version = value.get("schema_version").and_then(|v| v.as_u64());
            if version != Some(u64::from(SCHEMA_VERSION)) {
                return Err(format!(
                    "it has schema version {}, this codectx uses {SCHEMA_VERSION}",
                    version.map_or("unknown".to_string(), |v| v.to_string())
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
            // Commits by another process (a hook-started indexer) become visible on their own;
            // this process's own commits are reloaded at once by the writer's caller.
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .try_into()?;
        Ok(LexicalIndex {
            dir: dir.to_path_buf(),
            index,
            reader,
            fields,
            state: Mutex::new(None),
            manifests: Mutex::new(HashMap::new()),
            lengths: Arc::new(Mutex::new(None)),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The one writer of this index. Tantivy's lock file enforces one across processes.
    pub fn writer(&self, memory_bytes: usize) -> Result<LexicalWriter> {
        let writer = self.index.writer(memory_bytes)?;
        // A writer killed mid-run leaves files no commit refers to (segments, `.del` files
        // named after the opstamp this writer will reuse): remove them before writing.
        writer.garbage_collect_files().wait()?;
        Ok(LexicalWriter {
            writer,
            fields: self.fields,
        })
    }

    /// Makes the latest commit visible to new snapshots.
    pub fn reload(&self) -> Result<()> {
        Ok(self.reader.reload()?)
    }

    /// A consistent read view of one ref (`None`: the default ref) at one tantivy commit,
    /// with the state and manifest of that same commit. An index never committed gives an
    /// empty snapshot; a ref not indexed is `NotFound`.
    pub fn snapshot(&self, ref_name: Option<&str>) -> Result<Snapshot> {
        let mut snapshot = self.snapshot_all()?;
        let Some(state) = snapshot.state.clone() else {
            return match ref_name {
                Some(name) => Err(not_indexed(name, None)),
                None => Ok(snapshot),
            };
        };
        let found = match ref_name {
            Some(name) => state.find(name),
            None => state.default(),
        };
        let Some(ref_state) = found else {
            return match ref_name {
                Some(name) => Err(not_indexed(name, Some(&state))),
                None => Ok(snapshot),
            };
        };
        let manifest = self.manifest(&snapshot.searcher, ref_state)?;
        // A ref that holds every chunk document needs no filter.
        let filtered = snapshot.num_chunks() > ref_state.chunks;
        snapshot.view = Some(RefView {
            state: ref_state.clone(),
            manifest,
            filtered,
        });
        Ok(snapshot)
    }

    /// A read view of every chunk document, whichever refs hold it.
    pub fn snapshot_all(&self) -> Result<Snapshot> {
        let searcher = self.reader.searcher();
        let generation = searcher.generation().generation_id();
        let cached = {
            let slot = self.state.lock().unwrap_or_else(|p| p.into_inner());
            slot.as_ref()
                .filter(|(g, _)| *g == generation)
                .map(|(_, s)| s.clone())
        };
        let state = match cached {
            Some(state) => state,
            None => {
                let state = read_state(&searcher, &self.fields)?.map(Arc::new);
                *self.state.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((generation, state.clone()));
                state
            }
        };
        Ok(Snapshot {
            searcher,
            fields: self.fields,
            state,
            view: None,
            lengths: Arc::clone(&self.lengths),
        })
    }

    fn manifest(&self, searcher: &Searcher, ref_state: &RefState) -> Result<Arc<LoadedManifest>> {
        let key = &ref_state.manifest_hash;
        if let Some(found) = self
            .manifests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return Ok(Arc::clone(found));
        }
        let marker = format!("{MANIFEST_DOC_PREFIX}{}", ref_state.name);
        let json = read_meta_doc(searcher, &self.fields, &marker)?.ok_or_else(|| {
            Error::Corrupt(format!("the manifest of {} is missing", ref_state.name))
        })?;
        let manifest: Manifest = serde_json::from_str(&json).map_err(|e| {
            Error::Corrupt(format!(
                "the manifest of {} cannot be read: {e}",
                ref_state.name
            ))
        })?;
        let paths: HashMap<FileVersion, String> = manifest
            .iter()
            .filter(|(_, e)| e.chunks > 0)
            .map(|(path, e)| (e.version(path), path.clone()))
            .collect();
        let versions = paths.keys().copied().collect();
        let loaded = Arc::new(LoadedManifest {
            manifest,
            versions,
            paths,
        });
        let mut cache = self.manifests.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 64 {
            cache.clear();
        }
        cache.insert(key.clone(), Arc::clone(&loaded));
        Ok(loaded)
    }
}

fn not_indexed(name: &str, state: Option<&IndexState>) -> Error {
    let known: Vec<&str> = state
        .map(|s| s.refs.values().map(|r| r.short_name()).collect())
        .unwrap_or_default();
    Error::NotFound(format!(
        "ref {name:?} is not indexed (indexed: {}); run `codectx index --ref {name}`",
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    ))
}

fn read_meta_doc(searcher: &Searcher, fields: &Fields, marker: &str) -> Result<Option<String>> {
    let query = TermQuery::new(
        Term::from_field_text(fields.meta_marker, marker),
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
        .ok_or_else(|| Error::Corrupt(format!("the document {marker:?} has no payload")))?;
    Ok(Some(json.to_string()))
}

fn read_state(searcher: &Searcher, fields: &Fields) -> Result<Option<IndexState>> {
    let Some(json) = read_meta_doc(searcher, fields, STATE_DOC_ID)? else {
        return Ok(None);
    };
    serde_json::from_str(&json)
        .map(Some)
        .map_err(|e| Error::Corrupt(format!("the index state cannot be read: {e}")))
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

    /// Stages the removal of every chunk document of one file version.
    pub fn delete_version(&mut self, version: FileVersion) {
        self.writer
            .delete_term(Term::from_field_u64(self.fields.fv, version));
    }

    /// Stages a chunk of file version `version`, with the import keys of its file when it
    /// is the file's first chunk (see [`crate::syntax::imports`]).
    pub fn add(&mut self, chunk: &Chunk, version: FileVersion, imports: &[String]) -> Result<()> {
        let f = &self.fields;
        let mut doc = doc!(
            f.fv => version,
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
        );
        for key in imports {
            doc.add_text(f.imports, key);
        }
        self.writer.add_document(doc)?;
        Ok(())
    }

    /// Stages a commit document of the history lane (the message already redacted). Its
    /// `meta` field is empty, which marks it as no chunk for every reader of chunks.
    pub fn add_history(&mut self, commit: &crate::source::git::HistoryCommit) -> Result<()> {
        let f = &self.fields;
        let mut message = commit.message.as_str();
        if let Some((end, _)) = message.char_indices().nth(HISTORY_MESSAGE_CHARS) {
            message = &message[..end];
        }
        let mut doc = doc!(
            f.hist_id => commit.id.as_str(),
            f.hist_time => commit.time,
            f.hist_message => message,
            f.meta => "",
        );
        for path in commit.paths.iter().take(HISTORY_MAX_PATHS) {
            doc.add_text(f.hist_path, path);
        }
        self.writer.add_document(doc)?;
        Ok(())
    }

    /// Stages a ref's manifest (its serialised JSON), replacing the one it had.
    pub fn put_manifest(&mut self, ref_name: &str, json: &str) -> Result<()> {
        let marker = format!("{MANIFEST_DOC_PREFIX}{ref_name}");
        self.put_meta_doc(&marker, json)
    }

    /// Stages the removal of a ref's manifest.
    pub fn remove_manifest(&mut self, ref_name: &str) {
        let marker = format!("{MANIFEST_DOC_PREFIX}{ref_name}");
        self.writer
            .delete_term(Term::from_field_text(self.fields.meta_marker, &marker));
    }

    fn put_meta_doc(&mut self, marker: &str, json: &str) -> Result<()> {
        let f = &self.fields;
        self.writer
            .delete_term(Term::from_field_text(f.meta_marker, marker));
        self.writer
            .add_document(doc!(f.meta_marker => marker, f.meta => json))?;
        Ok(())
    }

    /// Commits everything staged, with `state` in the tantivy payload and in the state
    /// document, so that a reader sees the chunks, the manifests and the commits they reflect
    /// together or not at all.
    pub fn commit(&mut self, state: &IndexState) -> Result<()> {
        let json = serde_json::to_string(state)
            .map_err(|e| Error::Internal(format!("serialising the index state: {e}")))?;
        self.put_meta_doc(STATE_DOC_ID, &json)?;
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
    /// Weighted terms (as the tokenizer writes them): when given, they are the query and
    /// `text` only names it in messages; otherwise every word of `text` weighs 1.
    pub terms: Option<Vec<(String, f32)>>,
    pub limit: usize,
    pub language: Option<Language>,
    /// Restrict to these repository paths (already resolved from a glob).
    pub paths: Option<BTreeSet<String>>,
}

/// The ref a snapshot reads.
struct RefView {
    state: RefState,
    manifest: Arc<LoadedManifest>,
    /// Other refs' documents are in the index too, so results are filtered to this ref's.
    filtered: bool,
}

/// A read view of the index at one commit: one ref's files, or every document.
pub struct Snapshot {
    searcher: Searcher,
    fields: Fields,
    state: Option<Arc<IndexState>>,
    view: Option<RefView>,
    /// The index's cache of file lengths (computed once per searcher generation).
    lengths: LengthsCache,
}

/// BM25's term-frequency saturation and length normalisation (tantivy's defaults).
const BM25_K1: f32 = 1.2;
const BM25_B: f32 = 0.75;

impl Snapshot {
    /// What the index held at this commit; `None` for an index never committed.
    pub fn state(&self) -> Option<&IndexState> {
        self.state.as_deref()
    }

    /// The ref this snapshot reads; `None` for a view of every document or an empty index.
    pub fn ref_state(&self) -> Option<&RefState> {
        self.view.as_ref().map(|v| &v.state)
    }

    /// The ref's files; `None` for a view of every document.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.view.as_ref().map(|v| &v.manifest.manifest)
    }

    /// Number of chunks of the ref (of every ref for a view of every document).
    pub fn num_chunks(&self) -> u64 {
        if let Some(view) = &self.view {
            return view.state.chunks;
        }
        let meta_docs = self
            .state
            .as_ref()
            .map_or(0, |s| 1 + s.refs.len() as u64 + s.history.commits);
        self.searcher.num_docs().saturating_sub(meta_docs)
    }

    /// The file-version filter of a ref that shares the index with others.
    fn filter(&self) -> Option<Arc<LoadedManifest>> {
        self.view
            .as_ref()
            .filter(|v| v.filtered)
            .map(|v| Arc::clone(&v.manifest))
    }

    /// Every indexed path (with at least one chunk), sorted.
    pub fn paths(&self) -> Result<BTreeSet<String>> {
        if let Some(view) = &self.view {
            return Ok(view
                .manifest
                .manifest
                .iter()
                .filter(|(_, e)| e.chunks > 0)
                .map(|(p, _)| p.clone())
                .collect());
        }
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

    /// Runs `query` collecting every matching document address, restricted to the ref.
    fn matching(&self, query: &dyn Query) -> Result<Vec<tantivy::DocAddress>> {
        let found = match self.filter() {
            Some(m) => self.searcher.search(
                query,
                &FilterCollector::new(
                    FV_FIELD.to_string(),
                    move |v: u64| m.versions.contains(&v),
                    DocSetCollector,
                ),
            )?,
            None => self.searcher.search(query, &DocSetCollector)?,
        };
        let mut addresses: Vec<_> = found.into_iter().collect();
        addresses.sort();
        Ok(addresses)
    }

    /// Every chunk in the snapshot, in index order.
    pub fn all_chunks(&self) -> Result<Vec<Chunk>> {
        let addresses = self.matching(&tantivy::query::AllQuery)?;
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

    /// Whether this snapshot's ref indexed `path` (a file the walk skipped, ignored or never
    /// saw is not held).
    pub fn holds_file(&self, path: &str) -> Result<bool> {
        match &self.view {
            Some(view) => Ok(view.manifest.manifest.contains_key(path)),
            None => Ok(!self.chunks_of(path)?.is_empty()),
        }
    }

    /// The chunks of one file, in file order (of every version of it in a view of every
    /// document).
    pub fn chunks_of(&self, path: &str) -> Result<Vec<Chunk>> {
        let path_term = Term::from_field_text(self.fields.path_exact, path);
        let path_query = TermQuery::new(path_term, IndexRecordOption::Basic);
        let addresses = match &self.view {
            Some(view) => {
                let Some(entry) = view.manifest.manifest.get(path) else {
                    return Ok(Vec::new());
                };
                let version = Term::from_field_u64(self.fields.fv, entry.version(path));
                let query = BooleanQuery::new(vec![
                    (Occur::Must, Box::new(path_query) as Box<dyn Query>),
                    (
                        Occur::Must,
                        Box::new(TermQuery::new(version, IndexRecordOption::Basic)),
                    ),
                ]);
                self.searcher.search(&query, &DocSetCollector)?
            }
            None => self.searcher.search(&path_query, &DocSetCollector)?,
        };
        let mut out = Vec::with_capacity(addresses.len());
        for address in addresses {
            let doc: TantivyDocument = self.searcher.doc(address)?;
            out.push(self.to_chunk(&doc)?);
        }
        out.sort_by(|a, b| (a.span.start_byte, &a.id).cmp(&(b.span.start_byte, &b.id)));
        Ok(out)
    }

    /// The chunk ids of one file version (what leaves the vector store with it).
    pub fn chunk_ids_of_version(&self, version: FileVersion) -> Result<Vec<String>> {
        let term = Term::from_field_u64(self.fields.fv, version);
        let query = TermQuery::new(term, IndexRecordOption::Basic);
        let mut out = Vec::new();
        for address in self.searcher.search(&query, &DocSetCollector)? {
            let doc: TantivyDocument = self.searcher.doc(address)?;
            if let Some(id) = doc.get_first(self.fields.id).and_then(|v| v.as_str()) {
                out.push(id.to_string());
            }
        }
        Ok(out)
    }

    /// The best `limit` documents for `query` by score, restricted to the ref.
    fn top(&self, query: &dyn Query, limit: usize) -> Result<Vec<(f32, tantivy::DocAddress)>> {
        let top_docs = TopDocs::with_limit(limit).order_by_score();
        Ok(match self.filter() {
            Some(m) => self.searcher.search(
                query,
                &FilterCollector::new(
                    FV_FIELD.to_string(),
                    move |v: u64| m.versions.contains(&v),
                    top_docs,
                ),
            )?,
            None => self.searcher.search(query, &top_docs)?,
        })
    }

    /// The chunks that define `name` (exactly, case-sensitively): the main definition of a
    /// chunk first, then chunks that define it among others; at most `limit`, in index order
    /// within each group.
    pub fn definitions(&self, name: &str, limit: usize) -> Result<Vec<Chunk>> {
        // The tokenizer's first token of an identifier is the whole identifier, lowercased.
        let Some(whole) = tokenize(name).into_iter().next() else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let term = Term::from_field_text(self.fields.symbols, &whole);
        let query = TermQuery::new(term, IndexRecordOption::Basic);
        let top = self.top(&query, limit.saturating_mul(4).max(16))?;
        let mut main = Vec::new();
        let mut among = Vec::new();
        let mut addresses: Vec<_> = top.into_iter().map(|(_, a)| a).collect();
        addresses.sort();
        for address in addresses {
            let doc: TantivyDocument = self.searcher.doc(address)?;
            let chunk = self.to_chunk(&doc)?;
            if chunk.symbol == name {
                main.push(chunk);
            } else if chunk.symbols.iter().any(|s| s == name) {
                among.push(chunk);
            }
        }
        main.extend(among);
        main.truncate(limit);
        Ok(main)
    }

    /// Content tokens per file version of every chunk document, computed from the field
    /// norms once per searcher generation (a scan of one byte per document).
    pub fn file_lengths(&self) -> Result<Arc<FileLengths>> {
        let generation = self.searcher.generation().generation_id();
        if let Some((g, lengths)) = &*self.lengths.lock().unwrap_or_else(|p| p.into_inner())
            && *g == generation
        {
            return Ok(Arc::clone(lengths));
        }
        let mut out = FileLengths::new();
        for segment in self.searcher.segment_readers() {
            let norms = segment.get_fieldnorms_reader(self.fields.content)?;
            let fv = segment.fast_fields().u64(FV_FIELD)?;
            let alive = segment.alive_bitset();
            for doc in 0..segment.max_doc() {
                if alive.is_some_and(|a| !a.is_alive(doc)) {
                    continue;
                }
                if let Some(version) = fv.first(doc) {
                    *out.entry(version).or_default() += norms.fieldnorm(doc);
                }
            }
        }
        let out = Arc::new(out);
        *self.lengths.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((generation, Arc::clone(&out)));
        Ok(out)
    }

    /// Whole-file BM25 of weighted terms over the ref's chunk content, aggregated from the
    /// chunk postings at query time (no second set of postings at index time): a file's
    /// term frequency is the sum over its chunks, its length the sum of theirs, a term's
    /// document frequency the number of files holding it. Every file holding a term, best
    /// first. Needs a ref view (empty for a view of every document).
    pub fn file_bm25(&self, terms: &[(String, f32)]) -> Result<Vec<(String, f32)>> {
        use tantivy::DocSet;
        use tantivy::postings::Postings;
        let Some(view) = &self.view else {
            return Ok(Vec::new());
        };
        let lengths = self.file_lengths()?;
        let in_ref = |v: &FileVersion| !view.filtered || view.manifest.versions.contains(v);
        let (mut files, mut total) = (0u64, 0u64);
        for (v, len) in lengths.iter() {
            if in_ref(v) {
                files += 1;
                total += u64::from(*len);
            }
        }
        if files == 0 {
            return Ok(Vec::new());
        }
        let avg = total as f32 / files as f32;
        let mut scores: HashMap<FileVersion, f32> = HashMap::new();
        let mut tf: HashMap<FileVersion, u32> = HashMap::new();
        for (word, weight) in terms {
            tf.clear();
            let term = Term::from_field_text(self.fields.content, word);
            for segment in self.searcher.segment_readers() {
                let inverted = segment.inverted_index(self.fields.content)?;
                let Some(mut postings) = inverted
                    .read_postings(&term, IndexRecordOption::WithFreqs)
                    .map_err(|e| Error::Internal(format!("reading postings of {word:?}: {e}")))?
                else {
                    continue;
                };
                let fv = segment.fast_fields().u64(FV_FIELD)?;
                let alive = segment.alive_bitset();
                let mut doc = postings.doc();
                while doc != tantivy::TERMINATED {
                    if alive.is_none_or(|a| a.is_alive(doc))
                        && let Some(version) = fv.first(doc)
                        && in_ref(&version)
                    {
                        *tf.entry(version).or_default() += postings.term_freq();
                    }
                    doc = postings.advance();
                }
            }
            let df = tf.len() as f32;
            if df == 0.0 {
                continue;
            }
            let idf = (1.0 + (files as f32 - df + 0.5) / (df + 0.5)).ln();
            for (version, f) in &tf {
                let len = lengths.get(version).copied().unwrap_or(0) as f32;
                let f = *f as f32;
                let norm = BM25_K1 * (1.0 - BM25_B + BM25_B * len / avg.max(1.0));
                *scores.entry(*version).or_default() +=
                    weight * idf * f * (BM25_K1 + 1.0) / (f + norm);
            }
        }
        let mut out: Vec<(String, f32)> = scores
            .into_iter()
            .filter_map(|(v, s)| view.manifest.paths.get(&v).map(|p| (p.clone(), s)))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    }

    /// The content tokens of each of `paths` in the ref (0 for a path it does not hold).
    pub fn file_tokens_of(&self, paths: &[String]) -> Result<Vec<u32>> {
        let Some(view) = &self.view else {
            return Ok(vec![0; paths.len()]);
        };
        let lengths = self.file_lengths()?;
        Ok(paths
            .iter()
            .map(|p| {
                view.manifest
                    .manifest
                    .get(p)
                    .and_then(|e| lengths.get(&e.version(p)).copied())
                    .unwrap_or(0)
            })
            .collect())
    }

    /// The history lane: BM25 of weighted terms over the messages of past commits, up to the
    /// ref's commit time (a commit after it, say the fix of a bug in a later ref, is never
    /// evidence for an earlier one), best first.
    pub fn history(&self, terms: &[(String, f32)], limit: usize) -> Result<Vec<HistoryHit>> {
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let should: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|(word, weight)| {
                let term = Term::from_field_text(self.fields.hist_message, word);
                let q = TermQuery::new(term, IndexRecordOption::WithFreqs);
                (
                    Occur::Should,
                    Box::new(BoostQuery::new(Box::new(q), *weight)) as Box<dyn Query>,
                )
            })
            .collect();
        let mut must: Vec<(Occur, Box<dyn Query>)> =
            vec![(Occur::Must, Box::new(BooleanQuery::new(should)))];
        if let Some(before) = self.ref_state().and_then(|r| r.commit_time) {
            must.push((Occur::Must, self.history_until(before)));
        }
        let top = self.searcher.search(
            &BooleanQuery::new(must),
            &TopDocs::with_limit(limit).order_by_score(),
        )?;
        let mut out = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = self.searcher.doc(address)?;
            let text = |field: Field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            out.push(HistoryHit {
                score,
                id: text(self.fields.hist_id),
                time: doc
                    .get_first(self.fields.hist_time)
                    .and_then(|v| v.as_i64())
                    .unwrap_or_default(),
                subject: text(self.fields.hist_message)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                paths: doc
                    .get_all(self.fields.hist_path)
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            });
        }
        Ok(out)
    }

    /// The ref's files that import a module with this key (see
    /// [`crate::syntax::imports::module_key`]).
    pub fn importers_of(&self, key: &str) -> Result<BTreeSet<String>> {
        let term = Term::from_field_text(self.fields.imports, key);
        let mut out = BTreeSet::new();
        for address in self.matching(&TermQuery::new(term, IndexRecordOption::Basic))? {
            let doc: TantivyDocument = self.searcher.doc(address)?;
            if let Some(p) = doc.get_first(self.fields.path).and_then(|v| v.as_str()) {
                out.insert(p.to_string());
            }
        }
        Ok(out)
    }

    /// How many documents of the ref import a module with this key (about the number of
    /// files that import it: one document per file carries its imports).
    pub fn importer_count(&self, key: &str) -> Result<u64> {
        let term = Term::from_field_text(self.fields.imports, key);
        let query = TermQuery::new(term, IndexRecordOption::Basic);
        Ok(match self.filter() {
            Some(m) => self.searcher.search(
                &query,
                &FilterCollector::new(
                    FV_FIELD.to_string(),
                    move |v: u64| m.versions.contains(&v),
                    tantivy::collector::Count,
                ),
            )?,
            None => self.searcher.search(&query, &tantivy::collector::Count)?,
        } as u64)
    }

    /// The import keys of a file of the ref.
    pub fn imports_of(&self, path: &str) -> Result<Vec<String>> {
        let Some(view) = &self.view else {
            return Ok(Vec::new());
        };
        let Some(entry) = view.manifest.manifest.get(path) else {
            return Ok(Vec::new());
        };
        let version = Term::from_field_u64(self.fields.fv, entry.version(path));
        let mut out = Vec::new();
        for address in self.searcher.search(
            &TermQuery::new(version, IndexRecordOption::Basic),
            &DocSetCollector,
        )? {
            let doc: TantivyDocument = self.searcher.doc(address)?;
            out.extend(
                doc.get_all(self.fields.imports)
                    .filter_map(|v| v.as_str().map(str::to_string)),
            );
        }
        Ok(out)
    }

    /// Is this commit's document in the history lane?
    pub fn has_history_commit(&self, id: &str) -> bool {
        let term = Term::from_field_text(self.fields.hist_id, id);
        self.searcher
            .search(
                &TermQuery::new(term, IndexRecordOption::Basic),
                &tantivy::collector::Count,
            )
            .is_ok_and(|n| n > 0)
    }

    fn history_until(&self, time: i64) -> Box<dyn Query> {
        Box::new(ConstScoreQuery::new(
            Box::new(tantivy::query::RangeQuery::new(
                std::ops::Bound::Unbounded,
                std::ops::Bound::Included(Term::from_field_i64(self.fields.hist_time, time)),
            )),
            0.0,
        ))
    }

    /// The files changed by past commits (up to the ref's commit time) that changed `path`:
    /// one list per commit, at most `limit` commits (the first in index order).
    pub fn commits_with(&self, path: &str, limit: usize) -> Result<Vec<Vec<String>>> {
        let term = Term::from_field_text(self.fields.hist_path, path);
        let mut must: Vec<(Occur, Box<dyn Query>)> = vec![(
            Occur::Must,
            Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
        )];
        if let Some(before) = self.ref_state().and_then(|r| r.commit_time) {
            must.push((Occur::Must, self.history_until(before)));
        }
        let mut addresses: Vec<_> = self
            .searcher
            .search(&BooleanQuery::new(must), &DocSetCollector)?
            .into_iter()
            .collect();
        addresses.sort();
        addresses.truncate(limit);
        let mut out = Vec::with_capacity(addresses.len());
        for address in addresses {
            let doc: TantivyDocument = self.searcher.doc(address)?;
            out.push(
                doc.get_all(self.fields.hist_path)
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            );
        }
        Ok(out)
    }

    /// How many past commits (up to the ref's commit time) changed `path`, and how many of
    /// those also changed `with` when given.
    pub fn commits_touching(&self, path: &str, with: Option<&str>) -> Result<u64> {
        let mut must: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for p in std::iter::once(path).chain(with) {
            let term = Term::from_field_text(self.fields.hist_path, p);
            must.push((
                Occur::Must,
                Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
            ));
        }
        if let Some(before) = self.ref_state().and_then(|r| r.commit_time) {
            must.push((Occur::Must, self.history_until(before)));
        }
        Ok(self
            .searcher
            .search(&BooleanQuery::new(must), &tantivy::collector::Count)? as u64)
    }

    /// BM25 search; an empty result is not an error, a query without words is.
    pub fn search(&self, q: &LexicalQuery) -> Result<Vec<(f32, Chunk)>> {
        let words: Vec<(String, f32)> = match &q.terms {
            Some(terms) => terms.clone(),
            None => tokenize(&q.text)
                .into_iter()
                .collect::<BTreeSet<String>>()
                .into_iter()
                .map(|w| (w, 1.0))
                .collect(),
        };
        if words.is_empty() {
            return Err(Error::invalid(format!(
                "query {} has no searchable words (letters or digits)",
                quote_clipped(&q.text)
            )));
        }
        let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (word, weight) in &words {
            for (name, boost) in BOOSTS {
                let term = Term::from_field_text(self.fields.text(*name), word);
                let query = TermQuery::new(term, IndexRecordOption::WithFreqs);
                should.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(Box::new(query), boost * weight)),
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
        let top = self.top(&query, q.limit.max(1))?;
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
