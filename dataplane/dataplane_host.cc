// DataplaneHost: DPDK bring-up, snapshot publication with RCU, the ARP slow
// path on the control thread, and lock-free reads of worker state.
#include "dataplane/dataplane_host.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

#include "dataplane/arp.h"
#include "dataplane/cpu_placement.h"
#include "dataplane/flow_table.h"
#include "dataplane/nat.h"
#include "dataplane/neighbour.h"
#include "dataplane/port.h"
#include "dataplane/port_alloc.h"
#include "dataplane/route.h"
#include "dataplane/snat_port_filter.h"
#include "dataplane/snat_pools.h"
#include "dataplane/toeplitz.h"
#include "dataplane/worker.h"
#include "dataplane/worker_commands.h"
#include "dataplane/xdp_program.h"
#include "strait/clock.h"

namespace strait::dataplane {

namespace {

using LogLevel = HostLogLevel;

// The sink of the one host a process has (EAL is process-wide), set by
// its constructor; log lines come from the control thread only.
std::function<void(HostLogLevel, const std::string&)> gLog;

void logf(LogLevel l, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void logf(LogLevel l, const char* fmt, ...) {
  if (!gLog) return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  gLog(l, buf);
}

uint32_t roundPow2Minus1(uint64_t n) {
  uint64_t p = 1;
  while (p - 1 < n) p <<= 1;
  return static_cast<uint32_t>(p - 1);
}

// 02:xx:xx:xx:xx:xx (locally administered, unicast) from an FNV-1a hash of
// the memif socket path.
std::string memifMac(const std::string& path) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : path) h = (h ^ ch) * 0x100000001b3ull;
  char buf[18];
  std::snprintf(buf, sizeof buf, "02:%02x:%02x:%02x:%02x:%02x", unsigned(h >> 32 & 0xff), unsigned(h >> 24 & 0xff),
                unsigned(h >> 16 & 0xff), unsigned(h >> 8 & 0xff), unsigned(h & 0xff));
  return buf;
}

// RX ring size of an interface's queues: rx_descriptors, and for an xdp:
// port at least what net_af_xdp lends the kernel (kXdpFillFrames).
uint16_t rxDescriptorsFor(const HostParams& cfg, const InterfaceConfig& ifc) {
  const uint16_t n = cfg.dataplane.rxDescriptors;
  return ifc.xdpInterface().empty() ? n : std::max(n, kXdpFillFrames);
}

// Mbufs in each worker's pool: as configured, or enough for every RX and TX
// descriptor, two bursts in flight, the handoff ring and some slack.
uint32_t mbufsPerWorker(const HostParams& cfg) {
  const auto& dp = cfg.dataplane;
  const uint64_t nports = cfg.interfaces.size();
  uint64_t rings = 0;
  for (const auto& ifc : cfg.interfaces) rings += uint64_t(rxDescriptorsFor(cfg, ifc)) + dp.txDescriptors;
  const uint64_t n = dp.mbufs ? dp.mbufs : rings + nports * 2ull * dp.burst + dp.handoffRingSize + 4096;
  return roundPow2Minus1(n);
}

uint32_t largestMtu(const HostParams& cfg) {
  uint32_t m = 0;
  for (const auto& ifc : cfg.interfaces) m = std::max<uint32_t>(m, ifc.mtu);
  return m;
}

bool anyXdp(const HostParams& cfg) {
  for (const auto& ifc : cfg.interfaces)
    if (!ifc.xdpInterface().empty()) return true;
  return false;
}

uint16_t dataRoomFor(const HostParams& cfg) { return mbufDataRoomForMtu(largestMtu(cfg), anyXdp(cfg)); }

// The config check's xdp: mtu limit (kXdpMaxMtu) keeps an mbuf object, the
// AF_XDP UMEM chunk, within a 4 KiB page with a cache line to spare for
// the padding DPDK adds to spread objects over memory channels.
constexpr uint32_t kCacheLine = RTE_CACHE_LINE_SIZE;
constexpr uint32_t kXdpChunkBytes =
    kCacheLine /* rte_mempool_objhdr, cache aligned */ + sizeof(rte_mbuf) +
    (RTE_PKTMBUF_HEADROOM + kXdpPacketHeadroom + frameBytesForMtu(kXdpMaxMtu) + kCacheLine - 1) / kCacheLine *
        kCacheLine;
static_assert(kXdpChunkBytes + kCacheLine <= 4096, "kXdpMaxMtu does not fit an AF_XDP chunk");
static_assert(kXdpChunkBytes + 2 * kCacheLine > 4096, "kXdpMaxMtu is needlessly low");

// Dotted quad of a host-order address, for error messages.
std::string formatIpv4(uint32_t hostOrder) {
  char b[INET_ADDRSTRLEN];
  const in_addr a{htonl(hostOrder)};
  return inet_ntop(AF_INET, &a, b, sizeof b) != nullptr ? b : "?";
}

std::string mib(std::size_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f MiB", double(bytes) / 1048576.0);
  return b;
}

// Every size in [dataplane] reserves memory up front; refuse, before EAL
// and the NICs are touched, sizes whose reservations exceed this machine's
// memory, naming each figure.
void checkMemoryBudget(const HostParams& cfg) {
  const auto& dp = cfg.dataplane;
  const std::size_t flows = FlowTable::estimateBytes(dp.flowCapacity);
  const std::size_t pools = std::size_t{dp.snatPoolsPerWorker} * PortAllocator::bytesPerPool(dp.snatPortMin, dp.snatPortMax);
  const std::size_t mbufs =
      std::size_t{mbufsPerWorker(cfg)} * (dataRoomFor(cfg) + sizeof(rte_mbuf));
  const std::size_t counters = sizeof(WorkerCounters);
  const std::size_t perWorker = flows + pools + mbufs + counters;
  const std::size_t total = perWorker * dp.workers;
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long pageSize = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || pageSize <= 0) return;
  const std::size_t physical = std::size_t(pages) * std::size_t(pageSize);
  if (total <= physical) return;
  throw std::runtime_error(
      "[dataplane] sizes reserve " + mib(total) + " (" + std::to_string(dp.workers) + " workers x " + mib(perWorker) +
      ": flow_capacity = " + std::to_string(dp.flowCapacity) + " takes " + mib(flows) +
      ", snat_pools_per_worker = " + std::to_string(dp.snatPoolsPerWorker) + " takes " + mib(pools) + " (" +
      std::to_string(PortAllocator::bytesPerPool(dp.snatPortMin, dp.snatPortMax) / 1024) + " KiB per pool), " +
      std::to_string(mbufsPerWorker(cfg)) + " mbufs take " + mib(mbufs) + "), more than this machine's " +
      mib(physical) + " of memory");
}

}  // namespace

