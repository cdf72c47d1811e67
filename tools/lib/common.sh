# Shell helpers shared by tools/test and tools/demo: where the repository
# and the build are, root check, hugepage setup and the meson build. Sourced,
# never run.

STRAIT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STRAIT_BUILD_DIR=${STRAIT_BUILD_DIR:-build}
case "$STRAIT_BUILD_DIR" in
  /*) STRAIT_BUILD=$STRAIT_BUILD_DIR ;;
  *) STRAIT_BUILD=$STRAIT_ROOT/$STRAIT_BUILD_DIR ;;
esac
export STRAIT_BUILD_DIR=$STRAIT_BUILD
# Debian's python3 has Scapy and pytest; a python3 earlier on PATH
# (pyenv, a virtualenv) may not.
STRAIT_PYTHON=/usr/bin/python3

say() { printf '%s: %s\n' "${STRAIT_TOOL:-strait}" "$*"; }
die() { printf '%s: error: %s\n' "${STRAIT_TOOL:-strait}" "$*" >&2; exit 1; }

require_root() {
  [[ $EUID -eq 0 ]] || die "needs root (network namespaces, hugepages, packages): sudo $0 $*"
}

# Reserves at least $1 MiB of 2 MiB hugepages and mounts hugetlbfs where
# DPDK looks for it. Failing is not fatal: the test helpers fall back to
# EAL --no-huge when too few pages are free.
setup_hugepages() {
  local want_mb=${1:-1024}
  local dir=/sys/kernel/mm/hugepages/hugepages-2048kB
  [[ -d $dir ]] || { say "no 2 MiB hugepage support; DPDK will run with --no-huge"; return 0; }
  local want=$((want_mb / 2)) have
  have=$(cat "$dir/nr_hugepages")
  if ((have < want)); then
    echo "$want" > "$dir/nr_hugepages" 2>/dev/null || true
    have=$(cat "$dir/nr_hugepages")
  fi
  if ! grep -qs ' hugetlbfs ' /proc/mounts; then
    mkdir -p /dev/hugepages
    mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages 2>/dev/null ||
      say "could not mount hugetlbfs on /dev/hugepages"
  fi
  say "hugepages: $have x 2 MiB reserved, $(cat "$dir/free_hugepages") free"
}

# meson setup (first time) and ninja. Prints the build's tail on failure.
build_strait() {
  local log
  log=$(mktemp /tmp/strait-build.XXXXXX)
  if [[ ! -f $STRAIT_BUILD/build.ninja ]]; then
    say "meson setup $STRAIT_BUILD"
    if ! meson setup "$STRAIT_BUILD" "$STRAIT_ROOT" >"$log" 2>&1; then
      tail -40 "$log" >&2; rm -f "$log"; return 1
    fi
  fi
  say "ninja -C $STRAIT_BUILD"
  if ! ninja -C "$STRAIT_BUILD" >"$log" 2>&1; then
    grep -E 'error|FAILED' "$log" | head -40 >&2
    tail -20 "$log" >&2
    rm -f "$log"
    return 1
  fi
  tail -1 "$log"
  rm -f "$log"
}
