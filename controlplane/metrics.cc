// Prometheus exposition of straitd: builds every metric family from Runtime
// at scrape time (see metrics.h) and serves it with prometheus-cpp's
// civetweb-based Exposer. The families are assembled section by section so
// that one failing source (the topology callback, the NIC's xstats) costs
// only its own series, never the scrape and never the HTTP thread.
#include "controlplane/metrics.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <prometheus/exposer.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <future>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <utility>

#include "controlplane/log.h"
#include "strait/drop_reason.h"

namespace strait::controlplane {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
// A deque, so the references addFamily() returns stay valid while further
// families are added to the same section.
using Families = std::deque<MetricFamily>;
using Labels = std::vector<ClientMetric::Label>;

MetricFamily& addFamily(Families& out, std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  out.push_back(std::move(f));
  return out.back();
}

void addSample(MetricFamily& f, Labels labels, double v) {
  ClientMetric m;
  m.label = std::move(labels);
  switch (f.type) {
    case MetricType::Counter:
      m.counter.value = v;
      break;
    case MetricType::Gauge:
      m.gauge.value = v;
      break;
    default:
      m.untyped.value = v;
      break;
  }
  f.metric.push_back(std::move(m));
}

double num(uint64_t v) { return static_cast<double>(v); }

std::string ipv4(uint32_t hostOrder) {
  return std::to_string(hostOrder >> 24) + "." + std::to_string((hostOrder >> 16) & 0xff) + "." +
         std::to_string((hostOrder >> 8) & 0xff) + "." + std::to_string(hostOrder & 0xff);
}

std::string protoName(uint8_t proto) {
  switch (proto) {
    case 6:
      return "tcp";
    case 17:
      return "udp";
    case 1:
      return "icmp";
    default:
      return std::to_string(proto);
  }
}

// A flow count read as created - closed from a copy the workers kept
// writing while it was taken; never report the transient negative.
uint64_t activeFlows(uint64_t created, uint64_t closed) { return created > closed ? created - closed : 0; }

// Appends `section` to `out` only when it was built completely, so a
// failure never leaves a family with half its series.
template <typename Fn>
bool buildSection(Families& out, const char* what, uint64_t& errors, Fn&& fn) {
  Families section;
  try {
    fn(section);
  } catch (const std::exception& e) {
    ++errors;
    // Scrapes come from the network: at most a few lines a minute.
    static LogLimiter limiter(5, std::chrono::minutes(1));
    if (uint64_t suppressed = 0; limiter.allow(&suppressed))
      logf(LogLevel::kWarn, "event=metrics_section_failed section=%s reason=%s suppressed=%llu",
           logValue(what).c_str(), logValue(e.what()).c_str(), static_cast<unsigned long long>(suppressed));
    return false;
  }
  for (auto& f : section) out.push_back(std::move(f));
  return true;
}

}  // namespace

MetricsCollector::MetricsCollector(const Runtime& rt, TopologyFn topology, std::string version,
                                   MetricsClock clock)
    : rt_(rt), topology_(std::move(topology)), version_(std::move(version)), clock_(std::move(clock)) {
  if (!clock_) clock_ = [] { return std::chrono::steady_clock::now(); };
}

double MetricsCollector::busyRatio(uint16_t worker, const WorkerCounters& c,
                                   std::chrono::steady_clock::time_point now) const {
  if (busy_.size() <= worker) busy_.resize(worker + 1u);
  BusySample& s = busy_[worker];
  auto ratioOf = [](uint64_t busy, uint64_t total) {
    if (total == 0) return 0.0;
    return std::clamp(num(busy) / num(total), 0.0, 1.0);
  };
  if (!s.valid || c.totalCycles < s.totalCycles || c.busyCycles < s.busyCycles) {
    // First sample (or counters restarted): the ratio since the worker began.
    s = BusySample{true, now, c.busyCycles, c.totalCycles, ratioOf(c.busyCycles, c.totalCycles)};
    return s.ratio;
  }
  if (now - s.at < kBusyMinInterval) return s.ratio;
  const uint64_t dTotal = c.totalCycles - s.totalCycles;
  // A worker whose cycle counter did not move is not looping; keep the old
  // sample so the next interval covers the whole gap.
  if (dTotal == 0) return s.ratio;
  s = BusySample{true, now, c.busyCycles, c.totalCycles, ratioOf(c.busyCycles - s.busyCycles, dTotal)};
  return s.ratio;
}

