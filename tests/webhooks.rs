//! Push webhooks end to end: a real HTTP server on loopback, signed GitHub and GitLab push
//! events, a real clone fetched from its origin and reindexed.

use crate::support::{engine, git, write};
use codectx::retrieve::SearchRequest;
use codectx::server::webhook::{self, WebhookConfig, github_signature};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const SECRET: &str = "gh-secret-for-tests";
const TOKEN: &str = "gl-token-for-tests";

struct Sent {
    status: u16,
    body: String,
}

fn post(url: &str, headers: &[(&str, &str)], body: &str) -> Sent {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut request = agent.post(url).header("Content-Type", "application/json");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut response = request.send(body).unwrap();
    Sent {
        status: response.status().as_u16(),
        body: response.body_mut().read_to_string().unwrap(),
    }
}

/// Posts a push event to the GitHub endpoint; `signature` is sent when not empty.
fn post_github(url: &str, delivery: &str, signature: &str, body: &str) -> Sent {
    let mut headers = vec![("X-GitHub-Event", "push"), ("X-GitHub-Delivery", delivery)];
    if !signature.is_empty() {
        headers.push(("X-Hub-Signature-256", signature));
    }
    post(url, &headers, body)
}

fn github_push(repo: &str, after: &str) -> String {
    serde_json::json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000001",
        "after": after,
        "repository": { "full_name": repo },
    })
    .to_string()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting until {what}");
}

fn indexed_commit(engine: &codectx::Engine, clone: &Path) -> Option<String> {
    engine
        .snapshot_of(clone, Some("origin/main"))
        .ok()?
        .ref_state()?
        .commit
        .clone()
}

#[test]
fn signed_pushes_reindex_the_clone_and_bad_or_replayed_ones_change_nothing() {
    let upstream = tempfile::tempdir().unwrap();
    write(
        upstream.path(),
        "svc.py",
        "def first_handler():\n    return 1\n",
    );
    git(upstream.path(), &["init", "-q"]);
    git(upstream.path(), &["add", "-A"]);
    git(upstream.path(), &["commit", "-q", "-m", "one"]);
    let holder = tempfile::tempdir().unwrap();
    let clone = holder.path().join("clone");
    git(
        holder.path(),
        &["clone", "-q", upstream.path().to_str().unwrap(), "clone"],
    );
    let (engine, _data) = engine();
    let engine = Arc::new(engine);
    let config = WebhookConfig {
        github_secret: Some(SECRET.into()),
        gitlab_token: Some(TOKEN.into()),
        clones: [("acme/app".to_string(), clone.clone())].into(),
    };
    let running =
        webhook::spawn(Arc::clone(&engine), config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let base = format!("http://{}", running.addr);
    let stats = Arc::clone(&running.stats);

    // A push lands upstream; GitHub tells us.
    write(
        upstream.path(),
        "svc.py",
        "def pushed_handler():\n    return 2\n",
    );
    git(upstream.path(), &["commit", "-q", "-am", "two"]);
    let after = git(upstream.path(), &["rev-parse", "HEAD"]);
    let body = github_push("acme/app", &after);
    let signature = github_signature(SECRET, body.as_bytes());
    let github = format!("{base}/webhooks/github");
    let sent = post_github(&github, "delivery-1", &signature, &body);
    assert_eq!(sent.status, 202, "{}", sent.body);
    assert!(sent.body.contains("queued"), "{}", sent.body);
    wait_until("the clone is reindexed at the pushed commit", || {
        indexed_commit(&engine, &clone).as_deref() == Some(after.as_str())
    });
    let mut req = SearchRequest::new("pushed_handler");
    req.ref_name = Some("origin/main".into());
    let hits = engine.search(&clone, &req).unwrap().hits;
    assert!(hits[0].chunk.content.contains("pushed_handler"));
    assert_eq!(stats.reindexed.load(Ordering::Relaxed), 1);

    // The same delivery again (a replay): acknowledged, nothing queued.
    let sent = post_github(&github, "delivery-1", &signature, &body);
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(sent.body.contains("duplicate"), "{}", sent.body);
    assert_eq!(stats.duplicates.load(Ordering::Relaxed), 1);

    // A wrong signature, a signature over another body, no signature: 401, nothing queued,
    // and the delivery id is not burnt (a later genuine delivery with it still counts).
    write(
        upstream.path(),
        "svc.py",
        "def third_handler():\n    return 3\n",
    );
    git(upstream.path(), &["commit", "-q", "-am", "three"]);
    let third = git(upstream.path(), &["rev-parse", "HEAD"]);
    let body3 = github_push("acme/app", &third);
    let forged = [
        github_signature("not-the-secret", body3.as_bytes()),
        github_signature(SECRET, body.as_bytes()),
        String::new(),
    ];
    for sig in &forged {
        let sent = post_github(&github, "delivery-3", sig, &body3);
        assert_eq!(sent.status, 401, "{}", sent.body);
    }
    assert_eq!(stats.rejected.load(Ordering::Relaxed), 3);
    assert_eq!(stats.queued.load(Ordering::Relaxed), 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        indexed_commit(&engine, &clone).as_deref(),
        Some(after.as_str())
    );

    // GitLab: a wrong token is refused, the right one reindexes.
    let gitlab = format!("{base}/webhooks/gitlab");
    let gl_body = serde_json::json!({
        "object_kind": "push",
        "ref": "refs/heads/main",
        "after": third,
        "project": { "path_with_namespace": "acme/app" },
    })
    .to_string();
    let sent = post(
        &gitlab,
        &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "wrong")],
        &gl_body,
    );
    assert_eq!(sent.status, 401, "{}", sent.body);
    let sent = post(
        &gitlab,
        &[
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Gitlab-Token", TOKEN),
            ("X-Gitlab-Event-UUID", "gl-1"),
        ],
        &gl_body,
    );
    assert_eq!(sent.status, 202, "{}", sent.body);
    wait_until("the GitLab push is reindexed", || {
        indexed_commit(&engine, &clone).as_deref() == Some(third.as_str())
    });

    // A repository nobody configured: 404 naming it.
    let other = github_push("someone/else", &third);
    let sent = post_github(
        &github,
        "delivery-9",
        &github_signature(SECRET, other.as_bytes()),
        &other,
    );
    assert_eq!(sent.status, 404, "{}", sent.body);
    assert!(sent.body.contains("someone/else"), "{}", sent.body);
    running.stop();
}

#[test]
fn the_endpoint_refuses_to_start_without_a_secret() {
    let (engine, _data) = engine();
    let dir = tempfile::tempdir().unwrap();
    let config = WebhookConfig {
        github_secret: None,
        gitlab_token: Some(String::new()),
        clones: [("a/b".to_string(), dir.path().to_path_buf())].into(),
    };
    let err = webhook::spawn(Arc::new(engine), config, "127.0.0.1:0".parse().unwrap())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("secret"), "{err}");
}
