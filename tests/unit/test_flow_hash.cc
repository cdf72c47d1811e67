// FlowHash, the flow table's index, on its own: the hash values are chosen
// by the tests (the table takes a hash, not a key), so they can pile keys
// into one home bucket, give many keys one tag, wrap around the end of the
// bucket array and fill every slot. After random insert/remove churn the
// overflow counters must equal what the stored keys imply, recomputed from
// scratch, and every lookup must agree with a std::unordered_map model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <random>
#include <unordered_map>
#include <vector>

#include "dataplane/flow_hash.h"
#include "strait/mix.h"

namespace sd = strait::dataplane;
using sd::FlowHash;

namespace {

// The keys of these tests are 64-bit ids; ref r stores id ids[r]. verify()
// is what FlowTable does with records: compare the key stored for the ref.
struct Model {
  std::vector<uint64_t> ids;         // by ref
  std::vector<uint32_t> hashes;      // by ref
  std::unordered_map<uint64_t, uint32_t> byId;

  // Records key `id` of hash `h` under the next ref, which it returns.
  uint32_t add(uint64_t id, uint32_t h) {
    const auto ref = static_cast<uint32_t>(ids.size());
    ids.push_back(id);
    hashes.push_back(h);
    byId[id] = ref;
    return ref;
  }

  uint32_t find(const FlowHash& t, uint64_t id, uint32_t h) const {
    return t.find(h, [&](uint32_t ref) { return ref < ids.size() && ids[ref] == id; });
  }
};

// Overflow counters as the stored keys imply them: a key in bucket b whose
// home is a adds one to every bucket from a up to b (wrapping), b excluded.
// Also checks that each slot's tag is its key's, and the size.
void expectCountersExact(const FlowHash& t, const Model& m) {
  const uint32_t nb = t.buckets();
  std::vector<uint32_t> expected(nb, 0);
  uint32_t stored = 0;
  for (uint32_t b = 0; b < nb; ++b) {
    for (uint32_t s = 0; s < FlowHash::kSlots; ++s) {
      if (!(t.usedOf(b) >> s & 1u)) continue;
      ++stored;
      const uint32_t ref = t.refAt(b, s);
      ASSERT_LT(ref, m.hashes.size());
      ASSERT_TRUE(m.byId.count(m.ids[ref])) << "slot of a removed key still in use, ref " << ref;
      for (uint32_t p = t.homeOf(m.hashes[ref]); p != b; p = p + 1 == nb ? 0 : p + 1) ++expected[p];
    }
  }
  ASSERT_EQ(stored, t.size());
  ASSERT_EQ(stored, m.byId.size());
  for (uint32_t b = 0; b < nb; ++b) {
    if (expected[b] >= FlowHash::kOverflowStuck) {
      ASSERT_EQ(t.overflowOf(b), FlowHash::kOverflowStuck) << "bucket " << b;
    } else if (t.overflowOf(b) != FlowHash::kOverflowStuck) {
      ASSERT_EQ(t.overflowOf(b), expected[b]) << "bucket " << b;
    }
  }
}

uint32_t mix32(uint64_t x) { return static_cast<uint32_t>(strait::fmix64(x)); }

// The hash of id `id` in the churn test: odd ids are piled onto 16 homes
// (the top 4 bits chosen, so 16 runs of buckets fill and cross), even ids
// spread.
uint32_t churnHash(uint64_t id) {
  return id % 2 ? (mix32(id) & 0x0fffffffu) | (static_cast<uint32_t>(id / 2 % 16) << 28) : mix32(id);
}

}  // namespace

TEST(FlowHash, SizingIsEightKeysPerCacheLineBucket) {
  EXPECT_EQ(FlowHash::bucketsFor(0), 1u);
  EXPECT_EQ(FlowHash::bucketsFor(1), 1u);
  EXPECT_EQ(FlowHash::bucketsFor(8), 1u);
  EXPECT_EQ(FlowHash::bucketsFor(9), 2u);
  EXPECT_EQ(FlowHash::bucketsFor(2u << 20), 1u << 18);
  EXPECT_EQ(FlowHash::bytesFor(2u << 20), std::size_t{64} << 18);  // 16 bytes per flow of two keys
  FlowHash t(1000, -1, "test");
  EXPECT_EQ(t.buckets(), 125u);
  EXPECT_EQ(t.slots(), 1250u);
  EXPECT_EQ(t.memoryBytes(), 125u * 64);
  // Homes cover [0, buckets) for any bucket count.
  EXPECT_EQ(t.homeOf(0), 0u);
  EXPECT_EQ(t.homeOf(0xffffffffu), 124u);
  EXPECT_EQ(t.homeOf(0x80000000u), 62u);
}

