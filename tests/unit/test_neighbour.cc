// The neighbour table: update and lookup, ageing (invalidate after the
// timeout, refresh list past half of it), refusal when full, re-validation
// of an aged entry, and a reader thread racing the writer that must never
// see a MAC mixed from two updates.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "dataplane/neighbour.h"

namespace sd = strait::dataplane;

namespace {

uint32_t ip(const char* s) {
  in_addr a{};
  inet_pton(AF_INET, s, &a);
  return a.s_addr;
}

rte_ether_addr mac(uint8_t fill) {
  rte_ether_addr m{};
  for (auto& b : m.addr_bytes) b = fill;
  return m;
}

rte_ether_addr mac6(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint8_t e, uint8_t f) {
  return rte_ether_addr{{a, b, c, d, e, f}};
}

bool sameMac(const rte_ether_addr& a, const rte_ether_addr& b) {
  return std::equal(std::begin(a.addr_bytes), std::end(a.addr_bytes), std::begin(b.addr_bytes));
}

}  // namespace

TEST(Neighbour, UpdateThenLookup) {
  sd::NeighbourTable t(16);
  rte_ether_addr out{};
  EXPECT_FALSE(t.lookup(ip("192.0.2.1"), out));
  auto m = mac6(0x02, 0x11, 0x22, 0x33, 0x44, 0x55);
  ASSERT_TRUE(t.update(ip("192.0.2.1"), m, 1000));
  ASSERT_TRUE(t.lookup(ip("192.0.2.1"), out));
  EXPECT_TRUE(sameMac(out, m));
  EXPECT_FALSE(t.lookup(ip("192.0.2.2"), out));
  EXPECT_EQ(t.size(), 1u);

  // An update replaces the MAC in place.
  auto m2 = mac6(0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee);
  ASSERT_TRUE(t.update(ip("192.0.2.1"), m2, 2000));
  ASSERT_TRUE(t.lookup(ip("192.0.2.1"), out));
  EXPECT_TRUE(sameMac(out, m2));
  EXPECT_EQ(t.size(), 1u);

  auto e = t.entries();
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].ip, ip("192.0.2.1"));
  EXPECT_TRUE(sameMac(e[0].mac, m2));
  EXPECT_EQ(e[0].updatedMs, 2000u);
}

TEST(Neighbour, ZeroAddressIsRefused) {
  sd::NeighbourTable t(16);
  EXPECT_FALSE(t.update(0, mac(1), 0));
  EXPECT_EQ(t.size(), 0u);
}

