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

namespace strait::controlplane {

// One flow as `lbctl flows` shows it (host order).
struct FlowInfo {
  uint16_t worker = 0;
  uint8_t proto = 0;
  uint32_t clientIp = 0;
  uint16_t clientPort = 0;
  uint32_t vip = 0;
  uint16_t vipPort = 0;
  uint32_t snatIp = 0;
  uint16_t snatPort = 0;
  uint32_t backendIp = 0;
  uint16_t backendPort = 0;
  uint16_t serviceSlot = 0;
  uint16_t backendSlot = 0;
  std::string state;
  uint32_t idleMs = 0;
};

struct SnatPoolInfo {
  uint16_t worker = 0;
  uint32_t snatIp = 0;     // host order
  uint32_t backendIp = 0;  // host order
  uint16_t backendPort = 0;
  uint8_t proto = 0;
  uint32_t inUse = 0;
  uint32_t capacity = 0;
};

struct PortInfo {
  std::string name;   // DPDK device name
  uint16_t portId = 0;
  std::vector<std::pair<std::string, uint64_t>> xstats;  // as the PMD names them
  // Shared-NIC ports (xdp:IFNAME): the kernel interface and the XDP
  // program's verdict counters by name; empty otherwise.
  std::string xdpInterface;
  std::vector<std::pair<std::string, uint64_t>> xdpVerdicts;
};

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
