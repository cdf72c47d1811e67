#!/bin/sh
# Checks what straitd gives Prometheus with Prometheus' own tool: the
# exposition that test_metrics renders from a fully populated fake runtime
# (promtool check metrics), the alerting rules and their unit tests
# (promtool check rules / test rules), and that the Grafana dashboard is
# valid JSON. Usage: promtool_check.sh TEST_METRICS_BINARY SOURCE_ROOT
set -eu
bin=$1
root=$2
if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool not found (Debian package prometheus); skipping" >&2
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# GTEST_OUTPUT is unset so this run leaves no second XML report of
# test_metrics behind for tools/test to count.
env -u GTEST_OUTPUT STRAIT_METRICS_OUT="$tmp/metrics.txt" "$bin" --gtest_filter=Metrics.WritesExposition >"$tmp/gtest.log" 2>&1 ||
  { cat "$tmp/gtest.log" >&2; exit 1; }
test -s "$tmp/metrics.txt" || { echo "test_metrics wrote no exposition" >&2; exit 1; }
# promtool prints lint problems and exits non-zero on any of them.
promtool check metrics <"$tmp/metrics.txt"
echo "promtool check metrics: OK ($(grep -vc '^#' "$tmp/metrics.txt") samples)"

promtool check rules "$root/deploy/prometheus/alerts.yml"
# `promtool test rules` resolves rule_files relative to the test file.
promtool test rules "$root/deploy/prometheus/alerts_test.yml"

# The dashboard must be valid JSON and every query in it valid PromQL:
# its expressions become recording rules (Grafana's variables replaced by
# plain values) for promtool to parse.
/usr/bin/python3 - "$root/deploy/grafana/strait-dashboard.json" "$tmp/dashboard_rules.yml" <<'PY'
import json, sys
dash = json.load(open(sys.argv[1]))
exprs = []
def walk(panels):
    for p in panels:
        walk(p.get("panels", []))
        for t in p.get("targets", []):
            exprs.append(t["expr"])
walk(dash["panels"])
for v in dash["templating"]["list"]:
    if isinstance(v.get("query"), dict):
        exprs.append(v["query"]["query"].replace("label_values(", "group by (instance) (").replace(", instance)", ")"))
if not exprs:
    sys.exit("dashboard has no queries")
with open(sys.argv[2], "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, e in enumerate(exprs):
        e = e.replace("$__rate_interval", "1m").replace("$instance", ".*")
        out.write(f"      - record: dashboard_query_{i}\n        expr: {json.dumps(e)}\n")
print(f"grafana dashboard: valid JSON, {len(exprs)} queries")
PY
promtool check rules "$tmp/dashboard_rules.yml"
