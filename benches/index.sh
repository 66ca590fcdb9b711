#!/usr/bin/env bash
# The index benchmark of docs/BENCHMARKS.md: corpus, ripgrep reference, release build, run.
# Usage: benches/index.sh [--json]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
corpus=$(benches/corpus.sh)
if ! command -v rg >/dev/null 2>&1; then
  (apt-get install -y -q ripgrep >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q ripgrep >/dev/null; }) \
    || echo "ripgrep unavailable: the in-process reference still runs" >&2
fi
cargo build --release --locked >&2
du -sh --apparent-size "$corpus" >&2
# Warm the page cache so neither side pays for the first read.
rg --count --no-messages '' "$corpus" >/dev/null 2>&1 || true
exec target/release/codectx bench index --corpus "$corpus" "$@"
