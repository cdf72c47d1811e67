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

// What the signal handlers tell the control thread: counts, so a second
// SIGTERM is told apart from the first.
struct DaemonSignals {
  std::atomic<unsigned> term{0};  // SIGTERM, SIGINT
  std::atomic<unsigned> hup{0};   // SIGHUP: reload the configuration file
};

class Daemon {
 public:
  Daemon(Config cfg, DaemonOptions opts);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Runs until stopped: the first SIGTERM (or `lbctl drain`) starts a
  // drain (the instance health endpoint fails, forwarding continues) that
  // ends after instance.shutdown_drain_s or when no flow is left; a second
  // SIGTERM ends it at once. SIGHUP reloads the configuration file.
  // Returns the process exit status. Throws std::runtime_error (with
  // context) when start-up fails.
  int run(const DaemonSignals& signals);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strait::controlplane
