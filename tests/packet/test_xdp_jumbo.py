"""The largest mtu straitd accepts with an xdp: port (3434, the AF_XDP UMEM
chunk limit: docs/configuration.md) is carried: a 3434-byte UDP datagram
goes through the VIP both ways intact, on a lab of its own (xdp:lb0 and
the tester's link at mtu 3434, one worker). One byte more is refused by
the config check, naming the limit, before any NIC is touched.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP

from tests.lib.netns import CommandError, ns_sh
from tests.lib.require import require_straitd
from tests.lib.straitd import Straitd
from tests.lib.topology import GATEWAY_IP, WireTopology
from tests.lib.wire import Wire, is_gateway_arp
from tests.packet.helpers import (CLIENT, DNS_BACKEND, SERVICES, TTL_IN, VIP, PacketLb, assert_datagram,
                                  next_port, rewritten, to_lb, udp_to, warm_up)

XDP_MAX_MTU = 3434


@pytest.fixture
def topo():
    require_straitd()
    t = WireTopology(io="xdp")
    try:
        t.up()
        ns_sh(t.tester, ["ip", "link", "set", WireTopology.TESTER_IF, "mtu", str(XDP_MAX_MTU)])
        yield t
    finally:
        t.down()


def test_largest_xdp_mtu_is_carried_both_ways(topo):
    d = Straitd(topo.lb, topo.workdir, services=SERVICES, io="xdp", interface={"mtu": XDP_MAX_MTU})
    wire = None
    try:
        d.start()
        wire = Wire(topo.tester, WireTopology.TESTER_IF, ignore=[is_gateway_arp(GATEWAY_IP)])
        lb = PacketLb(topo, d, wire, 1, "xdp")
        warm_up(lb)
        c = lb.counters()
        bip, bport = DNS_BACKEND
        cport = next_port()
        body = bytes(range(256)) * 14  # 3584 bytes to cut from
        query = to_lb(IP(src=CLIENT, dst=VIP, ttl=TTL_IN) / UDP(sport=cport, dport=53) /
                      body[:XDP_MAX_MTU - 28])
        assert len(query[IP]) == XDP_MAX_MTU
        wire.send(query)
        out = wire.expect(udp_to(bip, bport), "the 3434-byte datagram at the backend")
        snat_port = out[UDP].sport
        assert len(out[IP]) == XDP_MAX_MTU
        assert_datagram(out, rewritten(query, src=VIP, dst=bip, sport=snat_port, dport=bport), "query")

        answer = to_lb(IP(src=bip, dst=VIP, ttl=TTL_IN) / UDP(sport=bport, dport=snat_port) /
                       body[1:XDP_MAX_MTU - 27])
        wire.send(answer)
        out = wire.expect(udp_to(CLIENT, cport), "the 3434-byte answer at the client")
        assert len(out[IP]) == XDP_MAX_MTU
        assert_datagram(out, rewritten(answer, src=VIP, dst=CLIENT, sport=53, dport=cport), "answer")
        c.assert_drops(None)
    finally:
        if wire is not None:
            wire.close()
        rc = d.stop()
    assert rc == 0, f"straitd exited {rc} on SIGTERM; log:\n{d.log_tail(40)}"


def test_one_byte_more_is_refused_by_the_config_check(topo):
    d = Straitd(topo.lb, topo.workdir, services=SERVICES, io="xdp", interface={"mtu": XDP_MAX_MTU + 1})
    try:
        with pytest.raises(CommandError):
            d.start(timeout=30)
        assert d.proc is not None and d.proc.returncode not in (None, 0)
        log = d.log_tail(20)
        assert "interface[0].mtu: 3435: more than an xdp: port carries" in log, log
        assert "set mtu <= 3434" in log, log
        assert "EAL" not in log, log  # refused before DPDK was started
    finally:
        if d.alive():
            d.stop()
