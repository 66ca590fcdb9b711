//! The file ranking stage: candidate files from every lane (chunk BM25, whole-file BM25,
//! dense, the paths, frames, dotted names and definitions a task names), a feature vector
//! per candidate, and a score from the learned model ([`super::ranker`]) or, when no model
//! can be used, from reciprocal rank fusion of the lanes.
//!
//! Architecture Invariant: every feature is computed the same way at training time
//! (`bench quality --features-out`) and at query time (this module is the only place
//! that computes them), and the model names the features it uses, so a model and a build
//! that disagree are detected when the model is read, never by wrong answers.

use super::ranker::{Contribution, Ranker};
use super::task::TaskSignals;
use crate::error::Result;
use crate::index::lexical::Snapshot;
use crate::index::tokenizer::tokenize;
use crate::model::{Chunk, Language};
use crate::source::classify::detect_language;
use crate::syntax::imports::{module_key, module_parts};
use regex::Regex;
use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

/// The features of a candidate file, in the order of its feature vector. Models name the
/// ones they use; a new feature goes at the end.
pub const FEATURES: &[&str] = &[
    // Chunk-level BM25 lane (the weighted task terms over content, symbols, path, scope).
    "lex_rank",   // 1 / rank of the file's best chunk
    "lex_score",  // best chunk's BM25 / the lane's best
    "lex_chunks", // ln(1 + chunks of the file in the lane)
    "lex_sum",    // sum over its chunks in the lane of BM25 / the lane's best
    // Whole-file BM25 of the weighted terms (aggregated from chunk postings).
    "file_rank",  // 1 / rank
    "file_score", // BM25 / the best file's
    "file_norm",  // BM25 / the sum of the query's term weights
    // Dense lane (0 when it did not answer).
    "dense_rank",
    "dense_score",
    "dense_on",
    // What the task names.
    "path_terms", // weight of query terms among the path's words / the strongest weight
    "stem_term",  // weight of the file's stem as a query term / the strongest weight
    "module_match", // longest run of a dotted name matching the file's module path
    "mentioned",  // the task names this file (a path in prose)
    "frame",      // 1 / (1 + position) of a stack frame in this file, failing first
    "frame_count", // stack frames in this file
    "defines",    // named identifiers defined here, each 1 / (files defining it)
    "defines_count",
    // What kind of file it is.
    "is_test",
    "is_doc",
    "is_config",
    "is_example",
    "is_ci",
    "is_init",
    "is_vendor",
    "is_code",
    "size", // ln(1 + content tokens)
    "depth",
    // The query.
    "q_terms", // ln(1 + terms)
    "q_frames",
    "q_identifiers",
    // History: past commits whose messages match the task, and what changes together.
    "hist_score", // sum over matching commits of BM25 / sqrt(files changed), / the best file's
    "hist_rank",  // 1 / rank of the file in that order
    "hist_commits", // ln(1 + matching commits that changed it)
    "churn",      // ln(1 + past commits that changed it)
    "cochange",   // the most of its commits shared with a top lexical file, / that file's
    // The import graph.
    "imported_by", // ln(1 + files importing it)
    "graph_top",   // it imports, or is imported by, a top lexical file
    "graph_frame", // a file of the stack trace imports it
    // The task's title (its first line, when it has more): what an issue is about.
    "title_score", // whole-file BM25 of the title's terms / the best file's
    "title_rank",  // 1 / rank in that order
];

fn col(name: &str) -> usize {
    FEATURES
        .iter()
        .position(|f| *f == name)
        .unwrap_or_else(|| panic!("unknown feature {name}"))
}

/// How deep the chunk lane reads for candidate files.
pub const LEXICAL_DEPTH: usize = 200;
/// How many of the whole-file BM25 ranking become candidates.
const FILE_DEPTH: usize = 50;
/// How many of the title's whole-file BM25 ranking become candidates.
const TITLE_DEPTH: usize = 10;
/// Definitions read per named identifier.
const DEFS_PER_NAME: usize = 6;
/// A stem shared by more files than this names none of them.
const STEM_FILES: usize = 4;
/// Past commits the history lane reads, and the files of it that become candidates.
const HISTORY_DEPTH: usize = 50;
const HISTORY_FILES: usize = 20;
/// The top lexical files whose co-changes are counted, and the commits read per file.
const COCHANGE_FILES: usize = 3;
const COCHANGE_COMMITS: usize = 300;
/// Files a top or frame file imports that become candidates, per file.
const IMPORTED_FILES: usize = 15;

