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
//
// Sequence checks (tcpTrack). A blind attacker who knows or sweeps a
// flow's addresses and ports could otherwise end it with one RST of any
// sequence number (and free its SNAT port while the peer still holds the
// tuple). Like Linux conntrack (tcp_in_window) the tracker keeps, per
// direction, `end`: the highest sequence number sent plus the segment's
// length, and the largest window advertised, scaled. The rules:
// - A RST from side d is accepted when its sequence number is within W of
//   end[d], W being the receiver's largest window (RFC 5961 asks a host
//   for exactly RCV.NXT; a middlebox sees RCV.NXT only up to the data in
//   flight, which W bounds). A blind attacker then needs about
//   2^32 / 2W tries per flow (W = 8 MiB, Linux's usual 64 KiB << 7: 256
//   tries; W = 64 KiB: 32,768) instead of one. Outside: dropped
//   (`rst_out_of_window`), nothing changes, the flow lives on.
// - Before the backend has answered (SYN_SENT), the backend side has no
//   window: its RST is accepted only with an ACK of exactly the client's
//   SYN (RFC 793's rule for SYN-SENT), and the client's only at exactly
//   its own end, or at the acknowledgement number of a plain ACK the
//   backend sent instead of a SYN-ACK (it still holds an older connection
//   on the tuple, e.g. of a flow early drop recycled; the client's RST,
//   RFC 793's <SEQ=SEG.ACK><CTL=RST>, clears it).
// - A SYN-ACK from the backend moves SYN_SENT on only when it acknowledges
//   the client's SYN exactly; otherwise it is passed on and changes nothing.
// - A client SYN on a synchronized flow (SYN_RECV through LAST_ACK) is
//   what conntrack calls "ignored": our entry may be out of sync with the
//   ends (the client lost its state and opens anew on the same port), so
//   the SYN is let through, but the flow keeps its state, windows and
//   timeout, and the SYN's end is remembered (kFlowSynInSync, synEnd). If
//   the backend answers it with a SYN-ACK acknowledging exactly that SYN,
//   both ends have agreed on a new connection: tracking restarts from the
//   remembered SYN and this SYN-ACK, in SYN_RECV. If the backend instead
//   still has the old connection it answers with a challenge ACK; the
//   client, which has lost it, answers that with a RST whose sequence
//   number is the ACK's, in window, which closes the flow normally; a RST
//   from the backend that acknowledges exactly the remembered SYN is
//   accepted too (conntrack's "RST sent to invalid SYN we had let
//   through"). A spoofed SYN therefore changes nothing unless the backend
//   itself confirms it. (Older kernels killed the entry and dropped the
//   SYN-ACK instead, making the client retransmit; we keep the flow and
//   its SNAT port, which the backend is using.)
// - Segments are learned from (end and window move) only when they lie
//   within the receiver's window of what was seen, so a spoofed segment
//   far ahead cannot drag the window to where the attacker wants it;
//   everything else is still passed on (we police RSTs and SYNs only).
#include "dataplane/tcp_state.h"

#include <algorithm>

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

constexpr std::size_t idx(Direction d) { return static_cast<std::size_t>(d); }

uint32_t segmentEnd(const TcpSegment& seg) {
  return seg.seq + seg.payload + ((seg.flags & kTcpSyn) ? 1u : 0u) + ((seg.flags & kTcpFin) ? 1u : 0u);
}

// A window field of a SYN (never scaled) in units of `scale`, rounded up.
uint16_t synWindowUnits(uint16_t window, uint8_t scale) {
  if (scale == kNoWscale || scale == 0) return window;
  return static_cast<uint16_t>((uint32_t{window} + (1u << scale) - 1) >> scale);
}

// |a - b| <= w on the wrapping sequence space.
bool within(uint32_t a, uint32_t b, uint32_t w) {
  const int64_t d = static_cast<int32_t>(a - b);
  return d <= static_cast<int64_t>(w) && d >= -static_cast<int64_t>(w);
}

