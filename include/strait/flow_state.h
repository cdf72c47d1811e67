// Flow states and their idle timeouts. TCP flows move through a small
// state machine driven by the flags seen in both directions; each state has
// its own idle timeout so half-open and closing flows free their SNAT port
// quickly while established flows live as long as the NLB downstream keeps
// them (350 s idle). UDP flows start unreplied and become `udp` once the
// backend has answered and the flow is still talking 2 s after its first
// datagram, like conntrack's unreplied / assured split (its "stream"
// rule): anyone can create an unassured flow with one spoofed datagram,
// and a backend answers spoofed datagrams too, so such flows hold their
// port for less time and are the first to go when ports or table slots
// run out (early drop, see docs/security.md).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace strait {

enum class FlowState : uint8_t {
  kSynSent = 0,  // client SYN seen
  kSynRecv,      // backend SYN-ACK seen
  kEstablished,  // handshake completed
  kFinWait,      // first FIN seen
  kCloseWait,    // first FIN acknowledged by the peer, other side still open
  kLastAck,      // both sides sent FIN, waiting for the final ACK
  kTimeWait,     // final ACK seen
  kClosed,       // RST seen
  kUdp,          // UDP pseudo-flow, assured: replied, and still active 2 s after it began
  kUdpUnreplied, // UDP pseudo-flow not assured yet (no reply, or younger than 2 s)
  kCount
};

inline constexpr std::size_t kFlowStateCount = static_cast<std::size_t>(FlowState::kCount);

inline constexpr std::array<std::string_view, kFlowStateCount> kFlowStateNames = {
    "syn_sent", "syn_recv", "established", "fin_wait", "close_wait",
    "last_ack", "time_wait", "closed",     "udp",        "udp_unreplied"};

constexpr std::string_view flowStateName(FlowState s) {
  return kFlowStateNames[static_cast<std::size_t>(s)];
}

// Flows that the other side has not answered yet: a spoofed packet can
// create them, so they are what early drop may recycle. Established and
// closing flows, and assured UDP flows, never are.
constexpr bool isUnassured(FlowState s) {
  return s == FlowState::kSynSent || s == FlowState::kSynRecv || s == FlowState::kUdpUnreplied;
}

constexpr bool isUdp(FlowState s) { return s == FlowState::kUdp || s == FlowState::kUdpUnreplied; }

// Idle timeouts in milliseconds, indexed by FlowState.
struct FlowTimeouts {
  std::array<uint32_t, kFlowStateCount> ms = {
      30'000,   // syn_sent
      30'000,   // syn_recv
      350'000,  // established (AWS NLB TCP idle timeout)
      120'000,  // fin_wait
      60'000,   // close_wait
      30'000,   // last_ack
      120'000,  // time_wait
      10'000,   // closed
      120'000,  // udp (AWS NLB UDP idle timeout)
      30'000,   // udp_unreplied (conntrack's unreplied UDP timeout)
  };
  uint32_t of(FlowState s) const { return ms[static_cast<std::size_t>(s)]; }
};

}  // namespace strait
