// The NAT pipeline of one worker (see nat.h and docs/nat.md). A burst goes
// through three passes: parse and classify every frame (prefetching frames
// ahead), look every flow candidate up with one bulk hash lookup, then
// handle the candidates in arrival order: hits are tracked and rewritten,
// misses create flows (Maglev pick, SNAT port) or are handed to the worker
// that owns them. Everything per packet is inline arithmetic on the frame;
// the only calls out are the flow table, the port allocator on new flows,
// the TCP tracker and the rare ICMP and MSS paths.
#include "dataplane/nat.h"

#include <netinet/in.h>
#include <rte_byteorder.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>
#include <new>
#include <type_traits>

#include "dataplane/health_endpoint.h"
#include "dataplane/icmp.h"
#include "dataplane/maglev.h"
#include "dataplane/mss_clamp.h"
#include "dataplane/nat_rewrite.h"
#include "dataplane/parse.h"
#include "dataplane/proxy_protocol.h"
#include "dataplane/synproxy.h"
#include "dataplane/tcp_state.h"
#include "strait/mix.h"

namespace strait::dataplane {

namespace {

// Frames are prefetched this many positions ahead of the parser: far enough
// to hide a miss to memory behind the parse of the frames in between.
constexpr uint16_t kPrefetchAhead = 4;

constexpr uint8_t kIcmpEchoRequest = 8;

// How long a UDP flow must have lasted, with a reply seen, to be assured
// (Linux conntrack: 2 s, nf_conntrack_proto_udp.c).
constexpr uint32_t kUdpStreamMs = 2000;

// What a frame that needs its flow turned out to be.
enum class Cand : uint8_t {
  kOriginal,       // TCP/UDP client -> VIP:service port
  kReply,          // TCP/UDP to a SNAT address: a backend's reply
  kIcmpToClient,   // ICMP error to a SNAT address quoting snat -> backend
  kIcmpToBackend,  // ICMP error to a VIP quoting vip -> client
};

// The fields of a TCP header the tracker reads; the window scale option
// only on SYNs (the only segments that may carry it).
[[gnu::always_inline]] inline TcpSegment tcpSegmentOf(const uint8_t* l4, const PacketMeta& m) {
  TcpSegment s;
  s.seq = rw::load32be(l4 + 4);
  s.ack = rw::load32be(l4 + 8);
  s.window = rw::load16be(l4 + 14);
  s.payload = static_cast<uint16_t>(m.l4Len - m.tcpHdrLen);
  s.flags = m.tcpFlags;
  if (m.tcpFlags & kTcpSyn) s.wscale = tcpWindowScaleOption(l4, m.tcpHdrLen);
  return s;
}

// A flow leaves the table: its port goes back and its service and backend
// count it closed.
void closeAccounting(PortAllocator& pa, WorkerCounters& c, const Flow& f) {
  pa.release(f.pool, rte_be_to_cpu_16(f.snatPort));
  if (f.serviceSlot < kMaxServiceSlots) bump(c.services[f.serviceSlot].flowsClosed);
  if (f.backendSlot < kMaxBackendSlots) bump(c.backends[f.backendSlot].flowsClosed);
}

// Spreads new flows over a service's SNAT addresses. Mixed again so the
// address choice is independent of the Maglev slot the same hash picks.
inline uint32_t snatSpread(uint32_t h) { return fmix32(h); }


// Uninitialised stack storage for per-burst scratch arrays, instead of
// value-initialising all kMaxBurst entries (several KiB) on every call. The
// element types are aggregates, hence implicit-lifetime types, and a byte
// array implicitly creates such objects in its storage (C++20
// [intro.object]); every entry is fully written before it is read.
// Aligned to 16 so each 16-byte FlowKey sits in one cache line and the
// hash function's 8-byte loads are aligned.
template <class T, std::size_t N>
struct Scratch {
  static_assert(std::is_aggregate_v<T> && std::is_trivially_destructible_v<T>);
  T* data() { return std::launder(reinterpret_cast<T*>(raw)); }
  alignas(alignof(T) > 16 ? alignof(T) : 16) std::byte raw[sizeof(T) * N];
};

class Burst {
 public:
  Burst(const NatCore::Deps& d, NatCore::SynProxyState& sp, NatCore::Generated& gen, const Snapshot& snap,
        uint32_t nowMs, bool fromHandoff)
      : ft_(*d.flows),
        pa_(*d.ports),
        c_(*d.counters),
        d_(d),
        sp_(sp),
        gen_(gen),
        snap_(snap),
        now_(nowMs),
        fromHandoff_(fromHandoff) {}

  void run(rte_mbuf** pkts, uint16_t n, Verdict* v);

 private:
  void classify(rte_mbuf* mb, uint16_t i, Verdict& v);
  FlowKey& addCandidate(uint16_t i, Cand kind, const ServiceView* svc);
  // A TCP/UDP frame classified as `kind` (an original to `svc`, or a reply).
  [[gnu::always_inline]] inline void addFlowCandidate(uint16_t i, const PacketMeta& m, Cand kind,
                                                      const ServiceView* svc, Verdict& v);
  // Destination address, port and protocol in one word; never ~0 (bits
  // 24-31 are zero), the value the memo starts from.
  static uint64_t endpointKey(const PacketMeta& m) {
    return uint64_t{m.dstIp} << 32 | uint32_t{m.dstPort} << 8 | m.l4Proto;
  }
  // `cookieSyn`: the flow opens from a cookie ACK; the tracker starts from
  // the SYN the backend is sent.
  uint32_t createFlow(uint16_t j, rte_mbuf* mb, Verdict& v, const TcpSegment* cookieSyn = nullptr);
  void planNewFlows(const uint32_t* idx);
  // SYN proxy (see synproxy.h).
  bool cookieMode(const ServiceView& svc) const {
    return svc.synProxy == SynProxyMode::kOn || (svc.synProxy == SynProxyMode::kAuto && sp_.cookieMode);
  }
  // Whether a flowless ACK to `svc` may carry a cookie of ours: always for
  // "on"; for "auto" while cookies this worker sent can still be valid.
  bool acceptsCookies(const ServiceView& svc) const {
    if (svc.synProxy == SynProxyMode::kOn) return true;
    if (svc.synProxy != SynProxyMode::kAuto || !sp_.sentAny) return false;
    return now_ - sp_.lastCookieMs < 2 * d_.cookies->periodMs();
  }
  void answerSyn(rte_mbuf* mb, uint16_t j, Verdict& v);
  void openFromCookie(rte_mbuf* mb, uint16_t j, Verdict& v);
  bool synProxyHit(rte_mbuf* mb, uint16_t j, uint32_t fi, Direction dir, Verdict& v);
  bool resendBackendSyn(rte_mbuf* mb, uint16_t j, uint32_t fi, Verdict& v);
  // Room for a frame of `len` bytes in `mb`'s (single) segment.
  static bool fits(const rte_mbuf* mb, uint32_t len) {
    return len <= static_cast<uint32_t>(rte_pktmbuf_data_len(mb)) + rte_pktmbuf_tailroom(mb);
  }
  static void setLen(rte_mbuf* mb, uint16_t len) {
    mb->data_len = len;
    mb->pkt_len = len;
  }
  // Inlined into the burst loop (a call's saved registers cost as much as
  // the rewrite itself); what only some TCP segments need is forwardTcpRare.
  [[gnu::always_inline]] inline void forward(rte_mbuf* mb, const PacketMeta& m, uint32_t fi, Direction dir,
                                             const ServiceView* svc, Verdict& v);
  // Sequence translation (SYN proxy, PROXY header) and the MSS clamp of
  // SYNs. False when the packet was dropped (verdict set).
  [[gnu::noinline]] bool forwardTcpRare(rte_mbuf* mb, const PacketMeta& m, uint32_t fi, Direction dir,
                                        const ServiceView* svc, Verdict& v);
  void lowerSynAckMss(uint8_t* tcp, uint16_t hdrLen);
  void translateIcmp(rte_mbuf* mb, const PacketMeta& m, uint32_t fi, Direction dir, Verdict& v);
  bool flushedDrop(uint32_t fi, Verdict& v) {
    if (!isFlushed(ft_.at(fi).backendSlot)) return false;
    dropFlushed(fi, v);
    return true;
  }
  void dropFlushed(uint32_t fi, Verdict& v);
  bool earlyDrop(uint32_t victim);
  bool trackTcp(uint32_t fi, const TcpSegment& seg, Direction d, Verdict& v);
  // Records removed in this burst: a later candidate whose bulk result
  // names one of them is looked up again (the record may be free, or
  // reused by a flow inserted since).
  void noteRemoved(uint32_t fi) {
    if (nRemoved_ < kMaxRemoved)
      removed_[nRemoved_++] = fi;
    else
      removedMany_ = true;
  }
  bool wasRemoved(uint32_t fi) const {
    if (removedMany_) return true;
    for (uint16_t r = 0; r < nRemoved_; ++r)
      if (removed_[r] == fi) return true;
    return false;
  }
  void missToOwner(rte_mbuf* mb, uint16_t snatPort, Verdict& v);
  void missToNext(rte_mbuf* mb, Verdict& v);
  bool handoff(rte_mbuf* mb, uint16_t worker, Verdict& v);
  // The slots and the counter blocks are read once into locals: a store
  // to a counter could otherwise alias the record and this object, and
  // each bump would reload them (twice the instructions).
  void count(const Flow& f, uint32_t bytes) {
    const uint16_t ss = f.serviceSlot;
    const uint16_t bs = f.backendSlot;
    WorkerCounters& c = c_;
    if (ss < kMaxServiceSlots) {
      ServiceCounters& sc = c.services[ss];
      bump(sc.packets);
      bump(sc.bytes, bytes);
    }
    if (bs < kMaxBackendSlots) {
      BackendCounters& bc = c.backends[bs];
      bump(bc.packets);
      bump(bc.bytes, bytes);
    }
  }
  void drop(Verdict& v, DropReason r) {
    v = Verdict{Action::kDrop, r, 0};
    c_.drop(r);
  }
  bool isFlushed(uint16_t slot) const { return slot < kMaxBackendSlots && snap_.flushedBackends[slot]; }

