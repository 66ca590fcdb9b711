//! Running untrusted repository commands (test commands, gate tools): a wall-clock timeout
//! that kills the whole process group, optional resource limits, a scrubbed environment
//! and bounded output capture.
//!
//! Architecture Invariant: a command started here never outlives its timeout, and nothing
//! it prints can grow codectx's memory past `max_output_bytes`.

use crate::error::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variables a command keeps; everything else (API keys, tokens) is dropped.
pub const KEPT_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "TERM",
    "TMPDIR",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "CARGO_TARGET_DIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "JAVA_HOME",
    "GOPATH",
    "GOCACHE",
];

/// Limits applied with `setrlimit` in the child; `None` leaves the inherited limit.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub cpu_seconds: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub processes: Option<u64>,
    pub file_size_bytes: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Spec {
    /// Run by `sh -c`.
    pub command: String,
    pub cwd: PathBuf,
    pub timeout: Duration,
    pub limits: Limits,
    /// Extra variables (beyond `KEPT_ENV`) set for the command.
    pub env: Vec<(String, String)>,
    /// Output beyond this is dropped from the middle (head and tail are kept).
    pub max_output_bytes: usize,
    /// Run inside bubblewrap when it is installed and works: no network, the whole file
    /// system read-only except `cwd`, `writable` and a private /tmp.
    pub isolate: bool,
    pub writable: Vec<PathBuf>,
    /// Directories under /tmp the command must see (read-only) when isolated.
    pub readable: Vec<PathBuf>,
}

impl Spec {
    pub fn new(command: impl Into<String>, cwd: impl Into<PathBuf>, timeout: Duration) -> Spec {
        Spec {
            command: command.into(),
            cwd: cwd.into(),
            timeout,
            limits: Limits::default(),
            env: Vec::new(),
            max_output_bytes: 4 << 20,
            isolate: false,
            writable: Vec::new(),
            readable: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    /// The exit code; `None` when killed by a signal (or at the timeout).
    pub code: Option<i32>,
    pub timed_out: bool,
    /// stdout and stderr interleaved, lossily decoded.
    pub output: String,
    pub took: Duration,
    /// Peak resident memory of the command and the children it waited for.
    pub max_rss_bytes: u64,
    /// Whether bubblewrap isolated the command.
    pub isolated: bool,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// `exit 0`, `exit 101`, `killed at the 30 s timeout`, `killed by a signal`.
    pub fn describe(&self) -> String {
        match (self.code, self.timed_out) {
            (_, true) => "killed at its timeout".to_string(),
            (Some(c), false) => format!("exit {c}"),
            (None, false) => "killed by a signal".to_string(),
        }
    }
}

/// Runs `spec`, waiting at most its timeout; then the whole process group is killed.
pub fn run(spec: &Spec) -> Result<Outcome> {
    use std::os::unix::process::CommandExt;
    let started = Instant::now();
    let (mut reader, writer) = std::io::pipe().map_err(|e| Error::io(&spec.cwd, e))?;
    let isolated = spec.isolate && bwrap_works();
    let mut cmd = if isolated {
        let mut c = Command::new("bwrap");
        c.args(["--unshare-net", "--die-with-parent", "--ro-bind", "/", "/"])
            .args(["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]);
        for dir in &spec.readable {
            c.arg("--ro-bind").arg(dir).arg(dir);
        }
        for dir in std::iter::once(&spec.cwd).chain(&spec.writable) {
            c.arg("--bind").arg(dir).arg(dir);
        }
        c.arg("--chdir").arg(&spec.cwd).arg("sh");
        c
    } else {
        Command::new("sh")
    };
    cmd.arg("-c")
        .arg(&spec.command)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(writer.try_clone().map_err(|e| Error::io(&spec.cwd, e))?)
        .stderr(writer)
        .env_clear()
        .process_group(0);
    for key in KEPT_ENV {
        if let Ok(v) = std::env::var(key) {
            cmd.env(key, v);
        }
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    let limits = spec.limits.clone();
    // SAFETY: only async-signal-safe calls (setrlimit) run between fork and exec.
    unsafe {
        cmd.pre_exec(move || apply_limits(&limits));
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Unavailable(format!("cannot start `{}`: {e}", spec.command)))?;
    drop(cmd); // closes our copies of the pipe's writing end
    let pid = child.id() as i32;
    let cap = spec.max_output_bytes;
    let drain = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut tail = std::collections::VecDeque::new();
        let mut dropped = 0usize;
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                if kept.len() < cap / 2 {
                    kept.push(b);
                } else {
                    tail.push_back(b);
                    if tail.len() > cap / 2 {
                        tail.pop_front();
                        dropped += 1;
                    }
                }
            }
        }
        let mut out = String::from_utf8_lossy(&kept).into_owned();
        if dropped > 0 {
            out.push_str(&format!("\n[... {dropped} bytes of output left out ...]\n"));
        }
        out.push_str(&String::from_utf8_lossy(tail.make_contiguous()));
        out
    });
    let mut rss = 0u64;
    let (code, timed_out) = loop {
        match reap(pid, &mut rss) {
            Ok(Some(code)) => break (code, false),
            Ok(None) if started.elapsed() >= spec.timeout => {
                kill_group(pid);
                let _ = child.wait();
                break (None, true);
            }
            Ok(None) => std::thread::sleep(poll_interval(started.elapsed())),
            Err(e) => {
                kill_group(pid);
                let _ = child.wait();
                return Err(Error::Internal(format!(
                    "waiting for `{}`: {e}",
                    spec.command
                )));
            }
        }
    };
    // Whatever the command left running in its group goes too: nothing outlives the run.
    kill_group(pid);
    let output = join_with_grace(drain, Duration::from_secs(2));
    Ok(Outcome {
        code: if timed_out { None } else { code },
        timed_out,
        output,
        took: started.elapsed(),
        max_rss_bytes: rss,
        isolated,
    })
}

/// Reaps `pid` if it exited: `Some(exit code)` (`None` inside when a signal ended it), with
/// its peak RSS (its own and its waited-for children's) stored in `rss`.
fn reap(pid: i32, rss: &mut u64) -> std::io::Result<Option<Option<i32>>> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 writes both out-parameters.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if r == 0 {
        return Ok(None);
    }
    *rss = (usage.ru_maxrss.max(0) as u64) * 1024;
    Ok(Some(if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else {
        None
    }))
}

