// LbState: service and backend bookkeeping, slot assignment and the
// draining / flushing life cycle of removed backends. See state.h for the
// locking contract and the slot rules.
#include "controlplane/state.h"

#include <netinet/in.h>

#include <algorithm>
#include <memory>
#include <unordered_map>
#include <utility>

#include "controlplane/runtime.h"
#include "dataplane/maglev.h"

namespace strait::controlplane {

namespace {

std::string q(const std::string& s) { return "\"" + s + "\""; }

std::string backendLabel(const BackendConfig& b) { return b.host + ":" + std::to_string(b.port); }

bool sameEntry(const BackendConfig& a, const BackendConfig& b) {
  return a.host == b.host && a.port == b.port;
}

}  // namespace

bool Service::failOpen() const {
  bool any = false;
  for (const Backend& b : backends) {
    if (b.weight == 0) continue;
    if (b.up || b.initial) return false;
    any = true;
  }
  return any;
}

const Backend* Service::findBackend(uint32_t ip, uint16_t port) const {
  for (const Backend& b : backends)
    if (b.ip == ip && b.port == port) return &b;
  for (const Backend& b : draining)
    if (b.ip == ip && b.port == port) return &b;
  return nullptr;
}

LbState::LbState() {
  for (uint32_t i = 0; i < kMaxServiceSlots; ++i) freeServiceSlots_.push_back(static_cast<uint16_t>(i));
  for (uint32_t i = 0; i < kMaxBackendSlots; ++i) freeBackendSlots_.push_back(static_cast<uint16_t>(i));
}

void LbState::fromConfig(const Config& c) {
  services_.clear();
  retired_.clear();
  freeServiceSlots_.clear();
  freeBackendSlots_.clear();
  for (uint32_t i = 0; i < kMaxServiceSlots; ++i) freeServiceSlots_.push_back(static_cast<uint16_t>(i));
  for (uint32_t i = 0; i < kMaxBackendSlots; ++i) freeBackendSlots_.push_back(static_cast<uint16_t>(i));
  base_ = c;
  base_.services.clear();
  for (const ServiceConfig& s : c.services) {
    try {
      addService(s);
    } catch (const StateError& e) {
      throw StateError("service " + q(s.name) + ": " + e.what());
    }
  }
}

Config LbState::toConfig() const {
  Config c = base_;
  for (const Service& s : services_) c.services.push_back(s.config);
  return c;
}

std::vector<uint32_t> LbState::interfaceIps() const {
  std::vector<uint32_t> ips;
  for (const InterfaceConfig& i : base_.interfaces) ips.push_back(i.address.addr);
  return ips;
}

const Service* LbState::findService(const std::string& name) const {
  for (const Service& s : services_)
    if (s.config.name == name) return &s;
  return nullptr;
}

Service* LbState::findMutable(const std::string& name) {
  for (Service& s : services_)
    if (s.config.name == name) return &s;
  return nullptr;
}

Service& LbState::require(const std::string& name) {
  if (Service* s = findMutable(name)) return *s;
  throw StateError("no service named " + q(name));
}

// One entry of a service's backend list, against the entries before it.
void LbState::checkBackendEntry(const Service& s, const std::vector<BackendConfig>& before,
                                const BackendConfig& b) const {
  checkBackendAddress(s, b);
  for (const BackendConfig& o : before)
    if (sameEntry(o, b)) throw StateError("backend " + q(backendLabel(b)) + " is listed twice");
}

void LbState::checkBackendAddress(const Service& s, const BackendConfig& b) const {
  if (b.port == 0) throw StateError("backend " + q(backendLabel(b)) + ": port must be 1-65535");
  if (b.weight > kMaxBackendWeight)
    throw StateError("backend " + q(backendLabel(b)) + ": weight " + std::to_string(b.weight) +
                     " out of range 0-" + std::to_string(kMaxBackendWeight));
  if (b.isDnsName()) return;
  for (const InterfaceConfig& i : base_.interfaces)
    if (i.address.addr == b.ip)
      throw StateError("backend " + q(backendLabel(b)) + " is an interface address of this load balancer");
  if (b.ip == s.config.vip) throw StateError("backend " + q(backendLabel(b)) + " is the service's own VIP");
  for (const Service& o : services_)
    if (o.config.vip == b.ip)
      throw StateError("backend " + q(backendLabel(b)) + " is the VIP of service " + q(o.config.name));
}

void LbState::checkServiceSettings(ServiceConfig& cfg) const {
  if (cfg.snat.empty()) cfg.snat.push_back(interfaceFor(base_.interfaces, cfg.vip)->address.addr);
  for (std::size_t i = 0; i < cfg.snat.size(); ++i) {
    if (std::string why = localAddressProblem(base_.interfaces, cfg.snat[i]); !why.empty())
      throw StateError("snat " + q(formatIpv4(cfg.snat[i])) + ": " + why);
    if (std::find(cfg.snat.begin(), cfg.snat.begin() + static_cast<std::ptrdiff_t>(i), cfg.snat[i]) !=
        cfg.snat.begin() + static_cast<std::ptrdiff_t>(i))
      throw StateError("snat " + q(formatIpv4(cfg.snat[i])) + " is listed twice");
  }
  if (!dataplane::isPrime(cfg.maglevSize) || cfg.maglevSize < 3)
    throw StateError("maglev_size " + std::to_string(cfg.maglevSize) + " is not a prime >= 3");
  if (cfg.mssClamp != 0 && (cfg.mssClamp < 536 || cfg.mssClamp > 9176))
    throw StateError("mss_clamp " + std::to_string(cfg.mssClamp) + " must be 0 (off) or 536-9176");
  if (std::string why = healthCheckProblem(cfg.health); !why.empty()) throw StateError("health_check." + why);
}

uint16_t LbState::addService(ServiceConfig cfg) {
  if (std::string why = serviceNameProblem(cfg.name); !why.empty())
    throw StateError("service name " + q(cfg.name) + ": " + why);
  if (findService(cfg.name)) throw StateError("service " + q(cfg.name) + " already exists");
  if (cfg.proto != IPPROTO_TCP && cfg.proto != IPPROTO_UDP) throw StateError("protocol must be tcp or udp");
  if (cfg.port == 0) throw StateError("listen port must be 1-65535");
  const std::string listen = formatEndpoint(cfg.vip, cfg.port);
  if (std::string why = localAddressProblem(base_.interfaces, cfg.vip); !why.empty())
    throw StateError("listen " + q(listen) + ": " + why);
  if (cfg.proto == IPPROTO_TCP && cfg.vip == base_.instance.healthIp && cfg.port == base_.instance.healthPort)
    throw StateError("listen " + q(listen) + " is the instance health endpoint");
  for (const Service& o : services_) {
    if (o.config.vip == cfg.vip && o.config.port == cfg.port && o.config.proto == cfg.proto)
      throw StateError("listen " + q(listen) + (cfg.proto == IPPROTO_UDP ? "/udp" : "/tcp") +
                       " is already used by service " + q(o.config.name));
    for (const BackendConfig& b : o.config.backends)
      if (!b.isDnsName() && b.ip == cfg.vip)
        throw StateError("listen " + q(listen) + ": address is a backend of service " + q(o.config.name));
  }
  checkServiceSettings(cfg);
  if (freeServiceSlots_.empty())
    throw StateError("no free service slot: at most " + std::to_string(kMaxServiceSlots) +
                     " services (removed services hold their slot until their flows are flushed)");

  Service s;
  s.config = cfg;
  s.config.backends.clear();
  std::vector<BackendConfig> configured;
  std::vector<DnsBackend> dns;
  for (const BackendConfig& b : cfg.backends) {
    checkBackendEntry(s, configured, b);
    configured.push_back(b);
    if (b.isDnsName()) dns.push_back(DnsBackend{b.host, b.port, b.weight, {}});
  }
  s.slot = freeServiceSlots_.front();
  freeServiceSlots_.pop_front();
  try {
    reconcile(s, std::move(configured), std::move(dns), false);
  } catch (...) {
    freeServiceSlots_.push_front(s.slot);
    throw;
  }
  services_.push_back(std::move(s));
  return services_.back().slot;
}

void LbState::removeService(const std::string& name) {
  auto it = std::find_if(services_.begin(), services_.end(),
                         [&](const Service& s) { return s.config.name == name; });
  if (it == services_.end()) throw StateError("no service named " + q(name));
  RetiredService r;
  r.name = it->config.name;
  r.slot = it->slot;
  for (Backend b : it->backends) {
    b.phase = BackendPhase::kFlushing;
    b.releaseGeneration = 0;
    r.backends.push_back(std::move(b));
  }
  for (Backend b : it->draining) {
    b.phase = BackendPhase::kFlushing;
    r.backends.push_back(std::move(b));
  }
  retired_.push_back(std::move(r));
  services_.erase(it);
}

uint16_t LbState::takeBackendSlot() {
  const uint16_t slot = freeBackendSlots_.front();
  freeBackendSlots_.pop_front();
  return slot;
}

void LbState::reconcile(Service& s, std::vector<BackendConfig> configured, std::vector<DnsBackend> dns,
                        bool flush) {
  struct Want {
    uint32_t ip;
    uint16_t port;
    uint32_t weight;
    bool literal;
    std::vector<std::string> names;
  };
  const auto keyOf = [](uint32_t ip, uint16_t port) { return (uint64_t{ip} << 16) | port; };
  std::vector<Want> want;
  std::unordered_map<uint64_t, std::size_t> wantIndex;
  for (const BackendConfig& b : configured) {
    if (b.isDnsName()) continue;
    wantIndex.emplace(keyOf(b.ip, b.port), want.size());
    want.push_back({b.ip, b.port, b.weight, true, {}});
  }
  for (const BackendConfig& b : configured) {
    if (!b.isDnsName()) continue;
    auto d = std::find_if(dns.begin(), dns.end(),
                          [&](const DnsBackend& x) { return x.name == b.host && x.port == b.port; });
    if (d == dns.end()) continue;
    d->weight = b.weight;
    for (uint32_t ip : d->addresses) {
      const auto [it, added] = wantIndex.emplace(keyOf(ip, b.port), want.size());
      if (added) {
        want.push_back({ip, b.port, b.weight, false, {backendLabel(b)}});
      } else {
        want[it->second].names.push_back(backendLabel(b));
      }
    }
  }

  // Check everything before changing anything.
  if (want.size() >= s.config.maglevSize)
    throw StateError("service " + q(s.config.name) + ": " + std::to_string(want.size()) +
                     " backends do not fit maglev_size " + std::to_string(s.config.maglevSize) +
                     " (it must be larger than the number of backends)");
  std::unordered_map<uint64_t, std::size_t> activeIndex;
  for (std::size_t i = 0; i < s.backends.size(); ++i)
    activeIndex.emplace(keyOf(s.backends[i].ip, s.backends[i].port), i);
  std::unordered_map<uint64_t, std::size_t> revivable;  // draining (not flushing) entries
  for (std::size_t i = 0; i < s.draining.size(); ++i)
    if (s.draining[i].phase == BackendPhase::kDraining)
      revivable.emplace(keyOf(s.draining[i].ip, s.draining[i].port), i);
  std::size_t newSlots = 0;
  for (const Want& w : want) {
    const uint64_t k = keyOf(w.ip, w.port);
    if (!activeIndex.contains(k) && !revivable.contains(k)) ++newSlots;
  }
  if (newSlots > freeBackendSlots_.size())
    throw StateError("no free backend slot: at most " + std::to_string(kMaxBackendSlots) +
                     " backends in all services (removed backends hold their slot until their flows end)");

  // Apply: keep surviving backends in their order, then add the new ones.
  std::vector<Backend> next;
  std::vector<Backend> leaving;
  std::vector<bool> placed(want.size(), false);
  for (Backend& b : s.backends) {
    const auto it = wantIndex.find(keyOf(b.ip, b.port));
    if (it == wantIndex.end()) {
      b.phase = flush ? BackendPhase::kFlushing : BackendPhase::kDraining;
      b.releaseGeneration = 0;
      leaving.push_back(std::move(b));
      continue;
    }
    const Want& w = want[it->second];
    placed[it->second] = true;
    b.weight = w.weight;
    b.literal = w.literal;
    b.dnsNames = w.names;
    next.push_back(std::move(b));
  }
  std::vector<bool> revived(s.draining.size(), false);
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (placed[i]) continue;
    const Want& w = want[i];
    Backend b;
    if (const auto r = revivable.find(keyOf(w.ip, w.port)); r != revivable.end()) {
      // Re-added while draining: keep the slot so its flows and counters
      // continue under the same identity.
      b = std::move(s.draining[r->second]);
      revived[r->second] = true;
      b.releaseGeneration = 0;
    } else {
      b.ip = w.ip;
      b.port = w.port;
      b.slot = takeBackendSlot();
    }
    b.phase = BackendPhase::kActive;
    // A joining backend proves itself first when there is a check to
    // prove it with (the checker starts it as a new target too).
    b.up = !s.hasHealthCheck();
    b.initial = s.hasHealthCheck();
    b.weight = w.weight;
    b.literal = w.literal;
    b.dnsNames = w.names;
    next.push_back(std::move(b));
  }
  std::vector<Backend> draining;
  for (std::size_t i = 0; i < s.draining.size(); ++i)
    if (!revived[i]) draining.push_back(std::move(s.draining[i]));
  for (Backend& b : leaving) draining.push_back(std::move(b));
  s.backends = std::move(next);
  s.draining = std::move(draining);
  s.config.backends = std::move(configured);
  s.dns = std::move(dns);
}

