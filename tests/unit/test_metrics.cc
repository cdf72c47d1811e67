// Unit tests of the Prometheus exposition (controlplane/metrics.*) against a
// fake Runtime with fixed counters: every drop reason present at 0 from the
// start, sums across workers, labels of services, backends, SNAT pools and
// NIC xstats, the busy ratio over an injected clock, a failing topology
// source, /metrics served over real HTTP, and the docs, alert rules and
// dashboard naming only metrics that exist. With STRAIT_METRICS_OUT set,
// Metrics.WritesExposition writes a full exposition there for
// tests/unit/promtool_check.sh (promtool check metrics).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "controlplane/metrics.h"
#include "strait/counters.h"
#include "strait/drop_reason.h"

namespace strait::controlplane {
namespace {

class FakeRuntime : public Runtime {
 public:
  explicit FakeRuntime(uint16_t workers) {
    for (uint16_t w = 0; w < workers; ++w) workers_.push_back(std::make_unique<WorkerCounters>());
  }
  WorkerCounters& w(uint16_t i) { return *workers_.at(i); }

  uint64_t publish() override { return ++generation; }
  WorkerCounters totals() const override {
    WorkerCounters t;
    for (const auto& c : workers_) addCounters(t, *c);
    return t;
  }
  WorkerCounters worker(uint16_t i) const override { return *workers_.at(i); }
  uint16_t workerCount() const override { return static_cast<uint16_t>(workers_.size()); }
  uint64_t flowsActive() const override { return active; }
  uint64_t flowCapacity() const override { return capacity; }
  std::array<uint64_t, strait::kFlowStateCount> flowsByState() const override { return byState; }
  std::vector<FlowInfo> flows(std::optional<uint16_t>, std::size_t) const override { return {}; }
  std::vector<SnatPoolInfo> snatPools() const override { return pools; }
  std::vector<PortInfo> ports() const override {
    if (portsThrow) throw std::runtime_error("rte_eth_xstats_get failed");
    return portList;
  }
  std::size_t neighbourCount() const override { return neighbours; }
  uint64_t snapshotGeneration() const override { return generation; }
  double tscHz() const override { return 1e9; }
  uint64_t takeLoopMaxCycles(uint16_t w) const override {
    const uint64_t v = loopMax.at(w);
    loopMax.at(w) = 0;
    return v;
  }

  mutable std::vector<uint64_t> loopMax = std::vector<uint64_t>(8, 0);
  uint64_t generation = 1;
  uint64_t active = 0;
  uint64_t capacity = 2u << 20;
  std::array<uint64_t, kFlowStateCount> byState{};
  std::size_t neighbours = 0;
  bool portsThrow = false;
  std::vector<SnatPoolInfo> pools;
  std::vector<PortInfo> portList;

 private:
  std::vector<std::unique_ptr<WorkerCounters>> workers_;
};

// The exposition as {"name{labels}" -> value}; labels as the serializer
// writes them (sorted here by construction: we pass them in name order).
std::map<std::string, double> samples(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto sp = line.rfind(' ');
    EXPECT_NE(sp, std::string::npos) << line;
    const std::string key = line.substr(0, sp);
    EXPECT_EQ(out.count(key), 0u) << "duplicate series " << key;
    out[key] = std::stod(line.substr(sp + 1));
  }
  return out;
}

std::set<std::string> familyNames(const std::string& text) {
  std::set<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) out.insert(line.substr(7, line.find(' ', 7) - 7));
  }
  return out;
}

uint32_t ip(const char* s) {
  in_addr a{};
  EXPECT_EQ(inet_pton(AF_INET, s, &a), 1);
  return ntohl(a.s_addr);
}

Topology webTopology() {
  Topology t;
  t.services.push_back({"web", 1, false, "192.0.2.10:80", "tcp"});
  t.services.push_back({"dns", 2, true, "192.0.2.10:53", "udp"});
  t.backends.push_back({"web", "203.0.113.11:80", 10, true, false, 1});
  t.backends.push_back({"web", "203.0.113.12:80", 11, false, false, 2});
  t.backends.push_back({"dns", "203.0.113.53:53", 12, false, true, 0});
  ServiceCapacity c;
  c.service = "web";
  c.newConnectionsPerS = 1075.2;
  c.worstPoolUse = 0.25;
  t.capacity.push_back(c);
  return t;
}

