/* The contract between Strait's XDP program (dataplane/xdp/strait_xdp.bpf.c)
 * and the control plane that loads it: map names, the address map's value
 * bits and the verdict counters' indices and names. Plain C, because the
 * BPF program includes it too; the C++ side reads the names from here so
 * /metrics and the program cannot drift apart. */
#ifndef STRAIT_XDP_ABI_H
#define STRAIT_XDP_ABI_H

/* The XSKMAP the af_xdp PMD fills with its sockets: the PMD looks it up by
 * this exact name in the object it is given. */
#define STRAIT_XDP_XSKS_MAP "xsks_map"
/* IPv4 address (network order, 4-byte key) -> role bits. */
#define STRAIT_XDP_ADDR_MAP "strait_addrs"
/* Per-CPU array of u64 packet counts, one slot per verdict. */
#define STRAIT_XDP_STATS_MAP "strait_verdicts"
/* The program's name as the kernel reports it (bpf_prog_info.name): how a
 * stale program left by a crashed straitd is recognised at the next start. */
#define STRAIT_XDP_PROG_NAME "strait_xdp"

#define STRAIT_XDP_MAX_ADDRS 4096
#define STRAIT_XDP_MAX_QUEUES 64

/* Role bits in the address map (informational: every role is steered). */
#define STRAIT_XDP_ROLE_LOCAL 1u /* the dataplane's own address on the link */
#define STRAIT_XDP_ROLE_VIP 2u
#define STRAIT_XDP_ROLE_SNAT 4u

/* One counter per verdict class. Steered = redirected to the AF_XDP socket
 * of the receiving queue; passed = handed to the kernel untouched. */
enum strait_xdp_verdict {
  STRAIT_XDP_STEER_TCP = 0,     /* IPv4 TCP to an owned address */
  STRAIT_XDP_STEER_UDP,         /* IPv4 UDP to an owned address */
  STRAIT_XDP_STEER_ICMP,        /* IPv4 ICMP to an owned address */
  STRAIT_XDP_STEER_OTHER,       /* other IPv4 to an owned address (other protocols, non-first fragments) */
  STRAIT_XDP_STEER_ARP,         /* ARP whose target is an owned address */
  STRAIT_XDP_PASS_IPV4,         /* IPv4 to any other address (the kernel's own included) */
  STRAIT_XDP_PASS_ARP,          /* ARP for any other address */
  STRAIT_XDP_PASS_IPV6,
  STRAIT_XDP_PASS_OTHER,        /* any other EtherType */
  STRAIT_XDP_PASS_TRUNCATED,    /* too short to classify */
  STRAIT_XDP_DROP_NO_SOCKET,    /* owned, but no socket bound on this queue */
  STRAIT_XDP_VERDICT_COUNT
};

#endif