  FlowTable& ft_;
  PortAllocator& pa_;
  WorkerCounters& c_;
  const NatCore::Deps& d_;
  NatCore::SynProxyState& sp_;
  NatCore::Generated& gen_;
  const Snapshot& snap_;
  const uint32_t now_;
  const bool fromHandoff_;

  Scratch<PacketMeta, kMaxBurst> metaStore_;
  PacketMeta* const meta_ = metaStore_.data();
  // Flow candidates, in arrival order.
  uint16_t nc_ = 0;
  Scratch<FlowKey, kMaxBurst> keyStore_;
  FlowKey* const keys_ = keyStore_.data();
  uint16_t pkt_[kMaxBurst];
  Cand kind_[kMaxBurst];
  const ServiceView* svc_[kMaxBurst];
  // The flow table's hash of each key (the bulk lookup's), for the insert
  // of a new flow.
  uint32_t hashes_[kMaxBurst];
  // What planNewFlows() chose ahead for a candidate that missed: written
  // for every candidate (`valid` false where nothing was planned) when
  // the plan was made at all (planned_).
  struct Plan {
    uint32_t maglevHash;
    uint32_t pool;       // the pool of the first SNAT address tried (kNoPool: none)
    uint32_t replyHash;  // hashOf() of the reply key with `port`, if havePort
    uint32_t snatStart;  // index of the first SNAT address tried
    uint16_t backend;    // index into the service's backends
    uint16_t port;       // host order: what the pool will likely hand out
    bool valid;
    bool havePort;
  };
  Scratch<Plan, kMaxBurst> planStore_;
  Plan* const plan_ = planStore_.data();
  bool planned_ = false;  // planNewFlows() ran: every plan_ entry is written
  // Set once the table changed inside this burst: after a removal the bulk
  // results may name freed records (see noteRemoved), after an insert a
  // miss may now hit (a retransmitted SYN in the same burst).
  static constexpr uint16_t kMaxRemoved = 2 * kMaxBurst;  // a flush or two early drops per candidate
  uint32_t removed_[kMaxRemoved];
  uint16_t nRemoved_ = 0;
  bool removedMany_ = false;
  // The keys this burst inserted, as a filter on their hashes (one bit
  // each, picked by the hash's top bits): a candidate that missed the bulk
  // lookup is looked up again only when its hash's bit is set, since only
  // then can a flow created since hold its key (a retransmitted SYN, a
  // reply to a flow created earlier in the burst). A set bit may be
  // another key's (a lookup spent for nothing); a clear bit is never a key
  // that was inserted. Cleared at the burst's first insert.
  static constexpr uint32_t kInsertedBits = 512;
  uint64_t insertedFilter_[kInsertedBits / 64];
  bool inserted_ = false;
  static uint32_t insertedBit(uint32_t h) { return h >> (32 - std::bit_width(kInsertedBits - 1)); }
  void noteInserted(uint32_t hashO, uint32_t hashR) {
    if (!inserted_) {
      std::fill(std::begin(insertedFilter_), std::end(insertedFilter_), uint64_t{0});
      inserted_ = true;
    }
    const uint32_t o = insertedBit(hashO), r = insertedBit(hashR);
    insertedFilter_[o / 64] |= uint64_t{1} << (o % 64);
    insertedFilter_[r / 64] |= uint64_t{1} << (r % 64);
  }
  bool mayHaveBeenInserted(uint32_t h) const {
    if (!inserted_) return false;
    const uint32_t b = insertedBit(h);
    return (insertedFilter_[b / 64] >> (b % 64)) & 1u;
  }
  // The last classification (classify): the roles of address memoIp_, and
  // the service (nullptr: a reply) of the TCP/UDP endpoint memoEndpoint_.
  uint64_t memoEndpoint_ = ~uint64_t{0};
  const ServiceView* memoSvc_ = nullptr;
  uint32_t memoIp_ = 0;
  uint8_t memoRoles_ = 0;
  bool memoIpValid_ = false;
};

void Burst::run(rte_mbuf** pkts, uint16_t n, Verdict* verdicts) {
  for (uint16_t i = 0; i < n && i < kPrefetchAhead; ++i) rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));
  for (uint16_t i = 0; i < n; ++i) {
    if (i + kPrefetchAhead < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + kPrefetchAhead], void*));
    classify(pkts[i], i, verdicts[i]);
  }
  if (nc_ == 0) return;

  const FlowKey* keyPtrs[kMaxBurst];
  for (uint16_t j = 0; j < nc_; ++j) keyPtrs[j] = &keys_[j];
  uint32_t idx[kMaxBurst];
  Direction dir[kMaxBurst];
  // One bulk lookup for the whole burst: it hashes every key, prefetches
  // every home bucket and then every candidate record before it confirms
  // any key, so the burst's misses overlap; and a hit has had its record
  // (one cache line, flow_table.h) read by that confirmation, so nothing
  // is left to prefetch for the loop below.
  const uint32_t misses = ft_.lookupBulk(keyPtrs, nc_, idx, dir, hashes_);

  // A burst of established flows only has nothing to plan.
  if (misses != 0) planNewFlows(idx);

  for (uint16_t j = 0; j < nc_; ++j) {
    uint32_t fi = idx[j];
    Direction d = dir[j];
    if (fi == kNoFlow ? mayHaveBeenInserted(hashes_[j]) : nRemoved_ != 0 && wasRemoved(fi))
      fi = ft_.lookup(keys_[j], d, hashes_[j]);
    const uint16_t i = pkt_[j];
    Verdict& v = verdicts[i];
    const PacketMeta& m = meta_[i];
    rte_mbuf* mb = pkts[i];

    switch (kind_[j]) {
      case Cand::kOriginal:
      case Cand::kReply:
        if (fi == kNoFlow) {
          if (kind_[j] == Cand::kReply) {
            missToOwner(mb, m.dstPort, v);
            continue;
          }
          if (m.l4Proto == IPPROTO_TCP && d_.cookies != nullptr) {
            const ServiceView& svc = *svc_[j];
            const uint8_t fl = m.tcpFlags & (kTcpSyn | kTcpAck | kTcpRst | kTcpFin);
            if (fl == kTcpSyn && cookieMode(svc)) {
              answerSyn(mb, j, v);
              continue;
            }
            if ((fl & (kTcpSyn | kTcpAck | kTcpRst)) == kTcpAck && acceptsCookies(svc)) {
              openFromCookie(mb, j, v);
              continue;
            }
          }
          fi = createFlow(j, mb, v);
          if (fi == kNoFlow) continue;
          d = Direction::kOriginal;
        } else {
          if (flushedDrop(fi, v)) continue;
          Flow& f = ft_.at(fi);
          if (m.l4Proto == IPPROTO_TCP) {
            if ((f.flags & kFlowSynProxy) && synProxyHit(mb, j, fi, d, v)) continue;
            const uint8_t* l4 = rte_pktmbuf_mtod(mb, const uint8_t*) + m.l4Off;
            if (f.state == FlowState::kEstablished && !(m.tcpFlags & (kTcpSyn | kTcpFin | kTcpRst))) {
              // The common case: no state change, only the sender's
              // sequence window moves (inline, no call). A cookie flow's
              // tracker follows the backend's connection, whose window
              // fields from the client may be scaled differently.
              uint16_t win = rw::load16be(l4 + 14);
              if ((f.flags & kFlowSynProxyReady) && d == Direction::kOriginal)
                win = synProxyWindowToBackend(ft_.xlate(fi), win);
              tcpAdvance(f.seq, d, rw::load32be(l4 + 4) + static_cast<uint32_t>(m.l4Len - m.tcpHdrLen), win);
              // touch(), on the record in hand (the table's array base
              // would be reloaded after the tracker's stores).
              f.lastSeenMs = now_;
            } else {
              TcpSegment seg = tcpSegmentOf(l4, m);
              if (f.flags & kFlowSynProxyReady) synProxyTrackerView(seg, ft_.xlate(fi), d);
              if (!trackTcp(fi, seg, d, v)) continue;
            }
          } else if (f.state == FlowState::kUdpUnreplied) {
            // Conntrack's UDP stream rule: a flow is assured (`udp`, the
            // long timeout, never early-dropped) once the backend has
            // answered and traffic still flows kUdpStreamMs after the
            // first datagram. A reply alone is not enough: a backend
            // answers spoofed datagrams too, and one-shot exchanges (DNS)
            // have no reason to hold a port for long.
            if (d == Direction::kReply) f.flags |= kFlowUdpReplied;
            if ((f.flags & kFlowUdpReplied) && now_ - f.udpCreatedMs >= kUdpStreamMs)
              ft_.setState(fi, FlowState::kUdp, now_);
            else
              ft_.touch(fi, now_);
          } else {
            f.lastSeenMs = now_;  // touch()
          }
        }
        // The table's direction wins over the classification: where a SNAT
        // port equals a service port of the same address, a reply is
        // classified as original but its key hits the flow as a reply.
        forward(mb, m, fi, d, d == Direction::kOriginal ? svc_[j] : nullptr, v);
        break;

      case Cand::kIcmpToClient:
      case Cand::kIcmpToBackend:
        // On a hit the key's direction decides the translation (the two
        // classifications build the same key); the kind only says what a
        // miss means.
        if (fi == kNoFlow) {
          if (kind_[j] == Cand::kIcmpToClient)
            missToOwner(mb, m.innerSrcPort, v);
          else
            missToNext(mb, v);
          continue;
        }
        if (flushedDrop(fi, v)) continue;
        translateIcmp(mb, m, fi, d, v);
        break;
    }
  }
}