TEST(Neighbour, AgeInvalidatesAndListsRefreshes) {
  sd::NeighbourTable t(16);
  const uint64_t timeout = 10'000;
  ASSERT_TRUE(t.update(ip("192.0.2.1"), mac(1), 0));      // will be 12 s old
  ASSERT_TRUE(t.update(ip("192.0.2.2"), mac(2), 5'000));  // 7 s old: refresh
  ASSERT_TRUE(t.update(ip("192.0.2.3"), mac(3), 9'000));  // 3 s old: fine

  auto refresh = t.age(12'000, timeout);
  ASSERT_EQ(refresh.size(), 1u);
  EXPECT_EQ(refresh[0], ip("192.0.2.2"));

  rte_ether_addr out{};
  EXPECT_FALSE(t.lookup(ip("192.0.2.1"), out));
  EXPECT_TRUE(t.lookup(ip("192.0.2.2"), out));
  EXPECT_TRUE(t.lookup(ip("192.0.2.3"), out));
  EXPECT_EQ(t.size(), 2u);
  EXPECT_EQ(t.entries().size(), 2u);

  // Exactly at the timeout the entry goes; exactly at half it is due.
  auto again = t.age(15'000, timeout);
  EXPECT_FALSE(t.lookup(ip("192.0.2.2"), out));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0], ip("192.0.2.3"));  // 6 s old >= 5 s

  // An aged-out neighbour that answers again is valid again, same slot.
  ASSERT_TRUE(t.update(ip("192.0.2.1"), mac(7), 16'000));
  ASSERT_TRUE(t.lookup(ip("192.0.2.1"), out));
  EXPECT_TRUE(sameMac(out, mac(7)));
}

TEST(Neighbour, FullTableRefusesNewButUpdatesKnown) {
  sd::NeighbourTable t(8);
  uint32_t inserted = 0;
  uint32_t firstRefused = 0;
  for (uint32_t i = 1; i <= 1000; ++i) {
    uint32_t a = htonl(0xc0000200u + i);  // 192.0.2.x and beyond
    if (t.update(a, mac(static_cast<uint8_t>(i)), i)) {
      ++inserted;
    } else {
      firstRefused = a;
      break;
    }
  }
  // At least the requested capacity fits, and the table does stop.
  EXPECT_GE(inserted, 8u);
  ASSERT_NE(firstRefused, 0u);
  EXPECT_EQ(t.size(), inserted);
  rte_ether_addr out{};
  EXPECT_FALSE(t.lookup(firstRefused, out));
  // Known entries still update, aged ones included.
  t.age(1'000'000, 1000);
  EXPECT_EQ(t.size(), 0u);
  ASSERT_TRUE(t.update(htonl(0xc0000201u), mac(0x42), 2'000'000));
  ASSERT_TRUE(t.lookup(htonl(0xc0000201u), out));
  EXPECT_TRUE(sameMac(out, mac(0x42)));
  EXPECT_FALSE(t.update(firstRefused, mac(1), 2'000'000));
}

TEST(Neighbour, ConcurrentReaderNeverSeesTornMac) {
  sd::NeighbourTable t(64);
  const uint32_t a = ip("192.0.2.77");
  ASSERT_TRUE(t.update(a, mac(0x11), 0));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0}, torn{0}, misses{0};
  std::thread reader([&] {
    rte_ether_addr out{};
    while (!stop.load(std::memory_order_relaxed)) {
      if (!t.lookup(a, out)) {
        misses.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      reads.fetch_add(1, std::memory_order_relaxed);
      // Every MAC written has six equal bytes: a mix of two would not.
      for (int b = 1; b < 6; ++b)
        if (out.addr_bytes[b] != out.addr_bytes[0]) {
          torn.fetch_add(1, std::memory_order_relaxed);
          break;
        }
    }
  });
  // The writer keeps flipping the MAC (and publishing other slots around
  // it) until the reader has done many lookups concurrently, bounded in time.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  uint64_t writes = 0;
  uint32_t extra = 0;
  while ((writes < 200'000 || reads.load(std::memory_order_relaxed) < 100'000) &&
         std::chrono::steady_clock::now() < deadline) {
    t.update(a, mac((writes & 1) ? 0x11 : 0xee), writes);
    if (writes % 5000 == 0 && extra < 30) t.update(htonl(0xc6336400u + ++extra), mac(0x33), writes);
    ++writes;
  }
  stop = true;
  reader.join();
  EXPECT_EQ(torn.load(), 0u);
  EXPECT_EQ(misses.load(), 0u);  // a valid entry never disappears while updated
  EXPECT_GE(reads.load(), 1000u);
  EXPECT_GE(writes, 200'000u);
}

TEST(Neighbour, ConcurrentInsertPublishesMacBeforeIp) {
  // The reader probes for addresses the writer is inserting: whenever it
  // finds one, the MAC must already be that address's, never a blank slot.
  constexpr uint32_t kCount = 2000;
  sd::NeighbourTable t(kCount);
  auto addr = [](uint32_t i) { return htonl(0xc6330000u + i + 1); };  // 198.51.x.y
  auto macFor = [](uint32_t i) {
    return mac6(0x02, 0x00, static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i), 0x5a, 0xa5);
  };
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> found{0}, wrong{0};
  std::thread reader([&] {
    rte_ether_addr out{};
    while (!stop.load(std::memory_order_relaxed)) {
      for (uint32_t i = 0; i < kCount; i += 7) {
        if (!t.lookup(addr(i), out)) continue;
        found.fetch_add(1, std::memory_order_relaxed);
        if (!sameMac(out, macFor(i))) wrong.fetch_add(1, std::memory_order_relaxed);
      }
    }
  });
  for (uint32_t i = 0; i < kCount; ++i) ASSERT_TRUE(t.update(addr(i), macFor(i), i));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (found.load() < 10'000 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  stop = true;
  reader.join();
  EXPECT_EQ(wrong.load(), 0u);
  EXPECT_GT(found.load(), 0u);
  EXPECT_EQ(t.size(), kCount);
}
