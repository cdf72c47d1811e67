/* strait-memifgen: the far end of the kernel-free I/O benchmark
 * (tools/benchlib/bench_memif.py). A DPDK process that is, on a net_memif
 * port in the server role, everything straitd talks to: the clients, the
 * router (it answers straitd's ARP for the gateway) and the backends (it
 * answers the SNAT'd packets as the backend would). No kernel is on the
 * path: both processes poll shared-memory rings.
 *
 * One run measures one protocol at one flow count, in phases:
 *   1. ARP: learns straitd's MAC (and teaches it the gateway's);
 *   2. new flows: the first packet of FLOWS flows from distinct clients to
 *      the VIP (TCP SYN, or UDP), as fast as straitd takes them, with at
 *      most --window in flight; a flow counts once its packet comes out
 *      SNAT'd towards a backend, i.e. with a port taken;
 *   3. (TCP) the rest of each handshake: the backend's SYN-ACK, the
 *      client's ACK, each checked on the way out;
 *   4. established: for --seconds, packets over all flows in a scattered
 *      order (a stride through the flow indices), alternately client ->
 *      VIP and backend -> SNAT address, each carrying the TSC at sending:
 *      forwarded packets/s and the latency of each packet from our TX to
 *      our RX (memif both ways plus straitd); at the end, everything still
 *      in flight is waited for;
 *   5. latency with one packet in flight (no queueing): --latency-samples
 *      packets, each sent when the one before came back. Measured packets
 *      carry the number of their run (1 in phase 4, 2 in phase 5), so a
 *      late packet of one run never counts as the other's ("stale" in the
 *      result).
 * Every packet that comes back is checked in full: Ethernet addresses, IP
 * checksum and TTL, the rewritten addresses and ports against the flow it
 * belongs to (the payload or the sequence numbers say which), and the TCP
 * or UDP checksum. Mismatches are counted by kind and the first few
 * printed; the result is one JSON object on stdout.
 *
 *   strait-memifgen EAL-ARGS -- --proto tcp|udp --flows N --queues Q
 *       [--seconds S] [--window W] [--latency-samples K] [--sync] [--cookies]
 *
 * --cookies (TCP, straitd's SYN proxy on): the new-flow phase counts the
 * SYN-ACKs straitd answers itself (SYN cookies) instead of SYNs reaching a
 * backend, and the run ends there: cookie answers per second.
 * --sync: at each phase boundary print "memifgen: phase NAME begin|end" on
 * stderr and wait for a line on stdin (the harness reads straitd's
 * counters meanwhile, so no packet of the next phase is counted in them).
 * At the last mark ("done") the harness also stops straitd, so that
 * neither side polls while the other leaves the link (see the end of
 * main()).
 *
 * The EAL arguments must create one net_memif port in the server role
 * (straitd is the client). Addresses are those bench_memif.py writes into
 * straitd's configuration; see the constants below.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_arp.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>
#include <rte_udp.h>

/* Host order. straitd: 192.0.2.2/24 on the memif port, gateway 192.0.2.1
 * (us), VIP and SNAT address 192.0.2.10, TCP :80 and UDP :9000 to 32
 * backends 203.0.113.1-32 on :8080 (TCP) or :9000 (UDP). Clients are
 * 198.51.100.1-250, source ports from 1024. */
#define GW_IP 0xC0000201u
#define LB_IP 0xC0000202u
#define VIP 0xC000020Au
#define SNAT_IP VIP
#define CLIENT_NET 0xC6336400u
#define BACKEND_NET 0xCB007100u
#define NUM_CLIENT_IPS 250u
#define NUM_BACKENDS 32u
#define TCP_VPORT 80
#define UDP_VPORT 9000
#define TCP_BPORT 8080
#define UDP_BPORT 9000
#define ISN_CLIENT 0x10000000u
#define ISN_BACKEND 0x60000000u
/* A measured packet's tag: "STR" and the number of the run that sent it,
 * so that a packet of one run that comes back during the next is never
 * counted as the next run's (neither as progress, which would let more
 * than the window be in flight, nor as a latency sample). */
#define MAGIC_BASE 0x53545200u
#define MAGIC_MASK 0xFFFFFF00u
#define MAX_QUEUES 8
#define BURST 32
#define MAX_FLOWS (NUM_CLIENT_IPS * 64000u)
/* Latency histogram: 32-cycle buckets up to 2^23 cycles (3.2 ms at 2.6
 * GHz), then 16384-cycle buckets up to 2^28 cycles (103 ms at 2.6 GHz);
 * the last bucket holds whatever is beyond. A preempted poller on a
 * shared machine is off its CPU for milliseconds: those samples stay
 * measured rather than all landing in an overflow bucket. */
#define HIST_FINE_SHIFT 5
#define HIST_FINE_BUCKETS (1u << 18)
#define HIST_FINE_LIMIT ((uint64_t)HIST_FINE_BUCKETS << HIST_FINE_SHIFT)
#define HIST_COARSE_SHIFT 14
#define HIST_COARSE_BUCKETS (1u << 14)
#define HIST_BUCKETS (HIST_FINE_BUCKETS + HIST_COARSE_BUCKETS)

enum Dir { TO_BACKEND = 0, TO_CLIENT = 1 };

/* The payload of every measured packet. Full NAT leaves it untouched. */
struct Tag {
  uint32_t magic;
  uint32_t flow;
  uint64_t tsc;
} __attribute__((packed));

enum Err {
  E_ETH,       /* wrong Ethernet source/destination */
  E_IPCSUM,    /* IPv4 header checksum */
  E_TTL,       /* not decremented by exactly one */
  E_L4CSUM,    /* TCP/UDP checksum */
  E_ADDR,      /* rewritten address or port not what the flow says */
  E_FLOW,      /* flow index out of range, or a flow in the wrong phase */
  E_MAPPING,   /* a flow's SNAT port or backend changed */
  E_UNKNOWN,   /* a frame that is none of the above (ICMP, other) */
  E_COUNT
};
static const char* const kErrNames[E_COUNT] = {"eth", "ip_checksum", "ttl", "l4_checksum",
                                               "address", "flow", "mapping", "unexpected"};

