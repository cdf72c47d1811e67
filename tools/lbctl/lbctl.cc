// lbctl: the command-line client of straitd's control socket. It checks
// its arguments locally (so a typo never reaches the daemon), sends one
// JSON request (protocol version 1, docs/control-api.md), and prints the
// reply as a table, or as the daemon's JSON with --json. Exit status: 0
// success, 1 the request failed (or straitd is not reachable), 2 bad usage.
// It links neither DPDK nor the daemon's code, only Boost.Program_options
// and nlohmann-json.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cctype>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "strait/control_protocol.h"
#include "controlplane/config.h"  // kMaxBackendWeight (constants only; nothing is linked)

namespace po = boost::program_options;
using json = nlohmann::json;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kProtocolVersion = strait::kControlProtocolVersion;
using strait::kMaxFlowsLimit;
constexpr int kReplyTimeoutMs = 60'000;
const char* const kDefaultSocket = "/run/strait/control.sock";

const char* const kUsage =
    "Usage: lbctl [--socket PATH] [--json] COMMAND ...\n"
    "\n"
    "Commands:\n"
    "  service list\n"
    "  service add NAME --listen IP:PORT --protocol tcp|udp [--snat IP[,IP...]]\n"
    "              [--health tcp|http] [--health-interval MS] [--health-timeout MS]\n"
    "              [--health-rise N] [--health-fall N] [--health-path PATH]\n"
    "              [--health-status N] [--health-host HOST] [--syn-proxy auto|on|off]\n"
    "              [--proxy-protocol v2|off]\n"
    "  service remove NAME\n"
    "  backend list SERVICE\n"
    "  backend add SERVICE IP:PORT [--weight N]\n"
    "  backend remove SERVICE IP:PORT [--flush]\n"
    "  backend set SERVICE IP:PORT --weight N      (weight 0 = drain)\n"
    "  stats\n"
    "  flows [--service NAME] [--limit N]\n"
    "  config show\n"
    "  config reload                  re-read straitd's configuration file and apply it\n"
    "  config save [PATH]             write the running configuration (default: the file\n"
    "                                 straitd was started with) so a restart keeps it\n"
    "  capacity                       per service: new connections/s the SNAT ports can\n"
    "                                 sustain, and the fullest SNAT pool now\n"
    "  drain                          fail the instance health endpoint and stop once\n"
    "                                 flows are gone or shutdown_drain_s has passed\n"
    "  instance                       the instance state the health endpoint reports\n"
    "\n"
    "A backend is IP:PORT, or NAME:PORT for a DNS-named backend.\n"
    "\n"
    "Options:\n"
    "  --socket PATH   straitd's control socket (default /run/strait/control.sock)\n"
    "  --json          print the daemon's JSON reply instead of a table\n"
    "  -h, --help      show this help\n"
    "\n"
    "Exit status: 0 success, 1 the request failed, 2 bad usage.\n";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct RequestFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// --- local argument checks (the daemon checks again) ---------------------

bool isIpv4(const std::string& s) {
  int parts = 0;
  std::size_t i = 0;
  while (parts < 4) {
    const std::size_t start = i;
    unsigned v = 0;
    while (i < s.size() && i - start < 4 && s[i] >= '0' && s[i] <= '9') v = v * 10 + unsigned(s[i++] - '0');
    const std::size_t len = i - start;
    if (len == 0 || len > 3 || v > 255 || (len > 1 && s[start] == '0')) return false;
    if (++parts < 4) {
      if (i >= s.size() || s[i] != '.') return false;
      ++i;
    }
  }
  return i == s.size();
}

bool isHostname(std::string h) {
  if (!h.empty() && h.back() == '.') h.pop_back();
  if (h.empty() || h.size() > 253) return false;
  std::stringstream ss(h);
  std::string label;
  std::size_t labels = 0;
  while (std::getline(ss, label, '.')) {
    ++labels;
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
  }
  return labels > 0 && h.back() != '.';
}

