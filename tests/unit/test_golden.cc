// Golden-packet test of the NAT core: replays the Scapy-generated cases of
// tests/fixtures/golden/cases.json (written by tests/fixtures/gen_golden.py)
// through one NatCore, in the index's order, and compares each output with
// the expected bytes exactly. Scapy computed every expected checksum from
// scratch, so this checks the incremental updates against an independent
// implementation. The snapshot built here mirrors the one described in
// gen_golden.py (and repeated in the index, which is checked against it).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <cctype>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "dataplane/flow_table.h"
#include "dataplane/maglev.h"
#include "dataplane/nat.h"
#include "dataplane/port_alloc.h"
#include "dataplane/snat_pools.h"
#include "strait/counters.h"
#include "strait/snapshot.h"

namespace strait::dataplane {
namespace {

using Bytes = std::vector<uint8_t>;
using nlohmann::json;

const std::string kDir = std::string(STRAIT_SOURCE_ROOT) + "/tests/fixtures/golden/";

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Bytes readHex(const std::string& file) {
  const std::string text = slurp(kDir + file);
  std::string hex;
  for (char c : text)
    if (!std::isspace(static_cast<unsigned char>(c))) hex.push_back(c);
  if (hex.size() % 2) throw std::runtime_error(file + ": odd number of hex digits");
  Bytes out;
  for (std::size_t i = 0; i < hex.size(); i += 2)
    out.push_back(static_cast<uint8_t>(std::stoul(hex.substr(i, 2), nullptr, 16)));
  return out;
}

std::string toHex(const Bytes& b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t x : b) {
    s.push_back(d[x >> 4]);
    s.push_back(d[x & 15]);
  }
  return s;
}

uint32_t addr(const char* dotted) {
  in_addr a{};
  EXPECT_EQ(inet_pton(AF_INET, dotted, &a), 1) << dotted;
  return a.s_addr;  // network order
}

Action actionOf(const std::string& s) {
  if (s == "forward") return Action::kForward;
  if (s == "local") return Action::kLocal;
  if (s == "drop") return Action::kDrop;
  if (s == "handoff") return Action::kHandoff;
  if (s == "to_control") return Action::kToControl;
  throw std::runtime_error("unknown action " + s);
}

// The snapshot of gen_golden.py: web 192.0.2.10:80/tcp -> 203.0.113.11:80
// (MSS clamp 1360), dns 192.0.2.10:53/udp -> 203.0.113.12:53, both with
// SNAT 192.0.2.10; the interface address is 192.0.2.10 too.
constexpr uint16_t kPort = 40000;
constexpr uint16_t kMssClamp = 1360;

Snapshot goldenSnapshot() {
  Snapshot s;
  s.generation = 1;
  auto service = [](const char* name, uint16_t slot, uint16_t port, uint8_t proto, uint16_t mss,
                    const char* backendIp, uint16_t backendPort, uint16_t backendSlot) {
    ServiceView v;
    v.name = name;
    v.slot = slot;
    v.vip = addr("192.0.2.10");
    v.port = htons(port);
    v.proto = proto;
    v.mssClamp = mss;
    v.snatIps = {addr("192.0.2.10")};
    BackendView b;
    b.ip = addr(backendIp);
    b.port = htons(backendPort);
    b.slot = backendSlot;
    v.backends = {b};
    std::vector<MaglevBackend> mb{MaglevBackend{b.ip, b.port, 1}};
    v.maglev = buildMaglev(mb);
    return v;
  };
  s.services = {service("web", 1, 80, IPPROTO_TCP, kMssClamp, "203.0.113.11", 80, 1),
                service("dns", 2, 53, IPPROTO_UDP, 0, "203.0.113.12", 53, 2)};
  s.buildIndexes({addr("192.0.2.10")});
  return s;
}

class GoldenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mp_ = rte_pktmbuf_pool_create("golden_pool", 255, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    ASSERT_NE(mp_, nullptr);
    FlowTable::Params fp;
    fp.capacity = 64;
    fp.name = "golden_flows";
    ft_ = std::make_unique<FlowTable>(fp);
    PortAllocator::Params pp;
    pp.portMin = pp.portMax = kPort;
    pa_ = std::make_unique<PortAllocator>(pp);
    counters_ = std::make_unique<WorkerCounters>();
    NatCore::Deps d;
    d.flows = ft_.get();
    d.ports = pa_.get();
    d.counters = counters_.get();
    nat_ = std::make_unique<NatCore>(d);
    index_ = json::parse(slurp(kDir + "cases.json"));
  }
  void TearDown() override {
    nat_.reset();
    ft_.reset();
    pa_.reset();
    rte_mempool_free(mp_);
  }

