//! The `codectx` binary end to end: JSON output, human output and exit codes.

use crate::support::{codectx, fixture_repo, write};
use std::process::Output;

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn index_search_status_round_trip() {
    let repo = fixture_repo();
    let data = tempfile::tempdir().unwrap();
    let root = repo.path().to_str().unwrap();

    let report = json(&codectx(data.path(), &["index", root, "--json"]));
    assert_eq!(report["index"]["files_indexed"], 15);
    // A small change is embedded before the lexical commit: the commit is dense at once.
    assert_eq!(report["index"]["vectors_added"], report["index"]["chunks"]);
    assert_eq!(report["dense_coverage"], 1.0);

    let human = codectx(data.path(), &["index", root]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("files indexed  15"), "{text}");

    let hits = json(&codectx(
        data.path(),
        &[
            "search",
            "available stock",
            "--repo",
            root,
            "-k",
            "3",
            "--lang",
            "py",
            "--json",
        ],
    ));
    let first = &hits["hits"][0]["chunk"];
    assert_eq!(first["path"], "sample.py");
    assert!(first["span"]["start_line"].as_u64().unwrap() > 0);
    assert!(hits["commit"].as_str().unwrap().len() == 40);

    let human = codectx(
        data.path(),
        &["search", "ring buffer", "--repo", root, "--path", "*.c"],
    );
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.starts_with("sample.c:"), "{text}");

    let status = json(&codectx(data.path(), &["status", "--repo", root, "--json"]));
    assert_eq!(status["files"], 15);
    assert_eq!(status["stale"], false);
}

