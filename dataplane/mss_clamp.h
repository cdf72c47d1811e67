// TCP MSS clamping: lowers the MSS option of a SYN or SYN-ACK to a
// configured ceiling so that segments fit a path whose MTU is smaller than
// either end believes (tunnels, cross-region links that drop ICMP). The
// NAT core calls it on SYN (client side) and SYN-ACK (backend side) of
// services that configure a clamp.
#pragma once

#include <cstdint>

namespace strait::dataplane {

// `tcp` points at a TCP header whose `hdrLen` bytes (data offset * 4) are
// all present. If an MSS option larger than `clamp` is found, it is set to
// `clamp` and the TCP checksum is fixed incrementally. Returns true when the
// option was lowered. Malformed option lists are left untouched.
bool clampMss(uint8_t* tcp, uint16_t hdrLen, uint16_t clamp);

}  // namespace strait::dataplane
