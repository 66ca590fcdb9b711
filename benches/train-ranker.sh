#!/usr/bin/env bash
# Trains the file ranking model from scratch, in one command:
#   1. builds the datasets (benches/datasets.sh: issues and commit messages from public
#      repositories, split by repository into train / dev / test);
#   2. runs `codectx bench quality --features-out` over every split of both (lexical
#      mode: the features a query has at any coverage; ranking with RRF, the features do
#      not depend on the model);
#   3. trains LightGBM LambdaRank on the train split, stopping early on dev
#      (benches/train_ranker.py; LightGBM and numpy from PyPI in $CODECTX_HOME/train-venv);
#   4. writes models/ranker.json (the shipped model: rebuild codectx to ship it) and
#      reports the dev and held-out test numbers with it next to whole-file BM25.
# Usage: benches/train-ranker.sh [WORK]   (default target/ranker). Needs the repositories
# of benches/datasets.sh (see there). Extra arguments for the trainer: TRAIN_ARGS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work="${1:-target/ranker}"
bin="${CODECTX_BIN:-target/release/codectx}"
home="${CODECTX_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/codectx}"
venv="$home/train-venv"
mkdir -p "$work"
[ -x "$bin" ] || cargo build --release --locked >&2
if [ ! -f "$venv/.installed-lightgbm-4.6.0" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet "lightgbm==4.6.0" "numpy==2.4.6" >&2
  touch "$venv/.installed-lightgbm-4.6.0"
fi
data=$(CODECTX_BIN="$bin" benches/datasets.sh "$work/datasets")
for ds in issues commits; do
  [ -s "$work/features-$ds.jsonl" ] && continue
  "$bin" --data-dir "$work/data" bench quality --dataset "$data/$ds.jsonl" --modes lexical \
    --ranker rrf --features-out "$work/features-$ds.jsonl.part" --out "$work/rrf-$ds" >&2
  mv "$work/features-$ds.jsonl.part" "$work/features-$ds.jsonl"
done
"$venv/bin/python" benches/train_ranker.py --features "$work/features-issues.jsonl" \
  "$work/features-commits.jsonl" --out models/ranker.json ${TRAIN_ARGS:-} >&2
# The new model, judged by the harness itself (the shipped model is compiled in: name the
# file instead, so this works before the rebuild).
for ds in issues commits; do
  for split in dev test; do
    "$bin" --data-dir "$work/data" bench quality --dataset "$data/$ds.jsonl" --split "$split" \
      --modes lexical,context --budgets 8000 --ranker models/ranker.json \
      --out "$work/model-$ds-$split" >&2
  done
done
echo "$work"
