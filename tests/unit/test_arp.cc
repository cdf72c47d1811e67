// ArpService with real mbufs and a fake transmit callback: replies to
// requests for our interface, VIP and SNAT addresses built in place and
// checked field by field, requests for others dropped and counted, the
// Linux-like learning rules (requests to us, replies to what we asked,
// updates of known entries, nothing from strangers or other subnets),
// malformed frames, rate-limited resolution, retries that give up,
// refreshes before ageing out, and gratuitous announcements.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <rte_arp.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/arp.h"

namespace sd = strait::dataplane;
using strait::DropReason;
using strait::WorkerCounters;

namespace {

uint32_t ip(const char* s) {
  in_addr a{};
  inet_pton(AF_INET, s, &a);
  return a.s_addr;
}

rte_ether_addr mac(uint8_t last) { return rte_ether_addr{{0x02, 0x00, 0x5e, 0x10, 0x00, last}}; }
const rte_ether_addr kOurMac{{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01}};
const rte_ether_addr kBcast{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
const rte_ether_addr kZero{};

bool eq(const rte_ether_addr& a, const rte_ether_addr& b) { return std::memcmp(&a, &b, sizeof a) == 0; }

uint32_t load32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

struct Frame {
  uint16_t op = RTE_ARP_OP_REQUEST;
  rte_ether_addr ethSrc{};
  rte_ether_addr ethDst = kBcast;
  rte_ether_addr sha{};
  uint32_t spa = 0;
  rte_ether_addr tha{};
  uint32_t tpa = 0;
  bool vlan = false;
  uint16_t port = 0;
};

// A parsed view of an ARP frame, for checking what the service sent.
struct Seen {
  rte_ether_addr ethDst, ethSrc;
  uint16_t etherType;
  bool vlan;
  uint16_t htype, ptype, op;
  uint8_t hlen, plen;
  rte_ether_addr sha, tha;
  uint32_t spa, tpa;
  uint16_t port;
  uint32_t len;
};

Seen parse(rte_mbuf* m) {
  Seen s{};
  const uint8_t* d = rte_pktmbuf_mtod(m, const uint8_t*);
  s.len = rte_pktmbuf_pkt_len(m);
  std::memcpy(&s.ethDst, d, 6);
  std::memcpy(&s.ethSrc, d + 6, 6);
  uint32_t off = 12;
  s.etherType = static_cast<uint16_t>(d[off] << 8 | d[off + 1]);
  if (s.etherType == 0x8100) {
    s.vlan = true;
    off += 4;
    s.etherType = static_cast<uint16_t>(d[off] << 8 | d[off + 1]);
  }
  const uint8_t* a = d + off + 2;
  s.htype = static_cast<uint16_t>(a[0] << 8 | a[1]);
  s.ptype = static_cast<uint16_t>(a[2] << 8 | a[3]);
  s.hlen = a[4];
  s.plen = a[5];
  s.op = static_cast<uint16_t>(a[6] << 8 | a[7]);
  std::memcpy(&s.sha, a + 8, 6);
  s.spa = load32(a + 14);
  std::memcpy(&s.tha, a + 18, 6);
  s.tpa = load32(a + 24);
  s.port = m->port;
  return s;
}

class ArpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    pool_ = rte_pktmbuf_pool_create(("arpt" + std::to_string(n++)).c_str(), 255, 0, 0,
                                    RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    ASSERT_NE(pool_, nullptr);
    counters_ = std::make_unique<WorkerCounters>();
    sd::ArpInterface ifc;
    ifc.port = 0;
    ifc.mac = kOurMac;
    ifc.ip = ip("192.0.2.10");
    ifc.prefix = ip("192.0.2.0");
    ifc.prefixLen = 24;
    arp_ = std::make_unique<sd::ArpService>(
        std::vector<sd::ArpInterface>{ifc}, neigh_, pool_,
        [this](uint32_t a) { return a == vip_ || a == snat_ || a == offLinkVip_; },
        [this](rte_mbuf* m) {
          if (!acceptTx_) return false;
          sent_.push_back(m);
          return true;
        },
        *counters_);
  }

  void TearDown() override {
    for (rte_mbuf* m : sent_) rte_pktmbuf_free(m);
    sent_.clear();
    arp_.reset();
    if (pool_ != nullptr) {
      // Every mbuf the service was given or made is freed or was sent.
      EXPECT_EQ(rte_mempool_in_use_count(pool_), 0u);
      rte_mempool_free(pool_);
    }
  }

  rte_mbuf* make(const Frame& f, uint16_t len = 60) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    EXPECT_NE(m, nullptr);
    auto* d = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, len));
    std::memset(d, 0, len);
    std::memcpy(d, &f.ethDst, 6);
    std::memcpy(d + 6, &f.ethSrc, 6);
    uint32_t off = 12;
    if (f.vlan) {
      d[off] = 0x81;
      d[off + 1] = 0x00;
      d[off + 2] = 0x00;
      d[off + 3] = 0x2a;  // VLAN 42
      off += 4;
    }
    d[off] = 0x08;
    d[off + 1] = 0x06;
    uint8_t* a = d + off + 2;
    if (a + 28 <= d + len) {
      a[0] = 0;
      a[1] = 1;
      a[2] = 0x08;
      a[3] = 0x00;
      a[4] = 6;
      a[5] = 4;
      a[6] = static_cast<uint8_t>(f.op >> 8);
      a[7] = static_cast<uint8_t>(f.op);
      std::memcpy(a + 8, &f.sha, 6);
      std::memcpy(a + 14, &f.spa, 4);
      std::memcpy(a + 18, &f.tha, 6);
      std::memcpy(a + 24, &f.tpa, 4);
    }
    m->port = f.port;
    return m;
  }

  Frame request(uint32_t from, const rte_ether_addr& fromMac, uint32_t target) {
    Frame f;
    f.op = RTE_ARP_OP_REQUEST;
    f.ethSrc = fromMac;
    f.ethDst = kBcast;
    f.sha = fromMac;
    f.spa = from;
    f.tpa = target;
    return f;
  }

  Frame reply(uint32_t from, const rte_ether_addr& fromMac, uint32_t target) {
    Frame f;
    f.op = RTE_ARP_OP_REPLY;
    f.ethSrc = fromMac;
    f.ethDst = kOurMac;
    f.sha = fromMac;
    f.spa = from;
    f.tha = kOurMac;
    f.tpa = target;
    return f;
  }

  uint64_t drops(DropReason r) const { return counters_->drops[static_cast<std::size_t>(r)]; }
  uint64_t totalDrops() const {
    uint64_t n = 0;
    for (auto d : counters_->drops) n += d;
    return n;
  }
  bool known(uint32_t a, rte_ether_addr* out = nullptr) const {
    rte_ether_addr m{};
    bool ok = neigh_.lookup(a, m);
    if (out != nullptr) *out = m;
    return ok;
  }

  void expectRequest(rte_mbuf* m, uint32_t target, const rte_ether_addr& ethDst) {
    Seen s = parse(m);
    EXPECT_TRUE(eq(s.ethDst, ethDst));
    EXPECT_TRUE(eq(s.ethSrc, kOurMac));
    EXPECT_EQ(s.etherType, 0x0806);
    EXPECT_EQ(s.htype, 1);
    EXPECT_EQ(s.ptype, 0x0800);
    EXPECT_EQ(s.hlen, 6);
    EXPECT_EQ(s.plen, 4);
    EXPECT_EQ(s.op, RTE_ARP_OP_REQUEST);
    EXPECT_TRUE(eq(s.sha, kOurMac));
    EXPECT_EQ(s.spa, ip("192.0.2.10"));
    EXPECT_TRUE(eq(s.tha, kZero));
    EXPECT_EQ(s.tpa, target);
    EXPECT_EQ(s.port, 0);
    EXPECT_EQ(s.len, 60u);
  }

  rte_mempool* pool_ = nullptr;
  std::unique_ptr<WorkerCounters> counters_;
  sd::NeighbourTable neigh_{64};
  std::unique_ptr<sd::ArpService> arp_;
  std::vector<rte_mbuf*> sent_;
  bool acceptTx_ = true;
  uint32_t vip_ = ip("192.0.2.20");
  uint32_t snat_ = ip("192.0.2.30");
  uint32_t offLinkVip_ = ip("203.0.113.50");
};

}  // namespace

