//! The post-merge monitor against a real Prometheus (Debian's `prometheus`, started here on
//! a loopback port with a temp data dir and a one-second scrape) scraping a small service
//! this test drives; the forge and Slack are loopback servers that check what they get.

use crate::support::{codectx_command, git, write};
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the service behaves from now on.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Healthy,
    Errors,
    Slow,
}

/// Counters advanced by elapsed time at each scrape, so the rates are exact whatever the
/// load on the machine.
struct Counters {
    mode: Mode,
    last: Instant,
    ok: f64,
    errors: f64,
    /// Cumulative counts of the latency histogram, by bucket.
    buckets: Vec<f64>,
    sum: f64,
    cpu: f64,
}

const BUCKETS: [f64; 8] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
const REQUESTS_PER_S: f64 = 200.0;

impl Counters {
    fn advance(&mut self) {
        let dt = self.last.elapsed().as_secs_f64();
        self.last = Instant::now();
        let n = REQUESTS_PER_S * dt;
        let (error_share, latency) = match self.mode {
            Mode::Healthy => (0.0, 0.02),
            Mode::Errors => (0.3, 0.02),
            Mode::Slow => (0.0, 0.8),
        };
        self.errors += n * error_share;
        self.ok += n * (1.0 - error_share);
        for (i, le) in BUCKETS.iter().enumerate() {
            if latency <= *le {
                self.buckets[i] += n;
            }
        }
        self.sum += n * latency;
        self.cpu += 0.2 * dt;
    }

    fn exposition(&mut self) -> String {
        self.advance();
        let mut s = String::new();
        s.push_str("# TYPE http_requests_total counter\n");
        s.push_str(&format!(
            "http_requests_total{{code=\"200\"}} {}\n",
            self.ok
        ));
        s.push_str(&format!(
            "http_requests_total{{code=\"500\"}} {}\n",
            self.errors
        ));
        s.push_str("# TYPE http_request_duration_seconds histogram\n");
        for (le, c) in BUCKETS.iter().zip(&self.buckets) {
            s.push_str(&format!(
                "http_request_duration_seconds_bucket{{le=\"{le}\"}} {c}\n"
            ));
        }
        let total = self.ok + self.errors;
        s.push_str(&format!(
            "http_request_duration_seconds_bucket{{le=\"+Inf\"}} {total}\n"
        ));
        s.push_str(&format!("http_request_duration_seconds_sum {}\n", self.sum));
        s.push_str(&format!("http_request_duration_seconds_count {total}\n"));
        s.push_str("# TYPE process_resident_memory_bytes gauge\n");
        s.push_str("process_resident_memory_bytes 52428800\n");
        s.push_str("# TYPE process_cpu_seconds_total counter\n");
        s.push_str(&format!("process_cpu_seconds_total {}\n", self.cpu));
        s
    }
}

struct Service {
    addr: String,
    counters: Arc<Mutex<Counters>>,
    _runtime: tokio::runtime::Runtime,
}

impl Service {
    fn start() -> Service {
        let counters = Arc::new(Mutex::new(Counters {
            mode: Mode::Healthy,
            last: Instant::now(),
            ok: 0.0,
            errors: 0.0,
            buckets: vec![0.0; BUCKETS.len()],
            sum: 0.0,
            cpu: 0.0,
        }));
        let runtime = runtime();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let app = axum::Router::new()
            .route("/metrics", get(metrics))
            .with_state(Arc::clone(&counters));
        runtime.spawn(async move { axum::serve(listener, app).await });
        Service {
            addr,
            counters,
            _runtime: runtime,
        }
    }

    fn set(&self, mode: Mode) {
        let mut c = self.counters.lock().unwrap();
        c.advance();
        c.mode = mode;
    }
}

