//! The push-webhook endpoint: GitHub (`X-Hub-Signature-256`, HMAC-SHA256 over the raw body,
//! checked in constant time) and GitLab (`X-Gitlab-Token`) push events, deduplicated by
//! delivery id, answered at once and turned into reindex jobs on local clones. The jobs run
//! on one worker thread, off the async runtime; a burst for one ref becomes one job.
//!
//! A request that is not signed right gets 401 and changes nothing: the delivery id is only
//! remembered, and the job only queued, after the signature checks out.

use super::constant_time_eq;
use crate::engine::{Engine, IndexOptions, NoProgress};
use crate::error::{Error, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// GitHub caps payloads at 25 MB.
const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// Delivery ids remembered for deduplication (oldest forgotten first).
const DELIVERIES_REMEMBERED: usize = 10_000;

/// What the endpoint accepts and where pushed repositories live locally.
#[derive(Debug, Clone, Default)]
pub struct WebhookConfig {
    /// The secret of GitHub webhooks; `None` refuses GitHub events.
    pub github_secret: Option<String>,
    /// The secret token of GitLab webhooks; `None` refuses GitLab events.
    pub gitlab_token: Option<String>,
    /// The forge's repository name (`owner/name`) -> a local clone (bare or not).
    pub clones: BTreeMap<String, PathBuf>,
}

impl WebhookConfig {
    pub fn validate(&self) -> Result<()> {
        if self.github_secret.as_deref().is_none_or(str::is_empty)
            && self.gitlab_token.as_deref().is_none_or(str::is_empty)
        {
            return Err(Error::invalid(
                "refusing to serve webhooks without a secret: set CODECTX_GITHUB_WEBHOOK_SECRET \
                 or CODECTX_GITLAB_WEBHOOK_TOKEN",
            ));
        }
        if self.clones.is_empty() {
            return Err(Error::invalid(
                "no clones configured: pass --clone owner/name=/path/to/clone",
            ));
        }
        for (name, path) in &self.clones {
            if !path.is_dir() {
                return Err(Error::NotFound(format!(
                    "--clone {name}={}: no such directory",
                    path.display()
                )));
            }
        }
        Ok(())
    }
}

/// Counters a caller (a test, the status line) can read.
#[derive(Debug, Default)]
pub struct WebhookStats {
    pub queued: AtomicU64,
    pub rejected: AtomicU64,
    pub duplicates: AtomicU64,
    pub ignored: AtomicU64,
    pub reindexed: AtomicU64,
    pub failed: AtomicU64,
}

/// A reindex the worker owes: which clone, which ref.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Job {
    clone: PathBuf,
    /// `refs/heads/<branch>` as pushed.
    pushed_ref: String,
}

struct Shared {
    config: WebhookConfig,
    engine: Arc<Engine>,
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
    /// Jobs waiting, newest request wins (a burst for one ref is one job).
    pending: Mutex<BTreeMap<Job, String>>,
    wake: Condvar,
    stats: Arc<WebhookStats>,
}

/// A running endpoint: its address, its counters, and a way to stop it.
pub struct RunningWebhooks {
    pub addr: SocketAddr,
    pub stats: Arc<WebhookStats>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<std::thread::JoinHandle<()>>,
}

