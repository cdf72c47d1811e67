// Strait's XDP program through bpf_prog_test_run_opts: the object built
// into straitd is loaded with libbpf, a real AF_XDP socket (copy mode, on
// the loopback of a private network namespace) fills xsks_map queue 0, and
// every class of frame is run through the program. Each case checks the
// action the program returned and that exactly its verdict counter moved.
// Then the host side: XdpAttachment adopting the maps of the program
// attached to an interface, address map updates, counter sums, and
// clearStaleProgram removing Strait's program but refusing a foreign one.
// Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN for unshare).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "dataplane/xdp_program.h"

namespace sd = strait::dataplane;

namespace {

constexpr const char* kVip = "192.0.2.10";
constexpr const char* kSnat = "192.0.2.20";
constexpr const char* kKernel = "192.0.2.5";  // the interface's kernel address
constexpr const char* kOther = "192.0.2.99";
constexpr const char* kClient = "198.51.100.2";
constexpr const char* kBackend = "203.0.113.11";

uint32_t ip(const char* s) {
  in_addr a{};
  inet_pton(AF_INET, s, &a);
  return a.s_addr;
}

using Bytes = std::vector<uint8_t>;

void put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}
void put32n(Bytes& b, uint32_t netOrder) {
  const auto* p = reinterpret_cast<const uint8_t*>(&netOrder);
  b.insert(b.end(), p, p + 4);
}

Bytes eth(uint16_t type, bool vlan = false) {
  Bytes b = {0x02, 0x53, 0, 0, 0, 0x0a, 0x02, 0x53, 0, 0, 0, 0x01};
  if (vlan) {
    put16(b, 0x8100);
    put16(b, 100);
  }
  put16(b, type);
  return b;
}

// IPv4 header + 8 bytes of L4 (ports or ICMP type/code) + 12 bytes of body.
Bytes ipv4(const char* src, const char* dst, uint8_t proto, uint16_t fragOff = 0, bool vlan = false) {
  Bytes b = eth(0x0800, vlan);
  b.push_back(0x45);
  b.push_back(0);
  put16(b, 20 + 20);
  put16(b, 1);
  put16(b, fragOff);
  b.push_back(64);
  b.push_back(proto);
  put16(b, 0);
  put32n(b, ip(src));
  put32n(b, ip(dst));
  put16(b, 40000);
  put16(b, 80);
  b.resize(b.size() + 16, 0);
  return b;
}

Bytes arp(uint16_t op, const char* spa, const char* tpa) {
  Bytes b = eth(0x0806);
  put16(b, 1);
  put16(b, 0x0800);
  b.push_back(6);
  b.push_back(4);
  put16(b, op);
  Bytes sha = {0x02, 0x53, 0, 0, 0, 0x01};
  b.insert(b.end(), sha.begin(), sha.end());
  put32n(b, ip(spa));
  b.resize(b.size() + 6, 0);
  put32n(b, ip(tpa));
  b.resize(60, 0);
  return b;
}

bool isRoot() { return geteuid() == 0; }

void setLoopbackUp() {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  ifreq r{};
  std::strncpy(r.ifr_name, "lo", IFNAMSIZ - 1);
  ioctl(s, SIOCGIFFLAGS, &r);
  r.ifr_flags |= IFF_UP;
  ioctl(s, SIOCSIFFLAGS, &r);
  close(s);
}

