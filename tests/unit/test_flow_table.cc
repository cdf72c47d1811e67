// The per-worker flow table with an injected millisecond clock: lookups by
// both keys and in bulk, refusal of duplicates and of new flows when full
// (never evicting), per-state expiry at exactly the timeout, touch and
// setState moving expiry, the expiry budget, record reuse, clock
// wrap-around, forEach, a randomized run against a std::map model, and the
// memory a flow costs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <unordered_map>
#include <stdexcept>
#include <string>
#include <vector>

#include <rte_hash_crc.h>

#include "dataplane/flow_table.h"
#include "tools/lib/crc32c_collisions.h"

namespace sd = strait::dataplane;
using strait::Direction;
using strait::FlowKey;
using strait::FlowState;
using strait::FlowTimeouts;
using strait::flowStateName;
using strait::kFlowStateCount;

namespace {

// Names only label error messages; each table gets its own all the same.
std::string uniqueName() {
  static int n = 0;
  return "ftt" + std::to_string(n++);
}

struct TableHolder {
  std::string name = uniqueName();
  sd::FlowTable table;
  explicit TableHolder(uint32_t capacity, sd::SipKey key = {0x5eed, 0x5eed}, FlowTimeouts t = {})
      : table(params(capacity, key, t)) {}
  sd::FlowTable::Params params(uint32_t capacity, sd::SipKey key, FlowTimeouts t) const {
    sd::FlowTable::Params p;
    p.capacity = capacity;
    p.hashKey = key;
    p.timeouts = t;
    p.name = name.c_str();
    return p;
  }
};

// Flow `i` of a family of flows whose keys are all distinct.
sd::Flow makeFlow(uint32_t i, FlowState state = FlowState::kEstablished) {
  sd::Flow f{};
  f.clientIp = 0x0a000000u + i;
  f.vip = 0xc0000201u;
  f.clientPort = static_cast<uint16_t>(1024 + i % 50000);
  f.vipPort = 80;
  f.backendIp = 0xcb000000u + i;
  f.snatIp = 0xc000020au;
  f.backendPort = 443;
  f.snatPort = static_cast<uint16_t>(2000 + i % 60000);
  f.pool = i % 7;
  f.serviceSlot = static_cast<uint16_t>(i % 3);
  f.backendSlot = static_cast<uint16_t>(i % 5);
  f.proto = strait::isUdp(state) ? 17 : 6;
  f.state = state;
  f.flags = 0;
  return f;
}

FlowKey missKey(uint32_t i) {
  FlowKey k;
  k.srcIp = 0x08080000u + i;
  k.dstIp = 0x01010101u;
  k.srcPort = static_cast<uint16_t>(i);
  k.dstPort = 53;
  k.proto = 17;
  return k;
}

struct KeyLess {
  bool operator()(const FlowKey& a, const FlowKey& b) const { return std::memcmp(&a, &b, sizeof(a)) < 0; }
};

std::vector<FlowState> allStates() {
  std::vector<FlowState> v;
  for (std::size_t i = 0; i < kFlowStateCount; ++i) v.push_back(static_cast<FlowState>(i));
  return v;
}

const auto kNoCallback = [](const sd::Flow&) {};
constexpr uint32_t kUnlimited = 0xffffffffu;

}  // namespace

TEST(FlowTable, KeysOfAFlow) {
  const sd::Flow f = makeFlow(7);
  const FlowKey o = sd::originalKey(f);
  EXPECT_EQ(o.srcIp, f.clientIp);
  EXPECT_EQ(o.dstIp, f.vip);
  EXPECT_EQ(o.srcPort, f.clientPort);
  EXPECT_EQ(o.dstPort, f.vipPort);
  EXPECT_EQ(o.proto, f.proto);
  const FlowKey r = sd::replyKey(f);
  EXPECT_EQ(r.srcIp, f.backendIp);
  EXPECT_EQ(r.dstIp, f.snatIp);
  EXPECT_EQ(r.srcPort, f.backendPort);
  EXPECT_EQ(r.dstPort, f.snatPort);
  EXPECT_EQ(r.proto, f.proto);
  for (uint8_t b : o.pad) EXPECT_EQ(b, 0) << "padding is hashed: it must be zero";
  for (uint8_t b : r.pad) EXPECT_EQ(b, 0);
}

TEST(FlowTable, CreationErrorsThrowWithContext) {
  sd::FlowTable::Params p;
  const std::string name = uniqueName();
  p.name = name.c_str();
  p.capacity = 0;
  try {
    sd::FlowTable t(p);
    ADD_FAILURE() << "a table of capacity 0 was created";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
  }
  p.capacity = (1u << 29) + 1;
  EXPECT_THROW(sd::FlowTable{p}, std::invalid_argument);
  // 2^29 flows need ~56 GiB: more than the test EAL has. The failure names
  // the table.
  p.capacity = 1u << 29;
  try {
    sd::FlowTable t(p);
    ADD_FAILURE() << "a 2^29-flow table was allocated";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
  }
  // Names are labels: two tables may share one, and none is needed.
  p.capacity = 8;
  sd::FlowTable a(p);
  EXPECT_NO_THROW(sd::FlowTable{p});
  p.name = nullptr;
  EXPECT_NO_THROW(sd::FlowTable{p});
}

TEST(FlowTable, InsertAndLookupByBothKeys) {
  TableHolder h(16);
  auto& t = h.table;
  const sd::Flow f = makeFlow(1);
  const uint32_t idx = t.insert(f, 12345);
  ASSERT_NE(idx, sd::kNoFlow);
  EXPECT_EQ(t.size(), 1u);

  Direction d = Direction::kReply;
  EXPECT_EQ(t.lookup(sd::originalKey(f), d), idx);
  EXPECT_EQ(d, Direction::kOriginal);
  d = Direction::kOriginal;
  EXPECT_EQ(t.lookup(sd::replyKey(f), d), idx);
  EXPECT_EQ(d, Direction::kReply);
  EXPECT_EQ(t.lookup(missKey(1), d), sd::kNoFlow);

  const sd::Flow& r = t.at(idx);
  EXPECT_EQ(r.clientIp, f.clientIp);
  EXPECT_EQ(r.backendIp, f.backendIp);
  EXPECT_EQ(r.snatPort, f.snatPort);
  EXPECT_EQ(r.pool, f.pool);
  EXPECT_EQ(r.serviceSlot, f.serviceSlot);
  EXPECT_EQ(r.backendSlot, f.backendSlot);
  EXPECT_EQ(r.state, FlowState::kEstablished);
  EXPECT_EQ(r.lastSeenMs, 12345u);
}

