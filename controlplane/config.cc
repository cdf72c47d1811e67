// The TOML loader and validator behind controlplane/config.h, and the
// renderer that turns a Config back into TOML. Validation is complete before
// straitd touches DPDK: every key is type- and range-checked, unknown keys
// are rejected (with a suggestion when they look like a typo), and every
// error names the file, the key path and the problem. The rules are
// documented key by key in docs/configuration.md.
#include "controlplane/config.h"

#include <netinet/in.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>

#include "dataplane/maglev.h"
#include "strait/counters.h"

namespace strait::controlplane {

namespace {

std::string joinMessage(const std::string& file, const std::string& key, const std::string& problem) {
  std::string m = file;
  if (!m.empty()) m += ": ";
  if (!key.empty()) m += key + ": ";
  return m + problem;
}

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

// TOML basic string with every character that needs it escaped.
std::string tomlString(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

bool parseU32(std::string_view s, uint32_t& out) {
  if (s.empty() || s.size() > 10) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

uint32_t prefixMask(uint8_t len) { return len == 0 ? 0 : ~uint32_t{0} << (32 - len); }

bool inPrefix(const Ipv4Prefix& p, uint32_t ip) {
  return (ip & prefixMask(p.len)) == (p.addr & prefixMask(p.len));
}

// Network and broadcast addresses are not host addresses on subnets that
// have them (/31 and /32 do not).
bool isNetworkOrBroadcast(const Ipv4Prefix& p, uint32_t ip) {
  if (p.len > 30) return false;
  const uint32_t host = ip & ~prefixMask(p.len);
  return host == 0 || host == ~prefixMask(p.len);
}

std::string formatPrefix(const Ipv4Prefix& p) { return formatIpv4(p.addr) + "/" + std::to_string(p.len); }

std::optional<Ipv4Prefix> parsePrefix(const std::string& s) {
  const auto slash = s.find('/');
  if (slash == std::string::npos) return std::nullopt;
  const auto ip = parseIpv4(s.substr(0, slash));
  uint32_t len = 0;
  if (!ip || !parseU32(std::string_view(s).substr(slash + 1), len) || len < 1 || len > 32)
    return std::nullopt;
  return Ipv4Prefix{*ip, static_cast<uint8_t>(len)};
}

// Addresses that can never be a backend: "this network", loopback,
// multicast, reserved and broadcast.
std::string backendAddressProblem(uint32_t ip) {
  const uint32_t first = ip >> 24;
  if (first == 0) return "address " + formatIpv4(ip) + " is in 0.0.0.0/8 and cannot be a backend";
  if (first == 127) return "address " + formatIpv4(ip) + " is a loopback address and cannot be a backend";
  if (first >= 224)
    return "address " + formatIpv4(ip) + " is multicast, reserved or broadcast and cannot be a backend";
  return {};
}

bool validHostname(const std::string& h) {
  if (h.empty() || h.size() > 253) return false;
  std::string_view rest = h;
  if (rest.back() == '.') rest.remove_suffix(1);
  if (rest.empty()) return false;
  while (true) {
    const auto dot = rest.find('.');
    const std::string_view label = rest.substr(0, dot);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  return true;
}

bool looksNumeric(const std::string& h) {
  return !h.empty() &&
         std::all_of(h.begin(), h.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
}

// Splits "HOST:PORT" at the last colon and parses the port.
std::pair<std::string, uint16_t> splitHostPort(const std::string& s, const char* expected) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0)
    throw std::invalid_argument(quoted(s) + ": expected " + expected);
  const std::string portText = s.substr(colon + 1);
  uint32_t port = 0;
  if (portText.empty() || !parseU32(portText, port)) {
    if (!portText.empty() &&
        std::all_of(portText.begin(), portText.end(), [](char c) { return c >= '0' && c <= '9'; }))
      throw std::invalid_argument(quoted(s) + ": port out of range 1-65535");
    throw std::invalid_argument(quoted(s) + ": bad port " + quoted(portText) + " (expected " + expected +
                                ")");
  }
  if (port < 1 || port > 65535) throw std::invalid_argument(quoted(s) + ": port out of range 1-65535");
  return {s.substr(0, colon), static_cast<uint16_t>(port)};
}

std::size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

const char* typeName(toml::node_type t) {
  switch (t) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    default:
      return "nothing";
  }
}

std::string child(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}
std::string index(const std::string& path, std::size_t i) { return path + "[" + std::to_string(i) + "]"; }

// Reads one TOML document into a Config, throwing ConfigError at the first
// problem.
class Loader {
 public:
  explicit Loader(std::string file) : file_(std::move(file)) {}

  Config load(const toml::table& root) {
    Config c;
    c.file = file_;
    checkKeys(root, "", {"dataplane", "interface", "service", "control", "instance"});
    if (const toml::node* n = root.get("dataplane")) loadDataplane(asTable(*n, "dataplane"), c.dataplane);
    loadInterfaces(root, c);
    if (const toml::node* n = root.get("control")) loadControl(asTable(*n, "control"), c.control);
    loadServices(root, c);
    if (const toml::node* n = root.get("instance")) loadInstance(asTable(*n, "instance"), c);
    return c;
  }

 private:
  [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
    throw ConfigError(file_, key, problem);
  }

  void checkKeys(const toml::table& t, const std::string& path,
                 const std::vector<std::string_view>& allowed) const {
    for (auto&& [k, v] : t) {
      const std::string_view key = k.str();
      if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
      std::string problem = "unknown key";
      std::string_view best;
      std::size_t bestDist = 3;
      for (std::string_view a : allowed) {
        const std::size_t d = editDistance(key, a);
        if (d < bestDist) {
          bestDist = d;
          best = a;
        }
      }
      if (!best.empty()) problem += " (did you mean \"" + std::string(best) + "\"?)";
      fail(child(path, key), problem);
    }
  }

  const toml::table& asTable(const toml::node& n, const std::string& path) const {
    if (const toml::table* t = n.as_table()) return *t;
    fail(path, std::string("expected a table, got ") + typeName(n.type()));
  }

  const toml::array& asArray(const toml::node& n, const std::string& path) const {
    if (const toml::array* a = n.as_array()) return *a;
    if (path == "interface" || path == "service")
      fail(path, "expected [[" + path + "]] (an array of tables), got " + typeName(n.type()));
    fail(path, std::string("expected an array, got ") + typeName(n.type()));
  }

  std::string asString(const toml::node& n, const std::string& path) const {
    if (const auto* s = n.as_string()) return s->get();
    fail(path, std::string("expected a string, got ") + typeName(n.type()));
  }

  int64_t asInt(const toml::node& n, const std::string& path, int64_t min, int64_t max) const {
    const auto* i = n.as_integer();
    if (!i) fail(path, std::string("expected an integer, got ") + typeName(n.type()));
    const int64_t v = i->get();
    if (v < min || v > max)
      fail(path, std::to_string(v) + ": out of range " + std::to_string(min) + "-" + std::to_string(max));
    return v;
  }

  template <typename T>
  void optInt(const toml::table& t, const std::string& path, std::string_view key, T& out, int64_t min,
              int64_t max) const {
    if (const toml::node* n = t.get(key)) out = static_cast<T>(asInt(*n, child(path, key), min, max));
  }

  template <typename T>
  void optPow2(const toml::table& t, const std::string& path, std::string_view key, T& out, int64_t min,
               int64_t max) const {
    if (const toml::node* n = t.get(key)) {
      const int64_t v = asInt(*n, child(path, key), min, max);
      if ((v & (v - 1)) != 0) fail(child(path, key), std::to_string(v) + ": must be a power of two");
      out = static_cast<T>(v);
    }
  }

  void optString(const toml::table& t, const std::string& path, std::string_view key,
                 std::string& out) const {
    if (const toml::node* n = t.get(key)) out = asString(*n, child(path, key));
  }

  void loadDataplane(const toml::table& t, DataplaneConfig& d) const {
    const std::string p = "dataplane";
    checkKeys(t, p,
              {"eal", "workers", "flow_capacity", "mbufs", "rx_descriptors", "tx_descriptors", "burst",
               "snat_port_min", "snat_port_max", "snat_pools_per_worker", "idle_sleep_us",
               "neighbour_timeout_ms", "handoff_ring_size", "timeouts", "syn_cookie_period_ms",
               "syn_proxy_half_open_enter", "syn_proxy_half_open_leave", "syn_proxy_pool_enter_pct",
               "syn_proxy_pool_leave_pct"});
    if (const toml::node* n = t.get("eal")) {
      const toml::array& a = asArray(*n, p + ".eal");
      for (std::size_t i = 0; i < a.size(); ++i) d.eal.push_back(asString(a[i], index(p + ".eal", i)));
    }
    optInt(t, p, "workers", d.workers, 1, kMaxWorkers);
    optInt(t, p, "flow_capacity", d.flowCapacity, 1024, 1 << 28);
    optInt(t, p, "mbufs", d.mbufs, 0, 1 << 26);
    if (d.mbufs != 0 && d.mbufs < 1024)
      fail(p + ".mbufs", std::to_string(d.mbufs) + ": must be 0 (automatic) or at least 1024");
    optPow2(t, p, "rx_descriptors", d.rxDescriptors, 64, 32768);
    optPow2(t, p, "tx_descriptors", d.txDescriptors, 64, 32768);
    optInt(t, p, "burst", d.burst, 1, 64);
    optInt(t, p, "snat_port_min", d.snatPortMin, 1, 65535);
    optInt(t, p, "snat_port_max", d.snatPortMax, 1, 65535);
    if (d.snatPortMin > d.snatPortMax)
      fail(p + ".snat_port_min",
           std::to_string(d.snatPortMin) + ": greater than snat_port_max " + std::to_string(d.snatPortMax));
    optInt(t, p, "snat_pools_per_worker", d.snatPoolsPerWorker, 1, 1 << 20);
    optInt(t, p, "idle_sleep_us", d.idleSleepUs, 0, 1'000'000);
    optInt(t, p, "neighbour_timeout_ms", d.neighbourTimeoutMs, 1000, 86'400'000);
    optPow2(t, p, "handoff_ring_size", d.handoffRingSize, 64, 1 << 24);
    optPow2(t, p, "syn_cookie_period_ms", d.synCookiePeriodMs, 1024, 1 << 20);
    optInt(t, p, "syn_proxy_half_open_enter", d.synProxyHalfOpenEnter, 1, 1 << 28);
    optInt(t, p, "syn_proxy_half_open_leave", d.synProxyHalfOpenLeave, 0, 1 << 28);
    if (d.synProxyHalfOpenLeave >= d.synProxyHalfOpenEnter)
      fail(p + ".syn_proxy_half_open_leave", std::to_string(d.synProxyHalfOpenLeave) +
                                                 ": must be below syn_proxy_half_open_enter " +
                                                 std::to_string(d.synProxyHalfOpenEnter));
    optInt(t, p, "syn_proxy_pool_enter_pct", d.synProxyPoolEnterPct, 1, 101);
    optInt(t, p, "syn_proxy_pool_leave_pct", d.synProxyPoolLeavePct, 0, 100);
    if (d.synProxyPoolLeavePct >= d.synProxyPoolEnterPct)
      fail(p + ".syn_proxy_pool_leave_pct", std::to_string(d.synProxyPoolLeavePct) +
                                                ": must be below syn_proxy_pool_enter_pct " +
                                                std::to_string(d.synProxyPoolEnterPct));
    if (const toml::node* n = t.get("timeouts")) {
      const std::string tp = p + ".timeouts";
      const toml::table& tt = asTable(*n, tp);
      checkKeys(tt, tp, {kFlowStateNames.begin(), kFlowStateNames.end()});
      for (std::size_t s = 0; s < kFlowStateCount; ++s) {
        if (const toml::node* v = tt.get(kFlowStateNames[s]))
          d.timeouts.ms[s] =
              static_cast<uint32_t>(asInt(*v, child(tp, kFlowStateNames[s]), 1, 604'800) * 1000);
      }
    }
  }

  void loadInterfaces(const toml::table& root, Config& c) const {
    const toml::node* n = root.get("interface");
    if (!n) fail("interface", "at least one [[interface]] is required");
    const toml::array& a = asArray(*n, "interface");
    if (a.empty()) fail("interface", "at least one [[interface]] is required");
    for (std::size_t i = 0; i < a.size(); ++i) {
      const std::string p = index("interface", i);
      const toml::table& t = asTable(a[i], p);
      checkKeys(t, p, {"port", "address", "gateway", "mtu", "rss"});
      InterfaceConfig ifc;
      const toml::node* portNode = t.get("port");
      if (!portNode) fail(p + ".port", "missing (the DPDK device name or PCI address)");
      ifc.port = asString(*portNode, p + ".port");
      if (ifc.port.empty()) fail(p + ".port", "must not be empty");
      if (ifc.port.rfind(kXdpPortPrefix, 0) == 0) {
        // Linux interface names: 1-15 bytes, no '/', ':' or whitespace.
        const std::string name = ifc.xdpInterface();
        const bool bad = name.empty() || name.size() >= 16 || name == "." || name == ".." ||
                         std::any_of(name.begin(), name.end(), [](unsigned char ch) {
                           return ch == '/' || ch == ':' || std::isspace(ch) || ch < 0x20 || ch == 0x7f;
                         });
        if (bad)
          fail(p + ".port", quoted(ifc.port) + ": expected xdp:IFNAME with a Linux interface name (1-15 "
                                               "characters, no '/', ':' or spaces)");
      }
      if (ifc.port.rfind(kMemifPortPrefix, 0) == 0) {
        // The path goes into a --vdev argument (',' separates its keys) and
        // a sockaddr_un (108 bytes with the terminating NUL).
        const std::string path = ifc.memifSocket();
        const bool bad = path.size() < 2 || path[0] != '/' || path.size() > 107 ||
                         std::any_of(path.begin(), path.end(), [](unsigned char ch) {
                           return ch == ',' || ch == '=' || std::isspace(ch) || ch < 0x20 || ch == 0x7f;
                         });
        if (bad)
          fail(p + ".port", quoted(ifc.port) + ": expected memif:/PATH with an absolute socket path (at most 107 "
                                               "characters, no ',', '=' or spaces)");
      }
      const toml::node* addrNode = t.get("address");
      if (!addrNode) fail(p + ".address", "missing (the dataplane's address on this link, A.B.C.D/N)");
      const std::string addrText = asString(*addrNode, p + ".address");
      const auto prefix = parsePrefix(addrText);
      if (!prefix) fail(p + ".address", quoted(addrText) + ": expected A.B.C.D/N with N in 1-32");
      ifc.address = *prefix;
      if (std::string bad = backendAddressProblem(prefix->addr);
          !bad.empty() || isNetworkOrBroadcast(*prefix, prefix->addr))
        fail(p + ".address", quoted(addrText) + ": not a usable host address on " +
                                 formatIpv4(prefix->addr & prefixMask(prefix->len)) + "/" +
                                 std::to_string(prefix->len));
      if (const toml::node* g = t.get("gateway")) {
        const std::string gt = asString(*g, p + ".gateway");
        const auto gw = parseIpv4(gt);
        if (!gw) fail(p + ".gateway", quoted(gt) + ": not an IPv4 address");
        if (!inPrefix(ifc.address, *gw))
          fail(p + ".gateway", quoted(gt) + ": not inside the interface subnet " + formatPrefix(ifc.address));
        if (*gw == ifc.address.addr) fail(p + ".gateway", quoted(gt) + ": is the interface's own address");
        if (isNetworkOrBroadcast(ifc.address, *gw))
          fail(p + ".gateway",
               quoted(gt) + ": is the network or broadcast address of " + formatPrefix(ifc.address));
        ifc.gateway = *gw;
      }
      optInt(t, p, "mtu", ifc.mtu, 68, 9216);
      optString(t, p, "rss", ifc.rss);
      if (ifc.rss != "auto" && ifc.rss != "ena" && ifc.rss != "toeplitz" && ifc.rss != "none")
        fail(p + ".rss", quoted(ifc.rss) + ": expected one of auto, ena, toeplitz, none");
      for (std::size_t j = 0; j < c.interfaces.size(); ++j) {
        const InterfaceConfig& o = c.interfaces[j];
        if (o.port == ifc.port)
          fail(p + ".port", quoted(ifc.port) + ": already used by interface[" + std::to_string(j) + "]");
        const uint8_t len = std::min(o.address.len, ifc.address.len);
        if ((o.address.addr & prefixMask(len)) == (ifc.address.addr & prefixMask(len)))
          fail(p + ".address", quoted(addrText) + ": overlaps interface[" + std::to_string(j) + "] " +
                                   formatPrefix(o.address));
      }
      c.interfaces.push_back(std::move(ifc));
    }
    const auto xdp = std::find_if(c.interfaces.begin(), c.interfaces.end(),
                                  [](const InterfaceConfig& i) { return !i.xdpInterface().empty(); });
    if (xdp != c.interfaces.end())
      for (std::size_t i = 0; i < c.interfaces.size(); ++i) {
        const InterfaceConfig& ifc = c.interfaces[i];
        if (ifc.mtu <= kXdpMaxMtu) continue;
        const std::string why =
            "AF_XDP carries each frame, with its mbuf and headroom, in one 4 KiB page: set mtu <= " +
            std::to_string(kXdpMaxMtu);
        if (!ifc.xdpInterface().empty())
          fail(index("interface", i) + ".mtu", std::to_string(ifc.mtu) + ": more than an xdp: port carries (" +
                                                   quoted(ifc.port) + "); " + why);
        fail(index("interface", i) + ".mtu",
             std::to_string(ifc.mtu) + ": mbufs are sized for the largest mtu and shared with the xdp: port " +
                 quoted(xdp->port) + " (interface[" + std::to_string(xdp - c.interfaces.begin()) + "]); " + why);
      }
  }

  void loadControl(const toml::table& t, ControlConfig& ctl) const {
    const std::string p = "control";
    checkKeys(t, p, {"resolver", "dns_min_ttl_s", "dns_max_ttl_s"});
    optString(t, p, "resolver", ctl.resolver);
    if (!ctl.resolver.empty()) {
      std::string host = ctl.resolver;
      if (ctl.resolver.find(':') != std::string::npos) {
        try {
          host = splitHostPort(ctl.resolver, "IP or IP:PORT").first;
        } catch (const std::invalid_argument& e) {
          fail(p + ".resolver", e.what());
        }
      }
      if (!parseIpv4(host)) fail(p + ".resolver", quoted(ctl.resolver) + ": expected IP or IP:PORT");
    }
    optInt(t, p, "dns_min_ttl_s", ctl.dnsMinTtlS, 1, 86'400);
    optInt(t, p, "dns_max_ttl_s", ctl.dnsMaxTtlS, 1, 604'800);
    if (ctl.dnsMinTtlS > ctl.dnsMaxTtlS)
      fail(p + ".dns_min_ttl_s",
           std::to_string(ctl.dnsMinTtlS) + ": greater than dns_max_ttl_s " + std::to_string(ctl.dnsMaxTtlS));
  }

  void loadInstance(const toml::table& t, Config& c) const {
    const std::string p = "instance";
    checkKeys(t, p, {"shutdown_drain_s", "health_endpoint"});
    optInt(t, p, "shutdown_drain_s", c.instance.shutdownDrainS, 0, 3600);
    if (const toml::node* n = t.get("health_endpoint")) {
      const std::string key = p + ".health_endpoint";
      const std::string text = asString(*n, key);
      if (!text.empty()) {
        try {
          std::tie(c.instance.healthIp, c.instance.healthPort) = parseEndpoint(text);
        } catch (const std::invalid_argument& e) {
          fail(key, e.what());
        }
        if (std::none_of(c.interfaces.begin(), c.interfaces.end(),
                         [&](const InterfaceConfig& i) { return i.address.addr == c.instance.healthIp; }))
          fail(key, quoted(text) + ": must be an interface address (the address the front health-checks)");
        for (const ServiceConfig& s : c.services)
          if (s.vip == c.instance.healthIp && s.port == c.instance.healthPort && s.proto == IPPROTO_TCP)
            fail(key, quoted(text) + ": is the listen address of service " + quoted(s.name));
      }
    }
  }

  uint32_t localAddress(const std::string& text, const std::string& key, const Config& c) const {
    const auto ip = parseIpv4(text);
    if (!ip) fail(key, quoted(text) + ": not an IPv4 address");
    if (std::string why = localAddressProblem(c.interfaces, *ip); !why.empty())
      fail(key, quoted(text) + ": " + why);
    return *ip;
  }

  BackendConfig loadBackend(const toml::node& n, const std::string& p) const {
    std::string text;
    const toml::node* weightNode = nullptr;
    std::string textKey = p;
    if (n.is_string()) {
      text = asString(n, p);
    } else if (const toml::table* t = n.as_table()) {
      checkKeys(*t, p, {"address", "weight"});
      const toml::node* a = t->get("address");
      if (!a) fail(p + ".address", "missing (\"IP:PORT\" or \"NAME:PORT\")");
      textKey = p + ".address";
      text = asString(*a, textKey);
      weightNode = t->get("weight");
    } else {
      fail(p, std::string("expected \"IP:PORT\", \"NAME:PORT\" or {address = ..., weight = N}, got ") +
                  typeName(n.type()));
    }
    BackendConfig b;
    try {
      b = parseBackend(text);
    } catch (const std::invalid_argument& e) {
      fail(textKey, e.what());
    }
    if (weightNode) b.weight = static_cast<uint32_t>(asInt(*weightNode, p + ".weight", 0, kMaxBackendWeight));
    return b;
  }

  void loadHealth(const toml::table& t, const std::string& p, HealthCheckConfig& h) const {
    checkKeys(t, p,
              {"type", "interval_ms", "timeout_ms", "rise", "fall", "http_path", "http_status", "http_host"});
    optString(t, p, "type", h.type);
    optInt(t, p, "interval_ms", h.intervalMs, kHealthIntervalMinMs, kHealthIntervalMaxMs);
    optInt(t, p, "timeout_ms", h.timeoutMs, kHealthTimeoutMinMs, kHealthIntervalMaxMs);
    optInt(t, p, "rise", h.rise, 1, kHealthRiseFallMax);
    optInt(t, p, "fall", h.fall, 1, kHealthRiseFallMax);
    optString(t, p, "http_path", h.httpPath);
    optInt(t, p, "http_status", h.httpStatus, 100, 599);
    optString(t, p, "http_host", h.httpHost);
    if (std::string why = healthCheckProblem(h); !why.empty()) {
      const auto colon = why.find(':');
      fail(p + "." + why.substr(0, colon), why.substr(colon + 2));
    }
  }

  void loadServices(const toml::table& root, Config& c) const {
    const toml::node* n = root.get("service");
    if (!n) return;
    const toml::array& a = asArray(*n, "service");
    if (a.size() > kMaxServiceSlots)
      fail("service", std::to_string(a.size()) + " services, at most " + std::to_string(kMaxServiceSlots));
    std::size_t totalBackends = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      const std::string p = index("service", i);
      const toml::table& t = asTable(a[i], p);
      checkKeys(
          t, p,
          {"name", "listen", "protocol", "snat", "backends", "mss_clamp", "maglev_size", "health_check",
           "syn_proxy", "proxy_protocol"});
      ServiceConfig s;
      const toml::node* nameNode = t.get("name");
      if (!nameNode) fail(p + ".name", "missing");
      s.name = asString(*nameNode, p + ".name");
      if (std::string why = serviceNameProblem(s.name); !why.empty())
        fail(p + ".name", quoted(s.name) + ": " + why);
      for (std::size_t j = 0; j < c.services.size(); ++j)
        if (c.services[j].name == s.name)
          fail(p + ".name", quoted(s.name) + ": already used by service[" + std::to_string(j) + "]");

      std::string proto = "tcp";
      optString(t, p, "protocol", proto);
      if (proto == "tcp") {
        s.proto = IPPROTO_TCP;
      } else if (proto == "udp") {
        s.proto = IPPROTO_UDP;
      } else {
        fail(p + ".protocol", quoted(proto) + ": expected tcp or udp");
      }

      const toml::node* listenNode = t.get("listen");
      if (!listenNode) fail(p + ".listen", "missing (\"VIP:PORT\")");
      const std::string listen = asString(*listenNode, p + ".listen");
      try {
        std::tie(s.vip, s.port) = parseEndpoint(listen);
      } catch (const std::invalid_argument& e) {
        fail(p + ".listen", e.what());
      }
      if (std::string why = localAddressProblem(c.interfaces, s.vip); !why.empty())
        fail(p + ".listen", quoted(listen) + ": " + why);
      for (std::size_t j = 0; j < c.services.size(); ++j) {
        const ServiceConfig& o = c.services[j];
        if (o.vip == s.vip && o.port == s.port && o.proto == s.proto)
          fail(p + ".listen", quoted(listen) + "/" + proto + ": already used by service[" +
                                  std::to_string(j) + "] (" + o.name + ")");
      }

      if (const toml::node* sn = t.get("snat")) {
        const toml::array& sa = asArray(*sn, p + ".snat");
        if (sa.empty()) fail(p + ".snat", "must not be empty (leave it out to use the interface address)");
        for (std::size_t j = 0; j < sa.size(); ++j) {
          const std::string k = index(p + ".snat", j);
          const uint32_t ip = localAddress(asString(sa[j], k), k, c);
          if (std::find(s.snat.begin(), s.snat.end(), ip) != s.snat.end())
            fail(k, quoted(formatIpv4(ip)) + ": listed twice");
          s.snat.push_back(ip);
        }
      } else {
        s.snat.push_back(interfaceFor(c.interfaces, s.vip)->address.addr);
      }

      optInt(t, p, "mss_clamp", s.mssClamp, 0, 9176);
      if (s.mssClamp != 0 && s.mssClamp < 536)
        fail(p + ".mss_clamp", std::to_string(s.mssClamp) + ": must be 0 (off) or 536-9176");
      if (const toml::node* m = t.get("maglev_size")) {
        const int64_t v = asInt(*m, p + ".maglev_size", 3, 16'777'213);
        if (!dataplane::isPrime(static_cast<uint32_t>(v)))
          fail(p + ".maglev_size", std::to_string(v) + ": must be a prime number");
        s.maglevSize = static_cast<uint32_t>(v);
      }
      if (const toml::node* sp = t.get("syn_proxy")) {
        const std::string text = asString(*sp, p + ".syn_proxy");
        if (!parseSynProxyMode(text, s.synProxy))
          fail(p + ".syn_proxy", quoted(text) + ": expected one of auto, on, off");
        if (s.proto == IPPROTO_UDP && s.synProxy == SynProxyMode::kOn)
          fail(p + ".syn_proxy", "\"on\": SYN cookies are for TCP services (this one is udp)");
      }
      if (const toml::node* pp = t.get("proxy_protocol")) {
        const std::string text = asString(*pp, p + ".proxy_protocol");
        if (text != "v2" && text != "off") fail(p + ".proxy_protocol", quoted(text) + ": expected \"v2\" or \"off\"");
        // PROXY v2 over UDP exists in the specification, but the backends
        // this is for (nginx, Caddy, HAProxy, Envoy) read it on TCP only.
        if (s.proto == IPPROTO_UDP && text == "v2")
          fail(p + ".proxy_protocol", "\"v2\": PROXY protocol is for TCP services (this one is udp; see docs/proxy-protocol.md)");
        s.proxyProtocol = text == "v2";
      }
      if (const toml::node* h = t.get("health_check"))
        loadHealth(asTable(*h, p + ".health_check"), p + ".health_check", s.health);

      if (const toml::node* bn = t.get("backends")) {
        const toml::array& ba = asArray(*bn, p + ".backends");
        for (std::size_t j = 0; j < ba.size(); ++j) {
          const std::string k = index(p + ".backends", j);
          BackendConfig b = loadBackend(ba[j], k);
          for (std::size_t m = 0; m < s.backends.size(); ++m)
            if (s.backends[m].host == b.host && s.backends[m].port == b.port)
              fail(k, quoted(b.host + ":" + std::to_string(b.port)) + ": already listed as backends[" +
                          std::to_string(m) + "]");
          if (!b.isDnsName()) {
            for (const InterfaceConfig& ifc : c.interfaces)
              if (ifc.address.addr == b.ip)
                fail(k, quoted(b.host) + ": is an interface address of this load balancer");
            if (b.ip == s.vip) fail(k, quoted(b.host) + ": is the service's own VIP");
          }
          s.backends.push_back(std::move(b));
        }
        if (s.backends.size() >= s.maglevSize)
          fail(p + ".backends", std::to_string(s.backends.size()) + " backends: maglev_size " +
                                    std::to_string(s.maglevSize) +
                                    " must be larger than the number of backends");
        totalBackends += s.backends.size();
        if (totalBackends > kMaxBackendSlots)
          fail(p + ".backends",
               "more than " + std::to_string(kMaxBackendSlots) + " backends in all services");
      }
      c.services.push_back(std::move(s));
    }
    // A backend may not be another service's VIP either: that would loop
    // traffic through the load balancer.
    for (std::size_t i = 0; i < c.services.size(); ++i)
      for (std::size_t j = 0; j < c.services[i].backends.size(); ++j)
        for (const ServiceConfig& o : c.services)
          if (!c.services[i].backends[j].isDnsName() && c.services[i].backends[j].ip == o.vip)
            fail(index(index("service", i) + ".backends", j),
                 quoted(c.services[i].backends[j].host) + ": is the VIP of service " + quoted(o.name));
  }

  std::string file_;
};

void renderBackend(std::ostringstream& o, const BackendConfig& b) {
  const std::string addr = b.host + ":" + std::to_string(b.port);
  if (b.weight == 1) {
    o << tomlString(addr);
  } else {
    o << "{ address = " << tomlString(addr) << ", weight = " << b.weight << " }";
  }
}

}  // namespace

ConfigError::ConfigError(std::string file, std::string key, const std::string& problem)
    : std::runtime_error(joinMessage(file, key, problem)), file_(std::move(file)), key_(std::move(key)) {}

std::optional<uint32_t> parseIpv4(const std::string& s) {
  uint32_t out = 0;
  std::size_t pos = 0;
  for (int part = 0; part < 4; ++part) {
    if (part > 0) {
      if (pos >= s.size() || s[pos] != '.') return std::nullopt;
      ++pos;
    }
    const std::size_t start = pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9' && pos - start < 4) ++pos;
    const std::size_t len = pos - start;
    // Leading zeros are refused: inet_aton reads them as octal, people do not.
    if (len == 0 || len > 3 || (len > 1 && s[start] == '0')) return std::nullopt;
    uint32_t v = 0;
    for (std::size_t i = start; i < pos; ++i) v = v * 10 + static_cast<uint32_t>(s[i] - '0');
    if (v > 255) return std::nullopt;
    out = (out << 8) | v;
  }
  if (pos != s.size()) return std::nullopt;
  return out;
}

std::string formatIpv4(uint32_t ip) {
  return std::to_string(ip >> 24) + "." + std::to_string((ip >> 16) & 0xff) + "." +
         std::to_string((ip >> 8) & 0xff) + "." + std::to_string(ip & 0xff);
}

std::string formatEndpoint(uint32_t ip, uint16_t port) { return formatIpv4(ip) + ":" + std::to_string(port); }

std::pair<uint32_t, uint16_t> parseEndpoint(const std::string& s) {
  auto [host, port] = splitHostPort(s, "IP:PORT");
  const auto ip = parseIpv4(host);
  if (!ip) throw std::invalid_argument(quoted(s) + ": bad IPv4 address " + quoted(host));
  return {*ip, port};
}

BackendConfig parseBackend(const std::string& s) {
  auto [host, port] = splitHostPort(s, "IP:PORT or NAME:PORT");
  BackendConfig b;
  b.port = port;
  if (looksNumeric(host)) {
    const auto ip = parseIpv4(host);
    if (!ip) throw std::invalid_argument(quoted(s) + ": bad IPv4 address " + quoted(host));
    if (std::string why = backendAddressProblem(*ip); !why.empty())
      throw std::invalid_argument(quoted(s) + ": " + why);
    b.ip = *ip;
    b.host = host;
    return b;
  }
  if (!validHostname(host))
    throw std::invalid_argument(quoted(s) + ": " + quoted(host) +
                                " is neither an IPv4 address nor a DNS name");
  std::transform(host.begin(), host.end(), host.begin(), [](unsigned char c) { return std::tolower(c); });
  if (host.back() == '.') host.pop_back();
  b.host = host;
  return b;
}

const InterfaceConfig* interfaceFor(const std::vector<InterfaceConfig>& interfaces, uint32_t ip) {
  for (const InterfaceConfig& i : interfaces)
    if (inPrefix(i.address, ip)) return &i;
  return nullptr;
}

std::string localAddressProblem(const std::vector<InterfaceConfig>& interfaces, uint32_t ip) {
  const InterfaceConfig* ifc = interfaceFor(interfaces, ip);
  if (!ifc) {
    std::string subnets;
    for (const InterfaceConfig& i : interfaces)
      subnets += (subnets.empty() ? "" : ", ") + formatPrefix(i.address);
    return "not an address of this load balancer: it must be an interface address or inside an interface "
           "subnet (" +
           subnets + ")";
  }
  if (ip == ifc->address.addr) return {};
  if (isNetworkOrBroadcast(ifc->address, ip))
    return "is the network or broadcast address of " + formatPrefix(ifc->address);
  if (ifc->gateway && *ifc->gateway == ip) return "is the gateway of " + ifc->port;
  return {};
}

std::string serviceNameProblem(const std::string& name) {
  if (name.empty()) return "must not be empty";
  if (name.size() > 63) return "longer than 63 characters";
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return "may contain only letters, digits, '-', '_' and '.'";
  return {};
}

Config parseConfig(const std::string& text, const std::string& name) {
  toml::table root;
  try {
    root = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    throw ConfigError(name, "",
                      "TOML syntax error at line " + std::to_string(where.line) + ", column " +
                          std::to_string(where.column) + ": " + std::string(e.description()));
  }
  return Loader(name).load(root);
}

Config loadConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path, "", std::string("cannot read: ") + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw ConfigError(path, "", "read error");
  return parseConfig(ss.str(), path);
}

std::string renderConfig(const Config& c) {
  std::ostringstream o;
  const DataplaneConfig& d = c.dataplane;
  o << "# straitd configuration";
  if (!c.file.empty()) o << " (loaded from " << c.file << ")";
  o << "\n\n[dataplane]\neal = [";
  for (std::size_t i = 0; i < d.eal.size(); ++i) o << (i ? ", " : "") << tomlString(d.eal[i]);
  o << "]\n"
    << "workers = " << d.workers << "\n"
    << "flow_capacity = " << d.flowCapacity << "\n"
    << "mbufs = " << d.mbufs << "\n"
    << "rx_descriptors = " << d.rxDescriptors << "\n"
    << "tx_descriptors = " << d.txDescriptors << "\n"
    << "burst = " << d.burst << "\n"
    << "snat_port_min = " << d.snatPortMin << "\n"
    << "snat_port_max = " << d.snatPortMax << "\n"
    << "snat_pools_per_worker = " << d.snatPoolsPerWorker << "\n"
    << "idle_sleep_us = " << d.idleSleepUs << "\n"
    << "neighbour_timeout_ms = " << d.neighbourTimeoutMs << "\n"
    << "handoff_ring_size = " << d.handoffRingSize << "\n"
    << "syn_cookie_period_ms = " << d.synCookiePeriodMs << "\n"
    << "syn_proxy_half_open_enter = " << d.synProxyHalfOpenEnter << "\n"
    << "syn_proxy_half_open_leave = " << d.synProxyHalfOpenLeave << "\n"
    << "syn_proxy_pool_enter_pct = " << d.synProxyPoolEnterPct << "\n"
    << "syn_proxy_pool_leave_pct = " << d.synProxyPoolLeavePct << "\n"
    << "\n[dataplane.timeouts]  # seconds\n";
  for (std::size_t s = 0; s < kFlowStateCount; ++s)
    o << kFlowStateNames[s] << " = " << (d.timeouts.ms[s] + 999) / 1000 << "\n";

  for (const InterfaceConfig& i : c.interfaces) {
    o << "\n[[interface]]\n"
      << "port = " << tomlString(i.port) << "\n"
      << "address = " << tomlString(formatPrefix(i.address)) << "\n";
    if (i.gateway) o << "gateway = " << tomlString(formatIpv4(*i.gateway)) << "\n";
    o << "mtu = " << i.mtu << "\n"
      << "rss = " << tomlString(i.rss) << "\n";
  }

  o << "\n[control]\n"
    << "resolver = " << tomlString(c.control.resolver) << "\n"
    << "dns_min_ttl_s = " << c.control.dnsMinTtlS << "\n"
    << "dns_max_ttl_s = " << c.control.dnsMaxTtlS << "\n";

  o << "\n[instance]\n"
    << "shutdown_drain_s = " << c.instance.shutdownDrainS << "\n"
    << "health_endpoint = "
    << tomlString(c.instance.healthIp ? formatEndpoint(c.instance.healthIp, c.instance.healthPort) : "") << "\n";

  for (const ServiceConfig& s : c.services) {
    o << "\n[[service]]\n"
      << "name = " << tomlString(s.name) << "\n"
      << "listen = " << tomlString(formatEndpoint(s.vip, s.port)) << "\n"
      << "protocol = " << (s.proto == IPPROTO_UDP ? "\"udp\"" : "\"tcp\"") << "\n";
    if (!s.snat.empty()) {
      o << "snat = [";
      for (std::size_t i = 0; i < s.snat.size(); ++i)
        o << (i ? ", " : "") << tomlString(formatIpv4(s.snat[i]));
      o << "]\n";
    }
    o << "backends = [";
    for (std::size_t i = 0; i < s.backends.size(); ++i) {
      o << (i ? ",\n  " : "\n  ");
      renderBackend(o, s.backends[i]);
    }
    o << (s.backends.empty() ? "]\n" : ",\n]\n");
    o << "mss_clamp = " << s.mssClamp << "\n"
      << "maglev_size = " << s.maglevSize << "\n"
      << "syn_proxy = " << tomlString(std::string(synProxyModeName(s.synProxy))) << "\n"
      << "proxy_protocol = " << tomlString(s.proxyProtocol ? "v2" : "off") << "\n";
    const HealthCheckConfig& h = s.health;
    o << "[service.health_check]\n"
      << "type = " << tomlString(h.type) << "\n"
      << "interval_ms = " << h.intervalMs << "\n"
      << "timeout_ms = " << h.timeoutMs << "\n"
      << "rise = " << h.rise << "\n"
      << "fall = " << h.fall << "\n"
      << "http_path = " << tomlString(h.httpPath) << "\n"
      << "http_status = " << h.httpStatus << "\n"
      << "http_host = " << tomlString(h.httpHost) << "\n";
  }
  return o.str();
}

std::string restartDifference(const Config& running, const Config& next) {
  auto fixed = [](const Config& c) {
    Config f = c;
    f.file.clear();
    f.services.clear();
    f.instance.shutdownDrainS = 0;
    std::vector<std::string> lines;
    std::istringstream in(renderConfig(f));
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    return lines;
  };
  const std::vector<std::string> a = fixed(running), b = fixed(next);
  std::string section;
  std::size_t interfaces = 0;
  for (std::size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    const std::string& l = i < a.size() ? a[i] : b[i];
    if (l.rfind("[[interface]]", 0) == 0) {
      section = "interface[" + std::to_string(interfaces++) + "]";
    } else if (!l.empty() && l[0] == '[') {
      section = l.substr(1, l.find(']') - 1);
    }
    if (i < a.size() && i < b.size() && a[i] == b[i]) continue;
    if (i >= a.size() || i >= b.size() || a[i].rfind("[[interface]]", 0) == 0 ||
        b[i].rfind("[[interface]]", 0) == 0 || a[i].find(" = ") == std::string::npos)
      return "interface (the list of interfaces)";
    return section + "." + a[i].substr(0, a[i].find(" = "));
  }
  return {};
}

std::string healthCheckProblem(const HealthCheckConfig& h) {
  auto quoted = [](const std::string& v) { return "\"" + v + "\""; };
  auto printable = [](const std::string& v) {
    return std::all_of(v.begin(), v.end(), [](char c) { return c > 0x20 && c < 0x7f; });
  };
  if (h.type != "none" && h.type != "tcp" && h.type != "http")
    return "type: " + quoted(h.type) + ": expected one of none, tcp, http";
  if (h.timeoutMs > h.intervalMs)
    return "timeout_ms: " + std::to_string(h.timeoutMs) + ": greater than interval_ms " + std::to_string(h.intervalMs);
  if (h.httpPath.empty() || h.httpPath.front() != '/' || !printable(h.httpPath) || h.httpPath.size() > 1024)
    return "http_path: " + quoted(h.httpPath) + ": expected an absolute path (starting with /, no spaces)";
  if (!printable(h.httpHost) || h.httpHost.size() > 255)
    return "http_host: " + quoted(h.httpHost) + ": expected a host name (no spaces or control characters)";
  return "";
}

}  // namespace strait::controlplane
