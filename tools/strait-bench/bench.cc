// strait-bench: the in-process benchmark of the per-packet core. It drives
// NatCore exactly as a worker does (bursts of mbufs, an injected clock) but
// with frames written by a generator instead of a NIC, and reports TSC
// cycles per packet: the SYN path, established flows at several table sizes
// with uniform and Zipf popularity, a 1% new-flow mix; the floors measured
// in the same run (the flow table's bulk lookup on a table of the same
// size, a plain rx/tx loop on the net_null PMD, and the flow table's insert
// of a new flow); memory per flow; SNAT port allocation; the SYN cookie
// path (SYN in -> SYN-ACK out, and the ACK that opens the backend
// connection); Maglev build times; and multi-worker scaling with one
// generator per worker lcore; and the longest worker-loop iteration while
// a flow dump and a flush run over a million-flow table, beside the
// machine's own noise floor on the same CPU (cpu_noise.h). Figures are printed as Markdown so
// tools/bench can paste them into docs/benchmarks.md.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>
#include <rte_tcp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <ctime>
#include <cstdlib>
#include <sys/resource.h>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/checksum.h"
#include "dataplane/flow_table.h"
#include "dataplane/maglev.h"
#include "dataplane/snat_port_filter.h"
#include "dataplane/toeplitz.h"
#include "dataplane/nat.h"
#include "dataplane/port_alloc.h"
#include "dataplane/proxy_protocol.h"
#include "dataplane/siphash.h"
#include "dataplane/siphash_batch.h"
#include "dataplane/syncookie.h"
#include "dataplane/synproxy.h"
#include "dataplane/worker.h"
#include "dataplane/worker_commands.h"
#include "strait/snapshot.h"
#include "tools/lib/crc32c_collisions.h"
#include "tools/strait-bench/cpu_noise.h"

using namespace strait;
using namespace strait::dataplane;

namespace {

constexpr uint16_t kBurst = 32;
constexpr uint32_t kVip = 0xC000020A;  // 192.0.2.10
constexpr uint16_t kVipPort = 80;
constexpr int kBackends = 16;
// 16 x 16 pools of 64,512 ports: 16.5M ports, room for the 8M-flow rows
// (8 addresses left 8,257,536 ports, fewer than 2^23 flows).
constexpr int kSnatAddrs = 16;

struct Options {
  std::vector<uint32_t> sizes = {1000, 65536, 1000000, 8000000};
  int runs = 5;
  uint32_t packetsPerRun = 2'000'000;
  uint32_t maxWorkers = 8;
  bool quick = false;
  bool scaling = true;
  bool synOnly = false;  // --syn-only: the SYN-path fill alone, for profiling
  uint32_t controlStallFlows = 1'000'000;
  bool controlStallOnly = false;
  bool poolCreationOnly = false;
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  std::size_t i = static_cast<std::size_t>(p * double(v.size() - 1));
  return v[i];
}

std::unique_ptr<Snapshot> makeSnapshot(bool proxyProtocol = false) {
  auto s = std::make_unique<Snapshot>();
  s->generation = 1;
  ServiceView sv;
  sv.name = "bench";
  sv.slot = 0;
  sv.vip = htonl(kVip);
  sv.port = htons(kVipPort);
  sv.proto = IPPROTO_TCP;
  sv.proxyProtocol = proxyProtocol;
  for (int i = 0; i < kSnatAddrs; ++i) sv.snatIps.push_back(htonl(0xC0000214 + i));  // 192.0.2.20+
  std::vector<MaglevBackend> mb;
  for (int i = 0; i < kBackends; ++i) {
    BackendView b;
    b.ip = htonl(0xCB00710B + i);  // 203.0.113.11+
    b.port = htons(80);
    b.slot = static_cast<uint16_t>(i);
    sv.backends.push_back(b);
    mb.push_back({b.ip, b.port, 1});
  }
  sv.maglev = buildMaglev(mb, kMaglevDefaultSize);
  // The SNAT pools straitd would prepare (SnatPools): one slot per
  // (SNAT address, backend), numbered in this order; every Core loads
  // the same slots (see Core).
  uint32_t slot = 0;
  for (const BackendView& b : sv.backends)
    for (uint32_t ip : sv.snatIps) s->snatPools.push_back(SnatPoolRef{ip, b.ip, b.port, IPPROTO_TCP, 0, slot++});
  s->services.push_back(std::move(sv));
  s->buildIndexes({htonl(kVip)});
  s->indexSnatPools();
  return s;
}

// A TCP frame client -> VIP with the given flags and sequence number,
// written into `m` (at the default headroom: a PROXY header inserted in an
// earlier burst moved the start of the data).
void writeFrame(rte_mbuf* m, uint32_t flow, uint8_t flags, uint32_t seq = 0) {
  rte_pktmbuf_reset_headroom(m);
  uint8_t* p = rte_pktmbuf_mtod(m, uint8_t*);
  std::memset(p, 0, 54);
  // Ethernet
  p[0] = 0x02; p[5] = 0x01; p[6] = 0x02; p[11] = 0x02;
  p[12] = 0x08; p[13] = 0x00;
  // IPv4
  uint8_t* ip = p + 14;
  ip[0] = 0x45;
  ip[2] = 0; ip[3] = 40;
  ip[8] = 64;
  ip[9] = IPPROTO_TCP;
  uint32_t src = htonl(0xC6336400u + (flow % 250) + 1);  // 198.51.100.1-250
  uint32_t dst = htonl(kVip);
  std::memcpy(ip + 12, &src, 4);
  std::memcpy(ip + 16, &dst, 4);
  uint16_t ck = ipv4HeaderChecksum(ip, 20);
  std::memcpy(ip + 10, &ck, 2);
  // TCP
  uint8_t* t = ip + 20;
  uint16_t sport = htons(static_cast<uint16_t>(1024 + (flow / 250) % 64000));
  uint16_t dport = htons(kVipPort);
  std::memcpy(t, &sport, 2);
  std::memcpy(t + 2, &dport, 2);
  const uint32_t nseq = htonl(seq);
  std::memcpy(t + 4, &nseq, 4);
  t[12] = 0x50;
  t[13] = flags;
  t[14] = 0xff; t[15] = 0xff;
  uint16_t tck = l4Checksum(src, dst, IPPROTO_TCP, t, 20);
  std::memcpy(t + 16, &tck, 2);
  m->data_len = m->pkt_len = 54;
}

// Flow index f must be unique per (client ip, port): f < 250 * 64000.
constexpr uint32_t kMaxFlows = 250u * 64000u;

struct Core {
  std::unique_ptr<FlowTable> flows;
  std::unique_ptr<PortAllocator> ports;
  std::unique_ptr<NatCore> nat;
  WorkerCounters* counters = nullptr;
  rte_mempool* pool = nullptr;

