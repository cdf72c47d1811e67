// Unit tests for the control API and the control socket. The API runs
// against a fake Runtime that builds real snapshots from the state (so a
// change is checked all the way to the Maglev table) and serves canned
// counters, flows and SNAT pools. The server runs on a real Unix socket
// in a per-test directory under /tmp: framing, several requests per
// connection, malformed, truncated and oversized requests, a stuck client,
// stale-socket handling, permissions and peer credentials.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "controlplane/api.h"
#include "controlplane/control_server.h"
#include "controlplane/snapshot_builder.h"

namespace strait::controlplane {
namespace {

using nlohmann::json;

uint32_t ip(const char* s) { return *parseIpv4(s); }

// A Runtime without a dataplane: publish() builds a real snapshot and the
// two "workers" pick it up at once unless told to lag.
class FakeRuntime : public Runtime {
 public:
  explicit FakeRuntime(LbState& st) : state_(st) {
    for (auto& w : workers) w = std::make_unique<WorkerCounters>();
  }

  uint64_t publish() override {
    // The API must hold the state lock while publishing: another thread
    // cannot take it now.
    lockHeldOnPublish = !std::async(std::launch::async, [&] {
                           const bool got = state_.mutex().try_lock();
                           if (got) state_.mutex().unlock();
                           return got;
                         }).get();
    current = builder.build(state_, ++generation);
    ++publishes;
    for (std::size_t w = 0; w < workers.size(); ++w)
      if (!(lagWorker && *lagWorker == w)) workers[w]->snapshotGeneration = generation;
    return generation;
  }
  WorkerCounters totals() const override {
    WorkerCounters t;
    for (const auto& w : workers) {
      t.rxPackets += w->rxPackets;
      t.txPackets += w->txPackets;
      t.flowsCreated += w->flowsCreated;
      t.flowsExpired += w->flowsExpired;
      for (std::size_t r = 0; r < kDropReasonCount; ++r) t.drops[r] += w->drops[r];
      for (std::size_t s = 0; s < kMaxServiceSlots; ++s) {
        t.services[s].flowsCreated += w->services[s].flowsCreated;
        t.services[s].packets += w->services[s].packets;
      }
      for (std::size_t b = 0; b < kMaxBackendSlots; ++b) {
        t.backends[b].packets += w->backends[b].packets;
        t.backends[b].bytes += w->backends[b].bytes;
        t.backends[b].flowsCreated += w->backends[b].flowsCreated;
        t.backends[b].flowsClosed += w->backends[b].flowsClosed;
      }
    }
    return t;
  }
  WorkerCounters worker(uint16_t w) const override { return *workers.at(w); }
  uint16_t workerCount() const override { return static_cast<uint16_t>(workers.size()); }
  uint64_t flowsActive() const override { return 42; }
  uint64_t flowCapacity() const override { return 1u << 21; }
  std::array<uint64_t, strait::kFlowStateCount> flowsByState() const override {
    std::array<uint64_t, strait::kFlowStateCount> n{};
    n[static_cast<std::size_t>(strait::FlowState::kEstablished)] = 40;
    n[static_cast<std::size_t>(strait::FlowState::kSynSent)] = 2;
    return n;
  }
  std::vector<FlowInfo> flows(std::optional<uint16_t> serviceSlot, std::size_t limit) const override {
    lastFlowsSlot = serviceSlot;
    lastFlowsLimit = limit;
    std::vector<FlowInfo> out;
    for (const FlowInfo& f : cannedFlows)
      if ((!serviceSlot || f.serviceSlot == *serviceSlot) && out.size() < limit) out.push_back(f);
    return out;
  }
  std::vector<SnatPoolInfo> snatPools() const override { return cannedPools; }
  std::vector<PortInfo> ports() const override { return {}; }
  std::size_t neighbourCount() const override { return 3; }
  uint64_t snapshotGeneration() const override { return generation; }

  std::array<std::unique_ptr<WorkerCounters>, 2> workers;
  SnapshotBuilder builder;
  std::unique_ptr<Snapshot> current;
  uint64_t generation = 0;
  int publishes = 0;
  bool lockHeldOnPublish = false;
  std::optional<std::size_t> lagWorker;
  std::vector<FlowInfo> cannedFlows;
  std::vector<SnatPoolInfo> cannedPools;
  mutable std::optional<uint16_t> lastFlowsSlot;
  mutable std::size_t lastFlowsLimit = 0;

