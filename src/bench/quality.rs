//! `codectx bench quality`: retrieval quality on a dataset of (query, gold locations) over
//! real repositories, for the lexical, dense and hybrid rankings and for context packs at
//! several budgets, each read against a whole-file BM25 baseline measured in the same run
//! (the retrieval baseline of the SWE-bench paper). Output: Markdown, JSON and an SVG plot.

use super::metrics::{self, Gold, Span};
use crate::engine::{Engine, IndexOptions, NoProgress};
use crate::error::{Error, Result};
use crate::index::tokenizer::{CODE_TOKENIZER, CodeTokenizer, tokenize};
use crate::retrieve::context::ContextRequest;
use crate::retrieve::{SearchMode, SearchRequest};
use crate::source::git;
use crate::tokens::TokenCounter;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::{Index, TantivyDocument, Term, doc};

/// One dataset line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    /// A local repository or directory (relative to the dataset file).
    pub repo: String,
    /// The commit to index and query; absent: the checkout (or the files of a directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub query: String,
    pub gold: Vec<Gold>,
    /// `dev` or `test` (held out), when the builder split the dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
}

/// A dataset line that cannot be used, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub line: usize,
    pub reason: String,
}

/// Reads a JSONL dataset; unusable lines become problems with their line number.
/// Dataset entries with their 1-based line numbers.
pub type Numbered = Vec<(usize, Entry)>;

pub fn load(path: &Path) -> Result<(Numbered, Vec<Problem>)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let mut entry: Entry = match serde_json::from_str(line) {
            Ok(e) => e,
            Err(e) => {
                problems.push(Problem {
                    line: n,
                    reason: format!("not a dataset entry: {e}"),
                });
                continue;
            }
        };
        if entry.query.trim().is_empty() || entry.gold.is_empty() {
            problems.push(Problem {
                line: n,
                reason: "an entry needs a query and at least one gold location".into(),
            });
            continue;
        }
        let repo = base.join(&entry.repo);
        if !repo.is_dir() {
            problems.push(Problem {
                line: n,
                reason: format!("repository {} does not exist", repo.display()),
            });
            continue;
        }
        entry.repo = repo.display().to_string();
        entries.push((n, entry));
    }
    Ok((entries, problems))
}

/// What a quality run measures.
#[derive(Debug, Clone)]
pub struct QualityOptions {
    pub dataset: PathBuf,
    /// Ranking modes to measure (lexical, dense, hybrid); packs too when `context` is set.
    pub modes: Vec<SearchMode>,
    pub context: bool,
    pub budgets: Vec<usize>,
    pub tokenizer: String,
    /// Only the first n usable entries.
    pub limit: Option<usize>,
    /// At most this many entries per repository and commit (a sample across packages).
    pub per_repo: Option<usize>,
    /// Only entries of this split (`dev`, `test`).
    pub split: Option<String>,
    /// Where to write `quality.md`, `quality.json` and `quality.svg`.
    pub out: Option<PathBuf>,
    /// The fusion the rankings and packs use (to judge a change of weights by numbers).
    pub fusion: crate::retrieve::Fusion,
    /// Write every query's candidate files with their ranking features and gold labels here
    /// (JSONL, a header line naming the features): the training data of the ranking model.
    pub features_out: Option<PathBuf>,
}

/// Averages over the queries for one ranking.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RankingScores {
    pub name: String,
    pub queries: usize,
    pub acc: BTreeMap<usize, f64>,
    pub recall: BTreeMap<usize, f64>,
    pub mrr: f64,
    pub ndcg10: f64,
    /// Share of gold locations a top-10 chunk overlaps (for the whole-file baseline: a
    /// top-10 file).
    pub chunk_recall10: f64,
}

/// Gold-line recall of packs per budget, for one packer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PackScores {
    pub name: String,
    pub queries: usize,
    pub line_recall: BTreeMap<usize, f64>,
    pub mean_tokens: BTreeMap<usize, f64>,
}

