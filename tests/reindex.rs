//! Incremental reindexing on real git histories: add, modify, delete and rename across
//! commits; refs side by side sharing storage; rebases whose old commits are gone; a burst
//! of requests coalescing into one run. Every incremental result is compared with a clean
//! rebuild of the same commit.

use crate::support::{engine, git, write};
use codectx::engine::{IndexOptions, NoProgress};
use codectx::ingest::lock;
use codectx::ingest::plan::PlanKind;
use codectx::retrieve::SearchRequest;
use codectx::{Engine, ErrorKind};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// What an index holds for one ref, independent of how it got there.
pub fn fingerprint(engine: &Engine, root: &Path, ref_name: Option<&str>) -> BTreeSet<String> {
    engine
        .snapshot_of(root, ref_name)
        .unwrap()
        .all_chunks()
        .unwrap()
        .into_iter()
        .map(|c| {
            format!(
                "{} {}-{} {} {} {}",
                c.path, c.span.start_line, c.span.end_line, c.kind, c.symbol, c.hash
            )
        })
        .collect()
}

/// The fingerprint of `commit` indexed from scratch into a fresh data directory.
pub fn clean_fingerprint(root: &Path, commit: &str) -> BTreeSet<String> {
    let (fresh, _data) = engine();
    let options = IndexOptions {
        ref_name: Some(commit.to_string()),
        ..Default::default()
    };
    fresh.index_with(root, &options, &NoProgress).unwrap();
    fingerprint(&fresh, root, Some(commit))
}

/// The paths of the hits whose text contains `query` verbatim (BM25 also matches subwords:
/// `alpha_value` finds `alpha_renewed`, which is right for search and useless for asserting
/// that a deleted definition is gone).
fn paths_for(engine: &Engine, root: &Path, query: &str, ref_name: Option<&str>) -> Vec<String> {
    let mut req = SearchRequest::new(query);
    req.ref_name = ref_name.map(str::to_string);
    engine
        .search(root, &req)
        .unwrap()
        .hits
        .into_iter()
        .filter(|h| h.chunk.content.contains(query))
        .map(|h| h.chunk.path)
        .collect()
}

fn options(ref_name: &str) -> IndexOptions {
    IndexOptions {
        ref_name: Some(ref_name.to_string()),
        ..Default::default()
    }
}

fn head(root: &Path) -> String {
    git(root, &["rev-parse", "HEAD"])
}

/// A repository with a handful of files in three languages, committed on `main`.
fn small_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "a.py", "def alpha_value():\n    return 1\n");
    write(
        root,
        "b.rs",
        "pub fn beta_total(x: u32) -> u32 {\n    x + 2\n}\n",
    );
    write(
        root,
        "c.go",
        "package c\n\nfunc GammaRay() int {\n\treturn 3\n}\n",
    );
    write(root, "docs/notes.md", "# Notes\n\nThe delta procedure.\n");
    git(root, &["init", "-q"]);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "one"]);
    dir
}

#[test]
fn add_modify_delete_rename_keep_search_exact() {
    let repo = small_repo();
    let root = repo.path();
    let (engine, _data) = engine();
    let first = engine.index(root, &NoProgress).unwrap();
    assert_eq!(first.plan, PlanKind::Full);
    assert_eq!(first.files_chunked, 4);

    write(root, "a.py", "def alpha_renewed():\n    return 11\n");
    std::fs::remove_file(root.join("c.go")).unwrap();
    std::fs::create_dir_all(root.join("lib")).unwrap();
    std::fs::rename(root.join("b.rs"), root.join("lib/b_moved.rs")).unwrap();
    write(
        root,
        "d.ts",
        "export function epsilonPlan(): number {\n  return 5;\n}\n",
    );
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "two"]);

    let report = engine.index(root, &NoProgress).unwrap();
    assert_eq!(report.plan, PlanKind::Diff);
    let c = report.changes;
    assert_eq!(
        (c.added, c.modified, c.deleted, c.renamed),
        (1, 1, 1, 1),
        "{report:?}"
    );
    // The modified file, the renamed file (new path, new version) and the new file.
    assert_eq!(report.files_chunked, 3, "{report:?}");
    assert_eq!(report.commit.as_deref(), Some(head(root).as_str()));

    assert!(paths_for(&engine, root, "GammaRay", None).is_empty());
    assert!(paths_for(&engine, root, "alpha_value", None).is_empty());
    assert_eq!(paths_for(&engine, root, "alpha_renewed", None)[0], "a.py");
    let beta = paths_for(&engine, root, "beta_total", None);
    assert_eq!(beta, vec!["lib/b_moved.rs".to_string()]);
    assert_eq!(paths_for(&engine, root, "epsilonPlan", None)[0], "d.ts");
    assert_eq!(
        fingerprint(&engine, root, None),
        clean_fingerprint(root, &head(root))
    );

    // Indexing the same commit again does nothing.
    let again = engine.index(root, &NoProgress).unwrap();
    assert_eq!(again.plan, PlanKind::UpToDate);
    assert_eq!(again.files_chunked, 0);
}

