"""Shared pieces of the packet tier: the fixed services, the addresses the
tester plays, frame builders, exact checks every emitted frame must pass,
and counter deltas read from straitd's /metrics.

The services are fixed so every expected packet is exact:

  web   tcp 192.0.2.10:80   -> 203.0.113.11:80    SNAT 192.0.2.10 (the interface address)
  alt   tcp 192.0.2.11:8080 -> 203.0.113.12:8080  SNAT 192.0.2.20
  dns   udp 192.0.2.10:53   -> 203.0.113.13:5353  SNAT 192.0.2.10
  guard tcp 192.0.2.10:443  -> 203.0.113.14:8443  SNAT 192.0.2.10, syn_proxy = "on"
  pp    tcp 192.0.2.10:25   -> 203.0.113.15:2525  SNAT 192.0.2.10, proxy_protocol = "v2", syn_proxy = "off"
  ppsp  tcp 192.0.2.10:465  -> 203.0.113.16:4650  SNAT 192.0.2.10, proxy_protocol = "v2", syn_proxy = "on"

The daemon runs with a 2,048 ms SYN cookie period (syn_cookie_period_ms) so
that a stale cookie can be shown in seconds.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from tests.lib.straitd import Metrics, Service, Straitd
from tests.lib.topology import GW_MAC, LB_MAC, SNAT2, VIP, VIP2, WireTopology
from tests.lib.wire import Wire, checksum_errors

CLIENT = "198.51.100.2"
WEB_BACKEND = ("203.0.113.11", 80)
ALT_BACKEND = ("203.0.113.12", 8080)
DNS_BACKEND = ("203.0.113.13", 5353)
GUARD_BACKEND = ("203.0.113.14", 8443)
PP_BACKEND = ("203.0.113.15", 2525)
PPSP_BACKEND = ("203.0.113.16", 4650)
COOKIE_PERIOD_MS = 2048
# Frames from straitd leave with TTL one less than they came in with.
TTL_IN = 64

SERVICES = [
    Service("web", f"{VIP}:80", [f"{WEB_BACKEND[0]}:{WEB_BACKEND[1]}"]),
    Service("alt", f"{VIP2}:8080", [f"{ALT_BACKEND[0]}:{ALT_BACKEND[1]}"], snat=[SNAT2]),
    Service("dns", f"{VIP}:53", [f"{DNS_BACKEND[0]}:{DNS_BACKEND[1]}"], protocol="udp"),
    Service("guard", f"{VIP}:443", [f"{GUARD_BACKEND[0]}:{GUARD_BACKEND[1]}"],
            extra={"syn_proxy": "on"}),
    Service("pp", f"{VIP}:25", [f"{PP_BACKEND[0]}:{PP_BACKEND[1]}"],
            extra={"proxy_protocol": "v2", "syn_proxy": "off"}),
    Service("ppsp", f"{VIP}:465", [f"{PPSP_BACKEND[0]}:{PPSP_BACKEND[1]}"],
            extra={"proxy_protocol": "v2", "syn_proxy": "on"}),
]

# Client ports unique for the whole session, so no case meets a flow left
# by another (flows outlive a test case by seconds to minutes).
_ports = itertools.count(20000)


def next_port() -> int:
    return next(_ports)


def to_lb(payload) -> Ether:
    """A frame from the gateway (the tester) to straitd's port."""
    return Ether(src=GW_MAC, dst=LB_MAC) / payload


def assert_clean(p: Ether) -> None:
    """What every frame straitd emits must be: from its own MAC to the
    gateway's, every IPv4 and L4 checksum right."""
    assert p.src == LB_MAC, f"source MAC {p.src}, expected straitd's {LB_MAC}"
    assert p.dst == GW_MAC, f"destination MAC {p.dst}, expected the gateway's {GW_MAC}"
    errors = checksum_errors(p)
    assert not errors, f"{p.summary()}: " + "; ".join(errors)


def ip_bytes(p: Ether) -> bytes:
    """The IPv4 datagram of a frame, without Ethernet padding."""
    raw = bytes(p[IP])
    return raw[:p[IP].len]


def rewritten(sent: Ether, *, src: str, dst: str, sport: int | None = None,
              dport: int | None = None, ttl: int | None = None) -> bytes:
    """The exact datagram a NAT must emit for `sent`: addresses (and ports)
    replaced, TTL one less unless given, every checksum recomputed from
    scratch by Scapy, everything else untouched."""
    ip = IP(ip_bytes(sent))
    ip.src, ip.dst = src, dst
    ip.ttl = ip.ttl - 1 if ttl is None else ttl
    l4 = ip.payload
    if sport is not None:
        l4.sport = sport
    if dport is not None:
        l4.dport = dport
    del ip.chksum
    if hasattr(l4, "chksum"):
        del l4.chksum
    return bytes(ip)