 private:
  LbState& state_;
};

const char* const kConfig = R"(
[[interface]]
port = "p0"
address = "192.0.2.10/24"
gateway = "192.0.2.1"

[[service]]
name = "web"
listen = "192.0.2.10:80"
backends = ["203.0.113.11:80", "203.0.113.12:80"]

[[service]]
name = "dns"
listen = "192.0.2.10:53"
protocol = "udp"
backends = ["203.0.113.53:53", "nlb.example.com:53"]
)";

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state.fromConfig(parseConfig(kConfig, "strait.toml"));
    runtime.publish();
  }

  json call(const std::string& command, json args = json::object()) {
    return api.handle(json{{"version", 1}, {"command", command}, {"args", std::move(args)}});
  }
  json okCall(const std::string& command, json args = json::object()) {
    json r = call(command, std::move(args));
    EXPECT_TRUE(r.value("ok", false)) << r.dump();
    EXPECT_EQ(r.value("version", 0), 1);
    return r.contains("result") ? r["result"] : json();
  }
  // Expects an error reply whose message contains `what`.
  void errCall(const std::string& command, json args, const std::string& what) {
    const json r = call(command, std::move(args));
    expectError(r, what);
  }
  static void expectError(const json& r, const std::string& what) {
    ASSERT_TRUE(r.is_object()) << r.dump();
    EXPECT_EQ(r.value("ok", true), false) << r.dump();
    EXPECT_EQ(r.value("version", 0), 1) << r.dump();
    const std::string e = r.value("error", "");
    EXPECT_NE(e.find(what), std::string::npos) << "error \"" << e << "\" lacks \"" << what << "\"";
  }

  LbState state;
  FakeRuntime runtime{state};
  ControlApi api{state, runtime};
};

TEST_F(ApiTest, EnvelopeErrors) {
  expectError(api.handle(json::array({1, 2})), "request must be a JSON object");
  expectError(api.handle(json("service list")), "request must be a JSON object");
  expectError(api.handle(json{{"command", "stats"}}), "missing \"version\"");
  expectError(api.handle(json{{"version", 2}, {"command", "stats"}}), "unsupported protocol version 2");
  expectError(api.handle(json{{"version", "1"}, {"command", "stats"}}), "\"version\" must be an integer");
  expectError(api.handle(json{{"version", 1}}), "missing or non-string \"command\"");
  expectError(api.handle(json{{"version", 1}, {"command", 7}}), "missing or non-string \"command\"");
  expectError(api.handle(json{{"version", 1}, {"command", "reboot"}}), "unknown command \"reboot\"");
  expectError(api.handle(json{{"version", 1}, {"command", "stats"}, {"args", json::array()}}),
              "\"args\" must be an object");
  expectError(api.handle(json{{"version", 1}, {"command", "stats"}, {"verbose", true}}),
              "unknown request field \"verbose\"");
  errCall("service list", {{"all", true}}, "unknown argument \"all\" for command \"service list\"");
  // An id is echoed so a client can match replies.
  const json r = api.handle(json{{"version", 1}, {"command", "stats"}, {"id", 17}});
  EXPECT_TRUE(r["ok"].get<bool>());
  EXPECT_EQ(r["id"], 17);
  const json e = api.handle(json{{"version", 1}, {"command", "nope"}, {"id", "x"}});
  EXPECT_EQ(e["id"], "x");
  EXPECT_EQ(runtime.publishes, 1) << "nothing published by failed or read-only requests";
}

TEST_F(ApiTest, ServiceList) {
  runtime.workers[0]->services[0].flowsCreated = 5;
  runtime.workers[1]->services[0].packets = 99;
  const json r = okCall("service list");
  ASSERT_EQ(r["services"].size(), 2u);
  const json& web = r["services"][0];
  EXPECT_EQ(web["name"], "web");
  EXPECT_EQ(web["listen"], "192.0.2.10:80");
  EXPECT_EQ(web["protocol"], "tcp");
  EXPECT_EQ(web["snat"], json::array({"192.0.2.10"}));
  EXPECT_EQ(web["backends"], 2);
  EXPECT_EQ(web["backends_available"], 2);
  EXPECT_EQ(web["fail_open"], false);
  EXPECT_EQ(web["flows_total"], 5);
  EXPECT_EQ(web["active_flows"], 5);
  EXPECT_EQ(web["packets"], 99);
  EXPECT_EQ(r["services"][1]["protocol"], "udp");
  EXPECT_EQ(r["services"][1]["backends"], 1) << "the DNS name has not resolved yet";
}

