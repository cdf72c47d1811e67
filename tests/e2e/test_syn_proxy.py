"""Real clients through a service with syn_proxy = "on" (every connection
opened by a SYN cookie, its sequence numbers, timestamps and windows
translated for its whole life): an 8 MiB download compared by sha256, fresh
connections that all succeed, keep-alive wrk with no errors, and the
cookie counters those leave; a service added with lbctl --syn-proxy on
works the same and shows in config show. With 1 and 2 workers (the cookie
ACK lands on whatever worker the NIC picks, and the flow must be created
where the backend's replies arrive)."""

from __future__ import annotations

import hashlib
import re

from tests.e2e.conftest import GUARD_PORT
from tests.lib.topology import VIP

FRESH = 20


def _cookie_counters(e2e):
    m = e2e.d.metrics()
    return {k: m.value(f"strait_syn_cookies_{k}_total") for k in ("sent", "validated")}


def test_download_intact_through_cookies(e2e):
    before = _cookie_counters(e2e)
    for _ in range(2):
        r = e2e.curl("-o", "-", f"http://{VIP}:{GUARD_PORT}/big.bin", timeout=60)
        assert len(r.stdout) == e2e.topo.payload_size == 8 << 20
        assert hashlib.sha256(r.stdout).hexdigest() == e2e.topo.payload_sha256
    after = _cookie_counters(e2e)
    assert after["sent"] - before["sent"] >= 2
    assert after["validated"] - before["validated"] == 2


def test_fresh_connections_all_succeed(e2e):
    before = _cookie_counters(e2e)
    m0 = e2e.d.metrics()
    for _ in range(FRESH):
        r = e2e.curl("-o", "-", f"http://{VIP}:{GUARD_PORT}/")
        assert r.stdout.startswith(b"backend "), r.stdout[:80]
    after = _cookie_counters(e2e)
    assert after["validated"] - before["validated"] == FRESH
    m1 = e2e.d.metrics()
    for reason in ("syn_cookie_invalid", "syn_cookie_stale", "syn_proxy_pending", "bad_checksum"):
        assert m1.value("strait_drops_total", reason=reason) == m0.value("strait_drops_total", reason=reason), reason


def test_wrk_through_cookies_without_errors(e2e):
    before = _cookie_counters(e2e)
    r = e2e.topo.client_sh(["wrk", "-t", "2", "-c", "16", "-d", "5s", "--timeout", "5s",
                            f"http://{VIP}:{GUARD_PORT}/"], timeout=40)
    out = r.stdout.decode(errors="replace")
    m = re.search(r"(\d+) requests in", out)
    assert m and int(m.group(1)) > 100, out
    assert "Socket errors" not in out, out
    assert "Non-2xx" not in out, out
    # wrk's 16 keep-alive connections each opened through a cookie.
    assert _cookie_counters(e2e)["validated"] - before["validated"] >= 16


def _ctl_json(e2e, *args):
    reply = e2e.d.lbctl_json(*args)
    assert reply["ok"] is True, reply
    return reply["result"]


def test_lbctl_service_add_with_syn_proxy(e2e):
    port = 8081
    e2e.d.lbctl("service", "add", "guard2", "--listen", f"{VIP}:{port}", "--protocol", "tcp",
                "--syn-proxy", "on")
    try:
        e2e.d.lbctl("backend", "add", "guard2", f"{e2e.topo.backend_ips[0]}:80")
        svc = [s for s in _ctl_json(e2e, "service", "list")["services"] if s["name"] == "guard2"][0]
        assert svc["syn_proxy"] == "on"
        assert 'syn_proxy = "on"' in e2e.d.lbctl("config", "show").stdout.decode()
        before = _cookie_counters(e2e)
        r = e2e.curl("-o", "-", f"http://{VIP}:{port}/")
        assert r.stdout == f"backend {e2e.topo.backend_ips[0]}\n".encode()
        assert _cookie_counters(e2e)["validated"] - before["validated"] == 1
        stats = _ctl_json(e2e, "stats")
        assert stats["syn_cookies"]["validated"] >= 1
        assert len(stats["workers"]) == e2e.workers
    finally:
        e2e.d.lbctl("service", "remove", "guard2")
