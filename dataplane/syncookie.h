// SYN cookies: the initial sequence number a SYN proxy answers a client's
// SYN with, so that it can recognise the client's ACK later without having
// kept anything about the SYN (no flow, no SNAT port: a flood of spoofed
// SYNs costs no memory). The design follows Linux (net/ipv4/syncookies.c):
//
//   cookie = period (3 bits) | MSS index (2 bits) | MAC (27 bits)
//   MAC    = SipHash-2-4(key, client addr, VIP, ports, client ISN, period, MSS index)
//
// The key is random per process (getrandom) and never leaves it. The
// period counter is the millisecond clock divided by a power of two
// (default 65,536 ms, Linux's "minute"), so a cookie is valid in the period
// it was made and the next one: between one and two periods. Mixing the
// period into the MAC is the rotation: each period effectively has its own
// secret, and the previous one is still accepted. A cookie whose MAC is right
// for an older period (2..7 periods back) is stale, anything else forged.
// The MAC is compared with one integer XOR, so checking takes the same time
// whichever bits are wrong. A power-of-two period keeps the counter
// consistent across the wrap of the 32-bit millisecond clock.
//
// The client's other SYN options cannot fit in 32 bits. As in Linux they
// travel in the low 6 bits of the TSval of our SYN-ACK and come back in the
// TSecr of the client's ACK: window scale (4 bits, 0xf = none) and
// SACK-permitted (1 bit); the sixth bit (ECN in Linux) is always 0 because
// the proxy does not negotiate ECN. Without timestamps the window scale and
// SACK are lost, exactly as with Linux's cookies. These bits are not
// authenticated (neither are Linux's): a client that alters them only
// changes its own connection.
//
// Pure arithmetic with an injected clock: no I/O, no allocation.
#pragma once

#include <array>
#include <cstdint>

#include "dataplane/siphash.h"
#include "dataplane/tcp_state.h"  // kNoWscale, kMaxWscale

namespace strait::dataplane {


// The MSS values a cookie can carry (Linux's IPv4 table): the client's MSS
// is rounded down to the largest entry not above it.
inline constexpr std::array<uint16_t, 4> kCookieMss = {536, 1300, 1440, 1460};

// What a client's SYN asked for, as far as the proxy cares. Host order.
struct SynOptions {
  uint16_t mss = 536;         // RFC 9293's default when the option is absent
  uint8_t wscale = kNoWscale; // 0..14; kNoWscale when absent
  bool sackOk = false;
  bool hasTs = false;
  uint32_t tsVal = 0;
  uint32_t tsEcr = 0;
};

// The connection a cookie is bound to, as the client sends it (client ->
// VIP). Network order, as in the packet.
struct CookieTuple {
  uint32_t clientIp = 0;
  uint32_t vip = 0;
  uint16_t clientPort = 0;
  uint16_t vipPort = 0;
};

enum class CookieCheck : uint8_t {
  kValid,    // made by this process, this period or the previous one
  kStale,    // made by this process, 2..7 periods ago
  kInvalid,  // not made by this process for this tuple and client ISN
};

// Index into kCookieMss for a client's MSS.
uint8_t cookieMssIndex(uint16_t mss);

class SynCookies {
 public:
  static constexpr uint32_t kDefaultPeriodMs = 65536;

  // `periodMs` must be a power of two >= 2 (the constructor rounds it down
  // to one).
  SynCookies(const SipKey& key, uint32_t periodMs = kDefaultPeriodMs);

  uint32_t periodMs() const { return 1u << shift_; }
  uint32_t period(uint32_t nowMs) const { return nowMs >> shift_; }

  // The ISN of the SYN-ACK answering the client's SYN with `clientIsn`.
  uint32_t make(const CookieTuple& t, uint32_t clientIsn, uint16_t mss, uint32_t nowMs) const;

  // Checks `cookie` (the client's ACK number - 1) for the client's ISN
  // (its sequence number - 1). On kValid, `mss` receives the MSS the cookie
  // carries. Constant time in the cookie's bits.
  CookieCheck check(const CookieTuple& t, uint32_t clientIsn, uint32_t cookie, uint32_t nowMs,
                    uint16_t& mss) const;

 private:
  uint32_t mac(const CookieTuple& t, uint32_t clientIsn, uint32_t period, uint32_t mssIdx) const;

  SipKey key_;
  unsigned shift_;
};

// The TSval of a cookie SYN-ACK: the proxy's clock `tsNow` with its low 6
// bits replaced by the client's window scale and SACK-permitted, moved one
// step back when that would put it ahead of the clock (as Linux does).
uint32_t cookieTsVal(uint32_t tsNow, const SynOptions& client);

// Reads the options back from the TSecr of the client's ACK. False when the
// bits cannot have come from cookieTsVal (a window scale above 14, or the
// reserved bit set): the ACK is refused like a forged cookie.
bool cookieTsDecode(uint32_t tsEcr, uint8_t& wscale, bool& sackOk);

}  // namespace strait::dataplane
