// IPv4 routing for the dataplane: connected subnets of each interface and
// static/default routes via a gateway, looked up with rte_lpm. Built once at
// start-up by the control thread and read-only afterwards, so workers look
// it up without synchronisation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

struct rte_lpm;

namespace strait::dataplane {

struct NextHop {
  uint16_t port = 0;     // DPDK port id to send on
  uint32_t gateway = 0;  // network order; 0 = on-link (next hop is the destination)
};

class RouteTable {
 public:
  // Throws std::runtime_error if the LPM cannot be created.
  RouteTable(const std::string& name, int socketId, uint32_t maxRules = 1024);
  ~RouteTable();
  RouteTable(const RouteTable&) = delete;
  RouteTable& operator=(const RouteTable&) = delete;

  // prefix in network order. gateway 0 = connected. Throws on failure.
  void add(uint32_t prefix, uint8_t len, const NextHop& nh);

  // The next hop IP for `dst` (network order) and the port to use.
  bool lookup(uint32_t dst, uint16_t& port, uint32_t& nextHopIp) const;

 private:
  rte_lpm* lpm_ = nullptr;
  std::vector<NextHop> hops_;
  // rte_lpm takes depths 1..32 only, so a /0 route lives beside it.
  bool hasDefault_ = false;
  NextHop default_{};
};

}  // namespace strait::dataplane