// A runtime with something in every family (for the promtool check and the
// docs cross-check).
void populate(FakeRuntime& rt) {
  for (uint16_t i = 0; i < rt.workerCount(); ++i) {
    auto& c = rt.w(i);
    c.rxPackets = 1000 + i;
    c.rxBytes = 64000 + i;
    c.txPackets = 990 + i;
    c.txBytes = 63000 + i;
    c.flowsCreated = 10;
    c.flowsExpired = 3;
    c.flowsFlushed = 1;
    c.handoffOut = 5;
    c.handoffIn = 4;
    c.toControl = 2;
    c.icmpErrorsTranslated = 1;
    c.icmpEchoReplies = 2;
    c.mssClamped = 3;
    c.loops = 100000;
    c.busyLoops = 2500;
    c.totalCycles = 4'000'000'000;
    c.busyCycles = 1'000'000'000;
    c.snapshotGeneration = 3;
    c.drop(DropReason::kNoService);
    c.services[1] = {500, 40000, 10, 7};
    c.backends[10] = {300, 20000, 6, 4};
    c.backends[11] = {200, 20000, 4, 3};
  }
  rt.active = 12;
  rt.neighbours = 2;
  rt.generation = 3;
  rt.pools.push_back({0, ip("192.0.2.10"), ip("203.0.113.11"), 80, 6, 3, 30000});
  rt.pools.push_back({1, ip("192.0.2.10"), ip("203.0.113.11"), 80, 6, 2, 30000});
  rt.portList.push_back({"net_af_packet0", 0, {{"rx_good_packets", 2000}, {"tx_good_packets", 1980}}});
  rt.portList.push_back({"0000:00:06.0",
                         1,
                         {{"bw_in_allowance_exceeded", 0},
                          {"bw_out_allowance_exceeded", 0},
                          {"pps_allowance_exceeded", 7},
                          {"conntrack_allowance_exceeded", 0},
                          {"linklocal_allowance_exceeded", 0}}});
}

TEST(Metrics, EveryDropReasonPresentAtZeroFromStart) {
  FakeRuntime rt(2);
  MetricsCollector m(rt, [] { return Topology{}; });
  const auto s = samples(m.render());
  for (std::size_t r = 1; r < kDropReasonCount; ++r) {
    const std::string key = "strait_drops_total{reason=\"" + std::string(kDropReasonNames[r]) + "\"}";
    ASSERT_EQ(s.count(key), 1u) << key;
    EXPECT_EQ(s.at(key), 0.0) << key;
  }
  EXPECT_EQ(s.count("strait_drops_total{reason=\"none\"}"), 0u);
  EXPECT_EQ(s.at("strait_flows_created_total"), 0.0);
  EXPECT_EQ(s.at("strait_rx_packets_total{worker=\"1\"}"), 0.0);
  EXPECT_EQ(s.at("strait_metrics_errors_total"), 0.0);
}

TEST(Metrics, CountersSummedAcrossWorkers) {
  FakeRuntime rt(3);
  for (uint16_t i = 0; i < 3; ++i) {
    rt.w(i).rxPackets = 100u * (i + 1);
    rt.w(i).txBytes = 7u * (i + 1);
    rt.w(i).flowsCreated = i + 1;
    rt.w(i).flowsExpired = 2u * i;
    rt.w(i).handoffOut = i;
    for (uint16_t k = 0; k <= i; ++k) rt.w(i).drop(DropReason::kSnatPortsExhausted);
  }
  rt.w(2).drop(DropReason::kMalformed);
  rt.active = 4;
  rt.capacity = 3u << 20;
  rt.neighbours = 5;
  rt.generation = 9;
  MetricsCollector m(rt, [] { return Topology{}; });
  const auto s = samples(m.render());
  EXPECT_EQ(s.at("strait_rx_packets_total{worker=\"0\"}"), 100);
  EXPECT_EQ(s.at("strait_rx_packets_total{worker=\"2\"}"), 300);
  EXPECT_EQ(s.at("strait_tx_bytes_total{worker=\"1\"}"), 14);
  EXPECT_EQ(s.at("strait_handoff_total{direction=\"out\",worker=\"2\"}"), 2);
  EXPECT_EQ(s.at("strait_flows_created_total"), 6);
  EXPECT_EQ(s.at("strait_flows_expired_total"), 6);
  EXPECT_EQ(s.at("strait_drops_total{reason=\"snat_ports_exhausted\"}"), 6);
  EXPECT_EQ(s.at("strait_drops_total{reason=\"malformed\"}"), 1);
  EXPECT_EQ(s.at("strait_drops_total{reason=\"no_flow\"}"), 0);
  EXPECT_EQ(s.at("strait_flows_active"), 4);
  EXPECT_EQ(s.at("strait_flows_capacity"), 3u << 20);
  EXPECT_EQ(s.at("strait_neighbours"), 5);
  EXPECT_EQ(s.at("strait_snapshot_generation"), 9);
  EXPECT_EQ(s.at("strait_workers"), 3);
  EXPECT_EQ(s.count("strait_rx_packets_total{worker=\"3\"}"), 0u);

  // A scrape reads the counters as they are now, nothing cached.
  rt.w(0).drop(DropReason::kMalformed);
  rt.w(1).rxPackets += 5;
  const auto s2 = samples(m.render());
  EXPECT_EQ(s2.at("strait_drops_total{reason=\"malformed\"}"), 2);
  EXPECT_EQ(s2.at("strait_rx_packets_total{worker=\"1\"}"), 205);
}

