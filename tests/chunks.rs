//! Snapshot tests of the chunker on a real sample file of every supported language.

use crate::support::fixtures;
use codectx::config::ChunkConfig;
use codectx::model::{Chunk, Language};
use codectx::source::classify::detect_language;
use codectx::syntax::{ChunkOutput, chunk_file, spec};
use expect_test::expect_file;
use std::fmt::Write;

/// Renders a chunk list one chunk per line (plus its metadata) for a snapshot.
fn render(out: &ChunkOutput) -> String {
    let mut s = String::new();
    for c in &out.chunks {
        write!(s, "{}-{} {}", c.span.start_line, c.span.end_line, c.kind).unwrap();
        if !c.symbol.is_empty() {
            write!(s, " {}", c.symbol).unwrap();
        }
        writeln!(s).unwrap();
        if !c.scope.is_empty() {
            writeln!(s, "    scope: {}", c.scope).unwrap();
        }
        if !c.signature.is_empty() {
            writeln!(s, "    sig: {}", c.signature).unwrap();
        }
        if let Some(first) = c.doc.lines().next() {
            writeln!(s, "    doc: {}", first.trim()).unwrap();
        }
        if c.symbols.len() > 1 {
            writeln!(s, "    symbols: {}", c.symbols.join(", ")).unwrap();
        }
    }
    for d in &out.diagnostics {
        writeln!(s, "diagnostic: {} (fallback: {})", d.message, d.fallback).unwrap();
    }
    s
}

/// The invariants every chunk list must keep, whatever the language.
fn check_invariants(text: &str, chunks: &[Chunk]) {
    let mut prev_end = 0;
    for c in chunks {
        assert!(c.span.start_byte < c.span.end_byte, "empty chunk {c:?}");
        assert!(
            c.span.start_byte >= prev_end,
            "chunks overlap or are out of order at {c:?}"
        );
        assert_eq!(c.content, &text[c.span.start_byte..c.span.end_byte]);
        assert_eq!(c.hash, codectx::model::content_hash(c.content.as_bytes()));
        let line_of = |b: usize| text[..b].matches('\n').count() + 1;
        assert_eq!(c.span.start_line, line_of(c.span.start_byte));
        assert_eq!(c.span.end_line, line_of(c.span.end_byte - 1));
        assert!(
            c.content.trim() == c.content,
            "chunk not trimmed: {:?}",
            c.content
        );
        prev_end = c.span.end_byte;
    }
}

fn check(file: &str, language: Language, config: &ChunkConfig, snapshot: &str) {
    let path = fixtures().join("chunks").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(detect_language(file, &text), language, "language of {file}");
    let out = chunk_file(file, language, &text, config);
    check_invariants(&text, &out.chunks);
    assert!(
        out.diagnostics.iter().all(|d| !d.fallback),
        "{file} fell back to lines: {:?}",
        out.diagnostics
    );
    let snapshot_path = format!("{}/tests/snapshots/{snapshot}", env!("CARGO_MANIFEST_DIR"));
    expect_file![snapshot_path].assert_eq(&render(&out));
}

macro_rules! snapshot_tests {
    ($($name:ident: $file:literal, $lang:expr;)*) => {$(
        #[test]
        fn $name() {
            check($file, $lang, &ChunkConfig::default(), concat!(stringify!($name), ".txt"));
        }
    )*};
}

snapshot_tests! {
    rust: "sample.rs", Language::Rust;
    python: "sample.py", Language::Python;
    javascript: "sample.js", Language::JavaScript;
    typescript: "sample.ts", Language::TypeScript;
    tsx: "sample.tsx", Language::Tsx;
    go: "sample.go", Language::Go;
    java: "sample.java", Language::Java;
    c: "sample.c", Language::C;
    cpp: "sample.cpp", Language::Cpp;
    csharp: "sample.cs", Language::CSharp;
    ruby: "sample.rb", Language::Ruby;
    php: "sample.php", Language::Php;
    bash: "sample.sh", Language::Bash;
    markdown: "sample.md", Language::Markdown;
    config_toml: "sample.toml", Language::Config;
}

/// A class larger than the chunk limit splits into its header and its methods, each method
/// keeping the class header as its scope.
#[test]
fn large_class_splits_at_methods_with_header_as_scope() {
    let config = ChunkConfig {
        max_chunk_bytes: 700,
        target_chunk_bytes: 400,
        ..ChunkConfig::default()
    };
    check("sample.py", Language::Python, &config, "python_split.txt");
}

/// A function larger than the limit with no nested definitions splits at statements.
#[test]
fn large_function_splits_at_statements() {
    let mut body = String::from("fn big() {\n");
    for i in 0..200 {
        writeln!(body, "    let value_{i} = compute({i}) + offset;").unwrap();
    }
    body.push_str("}\n");
    let out = chunk_file("big.rs", Language::Rust, &body, &ChunkConfig::default());
    check_invariants(&body, &out.chunks);
    assert!(
        out.chunks.len() > 2,
        "expected a split, got {}",
        out.chunks.len()
    );
    for c in &out.chunks {
        assert_eq!(c.symbol, "big");
        assert_eq!(c.signature, "fn big()");
        assert!(c.content.len() <= ChunkConfig::default().max_chunk_bytes);
    }
}

