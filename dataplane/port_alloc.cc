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

struct PortAllocator::Impl {
  struct Pool {
    uint32_t head = 0;      // ring slot of the next port to hand out
    uint32_t free = 0;      // ports in the ring; read by the control thread (atomic_ref)
    uint32_t capacity = 0;  // eligible ports; the ring wraps at this size
  };

  uint16_t portMin;
  uint32_t range;       // ports in [portMin, portMax]
  uint32_t maxPools;
  uint32_t bitmapWords; // uint64 words per pool
  std::function<bool(const PoolKey&, uint16_t)> eligible;
  PortAllocator::Fill fill;

  // Rings and bitmaps are written before they are read (a slot's memory is
  // initialised when it is loaded), so they are allocated without
  // zero-filling: the OS commits pages only for slots that get used.
  std::unique_ptr<uint16_t[]> rings;   // maxPools x range
  std::unique_ptr<uint64_t[]> bitmaps; // maxPools x bitmapWords, bit set = port live
  std::vector<Pool> pools;             // maxPools
  std::vector<PoolKey> keys;           // maxPools
  uint64_t doubleFrees = 0;

  uint16_t* ring(uint32_t p) { return rings.get() + size_t{p} * range; }
  uint64_t* bitmap(uint32_t p) { return bitmaps.get() + size_t{p} * bitmapWords; }

  static void setFree(Pool& p, uint32_t v) {
    std::atomic_ref<uint32_t>(p.free).store(v, std::memory_order_release);
  }
};

std::size_t PortAllocator::bytesPerPool(uint16_t portMin, uint16_t portMax) {
  const std::size_t range = std::size_t{portMax} - portMin + 1;
  return range * sizeof(uint16_t) + (range + 63) / 64 * sizeof(uint64_t) + sizeof(Impl::Pool) + sizeof(PoolKey);
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
  m.portMin = p.portMin;
  m.range = uint32_t{p.portMax} - p.portMin + 1;
  m.maxPools = p.maxPools;
  m.bitmapWords = (m.range + 63) / 64;
  m.eligible = p.eligible;
  m.fill = p.fill;
  const size_t pools = m.maxPools;
  try {
    m.rings = std::make_unique_for_overwrite<uint16_t[]>(pools * m.range);
    m.bitmaps = std::make_unique_for_overwrite<uint64_t[]>(pools * m.bitmapWords);
  } catch (const std::bad_alloc&) {
    throw std::runtime_error("port allocator: " + std::to_string(pools) + " pools of ports " +
                             std::to_string(p.portMin) + "-" + std::to_string(p.portMax) + " need " +
                             std::to_string(pools * bytesPerPool(p.portMin, p.portMax) >> 20) +
                             " MiB, which cannot be allocated");
  }
  m.pools.resize(pools);
  m.keys.resize(pools);
}

PortAllocator::~PortAllocator() = default;

uint32_t PortAllocator::load(uint32_t id, const PoolKey& key, const Snapshot* snap) {
  Impl& m = *impl_;
  if (id >= m.maxPools) return 0;
  m.keys[id] = key;
  uint16_t* r = m.ring(id);
  uint32_t n = 0;
  if (m.fill) {
    n = m.fill(key, snap, r);
    if (n > m.range) n = m.range;
  } else {
    for (uint32_t i = 0; i < m.range; ++i) {
      const auto port = static_cast<uint16_t>(m.portMin + i);
      if (!m.eligible || m.eligible(key, port)) r[n++] = port;
    }
  }
  std::memset(m.bitmap(id), 0, size_t{m.bitmapWords} * sizeof(uint64_t));
  Impl::Pool& p = m.pools[id];
  p.head = 0;
  p.capacity = n;
  Impl::setFree(p, n);
  return n;
}

bool PortAllocator::allocate(uint32_t pool, uint16_t& port) {
  Impl& m = *impl_;
  if (pool >= m.maxPools) return false;
  Impl::Pool& p = m.pools[pool];
  if (p.free == 0) return false;
  const uint16_t got = m.ring(pool)[p.head];
  if (++p.head == p.capacity) p.head = 0;
  Impl::setFree(p, p.free - 1);
  const uint32_t off = uint32_t{got} - m.portMin;
  m.bitmap(pool)[off / 64] |= uint64_t{1} << (off % 64);
  port = got;
  return true;
}

bool PortAllocator::peek(uint32_t pool, uint32_t k, uint16_t& port) const {
  Impl& m = *impl_;
  if (pool >= m.maxPools) return false;
  const Impl::Pool& p = m.pools[pool];
  if (k >= p.free) return false;
  // k < free <= capacity and head < capacity: one wrap at most.
  uint32_t at = p.head + k;
  if (at >= p.capacity) at -= p.capacity;
  port = m.ring(pool)[at];
  return true;
}

void PortAllocator::release(uint32_t pool, uint16_t port) {
  Impl& m = *impl_;
  const uint32_t off = uint32_t{port} - m.portMin;  // wraps to huge when port < portMin
  // A slot never loaded has capacity 0 and a bitmap never written (it is
  // allocated without zero-filling), so it must not be read; a loaded slot
  // with no eligible port has no live port either.
  if (pool >= m.maxPools || off >= m.range || m.pools[pool].capacity == 0) {
    ++m.doubleFrees;
    return;
  }
  uint64_t& word = m.bitmap(pool)[off / 64];
  const uint64_t bit = uint64_t{1} << (off % 64);
  if (!(word & bit)) {
    ++m.doubleFrees;
    return;
  }
  word &= ~bit;
  Impl::Pool& p = m.pools[pool];
  // Live ports are at most capacity - free, so the tail slot is always free.
  uint32_t tail = p.head + p.free;
  if (tail >= p.capacity) tail -= p.capacity;
  m.ring(pool)[tail] = port;
  // Last: the control thread that reads the pool idle (acquire) sees every
  // write above, and the worker writes nothing to the slot after it.
  Impl::setFree(p, p.free + 1);
}

uint32_t PortAllocator::inUse(uint32_t pool) const {
  const Impl& m = *impl_;
  if (pool >= m.maxPools) return 0;
  auto& p = const_cast<Impl::Pool&>(m.pools[pool]);
  return p.capacity - std::atomic_ref<uint32_t>(p.free).load(std::memory_order_acquire);
}

uint32_t PortAllocator::capacity(uint32_t pool) const {
  const Impl& m = *impl_;
  return pool < m.maxPools ? m.pools[pool].capacity : 0;
}

const PoolKey& PortAllocator::key(uint32_t pool) const {
  static const PoolKey kNone{};
  const Impl& m = *impl_;
  return pool < m.maxPools ? m.keys[pool] : kNone;
}

uint32_t PortAllocator::maxPools() const { return impl_->maxPools; }

uint64_t PortAllocator::doubleFrees() const { return impl_->doubleFrees; }

uint32_t PortAllocator::rangeSize() const { return impl_->range; }

}  // namespace strait::dataplane
