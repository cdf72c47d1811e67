// PROXY protocol v2 (HAProxy's proxy-protocol.txt, section 2.2) on TCP
// services that ask for it: every backend connection starts with a 28-byte
// header naming the client's address and port and the VIP's, so that the
// backend (nginx, Caddy, HAProxy, Envoy) sees the real client behind the
// full NAT.
//
// The header takes backend-side sequence space [I+1, I+1+L) where I is the
// client's ISN and L = kProxyV2Len; a client byte at sequence s reaches the
// backend at s+L, and the backend's acknowledgements (and SACK blocks) come
// back less L, never below I+1 (see translateSegment in synproxy.h, which
// does this together with the SYN proxy's translation).
//
// When the header goes out: with every client segment whose sequence
// number is I+1 (before translation) while the backend has not yet
// acknowledged I+1+L. The first such segment is normally the pure ACK that
// completes the handshake, which so becomes a data segment carrying the
// header: server-speaks-first protocols work because the backend gets the
// header without waiting for client bytes. A lost header segment, the
// client's ACK sent again (after a retransmitted SYN-ACK) and
// retransmitted first data all carry it again; the backend's TCP takes a
// repeat of bytes it already has as a retransmission. With the SYN proxy
// in cookie mode the dataplane writes the backend's handshake ACK itself
// and puts the header there.
//
// The client must leave room for the header in its first segment: the MSS
// the client is told (the backend's SYN-ACK, or our cookie SYN-ACK) is
// lowered by L.
#pragma once

#include <cstdint>

#include "dataplane/flow_table.h"

struct rte_mbuf;

namespace strait::dataplane {

// Length of a PROXY v2 header for TCP over IPv4: 16 fixed bytes and 12 of
// addresses. Even, so inserting it keeps the payload's checksum words
// aligned.
inline constexpr uint16_t kProxyV2Len = 28;

// Flow::ppFlags bits.
inline constexpr uint8_t kPpOn = 0x01;     // the service sends a PROXY header on this flow
inline constexpr uint8_t kPpAcked = 0x02;  // the backend acknowledged the whole header

// Writes the header (PROXY command, AF_INET, STREAM) into out[0..28).
// Addresses and ports in network order, as in Flow.
void writeProxyV2(uint8_t* out, uint32_t srcIp, uint32_t dstIp, uint16_t srcPort, uint16_t dstPort);

// The header of flow `f`: client address and port, VIP address and port.
inline void writeProxyV2(uint8_t* out, const Flow& f) {
  writeProxyV2(out, f.clientIp, f.vip, f.clientPort, f.vipPort);
}

// Inserts the header of `f` between the TCP header and the payload of the
// single-segment frame in `mb` (l4Off, the TCP header length and the
// frame's addresses already rewritten toward the backend), using headroom
// (the headers move down) or else tailroom (the payload moves up). Fixes
// the IPv4 total length and both checksums incrementally. Returns false,
// leaving the frame untouched, when the mbuf has neither.
bool insertProxyV2(rte_mbuf* mb, uint16_t l3Off, uint16_t l4Off, uint16_t tcpHdrLen, const Flow& f);

}  // namespace strait::dataplane
