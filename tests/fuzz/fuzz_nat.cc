// libFuzzer harness for the whole per-packet core (NatCore::process): the
// input is a sequence of bursts of raw frames, with clock steps, snapshot
// changes (backend removed, removed with --flush) and expiry runs between
// bursts, against a small fixed configuration with one TCP and one UDP
// service and two backends each. Small flow table, port range and pool
// count so that the fuzzer reaches every exhaustion path.
//
// Input layout (all fields optional: whatever is missing ends the input):
//   byte 0          config: bit 0 = worker 1 of 2 with port-modulo
//                   ownership (else a single worker), bit 1 = clock starts
//                   just before the 32-bit wrap
//   then bursts:    h0: frames in burst = (h0 & 0x3f) + 1, snapshot = h0 >> 6
//                   h1: clock step = (h1 & 0x1f) ? 1 << ((h1 & 0x1f) - 1) ms : 0,
//                       bit 5 = run expire() after the burst
//                   then per frame: 2-byte little-endian length (& 0x7ff), bytes
//
// Besides the sanitizers (the bytes around each frame in its mbuf are
// poisoned, so any read outside the frame is reported), it checks what
// every caller of the core relies on: verdicts are well formed, every drop
// is counted exactly once, forwarded and locally answered packets still
// parse, their TTL is decremented, a valid IPv4 or L4 checksum stays valid
// through the rewrite, and clearing the table gives every SNAT port back.
#include <netinet/in.h>
#include <rte_byteorder.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <sanitizer/asan_interface.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/checksum.h"
#include "dataplane/flow_table.h"
#include "dataplane/maglev.h"
#include "dataplane/nat.h"
#include "dataplane/parse.h"
#include "dataplane/port_alloc.h"
#include "dataplane/proxy_protocol.h"
#include "dataplane/snat_pools.h"
#include "dataplane/synproxy.h"
#include "strait/counters.h"
#include "strait/snapshot.h"
#include "strait/verdict.h"

namespace {

using namespace strait;
using namespace strait::dataplane;

[[noreturn]] void fail(const char* what, int frame = -1) {
  std::fprintf(stderr, "fuzz_nat: invariant violated: %s (frame %d)\n", what, frame);
  std::abort();
}

// Addresses and ports in network order, as the snapshot and packets hold them.
constexpr uint32_t ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return RTE_BE32(static_cast<uint32_t>(a) << 24 | static_cast<uint32_t>(b) << 16 | static_cast<uint32_t>(c) << 8 | d);
}
constexpr uint16_t port16(uint16_t p) { return RTE_BE16(p); }

constexpr uint32_t kInterfaceIp = ip4(192, 0, 2, 10);
constexpr uint32_t kDnsVip = ip4(192, 0, 2, 20);
constexpr uint32_t kDnsSnat = ip4(192, 0, 2, 21);
constexpr uint32_t kBackend1 = ip4(203, 0, 113, 11);
constexpr uint32_t kBackend2 = ip4(203, 0, 113, 12);
constexpr uint32_t kMaglevSize = 251;
constexpr uint16_t kFlowCapacity = 40;
constexpr uint16_t kPortMin = 1024, kPortMax = 1039;  // 16 ports per pool
constexpr uint32_t kMaxPools = 3;  // fewer than the 4 (snat, backend, proto) tuples

void buildTable(ServiceView& s) {
  std::vector<MaglevBackend> mb;
  bool any = false;
  for (const auto& b : s.backends) {
    mb.push_back({b.ip, b.port, b.up ? b.weight : 0});
    any = any || (b.up && b.weight > 0);
  }
  s.maglev = any ? buildMaglev(mb, kMaglevSize) : std::vector<uint16_t>{};
}