// An AF_XDP socket bound to queue 0 of `ifindex` in copy mode: enough for
// the XSKMAP to hold it and bpf_redirect_map to find it.
int makeXsk(int ifindex, void*& area, std::size_t& areaLen) {
  int fd = socket(AF_XDP, SOCK_RAW, 0);
  if (fd < 0) return -1;
  areaLen = 64 * 2048;
  area = mmap(nullptr, areaLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  xdp_umem_reg reg{};
  reg.addr = reinterpret_cast<uint64_t>(area);
  reg.len = areaLen;
  reg.chunk_size = 2048;
  int ring = 64;
  sockaddr_xdp sa{};
  sa.sxdp_family = AF_XDP;
  sa.sxdp_ifindex = static_cast<uint32_t>(ifindex);
  sa.sxdp_queue_id = 0;
  sa.sxdp_flags = XDP_COPY;
  if (setsockopt(fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof reg) != 0 ||
      setsockopt(fd, SOL_XDP, XDP_UMEM_FILL_RING, &ring, sizeof ring) != 0 ||
      setsockopt(fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &ring, sizeof ring) != 0 ||
      setsockopt(fd, SOL_XDP, XDP_RX_RING, &ring, sizeof ring) != 0 ||
      bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

class XdpProgramTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!isRoot()) return;
    // A private loopback to bind the socket to and attach programs on.
    ASSERT_EQ(unshare(CLONE_NEWNET), 0) << std::strerror(errno);
    setLoopbackUp();
    // One socket for the whole suite: the kernel frees a closed socket's
    // queue binding later, so binding a fresh one per case would meet EBUSY.
    lo_ = static_cast<int>(if_nametoindex("lo"));
    ASSERT_GT(lo_, 0);
    xsk_ = makeXsk(lo_, area_, areaLen_);
    ASSERT_GE(xsk_, 0) << "AF_XDP socket on lo: " << std::strerror(errno);
  }

  static void TearDownTestSuite() {
    if (xsk_ >= 0) close(xsk_);
    if (area_ != nullptr) munmap(area_, areaLen_);
  }

  void SetUp() override {
    if (!isRoot()) GTEST_SKIP() << "needs root (BPF program load, AF_XDP socket)";
    obj_ = bpf_object__open_mem(sd::xdpObjectData(), sd::xdpObjectSize(), nullptr);
    ASSERT_NE(obj_, nullptr);
    ASSERT_EQ(bpf_object__load(obj_), 0);
    bpf_program* prog = bpf_object__find_program_by_name(obj_, STRAIT_XDP_PROG_NAME);
    ASSERT_NE(prog, nullptr);
    progFd_ = bpf_program__fd(prog);
    xsks_ = bpf_object__find_map_fd_by_name(obj_, STRAIT_XDP_XSKS_MAP);
    addrs_ = bpf_object__find_map_fd_by_name(obj_, STRAIT_XDP_ADDR_MAP);
    stats_ = bpf_object__find_map_fd_by_name(obj_, STRAIT_XDP_STATS_MAP);
    ASSERT_GE(xsks_, 0);
    ASSERT_GE(addrs_, 0);
    ASSERT_GE(stats_, 0);
    ASSERT_GE(xsk_, 0) << "no AF_XDP socket (see the first case)";
    uint32_t q = 0;
    ASSERT_EQ(bpf_map_update_elem(xsks_, &q, &xsk_, BPF_ANY), 0) << std::strerror(errno);
    own(kVip, STRAIT_XDP_ROLE_LOCAL | STRAIT_XDP_ROLE_VIP);
    own(kSnat, STRAIT_XDP_ROLE_SNAT);
  }

  void TearDown() override {
    if (obj_ != nullptr) bpf_object__close(obj_);
  }

  void own(const char* a, uint32_t role) {
    uint32_t k = ip(a);
    ASSERT_EQ(bpf_map_update_elem(addrs_, &k, &role, BPF_ANY), 0);
  }

  sd::XdpVerdictCounts counts() const {
    sd::XdpVerdictCounts out{};
    std::vector<uint64_t> v(static_cast<std::size_t>(libbpf_num_possible_cpus()));
    for (uint32_t k = 0; k < STRAIT_XDP_VERDICT_COUNT; ++k)
      if (bpf_map_lookup_elem(stats_, &k, v.data()) == 0)
        for (uint64_t x : v) out[k] += x;
    return out;
  }

  // Runs one frame; returns the action, and checks that only `verdict`'s
  // counter moved, by one.
  int run(const Bytes& frame, unsigned verdict) {
    const sd::XdpVerdictCounts before = counts();
    xdp_md ctx{};
    ctx.data_end = static_cast<uint32_t>(frame.size());  // the kernel insists
    ctx.ingress_ifindex = static_cast<uint32_t>(lo_);
    ctx.rx_queue_index = 0;
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(), .data_size_in = static_cast<uint32_t>(frame.size()),
                .ctx_in = &ctx, .ctx_size_in = sizeof ctx, .repeat = 1);
    int rc = bpf_prog_test_run_opts(progFd_, &opts);
    EXPECT_EQ(rc, 0) << std::strerror(errno);
    const sd::XdpVerdictCounts after = counts();
    for (unsigned k = 0; k < STRAIT_XDP_VERDICT_COUNT; ++k)
      EXPECT_EQ(after[k] - before[k], k == verdict ? 1u : 0u) << "counter " << sd::xdpVerdictName(k);
    return static_cast<int>(opts.retval);
  }

  bpf_object* obj_ = nullptr;
  int progFd_ = -1, xsks_ = -1, addrs_ = -1, stats_ = -1;
  static inline int xsk_ = -1, lo_ = 0;
  static inline void* area_ = nullptr;
  static inline std::size_t areaLen_ = 0;
};

