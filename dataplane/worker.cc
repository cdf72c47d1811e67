// The worker poll loop. Everything NatCore decides is acted on here:
// forwarded frames get their next hop from the route table and their MAC
// from the neighbour table, then wait in a per-port TX buffer that is
// flushed once per iteration (or when full), as DPDK's l3fwd does; frames
// for the control thread and for other workers go through rings. The loop
// allocates nothing, logs nothing and throws nothing once started: all its
// state is fixed-size and set up before the first iteration.
#include "dataplane/worker.h"

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
  }

  void run() {
    const Snapshot* prev = nullptr;
    while (!ctx_.stop->load(std::memory_order_relaxed)) {
      const uint64_t start = rte_rdtsc();
      if (ctx_.rcu != nullptr) rte_rcu_qsbr_quiescent(ctx_.rcu, ctx_.id);
      const Snapshot* snap = ctx_.snapshot->load(std::memory_order_acquire);
      if (snap != prev && snap != nullptr) pickUp(*snap);
      prev = snap;

      if (auto* task = ctx_.task.load(std::memory_order_acquire)) {
        (*task)();
        ctx_.task.store(nullptr, std::memory_order_release);
      }

      uint32_t work = 0;
      if (snap != nullptr) work = iterate(*snap);

      const uint64_t end = rte_rdtsc();
      ++c_.loops;
      c_.totalCycles += end - start;
      if (work != 0) {
        ++c_.busyLoops;
        c_.busyCycles += end - start;
      } else if (ctx_.idleSleepUs > 0) {
        rte_delay_us_sleep(ctx_.idleSleepUs);
      }
    }
    flushAll();
  }

 private:
  // A new snapshot: note its generation, and drop the flows of backends it
  // newly marks as flushed (lbctl backend remove --flush).
  void pickUp(const Snapshot& snap) {
    c_.snapshotGeneration = snap.generation;
    if ((snap.flushedBackends & ~flushed_).any()) ctx_.nat->flush(snap);
    flushed_ = snap.flushedBackends;
  }

  uint32_t iterate(const Snapshot& snap) {
    const uint32_t now = tscNowMs();
    now_ = now;
    ctx_.nat->expire(now, kExpireBudget);

    uint32_t work = 0;
    rte_mbuf* pkts[kMaxBurst];
    for (uint16_t port : ctx_.ports) {
      const uint16_t n = rte_eth_rx_burst(port, ctx_.id, pkts, burst_);
      if (n == 0) continue;
      work += n;
      c_.rxPackets += n;
      for (uint16_t i = 0; i < n; ++i) c_.rxBytes += rte_pktmbuf_pkt_len(pkts[i]);
      processBurst(pkts, n, snap, now);
    }

    if (inbox_ != nullptr) {
      const unsigned n = rte_ring_sc_dequeue_burst(inbox_, reinterpret_cast<void**>(pkts), burst_, nullptr);
      if (n != 0) {
        work += n;
        c_.handoffIn += n;
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
          if (ctx_.toControl == nullptr || rte_ring_mp_enqueue(ctx_.toControl, m) != 0)
            drop(m, DropReason::kControlQueueFull);
          break;
        case Action::kHandoff:
          if (v.worker >= ctx_.handoff.size() || ctx_.handoff[v.worker] == nullptr ||
              rte_ring_mp_enqueue(ctx_.handoff[v.worker], m) != 0)
            drop(m, DropReason::kHandoffFull);
          break;
        case Action::kDrop:
        default:
          rte_pktmbuf_free(m);  // NatCore counted it
          break;
      }
    }
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
    const uint16_t sent = rte_eth_tx_burst(port, ctx_.id, b.pkts, b.n);
    for (uint16_t i = sent; i < b.n; ++i) {
      bytes -= rte_pktmbuf_pkt_len(b.pkts[i]);
      c_.drop(DropReason::kTxFull);
    }
    if (sent < b.n) rte_pktmbuf_free_bulk(b.pkts + sent, b.n - sent);
    c_.txPackets += sent;
    c_.txBytes += bytes;
    b.n = 0;
  }

  void flushAll() {
    for (uint16_t port = 0; port < RTE_MAX_ETHPORTS; ++port)
      if (tx_[port].n != 0) flush(port);
  }

  void drop(rte_mbuf* m, DropReason r) {
    c_.drop(r);
    rte_pktmbuf_free(m);
  }

  struct ResolveSlot {
    uint32_t ip = 0;
    uint32_t ms = 0;
  };

  WorkerContext& ctx_;
  WorkerCounters& c_;
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
