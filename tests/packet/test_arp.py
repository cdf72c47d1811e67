"""ARP at straitd: requests for its interface address, a VIP and a SNAT
address are answered with its own MAC (exact reply frames); requests for
any other address go unanswered and are counted (in the xdp I/O mode they
go to the kernel: the XDP program counts them as pass_arp, and requests
for the kernel's own address on lb0 are answered by the kernel)."""

from __future__ import annotations

import pytest
from scapy.layers.l2 import ARP, Ether

from tests.lib.topology import GATEWAY_IP, GW_MAC, LB_IP, LB_KERNEL_IP, LB_MAC
from tests.packet.helpers import SNAT2, VIP2


def arp_request(target: str) -> Ether:
    return Ether(src=GW_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=GW_MAC, psrc=GATEWAY_IP, hwdst="00:00:00:00:00:00", pdst=target)


@pytest.mark.parametrize("target", [LB_IP, VIP2, SNAT2], ids=["interface", "vip", "snat"])
def test_arp_for_own_address_answered(lb, target):
    c = lb.counters()
    lb.wire.send(arp_request(target))
    out = lb.wire.expect(lambda p: ARP in p and p[ARP].op == 2, f"ARP reply for {target}")
    want = Ether(src=LB_MAC, dst=GW_MAC) / ARP(op=2, hwsrc=LB_MAC, psrc=target,
                                                hwdst=GW_MAC, pdst=GATEWAY_IP)
    assert bytes(out)[:len(bytes(want))] == bytes(want), f"{out.summary()} != {want.summary()}"
    lb.wire.expect_silence(0.2)
    assert c.wait_delta("strait_control_packets_total", 1) >= 1
    c.assert_drops(None)
    if lb.io == "xdp":
        c.assert_delta("strait_xdp_verdicts_total", 1, verdict="steer_arp")


@pytest.mark.parametrize("target", ["192.0.2.99", "192.0.2.1", "198.51.100.2"],
                         ids=["same-subnet", "asker-itself", "off-link"])
def test_arp_for_other_address_not_answered(lb, target):
    c = lb.counters()
    lb.wire.send(arp_request(target))
    lb.wire.expect_silence(0.5)
    if lb.io == "xdp":
        c.assert_passed_to_kernel("pass_arp")
    else:
        c.assert_drops("arp_not_ours")


@pytest.mark.io("xdp")  # only there does lb0 have a kernel address
def test_arp_for_kernel_address_answered_by_the_kernel(lb):
    c = lb.counters()
    lb.wire.send(arp_request(LB_KERNEL_IP))
    out = lb.wire.expect(lambda p: ARP in p and p[ARP].op == 2, f"ARP reply for {LB_KERNEL_IP}")
    # Same MAC (one NIC), but the kernel answered: straitd saw nothing.
    assert out[ARP].psrc == LB_KERNEL_IP and out[ARP].hwsrc == LB_MAC
    c.assert_passed_to_kernel("pass_arp")
    c.assert_delta("strait_control_packets_total", 0)
