// PacketMeta: what the parser learned about one packet. The parser fills it
// once; every later stage (classification, NAT, L2 output) reads it and
// never re-parses. Offsets are from the start of the frame; addresses and
// ports are in network byte order.
#pragma once

#include <cstdint>

namespace strait {

enum class L3Kind : uint8_t { kIpv4, kArp, kOther };

struct PacketMeta {
  L3Kind l3 = L3Kind::kOther;
  bool hasVlan = false;
  uint16_t vlanTci = 0;     // host order
  uint16_t etherType = 0;   // host order, after any 802.1Q tag
  uint16_t l3Off = 0;       // start of IPv4 / ARP header
  uint16_t l4Off = 0;       // start of TCP / UDP / ICMP header
  uint16_t ipHdrLen = 0;    // IHL * 4
  uint16_t ipTotalLen = 0;  // from the header (host order), <= bytes present
  uint8_t l4Proto = 0;      // IPPROTO_*
  uint8_t ttl = 0;
  uint32_t srcIp = 0;
  uint32_t dstIp = 0;
  uint16_t srcPort = 0;     // TCP/UDP; ICMP echo: identifier
  uint16_t dstPort = 0;
  uint8_t tcpFlags = 0;     // TCP flags byte (FIN=0x01 SYN=0x02 RST=0x04 ACK=0x10)
  uint8_t icmpType = 0;
  uint8_t icmpCode = 0;
  bool icmpError = false;   // ICMP error type carrying a quoted IPv4 packet
  uint16_t tcpHdrLen = 0;   // TCP data offset * 4
  uint16_t l4Len = 0;       // bytes from l4Off to the IPv4 total length end

  // Quoted packet inside an ICMP error (only when icmpError).
  uint16_t innerL3Off = 0;
  uint16_t innerL4Off = 0;
  uint16_t innerL4Avail = 0;  // bytes of the quoted L4 header present (>= 8)
  uint8_t innerProto = 0;
  uint32_t innerSrcIp = 0;
  uint32_t innerDstIp = 0;
  uint16_t innerSrcPort = 0;
  uint16_t innerDstPort = 0;
};

}  // namespace strait
