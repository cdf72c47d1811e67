// Parser tests: every header kind and its fields, VLAN, IPv4 options,
// malformed headers, fragments, ICMP errors with quoted packets, ARP, and
// every truncation point of valid frames. Frames are built byte by byte
// here (not with the DPDK structs the parser uses) so the tests check the
// wire layout independently, and each parse runs on a heap buffer of
// exactly the frame's size so AddressSanitizer builds catch any read past
// `end`.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "dataplane/parse.h"

using strait::DropReason;
using strait::L3Kind;
using strait::PacketMeta;
namespace sd = strait::dataplane;

namespace {

using Bytes = std::vector<uint8_t>;

void put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}
void put32(Bytes& b, uint32_t v) {
  put16(b, static_cast<uint16_t>(v >> 16));
  put16(b, static_cast<uint16_t>(v));
}

constexpr uint32_t kClient = 0xc0000201;  // 192.0.2.1
constexpr uint32_t kVip = 0xc000020a;     // 192.0.2.10
constexpr uint32_t kBackend = 0xcb00710b; // 203.0.113.11

Bytes ether(uint16_t etherType, bool vlan = false, uint16_t tci = 0) {
  Bytes b = {0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2};
  if (vlan) {
    put16(b, 0x8100);
    put16(b, tci);
  }
  put16(b, etherType);
  return b;
}

struct Ip {
  uint8_t proto = IPPROTO_TCP;
  uint32_t src = kClient;
  uint32_t dst = kVip;
  uint8_t ttl = 64;
  uint8_t optWords = 0;        // IPv4 options, in 32-bit words
  uint16_t frag = 0x4000;      // DF
  int totalAdjust = 0;         // added to the correct total length
  int ihlOverride = -1;
  uint8_t version = 4;
};

// IPv4 header (checksum left 0: the parser does not verify it) + `l4`.
Bytes ipv4(const Ip& ip, const Bytes& l4) {
  Bytes b;
  uint8_t ihl = static_cast<uint8_t>(ip.ihlOverride >= 0 ? ip.ihlOverride : 5 + ip.optWords);
  b.push_back(static_cast<uint8_t>(ip.version << 4 | ihl));
  b.push_back(0);
  put16(b, static_cast<uint16_t>(20 + ip.optWords * 4 + l4.size() + ip.totalAdjust));
  put16(b, 0x1234);
  put16(b, ip.frag);
  b.push_back(ip.ttl);
  b.push_back(ip.proto);
  put16(b, 0);
  put32(b, ip.src);
  put32(b, ip.dst);
  for (int i = 0; i < ip.optWords * 4; ++i) b.push_back(0x01);  // NOPs
  b.insert(b.end(), l4.begin(), l4.end());
  return b;
}

Bytes tcp(uint16_t sport, uint16_t dport, uint8_t flags, uint8_t optWords = 0, std::size_t payload = 0) {
  Bytes b;
  put16(b, sport);
  put16(b, dport);
  put32(b, 1000);
  put32(b, 0);
  b.push_back(static_cast<uint8_t>((5 + optWords) << 4));
  b.push_back(flags);
  put16(b, 8192);
  put16(b, 0);
  put16(b, 0);
  for (int i = 0; i < optWords * 4; ++i) b.push_back(1);
  b.insert(b.end(), payload, 0xab);
  return b;
}

Bytes udp(uint16_t sport, uint16_t dport, std::size_t payload = 0, int lenAdjust = 0) {
  Bytes b;
  put16(b, sport);
  put16(b, dport);
  put16(b, static_cast<uint16_t>(8 + payload + lenAdjust));
  put16(b, 0);
  b.insert(b.end(), payload, 0xcd);
  return b;
}

Bytes icmp(uint8_t type, uint8_t code, uint16_t id, uint16_t seq, const Bytes& body = {}) {
  Bytes b = {type, code, 0, 0};
  put16(b, id);
  put16(b, seq);
  b.insert(b.end(), body.begin(), body.end());
  return b;
}

Bytes cat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

Bytes ipFrame(const Ip& ip, const Bytes& l4, bool vlan = false) {
  return cat(ether(0x0800, vlan, 0x2064), ipv4(ip, l4));
}

