// The stateless TCP/HTTP responder of the instance health endpoint; see
// health_endpoint.h.
#include "dataplane/health_endpoint.h"

#include <netinet/in.h>
#include <rte_byteorder.h>

#include <cstring>

#include "dataplane/checksum.h"
#include "dataplane/nat_rewrite.h"
#include "dataplane/siphash.h"

namespace strait::dataplane {

namespace {

constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;
constexpr unsigned kTcpHdr = 20;
constexpr uint16_t kWindow = 8192;
constexpr uint8_t kTtl = 64;

// The responses, whole. Connection: close, and the FIN rides with them.
constexpr char kReady[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: close\r\n\r\nready\n";
constexpr char kDegraded[] =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: "
    "close\r\n\r\ndegraded\n";
constexpr char kDraining[] =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: "
    "close\r\n\r\ndraining\n";

uint32_t seqAt(const uint8_t* tcp, unsigned off) { return rte_be_to_cpu_32(rw::load32(tcp + off)); }

// Rewrites the frame into a reply from us to the sender: MACs and
// addresses swapped, a bare 20-byte TCP header with `flags`, then
// `payload`. Returns false when the mbuf has no room for it.
bool writeReply(rte_mbuf* mb, const PacketMeta& m, uint32_t seq, uint32_t ack, uint8_t flags, const char* payload,
                uint16_t payloadLen) {
  const uint32_t frameLen = uint32_t{m.l4Off} + kTcpHdr + payloadLen;
  if (frameLen > uint32_t{mb->buf_len} - mb->data_off) return false;
  uint8_t* frame = rte_pktmbuf_mtod(mb, uint8_t*);
  rw::swapEtherAddrs(frame);

  uint8_t* ip = frame + m.l3Off;
  rw::store32(ip + rw::kIpSrc, m.dstIp);
  rw::store32(ip + rw::kIpDst, m.srcIp);
  rw::store16(ip + 2, rte_cpu_to_be_16(static_cast<uint16_t>(m.ipHdrLen + kTcpHdr + payloadLen)));
  rw::store16(ip + 4, 0);                       // identification
  rw::store16(ip + 6, rte_cpu_to_be_16(0x4000));  // DF, no fragment offset
  ip[rw::kIpTtl] = kTtl;
  rw::store16(ip + rw::kIpCheck, 0);
  rw::store16(ip + rw::kIpCheck, ipv4HeaderChecksum(ip, m.ipHdrLen));

  uint8_t* tcp = frame + m.l4Off;
  rw::store16(tcp + rw::kL4SrcPort, m.dstPort);
  rw::store16(tcp + rw::kL4DstPort, m.srcPort);
  rw::store32(tcp + 4, rte_cpu_to_be_32(seq));
  rw::store32(tcp + 8, rte_cpu_to_be_32(ack));
  tcp[12] = static_cast<uint8_t>((kTcpHdr / 4) << 4);
  tcp[13] = flags;
  rw::store16(tcp + 14, rte_cpu_to_be_16(kWindow));
  rw::store16(tcp + 16, 0);
  rw::store16(tcp + 18, 0);  // urgent pointer
  if (payloadLen) std::memcpy(tcp + kTcpHdr, payload, payloadLen);
  rw::store16(tcp + rw::kTcpCheck, l4Checksum(m.dstIp, m.srcIp, IPPROTO_TCP, tcp, kTcpHdr + payloadLen));

  mb->data_len = static_cast<uint16_t>(frameLen);
  mb->pkt_len = frameLen;
  mb->ol_flags = 0;
  return true;
}

}  // namespace

uint32_t healthIsn(const InstanceHealthView& h, uint32_t srcIp, uint32_t dstIp, uint16_t srcPort, uint16_t dstPort) {
  // SipHash-2-4 of the 4-tuple under a per-process key, as SYN cookies
  // use: the value is seen by the peer, so it must not reveal the key. An
  // off-path sender cannot guess it, so a request is answered only when it
  // comes from the address that received the SYN-ACK.
  const uint64_t x = sipHash16<2, 4>(SipKey{h.key0, h.key1}, uint64_t{srcIp} << 32 | dstIp,
                                     uint64_t{srcPort} << 16 | dstPort);
  return static_cast<uint32_t>(x ^ (x >> 32));
}

HealthReply healthEndpointReply(rte_mbuf* mb, const PacketMeta& m, const InstanceHealthView& h) {
  const uint8_t* tcp = rte_pktmbuf_mtod_offset(mb, const uint8_t*, m.l4Off);
  const uint8_t f = m.tcpFlags;
  const uint32_t seq = seqAt(tcp, 4);
  const uint32_t ack = seqAt(tcp, 8);
  const uint16_t dataLen = m.l4Len > m.tcpHdrLen ? static_cast<uint16_t>(m.l4Len - m.tcpHdrLen) : 0;
  const uint32_t isn = healthIsn(h, m.srcIp, m.dstIp, m.srcPort, m.dstPort);

  if (f & kRst) return HealthReply::kConsumed;
  if ((f & kSyn) && !(f & (kAck | kFin))) {
    return writeReply(mb, m, isn, seq + 1, kSyn | kAck, nullptr, 0) ? HealthReply::kSent : HealthReply::kConsumed;
  }
  if ((f & kAck) && !(f & kSyn)) {
    if (dataLen > 0 && ack == isn + 1) {
      const char* body = h.status == InstanceStatus::kReady      ? kReady
                         : h.status == InstanceStatus::kDraining ? kDraining
                                                                 : kDegraded;
      const auto len = static_cast<uint16_t>(std::strlen(body));
      const uint32_t theirNext = seq + dataLen + ((f & kFin) ? 1 : 0);
      return writeReply(mb, m, isn + 1, theirNext, kAck | kPsh | kFin, body, len) ? HealthReply::kSent
                                                                                : HealthReply::kConsumed;
    }
    if (f & kFin) {
      // Their FIN after our response (ack = our FIN + 1): acknowledge it.
      return writeReply(mb, m, ack, seq + dataLen + 1, kAck, nullptr, 0) ? HealthReply::kSent
                                                                         : HealthReply::kConsumed;
    }
    if (dataLen == 0) return HealthReply::kConsumed;  // handshake ACK, ACK of our FIN
  }
  // Anything else (data that does not follow our SYN-ACK, stray segments):
  // reset, with the sequence number the sender expects.
  if (f & kAck) return writeReply(mb, m, ack, 0, kRst, nullptr, 0) ? HealthReply::kSent : HealthReply::kConsumed;
  return writeReply(mb, m, 0, seq + dataLen + ((f & (kSyn | kFin)) ? 1 : 0), kRst | kAck, nullptr, 0)
             ? HealthReply::kSent
             : HealthReply::kConsumed;
}

}  // namespace strait::dataplane
