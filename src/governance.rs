//! The graduation report: from the outcomes ledger, per task type, how its changes fared
//! (runs, gate pass rate, merges, rollbacks within 24 hours and 7 days with 95% intervals)
//! and whether the policy should let it merge without a person, or stop letting it.
//!
//! Architecture Invariant: the report never changes the policy. It prints the TOML change
//! a person would make.
//!
//! Rollback rates count a merge once its window has passed (24 h or 7 d after it) or once
//! it was rolled back, whichever is first, so a merge made an hour ago neither helps nor
//! hurts a type's 7-day rate. A merge is rolled back when a monitor line with the same
//! merge commit says so within the window. Recommendations use the 7-day rate.

use crate::ledger::{Entry, Kind};
use crate::policy::{Policy, Severity};
use serde::Serialize;
use std::collections::BTreeMap;

/// A rate with its 95% Wilson interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    pub events: u32,
    pub of: u32,
    pub rate: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

impl Rate {
    pub fn new(events: u32, of: u32) -> Rate {
        if of == 0 {
            return Rate {
                events,
                of,
                rate: None,
                low: None,
                high: None,
            };
        }
        let (k, n, z) = (f64::from(events), f64::from(of), 1.959_964);
        let p = k / n;
        let denom = 1.0 + z * z / n;
        let centre = (p + z * z / (2.0 * n)) / denom;
        let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
        Rate {
            events,
            of,
            rate: Some(p),
            low: Some((centre - half).max(0.0)),
            high: Some((centre + half).min(1.0)),
        }
    }

    fn show(&self) -> String {
        match (self.rate, self.low, self.high) {
            (Some(r), Some(l), Some(h)) => format!(
                "{:.1}% ({}/{}; {:.1}-{:.1}%)",
                r * 100.0,
                self.events,
                self.of,
                l * 100.0,
                h * 100.0
            ),
            _ => "-".into(),
        }
    }
}

/// One task type's row.
#[derive(Debug, Clone, Serialize)]
pub struct TypeReport {
    pub task_type: String,
    pub severity: Severity,
    pub auto_merge_now: bool,
    pub runs: u32,
    pub gate_pass: Rate,
    pub merges: u32,
    pub auto_merged: u32,
    pub rollback_24h: Rate,
    pub rollback_7d: Rate,
    /// Mean review hours of reviewed merges that recorded them.
    pub review_hours: Option<f64>,
    pub recommendation: Recommendation,
    pub why: String,
    /// The change to make to the policy, when the recommendation is a change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_change: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recommendation {
    Graduate,
    Demote,
    KeepReview,
    KeepAutoMerge,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub generated_at: String,
    pub since: String,
    pub types: Vec<TypeReport>,
    /// Ledger lines that were skipped, with why.
    pub skipped: Vec<String>,
}

const DAY: i64 = 86_400;