async fn metrics(State(c): State<Arc<Mutex<Counters>>>) -> impl IntoResponse {
    let body = c.lock().unwrap().exposition();
    ([("content-type", "text/plain; version=0.0.4")], body)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// A real Prometheus scraping one target every second; killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_binary() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("CODECTX_PROMETHEUS_BIN").map(PathBuf::from),
        Some(PathBuf::from("/usr/bin/prometheus")),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file())
}

/// Starts Prometheus on `target`, or says why not and returns `None` (the test skips).
fn start_prometheus(target: &str) -> Option<Prometheus> {
    let Some(bin) = prometheus_binary() else {
        eprintln!(
            "SKIPPED: no Prometheus (Debian's package `prometheus`, installed by scripts/setup as root, or set CODECTX_PROMETHEUS_BIN)"
        );
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: svc\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let prom = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    // Ready, and three scrapes in: the rates have data before the merge.
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "Prometheus at {} never had data",
            prom.url
        );
        let answer = agent
            .get(format!("{}/api/v1/query", prom.url))
            .query("query", "count_over_time(up{job=\"svc\"}[1m])")
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_json::<Value>().ok());
        let scrapes = answer
            .as_ref()
            .and_then(|v| v["data"]["result"][0]["value"][1].as_str())
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
        if scrapes >= 4.0 {
            return Some(prom);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A repository whose `main` ends in a merge commit of branch `feature`, with a bare
/// `origin` to push to.
fn merged_repo() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("svc");
    std::fs::create_dir_all(&root).unwrap();
    git(&root, &["init", "-q"]);
    write(&root, "app.py", "def handler():\n    return 200\n");
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-q", "-m", "service"]);
    git(&root, &["checkout", "-q", "-b", "feature"]);
    write(&root, "app.py", "def handler():\n    return compute()\n");
    git(
        &root,
        &["commit", "-q", "-am", "Handle requests with compute()"],
    );
    git(&root, &["checkout", "-q", "main"]);
    git(
        &root,
        &[
            "merge",
            "-q",
            "--no-ff",
            "-m",
            "Merge pull request #7 from feature\n\nHandle requests with compute().",
            "feature",
        ],
    );
    let bare = dir.path().join("origin.git");
    git(
        dir.path(),
        &["init", "-q", "--bare", bare.to_str().unwrap()],
    );
    git(&root, &["remote", "add", "origin", bare.to_str().unwrap()]);
    let merge = git(&root, &["rev-parse", "HEAD"]);
    (dir, merge)
}

fn monitor_config(dir: &Path, prometheus: &str, window: &str, extra: &str) -> PathBuf {
    let path = dir.join("monitor.toml");
    std::fs::write(
        &path,
        format!(
            "[prometheus]\nurl = \"{prometheus}\"\ntimeout = \"2s\"\ngrace = \"4s\"\n\n[watch]\nwindow = \"{window}\"\ninterval = \"1s\"\nrate = \"3s\"\nbreach_after = 2\n\n{extra}"
        ),
    )
    .unwrap();
    path
}

fn watch(data: &Path, root: &Path, config: &Path, task_type: &str, merged_at: i64) -> Command {
    let mut cmd = codectx_command(
        data,
        &[
            "monitor",
            "watch",
            "--repo",
            root.to_str().unwrap(),
            "--merge",
            "main",
            "--task-type",
            task_type,
            "--service",
            "svc",
            "--config",
            config.to_str().unwrap(),
            "--merged-at",
            &merged_at.to_string(),
            "--json",
        ],
    );
    cmd.env_remove("GITHUB_TOKEN")
        .env_remove("CODECTX_SLACK_WEBHOOK")
        .env_remove("CODECTX_PROMETHEUS_URL");
    cmd
}

