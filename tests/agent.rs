//! The agent loop end to end: real fixture repositories (Rust and Python) in temp dirs, the
//! real `codectx` binary, a real gRPC server, and a loopback HTTP server that speaks the
//! Anthropic and the OpenAI wire formats and answers with a scripted conversation.

use crate::support::{codectx_command, git, write};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One scripted model turn: some text and tool calls (name, raw JSON arguments).
#[derive(Clone)]
pub(crate) struct Turn {
    pub(crate) text: &'static str,
    pub(crate) calls: Vec<(&'static str, String)>,
}

pub(crate) fn call(name: &'static str, args: Value) -> Turn {
    Turn {
        text: "",
        calls: vec![(name, args.to_string())],
    }
}

#[derive(Default)]
pub(crate) struct Script {
    turns: Mutex<VecDeque<Turn>>,
    /// Repeated once the script is used up.
    last: Mutex<Option<Turn>>,
    bodies: Mutex<Vec<String>>,
    keys: Mutex<Vec<String>>,
    /// Requests answered 429 before any is served.
    throttle: AtomicUsize,
    served: AtomicUsize,
}

impl Script {
    fn next(&self) -> Turn {
        let turn = self.turns.lock().unwrap().pop_front();
        match turn {
            Some(t) => {
                *self.last.lock().unwrap() = Some(t.clone());
                t
            }
            None => self.last.lock().unwrap().clone().expect("a scripted turn"),
        }
    }

    pub(crate) fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

fn record(script: &Script, headers: &HeaderMap, body: String) -> Option<axum::response::Response> {
    for h in ["x-api-key", "authorization"] {
        if let Some(v) = headers.get(h).and_then(|v| v.to_str().ok()) {
            script.keys.lock().unwrap().push(v.to_string());
        }
    }
    script.bodies.lock().unwrap().push(body);
    if script
        .throttle
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "0")],
                "{\"error\": \"rate limited\"}",
            )
                .into_response(),
        );
    }
    None
}

async fn anthropic(
    State(script): State<Arc<Script>>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    if let Some(r) = record(&script, &headers, body) {
        return r;
    }
    let n = script.served.fetch_add(1, Ordering::SeqCst);
    let turn = script.next();
    let mut content = Vec::new();
    if !turn.text.is_empty() {
        content.push(json!({"type": "text", "text": turn.text}));
    }
    for (i, (name, args)) in turn.calls.iter().enumerate() {
        let input: Value = serde_json::from_str(args).expect("Anthropic scripts send objects");
        content.push(json!({"type": "tool_use", "id": format!("toolu_{n}_{i}"), "name": name, "input": input}));
    }
    let stop = if turn.calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    json_response(json!({
        "id": format!("msg_{n}"), "type": "message", "role": "assistant", "model": "scripted",
        "content": content, "stop_reason": stop,
        "usage": {"input_tokens": 1000, "output_tokens": 50},
    }))
}