TEST(Metrics, LargeCountersAreExact) {
  FakeRuntime rt(1);
  rt.w(0).rxBytes = (1ull << 52) + 3;  // exact in a double
  MetricsCollector m(rt, [] { return Topology{}; });
  const std::string text = m.render();
  EXPECT_NE(text.find("strait_rx_bytes_total{worker=\"0\"} 4503599627370499\n"), std::string::npos) << text;
}

TEST(Metrics, ServiceAndBackendSeriesCarryLabels) {
  FakeRuntime rt(2);
  // web (slot 1): backend slot 10 on both workers, slot 11 on worker 1.
  rt.w(0).backends[10] = {100, 5000, 4, 1};
  rt.w(1).backends[10] = {50, 2500, 2, 2};
  rt.w(1).backends[11] = {10, 600, 1, 0};
  rt.w(0).services[1] = {110, 5600, 5, 1};
  rt.w(1).services[1] = {50, 2500, 2, 2};
  MetricsCollector m(rt, webTopology);
  const auto s = samples(m.render());
  const std::string b11 = "{backend=\"203.0.113.11:80\",service=\"web\"}";
  const std::string b12 = "{backend=\"203.0.113.12:80\",service=\"web\"}";
  const std::string b53 = "{backend=\"203.0.113.53:53\",service=\"dns\"}";
  EXPECT_EQ(s.at("strait_backend_up" + b11), 1);
  EXPECT_EQ(s.at("strait_backend_up" + b12), 0);
  EXPECT_EQ(s.at("strait_backend_draining" + b53), 1);
  EXPECT_EQ(s.at("strait_backend_draining" + b11), 0);
  EXPECT_EQ(s.at("strait_backend_weight" + b12), 2);
  EXPECT_EQ(s.at("strait_backend_flows_total" + b11), 6);
  EXPECT_EQ(s.at("strait_backend_flows_active" + b11), 3);
  EXPECT_EQ(s.at("strait_backend_packets_total" + b11), 150);
  EXPECT_EQ(s.at("strait_backend_bytes_total" + b11), 7500);
  EXPECT_EQ(s.at("strait_backend_flows_active" + b12), 1);
  EXPECT_EQ(s.at("strait_backend_flows_total" + b53), 0);
  EXPECT_EQ(s.at("strait_service_flows_total{service=\"web\"}"), 7);
  EXPECT_EQ(s.at("strait_service_flows_active{service=\"web\"}"), 4);
  EXPECT_EQ(s.at("strait_service_packets_total{service=\"web\"}"), 160);
  EXPECT_EQ(s.at("strait_service_fail_open{service=\"web\"}"), 0);
  EXPECT_EQ(s.at("strait_service_fail_open{service=\"dns\"}"), 1);
  EXPECT_EQ(s.at("strait_service_backends{service=\"web\"}"), 2);
  EXPECT_EQ(s.at("strait_service_backends_up{service=\"web\"}"), 1);
  EXPECT_EQ(s.at("strait_service_backends_up{service=\"dns\"}"), 0);
  EXPECT_EQ(s.at("strait_service_info{listen=\"192.0.2.10:80\",protocol=\"tcp\",service=\"web\"}"), 1);
}