/// A quality run's result.
#[derive(Debug, Clone, Serialize)]
pub struct QualityReport {
    pub dataset: String,
    pub queries: usize,
    pub problems: Vec<Problem>,
    pub rankings: Vec<RankingScores>,
    pub packs: Vec<PackScores>,
    /// Each query's gold-line recall per packer and budget (to see which queries a change
    /// moved, not just the means).
    pub per_query: Vec<QueryPacks>,
    /// Each packer against the whole-file baseline, query by query, per budget.
    pub against_baseline: Vec<PackComparison>,
    /// Each ranking against the whole-file baseline, query by query (Acc@1, Acc@5, MRR).
    pub rankings_against_baseline: Vec<RankingComparison>,
    /// What ranked the files (the model's id, or `rrf`).
    pub ranker: String,
    pub seconds: f64,
}

/// One ranking's metric minus the baseline's, paired over the queries.
#[derive(Debug, Clone, Serialize)]
pub struct RankingComparison {
    pub ranking: String,
    pub metric: String,
    pub paired: metrics::Paired,
}

/// The per-query metrics compared with the baseline.
const PAIRED_METRICS: [&str; 3] = ["Acc@1", "Acc@5", "MRR"];

fn paired_metrics(ranked: &[String], gold: &[Gold]) -> [f64; 3] {
    [
        metrics::acc_at_k(ranked, gold, 1),
        metrics::acc_at_k(ranked, gold, 5),
        metrics::mrr(ranked, gold),
    ]
}

/// Every ranking but the baseline against the baseline, per metric.
fn rankings_against_baseline(
    per_query: &BTreeMap<String, Vec<[f64; 3]>>,
) -> Vec<RankingComparison> {
    let Some(base) = per_query.get(BASELINE) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, rows) in per_query.iter().filter(|(n, _)| **n != BASELINE) {
        for (m, metric) in PAIRED_METRICS.iter().enumerate() {
            let diffs: Vec<f64> = rows.iter().zip(base).map(|(a, b)| a[m] - b[m]).collect();
            out.push(RankingComparison {
                ranking: name.clone(),
                metric: metric.to_string(),
                paired: metrics::paired_bootstrap(&diffs),
            });
        }
    }
    out
}

/// One packer's gold-line recall minus the baseline's, paired over the queries.
#[derive(Debug, Clone, Serialize)]
pub struct PackComparison {
    pub packer: String,
    pub budget: usize,
    pub paired: metrics::Paired,
}

/// Every packer but the baseline against the baseline, at every budget both were run at.
fn against_baseline(per_query: &[QueryPacks]) -> Vec<PackComparison> {
    let mut diffs: BTreeMap<(String, usize), Vec<f64>> = BTreeMap::new();
    for q in per_query {
        let Some(base) = q.packs.get(BASELINE_PACK) else {
            continue;
        };
        for (packer, recalls) in q.packs.iter().filter(|(name, _)| **name != *BASELINE_PACK) {
            for (budget, recall) in recalls {
                if let Some(b) = base.get(budget) {
                    diffs
                        .entry((packer.clone(), *budget))
                        .or_default()
                        .push(recall - b);
                }
            }
        }
    }
    diffs
        .into_iter()
        .map(|((packer, budget), d)| PackComparison {
            packer,
            budget,
            paired: metrics::paired_bootstrap(&d),
        })
        .collect()
}

/// One query's pack recalls: packer name -> budget -> gold-line recall.
#[derive(Debug, Clone, Serialize)]
pub struct QueryPacks {
    pub line: usize,
    pub id: String,
    pub packs: BTreeMap<String, BTreeMap<usize, f64>>,
}

const KS: [usize; 4] = [1, 3, 5, 10];
const BASELINE: &str = "whole-file BM25";
/// The baseline's packer, named after its ranking.
const BASELINE_PACK: &str = "whole-file BM25 pack";

/// A whole-file BM25 index of one commit: the baseline's ranking and its files' text.
struct FileBaseline {
    index: Index,
    path_field: tantivy::schema::Field,
    content_field: tantivy::schema::Field,
    texts: HashMap<String, String>,
}

