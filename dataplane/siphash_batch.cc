// Batched SipHash-1-3 of 16-byte keys (see siphash_batch.h). The vector
// version is compiled for AVX-512F/VL through a target attribute, so only
// its own functions use those instructions, and it is called only after
// the CPU (and the OS's saved register state, which GCC's
// __builtin_cpu_supports also checks) says they are there.
#include "dataplane/siphash_batch.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define STRAIT_SIP_VECTOR 1
#endif

namespace strait::dataplane {

void sipHash13x16BatchScalar(const SipKey& key, const FlowKey* const* keys, uint32_t n, uint32_t* out) {
  for (uint32_t i = 0; i < n; ++i) out[i] = static_cast<uint32_t>(sipHash13x16(key, keys[i]));
}

#ifdef STRAIT_SIP_VECTOR

namespace {

#define STRAIT_AVX512VL __attribute__((target("avx512f,avx512vl")))

STRAIT_AVX512VL inline void sipRound4(__m256i& v0, __m256i& v1, __m256i& v2, __m256i& v3) {
  v0 = _mm256_add_epi64(v0, v1);
  v1 = _mm256_rol_epi64(v1, 13);
  v1 = _mm256_xor_si256(v1, v0);
  v0 = _mm256_rol_epi64(v0, 32);
  v2 = _mm256_add_epi64(v2, v3);
  v3 = _mm256_rol_epi64(v3, 16);
  v3 = _mm256_xor_si256(v3, v2);
  v0 = _mm256_add_epi64(v0, v3);
  v3 = _mm256_rol_epi64(v3, 21);
  v3 = _mm256_xor_si256(v3, v0);
  v2 = _mm256_add_epi64(v2, v1);
  v1 = _mm256_rol_epi64(v1, 17);
  v1 = _mm256_xor_si256(v1, v2);
  v2 = _mm256_rol_epi64(v2, 32);
}

STRAIT_AVX512VL inline void compress4(__m256i& v0, __m256i& v1, __m256i& v2, __m256i& v3, __m256i m) {
  v3 = _mm256_xor_si256(v3, m);
  sipRound4(v0, v1, v2, v3);
  v0 = _mm256_xor_si256(v0, m);
}

#define STRAIT_AVX2 __attribute__((target("avx2")))

// AVX2 has no 64-bit rotate: by 32 a dword shuffle, by 16 a byte shuffle,
// the others two shifts and an or.
template <int R>
STRAIT_AVX2 inline __m256i rol64Avx2(__m256i x) {
  if constexpr (R == 32) {
    return _mm256_shuffle_epi32(x, 0xb1);
  } else if constexpr (R == 16) {
    // Each 64-bit lane's bytes 0..7 become 6,7,0,1,2,3,4,5.
    const __m256i m = _mm256_setr_epi8(6, 7, 0, 1, 2, 3, 4, 5, 14, 15, 8, 9, 10, 11, 12, 13, 6, 7, 0, 1, 2, 3, 4, 5,
                                       14, 15, 8, 9, 10, 11, 12, 13);
    return _mm256_shuffle_epi8(x, m);
  } else {
    return _mm256_or_si256(_mm256_slli_epi64(x, R), _mm256_srli_epi64(x, 64 - R));
  }
}

STRAIT_AVX2 inline void sipRound4Avx2(__m256i& v0, __m256i& v1, __m256i& v2, __m256i& v3) {
  v0 = _mm256_add_epi64(v0, v1);
  v1 = rol64Avx2<13>(v1);
  v1 = _mm256_xor_si256(v1, v0);
  v0 = rol64Avx2<32>(v0);
  v2 = _mm256_add_epi64(v2, v3);
  v3 = rol64Avx2<16>(v3);
  v3 = _mm256_xor_si256(v3, v2);
  v0 = _mm256_add_epi64(v0, v3);
  v3 = rol64Avx2<21>(v3);
  v3 = _mm256_xor_si256(v3, v0);
  v2 = _mm256_add_epi64(v2, v1);
  v1 = rol64Avx2<17>(v1);
  v1 = _mm256_xor_si256(v1, v2);
  v2 = rol64Avx2<32>(v2);
}

STRAIT_AVX2 inline void compress4Avx2(__m256i& v0, __m256i& v1, __m256i& v2, __m256i& v3, __m256i m) {
  v3 = _mm256_xor_si256(v3, m);
  sipRound4Avx2(v0, v1, v2, v3);
  v0 = _mm256_xor_si256(v0, m);
}

}  // namespace

STRAIT_AVX2 void sipHash13x16BatchAvx2(const SipKey& key, const FlowKey* const* keys, uint32_t n, uint32_t* out) {
  static_assert(sizeof(FlowKey) == 16);
  const sip_detail::State init = sip_detail::init(key);
  const __m256i i0 = _mm256_set1_epi64x(static_cast<long long>(init.v0));
  const __m256i i1 = _mm256_set1_epi64x(static_cast<long long>(init.v1));
  const __m256i i2 = _mm256_set1_epi64x(static_cast<long long>(init.v2));
  const __m256i i3 = _mm256_set1_epi64x(static_cast<long long>(init.v3));
  const __m256i lengthWord = _mm256_set1_epi64x(static_cast<long long>(uint64_t{16} << 56));
  const __m256i ff = _mm256_set1_epi64x(0xff);
  uint32_t i = 0;
  for (; i + 4 <= n; i += 4) {
    // The same lane layout as the AVX-512VL version below.
    const __m256i a = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(keys[i]))),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(keys[i + 1])), 1);
    const __m256i b = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(keys[i + 2]))),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(keys[i + 3])), 1);
    const __m256i w0 = _mm256_unpacklo_epi64(a, b);
    const __m256i w1 = _mm256_unpackhi_epi64(a, b);
    __m256i v0 = i0, v1 = i1, v2 = i2, v3 = i3;
    compress4Avx2(v0, v1, v2, v3, w0);
    compress4Avx2(v0, v1, v2, v3, w1);
    compress4Avx2(v0, v1, v2, v3, lengthWord);
    v2 = _mm256_xor_si256(v2, ff);
    sipRound4Avx2(v0, v1, v2, v3);
    sipRound4Avx2(v0, v1, v2, v3);
    sipRound4Avx2(v0, v1, v2, v3);
    const __m256i h = _mm256_xor_si256(_mm256_xor_si256(v0, v1), _mm256_xor_si256(v2, v3));
    const __m256i low = _mm256_permutevar8x32_epi32(h, _mm256_setr_epi32(0, 4, 2, 6, 0, 4, 2, 6));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_castsi256_si128(low));
  }
  for (; i < n; ++i) out[i] = static_cast<uint32_t>(sipHash13x16(key, keys[i]));
}

