// The worker poll loop against a ring-backed ethdev (net_ring): frames go
// in through one rte_ring and come out of another, with the real NatCore,
// route table and neighbour table in between, and workerMain running on
// its own thread. Checks what each verdict turns into (forwarded frames
// with the next hop's MAC, echo replies, ARP to the control ring, handoff
// to the owner's ring, no-route and neighbour-miss drops with a
// rate-limited resolve request), frames from the control thread leaving
// through worker 0, TX-full accounting, snapshot pickup with a flush sweep,
// commands through the command ring (flow dumps and pool statistics as
// cursors, every command answered), the loop statistics, and that every
// mbuf is freed or handed on (no leaks).
// The port is brought up with setupPort, so this is also its test on a
// PMD without RSS or MTU control.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_tcp.h>
#include <rte_udp.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/flow_table.h"
#include "dataplane/nat.h"
#include "dataplane/neighbour.h"
#include "dataplane/port.h"
#include "dataplane/port_alloc.h"
#include "dataplane/snat_pools.h"
#include "dataplane/route.h"
#include "dataplane/tsan.h"
#include "dataplane/worker.h"

namespace sd = strait::dataplane;
using strait::BackendView;
using strait::DropReason;
using strait::ServiceView;
using strait::Snapshot;
using strait::WorkerCounters;

namespace {

uint32_t ip4(const char* s) {
  in_addr a{};
  inet_pton(AF_INET, s, &a);
  return a.s_addr;
}

const rte_ether_addr kGatewayMac{{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}};
const rte_ether_addr kClientSideMac{{0x02, 0x00, 0x00, 0x00, 0x00, 0x99}};

template <class F>
bool waitFor(F&& cond) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

struct L4 {
  uint8_t proto = IPPROTO_UDP;
  uint16_t sport = 0, dport = 0;  // host order; ICMP echo: id in sport
};

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    tag_ = "wt" + std::to_string(n++);
    // Mbufs sized for jumbo frames, as straitd sizes them for mtu = 9001.
    pool_ = rte_pktmbuf_pool_create((tag_ + "p").c_str(), 1023, 0, 0, sd::mbufDataRoomForMtu(9001), SOCKET_ID_ANY);
    ASSERT_NE(pool_, nullptr);
    rx_ = ring("rx", 64);
    tx_ = ring("tx", txRingSize_);
    int port = rte_eth_from_rings((tag_ + "eth").c_str(), &rx_, 1, &tx_, 1, SOCKET_ID_ANY);
    ASSERT_GE(port, 0);
    char name[RTE_ETH_NAME_MAX_LEN] = {};
    ASSERT_EQ(rte_eth_dev_get_name_by_port(static_cast<uint16_t>(port), name), 0);
    sd::PortParams pp;
    pp.device = name;
    pp.queues = 1;
    pp.mtu = 9001;  // net_ring carries any frame size (and has no MTU control)
    pp.rxPools = {pool_};
    port_ = sd::setupPort(pp);
    ASSERT_EQ(port_.portId, port);
    EXPECT_FALSE(port_.rssPredictable);
    started_ = true;

    toControl_ = ring("toc", 64);
    resolve_ = ring("res", 64);
    fromControl_ = ring("fromc", 64);
    handoff_ = {ring("ho0", 64), ring("ho1", 64)};

    // Service udp 192.0.2.20:5000 -> 203.0.113.11:80, SNAT 192.0.2.10.
    snap_.generation = 1;
    ServiceView sv;
    sv.name = "udp";
    sv.slot = 3;
    sv.vip = ip4("192.0.2.20");
    sv.port = htons(5000);
    sv.proto = IPPROTO_UDP;
    sv.snatIps = {ip4("192.0.2.10")};
    BackendView b;
    b.ip = ip4("203.0.113.11");
    b.port = htons(80);
    b.slot = 7;
    sv.backends = {b};
    sv.maglev.assign(13, 0);
    snap_.services.push_back(sv);
    // A second service whose backend is on-link and not resolved yet.
    sv.name = "onlink";
    sv.slot = 4;
    sv.port = htons(5001);
    sv.backends[0].ip = ip4("192.0.2.50");
    sv.backends[0].slot = 8;
    snap_.services.push_back(sv);
    snap_.buildIndexes({ip4("192.0.2.10")});
    snapPtr_.store(&snap_);

