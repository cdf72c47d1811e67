// Unit tests for the log line formats (key=value text, JSON, journald
// priority prefix) and the rate limiter for logs that traffic can trigger.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <thread>

#include "controlplane/log.h"

namespace strait::controlplane {
namespace {

const std::string kTs = "2026-01-01T00:00:00.000Z";

TEST(Log, TextLinesAreKeyValue) {
  EXPECT_EQ(formatLogLine(LogLevel::kInfo, "event=reload file=/etc/strait/strait.toml changes=2", LogFormat::kText,
                          false, kTs),
            kTs + " level=info event=reload file=/etc/strait/strait.toml changes=2");
  EXPECT_EQ(formatLogLine(LogLevel::kWarn, "port p0: id 0 \"x\"", LogFormat::kText, false, kTs),
            kTs + " level=warn msg=\"port p0: id 0 \\\"x\\\"\"");
  EXPECT_EQ(formatLogLine(LogLevel::kError, "event=x", LogFormat::kText, true, kTs), "<3>level=error event=x");
  EXPECT_EQ(formatLogLine(LogLevel::kDebug, "event=x", LogFormat::kText, true, kTs), "<7>level=debug event=x");
}

TEST(Log, ValuesAreQuotedOnlyWhenNeeded) {
  EXPECT_EQ(logValue("/etc/strait/strait.toml"), "/etc/strait/strait.toml");
  EXPECT_EQ(logValue("no flow left"), "\"no flow left\"");
  EXPECT_EQ(logValue("a: \"x\""), "\"a: \\\"x\\\"\"");
  EXPECT_EQ(logValue(""), "\"\"");
  // What logValue writes, logFields reads back.
  const auto f = logFields("event=x reason=" + logValue("bad \"key\" here"));
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[1].second, "bad \"key\" here");
}

TEST(Log, JsonLinesParse) {
  const std::string line = formatLogLine(LogLevel::kError,
                                         "event=reload_refused file=/a.toml reason=\"bad \\\"key\\\"\" result=unchanged",
                                         LogFormat::kJson, false, kTs);
  const auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["ts"], kTs);
  EXPECT_EQ(j["level"], "error");
  EXPECT_EQ(j["event"], "reload_refused");
  EXPECT_EQ(j["reason"], "bad \"key\"");
  EXPECT_EQ(j["result"], "unchanged");
  const auto plain = nlohmann::json::parse(formatLogLine(LogLevel::kInfo, "EAL arguments: -l 0-1", LogFormat::kJson,
                                                         false, kTs));
  EXPECT_EQ(plain["msg"], "EAL arguments: -l 0-1");
  const auto unterminated = logFields("event=x reason=\"open");
  ASSERT_EQ(unterminated.size(), 1u);
  EXPECT_EQ(unterminated[0].first, "msg");
}

TEST(Log, LimiterAllowsABurstThenCountsSuppressed) {
  LogLimiter l(3, std::chrono::minutes(10));
  uint64_t suppressed = 99;
  int allowed = 0;
  for (int i = 0; i < 10; ++i) allowed += l.allow(&suppressed);
  EXPECT_EQ(allowed, 3);

  // After the interval the next line goes out and reports the dropped ones.
  LogLimiter s(1, std::chrono::milliseconds(500));
  ASSERT_TRUE(s.allow(&suppressed));
  EXPECT_EQ(suppressed, 0u);
  int dropped = 0;
  while (dropped < 5)
    if (!s.allow(nullptr)) ++dropped;
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  ASSERT_TRUE(s.allow(&suppressed));
  EXPECT_GE(suppressed, 5u);
}

}  // namespace
}  // namespace strait::controlplane
