// The configuration model of straitd and its TOML loader. A config is
// loaded and validated completely before EAL starts or any NIC is touched;
// an error names the file, the key (as a TOML path such as
// `service[1].backends[0]`) and what is wrong. The same model is what
// `lbctl config show` renders back to TOML.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "strait/dataplane_config.h"
#include "strait/flow_state.h"
#include "strait/snapshot.h"

namespace strait::controlplane {

// The dataplane's part of the model is shared with the dataplane host.
using strait::DataplaneConfig;
using strait::InterfaceConfig;
using strait::Ipv4Prefix;
using strait::kMemifPortPrefix;
using strait::kXdpMaxMtu;
using strait::kXdpPortPrefix;

// A configuration error: `key` is the TOML path, `what()` the full message.
class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string file, std::string key, const std::string& problem);
  const std::string& file() const { return file_; }
  const std::string& key() const { return key_; }

 private:
  std::string file_;
  std::string key_;
};

struct HealthCheckConfig {
  std::string type = "none";   // none | tcp | http
  uint32_t intervalMs = 2000;
  uint32_t timeoutMs = 1000;
  uint32_t rise = 2;
  uint32_t fall = 3;
  std::string httpPath = "/";
  uint16_t httpStatus = 200;
  std::string httpHost;        // Host header, default the backend address
};

struct BackendConfig {
  std::string host;      // literal IPv4 or DNS name as written
  uint32_t ip = 0;       // host order, when `host` is a literal
  uint16_t port = 0;     // host order
  uint32_t weight = 1;
  bool isDnsName() const { return ip == 0; }
};

struct ServiceConfig {
  std::string name;
  uint32_t vip = 0;      // host order
  uint16_t port = 0;     // host order
  uint8_t proto = 0;     // IPPROTO_TCP / IPPROTO_UDP
  std::vector<uint32_t> snat;  // host order; empty = the interface address
  std::vector<BackendConfig> backends;
  uint16_t mssClamp = 0; // 0 = off
  uint32_t maglevSize = 65537;
  HealthCheckConfig health;
  SynProxyMode synProxy = SynProxyMode::kAuto;  // TCP only; UDP services ignore "auto"
  bool proxyProtocol = false;  // proxy_protocol = "v2": TCP only (docs/proxy-protocol.md)
};

struct ControlConfig {
  std::string resolver;               // "IP[:PORT]" for DNS-named backends; empty = /etc/resolv.conf
  uint32_t dnsMinTtlS = 5;
  uint32_t dnsMaxTtlS = 300;
};

// How this instance behaves towards the front (NLB, Global Accelerator)
// and its service manager.
struct InstanceConfig {
  // SIGTERM / `lbctl drain`: fail the instance health endpoint and keep
  // forwarding for this long, or until no flow is left; 0 = exit at once.
  // Applied by reload.
  uint32_t shutdownDrainS = 30;
  // The instance health endpoint ("IP:PORT" on an interface's subnet;
  // ip 0 = none), answered by the dataplane. Needs a restart.
  uint32_t healthIp = 0;  // host order
  uint16_t healthPort = 0;
};

struct Config {
  std::string file;  // where it was loaded from
  DataplaneConfig dataplane;
  std::vector<InterfaceConfig> interfaces;
  std::vector<ServiceConfig> services;
  ControlConfig control;
  InstanceConfig instance;
};

// What a reload from `next` would change that only a restart can change:
// "" when nothing, else the first differing key as a TOML path (e.g.
// "dataplane.workers", "interface[0].port"). [[service]] sections and
// instance.shutdown_drain_s are not compared: reload applies them.
std::string restartDifference(const Config& running, const Config& next);

// Health-check limits, shared by the TOML loader and the control API.
inline constexpr uint32_t kHealthIntervalMinMs = 100;
inline constexpr uint32_t kHealthIntervalMaxMs = 3'600'000;
inline constexpr uint32_t kHealthTimeoutMinMs = 10;
inline constexpr uint32_t kHealthRiseFallMax = 100;
// Checks what the integer ranges cannot: the type, timeout <= interval, the
// HTTP path and host. Returns "" or "field: problem" (field as in TOML).
std::string healthCheckProblem(const HealthCheckConfig& h);

// Loads and validates `path`. Throws ConfigError.
Config loadConfig(const std::string& path);
// Parses and validates TOML text; `name` is used in error messages.
Config parseConfig(const std::string& text, const std::string& name);
// Renders a config as TOML that parseConfig accepts.
std::string renderConfig(const Config& c);

// Helpers shared with lbctl and the control API.
std::optional<uint32_t> parseIpv4(const std::string& s);               // host order
std::string formatIpv4(uint32_t hostOrder);
// "IP:PORT" or "name:PORT"; throws std::invalid_argument with a reason.
BackendConfig parseBackend(const std::string& s);

// Largest backend weight accepted from the config file and lbctl.
inline constexpr uint32_t kMaxBackendWeight = 10000;
// "IP:PORT" -> {ip, port} in host order; throws std::invalid_argument with a reason.
std::pair<uint32_t, uint16_t> parseEndpoint(const std::string& s);
std::string formatEndpoint(uint32_t ip, uint16_t port);  // host order
// The interface whose connected subnet holds `ip` (host order), or nullptr.
const InterfaceConfig* interfaceFor(const std::vector<InterfaceConfig>& interfaces, uint32_t ip);
// Why `ip` cannot be one of our local (VIP or SNAT) addresses, or "" when
// it can: it must be an interface address or a host address inside an
// interface's connected subnet, other than that subnet's gateway.
std::string localAddressProblem(const std::vector<InterfaceConfig>& interfaces, uint32_t ip);
// Why `name` cannot be a service name, or "" when it can.
std::string serviceNameProblem(const std::string& name);

}  // namespace strait::controlplane
