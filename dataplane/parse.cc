// Packet parser: turns a raw Ethernet frame into PacketMeta once, so that
// classification, NAT and L2 output never look at header bytes again except
// to rewrite them. Every header is checked to be fully inside [data, end)
// (or inside the IPv4 total length for L4) before any of its fields is
// read; the parser never writes to the frame.
#include "dataplane/parse.h"

#include <netinet/in.h>
#include <rte_arp.h>
#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include <cstddef>

namespace strait::dataplane {

// The parser relies on the wire layout of these DPDK structs.
static_assert(sizeof(rte_ether_hdr) == 14);
static_assert(sizeof(rte_vlan_hdr) == 4);
static_assert(sizeof(rte_arp_hdr) == 28);
static_assert(sizeof(rte_ipv4_hdr) == 20);
static_assert(sizeof(rte_tcp_hdr) == 20);
static_assert(sizeof(rte_udp_hdr) == 8);
static_assert(sizeof(rte_icmp_hdr) == 8);

namespace {

constexpr uint16_t kFragMask = RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK;

// Bytes available from `p` to `end`; 0 when `p` is already past it.
inline std::size_t avail(const uint8_t* p, const uint8_t* end) {
  return p < end ? static_cast<std::size_t>(end - p) : 0;
}

inline bool isIcmpErrorType(uint8_t t) {
  // Destination unreachable, source quench, redirect, time exceeded,
  // parameter problem: the types that quote the offending datagram.
  return t == 3 || t == 4 || t == 5 || t == 11 || t == 12;
}

// The IPv4 header + first L4 bytes quoted by an ICMP error, [p, end) being
// what is left of the ICMP message. Fills the inner fields only when the
// quote is a TCP or UDP packet that can be matched against a flow; anything
// else leaves icmpError false (still a valid ICMP message, just not one the
// NAT can translate).
inline void parseIcmpQuote(const uint8_t* frame, const uint8_t* p, const uint8_t* end, PacketMeta& m) {
  const std::size_t left = avail(p, end);
  if (left < sizeof(rte_ipv4_hdr)) return;
  const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(p);
  if ((ip->version_ihl >> 4) != 4) return;
  const std::size_t ihl = static_cast<std::size_t>(ip->version_ihl & RTE_IPV4_HDR_IHL_MASK) * 4;
  if (ihl < sizeof(rte_ipv4_hdr) || ihl > left) return;
  const uint8_t proto = ip->next_proto_id;
  if (proto != IPPROTO_TCP && proto != IPPROTO_UDP) return;
  // A non-first fragment carries payload where the ports would be.
  if ((rte_be_to_cpu_16(ip->fragment_offset) & RTE_IPV4_HDR_OFFSET_MASK) != 0) return;
  const std::size_t l4Left = left - ihl;
  if (l4Left < 8) return;
  const uint8_t* l4 = p + ihl;
  // TCP and UDP both start with source and destination port.
  const auto* ports = reinterpret_cast<const rte_udp_hdr*>(l4);

  m.icmpError = true;
  m.innerL3Off = static_cast<uint16_t>(p - frame);
  m.innerL4Off = static_cast<uint16_t>(l4 - frame);
  m.innerL4Avail = static_cast<uint16_t>(l4Left);
  m.innerProto = proto;
  m.innerSrcIp = ip->src_addr;
  m.innerDstIp = ip->dst_addr;
  m.innerSrcPort = ports->src_port;
  m.innerDstPort = ports->dst_port;
}

inline DropReason parseIpv4(const uint8_t* frame, const uint8_t* l3, const uint8_t* end, PacketMeta& m) {
  const std::size_t present = avail(l3, end);
  if (present < sizeof(rte_ipv4_hdr)) return DropReason::kMalformed;
  const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(l3);
  if ((ip->version_ihl >> 4) != 4) return DropReason::kMalformed;
  const uint16_t ihl = static_cast<uint16_t>((ip->version_ihl & RTE_IPV4_HDR_IHL_MASK) * 4);
  if (ihl < sizeof(rte_ipv4_hdr) || ihl > present) return DropReason::kMalformed;
  const uint16_t total = rte_be_to_cpu_16(ip->total_length);
  // Bytes beyond the total length are Ethernet padding (short frames are
  // padded to 60 bytes) and are ignored; fewer bytes than it is truncation.
  if (total < ihl || total > present) return DropReason::kMalformed;

  m.l3 = L3Kind::kIpv4;
  m.ipHdrLen = ihl;
  m.ipTotalLen = total;
  m.l4Proto = ip->next_proto_id;
  m.ttl = ip->time_to_live;
  m.srcIp = ip->src_addr;
  m.dstIp = ip->dst_addr;
  m.l4Off = static_cast<uint16_t>(m.l3Off + ihl);
  m.l4Len = static_cast<uint16_t>(total - ihl);

  if (rte_be_to_cpu_16(ip->fragment_offset) & kFragMask) return DropReason::kIpFragment;

  const uint8_t* l4 = l3 + ihl;
  // L4 ends at the IPv4 total length, not at the end of the frame.
  const uint8_t* l4End = l3 + total;
  const std::size_t l4Len = m.l4Len;

  switch (m.l4Proto) {
    case IPPROTO_TCP: {
      if (l4Len < sizeof(rte_tcp_hdr)) return DropReason::kMalformed;
      const auto* tcp = reinterpret_cast<const rte_tcp_hdr*>(l4);
      const uint16_t doff = static_cast<uint16_t>((tcp->data_off >> 4) * 4);
      if (doff < sizeof(rte_tcp_hdr) || doff > l4Len) return DropReason::kMalformed;
      m.srcPort = tcp->src_port;
      m.dstPort = tcp->dst_port;
      m.tcpFlags = tcp->tcp_flags;
      m.tcpHdrLen = doff;
      return DropReason::kNone;
    }
    case IPPROTO_UDP: {
      if (l4Len < sizeof(rte_udp_hdr)) return DropReason::kMalformed;
      const auto* udp = reinterpret_cast<const rte_udp_hdr*>(l4);
      const uint16_t ulen = rte_be_to_cpu_16(udp->dgram_len);
      if (ulen < sizeof(rte_udp_hdr) || ulen > l4Len) return DropReason::kMalformed;
      m.srcPort = udp->src_port;
      m.dstPort = udp->dst_port;
      return DropReason::kNone;
    }
    case IPPROTO_ICMP: {
      if (l4Len < sizeof(rte_icmp_hdr)) return DropReason::kMalformed;
      const auto* icmp = reinterpret_cast<const rte_icmp_hdr*>(l4);
      m.icmpType = icmp->icmp_type;
      m.icmpCode = icmp->icmp_code;
      if (m.icmpType == RTE_IP_ICMP_ECHO_REQUEST || m.icmpType == RTE_IP_ICMP_ECHO_REPLY) {
        m.srcPort = icmp->icmp_ident;
      } else if (isIcmpErrorType(m.icmpType)) {
        parseIcmpQuote(frame, l4 + sizeof(rte_icmp_hdr), l4End, m);
      }
      return DropReason::kNone;
    }
    default:
      return DropReason::kUnsupportedProtocol;
  }
}

}  // namespace

DropReason parsePacketFull(const uint8_t* data, const uint8_t* end, PacketMeta& m) {
  m = PacketMeta{};
  if (avail(data, end) < sizeof(rte_ether_hdr)) return DropReason::kMalformed;
  const auto* eth = reinterpret_cast<const rte_ether_hdr*>(data);
  uint16_t etherType = rte_be_to_cpu_16(eth->ether_type);
  const uint8_t* l3 = data + sizeof(rte_ether_hdr);

  if (etherType == RTE_ETHER_TYPE_VLAN) {
    if (avail(l3, end) < sizeof(rte_vlan_hdr)) return DropReason::kMalformed;
    const auto* vlan = reinterpret_cast<const rte_vlan_hdr*>(l3);
    m.hasVlan = true;
    m.vlanTci = rte_be_to_cpu_16(vlan->vlan_tci);
    etherType = rte_be_to_cpu_16(vlan->eth_proto);
    l3 += sizeof(rte_vlan_hdr);
  }
  m.etherType = etherType;
  m.l3Off = static_cast<uint16_t>(l3 - data);

  if (etherType == RTE_ETHER_TYPE_IPV4) return parseIpv4(data, l3, end, m);

  if (etherType == RTE_ETHER_TYPE_ARP) {
    if (avail(l3, end) < sizeof(rte_arp_hdr)) return DropReason::kMalformed;
    // rte_arp_hdr's fixed layout (6-byte MACs, 4-byte IPv4 addresses) is
    // only valid for Ethernet/IPv4 ARP; any other address sizes would make
    // the consumer read the wrong bytes.
    const auto* arp = reinterpret_cast<const rte_arp_hdr*>(l3);
    if (arp->arp_hlen != RTE_ETHER_ADDR_LEN || arp->arp_plen != 4 ||
        arp->arp_protocol != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4))
      return DropReason::kMalformed;
    m.l3 = L3Kind::kArp;
    return DropReason::kNone;
  }

  // Anything else (IPv6, LLDP, a second VLAN tag...): the caller decides.
  m.l3 = L3Kind::kOther;
  return DropReason::kNone;
}

}  // namespace strait::dataplane
