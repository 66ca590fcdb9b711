//! Crash safety: the real `codectx index` killed with SIGKILL at random points, many times.
//! After every kill the index must open and answer from its last commit, and the next
//! complete run must leave exactly what a clean rebuild of the same commit holds, with one
//! vector per chunk (nothing lost, nothing duplicated, nothing orphaned).

use crate::reindex::{clean_fingerprint, fingerprint};
use crate::support::{codectx, codectx_command, git, write};
use codectx::Engine;
use codectx::config::Config;
use codectx::index::vectors::{EmbeddedVectorStore, VectorStore};
use codectx::retrieve::SearchRequest;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// A tiny xorshift generator: reproducible from the seed the test prints.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// This crate's own sources as a real codebase, at two commits that differ in a third of
/// their files (edited, deleted, added).
fn two_commit_repo(root: &Path) -> (String, String) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: Vec<_> = walkdir(&src);
    files.sort();
    for (i, file) in files.iter().enumerate() {
        let rel = file.strip_prefix(&src).unwrap();
        let text = std::fs::read_to_string(file).unwrap();
        write(root, &format!("src/{}", rel.display()), &text);
        if i % 3 == 0 {
            write(root, &format!("extra/copy_{i}.rs"), &text);
        }
    }
    git(root, &["init", "-q"]);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "a"]);
    let a = git(root, &["rev-parse", "HEAD"]);
    for (i, file) in files.iter().enumerate() {
        let rel = format!("src/{}", file.strip_prefix(&src).unwrap().display());
        match i % 6 {
            0 => {
                let text = std::fs::read_to_string(root.join(&rel)).unwrap();
                write(
                    root,
                    &rel,
                    format!("{text}\npub fn crash_added_{i}() -> usize {{ {i} }}\n"),
                );
            }
            1 => std::fs::remove_file(root.join(&rel)).unwrap(),
            2 => write(
                root,
                &format!("new/added_{i}.py"),
                format!("def added_{i}():\n    return {i}\n"),
            ),
            _ => {}
        }
    }
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "b"]);
    let b = git(root, &["rev-parse", "HEAD"]);
    // Detached from here on, so that every run indexes the one ref `HEAD`.
    git(root, &["checkout", "-q", "--detach"]);
    (a, b)
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn vector_ids(engine: &Engine, root: &Path) -> BTreeSet<String> {
    let path = engine
        .repo_dir(&root.canonicalize().unwrap())
        .join("vectors.redb");
    EmbeddedVectorStore::open_existing(&path)
        .unwrap()
        .map(|s| s.ids().into_iter().collect())
        .unwrap_or_default()
}

