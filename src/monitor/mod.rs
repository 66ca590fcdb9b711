//! The post-merge monitor, a client of the policy and of the repository like the agent loop
//! and the gate runner: watch a merged change's metrics in Prometheus for a window and, on a
//! breach of the policy's thresholds or the task type's rollback triggers, revert it on a
//! branch, push it, open a pull request and notify.
//!
//! Architecture Invariant: the monitor never passes silently. A condition no metric backs,
//! a query Prometheus rejects, a baseline it needs and cannot find, a Prometheus that stays
//! unreachable or a metric that stays empty past the grace period all end the watch with an
//! error (exit 2) that names the thing, never with "healthy".
//!
//! Architecture Invariant: tokens and webhook addresses are read from the environment at the
//! moment of the call and never written to an event, a file, the ledger or an error message.

pub mod condition;
pub mod notify;
pub mod prom;
pub mod revert;

use crate::error::{Error, Result};
use crate::policy::Policy;
use condition::{Condition, Judgement, Unit};
use prom::{Prometheus, QueryError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The monitor's config (`--config FILE`, else `<repo>/.codectx/monitor.toml` when it
/// exists): where Prometheus is, the watch's timing, the metrics as PromQL, and where a
/// revert goes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    pub prometheus: PrometheusConfig,
    pub watch: WatchConfig,
    /// Metric name -> how to read it. Entries replace the defaults of the same name.
    pub metrics: BTreeMap<String, MetricConfig>,
    pub revert: RevertConfig,
    pub github: Option<notify::GithubConfig>,
    pub slack: Option<notify::SlackConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    pub url: String,
    /// Per query.
    pub timeout: String,
    /// How long Prometheus may stay unreachable (or a metric empty) before that is an
    /// alert and the watch ends with exit 2.
    pub grace: String,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            url: "http://127.0.0.1:9090".into(),
            timeout: "10s".into(),
            grace: "2m".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    pub window: String,
    pub interval: String,
    /// The baseline is the metric over this long before the merge.
    pub baseline: String,
    /// `$rate` in a query: the range of its `rate()`s.
    pub rate: String,
    /// Consecutive breaching checks of one condition before the merge is reverted.
    pub breach_after: u32,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            window: "15m".into(),
            interval: "30s".into(),
            baseline: "1h".into(),
            rate: "5m".into(),
            breach_after: 2,
        }
    }
}

/// One metric: a PromQL expression whose value is one number (`$service` and `$rate` are
/// replaced by the service's name and the rate range).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    pub query: String,
    /// `ratio` (a fraction such as an error rate: `%` in triggers is percentage points), or
    /// anything else (`seconds`, `bytes`, `cores`: `%` is relative).
    #[serde(default = "default_unit")]
    pub unit: String,
    /// False: not queried; thresholds of the policy on it are reported as off. A rollback
    /// trigger naming it is still an error.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn default_unit() -> String {
    "ratio".into()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevertConfig {
    /// A remote to push the revert branch to (`origin`); none: the branch stays local.
    pub remote: Option<String>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            prometheus: PrometheusConfig::default(),
            watch: WatchConfig::default(),
            metrics: default_metrics(),
            revert: RevertConfig::default(),
            github: None,
            slack: None,
        }
    }
}

/// The default metrics: what the Prometheus client libraries export for an HTTP service.
pub fn default_metrics() -> BTreeMap<String, MetricConfig> {
    let m = |query: &str, unit: &str| MetricConfig {
        query: query.into(),
        unit: unit.into(),
        enabled: true,
    };
    BTreeMap::from([
        (
            "error_rate".to_string(),
            m(
                r#"sum(rate(http_requests_total{job="$service",code=~"5.."}[$rate])) / sum(rate(http_requests_total{job="$service"}[$rate]))"#,
                "ratio",
            ),
        ),
        (
            "p99_latency".to_string(),
            m(
                r#"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{job="$service"}[$rate])))"#,
                "seconds",
            ),
        ),
        (
            "memory".to_string(),
            m(
                r#"sum(process_resident_memory_bytes{job="$service"})"#,
                "bytes",
            ),
        ),
        (
            "cpu".to_string(),
            m(
                r#"sum(rate(process_cpu_seconds_total{job="$service"}[$rate]))"#,
                "cores",
            ),
        ),
    ])
}

