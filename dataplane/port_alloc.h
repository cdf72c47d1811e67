// SNAT port allocator of one worker. Ports are pooled per (SNAT address,
// backend address, backend port, protocol): two flows only conflict when all
// of those and the port are equal, so each such tuple has the whole range.
// Each pool is a FIFO ring of free ports: allocate pops the head and free
// pushes the tail, both O(1), so a released port is reused as late as
// possible (after every other free port), and allocation never fails while
// a port is free. A bitmap per pool guarantees a port is never live twice.
// Pools are preallocated at start-up; creating one on first use fills its
// ring from the range, keeping only the ports `Params::fill` (or, port by
// port, `Params::eligible`) lets this worker hand out. A pool whose last port
// came back stays (a busy backend keeps its pool) until all maxPools are
// taken; then the pool idle longest is given to the new key, so churn over
// any number of backends (DNS) never exhausts the pools while fewer than
// maxPools have flows, and the memory is fixed at start-up.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

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
  using Fill = std::function<uint32_t(const PoolKey& key, uint16_t* ring)>;

  struct Params {
    uint16_t portMin = 1024;  // host order, inclusive
    uint16_t portMax = 65535; // host order, inclusive
    uint32_t maxPools = 256;  // pools this worker can hold (memory is reserved up front)
    // Which ports (host order) this worker may hand out for a pool; called
    // for every port of the range while a pool is created. Empty = every
    // port in the range. Ignored when `fill` is set.
    std::function<bool(const PoolKey&, uint16_t port)> eligible;
    // Writes a new pool's eligible ports, ascending, to `ring` (room for
    // the whole range) and returns how many: one call per pool, so the
    // per-port work stays in one loop (straitd's workers use
    // SnatPortFilter, dataplane/snat_port_filter.h).
    Fill fill;
  };

  explicit PortAllocator(const Params& p);
  ~PortAllocator();
  PortAllocator(const PortAllocator&) = delete;
  PortAllocator& operator=(const PortAllocator&) = delete;

  // Memory reserved per pool for a port range (what maxPools multiplies).
  static std::size_t bytesPerPool(uint16_t portMin, uint16_t portMax);

  // Finds the pool for `key`, creating it on first use (reusing the pool
  // idle longest when all are taken). kNoPool when all maxPools pools have
  // ports in use.
  uint32_t pool(const PoolKey& key);
  // Pops the least recently freed port (host order). False when exhausted.
  bool allocate(uint32_t pool, uint16_t& port);
  // Returns `port` to the tail of the pool. A port that is not live is
  // ignored and counted in doubleFrees().
  void release(uint32_t pool, uint16_t port);

  uint32_t inUse(uint32_t pool) const;
  uint32_t capacity(uint32_t pool) const;  // eligible ports of the pool
  const PoolKey& key(uint32_t pool) const;
  // Pools created so far (ids 0..poolCount()-1; idle ones included).
  uint32_t poolCount() const;
  // Times an idle pool was given to a new key.
  uint64_t poolsReused() const;
  uint64_t doubleFrees() const;
  // Ports in the configured range (capacity of a pool when every port is eligible).
  uint32_t rangeSize() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strait::dataplane