#[test]
fn two_refs_share_storage_and_answer_separately() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for i in 0..30 {
        write(
            root,
            &format!("src/m{i}.rs"),
            format!("pub fn module_{i}_entry(x: u64) -> u64 {{\n    x * {i}\n}}\n"),
        );
    }
    git(root, &["init", "-q"]);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "base"]);
    git(root, &["checkout", "-q", "-b", "feature"]);
    write(
        root,
        "src/m3.rs",
        "pub fn module_3_entry(x: u64) -> u64 {\n    feature_flagged(x)\n}\n",
    );
    write(
        root,
        "src/m4.rs",
        "pub fn module_4_rewritten() -> u64 {\n    4\n}\n",
    );
    write(
        root,
        "src/flag.rs",
        "pub fn feature_flagged(x: u64) -> u64 {\n    x + 1\n}\n",
    );
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "feature"]);
    git(root, &["checkout", "-q", "main"]);

    let (engine, _data) = engine();
    let main = engine.index(root, &NoProgress).unwrap();
    assert_eq!(main.ref_name, "refs/heads/main");
    let all_before = engine.snapshot_of(root, None).unwrap().num_chunks();
    let feature = engine
        .index_with(root, &options("feature"), &NoProgress)
        .unwrap();
    assert_eq!(feature.ref_name, "refs/heads/feature");
    // Work and storage in proportion to the difference: three files, not thirty-one.
    assert_eq!(feature.files_chunked, 3, "{feature:?}");
    assert_eq!(feature.plan, PlanKind::Full);
    let status = engine.status(root).unwrap();
    assert_eq!(status.refs.len(), 2);
    let stored = engine.snapshot_of(root, None).unwrap();
    assert_eq!(stored.ref_state().unwrap().name, "refs/heads/main");

    // Each ref answers from its own files; the default is the checkout's ref.
    assert!(paths_for(&engine, root, "feature_flagged", None).is_empty());
    let hits = paths_for(&engine, root, "feature_flagged", Some("feature"));
    assert!(hits.contains(&"src/flag.rs".to_string()), "{hits:?}");
    assert!(hits.contains(&"src/m3.rs".to_string()), "{hits:?}");
    assert_eq!(
        paths_for(&engine, root, "module_4_entry", None),
        vec!["src/m4.rs".to_string()]
    );
    assert!(paths_for(&engine, root, "module_4_entry", Some("feature")).is_empty());
    let mut req = SearchRequest::new("module_7_entry");
    req.ref_name = Some("feature".into());
    let response = engine.search(root, &req).unwrap();
    assert_eq!(response.ref_name.as_deref(), Some("refs/heads/feature"));
    assert_eq!(response.commit, Some(git(root, &["rev-parse", "feature"])));
    assert_eq!(response.hits[0].chunk.path, "src/m7.rs");

    // Stored documents: main's plus the three new versions' chunks.
    assert_eq!(feature.chunks_added, 3);
    assert_eq!(status.stored_chunks, all_before + feature.chunks_added);
    assert_eq!(
        fingerprint(&engine, root, Some("feature")),
        clean_fingerprint(root, &git(root, &["rev-parse", "feature"]))
    );
    assert_eq!(
        fingerprint(&engine, root, Some("main")),
        clean_fingerprint(root, &git(root, &["rev-parse", "main"]))
    );

    // Forgetting the feature ref removes only what main does not share.
    let forgot = engine.forget_ref(root, "feature").unwrap();
    assert_eq!(forgot.chunks_removed, 3, "{forgot:?}");
    assert_eq!(forgot.default_ref.as_deref(), Some("refs/heads/main"));
    let status = engine.status(root).unwrap();
    assert_eq!(status.refs.len(), 1);
    assert_eq!(status.stored_chunks, all_before);
    assert_eq!(
        fingerprint(&engine, root, Some("main")),
        clean_fingerprint(root, &git(root, &["rev-parse", "main"]))
    );
    let err = engine.forget_ref(root, "feature").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    // A ref never indexed is a clear NotFound naming what is indexed.
    let mut req = SearchRequest::new("x");
    req.ref_name = Some("nope".into());
    let err = engine.search(root, &req).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("main"), "{err}");
}