impl MonitorConfig {
    /// Parses a config: its metrics are added to (and replace) the defaults.
    pub fn parse(text: &str, origin: &str) -> Result<MonitorConfig> {
        let mut config: MonitorConfig = toml::from_str(text).map_err(|e| {
            Error::invalid(format!("monitor config {origin}: {}", e.to_string().trim()))
        })?;
        let mut metrics = default_metrics();
        metrics.extend(std::mem::take(&mut config.metrics));
        config.metrics = metrics;
        Ok(config)
    }

    /// `path`, else `<repo>/.codectx/monitor.toml`, else the defaults.
    pub fn load(path: Option<&Path>, repo: &Path) -> Result<MonitorConfig> {
        let found = repo.join(".codectx/monitor.toml");
        let path = match path {
            Some(p) => p.to_path_buf(),
            None if found.is_file() => found,
            None => return Ok(MonitorConfig::default()),
        };
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        MonitorConfig::parse(&text, &path.display().to_string())
    }
}

/// What to watch.
pub struct WatchRequest {
    pub repo: PathBuf,
    /// The merge commit (any revision git resolves).
    pub merge: String,
    pub task_type: String,
    pub service: String,
    pub policy: Policy,
    pub config: MonitorConfig,
    /// Unix seconds of the merge; default: the merge commit's committer time.
    pub merged_at: Option<i64>,
    /// The revert branch starts here (default `HEAD`).
    pub base: String,
    /// The original task: a structured task's rollback condition is checked too.
    pub task: Option<crate::agent::task::Task>,
    pub task_id: Option<String>,
    /// The pull request's text (default: the merge commit's message).
    pub pr_text: Option<String>,
    /// Where `revert.md` and `events.jsonl` go.
    pub out: PathBuf,
}

/// How a watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Healthy,
    RolledBack,
    Error,
}

impl Outcome {
    /// 0 healthy for the whole window, 1 rolled back, 2 error.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Healthy => 0,
            Outcome::RolledBack => 1,
            Outcome::Error => 2,
        }
    }
}

/// The last line of a watch.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub outcome: Outcome,
    pub exit_code: i32,
    pub reason: String,
    pub merge: String,
    pub task_type: String,
    pub service: String,
    pub checks: u32,
    pub started_at: String,
    pub ended_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breach: Option<Judgement>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revert: Option<revert::Reverted>,
    /// Steps after the revert that failed (push, pull request, notification), each with
    /// its reason; the revert branch stands either way.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One line of the event stream (`--json`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Start {
        merge: String,
        merged_at: String,
        task_type: String,
        service: String,
        prometheus: String,
        window_s: f64,
        interval_s: f64,
        baselines: BTreeMap<String, Option<f64>>,
        conditions: Vec<String>,
        /// Thresholds on metrics the config turns off.
        off: Vec<String>,
    },
    Check {
        n: u32,
        elapsed_s: f64,
        /// Wall time of this check: its queries and judgements.
        duration_ms: f64,
        values: BTreeMap<String, Option<f64>>,
        judgements: Vec<Judgement>,
        healthy: bool,
    },
    Unreachable {
        elapsed_s: f64,
        error: String,
        for_s: f64,
        grace_s: f64,
    },
    NoData {
        elapsed_s: f64,
        metric: String,
        for_s: f64,
        grace_s: f64,
    },
    Breach {
        judgement: Judgement,
        consecutive: u32,
    },
    Revert {
        revert: revert::Reverted,
    },
    Alert {
        reason: String,
    },
    Warning {
        message: String,
    },
    Summary {
        #[serde(flatten)]
        summary: Box<Summary>,
    },
}

