//! The gates themselves: each runs its tool in the sandbox on the head (and, to compare,
//! the base) worktree and reads the tool's own output format.

use super::{Finding, GateConfig, GateResult, Status};
use crate::policy::Gate;
use crate::sandbox::{self, Outcome, Spec};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What every gate may use.
pub struct Env {
    pub base: PathBuf,
    pub head: PathBuf,
    /// A directory tools may write to (outside both worktrees).
    pub scratch: PathBuf,
    pub config: GateConfig,
    pub approvals: BTreeMap<String, String>,
    pub repo: PathBuf,
    pub base_commit: String,
    pub head_commit: String,
    pub server: Option<String>,
    pub engine: Option<crate::config::Config>,
}

pub(crate) fn result(gate: Gate, status: Status, details: impl Into<String>) -> GateResult {
    GateResult {
        gate,
        status,
        details: details.into(),
        duration_ms: 0,
        metrics: Value::Null,
        findings: Vec::new(),
    }
}

/// Runs one gate; every failure to run it is an `Error` result, never a pass.
pub fn run_gate(gate: Gate, env: &Env) -> GateResult {
    match gate {
        Gate::TestsPass => tests_pass(env),
        Gate::CoverageMaintained => coverage(env),
        Gate::SastClean => sast(env),
        Gate::DepsSafe => deps(env),
        Gate::PerformanceStable => performance(env),
        Gate::ManualReviewApproved | Gate::SecurityTeamApproved => review(gate, env),
        Gate::LlmReview => match super::review::run(env) {
            Ok(r) => r,
            Err(e) => result(gate, Status::Error, format!("llm_review: {e}")),
        },
    }
}

/// A sandboxed run of `command` in `dir` under the configured limits.
fn exec(
    env: &Env,
    dir: &Path,
    command: &str,
    timeout_s: u64,
    extra: &[(&str, String)],
) -> crate::Result<Outcome> {
    exec_reading(env, dir, command, timeout_s, extra, &[])
}

/// [`exec`], with more paths (files or directories) the command must be able to read when
/// isolated (bubblewrap gives it a private /tmp).
fn exec_reading(
    env: &Env,
    dir: &Path,
    command: &str,
    timeout_s: u64,
    extra: &[(&str, String)],
    readable: &[PathBuf],
) -> crate::Result<Outcome> {
    let mut spec = Spec::new(command, dir, Duration::from_secs(timeout_s.max(1)));
    let l = &env.config.limits;
    spec.limits.cpu_seconds = l.cpu_s;
    spec.limits.memory_bytes = l.memory_mb.map(|m| m << 20);
    spec.limits.processes = l.processes;
    spec.limits.file_size_bytes = l.file_size_mb.map(|m| m << 20);
    spec.isolate = env.config.isolate.unwrap_or(true);
    spec.writable = vec![env.scratch.clone()];
    spec.readable = vec![env.base.clone(), env.head.clone()];
    spec.readable.extend(readable.iter().cloned());
    spec.env.push(("PATH".into(), sandbox::tool_path()));
    for (k, v) in extra {
        spec.env.push((k.to_string(), v.clone()));
    }
    sandbox::run(&spec)
}