// A command sent to a worker, with the buffer its results go to. It lives
// in Worker::pending from the moment it is enqueued until the worker's
// reply for it is taken off the reply ring (or the worker has stopped), so
// the worker never writes into freed memory, even for a request whose
// caller gave up waiting.
struct PendingCommand {
  uint32_t id = 0;
  std::unique_ptr<std::byte[]> buffer;
  bool answered = false;
  bool abandoned = false;  // the caller timed out; freed when the reply comes
  uint32_t count = 0;
};

struct Worker {
  uint16_t id = 0;
  unsigned lcore = 0;
  rte_mempool* pool = nullptr;
  WorkerCounters* counters = nullptr;
  std::unique_ptr<FlowTable> flows;
  std::unique_ptr<SnatPortFilter> portFilter;  // used by `ports`, so declared (and destroyed) around it
  std::unique_ptr<PortAllocator> ports;
  std::unique_ptr<NatCore> nat;
  std::unique_ptr<WorkerContext> ctx;
  rte_ring* commands = nullptr;  // WorkerCommand, control thread -> worker (SPSC)
  rte_ring* replies = nullptr;   // WorkerReply, worker -> control thread (SPSC)
  std::unique_ptr<CommandRunner> runner;
  std::deque<std::unique_ptr<PendingCommand>> pending;  // under taskMu
};

// A shared-NIC interface (`port = "xdp:IFNAME"`): the net_af_xdp vdev
// straitd creates on it and, once the PMD attached the program, the handles
// to its maps.
struct XdpPort {
  std::size_t iface = 0;  // index into cfg.interfaces
  std::vector<int> socketFds;  // the PMD's AF_XDP sockets on it (for their kernel statistics)
  std::string ifname;
  std::unique_ptr<XdpInterfaceLock> lock;
  std::unique_ptr<XdpObjectFile> object;
  std::unique_ptr<XdpAttachment> attachment;
  XdpPort() = default;
  XdpPort(XdpPort&& o) noexcept
      : iface(o.iface),
        ifname(std::move(o.ifname)),
        lock(std::move(o.lock)),
        object(std::move(o.object)),
        attachment(std::move(o.attachment)) {
    o.ifname.clear();  // a moved-from port detaches nothing
  }
  XdpPort& operator=(XdpPort&&) = delete;
  // Whatever path leaves straitd, the program does not stay behind; the
  // lock goes last, once the program is gone.
  ~XdpPort() {
    attachment.reset();
    if (!ifname.empty()) detachProgram(ifname);
  }
};

struct DataplaneHost::Impl {
  HostParams cfg;
  std::vector<std::string> ealArgs;
  bool ealUp = false;
  uint16_t numWorkers = 1;
  std::vector<PortState> ports;
  std::vector<Worker> workers;
  rte_mempool* controlPool = nullptr;
  rte_ring* toControl = nullptr;
  rte_ring* resolve = nullptr;
  rte_ring* fromControl = nullptr;
  std::vector<rte_ring*> handoff;
  rte_rcu_qsbr* rcu = nullptr;
  std::unique_ptr<RouteTable> routes;
  std::unique_ptr<NeighbourTable> neighbours;
  std::unique_ptr<ArpService> arp;
  std::unique_ptr<SynCookies> cookies;  // one key for all workers: a cookie checks wherever its ACK lands
  WorkerCounters* controlCounters = nullptr;
  std::atomic<const Snapshot*> current{nullptr};
  std::atomic<bool> stopFlag{false};
  bool started = false;
  OwnerMode ownerMode = OwnerMode::kSingle;
  std::unique_ptr<Toeplitz> toeplitz;

  // Under retireMu: SNAT pool slots are assigned when a snapshot is
  // published and retired with the snapshots (dataplane/snat_pools.h).
  std::unique_ptr<SnatPools> snatPools;
  std::mutex retireMu;
  struct Retired {
    const Snapshot* snap;
    uint64_t token;
  };
  std::deque<Retired> retired;
  uint64_t lastTickMs = 0;
  uint64_t announcedGeneration = 0;
  std::vector<uint32_t> ownedAddresses;
  std::mutex taskMu;
  std::vector<std::string> deviceNames;  // per interface: what setupPort opens
  std::vector<XdpPort> xdpPorts;

  void initXdp();
  void attachXdp();
  void updateXdpAddresses(const Snapshot& snap);
  void initEal();
  void initMemory();
  void initPorts();
  void initRouting();
  void initWorkers();
  void reclaim(bool force);
  // Sends `cmd` (its `out` pointing into req->buffer) to worker `w` and
  // waits up to 2 s for the reply. Returns the request, answered, or null
  // on a timeout or a full command ring (the request then stays pending
  // until the worker answers). Serialised by taskMu: the ring has one
  // producer.
  std::unique_ptr<PendingCommand> call(uint16_t w, WorkerCommand cmd, std::unique_ptr<PendingCommand> req);
  void takeReplies(Worker& wk);
  uint32_t nextCommandId = 0;  // under taskMu
};

