// Packet parser: Ethernet, one 802.1Q tag, ARP, IPv4 (with options), TCP,
// UDP and ICMP, including the IPv4 header and first 8 bytes of L4 quoted in
// an ICMP error. Every read is bounds-checked against `end` first; the
// parser never writes to the packet.
//
// The frames a load balancer sees almost all have the same shape: no VLAN
// tag, IPv4 without options, TCP or UDP, not a fragment. parsePacket tries
// that shape first, inline in the caller's loop, and hands anything else
// (or anything that fails one of its checks) to the general parser, which
// decides it exactly as if the fast step had not been tried: both write
// the same PacketMeta for every frame the fast step accepts (a unit test
// compares them on random and mutated frames).
#pragma once

#include <cstdint>
#include <cstring>

#include "strait/drop_reason.h"
#include "strait/packet_meta.h"

namespace strait::dataplane {

// The general parser: every case parsePacket describes.
DropReason parsePacketFull(const uint8_t* data, const uint8_t* end, PacketMeta& m);

// The common shape only: an untagged Ethernet frame with an IPv4 header of
// 20 bytes (version 4, IHL 5), not a fragment, carrying TCP or UDP whose
// header fits inside the IPv4 total length, which fits inside the frame.
// Fills `m` and returns true for such a frame; returns false, with `m` in
// any state, for everything else.
inline bool parseCommonV4(const uint8_t* data, const uint8_t* end, PacketMeta& m) {
  constexpr std::size_t kEth = 14, kIp = 20;
  if (data == nullptr || end < data || static_cast<std::size_t>(end - data) < kEth + kIp + 8) return false;
  // EtherType 0x0800 and version/IHL 0x45, as bytes (no byte order).
  if (data[12] != 0x08 || data[13] != 0x00 || data[14] != 0x45) return false;
  const uint8_t* ip = data + kEth;
  const uint16_t total = static_cast<uint16_t>(ip[2] << 8 | ip[3]);
  // More fragments or a fragment offset: the general parser counts it.
  if (((ip[6] & 0x3f) | ip[7]) != 0) return false;
  if (total < kIp || total > static_cast<std::size_t>(end - ip)) return false;
  const uint8_t proto = ip[9];
  const uint16_t l4Len = static_cast<uint16_t>(total - kIp);
  const uint8_t* l4 = ip + kIp;
  uint16_t ports[2];
  uint16_t tcpHdrLen = 0;
  uint8_t tcpFlags = 0;
  if (proto == 6) {  // TCP
    if (l4Len < 20) return false;
    tcpHdrLen = static_cast<uint16_t>((l4[12] >> 4) * 4);
    if (tcpHdrLen < 20 || tcpHdrLen > l4Len) return false;
    tcpFlags = l4[13];
  } else if (proto == 17) {  // UDP
    const uint16_t ulen = static_cast<uint16_t>(l4[4] << 8 | l4[5]);
    if (l4Len < 8 || ulen < 8 || ulen > l4Len) return false;
  } else {
    return false;
  }
  std::memcpy(ports, l4, sizeof ports);
  uint32_t addrs[2];
  std::memcpy(addrs, ip + 12, sizeof addrs);
  m = PacketMeta{};
  m.l3 = L3Kind::kIpv4;
  m.etherType = 0x0800;
  m.l3Off = kEth;
  m.l4Off = kEth + kIp;
  m.ipHdrLen = kIp;
  m.ipTotalLen = total;
  m.l4Proto = proto;
  m.ttl = ip[8];
  m.srcIp = addrs[0];
  m.dstIp = addrs[1];
  m.srcPort = ports[0];
  m.dstPort = ports[1];
  m.tcpFlags = tcpFlags;
  m.tcpHdrLen = tcpHdrLen;
  m.l4Len = l4Len;
  return true;
}

// Parses the frame [data, end). Returns DropReason::kNone and fills `m` when
// the packet is well formed enough to act on (m.l3 tells ARP, IPv4 or other;
// for kOther the caller drops with kUnsupportedL2). Otherwise returns the
// drop reason: kMalformed (truncated or inconsistent headers), kIpFragment,
// kUnsupportedProtocol (IPv4 protocol not TCP/UDP/ICMP).
inline DropReason parsePacket(const uint8_t* data, const uint8_t* end, PacketMeta& m) {
  if (parseCommonV4(data, end, m)) return DropReason::kNone;
  return parsePacketFull(data, end, m);
}

}  // namespace strait::dataplane
