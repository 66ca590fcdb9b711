#!/usr/bin/env bash
# The reindex benchmark of docs/BENCHMARKS.md: two releases of networkx (167k lines of
# Python) from PyPI, the second applied as commits of 1, 10 and 100 files of its real edits.
# Usage: benches/reindex.sh [--json]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir=target/bench-reindex
mkdir -p "$dir"
for v in 3.1 3.2; do
  if [ ! -d "$dir/networkx-$v" ]; then
    python3 -m pip download -q --no-deps "networkx==$v" -d "$dir/wheels-$v" >&2
    mkdir -p "$dir/networkx-$v"
    python3 -m zipfile -e "$dir"/wheels-$v/networkx-$v-*.whl "$dir/networkx-$v" >&2
    rm -rf "$dir/networkx-$v"/*.dist-info
  fi
done
cargo build --release --locked >&2
# The data directory keeps the embedding cache between runs: only the first run embeds.
exec target/release/codectx --data-dir "$dir/data" bench reindex \
  --old "$dir/networkx-3.1" --new "$dir/networkx-3.2" --work "$dir/work" "$@"
