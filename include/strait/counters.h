// Per-worker counters. Each worker owns one WorkerCounters block and is its
// only writer, so the fields are plain uint64_t incremented without atomics;
// the control thread sums the blocks of all workers when it is scraped or
// asked by lbctl (aligned 64-bit loads are not torn on the platforms DPDK
// supports). Per-backend and per-service blocks are indexed by the stable
// slot the control plane assigns, so counters survive snapshot changes.
#pragma once

#include <array>
#include <cstdint>

#include "strait/drop_reason.h"
#include "strait/flow_state.h"

namespace strait {

inline constexpr uint32_t kMaxBackendSlots = 4096;
inline constexpr uint32_t kMaxServiceSlots = 256;
inline constexpr uint32_t kMaxWorkers = 64;

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
  uint64_t loops = 0;         // iterations of the poll loop
  uint64_t busyLoops = 0;     // iterations that received at least one packet
  uint64_t busyCycles = 0;    // TSC cycles spent in iterations that did work
  uint64_t totalCycles = 0;   // TSC cycles of all iterations
  uint64_t snapshotGeneration = 0;  // generation this worker last picked up
  std::array<uint64_t, kDropReasonCount> drops{};
  // Unassured flows recycled by early drop to make room for a new flow (a
  // full table or an exhausted SNAT pool), by the state they were in. Live
  // flows = created - expired - flushed - early dropped.
  std::array<uint64_t, kFlowStateCount> earlyDrops{};
  std::array<ServiceCounters, kMaxServiceSlots> services{};
  std::array<BackendCounters, kMaxBackendSlots> backends{};

  void drop(DropReason r) { ++drops[static_cast<std::size_t>(r)]; }
};

}  // namespace strait