TEST_F(XdpProgramTest, VipTcpUdpIcmpAreSteered) {
  EXPECT_EQ(run(ipv4(kClient, kVip, IPPROTO_TCP), STRAIT_XDP_STEER_TCP), XDP_REDIRECT);
  EXPECT_EQ(run(ipv4(kClient, kVip, IPPROTO_UDP), STRAIT_XDP_STEER_UDP), XDP_REDIRECT);
  EXPECT_EQ(run(ipv4(kClient, kVip, IPPROTO_ICMP), STRAIT_XDP_STEER_ICMP), XDP_REDIRECT);
}

TEST_F(XdpProgramTest, VlanTaggedVipIsSteered) {
  EXPECT_EQ(run(ipv4(kClient, kVip, IPPROTO_TCP, 0, true), STRAIT_XDP_STEER_TCP), XDP_REDIRECT);
}

TEST_F(XdpProgramTest, SnatRepliesAreSteered) {
  EXPECT_EQ(run(ipv4(kBackend, kSnat, IPPROTO_TCP), STRAIT_XDP_STEER_TCP), XDP_REDIRECT);
  EXPECT_EQ(run(ipv4(kBackend, kSnat, IPPROTO_UDP), STRAIT_XDP_STEER_UDP), XDP_REDIRECT);
  // An ICMP error from a backend about a SNAT flow.
  EXPECT_EQ(run(ipv4(kBackend, kSnat, IPPROTO_ICMP), STRAIT_XDP_STEER_ICMP), XDP_REDIRECT);
}

TEST_F(XdpProgramTest, ArpForOwnedAddressesIsSteered) {
  EXPECT_EQ(run(arp(1, kBackend, kVip), STRAIT_XDP_STEER_ARP), XDP_REDIRECT);
  EXPECT_EQ(run(arp(1, kBackend, kSnat), STRAIT_XDP_STEER_ARP), XDP_REDIRECT);
  // A reply to a request Strait sent from its own address.
  EXPECT_EQ(run(arp(2, "192.0.2.1", kVip), STRAIT_XDP_STEER_ARP), XDP_REDIRECT);
}

TEST_F(XdpProgramTest, ArpForOtherAddressesGoesToTheKernel) {
  EXPECT_EQ(run(arp(1, "192.0.2.1", kKernel), STRAIT_XDP_PASS_ARP), XDP_PASS);
  EXPECT_EQ(run(arp(2, "192.0.2.1", kKernel), STRAIT_XDP_PASS_ARP), XDP_PASS);
  EXPECT_EQ(run(arp(1, "192.0.2.1", kOther), STRAIT_XDP_PASS_ARP), XDP_PASS);
}

TEST_F(XdpProgramTest, TheInterfaceAddressGoesToTheKernel) {
  EXPECT_EQ(run(ipv4(kClient, kKernel, IPPROTO_TCP), STRAIT_XDP_PASS_IPV4), XDP_PASS);
  EXPECT_EQ(run(ipv4(kClient, kKernel, IPPROTO_UDP), STRAIT_XDP_PASS_IPV4), XDP_PASS);
  EXPECT_EQ(run(ipv4(kClient, kKernel, IPPROTO_ICMP), STRAIT_XDP_PASS_IPV4), XDP_PASS);
  EXPECT_EQ(run(ipv4(kClient, kOther, IPPROTO_TCP), STRAIT_XDP_PASS_IPV4), XDP_PASS);
}