std::vector<prometheus::MetricFamily> MetricsCollector::Collect() const {
  // civetweb runs its handlers on threads with small stacks (about 100 KiB),
  // less than one WorkerCounters copy (per-slot arrays); collect on a thread
  // with a default-sized stack. Once per scrape, so the thread is cheap.
  try {
    return std::async(std::launch::async, [this] { return collectNow(); }).get();
  } catch (const std::exception& e) {
    static LogLimiter limiter(5, std::chrono::minutes(1));
    if (uint64_t suppressed = 0; limiter.allow(&suppressed))
      logf(LogLevel::kWarn, "event=metrics_scrape_failed reason=%s suppressed=%llu", logValue(e.what()).c_str(),
           static_cast<unsigned long long>(suppressed));
    return {};
  }
}

std::vector<prometheus::MetricFamily> MetricsCollector::collectNow() const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto now = clock_();
  Families out;

  {
    auto& f = addFamily(out, "strait_build_info", "Build of straitd serving these metrics (value always 1).",
                        MetricType::Gauge);
    addSample(f, {{"version", version_}}, 1);
  }

  buildSection(out, "daemon gauges", errors_, [&](Families& s) {
    addSample(addFamily(s, "strait_workers", "Number of dataplane worker lcores.", MetricType::Gauge), {},
              num(rt_.workerCount()));
    addSample(addFamily(s, "strait_flows_active", "Flows in the flow tables, summed over workers.",
                        MetricType::Gauge),
              {}, num(rt_.flowsActive()));
    addSample(
        addFamily(s, "strait_flows_capacity", "Flow table capacity, summed over workers.", MetricType::Gauge),
        {}, num(rt_.flowCapacity()));
    {
      auto& byState = addFamily(s, "strait_flows_by_state",
                                "Flows in the flow tables by tracker state, summed over workers "
                                "(syn_sent, syn_recv and udp_unreplied are the unassured ones early drop may recycle).",
                                MetricType::Gauge);
      const auto n = rt_.flowsByState();
      for (std::size_t st = 0; st < kFlowStateCount; ++st)
        addSample(byState, {{"state", std::string(kFlowStateNames[st])}}, num(n[st]));
    }
    addSample(addFamily(s, "strait_neighbours", "Entries in the neighbour (ARP) table.", MetricType::Gauge),
              {}, num(rt_.neighbourCount()));
    addSample(addFamily(s, "strait_snapshot_generation",
                        "Generation of the configuration snapshot last published to the workers (RCU).",
                        MetricType::Gauge),
              {}, num(rt_.snapshotGeneration()));
  });

  buildSection(out, "per-worker counters", errors_, [&](Families& s) {
    auto& rxPk = addFamily(s, "strait_rx_packets_total", "Packets received from the NIC by the worker.",
                           MetricType::Counter);
    auto& rxBy = addFamily(s, "strait_rx_bytes_total", "Bytes received from the NIC by the worker.",
                           MetricType::Counter);
    auto& txPk = addFamily(s, "strait_tx_packets_total",
                           "Packets the worker handed to the NIC for transmission.", MetricType::Counter);
    auto& txBy = addFamily(s, "strait_tx_bytes_total", "Bytes the worker handed to the NIC for transmission.",
                           MetricType::Counter);
    auto& hand = addFamily(s, "strait_handoff_total",
                           "Packets passed between workers because the flow is owned by another worker "
                           "(direction out: sent to the owner; in: received as owner).",
                           MetricType::Counter);
    auto& ctrl = addFamily(s, "strait_control_packets_total",
                           "Packets the worker passed to the control thread (ARP).", MetricType::Counter);
    auto& loops = addFamily(s, "strait_worker_loops_total", "Iterations of the worker's poll loop.",
                            MetricType::Counter);
    auto& busyLoops =
        addFamily(s, "strait_worker_busy_loops_total",
                  "Poll loop iterations that received at least one packet.", MetricType::Counter);
    auto& cycles = addFamily(s, "strait_worker_cycles_total", "TSC cycles spent in the worker's poll loop.",
                             MetricType::Counter);
    auto& busyCycles =
        addFamily(s, "strait_worker_busy_cycles_total",
                  "TSC cycles spent in poll loop iterations that did work.", MetricType::Counter);
    auto& ratio = addFamily(s, "strait_worker_busy_ratio",
                            "Busy-poll utilisation: busy cycles / all cycles over the interval since the "
                            "exporter's previous sample (at least 1 s; since start on the first scrape).",
                            MetricType::Gauge);
    auto& gen =
        addFamily(s, "strait_worker_snapshot_generation",
                  "Snapshot generation the worker last picked up at its quiescent point.", MetricType::Gauge);
    auto& loopMax = addFamily(s, "strait_worker_loop_max_seconds",
                              "Longest poll-loop iteration of the worker since the previous scrape: "
                              "how long its RX queues went unpolled at worst.",
                              MetricType::Gauge);
    auto& loopHist = addFamily(s, "strait_worker_loop_seconds",
                               "Duration of the worker's poll-loop iterations.", MetricType::Histogram);
    const double hz = rt_.tscHz();
    auto& cookieMode =
        addFamily(s, "strait_worker_syn_cookie_mode",
                  "1 while the worker answers syn_proxy = \"auto\" services with SYN cookies (half-open "
                  "flows or SNAT pool pressure crossed the threshold), else 0.",
                  MetricType::Gauge);
    const uint16_t n = rt_.workerCount();
    for (uint16_t w = 0; w < n; ++w) {
      // One worker's block at a time: it is large (per-slot arrays) and only
      // its scalars are needed here.
      const WorkerCounters c = rt_.worker(w);
      if (hz > 0) {
        addSample(loopMax, {{"worker", std::to_string(w)}}, num(rt_.takeLoopMaxCycles(w)) / hz);
        ClientMetric m;
        m.label = {{"worker", std::to_string(w)}};
        uint64_t cumulative = 0;
        for (std::size_t b = 0; b < kLoopBucketsUs.size(); ++b) {
          cumulative += c.loopBuckets[b];
          m.histogram.bucket.push_back({cumulative, kLoopBucketsUs[b] / 1e6});
        }
        cumulative += c.loopBuckets[kLoopBucketsUs.size()];
        m.histogram.bucket.push_back({cumulative, std::numeric_limits<double>::infinity()});
        m.histogram.sample_count = cumulative;
        m.histogram.sample_sum = num(c.totalCycles) / hz;
        loopHist.metric.push_back(std::move(m));
      }
      const std::string id = std::to_string(w);
      addSample(rxPk, {{"worker", id}}, num(c.rxPackets));
      addSample(rxBy, {{"worker", id}}, num(c.rxBytes));
      addSample(txPk, {{"worker", id}}, num(c.txPackets));
      addSample(txBy, {{"worker", id}}, num(c.txBytes));
      addSample(hand, {{"direction", "out"}, {"worker", id}}, num(c.handoffOut));
      addSample(hand, {{"direction", "in"}, {"worker", id}}, num(c.handoffIn));
      addSample(ctrl, {{"worker", id}}, num(c.toControl));
      addSample(loops, {{"worker", id}}, num(c.loops));
      addSample(busyLoops, {{"worker", id}}, num(c.busyLoops));
      addSample(cycles, {{"worker", id}}, num(c.totalCycles));
      addSample(busyCycles, {{"worker", id}}, num(c.busyCycles));
      addSample(ratio, {{"worker", id}}, busyRatio(w, c, now));
      addSample(gen, {{"worker", id}}, num(c.snapshotGeneration));
      addSample(cookieMode, {{"worker", id}}, num(c.synCookieMode));
    }
  });

  std::unique_ptr<WorkerCounters> totals;
  buildSection(out, "counter totals", errors_, [&](Families& s) {
    totals = std::make_unique<WorkerCounters>(rt_.totals());
    auto& drops = addFamily(s, "strait_drops_total", "Packets dropped, by reason (summed over workers).",
                            MetricType::Counter);
    for (std::size_t r = 1; r < kDropReasonCount; ++r)  // 0 is "none", not a drop
      addSample(drops, {{"reason", std::string(kDropReasonNames[r])}}, num(totals->drops[r]));
    addSample(addFamily(s, "strait_flows_created_total", "Flows created.", MetricType::Counter), {},
              num(totals->flowsCreated));
    addSample(addFamily(s, "strait_flows_expired_total", "Flows removed by idle or state timeout.",
                        MetricType::Counter),
              {}, num(totals->flowsExpired));
    addSample(addFamily(s, "strait_flows_flushed_total", "Flows removed by `lbctl backend remove --flush`.",
                        MetricType::Counter),
              {}, num(totals->flowsFlushed));
    {
      auto& early = addFamily(s, "strait_flows_early_dropped_total",
                              "Unassured flows recycled to make room for a new flow when the flow table was full "
                              "or its SNAT pool had no free port (early drop), by the state they were in.",
                              MetricType::Counter);
      for (std::size_t st = 0; st < kFlowStateCount; ++st)
        if (isUnassured(static_cast<FlowState>(st)))
          addSample(early, {{"state", std::string(kFlowStateNames[st])}}, num(totals->earlyDrops[st]));
    }
    addSample(addFamily(s, "strait_icmp_errors_translated_total",
                        "ICMP errors for a flow translated back to its client or backend (inner header too).",
                        MetricType::Counter),
              {}, num(totals->icmpErrorsTranslated));
    addSample(addFamily(s, "strait_icmp_echo_replies_total", "ICMP echo replies sent for our addresses.",
                        MetricType::Counter),
              {}, num(totals->icmpEchoReplies));
    addSample(addFamily(s, "strait_tcp_mss_clamped_total", "TCP SYNs whose MSS option was clamped.",
                        MetricType::Counter),
              {}, num(totals->mssClamped));
    addSample(addFamily(s, "strait_tcp_syn_on_synchronized_total",
                        "Client SYNs on a synchronized (established or closing) flow, passed on without "
                        "changing the flow, as Linux conntrack does (docs/security.md).",
                        MetricType::Counter),
              {}, num(totals->tcpSynIgnored));
    addSample(addFamily(s, "strait_tcp_resync_total",
                        "Flows whose tracking restarted because the backend answered such a SYN with a SYN-ACK "
                        "(both ends agreed on a new connection on the same ports).",
                        MetricType::Counter),
              {}, num(totals->tcpResynced));
    addSample(addFamily(s, "strait_syn_cookies_sent_total",
                        "Client SYNs answered with a SYN cookie (no flow, no SNAT port).", MetricType::Counter),
              {}, num(totals->synCookiesSent));
    addSample(addFamily(s, "strait_syn_cookies_validated_total",
                        "Client ACKs whose SYN cookie checked out: a flow opened to the backend. Rejected "
                        "cookies are strait_drops_total{reason=~\"syn_cookie_.*\"}.",
                        MetricType::Counter),
              {}, num(totals->synCookiesValid));
    addSample(addFamily(s, "strait_syn_proxy_ack_data_dropped_total",
                        "Accepted cookie ACKs that carried data, which was dropped (the client resends it).",
                        MetricType::Counter),
              {}, num(totals->synProxyAckData));
    addSample(addFamily(s, "strait_syn_proxy_syn_resent_total",
                        "SYNs to backends of cookie flows sent again because the client probed the zero window "
                        "at least 100 ms after its last segment while the backend had not answered: the first "
                        "SYN or the backend's SYN-ACK was lost.",
                        MetricType::Counter),
              {}, num(totals->synProxySynResent));
    addSample(addFamily(s, "strait_syn_proxy_window_update_failed_total",
                        "Window updates to clients of cookie flows not sent for want of an mbuf (the "
                        "client's window probe opens the window instead).",
                        MetricType::Counter),
              {}, num(totals->synProxyNoMbuf));
    addSample(addFamily(s, "strait_syn_cookie_mode_entered_total",
                        "Times a worker switched syn_proxy = \"auto\" services to SYN cookies.",
                        MetricType::Counter),
              {}, num(totals->synCookieModeEntered));
    addSample(addFamily(s, "strait_proxy_protocol_headers_total",
                        "PROXY protocol v2 headers sent to backends (the first of each connection and any "
                        "sent again because the backend had not acknowledged it).",
                        MetricType::Counter),
              {}, num(totals->proxyHeaders));
  });

  buildSection(out, "SNAT pools", errors_, [&](Families& s) {
    const auto pools = rt_.snatPools();
    struct Sum {
      uint64_t inUse = 0;
      uint64_t capacity = 0;
    };
    std::map<uint32_t, Sum> perAddress;
    auto& poolUse = addFamily(
        s, "strait_snat_pool_ports_in_use",
        "SNAT ports in use in one pool: (SNAT address, backend, protocol) on one worker.", MetricType::Gauge);
    auto& poolCap =
        addFamily(s, "strait_snat_pool_ports_capacity",
                  "SNAT ports one pool can hand out: (SNAT address, backend, protocol) on one worker.",
                  MetricType::Gauge);
    std::set<std::tuple<uint32_t, uint32_t, uint16_t, uint8_t, uint16_t>> seen;
    for (const auto& p : pools) {
      auto& sum = perAddress[p.snatIp];
      sum.inUse += p.inUse;
      sum.capacity += p.capacity;
      if (!seen.insert({p.snatIp, p.backendIp, p.backendPort, p.proto, p.worker}).second) continue;
      Labels l{{"address", ipv4(p.snatIp)},
               {"backend", ipv4(p.backendIp) + ":" + std::to_string(p.backendPort)},
               {"protocol", protoName(p.proto)},
               {"worker", std::to_string(p.worker)}};
      addSample(poolUse, l, num(p.inUse));
      addSample(poolCap, std::move(l), num(p.capacity));
    }
    auto& use = addFamily(s, "strait_snat_ports_in_use",
                          "SNAT ports in use with this source address, summed over its pools and workers.",
                          MetricType::Gauge);
    auto& cap = addFamily(s, "strait_snat_ports_capacity",
                          "SNAT ports of this source address, summed over its pools (one per backend and "
                          "protocol) and workers.",
                          MetricType::Gauge);
    addSample(addFamily(s, "strait_snat_pools", "SNAT port pools in existence, over all workers.",
                        MetricType::Gauge),
              {}, num(seen.size()));
    for (const auto& [addr, sum] : perAddress) {
      addSample(use, {{"address", ipv4(addr)}}, num(sum.inUse));
      addSample(cap, {{"address", ipv4(addr)}}, num(sum.capacity));
    }
  });

  buildSection(out, "services and backends", errors_, [&](Families& s) {
    const Topology topo = topology_ ? topology_() : Topology{};
    const WorkerCounters* t = totals.get();

    // Merge entries that carry the same labels (e.g. a backend removed while
    // draining and added again under a new slot): one series each.
    struct ServiceAgg {
      const ServiceLabel* first = nullptr;
      std::set<uint16_t> slots;
      bool failOpen = false;
      uint64_t backends = 0;
      uint64_t backendsUp = 0;
    };
    struct BackendAgg {
      const BackendLabel* first = nullptr;
      std::set<uint16_t> slots;
      bool up = false;
      bool draining = true;
      bool initial = false;
      uint32_t weight = 0;
    };
    std::vector<std::string> serviceOrder;
    std::map<std::string, ServiceAgg> services;
    for (const auto& sv : topo.services) {
      auto [it, fresh] = services.try_emplace(sv.name);
      if (fresh) {
        serviceOrder.push_back(sv.name);
        it->second.first = &sv;
      }
      it->second.slots.insert(sv.slot);
      it->second.failOpen = it->second.failOpen || sv.failOpen;
    }
    std::vector<std::pair<std::string, std::string>> backendOrder;
    std::map<std::pair<std::string, std::string>, BackendAgg> backends;
    for (const auto& b : topo.backends) {
      auto key = std::make_pair(b.service, b.backend);
      auto [it, fresh] = backends.try_emplace(key);
      if (fresh) {
        backendOrder.push_back(key);
        it->second.first = &b;
      }
      it->second.slots.insert(b.slot);
      it->second.up = it->second.up || b.up;
      it->second.initial = it->second.initial || (b.initial && !b.draining);
      it->second.draining = it->second.draining && b.draining;
      it->second.weight = std::max(it->second.weight, b.weight);
    }
    for (const auto& key : backendOrder) {
      auto it = services.find(key.first);
      if (it == services.end()) continue;
      ++it->second.backends;
      if (backends[key].up) ++it->second.backendsUp;
    }

    auto& info =
        addFamily(s, "strait_service_info", "A configured service (value always 1).", MetricType::Gauge);
    auto& failOpen =
        addFamily(s, "strait_service_fail_open",
                  "1 when every backend of the service is down and new flows are spread over all "
                  "of them anyway (fail open).",
                  MetricType::Gauge);
    auto& nBackends =
        addFamily(s, "strait_service_backends", "Backends configured for the service.", MetricType::Gauge);
    auto& nUp = addFamily(s, "strait_service_backends_up", "Backends of the service passing health checks.",
                          MetricType::Gauge);
    auto& sActive = addFamily(s, "strait_service_flows_active",
                              "Flows of the service now in the flow tables.", MetricType::Gauge);
    auto& sFlows =
        addFamily(s, "strait_service_flows_total", "Flows created for the service.", MetricType::Counter);
    auto& sPackets = addFamily(s, "strait_service_packets_total",
                               "Packets of the service's flows, both directions.", MetricType::Counter);
    auto& sBytes = addFamily(s, "strait_service_bytes_total",
                             "Bytes of the service's flows, both directions.", MetricType::Counter);
    for (const auto& name : serviceOrder) {
      const ServiceAgg& a = services[name];
      const Labels l{{"service", name}};
      if (!a.first->listen.empty() || !a.first->protocol.empty())
        addSample(info, {{"listen", a.first->listen}, {"protocol", a.first->protocol}, {"service", name}}, 1);
      addSample(failOpen, l, a.failOpen ? 1 : 0);
      addSample(nBackends, l, num(a.backends));
      addSample(nUp, l, num(a.backendsUp));
      ServiceCounters c;
      for (uint16_t slot : a.slots) {
        if (t == nullptr || slot >= kMaxServiceSlots) continue;
        const auto& x = t->services[slot];
        c.packets += x.packets;
        c.bytes += x.bytes;
        c.flowsCreated += x.flowsCreated;
        c.flowsClosed += x.flowsClosed;
      }
      if (t == nullptr) continue;  // no counters this scrape: leave the series out rather than report 0
      addSample(sActive, l, num(activeFlows(c.flowsCreated, c.flowsClosed)));
      addSample(sFlows, l, num(c.flowsCreated));
      addSample(sPackets, l, num(c.packets));
      addSample(sBytes, l, num(c.bytes));
    }

    auto& capRate = addFamily(
        s, "strait_service_new_connections_capacity",
        "New connections per second the service can sustain before a SNAT pool runs dry: SNAT addresses x "
        "port range / time_wait (udp: idle) timeout per backend, over the heaviest backend's Maglev share.",
        MetricType::Gauge);
    auto& worst = addFamily(s, "strait_service_snat_worst_pool_use",
                            "Use (0-1) of the fullest SNAT pool of the service: (SNAT address, backend, "
                            "protocol) on one worker.",
                            MetricType::Gauge);
    for (const ServiceCapacity& c : topo.capacity) {
      addSample(capRate, {{"service", c.service}}, c.newConnectionsPerS);
      addSample(worst, {{"service", c.service}}, c.worstPoolUse);
    }

    auto& up = addFamily(s, "strait_backend_up", "1 when the backend passes health checks (or has none).",
                         MetricType::Gauge);
    auto& draining =
        addFamily(s, "strait_backend_draining",
                  "1 when the backend takes no new flows (removed or weight 0) while its existing "
                  "flows continue.",
                  MetricType::Gauge);
    auto& initial = addFamily(s, "strait_backend_initial",
                              "1 while the backend waits for its first passing health checks (rise) "
                              "and takes no new flows.",
                              MetricType::Gauge);
    auto& weight = addFamily(s, "strait_backend_weight", "Maglev weight of the backend.", MetricType::Gauge);
    auto& bActive = addFamily(s, "strait_backend_flows_active",
                              "Flows to the backend now in the flow tables.", MetricType::Gauge);
    auto& bFlows =
        addFamily(s, "strait_backend_flows_total", "Flows created to the backend.", MetricType::Counter);
    auto& bPackets = addFamily(s, "strait_backend_packets_total",
                               "Packets of the backend's flows, both directions.", MetricType::Counter);
    auto& bBytes = addFamily(s, "strait_backend_bytes_total",
                             "Bytes of the backend's flows, both directions.", MetricType::Counter);
    for (const auto& key : backendOrder) {
      const BackendAgg& a = backends[key];
      const Labels l{{"backend", key.second}, {"service", key.first}};
      addSample(up, l, a.up ? 1 : 0);
      addSample(draining, l, a.draining ? 1 : 0);
      addSample(initial, l, a.initial ? 1 : 0);
      addSample(weight, l, a.weight);
      BackendCounters c;
      for (uint16_t slot : a.slots) {
        if (t == nullptr || slot >= kMaxBackendSlots) continue;
        const auto& x = t->backends[slot];
        c.packets += x.packets;
        c.bytes += x.bytes;
        c.flowsCreated += x.flowsCreated;
        c.flowsClosed += x.flowsClosed;
      }
      if (t == nullptr) continue;
      addSample(bActive, l, num(activeFlows(c.flowsCreated, c.flowsClosed)));
      addSample(bFlows, l, num(c.flowsCreated));
      addSample(bPackets, l, num(c.packets));
      addSample(bBytes, l, num(c.bytes));
    }
  });

  buildSection(out, "NIC xstats", errors_, [&](Families& s) {
    const auto ports = rt_.ports();
    auto& f = addFamily(s, "strait_port_xstat",
                        "The NIC's extended statistics as the PMD names them (rte_eth_xstats_get); on ENA "
                        "these include the *_allowance_exceeded counters.",
                        MetricType::Untyped);
    for (const auto& p : ports) {
      std::set<std::string> seen;
      for (const auto& [name, value] : p.xstats) {
        if (!seen.insert(name).second) continue;
        addSample(f, {{"name", name}, {"port", p.name}}, num(value));
      }
    }
    // Shared-NIC ports only: no family at all without one.
    if (std::none_of(ports.begin(), ports.end(), [](const PortInfo& p) { return !p.xdpInterface.empty(); }))
      return;
    auto& x = addFamily(s, "strait_xdp_verdicts_total",
                        "Frames Strait's XDP program classified on a shared-NIC (xdp:IFNAME) interface, by "
                        "verdict: steer_* went to straitd, pass_* to the kernel, drop_no_socket found no "
                        "straitd socket on its queue (docs/dataplane.md has the table).",
                        MetricType::Counter);
    for (const auto& p : ports)
      for (const auto& [verdict, value] : p.xdpVerdicts)
        addSample(x, {{"interface", p.xdpInterface}, {"verdict", verdict}}, num(value));
    auto& k = addFamily(s, "strait_xdp_socket_drops_total",
                        "Frames the kernel did not deliver to straitd's AF_XDP sockets on a shared-NIC "
                        "interface (XDP_STATISTICS), by reason: rx_ring_full (steered while straitd's RX ring "
                        "was full: the worker did not drain it in time), rx_dropped (no fill-ring buffer, or "
                        "the frame too large), rx_invalid_descs / tx_invalid_descs (descriptors refused).",
                        MetricType::Counter);
    for (const auto& p : ports)
      for (const auto& [reason, value] : p.xdpSocketDrops)
        addSample(k, {{"interface", p.xdpInterface}, {"reason", reason}}, num(value));
    auto& e = addFamily(s, "strait_xdp_fill_ring_empty_total",
                        "Times the kernel found the fill ring of straitd's AF_XDP sockets on a shared-NIC "
                        "interface empty (XDP_STATISTICS rx_fill_ring_empty_descs).",
                        MetricType::Counter);
    for (const auto& p : ports)
      if (!p.xdpInterface.empty()) addSample(e, {{"interface", p.xdpInterface}}, num(p.xdpFillRingEmpty));
  });

  addSample(addFamily(out, "strait_metrics_errors_total",
                      "Scrape sections left out because their source failed (see straitd's log).",
                      MetricType::Counter),
            {}, num(errors_));
  return {std::make_move_iterator(out.begin()), std::make_move_iterator(out.end())};
}

