// The flags-only TCP tracker: every transition of the state machine, RST
// from both sides in every state, retransmissions, the three ways a
// connection closes (client first, backend first, simultaneously), reuse of
// a tuple after TIME_WAIT and CLOSED, and an exhaustive check that no flag
// combination ever leaves the allowed transition graph.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "dataplane/tcp_state.h"

namespace sd = strait::dataplane;
using strait::Direction;
using strait::FlowState;
using strait::flowStateName;
using strait::kFlowStateCount;

namespace {

constexpr Direction kOrig = Direction::kOriginal;
constexpr Direction kRepl = Direction::kReply;
constexpr uint8_t kSyn = sd::kTcpSyn;
constexpr uint8_t kAck = sd::kTcpAck;
constexpr uint8_t kFin = sd::kTcpFin;
constexpr uint8_t kRst = sd::kTcpRst;
constexpr uint8_t kPsh = sd::kTcpPsh;
constexpr uint8_t kFinO = sd::kFlowFinOriginal;
constexpr uint8_t kFinR = sd::kFlowFinReply;

struct Step {
  FlowState from;
  uint8_t tcp;
  Direction dir;
  uint8_t flagsIn;
  FlowState to;
  uint8_t flagsOut;
};

std::string describe(const Step& s) {
  return std::string(flowStateName(s.from)) + " tcp=0x" + std::to_string(s.tcp) +
         (s.dir == kOrig ? " orig" : " reply") + " flags=" + std::to_string(s.flagsIn);
}

void expectStep(const Step& s) {
  uint8_t flags = s.flagsIn;
  EXPECT_EQ(sd::tcpNextState(s.from, s.tcp, s.dir, flags), s.to) << describe(s);
  EXPECT_EQ(flags, s.flagsOut) << describe(s);
}

// Feeds a sequence of segments from a starting state and returns the states
// after each one.
std::vector<FlowState> run(FlowState start, uint8_t& flags,
                           const std::vector<std::pair<uint8_t, Direction>>& segs) {
  std::vector<FlowState> out;
  FlowState s = start;
  for (auto [tcp, dir] : segs) {
    s = sd::tcpNextState(s, tcp, dir, flags);
    out.push_back(s);
  }
  return out;
}

const std::vector<FlowState> kTcpStates = {
    FlowState::kSynSent,   FlowState::kSynRecv, FlowState::kEstablished, FlowState::kFinWait,
    FlowState::kCloseWait, FlowState::kLastAck, FlowState::kTimeWait,    FlowState::kClosed};

}  // namespace

TEST(TcpState, RstFromEitherSideClosesEveryState) {
  for (FlowState s : kTcpStates) {
    for (Direction d : {kOrig, kRepl}) {
      for (uint8_t extra : {uint8_t{0}, kAck, kSyn, kFin, uint8_t(kAck | kPsh)}) {
        for (uint8_t flagsIn : {uint8_t{0}, kFinO, kFinR, uint8_t(kFinO | kFinR)}) {
          uint8_t flags = flagsIn;
          EXPECT_EQ(sd::tcpNextState(s, kRst | extra, d, flags), FlowState::kClosed)
              << flowStateName(s) << " extra=" << int(extra);
          EXPECT_EQ(flags, flagsIn) << "RST leaves the FIN bits alone";
        }
      }
    }
  }
}

TEST(TcpState, UdpNeverChanges) {
  for (unsigned tcp = 0; tcp < 32; ++tcp) {
    for (Direction d : {kOrig, kRepl}) {
      uint8_t flags = 0;
      EXPECT_EQ(sd::tcpNextState(FlowState::kUdp, uint8_t(tcp), d, flags), FlowState::kUdp);
      EXPECT_EQ(flags, 0);
    }
  }
}

TEST(TcpState, SynSent) {
  const Step steps[] = {
      {FlowState::kSynSent, kSyn, kOrig, 0, FlowState::kSynSent, 0},            // retransmitted SYN
      {FlowState::kSynSent, kSyn | kAck, kRepl, 0, FlowState::kSynRecv, 0},     // backend answers
      {FlowState::kSynSent, kAck, kRepl, 0, FlowState::kSynSent, 0},            // stray ACK
      {FlowState::kSynSent, kAck | kPsh, kRepl, 0, FlowState::kSynSent, 0},     // stray data
      {FlowState::kSynSent, kAck, kOrig, 0, FlowState::kSynSent, 0},            // ACK before SYN-ACK
      {FlowState::kSynSent, kSyn | kAck, kOrig, 0, FlowState::kSynSent, 0},     // SYN-ACK the wrong way
      {FlowState::kSynSent, kSyn, kRepl, 0, FlowState::kSynSent, 0},            // simultaneous open
      {FlowState::kSynSent, kFin, kOrig, 0, FlowState::kSynSent, 0},
      {FlowState::kSynSent, kFin | kAck, kRepl, 0, FlowState::kSynSent, 0},
  };
  for (const Step& s : steps) expectStep(s);
}