TEST_F(ArpTest, RequestForInterfaceAddressIsAnsweredInPlace) {
  const uint32_t gw = ip("192.0.2.1");
  rte_mbuf* in = make(request(gw, mac(1), ip("192.0.2.10")));
  arp_->handle(in, 1000);
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sent_[0], in);  // the request's own buffer became the reply
  Seen s = parse(sent_[0]);
  EXPECT_TRUE(eq(s.ethDst, mac(1)));
  EXPECT_TRUE(eq(s.ethSrc, kOurMac));
  EXPECT_EQ(s.etherType, 0x0806);
  EXPECT_FALSE(s.vlan);
  EXPECT_EQ(s.htype, 1);
  EXPECT_EQ(s.ptype, 0x0800);
  EXPECT_EQ(s.hlen, 6);
  EXPECT_EQ(s.plen, 4);
  EXPECT_EQ(s.op, RTE_ARP_OP_REPLY);
  EXPECT_TRUE(eq(s.sha, kOurMac));
  EXPECT_EQ(s.spa, ip("192.0.2.10"));
  EXPECT_TRUE(eq(s.tha, mac(1)));
  EXPECT_EQ(s.tpa, gw);
  EXPECT_EQ(s.port, 0);
  EXPECT_EQ(totalDrops(), 0u);
  // A request to us teaches us the asker.
  rte_ether_addr m{};
  ASSERT_TRUE(known(gw, &m));
  EXPECT_TRUE(eq(m, mac(1)));
}