// 0: both backends. 1: web's second backend removed and dns's second
// drained. 2: as 1, and the removed backend flushed.
std::unique_ptr<Snapshot> makeSnapshot(int variant) {
  auto snap = std::make_unique<Snapshot>();
  snap->generation = static_cast<uint64_t>(variant) + 1;

  ServiceView web;
  web.name = "web";
  web.slot = 0;
  web.vip = kInterfaceIp;
  web.port = port16(80);
  web.proto = IPPROTO_TCP;
  web.mssClamp = 1360;
  web.snatIps = {kInterfaceIp};
  web.backends.push_back({kBackend1, port16(80), 0, 1, true});
  if (variant == 0) web.backends.push_back({kBackend2, port16(80), 1, 1, true});
  buildTable(web);

  ServiceView dns;
  dns.name = "dns";
  dns.slot = 1;
  dns.vip = kDnsVip;
  dns.port = port16(53);
  dns.proto = IPPROTO_UDP;
  dns.snatIps = {kDnsSnat};
  dns.backends.push_back({kBackend1, port16(53), 2, 1, true});
  dns.backends.push_back({kBackend2, port16(53), 3, variant == 0 ? 2u : 0u, true});
  buildTable(dns);

  // The same backends behind SYN cookies (syn_proxy = "on").
  ServiceView guard = web;
  guard.name = "guard";
  guard.slot = 2;
  guard.port = port16(443);
  guard.synProxy = SynProxyMode::kOn;
  guard.mssClamp = 0;
  // PROXY protocol v2: the header inserted (and sequence numbers
  // translated) on the cookie service always, on web in one variant.
  guard.proxyProtocol = true;
  if (variant == 1) web.proxyProtocol = true;

  snap->services.push_back(std::move(web));
  snap->services.push_back(std::move(dns));
  snap->services.push_back(std::move(guard));
  if (variant == 2) snap->flushedBackends.set(1);
  // The instance health endpoint on the interface address, port 8080: the
  // stateless responder rewrites frames in place, so it is fuzzed too.
  snap->instanceHealth.ip = kInterfaceIp;
  snap->instanceHealth.port = rte_cpu_to_be_16(8080);
  snap->instanceHealth.status = static_cast<InstanceStatus>(variant % 3);
  snap->instanceHealth.key0 = 0x0706050403020100ull;
  snap->instanceHealth.key1 = 0x0f0e0d0c0b0a0908ull;
  snap->buildIndexes({kInterfaceIp});
  return snap;
}

struct Fixture {
  rte_mempool* pool = nullptr;
  std::unique_ptr<Snapshot> snaps[3];
};
Fixture* gFix = nullptr;

// What a frame's checksums looked like before the core touched it.
struct Sums {
  bool ipv4 = false;  // parsed as IPv4 (not a fragment, supported protocol)
  uint8_t ttl = 0;
  uint8_t proto = 0;
  bool ipOk = false;
  bool l4Ok = false;
  bool udpNone = false;  // UDP checksum 0: "no checksum"
  uint16_t ipId = 0;     // as stored
};

uint16_t load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

Sums assess(const uint8_t* f, std::size_t len) {
  Sums s;
  PacketMeta m;
  if (parsePacket(f, f + len, m) != DropReason::kNone || m.l3 != L3Kind::kIpv4) return s;
  s.ipv4 = true;
  s.ttl = m.ttl;
  s.proto = m.l4Proto;
  s.ipId = load16(f + m.l3Off + 4);
  s.ipOk = checksumFold(checksumPartial(f + m.l3Off, m.ipHdrLen)) == 0;
  const uint8_t* l4 = f + m.l4Off;
  std::size_t covered = m.l4Len;
  if (m.l4Proto == IPPROTO_ICMP) {
    s.l4Ok = checksumFold(checksumPartial(l4, covered)) == 0;
    return s;
  }
  if (m.l4Proto == IPPROTO_UDP) {
    if (load16(l4 + 6) == 0) {
      s.udpNone = true;
      return s;
    }
    covered = static_cast<std::size_t>(l4[4]) << 8 | l4[5];  // UDP length
  }
  // Receiver's check: pseudo-header + segment including its checksum sums to zero.
  uint32_t sum = (m.srcIp & 0xffff) + (m.srcIp >> 16) + (m.dstIp & 0xffff) + (m.dstIp >> 16);
  sum += port16(m.l4Proto) + port16(static_cast<uint16_t>(covered));
  s.l4Ok = checksumFold(checksumPartial(l4, covered, sum)) == 0;
  return s;
}

