// Control-path logging to stderr with a level filter (--log-level). Never
// used on the per-packet path.
#pragma once

#include <cstdarg>
#include <string>

namespace strait::controlplane {

enum class LogLevel : int { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

// Parses "error|warn|info|debug"; throws std::invalid_argument otherwise.
LogLevel parseLogLevel(const std::string& s);
void setLogLevel(LogLevel l);
bool logEnabled(LogLevel l);
void logf(LogLevel l, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace strait::controlplane
