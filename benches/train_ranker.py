#!/usr/bin/env python3
"""Trains codectx's file ranking model from `codectx bench quality --features-out` files.

Reads one or more feature files (JSONL: a header naming the features, then one line per
query with its candidate files' feature vectors and gold labels, tagged with the query's
split), trains on the `train` split, stops early on `dev`, reports dev metrics next to the
lanes alone, and writes the model in codectx's format (src/retrieve/ranker.rs):

  {"format": "codectx-ranker", "version": 1, "id": ..., "features": [...],
   "trees": [[{"value", "feature", "threshold", "left", "right"}, ...], ...]}   (or "weights")

Models: `trees` (LightGBM LambdaRank, the default) or `linear` (pointwise logistic
regression on standardised features, folded back to raw-feature weights). `--only` or
`--drop` restrict the features (the ablation table). Deterministic: fixed seeds, one thread.
"""
import argparse
import datetime
import json
import math
import sys

import numpy as np


def load(paths):
    names, queries = None, []
    for path in paths:
        with open(path) as f:
            header = json.loads(f.readline())
            if names is None:
                names = header["features"]
            elif names != header["features"]:
                sys.exit(f"{path}: its features differ from the first file's")
            for line in f:
                q = json.loads(line)
                q["source"] = path
                queries.append(q)
    return names, queries


def metrics(queries, scores):
    """Acc@1, Acc@5 (every gold file in the top k), MRR over queries; a gold file that is
    not a candidate is never found."""
    acc1 = acc5 = rr = 0.0
    for q, s in zip(queries, scores):
        labels = np.array(q["labels"])
        order = np.argsort(-s, kind="stable")
        gold = q["gold"]
        top1, top5 = labels[order[:1]].sum(), labels[order[:5]].sum()
        acc1 += float(gold > 0 and top1 == gold) if gold <= 1 else 0.0
        acc5 += float(gold > 0 and top5 >= gold)
        hits = np.nonzero(labels[order])[0]
        rr += 1.0 / (hits[0] + 1) if len(hits) else 0.0
    n = max(len(queries), 1)
    return acc1 / n, acc5 / n, rr / n


