// Unit tests of the SNAT capacity model (controlplane/capacity.h): the
// formula over SNAT addresses, port range, hold time and Maglev weights,
// and the worst pool picked among the service's own pools only.
#include <gtest/gtest.h>
#include <netinet/in.h>

#include "controlplane/capacity.h"

namespace strait::controlplane {
namespace {

uint32_t ip(const char* s) { return *parseIpv4(s); }

const char* const kConfig = R"(
[dataplane]
snat_port_min = 1024
snat_port_max = 65535
[dataplane.timeouts]
time_wait = 60
udp = 30

[[interface]]
port = "p0"
address = "192.0.2.10/24"
gateway = "192.0.2.1"

[[service]]
name = "web"
listen = "192.0.2.10:80"
snat = ["192.0.2.21", "192.0.2.22", "192.0.2.23"]
backends = ["203.0.113.11:80", { address = "203.0.113.12:80", weight = 3 }, { address = "203.0.113.13:80", weight = 0 }]

[[service]]
name = "dns"
listen = "192.0.2.10:53"
protocol = "udp"
backends = ["203.0.113.53:53"]
)";

TEST(Capacity, FormulaAndWorstPool) {
  LbState st;
  st.fromConfig(parseConfig(kConfig, "c.toml"));
  std::vector<SnatPoolInfo> pools = {
      // web's pools: the fullest is 192.0.2.22 -> .12 on worker 1.
      {0, ip("192.0.2.21"), ip("203.0.113.11"), 80, IPPROTO_TCP, 100, 32256},
      {1, ip("192.0.2.22"), ip("203.0.113.12"), 80, IPPROTO_TCP, 30000, 32256},
      // Not web's: another SNAT address, and the dns service's UDP pool.
      {0, ip("192.0.2.10"), ip("203.0.113.11"), 80, IPPROTO_TCP, 32000, 32256},
      {0, ip("192.0.2.10"), ip("203.0.113.53"), 53, IPPROTO_UDP, 10, 64512},
  };
  const auto caps = serviceCapacity(st, pools);
  ASSERT_EQ(caps.size(), 2u);
  const ServiceCapacity& web = caps[0];
  EXPECT_EQ(web.service, "web");
  EXPECT_EQ(web.snatAddresses, 3u);
  EXPECT_EQ(web.backendsOffered, 2u) << "weight 0 takes no new flows";
  EXPECT_EQ(web.portRange, 64512u);
  EXPECT_DOUBLE_EQ(web.holdS, 60.0);
  // 3 x 64512 / 60 per backend; the weight-3 backend takes 3/4 of new
  // flows, so the service saturates at per_backend x 4 / 3.
  EXPECT_DOUBLE_EQ(web.newConnectionsPerS, 3.0 * 64512 / 60 * 4 / 3);
  EXPECT_EQ(web.worstPoolAddress, "192.0.2.22");
  EXPECT_EQ(web.worstPoolBackend, "203.0.113.12:80");
  EXPECT_EQ(web.worstPoolWorker, 1u);
  EXPECT_DOUBLE_EQ(web.worstPoolUse, 30000.0 / 32256);

  const ServiceCapacity& dns = caps[1];
  EXPECT_DOUBLE_EQ(dns.holdS, 30.0) << "UDP holds a port for the udp idle timeout";
  EXPECT_DOUBLE_EQ(dns.newConnectionsPerS, 64512.0 / 30);
  EXPECT_EQ(dns.worstPoolAddress, "192.0.2.10");

  // Every backend down: fail open, all of them offered again.
  st.setHealth("web", ip("203.0.113.11"), 80, false);
  st.setHealth("web", ip("203.0.113.12"), 80, false);
  EXPECT_EQ(serviceCapacity(st, {})[0].backendsOffered, 2u);
  // No backend at all: nothing can be sustained.
  st.removeBackend("dns", parseBackend("203.0.113.53:53"), false);
  EXPECT_EQ(serviceCapacity(st, {})[1].newConnectionsPerS, 0.0);
}

}  // namespace
}  // namespace strait::controlplane
