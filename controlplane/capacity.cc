// The SNAT capacity model of capacity.h.
#include "controlplane/capacity.h"

#include <netinet/in.h>

#include <algorithm>
#include <limits>

namespace strait::controlplane {

std::vector<ServiceCapacity> serviceCapacity(const LbState& state, const std::vector<SnatPoolInfo>& pools) {
  const DataplaneConfig& dp = state.base().dataplane;
  std::vector<ServiceCapacity> out;
  for (const Service& s : state.services()) {
    ServiceCapacity c;
    c.service = s.config.name;
    c.snatAddresses = s.config.snat.size();
    c.portRange = dp.snatPortMax >= dp.snatPortMin ? uint32_t{dp.snatPortMax} - dp.snatPortMin + 1 : 0;
    const FlowState hold = s.config.proto == IPPROTO_UDP ? FlowState::kUdp : FlowState::kTimeWait;
    c.holdS = std::max(1u, dp.timeouts.of(hold)) / 1000.0;
    const bool failOpen = s.failOpen();
    uint64_t total = 0, heaviest = 0;
    for (const Backend& b : s.backends) {
      if (b.weight == 0 || !(b.up || failOpen)) continue;
      ++c.backendsOffered;
      total += b.weight;
      heaviest = std::max<uint64_t>(heaviest, b.weight);
    }
    if (heaviest > 0) {
      const double perBackend = double(c.snatAddresses) * c.portRange / c.holdS;
      c.newConnectionsPerS = perBackend * double(total) / double(heaviest);
    }
    for (const SnatPoolInfo& p : pools) {
      if (p.proto != s.config.proto || p.capacity == 0) continue;
      if (std::find(s.config.snat.begin(), s.config.snat.end(), p.snatIp) == s.config.snat.end()) continue;
      if (s.findBackend(p.backendIp, p.backendPort) == nullptr) continue;
      const double use = double(p.inUse) / double(p.capacity);
      if (use > c.worstPoolUse || c.worstPoolAddress.empty()) {
        c.worstPoolUse = use;
        c.worstPoolAddress = formatIpv4(p.snatIp);
        c.worstPoolBackend = formatEndpoint(p.backendIp, p.backendPort);
        c.worstPoolWorker = p.worker;
        c.worstPoolInUse = p.inUse;
        c.worstPoolCapacity = p.capacity;
      }
    }
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace strait::controlplane