/// What the ranking stage reads.
pub struct RankInput<'a> {
    pub task: &'a str,
    pub signals: &'a TaskSignals,
    pub terms: &'a [(String, f32)],
    /// The chunk BM25 lane, best first.
    pub lexical: &'a [(f32, Chunk)],
    /// The dense lane, best first; `None` when it did not answer.
    pub dense: Option<&'a [(f32, Chunk)]>,
    /// The request's path filter (resolved from its glob) and language filter: candidates
    /// from lanes that do not filter (whole-file BM25, names, paths) are held to them.
    pub paths: Option<&'a BTreeSet<String>>,
    pub language: Option<Language>,
}

/// A candidate file and its features (the order of [`FEATURES`]).
#[derive(Debug, Clone)]
pub struct FileFeatures {
    pub path: String,
    pub x: Vec<f32>,
    /// Chunks of the file the lanes returned.
    pub chunks: usize,
}

/// A ranked file, with each feature's share of its score when a model scored it.
#[derive(Debug, Clone)]
pub struct RankedFile {
    pub path: String,
    pub score: f32,
    pub chunks: usize,
    pub why: Vec<Contribution>,
}

/// A task's title: its first non-empty line when more text follows (an issue's title, a
/// commit's subject), at most 300 bytes.
fn title_of(task: &str) -> Option<&str> {
    let mut lines = task.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next()?;
    lines.next()?;
    let mut end = first.len().min(300);
    while !first.is_char_boundary(end) {
        end -= 1;
    }
    Some(&first[..end])
}

/// Dotted names in a task (`scrapy.http.Request`, `astropy.io.fits.Card`).
fn dotted_names(task: &str) -> Vec<Vec<String>> {
    static DOTTED: OnceLock<Regex> = OnceLock::new();
    let re = DOTTED.get_or_init(|| {
        Regex::new(r"[A-Za-z_][A-Za-z0-9_]*(?:(?:\.|::)[A-Za-z_][A-Za-z0-9_]*)+").expect("pattern")
    });
    let mut out: Vec<Vec<String>> = Vec::new();
    for m in re.find_iter(&task[..task.len().min(super::query::MAX_TASK_BYTES)]) {
        let parts: Vec<String> = m
            .as_str()
            .split(['.', ':'])
            .filter(|p| !p.is_empty())
            .map(|p| p.to_ascii_lowercase())
            .collect();
        if parts.len() > 1 && !out.contains(&parts) {
            out.push(parts);
        }
        if out.len() >= 64 {
            break;
        }
    }
    out
}

/// The longest run of a dotted name that equals the end of the file's module path.
fn module_match(module: &[String], dotted: &[Vec<String>]) -> usize {
    let Some(stem) = module.last() else {
        return 0;
    };
    let mut best = 0;
    for d in dotted {
        for (i, part) in d.iter().enumerate() {
            if part != stem {
                continue;
            }
            let mut len = 1;
            while len <= i && len < module.len() && d[i - len] == module[module.len() - 1 - len] {
                len += 1;
            }
            best = best.max(len);
        }
    }
    best
}

fn has_dir(path: &str, names: &[&str]) -> bool {
    let lower = path.to_ascii_lowercase();
    let mut parts: Vec<&str> = lower.split('/').collect();
    parts.pop();
    parts.iter().any(|p| names.contains(p))
}