async fn openai(
    State(script): State<Arc<Script>>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    if let Some(r) = record(&script, &headers, body) {
        return r;
    }
    let n = script.served.fetch_add(1, Ordering::SeqCst);
    let turn = script.next();
    let calls: Vec<Value> = turn
        .calls
        .iter()
        .enumerate()
        .map(|(i, (name, args))| json!({"id": format!("call_{n}_{i}"), "type": "function", "function": {"name": name, "arguments": args}}))
        .collect();
    let mut message = json!({"role": "assistant", "content": if turn.text.is_empty() { Value::Null } else { json!(turn.text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let finish = if turn.calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    json_response(json!({
        "id": format!("chatcmpl-{n}"), "object": "chat.completion", "model": "scripted",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 900, "completion_tokens": 40, "total_tokens": 940},
    }))
}

fn json_response(v: Value) -> axum::response::Response {
    ([("content-type", "application/json")], v.to_string()).into_response()
}

/// The loopback model server; it lives as long as the returned runtime.
pub(crate) fn model_server(turns: Vec<Turn>) -> (String, Arc<Script>, tokio::runtime::Runtime) {
    let script = Arc::new(Script::default());
    *script.turns.lock().unwrap() = turns.into();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/v1/messages", post(anthropic))
        .route("/v1/chat/completions", post(openai))
        .with_state(Arc::clone(&script));
    runtime.spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), script, runtime)
}

/// Secrets seeded in the fixtures, the task and the test output.
const SECRETS: &[&str] = &[
    "AKIAZ7QK3L5M2N4P6R7T",
    "ghp_Zq8Lm2Vb4Nc7Rt1Yp5WdX3Hs6Jf0Ga2Qe8Uo",
    "xoxb-2048-88812-Zq8Lm2Vb4Nc7Rt1Yp5",
    "hunter2-Correct-Horse",
];

const API_KEY: &str = "sk-ant-api03-test-key-never-logged-Zq8Lm2Vb4";

fn rust_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, ".gitignore", "target/\n");
    write(
        root,
        "Cargo.toml",
        "[package]\nname = \"calc\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
    );
    write(
        root,
        "src/lib.rs",
        r#"//! A tiny calculator.

/// The token the release job uses (a seeded secret).
pub const RELEASE_HOOK: &str = "xoxb-2048-88812-Zq8Lm2Vb4Nc7Rt1Yp5";

/// Adds two numbers.
pub fn add(a: i32, b: i32) -> i32 {
    a - b
}

#[cfg(test)]
mod tests {
    #[test]
    fn adds() {
        assert_eq!(super::add(2, 3), 5, "deploy key ghp_Zq8Lm2Vb4Nc7Rt1Yp5WdX3Hs6Jf0Ga2Qe8Uo");
    }
}
"#,
    );
    write(
        root,
        "config/settings.toml",
        "[aws]\naccess_key_id = \"AKIAZ7QK3L5M2N4P6R7T\"\n",
    );
    write(
        root,
        "AGENTS.md",
        "# Conventions\n\nKeep functions pure and small.\nThe staging DB_PASSWORD = \"hunter2-Correct-Horse\" lives in the vault.\n",
    );
    git(root, &["init", "-q"]);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "calc"]);
    dir
}

pub(crate) fn python_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "calc.py",
        "\"\"\"A tiny calculator.\"\"\"\n\n\ndef add(a, b):\n    \"\"\"Adds two numbers.\"\"\"\n    return a - b\n",
    );
    write(
        root,
        "test_calc.py",
        "import unittest\n\nimport calc\n\n\nclass CalcTest(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(calc.add(2, 3), 5, \"AWS AKIAZ7QK3L5M2N4P6R7T\")\n\n\nif __name__ == \"__main__\":\n    unittest.main()\n",
    );
    git(root, &["init", "-q"]);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "calc"]);
    dir
}

pub(crate) fn config(dir: &Path, provider: &str, url: &str, test_command: &str) -> PathBuf {
    let base = if provider == "openai" {
        format!("{url}/v1")
    } else {
        url.to_string()
    };
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "[llm]\nprovider = \"{provider}\"\nmodel = \"scripted\"\nbase_url = \"{base}\"\nbackoff_ms = 10\nmax_retries = 3\n\n[agent]\ntest_command = \"{test_command}\"\ntest_timeout_s = 300\n"
        ),
    )
    .unwrap();
    path
}

fn task(dir: &Path, value: Value) -> PathBuf {
    let path = dir.join("task.json");
    std::fs::write(&path, value.to_string()).unwrap();
    path
}

struct Run {
    code: i32,
    result: Value,
    run_dir: PathBuf,
    stderr: String,
}

