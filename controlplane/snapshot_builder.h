// Turns the control plane's LbState into the immutable Snapshot the workers
// read (include/strait/snapshot.h): one ServiceView per service with
// network-order addresses, every backend listed (drained, down and
// draining ones too, so counters and flows keep their slot), a Maglev
// table over the backends that may take new flows, the flush bits of
// removed backends, and the lookup indexes.
//
// SnapshotBuilder keeps the last Maglev table of every service and reuses
// it while the set of backends that take new flows (and their weights and
// the table size) is unchanged, so a health flap in one service does not
// rebuild every table. Call it with the state's lock held.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "controlplane/state.h"
#include "strait/snapshot.h"

namespace strait::controlplane {

class SnapshotBuilder {
 public:
  SnapshotBuilder();
  std::unique_ptr<Snapshot> build(const LbState& state, uint64_t generation);

  // The instance health endpoint answers 503 "draining" from the next
  // build on (SIGTERM, lbctl drain); otherwise 200 while
  // LbState::degradedReason() is empty, 503 "degraded" when not.
  void setDraining(bool d) { draining_ = d; }

  // How many Maglev tables the last build() computed (the rest came from the cache).
  std::size_t lastRebuilds() const { return lastRebuilds_; }

 private:
  struct CacheEntry {
    uint32_t size = 0;
    std::vector<std::tuple<uint32_t, uint16_t, uint32_t>> key;  // (ip, port, weight) per eligible backend
    std::vector<uint16_t> table;                                // indices into `key`
  };
  std::map<uint16_t, CacheEntry> cache_;  // by service slot
  std::size_t lastRebuilds_ = 0;
  bool draining_ = false;
  uint64_t isnKey0_ = 0, isnKey1_ = 0;  // per process, random
};

// One-off build without a cache.
std::unique_ptr<Snapshot> buildSnapshot(const LbState& state, uint64_t generation);

}  // namespace strait::controlplane
