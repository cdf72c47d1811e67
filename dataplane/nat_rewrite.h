// Inline header rewriting for the NAT fast path: loads and stores of
// unaligned network-order fields, one's-complement checksum deltas
// (RFC 1624, eqn. 3) and the address/port/TTL rewrite of an IPv4 TCP or UDP
// packet. These sit in a header, not in checksum.cc, because they run for
// every forwarded packet and must inline into the burst loop; checksum.cc
// keeps the out-of-line helpers and full computations for the rare paths.
//
// All arithmetic works on 16-bit words exactly as they are stored in memory:
// the one's-complement sum does not depend on byte order (RFC 1071, 2.B), so
// nothing is byte-swapped.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace strait::dataplane::rw {

inline uint16_t load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline uint32_t load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
// Network-order fields as host-order numbers (the TCP tracker's sequence
// numbers and windows).
inline uint16_t load16be(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t load32be(const uint8_t* p) {
  const uint32_t v = load32(p);
  return std::endian::native == std::endian::little ? __builtin_bswap32(v) : v;
}
inline void store16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, sizeof(v)); }
inline void store32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, sizeof(v)); }

// Sum contribution of a 16-bit word changing from `from` to `to`: ~m + m'.
inline uint32_t delta16(uint16_t from, uint16_t to) {
  return static_cast<uint32_t>(static_cast<uint16_t>(~from)) + to;
}
// Same for a 32-bit field (two words).
inline uint32_t delta32(uint32_t from, uint32_t to) {
  const uint32_t nf = ~from;
  return (nf & 0xffffu) + (nf >> 16) + (to & 0xffffu) + (to >> 16);
}

inline uint16_t fold(uint32_t sum) {
  sum = (sum & 0xffffu) + (sum >> 16);
  sum = (sum & 0xffffu) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

// HC' = ~(~HC + delta), where delta is a sum of delta16/delta32 terms.
// Each delta term is below 2^18, so a handful of them cannot overflow.
inline uint16_t applyDelta(uint16_t check, uint32_t delta) {
  return static_cast<uint16_t>(~fold(static_cast<uint32_t>(static_cast<uint16_t>(~check)) + delta));
}
// UDP: 0 means "no checksum" and stays 0; a result of 0 is sent as 0xffff.
inline uint16_t applyDeltaUdp(uint16_t check, uint32_t delta) {
  if (check == 0) return 0;
  const uint16_t c = applyDelta(check, delta);
  return c == 0 ? 0xffff : c;
}

// IPv4 header field offsets.
inline constexpr unsigned kIpTtl = 8;  // TTL, then protocol: one checksum word
inline constexpr unsigned kIpCheck = 10;
inline constexpr unsigned kIpSrc = 12;
inline constexpr unsigned kIpDst = 16;
// L4 field offsets.
inline constexpr unsigned kL4SrcPort = 0;
inline constexpr unsigned kL4DstPort = 2;
inline constexpr unsigned kUdpCheck = 6;
inline constexpr unsigned kTcpCheck = 16;
inline constexpr unsigned kIcmpCheck = 2;

// Swaps the Ethernet destination and source addresses of `frame`: a reply
// the dataplane writes in place (an ICMP echo reply, a health-endpoint
// answer, a SYN cookie SYN-ACK) leaves by the port the request came in.
inline void swapEtherAddrs(uint8_t* frame) {
  constexpr std::size_t kAddrLen = 6;
  uint8_t mac[kAddrLen];
  std::memcpy(mac, frame, kAddrLen);
  std::memcpy(frame, frame + kAddrLen, kAddrLen);
  std::memcpy(frame + kAddrLen, mac, kAddrLen);
}

// Decrements the TTL (the caller has checked it is > 1) and returns the
// checksum delta. TTL and protocol share one 16-bit word; the new word is
// computed in a register and stored whole, because a byte store followed by
// a word load of the same bytes stalls store-to-load forwarding.
inline uint32_t decrementTtl(uint8_t* l3) {
  constexpr uint16_t kTtlOne = std::endian::native == std::endian::little ? 0x0001 : 0x0100;
  const uint16_t before = load16(l3 + kIpTtl);
  const uint16_t after = static_cast<uint16_t>(before - kTtlOne);
  store16(l3 + kIpTtl, after);
  return delta16(before, after);
}

// One's-complement sum of 32-bit words (each below 2^32, fewer than 2^31
// of them) folded to 16 bits. The one's-complement sum does not depend on
// how the 16-bit words are grouped (RFC 1071, 2.A), and 2^16 - 1 divides
// 2^32 - 1, so a sum over 32-bit words folds to the sum over their 16-bit
// halves: fewer additions than delta32's four per field.
inline uint16_t fold64(uint64_t sum) {
  const uint32_t lo = static_cast<uint32_t>(sum);
  uint32_t s = lo + static_cast<uint32_t>(sum >> 32);
  s += s < lo;  // end-around carry
  return fold(s);
}

// Writes new addresses and ports into an IPv4 TCP/UDP packet, decrements
// the TTL (the caller has checked it is > 1) and fixes the IPv4 and L4
// checksums incrementally. `l3`/`l4` point at the IPv4 and L4 headers; all
// values are in network order. The same result as checksumming after
// delta32/delta16 per field (RFC 1624, eqn. 3), with the addresses and the
// two ports taken as 32-bit words.
inline void rewriteV4(uint8_t* l3, uint8_t* l4, bool tcp, uint32_t newSrc, uint32_t newDst, uint16_t newSport,
                      uint16_t newDport) {
  const uint64_t addrDelta = uint64_t{~load32(l3 + kIpSrc)} + uint64_t{~load32(l3 + kIpDst)} + newSrc + newDst;
  store32(l3 + kIpSrc, newSrc);
  store32(l3 + kIpDst, newDst);

  // The TTL as in decrementTtl, but its delta is a constant: with the TTL
  // above 1 the word's decrement never borrows into the protocol byte, so
  // ~before + (before - one) is always 0xffff - one.
  constexpr uint16_t kTtlOne = std::endian::native == std::endian::little ? 0x0001 : 0x0100;
  constexpr uint32_t ttlDelta = 0xffffu - kTtlOne;
  store16(l3 + kIpTtl, static_cast<uint16_t>(load16(l3 + kIpTtl) - kTtlOne));
  store16(l3 + kIpCheck, static_cast<uint16_t>(~fold64(uint64_t{static_cast<uint16_t>(~load16(l3 + kIpCheck))} +
                                                       addrDelta + ttlDelta)));

  // Source and destination port are adjacent: one 32-bit word.
  const uint16_t ports[2] = {newSport, newDport};
  uint32_t newPorts;
  std::memcpy(&newPorts, ports, sizeof newPorts);
  const uint64_t l4Delta = addrDelta + uint64_t{~load32(l4 + kL4SrcPort)} + newPorts;
  store32(l4 + kL4SrcPort, newPorts);
  const unsigned checkOff = tcp ? kTcpCheck : kUdpCheck;
  const uint16_t check = load16(l4 + checkOff);
  uint16_t c = static_cast<uint16_t>(~fold64(uint64_t{static_cast<uint16_t>(~check)} + l4Delta));
  // UDP: 0 means "no checksum" and stays 0; a result of 0 is sent as 0xffff.
  if (!tcp) c = check == 0 ? 0 : (c == 0 ? 0xffff : c);
  store16(l4 + checkOff, c);
}

}  // namespace strait::dataplane::rw
