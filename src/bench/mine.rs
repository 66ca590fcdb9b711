//! Dataset builders from real code, no hand-written queries: `mine-commits` (commit message ->
//! the source files it modified, from any git history) and `mine-docs` (first sentence of a
//! doc comment -> the function, CodeSearchNet style, from real crates and Python packages
//! with every doc comment stripped from what is indexed).

use super::metrics::Gold;
use super::quality::Entry;
use crate::config::ChunkConfig;
use crate::error::{Error, Result};
use crate::model::{ChunkKind, Language};
use crate::retrieve::context::is_test_path;
use crate::source::classify::detect_language;
use crate::source::git::git_checked;
use regex::Regex;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// How commits are chosen.
#[derive(Debug, Clone)]
pub struct CommitMining {
    /// The newest commits first; stop after this many entries.
    pub max: usize,
    pub min_words: usize,
    pub max_source_files: usize,
}

impl Default for CommitMining {
    fn default() -> Self {
        CommitMining {
            max: 500,
            min_words: 8,
            max_source_files: 3,
        }
    }
}

/// What a miner kept and left out, by reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MineReport {
    pub considered: usize,
    pub kept: usize,
    pub skipped: BTreeMap<String, usize>,
}

impl MineReport {
    fn skip(&mut self, reason: &str) {
        *self.skipped.entry(reason.to_string()).or_default() += 1;
    }
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A commit message as a query: trailers, issue references and URLs removed, whitespace
/// collapsed.
pub fn clean_message(message: &str) -> String {
    static PATTERNS: OnceLock<(Regex, Regex, Regex)> = OnceLock::new();
    let (trailer, issue, url) = PATTERNS.get_or_init(|| {
        (
            Regex::new(r"^[A-Za-z][A-Za-z0-9-]*(?:-[Bb]y|-[Ii]d|-[Ii]D)?:\s+\S").expect("pattern"),
            Regex::new(r"\(?(?-u:\b)(?:GH|gh)-\d+(?-u:\b)\)?|\(?#\d+\)?").expect("pattern"),
            Regex::new(r"https?://\S+").expect("pattern"),
        )
    });
    let kept: Vec<&str> = message
        .lines()
        .filter(|l| {
            let t = l.trim();
            // `Signed-off-by: x`, `Co-authored-by: x`, `Change-Id: x`, `Fixes: x` ...
            !(trailer.is_match(t)
                && t.split_once(':')
                    .is_some_and(|(k, _)| !k.contains(' ') && k.len() <= 24))
        })
        .collect();
    let joined = kept.join(" ");
    let no_url = url.replace_all(&joined, " ");
    let no_issue = issue.replace_all(&no_url, " ");
    no_issue.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Is this a source file worth retrieving (not a test, doc, config or lockfile)?
fn is_source(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.ends_with(".lock") || name == "package-lock.json" || is_test_path(path) {
        return false;
    }
    !matches!(
        detect_language(name, ""),
        Language::Markdown | Language::Config | Language::Text
    )
}

/// The lines of `path` in the parent that a commit changed (`git diff -U0` hunks): removed
/// or modified lines, or the line an insertion follows.
fn changed_lines(
    repo: &Path,
    parent: &str,
    commit: &str,
    path: &str,
) -> Result<Vec<(usize, usize)>> {
    static HUNK: OnceLock<Regex> = OnceLock::new();
    let hunk = HUNK.get_or_init(|| Regex::new(r"^@@ -(\d+)(?:,(\d+))? \+").expect("pattern"));
    let diff = text(git_checked(
        repo,
        &[
            "diff",
            "-U0",
            "--no-color",
            "--no-ext-diff",
            parent,
            commit,
            "--",
            path,
        ],
    )?);
    let mut out = Vec::new();
    for line in diff.lines() {
        if let Some(c) = hunk.captures(line) {
            let start: usize = c[1].parse().unwrap_or(1);
            let count: usize = c.get(2).map_or(1, |m| m.as_str().parse().unwrap_or(1));
            if count == 0 {
                out.push((start.max(1), start.max(1)));
            } else {
                out.push((start, start + count - 1));
            }
        }
    }
    Ok(out)
}

/// Mines commit message -> modified source files from a repository's history, newest first:
/// the parent commit is what is indexed. Merges, short messages, commits touching more than
/// `max_source_files` source files or only tests/docs/lockfiles, and commits that only add
/// files are skipped.
pub fn mine_commits(repo: &Path, options: &CommitMining) -> Result<(Vec<Entry>, MineReport)> {
    let repo = repo.canonicalize().map_err(|e| Error::io(repo, e))?;
    let list = text(git_checked(&repo, &["rev-list", "--parents", "HEAD"])?);
    let mut report = MineReport::default();
    let mut entries = Vec::new();
    for line in list.lines() {
        if entries.len() >= options.max {
            break;
        }
        let ids: Vec<&str> = line.split_whitespace().collect();
        report.considered += 1;
        let (commit, parent) = match ids.as_slice() {
            [c, p] => (*c, *p),
            [_] => {
                report.skip("root commit");
                continue;
            }
            _ => {
                report.skip("merge");
                continue;
            }
        };
        let message = text(git_checked(&repo, &["log", "-1", "--format=%B", commit])?);
        let query = clean_message(&message);
        if query.split_whitespace().count() < options.min_words {
            report.skip("message under the word minimum");
            continue;
        }
        let status = text(git_checked(
            &repo,
            &[
                "diff-tree",
                "--no-commit-id",
                "-r",
                "-M",
                "--name-status",
                parent,
                commit,
            ],
        )?);
        let mut touched = 0;
        let mut gold_paths = Vec::new();
        for row in status.lines() {
            let cols: Vec<&str> = row.split('\t').collect();
            let (kind, path) = match cols.as_slice() {
                [k, p] => (*k, *p),
                [k, old, _new] => (*k, *old),
                _ => continue,
            };
            if !is_source(path) {
                continue;
            }
            touched += 1;
            if kind.starts_with('M') || kind.starts_with('R') {
                gold_paths.push(path.to_string());
            }
        }
        if touched == 0 {
            report.skip("only tests, docs, config or lockfiles");
            continue;
        }
        if touched > options.max_source_files {
            report.skip("too many source files");
            continue;
        }
        if gold_paths.is_empty() {
            report.skip("only adds or deletes files");
            continue;
        }
        let mut gold = Vec::new();
        for path in gold_paths {
            for (a, b) in changed_lines(&repo, parent, commit, &path)? {
                gold.push(Gold {
                    path: path.clone(),
                    start_line: Some(a),
                    end_line: Some(b),
                });
            }
        }
        report.kept += 1;
        entries.push(Entry {
            id: format!("commit-{}", &commit[..12.min(commit.len())]),
            repo: repo.display().to_string(),
            commit: Some(parent.to_string()),
            query,
            gold,
            split: None,
        });
    }
    Ok((entries, report))
}

/// A package to mine doc comments from.
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub language: Language,
    /// Its unpacked source tree.
    pub root: PathBuf,
}

/// The first sentence of a doc comment, markers stripped; `None` when it is too short or
/// too long to be a query.
pub fn first_sentence(doc: &str) -> Option<String> {
    let mut words = Vec::new();
    for line in doc.lines() {
        // A module's inner doc (`//!`) is not the function's, even when attached to it.
        if line.trim_start().starts_with("//!") {
            continue;
        }
        let t = line
            .trim()
            .trim_start_matches("///")
            .trim_start_matches("//!")
            .trim_start_matches("/**")
            .trim_start_matches("*/")
            .trim_start_matches('*')
            .trim_start_matches('#')
            .trim_start_matches("r\"\"\"")
            .trim_start_matches("\"\"\"")
            .trim_start_matches("'''")
            .trim_end_matches("\"\"\"")
            .trim_end_matches("'''")
            .trim();
        if t.is_empty() {
            if words.is_empty() {
                continue;
            }
            break; // the first paragraph only
        }
        words.extend(t.split_whitespace().map(str::to_string));
    }
    let joined = words.join(" ");
    let sentence = match joined.find(". ") {
        Some(i) => &joined[..i + 1],
        None => joined.as_str(),
    };
    let sentence = sentence.trim();
    let n = sentence.split_whitespace().count();
    let lower = sentence.to_ascii_lowercase();
    if !(4..=40).contains(&n)
        || lower.starts_with("safety")
        || lower.starts_with("see ")
        || lower.contains("todo")
    {
        return None;
    }
    Some(sentence.to_string())
}

/// Blanks a doc text inside `file`, keeping its line breaks (a Python docstring becomes
/// `...`, so the body stays a statement).
fn blank(file: &mut String, doc: &str, python: bool) {
    if doc.is_empty() {
        return;
    }
    if let Some(at) = file.find(doc) {
        let newlines = doc.matches('\n').count();
        let filler = format!(
            "{}{}",
            if python { "..." } else { "" },
            "\n".repeat(newlines)
        );
        file.replace_range(at..at + doc.len(), &filler);
    }
}

/// Mines doc sentence -> function from packages: each package's files are chunked, every
/// function or method with a doc comment gives its first sentence as a query, and a copy of
/// the package with every doc comment, docstring and module doc blanked (line numbers kept)
/// is written under `out/corpus/<name>` to be indexed. Functions sharing a sentence form one
/// gold set. Packages alternate between the `dev` and the held-out `test` split.
pub fn mine_docs(packages: &[Package], out: &Path) -> Result<(Vec<Entry>, MineReport)> {
    // Every function and method on its own, whatever the index does with it: the gold is the
    // definition's whole span.
    // (A one-byte maximum splits every class into its methods; the pieces of a split
    // function are joined back below.)
    let config = ChunkConfig {
        max_chunk_bytes: 1,
        target_chunk_bytes: 1,
        merge_below_bytes: 0,
        parse_work: 30 * crate::config::DEFAULT_PARSE_WORK,
        ..ChunkConfig::default()
    };
    let mut report = MineReport::default();
    let mut entries = Vec::new();
    let mut sorted: Vec<&Package> = packages.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for (i, package) in sorted.iter().enumerate() {
        let split = if i % 2 == 0 { "dev" } else { "test" };
        let dest = out.join("corpus").join(&package.name);
        if dest.exists() {
            std::fs::remove_dir_all(&dest).map_err(|e| Error::io(&dest, e))?;
        }
        let mut by_sentence: BTreeMap<String, Vec<Gold>> = BTreeMap::new();
        let walker = ignore::WalkBuilder::new(&package.root)
            .hidden(false)
            .git_ignore(false)
            .build();
        for dent in walker.flatten() {
            let path = dent.path();
            if !path.is_file() {
                continue;
            }
            let rel = path
                .strip_prefix(&package.root)
                .unwrap_or(path)
                .to_string_lossy()
                .replace('\\', "/");
            let name = rel.rsplit('/').next().unwrap_or(&rel).to_string();
            let language = detect_language(&name, "");
            if language != package.language {
                continue;
            }
            let Ok(mut file) = std::fs::read_to_string(path) else {
                continue;
            };
            let chunked = crate::syntax::chunk_file(&rel, language, &file, &config);
            let python = language == Language::Python;
            let test = is_test_path(&rel);
            for (at, chunk) in chunked.chunks.iter().enumerate() {
                if !test
                    && matches!(chunk.kind, ChunkKind::Function | ChunkKind::Method)
                    && !chunk.doc.is_empty()
                {
                    report.considered += 1;
                    match first_sentence(&chunk.doc) {
                        Some(sentence) => {
                            // The pieces that follow with the same definition are its body.
                            let end = chunked.chunks[at + 1..]
                                .iter()
                                .take_while(|c| {
                                    c.symbol == chunk.symbol
                                        && c.scope == chunk.scope
                                        && c.kind == chunk.kind
                                        && c.doc.is_empty()
                                })
                                .last()
                                .map_or(chunk.span.end_line, |c| c.span.end_line);
                            // A doc comment above the definition is blanked: the gold starts
                            // at the definition itself (past doc, comment and blank lines).
                            let lines: Vec<&str> = file.lines().collect();
                            let mut first = chunk.span.start_line;
                            while !python
                                && first < end
                                && lines.get(first - 1).is_some_and(|l| {
                                    let t = l.trim_start();
                                    t.is_empty()
                                        || t.starts_with("//")
                                        || t.starts_with("/*")
                                        || t.starts_with('*')
                                })
                            {
                                first += 1;
                            }
                            let start = first.min(end);
                            by_sentence.entry(sentence).or_default().push(Gold {
                                path: rel.clone(),
                                start_line: Some(start),
                                end_line: Some(end),
                            })
                        }
                        None => report.skip("doc sentence too short or too long"),
                    }
                }
            }
            for chunk in &chunked.chunks {
                blank(&mut file, &chunk.doc, python);
            }
            // Whatever doc the chunker did not attach: Rust doc lines, a module docstring.
            let mut stripped: Vec<String> = file
                .split('\n')
                .map(|l| {
                    let t = l.trim_start();
                    if !python && (t.starts_with("///") || t.starts_with("//!")) {
                        String::new()
                    } else {
                        l.to_string()
                    }
                })
                .collect();
            if python {
                strip_module_docstring(&mut stripped);
            }
            let target = dest.join(&rel);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            std::fs::write(&target, stripped.join("\n")).map_err(|e| Error::io(&target, e))?;
        }
        std::fs::create_dir_all(&dest).map_err(|e| Error::io(&dest, e))?;
        let repo = dest.canonicalize().map_err(|e| Error::io(&dest, e))?;
        for (sentence, gold) in by_sentence {
            report.kept += 1;
            entries.push(Entry {
                id: format!("doc-{}-{}", package.name, entries.len()),
                repo: repo.display().to_string(),
                commit: None,
                query: sentence,
                gold,
                split: Some(split.to_string()),
            });
        }
    }
    Ok((entries, report))
}

/// Blanks a Python module docstring (the file's first statement), keeping its lines.
fn strip_module_docstring(lines: &mut [String]) {
    let Some(first) = lines
        .iter()
        .position(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    else {
        return;
    };
    let t = lines[first].trim_start();
    let quote = ["\"\"\"", "'''", "r\"\"\""]
        .into_iter()
        .find(|q| t.starts_with(q));
    let Some(q) = quote else {
        return;
    };
    let close = if q.ends_with('\'') { "'''" } else { "\"\"\"" };
    let rest = &t[q.len()..];
    if rest.contains(close) {
        lines[first] = "...".into();
        return;
    }
    lines[first] = "...".into();
    for line in lines.iter_mut().skip(first + 1) {
        let done = line.contains(close);
        line.clear();
        if done {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_messages_lose_trailers_issue_numbers_and_urls() {
        assert_eq!(
            clean_message(
                "Fix the parser for empty input (#123)\n\nThe tokenizer panicked on an empty file, see https://x.y/z. Fixes GH-7 in UTF-8.\n\nSigned-off-by: A B <a@b>\nCo-authored-by: C <c@d>\n"
            ),
            "Fix the parser for empty input The tokenizer panicked on an empty file, see Fixes in UTF-8."
        );
    }

    #[test]
    fn doc_sentences_are_the_first_sentence_of_the_first_paragraph() {
        assert_eq!(
            first_sentence(
                "/// Parses the request line and headers of `input`. Returns an error\n/// when a header is malformed.\n///\n/// # Examples"
            ),
            Some("Parses the request line and headers of `input`.".into())
        );
        assert_eq!(
            first_sentence("\"\"\"Finds an item by its display name, case-insensitively.\"\"\""),
            Some("Finds an item by its display name, case-insensitively.".into())
        );
        assert_eq!(first_sentence("/// Returns x."), None);
        assert_eq!(first_sentence(""), None);
    }

    #[test]
    fn a_module_docstring_is_blanked_keeping_its_lines() {
        let mut lines: Vec<String> = [
            "#!/usr/bin/env python",
            "\"\"\"Module doc",
            "more\"\"\"",
            "import os",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        strip_module_docstring(&mut lines);
        assert_eq!(lines, vec!["#!/usr/bin/env python", "...", "", "import os"]);
    }
}