void Burst::classify(rte_mbuf* mb, uint16_t i, Verdict& v) {
  // Mbufs are sized for the largest configured MTU (port.h), so a chain
  // only comes from a PMD that scatters anyway or a frame above the MTU:
  // counted as its own reason, not as a malformed packet.
  if (mb->nb_segs > 1) {
    drop(v, DropReason::kMultiSegment);
    return;
  }
  uint8_t* data = rte_pktmbuf_mtod(mb, uint8_t*);
  PacketMeta& m = meta_[i];  // parsePacket writes all of it
  const DropReason r = parsePacket(data, data + rte_pktmbuf_data_len(mb), m);
  if (r != DropReason::kNone) {
    drop(v, r);
    return;
  }
  if (m.l3 == L3Kind::kArp) {
    v = Verdict{Action::kToControl, DropReason::kNone, 0};
    bump(c_.toControl);
    return;
  }
  if (m.l3 != L3Kind::kIpv4) {
    drop(v, DropReason::kUnsupportedL2);
    return;
  }
  // A burst's frames mostly go to one VIP:port (or one SNAT address):
  // the endpoint classified last is remembered, and a frame to the same
  // address, port and protocol skips the snapshot's lookups (the snapshot
  // does not change within a burst).
  const uint64_t endpoint = endpointKey(m);
  if (endpoint == memoEndpoint_) {
    addFlowCandidate(i, m, memoSvc_ != nullptr ? Cand::kOriginal : Cand::kReply, memoSvc_, v);
    return;
  }
  const uint8_t roles = m.dstIp == memoIp_ && memoIpValid_ ? memoRoles_ : snap_.addrRoles(m.dstIp);
  memoIp_ = m.dstIp;
  memoRoles_ = roles;
  memoIpValid_ = true;
  if (roles == 0) {
    drop(v, DropReason::kNotLocal);
    return;
  }

  if (m.l4Proto == IPPROTO_ICMP) {
    if (m.icmpType == kIcmpEchoRequest) {
      icmpEchoReply(data, m);
      v = Verdict{Action::kLocal, DropReason::kNone, 0};
      bump(c_.icmpEchoReplies);
      return;
    }
    // An error is only ours when it quotes a TCP/UDP packet that we sent
    // from the address the error was sent to.
    if (!m.icmpError || (m.innerProto != IPPROTO_TCP && m.innerProto != IPPROTO_UDP) ||
        m.innerSrcIp != m.dstIp) {
      drop(v, DropReason::kIcmpUnhandled);
      return;
    }
    const ServiceView* svc =
        (roles & kRoleVip) ? snap_.findService(m.innerSrcIp, m.innerSrcPort, m.innerProto) : nullptr;
    Cand kind;
    if (svc != nullptr) {
      kind = Cand::kIcmpToBackend;
    } else if (roles & kRoleSnat) {
      kind = Cand::kIcmpToClient;
    } else {
      drop(v, DropReason::kIcmpUnhandled);
      return;
    }
    if (m.ttl <= 1) {
      drop(v, DropReason::kTtlExceeded);
      return;
    }
    addCandidate(i, kind, svc) = icmpQuotedKey(m);
    return;
  }

  // The instance health endpoint answers from here, statelessly.
  if (m.dstPort == snap_.instanceHealth.port && m.dstIp == snap_.instanceHealth.ip && m.l4Proto == IPPROTO_TCP &&
      snap_.instanceHealth.ip != 0) {
    if (healthEndpointReply(mb, m, snap_.instanceHealth) == HealthReply::kSent) {
      v = Verdict{Action::kLocal, DropReason::kNone, 0};
    } else {
      drop(v, DropReason::kHealthEndpointNoReply);
    }
    return;
  }

  // TCP or UDP (the parser refuses every other protocol).
  const ServiceView* svc = (roles & kRoleVip) ? snap_.findService(m.dstIp, m.dstPort, m.l4Proto) : nullptr;
  Cand kind;
  if (svc != nullptr) {
    kind = Cand::kOriginal;
  } else if (roles & kRoleSnat) {
    kind = Cand::kReply;
  } else {
    drop(v, DropReason::kNoService);
    return;
  }
  // Only endpoints that take flow candidates are remembered, so a hit
  // above means the same classification (and no health endpoint).
  memoEndpoint_ = endpoint;
  memoSvc_ = svc;
  addFlowCandidate(i, m, kind, svc, v);
}

