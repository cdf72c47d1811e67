// Packet parser: Ethernet, one 802.1Q tag, ARP, IPv4 (with options), TCP,
// UDP and ICMP, including the IPv4 header and first 8 bytes of L4 quoted in
// an ICMP error. Every read is bounds-checked against `end` first; the
// parser never writes to the packet.
#pragma once

#include <cstdint>

#include "strait/drop_reason.h"
#include "strait/packet_meta.h"

namespace strait::dataplane {

// Parses the frame [data, end). Returns DropReason::kNone and fills `m` when
// the packet is well formed enough to act on (m.l3 tells ARP, IPv4 or other;
// for kOther the caller drops with kUnsupportedL2). Otherwise returns the
// drop reason: kMalformed (truncated or inconsistent headers), kIpFragment,
// kUnsupportedProtocol (IPv4 protocol not TCP/UDP/ICMP).
DropReason parsePacket(const uint8_t* data, const uint8_t* end, PacketMeta& m);

}  // namespace strait::dataplane
