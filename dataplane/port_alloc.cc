// SNAT port allocator: per-pool FIFO rings of free ports and an in-use
// bitmap per pool. Every byte is reserved in the constructor; allocate and
// release are O(1) and never allocate. A loaded pool's ring lists its
// eligible ports in ascending order: the order only decides which port a
// fresh pool hands out first, and ascending keeps traces and tests readable
// (ports are not secrets here; a client cannot observe another pool's
// sequence).
#include "dataplane/port_alloc.h"

#include <atomic>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace strait::dataplane {

// What only the control side and the constructor use; the arrays
// allocate() and peek() read are reached through the class's own pointers
// (port_alloc.h), set once here.
struct PortAllocator::Impl {
  std::function<bool(const PoolKey&, uint16_t)> eligible;
  PortAllocator::Fill fill;

  // Rings and bitmaps are written before they are read (a slot's memory is
  // initialised when it is loaded), so they are allocated without
  // zero-filling: the OS commits pages only for slots that get used.
  std::unique_ptr<uint16_t[]> rings;
  std::unique_ptr<uint64_t[]> bitmaps;
  std::vector<Pool> pools;
  std::vector<PoolKey> keys;  // maxPools
  uint64_t doubleFrees = 0;
};

std::size_t PortAllocator::bytesPerPool(uint16_t portMin, uint16_t portMax) {
  const std::size_t range = std::size_t{portMax} - portMin + 1;
  return range * sizeof(uint16_t) + (range + 63) / 64 * sizeof(uint64_t) + sizeof(Pool) + sizeof(PoolKey);
}

PortAllocator::PortAllocator(const Params& p) : impl_(std::make_unique<Impl>()) {
  if (p.portMin > p.portMax) {
    throw std::invalid_argument("port allocator: portMin " + std::to_string(p.portMin) + " > portMax " +
                                std::to_string(p.portMax));
  }
  if (p.maxPools > (1u << 24)) {
    throw std::invalid_argument("port allocator: maxPools " + std::to_string(p.maxPools) + " is too large");
  }
  Impl& m = *impl_;
  portMin_ = p.portMin;
  range_ = uint32_t{p.portMax} - p.portMin + 1;
  maxPools_ = p.maxPools;
  bitmapWords_ = (range_ + 63) / 64;
  m.eligible = p.eligible;
  m.fill = p.fill;
  const size_t pools = maxPools_;
  try {
    m.rings = std::make_unique_for_overwrite<uint16_t[]>(pools * range_);
    m.bitmaps = std::make_unique_for_overwrite<uint64_t[]>(pools * bitmapWords_);
  } catch (const std::bad_alloc&) {
    throw std::runtime_error("port allocator: " + std::to_string(pools) + " pools of ports " +
                             std::to_string(p.portMin) + "-" + std::to_string(p.portMax) + " need " +
                             std::to_string(pools * bytesPerPool(p.portMin, p.portMax) >> 20) +
                             " MiB, which cannot be allocated");
  }
  m.pools.resize(pools);
  m.keys.resize(pools);
  rings_ = m.rings.get();
  bitmaps_ = m.bitmaps.get();
  pools_ = m.pools.data();
}

PortAllocator::~PortAllocator() = default;

uint32_t PortAllocator::load(uint32_t id, const PoolKey& key, const Snapshot* snap) {
  Impl& m = *impl_;
  if (id >= maxPools_) return 0;
  m.keys[id] = key;
  uint16_t* r = ring(id);
  uint32_t n = 0;
  if (m.fill) {
    n = m.fill(key, snap, r);
    if (n > range_) n = range_;
  } else {
    for (uint32_t i = 0; i < range_; ++i) {
      const auto port = static_cast<uint16_t>(portMin_ + i);
      if (!m.eligible || m.eligible(key, port)) r[n++] = port;
    }
  }
  std::memset(bitmap(id), 0, size_t{bitmapWords_} * sizeof(uint64_t));
  Pool& p = pools_[id];
  p.head = 0;
  p.capacity = n;
  setFree(p, n);
  return n;
}

void PortAllocator::release(uint32_t pool, uint16_t port) {
  const uint32_t off = uint32_t{port} - portMin_;  // wraps to huge when port < portMin
  // A slot never loaded has capacity 0 and a bitmap never written (it is
  // allocated without zero-filling), so it must not be read; a loaded slot
  // with no eligible port has no live port either.
  if (pool >= maxPools_ || off >= range_ || pools_[pool].capacity == 0) {
    ++impl_->doubleFrees;
    return;
  }
  uint64_t& word = bitmap(pool)[off / 64];
  const uint64_t bit = uint64_t{1} << (off % 64);
  if (!(word & bit)) {
    ++impl_->doubleFrees;
    return;
  }
  word &= ~bit;
  Pool& p = pools_[pool];
  // Live ports are at most capacity - free, so the tail slot is always free.
  uint32_t tail = p.head + p.free;
  if (tail >= p.capacity) tail -= p.capacity;
  ring(pool)[tail] = port;
  // Last: the control thread that reads the pool idle (acquire) sees every
  // write above, and the worker writes nothing to the slot after it.
  setFree(p, p.free + 1);
}

uint32_t PortAllocator::inUse(uint32_t pool) const {
  if (pool >= maxPools_) return 0;
  Pool& p = pools_[pool];
  return p.capacity - std::atomic_ref<uint32_t>(p.free).load(std::memory_order_acquire);
}

uint32_t PortAllocator::capacity(uint32_t pool) const { return pool < maxPools_ ? pools_[pool].capacity : 0; }

const PoolKey& PortAllocator::key(uint32_t pool) const {
  static const PoolKey kNone{};
  return pool < maxPools_ ? impl_->keys[pool] : kNone;
}

uint32_t PortAllocator::maxPools() const { return maxPools_; }

uint64_t PortAllocator::doubleFrees() const { return impl_->doubleFrees; }

uint32_t PortAllocator::rangeSize() const { return range_; }

}  // namespace strait::dataplane
