// SNAT port allocator: per-pool FIFO rings of free ports, an in-use bitmap
// per pool, and an open-addressing index from PoolKey to pool id. Every
// byte is reserved in the constructor; allocate and release are O(1) and
// never allocate. A new pool's ring lists its eligible ports in ascending
// order: the order only decides which port a fresh pool hands out first,
// and ascending keeps traces and tests readable (ports are not secrets
// here; a client cannot observe another pool's sequence).
#include "dataplane/port_alloc.h"

#include "dataplane/mix.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

namespace strait::dataplane {
namespace {

constexpr uint32_t kEmpty = kNoPool;

uint64_t hashKey(const PoolKey& k) {
  uint64_t a;
  uint32_t b;
  static_assert(sizeof(a) + sizeof(b) == sizeof(PoolKey));
  std::memcpy(&a, &k, sizeof(a));
  std::memcpy(&b, reinterpret_cast<const uint8_t*>(&k) + sizeof(a), sizeof(b));
  // murmur3 finaliser over the key folded into 64 bits.
  return fmix64(a ^ (uint64_t{b} * 0x9e3779b97f4a7c15ull));
}

}  // namespace

struct PortAllocator::Impl {
  struct Pool {
    uint32_t head = 0;      // ring slot of the next port to hand out
    uint32_t free = 0;      // ports in the ring
    uint32_t capacity = 0;  // eligible ports; the ring wraps at this size
  };

  uint16_t portMin;
  uint32_t range;       // ports in [portMin, portMax]
  uint32_t maxPools;
  uint32_t bitmapWords; // uint64 words per pool
  uint32_t indexMask;   // index slots - 1 (a power of two)
  std::function<bool(const PoolKey&, uint16_t)> eligible;
  PortAllocator::Fill fill;

  // Rings and bitmaps are written before they are read (a pool's memory is
  // initialised when the pool is created), so they are allocated without
  // zero-filling: the OS commits pages only for pools that get used.
  std::unique_ptr<uint16_t[]> rings;   // maxPools x range
  std::unique_ptr<uint64_t[]> bitmaps; // maxPools x bitmapWords, bit set = port live
  std::vector<Pool> pools;             // maxPools, first `count` in use
  std::vector<PoolKey> keys;           // maxPools
  std::vector<uint32_t> index;         // pool id or kEmpty
  uint32_t count = 0;
  uint64_t doubleFrees = 0;
  // Pools whose last port came back, oldest first (a ring of maxPools ids;
  // a pool is queued at most once, idleQueued says whether it is). When
  // every pool is taken, the oldest still-idle one is given to the new key:
  // no flow refers to it, so its id can change owner. A queued pool that
  // got ports again is skipped (and queued again when it empties).
  std::vector<uint32_t> idle;
  std::vector<uint8_t> idleQueued;
  uint32_t idleHead = 0;
  uint32_t idleCount = 0;
  uint64_t reused = 0;

  uint16_t* ring(uint32_t p) { return rings.get() + size_t{p} * range; }
  uint64_t* bitmap(uint32_t p) { return bitmaps.get() + size_t{p} * bitmapWords; }

  uint32_t slotOf(const PoolKey& key) const { return static_cast<uint32_t>(hashKey(key)) & indexMask; }

  // Removes `id` from the open-addressing index, shifting later members of
  // its probe run back so that every lookup still ends at an empty slot.
  void unindex(uint32_t id) {
    uint32_t hole = slotOf(keys[id]);
    while (index[hole] != id) hole = (hole + 1) & indexMask;
    index[hole] = kEmpty;
    for (uint32_t j = (hole + 1) & indexMask; index[j] != kEmpty; j = (j + 1) & indexMask) {
      const uint32_t home = slotOf(keys[index[j]]);
      // Move index[j] into the hole unless its home lies cyclically in (hole, j].
      const bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
      if (stays) continue;
      index[hole] = index[j];
      index[j] = kEmpty;
      hole = j;
    }
  }

  void queueIdle(uint32_t id) {
    if (idleQueued[id]) return;
    idleQueued[id] = 1;
    uint32_t tail = idleHead + idleCount;
    if (tail >= maxPools) tail -= maxPools;
    idle[tail] = id;
    ++idleCount;
  }