void DataplaneHost::Impl::initEal() {
  numWorkers = static_cast<uint16_t>(cfg.dataplane.workers);
  ealArgs.push_back("straitd");
  for (const auto& a : cfg.dataplane.eal) ealArgs.push_back(a);
  // Shared-NIC ports: straitd writes the vdev itself, one AF_XDP queue per
  // worker from queue 0, with its own program (see docs/dataplane.md).
  for (const auto& x : xdpPorts)
    ealArgs.push_back("--vdev=" + deviceNames[x.iface] + ",iface=" + x.ifname +
                      ",start_queue=0,queue_count=" + std::to_string(numWorkers) + ",xdp_prog=" + x.object->path());
  // memif ports: the client side of a peer listening on the socket path,
  // one ring pair per worker (the peer sizes its side to match); the
  // socket is a file, not an abstract name, so it follows the file
  // system's permissions. The PMD's default MAC is a multicast address
  // shared by every memif port: ours is locally administered and derived
  // from the path, so it is stable across restarts.
  for (std::size_t i = 0; i < cfg.interfaces.size(); ++i)
    if (const std::string path = cfg.interfaces[i].memifSocket(); !path.empty())
      ealArgs.push_back("--vdev=" + deviceNames[i] + ",role=client,socket=" + path +
                        ",socket-abstract=no,mac=" + memifMac(path));
  if (!hasLcoreArg(cfg.dataplane.eal)) ealArgs.push_back(defaultLcores(numWorkers, allowedCpus()));
  std::string joined;
  for (const auto& a : ealArgs) joined += " " + a;
  logf(LogLevel::kInfo, "EAL arguments:%s", joined.c_str());
  std::vector<char*> argv;
  for (auto& a : ealArgs) argv.push_back(a.data());
  argv.push_back(nullptr);
  if (rte_eal_init(static_cast<int>(ealArgs.size()), argv.data()) < 0)
    throw std::runtime_error(std::string("EAL initialisation failed: ") + rte_strerror(rte_errno));
  ealUp = true;
  if (rte_lcore_count() < static_cast<unsigned>(numWorkers) + 1)
    throw std::runtime_error("dataplane.workers = " + std::to_string(numWorkers) + " needs " +
                             std::to_string(numWorkers + 1) + " lcores (one control + one per worker), EAL has " +
                             std::to_string(rte_lcore_count()));
}

// Before EAL: checks each shared-NIC interface (present, up, not holding the
// dataplane's own address in the kernel), removes a program a crashed
// straitd left attached, and puts the program where the PMD can load it.
void DataplaneHost::Impl::initXdp() {
  for (std::size_t i = 0; i < cfg.interfaces.size(); ++i) {
    const auto& ifc = cfg.interfaces[i];
    const std::string ifname = ifc.xdpInterface();
    if (!ifc.memifSocket().empty()) {
      deviceNames.push_back("net_memif" + std::to_string(i));
      continue;
    }
    if (ifname.empty()) {
      deviceNames.push_back(ifc.port);
      continue;
    }
    deviceNames.push_back("net_af_xdp" + std::to_string(i));
    const std::string key = "interface[" + std::to_string(i) + "]";
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) throw std::runtime_error(key + ": getifaddrs failed");
    bool found = false, up = false, clash = false;
    for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
      if (a->ifa_name == nullptr || ifname != a->ifa_name) continue;
      found = true;
      up = up || (a->ifa_flags & IFF_UP) != 0;
      if (a->ifa_addr != nullptr && a->ifa_addr->sa_family == AF_INET &&
          reinterpret_cast<const sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr == htonl(ifc.address.addr))
        clash = true;
    }
    freeifaddrs(list);
    if (!found)
      throw std::runtime_error(key + ".port: \"" + ifc.port + "\": no interface " + ifname +
                               " in this network namespace");
    if (!up) throw std::runtime_error(key + ".port: \"" + ifc.port + "\": interface " + ifname + " is down");
    if (clash)
      throw std::runtime_error(key + ".address: " + formatIpv4(ifc.address.addr) + " is " + ifname +
                               "'s kernel address; in xdp mode the kernel keeps its address and straitd "
                               "needs one of its own on the link (on EC2, a secondary private IP)");
    if (const int limit = xdpQueueLimit(ifname); limit < static_cast<int>(cfg.dataplane.workers))
      throw std::runtime_error(
          key + ".port: \"" + ifc.port + "\": dataplane.workers = " + std::to_string(cfg.dataplane.workers) +
          " needs one AF_XDP queue per worker but " + ifname + " offers " + std::to_string(limit) +
          " combined channel(s) (a device without combined channels, such as veth, counts as one); raise "
          "them with `ethtool -L " + ifname + " combined N` or run fewer workers");
    auto lock = std::make_unique<XdpInterfaceLock>(ifname);
    if (clearStaleProgram(ifname))
      logf(LogLevel::kWarn, "%s: removed the Strait XDP program a previous straitd left attached", ifname.c_str());
    XdpPort x;
    x.iface = i;
    x.ifname = ifname;
    x.lock = std::move(lock);
    x.object = std::make_unique<XdpObjectFile>();
    xdpPorts.push_back(std::move(x));
  }
}

// After the ports started: the PMD has loaded and attached the program;
// adopt its maps and steer the dataplane's own address at once (ARP
// replies to straitd's first requests must reach it).
void DataplaneHost::Impl::attachXdp() {
  for (auto& x : xdpPorts) {
    x.attachment = std::make_unique<XdpAttachment>(x.ifname);
    logf(LogLevel::kInfo, "%s: Strait XDP program id %u attached, %u queue(s) steered to AF_XDP", x.ifname.c_str(),
         x.attachment->programId(), numWorkers);
  }
  std::map<uint32_t, uint32_t> roles;
  for (const auto& ifc : cfg.interfaces) roles[htonl(ifc.address.addr)] |= STRAIT_XDP_ROLE_LOCAL;
  for (auto& x : xdpPorts)
    if (!x.attachment->setAddresses(roles))
      throw std::runtime_error(x.ifname + ": cannot fill the XDP address map");
}

