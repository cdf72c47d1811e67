// Unit tests for the TOML configuration loader: the product brief's minimal
// config, every key and its default, every validation rule (each error must
// name the file, the key path and the problem), rendering back to TOML and
// parsing again, the address helpers, and the example configs in docs/.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "controlplane/config.h"

namespace strait::controlplane {
namespace {

const char* const kBriefMinimal = R"(
[dataplane]
eal = ["--in-memory", "--no-pci", "--vdev=net_af_packet0,iface=lb0"]  # DPDK EAL arguments
workers = 1                      # worker lcores

[[interface]]
port = "net_af_packet0"          # DPDK device name or PCI address (ENA in production)
address = "192.0.2.10/24"        # the dataplane's own address on this link
gateway = "192.0.2.1"            # next hop for everything off-link

[[service]]
name = "web"
listen = "192.0.2.10:80"         # VIP:port
protocol = "tcp"                 # tcp | udp
snat = ["192.0.2.10"]            # local source addresses for SNAT (default: the interface address)
backends = ["203.0.113.11:80", "203.0.113.12:80"]
)";

// Every key set to a value other than its default.
const char* const kFull = R"(
[dataplane]
eal = ["-l", "0-2", "--file-prefix=strait"]
workers = 2
flow_capacity = 65536
mbufs = 16384
rx_descriptors = 2048
tx_descriptors = 512
burst = 48
snat_port_min = 2000
snat_port_max = 60000
snat_pools_per_worker = 64
idle_sleep_us = 5
neighbour_timeout_ms = 60000
handoff_ring_size = 1024

[dataplane.timeouts]
syn_sent = 11
syn_recv = 12
established = 3600
fin_wait = 13
close_wait = 14
last_ack = 15
time_wait = 16
closed = 17
udp = 18
udp_unreplied = 19

[[interface]]
port = "0000:00:06.0"
address = "192.0.2.10/24"
gateway = "192.0.2.1"
mtu = 9001
rss = "ena"

[[interface]]
port = "0000:00:07.0"
address = "198.51.100.10/25"
mtu = 1500
rss = "toeplitz"

[control]
resolver = "192.0.2.53:5353"
dns_min_ttl_s = 10
dns_max_ttl_s = 600

[[service]]
name = "web"
listen = "192.0.2.20:443"
protocol = "tcp"
snat = ["192.0.2.21", "192.0.2.22"]
backends = [
  "203.0.113.11:443",
  { address = "203.0.113.12:443", weight = 3 },
  { address = "NLB.Example.COM:443", weight = 2 },
  "203.0.113.13:8443",
]
mss_clamp = 1360
maglev_size = 655373

[service.health_check]
type = "http"
interval_ms = 500
timeout_ms = 200
rise = 3
fall = 4
http_path = "/healthz"
http_status = 204
http_host = "example.com"

[[service]]
name = "dns"
listen = "198.51.100.20:53"
protocol = "udp"
backends = []
)";

Config parse(const std::string& text) { return parseConfig(text, "strait.toml"); }

// Parses `text` expecting a ConfigError on `key` whose message contains `problem`.
void expectError(const std::string& text, const std::string& key, const std::string& problem) {
  SCOPED_TRACE(key + ": " + problem);
  try {
    parse(text);
    ADD_FAILURE() << "accepted; expected an error on " << key;
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), key) << e.what();
    EXPECT_EQ(e.file(), "strait.toml");
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("strait.toml: " + (key.empty() ? "" : key + ": "), 0), 0u) << what;
    EXPECT_NE(what.find(problem), std::string::npos) << what;
  }
}

// The minimal config with `extra` text appended (TOML allows adding keys to
// the last [[service]] table by appending them).
std::string minimalWith(const std::string& serviceExtra, const std::string& top = "") {
  return top + R"(
[[interface]]
port = "p0"
address = "192.0.2.10/24"
gateway = "192.0.2.1"

[[service]]
name = "web"
listen = "192.0.2.10:80"
)" + serviceExtra +
         "\n";
}

TEST(Config, BriefMinimalConfigParses) {
  const Config c = parse(kBriefMinimal);
  EXPECT_EQ(c.file, "strait.toml");
  ASSERT_EQ(c.dataplane.eal.size(), 3u);
  EXPECT_EQ(c.dataplane.eal[2], "--vdev=net_af_packet0,iface=lb0");
  EXPECT_EQ(c.dataplane.workers, 1u);
  ASSERT_EQ(c.interfaces.size(), 1u);
  EXPECT_EQ(c.interfaces[0].port, "net_af_packet0");
  EXPECT_EQ(c.interfaces[0].address.addr, 0xc000020au);
  EXPECT_EQ(c.interfaces[0].address.len, 24);
  ASSERT_TRUE(c.interfaces[0].gateway.has_value());
  EXPECT_EQ(*c.interfaces[0].gateway, 0xc0000201u);
  ASSERT_EQ(c.services.size(), 1u);
  const ServiceConfig& s = c.services[0];
  EXPECT_EQ(s.name, "web");
  EXPECT_EQ(s.vip, 0xc000020au);
  EXPECT_EQ(s.port, 80);
  EXPECT_EQ(s.proto, IPPROTO_TCP);
  ASSERT_EQ(s.snat.size(), 1u);
  EXPECT_EQ(s.snat[0], 0xc000020au);
  ASSERT_EQ(s.backends.size(), 2u);
  EXPECT_EQ(s.backends[0].host, "203.0.113.11");
  EXPECT_EQ(s.backends[0].ip, 0xcb00710bu);
  EXPECT_EQ(s.backends[0].port, 80);
  EXPECT_EQ(s.backends[0].weight, 1u);
  EXPECT_FALSE(s.backends[0].isDnsName());
  EXPECT_EQ(s.backends[1].ip, 0xcb00710cu);
}

