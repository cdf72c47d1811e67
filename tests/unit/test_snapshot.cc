// Unit tests for LbState and the snapshot builder: slot assignment and
// stability, slot reuse only after a removed backend has drained (and its
// removal was seen by every worker), weights, health and fail-open in the
// Maglev table, draining and flushed backends, DNS-named backends, removed
// services, the snapshot's lookup indexes, the Maglev cache, and the
// running configuration rendered back to TOML.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>

#include "controlplane/snapshot_builder.h"
#include "controlplane/state.h"
#include "dataplane/maglev.h"

namespace strait::controlplane {
namespace {

constexpr uint32_t kIface = 0xc000020a;  // 192.0.2.10
constexpr uint32_t kVip2 = 0xc0000214;   // 192.0.2.20

uint32_t ip(const char* s) { return *parseIpv4(s); }

Config baseConfig(const std::string& services) {
  return parseConfig(R"(
[[interface]]
port = "p0"
address = "192.0.2.10/24"
gateway = "192.0.2.1"
)" + services,
                     "test.toml");
}

const char* const kTwoServices = R"(
[[service]]
name = "web"
listen = "192.0.2.10:80"
backends = ["203.0.113.11:80", "203.0.113.12:80", "203.0.113.13:80"]
maglev_size = 65537

[[service]]
name = "dns"
listen = "192.0.2.20:53"
protocol = "udp"
snat = ["192.0.2.21", "192.0.2.22"]
backends = ["198.51.100.53:53"]
maglev_size = 251
)";

const Backend& backend(const LbState& st, const std::string& svc, const char* addr) {
  const auto [i, p] = parseEndpoint(addr);
  const Backend* b = st.findService(svc)->findBackend(i, p);
  if (!b) throw std::runtime_error(std::string("no backend ") + addr);
  return *b;
}

const ServiceView& view(const Snapshot& s, const std::string& name) {
  for (const auto& v : s.services)
    if (v.name == name) return v;
  throw std::runtime_error("no service view " + name);
}

// Maglev entries per backend address ("ip:port").
std::map<std::string, std::size_t> shares(const ServiceView& v) {
  std::map<std::string, std::size_t> m;
  for (uint16_t e : v.maglev) {
    if (e == dataplane::kMaglevNone) {
      m["none"]++;
      continue;
    }
    const BackendView& b = v.backends.at(e);
    m[formatEndpoint(ntohl(b.ip), ntohs(b.port))]++;
  }
  return m;
}

BackendConfig be(const char* s, uint32_t weight = 1) {
  BackendConfig b = parseBackend(s);
  b.weight = weight;
  return b;
}

std::size_t reapAll(LbState& st, uint64_t gen) {
  st.notePublished(gen);
  return st.reap([](uint16_t) { return uint64_t{0}; }, gen);
}

TEST(LbState, SlotsAssignedInConfigOrder) {
  LbState st;
  st.fromConfig(baseConfig(kTwoServices));
  ASSERT_EQ(st.services().size(), 2u);
  EXPECT_EQ(st.findService("web")->slot, 0);
  EXPECT_EQ(st.findService("dns")->slot, 1);
  EXPECT_EQ(backend(st, "web", "203.0.113.11:80").slot, 0);
  EXPECT_EQ(backend(st, "web", "203.0.113.12:80").slot, 1);
  EXPECT_EQ(backend(st, "web", "203.0.113.13:80").slot, 2);
  EXPECT_EQ(backend(st, "dns", "198.51.100.53:53").slot, 3);
  EXPECT_EQ(st.freeBackendSlots(), kMaxBackendSlots - 4);
  EXPECT_EQ(st.freeServiceSlots(), kMaxServiceSlots - 2);
  EXPECT_TRUE(backend(st, "web", "203.0.113.11:80").up) << "backends start up";
}

