"""The packet tier's fixture: one real straitd per worker count (1 and 2)
and per I/O mode (af_packet, and xdp: the shared-NIC mode with Strait's XDP
program) on a WireTopology with a raw-frame Wire on the tester side.
Session scope, so pytest runs every case against one combination, then the
next; the daemon must exit 0 on SIGTERM at the end of each. STRAIT_TEST_IO
restricts the I/O modes (tests/lib/topology.py).
"""

from __future__ import annotations

import pytest

from tests.lib.require import require_straitd
from tests.lib.straitd import Straitd
from tests.lib.topology import GATEWAY_IP, WireTopology, io_modes
from tests.lib.wire import Wire, is_gateway_arp
from tests.packet.helpers import COOKIE_PERIOD_MS, SERVICES, PacketLb, warm_up


# The xdp mode runs with one worker only: DPDK 22.11's net_af_xdp binds no
# more queues than the device's combined channels, and a veth has none (the
# PMD counts it as one), so two workers on a veth are refused at start-up
# (tests/packet/test_xdp_lifecycle.py checks that message).
PARAMS = [(w, io) for io in io_modes() for w in ((1, 2) if io == "af_packet" else (1,))]


@pytest.fixture(scope="session", params=PARAMS,
                ids=[f"{w}worker{'s' if w > 1 else ''}-{io}" for w, io in PARAMS])
def lb(request):
    require_straitd()
    workers, io = request.param
    topo = WireTopology(io=io, queues=workers)
    d = wire = None
    rc, log = 0, ""
    try:
        topo.up()
        d = Straitd(topo.lb, topo.workdir, services=SERVICES, workers=workers, io=io,
                    dataplane={"syn_cookie_period_ms": COOKIE_PERIOD_MS})
        d.start()
        wire = Wire(topo.tester, WireTopology.TESTER_IF, ignore=[is_gateway_arp(GATEWAY_IP)])
        handle = PacketLb(topo, d, wire, workers, io)
        warm_up(handle)
        yield handle
    finally:
        if wire is not None:
            wire.close()
        if d is not None:
            rc = d.stop()
            log = d.log_tail(60)
        topo.down()
    # A straitd that crashed, or did not leave on SIGTERM, fails teardown.
    assert rc == 0, f"straitd exited {rc} on SIGTERM; log:\n{log}"