/// File-kind priors: tests, docs, configuration, examples, CI and templates, package init
/// files, vendored code, source code.
fn kind_features(path: &str) -> [f32; 8] {
    let lower = path.to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    let language = detect_language(name, "");
    let is_doc = matches!(
        ext,
        "md" | "rst" | "txt" | "adoc" | "ipynb" | "markdown" | "mdx"
    ) || has_dir(&lower, &["docs", "doc", "documentation"]);
    let is_config = language == Language::Config
        || matches!(ext, "lock" | "env" | "ini" | "cfg")
        || name.starts_with('.');
    let is_example = has_dir(
        &lower,
        &[
            "examples",
            "example",
            "samples",
            "sample",
            "demo",
            "demos",
            "tutorials",
            "notebooks",
        ],
    );
    let is_ci = lower.starts_with(".github/")
        || lower.starts_with(".gitlab")
        || lower.starts_with(".circleci/")
        || lower.contains("issue_template")
        || matches!(
            name,
            ".travis.yml" | ".pre-commit-config.yaml" | "azure-pipelines.yml" | "jenkinsfile"
        );
    let stem = name.split('.').next().unwrap_or(name);
    let is_init = matches!(stem, "__init__" | "index" | "mod" | "lib");
    let is_vendor = has_dir(
        &lower,
        &[
            "vendor",
            "vendored",
            "_vendor",
            "third_party",
            "thirdparty",
            "external",
            "node_modules",
            "deps",
        ],
    );
    let is_code = !matches!(
        language,
        Language::Markdown | Language::Config | Language::Text
    );
    let b = |v: bool| if v { 1.0 } else { 0.0 };
    [
        b(super::context::is_test_path(path)),
        b(is_doc),
        b(is_config),
        b(is_example),
        b(is_ci),
        b(is_init),
        b(is_vendor),
        b(is_code),
    ]
}

#[derive(Default)]
struct Lane {
    /// path -> (best rank, best score, chunks, score sum)
    files: HashMap<String, (usize, f32, usize, f32)>,
    top: f32,
}

impl Lane {
    fn of(hits: &[(f32, Chunk)]) -> Lane {
        let mut lane = Lane {
            top: hits.first().map_or(0.0, |h| h.0),
            ..Lane::default()
        };
        for (i, (score, chunk)) in hits.iter().enumerate() {
            let e = lane
                .files
                .entry(chunk.path.clone())
                .or_insert((i + 1, *score, 0, 0.0));
            e.2 += 1;
            e.3 += *score;
        }
        lane
    }
}