  Core(uint32_t capacity, unsigned id, int socket, const SynCookies* cookies = nullptr) {
    FlowTable::Params fp;
    fp.capacity = capacity;
    fp.socketId = socket;
    fp.hashKey = {0x5eed + id, 0x0123456789abcdefull};
    std::string name = "bench_flows" + std::to_string(id) + "_" + std::to_string(capacity);
    fp.name = name.c_str();
    flows = std::make_unique<FlowTable>(fp);
    PortAllocator::Params pp;
    pp.maxPools = kBackends * kSnatAddrs + 8;
    ports = std::make_unique<PortAllocator>(pp);
    for (const SnatPoolRef& r : makeSnapshot()->snatPools)
      ports->load(r.slot, PoolKey{r.snatIp, r.backendIp, r.backendPort, r.proto, 0});
    counters = new (rte_zmalloc_socket("bench_ctr", sizeof(WorkerCounters), 64, socket)) WorkerCounters();
    NatCore::Deps d;
    d.flows = flows.get();
    d.ports = ports.get();
    d.counters = counters;
    d.cookies = cookies;
    nat = std::make_unique<NatCore>(d);
    std::string pn = "bench_mb" + std::to_string(id) + "_" + std::to_string(capacity);
    pool = rte_pktmbuf_pool_create(pn.c_str(), 1023, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
  }
  ~Core() {
    nat->clear();
    nat.reset();
    flows.reset();
    ports.reset();
    rte_free(counters);
    rte_mempool_free(pool);
  }
};

struct Timing {
  double cyclesPerPacket = 0;  // median over runs
  double p99Burst = 0;         // p99 of per-burst cycles per packet
  uint64_t dropped = 0;
};

// Runs `bursts` bursts whose frames come from `fill(i, mbuf)`; times only
// NatCore::process.
template <class Fill>
std::vector<double> timeBursts(Core& c, const Snapshot& snap, uint32_t bursts, Fill&& fill, uint64_t* dropped,
                               uint32_t now = 1000) {
  std::vector<double> perBurst;
  perBurst.reserve(bursts);
  rte_mbuf* pkts[kBurst];
  Verdict v[kBurst];
  if (rte_pktmbuf_alloc_bulk(c.pool, pkts, kBurst) != 0) {
    std::fprintf(stderr, "mbuf alloc failed\n");
    std::exit(1);
  }
  for (uint32_t b = 0; b < bursts; ++b) {
    for (uint16_t i = 0; i < kBurst; ++i) fill(b * kBurst + i, pkts[i]);
    uint64_t t0 = rte_rdtsc_precise();
    c.nat->process(pkts, kBurst, snap, now, v);
    uint64_t t1 = rte_rdtsc_precise();
    perBurst.push_back(double(t1 - t0) / kBurst);
    for (uint16_t i = 0; i < kBurst; ++i)
      if (v[i].action == Action::kDrop) ++*dropped;
    if ((b & 1023) == 0) ++now;
  }
  rte_pktmbuf_free_bulk(pkts, kBurst);
  return perBurst;
}

struct Zipf {
  std::vector<double> cdf;
  Zipf(uint32_t n, double s) : cdf(n) {
    double sum = 0;
    for (uint32_t i = 0; i < n; ++i) sum += 1.0 / std::pow(double(i + 1), s), cdf[i] = sum;
    for (auto& x : cdf) x /= sum;
  }
  uint32_t sample(std::mt19937_64& rng) const {
    double u = std::uniform_real_distribution<double>(0, 1)(rng);
    return static_cast<uint32_t>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
  }
};

void printRow(const char* what, uint32_t flows, const Timing& t) {
  std::printf("| %s | %u | %.1f | %.1f | %llu |\n", what, flows, t.cyclesPerPacket, t.p99Burst,
              static_cast<unsigned long long>(t.dropped));
}

// Fills the table with `n` flows through the SYN path and times it.
Timing fillFlows(Core& c, const Snapshot& snap, uint32_t n, uint32_t now = 1000) {
  Timing t;
  uint32_t bursts = (n + kBurst - 1) / kBurst;
  auto v = timeBursts(c, snap, bursts, [&](uint32_t i, rte_mbuf* m) { writeFrame(m, i % n, 0x02); }, &t.dropped,
                      now);
  t.cyclesPerPacket = median(v);
  t.p99Burst = percentile(v, 0.99);
  return t;
}

// The fill sent SYNs only; move every flow to ESTABLISHED (as the
// handshake would) so the established-flow figures measure that state.
void establishAll(Core& c, uint32_t now = 1000) {
  std::vector<uint32_t> idx;
  idx.reserve(c.flows->size());
  c.flows->forEach([&](uint32_t i, const Flow&) { idx.push_back(i); });
  for (uint32_t i : idx) c.flows->setState(i, FlowState::kEstablished, now);
}

Timing established(Core& c, const Snapshot& snap, uint32_t n, const Options& o, const Zipf* zipf) {
  std::vector<double> meds, all;
  Timing t;
  std::mt19937_64 rng(42);
  uint32_t bursts = o.packetsPerRun / kBurst;
  std::vector<uint32_t> seq(std::size_t(bursts) * kBurst);
  for (int r = 0; r < o.runs; ++r) {
    for (auto& x : seq) x = zipf ? zipf->sample(rng) : static_cast<uint32_t>(rng() % n);
    auto v = timeBursts(c, snap, bursts, [&](uint32_t i, rte_mbuf* m) { writeFrame(m, seq[i], 0x10); }, &t.dropped);
    double sum = 0;
    for (double x : v) sum += x;
    meds.push_back(sum / double(v.size()));
    all.insert(all.end(), v.begin(), v.end());
  }
  t.cyclesPerPacket = median(meds);
  t.p99Burst = percentile(all, 0.99);
  return t;
}

Timing mix(Core& c, const Snapshot& snap, uint32_t n, const Options& o) {
  std::vector<double> meds, all;
  Timing t;
  std::mt19937_64 rng(7);
  // Every run adds 1% new flows; keep them within the table's spare room so
  // the figure is never a flow_table_full drop.
  const uint32_t room = c.flows->capacity() - n;
  const uint32_t perRun = std::min<uint32_t>(o.packetsPerRun, room / static_cast<uint32_t>(o.runs) * 90);
  uint32_t bursts = std::max<uint32_t>(perRun / kBurst, 1);
  uint32_t fresh = n;  // new flow indices start after the established ones
  for (int r = 0; r < o.runs; ++r) {
    auto v = timeBursts(
        c, snap, bursts,
        [&](uint32_t, rte_mbuf* m) {
          if (rng() % 100 == 0 && fresh < kMaxFlows)
            writeFrame(m, fresh++, 0x02);
          else
            writeFrame(m, static_cast<uint32_t>(rng() % n), 0x10);
        },
        &t.dropped);
    double sum = 0;
    for (double x : v) sum += x;
    meds.push_back(sum / double(v.size()));
    all.insert(all.end(), v.begin(), v.end());
  }
  t.cyclesPerPacket = median(meds);
  t.p99Burst = percentile(all, 0.99);
  return t;
}

// Flow i of the floors: distinct original keys (250 clients x ports) and
// distinct reply keys (backend x SNAT address x SNAT port), as the SYN
// path makes them.
Flow floorFlow(uint32_t i) {
  Flow f{};
  f.clientIp = htonl(0xC6336400u + (i % 250) + 1);
  f.vip = htonl(kVip);
  f.clientPort = htons(static_cast<uint16_t>(1024 + i / 250));
  f.vipPort = htons(kVipPort);
  f.backendIp = htonl(0xCB00710B + i % kBackends);
  f.snatIp = htonl(0xC0000214 + (i / kBackends) % kSnatAddrs);
  f.backendPort = htons(80);
  f.snatPort = htons(static_cast<uint16_t>(1024 + i / (kBackends * kSnatAddrs)));
  f.proto = IPPROTO_TCP;
  f.state = FlowState::kEstablished;
  return f;
}

std::unique_ptr<FlowTable> floorTable(uint32_t capacity) {
  FlowTable::Params fp;
  fp.capacity = capacity;
  fp.socketId = static_cast<int>(rte_socket_id());
  fp.hashKey = {0x5eed, 0x0123456789abcdefull};
  return std::make_unique<FlowTable>(fp);
}

// Floor 1: FlowTable::lookupBulk (SipHash of the burst, the buckets, the
// records' keys compared) on a table of the benchmark's capacity holding n
// flows (2n keys), 32 random original keys per call.
double hashFloor(uint32_t n, uint32_t capacity, int runs, uint32_t packets) {
  auto t = floorTable(capacity);
  for (uint32_t i = 0; i < n; ++i)
    if (t->insert(floorFlow(i), 0) == kNoFlow) return -1;
  std::mt19937_64 rng(1);
  std::vector<double> meds;
  FlowKey keys[kBurst];
  const FlowKey* kp[kBurst];
  uint32_t idx[kBurst];
  Direction dir[kBurst];
  for (int i = 0; i < kBurst; ++i) kp[i] = &keys[i];
  uint64_t found = 0, asked = 0;
  for (int r = 0; r < runs; ++r) {
    uint64_t cycles = 0, pk = 0;
    for (uint32_t b = 0; b < packets / kBurst; ++b) {
      for (auto& k : keys) k = originalKey(floorFlow(static_cast<uint32_t>(rng() % n)));
      uint64_t t0 = rte_rdtsc_precise();
      t->lookupBulk(kp, kBurst, idx, dir);
      cycles += rte_rdtsc_precise() - t0;
      for (uint32_t i : idx) found += i != kNoFlow;
      pk += kBurst;
    }
    asked += pk;
    meds.push_back(double(cycles) / double(pk));
  }
  if (found != asked) return -1;
  return median(meds);
}

// Floor 3: FlowTable::insert of a new flow - both keys hashed, looked up
// (a clash must not hijack another flow) and stored, the record written
// and queued for expiry - filling an empty table of the benchmark's
// capacity with n flows, timed per burst of 32 flows like the SYN path;
// median cycles per flow.
double insertFloor(uint32_t n, uint32_t capacity) {
  auto t = floorTable(capacity);
  std::vector<Flow> flows(n);
  for (uint32_t i = 0; i < n; ++i) flows[i] = floorFlow(i);
  std::vector<double> perBurst;
  perBurst.reserve(n / kBurst + 1);
  for (uint32_t f = 0; f + kBurst <= n; f += kBurst) {
    uint64_t t0 = rte_rdtsc_precise();
    for (uint32_t i = f; i < f + kBurst; ++i)
      if (t->insert(flows[i], 0) == kNoFlow) return -1;
    perBurst.push_back(double(rte_rdtsc_precise() - t0) / kBurst);
  }
  return perBurst.empty() ? -1 : median(perBurst);
}

// Floor 2: rx_burst + tx_burst on a net_null port (the cost of moving
// mbufs through a PMD with no NIC behind it).
double nullPmdFloor(int runs, uint32_t packets) {
  uint16_t port;
  if (rte_eth_dev_get_port_by_name("net_null0", &port) != 0) return -1;
  rte_mempool* mp = rte_pktmbuf_pool_create("bench_null", 4095, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
  rte_eth_conf conf{};
  if (rte_eth_dev_configure(port, 1, 1, &conf) != 0) return -1;
  if (rte_eth_rx_queue_setup(port, 0, 512, rte_eth_dev_socket_id(port), nullptr, mp) != 0) return -1;
  if (rte_eth_tx_queue_setup(port, 0, 512, rte_eth_dev_socket_id(port), nullptr) != 0) return -1;
  if (rte_eth_dev_start(port) != 0) return -1;
  std::vector<double> meds;
  rte_mbuf* pkts[kBurst];
  for (int r = 0; r < runs; ++r) {
    uint64_t pk = 0;
    uint64_t t0 = rte_rdtsc_precise();
    while (pk < packets) {
      uint16_t n = rte_eth_rx_burst(port, 0, pkts, kBurst);
      uint16_t s = rte_eth_tx_burst(port, 0, pkts, n);
      for (uint16_t i = s; i < n; ++i) rte_pktmbuf_free(pkts[i]);
      pk += n;
    }
    meds.push_back(double(rte_rdtsc_precise() - t0) / double(pk));
  }
  rte_eth_dev_stop(port);
  rte_eth_dev_close(port);
  rte_mempool_free(mp);
  return median(meds);
}

// Hash flooding: 16,384 flow keys crafted so that CRC32C (the flow table's
// hash before SipHash) gives them all one value whatever the seed (see
// tools/lib/crc32c_collisions.h), against as many random keys. For
// contrast, CRC32C driving an rte_hash as the flow table once did
// (extendable buckets, the signatures of a burst computed by the caller
// and passed in); then the flow table itself (FlowTable: keyed SipHash-1-3
// and its own FlowHash), the keys as the flows' original keys. Inserts are
// timed per key (a FlowTable insert stores two keys: its cycles per flow
// are halved); lookups per key in bursts of 32 with the hashing inside the
// timed region, median of runs.
struct CollisionRow {
  double insertCycles = 0;
  double lookupCycles = 0;
};

uint32_t unusedHash(const void*, uint32_t, uint32_t) {
  std::fprintf(stderr, "collision bench: rte_hash hashed a key itself\n");
  std::abort();
}

// `hash(keys, n, sigs)` hashes a burst.
template <class Hash>
CollisionRow collisionCase(const std::vector<FlowKey>& keys, Hash&& hash, int runs, const char* name) {
  rte_hash_parameters hp{};
  hp.name = name;
  hp.entries = 2 * static_cast<uint32_t>(keys.size());
  hp.key_len = sizeof(FlowKey);
  hp.hash_func = unusedHash;
  hp.socket_id = static_cast<int>(rte_socket_id());
  hp.extra_flag = RTE_HASH_EXTRA_FLAGS_EXT_TABLE;
  rte_hash* h = rte_hash_create(&hp);
  if (!h) return {-1, -1};
  CollisionRow row;
  uint64_t t0 = rte_rdtsc_precise();
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const FlowKey* k = &keys[i];
    hash_sig_t s;
    hash(&k, 1, &s);
    rte_hash_add_key_with_hash_data(h, k, s, reinterpret_cast<void*>(uintptr_t(i)));
  }
  row.insertCycles = double(rte_rdtsc_precise() - t0) / double(keys.size());

  constexpr uint32_t kLookups = 65536;
  std::mt19937_64 rng(3);
  std::vector<uint32_t> order(kLookups);
  for (auto& x : order) x = static_cast<uint32_t>(rng() % keys.size());
  const void* kp[kBurst];
  const FlowKey* fkp[kBurst];
  hash_sig_t sig[kBurst];
  void* data[kBurst];
  std::vector<double> meds;
  uint64_t found = 0;
  for (int r = 0; r < runs; ++r) {
    t0 = rte_rdtsc_precise();
    for (uint32_t b = 0; b < kLookups; b += kBurst) {
      for (uint32_t i = 0; i < kBurst; ++i) kp[i] = fkp[i] = &keys[order[b + i]];
      hash(fkp, kBurst, sig);
      uint64_t hits = 0;
      rte_hash_lookup_with_hash_bulk_data(h, kp, sig, kBurst, &hits, data);
      found += static_cast<uint64_t>(__builtin_popcountll(hits));
    }
    meds.push_back(double(rte_rdtsc_precise() - t0) / kLookups);
  }
  rte_hash_free(h);
  if (found != uint64_t{kLookups} * static_cast<uint64_t>(runs)) return {-1, -1};
  row.lookupCycles = median(meds);
  return row;
}

CollisionRow flowTableCase(const std::vector<FlowKey>& keys, const SipKey& sipKey, int runs) {
  FlowTable::Params fp;
  fp.capacity = static_cast<uint32_t>(keys.size());
  fp.socketId = static_cast<int>(rte_socket_id());
  fp.hashKey = sipKey;
  FlowTable t(fp);
  CollisionRow row;
  std::vector<Flow> flows(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    Flow& f = flows[i];
    f = floorFlow(static_cast<uint32_t>(i));  // distinct reply keys
    f.clientIp = keys[i].srcIp;
    f.vip = keys[i].dstIp;
    f.clientPort = keys[i].srcPort;
    f.vipPort = keys[i].dstPort;
    f.proto = keys[i].proto;
  }
  uint64_t t0 = rte_rdtsc_precise();
  for (const Flow& f : flows)
    if (t.insert(f, 0) == kNoFlow) return {-1, -1};
  row.insertCycles = double(rte_rdtsc_precise() - t0) / double(2 * keys.size());

  constexpr uint32_t kLookups = 65536;
  std::mt19937_64 rng(3);
  std::vector<uint32_t> order(kLookups);
  for (auto& x : order) x = static_cast<uint32_t>(rng() % keys.size());
  const FlowKey* fkp[kBurst];
  uint32_t idx[kBurst];
  Direction dir[kBurst];
  std::vector<double> meds;
  uint64_t found = 0;
  for (int r = 0; r < runs; ++r) {
    t0 = rte_rdtsc_precise();
    for (uint32_t b = 0; b < kLookups; b += kBurst) {
      for (uint32_t i = 0; i < kBurst; ++i) fkp[i] = &keys[order[b + i]];
      t.lookupBulk(fkp, kBurst, idx, dir);
      for (uint32_t i = 0; i < kBurst; ++i) found += idx[i] == order[b + i];
    }
    meds.push_back(double(rte_rdtsc_precise() - t0) / kLookups);
  }
  if (found != uint64_t{kLookups} * static_cast<uint64_t>(runs)) return {-1, -1};
  row.lookupCycles = median(meds);
  return row;
}

void collisionBench(int runs) {
  constexpr uint32_t kKeys = 16384;
  FlowKey base{};
  base.srcIp = htonl(0xC6336401);  // 198.51.100.1
  base.dstIp = htonl(kVip);
  base.srcPort = htons(1024);
  base.dstPort = htons(kVipPort);
  base.proto = IPPROTO_TCP;
  const std::vector<FlowKey> crafted = strait::tools::crc32cCollidingKeys(base, kKeys);
  std::vector<FlowKey> random(kKeys, base);
  std::mt19937_64 rng(11);
  for (auto& k : random) {
    k.srcIp = static_cast<uint32_t>(rng());
    k.srcPort = static_cast<uint16_t>(rng());
  }
  const uint32_t crcSeed = 0x5eed;
  const SipKey sipKey{0x0123456789abcdefull, 0xfedcba9876543210ull};
  auto crcHw = [crcSeed](const FlowKey* const* k, uint32_t n, hash_sig_t* out) {
    for (uint32_t i = 0; i < n; ++i) {
      uint64_t w[2];
      std::memcpy(w, k[i], sizeof w);
      out[i] = rte_hash_crc_8byte(w[1], rte_hash_crc_8byte(w[0], crcSeed));
    }
  };
  const SipBatchFn batch = sipHash13x16BatchBest();
  std::printf("\n### Hash flooding: %u keys crafted to collide under CRC32C vs %u random keys\n\n", kKeys, kKeys);
  std::printf("SipHash-1-3 of a burst: %s implementation.\n\n",
              sipBatchName(batch));
  std::printf("| flow hash | keys | insert cycles/key | lookup cycles/key (bursts of 32) |\n|---|---|---|---|\n");
  struct Case {
    const char* hash;
    const char* keys;
    CollisionRow row;
  };
  std::vector<Case> cases;
  cases.push_back({"CRC32C, seeded (before)", "random", collisionCase(random, crcHw, runs, "bench_coll_cr")});
  cases.push_back({"CRC32C, seeded (before)", "crafted", collisionCase(crafted, crcHw, runs, "bench_coll_cc")});
  cases.push_back({"FlowTable: SipHash-1-3 keyed + FlowHash (now)", "random", flowTableCase(random, sipKey, runs)});
  cases.push_back({"FlowTable: SipHash-1-3 keyed + FlowHash (now)", "crafted", flowTableCase(crafted, sipKey, runs)});
  for (const Case& c : cases) {
    if (c.row.lookupCycles < 0)
      std::printf("| %s | %s | failed | failed |\n", c.hash, c.keys);
    else
      std::printf("| %s | %s | %.1f | %.1f |\n", c.hash, c.keys, c.row.insertCycles, c.row.lookupCycles);
  }
}

// A client SYN as Linux sends it (MSS, SACK-permitted, timestamps, window
// scale: a 40-byte TCP header) for flow `flow`, client ISN 1000.
void writeSynWithOptions(rte_mbuf* m, uint32_t flow) {
  writeFrame(m, flow, 0x02);
  uint8_t* ip = rte_pktmbuf_mtod(m, uint8_t*) + 14;
  uint8_t* t = ip + 20;
  static const uint8_t kOpts[20] = {2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7};
  std::memcpy(t + 20, kOpts, sizeof kOpts);
  t[12] = 0xa0;
  t[4] = 0; t[5] = 0; t[6] = 0x03; t[7] = 0xe8;  // seq 1000
  ip[3] = 60;
  ip[10] = ip[11] = 0;
  const uint16_t ck = ipv4HeaderChecksum(ip, 20);
  std::memcpy(ip + 10, &ck, 2);
  uint32_t src, dst;
  std::memcpy(&src, ip + 12, 4);
  std::memcpy(&dst, ip + 16, 4);
  t[16] = t[17] = 0;
  const uint16_t tck = l4Checksum(src, dst, IPPROTO_TCP, t, 40);
  std::memcpy(t + 16, &tck, 2);
  m->data_len = m->pkt_len = 74;
}

// The client's ACK to a cookie SYN-ACK `synAck` (in place of it): seq 1001,
// ack = cookie + 1, timestamps echoing ours.
void writeCookieAck(rte_mbuf* m, uint32_t flow, uint32_t cookie, uint32_t ourTs) {
  writeFrame(m, flow, 0x10);
  uint8_t* ip = rte_pktmbuf_mtod(m, uint8_t*) + 14;
  uint8_t* t = ip + 20;
  uint8_t opts[12] = {1, 1, 8, 10, 0, 0, 0, 2, 0, 0, 0, 0};
  for (int i = 0; i < 4; ++i) opts[8 + i] = static_cast<uint8_t>(ourTs >> (24 - 8 * i));
  std::memcpy(t + 20, opts, sizeof opts);
  t[12] = 0x80;
  const uint32_t seq = htonl(1001), ack = htonl(cookie + 1);
  std::memcpy(t + 4, &seq, 4);
  std::memcpy(t + 8, &ack, 4);
  ip[3] = 52;
  ip[10] = ip[11] = 0;
  const uint16_t ck = ipv4HeaderChecksum(ip, 20);
  std::memcpy(ip + 10, &ck, 2);
  uint32_t src, dst;
  std::memcpy(&src, ip + 12, 4);
  std::memcpy(&dst, ip + 16, 4);
  t[16] = t[17] = 0;
  const uint16_t tck = l4Checksum(src, dst, IPPROTO_TCP, t, 32);
  std::memcpy(t + 16, &tck, 2);
  m->data_len = m->pkt_len = 66;
}

// The SYN cookie path on a service with syn_proxy = "on": a SYN answered
// with a cookie SYN-ACK in place (no flow), and the client's ACK that
// checks the cookie, creates the flow, takes a SNAT port and becomes the
// SYN to the backend. Only NatCore::process is timed.
void cookieBench(const Snapshot& base, int runs) {
  Snapshot snap = base;
  for (auto& sv : snap.services) sv.synProxy = SynProxyMode::kOn;
  const SynCookies cookies(SipKey{0x1234, 0x5678});
  constexpr uint32_t kFlowsPerRun = 32 * 1024;
  std::vector<double> synMeds, ackMeds;
  uint64_t bad = 0;
  rte_mbuf* pkts[kBurst];
  Verdict v[kBurst];
  uint32_t cookie[kBurst], ts[kBurst];
  for (int r = 0; r < runs; ++r) {
    Core c(65535, 900 + static_cast<unsigned>(r), static_cast<int>(rte_socket_id()), &cookies);
    if (rte_pktmbuf_alloc_bulk(c.pool, pkts, kBurst) != 0) {
      std::fprintf(stderr, "mbuf alloc failed\n");
      std::exit(1);
    }
    std::vector<double> syn, ack;
    for (uint32_t b = 0; b < kFlowsPerRun / kBurst; ++b) {
      for (uint16_t i = 0; i < kBurst; ++i) writeSynWithOptions(pkts[i], b * kBurst + i);
      uint64_t t0 = rte_rdtsc_precise();
      c.nat->process(pkts, kBurst, snap, 1000, v);
      uint64_t t1 = rte_rdtsc_precise();
      syn.push_back(double(t1 - t0) / kBurst);
      for (uint16_t i = 0; i < kBurst; ++i) {
        if (v[i].action != Action::kLocal) ++bad;
        const uint8_t* t = rte_pktmbuf_mtod(pkts[i], const uint8_t*) + 34;
        cookie[i] = tcpSeq(t);
        uint32_t ecr;
        readTimestamp(t, findTimestamp(t, 40), ts[i], ecr);
      }
      for (uint16_t i = 0; i < kBurst; ++i) writeCookieAck(pkts[i], b * kBurst + i, cookie[i], ts[i]);
      t0 = rte_rdtsc_precise();
      c.nat->process(pkts, kBurst, snap, 1000, v);
      t1 = rte_rdtsc_precise();
      ack.push_back(double(t1 - t0) / kBurst);
      for (uint16_t i = 0; i < kBurst; ++i)
        if (v[i].action != Action::kForward) ++bad;
    }
    rte_pktmbuf_free_bulk(pkts, kBurst);
    synMeds.push_back(median(syn));
    ackMeds.push_back(median(ack));
  }
  std::printf("\n### SYN cookies (syn_proxy = \"on\"; cycles per packet, NatCore::process only)\n\n"
              "| case | cycles/pkt (median of %d runs x %u) | not as expected |\n|---|---|---|\n",
              runs, kFlowsPerRun);
  std::printf("| SYN in -> cookie SYN-ACK out (no flow) | %.1f | %llu |\n", median(synMeds),
              static_cast<unsigned long long>(bad));
  std::printf("| cookie ACK in -> flow + SNAT port + SYN to the backend out | %.1f | %llu |\n", median(ackMeds),
              static_cast<unsigned long long>(bad));
}

void portAllocBench() {
  PortAllocator::Params pp;
  pp.maxPools = 4;
  PortAllocator pa(pp);
  const uint32_t p = 0;
  pa.load(p, PoolKey{htonl(0xC0000214), htonl(0xCB00710B), htons(80), IPPROTO_TCP, 0});
  std::vector<uint16_t> got(pa.capacity(p));
  std::vector<double> meds;
  for (int r = 0; r < 5; ++r) {
    uint64_t t0 = rte_rdtsc_precise();
    uint32_t n = 0;
    while (n < got.size() && pa.allocate(p, got[n])) ++n;
    uint64_t t1 = rte_rdtsc_precise();
    for (uint32_t i = 0; i < n; ++i) pa.release(p, got[i]);
    uint64_t t2 = rte_rdtsc_precise();
    meds.push_back(double(t2 - t0) / (2.0 * n));
    (void)t1;
  }
  uint64_t t0 = rte_rdtsc_precise();
  PortAllocator pb(pp);
  pb.load(1, PoolKey{htonl(0xC0000215), htonl(0xCB00710B), htons(80), IPPROTO_TCP, 0});
  uint64_t t1 = rte_rdtsc_precise();
  std::printf("\n### SNAT port allocation\n\n| operation | cycles |\n|---|---|\n");
  std::printf("| allocate + release (per operation, median of 5 x %zu) | %.1f |\n", got.size(), median(meds));
  std::printf("| allocator set-up + loading a (SNAT, backend) pool slot (control thread): 64512 ports | %llu |\n",
              static_cast<unsigned long long>(t1 - t0));
}

// The cost of loading a new SNAT pool slot for one worker (the control
// thread does it for each worker before publishing a snapshot with a new
// backend): 16 workers whose replies are steered by the NIC's Toeplitz
// hash, the full port range, worker 5's share. Measured port by port
// through std::function (the owner rule and a snapshot lookup per port)
// and through SnatPortFilter (one pass over tables built at start-up), 64
// new pools each.
void poolCreationBench() {
  static constexpr std::array<uint8_t, 40> kKey = {
      0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
      0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
      0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3e, 0xbe, 0xac, 0x01, 0xfa};
  constexpr uint16_t kWorkers = 16, kWorker = 5;
  constexpr uint32_t kPools = 64;
  const Toeplitz t(kKey);
  std::vector<uint16_t> reta(128);
  for (std::size_t i = 0; i < reta.size(); ++i) reta[i] = static_cast<uint16_t>(i % kWorkers);
  const auto snap = makeSnapshot();
  const double perUs = double(rte_get_tsc_hz()) / 1e6;
  auto run = [&](PortAllocator::Params pp, const char* what) {
    pp.maxPools = kPools;
    PortAllocator pa(pp);
    std::vector<double> us;
    uint64_t ports = 0;
    for (uint32_t k = 0; k < kPools; ++k) {
      const PoolKey key{htonl(0xC000020A), htonl(0xC6120000 + k), htons(80), IPPROTO_TCP, 0};
      const uint64_t t0 = rte_rdtsc_precise();
      const uint32_t id = k;
      pa.load(id, key, snap.get());
      const uint64_t t1 = rte_rdtsc_precise();
      us.push_back(double(t1 - t0) / perUs);
      ports += pa.capacity(id);
    }
    const double med = median(us);
    std::printf("| %s | %llu | %.1f | %.1f |\n", what, static_cast<unsigned long long>(ports / kPools), med,
                *std::max_element(us.begin(), us.end()));
    std::fflush(stdout);
  };
  std::printf("\n### Loading a SNAT pool slot for one worker (16 workers, Toeplitz RSS, ports 1024-65535, %u pools)\n\n"
              "| method | ports per pool | us per pool (median) | us (max) |\n|---|---|---|---|\n", kPools);
  PortAllocator::Params before;
  std::function<bool(const PoolKey&, uint16_t)> owns = [&t, &reta](const PoolKey& k, uint16_t port) {
    return rssQueue(t.hashV4(k.backendIp, k.snatIp, k.backendPort, htons(port)), reta) == kWorker;
  };
  const Snapshot* current = snap.get();
  before.eligible = [owns, current](const PoolKey& k, uint16_t port) {
    if (owns && !owns(k, port)) return false;
    return current->findService(k.snatIp, htons(port), k.proto) == nullptr;
  };
  run(before, "port by port through std::function (owner rule + snapshot lookup per port)");
  SnatPortFilter::Params fp;
  fp.mode = OwnerMode::kRssHash;
  fp.worker = kWorker;
  fp.workers = kWorkers;
  fp.toeplitz = &t;
  fp.reta = reta;
  SnatPortFilter filter(fp);
  PortAllocator::Params after;
  after.fill = SnatPortFilter::fillerFor(filter);
  run(after, "SnatPortFilter, one pass over tables built at start-up");
}

void maglevBench() {
  std::printf("\n### Maglev table build\n\n| M | backends | ms (median of 5) |\n|---|---|---|\n");
  for (uint32_t m : {65537u, 655373u}) {
    for (int nb : {10, 100, 1000}) {
      std::vector<MaglevBackend> b;
      for (int i = 0; i < nb; ++i) b.push_back({htonl(0xCB007100 + uint32_t(i)), htons(static_cast<uint16_t>(443 + i / 256)), 1});
      std::vector<double> v;
      for (int r = 0; r < 5; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        auto t = buildMaglev(b, m);
        auto t1 = std::chrono::steady_clock::now();
        v.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        if (t.size() != m) std::abort();
      }
      std::printf("| %u | %d | %.2f |\n", m, nb, median(v));
    }
  }
}

// Multi-worker scaling: every worker lcore owns a Core with `flows` flows
// and runs established-flow bursts for a fixed time; packets/s are summed.
struct ScaleArg {
  Core* core;
  const Snapshot* snap;
  uint32_t flows;
  std::atomic<bool>* go;
  std::atomic<bool>* stop;
  uint64_t packets = 0;
  uint64_t cycles = 0;
};

int scaleWorker(void* a) {
  auto* s = static_cast<ScaleArg*>(a);
  rte_mbuf* pkts[kBurst];
  Verdict v[kBurst];
  if (rte_pktmbuf_alloc_bulk(s->core->pool, pkts, kBurst) != 0) return -1;
  std::mt19937_64 rng(rte_lcore_id());
  while (!s->go->load()) rte_pause();
  uint64_t t0 = rte_rdtsc();
  while (!s->stop->load(std::memory_order_relaxed)) {
    for (uint16_t i = 0; i < kBurst; ++i) writeFrame(pkts[i], static_cast<uint32_t>(rng() % s->flows), 0x10);
    s->core->nat->process(pkts, kBurst, *s->snap, 2000, v);
    s->packets += kBurst;
  }
  s->cycles = rte_rdtsc() - t0;
  rte_pktmbuf_free_bulk(pkts, kBurst);
  return 0;
}

// PROXY protocol v2: established flows of a service with the header on,
// against the same table with it off. "First data" sends every flow
// segments at the client's ISN + 1 while the backend has not acknowledged
// the header, so every packet gets the header inserted (what the first
// packet of each connection costs); "header acknowledged" is the rest of
// the connection (sequence and ack translation only).
void proxyProtocolBench(const Options& o) {
  const uint32_t n = 65536;
  auto plain = makeSnapshot(false);
  auto pp = makeSnapshot(true);
  std::printf("\n### PROXY protocol v2 (one worker, cycles per packet)\n\n"
              "| case | flows | cycles/pkt (median burst) | p99 per burst | drops |\n|---|---|---|---|---|\n");
  uint32_t capacity = 1023;
  while (capacity < n + n / 8 + 4096) capacity = capacity * 2 + 1;
  for (int variant = 0; variant < 3; ++variant) {
    auto core = std::make_unique<Core>(capacity, 1, static_cast<int>(rte_socket_id()));
    const Snapshot& snap = variant == 0 ? *plain : *pp;
    fillFlows(*core, snap, n);
    establishAll(*core);
    // The fill's SYNs had seq 0: the header starts at 1.
    if (variant == 2) {
      std::vector<uint32_t> idx;
      core->flows->forEach([&](uint32_t i, const Flow&) { idx.push_back(i); });
      for (uint32_t i : idx) core->flows->at(i).ppFlags |= kPpAcked;  // as after the backend's ACK
    }
    const uint32_t seq = variant == 1 ? 1 : 1000;
    std::vector<double> all;
    Timing t;
    std::mt19937_64 rng(42);
    const uint32_t bursts = o.packetsPerRun / kBurst;
    for (int r = 0; r < o.runs; ++r) {
      auto v = timeBursts(*core, snap, bursts,
                          [&](uint32_t, rte_mbuf* m) { writeFrame(m, static_cast<uint32_t>(rng() % n), 0x18, seq); },
                          &t.dropped);
      all.insert(all.end(), v.begin(), v.end());
    }
    // The median burst rather than the median of run means: the three
    // cases differ by tens of cycles, less than what one preempted burst
    // adds to a run's mean on a shared machine.
    t.cyclesPerPacket = median(all);
    t.p99Burst = percentile(all, 0.99);
    static const char* const kNames[] = {"established, proxy_protocol off", "first data, header inserted",
                                         "established, header acknowledged"};
    printRow(kNames[variant], n, t);
    if (variant == 1)
      std::printf("| (headers inserted in this case: %llu) | | | | |\n",
                  static_cast<unsigned long long>(core->counters->proxyHeaders));
    std::fflush(stdout);
  }
}

void scaling(const Snapshot& snap, const Options& o) {
  unsigned avail = rte_lcore_count() - 1;
  std::printf("\n### Multi-worker scaling (established flows, 64K flows per worker, generator in the loop)\n\n");
  std::printf("| workers | Mpps total | Mpps per worker | efficiency |\n|---|---|---|---|\n");
  double base = 0;
  for (uint32_t w = 1; w <= std::min<uint32_t>(o.maxWorkers, avail); w = w < 2 ? 2 : w + 2) {
    std::vector<std::unique_ptr<Core>> cores;
    std::vector<ScaleArg> args(w);
    std::atomic<bool> go{false}, stop{false};
    unsigned lc = rte_get_next_lcore(-1, 1, 0);
    std::vector<unsigned> lcores;
    for (uint32_t i = 0; i < w; ++i, lc = rte_get_next_lcore(lc, 1, 0)) {
      cores.push_back(std::make_unique<Core>(65536, 100 + i + w * 10, static_cast<int>(rte_lcore_to_socket_id(lc))));
      fillFlows(*cores.back(), snap, 65536);
      establishAll(*cores.back());
      args[i] = ScaleArg{cores.back().get(), &snap, 65536, &go, &stop};
      lcores.push_back(lc);
    }
    for (uint32_t i = 0; i < w; ++i) rte_eal_remote_launch(scaleWorker, &args[i], lcores[i]);
    go = true;
    auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(o.quick ? 1 : 3));
    stop = true;
    rte_eal_mp_wait_lcore();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    uint64_t pk = 0;
    for (auto& a : args) pk += a.packets;
    double mpps = double(pk) / secs / 1e6;
    if (w == 1) base = mpps;
    std::printf("| %u | %.2f | %.2f | %.0f%% |\n", w, mpps, mpps / w, base > 0 ? 100.0 * mpps / (base * w) : 0);
    std::fflush(stdout);
  }
}

// Control work inside the real worker loop: workerMain runs (on an lcore of
// its own, no ports) over a table of `n` flows, and the loop's own stall
// metric (WorkerCounters::loopMaxCycles and the iteration histogram) is read
// around a flow dump of the whole table (a service filter that matches
// nothing: every record is visited), a dump that fills the largest buffer
// lbctl can ask for, and a flush of every flow's backend. After each of
// those the worker stops for as long as the operation took and a bare loop
// that only reads the TSC runs on the same lcore (cpu_noise.h): its longest
// gap is what the machine alone does to a thread on that CPU, the floor
// under the worker's longest iteration. Around each row, what the kernel
// counted on that CPU (interrupts, softirqs, steal) and how long the thread
// waited runnable.
struct StallFigure {
  double maxUs = 0;
  uint64_t iterations = 0;
  uint64_t over50Us = 0;
  double wallMs = 0;
  uint64_t ranges[bench::kSlowRanges] = {};  // iterations over 50 us by range (cpu_noise.h)
  double onTick = -1;  // bare loops: bench::tickAligned of their 50-1000 us gaps
  bench::CpuSample noise;
};

// One step called directly (see controlStall's second part).
struct StepSample {
  uint64_t start = 0;      // TSC when the step started
  uint64_t tsc = 0;        // cycles, rdtsc around the step
  uint64_t cpuNs = 0;      // the thread's CPU time around it
  uint32_t cursor = 0;     // flush steps: where the step started,
  uint32_t next = 0;       // where it stopped,
  uint32_t removed = 0;    // and the flows it removed
  uint32_t minorFaults = 0;
  uint32_t involuntary = 0;
};

void controlStall(uint32_t n) {
  uint32_t capacity = 1023;
  while (capacity < n + n / 8) capacity = capacity * 2 + 1;
  auto snap = makeSnapshot();
  auto core = std::make_unique<Core>(capacity, 7, static_cast<int>(rte_socket_id()));
  // On the clock the worker loop uses, so that nothing expires meanwhile.
  fillFlows(*core, *snap, n, tscNowMs());
  establishAll(*core, tscNowMs());
  const uint32_t live = core->flows->size();

  const unsigned flags = RING_F_SP_ENQ | RING_F_SC_DEQ;
  rte_ring* cmds = rte_ring_create_elem("bench_cmd", sizeof(WorkerCommand), kCommandRingSize, SOCKET_ID_ANY, flags);
  rte_ring* reps = rte_ring_create_elem("bench_rep", sizeof(WorkerReply), kCommandRingSize, SOCKET_ID_ANY, flags);
  CommandRunner runner(cmds, reps, core->flows.get());
  std::atomic<const Snapshot*> current{snap.get()};
  std::atomic<bool> stop{false};
  WorkerContext ctx;
  ctx.snapshot = &current;
  ctx.nat = core->nat.get();
  ctx.counters = core->counters;
  ctx.commands = &runner;
  ctx.stop = &stop;
  // On an lcore of its own where there is one (-l 0,1), else a thread (no
  // noise figures then: the thread may run on any CPU).
  const unsigned lcore = rte_get_next_lcore(-1, 1, 0);
  const bool onLcore = lcore < RTE_MAX_LCORE;
  const unsigned cpu = onLcore ? rte_lcore_to_cpu_id(static_cast<int>(lcore)) : 0;
  std::thread worker;
  // Runs fn on the worker's lcore and waits for it.
  auto onWorkerLcore = [&](const std::function<void()>& fn) {
    if (!onLcore) {
      std::thread(fn).join();
      return;
    }
    rte_eal_remote_launch(
        [](void* p) {
          (*static_cast<const std::function<void()>*>(p))();
          return 0;
        },
        const_cast<std::function<void()>*>(&fn), lcore);
    rte_eal_wait_lcore(lcore);
  };
  pid_t workerTid = 0;
  onWorkerLcore([&workerTid] { workerTid = bench::currentTid(); });
  auto startWorker = [&] {
    stop = false;
    if (onLcore)
      rte_eal_remote_launch(workerMain, &ctx, lcore);
    else
      worker = std::thread([&ctx] { workerMain(&ctx); });
  };
  auto stopWorker = [&] {
    stop = true;
    if (onLcore)
      rte_eal_wait_lcore(lcore);
    else
      worker.join();
  };
  auto sample = [&](pid_t tid) { return onLcore ? bench::sampleCpu(cpu, tid) : bench::CpuSample{}; };
  startWorker();

  const double perUs = double(rte_get_tsc_hz()) / 1e6;
  WorkerCounters& c = *core->counters;
  auto over50 = [&] {
    uint64_t k = 0;
    for (std::size_t b = 0; b < kLoopBucketsUs.size(); ++b)
      if (kLoopBucketsUs[b] > 50) k += peek(c.loopBuckets[b]);
    return k + peek(c.loopBuckets[kLoopBucketsUs.size()]);
  };
  // The loop histogram's buckets over 50 us, folded into the ranges of
  // cpu_noise.h (their bounds are among kLoopBucketsUs).
  auto slowRanges = [&](uint64_t (&r)[bench::kSlowRanges]) {
    for (std::size_t b = 0; b < kLoopBucketCount; ++b) {
      const uint32_t lower = b == 0 ? 0 : kLoopBucketsUs[b - 1];
      if (lower >= 50) r[bench::slowRange(double(lower) + 1)] += peek(c.loopBuckets[b]);
    }
  };
  // Runs `work` (which returns once the operation is complete) between two
  // reads of the loop statistics.
  auto measure = [&](auto&& work) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ctx.loopMaxEpoch.fetch_add(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const bench::CpuSample n0 = sample(workerTid);
    const uint64_t loops0 = peek(c.loops);
    const uint64_t slow0 = over50();
    uint64_t ranges0[bench::kSlowRanges] = {};
    slowRanges(ranges0);
    const auto t0 = std::chrono::steady_clock::now();
    work();
    StallFigure f;
    f.wallMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    f.maxUs = double(peek(c.loopMaxCycles)) / perUs;
    f.iterations = peek(c.loops) - loops0;
    f.over50Us = over50() - slow0;
    slowRanges(f.ranges);
    for (std::size_t i = 0; i < bench::kSlowRanges; ++i) f.ranges[i] -= ranges0[i];
    f.noise = sample(workerTid) - n0;
    return f;
  };
  // The worker stops; the bare TSC loop runs on its lcore for `ms`; the
  // worker starts again (a new Loop over the same core and snapshot).
  auto bare = [&](double ms) {
    stopWorker();
    StallFigure f;
    const bench::CpuSample n0 = sample(workerTid);
    bench::BareLoop b;
    onWorkerLcore([&] {
      b = bench::bareTscLoop(static_cast<uint64_t>(ms * 1000 * perUs));
    });
    f.noise = sample(workerTid) - n0;
    f.wallMs = ms;
    f.iterations = b.iterations;
    f.over50Us = b.over;
    f.maxUs = double(b.maxGap) / perUs;
    std::copy(std::begin(b.ranges), std::end(b.ranges), f.ranges);
    f.onTick = bench::tickAligned(b.shortStalls);
    startWorker();
    return f;
  };
  uint32_t id = 0;
  auto dump = [&](uint16_t service, uint32_t cap, uint32_t& got) {
    std::vector<Flow> buf(cap);
    WorkerCommand cmd{CommandKind::kDumpFlows, ++id, cap, service, 0, buf.data()};
    while (rte_ring_sp_enqueue_elem(cmds, &cmd, sizeof cmd) != 0) std::this_thread::yield();
    WorkerReply r{};
    while (rte_ring_sc_dequeue_elem(reps, &r, sizeof r) != 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
    got = r.count;
  };
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  std::printf("\n### Control work in the worker loop (%u flows; workerMain on %s; load average %.2f %.2f %.2f)\n\n",
              live, onLcore ? ("lcore " + std::to_string(lcore) + ", CPU " + std::to_string(cpu)).c_str() : "a thread",
              load[0], load[1], load[2]);
  std::printf("Each operation is followed by a bare loop that only reads the TSC on the same lcore for as long as\n"
              "the operation took (its \"iterations\" are TSC reads, its longest iteration the longest gap between\n"
              "two reads). The last column is what the kernel counted on that CPU during the row.\n\n");
  std::printf("| operation | result | loop iterations | longest iteration (us) | iterations > 50 us | of which 50-100 / 100-250 / 250-1000 / > 1000 us | wall ms | on the worker's CPU meanwhile |\n"
              "|---|---|---|---|---|---|---|---|\n");
  auto row = [&](const char* what, const std::string& result, const StallFigure& f) {
    std::printf("| %s | %s | %llu | %.1f | %llu | %s | %.1f | %s |\n", what, result.c_str(),
                static_cast<unsigned long long>(f.iterations), f.maxUs, static_cast<unsigned long long>(f.over50Us),
                bench::rangesCell(f.ranges).c_str(), f.wallMs, onLcore ? bench::describe(f.noise).c_str() : "-");
    std::fflush(stdout);
  };
  const char* const kBare = "bare TSC loop, same lcore, same duration";
  // The result column of a bare loop: how many of its 50-1000 us gaps
  // follow the timer tick (cpu_noise.h, tickAligned).
  auto onTick = [](const StallFigure& f) {
    if (f.onTick < 0) return std::string("-");
    char b[96];
    std::snprintf(b, sizeof b, "%.0f%% of the intervals between its 50-1000 us gaps are whole ticks", 100 * f.onTick);
    return std::string(b);
  };
  auto f = measure([] { std::this_thread::sleep_for(std::chrono::milliseconds(100)); });
  row("idle loop (reference)", "-", f);
  {
    const StallFigure b = bare(f.wallMs);
    row(kBare, onTick(b), b);
  }
  uint32_t got = 0;
  f = measure([&] { dump(42, 100, got); });  // no flow on service slot 42: the whole array is visited
  row("flow dump, filter matching nothing", std::to_string(got) + " flows", f);
  {
    const StallFigure b = bare(f.wallMs);
    row(kBare, onTick(b), b);
  }
  f = measure([&] { dump(kAnyService, 100000, got); });
  row("flow dump, 100000 flows (lbctl's largest --limit)", std::to_string(got) + " flows", f);
  {
    const StallFigure b = bare(f.wallMs);
    row(kBare, onTick(b), b);
  }
  Snapshot flushed = *snap;
  flushed.generation = 2;
  for (int b = 0; b < kBackends; ++b) flushed.flushedBackends.set(static_cast<std::size_t>(b));
  f = measure([&] {
    current.store(&flushed, std::memory_order_release);
    while (core->flows->size() != 0) std::this_thread::sleep_for(std::chrono::microseconds(100));
  });
  row("flush of every flow's backend", std::to_string(peek(c.flowsFlushed)) + " flows flushed", f);
  {
    const StallFigure b = bare(f.wallMs);
    row(kBare, onTick(b), b);
  }
  {
    // 64 random lines per batch: about what 8 removals touch (record,
    // links, two hash buckets, a port ring and bitmap, counters each).
    stopWorker();
    const std::size_t bytes = std::size_t{256} << 20;
    void* mem = rte_malloc("bench_noise", bytes, 64);
    if (mem != nullptr) {
      std::memset(mem, 1, bytes);
      StallFigure m;
      const bench::CpuSample n0 = sample(workerTid);
      bench::BareLoop b;
      onWorkerLcore([&] { b = bench::memoryLoop(static_cast<uint64_t>(f.wallMs * 1000 * perUs), mem, bytes, 64); });
      m.noise = sample(workerTid) - n0;
      m.wallMs = f.wallMs;
      m.iterations = b.iterations;
      m.over50Us = b.over;
      m.maxUs = double(b.maxGap) / perUs;
      std::copy(std::begin(b.ranges), std::end(b.ranges), m.ranges);
      m.onTick = bench::tickAligned(b.shortStalls);
      row("random writes to 256 MiB of hugepage memory, 64 lines per iteration, same lcore, same duration", onTick(m), m);
      rte_free(mem);
    }
    startWorker();
  }
  stopWorker();

  // The same steps again, called one by one on this thread: each step's
  // TSC time, its thread CPU time, and the minor faults and involuntary
  // switches the thread had meanwhile (getrusage). On a shared host the
  // loop's longest iteration includes time the worker was not running at
  // all (preempted: TSC time above CPU time); the CPU time of a step is
  // what the step itself costs plus whatever interrupts and softirqs ran
  // on the CPU meanwhile (this kernel charges those to the thread they
  // interrupt unless built with CONFIG_IRQ_TIME_ACCOUNTING). A bare TSC
  // loop on this thread for as long as the flush took is the floor.
  fillFlows(*core, *snap, n, tscNowMs());
  establishAll(*core, tscNowMs());
  const unsigned mainCpu = rte_lcore_to_cpu_id(static_cast<int>(rte_get_main_lcore()));
  const pid_t mainTid = bench::currentTid();
  getloadavg(load, 3);
  std::printf("\nSteps called directly on lcore %u (CPU %u), load average %.2f %.2f %.2f:\n\n", rte_get_main_lcore(),
              mainCpu, load[0], load[1], load[2]);
  std::printf("| step (called directly, %u flows) | steps | median us | p99 us | max us (TSC) | max us (thread CPU time) "
              "| steps > 50 us (TSC) | of which 50-100 / 100-250 / 250-1000 / > 1000 us | of which not switched out | minor faults | involuntary switches | on this CPU meanwhile |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|\n",
              core->flows->size());
  // Calls step(sample) until it returns false; returns the samples and the wall time.
  auto timeSteps = [&](const char* what, auto&& step, double* wallMs = nullptr, double forMs = 0) {
    std::vector<StepSample> v;
    v.reserve(200000);
    const bench::CpuSample n0 = bench::sampleCpu(mainCpu, mainTid);
    const uint64_t start = rte_rdtsc();
    const uint64_t until = start + static_cast<uint64_t>(forMs * 1000 * perUs);
    bool more = true;
    while (more) {
      StepSample s;
      rusage r0{}, r1{};
      timespec c0{}, c1{};
      getrusage(RUSAGE_THREAD, &r0);
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
      const uint64_t t0 = rte_rdtsc_precise();
      more = step(s);
      const uint64_t t1 = rte_rdtsc_precise();
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
      getrusage(RUSAGE_THREAD, &r1);
      s.start = t0;
      s.tsc = t1 - t0;
      s.cpuNs = static_cast<uint64_t>((c1.tv_sec - c0.tv_sec) * 1'000'000'000LL + (c1.tv_nsec - c0.tv_nsec));
      s.minorFaults = static_cast<uint32_t>(r1.ru_minflt - r0.ru_minflt);
      s.involuntary = static_cast<uint32_t>(r1.ru_nivcsw - r0.ru_nivcsw);
      v.push_back(s);
      if (forMs > 0) more = rte_rdtsc() < until;
    }
    const double ms = double(rte_rdtsc() - start) / perUs / 1000;
    if (wallMs != nullptr) *wallMs = ms;
    const bench::CpuSample noise = bench::sampleCpu(mainCpu, mainTid) - n0;
    std::vector<double> tsc;
    double maxCpu = 0;
    uint64_t slow = 0, slowRunning = 0, faults = 0, switches = 0;
    uint64_t ranges[bench::kSlowRanges] = {};
    for (const StepSample& s : v) {
      tsc.push_back(double(s.tsc) / perUs);
      maxCpu = std::max(maxCpu, double(s.cpuNs) / 1e3);
      if (double(s.tsc) > 50 * perUs) {
        ++slow;
        ++ranges[bench::slowRange(double(s.tsc) / perUs)];
        if (s.involuntary == 0) ++slowRunning;
      }
      faults += s.minorFaults;
      switches += s.involuntary;
    }
    const double med = median(tsc);
    const double p99 = percentile(tsc, 0.99);
    std::printf("| %s | %zu | %.1f | %.1f | %.1f | %.1f | %llu | %s | %llu | %llu | %llu | %.0f ms: %s |\n", what,
                v.size(), med, p99, tsc.back(), maxCpu, static_cast<unsigned long long>(slow),
                bench::rangesCell(ranges).c_str(), static_cast<unsigned long long>(slowRunning),
                static_cast<unsigned long long>(faults),
                static_cast<unsigned long long>(switches), ms, bench::describe(noise).c_str());
    std::fflush(stdout);
    return v;
  };
  std::vector<Flow> buf(100000);
  WorkerCommand none{CommandKind::kDumpFlows, ++id, 100, 42, 0, buf.data()};
  rte_ring_sp_enqueue_elem(cmds, &none, sizeof none);
  timeSteps("flow dump, filter matching nothing", [&](StepSample&) { return runner.step(kCommandBudget) && runner.busy(); });
  WorkerReply r{};
  rte_ring_sc_dequeue_elem(reps, &r, sizeof r);
  WorkerCommand all{CommandKind::kDumpFlows, ++id, 100000, kAnyService, 0, buf.data()};
  rte_ring_sp_enqueue_elem(cmds, &all, sizeof all);
  timeSteps("flow dump, 100000 flows", [&](StepSample&) { return runner.step(kCommandBudget) && runner.busy(); });
  rte_ring_sc_dequeue_elem(reps, &r, sizeof r);
  uint32_t cursor = 0;
  double flushMs = 0;
  std::vector<StepSample> steps = timeSteps(
      "flush sweep of every flow",
      [&](StepSample& s) {
        s.cursor = cursor;
        cursor = core->nat->flushStep(flushed, cursor, kSweepBudget, &s.removed);
        s.next = cursor;
        return cursor < core->flows->capacity();
      },
      &flushMs);
  {
    const bench::CpuSample n0 = bench::sampleCpu(mainCpu, mainTid);
    const bench::BareLoop b = bench::bareTscLoop(static_cast<uint64_t>(flushMs * 1000 * perUs));
    const bench::CpuSample noise = bench::sampleCpu(mainCpu, mainTid) - n0;
    std::printf("| bare TSC loop on this thread, as long as the flush (gaps between reads) | %llu | - | - | %.1f | - | %llu | %s | - | - | %llu | %.0f ms: %s |\n",
                static_cast<unsigned long long>(b.iterations), double(b.maxGap) / perUs,
                static_cast<unsigned long long>(b.over), bench::rangesCell(b.ranges).c_str(),
                static_cast<unsigned long long>(noise.involuntary), flushMs, bench::describe(noise).c_str());
  }

  // What the slowest flush steps did. The records a step removed keep
  // their fields (remove() only marks them free), so the pools whose ports
  // it released can be counted afterwards.
  std::vector<const StepSample*> byTime, byCpu;
  for (const StepSample& s : steps) {
    byTime.push_back(&s);
    if (s.involuntary == 0) byCpu.push_back(&s);
  }
  std::sort(byTime.begin(), byTime.end(), [](const StepSample* a, const StepSample* b) { return a->tsc > b->tsc; });
  std::sort(byCpu.begin(), byCpu.end(), [](const StepSample* a, const StepSample* b) { return a->cpuNs > b->cpuNs; });
  auto pools = [&](const StepSample& s) {
    std::vector<uint32_t> p;
    for (uint32_t i = s.cursor; i < s.next; ++i) {
      const Flow& fl = core->flows->at(i);
      if (fl.snatPort != 0) p.push_back(fl.pool);
    }
    std::sort(p.begin(), p.end());
    return static_cast<std::size_t>(std::unique(p.begin(), p.end()) - p.begin());
  };
  std::vector<double> visited, removed;
  for (const StepSample& s : steps) {
    visited.push_back(s.next - s.cursor);
    removed.push_back(s.removed);
  }
  auto stepTable = [&](const char* title, const std::vector<const StepSample*>& list) {
    std::printf("\n%s (a median step visits %.0f records and removes %.0f flows):\n\n", title, median(visited),
                median(removed));
    std::printf("| step | TSC us | thread CPU us | records visited | flows removed (ports released) | pools touched | minor faults | involuntary switches |\n"
                "|---|---|---|---|---|---|---|---|\n");
    for (std::size_t k = 0; k < std::min<std::size_t>(8, list.size()); ++k) {
      const StepSample& s = *list[k];
      std::printf("| %zu | %.1f | %.1f | %u | %u | %zu | %u | %u |\n", static_cast<std::size_t>(&s - steps.data()),
                  double(s.tsc) / perUs, double(s.cpuNs) / 1e3, s.next - s.cursor, s.removed, pools(s),
                  s.minorFaults, s.involuntary);
    }
  };
  // Why the flush steps over 50 us were long: the thread switched out
  // (another thread of this machine ran), the vCPU not running (TSC time
  // well above CPU time without a switch: the host took the CPU; this
  // kernel counts that as steal, not as the thread's CPU time), or CPU time
  // itself over 50 us (the step's work, or interrupts and host exits that
  // land while it runs and are charged to it).
  uint64_t slowSteps = 0, switched = 0, stolen = 0, onCpu = 0;
  std::vector<uint64_t> onCpuAt;
  for (const StepSample& s : steps) {
    if (double(s.tsc) <= 50 * perUs) continue;
    ++slowSteps;
    if (s.involuntary != 0)
      ++switched;
    else if (double(s.tsc) / perUs - double(s.cpuNs) / 1e3 > 25)
      ++stolen;
    else {
      ++onCpu;
      onCpuAt.push_back(s.start);
    }
  }
  const double aligned = bench::tickAligned(onCpuAt);
  char tick[160] = "too few to tell whether they follow the timer tick";
  if (aligned >= 0)
    std::snprintf(tick, sizeof tick,
                  "the intervals between those whole timer ticks (%.0f us) in %.0f%% of cases (about 10%% if "
                  "unrelated to the tick)",
                  bench::tickUs(), 100 * aligned);
  std::printf("\nFlush steps over 50 us: %llu; switched out: %llu; the vCPU not running (TSC - CPU time > 25 us, no "
              "switch): %llu; running all along (CPU time close to TSC time): %llu, %s.\n",
              static_cast<unsigned long long>(slowSteps), static_cast<unsigned long long>(switched),
              static_cast<unsigned long long>(stolen), static_cast<unsigned long long>(onCpu), tick);
  stepTable("The slowest flush steps by TSC time", byTime);
  stepTable("The flush steps with the most thread CPU time among those not switched out", byCpu);
  std::fflush(stdout);
  rte_ring_free(cmds);
  rte_ring_free(reps);
}

}  // namespace

int main(int argc, char** argv) {
  int ealArgs = rte_eal_init(argc, argv);
  if (ealArgs < 0) {
    std::fprintf(stderr, "EAL init failed\n");
    return 1;
  }
  argc -= ealArgs;
  argv += ealArgs;
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") {
      o.quick = true;
      o.sizes = {1000, 65536, 1000000};
      o.runs = 3;
      o.packetsPerRun = 500'000;
    } else if (a == "--syn-only") {
      o.synOnly = true;
    } else if (a == "--control-stall" && i + 1 < argc) {
      o.controlStallFlows = static_cast<uint32_t>(std::stoul(argv[++i]));
      o.controlStallOnly = true;
    } else if (a == "--pool-creation") {
      o.poolCreationOnly = true;
    } else if (a == "--no-scaling") {
      o.scaling = false;
    } else if (a == "--max-workers" && i + 1 < argc) {
      o.maxWorkers = static_cast<uint32_t>(std::stoul(argv[++i]));
    } else if (a == "--sizes" && i + 1 < argc) {
      o.sizes.clear();
      std::string s = argv[++i];
      for (std::size_t p = 0; p < s.size();) {
        auto q = s.find(',', p);
        o.sizes.push_back(static_cast<uint32_t>(std::stoul(s.substr(p, q - p))));
        p = q == std::string::npos ? s.size() : q + 1;
      }
    } else {
      std::fprintf(stderr,
                   "usage: strait-bench [EAL args --] [--quick] [--no-scaling] [--max-workers N] [--sizes a,b,c] "
                   "[--syn-only] [--control-stall FLOWS] [--pool-creation]\n");
      return 2;
    }
  }
  auto snap = makeSnapshot();
  double tsc = double(rte_get_tsc_hz());
  std::printf("TSC %.3f GHz, burst %u, %d runs of %u packets per figure\n\n", tsc / 1e9, kBurst, o.runs,
              o.packetsPerRun);