def flat_tree(node, out):
    """LightGBM's nested tree -> a flat list, children after their parent."""
    i = len(out)
    if "leaf_value" in node:
        out.append({"value": node["leaf_value"]})
        return i
    if node.get("decision_type", "<=") != "<=":
        sys.exit(f"unsupported split {node.get('decision_type')}")
    out.append(None)
    left = flat_tree(node["left_child"], out)
    right = flat_tree(node["right_child"], out)
    out[i] = {"value": node["internal_value"], "feature": node["split_feature"],
              "threshold": node["threshold"], "left": left, "right": right}
    return i


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", nargs="+", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", choices=["trees", "linear"], default="trees")
    ap.add_argument("--only", default="", help="comma-separated features to keep")
    ap.add_argument("--drop", default="", help="comma-separated features (or prefixes*) to leave out")
    ap.add_argument("--trees", type=int, default=400)
    ap.add_argument("--leaves", type=int, default=15)
    ap.add_argument("--rate", type=float, default=0.05)
    ap.add_argument("--id", default=None)
    ap.add_argument("--report", default=None, help="write the dev metrics per dataset here (JSON)")
    args = ap.parse_args()

    names, queries = load(args.features)
    keep = list(range(len(names)))
    if args.only:
        wanted = args.only.split(",")
        keep = [i for i, n in enumerate(names) if n in wanted]
    if args.drop:
        drop = args.drop.split(",")
        keep = [i for i in keep if not any(
            names[i] == d or (d.endswith("*") and names[i].startswith(d[:-1])) for d in drop)]
    used = [names[i] for i in keep]
    split = {s: [q for q in queries if q.get("split") == s and q["x"]] for s in ("train", "dev")}
    for s, qs in split.items():
        pos = sum(1 for q in qs if sum(q["labels"]) > 0)
        print(f"{s}: {len(qs)} queries, {pos} with a gold file among the candidates", file=sys.stderr)
    if not split["train"]:
        sys.exit("no training queries (entries of the train split)")

    def matrix(qs):
        x = np.array([row for q in qs for row in q["x"]], dtype=np.float64)[:, keep]
        y = np.array([l for q in qs for l in q["labels"]], dtype=np.float64)
        return x, y, [len(q["x"]) for q in qs]

    # A query whose gold is among no candidate teaches nothing (and LightGBM scores its
    # NDCG as perfect): training and early stopping use the others.
    learnable = {s: [q for q in qs if sum(q["labels"]) > 0] for s, qs in split.items()}
    xt, yt, gt = matrix(learnable["train"])
    model = {"format": "codectx-ranker", "version": 1, "features": used}
    if args.model == "trees":
        import lightgbm as lgb
        params = dict(objective="lambdarank", metric="ndcg", eval_at=[5], first_metric_only=True,
                      num_leaves=args.leaves, learning_rate=args.rate, min_data_in_leaf=20,
                      feature_fraction=0.8, bagging_fraction=0.8, bagging_freq=1,
                      lambdarank_truncation_level=20, seed=7, deterministic=True,
                      force_row_wise=True, num_threads=1, verbose=-1)
        train = lgb.Dataset(xt, yt, group=gt, feature_name=used, free_raw_data=False)
        valid = []
        if learnable["dev"]:
            xd, yd, gd = matrix(learnable["dev"])
            valid = [lgb.Dataset(xd, yd, group=gd, reference=train)]
        booster = lgb.train(params, train, num_boost_round=args.trees, valid_sets=valid,
                            callbacks=[lgb.early_stopping(100, verbose=False)] if valid else [])
        n = booster.best_iteration or args.trees
        dump = booster.dump_model(num_iteration=n)
        trees = []
        for t in dump["tree_info"]:
            flat = []
            flat_tree(t["tree_structure"], flat)
            trees.append(flat)
        model["trees"] = trees
        model["bias"] = 0.0
        predict = lambda x: booster.predict(x, num_iteration=n)
        print(f"trees: {len(trees)} (best iteration on dev)", file=sys.stderr)
        gain = booster.feature_importance("gain", iteration=n)
        top = sorted(zip(used, gain), key=lambda p: -p[1])[:12]
        print("gain: " + ", ".join(f"{k} {v:.0f}" for k, v in top), file=sys.stderr)
    else:
        mean, std = xt.mean(0), xt.std(0) + 1e-9
        z = (xt - mean) / std
        w, b = np.zeros(z.shape[1]), 0.0
        pos = max(yt.mean(), 1e-6)
        sw = np.where(yt > 0, 0.5 / pos, 0.5 / (1 - pos))  # balance the classes
        for _ in range(3000):
            p = 1 / (1 + np.exp(-(z @ w + b)))
            g = (p - yt) * sw
            w -= 0.1 * (z.T @ g / len(yt) + 1e-3 * w)
            b -= 0.1 * g.mean()
        model["weights"] = list(map(float, w / std))
        model["bias"] = float(b - (w * mean / std).sum())
        predict = lambda x: x @ (w / std) + model["bias"]
    model["id"] = args.id or f"ltr-{args.model}-{datetime.date.today().isoformat()}"

    results = {}

    def report(qs, label):
        if not qs:
            return
        scores = [predict(np.array(q["x"], dtype=np.float64)[:, keep]) for q in qs]
        a1, a5, mrr = metrics(qs, scores)
        print(f"{label}: Acc@1 {a1:.3f}  Acc@5 {a5:.3f}  MRR {mrr:.3f}  ({len(qs)} queries)", file=sys.stderr)
        return {"acc1": a1, "acc5": a5, "mrr": mrr, "queries": len(qs)}

    for source in sorted({q["source"] for q in queries}):
        for s in ("train", "dev"):
            qs = [q for q in split[s] if q["source"] == source]
            r = report(qs, f"{source} {s} model")
            if s == "dev" and r:
                results[source] = r
            if s == "dev":
                for lane in ("lex_rank", "file_rank"):
                    if lane in names:
                        i = names.index(lane)
                        scores = [np.array(q["x"])[:, i] for q in qs]
                        a1, a5, mrr = metrics(qs, scores)
                        print(f"{source} dev {lane} alone: Acc@1 {a1:.3f}  Acc@5 {a5:.3f}  MRR {mrr:.3f}",
                              file=sys.stderr)
    if args.report:
        with open(args.report, "w") as f:
            json.dump({"features": used, "dev": results}, f)
    with open(args.out, "w") as f:
        json.dump(model, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out} ({model['id']}, {len(used)} features)", file=sys.stderr)


if __name__ == "__main__":
    main()
