// TCP connection tracking for the NAT, from flags alone (no sequence
// windows, like IPVS). Its only job is to put each flow in the state whose
// idle timeout fits the phase of the connection, so half-open and closing
// flows give their SNAT port back quickly and established ones live as long
// as the NLB downstream keeps them. It never drops anything.
//
// Choices worth knowing:
// - RST from either side closes the flow in every state (short timeout).
// - A SYN without ACK from the client after TIME_WAIT or CLOSED is a new
//   connection on the same tuple: back to SYN_SENT with the FIN bits cleared.
// - In LAST_ACK (both FINs seen) any pure ACK, from either side, moves to
//   TIME_WAIT. The final ACK normally comes from the side that closed first,
//   but in a simultaneous close both sides send one, and the flags-only
//   tracker cannot tell which FIN an ACK acknowledges. Erring this way only
//   moves the flow to the longer TIME_WAIT timeout, which keeps the SNAT
//   port reserved longer, never shorter than the closing peers need.
// - An ACK from the client that completes the handshake may carry a FIN:
//   both steps are applied (SYN_RECV -> ESTABLISHED -> FIN_WAIT).
#include "dataplane/tcp_state.h"

namespace strait::dataplane {

namespace {

constexpr uint8_t finBit(Direction dir) {
  return dir == Direction::kOriginal ? kFlowFinOriginal : kFlowFinReply;
}

constexpr Direction opposite(Direction dir) {
  return dir == Direction::kOriginal ? Direction::kReply : Direction::kOriginal;
}

// The first FIN of an open connection: the bits then name exactly the side
// that closed first, whatever they held before.
FlowState startClose(Direction dir, uint8_t& flowFlags) {
  flowFlags = finBit(dir);
  return FlowState::kFinWait;
}

// A FIN in FIN_WAIT: from the side that has not closed yet it ends both
// halves (LAST_ACK); a retransmitted FIN from the closer changes nothing.
FlowState finInFinWait(Direction dir, uint8_t& flowFlags) {
  if (flowFlags & finBit(dir)) return FlowState::kFinWait;
  flowFlags |= finBit(dir);
  return (flowFlags & finBit(opposite(dir))) ? FlowState::kLastAck : FlowState::kFinWait;
}

}  // namespace

FlowState tcpNextState(FlowState cur, uint8_t tcpFlags, Direction dir, uint8_t& flowFlags) {
  if (cur == FlowState::kUdp || cur >= FlowState::kCount) return cur;
  if (tcpFlags & kTcpRst) return FlowState::kClosed;

  const bool syn = tcpFlags & kTcpSyn;
  const bool ack = tcpFlags & kTcpAck;
  const bool fin = tcpFlags & kTcpFin;
  const bool fromClient = dir == Direction::kOriginal;

  switch (cur) {
    case FlowState::kSynSent:
      // Retransmitted SYNs, stray ACKs and anything else keep waiting for
      // the backend's SYN-ACK.
      if (syn && ack && !fromClient) return FlowState::kSynRecv;
      return cur;

    case FlowState::kSynRecv:
      if (fromClient && ack && !syn) return fin ? startClose(dir, flowFlags) : FlowState::kEstablished;
      return cur;

    case FlowState::kEstablished:
      return fin ? startClose(dir, flowFlags) : cur;

    case FlowState::kFinWait:
      if (fin) return finInFinWait(dir, flowFlags);
      // The side that has not closed yet acknowledges: it is now half
      // closed, waiting for its own FIN.
      if (ack && !syn && !(flowFlags & finBit(dir)) && (flowFlags & finBit(opposite(dir))))
        return FlowState::kCloseWait;
      return cur;

    case FlowState::kCloseWait:
      // The first FIN was seen and acknowledged: the other side's FIN ends
      // both halves, even if the tracker bits were lost along the way.
      if (fin && !(flowFlags & finBit(dir))) {
        flowFlags |= finBit(dir);
        return FlowState::kLastAck;
      }
      return cur;

    case FlowState::kLastAck:
      if (ack && !syn && !fin) return FlowState::kTimeWait;
      return cur;

    case FlowState::kTimeWait:
    case FlowState::kClosed:
      if (syn && !ack && fromClient) {
        flowFlags = 0;
        return FlowState::kSynSent;
      }
      return cur;

    case FlowState::kUdp:
    case FlowState::kCount:
      break;
  }
  return cur;
}

}  // namespace strait::dataplane