impl FileBaseline {
    fn build(texts: HashMap<String, String>) -> Result<FileBaseline> {
        let mut schema = Schema::builder();
        let path_field = schema.add_text_field("path", STRING | STORED);
        let content_field = schema.add_text_field(
            "content",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(CODE_TOKENIZER)
                    .set_index_option(IndexRecordOption::WithFreqs),
            ),
        );
        let index = Index::create_in_ram(schema.build());
        index.tokenizers().register(CODE_TOKENIZER, CodeTokenizer);
        let mut writer = index.writer_with_num_threads(1, 64 * 1024 * 1024)?;
        for (path, text) in &texts {
            // The path's words count too, as in the chunk index.
            writer.add_document(
                doc!(path_field => path.as_str(), content_field => format!("{path}\n{text}")),
            )?;
        }
        writer.commit()?;
        Ok(FileBaseline {
            index,
            path_field,
            content_field,
            texts,
        })
    }

    fn rank(&self, query: &str, limit: usize) -> Result<Vec<String>> {
        let words: std::collections::BTreeSet<String> = tokenize(query).into_iter().collect();
        let should: Vec<(Occur, Box<dyn Query>)> = words
            .iter()
            .map(|w| {
                let term = Term::from_field_text(self.content_field, w);
                (
                    Occur::Should,
                    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)) as Box<dyn Query>,
                )
            })
            .collect();
        let searcher = self.index.reader()?.searcher();
        let top = searcher.search(
            &BooleanQuery::new(should),
            &TopDocs::with_limit(limit.max(1)).order_by_score(),
        )?;
        let mut out = Vec::with_capacity(top.len());
        for (_, address) in top {
            let d: TantivyDocument = searcher.doc(address)?;
            if let Some(p) = d.get_first(self.path_field).and_then(|v| v.as_str()) {
                out.push(p.to_string());
            }
        }
        Ok(out)
    }

    fn lines(&self, path: &str) -> usize {
        self.texts.get(path).map_or(0, |t| t.lines().count())
    }

    /// Whole files in ranking order while they fit (the SWE-bench paper's BM25 packing):
    /// each costs its tokens plus a path header.
    fn pack(
        &self,
        ranked: &[String],
        budget: usize,
        counter: &dyn TokenCounter,
        cache: &mut HashMap<String, usize>,
    ) -> (Vec<Span>, usize) {
        let mut used = 0;
        let mut spans = Vec::new();
        for path in ranked {
            let Some(text) = self.texts.get(path) else {
                continue;
            };
            // Rendered like a pack's item (and like SWE-bench's prompts): numbered lines.
            let cost = *cache.entry(path.clone()).or_insert_with(|| {
                let width = text.lines().count().to_string().len();
                let mut block = format!("### {path}\n```\n");
                for (i, line) in text.lines().enumerate() {
                    block.push_str(&format!("{:>width$}  {line}\n", i + 1));
                }
                block.push_str("```\n\n");
                counter.count(&block)
            });
            if used + cost > budget {
                continue;
            }
            used += cost;
            spans.push(Span {
                path: path.clone(),
                start_line: 1,
                end_line: text.lines().count().max(1),
            });
        }
        (spans, used)
    }
}

/// The text of every indexed file of a ref, redacted like the index.
fn file_texts(
    engine: &Engine,
    repo: &Path,
    commit: Option<&str>,
) -> Result<HashMap<String, String>> {
    let snapshot = engine.snapshot_of(repo, commit)?;
    let state_commit = snapshot.ref_state().and_then(|s| s.commit.clone());
    let mut out = HashMap::new();
    // One `git cat-file --batch` for the whole tree, not a process per file.
    let mut blobs = match &state_commit {
        Some(_) => Some(git::BlobReader::start(repo)?),
        None => None,
    };
    for path in snapshot.paths()? {
        let bytes = match (&state_commit, blobs.as_mut()) {
            (Some(c), Some(reader)) => reader.read(&format!("{c}:{path}"))?,
            _ => std::fs::read(repo.join(&path)).ok(),
        };
        if let Some(bytes) = bytes {
            let text = crate::redact::redact(&String::from_utf8_lossy(&bytes)).text;
            out.insert(path, text);
        }
    }
    Ok(out)
}

