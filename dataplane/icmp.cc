// ICMP echo replies and ICMP error translation for the NAT core (see
// icmp.h). Errors are rare, so the ICMP checksum of a translated error is
// recomputed over the whole message instead of tracked through every
// change; the quoted IPv4 and L4 checksums are fixed incrementally because
// the quoted L4 data is truncated and cannot be summed again.
#include "dataplane/icmp.h"

#include "dataplane/checksum.h"
#include "dataplane/nat_rewrite.h"

namespace strait::dataplane {

namespace {
constexpr uint8_t kEchoReplyTtl = 64;
constexpr uint8_t kIcmpEchoReply = 0;
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
constexpr uint16_t kTcpCheckEnd = rw::kTcpCheck + 2;
constexpr uint16_t kUdpCheckEnd = rw::kUdpCheck + 2;
}  // namespace

void icmpEchoReply(uint8_t* frame, const PacketMeta& m) {
  rw::swapEtherAddrs(frame);

  uint8_t* l3 = frame + m.l3Off;
  // Swapping source and destination leaves the header sum unchanged.
  rw::store32(l3 + rw::kIpSrc, m.dstIp);
  rw::store32(l3 + rw::kIpDst, m.srcIp);
  const uint16_t ttlOld = rw::load16(l3 + rw::kIpTtl);
  l3[rw::kIpTtl] = kEchoReplyTtl;
  const uint16_t ttlNew = rw::load16(l3 + rw::kIpTtl);
  rw::store16(l3 + rw::kIpCheck, rw::applyDelta(rw::load16(l3 + rw::kIpCheck), rw::delta16(ttlOld, ttlNew)));

  uint8_t* icmp = frame + m.l4Off;
  const uint16_t typeOld = rw::load16(icmp);
  icmp[0] = kIcmpEchoReply;
  const uint16_t typeNew = rw::load16(icmp);
  rw::store16(icmp + rw::kIcmpCheck,
              rw::applyDelta(rw::load16(icmp + rw::kIcmpCheck), rw::delta16(typeOld, typeNew)));
}

void icmpTranslateError(uint8_t* frame, const PacketMeta& m, const Flow& f, Direction dir) {
  // What the peer we forward to expects to see.
  uint32_t outerDst, peerSide, ourSide, quotedSrc, quotedDst;
  uint16_t quotedSport, quotedDport;
  if (dir == Direction::kReply) {
    outerDst = f.clientIp;
    peerSide = f.backendIp;  // the backend itself reported: speak as the VIP
    ourSide = f.vip;
    quotedSrc = f.clientIp;
    quotedSport = f.clientPort;
    quotedDst = f.vip;
    quotedDport = f.vipPort;
  } else {
    outerDst = f.backendIp;
    peerSide = f.clientIp;  // the client itself reported: speak as the SNAT address
    ourSide = f.snatIp;
    quotedSrc = f.backendIp;
    quotedSport = f.backendPort;
    quotedDst = f.snatIp;
    quotedDport = f.snatPort;
  }

  // Quoted IPv4 header and L4 ports.
  uint8_t* in3 = frame + m.innerL3Off;
  uint8_t* in4 = frame + m.innerL4Off;
  const uint32_t addrDelta = rw::delta32(rw::load32(in3 + rw::kIpSrc), quotedSrc) +
                             rw::delta32(rw::load32(in3 + rw::kIpDst), quotedDst);
  rw::store32(in3 + rw::kIpSrc, quotedSrc);
  rw::store32(in3 + rw::kIpDst, quotedDst);
  rw::store16(in3 + rw::kIpCheck, rw::applyDelta(rw::load16(in3 + rw::kIpCheck), addrDelta));

  const uint32_t l4Delta = addrDelta + rw::delta16(rw::load16(in4 + rw::kL4SrcPort), quotedSport) +
                           rw::delta16(rw::load16(in4 + rw::kL4DstPort), quotedDport);
  rw::store16(in4 + rw::kL4SrcPort, quotedSport);
  rw::store16(in4 + rw::kL4DstPort, quotedDport);
  // The quoted L4 checksum is only fixed when the error carries it.
  if (m.innerProto == kProtoUdp && m.innerL4Avail >= kUdpCheckEnd)
    rw::store16(in4 + rw::kUdpCheck, rw::applyDeltaUdp(rw::load16(in4 + rw::kUdpCheck), l4Delta));
  else if (m.innerProto == kProtoTcp && m.innerL4Avail >= kTcpCheckEnd)
    rw::store16(in4 + rw::kTcpCheck, rw::applyDelta(rw::load16(in4 + rw::kTcpCheck), l4Delta));

  // ICMP checksum over the whole message (type, code, MTU field untouched).
  uint8_t* icmp = frame + m.l4Off;
  rw::store16(icmp + rw::kIcmpCheck, 0);
  rw::store16(icmp + rw::kIcmpCheck, checksumFold(checksumPartial(icmp, m.l4Len)));

  // Outer header: new destination, source translated when it is the peer
  // itself (an intermediate router keeps its own address), TTL decremented.
  uint8_t* l3 = frame + m.l3Off;
  const uint32_t outerSrc = m.srcIp == peerSide ? ourSide : m.srcIp;
  const uint32_t outerDelta =
      rw::delta32(rw::load32(l3 + rw::kIpSrc), outerSrc) + rw::delta32(rw::load32(l3 + rw::kIpDst), outerDst);
  rw::store32(l3 + rw::kIpSrc, outerSrc);
  rw::store32(l3 + rw::kIpDst, outerDst);
  const uint32_t ttlDelta = rw::decrementTtl(l3);
  rw::store16(l3 + rw::kIpCheck, rw::applyDelta(rw::load16(l3 + rw::kIpCheck), outerDelta + ttlDelta));
}

}  // namespace strait::dataplane