void Burst::addFlowCandidate(uint16_t i, const PacketMeta& m, Cand kind, const ServiceView* svc, Verdict& v) {
  if (m.ttl <= 1) {
    drop(v, DropReason::kTtlExceeded);
    return;
  }
  // Written in place: building a temporary and copying it reloads it
  // wider than it was stored, which stalls store forwarding. The two
  // addresses and the two ports are adjacent in both structs: one 8-byte
  // and one 4-byte copy, and the protocol with its three zero bytes of
  // padding as one 4-byte store (field by field took 13 instructions).
  static_assert(offsetof(PacketMeta, dstIp) == offsetof(PacketMeta, srcIp) + 4 &&
                offsetof(PacketMeta, dstPort) == offsetof(PacketMeta, srcPort) + 2 &&
                offsetof(FlowKey, dstIp) == offsetof(FlowKey, srcIp) + 4 &&
                offsetof(FlowKey, srcPort) == offsetof(FlowKey, srcIp) + 8 &&
                offsetof(FlowKey, dstPort) == offsetof(FlowKey, srcPort) + 2 &&
                offsetof(FlowKey, proto) == 12 && offsetof(FlowKey, pad) == 13 && sizeof(FlowKey) == 16);
  FlowKey& k = addCandidate(i, kind, svc);
  uint64_t addrs;
  uint32_t ports;
  std::memcpy(&addrs, &m.srcIp, sizeof addrs);
  std::memcpy(&ports, &m.srcPort, sizeof ports);
  // The protocol in the word's first byte, the rest zero.
  const uint32_t tail = std::endian::native == std::endian::little ? uint32_t{m.l4Proto} : uint32_t{m.l4Proto} << 24;
  auto* kb = reinterpret_cast<unsigned char*>(&k);
  std::memcpy(kb + offsetof(FlowKey, srcIp), &addrs, sizeof addrs);
  std::memcpy(kb + offsetof(FlowKey, srcPort), &ports, sizeof ports);
  std::memcpy(kb + offsetof(FlowKey, proto), &tail, sizeof tail);
}

FlowKey& Burst::addCandidate(uint16_t i, Cand kind, const ServiceView* svc) {
  pkt_[nc_] = i;
  kind_[nc_] = kind;
  svc_[nc_] = svc;
  return keys_[nc_++];
}

void Burst::dropFlushed(uint32_t fi, Verdict& v) {
  closeAccounting(pa_, c_, ft_.at(fi));
  bump(c_.flowsFlushed);
  ft_.remove(fi);
  noteRemoved(fi);
  drop(v, DropReason::kFlowFlushed);
}

// The tracker's step for a TCP segment of flow `fi` that may change its
// state (anything but an established flow's plain segment). False when the
// segment is dropped (an out-of-window RST: the flow is left as it was).
// For a cookie flow `seg` is the segment as the backend's connection sees
// it (synProxyTrackerView): the tracker follows that connection.
bool Burst::trackTcp(uint32_t fi, const TcpSegment& seg, Direction d, Verdict& v) {
  Flow& f = ft_.at(fi);
  FlowState next = f.state;
  uint8_t flags = f.flags;
  bool newConnection = false;
  switch (tcpTrack(next, flags, f.seq, seg, d)) {
    case TcpCheck::kRstOutOfWindow:
      drop(v, DropReason::kRstOutOfWindow);
      return false;
    case TcpCheck::kSynIgnored:
      bump(c_.tcpSynIgnored);
      break;
    case TcpCheck::kResynced:
      bump(c_.tcpResynced);
      newConnection = true;
      break;
    case TcpCheck::kOk:
      break;
  }
  // The tracker rewrites its own bits wholesale; the SYN proxy's stay,
  // unless the ends start a new connection on the tuple (a SYN after
  // TIME_WAIT or CLOSED, or a resync the backend confirmed): that one is
  // theirs end to end, with nothing to translate.
  if (next == FlowState::kSynSent && f.state != FlowState::kSynSent) newConnection = true;
  constexpr uint8_t kProxyBits = kFlowSynProxy | kFlowSynProxyReady;
  f.flags = static_cast<uint8_t>((flags & ~kProxyBits) | (newConnection ? 0 : (f.flags & kProxyBits)));
  // A new connection gets its own PROXY header, right after its SYN.
  if (newConnection && (f.ppFlags & kPpOn)) {
    f.ppFlags = kPpOn;
    f.ppStart = f.seq.end[static_cast<std::size_t>(Direction::kOriginal)];
  }
  if (next != f.state)
    ft_.setState(fi, next, now_);
  else
    ft_.touch(fi, now_);
  return true;
}

// Early drop: recycles `victim`, an unassured flow the table chose, to make
// room for a new one. False when there was no victim.
bool Burst::earlyDrop(uint32_t victim) {
  if (victim == kNoFlow) return false;
  const Flow& f = ft_.at(victim);
  bump(c_.earlyDrops[static_cast<std::size_t>(f.state)]);
  closeAccounting(pa_, c_, f);
  ft_.remove(victim);
  noteRemoved(victim);
  return true;
}

void Burst::missToOwner(rte_mbuf* mb, uint16_t snatPort, Verdict& v) {
  if (d_.ownerMode == OwnerMode::kPortModulo && d_.numWorkers > 1) {
    const uint16_t owner = static_cast<uint16_t>(rte_be_to_cpu_16(snatPort) % d_.numWorkers);
    if (owner != d_.workerId && handoff(mb, owner, v)) return;
  }
  drop(v, DropReason::kNoFlow);
}

// A client-side ICMP error (to a VIP, quoting vip -> client) that missed:
// the NIC hashed it without regard to the flow's owner and the quote holds
// no SNAT port to compute the owner from, so it goes round the workers,
// each trying its own table, until one hits or all N have missed.
void Burst::missToNext(rte_mbuf* mb, Verdict& v) {
  if (d_.ownerMode != OwnerMode::kSingle && d_.numWorkers > 1 &&
      handoff(mb, static_cast<uint16_t>((d_.workerId + 1) % d_.numWorkers), v))
    return;
  drop(v, DropReason::kNoFlow);
}

// Every handoff carries the count of hops the frame has made, and none
// makes more than N-1: even a frame whose classification changes between
// workers (a snapshot swap) ends as a miss instead of circling. Returns
// false when the frame has used its hops up (the caller drops it).
bool Burst::handoff(rte_mbuf* mb, uint16_t worker, Verdict& v) {
  const uint32_t hops = fromHandoff_ ? mb->hash.usr : 0;
  if (hops + 1 >= d_.numWorkers) return false;
  mb->hash.usr = hops + 1;
  v = Verdict{Action::kHandoff, DropReason::kNone, worker};
  bump(c_.handoffOut);
  return true;
}