Bytes arpFrame(uint8_t hlen = 6, uint8_t plen = 4, uint16_t ptype = 0x0800) {
  Bytes b = ether(0x0806);
  put16(b, 1);
  put16(b, ptype);
  b.push_back(hlen);
  b.push_back(plen);
  put16(b, 1);
  for (int i = 0; i < 6; ++i) b.push_back(0x02);
  put32(b, kClient);
  for (int i = 0; i < 6; ++i) b.push_back(0);
  put32(b, kVip);
  return b;
}

// Parses `len` bytes of `frame` from a heap buffer of exactly `len` bytes,
// so a read past the end is a heap overflow under ASan.
DropReason parseExact(const Bytes& frame, std::size_t len, PacketMeta& m) {
  std::unique_ptr<uint8_t[]> buf(new uint8_t[len == 0 ? 1 : len]);
  if (len) std::memcpy(buf.get(), frame.data(), len);
  return sd::parsePacket(buf.get(), buf.get() + len, m);
}
DropReason parse(const Bytes& frame, PacketMeta& m) { return parseExact(frame, frame.size(), m); }

uint16_t n16(uint16_t v) { return htons(v); }

// Field-by-field equality (memcmp would also compare padding bytes).
bool sameMeta(const PacketMeta& a, const PacketMeta& b) {
  return a.l3 == b.l3 && a.hasVlan == b.hasVlan && a.vlanTci == b.vlanTci && a.etherType == b.etherType &&
         a.l3Off == b.l3Off && a.l4Off == b.l4Off && a.ipHdrLen == b.ipHdrLen && a.ipTotalLen == b.ipTotalLen &&
         a.l4Proto == b.l4Proto && a.ttl == b.ttl && a.srcIp == b.srcIp && a.dstIp == b.dstIp &&
         a.srcPort == b.srcPort && a.dstPort == b.dstPort && a.tcpFlags == b.tcpFlags &&
         a.icmpType == b.icmpType && a.icmpCode == b.icmpCode && a.icmpError == b.icmpError &&
         a.tcpHdrLen == b.tcpHdrLen && a.l4Len == b.l4Len && a.innerL3Off == b.innerL3Off &&
         a.innerL4Off == b.innerL4Off && a.innerL4Avail == b.innerL4Avail && a.innerProto == b.innerProto &&
         a.innerSrcIp == b.innerSrcIp && a.innerDstIp == b.innerDstIp && a.innerSrcPort == b.innerSrcPort &&
         a.innerDstPort == b.innerDstPort;
}
uint32_t n32(uint32_t v) { return htonl(v); }

}  // namespace

TEST(Parse, Ipv4Tcp) {
  auto f = ipFrame(Ip{}, tcp(40000, 80, 0x02, 0, 10));
  PacketMeta m;
  ASSERT_EQ(parse(f, m), DropReason::kNone);
  EXPECT_EQ(m.l3, L3Kind::kIpv4);
  EXPECT_FALSE(m.hasVlan);
  EXPECT_EQ(m.etherType, 0x0800);
  EXPECT_EQ(m.l3Off, 14);
  EXPECT_EQ(m.l4Off, 34);
  EXPECT_EQ(m.ipHdrLen, 20);
  EXPECT_EQ(m.ipTotalLen, 20 + 20 + 10);
  EXPECT_EQ(m.l4Proto, IPPROTO_TCP);
  EXPECT_EQ(m.ttl, 64);
  EXPECT_EQ(m.srcIp, n32(kClient));
  EXPECT_EQ(m.dstIp, n32(kVip));
  EXPECT_EQ(m.srcPort, n16(40000));
  EXPECT_EQ(m.dstPort, n16(80));
  EXPECT_EQ(m.tcpFlags, 0x02);
  EXPECT_EQ(m.tcpHdrLen, 20);
  EXPECT_EQ(m.l4Len, 30);
  EXPECT_FALSE(m.icmpError);
}

TEST(Parse, TcpWithOptions) {
  auto f = ipFrame(Ip{}, tcp(1234, 443, 0x12, 3));
  PacketMeta m;
  ASSERT_EQ(parse(f, m), DropReason::kNone);
  EXPECT_EQ(m.tcpHdrLen, 32);
  EXPECT_EQ(m.tcpFlags, 0x12);
  EXPECT_EQ(m.l4Len, 32);
}

