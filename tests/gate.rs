//! The gate runner end to end: real Python and Rust fixture repositories with real tool
//! runs (unittest, cargo test, coverage.py, semgrep with local rules, the OSV audit, a
//! benchmark), the real binary, and the SARIF checked against the 2.1.0 schema.

use crate::support::{codectx_command, git, write};
use serde_json::Value;
use std::path::{Path, PathBuf};

const RULES: &str = r#"rules:
  - id: no-eval
    pattern: eval(...)
    message: eval of dynamic input
    languages: [python]
    severity: ERROR
  - id: no-unwrap
    pattern: $X.unwrap()
    message: unwrap() panics; return an error instead
    languages: [rust]
    severity: WARNING
"#;

const ADVISORIES: &[(&str, &str)] = &[
    (
        "advisories/GHSA-fixture-urllib3.json",
        r#"{"id": "GHSA-fixture-urllib3", "summary": "Cookie header leaks across origins",
            "affected": [{"package": {"ecosystem": "PyPI", "name": "urllib3"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.26.18"}]}]}]}"#,
    ),
    (
        "advisories/RUSTSEC-fixture-smallvec.json",
        r#"{"id": "RUSTSEC-fixture-smallvec", "summary": "Buffer overflow in SmallVec::insert_many",
            "affected": [{"package": {"ecosystem": "crates.io", "name": "smallvec"},
            "ranges": [{"type": "SEMVER", "events": [{"introduced": "0.6.3"}, {"fixed": "1.6.1"}]}]}]}"#,
    ),
];

/// A policy with one task type per gate, so each regression test runs just its gate.
const ONE_GATE_POLICY: &str = r#"
[task_types.t_tests]
severity = "low"
auto_merge = true
required_gates = ["tests_pass"]
[task_types.t_coverage]
severity = "low"
auto_merge = true
required_gates = ["coverage_maintained"]
[task_types.t_sast]
severity = "low"
auto_merge = true
required_gates = ["sast_clean"]
[task_types.t_deps]
severity = "low"
auto_merge = true
required_gates = ["deps_safe"]
[task_types.t_perf]
severity = "low"
auto_merge = true
required_gates = ["performance_stable"]
[task_types.rust_fix]
severity = "low"
auto_merge = true
required_gates = ["sast_clean", "deps_safe", "tests_pass"]
"#;

const CALC: &str = "\"\"\"A tiny calculator.\"\"\"\n\n\ndef add(a, b):\n    \"\"\"Adds two numbers.\"\"\"\n    return a + b\n\n\ndef sub(a, b):\n    \"\"\"Subtracts b from a.\"\"\"\n    return a - b\n";

fn commit(root: &Path, files: &[(&str, &str)], message: &str) -> String {
    for (path, text) in files {
        write(root, path, text);
    }
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", message]);
    git(root, &["rev-parse", "HEAD"])
}

fn python_repo() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    git(root, &["init", "-q"]);
    let mut files: Vec<(&str, &str)> = vec![
        (".gitignore", ".coverage\ncoverage.json\n__pycache__/\n"),
        ("calc.py", CALC),
        (
            "test_calc.py",
            "import unittest\n\nimport calc\n\n\nclass CalcTest(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(calc.add(2, 3), 5)\n\n    def test_sub(self):\n        self.assertEqual(calc.sub(5, 3), 2)\n",
        ),
        (
            "bench.py",
            "import calc\n\ntotal = 0\nfor i in range(300000):\n    total = calc.add(total, i)\nprint(total)\n",
        ),
        ("requirements.txt", "idna==3.7\n"),
        ("semgrep/rules.yml", RULES),
        (
            ".codectx/gates.toml",
            "[tests]\ncommand = \"python3 -m unittest\"\ntimeout_s = 120\n\n[coverage]\ncommand = \"coverage run -m unittest && coverage json -q -o coverage.json\"\nreport = \"coverage.json\"\nmax_drop = 1.0\n\n[sast]\nrules = [\"semgrep/rules.yml\"]\n\n[deps]\nadvisories = \"advisories\"\n\n[performance]\ncommand = \"python3 bench.py\"\nruns = 3\n",
        ),
    ];
    files.extend_from_slice(ADVISORIES);
    let base = commit(root, &files, "calc");
    (dir, base)
}

fn rust_repo() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    git(root, &["init", "-q"]);
    let mut files: Vec<(&str, &str)> = vec![
        (".gitignore", "target/\n"),
        (
            "Cargo.toml",
            "[package]\nname = \"calc\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nsmallvec = { path = \"vendor/smallvec\" }\n",
        ),
        (
            "vendor/smallvec/Cargo.toml",
            "[package]\nname = \"smallvec\"\nversion = \"1.6.1\"\nedition = \"2021\"\n",
        ),
        (
            "vendor/smallvec/src/lib.rs",
            "pub fn len() -> usize { 0 }\n",
        ),
        (
            "src/lib.rs",
            "/// Adds two numbers.\npub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() {\n        assert_eq!(super::add(2, 3), 5);\n    }\n}\n",
        ),
        ("semgrep/rules.yml", RULES),
        (
            ".codectx/gates.toml",
            "[tests]\ncommand = \"cargo test --offline\"\n\n[sast]\nrules = [\"semgrep/rules.yml\"]\n\n[deps]\nadvisories = \"advisories\"\n",
        ),
    ];
    files.extend_from_slice(ADVISORIES);
    for (p, t) in &files {
        write(root, p, t);
    }
    // The lockfile is part of the commit, as in a real application.
    let out = std::process::Command::new("cargo")
        .args(["generate-lockfile", "--offline"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base = commit(root, &[], "calc");
    (dir, base)
}

struct Gate {
    code: i32,
    verdict: Value,
    stderr: String,
}

fn gate(data: &Path, repo: &Path, base: &str, head: &str, task_type: &str, extra: &[&str]) -> Gate {
    let mut args = vec![
        "gate",
        "run",
        "--repo",
        repo.to_str().unwrap(),
        "--base",
        base,
        "--head",
        head,
        "--task-type",
        task_type,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = codectx_command(data, &args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let verdict = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("a JSON verdict ({e}); stderr: {stderr}"));
    Gate {
        code: out.status.code().unwrap_or(-1),
        verdict,
        stderr,
    }
}

fn status<'a>(v: &'a Value, gate: &str) -> &'a str {
    v["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == gate)
        .unwrap_or_else(|| panic!("no {gate} in {v}"))["status"]
        .as_str()
        .unwrap()
}

fn policy_file(dir: &Path) -> PathBuf {
    let p = dir.join("policy.toml");
    std::fs::write(&p, ONE_GATE_POLICY).unwrap();
    p
}

/// The SARIF 2.1.0 schema as published, from the serde-sarif crate's sources.
fn sarif_schema() -> PathBuf {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
        ])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .output()
        .unwrap();
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "serde-sarif")
        .expect("serde-sarif is a dev-dependency")["manifest_path"]
        .as_str()
        .unwrap()
        .to_string();
    Path::new(&manifest)
        .parent()
        .unwrap()
        .join("src/schema.json")
}

