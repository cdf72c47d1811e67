// Control-path logging to stderr: one line per event, with a level filter
// (--log-level) and a format (--log-format). Messages are written as
// key=value fields starting with event=NAME ("event=reload file=... changes=2");
// a message that is not in that form is carried as msg="...".
//
//   text  2026-01-01T00:00:00.000Z level=info event=reload file=/etc/strait/strait.toml changes=2
//   json  {"ts":"2026-01-01T00:00:00.000Z","level":"info","event":"reload","file":"...","changes":"2"}
//
// Under systemd (JOURNAL_STREAM set) the text format drops its timestamp
// (the journal has one) and starts each line with the syslog priority
// ("<6>"), so `journalctl -p warning` works. Never used on the per-packet
// path; logs that traffic could trigger go through a LogLimiter.
#pragma once

#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace strait::controlplane {

enum class LogLevel : int { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };
enum class LogFormat : int { kText = 0, kJson = 1 };

// Parses "error|warn|info|debug"; throws std::invalid_argument otherwise.
LogLevel parseLogLevel(const std::string& s);
void setLogLevel(LogLevel l);
bool logEnabled(LogLevel l);
void setLogFormat(LogFormat f);
void logf(LogLevel l, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// A value for a key=value field: quoted, with '"' and '\\' escaped, when it
// contains anything but [A-Za-z0-9._:/@-]; as is otherwise.
std::string logValue(const std::string& v);

// The line logf writes for `msg` (exposed for tests); `journal` selects the
// journald form of the text format.
std::string formatLogLine(LogLevel l, const std::string& msg, LogFormat f, bool journal,
                          const std::string& timestamp);
// key=value fields of a message (values may be "quoted" with \" escapes);
// a message that does not start with a key=value field is {"msg", text}.
std::vector<std::pair<std::string, std::string>> logFields(const std::string& msg);

// At most `burst` lines per `interval`; the first line after a quiet
// spell reports how many were suppressed (suppressed=N). Thread-safe.
class LogLimiter {
 public:
  LogLimiter(uint32_t burst, std::chrono::milliseconds interval) : burst_(burst), interval_(interval) {}
  // True when a line may be written now; `suppressed` gets the count of
  // lines dropped since the last one written.
  bool allow(uint64_t* suppressed);

 private:
  std::mutex mu_;
  uint32_t burst_;
  std::chrono::milliseconds interval_;
  std::chrono::steady_clock::time_point windowStart_{};
  uint32_t inWindow_ = 0;
  uint64_t suppressed_ = 0;
};

}  // namespace strait::controlplane
