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
        Ok(policy)
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
}
