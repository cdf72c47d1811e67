"""Real clients and servers through straitd: HTTP requests over fresh
connections spread over both nginx backends, multi-megabyte payloads both
ways compared by sha256, a bounded wrk run with no socket errors served by
both backends, and the counters those leave in /metrics."""

from __future__ import annotations

import hashlib
import os
import re

from tests.lib.topology import LB_IP
from tests.lib.netns import ns_sh

REQUESTS = 30


def test_requests_spread_over_backends(e2e):
    seen = {}
    for _ in range(REQUESTS):
        backend, body = e2e.backend_of("/")
        assert backend in e2e.topo.backend_ips, f"answer from {backend!r}"
        assert body == f"backend {backend}\n".encode()
        seen[backend] = seen.get(backend, 0) + 1
    # Maglev over two equal backends: 30 connections all to one backend
    # would happen with probability 2^-29 if the hash spreads at all.
    assert set(seen) == set(e2e.topo.backend_ips), f"backends used: {seen}"


def test_backends_see_the_snat_address(e2e):
    """Full NAT: the backend sees straitd's SNAT address, not the client."""
    n = e2e.topo.nginx[0]
    before = n.requests_served()
    for _ in range(10):
        e2e.backend_of("/")
    # Health checks reach the backend from the management address; only
    # the client's requests count here.
    lines = [ln for ln in n.log.read_text().splitlines()[before:] if '"curl/' in ln]
    assert lines, "backend 1 served none of 10 requests"
    assert all(line.startswith(LB_IP + " ") for line in lines), lines[:3]


def test_large_download_intact(e2e):
    for _ in range(3):
        r = e2e.curl("-o", "-", f"{e2e.url}/big.bin", timeout=60)
        assert len(r.stdout) == e2e.topo.payload_size
        assert hashlib.sha256(r.stdout).hexdigest() == e2e.topo.payload_sha256


def test_large_upload_intact(e2e, tmp_path):
    data = os.urandom(6 << 20)
    src = tmp_path / "upload.bin"
    src.write_bytes(data)
    name = f"up-{e2e.workers}-{os.getpid()}.bin"
    r = e2e.curl("-o", "/dev/null", "-w", "%{http_code}", "-T", str(src),
                 f"{e2e.url}/upload/{name}", timeout=60)
    assert r.stdout.decode() in ("201", "204"), f"PUT answered {r.stdout!r}"
    stored = [n.root / "www" / "upload" / name for n in e2e.topo.nginx]
    stored = [p for p in stored if p.exists()]
    assert len(stored) == 1, f"upload stored on {len(stored)} backends"
    assert hashlib.sha256(stored[0].read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


def _wrk(e2e, seconds: int = 5, conns: int = 16, threads: int = 2) -> dict:
    r = e2e.topo.client_sh(["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{seconds}s",
                            "--timeout", "5s", f"{e2e.url}/"], timeout=seconds + 30)
    out = r.stdout.decode(errors="replace")
    m = re.search(r"(\d+) requests in", out)
    assert m, out
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests": int(m.group(1)),
            "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "output": out}


def test_wrk_without_errors_on_both_backends(e2e):
    before = [n.requests_served() for n in e2e.topo.nginx]
    res = _wrk(e2e)
    served = [n.requests_served() - b for n, b in zip(e2e.topo.nginx, before)]
    assert res["socket_errors"] == 0, res["output"]
    assert res["non2xx"] == 0, res["output"]
    assert res["requests"] > 100, res["output"]
    assert all(s > 0 for s in served), f"requests per backend {served}"
    # Every completed request was served by one of the backends (wrk may
    # have a few in flight when it stops).
    assert sum(served) >= res["requests"]


def test_metrics_after_traffic(e2e):
    m = e2e.d.metrics()
    assert m.value("strait_flows_created_total") > 0
    assert m.value("strait_rx_packets_total") > 0
    assert m.value("strait_tx_packets_total") > 0
    for ip in e2e.topo.backend_ips:
        assert m.value("strait_backend_flows_total", service="web", backend=f"{ip}:80") > 0, ip
        assert m.value("strait_backend_up", service="web", backend=f"{ip}:80") == 1
    assert len(m.series("strait_rx_packets_total")) == e2e.workers
    # Nothing in this tier should be dropped for a reason that means a bug.
    for reason in ("malformed", "no_backend", "flow_table_full", "snat_ports_exhausted",
                   "snat_pools_exhausted", "tx_full", "handoff_full"):
        assert m.value("strait_drops_total", reason=reason) == 0, reason


def test_ping_vip(e2e):
    r = e2e.topo.client_sh(["ping", "-c", "3", "-i", "0.2", "-W", "2", LB_IP], check=False)
    assert r.returncode == 0, r.stdout.decode()
    assert " 0% packet loss" in r.stdout.decode()


def test_management_link_health_path(e2e):
    """straitd's kernel side reaches the backends over the management link
    (where health checks go), never through lb0."""
    ip = e2e.topo.backend_ips[0]
    r = ns_sh(e2e.topo.lb, ["curl", "-sS", "--max-time", "5", f"http://{ip}/"])
    assert r.stdout.decode().strip() == f"backend {ip}"
