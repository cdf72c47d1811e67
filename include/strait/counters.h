// Per-worker counters. Each worker owns one WorkerCounters block and is its
// only writer; the control thread (and the metrics thread) read the blocks
// of all workers while the workers run. To be race free by the C++ memory
// model without paying for read-modify-write atomics, every access to a
// live block goes through std::atomic_ref with relaxed order: the owner
// updates a field with bump() (a relaxed load, a plain add, a relaxed
// store: the same mov/add/mov as `++x` on x86, no lock prefix, since there
// is one writer) and other threads copy a block with readCounters(). Copies
// are private to their reader and are read as plain fields. Per-backend and
// per-service blocks are indexed by the stable slot the control plane
// assigns, so counters survive snapshot changes.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "strait/drop_reason.h"
#include "strait/flow_state.h"

namespace strait {

inline constexpr uint32_t kMaxBackendSlots = 4096;
inline constexpr uint32_t kMaxServiceSlots = 256;
inline constexpr uint32_t kMaxWorkers = 64;

// Single-writer update of a counter another thread may read concurrently.
inline void bump(uint64_t& c, uint64_t n = 1) noexcept {
  std::atomic_ref<uint64_t> r(c);
  r.store(r.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
// Single-writer store (gauges such as the picked-up snapshot generation).
inline void store(uint64_t& c, uint64_t v) noexcept {
  std::atomic_ref<uint64_t>(c).store(v, std::memory_order_relaxed);
}
// Reads a counter its owner may be updating (any thread).
inline uint64_t peek(const uint64_t& c) noexcept {
  // atomic_ref<const T> is C++26; the object itself is not const.
  return std::atomic_ref<uint64_t>(const_cast<uint64_t&>(c)).load(std::memory_order_relaxed);
}

// Upper bounds (microseconds) of the worker-loop iteration histogram; one
// more bucket counts everything slower. Chosen around the 50 us a single
// iteration may take before an RX ring of 1024 descriptors at 10+ Mpps
// starts to overflow.
inline constexpr std::array<uint32_t, 10> kLoopBucketsUs{1, 5, 10, 25, 50, 100, 250, 1000, 10000, 100000};
inline constexpr std::size_t kLoopBucketCount = kLoopBucketsUs.size() + 1;

struct BackendCounters {
  uint64_t packets = 0;       // both directions
  uint64_t bytes = 0;         // both directions
  uint64_t flowsCreated = 0;  // flows ever created to this backend by this worker
  uint64_t flowsClosed = 0;   // flows freed (expired, flushed); active = created - closed
};

struct ServiceCounters {
  uint64_t packets = 0;
  uint64_t bytes = 0;
  uint64_t flowsCreated = 0;
  uint64_t flowsClosed = 0;
};

struct alignas(64) WorkerCounters {
  uint64_t rxPackets = 0;
  uint64_t rxBytes = 0;
  uint64_t txPackets = 0;
  uint64_t txBytes = 0;
  uint64_t flowsCreated = 0;
  uint64_t flowsExpired = 0;
  uint64_t flowsFlushed = 0;
  uint64_t handoffOut = 0;    // packets this worker passed to the owner of their flow
  uint64_t handoffIn = 0;     // packets other workers passed to this one
  uint64_t toControl = 0;     // packets passed to the control thread (ARP)
  uint64_t icmpErrorsTranslated = 0;
  uint64_t icmpEchoReplies = 0;
  uint64_t mssClamped = 0;
  uint64_t tcpSynIgnored = 0;  // client SYNs let through on a synchronized flow without changing it
  uint64_t tcpResynced = 0;    // ... that the backend then confirmed with its SYN-ACK (tracking restarted)
  uint64_t synCookiesSent = 0;       // SYNs answered with a cookie SYN-ACK
  uint64_t synCookiesValid = 0;      // cookie ACKs accepted (a flow opened); rejects are drop reasons
  uint64_t synProxyAckData = 0;      // accepted cookie ACKs whose payload was dropped (client resends)
  uint64_t synProxySynResent = 0;    // SYNs to backends sent again on a client's zero-window probe
  uint64_t synProxyNoMbuf = 0;       // window updates to clients not sent: no mbuf (client probes instead)
  uint64_t synCookieModeEntered = 0; // times this worker switched to cookie mode (syn_proxy = "auto")
  uint64_t proxyHeaders = 0;         // PROXY protocol headers sent to backends (first and repeats)
  uint64_t synCookieMode = 0;        // gauge: 1 while this worker answers "auto" services with cookies
  uint64_t loops = 0;         // iterations of the poll loop
  uint64_t busyLoops = 0;     // iterations that received at least one packet
  uint64_t busyCycles = 0;    // TSC cycles spent in iterations that did work
  uint64_t totalCycles = 0;   // TSC cycles of all iterations
  uint64_t snapshotGeneration = 0;  // generation this worker last picked up
  // Longest iteration (TSC cycles) since the control thread last asked for
  // it (WorkerContext::loopMaxEpoch); a gauge, not summed over workers.
  uint64_t loopMaxCycles = 0;
  // Iterations by duration: loopBuckets[i] counts those of at most
  // kLoopBucketsUs[i] (and more than the bucket below); the last, the rest.
  std::array<uint64_t, kLoopBucketCount> loopBuckets{};
  std::array<uint64_t, kDropReasonCount> drops{};
  // Unassured flows recycled by early drop to make room for a new flow (a
  // full table or an exhausted SNAT pool), by the state they were in. Live
  // flows = created - expired - flushed - early dropped.
  std::array<uint64_t, kFlowStateCount> earlyDrops{};
  std::array<ServiceCounters, kMaxServiceSlots> services{};
  std::array<BackendCounters, kMaxBackendSlots> backends{};

  void drop(DropReason r) { bump(drops[static_cast<std::size_t>(r)]); }
};

// Calls f(a.x, b.x) for every summable field x of two blocks (everything
// but the gauges snapshotGeneration and loopMaxCycles), in one place so
// that sums and copies cannot forget a field.
template <class A, class B, class F>
void forEachCounter(A& a, B& b, F&& f) {
  f(a.rxPackets, b.rxPackets);
  f(a.rxBytes, b.rxBytes);
  f(a.txPackets, b.txPackets);
  f(a.txBytes, b.txBytes);
  f(a.flowsCreated, b.flowsCreated);
  f(a.flowsExpired, b.flowsExpired);
  f(a.flowsFlushed, b.flowsFlushed);
  f(a.handoffOut, b.handoffOut);
  f(a.handoffIn, b.handoffIn);
  f(a.toControl, b.toControl);
  f(a.icmpErrorsTranslated, b.icmpErrorsTranslated);
  f(a.icmpEchoReplies, b.icmpEchoReplies);
  f(a.mssClamped, b.mssClamped);
  f(a.tcpSynIgnored, b.tcpSynIgnored);
  f(a.tcpResynced, b.tcpResynced);
  f(a.synCookiesSent, b.synCookiesSent);
  f(a.synCookiesValid, b.synCookiesValid);
  f(a.synProxyAckData, b.synProxyAckData);
  f(a.synProxySynResent, b.synProxySynResent);
  f(a.synProxyNoMbuf, b.synProxyNoMbuf);
  f(a.synCookieModeEntered, b.synCookieModeEntered);
  f(a.proxyHeaders, b.proxyHeaders);
  f(a.synCookieMode, b.synCookieMode);  // a 0/1 gauge per worker; summed: workers in cookie mode
  f(a.loops, b.loops);
  f(a.busyLoops, b.busyLoops);
  f(a.busyCycles, b.busyCycles);
  f(a.totalCycles, b.totalCycles);
  for (std::size_t i = 0; i < kLoopBucketCount; ++i) f(a.loopBuckets[i], b.loopBuckets[i]);
  for (std::size_t i = 0; i < kDropReasonCount; ++i) f(a.drops[i], b.drops[i]);
  for (std::size_t i = 0; i < kFlowStateCount; ++i) f(a.earlyDrops[i], b.earlyDrops[i]);
  for (std::size_t i = 0; i < kMaxServiceSlots; ++i) {
    f(a.services[i].packets, b.services[i].packets);
    f(a.services[i].bytes, b.services[i].bytes);
    f(a.services[i].flowsCreated, b.services[i].flowsCreated);
    f(a.services[i].flowsClosed, b.services[i].flowsClosed);
  }
  for (std::size_t i = 0; i < kMaxBackendSlots; ++i) {
    f(a.backends[i].packets, b.backends[i].packets);
    f(a.backends[i].bytes, b.backends[i].bytes);
    f(a.backends[i].flowsCreated, b.backends[i].flowsCreated);
    f(a.backends[i].flowsClosed, b.backends[i].flowsClosed);
  }
}

// A private copy of a live block, every field read with peek().
inline void readCounters(const WorkerCounters& live, WorkerCounters& out) {
  forEachCounter(out, live, [](uint64_t& o, const uint64_t& l) { o = peek(l); });
  out.snapshotGeneration = peek(live.snapshotGeneration);
  out.loopMaxCycles = peek(live.loopMaxCycles);
}

// Adds the counters of `c` (a private copy) into `into`; gauges take the max.
inline void addCounters(WorkerCounters& into, const WorkerCounters& c) {
  forEachCounter(into, c, [](uint64_t& a, const uint64_t& b) { a += b; });
  if (c.snapshotGeneration > into.snapshotGeneration) into.snapshotGeneration = c.snapshotGeneration;
  if (c.loopMaxCycles > into.loopMaxCycles) into.loopMaxCycles = c.loopMaxCycles;
}

}  // namespace strait