bool synchronized(FlowState s) {
  return s == FlowState::kSynRecv || s == FlowState::kEstablished || s == FlowState::kFinWait ||
         s == FlowState::kCloseWait || s == FlowState::kLastAck;
}

// The backend's SYN-ACK starts its side; window scaling is on only when
// both SYNs offered it (RFC 7323), and the windows learned so far are
// converted to scaled units.
void startReply(TcpSeqTrack& t, uint8_t& flowFlags, const TcpSegment& synAck) {
  const auto o = idx(Direction::kOriginal);
  const auto r = idx(Direction::kReply);
  const bool scaling = t.wscale[o] != kNoWscale && synAck.wscale != kNoWscale;
  const uint8_t so = scaling ? std::min(t.wscale[o], kMaxWscale) : 0;
  const uint8_t sr = scaling ? std::min(synAck.wscale, kMaxWscale) : 0;
  t.maxWindow[o] = synWindowUnits(t.maxWindow[o], so);
  t.wscale[o] = so;
  t.wscale[r] = sr;
  t.maxWindow[r] = synWindowUnits(synAck.window, sr);
  t.end[r] = segmentEnd(synAck);
  flowFlags |= kFlowReplySeen;
}

// Learns from a segment (not a RST) of side `s` if it is in window.
void learn(TcpSeqTrack& t, uint8_t flowFlags, const TcpSegment& seg, Direction s) {
  const uint32_t w = std::max(tcpReceiveWindow(t, flowFlags, s == Direction::kOriginal ? Direction::kReply
                                                                                        : Direction::kOriginal),
                              kMinLearnWindow);
  const uint32_t e = segmentEnd(seg);
  if (!within(e, t.end[idx(s)], w)) return;
  if (static_cast<int32_t>(e - t.end[idx(s)]) > 0) t.end[idx(s)] = e;
  if (!(seg.flags & kTcpSyn) && seg.window > t.maxWindow[idx(s)]) t.maxWindow[idx(s)] = seg.window;
}

bool rstAcceptable(const TcpSeqTrack& t, uint8_t flowFlags, const TcpSegment& seg, Direction dir) {
  const bool ack = seg.flags & kTcpAck;
  // SYN_SENT, and the backend answered the SYN with a plain ACK (it still
  // holds an older connection on this tuple): the client's RST carries
  // that ACK's acknowledgement number as its sequence number (RFC 793).
  if (dir == Direction::kOriginal && !(flowFlags & kFlowReplySeen) && (flowFlags & kFlowSynInSync) &&
      seg.seq == t.synEnd)
    return true;
  // A RST answering the SYN we let through on a synchronized flow.
  if ((flowFlags & kFlowSynInSync) && dir == Direction::kReply && ack && seg.ack == t.synEnd) return true;
  if (dir == Direction::kReply && !(flowFlags & kFlowReplySeen))
    return ack && seg.ack == t.end[idx(Direction::kOriginal)];
  const Direction receiver = dir == Direction::kOriginal ? Direction::kReply : Direction::kOriginal;
  return within(seg.seq, t.end[idx(dir)], tcpReceiveWindow(t, flowFlags, receiver));
}

}  // namespace

