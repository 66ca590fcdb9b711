//! The learned ranking model: a small versioned file (gradient-boosted trees from LightGBM's
//! LambdaRank, or a linear model) that scores a candidate file from its features, with each
//! feature's contribution to the score. Trained offline (`benches/train-ranker.sh`), shipped
//! in `models/ranker.json`, evaluated here; a model that cannot be used is an error the
//! caller turns into the RRF fallback with a `degraded` reason, never a failed query.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::Path;

/// The format tag every model file carries.
pub const FORMAT: &str = "codectx-ranker";
/// The format version this build reads.
pub const FORMAT_VERSION: u32 = 1;

/// The model shipped with this build.
pub const DEFAULT_MODEL: &str = include_str!("../../models/ranker.json");

/// One node of a tree: a split (`feature <= threshold` goes left) or a leaf.
#[derive(Debug, Clone, Deserialize)]
struct NodeFile {
    /// Leaf value, or the node's internal value (the mean output below it, for contributions).
    value: f32,
    #[serde(default)]
    feature: Option<usize>,
    #[serde(default)]
    threshold: Option<f64>,
    #[serde(default)]
    left: Option<usize>,
    #[serde(default)]
    right: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
struct ModelFile {
    format: String,
    version: u32,
    /// A name for answers and logs (`ltr-2026-12-03`).
    id: String,
    /// Feature names, in the order the trees' and weights' indices use.
    features: Vec<String>,
    #[serde(default)]
    trees: Vec<Vec<NodeFile>>,
    #[serde(default)]
    weights: Vec<f32>,
    #[serde(default)]
    bias: f32,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    feature: u32,
    /// LightGBM compares in double precision: so do we.
    threshold: f64,
    /// Children; `u32::MAX` for a leaf.
    left: u32,
    right: u32,
    value: f32,
}

/// A model ready to score, with its features mapped onto the engine's feature vector.
#[derive(Debug, Clone)]
pub struct Ranker {
    id: String,
    /// For each model feature, its index in the engine's feature vector.
    columns: Vec<usize>,
    names: Vec<String>,
    trees: Vec<Vec<Node>>,
    weights: Vec<f32>,
    bias: f32,
}

/// One feature's share of a file's score.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Contribution {
    pub feature: String,
    /// The feature's value for the file.
    pub value: f32,
    /// What it added to (or took from) the score.
    pub contribution: f32,
}

impl Ranker {
    /// Parses and checks a model file's text against the engine's feature names: every
    /// feature it uses must be one the engine computes, every tree well-formed (children
    /// after their parent, indices in range), every number finite.
    pub fn parse(text: &str, engine_features: &[&str]) -> Result<Ranker> {
        let file: ModelFile = serde_json::from_str(text)
            .map_err(|e| Error::Corrupt(format!("ranking model is not readable: {e}")))?;
        if file.format != FORMAT || file.version != FORMAT_VERSION {
            return Err(Error::Corrupt(format!(
                "ranking model has format {:?} version {}, this codectx reads {FORMAT:?} version {FORMAT_VERSION}",
                file.format, file.version
            )));
        }
        let mut columns = Vec::with_capacity(file.features.len());
        for name in &file.features {
            let Some(i) = engine_features.iter().position(|f| f == name) else {
                return Err(Error::Corrupt(format!(
                    "ranking model {} uses feature {name:?}, which this codectx does not compute",
                    file.id
                )));
            };
            columns.push(i);
        }
        let n = file.features.len();
        let bad = |what: String| Error::Corrupt(format!("ranking model {}: {what}", file.id));
        if !file.bias.is_finite() {
            return Err(bad("its bias is not a finite number".into()));
        }
        if file.trees.is_empty() && file.weights.len() != n {
            return Err(bad(format!(
                "it has no trees and {} weights for {n} features",
                file.weights.len()
            )));
        }
        if file.weights.iter().any(|w| !w.is_finite()) {
            return Err(bad("a weight is not a finite number".into()));
        }
        let mut trees = Vec::with_capacity(file.trees.len());
        for (t, tree) in file.trees.iter().enumerate() {
            if tree.is_empty() {
                return Err(bad(format!("tree {t} has no nodes")));
            }
            let mut nodes = Vec::with_capacity(tree.len());
            for (i, node) in tree.iter().enumerate() {
                if !node.value.is_finite() {
                    return Err(bad(format!("tree {t} node {i}: its value is not finite")));
                }
                let parsed = match (node.feature, node.threshold, node.left, node.right) {
                    (None, None, None, None) => Node {
                        feature: 0,
                        threshold: 0.0,
                        left: u32::MAX,
                        right: u32::MAX,
                        value: node.value,
                    },
                    (Some(f), Some(th), Some(l), Some(r))
                        if f < n
                            && th.is_finite()
                            && l > i
                            && r > i
                            && l < tree.len()
                            && r < tree.len() =>
                    {
                        Node {
                            feature: f as u32,
                            threshold: th,
                            left: l as u32,
                            right: r as u32,
                            value: node.value,
                        }
                    }
                    _ => {
                        return Err(bad(format!(
                            "tree {t} node {i} is neither a leaf nor a split with a known feature and children after it"
                        )));
                    }
                };
                nodes.push(parsed);
            }
            trees.push(nodes);
        }
        Ok(Ranker {
            id: file.id,
            columns,
            names: file.features,
            trees,
            weights: file.weights,
            bias: file.bias,
        })
    }