// Keeps every shared-NIC program's address map equal to what straitd owns.
void DataplaneHost::Impl::updateXdpAddresses(const Snapshot& snap) {
  if (xdpPorts.empty()) return;
  std::map<uint32_t, uint32_t> roles;
  for (const auto& ifc : cfg.interfaces) roles[htonl(ifc.address.addr)] |= STRAIT_XDP_ROLE_LOCAL;
  for (const auto& sv : snap.services) {
    roles[sv.vip] |= STRAIT_XDP_ROLE_VIP;
    for (uint32_t a : sv.snatIps) roles[a] |= STRAIT_XDP_ROLE_SNAT;
  }
  for (auto& x : xdpPorts)
    if (x.attachment && !x.attachment->setAddresses(roles))
      logf(LogLevel::kError, "%s: XDP address map update failed; some owned addresses are not steered",
           x.ifname.c_str());
}

void DataplaneHost::Impl::initMemory() {
  const auto& dp = cfg.dataplane;
  const uint32_t n = mbufsPerWorker(cfg);
  // One segment per frame at the largest configured MTU (jumbo frames
  // included): the NAT path parses and rewrites single-segment mbufs.
  const uint32_t maxMtu = largestMtu(cfg);
  const uint16_t dataRoom = dataRoomFor(cfg);
  workers.resize(numWorkers);
  unsigned lcore = rte_get_next_lcore(-1, 1, 0);
  for (uint16_t w = 0; w < numWorkers; ++w, lcore = rte_get_next_lcore(lcore, 1, 0)) {
    Worker& wk = workers[w];
    wk.id = w;
    wk.lcore = lcore;
    int socket = static_cast<int>(rte_lcore_to_socket_id(lcore));
    std::string name = "strait_mb" + std::to_string(w);
    wk.pool = rte_pktmbuf_pool_create(name.c_str(), n, 256, 0, dataRoom, socket);
    if (!wk.pool)
      throw std::runtime_error("cannot create mbuf pool " + name + " of " + std::to_string(n) +
                               " mbufs: " + rte_strerror(rte_errno) + " (hugepages set? see docs/running.md)");
    // net_af_xdp registers the pool as its UMEM, one chunk per object; the
    // kernel takes chunks of at most a page (config's kXdpMaxMtu keeps
    // within it; this catches a DPDK whose object layout differs).
    if (anyXdp(cfg)) {
      const uint32_t chunk = rte_mempool_calc_obj_size(wk.pool->elt_size, wk.pool->flags, nullptr);
      if (chunk > static_cast<uint32_t>(getpagesize()))
        throw std::runtime_error("mbuf pool " + name + ": objects of " + std::to_string(chunk) +
                                 " bytes (data room " + std::to_string(dataRoom) + " for mtu " +
                                 std::to_string(maxMtu) + ") exceed the " + std::to_string(getpagesize()) +
                                 "-byte AF_XDP chunk limit of the xdp: ports: lower mtu");
    }
    void* mem = rte_zmalloc_socket("strait_counters", sizeof(WorkerCounters), 64, socket);
    if (!mem) throw std::runtime_error("cannot allocate worker counters");
    wk.counters = new (mem) WorkerCounters();
    logf(LogLevel::kInfo, "worker %u: lcore %u, mbuf pool %u x %u bytes = %.1f MiB (data room %u for mtu %u)", w,
         lcore, n, dataRoom + static_cast<unsigned>(sizeof(rte_mbuf)),
         double(n) * (dataRoom + sizeof(rte_mbuf)) / 1048576.0, dataRoom, maxMtu);
  }
  controlPool = rte_pktmbuf_pool_create("strait_mbctl", 1023, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
  if (!controlPool) throw std::runtime_error(std::string("cannot create control mbuf pool: ") + rte_strerror(rte_errno));
  void* mem = rte_zmalloc("strait_counters_ctl", sizeof(WorkerCounters), 64);
  if (!mem) throw std::runtime_error("cannot allocate control counters");
  controlCounters = new (mem) WorkerCounters();

  auto mkRing = [](const std::string& name, uint32_t size, unsigned flags) {
    rte_ring* r = rte_ring_create(name.c_str(), size, SOCKET_ID_ANY, flags);
    if (!r) throw std::runtime_error("cannot create ring " + name + ": " + rte_strerror(rte_errno));
    return r;
  };
  uint32_t hsz = std::bit_ceil(std::max<uint32_t>(dp.handoffRingSize, 64));
  for (uint16_t w = 0; w < numWorkers; ++w) handoff.push_back(mkRing("strait_ho" + std::to_string(w), hsz, RING_F_SC_DEQ));
  for (uint16_t w = 0; w < numWorkers; ++w) {
    const unsigned flags = RING_F_SP_ENQ | RING_F_SC_DEQ;
    std::string ringName = "strait_cmd" + std::to_string(w);
    workers[w].commands =
        rte_ring_create_elem(ringName.c_str(), sizeof(WorkerCommand), kCommandRingSize, SOCKET_ID_ANY, flags);
    ringName = "strait_rep" + std::to_string(w);
    workers[w].replies =
        rte_ring_create_elem(ringName.c_str(), sizeof(WorkerReply), kCommandRingSize, SOCKET_ID_ANY, flags);
    if (workers[w].commands == nullptr || workers[w].replies == nullptr)
      throw std::runtime_error("cannot create the command rings of worker " + std::to_string(w) + ": " +
                               rte_strerror(rte_errno));
  }
  toControl = mkRing("strait_toctl", 1024, RING_F_SC_DEQ);
  resolve = mkRing("strait_resolve", 1024, RING_F_SC_DEQ);
  fromControl = mkRing("strait_fromctl", 1024, RING_F_SP_ENQ | RING_F_SC_DEQ);

  size_t rsz = rte_rcu_qsbr_get_memsize(numWorkers);
  rcu = static_cast<rte_rcu_qsbr*>(rte_zmalloc("strait_rcu", rsz, RTE_CACHE_LINE_SIZE));
  if (!rcu || rte_rcu_qsbr_init(rcu, numWorkers) != 0) throw std::runtime_error("cannot initialise RCU");
}

void DataplaneHost::Impl::initPorts() {
  for (const auto& ifc : cfg.interfaces) {
    PortParams p;
    p.device = deviceNames[&ifc - cfg.interfaces.data()];
    p.queues = numWorkers;
    p.rxDescriptors = rxDescriptorsFor(cfg, ifc);
    p.txDescriptors = cfg.dataplane.txDescriptors;
    p.mtu = ifc.mtu;
    p.rss = ifc.rss;
    for (auto& w : workers) p.rxPools.push_back(w.pool);
    const std::size_t iface = static_cast<std::size_t>(&ifc - cfg.interfaces.data());
    const auto xdp = std::find_if(xdpPorts.begin(), xdpPorts.end(), [&](const XdpPort& x) { return x.iface == iface; });
    const std::vector<int> socketsBefore = xdp != xdpPorts.end() ? xdpSocketFds() : std::vector<int>{};
    PortState st = setupPort(p);
    if (xdp != xdpPorts.end())
      for (const int fd : xdpSocketFds())
        if (std::find(socketsBefore.begin(), socketsBefore.end(), fd) == socketsBefore.end())
          xdp->socketFds.push_back(fd);
    char mac[RTE_ETHER_ADDR_FMT_SIZE];
    rte_ether_format_addr(mac, sizeof mac, &st.mac);
    logf(LogLevel::kInfo, "port %s: id %u driver %s mac %s queues %u rss %s", st.device.c_str(), st.portId,
         st.driver.c_str(), mac, st.queues, st.rssPredictable ? "predictable" : "unpredictable");
    ports.push_back(std::move(st));
  }
  if (numWorkers == 1) {
    ownerMode = OwnerMode::kSingle;
  } else {
    bool predictable = !ports.empty();
    for (const auto& p : ports) predictable = predictable && p.rssPredictable;
    if (predictable) {
      ownerMode = OwnerMode::kRssHash;
      toeplitz = std::make_unique<Toeplitz>(ports[0].rssKey, ports[0].variant);
    } else {
      ownerMode = OwnerMode::kPortModulo;
    }
  }
}

void DataplaneHost::Impl::initRouting() {
  routes = std::make_unique<RouteTable>("strait_routes", SOCKET_ID_ANY, 1024);
  std::vector<ArpInterface> arpIfs;
  bool haveDefault = false;
  for (std::size_t i = 0; i < cfg.interfaces.size(); ++i) {
    const auto& ifc = cfg.interfaces[i];
    uint32_t mask = ifc.address.len == 0 ? 0 : ~uint32_t(0) << (32 - ifc.address.len);
    uint32_t net = ifc.address.addr & mask;
    routes->add(htonl(net), ifc.address.len, NextHop{ports[i].portId, 0});
    if (ifc.gateway && !haveDefault) {
      routes->add(0, 0, NextHop{ports[i].portId, htonl(*ifc.gateway)});
      haveDefault = true;
    }
    ArpInterface a;
    a.port = ports[i].portId;
    a.mac = ports[i].mac;
    a.ip = htonl(ifc.address.addr);
    a.prefix = htonl(net);
    a.prefixLen = ifc.address.len;
    arpIfs.push_back(a);
  }
  neighbours = std::make_unique<NeighbourTable>(4096);
  arp = std::make_unique<ArpService>(
      arpIfs, *neighbours, controlPool,
      [this](uint32_t ip) {
        const Snapshot* s = current.load(std::memory_order_acquire);
        return s != nullptr && s->addrRoles(ip) != 0;
      },
      [this](rte_mbuf* m) { return rte_ring_sp_enqueue(fromControl, m) == 0; }, *controlCounters);
}

void DataplaneHost::Impl::initWorkers() {
  // One flow hash key for the process (see dataplane/siphash.h): random, so
  // colliding flow keys cannot be prepared in advance.
  const SipKey flowHashKey = randomSipKey();
  const auto& dp = cfg.dataplane;
  cookies = std::make_unique<SynCookies>(randomSipKey(), dp.synCookiePeriodMs);
  std::vector<rte_ether_addr> macs(RTE_MAX_ETHPORTS);
  for (const auto& p : ports) macs[p.portId] = p.mac;
  for (auto& wk : workers) {
    int socket = static_cast<int>(rte_lcore_to_socket_id(wk.lcore));
    FlowTable::Params fp;
    fp.capacity = dp.flowCapacity;
    fp.socketId = socket;
    fp.hashKey = flowHashKey;
    fp.timeouts = dp.timeouts;
    fp.maxPools = dp.snatPoolsPerWorker;
    std::string fname = "strait_flows" + std::to_string(wk.id);
    fp.name = fname.c_str();
    wk.flows = std::make_unique<FlowTable>(fp);

    PortAllocator::Params pp;
    pp.portMin = dp.snatPortMin;
    pp.portMax = dp.snatPortMax;
    pp.maxPools = dp.snatPoolsPerWorker;
    const uint16_t w = wk.id;
    const uint16_t nw = numWorkers;
    // Which ports this worker may hand out: those its replies arrive on,
    // never a service's listen port on the same address and protocol (a
    // reply to it would look like a client packet). The tables are built
    // here; publish() fills a new pool's slot in one pass per worker
    // (snat_port_filter.h) for the snapshot about to be published.
    SnatPortFilter::Params fpp;
    fpp.mode = ownerMode;
    fpp.worker = w;
    fpp.workers = nw;
    fpp.portMin = dp.snatPortMin;
    fpp.portMax = dp.snatPortMax;
    if (ownerMode == OwnerMode::kRssHash) {
      fpp.toeplitz = toeplitz.get();
      fpp.reta = ports[0].reta;
    }
    wk.portFilter = std::make_unique<SnatPortFilter>(fpp);
    pp.fill = SnatPortFilter::fillerFor(*wk.portFilter);
    wk.ports = std::make_unique<PortAllocator>(pp);

    NatCore::Deps d;
    d.flows = wk.flows.get();
    d.ports = wk.ports.get();
    d.counters = wk.counters;
    d.workerId = w;
    d.numWorkers = nw;
    d.ownerMode = ownerMode;
    d.cookies = cookies.get();
    d.synProxy.halfOpenEnter = dp.synProxyHalfOpenEnter;
    d.synProxy.halfOpenLeave = dp.synProxyHalfOpenLeave;
    d.synProxy.poolEnterPct = dp.synProxyPoolEnterPct;
    d.synProxy.poolLeavePct = dp.synProxyPoolLeavePct;
    wk.nat = std::make_unique<NatCore>(d);

    auto ctx = std::make_unique<WorkerContext>();
    ctx->id = w;
    ctx->numWorkers = nw;
    for (const auto& p : ports) ctx->ports.push_back(p.portId);
    ctx->portMacs = macs;
    ctx->burst = std::min<uint16_t>(dp.burst, kMaxBurst);
    ctx->idleSleepUs = dp.idleSleepUs;
    ctx->snapshot = &current;
    ctx->rcu = rcu;
    ctx->nat = wk.nat.get();
    ctx->counters = wk.counters;
    ctx->routes = routes.get();
    ctx->neighbours = neighbours.get();
    ctx->handoff = handoff;
    ctx->toControl = toControl;
    ctx->resolve = resolve;
    ctx->fromControl = w == 0 ? fromControl : nullptr;
    ctx->stop = &stopFlag;
    wk.runner = std::make_unique<CommandRunner>(wk.commands, wk.replies, wk.flows.get());
    ctx->commands = wk.runner.get();
    wk.ctx = std::move(ctx);
    logf(LogLevel::kInfo, "worker %u: flow table %u flows, %.1f MiB; SNAT ports %u-%u, up to %u pools", w,
         fp.capacity, double(wk.flows->memoryBytes()) / 1048576.0, pp.portMin, pp.portMax, pp.maxPools);
  }
  SnatPools::Params sp;
  for (auto& wk : workers) sp.workers.push_back(wk.ports.get());
  sp.graceStart = [this] { return rte_rcu_qsbr_start(rcu); };
  sp.graceDone = [this](uint64_t token) { return rte_rcu_qsbr_check(rcu, token, false) == 1; };
  snatPools = std::make_unique<SnatPools>(std::move(sp));
}

DataplaneHost::DataplaneHost(const HostParams& cfg) : impl_(std::make_unique<Impl>()) {
  gLog = cfg.log;
  checkMemoryBudget(cfg);
  impl_->cfg = cfg;
  impl_->initXdp();
  impl_->initEal();
  impl_->initMemory();
  impl_->initPorts();
  impl_->attachXdp();
  impl_->initRouting();
  impl_->initWorkers();
  logf(LogLevel::kInfo, "SNAT reply ownership: %s", ownerMode().c_str());
}

DataplaneHost::~DataplaneHost() {
  stop();
  auto& d = *impl_;
  d.reclaim(true);
  delete d.current.exchange(nullptr);
  d.snatPools.reset();
  for (auto& w : d.workers) {
    if (w.nat) w.nat->clear();
    w.nat.reset();
    w.flows.reset();
    w.ports.reset();
  }
  for (const auto& p : d.ports) stopPort(p);  // net_af_xdp detaches its program here
  d.xdpPorts.clear();                         // and this, if it did not
  // Everything DPDK-backed goes before rte_eal_cleanup().
  d.arp.reset();
  d.routes.reset();
  auto drain = [](rte_ring* r) {
    if (!r) return;
    void* obj;
    while (rte_ring_dequeue(r, &obj) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(obj));
    rte_ring_free(r);
  };
  for (auto& w : d.workers) {
    w.pending.clear();  // the workers have stopped: nothing writes into these buffers any more
    rte_ring_free(w.commands);
    rte_ring_free(w.replies);
  }
  for (rte_ring* r : d.handoff) drain(r);
  drain(d.toControl);
  drain(d.fromControl);
  rte_ring_free(d.resolve);  // carries IPs, not mbufs
  for (auto& w : d.workers) {
    rte_mempool_free(w.pool);
    rte_free(w.counters);
  }
  rte_mempool_free(d.controlPool);
  rte_free(d.controlCounters);
  rte_free(d.rcu);
  if (d.ealUp) rte_eal_cleanup();
}

void DataplaneHost::publish(std::unique_ptr<Snapshot> snap) {
  auto& d = *impl_;
  std::lock_guard lk(d.retireMu);
  // Pools first: the slots are loaded before the snapshot that names them
  // is visible to any worker.
  if (const uint32_t missing = d.snatPools->prepare(*snap); missing != 0)
    logf(LogLevel::kWarn,
         "snapshot %llu: %u SNAT pools (address, backend, protocol) find no free slot of "
         "snat_pools_per_worker = %u; their new flows drop as snat_pools_exhausted",
         static_cast<unsigned long long>(snap->generation), missing, d.snatPools->maxPools());
  const Snapshot* old = d.current.exchange(snap.release(), std::memory_order_acq_rel);
  if (old) d.retired.push_back({old, rte_rcu_qsbr_start(d.rcu)});
}

bool DataplaneHost::waitPickup(uint64_t generation, uint32_t timeoutMs) const {
  const auto& d = *impl_;
  if (!d.started) return true;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
  for (;;) {
    bool all = true;
    for (const auto& w : d.workers) {
      if (peek(w.counters->snapshotGeneration) < generation) all = false;
    }
    if (all) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

void DataplaneHost::Impl::reclaim(bool force) {
  std::lock_guard lk(retireMu);
  while (!retired.empty()) {
    auto& r = retired.front();
    if (!force && rte_rcu_qsbr_check(rcu, r.token, false) != 1) break;
    if (snatPools) snatPools->release(*r.snap);
    delete r.snap;
    retired.pop_front();
  }
}

void DataplaneHost::start() {
  auto& d = *impl_;
  if (d.started) return;
  for (auto& w : d.workers) {
    rte_rcu_qsbr_thread_register(d.rcu, w.id);
    rte_rcu_qsbr_thread_online(d.rcu, w.id);
  }
  {
    // Before the launch, commands are run by the calling thread (see call):
    // none may be under way when the workers take over.
    std::lock_guard lk(d.taskMu);
    for (auto& w : d.workers) {
      int rc = rte_eal_remote_launch(workerMain, w.ctx.get(), w.lcore);
      if (rc != 0) throw std::runtime_error("cannot launch worker " + std::to_string(w.id) + " on lcore " + std::to_string(w.lcore));
    }
    d.started = true;
  }
  // Resolve the gateways now rather than dropping the first packets of the
  // first flows on a neighbour miss.
  uint64_t now = steadyNowMs();
  for (const auto& ifc : d.cfg.interfaces)
    if (ifc.gateway) d.arp->resolve(htonl(*ifc.gateway), now);
}

void DataplaneHost::poll() {
  auto& d = *impl_;
  uint64_t now = steadyNowMs();
  void* objs[64];
  unsigned n = rte_ring_sc_dequeue_burst(d.toControl, objs, 64, nullptr);
  for (unsigned i = 0; i < n; ++i) d.arp->handle(static_cast<rte_mbuf*>(objs[i]), now);
  n = rte_ring_sc_dequeue_burst(d.resolve, objs, 64, nullptr);
  for (unsigned i = 0; i < n; ++i) d.arp->resolve(static_cast<uint32_t>(reinterpret_cast<uintptr_t>(objs[i])), now);
  const Snapshot* snap = d.current.load(std::memory_order_acquire);
  if (snap && snap->generation != d.announcedGeneration) {
    d.announcedGeneration = snap->generation;
    d.updateXdpAddresses(*snap);
    std::vector<uint32_t> owned;
    for (const auto& s : snap->services) {
      owned.push_back(s.vip);
      owned.insert(owned.end(), s.snatIps.begin(), s.snatIps.end());
    }
    std::sort(owned.begin(), owned.end());
    owned.erase(std::unique(owned.begin(), owned.end()), owned.end());
    if (owned != d.ownedAddresses) {
      d.ownedAddresses = owned;
      d.arp->setOwnedAddresses(owned);
      d.arp->announce();
    }
  }
  if (now - d.lastTickMs >= 1000) {
    d.lastTickMs = now;
    d.arp->tick(now, d.cfg.dataplane.neighbourTimeoutMs);
  }
  d.reclaim(false);
  std::lock_guard lk(d.retireMu);
  d.snatPools->collect();
}

void DataplaneHost::stop() {
  auto& d = *impl_;
  if (!d.started) return;
  d.stopFlag.store(true);
  rte_eal_mp_wait_lcore();
  for (auto& w : d.workers) rte_rcu_qsbr_thread_offline(d.rcu, w.id);
  std::lock_guard lk(d.taskMu);
  d.started = false;
}

std::vector<uint32_t> DataplaneHost::interfaceIps() const {
  std::vector<uint32_t> v;
  for (const auto& ifc : impl_->cfg.interfaces) v.push_back(htonl(ifc.address.addr));
  return v;
}

WorkerCounters DataplaneHost::totals() const {
  auto t = std::make_unique<WorkerCounters>();
  auto one = std::make_unique<WorkerCounters>();
  for (const auto& w : impl_->workers) {
    readCounters(*w.counters, *one);
    addCounters(*t, *one);
  }
  readCounters(*impl_->controlCounters, *one);
  addCounters(*t, *one);
  return *t;
}

WorkerCounters DataplaneHost::worker(uint16_t w) const {
  auto c = std::make_unique<WorkerCounters>();
  readCounters(*impl_->workers.at(w).counters, *c);
  return *c;
}

double DataplaneHost::tscHz() const { return static_cast<double>(rte_get_tsc_hz()); }

uint64_t DataplaneHost::takeLoopMaxCycles(uint16_t w) const {
  Worker& wk = impl_->workers.at(w);
  const uint64_t v = peek(wk.counters->loopMaxCycles);
  wk.ctx->loopMaxEpoch.fetch_add(1, std::memory_order_relaxed);
  return v;
}
uint16_t DataplaneHost::workerCount() const { return impl_->numWorkers; }

uint64_t DataplaneHost::flowsActive() const {
  uint64_t n = 0;
  for (const auto& w : impl_->workers) n += w.flows->size();
  return n;
}

// Read while the workers run, like size(): each per-state count is one
// aligned 32-bit word written only by its worker, so a reading is a recent
// value, never a torn one.
std::array<uint64_t, kFlowStateCount> DataplaneHost::flowsByState() const {
  std::array<uint64_t, kFlowStateCount> n{};
  for (const auto& w : impl_->workers)
    for (std::size_t s = 0; s < kFlowStateCount; ++s) n[s] += w.flows->count(static_cast<FlowState>(s));
  return n;
}

uint64_t DataplaneHost::flowCapacity() const {
  uint64_t n = 0;
  for (const auto& w : impl_->workers) n += w.flows->capacity();
  return n;
}

void DataplaneHost::Impl::takeReplies(Worker& wk) {
  WorkerReply r;
  while (rte_ring_sc_dequeue_elem(wk.replies, &r, sizeof r) == 0) {
    for (auto it = wk.pending.begin(); it != wk.pending.end(); ++it) {
      if ((*it)->id != r.id) continue;
      if ((*it)->abandoned) {
        wk.pending.erase(it);  // the worker is done with it: now it may go
      } else {
        (*it)->answered = true;
        (*it)->count = r.count;
      }
      break;
    }
  }
}

std::unique_ptr<PendingCommand> DataplaneHost::Impl::call(uint16_t w, WorkerCommand cmd,
                                                          std::unique_ptr<PendingCommand> req) {
  std::lock_guard lk(taskMu);
  Worker& wk = workers.at(w);
  takeReplies(wk);
  cmd.id = req->id = ++nextCommandId;
  if (rte_ring_sp_enqueue_elem(wk.commands, &cmd, sizeof cmd) != 0) {
    logf(LogLevel::kWarn, "worker %u: command ring full (%zu requests unanswered)", w, wk.pending.size());
    return nullptr;  // never seen by the worker: safe to free
  }
  PendingCommand* mine = req.get();
  wk.pending.push_back(std::move(req));
  auto finish = [&]() -> std::unique_ptr<PendingCommand> {
    for (auto it = wk.pending.begin(); it != wk.pending.end(); ++it) {
      if (it->get() != mine) continue;
      std::unique_ptr<PendingCommand> out = std::move(*it);
      wk.pending.erase(it);
      return out;
    }
    return nullptr;
  };
  if (!started) {
    // No worker runs: this thread is the only one touching the worker's
    // state, so it runs the worker's end itself.
    for (;;) {
      const bool did = wk.runner->step(kCommandBudget);
      takeReplies(wk);
      if (mine->answered) return finish();
      if (!did && !wk.runner->busy()) break;
    }
    mine->abandoned = true;  // cannot happen: a command is always answered
    return nullptr;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (;;) {
    takeReplies(wk);
    if (mine->answered) return finish();
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  mine->abandoned = true;
  logf(LogLevel::kWarn, "worker %u did not answer a control request within 2 s", w);
  return nullptr;
}

std::vector<FlowInfo> DataplaneHost::flows(std::optional<uint16_t> serviceSlot, std::size_t limit) const {
  std::vector<FlowInfo> out;
  for (const auto& wk : impl_->workers) {
    if (out.size() >= limit) break;
    const auto room = static_cast<uint32_t>(std::min<std::size_t>(limit - out.size(), 1u << 24));
    auto req = std::make_unique<PendingCommand>();
    req->buffer = std::make_unique<std::byte[]>(sizeof(Flow) * room);
    WorkerCommand cmd{};
    cmd.kind = CommandKind::kDumpFlows;
    cmd.capacity = room;
    cmd.serviceSlot = serviceSlot ? *serviceSlot : kAnyService;
    cmd.out = req->buffer.get();
    req = impl_->call(wk.id, cmd, std::move(req));
    if (!req) continue;
    const std::byte* got = req->buffer.get();
    const uint32_t now = tscNowMs();
    for (uint32_t i = 0; i < req->count; ++i) {
      Flow f;  // the buffer holds records byte for byte, without their alignment
      std::memcpy(&f, got + std::size_t{i} * sizeof(Flow), sizeof f);
      FlowInfo fi;
      fi.worker = wk.id;
      fi.proto = f.proto;
      fi.clientIp = ntohl(f.clientIp);
      fi.clientPort = ntohs(f.clientPort);
      fi.vip = ntohl(f.vip);
      fi.vipPort = ntohs(f.vipPort);
      fi.snatIp = ntohl(f.snatIp);
      fi.snatPort = ntohs(f.snatPort);
      fi.backendIp = ntohl(f.backendIp);
      fi.backendPort = ntohs(f.backendPort);
      fi.serviceSlot = f.serviceSlot;
      fi.backendSlot = f.backendSlot;
      fi.state = std::string(flowStateName(f.state));
      const int32_t idle = static_cast<int32_t>(now - f.lastSeenMs);
      fi.idleMs = idle > 0 ? static_cast<uint32_t>(idle) : 0;
      out.push_back(std::move(fi));
    }
  }
  return out;
}

// Read on the control thread from the slots SnatPools has assigned: keys
// and capacities are its own, the occupancy an atomic read of what each
// worker publishes; no worker is asked.
std::vector<SnatPoolInfo> DataplaneHost::snatPools() const {
  std::vector<SnatPoolInfo> out;
  auto& d = *impl_;
  std::lock_guard lk(d.retireMu);
  for (const auto& wk : d.workers)
    d.snatPools->forEachActive([&](uint32_t slot, const PoolKey& key) {
      SnatPoolInfo si;
      si.worker = wk.id;
      si.snatIp = ntohl(key.snatIp);
      si.backendIp = ntohl(key.backendIp);
      si.backendPort = ntohs(key.backendPort);
      si.proto = key.proto;
      si.inUse = wk.ports->inUse(slot);
      si.capacity = wk.ports->capacity(slot);
      out.push_back(si);
    });
  return out;
}

std::vector<PortInfo> DataplaneHost::ports() const {
  std::vector<PortInfo> out;
  for (const auto& p : impl_->ports) {
    PortInfo pi;
    pi.name = p.device;
    pi.portId = p.portId;
    pi.xstats = readXstats(p.portId);
    for (const auto& x : impl_->xdpPorts) {
      if (!x.attachment || impl_->deviceNames[x.iface] != p.device) continue;
      pi.xdpInterface = x.ifname;
      const XdpVerdictCounts c = x.attachment->counters();
      for (unsigned v = 0; v < c.size(); ++v) pi.xdpVerdicts.emplace_back(xdpVerdictName(v), c[v]);
      const XdpSocketStats ss = xdpSocketStats(x.socketFds);
      pi.xdpSocketDrops = {{"rx_ring_full", ss.rxRingFull},
                           {"rx_dropped", ss.rxDropped},
                           {"rx_invalid_descs", ss.rxInvalid},
                           {"tx_invalid_descs", ss.txInvalid}};
      pi.xdpFillRingEmpty = ss.rxFillRingEmpty;
    }
    out.push_back(std::move(pi));
  }
  return out;
}

std::size_t DataplaneHost::neighbourCount() const { return impl_->neighbours->size(); }

uint64_t DataplaneHost::snapshotGeneration() const {
  const Snapshot* s = impl_->current.load(std::memory_order_acquire);
  return s ? s->generation : 0;
}

std::string DataplaneHost::ownerMode() const {
  switch (impl_->ownerMode) {
    case OwnerMode::kSingle: return "single worker";
    case OwnerMode::kPortModulo: return "port modulo (unpredictable NIC hash: misdirected replies are handed off)";
    case OwnerMode::kRssHash: return "RSS-aware SNAT ports (replies hash to the owning worker's queue)";
  }
  return "?";
}

}  // namespace strait::dataplane