TEST(LbState, SlotsStableAcrossChanges) {
  LbState st;
  st.fromConfig(baseConfig(kTwoServices));
  st.addBackend("web", be("203.0.113.14:80"));
  EXPECT_EQ(backend(st, "web", "203.0.113.14:80").slot, 4);
  st.setWeight("web", be("203.0.113.12:80"), 5);
  st.setHealth("web", ip("203.0.113.11"), 80, false);
  st.removeBackend("web", be("203.0.113.13:80"), false);
  st.addService([] {
    ServiceConfig s;
    s.name = "extra";
    s.vip = kVip2;
    s.port = 8080;
    s.proto = IPPROTO_TCP;
    return s;
  }());
  EXPECT_EQ(backend(st, "web", "203.0.113.11:80").slot, 0);
  EXPECT_EQ(backend(st, "web", "203.0.113.12:80").slot, 1);
  EXPECT_EQ(backend(st, "web", "203.0.113.13:80").slot, 2) << "a draining backend keeps its slot";
  EXPECT_EQ(backend(st, "web", "203.0.113.14:80").slot, 4);
  EXPECT_EQ(backend(st, "dns", "198.51.100.53:53").slot, 3);
  EXPECT_EQ(st.findService("web")->slot, 0);
  EXPECT_EQ(st.findService("dns")->slot, 1);
  EXPECT_EQ(st.findService("extra")->slot, 2);

  // The snapshot carries the same slots.
  const auto snap = buildSnapshot(st, 7);
  EXPECT_EQ(snap->generation, 7u);
  std::set<uint16_t> slots;
  for (const auto& b : view(*snap, "web").backends) slots.insert(b.slot);
  EXPECT_EQ(slots, (std::set<uint16_t>{0, 1, 2, 4}));
  EXPECT_EQ(snap->serviceBySlot(1)->name, "dns");
}

TEST(LbState, SlotReusedOnlyAfterDrainAndGeneration) {
  LbState st;
  st.fromConfig(baseConfig(kTwoServices));
  st.removeBackend("web", be("203.0.113.12:80"), false);
  const std::size_t freeBefore = st.freeBackendSlots();
  uint64_t active = 3;
  const auto flows = [&](uint16_t slot) { return slot == 1 ? active : uint64_t{0}; };

  // Not published yet: the removal may not have reached the workers.
  EXPECT_EQ(st.reap(flows, 100), 0u);
  active = 0;
  EXPECT_EQ(st.reap(flows, 100), 0u) << "no release generation stamped yet";
  st.notePublished(10);
  EXPECT_EQ(st.reap(flows, 9), 0u) << "a worker still runs a snapshot from before the removal";
  active = 2;
  EXPECT_EQ(st.reap(flows, 10), 0u) << "flows still active";
  EXPECT_EQ(st.freeBackendSlots(), freeBefore);
  ASSERT_EQ(st.findService("web")->draining.size(), 1u);
  st.notePublished(11);  // idempotent: does not move the stamp
  EXPECT_EQ(st.findService("web")->draining[0].releaseGeneration, 10u);
  active = 0;
  EXPECT_EQ(st.reap(flows, 10), 1u);
  EXPECT_EQ(st.freeBackendSlots(), freeBefore + 1);
  EXPECT_TRUE(st.findService("web")->draining.empty());
  // Freed slots go to the tail: the next backend gets a never-used slot.
  st.addBackend("web", be("203.0.113.99:80"));
  EXPECT_EQ(backend(st, "web", "203.0.113.99:80").slot, 4);
}