fn events(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn ledger_lines(data: &Path) -> Vec<Value> {
    std::fs::read_to_string(data.join("ledger.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_healthy_merge_is_watched_for_the_whole_window_and_exits_0() {
    let service = Service::start();
    let Some(prom) = start_prometheus(&service.addr) else {
        return;
    };
    let (dir, merge) = merged_repo();
    let root = dir.path().join("svc");
    let data = tempfile::tempdir().unwrap();
    let config = monitor_config(dir.path(), &prom.url, "6s", "");
    let out = watch(data.path(), &root, &config, "documentation", now())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let events = events(&out.stdout);
    let start = &events[0];
    assert_eq!(start["event"], "start");
    assert_eq!(start["merge"], merge.as_str());
    assert_eq!(start["baselines"]["memory"], 52_428_800.0);
    let checks: Vec<&Value> = events.iter().filter(|e| e["event"] == "check").collect();
    assert!(checks.len() >= 5, "{events:?}");
    assert!(checks.iter().all(|c| c["healthy"] == true), "{checks:?}");
    let error_rate = checks.last().unwrap()["values"]["error_rate"].as_f64();
    assert_eq!(error_rate, Some(0.0));
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["outcome"], "healthy");
    assert_eq!(summary["exit_code"], 0);
    let ledger = ledger_lines(data.path());
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0]["kind"], "monitor");
    assert_eq!(ledger[0]["rolled_back"], false);
    assert_eq!(ledger[0]["merge_commit"], merge.as_str());
    assert!(
        git(&root, &["branch", "--list", "codectx/revert/*"]).is_empty(),
        "no revert branch"
    );
}

/// The loopback forge and Slack: every request, with its path, headers and body.
#[derive(Default)]
struct Forge {
    requests: Mutex<Vec<(String, String, Value)>>,
}