    rcu_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc(nullptr, rte_rcu_qsbr_get_memsize(2), RTE_CACHE_LINE_SIZE));
    ASSERT_EQ(rte_rcu_qsbr_init(rcu_, 2), 0);

    flowsName_ = tag_ + "flows";
    sd::FlowTable::Params fp;
    fp.capacity = 1024;
    fp.name = flowsName_.c_str();
    flows_ = std::make_unique<sd::FlowTable>(fp);
    sd::PortAllocator::Params ap;
    ap.portMin = 2000;
    ap.portMax = 2999;
    ap.eligible = [](const sd::PoolKey&, uint16_t p) { return p % 2 == 0; };  // worker 0 of 2
    alloc_ = std::make_unique<sd::PortAllocator>(ap);
    pools_ = std::make_unique<sd::SnatPools>(sd::SnatPools::Params{{alloc_.get()}, {}, {}});
    counters_ = std::make_unique<WorkerCounters>();
    sd::NatCore::Deps d;
    d.flows = flows_.get();
    d.ports = alloc_.get();
    d.counters = counters_.get();
    d.workerId = 0;
    d.numWorkers = 2;
    d.ownerMode = sd::OwnerMode::kPortModulo;
    nat_ = std::make_unique<sd::NatCore>(d);

    routes_ = std::make_unique<sd::RouteTable>(tag_ + "rt", SOCKET_ID_ANY);
    routes_->add(ip4("192.0.2.0"), 24, sd::NextHop{port_.portId, 0});
    routes_->add(ip4("203.0.113.0"), 24, sd::NextHop{port_.portId, ip4("192.0.2.1")});
    routes_->add(0, 0, sd::NextHop{port_.portId, ip4("192.0.2.1")});  // clients
    ASSERT_TRUE(neigh_.update(ip4("192.0.2.1"), kGatewayMac, 0));

    ctx_.id = 0;
    ctx_.numWorkers = 2;
    ctx_.ports = {port_.portId};
    ctx_.portMacs.resize(port_.portId + 1u);
    ctx_.portMacs[port_.portId] = port_.mac;
    ctx_.burst = 32;
    ctx_.idleSleepUs = 20;
    ctx_.snapshot = &snapPtr_;
    ctx_.rcu = rcu_;
    ctx_.nat = nat_.get();
    ctx_.counters = counters_.get();
    ctx_.routes = routes_.get();
    ctx_.neighbours = &neigh_;
    ctx_.handoff = handoff_;
    ctx_.toControl = toControl_;
    ctx_.resolve = resolve_;
    ctx_.fromControl = fromControl_;
    ctx_.stop = &stop_;
    commands_ = rte_ring_create_elem((tag_ + "cmd").c_str(), sizeof(sd::WorkerCommand), 16, SOCKET_ID_ANY,
                                     RING_F_SP_ENQ | RING_F_SC_DEQ);
    replies_ = rte_ring_create_elem((tag_ + "rep").c_str(), sizeof(sd::WorkerReply), 16, SOCKET_ID_ANY,
                                    RING_F_SP_ENQ | RING_F_SC_DEQ);
    ASSERT_NE(commands_, nullptr);
    ASSERT_NE(replies_, nullptr);
    runner_ = std::make_unique<sd::CommandRunner>(commands_, replies_, flows_.get());
    ctx_.commands = runner_.get();
  }

  // Sends one command and waits for its reply; returns the entry count.
  uint32_t command(sd::CommandKind kind, void* out, uint32_t capacity, uint16_t service = sd::kAnyService) {
    sd::WorkerCommand c{kind, ++lastId_, capacity, service, 0, out};
    EXPECT_EQ(rte_ring_sp_enqueue_elem(commands_, &c, sizeof c), 0);
    sd::WorkerReply r{};
    EXPECT_TRUE(waitFor([&] { return rte_ring_sc_dequeue_elem(replies_, &r, sizeof r) == 0; }));
    EXPECT_EQ(r.id, lastId_);
    return r.count;
  }

  void TearDown() override {
    stopWorker();
    for (rte_ring* r : rings_) {
      void* m = nullptr;
      while (r != resolve_ && rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
    }
    if (started_) sd::stopPort(port_);
    nat_.reset();
    flows_.reset();
    alloc_.reset();
    routes_.reset();
    for (rte_ring* r : rings_) rte_ring_free(r);
    runner_.reset();
    rte_ring_free(commands_);
    rte_ring_free(replies_);
    rte_free(rcu_);
    if (pool_ != nullptr) {
      EXPECT_EQ(rte_mempool_in_use_count(pool_), 0u) << "mbufs leaked";
      rte_mempool_free(pool_);
    }
  }

  rte_ring* ring(const char* what, unsigned size) {
    rte_ring* r = rte_ring_create((tag_ + what).c_str(), size, SOCKET_ID_ANY, 0);
    EXPECT_NE(r, nullptr);
    rings_.push_back(r);
    return r;
  }

  // Prepares the SNAT pools of snap_ as it is now (straitd does before
  // publishing), then runs the worker.
  void startWorker() {
    pools_->prepare(snap_);
    thread_ = std::thread([this] { sd::workerMain(&ctx_); });
  }
  void stopWorker() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  rte_mbuf* frame(uint32_t src, uint32_t dst, L4 l4, const rte_ether_addr& ethDst,
                  const char* payload = "hi") {
    rte_mbuf* m = allocOrDie();
    const uint16_t plen = static_cast<uint16_t>(std::strlen(payload));
    const uint16_t l4len = static_cast<uint16_t>(8 + plen);
    const uint16_t total = static_cast<uint16_t>(14 + 20 + l4len);
    auto* d = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, total < 60 ? 60 : total));
    if (d == nullptr) std::abort();
    std::memset(d, 0, total < 60 ? 60 : total);
    auto* eth = reinterpret_cast<rte_ether_hdr*>(d);
    eth->dst_addr = ethDst;
    eth->src_addr = kClientSideMac;
    eth->ether_type = htons(RTE_ETHER_TYPE_IPV4);
    auto* iph = reinterpret_cast<rte_ipv4_hdr*>(d + 14);
    iph->version_ihl = 0x45;
    iph->total_length = htons(static_cast<uint16_t>(20 + l4len));
    iph->time_to_live = 64;
    iph->next_proto_id = l4.proto;
    iph->src_addr = src;
    iph->dst_addr = dst;
    iph->hdr_checksum = rte_ipv4_cksum(iph);
    uint8_t* p = d + 34;
    if (l4.proto == IPPROTO_UDP) {
      auto* u = reinterpret_cast<rte_udp_hdr*>(p);
      u->src_port = htons(l4.sport);
      u->dst_port = htons(l4.dport);
      u->dgram_len = htons(l4len);
      std::memcpy(p + 8, payload, plen);
      u->dgram_cksum = rte_ipv4_udptcp_cksum(iph, u);
    } else {  // ICMP echo request
      p[0] = 8;
      p[4] = static_cast<uint8_t>(l4.sport >> 8);
      p[5] = static_cast<uint8_t>(l4.sport);
      std::memcpy(p + 8, payload, plen);
      uint16_t ck = static_cast<uint16_t>(~rte_raw_cksum(p, l4len));
      std::memcpy(p + 2, &ck, 2);
    }
    m->port = port_.portId;
    return m;
  }

  rte_mbuf* arpFrame() {
    rte_mbuf* m = allocOrDie();
    auto* d = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, 60));
    if (d == nullptr) std::abort();
    std::memset(d, 0, 60);
    std::memset(d, 0xff, 6);
    std::memcpy(d + 6, &kGatewayMac, 6);
    d[12] = 0x08;
    d[13] = 0x06;
    const uint8_t hdr[] = {0, 1, 8, 0, 6, 4, 0, 1};
    std::memcpy(d + 14, hdr, sizeof hdr);
    m->port = port_.portId;
    return m;
  }

  rte_mbuf* allocOrDie() {
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    if (m == nullptr) std::abort();  // 1023 mbufs: a leak, not a test condition
    sd::tsanAcquire(pool_);  // after the worker's last use of a recycled mbuf
    return m;
  }

  // The net_ring PMD hands frames over in uninstrumented DPDK code: mark
  // the hand-off for ThreadSanitizer builds (dataplane/tsan.h).
  void inject(rte_mbuf* m) {
    sd::tsanRelease(m);
    ASSERT_EQ(rte_ring_enqueue(rx_, m), 0);
  }

  // Waits for `n` frames on the TX side of the port.
  std::vector<rte_mbuf*> sent(unsigned n) {
    std::vector<rte_mbuf*> out;
    EXPECT_TRUE(waitFor([&] {
      void* m = nullptr;
      while (rte_ring_dequeue(tx_, &m) == 0) {
        sd::tsanAcquire(m);
        out.push_back(static_cast<rte_mbuf*>(m));
      }
      return out.size() >= n;
    })) << "only "
        << out.size() << " of " << n << " frames sent; " << dropSummary();
    return out;
  }

  void freeAll(std::vector<rte_mbuf*>& v) {
    for (rte_mbuf* m : v) rte_pktmbuf_free(m);
    v.clear();
  }

  std::string dropSummary() const {
    std::string s = "rx " + std::to_string(strait::peek(counters_->rxPackets)) + " tx " +
                    std::to_string(strait::peek(counters_->txPackets)) + ", drops:";
    for (std::size_t i = 0; i < strait::kDropReasonCount; ++i)
      if (strait::peek(counters_->drops[i]) != 0)
        s += " " + std::string(strait::kDropReasonNames[i]) + "=" + std::to_string(strait::peek(counters_->drops[i]));
    return s;
  }

  uint64_t drops(DropReason r) const { return strait::peek(counters_->drops[static_cast<std::size_t>(r)]); }

  // Waits until the worker has taken everything injected so far.
  void drained() {
    EXPECT_TRUE(waitFor([&] { return rte_ring_count(rx_) == 0; }));
    // One more full iteration after the ring emptied.
    uint64_t loops = strait::peek(counters_->loops);
    EXPECT_TRUE(waitFor([&] { return strait::peek(counters_->loops) > loops + 1; }));
  }

  static const rte_ipv4_hdr* ipOf(rte_mbuf* m) { return rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, 14); }
  static const rte_ether_hdr* ethOf(rte_mbuf* m) { return rte_pktmbuf_mtod(m, const rte_ether_hdr*); }

  std::string tag_;
  unsigned txRingSize_ = 256;
  rte_mempool* pool_ = nullptr;
  rte_ring* rx_ = nullptr;
  rte_ring* tx_ = nullptr;
  sd::PortState port_;
  bool started_ = false;
  rte_ring* toControl_ = nullptr;
  rte_ring* resolve_ = nullptr;
  rte_ring* fromControl_ = nullptr;
  std::vector<rte_ring*> handoff_;
  std::vector<rte_ring*> rings_;
  Snapshot snap_;
  std::atomic<const Snapshot*> snapPtr_{nullptr};
  rte_rcu_qsbr* rcu_ = nullptr;
  std::string flowsName_;
  std::unique_ptr<sd::FlowTable> flows_;
  std::unique_ptr<sd::PortAllocator> alloc_;
  std::unique_ptr<sd::SnatPools> pools_;
  std::unique_ptr<WorkerCounters> counters_;
  std::unique_ptr<sd::NatCore> nat_;
  std::unique_ptr<sd::RouteTable> routes_;
  sd::NeighbourTable neigh_{64};
  std::atomic<bool> stop_{false};
  sd::WorkerContext ctx_;
  rte_ring* commands_ = nullptr;
  rte_ring* replies_ = nullptr;
  std::unique_ptr<sd::CommandRunner> runner_;
  uint32_t lastId_ = 0;
  std::thread thread_;
};

}  // namespace