fn agent(data: &Path, repo: &Path, extra: &[&str]) -> Run {
    let out_dir = data.join("runs");
    let mut args = vec![
        "agent",
        "run",
        "--repo",
        repo.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = codectx_command(data, &args)
        .env("ANTHROPIC_API_KEY", API_KEY)
        .env("OPENAI_API_KEY", API_KEY)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let result: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("a JSON report ({e}); stderr: {stderr}"));
    let run_dir = PathBuf::from(result["audit"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    Run {
        code: out.status.code().unwrap_or(-1),
        result,
        run_dir,
        stderr,
    }
}

fn audit(run: &Run) -> Vec<Value> {
    std::fs::read_to_string(run.run_dir.join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn events<'a>(log: &'a [Value], kind: &str) -> Vec<&'a Value> {
    log.iter().filter(|e| e["event"] == kind).collect()
}

fn assert_no_secrets(script: &Script, run: &Run) {
    let bodies = script.bodies();
    assert!(!bodies.is_empty());
    for body in &bodies {
        for s in SECRETS {
            assert!(!body.contains(s), "a request body holds the secret {s}");
        }
        assert!(!body.contains(API_KEY));
    }
    for file in ["audit.jsonl", "result.json", "pr.md"] {
        if let Ok(text) = std::fs::read_to_string(run.run_dir.join(file)) {
            for s in SECRETS.iter().chain([&API_KEY]) {
                assert!(!text.contains(s), "{file} holds {s}");
            }
        }
    }
}

#[cfg(unix)]
#[test]
fn a_failing_rust_test_is_fixed_in_two_iterations_over_the_anthropic_format() {
    use std::io::Read;
    let repo = rust_repo();
    let data = tempfile::tempdir().unwrap();
    let (url, script, _rt) = model_server(vec![
        Turn {
            text: "Let me read the function.",
            calls: vec![(
                "read_span",
                json!({"path": "src/lib.rs", "start_line": 1, "end_line": 20}).to_string(),
            )],
        },
        call(
            "edit_file",
            json!({"path": "src/lib.rs", "search": "    a - b\n", "replace": "    a * b\n"}),
        ),
        call("run_tests", json!({})),
        call(
            "edit_file",
            json!({"path": "src/lib.rs", "search": "    a * b\n", "replace": "    a + b\n"}),
        ),
        call("run_tests", json!({})),
        call(
            "finish",
            json!({"summary": "`add` subtracted; it adds now."}),
        ),
    ]);
    script.throttle.store(1, Ordering::SeqCst);
    let cfg = config(data.path(), "anthropic", &url, "cargo test --quiet");
    let task = task(
        data.path(),
        json!({
            "title": "Fix add: it returns the difference",
            "task_type": "bug_fix_isolated",
            "description": "`add(2, 3)` returns -1. The release uses AKIAZ7QK3L5M2N4P6R7T.",
            "module_path": "src",
            "constraints": ["no new dependencies"],
        }),
    );
    // A real server in its own process, whose log must show the agent's gRPC calls.
    // The agent registers its repository over the API: the server must allow its root.
    let mut command = codectx_command(
        data.path(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--allow-root",
            repo.path().to_str().unwrap(),
        ],
    );
    command.stderr(std::process::Stdio::piped());
    let (mut server, server_url, _lines) = crate::support::spawn_serve(command);
    let run = agent(
        data.path(),
        repo.path(),
        &[
            "--task",
            task.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--server",
            &server_url,
        ],
    );
    server.kill().unwrap();
    let mut server_log = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut server_log)
        .unwrap();
    server.wait().unwrap();

    assert_eq!(run.code, 0, "{}\n{}", run.result, run.stderr);
    assert_eq!(run.result["status"], "passed");
    assert_eq!(run.result["iterations"], 2);
    assert_eq!(run.result["model_calls"], 6);
    assert_eq!(
        run.result["classification"]["task_type"],
        "bug_fix_isolated"
    );
    assert_eq!(run.result["files_changed"], json!(["src/lib.rs"]));
    // The 429 was retried: seven requests for six answers.
    assert_eq!(script.bodies().len(), 7);
    assert_eq!(*script.keys.lock().unwrap().last().unwrap(), API_KEY);

    // The branch holds the fix, committed; the repository's own checkout is untouched.
    let branch = run.result["branch"].as_str().unwrap();
    let commit = run.result["commit"].as_str().unwrap();
    assert_eq!(git(repo.path(), &["rev-parse", branch]), commit);
    let fixed = git(repo.path(), &["show", &format!("{branch}:src/lib.rs")]);
    assert!(fixed.contains("    a + b\n"), "{fixed}");
    assert!(
        std::fs::read_to_string(repo.path().join("src/lib.rs"))
            .unwrap()
            .contains("a - b")
    );
    let message = git(repo.path(), &["log", "-1", "--format=%B", branch]);
    assert!(
        message.starts_with("Fix add: it returns the difference"),
        "{message}"
    );

    let pr = std::fs::read_to_string(run.run_dir.join("pr.md")).unwrap();
    for part in [
        "## Summary",
        "it adds now",
        "## Files changed",
        "`src/lib.rs` (+1 -1)",
        "## Tests",
        "cargo test --quiet",
        "## Iterations",
        "2 of 7",
        "## Risks",
    ] {
        assert!(
            pr.contains(part),
            "the PR description lacks {part:?}:\n{pr}"
        );
    }

    // The first request carries the conventions, the constraints, the task and a context
    // pack from the service; later ones carry the tool results the loop produced.
    let bodies = script.bodies();
    let first: Value = serde_json::from_str(&bodies[1]).unwrap();
    let system = first["system"].as_str().unwrap();
    assert!(
        system.contains("Keep functions pure") && system.contains("no new dependencies"),
        "{system}"
    );
    let opening = first["messages"][0]["content"][0]["text"].as_str().unwrap();
    assert!(
        opening.contains("## Context from codectx") && opening.contains("pub fn add"),
        "{opening}"
    );
    assert!(
        first["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "apply_patch")
    );
    assert!(bodies[4].contains("FAILED") && bodies[6].contains("PASSED"));

    // The audit log has every step, with each prompt section against its budget.
    let log = audit(&run);
    let prompts = events(&log, "prompt");
    assert_eq!(prompts.len(), 6);
    let sections = prompts[0]["sections"].as_array().unwrap();
    for name in [
        "instructions",
        "conventions",
        "constraints",
        "tools",
        "task",
        "context",
        "history",
    ] {
        assert!(sections.iter().any(|s| s["name"] == name), "{name}");
    }
    let context = sections.iter().find(|s| s["name"] == "context").unwrap();
    assert!(context["tokens"].as_u64().unwrap() <= context["budget"].as_u64().unwrap());
    assert_eq!(events(&log, "tests").len(), 2);
    assert_eq!(events(&log, "llm")[0]["attempts"], 2);
    assert_eq!(events(&log, "commit")[0]["commit"], commit);
    assert!(
        !events(&log, "context")[0]["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    assert!(
        server_log.contains("GetContext") && server_log.contains("ReadSpan"),
        "{server_log}"
    );
    // The secrets were there to leak: the task, the conventions, the code and the failing
    // test's output all reached the model with markers in their place.
    let all = bodies.join("\n");
    for marker in [
        "aws-access-key-id",
        "generic-secret",
        "slack-token",
        "github-token",
    ] {
        assert!(
            all.contains(&format!("[REDACTED:{marker}]")),
            "no {marker} marker"
        );
    }
    assert_no_secrets(&script, &run);
}

#[cfg(unix)]
#[test]
fn a_python_fix_recovers_from_a_malformed_call_and_a_refused_edit_over_the_openai_format() {
    let repo = python_repo();
    let data = tempfile::tempdir().unwrap();
    let outside = repo.path().parent().unwrap().join(format!(
        "outside-{}.py",
        repo.path().file_name().unwrap().to_string_lossy()
    ));
    let (url, script, _rt) = model_server(vec![
        Turn {
            text: "",
            calls: vec![(
                "edit_file",
                "{\"path\": \"calc.py\", \"search\": ".to_string(),
            )],
        },
        call(
            "edit_file",
            json!({"path": format!("../{}", outside.file_name().unwrap().to_string_lossy()), "search": "", "replace": "print('escaped')\n"}),
        ),
        // The fix as a unified diff, the way `git diff` prints it.
        call(
            "apply_patch",
            json!({"patch": "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -4,3 +4,3 @@\n def add(a, b):\n     \"\"\"Adds two numbers.\"\"\"\n-    return a - b\n+    return a + b\n"}),
        ),
        call("finish", json!({"summary": "add now adds"})),
    ]);
    let cfg = config(data.path(), "openai", &url, "python3 -m unittest");
    // A team policy in which an isolated bug fix needs passing tests only.
    let policy = data.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[task_types.bug_fix_isolated]\nseverity = \"low\"\nauto_merge = true\nrequired_gates = [\"tests_pass\"]\nlabels = [\"bug\"]\n",
    )
    .unwrap();
    let issue = data.path().join("issue.md");
    std::fs::write(
        &issue,
        "# add returns the wrong result\n\nLabels: bug\n\n`calc.add(2, 3)` gives -1.\n",
    )
    .unwrap();
    let run = agent(
        data.path(),
        repo.path(),
        &[
            "--issue",
            issue.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--gate",
        ],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.result, run.stderr);
    assert_eq!(run.result["iterations"], 1, "finish ran the tests once");
    assert_eq!(
        run.result["classification"]["task_type"],
        "bug_fix_isolated"
    );
    assert!(
        !outside.exists(),
        "an edit outside the worktree was refused"
    );
    let bodies = script.bodies();
    // The malformed call got an error the model could act on, in the tool message.
    let second: Value = serde_json::from_str(&bodies[1]).unwrap();
    let tool_msg = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap();
    assert!(
        tool_msg["content"]
            .as_str()
            .unwrap()
            .contains("not valid for edit_file"),
        "{tool_msg}"
    );
    assert!(
        bodies[2].contains("would leave the worktree"),
        "{}",
        bodies[2]
    );
    let branch = run.result["branch"].as_str().unwrap();
    assert!(git(repo.path(), &["show", &format!("{branch}:calc.py")]).contains("return a + b"));
    let log = audit(&run);
    let tools: Vec<bool> = events(&log, "tool")
        .iter()
        .map(|e| e["ok"].as_bool().unwrap())
        .collect();
    assert_eq!(tools, [false, false, true, true]);
    // --gate handed the branch to the gate runner, which passed it for auto-merge.
    let verdict: Value =
        serde_json::from_str(&std::fs::read_to_string(run.run_dir.join("gate.json")).unwrap())
            .unwrap();
    assert_eq!(verdict["head"], run.result["branch"]);
    assert_eq!(
        (verdict["verdict"].as_str(), verdict["auto_merge"].as_bool()),
        (Some("pass"), Some(true)),
        "{verdict}"
    );
    assert!(run.stderr.contains("gate: pass"), "{}", run.stderr);
    // Both left a line in the outcomes ledger, tied by the run's id.
    let ledger: Vec<Value> = std::fs::read_to_string(data.path().join("ledger.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = ledger.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["agent_run", "gate"]);
    for l in &ledger {
        assert_eq!(l["task_id"], run.result["run"]);
        assert_eq!(l["task_type"], "bug_fix_isolated");
    }
    assert_eq!(ledger[0]["status"], "passed");
    assert_eq!(ledger[0]["head_commit"], run.result["commit"]);
    assert_eq!(ledger[1]["status"], "pass");
    assert_eq!(ledger[1]["gates"]["tests_pass"], "pass");
    assert_no_secrets(&script, &run);
}

#[cfg(unix)]
#[test]
fn the_iteration_limit_stops_a_loop_that_never_passes() {
    let repo = python_repo();
    let data = tempfile::tempdir().unwrap();
    let (url, script, _rt) = model_server(vec![call("run_tests", json!({}))]);
    let cfg = config(data.path(), "openai", &url, "python3 -m unittest");
    let task = task(
        data.path(),
        json!({"title": "Make the logo bigger", "description": "It is small."}),
    );
    let run = agent(
        data.path(),
        repo.path(),
        &[
            "--task",
            task.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--max-iterations",
            "3",
        ],
    );
    assert_eq!(run.code, 1, "{}\n{}", run.result, run.stderr);
    assert_eq!(run.result["status"], "failed_at_limit");
    assert_eq!(run.result["iterations"], 3);
    assert_eq!(run.result["commit"], Value::Null);
    // Unclassifiable: HIGH, never auto-merged.
    assert_eq!(run.result["classification"]["task_type"], "unknown");
    assert_eq!(run.result["classification"]["severity"], "high");
    assert_eq!(run.result["classification"]["auto_merge"], false);
    assert_eq!(events(&audit(&run), "tests").len(), 3);
    assert_eq!(script.bodies().len(), 3);
    assert_no_secrets(&script, &run);
}

#[test]
fn bad_tasks_and_configs_exit_2_with_the_reason() {
    let repo = python_repo();
    let data = tempfile::tempdir().unwrap();
    let bad = task(
        data.path(),
        json!({"title": "x", "description": "y", "priority": "p1"}),
    );
    let out = codectx_command(
        data.path(),
        &[
            "agent",
            "run",
            "--repo",
            repo.path().to_str().unwrap(),
            "--task",
            bad.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown field `priority`") && err.contains("task.json"),
        "{err}"
    );

    let good = task(data.path(), json!({"title": "x", "description": "y"}));
    let cfg = data.path().join("agent.toml");
    std::fs::write(&cfg, "[llm]\nprovider = \"gemini\"\n").unwrap();
    let out = codectx_command(
        data.path(),
        &[
            "agent",
            "run",
            "--repo",
            repo.path().to_str().unwrap(),
            "--task",
            good.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && err.contains("gemini"), "{err}");
}
