// The control plane's monotonic clock in milliseconds (timers of the
// health checker, the DNS watcher and the ARP slow path).
#pragma once

#include <chrono>
#include <cstdint>

namespace strait::controlplane {

inline uint64_t steadyNowMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

}  // namespace strait::controlplane
