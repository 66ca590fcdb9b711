#!/usr/bin/env bash
# Builds the retrieval-development datasets of issue 19 from public repositories, in the
# format `codectx bench quality` reads, each entry tagged with its repository's split
# (train / dev / test: a repository is in exactly one split, in both datasets):
#
#   DIR/issues.jsonl   real GitHub issues -> the files (and lines) their fix changed, from
#                      ../shared/datasets/issues-dev.jsonl (+ mulocbench-raw.jsonl for lines);
#   DIR/commits.jsonl  commit messages -> the lines they changed, mined with
#                      `codectx bench mine-commits` from the repositories listed below.
#
# Usage: benches/datasets.sh [DIR]   (default target/datasets)
# The repositories are read as git directories (bare is fine) from $CODECTX_MIRRORS
# (default /work/.mirror), laid out as the `fetch` tool brings them: MIRRORS/owner+name/repo
# (or MIRRORS/owner+name as a clone). Get them with the tool library's `fetch`, or on a
# machine with internet with `git clone --bare https://github.com/owner/name
# MIRRORS/owner+name/repo`. A repository that is missing is reported and left out; nothing
# fetched is ever committed (datasets and code stay under target/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-target/datasets}"
bin="${CODECTX_BIN:-target/release/codectx}"
mirrors="${CODECTX_MIRRORS:-/work/.mirror}"
shared="${CODECTX_SHARED:-../shared/datasets}"
per_repo="${CODECTX_COMMITS_PER_REPO:-50}"
mkdir -p "$out"

# Splits by repository. Forks share code, so they share a split (yt-dlp with youtube-dl).
# Issue repositories: ~half train, a fifth dev, the rest held-out test.
issue_test="yt-dlp/yt-dlp ytdl-org/youtube-dl localstack/localstack keras-team/keras
  Textualize/rich fastapi/fastapi sherlock-project/sherlock lllyasviel/Fooocus
  sqlfluff/sqlfluff pydicom/pydicom OpenInterpreter/open-interpreter"
issue_dev="ansible/ansible 3b1b/manim nvbn/thefuck xtekky/gpt4free ageitgey/face_recognition
  pylint-dev/astroid hiyouga/LLaMA-Factory"
# Commit-message repositories: Python, Rust, Go, JavaScript/TypeScript, Java.
commit_train="pallets/click pydantic/pydantic iterative/dvc psf/black ansible/ansible-lint
  clap-rs/clap serde-rs/serde BurntSushi/ripgrep junegunn/fzf gin-gonic/gin vitejs/vite
  prettier/prettier google/gson"
commit_dev="python-poetry/poetry sharkdp/fd spf13/cobra axios/axios"
commit_test="encode/httpx getmoto/moto sharkdp/bat tokio-rs/tracing go-chi/chi
  expressjs/express jhy/jsoup"

git_dir() { # owner/name -> its git directory, or nothing
  local d="$mirrors/${1/\//+}"
  if [ -d "$d/repo" ]; then echo "$d/repo"; elif [ -d "$d" ]; then echo "$d"; fi
}

echo "datasets: issues from $shared" >&2
python3 - "$shared" "$mirrors" "$out/issues.jsonl" "$issue_test" "$issue_dev" <<'PY'
import json, os, subprocess, sys
shared, mirrors, out, test, dev = sys.argv[1:6]
test, dev = set(test.split()), set(dev.split())
lines = {}
for row in map(json.loads, open(os.path.join(shared, "mulocbench-raw.jsonl"))):
    per_file = {}
    for f in (row.get("file_loc") or {}).get("files", []):
        got = set()
        for loc in f.get("Loc", {}).values():
            # `mod`: lines of the base file the fix changed; `add`: the line an insertion follows.
            got.update(loc.get("mod", []))
            got.update(loc.get("add", []))
        per_file[f["path"]] = sorted(x for x in got if isinstance(x, int) and x > 0)
    lines[row["instance_id"]] = per_file
def git_dir(repo):
    d = os.path.join(mirrors, repo.replace("/", "+"))
    return os.path.join(d, "repo") if os.path.isdir(os.path.join(d, "repo")) else d
def ranges(nums):
    out, start, prev = [], None, None
    for n in nums:
        if start is None: start = prev = n
        elif n == prev + 1: prev = n
        else: out.append((start, prev)); start = prev = n
    if start is not None: out.append((start, prev))
    return out
kept, missing = 0, {}
with open(out, "w") as w:
    for row in map(json.loads, open(os.path.join(shared, "issues-dev.jsonl"))):
        repo = row["repo"]; d = git_dir(repo)
        ok = os.path.isdir(d) and subprocess.run(
            ["git", "--git-dir", d, "cat-file", "-e", row["base_commit"] + "^{commit}"],
            capture_output=True).returncode == 0
        if not ok or not row["gold_files"]:
            missing[repo] = missing.get(repo, 0) + 1
            continue
        gold = []
        for path in row["gold_files"]:
            spans = ranges(lines.get(row["instance_id"], {}).get(path, []))
            if spans:
                gold += [{"path": path, "start_line": a, "end_line": b} for a, b in spans]
            else:
                gold.append({"path": path})
        split = "test" if repo in test else "dev" if repo in dev else "train"
        w.write(json.dumps({"id": row["instance_id"], "repo": d, "commit": row["base_commit"],
                            "query": row["problem_statement"], "gold": gold, "split": split}) + "\n")
        kept += 1
print(f"datasets: {kept} issues kept; left out (repository or base commit not here): "
      + (", ".join(f"{r} {n}" for r, n in sorted(missing.items())) or "none"), file=sys.stderr)
PY

echo "datasets: commits ($per_repo per repository)" >&2
: > "$out/commits.jsonl"
for split in train dev test; do
  eval "repos=\$commit_$split"
  for repo in $repos; do
    d=$(git_dir "$repo")
    if [ -z "$d" ]; then echo "datasets: $repo is not in $mirrors, left out" >&2; continue; fi
    "$bin" --data-dir "$out/mine-data" bench mine-commits "$d" --max "$per_repo" \
      --out "$out/mined.jsonl" >&2
    python3 - "$out/mined.jsonl" "$split" "$repo" >> "$out/commits.jsonl" <<'PY'
import json, sys
path, split, repo = sys.argv[1:4]
for line in open(path):
    e = json.loads(line); e["split"] = split
    e["id"] = repo + ":" + e["id"]
    print(json.dumps(e))
PY
  done
done
rm -rf "$out/mined.jsonl" "$out/mine-data"
for f in issues commits; do
  python3 - "$out/$f.jsonl" <<'PY'
import collections, json, sys
c = collections.Counter(json.loads(l)["split"] for l in open(sys.argv[1]))
print(f"datasets: {sys.argv[1]}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())), file=sys.stderr)
PY
done
echo "$out"