/// Validates with the jsonschema package that comes with semgrep in the gate tools.
fn assert_valid_sarif(path: &Path) {
    let python = codectx::config::codectx_home().join("gate-tools/bin/python");
    let script = "import json, sys, jsonschema\nschema = json.load(open(sys.argv[2]))\ncls = jsonschema.validators.validator_for(schema)\nerrors = [e.message for e in cls(schema).iter_errors(json.load(open(sys.argv[1])))]\nprint('\\n'.join(errors[:5]))\nsys.exit(1 if errors else 0)\n";
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .arg(path)
        .arg(sarif_schema())
        .output()
        .expect("the gate tools are installed (scripts/setup)");
    assert!(
        out.status.success(),
        "SARIF invalid: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_passing_change_auto_merges_as_a_bug_fix_but_not_as_security_critical() {
    let (repo, base) = python_repo();
    let data = tempfile::tempdir().unwrap();
    let head = commit(
        repo.path(),
        &[(
            "calc.py",
            &CALC.replace("Adds two numbers.", "Adds two numbers (ints or floats)."),
        )],
        "docs: add takes floats",
    );
    let fix = gate(
        data.path(),
        repo.path(),
        &base,
        &head,
        "bug_fix_isolated",
        &[],
    );
    assert_eq!(fix.code, 0, "{}\n{}", fix.verdict, fix.stderr);
    assert_eq!(fix.verdict["verdict"], "pass");
    assert_eq!(fix.verdict["auto_merge"], true);
    for g in [
        "tests_pass",
        "coverage_maintained",
        "sast_clean",
        "deps_safe",
    ] {
        assert_eq!(status(&fix.verdict, g), "pass", "{g}: {}", fix.verdict);
    }
    let tests = fix.verdict["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == "tests_pass")
        .unwrap();
    assert_eq!(tests["metrics"]["passed"], 2);
    assert_eq!(fix.verdict["classification"]["severity"], "low");

    let sec = gate(
        data.path(),
        repo.path(),
        &base,
        &head,
        "security_critical",
        &[],
    );
    assert_eq!(sec.code, 1, "{}", sec.verdict);
    assert_eq!(sec.verdict["auto_merge"], false);
    assert_eq!(
        sec.verdict["failed_gates"],
        serde_json::json!(["manual_review_approved", "security_team_approved"])
    );
    let approved = gate(
        data.path(),
        repo.path(),
        &base,
        &head,
        "security_critical",
        &[
            "--approve",
            "manual_review_approved=alice",
            "--approve",
            "security_team_approved=bob",
        ],
    );
    assert_eq!(approved.code, 0, "{}", approved.verdict);
    assert_eq!(approved.verdict["verdict"], "pass");
    assert_eq!(
        approved.verdict["auto_merge"], false,
        "security_critical never auto-merges"
    );
    assert_eq!(approved.verdict["classification"]["severity"], "high");
    // The worktrees are gone afterwards.
    assert_eq!(git(repo.path(), &["worktree", "list"]).lines().count(), 1);
}

#[test]
fn each_gate_fails_on_its_own_regression() {
    let (repo, base) = python_repo();
    let data = tempfile::tempdir().unwrap();
    let policy = policy_file(data.path());
    let p = policy.to_str().unwrap();
    let head_of = |files: &[(&str, &str)], msg: &str| {
        git(repo.path(), &["checkout", "-q", &base]);
        commit(repo.path(), files, msg)
    };

    let broken = head_of(
        &[("calc.py", &CALC.replace("return a + b", "return a + b + 1"))],
        "break add",
    );
    let r = gate(
        data.path(),
        repo.path(),
        &base,
        &broken,
        "t_tests",
        &["--policy", p],
    );
    assert_eq!(
        (r.code, status(&r.verdict, "tests_pass")),
        (1, "fail"),
        "{}",
        r.verdict
    );
    assert!(
        r.verdict["gates"][0]["details"]
            .as_str()
            .unwrap()
            .contains("1 failed"),
        "{}",
        r.verdict
    );

    let untested = format!(
        "{CALC}\n\n{}",
        (0..12)
            .map(|i| format!(
                "def f{i}(x):\n    if x > {i}:\n        return x * {i}\n    return -x\n\n\n"
            ))
            .collect::<String>()
    );
    let uncovered = head_of(&[("calc.py", &untested)], "add untested helpers");
    let r = gate(
        data.path(),
        repo.path(),
        &base,
        &uncovered,
        "t_coverage",
        &["--policy", p],
    );
    assert_eq!(
        (r.code, status(&r.verdict, "coverage_maintained")),
        (1, "fail"),
        "{}",
        r.verdict
    );
    let m = &r.verdict["gates"][0]["metrics"];
    assert!(
        m["head_percent"].as_f64().unwrap() + 1.0 < m["base_percent"].as_f64().unwrap(),
        "{m}"
    );

    let evil = CALC.replace("return a - b", "return eval(f\"{a} - {b}\")");
    let unsafe_head = head_of(&[("calc.py", &evil)], "sub via eval");
    let out = data.path().join("sast");
    let r = gate(
        data.path(),
        repo.path(),
        &base,
        &unsafe_head,
        "t_sast",
        &["--policy", p, "--out", out.to_str().unwrap()],
    );
    assert_eq!(
        (r.code, status(&r.verdict, "sast_clean")),
        (1, "fail"),
        "{}",
        r.verdict
    );
    let finding = &r.verdict["gates"][0]["findings"][0];
    assert_eq!(
        finding["rule_id"], "no-eval",
        "rule ids do not carry the temporary path"
    );
    assert_eq!(finding["path"], "calc.py");
    assert_eq!(finding["start_line"], 11);
    assert_valid_sarif(&out.with_extension("sarif"));
    let sarif: Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("sarif")).unwrap())
            .unwrap();
    let result = &sarif["runs"][0]["results"][0];
    assert_eq!(
        result["locations"][0]["physicalLocation"]["region"]["startLine"],
        11
    );
    // The fingerprint survives the finding moving down the file.
    let shifted = head_of(
        &[("calc.py", &format!("# moved\n\n{evil}"))],
        "sub via eval, moved",
    );
    let r2 = gate(
        data.path(),
        repo.path(),
        &base,
        &shifted,
        "t_sast",
        &["--policy", p],
    );
    let moved = &r2.verdict["gates"][0]["findings"][0];
    assert_eq!(moved["start_line"], 13);
    assert_eq!(moved["fingerprint"], finding["fingerprint"]);
    assert!(
        std::fs::read_to_string(out.with_extension("md"))
            .unwrap()
            .contains("## codectx gate: FAIL")
    );

    let vulnerable = head_of(
        &[("requirements.txt", "idna==3.7\nurllib3==1.26.5\n")],
        "pin urllib3",
    );
    let r = gate(
        data.path(),
        repo.path(),
        &base,
        &vulnerable,
        "t_deps",
        &["--policy", p],
    );
    assert_eq!(
        (r.code, status(&r.verdict, "deps_safe")),
        (1, "fail"),
        "{}",
        r.verdict
    );
    let f = &r.verdict["gates"][0]["findings"][0];
    assert_eq!(
        (
            f["rule_id"].as_str(),
            f["path"].as_str(),
            f["start_line"].as_u64()
        ),
        (
            Some("GHSA-fixture-urllib3"),
            Some("requirements.txt"),
            Some(2)
        )
    );

    // Slower by far more than this machine's noise: a CPU-bound slowdown alone (the loop)
    // measured only +6% once when other tests loaded both cores during the runs, so the
    // import also waits, which no CPU contention shrinks.
    let slow = head_of(
        &[(
            "calc.py",
            &format!(
                "import time\n\ntime.sleep(0.4)\n{}",
                CALC.replace(
                    "    return a + b",
                    "    for _ in range(30):\n        pass\n    return a + b",
                )
            ),
        )],
        "slow add",
    );
    let r = gate(
        data.path(),
        repo.path(),
        &base,
        &slow,
        "t_perf",
        &["--policy", p],
    );
    assert_eq!(
        (r.code, status(&r.verdict, "performance_stable")),
        (1, "fail"),
        "{}",
        r.verdict
    );
    assert!(
        r.verdict["gates"][0]["metrics"]["latency_change"]
            .as_f64()
            .unwrap()
            > 0.10
    );
}

