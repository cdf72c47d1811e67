// ArpService: the dataplane's ARP on the control thread. It answers
// requests for any address we own (interface, VIP, SNAT) from senders on a
// connected subnet, learns neighbours the way Linux does (from requests
// addressed to us, from replies to what we asked, and as updates to entries
// we already hold, never from unsolicited chatter about strangers), and
// keeps the table fresh: entries past half their lifetime are re-asked by
// unicast, pending next hops are re-asked once a second and given up after
// a few tries. Everything here is control path; the workers only read the
// NeighbourTable and queue next hops they could not resolve.
#include "dataplane/arp.h"

#include <arpa/inet.h>
#include <rte_arp.h>
#include <rte_mbuf.h>

#include <cstring>

namespace strait::dataplane {

namespace {

constexpr uint64_t kRequestIntervalMs = 1000;  // per IP, like Linux's retrans_time
constexpr uint32_t kMaxTries = 3;              // then the next hop stops being pending
constexpr std::size_t kMaxPending = 1024;      // a flood of misses cannot grow the map
constexpr uint16_t kFrameLen = RTE_ETHER_MIN_LEN - RTE_ETHER_CRC_LEN;  // 60, padded

uint32_t prefixMask(uint8_t len) { return len == 0 ? 0 : htonl(~0u << (32 - len)); }

bool inSubnet(const ArpInterface& ifc, uint32_t ip) {
  return (ip & prefixMask(ifc.prefixLen)) == (ifc.prefix & prefixMask(ifc.prefixLen));
}

uint32_t load32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

void store32(void* p, uint32_t v) { std::memcpy(p, &v, sizeof v); }

}  // namespace

ArpService::ArpService(std::vector<ArpInterface> ifaces, NeighbourTable& neigh, rte_mempool* pool,
                       std::function<bool(uint32_t)> isOurs, std::function<bool(rte_mbuf*)> transmit,
                       WorkerCounters& counters)
    : ifaces_(std::move(ifaces)),
      neigh_(neigh),
      pool_(pool),
      isOurs_(std::move(isOurs)),
      transmit_(std::move(transmit)),
      counters_(counters) {}

void ArpService::setOwnedAddresses(std::vector<uint32_t> addrs) { owned_ = std::move(addrs); }

const ArpInterface* ArpService::ifaceFor(uint32_t ip) const {
  for (const auto& ifc : ifaces_)
    if (inSubnet(ifc, ip)) return &ifc;
  return nullptr;
}

const ArpInterface* ArpService::ifaceOnPortFor(uint16_t port, uint32_t ip) const {
  for (const auto& ifc : ifaces_)
    if (ifc.port == port && inSubnet(ifc, ip)) return &ifc;
  return nullptr;
}

void ArpService::handle(rte_mbuf* m, uint64_t nowMs) {
  uint8_t* data = rte_pktmbuf_mtod(m, uint8_t*);
  const uint32_t len = rte_pktmbuf_data_len(m);
  auto drop = [&](DropReason r) {
    counters_.drop(r);
    rte_pktmbuf_free(m);
  };

  if (len < sizeof(rte_ether_hdr)) return drop(DropReason::kMalformed);
  auto* eth = reinterpret_cast<rte_ether_hdr*>(data);
  uint32_t off = sizeof(rte_ether_hdr);
  uint16_t etherType = eth->ether_type;
  if (etherType == htons(RTE_ETHER_TYPE_VLAN)) {
    if (len < off + 4) return drop(DropReason::kMalformed);
    std::memcpy(&etherType, data + off + 2, sizeof etherType);  // inner type, network order
    off += 4;
  }
  if (etherType != htons(RTE_ETHER_TYPE_ARP)) return drop(DropReason::kUnsupportedL2);
  if (len < off + sizeof(rte_arp_hdr)) return drop(DropReason::kMalformed);
  auto* arp = reinterpret_cast<rte_arp_hdr*>(data + off);
  const uint16_t op = ntohs(arp->arp_opcode);
  if (arp->arp_hardware != htons(RTE_ARP_HRD_ETHER) || arp->arp_protocol != htons(RTE_ETHER_TYPE_IPV4) ||
      arp->arp_hlen != RTE_ETHER_ADDR_LEN || arp->arp_plen != 4 ||
      (op != RTE_ARP_OP_REQUEST && op != RTE_ARP_OP_REPLY))
    return drop(DropReason::kMalformed);

  rte_ether_addr sha = arp->arp_data.arp_sha;
  const uint32_t spa = load32(&arp->arp_data.arp_sip);
  const uint32_t tpa = load32(&arp->arp_data.arp_tip);
  // A multicast or zero sender MAC is never a neighbour we could send to.
  if (rte_is_multicast_ether_addr(&sha) || rte_is_zero_ether_addr(&sha)) return drop(DropReason::kMalformed);

  auto isInterfaceIp = [&](uint32_t ip) {
    for (const auto& ifc : ifaces_)
      if (ifc.ip == ip) return true;
    return false;
  };
  const bool targetOurs = tpa != 0 && (isInterfaceIp(tpa) || isOurs_(tpa));
  // The interface on the arrival port whose subnet holds the sender; a
  // probe (sender 0.0.0.0, RFC 5227) is answered on the port's first one.
  const ArpInterface* ifc = ifaceOnPortFor(m->port, spa);
  const bool senderUsable = spa != 0 && ifc != nullptr && !isInterfaceIp(spa) && !isOurs_(spa);

  bool learned = false;
  if (senderUsable) {
    rte_ether_addr known;
    const bool isKnown = neigh_.lookup(spa, known);
    const bool isPending = pending_.count(spa) != 0;
    if (targetOurs || isKnown || isPending) {
      neigh_.update(spa, sha, nowMs);
      pending_.erase(spa);
      learned = true;
    }
  }

  if (op == RTE_ARP_OP_REPLY) {
    if (learned) {
      rte_pktmbuf_free(m);
      return;
    }
    return drop(DropReason::kArpNotOurs);
  }

  // A request.
  if (!targetOurs) return drop(DropReason::kArpNotOurs);
  const ArpInterface* out = ifc;
  if (out == nullptr && spa == 0) {
    for (const auto& i : ifaces_)
      if (i.port == m->port) {
        out = &i;
        break;
      }
  }
  if (out == nullptr) return drop(DropReason::kArpNotOurs);  // asker not on our link

  if (!RTE_MBUF_DIRECT(m) || rte_mbuf_refcnt_read(m) != 1) {
    // Someone else holds this buffer: answer from a fresh one.
    rte_pktmbuf_free(m);
    sendArp(*out, RTE_ARP_OP_REPLY, sha, sha, tpa, spa);
    return;
  }
  // Turn the request into the reply in place (keeping any VLAN tag).
  eth->dst_addr = sha;
  eth->src_addr = out->mac;
  arp->arp_opcode = htons(RTE_ARP_OP_REPLY);
  arp->arp_data.arp_tha = sha;
  store32(&arp->arp_data.arp_tip, spa);
  arp->arp_data.arp_sha = out->mac;
  store32(&arp->arp_data.arp_sip, tpa);
  m->port = out->port;
  m->ol_flags = 0;
  if (!transmit_(m)) {
    counters_.drop(DropReason::kTxFull);
    rte_pktmbuf_free(m);
  }
}

bool ArpService::sendArp(const ArpInterface& ifc, uint16_t op, const rte_ether_addr& ethDst,
                         const rte_ether_addr& tha, uint32_t spa, uint32_t tpa) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool_);
  if (m == nullptr) return false;
  auto* data = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, kFrameLen));
  if (data == nullptr) {
    rte_pktmbuf_free(m);
    return false;
  }
  std::memset(data, 0, kFrameLen);
  auto* eth = reinterpret_cast<rte_ether_hdr*>(data);
  eth->dst_addr = ethDst;
  eth->src_addr = ifc.mac;
  eth->ether_type = htons(RTE_ETHER_TYPE_ARP);
  auto* arp = reinterpret_cast<rte_arp_hdr*>(data + sizeof(rte_ether_hdr));
  arp->arp_hardware = htons(RTE_ARP_HRD_ETHER);
  arp->arp_protocol = htons(RTE_ETHER_TYPE_IPV4);
  arp->arp_hlen = RTE_ETHER_ADDR_LEN;
  arp->arp_plen = 4;
  arp->arp_opcode = htons(op);
  arp->arp_data.arp_sha = ifc.mac;
  store32(&arp->arp_data.arp_sip, spa);
  arp->arp_data.arp_tha = tha;
  store32(&arp->arp_data.arp_tip, tpa);
  m->port = ifc.port;
  if (!transmit_(m)) {
    counters_.drop(DropReason::kTxFull);
    rte_pktmbuf_free(m);
    return false;
  }
  return true;
}

