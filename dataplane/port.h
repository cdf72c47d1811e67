// Ethernet port bring-up for any DPDK ethdev (ENA in production;
// net_af_packet, net_tap, net_af_xdp in tests): one RX/TX queue pair per
// worker (plus none for the control thread: its frames leave through
// worker 0), RSS over IPv4 TCP/UDP when the PMD offers it, and the RSS key
// and redirection table read back so SNAT ports can be chosen to land
// replies on the owning worker's queue.
#pragma once

#include <rte_ether.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "dataplane/toeplitz.h"

struct rte_mempool;

namespace strait::dataplane {

struct PortParams {
  std::string device;  // DPDK device name (e.g. net_af_packet0) or PCI address
  uint16_t queues = 1;
  uint16_t rxDescriptors = 1024;
  uint16_t txDescriptors = 1024;
  uint16_t mtu = 1500;
  std::vector<rte_mempool*> rxPools;  // one per queue
  std::string rss = "auto";           // auto | ena | toeplitz | none
};

struct PortState {
  uint16_t portId = 0;
  std::string device;
  std::string driver;
  rte_ether_addr mac{};
  uint16_t queues = 1;
  // RSS as programmed: usable to predict the queue of a reply when
  // `rssPredictable` (a Toeplitz NIC whose key and RETA were read back).
  bool rssPredictable = false;
  ToeplitzVariant variant = ToeplitzVariant::kStandard;
  std::vector<uint8_t> rssKey;
  std::vector<uint16_t> reta;
};

// Bytes of an Ethernet frame carrying an IP packet of `mtu` bytes, with one
// 802.1Q tag and the CRC (what a NIC's maximum frame length counts).
inline constexpr uint32_t frameBytesForMtu(uint32_t mtu) { return mtu + 14 + 4 + 4; }
// Mbuf data room (headroom included) that holds a whole frame of `mtu`
// in one segment, and never less than DPDK's default (2 KiB + headroom).
// With `afXdp` (any port is net_af_xdp, whose RX places each frame after
// the kernel's XDP headroom as well as DPDK's) that headroom is added too.
uint16_t mbufDataRoomForMtu(uint32_t mtu, bool afXdp = false);
// Bytes of the kernel's headroom in front of each AF_XDP frame
// (XDP_PACKET_HEADROOM).
inline constexpr uint32_t kXdpPacketHeadroom = 256;
// Frames DPDK 22.11's net_af_xdp lends the kernel per queue (its fill ring,
// ETH_AF_XDP_DFLT_NUM_DESCS). The socket's RX ring is sized from
// rx_descriptors; a ring smaller than this loses frames while the kernel
// still holds buffers for them (rx_ring_full), so an xdp: port's RX ring is
// at least this large.
inline constexpr uint16_t kXdpFillFrames = 2048;

// Finds the port by name, configures and starts it. Refuses, before
// configuring anything, an `mtu` the device cannot carry (its
// max_rx_pktlen / max_mtu), naming the device's limit. Throws std::runtime_error
// naming the device and the failing step.
PortState setupPort(const PortParams& p);
void stopPort(const PortState& s);

// Extended statistics as the PMD names them.
std::vector<std::pair<std::string, uint64_t>> readXstats(uint16_t portId);

}  // namespace strait::dataplane