void LbState::addBackend(const std::string& service, const BackendConfig& backend) {
  Service& s = require(service);
  checkBackendAddress(s, backend);
  for (const BackendConfig& o : s.config.backends)
    if (sameEntry(o, backend))
      throw StateError("backend " + q(backendLabel(backend)) + " is already in service " + q(service));
  std::vector<BackendConfig> configured = s.config.backends;
  configured.push_back(backend);
  std::vector<DnsBackend> dns = s.dns;
  if (backend.isDnsName()) dns.push_back(DnsBackend{backend.host, backend.port, backend.weight, {}});
  reconcile(s, std::move(configured), std::move(dns), false);
}

void LbState::removeBackend(const std::string& service, const BackendConfig& backend, bool flush) {
  Service& s = require(service);
  std::vector<BackendConfig> configured = s.config.backends;
  auto it = std::find_if(configured.begin(), configured.end(),
                         [&](const BackendConfig& o) { return sameEntry(o, backend); });
  if (it != configured.end()) {
    configured.erase(it);
    std::vector<DnsBackend> dns = s.dns;
    if (backend.isDnsName())
      std::erase_if(dns,
                    [&](const DnsBackend& d) { return d.name == backend.host && d.port == backend.port; });
    reconcile(s, std::move(configured), std::move(dns), flush);
    return;
  }
  if (!backend.isDnsName()) {
    for (const Backend& b : s.backends)
      if (b.ip == backend.ip && b.port == backend.port && !b.dnsNames.empty())
        throw StateError("backend " + q(backendLabel(backend)) + " of service " + q(service) +
                         " comes from DNS name " + q(b.dnsNames.front()) + ": remove that name instead");
    for (Backend& b : s.draining) {
      if (b.ip != backend.ip || b.port != backend.port || b.phase != BackendPhase::kDraining) continue;
      if (!flush)
        throw StateError("backend " + q(backendLabel(backend)) + " of service " + q(service) +
                         " is already removed and draining (use --flush to drop its flows)");
      b.phase = BackendPhase::kFlushing;
      return;
    }
    for (const Backend& b : s.draining)
      if (b.ip == backend.ip && b.port == backend.port)
        throw StateError("backend " + q(backendLabel(backend)) + " of service " + q(service) +
                         " is already removed and its flows are being flushed");
  }
  throw StateError("service " + q(service) + " has no backend " + q(backendLabel(backend)));
}

