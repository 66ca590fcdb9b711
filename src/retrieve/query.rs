//! Weighted query terms of a task: what the lexical lanes search for. A long issue mixes
//! prose, code blocks, tracebacks, logs and template boilerplate; read as one bag of words,
//! its few decisive terms (the identifiers, the error message) drown in the rest. Each line
//! is classified, each word weighted by where it stands and what it looks like, and the
//! query keeps the strongest [`MAX_TERMS`].

use crate::index::tokenizer::tokenize;
use regex::Regex;
use std::collections::HashMap;
use std::sync::OnceLock;

/// The most terms a query keeps (the strongest): a bounded cost per query, whatever its size.
pub const MAX_TERMS: usize = 64;

/// The most bytes of a task that are read for terms: the rest of a pasted log adds nothing.
pub const MAX_TASK_BYTES: usize = 64 * 1024;

/// A search term (as the index's tokenizer writes it) and its weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub text: String,
    pub weight: f32,
}

/// What a line of a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineKind {
    Prose,
    /// Inside a fenced code block.
    Code,
    /// A traceback's frame or source line.
    Frame,
    /// The error a traceback or log ends with (`ValueError: ...`, `error[E0502]: ...`).
    ErrorMessage,
    /// A log line, a command prompt line, environment listings: mostly noise.
    Log,
    /// A Markdown heading or a bold-only line: in an issue, mostly a template's section
    /// names (`##### ISSUE TYPE`, `**Expected behavior**`).
    Heading,
}

impl LineKind {
    fn weight(self) -> f32 {
        match self {
            LineKind::Prose => 1.0,
            LineKind::Code => 0.8,
            LineKind::Frame => 0.35,
            LineKind::ErrorMessage => 1.6,
            LineKind::Log => 0.3,
            LineKind::Heading => 0.3,
        }
    }
}

/// English words that carry no meaning for search (the tokenizer lowercases).
const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "done",
    "down",
    "during",
    "each",
    "eg",
    "etc",
    "even",
    "ever",
    "every",
    "few",
    "for",
    "from",
    "further",
    "get",
    "got",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "him",
    "his",
    "how",
    "however",
    "i",
    "ie",
    "if",
    "im",
    "in",
    "into",
    "is",
    "isn",
    "it",
    "its",
    "itself",
    "just",
    "let",
    "like",
    "may",
    "me",
    "might",
    "more",
    "most",
    "much",
    "must",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "one",
    "only",
    "or",
    "other",
    "our",
    "out",
    "over",
    "own",
    "quite",
    "really",
    "s",
    "same",
    "see",
    "seems",
    "she",
    "should",
    "since",
    "so",
    "some",
    "still",
    "such",
    "t",
    "than",
    "that",
    "the",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "though",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "us",
    "use",
    "used",
    "using",
    "very",
    "via",
    "want",
    "was",
    "way",
    "we",
    "well",
    "were",
    "what",
    "when",
    "where",
    "whether",
    "which",
    "while",
    "who",
    "why",
    "will",
    "with",
    "within",
    "without",
    "would",
    "yet",
    "you",
    "your",
    "ll",
    "ve",
    "re",
    "d",
    "m",
    "don",
    "doesn",
    "didn",
    "won",
    "wasn",
    "aren",
    "couldn",
    "shouldn",
    "wouldn",
    "hasn",
    "haven",
    "cannot",
    "cant",
    "able",
    "anyone",
    "anything",
    "something",
    "someone",
    "thing",
    "things",
    "think",
    "know",
    "tried",
    "try",
    "trying",
    "make",
    "makes",
    "made",
    "need",
    "needs",
    "work",
    "works",
    "working",
    "worked",
    "happen",
    "happens",
    "seem",
    "going",
    "go",
    "getting",
];

/// Words issue and pull-request templates put into every report: they match the templates
/// themselves (`.github/ISSUE_TEMPLATE/bug_report.yml`) rather than the code at fault.
const BOILERPLATE: &[&str] = &[
    "bug",
    "bugs",
    "describe",
    "description",
    "reproduce",
    "reproduction",
    "steps",
    "expected",
    "behavior",
    "behaviour",
    "actual",
    "screenshot",
    "screenshots",
    "desktop",
    "smartphone",
    "device",
    "information",
    "complete",
    "following",
    "please",
    "thanks",
    "thank",
    "hello",
    "hi",
    "issue",
    "issues",
    "problem",
    "version",
    "versions",
    "environment",
    "additional",
    "context",
    "os",
    "browser",
    "checklist",
    "checked",
    "searched",
    "existing",
    "report",
    "reported",
    "feature",
    "solution",
    "alternatives",
    "considered",
    "latest",
    "question",
    "help",
    "regards",
    "title",
    "summary",
    "details",
    "windows",
    "linux",
    "macos",
    "ubuntu",
    "python",
    "pip",
    "run",
    "running",
    "ran",
    "x",
    "y",
    "n",
    "true",
    "false",
    "none",
    "null",
    "self",
    "return",
    "def",
    "import",
    "class",
    "print",
    "file",
    "line",
    "lib",
    "site",
    "packages",
    "usr",
    "home",
    "local",
    "users",
    "most",
    "recent",
    "call",
    "last",
    "traceback",
    "error",
    "exception",
    "raise",
    "raised",
    "py",
    "rs",
    "js",
    "ts",
    "go",
    "java",
    "md",
    "txt",
    "cpp",
    "rb",
    "php",
];