static struct {
  int tcp;
  uint32_t flows;
  uint16_t queues;
  double seconds;
  uint32_t window;
  uint32_t latencySamples;
  int cookies; /* --cookies: straitd answers SYNs itself (SYN proxy on) */
} opt = {1, 65536, 1, 5.0, 512, 20000, 0};

static uint16_t port;
static struct rte_mempool* pool;
static struct rte_ether_addr ourMac, lbMac;
static int haveLbMac;
static uint64_t hz;
static volatile sig_atomic_t stopRequested;
static int syncPhases; /* --sync: wait for a line on stdin at each phase mark */

/* Per flow: the SNAT port (network order) and backend the flow got, and
 * how far its handshake went (0 nothing seen, 1 first packet out, 2 the
 * backend's SYN-ACK out, 3 the client's ACK out). */
static uint16_t* snatPort;
static uint8_t* backendOf;
static uint8_t* stage;

static uint64_t errors[E_COUNT];
static uint64_t checked, rxTotal, txTotal, errorsPrinted;
enum Phase { PH_SETUP, PH_NEW, PH_HANDSHAKE, PH_ESTABLISHED };
static enum Phase phase = PH_SETUP;
/* What came back right in the current phase: flows newly mapped (new),
 * handshakes completed (handshake), tagged packets (established). */
static uint64_t progress;
static uint64_t* hist;        /* latency histogram of the current phase */
static uint64_t histCount;
/* The measurement run in progress (1 loaded, 2 one in flight; 0 none):
 * measured packets carry it in their tag. Packets of another run that
 * come back are counted here only. */
static uint8_t run;
static uint64_t stale;

static void onStop(int sig) {
  (void)sig;
  stopRequested = 1;
}

static void fail(enum Err e, uint32_t flow, const char* what) {
  errors[e]++;
  if (errorsPrinted++ < 10) fprintf(stderr, "memifgen: %s: flow %u: %s\n", kErrNames[e], flow, what);
}

static uint32_t clientIp(uint32_t f) { return CLIENT_NET + 1 + f % NUM_CLIENT_IPS; }
static uint16_t clientPort(uint32_t f) { return (uint16_t)(1024 + f / NUM_CLIENT_IPS); }
static uint32_t backendIp(uint32_t b) { return BACKEND_NET + 1 + b; }
static uint16_t vport(void) { return opt.tcp ? TCP_VPORT : UDP_VPORT; }
static uint16_t bport(void) { return opt.tcp ? TCP_BPORT : UDP_BPORT; }

/* ---- frames ------------------------------------------------------------ */

static struct rte_mbuf* newFrame(uint16_t l4len, uint16_t payload) {
  struct rte_mbuf* m = rte_pktmbuf_alloc(pool);
  if (m == NULL) return NULL;
  uint16_t len = (uint16_t)(sizeof(struct rte_ether_hdr) + sizeof(struct rte_ipv4_hdr) + l4len + payload);
  uint16_t frame = len < 60 ? 60 : len; /* Ethernet minimum, zero padding */
  char* p = rte_pktmbuf_append(m, frame);
  memset(p, 0, frame);
  struct rte_ether_hdr* eth = (struct rte_ether_hdr*)p;
  eth->dst_addr = lbMac;
  eth->src_addr = ourMac;
  eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
  struct rte_ipv4_hdr* ip = (struct rte_ipv4_hdr*)(eth + 1);
  ip->version_ihl = 0x45;
  ip->total_length = rte_cpu_to_be_16((uint16_t)(sizeof *ip + l4len + payload));
  ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
  ip->time_to_live = 64;
  ip->next_proto_id = opt.tcp ? IPPROTO_TCP : IPPROTO_UDP;
  return m;
}

static void finish(struct rte_mbuf* m, uint32_t src, uint32_t dst) {
  struct rte_ipv4_hdr* ip = rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr*, sizeof(struct rte_ether_hdr));
  ip->src_addr = rte_cpu_to_be_32(src);
  ip->dst_addr = rte_cpu_to_be_32(dst);
  ip->hdr_checksum = rte_ipv4_cksum(ip);
  void* l4 = ip + 1;
  if (opt.tcp) {
    struct rte_tcp_hdr* t = l4;
    t->cksum = rte_ipv4_udptcp_cksum(ip, l4);
  } else {
    struct rte_udp_hdr* u = l4;
    u->dgram_cksum = rte_ipv4_udptcp_cksum(ip, l4);
  }
}

/* A TCP segment of flow f in direction d; `tag` adds the payload. */
static struct rte_mbuf* tcpFrame(uint32_t f, enum Dir d, uint8_t flags, uint32_t seq, uint32_t ack, int tag) {
  struct rte_mbuf* m = newFrame(sizeof(struct rte_tcp_hdr), tag ? sizeof(struct Tag) : 0);
  if (m == NULL) return NULL;
  struct rte_tcp_hdr* t = rte_pktmbuf_mtod_offset(m, struct rte_tcp_hdr*,
                                                  sizeof(struct rte_ether_hdr) + sizeof(struct rte_ipv4_hdr));
  uint32_t src, dst;
  if (d == TO_BACKEND) {
    t->src_port = rte_cpu_to_be_16(clientPort(f));
    t->dst_port = rte_cpu_to_be_16(vport());
    src = clientIp(f);
    dst = VIP;
  } else {
    t->src_port = rte_cpu_to_be_16(bport());
    t->dst_port = snatPort[f];
    src = backendIp(backendOf[f]);
    dst = SNAT_IP;
  }
  t->sent_seq = rte_cpu_to_be_32(seq);
  t->recv_ack = rte_cpu_to_be_32(ack);
  t->data_off = 5 << 4;
  t->tcp_flags = flags;
  t->rx_win = rte_cpu_to_be_16(65535);
  if (tag) {
    struct Tag* g = (struct Tag*)(t + 1);
    g->magic = MAGIC_BASE | run;
    g->flow = f;
    g->tsc = rte_rdtsc();
  }
  finish(m, src, dst);
  return m;
}

