//! Helpers shared by the integration tests: fixture repositories and engines in temp dirs.

use codectx::Engine;
use codectx::config::Config;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs git in `dir` with a fixed identity; panics with git's output on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=codectx-test",
            "-c",
            "user.email=test@codectx.invalid",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Stages everything in `dir` and commits it.
pub fn commit_all(dir: &Path, message: &str) {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
}

/// A git repository in a temp dir holding a copy of `tests/fixtures/chunks`, committed.
pub fn fixture_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixtures().join("chunks")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    git(dir.path(), &["init", "-q"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "fixture"]);
    dir
}

/// An engine whose data directory is a fresh temp dir.
pub fn engine() -> (Engine, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let engine = Engine::new(Config::with_data_dir(data.path())).unwrap();
    (engine, data)
}

pub fn write(root: &Path, rel: &str, bytes: impl AsRef<[u8]>) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Runs the `codectx` binary with `--data-dir data` and waits for it.
pub fn codectx(data: &Path, args: &[&str]) -> std::process::Output {
    codectx_command(data, args).output().unwrap()
}

/// The `codectx` binary with `--data-dir data`, not started.
pub fn codectx_command(data: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_codectx"));
    cmd.arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("CODECTX_DATA_DIR");
    cmd
}

/// Starts `codectx serve` (`command`, built by [`codectx_command`]) with its stdout piped
/// and reads the URL it prints (`serving codectx.v1.CodeContext ... on URL`). The rest of
/// the lines come back too, to be kept open so the server never writes into a closed pipe.
pub fn spawn_serve(
    mut command: Command,
) -> (
    std::process::Child,
    String,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
) {
    use std::io::BufRead;
    let mut server = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(server.stdout.take().expect("stdout is piped")).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("serving codectx")
                .and_then(|l| l.rsplit(" on ").next().map(str::to_string))
        })
        .expect("the server prints its URL");
    (server, url, lines)
}
