// LbState: the control plane's runtime model of what straitd serves: the
// interfaces' addresses, the services, their backends (literal IP:PORT and
// DNS-named), weights, health, and backends that were removed but still
// carry flows. Snapshots for the workers are built from it
// (controlplane/snapshot_builder.h); lbctl, the health checker and the DNS
// resolver change it.
//
// Locking contract: LbState never locks itself. Every member function,
// const ones included, must be called with mutex() held, and the holder
// calls Runtime::publish() (which builds a snapshot from this state) before
// releasing the lock whenever a mutator reported a change. Holding the one
// lock across "mutate, build, publish" is what keeps the published
// snapshot and the model in step.
//
// Slots: every service and every backend gets a stable counter slot
// (< kMaxServiceSlots, < kMaxBackendSlots) that indexes the per-worker
// counters. A backend slot belongs to one (service, ip:port). A removed
// backend stays in its service's `draining` list, out of the Maglev table,
// until (a) a snapshot without it has been picked up by every worker and
// (b) its active flow count (flowsCreated - flowsClosed) is zero; only then
// is its slot freed (see reap()). Freed slots go to the tail of a FIFO so
// they are reused as late as possible.
//
// Removing a service flushes its flows: the VIP stops being ours at once,
// so those flows could not continue anyway; every backend slot of the
// service is marked flushed until the dataplane has dropped its flows.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "controlplane/config.h"
#include "strait/counters.h"

namespace strait::controlplane {

class Runtime;

// A rejected state change; the message is meant for the lbctl user.
class StateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A reload that changes something only a restart can change.
class RestartRequired : public StateError {
 public:
  using StateError::StateError;
};

enum class BackendPhase : uint8_t {
  kActive,    // configured: takes new flows when weight > 0 and up
  kDraining,  // removed: no new flows, existing flows continue until they end
  kFlushing,  // removed with --flush: existing flows are dropped by the dataplane
};

struct Backend {
  uint32_t ip = 0;  // host order
  uint16_t port = 0;
  uint16_t slot = 0;
  uint32_t weight = 1;  // 0 = drain: listed, takes no new flows
  bool up = true;       // health-check state
  // With a health check configured, a backend that joins the service (at
  // start, by reload, lbctl or DNS) is `initial`: it takes no new flows
  // until its first `rise` passing checks, like an NLB target in its
  // `initial` state. Its first verdict (up or down) clears it.
  bool initial = false;
  BackendPhase phase = BackendPhase::kActive;
  bool literal = false;               // configured as IP:PORT
  std::vector<std::string> dnsNames;  // "name:port" of the DNS-named backends that resolved to it
  // For removed backends: the first published snapshot generation that no
  // longer offers it to new flows; 0 until that snapshot is published.
  uint64_t releaseGeneration = 0;
};

// A backend configured by DNS name: every address the name resolves to is a
// backend of the service with this weight.
struct DnsBackend {
  std::string name;  // lower case, no trailing dot
  uint16_t port = 0;
  uint32_t weight = 1;
  std::vector<uint32_t> addresses;  // current resolution (host order), sorted
};

struct Service {
  // The service as configured: config.backends is the configured list
  // (literal and DNS-named entries in the order they were added).
  ServiceConfig config;
  uint16_t slot = 0;
  std::vector<Backend> backends;  // current backends (phase kActive), in order of addition
  std::vector<Backend> draining;  // removed, kept until their flows are gone
  std::vector<DnsBackend> dns;    // one per DNS-named entry of config.backends

  // True when the service has backends with weight > 0 and every one of them
  // was checked and is down: the Maglev table then spreads over all of them
  // (fail open). Backends still `initial` are not judged yet, so a service
  // whose backends are all initial does not fail open.
  bool failOpen() const;
  bool hasHealthCheck() const { return config.health.type != "none"; }
  const Backend* findBackend(uint32_t ip, uint16_t port) const;  // active or draining
};

// A removed service whose flows are still being flushed; its slots are
// freed by reap() like draining backends'.
struct RetiredService {
  std::string name;
  uint16_t slot = 0;
  uint64_t releaseGeneration = 0;
  std::vector<Backend> backends;  // all kFlushing
};

// What the health checker probes.
struct HealthTarget {
  std::string service;
  uint16_t serviceSlot = 0;
  uint16_t backendSlot = 0;
  uint32_t ip = 0;  // host order
  uint16_t port = 0;
  HealthCheckConfig check;
};

// What the DNS resolver resolves.
struct DnsTarget {
  std::string service;
  std::string name;
  uint16_t port = 0;
};

class LbState {
 public:
  LbState();
  LbState(const LbState&) = delete;
  LbState& operator=(const LbState&) = delete;

  std::mutex& mutex() const { return mutex_; }

  // Replaces the whole state with `c` (already validated by parseConfig).
  // Slots are assigned afresh in config order. Throws StateError.
  void fromConfig(const Config& c);
  // The running configuration, as `lbctl config show` renders it.
  Config toConfig() const;
  // The sections other than [[service]] (dataplane, interfaces, control,
  // instance) as last loaded; `file` is where they came from.
  const Config& base() const { return base_; }

