//! The reindex benchmark: on a git history of real edits (two releases of a package, the
//! second applied as commits of 1, 10 and 100 files), the cost of reindexing after each
//! commit against a full index of the same commit, all measured in one run with the same
//! warm embedding cache.

use super::quantile;
use crate::config::Config;
use crate::engine::{Engine, IndexOptions, IndexReport, NoProgress};
use crate::error::{Error, Result};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The commit sizes measured, in files.
const SIZES: &[usize] = &[1, 10, 100];

/// Repetitions of each measured reindex (the median is reported).
const REPEATS: usize = 5;

#[derive(Debug, Serialize)]
struct Step {
    files_in_commit: usize,
    /// Median seconds of `Engine::index_with` bringing the ref from the parent commit.
    reindex_seconds: f64,
    reindex_runs: Vec<f64>,
    files_chunked: u64,
    chunks_added: u64,
    chunks_removed: u64,
    vectors_added: u64,
    /// Seconds of a full index of the same commit into an empty index (same warm cache).
    full_seconds: f64,
    /// `full_seconds / reindex_seconds`.
    speedup: f64,
    /// Seconds of a full index of the same commit with an empty embedding cache (what a
    /// first index, or a tool without a cache, pays: every chunk through the model). Measured
    /// for the one-file step only.
    cold_full_seconds: Option<f64>,
    /// `cold_full_seconds / reindex_seconds`.
    cold_speedup: Option<f64>,
    /// Wall time of the `codectx index` process for the same step (start, model load,
    /// reindex, exit).
    cli_seconds: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    old: String,
    new: String,
    lines: u64,
    files: u64,
    chunks: u64,
    warmup_seconds: f64,
    steps: Vec<Step>,
}

/// What to measure besides the warm steps.
#[derive(Debug, Clone, Copy)]
pub struct ReindexBench {
    /// Also index the one-file commit from scratch with an empty embedding cache (minutes).
    pub cold: bool,
}