TEST(Parse, TcpBadDataOffset) {
  PacketMeta m;
  auto l4 = tcp(1, 2, 0x10);
  l4[12] = 4 << 4;  // data offset below 5
  EXPECT_EQ(parse(ipFrame(Ip{}, l4), m), DropReason::kMalformed);
  l4[12] = 6 << 4;  // options claimed but not within the total length
  EXPECT_EQ(parse(ipFrame(Ip{}, l4), m), DropReason::kMalformed);
  // ...even when the frame has bytes there (padding beyond the total length).
  auto f = ipFrame(Ip{}, l4);
  f.insert(f.end(), 8, 0);
  EXPECT_EQ(parse(f, m), DropReason::kMalformed);
}

TEST(Parse, TcpTooShortForHeader) {
  PacketMeta m;
  auto l4 = tcp(1, 2, 0x10);
  l4.resize(19);
  EXPECT_EQ(parse(ipFrame(Ip{}, l4), m), DropReason::kMalformed);
}

TEST(Parse, Ipv4Udp) {
  Ip ip;
  ip.proto = IPPROTO_UDP;
  ip.ttl = 1;
  auto f = ipFrame(ip, udp(5353, 53, 5));
  PacketMeta m;
  ASSERT_EQ(parse(f, m), DropReason::kNone);
  EXPECT_EQ(m.l4Proto, IPPROTO_UDP);
  EXPECT_EQ(m.srcPort, n16(5353));
  EXPECT_EQ(m.dstPort, n16(53));
  EXPECT_EQ(m.l4Len, 13);
  EXPECT_EQ(m.ttl, 1);
  EXPECT_EQ(m.tcpHdrLen, 0);
  EXPECT_EQ(m.tcpFlags, 0);
}

TEST(Parse, UdpLengthChecks) {
  Ip ip;
  ip.proto = IPPROTO_UDP;
  PacketMeta m;
  EXPECT_EQ(parse(ipFrame(ip, udp(1, 2, 4, -5)), m), DropReason::kMalformed);  // length 7
  EXPECT_EQ(parse(ipFrame(ip, udp(1, 2, 4, 1)), m), DropReason::kMalformed);   // beyond IPv4 payload
  // A UDP length shorter than the IPv4 payload is accepted.
  EXPECT_EQ(parse(ipFrame(ip, udp(1, 2, 4, -4)), m), DropReason::kNone);
  // Fewer than 8 bytes of UDP header.
  auto l4 = udp(1, 2);
  l4.resize(7);
  EXPECT_EQ(parse(ipFrame(ip, l4), m), DropReason::kMalformed);
}

TEST(Parse, IcmpEcho) {
  Ip ip;
  ip.proto = IPPROTO_ICMP;
  PacketMeta m;
  ASSERT_EQ(parse(ipFrame(ip, icmp(8, 0, 0x4242, 7, Bytes(56, 1))), m), DropReason::kNone);
  EXPECT_EQ(m.l4Proto, IPPROTO_ICMP);
  EXPECT_EQ(m.icmpType, 8);
  EXPECT_EQ(m.icmpCode, 0);
  EXPECT_EQ(m.srcPort, n16(0x4242));
  EXPECT_EQ(m.dstPort, 0);
  EXPECT_FALSE(m.icmpError);
  EXPECT_EQ(m.l4Len, 64);

  ASSERT_EQ(parse(ipFrame(ip, icmp(0, 0, 0x1111, 7)), m), DropReason::kNone);
  EXPECT_EQ(m.icmpType, 0);
  EXPECT_EQ(m.srcPort, n16(0x1111));

  // Other informational types carry no identifier.
  ASSERT_EQ(parse(ipFrame(ip, icmp(13, 0, 0x1111, 7)), m), DropReason::kNone);
  EXPECT_EQ(m.srcPort, 0);

  auto shortIcmp = icmp(8, 0, 1, 1);
  shortIcmp.resize(7);
  EXPECT_EQ(parse(ipFrame(ip, shortIcmp), m), DropReason::kMalformed);
}