/// The candidate files of a task and their features.
pub fn features(snapshot: &Snapshot, input: &RankInput<'_>) -> Result<Vec<FileFeatures>> {
    let paths = snapshot.paths()?;
    let lexical = Lane::of(input.lexical);
    let dense = input.dense.map(Lane::of);
    let file_bm25 = snapshot.file_bm25(input.terms)?;
    let title = title_of(input.task)
        .map(super::query_terms)
        .unwrap_or_default();
    let title_bm25 = snapshot.file_bm25(&title)?;
    let title_top = title_bm25.first().map_or(0.0, |f| f.1).max(1e-6);
    let title_rank: HashMap<&str, (usize, f32)> = title_bm25
        .iter()
        .enumerate()
        .map(|(i, (p, s))| (p.as_str(), (i + 1, *s)))
        .collect();
    let weight_sum: f32 = input.terms.iter().map(|t| t.1).sum::<f32>().max(1e-6);
    let top_weight = input
        .terms
        .iter()
        .map(|t| t.1)
        .fold(0.0f32, f32::max)
        .max(1e-6);
    let term_weight: HashMap<&str, f32> =
        input.terms.iter().map(|(t, w)| (t.as_str(), *w)).collect();
    let dotted = dotted_names(input.task);

    // Candidates, in the order they are found (the order only breaks ties).
    let mut order: Vec<String> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let allowed = |p: &str| {
        input.paths.is_none_or(|set| set.contains(p))
            && input
                .language
                .is_none_or(|l| detect_language(p.rsplit('/').next().unwrap_or(p), "") == l)
    };
    let mut add = |p: &str, order: &mut Vec<String>| {
        if paths.contains(p) && allowed(p) && seen.insert(p.to_string()) {
            order.push(p.to_string());
        }
    };
    for (_, c) in input.lexical {
        add(&c.path, &mut order);
    }
    for (p, _) in file_bm25.iter().take(FILE_DEPTH) {
        add(p, &mut order);
    }
    for (p, _) in title_bm25.iter().take(TITLE_DEPTH) {
        add(p, &mut order);
    }
    if let Some(d) = input.dense {
        for (_, c) in d {
            add(&c.path, &mut order);
        }
    }
    // Mentions and frames, failing frame first.
    let mut frame_pos: HashMap<String, (usize, usize)> = HashMap::new();
    let mut mentioned: BTreeSet<String> = BTreeSet::new();
    let mut frames = 0usize;
    for m in &input.signals.mentions {
        if m.frame {
            frames += 1;
        }
        for p in super::context::resolve_mention(&paths, &m.path) {
            if m.frame {
                let e = frame_pos.entry(p.clone()).or_insert((frames - 1, 0));
                e.1 += 1;
            } else {
                mentioned.insert(p.clone());
            }
            add(&p, &mut order);
        }
    }
    // Definitions of named identifiers, weighted by how specific the name is.
    let mut defines: HashMap<String, (f32, usize)> = HashMap::new();
    for name in &input.signals.identifiers {
        let defs = snapshot.definitions(name, DEFS_PER_NAME)?;
        let files: BTreeSet<&str> = defs
            .iter()
            .filter(|d| d.symbol == *name)
            .map(|d| d.path.as_str())
            .collect();
        for f in &files {
            let e = defines.entry(f.to_string()).or_default();
            e.0 += 1.0 / files.len() as f32;
            e.1 += 1;
        }
        for f in files {
            add(f, &mut order);
        }
    }
    // Files whose module path a dotted name spells, or whose stem is a strong query term.
    let mut by_stem: HashMap<String, Vec<&String>> = HashMap::new();
    for p in &paths {
        if let Some(stem) = module_parts(p).pop() {
            by_stem.entry(stem).or_default().push(p);
        }
    }
    for d in &dotted {
        for part in d {
            for p in by_stem.get(part).into_iter().flatten() {
                if module_match(&module_parts(p), std::slice::from_ref(d)) >= 2 {
                    add(p, &mut order);
                }
            }
        }
    }
    for (t, w) in input.terms.iter().take(16) {
        if *w < 0.5 * top_weight {
            continue;
        }
        if let Some(files) = by_stem.get(t)
            && files.len() <= STEM_FILES
        {
            for p in files {
                add(p, &mut order);
            }
        }
    }

    // History: files changed by past commits whose messages match the task.
    let mut hist: HashMap<String, (f32, usize)> = HashMap::new();
    for h in snapshot.history(input.terms, HISTORY_DEPTH)? {
        let spread = (h.paths.len().max(1) as f32).sqrt();
        for p in h.paths.iter().filter(|p| paths.contains(p.as_str())) {
            let e = hist.entry(p.clone()).or_default();
            e.0 += h.score / spread;
            e.1 += 1;
        }
    }
    let mut hist_order: Vec<(&String, f32)> = hist.iter().map(|(p, v)| (p, v.0)).collect();
    hist_order.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let hist_top = hist_order.first().map_or(0.0, |h| h.1).max(1e-6);
    let hist_rank: HashMap<String, usize> = hist_order
        .iter()
        .enumerate()
        .map(|(i, (p, _))| ((*p).clone(), i + 1))
        .collect();
    for (p, _) in hist_order.iter().take(HISTORY_FILES) {
        add(p, &mut order);
    }
    // Co-change with the top files of the lexical lanes.
    let mut tops: Vec<&str> = Vec::new();
    for p in input
        .lexical
        .iter()
        .map(|(_, c)| c.path.as_str())
        .chain(file_bm25.iter().map(|(p, _)| p.as_str()))
    {
        if tops.len() >= COCHANGE_FILES {
            break;
        }
        if !tops.contains(&p) {
            tops.push(p);
        }
    }
    let mut cochange: HashMap<String, f32> = HashMap::new();
    for top in &tops {
        let commits = snapshot.commits_with(top, COCHANGE_COMMITS)?;
        let n = commits.len().max(1) as f32;
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for files in &commits {
            for f in files.iter().filter(|f| f.as_str() != *top) {
                *counts.entry(f.as_str()).or_default() += 1;
            }
        }
        for (f, c) in counts {
            let share = c as f32 / n;
            let e = cochange.entry(f.to_string()).or_default();
            *e = e.max(share);
        }
    }

    // The import graph around the top files and the stack trace's files.
    let mut by_key: HashMap<String, Vec<&String>> = HashMap::new();
    for p in &paths {
        by_key.entry(module_key(p)).or_default().push(p);
    }
    let mut imported_by_top: BTreeSet<String> = BTreeSet::new();
    let mut importing_top: BTreeSet<String> = BTreeSet::new();
    let mut imported_by_frame: BTreeSet<String> = BTreeSet::new();
    let frame_files: Vec<String> = frame_pos.keys().cloned().collect();
    for (source, is_frame) in tops
        .iter()
        .map(|t| (t.to_string(), false))
        .chain(frame_files.into_iter().map(|f| (f, true)))
    {
        let mut added = 0;
        for key in snapshot.imports_of(&source)? {
            for p in by_key.get(&key).into_iter().flatten() {
                if **p == source {
                    continue;
                }
                if is_frame {
                    imported_by_frame.insert((*p).clone());
                } else {
                    imported_by_top.insert((*p).clone());
                }
                if added < IMPORTED_FILES {
                    add(p, &mut order);
                    added += 1;
                }
            }
        }
        if !is_frame {
            importing_top.extend(snapshot.importers_of(&module_key(&source))?);
        }
    }

    let file_rank: HashMap<&str, (usize, f32)> = file_bm25
        .iter()
        .enumerate()
        .map(|(i, (p, s))| (p.as_str(), (i + 1, *s)))
        .collect();
    let file_top = file_bm25.first().map_or(0.0, |f| f.1).max(1e-6);
    let lengths = snapshot.file_tokens_of(&order)?;
    let q = [
        (1.0 + input.terms.len() as f32).ln(),
        frames as f32,
        input.signals.identifiers.len() as f32,
    ];
    let mut out = Vec::with_capacity(order.len());
    for (i, path) in order.into_iter().enumerate() {
        let mut x = vec![0f32; FEATURES.len()];
        let mut chunks = 0;
        if let Some(&(rank, score, n, sum)) = lexical.files.get(&path) {
            x[col("lex_rank")] = 1.0 / rank as f32;
            x[col("lex_score")] = score / lexical.top.max(1e-6);
            x[col("lex_chunks")] = (1.0 + n as f32).ln();
            x[col("lex_sum")] = sum / lexical.top.max(1e-6);
            chunks += n;
        }
        if let Some(&(rank, score)) = file_rank.get(path.as_str()) {
            x[col("file_rank")] = 1.0 / rank as f32;
            x[col("file_score")] = score / file_top;
            x[col("file_norm")] = score / weight_sum;
        }
        if let Some(d) = &dense {
            x[col("dense_on")] = 1.0;
            if let Some(&(rank, score, n, _)) = d.files.get(&path) {
                x[col("dense_rank")] = 1.0 / rank as f32;
                x[col("dense_score")] = score;
                chunks += n;
            }
        }
        let words: BTreeSet<String> = tokenize(&path).into_iter().collect();
        x[col("path_terms")] = words
            .iter()
            .filter_map(|w| term_weight.get(w.as_str()))
            .sum::<f32>()
            / top_weight;
        let module = module_parts(&path);
        if let Some(stem) = module.last() {
            x[col("stem_term")] =
                term_weight.get(stem.as_str()).copied().unwrap_or(0.0) / top_weight;
        }
        x[col("module_match")] = module_match(&module, &dotted) as f32;
        x[col("mentioned")] = if mentioned.contains(&path) { 1.0 } else { 0.0 };
        if let Some(&(pos, n)) = frame_pos.get(&path) {
            x[col("frame")] = 1.0 / (1.0 + pos as f32);
            x[col("frame_count")] = n as f32;
        }
        if let Some(&(w, n)) = defines.get(&path) {
            x[col("defines")] = w;
            x[col("defines_count")] = n as f32;
        }
        let kinds = kind_features(&path);
        let first = col("is_test");
        x[first..first + kinds.len()].copy_from_slice(&kinds);
        x[col("size")] = (1.0 + lengths.get(i).copied().unwrap_or(0) as f32).ln();
        x[col("depth")] = path.matches('/').count() as f32;
        x[col("q_terms")] = q[0];
        x[col("q_frames")] = q[1];
        x[col("q_identifiers")] = q[2];
        if let Some(&(score, n)) = hist.get(&path) {
            x[col("hist_score")] = score / hist_top;
            x[col("hist_rank")] = 1.0 / hist_rank[&path] as f32;
            x[col("hist_commits")] = (1.0 + n as f32).ln();
        }
        x[col("churn")] = (1.0 + snapshot.commits_touching(&path, None)? as f32).ln();
        x[col("cochange")] = cochange.get(&path).copied().unwrap_or(0.0);
        x[col("imported_by")] = (1.0 + snapshot.importer_count(&module_key(&path))? as f32).ln();
        x[col("graph_top")] = f32::from(u8::from(
            imported_by_top.contains(&path) || importing_top.contains(&path),
        ));
        x[col("graph_frame")] = f32::from(u8::from(imported_by_frame.contains(&path)));
        if let Some(&(rank, score)) = title_rank.get(path.as_str()) {
            x[col("title_score")] = score / title_top;
            x[col("title_rank")] = 1.0 / rank as f32;
        }
        out.push(FileFeatures { path, x, chunks });
    }
    Ok(out)
}

