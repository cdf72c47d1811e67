// SipHash-1-3 of many 16-byte keys at once: the flow table's hash for a
// burst of lookups. One SipHash-1-3 of a 16-byte key is six rounds of a
// dependent chain of 64-bit adds, rotates and xors, about 20 cycles on its
// own, where the CRC32C it replaced took two instructions. Four keys side
// by side in the 64-bit lanes of a 256-bit register take the same
// instructions once for all four; with AVX-512VL's 64-bit rotate
// (vprolq) each SipHash step is one instruction, and a key costs about a
// third of the scalar figure. 256-bit registers rather than 512-bit ones:
// the same throughput on AMD Zen 4 (which splits 512-bit operations) and
// no AVX-512 frequency licence on Intel parts that have one.
//
// The implementation is picked once, at run time, from what the CPU
// supports (the build targets a baseline x86-64 without AVX-512); every
// implementation returns exactly sipHash13x16's low 32 bits, which the
// unit tests check for each one the machine can run.
#pragma once

#include <cstdint>

#include "dataplane/siphash.h"
#include "strait/flow_key.h"

namespace strait::dataplane {

// out[i] = low 32 bits of sipHash13x16(key, keys[i]) for i < n.
using SipBatchFn = void (*)(const SipKey& key, const FlowKey* const* keys, uint32_t n, uint32_t* out);

void sipHash13x16BatchScalar(const SipKey& key, const FlowKey* const* keys, uint32_t n, uint32_t* out);
// Requires AVX-512F and AVX-512VL (check sipBatchVectorSupported()).
void sipHash13x16BatchAvx512vl(const SipKey& key, const FlowKey* const* keys, uint32_t n, uint32_t* out);
bool sipBatchVectorSupported();
// Requires AVX2 (check sipBatchAvx2Supported()): the same four lanes with
// the rotates built from shifts and shuffles, for x86-64 CPUs without
// AVX-512 (and for valgrind, which does not run AVX-512).
void sipHash13x16BatchAvx2(const SipKey& key, const FlowKey* const* keys, uint32_t n, uint32_t* out);
bool sipBatchAvx2Supported();

// The fastest implementation this CPU runs: AVX-512VL, else AVX2, else
// scalar.
SipBatchFn sipHash13x16BatchBest();
// "AVX-512VL (...)", "AVX2 (...)" or "scalar", for reports.
const char* sipBatchName(SipBatchFn fn);

}  // namespace strait::dataplane
