// libFuzzer harness for the packet parser: raw bytes in as one frame. Beyond
// the sanitizers (a read past `end` is a heap overflow, since libFuzzer
// hands over an exact-size heap copy), it checks that every packet the
// parser accepts has offsets and lengths that lie inside the frame, which
// is what every later stage relies on without re-checking.
#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "dataplane/parse.h"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_parse: invariant violated: %s\n", what);
  std::abort();
}

void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using strait::DropReason;
  using strait::L3Kind;
  strait::PacketMeta m;
  const DropReason r = strait::dataplane::parsePacket(data, data + size, m);
  check(r == DropReason::kNone || r == DropReason::kMalformed || r == DropReason::kIpFragment ||
            r == DropReason::kUnsupportedProtocol,
        "unexpected drop reason");
  if (r != DropReason::kNone) return 0;

  check(m.l3Off == (m.hasVlan ? 18 : 14), "l3Off");
  if (m.l3 == L3Kind::kArp) {
    check(m.l3Off + 28u <= size, "ARP header beyond the frame");
    return 0;
  }
  if (m.l3 != L3Kind::kIpv4) return 0;

  const std::size_t ipEnd = std::size_t{m.l3Off} + m.ipTotalLen;
  check(ipEnd <= size, "IPv4 total length beyond the frame");
  check(m.ipHdrLen >= 20 && m.ipHdrLen <= 60 && m.ipHdrLen % 4 == 0, "ipHdrLen");
  check(m.l4Off == m.l3Off + m.ipHdrLen, "l4Off");
  check(std::size_t{m.l4Off} + m.l4Len == ipEnd, "l4Len");
  switch (m.l4Proto) {
    case IPPROTO_TCP:
      check(m.tcpHdrLen >= 20 && m.tcpHdrLen <= m.l4Len, "tcpHdrLen");
      break;
    case IPPROTO_UDP:
      check(m.l4Len >= 8, "UDP header");
      break;
    case IPPROTO_ICMP:
      check(m.l4Len >= 8, "ICMP header");
      if (m.icmpError) {
        check(m.innerL3Off == m.l4Off + 8, "innerL3Off");
        check(m.innerL4Off >= m.innerL3Off + 20, "innerL4Off");
        check(m.innerL4Avail >= 8, "innerL4Avail");
        check(std::size_t{m.innerL4Off} + m.innerL4Avail == ipEnd, "inner L4 beyond the IPv4 total length");
        check(m.innerProto == IPPROTO_TCP || m.innerProto == IPPROTO_UDP, "innerProto");
      }
      break;
    default:
      fail("accepted an unsupported protocol");
  }
  if (!m.icmpError) check(m.innerL3Off == 0 && m.innerProto == 0, "inner fields set without icmpError");
  return 0;
}