void LbState::setWeight(const std::string& service, const BackendConfig& backend, uint32_t weight) {
  Service& s = require(service);
  if (weight > kMaxBackendWeight)
    throw StateError("weight " + std::to_string(weight) + " out of range 0-" +
                     std::to_string(kMaxBackendWeight));
  std::vector<BackendConfig> configured = s.config.backends;
  auto it = std::find_if(configured.begin(), configured.end(),
                         [&](const BackendConfig& o) { return sameEntry(o, backend); });
  if (it == configured.end()) {
    if (const Backend* b = s.findBackend(backend.ip, backend.port); b && !backend.isDnsName()) {
      if (b->phase != BackendPhase::kActive)
        throw StateError("backend " + q(backendLabel(backend)) + " of service " + q(service) +
                         " was removed");
      throw StateError("backend " + q(backendLabel(backend)) + " of service " + q(service) +
                       " comes from DNS name " + q(b->dnsNames.front()) +
                       ": set the weight of that name instead");
    }
    throw StateError("service " + q(service) + " has no backend " + q(backendLabel(backend)));
  }
  it->weight = weight;
  reconcile(s, std::move(configured), s.dns, false);
}

bool LbState::setHealth(const std::string& service, uint32_t ip, uint16_t port, bool up) {
  Service* s = findMutable(service);
  if (!s) return false;
  for (Backend& b : s->backends) {
    if (b.ip != ip || b.port != port) continue;
    if (b.up == up && !b.initial) return false;
    b.up = up;
    b.initial = false;
    return true;
  }
  return false;
}