TEST_F(WorkerTest, ForwardsWithTheNextHopsMacAndRepliesComeBack) {
  startWorker();
  inject(frame(ip4("198.51.100.7"), ip4("192.0.2.20"), {IPPROTO_UDP, 40000, 5000}, port_.mac));
  auto out = sent(1);
  ASSERT_EQ(out.size(), 1u);
  const rte_ether_hdr* eth = ethOf(out[0]);
  EXPECT_EQ(std::memcmp(&eth->dst_addr, &kGatewayMac, 6), 0);  // via 192.0.2.1
  EXPECT_EQ(std::memcmp(&eth->src_addr, &port_.mac, 6), 0);
  const rte_ipv4_hdr* iph = ipOf(out[0]);
  EXPECT_EQ(iph->dst_addr, ip4("203.0.113.11"));
  EXPECT_EQ(iph->src_addr, ip4("192.0.2.10"));
  EXPECT_EQ(out[0]->port, port_.portId);
  const auto* udp = rte_pktmbuf_mtod_offset(out[0], const rte_udp_hdr*, 34);
  const uint16_t snatPort = ntohs(udp->src_port);
  EXPECT_EQ(snatPort % 2, 0);  // worker 0's ports
  freeAll(out);

  // The backend's reply goes back to the client through the gateway.
  inject(frame(ip4("203.0.113.11"), ip4("192.0.2.10"), {IPPROTO_UDP, 80, snatPort}, port_.mac));
  out = sent(1);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(ipOf(out[0])->src_addr, ip4("192.0.2.20"));
  EXPECT_EQ(ipOf(out[0])->dst_addr, ip4("198.51.100.7"));
  EXPECT_EQ(std::memcmp(&ethOf(out[0])->dst_addr, &kGatewayMac, 6), 0);
  freeAll(out);
  drained();
  stopWorker();
  EXPECT_EQ(counters_->rxPackets, 2u);
  EXPECT_EQ(counters_->txPackets, 2u);
  EXPECT_GT(counters_->rxBytes, 0u);
  EXPECT_EQ(counters_->txBytes, counters_->rxBytes);  // NAT keeps sizes
  EXPECT_EQ(counters_->flowsCreated, 1u);
  EXPECT_EQ(counters_->snapshotGeneration, 1u);
  EXPECT_GE(counters_->busyLoops, 1u);
  EXPECT_GE(counters_->loops, counters_->busyLoops);
  EXPECT_GE(counters_->totalCycles, counters_->busyCycles);
}