static struct rte_mbuf* udpFrame(uint32_t f, enum Dir d) {
  struct rte_mbuf* m = newFrame(sizeof(struct rte_udp_hdr), sizeof(struct Tag));
  if (m == NULL) return NULL;
  struct rte_udp_hdr* u = rte_pktmbuf_mtod_offset(m, struct rte_udp_hdr*,
                                                  sizeof(struct rte_ether_hdr) + sizeof(struct rte_ipv4_hdr));
  uint32_t src, dst;
  if (d == TO_BACKEND) {
    u->src_port = rte_cpu_to_be_16(clientPort(f));
    u->dst_port = rte_cpu_to_be_16(vport());
    src = clientIp(f);
    dst = VIP;
  } else {
    u->src_port = rte_cpu_to_be_16(bport());
    u->dst_port = snatPort[f];
    src = backendIp(backendOf[f]);
    dst = SNAT_IP;
  }
  u->dgram_len = rte_cpu_to_be_16(sizeof *u + sizeof(struct Tag));
  struct Tag* g = (struct Tag*)(u + 1);
  g->magic = MAGIC_BASE | run;
  g->flow = f;
  g->tsc = rte_rdtsc();
  finish(m, src, dst);
  return m;
}

/* The packet that starts flow f (SYN or the first datagram). */
static struct rte_mbuf* firstPacket(uint32_t f) {
  return opt.tcp ? tcpFrame(f, TO_BACKEND, RTE_TCP_SYN_FLAG, ISN_CLIENT + f, 0, 0) : udpFrame(f, TO_BACKEND);
}

/* A measured packet of an established flow. */
static struct rte_mbuf* dataPacket(uint32_t f, enum Dir d) {
  if (!opt.tcp) return udpFrame(f, d);
  /* The same segment each time (a retransmission to the tracker), so the
   * sequence windows never run out. */
  if (d == TO_BACKEND)
    return tcpFrame(f, d, RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG, ISN_CLIENT + f + 1, ISN_BACKEND + f + 1, 1);
  return tcpFrame(f, d, RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG, ISN_BACKEND + f + 1, ISN_CLIENT + f + 1, 1);
}

/* Which straitd worker's queue a packet of flow f goes to: client packets
 * by flow, replies by SNAT port (straitd's port-modulo ownership without
 * RSS hands worker w the ports p with p % workers == w). */
static uint16_t queueOf(uint32_t f, enum Dir d) {
  if (opt.queues == 1) return 0;
  return d == TO_BACKEND ? (uint16_t)(f % opt.queues) : (uint16_t)(rte_be_to_cpu_16(snatPort[f]) % opt.queues);
}

/* TX staging per queue. Frames the ring refuses stay staged and go again
 * next time: the generator never drops what it built. */
static struct {
  struct rte_mbuf* pkts[BURST * 8];
  uint16_t n;
} txq[MAX_QUEUES];

static void flushQueue(uint16_t q) {
  if (txq[q].n == 0) return;
  uint16_t sent = rte_eth_tx_burst(port, q, txq[q].pkts, txq[q].n);
  txTotal += sent;
  if (sent < txq[q].n) memmove(txq[q].pkts, txq[q].pkts + sent, (txq[q].n - sent) * sizeof(struct rte_mbuf*));
  txq[q].n = (uint16_t)(txq[q].n - sent);
}

static void flushAll(void) {
  for (uint16_t q = 0; q < opt.queues; ++q) flushQueue(q);
}

static int stagedFull(uint16_t q) { return txq[q].n >= BURST * 3; }

static void stage1(uint16_t q, struct rte_mbuf* m) {
  if (m == NULL) return;
  while (txq[q].n == BURST * 8 && !stopRequested) flushQueue(q); /* straitd never blocks: this ends */
  if (txq[q].n == BURST * 8) {
    rte_pktmbuf_free(m);
    return;
  }
  txq[q].pkts[txq[q].n++] = m;
  if (txq[q].n >= BURST) flushQueue(q);
}

/* ---- ARP --------------------------------------------------------------- */

static void sendArp(uint16_t op, const struct rte_ether_addr* dmac, uint32_t sip, uint32_t tip,
                    const struct rte_ether_addr* tha) {
  struct rte_mbuf* m = rte_pktmbuf_alloc(pool);
  if (m == NULL) return;
  char* p = rte_pktmbuf_append(m, 60);
  memset(p, 0, 60);
  struct rte_ether_hdr* eth = (struct rte_ether_hdr*)p;
  eth->dst_addr = *dmac;
  eth->src_addr = ourMac;
  eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP);
  struct rte_arp_hdr* a = (struct rte_arp_hdr*)(eth + 1);
  a->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
  a->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
  a->arp_hlen = RTE_ETHER_ADDR_LEN;
  a->arp_plen = 4;
  a->arp_opcode = rte_cpu_to_be_16(op);
  a->arp_data.arp_sha = ourMac;
  a->arp_data.arp_sip = rte_cpu_to_be_32(sip);
  a->arp_data.arp_tha = *tha;
  a->arp_data.arp_tip = rte_cpu_to_be_32(tip);
  stage1(0, m);
}