#[test]
fn a_rebase_whose_old_commits_are_gone_is_handled() {
    let repo = small_repo();
    let root = repo.path();
    git(root, &["checkout", "-q", "-b", "topic"]);
    write(root, "topic.py", "def topic_work():\n    return 'v1'\n");
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "topic v1"]);
    let (engine, _data) = engine();
    engine.index(root, &NoProgress).unwrap();
    let old = head(root);

    // main moves on; topic is rebased onto it, and the old commit is garbage-collected.
    git(root, &["checkout", "-q", "main"]);
    write(root, "a.py", "def alpha_on_main():\n    return 100\n");
    git(root, &["commit", "-q", "-am", "main moves"]);
    git(root, &["checkout", "-q", "topic"]);
    git(root, &["rebase", "-q", "main"]);
    git(root, &["reflog", "expire", "--expire=now", "--all"]);
    git(root, &["gc", "-q", "--prune=now"]);
    assert!(
        std::process::Command::new("git")
            .args(["-C", root.to_str().unwrap(), "cat-file", "-e", &old])
            .output()
            .is_ok_and(|o| !o.status.success()),
        "the old commit should be gone"
    );

    let report = engine.index(root, &NoProgress).unwrap();
    assert_eq!(report.plan, PlanKind::Compare, "{report:?}");
    assert_eq!(report.previous_commit.as_deref(), Some(old.as_str()));
    assert_eq!(report.files_chunked, 1, "only a.py changed: {report:?}");
    assert_eq!(paths_for(&engine, root, "alpha_on_main", None)[0], "a.py");
    assert_eq!(paths_for(&engine, root, "topic_work", None)[0], "topic.py");
    assert_eq!(
        fingerprint(&engine, root, None),
        clean_fingerprint(root, &head(root))
    );
}

#[test]
fn a_burst_of_requests_becomes_one_reindex_to_the_newest_commit() {
    let repo = small_repo();
    let root = repo.path();
    let (engine, data) = engine();
    engine.index(root, &NoProgress).unwrap();
    let dir = engine.repo_dir(&root.canonicalize().unwrap());

    // Another writer holds the lock while ten commits land, each asking for a reindex.
    let held = lock::try_lock(&dir).unwrap().expect("free");
    for i in 0..10 {
        write(
            root,
            &format!("burst{i}.py"),
            format!("def burst_{i}():\n    return {i}\n"),
        );
        git(root, &["add", "-A"]);
        git(root, &["commit", "-q", "-m", &format!("burst {i}")]);
        let queued = engine
            .index_coalesced(root, &IndexOptions::default(), Duration::ZERO, &NoProgress)
            .unwrap();
        assert!(queued.is_none(), "the busy writer gets the request");
    }
    drop(held);
    // The next writer serves the whole queue with one run, at the newest commit.
    let runs = engine
        .index_coalesced(root, &IndexOptions::default(), Duration::ZERO, &NoProgress)
        .unwrap()
        .expect("ran");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].commit.as_deref(), Some(head(root).as_str()));
    assert_eq!(runs[0].files_chunked, 10);
    assert!(!lock::pending(&dir));
    assert_eq!(paths_for(&engine, root, "burst_9", None)[0], "burst9.py");
    drop(data);
}

#[test]
fn readers_keep_their_snapshot_during_a_reindex() {
    let repo = small_repo();
    let root = repo.path();
    let (engine, _data) = engine();
    engine.index(root, &NoProgress).unwrap();
    let before = engine.snapshot_of(root, None).unwrap();
    let commit_before = before.ref_state().unwrap().commit.clone();
    write(root, "a.py", "def alpha_next():\n    return 2\n");
    git(root, &["commit", "-q", "-am", "next"]);
    engine.index(root, &NoProgress).unwrap();
    // The old snapshot still reads the old commit, whole; a new one reads the new commit.
    assert_eq!(before.ref_state().unwrap().commit, commit_before);
    assert!(
        before.chunks_of("a.py").unwrap()[0]
            .content
            .contains("alpha_value")
    );
    let after = engine.snapshot_of(root, None).unwrap();
    assert_eq!(after.ref_state().unwrap().commit, Some(head(root)));
    assert!(
        after.chunks_of("a.py").unwrap()[0]
            .content
            .contains("alpha_next")
    );
}

#[test]
fn a_bare_repository_indexes_pushed_refs_without_a_checkout() {
    let repo = small_repo();
    let bare = tempfile::tempdir().unwrap();
    git(
        bare.path(),
        &["clone", "-q", "--bare", repo.path().to_str().unwrap(), "."],
    );
    let (engine, _data) = engine();
    let report = engine
        .index_with(bare.path(), &options("main"), &NoProgress)
        .unwrap();
    assert_eq!(report.files_chunked, 4);
    assert!(!report.dirty);
    assert_eq!(paths_for(&engine, bare.path(), "GammaRay", None)[0], "c.go");
}

#[test]
fn a_directory_inside_a_repository_is_indexed_as_files_on_disk() {
    let repo = small_repo();
    let root = repo.path();
    // An ignored build directory and a tracked sub-directory: neither is the repository.
    write(root, ".gitignore", "build/\n");
    write(
        root,
        "build/gen.py",
        "def generated_helper():\n    return 0\n",
    );
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "ignore build"]);
    let (engine, _data) = engine();
    let report = engine.index(&root.join("build"), &NoProgress).unwrap();
    assert_eq!(report.ref_name, "worktree");
    assert_eq!(report.files_indexed, 1, "{report:?}");
    assert_eq!(
        paths_for(&engine, &root.join("build"), "generated_helper", None),
        vec!["gen.py".to_string()]
    );
    let err = engine
        .index_with(&root.join("docs"), &options("main"), &NoProgress)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}
