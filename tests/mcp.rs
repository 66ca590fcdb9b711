//! `codectx mcp` driven over stdio with real JSON-RPC messages, as an agent would.

use crate::support::{codectx, codectx_command, fixture_repo};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

struct Session {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Session {
    fn send(&mut self, message: Value) {
        writeln!(self.stdin, "{message}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next message that answers request `id` (notifications are skipped).
    fn answer(&mut self, id: u64) -> Value {
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "the MCP server closed stdout");
            let message: Value = serde_json::from_str(&line).unwrap();
            if message["id"] == id {
                return message;
            }
        }
    }
}

#[test]
fn an_agent_lists_and_calls_the_tools_over_stdio() {
    let repo = fixture_repo();
    let data = tempfile::tempdir().unwrap();
    let root = repo.path().to_str().unwrap();
    assert!(
        codectx(data.path(), &["index", root, "--no-embed"])
            .status
            .success()
    );
    let mut child = codectx_command(data.path(), &["mcp", "--repo", root])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut s = Session {
        stdin: child.stdin.take().unwrap(),
        stdout: BufReader::new(child.stdout.take().unwrap()),
        child,
    };
    s.send(json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": { "name": "codectx-test", "version": "0" }
        }
    }));
    let init = s.answer(1);
    assert_eq!(init["result"]["serverInfo"]["name"], "codectx", "{init}");
    assert!(
        init["result"]["capabilities"]["tools"].is_object(),
        "{init}"
    );
    s.send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));

    s.send(json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" }));
    let tools = s.answer(2);
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for name in ["context", "search", "read_span", "status"] {
        assert!(names.contains(&name), "{names:?}");
    }
    let search_tool = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "search")
        .unwrap();
    assert!(
        search_tool["inputSchema"]["properties"]["query"].is_object(),
        "{search_tool}"
    );

    s.send(json!({
        "jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": { "name": "search", "arguments": { "query": "ring_write", "mode": "lexical", "k": 3 } }
    }));
    let found = s.answer(3);
    let text = found["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("sample.c:"), "{text}");
    assert!(text.contains("ring_write"), "{text}");
    assert_ne!(found["result"]["isError"], true, "{found}");

    s.send(json!({
        "jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": { "name": "read_span", "arguments": { "path": "sample.c", "start_line": 1, "end_line": 3 } }
    }));
    let span = s.answer(4);
    let text = span["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("sample.c:1-3"), "{text}");

    // A traversal attempt is a tool error that says why, not a crash.
    s.send(json!({
        "jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": { "name": "read_span", "arguments": { "path": "../../etc/passwd" } }
    }));
    let refused = s.answer(5);
    let refused_text = refused.to_string();
    assert!(refused_text.contains(".."), "{refused}");
    assert!(!refused_text.contains("root:"), "{refused}");

    s.send(json!({
        "jsonrpc": "2.0", "id": 6, "method": "tools/call",
        "params": { "name": "status", "arguments": {} }
    }));
    let status = s.answer(6);
    let text = status["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("refs/heads/main"), "{text}");

    s.send(json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": { "name": "context", "arguments": { "task": "ring_write drops the oldest entry", "budget": 500 } }
    }));
    let pack = s.answer(7);
    let text = pack["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("<retrieved-context>"), "{text}");
    assert!(text.contains("### sample.c:"), "{text}");
    s.send(json!({
        "jsonrpc": "2.0", "id": 8, "method": "tools/call",
        "params": { "name": "context", "arguments": { "task": "x", "tokenizer": "/etc/passwd" } }
    }));
    let refused = s.answer(8).to_string();
    assert!(refused.contains("tokenizer"), "{refused}");
    assert!(!refused.contains("root:"), "{refused}");

    drop(s.stdin);
    assert!(s.child.wait().unwrap().success());
}