// The new flows of a burst, before any is created: each client packet that
// missed and will open a flow gets its backend (Maglev), the pool of the
// first SNAT address createFlow() will try, the port that pool will most
// likely hand it (PortAllocator::peek, counting the burst's earlier flows
// of the same pool) and the hash of the reply key that port makes, whose
// bucket is then prefetched. The reply key is only known once a port is
// taken, so without this its bucket is a cache miss each insert waits for
// in turn; with it, the burst's misses overlap. createFlow() uses the
// backend and pool as they are (the snapshot does not change within a
// burst), and the hash only if it got exactly the planned pool and port
// (a drop, an early drop or a release in between shifts the ports): a
// wrong guess costs a useless prefetch, never a wrong key.
void Burst::planNewFlows(const uint32_t* idx) {
  planned_ = true;
  // How many of the burst's flows were planned on a pool so far: a
  // direct-mapped table by pool id, set up at the first plan (two pools on
  // one entry only make a guess wrong).
  constexpr uint32_t kAheadSlots = 64;
  uint32_t aheadPool[kAheadSlots];
  uint32_t aheadCount[kAheadSlots];
  bool aheadReady = false;
  // The reply keys of the planned ports, hashed after the loop.
  Scratch<FlowKey, kMaxBurst> replyKeyStore;
  FlowKey* const replyKeys = replyKeyStore.data();
  const FlowKey* replyKeyPtrs[kMaxBurst];
  uint16_t replyOf[kMaxBurst];  // candidate of each reply key
  uint16_t nr = 0;
  for (uint16_t j = 0; j < nc_; ++j) {
    Plan& p = plan_[j];
    p.valid = false;
    if (idx[j] != kNoFlow || kind_[j] != Cand::kOriginal) continue;
    const FlowKey& key = keys_[j];
    const PacketMeta& m = meta_[pkt_[j]];
    const ServiceView& svc = *svc_[j];
    if (key.proto == IPPROTO_TCP &&
        ((m.tcpFlags & (kTcpSyn | kTcpAck | kTcpRst | kTcpFin)) != kTcpSyn || (d_.cookies != nullptr && cookieMode(svc))))
      continue;
    if (svc.maglev.empty()) continue;
    const uint32_t h = maglevFlowHash(key);
    const uint16_t bi = svc.maglev[h % svc.maglev.size()];
    if (bi >= svc.backends.size()) continue;
    p.valid = true;
    p.havePort = false;
    p.maglevHash = h;
    p.backend = bi;
    p.pool = kNoPool;
    p.snatStart = 0;
    const std::size_t ns = svc.snatIps.size();
    if (ns == 0) continue;
    const BackendView& be = svc.backends[bi];
    p.snatStart = static_cast<uint32_t>(snatSpread(h) % ns);
    const uint32_t ip = svc.snatIps[p.snatStart];
    p.pool = snap_.findSnatPool(ip, be.ip, be.port, key.proto);
    if (p.pool == kNoPool) continue;
    if (!aheadReady) {
      std::fill(std::begin(aheadPool), std::end(aheadPool), kNoPool);
      aheadReady = true;
    }
    const uint32_t e = p.pool & (kAheadSlots - 1);
    if (aheadPool[e] != p.pool) {
      aheadPool[e] = p.pool;
      aheadCount[e] = 0;
    }
    if (!pa_.peek(p.pool, aheadCount[e]++, p.port)) continue;
    FlowKey& kr = replyKeys[nr];
    kr.srcIp = be.ip;
    kr.dstIp = ip;
    kr.srcPort = be.port;
    kr.dstPort = rte_cpu_to_be_16(p.port);
    kr.proto = key.proto;
    kr.pad[0] = kr.pad[1] = kr.pad[2] = 0;
    replyKeyPtrs[nr] = &kr;
    replyOf[nr++] = j;
    p.havePort = true;
  }
  // The reply keys hashed together, four per vector instruction where the
  // CPU can (as the bulk lookup hashes the burst's keys), then their
  // buckets fetched.
  if (nr == 0) return;
  uint32_t replyHashes[kMaxBurst];
  ft_.hashMany(replyKeyPtrs, nr, replyHashes);
  for (uint16_t r = 0; r < nr; ++r) {
    plan_[replyOf[r]].replyHash = replyHashes[r];
    ft_.prefetchHash(replyHashes[r]);
  }
}

// `cookieSyn` non-null: the packet is a client's ACK whose cookie checked
// out rather than a SYN, and the tracker starts from *cookieSyn.
uint32_t Burst::createFlow(uint16_t j, rte_mbuf* mb, Verdict& v, const TcpSegment* cookieSyn) {
  const FlowKey& key = keys_[j];
  const PacketMeta& m = meta_[pkt_[j]];
  const ServiceView& svc = *svc_[j];
  const bool tcp = key.proto == IPPROTO_TCP;
  if (tcp && cookieSyn == nullptr && (m.tcpFlags & (kTcpSyn | kTcpAck | kTcpRst | kTcpFin)) != kTcpSyn) {
    drop(v, DropReason::kNoFlow);
    return kNoFlow;
  }
  if (svc.maglev.empty()) {
    drop(v, DropReason::kNoBackend);
    return kNoFlow;
  }
  // Without a plan (none was made: every bulk lookup hit, and this miss
  // comes from a flow removed since) everything is worked out here.
  static constexpr Plan kNoPlan{};
  const Plan& plan = planned_ ? plan_[j] : kNoPlan;
  const uint32_t h = plan.valid ? plan.maglevHash : maglevFlowHash(key);
  const uint16_t bi = plan.valid ? plan.backend : svc.maglev[h % svc.maglev.size()];
  if (bi >= svc.backends.size()) {
    drop(v, DropReason::kNoBackend);
    return kNoFlow;
  }
  const BackendView& be = svc.backends[bi];
  // Refuse before taking a port that would only be given back, unless an
  // unassured flow can make room.
  if (ft_.size() >= ft_.capacity() && !earlyDrop(ft_.earlyDropVictim())) {
    drop(v, DropReason::kFlowTableFull);
    return kNoFlow;
  }

  // SNAT address by flow hash; on an exhausted pool try the next address.
  const std::size_t ns = svc.snatIps.size();
  const std::size_t start = plan.valid ? plan.snatStart : ns ? snatSpread(h) % ns : 0;
  bool sawExhausted = false;
  uint32_t pool = kNoPool;
  uint16_t port = 0;
  uint32_t snatIp = 0;
  // The pools were prepared with the snapshot (SnatPools): a tuple without
  // one (more in use than snat_pools_per_worker) cannot take new flows.
  for (std::size_t t = 0; t < ns; ++t) {
    const uint32_t ip = svc.snatIps[(start + t) % ns];
    const uint32_t p = t == 0 && plan.valid ? plan.pool : snap_.findSnatPool(ip, be.ip, be.port, key.proto);
    if (p == kNoPool) continue;
    if (pa_.allocate(p, port)) {
      pool = p;
      snatIp = ip;
      break;
    }
    sawExhausted = true;
  }
  // Every pool of the service is exhausted: recycle the unassured flow
  // that has held a port of one of them longest, trying the pools in the
  // same order.
  for (std::size_t t = 0; pool == kNoPool && sawExhausted && t < ns; ++t) {
    const uint32_t ip = svc.snatIps[(start + t) % ns];
    const uint32_t p = snap_.findSnatPool(ip, be.ip, be.port, key.proto);
    if (p != kNoPool && earlyDrop(ft_.earlyDropVictim(p)) && pa_.allocate(p, port)) {
      pool = p;
      snatIp = ip;
    }
  }
  if (pool == kNoPool) {
    drop(v, sawExhausted ? DropReason::kSnatPortsExhausted : DropReason::kSnatPoolsExhausted);
    return kNoFlow;
  }

  Flow f{};
  f.clientIp = key.srcIp;
  f.vip = key.dstIp;
  f.clientPort = key.srcPort;
  f.vipPort = key.dstPort;
  f.backendIp = be.ip;
  f.backendPort = be.port;
  f.snatIp = snatIp;
  f.snatPort = rte_cpu_to_be_16(port);
  f.pool = pool;
  f.serviceSlot = svc.slot;
  f.backendSlot = be.slot;
  f.proto = key.proto;
  f.state = tcp ? FlowState::kSynSent : FlowState::kUdpUnreplied;
  f.flags = 0;
  if (tcp)
    tcpTrackStart(f.seq, f.flags,
                  cookieSyn != nullptr ? *cookieSyn
                                       : tcpSegmentOf(rte_pktmbuf_mtod(mb, const uint8_t*) + m.l4Off, m));
  else
    f.udpCreatedMs = now_;
  if (tcp && svc.proxyProtocol) {
    // The header starts where the client's first byte would: right after
    // its SYN (the real one, or the one a cookie ACK stands for).
    f.ppFlags = kPpOn;
    f.ppStart = f.seq.end[static_cast<std::size_t>(Direction::kOriginal)];
  }
  uint32_t hashR = plan.valid && plan.havePort && pool == plan.pool && port == plan.port
                       ? plan.replyHash
                       : ft_.hashOf(replyKey(f));
  uint32_t fi = ft_.insert(f, now_, hashes_[j], hashR);
  // The table had room (checked above), so a refused insert means a key
  // is taken: the reply key is another flow's original key when the port
  // is a service's listen port on the SNAT address, in a pool made before
  // that service was added (docs/nat.md, "Caveats"). One more port of the
  // same pool is tried before the clashing one goes back, so the retry
  // cannot get it again.
  if (fi == kNoFlow && ft_.size() < ft_.capacity()) {
    uint16_t next = 0;
    if (pa_.allocate(pool, next)) {
      f.snatPort = rte_cpu_to_be_16(next);
      hashR = ft_.hashOf(replyKey(f));
      fi = ft_.insert(f, now_, hashes_[j], hashR);
      if (fi == kNoFlow) {
        pa_.release(pool, next);
      } else {
        pa_.release(pool, port);
        port = next;
      }
    }
  }
  if (fi == kNoFlow) {
    pa_.release(pool, port);
    drop(v, ft_.size() < ft_.capacity() ? DropReason::kFlowKeyClash : DropReason::kFlowTableFull);
    return kNoFlow;
  }
  noteInserted(hashes_[j], hashR);
  bump(c_.flowsCreated);
  if (svc.slot < kMaxServiceSlots) bump(c_.services[svc.slot].flowsCreated);
  if (be.slot < kMaxBackendSlots) bump(c_.backends[be.slot].flowsCreated);
  return fi;
}

