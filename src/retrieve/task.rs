//! Reading a task: the stack-trace frames, file paths and code identifiers it names.

use regex::Regex;
use std::sync::OnceLock;

/// A place in a file the task names (a stack frame, `src/x.rs:42`, or a bare path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    /// The path as written (absolute, relative, or a bare file name).
    pub path: String,
    pub line: Option<usize>,
    /// The function the frame names, when it names one.
    pub function: Option<String>,
    /// A frame of a stack trace (rather than a path in prose).
    pub frame: bool,
}

/// What a task names, in the order that matters: the failing frame first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSignals {
    pub mentions: Vec<Mention>,
    pub identifiers: Vec<String>,
}

/// Words that look like identifiers in prose but name nothing in code.
const STOPWORDS: &[&str] = &[
    "self",
    "None",
    "True",
    "False",
    "null",
    "true",
    "false",
    "this",
    "return",
    "Error",
    "Exception",
    "Traceback",
    "TODO",
    "FIXME",
    "README",
    "ValueError",
    "TypeError",
    "KeyError",
    "IndexError",
    "AttributeError",
    "RuntimeError",
    "AssertionError",
    "NullPointerException",
    "panicked",
    "unwrap",
    "String",
    "Vec",
    "Option",
    "Result",
    "Some",
    "Ok",
    "Err",
    "println",
    "print",
    "len",
    "str",
    "int",
    "dict",
    "list",
];

struct Patterns {
    python_frame: Regex,
    java_frame: Regex,
    path_line: Regex,
    bare_path: Regex,
    backticked: Regex,
    word: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        python_frame: Regex::new(r#"File "([^"\n]+)", line (\d+)(?:, in ([A-Za-z_][A-Za-z0-9_<>]*))?"#)
            .expect("pattern"),
        java_frame: Regex::new(r"at (?:[\w$]+\.)*([\w$<>]+)\(([\w$-]+\.[A-Za-z]{1,6}):(\d+)\)")
            .expect("pattern"),
        path_line: Regex::new(r"((?:[A-Za-z]:)?[\w./\\@+-]*[\w-]\.[A-Za-z][A-Za-z0-9]{0,5}):(\d+)(?::\d+)?")
            .expect("pattern"),
        bare_path: Regex::new(r"(?:^|[\s`'(\[])((?:[\w.@+-]+/)*[\w@+-][\w.@+-]*\.(?:rs|py|pyi|js|jsx|mjs|cjs|ts|tsx|go|java|kt|c|h|cc|cpp|cxx|hpp|rb|php|cs|sh|bash|md|toml|ya?ml|json))(?-u:\b)")
            .expect("pattern"),
        backticked: Regex::new(r"`([^`\n]{1,80})`").expect("pattern"),
        word: Regex::new(r"[A-Za-z_][A-Za-z0-9_]*(?:(?:::|\.)[A-Za-z_][A-Za-z0-9_]*)*(\()?")
            .expect("pattern"),
    })
}

/// Does `word` look like a code identifier rather than an English word?
fn looks_like_code(word: &str, called: bool, quoted: bool) -> bool {
    if word.len() < 3 || STOPWORDS.contains(&word) {
        return false;
    }
    let has_lower = word.chars().any(|c| c.is_ascii_lowercase());
    let humps = word
        .as_bytes()
        .windows(2)
        .filter(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase())
        .count();
    let snake = word.trim_matches('_').contains('_') && has_lower;
    let pascal = word.starts_with(|c: char| c.is_ascii_uppercase()) && humps >= 1;
    // A call of a plain short word (`run()`, `sum(x)`) names too much to look up.
    quoted || (called && word.len() >= 6) || snake || humps >= 1 || pascal
}