/// `sh` answers 127 for a command it cannot find.
fn missing_command(o: &Outcome) -> bool {
    o.code == Some(127)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Test counts read from cargo, pytest or unittest output.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TestSummary {
    pub framework: &'static str,
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

pub fn parse_test_summary(output: &str) -> Option<TestSummary> {
    let cargo = regex::Regex::new(
        r"test result: (?:ok|FAILED)\. (\d+) passed; (\d+) failed; (\d+) ignored",
    )
    .ok()?;
    let mut s = TestSummary {
        framework: "cargo",
        ..Default::default()
    };
    let mut seen = false;
    for c in cargo.captures_iter(output) {
        seen = true;
        s.passed += c[1].parse::<u64>().unwrap_or(0);
        s.failed += c[2].parse::<u64>().unwrap_or(0);
        s.ignored += c[3].parse::<u64>().unwrap_or(0);
    }
    if seen {
        return Some(s);
    }
    let ran = regex::Regex::new(r"(?m)^Ran (\d+) tests? in").ok()?;
    if let Some(c) = ran.captures(output) {
        let total: u64 = c[1].parse().unwrap_or(0);
        let count = |what: &str| {
            regex::Regex::new(&format!(r"(?m)^FAILED \(.*\b{what}=(\d+)"))
                .ok()
                .and_then(|r| r.captures(output).map(|c| c[1].parse::<u64>().unwrap_or(0)))
                .unwrap_or(0)
        };
        let failed = count("failures") + count("errors");
        let skipped = count("skipped");
        return Some(TestSummary {
            framework: "unittest",
            passed: total.saturating_sub(failed + skipped),
            failed,
            ignored: skipped,
        });
    }
    let pytest = regex::Regex::new(r"(?m)^=*\s*(?:\d+ \w+(?:, )?)+ in [\d.]+s").ok()?;
    let line = pytest.find_iter(output).last()?.as_str();
    let n = |what: &str| {
        regex::Regex::new(&format!(r"(\d+) {what}"))
            .ok()
            .and_then(|r| r.captures(line).map(|c| c[1].parse::<u64>().unwrap_or(0)))
            .unwrap_or(0)
    };
    Some(TestSummary {
        framework: "pytest",
        passed: n("passed"),
        failed: n("failed") + n("error"),
        ignored: n("skipped"),
    })
}

fn tests_pass(env: &Env) -> GateResult {
    let gate = Gate::TestsPass;
    let cfg = &env.config.tests;
    let command = if cfg.command.trim().is_empty() {
        match sandbox::guess_test_command(&env.head) {
            Ok(c) => c,
            Err(e) => return result(gate, Status::Error, e.to_string()),
        }
    } else {
        cfg.command.clone()
    };
    let o = match exec(env, &env.head, &command, cfg.timeout_s, &[]) {
        Ok(o) => o,
        Err(e) => return result(gate, Status::Error, e.to_string()),
    };
    let summary = parse_test_summary(&o.output);
    let counts = summary
        .as_ref()
        .map(|s| {
            format!(
                "{} passed, {} failed, {} ignored ({})",
                s.passed, s.failed, s.ignored, s.framework
            )
        })
        .unwrap_or_else(|| "no test summary recognised".into());
    let mut r = if missing_command(&o) {
        result(
            gate,
            Status::Error,
            format!("`{command}`: command not found: {}", tail(&o.output, 3)),
        )
    } else if o.success() {
        result(gate, Status::Pass, format!("`{command}`: {counts}"))
    } else {
        result(
            gate,
            Status::Fail,
            format!(
                "`{command}` ({}): {counts}\n{}",
                o.describe(),
                tail(&o.output, 30)
            ),
        )
    };
    r.metrics = json!({
        "command": command,
        "exit": o.code,
        "timed_out": o.timed_out,
        "passed": summary.as_ref().map(|s| s.passed),
        "failed": summary.as_ref().map(|s| s.failed),
        "ignored": summary.as_ref().map(|s| s.ignored),
    });
    if r.status == Status::Fail {
        r.findings.push(gate_finding(gate, &r.details));
    }
    r
}

/// Line coverage in percent from a coverage.py JSON, cargo-llvm-cov JSON or lcov report.
pub fn parse_coverage(text: &str) -> Option<f64> {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        if let Some(p) = v["totals"]["percent_covered"].as_f64() {
            return Some(p);
        }
        if let Some(p) = v["data"][0]["totals"]["lines"]["percent"].as_f64() {
            return Some(p);
        }
        return None;
    }
    let (mut hit, mut found) = (0u64, 0u64);
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("LH:") {
            hit += n.trim().parse::<u64>().ok()?;
        } else if let Some(n) = line.strip_prefix("LF:") {
            found += n.trim().parse::<u64>().ok()?;
        }
    }
    (found > 0).then(|| 100.0 * hit as f64 / found as f64)
}

