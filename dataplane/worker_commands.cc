// The worker's end of the command ring (see worker_commands.h). A dump
// stops at the first of: the buffer is full, the record array is done. The
// reply is retried on the next iteration if the reply ring is full, so a
// slow control thread never makes the worker wait.
#include "dataplane/worker_commands.h"

#include <cstddef>
#include <cstring>

#include <rte_ring.h>
#include <rte_ring_elem.h>

namespace strait::dataplane {

CommandRunner::CommandRunner(rte_ring* commands, rte_ring* replies, const FlowTable* flows)
    : commands_(commands), replies_(replies), flows_(flows) {}

bool CommandRunner::step(uint32_t budget) {
  if (!active_) {
    if (commands_ == nullptr || rte_ring_sc_dequeue_elem(commands_, &cmd_, sizeof cmd_) != 0) return false;
    active_ = true;
    done_ = false;
    cursor_ = 0;
    count_ = 0;
  }
  if (done_) return finish();

  switch (cmd_.kind) {
    case CommandKind::kDumpFlows: {
      // Copied byte for byte: the caller's buffer need not have a record's
      // cache-line alignment.
      auto* out = static_cast<std::byte*>(cmd_.out);
      cursor_ = flows_->scan(cursor_, budget, [&](uint32_t, const Flow& f) {
        if (count_ >= cmd_.capacity) return false;
        if (cmd_.serviceSlot == kAnyService || f.serviceSlot == cmd_.serviceSlot)
          std::memcpy(out + std::size_t{count_++} * sizeof(Flow), &f, sizeof(Flow));
        return true;
      });
      done_ = cursor_ >= flows_->capacity() || count_ >= cmd_.capacity;
      break;
    }
    default:
      done_ = true;  // unknown kind: answer with nothing rather than leave the caller waiting
      break;
  }
  if (done_) finish();
  return true;
}

bool CommandRunner::finish() {
  WorkerReply r{cmd_.id, count_};
  if (replies_ == nullptr || rte_ring_sp_enqueue_elem(replies_, &r, sizeof r) == 0) active_ = false;
  return true;
}

}  // namespace strait::dataplane
