// Verdict: what the per-packet core decided for one packet of a burst. The
// DPDK adapter acts on it (transmit, answer locally, pass to the control
// thread, hand to the owning worker, or free and count).
#pragma once

#include <cstdint>

#include "strait/drop_reason.h"

namespace strait {

enum class Action : uint8_t {
  kForward = 0,  // rewritten; route on the new destination and transmit
  kLocal,        // answered in place (ICMP echo reply): transmit back out the same way
  kToControl,    // ARP and other slow-path packets for the control thread
  kHandoff,      // belongs to a flow owned by another worker (worker id in `worker`)
  kDrop,         // free it; `reason` says why (already counted by the core)
};

struct Verdict {
  Action action = Action::kDrop;
  DropReason reason = DropReason::kNone;
  uint16_t worker = 0;
};

}  // namespace strait
