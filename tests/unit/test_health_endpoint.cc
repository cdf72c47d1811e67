// Unit tests of the instance health endpoint's stateless responder on real
// mbufs: the SYN-ACK carries the keyed ISN, a request that acknowledges it
// gets the whole response and a FIN in one segment (200 / 503 by status),
// a FIN gets its ACK, and what does not follow the handshake gets a reset.
// Replies are checked field by field, checksums with an independent sum.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <cstring>
#include <string>

#include "dataplane/health_endpoint.h"
#include "dataplane/parse.h"

namespace strait::dataplane {
namespace {

constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;
const uint32_t kLb = htonl(0xc000020a);      // 192.0.2.10
const uint32_t kChecker = htonl(0xc6336414);  // 198.51.100.20
const uint16_t kPort = htons(8080);
const uint16_t kSport = htons(40000);

uint32_t sumBe(const uint8_t* p, std::size_t n, uint32_t s = 0) {
  for (std::size_t i = 0; i + 1 < n; i += 2) s += uint32_t{p[i]} << 8 | p[i + 1];
  if (n & 1) s += uint32_t{p[n - 1]} << 8;
  return s;
}
uint16_t fold(uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(s);
}
uint32_t rd32(const uint8_t* p) { return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3]; }

class HealthEndpoint : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pool_ = rte_pktmbuf_pool_create("he_test_pool", 63, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    ASSERT_NE(pool_, nullptr);
  }
  static void TearDownTestSuite() { rte_mempool_free(pool_); }
  void SetUp() override {
    h_.ip = kLb;
    h_.port = kPort;
    h_.status = InstanceStatus::kReady;
    h_.key0 = 0x1122334455667788ull;
    h_.key1 = 0x99aabbccddeeff00ull;
    isn_ = healthIsn(h_, kChecker, kLb, kSport, kPort);
  }
  void TearDown() override {
    if (mb_) rte_pktmbuf_free(mb_);
  }

  // A frame from the checker to the endpoint; returns what the responder did.
  HealthReply send(uint8_t flags, uint32_t seq, uint32_t ack, const std::string& payload = "") {
    if (mb_) rte_pktmbuf_free(mb_);
    mb_ = rte_pktmbuf_alloc(pool_);
    const std::size_t len = 14 + 20 + 20 + payload.size();
    auto* f = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(mb_, static_cast<uint16_t>(len)));
    std::memset(f, 0, len);
    const uint8_t dmac[6] = {2, 0, 0, 0, 0, 0x0a}, smac[6] = {2, 0, 0, 0, 0, 0x01};
    std::memcpy(f, dmac, 6);
    std::memcpy(f + 6, smac, 6);
    f[12] = 0x08;
    uint8_t* ip = f + 14;
    ip[0] = 0x45;
    const uint16_t total = htons(static_cast<uint16_t>(40 + payload.size()));
    std::memcpy(ip + 2, &total, 2);
    ip[8] = 64;
    ip[9] = IPPROTO_TCP;
    std::memcpy(ip + 12, &kChecker, 4);
    std::memcpy(ip + 16, &kLb, 4);
    uint8_t* tcp = ip + 20;
    std::memcpy(tcp, &kSport, 2);
    std::memcpy(tcp + 2, &kPort, 2);
    const uint32_t s = htonl(seq), a = htonl(ack);
    std::memcpy(tcp + 4, &s, 4);
    std::memcpy(tcp + 8, &a, 4);
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14] = 0xff;
    std::memcpy(tcp + 20, payload.data(), payload.size());
    PacketMeta m;
    EXPECT_EQ(parsePacket(f, f + len, m), DropReason::kNone);
    return healthEndpointReply(mb_, m, h_);
  }

  // The reply in mb_: checks addresses, MACs, lengths and both checksums.
  struct Reply {
    uint32_t seq, ack;
    uint8_t flags;
    std::string payload;
  };
  Reply reply() {
    const auto* f = rte_pktmbuf_mtod(mb_, const uint8_t*);
    const uint8_t smac[6] = {2, 0, 0, 0, 0, 0x0a};
    EXPECT_EQ(std::memcmp(f + 6, smac, 6), 0) << "reply comes from our MAC";
    const uint8_t* ip = f + 14;
    uint32_t src, dst;
    std::memcpy(&src, ip + 12, 4);
    std::memcpy(&dst, ip + 16, 4);
    EXPECT_EQ(src, kLb);
    EXPECT_EQ(dst, kChecker);
    const uint16_t total = static_cast<uint16_t>(ip[2] << 8 | ip[3]);
    EXPECT_EQ(mb_->data_len, 14u + total);
    EXPECT_EQ(fold(sumBe(ip, 20)), 0xffff) << "IPv4 header checksum";
    const uint8_t* tcp = ip + 20;
    const uint16_t l4 = static_cast<uint16_t>(total - 20);
    EXPECT_EQ(fold(sumBe(tcp, l4, sumBe(ip + 12, 8) + IPPROTO_TCP + l4)), 0xffff) << "TCP checksum";
    EXPECT_EQ(tcp[0] << 8 | tcp[1], 8080);
    EXPECT_EQ(tcp[2] << 8 | tcp[3], 40000);
    return Reply{rd32(tcp + 4), rd32(tcp + 8), tcp[13],
                 std::string(reinterpret_cast<const char*>(tcp + 20), l4 - 20u)};
  }

  static rte_mempool* pool_;
  rte_mbuf* mb_ = nullptr;
  InstanceHealthView h_;
  uint32_t isn_ = 0;
};
rte_mempool* HealthEndpoint::pool_ = nullptr;

