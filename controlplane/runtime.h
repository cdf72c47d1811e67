// Runtime: what the control API, health checker, DNS resolver and metrics
// need from the running daemon, as an interface so each of them can be
// tested without a dataplane. The daemon (controlplane/daemon.cc)
// implements it over its workers; tests implement it with fakes.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "strait/counters.h"
#include "strait/dataplane_info.h"

namespace strait::controlplane {

// Reported by the dataplane host (include/strait/dataplane_info.h).
using strait::FlowInfo;
using strait::PortInfo;
using strait::SnatPoolInfo;

class Runtime {
 public:
  virtual ~Runtime() = default;

  // Rebuilds the snapshot from the current state and publishes it to the
  // workers (RCU). Returns the new generation. Called with the state lock held.
  virtual uint64_t publish() = 0;

  // Sum of every worker's counters (a copy, read without stopping workers).
  virtual WorkerCounters totals() const = 0;
  // Counters of one worker (0 <= w < workerCount()).
  virtual WorkerCounters worker(uint16_t w) const = 0;
  virtual uint16_t workerCount() const = 0;

  // Flow table occupancy summed over workers, and capacity.
  virtual uint64_t flowsActive() const = 0;
  virtual uint64_t flowCapacity() const = 0;
  // Live flows per state (indexed by FlowState), summed over workers.
  virtual std::array<uint64_t, kFlowStateCount> flowsByState() const = 0;
  // A lock-free, best-effort view of up to `limit` flows.
  virtual std::vector<FlowInfo> flows(std::optional<uint16_t> serviceSlot, std::size_t limit) const = 0;
  virtual std::vector<SnatPoolInfo> snatPools() const = 0;
  virtual std::vector<PortInfo> ports() const = 0;
  virtual std::size_t neighbourCount() const = 0;
  virtual uint64_t snapshotGeneration() const = 0;

  // TSC cycles per second: the unit of the workers' cycle counters and
  // loop histogram bounds (0 when there is no dataplane).
  virtual double tscHz() const { return 0; }
  // Longest poll-loop iteration of worker `w`, in TSC cycles, since the
  // previous call for that worker (the metrics scrape is the one caller).
  virtual uint64_t takeLoopMaxCycles(uint16_t /*w*/) const { return 0; }
};

}  // namespace strait::controlplane
