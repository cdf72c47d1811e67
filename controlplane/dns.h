// DNS-named backends (for example the name of an AWS NLB, whose addresses
// change): each name is resolved for A records through a configurable
// resolver, re-resolved when the answer's TTL runs out (clamped to a
// minimum and maximum), and every change of the address set is reported to
// a listener that adds the new addresses as backends and drains the ones
// that disappeared. A failed lookup keeps the last good answer and retries
// after the minimum TTL, so a resolver outage never empties a service.
#pragma once

#include <netinet/in.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "controlplane/state.h"  // DnsTarget

namespace strait::controlplane {

struct DnsAnswer {
  std::vector<uint32_t> addresses;  // host order, sorted, unique
  uint32_t ttlS = 0;                // smallest TTL of the A records
};

// One A query to `server` (or the system resolver when nullopt), blocking
// up to `timeoutMs`. Throws std::runtime_error with the reason on failure
// (NXDOMAIN, timeout, no A records).
DnsAnswer resolveA(const std::string& name, const std::optional<sockaddr_in>& server, uint32_t timeoutMs = 2000);

// "IP" or "IP:PORT" (default port 53). Throws std::invalid_argument.
sockaddr_in parseResolver(const std::string& s);

class DnsWatcher {
 public:
  using Listener = std::function<void(const DnsTarget& target, const std::vector<uint32_t>& addresses)>;

  DnsWatcher(std::optional<sockaddr_in> server, uint32_t minTtlS, uint32_t maxTtlS, Listener onChange);
  ~DnsWatcher();
  DnsWatcher(const DnsWatcher&) = delete;
  DnsWatcher& operator=(const DnsWatcher&) = delete;

  // Replaces the watched names; names present before keep their schedule.
  void setTargets(std::vector<DnsTarget> targets);
  void start();
  void stop();

 private:
  using Key = std::tuple<std::string, std::string, uint16_t>;
  struct State {
    DnsTarget target;
    std::vector<uint32_t> addresses;
    bool resolved = false;
    uint64_t nextMs = 0;
  };
  void loop();

  std::optional<sockaddr_in> server_;
  uint32_t minTtlS_;
  uint32_t maxTtlS_;
  Listener onChange_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<Key, State> states_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace strait::controlplane
