// Maglev consistent hashing (Eisenbud et al., NSDI 2016) with Katran's
// per-backend offset/skip generation instead of a full permutation matrix,
// and weights by cumulative credit per round. The table for a backend set
// depends only on the set (the builder sorts by backend identity first), so
// every instance with the same backends computes the same table and a
// client keeps its backend across a fleet of load balancers.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "strait/flow_key.h"

namespace strait::dataplane {

inline constexpr uint32_t kMaglevDefaultSize = 65537;
inline constexpr uint16_t kMaglevNone = 0xffff;

struct MaglevBackend {
  uint32_t ip = 0;     // network order
  uint16_t port = 0;   // network order
  uint32_t weight = 1; // 0 = takes no entries
};

// Builds a table of `size` entries (size must be prime, > number of
// backends with weight > 0). Entry values are indices into `backends`;
// all entries are kMaglevNone when no backend has a weight. Throws
// std::invalid_argument on a non-prime size or more than 65535 backends.
std::vector<uint16_t> buildMaglev(std::span<const MaglevBackend> backends, uint32_t size = kMaglevDefaultSize);

// Deterministic hash of the client side of a flow (src ip/port, dst ip/port,
// protocol) used to index the table; the same on every instance.
uint32_t maglevFlowHash(const FlowKey& k);

bool isPrime(uint32_t n);

}  // namespace strait::dataplane
