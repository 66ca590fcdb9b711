//! A client of Prometheus's HTTP query API (`/api/v1/query`, `/api/v1/query_range`): one
//! number per query and time, whatever the query's shape.
//!
//! A query that returns several series is judged by its largest value (for every metric the
//! monitor knows, larger is worse); NaN and infinities (an error rate with no traffic) read
//! as no data.

use serde_json::Value;
use std::time::Duration;

/// Why a query gave no number.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryError {
    /// Prometheus could not be reached or answered 5xx: transient, retried by the watch.
    Unreachable(String),
    /// Prometheus rejected the query (bad PromQL, bad parameters): the config is wrong.
    Rejected(String),
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::Unreachable(m) | QueryError::Rejected(m) => f.write_str(m),
        }
    }
}

pub struct Prometheus {
    base: String,
    agent: ureq::Agent,
}

impl Prometheus {
    pub fn new(url: &str, timeout: Duration) -> Prometheus {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Prometheus {
            base: url.trim_end_matches('/').to_string(),
            agent,
        }
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// The query's value at `at` (Unix seconds); `Ok(None)` when it has no data then.
    pub fn instant(&self, query: &str, at: f64) -> Result<Option<f64>, QueryError> {
        let data = self.get("query", &[("query", query), ("time", &format!("{at:.3}"))])?;
        Ok(largest(values(&data)))
    }

    /// The query's values over `[start, end]` every `step` seconds, the largest series at
    /// each time; empty when it has no data then.
    pub fn range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<f64>, QueryError> {
        let data = self.get(
            "query_range",
            &[
                ("query", query),
                ("start", &format!("{start:.3}")),
                ("end", &format!("{end:.3}")),
                ("step", &format!("{step:.3}")),
            ],
        )?;
        let mut by_time: std::collections::BTreeMap<i64, f64> = Default::default();
        for series in data["result"].as_array().into_iter().flatten() {
            for point in series["values"].as_array().into_iter().flatten() {
                let (Some(t), Some(v)) = (point[0].as_f64(), sample(&point[1])) else {
                    continue;
                };
                let key = (t * 1000.0) as i64;
                let e = by_time.entry(key).or_insert(v);
                *e = e.max(v);
            }
        }
        Ok(by_time.into_values().collect())
    }

    fn get(&self, endpoint: &str, params: &[(&str, &str)]) -> Result<Value, QueryError> {
        let url = format!("{}/api/v1/{endpoint}", self.base);
        let mut request = self.agent.get(&url);
        for (k, v) in params {
            request = request.query(*k, *v);
        }
        let mut response = request
            .call()
            .map_err(|e| QueryError::Unreachable(format!("Prometheus at {}: {e}", self.base)))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| QueryError::Unreachable(format!("Prometheus at {}: {e}", self.base)))?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        let said = body
            .as_ref()
            .and_then(|b| b["error"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| text.chars().take(300).collect());
        if status >= 500 || status == 429 {
            return Err(QueryError::Unreachable(format!(
                "Prometheus at {} answered {status}: {said}",
                self.base
            )));
        }
        match body {
            Some(b) if status == 200 && b["status"] == "success" => Ok(b["data"].clone()),
            Some(_) | None if status == 200 => Err(QueryError::Unreachable(format!(
                "Prometheus at {} answered 200 with no query result: {said}",
                self.base
            ))),
            _ => Err(QueryError::Rejected(format!(
                "Prometheus at {} rejected it ({status}): {said}",
                self.base
            ))),
        }
    }
}

/// The numbers of an instant query's answer (a vector or a scalar).
fn values(data: &Value) -> Vec<f64> {
    match data["resultType"].as_str() {
        Some("scalar") => sample(&data["result"][1]).into_iter().collect(),
        _ => data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| sample(&s["value"][1]))
            .collect(),
    }
}

/// A sample value (Prometheus writes them as strings); NaN and infinities are no data.
fn sample(v: &Value) -> Option<f64> {
    v.as_str()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|x| x.is_finite())
}

fn largest(values: Vec<f64>) -> Option<f64> {
    values.into_iter().reduce(f64::max)
}