bool LbState::setDnsAddresses(const std::string& service, const std::string& name, uint16_t port,
                              std::vector<uint32_t> addresses) {
  Service* s = findMutable(service);
  if (!s) return false;
  auto it = std::find_if(s->dns.begin(), s->dns.end(),
                         [&](const DnsBackend& d) { return d.name == name && d.port == port; });
  if (it == s->dns.end()) return false;
  std::sort(addresses.begin(), addresses.end());
  addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
  // Addresses that cannot be backends (ours, loopback, ...) are left out:
  // a DNS answer must not be able to loop traffic through us.
  std::erase_if(addresses, [&](uint32_t ip) {
    BackendConfig b;
    b.host = formatIpv4(ip);
    b.ip = ip;
    b.port = port;
    if (ip == 0 || (ip >> 24) == 127 || (ip >> 24) >= 224) return true;
    try {
      checkBackendAddress(*s, b);
    } catch (const StateError&) {
      return true;
    }
    return false;
  });
  if (it->addresses == addresses) return false;
  std::vector<DnsBackend> dns = s->dns;
  dns[static_cast<std::size_t>(it - s->dns.begin())].addresses = std::move(addresses);
  reconcile(*s, s->config.backends, std::move(dns), false);
  return true;
}

void LbState::copyFrom(const LbState& o) {
  base_ = o.base_;
  services_ = o.services_;
  retired_ = o.retired_;
  freeServiceSlots_ = o.freeServiceSlots_;
  freeBackendSlots_ = o.freeBackendSlots_;
}