std::optional<uint64_t> parseNumber(const std::string& s, uint64_t max) {
  if (s.empty() || s.size() > 12 ||
      !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  const uint64_t v = std::stoull(s);
  if (v > max) return std::nullopt;
  return v;
}

// "IP:PORT" (or NAME:PORT when `allowName`).
void checkEndpoint(const std::string& what, const std::string& s, bool allowName) {
  const auto colon = s.rfind(':');
  const char* expected = allowName ? "IP:PORT or NAME:PORT" : "IP:PORT";
  if (colon == std::string::npos || colon == 0)
    throw UsageError(what + " \"" + s + "\": expected " + expected);
  const std::string host = s.substr(0, colon);
  const auto port = parseNumber(s.substr(colon + 1), 65535);
  if (!port || *port == 0) throw UsageError(what + " \"" + s + "\": port must be 1-65535");
  const bool numeric =
      std::all_of(host.begin(), host.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
  if (numeric || !allowName) {
    if (!isIpv4(host)) throw UsageError(what + " \"" + s + "\": bad IPv4 address \"" + host + "\"");
  } else if (!isHostname(host)) {
    throw UsageError(what + " \"" + s + "\": \"" + host + "\" is neither an IPv4 address nor a DNS name");
  }
}

uint64_t checkWeight(const std::string& s) {
  const auto w = parseNumber(s, strait::controlplane::kMaxBackendWeight);
  if (!w)
    throw UsageError("--weight \"" + s + "\": expected an integer 0-" +
                     std::to_string(strait::controlplane::kMaxBackendWeight));
  return *w;
}

std::vector<std::string> splitComma(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  if (!s.empty() && s.back() == ',') out.emplace_back();
  return out;
}

// --- talking to straitd ---------------------------------------------------

json roundTrip(const std::string& path, const json& request) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    throw RequestFailed("cannot connect to " + path + ": path too long");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw RequestFailed(std::string("socket: ") + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    throw RequestFailed("cannot connect to " + path + ": " + std::strerror(errno) + " (is straitd running?)");

  const std::string line = request.dump() + "\n";
  for (std::size_t off = 0; off < line.size();) {
    const ssize_t n = ::send(fd, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw RequestFailed("sending to " + path + ": " + std::strerror(errno));
    }
    off += static_cast<std::size_t>(n);
  }
  std::string reply;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int rc = ::poll(&p, 1, kReplyTimeoutMs);
    if (rc == 0)
      throw RequestFailed("no reply from straitd on " + path + " within " +
                          std::to_string(kReplyTimeoutMs / 1000) + " s");
    if (rc < 0) {
      if (errno == EINTR) continue;
      throw RequestFailed(std::string("poll: ") + std::strerror(errno));
    }
    char buf[65536];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw RequestFailed("reading from " + path + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    reply.append(buf, static_cast<std::size_t>(n));
    if (reply.find('\n') != std::string::npos) break;
  }
  const auto nl = reply.find('\n');
  if (nl != std::string::npos) reply.resize(nl);
  if (reply.empty()) throw RequestFailed("straitd closed the connection without a reply");
  try {
    return json::parse(reply);
  } catch (const json::parse_error&) {
    throw RequestFailed("malformed reply from straitd: " + reply.substr(0, 200));
  }
}

// Writes `text` to `path` through a temporary file in the same directory
// and a rename, so a reader (or a crash) never sees half a file.
void writeFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".lbctl-tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) throw RequestFailed("cannot write " + tmp + ": " + std::strerror(errno));
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size() && std::fflush(f) == 0 &&
                  ::fsync(fileno(f)) == 0;
  const int err = errno;
  std::fclose(f);
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = ok ? errno : err;
    std::remove(tmp.c_str());
    throw RequestFailed("cannot write " + path + ": " + std::strerror(e));
  }
}

// --- output ---------------------------------------------------------------

std::string str(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_null()) return "-";
  return j.dump();
}