TEST(TcpState, SynRecv) {
  const Step steps[] = {
      {FlowState::kSynRecv, kAck, kOrig, 0, FlowState::kEstablished, 0},         // handshake done
      {FlowState::kSynRecv, kAck | kPsh, kOrig, 0, FlowState::kEstablished, 0},  // ACK with data
      {FlowState::kSynRecv, kSyn, kOrig, 0, FlowState::kSynRecv, 0},             // retransmitted SYN
      {FlowState::kSynRecv, kSyn | kAck, kRepl, 0, FlowState::kSynRecv, 0},      // retransmitted SYN-ACK
      {FlowState::kSynRecv, kAck, kRepl, 0, FlowState::kSynRecv, 0},             // backend ACK
      {FlowState::kSynRecv, kSyn | kAck, kOrig, 0, FlowState::kSynRecv, 0},
      {FlowState::kSynRecv, 0, kOrig, 0, FlowState::kSynRecv, 0},                // no ACK bit
      // The completing ACK carries a FIN: established, then the close begins.
      {FlowState::kSynRecv, kAck | kFin, kOrig, 0, FlowState::kFinWait, kFinO},
  };
  for (const Step& s : steps) expectStep(s);
}

TEST(TcpState, Established) {
  const Step steps[] = {
      {FlowState::kEstablished, kAck, kOrig, 0, FlowState::kEstablished, 0},
      {FlowState::kEstablished, kAck | kPsh, kRepl, 0, FlowState::kEstablished, 0},
      {FlowState::kEstablished, kSyn, kOrig, 0, FlowState::kEstablished, 0},
      {FlowState::kEstablished, kFin | kAck, kOrig, 0, FlowState::kFinWait, kFinO},
      {FlowState::kEstablished, kFin | kAck, kRepl, 0, FlowState::kFinWait, kFinR},
      {FlowState::kEstablished, kFin, kOrig, 0, FlowState::kFinWait, kFinO},
      // Stale bits from a caller are replaced by the side that closed.
      {FlowState::kEstablished, kFin | kAck, kOrig, kFinR, FlowState::kFinWait, kFinO},
  };
  for (const Step& s : steps) expectStep(s);
}

TEST(TcpState, FinWait) {
  const Step steps[] = {
      // Client closed first.
      {FlowState::kFinWait, kAck, kRepl, kFinO, FlowState::kCloseWait, kFinO},
      {FlowState::kFinWait, kAck | kPsh, kRepl, kFinO, FlowState::kCloseWait, kFinO},
      {FlowState::kFinWait, kFin | kAck, kRepl, kFinO, FlowState::kLastAck, kFinO | kFinR},
      {FlowState::kFinWait, kFin, kRepl, kFinO, FlowState::kLastAck, kFinO | kFinR},
      {FlowState::kFinWait, kFin | kAck, kOrig, kFinO, FlowState::kFinWait, kFinO},  // retransmit
      {FlowState::kFinWait, kAck, kOrig, kFinO, FlowState::kFinWait, kFinO},         // same side
      {FlowState::kFinWait, kSyn | kAck, kRepl, kFinO, FlowState::kFinWait, kFinO},
      // Backend closed first.
      {FlowState::kFinWait, kAck, kOrig, kFinR, FlowState::kCloseWait, kFinR},
      {FlowState::kFinWait, kFin | kAck, kOrig, kFinR, FlowState::kLastAck, kFinO | kFinR},
      {FlowState::kFinWait, kFin, kRepl, kFinR, FlowState::kFinWait, kFinR},
      {FlowState::kFinWait, kAck, kRepl, kFinR, FlowState::kFinWait, kFinR},
  };
  for (const Step& s : steps) expectStep(s);
}

TEST(TcpState, CloseWait) {
  const Step steps[] = {
      {FlowState::kCloseWait, kFin | kAck, kRepl, kFinO, FlowState::kLastAck, kFinO | kFinR},
      {FlowState::kCloseWait, kAck | kPsh, kRepl, kFinO, FlowState::kCloseWait, kFinO},  // half-close data
      {FlowState::kCloseWait, kAck, kOrig, kFinO, FlowState::kCloseWait, kFinO},
      {FlowState::kCloseWait, kFin | kAck, kOrig, kFinO, FlowState::kCloseWait, kFinO},  // retransmit
      {FlowState::kCloseWait, kFin | kAck, kOrig, kFinR, FlowState::kLastAck, kFinO | kFinR},
      {FlowState::kCloseWait, kFin, kRepl, kFinR, FlowState::kCloseWait, kFinR},
      {FlowState::kCloseWait, kSyn, kOrig, kFinO, FlowState::kCloseWait, kFinO},
      // Lost bits: CLOSE_WAIT itself says one FIN was seen, so a FIN ends it.
      {FlowState::kCloseWait, kFin | kAck, kRepl, 0, FlowState::kLastAck, kFinR},
  };
  for (const Step& s : steps) expectStep(s);
}

