// Port bring-up over the generic ethdev API. The rule is to ask the PMD what
// it can do and enable nothing it lacks (af_packet offers no offloads and no
// RSS at all; ENA offers RSS but only hands its key back when the key was
// set by us and the RSS-hash offload is on), then read back the RSS key and
// redirection table actually programmed, because choosing SNAT ports so
// replies land on the owning worker's queue is only as good as that copy.
#include "dataplane/port.h"

#include <linux/bpf.h>
#include <rte_errno.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_log.h>
#include <rte_pci.h>
#include <rte_random.h>

#include <algorithm>
#include <stdexcept>

namespace strait::dataplane {

namespace {

constexpr uint64_t kWantedRss =
    RTE_ETH_RSS_NONFRAG_IPV4_TCP | RTE_ETH_RSS_NONFRAG_IPV4_UDP | RTE_ETH_RSS_IPV4;

[[noreturn]] void fail(const std::string& device, const std::string& step, int rc) {
  throw std::runtime_error("port " + device + ": " + step + " failed: " + rte_strerror(rc < 0 ? -rc : rc));
}

// Accepts the ethdev name, or a PCI address in any form rte_pci_addr_parse
// takes ("00:06.0" as well as "0000:00:06.0"), which ethdev names in full.
bool findPort(const std::string& device, uint16_t& portId) {
  if (rte_eth_dev_get_port_by_name(device.c_str(), &portId) == 0) return true;
  rte_pci_addr addr{};
  if (rte_pci_addr_parse(device.c_str(), &addr) != 0) return false;
  char full[PCI_PRI_STR_SIZE] = {};
  rte_pci_device_name(&addr, full, sizeof full);
  return rte_eth_dev_get_port_by_name(full, &portId) == 0;
}

bool readRssKey(uint16_t portId, uint8_t size, std::vector<uint8_t>& key) {
  if (size == 0) return false;
  std::vector<uint8_t> buf(size);
  rte_eth_rss_conf conf{};
  conf.rss_key = buf.data();
  conf.rss_key_len = size;
  if (rte_eth_dev_rss_hash_conf_get(portId, &conf) != 0) return false;
  // PMDs that cannot return a key leave the length or the buffer untouched.
  if (conf.rss_key_len != size) return false;
  bool allZero = true;
  for (uint8_t b : buf) allZero = allZero && b == 0;
  if (allZero) return false;
  key = std::move(buf);
  return true;
}

bool readReta(uint16_t portId, uint16_t size, uint16_t queues, std::vector<uint16_t>& reta) {
  if (size == 0) return false;
  std::vector<rte_eth_rss_reta_entry64> conf((size + RTE_ETH_RETA_GROUP_SIZE - 1) / RTE_ETH_RETA_GROUP_SIZE);
  for (auto& c : conf) c.mask = ~0ull;
  if (rte_eth_dev_rss_reta_query(portId, conf.data(), size) != 0) return false;
  std::vector<uint16_t> out(size);
  for (uint16_t i = 0; i < size; ++i) {
    out[i] = conf[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE];
    if (out[i] >= queues) return false;  // not a table we can trust
  }
  reta = std::move(out);
  return true;
}

}  // namespace

static_assert(kXdpPacketHeadroom == XDP_PACKET_HEADROOM);

uint16_t mbufDataRoomForMtu(uint32_t mtu, bool afXdp) {
  const uint32_t room = RTE_PKTMBUF_HEADROOM + (afXdp ? kXdpPacketHeadroom : 0) + frameBytesForMtu(mtu);
  // Rounded up to a cache line: PMDs program RX buffer sizes in such units.
  const uint32_t rounded = (room + RTE_CACHE_LINE_SIZE - 1) / RTE_CACHE_LINE_SIZE * RTE_CACHE_LINE_SIZE;
  return static_cast<uint16_t>(std::max<uint32_t>(rounded, RTE_MBUF_DEFAULT_BUF_SIZE));
}

PortState setupPort(const PortParams& p) {
  const std::string& dev = p.device;
  if (p.rss != "auto" && p.rss != "ena" && p.rss != "toeplitz" && p.rss != "none")
    throw std::runtime_error("port " + dev + ": rss mode '" + p.rss +
                             "' is not one of auto, ena, toeplitz, none");
  if (p.queues == 0) throw std::runtime_error("port " + dev + ": at least one queue is needed");
  if (p.rxPools.size() < p.queues || [&] {
        for (uint16_t q = 0; q < p.queues; ++q)
          if (p.rxPools[q] == nullptr) return true;
        return false;
      }())
    throw std::runtime_error("port " + dev + ": one RX mempool per queue is needed");

  PortState s;
  s.device = dev;
  s.queues = p.queues;
  if (!findPort(dev, s.portId))
    throw std::runtime_error(
        "port " + dev +
        ": no such DPDK device (is it bound to a DPDK driver or named by a --vdev EAL argument?)");
  const uint16_t port = s.portId;

  rte_eth_dev_info info{};
  int rc = rte_eth_dev_info_get(port, &info);
  if (rc != 0) fail(dev, "rte_eth_dev_info_get", rc);
  s.driver = info.driver_name != nullptr ? info.driver_name : "";
  if (p.queues > info.max_rx_queues || p.queues > info.max_tx_queues)
    throw std::runtime_error("port " + dev + " (" + s.driver + "): " + std::to_string(p.queues) +
                             " queues wanted (one per worker) but the device offers " +
                             std::to_string(info.max_rx_queues) + " RX / " +
                             std::to_string(info.max_tx_queues) +
                             " TX (for net_af_packet, set qpairs= in its --vdev argument)");

  // The MTU check needs the device's limits, so it happens here, before
  // the port is configured and long before anything is forwarded. DPDK's
  // own check (rte_eth_dev_set_mtu) counts the frame without a VLAN tag.
  const uint32_t frame = p.mtu + uint32_t{RTE_ETHER_HDR_LEN} + RTE_ETHER_CRC_LEN;
  if (frame > info.max_rx_pktlen || p.mtu > info.max_mtu) {
    const uint32_t limit = std::min<uint32_t>(info.max_mtu, info.max_rx_pktlen > RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN
                                                                ? info.max_rx_pktlen - RTE_ETHER_HDR_LEN - RTE_ETHER_CRC_LEN
                                                                : 0);
    throw std::runtime_error("port " + dev + " (" + s.driver + "): mtu " + std::to_string(p.mtu) + " needs frames of " +
                             std::to_string(frame) + " bytes, but the device's maximum frame is " +
                             std::to_string(info.max_rx_pktlen) + " bytes (max_rx_pktlen) and its maximum MTU " +
                             std::to_string(info.max_mtu) + ": set mtu <= " + std::to_string(limit));
  }
  for (uint16_t q = 0; q < p.queues; ++q) {
    const uint32_t room = rte_pktmbuf_data_room_size(p.rxPools[q]);
    if (room < RTE_PKTMBUF_HEADROOM + frame)
      throw std::runtime_error("port " + dev + ": RX mbufs of " + std::to_string(room) + " bytes cannot hold a frame of mtu " +
                               std::to_string(p.mtu) + " (" + std::to_string(frame) + " bytes + " +
                               std::to_string(RTE_PKTMBUF_HEADROOM) + " headroom)");
  }

  rte_eth_conf conf{};
  std::vector<uint8_t> key;
  const uint64_t rssHf = kWantedRss & info.flow_type_rss_offloads;
  const bool rss = p.queues > 1 && rssHf != 0;
  if (rss) {
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_hf = rssHf;
    // Our own random key: some PMDs (ENA) return the key only when it was
    // set explicitly, and a per-process key keeps the queue of a flow
    // unguessable from outside.
    if (info.hash_key_size > 0) {
      key.resize(info.hash_key_size);
      for (auto& b : key) b = static_cast<uint8_t>(rte_rand());
      conf.rx_adv_conf.rss_conf.rss_key = key.data();
      conf.rx_adv_conf.rss_conf.rss_key_len = info.hash_key_size;
    }
    // ENA answers key and RETA queries only with this offload on.
    if (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_RSS_HASH)
      conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_RSS_HASH;
  }

  rc = rte_eth_dev_configure(port, p.queues, p.queues, &conf);
  if (rc != 0) fail(dev, "rte_eth_dev_configure (" + std::to_string(p.queues) + " queues)", rc);

  rc = rte_eth_dev_set_mtu(port, p.mtu);
  if (rc == -ENOTSUP) {
    RTE_LOG(NOTICE, USER1, "strait: port %s (%s) cannot set its MTU; keeping the device's own\n", dev.c_str(),
            s.driver.c_str());
  } else if (rc != 0) {
    fail(dev, "rte_eth_dev_set_mtu(" + std::to_string(p.mtu) + ")", rc);
  }

  uint16_t nbRx = p.rxDescriptors;
  uint16_t nbTx = p.txDescriptors;
  rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nbRx, &nbTx);
  if (rc != 0) fail(dev, "rte_eth_dev_adjust_nb_rx_tx_desc", rc);

