// SipHash (Aumasson and Bernstein, "SipHash: a fast short-input PRF",
// 2012): a keyed pseudo-random function over short messages with a 128-bit
// key. It is what the flow table hashes its keys with, so that nobody who
// does not know the per-process key can craft flow keys that share a hash
// bucket (hash flooding). CRC32C, the hash used before, is affine in its
// input: the seed shifts every value by the same amount and keys that
// collide under one seed collide under all of them.
//
// SipHash-c-d does c rounds per 8-byte message word and d rounds to
// finalise. SipHash-2-4 is the paper's conservative choice and the one its
// test vectors are for; SipHash-1-3 is the faster variant that Rust's
// HashMap, Python's dict (3.11+) and the Linux kernel's hsiphash family
// settled on for hash tables, where the output never leaves the process.
// The flow table uses SipHash-1-3 over the 16-byte FlowKey (sipHash13x16,
// six rounds in all); SYN cookies, whose values an attacker sees, should
// use SipHash-2-4.
//
// Header-only and constexpr so the per-packet callers inline it. Messages
// are read as little-endian words whatever the host order, as the spec
// requires.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace strait::dataplane {

// The 128-bit key as two little-endian words: bytes 0..7 and 8..15 of the
// key as the paper writes it.
struct SipKey {
  uint64_t k0 = 0;
  uint64_t k1 = 0;
  bool operator==(const SipKey&) const = default;
};

// A key from the kernel's random source (getrandom). Throws
// std::runtime_error when none can be had, rather than run unkeyed.
SipKey randomSipKey();

namespace sip_detail {

struct State {
  uint64_t v0, v1, v2, v3;
};

constexpr State init(const SipKey& k) {
  // "somepseudorandomlygeneratedbytes", from the paper.
  return State{k.k0 ^ 0x736f6d6570736575ull, k.k1 ^ 0x646f72616e646f6dull, k.k0 ^ 0x6c7967656e657261ull,
               k.k1 ^ 0x7465646279746573ull};
}

constexpr void round(State& s) {
  s.v0 += s.v1;
  s.v1 = std::rotl(s.v1, 13);
  s.v1 ^= s.v0;
  s.v0 = std::rotl(s.v0, 32);
  s.v2 += s.v3;
  s.v3 = std::rotl(s.v3, 16);
  s.v3 ^= s.v2;
  s.v0 += s.v3;
  s.v3 = std::rotl(s.v3, 21);
  s.v3 ^= s.v0;
  s.v2 += s.v1;
  s.v1 = std::rotl(s.v1, 17);
  s.v1 ^= s.v2;
  s.v2 = std::rotl(s.v2, 32);
}

template <int C>
constexpr void compress(State& s, uint64_t m) {
  s.v3 ^= m;
  for (int i = 0; i < C; ++i) round(s);
  s.v0 ^= m;
}

template <int D>
constexpr uint64_t finish(State& s) {
  s.v2 ^= 0xff;
  for (int i = 0; i < D; ++i) round(s);
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

inline uint64_t loadLe64(const uint8_t* p) {
  uint64_t w;
  std::memcpy(&w, p, sizeof w);
  if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap64(w);
  return w;
}

}  // namespace sip_detail

// SipHash-c-d of `len` bytes at `data`, 64-bit output.
template <int C, int D>
inline uint64_t sipHash(const SipKey& key, const void* data, std::size_t len) {
  const auto* p = static_cast<const uint8_t*>(data);
  sip_detail::State s = sip_detail::init(key);
  const std::size_t words = len / 8;
  for (std::size_t i = 0; i < words; ++i) sip_detail::compress<C>(s, sip_detail::loadLe64(p + 8 * i));
  // Last word: the remaining 0..7 bytes, and the length (mod 256) in the top byte.
  uint64_t b = static_cast<uint64_t>(len & 0xff) << 56;
  const uint8_t* tail = p + 8 * words;
  for (std::size_t i = 0; i < (len & 7); ++i) b |= static_cast<uint64_t>(tail[i]) << (8 * i);
  sip_detail::compress<C>(s, b);
  return sip_detail::finish<D>(s);
}

inline uint64_t sipHash24(const SipKey& key, const void* data, std::size_t len) {
  return sipHash<2, 4>(key, data, len);
}
inline uint64_t sipHash13(const SipKey& key, const void* data, std::size_t len) {
  return sipHash<1, 3>(key, data, len);
}

// SipHash-c-d of exactly 16 bytes given as their two little-endian words:
// the same value as sipHash<C, D>(key, bytes, 16), with no loops or length
// logic left for the compiler to see through.
template <int C, int D>
constexpr uint64_t sipHash16(const SipKey& key, uint64_t w0, uint64_t w1) {
  sip_detail::State s = sip_detail::init(key);
  sip_detail::compress<C>(s, w0);
  sip_detail::compress<C>(s, w1);
  sip_detail::compress<C>(s, uint64_t{16} << 56);
  return sip_detail::finish<D>(s);
}

// SipHash-1-3 of a 16-byte buffer (a FlowKey).
inline uint64_t sipHash13x16(const SipKey& key, const void* data) {
  const auto* p = static_cast<const uint8_t*>(data);
  return sipHash16<1, 3>(key, sip_detail::loadLe64(p), sip_detail::loadLe64(p + 8));
}

}  // namespace strait::dataplane