// Every slot taken, then one more refused; every key found; all removed
// leaves a table as new (no tombstones, counters back to zero).
TEST(FlowHash, FillsEverySlotAndEmptiesExactly) {
  FlowHash t(80, -1, "test");  // 10 buckets, 100 slots
  ASSERT_EQ(t.slots(), 100u);
  Model m;
  std::mt19937_64 rng(1);
  for (uint32_t r = 0; r < t.slots(); ++r) {
    const uint64_t id = rng();
    ASSERT_EQ(m.add(id, static_cast<uint32_t>(rng())), r);
    ASSERT_TRUE(t.insert(m.hashes[r], r)) << r;
  }
  EXPECT_FALSE(t.insert(12345, 999));
  EXPECT_EQ(t.size(), 100u);
  expectCountersExact(t, m);
  for (uint32_t r = 0; r < m.ids.size(); ++r) ASSERT_EQ(m.find(t, m.ids[r], m.hashes[r]), r);
  EXPECT_EQ(m.find(t, 7, 0x12345678u), FlowHash::kNone);  // a miss terminates on a full table
  for (uint32_t r = 0; r < m.ids.size(); ++r) {
    ASSERT_TRUE(t.remove(m.hashes[r], r));
    EXPECT_FALSE(t.remove(m.hashes[r], r)) << "removed twice";
    m.byId.erase(m.ids[r]);
  }
  EXPECT_EQ(t.size(), 0u);
  for (uint32_t b = 0; b < t.buckets(); ++b) {
    EXPECT_EQ(t.usedOf(b), 0u);
    EXPECT_EQ(t.overflowOf(b), 0u);
  }
}

// 25 keys with one hash value: same home, same tag. Only verify() tells
// them apart; they spill over three buckets, and removing some in the
// middle keeps the rest reachable.
TEST(FlowHash, EqualTagsAreResolvedByVerification) {
  FlowHash t(80, -1, "test");
  Model m;
  const uint32_t h = 0x9abc1234u;
  for (uint32_t r = 0; r < 25; ++r) {
    ASSERT_EQ(m.add(1000 + r, h), r);
    ASSERT_TRUE(t.insert(h, r));
  }
  const uint32_t home = t.homeOf(h);
  EXPECT_EQ(t.usedOf(home), FlowHash::kAllUsed);
  EXPECT_EQ(t.overflowOf(home), 15u);
  EXPECT_EQ(t.overflowOf((home + 1) % t.buckets()), 5u);
  EXPECT_EQ(t.overflowOf((home + 2) % t.buckets()), 0u);
  expectCountersExact(t, m);
  for (uint32_t r = 0; r < 25; ++r) ASSERT_EQ(m.find(t, 1000 + r, h), r);
  EXPECT_EQ(m.find(t, 999, h), FlowHash::kNone);
  for (uint32_t r = 3; r < 25; r += 3) {
    ASSERT_TRUE(t.remove(h, r));
    m.byId.erase(1000 + r);
  }
  expectCountersExact(t, m);
  for (uint32_t r = 0; r < 25; ++r) ASSERT_EQ(m.find(t, 1000 + r, h), r % 3 == 0 && r != 0 ? FlowHash::kNone : r);
  // The freed slots near home are reused first.
  ASSERT_EQ(m.add(5000, h), 25);
  ASSERT_TRUE(t.insert(h, 25));
  expectCountersExact(t, m);
  EXPECT_EQ(m.find(t, 5000, h), 25u);
}

