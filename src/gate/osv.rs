//! The built-in dependency audit: pinned packages from lockfiles (Cargo.lock,
//! requirements*.txt) against a local database of OSV advisories (the format RustSec,
//! PyPA and GitHub publish), with no network.

use super::Finding;
use crate::error::{Error, Result};
use serde_json::Value;
use std::cmp::Ordering;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct Package {
    /// OSV ecosystem: `crates.io` or `PyPI`.
    pub ecosystem: &'static str,
    pub name: String,
    pub version: String,
    pub file: String,
    pub line: u32,
}

#[derive(Debug, Clone)]
pub struct Advisory {
    pub id: String,
    pub summary: String,
    pub affected: Vec<Value>,
}

/// Every `*.json` under `dir`; a file that is not an OSV record is an error naming it
/// (an advisory silently skipped could hide a vulnerability).
pub fn load(dir: &Path) -> Result<Vec<Advisory>> {
    if !dir.is_dir() {
        return Err(Error::NotFound(format!(
            "the advisory database {} is not a directory",
            dir.display()
        )));
    }
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)
            .map_err(|e| Error::io(&d, e))?
            .flatten()
        {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "json") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for path in &files {
        let path = path.as_path();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Corrupt(format!("advisory {}: {e}", path.display())))?;
        let id = v["id"].as_str().ok_or_else(|| {
            Error::Corrupt(format!(
                "advisory {}: no `id`: not an OSV record",
                path.display()
            ))
        })?;
        out.push(Advisory {
            id: id.to_string(),
            summary: v["summary"].as_str().unwrap_or_default().to_string(),
            affected: v["affected"].as_array().cloned().unwrap_or_default(),
        });
    }
    Ok(out)
}

/// The pinned packages in the lockfiles at `root`, and which lockfiles were read.
pub fn lockfiles(root: &Path) -> Result<(Vec<Package>, Vec<String>)> {
    let mut packages = Vec::new();
    let mut files = Vec::new();
    let cargo = root.join("Cargo.lock");
    if cargo.is_file() {
        let text = std::fs::read_to_string(&cargo).map_err(|e| Error::io(&cargo, e))?;
        let lock: toml::Value = toml::from_str(&text)
            .map_err(|e| Error::Corrupt(format!("Cargo.lock: {}", e.to_string().trim())))?;
        for p in lock
            .get("package")
            .and_then(|p| p.as_array())
            .into_iter()
            .flatten()
        {
            let (Some(name), Some(version)) = (
                p.get("name").and_then(|v| v.as_str()),
                p.get("version").and_then(|v| v.as_str()),
            ) else {
                continue;
            };
            let needle = format!("name = \"{name}\"");
            let line = text
                .lines()
                .position(|l| l.trim() == needle)
                .map_or(0, |i| i + 1);
            packages.push(Package {
                ecosystem: "crates.io",
                name: name.to_string(),
                version: version.to_string(),
                file: "Cargo.lock".into(),
                line: line as u32,
            });
        }
        files.push("Cargo.lock".to_string());
    }
    let mut reqs: Vec<_> = std::fs::read_dir(root)
        .map_err(|e| Error::io(root, e))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("requirements") && n.ends_with(".txt"))
        .collect();
    reqs.sort();
    for name in reqs {
        let path = root.join(&name);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        for (i, line) in text.lines().enumerate() {
            let line = line
                .split('#')
                .next()
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim();
            let Some((pkg, version)) = line.split_once("==") else {
                continue;
            };
            let pkg = pkg.split('[').next().unwrap_or(pkg).trim();
            if pkg.is_empty() {
                continue;
            }
            packages.push(Package {
                ecosystem: "PyPI",
                name: pkg.to_string(),
                version: version.trim().to_string(),
                file: name.clone(),
                line: i as u32 + 1,
            });
        }
        files.push(name);
    }
    Ok((packages, files))
}

/// PyPI names compare case-insensitively with `-`, `_` and `.` alike (PEP 503).
fn same_name(ecosystem: &str, a: &str, b: &str) -> bool {
    if ecosystem == "PyPI" {
        let norm = |s: &str| s.to_lowercase().replace(['_', '.'], "-");
        norm(a) == norm(b)
    } else {
        a == b
    }
}

