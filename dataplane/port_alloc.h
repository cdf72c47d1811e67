// SNAT port allocator of one worker. Ports are pooled per (SNAT address,
// backend address, backend port, protocol): two flows only conflict when all
// of those and the port are equal, so each such tuple has the whole range.
// Each pool is a FIFO ring of free ports: allocate pops the head and free
// pushes the tail, both O(1), so a released port is reused as late as
// possible (after every other free port), and allocation never fails while
// a port is free. A bitmap per pool guarantees a port is never live twice.
//
// The memory of maxPools pools ("slots") is reserved at start-up. The
// worker never creates, looks up or recycles a pool: the control thread
// (SnatPools, dataplane/snat_pools.h) decides which tuple a slot serves,
// fills the slot's ring with load() while no worker can reach the slot,
// and names it in the snapshot it then publishes; the worker finds the slot
// through that snapshot (Snapshot::findSnatPool) and only allocates and
// releases. A slot's occupancy is the one field both sides read (inUse()):
// the worker writes it through std::atomic_ref, so the control thread can
// tell when a slot's last flow is gone.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

namespace strait {
class Snapshot;
}

namespace strait::dataplane {

struct PoolKey {
  uint32_t snatIp = 0;       // network order
  uint32_t backendIp = 0;    // network order
  uint16_t backendPort = 0;  // network order
  uint8_t proto = 0;
  uint8_t pad = 0;
  bool operator==(const PoolKey&) const = default;
};
static_assert(sizeof(PoolKey) == 12);

inline constexpr uint32_t kNoPool = 0xffffffffu;

class PortAllocator {
 public:
  // Writes the eligible ports of `key`, ascending (host order), to `ring`
  // (room for the whole range) and returns how many; `snap` is the snapshot
  // the pool is prepared for (its listen ports are not eligible; may be
  // null). straitd uses SnatPortFilter (dataplane/snat_port_filter.h).
  using Fill = std::function<uint32_t(const PoolKey& key, const Snapshot* snap, uint16_t* ring)>;

  struct Params {
    uint16_t portMin = 1024;  // host order, inclusive
    uint16_t portMax = 65535; // host order, inclusive
    uint32_t maxPools = 256;  // pool slots of this worker (memory is reserved up front)
    // Which ports (host order) this worker may hand out for a pool, port
    // by port. Empty = every port in the range. Ignored when `fill` is set.
    std::function<bool(const PoolKey&, uint16_t port)> eligible;
    Fill fill;
  };

  explicit PortAllocator(const Params& p);
  ~PortAllocator();
  PortAllocator(const PortAllocator&) = delete;
  PortAllocator& operator=(const PortAllocator&) = delete;

  // Memory reserved per pool slot for a port range (what maxPools multiplies).
  static std::size_t bytesPerPool(uint16_t portMin, uint16_t portMax);

  // Control thread: makes slot `id` (< maxPools) the pool of `key`, every
  // eligible port free. Only while no worker can reach the slot (no
  // published snapshot names it and no flow holds one of its ports; see
  // SnatPools). Returns the pool's capacity.
  uint32_t load(uint32_t id, const PoolKey& key, const Snapshot* snap = nullptr);

  // Worker: pops the least recently freed port (host order). False when exhausted.
  // Inline, as is peek(): both run for every new flow.
  bool allocate(uint32_t pool, uint16_t& port) {
    if (pool >= maxPools_) return false;
    Pool& p = pools_[pool];
    if (p.free == 0) return false;
    const uint16_t got = ring(pool)[p.head];
    if (++p.head == p.capacity) p.head = 0;
    setFree(p, p.free - 1);
    const uint32_t off = uint32_t{got} - portMin_;
    bitmap(pool)[off / 64] |= uint64_t{1} << (off % 64);
    port = got;
    return true;
  }
  // Worker: the port the (k+1)-th allocate() from now would return if
  // nothing is released in between; false when fewer than k+1 are free.
  // Lets a burst start fetching what a new flow's port will need before
  // it takes the port (nat.cc); a wrong guess costs only that fetch.
  bool peek(uint32_t pool, uint32_t k, uint16_t& port) const {
    if (pool >= maxPools_) return false;
    const Pool& p = pools_[pool];
    if (k >= p.free) return false;
    // k < free <= capacity and head < capacity: one wrap at most.
    uint32_t at = p.head + k;
    if (at >= p.capacity) at -= p.capacity;
    port = ring(pool)[at];
    return true;
  }
  // Worker: returns `port` to the tail of the pool. A port that is not live
  // is ignored and counted in doubleFrees().
  void release(uint32_t pool, uint16_t port);

  // Ports of `pool` held by flows; any thread (a relaxed atomic read; the
  // control thread acquires, so a 0 it sees comes after the worker's last
  // write to the slot).
  uint32_t inUse(uint32_t pool) const;
  uint32_t capacity(uint32_t pool) const;  // eligible ports of the pool
  const PoolKey& key(uint32_t pool) const;
  uint32_t maxPools() const;
  uint64_t doubleFrees() const;
  // Ports in the configured range (capacity of a pool when every port is eligible).
  uint32_t rangeSize() const;

 private:
  struct Pool {
    uint32_t head = 0;      // ring slot of the next port to hand out
    uint32_t free = 0;      // ports in the ring; read by the control thread (atomic_ref)
    uint32_t capacity = 0;  // eligible ports; the ring wraps at this size
  };
  static void setFree(Pool& p, uint32_t v) { std::atomic_ref<uint32_t>(p.free).store(v, std::memory_order_release); }
  uint16_t* ring(uint32_t p) const { return rings_ + std::size_t{p} * range_; }
  uint64_t* bitmap(uint32_t p) const { return bitmaps_ + std::size_t{p} * bitmapWords_; }

  // What allocate() and peek() read, here rather than behind impl_ so that
  // they inline into the new-flow path without a pointer chase; the memory
  // belongs to impl_.
  Pool* pools_ = nullptr;      // maxPools
  uint16_t* rings_ = nullptr;  // maxPools x range
  uint64_t* bitmaps_ = nullptr;  // maxPools x bitmapWords, bit set = port live
  uint32_t range_ = 0;         // ports in [portMin, portMax]
  uint32_t bitmapWords_ = 0;   // uint64 words per pool
  uint32_t maxPools_ = 0;
  uint16_t portMin_ = 0;

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strait::dataplane
