//! The verdict's three renderings: JSON (the whole `Verdict`), SARIF 2.1.0 (findings and
//! failed gates, stable rule ids and fingerprints) and Markdown for a PR comment.

use super::{Status, Verdict};
use serde_json::{Value, json};

pub fn to_json(v: &Verdict) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// SARIF 2.1.0: one run, the gate runner as the driver; each distinct rule id once.
pub fn to_sarif(v: &Verdict) -> String {
    let mut rules: Vec<Value> = Vec::new();
    let mut index: std::collections::BTreeMap<String, usize> = Default::default();
    let mut results = Vec::new();
    for g in &v.gates {
        for f in &g.findings {
            let i = *index.entry(f.rule_id.clone()).or_insert_with(|| {
                rules.push(json!({
                    "id": f.rule_id,
                    "name": f.rule_id.replace(['/', '.', '-'], "_"),
                    "shortDescription": {"text": format!("{} ({})", f.rule_id, f.tool)},
                    "defaultConfiguration": {"level": f.level},
                    "properties": {"gate": g.gate.name(), "tool": f.tool},
                }));
                rules.len() - 1
            });
            let mut result = json!({
                "ruleId": f.rule_id,
                "ruleIndex": i,
                "level": f.level,
                "message": {"text": if f.message.is_empty() { f.rule_id.clone() } else { f.message.clone() }},
                "partialFingerprints": {"codectxFingerprint/v1": f.fingerprint},
                "properties": {"gate": g.gate.name()},
            });
            if let Some(path) = &f.path {
                let mut region = json!({});
                if let Some(s) = f.start_line.filter(|s| *s > 0) {
                    region["startLine"] = json!(s);
                    region["endLine"] = json!(f.end_line.unwrap_or(s).max(s));
                }
                let mut physical =
                    json!({"artifactLocation": {"uri": path, "uriBaseId": "SRCROOT"}});
                if region.as_object().is_some_and(|r| !r.is_empty()) {
                    physical["region"] = region;
                }
                result["locations"] = json!([{"physicalLocation": physical}]);
            }
            results.push(result);
        }
    }
    let notifications: Vec<Value> = v
        .gates
        .iter()
        .filter(|g| g.status == Status::Error)
        .map(|g| json!({"level": "error", "message": {"text": format!("{}: {}", g.gate.name(), g.details)}}))
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "codectx-gate",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/codectx/codectx",
                "rules": rules,
            }},
            "originalUriBaseIds": {"SRCROOT": {"uri": format!("file://{}/", v.repository.display())}},
            "versionControlProvenance": [{
                "repositoryUri": format!("file://{}", v.repository.display()),
                "revisionId": v.head_commit,
            }],
            "invocations": [{
                "executionSuccessful": v.verdict != Status::Error,
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
            "properties": {
                "verdict": v.verdict,
                "autoMerge": v.auto_merge,
                "taskType": v.classification.task_type,
                "baseCommit": v.base_commit,
            },
        }],
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

fn mark(s: Status) -> &'static str {
    match s {
        Status::Pass => "✅ pass",
        Status::Fail => "❌ fail",
        Status::Error => "⚠️ error",
    }
}

/// A Markdown summary for a PR comment.
pub fn to_markdown(v: &Verdict) -> String {
    let verdict = match v.verdict {
        Status::Pass => "PASS",
        Status::Fail => "FAIL",
        Status::Error => "ERROR",
    };
    let c = &v.classification;
    let mut md = format!(
        "## codectx gate: {verdict}\n\n`{}` → `{}` · task type `{}` (severity {}) · auto-merge: **{}** ({})\n\n| gate | result | time | details |\n|---|---|---|---|\n",
        &v.base_commit[..v.base_commit.len().min(10)],
        &v.head_commit[..v.head_commit.len().min(10)],
        c.task_type,
        c.severity.name(),
        if v.auto_merge { "yes" } else { "no" },
        v.auto_merge_reason
    );
    for g in &v.gates {
        let details = g
            .details
            .lines()
            .next()
            .unwrap_or_default()
            .replace('|', "\\|");
        md.push_str(&format!(
            "| {} | {} | {:.1} s | {} |\n",
            g.gate.name(),
            mark(g.status),
            g.duration_ms as f64 / 1000.0,
            details
        ));
    }
    let findings: Vec<_> = v
        .gates
        .iter()
        .flat_map(|g| &g.findings)
        .filter(|f| f.path.is_some())
        .collect();
    if !findings.is_empty() {
        md.push_str("\n### Findings\n\n");
        for f in findings.iter().take(25) {
            md.push_str(&format!(
                "- `{}` {}:{}: {}\n",
                f.rule_id,
                f.path.as_deref().unwrap_or("?"),
                f.start_line.unwrap_or(0),
                f.message
            ));
        }
        if findings.len() > 25 {
            md.push_str(&format!(
                "- ... and {} more (see the SARIF report)\n",
                findings.len() - 25
            ));
        }
    }
    if !v.rollback_triggers.is_empty() {
        md.push_str(&format!(
            "\nRollback triggers: {}.\n",
            v.rollback_triggers.join("; ")
        ));
    }
    md.push_str(&format!(
        "\nReview timeout {}; notify {}. Commands ran with {} isolation.\n",
        v.review_timeout,
        if v.notify.is_empty() {
            "nobody".to_string()
        } else {
            v.notify.join(", ")
        },
        v.isolation
    ));
    md
}
