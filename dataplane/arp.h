// ARP for the dataplane's own addresses, on the control thread's slow
// path: workers pass every ARP frame to the control thread, which answers
// requests for our addresses (interface, VIPs, SNAT addresses), learns
// neighbours from replies and from requests addressed to us, and sends
// requests for next hops the workers could not resolve, refreshing entries
// before they age out. Frames it sends go to the wire through worker 0.
#pragma once

#include <rte_ether.h>

#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

#include "dataplane/neighbour.h"
#include "strait/counters.h"

struct rte_mbuf;
struct rte_mempool;

namespace strait::dataplane {

struct ArpInterface {
  uint16_t port = 0;
  rte_ether_addr mac{};
  uint32_t ip = 0;      // network order
  uint32_t prefix = 0;  // network order, masked
  uint8_t prefixLen = 24;
};

class ArpService {
 public:
  // `isOurs(ip)` says whether an address (network order) is one we answer
  // for; `transmit(mbuf)` queues a frame for the wire (mbuf->port set).
  ArpService(std::vector<ArpInterface> ifaces, NeighbourTable& neigh, rte_mempool* pool,
             std::function<bool(uint32_t)> isOurs, std::function<bool(rte_mbuf*)> transmit,
             WorkerCounters& counters);

  // Handles one ARP frame from a worker; consumes the mbuf.
  void handle(rte_mbuf* m, uint64_t nowMs);
  // A worker could not resolve `ip`: send a request (rate-limited per IP).
  void resolve(uint32_t ip, uint64_t nowMs);
  // Periodic: ages entries, refreshes the ones due, re-asks pending ones.
  void tick(uint64_t nowMs, uint64_t timeoutMs);
  // Sends a gratuitous ARP for every address we own (at start-up).
  void announce();
  // Addresses besides the interface addresses that announce() covers (VIPs,
  // SNAT addresses; network order). Control thread, like everything here.
  void setOwnedAddresses(std::vector<uint32_t> addrs);

  // Requests outstanding (tests and metrics).
  std::size_t pendingCount() const { return pending_.size(); }

 private:
  struct Pending {
    uint64_t lastMs = 0;  // when the last request went out
    uint32_t tries = 0;   // requests sent since the address became pending
  };
  const ArpInterface* ifaceFor(uint32_t ip) const;
  const ArpInterface* ifaceOnPortFor(uint16_t port, uint32_t ip) const;
  // Broadcast request, or unicast to `dst` (refreshing a known entry).
  bool sendRequest(const ArpInterface& ifc, uint32_t targetIp, const rte_ether_addr* dst = nullptr);
  bool sendArp(const ArpInterface& ifc, uint16_t op, const rte_ether_addr& ethDst, const rte_ether_addr& tha,
               uint32_t spa, uint32_t tpa);
  // Sends a request unless one for `ip` went out less than a second ago.
  void ask(const ArpInterface& ifc, uint32_t ip, uint64_t nowMs, const rte_ether_addr* dst);

  std::vector<ArpInterface> ifaces_;
  NeighbourTable& neigh_;
  rte_mempool* pool_;
  std::function<bool(uint32_t)> isOurs_;
  std::function<bool(rte_mbuf*)> transmit_;
  WorkerCounters& counters_;
  std::vector<uint32_t> owned_;
  std::unordered_map<uint32_t, Pending> pending_;  // next hops we asked for
};

}  // namespace strait::dataplane