// insertUnique() looks a key up and stores it in one walk. The case a
// naive "first free slot" walk gets wrong: a key that spilled past its
// full home bucket, after a slot at home was freed. Its duplicate must be
// found beyond the free slot, not stored in it.
TEST(FlowHash, InsertUniqueFindsAKeyPastTheFirstFreeSlot) {
  FlowHash t(80, -1, "test");
  Model m;
  const uint32_t h = 0x9abc1234u;
  auto verifyId = [&m](uint64_t id) { return [&m, id](uint32_t ref) { return ref < m.ids.size() && m.ids[ref] == id; }; };
  // 12 keys of one hash: 10 fill home, 2 spill into the next bucket.
  for (uint32_t r = 0; r < 12; ++r) {
    ASSERT_EQ(m.add(1000 + r, h), r);
    ASSERT_EQ(t.insertUnique(h, r, verifyId(1000 + r)), FlowHash::Insert::kDone);
  }
  const uint32_t home = t.homeOf(h);
  ASSERT_EQ(t.usedOf(home), FlowHash::kAllUsed);
  ASSERT_EQ(t.overflowOf(home), 2u);
  // Free a slot at home; key 1011 still lives in the next bucket.
  ASSERT_TRUE(t.remove(h, 4));
  m.byId.erase(1004);
  expectCountersExact(t, m);
  EXPECT_EQ(t.insertUnique(h, 99, verifyId(1011)), FlowHash::Insert::kPresent);
  EXPECT_EQ(t.insertUnique(h, 99, verifyId(1000)), FlowHash::Insert::kPresent);
  EXPECT_EQ(t.size(), 11u);
  expectCountersExact(t, m);
  // A new key takes the free slot at home and adds no overflow.
  ASSERT_EQ(m.add(2000, h), 12);
  ASSERT_EQ(t.insertUnique(h, 12, verifyId(2000)), FlowHash::Insert::kDone);
  EXPECT_EQ(t.overflowOf(home), 2u);
  expectCountersExact(t, m);
  EXPECT_EQ(m.find(t, 2000, h), 12u);
  EXPECT_EQ(m.find(t, 1011, h), 11u);
  // Home full again: the next new key spills, counted in home's overflow.
  ASSERT_EQ(m.add(2001, h), 13);
  ASSERT_EQ(t.insertUnique(h, 13, verifyId(2001)), FlowHash::Insert::kDone);
  EXPECT_EQ(t.overflowOf(home), 3u);
  expectCountersExact(t, m);
  // A full table refuses.
  FlowHash full(8, -1, "test");  // one bucket, 10 slots
  for (uint32_t r = 0; r < full.slots(); ++r)
    ASSERT_EQ(full.insertUnique(r * 0x01000193u, r, [](uint32_t) { return false; }), FlowHash::Insert::kDone);
  EXPECT_EQ(full.insertUnique(7, 99, [](uint32_t) { return false; }), FlowHash::Insert::kFull);
}

// Probes that run past the last bucket continue at bucket 0, for inserts,
// lookups and removes.
TEST(FlowHash, ProbingWrapsAroundTheEnd) {
  FlowHash t(80, -1, "test");
  Model m;
  const uint32_t h = 0xffffff00u;  // home: the last bucket
  ASSERT_EQ(t.homeOf(h), t.buckets() - 1);
  for (uint32_t r = 0; r < 23; ++r) {
    ASSERT_EQ(m.add(r, h ^ r), r);  // same home, different tags
    ASSERT_TRUE(t.insert(m.hashes[r], r));
  }
  EXPECT_EQ(t.usedOf(0), FlowHash::kAllUsed);
  EXPECT_EQ(t.usedOf(1), 0x7u);
  EXPECT_EQ(t.overflowOf(t.buckets() - 1), 13u);
  EXPECT_EQ(t.overflowOf(0), 3u);
  expectCountersExact(t, m);
  for (uint32_t r = 0; r < 23; ++r) ASSERT_EQ(m.find(t, r, m.hashes[r]), r);
  for (uint32_t r = 0; r < 23; r += 2) {
    ASSERT_TRUE(t.remove(m.hashes[r], r));
    m.byId.erase(r);
  }
  expectCountersExact(t, m);
  for (uint32_t r = 1; r < 23; r += 2) ASSERT_EQ(m.find(t, r, m.hashes[r]), r);
}