TEST_F(ArpTest, VipAndSnatAddressesAreAnswered) {
  for (uint32_t target : {vip_, snat_}) {
    arp_->handle(make(request(ip("192.0.2.1"), mac(1), target)), 1000);
    ASSERT_FALSE(sent_.empty());
    Seen s = parse(sent_.back());
    EXPECT_EQ(s.op, RTE_ARP_OP_REPLY);
    EXPECT_EQ(s.spa, target);
    EXPECT_TRUE(eq(s.sha, kOurMac));
    EXPECT_EQ(s.tpa, ip("192.0.2.1"));
  }
  EXPECT_EQ(sent_.size(), 2u);
  EXPECT_EQ(totalDrops(), 0u);
}

TEST_F(ArpTest, RequestForAnotherHostIsDroppedAndTeachesNothing) {
  arp_->handle(make(request(ip("192.0.2.1"), mac(1), ip("192.0.2.99"))), 1000);
  EXPECT_TRUE(sent_.empty());
  EXPECT_EQ(drops(DropReason::kArpNotOurs), 1u);
  EXPECT_FALSE(known(ip("192.0.2.1")));
}

TEST_F(ArpTest, RequestForAnotherHostUpdatesAKnownSender) {
  ASSERT_TRUE(neigh_.update(ip("192.0.2.1"), mac(1), 0));
  arp_->handle(make(request(ip("192.0.2.1"), mac(9), ip("192.0.2.99"))), 1000);
  rte_ether_addr m{};
  ASSERT_TRUE(known(ip("192.0.2.1"), &m));
  EXPECT_TRUE(eq(m, mac(9)));
  EXPECT_TRUE(sent_.empty());
  EXPECT_EQ(drops(DropReason::kArpNotOurs), 1u);
}

TEST_F(ArpTest, GratuitousArpFromKnownNeighbourUpdates) {
  ASSERT_TRUE(neigh_.update(ip("192.0.2.1"), mac(1), 0));
  Frame g = request(ip("192.0.2.1"), mac(7), ip("192.0.2.1"));
  arp_->handle(make(g), 500);
  rte_ether_addr m{};
  ASSERT_TRUE(known(ip("192.0.2.1"), &m));
  EXPECT_TRUE(eq(m, mac(7)));
  // ...but a gratuitous ARP from a stranger is not learned.
  arp_->handle(make(request(ip("192.0.2.2"), mac(2), ip("192.0.2.2"))), 500);
  EXPECT_FALSE(known(ip("192.0.2.2")));
  // A gratuitous reply from a known neighbour updates too.
  Frame r = reply(ip("192.0.2.1"), mac(8), ip("192.0.2.1"));
  r.ethDst = kBcast;
  arp_->handle(make(r), 600);
  ASSERT_TRUE(known(ip("192.0.2.1"), &m));
  EXPECT_TRUE(eq(m, mac(8)));
  EXPECT_TRUE(sent_.empty());
}