/// `CODECTX_CRASH_SEED`, or one from the clock (printed by the tests, so a run replays).
fn seed() -> u64 {
    std::env::var("CODECTX_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

/// How many kills: the environment variable `var`, else `default`.
fn iterations(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Chunks without a vector and vectors without a chunk in the index of `root`.
fn unpaired(engine: &Engine, root: &Path) -> (usize, usize) {
    let chunk_ids: BTreeSet<String> = engine
        .snapshot_of(root, None)
        .unwrap()
        .all_chunks()
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let vectors = vector_ids(engine, root);
    (
        chunk_ids.difference(&vectors).count(),
        vectors.difference(&chunk_ids).count(),
    )
}

#[test]
fn sigkilled_indexers_never_corrupt_the_index() {
    let iterations = iterations("CODECTX_CRASH_ITERATIONS", 50);
    let seed = seed();
    eprintln!("crash test: {iterations} kills, CODECTX_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    let (a, b) = two_commit_repo(root);
    let expected = [clean_fingerprint(root, &a), clean_fingerprint(root, &b)];
    let data = tempfile::tempdir().unwrap();

    // Complete runs first, at both commits: they fill the embedding cache (later runs are
    // then as fast as a real incremental reindex), and the last one's duration is the
    // window the kills are spread over.
    let index = || {
        let out = codectx(data.path(), &["index", root.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    index();
    git(root, &["checkout", "-q", &a]);
    index();
    // Kill points are spread over the shorter of the two directions' complete runs, so
    // that most land while the indexer is still working.
    let mut shortest = Duration::MAX;
    for target in [&b, &a] {
        git(root, &["checkout", "-q", target]);
        let started = Instant::now();
        index();
        shortest = shortest.min(started.elapsed());
    }
    let window_ms = (shortest.as_millis() as u64).clamp(50, 5_000);
    eprintln!("crash test: a complete incremental run takes {window_ms} ms");

    let mut killed_mid_run = 0;
    for i in 0..iterations {
        let target = if i % 2 == 0 { &b } else { &a };
        git(root, &["checkout", "-q", target]);
        let mut child = codectx_command(data.path(), &["index", root.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.below(window_ms)));
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();

        // The index opens and answers from its last commit.
        let engine = Engine::new(Config::with_data_dir(data.path())).unwrap();
        match engine.search(root, &SearchRequest::new("index writer commit")) {
            Ok(r) => assert!(r.commit == Some(a.clone()) || r.commit == Some(b.clone())),
            Err(e) => panic!("iteration {i} (seed {seed}): the index does not answer: {e}"),
        }
        let snapshot = engine.snapshot_of(root, None).unwrap();
        let committed = snapshot.ref_state().unwrap().commit.clone().unwrap();
        let which = usize::from(committed == b);
        assert_eq!(
            fingerprint(&engine, root, None),
            expected[which],
            "iteration {i} (seed {seed}): the committed state is not a whole commit"
        );
        drop(snapshot);
        drop(engine);

        // The next complete run brings it to the checkout, exactly.
        let out = codectx(data.path(), &["index", root.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "iteration {i} (seed {seed}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let engine = Engine::new(Config::with_data_dir(data.path())).unwrap();
        let want = usize::from(target == &b);
        assert_eq!(
            fingerprint(&engine, root, None),
            expected[want],
            "iteration {i} (seed {seed}): reindex after the kill differs from a clean rebuild"
        );
        let (missing, orphaned) = unpaired(&engine, root);
        assert!(
            missing == 0 && orphaned == 0,
            "iteration {i} (seed {seed}): {missing} chunks without a vector, {orphaned} vectors without a chunk"
        );
    }
    eprintln!("crash test: {killed_mid_run} of {iterations} kills landed mid-run");
    assert!(
        killed_mid_run * 3 >= iterations,
        "too few kills landed while the indexer ran ({killed_mid_run} of {iterations})"
    );
}

/// The same guarantees when the writer is `codectx serve`: a client's streamed `Reindex`
/// (and the background embedding behind its commit) killed with the whole server.
#[test]
fn sigkilled_servers_mid_reindex_never_corrupt_the_index() {
    let iterations = iterations("CODECTX_SERVER_CRASH_ITERATIONS", 4);
    let seed = seed();
    eprintln!("server crash test: {iterations} kills, CODECTX_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    let root_s = root.to_str().unwrap();
    let (a, b) = two_commit_repo(root);
    let expected = [clean_fingerprint(root, &a), clean_fingerprint(root, &b)];
    let data = tempfile::tempdir().unwrap();
    let serve = || {
        crate::support::spawn_serve(codectx_command(
            data.path(),
            &["serve", "--listen", "127.0.0.1:0", "--repo", root_s],
        ))
    };
    let reindex = |url: &str| {
        codectx_command(data.path(), &["index", root_s, "--server", url])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // Complete runs through a server at both commits: the cache fills, and the shorter
    // direction's duration is the window the kills are spread over.
    let mut shortest = Duration::MAX;
    for target in [&a, &b, &a, &b] {
        git(root, &["checkout", "-q", target]);
        let (mut server, url, _lines) = serve();
        let started = Instant::now();
        assert!(reindex(&url).wait().unwrap().success());
        shortest = shortest.min(started.elapsed());
        let _ = server.kill();
        let _ = server.wait();
    }
    let window_ms = (shortest.as_millis() as u64).clamp(50, 5_000);
    eprintln!("server crash test: a complete reindex through the server takes {window_ms} ms");

    let mut killed_mid_run = 0;
    for i in 0..iterations {
        let target = if i % 2 == 0 { &b } else { &a };
        git(root, &["checkout", "-q", target]);
        let (mut server, url, _lines) = serve();
        let mut client = reindex(&url);
        std::thread::sleep(Duration::from_millis(rng.below(window_ms)));
        if client.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        let _ = server.kill(); // SIGKILL, mid-reindex or mid-embedding
        let _ = server.wait();
        let _ = client.wait();

        // The index opens and holds a whole commit.
        let engine = Engine::new(Config::with_data_dir(data.path())).unwrap();
        let snapshot = engine.snapshot_of(root, None).unwrap();
        let committed = snapshot.ref_state().unwrap().commit.clone().unwrap();
        assert!(
            committed == a || committed == b,
            "iteration {i} (seed {seed})"
        );
        assert_eq!(
            fingerprint(&engine, root, None),
            expected[usize::from(committed == b)],
            "iteration {i} (seed {seed}): the committed state is not a whole commit"
        );
        drop(snapshot);
        drop(engine);

        // The next complete run (local this time) converges, one vector per chunk.
        let out = codectx(data.path(), &["index", root_s]);
        assert!(
            out.status.success(),
            "iteration {i} (seed {seed}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let engine = Engine::new(Config::with_data_dir(data.path())).unwrap();
        assert_eq!(
            fingerprint(&engine, root, None),
            expected[usize::from(target == &b)],
            "iteration {i} (seed {seed}): reindex after the kill differs from a clean rebuild"
        );
        assert_eq!(
            unpaired(&engine, root),
            (0, 0),
            "iteration {i} (seed {seed}): chunks without a vector, vectors without a chunk"
        );
    }
    eprintln!("server crash test: {killed_mid_run} of {iterations} kills landed mid-reindex");
}