/// Does the gold path exist at the commit (or on disk)?
fn gold_exists(repo: &Path, commit: Option<&str>, path: &str) -> bool {
    match commit {
        Some(c) => git::show_file(repo, c, path).is_some(),
        None => repo.join(path).is_file(),
    }
}

#[derive(Default)]
struct Sums {
    n: usize,
    acc: BTreeMap<usize, f64>,
    recall: BTreeMap<usize, f64>,
    mrr: f64,
    ndcg: f64,
    chunk: f64,
}

impl Sums {
    fn add(&mut self, ranked: &[String], spans: &[Span], gold: &[Gold]) {
        self.n += 1;
        for k in KS {
            *self.acc.entry(k).or_default() += metrics::acc_at_k(ranked, gold, k);
            *self.recall.entry(k).or_default() += metrics::recall_at_k(ranked, gold, k);
        }
        self.mrr += metrics::mrr(ranked, gold);
        self.ndcg += metrics::ndcg_at_k(ranked, gold, 10);
        self.chunk += metrics::chunk_recall_at_k(spans, gold, 10);
    }

    fn scores(&self, name: &str) -> RankingScores {
        let n = self.n.max(1) as f64;
        RankingScores {
            name: name.to_string(),
            queries: self.n,
            acc: self.acc.iter().map(|(k, v)| (*k, v / n)).collect(),
            recall: self.recall.iter().map(|(k, v)| (*k, v / n)).collect(),
            mrr: self.mrr / n,
            ndcg10: self.ndcg / n,
            chunk_recall10: self.chunk / n,
        }
    }
}

#[derive(Default)]
struct PackSums {
    n: usize,
    recall: BTreeMap<usize, f64>,
    tokens: BTreeMap<usize, f64>,
}

impl PackSums {
    fn scores(&self, name: &str) -> PackScores {
        let n = self.n.max(1) as f64;
        PackScores {
            name: name.to_string(),
            queries: self.n,
            line_recall: self.recall.iter().map(|(k, v)| (*k, v / n)).collect(),
            mean_tokens: self.tokens.iter().map(|(k, v)| (*k, v / n)).collect(),
        }
    }
}