TEST(TcpState, LastAck) {
  const uint8_t both = kFinO | kFinR;
  const Step steps[] = {
      {FlowState::kLastAck, kAck, kOrig, both, FlowState::kTimeWait, both},
      {FlowState::kLastAck, kAck, kRepl, both, FlowState::kTimeWait, both},   // either side (documented)
      {FlowState::kLastAck, kFin | kAck, kRepl, both, FlowState::kLastAck, both},  // retransmitted FIN
      {FlowState::kLastAck, kFin | kAck, kOrig, both, FlowState::kLastAck, both},
      {FlowState::kLastAck, kSyn, kOrig, both, FlowState::kLastAck, both},
      {FlowState::kLastAck, kSyn | kAck, kRepl, both, FlowState::kLastAck, both},
      {FlowState::kLastAck, 0, kOrig, both, FlowState::kLastAck, both},
  };
  for (const Step& s : steps) expectStep(s);
}

TEST(TcpState, TimeWaitAndClosedReuse) {
  const uint8_t both = kFinO | kFinR;
  for (FlowState s : {FlowState::kTimeWait, FlowState::kClosed}) {
    const Step steps[] = {
        {s, kSyn, kOrig, both, FlowState::kSynSent, 0},  // new connection, bits cleared
        {s, kSyn | kAck, kOrig, both, s, both},
        {s, kSyn, kRepl, both, s, both},
        {s, kSyn | kAck, kRepl, both, s, both},
        {s, kAck, kOrig, both, s, both},
        {s, kAck, kRepl, both, s, both},
        {s, kFin | kAck, kOrig, both, s, both},
        {s, kFin | kAck, kRepl, both, s, both},
    };
    for (const Step& st : steps) expectStep(st);
  }
}

TEST(TcpState, ClientClosesFirst) {
  uint8_t flags = 0;
  auto states = run(FlowState::kSynSent, flags,
                    {{kSyn, kOrig},
                     {kSyn | kAck, kRepl},
                     {kAck, kOrig},
                     {kAck | kPsh, kOrig},
                     {kAck | kPsh, kRepl},
                     {kFin | kAck, kOrig},
                     {kAck, kRepl},
                     {kAck | kPsh, kRepl},
                     {kFin | kAck, kRepl},
                     {kAck, kOrig}});
  const std::vector<FlowState> want = {
      FlowState::kSynSent,     FlowState::kSynRecv,   FlowState::kEstablished, FlowState::kEstablished,
      FlowState::kEstablished, FlowState::kFinWait,   FlowState::kCloseWait,   FlowState::kCloseWait,
      FlowState::kLastAck,     FlowState::kTimeWait};
  EXPECT_EQ(states, want);
  EXPECT_EQ(flags, kFinO | kFinR);
}

TEST(TcpState, BackendClosesFirst) {
  uint8_t flags = 0;
  auto states = run(FlowState::kSynSent, flags,
                    {{kSyn | kAck, kRepl},
                     {kAck, kOrig},
                     {kFin | kAck, kRepl},
                     {kFin | kAck, kOrig},  // FIN piggybacked on the ACK: straight to LAST_ACK
                     {kAck, kRepl}});
  const std::vector<FlowState> want = {FlowState::kSynRecv, FlowState::kEstablished, FlowState::kFinWait,
                                       FlowState::kLastAck, FlowState::kTimeWait};
  EXPECT_EQ(states, want);
  EXPECT_EQ(flags, kFinO | kFinR);
}

TEST(TcpState, SimultaneousClose) {
  uint8_t flags = 0;
  auto states = run(FlowState::kEstablished, flags,
                    {{kFin | kAck, kOrig}, {kFin | kAck, kRepl}, {kAck, kRepl}, {kAck, kOrig}});
  const std::vector<FlowState> want = {FlowState::kFinWait, FlowState::kLastAck, FlowState::kTimeWait,
                                       FlowState::kTimeWait};
  EXPECT_EQ(states, want);
  EXPECT_EQ(flags, kFinO | kFinR);
}

TEST(TcpState, RetransmittedSynAndSynAck) {
  uint8_t flags = 0;
  auto states = run(FlowState::kSynSent, flags,
                    {{kSyn, kOrig}, {kSyn, kOrig}, {kSyn | kAck, kRepl}, {kSyn, kOrig}, {kSyn | kAck, kRepl},
                     {kAck, kOrig}});
  const std::vector<FlowState> want = {FlowState::kSynSent, FlowState::kSynSent, FlowState::kSynRecv,
                                       FlowState::kSynRecv, FlowState::kSynRecv, FlowState::kEstablished};
  EXPECT_EQ(states, want);
  EXPECT_EQ(flags, 0);
}

TEST(TcpState, ReuseAfterTimeWaitRunsAFullSecondConnection) {
  uint8_t flags = kFinO | kFinR;
  auto states = run(FlowState::kTimeWait, flags,
                    {{kSyn, kOrig}, {kSyn | kAck, kRepl}, {kAck, kOrig}, {kFin | kAck, kRepl}});
  const std::vector<FlowState> want = {FlowState::kSynSent, FlowState::kSynRecv, FlowState::kEstablished,
                                       FlowState::kFinWait};
  EXPECT_EQ(states, want);
  EXPECT_EQ(flags, kFinR) << "the old connection's FIN bits must not leak into the new one";
}

