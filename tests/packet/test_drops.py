"""Frames straitd must not forward: each is dropped silently (nothing comes
out) and counted under exactly one reason of include/strait/drop_reason.h,
as strait_drops_total{reason=...}.

In the xdp I/O mode, frames for addresses straitd does not own (and IPv6)
never reach it: the XDP program hands them to the kernel, so those cases
check the program's pass verdict instead, and that straitd dropped nothing.

IPv4 fragments (reason ip_fragment): DPDK 22.11's af_packet PMD joins a
PACKET_FANOUT group with the kernel's defragment flag, so on that PMD the
kernel reassembles fragments before straitd sees them (the parser's unit
tests cover the drop); in the xdp mode fragments to a VIP reach straitd as
sent, and the case runs there."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tests.lib.topology import GW_MAC, LB_MAC
from tests.packet.helpers import (CLIENT, TTL_IN, VIP, VIP2, WEB_BACKEND, next_port, tcp_to,
                                  to_lb)


def _case(lb, frame, reason, xdp_pass=None):
    """`frame` comes out nowhere and is counted: under `reason` by straitd,
    or, in the xdp mode when `xdp_pass` is given, under that pass verdict
    of the XDP program (the kernel, not straitd, gets it)."""
    c = lb.counters()
    lb.wire.send(frame)
    lb.wire.expect_silence(0.4)
    if lb.io == "xdp" and xdp_pass is not None:
        c.assert_passed_to_kernel(xdp_pass)
    else:
        c.assert_drops(reason)


def test_non_syn_without_flow_dropped(lb):
    _case(lb, to_lb(IP(src=CLIENT, dst=VIP, ttl=TTL_IN) /
                    TCP(sport=next_port(), dport=80, flags="A", seq=5, ack=9)), "no_flow")


def test_rst_and_fin_without_flow_dropped(lb):
    for flags in ("R", "FA", "PA"):
        _case(lb, to_lb(IP(src=CLIENT, dst=VIP, ttl=TTL_IN) /
                        TCP(sport=next_port(), dport=80, flags=flags) / b"x"), "no_flow")


def test_reply_to_snat_port_without_flow_dropped(lb):
    # A backend's segment to a SNAT port that no flow holds.
    _case(lb, to_lb(IP(src=WEB_BACKEND[0], dst=VIP, ttl=TTL_IN) /
                    TCP(sport=80, dport=next_port() + 20000, flags="SA")), "no_flow")


def test_unknown_address_dropped(lb):
    _case(lb, to_lb(IP(src=CLIENT, dst="192.0.2.99", ttl=TTL_IN) /
                    TCP(sport=next_port(), dport=80, flags="S")), "not_local", "pass_ipv4")


def test_echo_to_unknown_address_dropped(lb):
    _case(lb, to_lb(IP(src=CLIENT, dst="203.0.113.200", ttl=TTL_IN) / ICMP(type=8)), "not_local",
          "pass_ipv4")


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_unknown_port_dropped(lb, proto):
    # VIP2 is no SNAT address, so a port without a service is no_service.
    l4 = TCP(sport=next_port(), dport=81, flags="S") if proto == "tcp" else \
        UDP(sport=next_port(), dport=9999) / b"x"
    _case(lb, to_lb(IP(src=CLIENT, dst=VIP2, ttl=TTL_IN) / l4), "no_service")


def test_wrong_protocol_for_service_dropped(lb):
    # alt is TCP only: UDP to the same port is no service.
    _case(lb, to_lb(IP(src=CLIENT, dst=VIP2, ttl=TTL_IN) / UDP(sport=next_port(), dport=8080) / b"x"),
          "no_service")


@pytest.mark.parametrize("ttl", [1, 0])
def test_ttl_expiring_dropped(lb, ttl):
    c = lb.counters()
    lb.wire.send(to_lb(IP(src=CLIENT, dst=VIP, ttl=ttl) / TCP(sport=next_port(), dport=80, flags="S")))
    got = lb.wire.collect(0.4)
    assert not [p for p in got if tcp_to(*WEB_BACKEND)(p)], "a TTL-expired SYN was forwarded"
    c.assert_drops("ttl_exceeded")
    c.assert_delta("strait_flows_created_total", 0)


def test_unsupported_protocol_dropped(lb):
    _case(lb, to_lb(IP(src=CLIENT, dst=VIP, ttl=TTL_IN, proto=47) / Raw(b"\0" * 24)),
          "unsupported_protocol")


def test_ipv6_dropped(lb):
    _case(lb, Ether(src=GW_MAC, dst=LB_MAC) / IPv6(src="2001:db8::2", dst="2001:db8::10") /
          UDP(sport=1, dport=53), "unsupported_l2", "pass_ipv6")


@pytest.mark.parametrize("kind", ["short-ihl", "truncated", "bad-total-length"])
def test_malformed_dropped(lb, kind):
    good = bytes(IP(src=CLIENT, dst=VIP, ttl=TTL_IN) / TCP(sport=next_port(), dport=80, flags="S"))
    if kind == "short-ihl":
        raw = bytes([0x44]) + good[1:]
    elif kind == "truncated":
        raw = good[:30]
    else:
        raw = good[:2] + (len(good) + 40).to_bytes(2, "big") + good[4:]
    _case(lb, Ether(src=GW_MAC, dst=LB_MAC, type=0x0800) / Raw(raw), "malformed")


@pytest.mark.io("xdp")  # af_packet's fanout defragments first (see above)
@pytest.mark.parametrize("part", ["first", "later"])
def test_fragment_to_vip_dropped(lb, part):
    c = lb.counters()
    frag = 0x2000 if part == "first" else 0x2000 | 185  # MF, and offset 1480 bytes
    lb.wire.send(to_lb(IP(src=CLIENT, dst=VIP, ttl=TTL_IN, flags=frag >> 13, frag=frag & 0x1fff,
                          proto=17) / Raw(b"\0" * 32)))
    lb.wire.expect_silence(0.4)
    c.assert_delta("strait_xdp_verdicts_total", 1, verdict="steer_other")
    c.assert_drops("ip_fragment")
