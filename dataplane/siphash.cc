// The per-process SipHash key (see siphash.h): 16 bytes from getrandom,
// which blocks only until the kernel's pool is first initialised, long
// before a dataplane starts.
#include "dataplane/siphash.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace strait::dataplane {

SipKey randomSipKey() {
  uint8_t bytes[16];
  std::size_t got = 0;
  while (got < sizeof bytes) {
    const ssize_t n = getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("getrandom for the flow hash key failed: ") + std::strerror(errno));
    }
    got += static_cast<std::size_t>(n);
  }
  return SipKey{sip_detail::loadLe64(bytes), sip_detail::loadLe64(bytes + 8)};
}

}  // namespace strait::dataplane
