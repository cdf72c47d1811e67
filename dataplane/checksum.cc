// Full Internet checksums (RFC 1071) for the IPv4 header and for TCP/UDP
// over the pseudo-header. The per-packet NAT path uses the inline
// incremental updates in checksum.h; these full sums are for messages the
// dataplane builds itself (ICMP) and for tests as an independent check.
// Words are loaded in memory order and never swapped; see checksum.h for
// why that is correct on either byte order.
#include "dataplane/checksum.h"

#include <netinet/in.h>

#include <cstring>

namespace strait::dataplane {

namespace {

// Reduces a 64-bit accumulator of 16-bit words to an equivalent value
// <= 0xffff (2^16 = 1 modulo 0xffff, so carries fold back in).
inline uint32_t reduce(uint64_t acc) {
  acc = (acc & 0xffffffffu) + (acc >> 32);
  acc = (acc & 0xffffffffu) + (acc >> 32);
  acc = (acc & 0xffff) + (acc >> 16);
  acc = (acc & 0xffff) + (acc >> 16);
  acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint32_t>(acc);
}

// Host-order value as it would be loaded from network-order bytes in the
// packet, so it can be summed with the packet's words.
inline uint16_t asStored16(uint16_t hostValue) { return htons(hostValue); }

}  // namespace

uint32_t checksumPartial(const void* data, std::size_t len, uint32_t sum) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t acc = sum;
  // Summing 32-bit words into a 64-bit accumulator is the same one's
  // complement sum as 16-bit words (each 32-bit word is two 16-bit words,
  // the high one weighted by 2^16 = 1), with a quarter of the carries.
  while (len >= 8) {
    uint32_t a, b;
    std::memcpy(&a, p, 4);
    std::memcpy(&b, p + 4, 4);
    acc += a;
    acc += b;
    p += 8;
    len -= 8;
  }
  if (len >= 4) {
    uint32_t a;
    std::memcpy(&a, p, 4);
    acc += a;
    p += 4;
    len -= 4;
  }
  if (len >= 2) {
    uint16_t w;
    std::memcpy(&w, p, 2);
    acc += w;
    p += 2;
    len -= 2;
  }
  if (len == 1) {
    // A trailing odd byte is padded with a zero byte after it, in memory
    // order, then loaded like every other word.
    uint16_t w = 0;
    std::memcpy(&w, p, 1);
    acc += w;
  }
  return reduce(acc);
}

uint16_t ipv4HeaderChecksum(const void* hdr, std::size_t len) {
  constexpr std::size_t kCheckOff = 10;
  const auto* p = static_cast<const uint8_t*>(hdr);
  if (len < kCheckOff + 2) return checksumFold(checksumPartial(p, len));
  // Skip the checksum field; both pieces start at even offsets so the
  // word boundaries are unchanged.
  uint32_t sum = checksumPartial(p, kCheckOff);
  sum = checksumPartial(p + kCheckOff + 2, len - kCheckOff - 2, sum);
  return checksumFold(sum);
}

namespace {

// One's-complement sum of the pseudo-header: source, destination, zero,
// protocol, L4 length.
uint32_t pseudoHeaderSum(uint32_t srcIp, uint32_t dstIp, uint8_t proto, std::size_t l4len) {
  uint64_t acc = 0;
  acc += (srcIp & 0xffff) + (srcIp >> 16);
  acc += (dstIp & 0xffff) + (dstIp >> 16);
  acc += asStored16(proto);
  acc += asStored16(static_cast<uint16_t>(l4len));
  return reduce(acc);
}

}  // namespace

bool l4ChecksumValid(uint32_t srcIp, uint32_t dstIp, uint8_t proto, const void* l4, std::size_t l4len) {
  return checksumFold(checksumPartial(l4, l4len, pseudoHeaderSum(srcIp, dstIp, proto, l4len))) == 0;
}

uint16_t l4Checksum(uint32_t srcIp, uint32_t dstIp, uint8_t proto, const void* l4, std::size_t l4len) {
  uint32_t sum = pseudoHeaderSum(srcIp, dstIp, proto, l4len);

  std::size_t checkOff = 0;
  if (proto == IPPROTO_TCP) checkOff = 16;
  else if (proto == IPPROTO_UDP) checkOff = 6;
  const auto* p = static_cast<const uint8_t*>(l4);
  if (checkOff == 0 || l4len < checkOff + 2) return checksumFold(checksumPartial(p, l4len, sum));
  sum = checksumPartial(p, checkOff, sum);
  sum = checksumPartial(p + checkOff + 2, l4len - checkOff - 2, sum);
  return checksumFold(sum);
}

}  // namespace strait::dataplane