TEST(Metrics, DuplicateLabelsMergeIntoOneSeries) {
  FakeRuntime rt(1);
  rt.w(0).backends[20] = {10, 100, 3, 3};  // the removed incarnation, drained
  rt.w(0).backends[21] = {4, 40, 2, 0};    // re-added under a new slot
  Topology t;
  t.services.push_back({"web", 1, false, "", ""});
  t.backends.push_back({"web", "203.0.113.11:80", 20, false, true, 0});
  t.backends.push_back({"web", "203.0.113.11:80", 21, true, false, 5});
  t.backends.push_back({"web", "203.0.113.11:80", 21, true, false, 5});  // listed twice: counted once
  MetricsCollector m(rt, [t] { return t; });
  const auto s = samples(m.render());  // samples() fails on a duplicate series
  const std::string l = "{backend=\"203.0.113.11:80\",service=\"web\"}";
  EXPECT_EQ(s.at("strait_backend_flows_total" + l), 5);
  EXPECT_EQ(s.at("strait_backend_flows_active" + l), 2);
  EXPECT_EQ(s.at("strait_backend_up" + l), 1);
  EXPECT_EQ(s.at("strait_backend_draining" + l), 0);
  EXPECT_EQ(s.at("strait_backend_weight" + l), 5);
  EXPECT_EQ(s.at("strait_service_backends{service=\"web\"}"), 1);
  // No listen/protocol given: no info series.
  EXPECT_EQ(familyNames(m.render()).count("strait_service_info"), 1u);
  for (const auto& [k, v] : s) EXPECT_EQ(k.rfind("strait_service_info{", 0), std::string::npos) << k;
}

TEST(Metrics, FlowsActiveNeverNegative) {
  FakeRuntime rt(1);
  rt.w(0).backends[10] = {0, 0, 3, 4};  // a copy taken mid-update
  MetricsCollector m(rt, webTopology);
  const auto s = samples(m.render());
  EXPECT_EQ(s.at("strait_backend_flows_active{backend=\"203.0.113.11:80\",service=\"web\"}"), 0);
}

TEST(Metrics, SnatPortsPerAddressAndPerPool) {
  FakeRuntime rt(2);
  const uint32_t a = ip("192.0.2.10"), b = ip("192.0.2.11");
  rt.pools = {
      {0, a, ip("203.0.113.11"), 80, 6, 100, 28000},
      {1, a, ip("203.0.113.11"), 80, 6, 50, 28000},
      {0, a, ip("203.0.113.12"), 80, 6, 7, 28000},
      {0, b, ip("203.0.113.11"), 53, 17, 1, 64000},
  };
  MetricsCollector m(rt, [] { return Topology{}; });
  const auto s = samples(m.render());
  EXPECT_EQ(s.at("strait_snat_ports_in_use{address=\"192.0.2.10\"}"), 157);
  EXPECT_EQ(s.at("strait_snat_ports_capacity{address=\"192.0.2.10\"}"), 84000);
  EXPECT_EQ(s.at("strait_snat_ports_in_use{address=\"192.0.2.11\"}"), 1);
  EXPECT_EQ(s.at("strait_snat_ports_capacity{address=\"192.0.2.11\"}"), 64000);
  EXPECT_EQ(s.at("strait_snat_pool_ports_in_use{address=\"192.0.2.10\",backend=\"203.0.113.11:80\","
                 "protocol=\"tcp\",worker=\"1\"}"),
            50);
  EXPECT_EQ(s.at("strait_snat_pool_ports_capacity{address=\"192.0.2.11\",backend=\"203.0.113.11:53\","
                 "protocol=\"udp\",worker=\"0\"}"),
            64000);
  EXPECT_EQ(s.at("strait_snat_pools"), 4);
}

TEST(Metrics, NicXstatsAsThePmdNamesThem) {
  FakeRuntime rt(1);
  populate(rt);
  MetricsCollector m(rt, [] { return Topology{}; });
  const std::string text = m.render();
  const auto s = samples(text);
  for (const char* n : {"bw_in_allowance_exceeded", "bw_out_allowance_exceeded", "pps_allowance_exceeded",
                        "conntrack_allowance_exceeded", "linklocal_allowance_exceeded"})
    EXPECT_EQ(s.count("strait_port_xstat{name=\"" + std::string(n) + "\",port=\"0000:00:06.0\"}"), 1u) << n;
  EXPECT_EQ(s.at("strait_port_xstat{name=\"pps_allowance_exceeded\",port=\"0000:00:06.0\"}"), 7);
  EXPECT_EQ(s.at("strait_port_xstat{name=\"rx_good_packets\",port=\"net_af_packet0\"}"), 2000);
}

