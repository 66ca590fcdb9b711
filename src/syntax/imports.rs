//! The modules a source file imports, as keys the import graph matches files by: each
//! import's module path and its prefixes, relative imports resolved against the file's own
//! place, each cut to its last two parts (`from scrapy.http import Request` in any file ->
//! `scrapy`, `scrapy/http`, `http/request`). A file is reached by the key of its own module
//! path ([`module_key`]): `scrapy/http/request/__init__.py` -> `http/request`.
//!
//! Read line by line with a cheap prefix test before any pattern: imports are a handful of
//! lines at the top of a file, so the cost is one pass over the line starts.

use crate::model::Language;
use regex::Regex;
use std::sync::OnceLock;

/// The most keys one file records (a generated file importing thousands of modules).
const MAX_KEYS: usize = 256;

/// The module parts of a file, lowercased, without its extension; a package's init file
/// (`__init__`, `index`, `mod`, `lib`, `main`) is named by its directory.
pub fn module_parts(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = path.split('/').map(|p| p.to_ascii_lowercase()).collect();
    if let Some(last) = parts.last_mut()
        && let Some((stem, _)) = last.rsplit_once('.')
    {
        *last = stem.to_string();
    }
    if parts.len() > 1
        && parts
            .last()
            .is_some_and(|l| matches!(l.as_str(), "__init__" | "index" | "mod" | "lib" | "main"))
    {
        parts.pop();
    }
    parts
}

/// The key a file is imported by: the last two parts of its module path (a Go file: of its
/// directory, Go imports packages).
pub fn module_key(path: &str) -> String {
    let mut parts = module_parts(path);
    if path.ends_with(".go") {
        // Go imports a package by its path, whose last part is the directory's name (the
        // parts above it are the module's, not the repository's).
        parts.pop();
        return parts.pop().unwrap_or_default();
    }
    tail(&parts)
}

fn tail(parts: &[String]) -> String {
    parts[parts.len().saturating_sub(2)..].join("/")
}

struct Patterns {
    py_from: Regex,
    py_import: Regex,
    js: Regex,
    rust_use: Regex,
    rust_mod: Regex,
    go_path: Regex,
    java: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        py_from: Regex::new(r"^\s*from\s+(\.*)([\w.]*)\s+import\s+\(?\s*([\w\s,.*]*)")
            .expect("pattern"),
        py_import: Regex::new(r"^\s*import\s+([\w.]+(?:\s+as\s+\w+)?(?:\s*,\s*[\w.]+(?:\s+as\s+\w+)?)*)")
            .expect("pattern"),
        js: Regex::new(
            r#"(?:^\s*import\s.*?from\s+|^\s*import\s+|^\s*export\s.*?from\s+|require\(\s*|import\(\s*)['"]([^'"]+)['"]"#,
        )
        .expect("pattern"),
        rust_use: Regex::new(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+([\w:]+)(?:::\{([^}]*)\})?")
            .expect("pattern"),
        rust_mod: Regex::new(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;").expect("pattern"),
        go_path: Regex::new(r#"^\s*(?:import\s+)?(?:\w+\s+)?"([^"]+)"\s*$"#).expect("pattern"),
        java: Regex::new(r"^\s*import\s+(?:static\s+)?([\w.]+)").expect("pattern"),
    })
}

/// Adds the keys of a module path (its prefixes, each cut to two parts).
fn push_path(parts: &[String], out: &mut Vec<String>) {
    for n in 1..=parts.len() {
        let key = tail(&parts[..n]);
        if !key.is_empty() && !out.contains(&key) && out.len() < MAX_KEYS {
            out.push(key);
        }
    }
}

fn lower_parts<'a>(parts: impl Iterator<Item = &'a str>) -> Vec<String> {
    parts
        .filter(|p| !p.is_empty())
        .map(|p| p.to_ascii_lowercase())
        .collect()
}

/// Joins a relative path (`./a/b`, `../c`) to the directory of `file`.
fn resolve_relative(file: &str, rel: &str) -> Vec<String> {
    let mut dir: Vec<&str> = file.split('/').collect();
    dir.pop();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                dir.pop();
            }
            p => dir.push(p),
        }
    }
    let mut parts = lower_parts(dir.into_iter());
    if let Some(last) = parts.last_mut()
        && let Some((stem, ext)) = last.rsplit_once('.')
        && matches!(ext, "js" | "jsx" | "ts" | "tsx" | "mjs" | "cjs")
    {
        *last = stem.to_string();
    }
    if parts.last().is_some_and(|l| l == "index") {
        parts.pop();
    }
    parts
}

