// Unit tests for SnatPools, the control thread's SNAT pool lifecycle: which
// tuples a snapshot names, shared and per-worker slot contents, and when a
// slot may be reused: only once no snapshot names it, no flow holds one of
// its ports on any worker, and a grace period has passed.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <set>
#include <vector>

#include "dataplane/port_alloc.h"
#include "dataplane/snat_pools.h"
#include "strait/snapshot.h"

namespace strait::dataplane {
namespace {

const uint32_t kSnatA = htonl(0xc000020a);  // 192.0.2.10
const uint32_t kSnatB = htonl(0xc000020b);  // 192.0.2.11

BackendView backend(uint32_t hostIp, uint16_t port, uint32_t weight = 1) {
  BackendView b;
  b.ip = htonl(hostIp);
  b.port = htons(port);
  b.weight = weight;
  return b;
}

ServiceView service(uint16_t slot, uint8_t proto, std::vector<uint32_t> snat, std::vector<BackendView> backends) {
  ServiceView s;
  s.name = "s" + std::to_string(slot);
  s.slot = slot;
  s.vip = htonl(0xc0000214);
  s.port = htons(static_cast<uint16_t>(80 + slot));
  s.proto = proto;
  s.snatIps = std::move(snat);
  s.backends = std::move(backends);
  return s;
}

Snapshot snapshotOf(std::vector<ServiceView> services) {
  Snapshot s;
  s.services = std::move(services);
  s.buildIndexes({});
  return s;
}

PortAllocator::Params params(uint16_t worker, uint32_t maxPools = 4) {
  PortAllocator::Params p;
  p.portMin = 5000;
  p.portMax = 5009;
  p.maxPools = maxPools;
  p.eligible = [worker](const PoolKey&, uint16_t port) { return port % 2 == worker; };
  return p;
}

// A fake RCU: grace periods pass when the test says so.
struct Grace {
  uint64_t started = 0, passed = 0;
  SnatPools::Params wire(std::vector<PortAllocator*> workers) {
    return SnatPools::Params{std::move(workers), [this] { return ++started; },
                             [this](uint64_t t) { return t <= passed; }};
  }
};

TEST(SnatPools, EveryTupleOfTheSnapshotGetsASlotOnEveryWorker) {
  PortAllocator w0(params(0, 8)), w1(params(1, 8));
  SnatPools pools(SnatPools::Params{{&w0, &w1}, {}, {}});
  // Two services share (SNAT A, backend 1:80, TCP); a drained backend
  // (weight 0) gets no pool; UDP is a tuple of its own.
  Snapshot s = snapshotOf({
      service(1, IPPROTO_TCP, {kSnatA, kSnatB}, {backend(0xcb00710b, 80), backend(0xcb00710c, 80, 0)}),
      service(2, IPPROTO_TCP, {kSnatA}, {backend(0xcb00710b, 80)}),
      service(3, IPPROTO_UDP, {kSnatA}, {backend(0xcb00710b, 80)}),
  });
  EXPECT_EQ(pools.prepare(s), 0u);
  EXPECT_EQ(s.snatPools.size(), 3u);
  EXPECT_EQ(pools.active(), 3u);
  EXPECT_EQ(pools.loads(), 3u);
  const uint32_t a = s.findSnatPool(kSnatA, htonl(0xcb00710b), htons(80), IPPROTO_TCP);
  const uint32_t b = s.findSnatPool(kSnatB, htonl(0xcb00710b), htons(80), IPPROTO_TCP);
  const uint32_t u = s.findSnatPool(kSnatA, htonl(0xcb00710b), htons(80), IPPROTO_UDP);
  EXPECT_EQ(std::set<uint32_t>({a, b, u}).size(), 3u);
  for (uint32_t slot : {a, b, u}) EXPECT_LT(slot, 8u);
  EXPECT_EQ(s.findSnatPool(kSnatA, htonl(0xcb00710c), htons(80), IPPROTO_TCP), Snapshot::kNoSnatPool);
  EXPECT_EQ(s.findSnatPool(kSnatA, htonl(0xcb00710b), htons(81), IPPROTO_TCP), Snapshot::kNoSnatPool);
  // Each worker's slot holds that worker's ports.
  uint16_t port = 0;
  ASSERT_TRUE(w0.allocate(a, port));
  EXPECT_EQ(port, 5000);
  ASSERT_TRUE(w1.allocate(a, port));
  EXPECT_EQ(port, 5001);
  EXPECT_EQ(w0.key(a), (PoolKey{kSnatA, htonl(0xcb00710b), htons(80), IPPROTO_TCP, 0}));
  EXPECT_EQ(w1.capacity(u), 5u);
  // The next snapshot with the same tuples reuses the slots, loading nothing.
  Snapshot next = s;
  next.snatPools.clear();
  EXPECT_EQ(pools.prepare(next), 0u);
  EXPECT_EQ(next.findSnatPool(kSnatA, htonl(0xcb00710b), htons(80), IPPROTO_TCP), a);
  EXPECT_EQ(pools.loads(), 3u);
  EXPECT_EQ(w0.inUse(a), 1u) << "a slot in use is never reloaded";
}

// The slot of a removed backend: kept while a snapshot names it, then while
// a flow (on any worker) holds a port, then for one grace period; then
// reused for the next new tuple without touching more memory.
TEST(SnatPools, RetiredOnlyAfterSnapshotsFlowsAndAGracePeriod) {
  PortAllocator w0(params(0)), w1(params(1));
  Grace g;
  SnatPools pools(g.wire({&w0, &w1}));
  Snapshot s1 = snapshotOf({service(1, IPPROTO_TCP, {kSnatA}, {backend(0xcb00710b, 80)})});
  pools.prepare(s1);
  const uint32_t slot = s1.snatPools.at(0).slot;
  uint16_t p0 = 0, p1 = 0;
  ASSERT_TRUE(w0.allocate(slot, p0));  // a flow on each worker
  ASSERT_TRUE(w1.allocate(slot, p1));
  // Backend replaced: s2 no longer names the tuple.
  Snapshot s2 = snapshotOf({service(1, IPPROTO_TCP, {kSnatA}, {backend(0xcb00710c, 80)})});
  pools.prepare(s2);
  EXPECT_EQ(pools.active(), 2u);
  pools.collect();
  EXPECT_EQ(pools.active(), 2u) << "s1 is still referenced (not yet freed)";
  // Every grace period passes at once from here on, until the slot is idle.
  auto collectAll = [&] {
    pools.collect();
    g.passed = g.started;
    pools.collect();
  };
  pools.release(s1);  // s1 freed after its grace period
  collectAll();
  EXPECT_EQ(pools.active(), 2u) << "flows still hold ports";
  w0.release(slot, p0);
  collectAll();
  EXPECT_EQ(pools.active(), 2u) << "worker 1's flow still holds a port";
  w1.release(slot, p1);
  pools.collect();
  EXPECT_EQ(pools.active(), 2u) << "idle now, but a grace period must pass first";
  pools.collect();
  EXPECT_EQ(pools.active(), 2u);
  g.passed = g.started;
  pools.collect();
  EXPECT_EQ(pools.active(), 1u);
  EXPECT_EQ(pools.retired(), 1u);
  // A third backend takes the retired slot: no more memory touched.
  EXPECT_EQ(pools.slotsTouched(), 2u);
  Snapshot s3 = snapshotOf({service(1, IPPROTO_TCP, {kSnatA}, {backend(0xcb00710c, 80), backend(0xcb00710d, 80)})});
  pools.prepare(s3);
  EXPECT_EQ(s3.findSnatPool(kSnatA, htonl(0xcb00710d), htons(80), IPPROTO_TCP), slot);
  EXPECT_EQ(w0.key(slot).backendIp, htonl(0xcb00710d));
  EXPECT_EQ(w0.inUse(slot), 0u);
  EXPECT_EQ(pools.slotsTouched(), 2u);
}

// A backend that comes back while its slot waits for the grace period gets
// the same slot back, unchanged (it was never reloaded).
TEST(SnatPools, ATupleBackDuringItsGracePeriodKeepsItsSlot) {
  PortAllocator w0(params(0));
  Grace g;
  SnatPools pools(g.wire({&w0}));
  Snapshot s1 = snapshotOf({service(1, IPPROTO_TCP, {kSnatA}, {backend(0xcb00710b, 80)})});
  pools.prepare(s1);
  const uint32_t slot = s1.snatPools.at(0).slot;
  uint16_t port = 0;
  ASSERT_TRUE(w0.allocate(slot, port));
  w0.release(slot, port);  // FIFO: 5000 is now last in line
  pools.release(s1);
  pools.collect();  // no references, idle: waits for the grace period
  Snapshot s2 = s1;
  s2.snatPools.clear();
  pools.prepare(s2);
  EXPECT_EQ(s2.snatPools.at(0).slot, slot);
  EXPECT_EQ(pools.loads(), 1u);
  g.passed = g.started;
  pools.collect();
  EXPECT_EQ(pools.active(), 1u);
  EXPECT_EQ(pools.retired(), 0u);
  ASSERT_TRUE(w0.allocate(slot, port));
  EXPECT_EQ(port, 5002) << "the slot kept its FIFO state";
}

// More tuples than slots: the ones left out are counted, their new flows
// would drop (no pool in the snapshot), and a later snapshot serves them
// once slots are retired.
TEST(SnatPools, TuplesBeyondTheSlotsAreLeftOutUntilSlotsFree) {
  PortAllocator w0(params(0, 2));
  SnatPools pools(SnatPools::Params{{&w0}, {}, {}});
  Snapshot s1 = snapshotOf({service(
      1, IPPROTO_TCP, {kSnatA}, {backend(0xcb00710b, 80), backend(0xcb00710c, 80), backend(0xcb00710d, 80)})});
  EXPECT_EQ(pools.prepare(s1), 1u);
  EXPECT_EQ(s1.snatPools.size(), 2u);
  EXPECT_EQ(s1.findSnatPool(kSnatA, htonl(0xcb00710d), htons(80), IPPROTO_TCP), Snapshot::kNoSnatPool);
  Snapshot s2 = snapshotOf({service(1, IPPROTO_TCP, {kSnatA}, {backend(0xcb00710d, 80)})});
  EXPECT_EQ(pools.prepare(s2), 1u) << "both slots still named by s1";
  pools.release(s1);
  pools.collect();  // no grace hooks: over at once
  EXPECT_EQ(pools.active(), 0u);
  s2.snatPools.clear();
  EXPECT_EQ(pools.prepare(s2), 0u);
  EXPECT_NE(s2.findSnatPool(kSnatA, htonl(0xcb00710d), htons(80), IPPROTO_TCP), Snapshot::kNoSnatPool);
  EXPECT_EQ(pools.slotsTouched(), 2u);
}

// The snapshot's pool index finds every one of many tuples, whatever the
// probe runs.
TEST(SnatPools, SnapshotIndexFindsManyTuples) {
  Snapshot s;
  for (uint32_t i = 0; i < 1000; ++i)
    s.snatPools.push_back(SnatPoolRef{kSnatA + (i % 3), htonl(i), htons(static_cast<uint16_t>(i * 7)),
                                      static_cast<uint8_t>(i % 2 ? IPPROTO_TCP : IPPROTO_UDP), 0, i * 2});
  s.indexSnatPools();
  for (uint32_t i = 0; i < 1000; ++i)
    ASSERT_EQ(s.findSnatPool(kSnatA + (i % 3), htonl(i), htons(static_cast<uint16_t>(i * 7)),
                             static_cast<uint8_t>(i % 2 ? IPPROTO_TCP : IPPROTO_UDP)),
              i * 2);
  EXPECT_EQ(s.findSnatPool(kSnatA, htonl(5000), 0, IPPROTO_TCP), Snapshot::kNoSnatPool);
  EXPECT_EQ(Snapshot{}.findSnatPool(kSnatA, 0, 0, IPPROTO_TCP), Snapshot::kNoSnatPool);
}

// A fleet's SNAT addresses and backends usually differ only in their last
// octet, the top byte of the network-order word: 16 SNAT addresses x 16
// backends (the benchmark's service) must spread over the index, not pile
// the 16 backends of an address into one probe run (which made every new
// flow's pool lookup walk up to 16 slots).
TEST(SnatPools, SnapshotIndexSpreadsTuplesThatDifferInTheLastOctet) {
  Snapshot s;
  uint32_t slot = 0;
  for (uint32_t a = 0; a < 16; ++a)
    for (uint32_t b = 0; b < 16; ++b)
      s.snatPools.push_back(SnatPoolRef{htonl(0xc0000214 + a), htonl(0xcb00710b + b), htons(80), IPPROTO_TCP, 0,
                                        slot++});
  s.indexSnatPools();
  slot = 0;
  for (uint32_t a = 0; a < 16; ++a)
    for (uint32_t b = 0; b < 16; ++b)
      ASSERT_EQ(s.findSnatPool(htonl(0xc0000214 + a), htonl(0xcb00710b + b), htons(80), IPPROTO_TCP), slot++);
  // 256 tuples in 1,024 slots: linear probing with a mixing hash keeps the
  // longest run to a few slots (the multiply-only hash it replaced: 16+).
  EXPECT_LE(s.longestSnatPoolProbe(), 6u);
}

}  // namespace
}  // namespace strait::dataplane