TEST(Config, Defaults) {
  const Config c = parse(R"(
[[interface]]
port = "p0"
address = "192.0.2.10/24"
[[service]]
name = "web"
listen = "192.0.2.30:80"
)");
  const DataplaneConfig d;
  EXPECT_TRUE(c.dataplane.eal.empty());
  EXPECT_EQ(c.dataplane.workers, 1u);
  EXPECT_EQ(c.dataplane.flowCapacity, (1u << 20) - 1);
  EXPECT_EQ(c.dataplane.mbufs, 0u);
  EXPECT_EQ(c.dataplane.rxDescriptors, 1024);
  EXPECT_EQ(c.dataplane.txDescriptors, 1024);
  EXPECT_EQ(c.dataplane.burst, 32);
  EXPECT_EQ(c.dataplane.snatPortMin, 1024);
  EXPECT_EQ(c.dataplane.snatPortMax, 65535);
  EXPECT_EQ(c.dataplane.snatPoolsPerWorker, 256u);
  EXPECT_EQ(c.dataplane.idleSleepUs, 0u);
  EXPECT_EQ(c.dataplane.neighbourTimeoutMs, 300000u);
  EXPECT_EQ(c.dataplane.handoffRingSize, 4096u);
  EXPECT_EQ(c.dataplane.timeouts.ms, d.timeouts.ms);
  EXPECT_EQ(c.dataplane.timeouts.of(FlowState::kEstablished), 350000u);
  EXPECT_EQ(c.dataplane.timeouts.of(FlowState::kUdp), 120000u);
  EXPECT_EQ(c.dataplane.timeouts.of(FlowState::kUdpUnreplied), 30000u);
  const InterfaceConfig& i = c.interfaces[0];
  EXPECT_FALSE(i.gateway.has_value());
  EXPECT_EQ(i.mtu, 1500);
  EXPECT_EQ(i.rss, "auto");
  const ServiceConfig& s = c.services[0];
  EXPECT_EQ(s.proto, IPPROTO_TCP);
  ASSERT_EQ(s.snat.size(), 1u);
  EXPECT_EQ(s.snat[0], 0xc000020au) << "default SNAT is the interface address, not the VIP";
  EXPECT_TRUE(s.backends.empty());
  EXPECT_EQ(s.mssClamp, 0);
  EXPECT_EQ(s.maglevSize, 65537u);
  EXPECT_EQ(s.health.type, "none");
  EXPECT_EQ(s.health.intervalMs, 2000u);
  EXPECT_EQ(s.health.timeoutMs, 1000u);
  EXPECT_EQ(s.health.rise, 2u);
  EXPECT_EQ(s.health.fall, 3u);
  EXPECT_EQ(s.health.httpPath, "/");
  EXPECT_EQ(s.health.httpStatus, 200);
  EXPECT_EQ(s.health.httpHost, "");
  EXPECT_EQ(c.control.resolver, "");
  EXPECT_EQ(c.control.dnsMinTtlS, 5u);
  EXPECT_EQ(c.control.dnsMaxTtlS, 300u);
}

TEST(Config, EveryKeyParsed) {
  const Config c = parse(kFull);
  const DataplaneConfig& d = c.dataplane;
  EXPECT_EQ(d.eal, (std::vector<std::string>{"-l", "0-2", "--file-prefix=strait"}));
  EXPECT_EQ(d.workers, 2u);
  EXPECT_EQ(d.flowCapacity, 65536u);
  EXPECT_EQ(d.mbufs, 16384u);
  EXPECT_EQ(d.rxDescriptors, 2048);
  EXPECT_EQ(d.txDescriptors, 512);
  EXPECT_EQ(d.burst, 48);
  EXPECT_EQ(d.snatPortMin, 2000);
  EXPECT_EQ(d.snatPortMax, 60000);
  EXPECT_EQ(d.snatPoolsPerWorker, 64u);
  EXPECT_EQ(d.idleSleepUs, 5u);
  EXPECT_EQ(d.neighbourTimeoutMs, 60000u);
  EXPECT_EQ(d.handoffRingSize, 1024u);
  EXPECT_EQ(d.timeouts.of(FlowState::kSynSent), 11000u);
  EXPECT_EQ(d.timeouts.of(FlowState::kSynRecv), 12000u);
  EXPECT_EQ(d.timeouts.of(FlowState::kEstablished), 3600000u);
  EXPECT_EQ(d.timeouts.of(FlowState::kFinWait), 13000u);
  EXPECT_EQ(d.timeouts.of(FlowState::kCloseWait), 14000u);
  EXPECT_EQ(d.timeouts.of(FlowState::kLastAck), 15000u);
  EXPECT_EQ(d.timeouts.of(FlowState::kTimeWait), 16000u);
  EXPECT_EQ(d.timeouts.of(FlowState::kClosed), 17000u);
  EXPECT_EQ(d.timeouts.of(FlowState::kUdp), 18000u);
  EXPECT_EQ(d.timeouts.of(FlowState::kUdpUnreplied), 19000u);

  ASSERT_EQ(c.interfaces.size(), 2u);
  EXPECT_EQ(c.interfaces[0].port, "0000:00:06.0");
  EXPECT_EQ(c.interfaces[0].mtu, 9001);
  EXPECT_EQ(c.interfaces[0].rss, "ena");
  EXPECT_EQ(c.interfaces[1].address.addr, 0xc633640au);
  EXPECT_EQ(c.interfaces[1].address.len, 25);
  EXPECT_FALSE(c.interfaces[1].gateway.has_value());
  EXPECT_EQ(c.interfaces[1].rss, "toeplitz");

  EXPECT_EQ(c.control.resolver, "192.0.2.53:5353");
  EXPECT_EQ(c.control.dnsMinTtlS, 10u);
  EXPECT_EQ(c.control.dnsMaxTtlS, 600u);

  ASSERT_EQ(c.services.size(), 2u);
  const ServiceConfig& w = c.services[0];
  EXPECT_EQ(w.vip, 0xc0000214u);
  EXPECT_EQ(w.port, 443);
  EXPECT_EQ(w.snat, (std::vector<uint32_t>{0xc0000215u, 0xc0000216u}));
  ASSERT_EQ(w.backends.size(), 4u);
  EXPECT_EQ(w.backends[1].weight, 3u);
  EXPECT_TRUE(w.backends[2].isDnsName());
  EXPECT_EQ(w.backends[2].host, "nlb.example.com") << "DNS names are case-insensitive: stored lower case";
  EXPECT_EQ(w.backends[2].port, 443);
  EXPECT_EQ(w.backends[2].weight, 2u);
  EXPECT_EQ(w.backends[3].port, 8443);
  EXPECT_EQ(w.mssClamp, 1360);
  EXPECT_EQ(w.maglevSize, 655373u);
  EXPECT_EQ(w.health.type, "http");
  EXPECT_EQ(w.health.intervalMs, 500u);
  EXPECT_EQ(w.health.timeoutMs, 200u);
  EXPECT_EQ(w.health.rise, 3u);
  EXPECT_EQ(w.health.fall, 4u);
  EXPECT_EQ(w.health.httpPath, "/healthz");
  EXPECT_EQ(w.health.httpStatus, 204);
  EXPECT_EQ(w.health.httpHost, "example.com");

  const ServiceConfig& u = c.services[1];
  EXPECT_EQ(u.proto, IPPROTO_UDP);
  ASSERT_EQ(u.snat.size(), 1u);
  EXPECT_EQ(u.snat[0], 0xc633640au)
      << "default SNAT: the address of the interface whose subnet holds the VIP";
  EXPECT_TRUE(u.backends.empty());
}

