// The lbctl command handlers: argument checking with messages meant for
// the person at the terminal, state changes under the state lock followed
// by a publish, and replies that carry the same numbers as /metrics.
#include "controlplane/api.h"

#include <netinet/in.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <utility>

#include "controlplane/capacity.h"
#include "controlplane/log.h"
#include "strait/drop_reason.h"

namespace strait::controlplane {

namespace {

using nlohmann::json;

// A request the API refuses; the message goes to the user as is.
class RequestError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string q(const std::string& s) { return "\"" + s + "\""; }

// Typed access to a command's "args" object.
class Args {
 public:
  Args(const json& j, std::string command) : j_(j), command_(std::move(command)) {}

  void allowOnly(std::initializer_list<const char*> keys) const {
    for (const auto& [k, v] : j_.items()) {
      if (std::none_of(keys.begin(), keys.end(), [&](const char* a) { return k == a; }))
        throw RequestError("unknown argument " + q(k) + " for command " + q(command_));
    }
  }

  std::optional<std::string> optString(const char* key) const {
    const auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return std::nullopt;
    if (!it->is_string()) throw RequestError("argument " + q(key) + " must be a string");
    return it->get<std::string>();
  }

  std::string string(const char* key) const {
    auto v = optString(key);
    if (!v) throw RequestError("missing argument " + q(key) + " for command " + q(command_));
    return *v;
  }

  std::optional<uint64_t> optUint(const char* key, uint64_t min, uint64_t max) const {
    const auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return std::nullopt;
    const std::string range = std::to_string(min) + "-" + std::to_string(max);
    if (!it->is_number_integer()) throw RequestError("argument " + q(key) + " must be an integer " + range);
    // nlohmann stores non-negative literals built in C++ as signed and
    // parsed ones as unsigned: accept both.
    if (it->is_number_unsigned() || it->get<int64_t>() >= 0) {
      const uint64_t v = it->get<uint64_t>();
      if (v >= min && v <= max) return v;
    }
    throw RequestError("argument " + q(key) + " out of range " + range + ": " + it->dump());
  }

  bool optBool(const char* key, bool dflt) const {
    const auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return dflt;
    if (!it->is_boolean()) throw RequestError("argument " + q(key) + " must be true or false");
    return it->get<bool>();
  }

  std::vector<std::string> optStringArray(const char* key) const {
    std::vector<std::string> out;
    const auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return out;
    if (!it->is_array()) throw RequestError("argument " + q(key) + " must be an array of strings");
    for (const json& e : *it) {
      if (!e.is_string()) throw RequestError("argument " + q(key) + " must be an array of strings");
      out.push_back(e.get<std::string>());
    }
    return out;
  }

