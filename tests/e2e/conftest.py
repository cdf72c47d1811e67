"""The end-to-end tier's fixture: the EC2-like topology (client, router,
straitd one-armed, two nginx backends) with a real straitd in front of the
backends (service "web", and "guard": the same backends with syn_proxy =
"on"), with one worker and with two, in both I/O modes (af_packet, and
xdp: the shared-NIC mode). Session scope: pytest runs every case against
one combination, then the next. STRAIT_TEST_IO restricts the I/O modes."""

from __future__ import annotations

import time

import pytest

from tests.lib.require import require_straitd
from tests.lib.straitd import Service, Straitd
from tests.e2e.topology_checks import check_topology
from tests.lib.topology import VIP, Ec2Topology, io_modes

SERVICE = "web"
# The same backends behind SYN cookies (tests/e2e/test_syn_proxy.py).
GUARD_SERVICE, GUARD_PORT = "guard", 8080


class E2E:
    def __init__(self, topo: Ec2Topology, d: Straitd, workers: int, io: str = "af_packet") -> None:
        self.topo = topo
        self.d = d
        self.workers = workers
        self.io = io
        self.url = f"http://{VIP}"

    def curl(self, *args: str, timeout: float = 30.0):
        """curl in the client namespace; raises with curl's message on failure."""
        return self.topo.client_sh(["curl", "-sS", "--max-time", str(int(timeout)), *args],
                                   timeout=timeout + 10)

    def backend_of(self, path: str = "/") -> tuple[str, bytes]:
        """One fresh connection: (X-Backend header, body)."""
        r = self.curl("-D", "/dev/stderr", "-o", "-", f"{self.url}{path}")
        headers = r.stderr.decode(errors="replace")
        status = headers.splitlines()[0] if headers else ""
        assert " 200 " in status, f"status {status!r}"
        backend = ""
        for line in headers.splitlines():
            if line.lower().startswith("x-backend:"):
                backend = line.split(":", 1)[1].strip()
        return backend, r.stdout


def _wait_backends_up(e: E2E, timeout: float = 30.0) -> None:
    """With a health check a backend is `initial` until its first passing
    checks and takes no new flow before: wait for every one to be up, so
    no test SYN meets a service without a backend (a counted drop)."""
    deadline = time.monotonic() + timeout
    while True:
        backends = e.d.lbctl_json("backend", "list", SERVICE)["result"]["backends"]
        if backends and all(b["health"] == "up" for b in backends):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"backends not up within {timeout}s: {backends}; log:\n{e.d.log_tail()}")
        time.sleep(0.2)


def _wait_vip(e: E2E, timeout: float = 30.0) -> None:
    """The first SYN may meet an unresolved gateway (a counted drop) and
    the client retransmits after a second; wait until a request goes through."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        r = e.topo.client_sh(["curl", "-sS", "--max-time", "3", f"{e.url}/"], check=False, timeout=10)
        if r.returncode == 0 and r.stdout.startswith(b"backend "):
            return
        last = r.stderr.decode(errors="replace")
    raise AssertionError(f"no answer through the VIP within {timeout}s ({last.strip()}); "
                         f"straitd log:\n{e.d.log_tail()}")


# The xdp mode runs with one worker only: DPDK 22.11's net_af_xdp binds no
# more queues than the device's combined channels, and a veth has none (the
# PMD counts it as one), so two workers on a veth are refused at start-up
# (tests/packet/test_xdp_lifecycle.py checks that message).
PARAMS = [(w, io) for io in io_modes() for w in ((1, 2) if io == "af_packet" else (1,))]


@pytest.fixture(scope="session", params=PARAMS,
                ids=[f"{w}worker{'s' if w > 1 else ''}-{io}" for w, io in PARAMS])
def e2e(request):
    require_straitd()
    workers, io = request.param
    topo = Ec2Topology(backends=2, mgmt=True, io=io, queues=workers)
    d = None
    rc, log = 0, ""
    try:
        topo.up()
        topo.start_backends()
        check_topology(topo)  # before straitd: nothing may answer for the VIP yet
        # HTTP health checks over the management link, as deployed; the
        # failure cases are in test_health.py, on a lab of their own.
        svc = Service(SERVICE, f"{VIP}:80", [f"{ip}:80" for ip in topo.backend_ips],
                      extra={"health_check": {"type": "http", "interval_ms": 1000}})
        guard = Service(GUARD_SERVICE, f"{VIP}:{GUARD_PORT}", [f"{ip}:80" for ip in topo.backend_ips],
                        extra={"syn_proxy": "on"})
        d = Straitd(topo.lb, topo.workdir, services=[svc, guard], workers=workers, io=io)
        d.start()
        e = E2E(topo, d, workers, io)
        _wait_backends_up(e)
        _wait_vip(e)
        yield e
    finally:
        if d is not None:
            rc = d.stop()
            log = d.log_tail(60)
        topo.down()
    assert rc == 0, f"straitd exited {rc} on SIGTERM; log:\n{log}"
