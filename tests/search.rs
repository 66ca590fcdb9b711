//! Search over a real fixture repository: names, bodies, filters, errors, restart, rebuild.

use crate::support::{engine, fixture_repo, git, write};
use codectx::config::Config;
use codectx::engine::{IndexOptions, NoProgress};
use codectx::model::Language;
use codectx::retrieve::SearchRequest;
use codectx::{Engine, ErrorKind};

fn req(query: &str) -> SearchRequest {
    SearchRequest::new(query)
}

fn top_symbols(engine: &Engine, root: &std::path::Path, r: &SearchRequest) -> Vec<String> {
    engine
        .search(root, r)
        .unwrap()
        .hits
        .into_iter()
        .map(|h| format!("{}:{}", h.chunk.path, h.chunk.symbol))
        .collect()
}

#[test]
fn finds_functions_by_name_parts_and_body_words() {
    let repo = fixture_repo();
    let (engine, _data) = engine();
    let report = engine.index(repo.path(), &NoProgress).unwrap();
    assert_eq!(report.files_indexed, 15);
    assert!(
        report.diagnostics.iter().all(|d| !d.fallback),
        "{:?}",
        report.diagnostics
    );

    // A word of a snake_case name, a camelCase spelling of it, and the whole identifier.
    for query in ["http", "parseHttpRequest", "parse_http_request"] {
        let hits = top_symbols(&engine, repo.path(), &req(query));
        assert_eq!(hits[0], "sample.rs:parse_http_request", "{query}: {hits:?}");
    }
    // Parts of camelCase names.
    let hits = top_symbols(&engine, repo.path(), &req("breadth first"));
    assert_eq!(hits[0], "sample.cpp:graph", "{hits:?}");
    // Words that appear only in a body.
    let hits = top_symbols(&engine, repo.path(), &req("overdraft limit negate"));
    assert_eq!(hits[0], "sample.java:Account", "{hits:?}");
    let hits = top_symbols(&engine, repo.path(), &req("evicting least recently used"));
    assert_eq!(hits[0], "sample.go:Put", "{hits:?}");
    let hits = top_symbols(&engine, repo.path(), &req("tarball source"));
    assert_eq!(hits[0], "sample.sh:make_backup", "{hits:?}");
}

#[test]
fn language_and_path_filters_restrict_hits() {
    let repo = fixture_repo();
    let (engine, _data) = engine();
    engine.index(repo.path(), &NoProgress).unwrap();

    let mut r = req("item");
    r.k = 50;
    let all = engine.search(repo.path(), &r).unwrap().hits;
    assert!(
        all.iter()
            .map(|h| h.chunk.language)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 2
    );

    r.language = Some(Language::Python);
    let hits = engine.search(repo.path(), &r).unwrap().hits;
    assert!(!hits.is_empty());
    assert!(
        hits.iter().all(|h| h.chunk.language == Language::Python),
        "{hits:?}"
    );

    r.language = None;
    r.path_glob = Some("*.ts*".into());
    let hits = engine.search(repo.path(), &r).unwrap().hits;
    assert!(!hits.is_empty());
    assert!(
        hits.iter().all(|h| h.chunk.path.starts_with("sample.ts")),
        "{hits:?}"
    );

    r.path_glob = Some("no/such/*.rs".into());
    assert!(engine.search(repo.path(), &r).unwrap().hits.is_empty());
}

