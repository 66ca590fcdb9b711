#!/usr/bin/env bash
# Builds the benchmark corpus from registry packages only (no other network):
#   - the sources of this project's whole dependency tree, as `cargo fetch` unpacks them;
#   - Django, SymPy, pandas and SciPy from PyPI (large Python code bases).
# Usage: benches/corpus.sh [DIR]   (default: target/bench-corpus). Prints the directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-target/bench-corpus}"
if [ -f "$out/.complete" ]; then echo "$out"; exit 0; fi
rm -rf "$out"; mkdir -p "$out/crates" "$out/python"
cargo fetch --locked >&2
cargo metadata --format-version 1 --locked 2>/dev/null | python3 -c '
import json, os, shutil, sys
meta = json.load(sys.stdin)
out = sys.argv[1]
for pkg in meta["packages"]:
    if pkg["source"] is None:
        continue  # this project itself
    src = os.path.dirname(pkg["manifest_path"])
    dst = os.path.join(out, "crates", os.path.basename(src))
    if not os.path.exists(dst):
        shutil.copytree(src, dst, symlinks=True)
' "$out"
tmp=$(mktemp -d)
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "django==5.2.*" "sympy==1.14.*" "pandas==2.3.*" "scipy==1.16.*" >&2
for whl in "$tmp"/*.whl; do python3 -m zipfile -e "$whl" "$out/python/$(basename "$whl" .whl)"; done
rm -rf "$tmp"
touch "$out/.complete"
echo "$out"
