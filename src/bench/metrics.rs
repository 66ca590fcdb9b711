//! Retrieval-quality metrics: file Acc@k and Recall@k, MRR, nDCG@k, chunk-level recall, the
//! share of gold lines a context pack holds, and a paired bootstrap for comparing two
//! methods query by query. Pure functions over ranked paths and spans.

use std::collections::{BTreeMap, BTreeSet};

/// A gold location: a file, optionally a 1-based inclusive line range.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Gold {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_line: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_line: Option<usize>,
}

/// The distinct gold files.
pub fn gold_files(gold: &[Gold]) -> BTreeSet<&str> {
    gold.iter().map(|g| g.path.as_str()).collect()
}

/// 1 when every gold file is in the first `k` ranked files, else 0.
pub fn acc_at_k(ranked: &[String], gold: &[Gold], k: usize) -> f64 {
    let top: BTreeSet<&str> = ranked.iter().take(k).map(String::as_str).collect();
    let files = gold_files(gold);
    if !files.is_empty() && files.iter().all(|f| top.contains(f)) {
        1.0
    } else {
        0.0
    }
}

/// Share of the gold files in the first `k` ranked files.
pub fn recall_at_k(ranked: &[String], gold: &[Gold], k: usize) -> f64 {
    let files = gold_files(gold);
    if files.is_empty() {
        return 0.0;
    }
    let found = ranked
        .iter()
        .take(k)
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .intersection(&files)
        .count();
    found as f64 / files.len() as f64
}

/// Reciprocal of the rank of the first gold file (0 when none is ranked).
pub fn mrr(ranked: &[String], gold: &[Gold]) -> f64 {
    let files = gold_files(gold);
    ranked
        .iter()
        .position(|p| files.contains(p.as_str()))
        .map_or(0.0, |i| 1.0 / (i + 1) as f64)
}

/// nDCG@k with binary relevance (a gold file is relevant once; duplicates count once).
pub fn ndcg_at_k(ranked: &[String], gold: &[Gold], k: usize) -> f64 {
    let files = gold_files(gold);
    if files.is_empty() {
        return 0.0;
    }
    let mut seen = BTreeSet::new();
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, p)| files.contains(p.as_str()) && seen.insert(p.as_str()))
        .map(|(i, _)| 1.0 / ((i + 2) as f64).log2())
        .sum();
    let ideal: f64 = (0..files.len().min(k))
        .map(|i| 1.0 / ((i + 2) as f64).log2())
        .sum();
    dcg / ideal
}

/// A retrieved span: a file and its 1-based inclusive lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub path: String,
    pub start_line: usize,
    pub end_line: usize,
}

fn overlaps(g: &Gold, s: &Span) -> bool {
    g.path == s.path
        && match (g.start_line, g.end_line) {
            (Some(a), Some(b)) => s.start_line <= b && a <= s.end_line,
            _ => true,
        }
}

/// Share of gold locations that some span among the first `k` overlaps (a gold location
/// without lines is the whole file).
pub fn chunk_recall_at_k(spans: &[Span], gold: &[Gold], k: usize) -> f64 {
    if gold.is_empty() {
        return 0.0;
    }
    let top = &spans[..spans.len().min(k)];
    let hit = gold
        .iter()
        .filter(|g| top.iter().any(|s| overlaps(g, s)))
        .count();
    hit as f64 / gold.len() as f64
}

/// Share of gold lines inside the packed spans. A gold location without lines counts as
/// the whole file, whose length `file_lines` gives.
pub fn line_recall(packed: &[Span], gold: &[Gold], file_lines: &dyn Fn(&str) -> usize) -> f64 {
    let mut wanted: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    for g in gold {
        let lines = wanted.entry(g.path.as_str()).or_default();
        match (g.start_line, g.end_line) {
            (Some(a), Some(b)) => lines.extend(a..=b.max(a)),
            _ => lines.extend(1..=file_lines(&g.path).max(1)),
        }
    }
    let total: usize = wanted.values().map(BTreeSet::len).sum();
    if total == 0 {
        return 0.0;
    }
    let covered: usize = wanted
        .iter()
        .map(|(path, lines)| {
            lines
                .iter()
                .filter(|&&l| {
                    packed
                        .iter()
                        .any(|s| s.path == *path && s.start_line <= l && l <= s.end_line)
                })
                .count()
        })
        .sum();
    covered as f64 / total as f64
}

/// Two methods compared query by query: the mean of `a - b`, its 95% bootstrap interval,
/// and how many queries each method won outright.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Paired {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
    pub wins: usize,
    pub losses: usize,
}

