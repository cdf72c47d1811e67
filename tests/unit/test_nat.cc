// Unit tests of the NAT pipeline (NatCore) on real mbufs: flows through the
// VIP in both directions with exact addresses, ports and TTL; every
// rewritten packet's checksums verified by a reference implementation
// written here (independent of dataplane/checksum.cc); flow creation rules,
// handoff, drops and their counters; ICMP echo and error translation; flush,
// expiry, port and table exhaustion; MSS clamping; and flows staying on
// their backend when the Maglev table changes.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <algorithm>
#include <deque>
#include <array>
#include <map>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "dataplane/flow_table.h"
#include "dataplane/maglev.h"
#include "dataplane/nat.h"
#include "dataplane/port_alloc.h"
#include "dataplane/snat_pools.h"
#include "dataplane/synproxy.h"
#include "strait/counters.h"
#include "strait/snapshot.h"

namespace strait::dataplane {
namespace {

using Bytes = std::vector<uint8_t>;

// ---- addresses (host order in the tests, converted where compared) ----

constexpr uint32_t ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return (uint32_t{a} << 24) | (uint32_t{b} << 16) | (uint32_t{c} << 8) | d;
}
uint32_t net(uint32_t hostIp) { return htonl(hostIp); }
uint16_t net16(uint16_t p) { return htons(p); }

const uint32_t kVip = ip4(192, 0, 2, 10);    // VIP, SNAT and interface address
const uint32_t kVip2 = ip4(192, 0, 2, 20);   // VIP only
const uint32_t kSnat2 = ip4(192, 0, 2, 30);  // second SNAT address
const uint32_t kClient = ip4(198, 51, 100, 20);
const uint32_t kClient2 = ip4(198, 51, 100, 21);
const uint32_t kBackend1 = ip4(203, 0, 113, 11);
const uint32_t kBackend2 = ip4(203, 0, 113, 12);
const uint32_t kBackendUdp = ip4(203, 0, 113, 21);
const uint32_t kRouter = ip4(203, 0, 113, 1);

constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;

// ---- reference checksums (RFC 1071, big-endian words) ----

uint32_t sumBe(const uint8_t* p, std::size_t n, uint32_t s = 0) {
  for (std::size_t i = 0; i + 1 < n; i += 2) s += uint32_t{p[i]} << 8 | p[i + 1];
  if (n & 1) s += uint32_t{p[n - 1]} << 8;
  return s;
}
uint16_t foldInv(uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(~s & 0xffff);
}
uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t rd32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}
void wr16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void wr32(uint8_t* p, uint32_t v) {
  wr16(p, static_cast<uint16_t>(v >> 16));
  wr16(p + 2, static_cast<uint16_t>(v));
}

uint32_t pseudoSum(const uint8_t* ip, uint16_t l4len) {
  uint32_t s = sumBe(ip + 12, 8);
  s += ip[9];
  s += l4len;
  return s;
}

// Fills the IPv4 header checksum and the TCP/UDP/ICMP checksum of a packet
// starting at `ip` (ihl from the header, length from total length).
void fillChecksums(uint8_t* ip, bool udpZero = false) {
  const std::size_t ihl = (ip[0] & 0xf) * 4u;
  const uint16_t total = rd16(ip + 2);
  wr16(ip + 10, 0);
  wr16(ip + 10, foldInv(sumBe(ip, ihl)));
  uint8_t* l4 = ip + ihl;
  const uint16_t l4len = static_cast<uint16_t>(total - ihl);
  switch (ip[9]) {
    case IPPROTO_TCP:
      wr16(l4 + 16, 0);
      wr16(l4 + 16, foldInv(sumBe(l4, l4len, pseudoSum(ip, l4len))));
      break;
    case IPPROTO_UDP: {
      wr16(l4 + 6, 0);
      if (udpZero) break;
      uint16_t c = foldInv(sumBe(l4, l4len, pseudoSum(ip, l4len)));
      wr16(l4 + 6, c == 0 ? 0xffff : c);
      break;
    }
    case IPPROTO_ICMP:
      wr16(l4 + 2, 0);
      wr16(l4 + 2, foldInv(sumBe(l4, l4len)));
      break;
  }
}

// ---- frame builders ----

constexpr std::size_t kEth = 14;
const uint8_t kMacA[6] = {0x02, 0, 0, 0, 0, 0x0a};
const uint8_t kMacB[6] = {0x02, 0, 0, 0, 0, 0x0b};

struct L4Spec {
  uint32_t src = 0, dst = 0;  // host order
  uint16_t sport = 0, dport = 0;
  uint8_t proto = IPPROTO_TCP;
  uint8_t ttl = 64;
  uint8_t flags = 0;
  // Both sides start at 1000, so after the SYNs each expects 1001: the
  // default ack fits every segment of a handshake (the tracker checks a
  // SYN-ACK acknowledges the SYN, and RSTs against the windows).
  uint32_t seq = 1000, ack = 1001;
  Bytes tcpOpts;  // multiple of 4
  uint16_t window = 65535;
  Bytes payload;
  bool udpZeroChecksum = false;
};

Bytes ipHeader(uint32_t src, uint32_t dst, uint8_t proto, uint8_t ttl, uint16_t total) {
  Bytes h(20, 0);
  h[0] = 0x45;
  wr16(&h[2], total);
  wr16(&h[4], 0x1234);
  wr16(&h[6], 0x4000);  // DF
  h[8] = ttl;
  h[9] = proto;
  wr32(&h[12], src);
  wr32(&h[16], dst);
  return h;
}

Bytes ethHeader() {
  Bytes e(kEth, 0);
  std::memcpy(&e[0], kMacA, 6);
  std::memcpy(&e[6], kMacB, 6);
  e[12] = 0x08;
  e[13] = 0x00;
  return e;
}

// An IPv4 packet (no Ethernet).
Bytes ipPacket(const L4Spec& s) {
  Bytes l4;
  if (s.proto == IPPROTO_TCP) {
    l4.assign(20 + s.tcpOpts.size(), 0);
    wr16(&l4[0], s.sport);
    wr16(&l4[2], s.dport);
    wr32(&l4[4], s.seq);
    wr32(&l4[8], s.ack);
    l4[12] = static_cast<uint8_t>((l4.size() / 4) << 4);
    l4[13] = s.flags;
    wr16(&l4[14], s.window);
    std::copy(s.tcpOpts.begin(), s.tcpOpts.end(), l4.begin() + 20);
  } else {
    l4.assign(8, 0);
    wr16(&l4[0], s.sport);
    wr16(&l4[2], s.dport);
    wr16(&l4[4], static_cast<uint16_t>(8 + s.payload.size()));
  }
  l4.insert(l4.end(), s.payload.begin(), s.payload.end());
  Bytes p = ipHeader(s.src, s.dst, s.proto, s.ttl, static_cast<uint16_t>(20 + l4.size()));
  p.insert(p.end(), l4.begin(), l4.end());
  fillChecksums(p.data(), s.udpZeroChecksum);
  return p;
}

Bytes frame(const Bytes& ip) {
  Bytes f = ethHeader();
  f.insert(f.end(), ip.begin(), ip.end());
  return f;
}
Bytes frame(const L4Spec& s) { return frame(ipPacket(s)); }

Bytes icmpEcho(uint32_t src, uint32_t dst, uint16_t id, uint16_t seq, const Bytes& data) {
  Bytes icmp(8, 0);
  icmp[0] = 8;
  wr16(&icmp[4], id);
  wr16(&icmp[6], seq);
  icmp.insert(icmp.end(), data.begin(), data.end());
  Bytes p = ipHeader(src, dst, IPPROTO_ICMP, 64, static_cast<uint16_t>(20 + icmp.size()));
  p.insert(p.end(), icmp.begin(), icmp.end());
  fillChecksums(p.data());
  return frame(p);
}

// ICMP error (type/code, 4-byte rest-of-header e.g. next-hop MTU) quoting
// `quote` (an IPv4 packet, truncated by the caller as a router would).
Bytes icmpError(uint32_t src, uint32_t dst, uint8_t type, uint8_t code, uint16_t mtu, const Bytes& quote,
                uint8_t ttl = 64) {
  Bytes icmp(8, 0);
  icmp[0] = type;
  icmp[1] = code;
  wr16(&icmp[6], mtu);
  icmp.insert(icmp.end(), quote.begin(), quote.end());
  Bytes p = ipHeader(src, dst, IPPROTO_ICMP, ttl, static_cast<uint16_t>(20 + icmp.size()));
  p.insert(p.end(), icmp.begin(), icmp.end());
  fillChecksums(p.data());
  return frame(p);
}

// ---- decoding and verification of output frames ----

struct Seen {
  uint32_t src, dst;  // host order
  uint16_t sport, dport;
  uint8_t ttl, proto, flags;
};

Seen seen(const Bytes& f) {
  const uint8_t* ip = f.data() + kEth;
  const uint8_t* l4 = ip + (ip[0] & 0xf) * 4;
  return Seen{rd32(ip + 12),
              rd32(ip + 16),
              rd16(l4),
              rd16(l4 + 2),
              ip[8],
              ip[9],
              ip[9] == IPPROTO_TCP ? l4[13] : uint8_t{0}};
}

::testing::AssertionResult ipv4ChecksumOk(const uint8_t* ip) {
  const std::size_t ihl = (ip[0] & 0xf) * 4u;
  if (foldInv(sumBe(ip, ihl)) != 0)
    return ::testing::AssertionFailure() << "bad IPv4 header checksum " << std::hex << rd16(ip + 10);
  return ::testing::AssertionSuccess();
}

// Verifies the IPv4 checksum and the full L4 checksum (TCP, UDP unless 0,
// ICMP over the whole message).
::testing::AssertionResult checksumsOk(const Bytes& f) {
  const uint8_t* ip = f.data() + kEth;
  auto r = ipv4ChecksumOk(ip);
  if (!r) return r;
  const std::size_t ihl = (ip[0] & 0xf) * 4u;
  const uint16_t l4len = static_cast<uint16_t>(rd16(ip + 2) - ihl);
  const uint8_t* l4 = ip + ihl;
  switch (ip[9]) {
    case IPPROTO_TCP:
      if (foldInv(sumBe(l4, l4len, pseudoSum(ip, l4len))) != 0)
        return ::testing::AssertionFailure() << "bad TCP checksum";
      break;
    case IPPROTO_UDP:
      if (rd16(l4 + 6) != 0 && foldInv(sumBe(l4, l4len, pseudoSum(ip, l4len))) != 0)
        return ::testing::AssertionFailure() << "bad UDP checksum";
      break;
    case IPPROTO_ICMP:
      if (foldInv(sumBe(l4, l4len)) != 0) return ::testing::AssertionFailure() << "bad ICMP checksum";
      break;
  }
  return ::testing::AssertionSuccess();
}

Bytes tcpMssOpt(uint16_t mss) {
  return Bytes{2, 4, static_cast<uint8_t>(mss >> 8), static_cast<uint8_t>(mss)};
}

// ---- fixture ----

class NatTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    mp_ = rte_pktmbuf_pool_create("nat_test_pool", 1023, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    ASSERT_NE(mp_, nullptr);
  }
  static void TearDownTestSuite() {
    rte_mempool_free(mp_);
    mp_ = nullptr;
  }

  struct Setup {
    uint32_t capacity = 1024;
    uint16_t portMin = 40000, portMax = 40999;
    uint16_t workerId = 0, numWorkers = 1;
    OwnerMode mode = OwnerMode::kSingle;
    bool cookies = false;  // give the core a SynCookies
    SynProxyParams synProxy;
  };

  void SetUp() override { build(Setup{}); }

  void build(const Setup& s) {
    nat_.reset();
    pools_.reset();
    run_ = Snapshot{};
    ft_.reset();
    pa_.reset();
    FlowTable::Params fp;
    fp.capacity = s.capacity;
    name_ = "nat_test_" + std::to_string(seq_++);
    fp.name = name_.c_str();
    fp.hashKey = {0x1234, 0x5678};
    ft_ = std::make_unique<FlowTable>(fp);
    PortAllocator::Params pp;
    pp.portMin = s.portMin;
    pp.portMax = s.portMax;
    pp.maxPools = 16;
    if (s.mode == OwnerMode::kPortModulo && s.numWorkers > 1) {
      const uint16_t me = s.workerId, nw = s.numWorkers;
      pp.eligible = [me, nw](const PoolKey&, uint16_t port) { return port % nw == me; };
    }
    pa_ = std::make_unique<PortAllocator>(pp);
    pools_ = std::make_unique<SnatPools>(SnatPools::Params{{pa_.get()}, {}, {}});
    counters_ = std::make_unique<WorkerCounters>();
    NatCore::Deps d;
    d.flows = ft_.get();
    d.ports = pa_.get();
    d.counters = counters_.get();
    d.workerId = s.workerId;
    d.numWorkers = s.numWorkers;
    d.ownerMode = s.mode;
    if (s.cookies) d.cookies = &cookies_;
    d.synProxy = s.synProxy;
    nat_ = std::make_unique<NatCore>(d);
    snap_ = makeSnapshot();
  }

  static BackendView backend(uint32_t ip, uint16_t port, uint16_t slot) {
    BackendView b;
    b.ip = net(ip);
    b.port = net16(port);
    b.slot = slot;
    return b;
  }

  static void buildMaglevFor(ServiceView& s) {
    std::vector<MaglevBackend> mb;
    bool any = false;
    for (const auto& b : s.backends) {
      mb.push_back(MaglevBackend{b.ip, b.port, b.up ? b.weight : 0});
      any = any || (b.up && b.weight > 0);
    }
    s.maglev = any ? buildMaglev(mb, 251) : std::vector<uint16_t>{};
  }

  // web: 192.0.2.10:80/tcp -> 203.0.113.11:80 (slot 10), SNAT 192.0.2.10
  // dns: 192.0.2.10:53/udp -> 203.0.113.21:53 (slot 20), SNAT 192.0.2.10
  // two: 192.0.2.20:443/tcp -> .11:443 (slot 30), .12:443 (slot 31),
  //      SNAT 192.0.2.10 and 192.0.2.30
  static Snapshot makeSnapshot(uint16_t mssClamp = 0) {
    Snapshot s;
    s.generation = 1;
    ServiceView web;
    web.name = "web";
    web.slot = 1;
    web.vip = net(kVip);
    web.port = net16(80);
    web.proto = IPPROTO_TCP;
    web.mssClamp = mssClamp;
    web.snatIps = {net(kVip)};
    web.backends = {backend(kBackend1, 80, 10)};
    buildMaglevFor(web);
    ServiceView dns;
    dns.name = "dns";
    dns.slot = 2;
    dns.vip = net(kVip);
    dns.port = net16(53);
    dns.proto = IPPROTO_UDP;
    dns.snatIps = {net(kVip)};
    dns.backends = {backend(kBackendUdp, 53, 20)};
    buildMaglevFor(dns);
    ServiceView two;
    two.name = "two";
    two.slot = 3;
    two.vip = net(kVip2);
    two.port = net16(443);
    two.proto = IPPROTO_TCP;
    two.snatIps = {net(kVip), net(kSnat2)};
    two.backends = {backend(kBackend1, 443, 30), backend(kBackend2, 443, 31)};
    buildMaglevFor(two);
    s.services = {web, dns, two};
    s.buildIndexes({net(kVip)});
    return s;
  }

  rte_mbuf* toMbuf(const Bytes& b) {
    rte_mbuf* m = rte_pktmbuf_alloc(mp_);
    EXPECT_NE(m, nullptr);
    char* p = rte_pktmbuf_append(m, static_cast<uint16_t>(b.size()));
    EXPECT_NE(p, nullptr);
    std::memcpy(p, b.data(), b.size());
    return m;
  }

  // Runs one burst; frames are replaced by what the core left in the mbufs.
  std::vector<Verdict> burst(std::vector<Bytes>& frames, uint32_t now) {
    return burstWith(frames, now, snap_);
  }
  // The snapshot as straitd would publish it: a copy with its SNAT pools
  // prepared (SnatPools), the previous copy's references given back.
  // Slots are never retired here (no collect()): the fixture's tuples
  // keep theirs.
  const Snapshot& published(const Snapshot& snap) {
    pools_->release(run_);
    run_ = snap;
    run_.snatPools.clear();
    pools_->prepare(run_);
    return run_;
  }
  std::vector<Verdict> burstWith(std::vector<Bytes>& frames, uint32_t now, const Snapshot& snap) {
    std::vector<rte_mbuf*> ms;
    for (const auto& f : frames) ms.push_back(toMbuf(f));
    std::vector<Verdict> v(frames.size());
    nat_->process(ms.data(), static_cast<uint16_t>(ms.size()), published(snap), now, v.data());
    for (std::size_t i = 0; i < ms.size(); ++i) {
      const uint8_t* d = rte_pktmbuf_mtod(ms[i], const uint8_t*);
      frames[i].assign(d, d + rte_pktmbuf_data_len(ms[i]));
      rte_pktmbuf_free(ms[i]);
    }
    return v;
  }
  Verdict one(Bytes& f, uint32_t now = 1000) { return oneWith(f, now, snap_); }
  Verdict oneWith(Bytes& f, uint32_t now, const Snapshot& snap) {
    std::vector<Bytes> fs{f};
    auto v = burstWith(fs, now, snap);
    f = fs[0];
    return v[0];
  }

  uint64_t drops(DropReason r) const { return counters_->drops[static_cast<std::size_t>(r)]; }

  // Services listening on 192.0.2.10 ports first, first + 1, ... (n of
  // them), added after the web service's pool was made, so that pool still
  // holds those ports (docs/nat.md, "Caveats").
  void addClashServices(uint16_t first, int n) {
    for (int k = 0; k < n; ++k) {
      ServiceView clash = snap_.services[0];
      clash.name = "clash" + std::to_string(k);
      clash.slot = static_cast<uint16_t>(9 + k);
      clash.port = net16(static_cast<uint16_t>(first + k));
      clash.backends = {backend(kBackend2, 9000, 90)};
      buildMaglevFor(clash);
      snap_.services.push_back(clash);
    }
    snap_.buildIndexes({net(kVip)});
  }

  // The only live flow (asserts there is exactly one).
  Flow onlyFlow() const {
    EXPECT_EQ(ft_->size(), 1u);
    Flow out{};
    ft_->forEach([&](uint32_t, const Flow& f) { out = f; });
    return out;
  }

  L4Spec tcp(uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport, uint8_t flags) {
    L4Spec s;
    s.src = src;
    s.sport = sport;
    s.dst = dst;
    s.dport = dport;
    s.flags = flags;
    return s;
  }
  L4Spec udp(uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport, Bytes payload) {
    L4Spec s;
    s.src = src;
    s.sport = sport;
    s.dst = dst;
    s.dport = dport;
    s.proto = IPPROTO_UDP;
    s.payload = std::move(payload);
    return s;
  }

  static rte_mempool* mp_;
  static int seq_;
  SynCookies cookies_{SipKey{0x1111, 0x2222}, 65536};
  std::string name_;
  std::unique_ptr<FlowTable> ft_;
  std::unique_ptr<PortAllocator> pa_;
  std::unique_ptr<SnatPools> pools_;
  Snapshot run_;  // what the last burst ran on (see published())
  std::unique_ptr<WorkerCounters> counters_;
  std::unique_ptr<NatCore> nat_;
  Snapshot snap_;
};

