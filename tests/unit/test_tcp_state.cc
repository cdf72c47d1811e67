// The flags-only TCP tracker: every transition of the state machine, RST
// from both sides in every state, retransmissions, the three ways a
// connection closes (client first, backend first, simultaneously), reuse of
// a tuple after TIME_WAIT and CLOSED, and an exhaustive check that no flag
// combination ever leaves the allowed transition graph.
#include <gtest/gtest.h>

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
          if (from == FlowState::kUdp) {
            EXPECT_EQ(to, FlowState::kUdp);
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
