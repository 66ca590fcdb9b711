//! The merge policy shared by the agent loop and the gate runner: task types with their
//! severity, required gates and merge rules (TOML), and the classification of a task.
//!
//! Architecture Invariant: a task that cannot be classified is HIGH severity, needs manual
//! review and is never auto-merged; no policy file can change that.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The policy shipped with codectx (`policy/default.toml`).
pub const DEFAULT_POLICY: &str = include_str!("../policy/default.toml");

/// The type name given to a task no rule recognises.
pub const UNKNOWN: &str = "unknown";

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A gate a change may be required to pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    TestsPass,
    CoverageMaintained,
    SastClean,
    DepsSafe,
    PerformanceStable,
    ManualReviewApproved,
    SecurityTeamApproved,
    LlmReview,
}

impl Gate {
    pub fn name(self) -> &'static str {
        match self {
            Gate::TestsPass => "tests_pass",
            Gate::CoverageMaintained => "coverage_maintained",
            Gate::SastClean => "sast_clean",
            Gate::DepsSafe => "deps_safe",
            Gate::PerformanceStable => "performance_stable",
            Gate::ManualReviewApproved => "manual_review_approved",
            Gate::SecurityTeamApproved => "security_team_approved",
            Gate::LlmReview => "llm_review",
        }
    }
}

/// The rules of one task type.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaskType {
    pub severity: Severity,
    pub auto_merge: bool,
    pub required_gates: Vec<Gate>,
    #[serde(default)]
    pub rollback_triggers: Vec<String>,
    #[serde(default = "default_review_timeout")]
    pub review_timeout: String,
    #[serde(default = "default_max_iterations")]
    pub max_iterations: u32,
    #[serde(default)]
    pub notify: Vec<String>,
    /// Issue labels that mean this type.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Words or phrases in a task's text that suggest this type.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// The post-merge monitor's thresholds for this type, per metric; they replace the
    /// policy's `[monitor]` entry of the same metric.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub monitor: BTreeMap<String, Threshold>,
    /// Graduation thresholds for this type; the policy's `[governance]` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance: Option<Governance>,
}

/// A limit the post-merge monitor applies to a metric: `above` on its value (a ratio such
/// as an error rate: 0.05 is 5%), `ratio_above` on its value over the baseline (1.5: half
/// as much again as the hour before the merge).
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_above: Option<f64>,
}

/// When `codectx governance report` recommends graduating a task type to auto-merge or
/// demoting it to review: rollback rates within 7 days of the merge, and how much history
/// a recommendation needs.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Governance {
    /// Graduate a review-required type whose rollback rate is below this (0.08 = 8%).
    pub graduate_below: f64,
    /// Demote an auto-merged type whose rollback rate is above this.
    pub demote_above: f64,
    /// Merges the rate must be computed over before any recommendation.
    pub min_merges: u32,
    /// Days between the first and the last of those merges.
    pub min_days: u32,
}

impl Default for Governance {
    fn default() -> Self {
        Governance {
            graduate_below: 0.08,
            demote_above: 0.15,
            min_merges: 20,
            min_days: 14,
        }
    }
}

/// The monitor's defaults: error rate above 5%, p99 latency above 1.5x its baseline,
/// resident memory above 1.3x, CPU above 1.4x.
pub fn default_thresholds() -> BTreeMap<String, Threshold> {
    let t = |above: Option<f64>, ratio_above: Option<f64>| Threshold { above, ratio_above };
    BTreeMap::from([
        ("error_rate".to_string(), t(Some(0.05), None)),
        ("p99_latency".to_string(), t(None, Some(1.5))),
        ("memory".to_string(), t(None, Some(1.3))),
        ("cpu".to_string(), t(None, Some(1.4))),
    ])
}

fn default_review_timeout() -> String {
    "24h".into()
}

fn default_max_iterations() -> u32 {
    7
}

