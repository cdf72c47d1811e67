// The contract between the control thread and one worker for control work
// that must read worker-owned state (flow dumps for `lbctl flows`; SNAT
// pool statistics need none: the control thread reads the occupancy each
// worker publishes in its PortAllocator, see dataplane/snat_pools.h). The
// control thread sends plain-data WorkerCommand messages through a
// single-producer single-consumer ring; the worker runs at most
// one command at a time as a cursor, advancing it by a bounded number of
// records per poll-loop iteration, writes results into a buffer the control
// thread allocated beforehand, and answers with a WorkerReply through a
// second SPSC ring once the command is done. Nothing on the worker side
// allocates, locks or throws, and the control thread frees a request's
// buffer only after the worker's reply for it has arrived (or after the
// worker has stopped): a request that timed out stays alive until then.
#pragma once

#include <cstdint>

#include "dataplane/flow_table.h"

struct rte_ring;

namespace strait::dataplane {

inline constexpr uint16_t kAnyService = 0xffff;

enum class CommandKind : uint32_t {
  kDumpFlows = 1,  // copy live flows (optionally of one service), byte for byte, into sizeof(Flow) slots
};

// Travels by value; `out` points at `capacity` entries of the result type,
// owned by the control thread until the reply for `id` comes back.
struct WorkerCommand {
  CommandKind kind;
  uint32_t id;
  uint32_t capacity;
  uint16_t serviceSlot;  // kDumpFlows: kAnyService or the one service to dump
  uint16_t pad;
  void* out;
};
static_assert(sizeof(WorkerCommand) % 4 == 0, "rte_ring elements are multiples of 4 bytes");

struct WorkerReply {
  uint32_t id;
  uint32_t count;  // entries written to the command's `out`
};
static_assert(sizeof(WorkerReply) % 4 == 0, "rte_ring elements are multiples of 4 bytes");

// Ring sizes (usable entries are one less). The control thread has at most
// one command in flight plus the timed-out ones, so a full command ring
// only means a worker that stopped answering.
inline constexpr unsigned kCommandRingSize = 64;

// The worker's end: the command in progress and its cursor. The worker
// loop calls step() once per iteration; while no worker runs, the control
// thread may call it itself.
class CommandRunner {
 public:
  // `commands` and `replies` are rings of WorkerCommand / WorkerReply
  // elements (rte_ring_create_elem, single producer and consumer).
  CommandRunner(rte_ring* commands, rte_ring* replies, const FlowTable* flows);

  // Takes the next command when idle, advances the current one over at
  // most `budget` records, and sends the reply once it is done. Returns
  // whether there was anything to do.
  bool step(uint32_t budget);

  bool busy() const { return active_; }

 private:
  bool finish();

  rte_ring* commands_;
  rte_ring* replies_;
  const FlowTable* flows_;
  bool active_ = false;
  bool done_ = false;  // the result is complete; only the reply is left to send
  WorkerCommand cmd_{};
  uint32_t cursor_ = 0;
  uint32_t count_ = 0;
};

}  // namespace strait::dataplane