void Burst::forward(rte_mbuf* mb, const PacketMeta& m, uint32_t fi, Direction dir, const ServiceView* svc,
                    Verdict& v) {
  Flow& f = ft_.at(fi);
  uint8_t* data = rte_pktmbuf_mtod(mb, uint8_t*);
  uint8_t* l3 = data + m.l3Off;
  uint8_t* l4 = data + m.l4Off;
  const bool tcp = m.l4Proto == IPPROTO_TCP;
  if (dir == Direction::kOriginal)
    rw::rewriteV4(l3, l4, tcp, f.snatIp, f.backendIp, f.snatPort, f.backendPort);
  else
    rw::rewriteV4(l3, l4, tcp, f.vip, f.clientIp, f.vipPort, f.clientPort);
  // A client's SYN to a service without an MSS clamp (every new flow's
  // first packet, usually) needs nothing from the rare path.
  const bool synRare =
      (m.tcpFlags & kTcpSyn) && (dir != Direction::kOriginal || svc == nullptr || svc->mssClamp != 0);
  if (tcp && ((f.flags & kFlowSynProxyReady) || (f.ppFlags & kPpOn) || synRare) &&
      !forwardTcpRare(mb, m, fi, dir, svc, v))
    return;
  count(f, rte_pktmbuf_pkt_len(mb));
  v = Verdict{Action::kForward, DropReason::kNone, 0};
}

bool Burst::forwardTcpRare(rte_mbuf* mb, const PacketMeta& m, uint32_t fi, Direction dir, const ServiceView* svc,
                           Verdict& v) {
  Flow& f = ft_.at(fi);
  uint8_t* l4 = rte_pktmbuf_mtod(mb, uint8_t*) + m.l4Off;
  // Flows opened from a SYN cookie (the two handshakes' numbers differ)
  // and flows with a PROXY header translate sequence numbers.
  if (((f.flags & kFlowSynProxyReady) || (f.ppFlags & kPpOn)) &&
      translateSegment(l4, m.tcpHdrLen, f, ft_.xlate(fi), dir)) {
    if (!insertProxyV2(mb, m.l3Off, m.l4Off, m.tcpHdrLen, f)) {
      drop(v, DropReason::kProxyHeaderNoRoom);
      return false;
    }
    bump(c_.proxyHeaders);
    l4 = rte_pktmbuf_mtod(mb, uint8_t*) + m.l4Off;
  }
  // MSS clamp on the client's SYN and the backend's SYN-ACK.
  if (m.tcpFlags & kTcpSyn) {
    const bool ack = (m.tcpFlags & kTcpAck) != 0;
    if ((dir == Direction::kOriginal) != ack) {
      if (svc == nullptr) svc = snap_.findService(f.vip, f.vipPort, f.proto);
      if (svc != nullptr && svc->mssClamp != 0 && clampMss(l4, m.tcpHdrLen, svc->mssClamp)) bump(c_.mssClamped);
    }
    if (ack && dir == Direction::kReply && (f.ppFlags & kPpOn)) lowerSynAckMss(l4, m.tcpHdrLen);
  }
  return true;
}

// The client's first segment carries the PROXY header as well as up to one
// MSS of data: the MSS the backend's SYN-ACK tells the client is lowered by
// the header's length. (A SYN-ACK without the option means 536, which the
// frame cannot grow to say otherwise; such backends are not seen in
// practice.)
void Burst::lowerSynAckMss(uint8_t* tcp, uint16_t hdrLen) {
  SynOptions o;
  o.mss = 0;
  parseSynOptions(tcp, hdrLen, o);
  if (o.mss > kProxyV2Len + 64) clampMss(tcp, hdrLen, static_cast<uint16_t>(o.mss - kProxyV2Len));
}

// A SYN for a service in cookie mode: answered in place with a cookie
// SYN-ACK; nothing is stored.
void Burst::answerSyn(rte_mbuf* mb, uint16_t j, Verdict& v) {
  const PacketMeta& m = meta_[pkt_[j]];
  const ServiceView& svc = *svc_[j];
  if (!fits(mb, m.l3Off + kSynProxyMaxL3Len)) {
    drop(v, DropReason::kMalformed);
    return;
  }
  uint8_t* frame = rte_pktmbuf_mtod(mb, uint8_t*);
  if (!tcpChecksumOk(frame, m)) {
    drop(v, DropReason::kBadChecksum);
    return;
  }
  const uint8_t* tcp = frame + m.l4Off;
  SynOptions o;
  parseSynOptions(tcp, m.tcpHdrLen, o);
  uint16_t mss = o.mss;
  if (svc.mssClamp != 0 && mss > svc.mssClamp) mss = svc.mssClamp;
  // Room for the PROXY header in the client's first segment (see
  // lowerSynAckMss); the backend's SYN carries the same, lower, MSS.
  if (svc.proxyProtocol && mss > kProxyV2Len + 536) mss = static_cast<uint16_t>(mss - kProxyV2Len);
  const CookieTuple t{m.srcIp, m.dstIp, m.srcPort, m.dstPort};
  const uint32_t cookie = d_.cookies->make(t, tcpSeq(tcp), mss, now_);
  const uint16_t len =
      writeCookieSynAck(frame, m, cookie, o, kCookieMss[cookieMssIndex(mss)], cookieTsVal(now_, o));
  setLen(mb, len);
  sp_.sentAny = true;
  sp_.lastCookieMs = now_;
  bump(c_.synCookiesSent);
  v = Verdict{Action::kLocal, DropReason::kNone, 0};
}