TEST_F(XdpProgramTest, Ipv6AndOtherEtherTypesGoToTheKernel) {
  Bytes v6 = eth(0x86dd);
  v6.resize(14 + 40 + 20, 0);
  v6[14] = 0x60;
  EXPECT_EQ(run(v6, STRAIT_XDP_PASS_IPV6), XDP_PASS);
  Bytes lldp = eth(0x88cc);
  lldp.resize(60, 0);
  EXPECT_EQ(run(lldp, STRAIT_XDP_PASS_OTHER), XDP_PASS);
}

TEST_F(XdpProgramTest, FragmentsFollowTheirDestination) {
  // Non-first fragment and first fragment (MF) to the VIP: Strait's, where
  // the drop is counted; to the kernel's address: the kernel's.
  EXPECT_EQ(run(ipv4(kClient, kVip, IPPROTO_UDP, 185), STRAIT_XDP_STEER_OTHER), XDP_REDIRECT);
  EXPECT_EQ(run(ipv4(kClient, kVip, IPPROTO_UDP, 0x2000), STRAIT_XDP_STEER_OTHER), XDP_REDIRECT);
  EXPECT_EQ(run(ipv4(kClient, kKernel, IPPROTO_UDP, 185), STRAIT_XDP_PASS_IPV4), XDP_PASS);
  // Don't-fragment is not a fragment.
  EXPECT_EQ(run(ipv4(kClient, kVip, IPPROTO_UDP, 0x4000), STRAIT_XDP_STEER_UDP), XDP_REDIRECT);
}

TEST_F(XdpProgramTest, OtherProtocolsToAnOwnedAddressAreSteered) {
  EXPECT_EQ(run(ipv4(kClient, kVip, 47 /* GRE */), STRAIT_XDP_STEER_OTHER), XDP_REDIRECT);
}

TEST_F(XdpProgramTest, TruncatedFramesGoToTheKernel) {
  Bytes vlanOnly = eth(0x8100);  // a VLAN EtherType and no tag
  EXPECT_EQ(run(vlanOnly, STRAIT_XDP_PASS_TRUNCATED), XDP_PASS);
  Bytes shortIp = ipv4(kClient, kVip, IPPROTO_TCP);
  shortIp.resize(14 + 19);  // the destination address's last byte missing
  EXPECT_EQ(run(shortIp, STRAIT_XDP_PASS_TRUNCATED), XDP_PASS);
  Bytes shortArp = arp(1, kBackend, kVip);
  shortArp.resize(14 + 27);
  EXPECT_EQ(run(shortArp, STRAIT_XDP_PASS_TRUNCATED), XDP_PASS);
}

TEST_F(XdpProgramTest, NoSocketOnTheQueueDropsOwnedTraffic) {
  uint32_t q = 0;
  ASSERT_EQ(bpf_map_delete_elem(xsks_, &q), 0);
  EXPECT_EQ(run(ipv4(kClient, kVip, IPPROTO_TCP), STRAIT_XDP_DROP_NO_SOCKET), XDP_DROP);
  EXPECT_EQ(run(arp(1, kBackend, kVip), STRAIT_XDP_DROP_NO_SOCKET), XDP_DROP);
  // What is not Strait's still reaches the kernel.
  EXPECT_EQ(run(ipv4(kClient, kKernel, IPPROTO_TCP), STRAIT_XDP_PASS_IPV4), XDP_PASS);
}

TEST_F(XdpProgramTest, AnAddressRemovedFromTheMapIsNoLongerSteered) {
  uint32_t k = ip(kSnat);
  ASSERT_EQ(bpf_map_delete_elem(addrs_, &k), 0);
  EXPECT_EQ(run(ipv4(kBackend, kSnat, IPPROTO_TCP), STRAIT_XDP_PASS_IPV4), XDP_PASS);
  EXPECT_EQ(run(arp(1, kBackend, kSnat), STRAIT_XDP_PASS_ARP), XDP_PASS);
}

