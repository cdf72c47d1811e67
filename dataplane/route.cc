// RouteTable over rte_lpm. rte_lpm stores a 24-bit next-hop value per
// prefix, so the table keeps its NextHop records in hops_ and stores their
// index; identical next hops share one record. rte_lpm works on host-order
// addresses while everything else in the dataplane is network order, hence
// the conversions at this boundary. rte_lpm has no depth 0, so a default
// route is kept beside it and used when the LPM misses.
#include "dataplane/route.h"

#include <arpa/inet.h>
#include <rte_errno.h>
#include <rte_lpm.h>

#include <stdexcept>

namespace strait::dataplane {

namespace {

std::string ipString(uint32_t netOrder) {
  char buf[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &netOrder, buf, sizeof buf);
  return buf;
}

constexpr uint32_t kMaxHopIndex = (1u << 24) - 1;

}  // namespace

RouteTable::RouteTable(const std::string& name, int socketId, uint32_t maxRules) {
  rte_lpm_config cfg{};
  cfg.max_rules = maxRules;
  // One tbl8 group per prefix longer than /24; a route table with that many
  // host routes would be unusual, but the groups are cheap (1 KiB each).
  cfg.number_tbl8s = maxRules < 256 ? 256 : maxRules;
  cfg.flags = 0;
  lpm_ = rte_lpm_create(name.c_str(), socketId, &cfg);
  if (lpm_ == nullptr)
    throw std::runtime_error("route table '" + name + "': rte_lpm_create failed: " + rte_strerror(rte_errno));
}

RouteTable::~RouteTable() { rte_lpm_free(lpm_); }

void RouteTable::add(uint32_t prefix, uint8_t len, const NextHop& nh) {
  std::string what = ipString(prefix) + "/" + std::to_string(len);
  if (len > 32) throw std::invalid_argument("route " + what + ": prefix length above 32");
  if (len == 0) {
    default_ = nh;
    hasDefault_ = true;
    return;
  }
  uint32_t index = 0;
  while (index < hops_.size() && (hops_[index].port != nh.port || hops_[index].gateway != nh.gateway))
    ++index;
  if (index == hops_.size()) {
    if (index > kMaxHopIndex) throw std::runtime_error("route " + what + ": too many next hops");
    hops_.push_back(nh);
  }
  int rc = rte_lpm_add(lpm_, ntohl(prefix), len, index);
  if (rc < 0) throw std::runtime_error("route " + what + ": rte_lpm_add failed: " + rte_strerror(-rc));
}

bool RouteTable::lookup(uint32_t dst, uint16_t& port, uint32_t& nextHopIp) const {
  uint32_t index = 0;
  const NextHop* hop = nullptr;
  if (rte_lpm_lookup(lpm_, ntohl(dst), &index) == 0)
    hop = &hops_[index];
  else if (hasDefault_)
    hop = &default_;
  else
    return false;
  port = hop->port;
  nextHopIp = hop->gateway != 0 ? hop->gateway : dst;
  return true;
}

}  // namespace strait::dataplane
