// The dataplane's configuration: the interfaces and the [dataplane] sizes,
// as the control plane's TOML loader (controlplane/config.h) fills them and
// the dataplane host (dataplane/dataplane_host.h) consumes them. Plain data,
// shared by both sides, so the host does not depend on the control plane.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "strait/flow_state.h"

namespace strait {

struct Ipv4Prefix {
  uint32_t addr = 0;  // host order
  uint8_t len = 32;
};

// `port = "xdp:IFNAME"`: the shared-NIC mode (AF_XDP on a kernel interface).
inline constexpr const char* kXdpPortPrefix = "xdp:";
// `port = "memif:/PATH.sock"`: a shared-memory packet interface (DPDK
// net_memif, client role) to a peer process listening on the Unix socket
// PATH, such as the kernel-free benchmark's generator or a VPP instance.
inline constexpr const char* kMemifPortPrefix = "memif:";

// The largest `mtu` straitd accepts when any interface is an xdp: port.
// net_af_xdp makes the mbuf pool the AF_XDP UMEM, so each mbuf object is
// one UMEM chunk, and the kernel refuses chunks larger than a 4 KiB page. A
// chunk holds the mempool object header (64), the rte_mbuf (128), DPDK's
// headroom (128), the kernel's XDP headroom (256) and the frame (mtu + 22,
// one VLAN tag and the CRC), rounded up to cache lines and leaving one
// line for DPDK's memory-channel padding: 3434 is the largest mtu that fits
// (dataplane/port.cc checks the arithmetic against DPDK's own sizes). All
// ports share one pool per worker sized for the largest mtu, so the limit
// binds every interface once one of them is xdp:.
inline constexpr uint16_t kXdpMaxMtu = 3434;

struct InterfaceConfig {
  std::string port;          // DPDK device name, PCI address, "xdp:IFNAME" or "memif:PATH"
  // The kernel interface of a shared-NIC port, or "" for a DPDK device.
  std::string xdpInterface() const {
    return port.rfind(kXdpPortPrefix, 0) == 0 ? port.substr(4) : std::string();
  }
  // The socket path of a memif port, or "" for any other port.
  std::string memifSocket() const {
    return port.rfind(kMemifPortPrefix, 0) == 0 ? port.substr(6) : std::string();
  }
  Ipv4Prefix address;        // our address and the connected subnet
  std::optional<uint32_t> gateway;  // host order
  uint16_t mtu = 1500;
  std::string rss = "auto";  // auto | ena | toeplitz | none (how replies reach workers)
};

struct DataplaneConfig {
  std::vector<std::string> eal;
  uint32_t workers = 1;
  // Flows per worker. 2^20 - 1 rather than 2^20: the hash holds two keys
  // per flow plus one, and DPDK rounds its slot ring up to a power of two.
  uint32_t flowCapacity = (1u << 20) - 1;
  uint32_t mbufs = 0;                 // 0 = sized from ports, queues and workers
  uint16_t rxDescriptors = 1024;
  uint16_t txDescriptors = 1024;
  uint16_t burst = 32;
  uint16_t snatPortMin = 1024;
  uint16_t snatPortMax = 65535;
  uint32_t snatPoolsPerWorker = 256;
  uint32_t idleSleepUs = 0;           // 0 = busy poll; >0 sleeps when a loop found nothing
  uint32_t neighbourTimeoutMs = 300'000;
  uint32_t handoffRingSize = 4096;
  FlowTimeouts timeouts;
  // SYN cookies (docs/security.md): the cookie period (a power of two, so
  // it wraps with the millisecond clock) and the thresholds at which a
  // worker switches syn_proxy = "auto" services to cookies and back.
  uint32_t synCookiePeriodMs = 65536;
  uint32_t synProxyHalfOpenEnter = 1024;  // half-open TCP flows per worker
  uint32_t synProxyHalfOpenLeave = 512;
  uint32_t synProxyPoolEnterPct = 90;     // fullest SNAT pool of the worker, percent in use
  uint32_t synProxyPoolLeavePct = 75;
};

}  // namespace strait
