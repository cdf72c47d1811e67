#!/bin/bash
# Fuzz tier: builds the libFuzzer harnesses with clang (ASan + UBSan), runs
# the parser and checksum unit tests under the same sanitizers, then runs
# each harness for FUZZ_SECONDS from a generated seed corpus. Exits non-zero
# on any build failure, test failure, crash or sanitizer report.
#
#   tests/fuzz/run.sh [BUILD_DIR]        (default build-fuzz; relative to the repo root)
#   FUZZ_SECONDS=600 tests/fuzz/run.sh   long run on demand (default 20 s each)
#
# A crash leaves its input in BUILD_DIR/artifacts/; reproduce it with
# BUILD_DIR/<harness> BUILD_DIR/artifacts/<file>. The working corpus in
# BUILD_DIR/corpus/<harness> grows across runs.
set -u -o pipefail

cd "$(dirname "$0")/../.." || exit 1
BUILD=${1:-build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
CXX=${CXX_FUZZ:-}
if [ -z "$CXX" ]; then
  for c in clang++-14 clang++; do
    if command -v "$c" >/dev/null 2>&1; then CXX=$c; break; fi
  done
fi
if [ -z "$CXX" ]; then
  echo "fuzz: clang++ not found (apt-get install clang libclang-rt-14-dev)" >&2
  echo "fuzz: 0 passed, 2 failed"
  exit 1
fi
PYTHON=/usr/bin/python3

# DPDK include dirs as -isystem: its headers are not warning-clean.
DPDK_CFLAGS=()
for f in $(pkg-config --cflags libdpdk); do
  case "$f" in
    -I*) DPDK_CFLAGS+=(-isystem "${f#-I}") ;;
    *) DPDK_CFLAGS+=("$f") ;;
  esac
done
read -r -a DPDK_LIBS <<<"$(pkg-config --libs libdpdk)"
read -r -a GTEST_LIBS <<<"$(pkg-config --libs gtest 2>/dev/null || echo -lgtest)"

# shellcheck disable=SC2054  # the commas belong to one flag
SAN=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
CXXFLAGS=(-std=c++20 -O1 -g -Wall -Wextra -Wshadow -I. -Iinclude "${DPDK_CFLAGS[@]}")

# The I/O-free per-packet core (dataplane/meson.build core_sources).
CORE_SOURCES=(
  dataplane/snapshot_index.cc
  dataplane/parse.cc
  dataplane/checksum.cc
  dataplane/maglev.cc
  dataplane/toeplitz.cc
  dataplane/port_alloc.cc
  dataplane/snat_pools.cc
  dataplane/tcp_state.cc
  dataplane/siphash.cc
  dataplane/siphash_batch.cc
  dataplane/flow_hash.cc
  dataplane/flow_table.cc
  dataplane/nat.cc
  dataplane/icmp.cc
  dataplane/health_endpoint.cc
  dataplane/mss_clamp.cc
  dataplane/syncookie.cc
  dataplane/synproxy.cc
  dataplane/proxy_protocol.cc
)
PARSE_SOURCES=(dataplane/parse.cc)
HARNESSES=(fuzz_parse fuzz_nat)

mkdir -p "$BUILD/obj" "$BUILD/artifacts" "$BUILD/logs"
build_failed=()

# Core objects, instrumented for coverage and the sanitizers, two at a time.
compile_obj() {
  local src=$1 obj
  obj=$BUILD/obj/$(basename "${1%.cc}").o
  "$CXX" "${CXXFLAGS[@]}" "${SAN[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$obj" \
    >"$BUILD/logs/$(basename "$obj").log" 2>&1 || { cat "$BUILD/logs/$(basename "$obj").log" >&2; return 1; }
}
pids=()
for src in "${CORE_SOURCES[@]}"; do
  compile_obj "$src" &
  pids+=($!)
  if [ ${#pids[@]} -ge 2 ]; then wait "${pids[0]}" || build_failed+=("core object"); pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || build_failed+=("core object"); done

objs() {
  local o=()
  for s in "$@"; do o+=("$BUILD/obj/$(basename "${s%.cc}").o"); done
  echo "${o[@]}"
}

link_harness() {
  local h=$1
  shift
  # shellcheck disable=SC2046
  "$CXX" "${CXXFLAGS[@]}" "${SAN[@]}" -fsanitize=fuzzer "tests/fuzz/$h.cc" $(objs "$@") \
    "${DPDK_LIBS[@]}" -o "$BUILD/$h" >"$BUILD/logs/$h.link.log" 2>&1
}

declare -A built
if link_harness fuzz_parse "${PARSE_SOURCES[@]}"; then built[fuzz_parse]=1; else
  echo "fuzz: building fuzz_parse failed:" >&2; tail -n 40 "$BUILD/logs/fuzz_parse.link.log" >&2; fi
if link_harness fuzz_nat "${CORE_SOURCES[@]}"; then built[fuzz_nat]=1; else
  echo "fuzz: building fuzz_nat failed:" >&2; tail -n 40 "$BUILD/logs/fuzz_nat.link.log" >&2; fi

# The parser and checksum unit tests under ASan/UBSan: every truncation
# point of every frame kind is parsed from an exact-size heap buffer.
unit_pass=0
unit_fail=0
for t in parse checksum; do
  srcs=("dataplane/$t.cc")
  # shellcheck disable=SC2046
  if "$CXX" "${CXXFLAGS[@]}" "${SAN[@]}" "tests/unit/test_$t.cc" tests/unit/plain_main.cc $(objs "${srcs[@]}") \
      "${GTEST_LIBS[@]}" -pthread -o "$BUILD/test_${t}_asan" >"$BUILD/logs/test_$t.log" 2>&1 &&
     "$BUILD/test_${t}_asan" --gtest_brief=1 >>"$BUILD/logs/test_$t.log" 2>&1; then
    unit_pass=$((unit_pass + 1))
  else
    unit_fail=$((unit_fail + 1))
    echo "fuzz: test_$t under ASan/UBSan failed:" >&2
    tail -n 40 "$BUILD/logs/test_$t.log" >&2
  fi
done
echo "sanitized unit tests: $unit_pass passed, $unit_fail failed"

rm -rf "$BUILD/seeds"
if ! "$PYTHON" tests/fuzz/make_seeds.py "$BUILD/seeds"; then
  echo "fuzz: seed generation failed" >&2
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
passed=0
failed=0
for h in "${HARNESSES[@]}"; do
  if [ -z "${built[$h]:-}" ]; then
    failed=$((failed + 1))
    continue
  fi
  mkdir -p "$BUILD/corpus/$h" "$BUILD/seeds/$h"
  log=$BUILD/logs/$h.run.log
  maxlen=2048
  [ "$h" = fuzz_nat ] && maxlen=16384
  if "$BUILD/$h" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=4096 -max_len=$maxlen \
      -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$h-" \
      "$BUILD/corpus/$h" "$BUILD/seeds/$h" >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "fuzz: $h ok ($(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') runs," \
         "cov $(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2))"
  else
    failed=$((failed + 1))
    echo "fuzz: $h FAILED, log $log:" >&2
    grep -v '^#' "$log" | tail -n 60 >&2
  fi
done

if [ ${#build_failed[@]} -gt 0 ]; then echo "fuzz: objects that failed to build: ${build_failed[*]}" >&2; fi
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$unit_fail" -eq 0 ] && [ ${#build_failed[@]} -eq 0 ]
