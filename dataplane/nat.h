// The per-packet core of a worker: a burst of frames in, one Verdict per
// frame out. It parses, classifies against the current Snapshot, looks the
// flows up in bulk, creates flows for new connections (Maglev pick, SNAT port
// allocation, two-key insert), tracks TCP state, rewrites client->VIP
// packets to SNAT->backend and replies back (incremental checksums),
// translates ICMP errors that quote a flow's packet (outer and inner
// headers), clamps TCP MSS where configured, decrements TTL, and answers
// ICMP echo to its own addresses. It does no I/O: the caller supplies the
// mbufs and the clock, and acts on the verdicts (see dataplane/worker.cc),
// so unit tests and the benchmark drive it without a NIC.
#pragma once

#include <cstdint>

#include "dataplane/flow_table.h"
#include "dataplane/port_alloc.h"
#include "dataplane/syncookie.h"
#include "strait/counters.h"
#include "strait/packet_meta.h"
#include "strait/snapshot.h"
#include "strait/verdict.h"

struct rte_mbuf;

namespace strait::dataplane {

inline constexpr uint16_t kMaxBurst = 64;

// How a worker tells which worker owns a reply that missed its flow table.
enum class OwnerMode : uint8_t {
  kSingle,      // one worker: a miss is a miss
  kPortModulo,  // NIC hash unpredictable: SNAT port p belongs to worker p % workers
  kRssHash,     // ports chosen so replies hash to the owner's queue: a miss is a miss
};

// When a worker answers syn_proxy = "auto" services with cookies: it
// enters cookie mode when its half-open TCP flows (syn_sent + syn_recv) or
// the fullest of its SNAT pools reach the `enter` marks, and leaves it when
// both are back at or below the `leave` marks (hysteresis).
struct SynProxyParams {
  uint32_t halfOpenEnter = 1024;
  uint32_t halfOpenLeave = 512;
  uint32_t poolEnterPct = 90;  // percent of a pool's ports in use
  uint32_t poolLeavePct = 75;
};

class NatCore {
 public:
  struct Deps {
    FlowTable* flows = nullptr;
    PortAllocator* ports = nullptr;
    WorkerCounters* counters = nullptr;
    uint16_t workerId = 0;
    uint16_t numWorkers = 1;
    OwnerMode ownerMode = OwnerMode::kSingle;
    // Shared by all workers (read-only). Null: no service gets cookies.
    const SynCookies* cookies = nullptr;
    SynProxyParams synProxy;
  };

  // Frames the core made from nothing during the last process() call (the
  // SYN proxy's window updates to clients), to be forwarded like kForward
  // frames: IPv4/TCP complete, Ethernet left to the output stage.
  struct Generated {
    uint16_t n = 0;
    rte_mbuf* pkts[kMaxBurst];
  };

  // State of the SYN proxy on this worker.
  struct SynProxyState {
    bool cookieMode = false;       // "auto" services get cookies
    bool sentAny = false;          // a cookie was ever sent (lastCookieMs is meaningful)
    uint32_t lastCookieMs = 0;     // when the last cookie SYN-ACK left
    uint32_t lastEvalMs = 0;       // last evaluation of the auto thresholds
  };

  explicit NatCore(const Deps& d);

  // Processes `n` (<= kMaxBurst) frames. Fills verdicts[0..n). Counts
  // drops (counters->drops), flow creation, per-service/backend packets
  // and bytes. Frames with kForward have their IPv4/L4 rewritten and TTL
  // decremented; Ethernet is left for the output stage. Frames with kLocal
  // were turned into replies in place (addresses and MACs swapped).
  //
  // `fromHandoff` says the frames came from this worker's handoff ring
  // rather than a NIC queue: a client-side ICMP error that misses (its
  // quote has no SNAT port to find the owner by) is passed round the
  // workers, and the number of workers it has already visited travels in
  // the mbuf's hash.usr, which is only meaningful on handed-off frames (on
  // received ones it still holds the NIC's RSS hash).
  void process(rte_mbuf** pkts, uint16_t n, const Snapshot& snap, uint32_t nowMs, Verdict* verdicts,
               bool fromHandoff = false);

  // Frames made by the last process() call; the caller takes them all
  // (and so owns the mbufs) before the next call.
  Generated& generated() { return gen_; }

  // Expires idle flows (at most `budget`), releasing their ports and
  // counting them, and re-evaluates the worker's cookie mode (at most every
  // 50 ms; the pools `snap` names count towards pool pressure, none when
  // null). Call once per poll loop.
  uint32_t expire(uint32_t nowMs, uint32_t budget, const Snapshot* snap = nullptr);

  // Evaluates the syn_proxy = "auto" thresholds now (expire() calls it).
  void updateCookieMode(uint32_t nowMs, const Snapshot* snap = nullptr);
  bool cookieMode() const { return sp_.cookieMode; }

  // Bounded sweeps over the flow records, so that the worker loop never
  // stalls on a large table: each call visits records from `cursor` on
  // until `budget` work units are spent (a record visited costs 1, a flow
  // removed 1 + kSweepRemoveCost) and returns the cursor to continue from;
  // flows().capacity() means the sweep is done. Nothing is allocated.
  // `removed`, when given, is increased by the number of flows removed.
  //
  // flushStep drops the flows whose backend slot is flushed in `snap` (the
  // worker runs it after picking up a snapshot that flushes backends;
  // packets of such flows are dropped on sight meanwhile).
  uint32_t flushStep(const Snapshot& snap, uint32_t cursor, uint32_t budget, uint32_t* removed = nullptr);
  // clearStep drops every flow, counted as expired.
  uint32_t clearStep(uint32_t cursor, uint32_t budget, uint32_t* removed = nullptr);

  // Whole-table forms, only for when no worker runs this core (shutdown,
  // tests, benchmarks). flush returns the number of flows dropped.
  uint32_t flush(const Snapshot& snap);
  void clear();

  const FlowTable& flows() const { return *d_.flows; }

  static constexpr uint32_t kSweepRemoveCost = 32;  // two hash deletes, list unlink, port release: ~30x a visit
  static constexpr uint32_t kSweepAll = 0xffffffffu;

 private:
  template <class Pred>
  uint32_t sweep(uint32_t cursor, uint32_t budget, Pred&& pred, uint64_t& reason, uint32_t* removed);

  Deps d_;
  SynProxyState sp_;
  Generated gen_;
};

}  // namespace strait::dataplane
