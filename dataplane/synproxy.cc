// SYN proxy frames and translation (see synproxy.h). Option walks check
// bounds before every read, as mss_clamp.cc does, so a hostile option list
// can neither read past the header nor loop.
#include "dataplane/synproxy.h"

#include <cstring>

#include "dataplane/checksum.h"
#include "dataplane/nat_rewrite.h"

namespace strait::dataplane {

namespace {

constexpr uint8_t kOptEol = 0;
constexpr uint8_t kOptNop = 1;
constexpr uint8_t kOptMss = 2;
constexpr uint8_t kOptWscale = 3;
constexpr uint8_t kOptSackPerm = 4;
constexpr uint8_t kOptSack = 5;
constexpr uint8_t kOptTs = 8;
constexpr uint16_t kTcpBaseLen = 20;
constexpr uint16_t kIpHdrLen = 20;
constexpr uint16_t kEtherLen = 14;

constexpr uint8_t kSyn = 0x02;
constexpr uint8_t kAck = 0x10;
constexpr uint8_t kTcpRstBit = 0x04;

inline uint32_t get32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}
inline uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline void set32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
inline void set16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

// Writes the 32-bit value `v` (host order) at tcp + off, whatever the
// alignment, and returns the checksum delta. The checksum sums 16-bit
// words aligned to the header, so an odd offset touches three of them.
uint32_t put32(uint8_t* tcp, unsigned off, uint32_t v) {
  const unsigned start = off & ~1u;
  const unsigned words = (off & 1u) ? 3 : 2;
  uint16_t before[3];
  for (unsigned w = 0; w < words; ++w) before[w] = rw::load16(tcp + start + 2 * w);
  set32(tcp + off, v);
  uint32_t d = 0;
  for (unsigned w = 0; w < words; ++w) d += rw::delta16(before[w], rw::load16(tcp + start + 2 * w));
  return d;
}

// Low and high nibble of FlowXlate::spWscale.
inline uint8_t clientWs(const FlowXlate& x) { return x.spWscale & 0x0f; }
inline uint8_t backendWs(const FlowXlate& x) { return x.spWscale >> 4; }

// Scale of the window fields the client sends (it and we both offered one).
inline uint8_t clientFieldScale(const FlowXlate& x) { return clientWs(x) == kNoWscale ? 0 : clientWs(x); }
// Scale the client applies to the window fields it receives.
inline uint8_t toClientScale(const FlowXlate& x) { return clientWs(x) == kNoWscale ? 0 : kProxyWscale; }
// Scale on the backend connection: on only when our SYN offered one (the
// client did) and the backend answered with one.
inline bool backendScaling(const FlowXlate& x) { return clientWs(x) != kNoWscale && backendWs(x) != kNoWscale; }
inline uint8_t backendFieldScale(const FlowXlate& x) { return backendScaling(x) ? backendWs(x) : 0; }
// Scale the backend applies to the client's window fields.
inline uint8_t fromClientScale(const FlowXlate& x) { return backendScaling(x) ? clientWs(x) : 0; }

class Options {
 public:
  void mss(uint16_t v) {
    b_[n_++] = kOptMss;
    b_[n_++] = 4;
    set16(b_ + n_, v);
    n_ += 2;
  }
  // SACK-permitted and timestamps as Linux lays them out.
  void sackTs(bool sack, bool ts, uint32_t tsVal, uint32_t tsEcr) {
    if (ts) {
      if (sack) {
        b_[n_++] = kOptSackPerm;
        b_[n_++] = 2;
      } else {
        b_[n_++] = kOptNop;
        b_[n_++] = kOptNop;
      }
      b_[n_++] = kOptTs;
      b_[n_++] = 10;
      set32(b_ + n_, tsVal);
      set32(b_ + n_ + 4, tsEcr);
      n_ += 8;
    }
  }
  void wscale(uint8_t ws) {
    b_[n_++] = kOptNop;
    b_[n_++] = kOptWscale;
    b_[n_++] = 3;
    b_[n_++] = ws;
  }
  void sackAlone() {
    b_[n_++] = kOptNop;
    b_[n_++] = kOptNop;
    b_[n_++] = kOptSackPerm;
    b_[n_++] = 2;
  }
  const uint8_t* data() const { return b_; }
  uint8_t size() const { return n_; }