TEST_F(ApiTest, ServiceAddAndRemove) {
  const json r =
      okCall("service add",
             {{"name", "api"}, {"listen", "192.0.2.30:443"}, {"protocol", "tcp"}, {"snat", {"192.0.2.31"}}});
  EXPECT_EQ(r["service"]["name"], "api");
  EXPECT_EQ(r["service"]["snat"], json::array({"192.0.2.31"}));
  EXPECT_EQ(r["generation"], 2);
  EXPECT_TRUE(runtime.lockHeldOnPublish);
  ASSERT_NE(runtime.current->findService(htonl(ip("192.0.2.30")), htons(443), IPPROTO_TCP), nullptr);
  EXPECT_EQ(runtime.current->addrRoles(htonl(ip("192.0.2.31"))), kRoleSnat);

  // protocol defaults to tcp, snat to the interface address.
  const json u = okCall("service add", {{"name", "u"}, {"listen", "192.0.2.30:443"}, {"protocol", "udp"}});
  EXPECT_EQ(u["service"]["snat"], json::array({"192.0.2.10"}));
  okCall("service add", {{"name", "t"}, {"listen", "192.0.2.30:444"}});
  EXPECT_EQ(state.findService("t")->config.proto, IPPROTO_TCP);

  errCall("service add", {{"listen", "192.0.2.30:80"}}, "missing argument \"name\"");
  errCall("service add", {{"name", "x"}}, "missing argument \"listen\"");
  errCall("service add", {{"name", "x"}, {"listen", "192.0.2.30"}},
          "listen: \"192.0.2.30\": expected IP:PORT");
  errCall("service add", {{"name", "x"}, {"listen", "192.0.2.30:70000"}}, "port out of range 1-65535");
  errCall("service add", {{"name", "x"}, {"listen", "192.0.2.30:80"}, {"protocol", "icmp"}},
          "expected tcp or udp");
  errCall("service add", {{"name", "x"}, {"listen", "192.0.2.30:80"}, {"snat", "192.0.2.10"}},
          "must be an array of strings");
  errCall("service add", {{"name", "x"}, {"listen", "192.0.2.30:80"}, {"snat", {"nope"}}},
          "snat \"nope\": not an IPv4 address");
  errCall("service add", {{"name", "x"}, {"listen", "192.0.2.30:80"}, {"snat", {"198.51.100.1"}}},
          "not an address of this load balancer");
  errCall("service add", {{"name", "x"}, {"listen", "198.51.100.1:80"}},
          "not an address of this load balancer");
  errCall("service add", {{"name", "web"}, {"listen", "192.0.2.30:81"}}, "service \"web\" already exists");
  errCall("service add", {{"name", "x"}, {"listen", "192.0.2.10:80"}}, "already used by service \"web\"");
  errCall("service add", {{"name", "a b"}, {"listen", "192.0.2.30:81"}}, "may contain only");
  errCall("service add", {{"name", 5}, {"listen", "192.0.2.30:81"}}, "argument \"name\" must be a string");
  const int published = runtime.publishes;

  okCall("service remove", {{"name", "api"}});
  EXPECT_EQ(runtime.publishes, published + 1);
  EXPECT_EQ(runtime.current->findService(htonl(ip("192.0.2.30")), htons(443), IPPROTO_TCP), nullptr);
  errCall("service remove", {{"name", "api"}}, "no service named \"api\"");
  errCall("service remove", json::object(), "missing argument \"name\"");
}

TEST_F(ApiTest, BackendListShowsCountersAndStates) {
  const uint16_t s11 = state.findService("web")->findBackend(ip("203.0.113.11"), 80)->slot;
  runtime.workers[0]->backends[s11] = {100, 6400, 7, 2};
  runtime.workers[1]->backends[s11] = {50, 3200, 3, 1};
  okCall("backend set", {{"service", "web"}, {"backend", "203.0.113.12:80"}, {"weight", 0}});
  okCall("backend add", {{"service", "web"}, {"backend", "203.0.113.13:80"}});
  state.setHealth("web", ip("203.0.113.13"), 80, false);
  okCall("backend add", {{"service", "web"}, {"backend", "203.0.113.14:80"}});
  okCall("backend remove", {{"service", "web"}, {"backend", "203.0.113.14:80"}});

  const json r = okCall("backend list", {{"service", "web"}});
  EXPECT_EQ(r["service"], "web");
  EXPECT_EQ(r["listen"], "192.0.2.10:80");
  EXPECT_EQ(r["fail_open"], false);
  const json& b = r["backends"];
  ASSERT_EQ(b.size(), 4u) << r.dump(2);
  EXPECT_EQ(b[0]["address"], "203.0.113.11:80");
  EXPECT_EQ(b[0]["weight"], 1);
  EXPECT_EQ(b[0]["health"], "up");
  EXPECT_EQ(b[0]["state"], "active");
  EXPECT_EQ(b[0]["active_flows"], 7) << "(7+3) created - (2+1) closed";
  EXPECT_EQ(b[0]["flows_total"], 10);
  EXPECT_EQ(b[0]["packets"], 150);
  EXPECT_EQ(b[0]["bytes"], 9600);
  EXPECT_EQ(b[1]["address"], "203.0.113.12:80");
  EXPECT_EQ(b[1]["weight"], 0);
  EXPECT_EQ(b[1]["state"], "drained");
  EXPECT_EQ(b[2]["health"], "down");
  EXPECT_EQ(b[3]["address"], "203.0.113.14:80");
  EXPECT_EQ(b[3]["health"], "draining");
  EXPECT_EQ(b[3]["state"], "draining");

  const json d = okCall("backend list", {{"service", "dns"}});
  ASSERT_EQ(d["dns"].size(), 1u);
  EXPECT_EQ(d["dns"][0]["name"], "nlb.example.com:53");
  EXPECT_TRUE(d["dns"][0]["addresses"].empty());
  {
    std::lock_guard lock(state.mutex());
    state.setDnsAddresses("dns", "nlb.example.com", 53, {ip("198.51.100.5")});
  }
  const json d2 = okCall("backend list", {{"service", "dns"}});
  EXPECT_EQ(d2["dns"][0]["addresses"], json::array({"198.51.100.5"}));
  ASSERT_EQ(d2["backends"].size(), 2u);
  EXPECT_EQ(d2["backends"][1]["dns_names"], json::array({"nlb.example.com:53"}));

  errCall("backend list", {{"service", "nope"}}, "no service named \"nope\"");
  errCall("backend list", json::object(), "missing argument \"service\"");
}

