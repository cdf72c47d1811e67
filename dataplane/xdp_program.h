// Strait's XDP program on the host side, for the shared-NIC mode
// (`port = "xdp:IFNAME"`): the object built into straitd, handed to DPDK's
// net_af_xdp PMD as a file it loads and attaches itself (`xdp_prog=`), and
// the handles the control plane keeps to the attached program's maps.
//
// Why the PMD loads it rather than straitd: DPDK 22.11's af_xdp PMD either
// loads a program from a path or installs libxdp's default one; it has no
// way to adopt a program already attached. So straitd gives it the object
// through a memfd (/proc/self/fd/N), then finds what the kernel attached to
// IFNAME (bpf_xdp_query_id -> prog id -> bpf_prog_info.map_ids) and opens
// the address and counter maps by id. No bpffs pinning is needed, which
// matters because `ip netns exec` hides bpffs.
//
// Detaching: the PMD detaches on port close; XdpAttachment's destructor
// detaches too if the program is still there (every unwinding exit path);
// and a program left by a crashed straitd, recognised by its name, is
// removed by clearStaleProgram() at the next start.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "strait/xdp_abi.h"

namespace strait::dataplane {

using XdpVerdictCounts = std::array<uint64_t, STRAIT_XDP_VERDICT_COUNT>;

// Metric label of a verdict ("steer_tcp", "pass_ipv6", ...).
const char* xdpVerdictName(unsigned verdict);

// The compiled program, as built into the binary.
const uint8_t* xdpObjectData();
std::size_t xdpObjectSize();

// The object in an anonymous memory file, for the PMD's `xdp_prog=` devarg.
class XdpObjectFile {
 public:
  XdpObjectFile();  // throws std::runtime_error
  ~XdpObjectFile();
  XdpObjectFile(const XdpObjectFile&) = delete;
  XdpObjectFile& operator=(const XdpObjectFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// Interface index of `ifname` in this network namespace; throws naming it.
int interfaceIndex(const std::string& ifname);

// How many AF_XDP queues DPDK 22.11's net_af_xdp can bind on `ifname`: the
// combined channels ethtool reports, and 1 for a device that reports none
// (veth, for one), as the PMD counts them.
int xdpQueueLimit(const std::string& ifname);

// Exclusive claim of an interface by this straitd: an flock on
// /run/strait/xdp-<netns inode>-<ifindex>.lock, released by the kernel when
// the process ends however it ends. Only the holder may treat a Strait
// program on the interface as stale; a second straitd on the same
// interface is refused instead of tearing down the first one's program.
// A clean exit removes the file (after the program is gone); one left by a
// crash is reused.
class XdpInterfaceLock {
 public:
  explicit XdpInterfaceLock(const std::string& ifname);  // throws std::runtime_error
  ~XdpInterfaceLock();
  XdpInterfaceLock(const XdpInterfaceLock&) = delete;
  XdpInterfaceLock& operator=(const XdpInterfaceLock&) = delete;

 private:
  int fd_ = -1;
  std::string path_;
};

// Removes a Strait XDP program left attached to `ifname` (by a straitd that
// did not exit cleanly; call with the interface's XdpInterfaceLock held). Returns true when one was removed. Throws when a
// program that is not Strait's is attached: straitd will not replace it.
bool clearStaleProgram(const std::string& ifname);

// Detaches Strait's program from `ifname` if it is the one attached.
void detachProgram(const std::string& ifname);

// The AF_XDP sockets this process holds now (descriptors). net_af_xdp keeps
// its sockets to itself; straitd takes the set before and after a port's
// queues are set up, and the new ones are that port's.
std::vector<int> xdpSocketFds();

// What the kernel counted on straitd's AF_XDP sockets (XDP_STATISTICS,
// summed): frames the program steered that never reached straitd, and
// descriptors it refused. DPDK 22.11 reports only rx_dropped (as imissed).
struct XdpSocketStats {
  uint64_t rxRingFull = 0;  // the RX ring was full: straitd did not drain it in time
  uint64_t rxDropped = 0;   // no fill-ring buffer for the frame, or the frame too large
  uint64_t rxFillRingEmpty = 0;  // times the kernel found the fill ring empty
  uint64_t rxInvalid = 0;   // invalid descriptors on the fill ring
  uint64_t txInvalid = 0;   // invalid descriptors on the TX ring
};
// Sums XDP_STATISTICS over `fds`; a descriptor the kernel no longer answers
// for is skipped.
XdpSocketStats xdpSocketStats(const std::vector<int>& fds);

// The program attached to an interface and its maps, found after the PMD
// attached it.
class XdpAttachment {
 public:
  explicit XdpAttachment(const std::string& ifname);  // throws std::runtime_error
  ~XdpAttachment();
  XdpAttachment(const XdpAttachment&) = delete;
  XdpAttachment& operator=(const XdpAttachment&) = delete;

  const std::string& ifname() const { return ifname_; }
  uint32_t programId() const { return progId_; }
  // Makes the address map hold exactly `roles` (IPv4 network order -> role
  // bits). Returns false and leaves a partial update when the kernel refuses.
  bool setAddresses(const std::map<uint32_t, uint32_t>& roles);
  // The verdict counters summed over CPUs.
  XdpVerdictCounts counters() const;

 private:
  std::string ifname_;
  int ifindex_ = 0;
  uint32_t progId_ = 0;
  int addrFd_ = -1;
  int statsFd_ = -1;
  std::map<uint32_t, uint32_t> current_;
};

}  // namespace strait::dataplane