 private:
  uint8_t b_[40] = {};
  uint8_t n_ = 0;
};

// The options of a SYN or SYN-ACK, in Linux's order.
Options synOptions(uint16_t mss, bool sack, bool ts, uint32_t tsVal, uint32_t tsEcr, uint8_t ws) {
  Options o;
  o.mss(mss);
  o.sackTs(sack, ts, tsVal, tsEcr);
  if (ws != kNoWscale) o.wscale(ws);
  if (sack && !ts) o.sackAlone();
  return o;
}

struct Segment {
  uint32_t srcIp;  // network order
  uint32_t dstIp;
  uint16_t srcPort;  // network order
  uint16_t dstPort;
  uint32_t seq;  // host order
  uint32_t ack;
  uint8_t flags;
  uint16_t window;
};

// A fresh IPv4 + TCP header with `o` at frame + l3Off, checksums computed
// in full. Returns the frame length.
uint16_t writeSegment(uint8_t* frame, uint16_t l3Off, const Segment& s, const Options& o,
                      const uint8_t* payload = nullptr, uint16_t payloadLen = 0) {
  uint8_t* ip = frame + l3Off;
  uint8_t* tcp = ip + kIpHdrLen;
  const uint16_t tcpLen = static_cast<uint16_t>(kTcpBaseLen + o.size() + payloadLen);
  const uint16_t total = static_cast<uint16_t>(kIpHdrLen + tcpLen);
  ip[0] = 0x45;
  ip[1] = 0;
  set16(ip + 2, total);
  set16(ip + 4, 0);       // id: the datagram is never fragmented
  set16(ip + 6, 0x4000);  // DF
  ip[8] = 64;
  ip[9] = 6;
  set16(ip + 10, 0);
  std::memcpy(ip + 12, &s.srcIp, 4);
  std::memcpy(ip + 16, &s.dstIp, 4);
  rw::store16(ip + 10, ipv4HeaderChecksum(ip, kIpHdrLen));

  std::memcpy(tcp, &s.srcPort, 2);
  std::memcpy(tcp + 2, &s.dstPort, 2);
  set32(tcp + 4, s.seq);
  set32(tcp + 8, s.ack);
  tcp[12] = static_cast<uint8_t>(((kTcpBaseLen + o.size()) / 4) << 4);
  tcp[13] = s.flags;
  set16(tcp + 14, s.window);
  set16(tcp + 16, 0);
  set16(tcp + 18, 0);
  std::memcpy(tcp + kTcpBaseLen, o.data(), o.size());
  if (payloadLen != 0) std::memcpy(tcp + kTcpBaseLen + o.size(), payload, payloadLen);
  rw::store16(tcp + rw::kTcpCheck, l4Checksum(s.srcIp, s.dstIp, 6, tcp, tcpLen));
  return static_cast<uint16_t>(l3Off + total);
}

}  // namespace

uint32_t tcpSeq(const uint8_t* tcp) { return get32(tcp + 4); }

bool tcpChecksumOk(const uint8_t* frame, const PacketMeta& m) {
  const uint8_t* tcp = frame + m.l4Off;
  return l4ChecksumValid(m.srcIp, m.dstIp, 6, tcp, m.l4Len);
}
void readTimestamp(const uint8_t* tcp, uint16_t off, uint32_t& tsVal, uint32_t& tsEcr) {
  tsVal = get32(tcp + off + 2);
  tsEcr = get32(tcp + off + 6);
}
uint32_t tcpAck(const uint8_t* tcp) { return get32(tcp + 8); }
uint16_t tcpWindow(const uint8_t* tcp) { return get16(tcp + 14); }