TcpCheck tcpTrack(FlowState& state, uint8_t& flowFlags, TcpSeqTrack& t, const TcpSegment& seg, Direction dir) {
  if (isUdp(state) || state >= FlowState::kCount) return TcpCheck::kOk;
  const bool syn = seg.flags & kTcpSyn;
  const bool ack = seg.flags & kTcpAck;
  const bool fromClient = dir == Direction::kOriginal;

  if (seg.flags & kTcpRst) {
    if (!rstAcceptable(t, flowFlags, seg, dir)) return TcpCheck::kRstOutOfWindow;
    flowFlags &= static_cast<uint8_t>(~kFlowSynInSync);
    state = tcpNextState(state, seg.flags, dir, flowFlags);
    return TcpCheck::kOk;
  }

  if (syn && !ack && fromClient) {
    if (synchronized(state)) {
      // Let through, change nothing but the note (see the file comment).
      flowFlags |= kFlowSynInSync;
      t.synEnd = segmentEnd(seg);
      return TcpCheck::kSynIgnored;
    }
    // SYN_SENT (retransmitted or a new attempt), TIME_WAIT, CLOSED: a
    // connection starts on this tuple.
    const FlowState next = tcpNextState(state, seg.flags, dir, flowFlags);
    tcpTrackStart(t, flowFlags, seg);
    state = next;
    return TcpCheck::kOk;
  }

  if (syn && ack && !fromClient) {
    if (state == FlowState::kSynSent) {
      if (seg.ack != t.end[idx(Direction::kOriginal)]) return TcpCheck::kOk;  // not for this SYN
      flowFlags &= static_cast<uint8_t>(~kFlowSynInSync);
      startReply(t, flowFlags, seg);
      state = tcpNextState(state, seg.flags, dir, flowFlags);
      return TcpCheck::kOk;
    }
    if ((flowFlags & kFlowSynInSync) && synchronized(state) && seg.ack == t.synEnd) {
      // The backend took the SYN we let through as a new connection: both
      // ends are in sync on it, restart tracking from that handshake.
      // The new SYN's own window and scale were not kept (no room): the
      // client's old window in bytes, capped at what a SYN can say, and
      // its old scale (the same host's stack) stand in for them.
      const auto o = idx(Direction::kOriginal);
      const uint32_t synEnd = t.synEnd;
      const uint8_t scale = t.wscale[o];
      const uint32_t bytes = std::min<uint32_t>(uint32_t{t.maxWindow[o]} << (scale == kNoWscale ? 0 : scale), 65535);
      t = TcpSeqTrack{};
      t.end[o] = synEnd;
      t.maxWindow[o] = static_cast<uint16_t>(bytes);
      t.wscale[o] = scale;
      flowFlags = 0;
      startReply(t, flowFlags, seg);
      state = FlowState::kSynRecv;
      return TcpCheck::kResynced;
    }
    // A retransmitted SYN-ACK, or one for a SYN we never saw: passed on.
    return TcpCheck::kOk;
  }

  if (syn) return TcpCheck::kOk;  // SYN from the backend without ACK (simultaneous open): passed on

  if (state == FlowState::kSynSent && !fromClient && ack) {
    // The backend answers our SYN with a plain ACK: it still holds an
    // older connection on this tuple (a port recycled quickly). Note the
    // acknowledgement number: the client's RST to it must pass, or the
    // backend keeps the stale connection and the client's SYNs never get
    // through.
    flowFlags |= kFlowSynInSync;
    t.synEnd = seg.ack;
  }

  learn(t, flowFlags, seg, dir);
  state = tcpNextState(state, seg.flags, dir, flowFlags);
  return TcpCheck::kOk;
}

uint8_t tcpWindowScaleOption(const uint8_t* tcp, uint16_t hdrLen) {
  constexpr uint8_t kEol = 0, kNop = 1, kWscale = 3;
  uint16_t i = 20;
  while (i < hdrLen) {
    const uint8_t kind = tcp[i];
    if (kind == kEol) break;
    if (kind == kNop) {
      ++i;
      continue;
    }
    if (i + 1 >= hdrLen) break;
    const uint8_t len = tcp[i + 1];
    if (len < 2 || i + len > hdrLen) break;
    if (kind == kWscale && len == 3) return std::min(tcp[i + 2], kMaxWscale);
    i = static_cast<uint16_t>(i + len);
  }
  return kNoWscale;
}

FlowState tcpNextState(FlowState cur, uint8_t tcpFlags, Direction dir, uint8_t& flowFlags) {
  if (isUdp(cur) || cur >= FlowState::kCount) return cur;
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
    case FlowState::kUdpUnreplied:
    case FlowState::kCount:
      break;
  }
  return cur;
}

}  // namespace strait::dataplane
