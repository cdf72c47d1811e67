// The worker poll loop. Everything NatCore decides is acted on here:
// forwarded frames get their next hop from the route table and their MAC
// from the neighbour table, then wait in a per-port TX buffer that is
// flushed once per iteration (or when full), as DPDK's l3fwd does; frames
// for the control thread and for other workers go through rings. The loop
// allocates nothing, logs nothing and throws nothing once started: all its
// state is fixed-size and set up before the first iteration.
#include "dataplane/worker.h"

#include "dataplane/tsan.h"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include <array>
#include <bitset>
#include <cstring>
#include <memory>

namespace strait::dataplane {

namespace {

constexpr uint32_t kResolveCacheSize = 64;     // direct-mapped, per worker
constexpr uint32_t kResolveIntervalMs = 1000;  // per next hop, per worker
constexpr uint32_t kExpireBudget = 64;         // flows expired per iteration at most
constexpr uint16_t kEtherHdrLen = 14;
constexpr uint16_t kVlanHdrLen = 4;
constexpr uint16_t kEtherTypeVlan = 0x8100;

struct TxBuffer {
  uint16_t n = 0;
  rte_mbuf* pkts[kMaxBurst];
};

class Loop {
 public:
  explicit Loop(WorkerContext& ctx) : ctx_(ctx), c_(*ctx.counters) {
    burst_ = ctx.burst == 0 ? 32 : (ctx.burst > kMaxBurst ? kMaxBurst : ctx.burst);
    for (uint16_t p : ctx.ports)
      if (p < RTE_MAX_ETHPORTS && p < ctx.portMacs.size()) txPort_[p] = true;
    if (ctx.id < ctx.handoff.size()) inbox_ = ctx.handoff[ctx.id];
    const uint64_t perUs = rte_get_tsc_hz() / 1000000;
    for (std::size_t i = 0; i < kLoopBucketsUs.size(); ++i) bucketCycles_[i] = kLoopBucketsUs[i] * perUs;
    sweepEnd_ = ctx.nat != nullptr ? ctx.nat->flows().capacity() : 0;
    sweepCursor_ = sweepEnd_;
  }

  void run() {
    const Snapshot* prev = nullptr;
    while (!ctx_.stop->load(std::memory_order_relaxed)) {
      const uint64_t start = rte_rdtsc();
      if (ctx_.rcu != nullptr) rte_rcu_qsbr_quiescent(ctx_.rcu, ctx_.id);
      const Snapshot* snap = ctx_.snapshot->load(std::memory_order_acquire);
      if (snap != prev && snap != nullptr) pickUp(*snap);
      prev = snap;

      uint32_t work = 0;
      if (ctx_.commands != nullptr && ctx_.commands->step(kCommandBudget)) ++work;
      if (snap != nullptr) {
        if (sweepCursor_ < sweepEnd_) {
          sweepCursor_ = ctx_.nat->flushStep(*snap, sweepCursor_, kSweepBudget);
          ++work;
        }
        work += iterate(*snap);
      }

      const uint64_t end = rte_rdtsc();
      account(end - start, work != 0);
      if (work == 0 && ctx_.idleSleepUs > 0) rte_delay_us_sleep(ctx_.idleSleepUs);
    }
    flushAll();
  }

 private:
  // A new snapshot: note its generation, and start (or restart) a flush
  // sweep when it newly marks backends as flushed (lbctl backend remove
  // --flush). Until the sweep reaches a flow, a packet of it is dropped on
  // sight (NatCore), so the sweep only frees the memory and ports early.
  void pickUp(const Snapshot& snap) {
    store(c_.snapshotGeneration, snap.generation);
    if ((snap.flushedBackends & ~flushed_).any()) sweepCursor_ = 0;
    flushed_ = snap.flushedBackends;
  }