/// A whole policy file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub task_types: BTreeMap<String, TaskType>,
    /// The post-merge monitor's thresholds per metric (`[monitor.error_rate]`); a file
    /// without the section gets [`default_thresholds`].
    #[serde(default = "default_thresholds")]
    pub monitor: BTreeMap<String, Threshold>,
    #[serde(default)]
    pub governance: Governance,
}

/// What classification decided, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classification {
    pub task_type: String,
    /// False for `unknown`: no rule recognised the task.
    pub known: bool,
    pub severity: Severity,
    pub auto_merge: bool,
    pub reason: String,
}

impl Policy {
    /// Parses a policy; errors name the line and the reason.
    pub fn parse(text: &str, origin: &str) -> Result<Policy> {
        let policy: Policy = toml::from_str(text)
            .map_err(|e| Error::invalid(format!("policy {origin}: {}", e.to_string().trim())))?;
        for (name, t) in &policy.task_types {
            if name == UNKNOWN {
                return Err(Error::invalid(format!(
                    "policy {origin}: `{UNKNOWN}` is reserved for tasks no rule recognises"
                )));
            }
            if t.max_iterations == 0 {
                return Err(Error::invalid(format!(
                    "policy {origin}: task type {name}: max_iterations must be at least 1"
                )));
            }
            if t.auto_merge && t.severity != Severity::Low {
                return Err(Error::invalid(format!(
                    "policy {origin}: task type {name}: auto_merge needs severity low (it is {})",
                    t.severity.name()
                )));
            }
        }
        let types = policy.task_types.iter();
        let typed = types.flat_map(|(n, t)| t.monitor.iter().map(move |m| (Some(n), m)));
        for (ty, (metric, t)) in policy.monitor.iter().map(|m| (None, m)).chain(typed) {
            let at = match ty {
                Some(n) => format!("task type {n}: monitor.{metric}"),
                None => format!("monitor.{metric}"),
            };
            if t.above.is_none() && t.ratio_above.is_none() {
                return Err(Error::invalid(format!(
                    "policy {origin}: {at}: set `above` or `ratio_above`"
                )));
            }
            if t.above.is_some_and(|v| !v.is_finite())
                || t.ratio_above.is_some_and(|v| !(v.is_finite() && v > 0.0))
            {
                return Err(Error::invalid(format!(
                    "policy {origin}: {at}: thresholds must be finite (ratio_above > 0)"
                )));
            }
        }
        let governed = policy
            .task_types
            .iter()
            .filter_map(|(n, t)| Some((n, t.governance?)));
        for (ty, g) in
            std::iter::once((&"[governance]".to_string(), policy.governance)).chain(governed)
        {
            let rate = |r: f64| (0.0..=1.0).contains(&r);
            if !rate(g.graduate_below) || !rate(g.demote_above) || g.graduate_below > g.demote_above
            {
                return Err(Error::invalid(format!(
                    "policy {origin}: {ty}: governance rates must lie in 0..=1 with graduate_below <= demote_above"
                )));
            }
        }
        Ok(policy)
    }

    /// The monitor's thresholds for `task_type`: the policy's, overridden per metric by the
    /// type's own.
    pub fn thresholds(&self, task_type: &str) -> BTreeMap<String, Threshold> {
        let mut all = self.monitor.clone();
        if let Some(t) = self.task_types.get(task_type) {
            all.extend(t.monitor.iter().map(|(k, v)| (k.clone(), *v)));
        }
        all
    }

    /// The graduation thresholds of `task_type`.
    pub fn governance_of(&self, task_type: &str) -> Governance {
        self.task_types
            .get(task_type)
            .and_then(|t| t.governance)
            .unwrap_or(self.governance)
    }

    pub fn default_policy() -> Policy {
        Policy::parse(DEFAULT_POLICY, "policy/default.toml").expect("the shipped policy parses")
    }

