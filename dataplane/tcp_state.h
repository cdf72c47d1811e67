// TCP connection tracking for the NAT. tcpNextState is the state machine:
// the next FlowState after a segment with `tcpFlags` travelling in
// direction `dir`, from flags alone; it exists to time out each phase of a
// connection correctly. tcpTrack adds what flags cannot tell: whether a
// RST is in the receiver's window (RFC 5961's defence against blind
// resets, after Linux conntrack's tcp_in_window), and what a SYN on an
// established flow means, so a spoofed RST or SYN cannot tear a flow
// down. It keeps per direction the end of what was sent and the largest
// window advertised (TcpSeqTrack, 20 bytes at the end of each flow).
#pragma once

#include <cstddef>
#include <cstdint>

#include "strait/flow_key.h"
#include "strait/flow_state.h"

namespace strait::dataplane {

inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpPsh = 0x08;
inline constexpr uint8_t kTcpAck = 0x10;

// Flow flag bits kept in Flow::flags by the tracker (0x40 and 0x80 belong
// to the SYN proxy).
inline constexpr uint8_t kFlowFinOriginal = 0x01;  // client sent FIN
inline constexpr uint8_t kFlowFinReply = 0x02;     // backend sent FIN
inline constexpr uint8_t kFlowReplySeen = 0x04;    // the backend's SYN-ACK started its side of TcpSeqTrack
inline constexpr uint8_t kFlowSynInSync = 0x08;    // a client SYN let through on a synchronized flow (synEnd),
                                                   // or in SYN_SENT a plain ACK from the backend (synEnd = its ack)

// `flowFlags` is the flow's tracker bits, updated in place.
FlowState tcpNextState(FlowState cur, uint8_t tcpFlags, Direction dir, uint8_t& flowFlags);

inline constexpr uint8_t kNoWscale = 0x0f;  // no window scale option (yet)
inline constexpr uint8_t kMaxWscale = 14;   // RFC 7323

// Sequence tracking of one flow, indexed by Direction. All host order.
// Trivial (no member initialisers) so that it can share storage with the
// UDP fields of a flow; TcpSeqTrack{} is all zeros.
struct TcpSeqTrack {
  uint32_t end[2];        // highest seq + length (+1 for SYN, FIN) sent in that direction
  uint32_t synEnd;        // seq + 1 of the SYN let through on a synchronized flow (kFlowSynInSync)
  uint16_t maxWindow[2];  // largest window advertised, in that direction's scaled units
  uint8_t wscale[2];      // window scale of that direction (kNoWscale: option absent, before SYN-ACK)
};
static_assert(sizeof(TcpSeqTrack) == 20);

// What tcpTrack reads from a segment. Only SYNs carry wscale.
struct TcpSegment {
  uint32_t seq = 0;
  uint32_t ack = 0;
  uint16_t window = 0;     // the raw window field
  uint16_t payload = 0;    // data bytes
  uint8_t flags = 0;
  uint8_t wscale = kNoWscale;
};

enum class TcpCheck : uint8_t {
  kOk,              // forward; state and windows updated
  kSynIgnored,      // forward: a client SYN on a synchronized flow, noted, nothing else changed
  kResynced,        // forward: the backend's SYN-ACK confirmed that SYN; tracking restarted
  kRstOutOfWindow,  // drop: a RST whose sequence number is outside the receiver's window
};

// Starts tracking at the client SYN that opens a flow or reopens its tuple.
// Inline: every new flow runs it.
inline void tcpTrackStart(TcpSeqTrack& t, uint8_t& flowFlags, const TcpSegment& syn) {
  t = TcpSeqTrack{};
  constexpr auto o = static_cast<std::size_t>(Direction::kOriginal);
  // The SYN's end: its sequence number, its data and the SYN itself (and a
  // FIN, should it carry one).
  t.end[o] = syn.seq + syn.payload + ((syn.flags & kTcpSyn) ? 1u : 0u) + ((syn.flags & kTcpFin) ? 1u : 0u);
  t.maxWindow[o] = syn.window;  // bytes until the SYN-ACK says whether scaling is on
  t.wscale[o] = syn.wscale;
  flowFlags = 0;
}

// One segment of a tracked flow travelling in `dir`: validates a RST
// against the window, handles SYNs as conntrack does (see tcp_state.cc),
// learns the sequence window from in-window segments and moves `state`
// (via tcpNextState). On kRstOutOfWindow nothing changes.
TcpCheck tcpTrack(FlowState& state, uint8_t& flowFlags, TcpSeqTrack& t, const TcpSegment& seg, Direction dir);

// The window scale option of a SYN or SYN-ACK whose `hdrLen` header bytes
// are present; kNoWscale when absent or the options are malformed.
uint8_t tcpWindowScaleOption(const uint8_t* tcp, uint16_t hdrLen);

// The receive window of `dir`'s side in bytes as the tracker knows it (0
// when that side has not spoken yet).
inline uint32_t tcpReceiveWindow(const TcpSeqTrack& t, uint8_t flowFlags, Direction dir) {
  const auto i = static_cast<std::size_t>(dir);
  if (dir == Direction::kReply && !(flowFlags & kFlowReplySeen)) return 0;
  const uint8_t scale = t.wscale[i] == kNoWscale ? 0 : t.wscale[i];
  return uint32_t{t.maxWindow[i]} << scale;
}

// Segments are learned from when they end within this many bytes of what
// the tracker has seen, at least: a receiver that has not advertised a
// window yet, or a small one, still lets the sender's next segment through.
inline constexpr uint32_t kMinLearnWindow = 65535;

// The per-packet part of tcpTrack for an established flow's segment
// without SYN, FIN or RST (the fast path): an in-window segment moves the
// sender's end forward and its largest window up; anything else teaches
// nothing (a spoofed segment far ahead must not drag the window along).
// One predictable branch (in window or not); the two updates are
// conditional moves. The window test |ahead| <= w is one unsigned compare:
// w <= 65535 << 15 < 2^31, so ahead + w wraps exactly when ahead < -w.
inline void tcpAdvance(TcpSeqTrack& t, Direction dir, uint32_t seqEnd, uint16_t window) {
  const auto s = static_cast<std::size_t>(dir);
  const auto r = s ^ 1u;
  uint32_t w = uint32_t{t.maxWindow[r]} << (t.wscale[r] & 0x0f);
  w = w < kMinLearnWindow ? kMinLearnWindow : w;
  const uint32_t ahead = seqEnd - t.end[s];
  if (ahead + w > 2 * w) return;
  t.end[s] = static_cast<int32_t>(ahead) > 0 ? seqEnd : t.end[s];
  t.maxWindow[s] = window > t.maxWindow[s] ? window : t.maxWindow[s];
}

}  // namespace strait::dataplane
