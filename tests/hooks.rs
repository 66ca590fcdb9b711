//! Git hooks end to end: the real `codectx` binary installed into a real repository's hooks,
//! fired by real git commands, indexing in the background.

use crate::support::{codectx, git, write};
use codectx::Engine;
use codectx::config::Config;
use std::path::Path;
use std::time::{Duration, Instant};

/// Waits until the default ref of `root`'s index is `ref_name` at `commit`.
fn wait_for_index(data: &Path, root: &Path, ref_name: &str, commit: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = String::new();
    while Instant::now() < deadline {
        // A fresh engine each time: the indexer is another process.
        let engine = Engine::new(Config::with_data_dir(data)).unwrap();
        if let Ok(snapshot) = engine.snapshot_of(root, None)
            && let Some(r) = snapshot.ref_state()
        {
            if r.name == ref_name && r.commit.as_deref() == Some(commit) {
                return;
            }
            last = format!("{} @ {:?}", r.name, r.commit);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = std::fs::read_to_string(data.join("logs/hooks.log")).unwrap_or_default();
    panic!("the index never reached {ref_name} @ {commit} (last: {last}); hook log:\n{log}");
}

fn install(data: &Path, root: &Path) -> String {
    let out = codectx(data, &["hook", "install", "--repo", root.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[cfg(unix)]
fn executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[cfg(unix)]
#[test]
fn hooks_reindex_on_commit_amend_checkout_and_merge_and_chain_an_existing_hook() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = tempfile::tempdir().unwrap();
    write(root, "app.py", "def handler_one():\n    return 1\n");
    git(root, &["init", "-q"]);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "one"]);
    // Somebody's post-commit hook is already there.
    let hooks = root.join(".git/hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let theirs = "#!/bin/sh\necho ran >> \"$(git rev-parse --git-dir)/theirs.log\"\n";
    executable(&hooks.join("post-commit"), theirs);

    let out = install(data.path(), root);
    assert!(out.contains("chaining the existing hook"), "{out}");
    let head = |r: &Path| git(r, &["rev-parse", "HEAD"]);

    // post-commit
    write(root, "app.py", "def handler_two():\n    return 2\n");
    git(root, &["commit", "-q", "-am", "two"]);
    wait_for_index(data.path(), root, "refs/heads/main", &head(root));
    let log = std::fs::read_to_string(root.join(".git/theirs.log")).unwrap();
    assert_eq!(log.lines().count(), 1, "the chained hook ran once");

    // post-rewrite (amend)
    write(root, "app.py", "def handler_amended():\n    return 3\n");
    git(
        root,
        &["commit", "-q", "-a", "--amend", "-m", "two, amended"],
    );
    wait_for_index(data.path(), root, "refs/heads/main", &head(root));

    // post-checkout: a branch made elsewhere, then checked out
    git(root, &["branch", "side"]);
    git(root, &["checkout", "-q", "side"]);
    wait_for_index(data.path(), root, "refs/heads/side", &head(root));
    write(root, "side.py", "def side_feature():\n    return 4\n");
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "side"]);
    wait_for_index(data.path(), root, "refs/heads/side", &head(root));

    // post-merge
    git(root, &["checkout", "-q", "main"]);
    wait_for_index(data.path(), root, "refs/heads/main", &head(root));
    git(
        root,
        &["merge", "-q", "--no-ff", "side", "-m", "merge side"],
    );
    wait_for_index(data.path(), root, "refs/heads/main", &head(root));
    let engine = Engine::new(Config::with_data_dir(data.path())).unwrap();
    let hits = engine
        .search(root, &codectx::retrieve::SearchRequest::new("side_feature"))
        .unwrap()
        .hits;
    assert_eq!(hits[0].chunk.path, "side.py");

    // Uninstall puts back what was there.
    let out = codectx(
        data.path(),
        &["hook", "uninstall", "--repo", root.to_str().unwrap()],
    );
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(hooks.join("post-commit")).unwrap(),
        theirs
    );
    for name in ["post-merge", "post-checkout", "post-rewrite"] {
        assert!(!hooks.join(name).exists(), "{name} left behind");
    }
    assert!(!hooks.join("post-commit.codectx-chained").exists());
}

#[cfg(unix)]
#[test]
fn hooks_honour_core_hooks_path_and_bare_repositories_get_post_receive() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = tempfile::tempdir().unwrap();
    write(root, "lib.rs", "pub fn pushed_function() {}\n");
    git(root, &["init", "-q"]);
    git(root, &["config", "core.hooksPath", "custom-hooks"]);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "one"]);
    install(data.path(), root);
    assert!(root.join("custom-hooks/post-commit").is_file());
    assert!(!root.join(".git/hooks/post-commit").exists());

    // A bare server repository: post-receive reads the pushed refs and indexes them.
    let bare = tempfile::tempdir().unwrap();
    git(bare.path(), &["init", "-q", "--bare"]);
    let out = install(data.path(), bare.path());
    assert!(out.contains("post-receive"), "{out}");
    git(
        root,
        &[
            "push",
            "-q",
            bare.path().to_str().unwrap(),
            "main:refs/heads/main",
        ],
    );
    let commit = git(root, &["rev-parse", "HEAD"]);
    let bare_root = bare.path().canonicalize().unwrap();
    wait_for_index(data.path(), &bare_root, "refs/heads/main", &commit);
}

#[cfg(unix)]
#[test]
fn hooks_installed_with_a_server_ask_it_to_reindex_and_index_locally_when_it_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    write(&root, "app.py", "def served_one():\n    return 1\n");
    git(&root, &["init", "-q"]);
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-q", "-m", "one"]);
    let head = |r: &Path| git(r, &["rev-parse", "HEAD"]);

    // The server keeps its own data directory; the hooks' is another.
    let served = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let (mut server, url, lines) = crate::support::spawn_serve(crate::support::codectx_command(
        served.path(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--allow-root",
            root.to_str().unwrap(),
        ],
    ));
    let out = codectx(
        local.path(),
        &[
            "hook",
            "install",
            "--repo",
            root.to_str().unwrap(),
            "--server",
            &url,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    write(&root, "app.py", "def served_two():\n    return 2\n");
    git(&root, &["commit", "-q", "-am", "two"]);
    wait_for_index(served.path(), &root, "refs/heads/main", &head(&root));
    let hooks_engine = Engine::new(Config::with_data_dir(local.path())).unwrap();
    assert!(
        hooks_engine.snapshot_of(&root, None).is_err(),
        "the server indexed it; the hook did not index locally as well"
    );

    // The server is gone: the next commit is indexed by the hook itself.
    server.kill().unwrap();
    server.wait().unwrap();
    drop(lines);
    write(&root, "app.py", "def local_three():\n    return 3\n");
    git(&root, &["commit", "-q", "-am", "three"]);
    wait_for_index(local.path(), &root, "refs/heads/main", &head(&root));
}