/// The import keys of one file (see the module documentation).
pub fn imports(language: Language, path: &str, text: &str) -> Vec<String> {
    let p = patterns();
    let mut out = Vec::new();
    let own = module_parts(path);
    let mut in_go_block = false;
    for line in text.lines() {
        let t = line.trim_start();
        match language {
            Language::Python => {
                if t.starts_with("from ") {
                    if let Some(c) = p.py_from.captures(line) {
                        let dots = c[1].len();
                        let mut base: Vec<String> = if dots > 0 {
                            // `.` is the file's own package, each further dot one level up.
                            let keep = own.len().saturating_sub(dots);
                            own[..keep].to_vec()
                        } else {
                            Vec::new()
                        };
                        base.extend(lower_parts(c[2].split('.')));
                        push_path(&base, &mut out);
                        for name in c[3].split(',') {
                            let name = name.split_whitespace().next().unwrap_or("");
                            if !name.is_empty() && name != "*" {
                                let mut full = base.clone();
                                full.push(name.to_ascii_lowercase());
                                push_path(&full, &mut out);
                            }
                        }
                    }
                } else if t.starts_with("import ")
                    && let Some(c) = p.py_import.captures(line)
                {
                    for module in c[1].split(',') {
                        let module = module.split_whitespace().next().unwrap_or("");
                        push_path(&lower_parts(module.split('.')), &mut out);
                    }
                }
            }
            Language::JavaScript | Language::TypeScript | Language::Tsx => {
                if (t.starts_with("import") || t.starts_with("export") || t.contains("require("))
                    && let Some(c) = p.js.captures(line)
                {
                    let spec = &c[1];
                    let parts = if spec.starts_with('.') {
                        resolve_relative(path, spec)
                    } else {
                        lower_parts(spec.split('/'))
                    };
                    push_path(&parts, &mut out);
                }
            }
            Language::Rust => {
                if t.contains("use ") {
                    if let Some(c) = p.rust_use.captures(line) {
                        let mut parts: Vec<String> = Vec::new();
                        for seg in c[1].split("::").filter(|s| !s.is_empty()) {
                            match seg {
                                "crate" => parts.clear(),
                                "self" => parts = own.clone(),
                                "super" => {
                                    if parts.is_empty() {
                                        parts = own.clone();
                                    }
                                    parts.pop();
                                }
                                s => parts.push(s.to_ascii_lowercase()),
                            }
                        }
                        push_path(&parts, &mut out);
                        if let Some(group) = c.get(2) {
                            for name in group.as_str().split(',') {
                                let name = name.trim().split("::").next().unwrap_or("");
                                if !name.is_empty() && name != "self" {
                                    let mut full = parts.clone();
                                    full.push(name.to_ascii_lowercase());
                                    push_path(&full, &mut out);
                                }
                            }
                        }
                    }
                } else if t.contains("mod ")
                    && let Some(c) = p.rust_mod.captures(line)
                {
                    let mut parts = own.clone();
                    parts.push(c[1].to_ascii_lowercase());
                    push_path(&parts, &mut out);
                }
            }
            Language::Go => {
                if t.starts_with("import (") {
                    in_go_block = true;
                    continue;
                }
                if in_go_block && t.starts_with(')') {
                    in_go_block = false;
                    continue;
                }
                if (in_go_block || t.starts_with("import "))
                    && let Some(c) = p.go_path.captures(line)
                {
                    // A Go file is reached by its directory's name (see `module_key`).
                    let parts = lower_parts(c[1].split('/'));
                    if let Some(last) = parts.last()
                        && !out.contains(last)
                    {
                        out.push(last.clone());
                    }
                }
            }
            Language::Java => {
                if t.starts_with("import ")
                    && let Some(c) = p.java.captures(line)
                {
                    push_path(&lower_parts(c[1].split('.')), &mut out);
                }
            }
            _ => return Vec::new(),
        }
        if out.len() >= MAX_KEYS {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    fn check(language: Language, path: &str, text: &str, expected: Expect) {
        expected.assert_eq(&imports(language, path, text).join(" "));
    }

    #[test]
    fn python_absolute_relative_and_from_imports() {
        check(
            Language::Python,
            "scrapy/http/request/form.py",
            "import os.path, json as j\nfrom scrapy.http import Request\nfrom ..response import text\nfrom . import utils\n\ndef f():\n    from w3lib.html import strip_html5_whitespace\n",
            expect![
                "os os/path json scrapy scrapy/http http/request http/response response/text request/utils w3lib w3lib/html html/strip_html5_whitespace"
            ],
        );
    }

    #[test]
    fn javascript_rust_go_java() {
        check(
            Language::TypeScript,
            "packages/vite/src/node/server/index.ts",
            "import { a } from './middlewares/proxy'\nimport fs from 'node:fs'\nconst x = require('../config.js')\nexport * from \"./hmr\"\n",
            expect![
                "packages packages/vite vite/src src/node node/server server/middlewares middlewares/proxy node:fs node/config server/hmr"
            ],
        );
        check(
            Language::Rust,
            "src/retrieve/rank.rs",
            "use super::ranker::{Contribution, Ranker};\nuse crate::index::lexical::Snapshot;\nmod tests;\n",
            expect![
                "src src/retrieve retrieve/ranker index index/lexical lexical/snapshot retrieve/rank rank/tests"
            ],
        );
        check(
            Language::Go,
            "cmd/fzf/main.go",
            "import (\n\t\"fmt\"\n\tfzf \"github.com/junegunn/fzf/src\"\n)\n",
            expect!["fmt src"],
        );
        check(
            Language::Java,
            "src/main/java/org/jsoup/nodes/Element.java",
            "package org.jsoup.nodes;\nimport org.jsoup.helper.Validate;\nimport static org.jsoup.internal.Normalizer.lowerCase;\n",
            expect![
                "org org/jsoup jsoup/helper helper/validate jsoup/internal internal/normalizer normalizer/lowercase"
            ],
        );
    }

    #[test]
    fn files_are_reached_by_their_module_key() {
        assert_eq!(
            module_key("scrapy/http/request/__init__.py"),
            "http/request"
        );
        assert_eq!(module_key("src/retrieve/ranker.rs"), "retrieve/ranker");
        assert_eq!(module_key("src/fzf/terminal.go"), "fzf");
        assert_eq!(module_key("setup.py"), "setup");
    }
}
