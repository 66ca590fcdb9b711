//! The quality benchmark's dataset builders and harness on small real git repositories.

use crate::support::{engine, git, write};
use codectx::bench::metrics::Gold;
use codectx::bench::mine::{self, CommitMining, Package};
use codectx::bench::quality::{self, Entry, QualityOptions};
use codectx::model::Language;
use codectx::retrieve::SearchMode;
use std::path::Path;

fn commit(dir: &Path, message: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

const PARSER: &str = "def parse_header(line):\n    name, value = line.split(':', 1)\n    return name.strip(), value.strip()\n\n\ndef parse_body(text):\n    return text.strip()\n";

/// A history with one commit worth mining and one of every kind the miner skips.
fn history() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    git(root, &["init", "-q"]);
    write(root, "http/parser.py", PARSER);
    write(root, "http/client.py", "def get(url):\n    return url\n");
    write(root, "README.md", "# http\n");
    let base = commit(
        root,
        "Start the http package with a header parser and a client",
    );
    // Kept: one source file modified, a long message with a trailer and an issue number.
    write(
        root,
        "http/parser.py",
        PARSER.replace("split(':', 1)", "partition(':')[::2]"),
    );
    let good = commit(
        root,
        "Parse header lines without failing when the value has no colon (#42)\n\nSigned-off-by: Dev <dev@example.org>",
    );
    write(
        root,
        "http/client.py",
        "def get(url):\n    return url.strip()\n",
    );
    commit(root, "Strip urls");
    write(root, "README.md", "# http\n\nA client.\n");
    write(
        root,
        "tests/test_parser.py",
        "def test_parse():\n    pass\n",
    );
    commit(
        root,
        "Document the package and add a first test for the header parser here",
    );
    for f in ["a", "b", "c", "d"] {
        write(root, &format!("http/{f}.py"), "x = 1\n");
    }
    commit(
        root,
        "Add four new modules that the client will need for the next release",
    );
    write(root, "http/e.py", "y = 2\n");
    commit(
        root,
        "Add one more module that only adds a file and modifies nothing else",
    );
    git(root, &["checkout", "-q", "-b", "side"]);
    write(
        root,
        "http/client.py",
        "def get(url):\n    return url.strip().lower()\n",
    );
    commit(
        root,
        "Lowercase urls in the client before any request is sent out to servers",
    );
    git(root, &["checkout", "-q", "main"]);
    git(
        root,
        &[
            "merge",
            "-q",
            "--no-ff",
            "-m",
            "Merge the side branch with lowercase urls into main",
            "side",
        ],
    );
    (dir, base, good)
}

#[test]
fn commits_are_mined_into_message_to_changed_lines() {
    let (repo, base, good) = history();
    let (entries, report) = mine::mine_commits(repo.path(), &CommitMining::default()).unwrap();
    let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 2, "{ids:?} {report:?}");
    // Newest first: the side-branch commit (a real single-parent commit), then ours.
    let e = &entries[1];
    assert_eq!(e.id, format!("commit-{}", &good[..12]));
    assert_eq!(e.commit.as_deref(), Some(base.as_str()));
    assert_eq!(
        e.query,
        "Parse header lines without failing when the value has no colon"
    );
    assert_eq!(
        e.gold,
        vec![Gold {
            path: "http/parser.py".into(),
            start_line: Some(2),
            end_line: Some(2)
        }]
    );
    let skipped = |r: &str| report.skipped.get(r).copied().unwrap_or(0);
    assert_eq!(skipped("merge"), 1);
    assert_eq!(skipped("root commit"), 1);
    assert_eq!(skipped("message under the word minimum"), 1);
    assert_eq!(skipped("only tests, docs, config or lockfiles"), 1);
    assert_eq!(skipped("too many source files"), 1);
    assert_eq!(skipped("only adds or deletes files"), 1);
}

