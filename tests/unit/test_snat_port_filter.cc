// Unit tests for SnatPortFilter: the one-pass fill gives exactly the ports
// the port-by-port definition (Toeplitz hash of the reply through the
// RETA, port modulo workers, listen ports of the snapshot) accepts, for
// every owner mode and Toeplitz variant, on random keys; and a
// PortAllocator filled through it hands out only those ports.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <array>
#include <random>
#include <vector>

#include "dataplane/port_alloc.h"
#include "dataplane/snat_port_filter.h"
#include "dataplane/toeplitz.h"
#include "strait/snapshot.h"

namespace strait::dataplane {
namespace {

constexpr std::array<uint8_t, 40> kMsKey = {
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
    0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
    0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3e, 0xbe, 0xac, 0x01, 0xfa};

const uint32_t kSnat = htonl(0xc000020a);  // 192.0.2.10

// Services listening on the SNAT address at ports inside the range (and
// one on another address, and one of the other protocol).
Snapshot listeners() {
  Snapshot s;
  auto add = [&s](uint32_t vip, uint16_t port, uint8_t proto, uint16_t slot) {
    ServiceView v;
    v.name = "s" + std::to_string(slot);
    v.slot = slot;
    v.vip = vip;
    v.port = htons(port);
    v.proto = proto;
    s.services.push_back(v);
  };
  add(kSnat, 40000, IPPROTO_TCP, 1);
  add(kSnat, 40123, IPPROTO_TCP, 2);
  add(kSnat, 40999, IPPROTO_UDP, 3);
  add(htonl(0xc0000214), 40500, IPPROTO_TCP, 4);
  s.buildIndexes({kSnat});
  return s;
}

void expectSameAsSlow(SnatPortFilter& f, const Snapshot* snap, uint16_t lo, uint16_t hi, std::mt19937& rng,
                      const char* what) {
  std::vector<uint16_t> ring(uint32_t{hi} - lo + 1);
  for (int k = 0; k < 40; ++k) {
    const PoolKey key{kSnat, static_cast<uint32_t>(rng()), static_cast<uint16_t>(rng()),
                      static_cast<uint8_t>(k % 2 ? IPPROTO_TCP : IPPROTO_UDP), 0};
    const uint32_t n = f.fill(key, snap, ring.data());
    std::vector<uint16_t> want;
    for (uint32_t p = lo; p <= hi; ++p)
      if (f.eligibleSlow(key, static_cast<uint16_t>(p), snap)) want.push_back(static_cast<uint16_t>(p));
    ASSERT_EQ(std::vector<uint16_t>(ring.begin(), ring.begin() + n), want) << what << ", key " << k;
  }
}

TEST(SnatPortFilter, RssFillEqualsThePortByPortHashForEveryVariant) {
  std::mt19937 rng(7);
  const Snapshot snap = listeners();
  for (auto variant : {ToeplitzVariant::kStandard, ToeplitzVariant::kEna, ToeplitzVariant::kEnaLinux}) {
    const Toeplitz t(kMsKey, variant);
    for (std::size_t retaSize : {std::size_t{128}, std::size_t{12}}) {  // a power of two and not
      std::vector<uint16_t> reta(retaSize);
      for (std::size_t i = 0; i < retaSize; ++i) reta[i] = static_cast<uint16_t>(i % 3);
      for (uint16_t w = 0; w < 3; ++w) {
        SnatPortFilter::Params p;
        p.mode = OwnerMode::kRssHash;
        p.worker = w;
        p.workers = 3;
        p.portMin = 40000;
        p.portMax = 40999;
        p.toeplitz = &t;
        p.reta = reta;
        SnatPortFilter f(p);
        expectSameAsSlow(f, &snap, 40000, 40999, rng, "rss");
      }
    }
  }
}

TEST(SnatPortFilter, ModuloAndSingleFillEqualThePortByPortRule) {
  std::mt19937 rng(9);
  const Snapshot snap = listeners();
  for (uint16_t workers : {1, 2, 3, 7}) {
    for (uint16_t w = 0; w < workers; ++w) {
      SnatPortFilter::Params p;
      p.mode = workers == 1 ? OwnerMode::kSingle : OwnerMode::kPortModulo;
      p.worker = w;
      p.workers = workers;
      p.portMin = 40000;
      p.portMax = 40999;
      SnatPortFilter f(p);
      expectSameAsSlow(f, &snap, 40000, 40999, rng, "modulo");
    }
  }
  // The listen ports themselves: 40000 and 40123 are TCP listeners on the
  // SNAT address, 40999 a UDP one; 40500 listens on another address.
  SnatPortFilter::Params p;
  p.portMin = 40000;
  p.portMax = 40999;
  SnatPortFilter f(p);
  std::vector<uint16_t> ring(1000);
  const uint32_t tcp = f.fill(PoolKey{kSnat, 1, 2, IPPROTO_TCP, 0}, &snap, ring.data());
  EXPECT_EQ(tcp, 998u);
  EXPECT_EQ(ring[0], 40001);
  const uint32_t udp = f.fill(PoolKey{kSnat, 1, 2, IPPROTO_UDP, 0}, &snap, ring.data());
  EXPECT_EQ(udp, 999u);
  EXPECT_EQ(ring[udp - 1], 40998);
  // The scratch bitmap is cleared after each fill: without a snapshot
  // nothing is excluded.
  EXPECT_EQ(f.fill(PoolKey{kSnat, 1, 2, IPPROTO_TCP, 0}, nullptr, ring.data()), 1000u);
}

TEST(SnatPortFilter, AllocatorFilledThroughItHandsOutOnlyEligiblePorts) {
  const Snapshot snap = listeners();
  const Toeplitz t(kMsKey);
  std::vector<uint16_t> reta(128);
  for (std::size_t i = 0; i < reta.size(); ++i) reta[i] = static_cast<uint16_t>(i % 2);
  SnatPortFilter::Params fp;
  fp.mode = OwnerMode::kRssHash;
  fp.worker = 1;
  fp.workers = 2;
  fp.portMin = 40000;
  fp.portMax = 40999;
  fp.toeplitz = &t;
  fp.reta = reta;
  SnatPortFilter f(fp);
  PortAllocator::Params pp;
  pp.portMin = 40000;
  pp.portMax = 40999;
  pp.maxPools = 4;
  pp.fill = SnatPortFilter::fillerFor(f);
  PortAllocator a(pp);
  const PoolKey key{kSnat, htonl(0xcb00710b), htons(80), IPPROTO_TCP, 0};
  const uint32_t id = 2;
  const uint32_t loaded = a.load(id, key, &snap);
  ASSERT_EQ(loaded, a.capacity(id));
  EXPECT_GT(a.capacity(id), 400u);
  EXPECT_LT(a.capacity(id), 600u);
  uint16_t port = 0;
  uint32_t n = 0;
  while (a.allocate(id, port)) {
    ++n;
    EXPECT_EQ(rssQueue(t.hashV4(key.backendIp, key.snatIp, key.backendPort, htons(port)), reta), 1) << port;
    EXPECT_NE(port, 40000);
    EXPECT_NE(port, 40123);
  }
  EXPECT_EQ(n, a.capacity(id));
}

}  // namespace
}  // namespace strait::dataplane