TEST(Config, SameListenAddressDifferentProtocolIsAllowed) {
  const Config c = parse(minimalWith(R"(
[[service]]
name = "web-udp"
listen = "192.0.2.10:80"
protocol = "udp"
)"));
  EXPECT_EQ(c.services.size(), 2u);
}

TEST(Config, BriefErrorMessageFormat) {
  try {
    parse(R"(
[[interface]]
port = "p0"
address = "192.0.2.10/24"
[[service]]
name = "web"
listen = "192.0.2.10:99999"
)");
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "strait.toml: service[0].listen: \"192.0.2.10:99999\": port out of range 1-65535");
    EXPECT_EQ(e.key(), "service[0].listen");
  }
}

TEST(Config, SyntaxErrorNamesLine) {
  expectError("[dataplane]\nworkers = = 2\n", "", "TOML syntax error at line 2");
  expectError("[[interface]\n", "", "TOML syntax error at line 1");
}

TEST(Config, UnknownKeysAreRejectedWithSuggestion) {
  expectError(minimalWith("", "[dataplane]\nwrokers = 2\n"), "dataplane.wrokers",
              "unknown key (did you mean \"workers\"?)");
  expectError(minimalWith("", "[dataplnae]\n"), "dataplnae", "did you mean \"dataplane\"?");
  expectError(minimalWith("", "[dataplane.timeouts]\nestablised = 10\n"), "dataplane.timeouts.establised",
              "did you mean \"established\"?");
  expectError(minimalWith("lsiten = \"x\""), "service[0].lsiten", "did you mean \"listen\"?");
  expectError(minimalWith("[service.health_check]\nintervl_ms = 100"), "service[0].health_check.intervl_ms",
              "did you mean \"interval_ms\"?");
  expectError(minimalWith("backends = [{ address = \"203.0.113.1:80\", wieght = 2 }]"),
              "service[0].backends[0].wieght", "did you mean \"weight\"?");
  expectError(minimalWith("", "[control]\nresolvr = \"1.1.1.1\"\n"), "control.resolvr",
              "did you mean \"resolver\"?");
  expectError(minimalWith("", "completely_different = 1\n"), "completely_different", "unknown key");
}

TEST(Config, DataplaneRanges) {
  const auto dp = [](const std::string& kv) { return minimalWith("", "[dataplane]\n" + kv + "\n"); };
  expectError(dp("workers = 0"), "dataplane.workers", "0: out of range 1-64");
  expectError(dp("workers = 65"), "dataplane.workers", "out of range 1-64");
  expectError(dp("workers = \"2\""), "dataplane.workers", "expected an integer, got a string");
  expectError(dp("workers = 1.5"), "dataplane.workers", "expected an integer, got a float");
  expectError(dp("eal = \"--no-pci\""), "dataplane.eal", "expected an array");
  expectError(dp("eal = [\"--no-pci\", 3]"), "dataplane.eal[1]", "expected a string");
  expectError(dp("flow_capacity = 10"), "dataplane.flow_capacity", "out of range");
  expectError(dp("mbufs = 100"), "dataplane.mbufs", "must be 0 (automatic) or at least 1024");
  expectError(dp("mbufs = -1"), "dataplane.mbufs", "out of range");
  expectError(dp("rx_descriptors = 1000"), "dataplane.rx_descriptors", "must be a power of two");
  expectError(dp("tx_descriptors = 65536"), "dataplane.tx_descriptors", "out of range 64-32768");
  expectError(dp("burst = 65"), "dataplane.burst", "out of range 1-64");
  expectError(dp("snat_port_min = 0"), "dataplane.snat_port_min", "out of range 1-65535");
  expectError(dp("snat_port_max = 70000"), "dataplane.snat_port_max", "out of range 1-65535");
  expectError(dp("snat_port_min = 5000\nsnat_port_max = 4000"), "dataplane.snat_port_min",
              "greater than snat_port_max 4000");
  expectError(dp("snat_pools_per_worker = 0"), "dataplane.snat_pools_per_worker", "out of range");
  expectError(dp("idle_sleep_us = 2000000"), "dataplane.idle_sleep_us", "out of range");
  expectError(dp("neighbour_timeout_ms = 0"), "dataplane.neighbour_timeout_ms", "out of range");
  expectError(dp("handoff_ring_size = 1000"), "dataplane.handoff_ring_size", "power of two");
  expectError(dp("timeouts = 3"), "dataplane.timeouts", "expected a table");
  expectError(dp("[dataplane.timeouts]\nestablished = 0"), "dataplane.timeouts.established",
              "0: out of range 1-604800");
  expectError(dp("[dataplane.timeouts]\nudp = 2.5"), "dataplane.timeouts.udp", "expected an integer");
  expectError("dataplane = 3\n" + minimalWith(""), "dataplane", "expected a table");
  // The limits themselves are accepted.
  EXPECT_NO_THROW(
      parse(dp("workers = 64\nsnat_port_min = 1\nsnat_port_max = 65535\nburst = 64\nmbufs = 1024")));
  EXPECT_NO_THROW(parse(dp("snat_port_min = 4000\nsnat_port_max = 4000")));
}

