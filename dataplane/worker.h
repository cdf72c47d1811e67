// The worker poll loop: the DPDK adapter around the I/O-free NatCore. Each
// worker polls its own RX queue on every port, drains its handoff ring
// (replies other workers received for flows it owns), runs NatCore over the
// burst, then routes, resolves the next hop's MAC, writes Ethernet headers
// and transmits through per-port TX buffers; ARP frames go to the control
// thread. At the top of every iteration it picks up the current Snapshot
// and reports a quiescent state to RCU, which is what lets the control
// thread free replaced snapshots safely. Control work (commands from the
// control thread, flush sweeps after a snapshot flushes backends) advances
// a bounded step per iteration, and the loop measures its own iterations
// (WorkerCounters::loopMaxCycles, loopBuckets) so stalls are visible.
#pragma once

#include <rte_ether.h>

#include <atomic>
#include <cstdint>
#include <vector>

#include "dataplane/nat.h"
#include "dataplane/neighbour.h"
#include "dataplane/route.h"
#include "dataplane/worker_commands.h"
#include "strait/counters.h"
#include "strait/snapshot.h"

struct rte_ring;
struct rte_rcu_qsbr;
struct rte_mempool;

namespace strait::dataplane {

struct WorkerContext {
  uint16_t id = 0;
  uint16_t numWorkers = 1;
  std::vector<uint16_t> ports;                    // polled on queue `id`
  std::vector<rte_ether_addr> portMacs;           // indexed by DPDK port id
  uint16_t burst = 32;
  uint32_t idleSleepUs = 0;

  const std::atomic<const Snapshot*>* snapshot = nullptr;
  rte_rcu_qsbr* rcu = nullptr;
  NatCore* nat = nullptr;
  WorkerCounters* counters = nullptr;
  const RouteTable* routes = nullptr;
  const NeighbourTable* neighbours = nullptr;

  std::vector<rte_ring*> handoff;  // handoff[w]: ring into worker w (multi-producer, single-consumer)
  rte_ring* toControl = nullptr;   // ARP frames for the control thread (mp/sc)
  rte_ring* resolve = nullptr;     // next-hop IPs to resolve, as uintptr_t (mp/sc)
  rte_ring* fromControl = nullptr; // frames the control thread sends (worker 0 drains it)

  const std::atomic<bool>* stop = nullptr;
  // Control work on worker state (flow dumps, pool statistics): commands
  // arrive through an SPSC ring and advance a bounded step per iteration
  // (worker_commands.h). Null: no commands.
  CommandRunner* commands = nullptr;
  // Bumped by the control thread each time it reads
  // WorkerCounters::loopMaxCycles; the worker then starts a new maximum.
  std::atomic<uint64_t> loopMaxEpoch{0};
};

// Per-iteration bounds on control work, so that no iteration is long
// enough to overflow an RX ring: records a command may visit, and work
// units a flush sweep may spend (see NatCore::flushStep). 256 units are at
// most 8 flow removals (33 units each, two flow hash deletes; the eighth
// starts at 231 units) or 256 records visited:
// with 1,024 a loaded 2-CPU machine saw 5% of a flush's iterations over
// 50 us (docs/benchmarks.md).
inline constexpr uint32_t kCommandBudget = 2048;
inline constexpr uint32_t kSweepBudget = 256;

// lcore entry point (rte_eal_remote_launch); `arg` is a WorkerContext*.
int workerMain(void* arg);

// Milliseconds from the TSC: the clock the workers give NatCore.
uint32_t tscNowMs();

}  // namespace strait::dataplane