fn coverage(env: &Env) -> GateResult {
    let gate = Gate::CoverageMaintained;
    let cfg = &env.config.coverage;
    if cfg.command.trim().is_empty() || cfg.report.trim().is_empty() {
        return result(
            gate,
            Status::Error,
            "no coverage tool configured: set [coverage] command and report in .codectx/gates.toml",
        );
    }
    let mut measured = Vec::new();
    for (side, dir) in [("base", &env.base), ("head", &env.head)] {
        let o = match exec(env, dir, &cfg.command, cfg.timeout_s, &[]) {
            Ok(o) => o,
            Err(e) => return result(gate, Status::Error, e.to_string()),
        };
        if !o.success() {
            let why = if missing_command(&o) {
                "command not found"
            } else {
                "failed"
            };
            return result(
                gate,
                Status::Error,
                format!(
                    "`{}` on {side} {why} ({}):\n{}",
                    cfg.command,
                    o.describe(),
                    tail(&o.output, 20)
                ),
            );
        }
        let path = dir.join(&cfg.report);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                return result(
                    gate,
                    Status::Error,
                    format!(
                        "{side}: the coverage report {} was not written: {e}",
                        cfg.report
                    ),
                );
            }
        };
        match parse_coverage(&text) {
            Some(p) => measured.push(p),
            None => {
                return result(
                    gate,
                    Status::Error,
                    format!(
                        "{side}: {} is not a coverage.py JSON, cargo-llvm-cov JSON or lcov report",
                        cfg.report
                    ),
                );
            }
        }
    }
    let (base, head) = (measured[0], measured[1]);
    let drop = base - head;
    let mut r = if head + 1e-9 < cfg.min_percent {
        result(
            gate,
            Status::Fail,
            format!(
                "line coverage {head:.2}% is under the {:.2}% floor (base {base:.2}%)",
                cfg.min_percent
            ),
        )
    } else if drop > cfg.max_drop + 1e-9 {
        result(
            gate,
            Status::Fail,
            format!(
                "line coverage dropped {drop:.2} points: {base:.2}% -> {head:.2}% (allowed {:.2})",
                cfg.max_drop
            ),
        )
    } else {
        result(
            gate,
            Status::Pass,
            format!("line coverage {base:.2}% -> {head:.2}%"),
        )
    };
    r.metrics = json!({"base_percent": base, "head_percent": head, "drop": drop});
    if r.status == Status::Fail {
        r.findings.push(gate_finding(gate, &r.details));
    }
    r
}

/// The repository-relative or absolute path of a configured file, read from base.
fn config_path(env: &Env, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        env.base.join(p)
    }
}