#[test]
fn missing_tools_hung_commands_and_unknown_types_are_never_a_pass() {
    let (repo, base) = python_repo();
    let data = tempfile::tempdir().unwrap();
    let head = commit(repo.path(), &[("README.md", "calc\n")], "readme");
    let policy = policy_file(data.path());
    let p = policy.to_str().unwrap();

    let cfg = data.path().join("gates.toml");
    std::fs::write(
        &cfg,
        "[deps]\ntool = \"cargo-audit\"\nadvisories = \"advisories\"\n",
    )
    .unwrap();
    let r = gate(
        data.path(),
        repo.path(),
        &base,
        &head,
        "t_deps",
        &["--policy", p, "--config", cfg.to_str().unwrap()],
    );
    assert_eq!(r.code, 2, "{}", r.verdict);
    assert_eq!(
        (
            r.verdict["verdict"].as_str(),
            status(&r.verdict, "deps_safe")
        ),
        (Some("error"), "error")
    );
    assert!(
        r.verdict["gates"][0]["details"]
            .as_str()
            .unwrap()
            .contains("cargo-audit is not installed")
    );

    std::fs::write(&cfg, "[tests]\ncommand = \"sleep 1000\"\ntimeout_s = 1\n").unwrap();
    let started = std::time::Instant::now();
    let r = gate(
        data.path(),
        repo.path(),
        &base,
        &head,
        "t_tests",
        &["--policy", p, "--config", cfg.to_str().unwrap()],
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(
        (r.code, status(&r.verdict, "tests_pass")),
        (1, "fail"),
        "{}",
        r.verdict
    );
    assert!(
        r.verdict["gates"][0]["details"]
            .as_str()
            .unwrap()
            .contains("killed at its timeout")
    );

    // A rule semgrep cannot parse: semgrep reports it in `errors`, which is an error.
    write(
        repo.path(),
        "broken-rules.yml",
        "rules:\n  - id: broken\n    pattern: eval(\n    message: x\n    languages: [python]\n    severity: ERROR\n",
    );
    std::fs::write(
        &cfg,
        format!(
            "[sast]\nrules = [\"{}\"]\n",
            repo.path().join("broken-rules.yml").display()
        ),
    )
    .unwrap();
    let r = gate(
        data.path(),
        repo.path(),
        &base,
        &head,
        "t_sast",
        &["--policy", p, "--config", cfg.to_str().unwrap()],
    );
    assert_eq!(
        (r.code, status(&r.verdict, "sast_clean")),
        (2, "error"),
        "{}",
        r.verdict
    );
    let details = r.verdict["gates"][0]["details"].as_str().unwrap();
    assert!(
        details.contains("semgrep reported") && !details.contains("does not exist"),
        "{details}"
    );

    std::fs::write(&cfg, "[tests]\ncommand = \"no-such-test-runner --all\"\n").unwrap();
    let r = gate(
        data.path(),
        repo.path(),
        &base,
        &head,
        "t_tests",
        &["--policy", p, "--config", cfg.to_str().unwrap()],
    );
    assert_eq!(
        (r.code, status(&r.verdict, "tests_pass")),
        (2, "error"),
        "{}",
        r.verdict
    );

    let r = gate(
        data.path(),
        repo.path(),
        &base,
        &head,
        "vibes_refactor",
        &["--approve", "manual_review_approved=alice"],
    );
    assert_eq!(r.verdict["classification"]["task_type"], "unknown");
    assert_eq!(r.verdict["classification"]["severity"], "high");
    assert_eq!(r.verdict["auto_merge"], false);
    assert_eq!(
        r.code, 0,
        "every built-in gate passes, yet nothing merges: {}",
        r.verdict
    );
    assert!(
        r.verdict["required_gates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "manual_review_approved")
    );

    let bad = data.path().join("bad.toml");
    std::fs::write(&bad, "[task_types.x]\nseverity = \"low\"\nauto_merge = true\nrequired_gates = [\"tests_pass\", \"vibes\"]\n").unwrap();
    let out = codectx_command(
        data.path(),
        &["gate", "policy", "--policy", bad.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 4") && err.contains("vibes"), "{err}");
}

#[test]
fn a_rust_change_is_judged_by_cargo_test_semgrep_and_the_lockfile() {
    let (repo, base) = rust_repo();
    let data = tempfile::tempdir().unwrap();
    let policy = policy_file(data.path());
    let p = policy.to_str().unwrap();
    let lib = std::fs::read_to_string(repo.path().join("src/lib.rs")).unwrap();

    let good = commit(
        repo.path(),
        &[(
            "src/lib.rs",
            &lib.replace(
                "Adds two numbers.",
                "Adds two numbers; wraps on overflow in release.",
            ),
        )],
        "doc",
    );
    let r = gate(
        data.path(),
        repo.path(),
        &base,
        &good,
        "rust_fix",
        &["--policy", p],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.verdict, r.stderr);
    assert_eq!(r.verdict["auto_merge"], true);

    // A failing test, an unwrap and a downgrade to a vulnerable version, at once.
    let bad_lib = lib.replace("    a + b\n", "    a.checked_sub(b).unwrap()\n");
    let lock = std::fs::read_to_string(repo.path().join("Cargo.lock")).unwrap();
    let bad = commit(
        repo.path(),
        &[
            ("src/lib.rs", &bad_lib),
            (
                "vendor/smallvec/Cargo.toml",
                "[package]\nname = \"smallvec\"\nversion = \"1.6.0\"\nedition = \"2021\"\n",
            ),
            (
                "Cargo.lock",
                &lock.replace("version = \"1.6.1\"", "version = \"1.6.0\""),
            ),
        ],
        "subtract",
    );
    let r = gate(
        data.path(),
        repo.path(),
        &base,
        &bad,
        "rust_fix",
        &["--policy", p],
    );
    assert_eq!(r.code, 1, "{}", r.verdict);
    for g in ["tests_pass", "sast_clean", "deps_safe"] {
        assert_eq!(status(&r.verdict, g), "fail", "{g}: {}", r.verdict);
    }
    let order: Vec<&str> = r.verdict["gates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["gate"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        ["sast_clean", "deps_safe", "tests_pass"],
        "static gates run first"
    );
    let deps = r.verdict["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == "deps_safe")
        .unwrap();
    assert_eq!(deps["findings"][0]["rule_id"], "RUSTSEC-fixture-smallvec");
}

#[test]
fn llm_review_sends_the_diff_and_context_and_reads_the_verdict() {
    use crate::agent::{call, model_server};
    let (repo, base) = python_repo();
    let data = tempfile::tempdir().unwrap();
    let secret = "ghp_Zq8Lm2Vb4Nc7Rt1Yp5WdX3Hs6Jf0Ga2Qe8Uo";
    let evil = CALC.replace("return a - b", "return eval(f\"{a} - {b}\")");
    let head = commit(
        repo.path(),
        &[(
            "calc.py",
            &format!("{evil}\n\nRELEASE_TOKEN = \"{secret}\"\n"),
        )],
        "sub via eval",
    );
    let (url, script, _rt) = model_server(vec![
        call(
            "submit_review",
            serde_json::json!({"verdict": "request_changes", "summary": "eval on arguments",
                "findings": [{"path": "calc.py", "line": 11, "severity": "error", "message": "eval of caller input"}]}),
        ),
        call(
            "submit_review",
            serde_json::json!({"verdict": "approve", "summary": "fine"}),
        ),
    ]);
    let policy = data.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[task_types.t_review]\nseverity = \"low\"\nauto_merge = true\nrequired_gates = [\"llm_review\"]\n",
    )
    .unwrap();
    let cfg = data.path().join("gates.toml");
    std::fs::write(
        &cfg,
        format!("[llm_review]\nbudget = 3000\n\n[llm_review.llm]\nprovider = \"anthropic\"\nmodel = \"scripted\"\nbase_url = \"{url}\"\n"),
    )
    .unwrap();
    let args = [
        "--policy",
        policy.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ];
    let out = data.path().join("review");
    let mut with_out = args.to_vec();
    with_out.extend(["--out", out.to_str().unwrap()]);
    let r = gate(
        data.path(),
        repo.path(),
        &base,
        &head,
        "t_review",
        &with_out,
    );
    assert_eq!(
        (r.code, status(&r.verdict, "llm_review")),
        (1, "fail"),
        "{}\n{}",
        r.verdict,
        r.stderr
    );
    let g = &r.verdict["gates"][0];
    assert_eq!(g["findings"][0]["path"], "calc.py");
    assert!(
        g["metrics"]["prompt_tokens"].as_u64().unwrap() <= 3000,
        "{g}"
    );
    assert_valid_sarif(&out.with_extension("sarif"));

    let body = &script.bodies()[0];
    assert!(
        body.contains("eval(") && body.contains("```diff"),
        "the diff is in the prompt"
    );
    assert!(
        body.contains("Context from codectx") && body.contains("def add"),
        "so is the context"
    );
    assert!(!body.contains(secret), "the diff was redacted");
    assert!(body.contains("submit_review"));

    let r = gate(data.path(), repo.path(), &base, &head, "t_review", &args);
    assert_eq!(
        (r.code, r.verdict["auto_merge"].as_bool()),
        (0, Some(true)),
        "{}",
        r.verdict
    );
}
