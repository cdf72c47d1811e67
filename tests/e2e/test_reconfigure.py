"""Reconfiguration under load, as users do it: `lbctl backend remove` while
wrk runs (new flows stop going to the backend at once, its established
flows carry on: no request fails), `lbctl backend add` bringing it back,
and health checks taking a dead backend out and back in without a failed
request through the VIP."""

from __future__ import annotations

import re
import subprocess
import time

from tests.lib.netns import ns_cmd
from tests.lib.require import require_lbctl

SERVICE = "web"


def _backends_of(e2e, n: int) -> dict[str, int]:
    seen: dict[str, int] = {}
    for _ in range(n):
        b, _body = e2e.backend_of("/")
        seen[b] = seen.get(b, 0) + 1
    return seen


def _wait(cond, what: str, timeout: float = 15.0, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def test_backend_remove_and_add_under_load(e2e):
    require_lbctl()
    b1, b2 = e2e.topo.backend_ips
    n2 = e2e.topo.nginx[1]
    wrk = subprocess.Popen(
        ns_cmd(e2e.topo.client, ["wrk", "-t2", "-c16", "-d6s", "--timeout", "5s", f"{e2e.url}/"]),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(2)
        e2e.d.lbctl("backend", "remove", SERVICE, f"{b2}:80")
        served_at_remove = n2.requests_served()
        # New connections avoid the removed backend at once.
        seen = _backends_of(e2e, 12)
        assert set(seen) == {b1}, f"new connections after remove went to {seen}"
        listed = e2e.d.lbctl("backend", "list", SERVICE).stdout.decode()
        out, _ = wrk.communicate(timeout=40)
    finally:
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait()
    text = out.decode(errors="replace")
    assert "Socket errors" not in text, text
    assert "Non-2xx" not in text, text
    # wrk's keep-alive connections to the removed backend went on serving.
    assert n2.requests_served() > served_at_remove, "established flows to the removed backend stopped"
    assert b2 in listed, f"a removed backend with live flows should still be listed (draining):\n{listed}"

    e2e.d.lbctl("backend", "add", SERVICE, f"{b2}:80")
    seen = _backends_of(e2e, 30)
    assert set(seen) == {b1, b2}, f"after add: {seen}"
    names = e2e.d.lbctl("backend", "list", SERVICE).stdout.decode()
    assert f"{b2}:80" in names and f"{b1}:80" in names


def test_health_check_takes_dead_backend_out_and_back(e2e):
    b1, b2 = e2e.topo.backend_ips
    n2 = e2e.topo.nginx[1]
    label = {"service": SERVICE, "backend": f"{b2}:80"}

    def up() -> float:
        return e2e.d.metrics().value("strait_backend_up", **label)

    _wait(lambda: up() == 1, f"{b2} healthy at start")
    n2.stop()
    try:
        _wait(lambda: up() == 0, f"{b2} marked down by health checks")
        # Every new connection now lands on the live backend; none fails.
        seen = _backends_of(e2e, 20)
        assert set(seen) == {b1}, seen
    finally:
        n2.start(e2e.topo.payload_path)
        n2.wait_ready()
    _wait(lambda: up() == 1, f"{b2} back up after nginx restarted")
    seen = _backends_of(e2e, 30)
    assert set(seen) == {b1, b2}, seen
    m = e2e.d.metrics()
    assert m.value("strait_service_backends_up", service=SERVICE) == 2
    assert re.search(rf'strait_backend_up{{[^}}]*backend="{re.escape(b2)}:80"', m.text)
