// Flow keys that all share one CRC32C value, whatever the seed: the attack
// that made CRC32C unfit as the flow table's hash, kept for the unit test
// that shows the keyed hash spreads them and for the strait-bench row that
// times lookups over them.
//
// Why it works. The CRC32C step rte_hash_crc_8byte computes (the SSE4.2
// crc32 instruction: reflected polynomial 0x82F63B78, no inversions) is
// linear over GF(2) in the pair (seed, message): crc(s, a ^ b) =
// crc(s, a) ^ crc(0, b). So the 48 bits of a key's source address and
// port map to the 32-bit CRC through a 32x48 binary matrix, whose kernel
// has dimension at least 16; XORing any kernel vector into a key leaves
// its CRC unchanged under every seed. Gaussian elimination finds a basis,
// and the 2^16 or more combinations are distinct colliding keys.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "strait/flow_key.h"

namespace strait::tools {

// One 8-byte CRC32C step from `crc` over `data` (the little-endian bytes of
// the word, low first), bit by bit: the same function as the crc32
// instruction and rte_hash_crc_8byte.
constexpr uint32_t crc32cStep8(uint32_t crc, uint64_t data) {
  for (int byte = 0; byte < 8; ++byte) {
    crc ^= static_cast<uint8_t>(data >> (8 * byte));
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1u) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
  }
  return crc;
}

// The old flow hash of a 16-byte key: two 8-byte steps from `seed`.
inline uint32_t crc32cFlowHash(const FlowKey& k, uint32_t seed) {
  uint64_t w[2];
  std::memcpy(w, &k, sizeof w);
  return crc32cStep8(crc32cStep8(seed, w[0]), w[1]);
}

// `count` distinct keys to dstIp:dstPort/proto, from sources chosen so that
// every key has the same CRC32C as `base` under any seed (count <= 65536).
inline std::vector<FlowKey> crc32cCollidingKeys(const FlowKey& base, uint32_t count) {
  // The varied bits: srcIp (bits 0..31 of word 0) and srcPort (bits 0..15
  // of word 1); rows carry (crc of the unit vector, which unit vectors).
  struct Row {
    uint32_t crc;
    uint64_t mask;  // bit j: variable bit j (0..31 srcIp, 32..47 srcPort)
  };
  std::vector<Row> rows;
  for (int j = 0; j < 48; ++j) {
    const uint64_t w0 = j < 32 ? uint64_t{1} << j : 0;
    const uint64_t w1 = j < 32 ? 0 : uint64_t{1} << (j - 32);
    rows.push_back(Row{crc32cStep8(crc32cStep8(0, w0), w1), uint64_t{1} << j});
  }
  // Eliminate on the CRC bits; rows whose CRC reaches zero span the kernel.
  std::size_t pivotRow = 0;
  for (int bit = 0; bit < 32 && pivotRow < rows.size(); ++bit) {
    std::size_t p = pivotRow;
    while (p < rows.size() && !((rows[p].crc >> bit) & 1u)) ++p;
    if (p == rows.size()) continue;
    std::swap(rows[p], rows[pivotRow]);
    for (std::size_t r = 0; r < rows.size(); ++r)
      if (r != pivotRow && ((rows[r].crc >> bit) & 1u)) {
        rows[r].crc ^= rows[pivotRow].crc;
        rows[r].mask ^= rows[pivotRow].mask;
      }
    ++pivotRow;
  }
  std::vector<uint64_t> kernel;
  for (const Row& r : rows)
    if (r.crc == 0) kernel.push_back(r.mask);

  std::vector<FlowKey> keys;
  keys.reserve(count);
  for (uint32_t i = 0; i < count && (kernel.size() >= 32 || i < (uint64_t{1} << kernel.size())); ++i) {
    uint64_t delta = 0;
    for (std::size_t b = 0; b < kernel.size() && b < 32; ++b)
      if ((i >> b) & 1u) delta ^= kernel[b];
    FlowKey k = base;
    k.srcIp ^= static_cast<uint32_t>(delta);  // memory order = bits 0..31 of word 0 on little-endian hosts
    k.srcPort ^= static_cast<uint16_t>(delta >> 32);
    keys.push_back(k);
  }
  return keys;
}

}  // namespace strait::tools