struct Patterns {
    word: Regex,
    url: Regex,
    timestamp: Regex,
    error_line: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        // Words of any script and numbers, with their dotted or `::` tails.
        word: Regex::new(r"[\p{L}\p{N}_]+(?:(?:\.|::)[\p{L}\p{N}_]+)*")
            .expect("pattern"),
        url: Regex::new(r"[a-z][a-z0-9+.-]*://\S+").expect("pattern"),
        timestamp: Regex::new(r"^\s*\[?\d{2,4}[-/:]\d{2}[-/:]\d{2}").expect("pattern"),
        error_line: Regex::new(
            r"^\s*(?:[A-Za-z_][\w.]*(?:Error|Exception|Warning|Exit|Interrupt)|error(?:\[E\d+\])?|panic(?:ked)?|fatal|FAILED|E  )\b[:\s]",
        )
        .expect("pattern"),
    })
}

/// Classifies each line of a task. A Python traceback runs from its header to the first
/// unindented line, which is the error; indented `at ...` lines are JVM/JS frames.
fn classify_lines(task: &str) -> Vec<(LineKind, &str)> {
    let p = patterns();
    let mut out = Vec::new();
    let mut fenced = false;
    let mut in_traceback = false;
    for line in task.lines() {
        let t = line.trim();
        if t.starts_with("```") || t.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        let kind = if t.starts_with("Traceback (most recent call last)") {
            in_traceback = true;
            LineKind::Frame
        } else if in_traceback && (line.starts_with(' ') || line.starts_with('\t') || t.is_empty())
        {
            LineKind::Frame
        } else if in_traceback {
            in_traceback = false;
            LineKind::ErrorMessage
        } else if p.error_line.is_match(line) {
            LineKind::ErrorMessage
        } else if t.starts_with("at ") && (t.contains('(') || t.contains(':')) {
            LineKind::Frame
        } else if p.timestamp.is_match(line)
            || t.starts_with('$')
            || t.starts_with(">>>")
            || t.starts_with("- OS")
            || t.starts_with("pip ")
        {
            LineKind::Log
        } else if fenced {
            LineKind::Code
        } else if t.starts_with('#')
            || (t.starts_with("**") && t.ends_with("**"))
            || (t.starts_with("__") && t.ends_with("__"))
        {
            LineKind::Heading
        } else {
            LineKind::Prose
        };
        out.push((kind, line));
    }
    out
}

