// SipHash (dataplane/siphash.h). SipHash-2-4 is checked against the 64
// test vectors of the reference implementation published with the paper
// (key 00 01 .. 0f, messages of length 0..63 holding 00 01 02 ..). For
// SipHash-1-3 no vectors come with the paper, so it is checked three ways:
// (1) against a second, deliberately plain implementation written from the
// paper's description (message padded to whole words with the length in
// the last byte, c rounds per word, 0xff into v2, d rounds), which itself
// reproduces all 64 SipHash-2-4 vectors when run with c=2, d=4, so the
// only thing that differs between the checked variants is the round
// counts; (2) the 16-byte fast path the flow table uses against the
// generic function for many keys and messages; (3) a few values of
// SipHash-1-3 published by independent implementations (zero key).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "dataplane/siphash.h"
#include "dataplane/siphash_batch.h"

namespace sd = strait::dataplane;

namespace {

constexpr sd::SipKey kPaperKey{0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};

constexpr uint64_t kSip24Vectors[64] = {
    0x726fdb47dd0e0e31ull, 0x74f839c593dc67fdull, 0x0d6c8009d9a94f5aull, 0x85676696d7fb7e2dull,
    0xcf2794e0277187b7ull, 0x18765564cd99a68dull, 0xcbc9466e58fee3ceull, 0xab0200f58b01d137ull,
    0x93f5f5799a932462ull, 0x9e0082df0ba9e4b0ull, 0x7a5dbbc594ddb9f3ull, 0xf4b32f46226bada7ull,
    0x751e8fbc860ee5fbull, 0x14ea5627c0843d90ull, 0xf723ca908e7af2eeull, 0xa129ca6149be45e5ull,
    0x3f2acc7f57c29bdbull, 0x699ae9f52cbe4794ull, 0x4bc1b3f0968dd39cull, 0xbb6dc91da77961bdull,
    0xbed65cf21aa2ee98ull, 0xd0f2cbb02e3b67c7ull, 0x93536795e3a33e88ull, 0xa80c038ccd5ccec8ull,
    0xb8ad50c6f649af94ull, 0xbce192de8a85b8eaull, 0x17d835b85bbb15f3ull, 0x2f2e6163076bcfadull,
    0xde4daaaca71dc9a5ull, 0xa6a2506687956571ull, 0xad87a3535c49ef28ull, 0x32d892fad841c342ull,
    0x7127512f72f27cceull, 0xa7f32346f95978e3ull, 0x12e0b01abb051238ull, 0x15e034d40fa197aeull,
    0x314dffbe0815a3b4ull, 0x027990f029623981ull, 0xcadcd4e59ef40c4dull, 0x9abfd8766a33735cull,
    0x0e3ea96b5304a7d0ull, 0xad0c42d6fc585992ull, 0x187306c89bc215a9ull, 0xd4a60abcf3792b95ull,
    0xf935451de4f21df2ull, 0xa9538f0419755787ull, 0xdb9acddff56ca510ull, 0xd06c98cd5c0975ebull,
    0xe612a3cb9ecba951ull, 0xc766e62cfcadaf96ull, 0xee64435a9752fe72ull, 0xa192d576b245165aull,
    0x0a8787bf8ecb74b2ull, 0x81b3e73d20b49b6full, 0x7fa8220ba3b2eceaull, 0x245731c13ca42499ull,
    0xb78dbfaf3a8d83bdull, 0xea1ad565322a1a0bull, 0x60e61c23a3795013ull, 0x6606d7e446282b93ull,
    0x6ca4ecb15c5f91e1ull, 0x9f626da15c9625f3ull, 0xe51b38608ef25f57ull, 0x958a324ceb064572ull,
};

// The plain implementation: state as an array, the message copied into a
// zero-padded buffer of whole words, every step spelled out.
uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

void sipRound(uint64_t v[4]) {
  v[0] += v[1]; v[1] = rotl(v[1], 13); v[1] ^= v[0]; v[0] = rotl(v[0], 32);
  v[2] += v[3]; v[3] = rotl(v[3], 16); v[3] ^= v[2];
  v[0] += v[3]; v[3] = rotl(v[3], 21); v[3] ^= v[0];
  v[2] += v[1]; v[1] = rotl(v[1], 17); v[1] ^= v[2]; v[2] = rotl(v[2], 32);
}

uint64_t plainSipHash(int c, int d, const uint8_t key[16], const uint8_t* msg, std::size_t len) {
  auto le = [](const uint8_t* p) {
    uint64_t x = 0;
    for (int i = 7; i >= 0; --i) x = (x << 8) | p[i];
    return x;
  };
  const uint64_t k0 = le(key), k1 = le(key + 8);
  uint64_t v[4] = {k0 ^ 0x736f6d6570736575ull, k1 ^ 0x646f72616e646f6dull, k0 ^ 0x6c7967656e657261ull,
                   k1 ^ 0x7465646279746573ull};
  // Whole words of message, then the last word: leftover bytes and the
  // length byte on top, zeros in between (messages here are <= 256 bytes).
  std::array<uint8_t, 264> padded{};
  const std::size_t words = len / 8 + 1;
  for (std::size_t i = 0; i < len && i < 256; ++i) padded[i] = msg[i];
  padded[8 * words - 1] = static_cast<uint8_t>(len);
  for (std::size_t off = 0; off < 8 * words; off += 8) {
    const uint64_t m = le(padded.data() + off);
    v[3] ^= m;
    for (int i = 0; i < c; ++i) sipRound(v);
    v[0] ^= m;
  }
  v[2] ^= 0xff;
  for (int i = 0; i < d; ++i) sipRound(v);
  return v[0] ^ v[1] ^ v[2] ^ v[3];
}

const uint8_t kPaperKeyBytes[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

}  // namespace

TEST(SipHash, Sip24MatchesThePaperVectors) {
  uint8_t msg[64];
  for (int i = 0; i < 64; ++i) msg[i] = static_cast<uint8_t>(i);
  for (std::size_t len = 0; len < 64; ++len) {
    EXPECT_EQ(sd::sipHash24(kPaperKey, msg, len), kSip24Vectors[len]) << "length " << len;
    EXPECT_EQ(plainSipHash(2, 4, kPaperKeyBytes, msg, len), kSip24Vectors[len]) << "length " << len;
  }
}

TEST(SipHash, Sip13MatchesThePlainImplementation) {
  std::mt19937_64 rng(13);
  std::vector<uint8_t> msg(200);
  for (int trial = 0; trial < 50; ++trial) {
    uint8_t keyBytes[16];
    for (auto& b : keyBytes) b = static_cast<uint8_t>(rng());
    sd::SipKey key;
    std::memcpy(&key.k0, keyBytes, 8);
    std::memcpy(&key.k1, keyBytes + 8, 8);
    for (auto& b : msg) b = static_cast<uint8_t>(rng());
    for (std::size_t len = 0; len <= msg.size(); len += (len < 40 ? 1 : 17)) {
      ASSERT_EQ(sd::sipHash13(key, msg.data(), len), plainSipHash(1, 3, keyBytes, msg.data(), len))
          << "trial " << trial << " length " << len;
      ASSERT_EQ(sd::sipHash24(key, msg.data(), len), plainSipHash(2, 4, keyBytes, msg.data(), len));
    }
  }
  // The paper's key and messages, for a fixed reference point.
  uint8_t seq[64];
  for (int i = 0; i < 64; ++i) seq[i] = static_cast<uint8_t>(i);
  for (std::size_t len = 0; len < 64; ++len)
    EXPECT_EQ(sd::sipHash13(kPaperKey, seq, len), plainSipHash(1, 3, kPaperKeyBytes, seq, len));
}

TEST(SipHash, Sip13KnownValuesWithZeroKey) {
  // Published by independent SipHash-1-3 implementations (the 64-bit
  // result written as hex): "" -> d1fba762150c532c, "siphash" -> 8264ceeccb16bcbe.
  const sd::SipKey zero{0, 0};
  EXPECT_EQ(sd::sipHash13(zero, "", 0), 0xd1fba762150c532cull);
  EXPECT_EQ(sd::sipHash13(zero, "siphash", 7), 0x8264ceeccb16bcbeull);
}

TEST(SipHash, SixteenByteFastPathEqualsTheGenericFunction) {
  std::mt19937_64 rng(16);
  for (int i = 0; i < 10000; ++i) {
    const sd::SipKey key{rng(), rng()};
    uint8_t msg[16];
    for (auto& b : msg) b = static_cast<uint8_t>(rng());
    ASSERT_EQ(sd::sipHash13x16(key, msg), sd::sipHash13(key, msg, 16));
    uint64_t w0, w1;
    std::memcpy(&w0, msg, 8);
    std::memcpy(&w1, msg + 8, 8);
    ASSERT_EQ((sd::sipHash16<2, 4>(key, w0, w1)), sd::sipHash24(key, msg, 16));
  }
}

TEST(SipHash, OutputDependsOnEveryKeyBit) {
  // Flipping any one of the 128 key bits changes the hash of a fixed
  // message, and by about half its bits (avalanche), averaged over the key bits.
  const uint8_t msg[16] = {192, 0, 2, 1, 198, 51, 100, 7, 0x12, 0x34, 0, 80, 6, 0, 0, 0};
  const sd::SipKey base{0x0123456789abcdefull, 0xfedcba9876543210ull};
  const uint64_t h = sd::sipHash13x16(base, msg);
  double flipped = 0;
  for (int bit = 0; bit < 128; ++bit) {
    sd::SipKey k = base;
    (bit < 64 ? k.k0 : k.k1) ^= uint64_t{1} << (bit % 64);
    const uint64_t g = sd::sipHash13x16(k, msg);
    ASSERT_NE(g, h) << "key bit " << bit;
    flipped += __builtin_popcountll(g ^ h);
  }
  EXPECT_NEAR(flipped / 128, 32.0, 3.0);
}

TEST(SipHash, RandomKeysDiffer) {
  std::set<std::pair<uint64_t, uint64_t>> seen;
  for (int i = 0; i < 8; ++i) {
    const sd::SipKey k = sd::randomSipKey();
    EXPECT_TRUE(seen.insert({k.k0, k.k1}).second);
  }
}

// Every batch implementation this machine can run gives exactly the
// scalar hash's low 32 bits, for every batch length (the vector version
// takes four keys at a time and finishes the rest one by one) and for keys
// that are not 16-byte aligned.
TEST(SipHashBatch, EveryImplementationMatchesTheScalarHash) {
  std::mt19937_64 rng(4);
  std::vector<uint8_t> storage(70 * sizeof(strait::FlowKey) + 8);
  for (auto& b : storage) b = static_cast<uint8_t>(rng());
  std::vector<const strait::FlowKey*> keys;
  for (std::size_t i = 0; i < 70; ++i)
    keys.push_back(reinterpret_cast<const strait::FlowKey*>(storage.data() + 1 + 16 * i));
  std::vector<std::pair<const char*, sd::SipBatchFn>> impls = {{"scalar", sd::sipHash13x16BatchScalar}};
  if (sd::sipBatchVectorSupported()) impls.push_back({"avx512vl", sd::sipHash13x16BatchAvx512vl});
  if (sd::sipBatchAvx2Supported()) impls.push_back({"avx2", sd::sipHash13x16BatchAvx2});
  std::printf("[ batch ] implementations checked: %zu (best: %s)\n", impls.size(),
              sd::sipBatchName(sd::sipHash13x16BatchBest()));
  for (const sd::SipKey key : {sd::SipKey{0, 0}, sd::SipKey{rng(), rng()}, sd::SipKey{~0ull, 1}}) {
    for (auto [name, fn] : impls) {
      for (uint32_t n = 0; n <= 70; ++n) {
        std::vector<uint32_t> out(n + 1, 0xdeadbeef);
        fn(key, keys.data(), n, out.data());
        for (uint32_t i = 0; i < n; ++i)
          ASSERT_EQ(out[i], static_cast<uint32_t>(sd::sipHash13x16(key, keys[i]))) << name << " n=" << n << " i=" << i;
        ASSERT_EQ(out[n], 0xdeadbeefu) << name << " wrote past n=" << n;
      }
    }
  }
}
