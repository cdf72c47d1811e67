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

STRAIT_METRICS_OUT="$tmp/metrics.txt" "$bin" --gtest_filter=Metrics.WritesExposition >"$tmp/gtest.log" 2>&1 ||
  { cat "$tmp/gtest.log" >&2; exit 1; }
test -s "$tmp/metrics.txt" || { echo "test_metrics wrote no exposition" >&2; exit 1; }
# promtool prints lint problems and exits non-zero on any of them.
promtool check metrics <"$tmp/metrics.txt"
echo "promtool check metrics: OK ($(grep -vc '^#' "$tmp/metrics.txt") samples)"

promtool check rules "$root/deploy/prometheus/alerts.yml"
# `promtool test rules` resolves rule_files relative to the test file.
promtool test rules "$root/deploy/prometheus/alerts_test.yml"

/usr/bin/python3 -m json.tool "$root/deploy/grafana/strait-dashboard.json" >/dev/null
echo "grafana dashboard: valid JSON"