namespace {

// An ICMP error from `router` to the client's SNAT side, quoting a packet
// that went backend-ward (inner src = snat, dst = backend).
Bytes icmpErrorFrame(uint8_t type, uint8_t code, const Bytes& quote, bool vlan = false) {
  Ip outer;
  outer.proto = IPPROTO_ICMP;
  outer.src = 0xcb007101;
  outer.dst = kVip;
  return ipFrame(outer, icmp(type, code, 0, 1400, quote), vlan);
}

Bytes quotedTcp(uint8_t optWords = 0, std::size_t l4Bytes = 8) {
  Ip in;
  in.src = kVip;
  in.dst = kBackend;
  in.optWords = optWords;
  auto t = tcp(61000, 443, 0x02, 0, 1400);  // the original was long; only part is quoted
  auto full = ipv4(in, t);
  full.resize(20 + optWords * 4 + l4Bytes);
  return full;
}

}  // namespace

TEST(Parse, IcmpErrorQuotingTcp) {
  for (uint8_t type : {3, 4, 5, 11, 12}) {
    auto f = icmpErrorFrame(type, 4, quotedTcp());
    PacketMeta m;
    ASSERT_EQ(parse(f, m), DropReason::kNone) << int(type);
    EXPECT_TRUE(m.icmpError) << int(type);
    EXPECT_EQ(m.icmpType, type);
    EXPECT_EQ(m.icmpCode, 4);
    EXPECT_EQ(m.srcIp, n32(0xcb007101));
    EXPECT_EQ(m.innerL3Off, 14 + 20 + 8);
    EXPECT_EQ(m.innerL4Off, 14 + 20 + 8 + 20);
    EXPECT_EQ(m.innerL4Avail, 8);
    EXPECT_EQ(m.innerProto, IPPROTO_TCP);
    EXPECT_EQ(m.innerSrcIp, n32(kVip));
    EXPECT_EQ(m.innerDstIp, n32(kBackend));
    EXPECT_EQ(m.innerSrcPort, n16(61000));
    EXPECT_EQ(m.innerDstPort, n16(443));
    EXPECT_EQ(m.srcPort, 0);  // no identifier on error messages
  }
}

TEST(Parse, IcmpErrorQuotingUdpWithOptionsAndVlan) {
  Ip in;
  in.proto = IPPROTO_UDP;
  in.src = kClient;
  in.dst = kVip;
  in.optWords = 2;
  auto q = ipv4(in, udp(5000, 53, 40));  // the whole datagram quoted
  auto f = icmpErrorFrame(3, 3, q, true);
  PacketMeta m;
  ASSERT_EQ(parse(f, m), DropReason::kNone);
  ASSERT_TRUE(m.icmpError);
  EXPECT_TRUE(m.hasVlan);
  EXPECT_EQ(m.innerL3Off, 18 + 20 + 8);
  EXPECT_EQ(m.innerL4Off, 18 + 20 + 8 + 28);
  EXPECT_EQ(m.innerL4Avail, 48);
  EXPECT_EQ(m.innerProto, IPPROTO_UDP);
  EXPECT_EQ(m.innerSrcIp, n32(kClient));
  EXPECT_EQ(m.innerDstIp, n32(kVip));
  EXPECT_EQ(m.innerSrcPort, n16(5000));
  EXPECT_EQ(m.innerDstPort, n16(53));
}

