// The daemon: wires the dataplane host, the LB state, snapshot publication,
// the control socket, health checks, DNS-named backends and metrics, and
// runs the control thread's loop until asked to stop.
#include "controlplane/daemon.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "controlplane/api.h"
#include "controlplane/control_server.h"
#include "controlplane/dataplane_host.h"
#include "controlplane/dns.h"
#include "controlplane/health.h"
#include "controlplane/log.h"
#include "controlplane/metrics.h"
#include "controlplane/snapshot_builder.h"
#include "controlplane/state.h"

#ifndef STRAIT_VERSION
#define STRAIT_VERSION "0.1.0"
#endif

namespace strait::controlplane {

struct Daemon::Impl : public Runtime {
  Config cfg;
  DaemonOptions opts;
  std::unique_ptr<DataplaneHost> host;
  LbState state;
  uint64_t generation = 0;
  // Reuses a service's Maglev table while its backend set is unchanged, so
  // a health flap in one service rebuilds one table, not all of them.
  SnapshotBuilder builder;
  std::unique_ptr<HealthChecker> health;
  std::unique_ptr<DnsWatcher> dns;
  std::unique_ptr<MetricsExporter> metrics;
  std::unique_ptr<ControlApi> api;
  std::unique_ptr<ControlServer> control;

  // Runtime. publish() is called with state.mutex() held.
  uint64_t publish() override {
    ++generation;
    host->publish(builder.build(state, generation));
    state.notePublished(generation);
    // A change is in force when lbctl returns: wait (bounded) until every
    // worker runs the new snapshot, so "no new flows to a removed backend"
    // holds from the moment the command answers.
    if (!host->waitPickup(generation, 500))
      logf(LogLevel::kWarn, "snapshot %llu not picked up by every worker within 500 ms",
           static_cast<unsigned long long>(generation));
    if (health) health->setTargets(state.healthTargets());
    if (dns) dns->setTargets(state.dnsTargets());
    logf(LogLevel::kDebug, "published snapshot generation %llu", static_cast<unsigned long long>(generation));
    return generation;
  }
  WorkerCounters totals() const override { return host->totals(); }
  WorkerCounters worker(uint16_t w) const override { return host->worker(w); }
  uint16_t workerCount() const override { return host->workerCount(); }
  uint64_t flowsActive() const override { return host->flowsActive(); }
  uint64_t flowCapacity() const override { return host->flowCapacity(); }
  std::array<uint64_t, kFlowStateCount> flowsByState() const override { return host->flowsByState(); }
  std::vector<FlowInfo> flows(std::optional<uint16_t> serviceSlot, std::size_t limit) const override {
    return host->flows(serviceSlot, limit);
  }
  std::vector<SnatPoolInfo> snatPools() const override { return host->snatPools(); }
  std::vector<PortInfo> ports() const override { return host->ports(); }
  std::size_t neighbourCount() const override { return host->neighbourCount(); }
  uint64_t snapshotGeneration() const override { return host->snapshotGeneration(); }

  Topology topology() const {
    std::lock_guard lk(state.mutex());
    Topology t;
    auto addrOf = [](uint32_t ip, uint16_t port) { return formatIpv4(ip) + ":" + std::to_string(port); };
    for (const auto& s : state.services()) {
      ServiceLabel sl;
      sl.name = s.config.name;
      sl.slot = s.slot;
      sl.failOpen = s.failOpen();
      sl.listen = addrOf(s.config.vip, s.config.port);
      sl.protocol = s.config.proto == IPPROTO_UDP ? "udp" : "tcp";
      t.services.push_back(sl);
      for (const auto& b : s.backends)
        t.backends.push_back({s.config.name, addrOf(b.ip, b.port), b.slot, b.up, b.weight == 0, b.weight});
      for (const auto& b : s.draining)
        t.backends.push_back({s.config.name, addrOf(b.ip, b.port), b.slot, b.up, true, b.weight});
    }
    return t;
  }

  void onHealth(const std::string& service, uint32_t ip, uint16_t port, bool up) {
    std::lock_guard lk(state.mutex());
    if (state.setHealth(service, ip, port, up)) publish();
  }

  void onDns(const DnsTarget& t, const std::vector<uint32_t>& addresses) {
    std::lock_guard lk(state.mutex());
    try {
      if (state.setDnsAddresses(t.service, t.name, t.port, addresses)) publish();
    } catch (const std::exception& e) {
      logf(LogLevel::kError, "dns: service %s: %s: %s", t.service.c_str(), t.name.c_str(), e.what());
    }
  }
};

Daemon::Daemon(Config cfg, DaemonOptions opts) : impl_(std::make_unique<Impl>()) {
  impl_->cfg = std::move(cfg);
  impl_->opts = std::move(opts);
}

Daemon::~Daemon() = default;

int Daemon::run(const std::atomic<bool>& stop) {
  Impl& d = *impl_;
  {
    std::lock_guard lk(d.state.mutex());
    d.state.fromConfig(d.cfg);  // validated already; slots assigned here
  }
  d.host = std::make_unique<DataplaneHost>(d.cfg);

  d.health = std::make_unique<HealthChecker>(
      [&d](const std::string& s, uint32_t ip, uint16_t port, bool up) { d.onHealth(s, ip, port, up); });
  std::optional<sockaddr_in> resolver;
  if (!d.cfg.control.resolver.empty()) resolver = parseResolver(d.cfg.control.resolver);
  d.dns = std::make_unique<DnsWatcher>(resolver, d.cfg.control.dnsMinTtlS, d.cfg.control.dnsMaxTtlS,
                                       [&d](const DnsTarget& t, const std::vector<uint32_t>& a) { d.onDns(t, a); });
  {
    std::lock_guard lk(d.state.mutex());
    d.publish();
  }
  d.host->start();
  d.health->start();
  d.dns->start();

  d.metrics = std::make_unique<MetricsExporter>(d.opts.metricsListen, d, [&d] { return d.topology(); }, STRAIT_VERSION);
  logf(LogLevel::kInfo, "metrics on http://%s/metrics", d.opts.metricsListen.c_str());
  d.api = std::make_unique<ControlApi>(d.state, d);
  ControlServer::Options co;
  co.path = d.opts.controlSocket;
  d.control = std::make_unique<ControlServer>(co, [&d](const nlohmann::json& r) { return d.api->handle(r); });
  d.control->start();
  logf(LogLevel::kInfo, "control socket %s", d.opts.controlSocket.c_str());
  logf(LogLevel::kInfo, "straitd running: %zu service(s), %u worker(s)", d.cfg.services.size(), d.cfg.dataplane.workers);

  auto lastReap = std::chrono::steady_clock::now();
  while (!stop.load()) {
    d.host->poll();
    auto now = std::chrono::steady_clock::now();
    if (now - lastReap >= std::chrono::milliseconds(500)) {
      lastReap = now;
      d.api->tick();
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }

  logf(LogLevel::kInfo, "shutting down");
  d.control->stop();
  d.control.reset();
  d.metrics.reset();
  d.dns->stop();
  d.health->stop();
  d.host->stop();
  d.host.reset();
  logf(LogLevel::kInfo, "stopped");
  return 0;
}

}  // namespace strait::controlplane