/// Compares dotted versions numerically; a pre-release (`1.2.0-rc1`, `1.2.0rc1`) sorts
/// before its release.
pub fn cmp_version(a: &str, b: &str) -> Ordering {
    fn parts(v: &str) -> (Vec<u64>, bool) {
        let v = v.trim().trim_start_matches('v');
        let release_end = v
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(v.len());
        let nums = v[..release_end]
            .split('.')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap_or(0))
            .collect();
        let rest = &v[release_end..];
        let pre = !rest.is_empty() && !rest.starts_with('+') && !rest.starts_with(".post");
        (nums, pre)
    }
    let (mut x, px) = parts(a);
    let (mut y, py) = parts(b);
    let n = x.len().max(y.len());
    x.resize(n, 0);
    y.resize(n, 0);
    x.cmp(&y).then(py.cmp(&px))
}

/// Whether `version` is affected by one OSV `affected` entry.
fn affects(entry: &Value, version: &str) -> (bool, Option<String>) {
    if entry["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| v.as_str() == Some(version))
    {
        return (true, None);
    }
    for range in entry["ranges"].as_array().into_iter().flatten() {
        // Events in order: introduced, then fixed or last_affected, possibly repeated.
        let mut introduced: Option<String> = None;
        for e in range["events"].as_array().into_iter().flatten() {
            if let Some(i) = e["introduced"].as_str() {
                introduced = Some(i.to_string());
            } else if let Some(f) = e["fixed"].as_str() {
                if let Some(i) = introduced.take()
                    && (i == "0" || cmp_version(version, &i) != Ordering::Less)
                    && cmp_version(version, f) == Ordering::Less
                {
                    return (true, Some(f.to_string()));
                }
            } else if let Some(l) = e["last_affected"].as_str()
                && let Some(i) = introduced.take()
                && (i == "0" || cmp_version(version, &i) != Ordering::Less)
                && cmp_version(version, l) != Ordering::Greater
            {
                return (true, None);
            }
        }
        if let Some(i) = introduced
            && (i == "0" || cmp_version(version, &i) != Ordering::Less)
        {
            return (true, None);
        }
    }
    (false, None)
}

/// The advisories affecting `packages`, as findings on their lockfile lines.
pub fn audit(packages: &[Package], advisories: &[Advisory]) -> Vec<Finding> {
    let mut out = Vec::new();
    for p in packages {
        for a in advisories {
            for entry in &a.affected {
                let eco = entry["package"]["ecosystem"].as_str().unwrap_or_default();
                let name = entry["package"]["name"].as_str().unwrap_or_default();
                if eco != p.ecosystem || !same_name(eco, name, &p.name) {
                    continue;
                }
                let (hit, fixed) = affects(entry, &p.version);
                if !hit {
                    continue;
                }
                let fix = fixed.map(|f| format!("; fixed in {f}")).unwrap_or_default();
                out.push(Finding {
                    tool: "osv".into(),
                    rule_id: a.id.clone(),
                    level: "error".into(),
                    message: format!(
                        "{} {} ({}): {} {}{fix}",
                        p.name, p.version, p.ecosystem, a.id, a.summary
                    ),
                    path: Some(p.file.clone()),
                    start_line: Some(p.line),
                    end_line: Some(p.line),
                    fingerprint: super::checks::fingerprint(&[&a.id, &p.file, &p.name, &p.version]),
                });
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_compare_numerically_with_prereleases_first() {
        assert_eq!(cmp_version("1.10.0", "1.9.3"), Ordering::Greater);
        assert_eq!(cmp_version("1.2", "1.2.0"), Ordering::Equal);
        assert_eq!(cmp_version("1.2.0-rc1", "1.2.0"), Ordering::Less);
        assert_eq!(cmp_version("2.0.0rc1", "2.0.0"), Ordering::Less);
        assert_eq!(cmp_version("0.3.1", "0.3.0-alpha"), Ordering::Greater);
    }

    #[test]
    fn ranges_and_version_lists() {
        let entry = json!({"package": {"ecosystem": "crates.io", "name": "x"},
            "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.4.2"}, {"introduced": "2.0.0"}, {"fixed": "2.1.1"}]}]});
        assert_eq!(affects(&entry, "1.4.1"), (true, Some("1.4.2".into())));
        assert!(!affects(&entry, "1.4.2").0);
        assert!(!affects(&entry, "1.9.0").0);
        assert!(affects(&entry, "2.1.0").0);
        assert!(!affects(&entry, "2.1.1").0);
        let listed = json!({"versions": ["3.0.0"]});
        assert!(affects(&listed, "3.0.0").0 && !affects(&listed, "3.0.1").0);
        let open = json!({"ranges": [{"events": [{"introduced": "1.0.0"}]}]});
        assert!(affects(&open, "9.0.0").0 && !affects(&open, "0.9.0").0);
        let last =
            json!({"ranges": [{"events": [{"introduced": "0"}, {"last_affected": "1.0.0"}]}]});
        assert!(affects(&last, "1.0.0").0 && !affects(&last, "1.0.1").0);
    }
}