    /// The policy in `path`, or the shipped one when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Policy> {
        match path {
            None => Ok(Policy::default_policy()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
                Policy::parse(&text, &p.display().to_string())
            }
        }
    }

    /// The rules for `task_type`; an unknown type gets the built-in conservative rules.
    pub fn rules(&self, task_type: &str) -> TaskType {
        self.task_types
            .get(task_type)
            .cloned()
            .unwrap_or_else(unknown_rules)
    }

    /// Classifies a task by its declared type, its labels, then its text. A declared
    /// `severity` may raise the type's severity, never lower it.
    pub fn classify(
        &self,
        declared: Option<&str>,
        labels: &[String],
        text: &str,
        severity: Option<Severity>,
    ) -> Classification {
        let (task_type, reason) = self.pick(declared, labels, text);
        let rules = self.rules(&task_type);
        let known = self.task_types.contains_key(&task_type);
        let severity = severity.map_or(rules.severity, |s| s.max(rules.severity));
        Classification {
            auto_merge: known && rules.auto_merge && severity == Severity::Low,
            task_type,
            known,
            severity,
            reason,
        }
    }

    fn pick(&self, declared: Option<&str>, labels: &[String], text: &str) -> (String, String) {
        if let Some(d) = declared.map(str::trim).filter(|d| !d.is_empty()) {
            return if self.task_types.contains_key(d) {
                (d.to_string(), format!("declared task type {d}"))
            } else {
                (
                    UNKNOWN.into(),
                    format!("declared task type {d:?} is not in the policy"),
                )
            };
        }
        let lowered: Vec<String> = labels.iter().map(|l| l.trim().to_lowercase()).collect();
        let by_label = self.best(|name, t| {
            lowered
                .iter()
                .filter(|l| *l == name || t.labels.iter().any(|x| x.to_lowercase() == **l))
                .count()
        });
        if let Some((name, _)) = by_label {
            return (name.clone(), format!("label matches task type {name}"));
        }
        let words = text.to_lowercase();
        let by_text = self.best(|_, t| {
            t.keywords
                .iter()
                .filter(|k| contains_phrase(&words, &k.to_lowercase()))
                .count()
        });
        match by_text {
            Some((name, n)) => (
                name.clone(),
                format!("{n} keyword(s) of {name} in the text"),
            ),
            None => (
                UNKNOWN.into(),
                "no label or keyword matched a task type".into(),
            ),
        }
    }

    /// The type with the highest positive score; ties go to the more severe type.
    fn best(&self, score: impl Fn(&str, &TaskType) -> usize) -> Option<(&String, usize)> {
        self.task_types
            .iter()
            .map(|(name, t)| (name, t.severity, score(name, t)))
            .filter(|(_, _, s)| *s > 0)
            .max_by(|a, b| a.2.cmp(&b.2).then(a.1.cmp(&b.1)).then(b.0.cmp(a.0)))
            .map(|(name, _, s)| (name, s))
    }
}

/// The built-in rules of an unknown task type.
pub fn unknown_rules() -> TaskType {
    TaskType {
        severity: Severity::High,
        auto_merge: false,
        required_gates: vec![
            Gate::TestsPass,
            Gate::SastClean,
            Gate::DepsSafe,
            Gate::ManualReviewApproved,
        ],
        rollback_triggers: Vec::new(),
        review_timeout: default_review_timeout(),
        max_iterations: default_max_iterations(),
        notify: Vec::new(),
        labels: Vec::new(),
        keywords: Vec::new(),
        monitor: BTreeMap::new(),
        governance: None,
    }
}