TEST(FlowTable, BulkLookupMixesHitsAndMisses) {
  TableHolder h(256);
  auto& t = h.table;
  std::vector<uint32_t> idxOf;
  for (uint32_t i = 0; i < 200; ++i) {
    idxOf.push_back(t.insert(makeFlow(i), 0));
    ASSERT_NE(idxOf.back(), sd::kNoFlow);
  }
  std::mt19937 rng(42);
  for (uint32_t n : {1u, 2u, 17u, 63u, 64u, 100u, 150u}) {
    std::vector<FlowKey> keys(n);
    std::vector<uint32_t> wantIdx(n);
    std::vector<Direction> wantDir(n);
    for (uint32_t i = 0; i < n; ++i) {
      const uint32_t f = rng() % 200;
      switch (rng() % 3) {
        case 0:
          keys[i] = sd::originalKey(makeFlow(f));
          wantIdx[i] = idxOf[f];
          wantDir[i] = Direction::kOriginal;
          break;
        case 1:
          keys[i] = sd::replyKey(makeFlow(f));
          wantIdx[i] = idxOf[f];
          wantDir[i] = Direction::kReply;
          break;
        default:
          keys[i] = missKey(rng());
          wantIdx[i] = sd::kNoFlow;
      }
    }
    // The last slot of a full burst must work too (bit 63 of the hit mask).
    if (n == 64) {
      keys[63] = sd::replyKey(makeFlow(199));
      wantIdx[63] = idxOf[199];
      wantDir[63] = Direction::kReply;
    }
    std::vector<const FlowKey*> ptrs(n);
    for (uint32_t i = 0; i < n; ++i) ptrs[i] = &keys[i];
    std::vector<uint32_t> got(n, 0xdead);
    std::vector<Direction> dir(n, Direction::kOriginal);
    t.lookupBulk(ptrs.data(), n, got.data(), dir.data());
    for (uint32_t i = 0; i < n; ++i) {
      ASSERT_EQ(got[i], wantIdx[i]) << "n=" << n << " i=" << i;
      if (wantIdx[i] != sd::kNoFlow) {
        EXPECT_EQ(dir[i], wantDir[i]) << "n=" << n << " i=" << i;
      }
    }
  }
  // All misses and n = 0 leave nothing behind.
  FlowKey miss = missKey(5);
  const FlowKey* one = &miss;
  uint32_t got = 0;
  Direction d;
  t.lookupBulk(&one, 1, &got, &d);
  EXPECT_EQ(got, sd::kNoFlow);
  t.lookupBulk(&one, 0, &got, &d);
}

TEST(FlowTable, DuplicateKeyRefused) {
  TableHolder h(16);
  auto& t = h.table;
  const sd::Flow a = makeFlow(1);
  const uint32_t ia = t.insert(a, 0);
  ASSERT_NE(ia, sd::kNoFlow);

  sd::Flow sameOriginal = makeFlow(2);  // same client->VIP tuple, other reply tuple
  sameOriginal.clientIp = a.clientIp;
  sameOriginal.clientPort = a.clientPort;
  EXPECT_EQ(t.insert(sameOriginal, 0), sd::kNoFlow);

  sd::Flow sameReply = makeFlow(3);  // other client, reply tuple taken
  sameReply.backendIp = a.backendIp;
  sameReply.snatPort = a.snatPort;
  EXPECT_EQ(t.insert(sameReply, 0), sd::kNoFlow);

  // The reply key of a new flow is another flow's original key: a SNAT
  // port that is some service's listen port on the SNAT address (a pool
  // made before the service was added, docs/nat.md "Caveats"). A free
  // port does not make the reply key unused, so insert() looks it up.
  sd::Flow replyIsAnOriginal = makeFlow(5);
  replyIsAnOriginal.backendIp = a.clientIp;
  replyIsAnOriginal.backendPort = a.clientPort;
  replyIsAnOriginal.snatIp = a.vip;
  replyIsAnOriginal.snatPort = a.vipPort;
  EXPECT_EQ(t.insert(replyIsAnOriginal, 0), sd::kNoFlow);
  EXPECT_EQ(t.insert(replyIsAnOriginal, 0, t.hashOf(sd::originalKey(replyIsAnOriginal)),
                     t.hashOf(sd::replyKey(replyIsAnOriginal))),
            sd::kNoFlow);

  sd::Flow selfClash = makeFlow(4);  // both keys identical
  selfClash.backendIp = selfClash.clientIp;
  selfClash.snatIp = selfClash.vip;
  selfClash.backendPort = selfClash.clientPort;
  selfClash.snatPort = selfClash.vipPort;
  EXPECT_EQ(t.insert(selfClash, 0), sd::kNoFlow);

  EXPECT_EQ(t.size(), 1u);
  Direction d;
  // Nothing of the refused flows was left in the hash, and the first flow
  // was not hijacked.
  EXPECT_EQ(t.lookup(sd::replyKey(sameOriginal), d), sd::kNoFlow);
  EXPECT_EQ(t.lookup(sd::originalKey(sameReply), d), sd::kNoFlow);
  EXPECT_EQ(t.lookup(sd::originalKey(replyIsAnOriginal), d), sd::kNoFlow);
  EXPECT_EQ(t.lookup(sd::originalKey(a), d), ia);
  EXPECT_EQ(d, Direction::kOriginal);
  EXPECT_EQ(t.lookup(sd::replyKey(a), d), ia);
  EXPECT_EQ(d, Direction::kReply);
}

// The NAT core hands insert() the hashes it already has: the bulk
// lookup's of the original key and its own of the reply key. The bulk
// lookup gives out exactly hashOf(), and a flow stored with given hashes
// is found, refused as a duplicate and removed as one stored without.
TEST(FlowTable, InsertWithTheBurstsHashes) {
  TableHolder h(64);
  auto& t = h.table;
  std::vector<FlowKey> keys;
  for (uint32_t i = 0; i < 40; ++i) keys.push_back(sd::originalKey(makeFlow(i)));
  std::vector<const FlowKey*> ptrs;
  for (const FlowKey& k : keys) ptrs.push_back(&k);
  std::vector<uint32_t> idx(keys.size()), hashes(keys.size(), 0);
  std::vector<Direction> dir(keys.size());
  t.lookupBulk(ptrs.data(), static_cast<uint32_t>(keys.size()), idx.data(), dir.data(), hashes.data());
  for (uint32_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(idx[i], sd::kNoFlow);
    ASSERT_EQ(hashes[i], t.hashOf(keys[i])) << i;
  }
  for (uint32_t i = 0; i < keys.size(); ++i) {
    const sd::Flow f = makeFlow(i);
    const uint32_t fi = t.insert(f, 0, hashes[i], t.hashOf(sd::replyKey(f)));
    ASSERT_NE(fi, sd::kNoFlow);
    EXPECT_EQ(t.insert(f, 0, hashes[i], t.hashOf(sd::replyKey(f))), sd::kNoFlow) << "duplicate stored";
    Direction d;
    EXPECT_EQ(t.lookup(sd::replyKey(f), d), fi);
    EXPECT_EQ(d, Direction::kReply);
  }
  t.lookupBulk(ptrs.data(), static_cast<uint32_t>(keys.size()), idx.data(), dir.data(), hashes.data());
  for (uint32_t i = 0; i < keys.size(); ++i) {
    ASSERT_NE(idx[i], sd::kNoFlow);
    t.remove(idx[i]);
  }
  EXPECT_EQ(t.size(), 0u);
  Direction d;
  for (uint32_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(t.lookup(keys[i], d), sd::kNoFlow);
    EXPECT_EQ(t.lookup(sd::replyKey(makeFlow(i)), d), sd::kNoFlow);
  }
}