TEST(Config, InterfaceRules) {
  const auto ifc = [](const std::string& body) { return "[[interface]]\n" + body + "\n"; };
  expectError("", "interface", "at least one [[interface]] is required");
  expectError("interface = []", "interface", "at least one [[interface]] is required");
  expectError("[interface]\nport = \"p0\"\n", "interface",
              "expected [[interface]] (an array of tables), got a table");
  expectError(ifc("address = \"192.0.2.10/24\""), "interface[0].port", "missing");
  expectError(ifc("port = \"\"\naddress = \"192.0.2.10/24\""), "interface[0].port", "must not be empty");
  expectError(ifc("port = \"p0\""), "interface[0].address", "missing");
  expectError(ifc("port = \"p0\"\naddress = \"192.0.2.10\""), "interface[0].address", "expected A.B.C.D/N");
  expectError(ifc("port = \"p0\"\naddress = \"192.0.2.10/33\""), "interface[0].address",
              "expected A.B.C.D/N");
  expectError(ifc("port = \"p0\"\naddress = \"192.0.2.256/24\""), "interface[0].address",
              "expected A.B.C.D/N");
  expectError(ifc("port = \"p0\"\naddress = \"192.0.2.0/24\""), "interface[0].address",
              "not a usable host address");
  expectError(ifc("port = \"p0\"\naddress = \"192.0.2.255/24\""), "interface[0].address",
              "not a usable host address");
  expectError(ifc("port = \"p0\"\naddress = \"127.0.0.2/8\""), "interface[0].address",
              "not a usable host address");
  expectError(ifc("port = \"p0\"\naddress = \"192.0.2.10/24\"\ngateway = \"198.51.100.1\""),
              "interface[0].gateway", "not inside the interface subnet 192.0.2.10/24");
  expectError(ifc("port = \"p0\"\naddress = \"192.0.2.10/24\"\ngateway = \"192.0.2.10\""),
              "interface[0].gateway", "the interface's own address");
  expectError(ifc("port = \"p0\"\naddress = \"192.0.2.10/24\"\ngateway = \"192.0.2.255\""),
              "interface[0].gateway", "network or broadcast");
  expectError(ifc("port = \"p0\"\naddress = \"192.0.2.10/24\"\ngateway = \"gw\""), "interface[0].gateway",
              "not an IPv4 address");
  expectError(ifc("port = \"p0\"\naddress = \"192.0.2.10/24\"\nmtu = 10"), "interface[0].mtu",
              "out of range 68-9216");
  expectError(ifc("port = \"p0\"\naddress = \"192.0.2.10/24\"\nrss = \"magic\""), "interface[0].rss",
              "expected one of auto, ena, toeplitz, none");
  expectError(
      ifc("port = \"p0\"\naddress = \"192.0.2.10/24\"") + ifc("port = \"p0\"\naddress = \"198.51.100.1/24\""),
      "interface[1].port", "already used by interface[0]");
  expectError(
      ifc("port = \"p0\"\naddress = \"192.0.2.10/24\"") + ifc("port = \"p1\"\naddress = \"192.0.2.130/25\""),
      "interface[1].address", "overlaps interface[0] 192.0.2.10/24");
  // /31 and /32 have no network or broadcast address.
  EXPECT_NO_THROW(parse(ifc("port = \"p0\"\naddress = \"192.0.2.0/31\"\ngateway = \"192.0.2.1\"")));
  EXPECT_NO_THROW(parse(ifc("port = \"p0\"\naddress = \"192.0.2.7/32\"")));
}

TEST(Config, XdpPortNamesAKernelInterface) {
  const auto ifc = [](const std::string& port) {
    return "[[interface]]\nport = \"" + port + "\"\naddress = \"192.0.2.10/24\"\n";
  };
  Config c;
  ASSERT_NO_THROW(c = parse(ifc("xdp:ens5")));
  EXPECT_EQ(c.interfaces[0].xdpInterface(), "ens5");
  ASSERT_NO_THROW(c = parse(ifc("xdp:lb0.100")));
  EXPECT_EQ(c.interfaces[0].xdpInterface(), "lb0.100");
  ASSERT_NO_THROW(c = parse(ifc("net_af_packet0")));
  EXPECT_EQ(c.interfaces[0].xdpInterface(), "");
  for (const char* bad : {"xdp:", "xdp:a/b", "xdp:a b", "xdp:x:y", "xdp:abcdefghijklmnop", "xdp:.."})
    expectError(ifc(bad), "interface[0].port", "expected xdp:IFNAME");
  ASSERT_NO_THROW(c = parse(ifc("xdp:abcdefghijklmno")));  // 15, the longest
  EXPECT_EQ(c.interfaces[0].xdpInterface(), "abcdefghijklmno");
}

