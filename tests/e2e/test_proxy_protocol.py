"""PROXY protocol v2 end to end: nginx behind straitd with `listen ...
proxy_protocol` logs the real client address ($proxy_protocol_addr,
198.51.100.2) rather than the SNAT address, for curl, wrk (keep-alive and a
new connection per request, no errors) and an 8 MiB download and upload
(sha256 intact); a server-speaks-first backend (tests/lib/pp_banner.py)
greets a client that sends nothing first. Each with syn_proxy "off" and
"on", with one worker and two (af_packet; the PROXY logic is the same code
whatever the I/O mode)."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lib.netns import in_netns, ns_cmd
from tests.lib.require import require_straitd
from tests.lib.straitd import Service, Straitd
from tests.lib.topology import CLIENT_IP, VIP, Ec2Topology

PP_PORT = 8080       # nginx's PROXY listener on the backend
BANNER_PORT = 2525   # the banner server on the backend
REPO = Path(__file__).resolve().parents[2]
# VIP ports: (web, banner) without and with SYN cookies.
MODES = {"off": (80, 25), "on": (81, 26)}


class Lab:
    def __init__(self, topo: Ec2Topology, d: Straitd, workers: int) -> None:
        self.topo = topo
        self.d = d
        self.workers = workers

    @property
    def nginx(self):
        return self.topo.nginx[0]

    def curl(self, *args: str, timeout: float = 60.0):
        return self.topo.client_sh(["curl", "-sS", "--max-time", str(int(timeout)), *args], timeout=timeout + 10)

    def pp_lines(self) -> list[str]:
        try:
            return self.nginx.pp_log.read_text().splitlines()
        except FileNotFoundError:
            return []


@pytest.fixture(scope="module", params=[1, 2], ids=["1worker", "2workers"])
def lab(request):
    require_straitd()
    workers = request.param
    topo = Ec2Topology(backends=1, queues=workers)
    d = banner = None
    rc, log = 0, ""
    try:
        topo.up()
        topo.start_backends(proxy_protocol_port=PP_PORT)
        bip = topo.backend_ips[0]
        banner = subprocess.Popen(ns_cmd(topo.backend_ns[0], [sys.executable, "-m", "tests.lib.pp_banner", bip,
                                                              str(BANNER_PORT)]),
                                  cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        assert banner.stdout.readline().strip() == b"ready", "banner server did not start"
        services = []
        for mode, (web, ban) in MODES.items():
            extra = {"proxy_protocol": "v2", "syn_proxy": mode}
            services.append(Service(f"web-{mode}", f"{VIP}:{web}", [f"{bip}:{PP_PORT}"], extra=extra))
            services.append(Service(f"banner-{mode}", f"{VIP}:{ban}", [f"{bip}:{BANNER_PORT}"], extra=extra))
        d = Straitd(topo.lb, topo.workdir, services=services, workers=workers)
        d.start()
        lab = Lab(topo, d, workers)
        deadline = time.monotonic() + 30
        while True:  # the first SYN may meet an unresolved gateway
            r = topo.client_sh(["curl", "-sS", "--max-time", "3", f"http://{VIP}:80/"], check=False, timeout=10)
            if r.returncode == 0 and r.stdout.startswith(b"backend "):
                break
            assert time.monotonic() < deadline, f"no answer through the VIP; log:\n{d.log_tail()}"
        yield lab
    finally:
        if banner is not None:
            os.killpg(banner.pid, signal.SIGKILL)
            banner.wait(timeout=10)
        if d is not None:
            rc = d.stop()
            log = d.log_tail(60)
        topo.down()
    assert rc == 0, f"straitd exited {rc} on SIGTERM; log:\n{log}"


@pytest.mark.parametrize("mode", MODES)
def test_curl_logs_the_client_address(lab, mode):
    web = MODES[mode][0]
    before = len(lab.pp_lines())
    for i in range(5):
        r = lab.curl("-A", f"pp-curl-{i}", f"http://{VIP}:{web}/")
        assert r.stdout.startswith(b"backend "), r.stdout
    lines = [ln for ln in lab.pp_lines()[before:] if "GET / " in ln]
    assert len(lines) == 5, lines
    # "$proxy_protocol_addr:$proxy_protocol_port $remote_addr ...": the
    # client as the header names it, the SNAT address as the socket does.
    for ln in lines:
        assert ln.startswith(CLIENT_IP + ":"), ln
        assert ln.split()[1] == VIP, ln


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("keepalive", [True, False], ids=["keepalive", "close"])
def test_wrk_without_errors(lab, mode, keepalive):
    web = MODES[mode][0]
    before = len(lab.pp_lines())
    args = ["wrk", "-t", "2", "-c", "8", "-d", "3s", "--timeout", "5s"]
    if not keepalive:
        args += ["-H", "Connection: close"]
    r = lab.topo.client_sh(args + [f"http://{VIP}:{web}/"], timeout=40)
    out = r.stdout.decode(errors="replace")
    m = re.search(r"(\d+) requests in", out)
    assert m, out
    assert "Socket errors" not in out, out
    assert "Non-2xx" not in out, out
    requests = int(m.group(1))
    assert requests > 50, out
    lines = lab.pp_lines()[before:]
    # wrk may have a few requests in flight when it stops.
    assert len(lines) >= requests, (len(lines), requests)
    wrong = [ln for ln in lines if not ln.startswith(CLIENT_IP + ":")]
    assert not wrong, wrong[:3]


@pytest.mark.parametrize("mode", MODES)
def test_large_download_and_upload_intact(lab, mode, tmp_path):
    web = MODES[mode][0]
    r = lab.curl("-o", "-", f"http://{VIP}:{web}/big.bin")
    assert len(r.stdout) == lab.topo.payload_size == 8 << 20
    assert hashlib.sha256(r.stdout).hexdigest() == lab.topo.payload_sha256
    data = os.urandom(8 << 20)
    src = tmp_path / "upload.bin"
    src.write_bytes(data)
    name = f"pp-{lab.workers}-{mode}.bin"
    r = lab.curl("-o", "/dev/null", "-w", "%{http_code}", "-T", str(src), f"http://{VIP}:{web}/upload/{name}")
    assert r.stdout.decode() in ("201", "204"), r.stdout
    stored = lab.nginx.root / "www" / "upload" / name
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    last = [ln for ln in lab.pp_lines() if f"/upload/{name}" in ln]
    assert last and last[-1].startswith(CLIENT_IP + ":"), last


@pytest.mark.parametrize("mode", MODES)
def test_server_speaks_first(lab, mode):
    """The client sends nothing until it has the banner: the header must
    reach the backend with the handshake, not with client data."""
    ban = MODES[mode][1]
    for _ in range(3):
        with in_netns(lab.topo.client):
            s = socket.create_connection((VIP, ban), timeout=10)
        with s:
            s.settimeout(10)
            port = s.getsockname()[1]
            greeting = b""
            while not greeting.endswith(b"\r\n"):
                chunk = s.recv(256)
                assert chunk, f"closed after {greeting!r}"
                greeting += chunk
            assert greeting == f"220 {CLIENT_IP}:{port}\r\n".encode()
            s.sendall(b"QUIT\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = s.recv(256)
                assert chunk, f"closed after {reply!r}"
                reply += chunk
            assert reply == b"250 QUIT\r\n"


def test_counters(lab):
    m = lab.d.metrics()
    assert m.value("strait_proxy_protocol_headers_total") >= m.value("strait_flows_created_total") > 0
    for reason in ("malformed", "proxy_header_no_room", "bad_checksum", "tx_full", "handoff_full"):
        assert m.value("strait_drops_total", reason=reason) == 0, reason
