// How many new connections per second each service can sustain before its
// SNAT ports run out, and how full its fullest SNAT pool is now
// (docs/capacity.md explains the model). A SNAT port is allocated per
// (SNAT address, backend address:port, protocol) and held for the life of
// the flow and then its time_wait timeout (TCP) or its idle timeout (UDP),
// so for short connections one backend can take at most
//
//   snat_addresses x (snat_port_max - snat_port_min + 1) / hold_time_s
//
// new connections per second. Maglev sends it weight/total of the
// service's new flows, so the service saturates when its most loaded
// backend does: the minimum over the offered backends of
// per_backend / (weight / total weight). `lbctl capacity` and the metrics
// strait_service_new_connections_capacity and
// strait_service_snat_worst_pool_use report these.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "controlplane/runtime.h"
#include "controlplane/state.h"

namespace strait::controlplane {

struct ServiceCapacity {
  std::string service;
  std::size_t snatAddresses = 0;
  std::size_t backendsOffered = 0;  // taking new flows (up or failing open, weight > 0)
  uint32_t portRange = 0;
  double holdS = 0;                 // time_wait (TCP) or udp idle timeout (UDP), seconds
  double newConnectionsPerS = 0;    // 0 when no backend takes new flows
  // The fullest pool of this service (any worker); use = inUse / capacity.
  double worstPoolUse = 0;
  std::string worstPoolAddress, worstPoolBackend;
  uint16_t worstPoolWorker = 0;
  uint32_t worstPoolInUse = 0, worstPoolCapacity = 0;
};

// Call with the state lock held; `pools` from Runtime::snatPools().
std::vector<ServiceCapacity> serviceCapacity(const LbState& state, const std::vector<SnatPoolInfo>& pools);

}  // namespace strait::controlplane
