// Health checks: non-blocking TCP connect / HTTP GET probes multiplexed
// with poll() on one thread, with rise/fall hysteresis per target.
#include "controlplane/health.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>

#include "strait/clock.h"
#include "controlplane/log.h"

namespace strait::controlplane {

namespace {


// One probe in flight: a small state machine driven by poll() events.
class Probe {
 public:
  enum class Result { kPending, kUp, kDown };

  explicit Probe(const HealthTarget& t) : t_(t) {}
  ~Probe() {
    if (fd_ >= 0) ::close(fd_);
  }
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;

  Result start(uint64_t now) {
    deadline_ = now + t_.check.timeoutMs;
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return fail(std::string("socket: ") + std::strerror(errno));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(t_.port);
    sa.sin_addr.s_addr = htonl(t_.ip);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) return connected();
    if (errno != EINPROGRESS) return fail(std::string("connect: ") + std::strerror(errno));
    phase_ = Phase::kConnecting;
    return Result::kPending;
  }

  short events() const { return phase_ == Phase::kReading ? POLLIN : POLLOUT; }
  int fd() const { return fd_; }
  uint64_t deadline() const { return deadline_; }
  const std::string& detail() const { return detail_; }

  Result onEvent(short revents) {
    if (phase_ == Phase::kConnecting) {
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) return fail(std::string("connect: ") + std::strerror(err));
      if (revents & (POLLERR | POLLHUP)) return fail("connect: connection failed");
      return connected();
    }
    if (phase_ == Phase::kSending) return sendMore();
    return readMore();
  }

  Result timeout() { return fail("timed out after " + std::to_string(t_.check.timeoutMs) + " ms"); }

 private:
  enum class Phase { kConnecting, kSending, kReading };

  Result fail(std::string why) {
    detail_ = std::move(why);
    return Result::kDown;
  }

  Result connected() {
    if (t_.check.type != "http") {
      detail_ = "tcp connect ok";
      return Result::kUp;
    }
    char addr[INET_ADDRSTRLEN];
    in_addr ia{htonl(t_.ip)};
    inet_ntop(AF_INET, &ia, addr, sizeof addr);
    std::string host = t_.check.httpHost.empty() ? std::string(addr) : t_.check.httpHost;
    request_ = "GET " + t_.check.httpPath + " HTTP/1.0\r\nHost: " + host +
               "\r\nUser-Agent: straitd-health\r\nConnection: close\r\n\r\n";
    phase_ = Phase::kSending;
    return sendMore();
  }

  Result sendMore() {
    while (sent_ < request_.size()) {
      ssize_t n = ::send(fd_, request_.data() + sent_, request_.size() - sent_, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return Result::kPending;
        return fail(std::string("send: ") + std::strerror(errno));
      }
      sent_ += static_cast<std::size_t>(n);
    }
    phase_ = Phase::kReading;
    return Result::kPending;
  }

  Result readMore() {
    char buf[512];
    bool closed = false;
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return fail(std::string("recv: ") + std::strerror(errno));
      }
      if (n == 0) {
        closed = true;
        break;
      }
      response_.append(buf, static_cast<std::size_t>(n));
      if (response_.size() > 4096) break;
    }
    auto eol = response_.find("\r\n");
    if (eol == std::string::npos) {
      if (response_.size() > 4096) return fail("no HTTP status line in the first 4 KiB");
      // A socket at EOF stays readable: waiting for more would spin in
      // poll() until the timeout and report the failure only then.
      if (closed)
        return fail(response_.empty() ? "connection closed without an HTTP response"
                                      : "connection closed in the middle of the HTTP status line");
      return Result::kPending;
    }
    // "HTTP/1.1 200 OK"
    std::string line = response_.substr(0, eol);
    auto sp = line.find(' ');
    if (line.rfind("HTTP/", 0) != 0 || sp == std::string::npos || line.size() < sp + 4)
      return fail("bad HTTP status line: " + line);
    int status = std::atoi(line.c_str() + sp + 1);
    if (status != t_.check.httpStatus)
      return fail("HTTP status " + std::to_string(status) + ", expected " +
                  std::to_string(t_.check.httpStatus));
    detail_ = "HTTP " + std::to_string(status);
    return Result::kUp;
  }

  HealthTarget t_;
  int fd_ = -1;
  Phase phase_ = Phase::kConnecting;
  uint64_t deadline_ = 0;
  std::string request_;
  std::size_t sent_ = 0;
  std::string response_;
  std::string detail_;
};

std::string describe(const HealthTarget& t) {
  char addr[INET_ADDRSTRLEN];
  in_addr ia{htonl(t.ip)};
  inet_ntop(AF_INET, &ia, addr, sizeof addr);
  return "service=" + t.service + " backend=" + addr + ":" + std::to_string(t.port);
}

}  // namespace

bool probeOnce(const HealthTarget& t, std::string* detail) {
  Probe p(t);
  Probe::Result r = p.start(steadyNowMs());
  while (r == Probe::Result::kPending) {
    uint64_t now = steadyNowMs();
    if (now >= p.deadline()) {
      r = p.timeout();
      break;
    }
    pollfd pfd{p.fd(), p.events(), 0};
    int rc = ::poll(&pfd, 1, static_cast<int>(p.deadline() - now));
    if (rc > 0) r = p.onEvent(pfd.revents);
  }
  if (detail) *detail = p.detail();
  return r == Probe::Result::kUp;
}