TEST(FlowTable, FullTableRefusesNewFlowsAndKeepsTheOld) {
  for (uint32_t cap : {1u, 3u, 64u, 1000u}) {
    TableHolder h(cap);
    auto& t = h.table;
    EXPECT_EQ(t.capacity(), cap);
    std::vector<uint32_t> idx;
    for (uint32_t i = 0; i < cap; ++i) {
      idx.push_back(t.insert(makeFlow(i), 0));
      ASSERT_NE(idx.back(), sd::kNoFlow) << "cap=" << cap << " i=" << i;
    }
    EXPECT_EQ(t.size(), cap);
    uint32_t refused = 0;
    for (uint32_t i = cap; i < cap + 10; ++i) refused += t.insert(makeFlow(i), 0) == sd::kNoFlow;
    EXPECT_EQ(refused, 10u);
    EXPECT_EQ(t.size(), cap);
    Direction d;
    for (uint32_t i = 0; i < cap; ++i) {
      EXPECT_EQ(t.lookup(sd::originalKey(makeFlow(i)), d), idx[i]);
      EXPECT_EQ(t.lookup(sd::replyKey(makeFlow(i)), d), idx[i]);
    }
    for (uint32_t i = cap; i < cap + 10; ++i) EXPECT_EQ(t.lookup(sd::originalKey(makeFlow(i)), d), sd::kNoFlow);
    // One slot freed: exactly one new flow fits again.
    t.remove(idx[0]);
    EXPECT_NE(t.insert(makeFlow(cap), 0), sd::kNoFlow);
    EXPECT_EQ(t.insert(makeFlow(cap + 1), 0), sd::kNoFlow);
  }
}

TEST(FlowTable, EachStateExpiresAtItsTimeout) {
  const FlowTimeouts to;
  for (uint32_t t0 : {1000u, 0xffffffffu - 5000u}) {  // the second start wraps the clock
    for (FlowState s : allStates()) {
      TableHolder h(8, {0x5eed, 0x5eed}, to);
      auto& t = h.table;
      const sd::Flow f = makeFlow(3, s);
      const uint32_t idx = t.insert(f, t0);
      ASSERT_NE(idx, sd::kNoFlow);
      const uint32_t T = to.of(s);
      std::vector<sd::Flow> seen;
      auto cb = [&](const sd::Flow& x) { seen.push_back(x); };
      EXPECT_EQ(t.expire(t0 + T / 2, kUnlimited, cb), 0u) << flowStateName(s);
      EXPECT_EQ(t.expire(t0 + T - 1, kUnlimited, cb), 0u) << flowStateName(s);
      EXPECT_EQ(t.size(), 1u);
      EXPECT_EQ(t.expire(t0 + T, kUnlimited, cb), 1u) << flowStateName(s);
      EXPECT_EQ(t.size(), 0u);
      ASSERT_EQ(seen.size(), 1u);
      EXPECT_EQ(seen[0].clientIp, f.clientIp);
      EXPECT_EQ(seen[0].snatPort, f.snatPort);
      EXPECT_EQ(seen[0].state, s);
      Direction d;
      EXPECT_EQ(t.lookup(sd::originalKey(f), d), sd::kNoFlow);
      EXPECT_EQ(t.lookup(sd::replyKey(f), d), sd::kNoFlow);
    }
  }
}

TEST(FlowTable, ExpiryWithoutIntermediateCalls) {
  // Expiry must not depend on being called at every tick.
  TableHolder h(64);
  auto& t = h.table;
  for (uint32_t i = 0; i < 40; ++i) ASSERT_NE(t.insert(makeFlow(i, FlowState::kClosed), 100), sd::kNoFlow);
  const uint32_t T = t.timeouts().of(FlowState::kClosed);
  EXPECT_EQ(t.expire(100 + T - 1, kUnlimited, kNoCallback), 0u);
  EXPECT_EQ(t.expire(100 + 10 * T, kUnlimited, kNoCallback), 40u);
  EXPECT_EQ(t.size(), 0u);
}

TEST(FlowTable, TouchPostponesExpiry) {
  TableHolder h(8);
  auto& t = h.table;
  const uint32_t T = t.timeouts().of(FlowState::kEstablished);
  ASSERT_NE(t.insert(makeFlow(1), 0), sd::kNoFlow);
  const uint32_t busy = t.insert(makeFlow(2), 0);
  ASSERT_NE(busy, sd::kNoFlow);
  t.touch(busy, T / 2);
  EXPECT_EQ(t.at(busy).lastSeenMs, T / 2);
  std::vector<uint32_t> gone;
  auto cb = [&](const sd::Flow& f) { gone.push_back(f.clientIp); };
  EXPECT_EQ(t.expire(T, kUnlimited, cb), 1u);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0], makeFlow(1).clientIp);
  EXPECT_EQ(t.expire(T / 2 + T - 1, kUnlimited, cb), 0u);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(t.expire(T / 2 + T, kUnlimited, cb), 1u);
  EXPECT_EQ(t.size(), 0u);
}

TEST(FlowTable, TouchedHeadDoesNotShieldIdleFlowsBehindIt) {
  // A busy flow at the head of a list must be re-queued, not block the idle
  // ones queued after it.
  TableHolder h(64);
  auto& t = h.table;
  const uint32_t T = t.timeouts().of(FlowState::kEstablished);
  const uint32_t busy = t.insert(makeFlow(0), 0);
  for (uint32_t i = 1; i <= 20; ++i) ASSERT_NE(t.insert(makeFlow(i), 10), sd::kNoFlow);
  t.touch(busy, T);
  EXPECT_EQ(t.expire(T + 10, kUnlimited, kNoCallback), 20u);
  EXPECT_EQ(t.size(), 1u);
  Direction d;
  EXPECT_EQ(t.lookup(sd::originalKey(makeFlow(0)), d), busy);
}

TEST(FlowTable, SetStateMovesTheTimeout) {
  TableHolder h(8);
  auto& t = h.table;
  const FlowTimeouts& to = t.timeouts();

  // Established -> closed: the short timeout now applies.
  const uint32_t a = t.insert(makeFlow(1), 0);
  t.setState(a, FlowState::kClosed, 5000);
  EXPECT_EQ(t.at(a).state, FlowState::kClosed);
  EXPECT_EQ(t.at(a).lastSeenMs, 5000u);
  EXPECT_EQ(t.expire(5000 + to.of(FlowState::kClosed) - 1, kUnlimited, kNoCallback), 0u);
  EXPECT_EQ(t.expire(5000 + to.of(FlowState::kClosed), kUnlimited, kNoCallback), 1u);

  // SYN_SENT -> established: survives the SYN timeout, lives the long one.
  const uint32_t b = t.insert(makeFlow(2, FlowState::kSynSent), 0);
  t.setState(b, FlowState::kEstablished, 1000);
  EXPECT_EQ(t.expire(to.of(FlowState::kSynSent) + 1, kUnlimited, kNoCallback), 0u);
  EXPECT_EQ(t.expire(1000 + to.of(FlowState::kEstablished) - 1, kUnlimited, kNoCallback), 0u);
  EXPECT_EQ(t.expire(1000 + to.of(FlowState::kEstablished), kUnlimited, kNoCallback), 1u);

  // Same state: only activity is recorded.
  const uint32_t c = t.insert(makeFlow(3, FlowState::kTimeWait), 0);
  t.setState(c, FlowState::kTimeWait, 700);
  EXPECT_EQ(t.expire(to.of(FlowState::kTimeWait), kUnlimited, kNoCallback), 0u);
  EXPECT_EQ(t.expire(700 + to.of(FlowState::kTimeWait), kUnlimited, kNoCallback), 1u);
  EXPECT_EQ(t.size(), 0u);
}