TEST_F(ArpTest, RequestFromOutsideOurSubnetsIsNotAnswered) {
  arp_->handle(make(request(ip("198.51.100.7"), mac(3), ip("192.0.2.10"))), 1000);
  EXPECT_TRUE(sent_.empty());
  EXPECT_EQ(drops(DropReason::kArpNotOurs), 1u);
  EXPECT_FALSE(known(ip("198.51.100.7")));
}

TEST_F(ArpTest, RequestArrivingOnAnotherPortIsNotAnswered) {
  Frame f = request(ip("192.0.2.1"), mac(1), ip("192.0.2.10"));
  f.port = 1;  // the 192.0.2.0/24 interface is on port 0
  arp_->handle(make(f), 1000);
  EXPECT_TRUE(sent_.empty());
  EXPECT_EQ(drops(DropReason::kArpNotOurs), 1u);
}

TEST_F(ArpTest, OffLinkVipIsStillAnsweredToOnLinkAskers) {
  arp_->handle(make(request(ip("192.0.2.1"), mac(1), offLinkVip_)), 1000);
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(parse(sent_[0]).spa, offLinkVip_);
}

TEST_F(ArpTest, ProbeForOurAddressIsDefended) {
  // RFC 5227 probe: sender 0.0.0.0.
  arp_->handle(make(request(0, mac(4), ip("192.0.2.10"))), 1000);
  ASSERT_EQ(sent_.size(), 1u);
  Seen s = parse(sent_[0]);
  EXPECT_EQ(s.op, RTE_ARP_OP_REPLY);
  EXPECT_EQ(s.tpa, 0u);
  EXPECT_TRUE(eq(s.tha, mac(4)));
  EXPECT_TRUE(eq(s.ethDst, mac(4)));
  EXPECT_EQ(neigh_.size(), 0u);
}

TEST_F(ArpTest, VlanTaggedRequestIsAnsweredWithTheTag) {
  Frame f = request(ip("192.0.2.1"), mac(1), ip("192.0.2.10"));
  f.vlan = true;
  arp_->handle(make(f), 1000);
  ASSERT_EQ(sent_.size(), 1u);
  Seen s = parse(sent_[0]);
  EXPECT_TRUE(s.vlan);
  EXPECT_EQ(s.etherType, 0x0806);
  EXPECT_EQ(s.op, RTE_ARP_OP_REPLY);
  EXPECT_EQ(s.spa, ip("192.0.2.10"));
  EXPECT_EQ(s.tpa, ip("192.0.2.1"));
  const uint8_t* d = rte_pktmbuf_mtod(sent_[0], const uint8_t*);
  EXPECT_EQ(d[15], 0x2a);
}

TEST_F(ArpTest, SharedBufferIsAnsweredFromAFreshOne) {
  rte_mbuf* in = make(request(ip("192.0.2.1"), mac(1), ip("192.0.2.10")));
  rte_mbuf_refcnt_update(in, 1);  // someone else still holds it
  arp_->handle(in, 1000);
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_NE(sent_[0], in);
  Seen s = parse(sent_[0]);
  EXPECT_EQ(s.op, RTE_ARP_OP_REPLY);
  EXPECT_TRUE(eq(s.ethDst, mac(1)));
  EXPECT_TRUE(eq(s.tha, mac(1)));
  EXPECT_EQ(s.spa, ip("192.0.2.10"));
  EXPECT_EQ(s.tpa, ip("192.0.2.1"));
  // The request is untouched and still ours to free.
  EXPECT_EQ(parse(in).op, RTE_ARP_OP_REQUEST);
  EXPECT_EQ(rte_mbuf_refcnt_read(in), 1);
  rte_pktmbuf_free(in);
}

