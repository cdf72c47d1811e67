// XdpObjectFile, stale-program removal and XdpAttachment: the libbpf side
// of the shared-NIC mode (see xdp_program.h for why the PMD loads the
// program and straitd adopts its maps by id).
#include "dataplane/xdp_program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace strait::dataplane {

extern const uint8_t kXdpObject[];
extern const std::size_t kXdpObjectSize;

namespace {

constexpr const char* kVerdictNames[STRAIT_XDP_VERDICT_COUNT] = {
    "steer_tcp", "steer_udp", "steer_icmp", "steer_other", "steer_arp", "pass_ipv4",
    "pass_arp",  "pass_ipv6", "pass_other", "pass_truncated", "drop_no_socket",
};

std::string errnoText(int e) { return std::strerror(e < 0 ? -e : e); }

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_;
};

struct Attached {
  uint32_t progId = 0;
  uint32_t flags = 0;  // the mode flag to detach with
};

// Which program is attached to `ifindex`, and in which mode.
Attached queryAttached(int ifindex, const std::string& ifname) {
  LIBBPF_OPTS(bpf_xdp_query_opts, q);
  int rc = bpf_xdp_query(ifindex, 0, &q);
  if (rc != 0) throw std::runtime_error("XDP query on " + ifname + " failed: " + errnoText(rc));
  Attached a;
  switch (q.attach_mode) {
    case XDP_ATTACHED_DRV:
      a = {q.drv_prog_id, XDP_FLAGS_DRV_MODE};
      break;
    case XDP_ATTACHED_SKB:
      a = {q.skb_prog_id, XDP_FLAGS_SKB_MODE};
      break;
    case XDP_ATTACHED_HW:
      a = {q.hw_prog_id, XDP_FLAGS_HW_MODE};
      break;
    case XDP_ATTACHED_MULTI:
      // Several modes at once is not something straitd sets up.
      a = {q.drv_prog_id ? q.drv_prog_id : q.skb_prog_id, q.drv_prog_id ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE};
      break;
    default:
      break;
  }
  return a;
}

std::string programName(int progFd) {
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(progFd, &info, &len) != 0) return {};
  return info.name;
}

// Detaches the program `a` from `ifindex` only if it is still the one
// attached (XDP_FLAGS_REPLACE makes the check and the detach one step).
void detachIfStill(int ifindex, const Attached& a, int progFd) {
  LIBBPF_OPTS(bpf_xdp_attach_opts, opts, .old_prog_fd = progFd);
  bpf_xdp_detach(ifindex, a.flags | XDP_FLAGS_REPLACE, &opts);
}

}  // namespace

const char* xdpVerdictName(unsigned verdict) {
  return verdict < STRAIT_XDP_VERDICT_COUNT ? kVerdictNames[verdict] : "unknown";
}

const uint8_t* xdpObjectData() { return kXdpObject; }
std::size_t xdpObjectSize() { return kXdpObjectSize; }

XdpObjectFile::XdpObjectFile() {
  fd_ = memfd_create("strait_xdp.bpf.o", MFD_CLOEXEC);
  if (fd_ < 0) throw std::runtime_error("memfd_create for the XDP object failed: " + errnoText(errno));
  std::size_t done = 0;
  while (done < kXdpObjectSize) {
    ssize_t n = write(fd_, kXdpObject + done, kXdpObjectSize - done);
    if (n <= 0) {
      int e = errno;
      close(fd_);
      throw std::runtime_error("writing the XDP object failed: " + errnoText(e));
    }
    done += static_cast<std::size_t>(n);
  }
  path_ = "/proc/self/fd/" + std::to_string(fd_);
}

XdpObjectFile::~XdpObjectFile() {
  if (fd_ >= 0) close(fd_);
}

int interfaceIndex(const std::string& ifname) {
  unsigned idx = if_nametoindex(ifname.c_str());
  if (idx == 0)
    throw std::runtime_error("interface " + ifname + ": not found in this network namespace (" +
                             errnoText(errno) + ")");
  return static_cast<int>(idx);
}