  // The oldest pool without ports in use, taken out of the index; kNoPool
  // when every pool has ports in use.
  uint32_t reclaim() {
    while (idleCount != 0) {
      const uint32_t id = idle[idleHead];
      if (++idleHead == maxPools) idleHead = 0;
      --idleCount;
      idleQueued[id] = 0;
      if (pools[id].free != pools[id].capacity) continue;  // in use again
      unindex(id);
      ++reused;
      return id;
    }
    return kNoPool;
  }

  uint32_t create(const PoolKey& key, uint32_t id) {
    keys[id] = key;
    uint16_t* r = ring(id);
    uint32_t n = 0;
    if (fill) {
      n = fill(key, r);
      if (n > range) n = range;
    } else {
      for (uint32_t i = 0; i < range; ++i) {
        const auto port = static_cast<uint16_t>(portMin + i);
        if (!eligible || eligible(key, port)) r[n++] = port;
      }
    }
    std::memset(bitmap(id), 0, size_t{bitmapWords} * sizeof(uint64_t));
    pools[id] = Pool{0, n, n};
    return id;
  }
};

std::size_t PortAllocator::bytesPerPool(uint16_t portMin, uint16_t portMax) {
  const std::size_t range = std::size_t{portMax} - portMin + 1;
  return range * sizeof(uint16_t) + (range + 63) / 64 * sizeof(uint64_t) + sizeof(Impl::Pool) + sizeof(PoolKey) +
         2 * sizeof(uint32_t) /* index */ + sizeof(uint32_t) + 1 /* idle ring */;
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
  // At least twice the pools keeps linear probes short; never full, so a
  // probe always ends at an empty slot.
  const uint32_t slots = std::bit_ceil(std::max<uint32_t>(2 * m.maxPools, 2));
  m.indexMask = slots - 1;
  m.index.assign(slots, kEmpty);
  m.idle.resize(pools);
  m.idleQueued.assign(pools, 0);
}

PortAllocator::~PortAllocator() = default;

uint32_t PortAllocator::pool(const PoolKey& key) {
  Impl& m = *impl_;
  uint32_t slot = static_cast<uint32_t>(hashKey(key)) & m.indexMask;
  for (;;) {
    const uint32_t id = m.index[slot];
    if (id == kEmpty) break;
    if (m.keys[id] == key) return id;
    slot = (slot + 1) & m.indexMask;
  }
  uint32_t id;
  if (m.count < m.maxPools) {
    id = m.count++;
  } else {
    id = m.reclaim();
    if (id == kNoPool) return kNoPool;
    // The removal may have shifted the probe run this key would join.
    slot = m.slotOf(key);
    while (m.index[slot] != kEmpty) slot = (slot + 1) & m.indexMask;
  }
  m.create(key, id);
  m.index[slot] = id;
  return id;
}

bool PortAllocator::allocate(uint32_t pool, uint16_t& port) {
  Impl& m = *impl_;
  if (pool >= m.count) return false;
  Impl::Pool& p = m.pools[pool];
  if (p.free == 0) return false;
  const uint16_t got = m.ring(pool)[p.head];
  if (++p.head == p.capacity) p.head = 0;
  --p.free;
  const uint32_t off = uint32_t{got} - m.portMin;
  m.bitmap(pool)[off / 64] |= uint64_t{1} << (off % 64);
  port = got;
  return true;
}

void PortAllocator::release(uint32_t pool, uint16_t port) {
  Impl& m = *impl_;
  const uint32_t off = uint32_t{port} - m.portMin;  // wraps to huge when port < portMin
  if (pool >= m.count || off >= m.range) {
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
  if (++p.free == p.capacity) m.queueIdle(pool);
}

uint32_t PortAllocator::inUse(uint32_t pool) const {
  const Impl& m = *impl_;
  return pool < m.count ? m.pools[pool].capacity - m.pools[pool].free : 0;
}

uint32_t PortAllocator::capacity(uint32_t pool) const {
  const Impl& m = *impl_;
  return pool < m.count ? m.pools[pool].capacity : 0;
}

const PoolKey& PortAllocator::key(uint32_t pool) const {
  static const PoolKey kNone{};
  const Impl& m = *impl_;
  return pool < m.count ? m.keys[pool] : kNone;
}

uint32_t PortAllocator::poolCount() const { return impl_->count; }

uint64_t PortAllocator::poolsReused() const { return impl_->reused; }

uint64_t PortAllocator::doubleFrees() const { return impl_->doubleFrees; }

uint32_t PortAllocator::rangeSize() const { return impl_->range; }

}  // namespace strait::dataplane
