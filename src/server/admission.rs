//! Who may register what on a server: an allow-list of directories (and of git hosts) a
//! client may register repositories under, and the system directories no list opens.
//!
//! Architecture Invariant: a client can never make the server index (and so serve) `/`, a
//! system directory or anything under `/etc`, `/proc`, `/sys`, `/dev`, `/boot` or `/run`;
//! on `codectx serve` it can register only repositories under the configured roots (the
//! repositories given at start are registered by the operator, not by a client).

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The repositories one client may see and act on: all of them, or these (roots or ids).
#[derive(Debug, Clone, Default)]
pub struct Scope(Option<Arc<Vec<String>>>);

impl Scope {
    pub fn all() -> Scope {
        Scope(None)
    }

    /// Only these repositories: absolute roots (as the server registered them) or ids.
    pub fn only(repositories: Vec<String>) -> Scope {
        Scope(Some(Arc::new(repositories)))
    }

    pub fn is_all(&self) -> bool {
        self.0.is_none()
    }

    /// Whether the repository at `root` (id `id`) is in scope.
    pub fn allows(&self, root: &Path, id: &str) -> bool {
        match &self.0 {
            None => true,
            Some(list) => list.iter().any(|e| e == id || Path::new(e) == root),
        }
    }

    /// [`Scope::allows`] as an error that names the client and the repository.
    pub fn check(&self, client: &str, root: &Path, id: &str) -> Result<()> {
        if self.allows(root, id) {
            return Ok(());
        }
        Err(Error::PermissionDenied(format!(
            "client {client:?} may not use repository {} ({id})",
            root.display()
        )))
    }
}

/// A client of the server with a token of its own and what it may see.
#[derive(Debug, Clone)]
pub struct Client {
    pub name: String,
    /// Compared in constant time; read from the environment, never from a file.
    pub token: String,
    pub scope: Scope,
}

/// Directories that hold no repository a client should index; nothing under them either.
const NEVER_UNDER: &[&str] = &["/etc", "/proc", "/sys", "/dev", "/boot", "/run"];

/// Directories too wide to be a root or a repository themselves (what is below them can be).
const NEVER_AT: &[&str] = &[
    "/", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/usr", "/var", "/home", "/root", "/opt",
    "/srv", "/mnt", "/media", "/tmp", "/snap",
];

/// The server's admission rules.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    /// `None`: any directory but the system ones (the servers codectx starts for its own
    /// clients on loopback). `Some`: only under these canonical roots.
    roots: Option<Vec<PathBuf>>,
    /// `None`: any git host. `Some`: only these (`github.com`, `git.example.com`;
    /// `file` for `file://` URLs).
    hosts: Option<Vec<String>>,
}

impl Admission {
    /// Anything but the system directories.
    pub fn open() -> Admission {
        Admission::default()
    }

    /// Only under `roots` and from `hosts`; a root that is `/`, a system directory or
    /// missing is refused here, at start.
    pub fn only(roots: &[PathBuf], hosts: &[String]) -> Result<Admission> {
        let mut canonical = Vec::new();
        for r in roots {
            let c = std::fs::canonicalize(r)
                .map_err(|e| Error::invalid(format!("allowed root {}: {e}", r.display())))?;
            if let Some(why) = forbidden(&c) {
                return Err(Error::invalid(format!(
                    "allowed root {}: {why}; allow the directories that hold your repositories",
                    r.display()
                )));
            }
            canonical.push(c);
        }
        Ok(Admission {
            roots: Some(canonical),
            hosts: Some(hosts.iter().map(|h| h.trim().to_lowercase()).collect()),
        })
    }

    /// Whether a client may register the repository at `root` (canonical).
    pub fn check_path(&self, root: &Path) -> Result<()> {
        if let Some(why) = forbidden(root) {
            return Err(Error::PermissionDenied(format!(
                "path {}: {why}",
                root.display()
            )));
        }
        match &self.roots {
            None => Ok(()),
            Some(roots) if roots.iter().any(|r| root.starts_with(r)) => Ok(()),
            Some(roots) if roots.is_empty() => Err(Error::PermissionDenied(format!(
                "path {}: this server lets clients register no directory (start it with --allow-root DIR, or allow_roots in its config; repositories given with --repo are registered at start)",
                root.display()
            ))),
            Some(roots) => Err(Error::PermissionDenied(format!(
                "path {}: not under the server's allowed roots ({})",
                root.display(),
                roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Whether a client may register a repository by this git URL.
    pub fn check_url(&self, url: &str) -> Result<()> {
        let Some(hosts) = &self.hosts else {
            return Ok(());
        };
        let host = url_host(url);
        if hosts.contains(&host) {
            return Ok(());
        }
        Err(Error::PermissionDenied(format!(
            "url {}: host {host:?} is not one the server clones from (--allow-host HOST, or allow_hosts in its config)",
            crate::error::quote_clipped(url)
        )))
    }
}

/// Why `path` may never be registered or be a root, if it may not.
fn forbidden(path: &Path) -> Option<String> {
    if NEVER_AT.iter().any(|d| path == Path::new(d)) {
        return Some("never the root or a top-level system directory".into());
    }
    NEVER_UNDER
        .iter()
        .find(|d| path.starts_with(d))
        .map(|d| format!("nothing under {d} is served"))
}

/// The host of a git URL (`https://h/..`, `ssh://u@h:22/..`, `u@h:path`); `file` for
/// `file://` URLs and local paths.
fn url_host(url: &str) -> String {
    let url = url.trim();
    if let Some((scheme, rest)) = url.split_once("://") {
        if scheme.eq_ignore_ascii_case("file") {
            return "file".into();
        }
        let authority = rest.split('/').next().unwrap_or_default();
        let host_port = authority.rsplit('@').next().unwrap_or_default();
        let host = host_port.split(':').next().unwrap_or_default();
        return host.to_lowercase();
    }
    match url.split_once(':') {
        Some((user_host, _)) if !user_host.contains('/') => user_host
            .rsplit('@')
            .next()
            .unwrap_or_default()
            .to_lowercase(),
        _ => "file".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_directories_are_never_admitted_and_roots_bound_the_rest() {
        let open = Admission::open();
        for bad in ["/", "/etc", "/etc/ssl", "/proc/1", "/usr", "/root", "/home"] {
            let e = open.check_path(Path::new(bad)).unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::PermissionDenied, "{bad}");
        }
        assert!(open.check_path(Path::new("/home/alice/src/app")).is_ok());
        assert!(Admission::only(&[PathBuf::from("/")], &[]).is_err());
        assert!(Admission::only(&[PathBuf::from("/etc")], &[]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let only = Admission::only(std::slice::from_ref(&root), &["GitHub.com".into()]).unwrap();
        assert!(only.check_path(&root.join("repo")).is_ok());
        let e = only.check_path(Path::new("/srv/other/repo")).unwrap_err();
        assert!(
            e.to_string()
                .contains("not under the server's allowed roots"),
            "{e}"
        );
        assert!(only.check_url("https://github.com/acme/app.git").is_ok());
        assert!(only.check_url("git@github.com:acme/app.git").is_ok());
        assert!(only.check_url("ssh://git@evil.example:22/x.git").is_err());
        assert!(only.check_url("file:///etc").is_err());
        let none = Admission::only(&[], &[]).unwrap();
        let e = none.check_path(&root.join("repo")).unwrap_err();
        assert!(e.to_string().contains("--allow-root"), "{e}");
    }
}