std::string MetricsCollector::render() const { return prometheus::TextSerializer().Serialize(Collect()); }

namespace {

// Splits HOST:PORT ("[v6]:PORT" for IPv6) and resolves HOST to one numeric
// address, which is what civetweb's listening_ports accepts.
struct ListenAddr {
  sockaddr_storage sa{};
  socklen_t len = 0;
  std::string civet;  // "1.2.3.4:80" or "[::1]:80"
  std::string wake;   // where a local connect() reaches it: the address, or loopback for a wildcard
};

ListenAddr parseListen(const std::string& listen) {
  auto fail = [&](const std::string& why) {
    return std::runtime_error("metrics: cannot listen on '" + listen + "': " + why);
  };
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == listen.size())
    throw fail("expected HOST:PORT, e.g. 127.0.0.1:9469");
  std::string host = listen.substr(0, colon);
  const std::string portStr = listen.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') throw fail("an IPv6 host must be written [ADDRESS]");
    host = host.substr(1, host.size() - 2);
  }
  if (portStr.size() > 5 || portStr.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(portStr) > 65535)
    throw fail("port '" + portStr + "' is not a number 0-65535");

  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), portStr.c_str(), &hints, &res); rc != 0)
    throw fail("cannot resolve '" + host + "': " + gai_strerror(rc));
  ListenAddr a;
  std::memcpy(&a.sa, res->ai_addr, res->ai_addrlen);
  a.len = res->ai_addrlen;
  freeaddrinfo(res);
  char numeric[NI_MAXHOST];
  if (getnameinfo(reinterpret_cast<sockaddr*>(&a.sa), a.len, numeric, sizeof numeric, nullptr, 0,
                  NI_NUMERICHOST) != 0)
    throw fail("cannot format the resolved address");
  const bool v6 = a.sa.ss_family == AF_INET6;
  a.civet = v6 ? "[" + std::string(numeric) + "]:" + portStr : std::string(numeric) + ":" + portStr;
  const std::string any = v6 ? "::" : "0.0.0.0";
  a.wake = numeric == any ? (v6 ? "::1" : "127.0.0.1") : numeric;
  return a;
}