#[test]
fn bad_input_exits_non_zero_with_a_message() {
    let repo = fixture_repo();
    let data = tempfile::tempdir().unwrap();
    let root = repo.path().to_str().unwrap();
    let check = |args: &[&str], code: i32, needle: &str| {
        let out = codectx(data.path(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    };
    check(&["search", "x", "--repo", root], 3, "not indexed yet");
    check(&["index", "/no/such/dir"], 3, "/no/such/dir");
    check(&["status", "--repo", root], 3, "codectx index");
    check(&["frobnicate"], 2, "frobnicate");
    assert!(codectx(data.path(), &["index", root]).status.success());
    check(&["search", "", "--repo", root], 2, "query");
    check(
        &["search", "x", "--repo", root, "--lang", "cobol"],
        2,
        "cobol",
    );
    check(&["search", "x", "--repo", root, "-k", "0"], 2, "k:");
    check(
        &["search", "x", "--repo", root, "--path", "a/[b"],
        2,
        "a/[b",
    );
}

#[cfg(unix)]
#[test]
fn search_and_context_through_a_running_server() {
    let repo = fixture_repo();
    let data = tempfile::tempdir().unwrap();
    let root = repo.path().to_str().unwrap();
    let out = codectx(data.path(), &["index", root, "--no-embed"]);
    assert!(out.status.success());
    let (mut server, url, _lines) = crate::support::spawn_serve(crate::support::codectx_command(
        data.path(),
        &["serve", "--listen", "127.0.0.1:0", "--repo", root],
    ));
    let hits = json(&codectx(
        data.path(),
        &[
            "search",
            "ring_write",
            "--server",
            &url,
            "--repo",
            root,
            "--mode",
            "lexical",
            "--json",
        ],
    ));
    assert_eq!(hits["hits"][0]["path"], "sample.c", "{hits}");
    assert_eq!(hits["ref"], "refs/heads/main");
    let pack = json(&codectx(
        data.path(),
        &[
            "context",
            "ring_write overwrites the oldest entry",
            "--server",
            &url,
            "--repo",
            root,
            "--mode",
            "lexical",
            "--budget",
            "600",
            "--json",
        ],
    ));
    assert_eq!(pack["items"][0]["path"], "sample.c", "{pack}");
    assert!(pack["tokens_used"].as_u64().unwrap() <= 600);
    assert!(pack["markdown"].as_str().unwrap().contains("### sample.c:"));
    // A remote error keeps its exit code: not registered there.
    let other = tempfile::tempdir().unwrap();
    let out = codectx(
        data.path(),
        &[
            "search",
            "x",
            "--server",
            &url,
            "--repo",
            other.path().to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // index and status through the server: a new commit is indexed there, and seen.
    write(
        repo.path(),
        "extra.py",
        "def ring_reset(ring):\n    ring.clear()\n",
    );
    crate::support::commit_all(repo.path(), "extra");
    let head = crate::support::git(repo.path(), &["rev-parse", "HEAD"]);
    let indexed = json(&codectx(
        data.path(),
        &["index", root, "--server", &url, "--no-embed", "--json"],
    ));
    assert_eq!(indexed["commit"], head.as_str(), "{indexed}");
    assert_eq!(indexed["files"]["added"], 1, "{indexed}");
    let status = json(&codectx(
        data.path(),
        &["status", "--repo", root, "--server", &url, "--json"],
    ));
    assert_eq!(status["refs"][0]["commit"], head.as_str(), "{status}");
    assert_eq!(status["stale"], false);
    // SIGTERM: the server drains and exits cleanly.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(server.wait().unwrap().success());
}

#[test]
fn context_prints_a_pack_as_markdown_or_json_and_reads_the_task_from_stdin() {
    use std::io::Write;
    let repo = fixture_repo();
    let data = tempfile::tempdir().unwrap();
    let root = repo.path().to_str().unwrap();
    json(&codectx(data.path(), &["index", root, "--json"]));

    let pack = json(&codectx(
        data.path(),
        &[
            "context",
            "ring_write overwrites the oldest entry",
            "--repo",
            root,
            "--budget",
            "700",
            "--tokenizer",
            "o200k",
            "--json",
        ],
    ));
    assert_eq!(pack["tokenizer"], "o200k");
    let used = pack["tokens_used"].as_u64().unwrap();
    assert!(used > 0 && used <= 700, "{used}");
    let first = &pack["items"][0];
    assert_eq!(first["path"], "sample.c", "{pack}");
    assert!(!first["reasons"].as_array().unwrap().is_empty());

    let mut child = crate::support::codectx_command(
        data.path(),
        &["context", "-", "--repo", root, "--budget", "700"],
    )
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"ring_write overwrites the oldest entry\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.contains("### sample.c:"), "{md}");
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("of 700 tokens (cl100k)"), "{summary}");

    let bad = codectx(
        data.path(),
        &["context", "x", "--repo", root, "--budget", "0"],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("budget"));
}

#[cfg(unix)]
#[test]
fn serve_reads_its_options_from_a_toml_file() {
    let repo = fixture_repo();
    let data = tempfile::tempdir().unwrap();
    let root = repo.path().to_str().unwrap();
    let out = codectx(data.path(), &["index", root, "--no-embed"]);
    assert!(out.status.success());
    let cfg = data.path().join("serve.toml");
    std::fs::write(
        &cfg,
        format!("listen = \"127.0.0.1:0\"\nrepos = [\"{root}\"]\nmax_in_flight = 8\n"),
    )
    .unwrap();
    let (mut server, addr, _lines) = crate::support::spawn_serve(crate::support::codectx_command(
        data.path(),
        &["serve", "--config", cfg.to_str().unwrap()],
    ));
    let out = codectx(
        data.path(),
        &[
            "search",
            "ring_write",
            "--server",
            &addr,
            "--repo",
            root,
            "--mode",
            "lexical",
        ],
    );
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("sample.c"));

    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\nmax_inflight = 8\n").unwrap();
    let out = codectx(data.path(), &["serve", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("max_inflight"),
        "{err}"
    );
}

/// A reader that goes away (`codectx search ... | head -1`) ends the output quietly: no
/// panic, no backtrace, status 0 (as ripgrep), the work done.
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let repo = fixture_repo();
    let data = tempfile::tempdir().unwrap();
    let root = repo.path().to_str().unwrap();
    let commands: [&[&str]; 4] = [
        &["index", root, "--no-embed", "--json"],
        &[
            "search", "fn", "--repo", root, "--json", "-k", "200", "--mode", "lexical",
        ],
        &[
            "search", "fn", "--repo", root, "-k", "200", "--mode", "lexical",
        ],
        &["status", "--repo", root],
    ];
    for args in commands {
        let mut child = crate::support::codectx_command(data.path(), args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader is gone before the first byte is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // The index the closed pipe's `index` run wrote is whole.
    let status = json(&codectx(data.path(), &["status", "--repo", root, "--json"]));
    assert_eq!(status["files"], 15);
}

/// Escape sequences in a file's name or content are shown, never obeyed, by the human
/// output of `search` and `context`; `--json` carries them as JSON escapes.
#[test]
fn terminal_escapes_in_files_are_shown_not_obeyed() {
    let repo = tempfile::tempdir().unwrap();
    let hostile = "def pwned_title():\n    return \"\x1b]0;pwned\x07\x1b[2J\u{202e}\"\n";
    write(repo.path(), "evil\x1b[31mname.py", hostile);
    write(repo.path(), "plain.py", "def fine():\n    return 1\n");
    crate::support::git(repo.path(), &["init", "-q"]);
    crate::support::commit_all(repo.path(), "hostile");
    let data = tempfile::tempdir().unwrap();
    let root = repo.path().to_str().unwrap();
    let index = codectx(data.path(), &["index", root, "--no-embed"]);
    assert!(
        index.status.success(),
        "{}",
        String::from_utf8_lossy(&index.stderr)
    );

    for args in [
        &["search", "pwned_title", "--repo", root, "--mode", "lexical"][..],
        &[
            "context",
            "fix pwned_title",
            "--repo",
            root,
            "--mode",
            "lexical",
        ][..],
    ] {
        let out = codectx(data.path(), args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("pwned_title"), "{args:?}: {text}");
        for control in ['\x1b', '\x07', '\u{202e}'] {
            assert!(
                !text.contains(control),
                "{args:?} printed {control:?}: {text:?}"
            );
        }
        assert!(
            text.contains("\\x1b]0;pwned\\x07\\x1b[2J"),
            "{args:?}: {text}"
        );
        assert!(text.contains("evil\\x1b[31mname.py"), "{args:?}: {text}");
    }
    let out = codectx(
        data.path(),
        &[
            "search",
            "pwned_title",
            "--repo",
            root,
            "--mode",
            "lexical",
            "--json",
        ],
    );
    let hits = json(&out);
    assert_eq!(hits["hits"][0]["chunk"]["path"], "evil\x1b[31mname.py");
    assert!(!String::from_utf8_lossy(&out.stdout).contains('\x1b'));
}

/// A reindex started while another process holds the vector store (a search, say) waits
/// for it instead of failing; a search while a writer holds it answers lexically and says
/// why, promptly.
#[test]
fn a_reindex_waits_for_a_search_holding_the_vector_store() {
    use codectx::index::vectors::EmbeddedVectorStore;
    let repo = fixture_repo();
    let data = tempfile::tempdir().unwrap();
    let root = repo.path().canonicalize().unwrap();
    let root_arg = root.to_str().unwrap();
    let first = codectx(data.path(), &["index", root_arg]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let store_path = codectx::Engine::new(codectx::config::Config::with_data_dir(data.path()))
        .unwrap()
        .repo_dir(&root)
        .join("vectors.redb");
    assert!(store_path.is_file(), "{}", store_path.display());

    // This test process holds the store, as a search process does while it answers.
    let held = EmbeddedVectorStore::open_existing(&store_path)
        .unwrap()
        .unwrap();
    let started = std::time::Instant::now();
    let search = codectx(
        data.path(),
        &["search", "ring buffer", "--repo", root_arg, "--json"],
    );
    let hits = json(&search);
    assert!(
        hits["degraded"]
            .as_str()
            .unwrap_or_default()
            .contains("held by another"),
        "{hits}"
    );
    assert!(hits["hits"].as_array().is_some_and(|h| !h.is_empty()));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));

    write(
        repo.path(),
        "extra.py",
        "def brand_new_helper():\n    return 42\n",
    );
    crate::support::commit_all(repo.path(), "extra");
    let index = crate::support::codectx_command(data.path(), &["index", root_arg, "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    drop(held);
    let out = index.wait_with_output().unwrap();
    let report = json(&out);
    assert_eq!(report["index"]["changes"]["added"], 1, "{report}");
    let status = json(&codectx(
        data.path(),
        &["status", "--repo", root_arg, "--json"],
    ));
    assert_eq!(status["stale"], false, "{status}");
    assert_eq!(status["dense_coverage"], 1.0, "{status}");
}

#[test]
fn serve_refuses_to_let_clients_register_the_root_or_a_system_directory() {
    let data = tempfile::tempdir().unwrap();
    for root in ["/", "/etc", "/usr"] {
        let out = codectx(
            data.path(),
            &["serve", "--listen", "127.0.0.1:0", "--allow-root", root],
        );
        assert_eq!(out.status.code(), Some(2), "{root}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("allowed root {root}:")), "{err}");
    }
}

#[cfg(unix)]
#[test]
fn serve_gives_each_configured_client_only_its_repositories() {
    let (mine, theirs) = (fixture_repo(), fixture_repo());
    let data = tempfile::tempdir().unwrap();
    let (a, b) = (
        mine.path().to_str().unwrap(),
        theirs.path().to_str().unwrap(),
    );
    for root in [a, b] {
        assert!(
            codectx(data.path(), &["index", root, "--no-embed"])
                .status
                .success()
        );
    }
    let cfg = data.path().join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\nrepos = [\"{a}\", \"{b}\"]\n\n[[clients]]\nname = \"alpha\"\ntoken_env = \"CODECTX_TEST_ALPHA_TOKEN\"\nrepositories = [\"{a}\"]\n"
        ),
    )
    .unwrap();
    // A client whose token variable is unset stops the server at start, naming it.
    let out =
        crate::support::codectx_command(data.path(), &["serve", "--config", cfg.to_str().unwrap()])
            .env_remove("CODECTX_TEST_ALPHA_TOKEN")
            .output()
            .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("$CODECTX_TEST_ALPHA_TOKEN is not set"),
        "{err}"
    );

    let mut command =
        crate::support::codectx_command(data.path(), &["serve", "--config", cfg.to_str().unwrap()]);
    command.env("CODECTX_TEST_ALPHA_TOKEN", "alpha-Zq8Lm2Vb4");
    let (mut server, addr, _lines) = crate::support::spawn_serve(command);
    let search = |repo: &str| {
        crate::support::codectx_command(
            data.path(),
            &[
                "search",
                "ring_write",
                "--server",
                &addr,
                "--repo",
                repo,
                "--mode",
                "lexical",
            ],
        )
        .env("CODECTX_AUTH_TOKEN", "alpha-Zq8Lm2Vb4")
        .output()
        .unwrap()
    };
    let own = search(a);
    let other = search(b);
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    assert!(String::from_utf8_lossy(&own.stdout).contains("sample.c"));
    assert!(!other.status.success());
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(
        err.contains("client \"alpha\" may not use repository"),
        "{err}"
    );
}
