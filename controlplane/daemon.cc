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
#include "controlplane/dns.h"
#include "controlplane/health.h"
#include "controlplane/log.h"
#include "controlplane/metrics.h"
#include "controlplane/sd_notify.h"
#include "controlplane/snapshot_builder.h"
#include "controlplane/state.h"
#include "dataplane/dataplane_host.h"

#ifndef STRAIT_VERSION
#define STRAIT_VERSION "0.1.0"
#endif

namespace strait::controlplane {

using dataplane::DataplaneHost;
// The host's log levels are ours (its sink below casts).
static_assert(static_cast<int>(dataplane::HostLogLevel::kError) == static_cast<int>(LogLevel::kError) &&
              static_cast<int>(dataplane::HostLogLevel::kWarn) == static_cast<int>(LogLevel::kWarn) &&
              static_cast<int>(dataplane::HostLogLevel::kInfo) == static_cast<int>(LogLevel::kInfo));

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

  // Instance life cycle, read by lbctl (control-server thread) and the
  // health endpoint; written by the control thread.
  std::atomic<bool> drainRequested{false};  // `lbctl drain`
  std::atomic<bool> draining{false};
  std::atomic<bool> ready{false};
  std::atomic<uint32_t> shutdownDrainS{30};
  std::atomic<bool> degraded{true};
  std::string degradedWhy;  // guarded by state.mutex()

  // Ready for the front: every service has a backend that takes new flows
  // (up, weight > 0). Called with the state lock held, after each publish.
  void updateDegraded() {
    const std::string why = state.degradedReason();
    if (why != degradedWhy)
      logf(why.empty() ? LogLevel::kInfo : LogLevel::kWarn, "event=instance_%s%s%s",
           why.empty() ? "healthy" : "degraded", why.empty() ? "" : " reason=", why.empty() ? "" : logValue(why).c_str());
    degradedWhy = why;
    degraded.store(!why.empty());
  }

  const char* instanceState() const {
    if (draining.load()) return "draining";
    if (!ready.load()) return "starting";
    return degraded.load() ? "degraded" : "ready";
  }

  nlohmann::json instance(bool drain) {
    if (drain && !draining.load()) drainRequested.store(true);
    std::string why;
    {
      std::lock_guard lk(state.mutex());
      why = degradedWhy;
    }
    const bool willDrain = draining.load() || drainRequested.load();
    return nlohmann::json{{"state", willDrain ? "draining" : instanceState()},
                          {"healthy", !willDrain && ready.load() && !degraded.load()},
                          {"reason", why},
                          {"shutdown_drain_s", shutdownDrainS.load()},
                          {"flows_active", host->flowsActive()}};
  }

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
    updateDegraded();
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
  double tscHz() const override { return host->tscHz(); }
  uint64_t takeLoopMaxCycles(uint16_t w) const override { return host->takeLoopMaxCycles(w); }

  Topology topology() const {
    const std::vector<SnatPoolInfo> pools = host->snatPools();
    std::lock_guard lk(state.mutex());
    Topology t;
    t.capacity = serviceCapacity(state, pools);
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
        t.backends.push_back({s.config.name, addrOf(b.ip, b.port), b.slot, b.up, b.weight == 0, b.weight, b.initial});
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
      logf(LogLevel::kError, "event=dns_error service=%s name=%s reason=%s", t.service.c_str(), t.name.c_str(),
           logValue(e.what()).c_str());
    }
  }
};

Daemon::Daemon(Config cfg, DaemonOptions opts) : impl_(std::make_unique<Impl>()) {
  impl_->cfg = std::move(cfg);
  impl_->opts = std::move(opts);
}

Daemon::~Daemon() = default;