int xdpQueueLimit(const std::string& ifname) {
  Fd s(socket(AF_INET, SOCK_DGRAM, 0));
  if (s.get() < 0) return 1;
  ethtool_channels ch{};
  ch.cmd = ETHTOOL_GCHANNELS;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  ifr.ifr_data = reinterpret_cast<char*>(&ch);
  if (ioctl(s.get(), SIOCETHTOOL, &ifr) != 0 || ch.max_combined == 0) return 1;
  return static_cast<int>(ch.combined_count);
}

XdpInterfaceLock::XdpInterfaceLock(const std::string& ifname) {
  const int ifindex = interfaceIndex(ifname);
  struct stat ns{};
  if (stat("/proc/self/ns/net", &ns) != 0)
    throw std::runtime_error("cannot identify this network namespace: " + errnoText(errno));
  mkdir("/run/strait", 0755);  // may exist already
  const std::string path = "/run/strait/xdp-" + std::to_string(ns.st_ino) + "-" + std::to_string(ifindex) + ".lock";
  path_ = path;
  fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw std::runtime_error("cannot open " + path + ": " + errnoText(errno));
  if (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    close(fd_);
    fd_ = -1;
    if (e == EWOULDBLOCK)
      throw std::runtime_error("interface " + ifname + ": another straitd is serving it (" + path + " is locked)");
    throw std::runtime_error("cannot lock " + path + ": " + errnoText(e));
  }
}

XdpInterfaceLock::~XdpInterfaceLock() {
  if (fd_ < 0) return;
  // Unlink while still holding the lock: a straitd that opened the old file
  // meanwhile fails its flock and refuses, one that comes later creates a
  // fresh file; either way only one holds a lock on a live path.
  unlink(path_.c_str());
  close(fd_);
}

bool clearStaleProgram(const std::string& ifname) {
  const int ifindex = interfaceIndex(ifname);
  const Attached a = queryAttached(ifindex, ifname);
  if (a.progId == 0) return false;
  Fd prog(bpf_prog_get_fd_by_id(a.progId));
  if (prog.get() < 0)
    throw std::runtime_error("interface " + ifname + ": XDP program id " + std::to_string(a.progId) +
                             " is attached and cannot be inspected: " + errnoText(errno));
  const std::string name = programName(prog.get());
  if (name != STRAIT_XDP_PROG_NAME)
    throw std::runtime_error("interface " + ifname + ": another XDP program (\"" + name + "\", id " +
                             std::to_string(a.progId) +
                             ") is attached; straitd will not replace it (detach it with "
                             "`ip link set dev " + ifname + " xdp off`)");
  detachIfStill(ifindex, a, prog.get());
  if (queryAttached(ifindex, ifname).progId == a.progId)
    throw std::runtime_error("interface " + ifname + ": cannot detach the stale Strait XDP program id " +
                             std::to_string(a.progId));
  return true;
}

void detachProgram(const std::string& ifname) {
  unsigned idx = if_nametoindex(ifname.c_str());
  if (idx == 0) return;
  try {
    const Attached a = queryAttached(static_cast<int>(idx), ifname);
    if (a.progId == 0) return;
    Fd prog(bpf_prog_get_fd_by_id(a.progId));
    if (prog.get() < 0 || programName(prog.get()) != STRAIT_XDP_PROG_NAME) return;
    detachIfStill(static_cast<int>(idx), a, prog.get());
  } catch (const std::exception&) {
    // Exit path: nothing more can be done, and the next start clears it.
  }
}

