// The lifecycle of SNAT port pools, run entirely on the control thread.
// Every worker reserves maxPools pool slots at start-up (PortAllocator);
// the same slot id serves the same (SNAT address, backend address:port,
// protocol) tuple on every worker, each worker's slot holding the ports
// that worker may hand out. Before a snapshot is published, prepare() gives
// every tuple it names a slot, loading a new slot for each worker (its
// eligible ports computed here, SnatPortFilter), and writes the tuple ->
// slot index into the snapshot; the workers only look pools up there.
//
// A slot is referenced by the snapshots that name its tuple (counted here:
// prepare() takes the references, release() drops those of a snapshot
// freed after its RCU grace period) and by its live flows (the ports in
// use, which each worker counts in its own PortAllocator). Once neither
// holds it, collect() retires it through one more grace period of the same
// RCU the snapshots use and puts it back on the free list, where the next
// new tuple finds it: DNS churn over any number of backends keeps the pool
// memory and the pool count bounded by the tuples in use at once.
//
// Why no worker can touch memory the control thread rewrites: load() only
// runs on a free slot. A slot becomes free only after (1) every snapshot
// naming it has been freed, which RCU does only after each worker passed a
// quiescent point since the snapshot was replaced, so no worker can find
// the slot any more; (2) every worker's occupancy of it read 0 (an acquire
// load paired with the worker's release store, the last write a worker
// makes to a slot), and no flow can take a port again by (1); (3) another
// grace period has passed since then. The reloaded slot becomes reachable
// only through the next snapshot, whose publication (a release store)
// orders the load before any worker's first access.
//
// A tuple that finds no free slot (more tuples in use than
// snat_pools_per_worker) is left out of the snapshot: its new flows drop as
// snat_pools_exhausted, and prepare() returns how many were left out so the
// host can say so. The next snapshot tries again.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <unordered_map>
#include <vector>

#include "dataplane/port_alloc.h"
#include "strait/snapshot.h"

namespace strait::dataplane {

class SnatPools {
 public:
  struct Params {
    std::vector<PortAllocator*> workers;  // one per worker, same maxPools each
    // The RCU the snapshots are retired through: start a grace period
    // (a token) and ask whether it has passed. Unset: no worker runs, every
    // grace period is over at once.
    std::function<uint64_t()> graceStart;
    std::function<bool(uint64_t)> graceDone;
  };

  explicit SnatPools(Params p);

  // Gives every tuple of `snap` a slot (loading new ones on every worker)
  // and fills snap.snatPools and its index. A snapshot prepared before
  // (tests edit and re-prepare theirs) drops its old references first.
  // Returns the tuples left without a slot.
  uint32_t prepare(Snapshot& snap);
  // `snap`, prepared earlier, is gone (freed after its grace period, or
  // never published).
  void release(const Snapshot& snap);
  // Moves slots that nothing references through a grace period to the
  // free list. Call regularly (the host's poll()).
  void collect();

  // Slots serving a tuple (referenced, draining or in their last grace
  // period): what strait_snat_pools counts per worker.
  uint32_t active() const { return active_; }
  // Slots ever loaded: the pool memory touched so far on each worker is
  // slotsTouched() x PortAllocator::bytesPerPool.
  uint32_t slotsTouched() const { return touched_; }
  uint64_t retired() const { return retired_; }
  uint64_t loads() const { return loads_; }
  uint32_t maxPools() const { return maxPools_; }

  // Each active slot with its key.
  template <class F>
  void forEachActive(F&& f) const {
    for (const auto& [key, slot] : index_) f(slot, key);
  }

 private:
  enum class State : uint8_t { kFree, kLive, kGrace };
  struct Slot {
    State state = State::kFree;
    uint32_t snapshotRefs = 0;
    bool draining = false;  // listed in draining_
    uint64_t token = 0;     // kGrace: the grace period it waits for
    PoolKey key;
  };
  struct KeyHash {
    std::size_t operator()(const PoolKey& k) const;
  };

  bool idleEverywhere(uint32_t slot) const;
  void unref(uint32_t slot);

  std::vector<PortAllocator*> workers_;
  std::function<uint64_t()> graceStart_;
  std::function<bool(uint64_t)> graceDone_;
  uint32_t maxPools_ = 0;
  std::vector<Slot> slots_;
  std::unordered_map<PoolKey, uint32_t, KeyHash> index_;  // active slots
  std::vector<uint32_t> free_;      // LIFO: the most recently retired slot is reused first
  std::vector<uint32_t> draining_;  // live slots no snapshot names
  std::deque<uint32_t> grace_;      // slots in their last grace period, oldest first
  uint32_t touched_ = 0;
  uint32_t active_ = 0;
  uint64_t retired_ = 0;
  uint64_t loads_ = 0;
};

}  // namespace strait::dataplane
