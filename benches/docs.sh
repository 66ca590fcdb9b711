#!/usr/bin/env bash
# Fetches the pinned packages of the doc-comment quality dataset from the registries only
# (crates with cargo, Python packages with pip) and unpacks their sources under
# DIR/sources/{rust,python}/<name>, then mines the dataset (DIR/docs.jsonl; the stripped
# copies that get indexed go to DIR/corpus). Usage: benches/docs.sh [DIR]
# (default target/bench-docs). Prints the dataset path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-target/bench-docs}"
bin="${CODECTX_BIN:-target/release/codectx}"
crates=(regex-syntax@0.8.12 serde_json@1.0.154 globset@0.4.22 walkdir@2.5.1 indexmap@2.14.2
        bytes@1.12.2 itertools@0.14.0 url@2.5.8 chrono@0.4.45 memchr@2.8.3)
wheels=("requests==2.32.5" "click==8.3.1" "attrs==25.4.0" "packaging==25.0" "more-itertools==10.8.0"
        "toolz==1.1.0" "jinja2==3.1.6" "markdown==3.10" "tomlkit==0.13.3" "humanize==4.14.0")
if [ ! -f "$out/sources/.complete" ]; then
  rm -rf "$out/sources"; mkdir -p "$out/sources/rust" "$out/sources/python"
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  # A throwaway crate depending on the pinned versions: `cargo fetch` unpacks their sources.
  mkdir -p "$tmp/fetch/src"; echo 'fn main() {}' > "$tmp/fetch/src/main.rs"
  { echo '[package]'; echo 'name = "fetch"'; echo 'version = "0.0.0"'; echo 'edition = "2021"';
    echo '[dependencies]'
    for c in "${crates[@]}"; do echo "${c%@*} = \"=${c#*@}\""; done; } > "$tmp/fetch/Cargo.toml"
  (cd "$tmp/fetch" && cargo fetch >&2 && cargo metadata --format-version 1) | python3 -c '
import json, os, shutil, sys
meta = json.load(sys.stdin); out = sys.argv[1]; wanted = set(sys.argv[2:])
for pkg in meta["packages"]:
    if pkg["name"] + "@" + pkg["version"] in wanted:
        shutil.copytree(os.path.dirname(pkg["manifest_path"]), os.path.join(out, pkg["name"]))
' "$out/sources/rust" "${crates[@]}"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp/wheels" "${wheels[@]}" >&2
  for whl in "$tmp"/wheels/*.whl; do
    name=$(basename "$whl" | cut -d- -f1 | tr 'A-Z' 'a-z')
    python3 -m zipfile -e "$whl" "$tmp/unz/$name"
    # The package itself, not its .dist-info.
    mkdir -p "$out/sources/python/$name"
    find "$tmp/unz/$name" -mindepth 1 -maxdepth 1 -type d ! -name '*.dist-info' -exec cp -r {} "$out/sources/python/$name/" \;
  done
  touch "$out/sources/.complete"
fi
"$bin" bench mine-docs --sources "$out/sources" --work "$out" --out "$out/docs.jsonl" >&2
echo "$out/docs.jsonl"
