"""A SNAT address that is also a VIP must never hand out a SNAT port equal
to a service's listen port on that address: a backend's reply to such a
port would be taken for a client packet to the service. Pools list their
ports in ascending order from snat_port_min (1024), so a service listening
on VIP:1024 would otherwise get port 1024 for the first new flow."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP

from tests.lib.require import require_straitd
from tests.lib.straitd import Service, Straitd
from tests.lib.topology import GATEWAY_IP, VIP, WireTopology
from tests.lib.wire import Wire, is_gateway_arp
from tests.packet.helpers import CLIENT, TTL_IN, WEB_BACKEND, PacketLb, assert_clean, tcp_to, to_lb, warm_up

GUARDED_PORT = 1024  # == snat_port_min: the first port of every fresh pool
# A backend no other flow of this module uses (warm_up's flow goes to the
# web backend), so its pool is fresh when the test starts.
FRESH_BACKEND = ("203.0.113.12", 80)


@pytest.fixture(scope="module")
def guarded_lb():
    require_straitd()
    topo = WireTopology()
    d = wire = None
    rc = 0
    try:
        topo.up()
        services = [
            Service("web", f"{VIP}:80", [f"{WEB_BACKEND[0]}:{WEB_BACKEND[1]}"]),
            Service("fresh", f"{VIP}:81", [f"{FRESH_BACKEND[0]}:{FRESH_BACKEND[1]}"]),
            Service("guard", f"{VIP}:{GUARDED_PORT}", [f"{WEB_BACKEND[0]}:{WEB_BACKEND[1]}"]),
        ]
        d = Straitd(topo.lb, topo.workdir, services=services, workers=1)
        d.start()
        wire = Wire(topo.tester, WireTopology.TESTER_IF, ignore=[is_gateway_arp(GATEWAY_IP)])
        handle = PacketLb(topo, d, wire, 1)
        warm_up(handle)
        yield handle
    finally:
        if wire is not None:
            wire.close()
        if d is not None:
            rc = d.stop()
        topo.down()
    assert rc == 0, "straitd did not exit 0 on SIGTERM"


def test_snat_port_never_equals_a_listen_port_of_the_same_address(guarded_lb):
    w = guarded_lb.wire
    ports = []
    for cport in range(31000, 31004):
        w.send(to_lb(IP(src=CLIENT, dst=VIP, ttl=TTL_IN) / TCP(sport=cport, dport=81, flags="S", seq=5)))
        out = w.expect(tcp_to(*FRESH_BACKEND), f"SYN from client port {cport}")
        assert_clean(out)
        assert out[IP].src == VIP
        ports.append(out[TCP].sport)
    assert GUARDED_PORT not in ports, f"SNAT ports {ports} include the service port {GUARDED_PORT}"
    # The fresh pool starts at 1024 and skips only the guarded port.
    assert ports == [GUARDED_PORT + 1 + i for i in range(len(ports))], f"SNAT ports {ports}"
    assert len(set(ports)) == len(ports)
