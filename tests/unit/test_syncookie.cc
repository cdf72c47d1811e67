// SYN cookies with an injected clock: a cookie checks in its own period and
// the next, is stale from two periods on and forged for any other tuple,
// client ISN, key or bit pattern; every MSS bucket round-trips; the period
// counter survives the wrap of the 32-bit millisecond clock; the option
// bits carried in the timestamp decode back and malformed ones are refused.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>

#include "dataplane/syncookie.h"

namespace sd = strait::dataplane;
using sd::CookieCheck;
using sd::CookieTuple;
using sd::SynCookies;

namespace {

constexpr uint32_t kPeriod = 65536;
const sd::SipKey kKey{0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};
const CookieTuple kTuple{0x0264330au, 0x0a0200c0u, 0x2050u, 0x5000u};  // arbitrary network-order values

CookieCheck check(const SynCookies& c, const CookieTuple& t, uint32_t isn, uint32_t cookie, uint32_t now,
                  uint16_t* mssOut = nullptr) {
  uint16_t mss = 0;
  const CookieCheck r = c.check(t, isn, cookie, now, mss);
  if (mssOut) *mssOut = mss;
  return r;
}

TEST(SynCookie, ValidInItsPeriodAndTheNext) {
  SynCookies c(kKey, kPeriod);
  const uint32_t made = 5 * kPeriod + 100;
  const uint32_t cookie = c.make(kTuple, 1000, 1460, made);
  uint16_t mss = 0;
  EXPECT_EQ(check(c, kTuple, 1000, cookie, made, &mss), CookieCheck::kValid);
  EXPECT_EQ(mss, 1460);
  EXPECT_EQ(check(c, kTuple, 1000, cookie, 6 * kPeriod - 1), CookieCheck::kValid);
  // The next period: the "previous secret" is still accepted.
  EXPECT_EQ(check(c, kTuple, 1000, cookie, 6 * kPeriod), CookieCheck::kValid);
  EXPECT_EQ(check(c, kTuple, 1000, cookie, 7 * kPeriod - 1), CookieCheck::kValid);
}

TEST(SynCookie, StaleFromTwoPeriodsOn) {
  SynCookies c(kKey, kPeriod);
  const uint32_t made = 5 * kPeriod + 100;
  const uint32_t cookie = c.make(kTuple, 1000, 1460, made);
  for (uint32_t age = 2; age <= 7; ++age)
    EXPECT_EQ(check(c, kTuple, 1000, cookie, made + age * kPeriod), CookieCheck::kStale) << age;
  // Eight periods on, the 3-bit counter has wrapped: no longer recognisable.
  EXPECT_EQ(check(c, kTuple, 1000, cookie, made + 8 * kPeriod), CookieCheck::kInvalid);
  // A cookie from the future (clock went back) is not accepted either.
  EXPECT_NE(check(c, kTuple, 1000, cookie, made - kPeriod), CookieCheck::kValid);
}

TEST(SynCookie, BoundToTupleIsnAndKey) {
  SynCookies c(kKey, kPeriod);
  const uint32_t now = 3 * kPeriod;
  const uint32_t cookie = c.make(kTuple, 1000, 1460, now);
  CookieTuple t = kTuple;
  t.clientIp ^= 1;
  EXPECT_EQ(check(c, t, 1000, cookie, now), CookieCheck::kInvalid);
  t = kTuple;
  t.vip ^= 0x100;
  EXPECT_EQ(check(c, t, 1000, cookie, now), CookieCheck::kInvalid);
  t = kTuple;
  t.clientPort ^= 1;
  EXPECT_EQ(check(c, t, 1000, cookie, now), CookieCheck::kInvalid);
  t = kTuple;
  t.vipPort ^= 1;
  EXPECT_EQ(check(c, t, 1000, cookie, now), CookieCheck::kInvalid);
  EXPECT_EQ(check(c, kTuple, 1001, cookie, now), CookieCheck::kInvalid);
  SynCookies other(sd::SipKey{kKey.k0 ^ 1, kKey.k1}, kPeriod);
  EXPECT_EQ(check(other, kTuple, 1000, cookie, now), CookieCheck::kInvalid);
}

TEST(SynCookie, EveryFlippedBitIsRefused) {
  SynCookies c(kKey, kPeriod);
  const uint32_t now = 9 * kPeriod + 7;
  const uint32_t cookie = c.make(kTuple, 0xfffffff0u, 1440, now);
  ASSERT_EQ(check(c, kTuple, 0xfffffff0u, cookie, now), CookieCheck::kValid);
  for (int b = 0; b < 32; ++b)
    EXPECT_NE(check(c, kTuple, 0xfffffff0u, cookie ^ (1u << b), now), CookieCheck::kValid) << "bit " << b;
}

TEST(SynCookie, RandomForgeriesAlmostNeverPass) {
  // 27 bits of MAC: 2^-27 per guess, and only 2 of the 8 period values
  // are accepted. 200,000 random guesses should all fail.
  SynCookies c(kKey, kPeriod);
  std::mt19937 rng(42);
  int accepted = 0;
  for (int i = 0; i < 200000; ++i)
    if (check(c, kTuple, 1000, static_cast<uint32_t>(rng()), 4 * kPeriod) == CookieCheck::kValid) ++accepted;
  EXPECT_EQ(accepted, 0);
}

TEST(SynCookie, EveryMssBucket) {
  SynCookies c(kKey, kPeriod);
  struct Case {
    uint16_t in;
    uint16_t out;
  };
  const Case cases[] = {{0, 536},      {100, 536},   {536, 536},   {1299, 536},  {1300, 1300},
                        {1439, 1300},  {1440, 1440}, {1459, 1440}, {1460, 1460}, {8960, 1460},
                        {65535, 1460}};
  for (const Case& k : cases) {
    const uint32_t cookie = c.make(kTuple, 77, k.in, 1000);
    uint16_t mss = 0;
    ASSERT_EQ(check(c, kTuple, 77, cookie, 1000, &mss), CookieCheck::kValid) << k.in;
    EXPECT_EQ(mss, k.out) << k.in;
    EXPECT_EQ(sd::kCookieMss[sd::cookieMssIndex(k.in)], k.out);
  }
}

TEST(SynCookie, PeriodSurvivesClockWrap) {
  SynCookies c(kKey, kPeriod);
  const uint32_t made = 0xffffffffu - 10;  // last period before the 32-bit clock wraps
  const uint32_t cookie = c.make(kTuple, 5, 1460, made);
  EXPECT_EQ(check(c, kTuple, 5, cookie, made + 100), CookieCheck::kValid);  // wrapped to 89
  EXPECT_EQ(check(c, kTuple, 5, cookie, made + 2 * kPeriod + 100), CookieCheck::kStale);
}

TEST(SynCookie, ShortPeriodForTests) {
  SynCookies c(kKey, 2048);
  EXPECT_EQ(c.periodMs(), 2048u);
  const uint32_t cookie = c.make(kTuple, 5, 1460, 4096);
  EXPECT_EQ(check(c, kTuple, 5, cookie, 4096 + 2047), CookieCheck::kValid);
  EXPECT_EQ(check(c, kTuple, 5, cookie, 4096 + 4096), CookieCheck::kStale);
  EXPECT_EQ(SynCookies(kKey, 3000).periodMs(), 2048u);  // rounded down to a power of two
}

TEST(SynCookie, TimestampCarriesWscaleAndSack) {
  for (uint8_t ws : {uint8_t{0}, uint8_t{1}, uint8_t{7}, uint8_t{14}, sd::kNoWscale}) {
    for (bool sack : {false, true}) {
      sd::SynOptions o;
      o.wscale = ws;
      o.sackOk = sack;
      const uint32_t now = 0x12345678u;
      const uint32_t ts = sd::cookieTsVal(now, o);
      EXPECT_LE(now - ts, 63u) << "never ahead of the clock, at most 63 behind";
      uint8_t gotWs = 0;
      bool gotSack = false;
      ASSERT_TRUE(sd::cookieTsDecode(ts, gotWs, gotSack));
      EXPECT_EQ(gotWs, ws);
      EXPECT_EQ(gotSack, sack);
    }
  }
  // The clock's low bits below the options: one step back, not ahead.
  sd::SynOptions o;
  o.wscale = 14;
  o.sackOk = true;
  EXPECT_EQ(sd::cookieTsVal(0x1000, o), 0x1000u - 64 + 0x1e);
}

TEST(SynCookie, MalformedTimestampBitsRefused) {
  uint8_t ws = 0;
  bool sack = false;
  EXPECT_TRUE(sd::cookieTsDecode(0xabcdef0eu, ws, sack));
  EXPECT_EQ(ws, 14);
  EXPECT_FALSE(sack);
  EXPECT_FALSE(sd::cookieTsDecode(0x20, ws, sack));  // reserved (ECN) bit: never set by us
  EXPECT_FALSE(sd::cookieTsDecode(0x3f, ws, sack));
}

}  // namespace