  // Loop statistics: the iteration count and cycles, the histogram of
  // iteration times, and the longest iteration since the control thread
  // last read it (it bumps loopMaxEpoch when it does).
  void account(uint64_t cycles, bool busy) {
    bump(c_.loops);
    bump(c_.totalCycles, cycles);
    if (busy) {
      bump(c_.busyLoops);
      bump(c_.busyCycles, cycles);
    }
    std::size_t b = 0;
    while (b < bucketCycles_.size() && cycles > bucketCycles_[b]) ++b;
    bump(c_.loopBuckets[b]);
    const uint64_t epoch = ctx_.loopMaxEpoch.load(std::memory_order_relaxed);
    if (epoch != maxEpoch_) {
      maxEpoch_ = epoch;
      loopMax_ = 0;
    }
    if (cycles > loopMax_) {
      loopMax_ = cycles;
      store(c_.loopMaxCycles, cycles);
    }
  }

  uint32_t iterate(const Snapshot& snap) {
    const uint32_t now = tscNowMs();
    now_ = now;
    ctx_.nat->expire(now, kExpireBudget, &snap);

    uint32_t work = 0;
    rte_mbuf* pkts[kMaxBurst];
    for (uint16_t port : ctx_.ports) {
      const uint16_t n = rte_eth_rx_burst(port, ctx_.id, pkts, burst_);
      if (n == 0) continue;
      for (uint16_t i = 0; i < n; ++i) tsanAcquire(pkts[i]);
      work += n;
      bump(c_.rxPackets, n);
      uint64_t bytes = 0;
      for (uint16_t i = 0; i < n; ++i) bytes += rte_pktmbuf_pkt_len(pkts[i]);
      bump(c_.rxBytes, bytes);
      processBurst(pkts, n, snap, now);
    }

    if (inbox_ != nullptr) {
      const unsigned n = rte_ring_sc_dequeue_burst(inbox_, reinterpret_cast<void**>(pkts), burst_, nullptr);
      if (n != 0) {
        work += n;
        bump(c_.handoffIn, n);
        processBurst(pkts, static_cast<uint16_t>(n), snap, now, true);
      }
    }

    if (ctx_.id == 0 && ctx_.fromControl != nullptr) {
      const unsigned n =
          rte_ring_sc_dequeue_burst(ctx_.fromControl, reinterpret_cast<void**>(pkts), burst_, nullptr);
      work += n;
      for (unsigned i = 0; i < n; ++i) {
        if (pkts[i]->port < RTE_MAX_ETHPORTS && txPort_[pkts[i]->port]) {
          enqueueTx(pkts[i]->port, pkts[i]);
        } else {
          drop(pkts[i], DropReason::kNoRoute);
        }
      }
    }

    flushAll();
    return work;
  }

  // `fromHandoff`: the frames came from this worker's handoff ring (NatCore
  // reads their hop count; see nat.h).
  void processBurst(rte_mbuf** pkts, uint16_t n, const Snapshot& snap, uint32_t now,
                    bool fromHandoff = false) {
    Verdict verdicts[kMaxBurst];
    ctx_.nat->process(pkts, n, snap, now, verdicts, fromHandoff);
    // Frames the core made (SYN proxy window updates) go out like forwarded ones.
    NatCore::Generated& gen = ctx_.nat->generated();
    for (uint16_t i = 0; i < gen.n; ++i) forward(gen.pkts[i]);
    gen.n = 0;
    // Frames for the control thread and for other workers are collected
    // and enqueued in one burst per ring: each multi-producer enqueue is a
    // compare-and-swap on a cache line all producers share.
    rte_mbuf* toControl[kMaxBurst];
    uint16_t nControl = 0;
    rte_mbuf* handoff[kMaxBurst];
    uint16_t handoffTo[kMaxBurst];
    uint16_t nHandoff = 0;
    for (uint16_t i = 0; i < n; ++i) {
      rte_mbuf* m = pkts[i];
      const Verdict& v = verdicts[i];
      switch (v.action) {
        case Action::kForward:
          forward(m);
          break;
        case Action::kLocal:
          if (m->port < RTE_MAX_ETHPORTS && txPort_[m->port])
            enqueueTx(m->port, m);
          else
            drop(m, DropReason::kNoRoute);
          break;
        case Action::kToControl:
          toControl[nControl++] = m;
          break;
        case Action::kHandoff:
          if (v.worker >= ctx_.handoff.size() || ctx_.handoff[v.worker] == nullptr) {
            drop(m, DropReason::kHandoffFull);
          } else {
            handoff[nHandoff] = m;
            handoffTo[nHandoff++] = v.worker;
          }
          break;
        case Action::kDrop:
        default:
          freeMbuf(m);  // NatCore counted it
          break;
      }
    }
    if (nControl != 0) enqueueOrDrop(ctx_.toControl, toControl, nControl, DropReason::kControlQueueFull);
    // Group the handed-off frames by destination, keeping their order.
    for (uint16_t i = 0; i < nHandoff;) {
      const uint16_t w = handoffTo[i];
      rte_mbuf* group[kMaxBurst];
      uint16_t g = 0;
      uint16_t keep = i;
      for (uint16_t j = i; j < nHandoff; ++j) {
        if (handoffTo[j] == w) {
          group[g++] = handoff[j];
        } else {
          handoff[keep] = handoff[j];
          handoffTo[keep++] = handoffTo[j];
        }
      }
      nHandoff = keep;
      enqueueOrDrop(ctx_.handoff[w], group, g, DropReason::kHandoffFull);
    }
  }

