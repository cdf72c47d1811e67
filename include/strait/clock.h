// The monotonic clock in milliseconds of the control thread's timers (the
// health checker, the DNS watcher, and the ARP slow path the dataplane
// host runs), shared by both sides.
#pragma once

#include <chrono>
#include <cstdint>

namespace strait {

inline uint64_t steadyNowMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

}  // namespace strait