TEST(Metrics, XdpVerdictsOnlyForSharedNicPorts) {
  FakeRuntime rt(1);
  populate(rt);
  MetricsCollector plain(rt, [] { return Topology{}; });
  for (const auto& [k, v] : samples(plain.render())) EXPECT_EQ(k.rfind("strait_xdp_", 0), std::string::npos) << k;

  PortInfo x;
  x.name = "net_af_xdp0";
  x.xdpInterface = "ens5";
  x.xdpVerdicts = {{"steer_tcp", 12}, {"pass_ipv4", 30}, {"drop_no_socket", 0}};
  rt.portList.push_back(x);
  MetricsCollector m(rt, [] { return Topology{}; });
  const std::string text = m.render();
  const auto s = samples(text);
  EXPECT_NE(text.find("# TYPE strait_xdp_verdicts_total counter"), std::string::npos);
  EXPECT_EQ(s.at("strait_xdp_verdicts_total{interface=\"ens5\",verdict=\"steer_tcp\"}"), 12);
  EXPECT_EQ(s.at("strait_xdp_verdicts_total{interface=\"ens5\",verdict=\"pass_ipv4\"}"), 30);
  EXPECT_EQ(s.at("strait_xdp_verdicts_total{interface=\"ens5\",verdict=\"drop_no_socket\"}"), 0);
}

TEST(Metrics, FailingSourceCostsOnlyItsSeries) {
  FakeRuntime rt(1);
  populate(rt);
  rt.portsThrow = true;
  int calls = 0;
  MetricsCollector m(rt, [&calls]() -> Topology {
    ++calls;
    throw std::runtime_error("state lock poisoned");
  });
  const auto s = samples(m.render());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(s.at("strait_metrics_errors_total"), 2);
  EXPECT_EQ(s.at("strait_drops_total{reason=\"no_service\"}"), 1);
  for (const auto& [k, v] : s) {
    EXPECT_EQ(k.rfind("strait_port_xstat", 0), std::string::npos) << k;
    EXPECT_EQ(k.rfind("strait_backend_", 0), std::string::npos) << k;
  }
  EXPECT_NO_THROW(m.Collect());
}

TEST(Metrics, BusyRatioOverIntervalsOfInjectedClock) {
  FakeRuntime rt(2);
  auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  MetricsCollector m(
      rt, [] { return Topology{}; }, "test", [&now] { return now; });
  rt.w(0).totalCycles = 1000;
  rt.w(0).busyCycles = 250;
  auto s = samples(m.render());
  EXPECT_DOUBLE_EQ(s.at("strait_worker_busy_ratio{worker=\"0\"}"), 0.25);  // since start
  EXPECT_DOUBLE_EQ(s.at("strait_worker_busy_ratio{worker=\"1\"}"), 0.0);   // no cycles yet

  // Within the minimum interval the previous figure stands.
  rt.w(0).totalCycles = 2000;
  rt.w(0).busyCycles = 1250;
  now += std::chrono::milliseconds(300);
  s = samples(m.render());
  EXPECT_DOUBLE_EQ(s.at("strait_worker_busy_ratio{worker=\"0\"}"), 0.25);

  // After it, the ratio of the interval: (1250-250)/(2000-1000).
  now += std::chrono::milliseconds(800);
  s = samples(m.render());
  EXPECT_DOUBLE_EQ(s.at("strait_worker_busy_ratio{worker=\"0\"}"), 1.0);
  EXPECT_EQ(s.at("strait_worker_busy_cycles_total{worker=\"0\"}"), 1250);
  EXPECT_EQ(s.at("strait_worker_cycles_total{worker=\"0\"}"), 2000);

  rt.w(0).totalCycles = 3000;
  rt.w(0).busyCycles = 1350;
  now += std::chrono::seconds(2);
  s = samples(m.render());
  EXPECT_DOUBLE_EQ(s.at("strait_worker_busy_ratio{worker=\"0\"}"), 0.1);
  EXPECT_EQ(s.at("strait_build_info{version=\"test\"}"), 1);
}

