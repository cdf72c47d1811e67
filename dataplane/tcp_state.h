// TCP connection tracking for the NAT: the next FlowState after a segment
// with `tcpFlags` travelling in direction `dir`. The tracker follows flags
// only (no sequence windows), like IPVS; it exists to time out each phase
// of a connection correctly, not to police it.
#pragma once

#include <cstdint>

#include "strait/flow_key.h"
#include "strait/flow_state.h"

namespace strait::dataplane {

inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpPsh = 0x08;
inline constexpr uint8_t kTcpAck = 0x10;

// Flow flag bits kept in Flow::flags by the tracker.
inline constexpr uint8_t kFlowFinOriginal = 0x01;  // client sent FIN
inline constexpr uint8_t kFlowFinReply = 0x02;     // backend sent FIN

// `flowFlags` is the flow's tracker bits, updated in place.
FlowState tcpNextState(FlowState cur, uint8_t tcpFlags, Direction dir, uint8_t& flowFlags);

}  // namespace strait::dataplane
