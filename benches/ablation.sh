#!/usr/bin/env bash
# The ranking model's ablation table: the model retrained without each group of signals,
# judged on the dev split of both datasets (docs/BENCHMARKS.md). Reads the feature files
# benches/train-ranker.sh wrote. Usage: benches/ablation.sh [WORK] (default target/ranker).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work="${1:-target/ranker}"
venv="${CODECTX_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/codectx}/train-venv"
features=("$work/features-issues.jsonl" "$work/features-commits.jsonl")
groups=(
  "all signals|"
  "no parsed-task signals (paths, frames, dotted names, definitions)|path_terms,stem_term,module_match,mentioned,frame,frame_count,defines,defines_count,q_frames,q_identifiers"
  "no chunk BM25 lane (fields)|lex_*"
  "no whole-file BM25 lanes|file_*,title_*"
  "no title lane|title_*"
  "no history (similar commits, churn, co-change)|hist_*,churn,cochange"
  "no import graph|imported_by,graph_*"
  "no file-kind priors|is_*,size,depth"
)
echo "| model | issues dev Acc@1 | Acc@5 | MRR | commits dev Acc@1 | Acc@5 | MRR |"
echo "|---|---|---|---|---|---|---|"
for g in "${groups[@]}"; do
  name=${g%%|*}; drop=${g#*|}
  "$venv/bin/python" benches/train_ranker.py --features "${features[@]}" --out "$work/ablation.json" \
    ${drop:+--drop "$drop"} --report "$work/ablation-report.json" 2>/dev/null
  python3 - "$work/ablation-report.json" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["dev"]
row = [sys.argv[2]]
for key in sorted(r, key=lambda k: "commits" in k):
    row += [f"{r[key]['acc1']:.3f}", f"{r[key]['acc5']:.3f}", f"{r[key]['mrr']:.3f}"]
print("| " + " | ".join(row) + " |")
PY
done
"$venv/bin/python" benches/train_ranker.py --features "${features[@]}" --model linear \
  --out "$work/ablation.json" --report "$work/ablation-report.json" 2>/dev/null
python3 - "$work/ablation-report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["dev"]
row = ["linear model (logistic regression), all signals"]
for key in sorted(r, key=lambda k: "commits" in k):
    row += [f"{r[key]['acc1']:.3f}", f"{r[key]['acc5']:.3f}", f"{r[key]['mrr']:.3f}"]
print("| " + " | ".join(row) + " |")
PY
