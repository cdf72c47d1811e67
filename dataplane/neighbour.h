// Neighbour (ARP) table: IPv4 next hop -> MAC. One writer, the control
// thread (which sees every ARP packet), and many readers, the workers, with
// no locks: entries live in a fixed open-addressing array, a slot's IP is
// written once, and its MAC and validity are one 64-bit word that readers
// load atomically. Entries are invalidated when they age, never removed, so
// a reader can never follow a slot that is being reused for another IP.
#pragma once

#include <rte_ether.h>

#include <atomic>
#include <cstdint>
#include <vector>

namespace strait::dataplane {

class NeighbourTable {
 public:
  explicit NeighbourTable(uint32_t capacity = 4096);

  // Reader (any thread): the MAC of `ip` (network order) if resolved.
  bool lookup(uint32_t ip, rte_ether_addr& mac) const {
    uint32_t mask = static_cast<uint32_t>(slots_.size()) - 1;
    for (uint32_t i = hash(ip) & mask, n = 0; n <= mask; i = (i + 1) & mask, ++n) {
      uint32_t k = slots_[i].ip.load(std::memory_order_acquire);
      if (k == 0) return false;
      if (k != ip) continue;
      uint64_t w = slots_[i].macWord.load(std::memory_order_acquire);
      if ((w & kValid) == 0) return false;
      for (int b = 0; b < 6; ++b) mac.addr_bytes[b] = static_cast<uint8_t>(w >> (8 * b));
      return true;
    }
    return false;
  }

  // Writer (control thread only). Returns false when the table is full.
  bool update(uint32_t ip, const rte_ether_addr& mac, uint64_t nowMs);
  // Writer: invalidates entries not confirmed for `timeoutMs`; returns the
  // IPs that are due for a refresh (older than timeoutMs / 2, still valid).
  std::vector<uint32_t> age(uint64_t nowMs, uint64_t timeoutMs);
  // Valid entries (control path).
  std::size_t size() const;
  struct Entry {
    uint32_t ip;
    rte_ether_addr mac;
    uint64_t updatedMs;
  };
  std::vector<Entry> entries() const;

 private:
  static constexpr uint64_t kValid = 1ull << 63;
  static uint32_t hash(uint32_t ip) { return (ip * 0x9e3779b1u) >> 5; }
  struct Slot {
    std::atomic<uint32_t> ip{0};
    std::atomic<uint64_t> macWord{0};
    uint64_t updatedMs = 0;  // writer only
  };
  std::vector<Slot> slots_;
  // Slots holding an IP (writer only). Inserts stop at half the slots so
  // probe sequences, including a reader's search for an absent IP, stay short.
  std::size_t used_ = 0;
};

}  // namespace strait::dataplane