class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print(std::ostream& o) const {
    std::vector<std::size_t> w;
    for (const auto& r : rows_)
      for (std::size_t i = 0; i < r.size(); ++i) {
        if (w.size() <= i) w.push_back(0);
        w[i] = std::max(w[i], r[i].size());
      }
    for (const auto& r : rows_) {
      std::string line;
      for (std::size_t i = 0; i < r.size(); ++i) {
        line += r[i];
        if (i + 1 < r.size()) line += std::string(w[i] - r[i].size() + 2, ' ');
      }
      o << line << "\n";
    }
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

void printServices(const json& r) {
  Table t({"NAME", "LISTEN", "PROTO", "SNAT", "BACKENDS", "ACTIVE", "FLOWS", "PACKETS", "BYTES"});
  for (const json& s : r.at("services")) {
    std::string snat;
    for (const json& a : s.at("snat")) snat += (snat.empty() ? "" : ",") + str(a);
    std::string backends = str(s.at("backends_available")) + "/" + str(s.at("backends")) + " up";
    if (s.value("backends_draining", 0) > 0) backends += ", " + str(s.at("backends_draining")) + " draining";
    if (s.value("fail_open", false)) backends += " (FAIL OPEN)";
    t.add({str(s.at("name")), str(s.at("listen")), str(s.at("protocol")), snat, backends,
           str(s.at("active_flows")), str(s.at("flows_total")), str(s.at("packets")), str(s.at("bytes"))});
  }
  t.print(std::cout);
}

void printBackends(const json& r) {
  std::cout << "service " << str(r.at("service")) << " " << str(r.at("listen")) << "/"
            << str(r.at("protocol")) << "\n";
  if (r.value("fail_open", false))
    std::cout << "warning: every backend is down: failing open (new flows spread over all of them)\n";
  Table t({"ADDRESS", "WEIGHT", "HEALTH", "STATE", "ACTIVE", "FLOWS", "PACKETS", "BYTES", "DNS"});
  for (const json& b : r.at("backends")) {
    std::string dns;
    if (b.contains("dns_names"))
      for (const json& n : b.at("dns_names")) dns += (dns.empty() ? "" : ",") + str(n);
    t.add({str(b.at("address")), str(b.at("weight")), str(b.at("health")), str(b.at("state")),
           str(b.at("active_flows")), str(b.at("flows_total")), str(b.at("packets")), str(b.at("bytes")),
           dns.empty() ? "-" : dns});
  }
  t.print(std::cout);
  if (r.contains("dns") && !r.at("dns").empty()) {
    std::cout << "\n";
    Table d({"DNS NAME", "WEIGHT", "ADDRESSES"});
    for (const json& n : r.at("dns")) {
      std::string addrs;
      for (const json& a : n.at("addresses")) addrs += (addrs.empty() ? "" : ",") + str(a);
      d.add({str(n.at("name")), str(n.at("weight")), addrs.empty() ? "(not resolved)" : addrs});
    }
    d.print(std::cout);
  }
}

void printStats(const json& r) {
  const json& f = r.at("flows");
  std::cout << "snapshot generation  " << str(r.at("snapshot_generation")) << "\n"
            << "rx packets           " << str(r.at("rx_packets")) << "\n"
            << "tx packets           " << str(r.at("tx_packets")) << "\n"
            << "flows active         " << str(f.at("active")) << " / " << str(f.at("capacity")) << "\n"
            << "flows created        " << str(f.at("created")) << "\n"
            << "flows expired        " << str(f.at("expired")) << "\n"
            << "flows flushed        " << str(f.at("flushed")) << "\n";
  if (f.contains("early_dropped")) {
    // Early drops by the recycled flow's state, on one line.
    std::cout << "flows early dropped ";
    for (const auto& [k, v] : f.at("early_dropped").items()) std::cout << " " << k << "=" << str(v);
    std::cout << "\n";
  }
  std::cout << "neighbours           " << str(r.at("neighbours")) << "\n"
            << "handoff in/out       " << str(r.at("handoff_in")) << " / " << str(r.at("handoff_out")) << "\n"
            << "drops total          " << str(r.at("drops_total")) << "\n";
  if (r.contains("syn_cookies")) {
    const json& c = r.at("syn_cookies");
    std::cout << "syn cookies          sent " << str(c.at("sent")) << ", validated " << str(c.at("validated"))
              << ", rejected " << str(c.at("rejected_invalid")) << " invalid / " << str(c.at("rejected_stale"))
              << " stale / " << str(c.at("rejected_replayed")) << " replayed\n";
  }
  std::cout << "\n";
  Table w({"WORKER", "RX", "TX", "FLOWS CREATED", "BUSY", "GENERATION", "COOKIES"});
  for (const json& x : r.at("workers")) {
    std::ostringstream busy;
    busy << std::fixed << std::setprecision(1) << x.at("busy_ratio").get<double>() * 100.0 << "%";
    w.add({str(x.at("worker")), str(x.at("rx_packets")), str(x.at("tx_packets")), str(x.at("flows_created")),
           busy.str(), str(x.at("snapshot_generation")), x.value("syn_cookie_mode", false) ? "on" : "off"});
  }
  w.print(std::cout);
  std::cout << "\n";
  if (f.contains("by_state")) {
    Table st({"FLOW STATE", "FLOWS"});
    for (const auto& [k, v] : f.at("by_state").items()) st.add({k, str(v)});
    st.print(std::cout);
    std::cout << "\n";
  }
  Table d({"DROP REASON", "PACKETS"});
  for (const auto& [k, v] : r.at("drops").items()) d.add({k, str(v)});
  d.print(std::cout);
  std::cout << "\n";
  Table s({"SNAT ADDRESS", "PORTS IN USE", "CAPACITY"});
  for (const json& x : r.at("snat"))
    s.add({str(x.at("address")), str(x.at("ports_in_use")), str(x.at("ports_capacity"))});
  s.print(std::cout);
}

void printCapacity(const json& r) {
  Table t({"SERVICE", "SNAT", "BACKENDS", "PORTS", "HOLD", "NEW CONN/S", "WORST POOL", "USE"});
  for (const json& c : r.at("services")) {
    std::ostringstream rate, hold, use;
    rate << std::fixed << std::setprecision(0) << c.at("new_connections_per_s").get<double>();
    hold << std::fixed << std::setprecision(0) << c.at("hold_s").get<double>() << "s";
    std::string worst = "-";
    const json& w = c.at("worst_pool");
    if (!w.is_null()) {
      worst = str(w.at("address")) + "->" + str(w.at("backend")) + " w" + str(w.at("worker")) + " " +
              str(w.at("ports_in_use")) + "/" + str(w.at("ports_capacity"));
      use << std::fixed << std::setprecision(1) << w.at("use").get<double>() * 100.0 << "%";
    }
    t.add({str(c.at("service")), str(c.at("snat_addresses")), str(c.at("backends_offered")), str(c.at("port_range")),
           hold.str(), rate.str(), worst, w.is_null() ? "-" : use.str()});
  }
  t.print(std::cout);
}

void printFlows(const json& r) {
  Table t({"WORKER", "PROTO", "CLIENT", "VIP", "SNAT", "BACKEND", "SERVICE", "STATE", "IDLE"});
  for (const json& f : r.at("flows")) {
    std::ostringstream idle;
    idle << std::fixed << std::setprecision(1) << f.at("idle_ms").get<double>() / 1000.0 << "s";
    t.add({str(f.at("worker")), str(f.at("protocol")), str(f.at("client")), str(f.at("vip")),
           str(f.at("snat")), str(f.at("backend")), str(f.at("service")), str(f.at("state")), idle.str()});
  }
  t.print(std::cout);
  std::cout << r.at("flows").size() << " flows shown (limit " << str(r.at("limit")) << ", "
            << str(r.at("active")) << " active)\n";
}

// --- command line ---------------------------------------------------------

struct Command {
  std::string name;  // "backend add"
  json args = json::object();
};

// Picks the command words out of argv (skipping the global options and the
// value of --socket) and returns the remaining tokens for Boost.
std::vector<std::string> splitCommandWords(const std::vector<std::string>& tokens,
                                           std::vector<std::string>& words) {
  std::vector<std::string> rest;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    if (words.size() < 2 && (t == "--socket")) {
      rest.push_back(t);
      if (i + 1 < tokens.size()) rest.push_back(tokens[++i]);
      continue;
    }
    const bool needVerb =
        words.size() == 1 && (words[0] == "service" || words[0] == "backend" || words[0] == "config");
    if ((words.empty() || needVerb) && !t.empty() && t[0] != '-') {
      words.push_back(t);
      continue;
    }
    rest.push_back(t);
  }
  return rest;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> tokens(argv + 1, argv + argc);
  std::string socketPath = kDefaultSocket;
  std::string savePath;  // config save: "" = the daemon's own file
  bool jsonOut = false;
  Command cmd;
  try {
    std::vector<std::string> words;
    const std::vector<std::string> rest = splitCommandWords(tokens, words);
    if (words.empty()) {
      if (std::any_of(tokens.begin(), tokens.end(),
                      [](const std::string& t) { return t == "-h" || t == "--help"; })) {
        std::cout << kUsage;
        return kExitOk;
      }
      throw UsageError("missing command");
    }
    cmd.name = words[0] + (words.size() > 1 ? " " + words[1] : "");

    po::options_description opts;
    opts.add_options()("socket", po::value(&socketPath))("json", po::bool_switch(&jsonOut))(
        "help,h", po::bool_switch());
    std::string listen, protocol, snat, weight, service, limit;
    std::string synProxy, proxyProtocol;
    std::string health, healthInterval, healthTimeout, healthRise, healthFall, healthPath, healthStatus, healthHost;
    bool flush = false;
    std::size_t operandsWanted = 0;
    std::size_t operandsOptional = 0;
    if (cmd.name == "service list" || cmd.name == "stats" || cmd.name == "config show" ||
        cmd.name == "config reload" || cmd.name == "drain" || cmd.name == "instance" || cmd.name == "capacity") {
      operandsWanted = 0;
    } else if (cmd.name == "config save") {
      operandsOptional = 1;
    } else if (cmd.name == "service add") {
      opts.add_options()("listen", po::value(&listen))("protocol", po::value(&protocol))("snat",
                                                                                         po::value(&snat));
      opts.add_options()("syn-proxy", po::value(&synProxy))("proxy-protocol", po::value(&proxyProtocol));
      opts.add_options()("health", po::value(&health))("health-interval", po::value(&healthInterval))(
          "health-timeout", po::value(&healthTimeout))("health-rise", po::value(&healthRise))(
          "health-fall", po::value(&healthFall))("health-path", po::value(&healthPath))(
          "health-status", po::value(&healthStatus))("health-host", po::value(&healthHost));
      operandsWanted = 1;
    } else if (cmd.name == "service remove" || cmd.name == "backend list") {
      operandsWanted = 1;
    } else if (cmd.name == "backend add" || cmd.name == "backend set") {
      opts.add_options()("weight", po::value(&weight));
      operandsWanted = 2;
    } else if (cmd.name == "backend remove") {
      opts.add_options()("flush", po::bool_switch(&flush));
      operandsWanted = 2;
    } else if (cmd.name == "flows") {
      opts.add_options()("service", po::value(&service))("limit", po::value(&limit));
      operandsWanted = 0;
    } else if (words.size() == 1 &&
               (words[0] == "service" || words[0] == "backend" || words[0] == "config")) {
      throw UsageError("missing subcommand for \"" + words[0] + "\"");
    } else {
      throw UsageError("unknown command \"" + cmd.name + "\"");
    }
    po::options_description hidden;
    hidden.add_options()("operand", po::value<std::vector<std::string>>());
    po::options_description all;
    all.add(opts).add(hidden);
    po::positional_options_description pos;
    pos.add("operand", -1);
    po::variables_map vm;
    po::store(po::command_line_parser(rest).options(all).positional(pos).run(), vm);
    po::notify(vm);
    if (vm["help"].as<bool>()) {
      std::cout << kUsage;
      return kExitOk;
    }
    const auto operands =
        vm.count("operand") ? vm["operand"].as<std::vector<std::string>>() : std::vector<std::string>{};
    if (operands.size() != operandsWanted && !(operandsOptional && operands.size() <= operandsOptional)) {
      if (operands.size() > operandsWanted)
        throw UsageError("unexpected argument \"" + operands[std::max(operandsWanted, operandsOptional)] + "\"");
      throw UsageError(cmd.name == "service add" || cmd.name == "service remove" ? "missing service NAME"
                       : operands.empty()                                        ? "missing SERVICE"
                                                                                 : "missing backend IP:PORT");
    }
    if (socketPath.empty()) throw UsageError("--socket: empty path");
    if (cmd.name == "config save") {
      if (!operands.empty()) {
        if (operands[0].empty()) throw UsageError("config save: empty PATH");
        savePath = operands[0];
      }
    }

    json& a = cmd.args;
    if (cmd.name == "service add") {
      a["name"] = operands[0];
      if (listen.empty()) throw UsageError("service add: --listen IP:PORT is required");
      checkEndpoint("--listen", listen, false);
      a["listen"] = listen;
      if (protocol.empty()) throw UsageError("service add: --protocol tcp|udp is required");
      if (protocol != "tcp" && protocol != "udp")
        throw UsageError("--protocol \"" + protocol + "\": expected tcp or udp");
      a["protocol"] = protocol;
      if (vm.count("snat")) {
        json list = json::array();
        for (const std::string& ip : splitComma(snat)) {
          if (!isIpv4(ip)) throw UsageError("--snat: \"" + ip + "\" is not an IPv4 address");
          list.push_back(ip);
        }
        if (list.empty()) throw UsageError("--snat: expected IP[,IP...]");
        a["snat"] = list;
      }
      if (vm.count("syn-proxy")) {
        if (synProxy != "auto" && synProxy != "on" && synProxy != "off")
          throw UsageError("--syn-proxy \"" + synProxy + "\": expected auto, on or off");
        a["syn_proxy"] = synProxy;
      }
      if (vm.count("proxy-protocol")) {
        if (proxyProtocol != "v2" && proxyProtocol != "off")
          throw UsageError("--proxy-protocol \"" + proxyProtocol + "\": expected v2 or off");
        a["proxy_protocol"] = proxyProtocol;
      }
      // Health check: the same keys as [service.health_check]; the daemon
      // checks ranges and consistency, lbctl only the syntax.
      json hc = json::object();
      if (vm.count("health")) {
        if (health != "none" && health != "tcp" && health != "http")
          throw UsageError("--health \"" + health + "\": expected none, tcp or http");
        hc["type"] = health;
      }
      auto number = [&](const char* flag, const std::string& v, const char* key, uint64_t max) {
        if (!vm.count(flag)) return;
        const auto n = parseNumber(v, max);
        if (!n) throw UsageError(std::string("--") + flag + " \"" + v + "\": expected a number 0-" + std::to_string(max));
        hc[key] = *n;
      };
      number("health-interval", healthInterval, "interval_ms", 3'600'000);
      number("health-timeout", healthTimeout, "timeout_ms", 3'600'000);
      number("health-rise", healthRise, "rise", 100);
      number("health-fall", healthFall, "fall", 100);
      number("health-status", healthStatus, "http_status", 599);
      if (vm.count("health-path")) hc["http_path"] = healthPath;
      if (vm.count("health-host")) hc["http_host"] = healthHost;
      if (!hc.empty()) {
        if (!hc.contains("type")) throw UsageError("service add: --health tcp|http is required with --health-* options");
        a["health_check"] = hc;
      }
    } else if (cmd.name == "service remove") {
      a["name"] = operands[0];
    } else if (cmd.name == "backend list") {
      a["service"] = operands[0];
    } else if (cmd.name == "backend add" || cmd.name == "backend set" || cmd.name == "backend remove") {
      a["service"] = operands[0];
      checkEndpoint("backend", operands[1], true);
      a["backend"] = operands[1];
      if (cmd.name == "backend set" && !vm.count("weight"))
        throw UsageError("backend set: --weight N is required");
      if (vm.count("weight")) a["weight"] = checkWeight(weight);
      if (cmd.name == "backend remove" && flush) a["flush"] = true;
    } else if (cmd.name == "flows") {
      if (vm.count("service")) {
        if (service.empty()) throw UsageError("--service: empty name");
        a["service"] = service;
      }
      if (vm.count("limit")) {
        const auto n = parseNumber(limit, kMaxFlowsLimit);
        if (!n || *n == 0)
          throw UsageError("--limit \"" + limit + "\": expected an integer 1-" +
                           std::to_string(kMaxFlowsLimit));
        a["limit"] = *n;
      }
    }
  } catch (const UsageError& e) {
    std::cerr << "lbctl: " << e.what() << "\n\n" << kUsage;
    return kExitUsage;
  } catch (const po::error& e) {
    std::cerr << "lbctl: " << e.what() << "\n\n" << kUsage;
    return kExitUsage;
  }

