#!/usr/bin/env bash
# The post-merge monitor's per-check overhead against a real Prometheus (Debian's
# `prometheus`) that scrapes itself every second: wall time and CPU time per check of
# `codectx monitor watch` (four metrics: error rate, p99 from a histogram, RSS, CPU),
# next to the same four queries sent from Python's urllib in the same run (the reference:
# the ratio is what codectx adds over Prometheus's own answer time).
# Usage: benches/monitor.sh [WINDOW_SECONDS]   (default 60; results: docs/BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
window=${1:-60}
bin=target/release/codectx
[ -x "$bin" ] || cargo build --release --locked
command -v prometheus >/dev/null || { echo "prometheus is not installed (apt-get install prometheus)"; exit 2; }
tmp=$(mktemp -d)
trap 'kill $prom 2>/dev/null || true; rm -rf "$tmp"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$tmp/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:$port']
YML
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address="127.0.0.1:$port" --log.level=error >/dev/null 2>&1 &
prom=$!
url="http://127.0.0.1:$port"
for _ in $(seq 60); do curl -sf "$url/-/ready" >/dev/null && break; sleep 0.5; done
sleep 10
cat > "$tmp/monitor.toml" <<TOML
[prometheus]
url = "$url"
[watch]
interval = "1s"
rate = "5s"
[metrics.error_rate]
query = 'sum(rate(prometheus_http_requests_total{job="\$service",code=~"5.."}[\$rate])) / sum(rate(prometheus_http_requests_total{job="\$service"}[\$rate]))'
[metrics.p99_latency]
query = 'histogram_quantile(0.99, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket{job="\$service"}[\$rate])))'
unit = "seconds"
[metrics.memory]
query = 'sum(process_resident_memory_bytes{job="\$service"})'
unit = "bytes"
[metrics.cpu]
query = 'sum(rate(process_cpu_seconds_total{job="\$service"}[\$rate]))'
unit = "cores"
TOML
# Thresholds no run reaches: the bench times checks, it does not judge Prometheus.
cat > "$tmp/policy.toml" <<TOML
[monitor]
error_rate = { above = 1.0 }
p99_latency = { ratio_above = 1000.0 }
memory = { ratio_above = 1000.0 }
cpu = { ratio_above = 1000.0 }
[task_types.bench]
severity = "low"
auto_merge = false
required_gates = []
TOML
git init -q "$tmp/repo"
git -C "$tmp/repo" -c user.name=b -c user.email=b@b commit -q --allow-empty -m merge
/usr/bin/time -f '%U %S' -o "$tmp/cpu" "$bin" --data-dir "$tmp/d" monitor watch --repo "$tmp/repo" \
  --merge HEAD --task-type bench --policy "$tmp/policy.toml" --service prometheus --config "$tmp/monitor.toml" \
  --window "${window}s" --merged-at "$(date +%s)" --json > "$tmp/events.jsonl" || true
python3 - "$tmp/events.jsonl" "$tmp/cpu" "$url" "$window" <<'PY'
import json, sys, time, urllib.parse, urllib.request
events = [json.loads(l) for l in open(sys.argv[1])]
checks = [e for e in events if e["event"] == "check"]
cpu = sum(map(float, open(sys.argv[2]).read().splitlines()[-1].split()))
d = sorted(c["duration_ms"] for c in checks)
url = sys.argv[3]
queries = [
  'sum(rate(prometheus_http_requests_total{job="prometheus",code=~"5.."}[5s])) / sum(rate(prometheus_http_requests_total{job="prometheus"}[5s]))',
  'histogram_quantile(0.99, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket{job="prometheus"}[5s])))',
  'sum(process_resident_memory_bytes{job="prometheus"})',
  'sum(rate(process_cpu_seconds_total{job="prometheus"}[5s]))',
]
ref = []
for _ in range(len(checks)):
  t = time.perf_counter()
  for q in queries:
    with urllib.request.urlopen(url + "/api/v1/query?" + urllib.parse.urlencode({"query": q})) as r:
      json.load(r)
  ref.append((time.perf_counter() - t) * 1000)
ref.sort()
pct = lambda v, p: v[min(len(v) - 1, int(p * len(v)))]
print(f"outcome: {events[-1]['outcome']}, checks: {len(checks)} in {sys.argv[4]} s")
print(f"codectx check wall ms: median {pct(d,0.5):.2f}, p99 {pct(d,0.99):.2f}")
print(f"reference ms (the 4 queries from Python urllib): median {pct(ref,0.5):.2f}, p99 {pct(ref,0.99):.2f}")
print(f"ratio codectx/reference (median): {pct(d,0.5)/pct(ref,0.5):.2f}")
print(f"codectx CPU for the whole watch: {cpu:.2f} s = {cpu*1000/len(checks):.2f} ms per check (start-up included)")
PY