TEST(Parse, IcmpErrorWithUntranslatableQuote) {
  PacketMeta m;
  auto expectPlain = [&](const Bytes& quote, const char* what) {
    auto f = icmpErrorFrame(11, 0, quote);
    ASSERT_EQ(parse(f, m), DropReason::kNone) << what;
    EXPECT_FALSE(m.icmpError) << what;
    EXPECT_EQ(m.icmpType, 11) << what;
    EXPECT_EQ(m.innerL3Off, 0) << what;
    EXPECT_EQ(m.innerProto, 0) << what;
    EXPECT_EQ(m.innerSrcPort, 0) << what;
  };
  expectPlain({}, "nothing quoted");
  expectPlain(quotedTcp(0, 7), "7 bytes of quoted TCP");
  {
    auto q = quotedTcp();
    q.resize(19);
    expectPlain(q, "19 bytes of quoted IPv4");
  }
  {
    auto q = quotedTcp();
    q[0] = 0x44;  // IHL 4
    expectPlain(q, "quoted IHL below 5");
  }
  {
    auto q = quotedTcp(0, 8);
    q[0] = 0x4f;  // IHL 15: 60 bytes, only 28 present
    expectPlain(q, "quoted IHL beyond the quote");
  }
  {
    auto q = quotedTcp();
    q[0] = 0x65;
    expectPlain(q, "quoted version 6");
  }
  {
    Ip in;
    in.proto = IPPROTO_ICMP;
    expectPlain(ipv4(in, icmp(8, 0, 1, 1)), "quoted ICMP");
  }
  {
    auto q = quotedTcp();
    q[6] = 0x00;
    q[7] = 0x10;  // fragment offset 16: no L4 header there
    expectPlain(q, "quoted non-first fragment");
  }
  {
    // Quote bytes present in the frame but beyond the outer total length
    // (padding) must not be used.
    auto f = icmpErrorFrame(3, 1, quotedTcp(0, 4));
    f.insert(f.end(), 4, 0x77);
    ASSERT_EQ(parse(f, m), DropReason::kNone);
    EXPECT_FALSE(m.icmpError);
  }
  // A quoted first fragment (MF set, offset 0) still has its ports.
  auto q = quotedTcp();
  q[6] = 0x20;
  q[7] = 0x00;
  ASSERT_EQ(parse(icmpErrorFrame(3, 4, q), m), DropReason::kNone);
  EXPECT_TRUE(m.icmpError);
}

TEST(Parse, Vlan) {
  auto f = ipFrame(Ip{}, tcp(40000, 80, 0x10), true);
  PacketMeta m;
  ASSERT_EQ(parse(f, m), DropReason::kNone);
  EXPECT_TRUE(m.hasVlan);
  EXPECT_EQ(m.vlanTci, 0x2064);
  EXPECT_EQ(m.etherType, 0x0800);
  EXPECT_EQ(m.l3Off, 18);
  EXPECT_EQ(m.l4Off, 38);
  EXPECT_EQ(m.srcPort, n16(40000));
  // A frame that ends inside the tag.
  f.resize(16);
  EXPECT_EQ(parse(f, m), DropReason::kMalformed);
}

TEST(Parse, SecondVlanTagIsOther) {
  auto f = cat(ether(0x8100, true, 5), ipv4(Ip{}, tcp(1, 2, 0x10)));
  PacketMeta m;
  ASSERT_EQ(parse(f, m), DropReason::kNone);
  EXPECT_EQ(m.l3, L3Kind::kOther);
  EXPECT_EQ(m.etherType, 0x8100);
}

TEST(Parse, IpOptions) {
  for (uint8_t words = 1; words <= 10; ++words) {
    Ip ip;
    ip.optWords = words;
    auto f = ipFrame(ip, tcp(1, 2, 0x10));
    PacketMeta m;
    ASSERT_EQ(parse(f, m), DropReason::kNone) << int(words);
    EXPECT_EQ(m.ipHdrLen, 20 + 4 * words);
    EXPECT_EQ(m.l4Off, 14 + 20 + 4 * words);
    EXPECT_EQ(m.l4Len, 20);
    EXPECT_EQ(m.srcPort, n16(1));
  }
}

TEST(Parse, BadIhlAndVersion) {
  PacketMeta m;
  for (int ihl = 0; ihl < 5; ++ihl) {
    Ip ip;
    ip.ihlOverride = ihl;
    EXPECT_EQ(parse(ipFrame(ip, tcp(1, 2, 0x10)), m), DropReason::kMalformed) << ihl;
  }
  {
    // IHL 15 (60 bytes) with only 20 bytes present and the total length
    // consistent with what is there.
    Ip ip;
    ip.ihlOverride = 15;
    auto f = ipFrame(ip, {});
    EXPECT_EQ(parse(f, m), DropReason::kMalformed);
  }
  {
    // IHL larger than the total length but within the frame.
    Ip ip;
    ip.ihlOverride = 10;
    EXPECT_EQ(parse(ipFrame(ip, tcp(1, 2, 0x10)), m), DropReason::kMalformed);
  }
  Ip ip;
  ip.version = 6;
  EXPECT_EQ(parse(ipFrame(ip, tcp(1, 2, 0x10)), m), DropReason::kMalformed);
}