static void onArp(struct rte_mbuf* m) {
  if (rte_pktmbuf_data_len(m) < sizeof(struct rte_ether_hdr) + sizeof(struct rte_arp_hdr)) return;
  const struct rte_arp_hdr* a = rte_pktmbuf_mtod_offset(m, struct rte_arp_hdr*, sizeof(struct rte_ether_hdr));
  const uint16_t op = rte_be_to_cpu_16(a->arp_opcode);
  const uint32_t sip = rte_be_to_cpu_32(a->arp_data.arp_sip);
  const uint32_t tip = rte_be_to_cpu_32(a->arp_data.arp_tip);
  if (op == RTE_ARP_OP_REPLY && sip == VIP) {
    lbMac = a->arp_data.arp_sha;
    haveLbMac = 1;
  } else if (op == RTE_ARP_OP_REQUEST && tip == GW_IP) {
    sendArp(RTE_ARP_OP_REPLY, &a->arp_data.arp_sha, GW_IP, sip, &a->arp_data.arp_sha);
  }
}

/* ---- receive and check ------------------------------------------------- */

static uint32_t histBucket(uint64_t cycles) {
  if (cycles < HIST_FINE_LIMIT) return (uint32_t)(cycles >> HIST_FINE_SHIFT);
  const uint64_t c = (cycles - HIST_FINE_LIMIT) >> HIST_COARSE_SHIFT;
  return HIST_FINE_BUCKETS + (uint32_t)(c < HIST_COARSE_BUCKETS ? c : HIST_COARSE_BUCKETS - 1);
}

/* The middle of bucket b, in cycles. */
static double histMid(uint32_t b) {
  if (b < HIST_FINE_BUCKETS) return (double)(((uint64_t)b << HIST_FINE_SHIFT) + (1u << (HIST_FINE_SHIFT - 1)));
  return (double)(HIST_FINE_LIMIT + ((uint64_t)(b - HIST_FINE_BUCKETS) << HIST_COARSE_SHIFT) +
                  (1u << (HIST_COARSE_SHIFT - 1)));
}

/* A measured packet of an established flow came back: progress and a
 * latency sample if the current run sent it, otherwise only `stale`. */
static void measured(const struct Tag* g) {
  if ((uint8_t)(g->magic & ~MAGIC_MASK) != run || run == 0) {
    stale++;
    return;
  }
  progress++;
  hist[histBucket(rte_rdtsc() - g->tsc)]++;
  histCount++;
}

/* The one's-complement sum over the pseudo header and the whole TCP or
 * UDP segment, checksum included, is 0xffff when the checksum is right. A
 * UDP checksum of 0 (none) is wrong here: we always send one. */
static int l4ChecksumOk(const struct rte_ipv4_hdr* ip) {
  const uint16_t l4len = (uint16_t)(rte_be_to_cpu_16(ip->total_length) - sizeof *ip);
  const uint8_t* l4 = (const uint8_t*)(ip + 1);
  if (!opt.tcp && ((const struct rte_udp_hdr*)l4)->dgram_cksum == 0) return 0;
  uint32_t sum = (uint32_t)rte_raw_cksum(l4, l4len) + rte_ipv4_phdr_cksum(ip, 0);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return sum == 0xffff;
}

/* Records (first time) or checks (after) the SNAT port and backend of f. */
static int mapping(uint32_t f, uint32_t backend, uint16_t sport) {
  if (stage[f] == 0) {
    backendOf[f] = (uint8_t)backend;
    snatPort[f] = sport;
    stage[f] = 1;
    if (phase == PH_NEW) progress++;
    return 1;
  }
  if (backendOf[f] != backend || snatPort[f] != sport) {
    fail(E_MAPPING, f, "SNAT port or backend differs from the flow's first packet");
    return 0;
  }
  return 1;
}

