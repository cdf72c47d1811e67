// Builds the open-addressing lookup tables of a Snapshot (local addresses,
// services and SNAT pools). Runs on the control thread when a snapshot is assembled.
#include <algorithm>
#include <bit>

#include "strait/snapshot.h"

namespace strait {

namespace {
uint32_t tableSize(std::size_t n) {
  // Keep the load factor at or below one half so probes stay short and an
  // empty slot always ends a probe sequence.
  return std::bit_ceil(static_cast<uint32_t>(n * 2 + 2));
}
}  // namespace

void Snapshot::buildIndexes(const std::vector<uint32_t>& interfaceIps) {
  std::vector<std::pair<uint32_t, uint8_t>> roles;
  auto add = [&](uint32_t ip, uint8_t role) {
    for (auto& r : roles)
      if (r.first == ip) {
        r.second |= role;
        return;
      }
    roles.emplace_back(ip, role);
  };
  for (uint32_t ip : interfaceIps) add(ip, kRoleInterface);
  for (const auto& s : services) {
    add(s.vip, kRoleVip);
    for (uint32_t ip : s.snatIps) add(ip, kRoleSnat);
  }

  const uint32_t asz = tableSize(roles.size());
  addrs_.assign(asz, AddrSlot{});
  addrMask_ = asz - 1;
  for (const auto& [ip, r] : roles) {
    uint32_t i = hashIp(ip) & addrMask_;
    while (addrs_[i].roles != 0) i = (i + 1) & addrMask_;
    addrs_[i] = AddrSlot{ip, r};
  }

  const uint32_t ssz = tableSize(services.size());
  svcIndex_.assign(ssz, SvcSlot{});
  svcMask_ = ssz - 1;
  for (std::size_t k = 0; k < services.size(); ++k) {
    const auto& s = services[k];
    uint32_t i = hashSvc(s.vip, s.port, s.proto) & svcMask_;
    while (svcIndex_[i].index != kEmpty) i = (i + 1) & svcMask_;
    svcIndex_[i] = SvcSlot{s.vip, s.port, s.proto, static_cast<uint16_t>(k)};
  }
}

void Snapshot::indexSnatPools() {
  const uint32_t sz = tableSize(snatPools.size());
  poolIndex_.assign(sz, kNoSnatPool);
  poolMask_ = sz - 1;
  for (std::size_t k = 0; k < snatPools.size(); ++k) {
    const SnatPoolRef& r = snatPools[k];
    uint32_t i = hashPool(r.snatIp, r.backendIp, r.backendPort, r.proto) & poolMask_;
    while (poolIndex_[i] != kNoSnatPool) i = (i + 1) & poolMask_;
    poolIndex_[i] = static_cast<uint32_t>(k);
  }
}

uint32_t Snapshot::longestSnatPoolProbe() const {
  uint32_t longest = 0;
  for (const SnatPoolRef& r : snatPools) {
    uint32_t probes = 1;
    for (uint32_t i = hashPool(r.snatIp, r.backendIp, r.backendPort, r.proto) & poolMask_;
         poolIndex_[i] != kNoSnatPool && &snatPools[poolIndex_[i]] != &r; i = (i + 1) & poolMask_)
      ++probes;
    longest = std::max(longest, probes);
  }
  return longest;
}

}  // namespace strait