rte_mempool* NatTest::mp_ = nullptr;
int NatTest::seq_ = 0;

// Each macro evaluates its verdict expression once (it often runs a burst).
#define EXPECT_FORWARD(expr)                                                          \
  do {                                                                                \
    const Verdict v_ = (expr);                                                        \
    EXPECT_EQ(v_.action, Action::kForward) << "reason " << dropReasonName(v_.reason); \
  } while (0)
#define EXPECT_DROP(expr, r)                                \
  do {                                                      \
    const Verdict v_ = (expr);                              \
    EXPECT_EQ(v_.action, Action::kDrop);                    \
    EXPECT_EQ(v_.reason, (r)) << dropReasonName(v_.reason); \
  } while (0)

// ---- TCP through the VIP ----

TEST_F(NatTest, TcpConnectionBothWaysExactRewrite) {
  // Client SYN.
  Bytes syn = frame(tcp(kClient, 33000, kVip, 80, kSyn));
  Verdict v = one(syn);
  EXPECT_FORWARD(v);
  Seen s = seen(syn);
  EXPECT_EQ(s.src, kVip);
  EXPECT_EQ(s.dst, kBackend1);
  EXPECT_EQ(s.dport, 80);
  EXPECT_GE(s.sport, 40000);
  EXPECT_LE(s.sport, 40999);
  EXPECT_EQ(s.ttl, 63);
  EXPECT_EQ(s.flags, kSyn);
  EXPECT_TRUE(checksumsOk(syn));
  const uint16_t snatPort = s.sport;

  Flow f = onlyFlow();
  EXPECT_EQ(f.clientIp, net(kClient));
  EXPECT_EQ(f.clientPort, net16(33000));
  EXPECT_EQ(f.vip, net(kVip));
  EXPECT_EQ(f.vipPort, net16(80));
  EXPECT_EQ(f.backendIp, net(kBackend1));
  EXPECT_EQ(f.snatIp, net(kVip));
  EXPECT_EQ(f.snatPort, net16(snatPort));
  EXPECT_EQ(f.state, FlowState::kSynSent);
  EXPECT_EQ(f.serviceSlot, 1);
  EXPECT_EQ(f.backendSlot, 10);
  EXPECT_EQ(counters_->flowsCreated, 1u);
  EXPECT_EQ(counters_->services[1].flowsCreated, 1u);
  EXPECT_EQ(counters_->backends[10].flowsCreated, 1u);

  // Backend SYN-ACK back to the client.
  Bytes synAck = frame(tcp(kBackend1, 80, kVip, snatPort, kSyn | kAck));
  v = one(synAck, 1010);
  EXPECT_FORWARD(v);
  s = seen(synAck);
  EXPECT_EQ(s.src, kVip);
  EXPECT_EQ(s.sport, 80);
  EXPECT_EQ(s.dst, kClient);
  EXPECT_EQ(s.dport, 33000);
  EXPECT_EQ(s.ttl, 63);
  EXPECT_TRUE(checksumsOk(synAck));
  EXPECT_EQ(onlyFlow().state, FlowState::kSynRecv);

  // ACK, then data both ways.
  Bytes ack = frame(tcp(kClient, 33000, kVip, 80, kAck));
  EXPECT_FORWARD(one(ack, 1020));
  EXPECT_TRUE(checksumsOk(ack));
  EXPECT_EQ(onlyFlow().state, FlowState::kEstablished);

  L4Spec req = tcp(kClient, 33000, kVip, 80, kAck | kPsh);
  req.payload = Bytes{'G', 'E', 'T', ' ', '/', '\r', '\n'};  // odd length
  Bytes data = frame(req);
  EXPECT_FORWARD(one(data, 1030));
  s = seen(data);
  EXPECT_EQ(s.src, kVip);
  EXPECT_EQ(s.sport, snatPort);
  EXPECT_EQ(s.dst, kBackend1);
  EXPECT_EQ(s.dport, 80);
  EXPECT_TRUE(checksumsOk(data));
  // Payload untouched.
  EXPECT_EQ(Bytes(data.end() - 7, data.end()), req.payload);

  L4Spec resp = tcp(kBackend1, 80, kVip, snatPort, kAck | kPsh);
  resp.payload = Bytes(100, 0x5a);
  Bytes rdata = frame(resp);
  EXPECT_FORWARD(one(rdata, 1040));
  s = seen(rdata);
  EXPECT_EQ(s.src, kVip);
  EXPECT_EQ(s.sport, 80);
  EXPECT_EQ(s.dst, kClient);
  EXPECT_EQ(s.dport, 33000);
  EXPECT_TRUE(checksumsOk(rdata));

  // Close: client FIN, backend ACK+FIN, client ACK.
  Bytes fin = frame(tcp(kClient, 33000, kVip, 80, kFin | kAck));
  EXPECT_FORWARD(one(fin, 1050));
  EXPECT_TRUE(checksumsOk(fin));
  EXPECT_EQ(onlyFlow().state, FlowState::kFinWait);
  Bytes fin2 = frame(tcp(kBackend1, 80, kVip, snatPort, kFin | kAck));
  EXPECT_FORWARD(one(fin2, 1060));
  EXPECT_TRUE(checksumsOk(fin2));
  EXPECT_EQ(seen(fin2).dst, kClient);
  EXPECT_EQ(onlyFlow().state, FlowState::kLastAck);
  Bytes last = frame(tcp(kClient, 33000, kVip, 80, kAck));
  EXPECT_FORWARD(one(last, 1070));
  EXPECT_TRUE(checksumsOk(last));
  EXPECT_EQ(onlyFlow().state, FlowState::kTimeWait);
  EXPECT_EQ(onlyFlow().lastSeenMs, 1070u);

  // Per-service and per-backend accounting: 8 packets through the flow.
  EXPECT_EQ(counters_->services[1].packets, 8u);
  EXPECT_EQ(counters_->backends[10].packets, 8u);
  EXPECT_GT(counters_->backends[10].bytes, 8u * 54);
  EXPECT_EQ(counters_->flowsCreated, 1u);
  uint64_t totalDrops = 0;
  for (auto d : counters_->drops) totalDrops += d;
  EXPECT_EQ(totalDrops, 0u);
}

TEST_F(NatTest, TcpWithIpOptionsAndVlanLikeOffsets) {
  // An IPv4 header with options (IHL 6): offsets come from the parser.
  Bytes ip = ipPacket(tcp(kClient, 33001, kVip, 80, kSyn));
  Bytes withOpt(ip.begin(), ip.begin() + 20);
  withOpt.insert(withOpt.end(), {1, 1, 1, 0});  // NOP NOP NOP EOL
  withOpt.insert(withOpt.end(), ip.begin() + 20, ip.end());
  withOpt[0] = 0x46;
  wr16(&withOpt[2], static_cast<uint16_t>(withOpt.size()));
  fillChecksums(withOpt.data());
  Bytes f = frame(withOpt);
  ASSERT_TRUE(checksumsOk(f));
  EXPECT_FORWARD(one(f));
  EXPECT_TRUE(checksumsOk(f));
  Seen s = seen(f);
  EXPECT_EQ(s.dst, kBackend1);
  EXPECT_EQ(s.src, kVip);
  EXPECT_EQ(s.dport, 80);
}

TEST_F(NatTest, RetransmittedSynCreatesNoDuplicate) {
  Bytes syn1 = frame(tcp(kClient, 33000, kVip, 80, kSyn));
  EXPECT_FORWARD(one(syn1, 1000));
  Bytes syn2 = frame(tcp(kClient, 33000, kVip, 80, kSyn));
  EXPECT_FORWARD(one(syn2, 2000));
  EXPECT_EQ(syn1, syn2);  // same SNAT port, same backend
  EXPECT_EQ(ft_->size(), 1u);
  EXPECT_EQ(counters_->flowsCreated, 1u);
  EXPECT_EQ(pa_->inUse(onlyFlow().pool), 1u);
}

TEST_F(NatTest, RetransmittedSynInOneBurstCreatesNoDuplicate) {
  std::vector<Bytes> fs;
  for (int i = 0; i < 3; ++i) fs.push_back(frame(tcp(kClient, 33000, kVip, 80, kSyn)));
  fs.push_back(frame(udp(kClient, 5000, kVip, 53, Bytes{1, 2, 3})));
  fs.push_back(frame(udp(kClient, 5000, kVip, 53, Bytes{4, 5, 6})));
  auto v = burst(fs, 1000);
  for (const auto& x : v) EXPECT_FORWARD(x);
  EXPECT_EQ(fs[0], fs[1]);
  EXPECT_EQ(fs[0], fs[2]);
  EXPECT_EQ(seen(fs[3]).sport, seen(fs[4]).sport);
  EXPECT_EQ(ft_->size(), 2u);
  EXPECT_EQ(counters_->flowsCreated, 2u);
  uint32_t ports = 0;
  for (uint32_t p = 0; p < pa_->maxPools(); ++p) ports += pa_->inUse(p);
  EXPECT_EQ(ports, 2u);
  for (auto& f : fs) EXPECT_TRUE(checksumsOk(f));
}

// A candidate that missed the burst's bulk lookup is looked up again when
// a flow created earlier in the same burst may hold its key: the backend's
// answer to a flow's SYN (its reply key) and a retransmitted SYN (its
// original key) in the burst that created the flow, behind enough other
// new flows that most of the burst's misses skip that second lookup.
TEST_F(NatTest, KeysInsertedEarlierInTheBurstAreFound) {
  std::vector<Bytes> fs;
  for (uint16_t p = 0; p < 20; ++p) fs.push_back(frame(tcp(kClient, static_cast<uint16_t>(33000 + p), kVip, 80, kSyn)));
  // A fresh pool hands out its ports in order: flow p has SNAT port 40000 + p.
  fs.push_back(frame(tcp(kBackend1, 80, kVip, 40000, kSyn | kAck)));
  fs.push_back(frame(tcp(kBackend1, 80, kVip, 40019, kSyn | kAck)));
  fs.push_back(frame(tcp(kClient, 33010, kVip, 80, kSyn)));
  fs.push_back(frame(tcp(kBackend1, 80, kVip, 40020, kSyn | kAck)));  // no such flow
  auto v = burst(fs, 1000);
  for (std::size_t i = 0; i + 1 < fs.size(); ++i) EXPECT_FORWARD(v[i]);
  EXPECT_DROP(v.back(), DropReason::kNoFlow);
  for (uint16_t p = 0; p < 20; ++p) EXPECT_EQ(seen(fs[p]).sport, 40000 + p);
  EXPECT_EQ(seen(fs[20]).dst, kClient);
  EXPECT_EQ(seen(fs[20]).dport, 33000);
  EXPECT_EQ(seen(fs[21]).dport, 33019);
  EXPECT_EQ(fs[22], fs[10]);  // the retransmission went out as the first did
  EXPECT_EQ(ft_->size(), 20u);
  EXPECT_EQ(counters_->flowsCreated, 20u);
  uint32_t ports = 0;
  for (uint32_t p = 0; p < pa_->maxPools(); ++p) ports += pa_->inUse(p);
  EXPECT_EQ(ports, 20u);
}

TEST_F(NatTest, NonSynWithoutFlowIsDropped) {
  for (uint8_t flags :
       {uint8_t(kAck), uint8_t(kSyn | kAck), uint8_t(kRst), uint8_t(kFin | kAck), uint8_t(kSyn | kFin)}) {
    Bytes f = frame(tcp(kClient, 33000, kVip, 80, flags));
    EXPECT_DROP(one(f), DropReason::kNoFlow);
  }
  EXPECT_EQ(drops(DropReason::kNoFlow), 5u);
  EXPECT_EQ(ft_->size(), 0u);
  EXPECT_EQ(counters_->flowsCreated, 0u);
}

TEST_F(NatTest, ReplyWithoutFlowIsDropped) {
  Bytes f = frame(tcp(kBackend1, 80, kVip, 40000, kSyn | kAck));
  EXPECT_DROP(one(f), DropReason::kNoFlow);
  EXPECT_EQ(drops(DropReason::kNoFlow), 1u);
}

TEST_F(NatTest, ReplyForAnotherWorkersPortIsHandedOff) {
  Setup s;
  s.workerId = 1;
  s.numWorkers = 4;
  s.mode = OwnerMode::kPortModulo;
  build(s);
  // Port 40002 belongs to worker 2.
  Bytes f = frame(tcp(kBackend1, 80, kVip, 40002, kAck));
  Bytes before = f;
  Verdict v = one(f);
  EXPECT_EQ(v.action, Action::kHandoff);
  EXPECT_EQ(v.worker, 2);
  EXPECT_EQ(counters_->handoffOut, 1u);
  EXPECT_EQ(f, before);  // untouched for the owner to process
  // Port 40001 is ours: a plain miss.
  Bytes g = frame(tcp(kBackend1, 80, kVip, 40001, kAck));
  EXPECT_DROP(one(g), DropReason::kNoFlow);
  // Flows this worker creates use its own ports and replies hit locally.
  Bytes syn = frame(tcp(kClient, 33000, kVip, 80, kSyn));
  EXPECT_FORWARD(one(syn));
  const uint16_t port = seen(syn).sport;
  EXPECT_EQ(port % 4, 1);
  Bytes synAck = frame(tcp(kBackend1, 80, kVip, port, kSyn | kAck));
  EXPECT_FORWARD(one(synAck));
  EXPECT_EQ(counters_->handoffOut, 1u);
}

TEST_F(NatTest, SingleModeNeverHandsOff) {
  Bytes f = frame(tcp(kBackend1, 80, kVip, 40002, kAck));
  EXPECT_DROP(one(f), DropReason::kNoFlow);
  EXPECT_EQ(counters_->handoffOut, 0u);
}

TEST_F(NatTest, AddressAndServiceClassification) {
  Bytes unknown = frame(tcp(kClient, 33000, ip4(192, 0, 2, 99), 80, kSyn));
  EXPECT_DROP(one(unknown), DropReason::kNotLocal);
  EXPECT_EQ(drops(DropReason::kNotLocal), 1u);
  // A VIP-only address with no service on the port.
  Bytes noSvc = frame(tcp(kClient, 33000, kVip2, 81, kSyn));
  EXPECT_DROP(one(noSvc), DropReason::kNoService);
  // Right port, wrong protocol.
  Bytes udpOn443 = frame(udp(kClient, 33000, kVip2, 443, Bytes{1}));
  EXPECT_DROP(one(udpOn443), DropReason::kNoService);
  EXPECT_EQ(drops(DropReason::kNoService), 2u);
  // On an address that is also a SNAT address, a non-service port is a
  // reply candidate: without a flow it is a miss.
  Bytes onSnat = frame(tcp(kClient, 33000, kVip, 81, kSyn));
  EXPECT_DROP(one(onSnat), DropReason::kNoFlow);
  EXPECT_EQ(ft_->size(), 0u);
}

TEST_F(NatTest, NonIpv4AndMalformed) {
  Bytes arp = ethHeader();
  arp[12] = 0x08;
  arp[13] = 0x06;
  Bytes body = {0, 1, 8, 0, 6, 4, 0, 1};
  body.resize(28, 0);
  arp.insert(arp.end(), body.begin(), body.end());
  Verdict v = one(arp);
  EXPECT_EQ(v.action, Action::kToControl);
  EXPECT_EQ(counters_->toControl, 1u);

  Bytes v6 = ethHeader();
  v6[12] = 0x86;
  v6[13] = 0xdd;
  v6.resize(60, 0);
  EXPECT_DROP(one(v6), DropReason::kUnsupportedL2);

  Bytes trunc = frame(tcp(kClient, 33000, kVip, 80, kSyn));
  trunc.resize(kEth + 30);
  EXPECT_DROP(one(trunc), DropReason::kMalformed);

  // Chained mbufs are refused under their own reason, not as malformed.
  Bytes syn = frame(tcp(kClient, 33000, kVip, 80, kSyn));
  rte_mbuf* a = toMbuf(Bytes(syn.begin(), syn.begin() + 34));
  rte_mbuf* b = toMbuf(Bytes(syn.begin() + 34, syn.end()));
  ASSERT_EQ(rte_pktmbuf_chain(a, b), 0);
  Verdict cv;
  nat_->process(&a, 1, snap_, 1000, &cv);
  rte_pktmbuf_free(a);
  EXPECT_DROP(cv, DropReason::kMultiSegment);
  EXPECT_EQ(drops(DropReason::kMalformed), 1u);
  EXPECT_EQ(drops(DropReason::kMultiSegment), 1u);
  EXPECT_EQ(ft_->size(), 0u);
}

TEST_F(NatTest, TtlOneIsDroppedBeforeCreatingAFlow) {
  L4Spec s = tcp(kClient, 33000, kVip, 80, kSyn);
  s.ttl = 1;
  Bytes f = frame(s);
  EXPECT_DROP(one(f), DropReason::kTtlExceeded);
  EXPECT_EQ(ft_->size(), 0u);
  EXPECT_EQ(drops(DropReason::kTtlExceeded), 1u);
  s.ttl = 0;
  Bytes g = frame(s);
  EXPECT_DROP(one(g), DropReason::kTtlExceeded);
  s.ttl = 2;
  Bytes h = frame(s);
  EXPECT_FORWARD(one(h));
  EXPECT_EQ(seen(h).ttl, 1);
  EXPECT_TRUE(checksumsOk(h));
}

// ---- UDP ----

