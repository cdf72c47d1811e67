// Unit tests for the SNAT port allocator: exhaustion and recovery, FIFO
// reuse order, the eligibility filter, independent pools, the pool limit,
// double frees, tiny ranges, and a randomised run checked against a model.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <deque>
#include <iterator>
#include <random>
#include <set>
#include <stdexcept>
#include <utility>
#include <vector>

#include "dataplane/port_alloc.h"

namespace strait::dataplane {
namespace {

PoolKey makeKey(uint32_t backend, uint16_t port = 0x5000, uint8_t proto = 6) {
  PoolKey k;
  k.snatIp = 0x0a02000c;
  k.backendIp = backend;
  k.backendPort = port;
  k.proto = proto;
  return k;
}

PortAllocator::Params params(uint16_t lo, uint16_t hi, uint32_t pools = 8) {
  PortAllocator::Params p;
  p.portMin = lo;
  p.portMax = hi;
  p.maxPools = pools;
  return p;
}

TEST(PortAllocTest, ExhaustsAfterEveryPortOnceThenRecovers) {
  PortAllocator a(params(2000, 2999));
  EXPECT_EQ(a.rangeSize(), 1000u);
  const uint32_t p = a.pool(makeKey(1));
  ASSERT_NE(p, kNoPool);
  EXPECT_EQ(a.capacity(p), 1000u);
  std::set<uint16_t> got;
  uint16_t port = 0;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(a.allocate(p, port)) << i;
    EXPECT_GE(port, 2000);
    EXPECT_LE(port, 2999);
    EXPECT_TRUE(got.insert(port).second) << "port " << port << " handed out twice";
  }
  EXPECT_EQ(a.inUse(p), 1000u);
  EXPECT_FALSE(a.allocate(p, port));
  EXPECT_FALSE(a.allocate(p, port));
  a.release(p, 2500);
  a.release(p, 2001);
  EXPECT_EQ(a.inUse(p), 998u);
  ASSERT_TRUE(a.allocate(p, port));
  EXPECT_EQ(port, 2500);
  ASSERT_TRUE(a.allocate(p, port));
  EXPECT_EQ(port, 2001);
  EXPECT_FALSE(a.allocate(p, port));
  EXPECT_EQ(a.doubleFrees(), 0u);
}

TEST(PortAllocTest, FullDefaultRange) {
  PortAllocator a(PortAllocator::Params{});
  EXPECT_EQ(a.rangeSize(), 65535u - 1024u + 1u);
  const uint32_t p = a.pool(makeKey(1));
  std::vector<bool> seen(65536, false);
  uint16_t port = 0;
  for (uint32_t i = 0; i < a.rangeSize(); ++i) {
    ASSERT_TRUE(a.allocate(p, port));
    ASSERT_FALSE(seen[port]);
    seen[port] = true;
  }
  EXPECT_FALSE(a.allocate(p, port));
  EXPECT_TRUE(seen[1024]);
  EXPECT_TRUE(seen[65535]);
}

TEST(PortAllocTest, FreedPortsAreReusedInFifoOrder) {
  PortAllocator a(params(100, 109));
  const uint32_t p = a.pool(makeKey(1));
  uint16_t port = 0;
  // Fresh pool: ascending.
  for (uint16_t want = 100; want <= 109; ++want) {
    ASSERT_TRUE(a.allocate(p, port));
    EXPECT_EQ(port, want);
  }
  const std::vector<uint16_t> order = {105, 101, 109, 100, 107, 103, 102, 108, 104, 106};
  for (uint16_t x : order) a.release(p, x);
  for (uint16_t want : order) {
    ASSERT_TRUE(a.allocate(p, port));
    EXPECT_EQ(port, want);
  }

  // Partial use: a port freed now comes after every port already free.
  for (uint16_t x : {104, 106, 100}) a.release(p, x);  // free: 104 106 100
  ASSERT_TRUE(a.allocate(p, port));
  EXPECT_EQ(port, 104);                                  // free: 106 100
  a.release(p, 109);                                     // free: 106 100 109
  a.release(p, 104);                                     // free: 106 100 109 104
  for (uint16_t want : {106, 100, 109, 104}) {
    ASSERT_TRUE(a.allocate(p, port));
    EXPECT_EQ(port, want);
  }
  EXPECT_FALSE(a.allocate(p, port));
}

TEST(PortAllocTest, ReleasedPortIsLastInLine) {
  // A port freed while others are free is handed out only after all of them.
  PortAllocator a(params(5000, 5999));
  const uint32_t p = a.pool(makeKey(1));
  uint16_t first = 0;
  ASSERT_TRUE(a.allocate(p, first));
  a.release(p, first);
  uint16_t port = 0;
  for (int i = 0; i < 999; ++i) {
    ASSERT_TRUE(a.allocate(p, port));
    EXPECT_NE(port, first) << "reused after " << i << " allocations";
  }
  ASSERT_TRUE(a.allocate(p, port));
  EXPECT_EQ(port, first);
}

TEST(PortAllocTest, EligibleFilterIsRespected) {
  for (uint16_t worker : {0, 1}) {
    auto prm = params(1024, 2047);
    prm.eligible = [worker](const PoolKey&, uint16_t port) { return port % 2 == worker; };
    PortAllocator a(prm);
    const uint32_t p = a.pool(makeKey(7));
    EXPECT_EQ(a.capacity(p), 512u);
    uint16_t port = 0;
    std::set<uint16_t> got;
    while (a.allocate(p, port)) {
      EXPECT_EQ(port % 2, worker);
      EXPECT_TRUE(got.insert(port).second);
    }
    EXPECT_EQ(got.size(), 512u);
    // A port this worker may not use is never live, so releasing it is ignored.
    a.release(p, static_cast<uint16_t>(1025 - worker));
    EXPECT_EQ(a.doubleFrees(), 1u);
    EXPECT_FALSE(a.allocate(p, port));
  }
}

TEST(PortAllocTest, EligibleSeesTheKey) {
  auto prm = params(1, 100);
  prm.eligible = [](const PoolKey& k, uint16_t port) { return port <= k.backendIp; };
  PortAllocator a(prm);
  EXPECT_EQ(a.capacity(a.pool(makeKey(10))), 10u);
  EXPECT_EQ(a.capacity(a.pool(makeKey(50))), 50u);
  const uint32_t none = a.pool(makeKey(0));
  ASSERT_NE(none, kNoPool);
  EXPECT_EQ(a.capacity(none), 0u);
  uint16_t port = 0;
  EXPECT_FALSE(a.allocate(none, port));
}

TEST(PortAllocTest, PoolsAreIndependent) {
  PortAllocator a(params(3000, 3099, 16));
  std::vector<PoolKey> keys = {makeKey(1), makeKey(2), makeKey(1, 0x5001), makeKey(1, 0x5000, 17)};
  PoolKey otherSnat = makeKey(1);
  otherSnat.snatIp = 0x0a02000d;
  keys.push_back(otherSnat);
  std::vector<uint32_t> ids;
  for (const auto& k : keys) {
    const uint32_t id = a.pool(k);
    ASSERT_NE(id, kNoPool);
    for (uint32_t other : ids) EXPECT_NE(id, other);
    ids.push_back(id);
    EXPECT_EQ(a.pool(k), id) << "lookup finds the same pool";
    EXPECT_EQ(a.key(id), k);
  }
  EXPECT_EQ(a.poolCount(), keys.size());
  // Drain the first pool: the others still have the whole range.
  uint16_t port = 0;
  while (a.allocate(ids[0], port)) {
  }
  EXPECT_EQ(a.inUse(ids[0]), 100u);
  for (size_t i = 1; i < ids.size(); ++i) {
    EXPECT_EQ(a.inUse(ids[i]), 0u);
    std::set<uint16_t> got;
    while (a.allocate(ids[i], port)) got.insert(port);
    EXPECT_EQ(got.size(), 100u);
  }
  // The same port is live in every pool at once, and releasing it in one
  // pool does not touch the others.
  a.release(ids[0], 3050);
  EXPECT_EQ(a.inUse(ids[0]), 99u);
  EXPECT_EQ(a.inUse(ids[1]), 100u);
  a.release(ids[0], 3050);
  EXPECT_EQ(a.doubleFrees(), 1u);
}

TEST(PortAllocTest, PoolLimit) {
  PortAllocator a(params(1024, 1100, 3));
  const uint32_t p0 = a.pool(makeKey(1));
  const uint32_t p1 = a.pool(makeKey(2));
  const uint32_t p2 = a.pool(makeKey(3));
  EXPECT_NE(p0, kNoPool);
  EXPECT_NE(p1, kNoPool);
  EXPECT_NE(p2, kNoPool);
  EXPECT_EQ(a.pool(makeKey(4)), kNoPool);
  EXPECT_EQ(a.pool(makeKey(5)), kNoPool);
  EXPECT_EQ(a.poolCount(), 3u);
  // Existing pools are still found.
  EXPECT_EQ(a.pool(makeKey(2)), p1);
  uint16_t port = 0;
  EXPECT_FALSE(a.allocate(kNoPool, port));
  EXPECT_EQ(a.inUse(kNoPool), 0u);
  EXPECT_EQ(a.capacity(kNoPool), 0u);

  PortAllocator none(params(1024, 1100, 0));
  EXPECT_EQ(none.pool(makeKey(1)), kNoPool);
}

TEST(PortAllocTest, ManyPoolsIndexed) {
  PortAllocator a(params(40000, 40003, 1000));
  std::vector<uint32_t> ids;
  for (uint32_t i = 0; i < 1000; ++i) {
    const uint32_t id = a.pool(makeKey(i, static_cast<uint16_t>(i * 7)));
    ASSERT_NE(id, kNoPool);
    ids.push_back(id);
  }
  EXPECT_EQ(a.pool(makeKey(5000)), kNoPool);
  for (uint32_t i = 0; i < 1000; ++i) EXPECT_EQ(a.pool(makeKey(i, static_cast<uint16_t>(i * 7))), ids[i]);
  std::set<uint32_t> unique(ids.begin(), ids.end());
  EXPECT_EQ(unique.size(), 1000u);
}

TEST(PortAllocTest, DoubleFreeIsCountedAndHarmless) {
  PortAllocator a(params(1000, 1003));
  const uint32_t p = a.pool(makeKey(1));
  uint16_t x = 0;
  uint16_t y = 0;
  ASSERT_TRUE(a.allocate(p, x));
  ASSERT_TRUE(a.allocate(p, y));
  a.release(p, x);
  a.release(p, x);                 // already free
  a.release(p, 1003);              // never handed out
  a.release(p, 999);               // below the range
  a.release(p, 1004);              // above the range
  a.release(p + 1, y);             // no such pool
  EXPECT_EQ(a.doubleFrees(), 5u);
  EXPECT_EQ(a.inUse(p), 1u);
  // x appears once in the free list, not twice.
  std::multiset<uint16_t> got;
  uint16_t port = 0;
  while (a.allocate(p, port)) got.insert(port);
  EXPECT_EQ(got.size(), 3u);
  EXPECT_EQ(got.count(x), 1u);
  EXPECT_EQ(got.count(y), 0u);
}

TEST(PortAllocTest, SinglePortRange) {
  PortAllocator a(params(65535, 65535));
  EXPECT_EQ(a.rangeSize(), 1u);
  const uint32_t p = a.pool(makeKey(1));
  EXPECT_EQ(a.capacity(p), 1u);
  uint16_t port = 0;
  for (int round = 0; round < 3; ++round) {
    ASSERT_TRUE(a.allocate(p, port));
    EXPECT_EQ(port, 65535);
    EXPECT_FALSE(a.allocate(p, port));
    a.release(p, 65535);
  }
  PortAllocator zero(params(0, 0));
  const uint32_t z = zero.pool(makeKey(1));
  ASSERT_TRUE(zero.allocate(z, port));
  EXPECT_EQ(port, 0);
  EXPECT_FALSE(zero.allocate(z, port));
}

TEST(PortAllocTest, RejectsInvertedRange) {
  EXPECT_THROW(PortAllocator(params(2000, 1999)), std::invalid_argument);
}

// Random allocate/release traffic across several pools, checked step by step
// against a model: a set of live ports and a FIFO of free ports per pool.
TEST(PortAllocTest, RandomisedAgainstModel) {
  auto prm = params(20000, 20300, 4);
  prm.eligible = [](const PoolKey& k, uint16_t port) { return (port + k.backendIp) % 3 != 0; };
  PortAllocator a(prm);
  struct Model {
    uint32_t id;
    std::set<uint16_t> live;
    std::deque<uint16_t> free;
  };
  std::vector<Model> models;
  for (uint32_t b = 0; b < 4; ++b) {
    Model m;
    m.id = a.pool(makeKey(b));
    ASSERT_NE(m.id, kNoPool);
    for (uint32_t port = 20000; port <= 20300; ++port) {
      if ((port + b) % 3 != 0) m.free.push_back(static_cast<uint16_t>(port));
    }
    ASSERT_EQ(a.capacity(m.id), m.free.size());
    models.push_back(std::move(m));
  }
  std::mt19937 rng(31337);
  uint64_t expectDoubleFrees = 0;
  for (int step = 0; step < 200000; ++step) {
    Model& m = models[rng() % models.size()];
    const uint32_t op = rng() % 100;
    // Bias towards allocation so pools regularly run dry.
    if (op < 55) {
      uint16_t port = 0;
      const bool ok = a.allocate(m.id, port);
      ASSERT_EQ(ok, !m.free.empty()) << "step " << step;
      if (ok) {
        ASSERT_EQ(port, m.free.front()) << "step " << step;
        m.free.pop_front();
        ASSERT_TRUE(m.live.insert(port).second) << "port live twice at step " << step;
      }
    } else if (op < 97) {
      if (m.live.empty()) continue;
      auto it = m.live.begin();
      std::advance(it, static_cast<long>(rng() % m.live.size()));
      const uint16_t port = *it;
      m.live.erase(it);
      m.free.push_back(port);
      a.release(m.id, port);
    } else {
      // A bogus release: a free port or one outside the range.
      const auto port = static_cast<uint16_t>(19990 + rng() % 320);
      if (!m.live.count(port)) {
        a.release(m.id, port);
        ++expectDoubleFrees;
      }
    }
    ASSERT_EQ(a.inUse(m.id), m.live.size()) << "step " << step;
  }
  EXPECT_EQ(a.doubleFrees(), expectDoubleFrees);
}

// DNS churn: backends come and go, each one getting flows for a while. With
// 8 pools, 10,000 distinct backends are served as long as fewer than 8
// have ports in use at once: idle pools are given to new keys, the pool
// count stays at 8, and no lookup fails.
TEST(PortAllocChurn, IdlePoolsAreReusedAcrossTenThousandBackends) {
  PortAllocator::Params p;
  p.portMin = 2000;
  p.portMax = 2099;
  p.maxPools = 8;
  PortAllocator a(p);
  struct Live {
    uint32_t pool;
    uint16_t port;
  };
  std::vector<std::vector<Live>> window;  // ports held for the last few backends
  for (uint32_t b = 0; b < 10'000; ++b) {
    const PoolKey key{0x0a000001, htonl(0xc6120000 + b), htons(80), 6, 0};
    const uint32_t id = a.pool(key);
    ASSERT_NE(id, kNoPool) << "backend " << b;
    EXPECT_EQ(a.key(id), key);
    std::vector<Live> held;
    for (int i = 0; i < 3; ++i) {
      uint16_t port = 0;
      ASSERT_TRUE(a.allocate(id, port));
      held.push_back({id, port});
    }
    window.push_back(std::move(held));
    if (window.size() > 5) {  // the oldest backend's flows end
      for (const Live& l : window.front()) a.release(l.pool, l.port);
      window.erase(window.begin());
    }
    EXPECT_LE(a.poolCount(), 8u);
  }
  EXPECT_EQ(a.poolCount(), 8u);
  EXPECT_EQ(a.poolsReused(), 10'000u - 8u);
  EXPECT_EQ(a.doubleFrees(), 0u);
  // The backends still holding ports keep their pools and ports.
  for (const auto& held : window)
    for (const Live& l : held) EXPECT_GE(a.inUse(l.pool), 3u);
  // Every pool busy: a ninth key is refused until one empties.
  for (uint32_t b = 0; b < 3; ++b) {
    const uint32_t id = a.pool(PoolKey{0x0a000001, htonl(0xc6130000 + b), htons(80), 6, 0});
    ASSERT_NE(id, kNoPool);
    uint16_t port = 0;
    ASSERT_TRUE(a.allocate(id, port));
  }
  EXPECT_EQ(a.pool(PoolKey{0x0a000001, htonl(0xc6140000), htons(80), 6, 0}), kNoPool);
}

// A reused pool leaves the index consistent: every key still present is
// found again under the same id after many removals from shared probe runs.
TEST(PortAllocChurn, IndexStaysConsistentUnderReuse) {
  PortAllocator::Params p;
  p.portMin = 3000;
  p.portMax = 3003;
  p.maxPools = 3;  // index of 8 slots: probe runs collide often
  PortAllocator a(p);
  std::vector<std::pair<PoolKey, uint32_t>> live;
  for (uint32_t k = 0; k < 2000; ++k) {
    const PoolKey key{htonl(k % 7), htonl(k), htons(static_cast<uint16_t>(k)), 17, 0};
    const uint32_t id = a.pool(key);
    ASSERT_NE(id, kNoPool);
    uint16_t port = 0;
    ASSERT_TRUE(a.allocate(id, port));
    live.push_back({key, id});
    if (live.size() == 3) {
      for (const auto& [kk, kid] : live) EXPECT_EQ(a.pool(kk), kid) << "key " << k;
      a.release(live.front().second, 3000);
      live.erase(live.begin());
    }
  }
}

}  // namespace
}  // namespace strait::dataplane