// A flowless ACK that may carry one of our cookies: when it does, the flow
// is created (SNAT port and all) and the ACK becomes the SYN to the backend.
void Burst::openFromCookie(rte_mbuf* mb, uint16_t j, Verdict& v) {
  const PacketMeta& m = meta_[pkt_[j]];
  uint8_t* frame = rte_pktmbuf_mtod(mb, uint8_t*);
  const uint8_t* tcp = frame + m.l4Off;
  if (!tcpChecksumOk(frame, m)) {
    drop(v, DropReason::kBadChecksum);
    return;
  }
  uint32_t clientIsn = tcpSeq(tcp) - 1;
  const uint32_t cookie = tcpAck(tcp) - 1;
  const CookieTuple t{m.srcIp, m.dstIp, m.srcPort, m.dstPort};
  SynOptions o;
  CookieCheck r = d_.cookies->check(t, clientIsn, cookie, now_, o.mss);
  // A client whose cookie ACK was lost believes it is connected and probes
  // our zero window with its ISN itself (one below its next sequence
  // number): the same cookie, opened the same way. Without this the
  // connection hangs until the client gives up.
  if (r == CookieCheck::kInvalid && m.l4Len == m.tcpHdrLen &&
      d_.cookies->check(t, clientIsn + 1, cookie, now_, o.mss) == CookieCheck::kValid) {
    ++clientIsn;
    r = CookieCheck::kValid;
  }
  if (r != CookieCheck::kValid) {
    drop(v, r == CookieCheck::kStale ? DropReason::kSynCookieStale : DropReason::kSynCookieInvalid);
    return;
  }
  const uint16_t tsOff = findTimestamp(tcp, m.tcpHdrLen);
  uint32_t ourTsVal = 0;
  if (tsOff != 0) {
    // TSecr echoes our SYN-ACK's TSval, which carries the client's options.
    readTimestamp(tcp, tsOff, o.tsVal, ourTsVal);
    if (!cookieTsDecode(ourTsVal, o.wscale, o.sackOk)) {
      drop(v, DropReason::kSynCookieInvalid);
      return;
    }
    o.hasTs = true;
  }
  if (!fits(mb, m.l3Off + kSynProxyMaxL3Len)) {
    drop(v, DropReason::kMalformed);
    return;
  }
  const uint16_t clientWin = tcpWindow(tcp);
  const bool data = m.l4Len > m.tcpHdrLen;
  // The tracker starts from the SYN the backend gets: the client's ISN,
  // window scale and (unscaled) window, as recovered from the cookie.
  TcpSegment syn;
  syn.seq = clientIsn;
  syn.window = rescaleWindow(clientWin, o.wscale == kNoWscale ? 0 : o.wscale, 0);
  syn.flags = kTcpSyn;
  syn.wscale = o.wscale;
  const uint32_t fi = createFlow(j, mb, v, &syn);
  if (fi == kNoFlow) return;
  Flow& f = ft_.at(fi);
  f.flags |= kFlowSynProxy;
  FlowXlate& x = ft_.xlate(fi);
  x.spSeqDelta = cookie;
  x.spTsDelta = ourTsVal;
  x.spClientWin = clientWin;
  x.spWscale = static_cast<uint8_t>(0xf0 | (o.wscale & 0x0f));
  bump(c_.synCookiesValid);
  if (data) bump(c_.synProxyAckData);
  const uint16_t len = writeBackendSyn(frame, m, f, clientIsn, clientWin, o);
  setLen(mb, len);
  count(f, len);
  v = Verdict{Action::kForward, DropReason::kNone, 0};
}

// A packet of a flow opened from a cookie, before the generic path. Returns
// true when it was handled here (verdict set): the backend's SYN-ACK of the
// cookie handshake, and anything from the client while the backend has not
// answered yet. The tracker follows the backend's connection: the SYN it
// was sent (createFlow), its SYN-ACK and the ACK we answer it with.
bool Burst::synProxyHit(rte_mbuf* mb, uint16_t j, uint32_t fi, Direction dir, Verdict& v) {
  const PacketMeta& m = meta_[pkt_[j]];
  Flow& f = ft_.at(fi);
  FlowXlate& x = ft_.xlate(fi);
  uint8_t* frame = rte_pktmbuf_mtod(mb, uint8_t*);
  uint8_t* tcp = frame + m.l4Off;
  const bool ready = (f.flags & kFlowSynProxyReady) != 0;
  const uint8_t fl = m.tcpFlags & (kTcpSyn | kTcpAck | kTcpRst | kTcpFin);

  if (dir == Direction::kOriginal) {
    if (ready) return false;
    // The backend has not answered: the client has no window to send into
    // (our SYN-ACK offered none), and its ACK numbers cannot be translated
    // yet. A probe of our zero window (Linux: no data, its ISN as the sequence
    // number; BSD: one byte at ISN + 1) after a quiet spell means the
    // client is waiting: our SYN to the backend or its SYN-ACK was lost,
    // and nobody else sends the SYN again, so it is resent. The cookie ACK
    // itself again is only a replay.
    const bool acked = fl == kTcpAck && tcpAck(tcp) == x.spSeqDelta + 1;
    const bool replay = acked && m.l4Len == m.tcpHdrLen;
    const bool probe = acked && !(replay && tcpSeq(tcp) == f.seq.end[static_cast<std::size_t>(Direction::kOriginal)]);
    const bool quiet = static_cast<int32_t>(now_ - f.lastSeenMs) >= static_cast<int32_t>(kSynProxyResendMs);
    ft_.touch(fi, now_);
    if (probe && quiet && resendBackendSyn(mb, j, fi, v)) return true;
    drop(v, replay ? DropReason::kSynCookieReplayed : DropReason::kSynProxyPending);
    return true;
  }

  if (fl == (kTcpSyn | kTcpAck)) {
    // A SYN-ACK for a SYN the client sent on the synchronized flow (the
    // tracker let it through): a new connection of the ends' own, which
    // the generic path takes (tracking restarts, translation stops).
    if (ready && (f.flags & kFlowSynInSync) && tcpAck(tcp) == f.seq.synEnd) return false;
    if (!fits(mb, m.l3Off + kSynProxyMaxL3Len + ((f.ppFlags & kPpOn) ? kProxyV2Len : 0))) {
      drop(v, DropReason::kMalformed);
      return true;
    }
    if (!tcpChecksumOk(frame, m)) {
      drop(v, DropReason::kBadChecksum);
      return true;
    }
    const BackendSynAck sa = readBackendSynAck(tcp, m.tcpHdrLen);
    if (!ready) {
      FlowState next = f.state;
      uint8_t flags = f.flags;
      tcpTrack(next, flags, f.seq, tcpSegmentOf(tcp, m), dir);
      if (!(flags & kFlowReplySeen)) {
        // It does not acknowledge the SYN we sent: not the answer.
        ft_.touch(fi, now_);
        drop(v, DropReason::kSynProxyPending);
        return true;
      }
      f.flags = flags;  // the tracker kept kFlowSynProxy (no restart)
      synProxyLearnBackend(f, x, sa);
      // Our ACK completes the backend's handshake: the tracker sees it as
      // the client's (SYN_RECV -> ESTABLISHED).
      TcpSegment ack;
      ack.seq = sa.ack;
      ack.ack = sa.isn + 1;
      ack.window = synProxyWindowToBackend(x, x.spClientWin);
      ack.flags = kTcpAck;
      flags = f.flags;
      tcpTrack(next, flags, f.seq, ack, Direction::kOriginal);
      f.flags = flags;
      ft_.setState(fi, next, now_);
      // The window update that lets the client send: a second frame.
      rte_mbuf* wu = gen_.n < kMaxBurst ? rte_pktmbuf_alloc(mb->pool) : nullptr;
      if (wu != nullptr && fits(wu, m.l3Off + kSynProxyMaxL3Len)) {
        const uint16_t wlen = writeClientWindowUpdate(rte_pktmbuf_mtod(wu, uint8_t*), frame, m.l3Off, f, x, sa);
        setLen(wu, wlen);
        wu->port = mb->port;
        gen_.pkts[gen_.n++] = wu;
        count(f, wlen);
      } else {
        if (wu != nullptr) rte_pktmbuf_free(wu);
        bump(c_.synProxyNoMbuf);
      }
    } else {
      // A retransmitted SYN-ACK: our ACK was lost; send it again.
      ft_.touch(fi, now_);
    }
    const uint16_t len = writeBackendAck(frame, m, f, x, sa);
    setLen(mb, len);
    if ((f.ppFlags & (kPpOn | kPpAcked)) == kPpOn) bump(c_.proxyHeaders);
    count(f, len);
    v = Verdict{Action::kForward, DropReason::kNone, 0};
    return true;
  }
  if (ready) return false;
  if (fl & kTcpRst) {
    // The backend refused: the client, which believes it is connected,
    // gets a reset in its own sequence space. The tracker checks it as any
    // reset in SYN_SENT (it must acknowledge the SYN exactly).
    if (!trackTcp(fi, tcpSegmentOf(tcp, m), dir, v)) return true;
    forward(mb, m, fi, dir, nullptr, v);
    synProxyEarlyReset(tcp, x);
    return true;
  }
  ft_.touch(fi, now_);
  drop(v, DropReason::kSynProxyPending);
  return true;
}