TEST(FlowTable, ExpiryBudgetIsRespected) {
  TableHolder h(256);
  auto& t = h.table;
  const uint32_t T = t.timeouts().of(FlowState::kEstablished);
  for (uint32_t i = 0; i < 100; ++i) ASSERT_NE(t.insert(makeFlow(i), 0), sd::kNoFlow);
  EXPECT_EQ(t.expire(T, 0, kNoCallback), 0u);
  EXPECT_EQ(t.size(), 100u);
  for (uint32_t round = 0; round < 10; ++round) {
    EXPECT_EQ(t.expire(T, 10, kNoCallback), 10u);
    EXPECT_EQ(t.size(), 100u - 10 * (round + 1));
  }
  EXPECT_EQ(t.expire(T, 10, kNoCallback), 0u);
}

TEST(FlowTable, ExpiryBudgetCountsRequeues) {
  TableHolder h(256);
  auto& t = h.table;
  const uint32_t T = t.timeouts().of(FlowState::kEstablished);
  std::vector<uint32_t> busy;
  for (uint32_t i = 0; i < 50; ++i) busy.push_back(t.insert(makeFlow(i), 0));
  for (uint32_t i = 50; i < 60; ++i) ASSERT_NE(t.insert(makeFlow(i), 0), sd::kNoFlow);
  for (uint32_t b : busy) t.touch(b, T / 2);
  // The 50 touched heads must be re-queued before the idle ones are
  // reached, and each move costs budget.
  EXPECT_EQ(t.expire(T, 20, kNoCallback), 0u);
  EXPECT_EQ(t.size(), 60u);
  EXPECT_EQ(t.expire(T, 29, kNoCallback), 0u);
  EXPECT_EQ(t.expire(T, 2, kNoCallback), 1u);  // last re-queue, then one idle flow
  EXPECT_EQ(t.expire(T, kUnlimited, kNoCallback), 9u);
  EXPECT_EQ(t.size(), 50u);
}

TEST(FlowTable, ExpiryIsFairAcrossStates) {
  // A flood of idle SYN_SENT flows must not starve CLOSED flows of expiry.
  TableHolder h(256);
  auto& t = h.table;
  for (uint32_t i = 0; i < 100; ++i) ASSERT_NE(t.insert(makeFlow(i, FlowState::kSynSent), 0), sd::kNoFlow);
  for (uint32_t i = 100; i < 105; ++i) ASSERT_NE(t.insert(makeFlow(i, FlowState::kClosed), 0), sd::kNoFlow);
  std::size_t closed = 0;
  auto cb = [&](const sd::Flow& f) { closed += f.state == FlowState::kClosed; };
  EXPECT_EQ(t.expire(100000, 18, cb), 18u);
  EXPECT_EQ(closed, 5u);
}

TEST(FlowTable, RemoveFreesTheRecordForReuse) {
  TableHolder h(4);
  auto& t = h.table;
  std::vector<uint32_t> idx;
  for (uint32_t i = 0; i < 4; ++i) idx.push_back(t.insert(makeFlow(i), 0));
  t.remove(idx[1]);
  t.remove(idx[3]);
  EXPECT_EQ(t.size(), 2u);
  t.remove(idx[3]);  // a second remove of a free record changes nothing
  EXPECT_EQ(t.size(), 2u);
  Direction d;
  EXPECT_EQ(t.lookup(sd::originalKey(makeFlow(1)), d), sd::kNoFlow);
  EXPECT_EQ(t.lookup(sd::replyKey(makeFlow(3)), d), sd::kNoFlow);
  EXPECT_EQ(t.lookup(sd::originalKey(makeFlow(0)), d), idx[0]);
  const uint32_t n1 = t.insert(makeFlow(10), 0);
  const uint32_t n2 = t.insert(makeFlow(11), 0);
  EXPECT_EQ(std::set<uint32_t>({n1, n2}), std::set<uint32_t>({idx[1], idx[3]}));
  EXPECT_EQ(t.insert(makeFlow(12), 0), sd::kNoFlow);
  // A removed flow's keys can come back (new connection on the same tuple).
  t.remove(n1);
  EXPECT_NE(t.insert(makeFlow(10), 0), sd::kNoFlow);
  // Removed flows are never expired afterwards.
  EXPECT_EQ(t.expire(0x7fffffff, kUnlimited, kNoCallback), 4u);
  EXPECT_EQ(t.size(), 0u);
}