TEST_F(NatTest, UdpBothWays) {
  Bytes q = frame(udp(kClient, 5353, kVip, 53, Bytes{0xab, 0xcd, 0xef}));
  EXPECT_FORWARD(one(q));
  Seen s = seen(q);
  EXPECT_EQ(s.src, kVip);
  EXPECT_EQ(s.dst, kBackendUdp);
  EXPECT_EQ(s.dport, 53);
  EXPECT_TRUE(checksumsOk(q));
  EXPECT_NE(rd16(q.data() + kEth + 20 + 6), 0);
  EXPECT_EQ(onlyFlow().state, FlowState::kUdpUnreplied);
  const uint16_t port = s.sport;

  Bytes r = frame(udp(kBackendUdp, 53, kVip, port, Bytes(33, 7)));
  EXPECT_FORWARD(one(r));
  s = seen(r);
  EXPECT_EQ(s.src, kVip);
  EXPECT_EQ(s.sport, 53);
  EXPECT_EQ(s.dst, kClient);
  EXPECT_EQ(s.dport, 5353);
  EXPECT_TRUE(checksumsOk(r));
  EXPECT_EQ(counters_->services[2].packets, 2u);
  EXPECT_EQ(counters_->backends[20].packets, 2u);
  // A reply alone does not assure the flow (a backend answers spoofed
  // datagrams too); traffic 2 s after the first datagram does.
  EXPECT_EQ(onlyFlow().state, FlowState::kUdpUnreplied);
  Bytes q2 = frame(udp(kClient, 5353, kVip, 53, Bytes{1}));
  EXPECT_FORWARD(one(q2, 1000 + 1999));
  EXPECT_EQ(onlyFlow().state, FlowState::kUdpUnreplied);
  Bytes q3 = frame(udp(kClient, 5353, kVip, 53, Bytes{1}));
  EXPECT_FORWARD(one(q3, 1000 + 2000));
  EXPECT_EQ(onlyFlow().state, FlowState::kUdp);
}

// Without a reply, no amount of client traffic assures a UDP flow.
TEST_F(NatTest, UdpWithoutReplyStaysUnassured) {
  for (uint32_t t = 1000; t <= 20'000; t += 1000) {
    Bytes q = frame(udp(kClient, 5353, kVip, 53, Bytes{1}));
    EXPECT_FORWARD(one(q, t));
  }
  EXPECT_EQ(onlyFlow().state, FlowState::kUdpUnreplied);
}