static void onIpv4(struct rte_mbuf* m) {
  const uint16_t len = rte_pktmbuf_data_len(m);
  const uint16_t ipOff = sizeof(struct rte_ether_hdr);
  if (len < ipOff + sizeof(struct rte_ipv4_hdr)) { fail(E_UNKNOWN, 0, "short frame"); return; }
  struct rte_ipv4_hdr* ip = rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr*, ipOff);
  if (ip->version_ihl != 0x45) { fail(E_UNKNOWN, 0, "IPv4 options or not IPv4"); return; }
  const uint8_t proto = ip->next_proto_id;
  if (proto != (opt.tcp ? IPPROTO_TCP : IPPROTO_UDP)) { fail(E_UNKNOWN, 0, "unexpected protocol"); return; }
  const uint16_t l4len = opt.tcp ? sizeof(struct rte_tcp_hdr) : sizeof(struct rte_udp_hdr);
  const uint16_t total = rte_be_to_cpu_16(ip->total_length);
  if (total < sizeof *ip + l4len || total > len - ipOff) { fail(E_UNKNOWN, 0, "bad IPv4 total length"); return; }
  checked++;
  if (rte_ipv4_cksum(ip) != 0) fail(E_IPCSUM, 0, "bad IPv4 header checksum");
  /* Forwarded: one hop less. In --cookies mode straitd writes the
   * SYN-ACKs itself, with a TTL of its own choosing. */
  if (ip->time_to_live != 63 && !opt.cookies) fail(E_TTL, 0, "TTL not 63");
  if (!l4ChecksumOk(ip)) fail(E_L4CSUM, 0, "bad TCP/UDP checksum");
  const uint32_t src = rte_be_to_cpu_32(ip->src_addr), dst = rte_be_to_cpu_32(ip->dst_addr);
  const uint16_t payload = (uint16_t)(rte_be_to_cpu_16(ip->total_length) - sizeof *ip - l4len);
  const uint8_t* l4 = (const uint8_t*)(ip + 1);
  const uint16_t sport = ((const uint16_t*)l4)[0], dport = ((const uint16_t*)l4)[1];
  const struct Tag* g = payload >= sizeof(struct Tag) ? (const struct Tag*)(l4 + l4len) : NULL;
  if (g != NULL && (g->magic & MAGIC_MASK) != MAGIC_BASE) g = NULL;
  const struct rte_tcp_hdr* t = opt.tcp ? (const struct rte_tcp_hdr*)l4 : NULL;
  const uint8_t flags = t ? t->tcp_flags : 0;
  const uint32_t seq = t ? rte_be_to_cpu_32(t->sent_seq) : 0, ack = t ? rte_be_to_cpu_32(t->recv_ack) : 0;

  if ((dst & 0xFFFFFF00u) == BACKEND_NET && opt.cookies) {
    fail(E_FLOW, 0, "a packet reached a backend while straitd should answer every SYN itself");
  } else if ((dst & 0xFFFFFF00u) == BACKEND_NET) {
    /* Client -> backend, after DNAT and SNAT. */
    uint32_t f;
    if (g != NULL)
      f = g->flow;
    else if (t && flags == RTE_TCP_SYN_FLAG)
      f = seq - ISN_CLIENT;
    else if (t && flags == RTE_TCP_ACK_FLAG)
      f = seq - ISN_CLIENT - 1;
    else
      { fail(E_UNKNOWN, 0, "towards a backend without a tag"); return; }
    if (f >= opt.flows) { fail(E_FLOW, f, "flow index out of range"); return; }
    const uint32_t b = (dst & 0xFF) - 1;
    if (b >= NUM_BACKENDS || rte_be_to_cpu_16(dport) != bport() || src != SNAT_IP)
      { fail(E_ADDR, f, "client -> backend: not SNAT_IP -> backend:port"); return; }
    if (t && seq != ISN_CLIENT + f + (flags == RTE_TCP_SYN_FLAG ? 0 : 1))
      { fail(E_ADDR, f, "sequence number changed"); return; }
    if (!mapping(f, b, sport)) return;
    if (t && flags == RTE_TCP_SYN_FLAG) {
      /* counted by mapping() when new; a resent SYN changes nothing */
    } else if (t && flags == RTE_TCP_ACK_FLAG) {
      if (stage[f] == 1) { fail(E_FLOW, f, "client ACK before the SYN-ACK"); return; }
      if (stage[f] == 2 && phase == PH_HANDSHAKE) progress++;
      stage[f] = 3;
    } else if (phase == PH_ESTABLISHED) {
      measured(g);
    }
  } else if ((dst & 0xFFFFFF00u) == CLIENT_NET) {
    /* Backend -> client, after the reverse rewrite. */
    uint32_t f;
    if (g != NULL)
      f = g->flow;
    else if (t && flags == (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG))
      f = ack - ISN_CLIENT - 1;
    else
      { fail(E_UNKNOWN, 0, "towards a client without a tag"); return; }
    if (f >= opt.flows) { fail(E_FLOW, f, "flow index out of range"); return; }
    if (src != VIP || rte_be_to_cpu_16(sport) != vport() || dst != clientIp(f) ||
        rte_be_to_cpu_16(dport) != clientPort(f))
      { fail(E_ADDR, f, "backend -> client: not VIP:vport -> client:port"); return; }
    if (opt.cookies) {
      /* A SYN cookie: the answer to the client's SYN, from the VIP, acking
       * the client's ISN; nothing reached a backend. */
      if (!t || flags != (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG) || ack != ISN_CLIENT + f + 1) {
        fail(E_ADDR, f, "not a SYN-ACK acking the client's SYN");
        return;
      }
      if (stage[f] == 0) {
        stage[f] = 1;
        if (phase == PH_NEW) progress++;
      }
      return;
    }
    if (stage[f] == 0) { fail(E_FLOW, f, "reply before the flow's first packet"); return; }
    if (t && seq != ISN_BACKEND + f + (flags & RTE_TCP_SYN_FLAG ? 0 : 1))
      { fail(E_ADDR, f, "sequence number changed"); return; }
    if (t && flags == (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG)) {
      if (stage[f] == 1) stage[f] = 2;
      /* The client's ACK completes the handshake. */
      stage1(queueOf(f, TO_BACKEND),
             tcpFrame(f, TO_BACKEND, RTE_TCP_ACK_FLAG, ISN_CLIENT + f + 1, ISN_BACKEND + f + 1, 0));
    } else if (phase == PH_ESTABLISHED && g != NULL) {
      measured(g);
    }
  } else {
    fail(E_UNKNOWN, 0, "destination neither a backend nor a client");
  }
}

static uint16_t pollRx(void) {
  uint16_t total = 0;
  struct rte_mbuf* pkts[BURST];
  for (uint16_t q = 0; q < opt.queues; ++q) {
    const uint16_t n = rte_eth_rx_burst(port, q, pkts, BURST);
    for (uint16_t i = 0; i < n; ++i) {
      struct rte_mbuf* m = pkts[i];
      rxTotal++;
      const struct rte_ether_hdr* eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr*);
      const uint16_t type = rte_be_to_cpu_16(eth->ether_type);
      if (type == RTE_ETHER_TYPE_ARP) {
        onArp(m);
      } else if (type == RTE_ETHER_TYPE_IPV4) {
        if (!rte_is_same_ether_addr(&eth->dst_addr, &ourMac) ||
            (haveLbMac && !rte_is_same_ether_addr(&eth->src_addr, &lbMac)))
          fail(E_ETH, 0, "Ethernet addresses are not straitd -> us");
        onIpv4(m);
      } else {
        fail(E_UNKNOWN, 0, "not IPv4 or ARP");
      }
    }
    if (n) rte_pktmbuf_free_bulk(pkts, n);
    total = (uint16_t)(total + n);
  }
  flushAll();
  return total;
}

/* ---- phases ------------------------------------------------------------ */

static double secondsSince(uint64_t t0) { return (double)(rte_rdtsc() - t0) / (double)hz; }