void parseSynOptions(const uint8_t* tcp, uint16_t hdrLen, SynOptions& o) {
  uint16_t off = kTcpBaseLen;
  while (off < hdrLen) {
    const uint8_t kind = tcp[off];
    if (kind == kOptEol) return;
    if (kind == kOptNop) {
      ++off;
      continue;
    }
    if (off + 1 >= hdrLen) return;
    const uint8_t len = tcp[off + 1];
    if (len < 2 || off + len > hdrLen) return;
    if (kind == kOptMss && len == 4) {
      o.mss = get16(tcp + off + 2);
    } else if (kind == kOptWscale && len == 3) {
      const uint8_t ws = tcp[off + 2];
      o.wscale = ws > kMaxWscale ? kMaxWscale : ws;  // RFC 7323 2.3: use 14
    } else if (kind == kOptSackPerm && len == 2) {
      o.sackOk = true;
    } else if (kind == kOptTs && len == 10) {
      o.hasTs = true;
      o.tsVal = get32(tcp + off + 2);
      o.tsEcr = get32(tcp + off + 6);
    }
    off = static_cast<uint16_t>(off + len);
  }
}

uint16_t findTimestamp(const uint8_t* tcp, uint16_t hdrLen) {
  uint16_t off = kTcpBaseLen;
  while (off < hdrLen) {
    const uint8_t kind = tcp[off];
    if (kind == kOptEol) return 0;
    if (kind == kOptNop) {
      ++off;
      continue;
    }
    if (off + 1 >= hdrLen) return 0;
    const uint8_t len = tcp[off + 1];
    if (len < 2 || off + len > hdrLen) return 0;
    if (kind == kOptTs) return len == 10 ? off : 0;
    off = static_cast<uint16_t>(off + len);
  }
  return 0;
}

void translateQuote(uint8_t* in4, uint16_t avail, const Flow& f, const FlowXlate& x, Direction dir) {
  const bool sp = (f.flags & kFlowSynProxyReady) != 0;
  const bool pp = (f.ppFlags & kPpOn) != 0;
  uint32_t d = 0;
  if (dir == Direction::kOriginal) {
    // A segment we sent the client: its seq is the backend's plus
    // spSeqDelta (the PROXY header never shifts the backend's bytes).
    if (avail < 8 || !sp) return;
    d += put32(in4, 4, tcpSeq(in4) - x.spSeqDelta);
  } else {
    // A segment we sent the backend: its seq is the client's plus L,
    // except at ppStart, where the header itself went; its ack is the
    // backend's view of our own.
    if (avail < 8) return;
    if (pp) {
      const uint32_t s = tcpSeq(in4);
      if (s != f.ppStart) d += put32(in4, 4, s - kProxyV2Len);
    }
    if (sp && avail >= 14 && (in4[13] & 0x10)) d += put32(in4, 8, tcpAck(in4) + x.spSeqDelta);
  }
  if (avail >= 18) rw::store16(in4 + rw::kTcpCheck, rw::applyDelta(rw::load16(in4 + rw::kTcpCheck), d));
}

uint16_t rescaleWindow(uint16_t w, uint8_t in, uint8_t out) {
  if (in == out) return w;
  const uint64_t bytes = uint64_t{w} << in;
  uint64_t v = bytes >> out;
  if ((v << out) != bytes) ++v;  // round up: a non-zero window stays non-zero
  return v > 0xffff ? 0xffff : static_cast<uint16_t>(v);
}

uint16_t synProxyWindowToBackend(const FlowXlate& x, uint16_t window) {
  return rescaleWindow(window, clientFieldScale(x), fromClientScale(x));
}

void synProxyTrackerView(TcpSegment& seg, const FlowXlate& x, Direction dir) {
  if (dir != Direction::kOriginal) return;
  if (seg.flags & kAck) seg.ack -= x.spSeqDelta;
  if (!(seg.flags & kSyn)) seg.window = synProxyWindowToBackend(x, seg.window);
}

uint16_t writeCookieSynAck(uint8_t* frame, const PacketMeta& m, uint32_t cookie, const SynOptions& client,
                           uint16_t mss, uint32_t tsVal) {
  // Ethernet: back to where it came from.
  rw::swapEtherAddrs(frame);

  const uint8_t* tcpIn = frame + m.l4Off;
  const uint32_t clientIsn = tcpSeq(tcpIn);
  const uint8_t ws = client.wscale == kNoWscale ? kNoWscale : kProxyWscale;
  const Options o = synOptions(mss, client.sackOk, client.hasTs, tsVal, client.tsVal, ws);
  Segment s{m.dstIp, m.srcIp, m.dstPort, m.srcPort, cookie, clientIsn + 1, kSyn | kAck, 0};
  return writeSegment(frame, m.l3Off, s, o);
}

