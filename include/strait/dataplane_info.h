// What the dataplane host reports about the running workers and ports
// (dataplane/dataplane_host.h) and the control plane shows (lbctl, metrics;
// controlplane/runtime.h): plain data in host byte order.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace strait {

// One flow as `lbctl flows` shows it (host order).
struct FlowInfo {
  uint16_t worker = 0;
  uint8_t proto = 0;
  uint32_t clientIp = 0;
  uint16_t clientPort = 0;
  uint32_t vip = 0;
  uint16_t vipPort = 0;
  uint32_t snatIp = 0;
  uint16_t snatPort = 0;
  uint32_t backendIp = 0;
  uint16_t backendPort = 0;
  uint16_t serviceSlot = 0;
  uint16_t backendSlot = 0;
  std::string state;
  uint32_t idleMs = 0;
};

struct SnatPoolInfo {
  uint16_t worker = 0;
  uint32_t snatIp = 0;     // host order
  uint32_t backendIp = 0;  // host order
  uint16_t backendPort = 0;
  uint8_t proto = 0;
  uint32_t inUse = 0;
  uint32_t capacity = 0;
};

struct PortInfo {
  std::string name;   // DPDK device name
  uint16_t portId = 0;
  std::vector<std::pair<std::string, uint64_t>> xstats;  // as the PMD names them
  // Shared-NIC ports (xdp:IFNAME): the kernel interface and the XDP
  // program's verdict counters by name; empty otherwise.
  std::string xdpInterface;
  std::vector<std::pair<std::string, uint64_t>> xdpVerdicts;
  // What the kernel counted on the port's AF_XDP sockets: frames steered
  // to straitd that never reached it, and refused descriptors, by reason
  // (rx_ring_full, rx_dropped, rx_invalid_descs, tx_invalid_descs); and the
  // times it found the fill ring empty.
  std::vector<std::pair<std::string, uint64_t>> xdpSocketDrops;
  uint64_t xdpFillRingEmpty = 0;
};

}  // namespace strait
