"""The shared-NIC mode end to end: while straitd serves the VIP on lb0,
a kernel TCP server on lb0's own (kernel) address keeps answering clients
over the same link, and the XDP program's counters show both sides: frames
steered to straitd and frames passed to the kernel."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.lib.netns import ns_cmd
from tests.lib.topology import LB_KERNEL_IP

KERNEL_PORT = 8081
ROUNDS = 10


@pytest.fixture
def kernel_server(e2e):
    """A Python HTTP server on lb0's kernel address in straitd's namespace."""
    root = e2e.topo.workdir / "kernel-www"
    root.mkdir(exist_ok=True)
    (root / "hello").write_text("kernel side\n")
    proc = subprocess.Popen(
        ns_cmd(e2e.topo.lb, ["python3", "-m", "http.server", str(KERNEL_PORT), "--bind", LB_KERNEL_IP,
                             "--directory", str(root)]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            r = e2e.topo.client_sh(["curl", "-sS", "--max-time", "2",
                                    f"http://{LB_KERNEL_IP}:{KERNEL_PORT}/hello"], check=False, timeout=10)
            if r.returncode == 0:
                break
            assert proc.poll() is None, "the kernel-side server exited"
            assert time.monotonic() < deadline, f"kernel-side server unreachable: {r.stderr.decode()}"
            time.sleep(0.2)
        yield f"http://{LB_KERNEL_IP}:{KERNEL_PORT}/hello"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.mark.io("xdp")
def test_kernel_server_on_interface_address_keeps_answering(e2e, kernel_server):
    before = e2e.d.metrics()
    for _ in range(ROUNDS):
        backend, body = e2e.backend_of("/")
        assert body.startswith(b"backend "), body[:40]
        r = e2e.curl(kernel_server)
        assert r.stdout == b"kernel side\n"
    after = e2e.d.metrics()

    def grew(verdict: str) -> float:
        return (after.value("strait_xdp_verdicts_total", verdict=verdict) -
                before.value("strait_xdp_verdicts_total", verdict=verdict))

    # Each VIP request is at least SYN, request and ACKs; each kernel one too.
    assert grew("steer_tcp") >= 3 * ROUNDS
    assert grew("pass_ipv4") >= 3 * ROUNDS
    assert grew("drop_no_socket") == 0
    # The kernel's traffic never reached straitd's dataplane.
    assert after.value("strait_drops_total", reason="not_local") == \
        before.value("strait_drops_total", reason="not_local")