STRAIT_AVX512VL void sipHash13x16BatchAvx512vl(const SipKey& key, const FlowKey* const* keys, uint32_t n,
                                               uint32_t* out) {
  static_assert(sizeof(FlowKey) == 16);
  const sip_detail::State init = sip_detail::init(key);
  const __m256i i0 = _mm256_set1_epi64x(static_cast<long long>(init.v0));
  const __m256i i1 = _mm256_set1_epi64x(static_cast<long long>(init.v1));
  const __m256i i2 = _mm256_set1_epi64x(static_cast<long long>(init.v2));
  const __m256i i3 = _mm256_set1_epi64x(static_cast<long long>(init.v3));
  const __m256i lengthWord = _mm256_set1_epi64x(static_cast<long long>(uint64_t{16} << 56));
  const __m256i ff = _mm256_set1_epi64x(0xff);
  uint32_t i = 0;
  for (; i + 4 <= n; i += 4) {
    // Keys 0,1 and 2,3 as (w0, w1) pairs; the unpacks give the w0 and w1
    // of all four, in lane order 0, 2, 1, 3.
    const __m256i a = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(keys[i]))),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(keys[i + 1])), 1);
    const __m256i b = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(keys[i + 2]))),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(keys[i + 3])), 1);
    const __m256i w0 = _mm256_unpacklo_epi64(a, b);
    const __m256i w1 = _mm256_unpackhi_epi64(a, b);
    __m256i v0 = i0, v1 = i1, v2 = i2, v3 = i3;
    compress4(v0, v1, v2, v3, w0);
    compress4(v0, v1, v2, v3, w1);
    compress4(v0, v1, v2, v3, lengthWord);
    v2 = _mm256_xor_si256(v2, ff);
    sipRound4(v0, v1, v2, v3);
    sipRound4(v0, v1, v2, v3);
    sipRound4(v0, v1, v2, v3);
    const __m256i h = _mm256_xor_si256(_mm256_xor_si256(v0, v1), _mm256_xor_si256(v2, v3));
    // The low 32 bits of lanes 0, 2, 1, 3 (32-bit elements 0, 4, 2, 6) are
    // the hashes of keys 0, 1, 2, 3.
    const __m256i low = _mm256_permutevar8x32_epi32(h, _mm256_setr_epi32(0, 4, 2, 6, 0, 4, 2, 6));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_castsi256_si128(low));
  }
  for (; i < n; ++i) out[i] = static_cast<uint32_t>(sipHash13x16(key, keys[i]));
}

bool sipBatchVectorSupported() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
}

bool sipBatchAvx2Supported() { return __builtin_cpu_supports("avx2"); }

#else

void sipHash13x16BatchAvx512vl(const SipKey& key, const FlowKey* const* keys, uint32_t n, uint32_t* out) {
  sipHash13x16BatchScalar(key, keys, n, out);
}

void sipHash13x16BatchAvx2(const SipKey& key, const FlowKey* const* keys, uint32_t n, uint32_t* out) {
  sipHash13x16BatchScalar(key, keys, n, out);
}

bool sipBatchVectorSupported() { return false; }
bool sipBatchAvx2Supported() { return false; }

#endif

SipBatchFn sipHash13x16BatchBest() {
  if (sipBatchVectorSupported()) return sipHash13x16BatchAvx512vl;
  if (sipBatchAvx2Supported()) return sipHash13x16BatchAvx2;
  return sipHash13x16BatchScalar;
}

const char* sipBatchName(SipBatchFn fn) {
  if (fn == sipHash13x16BatchAvx512vl) return "AVX-512VL (4 keys per instruction)";
  if (fn == sipHash13x16BatchAvx2) return "AVX2 (4 keys per instruction)";
  return "scalar";
}

}  // namespace strait::dataplane
