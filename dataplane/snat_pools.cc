// SnatPools: slot assignment, reference counts and retirement of SNAT port
// pools on the control thread (see snat_pools.h for the safety argument).
#include "dataplane/snat_pools.h"

#include <cstring>
#include <unordered_set>

#include "strait/mix.h"

namespace strait::dataplane {

std::size_t SnatPools::KeyHash::operator()(const PoolKey& k) const {
  uint64_t a;
  uint32_t b;
  std::memcpy(&a, &k, sizeof a);
  std::memcpy(&b, reinterpret_cast<const uint8_t*>(&k) + sizeof a, sizeof b);
  return static_cast<std::size_t>(fmix64(a ^ (uint64_t{b} * 0x9e3779b97f4a7c15ull)));
}

SnatPools::SnatPools(Params p)
    : workers_(std::move(p.workers)), graceStart_(std::move(p.graceStart)), graceDone_(std::move(p.graceDone)) {
  maxPools_ = workers_.empty() ? 0 : workers_.front()->maxPools();
  for (const PortAllocator* w : workers_)
    if (w->maxPools() < maxPools_) maxPools_ = w->maxPools();
  slots_.resize(maxPools_);
  free_.reserve(maxPools_);
}

bool SnatPools::idleEverywhere(uint32_t slot) const {
  for (const PortAllocator* w : workers_)
    if (w->inUse(slot) != 0) return false;
  return true;
}

void SnatPools::unref(uint32_t id) {
  Slot& s = slots_[id];
  if (s.snapshotRefs == 0) return;
  if (--s.snapshotRefs == 0 && s.state == State::kLive && !s.draining) {
    s.draining = true;
    draining_.push_back(id);
  }
}

uint32_t SnatPools::prepare(Snapshot& snap) {
  if (!snap.snatPools.empty()) release(snap);
  snap.snatPools.clear();
  // Every tuple a new flow of this snapshot can need: each backend that
  // may be given new flows (weight > 0; health decides per packet through
  // the Maglev table, so a flapping backend keeps its pool) from each of
  // its service's SNAT addresses. Services sharing a SNAT address and a
  // backend share the pool, as the ports would conflict otherwise.
  std::unordered_set<PoolKey, KeyHash> seen;
  uint32_t missing = 0;
  for (const ServiceView& svc : snap.services)
    for (const BackendView& be : svc.backends) {
      if (be.weight == 0) continue;
      for (uint32_t ip : svc.snatIps) {
        const PoolKey key{ip, be.ip, be.port, svc.proto, 0};
        if (!seen.insert(key).second) continue;
        uint32_t id;
        if (auto it = index_.find(key); it != index_.end()) {
          id = it->second;
          Slot& s = slots_[id];
          s.state = State::kLive;  // a slot in its last grace period is taken back unchanged
        } else {
          if (!free_.empty()) {
            id = free_.back();
            free_.pop_back();
          } else if (touched_ < maxPools_) {
            id = touched_++;
          } else {
            ++missing;
            continue;
          }
          for (PortAllocator* w : workers_) w->load(id, key, &snap);
          ++loads_;
          ++active_;
          Slot& s = slots_[id];
          s.state = State::kLive;
          s.key = key;
          index_.emplace(key, id);
        }
        ++slots_[id].snapshotRefs;
        snap.snatPools.push_back(SnatPoolRef{key.snatIp, key.backendIp, key.backendPort, key.proto, 0, id});
      }
    }
  snap.indexSnatPools();
  return missing;
}

void SnatPools::release(const Snapshot& snap) {
  for (const SnatPoolRef& r : snap.snatPools)
    if (r.slot < slots_.size()) unref(r.slot);
}

void SnatPools::collect() {
  for (std::size_t i = 0; i < draining_.size();) {
    const uint32_t id = draining_[i];
    Slot& s = slots_[id];
    bool out = true;
    if (s.state == State::kLive && s.snapshotRefs == 0) {
      if (idleEverywhere(id)) {
        s.state = State::kGrace;
        s.token = graceStart_ ? graceStart_() : 0;
        grace_.push_back(id);
      } else {
        out = false;  // flows still hold ports
      }
    }
    if (out) {
      s.draining = false;
      draining_[i] = draining_.back();
      draining_.pop_back();
    } else {
      ++i;
    }
  }
  while (!grace_.empty()) {
    const uint32_t id = grace_.front();
    Slot& s = slots_[id];
    if (s.state == State::kGrace) {
      if (graceDone_ && !graceDone_(s.token)) break;
      index_.erase(s.key);
      s.state = State::kFree;
      free_.push_back(id);
      --active_;
      ++retired_;
    }
    grace_.pop_front();
  }
}

}  // namespace strait::dataplane
