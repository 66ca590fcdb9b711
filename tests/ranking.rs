//! The ranking stage on real git repositories: the import graph kept exact through
//! incremental reindexes (rename, delete, move), the history lane (past commits, never a
//! later one, redacted), the learned model with its reasons, and the fallback to RRF when
//! the model file is missing or corrupt.

use crate::support::{engine, git, write};
use codectx::Engine;
use codectx::config::{Config, RankerChoice};
use codectx::engine::{IndexOptions, NoProgress};
use codectx::retrieve::SearchRequest;
use codectx::syntax::imports::module_key;
use std::collections::BTreeSet;
use std::path::Path;

/// Commits everything with its own committer time: one day after the last commit (the
/// history lane reads commits up to a ref's commit time, and a test's commits would
/// otherwise share a second).
fn commit(root: &Path, message: &str) -> String {
    git(root, &["add", "-A"]);
    let n: i64 = git(root, &["rev-list", "--all", "--count"])
        .parse()
        .unwrap_or(0);
    let date = format!("{} +0000", 1_700_000_000 + 86_400 * n);
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args([
            "-c",
            "user.name=codectx-test",
            "-c",
            "user.email=test@codectx.invalid",
        ])
        .args(["-c", "commit.gpgsign=false", "commit", "-q", "-m", message])
        .env("GIT_COMMITTER_DATE", &date)
        .env("GIT_AUTHOR_DATE", &date)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    git(root, &["rev-parse", "HEAD"])
}

fn index_at(engine: &Engine, root: &Path, commit: &str) {
    let options = IndexOptions {
        ref_name: Some(commit.to_string()),
        ..Default::default()
    };
    engine.index_with(root, &options, &NoProgress).unwrap();
}

/// The whole import graph of a ref: "importer -> key" for every file and key the index
/// holds.
fn graph(engine: &Engine, root: &Path, commit: &str) -> BTreeSet<String> {
    let snapshot = engine.snapshot_of(root, Some(commit)).unwrap();
    let mut out = BTreeSet::new();
    for path in snapshot.paths().unwrap() {
        for key in snapshot.imports_of(&path).unwrap() {
            // Only keys that name a file of the repository: the graph's edges.
            if snapshot
                .paths()
                .unwrap()
                .iter()
                .any(|p| module_key(p) == key)
            {
                for importer in snapshot.importers_of(&key).unwrap() {
                    out.insert(format!("{importer} -> {key}"));
                }
            }
        }
    }
    out
}

fn clean_graph(root: &Path, commit: &str) -> BTreeSet<String> {
    let (fresh, _data) = engine();
    index_at(&fresh, root, commit);
    graph(&fresh, root, commit)
}

#[test]
fn the_import_graph_stays_exact_through_rename_delete_and_move() {
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    git(root, &["init", "-q"]);
    write(root, "pkg/__init__.py", "");
    write(
        root,
        "pkg/core.py",
        "class Engine:\n    def run(self):\n        return 1\n",
    );
    write(
        root,
        "pkg/app.py",
        "from pkg.core import Engine\n\ndef main():\n    return Engine().run()\n",
    );
    write(
        root,
        "pkg/cli.py",
        "import pkg.app\n\ndef cli():\n    return pkg.app.main()\n",
    );
    let c1 = commit(root, "first");
    let (engine, _data) = engine();
    index_at(&engine, root, &c1);
    let snapshot = engine.snapshot_of(root, Some(&c1)).unwrap();
    assert_eq!(
        snapshot.importers_of("pkg/core").unwrap(),
        BTreeSet::from(["pkg/app.py".to_string()])
    );
    assert_eq!(
        snapshot.importers_of("pkg/app").unwrap(),
        BTreeSet::from(["pkg/cli.py".to_string()])
    );
    assert_eq!(graph(&engine, root, &c1), clean_graph(root, &c1));

    // Rename the imported module and follow it in its importer.
    git(root, &["mv", "pkg/core.py", "pkg/engine.py"]);
    write(
        root,
        "pkg/app.py",
        "from pkg.engine import Engine\n\ndef main():\n    return Engine().run()\n",
    );
    let c2 = commit(root, "rename core to engine");
    index_at(&engine, root, &c2);
    let snapshot = engine.snapshot_of(root, Some(&c2)).unwrap();
    assert!(snapshot.importers_of("pkg/core").unwrap().is_empty());
    assert_eq!(
        snapshot.importers_of("pkg/engine").unwrap(),
        BTreeSet::from(["pkg/app.py".to_string()])
    );
    assert_eq!(graph(&engine, root, &c2), clean_graph(root, &c2));
    // The older ref still sees its own graph.
    let old = engine.snapshot_of(root, Some(&c1)).unwrap();
    assert!(old.importers_of("pkg/engine").unwrap().is_empty());

    // Delete the importer of `pkg.app`.
    git(root, &["rm", "-q", "pkg/cli.py"]);
    let c3 = commit(root, "drop the cli");
    index_at(&engine, root, &c3);
    let snapshot = engine.snapshot_of(root, Some(&c3)).unwrap();
    assert!(snapshot.importers_of("pkg/app").unwrap().is_empty());
    assert_eq!(graph(&engine, root, &c3), clean_graph(root, &c3));

    // Move the importer, content unchanged.
    git(root, &["mv", "pkg/app.py", "svc_app.py"]);
    let c4 = commit(root, "move the app");
    index_at(&engine, root, &c4);
    let snapshot = engine.snapshot_of(root, Some(&c4)).unwrap();
    assert_eq!(
        snapshot.importers_of("pkg/engine").unwrap(),
        BTreeSet::from(["svc_app.py".to_string()])
    );
    assert_eq!(graph(&engine, root, &c4), clean_graph(root, &c4));
}

