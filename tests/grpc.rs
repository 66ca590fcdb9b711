//! The gRPC service end to end: a real server on a loopback port, a tonic client, every
//! method, the error codes, path traversal attempts, health and reflection.

use crate::support::{engine, fixture_repo, write};
use codectx::server::grpc::{self, pb};
use pb::code_context_client::CodeContextClient;
use std::sync::Arc;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

struct Server {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<codectx::Result<()>>>,
}

async fn start(engine: codectx::Engine) -> Server {
    start_with(engine, grpc::ServeOptions::default()).await
}

async fn start_with(engine: codectx::Engine, options: grpc::ServeOptions) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(grpc::serve(Arc::new(engine), listener, options, async {
        let _ = rx.await;
    }));
    Server {
        addr,
        stop: Some(tx),
        done: Some(done),
    }
}

async fn client(server: &Server) -> CodeContextClient<Channel> {
    CodeContextClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap()
}

fn code<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Code {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(status) => {
            assert!(!status.message().is_empty(), "a status names the reason");
            status.code()
        }
    }
}

fn search(repo: &str, query: &str) -> pb::SearchRequest {
    pb::SearchRequest {
        repository: repo.to_string(),
        query: query.to_string(),
        mode: pb::SearchMode::Lexical as i32,
        ..Default::default()
    }
}

