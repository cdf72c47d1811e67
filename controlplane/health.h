// Backend health checks through the kernel's network stack (on EC2 the
// management ENI; in tests a management veth): TCP connect, or HTTP GET
// with an expected status, each with interval, timeout, rise and fall. All
// probes run on one thread, multiplexed with poll(), so a thousand
// backends with a 1 s timeout do not serialise into a thousand seconds.
// State changes are reported to a listener, which updates the LB state and
// republishes the Maglev tables.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "controlplane/config.h"
#include "controlplane/state.h"  // HealthTarget

namespace strait::controlplane {

class HealthChecker {
 public:
  using Listener = std::function<void(const std::string& service, uint32_t ip, uint16_t port, bool up)>;

  explicit HealthChecker(Listener onChange);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Replaces the set of targets; targets present before keep their state.
  // A new target starts `initial` (not up): its first `rise` passing
  // probes report it up, its first `fall` failing ones report it down.
  void setTargets(std::vector<HealthTarget> targets);
  void start();
  void stop();

  // Current view (for tests and lbctl): up flag per target.
  bool isUp(const std::string& service, uint32_t ip, uint16_t port) const;

 private:
  using Key = std::tuple<std::string, uint32_t, uint16_t>;
  struct State {
    HealthTarget target;
    bool up = false;
    bool initial = true;
    uint32_t okStreak = 0;
    uint32_t failStreak = 0;
    uint64_t nextMs = 0;
  };
  void loop();

  Listener onChange_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<Key, State> states_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// One probe, blocking up to the check's timeout (tests and diagnostics).
// Returns true when healthy; `detail` says what happened.
bool probeOnce(const HealthTarget& t, std::string* detail);

}  // namespace strait::controlplane