HealthChecker::HealthChecker(Listener onChange) : onChange_(std::move(onChange)) {}

HealthChecker::~HealthChecker() { stop(); }

void HealthChecker::setTargets(std::vector<HealthTarget> targets) {
  std::lock_guard lk(mu_);
  std::map<Key, State> next;
  uint64_t now = steadyNowMs();
  for (auto& t : targets) {
    if (t.check.type == "none") continue;
    Key k{t.service, t.ip, t.port};
    auto it = states_.find(k);
    if (it != states_.end()) {
      State s = it->second;
      s.target = t;
      next.emplace(k, std::move(s));
    } else {
      State s;
      s.target = t;
      s.nextMs = now;  // probe new targets at once
      next.emplace(k, std::move(s));
    }
  }
  states_ = std::move(next);
  cv_.notify_all();
}

bool HealthChecker::isUp(const std::string& service, uint32_t ip, uint16_t port) const {
  std::lock_guard lk(mu_);
  auto it = states_.find(Key{service, ip, port});
  return it == states_.end() || it->second.up;  // unknown targets are not checked
}

void HealthChecker::start() {
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { loop(); });
}

void HealthChecker::stop() {
  stop_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void HealthChecker::loop() {
  struct InFlight {
    Key key;
    std::unique_ptr<Probe> probe;
  };
  std::vector<InFlight> inflight;
  while (!stop_) {
    std::vector<std::tuple<std::string, uint32_t, uint16_t, bool>> changes;
    auto finish = [&](const Key& k, bool ok, const std::string& detail) {
      auto it = states_.find(k);
      if (it == states_.end()) return;  // target removed meanwhile
      State& s = it->second;
      if (ok) {
        s.failStreak = 0;
        ++s.okStreak;
        if ((!s.up || s.initial) && s.okStreak >= s.target.check.rise) {
          s.up = true;
          s.initial = false;
          changes.emplace_back(s.target.service, s.target.ip, s.target.port, true);
          logf(LogLevel::kInfo, "event=health_up %s detail=%s", describe(s.target).c_str(), logValue(detail).c_str());
        }
      } else {
        s.okStreak = 0;
        ++s.failStreak;
        if ((s.up || s.initial) && s.failStreak >= s.target.check.fall) {
          s.up = false;
          s.initial = false;
          changes.emplace_back(s.target.service, s.target.ip, s.target.port, false);
          logf(LogLevel::kWarn, "event=health_down %s detail=%s", describe(s.target).c_str(), logValue(detail).c_str());
        } else {
          logf(LogLevel::kDebug, "event=health_probe_failed %s detail=%s", describe(s.target).c_str(),
               logValue(detail).c_str());
        }
      }
    };

    uint64_t now = steadyNowMs();
    uint64_t nextDue = now + 200;
    {
      std::lock_guard lk(mu_);
      for (auto& [k, s] : states_) {
        bool busy = false;
        for (const auto& f : inflight)
          if (f.key == k) busy = true;
        if (busy) continue;
        if (s.nextMs <= now) {
          s.nextMs = now + s.target.check.intervalMs;
          auto p = std::make_unique<Probe>(s.target);
          Probe::Result r = p->start(now);
          if (r == Probe::Result::kPending)
            inflight.push_back({k, std::move(p)});
          else
            finish(k, r == Probe::Result::kUp, p->detail());
        }
        nextDue = std::min(nextDue, s.nextMs);
      }
    }

    std::vector<pollfd> pfds;
    for (const auto& f : inflight) {
      pfds.push_back({f.probe->fd(), f.probe->events(), 0});
      nextDue = std::min(nextDue, f.probe->deadline());
    }
    int waitMs = nextDue > now ? static_cast<int>(std::min<uint64_t>(nextDue - now, 200)) : 0;
    if (pfds.empty()) {
      std::unique_lock lk(mu_);
      cv_.wait_for(lk, std::chrono::milliseconds(waitMs), [this] { return stop_.load(); });
    } else {
      ::poll(pfds.data(), pfds.size(), waitMs);
    }

    now = steadyNowMs();
    {
      std::lock_guard lk(mu_);
      for (std::size_t i = 0; i < inflight.size();) {
        Probe::Result r = Probe::Result::kPending;
        if (i < pfds.size() && pfds[i].revents != 0) r = inflight[i].probe->onEvent(pfds[i].revents);
        if (r == Probe::Result::kPending && now >= inflight[i].probe->deadline())
          r = inflight[i].probe->timeout();
        if (r != Probe::Result::kPending) {
          finish(inflight[i].key, r == Probe::Result::kUp, inflight[i].probe->detail());
          inflight.erase(inflight.begin() + static_cast<long>(i));
          pfds.erase(pfds.begin() + static_cast<long>(i));
        } else {
          ++i;
        }
      }
    }
    // Report outside the lock: the listener republishes the snapshot.
    for (auto& [svc, ip, port, up] : changes) onChange_(svc, ip, port, up);
  }
}

}  // namespace strait::controlplane