TEST(Config, MemifPortNamesASocketPath) {
  const auto ifc = [](const std::string& port) {
    return "[[interface]]\nport = \"" + port + "\"\naddress = \"192.0.2.10/24\"\n";
  };
  Config c;
  ASSERT_NO_THROW(c = parse(ifc("memif:/run/strait/bench.sock")));
  EXPECT_EQ(c.interfaces[0].memifSocket(), "/run/strait/bench.sock");
  EXPECT_EQ(c.interfaces[0].xdpInterface(), "");
  ASSERT_NO_THROW(c = parse(ifc("net_memif0")));
  EXPECT_EQ(c.interfaces[0].memifSocket(), "");
  const std::string longest = "/" + std::string(106, 'a');
  ASSERT_NO_THROW(c = parse(ifc("memif:" + longest)));
  EXPECT_EQ(c.interfaces[0].memifSocket(), longest);
  for (const std::string& bad : {std::string("memif:"), std::string("memif:/"), std::string("memif:run/x.sock"),
                                 std::string("memif:/a,role=server"), std::string("memif:/a=b"),
                                 std::string("memif:/a b"), "memif:" + longest + "a"})
    expectError(ifc(bad), "interface[0].port", "expected memif:/PATH");
  expectError(ifc("memif:/run/x.sock") +
                  "[[interface]]\nport = \"memif:/run/x.sock\"\naddress = \"198.51.100.1/24\"\n",
              "interface[1].port", "already used by interface[0]");
}

// AF_XDP frames live in page-sized UMEM chunks: the config check refuses a
// larger mtu on an xdp: port, and on any port once one is xdp: (the mbufs
// every port shares are sized for the largest mtu), naming the limit.
TEST(Config, XdpPortsCapTheMtu) {
  const auto ifc = [](const std::string& port, const std::string& addr, int mtu) {
    return "[[interface]]\nport = \"" + port + "\"\naddress = \"" + addr + "\"\nmtu = " + std::to_string(mtu) + "\n";
  };
  Config c;
  ASSERT_NO_THROW(c = parse(ifc("xdp:ens5", "192.0.2.10/24", kXdpMaxMtu)));
  EXPECT_EQ(c.interfaces[0].mtu, kXdpMaxMtu);
  expectError(ifc("xdp:ens5", "192.0.2.10/24", 9001), "interface[0].mtu",
              "9001: more than an xdp: port carries (\"xdp:ens5\"); AF_XDP carries each frame, with its mbuf and "
              "headroom, in one 4 KiB page: set mtu <= 3434");
  expectError(ifc("xdp:ens5", "192.0.2.10/24", kXdpMaxMtu + 1), "interface[0].mtu", "set mtu <= 3434");
  expectError(ifc("net_ring0", "198.51.100.10/24", 9001) + ifc("xdp:ens5", "192.0.2.10/24", 1500),
              "interface[0].mtu",
              "9001: mbufs are sized for the largest mtu and shared with the xdp: port \"xdp:ens5\" (interface[1])");
  // Without an xdp: port, jumbo frames are the port's business (checked at start-up).
  ASSERT_NO_THROW(c = parse(ifc("net_ring0", "198.51.100.10/24", 9001) + ifc("p1", "192.0.2.10/24", 1500)));
}

TEST(Config, ServiceRules) {
  expectError(minimalWith("", "") + "[[service]]\nlisten = \"192.0.2.10:81\"\n", "service[1].name",
              "missing");
  expectError(minimalWith("") + "[[service]]\nname = \"web\"\nlisten = \"192.0.2.10:81\"\n",
              "service[1].name", "\"web\": already used by service[0]");
  expectError(minimalWith("").replace(minimalWith("").find("\"web\""), 5, "\"we b\""), "service[0].name",
              "may contain only letters, digits");
  expectError(minimalWith("").replace(minimalWith("").find("\"web\""), 5, "\"\""), "service[0].name",
              "must not be empty");
  expectError(R"(
[[interface]]
port = "p0"
address = "192.0.2.10/24"
[[service]]
name = "web"
)",
              "service[0].listen", "missing");
  expectError(minimalWith("protocol = \"sctp\""), "service[0].protocol", "\"sctp\": expected tcp or udp");
  expectError(minimalWith("protocol = 6"), "service[0].protocol", "expected a string, got an integer");
  expectError(minimalWith("") + "[[service]]\nname = \"web2\"\nlisten = \"192.0.2.10:80\"\n",
              "service[1].listen", "\"192.0.2.10:80\"/tcp: already used by service[0] (web)");
  expectError("service = 1\n" + minimalWith("").substr(0, minimalWith("").find("[[service]]")), "service",
              "expected [[service]]");

  const auto listen = [](const std::string& l) {
    return "[[interface]]\nport = \"p0\"\naddress = \"192.0.2.10/24\"\ngateway = "
           "\"192.0.2.1\"\n[[service]]\nname = "
           "\"web\"\nlisten = \"" +
           l + "\"\n";
  };
  expectError(listen("192.0.2.10"), "service[0].listen", "expected IP:PORT");
  expectError(listen("192.0.2.10:"), "service[0].listen", "bad port");
  expectError(listen("192.0.2.10:0"), "service[0].listen", "port out of range 1-65535");
  expectError(listen("192.0.2.10:http"), "service[0].listen", "bad port \"http\"");
  expectError(listen("192.0.2.300:80"), "service[0].listen", "bad IPv4 address \"192.0.2.300\"");
  expectError(listen("web.example.com:80"), "service[0].listen", "bad IPv4 address");
  expectError(
      listen("198.51.100.7:80"), "service[0].listen",
      "not an address of this load balancer: it must be an interface address or inside an interface subnet "
      "(192.0.2.10/24)");
  expectError(listen("192.0.2.1:80"), "service[0].listen", "is the gateway of p0");
  expectError(listen("192.0.2.255:80"), "service[0].listen", "network or broadcast");
  // Any host address on the connected subnet may be a VIP.
  EXPECT_EQ(parse(listen("192.0.2.77:80")).services[0].vip, 0xc000024du);

  expectError(minimalWith("snat = []"), "service[0].snat", "must not be empty");
  expectError(minimalWith("snat = \"192.0.2.10\""), "service[0].snat", "expected an array");
  expectError(minimalWith("snat = [\"192.0.2.10\", \"198.51.100.1\"]"), "service[0].snat[1]",
              "not an address of this load balancer");
  expectError(minimalWith("snat = [\"192.0.2.11\", \"192.0.2.11\"]"), "service[0].snat[1]", "listed twice");
  expectError(minimalWith("snat = [\"192.0.2\"]"), "service[0].snat[0]", "not an IPv4 address");
  expectError(minimalWith("snat = [\"192.0.2.1\"]"), "service[0].snat[0]", "is the gateway");

  expectError(minimalWith("mss_clamp = 100"), "service[0].mss_clamp", "must be 0 (off) or 536-9176");
  expectError(minimalWith("mss_clamp = 10000"), "service[0].mss_clamp", "out of range");
  expectError(minimalWith("maglev_size = 65536"), "service[0].maglev_size", "65536: must be a prime number");
  expectError(minimalWith("maglev_size = 1"), "service[0].maglev_size", "out of range");
  expectError(
      minimalWith("maglev_size = 3\nbackends = [\"203.0.113.1:80\", \"203.0.113.2:80\", \"203.0.113.3:80\"]"),
      "service[0].backends", "maglev_size 3 must be larger than the number of backends");
  EXPECT_NO_THROW(parse(minimalWith("maglev_size = 5\nbackends = [\"203.0.113.1:80\", \"203.0.113.2:80\"]")));
}

