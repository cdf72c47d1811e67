// The neighbour table's writer side and control-path views. Readers (the
// workers) use only the inline lookup() in the header; everything here runs
// on the control thread, the single writer, which is why updatedMs and used_
// need no synchronisation while ip and macWord are published with release
// stores that pair with the readers' acquire loads.
#include "dataplane/neighbour.h"

#include <bit>

namespace strait::dataplane {

namespace {

uint64_t packMac(const rte_ether_addr& mac) {
  uint64_t w = 0;
  for (int b = 0; b < 6; ++b) w |= uint64_t(mac.addr_bytes[b]) << (8 * b);
  return w;
}

rte_ether_addr unpackMac(uint64_t w) {
  rte_ether_addr mac{};
  for (int b = 0; b < 6; ++b) mac.addr_bytes[b] = static_cast<uint8_t>(w >> (8 * b));
  return mac;
}

// At least twice the requested entries, so the table never runs above half
// full (see used_), and at least 16 slots.
std::size_t slotCount(uint32_t capacity) {
  uint64_t want = uint64_t(capacity < 8 ? 8 : capacity) * 2;
  return static_cast<std::size_t>(std::bit_ceil(want));
}

}  // namespace

NeighbourTable::NeighbourTable(uint32_t capacity) : slots_(slotCount(capacity)) {}

bool NeighbourTable::update(uint32_t ip, const rte_ether_addr& mac, uint64_t nowMs) {
  if (ip == 0) return false;  // 0 marks an empty slot
  const uint64_t word = packMac(mac) | kValid;
  const uint32_t mask = static_cast<uint32_t>(slots_.size()) - 1;
  for (uint32_t i = hash(ip) & mask, n = 0; n <= mask; i = (i + 1) & mask, ++n) {
    Slot& s = slots_[i];
    uint32_t k = s.ip.load(std::memory_order_relaxed);
    if (k == ip) {
      s.macWord.store(word, std::memory_order_release);
      s.updatedMs = nowMs;
      return true;
    }
    if (k != 0) continue;
    if (used_ >= slots_.size() / 2) return false;
    // The MAC must be in place before a reader can match the IP.
    s.macWord.store(word, std::memory_order_release);
    s.updatedMs = nowMs;
    s.ip.store(ip, std::memory_order_release);
    ++used_;
    return true;
  }
  return false;
}

std::vector<uint32_t> NeighbourTable::age(uint64_t nowMs, uint64_t timeoutMs) {
  std::vector<uint32_t> refresh;
  for (Slot& s : slots_) {
    uint32_t ip = s.ip.load(std::memory_order_relaxed);
    if (ip == 0) continue;
    uint64_t w = s.macWord.load(std::memory_order_relaxed);
    if ((w & kValid) == 0) continue;
    uint64_t idle = nowMs >= s.updatedMs ? nowMs - s.updatedMs : 0;
    if (idle >= timeoutMs) {
      s.macWord.store(w & ~kValid, std::memory_order_release);
    } else if (idle >= timeoutMs / 2) {
      refresh.push_back(ip);
    }
  }
  return refresh;
}

std::size_t NeighbourTable::size() const {
  std::size_t n = 0;
  for (const Slot& s : slots_) {
    if (s.ip.load(std::memory_order_acquire) != 0 &&
        (s.macWord.load(std::memory_order_acquire) & kValid) != 0)
      ++n;
  }
  return n;
}

std::vector<NeighbourTable::Entry> NeighbourTable::entries() const {
  std::vector<Entry> out;
  for (const Slot& s : slots_) {
    uint32_t ip = s.ip.load(std::memory_order_acquire);
    if (ip == 0) continue;
    uint64_t w = s.macWord.load(std::memory_order_acquire);
    if ((w & kValid) == 0) continue;
    out.push_back(Entry{ip, unpackMac(w), s.updatedMs});
  }
  return out;
}

}  // namespace strait::dataplane