/// How the candidates are scored.
pub enum Scorer<'a> {
    /// The learned model.
    Model(&'a Ranker),
    /// Reciprocal rank fusion of the lanes (k = 60), the stage's fallback: the chunk lane,
    /// whole-file BM25 and dense by rank, stack frames by their order (the failing one as
    /// rank 1), a named path as rank 1, a named definition as rank 2.
    Rrf,
}

fn rrf(x: &[f32]) -> f32 {
    let k = 60.0;
    let by_rank = |r: f32| if r > 0.0 { 1.0 / (k + 1.0 / r) } else { 0.0 };
    let mut s = by_rank(x[col("lex_rank")]) + by_rank(x[col("file_rank")]);
    s += by_rank(x[col("dense_rank")]);
    // The failing frame as rank 1, the next as rank 2, ...; a path named in prose as 1.
    s += by_rank(x[col("frame")]);
    if x[col("mentioned")] > 0.0 {
        s += 1.0 / (k + 1.0);
    }
    if x[col("defines")] > 0.0 {
        s += 1.0 / (k + 2.0);
    }
    s
}

/// Scores and sorts candidates, best first (ties by path).
pub fn rank(candidates: Vec<FileFeatures>, scorer: &Scorer<'_>) -> Vec<RankedFile> {
    let mut out: Vec<RankedFile> = candidates
        .into_iter()
        .map(|c| {
            let (score, why) = match scorer {
                Scorer::Model(m) => (m.score(&c.x), m.contributions(&c.x)),
                Scorer::Rrf => (rrf(&c.x), Vec::new()),
            };
            RankedFile {
                path: c.path,
                score,
                chunks: c.chunks,
                why,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.path.cmp(&b.path))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_names_find_the_module_they_spell() {
        let d = dotted_names("Calling `scrapy.http.request.form.FormRequest.from_response` fails");
        let m = |p: &str| module_match(&module_parts(p), &d);
        assert_eq!(m("scrapy/http/request/form.py"), 4);
        assert_eq!(m("scrapy/http/request/__init__.py"), 3);
        assert_eq!(m("scrapy/http/response/form.py"), 1);
        assert_eq!(m("docs/topics/request-response.rst"), 0);
    }

    #[test]
    fn file_kinds_are_read_off_the_path() {
        let k = |p: &str| {
            let v = kind_features(p);
            let names = [
                "test", "doc", "config", "example", "ci", "init", "vendor", "code",
            ];
            names
                .iter()
                .zip(v)
                .filter(|(_, v)| *v > 0.0)
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(k("src/scrapy/http/request.py"), "code");
        assert_eq!(k("tests/test_http.py"), "test,code");
        assert_eq!(k(".github/ISSUE_TEMPLATE/BUG-REPORT.yml"), "config,ci");
        assert_eq!(k(".pre-commit-config.yaml"), "config,ci");
        assert_eq!(k("docs/usage.md"), "doc");
        assert_eq!(k("pkg/__init__.py"), "init,code");
        assert_eq!(k("examples/demo.py"), "example,code");
        assert_eq!(k("third_party/x/y.c"), "vendor,code");
    }
}
