//! Git hooks that keep an index fresh: `codectx hook install | uninstall | run`. A client of
//! the engine like the CLI: the hooks only start a background `codectx index --coalesce`
//! and return at once, so git never waits for indexing. Installed with `--server URL`, that
//! background index asks the running `codectx serve` to reindex (its Reindex call) and
//! indexes locally only when the server cannot be reached.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::source::git;
use clap::Subcommand;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The hooks a work tree gets: each fires when the checked-out commit may have changed.
pub const CLIENT_HOOKS: &[&str] = &["post-commit", "post-merge", "post-checkout", "post-rewrite"];

/// The hook a bare (server) repository gets: it reads `<old> <new> <ref>` lines.
pub const SERVER_HOOKS: &[&str] = &["post-receive"];

/// The marker that identifies a hook script as ours.
const MARKER: &str = "# codectx hook";

/// Where a hook that was there before ours is kept (and run from ours).
const CHAINED_SUFFIX: &str = ".codectx-chained";

#[derive(Subcommand, Debug)]
pub enum HookCommand {
    /// Install the hooks (post-commit, post-merge, post-checkout, post-rewrite; post-receive
    /// in a bare repository), honouring core.hooksPath and chaining any hook already there.
    Install {
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Notify this running `codectx serve` (it reindexes; the token and TLS settings
        /// come from CODECTX_AUTH_TOKEN and CODECTX_TLS_* when the hook fires).
        #[arg(long)]
        server: Option<String>,
    },
    /// Remove codectx's hooks and put back the hooks they chained.
    Uninstall {
        #[arg(long, default_value = ".")]
        repo: PathBuf,
    },
    /// What an installed hook runs: queue a background reindex and return at once.
    Run {
        /// The hook's name (post-commit, post-checkout, post-receive, ...).
        event: String,
        #[arg(long)]
        repo: PathBuf,
        /// The server to notify (as installed).
        #[arg(long)]
        server: Option<String>,
        /// The hook's own arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

pub fn run(action: HookCommand, config: &Config) -> Result<()> {
    match action {
        HookCommand::Install { repo, server } => {
            let installed = install(&repo, server.as_deref(), config)?;
            for line in installed {
                crate::outln!("{line}");
            }
            Ok(())
        }
        HookCommand::Uninstall { repo } => {
            for line in uninstall(&repo)? {
                crate::outln!("{line}");
            }
            Ok(())
        }
        HookCommand::Run {
            event,
            repo,
            server,
            args,
        } => fire(&event, &repo, server.as_deref(), &args, config),
    }
}

fn repo_root(repo: &Path) -> Result<PathBuf> {
    let root = repo
        .canonicalize()
        .map_err(|e| Error::NotFound(format!("{}: {e}", repo.display())))?;
    git::toplevel(&root)
        .ok_or_else(|| Error::invalid(format!("{}: not a git repository", repo.display())))
}

fn hook_names(root: &Path) -> &'static [&'static str] {
    if git::is_bare(root) {
        SERVER_HOOKS
    } else {
        CLIENT_HOOKS
    }
}

/// Quotes a string for a POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn script(name: &str, exe: &Path, root: &Path, data_dir: &Path, server: Option<&str>) -> String {
    let mut run = format!(
        "{} --data-dir {} hook run {name} --repo {}",
        sh_quote(&exe.to_string_lossy()),
        sh_quote(&data_dir.to_string_lossy()),
        sh_quote(&root.to_string_lossy()),
    );
    if let Some(url) = server {
        run.push_str(&format!(" --server {}", sh_quote(url)));
    }
    let chained = format!("\"$hook_dir/{name}{CHAINED_SUFFIX}\"");
    // post-receive gets its lines on stdin: both the chained hook and codectx need them.
    let (read_input, feed) = if name == "post-receive" {
        ("input=$(cat)\n", "printf '%s\\n' \"$input\" | ")
    } else {
        ("", "")
    };
    format!(
        "#!/bin/sh\n\
         {MARKER}: keeps the codectx index fresh. Installed by `codectx hook install`;\n\
         # `codectx hook uninstall` restores the hook that was here (kept as {name}{CHAINED_SUFFIX}).\n\
         hook_dir=$(dirname \"$0\")\n\
         {read_input}\
         status=0\n\
         if [ -x {chained} ]; then\n  {feed}{chained} \"$@\" || status=$?\n\
         fi\n\
         {feed}{run} -- \"$@\" >/dev/null 2>&1 || true\n\
         exit $status\n"
    )
}

fn is_ours(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| s.contains(MARKER))
}

/// Installs the hooks; returns what it did, a line per hook.
pub fn install(repo: &Path, server: Option<&str>, config: &Config) -> Result<Vec<String>> {
    if let Some(url) = server
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(Error::invalid(format!(
            "--server {url:?}: expected an http:// or https:// URL"
        )));
    }
    let root = repo_root(repo)?;
    let dir = git::hooks_dir(&root)?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::Internal(format!("cannot find the codectx executable: {e}")))?;
    let data_dir =
        std::path::absolute(&config.data_dir).map_err(|e| Error::io(&config.data_dir, e))?;
    let mut done = Vec::new();
    for name in hook_names(&root) {
        let path = dir.join(name);
        let chained = dir.join(format!("{name}{CHAINED_SUFFIX}"));
        let mut note = "installed".to_string();
        if path.exists() && !is_ours(&path) {
            if chained.exists() {
                return Err(Error::FailedPrecondition(format!(
                    "{}: both a hook and {} exist; move one away first",
                    path.display(),
                    chained.display()
                )));
            }
            std::fs::rename(&path, &chained).map_err(|e| Error::io(&path, e))?;
            note =
                format!("installed, chaining the existing hook (kept as {name}{CHAINED_SUFFIX})");
        } else if path.exists() {
            note = "updated".into();
        }
        std::fs::write(&path, script(name, &exe, &root, &data_dir, server))
            .map_err(|e| Error::io(&path, e))?;
        make_executable(&path)?;
        done.push(format!("{}: {note}", path.display()));
    }
    Ok(done)
}