  // Reload: makes the running services those of `next` (a validated config
  // from the same file), through the same changes lbctl makes: services
  // added and removed (a changed listen address or protocol is a remove and
  // an add), and for kept services their backends, weights, SNAT addresses,
  // health check, mss_clamp and maglev_size. Sections that need a restart
  // (dataplane, interfaces, control, instance.health_endpoint) must be
  // unchanged. All or nothing: on any error (RestartRequired or StateError)
  // the state is untouched. Returns one line per change, for the log.
  std::vector<std::string> applyConfig(const Config& next);
  const std::vector<InterfaceConfig>& interfaces() const { return base_.interfaces; }
  std::vector<uint32_t> interfaceIps() const;  // host order
  const std::vector<Service>& services() const { return services_; }
  const std::vector<RetiredService>& retired() const { return retired_; }
  const Service* findService(const std::string& name) const;

  // Adds a service (config.backends are added too; an empty config.snat
  // means the address of the interface whose subnet holds the VIP).
  // Returns its slot. Throws StateError.
  uint16_t addService(ServiceConfig config);
  // Removes a service and flushes its flows. Throws StateError.
  void removeService(const std::string& name);

  // `backend` as parseBackend returns it: a literal IP:PORT or a DNS name
  // (whose addresses arrive later through setDnsAddresses). Throws StateError.
  void addBackend(const std::string& service, const BackendConfig& backend);
  // Stops new flows to the backend at once; its flows drain, or are dropped
  // when `flush`. A DNS-named entry removes every address it resolved to.
  // Removing an already draining backend with `flush` escalates to a flush.
  void removeBackend(const std::string& service, const BackendConfig& backend, bool flush);
  // Weight 0 drains: the backend stays listed and takes no new flows.
  void setWeight(const std::string& service, const BackendConfig& backend, uint32_t weight);

  // Health checker: returns true when the state changed (publish then).
  // Unknown services or backends are ignored (a check may race a removal).
  bool setHealth(const std::string& service, uint32_t ip, uint16_t port, bool up);
  // DNS resolver: the current addresses of `name:port` in `service`.
  // Addresses that disappear drain like `backend remove`. Returns true when
  // the state changed; false for an unknown service or name. Throws
  // StateError when the new set does not fit (slots, Maglev size).
  bool setDnsAddresses(const std::string& service, const std::string& name, uint16_t port,
                       std::vector<uint32_t> addresses);

  // Why the instance should not take new traffic from its front: "" when
  // every service has a backend up with weight > 0, else the first service
  // that has none ("service web has no backend up").
  std::string degradedReason() const;

  std::vector<HealthTarget> healthTargets() const;
  std::vector<DnsTarget> dnsTargets() const;

  // Stamps every removed backend and service that has no release
  // generation yet with `generation`. Call right after publishing that
  // generation (Runtime::publish implementations do it; it is idempotent).
  void notePublished(uint64_t generation);
  // Frees the slots of removed backends (and removed services) whose release
  // generation every worker has picked up (`minWorkerGeneration`) and whose
  // active flow count is zero. Returns how many slots were freed; publish
  // when it is not zero (flush bits and draining lists change).
  std::size_t reap(const std::function<uint64_t(uint16_t backendSlot)>& activeFlows,
                   uint64_t minWorkerGeneration);
  // Same, reading both from the runtime.
  std::size_t reap(const Runtime& runtime);

  std::size_t freeBackendSlots() const { return freeBackendSlots_.size(); }
  std::size_t freeServiceSlots() const { return freeServiceSlots_.size(); }

 private:
  Service* findMutable(const std::string& name);
  Service& require(const std::string& name);
  // Recomputes `s.backends` from `configured` and the DNS resolutions:
  // backends that left move to draining (flushed when `flush`), new ones get
  // slots (or are revived from draining). Checks first, so a failure leaves
  // the state unchanged.
  void reconcile(Service& s, std::vector<BackendConfig> configured, std::vector<DnsBackend> dns, bool flush);
  uint16_t takeBackendSlot();
  void checkBackendAddress(const Service& s, const BackendConfig& b) const;
  void checkBackendEntry(const Service& s, const std::vector<BackendConfig>& before,
                         const BackendConfig& b) const;
  // Validates a service's SNAT list (defaulting it to the VIP's interface
  // address), maglev_size and mss_clamp. Throws StateError.
  void checkServiceSettings(ServiceConfig& cfg) const;
  // Reload of one kept service: settings in place, backends reconciled.
  void updateService(Service& s, const ServiceConfig& cfg);
  void copyFrom(const LbState& o);

  mutable std::mutex mutex_;
  Config base_;  // dataplane, interfaces and control sections; services live in services_
  std::vector<Service> services_;
  std::vector<RetiredService> retired_;
  std::deque<uint16_t> freeServiceSlots_;
  std::deque<uint16_t> freeBackendSlots_;
};

}  // namespace strait::controlplane