#[test]
fn bad_requests_are_rejected_with_the_field_named() {
    let repo = fixture_repo();
    let (engine, _data) = engine();
    engine.index(repo.path(), &NoProgress).unwrap();
    let check = |r: SearchRequest, kind: ErrorKind, needle: &str| {
        let err = engine.search(repo.path(), &r).unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        assert!(
            err.to_string().contains(needle),
            "{err} should mention {needle}"
        );
    };
    check(req("   "), ErrorKind::InvalidInput, "query");
    check(
        req("!!! ??? ..."),
        ErrorKind::InvalidInput,
        "no searchable words",
    );
    let mut r = req("x");
    r.k = 0;
    check(r.clone(), ErrorKind::InvalidInput, "k:");
    r.k = 100_000;
    check(r, ErrorKind::InvalidInput, "k:");
    let mut r = req("x");
    r.path_glob = Some("src/[".into());
    check(r, ErrorKind::InvalidInput, "src/[");

    let unindexed = tempfile::tempdir().unwrap();
    let err = engine.search(unindexed.path(), &req("x")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("codectx index"), "{err}");
    let err = engine
        .search(&unindexed.path().join("nope"), &req("x"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[test]
fn answers_name_the_commit_and_survive_a_restart() {
    let repo = fixture_repo();
    let head = git(repo.path(), &["rev-parse", "HEAD"]);
    let data = tempfile::tempdir().unwrap();
    let r = req("reserve stock order");
    let before = {
        let engine = Engine::new(Config::with_data_dir(data.path())).unwrap();
        engine.index(repo.path(), &NoProgress).unwrap();
        let response = engine.search(repo.path(), &r).unwrap();
        assert_eq!(response.commit.as_deref(), Some(head.as_str()));
        assert_eq!(response.ref_name.as_deref(), Some("refs/heads/main"));
        assert!(!response.indexed_dirty);
        response
            .hits
            .iter()
            .map(|h| (h.chunk.id.clone(), h.score))
            .collect::<Vec<_>>()
    };
    assert!(!before.is_empty());
    // A new engine (a restarted process) over the same data directory answers the same.
    let engine = Engine::new(Config::with_data_dir(data.path())).unwrap();
    let response = engine.search(repo.path(), &r).unwrap();
    let after: Vec<_> = response
        .hits
        .iter()
        .map(|h| (h.chunk.id.clone(), h.score))
        .collect();
    assert_eq!(before, after);
    assert_eq!(response.commit.as_deref(), Some(head.as_str()));
    let status = engine.status(repo.path()).unwrap();
    assert_eq!(status.files, 15);
    assert!(!status.stale);

    // A new commit makes the index stale until it is reindexed.
    write(
        repo.path(),
        "extra.py",
        "def freshly_added_function():\n    return 42\n",
    );
    crate::support::commit_all(repo.path(), "add extra");
    assert!(engine.status(repo.path()).unwrap().stale);
    let hits = engine
        .search(repo.path(), &req("freshly_added_function"))
        .unwrap()
        .hits;
    assert!(hits.iter().all(|h| h.chunk.path != "extra.py"), "{hits:?}");
    engine.index(repo.path(), &NoProgress).unwrap();
    let response = engine
        .search(repo.path(), &req("freshly_added_function"))
        .unwrap();
    assert_eq!(response.hits[0].chunk.path, "extra.py");
    assert_eq!(
        response.commit,
        Some(git(repo.path(), &["rev-parse", "HEAD"]))
    );
    assert!(!engine.status(repo.path()).unwrap().stale);
}

#[test]
fn reindex_reflects_edits_and_deletions() {
    let repo = fixture_repo();
    let (engine, _data) = engine();
    engine.index(repo.path(), &NoProgress).unwrap();
    assert!(
        !engine
            .search(repo.path(), &req("ring_write"))
            .unwrap()
            .hits
            .is_empty()
    );
    std::fs::remove_file(repo.path().join("sample.c")).unwrap();
    write(
        repo.path(),
        "sample.go",
        "package cache\n\nfunc Replaced() {}\n",
    );
    // Uncommitted: the git ref does not change, and answers say what they do not reflect.
    let report = engine.index(repo.path(), &NoProgress).unwrap();
    assert!(report.dirty, "uncommitted changes are reported");
    assert_eq!(report.files_chunked, 0, "{report:?}");
    let response = engine.search(repo.path(), &req("ring_write")).unwrap();
    assert!(response.indexed_dirty);
    assert!(response.hits.iter().any(|h| h.chunk.path == "sample.c"));

    // The work tree itself can be indexed as its own ref, uncommitted edits included.
    let worktree = IndexOptions {
        worktree: true,
        ..Default::default()
    };
    engine
        .index_with(repo.path(), &worktree, &NoProgress)
        .unwrap();
    let mut r = req("Replaced");
    r.ref_name = Some("worktree".into());
    let response = engine.search(repo.path(), &r).unwrap();
    assert_eq!(response.hits[0].chunk.path, "sample.go");
    assert_eq!(response.commit, None);

    // Committed: the default ref follows.
    crate::support::commit_all(repo.path(), "edit");
    let report = engine.index(repo.path(), &NoProgress).unwrap();
    assert!(!report.dirty);
    assert_eq!((report.changes.modified, report.changes.deleted), (1, 1));
    let hits = engine.search(repo.path(), &req("ring_write")).unwrap().hits;
    assert!(hits.iter().all(|h| h.chunk.path != "sample.c"), "{hits:?}");
    let hits = engine.search(repo.path(), &req("evicting")).unwrap().hits;
    assert!(hits.is_empty(), "{hits:?}");
    let response = engine.search(repo.path(), &req("Replaced")).unwrap();
    assert!(!response.indexed_dirty);
    assert_eq!(response.hits[0].chunk.path, "sample.go");
}

#[test]
fn an_unusable_index_is_reported_then_rebuilt() {
    let repo = fixture_repo();
    let data = tempfile::tempdir().unwrap();
    let config = Config::with_data_dir(data.path());
    let engine = Engine::new(config.clone()).unwrap();
    engine.index(repo.path(), &NoProgress).unwrap();
    engine.embed(repo.path(), &NoProgress).unwrap();
    let dir = engine
        .repo_dir(&repo.path().canonicalize().unwrap())
        .join("lexical");
    drop(engine);
    // Vectors of chunks the rebuilt index will not have (as when a new version names its
    // chunks differently): the rebuild must not keep them.
    let vectors = dir.with_file_name("vectors.redb");
    {
        use codectx::index::vectors::{EmbeddedVectorStore, VectorPoint, VectorStore};
        let store = EmbeddedVectorStore::open_existing(&vectors)
            .unwrap()
            .expect("indexing made a vector store");
        let dims = store.model().1;
        let stale: Vec<VectorPoint> = (0..3)
            .map(|i| VectorPoint {
                id: format!("old-name-{i}"),
                path: "sample.go".to_string(),
                language: Language::Go,
                vector: vec![0.1; dims],
            })
            .collect();
        store.upsert(&stale).unwrap();
        store.flush().unwrap();
    }
    std::fs::write(dir.join("meta.json"), "{ not json").unwrap();

    let engine = Engine::new(config.clone()).unwrap();
    let err = engine.search(repo.path(), &req("ring")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("rebuild"), "{err}");
    let engine = Engine::new(config).unwrap();
    let report = engine.index(repo.path(), &NoProgress).unwrap();
    assert!(report.rebuilt.is_some());
    let status = engine.status(repo.path()).unwrap();
    assert_eq!(status.vectors, status.stored_chunks);
    assert!(!dir.with_file_name("vectors.pending").exists());
    assert!(
        !engine
            .search(repo.path(), &req("ring_write"))
            .unwrap()
            .hits
            .is_empty()
    );
}

/// A span read serves only what the index holds at the ref: never git's own files, an
/// ignored file on disk, or a secret-bearing file (which the walk skips and reports).
#[test]
fn read_span_serves_only_indexed_files() {
    let repo = fixture_repo();
    let root = repo.path();
    let secrets = [
        ".aws/credentials",
        ".git-credentials",
        ".pgpass",
        ".htpasswd",
        ".envrc",
        "infra/terraform.tfstate",
    ];
    for file in secrets {
        write(root, file, "user:s3cr3t-v4lue-never-served\n");
    }
    write(root, ".gitignore", "ignored.log\n");
    write(root, "ignored.log", "ignored, never indexed\n");
    crate::support::commit_all(root, "secrets");
    let (engine, _data) = engine();
    let report = engine.index(root, &NoProgress).unwrap();
    for file in secrets {
        assert!(
            report
                .skipped
                .iter()
                .any(|s| s.path == file && s.reason == codectx::source::SkipReason::SecretFile),
            "{file} is reported as a secret file: {:?}",
            report.skipped
        );
    }
    let worktree = IndexOptions {
        worktree: true,
        ..IndexOptions::default()
    };
    engine.index_with(root, &worktree, &NoProgress).unwrap();

    for ref_name in [None, Some("worktree")] {
        let read = |rel: &str| engine.read_span(root, ref_name, rel, (0, 0));
        assert!(read("sample.py").unwrap().text.contains("def "));
        for rel in [".git/config", ".GIT/HEAD", "sub/.git/config"] {
            let e = read(rel).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{ref_name:?} {rel}: {e}");
        }
        for rel in secrets {
            let e = read(rel).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{ref_name:?} {rel}: {e}");
            assert!(e.to_string().contains("secret"), "{e}");
        }
        let e = read("ignored.log").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{ref_name:?}: {e}");
        assert!(e.to_string().contains("only indexed files"), "{e}");
    }
}
