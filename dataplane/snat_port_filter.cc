// SnatPortFilter: the tables are built once per worker on the control
// thread; fill() is one pass over the port range with no calls and no
// hash lookups (see snat_port_filter.h).
#include "dataplane/snat_port_filter.h"

#include <arpa/inet.h>

#include <bit>
#include <cstring>

namespace strait::dataplane {

SnatPortFilter::SnatPortFilter(const Params& p)
    : mode_(p.mode),
      worker_(p.worker),
      workers_(p.workers == 0 ? 1 : p.workers),
      portMin_(p.portMin),
      range_(uint32_t{p.portMax} - p.portMin + 1),
      toeplitz_(p.toeplitz),
      reta_(p.reta),
      listen_((range_ + 63) / 64, 0) {
  if (mode_ == OwnerMode::kRssHash && (toeplitz_ == nullptr || reta_.empty())) mode_ = OwnerMode::kSingle;
  if (mode_ == OwnerMode::kRssHash) {
    if (std::has_single_bit(reta_.size())) retaMask_ = static_cast<uint32_t>(reta_.size() - 1);
    // hash(b, s, bp, p) = hash(b, s, bp, 0) ^ hash(0, 0, 0, p) ^ hash(0, 0, 0, 0):
    // linear in the input bits, the constant (if the variant has one) cancelling.
    const uint32_t zero = toeplitz_->hashV4(0, 0, 0, 0);
    portHash_.resize(range_);
    for (uint32_t i = 0; i < range_; ++i)
      portHash_[i] = toeplitz_->hashV4(0, 0, 0, htons(static_cast<uint16_t>(portMin_ + i))) ^ zero;
  }
}

uint32_t SnatPortFilter::fill(const PoolKey& key, const Snapshot* snap, uint16_t* ring) {
  // Listen ports of services on the SNAT address and protocol: a handful,
  // marked in the scratch bitmap and cleared again below.
  if (snap != nullptr)
    for (const ServiceView& s : snap->services) {
      const uint32_t off = uint32_t{ntohs(s.port)} - portMin_;
      if (s.vip == key.snatIp && s.proto == key.proto && off < range_) listen_[off / 64] |= uint64_t{1} << (off % 64);
    }
  auto listening = [this](uint32_t off) { return (listen_[off / 64] >> (off % 64)) & 1; };

  uint32_t n = 0;
  switch (mode_) {
    case OwnerMode::kSingle:
      for (uint32_t off = 0; off < range_; ++off)
        if (!listening(off)) ring[n++] = static_cast<uint16_t>(portMin_ + off);
      break;
    case OwnerMode::kPortModulo: {
      // The first port of the range this worker owns, then every workers_-th.
      uint32_t off = (worker_ + workers_ - portMin_ % workers_) % workers_;
      for (; off < range_; off += workers_)
        if (!listening(off)) ring[n++] = static_cast<uint16_t>(portMin_ + off);
      break;
    }
    case OwnerMode::kRssHash: {
      // The reply travels backend -> SNAT address: that is the tuple the NIC hashes.
      const uint32_t base = toeplitz_->hashV4(key.backendIp, key.snatIp, key.backendPort, 0);
      const uint16_t* reta = reta_.data();
      const uint32_t* ph = portHash_.data();
      if (retaMask_ != 0 || reta_.size() == 1) {
        for (uint32_t off = 0; off < range_; ++off)
          if (reta[(base ^ ph[off]) & retaMask_] == worker_ && !listening(off))
            ring[n++] = static_cast<uint16_t>(portMin_ + off);
      } else {
        const auto size = static_cast<uint32_t>(reta_.size());
        for (uint32_t off = 0; off < range_; ++off)
          if (reta[(base ^ ph[off]) % size] == worker_ && !listening(off))
            ring[n++] = static_cast<uint16_t>(portMin_ + off);
      }
      break;
    }
  }

  if (snap != nullptr)
    for (const ServiceView& s : snap->services) {
      const uint32_t off = uint32_t{ntohs(s.port)} - portMin_;
      if (off < range_) listen_[off / 64] = 0;
    }
  return n;
}

bool SnatPortFilter::eligibleSlow(const PoolKey& key, uint16_t port, const Snapshot* snap) const {
  const uint32_t off = uint32_t{port} - portMin_;
  if (off >= range_) return false;
  switch (mode_) {
    case OwnerMode::kSingle:
      break;
    case OwnerMode::kPortModulo:
      if (port % workers_ != worker_) return false;
      break;
    case OwnerMode::kRssHash:
      if (rssQueue(toeplitz_->hashV4(key.backendIp, key.snatIp, key.backendPort, htons(port)), reta_) != worker_)
        return false;
      break;
  }
  return snap == nullptr || snap->findService(key.snatIp, htons(port), key.proto) == nullptr;
}

PortAllocator::Fill SnatPortFilter::fillerFor(SnatPortFilter& filter) {
  return [&filter](const PoolKey& key, const Snapshot* snap, uint16_t* ring) { return filter.fill(key, snap, ring); };
}

}  // namespace strait::dataplane