  rte_mempool* mp_ = nullptr;
  std::unique_ptr<FlowTable> ft_;
  std::unique_ptr<PortAllocator> pa_;
  std::unique_ptr<WorkerCounters> counters_;
  std::unique_ptr<NatCore> nat_;
  json index_;
};

TEST_F(GoldenTest, IndexDescribesTheSnapshotBuiltHere) {
  const json& s = index_.at("snapshot");
  EXPECT_EQ(s.at("interface_ips"), json::array({"192.0.2.10"}));
  EXPECT_EQ(s.at("port_range"), json::array({kPort, kPort}));
  const json& svcs = s.at("services");
  ASSERT_EQ(svcs.size(), 2u);
  EXPECT_EQ(svcs[0].at("listen"), "192.0.2.10:80");
  EXPECT_EQ(svcs[0].at("protocol"), "tcp");
  EXPECT_EQ(svcs[0].at("mss_clamp"), kMssClamp);
  EXPECT_EQ(svcs[0].at("snat"), json::array({"192.0.2.10"}));
  EXPECT_EQ(svcs[0].at("backends")[0].at("address"), "203.0.113.11:80");
  EXPECT_EQ(svcs[1].at("listen"), "192.0.2.10:53");
  EXPECT_EQ(svcs[1].at("protocol"), "udp");
  EXPECT_EQ(svcs[1].at("backends")[0].at("address"), "203.0.113.12:53");
}

TEST_F(GoldenTest, CasesMatchScapyByteForByte) {
  Snapshot snap = goldenSnapshot();
  SnatPools pools(SnatPools::Params{{pa_.get()}, {}, {}});
  ASSERT_EQ(pools.prepare(snap), 0u);
  const json& cases = index_.at("cases");
  ASSERT_GE(cases.size(), 10u);
  std::size_t forwarded = 0, local = 0, dropped = 0;
  for (const json& c : cases) {
    const std::string name = c.at("name");
    SCOPED_TRACE(name);
    const Bytes in = readHex(c.at("input"));
    const Action want = actionOf(c.at("action"));
    const std::string reason = c.at("reason");
    const std::size_t l3 = c.at("l3_offset");

    rte_mbuf* m = rte_pktmbuf_alloc(mp_);
    ASSERT_NE(m, nullptr);
    char* p = rte_pktmbuf_append(m, static_cast<uint16_t>(in.size()));
    ASSERT_NE(p, nullptr);
    std::memcpy(p, in.data(), in.size());
    Verdict v;
    nat_->process(&m, 1, snap, c.at("now_ms"), &v);
    const uint8_t* d = rte_pktmbuf_mtod(m, const uint8_t*);
    const Bytes out(d, d + rte_pktmbuf_data_len(m));
    rte_pktmbuf_free(m);

    EXPECT_EQ(v.action, want);
    EXPECT_EQ(std::string(dropReasonName(v.reason)), reason);
    if (want == Action::kDrop) {
      ++dropped;
      EXPECT_FALSE(c.contains("expected"));
      continue;
    }
    const Bytes exp = readHex(c.at("expected"));
    if (want == Action::kForward) {
      ++forwarded;
      // Ethernet (and any VLAN tag) is the output stage's; compare IPv4 on.
      ASSERT_LE(l3, out.size());
      EXPECT_EQ(toHex(Bytes(out.begin() + static_cast<std::ptrdiff_t>(l3), out.end())), toHex(exp));
      // The frame's Ethernet part was left as it came in.
      EXPECT_EQ(toHex(Bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(l3))),
                toHex(Bytes(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(l3))));
    } else {
      ++local;
      EXPECT_EQ(toHex(out), toHex(exp));
    }
  }
  EXPECT_GT(forwarded, 0u);
  EXPECT_GT(local, 0u);
  EXPECT_GT(dropped, 0u);
  // The replay created exactly the TCP and the UDP flow.
  EXPECT_EQ(ft_->size(), 2u);
  EXPECT_EQ(counters_->flowsCreated, 2u);
  EXPECT_EQ(counters_->mssClamped, 2u);
  EXPECT_EQ(counters_->icmpErrorsTranslated, 2u);
  EXPECT_EQ(counters_->icmpEchoReplies, 1u);
}

}  // namespace
}  // namespace strait::dataplane
