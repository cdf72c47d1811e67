// The flow table's index: an open-addressing hash of 64-byte buckets that
// maps a 32-bit key hash to a 32-bit reference (FlowTable stores record
// index << 1 | direction). It stores no keys: a slot holds the reference
// and a 16-bit tag taken from the hash, and a tag match is confirmed by the
// caller's `verify(ref)` (FlowTable compares the looked-up key with the
// record's own key), so each key costs 6 bytes of slot and the table about
// 8 bytes per key at its sizing, where rte_hash spent ~53 (a 32-byte copy
// of the key and its data pointer, bucket entries, free-slot ring).
//
// Layout of a bucket (one cache line): 10 tags, the overflow counter, the
// occupancy bits of the 10 slots, and the 10 references. A lookup reads
// one line in the common case, compares the 10 tags at once (SSE2), and
// reads a record only for a tag match. A wrong match costs one record
// read: with 8 keys in a bucket, one lookup in 8,000 up to 2^16 buckets;
// past that the bucket index (the hash's high bits) and the tag (its low
// 16) share log2(buckets) - 16 bits, so one in 256 at 2^21 buckets (8M
// flows), still a small fraction of the record read every hit makes.
//
// Collisions: linear probing over buckets. An insert takes the first
// bucket from its home (the hash mapped onto [0, buckets) by
// multiply-shift, so any bucket count works) with a free slot and adds one
// to the overflow counter of every full bucket it passed; remove subtracts
// one along the same path. A lookup stops at the first bucket whose
// counter is 0: no key that started at or before it lives past it. So
// there are no tombstones, removal is exact, and a table can be filled to
// every slot. A counter that reaches 65,535 sticks there (it never gets
// decremented again), which keeps lookups correct at the price of longer
// probes; at the sizing below a bucket sees that only under a hash it
// cannot be given (the hash is keyed, see dataplane/siphash.h).
//
// Single-threaded, no allocation after construction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <rte_prefetch.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace strait::dataplane {

class FlowHash {
 public:
  static constexpr uint32_t kNone = 0xffffffffu;
  static constexpr uint32_t kSlots = 10;           // per bucket
  static constexpr uint32_t kKeysPerBucket = 8;    // sizing: 80% of the slots when full
  static constexpr uint16_t kOverflowStuck = 0xffff;
  static constexpr uint16_t kAllUsed = (1u << kSlots) - 1;

  struct alignas(64) Bucket {
    uint16_t tag[kSlots];
    uint16_t overflow;  // keys whose home is at or before this bucket and that live after it
    uint16_t used;      // bit s: slot s holds a key
    uint32_t ref[kSlots];
  };
  static_assert(sizeof(Bucket) == 64, "a bucket is one cache line");

  // A table for at most `maxKeys` keys at once (it then holds 80% of its
  // slots), on NUMA socket `socketId` (-1: any). Throws std::runtime_error
  // when the memory cannot be had, its message starting with `owner`.
  FlowHash(uint32_t maxKeys, int socketId, const std::string& owner);
  ~FlowHash();
  FlowHash(const FlowHash&) = delete;
  FlowHash& operator=(const FlowHash&) = delete;

  static uint32_t bucketsFor(uint32_t maxKeys) {
    const uint32_t b = static_cast<uint32_t>((static_cast<uint64_t>(maxKeys) + kKeysPerBucket - 1) / kKeysPerBucket);
    return b == 0 ? 1 : b;
  }
  static std::size_t bytesFor(uint32_t maxKeys) { return std::size_t{bucketsFor(maxKeys)} * sizeof(Bucket); }
  std::size_t memoryBytes() const { return std::size_t{buckets_} * sizeof(Bucket); }
  uint32_t buckets() const { return buckets_; }
  uint32_t size() const { return size_; }
  uint32_t slots() const { return buckets_ * kSlots; }

  // Home bucket: the hash times the bucket count, high half (Lemire's
  // multiply-shift; the bucket is decided by the hash's high bits).
  uint32_t homeOf(uint32_t h) const { return static_cast<uint32_t>((static_cast<uint64_t>(h) * buckets_) >> 32); }
  // The tag: the hash's low 16 bits.
  static uint16_t tagOf(uint32_t h) { return static_cast<uint16_t>(h); }

  void prefetch(uint32_t h) const { rte_prefetch0(&b_[homeOf(h)]); }

  // Reference of the first slot of the home bucket whose tag matches, or
  // kNone: what a bulk lookup prefetches the record of before verifying.
  uint32_t firstCandidate(uint32_t h) const {
    const Bucket& b = b_[homeOf(h)];
    const uint32_t m = matches(b, tagOf(h));
    return m ? b.ref[__builtin_ctz(m)] : kNone;
  }