TEST(Config, BackendRules) {
  const auto be = [](const std::string& list) { return minimalWith("backends = [" + list + "]"); };
  expectError(minimalWith("backends = \"203.0.113.1:80\""), "service[0].backends", "expected an array");
  expectError(be("\"203.0.113.1\""), "service[0].backends[0]", "expected IP:PORT or NAME:PORT");
  expectError(be("\"203.0.113.1:80\", \"203.0.113.2:0\""), "service[0].backends[1]",
              "port out of range 1-65535");
  expectError(be("\"203.0.113.300:80\""), "service[0].backends[0]", "bad IPv4 address \"203.0.113.300\"");
  expectError(be("\"203.0.113.01:80\""), "service[0].backends[0]", "bad IPv4 address");
  expectError(be("\"127.0.0.1:80\""), "service[0].backends[0]", "loopback");
  expectError(be("\"0.0.0.0:80\""), "service[0].backends[0]", "cannot be a backend");
  expectError(be("\"224.0.0.5:80\""), "service[0].backends[0]", "multicast");
  expectError(be("\"bad_name!:80\""), "service[0].backends[0]", "neither an IPv4 address nor a DNS name");
  expectError(be("\"-bad.example.com:80\""), "service[0].backends[0]",
              "neither an IPv4 address nor a DNS name");
  expectError(be("\"203.0.113.1:80\", \"203.0.113.1:80\""), "service[0].backends[1]",
              "already listed as backends[0]");
  expectError(be("\"a.example.com:80\", \"A.example.com:80\""), "service[0].backends[1]", "already listed");
  expectError(be("3"), "service[0].backends[0]",
              "expected \"IP:PORT\", \"NAME:PORT\" or {address = ..., weight = N}");
  expectError(be("{ weight = 2 }"), "service[0].backends[0].address", "missing");
  expectError(be("{ address = 5 }"), "service[0].backends[0].address", "expected a string");
  expectError(be("{ address = \"203.0.113.1:99999\" }"), "service[0].backends[0].address",
              "port out of range");
  expectError(be("{ address = \"203.0.113.1:80\", weight = 10001 }"), "service[0].backends[0].weight",
              "out of range 0-10000");
  expectError(be("{ address = \"203.0.113.1:80\", weight = -1 }"), "service[0].backends[0].weight",
              "out of range");
  expectError(be("\"192.0.2.10:8080\""), "service[0].backends[0]",
              "is an interface address of this load balancer");
  expectError(minimalWith("") +
                  "[[service]]\nname = \"b\"\nlisten = \"192.0.2.10:81\"\nbackends = [\"192.0.2.10:80\"]\n",
              "service[1].backends[0]", "interface address");
  expectError(minimalWith("backends = [\"192.0.2.50:80\"]") +
                  "[[service]]\nname = \"b\"\nlisten = \"192.0.2.50:81\"\n",
              "service[0].backends[0]", "is the VIP of service \"b\"");
  // Same address, different ports: two backends. Weight 0 is a drained backend.
  const Config c =
      parse(be("\"203.0.113.1:80\", \"203.0.113.1:81\", { address = \"203.0.113.2:80\", weight = 0 }"));
  ASSERT_EQ(c.services[0].backends.size(), 3u);
  EXPECT_EQ(c.services[0].backends[2].weight, 0u);
  // Backends on the connected subnet are fine.
  EXPECT_NO_THROW(parse(be("\"192.0.2.20:80\"")));
}

TEST(Config, HealthCheckRules) {
  const auto hc = [](const std::string& kv) { return minimalWith("[service.health_check]\n" + kv); };
  expectError(minimalWith("health_check = \"tcp\""), "service[0].health_check", "expected a table");
  expectError(hc("type = \"icmp\""), "service[0].health_check.type", "expected one of none, tcp, http");
  expectError(hc("interval_ms = 50"), "service[0].health_check.interval_ms", "out of range");
  expectError(hc("timeout_ms = 5"), "service[0].health_check.timeout_ms", "out of range");
  expectError(hc("interval_ms = 1000\ntimeout_ms = 2000"), "service[0].health_check.timeout_ms",
              "greater than interval_ms 1000");
  expectError(hc("rise = 0"), "service[0].health_check.rise", "out of range 1-100");
  expectError(hc("fall = 101"), "service[0].health_check.fall", "out of range 1-100");
  expectError(hc("http_path = \"health\""), "service[0].health_check.http_path", "expected an absolute path");
  expectError(hc("http_path = \"/a b\""), "service[0].health_check.http_path", "expected an absolute path");
  expectError(hc("http_status = 99"), "service[0].health_check.http_status", "out of range 100-599");
  expectError(hc("http_host = \"a\\r\\nX: y\""), "service[0].health_check.http_host",
              "no spaces or control characters");
  EXPECT_EQ(parse(hc("type = \"tcp\"")).services[0].health.type, "tcp");
}