  int socket = rte_eth_dev_socket_id(port);
  if (socket < 0) socket = SOCKET_ID_ANY;
  for (uint16_t q = 0; q < p.queues; ++q) {
    rc = rte_eth_rx_queue_setup(port, q, nbRx, static_cast<unsigned>(socket), nullptr, p.rxPools[q]);
    if (rc != 0) fail(dev, "rte_eth_rx_queue_setup(queue " + std::to_string(q) + ")", rc);
    rc = rte_eth_tx_queue_setup(port, q, nbTx, static_cast<unsigned>(socket), nullptr);
    if (rc != 0) fail(dev, "rte_eth_tx_queue_setup(queue " + std::to_string(q) + ")", rc);
  }

  rc = rte_eth_dev_start(port);
  if (rc != 0) fail(dev, "rte_eth_dev_start", rc);

  try {
    rc = rte_eth_macaddr_get(port, &s.mac);
    if (rc != 0) fail(dev, "rte_eth_macaddr_get", rc);

    // Sizes can depend on the configuration, so ask again now it is live.
    rc = rte_eth_dev_info_get(port, &info);
    if (rc != 0) fail(dev, "rte_eth_dev_info_get", rc);
    // Other PMDs report the key they program; ENA reports its cached copy
    // of the key it was given even when the device could not take it (it
    // then keeps a random one), so on ENA only our own key read back is
    // believed, and a different one means the hash cannot be predicted.
    const bool ena = s.driver == "net_ena";
    bool readable = rss && readRssKey(port, info.hash_key_size, s.rssKey) && (!ena || s.rssKey == key) &&
                    readReta(port, info.reta_size, p.queues, s.reta);
    if (!readable) {
      s.rssKey.clear();
      s.reta.clear();
    }

    if (p.rss == "ena" || p.rss == "toeplitz") {
      // With one queue there is nothing to predict; with more, a forced
      // mode without the key and table would silently misdirect replies.
      if (p.queues > 1 && !readable)
        throw std::runtime_error("port " + dev + " (" + s.driver + "): rss = \"" + p.rss +
                                 "\" but the RSS key and redirection table could not be read back");
      s.rssPredictable = p.queues > 1;
      s.variant = p.rss == "ena" ? ToeplitzVariant::kEna : ToeplitzVariant::kStandard;
    } else if (p.rss == "auto" && readable && p.queues > 1) {
      s.rssPredictable = true;
      s.variant = ena ? ToeplitzVariant::kEna : ToeplitzVariant::kStandard;
    }
  } catch (...) {
    rte_eth_dev_stop(port);
    throw;
  }
  return s;
}

