//! Rollback conditions: the policy's thresholds and its `rollback_triggers` (and a task's
//! `rollback_condition`), parsed into tests of a metric's value against its baseline.
//!
//! The trigger grammar, whole words separated by spaces:
//!
//! ```text
//! [any_]METRIC[_increase] [OP NUMBER[%]] [within DURATION]
//! ```
//!
//! * `error_rate > 2%`: the value itself (a ratio metric: 2% is 0.02).
//! * `error_rate_increase > 0.5%`: for a ratio metric, half a percentage point above the
//!   baseline; for any other metric (`p99_latency_increase > 10%`), 10% above the baseline.
//!   Without `%` the increase is in the metric's own unit.
//! * `any_auth_failure_increase`: any rise above the baseline.
//! * `within 15m`: only checked during the first 15 minutes after the merge.

use crate::error::{Error, Result};
use crate::policy::Threshold;
use serde::Serialize;
use std::time::Duration;

/// How a metric's numbers read: `ratio` is a fraction (an error rate), which makes `%`
/// increases absolute percentage points; anything else compares relatively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Ratio,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Above,
    AtLeast,
    Below,
    AtMost,
}

impl Op {
    fn holds(self, value: f64, limit: f64) -> bool {
        match self {
            Op::Above => value > limit,
            Op::AtLeast => value >= limit,
            Op::Below => value < limit,
            Op::AtMost => value <= limit,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::Above => ">",
            Op::AtLeast => ">=",
            Op::Below => "<",
            Op::AtMost => "<=",
        }
    }
}

/// What a condition compares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Test {
    /// The value against a limit.
    Level { op: Op, limit: f64 },
    /// The value over the baseline against a limit.
    Ratio { above: f64 },
    /// value - baseline against a limit (in the metric's unit, or percentage points of a
    /// ratio metric).
    Increase { op: Op, limit: f64 },
    /// (value - baseline) / baseline against a limit (0.1 = 10%).
    RelativeIncrease { op: Op, limit: f64 },
    /// Any rise above the baseline.
    AnyIncrease,
}

/// One condition under which the merge is rolled back.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// As written (the policy's trigger) or made up from a threshold.
    pub text: String,
    /// Where it comes from: `policy [monitor]`, `task type X`, `task`.
    pub origin: String,
    pub metric: String,
    pub test: Test,
    /// Only checked this long after the merge.
    pub within: Option<Duration>,
}

/// A condition's verdict at one check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub condition: String,
    pub metric: String,
    pub value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// What the value was compared with, in the metric's unit.
    pub threshold: f64,
    pub breach: bool,
}

impl Condition {
    /// The conditions a policy threshold makes.
    pub fn from_threshold(metric: &str, t: &Threshold, origin: &str) -> Vec<Condition> {
        let mut out = Vec::new();
        if let Some(above) = t.above {
            out.push(Condition {
                text: format!("{metric} > {}", number(above)),
                origin: origin.to_string(),
                metric: metric.to_string(),
                test: Test::Level {
                    op: Op::Above,
                    limit: above,
                },
                within: None,
            });
        }
        if let Some(r) = t.ratio_above {
            out.push(Condition {
                text: format!("{metric} > {}x baseline", number(r)),
                origin: origin.to_string(),
                metric: metric.to_string(),
                test: Test::Ratio { above: r },
                within: None,
            });
        }
        out
    }

