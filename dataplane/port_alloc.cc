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

  uint16_t* ring(uint32_t p) { return rings.get() + size_t{p} * range; }
  uint64_t* bitmap(uint32_t p) { return bitmaps.get() + size_t{p} * bitmapWords; }

  uint32_t create(const PoolKey& key) {
    const uint32_t id = count++;
    keys[id] = key;
    uint16_t* r = ring(id);
    uint32_t n = 0;
    for (uint32_t i = 0; i < range; ++i) {
      const auto port = static_cast<uint16_t>(portMin + i);
      if (!eligible || eligible(key, port)) r[n++] = port;
    }
    std::memset(bitmap(id), 0, size_t{bitmapWords} * sizeof(uint64_t));
    pools[id] = Pool{0, n, n};
    return id;
  }
};

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
  const size_t pools = m.maxPools;
  m.rings = std::make_unique_for_overwrite<uint16_t[]>(pools * m.range);
  m.bitmaps = std::make_unique_for_overwrite<uint64_t[]>(pools * m.bitmapWords);
  m.pools.resize(pools);
  m.keys.resize(pools);
  // At least twice the pools keeps linear probes short; never full, so a
  // probe always ends at an empty slot.
  const uint32_t slots = std::bit_ceil(std::max<uint32_t>(2 * m.maxPools, 2));
  m.indexMask = slots - 1;
  m.index.assign(slots, kEmpty);
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
  if (m.count == m.maxPools) return kNoPool;
  const uint32_t id = m.create(key);
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
  ++p.free;
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

uint64_t PortAllocator::doubleFrees() const { return impl_->doubleFrees; }

uint32_t PortAllocator::rangeSize() const { return impl_->range; }

}  // namespace strait::dataplane
