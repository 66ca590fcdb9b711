//! The tools the model may call, and the workspace they act on: search, get_context and
//! read_span go to the codectx service over gRPC; edit_file and apply_patch change the
//! worktree (confined to it); run_tests runs the configured command in the sandbox.
//!
//! Every text a tool returns is redacted and fitted to the tool-output budget before the
//! model sees it.

use crate::error::{Error, Result};
use crate::llm::ToolSpec;
use crate::redact;
use crate::sandbox;
use crate::server::client::Client;
use crate::server::grpc::pb;
use crate::tokens::TokenCounter;
pub use crate::tokens::fit;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The redaction marker's prefix; text holding it is not the file's real text.
const MARKER: &str = "[REDACTED:";

/// What one tool call produced.
#[derive(Debug, Clone)]
pub struct ToolResult {
    pub content: String,
    pub is_error: bool,
    /// Set when the call ran the tests (it ends an iteration).
    pub tests: Option<sandbox::Outcome>,
    /// Set by `finish`: the model's summary.
    pub finish: Option<String>,
}

impl ToolResult {
    fn ok(content: impl Into<String>) -> ToolResult {
        ToolResult {
            content: content.into(),
            is_error: false,
            tests: None,
            finish: None,
        }
    }

    pub fn error(content: impl Into<String>) -> ToolResult {
        ToolResult {
            is_error: true,
            ..ToolResult::ok(content)
        }
    }
}