  // The reference stored under hash `h` for which verify(ref) holds, or kNone.
  template <class Verify>
  uint32_t find(uint32_t h, Verify&& verify) const {
    const uint16_t tag = tagOf(h);
    uint32_t bi = homeOf(h);
    for (uint32_t step = 0; step < buckets_; ++step) {
      const Bucket& b = b_[bi];
      for (uint32_t m = matches(b, tag); m != 0; m &= m - 1) {
        const uint32_t ref = b.ref[__builtin_ctz(m)];
        if (verify(ref)) return ref;
      }
      if (b.overflow == 0) break;
      if (++bi == buckets_) bi = 0;
    }
    return kNone;
  }

  // Stores `ref` under hash `h`; false only when every slot is taken.
  // The caller makes sure the key is not present already.
  bool insert(uint32_t h, uint32_t ref);

  // What insertUnique() did.
  enum class Insert : uint8_t { kDone, kPresent, kFull };

  // Stores `ref` under hash `h` unless a reference for which verify(ref)
  // holds is stored under `h` already (kPresent) or every slot is taken
  // (kFull). One walk does both: the probe path of a lookup (up to the
  // first bucket whose counter is 0) and that of an insert (up to the first
  // bucket with a free slot) start at the same home bucket, so the buckets
  // it reads are those a find() and then an insert() would read, each
  // once, and a record is read only for a tag match. For keys whose
  // absence cannot be proved cheaply by the caller (a flow's reply key).
  template <class Verify>
  Insert insertUnique(uint32_t h, uint32_t ref, Verify&& verify) {
    const uint16_t tag = tagOf(h);
    const uint32_t home = homeOf(h);
    // The common case, decided on the home bucket alone: no tag of the key
    // there, no key that started at or before it living past it (so the
    // key is nowhere), and a free slot (so the table is not full either).
    {
      const Bucket& b = b_[home];
      if (b.overflow == 0 && b.used != kAllUsed && matches(b, tag) == 0) {
        place(home, h, ref);
        return Insert::kDone;
      }
    }
    if (size_ == slots()) return Insert::kFull;
    uint32_t bi = home;
    uint32_t freeAt = kNone;
    bool searching = true;
    for (uint32_t step = 0; step < buckets_; ++step) {
      const Bucket& b = b_[bi];
      if (searching) {
        for (uint32_t m = matches(b, tag); m != 0; m &= m - 1)
          if (verify(b.ref[__builtin_ctz(m)])) return Insert::kPresent;
        searching = b.overflow != 0;
      }
      if (freeAt == kNone && b.used != kAllUsed) freeAt = bi;
      if (!searching && freeAt != kNone) break;
      if (++bi == buckets_) bi = 0;
    }
    // A free slot exists (size_ < slots()), so the walk found one. Every
    // bucket from home up to it is full: count the key in their overflow,
    // as insert() does.
    for (uint32_t p = home; p != freeAt; p = p + 1 == buckets_ ? 0 : p + 1)
      if (b_[p].overflow != kOverflowStuck) ++b_[p].overflow;
    place(freeAt, h, ref);
    return Insert::kDone;
  }
  // Removes the slot holding `ref` stored under hash `h`; false when there
  // is none.
  bool remove(uint32_t h, uint32_t ref);

  // For tests: the counter and the occupancy bits of bucket `bi`, and the
  // reference in one of its slots.
  uint16_t overflowOf(uint32_t bi) const { return b_[bi].overflow; }
  uint16_t usedOf(uint32_t bi) const { return b_[bi].used; }
  uint32_t refAt(uint32_t bi, uint32_t slot) const { return b_[bi].ref[slot]; }

  // Bit s set: slot s is in use and holds `tag`.
  static uint32_t matches(const Bucket& b, uint16_t tag) {
#if defined(__SSE2__)
    // Tags 0-7 in the first 16 bytes, 8-9 at the start of the next 16 (the
    // other lanes of that compare are masked off by `used`).
    const __m128i t = _mm_set1_epi16(static_cast<short>(tag));
    const __m128i lo = _mm_cmpeq_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(&b)), t);
    const __m128i hi = _mm_cmpeq_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(&b) + 1), t);
    const uint32_t m = static_cast<uint32_t>(_mm_movemask_epi8(_mm_packs_epi16(lo, hi)));
    return m & b.used;
#else
    uint32_t m = 0;
    for (uint32_t s = 0; s < kSlots; ++s) m |= static_cast<uint32_t>(b.tag[s] == tag) << s;
    return m & b.used;
#endif
  }

 private:
  // Writes `ref` into the first free slot of bucket `bi`, which has one.
  void place(uint32_t bi, uint32_t h, uint32_t ref) {
    Bucket& b = b_[bi];
    const uint32_t s = static_cast<uint32_t>(__builtin_ctz(~static_cast<uint32_t>(b.used)));
    b.tag[s] = tagOf(h);
    b.ref[s] = ref;
    b.used = static_cast<uint16_t>(b.used | (1u << s));
    ++size_;
  }

  Bucket* b_ = nullptr;
  uint32_t buckets_ = 0;
  uint32_t size_ = 0;
};

}  // namespace strait::dataplane