async fn pulls(
    State(f): State<Arc<Forge>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> impl IntoResponse {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    f.requests.lock().unwrap().push((
        "pulls".into(),
        auth,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    ));
    (
        axum::http::StatusCode::CREATED,
        [("content-type", "application/json")],
        r#"{"number": 8, "html_url": "https://github.example/acme/svc/pull/8"}"#,
    )
}

async fn slack(State(f): State<Arc<Forge>>, body: String) -> impl IntoResponse {
    f.requests.lock().unwrap().push((
        "slack".into(),
        String::new(),
        serde_json::from_str(&body).unwrap_or(Value::Null),
    ));
    "ok"
}

/// The loopback GitHub API (`/api/repos/acme/svc/pulls`) and Slack webhook
/// (`/{HOOK_PATH}`); they live as long as the returned runtime.
fn start_forge() -> (String, Arc<Forge>, tokio::runtime::Runtime) {
    let forge = Arc::new(Forge::default());
    let rt = runtime();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/api/repos/acme/svc/pulls", post(pulls))
        .route(&format!("/{HOOK_PATH}"), post(slack))
        .with_state(Arc::clone(&forge));
    rt.spawn(async move { axum::serve(listener, app).await });
    (url, forge, rt)
}

const TOKEN: &str = "ghp_MonitorTestToken0123456789abcdefXYZ";
const HOOK_PATH: &str = "services/T0001/B0002/hooksecretZq8Lm2Vb4";

#[test]
fn an_error_spike_after_the_merge_reverts_it_pushes_opens_a_pull_request_and_notifies() {
    let service = Service::start();
    let Some(prom) = start_prometheus(&service.addr) else {
        return;
    };
    let (forge_url, forge, _forge_rt) = start_forge();

    let (dir, merge) = merged_repo();
    let root = dir.path().join("svc");
    let data = tempfile::tempdir().unwrap();
    let config = monitor_config(
        dir.path(),
        &prom.url,
        "30s",
        &format!(
            "[revert]\nremote = \"origin\"\n\n[github]\nrepository = \"acme/svc\"\napi_url = \"{forge_url}/api\"\n\n[slack]\n"
        ),
    );
    let task = dir.path().join("task.md");
    std::fs::write(
        &task,
        "# Use compute() in the handler\n\nThe handler should compute its answer.\n",
    )
    .unwrap();
    let merged_at = now();
    service.set(Mode::Errors);
    let out = watch(data.path(), &root, &config, "bug_fix_isolated", merged_at)
        .arg("--task")
        .arg(&task)
        .env("GITHUB_TOKEN", TOKEN)
        .env("CODECTX_SLACK_WEBHOOK", format!("{forge_url}/{HOOK_PATH}"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let events = events(&out.stdout);
    let breach = events
        .iter()
        .find(|e| e["event"] == "breach")
        .expect("a breach event");
    assert_eq!(breach["judgement"]["metric"], "error_rate");
    assert!(
        breach["judgement"]["value"].as_f64().unwrap() > 0.05,
        "{breach}"
    );
    assert!(breach["consecutive"].as_u64().unwrap() >= 2, "{breach}");
    let summary = events.last().unwrap();
    assert_eq!(summary["outcome"], "rolled_back");
    assert_eq!(summary["exit_code"], 1);

    // The revert branch undoes the merge: its tree is main's before the merge.
    let branch = format!("codectx/revert/{}", &merge[..12]);
    assert_eq!(summary["revert"]["branch"], branch.as_str());
    assert_eq!(
        git(&root, &["rev-parse", &format!("{branch}^{{tree}}")]),
        git(&root, &["rev-parse", &format!("{merge}^1^{{tree}}")])
    );
    assert_eq!(git(&root, &["rev-parse", &format!("{branch}^")]), merge);
    assert_eq!(
        git(&root, &["status", "--porcelain"]),
        "",
        "the checkout is untouched"
    );
    assert_eq!(git(&root, &["rev-parse", "--abbrev-ref", "HEAD"]), "main");
    // Pushed to origin.
    let origin = dir.path().join("origin.git");
    assert_eq!(
        git(&origin, &["rev-parse", &format!("refs/heads/{branch}")]),
        git(&root, &["rev-parse", &branch])
    );
    // revert.md says which metric, baseline, value, threshold, window, task and PR.
    let report_path = summary["revert"]["report"].as_str().unwrap();
    let report = std::fs::read_to_string(report_path).unwrap();
    for needle in [
        "| Metric | `error_rate` |",
        "| Baseline (hour before the merge) | 0 |",
        "| Threshold | 0.05 (> 0.05) |",
        "| Window | 30s after the merge",
        "Use compute() in the handler",
        "Merge pull request #7 from feature",
    ] {
        assert!(report.contains(needle), "{needle:?} not in:\n{report}");
    }
    // The forge got the pull request, Slack the notification.
    let requests = forge.requests.lock().unwrap().clone();
    let pr = requests
        .iter()
        .find(|r| r.0 == "pulls")
        .expect("a pull request");
    assert_eq!(pr.1, format!("Bearer {TOKEN}"));
    assert_eq!(pr.2["head"], branch.as_str());
    assert_eq!(pr.2["base"], "main");
    assert!(
        pr.2["title"].as_str().unwrap().contains("bug_fix_isolated"),
        "{:?}",
        pr.2
    );
    assert_eq!(pr.2["body"].as_str().unwrap(), report);
    assert_eq!(
        summary["revert"]["pull_request"],
        "https://github.example/acme/svc/pull/8"
    );
    let note = requests
        .iter()
        .find(|r| r.0 == "slack")
        .expect("a Slack message");
    let text = note.2["text"].as_str().unwrap();
    assert!(
        text.contains("error_rate") && text.contains(&merge[..12]),
        "{text}"
    );
    // No secret reached a log, a file or the ledger.
    let ledger = std::fs::read_to_string(data.path().join("ledger.jsonl")).unwrap();
    let events_file =
        std::fs::read_to_string(Path::new(report_path).with_file_name("events.jsonl")).unwrap();
    for (what, text) in [
        ("stdout", &stdout),
        ("stderr", &stderr),
        ("revert.md", &report),
        ("ledger", &ledger),
        ("events.jsonl", &events_file),
    ] {
        assert!(!text.contains(TOKEN), "the token is in {what}");
        assert!(!text.contains(HOOK_PATH), "the webhook is in {what}");
    }
    let line: Value = serde_json::from_str(ledger.lines().last().unwrap()).unwrap();
    assert_eq!(line["rolled_back"], true);
    assert_eq!(line["task_type"], "bug_fix_isolated");
}

#[test]
fn a_p99_latency_regression_from_a_real_histogram_reverts_the_merge() {
    let service = Service::start();
    let Some(prom) = start_prometheus(&service.addr) else {
        return;
    };
    let (dir, merge) = merged_repo();
    let root = dir.path().join("svc");
    let data = tempfile::tempdir().unwrap();
    let config = monitor_config(dir.path(), &prom.url, "30s", "");
    let merged_at = now();
    service.set(Mode::Slow);
    let out = watch(data.path(), &root, &config, "documentation", merged_at)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let events = events(&out.stdout);
    let start = &events[0];
    let baseline = start["baselines"]["p99_latency"].as_f64().unwrap();
    assert!((0.01..=0.025).contains(&baseline), "p99 before: {baseline}");
    let breach = events.iter().find(|e| e["event"] == "breach").unwrap();
    assert_eq!(breach["judgement"]["metric"], "p99_latency");
    assert_eq!(
        breach["judgement"]["condition"],
        "p99_latency > 1.5x baseline"
    );
    assert!(
        breach["judgement"]["value"].as_f64().unwrap() > 0.5,
        "{breach}"
    );
    let branch = format!("codectx/revert/{}", &merge[..12]);
    assert_eq!(git(&root, &["rev-parse", &format!("{branch}^")]), merge);
}

#[test]
fn prometheus_killed_mid_window_is_an_alert_and_exit_2_after_the_grace_period() {
    let service = Service::start();
    let Some(mut prom) = start_prometheus(&service.addr) else {
        return;
    };
    let (dir, _merge) = merged_repo();
    let root = dir.path().join("svc");
    let data = tempfile::tempdir().unwrap();
    let config = monitor_config(dir.path(), &prom.url, "60s", "");
    let child = watch(data.path(), &root, &config, "documentation", now())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    prom.child.kill().unwrap();
    prom.child.wait().unwrap();
    let killed = Instant::now();
    let out = child.wait_with_output().unwrap();
    let waited = killed.elapsed();
    assert_eq!(
        out.status.code(),
        Some(2),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        waited >= Duration::from_secs(4),
        "exited {waited:?} after the kill: before the grace period"
    );
    assert!(
        waited < Duration::from_secs(30),
        "took {waited:?}: the window, not the grace period"
    );
    let events = events(&out.stdout);
    assert!(
        events.iter().any(|e| e["event"] == "check"),
        "watched before the kill"
    );
    assert!(events.iter().any(|e| e["event"] == "unreachable"));
    let alert = events
        .iter()
        .find(|e| e["event"] == "alert")
        .expect("an alert");
    assert!(
        alert["reason"]
            .as_str()
            .unwrap()
            .contains("longer than the grace period (4s)"),
        "{alert}"
    );
    let summary = events.last().unwrap();
    assert_eq!(summary["outcome"], "error");
    let ledger = ledger_lines(data.path());
    assert_eq!(ledger[0]["status"], "error");
    assert_eq!(ledger[0]["rolled_back"], false);
}

#[test]
fn a_bad_promql_expression_is_a_clear_error_naming_it() {
    let service = Service::start();
    let Some(prom) = start_prometheus(&service.addr) else {
        return;
    };
    let (dir, _merge) = merged_repo();
    let root = dir.path().join("svc");
    let data = tempfile::tempdir().unwrap();
    let config = monitor_config(
        dir.path(),
        &prom.url,
        "10s",
        "[metrics.error_rate]\nquery = \"sum(rate(http_requests_total{code=~'5..'}[$rate])\"\nunit = \"ratio\"\n",
    );
    let started = Instant::now();
    let out = watch(data.path(), &root, &config, "documentation", now())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "failed at the start, not at the end"
    );
    assert!(
        stderr
            .contains("metric error_rate: query `sum(rate(http_requests_total{code=~'5..'}[3s])`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("rejected it (400)") && stderr.contains("parse error"),
        "{stderr}"
    );
}

#[test]
fn a_trigger_no_metric_backs_is_an_error_at_start() {
    let (dir, _merge) = merged_repo();
    let root = dir.path().join("svc");
    let data = tempfile::tempdir().unwrap();
    // Nothing listens there: the error must come before any query.
    let config = monitor_config(dir.path(), "http://127.0.0.1:9", "10s", "");
    let out = watch(data.path(), &root, &config, "test_generation", now())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("rollback condition \"flaky_test_rate > 2%\" names the metric `flaky_test_rate`, which no metric of the monitor's config backs"),
        "{stderr}"
    );
}

#[test]
fn a_structured_tasks_rollback_condition_is_checked_too() {
    let (dir, _merge) = merged_repo();
    let root = dir.path().join("svc");
    let data = tempfile::tempdir().unwrap();
    let config = monitor_config(dir.path(), "http://127.0.0.1:9", "10s", "");
    let task = dir.path().join("task.json");
    std::fs::write(
        &task,
        serde_json::json!({
            "title": "Use compute() in the handler",
            "description": "The handler should compute its answer.",
            "rollback_condition": "checkout_failures > 1% within 30m",
        })
        .to_string(),
    )
    .unwrap();
    let out = watch(data.path(), &root, &config, "documentation", now())
        .arg("--task")
        .arg(&task)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("the task's rollback_condition: rollback condition \"checkout_failures > 1% within 30m\" names the metric `checkout_failures`"),
        "{stderr}"
    );
}

/// A Python repository with a failing test, a scripted model that fixes it, an issue
/// labelled `bug`, and a policy in which an isolated bug fix needs passing tests only and
/// auto-merges or not.
struct FlowSetup {
    repo: tempfile::TempDir,
    data: tempfile::TempDir,
    agent_config: PathBuf,
    policy: PathBuf,
    issue: PathBuf,
    _model: tokio::runtime::Runtime,
}

fn flow_setup(auto_merge: bool) -> FlowSetup {
    use crate::agent::{call, model_server};
    let repo = crate::agent::python_repo();
    let data = tempfile::tempdir().unwrap();
    let (url, _script, model) = model_server(vec![
        call(
            "apply_patch",
            serde_json::json!({"patch": "--- a/calc.py\n+++ b/calc.py\n@@ -4,3 +4,3 @@\n def add(a, b):\n     \"\"\"Adds two numbers.\"\"\"\n-    return a - b\n+    return a + b\n"}),
        ),
        call("finish", serde_json::json!({"summary": "add now adds"})),
    ]);
    let agent_config = crate::agent::config(data.path(), "openai", &url, "python3 -m unittest");
    let policy = data.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!("[task_types.bug_fix_isolated]\nseverity = \"low\"\nauto_merge = {auto_merge}\nrequired_gates = [\"tests_pass\"]\nlabels = [\"bug\"]\n"),
    )
    .unwrap();
    let issue = data.path().join("issue.md");
    std::fs::write(
        &issue,
        "# add returns the wrong result\n\nLabels: bug\n\n`calc.add(2, 3)` gives -1.\n",
    )
    .unwrap();
    FlowSetup {
        repo,
        data,
        agent_config,
        policy,
        issue,
        _model: model,
    }
}