static int learnLbMac(void) {
  const struct rte_ether_addr bcast = {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
  const struct rte_ether_addr zero = {{0}};
  uint64_t t0 = rte_rdtsc(), last = 0;
  while (!haveLbMac && !stopRequested && secondsSince(t0) < 30.0) {
    if (rte_rdtsc() - last > hz / 20) {
      /* Who has the VIP, tell the gateway: straitd answers and learns us. */
      sendArp(RTE_ARP_OP_REQUEST, &bcast, GW_IP, VIP, &zero);
      last = rte_rdtsc();
    }
    pollRx();
  }
  return haveLbMac;
}

/* Sends one packet per flow until each came out (progress), with at most
 * `window` outstanding; after a quiet 100 ms resends what is missing.
 * `want(f)` says whether flow f still needs its packet, `make(f)` builds
 * it. Returns the seconds from the first packet to the last. */
static double windowed(int (*want)(uint32_t), struct rte_mbuf* (*make)(uint32_t, uint16_t*), uint64_t* resent,
                       double limit) {
  uint64_t t0 = rte_rdtsc(), lastProgressTsc = t0, lastProgress = 0;
  uint32_t next = 0;
  progress = 0;
  *resent = 0;
  while (progress < opt.flows && !stopRequested && secondsSince(t0) < limit) {
    while (next < opt.flows && next - progress < opt.window) {
      uint16_t q;
      struct rte_mbuf* m = make(next, &q);
      if (m == NULL || stagedFull(q)) {
        if (m) rte_pktmbuf_free(m);
        break;
      }
      stage1(q, m);
      next++;
    }
    pollRx();
    if (progress != lastProgress) {
      lastProgress = progress;
      lastProgressTsc = rte_rdtsc();
    } else if (rte_rdtsc() - lastProgressTsc > hz / 10) {
      for (uint32_t f = 0; f < next; ++f) {
        if (!want(f)) continue;
        uint16_t q;
        struct rte_mbuf* m = make(f, &q);
        if (m == NULL) break;
        while (stagedFull(q) && !stopRequested) flushQueue(q);
        stage1(q, m);
        (*resent)++;
      }
      lastProgressTsc = rte_rdtsc();
    }
  }
  const double s = secondsSince(t0);
  if (progress < opt.flows)
    fprintf(stderr, "memifgen: phase stalled: %" PRIu64 " of %u flows after %.1f s, %" PRIu64 " resent\n",
            progress, opt.flows, s, *resent);
  for (int i = 0; i < 1000; ++i) pollRx(); /* stragglers */
  return s;
}

static int wantFirst(uint32_t f) { return stage[f] == 0; }
static struct rte_mbuf* makeFirst(uint32_t f, uint16_t* q) {
  *q = queueOf(f, TO_BACKEND);
  return firstPacket(f);
}
static int wantHandshake(uint32_t f) { return stage[f] != 3; }
static struct rte_mbuf* makeSynAck(uint32_t f, uint16_t* q) {
  *q = queueOf(f, TO_CLIENT);
  return tcpFrame(f, TO_CLIENT, RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, ISN_BACKEND + f, ISN_CLIENT + f + 1, 0);
}

static void histReset(void) {
  memset(hist, 0, HIST_BUCKETS * sizeof *hist);
  histCount = 0;
}

static double histUs(double q) {
  if (histCount == 0) return 0;
  uint64_t want = (uint64_t)(q * (double)histCount), seen = 0;
  for (uint32_t b = 0; b < HIST_BUCKETS; ++b) {
    seen += hist[b];
    if (seen > want) {
      /* The last bucket holds everything beyond the range: negative says
       * "more than this". */
      const double us = histMid(b) * 1e6 / (double)hz;
      return b == HIST_BUCKETS - 1 ? -us : us;
    }
  }
  return 0;
}

/* A stride through 0..flows-1 that visits every flow once per round and
 * puts consecutive packets far apart in the table. */
static uint32_t strideFor(uint32_t n) {
  uint32_t s = (uint32_t)((double)n * 0.6180339887) | 1u;
  while (s > 1) {
    uint32_t a = n, b = s;
    while (b) {
      uint32_t r = a % b;
      a = b;
      b = r;
    }
    if (a == 1) break;
    s += 2;
  }
  return s % n == 0 ? 1 : s;
}

static int64_t inFlight(uint64_t sent, uint64_t lost) { return (int64_t)sent - (int64_t)progress - (int64_t)lost; }

/* Established traffic over all flows with up to `window` packets of this
 * run (`runId`, in their tags) in flight for `seconds`. Returns packets
 * that came back per second, measured after a warm-up of `warmFraction` of
 * the time; `lost` counts what never came back. */
static double established(uint8_t runId, uint32_t window, double seconds, uint64_t maxPackets, double warmFraction,
                          uint64_t* lost, uint64_t* got) {
  run = runId;
  const uint32_t stride = strideFor(opt.flows);
  uint32_t f = 0;
  uint64_t sent = 0, i = 0;
  progress = 0;
  uint64_t t0 = rte_rdtsc(), lastProgressTsc = t0, lastProgress = 0, base = 0, tMeasure = 0;
  const uint64_t warm = (uint64_t)(seconds * warmFraction * (double)hz);
  *lost = 0;
  while (!stopRequested && secondsSince(t0) < seconds && (maxPackets == 0 || progress + *lost < maxPackets)) {
    while (inFlight(sent, *lost) < (int64_t)window && (maxPackets == 0 || sent < maxPackets)) {
      const enum Dir d = (i & 1) ? TO_CLIENT : TO_BACKEND;
      const uint16_t q = queueOf(f, d);
      if (stagedFull(q)) break;
      stage1(q, dataPacket(f, d));
      sent++;
      if (i++ & 1) {
        f += stride;
        if (f >= opt.flows) f -= opt.flows;
      }
    }
    pollRx();
    const uint64_t now = rte_rdtsc();
    if (tMeasure == 0 && warm != 0 && now - t0 >= warm) {
      tMeasure = now;
      base = progress;
      histReset();
    }
    if (progress != lastProgress) {
      lastProgress = progress;
      lastProgressTsc = now;
    } else if (now - lastProgressTsc > hz / 2) {
      /* Nothing back for 500 ms (far longer than a preempted poller on a
       * shared machine takes to run again): what is in flight is gone. */
      const int64_t gone = inFlight(sent, *lost);
      if (gone > 0) *lost += (uint64_t)gone;
      lastProgressTsc = now;
    }
  }
  const uint64_t end = rte_rdtsc();
  const uint64_t atEnd = progress;
  /* Everything still in flight comes back before the run ends (or counts
   * as lost after a quiet 500 ms, 5 s at most), so that the next run
   * starts with nothing of this one queued ahead of its packets. */
  lastProgressTsc = end;
  lastProgress = progress;
  while (inFlight(sent, *lost) > 0 && !stopRequested && rte_rdtsc() - end < 5 * hz) {
    pollRx();
    if (progress != lastProgress) {
      lastProgress = progress;
      lastProgressTsc = rte_rdtsc();
    } else if (rte_rdtsc() - lastProgressTsc > hz / 2) {
      break;
    }
  }
  const int64_t gone = inFlight(sent, *lost);
  if (gone > 0) *lost += (uint64_t)gone;
  *got = progress;
  run = 0;
  if (tMeasure == 0) tMeasure = t0;
  return (double)(atEnd - base) / ((double)(end - tMeasure) / (double)hz);
}

/* Phase boundaries on stderr: bench_memif.py reads straitd's counters
 * there, so its cycles per packet cover one phase. The harness answers
 * with a line on stdin once it has read them. */
static void mark(const char* name, const char* what) {
  fprintf(stderr, "memifgen: phase %s %s\n", name, what);
  fflush(stderr);
  if (syncPhases) {
    char line[16];
    if (fgets(line, sizeof line, stdin) == NULL) syncPhases = 0;
  }
}

static void usage(void) {
  fprintf(stderr,
          "usage: strait-memifgen EAL-ARGS -- --proto tcp|udp --flows N --queues Q [--seconds S] "
          "[--window W] [--latency-samples K] [--sync] [--cookies]\n");
  exit(2);
}

int main(int argc, char** argv) {
  int n = rte_eal_init(argc, argv);
  if (n < 0) {
    fprintf(stderr, "memifgen: EAL initialisation failed\n");
    return 1;
  }
  argc -= n;
  argv += n;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (!strcmp(a, "--sync")) {
      syncPhases = 1;
      continue;
    }
    if (!strcmp(a, "--cookies")) {
      opt.cookies = 1;
      continue;
    }
    const char* v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v == NULL) usage();
    if (!strcmp(a, "--proto")) {
      if (strcmp(v, "tcp") && strcmp(v, "udp")) usage();
      opt.tcp = !strcmp(v, "tcp");
    } else if (!strcmp(a, "--flows")) {
      opt.flows = (uint32_t)strtoul(v, NULL, 10);
    } else if (!strcmp(a, "--queues")) {
      opt.queues = (uint16_t)strtoul(v, NULL, 10);
    } else if (!strcmp(a, "--seconds")) {
      opt.seconds = strtod(v, NULL);
    } else if (!strcmp(a, "--window")) {
      opt.window = (uint32_t)strtoul(v, NULL, 10);
    } else if (!strcmp(a, "--latency-samples")) {
      opt.latencySamples = (uint32_t)strtoul(v, NULL, 10);
    } else {
      usage();
    }
    ++i;
  }
  if (opt.flows == 0 || opt.flows > MAX_FLOWS || opt.queues == 0 || opt.queues > MAX_QUEUES ||
      opt.seconds <= 0 || opt.seconds > 600 || opt.window == 0)
    usage();
  signal(SIGINT, onStop);
  signal(SIGTERM, onStop);
  hz = rte_get_tsc_hz();

  if (rte_eth_dev_count_avail() != 1) {
    fprintf(stderr, "memifgen: expected exactly one port (a net_memif vdev in the server role)\n");
    return 1;
  }
  port = 0;
  RTE_ETH_FOREACH_DEV(port) break;
  pool = rte_pktmbuf_pool_create("memifgen", 16383, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, (int)rte_socket_id());
  snatPort = rte_zmalloc("snat", opt.flows * sizeof *snatPort, 64);
  backendOf = rte_zmalloc("backend", opt.flows, 64);
  stage = rte_zmalloc("stage", opt.flows, 64);
  hist = rte_zmalloc("hist", HIST_BUCKETS * sizeof *hist, 64);
  if (!pool || !snatPort || !backendOf || !stage || !hist) {
    fprintf(stderr, "memifgen: out of memory (EAL -m)\n");
    return 1;
  }
  struct rte_eth_conf conf;
  memset(&conf, 0, sizeof conf);
  if (rte_eth_dev_configure(port, opt.queues, opt.queues, &conf) != 0) {
    fprintf(stderr, "memifgen: configure failed\n");
    return 1;
  }
  for (uint16_t q = 0; q < opt.queues; ++q)
    if (rte_eth_rx_queue_setup(port, q, 1024, rte_socket_id(), NULL, pool) != 0 ||
        rte_eth_tx_queue_setup(port, q, 1024, rte_socket_id(), NULL) != 0) {
      fprintf(stderr, "memifgen: queue setup failed\n");
      return 1;
    }
  if (rte_eth_dev_start(port) != 0) {
    fprintf(stderr, "memifgen: start failed\n");
    return 1;
  }
  rte_eth_macaddr_get(port, &ourMac);
  fprintf(stderr, "memifgen: listening, waiting for straitd\n");

  /* Phase 1: the link comes up when straitd connects; then ARP. */
  uint64_t t0 = rte_rdtsc();
  struct rte_eth_link link;
  do {
    memset(&link, 0, sizeof link);
    rte_eth_link_get_nowait(port, &link);
    if (link.link_status) break;
    rte_delay_ms(10);
  } while (!stopRequested && secondsSince(t0) < 60.0);
  if (!link.link_status) {
    fprintf(stderr, "memifgen: straitd did not connect within 60 s\n");
    return 1;
  }
  if (!learnLbMac()) {
    fprintf(stderr, "memifgen: straitd did not answer ARP for the VIP within 30 s\n");
    return 1;
  }

  /* Phase 2: new flows. */
  uint64_t resentNew = 0, resentHs = 0;
  phase = PH_NEW;
  mark("new", "begin");
  const double phaseLimit = 20.0 + opt.flows / 20000.0;
  const double newS = windowed(wantFirst, makeFirst, &resentNew, phaseLimit);
  mark("new", "end");
  const uint64_t newDone = progress;

  /* Phase 3: TCP handshakes. */
  double hsS = 0;
  uint64_t hsDone = 0;
  if (opt.tcp && !opt.cookies && newDone == opt.flows) {
    phase = PH_HANDSHAKE;
    mark("handshake", "begin");
    hsS = windowed(wantHandshake, makeSynAck, &resentHs, phaseLimit);
    mark("handshake", "end");
    hsDone = progress;
  }

  /* Phase 4: established, saturated. */
  uint64_t lost = 0, got = 0, lostIdle = 0, gotIdle = 0;
  double pps = 0, p50 = 0, p99 = 0, idle50 = 0, idle99 = 0;
  uint64_t samples = 0, idleSamples = 0;
  const int ready = newDone == opt.flows && (!opt.tcp || hsDone == opt.flows) && !opt.cookies;
  if (ready) {
    phase = PH_ESTABLISHED;
    mark("established", "begin");
    pps = established(1, opt.window, opt.seconds, 0, 0.1, &lost, &got);
    mark("established", "end");
    p50 = histUs(0.50);
    p99 = histUs(0.99);
    samples = histCount;
    /* Phase 5: one packet in flight. */
    histReset();
    established(2, 1, 30.0, opt.latencySamples, 0.0, &lostIdle, &gotIdle);
    idle50 = histUs(0.50);
    idle99 = histUs(0.99);
    idleSamples = histCount;
  }

  mark("done", "begin");
  uint64_t errTotal = 0;
  for (int e = 0; e < E_COUNT; ++e) errTotal += errors[e];
  printf("{\"proto\": \"%s\", \"flows\": %u, \"queues\": %u, \"tsc_hz\": %" PRIu64 ", \"window\": %u,\n",
         opt.tcp ? "tcp" : "udp", opt.flows, opt.queues, hz, opt.window);
  printf(" \"new\": {\"done\": %" PRIu64 ", \"seconds\": %.6f, \"per_s\": %.1f, \"resent\": %" PRIu64 "},\n",
         newDone, newS, newS > 0 ? (double)newDone / newS : 0.0, resentNew);
  printf(" \"handshake\": {\"done\": %" PRIu64 ", \"seconds\": %.6f, \"per_s\": %.1f, \"resent\": %" PRIu64
         "},\n",
         hsDone, hsS, hsS > 0 ? (double)hsDone / hsS : 0.0, resentHs);
  printf(" \"established\": {\"seconds\": %.3f, \"pps\": %.1f, \"received\": %" PRIu64 ", \"lost\": %" PRIu64
         ", \"latency_samples\": %" PRIu64 ", \"p50_us\": %.3f, \"p99_us\": %.3f},\n",
         opt.seconds, pps, got, lost, samples, p50, p99);
  printf(" \"one_in_flight\": {\"wanted\": %u, \"received\": %" PRIu64 ", \"lost\": %" PRIu64
         ", \"latency_samples\": %" PRIu64 ", \"p50_us\": %.3f, \"p99_us\": %.3f},\n",
         ready ? opt.latencySamples : 0, gotIdle, lostIdle, idleSamples, idle50, idle99);
  printf(" \"stale\": %" PRIu64 ", \"rx_frames\": %" PRIu64 ", \"tx_frames\": %" PRIu64 ", \"checked\": %" PRIu64
         ", \"errors\": %" PRIu64 ", \"error_kinds\": {",
         stale, rxTotal, txTotal, checked, errTotal);
  for (int e = 0; e < E_COUNT; ++e) printf("%s\"%s\": %" PRIu64, e ? ", " : "", kErrNames[e], errors[e]);
  const int complete = opt.cookies ? newDone == opt.flows : ready;
  printf("}, \"cookies\": %s, \"complete\": %s}\n", opt.cookies ? "true" : "false",
         complete && !stopRequested ? "true" : "false");
  fflush(stdout);
  /* With --sync the harness has stopped straitd before answering the
   * "done" mark, so its memif side left while we were not polling (the
   * PMD unmaps a link's rings from its interrupt thread when the peer
   * leaves, under whoever polls them). Let that thread finish the
   * disconnect before ours below, which touches the same state. */
  if (syncPhases) {
    const uint64_t w0 = rte_rdtsc();
    struct rte_eth_link l;
    do {
      memset(&l, 0, sizeof l);
      rte_eth_link_get_nowait(port, &l);
      if (!l.link_status) break;
      rte_delay_ms(1);
    } while (secondsSince(w0) < 5.0);
    rte_delay_ms(20);
  }
  rte_eth_dev_stop(port);
  rte_eth_dev_close(port);
  rte_eal_cleanup();
  return complete && errTotal == 0 ? 0 : 1;
}
