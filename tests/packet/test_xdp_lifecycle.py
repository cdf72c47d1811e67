"""The shared-NIC mode's life cycle on a lab of its own (xdp:lb0, one
worker): straitd attaches Strait's program to lb0 itself and detaches it
when it stops; after a SIGKILL the program stays behind and the next
straitd removes it and serves; bad shared-NIC setups are refused before any
NIC is touched, with the config key named."""

from __future__ import annotations

import re
import signal

import pytest
from scapy.layers.l2 import ARP, Ether

from tests.lib.netns import CommandError, ns_sh
from tests.lib.require import require_straitd
from tests.lib.straitd import Straitd
from tests.lib.topology import GATEWAY_IP, GW_MAC, LB_IP, LB_KERNEL_IP, LB_MAC, WireTopology
from tests.lib.wire import Wire, is_gateway_arp
from tests.packet.helpers import SERVICES


def xdp_prog_id(topo: WireTopology) -> int | None:
    """The id of the XDP program on lb0 as `ip link` shows it, or None."""
    out = ns_sh(topo.lb, ["ip", "-d", "link", "show", "lb0"]).stdout.decode()
    m = re.search(r"prog/xdp\S* id (\d+)", out)
    return int(m.group(1)) if m else None


def answers_arp(topo: WireTopology) -> bool:
    wire = Wire(topo.tester, WireTopology.TESTER_IF, ignore=[is_gateway_arp(GATEWAY_IP)])
    try:
        wire.send(Ether(src=GW_MAC, dst="ff:ff:ff:ff:ff:ff") /
                  ARP(op=1, hwsrc=GW_MAC, psrc=GATEWAY_IP, pdst=LB_IP))
        got = wire.expect(lambda p: ARP in p and p[ARP].op == 2, "ARP reply")
        return got[ARP].psrc == LB_IP and got[ARP].hwsrc == LB_MAC
    finally:
        wire.close()


@pytest.fixture
def topo():
    require_straitd()
    t = WireTopology(io="xdp")
    try:
        t.up()
        yield t
    finally:
        t.down()


def test_attached_while_running_detached_on_stop(topo):
    assert xdp_prog_id(topo) is None
    d = Straitd(topo.lb, topo.workdir, services=SERVICES, io="xdp")
    try:
        d.start()
        assert xdp_prog_id(topo) is not None, "no XDP program on lb0 while straitd runs"
        assert answers_arp(topo)
    finally:
        rc = d.stop()
    assert rc == 0, d.log_tail()
    assert xdp_prog_id(topo) is None, "straitd left its XDP program attached after SIGTERM"


def test_program_left_by_a_crash_is_removed_at_next_start(topo):
    d = Straitd(topo.lb, topo.workdir, services=SERVICES, io="xdp")
    d.start()
    stale = xdp_prog_id(topo)
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(timeout=10)
    assert xdp_prog_id(topo) == stale, "the program did not outlive the killed straitd"
    d2 = Straitd(topo.lb, topo.workdir, services=SERVICES, io="xdp")
    try:
        d2.start()
        assert "removed the Strait XDP program a previous straitd left attached" in d2.log_tail(200)
        now = xdp_prog_id(topo)
        assert now is not None and now != stale
        assert answers_arp(topo)
    finally:
        rc = d2.stop()
    assert rc == 0, d2.log_tail()
    assert xdp_prog_id(topo) is None


def _start_fails(d: Straitd) -> str:
    with pytest.raises(CommandError) as e:
        d.start(timeout=20)
    return str(e.value)


def test_missing_interface_refused(topo):
    d = Straitd(topo.lb, topo.workdir, services=SERVICES, io="xdp", iface="nosuch0")
    msg = _start_fails(d)
    assert 'interface[0].port: "xdp:nosuch0": no interface nosuch0' in msg, msg


def test_kernel_address_as_straitd_address_refused(topo):
    d = Straitd(topo.lb, topo.workdir, services=[], io="xdp", address=f"{LB_KERNEL_IP}/24")
    msg = _start_fails(d)
    assert f"interface[0].address: {LB_KERNEL_IP} is lb0's kernel address" in msg, msg
    assert xdp_prog_id(topo) is None


def test_more_workers_than_queues_refused(topo):
    # A veth reports no combined channels: net_af_xdp binds one queue.
    d = Straitd(topo.lb, topo.workdir, services=SERVICES, io="xdp", workers=2)
    msg = _start_fails(d)
    assert ('interface[0].port: "xdp:lb0": dataplane.workers = 2 needs one AF_XDP queue per worker '
            "but lb0 offers 1 combined channel(s)") in msg, msg
    assert xdp_prog_id(topo) is None


def test_second_straitd_on_the_interface_refused(topo):
    d = Straitd(topo.lb, topo.workdir, services=SERVICES, io="xdp")
    try:
        d.start()
        prog = xdp_prog_id(topo)
        second = Straitd(topo.lb, topo.workdir / "second", services=SERVICES, io="xdp")
        msg = _start_fails(second)
        assert "interface lb0: another straitd is serving it" in msg, msg
        # The first one's program was left alone, and it still answers.
        assert xdp_prog_id(topo) == prog
        assert answers_arp(topo)
    finally:
        rc = d.stop()
    assert rc == 0, d.log_tail()
    assert xdp_prog_id(topo) is None
