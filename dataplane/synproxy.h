// The SYN proxy's packets and its per-packet translation. With cookies on,
// the proxy completes the client's handshake itself and opens the backend's
// connection only once the client has proved it can receive (netfilter's
// SYNPROXY dance, nf_synproxy_core.c):
//
//   client SYN            -> cookie SYN-ACK back to the client (no state)
//   client ACK (cookie ok)-> flow created, SYN to the backend with the
//                            client's ISN and options
//   backend SYN-ACK       -> ACK to the backend, and a window update to the
//                            client (our SYN-ACK offered a zero window, so
//                            the client sends no data before the backend
//                            connection exists)
//   afterwards            -> every packet translated: the two handshakes
//                            chose different ISNs (ours, the backend's) and
//                            timestamp clocks
//
// Translation, for the life of the flow (the client's sequence space is
// the same on both sides, only the backend's differs):
//   backend -> client: seq += delta, TSval += tsDelta, window rescaled
//   client -> backend: ack -= delta, SACK blocks -= delta, TSecr -= tsDelta,
//                      window rescaled where the backend did not agree to
//                      window scaling
// where delta = our ISN - backend ISN, tsDelta = our TSval - backend TSval.
//
// Window scale. Our SYN-ACK must name a scale before the backend's is
// known: it offers kProxyWscale (7, what Linux picks for its default
// buffers) when the client offered one. A backend window field w (scale
// Wb) is sent to the client as (w << Wb) >> 7, rounded up so a non-zero
// window never turns into a zero one, and capped at 65535: with Wb > 7 the
// client sees at most 65535 << 7 bytes (8 MiB), with Wb < 7 the window is
// announced in steps of 128 bytes (at most 127 bytes more than offered).
//
// Everything works on the frame in place and recomputes the checksums in
// full for the frames it builds (a handful per connection) and
// incrementally for the ones it translates. No allocation, no I/O.
#pragma once

#include <cstdint>

#include "dataplane/flow_table.h"
#include "dataplane/proxy_protocol.h"
#include "dataplane/syncookie.h"
#include "dataplane/tcp_state.h"
#include "strait/flow_key.h"
#include "strait/packet_meta.h"

