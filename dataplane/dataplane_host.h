// DataplaneHost: owns everything DPDK for the daemon — EAL, mempools,
// ports, rings, the RCU quiescent-state variable, the per-worker flow
// tables, SNAT port allocators and NatCores, the route and neighbour
// tables, and the worker lcores. It publishes snapshots (one pointer
// store) and frees replaced ones only after every worker has passed a
// quiescent point, runs the ARP slow path for the control thread, and reads
// counters, flows and pool statistics without stopping the workers.
//
// It is dataplane code and depends on nothing of the control plane: the
// daemon (controlplane/daemon.cc) hands it the interfaces and [dataplane]
// sizes as plain data (include/strait/dataplane_config.h) and a sink for
// its log lines, and reads back plain reports
// (include/strait/dataplane_info.h).
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "strait/counters.h"
#include "strait/dataplane_config.h"
#include "strait/dataplane_info.h"
#include "strait/snapshot.h"

namespace strait::dataplane {

// The levels of the host's log lines (the values of controlplane/log.h's
// LogLevel, which the daemon's sink maps them to).
enum class HostLogLevel : int { kError = 0, kWarn = 1, kInfo = 2 };

struct HostParams {
  std::vector<InterfaceConfig> interfaces;
  DataplaneConfig dataplane;
  // Where the host's log lines go (control thread only; may be empty).
  std::function<void(HostLogLevel, const std::string&)> log;
};

class DataplaneHost {
 public:
  // Initialises EAL and the ports from `params`. Throws std::runtime_error.
  explicit DataplaneHost(const HostParams& params);
  ~DataplaneHost();
  DataplaneHost(const DataplaneHost&) = delete;
  DataplaneHost& operator=(const DataplaneHost&) = delete;

  // Publishes `snap` to the workers; the previous one is retired and freed
  // after a grace period. Thread-safe.
  void publish(std::unique_ptr<Snapshot> snap);
  // Waits (at most timeoutMs) until every running worker has picked up
  // snapshot `generation`. True when they all have (or none runs yet).
  bool waitPickup(uint64_t generation, uint32_t timeoutMs) const;
  // Launches the workers (call once, after the first publish).
  void start();
  // One iteration of control-thread dataplane work: ARP frames, next-hop
  // resolution, neighbour aging, snapshot reclamation. Non-blocking.
  void poll();
  // Stops the workers and ports.
  void stop();

  // Interface addresses (network order), for snapshot indexes.
  std::vector<uint32_t> interfaceIps() const;

  // Runtime pieces.
  WorkerCounters totals() const;
  WorkerCounters worker(uint16_t w) const;
  // The longest loop iteration of worker `w` (TSC cycles) since the last
  // call for it; the worker starts a new maximum afterwards.
  uint64_t takeLoopMaxCycles(uint16_t w) const;
  double tscHz() const;
  uint16_t workerCount() const;
  uint64_t flowsActive() const;
  uint64_t flowCapacity() const;
  std::array<uint64_t, kFlowStateCount> flowsByState() const;
  std::vector<FlowInfo> flows(std::optional<uint16_t> serviceSlot, std::size_t limit) const;
  std::vector<SnatPoolInfo> snatPools() const;
  std::vector<PortInfo> ports() const;
  std::size_t neighbourCount() const;
  uint64_t snapshotGeneration() const;
  std::string ownerMode() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strait::dataplane
