// Unit tests for the SNAT port allocator: exhaustion and recovery, FIFO
// reuse order, the eligibility filter, independent slots, reloading a slot,
// double frees, tiny ranges, and a randomised run checked against a model.
// Which slot serves which tuple is SnatPools' business (test_snat_pools.cc).
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

// Loads slot `id` with `key`, as SnatPools does for a new tuple.
uint32_t loadAt(PortAllocator& a, uint32_t id, const PoolKey& key) {
  a.load(id, key);
  return id;
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
  const uint32_t p = loadAt(a, 0, makeKey(1));
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
  const uint32_t p = loadAt(a, 0, makeKey(1));
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
  const uint32_t p = loadAt(a, 0, makeKey(1));
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

// peek(k) names the port the (k+1)-th allocate would return, wrapping
// round the ring, and nothing past the free ports.
TEST(PortAllocTest, PeekNamesTheNextAllocations) {
  PortAllocator a(params(100, 104));
  const uint32_t p = loadAt(a, 0, makeKey(1));
  uint16_t port = 0;
  for (uint32_t k = 0; k < 5; ++k) {
    ASSERT_TRUE(a.peek(p, k, port));
    EXPECT_EQ(port, 100 + k);
  }
  EXPECT_FALSE(a.peek(p, 5, port));
  EXPECT_FALSE(a.peek(99, 0, port));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(a.allocate(p, port));  // 100-103 live, 104 free
  for (uint16_t x : {102, 100}) a.release(p, x);                  // free: 104 102 100 (wraps)
  for (uint16_t k = 0; k < 3; ++k) {
    uint16_t peeked = 0;
    ASSERT_TRUE(a.peek(p, 0, peeked));
    ASSERT_TRUE(a.peek(p, 2 - k, port));  // the last free port stays the last
    EXPECT_EQ(port, 100);
    ASSERT_TRUE(a.allocate(p, port));
    EXPECT_EQ(port, peeked);
  }
  EXPECT_FALSE(a.peek(p, 0, port));
}

TEST(PortAllocTest, ReleasedPortIsLastInLine) {
  // A port freed while others are free is handed out only after all of them.
  PortAllocator a(params(5000, 5999));
  const uint32_t p = loadAt(a, 0, makeKey(1));
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
    const uint32_t p = loadAt(a, 0, makeKey(7));
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
  EXPECT_EQ(a.capacity(loadAt(a, 0, makeKey(10))), 10u);
  EXPECT_EQ(a.capacity(loadAt(a, 1, makeKey(50))), 50u);
  const uint32_t none = loadAt(a, 2, makeKey(0));
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
    const uint32_t id = loadAt(a, static_cast<uint32_t>(ids.size()) * 3, k);
    ids.push_back(id);
    EXPECT_EQ(a.key(id), k);
  }
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

// Slots beyond maxPools do not exist: loading one does nothing, and
// allocating from one (or from kNoPool) fails.
TEST(PortAllocTest, SlotLimit) {
  PortAllocator a(params(1024, 1100, 3));
  EXPECT_EQ(a.maxPools(), 3u);
  EXPECT_EQ(a.load(2, makeKey(3)), 77u);
  EXPECT_EQ(a.load(3, makeKey(4)), 0u);
  uint16_t port = 0;
  EXPECT_TRUE(a.allocate(2, port));
  EXPECT_FALSE(a.allocate(3, port));
  EXPECT_FALSE(a.allocate(kNoPool, port));
  EXPECT_EQ(a.inUse(kNoPool), 0u);
  EXPECT_EQ(a.capacity(kNoPool), 0u);
  EXPECT_EQ(a.inUse(0), 0u) << "a slot never loaded is idle";

  PortAllocator none(params(1024, 1100, 0));
  EXPECT_EQ(none.load(0, makeKey(1)), 0u);
  EXPECT_FALSE(none.allocate(0, port));
}

// A slot loaded again (SnatPools reuses a retired one for a new tuple)
// starts over: the new key, every eligible port free, ascending, and the
// old pool's history gone.
TEST(PortAllocTest, ReloadedSlotStartsOver) {
  auto prm = params(7000, 7009, 2);
  prm.eligible = [](const PoolKey& k, uint16_t port) { return port % 2 == k.backendIp % 2; };
  PortAllocator a(prm);
  ASSERT_EQ(a.load(1, makeKey(2)), 5u);
  uint16_t port = 0;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(a.allocate(1, port));
  for (uint16_t x : {7008, 7002, 7006, 7000, 7004}) a.release(1, x);
  ASSERT_TRUE(a.allocate(1, port));
  EXPECT_EQ(port, 7008);
  a.release(1, port);
  EXPECT_EQ(a.inUse(1), 0u);
  ASSERT_EQ(a.load(1, makeKey(3)), 5u);
  EXPECT_EQ(a.key(1), makeKey(3));
  for (uint16_t want = 7001; want <= 7009; want += 2) {
    ASSERT_TRUE(a.allocate(1, port));
    EXPECT_EQ(port, want);
  }
  EXPECT_EQ(a.inUse(1), 5u);
  a.release(1, 7000);  // a port of the old pool, never live in the new one
  EXPECT_EQ(a.doubleFrees(), 1u);
}

TEST(PortAllocTest, DoubleFreeIsCountedAndHarmless) {
  PortAllocator a(params(1000, 1003));
  const uint32_t p = loadAt(a, 0, makeKey(1));
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
  const uint32_t p = loadAt(a, 0, makeKey(1));
  EXPECT_EQ(a.capacity(p), 1u);
  uint16_t port = 0;
  for (int round = 0; round < 3; ++round) {
    ASSERT_TRUE(a.allocate(p, port));
    EXPECT_EQ(port, 65535);
    EXPECT_FALSE(a.allocate(p, port));
    a.release(p, 65535);
  }
  PortAllocator zero(params(0, 0));
  const uint32_t z = loadAt(zero, 0, makeKey(1));
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
    m.id = loadAt(a, b, makeKey(b));
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

}  // namespace
}  // namespace strait::dataplane

