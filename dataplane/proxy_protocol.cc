// PROXY protocol v2 header and its insertion into a frame (see
// proxy_protocol.h).
#include "dataplane/proxy_protocol.h"

#include <rte_mbuf.h>

#include <cstring>

#include "dataplane/nat_rewrite.h"

namespace strait::dataplane {

namespace {
// "\r\n\r\n\0\r\nQUIT\n"
constexpr uint8_t kSignature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr uint8_t kVersionProxy = 0x21;   // version 2, command PROXY
constexpr uint8_t kInetStream = 0x11;     // AF_INET, STREAM
constexpr uint16_t kInetAddrLen = 12;     // two addresses, two ports
constexpr unsigned kIpTotalLen = 2;
}  // namespace

void writeProxyV2(uint8_t* out, uint32_t srcIp, uint32_t dstIp, uint16_t srcPort, uint16_t dstPort) {
  std::memcpy(out, kSignature, sizeof(kSignature));
  out[12] = kVersionProxy;
  out[13] = kInetStream;
  out[14] = static_cast<uint8_t>(kInetAddrLen >> 8);
  out[15] = static_cast<uint8_t>(kInetAddrLen);
  std::memcpy(out + 16, &srcIp, 4);
  std::memcpy(out + 20, &dstIp, 4);
  std::memcpy(out + 24, &srcPort, 2);
  std::memcpy(out + 26, &dstPort, 2);
}

bool insertProxyV2(rte_mbuf* mb, uint16_t l3Off, uint16_t l4Off, uint16_t tcpHdrLen, const Flow& f) {
  const uint16_t hdrEnd = static_cast<uint16_t>(l4Off + tcpHdrLen);
  // Ethernet padding of a short frame (a pure ACK is 54 bytes of a 60-byte
  // minimum) would otherwise end up between the header and nothing.
  {
    const uint8_t* ip0 = rte_pktmbuf_mtod_offset(mb, const uint8_t*, l3Off);
    const uint32_t end = l3Off + rte_be_to_cpu_16(rw::load16(ip0 + kIpTotalLen));
    if (end < rte_pktmbuf_data_len(mb)) rte_pktmbuf_trim(mb, static_cast<uint16_t>(rte_pktmbuf_data_len(mb) - end));
  }
  const uint16_t oldLen = rte_pktmbuf_data_len(mb);
  uint8_t* frame;
  if (rte_pktmbuf_headroom(mb) >= kProxyV2Len) {
    uint8_t* old = rte_pktmbuf_mtod(mb, uint8_t*);
    frame = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(mb, kProxyV2Len));
    std::memmove(frame, old, hdrEnd);
  } else if (rte_pktmbuf_tailroom(mb) >= kProxyV2Len) {
    frame = rte_pktmbuf_mtod(mb, uint8_t*);
    rte_pktmbuf_append(mb, kProxyV2Len);
    std::memmove(frame + hdrEnd + kProxyV2Len, frame + hdrEnd, oldLen - hdrEnd);
  } else {
    return false;
  }
  uint8_t* hdr = frame + hdrEnd;
  writeProxyV2(hdr, f);

  uint8_t* ip = frame + l3Off;
  uint8_t* tcp = frame + l4Off;
  const uint16_t ipLenBefore = rw::load16(ip + kIpTotalLen);
  const uint16_t ipLenAfter = rte_cpu_to_be_16(static_cast<uint16_t>(rte_be_to_cpu_16(ipLenBefore) + kProxyV2Len));
  rw::store16(ip + kIpTotalLen, ipLenAfter);
  rw::store16(ip + rw::kIpCheck, rw::applyDelta(rw::load16(ip + rw::kIpCheck), rw::delta16(ipLenBefore, ipLenAfter)));

  // TCP: the pseudo-header's length grows by L and the header's 14 words
  // join the sum; the payload keeps its word alignment (L and the TCP
  // header length are even), so its part of the sum is unchanged.
  const uint16_t segBefore = rte_cpu_to_be_16(static_cast<uint16_t>(rte_be_to_cpu_16(ipLenBefore) - (l4Off - l3Off)));
  const uint16_t segAfter = rte_cpu_to_be_16(static_cast<uint16_t>(rte_be_to_cpu_16(segBefore) + kProxyV2Len));
  uint32_t d = rw::delta16(segBefore, segAfter);
  for (unsigned w = 0; w < kProxyV2Len; w += 2) d += rw::load16(hdr + w);
  rw::store16(tcp + rw::kTcpCheck, rw::applyDelta(rw::load16(tcp + rw::kTcpCheck), d));
  return true;
}

}  // namespace strait::dataplane