TEST(Parse, TotalLength) {
  PacketMeta m;
  Ip ip;
  ip.totalAdjust = 1;  // one byte more than present
  EXPECT_EQ(parse(ipFrame(ip, tcp(1, 2, 0x10)), m), DropReason::kMalformed);
  ip.totalAdjust = -21;  // below the header length
  EXPECT_EQ(parse(ipFrame(ip, tcp(1, 2, 0x10)), m), DropReason::kMalformed);
  ip.totalAdjust = -40;  // zero
  EXPECT_EQ(parse(ipFrame(ip, tcp(1, 2, 0x10)), m), DropReason::kMalformed);

  // Ethernet padding beyond the total length is fine and not part of L4.
  Ip u;
  u.proto = IPPROTO_UDP;
  auto f = ipFrame(u, udp(1, 2, 1));
  ASSERT_EQ(f.size(), 14u + 20 + 9);
  f.resize(60, 0);
  ASSERT_EQ(parse(f, m), DropReason::kNone);
  EXPECT_EQ(m.ipTotalLen, 29);
  EXPECT_EQ(m.l4Len, 9);
}

TEST(Parse, Fragments) {
  PacketMeta m;
  for (uint16_t frag : {uint16_t(0x2000), uint16_t(0x0001), uint16_t(0x2010), uint16_t(0x1fff),
                        uint16_t(0x6000)}) {
    Ip ip;
    ip.frag = frag;
    EXPECT_EQ(parse(ipFrame(ip, tcp(1, 2, 0x10)), m), DropReason::kIpFragment) << std::hex << frag;
    EXPECT_EQ(m.l3, L3Kind::kIpv4);
    EXPECT_EQ(m.srcIp, n32(kClient));
  }
  // DF alone, and no flags at all, are not fragments.
  for (uint16_t frag : {uint16_t(0x4000), uint16_t(0x0000)}) {
    Ip ip;
    ip.frag = frag;
    EXPECT_EQ(parse(ipFrame(ip, tcp(1, 2, 0x10)), m), DropReason::kNone);
  }
  // A non-first fragment need not carry a valid L4 header.
  Ip ip;
  ip.frag = 0x0002;
  EXPECT_EQ(parse(ipFrame(ip, Bytes(3, 0)), m), DropReason::kIpFragment);
}

TEST(Parse, UnsupportedProtocol) {
  PacketMeta m;
  for (uint8_t proto : {uint8_t(47), uint8_t(50), uint8_t(132), uint8_t(41)}) {
    Ip ip;
    ip.proto = proto;
    EXPECT_EQ(parse(ipFrame(ip, Bytes(24, 0)), m), DropReason::kUnsupportedProtocol) << int(proto);
  }
}

TEST(Parse, Arp) {
  PacketMeta m;
  auto f = arpFrame();
  ASSERT_EQ(f.size(), 42u);
  ASSERT_EQ(parse(f, m), DropReason::kNone);
  EXPECT_EQ(m.l3, L3Kind::kArp);
  EXPECT_EQ(m.etherType, 0x0806);
  EXPECT_EQ(m.l3Off, 14);
  // Padded to the Ethernet minimum.
  f.resize(60, 0);
  EXPECT_EQ(parse(f, m), DropReason::kNone);
  // In a VLAN.
  auto arpBody = arpFrame();
  arpBody.erase(arpBody.begin(), arpBody.begin() + 14);
  auto v = cat(ether(0x0806, true, 7), arpBody);
  ASSERT_EQ(parse(v, m), DropReason::kNone);
  EXPECT_EQ(m.l3, L3Kind::kArp);
  EXPECT_EQ(m.l3Off, 18);
  // Address sizes other than Ethernet/IPv4 do not fit rte_arp_hdr.
  EXPECT_EQ(parse(arpFrame(8, 4), m), DropReason::kMalformed);
  EXPECT_EQ(parse(arpFrame(6, 16), m), DropReason::kMalformed);
  EXPECT_EQ(parse(arpFrame(6, 4, 0x86dd), m), DropReason::kMalformed);
}

