"""The packet tier's fixture: one real straitd per worker count (1 and 2)
on a WireTopology with a raw-frame Wire on the tester side. Session scope,
so pytest runs every case against one worker count, then the other; the
daemon must exit 0 on SIGTERM at the end of each.
"""

from __future__ import annotations

import pytest

from tests.lib.require import require_straitd
from tests.lib.straitd import Straitd
from tests.lib.topology import GATEWAY_IP, WireTopology
from tests.lib.wire import Wire, is_gateway_arp
from tests.packet.helpers import SERVICES, PacketLb, warm_up


@pytest.fixture(scope="session", params=[1, 2], ids=["1worker", "2workers"])
def lb(request):
    require_straitd()
    topo = WireTopology()
    d = wire = None
    rc, log = 0, ""
    try:
        topo.up()
        d = Straitd(topo.lb, topo.workdir, services=SERVICES, workers=request.param)
        d.start()
        wire = Wire(topo.tester, WireTopology.TESTER_IF, ignore=[is_gateway_arp(GATEWAY_IP)])
        handle = PacketLb(topo, d, wire, request.param)
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