/// A task without the parts an issue template puts there for the reporter, not about the
/// bug: HTML comments (`<!--- Verify first that your issue is not already reported -->`),
/// which also match the template files themselves word for word. Line breaks are kept.
pub fn strip_template(task: &str) -> std::borrow::Cow<'_, str> {
    if !task.contains("<!--") {
        return std::borrow::Cow::Borrowed(task);
    }
    let mut out = String::with_capacity(task.len());
    let mut rest = task;
    while let Some(start) = rest.find("<!--") {
        out.push_str(&rest[..start]);
        match rest[start..].find("-->") {
            Some(end) => {
                let comment = &rest[start..start + end + 3];
                out.extend(std::iter::repeat_n('\n', comment.matches('\n').count()));
                rest = &rest[start + end + 3..];
            }
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Does this word look like a code identifier rather than an English word?
fn code_like(word: &str) -> bool {
    let humps = word
        .as_bytes()
        .windows(2)
        .any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase());
    humps || word.trim_matches('_').contains('_') || word.contains('.') || word.contains("::")
}

/// The weighted terms of a task, strongest first, at most [`MAX_TERMS`]. A term's weight is
/// the strongest place it stands in (an error message over prose over a traceback line), a
/// whole code identifier weighs more than its parts, and repetition adds little (a word
/// pasted forty times in a log is not forty times as decisive).
pub fn weighted_terms(task: &str) -> Vec<Term> {
    let p = patterns();
    let mut end = task.len().min(MAX_TASK_BYTES);
    while !task.is_char_boundary(end) {
        end -= 1;
    }
    let stripped = strip_template(&task[..end]);
    let task = stripped.as_ref();
    // term -> (best weight, occurrences, first position)
    let mut found: HashMap<String, (f32, u32, usize)> = HashMap::new();
    let mut position = 0usize;
    for (kind, line) in classify_lines(task) {
        let line = p.url.replace_all(line, " ");
        for m in p.word.find_iter(&line) {
            let word = m.as_str();
            // Backticked words are code the author pointed at.
            let quoted = m.start() > 0 && line.as_bytes()[m.start() - 1] == b'`';
            let code = code_like(word) || quoted;
            let base = kind.weight() * if code { 1.5 } else { 1.0 };
            for segment in word.split(['.', ':']).filter(|s| !s.is_empty()) {
                let tokens = tokenize(segment);
                let parts = tokens.len();
                for (i, token) in tokens.into_iter().enumerate() {
                    position += 1;
                    if token.len() < 2 || STOPWORDS.contains(&token.as_str()) {
                        continue;
                    }
                    let mut weight = base;
                    // A number names little on its own (versions, ports, counts in logs),
                    // but "module 17" or "error 404" still needs it.
                    if token.bytes().all(|b| b.is_ascii_digit()) {
                        weight *= 0.5;
                    }
                    // The first token of a multi-part identifier is the whole identifier:
                    // the most specific term it gives.
                    if i == 0 && parts > 1 {
                        weight *= 1.6;
                    }
                    if BOILERPLATE.contains(&token.as_str()) {
                        weight *= 0.25;
                    }
                    let entry = found.entry(token).or_insert((0.0, 0, position));
                    entry.0 = entry.0.max(weight);
                    entry.1 += 1;
                }
            }
        }
    }
    let mut terms: Vec<(String, f32, usize)> = found
        .into_iter()
        .map(|(text, (weight, count, first))| {
            // 1 occurrence: x1; 3: x1.3; 10: x1.6; 100: x2.2.
            let repeated = 1.0 + 0.26 * (count as f32).ln();
            (text, weight * repeated, first)
        })
        .collect();
    terms.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.2.cmp(&b.2)));
    terms.truncate(MAX_TERMS);
    terms
        .into_iter()
        .map(|(text, weight, _)| Term { text, weight })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    fn check(task: &str, expected: Expect) {
        let terms = weighted_terms(task);
        let out: Vec<String> = terms
            .iter()
            .map(|t| format!("{}={:.2}", t.text, t.weight))
            .collect();
        expected.assert_eq(&out.join(" "));
    }

    #[test]
    fn short_queries_keep_their_words_without_stopwords() {
        check(
            "read the contents of a file",
            expect!["read=1.00 contents=1.00 file=0.25"],
        );
        check(
            "parseHttpRequest fails on empty body",
            expect![
                "parsehttprequest=2.40 parse=1.50 http=1.50 request=1.50 fails=1.00 empty=1.00 body=1.00"
            ],
        );
    }

    #[test]
    fn a_traceback_weighs_its_error_over_its_frames_and_the_template_words_least() {
        check(
            "**Describe the bug**\nExporting fails.\n\n```\nTraceback (most recent call last):\n  File \"/usr/lib/python3.8/site-packages/scrapy/exporters.py\", line 12, in export_item\n    self._write(item)\nUnicodeEncodeError: 'ascii' codec can't encode character\n```\n**Expected behavior**\nNo error",
            expect![
                "unicodeencodeerror=3.84 encode=2.83 unicode=2.40 ascii=1.60 codec=1.60 character=1.60 exporting=1.00 fails=1.00 python3=0.84 export_item=0.84 error=0.71 item=0.62 exporters=0.52 export=0.52 write=0.52 scrapy=0.35 12=0.17 python=0.13 py=0.13 self=0.13 traceback=0.09 recent=0.09 call=0.09 last=0.09 file=0.09 usr=0.09 lib=0.09 site=0.09 packages=0.09 line=0.09 describe=0.08 bug=0.08 expected=0.08 behavior=0.08"
            ],
        );
    }

    #[test]
    fn template_comments_and_headings_weigh_little_or_nothing() {
        check(
            "<!--- Verify first that your issue is not already reported on GitHub -->\n##### ISSUE TYPE\n - Bug Report\n##### SUMMARY\nThe yaml inventory plugin drops ungrouped hosts\n<!-- multi\nline -->",
            expect![
                "yaml=1.00 inventory=1.00 plugin=1.00 drops=1.00 ungrouped=1.00 hosts=1.00 type=0.30 bug=0.25 report=0.25 issue=0.08 summary=0.08"
            ],
        );
        assert_eq!(strip_template("a <!-- b\nc --> d").as_ref(), "a \n d");
        assert_eq!(strip_template("a <!-- never closed").as_ref(), "a ");
    }

    #[test]
    fn numbers_and_words_of_any_script_are_terms() {
        check(
            "computes value 3 of module 17, error 404 in größe() 配置文件",
            expect![
                "computes=1.00 value=1.00 module=1.00 größe=1.00 配置文件=1.00 17=0.50 404=0.50 error=0.25"
            ],
        );
    }

    #[test]
    fn a_long_log_keeps_a_bounded_number_of_terms() {
        let mut task = String::from("Crash in `OrderBook.match_orders` when the book is empty\n");
        for i in 0..2000 {
            task.push_str(&format!(
                "2024-01-01 12:00:{:02} INFO worker{i} processed batch{i} ok\n",
                i % 60
            ));
        }
        let terms = weighted_terms(&task);
        assert_eq!(terms.len(), MAX_TERMS);
        let top: Vec<&str> = terms.iter().take(4).map(|t| t.text.as_str()).collect();
        assert_eq!(top, vec!["orderbook", "match_orders", "book", "order"]);
    }
}
