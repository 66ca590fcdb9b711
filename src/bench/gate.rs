//! `codectx bench gate`: the gate runner's own cost against running the same commands by
//! hand (git worktrees, semgrep, the tests, coverage on base and head) in the same run, on
//! a generated Python repository with one change.

use crate::error::{Error, Result};
use crate::gate::{self, GateRequest};
use crate::policy::Policy;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const GATES_TOML: &str = "[tests]\ncommand = \"python3 -m unittest\"\n\n[coverage]\ncommand = \"coverage run -m unittest && coverage json -q -o coverage.json\"\nreport = \"coverage.json\"\nmax_drop = 1.0\n\n[sast]\nrules = [\"semgrep/rules.yml\"]\n\n[deps]\nadvisories = \"advisories\"\n";

const RULES: &str = "rules:\n  - id: no-eval\n    pattern: eval(...)\n    message: eval of dynamic input\n    languages: [python]\n    severity: ERROR\n";

fn sh(dir: &Path, command: &str) -> Result<()> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("PATH", crate::sandbox::tool_path())
        .output()
        .map_err(|e| Error::Unavailable(format!("{command}: {e}")))?;
    if !out.status.success() {
        return Err(Error::Internal(format!(
            "`{command}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

fn write(root: &Path, rel: &str, text: &str) -> Result<()> {
    let path = root.join(rel);
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
}

/// A repository of `modules` Python modules with tests; returns (base, head).
fn fixture(root: &Path, modules: usize) -> Result<(String, String)> {
    let git = |args: &str| {
        sh(
            root,
            &format!(
                "git -c user.name=bench -c user.email=bench@codectx.invalid -c init.defaultBranch=main -c commit.gpgsign=false {args}"
            ),
        )
    };
    git("init -q")?;
    write(
        root,
        ".gitignore",
        ".coverage\ncoverage.json\n__pycache__/\n",
    )?;
    write(root, ".codectx/gates.toml", GATES_TOML)?;
    write(root, "semgrep/rules.yml", RULES)?;
    write(
        root,
        "advisories/none.json",
        r#"{"id": "GHSA-none", "affected": []}"#,
    )?;
    write(root, "requirements.txt", "idna==3.7\n")?;
    for m in 0..modules {
        write(
            root,
            &format!("mod{m}.py"),
            &format!("def f(x):\n    if x > {m}:\n        return x * 2\n    return x - {m}\n"),
        )?;
        write(
            root,
            &format!("test_mod{m}.py"),
            &format!(
                "import unittest\n\nimport mod{m}\n\n\nclass T(unittest.TestCase):\n    def test_f(self):\n        self.assertEqual(mod{m}.f({m} + 1), 2 * ({m} + 1))\n        self.assertEqual(mod{m}.f(0), -{m})\n"
            ),
        )?;
    }
    git("add -A")?;
    git("commit -q -m base")?;
    let rev = |r: &str| -> Result<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(root)
            .args(["rev-parse", r])
            .output()
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let base = rev("HEAD")?;
    write(
        root,
        "mod0.py",
        "def f(x):\n    \"\"\"Doubles big values.\"\"\"\n    if x > 0:\n        return x * 2\n    return x - 0\n",
    )?;
    git("commit -q -am change")?;
    Ok((base, rev("HEAD")?))
}

/// The same work as the gate run, by hand: worktrees, semgrep, tests, coverage twice.
fn by_hand(repo: &Path, scratch: &Path, base: &str, head: &str) -> Result<()> {
    let (b, h) = (scratch.join("base"), scratch.join("head"));
    sh(
        repo,
        &format!("git worktree add -q --detach '{}' {base}", b.display()),
    )?;
    sh(
        repo,
        &format!("git worktree add -q --detach '{}' {head}", h.display()),
    )?;
    let semgrep = crate::sandbox::find_tool("semgrep")
        .ok_or_else(|| Error::NotFound("semgrep is not installed (scripts/setup)".into()))?;
    sh(
        &h,
        &format!(
            "HOME='{s}' '{}' scan --json --metrics=off --disable-version-check --quiet --config '{}' --output '{s}/semgrep.json' .",
            semgrep.display(),
            b.join("semgrep/rules.yml").display(),
            s = scratch.display()
        ),
    )?;
    sh(&h, "python3 -m unittest -q 2>/dev/null")?;
    for dir in [&b, &h] {
        sh(
            dir,
            "coverage run -m unittest 2>/dev/null && coverage json -q -o coverage.json",
        )?;
    }
    for dir in [&b, &h] {
        sh(
            repo,
            &format!("git worktree remove --force '{}'", dir.display()),
        )?;
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(modules: usize, rounds: usize, json_out: bool) -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).map_err(|e| Error::io(&repo, e))?;
    let repo = repo.canonicalize().map_err(|e| Error::io(&repo, e))?;
    let (base, head) = fixture(&repo, modules)?;
    let request = GateRequest {
        repo: repo.clone(),
        base: base.clone(),
        head: head.clone(),
        task_type: "bug_fix_isolated".into(),
        policy: Policy::default_policy(),
        config: None,
        approvals: Default::default(),
        server: None,
        engine: None,
    };
    let (mut runner, mut hand) = (Vec::new(), Vec::new());
    let mut isolation = String::new();
    // Alternate the two so drift on a noisy machine hits both alike.
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        let v = gate::run(&request)?;
        runner.push(t.elapsed().as_secs_f64());
        if v.verdict != gate::Status::Pass {
            return Err(Error::Internal(format!(
                "the benchmark's change should pass: {}",
                gate::report::to_json(&v)
            )));
        }
        isolation = v.isolation.clone();
        let scratch = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let t = Instant::now();
        by_hand(&repo, scratch.path(), &base, &head)?;
        hand.push(t.elapsed().as_secs_f64());
    }
    let (r, h) = (median(&mut runner), median(&mut hand));
    let result = json!({
        "modules": modules,
        "rounds": rounds,
        "gates": ["sast_clean", "deps_safe", "tests_pass", "coverage_maintained"],
        "isolation": isolation,
        "runner_s": r,
        "by_hand_s": h,
        "overhead_s": r - h,
        "runner_over_by_hand": r / h.max(1e-9),
    });
    if json_out {
        crate::cli::out::json(&serde_json::to_string_pretty(&result).unwrap_or_default());
    } else {
        crate::outln!(
            "gate run (bug_fix_isolated: semgrep, OSV audit, tests, coverage on base and head; {modules} modules; isolation {isolation}): median of {rounds}: runner {r:.2} s, the same commands by hand {h:.2} s, overhead {:+.2} s ({:.2}x)",
            r - h,
            r / h.max(1e-9)
        );
    }
    Ok(())
}
