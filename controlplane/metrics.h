// Prometheus metrics of straitd. Workers only ever bump their own plain
// counters; everything here runs on control-side threads (the HTTP server's
// and whoever calls render()) and builds the whole exposition afresh from
// Runtime at every scrape: counters are summed at that moment, gauges are
// read, and the names of services and backends come from a topology callback
// so this file does not depend on the control plane's state model. Nothing
// here takes a lock a worker could wait on, so a scrape never stalls one.
//
// MetricsCollector is the exposition without a socket (render() is what
// `lbctl stats` prints, so its numbers are literally those of /metrics);
// MetricsExporter serves it on HOST:PORT at GET /metrics. Every metric, its
// labels and meaning are listed in docs/observability.md.
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "controlplane/capacity.h"
#include "controlplane/runtime.h"

namespace prometheus {
class Exposer;
}

namespace strait::controlplane {

// A backend as the metrics label it. `slot` indexes
// WorkerCounters::backends; two entries with the same (service, backend)
// labels are merged so the exposition never carries a duplicate series.
struct BackendLabel {
  std::string service;
  std::string backend;  // "IP:PORT"
  uint16_t slot = 0;
  bool up = false;        // health: passing (or no health check configured)
  bool draining = false;  // removed or weight 0: no new flows, old ones continue
  uint32_t weight = 0;
  bool initial = false;   // health check configured, no verdict yet: no new flows
};

// A service as the metrics label it. `slot` indexes WorkerCounters::services.
struct ServiceLabel {
  std::string name;
  uint16_t slot = 0;
  bool failOpen = false;  // every backend down: new flows spread over all of them
  std::string listen;     // "VIP:PORT"; empty = no strait_service_info series
  std::string protocol;   // "tcp" | "udp"
};

struct Topology {
  std::vector<ServiceLabel> services;
  std::vector<BackendLabel> backends;
  std::vector<ServiceCapacity> capacity;  // controlplane/capacity.h
};

using TopologyFn = std::function<Topology()>;
using MetricsClock = std::function<std::chrono::steady_clock::time_point()>;

// Builds the metric families from Runtime. Thread-safe: concurrent Collect()
// calls are serialised by an internal mutex (only control-side callers).
class MetricsCollector : public prometheus::Collectable {
 public:
  // The busy ratio is computed over intervals of at least this long, so an
  // `lbctl stats` right after a scrape does not shorten Prometheus' window.
  static constexpr std::chrono::milliseconds kBusyMinInterval{1000};

  // `clock` defaults to std::chrono::steady_clock::now (tests inject one).
  MetricsCollector(const Runtime& rt, TopologyFn topology, std::string version = "unknown",
                   MetricsClock clock = {});

  // The prometheus::Collectable entry point used by the HTTP server. Never
  // throws: a failing source (topology callback, Runtime) is logged, counted
  // in strait_metrics_errors_total, and its series are left out.
  std::vector<prometheus::MetricFamily> Collect() const override;

  // The same families in the Prometheus text format.
  std::string render() const;

 private:
  struct BusySample {
    bool valid = false;
    std::chrono::steady_clock::time_point at{};
    uint64_t busyCycles = 0;
    uint64_t totalCycles = 0;
    double ratio = 0.0;
  };

  std::vector<prometheus::MetricFamily> collectNow() const;
  double busyRatio(uint16_t worker, const WorkerCounters& c, std::chrono::steady_clock::time_point now) const;

  const Runtime& rt_;
  TopologyFn topology_;
  std::string version_;
  MetricsClock clock_;
  mutable std::mutex mutex_;
  mutable std::vector<BusySample> busy_;
  mutable uint64_t errors_ = 0;
};

// GET /metrics on HOST:PORT (numeric IPv4, "[IPv6]" or a resolvable name;
// port 0 picks a free one, see port()). The HTTP server runs on its own
// threads; Runtime and the topology callback are called from them.
class MetricsExporter {
 public:
  // Throws std::runtime_error naming `listen` when it is malformed or the
  // address cannot be listened on.
  MetricsExporter(const std::string& listen, const Runtime& rt, TopologyFn topology,
                  std::string version = "unknown");
  ~MetricsExporter();
  MetricsExporter(const MetricsExporter&) = delete;
  MetricsExporter& operator=(const MetricsExporter&) = delete;

  // The text /metrics serves (without the HTTP server's own exposer_* series).
  std::string render() const;
  // The TCP port actually listened on.
  uint16_t port() const { return port_; }

 private:
  std::shared_ptr<MetricsCollector> collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  uint16_t port_ = 0;
  std::string wakeHost_;  // numeric address a local connect() reaches the listener on
};

}  // namespace strait::controlplane
