// Snapshot: the immutable view of services, backends and Maglev tables that
// the control thread builds and publishes to the workers with one pointer
// store (RCU). Workers read the current snapshot once per poll-loop
// iteration and never modify it; a snapshot is freed only after every worker
// has passed a quiescent point since it was replaced. All addresses and
// ports are in network byte order, as in packets.
#pragma once

#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "strait/counters.h"
#include "strait/mix.h"

namespace strait {

struct BackendView {
  uint32_t ip = 0;
  uint16_t port = 0;
  uint16_t slot = 0;    // stable counter slot, unique per (service, ip:port)
  uint32_t weight = 1;  // 0 = drained: no new flows
  bool up = true;       // health-check state
};

// Per service: when new TCP connections go through SYN cookies (see
// dataplane/synproxy.h and docs/security.md).
enum class SynProxyMode : uint8_t {
  kAuto = 0,  // when this worker is in cookie mode (half-open flows or SNAT pool pressure)
  kOn,        // always
  kOff,       // never: every SYN opens a flow
};

constexpr std::string_view synProxyModeName(SynProxyMode m) {
  return m == SynProxyMode::kOn ? "on" : m == SynProxyMode::kOff ? "off" : "auto";
}
// False when `text` is none of "auto", "on", "off".
constexpr bool parseSynProxyMode(std::string_view text, SynProxyMode& out) {
  for (SynProxyMode m : {SynProxyMode::kAuto, SynProxyMode::kOn, SynProxyMode::kOff}) {
    if (synProxyModeName(m) == text) {
      out = m;
      return true;
    }
  }
  return false;
}

struct ServiceView {
  std::string name;
  uint16_t slot = 0;  // stable counter slot
  uint32_t vip = 0;
  uint16_t port = 0;
  uint8_t proto = 0;      // IPPROTO_TCP or IPPROTO_UDP
  uint16_t mssClamp = 0;  // 0 = off; else clamp TCP MSS option on SYN / SYN-ACK
  bool failOpen = false;  // every backend down: Maglev table built over all of them
  SynProxyMode synProxy = SynProxyMode::kAuto;
  bool proxyProtocol = false;  // TCP: every backend connection starts with a PROXY v2 header
  std::vector<uint32_t> snatIps;
  std::vector<BackendView> backends;  // everything configured, drained and down included
  // Maglev lookup table: entries are indices into `backends`; empty when no
  // backend can take new flows.
  std::vector<uint16_t> maglev;
};

// The instance health endpoint (dataplane/health_endpoint.h): where it
// listens (ip 0 = none) and what it answers now.
enum class InstanceStatus : uint8_t { kReady, kDegraded, kDraining };
struct InstanceHealthView {
  uint32_t ip = 0;
  uint16_t port = 0;
  InstanceStatus status = InstanceStatus::kDegraded;
  uint64_t key0 = 0, key1 = 0;  // ISN hash key, per process
};

enum AddrRole : uint8_t {
  kRoleInterface = 1,  // an [[interface]] address: answers ARP and ping
  kRoleVip = 2,        // a service listen address
  kRoleSnat = 4,       // a SNAT source address: replies arrive here
};

// A SNAT port pool the snapshot names: one per (SNAT address, backend
// address:port, protocol) of a backend that can be given new flows, with
// the pool slot the dataplane host loaded for it in every worker's port
// allocator before publishing the snapshot (dataplane/snat_pools.h). The
// workers only look pools up here; they never create one.
struct SnatPoolRef {
  uint32_t snatIp = 0;
  uint32_t backendIp = 0;
  uint16_t backendPort = 0;
  uint8_t proto = 0;
  uint8_t pad = 0;
  uint32_t slot = 0;
};

// Small open-addressing tables for the per-packet lookups; built once by the
// control thread, read-only afterwards.
class Snapshot {
 public:
  uint64_t generation = 0;
  std::vector<ServiceView> services;
  // Backend slots whose flows must be dropped (backend remove --flush).
  std::bitset<kMaxBackendSlots> flushedBackends;
  InstanceHealthView instanceHealth;
  // Written by SnatPools::prepare just before publishing; empty in a
  // snapshot nobody prepared (every new flow then drops as
  // snat_pools_exhausted).
  std::vector<SnatPoolRef> snatPools;