int Daemon::run(const DaemonSignals& signals) {
  Impl& d = *impl_;
  d.shutdownDrainS.store(d.cfg.instance.shutdownDrainS);
  {
    std::lock_guard lk(d.state.mutex());
    d.state.fromConfig(d.cfg);  // validated already; slots assigned here
  }
  dataplane::HostParams hp;
  hp.interfaces = d.cfg.interfaces;
  hp.dataplane = d.cfg.dataplane;
  hp.log = [](dataplane::HostLogLevel l, const std::string& line) {
    logf(static_cast<LogLevel>(l), "%s", line.c_str());
  };
  d.host = std::make_unique<DataplaneHost>(hp);

  d.health = std::make_unique<HealthChecker>(
      [&d](const std::string& s, uint32_t ip, uint16_t port, bool up) { d.onHealth(s, ip, port, up); });
  std::optional<sockaddr_in> resolver;
  if (!d.cfg.control.resolver.empty()) resolver = parseResolver(d.cfg.control.resolver);
  d.dns = std::make_unique<DnsWatcher>(resolver, d.cfg.control.dnsMinTtlS, d.cfg.control.dnsMaxTtlS,
                                       [&d](const DnsTarget& t, const std::vector<uint32_t>& a) { d.onDns(t, a); });
  uint64_t firstGeneration = 0;
  {
    std::lock_guard lk(d.state.mutex());
    firstGeneration = d.publish();
  }
  d.host->start();
  d.health->start();
  d.dns->start();

  d.metrics = std::make_unique<MetricsExporter>(d.opts.metricsListen, d, [&d] { return d.topology(); }, STRAIT_VERSION);
  logf(LogLevel::kInfo, "event=metrics_listen url=http://%s/metrics", d.opts.metricsListen.c_str());
  ControlHooks hooks;
  hooks.instance = [&d](bool drain) { return d.instance(drain); };
  hooks.reloaded = [&d](const Config& base) { d.shutdownDrainS.store(base.instance.shutdownDrainS); };
  d.api = std::make_unique<ControlApi>(d.state, d, std::move(hooks));
  ControlServer::Options co;
  co.path = d.opts.controlSocket;
  d.control = std::make_unique<ControlServer>(co, [&d](const nlohmann::json& r) { return d.api->handle(r); });
  d.control->start();
  logf(LogLevel::kInfo, "event=control_listen socket=%s", d.opts.controlSocket.c_str());

  // Forwarding: every worker runs the first snapshot.
  if (!d.host->waitPickup(firstGeneration, 10'000))
    logf(LogLevel::kWarn, "event=startup_slow reason=\"workers did not pick up the first snapshot within 10 s\"");
  d.ready.store(true);
  sdNotify("READY=1\nSTATUS=forwarding");
  logf(LogLevel::kInfo, "event=started services=%zu workers=%u pid=%d", d.cfg.services.size(),
       d.cfg.dataplane.workers, static_cast<int>(::getpid()));

  using Clock = std::chrono::steady_clock;
  const uint64_t watchdogUsec = sdWatchdogUsec();
  const auto watchdogEvery = std::chrono::microseconds(watchdogUsec / 2);
  auto lastWatchdog = Clock::now();
  std::vector<uint64_t> lastLoops(d.host->workerCount(), 0);
  bool stalledLogged = false;

  unsigned termSeen = 0, hupSeen = 0;
  Clock::time_point drainDeadline{}, lastFlowCheck{};
  auto lastReap = Clock::now();
  const char* exitReason = "";
  for (;;) {
    d.host->poll();
    const auto now = Clock::now();

    const unsigned term = signals.term.load();
    if (term != termSeen) {
      termSeen = term;
      if (d.draining.load()) {
        exitReason = "second SIGTERM";
        break;
      }
      d.drainRequested.store(true);
    }
    if (d.drainRequested.exchange(false) && !d.draining.load()) {
      const uint32_t s = d.shutdownDrainS.load();
      d.draining.store(true);
      {
        // The health endpoint fails from now on: the front stops sending.
        std::lock_guard lk(d.state.mutex());
        d.builder.setDraining(true);
        d.publish();
      }
      sdNotify("STOPPING=1\nSTATUS=draining");
      logf(LogLevel::kInfo, "event=drain_start shutdown_drain_s=%u flows_active=%llu", s,
           static_cast<unsigned long long>(d.host->flowsActive()));
      if (s == 0) {
        exitReason = "shutdown_drain_s = 0";
        break;
      }
      drainDeadline = now + std::chrono::seconds(s);
    }
    if (d.draining.load()) {
      if (now >= drainDeadline) {
        exitReason = "shutdown_drain_s elapsed";
        break;
      }
      // Counting flows walks every worker's table: ten times a second.
      if (now - lastFlowCheck >= std::chrono::milliseconds(100)) {
        lastFlowCheck = now;
        if (d.host->flowsActive() == 0) {
          exitReason = "no flow left";
          break;
        }
      }
    }

    const unsigned hup = signals.hup.load();
    if (hup != hupSeen) {
      hupSeen = hup;
      sdNotify("RELOADING=1");
      logf(LogLevel::kInfo, "event=reload_signal signal=SIGHUP");
      const nlohmann::json r = d.api->handle(nlohmann::json{{"version", kControlProtocolVersion}, {"command", "config reload"}});
      (void)r;  // the outcome is logged by the API
      sdNotify("READY=1");
    }

    if (now - lastReap >= std::chrono::milliseconds(500)) {
      lastReap = now;
      d.api->tick();
    }

    // The watchdog is fed only while every worker makes progress: a stuck
    // worker stops the keep-alives and systemd restarts the service.
    if (watchdogUsec != 0 && now - lastWatchdog >= watchdogEvery) {
      lastWatchdog = now;
      bool progress = true;
      auto counters = std::make_unique<WorkerCounters>();  // large: off the stack
      for (uint16_t w = 0; w < d.host->workerCount(); ++w) {
        *counters = d.host->worker(w);
        const uint64_t loops = counters->loops;
        if (loops == lastLoops[w]) {
          progress = false;
          if (!stalledLogged) logf(LogLevel::kError, "event=worker_stalled worker=%u", w);
        }
        lastLoops[w] = loops;
      }
      stalledLogged = !progress;
      if (progress) sdNotify("WATCHDOG=1");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }

  logf(LogLevel::kInfo, "event=shutdown reason=%s flows_active=%llu", logValue(exitReason).c_str(),
       static_cast<unsigned long long>(d.host->flowsActive()));
  sdNotify("STOPPING=1");
  d.control->stop();
  d.control.reset();
  d.metrics.reset();
  d.dns->stop();
  d.health->stop();
  d.host->stop();
  d.host.reset();
  logf(LogLevel::kInfo, "event=stopped");
  return 0;
}

}  // namespace strait::controlplane