TEST(Config, ControlRules) {
  const auto ctl = [](const std::string& kv) { return minimalWith("", "[control]\n" + kv + "\n"); };
  expectError(ctl("resolver = \"dns.example\""), "control.resolver", "expected IP or IP:PORT");
  expectError(ctl("resolver = \"192.0.2.53:0\""), "control.resolver", "port out of range");
  expectError(ctl("dns_min_ttl_s = 0"), "control.dns_min_ttl_s", "out of range");
  expectError(ctl("dns_min_ttl_s = 100\ndns_max_ttl_s = 50"), "control.dns_min_ttl_s",
              "greater than dns_max_ttl_s 50");
  EXPECT_EQ(parse(ctl("resolver = \"192.0.2.53\"")).control.resolver, "192.0.2.53");
}

TEST(Config, SynProxy) {
  EXPECT_EQ(parse(minimalWith("")).services[0].synProxy, SynProxyMode::kAuto);
  EXPECT_EQ(parse(minimalWith("syn_proxy = \"on\"")).services[0].synProxy, SynProxyMode::kOn);
  EXPECT_EQ(parse(minimalWith("syn_proxy = \"off\"")).services[0].synProxy, SynProxyMode::kOff);
  expectError(minimalWith("syn_proxy = \"always\""), "service[0].syn_proxy",
              "\"always\": expected one of auto, on, off");
  expectError(minimalWith("syn_proxy = true"), "service[0].syn_proxy", "expected a string");
  expectError(minimalWith("protocol = \"udp\"\nsyn_proxy = \"on\""), "service[0].syn_proxy",
              "SYN cookies are for TCP services");
  const Config d = parse(minimalWith(""));
  EXPECT_EQ(d.dataplane.synCookiePeriodMs, 65536u);
  EXPECT_EQ(d.dataplane.synProxyHalfOpenEnter, 1024u);
  EXPECT_EQ(d.dataplane.synProxyHalfOpenLeave, 512u);
  EXPECT_EQ(d.dataplane.synProxyPoolEnterPct, 90u);
  EXPECT_EQ(d.dataplane.synProxyPoolLeavePct, 75u);
  const auto dp = [](const std::string& kv) { return minimalWith("", "[dataplane]\n" + kv + "\n"); };
  const Config c = parse(dp("syn_cookie_period_ms = 2048\nsyn_proxy_half_open_enter = 10\n"
                            "syn_proxy_half_open_leave = 5\nsyn_proxy_pool_enter_pct = 101\n"
                            "syn_proxy_pool_leave_pct = 80"));
  EXPECT_EQ(c.dataplane.synCookiePeriodMs, 2048u);
  EXPECT_EQ(c.dataplane.synProxyHalfOpenEnter, 10u);
  EXPECT_EQ(c.dataplane.synProxyPoolEnterPct, 101u);
  expectError(dp("syn_cookie_period_ms = 60000"), "dataplane.syn_cookie_period_ms", "must be a power of two");
  expectError(dp("syn_cookie_period_ms = 512"), "dataplane.syn_cookie_period_ms", "out of range");
  expectError(dp("syn_proxy_half_open_enter = 100\nsyn_proxy_half_open_leave = 100"),
              "dataplane.syn_proxy_half_open_leave", "must be below syn_proxy_half_open_enter 100");
  expectError(dp("syn_proxy_pool_leave_pct = 95"), "dataplane.syn_proxy_pool_leave_pct",
              "must be below syn_proxy_pool_enter_pct 90");
  // Rendered and read back.
  const Config r = parseConfig(renderConfig(parse(minimalWith("syn_proxy = \"off\"", "[dataplane]\nsyn_cookie_period_ms = 4096\n"))), "r.toml");
  EXPECT_EQ(r.services[0].synProxy, SynProxyMode::kOff);
  EXPECT_EQ(r.dataplane.synCookiePeriodMs, 4096u);
}

TEST(Config, ProxyProtocol) {
  EXPECT_FALSE(parse(minimalWith("")).services[0].proxyProtocol);
  EXPECT_TRUE(parse(minimalWith("proxy_protocol = \"v2\"")).services[0].proxyProtocol);
  EXPECT_FALSE(parse(minimalWith("proxy_protocol = \"off\"")).services[0].proxyProtocol);
  expectError(minimalWith("proxy_protocol = \"v1\""), "service[0].proxy_protocol",
              "\"v1\": expected \"v2\" or \"off\"");
  expectError(minimalWith("proxy_protocol = true"), "service[0].proxy_protocol", "expected a string");
  expectError(minimalWith("protocol = \"udp\"\nproxy_protocol = \"v2\""), "service[0].proxy_protocol",
              "PROXY protocol is for TCP services (this one is udp");
  // "off" on a UDP service is fine: it says what is already so.
  EXPECT_FALSE(parse(minimalWith("protocol = \"udp\"\nproxy_protocol = \"off\"")).services[0].proxyProtocol);
  const Config r = parseConfig(renderConfig(parse(minimalWith("proxy_protocol = \"v2\""))), "r.toml");
  EXPECT_TRUE(r.services[0].proxyProtocol);
  EXPECT_NE(renderConfig(r).find("proxy_protocol = \"v2\"\n"), std::string::npos);
}

