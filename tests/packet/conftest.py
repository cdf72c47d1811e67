"""Fixtures of the packet tier: one real straitd per worker count (1 and 2)
on a WireTopology, a raw-frame `Wire` on the tester side, builders for the
frames the tester plays (client, backends, routers) and counter deltas read
from straitd's /metrics.

The services are fixed so every expected packet is exact:

  web   tcp 192.0.2.10:80   -> 203.0.113.11:80    SNAT 192.0.2.10 (the interface address)
  alt   tcp 192.0.2.11:8080 -> 203.0.113.12:8080  SNAT 192.0.2.20
  dns   udp 192.0.2.10:53   -> 203.0.113.13:5353  SNAT 192.0.2.10
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from tests.lib.require import require_straitd
from tests.lib.straitd import Metrics, Service, Straitd
from tests.lib.topology import GATEWAY_IP, GW_MAC, LB_IP, LB_MAC, SNAT2, VIP, VIP2, WireTopology
from tests.lib.wire import Wire, checksum_errors, is_gateway_arp

CLIENT = "198.51.100.2"
WEB_BACKEND = ("203.0.113.11", 80)
ALT_BACKEND = ("203.0.113.12", 8080)
DNS_BACKEND = ("203.0.113.13", 5353)

SERVICES = [
    Service("web", f"{VIP}:80", [f"{WEB_BACKEND[0]}:{WEB_BACKEND[1]}"]),
    Service("alt", f"{VIP2}:8080", [f"{ALT_BACKEND[0]}:{ALT_BACKEND[1]}"], snat=[SNAT2]),
    Service("dns", f"{VIP}:53", [f"{DNS_BACKEND[0]}:{DNS_BACKEND[1]}"], protocol="udp"),
]

# Client ports: unique for the whole session so no test meets a flow left
# by another (flows live for seconds to minutes after a test).
_ports = itertools.count(20000)


def next_port() -> int:
    return next(_ports)


def to_lb(payload) -> Ether:
    """A frame from the gateway (the tester) to straitd's port."""
    return Ether(src=GW_MAC, dst=LB_MAC) / payload


def from_lb(p: Ether) -> bool:
    return p.src == LB_MAC


class Counters:
    """Before/after reading of straitd's metrics for one test case."""

    def __init__(self, d: Straitd) -> None:
        self.d = d
        self.before = d.metrics()

    def delta(self, name: str, **labels) -> float:
        return self.d.metrics().value(name, **labels) - self.before.value(name, **labels)

    def wait_delta(self, name: str, want: float, timeout: float = 3.0, **labels) -> float:
        """Polls until `name` has grown by at least `want` (the control
        thread sums worker counters when scraped, so a drop shows up a
        moment after the frame), then returns the exact delta."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.delta(name, **labels)
            if got >= want or time.monotonic() > deadline:
                return got

    def drops(self, reason: str) -> float:
        return self.delta("strait_drops_total", reason=reason)

    def assert_drop(self, reason: str, n: int = 1) -> None:
        got = self.wait_delta("strait_drops_total", n, reason=reason)
        assert got == n, f"drops{{reason={reason}}} grew by {got}, expected {n}"
        # Only that reason: no other drop counted for the same frames.
        now = self.d.metrics()
        for labels, value in now.series("strait_drops_total"):
            r = labels.get("reason")
            if r == reason:
                continue
            before = self.before.value("strait_drops_total", reason=r)
            if r != "neighbour_miss":
                assert value - before == 0 or self.delta("strait_drops_total", reason=r) == 0, \
                    f"unexpected drops{{reason={r}}} +{value - before}"


@dataclass
class PacketLb:
    topo: WireTopology
    d: Straitd
    wire: Wire
    workers: int

    def counters(self) -> Counters:
        self.wire.drain()
        return Counters(self.d)


def assert_clean(p: Ether) -> None:
    """Every frame straitd emits: from its own MAC to the gateway's, valid
    IPv4 and L4 checksums."""
    assert p.src == LB_MAC, f"source MAC {p.src}, expected straitd's {LB_MAC}"
    assert p.dst == GW_MAC, f"destination MAC {p.dst}, expected the gateway's {GW_MAC}"
    errors = checksum_errors(p)
    assert not errors, f"{p.summary()}: " + "; ".join(errors)


def _warm_up(lb: PacketLb) -> None:
    """Until straitd has resolved its gateway, the first packet of a flow is
    a counted neighbour_miss; retransmit one SYN (as a client would) until
    it comes out, so every test case starts from a resolved gateway."""
    sport = next_port()
    syn = to_lb(IP(src=CLIENT, dst=VIP, ttl=64) / TCP(sport=sport, dport=80, flags="S", seq=1))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        lb.wire.send(syn)
        for p in lb.wire.collect(0.3):
            if TCP in p and p[TCP].dport == WEB_BACKEND[1] and p[IP].dst == WEB_BACKEND[0]:
                return
    raise AssertionError("straitd forwarded nothing within 20 s of start; log:\n" + lb.d.log_tail())


@pytest.fixture(scope="session", params=[1, 2], ids=["1worker", "2workers"])
def lb(request, tmp_path_factory):
    require_straitd()
    workers = request.param
    topo = WireTopology()
    d = wire = None
    try:
        topo.up()
        d = Straitd(topo.lb, topo.workdir, services=SERVICES, workers=workers)
        d.start()
        wire = Wire(topo.tester, WireTopology.TESTER_IF, ignore=[is_gateway_arp(GATEWAY_IP)])
        handle = PacketLb(topo, d, wire, workers)
        _warm_up(handle)
        yield handle
    finally:
        if wire is not None:
            wire.close()
        if d is not None:
            rc = d.stop()
            log = d.log_tail(80)
            request.node.user_properties.append(("straitd_exit", rc))
        topo.down()
    # A straitd that crashed or hung on SIGTERM fails the session teardown.
    assert rc == 0, f"straitd exited {rc} on SIGTERM; log:\n{log}"


__all__ = ["ALT_BACKEND", "CLIENT", "DNS_BACKEND", "LB_IP", "LB_MAC", "GW_MAC", "SNAT2",
           "VIP", "VIP2", "WEB_BACKEND", "PacketLb", "assert_clean", "from_lb", "next_port",
           "to_lb", "Metrics"]