TEST(Parse, OtherEtherTypes) {
  PacketMeta m;
  for (uint16_t et : {uint16_t(0x86dd), uint16_t(0x88cc), uint16_t(0x88a8), uint16_t(0x0000)}) {
    auto f = ether(et);
    f.resize(60, 0);
    ASSERT_EQ(parse(f, m), DropReason::kNone) << std::hex << et;
    EXPECT_EQ(m.l3, L3Kind::kOther);
    EXPECT_EQ(m.etherType, et);
  }
}

TEST(Parse, RuntFrames) {
  PacketMeta m;
  auto f = ether(0x0800);
  for (std::size_t len = 0; len < 14; ++len) EXPECT_EQ(parseExact(f, len, m), DropReason::kMalformed) << len;
  EXPECT_EQ(sd::parsePacket(nullptr, nullptr, m), DropReason::kMalformed);
  // `end` before `data` is treated as empty, never as a huge length.
  uint8_t buf[64] = {};
  EXPECT_EQ(sd::parsePacket(buf + 32, buf, m), DropReason::kMalformed);
}

TEST(Parse, ResetsMetaEachCall) {
  PacketMeta m;
  ASSERT_EQ(parse(icmpErrorFrame(3, 4, quotedTcp(), true), m), DropReason::kNone);
  ASSERT_TRUE(m.icmpError);
  ASSERT_EQ(parse(arpFrame(), m), DropReason::kNone);
  PacketMeta fresh;
  fresh.l3 = L3Kind::kArp;
  fresh.etherType = 0x0806;
  fresh.l3Off = 14;
  EXPECT_TRUE(sameMeta(m, fresh)) << "stale fields left from the previous packet";
}

namespace {

std::vector<Bytes> validFrames() {
  Ip tcpIp;
  Ip udpIp;
  udpIp.proto = IPPROTO_UDP;
  Ip icmpIp;
  icmpIp.proto = IPPROTO_ICMP;
  Ip optIp;
  optIp.optWords = 3;
  Ip udpQuote;
  udpQuote.proto = IPPROTO_UDP;
  udpQuote.optWords = 1;
  return {
      ipFrame(tcpIp, tcp(40000, 80, 0x02, 2, 5)),
      ipFrame(tcpIp, tcp(40000, 80, 0x02), true),
      ipFrame(optIp, tcp(1, 2, 0x11, 1, 3)),
      ipFrame(udpIp, udp(5353, 53, 7)),
      ipFrame(udpIp, udp(5353, 53, 0), true),
      ipFrame(icmpIp, icmp(8, 0, 9, 9, Bytes(12, 3))),
      icmpErrorFrame(3, 4, quotedTcp()),
      icmpErrorFrame(11, 0, quotedTcp(2, 20), true),
      icmpErrorFrame(3, 3, ipv4(udpQuote, udp(1, 2, 10))),
  };
}

}  // namespace

TEST(Parse, EveryTruncationPointIsMalformed) {
  // Every strict prefix of a valid IPv4 frame cuts into a header or into the
  // IPv4 total length, so each must be rejected, and never read past its end.
  for (const auto& f : validFrames()) {
    PacketMeta full;
    ASSERT_EQ(parse(f, full), DropReason::kNone);
    for (std::size_t len = 0; len < f.size(); ++len) {
      PacketMeta m;
      ASSERT_EQ(parseExact(f, len, m), DropReason::kMalformed) << "prefix " << len << " of " << f.size();
    }
  }
  auto arp = arpFrame();
  for (std::size_t len = 0; len < arp.size(); ++len) {
    PacketMeta m;
    ASSERT_EQ(parseExact(arp, len, m), DropReason::kMalformed) << len;
  }
}

TEST(Parse, PaddingDoesNotChangeTheResult) {
  for (const auto& f : validFrames()) {
    PacketMeta a, b;
    ASSERT_EQ(parse(f, a), DropReason::kNone);
    auto padded = f;
    padded.resize(f.size() + 17, 0xee);
    ASSERT_EQ(parse(padded, b), DropReason::kNone);
    EXPECT_TRUE(sameMeta(a, b));
  }
}