#[test]
fn every_method_over_loopback_with_its_error_codes() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let repo = fixture_repo();
        let root = repo.path().canonicalize().unwrap();
        let root_s = root.to_str().unwrap().to_string();
        let (engine, _data) = engine();
        let mut server = start(engine).await;
        let mut c = client(&server).await;

        // Register: relative and missing paths are refused; a real one is idempotent.
        let relative = pb::RegisterRepositoryRequest {
            path: "some/dir".into(),
            ..Default::default()
        };
        assert_eq!(
            code(c.register_repository(relative).await),
            Code::InvalidArgument
        );
        let missing = pb::RegisterRepositoryRequest {
            path: "/no/such/dir".into(),
            ..Default::default()
        };
        assert_eq!(code(c.register_repository(missing).await), Code::NotFound);
        let reg = pb::RegisterRepositoryRequest {
            path: root_s.clone(),
            ..Default::default()
        };
        let repo_msg = c
            .register_repository(reg.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(repo_msg.root, root_s);
        assert!(repo_msg.refs.is_empty());
        c.register_repository(reg).await.unwrap();
        let listed = c
            .list_repositories(pb::ListRepositoriesRequest {})
            .await
            .unwrap();
        assert_eq!(listed.into_inner().repositories.len(), 1);
        let id = repo_msg.id.clone();

        // Not indexed yet.
        assert_eq!(
            code(c.search(search(&id, "ring")).await),
            Code::FailedPrecondition
        );
        assert_eq!(
            code(
                c.status(pb::StatusRequest {
                    repository: id.clone()
                })
                .await
            ),
            Code::FailedPrecondition
        );

        // Reindex streams progress and ends with the summary.
        let mut stream = c
            .reindex(pb::ReindexRequest {
                repository: id.clone(),
                no_embed: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut messages = Vec::new();
        while let Some(m) = stream.next().await {
            messages.push(m.unwrap());
        }
        assert!(messages.len() >= 2, "{messages:?}");
        assert!(messages.iter().any(|m| m.phase == "indexing"));
        let summary = messages
            .last()
            .unwrap()
            .summary
            .clone()
            .expect("summary last");
        assert_eq!(summary.files_indexed, 15);
        assert_eq!(summary.plan, "full");
        assert_eq!(summary.r#ref, "refs/heads/main");

        let status = c
            .status(pb::StatusRequest {
                repository: root_s.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let r = status.repository.unwrap();
        assert_eq!(r.default_ref, "refs/heads/main");
        assert_eq!(r.refs.len(), 1);
        assert!(!status.stale);

        // Search, by id and by path; filters; errors name the field.
        let found = c
            .search(search(&id, "ring_write"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(found.r#ref, "refs/heads/main");
        assert_eq!(found.commit, summary.commit);
        let hit = &found.hits[0];
        let chunk = hit.chunk.as_ref().unwrap();
        assert_eq!(chunk.path, "sample.c");
        assert!(chunk.start_line >= 1 && chunk.end_line >= chunk.start_line);
        assert_eq!(hit.lexical_rank, 1);
        assert!(!found.files.is_empty());
        let mut by_lang = search(&root_s, "function");
        by_lang.language = "python".into();
        let hits = c.search(by_lang).await.unwrap().into_inner().hits;
        assert!(
            hits.iter()
                .all(|h| h.chunk.as_ref().unwrap().language == "python")
        );
        let status = c.search(search(&id, "  ")).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("query"), "{}", status.message());
        let mut too_many = search(&id, "ring");
        too_many.k = 5000;
        assert_eq!(code(c.search(too_many).await), Code::InvalidArgument);
        let mut bad_lang = search(&id, "ring");
        bad_lang.language = "klingon".into();
        assert_eq!(code(c.search(bad_lang).await), Code::InvalidArgument);
        let mut bad_mode = search(&id, "ring");
        bad_mode.mode = 42;
        assert_eq!(code(c.search(bad_mode).await), Code::InvalidArgument);
        assert_eq!(
            code(c.search(search("nope-123", "ring")).await),
            Code::NotFound
        );
        assert_eq!(
            code(c.search(search("", "ring")).await),
            Code::InvalidArgument
        );
        let mut bad_ref = search(&id, "ring");
        bad_ref.r#ref = "no-such-branch".into();
        assert_eq!(code(c.search(bad_ref).await), Code::NotFound);

        // ReadSpan: lines of the indexed commit; traversal attempts never read anything.
        let span = c
            .read_span(pb::ReadSpanRequest {
                repository: id.clone(),
                path: chunk.path.clone(),
                start_line: chunk.start_line,
                end_line: chunk.end_line,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(span.text.contains("ring_write"), "{}", span.text);
        assert_eq!(span.commit, summary.commit);
        assert_eq!(
            span.end_line - span.start_line,
            chunk.end_line - chunk.start_line
        );
        let read = |path: &str, r#ref: &str| pb::ReadSpanRequest {
            repository: id.clone(),
            r#ref: r#ref.to_string(),
            path: path.to_string(),
            ..Default::default()
        };
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "a/../../x",
            "a\0b",
            "",
            ".env",
            "sub\\..\\x",
        ] {
            assert_eq!(
                code(c.read_span(read(bad, "")).await),
                Code::InvalidArgument,
                "{bad:?}"
            );
        }
        // GetContext: a pack under the budget, items with reasons and the commit.
        let context = |task: &str, budget: u32| pb::GetContextRequest {
            repository: id.clone(),
            task: task.to_string(),
            budget,
            mode: pb::SearchMode::Lexical as i32,
            ..Default::default()
        };
        let pack = c
            .get_context(context(
                "ring_write overwrites the oldest entry in sample.c",
                600,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(
            pack.tokens_used > 0 && pack.tokens_used <= 600,
            "{}",
            pack.tokens_used
        );
        assert_eq!(pack.tokenizer, "cl100k");
        assert_eq!(pack.commit, summary.commit);
        let first = &pack.items[0];
        assert_eq!(first.path, "sample.c");
        assert_eq!(first.commit, summary.commit);
        assert!(!first.reasons.is_empty() && first.tokens > 0);
        assert!(pack.markdown.contains("### sample.c:"), "{}", pack.markdown);
        let status = c.get_context(context(" ", 600)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("task"), "{}", status.message());
        let mut bad_tokenizer = context("ring", 600);
        bad_tokenizer.tokenizer = "nope".into();
        assert_eq!(
            code(c.get_context(bad_tokenizer).await),
            Code::InvalidArgument
        );
        let mut bad_share = context("ring", 600);
        bad_share.convention_share = Some(1.5);
        assert_eq!(code(c.get_context(bad_share).await), Code::InvalidArgument);
        assert_eq!(
            code(c.get_context(context("ring", 3_000_000)).await),
            Code::InvalidArgument
        );

        // Percent-encoding is not decoded: it names a file that does not exist.
        assert_eq!(
            code(c.read_span(read("%2e%2e/etc/passwd", "")).await),
            Code::NotFound
        );
        assert_eq!(
            code(c.read_span(read("no_such_file.rs", "")).await),
            Code::NotFound
        );
        // On disk (the worktree ref), a link that leads outside is refused.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc/hostname", root.join("escape.txt")).unwrap();
            write(&root, "local.txt", "on disk only\n");
            let mut stream = c
                .reindex(pb::ReindexRequest {
                    repository: id.clone(),
                    worktree: true,
                    no_embed: true,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            while let Some(m) = stream.next().await {
                m.unwrap();
            }
            let ok = c.read_span(read("local.txt", "worktree")).await.unwrap();
            assert_eq!(ok.into_inner().text, "on disk only");
            // The link was not indexed (the walk never follows one out), so it is not served.
            let escaped = c
                .read_span(read("escape.txt", "worktree"))
                .await
                .unwrap_err();
            assert_eq!(escaped.code(), Code::NotFound);
            assert!(
                escaped.message().contains("only indexed files"),
                "{}",
                escaped.message()
            );
            // An indexed file swapped for such a link after the index is refused on reading.
            std::fs::remove_file(root.join("local.txt")).unwrap();
            std::os::unix::fs::symlink("/etc/hostname", root.join("local.txt")).unwrap();
            let swapped = c
                .read_span(read("local.txt", "worktree"))
                .await
                .unwrap_err();
            assert_eq!(swapped.code(), Code::InvalidArgument);
            assert!(
                swapped.message().contains("outside"),
                "{}",
                swapped.message()
            );
        }

        // Remove: the index goes, the repository stays.
        c.remove_repository(pb::RemoveRepositoryRequest {
            repository: id.clone(),
        })
        .await
        .unwrap();
        assert_eq!(code(c.search(search(&id, "ring")).await), Code::NotFound);
        assert!(root.join("sample.c").exists());

        server.stop.take().unwrap().send(()).unwrap();
        server.done.take().unwrap().await.unwrap().unwrap();
    });
}

#[test]
fn health_flips_on_shutdown_and_reflection_lists_the_services() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (engine, _data) = engine();
        let mut server = start(engine).await;
        let channel = Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();

        // Reflection (v1) lists the API and health.
        let mut reflection = ServerReflectionClient::new(channel.clone());
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = reflection
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.next().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("unexpected reflection answer {answer:?}");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(
            names.contains(&"codectx.v1.CodeContext".to_string()),
            "{names:?}"
        );
        assert!(
            names.contains(&"grpc.health.v1.Health".to_string()),
            "{names:?}"
        );
        drop(answers);

        // Health: SERVING, then NOT_SERVING as soon as shutdown begins.
        let mut health = HealthClient::new(channel);
        let service = "codectx.v1.CodeContext".to_string();
        let now = health
            .check(HealthCheckRequest {
                service: service.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(now.status, ServingStatus::Serving as i32);
        let mut watch = health
            .watch(HealthCheckRequest { service })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            watch.next().await.unwrap().unwrap().status,
            ServingStatus::Serving as i32
        );
        server.stop.take().unwrap().send(()).unwrap();
        let next = watch.next().await.unwrap().unwrap();
        assert_eq!(next.status, ServingStatus::NotServing as i32);
        drop(watch);
        drop(health);
        server.done.take().unwrap().await.unwrap().unwrap();
    });
}

#[test]
fn a_token_guards_the_api_but_not_health() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (engine, _data) = engine();
        let options = grpc::ServeOptions {
            auth_token: Some("s3cret-token".into()),
            ..Default::default()
        };
        let mut server = start_with(engine, options).await;
        let mut c = client(&server).await;
        let list = || tonic::Request::new(pb::ListRepositoriesRequest {});
        assert_eq!(
            code(c.list_repositories(list()).await),
            Code::Unauthenticated
        );
        let mut wrong = list();
        wrong
            .metadata_mut()
            .insert("authorization", "Bearer not-it".parse().unwrap());
        assert_eq!(
            code(c.list_repositories(wrong).await),
            Code::PermissionDenied
        );
        let mut basic = list();
        basic
            .metadata_mut()
            .insert("authorization", "Basic czNjcmV0".parse().unwrap());
        assert_eq!(
            code(c.list_repositories(basic).await),
            Code::Unauthenticated
        );
        let mut right = list();
        right
            .metadata_mut()
            .insert("authorization", "Bearer s3cret-token".parse().unwrap());
        assert!(c.list_repositories(right).await.is_ok());
        // Probes need no token.
        let channel = Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let health = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        assert!(health.is_ok(), "{health:?}");
        server.stop.take().unwrap().send(()).unwrap();
        server.done.take().unwrap().await.unwrap().unwrap();
    });
}

#[test]
fn over_the_in_flight_limit_calls_are_refused_at_once() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // More files than the progress stream buffers: an unread reindex stream keeps the
        // reindex (and its slot) busy until the client reads or hangs up.
        let dir = tempfile::tempdir().unwrap();
        for i in 0..150 {
            write(
                dir.path(),
                &format!("m{i}.py"),
                format!("def f{i}():\n    return {i}\n"),
            );
        }
        crate::support::git(dir.path(), &["init", "-q"]);
        crate::support::git(dir.path(), &["add", "-A"]);
        crate::support::git(dir.path(), &["commit", "-q", "-m", "many"]);
        let root = dir
            .path()
            .canonicalize()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let (engine, _data) = engine();
        engine.register(std::path::Path::new(&root)).unwrap();
        let options = grpc::ServeOptions {
            max_in_flight: 1,
            ..Default::default()
        };
        let mut server = start_with(engine, options).await;
        let c = client(&server).await;
        let mut first = c.clone();
        let stream = first
            .reindex(pb::ReindexRequest {
                repository: root.clone(),
                no_embed: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut second = c.clone();
        let shed = second.search(search(&root, "f1")).await.unwrap_err();
        assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
        assert!(shed.message().contains("retry"), "{}", shed.message());
        // Reading the stream to its end frees the slot.
        let messages: Vec<_> = stream.collect().await;
        assert!(messages.last().unwrap().as_ref().unwrap().summary.is_some());
        let mut third = c.clone();
        let mut answered = false;
        for _ in 0..50 {
            match third.search(search(&root, "f1")).await {
                Ok(_) => {
                    answered = true;
                    break;
                }
                Err(s) if s.code() == Code::ResourceExhausted => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await
                }
                Err(s) => panic!("{s:?}"),
            }
        }
        assert!(answered, "the slot was never freed");
        server.stop.take().unwrap().send(()).unwrap();
        server.done.take().unwrap().await.unwrap().unwrap();
    });
}

/// grpcurl (installed by scripts/setup) lists and calls the API through reflection v1alpha,
/// the only reflection version it speaks.
#[test]
fn grpcurl_lists_and_calls_every_service_through_reflection() {
    let grpcurl = codectx::config::codectx_home().join("tools/grpcurl");
    assert!(
        grpcurl.is_file(),
        "{} is missing: run ./scripts/setup",
        grpcurl.display()
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let repo = fixture_repo();
    let root = repo
        .path()
        .canonicalize()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let (engine, _data) = engine();
    engine.register(std::path::Path::new(&root)).unwrap();
    let mut server = runtime.block_on(start(engine));
    let addr = server.addr.to_string();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&grpcurl)
            .args(["-plaintext"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "grpcurl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let services = run(&[&addr, "list"]);
    assert!(services.contains("codectx.v1.CodeContext"), "{services}");
    assert!(services.contains("grpc.health.v1.Health"), "{services}");
    let methods = run(&[&addr, "list", "codectx.v1.CodeContext"]);
    for m in [
        "RegisterRepository",
        "ListRepositories",
        "RemoveRepository",
        "Reindex",
        "Status",
        "Search",
        "ReadSpan",
    ] {
        assert!(methods.contains(m), "{m} missing from {methods}");
    }
    let listed = run(&[&addr, "codectx.v1.CodeContext/ListRepositories"]);
    assert!(listed.contains(&root), "{listed}");
    let body = format!(r#"{{"repository": "{root}", "noEmbed": true}}"#);
    let reindexed = run(&["-d", &body, &addr, "codectx.v1.CodeContext/Reindex"]);
    assert!(reindexed.contains("\"summary\""), "{reindexed}");
    let body = format!(
        r#"{{"repository": "{root}", "query": "ring_write", "mode": "SEARCH_MODE_LEXICAL"}}"#
    );
    let found = run(&["-d", &body, &addr, "codectx.v1.CodeContext/Search"]);
    assert!(found.contains("sample.c"), "{found}");
    server.stop.take().unwrap().send(()).unwrap();
    runtime
        .block_on(server.done.take().unwrap())
        .unwrap()
        .unwrap();
}

/// Drains a reindex stream to its end and returns the summary its last message carries.
async fn reindex_summary(
    c: &mut CodeContextClient<Channel>,
    request: pb::ReindexRequest,
) -> pb::ReindexSummary {
    let mut stream = c.reindex(request).await.unwrap().into_inner();
    let mut summary = None;
    while let Some(m) = stream.next().await {
        summary = m.unwrap().summary.or(summary);
    }
    summary.expect("the last message carries the summary")
}

/// A lexical-only reindex, drained.
async fn reindex_all(c: &mut CodeContextClient<Channel>, repository: &str) {
    reindex_summary(
        c,
        pb::ReindexRequest {
            repository: repository.to_string(),
            no_embed: true,
            ..Default::default()
        },
    )
    .await;
}

#[test]
fn searches_during_a_reindex_see_one_commit_never_a_mix() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let files = 120;
        let version = |v: u32| {
            for i in 0..files {
                write(
                    &root,
                    &format!("pkg/m{i:03}.py"),
                    format!("def ledger_entry_{i}(amount):\n    \"\"\"Ledger entry {i}, release v{v}.\"\"\"\n    return amount * {v}\n"),
                );
            }
        };
        version(1);
        crate::support::git(&root, &["init", "-q"]);
        crate::support::git(&root, &["add", "-A"]);
        crate::support::git(&root, &["commit", "-q", "-m", "v1"]);
        let v1 = crate::support::git(&root, &["rev-parse", "HEAD"]);
        let (engine, _data) = engine();
        let mut server = start(engine).await;
        let mut c = client(&server).await;
        let repo = root.to_str().unwrap().to_string();
        reindex_all(&mut c, &repo).await;

        version(2);
        crate::support::git(&root, &["commit", "-q", "-am", "v2"]);
        let v2 = crate::support::git(&root, &["rev-parse", "HEAD"]);
        let mut writer = c.clone();
        let repo_w = repo.clone();
        let reindex = tokio::spawn(async move { reindex_all(&mut writer, &repo_w).await });
        let mut seen = std::collections::BTreeSet::new();
        loop {
            let done = reindex.is_finished();
            let r = c
                .search(pb::SearchRequest {
                    repository: repo.clone(),
                    query: "ledger entry release".into(),
                    k: 50,
                    mode: pb::SearchMode::Lexical as i32,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let want = if r.commit == v1 {
                "return amount * 1"
            } else {
                assert_eq!(r.commit, v2, "an answer names a commit that was indexed");
                "return amount * 2"
            };
            assert_eq!(r.hits.len(), 50);
            for h in &r.hits {
                let chunk = h.chunk.as_ref().unwrap();
                assert!(chunk.content.contains(want), "a hit from another commit than {}: {}", r.commit, chunk.content);
            }
            seen.insert(r.commit.clone());
            if done {
                break;
            }
        }
        reindex.await.unwrap();
        assert!(seen.contains(&v2), "the last answers reflect the new commit");
        server.stop.take().unwrap().send(()).unwrap();
        server.done.take().unwrap().await.unwrap().unwrap();
    });
}

#[test]
fn prometheus_metrics_count_calls_by_method_and_code() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let repo = fixture_repo();
        let root = repo.path().canonicalize().unwrap();
        let (engine, _data) = engine();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let options = grpc::ServeOptions {
            metrics_listen: Some(port),
            ..Default::default()
        };
        let mut server = start_with(engine, options).await;
        let mut c = client(&server).await;
        reindex_all(&mut c, root.to_str().unwrap()).await;
        c.search(search(root.to_str().unwrap(), "ring_write"))
            .await
            .unwrap();
        let _ = c.search(search("/no/such/repo", "x")).await;

        let text = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(port).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .await
        .unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        for line in [
            "codectx_requests_total{method=\"Search\",code=\"OK\"} 1",
            "codectx_requests_total{method=\"Search\",code=\"NotFound\"} 1",
            "codectx_request_duration_seconds_count{method=\"Search\"} 2",
            "codectx_request_duration_seconds_bucket{method=\"Search\",le=\"+Inf\"} 2",
            "codectx_reindex_duration_seconds_count{outcome=\"ok\"} 1",
            "# TYPE codectx_embedding_backlog_chunks gauge",
            "codectx_embedding_queue_repositories 0",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
        assert!(
            text.contains("codectx_index_chunks{repository=\""),
            "{text}"
        );
        server.stop.take().unwrap().send(()).unwrap();
        server.done.take().unwrap().await.unwrap().unwrap();
    });
}

/// Writes a fresh self-signed certificate and key for `names`; returns (cert, key) paths.
fn self_signed(
    dir: &std::path::Path,
    stem: &str,
    names: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// One `ListRepositories` call over a fresh channel; the error as text.
async fn list_over(url: &str, tls: &codectx::server::client::ClientTls) -> Result<usize, String> {
    let channel = codectx::server::client::endpoint(url, tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    CodeContextClient::new(channel)
        .list_repositories(pb::ListRepositoriesRequest {})
        .await
        .map(|r| r.into_inner().repositories.len())
        .map_err(|s| format!("call: {s:?}"))
}

#[test]
fn tls_and_mutual_tls_refuse_clients_that_do_not_hold_up_their_end() {
    use codectx::server::client::ClientTls;
    let certs = tempfile::tempdir().unwrap();
    let (server_cert, server_key) =
        self_signed(certs.path(), "server", &["localhost", "127.0.0.1"]);
    let (client_cert, client_key) = self_signed(certs.path(), "client", &["agent-7"]);
    let (stranger_cert, stranger_key) = self_signed(certs.path(), "stranger", &["agent-x"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // TLS: a client that trusts the server's certificate gets answers.
        let (first, _data) = engine();
        let options = grpc::ServeOptions {
            tls: Some(grpc::TlsFiles {
                cert: server_cert.clone(),
                key: server_key.clone(),
                client_ca: None,
            }),
            ..Default::default()
        };
        let mut server = start_with(first, options).await;
        let https = format!("https://127.0.0.1:{}", server.addr.port());
        let trusting = ClientTls {
            ca: Some(server_cert.clone()),
            identity: None,
        };
        assert_eq!(list_over(&https, &trusting).await, Ok(0));
        // The system's roots do not vouch for a self-signed certificate.
        let err = list_over(&https, &ClientTls::default()).await.unwrap_err();
        assert!(err.to_lowercase().contains("certificate"), "{err}");
        // Plaintext HTTP/2 to a TLS port gets no answer.
        let plain = format!("http://127.0.0.1:{}", server.addr.port());
        assert!(list_over(&plain, &trusting).await.is_err());
        server.stop.take().unwrap().send(()).unwrap();
        server.done.take().unwrap().await.unwrap().unwrap();

        // Mutual TLS: only a client whose certificate chains to the client CA gets in.
        let (second, _data2) = engine();
        let options = grpc::ServeOptions {
            tls: Some(grpc::TlsFiles {
                cert: server_cert.clone(),
                key: server_key.clone(),
                client_ca: Some(client_cert.clone()),
            }),
            ..Default::default()
        };
        let mut server = start_with(second, options).await;
        let https = format!("https://127.0.0.1:{}", server.addr.port());
        let with_identity = |cert: &std::path::Path, key: &std::path::Path| ClientTls {
            ca: Some(server_cert.clone()),
            identity: Some((cert.to_path_buf(), key.to_path_buf())),
        };
        assert_eq!(
            list_over(&https, &with_identity(&client_cert, &client_key)).await,
            Ok(0)
        );
        assert!(list_over(&https, &trusting).await.is_err());
        assert!(
            list_over(&https, &with_identity(&stranger_cert, &stranger_key))
                .await
                .is_err()
        );
        server.stop.take().unwrap().send(()).unwrap();
        server.done.take().unwrap().await.unwrap().unwrap();
    });
}

#[test]
fn a_missing_tls_key_is_named_before_serving() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (engine, _data) = engine();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let options = grpc::ServeOptions {
            tls: Some(grpc::TlsFiles {
                cert: "/nonexistent/server.pem".into(),
                key: "/nonexistent/server.key".into(),
                client_ca: None,
            }),
            ..Default::default()
        };
        let err = grpc::serve(Arc::new(engine), listener, options, async {})
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/server.pem"), "{err}");
    });
}