  json reply;
  try {
    // `config save` is `config show` written to a file by lbctl itself: the
    // daemon runs sandboxed (ProtectSystem=strict) and cannot write /etc.
    const std::string wire = cmd.name == "config save" ? "config show" : cmd.name;
    reply = roundTrip(socketPath, json{{"version", kProtocolVersion}, {"command", wire}, {"args", cmd.args}});
  } catch (const RequestFailed& e) {
    std::cerr << "lbctl: " << e.what() << "\n";
    return kExitFailed;
  }
  if (!reply.is_object() || !reply.value("ok", false)) {
    const std::string err =
        reply.is_object() && reply.contains("error") ? str(reply["error"]) : "malformed reply from straitd";
    std::cerr << "lbctl: " << err << "\n";
    return kExitFailed;
  }
  if (cmd.name == "config save") {
    try {
      const json& r = reply.at("result");
      const std::string path = savePath.empty() ? str(r.at("file")) : savePath;
      if (path.empty() || path == "-") throw RequestFailed("config save: straitd reports no configuration file; give a PATH");
      writeFileAtomically(path, str(r.at("toml")));
      if (jsonOut) {
        std::cout << json{{"ok", true}, {"result", {{"file", path}}}}.dump(2) << "\n";
      } else {
        std::cout << "running configuration written to " << path << "\n";
      }
      return kExitOk;
    } catch (const RequestFailed& e) {
      std::cerr << "lbctl: " << e.what() << "\n";
      return kExitFailed;
    } catch (const json::exception& e) {
      std::cerr << "lbctl: unexpected reply from straitd (" << e.what() << ")\n";
      return kExitFailed;
    }
  }
  if (jsonOut) {
    std::cout << reply.dump(2) << "\n";
    return kExitOk;
  }
  try {
    const json& r = reply.at("result");
    const json& a = cmd.args;
    if (cmd.name == "service list") {
      printServices(r);
    } else if (cmd.name == "service add") {
      std::cout << "service " << str(a["name"]) << " added: " << str(r.at("service").at("listen")) << "/"
                << str(a["protocol"]) << "\n";
    } else if (cmd.name == "service remove") {
      std::cout << "service " << str(a["name"]) << " removed; its flows are flushed\n";
    } else if (cmd.name == "backend list") {
      printBackends(r);
    } else if (cmd.name == "backend add") {
      std::cout << "backend " << str(a["backend"]) << " added to " << str(a["service"]) << " (weight "
                << (a.contains("weight") ? str(a["weight"]) : "1") << ")\n";
    } else if (cmd.name == "backend remove") {
      std::cout << "backend " << str(a["backend"]) << " removed from " << str(a["service"])
                << (a.contains("flush") ? "; its flows are dropped\n" : "; its flows drain\n");
    } else if (cmd.name == "backend set") {
      std::cout << "backend " << str(a["backend"]) << " of " << str(a["service"]) << ": weight "
                << str(a["weight"]) << (a["weight"] == 0 ? " (draining: no new flows)\n" : "\n");
    } else if (cmd.name == "stats") {
      printStats(r);
    } else if (cmd.name == "flows") {
      printFlows(r);
    } else if (cmd.name == "config show") {
      std::cout << str(r.at("toml"));
    } else if (cmd.name == "config reload") {
      const json& ch = r.at("changes");
      std::cout << "reloaded " << str(r.at("file")) << ": " << ch.size() << " change(s)\n";
      for (const json& c : ch) std::cout << "  " << str(c) << "\n";
    } else if (cmd.name == "capacity") {
      printCapacity(r);
    } else if (cmd.name == "drain" || cmd.name == "instance") {
      std::cout << "state              " << str(r.at("state")) << "\n"
                << "health endpoint    " << (r.at("healthy").get<bool>() ? "200 (healthy)" : "503 (unhealthy)") << "\n"
                << "flows active       " << str(r.at("flows_active")) << "\n"
                << "shutdown_drain_s   " << str(r.at("shutdown_drain_s")) << "\n";
      if (!str(r.at("reason")).empty()) std::cout << "reason             " << str(r.at("reason")) << "\n";
    }
  } catch (const json::exception& e) {
    std::cerr << "lbctl: unexpected reply from straitd (" << e.what() << "); use --json to see it\n";
    return kExitFailed;
  }
  return kExitOk;
}