TEST_F(WorkerTest, EchoToOurAddressIsAnsweredOutTheSamePort) {
  startWorker();
  inject(frame(ip4("192.0.2.1"), ip4("192.0.2.10"), {IPPROTO_ICMP, 0x1234, 0}, port_.mac));
  auto out = sent(1);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(ipOf(out[0])->src_addr, ip4("192.0.2.10"));
  EXPECT_EQ(ipOf(out[0])->dst_addr, ip4("192.0.2.1"));
  EXPECT_EQ(rte_pktmbuf_mtod_offset(out[0], const uint8_t*, 34)[0], 0);  // echo reply
  EXPECT_EQ(std::memcmp(&ethOf(out[0])->dst_addr, &kClientSideMac, 6), 0);
  freeAll(out);
}

TEST_F(WorkerTest, ArpGoesToTheControlRing) {
  startWorker();
  rte_mbuf* a = arpFrame();
  inject(a);
  void* got = nullptr;
  ASSERT_TRUE(waitFor([&] { return rte_ring_dequeue(toControl_, &got) == 0; }));
  EXPECT_EQ(got, a);
  rte_pktmbuf_free(static_cast<rte_mbuf*>(got));
}

TEST_F(WorkerTest, NeighbourMissDropsAndAsksOncePerSecond) {
  startWorker();
  for (int i = 0; i < 5; ++i)
    inject(frame(ip4("198.51.100.7"), ip4("192.0.2.20"),
                 {IPPROTO_UDP, static_cast<uint16_t>(41000 + i), 5001}, port_.mac));
  drained();
  EXPECT_EQ(drops(DropReason::kNeighbourMiss), 5u);
  // One request for 192.0.2.50 on the resolve ring, not five.
  void* v = nullptr;
  ASSERT_EQ(rte_ring_dequeue(resolve_, &v), 0);
  EXPECT_EQ(static_cast<uint32_t>(reinterpret_cast<uintptr_t>(v)), ip4("192.0.2.50"));
  EXPECT_NE(rte_ring_dequeue(resolve_, &v), 0);

  // Resolved: the next packet goes out to the neighbour itself (on-link).
  const rte_ether_addr backendMac{{0x02, 0, 0, 0, 0, 0x50}};
  ASSERT_TRUE(neigh_.update(ip4("192.0.2.50"), backendMac, 1));
  inject(frame(ip4("198.51.100.7"), ip4("192.0.2.20"), {IPPROTO_UDP, 41000, 5001}, port_.mac));
  auto out = sent(1);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(ipOf(out[0])->dst_addr, ip4("192.0.2.50"));
  EXPECT_EQ(std::memcmp(&ethOf(out[0])->dst_addr, &backendMac, 6), 0);
  freeAll(out);
}