TEST_F(HealthEndpoint, SynGetsSynAckWithTheKeyedIsn) {
  ASSERT_EQ(send(kSyn, 1000, 0), HealthReply::kSent);
  const Reply r = reply();
  EXPECT_EQ(r.flags, kSyn | kAck);
  EXPECT_EQ(r.seq, isn_);
  EXPECT_EQ(r.ack, 1001u);
  EXPECT_TRUE(r.payload.empty());
  // The ISN depends on the key and on the tuple.
  InstanceHealthView other = h_;
  other.key0 ^= 1;
  EXPECT_NE(healthIsn(other, kChecker, kLb, kSport, kPort), isn_);
  EXPECT_NE(healthIsn(h_, kChecker, kLb, htons(40001), kPort), isn_);
}

TEST_F(HealthEndpoint, RequestGetsTheWholeResponseWithFin) {
  const std::string req = "GET / HTTP/1.1\r\nHost: lb\r\n\r\n";
  ASSERT_EQ(send(kAck | kPsh, 1001, isn_ + 1, req), HealthReply::kSent);
  Reply r = reply();
  EXPECT_EQ(r.flags, kAck | kPsh | kFin);
  EXPECT_EQ(r.seq, isn_ + 1);
  EXPECT_EQ(r.ack, 1001u + req.size());
  EXPECT_EQ(r.payload.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r.payload;
  EXPECT_NE(r.payload.find("\r\n\r\nready\n"), std::string::npos);

  h_.status = InstanceStatus::kDraining;
  ASSERT_EQ(send(kAck | kPsh, 1001, isn_ + 1, req), HealthReply::kSent);
  r = reply();
  EXPECT_EQ(r.payload.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0), 0u) << r.payload;
  EXPECT_NE(r.payload.find("\r\n\r\ndraining\n"), std::string::npos);
  h_.status = InstanceStatus::kDegraded;
  ASSERT_EQ(send(kAck | kPsh, 1001, isn_ + 1, req), HealthReply::kSent);
  EXPECT_NE(reply().payload.find("\r\n\r\ndegraded\n"), std::string::npos);
}

TEST_F(HealthEndpoint, FinGetsItsAckAndPureAcksAreConsumed) {
  ASSERT_EQ(send(kAck | kFin, 1030, isn_ + 80), HealthReply::kSent);
  const Reply r = reply();
  EXPECT_EQ(r.flags, kAck);
  EXPECT_EQ(r.seq, isn_ + 80);
  EXPECT_EQ(r.ack, 1031u);
  EXPECT_EQ(send(kAck, 1001, isn_ + 1), HealthReply::kConsumed) << "the handshake's ACK";
  EXPECT_EQ(send(kRst, 1001, 0), HealthReply::kConsumed);
  EXPECT_EQ(send(kRst | kAck, 1001, isn_ + 1), HealthReply::kConsumed);
}

TEST_F(HealthEndpoint, DataThatDoesNotFollowOurSynAckIsReset) {
  // A blind request with a guessed acknowledgement number.
  ASSERT_EQ(send(kAck | kPsh, 1001, isn_ + 2, "GET / HTTP/1.1\r\n\r\n"), HealthReply::kSent);
  Reply r = reply();
  EXPECT_EQ(r.flags, kRst);
  EXPECT_EQ(r.seq, isn_ + 2);
  EXPECT_TRUE(r.payload.empty());
  // A segment with no ACK and no SYN.
  ASSERT_EQ(send(kPsh, 5000, 0, "x"), HealthReply::kSent);
  r = reply();
  EXPECT_EQ(r.flags, kRst | kAck);
  EXPECT_EQ(r.ack, 5001u);
}

}  // namespace
}  // namespace strait::dataplane
