// SYN cookie encoding and checking (see syncookie.h).
#include "dataplane/syncookie.h"

#include <bit>

namespace strait::dataplane {

namespace {

constexpr unsigned kPeriodShift = 29;  // bits 31..29: period counter mod 8
constexpr uint32_t kPeriodMask = 7;
constexpr unsigned kMssShift = 27;     // bits 28..27: MSS index
constexpr uint32_t kMssMask = 3;
constexpr uint32_t kMacMask = (1u << kMssShift) - 1;  // bits 26..0
// A cookie is accepted in the period it was made and the next one.
constexpr uint32_t kMaxAge = 1;

// The low 6 bits of a cookie TSval.
constexpr uint32_t kTsOptMask = 0x3f;
constexpr uint32_t kTsWscaleMask = 0x0f;
constexpr uint32_t kTsSack = 0x10;
constexpr uint32_t kTsReserved = 0x20;

}  // namespace

uint8_t cookieMssIndex(uint16_t mss) {
  uint8_t idx = 0;
  for (uint8_t i = 1; i < kCookieMss.size(); ++i)
    if (mss >= kCookieMss[i]) idx = i;
  return idx;
}

SynCookies::SynCookies(const SipKey& key, uint32_t periodMs) : key_(key) {
  if (periodMs < 2) periodMs = 2;
  shift_ = static_cast<unsigned>(std::bit_width(periodMs) - 1);
}

uint32_t SynCookies::mac(const CookieTuple& t, uint32_t clientIsn, uint32_t period, uint32_t mssIdx) const {
  // Three message words: the addresses, the ports and the client's ISN,
  // the period and the MSS index. Same bytes, same value, on any host.
  const uint64_t w0 = uint64_t{t.clientIp} | uint64_t{t.vip} << 32;
  const uint64_t w1 = uint64_t{t.clientPort} | uint64_t{t.vipPort} << 16 | uint64_t{clientIsn} << 32;
  // The counter wraps with the 32-bit clock: only its (32 - shift) bits count.
  const uint64_t w2 = uint64_t{period & (0xffffffffu >> shift_)} | uint64_t{mssIdx} << 32;
  sip_detail::State s = sip_detail::init(key_);
  sip_detail::compress<2>(s, w0);
  sip_detail::compress<2>(s, w1);
  sip_detail::compress<2>(s, w2);
  sip_detail::compress<2>(s, uint64_t{24} << 56);
  return static_cast<uint32_t>(sip_detail::finish<4>(s));
}

uint32_t SynCookies::make(const CookieTuple& t, uint32_t clientIsn, uint16_t mss, uint32_t nowMs) const {
  const uint32_t p = period(nowMs);
  const uint32_t idx = cookieMssIndex(mss);
  return (p & kPeriodMask) << kPeriodShift | idx << kMssShift | (mac(t, clientIsn, p, idx) & kMacMask);
}

CookieCheck SynCookies::check(const CookieTuple& t, uint32_t clientIsn, uint32_t cookie, uint32_t nowMs,
                              uint16_t& mss) const {
  const uint32_t now = period(nowMs);
  const uint32_t age = (now - (cookie >> kPeriodShift)) & kPeriodMask;
  const uint32_t idx = (cookie >> kMssShift) & kMssMask;
  const uint32_t diff = (mac(t, clientIsn, now - age, idx) ^ cookie) & kMacMask;
  if (diff != 0) return CookieCheck::kInvalid;
  if (age > kMaxAge) return CookieCheck::kStale;
  mss = kCookieMss[idx];
  return CookieCheck::kValid;
}

uint32_t cookieTsVal(uint32_t tsNow, const SynOptions& client) {
  uint32_t opts = client.wscale <= kMaxWscale ? client.wscale : kTsWscaleMask;
  if (client.sackOk) opts |= kTsSack;
  uint32_t ts = (tsNow & ~kTsOptMask) | opts;
  if (static_cast<int32_t>(ts - tsNow) > 0) ts -= kTsOptMask + 1;
  return ts;
}

bool cookieTsDecode(uint32_t tsEcr, uint8_t& wscale, bool& sackOk) {
  const uint32_t ws = tsEcr & kTsWscaleMask;
  if ((tsEcr & kTsReserved) != 0 || (ws > kMaxWscale && ws != kNoWscale)) return false;
  wscale = static_cast<uint8_t>(ws);
  sackOk = (tsEcr & kTsSack) != 0;
  return true;
}

}  // namespace strait::dataplane