TEST_F(ApiTest, FailOpenIsReported) {
  {
    std::lock_guard lock(state.mutex());
    state.setHealth("web", ip("203.0.113.11"), 80, false);
    state.setHealth("web", ip("203.0.113.12"), 80, false);
  }
  EXPECT_EQ(okCall("backend list", {{"service", "web"}})["fail_open"], true);
  EXPECT_EQ(okCall("service list")["services"][0]["fail_open"], true);
}

TEST_F(ApiTest, BackendAdd) {
  const json r = okCall("backend add", {{"service", "web"}, {"backend", "203.0.113.20:8080"}, {"weight", 3}});
  EXPECT_EQ(r["backend"]["address"], "203.0.113.20:8080");
  EXPECT_EQ(r["backend"]["weight"], 3);
  EXPECT_EQ(r["generation"], 2);
  EXPECT_TRUE(runtime.lockHeldOnPublish);
  const ServiceView* v = runtime.current->findService(htonl(ip("192.0.2.10")), htons(80), IPPROTO_TCP);
  ASSERT_NE(v, nullptr);
  ASSERT_EQ(v->backends.size(), 3u);
  EXPECT_EQ(v->backends[2].ip, htonl(ip("203.0.113.20")));
  EXPECT_EQ(v->backends[2].weight, 3u);
  EXPECT_EQ(okCall("backend add", {{"service", "web"}, {"backend", "203.0.113.21:80"}})["backend"]["weight"],
            1);
  okCall("backend add", {{"service", "web"}, {"backend", "api.example.com:443"}});
  EXPECT_EQ(state.dnsTargets().size(), 2u);

  errCall("backend add", {{"service", "web"}}, "missing argument \"backend\"");
  errCall("backend add", {{"backend", "203.0.113.30:80"}}, "missing argument \"service\"");
  errCall("backend add", {{"service", "nope"}, {"backend", "203.0.113.30:80"}}, "no service named \"nope\"");
  errCall("backend add", {{"service", "web"}, {"backend", "203.0.113.300:80"}}, "bad IPv4 address");
  errCall("backend add", {{"service", "web"}, {"backend", "203.0.113.30"}}, "expected IP:PORT or NAME:PORT");
  errCall("backend add", {{"service", "web"}, {"backend", "203.0.113.30:0"}}, "port out of range");
  errCall("backend add", {{"service", "web"}, {"backend", "203.0.113.30:80"}, {"weight", -1}},
          "out of range 0-10000");
  errCall("backend add", {{"service", "web"}, {"backend", "203.0.113.30:80"}, {"weight", 10001}},
          "out of range 0-10000");
  errCall("backend add", {{"service", "web"}, {"backend", "203.0.113.30:80"}, {"weight", 1.5}},
          "must be an integer");
  errCall("backend add", {{"service", "web"}, {"backend", "203.0.113.30:80"}, {"weight", "2"}},
          "must be an integer");
  errCall("backend add", {{"service", "web"}, {"backend", 5}}, "argument \"backend\" must be a string");
  errCall("backend add", {{"service", "web"}, {"backend", "203.0.113.11:80"}}, "already in service \"web\"");
  errCall("backend add", {{"service", "web"}, {"backend", "192.0.2.10:80"}}, "interface address");
  errCall("backend add", {{"service", "web"}, {"backend", "203.0.113.30:80"}, {"flush", true}},
          "unknown argument \"flush\"");
}

TEST_F(ApiTest, BackendRemoveDrainsOrFlushes) {
  const uint16_t slot = state.findService("web")->findBackend(ip("203.0.113.12"), 80)->slot;
  okCall("backend remove", {{"service", "web"}, {"backend", "203.0.113.12:80"}});
  EXPECT_FALSE(runtime.current->flushedBackends.test(slot));
  const ServiceView* v = runtime.current->findService(htonl(ip("192.0.2.10")), htons(80), IPPROTO_TCP);
  ASSERT_NE(v, nullptr);
  for (uint16_t e : v->maglev) ASSERT_NE(v->backends[e].slot, slot) << "no new flows to a removed backend";

  okCall("backend remove", {{"service", "web"}, {"backend", "203.0.113.12:80"}, {"flush", true}});
  EXPECT_TRUE(runtime.current->flushedBackends.test(slot));
  errCall("backend remove", {{"service", "web"}, {"backend", "203.0.113.12:80"}}, "already removed");
  errCall("backend remove", {{"service", "web"}, {"backend", "203.0.113.99:80"}},
          "has no backend \"203.0.113.99:80\"");
  errCall("backend remove", {{"service", "web"}, {"backend", "203.0.113.11:80"}, {"flush", "yes"}},
          "must be true or false");
  errCall("backend remove", {{"service", "web"}, {"backend", "203.0.113.11:80"}, {"weight", 1}},
          "unknown argument \"weight\"");
}