#[test]
fn a_repository_registered_by_git_url_is_cloned_fetched_on_reindex_and_removed_with_its_clone() {
    use crate::support::git;
    let upstream = tempfile::tempdir().unwrap();
    let up = upstream.path();
    write(
        up,
        "billing.py",
        "def compute_invoice_total(lines):\n    return sum(lines)\n",
    );
    git(up, &["init", "-q"]);
    git(up, &["add", "-A"]);
    git(up, &["commit", "-q", "-m", "one"]);
    let url = format!("file://{}", up.display());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (engine, data) = engine();
        let mut server = start(engine).await;
        let mut c = client(&server).await;
        let register = |path: &str, url: &str| pb::RegisterRepositoryRequest {
            path: path.to_string(),
            url: url.to_string(),
        };
        // Refused before git runs: options, command-running transports, other schemes.
        for bad in [
            "-oProxyCommand=touch /tmp/pwned",
            "ext::sh -c touch% /tmp/pwned",
            "ftp://example.com/repo.git",
            "file://",
            "no-scheme-no-host",
        ] {
            let status = c.register_repository(register("", bad)).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{bad}: {status:?}");
            assert!(status.message().starts_with("url "), "{status:?}");
        }
        assert_eq!(
            code(c.register_repository(register("/tmp", &url)).await),
            Code::InvalidArgument
        );
        assert_eq!(
            code(c.register_repository(register("", "")).await),
            Code::InvalidArgument
        );
        let missing = format!("file://{}/nowhere", up.display());
        assert_eq!(
            code(c.register_repository(register("", &missing)).await),
            Code::Unavailable
        );

        let repo = c
            .register_repository(register("", &url))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(repo.url, url);
        let clone = std::path::PathBuf::from(&repo.root);
        assert!(clone.starts_with(data.path().canonicalize().unwrap().join("clones")));
        // The same URL again is the same repository.
        let again = c
            .register_repository(register("", &url))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.id, repo.id);

        reindex_all(&mut c, &repo.id).await;
        let found = |hits: pb::SearchResponse| -> Vec<String> {
            hits.hits
                .into_iter()
                .filter_map(|h| h.chunk.map(|c| c.symbol))
                .collect()
        };
        let hits = c.search(search(&repo.id, "invoice total")).await.unwrap();
        assert!(found(hits.into_inner()).contains(&"compute_invoice_total".to_string()));

        // Upstream moves on; Reindex fetches before it indexes.
        write(
            up,
            "refunds.py",
            "def issue_partial_refund(order):\n    return order\n",
        );
        git(up, &["add", "-A"]);
        git(up, &["commit", "-q", "-m", "two"]);
        reindex_all(&mut c, &repo.id).await;
        let hits = c.search(search(&repo.id, "partial refund")).await.unwrap();
        assert!(found(hits.into_inner()).contains(&"issue_partial_refund".to_string()));
        let status = c
            .status(pb::StatusRequest {
                repository: repo.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let head = git(up, &["rev-parse", "HEAD"]);
        assert!(
            status
                .repository
                .unwrap()
                .refs
                .iter()
                .any(|r| r.commit == head),
            "the index reflects upstream's new commit"
        );

        let listed = c
            .list_repositories(pb::ListRepositoriesRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.repositories.len(), 1);
        assert_eq!(listed.repositories[0].url, url);

        c.remove_repository(pb::RemoveRepositoryRequest {
            repository: repo.id.clone(),
        })
        .await
        .unwrap();
        assert!(
            !clone.exists(),
            "the clone made for the URL is removed with it"
        );
        assert!(up.join("billing.py").exists(), "upstream is untouched");
        server.stop.take().unwrap().send(()).unwrap();
        server.done.take().unwrap().await.unwrap().unwrap();
    });
}