bool ArpService::sendRequest(const ArpInterface& ifc, uint32_t targetIp, const rte_ether_addr* dst) {
  rte_ether_addr bcast;
  std::memset(bcast.addr_bytes, 0xff, sizeof bcast.addr_bytes);
  const rte_ether_addr zero{};
  return sendArp(ifc, RTE_ARP_OP_REQUEST, dst != nullptr ? *dst : bcast, zero, ifc.ip, targetIp);
}

void ArpService::ask(const ArpInterface& ifc, uint32_t ip, uint64_t nowMs, const rte_ether_addr* dst) {
  auto it = pending_.find(ip);
  if (it == pending_.end()) {
    if (pending_.size() >= kMaxPending) return;
    it = pending_.emplace(ip, Pending{}).first;
  } else if (nowMs - it->second.lastMs < kRequestIntervalMs) {
    return;
  }
  it->second.lastMs = nowMs;
  ++it->second.tries;
  sendRequest(ifc, ip, dst);
}

void ArpService::resolve(uint32_t ip, uint64_t nowMs) {
  if (ip == 0) return;
  const ArpInterface* ifc = ifaceFor(ip);
  if (ifc == nullptr) return;  // not on a connected subnet: nothing to ask
  rte_ether_addr mac;
  if (neigh_.lookup(ip, mac)) return;  // answered since the worker missed it
  ask(*ifc, ip, nowMs, nullptr);
}