/// A parse that exceeds its work budget falls back to line windows and says so.
#[test]
fn parse_budget_falls_back_to_lines() {
    let mut text = String::new();
    for i in 0..40_000 {
        writeln!(text, "fn f{i}(x: u32) -> u32 {{ x + {i} }}").unwrap();
    }
    let config = ChunkConfig {
        parse_work: 1,
        ..ChunkConfig::default()
    };
    let out = chunk_file("huge.rs", Language::Rust, &text, &config);
    check_invariants(&text, &out.chunks);
    assert!(
        out.diagnostics
            .iter()
            .any(|d| d.fallback && d.message.contains("budget")),
        "{:?}",
        out.diagnostics
    );
    assert!(
        out.chunks
            .iter()
            .all(|c| c.kind == codectx::model::ChunkKind::Lines)
    );
    let covered: usize = out
        .chunks
        .iter()
        .map(|c| c.span.end_line - c.span.start_line + 1)
        .sum();
    assert_eq!(covered, 40_000, "every line is in some window");
}

/// The budget counts work, not time: a file given just enough of it gets the same chunks
/// on a machine kept busy by other threads as on an idle one, every time. (With a
/// wall-clock deadline this tight, the busy runs fell back to line windows.)
#[test]
fn a_file_at_the_edge_of_its_budget_gets_the_same_chunks_however_busy_the_machine() {
    let mut text = String::new();
    for i in 0..3_000 {
        writeln!(
            text,
            "class Widget{i}:\n    def turn(self, x):\n        return x + {i}\n"
        )
        .unwrap();
    }
    let chunk = |units: u64| {
        let config = ChunkConfig {
            parse_work: units,
            ..ChunkConfig::default()
        };
        chunk_file("widgets.py", Language::Python, &text, &config)
    };
    let parsed = |out: &ChunkOutput| out.diagnostics.iter().all(|d| !d.fallback);
    // The smallest budget that still parses, by bisection (the answer is deterministic).
    let (mut low, mut high) = (0u64, codectx::config::DEFAULT_PARSE_WORK);
    assert!(parsed(&chunk(high)), "the default budget parses this file");
    while high - low > 1 {
        let mid = (low + high) / 2;
        if parsed(&chunk(mid)) {
            high = mid;
        } else {
            low = mid;
        }
    }
    assert!(!parsed(&chunk(low)), "one unit less falls back");
    let idle = render(&chunk(high));
    assert!(!idle.contains(" lines"), "parsed by definitions:\n{idle}");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinners: Vec<_> = (0..8)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                x
            })
        })
        .collect();
    let busy: Vec<String> = (0..5).map(|_| render(&chunk(high))).collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in spinners {
        s.join().unwrap();
    }
    for run in busy {
        assert_eq!(run, idle, "the same chunks under load");
    }
}

/// Broken syntax still yields chunks (tree-sitter recovers) and a diagnostic, never a panic.
#[test]
fn malformed_code_is_chunked_with_a_diagnostic() {
    let text = "fn ok() { 1 }\n\nfn broken( { let = ; }\n\nstruct S { a: u32 }\n";
    let out = chunk_file("bad.rs", Language::Rust, text, &ChunkConfig::default());
    check_invariants(text, &out.chunks);
    assert!(
        out.diagnostics
            .iter()
            .any(|d| d.message.contains("syntax errors"))
    );
    assert!(out.chunks.iter().any(|c| c.content.contains("struct S")));
}

#[test]
fn every_language_spec_compiles() {
    for spec in spec::all_specs() {
        let compiled = spec::compile(spec).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            compiled.definition_captures.iter().any(Option::is_some),
            "{} has no definition captures",
            spec.language
        );
    }
}

/// The chunker runs its definition query only at the nodes a pattern can start at; that
/// must find exactly what one query cursor over the whole tree finds.
fn assert_same_definitions(path: &std::path::Path, text: &str) -> bool {
    use codectx::syntax::code::{QueryStrategy, definitions};
    let language = detect_language(&path.to_string_lossy(), text);
    let fast = definitions(language, text, QueryStrategy::StartNodes);
    let reference = definitions(language, text, QueryStrategy::WholeTree);
    assert_eq!(fast, reference, "definitions differ in {}", path.display());
    fast.is_some()
}

