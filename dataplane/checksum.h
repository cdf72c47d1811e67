// Internet checksum helpers: incremental update after rewriting addresses
// and ports (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')), and full
// computations for the IPv4 header and for TCP/UDP over the pseudo-header,
// used for ICMP messages we build and by the tests as an independent check.
// Checksums are handled as stored in the packet (network byte order).
//
// Byte order: every value goes in and comes out exactly as it sits in the
// packet (loaded with a plain 16/32-bit load, stored back the same way), so
// nothing is ever swapped. This is correct because the one's-complement sum
// is byte-order independent (RFC 1071 section 2(B)): summing byte-swapped
// 16-bit words gives the byte-swapped sum, as long as the checksum field
// and the words summed are all taken the same way.
//
// The incremental updates are inline: the NAT applies several per packet
// (addresses and ports, IPv4 and L4, outer and inner headers of ICMP errors)
// and a cross-object call each time would cost more than the arithmetic.
#pragma once

#include <cstddef>
#include <cstdint>

namespace strait::dataplane {

// One's-complement sum of `len` bytes (not folded, not inverted).
// The result is kept <= 0xffff (partially folded), so callers may add
// further 16-bit words to it before checksumFold without overflow.
uint32_t checksumPartial(const void* data, std::size_t len, uint32_t sum = 0);

// Folds a 32-bit one's-complement sum to 16 bits and inverts it.
inline uint16_t checksumFold(uint32_t sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// Incremental updates of a checksum field `check` (network order, as stored)
// when a 32-bit or 16-bit field changes from `from` to `to` (both network
// order, as stored).
inline uint16_t checksumUpdate32(uint16_t check, uint32_t from, uint32_t to) {
  // ~HC + ~m + m' over the two 16-bit halves of the field.
  uint32_t sum = static_cast<uint16_t>(~check);
  sum += (~from & 0xffff) + (~from >> 16);
  sum += (to & 0xffff) + (to >> 16);
  return checksumFold(sum);
}

inline uint16_t checksumUpdate16(uint16_t check, uint16_t from, uint16_t to) {
  uint32_t sum = static_cast<uint16_t>(~check);
  sum += static_cast<uint16_t>(~from);
  sum += to;
  return checksumFold(sum);
}

// UDP: a checksum of 0 means "none" and must stay 0; a computed 0 is sent
// as 0xffff (RFC 768).
inline uint16_t udpChecksumUpdate32(uint16_t check, uint32_t from, uint32_t to) {
  if (check == 0) return 0;
  const uint16_t r = checksumUpdate32(check, from, to);
  return r == 0 ? 0xffff : r;
}

inline uint16_t udpChecksumUpdate16(uint16_t check, uint16_t from, uint16_t to) {
  if (check == 0) return 0;
  const uint16_t r = checksumUpdate16(check, from, to);
  return r == 0 ? 0xffff : r;
}

// Full IPv4 header checksum of `hdr` (ihl*4 bytes, checksum field treated as 0).
uint16_t ipv4HeaderChecksum(const void* hdr, std::size_t len);
// Full TCP or UDP checksum over the pseudo-header (src, dst, proto, l4len)
// and `l4len` bytes at `l4` (checksum field treated as 0). For UDP the
// caller maps a 0 result to 0xffff.
uint16_t l4Checksum(uint32_t srcIp, uint32_t dstIp, uint8_t proto, const void* l4, std::size_t l4len);
// Whether a received TCP or UDP segment's checksum is right: the sum over
// the pseudo-header and every byte, checksum field included, must be all
// ones (RFC 1071). Comparing the field with l4Checksum instead would refuse
// 0xffff where the sum gives 0x0000: both are zero in one's complement, and
// Linux writes 0xffff there whenever it sums in software (skb_checksum_help).
bool l4ChecksumValid(uint32_t srcIp, uint32_t dstIp, uint8_t proto, const void* l4, std::size_t l4len);

}  // namespace strait::dataplane