/// `codectx flow` on the setup with `monitor` as its monitor config, plus `extra`.
fn flow(f: &FlowSetup, monitor: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "flow",
        "--issue",
        f.issue.to_str().unwrap(),
        "--repo",
        f.repo.path().to_str().unwrap(),
        "--policy",
        f.policy.to_str().unwrap(),
        "--agent-config",
        f.agent_config.to_str().unwrap(),
        "--monitor-config",
        monitor.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    codectx_command(f.data.path(), &args)
        .env("OPENAI_API_KEY", "sk-test-flow-key-never-logged")
        .env("GITHUB_TOKEN", TOKEN)
        .env_remove("CODECTX_PROMETHEUS_URL")
        .output()
        .unwrap()
}

#[test]
fn the_flow_runs_agent_gate_merge_ledger_and_monitor_in_one_command() {
    let service = Service::start();
    let Some(prom) = start_prometheus(&service.addr) else {
        return;
    };
    let f = flow_setup(true);
    let root = f.repo.path();
    let monitor = monitor_config(f.data.path(), &prom.url, "4s", "");
    let out = flow(&f, &monitor, &["--service", "svc"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.contains("healthy: healthy for the whole window"),
        "{stdout}"
    );
    // main now ends in a merge of the agent's branch, and its tests pass.
    let parents = git(root, &["rev-list", "--parents", "-n", "1", "HEAD"]);
    assert_eq!(
        parents.split_whitespace().count(),
        3,
        "a merge commit: {parents}"
    );
    assert!(
        std::fs::read_to_string(root.join("calc.py"))
            .unwrap()
            .contains("a + b")
    );
    // One ledger line per stage, tied by the run's id.
    let ledger = ledger_lines(f.data.path());
    let kinds: Vec<&str> = ledger.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["agent_run", "gate", "merge", "monitor"],
        "{ledger:?}"
    );
    let run = ledger[0]["task_id"].clone();
    assert!(ledger.iter().all(|l| l["task_id"] == run), "{ledger:?}");
    let merge = git(root, &["rev-parse", "HEAD"]);
    assert_eq!(ledger[2]["merge_commit"], merge.as_str());
    assert_eq!(ledger[2]["auto_merged"], true);
    assert_eq!(ledger[3]["merge_commit"], merge.as_str());
    assert_eq!(ledger[3]["status"], "healthy");
}