#[test]
fn doc_comments_are_mined_and_stripped_from_what_is_indexed() {
    let src = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    write(
        src.path(),
        "rs/src/lib.rs",
        "//! Ring buffers.\n\n/// Appends a value to the ring, overwriting the oldest one.\npub fn ring_push(r: &mut Vec<u8>, v: u8) {\n    r.push(v);\n}\n\n/// Appends a value to the ring, overwriting the oldest one.\npub fn ring_push_front(r: &mut Vec<u8>, v: u8) {\n    r.insert(0, v);\n}\n\n/// Short.\npub fn tiny() {}\n",
    );
    write(
        src.path(),
        "py/pkg/util.py",
        "\"\"\"Utilities.\"\"\"\n\n\ndef chunked(items, size):\n    \"\"\"Splits a list into consecutive pieces of a given size.\n\n    More text.\n    \"\"\"\n    return [items[i:i + size] for i in range(0, len(items), size)]\n",
    );
    let packages = vec![
        Package {
            name: "py".into(),
            language: Language::Python,
            root: src.path().join("py"),
        },
        Package {
            name: "rs".into(),
            language: Language::Rust,
            root: src.path().join("rs"),
        },
    ];
    let (entries, report) = mine::mine_docs(&packages, work.path()).unwrap();
    assert_eq!(report.kept, 2, "{report:?}");
    let py = entries.iter().find(|e| e.id.starts_with("doc-py")).unwrap();
    assert_eq!(
        py.query,
        "Splits a list into consecutive pieces of a given size."
    );
    assert_eq!(py.split.as_deref(), Some("dev"));
    assert_eq!(py.gold[0].path, "pkg/util.py");
    assert_eq!(py.gold[0].start_line, Some(4));
    let rs = entries.iter().find(|e| e.id.starts_with("doc-rs")).unwrap();
    assert_eq!(rs.split.as_deref(), Some("test"));
    assert_eq!(
        rs.query,
        "Appends a value to the ring, overwriting the oldest one."
    );
    // Two functions share the sentence: one gold set.
    assert_eq!(rs.gold.len(), 2);
    let lib = std::fs::read_to_string(Path::new(&rs.repo).join("src/lib.rs")).unwrap();
    let util = std::fs::read_to_string(Path::new(&py.repo).join("pkg/util.py")).unwrap();
    assert!(
        !lib.contains("Appends") && !lib.contains("Ring buffers"),
        "{lib}"
    );
    assert!(
        !util.contains("Splits") && !util.contains("Utilities"),
        "{util}"
    );
    // Line numbers are kept: the gold span still starts at the definition.
    let line = |text: &str, n: usize| text.lines().nth(n - 1).unwrap().to_string();
    assert!(line(&lib, rs.gold[0].start_line.unwrap()).contains("fn ring_push"));
    assert!(line(&util, 4).starts_with("def chunked"));
}