/// Everything the watch checks, resolved once at the start.
struct Plan {
    merge_commit: String,
    merged_at: i64,
    conditions: Vec<Condition>,
    /// Metric -> its PromQL with `$service` and `$rate` replaced.
    queries: BTreeMap<String, String>,
    off: Vec<String>,
    window: Duration,
    interval: Duration,
    baseline: Duration,
    grace: Duration,
    breach_after: u32,
}

/// Watches the merge; every event goes to `emit` (the summary last). Errors before the
/// first check (a bad config, a bad query) are returned; later ones end in a summary with
/// outcome `error`.
pub fn watch(request: &WatchRequest, emit: &mut dyn FnMut(&Event)) -> Result<Summary> {
    let started = crate::time::now_unix();
    let plan = plan(request)?;
    let timeout =
        crate::time::parse_duration(&request.config.prometheus.timeout, "prometheus.timeout")?;
    let prom = Prometheus::new(&request.config.prometheus.url, timeout);
    let mut summary = Summary {
        outcome: Outcome::Healthy,
        exit_code: 0,
        reason: String::new(),
        merge: plan.merge_commit.clone(),
        task_type: request.task_type.clone(),
        service: request.service.clone(),
        checks: 0,
        started_at: crate::time::rfc3339(started),
        ended_at: String::new(),
        breach: None,
        revert: None,
        warnings: Vec::new(),
    };
    let clock = Instant::now();
    let result = run(request, &plan, &prom, &clock, &mut summary, emit);
    if let Err(e) = result {
        summary.outcome = Outcome::Error;
        summary.reason = e.to_string();
        emit(&Event::Alert {
            reason: summary.reason.clone(),
        });
        if let Err(n) = notify::slack(
            request.config.slack.as_ref(),
            &format!(
                "codectx monitor: watching merge {} ({}) of {} stopped: {}",
                short(&plan.merge_commit),
                request.task_type,
                request.service,
                summary.reason
            ),
        ) {
            summary.warnings.push(n.to_string());
        }
    }
    summary.exit_code = summary.outcome.exit_code();
    summary.ended_at = crate::time::rfc3339(crate::time::now_unix());
    emit(&Event::Summary {
        summary: Box::new(summary.clone()),
    });
    Ok(summary)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

fn plan(request: &WatchRequest) -> Result<Plan> {
    let config = &request.config;
    let dur = |text: &str, what: &str| crate::time::parse_duration(text, what);
    let window = dur(&config.watch.window, "window")?;
    let interval = dur(&config.watch.interval, "interval")?;
    if interval.is_zero() || window.is_zero() {
        return Err(Error::invalid("window and interval must be longer than 0"));
    }
    if config.watch.breach_after == 0 {
        return Err(Error::invalid("watch.breach_after must be at least 1"));
    }
    if request.service.is_empty()
        || !request
            .service
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
    {
        return Err(Error::invalid(format!(
            "--service {:?}: a service name is letters, digits and `_-.:` (it goes into PromQL)",
            request.service
        )));
    }
    let rate = dur(&config.watch.rate, "watch.rate")?;
    let merge_commit = crate::source::git::git_text(
        &request.repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{}^{{commit}}", request.merge),
        ],
    )
    .map_err(|_| {
        Error::NotFound(format!(
            "--merge {:?}: no such commit in {}",
            request.merge,
            request.repo.display()
        ))
    })?;
    let merged_at = match request.merged_at {
        Some(t) => t,
        None => crate::source::git::git_text(
            &request.repo,
            &["show", "-s", "--format=%ct", &merge_commit],
        )?
        .parse()
        .map_err(|_| Error::Internal(format!("no committer time for {merge_commit}")))?,
    };
    let units = |metric: &str| {
        config.metrics.get(metric).map(|m| {
            if m.unit == "ratio" {
                Unit::Ratio
            } else {
                Unit::Other
            }
        })
    };
    let mut conditions = Vec::new();
    let mut off = Vec::new();
    for (metric, t) in request.policy.thresholds(&request.task_type) {
        match config.metrics.get(&metric) {
            Some(m) if m.enabled => {
                conditions.extend(Condition::from_threshold(&metric, &t, "policy [monitor]"))
            }
            Some(_) => off.push(format!("{metric} (disabled in the monitor's config)")),
            None => {
                return Err(Error::invalid(format!(
                    "the policy's monitor threshold on `{metric}` names a metric the monitor's config does not define: add `[metrics.{metric}] query = \"<PromQL>\"`"
                )));
            }
        }
    }
    let rules = request.policy.rules(&request.task_type);
    let origin = format!("policy task type {}", request.task_type);
    for trigger in &rules.rollback_triggers {
        conditions.push(Condition::parse(trigger, &origin, units)?);
    }
    if let Some(rc) = request
        .task
        .as_ref()
        .and_then(|t| t.rollback_condition.as_deref())
    {
        conditions.push(Condition::parse(
            rc,
            "the task's rollback_condition",
            units,
        )?);
    }
    for c in &conditions {
        if !config.metrics[&c.metric].enabled {
            return Err(Error::invalid(format!(
                "{}: rollback condition {:?} needs the metric `{}`, which the monitor's config disables",
                c.origin, c.text, c.metric
            )));
        }
    }
    let mut queries = BTreeMap::new();
    for c in &conditions {
        let q = config.metrics[&c.metric]
            .query
            .replace("$service", &request.service)
            .replace("$rate", &crate::time::format_duration(rate));
        queries.insert(c.metric.clone(), q);
    }
    Ok(Plan {
        merge_commit,
        merged_at,
        conditions,
        queries,
        off,
        window,
        interval,
        baseline: dur(&config.watch.baseline, "watch.baseline")?,
        grace: dur(&config.prometheus.grace, "prometheus.grace")?,
        breach_after: config.watch.breach_after,
    })
}

