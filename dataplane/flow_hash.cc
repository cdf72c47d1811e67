// FlowHash: bucket array allocation, insert and remove (lookups are inline
// in the header).
#include "dataplane/flow_hash.h"

#include <rte_malloc.h>

#include <stdexcept>

namespace strait::dataplane {

FlowHash::FlowHash(uint32_t maxKeys, int socketId, const std::string& owner) : buckets_(bucketsFor(maxKeys)) {
  b_ = static_cast<Bucket*>(rte_zmalloc_socket("strait_flow_hash", memoryBytes(), RTE_CACHE_LINE_SIZE, socketId));
  if (!b_)
    throw std::runtime_error(owner + ": cannot allocate " + std::to_string(memoryBytes()) + " bytes of flow hash buckets on socket " +
                             std::to_string(socketId));
}

FlowHash::~FlowHash() { rte_free(b_); }

bool FlowHash::insert(uint32_t h, uint32_t ref) {
  if (size_ == slots()) return false;
  uint32_t bi = homeOf(h);
  // A free slot exists somewhere, so the walk ends within buckets_ steps.
  while (b_[bi].used == kAllUsed) {
    if (b_[bi].overflow != kOverflowStuck) ++b_[bi].overflow;
    if (++bi == buckets_) bi = 0;
  }
  place(bi, h, ref);
  return true;
}

bool FlowHash::remove(uint32_t h, uint32_t ref) {
  const uint16_t tag = tagOf(h);
  const uint32_t home = homeOf(h);
  uint32_t bi = home;
  for (uint32_t step = 0; step < buckets_; ++step) {
    Bucket& b = b_[bi];
    for (uint32_t m = matches(b, tag); m != 0; m &= m - 1) {
      const uint32_t s = static_cast<uint32_t>(__builtin_ctz(m));
      if (b.ref[s] != ref) continue;
      b.used = static_cast<uint16_t>(b.used & ~(1u << s));
      // Undo the insert's increments: every bucket from home up to this one.
      for (uint32_t p = home; p != bi; p = p + 1 == buckets_ ? 0 : p + 1)
        if (b_[p].overflow != kOverflowStuck) --b_[p].overflow;
      --size_;
      return true;
    }
    if (b.overflow == 0) break;
    if (++bi == buckets_) bi = 0;
  }
  return false;
}

}  // namespace strait::dataplane