fn git(root: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args([
            "-c",
            "user.name=codectx-bench",
            "-c",
            "user.email=bench@codectx.invalid",
        ])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .map_err(|e| Error::Unavailable(format!("git: {e}")))?;
    if !out.status.success() {
        return Err(Error::Internal(format!(
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn files_under(dir: &Path) -> Result<BTreeSet<PathBuf>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let path = entry.map_err(|e| Error::io(&d, e))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                out.insert(rel.to_path_buf());
            }
        }
    }
    Ok(out)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for rel in files_under(from)? {
        let dst = to.join(&rel);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::copy(from.join(&rel), &dst).map_err(|e| Error::io(&dst, e))?;
    }
    Ok(())
}

/// Builds the history: the old release, then the new release's changed files as commits of
/// 1, 10 and 100 files (in path order). Returns the commit ids, oldest first.
fn build_history(old: &Path, new: &Path, root: &Path) -> Result<Vec<String>> {
    copy_tree(old, root)?;
    git(root, &["init", "-q"])?;
    git(root, &["add", "-A"])?;
    git(root, &["commit", "-q", "-m", "old release"])?;
    let mut commits = vec![git(root, &["rev-parse", "HEAD"])?];
    let old_files = files_under(old)?;
    let new_files = files_under(new)?;
    let changed: Vec<&PathBuf> = new_files
        .iter()
        .filter(|rel| {
            rel.extension().is_some_and(|e| e == "py")
                && (!old_files.contains(*rel)
                    || std::fs::read(old.join(rel)).ok() != std::fs::read(new.join(rel)).ok())
        })
        .collect();
    let needed: usize = SIZES.iter().sum();
    if changed.len() < needed {
        return Err(Error::invalid(format!(
            "the releases differ in {} files; the benchmark needs {needed}",
            changed.len()
        )));
    }
    let mut next = changed.into_iter();
    for &size in SIZES {
        for rel in next.by_ref().take(size) {
            let dst = root.join(rel);
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            std::fs::copy(new.join(rel), &dst).map_err(|e| Error::io(&dst, e))?;
        }
        git(root, &["add", "-A"])?;
        git(
            root,
            &[
                "commit",
                "-q",
                "-m",
                &format!("{size} files from the new release"),
            ],
        )?;
        commits.push(git(root, &["rev-parse", "HEAD"])?);
    }
    Ok(commits)
}

fn index_at(engine: &Engine, root: &Path, commit: &str) -> Result<(f64, IndexReport)> {
    let options = IndexOptions {
        ref_name: Some("bench".into()),
        embed_before_commit: usize::MAX,
        ..Default::default()
    };
    git(root, &["update-ref", "refs/heads/bench", commit])?;
    let started = Instant::now();
    let report = engine.index_with(root, &options, &NoProgress)?;
    Ok((started.elapsed().as_secs_f64(), report))
}

pub fn run(
    old: &Path,
    new: &Path,
    work: &Path,
    bench: ReindexBench,
    json: bool,
    config: Config,
) -> Result<()> {
    for dir in [old, new] {
        if !dir.is_dir() {
            return Err(Error::NotFound(format!(
                "{}: release directory not found (benches/reindex.sh downloads them)",
                dir.display()
            )));
        }
    }
    let work = &std::path::absolute(work).map_err(|e| Error::io(work, e))?;
    let _ = std::fs::remove_dir_all(work);
    // Indexes from earlier runs would not start empty; the embedding cache is kept.
    let _ = std::fs::remove_dir_all(config.data_dir.join("repos"));
    let root = work.join("repo");
    std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
    let commits = build_history(old, new, &root)?;
    let lines: u64 = files_under(&root)?
        .iter()
        .filter_map(|rel| std::fs::read(root.join(rel)).ok())
        .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
        .sum();
    // One engine over the configured data directory (whose embedding cache is kept between
    // runs, so only the first run pays for the model). Each index that must start empty is
    // a fresh clone of the history: another root, so another index, same cache and model.
    let clone = |name: &str| -> Result<PathBuf> {
        let dir = work.join(name);
        git(
            work,
            &["clone", "-q", "--shared", &root.to_string_lossy(), name],
        )?;
        Ok(dir)
    };
    let engine = Engine::new(config.clone())?;

    // Warm-up: every commit's chunks are embedded once, into the cache.
    eprintln!("warming the embedding cache (slow only the first time)...");
    let started = Instant::now();
    let warm = clone("warm")?;
    for commit in &commits {
        index_at(&engine, &warm, commit)?;
    }
    let warmup_seconds = started.elapsed().as_secs_f64();

    let mut steps = Vec::new();
    let (_, base) = index_at(&engine, &root, &commits[0])?;
    for (i, &size) in SIZES.iter().enumerate() {
        let (parent, commit) = (&commits[i], &commits[i + 1]);
        let mut runs = Vec::new();
        let mut report = None;
        for _ in 0..REPEATS {
            index_at(&engine, &root, parent)?;
            let (seconds, r) = index_at(&engine, &root, commit)?;
            runs.push(seconds);
            report = Some(r);
        }
        let report = report.expect("at least one run");
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        let reindex_seconds = quantile(&sorted, 0.5);
        // The full index of the same commit, into an empty index, same warm cache.
        let full_root = clone(&format!("full-{size}"))?;
        let (full_seconds, _) = index_at(&engine, &full_root, commit)?;
        eprintln!(
            "{size:>3} files: reindex {:.1} ms, full {:.0} ms ({:.0}x)",
            reindex_seconds * 1000.0,
            full_seconds * 1000.0,
            full_seconds / reindex_seconds,
        );
        steps.push(Step {
            files_in_commit: size,
            reindex_seconds,
            reindex_runs: runs,
            files_chunked: report.files_chunked,
            chunks_added: report.chunks_added,
            chunks_removed: report.chunks_removed,
            vectors_added: report.vectors_added,
            full_seconds,
            speedup: full_seconds / reindex_seconds,
            cli_seconds: 0.0,
            cold_full_seconds: None,
            cold_speedup: None,
        });
    }
    if bench.cold {
        // An engine with an empty data directory: every chunk goes through the model.
        eprintln!("full index with an empty embedding cache (minutes)...");
        let scratch = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let mut cold_config = config.clone();
        cold_config.data_dir = scratch.path().to_path_buf();
        let cold = Engine::new(cold_config)?;
        let cold_root = clone("cold")?;
        let (seconds, _) = index_at(&cold, &cold_root, &commits[1])?;
        let step = &mut steps[0];
        step.cold_full_seconds = Some(seconds);
        step.cold_speedup = Some(seconds / step.reindex_seconds);
    }
    // The same steps through the command line: a new process each time, which opens the
    // index and loads the model. This process lets go of the files first.
    let data_dir = engine.config().data_dir.clone();
    drop(engine);
    let exe = std::env::current_exe().map_err(|e| Error::Internal(e.to_string()))?;
    let cli = |commit: &str| -> Result<f64> {
        git(&root, &["update-ref", "refs/heads/bench", commit])?;
        let started = Instant::now();
        let status = Command::new(&exe)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["index", "--ref", "bench", "--json"])
            .arg(&root)
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| Error::Internal(e.to_string()))?;
        if !status.success() {
            return Err(Error::Internal(
                "codectx index failed in the benchmark".into(),
            ));
        }
        Ok(started.elapsed().as_secs_f64())
    };
    for (i, step) in steps.iter_mut().enumerate() {
        cli(&commits[i])?;
        step.cli_seconds = cli(&commits[i + 1])?;
    }
    let report = Report {
        old: old.display().to_string(),
        new: new.display().to_string(),
        lines,
        files: base.files_indexed,
        chunks: base.chunks,
        warmup_seconds,
        steps,
    };
    if json {
        crate::cli::out::json(
            &serde_json::to_string_pretty(&report).map_err(|e| Error::Internal(e.to_string()))?,
        );
    } else {
        crate::outln!(
            "history: {} lines, {} files, {} chunks (warm-up {:.0} s)",
            report.lines,
            report.files,
            report.chunks,
            report.warmup_seconds
        );
        if let Some(cold) = report.steps[0].cold_full_seconds {
            crate::outln!(
                "full index with an empty embedding cache: {cold:.1} s = {:.0}x the one-file reindex",
                report.steps[0].cold_speedup.unwrap_or_default()
            );
        }
        crate::outln!("files  reindex ms  full ms  speedup  cli ms  chunked  chunks +/-");
        for s in &report.steps {
            crate::outln!(
                "{:>5}  {:>10.1}  {:>7.0}  {:>6.0}x  {:>6.0}  {:>7}  +{} -{}",
                s.files_in_commit,
                s.reindex_seconds * 1000.0,
                s.full_seconds * 1000.0,
                s.speedup,
                s.cli_seconds * 1000.0,
                s.files_chunked,
                s.chunks_added,
                s.chunks_removed
            );
        }
    }
    Ok(())
}
