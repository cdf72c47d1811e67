"""The end-to-end tier's fixture: the EC2-like topology (client, router,
straitd one-armed, two nginx backends) with a real straitd in front of the
backends, once with one worker and once with two (session scope: pytest
runs every case against one, then the other)."""

from __future__ import annotations

import time

import pytest

from tests.lib.require import require_straitd
from tests.lib.straitd import Service, Straitd
from tests.lib.topology import VIP, Ec2Topology

SERVICE = "web"


class E2E:
    def __init__(self, topo: Ec2Topology, d: Straitd, workers: int) -> None:
        self.topo = topo
        self.d = d
        self.workers = workers
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


@pytest.fixture(scope="session", params=[1, 2], ids=["1worker", "2workers"])
def e2e(request):
    require_straitd()
    topo = Ec2Topology(backends=2, mgmt=True)
    d = None
    rc, log = 0, ""
    try:
        topo.up()
        topo.start_backends()
        # HTTP health checks over the management link, as deployed; the
        # failure cases are in test_health.py, on a lab of their own.
        svc = Service(SERVICE, f"{VIP}:80", [f"{ip}:80" for ip in topo.backend_ips],
                      extra={"health_check": {"type": "http", "interval_ms": 1000}})
        d = Straitd(topo.lb, topo.workdir, services=[svc], workers=request.param)
        d.start()
        e = E2E(topo, d, request.param)
        _wait_vip(e)
        yield e
    finally:
        if d is not None:
            rc = d.stop()
            log = d.log_tail(60)
        topo.down()
    assert rc == 0, f"straitd exited {rc} on SIGTERM; log:\n{log}"