/// Reports Prometheus unreachable since `since`; an error once that is past the grace
/// period, else how long it has been.
fn unreachable(
    plan: &Plan,
    clock: &Instant,
    since: Instant,
    error: &str,
    consequence: &str,
    emit: &mut dyn FnMut(&Event),
) -> Result<Duration> {
    let for_s = since.elapsed();
    emit(&Event::Unreachable {
        elapsed_s: clock.elapsed().as_secs_f64(),
        error: error.to_string(),
        for_s: for_s.as_secs_f64(),
        grace_s: plan.grace.as_secs_f64(),
    });
    if for_s >= plan.grace {
        return Err(Error::Unavailable(format!(
            "{error}; unreachable for {:.0}s, longer than the grace period ({}){consequence}",
            for_s.as_secs_f64(),
            crate::time::format_duration(plan.grace)
        )));
    }
    Ok(for_s)
}

/// Runs `f` until it stops answering `Unreachable` or the grace period is over.
fn patiently<T>(
    plan: &Plan,
    clock: &Instant,
    emit: &mut dyn FnMut(&Event),
    mut f: impl FnMut() -> std::result::Result<T, QueryError>,
) -> Result<std::result::Result<T, String>> {
    let since = Instant::now();
    loop {
        match f() {
            Ok(v) => return Ok(Ok(v)),
            Err(QueryError::Rejected(m)) => return Ok(Err(m)),
            Err(QueryError::Unreachable(m)) => {
                let for_s = unreachable(plan, clock, since, &m, "", emit)?;
                std::thread::sleep(
                    plan.interval
                        .min(plan.grace.saturating_sub(for_s))
                        .max(Duration::from_millis(100)),
                );
            }
        }
    }
}