TEST_F(WorkerTest, NoRouteIsCounted) {
  // A route table without the backend's network.
  routes_ = std::make_unique<sd::RouteTable>(tag_ + "rt2", SOCKET_ID_ANY);
  routes_->add(ip4("192.0.2.0"), 24, sd::NextHop{port_.portId, 0});
  ctx_.routes = routes_.get();
  startWorker();
  inject(frame(ip4("198.51.100.7"), ip4("192.0.2.20"), {IPPROTO_UDP, 40000, 5000}, port_.mac));
  drained();
  EXPECT_EQ(drops(DropReason::kNoRoute), 1u);
  EXPECT_EQ(counters_->txPackets, 0u);
}

TEST_F(WorkerTest, RepliesForAnotherWorkersPortAreHandedOverAndHandoffIsDrained) {
  startWorker();
  // SNAT port 2001 is odd: worker 1 owns it.
  rte_mbuf* r = frame(ip4("203.0.113.11"), ip4("192.0.2.10"), {IPPROTO_UDP, 80, 2001}, port_.mac);
  inject(r);
  void* got = nullptr;
  ASSERT_TRUE(waitFor([&] { return rte_ring_dequeue(handoff_[1], &got) == 0; }));
  EXPECT_EQ(got, r);
  rte_pktmbuf_free(r);
  EXPECT_EQ(strait::peek(counters_->handoffOut), 1u);

  // Something another worker hands to worker 0 is processed like RX.
  ASSERT_EQ(rte_ring_enqueue(handoff_[0],
                             frame(ip4("192.0.2.1"), ip4("192.0.2.10"), {IPPROTO_ICMP, 7, 0}, port_.mac)),
            0);
  auto out = sent(1);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(ipOf(out[0])->dst_addr, ip4("192.0.2.1"));
  freeAll(out);
  EXPECT_TRUE(waitFor([&] { return strait::peek(counters_->handoffIn) == 1; }));
  EXPECT_EQ(strait::peek(counters_->rxPackets), 1u);  // handed-over frames are not RX
}

TEST_F(WorkerTest, ControlFramesLeaveThroughWorkerZero) {
  startWorker();
  rte_mbuf* a = arpFrame();
  ASSERT_EQ(rte_ring_enqueue(fromControl_, a), 0);
  auto out = sent(1);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], a);
  freeAll(out);
  EXPECT_TRUE(waitFor([&] { return strait::peek(counters_->txPackets) == 1; }));
}

TEST_F(WorkerTest, SnapshotPickupFlushesAndTasksRun) {
  startWorker();
  inject(frame(ip4("198.51.100.7"), ip4("192.0.2.20"), {IPPROTO_UDP, 40000, 5000}, port_.mac));
  auto out = sent(1);
  freeAll(out);

  // A flow dump through the command ring, answered on the reply ring.
  std::vector<sd::Flow> buf(8);
  ASSERT_EQ(command(sd::CommandKind::kDumpFlows, buf.data(), 8), 1u);
  EXPECT_EQ(buf[0].backendSlot, 7);
  EXPECT_EQ(buf[0].backendIp, ip4("203.0.113.11"));

  // A snapshot that flushes backend slot 7: the flow goes.
  Snapshot next = snap_;
  next.generation = 2;
  next.flushedBackends.set(7);
  snapPtr_.store(&next, std::memory_order_release);
  rte_rcu_qsbr_synchronize(rcu_, RTE_QSBR_THRID_INVALID);  // returns once the worker passed the top
  ASSERT_TRUE(waitFor([&] { return strait::peek(counters_->snapshotGeneration) == 2; }));
  ASSERT_TRUE(waitFor([&] { return strait::peek(counters_->flowsFlushed) == 1; }));
  EXPECT_EQ(nat_->flows().size(), 0u);
  // The same flushed set again (generation 3) flushes nothing more.
  Snapshot again = next;
  again.generation = 3;
  snapPtr_.store(&again, std::memory_order_release);
  ASSERT_TRUE(waitFor([&] { return strait::peek(counters_->snapshotGeneration) == 3; }));
  stopWorker();
  EXPECT_EQ(counters_->flowsFlushed, 1u);
  snapPtr_.store(&snap_);
}