uint16_t writeBackendSyn(uint8_t* frame, const PacketMeta& m, const Flow& f, uint32_t clientIsn,
                         uint16_t window, const SynOptions& client) {
  const Options o = synOptions(client.mss, client.sackOk, client.hasTs, client.tsVal, 0, client.wscale);
  const uint8_t scale = client.wscale == kNoWscale ? 0 : client.wscale;
  Segment s{f.snatIp, f.backendIp, f.snatPort, f.backendPort, clientIsn, 0, kSyn, rescaleWindow(window, scale, 0)};
  return writeSegment(frame, m.l3Off, s, o);
}

BackendSynAck readBackendSynAck(const uint8_t* tcp, uint16_t hdrLen) {
  BackendSynAck sa;
  sa.isn = tcpSeq(tcp);
  sa.ack = tcpAck(tcp);
  sa.window = tcpWindow(tcp);
  SynOptions o;
  parseSynOptions(tcp, hdrLen, o);
  sa.wscale = o.wscale;
  sa.hasTs = o.hasTs;
  sa.tsVal = o.tsVal;
  sa.tsEcr = o.tsEcr;
  return sa;
}

void synProxyLearnBackend(Flow& f, FlowXlate& x, const BackendSynAck& sa) {
  x.spSeqDelta = x.spSeqDelta - sa.isn;               // our ISN - backend ISN
  x.spTsDelta = sa.hasTs ? x.spTsDelta - sa.tsVal : 0;  // our TSval - backend TSval
  x.spWscale = static_cast<uint8_t>((x.spWscale & 0x0f) | (sa.wscale & 0x0f) << 4);
  f.flags |= kFlowSynProxyReady;
}

uint16_t writeBackendAck(uint8_t* frame, const PacketMeta& m, const Flow& f, const FlowXlate& x,
                         const BackendSynAck& sa) {
  Options o;
  if (sa.hasTs) o.sackTs(false, true, sa.tsEcr, sa.tsVal);
  const uint16_t win = rescaleWindow(x.spClientWin, clientFieldScale(x), fromClientScale(x));
  // With PROXY protocol the ACK carries the header, until the backend has
  // acknowledged it (a SYN-ACK sent again means it has not).
  uint8_t hdr[kProxyV2Len];
  const bool pp = (f.ppFlags & (kPpOn | kPpAcked)) == kPpOn;
  if (pp) writeProxyV2(hdr, f);
  Segment s{f.snatIp, f.backendIp, f.snatPort, f.backendPort, sa.ack, sa.isn + 1, kAck, win};
  return writeSegment(frame, m.l3Off, s, o, pp ? hdr : nullptr, pp ? kProxyV2Len : 0);
}

uint16_t writeClientWindowUpdate(uint8_t* frame, const uint8_t* like, uint16_t l3Off, const Flow& f,
                                 const FlowXlate& x, const BackendSynAck& sa) {
  std::memcpy(frame, like, l3Off < kEtherLen ? kEtherLen : l3Off);
  Options o;
  if (sa.hasTs) o.sackTs(false, true, sa.tsVal + x.spTsDelta, sa.tsEcr);
  const uint16_t win = rescaleWindow(sa.window, 0, toClientScale(x));
  Segment s{f.vip, f.clientIp, f.vipPort, f.clientPort, sa.isn + 1 + x.spSeqDelta, sa.ack, kAck, win};
  return writeSegment(frame, l3Off, s, o);
}

void synProxyEarlyReset(uint8_t* tcp, const FlowXlate& x) {
  // Before the backend's SYN-ACK, spSeqDelta holds our ISN.
  const uint32_t d = put32(tcp, 4, x.spSeqDelta + 1);
  rw::store16(tcp + rw::kTcpCheck, rw::applyDelta(rw::load16(tcp + rw::kTcpCheck), d));
}