#[test]
fn the_start_node_walk_finds_what_the_whole_tree_query_finds() {
    for spec in spec::all_specs() {
        let compiled = spec::compile(spec).unwrap();
        assert!(
            compiled.start_kinds.is_some(),
            "{}: a definition pattern's start kinds could not be read",
            spec.language
        );
    }
    let mut compared = 0;
    for entry in std::fs::read_dir(fixtures().join("chunks")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        compared += usize::from(assert_same_definitions(&path, &text));
        // Damaged copies put ERROR nodes where the grammar's node types promise none: cut
        // mid-file, and stray closers dropped into the middle.
        let cut = codectx::source::classify::floor_char_boundary(&text, text.len() / 2);
        assert_same_definitions(&path, &text[..cut]);
        let third = codectx::source::classify::floor_char_boundary(&text, text.len() / 3);
        let damaged = format!("{} ) }} ] ; {}", &text[..third], &text[third..]);
        assert_same_definitions(&path, &damaged);
    }
    assert!(
        compared >= 13,
        "only {compared} fixture files had a grammar"
    );
    // Definitions inside ERROR nodes, where the grammar's node types would not let the walk
    // look.
    for (name, text) in [
        ("err.rs", "fn f() { let x = [1, 2 fn g() {} struct S; ]; }"),
        (
            "err.py",
            "x = [1, 2\ndef g():\n    pass\nclass C:\n    pass\n",
        ),
        ("err.js", "const a = [1, 2 function g() {} class C {} ;"),
        ("err.go", "package p\nvar x = []int{1, 2 func g() {} }\n"),
        ("err.c", "int x[] = {1, 2 int g(void) { return 0; } };"),
    ] {
        assert_same_definitions(std::path::Path::new(name), text);
    }
    // Nesting past the walk's depth limit.
    let deep_rust = format!(
        "fn outer() {{ {} fn inner() {{}} {} }}",
        "if x { ".repeat(12),
        "}".repeat(12)
    );
    assert_same_definitions(std::path::Path::new("deep.rs"), &deep_rust);
    let deep_js = format!(
        "function a() {{ {} const f = () => 1; {} }}",
        "if (x) { ".repeat(12),
        "}".repeat(12)
    );
    assert_same_definitions(std::path::Path::new("deep.js"), &deep_js);
    // `CODECTX_DEFS_CORPUS=DIR` compares every file under DIR too (used on the index
    // benchmark's corpus when the walk changes).
    if let Ok(dir) = std::env::var("CODECTX_DEFS_CORPUS") {
        let mut files = 0;
        for entry in ignore::WalkBuilder::new(dir).build().flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            if text.len() < 1 << 20 && assert_same_definitions(entry.path(), &text) {
                files += 1;
            }
        }
        eprintln!("compared the definitions of {files} corpus files");
    }
}

#[test]
fn pattern_roots_are_read_off_the_query_text() {
    let check = |pattern: &str, expected: Option<&[&str]>| {
        let got = spec::pattern_roots(pattern);
        let expected = expected.map(|e| e.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(got, expected, "{pattern}");
    };
    check(
        "(function_item name: (identifier) @name) @definition.function",
        Some(&["function_item"]),
    );
    check(
        "(declaration_list (function_item name: (identifier) @name) @definition.method)",
        Some(&["declaration_list"]),
    );
    check(
        r#"((comment)* @doc . (method_definition name: (property_identifier) @name) @definition.method (#not-eq? @name "constructor") (#select-adjacent! @doc @definition.method))"#,
        Some(&["method_definition"]),
    );
    check(
        "[(class name: (_) @name) (class_declaration name: (_) @name)] @definition.class",
        Some(&["class", "class_declaration"]),
    );
    check("((a) (b)) @definition.x", None);
    check("(_ name: (identifier) @name) @definition.x", None);
}

#[test]
fn chunk_ids_are_stable_and_content_addressed() {
    let text = std::fs::read_to_string(fixtures().join("chunks/sample.go")).unwrap();
    let a = chunk_file("a.go", Language::Go, &text, &ChunkConfig::default());
    let b = chunk_file("a.go", Language::Go, &text, &ChunkConfig::default());
    let c = chunk_file("b.go", Language::Go, &text, &ChunkConfig::default());
    let ids = |o: &ChunkOutput| o.chunks.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b));
    assert_ne!(ids(&a), ids(&c), "the path is part of the id");
    let hashes = |o: &ChunkOutput| o.chunks.iter().map(|c| c.hash.clone()).collect::<Vec<_>>();
    assert_eq!(hashes(&a), hashes(&c), "the content hash is not");
    // An edit after the first chunk leaves that chunk's text, not its id: ids belong to one
    // version of the file.
    let edited = format!("{text}\n// trailing edit\n");
    let d = chunk_file("a.go", Language::Go, &edited, &ChunkConfig::default());
    assert_eq!(a.chunks[0].hash, d.chunks[0].hash);
    assert_ne!(a.chunks[0].id, d.chunks[0].id);
}

/// `//!` documents the module: the function below it gets no doc; `///` is the function's.
#[test]
fn rust_inner_doc_comments_stay_with_the_module() {
    let text =
        "//! Module docs: what this file owns.\nfn first(value: u32) -> u32 {\n    value + 1\n}\n";
    let out = chunk_file("lib.rs", Language::Rust, text, &ChunkConfig::default());
    let first = out.chunks.iter().find(|c| c.symbol == "first").unwrap();
    assert_eq!(first.doc, "", "{first:?}");
    let text = "/// Adds one.\nfn second(value: u32) -> u32 {\n    value + 1\n}\n";
    let out = chunk_file("lib.rs", Language::Rust, text, &ChunkConfig::default());
    let second = out.chunks.iter().find(|c| c.symbol == "second").unwrap();
    assert_eq!(second.doc.trim_end(), "/// Adds one.");
}