// Many flows, a dump of a service that has few of them, and pool
// occupancy: each command advances over several iterations and the
// results land in the caller's buffer. The loop statistics count every
// iteration in some bucket.
TEST_F(WorkerTest, CommandsAdvanceAsCursorsOverManyIterations) {
  // 600 flows straight into the table (capacity 1024), 5 of them on
  // service slot 4; a dump visits at most kCommandBudget records per
  // iteration, so the whole array takes more than one step only when the
  // budget is smaller than the table: check the result, not the timing.
  for (uint32_t i = 0; i < 600; ++i) {
    sd::Flow f{};
    f.clientIp = ip4("198.51.100.7") + htonl(i);
    f.vip = ip4("192.0.2.20");
    f.clientPort = htons(static_cast<uint16_t>(10000 + i));
    f.vipPort = htons(5000);
    f.backendIp = ip4("203.0.113.11");
    f.backendPort = htons(80);
    f.snatIp = ip4("192.0.2.10");
    f.snatPort = htons(static_cast<uint16_t>(30000 + i));
    f.proto = IPPROTO_UDP;
    f.state = strait::FlowState::kUdp;
    f.serviceSlot = i % 120 == 0 ? 4 : 3;
    f.backendSlot = 7;
    f.pool = sd::kNoPool;
    ASSERT_NE(flows_->insert(f, sd::tscNowMs()), sd::kNoFlow);  // the worker's clock: nothing expires
  }
  startWorker();
  std::vector<sd::Flow> buf(16);
  ASSERT_EQ(command(sd::CommandKind::kDumpFlows, buf.data(), 16, 4), 5u);
  for (uint32_t i = 0; i < 5; ++i) EXPECT_EQ(buf[i].serviceSlot, 4);
  // The buffer bounds the dump.
  ASSERT_EQ(command(sd::CommandKind::kDumpFlows, buf.data(), 16), 16u);
  // Pool occupancy needs no command: this thread reads what the worker
  // publishes (straitd's snatPools() does the same) while it runs.
  inject(frame(ip4("198.51.100.7"), ip4("192.0.2.20"), {IPPROTO_UDP, 40000, 5000}, port_.mac));
  auto out = sent(1);
  freeAll(out);
  uint32_t inUse = 0;
  ASSERT_FALSE(snap_.snatPools.empty());
  for (const strait::SnatPoolRef& r : snap_.snatPools) {
    inUse += alloc_->inUse(r.slot);
    EXPECT_EQ(alloc_->capacity(r.slot), 500u);  // even ports of 2000-2999
  }
  EXPECT_EQ(inUse, 1u);
  stopWorker();
  uint64_t inBuckets = 0;
  for (uint64_t b : counters_->loopBuckets) inBuckets += b;
  EXPECT_EQ(inBuckets, counters_->loops);
  EXPECT_GT(counters_->loopMaxCycles, 0u);
}

// A request nobody waits for any more still gets its reply, and its buffer
// is only given up then: the worker answers every command it takes.
TEST_F(WorkerTest, EveryCommandIsAnsweredInOrder) {
  startWorker();
  std::vector<sd::Flow> a(4), b(4);
  sd::WorkerCommand c1{sd::CommandKind::kDumpFlows, 1, 4, sd::kAnyService, 0, a.data()};
  sd::WorkerCommand c2{sd::CommandKind::kDumpFlows, 2, 4, sd::kAnyService, 0, b.data()};
  ASSERT_EQ(rte_ring_sp_enqueue_elem(commands_, &c1, sizeof c1), 0);
  ASSERT_EQ(rte_ring_sp_enqueue_elem(commands_, &c2, sizeof c2), 0);
  sd::WorkerReply r{};
  ASSERT_TRUE(waitFor([&] { return rte_ring_sc_dequeue_elem(replies_, &r, sizeof r) == 0; }));
  EXPECT_EQ(r.id, 1u);
  ASSERT_TRUE(waitFor([&] { return rte_ring_sc_dequeue_elem(replies_, &r, sizeof r) == 0; }));
  EXPECT_EQ(r.id, 2u);
  EXPECT_EQ(r.count, 0u);
}

// ---- jumbo frames ----

// An IPv4 frame of `ipLen` bytes (IP header included) with a TCP or UDP
// header and a payload of a repeating pattern, checksums valid.
rte_mbuf* jumboFrame(rte_mempool* pool, uint16_t portId, const rte_ether_addr& dst, uint32_t src, uint32_t dstIp,
                     uint8_t proto, uint16_t sport, uint16_t dport, uint16_t ipLen, uint8_t tcpFlags = 0x10) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool);
  if (m == nullptr) std::abort();
  sd::tsanAcquire(pool);
  auto* d = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, static_cast<uint16_t>(14 + ipLen)));
  if (d == nullptr) std::abort();  // the mbuf cannot hold the frame: a fixture error
  std::memset(d, 0, 14 + ipLen);
  auto* eth = reinterpret_cast<rte_ether_hdr*>(d);
  eth->dst_addr = dst;
  eth->src_addr = kClientSideMac;
  eth->ether_type = htons(RTE_ETHER_TYPE_IPV4);
  auto* iph = reinterpret_cast<rte_ipv4_hdr*>(d + 14);
  iph->version_ihl = 0x45;
  iph->total_length = htons(ipLen);
  iph->time_to_live = 64;
  iph->next_proto_id = proto;
  iph->src_addr = src;
  iph->dst_addr = dstIp;
  iph->hdr_checksum = rte_ipv4_cksum(iph);
  uint8_t* l4 = d + 34;
  const uint16_t l4Len = static_cast<uint16_t>(ipLen - 20);
  const uint16_t hdr = proto == IPPROTO_TCP ? 20 : 8;
  for (uint16_t i = hdr; i < l4Len; ++i) l4[i] = static_cast<uint8_t>(i * 7 + 3);
  if (proto == IPPROTO_TCP) {
    auto* t = reinterpret_cast<rte_tcp_hdr*>(l4);
    t->src_port = htons(sport);
    t->dst_port = htons(dport);
    t->data_off = 0x50;
    t->tcp_flags = tcpFlags;
    t->rx_win = htons(65535);
    t->cksum = rte_ipv4_udptcp_cksum(iph, t);
  } else {
    auto* u = reinterpret_cast<rte_udp_hdr*>(l4);
    u->src_port = htons(sport);
    u->dst_port = htons(dport);
    u->dgram_len = htons(l4Len);
    u->dgram_cksum = rte_ipv4_udptcp_cksum(iph, u);
  }
  m->port = portId;
  return m;
}