    /// Parses a trigger; `unit` tells how `%` reads for the metric it names.
    pub fn parse(
        text: &str,
        origin: &str,
        unit: impl Fn(&str) -> Option<Unit>,
    ) -> Result<Condition> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "{origin}: rollback condition {text:?}: {why} (expected `[any_]METRIC[_increase] [> NUMBER[%]] [within DURATION]`, e.g. `error_rate > 2% within 15m`)"
            ))
        };
        let mut words: Vec<&str> = text.split_whitespace().collect();
        let mut within = None;
        if let Some(i) = words.iter().position(|w| w.eq_ignore_ascii_case("within")) {
            let rest = &words[i + 1..];
            if rest.len() != 1 {
                return Err(bad("`within` takes one duration"));
            }
            within = Some(crate::time::parse_duration(
                rest[0],
                &format!("{origin}: {text:?}"),
            )?);
            words.truncate(i);
        }
        // `>2%` and `> 2 %` read like `> 2%`.
        let joined = words.join(" ");
        let (term, comparison) = match joined.find(['>', '<']) {
            Some(i) => (joined[..i].trim(), Some(joined[i..].trim())),
            None => (joined.trim(), None),
        };
        if term.is_empty() || term.contains(char::is_whitespace) {
            return Err(bad("name one metric"));
        }
        let (any, term) = match term.strip_prefix("any_") {
            Some(t) => (true, t),
            None => (false, term),
        };
        let (increase, metric) = match term.strip_suffix("_increase") {
            Some(m) => (true, m),
            None => (false, term),
        };
        if metric.is_empty()
            || !metric
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(bad("a metric name is letters, digits and `_`"));
        }
        let unit = unit(metric).ok_or_else(|| {
            Error::invalid(format!(
                "{origin}: rollback condition {text:?} names the metric `{metric}`, which no metric of the monitor's config backs: add `[metrics.{metric}] query = \"<PromQL>\"` to it"
            ))
        })?;
        let test = match comparison {
            None if any || increase => Test::AnyIncrease,
            None => return Err(bad("a level needs a comparison")),
            Some(c) => {
                let (op, rest) = if let Some(r) = c.strip_prefix(">=") {
                    (Op::AtLeast, r)
                } else if let Some(r) = c.strip_prefix("<=") {
                    (Op::AtMost, r)
                } else if let Some(r) = c.strip_prefix('>') {
                    (Op::Above, r)
                } else if let Some(r) = c.strip_prefix('<') {
                    (Op::Below, r)
                } else {
                    return Err(bad("unknown comparison"));
                };
                let rest = rest.trim();
                let (num, percent) = match rest.strip_suffix('%') {
                    Some(n) => (n.trim(), true),
                    None => (rest, false),
                };
                let n: f64 = num
                    .parse()
                    .ok()
                    .filter(|n: &f64| n.is_finite())
                    .ok_or_else(|| bad("the limit is not a number"))?;
                let limit = if percent { n / 100.0 } else { n };
                match (increase, percent, unit) {
                    (false, _, _) => Test::Level { op, limit },
                    (true, true, Unit::Other) => Test::RelativeIncrease { op, limit },
                    (true, _, _) => Test::Increase { op, limit },
                }
            }
        };
        Ok(Condition {
            text: text.trim().to_string(),
            origin: origin.to_string(),
            metric: metric.to_string(),
            test,
            within,
        })
    }

    /// Whether the condition applies `since_merge` after the merge.
    pub fn active(&self, since_merge: Duration) -> bool {
        self.within.is_none_or(|w| since_merge <= w)
    }

    /// Whether a baseline is needed to judge it.
    pub fn needs_baseline(&self) -> bool {
        !matches!(self.test, Test::Level { .. })
    }

    /// Judges a value; `None` when a baseline is needed and there is none.
    pub fn judge(&self, value: f64, baseline: Option<f64>) -> Option<Judgement> {
        let (threshold, breach) = match self.test {
            Test::Level { op, limit } => (limit, op.holds(value, limit)),
            Test::Ratio { above } => {
                let b = baseline?;
                let t = b * above;
                (t, value > t)
            }
            Test::Increase { op, limit } => {
                let b = baseline?;
                (b + limit, op.holds(value - b, limit))
            }
            Test::RelativeIncrease { op, limit } => {
                let b = baseline?;
                let t = b * (1.0 + limit);
                let rise = if b > 0.0 {
                    (value - b) / b
                } else if value > 0.0 {
                    f64::INFINITY
                } else {
                    0.0
                };
                (t, op.holds(rise, limit))
            }
            Test::AnyIncrease => {
                let b = baseline?;
                (b, value > b + b.abs() * 1e-9)
            }
        };
        Some(Judgement {
            condition: self.text.clone(),
            metric: self.metric.clone(),
            value,
            baseline,
            threshold,
            breach,
        })
    }

    /// The comparison in words, for reports: `> 0.05`.
    pub fn describe(&self) -> String {
        match self.test {
            Test::Level { op, limit } => format!("{} {}", op.symbol(), number(limit)),
            Test::Ratio { above } => format!("> {}x baseline", number(above)),
            Test::Increase { op, limit } => format!("baseline + {} {}", op.symbol(), number(limit)),
            Test::RelativeIncrease { op, limit } => {
                format!("rise {} {}%", op.symbol(), number(limit * 100.0))
            }
            Test::AnyIncrease => "> baseline".into(),
        }
    }
}