void checkOutput(const Sums& in, const rte_mbuf* mb, Action action, int idx) {
  const uint8_t* f = rte_pktmbuf_mtod(mb, const uint8_t*);
  const std::size_t len = rte_pktmbuf_data_len(mb);
  if (!in.ipv4) fail("forwarded or answered a frame that does not parse as IPv4", idx);
  const Sums out = assess(f, len);
  if (!out.ipv4) fail("output frame no longer parses as IPv4", idx);
  if (action == Action::kForward) {
    if (in.ttl <= 1) fail("forwarded a packet whose TTL was <= 1", idx);
    // The SYN proxy rebuilds some segments as its own (TTL 64, IPv4 id 0).
    const bool rebuilt = out.proto == IPPROTO_TCP && out.ttl == 64 && out.ipId == 0;
    if (out.ttl + 1 != in.ttl && !rebuilt) fail("TTL not decremented by one", idx);
  }
  // Checksum offload would leave partial sums in place: only check what the
  // core did not hand to the NIC.
  if (!(mb->ol_flags & RTE_MBUF_F_TX_IP_CKSUM) && in.ipOk && !out.ipOk) fail("IPv4 checksum broken", idx);
  if ((mb->ol_flags & RTE_MBUF_F_TX_L4_MASK) != 0) return;
  if (out.proto != in.proto) return;
  if (in.udpNone) {
    if (!out.udpNone && !out.l4Ok) fail("UDP checksum was none, now invalid", idx);
    return;
  }
  if (in.l4Ok && !out.l4Ok) fail("L4 checksum broken", idx);
}

uint64_t totalDrops(const WorkerCounters& c) {
  uint64_t n = 0;
  for (uint64_t d : c.drops) n += d;
  return n;
}

void unpoison(rte_mbuf* mb) { ASAN_UNPOISON_MEMORY_REGION(mb->buf_addr, mb->buf_len); }