def assert_datagram(got: Ether, want: bytes, what: str) -> None:
    """`got` is exactly `want` (and a clean frame from straitd)."""
    assert_clean(got)
    have = ip_bytes(got)
    if have != want:
        raise AssertionError(f"{what}: datagram differs\n got: {IP(have).summary()}\n"
                             f"want: {IP(want).summary()}\n got: {have.hex()}\nwant: {want.hex()}")


def tcp_to(dst: str, dport: int):
    def pred(p: Ether) -> bool:
        return TCP in p and p[IP].dst == dst and p[TCP].dport == dport
    return pred


def udp_to(dst: str, dport: int):
    def pred(p: Ether) -> bool:
        return UDP in p and p[IP].dst == dst and p[UDP].dport == dport
    return pred


class Counters:
    """Metrics before a test case, and exact deltas after it."""

    # Background drops that are no verdict on the case's frames.
    BACKGROUND = {"neighbour_miss"}

    def __init__(self, d: Straitd) -> None:
        self.d = d
        self.before = d.metrics()

    def delta(self, name: str, **labels) -> float:
        return self.d.metrics().value(name, **labels) - self.before.value(name, **labels)

    def wait_delta(self, name: str, want: float, timeout: float = 3.0, **labels) -> float:
        """Polls until `name` grew by at least `want` (workers' counters are
        summed when scraped, a moment after the frame went through), then
        settles briefly and returns the exact delta."""
        deadline = time.monotonic() + timeout
        while self.delta(name, **labels) < want and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.1)
        return self.delta(name, **labels)

    def assert_delta(self, name: str, want: float, **labels) -> None:
        got = self.wait_delta(name, want, **labels)
        assert got == want, f"{name}{labels} grew by {got:g}, expected {want:g}"

    def assert_passed_to_kernel(self, verdict: str, n: int = 1) -> None:
        """xdp mode: the XDP program handed exactly `n` frames to the kernel
        under `verdict` (pass_ipv4, pass_arp, ...), and straitd, which never
        saw them, dropped nothing."""
        self.assert_delta("strait_xdp_verdicts_total", n, verdict=verdict)
        self.assert_drops(None)

    def assert_drops(self, reason: str | None, n: int = 1) -> None:
        """Exactly `n` drops of `reason` and none of any other reason
        (reason None: no drops at all)."""
        if reason is not None:
            self.assert_delta("strait_drops_total", n, reason=reason)
        else:
            time.sleep(0.2)
        now = self.d.metrics()
        grown = {}
        for labels, value in now.series("strait_drops_total"):
            r = labels.get("reason", "")
            if r == reason or r in self.BACKGROUND:
                continue
            diff = now.value("strait_drops_total", reason=r) - self.before.value(
                "strait_drops_total", reason=r)
            if diff:
                grown[r] = diff
        assert not grown, f"unexpected drops: {grown}"


@dataclass
class PacketLb:
    topo: WireTopology
    d: Straitd
    wire: Wire
    workers: int
    io: str = "af_packet"

    def counters(self) -> Counters:
        """Drains frames left over from earlier cases, then snapshots the
        counters: the baseline of one case."""
        self.wire.drain()
        return Counters(self.d)


def warm_up(lb: PacketLb) -> None:
    """Until straitd has resolved its gateway, the first packet of a flow is
    a counted neighbour_miss; retransmit one SYN (as a client would) until
    it comes out, so every case starts with the gateway resolved."""
    sport = next_port()
    syn = to_lb(IP(src=CLIENT, dst=VIP, ttl=TTL_IN) / TCP(sport=sport, dport=80, flags="S", seq=1))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        lb.wire.send(syn)
        for p in lb.wire.collect(0.3):
            if tcp_to(*WEB_BACKEND)(p):
                return
    raise AssertionError("straitd forwarded nothing within 20 s of start; log:\n" + lb.d.log_tail())


__all__ = ["ALT_BACKEND", "CLIENT", "COOKIE_PERIOD_MS", "DNS_BACKEND", "GUARD_BACKEND", "PP_BACKEND", "PPSP_BACKEND", "SERVICES", "SNAT2", "TTL_IN", "VIP", "VIP2",
           "WEB_BACKEND", "Counters", "Metrics", "PacketLb", "assert_clean", "assert_datagram",
           "ip_bytes", "next_port", "rewritten", "udp_to",
           "tcp_to", "to_lb", "warm_up"]