TEST_F(ApiTest, BackendSetWeight) {
  const json r = okCall("backend set", {{"service", "web"}, {"backend", "203.0.113.11:80"}, {"weight", 0}});
  EXPECT_EQ(r["backend"]["weight"], 0);
  EXPECT_EQ(r["backend"]["state"], "drained");
  const ServiceView* v = runtime.current->findService(htonl(ip("192.0.2.10")), htons(80), IPPROTO_TCP);
  ASSERT_NE(v, nullptr);
  for (uint16_t e : v->maglev) ASSERT_EQ(v->backends[e].ip, htonl(ip("203.0.113.12")));
  errCall("backend set", {{"service", "web"}, {"backend", "203.0.113.11:80"}}, "missing argument \"weight\"");
  errCall("backend set", {{"service", "web"}, {"backend", "203.0.113.99:80"}, {"weight", 1}},
          "has no backend");
  errCall("backend set", {{"service", "web"}, {"backend", "203.0.113.11:80"}, {"weight", 20000}},
          "out of range");
}

TEST_F(ApiTest, Stats) {
  runtime.workers[0]->rxPackets = 10;
  runtime.workers[1]->rxPackets = 20;
  runtime.workers[0]->txPackets = 9;
  runtime.workers[1]->busyCycles = 25;
  runtime.workers[1]->totalCycles = 100;
  runtime.workers[0]->drops[static_cast<std::size_t>(DropReason::kNoService)] = 4;
  runtime.workers[1]->drops[static_cast<std::size_t>(DropReason::kNoService)] = 1;
  runtime.workers[1]->drops[static_cast<std::size_t>(DropReason::kSnatPortsExhausted)] = 2;
  runtime.cannedPools = {{0, ip("192.0.2.10"), ip("203.0.113.11"), 80, IPPROTO_TCP, 10, 1000},
                         {1, ip("192.0.2.10"), ip("203.0.113.12"), 80, IPPROTO_TCP, 5, 1000},
                         {0, ip("192.0.2.31"), ip("203.0.113.11"), 80, IPPROTO_TCP, 1, 500}};
  const json r = okCall("stats");
  EXPECT_EQ(r["rx_packets"], 30);
  EXPECT_EQ(r["tx_packets"], 9);
  ASSERT_EQ(r["workers"].size(), 2u);
  EXPECT_EQ(r["workers"][1]["rx_packets"], 20);
  EXPECT_DOUBLE_EQ(r["workers"][1]["busy_ratio"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(r["workers"][0]["busy_ratio"].get<double>(), 0.0);
  EXPECT_EQ(r["drops"].size(), kDropReasonCount - 1) << "every reason, and not \"none\"";
  for (std::size_t i = 1; i < kDropReasonCount; ++i)
    EXPECT_TRUE(r["drops"].contains(std::string(kDropReasonNames[i])));
  EXPECT_EQ(r["drops"]["no_service"], 5);
  EXPECT_EQ(r["drops"]["snat_ports_exhausted"], 2);
  EXPECT_EQ(r["drops_total"], 7);
  EXPECT_EQ(r["flows"]["active"], 42);
  EXPECT_EQ(r["flows"]["capacity"], 1u << 21);
  ASSERT_EQ(r["snat"].size(), 2u);
  EXPECT_EQ(r["snat"][0]["address"], "192.0.2.10");
  EXPECT_EQ(r["snat"][0]["ports_in_use"], 15);
  EXPECT_EQ(r["snat"][0]["ports_capacity"], 2000);
  EXPECT_EQ(r["snat"][1]["address"], "192.0.2.31");
  EXPECT_EQ(r["snat_pools"], 3);
  EXPECT_EQ(r["neighbours"], 3);
  EXPECT_EQ(r["snapshot_generation"], 1);
}

TEST_F(ApiTest, Flows) {
  FlowInfo f;
  f.worker = 1;
  f.proto = IPPROTO_TCP;
  f.clientIp = ip("198.51.100.77");
  f.clientPort = 40000;
  f.vip = ip("192.0.2.10");
  f.vipPort = 80;
  f.snatIp = ip("192.0.2.10");
  f.snatPort = 2001;
  f.backendIp = ip("203.0.113.11");
  f.backendPort = 80;
  f.serviceSlot = 0;
  f.state = "established";
  f.idleMs = 1500;
  runtime.cannedFlows = {f, f};
  runtime.cannedFlows[1].serviceSlot = 1;
  json r = okCall("flows");
  EXPECT_EQ(runtime.lastFlowsLimit, kDefaultFlowsLimit);
  EXPECT_FALSE(runtime.lastFlowsSlot.has_value());
  ASSERT_EQ(r["flows"].size(), 2u);
  const json& x = r["flows"][0];
  EXPECT_EQ(x["client"], "198.51.100.77:40000");
  EXPECT_EQ(x["vip"], "192.0.2.10:80");
  EXPECT_EQ(x["snat"], "192.0.2.10:2001");
  EXPECT_EQ(x["backend"], "203.0.113.11:80");
  EXPECT_EQ(x["service"], "web");
  EXPECT_EQ(x["protocol"], "tcp");
  EXPECT_EQ(x["state"], "established");
  EXPECT_EQ(x["idle_ms"], 1500);
  EXPECT_EQ(r["flows"][1]["service"], "dns");

  r = okCall("flows", {{"service", "dns"}, {"limit", 1}});
  EXPECT_EQ(runtime.lastFlowsSlot, std::optional<uint16_t>(1));
  EXPECT_EQ(runtime.lastFlowsLimit, 1u);
  ASSERT_EQ(r["flows"].size(), 1u);
  EXPECT_EQ(r["flows"][0]["service"], "dns");
  errCall("flows", {{"service", "nope"}}, "no service named \"nope\"");
  errCall("flows", {{"limit", 0}}, "out of range 1-100000");
  errCall("flows", {{"limit", 100001}}, "out of range 1-100000");
}

TEST_F(ApiTest, ConfigShowIsLoadableToml) {
  okCall("backend add", {{"service", "web"}, {"backend", "203.0.113.20:80"}, {"weight", 7}});
  const json r = okCall("config show");
  const std::string text = r["toml"].get<std::string>();
  const Config c = parseConfig(text, "shown.toml");
  ASSERT_EQ(c.services.size(), 2u);
  ASSERT_EQ(c.services[0].backends.size(), 3u);
  EXPECT_EQ(c.services[0].backends[2].weight, 7u);
  EXPECT_EQ(c.services[1].backends[1].host, "nlb.example.com");
}

TEST_F(ApiTest, TickFreesDrainedSlots) {
  const uint16_t slot = state.findService("web")->findBackend(ip("203.0.113.12"), 80)->slot;
  runtime.workers[0]->backends[slot].flowsCreated = 4;
  runtime.workers[1]->backends[slot].flowsClosed = 3;
  okCall("backend remove", {{"service", "web"}, {"backend", "203.0.113.12:80"}, {"flush", true}});
  const int published = runtime.publishes;
  EXPECT_EQ(api.tick(), 0u) << "one flow still open";
  EXPECT_EQ(runtime.publishes, published);
  runtime.workers[0]->backends[slot].flowsClosed = 1;
  runtime.lagWorker = 1;
  runtime.workers[1]->snapshotGeneration = 1;  // still on the snapshot from before the removal
  EXPECT_EQ(api.tick(), 0u) << "a worker has not seen the removal yet";
  runtime.workers[1]->snapshotGeneration = runtime.generation;
  EXPECT_EQ(api.tick(), 1u);
  EXPECT_EQ(runtime.publishes, published + 1);
  EXPECT_FALSE(runtime.current->flushedBackends.test(slot));
  EXPECT_EQ(okCall("backend list", {{"service", "web"}})["backends"].size(), 1u);
}

// --- the control socket ----------------------------------------------------

std::string uniqueDir() {
  static std::atomic<int> n{0};
  return "/tmp/strait-test-api-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

class Client {
 public:
  explicit Client(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Client() { ::close(fd_); }
  bool connected() const { return connected_; }
  void send(const std::string& s) {
    std::size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<std::size_t>(n);
    }
  }
  void shutdownWrite() { ::shutdown(fd_, SHUT_WR); }
  // One reply line, or "" on EOF / timeout.
  std::string line(int timeoutMs = 5000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
    while (true) {
      if (const auto nl = buf_.find('\n'); nl != std::string::npos) {
        std::string l = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return l;
      }
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return "";
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return "";
      char b[65536];
      const ssize_t n = ::recv(fd_, b, sizeof b, 0);
      if (n <= 0) return "";
      buf_.append(b, static_cast<std::size_t>(n));
    }
  }
  json reply(int timeoutMs = 5000) {
    const std::string l = line(timeoutMs);
    return l.empty() ? json() : json::parse(l);
  }
  // True when the server closed the connection (EOF) within the timeout.
  bool closedByPeer(int timeoutMs = 5000) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeoutMs) <= 0) return false;
    char b[16];
    return ::recv(fd_, b, sizeof b, 0) == 0;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = uniqueDir();
    path = dir + "/run/control.sock";
  }
  void TearDown() override {
    if (server) server->stop();
    std::filesystem::remove_all(dir);
  }
  void start(ControlServer::Handler h, int idleMs = 10'000) {
    ControlServer::Options o;
    o.path = path;
    o.idleTimeoutMs = idleMs;
    server = std::make_unique<ControlServer>(o, std::move(h));
    server->start();
  }
  static json echo(const json& r) { return json{{"ok", true}, {"echo", r}}; }

  std::string dir;
  std::string path;
  std::unique_ptr<ControlServer> server;
};