void LbState::updateService(Service& s, const ServiceConfig& in) {
  ServiceConfig cfg = in;
  checkServiceSettings(cfg);
  std::vector<BackendConfig> configured;
  std::vector<DnsBackend> dns;
  for (const BackendConfig& b : cfg.backends) {
    checkBackendEntry(s, configured, b);
    configured.push_back(b);
    if (!b.isDnsName()) continue;
    // A name kept across the reload keeps its resolution until the
    // resolver answers again.
    DnsBackend d{b.host, b.port, b.weight, {}};
    for (const DnsBackend& o : s.dns)
      if (o.name == b.host && o.port == b.port) d.addresses = o.addresses;
    dns.push_back(std::move(d));
  }
  const bool hadCheck = s.hasHealthCheck();
  s.config.snat = cfg.snat;
  s.config.mssClamp = cfg.mssClamp;
  s.config.maglevSize = cfg.maglevSize;
  s.config.health = cfg.health;
  if (hadCheck && !s.hasHealthCheck())
    for (Backend& b : s.backends) {
      b.up = true;
      b.initial = false;
    }
  reconcile(s, std::move(configured), std::move(dns), false);
}

namespace {
std::string renderService(const ServiceConfig& s) {
  Config c;
  c.services.push_back(s);
  return renderConfig(c);
}
}  // namespace

std::vector<std::string> LbState::applyConfig(const Config& next) {
  if (std::string key = restartDifference(base_, next); !key.empty())
    throw RestartRequired(key + " changed: that needs a restart of straitd");
  // Apply to a copy first: any refusal leaves this state as it was.
  LbState work;
  work.copyFrom(*this);
  std::vector<std::string> changes;
  auto backendSet = [](const ServiceConfig& c) {
    std::vector<std::string> out;
    for (const BackendConfig& b : c.backends)
      out.push_back(backendLabel(b) + (b.weight == 1 ? "" : " weight " + std::to_string(b.weight)));
    std::sort(out.begin(), out.end());
    return out;
  };
  auto find = [](const std::vector<ServiceConfig>& v, const std::string& name) -> const ServiceConfig* {
    for (const ServiceConfig& c : v)
      if (c.name == name) return &c;
    return nullptr;
  };
  // Removed services, and services whose listen address or protocol
  // changed (a different VIP is a different service to the dataplane),
  // go first so their addresses are free for the additions.
  std::vector<std::string> names;
  for (const Service& s : work.services_) names.push_back(s.config.name);
  for (const std::string& name : names) {
    const Service& s = *work.findService(name);
    const ServiceConfig* n = find(next.services, name);
    if (n && n->vip == s.config.vip && n->port == s.config.port && n->proto == s.config.proto) continue;
    work.removeService(name);
    changes.push_back("service " + name + " removed" + (n ? " (listen or protocol changed)" : ""));
  }
  for (const ServiceConfig& n : next.services) {
    try {
      if (Service* s = work.findMutable(n.name)) {
        const std::vector<std::string> before = backendSet(s->config);
        const ServiceConfig old = s->config;
        work.updateService(*s, n);
        const std::vector<std::string> after = backendSet(s->config);
        for (const std::string& b : before)
          if (!std::binary_search(after.begin(), after.end(), b))
            changes.push_back("service " + n.name + " backend " + b + " removed");
        for (const std::string& b : after)
          if (!std::binary_search(before.begin(), before.end(), b))
            changes.push_back("service " + n.name + " backend " + b + " added");
        if (old.snat != s->config.snat) changes.push_back("service " + n.name + " snat changed");
        if (renderService(old) != renderService(s->config) && before == after && old.snat == s->config.snat)
          changes.push_back("service " + n.name + " settings changed");
      } else {
        work.addService(n);
        changes.push_back("service " + n.name + " added");
      }
    } catch (const StateError& e) {
      throw StateError("service " + q(n.name) + ": " + e.what());
    }
  }
  work.base_ = next;
  work.base_.services.clear();
  copyFrom(work);
  return changes;
}