impl RunningWebhooks {
    /// Stops accepting requests and waits for the server thread (queued jobs are dropped).
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.server.take() {
            let _ = handle.join();
        }
    }

    /// Blocks until the server stops (the CLI: until the process is interrupted).
    pub fn wait(mut self) {
        if let Some(handle) = self.server.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for RunningWebhooks {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Binds `listen` and serves the endpoint on its own thread (with its own small runtime);
/// the reindex worker runs on another.
pub fn spawn(
    engine: Arc<Engine>,
    config: WebhookConfig,
    listen: SocketAddr,
) -> Result<RunningWebhooks> {
    config.validate()?;
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| Error::Unavailable(format!("cannot listen on {listen}: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::Unavailable(format!("{listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Unavailable(format!("{listen}: {e}")))?;
    let stats = Arc::new(WebhookStats::default());
    let shared = Arc::new(Shared {
        config,
        engine,
        seen: Mutex::new((HashSet::new(), VecDeque::new())),
        pending: Mutex::new(BTreeMap::new()),
        wake: Condvar::new(),
        stats: Arc::clone(&stats),
    });
    {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("codectx-webhook-worker".into())
            .spawn(move || worker(&shared))
            .map_err(|e| Error::Internal(format!("cannot start the webhook worker: {e}")))?;
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = Router::new()
        .route("/webhooks/github", post(github))
        .route("/webhooks/gitlab", post(gitlab))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the webhook runtime: {e}")))?;
    let server = std::thread::Builder::new()
        .name("codectx-webhooks".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("webhooks: {e}");
                        return;
                    }
                };
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
                if let Err(e) = served {
                    tracing::error!("webhooks: {e}");
                }
            });
        })
        .map_err(|e| Error::Internal(format!("cannot start the webhook server: {e}")))?;
    Ok(RunningWebhooks {
        addr,
        stats,
        shutdown: Some(tx),
        server: Some(server),
    })
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks GitHub's `sha256=<hex>` signature of `body` (the MAC's own constant-time check).
pub fn github_signature_ok(secret: &str, signature: Option<&str>, body: &[u8]) -> bool {
    let Some(hex_sig) = signature.and_then(|s| s.strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The signature GitHub would send for `body` (for tests and `codectx` clients).
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Shared {
    fn reject(&self, status: StatusCode, message: String) -> Response {
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        reply(status, json!({ "error": message }))
    }

    fn ignore(&self, reason: String) -> Response {
        self.stats.ignored.fetch_add(1, Ordering::Relaxed);
        reply(
            StatusCode::ACCEPTED,
            json!({ "status": "ignored", "reason": reason }),
        )
    }

    /// Remembers a delivery id; `false` when it was seen before (a replay or a retry).
    fn first_delivery(&self, id: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *seen;
        if !set.insert(id.to_string()) {
            return false;
        }
        order.push_back(id.to_string());
        if order.len() > DELIVERIES_REMEMBERED
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        true
    }

    /// Reads an authenticated push body (the repository's name at `repo_path`, `ref`,
    /// `after`) and accepts it.
    fn accept_body(&self, delivery: Option<&str>, body: &[u8], repo_path: &[&str]) -> Response {
        let payload: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return self.reject(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not JSON: {e}"),
                );
            }
        };
        let (Some(repo), Some(pushed_ref), Some(after)) = (
            str_at(&payload, repo_path),
            str_at(&payload, &["ref"]),
            str_at(&payload, &["after"]),
        ) else {
            return self.reject(
                StatusCode::BAD_REQUEST,
                format!("a push event needs {}, ref and after", repo_path.join(".")),
            );
        };
        self.accept_push(delivery, repo, pushed_ref, after)
    }

    /// The part both forges share once the request is authenticated: dedupe, find the
    /// clone, queue the job, answer 202.
    fn accept_push(
        &self,
        delivery: Option<&str>,
        repo: &str,
        pushed_ref: &str,
        after: &str,
    ) -> Response {
        if let Some(id) = delivery
            && !self.first_delivery(id)
        {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return reply(
                StatusCode::OK,
                json!({ "status": "duplicate", "delivery": id }),
            );
        }
        if !pushed_ref.starts_with("refs/heads/") {
            return self.ignore(format!("{pushed_ref} is not a branch"));
        }
        let Some(clone) = self.config.clones.get(repo) else {
            return self.reject(
                StatusCode::NOT_FOUND,
                format!("repository {repo:?} has no local clone configured (--clone)"),
            );
        };
        let job = Job {
            clone: clone.clone(),
            pushed_ref: pushed_ref.to_string(),
        };
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job, after.to_string());
        self.wake.notify_one();
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        reply(
            StatusCode::ACCEPTED,
            json!({ "status": "queued", "repository": repo, "ref": pushed_ref, "after": after }),
        )
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_str()
}

async fn github(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(secret) = s.config.github_secret.as_deref().filter(|x| !x.is_empty()) else {
        return s.reject(
            StatusCode::NOT_FOUND,
            "GitHub webhooks are not configured".into(),
        );
    };
    if !github_signature_ok(secret, header(&headers, "x-hub-signature-256"), &body) {
        return s.reject(
            StatusCode::UNAUTHORIZED,
            "X-Hub-Signature-256 is missing or does not match the body".into(),
        );
    }
    let event = header(&headers, "x-github-event").unwrap_or("");
    if event == "ping" {
        return reply(StatusCode::OK, json!({ "status": "pong" }));
    }
    if event != "push" {
        return s.ignore(format!("event {event:?} is not a push"));
    }
    s.accept_body(
        header(&headers, "x-github-delivery"),
        &body,
        &["repository", "full_name"],
    )
}