#[test]
fn the_history_lane_reads_past_commits_up_to_the_ref_and_redacted() {
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    git(root, &["init", "-q"]);
    write(
        root,
        "tokenizer.py",
        "def split(text):\n    return text.split()\n",
    );
    write(root, "lexer.py", "def lex(text):\n    return list(text)\n");
    let c1 = commit(root, "Initial tokenizer and lexer");
    write(
        root,
        "tokenizer.py",
        "def split(text):\n    return text.split() if text else []\n",
    );
    let token = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
    let c2 = commit(
        root,
        &format!("Fix crash in the splitter when the input is empty\n\nreported with {token}"),
    );
    write(
        root,
        "lexer.py",
        "def lex(text):\n    return list(text or '')\n",
    );
    let c3 = commit(root, "Handle unicode surrogates in the lexer");

    let (engine, _data) = engine();
    index_at(&engine, root, &c2);
    index_at(&engine, root, &c3);
    let terms = |q: &str| codectx::retrieve::query_terms(q);

    // At c2 the splitter fix is history; the lexer fix (c3, later) is not.
    let at_c2 = engine.snapshot_of(root, Some(&c2)).unwrap();
    let hits = at_c2
        .history(&terms("crash splitter empty input"), 10)
        .unwrap();
    assert_eq!(hits[0].id, c2);
    assert_eq!(hits[0].paths, vec!["tokenizer.py".to_string()]);
    assert!(
        at_c2
            .history(&terms("unicode surrogates"), 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(at_c2.commits_touching("lexer.py", None).unwrap(), 1);
    // At c3 it is.
    let at_c3 = engine.snapshot_of(root, Some(&c3)).unwrap();
    let hits = at_c3.history(&terms("unicode surrogates"), 10).unwrap();
    assert_eq!(hits[0].id, c3);
    assert_eq!(at_c3.commits_touching("lexer.py", None).unwrap(), 2);
    assert_eq!(
        at_c3
            .commits_touching("lexer.py", Some("tokenizer.py"))
            .unwrap(),
        1
    );
    // Each commit once, though two refs brought the same history.
    let state = at_c3.state().unwrap();
    assert_eq!(state.history.commits, 3);
    assert!(!c1.is_empty());
    // The secret in a commit message never reached the index.
    let hits = at_c3.history(&terms("reported with"), 10).unwrap();
    let subject_and_more = format!("{:?}", hits);
    assert!(!subject_and_more.contains(token));
    assert!(at_c3.history(&terms(token), 10).unwrap().is_empty());
    // Commit documents are no chunks.
    assert!(
        at_c3
            .all_chunks()
            .unwrap()
            .iter()
            .all(|c| c.path.ends_with(".py"))
    );
}

/// A small project where a bug report's words also fill its issue template.
fn bug_report_repo() -> (tempfile::TempDir, String) {
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    git(root, &["init", "-q"]);
    write(
        root,
        ".github/ISSUE_TEMPLATE/bug_report.yml",
        "name: Bug report\ndescription: Report a bug\nbody:\n  - type: textarea\n    attributes:\n      label: Describe the bug, steps to reproduce, expected behavior, traceback\n",
    );
    write(
        root,
        "shop/invoice.py",
        "from shop.tax import rate\n\ndef compute_total(items):\n    \"\"\"Sum of the items with tax.\"\"\"\n    subtotal = sum(i.price for i in items)\n    return subtotal / len(items) * rate()\n",
    );
    write(root, "shop/tax.py", "def rate():\n    return 1.2\n");
    write(
        root,
        "shop/cli.py",
        "from shop.invoice import compute_total\n\ndef main(items):\n    print(compute_total(items))\n",
    );
    write(
        root,
        "README.md",
        "# shop\n\nCompute invoice totals. Report a bug with the template.\n",
    );
    let c = commit(root, "shop");
    (repo, c)
}

const BUG: &str = "**Describe the bug**\ncompute_total crashes on an empty cart\n\n**Steps to reproduce**\n```\nTraceback (most recent call last):\n  File \"/srv/shop/cli.py\", line 4, in main\n  File \"/srv/shop/invoice.py\", line 6, in compute_total\nZeroDivisionError: division by zero\n```\n**Expected behavior**\nA total of 0";

#[test]
fn the_shipped_model_ranks_the_failing_file_first_and_says_why() {
    let (repo, c) = bug_report_repo();
    let (engine, _data) = engine();
    index_at(&engine, repo.path(), &c);
    let mut req = SearchRequest::new(BUG);
    req.ref_name = Some(c.clone());
    let r = engine.search(repo.path(), &req).unwrap();
    assert_ne!(r.ranker, "rrf");
    assert_eq!(r.degraded, None);
    assert_eq!(r.files[0].path, "shop/invoice.py", "{:?}", r.files);
    assert!(!r.files[0].why.is_empty());
    let template = r
        .files
        .iter()
        .position(|f| f.path.contains("ISSUE_TEMPLATE"))
        .unwrap_or(usize::MAX);
    assert!(template > 1, "{:?}", r.files);
    // The reasons name features the stage computes, largest share first.
    let why = &r.files[0].why;
    assert!(
        why.windows(2)
            .all(|w| w[0].contribution.abs() >= w[1].contribution.abs())
    );
    assert!(
        why.iter()
            .all(|c| codectx::retrieve::rank::FEATURES.contains(&c.feature.as_str()))
    );
}

#[test]
fn a_missing_or_corrupt_model_falls_back_to_rrf_and_says_so() {
    let (repo, c) = bug_report_repo();
    let models = tempfile::tempdir().unwrap();
    let corrupt = models.path().join("corrupt.json");
    std::fs::write(&corrupt, b"{\"format\": \"codectx-ranker\", \"version\": 1, \"id\": \"x\", \"features\": [\"no_such_feature\"], \"weights\": [1.0]}").unwrap();
    let garbage = models.path().join("garbage.json");
    std::fs::write(&garbage, b"\x00\xffnot json").unwrap();
    let missing = models.path().join("missing.json");
    for (path, expected) in [
        (missing, "missing.json"),
        (corrupt, "no_such_feature"),
        (garbage, "not readable"),
    ] {
        let data = tempfile::tempdir().unwrap();
        let mut config = Config::with_data_dir(data.path());
        config.ranker = RankerChoice::File(path);
        let engine = Engine::new(config).unwrap();
        index_at(&engine, repo.path(), &c);
        let mut req = SearchRequest::new(BUG);
        req.ref_name = Some(c.clone());
        let r = engine.search(repo.path(), &req).unwrap();
        assert_eq!(r.ranker, "rrf");
        let degraded = r.degraded.unwrap_or_default();
        assert!(
            degraded.contains("ranking model") && degraded.contains(expected),
            "{degraded}"
        );
        assert!(!r.files.is_empty());
        assert!(r.files.iter().all(|f| f.why.is_empty()));
        // The failing frame's file still leads under RRF.
        assert_eq!(r.files[0].path, "shop/invoice.py", "{:?}", r.files);
    }
    // Chosen on purpose, RRF is no degradation.
    let data = tempfile::tempdir().unwrap();
    let mut config = Config::with_data_dir(data.path());
    config.ranker = RankerChoice::Rrf;
    let engine = Engine::new(config).unwrap();
    index_at(&engine, repo.path(), &c);
    let mut req = SearchRequest::new(BUG);
    req.ref_name = Some(c);
    let r = engine.search(repo.path(), &req).unwrap();
    assert_eq!((r.ranker.as_str(), r.degraded), ("rrf", None));
}