namespace strait::dataplane {

// Flow::flags bits owned by the SYN proxy.
inline constexpr uint8_t kFlowSynProxy = 0x40;       // opened from a cookie: translate
inline constexpr uint8_t kFlowSynProxyReady = 0x80;  // backend's SYN-ACK seen: deltas known

// The window scale our cookie SYN-ACKs offer (when the client offered one).
inline constexpr uint8_t kProxyWscale = 7;

// The most bytes a frame built here occupies past its L3 offset (20 bytes
// of IPv4, 20 of TCP and 40 of options at most, of which 20 are used).
inline constexpr uint16_t kSynProxyMaxL3Len = 20 + 20 + 40;
// A client's probe of our zero window at least this long after its last
// segment, while the backend has not answered: the backend's SYN is sent
// again (nat.cc). Shorter than Linux's smallest retransmission timeout
// (200 ms), so its first probe qualifies; probes closer together are
// dropped as syn_cookie_replayed.
inline constexpr uint32_t kSynProxyResendMs = 100;

// Reads the MSS, window scale, SACK-permitted and timestamp options of a
// SYN. Stops quietly at a malformed option (what was read stays).
void parseSynOptions(const uint8_t* tcp, uint16_t hdrLen, SynOptions& o);

// Offset of the timestamp option in a TCP header, 0 when absent.
uint16_t findTimestamp(const uint8_t* tcp, uint16_t hdrLen);

// The TSval and TSecr of the timestamp option at `off` (host order).
void readTimestamp(const uint8_t* tcp, uint16_t off, uint32_t& tsVal, uint32_t& tsEcr);

// Whether the TCP checksum of the parsed segment is right (a full sum:
// only for the few segments the proxy rebuilds from scratch).
bool tcpChecksumOk(const uint8_t* frame, const PacketMeta& m);

// Host-order TCP fields.
uint32_t tcpSeq(const uint8_t* tcp);
uint32_t tcpAck(const uint8_t* tcp);
uint16_t tcpWindow(const uint8_t* tcp);

// The client's SYN `frame` (parsed into `m`) becomes our SYN-ACK in place:
// Ethernet addresses swapped (it leaves by the port it came in), a fresh
// 20-byte IPv4 header (TTL 64, DF, id 0) from the VIP to the client, ISN
// `cookie`, zero window, and options MSS `mss`, SACK-permitted, timestamps
// (TSval `tsVal`) and window scale kProxyWscale, each only when the client
// offered it. Returns the new frame length.
uint16_t writeCookieSynAck(uint8_t* frame, const PacketMeta& m, uint32_t cookie, const SynOptions& client,
                           uint16_t mss, uint32_t tsVal);

// The client's cookie ACK becomes the SYN to the backend of flow `f`, in
// place: SNAT address to backend, ISN = the client's, window = the
// client's (unscaled, capped), options from `client` (MSS, SACK-permitted,
// window scale, timestamps with the client's current TSval and TSecr 0).
// Ethernet is left to the output stage. Returns the new frame length.
uint16_t writeBackendSyn(uint8_t* frame, const PacketMeta& m, const Flow& f, uint32_t clientIsn,
                         uint16_t window, const SynOptions& client);

// What the backend's SYN-ACK said, read before the frame is rewritten.
struct BackendSynAck {
  uint32_t isn = 0;      // host order
  uint32_t ack = 0;      // = client ISN + 1
  uint16_t window = 0;   // unscaled (SYN segments never are)
  uint8_t wscale = kNoWscale;
  bool hasTs = false;
  uint32_t tsVal = 0;
  uint32_t tsEcr = 0;
};
BackendSynAck readBackendSynAck(const uint8_t* tcp, uint16_t hdrLen);

// Records the backend's ISN, timestamp clock and window scale in `x` (the
// flow's translation, FlowTable::xlate) and marks `f` ready: from now on translate() applies.
void synProxyLearnBackend(Flow& f, FlowXlate& x, const BackendSynAck& sa);

// The backend's SYN-ACK `frame` becomes the ACK that completes the
// backend's handshake, in place (SNAT address to backend; the client's
// window from its ACK; timestamps echoed), carrying the PROXY header while
// the flow has one not yet acknowledged (the frame must have room for
// kSynProxyMaxL3Len + kProxyV2Len past l3Off). Returns the new frame length.
uint16_t writeBackendAck(uint8_t* frame, const PacketMeta& m, const Flow& f, const FlowXlate& x,
                         const BackendSynAck& sa);

// Writes into `frame` (a fresh buffer of at least l3Off +
// kSynProxyMaxL3Len bytes) the window update that opens the client's
// window: VIP to client, seq = our ISN + 1, the backend's window rescaled,
// timestamps translated. The Ethernet header (and any 802.1Q tag) is
// copied from `like`, a frame of the same port; the output stage rewrites
// the addresses. Returns the frame length.
uint16_t writeClientWindowUpdate(uint8_t* frame, const uint8_t* like, uint16_t l3Off, const Flow& f,
                                 const FlowXlate& x, const BackendSynAck& sa);

// The client's sequence number the backend's reset refers to, for a reset
// that arrives before the backend's SYN-ACK: the client is told seq = our
// ISN + 1, which its window accepts.
void synProxyEarlyReset(uint8_t* tcp, const FlowXlate& x);

// Translates a segment that has already been rewritten to its new
// addresses; `tcp` is the TCP header. One translation per direction, each
// the sum of what the flow needs:
//   SYN proxy (ready flows): the backend's sequence space is shifted by
//     spSeqDelta, its timestamp clock by spTsDelta, windows rescaled (see
//     the file comment);
//   PROXY protocol (ppFlags & kPpOn): the client's sequence space is
//     shifted by kProxyV2Len on the backend's side (proxy_protocol.h):
//     client -> backend seq += L; backend -> client ack and SACK edges -= L,
//     never below ppStart. A backend ack covering the header sets kPpAcked.
// Returns true when the segment is one the PROXY header must ride on: from
// the client, seq == ppStart, no RST, header not yet acknowledged. Its
// sequence number is then left as it is (the header takes ppStart) and the
// caller inserts the header.
// `x` is the flow's translation; read only when f's flags say it is a
// ready SYN proxy flow.
bool translateSegment(uint8_t* tcp, uint16_t hdrLen, Flow& f, const FlowXlate& x, Direction dir);

// Translates the TCP header quoted in an ICMP error about a flow that
// translates (a ready SYN proxy flow, a PROXY protocol flow; `in4`,
// `avail` bytes of it present), before the error is passed on (the caller
// recomputes the ICMP checksum), so that the receiver finds its own
// numbers in it. kOriginal: the client's side reported a segment we sent
// it: its seq goes back into the backend's space. kReply: the backend's
// side reported a segment we sent it: its seq goes back into the client's
// space (less the PROXY header) and its ack (when quoted) into the
// client's view of the backend. The quoted TCP checksum is fixed when
// present.
void translateQuote(uint8_t* in4, uint16_t avail, const Flow& f, const FlowXlate& x, Direction dir);

// (w << in) >> out, rounded up, capped at 65535; `in`/`out` 0..14.
uint16_t rescaleWindow(uint16_t w, uint8_t in, uint8_t out);

// Sequence tracking (tcp_state.h) of a cookie flow follows the backend's
// connection: the SYN the backend was sent, its SYN-ACK, and every segment
// as the backend sends or receives it. Backend segments are already in
// that space; a ready flow's client segment has its acknowledgement number
// taken back into the backend's space and its window field rescaled as
// translateSegment would. So an in-window RST from either side is seen
// as in window, and an out-of-window one as out.
void synProxyTrackerView(TcpSegment& seg, const FlowXlate& x, Direction dir);

// A client window field of a ready flow as the backend receives it.
uint16_t synProxyWindowToBackend(const FlowXlate& x, uint16_t window);

}  // namespace strait::dataplane