  if (o.poolCreationOnly) {
    poolCreationBench();
    rte_eal_cleanup();
    return 0;
  }
  if (o.controlStallOnly) {
    controlStall(o.controlStallFlows);
    rte_eal_cleanup();
    return 0;
  }
  std::printf("### Fast path, one worker (cycles per packet; NatCore::process only)\n\n");
  std::printf("| case | flows | cycles/pkt (median) | p99 per burst | drops |\n|---|---|---|---|---|\n");
  std::vector<std::pair<uint32_t, double>> memPerFlow;
  std::vector<std::pair<uint32_t, double>> floors, insertFloors;
  for (uint32_t n : o.sizes) {
    if (n > kMaxFlows) continue;
    // Room for the 1% new flows of the mix on top of the n established ones,
    // rounded to 2^k - 1 flows (the sizing rte_hash needed; the flow hash
    // takes any count, and the rounding keeps figures comparable).
    uint32_t capacity = 1023;
    while (capacity < n + n / 8 + 4096) capacity = capacity * 2 + 1;
    auto core = std::make_unique<Core>(capacity, 0, static_cast<int>(rte_socket_id()));
    Timing syn = fillFlows(*core, *snap, n);
    printRow("new flows (SYN path) while filling", n, syn);
    if (o.synOnly) {
      // For profiling the SYN path alone (perf record): refill a fresh
      // table `runs` more times, nothing else.
      for (int r = 0; r < o.runs; ++r) {
        core.reset();
        core = std::make_unique<Core>(capacity, 0, static_cast<int>(rte_socket_id()));
        printRow("new flows (SYN path) while filling", n, fillFlows(*core, *snap, n));
      }
      std::fflush(stdout);
      continue;
    }
    establishAll(*core);
    Timing u = established(*core, *snap, n, o, nullptr);
    printRow("established, uniform", n, u);
    Zipf z(n, 1.0);
    Timing zt = established(*core, *snap, n, o, &z);
    printRow("established, Zipf s=1.0", n, zt);
    Timing mx = mix(*core, *snap, n, o);
    printRow("mix, 1% new flows", n, mx);
    memPerFlow.emplace_back(capacity, double(core->flows->memoryBytes()) / capacity);
    std::fflush(stdout);
    core.reset();
    floors.emplace_back(n, hashFloor(n, capacity, o.runs, o.packetsPerRun));
    insertFloors.emplace_back(n, insertFloor(n, capacity));
  }
  if (o.synOnly) {
    rte_eal_cleanup();
    return 0;
  }
  std::printf("\n### Floors measured in the same run\n\n| floor | flows | cycles/pkt |\n|---|---|---|\n");
  for (auto& [n, c] : floors)
    std::printf("| FlowTable::lookupBulk, 32 keys (SipHash, bucket, record's key), 2 keys per flow | %u | %.1f |\n", n, c);
  for (auto& [n, c] : insertFloors)
    std::printf("| FlowTable::insert of a new flow (2 keys: hash, clash lookup, store; record), filling, per flow | %u | %.1f |\n", n, c);
  double nf = nullPmdFloor(o.runs, o.packetsPerRun);
  if (nf >= 0)
    std::printf("| net_null PMD rx_burst + tx_burst | - | %.1f |\n", nf);
  else
    std::printf("| net_null PMD rx_burst + tx_burst | - | not available (start with --vdev=net_null0) |\n");
  std::printf("\n### Memory per flow (FlowTable::memoryBytes: record, the arrays beside it, both keys in the flow hash)\n\n| flows | bytes per flow |\n|---|---|\n");
  for (auto& [n, b] : memPerFlow) std::printf("| %u | %.1f |\n", n, b);
  collisionBench(o.runs);
  cookieBench(*snap, o.runs);
  controlStall(o.controlStallFlows);
  portAllocBench();
  poolCreationBench();
  maglevBench();
  proxyProtocolBench(o);
  if (o.scaling && rte_lcore_count() > 1) scaling(*snap, o);
  std::fflush(stdout);
  rte_eal_cleanup();
  return 0;
}