fn run(
    request: &WatchRequest,
    plan: &Plan,
    prom: &Prometheus,
    clock: &Instant,
    summary: &mut Summary,
    emit: &mut dyn FnMut(&Event),
) -> Result<()> {
    // Every query once, now: Prometheus rejects bad PromQL before the window starts.
    let now = crate::time::now_unix_f64();
    for (metric, q) in &plan.queries {
        if let Err(m) = patiently(plan, clock, emit, || prom.instant(q, now))? {
            return Err(Error::invalid(format!("metric {metric}: query `{q}`: {m}")));
        }
    }
    // Baselines: the median over the hour (config) before the merge.
    let mut baselines = BTreeMap::new();
    let end = plan.merged_at as f64;
    let start = end - plan.baseline.as_secs_f64();
    let step = (plan.baseline.as_secs_f64() / 240.0).max(1.0);
    for (metric, q) in &plan.queries {
        let points = match patiently(plan, clock, emit, || prom.range(q, start, end, step))? {
            Ok(p) => p,
            Err(m) => return Err(Error::invalid(format!("metric {metric}: query `{q}`: {m}"))),
        };
        baselines.insert(metric.clone(), median(points));
    }
    for c in &plan.conditions {
        if c.needs_baseline() && baselines[&c.metric].is_none() {
            return Err(Error::FailedPrecondition(format!(
                "metric {}: no data in the {} before the merge ({}), and {:?} ({}) is judged against it: check the query `{}`",
                c.metric,
                crate::time::format_duration(plan.baseline),
                crate::time::rfc3339(plan.merged_at),
                c.text,
                c.origin,
                plan.queries[&c.metric]
            )));
        }
    }
    emit(&Event::Start {
        merge: plan.merge_commit.clone(),
        merged_at: crate::time::rfc3339(plan.merged_at),
        task_type: request.task_type.clone(),
        service: request.service.clone(),
        prometheus: prom.url().to_string(),
        window_s: plan.window.as_secs_f64(),
        interval_s: plan.interval.as_secs_f64(),
        baselines: baselines.clone(),
        conditions: plan
            .conditions
            .iter()
            .map(|c| format!("{} ({})", c.text, c.origin))
            .collect(),
        off: plan.off.clone(),
    });
    let mut consecutive = vec![0u32; plan.conditions.len()];
    let mut empty_since: BTreeMap<String, Instant> = BTreeMap::new();
    let mut unreachable_since: Option<Instant> = None;
    let deadline = *clock + plan.window;
    loop {
        let check_at = Instant::now();
        let now = crate::time::now_unix_f64();
        let mut values = BTreeMap::new();
        let mut failure = None;
        for (metric, q) in &plan.queries {
            match prom.instant(q, now) {
                Ok(v) => {
                    values.insert(metric.clone(), v);
                }
                Err(QueryError::Rejected(m)) => {
                    return Err(Error::invalid(format!("metric {metric}: query `{q}`: {m}")));
                }
                Err(QueryError::Unreachable(m)) => {
                    failure = Some(m);
                    break;
                }
            }
        }
        if let Some(m) = failure {
            let since = *unreachable_since.get_or_insert(check_at);
            unreachable(
                plan,
                clock,
                since,
                &m,
                ": the merge was not watched to the end of its window",
                emit,
            )?;
        } else {
            unreachable_since = None;
            summary.checks += 1;
            let since_merge = Duration::from_secs_f64((now - plan.merged_at as f64).max(0.0));
            let mut judgements = Vec::new();
            let mut breached = None;
            for (i, c) in plan.conditions.iter().enumerate() {
                let Some(value) = values[&c.metric] else {
                    consecutive[i] = 0;
                    continue;
                };
                if !c.active(since_merge) {
                    consecutive[i] = 0;
                    continue;
                }
                let Some(j) = c.judge(value, baselines[&c.metric]) else {
                    continue;
                };
                consecutive[i] = if j.breach { consecutive[i] + 1 } else { 0 };
                if j.breach && consecutive[i] >= plan.breach_after && breached.is_none() {
                    breached = Some((j.clone(), consecutive[i], c));
                }
                judgements.push(j);
            }
            emit(&Event::Check {
                n: summary.checks,
                elapsed_s: clock.elapsed().as_secs_f64(),
                duration_ms: check_at.elapsed().as_secs_f64() * 1000.0,
                values: values.clone(),
                healthy: judgements.iter().all(|j| !j.breach),
                judgements,
            });
            if let Some((judgement, n, c)) = breached {
                emit(&Event::Breach {
                    judgement: judgement.clone(),
                    consecutive: n,
                });
                return roll_back(request, plan, c, judgement, summary, emit);
            }
            for (metric, v) in &values {
                if v.is_some() {
                    empty_since.remove(metric);
                    continue;
                }
                let since = *empty_since.entry(metric.clone()).or_insert(check_at);
                let for_s = since.elapsed();
                emit(&Event::NoData {
                    elapsed_s: clock.elapsed().as_secs_f64(),
                    metric: metric.clone(),
                    for_s: for_s.as_secs_f64(),
                    grace_s: plan.grace.as_secs_f64(),
                });
                if for_s >= plan.grace {
                    return Err(Error::Unavailable(format!(
                        "metric {metric} has had no data for {:.0}s, longer than the grace period ({}): is the service down? query `{}`",
                        for_s.as_secs_f64(),
                        crate::time::format_duration(plan.grace),
                        plan.queries[metric]
                    )));
                }
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        let next = (check_at + plan.interval).min(deadline);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    summary.outcome = Outcome::Healthy;
    summary.reason = format!(
        "healthy for the whole window ({}, {} checks)",
        crate::time::format_duration(plan.window),
        summary.checks
    );
    Ok(())
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn roll_back(
    request: &WatchRequest,
    plan: &Plan,
    condition: &Condition,
    judgement: Judgement,
    summary: &mut Summary,
    emit: &mut dyn FnMut(&Event),
) -> Result<()> {
    let why = revert::Why {
        condition: condition.text.clone(),
        origin: condition.origin.clone(),
        comparison: condition.describe(),
        judgement: judgement.clone(),
        query: plan.queries[&condition.metric].clone(),
        window: crate::time::format_duration(plan.window),
        merged_at: crate::time::rfc3339(plan.merged_at),
        service: request.service.clone(),
        task_type: request.task_type.clone(),
    };
    summary.breach = Some(judgement);
    let reverted = revert::revert(request, &plan.merge_commit, &why)?;
    summary.outcome = Outcome::RolledBack;
    summary.reason = format!(
        "{} ({}): {} = {} against {}; reverted on {}",
        condition.text,
        condition.origin,
        condition.metric,
        condition::number(why.judgement.value),
        condition::number(why.judgement.threshold),
        reverted.branch
    );
    let mut reverted = reverted;
    if let Some(remote) = &request.config.revert.remote {
        match revert::push(&request.repo, remote, &reverted.branch) {
            Ok(()) => reverted.pushed_to = Some(remote.clone()),
            Err(e) => summary.warnings.push(format!("push: {e}")),
        }
    }
    if let Some(gh) = &request.config.github {
        if reverted.pushed_to.is_none() && request.config.revert.remote.is_some() {
            summary
                .warnings
                .push("pull request: not opened, the branch was not pushed".into());
        } else {
            let title = format!(
                "Revert {} ({}): {}",
                short(&plan.merge_commit),
                request.task_type,
                condition.text
            );
            match notify::open_pull_request(gh, &title, &reverted.branch, &reverted.markdown) {
                Ok(url) => reverted.pull_request = Some(url),
                Err(e) => summary.warnings.push(format!("pull request: {e}")),
            }
        }
    }
    let mut text = format!(
        "codectx monitor reverted merge {} ({}) of {}: {}",
        short(&plan.merge_commit),
        request.task_type,
        request.service,
        summary.reason
    );
    if let Some(url) = &reverted.pull_request {
        text.push_str(&format!(" - {url}"));
    }
    if let Err(e) = notify::slack(request.config.slack.as_ref(), &text) {
        summary.warnings.push(e.to_string());
    }
    for w in &summary.warnings {
        emit(&Event::Warning { message: w.clone() });
    }
    emit(&Event::Revert {
        revert: reverted.clone(),
    });
    summary.revert = Some(reverted);
    Ok(())
}