fn sast(env: &Env) -> GateResult {
    let gate = Gate::SastClean;
    let cfg = &env.config.sast;
    if cfg.rules.is_empty() {
        return result(
            gate,
            Status::Error,
            "no semgrep rules configured: set [sast] rules to local rule files (registry rules need the network)",
        );
    }
    let Some(semgrep) = sandbox::find_tool("semgrep") else {
        return result(
            gate,
            Status::Error,
            "semgrep is not installed (not on PATH nor in $CODECTX_HOME/gate-tools/bin; scripts/setup installs it)",
        );
    };
    let mut command = format!(
        "'{}' scan --json --metrics=off --disable-version-check --quiet",
        semgrep.display()
    );
    // semgrep prefixes each rule id with its file's directory, dotted; that directory is a
    // temporary worktree, so it is cut off to keep rule ids (and fingerprints) stable.
    let mut prefixes = Vec::new();
    let mut rule_paths = Vec::new();
    for rule in &cfg.rules {
        let path = config_path(env, rule);
        if !path.exists() {
            return result(
                gate,
                Status::Error,
                format!("semgrep rules {rule}: not found in base"),
            );
        }
        let dir = if path.is_dir() {
            path.clone()
        } else {
            path.parent().unwrap_or(&path).to_path_buf()
        };
        prefixes.push(format!(
            "{}.",
            dir.to_string_lossy()
                .trim_start_matches('/')
                .replace('/', ".")
        ));
        command.push_str(&format!(" --config '{}'", path.display()));
        rule_paths.push(path);
    }
    let out_file = env.scratch.join("semgrep.json");
    command.push_str(&format!(" --output '{}' .", out_file.display()));
    let home = env.scratch.to_string_lossy().to_string();
    let o = match exec_reading(
        env,
        &env.head,
        &command,
        cfg.timeout_s,
        &[("HOME", home.clone()), ("XDG_CONFIG_HOME", home)],
        &rule_paths,
    ) {
        Ok(o) => o,
        Err(e) => return result(gate, Status::Error, e.to_string()),
    };
    let report: Value = match std::fs::read_to_string(&out_file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
    {
        Some(v) => v,
        None => {
            return result(
                gate,
                Status::Error,
                format!(
                    "semgrep wrote no JSON report ({}):\n{}",
                    o.describe(),
                    tail(&o.output, 20)
                ),
            );
        }
    };
    let errors = report["errors"].as_array().cloned().unwrap_or_default();
    if !errors.is_empty() || !matches!(o.code, Some(0) | Some(1)) {
        let messages: Vec<String> = errors
            .iter()
            .map(|e| {
                e["message"]
                    .as_str()
                    .unwrap_or("?")
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        return result(
            gate,
            Status::Error,
            format!(
                "semgrep reported {} error(s) ({}): {}",
                errors.len(),
                o.describe(),
                messages.join("; ")
            ),
        );
    }
    let mut findings = Vec::new();
    for m in report["results"].as_array().into_iter().flatten() {
        let path = m["path"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("./")
            .to_string();
        let start = m["start"]["line"].as_u64().unwrap_or(0) as u32;
        let end = m["end"]["line"].as_u64().unwrap_or(start as u64) as u32;
        let raw = m["check_id"].as_str().unwrap_or("semgrep");
        let rule = prefixes
            .iter()
            .find_map(|p| raw.strip_prefix(p.as_str()))
            .unwrap_or(raw)
            .to_string();
        let level = match m["extra"]["severity"].as_str() {
            Some("ERROR") => "error",
            Some("WARNING") => "warning",
            _ => "note",
        };
        let line_text = std::fs::read_to_string(env.head.join(&path))
            .ok()
            .and_then(|t| {
                t.lines()
                    .nth(start.saturating_sub(1) as usize)
                    .map(|l| l.trim().to_string())
            })
            .unwrap_or_default();
        findings.push(Finding {
            tool: "semgrep".into(),
            fingerprint: fingerprint(&[&rule, &path, &line_text]),
            rule_id: rule,
            level: level.into(),
            message: m["extra"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            path: Some(path),
            start_line: Some(start),
            end_line: Some(end),
        });
    }
    let mut r = if findings.is_empty() {
        result(
            gate,
            Status::Pass,
            format!(
                "semgrep: no findings from {} rule source(s)",
                cfg.rules.len()
            ),
        )
    } else {
        let list: Vec<String> = findings
            .iter()
            .take(10)
            .map(|f| {
                format!(
                    "{} at {}:{}",
                    f.rule_id,
                    f.path.as_deref().unwrap_or("?"),
                    f.start_line.unwrap_or(0)
                )
            })
            .collect();
        result(
            gate,
            Status::Fail,
            format!(
                "semgrep: {} finding(s): {}",
                findings.len(),
                list.join(", ")
            ),
        )
    };
    r.metrics = json!({"findings": findings.len()});
    r.findings = findings;
    r
}

fn deps(env: &Env) -> GateResult {
    let gate = Gate::DepsSafe;
    let cfg = &env.config.deps;
    match cfg.tool.as_str() {
        "osv" => {
            if cfg.advisories.trim().is_empty() {
                return result(
                    gate,
                    Status::Error,
                    "no advisory database configured: set [deps] advisories to a local directory of OSV JSON files",
                );
            }
            let db = config_path(env, &cfg.advisories);
            let advisories = match super::osv::load(&db) {
                Ok(a) => a,
                Err(e) => return result(gate, Status::Error, e.to_string()),
            };
            let (packages, lockfiles) = match super::osv::lockfiles(&env.head) {
                Ok(p) => p,
                Err(e) => return result(gate, Status::Error, e.to_string()),
            };
            let findings = super::osv::audit(&packages, &advisories);
            let mut r = if lockfiles.is_empty() {
                result(
                    gate,
                    Status::Pass,
                    "no lockfile (Cargo.lock, requirements*.txt): no dependencies to audit",
                )
            } else if findings.is_empty() {
                result(
                    gate,
                    Status::Pass,
                    format!(
                        "{} pinned packages in {} against {} advisories: none affected",
                        packages.len(),
                        lockfiles.join(", "),
                        advisories.len()
                    ),
                )
            } else {
                let list: Vec<String> = findings.iter().map(|f| f.message.clone()).collect();
                result(
                    gate,
                    Status::Fail,
                    format!("{} vulnerable: {}", findings.len(), list.join("; ")),
                )
            };
            r.metrics = json!({"packages": packages.len(), "advisories": advisories.len(), "vulnerable": findings.len()});
            r.findings = findings;
            r
        }
        tool @ ("cargo-audit" | "pip-audit") => {
            let binary = if tool == "cargo-audit" {
                "cargo-audit"
            } else {
                "pip-audit"
            };
            if sandbox::find_tool(binary).is_none() {
                return result(
                    gate,
                    Status::Error,
                    format!(
                        "{binary} is not installed (not on PATH nor in $CODECTX_HOME/gate-tools/bin)"
                    ),
                );
            }
            let command = if tool == "cargo-audit" {
                format!(
                    "cargo audit --json --no-fetch --db '{}'",
                    config_path(env, &cfg.advisories).display()
                )
            } else {
                "pip-audit -r requirements.txt --format json".to_string()
            };
            let o = match exec(env, &env.head, &command, cfg.timeout_s, &[]) {
                Ok(o) => o,
                Err(e) => return result(gate, Status::Error, e.to_string()),
            };
            match o.code {
                Some(0) => result(gate, Status::Pass, format!("{tool}: no vulnerabilities")),
                Some(1) => result(
                    gate,
                    Status::Fail,
                    format!("{tool} found vulnerabilities:\n{}", tail(&o.output, 30)),
                ),
                _ => result(
                    gate,
                    Status::Error,
                    format!("{tool} failed ({}):\n{}", o.describe(), tail(&o.output, 20)),
                ),
            }
        }
        other => result(
            gate,
            Status::Error,
            format!("[deps] tool {other:?}: expected osv, cargo-audit or pip-audit"),
        ),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn performance(env: &Env) -> GateResult {
    let gate = Gate::PerformanceStable;
    let cfg = &env.config.performance;
    if cfg.command.trim().is_empty() {
        return result(
            gate,
            Status::Error,
            "no benchmark configured: set [performance] command in .codectx/gates.toml",
        );
    }
    let runs = cfg.runs.max(1);
    let (mut base_s, mut head_s, mut base_rss, mut head_rss) = (vec![], vec![], vec![], vec![]);
    // Alternate base and head so drift on a noisy machine hits both alike.
    for _ in 0..runs {
        for (side, dir) in [("base", &env.base), ("head", &env.head)] {
            let o = match exec(env, dir, &cfg.command, cfg.timeout_s, &[]) {
                Ok(o) => o,
                Err(e) => return result(gate, Status::Error, e.to_string()),
            };
            if !o.success() {
                return result(
                    gate,
                    Status::Error,
                    format!(
                        "the benchmark failed on {side} ({}):\n{}",
                        o.describe(),
                        tail(&o.output, 20)
                    ),
                );
            }
            let (t, m) = if side == "base" {
                (&mut base_s, &mut base_rss)
            } else {
                (&mut head_s, &mut head_rss)
            };
            t.push(o.took.as_secs_f64());
            m.push(o.max_rss_bytes as f64);
        }
    }
    let (bt, ht) = (median(&mut base_s), median(&mut head_s));
    let (bm, hm) = (median(&mut base_rss), median(&mut head_rss));
    let latency = ht / bt.max(1e-9) - 1.0;
    let memory = hm / bm.max(1.0) - 1.0;
    let line = format!(
        "median of {runs}: {:.1} ms -> {:.1} ms ({:+.1}%, limit +{:.0}%), peak RSS {:.1} MiB -> {:.1} MiB ({:+.1}%, limit +{:.0}%)",
        bt * 1e3,
        ht * 1e3,
        latency * 100.0,
        cfg.max_latency_increase * 100.0,
        bm / 1048576.0,
        hm / 1048576.0,
        memory * 100.0,
        cfg.max_memory_increase * 100.0
    );
    let mut r = if latency > cfg.max_latency_increase || memory > cfg.max_memory_increase {
        result(gate, Status::Fail, format!("regression: {line}"))
    } else {
        result(gate, Status::Pass, line)
    };
    r.metrics = json!({
        "runs": runs, "base_ms": bt * 1e3, "head_ms": ht * 1e3, "latency_change": latency,
        "base_rss_bytes": bm, "head_rss_bytes": hm, "memory_change": memory,
    });
    if r.status == Status::Fail {
        r.findings.push(gate_finding(gate, &r.details));
    }
    r
}

fn review(gate: Gate, env: &Env) -> GateResult {
    match env
        .approvals
        .get(gate.name())
        .filter(|w| !w.trim().is_empty())
    {
        Some(who) => result(gate, Status::Pass, format!("approved by {who}")),
        None => {
            let mut r = result(
                gate,
                Status::Fail,
                format!(
                    "awaiting approval: pass --approve {}=<who> or an approvals file",
                    gate.name()
                ),
            );
            r.findings.push(gate_finding(gate, &r.details));
            r
        }
    }
}

/// A failed gate as a finding without a location.
fn gate_finding(gate: Gate, details: &str) -> Finding {
    Finding {
        tool: "codectx-gate".into(),
        rule_id: format!("gate/{}", gate.name()),
        level: "error".into(),
        message: details.lines().next().unwrap_or_default().to_string(),
        path: None,
        start_line: None,
        end_line: None,
        fingerprint: fingerprint(&["gate", gate.name()]),
    }
}

/// A short stable hash of the parts.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(&[0]);
    }
    h.finalize().to_hex()[..32].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_summaries_of_cargo_pytest_and_unittest() {
        let cargo = "running 2 tests\ntest result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured\n\ntest result: ok. 3 passed; 0 failed; 2 ignored; 0 measured";
        assert_eq!(
            parse_test_summary(cargo),
            Some(TestSummary {
                framework: "cargo",
                passed: 4,
                failed: 1,
                ignored: 2
            })
        );
        let pytest = "....F\n=========== 1 failed, 4 passed, 1 skipped in 0.12s ===========";
        assert_eq!(
            parse_test_summary(pytest),
            Some(TestSummary {
                framework: "pytest",
                passed: 4,
                failed: 1,
                ignored: 1
            })
        );
        let unittest = "..F.E\n------\nRan 5 tests in 0.001s\n\nFAILED (failures=1, errors=1)";
        assert_eq!(
            parse_test_summary(unittest),
            Some(TestSummary {
                framework: "unittest",
                passed: 3,
                failed: 2,
                ignored: 0
            })
        );
        assert_eq!(
            parse_test_summary("Ran 2 tests in 0.0s\n\nOK").map(|s| s.passed),
            Some(2)
        );
        assert_eq!(parse_test_summary("make: nothing"), None);
    }

    #[test]
    fn coverage_reports_of_three_formats() {
        assert_eq!(
            parse_coverage(r#"{"totals": {"percent_covered": 87.5}}"#),
            Some(87.5)
        );
        assert_eq!(
            parse_coverage(r#"{"data": [{"totals": {"lines": {"percent": 61.0}}}]}"#),
            Some(61.0)
        );
        assert_eq!(
            parse_coverage("SF:a.rs\nLF:10\nLH:5\nend_of_record\nSF:b.rs\nLF:10\nLH:10\n"),
            Some(75.0)
        );
        assert_eq!(parse_coverage(r#"{"something": 1}"#), None);
        assert_eq!(parse_coverage("garbage"), None);
    }
}