std::string LbState::degradedReason() const {
  for (const Service& s : services_) {
    bool any = false;
    for (const Backend& b : s.backends) any = any || (b.up && b.weight > 0);
    if (!any) return "service " + s.config.name + " has no backend up";
  }
  return {};
}

std::vector<HealthTarget> LbState::healthTargets() const {
  std::vector<HealthTarget> out;
  for (const Service& s : services_) {
    if (s.config.health.type == "none") continue;
    for (const Backend& b : s.backends)
      out.push_back({s.config.name, s.slot, b.slot, b.ip, b.port, s.config.health});
  }
  return out;
}

std::vector<DnsTarget> LbState::dnsTargets() const {
  std::vector<DnsTarget> out;
  for (const Service& s : services_)
    for (const DnsBackend& d : s.dns) out.push_back({s.config.name, d.name, d.port});
  return out;
}

void LbState::notePublished(uint64_t generation) {
  for (Service& s : services_)
    for (Backend& b : s.draining)
      if (b.releaseGeneration == 0) b.releaseGeneration = generation;
  for (RetiredService& r : retired_) {
    if (r.releaseGeneration == 0) r.releaseGeneration = generation;
    for (Backend& b : r.backends)
      if (b.releaseGeneration == 0) b.releaseGeneration = generation;
  }
}

std::size_t LbState::reap(const std::function<uint64_t(uint16_t)>& activeFlows,
                          uint64_t minWorkerGeneration) {
  std::size_t freed = 0;
  auto done = [&](const Backend& b) {
    return b.releaseGeneration != 0 && minWorkerGeneration >= b.releaseGeneration && activeFlows(b.slot) == 0;
  };
  auto reapList = [&](std::vector<Backend>& list) {
    for (auto it = list.begin(); it != list.end();) {
      if (done(*it)) {
        freeBackendSlots_.push_back(it->slot);
        it = list.erase(it);
        ++freed;
      } else {
        ++it;
      }
    }
  };
  for (Service& s : services_) reapList(s.draining);
  for (auto it = retired_.begin(); it != retired_.end();) {
    reapList(it->backends);
    if (it->backends.empty() && it->releaseGeneration != 0 && minWorkerGeneration >= it->releaseGeneration) {
      freeServiceSlots_.push_back(it->slot);
      it = retired_.erase(it);
      ++freed;
    } else {
      ++it;
    }
  }
  return freed;
}

std::size_t LbState::reap(const Runtime& runtime) {
  // WorkerCounters is large (per-slot arrays): keep the copies off the stack.
  const auto totals = std::make_unique<WorkerCounters>(runtime.totals());
  uint64_t minGen = runtime.snapshotGeneration();
  auto one = std::make_unique<WorkerCounters>();
  for (uint16_t w = 0; w < runtime.workerCount(); ++w) {
    *one = runtime.worker(w);
    minGen = std::min(minGen, one->snapshotGeneration);
  }
  return reap(
      [&](uint16_t slot) -> uint64_t {
        const BackendCounters& c = totals->backends[slot];
        return c.flowsCreated > c.flowsClosed ? c.flowsCreated - c.flowsClosed : 0;
      },
      minGen);
}

}  // namespace strait::controlplane
