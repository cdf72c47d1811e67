// Which SNAT ports one worker may hand out for a pool, computed in one
// tight loop per pool. The control thread fills a worker's pool slot with
// it before publishing the snapshot that names the pool (SnatPools,
// dataplane/snat_pools.h), once per worker and new pool, so a snapshot
// with many new backends stays quick to publish: everything that does not
// depend on the key is prepared when the worker is set up, and the
// per-pool work is a table lookup and a compare per port (no call through
// std::function, no hash lookup per port).
//
// A port is eligible when
//  * a reply to it reaches this worker: with OwnerMode::kPortModulo the
//    port modulo the worker count; with kRssHash the NIC's Toeplitz hash
//    of the reply (backend -> SNAT address:port) through the redirection
//    table. Toeplitz is linear (XOR) in its input bits, so the hash of a
//    reply is the hash of the key with destination port 0 XOR the port's
//    own contribution, which is tabulated here for the whole range once;
//  * and it is not a service's listen port on the SNAT address and
//    protocol in the snapshot the pool is prepared for (a reply to it would
//    look like a client packet). The listen ports are read from that
//    snapshot once per pool into a preallocated bitmap.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "dataplane/nat.h"
#include "dataplane/port_alloc.h"
#include "dataplane/toeplitz.h"
#include "strait/snapshot.h"

namespace strait::dataplane {

class SnatPortFilter {
 public:
  struct Params {
    OwnerMode mode = OwnerMode::kSingle;
    uint16_t worker = 0;
    uint16_t workers = 1;
    uint16_t portMin = 1024;  // host order, inclusive
    uint16_t portMax = 65535;
    const Toeplitz* toeplitz = nullptr;  // kRssHash: the port's RSS hash (outlives the filter)
    std::vector<uint16_t> reta;          // kRssHash: the port's redirection table
  };

  // Builds the per-port tables (control thread; allocates).
  explicit SnatPortFilter(const Params& p);

  // Writes the eligible ports of `key`, ascending (host order), to `ring`
  // (room for the whole range) and returns how many; the listen ports of
  // `snap` (null: none) are left out. No allocation.
  uint32_t fill(const PoolKey& key, const Snapshot* snap, uint16_t* ring);

  // The same answer for one port, the slow way (hashV4 and findService),
  // for tests that check fill() against it.
  bool eligibleSlow(const PoolKey& key, uint16_t port, const Snapshot* snap) const;

  // A PortAllocator::Params::fill that calls `filter` (which must outlive
  // the allocator).
  static PortAllocator::Fill fillerFor(SnatPortFilter& filter);

 private:
  OwnerMode mode_;
  uint16_t worker_, workers_;
  uint16_t portMin_;
  uint32_t range_;
  const Toeplitz* toeplitz_;
  std::vector<uint16_t> reta_;
  uint32_t retaMask_ = 0;           // reta size - 1 when a power of two, else 0 (modulo)
  std::vector<uint32_t> portHash_;  // kRssHash: each port's contribution to the hash
  std::vector<uint64_t> listen_;    // scratch: listen ports of the key's address, one bit per port in range
};

}  // namespace strait::dataplane