TEST(TcpState, ReuseAfterRst) {
  uint8_t flags = 0;
  auto states = run(FlowState::kEstablished, flags,
                    {{kFin | kAck, kOrig}, {kRst, kRepl}, {kAck, kOrig}, {kSyn, kOrig}, {kSyn | kAck, kRepl}});
  const std::vector<FlowState> want = {FlowState::kFinWait, FlowState::kClosed, FlowState::kClosed,
                                       FlowState::kSynSent, FlowState::kSynRecv};
  EXPECT_EQ(states, want);
  EXPECT_EQ(flags, 0);
}

// Every state, every combination of the five flags, both directions and
// every tracker-bit value (consistent or not): the result stays inside the
// transition graph, the first FIN of an open connection records exactly its
// sender, reuse clears the bits, and otherwise the bits only grow, by the
// bit of the side that sent a FIN.
TEST(TcpState, ExhaustiveStaysInTransitionGraph) {
  using E = std::pair<FlowState, FlowState>;
  const std::set<E> allowed = {
      {FlowState::kSynSent, FlowState::kSynRecv},       {FlowState::kSynRecv, FlowState::kEstablished},
      {FlowState::kSynRecv, FlowState::kFinWait},       {FlowState::kEstablished, FlowState::kFinWait},
      {FlowState::kFinWait, FlowState::kCloseWait},     {FlowState::kFinWait, FlowState::kLastAck},
      {FlowState::kCloseWait, FlowState::kLastAck},     {FlowState::kLastAck, FlowState::kTimeWait},
      {FlowState::kTimeWait, FlowState::kSynSent},      {FlowState::kClosed, FlowState::kSynSent},
  };
  std::size_t checked = 0;
  for (std::size_t si = 0; si < kFlowStateCount; ++si) {
    const auto from = static_cast<FlowState>(si);
    for (unsigned tcp = 0; tcp < 32; ++tcp) {
      for (Direction d : {kOrig, kRepl}) {
        for (uint8_t flagsIn = 0; flagsIn < 4; ++flagsIn) {
          uint8_t flags = flagsIn;
          const FlowState to = sd::tcpNextState(from, uint8_t(tcp), d, flags);
          ++checked;
          ASSERT_LT(static_cast<std::size_t>(to), kFlowStateCount);
          const bool rst = tcp & kRst;
          if (strait::isUdp(from)) {
            EXPECT_EQ(to, from);
          } else if (rst) {
            EXPECT_EQ(to, FlowState::kClosed);
          } else if (to != from) {
            EXPECT_TRUE(allowed.count({from, to}))
                << flowStateName(from) << " -> " << flowStateName(to) << " tcp=" << tcp;
          }
          const bool opening = from == FlowState::kSynRecv || from == FlowState::kEstablished;
          if (to == FlowState::kSynSent && from != FlowState::kSynSent) {
            EXPECT_EQ(flags, 0);
            EXPECT_EQ(tcp & (kSyn | kAck), kSyn);
            EXPECT_EQ(d, kOrig);
          } else if (opening && to == FlowState::kFinWait) {
            EXPECT_TRUE(tcp & kFin);
            EXPECT_EQ(flags, d == kOrig ? kFinO : kFinR) << "the bits name exactly the side that closed";
          } else {
            EXPECT_EQ(flags & flagsIn, flagsIn) << "FIN bits never disappear";
            const uint8_t added = flags & ~flagsIn;
            if (added) {
              EXPECT_TRUE(tcp & kFin);
              EXPECT_EQ(added, d == kOrig ? kFinO : kFinR);
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(checked, kFlowStateCount * 32 * 2 * 4);
}

// ---- sequence tracking: tcpTrack ----

namespace {

constexpr uint32_t kClientIsn = 1000;
constexpr uint32_t kBackendIsn = 5000;

sd::TcpSegment seg(uint32_t seq, uint32_t ack, uint8_t flags, uint16_t window = 1000, uint16_t payload = 0,
                   uint8_t wscale = sd::kNoWscale) {
  sd::TcpSegment s;
  s.seq = seq;
  s.ack = ack;
  s.flags = flags;
  s.window = window;
  s.payload = payload;
  s.wscale = wscale;
  return s;
}

// A flow through its handshake: client window 64240 scale 7, backend
// window 65160 scale 7, then the client's ACK with window 502 (scaled).
struct Tracked {
  FlowState state = FlowState::kSynSent;
  uint8_t flags = 0;
  sd::TcpSeqTrack t;

  sd::TcpCheck step(const sd::TcpSegment& s, Direction d) { return sd::tcpTrack(state, flags, t, s, d); }

  explicit Tracked(bool scale = true, bool established = true) {
    sd::tcpTrackStart(t, flags, seg(kClientIsn, 0, kSyn, 64240, 0, scale ? 7 : sd::kNoWscale));
    if (!established) return;
    EXPECT_EQ(step(seg(kBackendIsn, kClientIsn + 1, kSyn | kAck, 65160, 0, scale ? 7 : sd::kNoWscale), kRepl),
              sd::TcpCheck::kOk);
    EXPECT_EQ(state, FlowState::kSynRecv);
    EXPECT_EQ(step(seg(kClientIsn + 1, kBackendIsn + 1, kAck, scale ? 502 : 64240), kOrig), sd::TcpCheck::kOk);
    EXPECT_EQ(state, FlowState::kEstablished);
  }
};

}  // namespace

TEST(TcpTrack, HandshakeLearnsEndsAndScaledWindows) {
  Tracked f;
  EXPECT_EQ(f.t.end[0], kClientIsn + 1);
  EXPECT_EQ(f.t.end[1], kBackendIsn + 1);
  EXPECT_EQ(f.t.wscale[0], 7);
  EXPECT_EQ(f.t.wscale[1], 7);
  EXPECT_EQ(f.t.maxWindow[0], 502);  // 64240 / 128 rounded up, then the ACK's 502
  EXPECT_EQ(f.t.maxWindow[1], 510);  // 65160 / 128 rounded up
  EXPECT_TRUE(f.flags & sd::kFlowReplySeen);
  EXPECT_EQ(sd::tcpReceiveWindow(f.t, f.flags, kOrig), 502u << 7);
  EXPECT_EQ(sd::tcpReceiveWindow(f.t, f.flags, kRepl), 510u << 7);
  // Scaling is on only when both SYNs offer it.
  Tracked g(false);
  EXPECT_EQ(g.t.wscale[0], 0);
  EXPECT_EQ(g.t.wscale[1], 0);
  EXPECT_EQ(sd::tcpReceiveWindow(g.t, g.flags, kOrig), 64240u);
  EXPECT_EQ(sd::tcpReceiveWindow(g.t, g.flags, kRepl), 65160u);
}

// The attack: RSTs with sequence numbers 2^30 apart, spoofed from
// the backend side, then from the client side. None is in window; the flow
// stays established. The window's edges are exact.
TEST(TcpTrack, OutOfWindowRstIsRejectedAndChangesNothing) {
  Tracked f;
  const sd::TcpSeqTrack before = f.t;
  for (uint32_t k = 1; k <= 3; ++k) {
    for (Direction d : {kRepl, kOrig}) {
      const uint32_t base = f.t.end[static_cast<std::size_t>(d)];
      EXPECT_EQ(f.step(seg(base + k * (1u << 30), 0, kRst), d), sd::TcpCheck::kRstOutOfWindow);
      EXPECT_EQ(f.step(seg(base + k * (1u << 30), 7, kRst | kAck), d), sd::TcpCheck::kRstOutOfWindow);
    }
  }
  EXPECT_EQ(f.state, FlowState::kEstablished);
  EXPECT_EQ(std::memcmp(&before, &f.t, sizeof before), 0);
  // From the backend the receiver is the client: W = 502 << 7 = 64256.
  const uint32_t w = 502u << 7;
  EXPECT_EQ(f.step(seg(kBackendIsn + 1 + w + 1, 0, kRst), kRepl), sd::TcpCheck::kRstOutOfWindow);
  EXPECT_EQ(f.step(seg(kBackendIsn + 1 - w - 1, 0, kRst), kRepl), sd::TcpCheck::kRstOutOfWindow);
  EXPECT_EQ(f.state, FlowState::kEstablished);
  Tracked g;
  EXPECT_EQ(g.step(seg(kBackendIsn + 1 + w, 0, kRst), kRepl), sd::TcpCheck::kOk);
  EXPECT_EQ(g.state, FlowState::kClosed);
  Tracked h;
  EXPECT_EQ(h.step(seg(kBackendIsn + 1 - w, 0, kRst), kRepl), sd::TcpCheck::kOk);
  EXPECT_EQ(h.state, FlowState::kClosed);
  // From the client the receiver is the backend: W = 510 << 7.
  Tracked c;
  EXPECT_EQ(c.step(seg(kClientIsn + 1 + (510u << 7) + 1, 0, kRst), kOrig), sd::TcpCheck::kRstOutOfWindow);
  EXPECT_EQ(c.step(seg(kClientIsn + 1 + (510u << 7), 0, kRst), kOrig), sd::TcpCheck::kOk);
  EXPECT_EQ(c.state, FlowState::kClosed);
}

TEST(TcpTrack, InWindowRstClosesFromEitherSideInEveryTrackedState) {
  for (FlowState s : {FlowState::kEstablished, FlowState::kFinWait, FlowState::kCloseWait, FlowState::kLastAck,
                      FlowState::kTimeWait}) {
    for (Direction d : {kOrig, kRepl}) {
      Tracked f;
      f.state = s;
      const uint32_t end = f.t.end[static_cast<std::size_t>(d)];
      EXPECT_EQ(f.step(seg(end, 0, kRst), d), sd::TcpCheck::kOk) << flowStateName(s);
      EXPECT_EQ(f.state, FlowState::kClosed) << flowStateName(s);
    }
  }
}

// Before the backend has answered, its RST counts only when it
// acknowledges exactly the client's SYN, and the client's only at its
// own end.
TEST(TcpTrack, RstInSynSent) {
  {
    Tracked f(true, false);
    EXPECT_EQ(f.step(seg(0, 0, kRst), kRepl), sd::TcpCheck::kRstOutOfWindow);
    EXPECT_EQ(f.step(seg(0, kClientIsn + 2, kRst | kAck), kRepl), sd::TcpCheck::kRstOutOfWindow);
    EXPECT_EQ(f.step(seg(0, kClientIsn, kRst | kAck), kRepl), sd::TcpCheck::kRstOutOfWindow);
    EXPECT_EQ(f.state, FlowState::kSynSent);
    EXPECT_EQ(f.step(seg(0, kClientIsn + 1, kRst | kAck), kRepl), sd::TcpCheck::kOk);
    EXPECT_EQ(f.state, FlowState::kClosed);
  }
  {
    Tracked f(true, false);
    EXPECT_EQ(f.step(seg(kClientIsn + 2, 0, kRst), kOrig), sd::TcpCheck::kRstOutOfWindow);
    EXPECT_EQ(f.step(seg(kClientIsn + 1, 0, kRst), kOrig), sd::TcpCheck::kOk);
    EXPECT_EQ(f.state, FlowState::kClosed);
  }
}

// The backend still holds an older connection on the tuple and answers the
// SYN with a plain ACK; the client's RST to it (sequence number = that
// ACK's acknowledgement number) must get through, nothing else.
TEST(TcpTrack, ClientRstToABackendAckInSynSent) {
  Tracked f(true, false);
  EXPECT_EQ(f.step(seg(123, 777'777, kAck), kRepl), sd::TcpCheck::kOk);
  EXPECT_EQ(f.state, FlowState::kSynSent);
  EXPECT_EQ(f.step(seg(777'778, 0, kRst), kOrig), sd::TcpCheck::kRstOutOfWindow);
  EXPECT_EQ(f.step(seg(777'777, 0, kRst), kOrig), sd::TcpCheck::kOk);
  EXPECT_EQ(f.state, FlowState::kClosed);
  // The note does not survive into the handshake.
  Tracked g(true, false);
  EXPECT_EQ(g.step(seg(123, 777'777, kAck), kRepl), sd::TcpCheck::kOk);
  EXPECT_EQ(g.step(seg(kBackendIsn, kClientIsn + 1, kSyn | kAck, 65160, 0, 7), kRepl), sd::TcpCheck::kOk);
  EXPECT_FALSE(g.flags & sd::kFlowSynInSync);
  EXPECT_EQ(g.step(seg(777'777, 0, kRst), kOrig), sd::TcpCheck::kRstOutOfWindow);
}

TEST(TcpTrack, SynAckMustAcknowledgeTheSyn) {
  Tracked f(true, false);
  EXPECT_EQ(f.step(seg(kBackendIsn, kClientIsn + 7, kSyn | kAck, 65160, 0, 7), kRepl), sd::TcpCheck::kOk);
  EXPECT_EQ(f.state, FlowState::kSynSent);
  EXPECT_FALSE(f.flags & sd::kFlowReplySeen);
  EXPECT_EQ(f.step(seg(kBackendIsn, kClientIsn + 1, kSyn | kAck, 65160, 0, 7), kRepl), sd::TcpCheck::kOk);
  EXPECT_EQ(f.state, FlowState::kSynRecv);
  // A retransmitted SYN-ACK changes nothing.
  EXPECT_EQ(f.step(seg(kBackendIsn, kClientIsn + 1, kSyn | kAck, 65160, 0, 7), kRepl), sd::TcpCheck::kOk);
  EXPECT_EQ(f.state, FlowState::kSynRecv);
  EXPECT_EQ(f.t.end[1], kBackendIsn + 1);
}

// Data moves the sender's end; the RST window follows it. A segment far
// outside the window teaches nothing, so a spoofer cannot drag the window
// to where its RSTs would land.
TEST(TcpTrack, DataMovesTheWindowSpoofedSegmentsDoNot) {
  Tracked f;
  uint32_t seq = kBackendIsn + 1;
  for (int i = 0; i < 1000; ++i) {  // 1.4 MB from the backend, in window each time
    EXPECT_EQ(f.step(seg(seq, kClientIsn + 1, kAck, 509, 1400), kRepl), sd::TcpCheck::kOk);
    seq += 1400;
  }
  EXPECT_EQ(f.t.end[1], seq);
  // The same through the fast path.
  Tracked g;
  uint32_t gs = kBackendIsn + 1;
  for (int i = 0; i < 1000; ++i) {
    sd::tcpAdvance(g.t, kRepl, gs + 1400, 509);
    gs += 1400;
  }
  EXPECT_EQ(g.t.end[1], gs);
  EXPECT_EQ(std::memcmp(&f.t, &g.t, sizeof f.t), 0);
  // A RST at the old end is now out of window, one at the new end is in.
  Tracked h = f;
  EXPECT_EQ(h.step(seg(kBackendIsn + 1, 0, kRst), kRepl), sd::TcpCheck::kRstOutOfWindow);
  // Spoofed data 2^20 ahead (beyond the 64 KiB window): passed on, not learned.
  const uint32_t far = seq + (1u << 20);
  EXPECT_EQ(f.step(seg(far, kClientIsn + 1, kAck, 65535, 1000), kRepl), sd::TcpCheck::kOk);
  sd::tcpAdvance(f.t, kRepl, far + 1000, 65535);
  EXPECT_EQ(f.t.end[1], seq);
  EXPECT_EQ(f.t.maxWindow[1], 510);
  EXPECT_EQ(f.step(seg(far + 1000, 0, kRst), kRepl), sd::TcpCheck::kRstOutOfWindow);
  EXPECT_EQ(f.step(seg(seq, 0, kRst), kRepl), sd::TcpCheck::kOk);
  EXPECT_EQ(f.state, FlowState::kClosed);
}

TEST(TcpTrack, FinTakesOneSequenceNumber) {
  Tracked f;
  EXPECT_EQ(f.step(seg(kClientIsn + 1, kBackendIsn + 1, kFin | kAck, 502, 10), kOrig), sd::TcpCheck::kOk);
  EXPECT_EQ(f.state, FlowState::kFinWait);
  EXPECT_EQ(f.t.end[0], kClientIsn + 1 + 10 + 1);
}

// A client SYN on an established flow is passed on and changes nothing
// but a note; the backend decides what it was.
TEST(TcpTrack, SynOnEstablishedIsIgnoredUntilTheBackendConfirmsIt) {
  const uint32_t newIsn = 900'000;
  {  // The backend still has the connection: challenge ACK, client RST.
    Tracked f;
    const sd::TcpSeqTrack before = f.t;
    EXPECT_EQ(f.step(seg(newIsn, 0, kSyn, 64240, 0, 7), kOrig), sd::TcpCheck::kSynIgnored);
    EXPECT_EQ(f.state, FlowState::kEstablished);
    EXPECT_TRUE(f.flags & sd::kFlowSynInSync);
    EXPECT_EQ(f.t.synEnd, newIsn + 1);
    EXPECT_EQ(std::memcmp(before.end, f.t.end, sizeof before.end), 0);
    EXPECT_EQ(f.step(seg(kBackendIsn + 1, kClientIsn + 1, kAck, 509), kRepl), sd::TcpCheck::kOk);
    EXPECT_EQ(f.state, FlowState::kEstablished);
    // The client's RST carries the challenge ACK's acknowledgement number.
    EXPECT_EQ(f.step(seg(kClientIsn + 1, 0, kRst), kOrig), sd::TcpCheck::kOk);
    EXPECT_EQ(f.state, FlowState::kClosed);
  }
  {  // The backend lost the connection too and accepts the new one.
    Tracked f;
    EXPECT_EQ(f.step(seg(newIsn, 0, kSyn, 64240, 0, 7), kOrig), sd::TcpCheck::kSynIgnored);
    // A SYN-ACK for some other SYN is passed on and changes nothing.
    const uint32_t isn2 = 3'000'000'000u;
    EXPECT_EQ(f.step(seg(isn2, newIsn + 5, kSyn | kAck, 65160, 0, 7), kRepl), sd::TcpCheck::kOk);
    EXPECT_EQ(f.state, FlowState::kEstablished);
    EXPECT_EQ(f.step(seg(isn2, newIsn + 1, kSyn | kAck, 65160, 0, 7), kRepl), sd::TcpCheck::kResynced);
    EXPECT_EQ(f.state, FlowState::kSynRecv);
    EXPECT_EQ(f.t.end[0], newIsn + 1);
    EXPECT_EQ(f.t.end[1], isn2 + 1);
    EXPECT_FALSE(f.flags & sd::kFlowSynInSync);
    EXPECT_EQ(f.step(seg(newIsn + 1, isn2 + 1, kAck, 502), kOrig), sd::TcpCheck::kOk);
    EXPECT_EQ(f.state, FlowState::kEstablished);
    // Old-connection RSTs are now out of window.
    EXPECT_EQ(f.step(seg(kBackendIsn + 1, 0, kRst), kRepl), sd::TcpCheck::kRstOutOfWindow);
  }
  {  // The backend refuses it with a RST acknowledging exactly that SYN.
    Tracked f;
    EXPECT_EQ(f.step(seg(newIsn, 0, kSyn, 64240, 0, 7), kOrig), sd::TcpCheck::kSynIgnored);
    // (A sequence number far outside the backend's window: only the
    // acknowledgement of the SYN makes the RST acceptable.)
    EXPECT_EQ(f.step(seg(2'000'000'000u, newIsn + 2, kRst | kAck), kRepl), sd::TcpCheck::kRstOutOfWindow);
    EXPECT_EQ(f.step(seg(2'000'000'000u, newIsn + 1, kRst | kAck), kRepl), sd::TcpCheck::kOk);
    EXPECT_EQ(f.state, FlowState::kClosed);
  }
}

// A SYN after TIME_WAIT or CLOSED opens a new connection: tracking
// restarts from it.
TEST(TcpTrack, SynAfterCloseRestartsTracking) {
  for (FlowState s : {FlowState::kTimeWait, FlowState::kClosed}) {
    Tracked f;
    f.state = s;
    EXPECT_EQ(f.step(seg(42, 0, kSyn, 1000, 0, sd::kNoWscale), kOrig), sd::TcpCheck::kOk);
    EXPECT_EQ(f.state, FlowState::kSynSent);
    EXPECT_EQ(f.t.end[0], 43u);
    EXPECT_EQ(f.flags, 0);
    EXPECT_EQ(f.step(seg(7, 43, kSyn | kAck, 1000), kRepl), sd::TcpCheck::kOk);
    EXPECT_EQ(f.state, FlowState::kSynRecv);
  }
}

TEST(TcpTrack, WindowScaleOptionParsing) {
  auto hdr = [](std::vector<uint8_t> opts) {
    std::vector<uint8_t> h(20, 0);
    h.insert(h.end(), opts.begin(), opts.end());
    return h;
  };
  auto ws = [](const std::vector<uint8_t>& h) {
    return sd::tcpWindowScaleOption(h.data(), static_cast<uint16_t>(h.size()));
  };
  EXPECT_EQ(ws(hdr({})), sd::kNoWscale);
  // Linux's SYN: MSS, SACK permitted, timestamps, NOP, window scale 7.
  EXPECT_EQ(ws(hdr({2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7})), 7);
  EXPECT_EQ(ws(hdr({1, 1, 1, 3, 3, 14, 0, 0})), 14);
  EXPECT_EQ(ws(hdr({3, 3, 15, 0})), 14);            // clamped to RFC 7323's maximum
  EXPECT_EQ(ws(hdr({0, 3, 3, 7})), sd::kNoWscale);  // after end of options
  EXPECT_EQ(ws(hdr({2, 0, 3, 3, 7, 0, 0, 0})), sd::kNoWscale);  // zero length: malformed
  EXPECT_EQ(ws(hdr({2, 40, 3, 3})), sd::kNoWscale);  // runs past the header
  EXPECT_EQ(ws(hdr({1, 1, 3, 3})), sd::kNoWscale);   // truncated option
}

// The fast path (tcpAdvance) learns exactly what the generic tracker
// learns from the same plain segment of an established flow, at and around
// the window's edges, across the wrap of the sequence space, for every
// window scale and for windows below and above kMinLearnWindow.
TEST(TcpTrack, FastPathAgreesWithTheTrackerAtTheWindowEdges) {
  int checked = 0;
  for (uint8_t scale : {uint8_t{0}, uint8_t{1}, uint8_t{7}, uint8_t{14}}) {
    for (uint16_t rwin : {uint16_t{0}, uint16_t{100}, uint16_t{40000}, uint16_t{65535}}) {
      for (Direction d : {kOrig, kRepl}) {
        const auto s = static_cast<std::size_t>(d);
        const auto r = s ^ 1u;
        for (uint32_t base : {0u, 0xffffff00u, 0x7fffffffu, 12345u}) {
          Tracked f;
          f.t.end[s] = base;
          f.t.wscale[r] = scale;
          f.t.maxWindow[r] = rwin;
          f.t.maxWindow[s] = 300;
          const uint32_t w = std::max<uint32_t>(uint32_t{rwin} << scale, sd::kMinLearnWindow);
          for (int64_t off : {-int64_t{w} - 1, -int64_t{w}, -int64_t{w} + 1, int64_t{-1}, int64_t{0}, int64_t{1},
                              int64_t{w} - 1, int64_t{w}, int64_t{w} + 1, int64_t{0x7fffffff}, -int64_t{0x80000000}}) {
            const uint32_t seqEnd = base + static_cast<uint32_t>(off);
            for (uint16_t win : {uint16_t{200}, uint16_t{400}}) {
              Tracked slow = f;
              ASSERT_EQ(slow.step(seg(seqEnd, 0, kAck, win), d), sd::TcpCheck::kOk);
              ASSERT_EQ(slow.state, FlowState::kEstablished);
              sd::TcpSeqTrack fast = f.t;
              sd::tcpAdvance(fast, d, seqEnd, win);
              ASSERT_EQ(std::memcmp(&fast, &slow.t, sizeof fast), 0)
                  << "scale " << int(scale) << " rwin " << rwin << " dir " << s << " base " << base << " off " << off
                  << " win " << win;
              ++checked;
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(checked, 4 * 4 * 2 * 4 * 11 * 2);
}