TEST_F(ServerTest, SocketFileModeAndCleanup) {
  start(echo);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((dir + "/run").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u) << "created parent directories are private";
  server->stop();
  EXPECT_FALSE(std::filesystem::exists(path)) << "stop() removes the socket";
  Client c(path);
  EXPECT_FALSE(c.connected());
  server->stop();  // idempotent
}

TEST_F(ServerTest, OneRequestPerLineAndSeveralPerConnection) {
  start(echo);
  Client c(path);
  ASSERT_TRUE(c.connected());
  c.send("{\"n\":1}\n{\"n\":2}\r\n\n   \n{\"n\":3}\n");
  EXPECT_EQ(c.reply()["echo"]["n"], 1);
  EXPECT_EQ(c.reply()["echo"]["n"], 2) << "CRLF accepted";
  EXPECT_EQ(c.reply()["echo"]["n"], 3) << "blank lines ignored";
  // A request split across writes.
  c.send("{\"n\":");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  c.send("4}\n");
  EXPECT_EQ(c.reply()["echo"]["n"], 4);
  // The last request may omit the newline when the client half-closes.
  c.send("{\"n\":5}");
  c.shutdownWrite();
  EXPECT_EQ(c.reply()["echo"]["n"], 5);
  EXPECT_TRUE(c.closedByPeer());
}

