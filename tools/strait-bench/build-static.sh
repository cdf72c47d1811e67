#!/bin/bash
# Builds strait-bench with DPDK and libnuma linked statically, so the binary
# runs on another x86-64 Linux machine (for multi-core scaling runs) with
# only glibc >= 2.36 there. Usage: tools/strait-bench/build-static.sh [OUTDIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/build-static}"
mkdir -p "$out"
cflags="$(pkg-config --cflags libdpdk | sed 's/-I/-isystem /g')"
# The core's sources are read from dataplane/meson.build so this list cannot
# fall behind it; the DPDK adapters the benchmark drives are named here.
mapfile -t core < <(sed -n '/^core_sources = files(/,/^)/p' "$root/dataplane/meson.build" \
  | grep -o "'[^']*\.cc'" | tr -d "'" | sed 's|^|dataplane/|')
srcs=(tools/strait-bench/bench.cc tools/strait-bench/cpu_noise.cc "${core[@]}"
      dataplane/worker.cc dataplane/worker_commands.cc dataplane/route.cc dataplane/neighbour.cc)
lib=/usr/lib/x86_64-linux-gnu
whole=(net_null mempool_ring bus_vdev)
libs=(ethdev hash rcu lpm mbuf mempool ring net meter telemetry kvargs pci eal)
link=(-Wl,--whole-archive)
for l in "${whole[@]}"; do link+=("$lib/librte_$l.a"); done
link+=(-Wl,--no-whole-archive)
for l in "${libs[@]}"; do link+=("$lib/librte_$l.a"); done
cd "$root"
g++ -std=c++20 -O2 -DNDEBUG -I. -Iinclude $cflags "${srcs[@]}" -o "$out/strait-bench" \
  "${link[@]}" "$lib/libnuma.a" "$lib/libbsd.a" "$lib/libmd.a" -static-libstdc++ -static-libgcc -ldl -lpthread -lm
echo "$out/strait-bench"