// The frame left intact: same length, valid IPv4 and L4 checksums, and
// the payload pattern unchanged after the L4 header.
void expectIntact(rte_mbuf* m, uint16_t ipLen, uint32_t src, uint32_t dst) {
  ASSERT_EQ(m->nb_segs, 1);
  ASSERT_EQ(rte_pktmbuf_pkt_len(m), 14u + ipLen);
  auto* iph = rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, 14);
  EXPECT_EQ(ntohs(iph->total_length), ipLen);
  EXPECT_EQ(iph->src_addr, src);
  EXPECT_EQ(iph->dst_addr, dst);
  const uint16_t stored = iph->hdr_checksum;
  iph->hdr_checksum = 0;
  EXPECT_EQ(rte_ipv4_cksum(iph), stored) << "IPv4 header checksum";
  iph->hdr_checksum = stored;
  uint8_t* l4 = reinterpret_cast<uint8_t*>(iph) + 20;
  const bool tcp = iph->next_proto_id == IPPROTO_TCP;
  uint8_t* ck = l4 + (tcp ? offsetof(rte_tcp_hdr, cksum) : offsetof(rte_udp_hdr, dgram_cksum));
  uint16_t l4Stored;
  std::memcpy(&l4Stored, ck, 2);
  std::memset(ck, 0, 2);
  EXPECT_EQ(rte_ipv4_udptcp_cksum(iph, l4), l4Stored) << "L4 checksum";
  std::memcpy(ck, &l4Stored, 2);
  const uint16_t hdr = tcp ? 20 : 8;
  bool same = true;
  for (uint16_t i = hdr; i < ipLen - 20; ++i) same = same && l4[i] == static_cast<uint8_t>(i * 7 + 3);
  EXPECT_TRUE(same) << "payload changed";
}

class WorkerJumboTest : public WorkerTest {
 protected:
  void SetUp() override {
    WorkerTest::SetUp();
    // A TCP service next to the UDP one: 192.0.2.20:5002 -> 203.0.113.11:80.
    ServiceView sv = snap_.services[0];
    sv.name = "tcp";
    sv.slot = 5;
    sv.port = htons(5002);
    sv.proto = IPPROTO_TCP;
    snap_.services.push_back(sv);
    snap_.buildIndexes({ip4("192.0.2.10")});
  }
  static constexpr uint16_t kJumbo = 9001;  // IP packet bytes (the mtu)
};

TEST_F(WorkerJumboTest, UdpJumboFramesBothDirections) {
  startWorker();
  const uint32_t client = ip4("198.51.100.7");
  inject(jumboFrame(pool_, port_.portId, port_.mac, client, ip4("192.0.2.20"), IPPROTO_UDP, 40000, 5000, kJumbo));
  auto out = sent(1);
  ASSERT_EQ(out.size(), 1u);
  expectIntact(out[0], kJumbo, ip4("192.0.2.10"), ip4("203.0.113.11"));
  const uint16_t snatPort = ntohs(rte_pktmbuf_mtod_offset(out[0], const rte_udp_hdr*, 34)->src_port);
  freeAll(out);
  inject(jumboFrame(pool_, port_.portId, port_.mac, ip4("203.0.113.11"), ip4("192.0.2.10"), IPPROTO_UDP, 80,
                    snatPort, kJumbo));
  out = sent(1);
  ASSERT_EQ(out.size(), 1u);
  expectIntact(out[0], kJumbo, ip4("192.0.2.20"), client);
  freeAll(out);
  drained();
  EXPECT_EQ(strait::peek(counters_->txBytes), 2u * (14 + kJumbo));
}