async fn gitlab(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(token) = s.config.gitlab_token.as_deref().filter(|x| !x.is_empty()) else {
        return s.reject(
            StatusCode::NOT_FOUND,
            "GitLab webhooks are not configured".into(),
        );
    };
    let given = header(&headers, "x-gitlab-token").unwrap_or("");
    if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return s.reject(
            StatusCode::UNAUTHORIZED,
            "X-Gitlab-Token is missing or wrong".into(),
        );
    }
    let event = header(&headers, "x-gitlab-event").unwrap_or("");
    if event != "Push Hook" {
        return s.ignore(format!("event {event:?} is not a push"));
    }
    let delivery =
        header(&headers, "x-gitlab-event-uuid").or_else(|| header(&headers, "idempotency-key"));
    s.accept_body(delivery, &body, &["project", "path_with_namespace"])
}

/// Runs queued jobs one at a time, forever: fetch the pushed ref into the clone, reindex it.
fn worker(shared: &Shared) {
    loop {
        let jobs: Vec<(Job, String)> = {
            let mut pending = shared.pending.lock().unwrap_or_else(|p| p.into_inner());
            while pending.is_empty() {
                pending = shared.wake.wait(pending).unwrap_or_else(|p| p.into_inner());
            }
            std::mem::take(&mut *pending).into_iter().collect()
        };
        for (job, after) in jobs {
            match run_job(&shared.engine, &job, &after) {
                Ok(ref_name) => {
                    tracing::info!(
                        "webhook: {} {ref_name} reindexed (pushed {after})",
                        job.clone.display()
                    );
                    shared.stats.reindexed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!("webhook: {} {}: {e}", job.clone.display(), job.pushed_ref);
                    shared.stats.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Fetches the pushed branch (into `refs/heads` of a bare clone, `refs/remotes/origin` of a
/// work tree, whose checked-out branch git will not overwrite) and reindexes that ref; a
/// deleted branch (`after` all zeros) is forgotten instead.
fn run_job(engine: &Engine, job: &Job, after: &str) -> Result<String> {
    let branch = job.pushed_ref.trim_start_matches("refs/heads/");
    let local = if crate::source::git::is_bare(&job.clone) {
        job.pushed_ref.clone()
    } else {
        format!("refs/remotes/origin/{branch}")
    };
    if after.bytes().all(|b| b == b'0') {
        return match engine.forget_ref(&job.clone, &local) {
            Ok(_) => Ok(local),
            // Never indexed: nothing to forget.
            Err(e) if e.kind() == crate::error::ErrorKind::NotFound => Ok(local),
            Err(e) => Err(e),
        };
    }
    fetch(&job.clone, &format!("+{}:{local}", job.pushed_ref))?;
    let options = IndexOptions {
        ref_name: Some(local.clone()),
        embed_before_commit: crate::ingest::EMBED_BEFORE_COMMIT,
        ..Default::default()
    };
    engine.index_with(&job.clone, &options, &NoProgress)?;
    Ok(local)
}

fn fetch(clone: &Path, refspec: &str) -> Result<()> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(clone)
        .args(["fetch", "--quiet", "--no-tags", "origin", refspec])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::Unavailable(format!("cannot run git fetch: {e}")))?;
    if !out.status.success() {
        return Err(Error::Unavailable(format!(
            "git fetch origin {refspec} in {}: {}",
            clone.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked_exactly() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = github_signature("s3cret", body);
        assert!(github_signature_ok("s3cret", Some(&good), body));
        assert!(!github_signature_ok("other", Some(&good), body));
        assert!(!github_signature_ok("s3cret", Some(&good), b"{}"));
        assert!(!github_signature_ok("s3cret", None, body));
        assert!(!github_signature_ok("s3cret", Some("sha256=zz"), body));
        assert!(!github_signature_ok("s3cret", Some(&good[7..]), body));
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"token", b"toke"));
        assert!(!constant_time_eq(b"", b"token"));
    }
}