#[test]
fn the_harness_scores_rankings_and_packs_and_reports_bad_lines() {
    let (repo, base, _) = history();
    let data = tempfile::tempdir().unwrap();
    let good = Entry {
        id: "one".into(),
        repo: repo.path().display().to_string(),
        commit: Some(base.clone()),
        query: "parse header line split name value".into(),
        gold: vec![Gold {
            path: "http/parser.py".into(),
            start_line: Some(1),
            end_line: Some(3),
        }],
        split: None,
    };
    let mut lines = vec![serde_json::to_string(&good).unwrap()];
    lines.push("{not json".into());
    let mut missing_repo = good.clone();
    missing_repo.repo = "/no/such/repo".into();
    lines.push(serde_json::to_string(&missing_repo).unwrap());
    let mut missing_commit = good.clone();
    missing_commit.commit = Some("0123456789abcdef0123456789abcdef01234567".into());
    lines.push(serde_json::to_string(&missing_commit).unwrap());
    let mut missing_gold = good.clone();
    missing_gold.gold[0].path = "http/e.py".into(); // added later, not at the base commit
    lines.push(serde_json::to_string(&missing_gold).unwrap());
    let dataset = data.path().join("d.jsonl");
    std::fs::write(&dataset, lines.join("\n")).unwrap();

    let (engine, _d) = engine();
    let options = QualityOptions {
        dataset: dataset.clone(),
        modes: vec![SearchMode::Lexical],
        context: true,
        budgets: vec![300, 4000],
        tokenizer: "cl100k".into(),
        limit: None,
        per_repo: None,
        split: None,
        out: None,
        fusion: Default::default(),
        features_out: Some(data.path().join("features.jsonl")),
    };
    let report = quality::run(&engine, &options).unwrap();
    // The training data of the ranking model: a header naming the features, then the one
    // usable query's candidates with their features, the gold file labelled.
    let features = std::fs::read_to_string(data.path().join("features.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = features
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{features}");
    assert_eq!(
        rows[0]["features"].as_array().unwrap().len(),
        codectx::retrieve::rank::FEATURES.len()
    );
    let paths = rows[1]["paths"].as_array().unwrap();
    let labels = rows[1]["labels"].as_array().unwrap();
    let x = rows[1]["x"].as_array().unwrap();
    assert_eq!((paths.len(), x.len()), (labels.len(), labels.len()));
    let gold: Vec<&str> = paths
        .iter()
        .zip(labels)
        .filter(|(_, l)| l.as_u64() == Some(1))
        .map(|(p, _)| p.as_str().unwrap())
        .collect();
    assert_eq!(gold, vec![good.gold[0].path.as_str()]);
    // Rankings against the baseline, paired per query, for each metric.
    let metrics: Vec<&str> = report
        .rankings_against_baseline
        .iter()
        .map(|c| c.metric.as_str())
        .collect();
    assert_eq!(metrics, vec!["Acc@1", "Acc@5", "MRR"]);
    assert!(!report.ranker.is_empty());
    let lines_reported: Vec<usize> = report.problems.iter().map(|p| p.line).collect();
    assert_eq!(lines_reported, vec![2, 3, 4, 5], "{:?}", report.problems);
    assert!(report.problems[2].reason.contains("0123456789abcdef"));
    assert!(report.problems[3].reason.contains("http/e.py"));
    assert_eq!(report.queries, 1);
    let lexical = report
        .rankings
        .iter()
        .find(|r| r.name == "lexical")
        .unwrap();
    assert_eq!(lexical.acc[&1], 1.0, "{lexical:?}");
    assert_eq!(lexical.mrr, 1.0);
    assert!(report.rankings.iter().any(|r| r.name == "whole-file BM25"));
    let pack = report
        .packs
        .iter()
        .find(|p| p.name == "context pack (lexical)")
        .unwrap();
    assert_eq!(pack.line_recall[&4000], 1.0, "{pack:?}");
    assert!(pack.mean_tokens[&300] <= 300.0);
    let baseline = report
        .packs
        .iter()
        .find(|p| p.name == "whole-file BM25 pack")
        .unwrap();
    assert!(baseline.mean_tokens[&300] <= 300.0);
    // The pack against the baseline, paired: with one query the mean is that query's
    // difference and the interval is that point.
    let budgets: Vec<(&str, usize)> = report
        .against_baseline
        .iter()
        .map(|c| (c.packer.as_str(), c.budget))
        .collect();
    assert_eq!(
        budgets,
        vec![
            ("context pack (lexical)", 300),
            ("context pack (lexical)", 4000)
        ]
    );
    let at4k = &report.against_baseline[1].paired;
    let diff = pack.line_recall[&4000] - baseline.line_recall[&4000];
    assert_eq!((at4k.mean, at4k.low, at4k.high), (diff, diff, diff));
    assert_eq!(
        (at4k.wins, at4k.losses),
        ((diff > 0.0) as usize, (diff < 0.0) as usize)
    );
    let md = quality::markdown(&report);
    assert!(md.contains("| lexical |") && md.contains("line 3:"), "{md}");
    assert!(
        md.contains("Pack minus whole-file baseline")
            && md.contains(&format!("| context pack (lexical) | 4000 | {:+.3} |", diff)),
        "{md}"
    );
    let svg = quality::svg(&report);
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
}
