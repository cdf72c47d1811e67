// Software Toeplitz RSS hash, so the SNAT port of a new flow can be chosen
// such that the NIC hashes the flow's replies to the queue of the worker
// that owns it. Supports the standard Microsoft RSS definition (as used by
// most NICs and DPDK's rte_softrss) and ENA. The ENA device applies the key
// byte-reversed; DPDK's ENA PMD (>= 21.08) reverses the application's key
// before programming it and starts the hash from 0, so under DPDK the device
// computes the standard hash of the configured key (kEna, equal to
// kStandard). The Linux kernel driver programs the key unreversed and starts
// from 0xffffffff (kEnaLinux: for AF_XDP on ENA, key as `ethtool -x` shows
// it). Sources and what is verified: docs/rss.md.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace strait::dataplane {

enum class ToeplitzVariant : uint8_t {
  kStandard,  // Microsoft RSS
  kEna,       // ENA under DPDK's ENA PMD, key as configured through ethdev
  kEnaLinux,  // ENA under the Linux driver: byte-reversed key, initial value 0xffffffff
};

class Toeplitz {
 public:
  // `key` is the RSS key as programmed into the port (40 bytes typical).
  Toeplitz(std::span<const uint8_t> key, ToeplitzVariant variant = ToeplitzVariant::kStandard);

  // Hash of raw input bytes (for the test vectors).
  uint32_t hash(std::span<const uint8_t> input) const;
  // Hash of an IPv4 TCP/UDP 4-tuple as the NIC sees it on receive:
  // input = src ip, dst ip, src port, dst port (all network order).
  uint32_t hashV4(uint32_t srcIp, uint32_t dstIp, uint16_t srcPort, uint16_t dstPort) const;

 private:
  ToeplitzVariant variant_;
  // Per input-byte-position lookup tables (12 positions for an IPv4 4-tuple,
  // more for raw inputs up to key length - 4 bytes).
  std::vector<std::array<uint32_t, 256>> tables_;
};

// Maps a hash to an RX queue through the redirection table (RETA), as the
// NIC does: reta[hash % reta.size()].
inline uint16_t rssQueue(uint32_t hash, std::span<const uint16_t> reta) {
  return reta.empty() ? 0 : reta[hash % reta.size()];
}

}  // namespace strait::dataplane