/// Resamples of the paired bootstrap.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// The paired bootstrap of per-query differences `diffs` (percentile interval over
/// [`BOOTSTRAP_RESAMPLES`] resamples; deterministic: a fixed-seed xorshift draws them).
pub fn paired_bootstrap(diffs: &[f64]) -> Paired {
    let n = diffs.len();
    if n == 0 {
        return Paired {
            mean: 0.0,
            low: 0.0,
            high: 0.0,
            wins: 0,
            losses: 0,
        };
    }
    let mut rng = super::Xorshift::new(0x9E37_79B9_7F4A_7C15);
    let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let sum: f64 = (0..n)
                .map(|_| diffs[(rng.next_u64() % n as u64) as usize])
                .sum();
            sum / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at =
        |q: f64| means[((BOOTSTRAP_RESAMPLES as f64 * q) as usize).min(BOOTSTRAP_RESAMPLES - 1)];
    Paired {
        mean: diffs.iter().sum::<f64>() / n as f64,
        low: at(0.025),
        high: at(0.975),
        wins: diffs.iter().filter(|d| **d > 0.0).count(),
        losses: diffs.iter().filter(|d| **d < 0.0).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn gold(path: &str, lines: Option<(usize, usize)>) -> Gold {
        Gold {
            path: path.into(),
            start_line: lines.map(|l| l.0),
            end_line: lines.map(|l| l.1),
        }
    }

    fn span(path: &str, a: usize, b: usize) -> Span {
        Span {
            path: path.into(),
            start_line: a,
            end_line: b,
        }
    }

    #[test]
    fn file_metrics_by_hand() {
        let ranked = files(&["x", "a", "y", "b", "z"]);
        let g = vec![gold("a", None), gold("b", None)];
        assert_eq!(acc_at_k(&ranked, &g, 1), 0.0);
        assert_eq!(acc_at_k(&ranked, &g, 3), 0.0);
        assert_eq!(acc_at_k(&ranked, &g, 4), 1.0);
        assert_eq!(recall_at_k(&ranked, &g, 1), 0.0);
        assert_eq!(recall_at_k(&ranked, &g, 3), 0.5);
        assert_eq!(recall_at_k(&ranked, &g, 10), 1.0);
        assert_eq!(mrr(&ranked, &g), 0.5);
        assert_eq!(mrr(&files(&["q"]), &g), 0.0);
        // DCG = 1/log2(3) + 1/log2(5) = 0.63093 + 0.43068; IDCG = 1 + 0.63093.
        let expected = (1.0 / 3f64.log2() + 1.0 / 5f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!((ndcg_at_k(&ranked, &g, 10) - expected).abs() < 1e-12);
        assert!((ndcg_at_k(&ranked, &g, 10) - 0.6509209298071326).abs() < 1e-12);
        assert_eq!(ndcg_at_k(&files(&["a", "b"]), &g, 10), 1.0);
        // A duplicate gold file counts once.
        assert_eq!(
            recall_at_k(&ranked, &[gold("a", None), gold("a", Some((1, 2)))], 2),
            1.0
        );
    }

    #[test]
    fn span_metrics_by_hand() {
        let g = vec![gold("a", Some((10, 19))), gold("b", Some((1, 10)))];
        let spans = vec![span("a", 15, 30), span("c", 1, 5), span("b", 11, 20)];
        // The first span overlaps a's gold; b's gold ends before the third span starts.
        assert_eq!(chunk_recall_at_k(&spans, &g, 10), 0.5);
        assert_eq!(chunk_recall_at_k(&spans, &g, 0), 0.0);
        // Lines: a 10..=19 (10 lines, 5 covered: 15..=19), b 1..=10 (none): 5 / 20.
        let lines = |_: &str| 100;
        assert_eq!(line_recall(&spans, &g, &lines), 0.25);
        // A gold file without lines is all its lines.
        let whole = vec![gold("c", None)];
        assert_eq!(line_recall(&spans, &whole, &|_: &str| 20), 0.25);
        assert_eq!(line_recall(&[], &g, &lines), 0.0);
    }

    #[test]
    fn the_paired_bootstrap_brackets_the_mean_and_counts_wins() {
        // No difference at all: a point interval at zero, no wins, no losses.
        let p = paired_bootstrap(&[0.0; 30]);
        assert_eq!(
            (p.mean, p.low, p.high, p.wins, p.losses),
            (0.0, 0.0, 0.0, 0, 0)
        );
        // Always better by 0.1 to 0.3: the interval lies above zero and holds the mean.
        let up: Vec<f64> = (0..40).map(|i| 0.1 + 0.2 * (i % 5) as f64 / 4.0).collect();
        let p = paired_bootstrap(&up);
        assert!((p.mean - 0.2).abs() < 1e-12, "{p:?}");
        assert!(
            0.1 < p.low && p.low < p.mean && p.mean < p.high && p.high < 0.3,
            "{p:?}"
        );
        assert_eq!((p.wins, p.losses), (40, 0));
        // Large wins on few queries, small losses on most: a positive mean, an interval
        // across zero, and more losses than wins.
        let mixed: Vec<f64> = (0..40)
            .map(|i| if i % 4 == 0 { 0.5 } else { -0.1 })
            .collect();
        let p = paired_bootstrap(&mixed);
        assert!(p.mean > 0.0 && p.low < 0.0 && p.high > 0.0, "{p:?}");
        assert_eq!((p.wins, p.losses), (10, 30));
        // Deterministic, and empty input is not an error.
        assert_eq!(paired_bootstrap(&mixed), p);
        assert_eq!(paired_bootstrap(&[]).wins, 0);
    }
}