void stopPort(const PortState& s) {
  rte_eth_dev_stop(s.portId);
  rte_eth_dev_close(s.portId);
}

std::vector<std::pair<std::string, uint64_t>> readXstats(uint16_t portId) {
  std::vector<std::pair<std::string, uint64_t>> out;
  int n = rte_eth_xstats_get_names(portId, nullptr, 0);
  if (n <= 0) return out;
  std::vector<rte_eth_xstat_name> names(static_cast<std::size_t>(n));
  std::vector<rte_eth_xstat> values(static_cast<std::size_t>(n));
  // The count can change between calls (queues reconfigured): retry once.
  for (int attempt = 0; attempt < 2; ++attempt) {
    int nn = rte_eth_xstats_get_names(portId, names.data(), static_cast<unsigned>(names.size()));
    int nv = rte_eth_xstats_get(portId, values.data(), static_cast<unsigned>(values.size()));
    if (nn < 0 || nv < 0) return out;
    if (static_cast<std::size_t>(nn) <= names.size() && static_cast<std::size_t>(nv) <= values.size()) {
      out.reserve(static_cast<std::size_t>(nv));
      for (int i = 0; i < nv; ++i) {
        uint64_t id = values[static_cast<std::size_t>(i)].id;
        if (id < static_cast<uint64_t>(nn))
          out.emplace_back(names[id].name, values[static_cast<std::size_t>(i)].value);
      }
      return out;
    }
    names.resize(static_cast<std::size_t>(nn > nv ? nn : nv));
    values.resize(names.size());
  }
  return out;
}

}  // namespace strait::dataplane
