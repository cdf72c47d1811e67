// TCP MSS clamping (see mss_clamp.h). Walks the option list with a bounds
// check before every read, so a hostile option list can neither make us
// read past the header nor loop forever.
#include "dataplane/mss_clamp.h"

#include "dataplane/nat_rewrite.h"

namespace strait::dataplane {

namespace {
constexpr uint8_t kOptEol = 0;
constexpr uint8_t kOptNop = 1;
constexpr uint8_t kOptMss = 2;
constexpr uint8_t kOptMssLen = 4;
constexpr uint16_t kTcpBaseLen = 20;
}  // namespace

bool clampMss(uint8_t* tcp, uint16_t hdrLen, uint16_t clamp) {
  uint16_t off = kTcpBaseLen;
  while (off < hdrLen) {
    const uint8_t kind = tcp[off];
    if (kind == kOptEol) return false;
    if (kind == kOptNop) {
      ++off;
      continue;
    }
    if (off + 1 >= hdrLen) return false;
    const uint8_t len = tcp[off + 1];
    if (len < 2 || off + len > hdrLen) return false;
    if (kind == kOptMss) {
      if (len != kOptMssLen) return false;
      const uint16_t valOff = off + 2;
      const uint16_t mss = static_cast<uint16_t>(tcp[valOff] << 8 | tcp[valOff + 1]);
      if (mss <= clamp) return false;
      // The checksum is a sum of 16-bit words aligned to the TCP header. An
      // MSS value at an odd offset straddles two of them, so sum the
      // aligned span that covers it before and after the write.
      const uint16_t spanOff = valOff & ~uint16_t{1};
      const uint16_t spanLen = (valOff & 1) ? 4 : 2;
      uint32_t delta = 0;
      uint16_t before[2] = {0, 0};
      for (uint16_t w = 0; w < spanLen / 2; ++w) before[w] = rw::load16(tcp + spanOff + 2 * w);
      tcp[valOff] = static_cast<uint8_t>(clamp >> 8);
      tcp[valOff + 1] = static_cast<uint8_t>(clamp & 0xff);
      for (uint16_t w = 0; w < spanLen / 2; ++w)
        delta += rw::delta16(before[w], rw::load16(tcp + spanOff + 2 * w));
      rw::store16(tcp + rw::kTcpCheck, rw::applyDelta(rw::load16(tcp + rw::kTcpCheck), delta));
      return true;
    }
    off = static_cast<uint16_t>(off + len);
  }
  return false;
}

}  // namespace strait::dataplane
