// ICMP handling of the NAT core: echo replies to our own addresses, built
// in place, and translation of ICMP errors that quote one of our rewritten
// packets, so that PMTU discovery and unreachable reports reach the real
// peer of a flow with its own view of the addresses (outer header, quoted
// header and quoted ports all rewritten, every checksum fixed).
#pragma once

#include <cstdint>

#include "dataplane/flow_table.h"
#include "strait/flow_key.h"
#include "strait/packet_meta.h"

namespace strait::dataplane {

// Turns the ICMP echo request `frame` (parsed into `m`) into its reply in
// place: Ethernet addresses swapped, IPv4 addresses swapped, TTL 64, type 0,
// checksums fixed incrementally.
void icmpEchoReply(uint8_t* frame, const PacketMeta& m);

// Key under which the flow of the packet quoted in an ICMP error is found.
// The quoted packet is one we sent (snat->backend or vip->client), so its
// reversed tuple is the flow's reply or original key respectively.
inline FlowKey icmpQuotedKey(const PacketMeta& m) {
  FlowKey k;
  k.srcIp = m.innerDstIp;
  k.dstIp = m.innerSrcIp;
  k.srcPort = m.innerDstPort;
  k.dstPort = m.innerSrcPort;
  k.proto = m.innerProto;
  return k;
}

// Translates the ICMP error `frame` (parsed into `m`) that quotes a packet
// of flow `f`. `dir` is the direction of the key that matched:
// kReply: the error came from the backend side about snat->backend; it is
// turned into an error to the client about client->vip.
// kOriginal: the error came from the client side about vip->client; it is
// turned into an error to the backend about backend->snat.
// The caller has checked the outer TTL is > 1; it is decremented.
void icmpTranslateError(uint8_t* frame, const PacketMeta& m, const Flow& f, Direction dir);

}  // namespace strait::dataplane