TEST(Config, RenderRoundTrip) {
  for (const char* text : {kBriefMinimal, kFull}) {
    const Config a = parse(text);
    const std::string rendered = renderConfig(a);
    SCOPED_TRACE(rendered);
    Config b;
    ASSERT_NO_THROW(b = parseConfig(rendered, "strait.toml"));
    EXPECT_EQ(renderConfig(b), rendered);
    // Spot checks on fields that are easy to lose.
    EXPECT_EQ(b.dataplane.eal, a.dataplane.eal);
    EXPECT_EQ(b.dataplane.timeouts.ms, a.dataplane.timeouts.ms);
    ASSERT_EQ(b.services.size(), a.services.size());
    for (std::size_t i = 0; i < a.services.size(); ++i) {
      ASSERT_EQ(b.services[i].backends.size(), a.services[i].backends.size());
      for (std::size_t j = 0; j < a.services[i].backends.size(); ++j) {
        EXPECT_EQ(b.services[i].backends[j].host, a.services[i].backends[j].host);
        EXPECT_EQ(b.services[i].backends[j].ip, a.services[i].backends[j].ip);
        EXPECT_EQ(b.services[i].backends[j].port, a.services[i].backends[j].port);
        EXPECT_EQ(b.services[i].backends[j].weight, a.services[i].backends[j].weight);
      }
      EXPECT_EQ(b.services[i].snat, a.services[i].snat);
      EXPECT_EQ(b.services[i].health.httpHost, a.services[i].health.httpHost);
    }
    ASSERT_EQ(b.interfaces.size(), a.interfaces.size());
    for (std::size_t i = 0; i < a.interfaces.size(); ++i)
      EXPECT_EQ(b.interfaces[i].gateway, a.interfaces[i].gateway);
  }
}

TEST(Config, RenderEscapesStrings) {
  Config c = parse(kBriefMinimal);
  c.dataplane.eal.push_back("quote\" back\\slash\ttab");
  c.services[0].health.httpPath = "/x?a=\"b\"";
  const Config b = parseConfig(renderConfig(c), "r.toml");
  EXPECT_EQ(b.dataplane.eal.back(), "quote\" back\\slash\ttab");
  EXPECT_EQ(b.services[0].health.httpPath, "/x?a=\"b\"");
}

TEST(Config, AddressHelpers) {
  EXPECT_EQ(parseIpv4("192.0.2.1"), 0xc0000201u);
  EXPECT_EQ(parseIpv4("0.0.0.0"), 0u);
  EXPECT_EQ(parseIpv4("255.255.255.255"), 0xffffffffu);
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "1.2.3.256", "1.2.3.-1", "01.2.3.4", "1.2.3.4 ",
                          " 1.2.3.4", "a.b.c.d", "1..3.4", "1.2.3.4:80", "1234.1.1.1"})
    EXPECT_FALSE(parseIpv4(bad).has_value()) << bad;
  EXPECT_EQ(formatIpv4(0xc0000201u), "192.0.2.1");
  EXPECT_EQ(formatEndpoint(0xcb00710au, 443), "203.0.113.10:443");
  EXPECT_EQ(parseEndpoint("203.0.113.10:443"), (std::pair<uint32_t, uint16_t>{0xcb00710au, 443}));
  EXPECT_THROW(parseEndpoint("203.0.113.10"), std::invalid_argument);
  EXPECT_THROW(parseEndpoint("name:80"), std::invalid_argument);

  BackendConfig b = parseBackend("203.0.113.10:443");
  EXPECT_FALSE(b.isDnsName());
  EXPECT_EQ(b.ip, 0xcb00710au);
  EXPECT_EQ(b.port, 443);
  EXPECT_EQ(b.weight, 1u);
  b = parseBackend("My-NLB.elb.us-east-1.amazonaws.com.:443");
  EXPECT_TRUE(b.isDnsName());
  EXPECT_EQ(b.host, "my-nlb.elb.us-east-1.amazonaws.com");
  EXPECT_EQ(b.port, 443);
  for (const char* bad : {"", ":80", "host", "host:", "host:65536", "host:-1", "a..b:80", "a_b:80",
                          "1.2.3:80", "127.0.0.1:80", "255.255.255.255:80"})
    EXPECT_THROW(parseBackend(bad), std::invalid_argument) << bad;
  try {
    parseBackend("203.0.113.10:70000");
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "\"203.0.113.10:70000\": port out of range 1-65535");
  }

  const Config c = parse(kFull);
  EXPECT_EQ(interfaceFor(c.interfaces, 0xc0000263u), &c.interfaces[0]);
  EXPECT_EQ(interfaceFor(c.interfaces, 0xc6336401u), &c.interfaces[1]);
  EXPECT_EQ(interfaceFor(c.interfaces, 0xc6336481u), nullptr) << "198.51.100.129 is outside the /25";
  EXPECT_EQ(localAddressProblem(c.interfaces, 0xc000020au), "");
  EXPECT_NE(localAddressProblem(c.interfaces, 0xc0000201u), "") << "the gateway";
  EXPECT_EQ(serviceNameProblem("web-1_a.b"), "");
  EXPECT_NE(serviceNameProblem(std::string(64, 'a')), "");
}

TEST(Config, LoadConfigFromFile) {
  const std::string path = "/tmp/strait-test-config-" + std::to_string(::getpid()) + ".toml";
  {
    std::ofstream out(path);
    out << kBriefMinimal;
  }
  const Config c = loadConfig(path);
  EXPECT_EQ(c.file, path);
  EXPECT_EQ(c.services.size(), 1u);
  {
    std::ofstream out(path);
    out << "[dataplane]\nworkers = 100\n";
  }
  try {
    loadConfig(path);
    ADD_FAILURE() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path + ": dataplane.workers: ", 0), 0u) << e.what();
  }
  std::remove(path.c_str());
  try {
    loadConfig(path);
    ADD_FAILURE() << "read a missing file";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.file(), path);
    EXPECT_NE(std::string(e.what()).find("cannot read"), std::string::npos) << e.what();
  }
}

// The example configurations shipped in docs/ must stay valid.
TEST(Config, ShippedExamplesParse) {
  const std::filesystem::path dir = std::filesystem::path(STRAIT_SOURCE_ROOT) / "docs" / "examples";
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".toml") continue;
    SCOPED_TRACE(e.path().string());
    EXPECT_NO_THROW(loadConfig(e.path().string()));
    ++n;
  }
  EXPECT_GE(n, 2);
}

}  // namespace
}  // namespace strait::controlplane