  // Call after filling `services` and the extra local addresses.
  void buildIndexes(const std::vector<uint32_t>& interfaceIps);
  // Call after filling `snatPools`.
  void indexSnatPools();

  static constexpr uint32_t kNoSnatPool = 0xffffffffu;
  // The pool slot of a tuple (network order), or kNoSnatPool.
  uint32_t findSnatPool(uint32_t snatIp, uint32_t backendIp, uint16_t backendPort, uint8_t proto) const {
    if (poolIndex_.empty()) return kNoSnatPool;
    for (uint32_t i = hashPool(snatIp, backendIp, backendPort, proto) & poolMask_;; i = (i + 1) & poolMask_) {
      const uint32_t k = poolIndex_[i];
      if (k == kNoSnatPool) return kNoSnatPool;
      const SnatPoolRef& r = snatPools[k];
      if (r.backendIp == backendIp && r.snatIp == snatIp && r.backendPort == backendPort && r.proto == proto)
        return r.slot;
    }
  }

  // The most slots findSnatPool() visits for any indexed pool (1: every
  // pool in its home slot). For tests and diagnostics.
  uint32_t longestSnatPoolProbe() const;

  // Roles of `ip` (bitmask of AddrRole), 0 when not ours.
  uint8_t addrRoles(uint32_t ip) const {
    if (addrs_.empty()) return 0;
    for (uint32_t i = hashIp(ip) & addrMask_;; i = (i + 1) & addrMask_) {
      const AddrSlot& s = addrs_[i];
      if (s.roles == 0) return 0;
      if (s.ip == ip) return s.roles;
    }
  }

  // Service listening on vip:port/proto, or nullptr.
  const ServiceView* findService(uint32_t vip, uint16_t port, uint8_t proto) const {
    if (svcIndex_.empty()) return nullptr;
    for (uint32_t i = hashSvc(vip, port, proto) & svcMask_;; i = (i + 1) & svcMask_) {
      const SvcSlot& s = svcIndex_[i];
      if (s.index == kEmpty) return nullptr;
      if (s.vip == vip && s.port == port && s.proto == proto) return &services[s.index];
    }
  }

  const ServiceView* serviceBySlot(uint16_t slot) const {
    for (const auto& s : services)
      if (s.slot == slot) return &s;
    return nullptr;
  }

 private:
  static constexpr uint16_t kEmpty = 0xffff;
  struct AddrSlot {
    uint32_t ip = 0;
    uint8_t roles = 0;
  };
  struct SvcSlot {
    uint32_t vip = 0;
    uint16_t port = 0;
    uint8_t proto = 0;
    uint16_t index = kEmpty;
  };
  static uint32_t hashIp(uint32_t ip) { return (ip * 0x9e3779b1u) >> 7; }
  static uint32_t hashSvc(uint32_t vip, uint16_t port, uint8_t proto) {
    return ((vip ^ (uint32_t(port) << 16) ^ proto) * 0x9e3779b1u) >> 7;
  }
  // Addresses are in network order, so the octet that tells a fleet's
  // SNAT addresses (or backends) apart is the word's top byte. A multiply
  // carries a bit only upwards, so multiply-and-take-the-low-bits would
  // leave the index blind to exactly those bytes (every backend of one SNAT
  // address on one slot, probed past each other): murmur3's 64-bit
  // finaliser mixes every input bit into the low ones the mask keeps.
  static uint32_t hashPool(uint32_t snatIp, uint32_t backendIp, uint16_t backendPort, uint8_t proto) {
    return static_cast<uint32_t>(
        fmix64((uint64_t{backendIp} << 32 | snatIp) ^ (uint64_t{backendPort} << 8 | proto) * 0x9e3779b97f4a7c15ull));
  }
  std::vector<AddrSlot> addrs_;
  std::vector<uint32_t> poolIndex_;  // index into snatPools or kNoSnatPool
  uint32_t poolMask_ = 0;
  uint32_t addrMask_ = 0;
  std::vector<SvcSlot> svcIndex_;
  uint32_t svcMask_ = 0;
};

}  // namespace strait