void ArpService::tick(uint64_t nowMs, uint64_t timeoutMs) {
  for (uint32_t ip : neigh_.age(nowMs, timeoutMs)) {
    const ArpInterface* ifc = ifaceFor(ip);
    rte_ether_addr mac;
    if (ifc == nullptr || !neigh_.lookup(ip, mac)) continue;
    ask(*ifc, ip, nowMs, &mac);  // unicast: the neighbour is probably still there
  }
  for (auto it = pending_.begin(); it != pending_.end();) {
    Pending& p = it->second;
    if (nowMs - p.lastMs < kRequestIntervalMs) {
      ++it;
      continue;
    }
    const ArpInterface* ifc = ifaceFor(it->first);
    if (p.tries >= kMaxTries || ifc == nullptr) {
      it = pending_.erase(it);
      continue;
    }
    p.lastMs = nowMs;
    ++p.tries;
    sendRequest(*ifc, it->first);
    ++it;
  }
}

void ArpService::announce() {
  rte_ether_addr bcast;
  std::memset(bcast.addr_bytes, 0xff, sizeof bcast.addr_bytes);
  const rte_ether_addr zero{};
  for (const auto& ifc : ifaces_) sendArp(ifc, RTE_ARP_OP_REQUEST, bcast, zero, ifc.ip, ifc.ip);
  for (std::size_t i = 0; i < owned_.size(); ++i) {
    uint32_t ip = owned_[i];
    bool seen = false;
    for (const auto& ifc : ifaces_) seen = seen || ifc.ip == ip;
    for (std::size_t j = 0; j < i; ++j) seen = seen || owned_[j] == ip;
    if (seen) continue;
    // Addresses outside every connected subnet have no link to announce on.
    if (const ArpInterface* ifc = ifaceFor(ip)) sendArp(*ifc, RTE_ARP_OP_REQUEST, bcast, zero, ip, ip);
  }
}

}  // namespace strait::dataplane
