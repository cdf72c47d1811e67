// Control-path logging: timestamped lines on stderr, filtered by level.
#include "controlplane/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <stdexcept>

namespace strait::controlplane {

namespace {
std::atomic<int> gLevel{static_cast<int>(LogLevel::kInfo)};
constexpr const char* kNames[] = {"error", "warn", "info", "debug"};
}  // namespace

LogLevel parseLogLevel(const std::string& s) {
  for (int i = 0; i < 4; ++i)
    if (s == kNames[i]) return static_cast<LogLevel>(i);
  throw std::invalid_argument("unknown log level '" + s + "' (error, warn, info, debug)");
}

void setLogLevel(LogLevel l) { gLevel.store(static_cast<int>(l), std::memory_order_relaxed); }

bool logEnabled(LogLevel l) { return static_cast<int>(l) <= gLevel.load(std::memory_order_relaxed); }

void logf(LogLevel l, const char* fmt, ...) {
  if (!logEnabled(l)) return;
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[32];
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "%s.%03dZ straitd %s: %s\n", ts, static_cast<int>(ms), kNames[static_cast<int>(l)], msg);
}

}  // namespace strait::controlplane
