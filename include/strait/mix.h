// Integer mixing functions shared by the hashes that must be deterministic
// across instances (Maglev) and by internal open-addressing indexes.
#pragma once

#include <cstdint>

namespace strait {

// murmur3's 64-bit finaliser: a bijection with full avalanche.
constexpr uint64_t fmix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

// murmur3's 32-bit finaliser.
constexpr uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

}  // namespace strait