// The SYN to the backend of a cookie flow, built again from the client's
// zero-window probe as openFromCookie built it the first time: the
// client's ISN from the tracker, the MSS from the cookie (which must still
// check out), window scale and SACK from the timestamp our SYN-ACK sent.
// False (nothing written) when any of it does not hold.
bool Burst::resendBackendSyn(rte_mbuf* mb, uint16_t j, uint32_t fi, Verdict& v) {
  const PacketMeta& m = meta_[pkt_[j]];
  const Flow& f = ft_.at(fi);
  const FlowXlate& x = ft_.xlate(fi);
  uint8_t* frame = rte_pktmbuf_mtod(mb, uint8_t*);
  const uint8_t* tcp = frame + m.l4Off;
  if (!fits(mb, m.l3Off + kSynProxyMaxL3Len) || !tcpChecksumOk(frame, m)) return false;
  const uint32_t clientIsn = f.seq.end[static_cast<std::size_t>(Direction::kOriginal)] - 1;
  const CookieTuple t{m.srcIp, m.dstIp, m.srcPort, m.dstPort};
  SynOptions o;
  if (d_.cookies->check(t, clientIsn, x.spSeqDelta, now_, o.mss) != CookieCheck::kValid) return false;
  if (const uint16_t tsOff = findTimestamp(tcp, m.tcpHdrLen); tsOff != 0) {
    uint32_t ourTsVal = 0;
    readTimestamp(tcp, tsOff, o.tsVal, ourTsVal);
    if (ourTsVal != x.spTsDelta || !cookieTsDecode(ourTsVal, o.wscale, o.sackOk)) return false;
    o.hasTs = true;
  }
  const uint16_t len = writeBackendSyn(frame, m, f, clientIsn, x.spClientWin, o);
  setLen(mb, len);
  count(f, len);
  bump(c_.synProxySynResent);
  v = Verdict{Action::kForward, DropReason::kNone, 0};
  return true;
}

void Burst::translateIcmp(rte_mbuf* mb, const PacketMeta& m, uint32_t fi, Direction dir, Verdict& v) {
  const Flow& f = ft_.at(fi);
  if (m.innerProto == IPPROTO_TCP && ((f.flags & kFlowSynProxyReady) || (f.ppFlags & kPpOn)))
    translateQuote(rte_pktmbuf_mtod(mb, uint8_t*) + m.innerL4Off, m.innerL4Avail, f, ft_.xlate(fi), dir);
  icmpTranslateError(rte_pktmbuf_mtod(mb, uint8_t*), m, f, dir);
  bump(c_.icmpErrorsTranslated);
  count(f, rte_pktmbuf_pkt_len(mb));
  v = Verdict{Action::kForward, DropReason::kNone, 0};
}

}  // namespace

NatCore::NatCore(const Deps& d) : d_(d) {}

void NatCore::process(rte_mbuf** pkts, uint16_t n, const Snapshot& snap, uint32_t nowMs, Verdict* verdicts,
                      bool fromHandoff) {
  // Callers pass at most kMaxBurst; a longer array is taken in chunks
  // rather than left partly without verdicts.
  gen_.n = 0;
  for (uint16_t done = 0; done < n;) {
    const uint16_t k = static_cast<uint16_t>(n - done < kMaxBurst ? n - done : kMaxBurst);
    Burst b(d_, sp_, gen_, snap, nowMs, fromHandoff);
    b.run(pkts + done, k, verdicts + done);
    done = static_cast<uint16_t>(done + k);
  }
}

// Checked every 50 ms: the half-open count is O(1), the pool scan O(pools).
constexpr uint32_t kCookieModeEvalMs = 50;

// Only the pools the snapshot names count: they are the ones new flows
// take ports from (a pool of a removed backend only drains), and the only
// slots the worker may read (a slot no snapshot names may be reloaded by
// the control thread).
void NatCore::updateCookieMode(uint32_t nowMs, const Snapshot* snap) {
  sp_.lastEvalMs = nowMs;
  const FlowTable& ft = *d_.flows;
  const uint32_t halfOpen = ft.count(FlowState::kSynSent) + ft.count(FlowState::kSynRecv);
  const PortAllocator& pa = *d_.ports;
  uint32_t fullest = 0;  // percent
  if (snap != nullptr) {
    for (const SnatPoolRef& r : snap->snatPools) {
      const uint32_t cap = pa.capacity(r.slot);
      if (cap == 0) continue;
      const uint32_t pct = static_cast<uint32_t>(uint64_t{pa.inUse(r.slot)} * 100 / cap);
      if (pct > fullest) fullest = pct;
    }
  }
  const SynProxyParams& t = d_.synProxy;
  if (!sp_.cookieMode) {
    if (halfOpen >= t.halfOpenEnter || fullest >= t.poolEnterPct) {
      sp_.cookieMode = true;
      bump(d_.counters->synCookieModeEntered);
    }
  } else if (halfOpen <= t.halfOpenLeave && fullest <= t.poolLeavePct) {
    sp_.cookieMode = false;
  }
  store(d_.counters->synCookieMode, sp_.cookieMode ? 1 : 0);
}

uint32_t NatCore::expire(uint32_t nowMs, uint32_t budget, const Snapshot* snap) {
  PortAllocator& pa = *d_.ports;
  WorkerCounters& c = *d_.counters;
  const uint32_t n = d_.flows->expire(nowMs, budget, [&pa, &c](const Flow& f) {
    closeAccounting(pa, c, f);
    bump(c.flowsExpired);
  });
  if (d_.cookies != nullptr && nowMs - sp_.lastEvalMs >= kCookieModeEvalMs) updateCookieMode(nowMs, snap);
  return n;
}

template <class Pred>
uint32_t NatCore::sweep(uint32_t cursor, uint32_t budget, Pred&& pred, uint64_t& reason, uint32_t* removed) {
  FlowTable& ft = *d_.flows;
  uint64_t spent = 0;
  uint32_t n = 0;
  const uint32_t next = ft.scan(cursor, budget, [&](uint32_t idx, const Flow& f) {
    ++spent;
    if (pred(f)) {
      closeAccounting(*d_.ports, *d_.counters, f);
      bump(reason);
      ft.remove(idx);
      ++n;
      spent += kSweepRemoveCost;
    }
    return spent < budget;
  });
  if (removed != nullptr) *removed += n;
  return next;
}

uint32_t NatCore::flushStep(const Snapshot& snap, uint32_t cursor, uint32_t budget, uint32_t* removed) {
  if (snap.flushedBackends.none()) return d_.flows->capacity();
  return sweep(
      cursor, budget,
      [&snap](const Flow& f) { return f.backendSlot < kMaxBackendSlots && snap.flushedBackends[f.backendSlot]; },
      d_.counters->flowsFlushed, removed);
}

// Counted as expiry so that created - expired - flushed stays the number of
// live flows.
uint32_t NatCore::clearStep(uint32_t cursor, uint32_t budget, uint32_t* removed) {
  return sweep(cursor, budget, [](const Flow&) { return true; }, d_.counters->flowsExpired, removed);
}

uint32_t NatCore::flush(const Snapshot& snap) {
  uint32_t removed = 0;
  for (uint32_t c = 0; c < d_.flows->capacity();) c = flushStep(snap, c, kSweepAll, &removed);
  return removed;
}

void NatCore::clear() {
  for (uint32_t c = 0; c < d_.flows->capacity();) c = clearStep(c, kSweepAll);
}

}  // namespace strait::dataplane