 private:
  const json& j_;
  std::string command_;
};

// A service's health check from its JSON form (the keys of
// [service.health_check] in the configuration file).
HealthCheckConfig healthCheckArg(const json& j) {
  const Args h(j, "service add health_check");
  h.allowOnly({"type", "interval_ms", "timeout_ms", "rise", "fall", "http_path", "http_status", "http_host"});
  HealthCheckConfig c;
  c.type = h.optString("type").value_or(c.type);
  c.intervalMs = static_cast<uint32_t>(h.optUint("interval_ms", kHealthIntervalMinMs, kHealthIntervalMaxMs).value_or(c.intervalMs));
  c.timeoutMs = static_cast<uint32_t>(h.optUint("timeout_ms", kHealthTimeoutMinMs, kHealthIntervalMaxMs).value_or(c.timeoutMs));
  c.rise = static_cast<uint32_t>(h.optUint("rise", 1, kHealthRiseFallMax).value_or(c.rise));
  c.fall = static_cast<uint32_t>(h.optUint("fall", 1, kHealthRiseFallMax).value_or(c.fall));
  c.httpPath = h.optString("http_path").value_or(c.httpPath);
  c.httpStatus = static_cast<uint16_t>(h.optUint("http_status", 100, 599).value_or(c.httpStatus));
  c.httpHost = h.optString("http_host").value_or(c.httpHost);
  if (std::string why = healthCheckProblem(c); !why.empty()) throw RequestError("health_check." + why);
  return c;
}

BackendConfig backendArg(const Args& a) {
  const std::string text = a.string("backend");
  try {
    return parseBackend(text);
  } catch (const std::invalid_argument& e) {
    throw RequestError(std::string("backend: ") + e.what());
  }
}

uint64_t activeFlows(const BackendCounters& c) {
  return c.flowsCreated > c.flowsClosed ? c.flowsCreated - c.flowsClosed : 0;
}

const char* protoName(uint8_t p) { return p == IPPROTO_UDP ? "udp" : p == IPPROTO_TCP ? "tcp" : "other"; }

json backendJson(const Backend& b, const WorkerCounters& t) {
  const BackendCounters& c = t.backends[b.slot];
  const char* state = "active";
  if (b.phase == BackendPhase::kDraining) {
    state = "draining";
  } else if (b.phase == BackendPhase::kFlushing) {
    state = "flushing";
  } else if (b.weight == 0) {
    state = "drained";
  }
  json j{{"address", formatEndpoint(b.ip, b.port)},
         {"slot", b.slot},
         {"weight", b.weight},
         {"health", b.phase != BackendPhase::kActive ? "draining"
                    : b.initial                      ? "initial"
                    : b.up                           ? "up"
                                                     : "down"},
         {"state", state},
         {"active_flows", activeFlows(c)},
         {"flows_total", c.flowsCreated},
         {"packets", c.packets},
         {"bytes", c.bytes}};
  if (!b.dnsNames.empty()) j["dns_names"] = b.dnsNames;
  return j;
}

json serviceJson(const Service& s, const WorkerCounters& t) {
  const ServiceCounters& c = t.services[s.slot];
  std::size_t up = 0;
  std::size_t initial = 0;
  for (const Backend& b : s.backends) {
    if (b.up && b.weight > 0) ++up;
    if (b.initial) ++initial;
  }
  json snat = json::array();
  for (uint32_t ip : s.config.snat) snat.push_back(formatIpv4(ip));
  return json{{"name", s.config.name},
              {"slot", s.slot},
              {"listen", formatEndpoint(s.config.vip, s.config.port)},
              {"protocol", protoName(s.config.proto)},
              {"snat", snat},
              {"mss_clamp", s.config.mssClamp},
              {"syn_proxy", std::string(synProxyModeName(s.config.synProxy))},
              {"proxy_protocol", s.config.proxyProtocol ? "v2" : "off"},
              {"maglev_size", s.config.maglevSize},
              {"health_check", s.config.health.type},
              {"fail_open", s.failOpen()},
              {"backends", s.backends.size()},
              {"backends_available", up},
              {"backends_initial", initial},
              {"backends_draining", s.draining.size()},
              {"active_flows", c.flowsCreated > c.flowsClosed ? c.flowsCreated - c.flowsClosed : 0},
              {"flows_total", c.flowsCreated},
              {"packets", c.packets},
              {"bytes", c.bytes}};
}

json ok(json result) { return okReply(std::move(result)); }

}  // namespace

json ControlApi::handle(const json& request) {
  json reply;
  try {
    if (!request.is_object()) throw RequestError("request must be a JSON object");
    for (const auto& [k, v] : request.items())
      if (k != "version" && k != "command" && k != "args" && k != "id")
        throw RequestError("unknown request field " + q(k));
    const auto version = request.find("version");
    if (version == request.end())
      throw RequestError("missing \"version\" (this daemon speaks protocol version " +
                         std::to_string(kControlProtocolVersion) + ")");
    if (!version->is_number_integer()) throw RequestError("\"version\" must be an integer");
    if (*version != kControlProtocolVersion)
      throw RequestError("unsupported protocol version " + version->dump() + " (this daemon speaks version " +
                         std::to_string(kControlProtocolVersion) + ")");
    const auto command = request.find("command");
    if (command == request.end() || !command->is_string())
      throw RequestError("missing or non-string \"command\"");
    static const json kEmpty = json::object();
    const auto args = request.find("args");
    if (args != request.end() && !args->is_object() && !args->is_null())
      throw RequestError("\"args\" must be an object");
    reply = dispatch(command->get<std::string>(), args == request.end() || args->is_null() ? kEmpty : *args);
  } catch (const RequestError& e) {
    reply = errorReply(e.what());
  } catch (const StateError& e) {
    reply = errorReply(e.what());
  } catch (const std::exception& e) {
    reply = errorReply(std::string("internal error: ") + e.what());
  }
  reply["version"] = kControlProtocolVersion;
  if (request.is_object())
    if (const auto id = request.find("id"); id != request.end()) reply["id"] = *id;
  return reply;
}

json ControlApi::dispatch(const std::string& command, const json& argsJson) {
  const Args a(argsJson, command);
  if (command == "service list") {
    a.allowOnly({});
    return serviceList();
  }
  if (command == "service add") {
    a.allowOnly({"name", "listen", "protocol", "snat", "health_check", "syn_proxy", "proxy_protocol"});
    return serviceAdd(argsJson);
  }
  if (command == "service remove") {
    a.allowOnly({"name"});
    return serviceRemove(argsJson);
  }
  if (command == "backend list") {
    a.allowOnly({"service"});
    return backendList(argsJson);
  }
  if (command == "backend add") {
    a.allowOnly({"service", "backend", "weight"});
    return backendAdd(argsJson);
  }
  if (command == "backend remove") {
    a.allowOnly({"service", "backend", "flush"});
    return backendRemove(argsJson);
  }
  if (command == "backend set") {
    a.allowOnly({"service", "backend", "weight"});
    return backendSet(argsJson);
  }
  if (command == "stats") {
    a.allowOnly({});
    return stats();
  }
  if (command == "flows") {
    a.allowOnly({"service", "limit"});
    return flows(argsJson);
  }
  if (command == "config show") {
    a.allowOnly({});
    return configShow();
  }
  if (command == "config reload") {
    a.allowOnly({});
    return configReload();
  }
  if (command == "capacity") {
    a.allowOnly({});
    return capacity();
  }
  if (command == "drain" || command == "instance") {
    a.allowOnly({});
    if (!hooks_.instance) throw RequestError("command " + q(command) + " is not available here");
    return ok(hooks_.instance(command == "drain"));
  }
  throw RequestError("unknown command " + q(command) +
                     " (known: service list|add|remove, backend list|add|remove|set, stats, flows, "
                     "config show|reload, capacity, drain, instance)");
}

uint64_t ControlApi::publishLocked() {
  const uint64_t gen = runtime_.publish();
  state_.notePublished(gen);
  return gen;
}

std::size_t ControlApi::tick() {
  std::lock_guard lock(state_.mutex());
  const std::size_t freed = state_.reap(runtime_);
  if (freed > 0) publishLocked();
  return freed;
}

json ControlApi::serviceList() {
  const auto totals = std::make_unique<WorkerCounters>(runtime_.totals());
  json list = json::array();
  std::lock_guard lock(state_.mutex());
  for (const Service& s : state_.services()) list.push_back(serviceJson(s, *totals));
  return ok(json{{"services", list}});
}

json ControlApi::serviceAdd(const json& argsJson) {
  const Args a(argsJson, "service add");
  ServiceConfig cfg;
  cfg.name = a.string("name");
  if (std::string why = serviceNameProblem(cfg.name); !why.empty())
    throw RequestError("name " + q(cfg.name) + ": " + why);
  const std::string listen = a.string("listen");
  try {
    std::tie(cfg.vip, cfg.port) = parseEndpoint(listen);
  } catch (const std::invalid_argument& e) {
    throw RequestError(std::string("listen: ") + e.what());
  }
  const std::string proto = a.optString("protocol").value_or("tcp");
  if (proto == "tcp") {
    cfg.proto = IPPROTO_TCP;
  } else if (proto == "udp") {
    cfg.proto = IPPROTO_UDP;
  } else {
    throw RequestError("protocol " + q(proto) + ": expected tcp or udp");
  }
  for (const std::string& s : a.optStringArray("snat")) {
    const auto ip = parseIpv4(s);
    if (!ip) throw RequestError("snat " + q(s) + ": not an IPv4 address");
    cfg.snat.push_back(*ip);
  }
  if (const auto it = argsJson.find("health_check"); it != argsJson.end() && !it->is_null()) {
    if (!it->is_object()) throw RequestError("argument \"health_check\" must be an object");
    cfg.health = healthCheckArg(*it);
  }
  if (const auto sp = a.optString("syn_proxy")) {
    if (!parseSynProxyMode(*sp, cfg.synProxy)) throw RequestError("syn_proxy " + q(*sp) + ": expected auto, on or off");
    if (cfg.proto == IPPROTO_UDP && cfg.synProxy == SynProxyMode::kOn)
      throw RequestError("syn_proxy \"on\": SYN cookies are for TCP services");
  }
  if (const auto pp = a.optString("proxy_protocol")) {
    if (*pp != "v2" && *pp != "off") throw RequestError("proxy_protocol " + q(*pp) + ": expected v2 or off");
    if (cfg.proto == IPPROTO_UDP && *pp == "v2")
      throw RequestError("proxy_protocol \"v2\": PROXY protocol is for TCP services");
    cfg.proxyProtocol = *pp == "v2";
  }
  const auto totals = std::make_unique<WorkerCounters>(runtime_.totals());
  std::lock_guard lock(state_.mutex());
  state_.addService(cfg);
  const uint64_t gen = publishLocked();
  return ok(json{{"service", serviceJson(*state_.findService(cfg.name), *totals)}, {"generation", gen}});
}

json ControlApi::serviceRemove(const json& argsJson) {
  const Args a(argsJson, "service remove");
  const std::string name = a.string("name");
  std::lock_guard lock(state_.mutex());
  state_.removeService(name);
  return ok(json{{"generation", publishLocked()}});
}

json ControlApi::backendList(const json& argsJson) {
  const Args a(argsJson, "backend list");
  const std::string name = a.string("service");
  const auto totals = std::make_unique<WorkerCounters>(runtime_.totals());
  std::lock_guard lock(state_.mutex());
  const Service* s = state_.findService(name);
  if (!s) throw RequestError("no service named " + q(name));
  json backends = json::array();
  for (const Backend& b : s->backends) backends.push_back(backendJson(b, *totals));
  for (const Backend& b : s->draining) backends.push_back(backendJson(b, *totals));
  json dns = json::array();
  for (const DnsBackend& d : s->dns) {
    json addrs = json::array();
    for (uint32_t ip : d.addresses) addrs.push_back(formatIpv4(ip));
    dns.push_back(
        json{{"name", d.name + ":" + std::to_string(d.port)}, {"weight", d.weight}, {"addresses", addrs}});
  }
  return ok(json{{"service", s->config.name},
                 {"listen", formatEndpoint(s->config.vip, s->config.port)},
                 {"protocol", protoName(s->config.proto)},
                 {"fail_open", s->failOpen()},
                 {"backends", backends},
                 {"dns", dns}});
}

json ControlApi::backendAdd(const json& argsJson) {
  const Args a(argsJson, "backend add");
  const std::string service = a.string("service");
  BackendConfig b = backendArg(a);
  b.weight = static_cast<uint32_t>(a.optUint("weight", 0, kMaxBackendWeight).value_or(1));
  const auto totals = std::make_unique<WorkerCounters>(runtime_.totals());
  std::lock_guard lock(state_.mutex());
  state_.addBackend(service, b);
  const uint64_t gen = publishLocked();
  json result{{"generation", gen}};
  if (!b.isDnsName())
    result["backend"] = backendJson(*state_.findService(service)->findBackend(b.ip, b.port), *totals);
  return ok(result);
}

json ControlApi::backendRemove(const json& argsJson) {
  const Args a(argsJson, "backend remove");
  const std::string service = a.string("service");
  const BackendConfig b = backendArg(a);
  const bool flush = a.optBool("flush", false);
  std::lock_guard lock(state_.mutex());
  state_.removeBackend(service, b, flush);
  return ok(json{{"generation", publishLocked()}});
}

json ControlApi::backendSet(const json& argsJson) {
  const Args a(argsJson, "backend set");
  const std::string service = a.string("service");
  const BackendConfig b = backendArg(a);
  const auto weight = a.optUint("weight", 0, kMaxBackendWeight);
  if (!weight) throw RequestError("missing argument \"weight\" for command \"backend set\"");
  const auto totals = std::make_unique<WorkerCounters>(runtime_.totals());
  std::lock_guard lock(state_.mutex());
  state_.setWeight(service, b, static_cast<uint32_t>(*weight));
  const uint64_t gen = publishLocked();
  json result{{"generation", gen}};
  if (!b.isDnsName())
    result["backend"] = backendJson(*state_.findService(service)->findBackend(b.ip, b.port), *totals);
  return ok(result);
}

json ControlApi::stats() {
  const auto t = std::make_unique<WorkerCounters>(runtime_.totals());
  auto w = std::make_unique<WorkerCounters>();
  json workers = json::array();
  for (uint16_t i = 0; i < runtime_.workerCount(); ++i) {
    *w = runtime_.worker(i);
    workers.push_back(
        json{{"worker", i},
             {"rx_packets", w->rxPackets},
             {"rx_bytes", w->rxBytes},
             {"tx_packets", w->txPackets},
             {"tx_bytes", w->txBytes},
             {"flows_created", w->flowsCreated},
             {"flows_expired", w->flowsExpired},
             {"flows_flushed", w->flowsFlushed},
             {"handoff_in", w->handoffIn},
             {"handoff_out", w->handoffOut},
             {"loops", w->loops},
             {"busy_loops", w->busyLoops},
             {"busy_ratio", w->totalCycles ? double(w->busyCycles) / double(w->totalCycles) : 0.0},
             {"snapshot_generation", w->snapshotGeneration},
             {"syn_cookie_mode", w->synCookieMode != 0}});
  }
  json drops = json::object();
  uint64_t dropsTotal = 0;
  for (std::size_t r = 1; r < kDropReasonCount; ++r) {
    drops[std::string(kDropReasonNames[r])] = t->drops[r];
    dropsTotal += t->drops[r];
  }
  // Early drops by the state of the recycled flow (only unassured states
  // can be recycled), and live flows by state.
  json earlyDropped = json::object();
  for (std::size_t s = 0; s < kFlowStateCount; ++s)
    if (isUnassured(static_cast<FlowState>(s))) earlyDropped[std::string(kFlowStateNames[s])] = t->earlyDrops[s];
  json byState = json::object();
  const auto perState = runtime_.flowsByState();
  for (std::size_t s = 0; s < kFlowStateCount; ++s) byState[std::string(kFlowStateNames[s])] = perState[s];
  // SNAT ports per SNAT address, summed over workers and pools.
  std::map<uint32_t, std::pair<uint64_t, uint64_t>> snat;
  const auto pools = runtime_.snatPools();
  for (const SnatPoolInfo& p : pools) {
    auto& e = snat[p.snatIp];
    e.first += p.inUse;
    e.second += p.capacity;
  }
  json snatJson = json::array();
  for (const auto& [ip, e] : snat)
    snatJson.push_back(
        json{{"address", formatIpv4(ip)}, {"ports_in_use", e.first}, {"ports_capacity", e.second}});
  return ok(json{{"snapshot_generation", runtime_.snapshotGeneration()},
                 {"workers", workers},
                 {"rx_packets", t->rxPackets},
                 {"rx_bytes", t->rxBytes},
                 {"tx_packets", t->txPackets},
                 {"tx_bytes", t->txBytes},
                 {"drops", drops},
                 {"drops_total", dropsTotal},
                 {"flows", json{{"active", runtime_.flowsActive()},
                                {"capacity", runtime_.flowCapacity()},
                                {"created", t->flowsCreated},
                                {"expired", t->flowsExpired},
                                {"flushed", t->flowsFlushed},
                                {"early_dropped", earlyDropped},
                                {"by_state", byState}}},
                 {"snat", snatJson},
                 {"snat_pools", pools.size()},
                 {"neighbours", runtime_.neighbourCount()},
                 {"handoff_in", t->handoffIn},
                 {"handoff_out", t->handoffOut},
                 {"to_control", t->toControl},
                 {"icmp_errors_translated", t->icmpErrorsTranslated},
                 {"icmp_echo_replies", t->icmpEchoReplies},
                 {"mss_clamped", t->mssClamped},
                 {"proxy_protocol_headers", t->proxyHeaders},
                 {"syn_cookies", json{{"sent", t->synCookiesSent},
                                      {"validated", t->synCookiesValid},
                                      {"rejected_invalid", t->drops[static_cast<std::size_t>(DropReason::kSynCookieInvalid)]},
                                      {"rejected_stale", t->drops[static_cast<std::size_t>(DropReason::kSynCookieStale)]},
                                      {"rejected_replayed", t->drops[static_cast<std::size_t>(DropReason::kSynCookieReplayed)]},
                                      {"ack_data_dropped", t->synProxyAckData},
                                      {"backend_syn_resent", t->synProxySynResent},
                                      {"mode_entered", t->synCookieModeEntered},
                                      {"workers_in_cookie_mode", t->synCookieMode}}}});
}

json ControlApi::flows(const json& argsJson) {
  const Args a(argsJson, "flows");
  const auto service = a.optString("service");
  const uint64_t limit = a.optUint("limit", 1, kMaxFlowsLimit).value_or(kDefaultFlowsLimit);
  std::optional<uint16_t> slot;
  std::map<uint16_t, std::string> names;
  {
    std::lock_guard lock(state_.mutex());
    if (service) {
      const Service* s = state_.findService(*service);
      if (!s) throw RequestError("no service named " + q(*service));
      slot = s->slot;
    }
    for (const Service& s : state_.services()) names[s.slot] = s.config.name;
  }
  // Flow dumps run on the workers: never while holding the state lock.
  const std::vector<FlowInfo> list = runtime_.flows(slot, limit);
  json out = json::array();
  for (const FlowInfo& f : list) {
    const auto n = names.find(f.serviceSlot);
    out.push_back(json{{"worker", f.worker},
                       {"protocol", protoName(f.proto)},
                       {"client", formatEndpoint(f.clientIp, f.clientPort)},
                       {"vip", formatEndpoint(f.vip, f.vipPort)},
                       {"snat", formatEndpoint(f.snatIp, f.snatPort)},
                       {"backend", formatEndpoint(f.backendIp, f.backendPort)},
                       {"service", n == names.end() ? "" : n->second},
                       {"backend_slot", f.backendSlot},
                       {"state", f.state},
                       {"idle_ms", f.idleMs}});
  }
  return ok(json{{"flows", out}, {"limit", limit}, {"active", runtime_.flowsActive()}});
}

json ControlApi::configShow() {
  std::lock_guard lock(state_.mutex());
  return ok(json{{"toml", renderConfig(state_.toConfig())}, {"file", state_.base().file}});
}

json ControlApi::capacity() {
  const std::vector<SnatPoolInfo> pools = runtime_.snatPools();
  std::lock_guard lock(state_.mutex());
  json list = json::array();
  for (const ServiceCapacity& c : serviceCapacity(state_, pools)) {
    json worst = nullptr;
    if (!c.worstPoolAddress.empty())
      worst = json{{"address", c.worstPoolAddress}, {"backend", c.worstPoolBackend}, {"worker", c.worstPoolWorker},
                   {"ports_in_use", c.worstPoolInUse}, {"ports_capacity", c.worstPoolCapacity},
                   {"use", c.worstPoolUse}};
    list.push_back(json{{"service", c.service},
                        {"snat_addresses", c.snatAddresses},
                        {"backends_offered", c.backendsOffered},
                        {"port_range", c.portRange},
                        {"hold_s", c.holdS},
                        {"new_connections_per_s", c.newConnectionsPerS},
                        {"worst_pool", worst}});
  }
  return ok(json{{"services", list}});
}

json ControlApi::configReload() {
  std::string path;
  {
    std::lock_guard lock(state_.mutex());
    path = state_.base().file;
  }
  if (path.empty()) throw RequestError("reload refused: straitd has no configuration file to read");
  Config next;
  try {
    next = loadConfig(path);
  } catch (const std::exception& e) {
    logf(LogLevel::kError, "event=reload_refused file=%s reason=%s result=unchanged", logValue(path).c_str(),
         logValue(e.what()).c_str());
    throw RequestError(std::string("reload refused, nothing changed: ") + e.what());
  }
  std::lock_guard lock(state_.mutex());
  std::vector<std::string> changes;
  try {
    changes = state_.applyConfig(next);
  } catch (const StateError& e) {
    logf(LogLevel::kError, "event=reload_refused file=%s reason=%s result=unchanged", logValue(path).c_str(),
         logValue(e.what()).c_str());
    throw RequestError(std::string("reload refused, nothing changed: ") + e.what());
  }
  for (const std::string& c : changes) logf(LogLevel::kInfo, "event=reload_change change=%s", logValue(c).c_str());
  const uint64_t gen = publishLocked();
  if (hooks_.reloaded) hooks_.reloaded(state_.base());
  logf(LogLevel::kInfo, "event=reload file=%s changes=%zu generation=%llu", logValue(path).c_str(), changes.size(),
       static_cast<unsigned long long>(gen));
  return ok(json{{"file", path}, {"changes", changes}, {"generation", gen}});
}

}  // namespace strait::controlplane