TEST(LbState, SlotExhaustionAndReuseAfterDrain) {
  // Fill every backend slot, then show that a removed backend's slot is
  // not handed out while it drains, and is once it has drained.
  std::string backends;
  for (uint32_t i = 0; i < kMaxBackendSlots - 1; ++i)
    backends += "\"" + formatEndpoint(0xcb007100u + (i >> 8 << 16) + (i & 0xff), 80) + "\",";
  LbState st;
  st.fromConfig(
      baseConfig("[[service]]\nname = \"big\"\nlisten = \"192.0.2.10:80\"\nbackends = [" + backends + "]\n"));
  EXPECT_EQ(st.freeBackendSlots(), 1u);
  st.addBackend("big", be("198.51.100.1:80"));
  EXPECT_EQ(st.freeBackendSlots(), 0u);
  const uint16_t slot = backend(st, "big", "203.0.113.5:80").slot;
  st.removeBackend("big", be("203.0.113.5:80"), false);
  try {
    st.addBackend("big", be("198.51.100.2:80"));
    ADD_FAILURE() << "a draining backend's slot was reused";
  } catch (const StateError& e) {
    EXPECT_NE(std::string(e.what()).find("no free backend slot"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(st.findService("big")->findBackend(ip("198.51.100.2"), 80)) << "failed add left no trace";
  EXPECT_EQ(reapAll(st, 3), 1u);
  st.addBackend("big", be("198.51.100.2:80"));
  EXPECT_EQ(backend(st, "big", "198.51.100.2:80").slot, slot);
}

TEST(LbState, ReaddWhileDrainingKeepsSlot) {
  LbState st;
  st.fromConfig(baseConfig(kTwoServices));
  st.removeBackend("web", be("203.0.113.12:80"), false);
  st.notePublished(4);
  st.addBackend("web", be("203.0.113.12:80", 2));
  const Backend& b = backend(st, "web", "203.0.113.12:80");
  EXPECT_EQ(b.slot, 1);
  EXPECT_EQ(b.phase, BackendPhase::kActive);
  EXPECT_EQ(b.weight, 2u);
  EXPECT_EQ(b.releaseGeneration, 0u);
  EXPECT_TRUE(st.findService("web")->draining.empty());
}

TEST(LbState, ReaddAfterFlushGetsNewSlot) {
  LbState st;
  st.fromConfig(baseConfig(kTwoServices));
  st.removeBackend("web", be("203.0.113.12:80"), true);
  st.addBackend("web", be("203.0.113.12:80"));
  const Service& s = *st.findService("web");
  ASSERT_EQ(s.draining.size(), 1u);
  EXPECT_EQ(s.draining[0].slot, 1);
  EXPECT_EQ(s.draining[0].phase, BackendPhase::kFlushing);
  EXPECT_EQ(s.backends.back().slot, 4)
      << "its flows are being dropped: the new backend must not share the slot";
  const auto snap = buildSnapshot(st, 1);
  EXPECT_TRUE(snap->flushedBackends.test(1));
  EXPECT_FALSE(snap->flushedBackends.test(4));
}

TEST(Snapshot, FieldsInNetworkOrder) {
  LbState st;
  st.fromConfig(baseConfig(kTwoServices));
  const auto snap = buildSnapshot(st, 1);
  ASSERT_EQ(snap->services.size(), 2u);
  const ServiceView& d = view(*snap, "dns");
  EXPECT_EQ(d.slot, 1);
  EXPECT_EQ(d.vip, htonl(kVip2));
  EXPECT_EQ(d.port, htons(53));
  EXPECT_EQ(d.proto, IPPROTO_UDP);
  EXPECT_EQ(d.snatIps, (std::vector<uint32_t>{htonl(ip("192.0.2.21")), htonl(ip("192.0.2.22"))}));
  ASSERT_EQ(d.backends.size(), 1u);
  EXPECT_EQ(d.backends[0].ip, htonl(ip("198.51.100.53")));
  EXPECT_EQ(d.backends[0].port, htons(53));
  EXPECT_EQ(d.maglev.size(), 251u);
  EXPECT_TRUE(std::all_of(d.maglev.begin(), d.maglev.end(), [](uint16_t e) { return e == 0; }));
  const ServiceView& w = view(*snap, "web");
  EXPECT_EQ(w.snatIps, (std::vector<uint32_t>{htonl(kIface)}));
  EXPECT_EQ(w.maglev.size(), 65537u);
  EXPECT_FALSE(w.failOpen);
}

TEST(Snapshot, IndexesFindServicesAndLocalAddresses) {
  LbState st;
  st.fromConfig(baseConfig(kTwoServices));
  const auto snap = buildSnapshot(st, 1);
  const ServiceView* web = snap->findService(htonl(kIface), htons(80), IPPROTO_TCP);
  ASSERT_NE(web, nullptr);
  EXPECT_EQ(web->name, "web");
  EXPECT_EQ(snap->findService(htonl(kIface), htons(80), IPPROTO_UDP), nullptr);
  EXPECT_EQ(snap->findService(htonl(kIface), htons(81), IPPROTO_TCP), nullptr);
  ASSERT_NE(snap->findService(htonl(kVip2), htons(53), IPPROTO_UDP), nullptr);
  EXPECT_EQ(snap->findService(htonl(kVip2), htons(53), IPPROTO_UDP)->name, "dns");

  EXPECT_EQ(snap->addrRoles(htonl(kIface)), kRoleInterface | kRoleVip | kRoleSnat);
  EXPECT_EQ(snap->addrRoles(htonl(kVip2)), kRoleVip);
  EXPECT_EQ(snap->addrRoles(htonl(ip("192.0.2.21"))), kRoleSnat);
  EXPECT_EQ(snap->addrRoles(htonl(ip("192.0.2.22"))), kRoleSnat);
  EXPECT_EQ(snap->addrRoles(htonl(ip("192.0.2.1"))), 0) << "the gateway is not ours";
  EXPECT_EQ(snap->addrRoles(htonl(ip("203.0.113.11"))), 0) << "backends are not ours";

  // A removed service's addresses stop being ours at once.
  st.removeService("dns");
  const auto after = buildSnapshot(st, 2);
  EXPECT_EQ(after->findService(htonl(kVip2), htons(53), IPPROTO_UDP), nullptr);
  EXPECT_EQ(after->addrRoles(htonl(kVip2)), 0);
  EXPECT_EQ(after->addrRoles(htonl(ip("192.0.2.21"))), 0);
  EXPECT_EQ(after->addrRoles(htonl(kIface)), kRoleInterface | kRoleVip | kRoleSnat);
}

TEST(Snapshot, WeightsShapeTheTableAndZeroDrains) {
  LbState st;
  st.fromConfig(baseConfig(kTwoServices));
  st.setWeight("web", be("203.0.113.11:80"), 3);
  auto snap = buildSnapshot(st, 1);
  auto m = shares(view(*snap, "web"));
  EXPECT_EQ(m.count("none"), 0u);
  const double ratio = double(m["203.0.113.11:80"]) / double(m["203.0.113.12:80"]);
  EXPECT_NEAR(ratio, 3.0, 0.3);
  EXPECT_NEAR(double(m["203.0.113.12:80"]) / double(m["203.0.113.13:80"]), 1.0, 0.1);

  st.setWeight("web", be("203.0.113.12:80"), 0);
  snap = buildSnapshot(st, 2);
  const ServiceView& w = view(*snap, "web");
  m = shares(w);
  EXPECT_EQ(m.count("203.0.113.12:80"), 0u) << "weight 0 takes no new flows";
  EXPECT_EQ(w.backends.size(), 3u) << "but stays listed";
  const auto it =
      std::find_if(w.backends.begin(), w.backends.end(), [](const BackendView& b) { return b.slot == 1; });
  ASSERT_NE(it, w.backends.end());
  EXPECT_EQ(it->weight, 0u);
  EXPECT_EQ(backend(st, "web", "203.0.113.12:80").phase, BackendPhase::kActive);
}

TEST(Snapshot, HealthDownLeavesTheTable) {
  LbState st;
  st.fromConfig(baseConfig(kTwoServices));
  EXPECT_TRUE(st.setHealth("web", ip("203.0.113.13"), 80, false));
  EXPECT_FALSE(st.setHealth("web", ip("203.0.113.13"), 80, false)) << "no change";
  EXPECT_FALSE(st.setHealth("web", ip("203.0.113.99"), 80, false)) << "unknown backend ignored";
  EXPECT_FALSE(st.setHealth("nope", ip("203.0.113.13"), 80, false)) << "unknown service ignored";
  auto snap = buildSnapshot(st, 1);
  const ServiceView& w = view(*snap, "web");
  auto m = shares(w);
  EXPECT_EQ(m.count("203.0.113.13:80"), 0u);
  EXPECT_EQ(m.count("none"), 0u);
  EXPECT_GT(m["203.0.113.11:80"], 30000u);
  EXPECT_FALSE(w.failOpen);
  const auto down =
      std::find_if(w.backends.begin(), w.backends.end(), [](const BackendView& b) { return b.slot == 2; });
  ASSERT_NE(down, w.backends.end());
  EXPECT_FALSE(down->up);

  EXPECT_TRUE(st.setHealth("web", ip("203.0.113.13"), 80, true));
  snap = buildSnapshot(st, 2);
  EXPECT_GT(shares(view(*snap, "web"))["203.0.113.13:80"], 20000u);
}

TEST(Snapshot, FailOpenWhenEveryBackendIsDown) {
  LbState st;
  st.fromConfig(baseConfig(kTwoServices));
  st.setWeight("web", be("203.0.113.13:80"), 0);
  st.setHealth("web", ip("203.0.113.11"), 80, false);
  st.setHealth("web", ip("203.0.113.12"), 80, false);
  EXPECT_TRUE(st.findService("web")->failOpen()) << "the weight-0 backend does not count";
  const auto snap = buildSnapshot(st, 1);
  const ServiceView& w = view(*snap, "web");
  EXPECT_TRUE(w.failOpen);
  const auto m = shares(w);
  EXPECT_GT(m.at("203.0.113.11:80"), 30000u);
  EXPECT_GT(m.at("203.0.113.12:80"), 30000u);
  EXPECT_EQ(m.count("203.0.113.13:80"), 0u) << "fail-open still honours weight 0";
  EXPECT_FALSE(view(*snap, "dns").failOpen);

  st.setHealth("web", ip("203.0.113.12"), 80, true);
  EXPECT_FALSE(st.findService("web")->failOpen());
  const auto m2 = shares(view(*buildSnapshot(st, 2), "web"));
  EXPECT_EQ(m2.at("203.0.113.12:80"), 65537u);
}

TEST(Snapshot, ServiceWithoutBackendsHasEmptyTable) {
  LbState st;
  st.fromConfig(baseConfig("[[service]]\nname = \"empty\"\nlisten = \"192.0.2.10:80\"\n"));
  auto snap = buildSnapshot(st, 1);
  EXPECT_TRUE(view(*snap, "empty").maglev.empty());
  EXPECT_FALSE(view(*snap, "empty").failOpen) << "no backends is not fail-open";
  st.addBackend("empty", be("203.0.113.1:80", 0));
  snap = buildSnapshot(st, 2);
  EXPECT_TRUE(view(*snap, "empty").maglev.empty()) << "only a weight-0 backend: nothing takes new flows";
  EXPECT_EQ(view(*snap, "empty").backends.size(), 1u);
}

TEST(Snapshot, DrainingBackendsListedButNotOffered) {
  LbState st;
  st.fromConfig(baseConfig(kTwoServices));
  st.removeBackend("web", be("203.0.113.12:80"), false);
  const Service& s = *st.findService("web");
  EXPECT_EQ(s.backends.size(), 2u);
  ASSERT_EQ(s.draining.size(), 1u);
  EXPECT_EQ(s.draining[0].phase, BackendPhase::kDraining);
  const auto snap = buildSnapshot(st, 1);
  const ServiceView& w = view(*snap, "web");
  ASSERT_EQ(w.backends.size(), 3u);
  EXPECT_EQ(w.backends[2].slot, 1);
  EXPECT_EQ(w.backends[2].weight, 0u);
  EXPECT_EQ(shares(w).count("203.0.113.12:80"), 0u);
  EXPECT_FALSE(snap->flushedBackends.test(1)) << "a plain remove lets flows finish";

  // Escalating to a flush, then draining completely.
  EXPECT_THROW(st.removeBackend("web", be("203.0.113.12:80"), false), StateError);
  st.removeBackend("web", be("203.0.113.12:80"), true);
  EXPECT_TRUE(buildSnapshot(st, 2)->flushedBackends.test(1));
  EXPECT_EQ(reapAll(st, 2), 1u);
  const auto done = buildSnapshot(st, 3);
  EXPECT_FALSE(done->flushedBackends.test(1)) << "the flush bit clears when the slot is freed";
  EXPECT_EQ(view(*done, "web").backends.size(), 2u);
}

TEST(Snapshot, RemovedServiceIsFlushed) {
  LbState st;
  st.fromConfig(baseConfig(kTwoServices));
  st.removeBackend("web", be("203.0.113.13:80"), false);  // draining before the service goes
  st.removeService("web");
  EXPECT_EQ(st.findService("web"), nullptr);
  ASSERT_EQ(st.retired().size(), 1u);
  auto snap = buildSnapshot(st, 5);
  EXPECT_EQ(snap->services.size(), 1u);
  for (uint16_t slot : {0, 1, 2}) EXPECT_TRUE(snap->flushedBackends.test(slot)) << slot;
  EXPECT_FALSE(snap->flushedBackends.test(3));
  EXPECT_EQ(st.freeServiceSlots(), kMaxServiceSlots - 2)
      << "the service slot is held while flows are flushed";

  // The name is free again at once; the slot only once the flows are gone.
  ServiceConfig again;
  again.name = "web";
  again.vip = kIface;
  again.port = 80;
  again.proto = IPPROTO_TCP;
  EXPECT_EQ(st.addService(again), 2);
  uint64_t active = 1;
  st.notePublished(5);
  EXPECT_EQ(st.reap([&](uint16_t s) { return s == 1 ? active : 0; }, 5), 2u)
      << "two of three backend slots freed";
  EXPECT_EQ(st.retired().size(), 1u);
  active = 0;
  EXPECT_EQ(st.reap([&](uint16_t s) { return s == 1 ? active : 0; }, 5), 2u)
      << "the last backend, then the service";
  EXPECT_TRUE(st.retired().empty());
  EXPECT_EQ(st.freeServiceSlots(), kMaxServiceSlots - 2) << "dns and the new web";
  snap = buildSnapshot(st, 6);
  EXPECT_TRUE(snap->flushedBackends.none());
  EXPECT_THROW(st.removeService("web-nope"), StateError);
}

TEST(LbState, DnsNamedBackends) {
  LbState st;
  st.fromConfig(baseConfig(R"(
[[service]]
name = "web"
listen = "192.0.2.10:443"
backends = ["203.0.113.5:443", { address = "nlb.example.com:443", weight = 2 }]
)"));
  const Service* s = st.findService("web");
  ASSERT_EQ(s->dns.size(), 1u);
  EXPECT_EQ(s->backends.size(), 1u) << "nothing resolved yet";
  const auto targets = st.dnsTargets();
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0].service, "web");
  EXPECT_EQ(targets[0].name, "nlb.example.com");
  EXPECT_EQ(targets[0].port, 443);

  EXPECT_TRUE(st.setDnsAddresses("web", "nlb.example.com", 443, {ip("198.51.100.2"), ip("198.51.100.1")}));
  EXPECT_FALSE(st.setDnsAddresses("web", "nlb.example.com", 443, {ip("198.51.100.1"), ip("198.51.100.2")}))
      << "same set in another order: no change";
  EXPECT_FALSE(st.setDnsAddresses("web", "other.example.com", 443, {ip("198.51.100.1")}));
  EXPECT_FALSE(st.setDnsAddresses("nope", "nlb.example.com", 443, {ip("198.51.100.1")}));
  s = st.findService("web");
  ASSERT_EQ(s->backends.size(), 3u);
  const Backend& a = backend(st, "web", "198.51.100.1:443");
  EXPECT_EQ(a.weight, 2u);
  EXPECT_FALSE(a.literal);
  EXPECT_EQ(a.dnsNames, (std::vector<std::string>{"nlb.example.com:443"}));
  const uint16_t slotA = a.slot;
  const uint16_t slotB = backend(st, "web", "198.51.100.2:443").slot;

  // .1 disappears (drains), .3 appears, .2 keeps its slot.
  EXPECT_TRUE(st.setDnsAddresses("web", "nlb.example.com", 443, {ip("198.51.100.2"), ip("198.51.100.3")}));
  s = st.findService("web");
  EXPECT_EQ(backend(st, "web", "198.51.100.2:443").slot, slotB);
  ASSERT_EQ(s->draining.size(), 1u);
  EXPECT_EQ(s->draining[0].slot, slotA);
  EXPECT_EQ(s->draining[0].phase, BackendPhase::kDraining);
  auto snap = buildSnapshot(st, 1);
  auto m = shares(view(*snap, "web"));
  EXPECT_EQ(m.count("198.51.100.1:443"), 0u);
  EXPECT_NEAR(double(m["198.51.100.3:443"]) / double(m["203.0.113.5:443"]), 2.0, 0.2);

  // A DNS address that is also a literal backend is one backend.
  EXPECT_TRUE(st.setDnsAddresses("web", "nlb.example.com", 443, {ip("198.51.100.2"), ip("203.0.113.5")}));
  const Backend& both = backend(st, "web", "203.0.113.5:443");
  EXPECT_TRUE(both.literal);
  EXPECT_EQ(both.weight, 1u) << "the literal entry's weight wins";
  EXPECT_EQ(both.dnsNames.size(), 1u);
  // Addresses that cannot be backends are ignored.
  EXPECT_TRUE(
      st.setDnsAddresses("web", "nlb.example.com", 443, {ip("198.51.100.2"), kIface, ip("127.0.0.1")}));
  EXPECT_EQ(st.findService("web")->backends.size(), 2u);

  // Weight of DNS-derived addresses is set on the name.
  EXPECT_THROW(st.setWeight("web", be("198.51.100.2:443"), 5), StateError);
  EXPECT_THROW(st.removeBackend("web", be("198.51.100.2:443"), false), StateError);
  st.setWeight("web", be("nlb.example.com:443"), 5);
  EXPECT_EQ(backend(st, "web", "198.51.100.2:443").weight, 5u);

  // Removing the name drains (or flushes) every address it had.
  st.removeBackend("web", be("nlb.example.com:443"), true);
  s = st.findService("web");
  EXPECT_TRUE(s->dns.empty());
  EXPECT_EQ(s->backends.size(), 1u);
  snap = buildSnapshot(st, 2);
  EXPECT_TRUE(snap->flushedBackends.test(backend(st, "web", "198.51.100.2:443").slot));
  EXPECT_TRUE(st.dnsTargets().empty());

  // Added at run time too.
  st.addBackend("web", be("api.example.com:8443"));
  EXPECT_EQ(st.dnsTargets().size(), 1u);
  EXPECT_TRUE(st.setDnsAddresses("web", "api.example.com", 8443, {ip("198.51.100.9")}));
  EXPECT_EQ(backend(st, "web", "198.51.100.9:8443").dnsNames.front(), "api.example.com:8443");
}

TEST(LbState, MaglevSizeBoundsBackendCount) {
  LbState st;
  st.fromConfig(baseConfig(R"(
[[service]]
name = "small"
listen = "192.0.2.10:80"
maglev_size = 5
backends = ["203.0.113.1:80", "203.0.113.2:80", "203.0.113.3:80", "203.0.113.4:80"]
)"));
  const std::size_t free = st.freeBackendSlots();
  EXPECT_THROW(st.addBackend("small", be("203.0.113.5:80")), StateError);
  EXPECT_EQ(st.findService("small")->backends.size(), 4u);
  EXPECT_EQ(st.findService("small")->config.backends.size(), 4u);
  EXPECT_EQ(st.freeBackendSlots(), free);
  st.addBackend("small", be("name.example.com:80"));
  EXPECT_THROW(st.setDnsAddresses("small", "name.example.com", 80, {ip("198.51.100.1")}), StateError);
  EXPECT_EQ(st.findService("small")->backends.size(), 4u);
  EXPECT_EQ(view(*buildSnapshot(st, 1), "small").maglev.size(), 5u);
}

TEST(LbState, RejectedChanges) {
  LbState st;
  st.fromConfig(baseConfig(kTwoServices));
  const auto expectError = [](auto&& f, const std::string& what) {
    try {
      f();
      ADD_FAILURE() << "accepted; expected " << what;
    } catch (const StateError& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  ServiceConfig s;
  s.name = "web";
  s.vip = kVip2;
  s.port = 81;
  s.proto = IPPROTO_TCP;
  expectError([&] { st.addService(s); }, "service \"web\" already exists");
  s.name = "other";
  s.port = 53;
  s.proto = IPPROTO_UDP;
  expectError([&] { st.addService(s); }, "is already used by service \"dns\"");
  s.proto = IPPROTO_TCP;
  s.vip = ip("198.51.100.10");
  expectError([&] { st.addService(s); }, "not an address of this load balancer");
  s.vip = kVip2;
  s.snat = {ip("203.0.113.1")};
  expectError([&] { st.addService(s); }, "snat \"203.0.113.1\"");
  s.snat = {};
  s.name = "bad name";
  expectError([&] { st.addService(s); }, "may contain only");
  s.name = "other";
  s.vip = ip("203.0.113.11");
  expectError([&] { st.addService(s); }, "not an address of this load balancer");
  s.vip = kVip2;
  s.maglevSize = 100;
  expectError([&] { st.addService(s); }, "not a prime");
  s.maglevSize = 65537;
  EXPECT_NO_THROW(st.addService(s));
  EXPECT_EQ(st.findService("other")->config.snat, (std::vector<uint32_t>{kIface}))
      << "default SNAT filled in";

  expectError([&] { st.addBackend("nope", be("203.0.113.1:80")); }, "no service named \"nope\"");
  expectError([&] { st.addBackend("web", be("203.0.113.11:80")); }, "already in service \"web\"");
  expectError([&] { st.addBackend("web", be("192.0.2.10:80")); }, "interface address");
  expectError([&] { st.addBackend("web", be("192.0.2.20:80")); }, "is the VIP of service");
  expectError([&] { st.addBackend("web", be("203.0.113.1:80", 10001)); }, "out of range 0-10000");
  expectError([&] { st.removeBackend("web", be("203.0.113.99:80"), false); },
              "has no backend \"203.0.113.99:80\"");
  expectError([&] { st.removeBackend("web", be("x.example.com:80"), false); }, "has no backend");
  expectError([&] { st.setWeight("web", be("203.0.113.11:80"), 10001); }, "out of range");
  expectError([&] { st.setWeight("web", be("203.0.113.99:80"), 1); }, "has no backend");
  expectError([&] { st.removeService("nope"); }, "no service named");
}

TEST(LbState, HealthTargets) {
  LbState st;
  st.fromConfig(baseConfig(R"(
[[service]]
name = "web"
listen = "192.0.2.10:80"
backends = ["203.0.113.1:80", "203.0.113.2:8080"]
[service.health_check]
type = "http"
http_path = "/ok"

[[service]]
name = "nocheck"
listen = "192.0.2.10:81"
backends = ["203.0.113.3:80"]
)"));
  st.removeBackend("web", be("203.0.113.2:8080"), false);
  const auto t = st.healthTargets();
  ASSERT_EQ(t.size(), 1u) << "draining backends and unchecked services are not probed";
  EXPECT_EQ(t[0].service, "web");
  EXPECT_EQ(t[0].ip, ip("203.0.113.1"));
  EXPECT_EQ(t[0].port, 80);
  EXPECT_EQ(t[0].check.type, "http");
  EXPECT_EQ(t[0].check.httpPath, "/ok");
  EXPECT_EQ(t[0].backendSlot, 0);
}

TEST(LbState, RunningConfigRendersToValidToml) {
  LbState st;
  const Config original = baseConfig(kTwoServices);
  st.fromConfig(original);
  EXPECT_EQ(renderConfig(st.toConfig()), renderConfig(original))
      << "unchanged state renders the loaded config";

  st.addBackend("web", be("203.0.113.20:80", 4));
  st.addBackend("web", be("nlb.example.com:443", 2));
  st.setDnsAddresses("web", "nlb.example.com", 443, {ip("198.51.100.7")});
  st.removeBackend("web", be("203.0.113.11:80"), false);
  st.setWeight("web", be("203.0.113.12:80"), 0);
  st.removeService("dns");
  ServiceConfig s;
  s.name = "api";
  s.vip = kVip2;
  s.port = 8443;
  s.proto = IPPROTO_TCP;
  st.addService(s);

  const std::string text = renderConfig(st.toConfig());
  SCOPED_TRACE(text);
  const Config back = parseConfig(text, "running.toml");
  ASSERT_EQ(back.services.size(), 2u);
  EXPECT_EQ(back.services[0].name, "web");
  EXPECT_EQ(back.services[1].name, "api");
  const auto& b = back.services[0].backends;
  ASSERT_EQ(b.size(), 4u) << "draining backends and resolved DNS addresses are not configuration";
  EXPECT_EQ(b[0].host, "203.0.113.12");
  EXPECT_EQ(b[0].weight, 0u);
  EXPECT_EQ(b[1].host, "203.0.113.13");
  EXPECT_EQ(b[2].host, "203.0.113.20");
  EXPECT_EQ(b[2].weight, 4u);
  EXPECT_EQ(b[3].host, "nlb.example.com");
  EXPECT_EQ(b[3].weight, 2u);

  // Loading the rendered config gives the same model.
  LbState again;
  again.fromConfig(back);
  EXPECT_EQ(renderConfig(again.toConfig()), renderConfig(back));
}

TEST(SnapshotBuilder, CachesUnchangedMaglevTables) {
  LbState st;
  st.fromConfig(baseConfig(kTwoServices));
  SnapshotBuilder b;
  auto s1 = b.build(st, 1);
  EXPECT_EQ(b.lastRebuilds(), 2u);
  auto s2 = b.build(st, 2);
  EXPECT_EQ(b.lastRebuilds(), 0u);
  EXPECT_EQ(view(*s1, "web").maglev, view(*s2, "web").maglev);
  st.setHealth("web", ip("203.0.113.11"), 80, false);
  auto s3 = b.build(st, 3);
  EXPECT_EQ(b.lastRebuilds(), 1u) << "only the changed service is rebuilt";
  EXPECT_EQ(view(*s3, "web").maglev, view(*buildSnapshot(st, 3), "web").maglev)
      << "cache gives the uncached result";
  // A draining backend does not change the table's key: the cached table
  // must still map to the right indices after the list grew.
  st.setHealth("web", ip("203.0.113.11"), 80, true);
  st.removeBackend("web", be("203.0.113.12:80"), false);
  auto s4 = b.build(st, 4);
  EXPECT_EQ(view(*s4, "web").maglev, view(*buildSnapshot(st, 4), "web").maglev);
}

TEST(SnapshotBuilder, IdenticalBackendSetsGiveIdenticalTables) {
  // Two instances configured in a different order build the same table
  // (up to the index order of their backend lists).
  LbState a, b;
  a.fromConfig(
      baseConfig("[[service]]\nname = \"web\"\nlisten = \"192.0.2.10:80\"\nbackends = [\"203.0.113.1:80\", "
                 "\"203.0.113.2:80\", "
                 "\"203.0.113.3:80\"]\n"));
  b.fromConfig(
      baseConfig("[[service]]\nname = \"web\"\nlisten = \"192.0.2.10:80\"\nbackends = [\"203.0.113.3:80\", "
                 "\"203.0.113.1:80\", "
                 "\"203.0.113.2:80\"]\n"));
  const auto sa = buildSnapshot(a, 1);
  const ServiceView& va = view(*sa, "web");
  const auto sb = buildSnapshot(b, 1);
  const ServiceView& vb = view(*sb, "web");
  ASSERT_EQ(va.maglev.size(), vb.maglev.size());
  for (std::size_t i = 0; i < va.maglev.size(); ++i)
    ASSERT_EQ(va.backends[va.maglev[i]].ip, vb.backends[vb.maglev[i]].ip) << i;
}

}  // namespace
}  // namespace strait::controlplane