bool translateSegment(uint8_t* tcp, uint16_t hdrLen, Flow& f, const FlowXlate& x, Direction dir) {
  uint32_t d = 0;
  const uint8_t flags = tcp[13];
  const bool sp = (f.flags & kFlowSynProxyReady) != 0;
  const bool pp = (f.ppFlags & kPpOn) != 0;
  // The backend's view of the client's sequence number s is s + fwd (past
  // the PROXY header); the client's view of the backend's t is t + rev.
  const uint32_t fwd = pp ? kProxyV2Len : 0;
  const uint32_t rev = sp ? x.spSeqDelta : 0;
  const uint32_t hdrEnd = f.ppStart + fwd;
  // A backend ack or SACK edge in the client's space: inside the header it
  // means "nothing of the client's yet".
  auto toClient = [&](uint32_t a) {
    return static_cast<int32_t>(a - hdrEnd) >= 0 ? a - fwd : f.ppStart;
  };
  bool insert = false;
  if (dir == Direction::kReply) {
    if (sp) d += put32(tcp, 4, tcpSeq(tcp) + rev);
    if (pp && (flags & kAck)) {
      const uint32_t a = tcpAck(tcp);
      if (static_cast<int32_t>(a - hdrEnd) >= 0) f.ppFlags |= kPpAcked;
      d += put32(tcp, 8, toClient(a));
    }
    const uint8_t in = sp ? backendFieldScale(x) : 0;
    const uint8_t out = sp ? toClientScale(x) : 0;
    if (in != out && !(flags & kSyn)) {
      const uint16_t before = rw::load16(tcp + 14);
      set16(tcp + 14, rescaleWindow(tcpWindow(tcp), in, out));
      d += rw::delta16(before, rw::load16(tcp + 14));
    }
  } else {
    if (pp) {
      const uint32_t seq = tcpSeq(tcp);
      insert = seq == f.ppStart && !(f.ppFlags & kPpAcked) && !(flags & (kSyn | kTcpRstBit));
      if (!insert && !(flags & kSyn)) d += put32(tcp, 4, seq + fwd);
    }
    if (sp && (flags & kAck)) d += put32(tcp, 8, tcpAck(tcp) - rev);
    const uint8_t in = sp ? clientFieldScale(x) : 0;
    const uint8_t out = sp ? fromClientScale(x) : 0;
    if (in != out && !(flags & kSyn)) {
      const uint16_t before = rw::load16(tcp + 14);
      set16(tcp + 14, rescaleWindow(tcpWindow(tcp), in, out));
      d += rw::delta16(before, rw::load16(tcp + 14));
    }
  }

  // Options: timestamps both ways (SYN proxy), SACK blocks: from the client
  // they name backend bytes (rev), from the backend client bytes (fwd).
  uint16_t off = kTcpBaseLen;
  while (off < hdrLen) {
    const uint8_t kind = tcp[off];
    if (kind == kOptEol) break;
    if (kind == kOptNop) {
      ++off;
      continue;
    }
    if (off + 1 >= hdrLen) break;
    const uint8_t len = tcp[off + 1];
    if (len < 2 || off + len > hdrLen) break;
    if (kind == kOptTs && len == 10 && sp) {
      if (dir == Direction::kReply)
        d += put32(tcp, off + 2u, get32(tcp + off + 2) + x.spTsDelta);
      else
        d += put32(tcp, off + 6u, get32(tcp + off + 6) - x.spTsDelta);
    } else if (kind == kOptSack) {
      for (unsigned e = off + 2u; e + 4 <= off + len; e += 4u) {
        if (dir == Direction::kOriginal && sp)
          d += put32(tcp, e, get32(tcp + e) - rev);
        else if (dir == Direction::kReply && pp)
          d += put32(tcp, e, toClient(get32(tcp + e)));
      }
    }
    off = static_cast<uint16_t>(off + len);
  }
  rw::store16(tcp + rw::kTcpCheck, rw::applyDelta(rw::load16(tcp + rw::kTcpCheck), d));
  return insert;
}

}  // namespace strait::dataplane