TEST_F(ArpTest, ResolveSendsRateLimitedRequestsAndReplyIsLearned) {
  const uint32_t backendGw = ip("192.0.2.1");
  arp_->resolve(backendGw, 10'000);
  ASSERT_EQ(sent_.size(), 1u);
  expectRequest(sent_[0], backendGw, kBcast);
  EXPECT_EQ(arp_->pendingCount(), 1u);

  arp_->resolve(backendGw, 10'500);  // within a second: nothing new
  EXPECT_EQ(sent_.size(), 1u);
  arp_->resolve(backendGw, 11'000);
  ASSERT_EQ(sent_.size(), 2u);
  expectRequest(sent_[1], backendGw, kBcast);

  // Off-link addresses are never asked for.
  arp_->resolve(ip("203.0.113.9"), 11'000);
  EXPECT_EQ(sent_.size(), 2u);

  arp_->handle(make(reply(backendGw, mac(1), ip("192.0.2.10"))), 11'100);
  rte_ether_addr m{};
  ASSERT_TRUE(known(backendGw, &m));
  EXPECT_TRUE(eq(m, mac(1)));
  EXPECT_EQ(arp_->pendingCount(), 0u);
  EXPECT_EQ(totalDrops(), 0u);

  // Resolved: no more requests.
  arp_->resolve(backendGw, 20'000);
  EXPECT_EQ(sent_.size(), 2u);
}

TEST_F(ArpTest, RepliesAreLearnedOnlyWhenAskedOrAddressedToUs) {
  // Unsolicited, addressed to someone else: ignored.
  arp_->handle(make(reply(ip("192.0.2.5"), mac(5), ip("192.0.2.6"))), 100);
  EXPECT_FALSE(known(ip("192.0.2.5")));
  EXPECT_EQ(drops(DropReason::kArpNotOurs), 1u);
  // Addressed to our address (a late answer to an expired request): learned.
  arp_->handle(make(reply(ip("192.0.2.5"), mac(5), ip("192.0.2.10"))), 200);
  EXPECT_TRUE(known(ip("192.0.2.5")));
  // From outside every connected subnet: never learned, even to us.
  arp_->handle(make(reply(ip("198.51.100.5"), mac(6), ip("192.0.2.10"))), 300);
  EXPECT_FALSE(known(ip("198.51.100.5")));
  EXPECT_EQ(drops(DropReason::kArpNotOurs), 2u);
  // Someone claiming one of our own addresses is not learned either.
  arp_->handle(make(reply(vip_, mac(7), ip("192.0.2.10"))), 400);
  EXPECT_FALSE(known(vip_));
  EXPECT_TRUE(sent_.empty());
}

TEST_F(ArpTest, MalformedAndForeignFramesAreCounted) {
  // Truncated: Ethernet header only.
  arp_->handle(make(request(ip("192.0.2.1"), mac(1), ip("192.0.2.10")), 14), 0);
  EXPECT_EQ(drops(DropReason::kMalformed), 1u);
  // Truncated inside the ARP header.
  arp_->handle(make(request(ip("192.0.2.1"), mac(1), ip("192.0.2.10")), 30), 0);
  EXPECT_EQ(drops(DropReason::kMalformed), 2u);
  // Wrong hardware length.
  rte_mbuf* m = make(request(ip("192.0.2.1"), mac(1), ip("192.0.2.10")));
  rte_pktmbuf_mtod(m, uint8_t*)[18] = 8;
  arp_->handle(m, 0);
  EXPECT_EQ(drops(DropReason::kMalformed), 3u);
  // An opcode that is neither request nor reply.
  Frame f = request(ip("192.0.2.1"), mac(1), ip("192.0.2.10"));
  f.op = 3;
  arp_->handle(make(f), 0);
  EXPECT_EQ(drops(DropReason::kMalformed), 4u);
  // A broadcast sender MAC.
  Frame b = request(ip("192.0.2.1"), kBcast, ip("192.0.2.10"));
  arp_->handle(make(b), 0);
  EXPECT_EQ(drops(DropReason::kMalformed), 5u);
  // Not ARP at all.
  rte_mbuf* ipv4 = make(request(ip("192.0.2.1"), mac(1), ip("192.0.2.10")));
  rte_pktmbuf_mtod(ipv4, uint8_t*)[13] = 0x00;  // 0x0800
  arp_->handle(ipv4, 0);
  EXPECT_EQ(drops(DropReason::kUnsupportedL2), 1u);
  EXPECT_TRUE(sent_.empty());
  EXPECT_EQ(neigh_.size(), 0u);
}

TEST_F(ArpTest, RefusedTransmitIsCountedAndFreed) {
  acceptTx_ = false;
  arp_->handle(make(request(ip("192.0.2.1"), mac(1), ip("192.0.2.10"))), 0);
  arp_->resolve(ip("192.0.2.3"), 0);
  EXPECT_EQ(drops(DropReason::kTxFull), 2u);
  EXPECT_TRUE(sent_.empty());
}

TEST_F(ArpTest, TickRetriesPendingThenGivesUp) {
  const uint32_t hop = ip("192.0.2.1");
  arp_->resolve(hop, 0);
  ASSERT_EQ(sent_.size(), 1u);
  arp_->tick(500, 60'000);  // too soon
  EXPECT_EQ(sent_.size(), 1u);
  arp_->tick(1000, 60'000);
  EXPECT_EQ(sent_.size(), 2u);
  arp_->tick(2000, 60'000);
  EXPECT_EQ(sent_.size(), 3u);
  for (rte_mbuf* m : sent_) expectRequest(m, hop, kBcast);
  arp_->tick(3000, 60'000);  // three tries: give up
  EXPECT_EQ(sent_.size(), 3u);
  EXPECT_EQ(arp_->pendingCount(), 0u);
  arp_->tick(10'000, 60'000);
  EXPECT_EQ(sent_.size(), 3u);
  // A new miss starts over.
  arp_->resolve(hop, 10'000);
  EXPECT_EQ(sent_.size(), 4u);
}

TEST_F(ArpTest, TickRefreshesByUnicastAndAgesOut) {
  const uint32_t hop = ip("192.0.2.1");
  ASSERT_TRUE(neigh_.update(hop, mac(1), 0));
  arp_->tick(1000, 10'000);  // young
  EXPECT_TRUE(sent_.empty());
  arp_->tick(6000, 10'000);  // past half its life: unicast refresh
  ASSERT_EQ(sent_.size(), 1u);
  expectRequest(sent_[0], hop, mac(1));
  arp_->tick(6500, 10'000);  // rate limited
  EXPECT_EQ(sent_.size(), 1u);
  // The neighbour answers: fresh again, nothing pending.
  arp_->handle(make(reply(hop, mac(1), ip("192.0.2.10"))), 6600);
  EXPECT_EQ(arp_->pendingCount(), 0u);
  arp_->tick(7000, 10'000);
  EXPECT_EQ(sent_.size(), 1u);
  // Silent from now on: invalid once the timeout has passed.
  arp_->tick(16'600, 10'000);
  EXPECT_FALSE(known(hop));
}

TEST_F(ArpTest, AnnounceCoversEveryOwnedAddressOnItsLink) {
  arp_->setOwnedAddresses({vip_, snat_, vip_, ip("192.0.2.10"), offLinkVip_});
  arp_->announce();
  // Interface address, VIP, SNAT; duplicates and off-link addresses skipped.
  ASSERT_EQ(sent_.size(), 3u);
  std::vector<uint32_t> announced;
  for (rte_mbuf* m : sent_) {
    Seen s = parse(m);
    EXPECT_TRUE(eq(s.ethDst, kBcast));
    EXPECT_TRUE(eq(s.ethSrc, kOurMac));
    EXPECT_EQ(s.op, RTE_ARP_OP_REQUEST);
    EXPECT_TRUE(eq(s.sha, kOurMac));
    EXPECT_EQ(s.spa, s.tpa);
    EXPECT_TRUE(eq(s.tha, kZero));
    EXPECT_EQ(s.port, 0);
    announced.push_back(s.spa);
  }
  EXPECT_EQ(announced, (std::vector<uint32_t>{ip("192.0.2.10"), vip_, snat_}));
}
