// Unit tests for the software Toeplitz hash: Microsoft's published RSS
// verification vectors, agreement with DPDK's rte_softrss on random tuples
// and keys, agreement with a bit-serial reference written straight from the
// definition, and the ENA variants against both an independent model of the
// driver/device pipeline documented in docs/rss.md and values produced by
// Amazon's own ENA hash calculator (amzn-ec2-ena-utilities,
// ena-toeplitz/toeplitz_calc.py).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <rte_thash.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "dataplane/toeplitz.h"

namespace strait::dataplane {
namespace {

// The key of Microsoft's "Verifying the RSS hash calculation" page.
constexpr std::array<uint8_t, 40> kMsKey = {
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
    0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
    0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa};

struct Vector {
  const char* src;
  uint16_t srcPort;
  const char* dst;
  uint16_t dstPort;
  uint32_t ipOnly;
  uint32_t withPorts;
};

// All five IPv4 rows of the Microsoft verification suite.
constexpr Vector kMsVectors[] = {
    {"66.9.149.187", 2794, "161.142.100.80", 1766, 0x323e8fc2, 0x51ccc178},
    {"199.92.111.2", 14230, "65.69.140.83", 4739, 0xd718262a, 0xc626b0ea},
    {"24.19.198.95", 12898, "12.22.207.184", 38024, 0xd2d0a5de, 0x5c2b394a},
    {"38.27.205.30", 48228, "209.142.163.6", 2217, 0x82989176, 0xafc7327f},
    {"153.39.163.191", 44251, "202.188.127.2", 1303, 0x5d1809c5, 0x10e828a2},
};

uint32_t ip(const char* s) {
  in_addr a{};
  EXPECT_EQ(inet_pton(AF_INET, s, &a), 1) << s;
  return a.s_addr;  // network order
}

std::vector<uint8_t> tupleBytes(uint32_t srcIp, uint32_t dstIp, uint16_t srcPort, uint16_t dstPort, bool ports) {
  std::vector<uint8_t> v(ports ? 12 : 8);
  std::memcpy(v.data(), &srcIp, 4);
  std::memcpy(v.data() + 4, &dstIp, 4);
  if (ports) {
    std::memcpy(v.data() + 8, &srcPort, 2);
    std::memcpy(v.data() + 10, &dstPort, 2);
  }
  return v;
}

// The definition, bit by bit: for each set input bit (MSB of byte 0 first),
// XOR in the 32 key bits starting at that bit; key bits past the end are 0.
uint32_t referenceStandard(const std::vector<uint8_t>& key, const std::vector<uint8_t>& in) {
  auto keyBit = [&](size_t n) -> uint32_t {
    return n / 8 < key.size() ? (key[n / 8] >> (7 - n % 8)) & 1u : 0u;
  };
  uint32_t h = 0;
  for (size_t n = 0; n < in.size() * 8; ++n) {
    if (!((in[n / 8] >> (7 - n % 8)) & 1u)) continue;
    uint32_t w = 0;
    for (size_t j = 0; j < 32; ++j) w = (w << 1) | keyBit(n + j);
    h ^= w;
  }
  return h;
}

// The ENA device as docs/rss.md describes it: given the key buffer a driver
// programmed and the initial value it chose, the device applies the buffer
// byte-reversed and starts from that value. Written in the shape Amazon's
// calculator uses (whole key rotated left one bit per input bit, leftmost 32
// bits XORed in) rather than with windows. Valid for inputs up to key
// length - 4 bytes.
uint32_t enaDevice(const std::vector<uint8_t>& programmed, uint32_t initialValue, const std::vector<uint8_t>& in) {
  std::vector<uint8_t> key(programmed.rbegin(), programmed.rend());
  uint32_t h = initialValue;
  for (uint8_t byte : in) {
    for (int b = 7; b >= 0; --b) {
      if ((byte >> b) & 1u) {
        h ^= (uint32_t{key[0]} << 24) | (uint32_t{key[1]} << 16) | (uint32_t{key[2]} << 8) | key[3];
      }
      const uint8_t carry = key[0] >> 7;
      for (size_t i = 0; i + 1 < key.size(); ++i) key[i] = static_cast<uint8_t>((key[i] << 1) | (key[i + 1] >> 7));
      key.back() = static_cast<uint8_t>((key.back() << 1) | carry);
    }
  }
  return h;
}

// What each driver programs for the key K the application or admin gave.
uint32_t enaUnderDpdk(const std::vector<uint8_t>& k, const std::vector<uint8_t>& in) {
  // ena_rss_hash_set(): ena_reorder_rss_hash_key(), init_val 0.
  return enaDevice(std::vector<uint8_t>(k.rbegin(), k.rend()), 0, in);
}
uint32_t enaUnderLinux(const std::vector<uint8_t>& k, const std::vector<uint8_t>& in) {
  // ena_set_rxfh() / ena_rss_init_default(): key as given, init_val 0xFFFFFFFF.
  return enaDevice(k, 0xffffffffu, in);
}

std::vector<uint8_t> randomBytes(std::mt19937& rng, size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

TEST(ToeplitzTest, MicrosoftVectorsWithPorts) {
  Toeplitz t(kMsKey);
  for (const auto& v : kMsVectors) {
    const uint16_t sp = htons(v.srcPort);
    const uint16_t dp = htons(v.dstPort);
    EXPECT_EQ(t.hashV4(ip(v.src), ip(v.dst), sp, dp), v.withPorts) << v.src;
    EXPECT_EQ(t.hash(tupleBytes(ip(v.src), ip(v.dst), sp, dp, true)), v.withPorts) << v.src;
  }
}

TEST(ToeplitzTest, MicrosoftVectorsAddressesOnly) {
  Toeplitz t(kMsKey);
  for (const auto& v : kMsVectors) {
    EXPECT_EQ(t.hash(tupleBytes(ip(v.src), ip(v.dst), 0, 0, false)), v.ipOnly) << v.src;
  }
}

TEST(ToeplitzTest, MatchesRteSoftrss) {
  std::mt19937 rng(2024);
  for (int k = 0; k < 20; ++k) {
    alignas(4) uint8_t key[40];
    for (auto& b : key) b = static_cast<uint8_t>(rng());
    if (k == 0) std::memcpy(key, kMsKey.data(), sizeof(key));
    Toeplitz t(std::span<const uint8_t>(key, sizeof(key)));
    alignas(4) uint8_t beKey[40];
    rte_convert_rss_key(reinterpret_cast<const uint32_t*>(key), reinterpret_cast<uint32_t*>(beKey), sizeof(key));
    for (int i = 0; i < 2000; ++i) {
      const uint32_t src = rng();
      const uint32_t dst = rng();
      const uint16_t sp = static_cast<uint16_t>(rng());
      const uint16_t dp = static_cast<uint16_t>(rng());
      // rte_softrss takes the tuple as host-order words (rte_ipv4_tuple).
      uint32_t words[3] = {ntohl(src), ntohl(dst), (uint32_t{ntohs(sp)} << 16) | ntohs(dp)};
      const uint32_t expect = rte_softrss(words, 3, key);
      ASSERT_EQ(t.hashV4(src, dst, sp, dp), expect) << "key " << k << " tuple " << i;
      // The optimised variant takes the same words and a pre-converted key.
      ASSERT_EQ(rte_softrss_be(words, 3, beKey), expect);
    }
    // IPv6-sized inputs (9 words) through the raw-bytes path.
    for (int i = 0; i < 200; ++i) {
      auto in = randomBytes(rng, 36);
      uint32_t words[9];
      for (int w = 0; w < 9; ++w) {
        words[w] = (uint32_t{in[4 * w]} << 24) | (uint32_t{in[4 * w + 1]} << 16) | (uint32_t{in[4 * w + 2]} << 8) |
                   in[4 * w + 3];
      }
      ASSERT_EQ(t.hash(in), rte_softrss(words, 9, key));
    }
  }
}

TEST(ToeplitzTest, MatchesBitSerialReference) {
  std::mt19937 rng(99);
  for (size_t keyLen : {4, 5, 12, 16, 40, 52}) {
    auto key = randomBytes(rng, keyLen);
    Toeplitz t(key);
    for (size_t len = 0; len <= keyLen + 8; ++len) {
      for (int i = 0; i < 20; ++i) {
        auto in = randomBytes(rng, len);
        ASSERT_EQ(t.hash(in), referenceStandard(key, in)) << "key " << keyLen << " input " << len;
      }
    }
    // hashV4 works with keys shorter than 16 bytes too (zero padded).
    for (int i = 0; i < 50; ++i) {
      auto in = randomBytes(rng, 12);
      uint32_t s;
      uint32_t d;
      uint16_t sp;
      uint16_t dp;
      std::memcpy(&s, in.data(), 4);
      std::memcpy(&d, in.data() + 4, 4);
      std::memcpy(&sp, in.data() + 8, 2);
      std::memcpy(&dp, in.data() + 10, 2);
      ASSERT_EQ(t.hashV4(s, d, sp, dp), referenceStandard(key, in));
    }
  }
}

TEST(ToeplitzTest, EnaVariantsMatchDeviceModel) {
  std::mt19937 rng(4242);
  for (int k = 0; k < 20; ++k) {
    auto key = randomBytes(rng, 40);
    Toeplitz dpdk(key, ToeplitzVariant::kEna);
    Toeplitz kernel(key, ToeplitzVariant::kEnaLinux);
    for (size_t len = 0; len <= 36; ++len) {
      auto in = randomBytes(rng, len);
      ASSERT_EQ(dpdk.hash(in), enaUnderDpdk(key, in)) << "len " << len;
      ASSERT_EQ(kernel.hash(in), enaUnderLinux(key, in)) << "len " << len;
    }
    for (int i = 0; i < 500; ++i) {
      auto in = randomBytes(rng, 12);
      uint32_t s;
      uint32_t d;
      uint16_t sp;
      uint16_t dp;
      std::memcpy(&s, in.data(), 4);
      std::memcpy(&d, in.data() + 4, 4);
      std::memcpy(&sp, in.data() + 8, 2);
      std::memcpy(&dp, in.data() + 10, 2);
      ASSERT_EQ(dpdk.hashV4(s, d, sp, dp), enaUnderDpdk(key, in));
      ASSERT_EQ(kernel.hashV4(s, d, sp, dp), enaUnderLinux(key, in));
    }
  }
}

TEST(ToeplitzTest, EnaRelations) {
  std::mt19937 rng(5);
  auto key = randomBytes(rng, 40);
  auto rev = key;
  std::reverse(rev.begin(), rev.end());
  Toeplitz standard(key);
  Toeplitz standardRev(rev);
  Toeplitz dpdk(key, ToeplitzVariant::kEna);
  Toeplitz kernel(key, ToeplitzVariant::kEnaLinux);
  for (int i = 0; i < 1000; ++i) {
    const uint32_t s = rng();
    const uint32_t d = rng();
    const auto sp = static_cast<uint16_t>(rng());
    const auto dp = static_cast<uint16_t>(rng());
    // Under DPDK the PMD's reversal undoes the device's.
    ASSERT_EQ(dpdk.hashV4(s, d, sp, dp), standard.hashV4(s, d, sp, dp));
    ASSERT_EQ(kernel.hashV4(s, d, sp, dp), ~standardRev.hashV4(s, d, sp, dp));
  }
  EXPECT_NE(kernel.hashV4(1, 2, 3, 4), standard.hashV4(1, 2, 3, 4));
  EXPECT_EQ(kernel.hash({}), 0xffffffffu);
  EXPECT_EQ(dpdk.hash({}), 0u);
}

// Values printed by Amazon's calculator (amzn-ec2-ena-utilities @6ecb14c,
// ena-toeplitz/toeplitz_calc.py -t SRC -T SPORT -r DST -R DPORT -k KEY) for an
// instance whose key can be set: its "DPDK" line is kEna (and kStandard),
// its "Linux (after setting the key with ethtool)" line is kEnaLinux.
TEST(ToeplitzTest, AgreesWithAmazonCalculator) {
  constexpr std::array<uint8_t, 40> key = {
      0x07, 0x59, 0x95, 0x5a, 0x3f, 0xe0, 0xcf, 0xf0, 0xb5, 0x2f, 0xcd, 0x66, 0x9f, 0x3d,
      0xe5, 0x11, 0x8b, 0xa6, 0xc4, 0x54, 0x08, 0xd3, 0x48, 0x49, 0x73, 0xcb, 0xe2, 0x56,
      0x43, 0xfa, 0x4c, 0xad, 0xf1, 0x6e, 0x9d, 0xd2, 0xdf, 0x6d, 0xd1, 0x5e};
  struct Case {
    const char* src;
    uint16_t srcPort;
    const char* dst;
    uint16_t dstPort;
    uint32_t dpdk;
    uint32_t kernel;
  };
  constexpr Case cases[] = {
      {"203.0.113.11", 443, "192.0.2.10", 40001, 0x192cd36d, 0x4158df47},
      {"198.51.100.7", 80, "192.0.2.10", 65535, 0x4704613e, 0xbec91dd3},
      {"203.0.113.250", 8443, "198.51.100.1", 1024, 0xb43ccc6c, 0x47113dd6},
      {"172.31.52.165", 0, "172.31.52.143", 0, 0xd3ca8381, 0x8e740a89},
  };
  Toeplitz standard(key);
  Toeplitz ena(key, ToeplitzVariant::kEna);
  Toeplitz enaLinux(key, ToeplitzVariant::kEnaLinux);
  for (const auto& c : cases) {
    const uint32_t s = ip(c.src);
    const uint32_t d = ip(c.dst);
    const uint16_t sp = htons(c.srcPort);
    const uint16_t dp = htons(c.dstPort);
    EXPECT_EQ(ena.hashV4(s, d, sp, dp), c.dpdk) << c.src;
    EXPECT_EQ(standard.hashV4(s, d, sp, dp), c.dpdk) << c.src;
    EXPECT_EQ(enaLinux.hashV4(s, d, sp, dp), c.kernel) << c.src;
  }
  // With Microsoft's key the calculator's DPDK line is the published vector,
  // and its Linux line 0x3dc77368.
  const uint32_t s = ip("66.9.149.187");
  const uint32_t d = ip("161.142.100.80");
  EXPECT_EQ(Toeplitz(kMsKey, ToeplitzVariant::kEna).hashV4(s, d, htons(2794), htons(1766)), 0x51ccc178u);
  EXPECT_EQ(Toeplitz(kMsKey, ToeplitzVariant::kEnaLinux).hashV4(s, d, htons(2794), htons(1766)), 0x3dc77368u);
}

TEST(ToeplitzTest, RejectsShortKey) {
  const uint8_t k[3] = {1, 2, 3};
  EXPECT_THROW(Toeplitz(std::span<const uint8_t>(k, 3)), std::invalid_argument);
  EXPECT_THROW(Toeplitz(std::span<const uint8_t>()), std::invalid_argument);
}

TEST(ToeplitzTest, RssQueueUsesRetaModulo) {
  std::vector<uint16_t> reta(128);
  for (size_t i = 0; i < reta.size(); ++i) reta[i] = static_cast<uint16_t>(i % 3);
  EXPECT_EQ(rssQueue(0x51ccc178, reta), reta[0x51ccc178 % 128]);
  EXPECT_EQ(rssQueue(127, reta), 127 % 3);
  EXPECT_EQ(rssQueue(128, reta), 0);
  EXPECT_EQ(rssQueue(12345, {}), 0);
}

}  // namespace
}  // namespace strait::dataplane
