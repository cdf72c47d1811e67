// DNS-named backends: A lookups with TTLs through glibc's resolver
// library (res_nquery + ns_parserr), pointed at the configured server, and
// a watcher thread that re-resolves on TTL expiry.
#include "controlplane/dns.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <resolv.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "strait/clock.h"
#include "controlplane/log.h"

namespace strait::controlplane {

sockaddr_in parseResolver(const std::string& s) {
  std::string host = s;
  uint16_t port = 53;
  auto colon = s.rfind(':');
  if (colon != std::string::npos) {
    host = s.substr(0, colon);
    std::string p = s.substr(colon + 1);
    if (p.empty() || p.size() > 5 || !std::all_of(p.begin(), p.end(), ::isdigit) || std::stoi(p) < 1 ||
        std::stoi(p) > 65535)
      throw std::invalid_argument("bad resolver port in '" + s + "'");
    port = static_cast<uint16_t>(std::stoi(p));
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1)
    throw std::invalid_argument("resolver '" + s + "' is not an IPv4 address[:port]");
  return sa;
}

DnsAnswer resolveA(const std::string& name, const std::optional<sockaddr_in>& server, uint32_t timeoutMs) {
  struct __res_state st;
  std::memset(&st, 0, sizeof st);
  if (res_ninit(&st) != 0) throw std::runtime_error("resolver initialisation failed");
  if (server) {
    st.nscount = 1;
    st.nsaddr_list[0] = *server;
  }
  st.retrans = static_cast<int>(std::max<uint32_t>(1, (timeoutMs + 999) / 1000));
  st.retry = 1;
  st.options &= ~(RES_DNSRCH | RES_DEFNAMES);  // names are taken as written
  unsigned char buf[4096];
  int len = res_nquery(&st, name.c_str(), ns_c_in, ns_t_a, buf, sizeof buf);
  int herr = st.res_h_errno;
  res_nclose(&st);
  if (len < 0) {
    const char* why = herr == HOST_NOT_FOUND ? "no such name (NXDOMAIN)"
                      : herr == NO_DATA      ? "no A records"
                      : herr == TRY_AGAIN    ? "no answer from the resolver (timeout or SERVFAIL)"
                                             : "lookup failed";
    throw std::runtime_error(name + ": " + why);
  }
  ns_msg msg;
  if (ns_initparse(buf, len, &msg) != 0) throw std::runtime_error(name + ": malformed DNS answer");
  DnsAnswer a;
  uint32_t minTtl = UINT32_MAX;
  int count = ns_msg_count(msg, ns_s_an);
  for (int i = 0; i < count; ++i) {
    ns_rr rr;
    if (ns_parserr(&msg, ns_s_an, i, &rr) != 0) continue;
    if (ns_rr_type(rr) != ns_t_a || ns_rr_rdlen(rr) != 4) continue;
    uint32_t ip;
    std::memcpy(&ip, ns_rr_rdata(rr), 4);
    a.addresses.push_back(ntohl(ip));
    minTtl = std::min<uint32_t>(minTtl, ns_rr_ttl(rr));
  }
  if (a.addresses.empty()) throw std::runtime_error(name + ": no A records");
  std::sort(a.addresses.begin(), a.addresses.end());
  a.addresses.erase(std::unique(a.addresses.begin(), a.addresses.end()), a.addresses.end());
  a.ttlS = minTtl;
  return a;
}

DnsWatcher::DnsWatcher(std::optional<sockaddr_in> server, uint32_t minTtlS, uint32_t maxTtlS, Listener onChange)
    : server_(server), minTtlS_(minTtlS), maxTtlS_(maxTtlS), onChange_(std::move(onChange)) {}

DnsWatcher::~DnsWatcher() { stop(); }

void DnsWatcher::setTargets(std::vector<DnsTarget> targets) {
  std::lock_guard lk(mu_);
  std::map<Key, State> next;
  for (auto& t : targets) {
    Key k{t.service, t.name, t.port};
    auto it = states_.find(k);
    State s = it != states_.end() ? it->second : State{};
    if (it == states_.end()) s.nextMs = 0;
    s.target = t;
    next.emplace(k, std::move(s));
  }
  states_ = std::move(next);
  cv_.notify_all();
}

void DnsWatcher::start() {
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { loop(); });
}

void DnsWatcher::stop() {
  stop_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void DnsWatcher::loop() {
  std::unique_lock lk(mu_);
  while (!stop_) {
    uint64_t now = steadyNowMs();
    uint64_t nextDue = now + 1000;
    std::vector<Key> due;
    for (auto& [k, s] : states_) {
      if (s.nextMs <= now)
        due.push_back(k);
      else
        nextDue = std::min(nextDue, s.nextMs);
    }
    for (const Key& k : due) {
      auto it = states_.find(k);
      if (it == states_.end()) continue;
      DnsTarget t = it->second.target;
      lk.unlock();  // lookups block: never hold the lock across them
      std::optional<DnsAnswer> ans;
      std::string err;
      try {
        ans = resolveA(t.name, server_);
      } catch (const std::exception& e) {
        err = e.what();
      }
      lk.lock();
      it = states_.find(k);
      if (it == states_.end()) continue;
      State& s = it->second;
      now = steadyNowMs();
      if (!ans) {
        logf(LogLevel::kWarn, "event=dns_lookup_failed service=%s name=%s reason=%s kept_addresses=%zu retry_s=%u",
             t.service.c_str(), t.name.c_str(), logValue(err).c_str(), s.addresses.size(), minTtlS_);
        s.nextMs = now + uint64_t(minTtlS_) * 1000;
        continue;
      }
      uint32_t ttl = std::clamp(ans->ttlS, minTtlS_, maxTtlS_);
      s.nextMs = now + uint64_t(ttl) * 1000;
      if (!s.resolved || ans->addresses != s.addresses) {
        s.addresses = ans->addresses;
        s.resolved = true;
        logf(LogLevel::kInfo, "event=dns_answer service=%s name=%s addresses=%zu ttl_s=%u next_lookup_s=%u",
             t.service.c_str(), t.name.c_str(), s.addresses.size(), ans->ttlS, ttl);
        std::vector<uint32_t> addrs = s.addresses;
        lk.unlock();
        onChange_(t, addrs);
        lk.lock();
      }
    }
    now = steadyNowMs();
    for (auto& [k, s] : states_) nextDue = std::min(nextDue, std::max(s.nextMs, now));
    cv_.wait_for(lk, std::chrono::milliseconds(nextDue > now ? nextDue - now : 0), [this] { return stop_.load(); });
  }
}

}  // namespace strait::controlplane