/// Removes our hooks and restores the ones they chained; leaves others' hooks alone.
pub fn uninstall(repo: &Path) -> Result<Vec<String>> {
    let root = repo_root(repo)?;
    let dir = git::hooks_dir(&root)?;
    let mut done = Vec::new();
    for name in CLIENT_HOOKS.iter().chain(SERVER_HOOKS) {
        let path = dir.join(name);
        let chained = dir.join(format!("{name}{CHAINED_SUFFIX}"));
        if path.exists() && !is_ours(&path) {
            done.push(format!("{}: not codectx's, left alone", path.display()));
            continue;
        }
        if path.exists() {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            done.push(format!("{}: removed", path.display()));
        }
        if chained.exists() {
            std::fs::rename(&chained, &path).map_err(|e| Error::io(&chained, e))?;
            done.push(format!("{}: restored", path.display()));
        }
    }
    Ok(done)
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut perms = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(path, perms).map_err(|e| Error::io(path, e))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> Result<()> {
    Ok(())
}

/// What a hook event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// Reindex a ref (`None`: the ref `HEAD` names).
    Index(Option<String>),
    /// A branch was deleted: forget it.
    Forget(String),
}

/// The actions a hook event asks for.
fn actions_for(event: &str, args: &[String], stdin: impl Read) -> Vec<Action> {
    match event {
        // `post-checkout <prev> <new> <flag>`: flag 0 is a file checkout, HEAD did not move.
        "post-checkout" if args.get(2).is_some_and(|f| f == "0") => Vec::new(),
        "post-receive" => {
            let mut text = String::new();
            let _ = std::io::BufReader::new(stdin).read_to_string(&mut text);
            text.lines()
                .filter_map(|line| {
                    let mut parts = line.split_whitespace();
                    let (_old, new, name) = (parts.next()?, parts.next()?, parts.next()?);
                    if !name.starts_with("refs/heads/") {
                        return None;
                    }
                    // A deleted ref arrives as new = 0...0.
                    Some(if new.bytes().all(|b| b == b'0') {
                        Action::Forget(name.to_string())
                    } else {
                        Action::Index(Some(name.to_string()))
                    })
                })
                .collect()
        }
        _ => vec![Action::Index(None)],
    }
}

/// Starts `codectx index --coalesce` (or `codectx forget`) in the background for each ref
/// the event names, its output appended to `<data>/logs/hooks.log`, and returns without
/// waiting.
fn fire(
    event: &str,
    repo: &Path,
    server: Option<&str>,
    args: &[String],
    config: &Config,
) -> Result<()> {
    let actions = actions_for(event, args, std::io::stdin());
    if actions.is_empty() {
        return Ok(());
    }
    let exe = std::env::current_exe()
        .map_err(|e| Error::Internal(format!("cannot find the codectx executable: {e}")))?;
    let logs = config.data_dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| Error::io(&logs, e))?;
    let log_path = logs.join("hooks.log");
    for action in actions {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io(&log_path, e))?;
        let err = log.try_clone().map_err(|e| Error::io(&log_path, e))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("--data-dir").arg(&config.data_dir);
        match &action {
            Action::Index(name) => {
                cmd.args(["index", "--coalesce"]).arg(repo);
                // With a server, `index` asks it first and falls back to this local run.
                if let Some(url) = server {
                    cmd.args(["--server", url]);
                }
                if let Some(name) = name {
                    cmd.args(["--ref", name]);
                }
            }
            Action::Forget(name) => {
                cmd.args(["forget", "--ref", name, "--repo"]).arg(repo);
            }
        }
        for var in ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX"] {
            cmd.env_remove(var);
        }
        cmd.stdin(Stdio::null()).stdout(log).stderr(err);
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            // Its own process group: a Ctrl-C in the terminal that ran git does not stop it.
            cmd.process_group(0);
        }
        cmd.spawn()
            .map_err(|e| Error::Unavailable(format!("cannot start {}: {e}", exe.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_the_refs_to_reindex() {
        let none: &[u8] = b"";
        assert_eq!(
            actions_for("post-commit", &[], none),
            vec![Action::Index(None)]
        );
        let file_checkout = ["a".to_string(), "b".to_string(), "0".to_string()];
        assert!(actions_for("post-checkout", &file_checkout, none).is_empty());
        let branch_checkout = ["a".to_string(), "b".to_string(), "1".to_string()];
        assert_eq!(
            actions_for("post-checkout", &branch_checkout, none),
            vec![Action::Index(None)]
        );
        let pushed: &[u8] = b"1111 2222 refs/heads/main\n\
            3333 0000000000000000000000000000000000000000 refs/heads/gone\n\
            4444 5555 refs/tags/v1\n";
        assert_eq!(
            actions_for("post-receive", &[], pushed),
            vec![
                Action::Index(Some("refs/heads/main".to_string())),
                Action::Forget("refs/heads/gone".to_string())
            ]
        );
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(sh_quote("/a b/c"), "'/a b/c'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