    /// Reads a model file from disk (see [`Ranker::parse`]).
    pub fn load(path: &Path, engine_features: &[&str]) -> Result<Ranker> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            Error::Corrupt(format!(
                "{}: ranking model is not readable: not UTF-8 text",
                path.display()
            ))
        })?;
        Self::parse(&text, engine_features)
            .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The model's score of one feature vector (the engine's order).
    pub fn score(&self, x: &[f32]) -> f32 {
        let mut s = self.bias;
        for (w, &c) in self.weights.iter().zip(&self.columns) {
            s += w * x[c];
        }
        for tree in &self.trees {
            let mut i = 0usize;
            loop {
                let node = tree[i];
                if node.left == u32::MAX {
                    s += node.value;
                    break;
                }
                let v = f64::from(x[self.columns[node.feature as usize]]);
                i = if v <= node.threshold {
                    node.left
                } else {
                    node.right
                } as usize;
            }
        }
        s
    }

    /// Each model feature's contribution to `score(x)` (for trees, the change of the node
    /// value along the decision path, as in Saabas' method; for a linear model, weight x
    /// value), largest magnitude first; the bias and the trees' root values are left out,
    /// being the same for every file.
    pub fn contributions(&self, x: &[f32]) -> Vec<Contribution> {
        let mut by_feature = vec![0f32; self.names.len()];
        for (k, w) in self.weights.iter().enumerate() {
            by_feature[k] += w * x[self.columns[k]];
        }
        for tree in &self.trees {
            let mut i = 0usize;
            loop {
                let node = tree[i];
                if node.left == u32::MAX {
                    break;
                }
                let f = node.feature as usize;
                let next = if f64::from(x[self.columns[f]]) <= node.threshold {
                    node.left
                } else {
                    node.right
                } as usize;
                by_feature[f] += tree[next].value - node.value;
                i = next;
            }
        }
        let mut out: Vec<Contribution> = by_feature
            .into_iter()
            .enumerate()
            .filter(|(_, c)| *c != 0.0)
            .map(|(k, c)| Contribution {
                feature: self.names[k].clone(),
                value: x[self.columns[k]],
                contribution: c,
            })
            .collect();
        out.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEATURES: &[&str] = &["a", "b", "c"];

    /// Two stumps and a depth-2 tree over features b and c (model order: c, b).
    const TREES: &str = r#"{"format": "codectx-ranker", "version": 1, "id": "t",
      "features": ["c", "b"], "bias": 0.5,
      "trees": [
        [{"value": 0.0, "feature": 1, "threshold": 1.0, "left": 1, "right": 2},
         {"value": -1.0}, {"value": 1.0}],
        [{"value": 0.2, "feature": 0, "threshold": 0.5, "left": 1, "right": 2},
         {"value": 0.0, "feature": 1, "threshold": 3.0, "left": 3, "right": 4},
         {"value": 0.6},
         {"value": -0.5}, {"value": 0.5}]
      ]}"#;

    #[test]
    fn trees_score_and_explain_their_score() {
        let r = Ranker::parse(TREES, FEATURES).expect("model");
        // a=9 (unused), b=2, c=0: tree 1 -> right (1.0), tree 2 -> left, then b<=3 -> -0.5.
        let x = [9.0, 2.0, 0.0];
        assert_eq!(r.score(&x), 0.5 + 1.0 - 0.5);
        let c = r.contributions(&x);
        // b: +1.0 (tree 1) and -0.5 (tree 2, 0.0 -> -0.5); c: 0.0 - 0.2 = -0.2.
        let got: Vec<(&str, f32)> = c
            .iter()
            .map(|c| (c.feature.as_str(), (c.contribution * 100.0).round() / 100.0))
            .collect();
        assert_eq!(got, vec![("b", 0.5), ("c", -0.2)]);
        // Contributions plus the bias and root values give the score back.
        let total: f32 = c.iter().map(|c| c.contribution).sum::<f32>() + 0.5 + 0.0 + 0.2;
        assert!((total - r.score(&x)).abs() < 1e-6);
    }

    #[test]
    fn a_linear_model_scores_by_its_weights() {
        let text = r#"{"format": "codectx-ranker", "version": 1, "id": "lin",
          "features": ["a", "c"], "weights": [2.0, -1.0], "bias": 1.0}"#;
        let r = Ranker::parse(text, FEATURES).expect("model");
        assert_eq!(r.score(&[3.0, 100.0, 1.0]), 1.0 + 6.0 - 1.0);
        assert_eq!(r.contributions(&[3.0, 100.0, 1.0])[0].feature, "a");
    }

    #[test]
    fn a_model_that_cannot_be_used_says_why() {
        let cases = [
            ("not json", "not readable"),
            (
                r#"{"format": "other", "version": 1, "id": "x", "features": []}"#,
                "format \"other\"",
            ),
            (
                r#"{"format": "codectx-ranker", "version": 1, "id": "x", "features": ["zzz"], "weights": [1.0]}"#,
                "feature \"zzz\"",
            ),
            (
                r#"{"format": "codectx-ranker", "version": 1, "id": "x", "features": ["a"],
                   "trees": [[{"value": 0.0, "feature": 0, "threshold": 1.0, "left": 0, "right": 1}, {"value": 1.0}]]}"#,
                "tree 0 node 0",
            ),
            (
                r#"{"format": "codectx-ranker", "version": 1, "id": "x", "features": ["a"], "weights": []}"#,
                "0 weights for 1 features",
            ),
        ];
        for (text, expected) in cases {
            let err = Ranker::parse(text, FEATURES).expect_err(text).to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn the_shipped_model_reads_with_this_builds_features() {
        let r = Ranker::parse(DEFAULT_MODEL, super::super::rank::FEATURES)
            .expect("models/ranker.json matches the features this build computes");
        assert!(!r.id().is_empty());
    }
}