// With STRAIT_FUZZ_STATS set, prints at exit how often each action and drop
// reason came up, to judge how deep the corpus reaches into the core.
struct Stats {
  bool enabled = std::getenv("STRAIT_FUZZ_STATS") != nullptr;
  uint64_t actions[5] = {};
  uint64_t drops[kDropReasonCount] = {};
  uint64_t icmpTranslated = 0, echoReplies = 0, mssClamped = 0, flowsCreated = 0, flowsExpired = 0;
  void add(const WorkerCounters& c) {
    icmpTranslated += c.icmpErrorsTranslated;
    echoReplies += c.icmpEchoReplies;
    mssClamped += c.mssClamped;
    flowsCreated += c.flowsCreated;
    flowsExpired += c.flowsExpired;
  }
  ~Stats() {
    if (!enabled) return;
    static const char* const kNames[] = {"forward", "local", "to_control", "handoff", "drop"};
    for (int i = 0; i < 5; ++i) std::fprintf(stderr, "fuzz_nat: %-12s %llu\n", kNames[i], (unsigned long long)actions[i]);
    std::fprintf(stderr, "fuzz_nat: flows created %llu expired %llu, icmp errors translated %llu, echo replies %llu, mss clamped %llu\n",
                 (unsigned long long)flowsCreated, (unsigned long long)flowsExpired,
                 (unsigned long long)icmpTranslated, (unsigned long long)echoReplies, (unsigned long long)mssClamped);
    for (std::size_t i = 1; i < kDropReasonCount; ++i)
      if (drops[i])
        std::fprintf(stderr, "fuzz_nat:   drop %-22s %llu\n", std::string(kDropReasonNames[i]).c_str(),
                     (unsigned long long)drops[i]);
  }
};
Stats gStats;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  std::string prefix = "--file-prefix=strait_fuzz_nat_" + std::to_string(getpid());
  std::vector<std::string> args = {"fuzz_nat", "--no-huge", "--no-pci", "--no-shconf", "--no-telemetry",
                                   "-m",       "512",       "-l",       "0",           "--log-level=lib.eal:error",
                                   prefix};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0) {
    std::fprintf(stderr, "fuzz_nat: EAL init failed: %s\n", rte_strerror(rte_errno));
    std::exit(1);
  }
  gFix = new Fixture;
  gFix->pool = rte_pktmbuf_pool_create("fuzz_nat_pool", 255, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
  if (gFix->pool == nullptr) {
    std::fprintf(stderr, "fuzz_nat: mempool: %s\n", rte_strerror(rte_errno));
    std::exit(1);
  }
  for (int i = 0; i < 3; ++i) gFix->snaps[i] = makeSnapshot(i);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t config = data[0];
  const bool twoWorkers = config & 1;
  uint32_t nowMs = (config & 2) ? 0xffffffffu - 5000 : 1000;
  const uint8_t* p = data + 1;
  const uint8_t* end = data + size;

  // Fresh state per input so that every crash reproduces from its input alone.
  FlowTable::Params fp;
  fp.capacity = kFlowCapacity;
  fp.hashKey = {0x5eed, 0x5eed};
  fp.name = "fuzz_nat_flows";
  FlowTable flows(fp);
  PortAllocator::Params pp;
  pp.portMin = kPortMin;
  pp.portMax = kPortMax;
  pp.maxPools = kMaxPools;
  if (twoWorkers) pp.eligible = [](const PoolKey&, uint16_t port) { return port % 2 == 1; };
  PortAllocator ports(pp);
  // The snapshots as straitd publishes them: SNAT pools prepared (3 slots
  // for 4 tuples, so one tuple has none and its new flows are refused).
  SnatPools pools(SnatPools::Params{{&ports}, {}, {}});
  std::array<Snapshot, 3> snaps;
  for (std::size_t i = 0; i < snaps.size(); ++i) {
    snaps[i] = *gFix->snaps[i];
    pools.prepare(snaps[i]);
  }
  auto counters = std::make_unique<WorkerCounters>();
  NatCore::Deps deps;
  deps.flows = &flows;
  deps.ports = &ports;
  deps.counters = counters.get();
  deps.workerId = twoWorkers ? 1 : 0;
  deps.numWorkers = twoWorkers ? 2 : 1;
  deps.ownerMode = twoWorkers ? OwnerMode::kPortModulo : OwnerMode::kSingle;
  static const SynCookies cookies(SipKey{0x5eed, 0xc00c1e}, 65536);
  deps.cookies = &cookies;
  NatCore nat(deps);

  int current = 0;
  rte_mbuf* pkts[kMaxBurst];
  Sums before[kMaxBurst];
  Verdict verdicts[kMaxBurst];
  int frameNo = 0;
  while (end - p >= 2) {
    const uint8_t h0 = *p++, h1 = *p++;
    const int want = (h0 & 0x3f) + 1;
    int snapSel = h0 >> 6;
    if (snapSel == 3) snapSel = 0;
    if (snapSel != current) {
      current = snapSel;
      if (current == 2) nat.flush(snaps[2]);
    }
    const Snapshot& snap = snaps[current];
    if (h1 & 0x1f) nowMs += 1u << ((h1 & 0x1f) - 1);

    uint16_t n = 0;
    while (n < want && end - p >= 2) {
      std::size_t len = (p[0] | static_cast<std::size_t>(p[1]) << 8) & 0x7ff;
      p += 2;
      if (len > static_cast<std::size_t>(end - p)) len = static_cast<std::size_t>(end - p);
      rte_mbuf* mb = rte_pktmbuf_alloc(gFix->pool);
      if (mb == nullptr) fail("mempool empty: mbufs leaked");
      char* dst = rte_pktmbuf_append(mb, static_cast<uint16_t>(len));
      if (dst == nullptr) fail("frame does not fit an mbuf");
      std::memcpy(dst, p, len);
      p += len;
      // Everything in the buffer outside the frame is off limits, except
      // what the SYN proxy may grow a frame into and the headroom a PROXY
      // header is prepended into (both check the room first).
      auto* buf = static_cast<uint8_t*>(mb->buf_addr);
      const std::size_t room = std::max<std::size_t>(len, 18 + kSynProxyMaxL3Len);
      static_assert(RTE_PKTMBUF_HEADROOM >= kProxyV2Len);
      ASAN_POISON_MEMORY_REGION(buf, mb->data_off - kProxyV2Len);
      ASAN_POISON_MEMORY_REGION(buf + mb->data_off + room, mb->buf_len - mb->data_off - room);
      before[n] = assess(reinterpret_cast<const uint8_t*>(dst), len);
      pkts[n++] = mb;
    }
    if (n == 0) break;

    const uint64_t dropsBefore = totalDrops(*counters);
    // Poison the verdicts so that one the core leaves unset is noticed.
    for (uint16_t i = 0; i < n; ++i) verdicts[i] = Verdict{static_cast<Action>(0xff), DropReason::kCount, 0xffff};
    nat.process(pkts, n, snap, nowMs, verdicts);

    uint64_t dropVerdicts = 0;
    for (uint16_t i = 0; i < n; ++i) {
      const Verdict& v = verdicts[i];
      const int idx = frameNo + i;
      if (gStats.enabled && static_cast<unsigned>(v.action) < 5) {
        ++gStats.actions[static_cast<unsigned>(v.action)];
        if (v.action == Action::kDrop && v.reason < DropReason::kCount) ++gStats.drops[static_cast<std::size_t>(v.reason)];
      }
      switch (v.action) {
        case Action::kForward:
        case Action::kLocal:
          checkOutput(before[i], pkts[i], v.action, idx);
          break;
        case Action::kToControl:
          break;
        case Action::kHandoff:
          if (v.worker >= deps.numWorkers || v.worker == deps.workerId) fail("handoff to a bad worker", idx);
          break;
        case Action::kDrop:
          if (v.reason == DropReason::kNone || v.reason >= DropReason::kCount) fail("drop without a reason", idx);
          ++dropVerdicts;
          break;
        default:
          fail("unknown action", idx);
      }
      unpoison(pkts[i]);
      rte_pktmbuf_free(pkts[i]);
    }
    if (totalDrops(*counters) - dropsBefore != dropVerdicts) fail("drop counters do not match drop verdicts", frameNo);
    // Frames the core made (SYN proxy window updates): well formed, freed.
    NatCore::Generated& gen = nat.generated();
    for (uint16_t i = 0; i < gen.n; ++i) {
      const Sums s = assess(rte_pktmbuf_mtod(gen.pkts[i], const uint8_t*), rte_pktmbuf_data_len(gen.pkts[i]));
      if (!s.ipv4 || !s.ipOk || !s.l4Ok || s.proto != IPPROTO_TCP) fail("generated frame malformed", frameNo);
      rte_pktmbuf_free(gen.pkts[i]);
    }
    gen.n = 0;
    frameNo += n;
    if (flows.size() > flows.capacity()) fail("flow table over capacity");
    if (h1 & 0x20) nat.expire(nowMs, 16);
  }

  nat.clear();
  if (gStats.enabled) gStats.add(*counters);
  if (flows.size() != 0) fail("flows left after clear()");
  for (uint32_t i = 0; i < ports.maxPools(); ++i)
    if (ports.inUse(i) != 0) fail("SNAT ports still in use after clear()");
  if (ports.doubleFrees() != 0) fail("a SNAT port was released twice");
  return 0;
}
