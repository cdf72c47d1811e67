// Software Toeplitz RSS hash with per-input-byte lookup tables, so choosing
// an SNAT port whose replies reach the right queue costs a dozen loads.
//
// Definition (Microsoft RSS): for every input bit that is set, most
// significant bit of the first byte first, XOR in the 32 key bits that start
// at that bit's position. Bytes past the end of the key count as zero.
//
// ENA applies the key byte-reversed. Under DPDK's ENA PMD (v2.4.0+, DPDK
// >= 21.08, so 22.11) the PMD reverses the application's key before
// programming it and sets the initial value to 0: the two reversals cancel
// and the device computes the standard hash of the key configured through
// ethdev (and read back by rte_eth_dev_rss_hash_conf_get), so kEna builds
// the same tables as kStandard. Under the Linux kernel driver the key (as
// `ethtool -x` shows it) reaches the device unreversed and the initial value
// is 0xffffffff, so kEnaLinux is 0xffffffff ^ standard(reverse(key)).
// Sources, what is verified and what is inferred: docs/rss.md.
#include "dataplane/toeplitz.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace strait::dataplane {
namespace {

// Enough positions for an IPv4 4-tuple even with a short key.
constexpr size_t kMinPositions = 12;

constexpr uint32_t initialValue(ToeplitzVariant v) { return v == ToeplitzVariant::kEnaLinux ? 0xffffffffu : 0u; }

}  // namespace

Toeplitz::Toeplitz(std::span<const uint8_t> key, ToeplitzVariant variant) : variant_(variant) {
  if (key.size() < 4) {
    throw std::invalid_argument("toeplitz: RSS key must be at least 4 bytes, got " + std::to_string(key.size()));
  }
  std::vector<uint8_t> k(key.begin(), key.end());
  if (variant == ToeplitzVariant::kEnaLinux) std::reverse(k.begin(), k.end());
  // Zero padding lets every window below read 5 bytes without a bounds check.
  const size_t positions = std::max(k.size(), kMinPositions);
  k.resize(positions + 5, 0);

  const uint32_t init = initialValue(variant);
  tables_.resize(positions);
  for (size_t i = 0; i < positions; ++i) {
    // Key bits [8i, 8i+40): the windows for the 8 bits of input byte i.
    const uint64_t bits = (uint64_t{k[i]} << 32) | (uint64_t{k[i + 1]} << 24) | (uint64_t{k[i + 2]} << 16) |
                          (uint64_t{k[i + 3]} << 8) | uint64_t{k[i + 4]};
    uint32_t window[8];
    for (int b = 0; b < 8; ++b) window[b] = static_cast<uint32_t>(bits >> (8 - b));  // bit b = MSB-first
    auto& t = tables_[i];
    for (uint32_t v = 0; v < 256; ++v) {
      uint32_t h = 0;
      for (int b = 0; b < 8; ++b) {
        if (v & (0x80u >> b)) h ^= window[b];
      }
      t[v] = h;
    }
  }
  // The initial value is XORed into the hash once; folding it into byte 0's
  // table keeps both hash paths free of a variant branch (every input has a
  // byte 0: hash() handles the empty input separately).
  for (uint32_t& v : tables_[0]) v ^= init;
}

uint32_t Toeplitz::hash(std::span<const uint8_t> input) const {
  if (input.empty()) return initialValue(variant_);
  // Input bytes past the (zero-padded) key contribute nothing.
  const size_t n = std::min(input.size(), tables_.size());
  uint32_t h = 0;
  for (size_t i = 0; i < n; ++i) h ^= tables_[i][input[i]];
  return h;
}

uint32_t Toeplitz::hashV4(uint32_t srcIp, uint32_t dstIp, uint16_t srcPort, uint16_t dstPort) const {
  // The values are in network order, so their bytes in memory are the wire
  // bytes the NIC hashes.
  uint8_t in[12];
  std::memcpy(in, &srcIp, 4);
  std::memcpy(in + 4, &dstIp, 4);
  std::memcpy(in + 8, &srcPort, 2);
  std::memcpy(in + 10, &dstPort, 2);
  const auto* t = tables_.data();
  return t[0][in[0]] ^ t[1][in[1]] ^ t[2][in[2]] ^ t[3][in[3]] ^ t[4][in[4]] ^ t[5][in[5]] ^ t[6][in[6]] ^
         t[7][in[7]] ^ t[8][in[8]] ^ t[9][in[9]] ^ t[10][in[10]] ^ t[11][in[11]];
}

}  // namespace strait::dataplane