/// `phrase` occurs in `text` on word boundaries (both already lowercased).
fn contains_phrase(text: &str, phrase: &str) -> bool {
    if phrase.is_empty() {
        return false;
    }
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(phrase).any(|(i, _)| {
        let before = text[..i].chars().next_back().is_none_or(|c| !is_word(c));
        let after = text[i + phrase.len()..]
            .chars()
            .next()
            .is_none_or(|c| !is_word(c));
        before && after
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    fn check(declared: Option<&str>, labels: &[&str], text: &str, expect: Expect) {
        let policy = Policy::default_policy();
        let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        let c = policy.classify(declared, &labels, text, None);
        expect.assert_eq(&format!(
            "{} {} auto_merge={} ({})",
            c.task_type,
            c.severity.name(),
            c.auto_merge,
            c.reason
        ));
    }

    #[test]
    fn classification_by_declaration_label_and_text() {
        check(
            Some("bug_fix_isolated"),
            &[],
            "",
            expect!["bug_fix_isolated low auto_merge=true (declared task type bug_fix_isolated)"],
        );
        check(
            Some("rewrite_everything"),
            &["bug"],
            "fix the crash",
            expect![[
                r#"unknown high auto_merge=false (declared task type "rewrite_everything" is not in the policy)"#
            ]],
        );
        check(
            None,
            &["Documentation"],
            "",
            expect!["documentation low auto_merge=true (label matches task type documentation)"],
        );
        check(
            None,
            &[],
            "Fix the panic when the config file is empty",
            expect![
                "bug_fix_isolated low auto_merge=true (2 keyword(s) of bug_fix_isolated in the text)"
            ],
        );
        check(
            None,
            &[],
            "Fix the auth token check",
            expect![
                "security_critical high auto_merge=false (2 keyword(s) of security_critical in the text)"
            ],
        );
        check(
            None,
            &[],
            "Make the logo bigger",
            expect!["unknown high auto_merge=false (no label or keyword matched a task type)"],
        );
        // "prefix" holds "fix" but not as a word.
        check(
            None,
            &[],
            "prefix handling",
            expect!["unknown high auto_merge=false (no label or keyword matched a task type)"],
        );
    }

    #[test]
    fn declared_severity_raises_never_lowers() {
        let policy = Policy::default_policy();
        let c = policy.classify(Some("documentation"), &[], "", Some(Severity::High));
        assert_eq!((c.severity, c.auto_merge), (Severity::High, false));
        let c = policy.classify(Some("security_critical"), &[], "", Some(Severity::Low));
        assert_eq!(c.severity, Severity::High);
    }

    #[test]
    fn malformed_policies_are_rejected_with_line_and_reason() {
        let err = Policy::parse(
            "[task_types.x]\nseverity = \"low\"\nauto_merge = true\nrequired_gates = [\"tests_pass\", \"vibes\"]\n",
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 4") && err.contains("vibes"), "{err}");
        let err = Policy::parse("[task_types.x]\nseverity = \"low\"\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("auto_merge"), "{err}");
        let err = Policy::parse(
            "[task_types.x]\nseverity = \"high\"\nauto_merge = true\nrequired_gates = []\n",
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("needs severity low"), "{err}");
        let err = Policy::parse("[task_types.x\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn bad_monitor_and_governance_thresholds_are_refused_naming_the_place() {
        let types =
            "[task_types.docs]\nseverity = \"low\"\nauto_merge = true\nrequired_gates = []\n";
        for (extra, says) in [
            (
                "[monitor]\nerror_rate = {}\n",
                "monitor.error_rate: set `above` or `ratio_above`",
            ),
            (
                "[monitor]\ncpu = { ratio_above = 0.0 }\n",
                "monitor.cpu: thresholds must be finite",
            ),
            (
                "[task_types.docs.monitor]\nmemory = {}\n",
                "task type docs: monitor.memory: set `above`",
            ),
            (
                "[governance]\ngraduate_below = 0.3\ndemote_above = 0.1\n",
                "governance rates must lie in 0..=1 with graduate_below <= demote_above",
            ),
        ] {
            let text = format!("{types}{extra}");
            let e = Policy::parse(&text, "p.toml").unwrap_err().to_string();
            assert!(e.starts_with("policy p.toml: ") && e.contains(says), "{e}");
        }
        // Without the sections: the documented defaults.
        let p = Policy::parse(types, "p.toml").unwrap();
        assert_eq!(p.thresholds("docs"), default_thresholds());
        assert_eq!(p.governance_of("docs"), Governance::default());
    }
}