// civetweb reports a failed bind only as "null context"; try the bind
// first so the error can say why (address in use, not ours, ...).
void checkBindable(const ListenAddr& a, const std::string& listen) {
  const int fd = ::socket(a.sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    throw std::runtime_error("metrics: cannot listen on '" + listen + "': socket: " + std::strerror(errno));
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&a.sa), a.len) != 0 || ::listen(fd, 1) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error("metrics: cannot listen on '" + listen + "': " + std::strerror(err));
  }
  ::close(fd);
}

}  // namespace

MetricsExporter::MetricsExporter(const std::string& listen, const Runtime& rt, TopologyFn topology,
                                 std::string version)
    : collector_(std::make_shared<MetricsCollector>(rt, std::move(topology), std::move(version))) {
  const ListenAddr addr = parseListen(listen);
  checkBindable(addr, listen);
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(
        std::vector<std::string>{"listening_ports", addr.civet, "num_threads", "2"});
  } catch (const std::exception& e) {
    throw std::runtime_error("metrics: cannot listen on '" + listen + "': " + e.what());
  }
  exposer_->RegisterCollectable(collector_);
  const auto ports = exposer_->GetListeningPorts();
  if (ports.empty())
    throw std::runtime_error("metrics: cannot listen on '" + listen + "': no listening port");
  port_ = static_cast<uint16_t>(ports.front());
  wakeHost_ = addr.wake;
}

// civetweb's accept loop notices a stop request only when its poll() returns,
// which without traffic takes up to 2 s; connecting to the listener while it
// stops makes straitd's shutdown prompt. The exposer (and its HTTP threads)
// goes before the collector: it holds only a weak reference to it.
MetricsExporter::~MetricsExporter() {
  std::atomic<bool> stopped{false};
  std::thread waker([this, &stopped] {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    if (getaddrinfo(wakeHost_.c_str(), std::to_string(port_).c_str(), &hints, &res) != 0) return;
    for (int i = 0; i < 250 && !stopped.load(); ++i) {  // bounded: 250 x 20 ms
      const int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd >= 0) {
        (void)::connect(fd, res->ai_addr, res->ai_addrlen);
        ::close(fd);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    freeaddrinfo(res);
  });
  exposer_.reset();
  stopped.store(true);
  waker.join();
}

std::string MetricsExporter::render() const { return collector_->render(); }

}  // namespace strait::controlplane