// The record is one cache line, records sit one per line, and the state
// kept beside them (list links, queue stamps, early-drop links, the SYN
// proxy translation) is its own: inserts, state changes, removals, reuse
// and expiry of other flows leave a flow's record and translation as they
// were.
TEST(FlowTable, RecordIsOneCacheLineAndSideStateIsKeptApart) {
  static_assert(sizeof(sd::Flow) == 64 && alignof(sd::Flow) == 64);
  TableHolder h(64);
  auto& t = h.table;
  const auto state = [](uint32_t k) { return k % 2 ? FlowState::kSynSent : FlowState::kEstablished; };
  const auto withSeq = [&](uint32_t k) {
    sd::Flow f = makeFlow(k, state(k));
    f.seq.end[0] = 0x11110000u + k;
    f.seq.end[1] = 0x22220000u + k;
    f.seq.synEnd = 0x33330000u + k;
    f.seq.maxWindow[0] = static_cast<uint16_t>(1000 + k);
    f.seq.maxWindow[1] = static_cast<uint16_t>(2000 + k);
    f.seq.wscale[0] = 7;
    f.seq.wscale[1] = 9;
    f.ppFlags = static_cast<uint8_t>(k % 3);
    f.ppStart = 0x44440000u + k;
    return f;
  };
  const auto xlateOf = [](uint32_t k) {
    return sd::FlowXlate{0x55550000u + k, 0x66660000u + k, static_cast<uint16_t>(300 + k),
                         static_cast<uint8_t>(0x60 | (k % 15)), 0};
  };
  std::vector<uint32_t> idx;
  for (uint32_t k = 0; k < 48; ++k) {
    idx.push_back(t.insert(withSeq(k), 100 + k));
    ASSERT_NE(idx.back(), sd::kNoFlow);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(&t.at(idx.back())) % 64, 0u) << k;
    t.xlate(idx.back()) = xlateOf(k);
  }
  EXPECT_EQ(reinterpret_cast<const char*>(&t.at(1)) - reinterpret_cast<const char*>(&t.at(0)), 64);

  // List traffic around the flows k % 4 == 0: the others change state
  // (unassured to assured and back: expiry and per-pool lists), are
  // touched, removed, their records reused by new flows, or expire.
  for (uint32_t k = 0; k < 48; ++k) {
    if (k % 4 == 1) t.setState(idx[k], k % 2 ? FlowState::kSynRecv : FlowState::kFinWait, 500);
    if (k % 4 == 2) t.touch(idx[k], 600);
    if (k % 4 == 3) t.remove(idx[k]);
  }
  for (uint32_t k = 100; k < 112; ++k) ASSERT_NE(t.insert(makeFlow(k, FlowState::kSynSent), 700), sd::kNoFlow);
  EXPECT_NE(t.earlyDropVictim(), sd::kNoFlow);
  // syn_sent and syn_recv time out after 30 s: the 12 flows of syn_recv
  // (since 500) and the 12 new ones (700) go, the established ones (350 s)
  // stay.
  EXPECT_EQ(t.expire(31'000, kUnlimited, kNoCallback), 24u);
  EXPECT_EQ(t.size(), 24u);

  for (uint32_t k = 0; k < 48; k += 4) {
    const sd::Flow want = withSeq(k);
    const sd::Flow& got = t.at(idx[k]);
    ASSERT_EQ(got.state, FlowState::kEstablished) << k;
    EXPECT_EQ(got.clientIp, want.clientIp) << k;
    EXPECT_EQ(got.snatPort, want.snatPort) << k;
    EXPECT_EQ(got.pool, want.pool) << k;
    EXPECT_EQ(got.lastSeenMs, 100 + k) << k;
    EXPECT_EQ(0, std::memcmp(&got.seq, &want.seq, sizeof want.seq)) << k;
    EXPECT_EQ(got.ppFlags, want.ppFlags) << k;
    EXPECT_EQ(got.ppStart, want.ppStart) << k;
    const sd::FlowXlate x = xlateOf(k);
    EXPECT_EQ(0, std::memcmp(&t.xlate(idx[k]), &x, sizeof x)) << k;
    Direction d;
    EXPECT_EQ(t.lookup(sd::replyKey(want), d), idx[k]) << k;
  }
  // Every live flow is still reachable through the lists.
  uint32_t live = 0;
  t.forEach([&](uint32_t, const sd::Flow&) { ++live; });
  EXPECT_EQ(live, t.size());
}

TEST(FlowTable, ClockWrapAround) {
  TableHolder h(8);
  auto& t = h.table;
  const uint32_t T = t.timeouts().of(FlowState::kUdp);
  const uint32_t t0 = 0xffffffffu - 10;
  ASSERT_NE(t.insert(makeFlow(1, FlowState::kUdp), t0), sd::kNoFlow);
  const uint32_t b = t.insert(makeFlow(2, FlowState::kUdp), t0);
  t.touch(b, t0 + 20);  // past the wrap
  EXPECT_EQ(t.expire(t0 + T - 1, kUnlimited, kNoCallback), 0u);
  EXPECT_EQ(t.expire(t0 + T, kUnlimited, kNoCallback), 1u);
  Direction d;
  EXPECT_EQ(t.lookup(sd::originalKey(makeFlow(1, FlowState::kUdp)), d), sd::kNoFlow);
  EXPECT_EQ(t.lookup(sd::originalKey(makeFlow(2, FlowState::kUdp)), d), b);
  EXPECT_EQ(t.expire(t0 + 20 + T - 1, kUnlimited, kNoCallback), 0u);
  EXPECT_EQ(t.expire(t0 + 20 + T, kUnlimited, kNoCallback), 1u);
  // A last-seen time slightly ahead of the clock is not idle.
  const uint32_t c = t.insert(makeFlow(3, FlowState::kUdp), 5000);
  EXPECT_EQ(t.expire(4000, kUnlimited, kNoCallback), 0u);
  EXPECT_EQ(t.at(c).lastSeenMs, 5000u);
}

TEST(FlowTable, DifferentHashKeysAllWork) {
  for (sd::SipKey key : {sd::SipKey{0, 0}, sd::SipKey{1, 0}, sd::SipKey{0xdeadbeef, 0x0123456789abcdefull},
                         sd::SipKey{~0ull, ~0ull}}) {
    TableHolder h(2048, key);
    auto& t = h.table;
    std::vector<uint32_t> idx;
    for (uint32_t i = 0; i < 2048; ++i) {
      idx.push_back(t.insert(makeFlow(i), 0));
      ASSERT_NE(idx.back(), sd::kNoFlow) << "key=" << key.k0 << "," << key.k1 << " i=" << i;
    }
    Direction d;
    for (uint32_t i = 0; i < 2048; ++i) {
      ASSERT_EQ(t.lookup(sd::originalKey(makeFlow(i)), d), idx[i]);
      ASSERT_EQ(d, Direction::kOriginal);
      ASSERT_EQ(t.lookup(sd::replyKey(makeFlow(i)), d), idx[i]);
      ASSERT_EQ(d, Direction::kReply);
    }
    EXPECT_EQ(t.lookup(missKey(9), d), sd::kNoFlow);
  }
}

namespace {

// Pearson's chi-square of the keys' hashes over `buckets` buckets (by
// multiply-shift, as FlowHash picks its bucket: the high bits), and the
// fullest bucket.
struct Spread {
  double chiSquare = 0;
  uint32_t maxBucket = 0;
};
template <class Hash>
Spread spreadOf(const std::vector<FlowKey>& keys, uint32_t buckets, Hash&& hash) {
  std::vector<uint32_t> n(buckets, 0);
  for (const FlowKey& k : keys) ++n[static_cast<uint32_t>((uint64_t{hash(k)} * buckets) >> 32)];
  const double expected = double(keys.size()) / buckets;
  Spread s;
  for (uint32_t c : n) {
    s.chiSquare += (c - expected) * (c - expected) / expected;
    s.maxBucket = std::max(s.maxBucket, c);
  }
  return s;
}

FlowKey clientKey() {
  FlowKey k;
  k.srcIp = 0x01643364;  // 198.51.100.1 in network order on a little-endian host
  k.dstIp = 0x0a0200c0;  // 192.0.2.10
  k.srcPort = 0x0004;    // 1024
  k.dstPort = 0x5000;    // 80
  k.proto = 6;
  return k;
}

}  // namespace

// 16,384 keys crafted so that CRC32C (the previous flow hash) gives all of
// them one value under every seed: first that premise, then that the keyed
// hash spreads them like random keys over 1024 buckets (chi-square with
// 1023 degrees of freedom: mean 1023, standard deviation 45; the bound is
// six deviations out) with no bucket past three times its share, and that a
// table holding them all as flows finds every one.
TEST(FlowTable, Crc32cCollidingKeysSpreadUnderTheKeyedHash) {
  constexpr uint32_t kKeys = 16384;
  constexpr uint32_t kBuckets = 1024;
  constexpr double kChiSquareBound = 1023 + 6 * 45.2;
  const std::vector<FlowKey> keys = strait::tools::crc32cCollidingKeys(clientKey(), kKeys);
  ASSERT_EQ(keys.size(), kKeys);
  {
    std::set<std::vector<uint8_t>> distinct;
    for (const FlowKey& k : keys) {
      const auto* b = reinterpret_cast<const uint8_t*>(&k);
      distinct.insert(std::vector<uint8_t>(b, b + sizeof k));
    }
    ASSERT_EQ(distinct.size(), kKeys);
  }

  // The premise: one CRC32C value per seed, as the hardware computes it.
  for (uint32_t seed : {0u, 0x5eedu, 0xdeadbeefu}) {
    auto crc = [seed](const FlowKey& k) {
      uint64_t w[2];
      std::memcpy(w, &k, sizeof w);
      return rte_hash_crc_8byte(w[1], rte_hash_crc_8byte(w[0], seed));
    };
    const uint32_t first = crc(keys[0]);
    for (const FlowKey& k : keys) ASSERT_EQ(crc(k), first) << "seed " << seed;
    EXPECT_EQ(strait::tools::crc32cFlowHash(keys[0], seed), first);
    const Spread s = spreadOf(keys, kBuckets, crc);
    EXPECT_EQ(s.maxBucket, kKeys);
    EXPECT_GT(s.chiSquare, kChiSquareBound);  // the bound below can fail
  }

  for (sd::SipKey key : {sd::SipKey{0x5eed, 0x5eed}, sd::SipKey{0, 0},
                         sd::SipKey{0x0123456789abcdefull, 0xfedcba9876543210ull}}) {
    TableHolder h(kKeys, key);
    auto& t = h.table;
    const Spread s = spreadOf(keys, kBuckets, [&t](const FlowKey& k) { return t.hashOf(k); });
    EXPECT_LT(s.chiSquare, kChiSquareBound) << "key " << key.k0;
    EXPECT_LE(s.maxBucket, 3 * kKeys / kBuckets) << "key " << key.k0;
    std::set<uint32_t> sigs;
    for (const FlowKey& k : keys) sigs.insert(t.hashOf(k));
    // 16,384 random 32-bit values collide about 0.03 times.
    EXPECT_GE(sigs.size(), kKeys - 4);

    for (uint32_t i = 0; i < kKeys; ++i) {
      sd::Flow f = makeFlow(i);
      f.clientIp = keys[i].srcIp;
      f.vip = keys[i].dstIp;
      f.clientPort = keys[i].srcPort;
      f.vipPort = keys[i].dstPort;
      ASSERT_NE(t.insert(f, 0), sd::kNoFlow) << i;
    }
    Direction d;
    for (uint32_t i = 0; i < kKeys; ++i) {
      ASSERT_EQ(t.lookup(keys[i], d), i) << i;
      ASSERT_EQ(d, Direction::kOriginal);
    }
  }
}

// Two flows whose original keys have the same 32-bit hash under the
// table's key (found by a birthday search: 2^18 keys give about 8 pairs)
// share home bucket and tag; only the comparison with the records' own
// keys tells them apart, for lookups, bulk lookups and removal.
TEST(FlowTable, EqualHashesAreToldApartByTheRecordsKeys) {
  TableHolder h(64);
  auto& t = h.table;
  std::unordered_map<uint32_t, uint32_t> seen;
  FlowKey a{}, b{};
  bool found = false;
  for (uint32_t i = 0; i < (1u << 20) && !found; ++i) {
    const FlowKey k = sd::originalKey(makeFlow(i));
    const auto [it, fresh] = seen.emplace(t.hashOf(k), i);
    if (!fresh) {
      a = sd::originalKey(makeFlow(it->second));
      b = k;
      found = true;
    }
  }
  ASSERT_TRUE(found);
  ASSERT_FALSE(a == b);
  ASSERT_EQ(t.hashOf(a), t.hashOf(b));
  auto flowWith = [](const FlowKey& k, uint32_t n) {
    sd::Flow f = makeFlow(100000 + n);
    f.clientIp = k.srcIp;
    f.vip = k.dstIp;
    f.clientPort = k.srcPort;
    f.vipPort = k.dstPort;
    f.proto = k.proto;
    return f;
  };
  const uint32_t ia = t.insert(flowWith(a, 0), 0);
  ASSERT_NE(ia, sd::kNoFlow);
  Direction d;
  EXPECT_EQ(t.lookup(b, d), sd::kNoFlow) << "b's tag matches a's slot, but its key does not";
  const uint32_t ib = t.insert(flowWith(b, 1), 0);
  ASSERT_NE(ib, sd::kNoFlow);
  EXPECT_EQ(t.lookup(a, d), ia);
  EXPECT_EQ(t.lookup(b, d), ib);
  const FlowKey* keys[2] = {&b, &a};
  uint32_t idx[2];
  Direction dir[2];
  t.lookupBulk(keys, 2, idx, dir);
  EXPECT_EQ(idx[0], ib);
  EXPECT_EQ(idx[1], ia);
  t.remove(ia);
  EXPECT_EQ(t.lookup(a, d), sd::kNoFlow);
  EXPECT_EQ(t.lookup(b, d), ib);
}

// count(state) follows insert, setState, remove and expiry.
TEST(FlowTable, CountsFlowsPerState) {
  TableHolder h(64);
  auto& t = h.table;
  std::vector<uint32_t> idx;
  for (uint32_t i = 0; i < 10; ++i) idx.push_back(t.insert(makeFlow(i, FlowState::kSynSent), 0));
  for (uint32_t i = 10; i < 13; ++i) idx.push_back(t.insert(makeFlow(i, FlowState::kUdpUnreplied), 0));
  EXPECT_EQ(t.count(FlowState::kSynSent), 10u);
  EXPECT_EQ(t.count(FlowState::kUdpUnreplied), 3u);
  t.setState(idx[0], FlowState::kSynRecv, 1);
  t.setState(idx[1], FlowState::kEstablished, 1);
  t.setState(idx[10], FlowState::kUdp, 1);
  t.remove(idx[2]);
  EXPECT_EQ(t.count(FlowState::kSynSent), 7u);
  EXPECT_EQ(t.count(FlowState::kSynRecv), 1u);
  EXPECT_EQ(t.count(FlowState::kEstablished), 1u);
  EXPECT_EQ(t.count(FlowState::kUdp), 1u);
  EXPECT_EQ(t.count(FlowState::kUdpUnreplied), 2u);
  // Re-queueing by expiry moves flows within their list without changing counts.
  EXPECT_EQ(t.expire(10'000, kUnlimited, kNoCallback), 0u);
  EXPECT_EQ(t.count(FlowState::kSynSent), 7u);
  // syn_sent, syn_recv and udp_unreplied time out at 30 s.
  EXPECT_EQ(t.expire(30'001, kUnlimited, kNoCallback), 7u + 1u + 2u);
  uint32_t total = 0;
  for (std::size_t s = 0; s < kFlowStateCount; ++s) total += t.count(static_cast<FlowState>(s));
  EXPECT_EQ(total, t.size());
  EXPECT_EQ(t.count(FlowState::kEstablished), 1u);
  EXPECT_EQ(t.count(FlowState::kUdp), 1u);
}

// The table-wide early-drop victim is the longest-queued unassured flow;
// established, closing and replied flows are never named.
TEST(FlowTable, EarlyDropVictimIsTheOldestUnassuredFlow) {
  TableHolder h(64);
  auto& t = h.table;
  EXPECT_EQ(t.earlyDropVictim(), sd::kNoFlow);
  const uint32_t est = t.insert(makeFlow(0, FlowState::kEstablished), 0);
  const uint32_t udp = t.insert(makeFlow(1, FlowState::kUdp), 0);
  const uint32_t fin = t.insert(makeFlow(2, FlowState::kFinWait), 0);
  EXPECT_EQ(t.earlyDropVictim(), sd::kNoFlow);
  const uint32_t a = t.insert(makeFlow(3, FlowState::kSynSent), 10);
  const uint32_t b = t.insert(makeFlow(4, FlowState::kUdpUnreplied), 20);
  const uint32_t c = t.insert(makeFlow(5, FlowState::kSynSent), 30);
  EXPECT_EQ(t.earlyDropVictim(), a);
  t.setState(a, FlowState::kSynRecv, 40);  // re-queued at 40: now the youngest
  EXPECT_EQ(t.earlyDropVictim(), b);
  t.remove(b);
  EXPECT_EQ(t.earlyDropVictim(), c);
  t.setState(c, FlowState::kEstablished, 50);
  EXPECT_EQ(t.earlyDropVictim(), a);
  t.setState(a, FlowState::kEstablished, 60);
  EXPECT_EQ(t.earlyDropVictim(), sd::kNoFlow);
  (void)est, (void)udp, (void)fin;
}

// Per pool: the unassured flows holding a port of that pool, first in
// first out; a flow leaves the FIFO when it is answered or removed and
// joins again when its tuple is reused for a new connection.
TEST(FlowTable, EarlyDropVictimPerPool) {
  sd::FlowTable::Params p;
  const std::string name = uniqueName();
  p.capacity = 64;
  p.name = name.c_str();
  p.maxPools = 4;
  sd::FlowTable t(p);
  auto flowIn = [](uint32_t i, uint32_t pool, FlowState s) {
    sd::Flow f = makeFlow(i, s);
    f.pool = pool;
    return f;
  };
  const uint32_t a1 = t.insert(flowIn(1, 1, FlowState::kSynSent), 1);
  const uint32_t b1 = t.insert(flowIn(2, 2, FlowState::kUdpUnreplied), 2);
  const uint32_t a2 = t.insert(flowIn(3, 1, FlowState::kUdpUnreplied), 3);
  const uint32_t a3 = t.insert(flowIn(4, 1, FlowState::kEstablished), 4);
  const uint32_t big = t.insert(flowIn(5, 9, FlowState::kSynSent), 5);  // pool past maxPools
  EXPECT_EQ(t.earlyDropVictim(0), sd::kNoFlow);
  EXPECT_EQ(t.earlyDropVictim(1), a1);
  EXPECT_EQ(t.earlyDropVictim(2), b1);
  EXPECT_EQ(t.earlyDropVictim(9), sd::kNoFlow);
  EXPECT_EQ(t.earlyDropVictim(4), sd::kNoFlow);
  // SYN_SENT -> SYN_RECV stays unassured and keeps its place.
  t.setState(a1, FlowState::kSynRecv, 6);
  EXPECT_EQ(t.earlyDropVictim(1), a1);
  t.setState(a1, FlowState::kEstablished, 7);
  EXPECT_EQ(t.earlyDropVictim(1), a2);
  t.setState(a2, FlowState::kUdp, 8);
  EXPECT_EQ(t.earlyDropVictim(1), sd::kNoFlow);
  // A closed tuple reused by a new SYN is unassured again.
  t.setState(a3, FlowState::kTimeWait, 9);
  EXPECT_EQ(t.earlyDropVictim(1), sd::kNoFlow);
  t.setState(a3, FlowState::kSynSent, 10);
  EXPECT_EQ(t.earlyDropVictim(1), a3);
  t.remove(a3);
  EXPECT_EQ(t.earlyDropVictim(1), sd::kNoFlow);
  t.remove(b1);
  EXPECT_EQ(t.earlyDropVictim(2), sd::kNoFlow);
  // Expiry of an unassured flow unlinks it too.
  const uint32_t b2 = t.insert(flowIn(6, 2, FlowState::kSynSent), 100);
  const uint32_t b3 = t.insert(flowIn(7, 2, FlowState::kSynSent), 200);
  EXPECT_EQ(t.earlyDropVictim(2), b2);
  EXPECT_EQ(t.expire(100 + 30'000, kUnlimited, kNoCallback), 2u);  // b2 and `big`
  EXPECT_EQ(t.earlyDropVictim(2), b3);
  (void)big;
}

TEST(FlowTable, ForEachSeesEveryLiveFlow) {
  TableHolder h(128);
  auto& t = h.table;
  std::map<uint32_t, uint32_t> want;  // idx -> clientIp
  const auto states = allStates();
  for (uint32_t i = 0; i < 100; ++i) {
    const uint32_t idx = t.insert(makeFlow(i, states[i % states.size()]), 0);
    want[idx] = makeFlow(i).clientIp;
  }
  for (uint32_t i = 0; i < 100; i += 3) {
    Direction d;
    const auto it = want.find(t.lookup(sd::originalKey(makeFlow(i, states[i % states.size()])), d));
    ASSERT_NE(it, want.end());
    t.remove(it->first);
    want.erase(it);
  }
  std::map<uint32_t, uint32_t> seen;
  t.forEach([&](uint32_t idx, const sd::Flow& f) { EXPECT_TRUE(seen.emplace(idx, f.clientIp).second); });
  EXPECT_EQ(seen, want);

  // A flush sweep may remove the flow it is visiting.
  std::size_t visited = 0;
  t.forEach([&](uint32_t idx, const sd::Flow&) {
    ++visited;
    t.remove(idx);
  });
  EXPECT_EQ(visited, want.size());
  EXPECT_EQ(t.size(), 0u);
  t.forEach([&](uint32_t, const sd::Flow&) { ADD_FAILURE() << "table should be empty"; });
}

// Random inserts (with key clashes), removes, touches, state changes and
// expiry against a model. Expiry must never free a flow before its timeout,
// and after a call with an unlimited budget no flow may be left idle for
// longer than its timeout T plus the re-queue lateness E = max(T/4, 1)
// documented in flow_table.cc.
TEST(FlowTable, RandomizedAgainstModel) {
  FlowTimeouts to;
  for (std::size_t i = 0; i < kFlowStateCount; ++i) to.ms[i] = 200 + 150 * static_cast<uint32_t>(i);
  for (uint32_t startClock : {0u, 0xffffffffu - 20000u}) {
    TableHolder h(100, {0xabcdef, 0}, to);
    auto& t = h.table;
    std::mt19937 rng(startClock + 7);
    struct M {
      sd::Flow f;
      uint32_t lastSeen;
    };
    std::map<uint32_t, M> live;                                // idx -> model
    std::map<FlowKey, std::pair<uint32_t, Direction>, KeyLess> keys;  // key -> (idx, dir)
    uint32_t now = startClock;
    const auto states = allStates();
    auto randomFlow = [&]() {
      // Small key space so clashes between flows happen.
      sd::Flow f = makeFlow(0, states[rng() % states.size()]);
      f.clientIp = 0x0a000000u + rng() % 400;
      f.backendIp = 0xcb000000u + rng() % 4;
      f.snatPort = static_cast<uint16_t>(rng() % 200);
      return f;
    };
    auto pickLive = [&]() {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      return it->first;
    };
    uint64_t inserted = 0, refusedFull = 0, refusedClash = 0, expired = 0;
    std::size_t peak = 0;
    for (int step = 0; step < 40000; ++step) {
      const unsigned op = rng() % 100;
      if (op < 40) {
        const sd::Flow f = randomFlow();
        const FlowKey ko = sd::originalKey(f), kr = sd::replyKey(f);
        const bool clash = keys.count(ko) || keys.count(kr);
        const bool full = live.size() == t.capacity();
        const uint32_t idx = t.insert(f, now);
        if (clash || full) {
          ASSERT_EQ(idx, sd::kNoFlow) << "step " << step;
          (full ? refusedFull : refusedClash)++;
        } else {
          ASSERT_NE(idx, sd::kNoFlow) << "step " << step;
          ASSERT_FALSE(live.count(idx)) << "live record handed out twice";
          live[idx] = {f, now};
          keys[ko] = {idx, Direction::kOriginal};
          keys[kr] = {idx, Direction::kReply};
          ++inserted;
        }
      } else if (op < 50 && !live.empty()) {
        const uint32_t idx = pickLive();
        keys.erase(sd::originalKey(live[idx].f));
        keys.erase(sd::replyKey(live[idx].f));
        live.erase(idx);
        t.remove(idx);
      } else if (op < 70 && !live.empty()) {
        const uint32_t idx = pickLive();
        t.touch(idx, now);
        live[idx].lastSeen = now;
      } else if (op < 78 && !live.empty()) {
        const uint32_t idx = pickLive();
        const FlowState s = states[rng() % states.size()];
        t.setState(idx, s, now);
        live[idx].f.state = s;
        live[idx].lastSeen = now;
      } else if (op < 92) {
        now += rng() % 60;
      } else {
        const bool unlimited = rng() % 2;
        const uint32_t budget = unlimited ? kUnlimited : rng() % 40;
        uint32_t calls = 0;
        const uint32_t n = t.expire(now, budget, [&](const sd::Flow& f) {
          ++calls;
          Direction d;
          const uint32_t idx = t.lookup(sd::originalKey(f), d);
          ASSERT_TRUE(live.count(idx));
          const M& m = live[idx];
          ASSERT_EQ(m.f.state, f.state);
          ASSERT_EQ(f.lastSeenMs, m.lastSeen);
          ASSERT_GE(now - m.lastSeen, to.of(f.state)) << "expired early";
          keys.erase(sd::originalKey(f));
          keys.erase(sd::replyKey(f));
          live.erase(idx);
        });
        ASSERT_EQ(n, calls);
        ASSERT_LE(n, budget);
        expired += n;
        if (unlimited) {
          for (const auto& [idx, m] : live) {
            const uint32_t T = to.of(m.f.state);
            ASSERT_LT(now - m.lastSeen, T + std::max<uint32_t>(T / 4, 1))
                << "flow " << idx << " in " << flowStateName(m.f.state) << " left idle too long";
          }
        }
      }
      ASSERT_EQ(t.size(), live.size()) << "step " << step;
      peak = std::max(peak, live.size());
      if (step % 500 == 0) {
        for (const auto& [k, v] : keys) {
          Direction d;
          ASSERT_EQ(t.lookup(k, d), v.first);
          ASSERT_EQ(d, v.second);
        }
        for (const auto& [idx, m] : live) {
          ASSERT_EQ(t.at(idx).state, m.f.state);
          ASSERT_EQ(t.at(idx).lastSeenMs, m.lastSeen);
          ASSERT_EQ(t.at(idx).clientIp, m.f.clientIp);
        }
        std::size_t n = 0;
        t.forEach([&](uint32_t idx, const sd::Flow&) {
          ++n;
          EXPECT_TRUE(live.count(idx));
        });
        ASSERT_EQ(n, live.size());
      }
    }
    // Each path was exercised.
    EXPECT_GT(inserted, 1000u);
    EXPECT_GT(refusedFull, 0u);
    EXPECT_GT(refusedClash, 0u);
    EXPECT_GT(expired, 500u);
    printf("[ model ] start %u: %llu inserted, %llu refused full, %llu refused clash, %llu expired, peak %zu\n",
           startClock, (unsigned long long)inserted, (unsigned long long)refusedFull,
           (unsigned long long)refusedClash, (unsigned long long)expired, peak);
  }
}

TEST(FlowTable, MemoryPerFlow) {
  std::size_t small = 0;
  {
    TableHolder h(1024);
    small = h.table.memoryBytes();
    EXPECT_GT(small, 1024 * sizeof(sd::Flow));
  }
  TableHolder h(1u << 20);
  auto& t = h.table;
  const std::size_t bytes = t.memoryBytes();
  EXPECT_GT(bytes, small);
  EXPECT_GT(bytes, std::size_t{1u << 20} * sizeof(sd::Flow));
  // Records, the links and translation beside each, the FlowHash's 16
  // bytes per flow (two keys of 8) and the per-pool list heads; the
  // estimate made before creating a table says the same.
  const std::size_t hashBytes = sd::FlowHash::bytesFor(2u << 20);
  EXPECT_EQ(hashBytes, std::size_t{16} << 20);
  EXPECT_EQ(bytes, (std::size_t{1} << 20) * (sizeof(sd::Flow) + sizeof(sd::FlowLinks) + sizeof(sd::FlowXlate)) +
                       hashBytes + 256 * 8);
  EXPECT_EQ(sd::FlowTable::estimateBytes(1u << 20), bytes - 256 * 8);
  printf("[ memory ] capacity %u: %zu bytes, %.1f bytes per flow (%zu-byte record, %zu beside it, 16 of hash)\n",
         t.capacity(), bytes, static_cast<double>(bytes) / t.capacity(), sizeof(sd::Flow),
         sizeof(sd::FlowLinks) + sizeof(sd::FlowXlate));
  // The whole capacity fits: no insert fails before the table is full.
  for (uint32_t i = 0; i < t.capacity(); ++i) ASSERT_NE(t.insert(makeFlow(i), 0), sd::kNoFlow) << i;
  EXPECT_EQ(t.insert(makeFlow(t.capacity()), 0), sd::kNoFlow);
  EXPECT_EQ(t.size(), t.capacity());
  Direction d;
  for (uint32_t i = 0; i < t.capacity(); i += 4099) {
    EXPECT_NE(t.lookup(sd::originalKey(makeFlow(i)), d), sd::kNoFlow);
    EXPECT_NE(t.lookup(sd::replyKey(makeFlow(i)), d), sd::kNoFlow);
  }
}