/// Polls Status until `done` holds for it (or panics after a minute, showing the last one).
async fn wait_for_status(
    c: &mut CodeContextClient<Channel>,
    repository: &str,
    done: impl Fn(&pb::StatusResponse) -> bool,
) -> pb::StatusResponse {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let status = c
            .status(pb::StatusRequest {
                repository: repository.to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        if done(&status) {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status never got there: {status:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[test]
fn embedding_runs_behind_the_reindex_and_resumes_when_the_server_restarts() {
    let repo = fixture_repo();
    let root = repo.path().canonicalize().unwrap().display().to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The claim here is resumption, not latency: a loaded CI machine may take seconds to
    // run the model's first query, which must not cost the search its dense lane.
    let patient = |data: &std::path::Path| {
        let mut config = codectx::config::Config::with_data_dir(data);
        config.embed.query_timeout = std::time::Duration::from_secs(120);
        codectx::Engine::new(config).unwrap()
    };
    runtime.block_on(async {
        let data = tempfile::tempdir().unwrap();
        let engine = patient(data.path());
        // A lexical-only index, then the server stops: nothing embedded.
        let mut server = start(engine).await;
        let mut c = client(&server).await;
        reindex_all(&mut c, &root).await;
        let status = wait_for_status(&mut c, &root, |_| true).await;
        assert_eq!(status.vectors, 0);
        assert!(!status.embedding);
        server.stop.take().unwrap().send(()).unwrap();
        server.done.take().unwrap().await.unwrap().unwrap();

        // The next server resumes the embedding on its own, with no reindex asked.
        let engine = patient(data.path());
        let mut server = start(engine).await;
        let mut c = client(&server).await;
        let status = wait_for_status(&mut c, &root, |s| s.dense_coverage >= 1.0).await;
        assert!(status.vectors > 0);
        let hits = c
            .search(pb::SearchRequest {
                repository: root.clone(),
                query: "read the contents of a file".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(hits.degraded.is_empty(), "{:?}", hits.degraded);
        assert!(hits.hits.iter().any(|h| h.dense_rank > 0));

        // A change: the reindex answers with the lexical index committed; small changes are
        // embedded before the commit, so nothing is left for the worker.
        write(
            repo.path(),
            "extra.py",
            "def brand_new_helper():\n    return 42\n",
        );
        crate::support::git(repo.path(), &["add", "-A"]);
        crate::support::git(repo.path(), &["commit", "-q", "-m", "extra"]);
        let embedding = pb::ReindexRequest {
            repository: root.clone(),
            ..Default::default()
        };
        let summary = reindex_summary(&mut c, embedding.clone()).await;
        assert_eq!(summary.dense_coverage, 1.0, "{summary:?}");
        let status = wait_for_status(&mut c, &root, |s| !s.embedding).await;
        assert_eq!(status.dense_coverage, 1.0);

        // Chunks left without vectors are handed to the worker by the next reindex, which
        // answers without waiting for them.
        write(
            repo.path(),
            "later.py",
            "def added_without_vectors():\n    return 7\n",
        );
        crate::support::git(repo.path(), &["add", "-A"]);
        crate::support::git(repo.path(), &["commit", "-q", "-m", "later"]);
        reindex_all(&mut c, &root).await;
        let status = wait_for_status(&mut c, &root, |_| true).await;
        assert!(status.dense_coverage < 1.0, "{status:?}");
        let note = reindex_summary(&mut c, embedding).await.embed_note;
        assert!(note.contains("background"), "{note}");
        wait_for_status(&mut c, &root, |s| s.dense_coverage >= 1.0 && !s.embedding).await;
        server.stop.take().unwrap().send(()).unwrap();
        server.done.take().unwrap().await.unwrap().unwrap();
    });
}

#[test]
fn clients_register_only_under_the_allowed_roots_and_never_system_directories() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let allowed = tempfile::tempdir().unwrap();
        let inside = allowed.path().join("app");
        write(&inside, "app.py", "def handler():\n    return 200\n");
        let outside = fixture_repo();
        let (engine, _data) = engine();
        let options = grpc::ServeOptions {
            admission: codectx::server::admission::Admission::only(
                &[allowed.path().to_path_buf()],
                &["github.com".to_string()],
            )
            .unwrap(),
            ..Default::default()
        };
        let mut server = start_with(engine, options).await;
        let mut c = client(&server).await;
        let register = |path: &std::path::Path| pb::RegisterRepositoryRequest {
            path: path.to_str().unwrap().to_string(),
            ..Default::default()
        };
        // The reproduction of issue 20: register /etc, index it, read passwd.
        let status = c
            .register_repository(register(std::path::Path::new("/etc")))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(
            status.message().contains("nothing under /etc"),
            "{status:?}"
        );
        let status = c
            .reindex(pb::ReindexRequest {
                repository: "/etc".into(),
                no_embed: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        // A directory outside the roots, by registration or by a reindex naming it.
        let status = c
            .register_repository(register(outside.path()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(
            status
                .message()
                .contains("not under the server's allowed roots"),
            "{status:?}"
        );
        let status = c
            .reindex(pb::ReindexRequest {
                repository: outside.path().to_str().unwrap().into(),
                no_embed: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        // A symlink inside the root that points out of it is judged by its target.
        let link = allowed.path().join("escape");
        std::os::unix::fs::symlink(outside.path(), &link).unwrap();
        assert_eq!(
            code(c.register_repository(register(&link)).await),
            Code::PermissionDenied
        );
        // A URL from a host the server does not clone from.
        let by_url = pb::RegisterRepositoryRequest {
            url: "https://evil.example/x/y.git".into(),
            ..Default::default()
        };
        assert_eq!(
            code(c.register_repository(by_url).await),
            Code::PermissionDenied
        );
        // Under the root: registered and indexed.
        let repo = c
            .register_repository(register(&inside))
            .await
            .unwrap()
            .into_inner();
        reindex_all(&mut c, &repo.id).await;
        let hits = c
            .search(search(&repo.id, "handler"))
            .await
            .unwrap()
            .into_inner();
        assert!(!hits.hits.is_empty());
        assert!(
            c.list_repositories(pb::ListRepositoriesRequest {})
                .await
                .unwrap()
                .into_inner()
                .repositories
                .len()
                == 1,
            "only the admitted repository was registered"
        );
        server.stop.take().unwrap().send(()).unwrap();
        server.done.take().unwrap().await.unwrap().unwrap();
    });
}

#[test]
fn even_an_open_server_never_registers_a_system_directory() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (engine, _data) = engine();
        let mut server = start(engine).await;
        let mut c = client(&server).await;
        for path in ["/", "/etc", "/proc/self", "/usr"] {
            let req = pb::RegisterRepositoryRequest {
                path: path.into(),
                ..Default::default()
            };
            assert_eq!(
                code(c.register_repository(req).await),
                Code::PermissionDenied,
                "{path}"
            );
        }
        server.stop.take().unwrap().send(()).unwrap();
        server.done.take().unwrap().await.unwrap().unwrap();
    });
}

/// The error of a call that must fail.
fn failure<T>(r: Result<tonic::Response<T>, tonic::Status>) -> tonic::Status {
    r.map(|_| ()).unwrap_err()
}

/// `message` with `authorization: Bearer <token>`.
fn as_client<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

#[test]
fn a_scoped_client_sees_only_its_repositories() {
    use codectx::server::admission::{Admission, Client, Scope};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mine = fixture_repo();
        let theirs = fixture_repo();
        let mine_root = mine.path().canonicalize().unwrap();
        let theirs_root = theirs.path().canonicalize().unwrap();
        let (engine, _data) = engine();
        let options = grpc::ServeOptions {
            auth_token: Some("ops-token".into()),
            clients: vec![Client {
                name: "alpha".into(),
                token: "alpha-token".into(),
                scope: Scope::only(vec![mine_root.to_string_lossy().into_owned()]),
            }],
            admission: Admission::open(),
            ..Default::default()
        };
        let mut server = start_with(engine, options).await;
        let mut c = client(&server).await;
        let register = |p: &std::path::Path| pb::RegisterRepositoryRequest {
            path: p.to_string_lossy().into_owned(),
            ..Default::default()
        };
        // The operator's token registers and indexes both.
        for root in [&mine_root, &theirs_root] {
            let r = c
                .register_repository(as_client("ops-token", register(root)))
                .await
                .unwrap()
                .into_inner();
            let mut stream = c
                .reindex(as_client(
                    "ops-token",
                    pb::ReindexRequest {
                        repository: r.id.clone(),
                        no_embed: true,
                        ..Default::default()
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            while let Some(m) = stream.next().await {
                m.unwrap();
            }
        }
        let theirs_s = theirs_root.to_string_lossy().into_owned();
        let mine_s = mine_root.to_string_lossy().into_owned();
        let lister = c.clone();
        let list = |token: &'static str| {
            let mut c = lister.clone();
            async move {
                c.list_repositories(as_client(token, pb::ListRepositoriesRequest {}))
                    .await
                    .unwrap()
                    .into_inner()
                    .repositories
                    .into_iter()
                    .map(|r| r.root)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(list("ops-token").await.len(), 2);
        assert_eq!(list("alpha-token").await, vec![mine_s.clone()]);
        // alpha uses its repository...
        let found = c
            .search(as_client("alpha-token", search(&mine_s, "ring_write")))
            .await
            .unwrap()
            .into_inner();
        assert!(!found.hits.is_empty());
        // ...and nothing of the other, whatever the method.
        let denied = |s: tonic::Status, what: &str| {
            assert_eq!(s.code(), Code::PermissionDenied, "{what}: {s:?}");
            assert!(
                s.message()
                    .contains("client \"alpha\" may not use repository"),
                "{what}: {s:?}"
            );
        };
        denied(
            failure(
                c.search(as_client("alpha-token", search(&theirs_s, "ring_write")))
                    .await,
            ),
            "search",
        );
        denied(
            failure(
                c.status(as_client(
                    "alpha-token",
                    pb::StatusRequest {
                        repository: theirs_s.clone(),
                    },
                ))
                .await,
            ),
            "status",
        );
        denied(
            failure(
                c.read_span(as_client(
                    "alpha-token",
                    pb::ReadSpanRequest {
                        repository: theirs_s.clone(),
                        path: "sample.c".into(),
                        start_line: 1,
                        end_line: 3,
                        ..Default::default()
                    },
                ))
                .await,
            ),
            "read_span",
        );
        denied(
            failure(
                c.get_context(as_client(
                    "alpha-token",
                    pb::GetContextRequest {
                        repository: theirs_s.clone(),
                        task: "ring buffer".into(),
                        ..Default::default()
                    },
                ))
                .await,
            ),
            "get_context",
        );
        denied(
            failure(
                c.reindex(as_client(
                    "alpha-token",
                    pb::ReindexRequest {
                        repository: theirs_s.clone(),
                        no_embed: true,
                        ..Default::default()
                    },
                ))
                .await,
            ),
            "reindex",
        );
        denied(
            failure(
                c.register_repository(as_client("alpha-token", register(&theirs_root)))
                    .await,
            ),
            "register",
        );
        denied(
            failure(
                c.remove_repository(as_client(
                    "alpha-token",
                    pb::RemoveRepositoryRequest {
                        repository: theirs_s.clone(),
                    },
                ))
                .await,
            ),
            "remove",
        );
        // By URL: a scoped client registers by path only.
        let by_url = pb::RegisterRepositoryRequest {
            url: format!("file://{theirs_s}"),
            ..Default::default()
        };
        assert_eq!(
            code(
                c.register_repository(as_client("alpha-token", by_url))
                    .await
            ),
            Code::PermissionDenied
        );
        // Still registered for the operator; no token, or a wrong one, gets nothing.
        assert_eq!(list("ops-token").await.len(), 2);
        assert_eq!(
            code(c.list_repositories(pb::ListRepositoriesRequest {}).await),
            Code::Unauthenticated
        );
        assert_eq!(
            code(
                c.list_repositories(as_client("alpha-tokem", pb::ListRepositoriesRequest {}))
                    .await
            ),
            Code::PermissionDenied
        );
        server.stop.take().unwrap().send(()).unwrap();
        server.done.take().unwrap().await.unwrap().unwrap();
    });
}