/// The tools offered to the model, with JSON Schemas of their arguments.
pub fn specs() -> Vec<ToolSpec> {
    let spec = |name: &str, description: &str, parameters: serde_json::Value| ToolSpec {
        name: name.to_string(),
        description: description.to_string(),
        parameters,
    };
    vec![
        spec(
            "search",
            "Hybrid (keyword + semantic) search over the repository's indexed code. Returns ranked chunks with path, lines and signature.",
            json!({"type": "object", "properties": {
                "query": {"type": "string", "description": "identifiers, error text or a description"},
                "k": {"type": "integer", "minimum": 1, "maximum": 50},
                "path_glob": {"type": "string", "description": "e.g. src/**/*.rs"}
            }, "required": ["query"], "additionalProperties": false}),
        ),
        spec(
            "get_context",
            "A token-budgeted pack of the code most relevant to a question or sub-task, with the reason each piece was chosen.",
            json!({"type": "object", "properties": {
                "query": {"type": "string"},
                "budget": {"type": "integer", "minimum": 256}
            }, "required": ["query"], "additionalProperties": false}),
        ),
        spec(
            "read_span",
            "Read lines of a file (1-based, inclusive). Files you edited are read from your worktree.",
            json!({"type": "object", "properties": {
                "path": {"type": "string"},
                "start_line": {"type": "integer", "minimum": 1},
                "end_line": {"type": "integer", "minimum": 1}
            }, "required": ["path"], "additionalProperties": false}),
        ),
        spec(
            "edit_file",
            "Replace one exact occurrence of `search` with `replace` in a file. An empty `search` creates a new file holding `replace`.",
            json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "relative to the repository root"},
                "search": {"type": "string"},
                "replace": {"type": "string"}
            }, "required": ["path", "search", "replace"], "additionalProperties": false}),
        ),
        spec(
            "apply_patch",
            "Apply a unified diff (as `git diff` prints it) to the worktree.",
            json!({"type": "object", "properties": {
                "patch": {"type": "string"}
            }, "required": ["patch"], "additionalProperties": false}),
        ),
        spec(
            "run_tests",
            "Run the repository's test command in the worktree. Ends the current iteration.",
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
        ),
        spec(
            "finish",
            "Declare the task done. The tests are run once more if anything changed since they last passed.",
            json!({"type": "object", "properties": {
                "summary": {"type": "string", "description": "what changed and why, for the PR description"}
            }, "required": ["summary"], "additionalProperties": false}),
        ),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    query: String,
    #[serde(default)]
    k: Option<u32>,
    #[serde(default)]
    path_glob: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextArgs {
    query: String,
    #[serde(default)]
    budget: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    path: String,
    #[serde(default)]
    start_line: Option<u32>,
    #[serde(default)]
    end_line: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditArgs {
    path: String,
    search: String,
    replace: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchArgs {
    patch: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FinishArgs {
    summary: String,
}

/// The state the tools act on.
pub struct Workspace {
    /// The worktree the agent edits.
    pub root: PathBuf,
    /// The repository as the server knows it (its root path).
    pub repository: String,
    pub client: Client,
    pub counter: Arc<dyn TokenCounter>,
    pub test_command: String,
    pub test_timeout: Duration,
    pub output_budget: usize,
    pub context_budget: usize,
    /// Files changed in the worktree so far (repository-relative).
    pub edited: BTreeSet<String>,
    /// Secrets replaced in what tools returned.
    pub redacted: usize,
}

impl Workspace {
    /// Runs one tool call. Bad arguments and refused actions come back as an error result
    /// the model can correct; only a broken service is an `Err`.
    pub fn call(&mut self, name: &str, arguments: &str) -> ToolResult {
        let result = match name {
            "search" => parse(name, arguments).and_then(|a| self.search(a)),
            "get_context" => parse(name, arguments).and_then(|a| self.get_context(a)),
            "read_span" => parse(name, arguments).and_then(|a| self.read_span(a)),
            "edit_file" => parse(name, arguments).and_then(|a| self.edit_file(a)),
            "apply_patch" => parse(name, arguments).and_then(|a| self.apply_patch(a)),
            "run_tests" => parse::<serde_json::Map<String, serde_json::Value>>(name, arguments)
                .and_then(|_| self.run_tests()),
            "finish" => parse::<FinishArgs>(name, arguments).map(|a| ToolResult {
                finish: Some(self.clean(&a.summary)),
                ..ToolResult::ok("finishing")
            }),
            other => Err(Error::invalid(format!(
                "there is no tool {other:?}; the tools are: {}",
                specs()
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        };
        match result {
            Ok(r) => r,
            Err(e) => ToolResult::error(self.clean(&format!("{name}: {e}"))),
        }
    }

    /// Redacts `text` (counting what it replaced).
    pub fn clean(&mut self, text: &str) -> String {
        let r = redact::redact(text);
        self.redacted += r.count();
        r.text
    }

    /// Redacts and fits `text` to the tool-output budget.
    fn output(&mut self, text: &str, keep_tail: bool) -> String {
        let clean = self.clean(text);
        fit(&*self.counter, &clean, self.output_budget, keep_tail)
    }

    fn search(&mut self, a: SearchArgs) -> Result<ToolResult> {
        let r = self.client.search(pb::SearchRequest {
            repository: self.repository.clone(),
            query: a.query,
            k: a.k.unwrap_or(10).clamp(1, 50),
            path_glob: a.path_glob.unwrap_or_default(),
            ..Default::default()
        })?;
        let mut out = format!("{} hits at commit {}:\n", r.hits.len(), short(&r.commit));
        for h in &r.hits {
            if let Some(c) = &h.chunk {
                let head = if c.signature.is_empty() {
                    c.content.lines().next().unwrap_or_default().to_string()
                } else {
                    c.signature.clone()
                };
                out.push_str(&format!(
                    "{}. {}:{}-{} {} ({}) {}\n",
                    h.rank,
                    c.path,
                    c.start_line,
                    c.end_line,
                    c.symbol,
                    c.kind,
                    head.trim()
                ));
            }
        }
        Ok(ToolResult::ok(self.output(&out, false)))
    }

    fn get_context(&mut self, a: ContextArgs) -> Result<ToolResult> {
        let budget = a
            .budget
            .map_or(self.context_budget, |b| b as usize)
            .min(self.context_budget.max(self.output_budget));
        let r = self.client.context(pb::GetContextRequest {
            repository: self.repository.clone(),
            task: a.query,
            budget: budget as u32,
            convention_share: Some(0.0),
            ..Default::default()
        })?;
        Ok(ToolResult::ok(self.clean(&r.markdown)))
    }

    fn read_span(&mut self, a: ReadArgs) -> Result<ToolResult> {
        let start = a.start_line.unwrap_or(1).max(1) as usize;
        let end = a.end_line.map_or(start + 199, |e| e as usize).max(start);
        let rel = a.path.trim().trim_start_matches("./").to_string();
        let text = if self.edited.contains(&rel) {
            let path = sandbox::confine(&self.root, &rel)?;
            let body = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let total = body.lines().count();
            let lines: Vec<String> = body
                .lines()
                .enumerate()
                .skip(start - 1)
                .take(end + 1 - start)
                .map(|(i, l)| format!("{:>5} {l}", i + 1))
                .collect();
            format!(
                "{rel} lines {start}-{} of {total} (your worktree):\n{}\n",
                (start + lines.len()).saturating_sub(1),
                lines.join("\n")
            )
        } else {
            let r = self.client.read_span(pb::ReadSpanRequest {
                repository: self.repository.clone(),
                path: rel.clone(),
                start_line: start as u32,
                end_line: end as u32,
                ..Default::default()
            })?;
            let lines: Vec<String> = r
                .text
                .lines()
                .enumerate()
                .map(|(i, l)| format!("{:>5} {l}", r.start_line as usize + i))
                .collect();
            format!(
                "{} lines {}-{} of {} (commit {}{}):\n{}\n",
                r.path,
                r.start_line,
                r.end_line,
                r.total_lines,
                short(&r.commit),
                if r.truncated { ", truncated" } else { "" },
                lines.join("\n")
            )
        };
        Ok(ToolResult::ok(self.output(&text, false)))
    }

    fn edit_file(&mut self, a: EditArgs) -> Result<ToolResult> {
        refuse_markers(&a.search, &a.replace)?;
        let rel = a.path.trim().trim_start_matches("./").to_string();
        let path = sandbox::confine(&self.root, &rel)?;
        let summary = if a.search.is_empty() {
            if path.exists() {
                return Err(Error::invalid(format!(
                    "{rel} exists; give the exact text to replace in `search`"
                )));
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            std::fs::write(&path, &a.replace).map_err(|e| Error::io(&path, e))?;
            format!("created {rel} ({} lines)", a.replace.lines().count())
        } else {
            let body = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::invalid(format!(
                    "{rel} does not exist; to create it, send an empty `search`"
                )),
                _ => Error::io(&path, e),
            })?;
            let found = body.matches(&a.search).count();
            match found {
                0 => {
                    return Err(Error::invalid(format!(
                        "the search text does not occur in {rel}; read_span the file and copy the lines exactly (whitespace included)"
                    )));
                }
                1 => {}
                n => {
                    return Err(Error::invalid(format!(
                        "the search text occurs {n} times in {rel}; include more surrounding lines so it occurs once"
                    )));
                }
            }
            let at = body.find(&a.search).unwrap_or(0);
            let line = body[..at].matches('\n').count() + 1;
            let updated = body.replacen(&a.search, &a.replace, 1);
            std::fs::write(&path, updated).map_err(|e| Error::io(&path, e))?;
            format!(
                "edited {rel} at line {line}: -{} +{} lines",
                a.search.lines().count(),
                a.replace.lines().count()
            )
        };
        self.edited.insert(rel);
        Ok(ToolResult::ok(summary))
    }

    fn apply_patch(&mut self, a: PatchArgs) -> Result<ToolResult> {
        refuse_markers(&a.patch, "")?;
        let mut paths = BTreeSet::new();
        let mut strip_one = true;
        for line in a.patch.lines() {
            let Some(p) = line
                .strip_prefix("--- ")
                .or_else(|| line.strip_prefix("+++ "))
            else {
                continue;
            };
            let p = p.split('\t').next().unwrap_or_default().trim();
            if p == "/dev/null" {
                continue;
            }
            let rel = match p.strip_prefix("a/").or_else(|| p.strip_prefix("b/")) {
                Some(r) => r,
                None => {
                    strip_one = false;
                    p
                }
            };
            sandbox::confine(&self.root, rel)?;
            paths.insert(rel.to_string());
        }
        if paths.is_empty() {
            return Err(Error::invalid(
                "the patch names no file (expected `--- a/path` and `+++ b/path` lines)",
            ));
        }
        let mut body = a.patch.clone();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        let patch_file =
            tempfile::NamedTempFile::new().map_err(|e| Error::io(std::env::temp_dir(), e))?;
        std::fs::write(patch_file.path(), body).map_err(|e| Error::io(patch_file.path(), e))?;
        let strip = if strip_one { "-p1" } else { "-p0" };
        for check in [true, false] {
            let mut cmd = std::process::Command::new("git");
            cmd.arg("-C")
                .arg(&self.root)
                .args(["apply", "--recount", strip]);
            if check {
                cmd.arg("--check");
            }
            let out = cmd
                .arg(patch_file.path())
                .output()
                .map_err(|e| Error::Unavailable(format!("cannot run git apply: {e}")))?;
            if !out.status.success() {
                return Err(Error::invalid(format!(
                    "the patch does not apply: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        let list: Vec<String> = paths.iter().cloned().collect();
        self.edited.extend(paths);
        Ok(ToolResult::ok(format!(
            "applied the patch to {}",
            list.join(", ")
        )))
    }

    /// Runs the test command; the outcome rides on the result.
    pub fn run_tests(&mut self) -> Result<ToolResult> {
        let spec = sandbox::Spec::new(&self.test_command, &self.root, self.test_timeout);
        let outcome = sandbox::run(&spec)?;
        let verdict = if outcome.success() {
            "PASSED"
        } else {
            "FAILED"
        };
        let head = format!(
            "{verdict}: `{}` ({}) in {:.1} s\n",
            self.test_command,
            outcome.describe(),
            outcome.took.as_secs_f64()
        );
        let body = self.output(&outcome.output, true);
        Ok(ToolResult {
            content: format!("{head}{body}"),
            is_error: !outcome.success(),
            tests: Some(outcome),
            finish: None,
        })
    }
}

fn parse<'a, T: Deserialize<'a>>(tool: &str, arguments: &'a str) -> Result<T> {
    let arguments = if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments
    };
    serde_json::from_str(arguments).map_err(|e| {
        Error::invalid(format!(
            "the arguments are not valid for {tool}: {e}. Send one JSON object matching the tool's schema."
        ))
    })
}

fn refuse_markers(a: &str, b: &str) -> Result<()> {
    if a.contains(MARKER) || b.contains(MARKER) {
        return Err(Error::invalid(
            "the text holds a redaction marker: secrets are hidden from you, so lines holding them cannot be matched or rewritten; edit around them",
        ));
    }
    Ok(())
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_respects_the_budget_and_keeps_the_tail_when_asked() {
        let counter = crate::tokens::counter("cl100k").unwrap();
        let text: String = (0..2000)
            .map(|i| format!("line {i} of the test output\n"))
            .collect();
        for budget in [40, 200, 1000] {
            let head = fit(&*counter, &text, budget, false);
            assert!(counter.count(&head) <= budget, "{budget}");
            assert!(head.starts_with("line 0 "));
            let tail = fit(&*counter, &text, budget, true);
            assert!(counter.count(&tail) <= budget, "{budget}");
            assert!(tail.trim_end().ends_with("line 1999 of the test output"));
        }
        assert_eq!(fit(&*counter, "short", 10, true), "short");
    }
}
