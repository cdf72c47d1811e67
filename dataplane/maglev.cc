// Maglev table builder and flow hash. Backends are sorted by identity so the
// table depends only on the set; each gets an offset and a skip from two
// seeded hashes of (ip, port), which walk a full permutation of a prime-sized
// table without storing it; rounds hand out entries by weight credit. The
// algorithm and its guarantees are written up in docs/maglev.md.
#include "dataplane/maglev.h"

#include "strait/mix.h"

#include <algorithm>
#include <bit>
#include <stdexcept>
#include <string>

namespace strait::dataplane {
namespace {

// Fixed seeds: every instance must derive the same permutation for a backend
// and the same table index for a flow, so nothing here may be per-process.
constexpr uint64_t kOffsetSeed = 0x2f8a6c0d5b1e4937ull;
constexpr uint64_t kSkipSeed = 0xc3d19e7a40b6f285ull;
constexpr uint64_t kFlowSeed = 0x8e5f03a7d9c2416bull;


// Addresses and ports arrive in network order; hashing their numeric host
// values keeps tables identical across instances of either endianness.
constexpr uint32_t netToHost32(uint32_t v) {
  if constexpr (std::endian::native == std::endian::little) return __builtin_bswap32(v);
  return v;
}
constexpr uint16_t netToHost16(uint16_t v) {
  if constexpr (std::endian::native == std::endian::little) return __builtin_bswap16(v);
  return v;
}

uint64_t backendIdentity(const MaglevBackend& b) {
  return (uint64_t{netToHost32(b.ip)} << 16) | netToHost16(b.port);
}

struct Slot {
  uint64_t identity;
  uint32_t weight;
  uint16_t index;  // into the caller's span
};

// Per-backend walk state, kept together so the fill loop touches one line.
struct Walk {
  uint32_t pos;   // next candidate entry of this backend's permutation
  uint32_t skip;
  uint64_t credit;
  uint32_t weight;
  uint16_t index;
};

}  // namespace

bool isPrime(uint32_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  if (n % 3 == 0) return n == 3;
  for (uint64_t d = 5; d * d <= n; d += 6) {
    if (n % d == 0 || n % (d + 2) == 0) return false;
  }
  return true;
}

std::vector<uint16_t> buildMaglev(std::span<const MaglevBackend> backends, uint32_t size) {
  if (!isPrime(size)) {
    throw std::invalid_argument("maglev table size " + std::to_string(size) + " is not a prime");
  }
  // Index kMaglevNone (0xffff) is the empty marker, so at most 65535 backends.
  if (backends.size() > kMaglevNone) {
    throw std::invalid_argument("maglev: " + std::to_string(backends.size()) +
                                " backends, at most " + std::to_string(kMaglevNone) + " are supported");
  }

  std::vector<Slot> slots;
  slots.reserve(backends.size());
  uint32_t maxWeight = 0;
  for (size_t i = 0; i < backends.size(); ++i) {
    if (backends[i].weight == 0) continue;
    slots.push_back({backendIdentity(backends[i]), backends[i].weight, static_cast<uint16_t>(i)});
    maxWeight = std::max(maxWeight, backends[i].weight);
  }
  std::vector<uint16_t> table(size, kMaglevNone);
  if (slots.empty()) return table;

  // Input order must not matter. Duplicate identities (a caller bug) are
  // ordered by weight then index so the result is still deterministic.
  std::sort(slots.begin(), slots.end(), [](const Slot& a, const Slot& b) {
    if (a.identity != b.identity) return a.identity < b.identity;
    if (a.weight != b.weight) return a.weight < b.weight;
    return a.index < b.index;
  });

  std::vector<Walk> walks;
  walks.reserve(slots.size());
  for (const Slot& s : slots) {
    // Katran: offset in [0, M), skip in [1, M-1]; with M prime every skip is
    // coprime to M, so pos = offset + j*skip visits each entry exactly once.
    const uint32_t offset = static_cast<uint32_t>(fmix64(s.identity ^ kOffsetSeed) % size);
    const uint32_t skip = static_cast<uint32_t>(fmix64(s.identity ^ kSkipSeed) % (size - 1) + 1);
    walks.push_back({offset, skip, 0, s.weight, s.index});
  }

  // Each round every backend earns its weight; it places one entry per
  // maxWeight of credit. Equal weights therefore place exactly one entry per
  // backend per round, which is the classic Maglev loop and gives every
  // backend floor(M/N) or ceil(M/N) entries; unequal weights get shares
  // proportional to weight.
  uint32_t filled = 0;
  uint16_t* const t = table.data();
  for (;;) {
    for (Walk& w : walks) {
      w.credit += w.weight;
      while (w.credit >= maxWeight) {
        w.credit -= maxWeight;
        uint32_t pos = w.pos;
        while (t[pos] != kMaglevNone) {
          pos += w.skip;
          if (pos >= size) pos -= size;
        }
        t[pos] = w.index;
        pos += w.skip;
        if (pos >= size) pos -= size;
        w.pos = pos;
        if (++filled == size) return table;
      }
    }
  }
}

uint32_t maglevFlowHash(const FlowKey& k) {
  // Only the tuple fields: the pad bytes never influence the result.
  const uint64_t addrs = (uint64_t{netToHost32(k.srcIp)} << 32) | netToHost32(k.dstIp);
  const uint64_t rest = (uint64_t{netToHost16(k.srcPort)} << 32) |
                        (uint64_t{netToHost16(k.dstPort)} << 16) | k.proto;
  uint64_t h = fmix64(addrs ^ kFlowSeed);
  h = fmix64(h ^ (rest * 0x9e3779b97f4a7c15ull));
  return static_cast<uint32_t>(h ^ (h >> 32));
}

}  // namespace strait::dataplane
