// The instance health endpoint: a tiny stateless HTTP responder in the
// dataplane, on a configured interface address and TCP port, for the health
// checks of the front (an NLB target group, a Global Accelerator endpoint
// group). It needs no kernel stack (so it works in vfio-pci mode) and keeps
// no per-connection state:
//
//   SYN                    -> SYN-ACK, ISN = keyed hash of the 4-tuple
//   ACK + data (request),  -> one segment: the whole HTTP response + FIN
//     ack = ISN + 1
//   FIN                    -> ACK
//   pure ACK, RST          -> consumed, no answer
//   anything else          -> RST
//
// The answer is 200 while the instance is ready (every service has a
// backend up), 503 while it is degraded or draining; the status comes with
// the snapshot. Per packet: no allocation, the reply is written in place
// into the received mbuf (as the ICMP echo reply is).
#pragma once

#include <rte_mbuf.h>

#include <cstdint>

#include "strait/packet_meta.h"
#include "strait/snapshot.h"

namespace strait::dataplane {

enum class HealthReply : uint8_t {
  kSent,      // the frame now holds the reply: transmit it on the port it came in
  kConsumed,  // nothing to answer (pure ACK, RST): drop it, counted
};

// `mb` (one segment) holds a TCP segment to the endpoint, parsed into `m`.
HealthReply healthEndpointReply(rte_mbuf* mb, const PacketMeta& m, const InstanceHealthView& h);

// The SYN-ACK's sequence number for this 4-tuple (network-order fields).
uint32_t healthIsn(const InstanceHealthView& h, uint32_t srcIp, uint32_t dstIp, uint16_t srcPort, uint16_t dstPort);

}  // namespace strait::dataplane
