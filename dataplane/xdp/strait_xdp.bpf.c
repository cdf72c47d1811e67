// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Strait's XDP program for the shared-NIC mode (`port = "xdp:IFNAME"`).
 *
 * It runs on every frame IFNAME receives and steers to Strait's AF_XDP
 * socket on the receiving queue exactly what Strait owns: IPv4 to an
 * address in `strait_addrs` (the dataplane's own address on the link, VIPs,
 * SNAT addresses; the control plane keeps the map current) and ARP whose
 * target is one of them. Everything else, the kernel's own address on the
 * interface included, goes to the kernel untouched, so SSH, DNS and agents
 * keep working on the same NIC. One per-CPU counter per verdict; /metrics
 * exports their sums.
 *
 * The program never rewrites a frame and never looks past the headers it
 * needs to classify, so a malformed packet to an owned address still
 * reaches Strait, where the drop is counted under its named reason.
 * Built by meson with `clang -O2 -g -target bpf`. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "strait/xdp_abi.h"

struct {
  __uint(type, BPF_MAP_TYPE_XSKMAP);
  __uint(max_entries, STRAIT_XDP_MAX_QUEUES);
  __type(key, __u32);
  __type(value, __u32);
} xsks_map SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, STRAIT_XDP_MAX_ADDRS);
  __type(key, __u32);   /* IPv4, network order */
  __type(value, __u32); /* STRAIT_XDP_ROLE_* bits */
} strait_addrs SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, STRAIT_XDP_VERDICT_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} strait_verdicts SEC(".maps");

/* The ARP body for IPv4 over Ethernet (RFC 826), as far as the target. */
struct arp_eth_ipv4 {
  __be16 hrd;
  __be16 pro;
  __u8 hln;
  __u8 pln;
  __be16 op;
  __u8 sha[ETH_ALEN];
  __be32 spa;
  __u8 tha[ETH_ALEN];
  __be32 tpa;
} __attribute__((packed));

struct vlan_tag {
  __be16 tci;
  __be16 proto;
};

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

static __always_inline int count(__u32 verdict, int action) {
  __u64* c = bpf_map_lookup_elem(&strait_verdicts, &verdict);
  if (c) *c += 1; /* per-CPU slot: no other writer */
  return action;
}

static __always_inline int steer(struct xdp_md* ctx, __u32 verdict) {
  /* No socket on this queue (straitd starting or gone): drop rather than
   * pass, because the kernel does not own the address and, with forwarding
   * on, would route the packet back out. */
  int action = bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_DROP);
  if (action != XDP_REDIRECT) return count(STRAIT_XDP_DROP_NO_SOCKET, action);
  return count(verdict, action);
}

static __always_inline int owned(__be32 addr) { return bpf_map_lookup_elem(&strait_addrs, &addr) != NULL; }

SEC("xdp")
int strait_xdp(struct xdp_md* ctx) {
  void* data = (void*)(long)ctx->data;
  void* end = (void*)(long)ctx->data_end;
  struct ethhdr* eth = data;
  if ((void*)(eth + 1) > end) return count(STRAIT_XDP_PASS_TRUNCATED, XDP_PASS);
  void* l3 = eth + 1;
  __be16 proto = eth->h_proto;
  /* One VLAN tag, as the dataplane parses. */
  if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
    struct vlan_tag* tag = l3;
    if ((void*)(tag + 1) > end) return count(STRAIT_XDP_PASS_TRUNCATED, XDP_PASS);
    proto = tag->proto;
    l3 = tag + 1;
  }

  if (proto == bpf_htons(ETH_P_IP)) {
    struct iphdr* ip = l3;
    if ((void*)(ip + 1) > end) return count(STRAIT_XDP_PASS_TRUNCATED, XDP_PASS);
    if (!owned(ip->daddr)) return count(STRAIT_XDP_PASS_IPV4, XDP_PASS);
    if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) return steer(ctx, STRAIT_XDP_STEER_OTHER);
    switch (ip->protocol) {
      case IPPROTO_TCP: return steer(ctx, STRAIT_XDP_STEER_TCP);
      case IPPROTO_UDP: return steer(ctx, STRAIT_XDP_STEER_UDP);
      case IPPROTO_ICMP: return steer(ctx, STRAIT_XDP_STEER_ICMP);
      default: return steer(ctx, STRAIT_XDP_STEER_OTHER);
    }
  }
  if (proto == bpf_htons(ETH_P_ARP)) {
    struct arp_eth_ipv4* arp = l3;
    if ((void*)(arp + 1) > end) return count(STRAIT_XDP_PASS_TRUNCATED, XDP_PASS);
    if (arp->hrd == bpf_htons(1) && arp->pro == bpf_htons(ETH_P_IP) && arp->hln == ETH_ALEN &&
        arp->pln == 4 && owned(arp->tpa))
      return steer(ctx, STRAIT_XDP_STEER_ARP);
    return count(STRAIT_XDP_PASS_ARP, XDP_PASS);
  }
  if (proto == bpf_htons(ETH_P_IPV6)) return count(STRAIT_XDP_PASS_IPV6, XDP_PASS);
  return count(STRAIT_XDP_PASS_OTHER, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