#[test]
fn the_flow_sends_a_change_the_policy_will_not_auto_merge_to_review_with_a_pull_request() {
    // The gate passes, but this team reviews every bug fix.
    let f = flow_setup(false);
    let root = f.repo.path();
    let origin = tempfile::tempdir().unwrap();
    git(origin.path(), &["init", "-q", "--bare"]);
    git(
        root,
        &["remote", "add", "origin", origin.path().to_str().unwrap()],
    );
    let (forge_url, forge, _forge_rt) = start_forge();
    let monitor = monitor_config(
        f.data.path(),
        "http://127.0.0.1:9",
        "10s",
        &format!("[github]\nrepository = \"acme/svc\"\napi_url = \"{forge_url}/api\"\n"),
    );
    let head_before = git(root, &["rev-parse", "HEAD"]);
    let out = flow(&f, &monitor, &["--remote", "origin"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("review required"), "{stdout}");
    assert!(!stderr.contains(TOKEN) && !stdout.contains(TOKEN));
    // Nothing merged; the branch went to origin and to review.
    assert_eq!(git(root, &["rev-parse", "HEAD"]), head_before);
    let ledger = ledger_lines(f.data.path());
    let kinds: Vec<&str> = ledger.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["agent_run", "gate"], "{ledger:?}");
    let branch = ledger[0]["branch"].as_str().unwrap();
    assert_eq!(
        git(
            origin.path(),
            &["rev-parse", &format!("refs/heads/{branch}")]
        ),
        git(root, &["rev-parse", branch])
    );
    let requests = forge.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "one pull request");
    assert_eq!(requests[0].1, format!("Bearer {TOKEN}"));
    assert_eq!(requests[0].2["head"], branch);
    assert!(
        requests[0].2["body"].as_str().unwrap().contains("add"),
        "the PR description is the body: {:?}",
        requests[0].2
    );
}