// An unassured UDP flow lives udp_unreplied (30 s) idle; an assured one
// (replied, still talking 2 s on) lives udp (120 s).
TEST_F(NatTest, UdpUnrepliedAndRepliedTimeouts) {
  Bytes a = frame(udp(kClient, 5001, kVip, 53, Bytes{1}));
  Bytes b = frame(udp(kClient, 5002, kVip, 53, Bytes{1}));
  EXPECT_FORWARD(one(a, 1000));
  EXPECT_FORWARD(one(b, 1000));
  Bytes r = frame(udp(kBackendUdp, 53, kVip, seen(b).sport, Bytes{2}));
  EXPECT_FORWARD(one(r, 3000));
  EXPECT_EQ(ft_->count(FlowState::kUdpUnreplied), 1u);
  EXPECT_EQ(ft_->count(FlowState::kUdp), 1u);
  EXPECT_EQ(nat_->expire(1000 + 29'999, 100), 0u);
  EXPECT_EQ(nat_->expire(1000 + 30'000, 100), 1u);
  EXPECT_EQ(onlyFlow().clientPort, net16(5002));
  EXPECT_EQ(nat_->expire(3000 + 119'999, 100), 0u);
  EXPECT_EQ(nat_->expire(3000 + 120'000 + 30'000, 100), 1u);
  EXPECT_EQ(ft_->size(), 0u);
  EXPECT_EQ(pa_->doubleFrees(), 0u);
}

TEST_F(NatTest, UdpChecksumZeroStaysZero) {
  L4Spec q = udp(kClient, 5353, kVip, 53, Bytes{1, 2, 3, 4});
  q.udpZeroChecksum = true;
  Bytes f = frame(q);
  EXPECT_FORWARD(one(f));
  EXPECT_EQ(rd16(f.data() + kEth + 20 + 6), 0);
  EXPECT_TRUE(ipv4ChecksumOk(f.data() + kEth));
  L4Spec r = udp(kBackendUdp, 53, kVip, seen(f).sport, Bytes{9});
  r.udpZeroChecksum = true;
  Bytes g = frame(r);
  EXPECT_FORWARD(one(g));
  EXPECT_EQ(rd16(g.data() + kEth + 20 + 6), 0);
  EXPECT_TRUE(ipv4ChecksumOk(g.data() + kEth));
  EXPECT_EQ(seen(g).dst, kClient);
}

TEST_F(NatTest, UdpChecksumNeverBecomesZero) {
  Bytes first = frame(udp(kClient, 5353, kVip, 53, Bytes{0, 0}));
  ASSERT_EQ(one(first).action, Action::kForward);
  const uint16_t port = seen(first).sport;
  // Choose the payload word so that the rewritten datagram's checksum
  // computes to 0, which UDP must send as 0xffff (0 means "none").
  Bytes probe = ipPacket(udp(kVip, port, kBackendUdp, 53, Bytes{0, 0}));
  wr16(&probe[26], 0);
  const uint16_t l4len = 10;
  uint32_t rest = sumBe(probe.data() + 20, l4len, pseudoSum(probe.data(), l4len));
  while (rest >> 16) rest = (rest & 0xffff) + (rest >> 16);
  const uint16_t w = static_cast<uint16_t>(~rest);
  Bytes f = frame(udp(kClient, 5353, kVip, 53, Bytes{static_cast<uint8_t>(w >> 8), static_cast<uint8_t>(w)}));
  ASSERT_NE(rd16(f.data() + kEth + 26), 0);
  EXPECT_FORWARD(one(f));
  EXPECT_EQ(rd16(f.data() + kEth + 26), 0xffff);
  EXPECT_TRUE(checksumsOk(f));
}

// ---- ICMP ----

TEST_F(NatTest, IcmpEchoToVipIsAnswered) {
  Bytes req = icmpEcho(kClient, kVip, 0x77, 3, Bytes{'p', 'i', 'n', 'g', '!'});
  Verdict v = one(req);
  EXPECT_EQ(v.action, Action::kLocal);
  EXPECT_EQ(counters_->icmpEchoReplies, 1u);
  EXPECT_EQ(0, std::memcmp(req.data(), kMacB, 6));
  EXPECT_EQ(0, std::memcmp(req.data() + 6, kMacA, 6));
  const uint8_t* ip = req.data() + kEth;
  EXPECT_EQ(rd32(ip + 12), kVip);
  EXPECT_EQ(rd32(ip + 16), kClient);
  EXPECT_EQ(ip[8], 64);
  EXPECT_EQ(ip[20], 0);  // echo reply
  EXPECT_EQ(rd16(ip + 24), 0x77);
  EXPECT_EQ(rd16(ip + 26), 3);
  EXPECT_TRUE(checksumsOk(req));
  // Also on a VIP-only address; other ICMP is not ours.
  Bytes req2 = icmpEcho(kClient, kVip2, 1, 1, Bytes{});
  EXPECT_EQ(one(req2).action, Action::kLocal);
  EXPECT_TRUE(checksumsOk(req2));
  Bytes reply = icmpEcho(kClient, kVip, 1, 1, Bytes{});
  reply[kEth + 20] = 0;
  fillChecksums(reply.data() + kEth);
  EXPECT_DROP(one(reply), DropReason::kIcmpUnhandled);
}

TEST_F(NatTest, IcmpFragNeededFromBackendSideReachesClient) {
  L4Spec synSpec = tcp(kClient, 33000, kVip, 80, kSyn);
  synSpec.payload = Bytes{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  Bytes synIn = ipPacket(synSpec);
  Bytes syn = frame(synIn);
  ASSERT_EQ(one(syn).action, Action::kForward);
  Bytes synOut(syn.begin() + kEth, syn.end());

  for (int variant = 0; variant < 3; ++variant) {
    // variant 0: the backend reports, quoting IP + 8 bytes (no TCP checksum)
    // variant 1: the backend reports, quoting the whole packet
    // variant 2: a router on the backend side reports, whole packet
    const uint32_t reporter = variant == 2 ? kRouter : kBackend1;
    const std::size_t qlen = variant == 0 ? 28 : synOut.size();
    Bytes quote(synOut.begin(), synOut.begin() + qlen);
    Bytes err = icmpError(reporter, kVip, 3, 4, 1400, quote, 50);
    ASSERT_TRUE(checksumsOk(err));
    Verdict v = one(err);
    ASSERT_EQ(v.action, Action::kForward) << dropReasonName(v.reason);
    EXPECT_TRUE(checksumsOk(err));  // outer IPv4 and ICMP over the whole message
    const uint8_t* ip = err.data() + kEth;
    EXPECT_EQ(rd32(ip + 12), variant == 2 ? kRouter : kVip);
    EXPECT_EQ(rd32(ip + 16), kClient);
    EXPECT_EQ(ip[8], 49);
    const uint8_t* icmp = ip + 20;
    EXPECT_EQ(icmp[0], 3);
    EXPECT_EQ(icmp[1], 4);
    EXPECT_EQ(rd16(icmp + 6), 1400);  // MTU preserved
    const uint8_t* qip = icmp + 8;
    EXPECT_TRUE(ipv4ChecksumOk(qip));
    EXPECT_EQ(rd32(qip + 12), kClient);
    EXPECT_EQ(rd32(qip + 16), kVip);
    const uint8_t* ql4 = qip + 20;
    EXPECT_EQ(rd16(ql4), 33000);
    EXPECT_EQ(rd16(ql4 + 2), 80);
    if (variant != 0) {
      // The quoted TCP header is now exactly the client's own segment,
      // checksum included, and verifies against the quoted addresses.
      EXPECT_EQ(Bytes(ql4, ql4 + (synIn.size() - 20)), Bytes(synIn.begin() + 20, synIn.end()));
      const uint16_t l4len = static_cast<uint16_t>(rd16(qip + 2) - 20);
      EXPECT_EQ(foldInv(sumBe(ql4, l4len, pseudoSum(qip, l4len))), 0);
    }
  }
  EXPECT_EQ(counters_->icmpErrorsTranslated, 3u);
}

TEST_F(NatTest, IcmpFragNeededUdpQuote) {
  Bytes q = frame(udp(kClient, 5353, kVip, 53, Bytes(20, 1)));
  ASSERT_EQ(one(q).action, Action::kForward);
  Bytes out(q.begin() + kEth, q.end());
  Bytes err = icmpError(kBackendUdp, kVip, 3, 3, 0, Bytes(out.begin(), out.begin() + 28));
  ASSERT_EQ(one(err).action, Action::kForward);
  EXPECT_TRUE(checksumsOk(err));
  const uint8_t* qip = err.data() + kEth + 28;
  EXPECT_TRUE(ipv4ChecksumOk(qip));
  EXPECT_EQ(rd32(qip + 12), kClient);
  EXPECT_EQ(rd16(qip + 20), 5353);
  EXPECT_EQ(rd16(qip + 22), 53);
  // The quoted UDP checksum was fixed: it equals the client's original.
  Bytes orig = ipPacket(udp(kClient, 5353, kVip, 53, Bytes(20, 1)));
  EXPECT_EQ(rd16(qip + 26), rd16(orig.data() + 26));
}

TEST_F(NatTest, IcmpFragNeededFromClientSideReachesBackend) {
  Bytes syn = frame(tcp(kClient, 33000, kVip, 80, kSyn));
  ASSERT_EQ(one(syn).action, Action::kForward);
  const uint16_t snatPort = seen(syn).sport;
  L4Spec saSpec = tcp(kBackend1, 80, kVip, snatPort, kSyn | kAck);
  saSpec.tcpOpts = tcpMssOpt(1460);
  Bytes saIn = ipPacket(saSpec);
  Bytes sa = frame(saIn);
  ASSERT_EQ(one(sa).action, Action::kForward);
  Bytes saOut(sa.begin() + kEth, sa.end());

  for (uint32_t reporter : {kClient, ip4(198, 51, 100, 1)}) {
    Bytes err = icmpError(reporter, kVip, 3, 4, 1280, saOut);
    Verdict v = one(err);
    ASSERT_EQ(v.action, Action::kForward) << dropReasonName(v.reason);
    EXPECT_TRUE(checksumsOk(err));
    const uint8_t* ip = err.data() + kEth;
    EXPECT_EQ(rd32(ip + 12), reporter == kClient ? kVip : reporter);  // SNAT address == VIP here
    EXPECT_EQ(rd32(ip + 16), kBackend1);
    EXPECT_EQ(rd16(ip + 20 + 6), 1280);
    const uint8_t* qip = ip + 28;
    EXPECT_TRUE(ipv4ChecksumOk(qip));
    EXPECT_EQ(rd32(qip + 12), kBackend1);
    EXPECT_EQ(rd32(qip + 16), kVip);
    // The quoted segment is the backend's own SYN-ACK again.
    EXPECT_EQ(Bytes(qip + 20, qip + 20 + (saIn.size() - 20)), Bytes(saIn.begin() + 20, saIn.end()));
  }
  EXPECT_EQ(counters_->icmpErrorsTranslated, 2u);
}

TEST_F(NatTest, IcmpFromClientSideWithDistinctSnatAddress) {
  // Service "two" (VIP 192.0.2.20) uses SNAT 192.0.2.10 or 192.0.2.30: the
  // outer source becomes the flow's SNAT address, not the VIP.
  Bytes syn = frame(tcp(kClient, 33000, kVip2, 443, kSyn));
  ASSERT_EQ(one(syn).action, Action::kForward);
  const Seen s = seen(syn);
  Bytes sa = frame(tcp(s.dst, 443, s.src, s.sport, kSyn | kAck));
  ASSERT_EQ(one(sa).action, Action::kForward);
  EXPECT_EQ(seen(sa).src, kVip2);
  Bytes saOut(sa.begin() + kEth, sa.end());
  Bytes err = icmpError(kClient, kVip2, 3, 4, 1300, saOut);
  ASSERT_EQ(one(err).action, Action::kForward);
  EXPECT_TRUE(checksumsOk(err));
  const uint8_t* ip = err.data() + kEth;
  EXPECT_EQ(rd32(ip + 12), s.src);  // the SNAT address
  EXPECT_EQ(rd32(ip + 16), s.dst);  // the backend
  EXPECT_EQ(rd32(ip + 28 + 12), s.dst);
  EXPECT_EQ(rd32(ip + 28 + 16), s.src);
  EXPECT_EQ(rd16(ip + 48), 443);
  EXPECT_EQ(rd16(ip + 50), s.sport);
}

TEST_F(NatTest, IcmpErrorsWithoutFlow) {
  // Quotes a packet of no flow, from either side.
  Bytes q1 = ipPacket(tcp(kVip, 40123, kBackend1, 80, kSyn));
  Bytes e1 = icmpError(kBackend1, kVip, 3, 4, 1400, Bytes(q1.begin(), q1.begin() + 28));
  EXPECT_DROP(one(e1), DropReason::kNoFlow);
  Bytes q2 = ipPacket(tcp(kVip, 80, kClient, 33000, kSyn | kAck));
  Bytes e2 = icmpError(kClient, kVip, 3, 4, 1400, Bytes(q2.begin(), q2.begin() + 28));
  EXPECT_DROP(one(e2), DropReason::kNoFlow);
  // An error quoting a packet we did not send from that address.
  Bytes q3 = ipPacket(tcp(kClient, 1, kBackend1, 80, kSyn));
  Bytes e3 = icmpError(kBackend1, kVip, 3, 4, 1400, Bytes(q3.begin(), q3.begin() + 28));
  EXPECT_DROP(one(e3), DropReason::kIcmpUnhandled);
  EXPECT_EQ(counters_->icmpErrorsTranslated, 0u);
}

TEST_F(NatTest, IcmpErrorMissHandedToPortOwner) {
  Setup s;
  s.workerId = 0;
  s.numWorkers = 2;
  s.mode = OwnerMode::kPortModulo;
  build(s);
  Bytes q = ipPacket(tcp(kVip, 40001, kBackend1, 80, kSyn));
  Bytes e = icmpError(kBackend1, kVip, 3, 4, 1400, Bytes(q.begin(), q.begin() + 28));
  Verdict v = one(e);
  EXPECT_EQ(v.action, Action::kHandoff);
  EXPECT_EQ(v.worker, 1);
}

// Client-side errors (to the VIP, quoting vip -> client) carry no SNAT
// port to find the owner by: a worker that misses passes them on round the
// workers, (w + 1) % N, each trying its own table, for at most N - 1 hops.
TEST_F(NatTest, ClientSideIcmpErrorGoesRoundTheWorkers) {
  for (OwnerMode mode : {OwnerMode::kPortModulo, OwnerMode::kRssHash}) {
    SCOPED_TRACE(static_cast<int>(mode));
    Setup s;
    s.workerId = 0;
    s.numWorkers = 3;
    s.mode = mode;
    build(s);  // the fixture's core is worker 0
    // Workers 1 and 2: their own tables, ports and counters.
    struct Other {
      std::string name;
      std::unique_ptr<FlowTable> ft;
      std::unique_ptr<PortAllocator> pa;
      std::unique_ptr<WorkerCounters> c;
      std::unique_ptr<NatCore> nat;
    };
    std::array<Other, 3> w;
    for (uint16_t id = 1; id < 3; ++id) {
      FlowTable::Params fp;
      fp.capacity = 64;
      w[id].name = "nat_test_w" + std::to_string(seq_++);
      fp.name = w[id].name.c_str();
      w[id].ft = std::make_unique<FlowTable>(fp);
      w[id].pa = std::make_unique<PortAllocator>(PortAllocator::Params{});
      w[id].c = std::make_unique<WorkerCounters>();
      NatCore::Deps d;
      d.flows = w[id].ft.get();
      d.ports = w[id].pa.get();
      d.counters = w[id].c.get();
      d.workerId = id;
      d.numWorkers = 3;
      d.ownerMode = mode;
      w[id].nat = std::make_unique<NatCore>(d);
    }
    auto core = [&](uint16_t id) -> NatCore& { return id == 0 ? *nat_ : *w[id].nat; };
    auto step = [&](uint16_t id, rte_mbuf* m, bool fromHandoff) {
      Verdict v;
      core(id).process(&m, 1, snap_, 1000, &v, fromHandoff);
      return v;
    };

    // A UDP flow created on worker 0, answered by the backend.
    Bytes q = frame(udp(kClient, 33000, kVip, 53, {1, 2, 3}));
    ASSERT_EQ(one(q).action, Action::kForward);
    const uint16_t snatPort = seen(q).sport;
    Bytes a = frame(udp(kBackendUdp, 53, kVip, snatPort, {4, 5}));
    ASSERT_EQ(one(a).action, Action::kForward);
    Bytes answer(a.begin() + kEth, a.end());

    // The client's port-unreachable arrives on worker 1, with an RSS hash
    // in the mbuf that must not be taken for a hop count.
    rte_mbuf* m = toMbuf(icmpError(kClient, kVip, 3, 3, 0, answer));
    m->hash.rss = 0xdeadbeef;
    Verdict v = step(1, m, false);
    ASSERT_EQ(v.action, Action::kHandoff);
    EXPECT_EQ(v.worker, 2);
    EXPECT_EQ(w[1].c->handoffOut, 1u);
    v = step(2, m, true);
    ASSERT_EQ(v.action, Action::kHandoff);
    EXPECT_EQ(v.worker, 0);
    EXPECT_EQ(w[2].c->handoffOut, 1u);
    v = step(0, m, true);
    ASSERT_EQ(v.action, Action::kForward) << dropReasonName(v.reason);
    EXPECT_EQ(counters_->icmpErrorsTranslated, 1u);
    const uint8_t* outData = rte_pktmbuf_mtod(m, const uint8_t*);
    Bytes out(outData, outData + rte_pktmbuf_data_len(m));
    rte_pktmbuf_free(m);
    EXPECT_TRUE(checksumsOk(out));
    const uint8_t* ip = out.data() + kEth;
    EXPECT_EQ(rd32(ip + 12), kVip);
    EXPECT_EQ(rd32(ip + 16), kBackendUdp);
    EXPECT_EQ(rd32(ip + 28 + 12), kBackendUdp);  // the backend's own datagram
    EXPECT_EQ(rd32(ip + 28 + 16), kVip);
    EXPECT_EQ(rd16(ip + 48), 53);
    EXPECT_EQ(rd16(ip + 50), snatPort);

    // On the owner itself it is translated at once, whatever the hash.
    Bytes direct = icmpError(kClient, kVip, 3, 3, 0, answer);
    EXPECT_FORWARD(one(direct));

    // An error of no flow visits each worker once, then is a miss.
    Bytes stray = ipPacket(udp(kVip, 53, kClient, 33999, {9}));
    m = toMbuf(icmpError(kClient, kVip, 3, 3, 0, stray));
    m->hash.rss = 0;
    v = step(2, m, false);
    ASSERT_EQ(v.action, Action::kHandoff);
    EXPECT_EQ(v.worker, 0);
    v = step(0, m, true);
    ASSERT_EQ(v.action, Action::kHandoff);
    EXPECT_EQ(v.worker, 1);
    v = step(1, m, true);
    EXPECT_EQ(v.action, Action::kDrop);
    EXPECT_EQ(v.reason, DropReason::kNoFlow);
    EXPECT_EQ(w[1].c->drops[static_cast<std::size_t>(DropReason::kNoFlow)], 1u);
    rte_pktmbuf_free(m);
  }
}

// ---- flush, expiry, exhaustion ----

TEST_F(NatTest, FlushedBackendDropsItsFlows) {
  // Two flows of service "two": find clients that land on both backends.
  std::vector<Bytes> syns;
  std::set<uint32_t> backends;
  for (uint16_t p = 30000; p < 30100 && backends.size() < 2; ++p) {
    Bytes f = frame(tcp(kClient, p, kVip2, 443, kSyn));
    ASSERT_EQ(one(f).action, Action::kForward);
    backends.insert(seen(f).dst);
  }
  ASSERT_EQ(backends.size(), 2u);
  const uint32_t total = ft_->size();
  uint32_t onSlot30 = 0;
  ft_->forEach([&](uint32_t, const Flow& f) { onSlot30 += f.backendSlot == 30; });
  ASSERT_GT(onSlot30, 0u);

  Snapshot flushed = makeSnapshot();
  flushed.flushedBackends.set(30);
  // A packet of a flushed flow is dropped and the flow freed at once.
  Flow victim{};
  ft_->forEach([&](uint32_t, const Flow& f) {
    if (f.backendSlot == 30) victim = f;
  });
  Bytes ack = frame(tcp(ntohl(victim.clientIp), ntohs(victim.clientPort), kVip2, 443, kAck));
  EXPECT_DROP(oneWith(ack, 2000, flushed), DropReason::kFlowFlushed);
  EXPECT_EQ(ft_->size(), total - 1);
  EXPECT_EQ(counters_->flowsFlushed, 1u);
  EXPECT_EQ(counters_->backends[30].flowsClosed, 1u);
  // The sweep removes the rest of slot 30 and nothing else.
  EXPECT_EQ(nat_->flush(flushed), onSlot30 - 1);
  EXPECT_EQ(ft_->size(), total - onSlot30);
  ft_->forEach([&](uint32_t, const Flow& f) { EXPECT_EQ(f.backendSlot, 31); });
  EXPECT_EQ(counters_->flowsFlushed, onSlot30);
  EXPECT_EQ(counters_->backends[30].flowsClosed, onSlot30);
  EXPECT_EQ(counters_->services[3].flowsClosed, onSlot30);
  // Ports were released.
  uint32_t live = 0;
  for (uint32_t p = 0; p < pa_->maxPools(); ++p) live += pa_->inUse(p);
  EXPECT_EQ(live, ft_->size());
  // Flows of other backends keep working under the flushing snapshot.
  Flow other{};
  ft_->forEach([&](uint32_t, const Flow& f) { other = f; });
  Bytes ok = frame(tcp(ntohl(other.clientIp), ntohs(other.clientPort), kVip2, 443, kAck));
  EXPECT_FORWARD(oneWith(ok, 2000, flushed));
}

TEST_F(NatTest, TwoPacketsOfAFlushedFlowInOneBurst) {
  Bytes syn = frame(tcp(kClient, 33000, kVip, 80, kSyn));
  ASSERT_EQ(one(syn).action, Action::kForward);
  Snapshot flushed = makeSnapshot();
  flushed.flushedBackends.set(10);
  // The flow is freed by the first packet; the second must not use the
  // stale bulk-lookup result for the freed record.
  std::vector<Bytes> fs{frame(tcp(kClient, 33000, kVip, 80, kAck)),
                        frame(tcp(kClient, 33000, kVip, 80, kAck))};
  auto v = burstWith(fs, 2000, flushed);
  EXPECT_DROP(v[0], DropReason::kFlowFlushed);
  EXPECT_DROP(v[1], DropReason::kNoFlow);
  EXPECT_EQ(ft_->size(), 0u);
  EXPECT_EQ(counters_->flowsFlushed, 1u);
  EXPECT_EQ(pa_->inUse(0), 0u);
}

// What keeps a flush from stalling the worker loop: each step visits at
// most `budget` records and removes at most ceil(budget / (1 +
// kSweepRemoveCost)) flows (a removal costs a visit and kSweepRemoveCost
// more), always moves its cursor on, and the steps together remove every
// flushed flow exactly once. The same for clearStep.
TEST_F(NatTest, FlushAndClearStepsStayWithinTheirBudget) {
  constexpr uint32_t kFlows = 100;
  constexpr uint32_t kUnit = 1 + NatCore::kSweepRemoveCost;
  Snapshot flushed = makeSnapshot();
  flushed.flushedBackends.set(10);
  for (uint32_t budget : {1u, 40u, 256u}) {
    for (bool clear : {false, true}) {
      for (uint16_t p = 0; p < kFlows; ++p) {
        Bytes f = frame(tcp(kClient, static_cast<uint16_t>(21000 + p), kVip, 80, kSyn));
        EXPECT_FORWARD(one(f));
      }
      ASSERT_EQ(ft_->size(), kFlows);
      const uint64_t flushed0 = counters_->flowsFlushed;
      const uint64_t expired0 = counters_->flowsExpired;
      const uint32_t maxRemovals = (budget + kUnit - 1) / kUnit;
      uint32_t total = 0;
      uint32_t steps = 0;
      for (uint32_t cursor = 0; cursor < ft_->capacity(); ++steps) {
        const uint32_t before = ft_->size();
        uint32_t removed = 0;
        const uint32_t next =
            clear ? nat_->clearStep(cursor, budget, &removed) : nat_->flushStep(flushed, cursor, budget, &removed);
        ASSERT_GT(next, cursor) << "budget " << budget;
        EXPECT_LE(next - cursor, budget) << "budget " << budget;
        EXPECT_LE(removed, maxRemovals) << "budget " << budget;
        EXPECT_EQ(before - ft_->size(), removed);
        total += removed;
        cursor = next;
      }
      EXPECT_EQ(total, kFlows) << "budget " << budget;
      EXPECT_GE(steps, (kFlows + maxRemovals - 1) / maxRemovals);
      EXPECT_EQ(ft_->size(), 0u);
      EXPECT_EQ(pa_->inUse(0), 0u);
      EXPECT_EQ(counters_->flowsFlushed - flushed0, clear ? 0u : kFlows);
      EXPECT_EQ(counters_->flowsExpired - expired0, clear ? kFlows : 0u);
    }
  }
}

// A burst in which every bulk lookup hits makes no plan for new flows;
// a flow removed in the burst can still make a later packet a miss that
// opens a flow (a SYN on the flushed flow's tuple), which then works out
// its backend, pool and reply hash without one.
TEST_F(NatTest, NewFlowWithoutAPlanAfterAFlushInTheBurst) {
  Bytes syn = frame(tcp(kClient, 33000, kVip, 80, kSyn));
  ASSERT_EQ(one(syn).action, Action::kForward);
  const uint16_t oldPort = seen(syn).sport;
  Snapshot flushed = makeSnapshot();
  flushed.flushedBackends.set(10);
  std::vector<Bytes> fs{frame(tcp(kClient, 33000, kVip, 80, kAck)),
                        frame(tcp(kClient, 33000, kVip, 80, kSyn))};
  auto v = burstWith(fs, 2000, flushed);
  EXPECT_DROP(v[0], DropReason::kFlowFlushed);
  EXPECT_FORWARD(v[1]);
  EXPECT_TRUE(checksumsOk(fs[1]));
  EXPECT_EQ(ft_->size(), 1u);
  const uint16_t port = seen(fs[1]).sport;
  EXPECT_NE(port, oldPort);  // the flushed flow's port went to the tail of the ring
  // Its reply finds it (stored under the right hash) on the snapshot without the flush.
  Bytes r = frame(tcp(kBackend1, 80, kVip, port, kSyn | kAck));
  EXPECT_FORWARD(one(r));
  EXPECT_EQ(seen(r).dst, kClient);
  EXPECT_EQ(seen(r).dport, 33000);
}

TEST_F(NatTest, ExpiryReleasesPorts) {
  Setup s;
  s.portMin = s.portMax = 40000;  // one port per pool
  build(s);
  Bytes a = frame(tcp(kClient, 33000, kVip, 80, kSyn));
  EXPECT_FORWARD(one(a, 1000));
  EXPECT_EQ(seen(a).sport, 40000);
  // Established, so early drop cannot recycle it.
  Bytes sa = frame(tcp(kBackend1, 80, kVip, 40000, kSyn | kAck));
  EXPECT_FORWARD(one(sa, 1000));
  Bytes ack = frame(tcp(kClient, 33000, kVip, 80, kAck));
  EXPECT_FORWARD(one(ack, 1000));
  Bytes b = frame(tcp(kClient2, 33000, kVip, 80, kSyn));
  EXPECT_DROP(one(b, 1000), DropReason::kSnatPortsExhausted);
  EXPECT_EQ(drops(DropReason::kSnatPortsExhausted), 1u);

  // Not yet idle for the ESTABLISHED timeout.
  EXPECT_EQ(nat_->expire(1000 + 349'000, 100), 0u);
  EXPECT_EQ(nat_->expire(1000 + 350'000, 100), 1u);
  EXPECT_EQ(ft_->size(), 0u);
  EXPECT_EQ(counters_->flowsExpired, 1u);
  EXPECT_EQ(counters_->backends[10].flowsClosed, 1u);
  EXPECT_EQ(counters_->services[1].flowsClosed, 1u);
  EXPECT_EQ(pa_->doubleFrees(), 0u);

  Bytes c = frame(tcp(kClient2, 33000, kVip, 80, kSyn));
  EXPECT_FORWARD(one(c, 400000));
  EXPECT_EQ(seen(c).sport, 40000);
  EXPECT_EQ(onlyFlow().clientIp, net(kClient2));
}

TEST_F(NatTest, SecondSnatAddressUsedWhenFirstExhausted) {
  Setup s;
  s.portMin = s.portMax = 40000;
  build(s);
  // Service "two" has two SNAT addresses; restrict it to one backend so all
  // flows share the (snat, backend) tuples.
  snap_.services[2].backends.resize(1);
  buildMaglevFor(snap_.services[2]);
  snap_.buildIndexes({net(kVip)});
  std::set<uint32_t> snats;
  for (uint16_t p = 0; p < 2; ++p) {
    Bytes f = frame(tcp(kClient, static_cast<uint16_t>(33000 + p), kVip2, 443, kSyn));
    EXPECT_FORWARD(one(f));
    EXPECT_EQ(seen(f).sport, 40000);
    EXPECT_TRUE(checksumsOk(f));
    snats.insert(seen(f).src);
  }
  EXPECT_EQ(snats, (std::set<uint32_t>{kVip, kSnat2}));
  // Replies reach the right flow on each SNAT address; the handshakes
  // complete, so neither flow can be recycled by early drop.
  for (uint32_t snat : {kVip, kSnat2}) {
    Bytes r = frame(tcp(kBackend1, 443, snat, 40000, kSyn | kAck));
    EXPECT_FORWARD(one(r));
    EXPECT_EQ(seen(r).src, kVip2);
    EXPECT_EQ(seen(r).dst, kClient);
  }
  for (uint16_t p = 0; p < 2; ++p) {
    Bytes ack = frame(tcp(kClient, static_cast<uint16_t>(33000 + p), kVip2, 443, kAck));
    EXPECT_FORWARD(one(ack));
  }
  Bytes f = frame(tcp(kClient, 33002, kVip2, 443, kSyn));
  EXPECT_DROP(one(f), DropReason::kSnatPortsExhausted);
}

TEST_F(NatTest, SnatAddressChoiceSpreadsFlows) {
  std::set<uint32_t> snats;
  for (uint16_t p = 0; p < 64; ++p) {
    Bytes f = frame(tcp(kClient, static_cast<uint16_t>(20000 + p), kVip2, 443, kSyn));
    EXPECT_FORWARD(one(f));
    snats.insert(seen(f).src);
  }
  EXPECT_EQ(snats.size(), 2u);
}

TEST_F(NatTest, PoolsExhausted) {
  PortAllocator::Params pp;
  pp.maxPools = 1;
  PortAllocator tiny(pp);
  NatCore::Deps d;
  d.flows = ft_.get();
  d.ports = &tiny;
  d.counters = counters_.get();
  NatCore nat(d);
  // Six tuples, one slot: the first (web's) gets it, the others none.
  SnatPools pools(SnatPools::Params{{&tiny}, {}, {}});
  Snapshot snap = snap_;
  EXPECT_EQ(pools.prepare(snap), 5u);
  Bytes a = frame(tcp(kClient, 33000, kVip, 80, kSyn));
  Bytes b = frame(udp(kClient, 33000, kVip, 53, Bytes{1}));
  rte_mbuf* ms[2] = {toMbuf(a), toMbuf(b)};
  Verdict v[2];
  nat.process(ms, 2, snap, 1000, v);
  rte_pktmbuf_free(ms[0]);
  rte_pktmbuf_free(ms[1]);
  EXPECT_FORWARD(v[0]);
  EXPECT_DROP(v[1], DropReason::kSnatPoolsExhausted);
  nat.clear();
}

TEST_F(NatTest, FlowTableFullKeepsEstablishedFlows) {
  Setup s;
  s.capacity = 2;
  build(s);
  Bytes a = frame(tcp(kClient, 1001, kVip, 80, kSyn));
  Bytes b = frame(tcp(kClient, 1002, kVip, 80, kSyn));
  EXPECT_FORWARD(one(a));
  EXPECT_FORWARD(one(b));
  // Both established: nothing early drop may recycle.
  for (const Bytes* f : {&a, &b}) {
    const Seen o = seen(*f);
    Bytes r = frame(tcp(o.dst, 80, o.src, o.sport, kSyn | kAck));
    EXPECT_FORWARD(one(r));
    Bytes ack = frame(tcp(kClient, o.sport == seen(a).sport ? 1001 : 1002, kVip, 80, kAck));
    EXPECT_FORWARD(one(ack));
  }
  EXPECT_EQ(ft_->count(FlowState::kEstablished), 2u);
  Bytes c = frame(tcp(kClient, 1003, kVip, 80, kSyn));
  EXPECT_DROP(one(c), DropReason::kFlowTableFull);
  Bytes u = frame(udp(kClient, 1003, kVip, 53, Bytes{1}));
  EXPECT_DROP(one(u), DropReason::kFlowTableFull);
  EXPECT_EQ(drops(DropReason::kFlowTableFull), 2u);
  // No port leaked by the refusals.
  uint32_t live = 0;
  for (uint32_t p = 0; p < pa_->maxPools(); ++p) live += pa_->inUse(p);
  EXPECT_EQ(live, 2u);
  // Both existing flows still work both ways.
  for (const Bytes* f : {&a, &b}) {
    const Seen o = seen(*f);
    Bytes r = frame(tcp(o.dst, 80, o.src, o.sport, kAck));
    EXPECT_FORWARD(one(r));
    EXPECT_EQ(seen(r).dst, kClient);
  }
  Bytes ack = frame(tcp(kClient, 1001, kVip, 80, kAck));
  EXPECT_FORWARD(one(ack));
  EXPECT_EQ(ft_->size(), 2u);
  EXPECT_EQ(counters_->earlyDrops, (std::array<uint64_t, kFlowStateCount>{}));
}

// ---- sequence-checked RST and SYN ----

// The issue's attack through the NAT, with the clock injected: three RSTs
// 2^30 apart spoofed from the backend at the SNAT port are dropped
// (rst_out_of_window) and the flow lives on past the closed timeout; an
// in-window RST is passed on and closes the flow, which then goes at the
// closed timeout.
TEST_F(NatTest, OutOfWindowRstIsDroppedInWindowRstCloses) {
  Bytes syn = frame(tcp(kClient, 33000, kVip, 80, kSyn));
  EXPECT_FORWARD(one(syn, 1000));
  const uint16_t sport = seen(syn).sport;
  Bytes sa = frame(tcp(kBackend1, 80, kVip, sport, kSyn | kAck));
  EXPECT_FORWARD(one(sa, 1000));
  Bytes ack = frame(tcp(kClient, 33000, kVip, 80, kAck));
  EXPECT_FORWARD(one(ack, 1000));
  ASSERT_EQ(onlyFlow().state, FlowState::kEstablished);
  for (uint32_t k = 1; k <= 3; ++k) {
    L4Spec r = tcp(kBackend1, 80, kVip, sport, kRst);
    r.seq = 1001 + k * (1u << 30);
    Bytes rst = frame(r);
    EXPECT_DROP(one(rst, 2000), DropReason::kRstOutOfWindow);
  }
  EXPECT_EQ(drops(DropReason::kRstOutOfWindow), 3u);
  EXPECT_EQ(onlyFlow().state, FlowState::kEstablished);
  // The closed timeout (10 s) passes and more: the flow is still there.
  EXPECT_EQ(nat_->expire(2000 + 12'000, 100), 0u);
  L4Spec d = tcp(kClient, 33000, kVip, 80, kAck | kPsh);
  d.seq = 1001;
  d.payload = Bytes(100, 'x');
  Bytes data = frame(d);
  EXPECT_FORWARD(one(data, 14'000));
  // In window: passed on, the flow closes and goes 10 s later.
  L4Spec r = tcp(kBackend1, 80, kVip, sport, kRst);
  r.seq = 1001;
  Bytes rst = frame(r);
  EXPECT_FORWARD(one(rst, 15'000));
  EXPECT_EQ(seen(rst).dst, kClient);
  EXPECT_EQ(onlyFlow().state, FlowState::kClosed);
  EXPECT_EQ(nat_->expire(15'000 + 9'999, 100), 0u);
  EXPECT_EQ(nat_->expire(15'000 + 10'000, 100), 1u);
  EXPECT_EQ(pa_->doubleFrees(), 0u);
}

// A SYN on an established flow (new sequence number, same ports) is passed
// to the backend but the flow keeps its state and its timeout; a SYN-ACK
// acknowledging it restarts the flow in SYN_RECV.
TEST_F(NatTest, SynOnEstablishedFlowIsPassedOnWithoutResettingIt) {
  Bytes syn = frame(tcp(kClient, 33000, kVip, 80, kSyn));
  EXPECT_FORWARD(one(syn, 1000));
  const uint16_t sport = seen(syn).sport;
  Bytes sa = frame(tcp(kBackend1, 80, kVip, sport, kSyn | kAck));
  EXPECT_FORWARD(one(sa, 1000));
  Bytes ack = frame(tcp(kClient, 33000, kVip, 80, kAck));
  EXPECT_FORWARD(one(ack, 1000));
  L4Spec s2 = tcp(kClient, 33000, kVip, 80, kSyn);
  s2.seq = 7'000'000;
  Bytes syn2 = frame(s2);
  EXPECT_FORWARD(one(syn2, 2000));
  EXPECT_EQ(seen(syn2).dst, kBackend1);
  EXPECT_EQ(seen(syn2).sport, sport);
  EXPECT_EQ(onlyFlow().state, FlowState::kEstablished);
  EXPECT_EQ(counters_->tcpSynIgnored, 1u);
  // Not moved to SYN_SENT: the 30 s SYN_SENT timeout does not apply.
  EXPECT_EQ(nat_->expire(2000 + 31'000, 100), 0u);
  // A spoofed SYN-ACK for another SYN changes nothing either.
  L4Spec bogus = tcp(kBackend1, 80, kVip, sport, kSyn | kAck);
  bogus.seq = 1;
  bogus.ack = 12345;
  Bytes b = frame(bogus);
  EXPECT_FORWARD(one(b, 34'000));
  EXPECT_EQ(onlyFlow().state, FlowState::kEstablished);
  // The backend confirms the new connection.
  L4Spec sa2 = tcp(kBackend1, 80, kVip, sport, kSyn | kAck);
  sa2.seq = 9'000'000;
  sa2.ack = 7'000'001;
  Bytes c = frame(sa2);
  EXPECT_FORWARD(one(c, 35'000));
  EXPECT_EQ(onlyFlow().state, FlowState::kSynRecv);
  EXPECT_EQ(counters_->tcpResynced, 1u);
  // The old connection's sequence numbers are out of window now.
  L4Spec old = tcp(kBackend1, 80, kVip, sport, kRst);
  old.seq = 1001;
  Bytes o = frame(old);
  EXPECT_DROP(one(o, 36'000), DropReason::kRstOutOfWindow);
}

// ---- early drop ----

uint64_t earlyDrops(const WorkerCounters& c, FlowState s) { return c.earlyDrops[static_cast<std::size_t>(s)]; }

// A full table recycles its oldest unassured flow (SYN_SENT, SYN_RECV or
// unreplied UDP) for a new one, and never an established one.
TEST_F(NatTest, FullTableEarlyDropsTheOldestUnassuredFlow) {
  Setup s;
  s.capacity = 4;
  build(s);
  // 1001: established; 1002: SYN_RECV; 1003: unreplied UDP; 1004: SYN_SENT,
  // created in that order at increasing times.
  Bytes a = frame(tcp(kClient, 1001, kVip, 80, kSyn));
  EXPECT_FORWARD(one(a, 1000));
  Bytes sa = frame(tcp(kBackend1, 80, kVip, seen(a).sport, kSyn | kAck));
  EXPECT_FORWARD(one(sa, 1000));
  Bytes ack = frame(tcp(kClient, 1001, kVip, 80, kAck));
  EXPECT_FORWARD(one(ack, 1000));
  Bytes b = frame(tcp(kClient, 1002, kVip, 80, kSyn));
  EXPECT_FORWARD(one(b, 1001));
  Bytes sb = frame(tcp(kBackend1, 80, kVip, seen(b).sport, kSyn | kAck));
  EXPECT_FORWARD(one(sb, 1002));
  Bytes u = frame(udp(kClient, 1003, kVip, 53, Bytes{1}));
  EXPECT_FORWARD(one(u, 1003));
  Bytes d = frame(tcp(kClient, 1004, kVip, 80, kSyn));
  EXPECT_FORWARD(one(d, 1004));
  EXPECT_EQ(ft_->size(), 4u);

  // Three new flows: each recycles the oldest unassured flow left, in the
  // order they became what they are (SYN_RECV at 1002, UDP at 1003,
  // SYN_SENT at 1004).
  const FlowState victims[] = {FlowState::kSynRecv, FlowState::kUdpUnreplied, FlowState::kSynSent};
  for (int i = 0; i < 3; ++i) {
    Bytes n = frame(tcp(kClient2, static_cast<uint16_t>(2000 + i), kVip, 80, kSyn));
    EXPECT_FORWARD(one(n, 2000 + i));
    EXPECT_EQ(earlyDrops(*counters_, victims[i]), 1u) << i;
    EXPECT_EQ(ft_->size(), 4u);
  }
  EXPECT_EQ(drops(DropReason::kFlowTableFull), 0u);
  // The victims' packets now miss; the established flow is untouched.
  Bytes lateAck = frame(tcp(kClient, 1002, kVip, 80, kAck));
  EXPECT_DROP(one(lateAck, 3000), DropReason::kNoFlow);
  Bytes data = frame(tcp(kClient, 1001, kVip, 80, kAck | kPsh));
  EXPECT_FORWARD(one(data, 3000));
  EXPECT_EQ(ft_->count(FlowState::kEstablished), 1u);
  EXPECT_EQ(ft_->count(FlowState::kSynSent), 3u);
  // The three new flows are SYN_SENT and the oldest goes first again; with
  // those gone only the established flow is left and the table refuses.
  for (int i = 0; i < 3; ++i) {
    Bytes n = frame(tcp(kClient2, static_cast<uint16_t>(3000 + i), kVip, 80, kSyn));
    EXPECT_FORWARD(one(n, 4000));
    const Seen o = seen(n);
    Bytes r = frame(tcp(o.dst, 80, o.src, o.sport, kSyn | kAck));
    EXPECT_FORWARD(one(r, 4000));
    Bytes f = frame(tcp(kClient2, static_cast<uint16_t>(3000 + i), kVip, 80, kAck));
    EXPECT_FORWARD(one(f, 4000));
  }
  Bytes refused = frame(tcp(kClient2, 3999, kVip, 80, kSyn));
  EXPECT_DROP(one(refused, 4000), DropReason::kFlowTableFull);
  EXPECT_EQ(earlyDrops(*counters_, FlowState::kSynSent), 4u);
  EXPECT_EQ(ft_->count(FlowState::kEstablished), 4u);
  // Every port a victim held went back exactly once.
  uint32_t live = 0;
  for (uint32_t p = 0; p < pa_->maxPools(); ++p) live += pa_->inUse(p);
  EXPECT_EQ(live, 4u);
  EXPECT_EQ(pa_->doubleFrees(), 0u);
  EXPECT_EQ(counters_->flowsCreated - counters_->flowsExpired - counters_->flowsFlushed -
                earlyDrops(*counters_, FlowState::kSynSent) - earlyDrops(*counters_, FlowState::kSynRecv) -
                earlyDrops(*counters_, FlowState::kUdpUnreplied),
            ft_->size());
}

// An exhausted pool recycles the oldest unassured flow holding one of ITS
// ports, even when another pool's unassured flows are older.
TEST_F(NatTest, ExhaustedPoolEarlyDropsOnlyItsOwnFlows) {
  Setup s;
  s.portMin = 40000;
  s.portMax = 40002;  // three ports per pool
  build(s);
  // Pool of dns (UDP to 203.0.113.21:53): three unreplied flows, oldest.
  for (uint16_t p = 0; p < 3; ++p) {
    Bytes u = frame(udp(kClient, static_cast<uint16_t>(6000 + p), kVip, 53, Bytes{1}));
    EXPECT_FORWARD(one(u, 1000 + p));
  }
  // Pool of web (TCP to 203.0.113.11:80): one established, two SYN_SENT.
  Bytes e = frame(tcp(kClient, 7000, kVip, 80, kSyn));
  EXPECT_FORWARD(one(e, 2000));
  Bytes se = frame(tcp(kBackend1, 80, kVip, seen(e).sport, kSyn | kAck));
  EXPECT_FORWARD(one(se, 2000));
  Bytes ae = frame(tcp(kClient, 7000, kVip, 80, kAck));
  EXPECT_FORWARD(one(ae, 2000));
  for (uint16_t p = 1; p < 3; ++p) {
    Bytes f = frame(tcp(kClient, static_cast<uint16_t>(7000 + p), kVip, 80, kSyn));
    EXPECT_FORWARD(one(f, 3000 + p));
  }
  // A new web flow takes the port of the oldest web SYN_SENT flow (7001).
  Bytes n = frame(tcp(kClient2, 7100, kVip, 80, kSyn));
  EXPECT_FORWARD(one(n, 4000));
  EXPECT_EQ(earlyDrops(*counters_, FlowState::kSynSent), 1u);
  EXPECT_EQ(earlyDrops(*counters_, FlowState::kUdpUnreplied), 0u);
  EXPECT_EQ(ft_->count(FlowState::kUdpUnreplied), 3u);
  Bytes gone = frame(tcp(kClient, 7001, kVip, 80, kAck));
  EXPECT_DROP(one(gone, 4000), DropReason::kNoFlow);
  Bytes kept = frame(tcp(kClient, 7002, kVip, 80, kSyn));
  EXPECT_FORWARD(one(kept, 4000));  // a retransmission of a live flow
  // Next: 7002, then 7100; the established flow never.
  Bytes n2 = frame(tcp(kClient2, 7101, kVip, 80, kSyn));
  EXPECT_FORWARD(one(n2, 4001));
  Bytes n3 = frame(tcp(kClient2, 7102, kVip, 80, kSyn));
  EXPECT_FORWARD(one(n3, 4002));
  Bytes n4 = frame(tcp(kClient2, 7103, kVip, 80, kSyn));
  EXPECT_FORWARD(one(n4, 4003));
  EXPECT_EQ(earlyDrops(*counters_, FlowState::kSynSent), 4u);
  Bytes stillThere = frame(tcp(kClient, 7000, kVip, 80, kAck | kPsh));
  EXPECT_FORWARD(one(stillThere, 4004));
  // A replied UDP flow is no longer prey: reply to all three, then a new
  // datagram finds its pool exhausted and refused.
  for (uint16_t port = 40000; port <= 40002; ++port) {
    Bytes r = frame(udp(kBackendUdp, 53, kVip, port, Bytes{2}));
    EXPECT_FORWARD(one(r, 5000));
  }
  EXPECT_EQ(ft_->count(FlowState::kUdp), 3u);
  Bytes u4 = frame(udp(kClient2, 6100, kVip, 53, Bytes{1}));
  EXPECT_DROP(one(u4, 5000), DropReason::kSnatPortsExhausted);
  EXPECT_EQ(pa_->doubleFrees(), 0u);
}

// Early drop inside one burst. Flow 1 exists before the burst; the burst's
// first SYN recycles it, and the new flow gets flow 1's record (the free
// list is last in, first out), so the bulk lookup's result for the next
// packet of flow 1 names a record that now belongs to flow 2: it must be
// looked up again and miss, not be rewritten as flow 2.
TEST_F(NatTest, EarlyDropInsideOneBurst) {
  Setup s;
  s.portMin = s.portMax = 40000;  // one port
  build(s);
  Bytes first = frame(tcp(kClient, 1, kVip, 80, kSyn));
  EXPECT_FORWARD(one(first, 1000));
  std::vector<Bytes> fs;
  fs.push_back(frame(tcp(kClient, 2, kVip, 80, kSyn)));  // recycles 1
  fs.push_back(frame(tcp(kClient, 1, kVip, 80, kAck)));  // 1 is gone: no_flow
  fs.push_back(frame(tcp(kClient, 3, kVip, 80, kSyn)));  // recycles 2
  fs.push_back(frame(tcp(kClient, 2, kVip, 80, kAck)));  // 2 is gone: no_flow
  fs.push_back(frame(tcp(kClient, 3, kVip, 80, kSyn)));  // retransmission: same flow
  const auto v = burst(fs, 2000);
  EXPECT_EQ(v[0].action, Action::kForward);
  EXPECT_EQ(v[1].action, Action::kDrop);
  EXPECT_EQ(v[1].reason, DropReason::kNoFlow);
  EXPECT_EQ(v[2].action, Action::kForward);
  EXPECT_EQ(v[3].action, Action::kDrop);
  EXPECT_EQ(v[3].reason, DropReason::kNoFlow);
  EXPECT_EQ(v[4].action, Action::kForward);
  EXPECT_EQ(seen(fs[4]).sport, 40000);
  EXPECT_EQ(onlyFlow().clientPort, net16(3));
  EXPECT_EQ(earlyDrops(*counters_, FlowState::kSynSent), 2u);
  EXPECT_EQ(pa_->doubleFrees(), 0u);
}

// ---- MSS clamping ----

TEST_F(NatTest, MssClampOnSynAndSynAck) {
  snap_ = makeSnapshot(1200);
  // Aligned option.
  L4Spec s1 = tcp(kClient, 33000, kVip, 80, kSyn);
  s1.tcpOpts = tcpMssOpt(1460);
  Bytes f1 = frame(s1);
  EXPECT_FORWARD(one(f1));
  EXPECT_EQ(rd16(f1.data() + kEth + 20 + 22), 1200);
  EXPECT_TRUE(checksumsOk(f1));
  EXPECT_EQ(counters_->mssClamped, 1u);

  // Odd offset: NOP, MSS, then NOP NOP NOP; MSS value straddles words.
  L4Spec s2 = tcp(kClient, 33001, kVip, 80, kSyn);
  s2.tcpOpts = {1, 2, 4, 0x05, 0xb4, 1, 1, 1};
  Bytes f2 = frame(s2);
  EXPECT_FORWARD(one(f2));
  EXPECT_EQ(rd16(f2.data() + kEth + 20 + 23), 1200);
  EXPECT_TRUE(checksumsOk(f2));
  EXPECT_EQ(counters_->mssClamped, 2u);

  // Already below: untouched.
  L4Spec s3 = tcp(kClient, 33002, kVip, 80, kSyn);
  s3.tcpOpts = tcpMssOpt(1000);
  Bytes f3 = frame(s3);
  EXPECT_FORWARD(one(f3));
  EXPECT_EQ(rd16(f3.data() + kEth + 20 + 22), 1000);
  EXPECT_EQ(counters_->mssClamped, 2u);

  // Backend SYN-ACK is clamped too.
  L4Spec sa = tcp(kBackend1, 80, kVip, seen(f1).sport, kSyn | kAck);
  sa.tcpOpts = {2, 4, 0x23, 0x28, 1, 3, 3, 7};  // MSS 9000, NOP, wscale 7
  Bytes fa = frame(sa);
  EXPECT_FORWARD(one(fa));
  EXPECT_EQ(rd16(fa.data() + kEth + 20 + 22), 1200);
  EXPECT_EQ(fa[kEth + 20 + 27], 7);  // other options untouched
  EXPECT_TRUE(checksumsOk(fa));
  EXPECT_EQ(counters_->mssClamped, 3u);

  // Non-SYN segments are never touched even if they carry the bytes.
  L4Spec d = tcp(kClient, 33000, kVip, 80, kAck);
  d.tcpOpts = tcpMssOpt(1460);
  Bytes fd = frame(d);
  EXPECT_FORWARD(one(fd));
  EXPECT_EQ(rd16(fd.data() + kEth + 20 + 22), 1460);
  EXPECT_EQ(counters_->mssClamped, 3u);

  // A malformed option list (length 0) is left alone and still forwarded.
  L4Spec bad = tcp(kClient, 33003, kVip, 80, kSyn);
  bad.tcpOpts = {3, 0, 2, 4, 0x05, 0xb4, 0, 0};
  Bytes fb = frame(bad);
  EXPECT_FORWARD(one(fb));
  EXPECT_EQ(rd16(fb.data() + kEth + 20 + 24), 1460);
  EXPECT_TRUE(checksumsOk(fb));
  EXPECT_EQ(counters_->mssClamped, 3u);
}

TEST_F(NatTest, NoMssClampWhenNotConfigured) {
  L4Spec s1 = tcp(kClient, 33000, kVip, 80, kSyn);
  s1.tcpOpts = tcpMssOpt(1460);
  Bytes f1 = frame(s1);
  EXPECT_FORWARD(one(f1));
  EXPECT_EQ(rd16(f1.data() + kEth + 20 + 22), 1460);
  EXPECT_EQ(counters_->mssClamped, 0u);
}

// ---- reconfiguration ----

TEST_F(NatTest, BackendChangeDoesNotMoveExistingFlows) {
  // Flows to both backends of "two".
  std::vector<std::pair<uint16_t, uint32_t>> flows;  // client port -> backend
  for (uint16_t p = 30000; p < 30040; ++p) {
    Bytes f = frame(tcp(kClient, p, kVip2, 443, kSyn));
    ASSERT_EQ(one(f).action, Action::kForward);
    flows.emplace_back(p, seen(f).dst);
  }
  // New snapshot: backend 1 removed, a new backend added. The Maglev table
  // changes completely for some clients.
  Snapshot next = makeSnapshot();
  next.generation = 2;
  next.services[2].backends = {backend(kBackend2, 443, 31), backend(ip4(203, 0, 113, 13), 443, 32)};
  buildMaglevFor(next.services[2]);
  next.buildIndexes({net(kVip)});
  for (auto [port, be] : flows) {
    Bytes f = frame(tcp(kClient, port, kVip2, 443, kAck));
    EXPECT_FORWARD(oneWith(f, 2000, next));
    EXPECT_EQ(seen(f).dst, be);
  }
  // New flows only use the new set.
  bool sawNew = false;
  for (uint16_t p = 31000; p < 31040; ++p) {
    Bytes f = frame(tcp(kClient, p, kVip2, 443, kSyn));
    EXPECT_FORWARD(oneWith(f, 2000, next));
    EXPECT_NE(seen(f).dst, kBackend1);
    sawNew = sawNew || seen(f).dst == ip4(203, 0, 113, 13);
  }
  EXPECT_TRUE(sawNew);
}

// DNS churn through the NAT core with the pool lifecycle straitd runs:
// 10,000 distinct backend addresses each become the "dns" service's only
// backend in turn (one snapshot per DNS answer), get three flows, and are
// replaced 10 s later; unreplied UDP flows expire after 30 s, so a few
// removed backends hold ports at any time. Each snapshot is prepared
// (SnatPools) and published, the replaced one is freed after a grace
// period (the worker passes a quiescent point after every iteration), and
// collect() retires pools through one more. Checked on every iteration:
// every live flow's pool is still assigned to its tuple (a pool of a
// removed backend is never retired while a flow holds one of its ports),
// the pool count (what strait_snat_pools counts per worker) stays bounded,
// and the slots ever loaded (the pool memory touched) stop growing.
TEST_F(NatTest, DnsChurnOverTenThousandBackendsKeepsThePoolsFlat) {
  constexpr uint32_t kBackends = 10'000;
  uint64_t graceStarted = 0, gracePassed = 0;
  SnatPools pools(SnatPools::Params{
      {pa_.get()}, [&] { return ++graceStarted; }, [&](uint64_t t) { return t <= gracePassed; }});
  struct Retired {
    std::unique_ptr<Snapshot> snap;
    uint64_t token;
  };
  std::deque<Retired> retired;
  std::unique_ptr<Snapshot> current;
  auto publish = [&](std::unique_ptr<Snapshot> next) {
    EXPECT_EQ(pools.prepare(*next), 0u);
    if (current) retired.push_back({std::move(current), ++graceStarted});
    current = std::move(next);
  };
  auto reclaim = [&] {
    while (!retired.empty() && retired.front().token <= gracePassed) {
      pools.release(*retired.front().snap);
      retired.pop_front();
    }
    pools.collect();
  };

  uint32_t now = 1000;
  uint32_t maxActive = 0;
  uint32_t touchedAfterWarmUp = 0;
  for (uint32_t b = 0; b < kBackends; ++b) {
    auto snap = std::make_unique<Snapshot>(makeSnapshot());
    snap->generation = 2 + b;
    // 198.18.0.0/15, the benchmarking range: 10,000 distinct addresses.
    const uint32_t addr = ip4(198, 18, 0, 0) + b;
    snap->services[1].backends = {backend(addr, 53, static_cast<uint16_t>(100 + b % 64))};
    buildMaglevFor(snap->services[1]);
    snap->buildIndexes({net(kVip)});
    publish(std::move(snap));
    for (uint16_t c = 0; c < 3; ++c) {
      Bytes q = frame(udp(kClient, static_cast<uint16_t>(20000 + (b * 3 + c) % 40000), kVip, 53, Bytes{1}));
      rte_mbuf* m = toMbuf(q);
      Verdict v;
      nat_->process(&m, 1, *current, now, &v);
      rte_pktmbuf_free(m);
      ASSERT_EQ(v.action, Action::kForward) << "backend " << b << ": " << dropReasonName(v.reason);
    }
    nat_->expire(now, 1000, current.get());
    gracePassed = graceStarted;  // the worker's quiescent point
    reclaim();

    std::map<uint32_t, PoolKey> active;
    pools.forEachActive([&](uint32_t slot, const PoolKey& k) { active.emplace(slot, k); });
    ASSERT_EQ(active.size(), pools.active());
    ft_->forEach([&](uint32_t, const Flow& f) {
      auto it = active.find(f.pool);
      ASSERT_NE(it, active.end()) << "backend " << b << ": a flow's pool was retired";
      EXPECT_EQ(it->second.backendIp, f.backendIp);
      EXPECT_GE(pa_->inUse(f.pool), 1u);
    });
    maxActive = std::max(maxActive, pools.active());
    if (b == 100) touchedAfterWarmUp = pools.slotsTouched();
    now += 10'000;
  }
  EXPECT_EQ(counters_->flowsCreated, 3 * kBackends);
  EXPECT_EQ(drops(DropReason::kSnatPoolsExhausted), 0u);
  EXPECT_EQ(drops(DropReason::kSnatPortsExhausted), 0u);
  // Six tuples named by each snapshot, plus the removed backends whose
  // flows have not expired yet (30 s at 10 s per backend).
  EXPECT_LE(maxActive, 6u + 4u);
  EXPECT_GE(maxActive, 6u + 2u);
  EXPECT_EQ(pools.slotsTouched(), touchedAfterWarmUp) << "pool memory grew after the warm-up";
  EXPECT_LE(pools.slotsTouched(), 6u + 4u);
  EXPECT_GE(pools.retired(), kBackends - 4);
  EXPECT_EQ(pools.loads(), 5 + kBackends);  // web, two x 4, and one per DNS answer
  EXPECT_EQ(pa_->doubleFrees(), 0u);
  // The last flows expire: their pools go, the current snapshot's stay.
  nat_->expire(now + 60'000, 1000, current.get());
  EXPECT_EQ(ft_->size(), 0u);
  EXPECT_EQ(counters_->flowsExpired, 3 * kBackends);
  pools.collect();
  EXPECT_GT(pools.active(), 6u) << "retired only after a grace period";
  gracePassed = graceStarted;
  reclaim();
  EXPECT_EQ(pools.active(), 6u);
  EXPECT_EQ(pools.retired(), kBackends - 1);
}

TEST_F(NatTest, SnatPortEqualToAServicePortStillReachesItsFlow) {
  // A service listening on 192.0.2.10:40000, the first SNAT port the web
  // service's pool hands out on the same address.
  addClashServices(40000, 1);

  Bytes syn = frame(tcp(kClient, 33000, kVip, 80, kSyn));
  ASSERT_EQ(one(syn).action, Action::kForward);
  ASSERT_EQ(seen(syn).sport, 40000);
  // The backend's SYN-ACK goes to 192.0.2.10:40000, a service port: the
  // flow table says it is the reply of the web flow.
  L4Spec sa = tcp(kBackend1, 80, kVip, 40000, kSyn | kAck);
  Bytes f = frame(sa);
  EXPECT_FORWARD(one(f));
  EXPECT_EQ(seen(f).src, kVip);
  EXPECT_EQ(seen(f).sport, 80);
  EXPECT_EQ(seen(f).dst, kClient);
  EXPECT_EQ(seen(f).dport, 33000);
  EXPECT_TRUE(checksumsOk(f));
  EXPECT_EQ(onlyFlow().state, FlowState::kSynRecv);
  // And an ICMP error about the forwarded SYN reaches the client.
  Bytes synOut(syn.begin() + kEth, syn.end());
  Bytes err = icmpError(kBackend1, kVip, 3, 4, 1400, synOut);
  EXPECT_FORWARD(one(err));
  EXPECT_EQ(rd32(err.data() + kEth + 16), kClient);
  EXPECT_TRUE(checksumsOk(err));
}

TEST_F(NatTest, ReplyKeyTakenByAClientFlowTriesTheNextPort) {
  addClashServices(40000, 1);
  // The backend's own address and port as a client of the clash service:
  // its original key is the reply key the web flow's first port makes.
  Bytes a = frame(tcp(kBackend1, 80, kVip, 40000, kSyn));
  ASSERT_EQ(one(a).action, Action::kForward);
  Bytes syn = frame(tcp(kClient, 33000, kVip, 80, kSyn));
  EXPECT_FORWARD(one(syn));
  EXPECT_EQ(seen(syn).dst, kBackend1);
  EXPECT_EQ(seen(syn).sport, 40001) << "the clashing port 40000 skipped";
  EXPECT_EQ(ft_->size(), 2u);
  EXPECT_EQ(drops(DropReason::kFlowKeyClash), 0u);
  EXPECT_EQ(drops(DropReason::kFlowTableFull), 0u);
  // The backend's SYN-ACK to port 40001 reaches the client.
  Bytes sa = frame(tcp(kBackend1, 80, kVip, 40001, kSyn | kAck));
  EXPECT_FORWARD(one(sa));
  EXPECT_EQ(seen(sa).dst, kClient);
  EXPECT_EQ(seen(sa).dport, 33000);
  EXPECT_EQ(pa_->doubleFrees(), 0u);
}

TEST_F(NatTest, ReplyKeyTakenOnTwoPortsIsAFlowKeyClashDrop) {
  addClashServices(40000, 2);
  Bytes a0 = frame(tcp(kBackend1, 80, kVip, 40000, kSyn));
  Bytes a1 = frame(tcp(kBackend1, 80, kVip, 40001, kSyn));
  ASSERT_EQ(one(a0).action, Action::kForward);
  ASSERT_EQ(one(a1).action, Action::kForward);
  Bytes syn = frame(tcp(kClient, 33000, kVip, 80, kSyn));
  EXPECT_DROP(one(syn), DropReason::kFlowKeyClash);
  EXPECT_EQ(drops(DropReason::kFlowKeyClash), 1u);
  EXPECT_EQ(drops(DropReason::kFlowTableFull), 0u) << "the table had room";
  EXPECT_EQ(ft_->size(), 2u);
  // Both ports went back exactly once; the client's retransmission takes
  // the next free port.
  EXPECT_EQ(pa_->doubleFrees(), 0u);
  Bytes again = frame(tcp(kClient, 33000, kVip, 80, kSyn));
  EXPECT_FORWARD(one(again));
  EXPECT_EQ(seen(again).sport, 40002);
  EXPECT_EQ(ft_->size(), 3u);
}

TEST_F(NatTest, NoBackend) {
  snap_.services[0].backends[0].weight = 0;
  buildMaglevFor(snap_.services[0]);
  snap_.buildIndexes({net(kVip)});
  Bytes f = frame(tcp(kClient, 33000, kVip, 80, kSyn));
  EXPECT_DROP(one(f), DropReason::kNoBackend);
  EXPECT_EQ(drops(DropReason::kNoBackend), 1u);
}

TEST_F(NatTest, ClearReleasesEverything) {
  for (uint16_t p = 0; p < 10; ++p) {
    Bytes f = frame(tcp(kClient, static_cast<uint16_t>(20000 + p), kVip, 80, kSyn));
    EXPECT_FORWARD(one(f));
  }
  nat_->clear();
  EXPECT_EQ(ft_->size(), 0u);
  EXPECT_EQ(pa_->inUse(0), 0u);
  EXPECT_EQ(counters_->backends[10].flowsClosed, 10u);
  EXPECT_EQ(counters_->flowsCreated - counters_->flowsExpired - counters_->flowsFlushed, 0u);
}

TEST_F(NatTest, MixedBurstKeepsOrderAndVerdicts) {
  Bytes syn = frame(tcp(kClient, 33000, kVip, 80, kSyn));
  ASSERT_EQ(one(syn).action, Action::kForward);
  const uint16_t port = seen(syn).sport;
  std::vector<Bytes> fs{
      frame(tcp(kClient, 33000, kVip, 80, kAck)),            // hit, original
      icmpEcho(kClient, kVip, 1, 1, Bytes{}),                // local
      frame(tcp(kBackend1, 80, kVip, port, kAck)),           // hit, reply
      frame(tcp(kClient, 1, ip4(192, 0, 2, 99), 80, kSyn)),  // not local
      frame(udp(kClient, 7, kVip, 53, Bytes{1})),            // new UDP flow
      frame(tcp(kClient, 33001, kVip, 80, kAck)),            // no flow
  };
  auto v = burst(fs, 2000);
  EXPECT_FORWARD(v[0]);
  EXPECT_EQ(seen(fs[0]).dst, kBackend1);
  EXPECT_EQ(v[1].action, Action::kLocal);
  EXPECT_FORWARD(v[2]);
  EXPECT_EQ(seen(fs[2]).dst, kClient);
  EXPECT_DROP(v[3], DropReason::kNotLocal);
  EXPECT_FORWARD(v[4]);
  EXPECT_EQ(seen(fs[4]).dst, kBackendUdp);
  EXPECT_DROP(v[5], DropReason::kNoFlow);
  for (int i : {0, 1, 2, 4}) EXPECT_TRUE(checksumsOk(fs[i]));
}

TEST_F(NatTest, FullBurstOfNewFlows) {
  std::vector<Bytes> fs;
  for (uint16_t p = 0; p < kMaxBurst; ++p)
    fs.push_back(frame(tcp(kClient, static_cast<uint16_t>(10000 + p), kVip, 80, kSyn)));
  auto v = burst(fs, 1000);
  std::set<uint16_t> ports;
  for (std::size_t i = 0; i < fs.size(); ++i) {
    EXPECT_FORWARD(v[i]);
    EXPECT_TRUE(checksumsOk(fs[i]));
    ports.insert(seen(fs[i]).sport);
  }
  EXPECT_EQ(ports.size(), kMaxBurst);
  EXPECT_EQ(ft_->size(), kMaxBurst);
}

// A burst's new flows are planned before any is created (backend, pool,
// the port each will likely get, that reply key's bucket prefetched), and
// the planned reply hash is used only when the flow got exactly the
// planned port. Here the guesses go wrong: a retransmitted SYN and a
// flowless ACK take no port, a pool runs dry mid-burst (later flows move
// to the other SNAT address), and the last SYN, with both dry, recycles
// the oldest flow of its pool (early drop) and takes the port that frees.
// Every flow left must be found by its replies, which would miss if a
// flow were stored under another port's hash.
TEST_F(NatTest, PlannedNewFlowsSurviveWrongGuesses) {
  Setup s;
  s.portMin = 40000;
  s.portMax = 40003;  // 4 ports per pool
  build(s);
  // Service "two" with one backend: two pools (one per SNAT address).
  snap_.services[2].backends.resize(1);
  buildMaglevFor(snap_.services[2]);
  snap_.buildIndexes({net(kVip)});
  std::vector<Bytes> fs;
  std::vector<uint16_t> clientPort;
  for (uint16_t p = 0; p < 9; ++p) {
    const uint16_t cp = static_cast<uint16_t>(33000 + p);
    fs.push_back(frame(tcp(kClient, cp, kVip2, 443, kSyn)));
    clientPort.push_back(cp);
    if (p == 1) {
      fs.push_back(frame(tcp(kClient, cp, kVip2, 443, kSyn)));  // retransmitted in the burst
      clientPort.push_back(cp);
    }
    if (p == 4) {
      fs.push_back(frame(tcp(kClient, 34000, kVip2, 443, kAck)));  // no flow
      clientPort.push_back(34000);
    }
  }
  auto v = burst(fs, 1000);
  std::map<std::pair<uint32_t, uint16_t>, uint16_t> byReply;  // (SNAT address, port) -> client port
  uint32_t forwarded = 0;
  for (std::size_t i = 0; i < fs.size(); ++i) {
    if (v[i].action != Action::kForward) continue;
    ++forwarded;
    EXPECT_TRUE(checksumsOk(fs[i]));
    byReply[{seen(fs[i]).src, seen(fs[i]).sport}] = clientPort[i];
  }
  // 8 ports in all: 8 flows; the retransmission forwarded on its flow,
  // the ACK dropped, the ninth SYN forwarded on a recycled port (which
  // the map now gives to it).
  EXPECT_EQ(ft_->size(), 8u);
  EXPECT_EQ(forwarded, 10u);
  EXPECT_EQ(byReply.size(), 8u);
  EXPECT_EQ(drops(DropReason::kNoFlow), 1u);
  EXPECT_EQ(counters_->earlyDrops[static_cast<std::size_t>(FlowState::kSynSent)], 1u);
  for (const auto& [snat, client] : byReply) {
    Bytes r = frame(tcp(kBackend1, 443, snat.first, snat.second, kSyn | kAck));
    EXPECT_FORWARD(one(r));
    EXPECT_EQ(seen(r).dst, kClient);
    EXPECT_EQ(seen(r).dport, client);
  }
}

// ---- SYN proxy (syn_proxy = "on") ----

Bytes tsOpt(uint32_t val, uint32_t ecr) {
  Bytes b{1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0};
  wr32(&b[4], val);
  wr32(&b[8], ecr);
  return b;
}

// Options of a TCP header: kind -> value bytes (first occurrence).
std::map<uint8_t, Bytes> tcpOptions(const Bytes& f) {
  const uint8_t* ip = f.data() + kEth;
  const uint8_t* t = ip + (ip[0] & 0xf) * 4;
  const std::size_t hl = (t[12] >> 4) * 4u;
  std::map<uint8_t, Bytes> out;
  for (std::size_t o = 20; o < hl;) {
    if (t[o] == 0) break;
    if (t[o] == 1) {
      ++o;
      continue;
    }
    out.emplace(t[o], Bytes(t + o + 2, t + o + t[o + 1]));
    o += t[o + 1];
  }
  return out;
}
const uint8_t* tcpOf(const Bytes& f) {
  const uint8_t* ip = f.data() + kEth;
  return ip + (ip[0] & 0xf) * 4;
}
uint32_t seqOf(const Bytes& f) { return rd32(tcpOf(f) + 4); }
uint32_t ackOf(const Bytes& f) { return rd32(tcpOf(f) + 8); }
uint16_t winOf(const Bytes& f) { return rd16(tcpOf(f) + 14); }

class SynProxyTest : public NatTest {
 protected:
  void SetUp() override {
    Setup s;
    s.cookies = true;
    build(s);
    for (auto& sv : snap_.services) sv.synProxy = SynProxyMode::kOn;
  }

  // Client SYN with MSS 1460, SACK-permitted, TS (tsval 111) and wscale 8.
  L4Spec clientSyn(uint16_t cport, uint32_t isn) {
    L4Spec s = tcp(kClient, cport, kVip, 80, kSyn);
    s.seq = isn;
    s.tcpOpts = tcpMssOpt(1460);
    for (uint8_t b : Bytes{4, 2, 8, 10, 0, 0, 0, 111, 0, 0, 0, 0, 1, 3, 3, 8}) s.tcpOpts.push_back(b);
    return s;
  }

  // Runs the client's SYN (ISN 7000) through the core at `now` and
  // builds the ACK that completes the cookie handshake: seq 7001, the
  // cookie + 1, window 502, and our SYN-ACK's TSval echoed.
  struct CookieAck {
    Bytes frame;
    uint32_t cookie;  // our SYN-ACK's ISN
    uint32_t ourTs;   // our SYN-ACK's TSval
  };
  CookieAck cookieAck(uint16_t cport, uint32_t now) {
    Bytes f = frame(clientSyn(cport, 7000));
    one(f, now);
    CookieAck c{{}, seqOf(f), rd32(&tcpOptions(f)[8][0])};
    L4Spec a = tcp(kClient, cport, kVip, 80, kAck);
    a.seq = 7001;
    a.ack = c.cookie + 1;
    a.window = 502;
    a.tcpOpts = tsOpt(112, c.ourTs);
    c.frame = frame(a);
    return c;
  }

  // 100 bytes of data from the backend after its SYN-ACK (ISN 5000, TS
  // 9000, wscale 6): seq 5001, window 100, TSval 9010 echoing 112.
  Bytes backendData(uint16_t snatPort) {
    L4Spec bd = tcp(kBackend1, 80, kVip, snatPort, kAck | kPsh);
    bd.seq = 5001;
    bd.ack = 7001;
    bd.window = 100;
    bd.tcpOpts = tsOpt(9010, 112);
    bd.payload = Bytes(100, 0x5a);
    return frame(bd);
  }

  // Runs one frame and collects what the core generated besides it.
  Verdict oneGen(Bytes& f, uint32_t now, std::vector<Bytes>& gen) {
    const Verdict v = one(f, now);
    NatCore::Generated& g = nat_->generated();
    for (uint16_t i = 0; i < g.n; ++i) {
      const uint8_t* d = rte_pktmbuf_mtod(g.pkts[i], const uint8_t*);
      gen.emplace_back(d, d + rte_pktmbuf_data_len(g.pkts[i]));
      rte_pktmbuf_free(g.pkts[i]);
    }
    g.n = 0;
    return v;
  }

};

TEST_F(SynProxyTest, SynIsAnsweredWithACookieAndNoState) {
  Bytes f = frame(clientSyn(3000, 7000));
  const Verdict v = one(f, 1000);
  EXPECT_EQ(v.action, Action::kLocal);
  EXPECT_EQ(ft_->size(), 0u);
  for (uint32_t p = 0; p < pa_->maxPools(); ++p) EXPECT_EQ(pa_->inUse(p), 0u);
  EXPECT_EQ(counters_->synCookiesSent, 1u);
  EXPECT_TRUE(checksumsOk(f));
  const Seen s = seen(f);
  EXPECT_EQ(s.src, kVip);
  EXPECT_EQ(s.dst, kClient);
  EXPECT_EQ(s.sport, 80);
  EXPECT_EQ(s.dport, 3000);
  EXPECT_EQ(s.flags, kSyn | kAck);
  EXPECT_EQ(s.ttl, 64);
  EXPECT_EQ(ackOf(f), 7001u);
  EXPECT_EQ(winOf(f), 0);  // nothing may be sent before the backend is there
  EXPECT_EQ(0, std::memcmp(f.data(), kMacB, 6));  // back where it came from
  auto o = tcpOptions(f);
  EXPECT_EQ(rd16(&o[2][0]), 1460);
  EXPECT_EQ(o[3], Bytes{kProxyWscale});
  EXPECT_TRUE(o.count(4));
  ASSERT_EQ(o[8].size(), 8u);
  EXPECT_EQ(rd32(&o[8][4]), 111u);  // echoes the client's TSval
  uint8_t ws = 0;
  bool sack = false;
  ASSERT_TRUE(cookieTsDecode(rd32(&o[8][0]), ws, sack));
  EXPECT_EQ(ws, 8);
  EXPECT_TRUE(sack);
  uint16_t mss = 0;
  EXPECT_EQ(cookies_.check(CookieTuple{net(kClient), net(kVip), net16(3000), net16(80)}, 7000, seqOf(f), 1000, mss),
            CookieCheck::kValid);
}

TEST_F(SynProxyTest, ValidCookieOpensTheBackendWithTheClientsOptions) {
  Bytes f = cookieAck(3001, 1000).frame;
  EXPECT_FORWARD(one(f, 1500));
  EXPECT_TRUE(checksumsOk(f));
  const Seen s = seen(f);
  EXPECT_EQ(s.src, kVip);  // SNAT
  EXPECT_EQ(s.dst, kBackend1);
  EXPECT_EQ(s.flags, kSyn);
  EXPECT_EQ(seqOf(f), 7000u);
  auto o = tcpOptions(f);
  EXPECT_EQ(rd16(&o[2][0]), 1460);
  EXPECT_EQ(o[3], Bytes{8});
  EXPECT_TRUE(o.count(4));
  EXPECT_EQ(rd32(&o[8][0]), 112u);
  EXPECT_EQ(rd32(&o[8][4]), 0u);
  const Flow fl = onlyFlow();
  EXPECT_EQ(fl.state, FlowState::kSynSent);
  EXPECT_EQ(fl.flags & (kFlowSynProxy | kFlowSynProxyReady), kFlowSynProxy);
  EXPECT_EQ(counters_->synCookiesValid, 1u);
  EXPECT_EQ(counters_->flowsCreated, 1u);
}

TEST_F(SynProxyTest, ForgedStaleAndReplayedCookies) {
  Bytes f = frame(clientSyn(3002, 7000));
  one(f, 1000);
  const uint32_t cookie = seqOf(f);
  const uint32_t ourTs = rd32(&tcpOptions(f)[8][0]);
  auto ack = [&](uint32_t ackNo) {
    L4Spec a = tcp(kClient, 3002, kVip, 80, kAck);
    a.seq = 7001;
    a.ack = ackNo;
    a.tcpOpts = tsOpt(112, ourTs);
    return frame(a);
  };
  f = ack(cookie + 2);
  EXPECT_DROP(one(f, 1000), DropReason::kSynCookieInvalid);
  f = ack(cookie + 1);
  EXPECT_DROP(one(f, 1000 + 2 * 65536), DropReason::kSynCookieStale);
  EXPECT_EQ(ft_->size(), 0u);
  // Option bits that our SYN-ACK cannot have sent.
  L4Spec bad = tcp(kClient, 3002, kVip, 80, kAck);
  bad.seq = 7001;
  bad.ack = cookie + 1;
  bad.tcpOpts = tsOpt(112, ourTs | 0x20);
  f = frame(bad);
  EXPECT_DROP(one(f, 1000), DropReason::kSynCookieInvalid);
  // Valid, then the same ACK again while the backend has not answered.
  f = ack(cookie + 1);
  EXPECT_FORWARD(one(f, 65536 + 5));  // next period: still valid
  f = ack(cookie + 1);
  EXPECT_DROP(one(f, 65536 + 6), DropReason::kSynCookieReplayed);
  EXPECT_EQ(ft_->size(), 1u);
  EXPECT_EQ(counters_->synCookiesValid, 1u);
}

// The client's cookie ACK is lost: it believes it is connected and probes
// our zero window with its ISN (one below its next sequence number). The
// probe opens the flow as the ACK would have, with the same ISN.
TEST_F(SynProxyTest, ZeroWindowProbeAfterALostCookieAckOpensTheFlow) {
  Bytes f = frame(clientSyn(3008, 7000));
  one(f, 1000);
  const uint32_t cookie = seqOf(f);
  const uint32_t ourTs = rd32(&tcpOptions(f)[8][0]);
  L4Spec probe = tcp(kClient, 3008, kVip, 80, kAck);
  probe.seq = 7000;
  probe.ack = cookie + 1;
  probe.window = 502;
  probe.tcpOpts = tsOpt(300, ourTs);
  f = frame(probe);
  EXPECT_FORWARD(one(f, 1300));
  EXPECT_TRUE(checksumsOk(f));
  EXPECT_EQ(seen(f).dst, kBackend1);
  EXPECT_EQ(seen(f).flags, kSyn);
  EXPECT_EQ(seqOf(f), 7000u);
  EXPECT_EQ(counters_->synCookiesValid, 1u);
  EXPECT_EQ(onlyFlow().state, FlowState::kSynSent);
  // A probe-like segment two below: not ours.
  probe.sport = 3009;
  Bytes g = frame(clientSyn(3009, 7000));
  one(g, 1000);
  probe.ack = seqOf(g) + 1;
  probe.seq = 6999;
  g = frame(probe);
  EXPECT_DROP(one(g, 1300), DropReason::kSynCookieInvalid);
  // With data it is not a probe: the ISN is the sequence number less one.
  probe.seq = 7000;
  probe.payload = Bytes{'G'};
  g = frame(probe);
  EXPECT_DROP(one(g, 1300), DropReason::kSynCookieInvalid);
}

// Our SYN to the backend (or its SYN-ACK) is lost: the client, which
// believes it is connected, probes our zero window (Linux: its ISN as the
// sequence number, no data). A probe after a quiet spell sends the SYN
// again, as the first was; nothing else would ever resend it, and the
// connection would hang until the client gave up.
TEST_F(SynProxyTest, ZeroWindowProbeResendsTheBackendSyn) {
  auto [ack, cookie, ourTs] = cookieAck(3007, 1000);
  Bytes f = ack;
  EXPECT_FORWARD(one(f, 1000));
  const Bytes firstSyn = f;
  ASSERT_EQ(seen(f).flags, kSyn);
  // The cookie ACK itself again, however late, is a replay: dropped.
  f = ack;
  EXPECT_DROP(one(f, 1000 + 5 * kSynProxyResendMs), DropReason::kSynCookieReplayed);
  L4Spec probe = tcp(kClient, 3007, kVip, 80, kAck);
  probe.seq = 7000;
  probe.ack = cookie + 1;
  probe.window = 502;
  probe.tcpOpts = tsOpt(400, ourTs);
  // A probe right after the client's last segment: dropped, counted.
  f = frame(probe);
  EXPECT_DROP(one(f, 1000 + 6 * kSynProxyResendMs - 1), DropReason::kSynCookieReplayed);
  EXPECT_EQ(counters_->synProxySynResent, 0u);
  // The next, after the client's backoff.
  f = frame(probe);
  EXPECT_FORWARD(one(f, 1000 + 7 * kSynProxyResendMs - 1));
  EXPECT_EQ(counters_->synProxySynResent, 1u);
  EXPECT_TRUE(checksumsOk(f));
  const Seen s = seen(f);
  const Seen s1 = seen(firstSyn);
  EXPECT_EQ(s.flags, kSyn);
  EXPECT_EQ(s.src, s1.src);
  EXPECT_EQ(s.dst, s1.dst);
  EXPECT_EQ(s.sport, s1.sport);
  EXPECT_EQ(s.dport, s1.dport);
  EXPECT_EQ(seqOf(f), 7000u);  // the client's ISN, as in the first SYN
  auto o = tcpOptions(f);
  EXPECT_EQ(rd16(&o[2][0]), 1460);
  EXPECT_EQ(o[3], Bytes{8});
  EXPECT_TRUE(o.count(4));
  EXPECT_EQ(rd32(&o[8][0]), 400u);  // the client's current TSval
  EXPECT_EQ(ft_->size(), 1u);
  EXPECT_EQ(counters_->synCookiesValid, 1u);
  // A repeat whose timestamp echo is not our SYN-ACK's is not ours to
  // answer: dropped as before.
  probe.tcpOpts = tsOpt(500, ourTs + 1);
  f = frame(probe);
  EXPECT_DROP(one(f, 2000), DropReason::kSynCookieReplayed);
  EXPECT_EQ(counters_->synProxySynResent, 1u);
  // A one-byte probe (BSD's kind) at ISN + 1 resends it too.
  probe.seq = 7001;
  probe.payload = Bytes{'G'};
  probe.tcpOpts = tsOpt(600, ourTs);
  f = frame(probe);
  EXPECT_FORWARD(one(f, 2200));
  EXPECT_EQ(counters_->synProxySynResent, 2u);
  EXPECT_EQ(seen(f).flags, kSyn);
  EXPECT_EQ(seqOf(f), 7000u);
  EXPECT_EQ(rd16(f.data() + kEth + 2), 20 + 20 + 20);  // the probe's byte is not carried
  // The backend answers the resent SYN: the handshake completes as usual.
  L4Spec sa = tcp(kBackend1, 80, kVip, s.sport, kSyn | kAck);
  sa.seq = 5000;
  sa.ack = 7001;
  for (uint8_t b : Bytes{1, 1, 8, 10, 0, 0, 0x23, 0x28, 0, 0, 1, 144}) sa.tcpOpts.push_back(b);
  f = frame(sa);
  EXPECT_FORWARD(one(f, 2100));
  EXPECT_EQ(seen(f).dst, kBackend1);  // our ACK completes the backend's handshake
  EXPECT_EQ(seen(f).flags, kAck);
  EXPECT_NE(onlyFlow().flags & kFlowSynProxyReady, 0);
}

TEST_F(SynProxyTest, HandshakeAndTranslation) {
  auto [f, cookie, ourTs] = cookieAck(3003, 1000);
  one(f, 1000);
  const uint16_t snatPort = seen(f).sport;

  // Backend SYN-ACK: ISN 5000, TS 9000, wscale 6.
  L4Spec sa = tcp(kBackend1, 80, kVip, snatPort, kSyn | kAck);
  sa.seq = 5000;
  sa.ack = 7001;
  sa.window = 65160;
  sa.tcpOpts = tcpMssOpt(1400);
  for (uint8_t b : Bytes{4, 2, 8, 10, 0, 0, 0x23, 0x28, 0, 0, 0, 112, 1, 3, 3, 6}) sa.tcpOpts.push_back(b);
  f = frame(sa);
  std::vector<Bytes> gen;
  EXPECT_FORWARD(oneGen(f, 1000, gen));
  // ACK to the backend.
  EXPECT_TRUE(checksumsOk(f));
  EXPECT_EQ(seen(f).dst, kBackend1);
  EXPECT_EQ(seen(f).sport, snatPort);
  EXPECT_EQ(seen(f).flags, kAck);
  EXPECT_EQ(seqOf(f), 7001u);
  EXPECT_EQ(ackOf(f), 5001u);
  EXPECT_EQ(winOf(f), 502);  // both sides scale: the client's field as it was
  EXPECT_EQ(rd32(&tcpOptions(f)[8][0]), 112u);
  EXPECT_EQ(rd32(&tcpOptions(f)[8][4]), 9000u);
  // Window update to the client.
  ASSERT_EQ(gen.size(), 1u);
  EXPECT_TRUE(checksumsOk(gen[0]));
  EXPECT_EQ(seen(gen[0]).src, kVip);
  EXPECT_EQ(seen(gen[0]).dst, kClient);
  EXPECT_EQ(seen(gen[0]).sport, 80);
  EXPECT_EQ(seen(gen[0]).dport, 3003);
  EXPECT_EQ(seen(gen[0]).flags, kAck);
  EXPECT_EQ(seqOf(gen[0]), cookie + 1);
  EXPECT_EQ(ackOf(gen[0]), 7001u);
  EXPECT_EQ(winOf(gen[0]), 510);  // 65160 bytes at scale 7, rounded up
  EXPECT_EQ(rd32(&tcpOptions(gen[0])[8][0]), ourTs);
  EXPECT_EQ(rd32(&tcpOptions(gen[0])[8][4]), 112u);
  EXPECT_EQ(onlyFlow().state, FlowState::kEstablished);

  // Backend data: seq and TSval into the client's view, window 100 at
  // scale 6 = 6400 bytes = 50 at scale 7.
  f = backendData(snatPort);
  EXPECT_FORWARD(one(f, 1100));
  EXPECT_TRUE(checksumsOk(f));
  EXPECT_EQ(seen(f).dst, kClient);
  EXPECT_EQ(seqOf(f), cookie + 1);
  EXPECT_EQ(ackOf(f), 7001u);
  EXPECT_EQ(winOf(f), 50);
  EXPECT_EQ(rd32(&tcpOptions(f)[8][0]), ourTs + 10);
  EXPECT_EQ(rd32(&tcpOptions(f)[8][4]), 112u);

  // Client ACK with a SACK block: ack, SACK edges and TSecr into the
  // backend's view; the client's window field untouched.
  L4Spec cd = tcp(kClient, 3003, kVip, 80, kAck);
  cd.seq = 7001;
  cd.ack = cookie + 1 + 100;
  cd.window = 300;
  cd.tcpOpts = tsOpt(113, ourTs + 10);
  for (uint8_t b : Bytes{1, 1, 5, 10, 0, 0, 0, 0, 0, 0, 0, 0}) cd.tcpOpts.push_back(b);
  wr32(&cd.tcpOpts[16], cookie + 201);
  wr32(&cd.tcpOpts[20], cookie + 301);
  f = frame(cd);
  EXPECT_FORWARD(one(f, 1200));
  EXPECT_TRUE(checksumsOk(f));
  EXPECT_EQ(seen(f).dst, kBackend1);
  EXPECT_EQ(ackOf(f), 5101u);
  EXPECT_EQ(winOf(f), 300);
  auto o = tcpOptions(f);
  EXPECT_EQ(rd32(&o[8][0]), 113u);
  EXPECT_EQ(rd32(&o[8][4]), 9010u);
  EXPECT_EQ(rd32(&o[5][0]), 5201u);
  EXPECT_EQ(rd32(&o[5][4]), 5301u);

  // Fragmentation needed from a router on the client's side, quoting a
  // segment we sent the client: the backend gets the quote in its own
  // sequence space (Linux ignores errors quoting an out-of-window seq).
  L4Spec q = tcp(kVip, 80, kClient, 3003, kAck);
  q.seq = cookie + 1;
  Bytes quote = ipPacket(q);
  quote.resize(28);
  f = icmpError(ip4(198, 51, 100, 1), kVip, 3, 4, 1400, quote);
  EXPECT_FORWARD(one(f, 1250));
  EXPECT_TRUE(checksumsOk(f));
  EXPECT_EQ(seen(f).dst, kBackend1);
  EXPECT_EQ(rd32(f.data() + kEth + 20 + 8 + 20 + 4), 5001u);

  // FIN from the backend, RST from the client.
  L4Spec fin = tcp(kBackend1, 80, kVip, snatPort, kFin | kAck);
  fin.seq = 5101;
  fin.ack = 7001;
  f = frame(fin);
  EXPECT_FORWARD(one(f, 1300));
  EXPECT_TRUE(checksumsOk(f));
  EXPECT_EQ(seqOf(f), cookie + 101);
  EXPECT_EQ(onlyFlow().state, FlowState::kFinWait);
  EXPECT_EQ(onlyFlow().flags & (kFlowSynProxy | kFlowSynProxyReady), kFlowSynProxy | kFlowSynProxyReady);
  L4Spec rst = tcp(kClient, 3003, kVip, 80, kRst | kAck);
  rst.seq = 7001;
  rst.ack = cookie + 102;
  f = frame(rst);
  EXPECT_FORWARD(one(f, 1400));
  EXPECT_TRUE(checksumsOk(f));
  EXPECT_EQ(seqOf(f), 7001u);
  EXPECT_EQ(ackOf(f), 5102u);
  EXPECT_EQ(onlyFlow().state, FlowState::kClosed);
}

// The SYN proxy's translation lives beside the flow record
// (FlowTable::xlate): flows coming and going around a cookie flow leave it
// intact, and a plain flow that reuses a cookie flow's record translates
// nothing.
TEST_F(SynProxyTest, TranslationSurvivesOtherFlowsAndIsNotInheritedByReuse) {
  auto [f, cookie, ourTs] = cookieAck(3010, 1000);
  EXPECT_FORWARD(one(f, 1000));
  const uint16_t snatPort = seen(f).sport;
  L4Spec sa = tcp(kBackend1, 80, kVip, snatPort, kSyn | kAck);
  sa.seq = 5000;
  sa.ack = 7001;
  sa.window = 65160;
  for (uint8_t b : Bytes{1, 1, 8, 10, 0, 0, 0x23, 0x28, 0, 0, 0, 112, 1, 3, 3, 6}) sa.tcpOpts.push_back(b);
  f = frame(sa);
  std::vector<Bytes> gen;
  EXPECT_FORWARD(oneGen(f, 1000, gen));
  FlowKey key;
  key.srcIp = net(kClient);
  key.dstIp = net(kVip);
  key.srcPort = net16(3010);
  key.dstPort = net16(80);
  key.proto = IPPROTO_TCP;
  Direction d;
  const uint32_t cookieIdx = ft_->lookup(key, d);
  ASSERT_NE(cookieIdx, kNoFlow);
  ASSERT_EQ(ft_->at(cookieIdx).state, FlowState::kEstablished);

  // 40 plain flows open around it, 20 are reset and expire.
  for (auto& sv : snap_.services) sv.synProxy = SynProxyMode::kOff;
  for (uint16_t p = 0; p < 40; ++p) {
    L4Spec syn = tcp(kClient, static_cast<uint16_t>(4000 + p), kVip, 80, kSyn);
    syn.seq = 100;
    f = frame(syn);
    EXPECT_FORWARD(one(f, 1100));
    if (p % 2) continue;
    L4Spec rst = tcp(kClient, static_cast<uint16_t>(4000 + p), kVip, 80, kRst);
    rst.seq = 101;
    f = frame(rst);
    EXPECT_FORWARD(one(f, 1200));
  }
  EXPECT_EQ(nat_->expire(1200 + 10'000, 1000), 20u);

  // The cookie flow still translates: backend seq and TSval into the
  // client's view.
  f = backendData(snatPort);
  EXPECT_FORWARD(one(f, 11'300));
  EXPECT_TRUE(checksumsOk(f));
  EXPECT_EQ(seqOf(f), cookie + 1);
  EXPECT_EQ(rd32(&tcpOptions(f)[8][0]), ourTs + 10);

  // It ends; the next flow takes its record and is not translated.
  L4Spec rst = tcp(kClient, 3010, kVip, 80, kRst | kAck);
  rst.seq = 7001;
  rst.ack = cookie + 101;
  f = frame(rst);
  EXPECT_FORWARD(one(f, 11'400));
  EXPECT_EQ(nat_->expire(11'400 + 10'000, 1000), 1u);
  L4Spec syn = tcp(kClient, 3011, kVip, 80, kSyn);
  syn.seq = 9000;
  f = frame(syn);
  EXPECT_FORWARD(one(f, 21'500));
  key.srcPort = net16(3011);
  ASSERT_EQ(ft_->lookup(key, d), cookieIdx);
  EXPECT_EQ(ft_->at(cookieIdx).flags & (kFlowSynProxy | kFlowSynProxyReady), 0);
  const uint16_t port2 = seen(f).sport;
  L4Spec sa2 = tcp(kBackend1, 80, kVip, port2, kSyn | kAck);
  sa2.seq = 5000;
  sa2.ack = 9001;
  for (uint8_t b : Bytes{1, 1, 8, 10, 0, 0, 0x23, 0x28, 0, 0, 0, 112}) sa2.tcpOpts.push_back(b);
  f = frame(sa2);
  EXPECT_FORWARD(one(f, 21'500));
  EXPECT_TRUE(checksumsOk(f));
  EXPECT_EQ(seen(f).dst, kClient);
  EXPECT_EQ(seqOf(f), 5000u);
  EXPECT_EQ(rd32(&tcpOptions(f)[8][0]), 9000u);
}

TEST_F(SynProxyTest, ClientSegmentsBeforeTheBackendAnswersAreHeld) {
  Bytes f = frame(clientSyn(3004, 1));
  one(f, 1000);
  const uint32_t cookie = seqOf(f);
  L4Spec a = tcp(kClient, 3004, kVip, 80, kAck);
  a.seq = 2;
  a.ack = cookie + 1;
  a.payload = Bytes{'G', 'E', 'T'};
  a.tcpOpts = tsOpt(5, rd32(&tcpOptions(f)[8][0]));
  f = frame(a);
  EXPECT_FORWARD(one(f, 1000));
  EXPECT_EQ(counters_->synProxyAckData, 1u);  // its data is dropped: the client resends it
  EXPECT_EQ(rd16(f.data() + kEth + 2), 20 + 20 + 20);  // the SYN carries no payload
  a.flags = kAck | kPsh;
  f = frame(a);
  EXPECT_DROP(one(f, 1001), DropReason::kSynProxyPending);
}

TEST_F(SynProxyTest, BackendRefusalResetsTheClient) {
  Bytes f = frame(clientSyn(3005, 1));
  one(f, 1000);
  const uint32_t cookie = seqOf(f);
  L4Spec a = tcp(kClient, 3005, kVip, 80, kAck);
  a.seq = 2;
  a.ack = cookie + 1;
  f = frame(a);  // no timestamps: window scale and SACK are lost
  EXPECT_FORWARD(one(f, 1000));
  auto o = tcpOptions(f);
  EXPECT_EQ(o.count(3), 0u);
  EXPECT_EQ(o.count(4), 0u);
  EXPECT_EQ(o.count(8), 0u);
  const uint16_t snatPort = seen(f).sport;
  L4Spec rst = tcp(kBackend1, 80, kVip, snatPort, kRst | kAck);
  rst.seq = 0;
  rst.ack = 2;
  f = frame(rst);
  EXPECT_FORWARD(one(f, 1001));
  EXPECT_TRUE(checksumsOk(f));
  EXPECT_EQ(seen(f).dst, kClient);
  EXPECT_EQ(seqOf(f), cookie + 1);
  EXPECT_EQ(onlyFlow().state, FlowState::kClosed);
}

TEST_F(SynProxyTest, OffAndAutoServicesOpenFlowsFromSyns) {
  for (auto& sv : snap_.services) sv.synProxy = SynProxyMode::kOff;
  Bytes f = frame(clientSyn(3006, 1));
  EXPECT_FORWARD(one(f, 1000));
  EXPECT_EQ(ft_->size(), 1u);
  for (auto& sv : snap_.services) sv.synProxy = SynProxyMode::kAuto;
  f = frame(clientSyn(3007, 1));
  EXPECT_FORWARD(one(f, 1000));
  EXPECT_EQ(ft_->size(), 2u);
  // A flowless ACK to an auto service while no cookie was sent is no_flow.
  L4Spec a = tcp(kClient, 3008, kVip, 80, kAck);
  f = frame(a);
  EXPECT_DROP(one(f, 1000), DropReason::kNoFlow);
  EXPECT_EQ(counters_->synCookiesSent, 0u);
}

TEST_F(SynProxyTest, AutoModeFollowsHalfOpenFlowsWithHysteresis) {
  Setup s;
  s.cookies = true;
  s.synProxy.halfOpenEnter = 128;
  s.synProxy.halfOpenLeave = 64;
  s.synProxy.poolEnterPct = 101;  // never
  build(s);  // services back to "auto"
  std::vector<Bytes> fs;
  uint16_t port = 1;
  for (int b = 0; b < 2; ++b) {
    fs.clear();
    for (int i = 0; i < 63; ++i) fs.push_back(frame(tcp(kClient, port++, kVip, 80, kSyn)));
    burst(fs, 1000);
  }
  // 126 half-open + 1 established: not yet.
  L4Spec sa = tcp(kBackend1, 80, kVip, 40000, kSyn | kAck);
  fs = {frame(tcp(kClient, port++, kVip, 80, kSyn)), frame(sa)};
  burst(fs, 1000);
  L4Spec a = tcp(kClient, static_cast<uint16_t>(port - 1), kVip, 80, kAck);
  fs = {frame(a)};
  burst(fs, 1000);
  EXPECT_EQ(ft_->count(FlowState::kSynSent), 126u);
  nat_->expire(1050, 0);
  EXPECT_FALSE(nat_->cookieMode());
  fs = {frame(tcp(kClient, port++, kVip, 80, kSyn)), frame(tcp(kClient, port++, kVip, 80, kSyn))};
  burst(fs, 1060);
  EXPECT_EQ(ft_->count(FlowState::kSynSent), 128u);
  EXPECT_FALSE(nat_->cookieMode());
  nat_->expire(1100, 0);  // evaluated at most every 50 ms
  EXPECT_TRUE(nat_->cookieMode());
  EXPECT_EQ(counters_->synCookieMode, 1u);
  EXPECT_EQ(counters_->synCookieModeEntered, 1u);
  Bytes f = frame(clientSyn(60000, 1));
  EXPECT_EQ(one(f, 1200).action, Action::kLocal);
  // Half-open flows time out (30 s); below the leave mark it switches back.
  nat_->expire(40000, 2000);
  EXPECT_EQ(ft_->count(FlowState::kSynSent), 0u);
  EXPECT_FALSE(nat_->cookieMode());
  EXPECT_EQ(counters_->synCookieMode, 0u);
  // A cookie it sent is still accepted after leaving cookie mode... if
  // still within two periods; this one is (40 s later, one period).
  L4Spec ca = tcp(kClient, 60000, kVip, 80, kAck);
  ca.seq = 2;
  ca.ack = seqOf(f) + 1;
  Bytes af = frame(ca);
  EXPECT_FORWARD(one(af, 40001));
}

TEST_F(SynProxyTest, AutoModeFollowsSnatPoolPressure) {
  Setup s;
  s.cookies = true;
  s.synProxy.poolEnterPct = 50;
  s.synProxy.poolLeavePct = 25;
  build(s);
  // 1,000 ports (40000-40999) for the one pool; 512 taken = 51%.
  std::vector<Bytes> fs;
  uint16_t port = 1;
  for (int b = 0; b < 8; ++b) {
    fs.clear();
    for (int i = 0; i < 64; ++i) fs.push_back(frame(tcp(kClient, port++, kVip, 80, kSyn)));
    burst(fs, 1000);
  }
  nat_->expire(1100, 0, &run_);
  EXPECT_TRUE(nat_->cookieMode());
  nat_->expire(40000, 2000, &run_);
  EXPECT_FALSE(nat_->cookieMode());
  // Only the pools a snapshot names count (the worker reads no other slot).
  build(s);
  for (int b = 0; b < 8; ++b) {
    fs.clear();
    for (int i = 0; i < 64; ++i) fs.push_back(frame(tcp(kClient, port++, kVip, 80, kSyn)));
    burst(fs, 1000);
  }
  nat_->expire(1100, 0, nullptr);
  EXPECT_FALSE(nat_->cookieMode());
  nat_->expire(1200, 0, &run_);
  EXPECT_TRUE(nat_->cookieMode());
}

TEST(SynProxyWindow, Rescale) {
  EXPECT_EQ(rescaleWindow(100, 7, 7), 100);
  EXPECT_EQ(rescaleWindow(100, 6, 7), 50);
  EXPECT_EQ(rescaleWindow(101, 6, 7), 51);  // rounded up
  EXPECT_EQ(rescaleWindow(1, 0, 7), 1);     // never a false zero window
  EXPECT_EQ(rescaleWindow(0, 0, 7), 0);
  EXPECT_EQ(rescaleWindow(65535, 10, 7), 65535);  // capped
  EXPECT_EQ(rescaleWindow(1000, 8, 0), 65535);
}

// ---- PROXY protocol v2 ----

class ProxyProtocolTest : public NatTest {
 protected:
  void SetUp() override {
    NatTest::SetUp();
    for (auto& s : snap_.services)
      if (s.name == "web") s.proxyProtocol = true;
  }
  // Runs `f` in an mbuf whose data starts `headroom` bytes into its buffer
  // (the rest of the buffer is tailroom), and returns the verdict; `f`
  // becomes the frame the core left.
  Verdict inMbuf(Bytes& f, uint16_t headroom) {
    rte_mbuf* m = rte_pktmbuf_alloc(mp_);
    EXPECT_NE(m, nullptr);
    m->data_off = headroom;
    char* p = rte_pktmbuf_append(m, static_cast<uint16_t>(f.size()));
    EXPECT_NE(p, nullptr);
    std::memcpy(p, f.data(), f.size());
    Verdict v;
    nat_->process(&m, 1, snap_, 1000, &v);
    const uint8_t* d = rte_pktmbuf_mtod(m, const uint8_t*);
    f.assign(d, d + rte_pktmbuf_data_len(m));
    rte_pktmbuf_free(m);
    return v;
  }
  uint16_t open(uint16_t cport) {
    L4Spec s = tcp(kClient, cport, kVip, 80, kSyn);
    s.seq = 5000;
    Bytes syn = frame(s);
    EXPECT_FORWARD(one(syn));
    const uint16_t snatPort = seen(syn).sport;
    L4Spec sa = tcp(kBackend1, 80, kVip, snatPort, kSyn | kAck);
    sa.seq = 9000;
    sa.ack = 5001;
    sa.tcpOpts = tcpMssOpt(1460);
    Bytes fa = frame(sa);
    EXPECT_FORWARD(one(fa));
    EXPECT_EQ(rd16(fa.data() + kEth + 20 + 22), 1460 - kProxyV2Len);  // room for the header
    EXPECT_EQ(rd32(fa.data() + kEth + 20 + 8), 5001u);
    EXPECT_TRUE(checksumsOk(fa));
    return snatPort;
  }
  static Bytes expectedHeader(uint16_t cport) {
    Bytes h = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0x00, 0x0C};
    for (uint32_t a : {kClient, kVip})
      for (int sh = 24; sh >= 0; sh -= 8) h.push_back(static_cast<uint8_t>(a >> sh));
    for (uint16_t p : {cport, uint16_t{80}}) {
      h.push_back(static_cast<uint8_t>(p >> 8));
      h.push_back(static_cast<uint8_t>(p));
    }
    return h;
  }
};

TEST_F(ProxyProtocolTest, HeaderInsertedThroughHeadroomOrTailroom) {
  const Bytes data = {'a', 'b', 'c', 'd', 'e'};
  for (uint16_t headroom : {uint16_t{RTE_PKTMBUF_HEADROOM}, uint16_t{0}}) {
    SCOPED_TRACE(headroom);
    const uint16_t cport = static_cast<uint16_t>(33000 + headroom);
    open(cport);
    L4Spec d = tcp(kClient, cport, kVip, 80, kAck | 0x08);
    d.seq = 5001;
    d.ack = 9001;
    d.payload = data;
    Bytes f = frame(d);
    EXPECT_FORWARD(inMbuf(f, headroom));
    ASSERT_EQ(f.size(), kEth + 40 + kProxyV2Len + data.size());
    EXPECT_TRUE(checksumsOk(f));
    EXPECT_EQ(rd16(f.data() + kEth + 2), 40 + kProxyV2Len + data.size());
    EXPECT_EQ(rd32(f.data() + kEth + 20 + 4), 5001u);  // the header takes the client's first seq
    EXPECT_EQ(Bytes(f.begin() + kEth + 40, f.begin() + kEth + 40 + kProxyV2Len), expectedHeader(cport));
    EXPECT_EQ(Bytes(f.begin() + kEth + 40 + kProxyV2Len, f.end()), data);
    EXPECT_EQ(std::memcmp(f.data(), kMacA, 6), 0);  // Ethernet moved with the rest
  }
  EXPECT_EQ(counters_->proxyHeaders, 2u);
}

TEST_F(ProxyProtocolTest, PaddedPureAckBecomesTheHeaderSegment) {
  const uint16_t snatPort = open(33100);
  L4Spec a = tcp(kClient, 33100, kVip, 80, kAck);
  a.seq = 5001;
  a.ack = 9001;
  Bytes f = frame(a);
  f.resize(60, 0);  // Ethernet minimum: 6 bytes of padding
  EXPECT_FORWARD(one(f));
  ASSERT_EQ(f.size(), kEth + 40 + kProxyV2Len);  // padding gone, header in
  EXPECT_TRUE(checksumsOk(f));
  EXPECT_EQ(Bytes(f.begin() + kEth + 40, f.end()), expectedHeader(33100));
  // The backend acknowledges the header: acks come back less 28 and the
  // client's bytes move up by 28 from now on.
  L4Spec b = tcp(kBackend1, 80, kVip, snatPort, kAck);
  b.seq = 9001;
  b.ack = 5001 + kProxyV2Len;
  Bytes fb = frame(b);
  EXPECT_FORWARD(one(fb));
  EXPECT_EQ(rd32(fb.data() + kEth + 20 + 8), 5001u);
  EXPECT_TRUE(checksumsOk(fb));
  L4Spec d = tcp(kClient, 33100, kVip, 80, kAck);
  d.seq = 5001;
  d.ack = 9001;
  d.payload = {'x'};
  Bytes fd = frame(d);
  EXPECT_FORWARD(one(fd));
  EXPECT_EQ(fd.size(), kEth + 41);
  EXPECT_EQ(rd32(fd.data() + kEth + 20 + 4), 5001u + kProxyV2Len);
  EXPECT_TRUE(checksumsOk(fd));
  EXPECT_EQ(counters_->proxyHeaders, 1u);
}

TEST_F(ProxyProtocolTest, NoRoomIsACountedDrop) {
  open(33200);
  rte_mbuf* probe = rte_pktmbuf_alloc(mp_);
  ASSERT_NE(probe, nullptr);
  const uint16_t bufLen = probe->buf_len;
  rte_pktmbuf_free(probe);
  L4Spec d = tcp(kClient, 33200, kVip, 80, kAck);
  d.seq = 5001;
  d.ack = 9001;
  d.payload.assign(bufLen - kEth - 40, 'z');  // fills the whole buffer
  Bytes f = frame(d);
  EXPECT_DROP(inMbuf(f, 0), DropReason::kProxyHeaderNoRoom);
  EXPECT_EQ(drops(DropReason::kProxyHeaderNoRoom), 1u);
  EXPECT_EQ(counters_->proxyHeaders, 0u);
}

TEST_F(ProxyProtocolTest, UdpAndPlainServicesAreUntouched) {
  Bytes syn = frame(tcp(kClient, 33300, kVip2, 443, kSyn));
  EXPECT_FORWARD(one(syn));
  EXPECT_EQ(onlyFlow().ppFlags, 0u);
}

}  // namespace
}  // namespace strait::dataplane