  // One burst enqueue; what does not fit is dropped under `reason`.
  void enqueueOrDrop(rte_ring* r, rte_mbuf** m, uint16_t n, DropReason reason) {
    const unsigned done =
        r == nullptr ? 0 : rte_ring_mp_enqueue_burst(r, reinterpret_cast<void* const*>(m), n, nullptr);
    if (done == n) return;
    bump(c_.drops[static_cast<std::size_t>(reason)], n - done);
    freeBulk(m + done, n - done);
  }

  // Routes on the (rewritten) IPv4 destination and writes the Ethernet
  // addresses of the hop; any 802.1Q tag stays as it came in.
  void forward(rte_mbuf* m) {
    uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
    const uint16_t len = rte_pktmbuf_data_len(m);
    uint16_t l3 = kEtherHdrLen;
    if (len >= kEtherHdrLen && ((frame[12] << 8) | frame[13]) == kEtherTypeVlan) l3 += kVlanHdrLen;
    if (len < l3 + 20) return drop(m, DropReason::kMalformed);
    uint32_t dst;
    std::memcpy(&dst, frame + l3 + 16, sizeof dst);

    uint16_t port = 0;
    uint32_t hop = 0;
    if (!ctx_.routes->lookup(dst, port, hop) || port >= RTE_MAX_ETHPORTS || !txPort_[port])
      return drop(m, DropReason::kNoRoute);
    rte_ether_addr mac;
    if (!ctx_.neighbours->lookup(hop, mac)) {
      askResolve(hop);
      return drop(m, DropReason::kNeighbourMiss);
    }
    auto* eth = reinterpret_cast<rte_ether_hdr*>(frame);
    eth->dst_addr = mac;
    eth->src_addr = ctx_.portMacs[port];
    m->port = port;
    enqueueTx(port, m);
  }

  // Tells the control thread about an unresolved next hop, at most once a
  // second per hop from this worker, so a flood of packets to a dead hop
  // costs one ring slot, not one per packet.
  void askResolve(uint32_t ip) {
    if (ctx_.resolve == nullptr) return;
    ResolveSlot& s = resolveCache_[(ip * 0x9e3779b1u) >> 26];  // top 6 bits: 64 slots
    if (s.ip == ip && now_ - s.ms < kResolveIntervalMs) return;
    s.ip = ip;
    s.ms = now_;
    rte_ring_mp_enqueue(ctx_.resolve, reinterpret_cast<void*>(static_cast<uintptr_t>(ip)));
  }

  void enqueueTx(uint16_t port, rte_mbuf* m) {
    TxBuffer& b = tx_[port];
    if (b.n == kMaxBurst) flush(port);
    b.pkts[b.n++] = m;
  }