// --- HTTP ---------------------------------------------------------------

std::string httpGet(uint16_t port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    return "connect failed";
  }
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  EXPECT_EQ(::send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
  std::string resp;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    resp.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return resp;
}

std::map<std::string, double> straitSamples(const std::string& text) {
  auto all = samples(text);
  std::map<std::string, double> out;
  for (auto& [k, v] : all)
    if (k.rfind("strait_", 0) == 0) out[k] = v;
  return out;
}

TEST(MetricsExporter, ServesMetricsOverHttp) {
  FakeRuntime rt(2);
  populate(rt);
  MetricsExporter e("127.0.0.1:0", rt, webTopology, "9.9.9");
  ASSERT_NE(e.port(), 0);
  const std::string resp = httpGet(e.port(), "/metrics");
  ASSERT_TRUE(std::regex_search(resp, std::regex("^HTTP/1\\.[01] 200 "))) << resp.substr(0, 200);
  const auto hdrEnd = resp.find("\r\n\r\n");
  ASSERT_NE(hdrEnd, std::string::npos);
  const std::string headers = resp.substr(0, hdrEnd);
  // Prometheus reads any text/plain body as its text format.
  EXPECT_NE(headers.find("Content-Type: text/plain"), std::string::npos) << headers;
  const std::string body = resp.substr(hdrEnd + 4);
  // The served numbers are the ones render() gives (what `lbctl stats` prints).
  const auto served = straitSamples(body);
  EXPECT_EQ(served, straitSamples(e.render()));
  EXPECT_EQ(served.at("strait_build_info{version=\"9.9.9\"}"), 1);
  EXPECT_EQ(served.at("strait_drops_total{reason=\"no_service\"}"), 2);
  EXPECT_EQ(served.at("strait_backend_flows_total{backend=\"203.0.113.11:80\",service=\"web\"}"), 12);
  // The counters are read at each scrape.
  rt.w(1).drop(DropReason::kNoFlow);
  const std::string again = httpGet(e.port(), "/metrics");
  EXPECT_NE(again.find("strait_drops_total{reason=\"no_flow\"} 1\n"), std::string::npos);
  EXPECT_TRUE(std::regex_search(httpGet(e.port(), "/nothing"), std::regex("^HTTP/1\\.[01] 404 ")));
}

TEST(MetricsExporter, ListenErrorsNameTheAddress) {
  FakeRuntime rt(1);
  MetricsExporter first("127.0.0.1:0", rt, [] { return Topology{}; });
  const std::string busy = "127.0.0.1:" + std::to_string(first.port());
  for (const std::string& bad : {busy, std::string("127.0.0.1"), std::string("127.0.0.1:99999"),
                                 std::string("127.0.0.1:http"), std::string("[::1:9469"),
                                 std::string("no-such-host.invalid:9469"), std::string("192.0.2.200:9469")}) {
    try {
      MetricsExporter e(bad, rt, [] { return Topology{}; });
      ADD_FAILURE() << "listening on '" << bad << "' should have failed";
    } catch (const std::runtime_error& ex) {
      EXPECT_NE(std::string(ex.what()).find("'" + bad + "'"), std::string::npos) << ex.what();
    }
  }
  try {
    MetricsExporter e(busy, rt, [] { return Topology{}; });
    ADD_FAILURE() << "a port in use should have been refused";
  } catch (const std::runtime_error& ex) {
    EXPECT_NE(std::string(ex.what()).find("in use"), std::string::npos) << ex.what();
  }
}

// --- docs, rules and dashboard name only what exists ----------------------

std::string readFile(const std::string& rel) {
  std::ifstream f(std::string(STRAIT_SOURCE_ROOT) + "/" + rel);
  EXPECT_TRUE(f.good()) << rel;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::set<std::string> referencedMetrics(const std::string& text) {
  std::set<std::string> out;
  static const std::regex re("strait_[a-z0-9_]*[a-z0-9]");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator(); ++it)
    out.insert(it->str());
  return out;
}

