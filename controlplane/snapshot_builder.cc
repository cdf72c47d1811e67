// Snapshot assembly from LbState. Which backends take new flows: active
// ones with weight > 0 that are up; when every such backend is down the
// service fails open and the table spreads over all of them (a health
// checker that cannot reach anything should not black-hole a service that
// may still work).
#include "controlplane/snapshot_builder.h"

#include <arpa/inet.h>


#include "dataplane/maglev.h"
#include "dataplane/siphash.h"

namespace strait::controlplane {

namespace {

BackendView view(const Backend& b, bool offered) {
  BackendView v;
  v.ip = htonl(b.ip);
  v.port = htons(b.port);
  v.slot = b.slot;
  // Removed backends are listed with weight 0: no new flows, but their
  // flows still find their slot.
  v.weight = offered ? b.weight : 0;
  v.up = b.up;
  return v;
}

}  // namespace

SnapshotBuilder::SnapshotBuilder() {
  const dataplane::SipKey k = dataplane::randomSipKey();
  isnKey0_ = k.k0;
  isnKey1_ = k.k1;
}

std::unique_ptr<Snapshot> SnapshotBuilder::build(const LbState& state, uint64_t generation) {
  auto snap = std::make_unique<Snapshot>();
  snap->generation = generation;
  const InstanceConfig& inst = state.base().instance;
  snap->instanceHealth.ip = htonl(inst.healthIp);
  snap->instanceHealth.port = htons(inst.healthPort);
  snap->instanceHealth.status = draining_                          ? InstanceStatus::kDraining
                                : state.degradedReason().empty() ? InstanceStatus::kReady
                                                                 : InstanceStatus::kDegraded;
  snap->instanceHealth.key0 = isnKey0_;
  snap->instanceHealth.key1 = isnKey1_;
  lastRebuilds_ = 0;
  std::map<uint16_t, CacheEntry> nextCache;

  for (const Service& s : state.services()) {
    ServiceView sv;
    sv.name = s.config.name;
    sv.slot = s.slot;
    sv.vip = htonl(s.config.vip);
    sv.port = htons(s.config.port);
    sv.proto = s.config.proto;
    sv.mssClamp = s.config.mssClamp;
    sv.failOpen = s.failOpen();
    sv.synProxy = s.config.synProxy;
    sv.proxyProtocol = s.config.proxyProtocol;
    for (uint32_t ip : s.config.snat) sv.snatIps.push_back(htonl(ip));

    CacheEntry entry;
    entry.size = s.config.maglevSize;
    std::vector<uint16_t> eligible;  // indices into sv.backends
    for (const Backend& b : s.backends) {
      if (b.weight > 0 && (b.up || sv.failOpen)) {
        eligible.push_back(static_cast<uint16_t>(sv.backends.size()));
        entry.key.emplace_back(b.ip, b.port, b.weight);
      }
      sv.backends.push_back(view(b, true));
    }
    for (const Backend& b : s.draining) {
      sv.backends.push_back(view(b, false));
      if (b.phase == BackendPhase::kFlushing) snap->flushedBackends.set(b.slot);
    }

    if (!eligible.empty()) {
      auto cached = cache_.find(s.slot);
      if (cached != cache_.end() && cached->second.size == entry.size && cached->second.key == entry.key) {
        entry.table = std::move(cached->second.table);
      } else {
        std::vector<dataplane::MaglevBackend> mb;
        mb.reserve(entry.key.size());
        for (const auto& [ip, port, weight] : entry.key) mb.push_back({htonl(ip), htons(port), weight});
        entry.table = dataplane::buildMaglev(mb, entry.size);
        ++lastRebuilds_;
      }
      sv.maglev.resize(entry.table.size());
      for (std::size_t i = 0; i < entry.table.size(); ++i) {
        const uint16_t e = entry.table[i];
        sv.maglev[i] = e == dataplane::kMaglevNone ? dataplane::kMaglevNone : eligible[e];
      }
      nextCache.emplace(s.slot, std::move(entry));
    }
    snap->services.push_back(std::move(sv));
  }
  for (const RetiredService& r : state.retired())
    for (const Backend& b : r.backends) snap->flushedBackends.set(b.slot);
  cache_ = std::move(nextCache);

  std::vector<uint32_t> ifaceIps;
  for (uint32_t ip : state.interfaceIps()) ifaceIps.push_back(htonl(ip));
  snap->buildIndexes(ifaceIps);
  return snap;
}

std::unique_ptr<Snapshot> buildSnapshot(const LbState& state, uint64_t generation) {
  SnapshotBuilder b;
  return b.build(state, generation);
}

}  // namespace strait::controlplane