TEST_F(ServerTest, MalformedAndTruncatedRequestsGetErrorReplies) {
  start(echo);
  {
    Client c(path);
    c.send("this is not json\n");
    const json r = c.reply();
    EXPECT_EQ(r["ok"], false);
    EXPECT_NE(r["error"].get<std::string>().find("malformed JSON request"), std::string::npos) << r.dump();
    c.send("{\"still\":\"served\"}\n");
    EXPECT_EQ(c.reply()["echo"]["still"], "served") << "the connection survives a malformed line";
  }
  {
    Client c(path);
    c.send("{\"version\":1,\"command\":\"ser");
    c.shutdownWrite();
    const json r = c.reply();
    EXPECT_EQ(r["ok"], false);
    EXPECT_NE(r["error"].get<std::string>().find("malformed JSON request"), std::string::npos) << r.dump();
  }
  {
    Client c(path);
    c.send("\xff\xfe{\"bad utf8\": \"\xc3\x28\"}\n");
    const json r = c.reply();
    EXPECT_EQ(r["ok"], false) << "invalid UTF-8 is a parse error, and the reply is still valid JSON";
  }
  Client after(path);
  after.send("{\"n\":1}\n");
  EXPECT_EQ(after.reply()["echo"]["n"], 1);
}

TEST_F(ServerTest, OversizedRequestsAreRefusedAndClosed) {
  start(echo);
  {
    Client c(path);
    c.send(std::string(70 * 1024, 'x'));  // no newline at all
    const json r = c.reply();
    EXPECT_EQ(r["ok"], false);
    EXPECT_NE(r["error"].get<std::string>().find("request larger than 65536 bytes"), std::string::npos)
        << r.dump();
    EXPECT_TRUE(c.closedByPeer());
  }
  {
    Client c(path);
    c.send("{\"s\":\"" + std::string(66 * 1024, 'y') + "\"}\n");  // one long line
    const json r = c.reply();
    EXPECT_EQ(r["ok"], false);
    EXPECT_TRUE(c.closedByPeer());
  }
  {
    // Just under the limit is fine.
    Client c(path);
    c.send("{\"s\":\"" + std::string(60 * 1024, 'z') + "\"}\n");
    EXPECT_EQ(c.reply()["echo"]["s"].get<std::string>().size(), 60u * 1024);
  }
  Client after(path);
  after.send("{\"n\":2}\n");
  EXPECT_EQ(after.reply()["echo"]["n"], 2);
}