// The host side against a program attached to lo (generic XDP).
TEST_F(XdpProgramTest, AttachmentAdoptsTheMapsOfTheAttachedProgram) {
  ASSERT_EQ(bpf_xdp_attach(lo_, progFd_, XDP_FLAGS_SKB_MODE, nullptr), 0) << std::strerror(errno);
  {
    sd::XdpAttachment att("lo");
    EXPECT_GT(att.programId(), 0u);
    // Replaces the test's own entries: VIP stays, SNAT goes, a new one comes.
    ASSERT_TRUE(att.setAddresses({{ip(kVip), STRAIT_XDP_ROLE_VIP}, {ip(kOther), STRAIT_XDP_ROLE_SNAT}}));
    uint32_t role = 0, k = ip(kOther);
    EXPECT_EQ(bpf_map_lookup_elem(addrs_, &k, &role), 0);
    EXPECT_EQ(role, STRAIT_XDP_ROLE_SNAT);
    ASSERT_TRUE(att.setAddresses({{ip(kOther), STRAIT_XDP_ROLE_SNAT}}));
    k = ip(kVip);
    EXPECT_NE(bpf_map_lookup_elem(addrs_, &k, &role), 0);
    EXPECT_EQ(run(ipv4(kClient, kOther, IPPROTO_UDP), STRAIT_XDP_STEER_UDP), XDP_REDIRECT);
    EXPECT_EQ(run(ipv4(kClient, kVip, IPPROTO_UDP), STRAIT_XDP_PASS_IPV4), XDP_PASS);
    EXPECT_EQ(att.counters(), counts());
    EXPECT_GE(att.counters()[STRAIT_XDP_STEER_UDP], 1u);
  }
  // The attachment's destructor detached the program.
  uint32_t id = 0;
  ASSERT_EQ(bpf_xdp_query_id(lo_, 0, &id), 0);
  EXPECT_EQ(id, 0u);
}

TEST_F(XdpProgramTest, StaleStraitProgramIsRemovedForeignOneIsRefused) {
  EXPECT_FALSE(sd::clearStaleProgram("lo"));  // nothing attached
  ASSERT_EQ(bpf_xdp_attach(lo_, progFd_, XDP_FLAGS_SKB_MODE, nullptr), 0);
  EXPECT_TRUE(sd::clearStaleProgram("lo"));
  uint32_t id = 0;
  ASSERT_EQ(bpf_xdp_query_id(lo_, 0, &id), 0);
  EXPECT_EQ(id, 0u);

  // A foreign program: "return XDP_PASS" under another name.
  const bpf_insn insns[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, XDP_PASS},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  int foreign = bpf_prog_load(BPF_PROG_TYPE_XDP, "someone_else", "GPL", insns, 2, nullptr);
  ASSERT_GE(foreign, 0) << std::strerror(errno);
  ASSERT_EQ(bpf_xdp_attach(lo_, foreign, XDP_FLAGS_SKB_MODE, nullptr), 0);
  try {
    sd::clearStaleProgram("lo");
    ADD_FAILURE() << "a foreign program was not refused";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("someone_else"), std::string::npos) << e.what();
  }
  ASSERT_EQ(bpf_xdp_query_id(lo_, 0, &id), 0);
  EXPECT_NE(id, 0u);  // still there
  bpf_xdp_detach(lo_, XDP_FLAGS_SKB_MODE, nullptr);
  close(foreign);
  EXPECT_THROW(sd::clearStaleProgram("no-such-if0"), std::runtime_error);
}

}  // namespace

namespace {

TEST(XdpInterfaceLock, OneHolderPerInterface) {
  if (!isRoot()) GTEST_SKIP() << "needs root (/run/strait)";
  // The suite above moved this process into a private namespace; lo is there.
  {
    sd::XdpInterfaceLock first("lo");
    try {
      sd::XdpInterfaceLock second("lo");
      ADD_FAILURE() << "a second lock on lo was granted";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("another straitd is serving it"), std::string::npos) << e.what();
    }
  }
  // Released with its holder, and its file removed.
  struct stat ns {};
  ASSERT_EQ(stat("/proc/self/ns/net", &ns), 0);
  const std::string path = "/run/strait/xdp-" + std::to_string(ns.st_ino) + "-" +
                           std::to_string(if_nametoindex("lo")) + ".lock";
  EXPECT_NE(access(path.c_str(), F_OK), 0) << path << " left behind";
  EXPECT_NO_THROW(sd::XdpInterfaceLock again("lo"));
  EXPECT_THROW(sd::XdpInterfaceLock none("no-such-if0"), std::runtime_error);
}

}  // namespace
