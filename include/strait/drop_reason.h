// Drop reasons: the single table that names every way the dataplane can
// discard a packet. The enum, the Prometheus label values
// (strait_drops_total{reason=...}) and the lbctl stats rows all come from
// this one list, so a new reason cannot be added without a name.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace strait {

// X(enumerator, "metric label")
#define STRAIT_DROP_REASONS(X)                                   \
  X(kMalformed, "malformed")                     /* truncated or bad L2/L3/L4 header */ \
  X(kUnsupportedL2, "unsupported_l2")            /* ethertype we do not handle (IPv6, LLDP, ...) */ \
  X(kIpFragment, "ip_fragment")                  /* IPv4 fragments are not reassembled */ \
  X(kTtlExceeded, "ttl_exceeded")                /* TTL <= 1 on a packet we would forward */ \
  X(kNotLocal, "not_local")                      /* destination is none of our addresses */ \
  X(kNoService, "no_service")                    /* our address, but no service on that port/protocol */ \
  X(kNoFlow, "no_flow")                          /* non-SYN TCP or reply without a flow */ \
  X(kNoBackend, "no_backend")                    /* service has no usable backend */ \
  X(kFlowTableFull, "flow_table_full")           /* new flow refused, table at capacity */ \
  X(kSnatPortsExhausted, "snat_ports_exhausted") /* no free SNAT port for the tuple */ \
  X(kSnatPoolsExhausted, "snat_pools_exhausted") /* the snapshot has no pool for the (snat, backend) tuple: more than snat_pools_per_worker */ \
  X(kUnsupportedProtocol, "unsupported_protocol")/* IPv4 protocol other than TCP/UDP/ICMP */ \
  X(kIcmpUnhandled, "icmp_unhandled")            /* ICMP that is neither echo to us nor an error for a flow */ \
  X(kArpNotOurs, "arp_not_ours")                 /* ARP for an address that is not ours */ \
  X(kNoRoute, "no_route")                        /* no route to the next hop */ \
  X(kNeighbourMiss, "neighbour_miss")            /* next hop MAC unknown yet (ARP sent) */ \
  X(kTxFull, "tx_full")                          /* NIC TX queue did not take the packet */ \
  X(kHandoffFull, "handoff_full")                /* owner worker's handoff ring was full */ \
  X(kControlQueueFull, "control_queue_full")     /* ring to the control thread was full */ \
  X(kFlowFlushed, "flow_flushed")                /* packet of a flow removed by backend remove --flush */ \
  X(kRstOutOfWindow, "rst_out_of_window")        /* TCP RST whose sequence number is outside the receiver's window */ \
  X(kHealthEndpointNoReply, "health_endpoint_no_reply") /* instance health endpoint segment needing no answer (ACK, RST) */ \
  X(kMultiSegment, "multi_segment")              /* frame delivered as an mbuf chain (larger than the mbuf data room) */ \
  X(kSynCookieInvalid, "syn_cookie_invalid")     /* ACK without a flow whose cookie this process did not make */ \
  X(kSynCookieStale, "syn_cookie_stale")         /* cookie ACK older than two cookie periods */ \
  X(kSynCookieReplayed, "syn_cookie_replayed")   /* cookie ACK again while its flow waits for the backend */ \
  X(kSynProxyPending, "syn_proxy_pending")       /* client segment before the backend's SYN-ACK (cookie flow) */ \
  X(kBadChecksum, "bad_checksum")                /* TCP checksum wrong on a segment the SYN proxy would answer or rebuild */ \
  X(kProxyHeaderNoRoom, "proxy_header_no_room")  /* no head- or tailroom in the mbuf for the PROXY header (client resends) */ \
  X(kFlowKeyClash, "flow_key_clash")             /* new flow's keys taken by other flows on two SNAT ports in a row */

enum class DropReason : uint8_t {
  kNone = 0,
#define STRAIT_DROP_ENUM(e, s) e,
  STRAIT_DROP_REASONS(STRAIT_DROP_ENUM)
#undef STRAIT_DROP_ENUM
      kCount
};

inline constexpr std::size_t kDropReasonCount = static_cast<std::size_t>(DropReason::kCount);

inline constexpr std::array<std::string_view, kDropReasonCount> kDropReasonNames = {
    "none",
#define STRAIT_DROP_NAME(e, s) s,
    STRAIT_DROP_REASONS(STRAIT_DROP_NAME)
#undef STRAIT_DROP_NAME
};

constexpr std::string_view dropReasonName(DropReason r) {
  return kDropReasonNames[static_cast<std::size_t>(r)];
}

}  // namespace strait