/// A number without trailing zeros: `0.05`, `1.5`, `2`.
pub fn number(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    fn units(m: &str) -> Option<Unit> {
        match m {
            "error_rate" | "flaky_test_rate" => Some(Unit::Ratio),
            "p99_latency" | "memory" | "auth_failure" => Some(Unit::Other),
            _ => None,
        }
    }

    fn check(text: &str, value: f64, baseline: Option<f64>, expect: Expect) {
        let actual = match Condition::parse(text, "policy", units) {
            Err(e) => format!("error: {e}"),
            Ok(c) => match c.judge(value, baseline) {
                None => format!(
                    "{} {:?} within {:?}: no baseline",
                    c.metric, c.test, c.within
                ),
                Some(j) => format!(
                    "{} {:?} within {:?}: threshold {} breach {}",
                    c.metric,
                    c.test,
                    c.within,
                    number(j.threshold),
                    j.breach
                ),
            },
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn triggers_of_the_shipped_policy_parse_and_judge() {
        check(
            "flaky_test_rate > 2%",
            0.03,
            None,
            expect![[
                r#"flaky_test_rate Level { op: Above, limit: 0.02 } within None: threshold 0.02 breach true"#
            ]],
        );
        check(
            "error_rate_increase > 0.5%",
            0.012,
            Some(0.01),
            expect![[
                r#"error_rate Increase { op: Above, limit: 0.005 } within None: threshold 0.015 breach false"#
            ]],
        );
        check(
            "p99_latency_increase > 10%",
            0.25,
            Some(0.2),
            expect![[
                r#"p99_latency RelativeIncrease { op: Above, limit: 0.1 } within None: threshold 0.22 breach true"#
            ]],
        );
        check(
            "any_auth_failure_increase",
            3.0,
            Some(3.0),
            expect![[r#"auth_failure AnyIncrease within None: threshold 3 breach false"#]],
        );
        check(
            "error_rate > 2% within 15m",
            0.01,
            None,
            expect![[
                r#"error_rate Level { op: Above, limit: 0.02 } within Some(900s): threshold 0.02 breach false"#
            ]],
        );
        check(
            "memory_increase>5%",
            1.0,
            None,
            expect![[
                r#"memory RelativeIncrease { op: Above, limit: 0.05 } within None: no baseline"#
            ]],
        );
    }

    #[test]
    fn bad_triggers_name_the_trigger_and_the_reason() {
        check(
            "queue_depth > 10",
            0.0,
            None,
            expect![[
                r#"error: policy: rollback condition "queue_depth > 10" names the metric `queue_depth`, which no metric of the monitor's config backs: add `[metrics.queue_depth] query = "<PromQL>"` to it"#
            ]],
        );
        check(
            "error_rate > lots",
            0.0,
            None,
            expect![[
                r#"error: policy: rollback condition "error_rate > lots": the limit is not a number (expected `[any_]METRIC[_increase] [> NUMBER[%]] [within DURATION]`, e.g. `error_rate > 2% within 15m`)"#
            ]],
        );
        check(
            "error_rate",
            0.0,
            None,
            expect![[
                r#"error: policy: rollback condition "error_rate": a level needs a comparison (expected `[any_]METRIC[_increase] [> NUMBER[%]] [within DURATION]`, e.g. `error_rate > 2% within 15m`)"#
            ]],
        );
        check(
            "error_rate > 2% within soon",
            0.0,
            None,
            expect![[
                r#"error: policy: "error_rate > 2% within soon": "soon" is not a duration (a whole number and a unit: 500ms, 30s, 15m, 24h, 7d)"#
            ]],
        );
    }

    #[test]
    fn thresholds_become_conditions() {
        let t = Threshold {
            above: None,
            ratio_above: Some(1.5),
        };
        let c = &Condition::from_threshold("p99_latency", &t, "policy [monitor]")[0];
        assert_eq!(c.text, "p99_latency > 1.5x baseline");
        assert!(c.judge(0.31, Some(0.2)).unwrap().breach);
        assert!(!c.judge(0.29, Some(0.2)).unwrap().breach);
        assert_eq!(c.judge(0.29, None), None);
    }
}