TEST_F(ServerTest, StuckClientDoesNotBlockOthers) {
  // With a 60 s idle timeout, a server that waited on the stuck client
  // could not answer the other one within the 5 s the reply is given.
  start(echo, 60'000);
  Client stuck(path);
  stuck.send("{\"half\":");
  Client idle(path);  // connects and sends nothing
  Client other(path);
  other.send("{\"n\":1}\n");
  EXPECT_EQ(other.reply(5000)["echo"]["n"], 1);
  stuck.send("2}\n");
  EXPECT_EQ(stuck.reply(5000)["echo"]["half"], 2) << "the slow client is still served when it completes";
}

TEST_F(ServerTest, SilentClientsTimeOut) {
  start(echo, 300);
  Client stuck(path);
  stuck.send("{\"half\":");
  Client idle(path);
  const json r = stuck.reply(5000);
  EXPECT_EQ(r["ok"], false);
  EXPECT_NE(r.value("error", "").find("timed out waiting for the rest of the request"), std::string::npos)
      << r.dump();
  EXPECT_TRUE(stuck.closedByPeer());
  EXPECT_TRUE(idle.closedByPeer(5000)) << "a silent client is disconnected";
  Client after(path);
  after.send("{\"n\":1}\n");
  EXPECT_EQ(after.reply()["echo"]["n"], 1);
}

TEST_F(ServerTest, HandlerExceptionBecomesErrorReply) {
  start([](const json& r) -> json {
    if (r.contains("boom")) throw std::runtime_error("kaboom");
    return json{{"ok", true}};
  });
  Client c(path);
  c.send("{\"boom\":1}\n");
  const json r = c.reply();
  EXPECT_EQ(r["ok"], false);
  EXPECT_EQ(r["error"], "internal error: kaboom");
  c.send("{}\n");
  EXPECT_EQ(c.reply()["ok"], true);
}

TEST_F(ServerTest, StaleSocketReplacedLiveSocketAndFilesRefused) {
  std::filesystem::create_directories(dir + "/run");
  {
    // A socket file left behind by a process that is gone.
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ::close(fd);
  }
  ASSERT_TRUE(std::filesystem::exists(path));
  start(echo);
  Client c(path);
  c.send("{}\n");
  EXPECT_EQ(c.reply()["ok"], true);

  // A second server on the same path must not steal the live socket.
  ControlServer::Options o;
  o.path = path;
  ControlServer second(o, echo);
  try {
    second.start();
    ADD_FAILURE() << "took over a live socket";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("in use by another process"), std::string::npos) << e.what();
  }
  Client still(path);
  still.send("{}\n");
  EXPECT_EQ(still.reply()["ok"], true);

  const std::string file = dir + "/regular";
  { std::ofstream(file) << "x"; }
  o.path = file;
  ControlServer third(o, echo);
  EXPECT_THROW(third.start(), std::runtime_error);
  EXPECT_TRUE(std::filesystem::exists(file)) << "never unlinks a file that is not a socket";
}

TEST_F(ServerTest, PeerCredentials) {
  start(echo);
  Client self(path);
  self.send("{}\n");
  EXPECT_EQ(self.reply()["ok"], true) << "our own uid is accepted";
  EXPECT_EQ(server->rejectedPeers(), 0u);
  if (::geteuid() != 0) GTEST_SKIP() << "rejecting another uid needs root to switch uid";

  // Open the file permissions so only the credential check stands in the way.
  ASSERT_EQ(::chmod((dir + "/run").c_str(), 0755), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
  ASSERT_EQ(::chmod(path.c_str(), 0666), 0);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: raw syscalls only (the parent has threads).
    ::close(fds[0]);
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ::_exit(4);
    // Nothing to send: the server answers and closes at accept time.
    char buf[512];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) {
      [[maybe_unused]] ssize_t x = ::write(fds[1], buf, static_cast<std::size_t>(n));
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0) << "child could not connect";
  const json r = json::parse(out.substr(0, out.find('\n')));
  EXPECT_EQ(r["ok"], false);
  EXPECT_NE(r["error"].get<std::string>().find("permission denied: uid 65534"), std::string::npos)
      << r.dump();
  EXPECT_EQ(server->rejectedPeers(), 1u);
  Client again(path);
  again.send("{}\n");
  EXPECT_EQ(again.reply()["ok"], true) << "still serving";
}

TEST_F(ServerTest, EndToEndWithTheApi) {
  LbState state;
  state.fromConfig(parseConfig(kConfig, "strait.toml"));
  FakeRuntime runtime(state);
  ControlApi api(state, runtime);
  start([&](const json& r) { return api.handle(r); });
  Client c(path);
  c.send(
      R"({"version":1,"command":"backend add","args":{"service":"web","backend":"203.0.113.40:80","weight":2}})"
      "\n");
  json r = c.reply();
  EXPECT_EQ(r["ok"], true) << r.dump();
  c.send(R"({"version":1,"command":"backend list","args":{"service":"web"}})"
         "\n");
  r = c.reply();
  ASSERT_EQ(r["result"]["backends"].size(), 3u) << r.dump();
  EXPECT_EQ(r["result"]["backends"][2]["weight"], 2);
  c.send(R"({"version":1,"command":"backend add","args":{"service":"web","backend":"203.0.113.40:80"}})"
         "\n");
  r = c.reply();
  EXPECT_EQ(r["ok"], false);
  EXPECT_NE(r["error"].get<std::string>().find("already in service"), std::string::npos);
  c.send(R"({"version":9,"command":"stats"})"
         "\n");
  EXPECT_NE(c.reply()["error"].get<std::string>().find("unsupported protocol version 9"), std::string::npos);
  server->stop();
}

}  // namespace
}  // namespace strait::controlplane
