// FlowKey: the 5-tuple that indexes the per-worker flow table. A full-NAT
// flow is entered twice: once under the client->VIP tuple as it arrives
// from the client, once under the backend->SNAT tuple its replies carry.
// Addresses and ports are kept in network byte order, exactly as they sit
// in the packet, so building a key never converts anything.
#pragma once

#include <cstdint>
#include <cstring>

namespace strait {

struct FlowKey {
  uint32_t srcIp = 0;    // network order
  uint32_t dstIp = 0;    // network order
  uint16_t srcPort = 0;  // network order (ICMP: 0)
  uint16_t dstPort = 0;  // network order
  uint8_t proto = 0;     // IPPROTO_TCP / IPPROTO_UDP
  uint8_t pad[3] = {0, 0, 0};

  bool operator==(const FlowKey& o) const { return std::memcmp(this, &o, sizeof(*this)) == 0; }
};
static_assert(sizeof(FlowKey) == 16, "FlowKey must stay 16 bytes: it is hashed as raw bytes");

// Which of the two keys of a flow a packet matched.
enum class Direction : uint8_t {
  kOriginal = 0,  // client -> VIP
  kReply = 1,     // backend -> SNAT address
};

}  // namespace strait