TEST(Parse, RandomMutationsKeepInvariants) {
  // Random byte flips of valid frames: whatever the verdict, nothing is read
  // past the end (ASan builds) and every accepted packet's offsets lie
  // inside the frame.
  std::mt19937 rng(42);
  auto frames = validFrames();
  for (int iter = 0; iter < 20000; ++iter) {
    Bytes f = frames[rng() % frames.size()];
    int flips = 1 + rng() % 4;
    for (int i = 0; i < flips; ++i) f[rng() % f.size()] = static_cast<uint8_t>(rng());
    std::size_t len = (rng() % 4 == 0) ? rng() % (f.size() + 1) : f.size();
    PacketMeta m;
    DropReason r = parseExact(f, len, m);
    if (r != DropReason::kNone || m.l3 != L3Kind::kIpv4) continue;
    ASSERT_LE(m.l3Off + m.ipTotalLen, len);
    ASSERT_EQ(m.l4Off, m.l3Off + m.ipHdrLen);
    ASSERT_EQ(m.l4Len, m.ipTotalLen - m.ipHdrLen);
    if (m.l4Proto == IPPROTO_TCP) {
      ASSERT_LE(m.tcpHdrLen, m.l4Len);
    }
    if (m.icmpError) {
      ASSERT_GE(m.innerL4Avail, 8);
      ASSERT_LE(m.innerL4Off + m.innerL4Avail, m.l3Off + m.ipTotalLen);
      ASSERT_GT(m.innerL4Off, m.innerL3Off);
    }
  }
}

TEST(Parse, CommonShapeStepAgreesWithTheFullParser) {
  // parsePacket's inline step for untagged IPv4/TCP/UDP frames must decide
  // every frame it accepts exactly as the general parser does, field for
  // field; frames it declines go to the general parser. Random mutations
  // of valid frames (flags, lengths, IHL, fragment bits, EtherType, data
  // offset), some truncated, from a buffer of exactly the frame's size.
  std::mt19937 rng(7);
  auto frames = validFrames();
  int accepted = 0;
  for (int iter = 0; iter < 40000; ++iter) {
    Bytes f = frames[rng() % frames.size()];
    const int flips = static_cast<int>(rng() % 4);
    for (int i = 0; i < flips; ++i) {
      // Mostly the header bytes the step looks at.
      const std::size_t at = rng() % 2 ? 12 + rng() % std::min<std::size_t>(f.size() - 12, 34) : rng() % f.size();
      f[at] = static_cast<uint8_t>(rng());
    }
    const std::size_t len = (rng() % 4 == 0) ? rng() % (f.size() + 1) : f.size();
    std::unique_ptr<uint8_t[]> buf(new uint8_t[len == 0 ? 1 : len]);
    if (len) std::memcpy(buf.get(), f.data(), len);
    PacketMeta fast;
    if (!sd::parseCommonV4(buf.get(), buf.get() + len, fast)) continue;
    ++accepted;
    PacketMeta full;
    ASSERT_EQ(sd::parsePacketFull(buf.get(), buf.get() + len, full), DropReason::kNone) << "iteration " << iter;
    ASSERT_TRUE(sameMeta(fast, full)) << "iteration " << iter;
  }
  // The mutations leave many frames in the common shape.
  EXPECT_GT(accepted, 2000);
}

TEST(Parse, CommonShapeStepDeclinesWhatItDoesNotHandle) {
  PacketMeta m;
  Ip opt;
  opt.optWords = 1;
  Ip icmpIp;
  icmpIp.proto = IPPROTO_ICMP;
  for (const Bytes& f : {ipFrame(Ip{}, tcp(1, 2, 0x10), true), ipFrame(opt, tcp(1, 2, 0x10)),
                         ipFrame(icmpIp, icmp(8, 0, 9, 9, Bytes(12, 3))), arpFrame()}) {
    EXPECT_FALSE(sd::parseCommonV4(f.data(), f.data() + f.size(), m));
    EXPECT_EQ(sd::parsePacket(f.data(), f.data() + f.size(), m), DropReason::kNone);
  }
  Bytes plain = ipFrame(Ip{}, tcp(1, 2, 0x10));
  EXPECT_TRUE(sd::parseCommonV4(plain.data(), plain.data() + plain.size(), m));
  Bytes frag = plain;
  frag[14 + 6] = 0x20;  // more fragments
  EXPECT_FALSE(sd::parseCommonV4(frag.data(), frag.data() + frag.size(), m));
  EXPECT_EQ(sd::parsePacket(frag.data(), frag.data() + frag.size(), m), DropReason::kIpFragment);
}
