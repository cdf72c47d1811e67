"""An `mtu` the port cannot carry is refused when straitd sets the port up,
before it forwards anything: DPDK 22.11's net_af_packet has a maximum frame
of 1518 bytes, so `mtu = 9001` must end straitd with a non-zero exit and an
error naming the device's limit (docs/dataplane.md). Uses its own topology,
not the session's straitd.
"""

from __future__ import annotations

import pytest

from tests.lib.netns import CommandError
from tests.lib.require import require_straitd
from tests.lib.straitd import Straitd
from tests.lib.topology import WireTopology
from tests.packet.helpers import SERVICES


def test_jumbo_mtu_on_af_packet_is_refused_with_the_ports_limit():
    require_straitd()
    topo = WireTopology()
    d = None
    try:
        topo.up()
        d = Straitd(topo.lb, topo.workdir, services=SERVICES, workers=1, interface={"mtu": 9001})
        with pytest.raises(CommandError) as err:
            d.start(timeout=30)
        assert d.proc is not None and d.proc.returncode not in (None, 0)
        log = d.log_tail(20)
        assert "mtu 9001 needs frames of 9019 bytes" in log, log
        assert "maximum frame is 1518 bytes" in log, log
        assert "set mtu <= 1500" in log, log
        assert "exited" in str(err.value)
    finally:
        if d is not None and d.alive():
            d.stop()
        topo.down()