/// Builds the report over entries at or after `since` (Unix seconds), as of `now`.
pub fn report(entries: &[Entry], policy: &Policy, since: i64, now: i64) -> Report {
    let entries: Vec<&Entry> = entries.iter().filter(|e| e.ts >= since).collect();
    // Rollbacks by merge commit: the earliest monitor line that rolled it back.
    let mut rolled: BTreeMap<&str, i64> = BTreeMap::new();
    for e in &entries {
        if e.kind == Some(Kind::Monitor)
            && e.rolled_back == Some(true)
            && let Some(m) = e.merge_commit.as_deref()
        {
            let t = rolled.entry(m).or_insert(e.ts);
            *t = (*t).min(e.ts);
        }
    }
    let mut names: Vec<String> = policy.task_types.keys().cloned().collect();
    for e in &entries {
        if let Some(t) = &e.task_type
            && !names.contains(t)
        {
            names.push(t.clone());
        }
    }
    let types = names
        .into_iter()
        .map(|name| {
            let of = |k: Kind| -> Vec<&Entry> {
                entries
                    .iter()
                    .copied()
                    .filter(|e| e.kind == Some(k) && e.task_type.as_deref() == Some(name.as_str()))
                    .collect()
            };
            let runs = of(Kind::AgentRun).len() as u32;
            let gates = of(Kind::Gate);
            let passed = gates
                .iter()
                .filter(|e| e.status.as_deref() == Some("pass"))
                .count() as u32;
            let merges = of(Kind::Merge);
            let auto_merged = merges
                .iter()
                .filter(|e| e.auto_merged == Some(true))
                .count() as u32;
            let rate_within = |window: i64| {
                let (mut events, mut counted) = (0, 0);
                for m in &merges {
                    let back = m
                        .merge_commit
                        .as_deref()
                        .and_then(|c| rolled.get(c))
                        .filter(|t| **t - m.ts <= window);
                    if back.is_some() {
                        events += 1;
                        counted += 1;
                    } else if now - m.ts >= window {
                        counted += 1;
                    }
                }
                Rate::new(events, counted)
            };
            let rollback_24h = rate_within(DAY);
            let rollback_7d = rate_within(7 * DAY);
            let hours: Vec<f64> = merges
                .iter()
                .filter(|e| e.auto_merged != Some(true))
                .filter_map(|e| e.review_hours)
                .collect();
            let review_hours =
                (!hours.is_empty()).then(|| hours.iter().sum::<f64>() / hours.len() as f64);
            let rules = policy.rules(&name);
            let known = policy.task_types.contains_key(&name);
            let g = policy.governance_of(&name);
            let span_days = {
                let ts: Vec<i64> = merges.iter().map(|m| m.ts).collect();
                match (ts.iter().min(), ts.iter().max()) {
                    (Some(a), Some(b)) => (b - a) as f64 / DAY as f64,
                    _ => 0.0,
                }
            };
            let enough = rollback_7d.of >= g.min_merges && span_days >= f64::from(g.min_days);
            let history = format!(
                "{} merges counted over {span_days:.1} days (needs {} over {} days)",
                rollback_7d.of, g.min_merges, g.min_days
            );
            let pct = |r: f64| format!("{:.1}%", r * 100.0);
            let (recommendation, why, policy_change) = match (rules.auto_merge, rollback_7d.rate) {
                (true, Some(r)) if r > g.demote_above && rollback_7d.of > 0 => (
                    Recommendation::Demote,
                    format!(
                        "7-day rollback rate {} is above demote_above {}",
                        pct(r),
                        pct(g.demote_above)
                    ),
                    Some(format!("[task_types.{name}]\nauto_merge = false\n")),
                ),
                (true, _) => (
                    Recommendation::KeepAutoMerge,
                    match rollback_7d.rate {
                        Some(r) => format!(
                            "7-day rollback rate {} is within demote_above {}",
                            pct(r),
                            pct(g.demote_above)
                        ),
                        None => "no merge has been watched for 7 days yet".into(),
                    },
                    None,
                ),
                (false, _) if !known => (
                    Recommendation::KeepReview,
                    "not a task type of the policy: unknown types always need review".into(),
                    None,
                ),
                (false, _) if rules.severity != Severity::Low => (
                    Recommendation::KeepReview,
                    format!(
                        "severity {}: only low-severity types may auto-merge",
                        rules.severity.name()
                    ),
                    None,
                ),
                (false, _) if !enough => (
                    Recommendation::KeepReview,
                    format!("not enough history: {history}"),
                    None,
                ),
                (false, Some(r)) if r < g.graduate_below => (
                    Recommendation::Graduate,
                    format!(
                        "7-day rollback rate {} is below graduate_below {} ({history})",
                        pct(r),
                        pct(g.graduate_below)
                    ),
                    Some(format!("[task_types.{name}]\nauto_merge = true\n")),
                ),
                (false, r) => (
                    Recommendation::KeepReview,
                    format!(
                        "7-day rollback rate {} is not below graduate_below {}",
                        r.map_or("-".into(), pct),
                        pct(g.graduate_below)
                    ),
                    None,
                ),
            };
            TypeReport {
                task_type: name.clone(),
                severity: rules.severity,
                auto_merge_now: rules.auto_merge,
                runs,
                gate_pass: Rate::new(passed, gates.len() as u32),
                merges: merges.len() as u32,
                auto_merged,
                rollback_24h,
                rollback_7d,
                review_hours,
                recommendation,
                why,
                policy_change,
            }
        })
        .collect();
    Report {
        generated_at: crate::time::rfc3339(now),
        since: crate::time::rfc3339(since),
        types,
        skipped: Vec::new(),
    }
}

impl Report {
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "# Graduation report\n\nLedger entries from {} to {}. Rollback rates count merges whose window has passed or that were rolled back; intervals are 95% Wilson.\n\n",
            self.since, self.generated_at
        );
        out.push_str("| Task type | Severity | Mode | Runs | Gate pass | Merges (auto) | Rollback 24h | Rollback 7d | Review h | Recommendation |\n");
        out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
        for t in &self.types {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} | {} |\n",
                t.task_type,
                t.severity.name(),
                if t.auto_merge_now {
                    "auto-merge"
                } else {
                    "review"
                },
                t.runs,
                t.gate_pass.show(),
                t.merges,
                t.auto_merged,
                t.rollback_24h.show(),
                t.rollback_7d.show(),
                t.review_hours.map_or("-".into(), |h| format!("{h:.1}")),
                match t.recommendation {
                    Recommendation::Graduate => "**graduate**",
                    Recommendation::Demote => "**demote**",
                    Recommendation::KeepReview => "keep review",
                    Recommendation::KeepAutoMerge => "keep auto-merge",
                }
            ));
        }
        out.push('\n');
        for t in &self.types {
            out.push_str(&format!("- **{}**: {}.\n", t.task_type, t.why));
        }
        let changes: Vec<&TypeReport> = self
            .types
            .iter()
            .filter(|t| t.policy_change.is_some())
            .collect();
        if !changes.is_empty() {
            out.push_str("\n## Policy changes to apply by hand\n\n```toml\n");
            for t in changes {
                out.push_str(&format!(
                    "# {}\n{}",
                    t.why,
                    t.policy_change.as_deref().unwrap_or_default()
                ));
            }
            out.push_str("```\n");
        }
        if !self.skipped.is_empty() {
            out.push_str("\n## Ledger lines skipped\n\n");
            for s in &self.skipped {
                out.push_str(&format!("- {s}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_interval_matches_the_textbook_values() {
        // 3 of 20: p = 0.15, 95% Wilson interval 0.0524..0.3604.
        let r = Rate::new(3, 20);
        assert_eq!(r.rate, Some(0.15));
        assert!((r.low.unwrap() - 0.0524).abs() < 5e-4, "{r:?}");
        assert!((r.high.unwrap() - 0.3604).abs() < 5e-4, "{r:?}");
        let none = Rate::new(0, 0);
        assert_eq!(none.rate, None);
        let zero = Rate::new(0, 10);
        assert_eq!(zero.low, Some(0.0));
        assert!((zero.high.unwrap() - 0.2775).abs() < 5e-4, "{zero:?}");
    }
}