TEST_F(WorkerJumboTest, TcpJumboSegmentsBothDirectionsAndIcmpErrorsQuotingThem) {
  startWorker();
  const uint32_t client = ip4("198.51.100.7");
  const uint32_t vip = ip4("192.0.2.20");
  const uint32_t snat = ip4("192.0.2.10");
  const uint32_t backend = ip4("203.0.113.11");
  inject(jumboFrame(pool_, port_.portId, port_.mac, client, vip, IPPROTO_TCP, 40001, 5002, 40, 0x02));  // SYN
  auto out = sent(1);
  ASSERT_EQ(out.size(), 1u);
  const uint16_t snatPort = ntohs(rte_pktmbuf_mtod_offset(out[0], const rte_tcp_hdr*, 34)->src_port);
  freeAll(out);
  inject(jumboFrame(pool_, port_.portId, port_.mac, backend, snat, IPPROTO_TCP, 80, snatPort, 40, 0x12));  // SYN-ACK
  out = sent(1);
  freeAll(out);
  inject(jumboFrame(pool_, port_.portId, port_.mac, client, vip, IPPROTO_TCP, 40001, 5002, kJumbo, 0x18));
  out = sent(1);
  ASSERT_EQ(out.size(), 1u);
  expectIntact(out[0], kJumbo, snat, backend);
  freeAll(out);
  inject(jumboFrame(pool_, port_.portId, port_.mac, backend, snat, IPPROTO_TCP, 80, snatPort, kJumbo, 0x18));
  out = sent(1);
  ASSERT_EQ(out.size(), 1u);
  expectIntact(out[0], kJumbo, vip, client);
  freeAll(out);

  // A router on the backend side answers a jumbo segment with "fragmentation
  // needed" (next-hop MTU 1500), quoting 8,000 bytes of it: the error goes
  // to the client with the quote translated back to the client's segment
  // (client -> VIP).
  rte_mbuf* quoted = jumboFrame(pool_, port_.portId, port_.mac, snat, backend, IPPROTO_TCP, snatPort, 80, kJumbo, 0x18);
  const uint16_t quoteLen = 8000;
  rte_mbuf* err = rte_pktmbuf_alloc(pool_);
  ASSERT_NE(err, nullptr);
  sd::tsanAcquire(pool_);
  const uint16_t errIpLen = static_cast<uint16_t>(20 + 8 + quoteLen);
  auto* d = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(err, static_cast<uint16_t>(14 + errIpLen)));
  ASSERT_NE(d, nullptr);
  std::memcpy(d, rte_pktmbuf_mtod(quoted, uint8_t*), 14);
  auto* iph = reinterpret_cast<rte_ipv4_hdr*>(d + 14);
  std::memset(iph, 0, 28);
  iph->version_ihl = 0x45;
  iph->total_length = htons(errIpLen);
  iph->time_to_live = 64;
  iph->next_proto_id = IPPROTO_ICMP;
  iph->src_addr = ip4("203.0.113.1");
  iph->dst_addr = snat;
  iph->hdr_checksum = rte_ipv4_cksum(iph);
  uint8_t* icmp = d + 34;
  icmp[0] = 3;  // destination unreachable
  icmp[1] = 4;  // fragmentation needed
  icmp[6] = 1500 >> 8;
  icmp[7] = 1500 & 0xff;
  std::memcpy(icmp + 8, rte_pktmbuf_mtod_offset(quoted, uint8_t*, 14), quoteLen);
  rte_pktmbuf_free(quoted);
  const uint16_t ck = static_cast<uint16_t>(~rte_raw_cksum(icmp, 8 + quoteLen));
  std::memcpy(icmp + 2, &ck, 2);
  err->port = port_.portId;
  inject(err);
  out = sent(1);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(rte_pktmbuf_pkt_len(out[0]), 14u + errIpLen);
  const auto* oip = rte_pktmbuf_mtod_offset(out[0], const rte_ipv4_hdr*, 14);
  EXPECT_EQ(oip->dst_addr, client);
  const auto* inner = rte_pktmbuf_mtod_offset(out[0], const rte_ipv4_hdr*, 14 + 28);
  EXPECT_EQ(inner->src_addr, client);  // the segment as the client sent it
  EXPECT_EQ(inner->dst_addr, vip);
  EXPECT_EQ(ntohs(inner->total_length), kJumbo);
  const uint8_t* oicmp = rte_pktmbuf_mtod_offset(out[0], const uint8_t*, 34);
  EXPECT_EQ(static_cast<uint16_t>(~rte_raw_cksum(oicmp, 8 + quoteLen)), 0) << "ICMP checksum over the whole quote";
  freeAll(out);
  drained();
  EXPECT_EQ(strait::peek(counters_->icmpErrorsTranslated), 1u);
}

// A frame that arrives as a chain of mbufs is dropped under its own reason
// (not as malformed) and both segments go back to the pool.
TEST_F(WorkerJumboTest, ChainedMbufsAreCountedAsMultiSegment) {
  startWorker();
  rte_mbuf* head = jumboFrame(pool_, port_.portId, port_.mac, ip4("198.51.100.7"), ip4("192.0.2.20"), IPPROTO_UDP,
                              40000, 5000, 1000);
  rte_mbuf* tail = rte_pktmbuf_alloc(pool_);
  ASSERT_NE(tail, nullptr);
  sd::tsanAcquire(pool_);
  ASSERT_NE(rte_pktmbuf_append(tail, 500), nullptr);
  ASSERT_EQ(rte_pktmbuf_chain(head, tail), 0);
  inject(head);
  drained();
  EXPECT_EQ(drops(DropReason::kMultiSegment), 1u);
  EXPECT_EQ(drops(DropReason::kMalformed), 0u);
  EXPECT_EQ(strait::peek(counters_->txPackets), 0u);
}

class WorkerTxFullTest : public WorkerTest {
 protected:
  void SetUp() override {
    txRingSize_ = 4;  // holds 3
    WorkerTest::SetUp();
  }
};

TEST_F(WorkerTxFullTest, UnsentFramesAreFreedAndCounted) {
  for (int i = 0; i < 10; ++i)
    inject(
        frame(ip4("192.0.2.1"), ip4("192.0.2.10"), {IPPROTO_ICMP, static_cast<uint16_t>(i), 0}, port_.mac));
  startWorker();
  drained();
  stopWorker();
  EXPECT_EQ(counters_->rxPackets, 10u);
  EXPECT_EQ(counters_->txPackets, 3u);
  EXPECT_EQ(drops(DropReason::kTxFull), 7u);
  EXPECT_EQ(counters_->rxBytes, 10 * 60u);  // minimum-size frames
  EXPECT_EQ(counters_->txBytes, 3 * 60u);   // only what the NIC took
  EXPECT_EQ(rte_ring_count(tx_), 3u);
}