// Many thousands of random inserts, removes and lookups up to every slot
// of the table, with hashes that pile half of the keys onto 16 homes (long
// probe chains that cross each other) and spread the rest: lookups agree
// with the model throughout and the counters stay exact.
TEST(FlowHash, RandomChurnAgainstModel) {
  for (uint32_t maxKeys : {80u, 4000u}) {
    FlowHash t(maxKeys, -1, "test");
    Model m;
    std::mt19937_64 rng(7 + maxKeys);
    std::vector<uint64_t> live;  // ids present, for picking one at random
    uint64_t nextId = 1;
    uint64_t inserts = 0, removes = 0, hits = 0, misses = 0, refused = 0;
    uint32_t peak = 0;
    const uint32_t ops = 60000;
    for (uint32_t op = 0; op < ops; ++op) {
      const uint32_t dice = static_cast<uint32_t>(rng() % 100);
      // Phases of 6,000 operations: fill (towards every slot), drain, mixed.
      const uint32_t phase = (op / 6000) % 3;
      const uint32_t insertBelow = phase == 0 ? 85 : phase == 1 ? 15 : 35;
      const uint32_t removeBelow = insertBelow + (phase == 0 ? 10 : phase == 1 ? 55 : 35);
      if (dice < insertBelow) {
        const uint64_t id = nextId++;
        const uint32_t h = churnHash(id);
        if (t.size() == t.slots()) {
          ASSERT_FALSE(t.insert(h, 0));
          ++refused;
          continue;
        }
        ASSERT_EQ(m.find(t, id, h), FlowHash::kNone);
        const uint32_t ref = m.add(id, h);
        live.push_back(id);
        // Half the keys through insertUnique(), which must store them as
        // insert() does; then a live key offered again must be refused.
        if (id % 4 < 2) {
          ASSERT_TRUE(t.insert(h, ref));
        } else {
          ASSERT_EQ(t.insertUnique(h, ref, [&m, id](uint32_t r) { return r < m.ids.size() && m.ids[r] == id; }),
                    FlowHash::Insert::kDone);
        }
        const uint64_t again = live[rng() % live.size()];
        const uint32_t size = t.size();
        ASSERT_EQ(t.insertUnique(m.hashes[m.byId.at(again)], 0xfffffffeu,
                                 [&m, again](uint32_t r) { return r < m.ids.size() && m.ids[r] == again; }),
                  size == t.slots() ? FlowHash::Insert::kFull : FlowHash::Insert::kPresent);
        ASSERT_EQ(t.size(), size);
        ++inserts;
      } else if (dice < removeBelow && !live.empty()) {
        const std::size_t pick = rng() % live.size();
        const uint64_t id = live[pick];
        const uint32_t ref = m.byId.at(id);
        ASSERT_TRUE(t.remove(m.hashes[ref], ref));
        m.byId.erase(id);
        live[pick] = live.back();
        live.pop_back();
        ++removes;
      } else {
        // Half lookups of live keys, half of removed or never-inserted ones.
        if (!live.empty() && rng() % 2) {
          const uint64_t id = live[rng() % live.size()];
          const uint32_t ref = m.byId.at(id);
          ASSERT_EQ(m.find(t, id, m.hashes[ref]), ref);
          ++hits;
        } else {
          // Removed or never inserted (id 0 and ids not yet given), under its own hash.
          const uint64_t id = rng() % (nextId + 100);
          const auto it = m.byId.find(id);
          ASSERT_EQ(m.find(t, id, churnHash(id)), it == m.byId.end() ? FlowHash::kNone : it->second);
          ++misses;
        }
      }
      peak = std::max(peak, t.size());
      if (op % 997 == 0) {
        expectCountersExact(t, m);
        if (testing::Test::HasFatalFailure()) return;
      }
    }
    expectCountersExact(t, m);
    for (uint64_t id : live) ASSERT_EQ(m.find(t, id, m.hashes[m.byId.at(id)]), m.byId.at(id));
    EXPECT_EQ(peak, t.slots()) << "the churn should reach a full table";
    EXPECT_GT(refused, 0u);
    std::printf("[ churn ] %u slots: %llu inserts, %llu removes, %llu hit and %llu miss lookups, %llu refused full\n",
                t.slots(), (unsigned long long)inserts, (unsigned long long)removes, (unsigned long long)hits,
                (unsigned long long)misses, (unsigned long long)refused);
  }
}

// A counter that would pass 65,534 sticks at 65,535 and is never
// decremented again: lookups past it stay correct, only longer.
TEST(FlowHash, SaturatedCounterSticks) {
  FlowHash t(70000, -1, "test");  // 8,750 buckets, 87,500 slots
  Model m;
  // Hashes below 2^32 / 8,750 have home 0; the tags differ.
  const uint32_t n = 65550;
  for (uint32_t r = 0; r < n; ++r) {
    const uint32_t h = r;
    ASSERT_EQ(m.add(r, h), r);
    ASSERT_TRUE(t.insert(h, r));
  }
  ASSERT_EQ(t.homeOf(m.hashes[n - 1]), 0u);
  EXPECT_EQ(t.overflowOf(0), FlowHash::kOverflowStuck);
  expectCountersExact(t, m);
  for (uint32_t r = 0; r < n; r += 101) ASSERT_EQ(m.find(t, r, m.hashes[r]), r);
  for (uint32_t r = 0; r < n; ++r) {
    ASSERT_TRUE(t.remove(m.hashes[r], r));
    m.byId.erase(r);
  }
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.overflowOf(0), FlowHash::kOverflowStuck);
  EXPECT_EQ(t.overflowOf(1), 0u);
  ASSERT_EQ(m.add(n, 5), n);
  ASSERT_TRUE(t.insert(5, n));
  EXPECT_EQ(m.find(t, n, 5), n);
  EXPECT_EQ(m.find(t, n + 1, 6), FlowHash::kNone);
}