XdpAttachment::XdpAttachment(const std::string& ifname) : ifname_(ifname) {
  ifindex_ = interfaceIndex(ifname);
  const Attached a = queryAttached(ifindex_, ifname);
  if (a.progId == 0) throw std::runtime_error("interface " + ifname + ": no XDP program attached after port start");
  Fd prog(bpf_prog_get_fd_by_id(a.progId));
  if (prog.get() < 0)
    throw std::runtime_error("interface " + ifname + ": cannot open XDP program id " + std::to_string(a.progId) +
                             ": " + errnoText(errno));
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(prog.get(), &info, &len) != 0)
    throw std::runtime_error("interface " + ifname + ": bpf_obj_get_info_by_fd on the XDP program failed: " +
                             errnoText(errno));
  if (std::string(info.name) != STRAIT_XDP_PROG_NAME)
    throw std::runtime_error("interface " + ifname + ": the attached XDP program is \"" + info.name +
                             "\", not Strait's");
  std::vector<uint32_t> ids(info.nr_map_ids);
  bpf_prog_info again{};
  again.nr_map_ids = static_cast<uint32_t>(ids.size());
  again.map_ids = reinterpret_cast<uint64_t>(ids.data());
  len = sizeof again;
  if (!ids.empty() && bpf_obj_get_info_by_fd(prog.get(), &again, &len) != 0)
    throw std::runtime_error("interface " + ifname + ": cannot list the XDP program's maps: " + errnoText(errno));
  for (uint32_t id : ids) {
    Fd m(bpf_map_get_fd_by_id(id));
    if (m.get() < 0) continue;
    bpf_map_info mi{};
    uint32_t mlen = sizeof mi;
    if (bpf_obj_get_info_by_fd(m.get(), &mi, &mlen) != 0) continue;
    const std::string name = mi.name;
    if (name == STRAIT_XDP_ADDR_MAP && addrFd_ < 0) addrFd_ = m.release();
    else if (name == STRAIT_XDP_STATS_MAP && statsFd_ < 0) statsFd_ = m.release();
  }
  if (addrFd_ < 0 || statsFd_ < 0)
    throw std::runtime_error("interface " + ifname + ": the attached Strait XDP program lacks its " +
                             (addrFd_ < 0 ? STRAIT_XDP_ADDR_MAP : STRAIT_XDP_STATS_MAP) + " map");
  progId_ = a.progId;
}

XdpAttachment::~XdpAttachment() {
  if (addrFd_ >= 0) close(addrFd_);
  if (statsFd_ >= 0) close(statsFd_);
  if (progId_ != 0) detachProgram(ifname_);
}

bool XdpAttachment::setAddresses(const std::map<uint32_t, uint32_t>& roles) {
  bool ok = true;
  // Add first, then remove: an address in both sets is never missing.
  for (const auto& [ip, role] : roles) {
    auto it = current_.find(ip);
    if (it != current_.end() && it->second == role) continue;
    if (bpf_map_update_elem(addrFd_, &ip, &role, BPF_ANY) == 0) current_[ip] = role;
    else ok = false;
  }
  for (auto it = current_.begin(); it != current_.end();) {
    if (roles.count(it->first) == 0) {
      uint32_t ip = it->first;
      if (bpf_map_delete_elem(addrFd_, &ip) == 0 || errno == ENOENT) {
        it = current_.erase(it);
        continue;
      }
      ok = false;
    }
    ++it;
  }
  return ok;
}

XdpVerdictCounts XdpAttachment::counters() const {
  XdpVerdictCounts out{};
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return out;
  std::vector<uint64_t> values(static_cast<std::size_t>(cpus));
  for (uint32_t k = 0; k < STRAIT_XDP_VERDICT_COUNT; ++k) {
    if (bpf_map_lookup_elem(statsFd_, &k, values.data()) != 0) continue;
    for (uint64_t v : values) out[k] += v;
  }
  return out;
}

std::vector<int> xdpSocketFds() {
  std::vector<int> out;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return out;
  while (const dirent* e = readdir(d)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == dirfd(d)) continue;
    int domain = 0;
    socklen_t len = sizeof domain;
    if (getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_XDP)
      out.push_back(static_cast<int>(fd));
  }
  closedir(d);
  return out;
}

XdpSocketStats xdpSocketStats(const std::vector<int>& fds) {
  XdpSocketStats sum;
  for (const int fd : fds) {
    xdp_statistics st{};
    socklen_t len = sizeof st;
    if (getsockopt(fd, SOL_XDP, XDP_STATISTICS, &st, &len) != 0) continue;
    sum.rxDropped += st.rx_dropped;
    sum.rxInvalid += st.rx_invalid_descs;
    sum.txInvalid += st.tx_invalid_descs;
    // Kernels before 5.9 answer the first three fields only.
    if (len >= sizeof st) {
      sum.rxRingFull += st.rx_ring_full;
      sum.rxFillRingEmpty += st.rx_fill_ring_empty_descs;
    }
  }
  return sum;
}

}  // namespace strait::dataplane