/// Finds the frames, paths and identifiers in a task. A Python traceback lists the failing
/// frame last; every other format (Rust, Go, Java, JavaScript) lists it first: the result
/// always has it first.
pub fn read_task(task: &str) -> TaskSignals {
    // What a task names is in its first pages; the rest of a pasted log costs time only.
    let mut end = task.len().min(super::query::MAX_TASK_BYTES);
    while !task.is_char_boundary(end) {
        end -= 1;
    }
    let stripped = super::query::strip_template(&task[..end]);
    let task = stripped.as_ref();
    let p = patterns();
    let mut signals = TaskSignals::default();
    let mut seen_spans: Vec<(usize, usize)> = Vec::new();
    let push = |signals: &mut TaskSignals, m: Mention| {
        if !signals
            .mentions
            .iter()
            .any(|x| x.path == m.path && x.line == m.line)
        {
            signals.mentions.push(m);
        }
    };

    let mut python: Vec<Mention> = Vec::new();
    for c in p.python_frame.captures_iter(task) {
        let all = c.get(0).expect("match");
        seen_spans.push((all.start(), all.end()));
        python.push(Mention {
            path: c[1].to_string(),
            line: c[2].parse().ok(),
            function: c.get(3).map(|f| f.as_str().to_string()),
            frame: true,
        });
    }
    python.reverse(); // most recent call last
    for m in python {
        push(&mut signals, m);
    }
    for c in p.java_frame.captures_iter(task) {
        let all = c.get(0).expect("match");
        seen_spans.push((all.start(), all.end()));
        push(
            &mut signals,
            Mention {
                path: c[2].to_string(),
                line: c[3].parse().ok(),
                function: Some(c[1].to_string()),
                frame: true,
            },
        );
    }
    let inside =
        |spans: &[(usize, usize)], at: usize| spans.iter().any(|&(s, e)| at >= s && at < e);
    for c in p.path_line.captures_iter(task) {
        let all = c.get(0).expect("match");
        if inside(&seen_spans, all.start()) {
            continue;
        }
        seen_spans.push((all.start(), all.end()));
        let path = c[1].trim_start_matches("./").to_string();
        if path.starts_with("http") || path.chars().all(|ch| ch.is_ascii_digit() || ch == '.') {
            continue;
        }
        push(
            &mut signals,
            Mention {
                path,
                line: c[2].parse().ok(),
                function: None,
                frame: true,
            },
        );
    }
    for c in p.bare_path.captures_iter(task) {
        let m = c.get(1).expect("group");
        if inside(&seen_spans, m.start()) {
            continue;
        }
        push(
            &mut signals,
            Mention {
                path: m.as_str().trim_start_matches("./").to_string(),
                line: None,
                function: None,
                frame: false,
            },
        );
    }

    let mut identifiers: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        let name = name.trim_matches(|c: char| !c.is_alphanumeric() && c != '_');
        if !name.is_empty() && !identifiers.iter().any(|i| i == name) {
            identifiers.push(name.to_string());
        }
    };
    for m in &signals.mentions {
        // A frame's function is named by the trace itself: always worth its definition.
        if let Some(f) = &m.function
            && looks_like_code(f, false, true)
        {
            add(f);
        }
    }
    for c in p.backticked.captures_iter(task) {
        for w in p.word.find_iter(&c[1]) {
            let word = w.as_str().trim_end_matches('(');
            if let Some(last) = word.rsplit(['.', ':']).next()
                && looks_like_code(last, false, true)
                && !last.contains('/')
            {
                add(last);
            }
        }
    }
    for c in p.word.captures_iter(task) {
        let all = c.get(0).expect("match");
        if inside(&seen_spans, all.start()) {
            continue;
        }
        let called = c.get(1).is_some();
        let word = all.as_str().trim_end_matches('(');
        let parts: Vec<&str> = word.split(['.', ':']).filter(|s| !s.is_empty()).collect();
        // A dotted word is a path or a call chain: its last part, when code-like, is the name.
        if parts.len() > 1 {
            let last = parts[parts.len() - 1];
            let file_like = matches!(
                last,
                "rs" | "py"
                    | "js"
                    | "ts"
                    | "go"
                    | "java"
                    | "md"
                    | "toml"
                    | "json"
                    | "rb"
                    | "c"
                    | "h"
            );
            if !file_like && looks_like_code(last, called, false) {
                add(last);
            }
            for part in &parts[..parts.len() - 1] {
                if part.starts_with(|ch: char| ch.is_ascii_uppercase())
                    && looks_like_code(part, false, false)
                {
                    add(part);
                }
            }
        } else if looks_like_code(word, called, false) {
            add(word);
        }
    }
    identifiers.truncate(16);
    // The failing frames lead: the rest of a deep trace adds lookups, not evidence.
    signals.mentions.truncate(32);
    signals.identifiers = identifiers;
    signals
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    fn check(task: &str, expected: Expect) {
        let s = read_task(task);
        let mut out = String::new();
        for m in &s.mentions {
            out.push_str(&format!(
                "{} {}:{} {}\n",
                if m.frame { "frame" } else { "path" },
                m.path,
                m.line.map(|l| l.to_string()).unwrap_or_default(),
                m.function.clone().unwrap_or_default()
            ));
        }
        out.push_str(&format!("ids: {}", s.identifiers.join(" ")));
        expected.assert_eq(&out);
    }

    #[test]
    fn python_traceback_failing_frame_first() {
        check(
            "Crash when totals are empty\n\nTraceback (most recent call last):\n  File \"/srv/app/billing/cli.py\", line 12, in main\n    run()\n  File \"/srv/app/billing/invoice.py\", line 40, in compute_total\n    return sum(x) / len(x)\nZeroDivisionError: division by zero\n",
            expect![[r#"
                frame /srv/app/billing/invoice.py:40 compute_total
                frame /srv/app/billing/cli.py:12 main
                ids: compute_total main ZeroDivisionError"#]],
        );
    }

    #[test]
    fn go_panic_javascript_stack_and_dotted_names() {
        check(
            "panic: runtime error: index out of range [3] with length 3\n\ngoroutine 1 [running]:\nmain.(*Matcher).Match(0xc000010000)\n\t/home/ci/fzf/src/matcher.go:142 +0x1d\nmain.main()\n\t/home/ci/fzf/main.go:9 +0x25\n",
            expect![[r#"
                frame /home/ci/fzf/src/matcher.go:142 
                frame /home/ci/fzf/main.go:9 
                ids: "#]],
        );
        check(
            "TypeError: Cannot read properties of undefined (reading 'host')\n    at parseUrl (/app/node_modules/axios/lib/helpers/parseUrl.js:12:20)\n    at Axios.request (/app/node_modules/axios/lib/core/Axios.js:45:9)",
            expect![[r#"
                frame /app/node_modules/axios/lib/helpers/parseUrl.js:12 
                frame /app/node_modules/axios/lib/core/Axios.js:45 
                ids: parseUrl"#]],
        );
        check(
            "Opening a file with `astropy.io.fits.open` then calling fits.Card.fromstring(x) loses the comment",
            expect!["ids: open fromstring"],
        );
    }

    #[test]
    fn rust_panic_java_frames_and_prose() {
        check(
            "thread 'main' panicked at src/index/lexical.rs:120:9 when `LexicalIndex::open` meets an empty dir; see docs/ARCH.md and parseHttpRequest()",
            expect![[r#"
                frame src/index/lexical.rs:120 
                path docs/ARCH.md: 
                ids: open LexicalIndex parseHttpRequest"#]],
        );
        check(
            "java.lang.IllegalStateException\n\tat com.acme.cart.Cart.checkout(Cart.java:88)\n\tat com.acme.App.main(App.java:10)",
            expect![[r#"
                frame Cart.java:88 checkout
                frame App.java:10 main
                ids: checkout main IllegalStateException"#]],
        );
    }
}
