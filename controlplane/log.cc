// Control-path logging: key=value or JSON lines on stderr, filtered by
// level; see log.h.
#include "controlplane/log.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <stdexcept>

namespace strait::controlplane {

namespace {
std::atomic<int> gLevel{static_cast<int>(LogLevel::kInfo)};
std::atomic<int> gFormat{static_cast<int>(LogFormat::kText)};
constexpr const char* kNames[] = {"error", "warn", "info", "debug"};
constexpr int kSyslogPriority[] = {3, 4, 6, 7};

bool keyChar(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.'; }

std::string jsonString(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += static_cast<char>(c);
    } else if (c < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else {
      o += static_cast<char>(c);
    }
  }
  return o + "\"";
}

std::string quoteValue(const std::string& v) {
  std::string o = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') o += '\\';
    o += c == '\n' ? ' ' : c;
  }
  return o + "\"";
}
}  // namespace

std::string logValue(const std::string& v) {
  const bool plain = !v.empty() && std::all_of(v.begin(), v.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == ':' || c == '/' || c == '@' || c == '-';
  });
  return plain ? v : quoteValue(v);
}

LogLevel parseLogLevel(const std::string& s) {
  for (int i = 0; i < 4; ++i)
    if (s == kNames[i]) return static_cast<LogLevel>(i);
  throw std::invalid_argument("unknown log level '" + s + "' (error, warn, info, debug)");
}

void setLogLevel(LogLevel l) { gLevel.store(static_cast<int>(l), std::memory_order_relaxed); }
void setLogFormat(LogFormat f) { gFormat.store(static_cast<int>(f), std::memory_order_relaxed); }

bool logEnabled(LogLevel l) { return static_cast<int>(l) <= gLevel.load(std::memory_order_relaxed); }

std::vector<std::pair<std::string, std::string>> logFields(const std::string& msg) {
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t i = 0;
  while (i < msg.size()) {
    while (i < msg.size() && msg[i] == ' ') ++i;
    if (i >= msg.size()) break;
    std::size_t k = i;
    while (k < msg.size() && keyChar(msg[k])) ++k;
    if (k == i || k >= msg.size() || msg[k] != '=') return {{"msg", msg}};
    std::string key = msg.substr(i, k - i), value;
    i = k + 1;
    if (i < msg.size() && msg[i] == '"') {
      ++i;
      while (i < msg.size() && msg[i] != '"') {
        if (msg[i] == '\\' && i + 1 < msg.size()) ++i;
        value += msg[i++];
      }
      if (i >= msg.size()) return {{"msg", msg}};
      ++i;
    } else {
      while (i < msg.size() && msg[i] != ' ') value += msg[i++];
    }
    out.emplace_back(std::move(key), std::move(value));
  }
  if (out.empty()) return {{"msg", msg}};
  return out;
}

std::string formatLogLine(LogLevel l, const std::string& msg, LogFormat f, bool journal,
                          const std::string& timestamp) {
  const auto fields = logFields(msg);
  const char* level = kNames[static_cast<int>(l)];
  if (f == LogFormat::kJson) {
    std::string o = "{\"ts\":" + jsonString(timestamp) + ",\"level\":" + jsonString(level);
    for (const auto& [k, v] : fields) o += "," + jsonString(k) + ":" + jsonString(v);
    return o + "}";
  }
  std::string o;
  if (journal) {
    o = "<" + std::to_string(kSyslogPriority[static_cast<int>(l)]) + ">";
  } else {
    o = timestamp + " ";
  }
  o += "level=";
  o += level;
  if (fields.size() == 1 && fields[0].first == "msg" && fields[0].second == msg) return o + " msg=" + quoteValue(msg);
  return o + " " + msg;
}

void logf(LogLevel l, const char* fmt, ...) {
  if (!logEnabled(l)) return;
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[40];
  const std::size_t n = std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(ts + n, sizeof ts - n, ".%03dZ", static_cast<int>(ms));
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  static const bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
  const std::string line =
      formatLogLine(l, msg, static_cast<LogFormat>(gFormat.load(std::memory_order_relaxed)), journal, ts) + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);  // one write per line: lines from threads do not interleave
}

bool LogLimiter::allow(uint64_t* suppressed) {
  std::lock_guard lk(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (now - windowStart_ >= interval_) {
    windowStart_ = now;
    inWindow_ = 0;
  }
  if (inWindow_ >= burst_) {
    ++suppressed_;
    return false;
  }
  ++inWindow_;
  if (suppressed) *suppressed = suppressed_;
  suppressed_ = 0;
  return true;
}

}  // namespace strait::controlplane
