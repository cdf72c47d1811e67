// The straitd daemon: brings up DPDK (EAL, mempools, ports, rings, RCU),
// creates one NatCore per worker lcore, publishes the first snapshot,
// launches the workers, and then runs the control thread: ARP and
// neighbour resolution, reclamation of replaced snapshots after an RCU
// grace period, the control socket, health checks, DNS-named backends and
// the metrics endpoint. It implements Runtime for those services.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "controlplane/config.h"
#include "controlplane/runtime.h"

namespace strait::controlplane {

struct DaemonOptions {
  std::string controlSocket = "/run/strait/control.sock";
  std::string metricsListen = "127.0.0.1:9469";
};

class Daemon {
 public:
  Daemon(Config cfg, DaemonOptions opts);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Runs until `stop` becomes true. Returns the process exit status.
  // Throws std::runtime_error (with context) when start-up fails.
  int run(const std::atomic<bool>& stop);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strait::controlplane