  void flush(uint16_t port) {
    TxBuffer& b = tx_[port];
    if (b.n == 0) return;
    uint64_t bytes = 0;
    for (uint16_t i = 0; i < b.n; ++i) bytes += rte_pktmbuf_pkt_len(b.pkts[i]);
    // Sent mbufs belong to the PMD afterwards: only the unsent are read.
    for (uint16_t i = 0; i < b.n; ++i) tsanRelease(b.pkts[i]);
    const uint16_t sent = rte_eth_tx_burst(port, ctx_.id, b.pkts, b.n);
    for (uint16_t i = sent; i < b.n; ++i) bytes -= rte_pktmbuf_pkt_len(b.pkts[i]);
    if (sent < b.n) bump(c_.drops[static_cast<std::size_t>(DropReason::kTxFull)], b.n - sent);
    if (sent < b.n) freeBulk(b.pkts + sent, b.n - sent);
    bump(c_.txPackets, sent);
    bump(c_.txBytes, bytes);
    b.n = 0;
  }

  void flushAll() {
    for (uint16_t port = 0; port < RTE_MAX_ETHPORTS; ++port)
      if (tx_[port].n != 0) flush(port);
  }

  void drop(rte_mbuf* m, DropReason r) {
    c_.drop(r);
    freeMbuf(m);
  }

  // Mbufs go back to their pool through DPDK's (uninstrumented) mempool
  // code; the release lets a ThreadSanitizer build see that whoever
  // allocates them next comes after this worker's last access (tsan.h).
  static void freeMbuf(rte_mbuf* m) {
    tsanRelease(m->pool);
    rte_pktmbuf_free(m);
  }
  static void freeBulk(rte_mbuf** m, unsigned n) {
    for (unsigned i = 0; i < n; ++i) tsanRelease(m[i]->pool);
    rte_pktmbuf_free_bulk(m, n);
  }

  struct ResolveSlot {
    uint32_t ip = 0;
    uint32_t ms = 0;
  };

  WorkerContext& ctx_;
  WorkerCounters& c_;
  std::array<uint64_t, kLoopBucketsUs.size()> bucketCycles_{};
  uint64_t loopMax_ = 0;
  uint64_t maxEpoch_ = 0;
  uint32_t sweepCursor_ = 0;  // flush sweep position; sweepEnd_ = none running
  uint32_t sweepEnd_ = 0;
  uint16_t burst_ = 32;
  uint32_t now_ = 0;
  rte_ring* inbox_ = nullptr;
  std::bitset<kMaxBackendSlots> flushed_;
  std::array<bool, RTE_MAX_ETHPORTS> txPort_{};
  std::array<TxBuffer, RTE_MAX_ETHPORTS> tx_{};
  std::array<ResolveSlot, kResolveCacheSize> resolveCache_{};
};

}  // namespace

uint32_t tscNowMs() {
  static_assert(sizeof(uint32_t) == 4);
  const uint64_t perMs = rte_get_tsc_hz() / 1000;
  return static_cast<uint32_t>(rte_rdtsc() / (perMs == 0 ? 1 : perMs));
}

int workerMain(void* arg) {
  auto& ctx = *static_cast<WorkerContext*>(arg);
  // Register and go online from the worker's own thread; going offline on
  // the way out keeps a stopped worker from stalling rte_rcu_qsbr_check().
  if (ctx.rcu != nullptr) {
    rte_rcu_qsbr_thread_register(ctx.rcu, ctx.id);
    rte_rcu_qsbr_thread_online(ctx.rcu, ctx.id);
  }
  {
    // ~17 KiB of TX buffers: on the heap, allocated once before the loop.
    auto loop = std::make_unique<Loop>(ctx);
    loop->run();
  }
  if (ctx.rcu != nullptr) {
    rte_rcu_qsbr_thread_offline(ctx.rcu, ctx.id);
    rte_rcu_qsbr_thread_unregister(ctx.rcu, ctx.id);
  }
  return 0;
}

}  // namespace strait::dataplane
