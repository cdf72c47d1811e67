// Internet checksum helpers: incremental update after rewriting addresses
// and ports (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')), and full
// computations for the IPv4 header and for TCP/UDP over the pseudo-header,
// used for ICMP messages we build and by the tests as an independent check.
// Checksums are handled as stored in the packet (network byte order).
#pragma once

#include <cstddef>
#include <cstdint>

namespace strait::dataplane {

// One's-complement sum of `len` bytes (not folded, not inverted).
uint32_t checksumPartial(const void* data, std::size_t len, uint32_t sum = 0);
// Folds a 32-bit one's-complement sum to 16 bits and inverts it.
uint16_t checksumFold(uint32_t sum);

// Incremental updates of a checksum field `check` (network order, as stored)
// when a 32-bit or 16-bit field changes from `from` to `to` (both network
// order, as stored).
uint16_t checksumUpdate32(uint16_t check, uint32_t from, uint32_t to);
uint16_t checksumUpdate16(uint16_t check, uint16_t from, uint16_t to);

// UDP: a checksum of 0 means "none" and must stay 0; a computed 0 is sent
// as 0xffff (RFC 768).
uint16_t udpChecksumUpdate32(uint16_t check, uint32_t from, uint32_t to);
uint16_t udpChecksumUpdate16(uint16_t check, uint16_t from, uint16_t to);

// Full IPv4 header checksum of `hdr` (ihl*4 bytes, checksum field treated as 0).
uint16_t ipv4HeaderChecksum(const void* hdr, std::size_t len);
// Full TCP or UDP checksum over the pseudo-header (src, dst, proto, l4len)
// and `l4len` bytes at `l4` (checksum field treated as 0). For UDP the
// caller maps a 0 result to 0xffff.
uint16_t l4Checksum(uint32_t srcIp, uint32_t dstIp, uint8_t proto, const void* l4, std::size_t l4len);

}  // namespace strait::dataplane