/// Runs the benchmark. Entries are grouped by repository and commit; each group is indexed
/// once (refs share storage, and the embedding cache spares unchanged chunks the model).
pub fn run(engine: &Engine, options: &QualityOptions) -> Result<QualityReport> {
    let started = Instant::now();
    let (mut entries, mut problems) = load(&options.dataset)?;
    if let Some(split) = &options.split {
        entries.retain(|(_, e)| e.split.as_deref() == Some(split.as_str()));
    }
    let counter = engine.token_counter(&options.tokenizer)?;
    let dense = options.modes.iter().any(|m| *m != SearchMode::Lexical);
    let mut groups: BTreeMap<(String, Option<String>), Numbered> = BTreeMap::new();
    for (n, e) in entries {
        groups
            .entry((e.repo.clone(), e.commit.clone()))
            .or_default()
            .push((n, e));
    }
    // Within a repository, commits in history order: each index is then a small diff
    // from the one before.
    let mut ordered: Vec<((String, Option<String>), Numbered)> = groups.into_iter().collect();
    let mut times: HashMap<(String, Option<String>), i64> = HashMap::new();
    for (key, _) in &ordered {
        let t = key
            .1
            .as_deref()
            .and_then(|c| git::commit_time(Path::new(&key.0), c))
            .unwrap_or(0);
        times.insert(key.clone(), t);
    }
    ordered.sort_by(|(a, _), (b, _)| (&a.0, times[a], &a.1).cmp(&(&b.0, times[b], &b.1)));
    let mut features_out = match &options.features_out {
        Some(path) => {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(path).map_err(|e| Error::io(path, e))?,
            );
            write_line(
                &mut f,
                path,
                &serde_json::json!({ "features": crate::retrieve::rank::FEATURES }),
            )?;
            Some((f, path.clone()))
        }
        None => None,
    };
    let mut rank_sums: BTreeMap<String, Sums> = BTreeMap::new();
    let mut pack_sums: BTreeMap<String, PackSums> = BTreeMap::new();
    let mut per_query: Vec<QueryPacks> = Vec::new();
    let mut per_query_rankings: BTreeMap<String, Vec<[f64; 3]>> = BTreeMap::new();
    let mut ranker = String::new();
    let mut used = 0usize;
    // The ref this run indexed last, when it was not indexed before: it is forgotten once
    // the next one is indexed, so that the index holds what one commit holds (BM25
    // statistics of that commit, not of every commit queried).
    let mut created: Option<(PathBuf, String)> = None;
    'groups: for ((repo, commit), group) in ordered {
        if options.limit.is_some_and(|l| used >= l) {
            break;
        }
        let repo = PathBuf::from(repo);
        let commit = match &commit {
            Some(c) if git::is_repository_root(&repo) && git::commit_exists(&repo, c) => {
                Some(c.clone())
            }
            Some(c) => {
                for (n, _) in &group {
                    problems.push(Problem {
                        line: *n,
                        reason: format!("commit {c} is not in {}", repo.display()),
                    });
                }
                continue;
            }
            None => None,
        };
        let index_options = IndexOptions {
            ref_name: commit.clone(),
            embed_before_commit: if dense {
                crate::ingest::EMBED_BEFORE_COMMIT
            } else {
                0
            },
            ..IndexOptions::default()
        };
        let known = indexed_refs(engine, &repo);
        let indexed = engine
            .index_with(&repo, &index_options, &NoProgress)
            .and_then(|_| {
                if dense {
                    engine.embed_behind(&repo, &NoProgress)?;
                }
                Ok(())
            });
        if let Err(e) = indexed {
            for (n, _) in &group {
                problems.push(Problem {
                    line: *n,
                    reason: format!("indexing {}: {e}", repo.display()),
                });
            }
            continue;
        }
        if let Some((r, name)) = created.take() {
            forget_quietly(engine, &r, &name);
        }
        if let Some(c) = &commit
            && !known.iter().any(|k| k == c || k.ends_with(c.as_str()))
        {
            created = Some((repo.clone(), c.clone()));
        }
        let baseline = FileBaseline::build(file_texts(engine, &repo, commit.as_deref())?)?;
        let mut token_cache = HashMap::new();
        let mut in_group = 0usize;
        for (n, entry) in group {
            if options.limit.is_some_and(|l| used >= l) {
                break 'groups;
            }
            if options.per_repo.is_some_and(|l| in_group >= l) {
                break;
            }
            if let Some(g) = entry
                .gold
                .iter()
                .find(|g| !gold_exists(&repo, commit.as_deref(), &g.path))
            {
                problems.push(Problem {
                    line: n,
                    reason: format!(
                        "gold path {:?} does not exist at {}",
                        g.path,
                        commit.as_deref().unwrap_or("the files on disk")
                    ),
                });
                continue;
            }
            used += 1;
            in_group += 1;
            let mut this_query = QueryPacks {
                line: n,
                id: entry.id.clone(),
                packs: BTreeMap::new(),
            };
            for mode in &options.modes {
                let request = SearchRequest {
                    k: 10,
                    mode: *mode,
                    ref_name: commit.clone(),
                    fusion: options.fusion,
                    ..SearchRequest::new(entry.query.clone())
                };
                let (ranked, spans) = match engine.search(&repo, &request) {
                    Ok(r) => {
                        ranker = r.ranker.clone();
                        if let Some((out, path)) = features_out.as_mut() {
                            let gold = metrics::gold_files(&entry.gold);
                            let labels: Vec<u8> = r
                                .candidates
                                .iter()
                                .map(|c| u8::from(gold.contains(c.path.as_str())))
                                .collect();
                            write_line(
                                out,
                                path,
                                &serde_json::json!({
                                    "id": entry.id,
                                    "split": entry.split,
                                    "mode": mode_name(*mode),
                                    "gold": gold.len(),
                                    "paths": r.candidates.iter().map(|c| &c.path).collect::<Vec<_>>(),
                                    "labels": labels,
                                    "x": r.candidates.iter().map(|c| &c.x).collect::<Vec<_>>(),
                                }),
                            )?;
                        }
                        (
                            r.files.iter().map(|f| f.path.clone()).collect::<Vec<_>>(),
                            r.hits
                                .iter()
                                .map(|h| Span {
                                    path: h.chunk.path.clone(),
                                    start_line: h.chunk.span.start_line,
                                    end_line: h.chunk.span.end_line,
                                })
                                .collect::<Vec<_>>(),
                        )
                    }
                    Err(e) if e.kind() == crate::ErrorKind::InvalidInput => {
                        (Vec::new(), Vec::new())
                    }
                    Err(e) => return Err(e),
                };
                per_query_rankings
                    .entry(mode_name(*mode).to_string())
                    .or_default()
                    .push(paired_metrics(&ranked, &entry.gold));
                rank_sums
                    .entry(mode_name(*mode).to_string())
                    .or_default()
                    .add(&ranked, &spans, &entry.gold);
                if options.context {
                    let name = format!("context pack ({})", mode_name(*mode));
                    let sums = pack_sums.entry(name.clone()).or_default();
                    sums.n += 1;
                    for &budget in &options.budgets {
                        let mut request = ContextRequest::new(entry.query.clone(), budget);
                        request.ref_name = commit.clone();
                        request.mode = *mode;
                        request.fusion = options.fusion;
                        request.tokenizer = options.tokenizer.clone();
                        let pack = engine.context(&repo, &request)?;
                        let spans: Vec<Span> = pack
                            .items
                            .iter()
                            .map(|i| Span {
                                path: i.path.clone(),
                                start_line: i.start_line,
                                end_line: match i.form {
                                    crate::retrieve::context::ItemForm::Full => i.end_line,
                                    crate::retrieve::context::ItemForm::Signature => {
                                        i.start_line + i.text.lines().count().saturating_sub(1)
                                    }
                                },
                            })
                            .collect();
                        let recall =
                            metrics::line_recall(&spans, &entry.gold, &|p| baseline.lines(p));
                        *sums.recall.entry(budget).or_default() += recall;
                        *sums.tokens.entry(budget).or_default() += pack.tokens_used as f64;
                        this_query
                            .packs
                            .entry(name.clone())
                            .or_default()
                            .insert(budget, recall);
                    }
                }
            }
            let ranked = baseline.rank(&entry.query, 200)?;
            let spans: Vec<Span> = ranked
                .iter()
                .take(10)
                .map(|p| Span {
                    path: p.clone(),
                    start_line: 1,
                    end_line: baseline.lines(p).max(1),
                })
                .collect();
            per_query_rankings
                .entry(BASELINE.to_string())
                .or_default()
                .push(paired_metrics(&ranked, &entry.gold));
            rank_sums
                .entry(BASELINE.to_string())
                .or_default()
                .add(&ranked, &spans, &entry.gold);
            if options.context {
                let sums = pack_sums.entry(BASELINE_PACK.to_string()).or_default();
                sums.n += 1;
                for &budget in &options.budgets {
                    let (spans, tokens) =
                        baseline.pack(&ranked, budget, counter.as_ref(), &mut token_cache);
                    let recall = metrics::line_recall(&spans, &entry.gold, &|p| baseline.lines(p));
                    *sums.recall.entry(budget).or_default() += recall;
                    *sums.tokens.entry(budget).or_default() += tokens as f64;
                    this_query
                        .packs
                        .entry(BASELINE_PACK.to_string())
                        .or_default()
                        .insert(budget, recall);
                }
            }
            per_query.push(this_query);
        }
    }
    if let Some((r, name)) = created.take() {
        forget_quietly(engine, &r, &name);
    }
    if let Some((mut out, path)) = features_out {
        use std::io::Write;
        out.flush().map_err(|e| Error::io(&path, e))?;
    }
    problems.sort_by_key(|p| p.line);
    let order = |name: &str| match name {
        "lexical" => 0,
        "dense" => 1,
        "hybrid" => 2,
        _ => 3,
    };
    let mut rankings: Vec<RankingScores> = rank_sums.iter().map(|(k, s)| s.scores(k)).collect();
    rankings.sort_by_key(|r| order(&r.name));
    let mut packs: Vec<PackScores> = pack_sums.iter().map(|(k, s)| s.scores(k)).collect();
    packs.sort_by_key(|p| (p.name.starts_with(BASELINE), p.name.clone()));
    Ok(QualityReport {
        dataset: options.dataset.display().to_string(),
        queries: used,
        problems,
        rankings,
        packs,
        against_baseline: against_baseline(&per_query),
        rankings_against_baseline: rankings_against_baseline(&per_query_rankings),
        ranker,
        per_query,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The refs indexed in a repository's index now (none when it has no index).
fn indexed_refs(engine: &Engine, repo: &Path) -> Vec<String> {
    engine
        .status(repo)
        .map(|s| s.refs.into_iter().map(|r| r.name).collect())
        .unwrap_or_default()
}

/// Forgets a ref this run indexed; a failure is logged, never fatal to the run.
fn forget_quietly(engine: &Engine, repo: &Path, name: &str) {
    if let Err(e) = engine.forget_ref(repo, name) {
        tracing::warn!("forgetting {name} in {}: {e}", repo.display());
    }
}

fn write_line(out: &mut impl std::io::Write, path: &Path, value: &serde_json::Value) -> Result<()> {
    writeln!(out, "{value}").map_err(|e| Error::io(path, e))
}

fn mode_name(mode: SearchMode) -> &'static str {
    match mode {
        SearchMode::Lexical => "lexical",
        SearchMode::Dense => "dense",
        SearchMode::Hybrid => "hybrid",
    }
}

/// The report as Markdown tables.
pub fn markdown(report: &QualityReport) -> String {
    let mut out = format!(
        "{} queries from `{}` in {:.0} s ({} lines left out)\n\n",
        report.queries,
        report.dataset,
        report.seconds,
        report.problems.len()
    );
    out.push_str("| ranking | Acc@1 | Acc@3 | Acc@5 | Acc@10 | R@1 | R@3 | R@5 | R@10 | MRR | nDCG@10 | chunk R@10 |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in &report.rankings {
        out.push_str(&format!("| {} |", r.name));
        for k in KS {
            out.push_str(&format!(" {:.3} |", r.acc.get(&k).copied().unwrap_or(0.0)));
        }
        for k in KS {
            out.push_str(&format!(
                " {:.3} |",
                r.recall.get(&k).copied().unwrap_or(0.0)
            ));
        }
        out.push_str(&format!(
            " {:.3} | {:.3} | {:.3} |\n",
            r.mrr, r.ndcg10, r.chunk_recall10
        ));
    }
    if !report.rankings_against_baseline.is_empty() {
        out.push_str(&format!(
            "\nFiles ranked by `{}`. Ranking minus whole-file baseline, paired over queries: \
             mean [95% bootstrap interval] wins/losses:\n\n| ranking | metric | mean | \
             interval | wins | losses |\n|---|---|---|---|---|---|\n",
            report.ranker
        ));
        for c in &report.rankings_against_baseline {
            let p = &c.paired;
            out.push_str(&format!(
                "| {} | {} | {:+.3} | [{:+.3}, {:+.3}] | {} | {} |\n",
                c.ranking, c.metric, p.mean, p.low, p.high, p.wins, p.losses
            ));
        }
    }
    if let Some(first) = report.packs.first() {
        out.push_str("\nGold-line recall of the pack (mean tokens used) per budget:\n\n| packer |");
        for b in first.line_recall.keys() {
            out.push_str(&format!(" {b} |"));
        }
        out.push_str("\n|---|");
        for _ in first.line_recall.keys() {
            out.push_str("---|");
        }
        out.push('\n');
        for p in &report.packs {
            out.push_str(&format!("| {} |", p.name));
            for (b, r) in &p.line_recall {
                out.push_str(&format!(
                    " {:.3} ({:.0}) |",
                    r,
                    p.mean_tokens.get(b).copied().unwrap_or(0.0)
                ));
            }
            out.push('\n');
        }
    }
    if !report.against_baseline.is_empty() {
        out.push_str(&format!(
            "\nPack minus whole-file baseline, paired over queries: mean [95% bootstrap \
             interval of {} resamples] wins/losses:\n\n| packer | budget | mean | interval | \
             wins | losses |\n|---|---|---|---|---|---|\n",
            metrics::BOOTSTRAP_RESAMPLES
        ));
        for c in &report.against_baseline {
            let p = &c.paired;
            out.push_str(&format!(
                "| {} | {} | {:+.3} | [{:+.3}, {:+.3}] | {} | {} |\n",
                c.packer, c.budget, p.mean, p.low, p.high, p.wins, p.losses
            ));
        }
    }
    for p in report.problems.iter().take(20) {
        out.push_str(&format!("\n- line {}: {}", p.line, p.reason));
    }
    if report.problems.len() > 20 {
        out.push_str(&format!(
            "\n- ... and {} more (all of them in the JSON)",
            report.problems.len() - 20
        ));
    }
    out.push('\n');
    out
}

/// Gold-line recall against budget, one line per packer, as a standalone SVG.
pub fn svg(report: &QualityReport) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 420.0, 60.0, 200.0, 30.0, 50.0);
    let budgets: Vec<usize> = report
        .packs
        .first()
        .map(|p| p.line_recall.keys().copied().collect())
        .unwrap_or_default();
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let x = |i: usize| {
        left + if budgets.len() > 1 {
            plot_w * i as f64 / (budgets.len() - 1) as f64
        } else {
            plot_w / 2.0
        }
    };
    let y = |v: f64| top + plot_h * (1.0 - v.clamp(0.0, 1.0));
    let colors = [
        "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
    ];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"18\" font-size=\"14\">Gold-line recall of the pack against the token budget</text>\n"
    );
    for t in 0..=5 {
        let v = t as f64 / 5.0;
        s.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"#ddd\"/><text x=\"{2}\" y=\"{3:.1}\" text-anchor=\"end\">{v:.1}</text>\n",
            y(v),
            left + plot_w,
            left - 6.0,
            y(v) + 4.0
        ));
    }
    for (i, b) in budgets.iter().enumerate() {
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{b}</text>\n",
            x(i),
            top + plot_h + 18.0
        ));
    }
    s.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">budget (tokens)</text>\n",
        left + plot_w / 2.0,
        h - 10.0
    ));
    for (n, p) in report.packs.iter().enumerate() {
        let color = colors[n % colors.len()];
        let dash = if p.name.starts_with(BASELINE) {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let points: Vec<String> = p
            .line_recall
            .values()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        s.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{dash} points=\"{}\"/>\n",
            points.join(" ")
        ));
        for pt in &points {
            let (px, py) = pt.split_once(',').unwrap_or(("0", "0"));
            s.push_str(&format!(
                "<circle cx=\"{px}\" cy=\"{py}\" r=\"3\" fill=\"{color}\"/>\n"
            ));
        }
        let ly = top + 16.0 * n as f64 + 10.0;
        s.push_str(&format!(
            "<line x1=\"{0:.1}\" y1=\"{ly:.1}\" x2=\"{1:.1}\" y2=\"{ly:.1}\" stroke=\"{color}\" stroke-width=\"2\"{dash}/><text x=\"{2:.1}\" y=\"{3:.1}\">{4}</text>\n",
            left + plot_w + 12.0,
            left + plot_w + 36.0,
            left + plot_w + 42.0,
            ly + 4.0,
            p.name
        ));
    }
    s.push_str("</svg>\n");
    s
}