TEST(Metrics, DocsRulesAndDashboardMatchTheExposition) {
  FakeRuntime rt(2);
  populate(rt);
  MetricsCollector m(rt, webTopology);
  const auto families = familyNames(m.render());
  const std::string docs = readFile("docs/observability.md");
  for (const auto& f : families)
    EXPECT_NE(docs.find("`" + f + "`"), std::string::npos) << f << " is not documented";
  for (std::size_t r = 1; r < kDropReasonCount; ++r)
    EXPECT_NE(docs.find("`" + std::string(kDropReasonNames[r]) + "`"), std::string::npos)
        << "drop reason " << kDropReasonNames[r] << " is not documented";
  for (const char* file : {"deploy/prometheus/alerts.yml", "deploy/grafana/strait-dashboard.json"}) {
    const auto refs = referencedMetrics(readFile(file));
    EXPECT_FALSE(refs.empty()) << file;
    for (const auto& r : refs) {
      // Alert names and job labels may start with "strait_" too; every
      // metric-looking reference must exist.
      if (r.rfind("strait_", 0) == 0 && families.count(r) == 0)
        ADD_FAILURE() << file << " refers to " << r << ", which straitd does not export";
    }
  }
}

// Writes a full exposition to a file and reads it back; with
// STRAIT_METRICS_OUT set the file is the one tests/unit/promtool_check.sh
// hands to `promtool check metrics`.
TEST(Metrics, WritesExposition) {
  const char* env = std::getenv("STRAIT_METRICS_OUT");
  const std::string path = env != nullptr ? env : ::testing::TempDir() + "strait_metrics.txt";
  FakeRuntime rt(2);
  populate(rt);
  MetricsCollector m(rt, webTopology, "0.0.0-test");
  const std::string text = m.render();
  { std::ofstream(path) << text; }
  std::ifstream back(path);
  std::stringstream ss;
  ss << back.rdbuf();
  EXPECT_EQ(ss.str(), text);
  const auto s = samples(ss.str());
  EXPECT_GT(s.size(), 100u);
  // Every family carries HELP and TYPE, and has at least one sample here.
  for (const auto& f : familyNames(text)) {
    EXPECT_NE(text.find("# HELP " + f + " "), std::string::npos) << f;
    bool any = false;
    for (const auto& [k, v] : s) any = any || k == f || k.rfind(f + "{", 0) == 0 || k.rfind(f + "_bucket{", 0) == 0;
    EXPECT_TRUE(any) << f << " has no sample in the populated exposition";
  }
  if (env == nullptr) std::remove(path.c_str());
}

}  // namespace
// The stall metric: the longest iteration since the previous scrape (the
// collector takes it, so a second scrape shows only what came after), and
// the loop histogram, cumulative in seconds from the per-bucket counts.
TEST(Metrics, WorkerLoopMaxAndHistogram) {
  FakeRuntime rt(1);
  rt.w(0).loopBuckets[0] = 90;   // <= 1 us
  rt.w(0).loopBuckets[4] = 9;    // 25-50 us
  rt.w(0).loopBuckets[kLoopBucketCount - 1] = 1;  // > 100 ms
  rt.w(0).totalCycles = 2'000'000'000;  // 2 s at the fake 1 GHz
  rt.loopMax[0] = 150'000'000;           // 150 ms
  MetricsCollector m(rt, webTopology, "0.0.0-test");
  auto s = samples(m.render());
  EXPECT_DOUBLE_EQ(s.at("strait_worker_loop_max_seconds{worker=\"0\"}"), 0.15);
  EXPECT_EQ(s.at("strait_worker_loop_seconds_bucket{worker=\"0\",le=\"1e-06\"}"), 90);
  EXPECT_EQ(s.at("strait_worker_loop_seconds_bucket{worker=\"0\",le=\"2.5e-05\"}"), 90);
  EXPECT_EQ(s.at("strait_worker_loop_seconds_bucket{worker=\"0\",le=\"5e-05\"}"), 99);
  EXPECT_EQ(s.at("strait_worker_loop_seconds_bucket{worker=\"0\",le=\"0.1\"}"), 99);
  EXPECT_EQ(s.at("strait_worker_loop_seconds_bucket{worker=\"0\",le=\"+Inf\"}"), 100);
  EXPECT_EQ(s.at("strait_worker_loop_seconds_count{worker=\"0\"}"), 100);
  EXPECT_DOUBLE_EQ(s.at("strait_worker_loop_seconds_sum{worker=\"0\"}"), 2.0);
  s = samples(m.render());
  EXPECT_EQ(s.at("strait_worker_loop_max_seconds{worker=\"0\"}"), 0);
}

}  // namespace strait::controlplane