/// Whether bubblewrap is installed and can make a sandbox here (it cannot in every
/// container); probed once per process.
pub fn bwrap_works() -> bool {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORKS.get_or_init(|| {
        Command::new("bwrap")
            .args([
                "--unshare-net",
                "--die-with-parent",
                "--ro-bind",
                "/",
                "/",
                "--dev",
                "/dev",
            ])
            .args(["--proc", "/proc", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Short polls first (most commands here are quick), then 20 ms.
fn poll_interval(elapsed: Duration) -> Duration {
    if elapsed < Duration::from_millis(50) {
        Duration::from_millis(1)
    } else if elapsed < Duration::from_secs(1) {
        Duration::from_millis(5)
    } else {
        Duration::from_millis(20)
    }
}

/// The drained output, or a note when a process outside the group still holds the pipe.
fn join_with_grace(drain: std::thread::JoinHandle<String>, grace: Duration) -> String {
    let deadline = Instant::now() + grace;
    while !drain.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    if drain.is_finished() {
        drain.join().unwrap_or_default()
    } else {
        "[output unavailable: a process that left the command's group still holds it]".into()
    }
}

fn kill_group(pid: i32) {
    // SAFETY: killpg with a positive group id only sends a signal.
    unsafe {
        libc::killpg(pid, libc::SIGKILL);
    }
}

fn apply_limits(limits: &Limits) -> std::io::Result<()> {
    let set = |resource, value: Option<u64>| -> std::io::Result<()> {
        if let Some(v) = value {
            let limit = libc::rlimit {
                rlim_cur: v as libc::rlim_t,
                rlim_max: v as libc::rlim_t,
            };
            // SAFETY: setrlimit reads the struct we pass and nothing else.
            if unsafe { libc::setrlimit(resource, &limit) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    };
    set(libc::RLIMIT_CPU, limits.cpu_seconds)?;
    set(libc::RLIMIT_AS, limits.memory_bytes)?;
    set(libc::RLIMIT_NPROC, limits.processes)?;
    set(libc::RLIMIT_FSIZE, limits.file_size_bytes)?;
    Ok(())
}

/// `path` (relative to `root`) resolved inside `root`, or an error saying why not:
/// absolute paths, `..`, `.git` and symlinks that leave `root` are refused.
pub fn confine(root: &Path, path: &str) -> Result<PathBuf> {
    use std::path::Component;
    let rel = Path::new(path.trim());
    if path.trim().is_empty() {
        return Err(Error::invalid("the path is empty"));
    }
    for c in rel.components() {
        match c {
            Component::Normal(part) if part == ".git" => {
                return Err(Error::invalid(format!("{path}: .git is not editable")));
            }
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(Error::invalid(format!(
                    "{path}: `..` would leave the worktree"
                )));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(Error::invalid(format!(
                    "{path}: absolute paths are outside the worktree; use a path relative to its root"
                )));
            }
        }
    }
    let root = root.canonicalize().map_err(|e| Error::io(root, e))?;
    let full = root.join(rel);
    // The deepest existing ancestor must resolve inside the root (no symlink escapes).
    let mut probe = full.as_path();
    loop {
        if probe.exists() || probe.symlink_metadata().is_ok() {
            let real = probe.canonicalize().map_err(|e| Error::io(probe, e))?;
            if !real.starts_with(&root) {
                return Err(Error::invalid(format!(
                    "{path}: resolves outside the worktree (through a symbolic link)"
                )));
            }
            break;
        }
        match probe.parent() {
            Some(p) => probe = p,
            None => break,
        }
    }
    Ok(full)
}

/// The test command for `root` when none is configured.
pub fn guess_test_command(root: &Path) -> Result<String> {
    if root.join("Cargo.toml").is_file() {
        return Ok("cargo test --quiet".into());
    }
    let python = [
        "pyproject.toml",
        "setup.py",
        "setup.cfg",
        "pytest.ini",
        "tox.ini",
    ]
    .iter()
    .any(|f| root.join(f).is_file())
        || std::fs::read_dir(root)
            .map_err(|e| Error::io(root, e))?
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "py"));
    if python {
        let pytest = std::process::Command::new("python3")
            .args(["-c", "import pytest"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        return Ok(if pytest {
            "python3 -m pytest -q".into()
        } else {
            "python3 -m unittest".into()
        });
    }
    if root.join("package.json").is_file() {
        return Ok("npm test".into());
    }
    if root.join("go.mod").is_file() {
        return Ok("go test ./...".into());
    }
    Err(Error::invalid(format!(
        "{}: no test command configured and none could be guessed; set agent.test_command or --test-command",
        root.display()
    )))
}

/// `PATH` for sandboxed commands: the caller's, then the gate tools `scripts/setup`
/// installs (`$CODECTX_HOME/gate-tools/bin`: semgrep, coverage).
pub fn tool_path() -> String {
    let tools = crate::config::codectx_home().join("gate-tools/bin");
    match std::env::var("PATH") {
        Ok(p) if !p.is_empty() => format!("{p}:{}", tools.display()),
        _ => format!("/usr/local/bin:/usr/bin:/bin:{}", tools.display()),
    }
}

/// The full path of `tool` on [`tool_path`], if it is installed.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    tool_path()
        .split(':')
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_sleeps_forever_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let spec = Spec::new(
            "sleep 1000 & sleep 1000; echo never",
            dir.path(),
            Duration::from_millis(300),
        );
        let out = run(&spec).unwrap();
        assert!(out.timed_out && !out.success(), "{out:?}");
        assert!(out.took < Duration::from_secs(5), "{out:?}");
        assert!(!out.output.contains("never"));
    }

    #[test]
    fn output_is_captured_bounded_and_the_environment_scrubbed() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: the variable is unique to this test.
        unsafe { std::env::set_var("CODECTX_SANDBOX_SECRET_PROBE", "s3cr3t") };
        let mut spec = Spec::new(
            "echo out; echo err >&2; echo \"probe=$CODECTX_SANDBOX_SECRET_PROBE\"; yes x | head -c 100000; exit 3",
            dir.path(),
            Duration::from_secs(10),
        );
        spec.max_output_bytes = 1000;
        let out = run(&spec).unwrap();
        assert_eq!(out.code, Some(3));
        assert!(out.output.contains("out\nerr\nprobe=\n"), "{}", out.output);
        assert!(out.output.contains("bytes of output left out"));
        assert!(out.output.len() < 1200);
    }

    #[test]
    fn a_command_that_forks_without_end_is_killed_with_every_child() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = Spec::new(
            "while :; do sleep 1001 & done",
            dir.path(),
            Duration::from_millis(500),
        );
        spec.limits.processes = Some(256);
        let out = run(&spec).unwrap();
        assert!(!out.success(), "{out:?}");
        // Nothing of the group is left: a signal to it finds no process.
        std::thread::sleep(Duration::from_millis(100));
        let left = std::process::Command::new("sh")
            .arg("-c")
            .arg("ps -eo args | grep -c '^sleep 1001$' || true")
            .output()
            .unwrap();
        let n: usize = String::from_utf8_lossy(&left.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        assert_eq!(n, 0, "sleepers outlived the command");
    }

    #[test]
    fn resource_limits_stop_a_runaway_file_and_cpu_loop() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = Spec::new(
            "head -c 10000000 /dev/zero > big; echo wrote",
            dir.path(),
            Duration::from_secs(30),
        );
        spec.limits.file_size_bytes = Some(1 << 20);
        run(&spec).unwrap();
        let size = std::fs::metadata(dir.path().join("big")).unwrap().len();
        assert!(size <= 1 << 20, "the file grew to {size}");
        let mut spec = Spec::new("while :; do :; done", dir.path(), Duration::from_secs(30));
        spec.limits.cpu_seconds = Some(1);
        let out2 = run(&spec).unwrap();
        assert!(!out2.success() && !out2.timed_out, "{out2:?}");
        assert!(out2.took < Duration::from_secs(10), "{out2:?}");
    }

    #[test]
    fn peak_memory_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        let spec = Spec::new(
            "python3 -c 'x = bytearray(64 * 1024 * 1024); print(len(x))'",
            dir.path(),
            Duration::from_secs(30),
        );
        let out = run(&spec).unwrap();
        assert!(out.success(), "{out:?}");
        assert!(out.max_rss_bytes >= 64 << 20, "{}", out.max_rss_bytes);
    }

    #[test]
    fn isolation_blocks_the_network_and_writes_outside_the_worktree() {
        if !bwrap_works() {
            eprintln!("bubblewrap is not usable here: isolation is not tested");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let mut spec = Spec::new(
            format!(
                "echo ok > inside.txt; echo no > {}/outside.txt; python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 9), 1)' || echo no-network",
                outside.path().display()
            ),
            dir.path(),
            Duration::from_secs(30),
        );
        spec.isolate = true;
        let out = run(&spec).unwrap();
        assert!(out.isolated);
        assert!(dir.path().join("inside.txt").exists(), "{}", out.output);
        assert!(
            !outside.path().join("outside.txt").exists(),
            "{}",
            out.output
        );
        assert!(out.output.contains("no-network"), "{}", out.output);
    }

    #[test]
    fn confinement_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::os::unix::fs::symlink("/tmp", dir.path().join("out")).unwrap();
        assert!(confine(dir.path(), "src/new.rs").is_ok());
        assert!(confine(dir.path(), "a/b/new.rs").is_ok());
        for bad in [
            "../x",
            "/etc/passwd",
            "src/../../x",
            ".git/config",
            "out/x",
            "",
        ] {
            let err = confine(dir.path(), bad).unwrap_err().to_string();
            assert!(!err.is_empty(), "{bad}");
        }
    }
}
