"""Health checks through the kernel stack, end to end.

straitd's probes are kernel sockets in its own namespace; they reach the
backends over the management veth (lb0 has no kernel address). Two
services share the two nginx backends: `web` (VIP 192.0.2.10:80) with an
HTTP check of /healthz, `webtcp` (VIP 192.0.2.11:80) with a TCP connect
check, both every INTERVAL_MS with TIMEOUT_MS, RISE and FALL.

Checked, with the detection times measured and printed (pytest -s):

* nginx stopped in one backend: both services mark it down within
  FALL x interval + timeout (+ MARGIN_S for scheduling and polling); from
  then on it gets no new flow (its flow counter stands still) and no new
  connection through either VIP fails; after nginx restarts it is up again
  within RISE x interval + MARGIN_S and takes new connections;
* /healthz answering 404 takes a backend out of the HTTP-checked service
  only (the TCP check still passes), while nginx keeps serving;
* every backend of a service down: the service fails open (metric
  strait_service_fail_open, lbctl's warning and JSON field) and new
  connections still reach every backend;
* a backend that joins a checked service is `initial` (lbctl, metric
  strait_backend_initial) and takes no new flow until its first passing
  checks, like an NLB target: one with nothing listening never does.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.ctl_helpers import (Lab, TinyHttpServer, backends_by_address, lab_fixture_body,
                                   sample_new_connections, svc, wait_for, wait_picked_up)
from tests.lib.require import require_lbctl, require_straitd
from tests.lib.topology import VIP, VIP2

INTERVAL_MS = 300
TIMEOUT_MS = 250
RISE = 2
FALL = 3
MARGIN_S = 1.5
DOWN_BOUND_S = (FALL * INTERVAL_MS + TIMEOUT_MS) / 1000 + MARGIN_S
UP_BOUND_S = (RISE * INTERVAL_MS + TIMEOUT_MS) / 1000 + MARGIN_S

HTTP_SVC, TCP_SVC = "web", "webtcp"
# A service whose one backend is a TinyHttpServer on backend 1, port 81,
# probed with a long timeout: a server that closes without answering must
# count as a failed probe at once, not after the timeout.
CLOSER_SVC, CLOSER_PORT, CLOSER_MS = "closer", 81, 2000


def healthz(topo, i: int):
    return topo.nginx[i].root / "www" / "healthz"


def _make_healthz(topo) -> None:
    for i in range(len(topo.nginx)):
        healthz(topo, i).write_text("ok\n")


def _before_start(topo) -> None:
    _make_healthz(topo)
    server = TinyHttpServer(topo.backend_ns[0], topo.backend_ips[0], CLOSER_PORT)
    topo.cleanup.push("tiny http server", server.stop)
    topo.closer = server


@pytest.fixture(scope="module")
def lab():
    require_straitd()
    require_lbctl()

    def check(kind: str) -> dict:
        c = {"type": kind, "interval_ms": INTERVAL_MS, "timeout_ms": TIMEOUT_MS,
             "rise": RISE, "fall": FALL}
        if kind == "http":
            c["http_path"] = "/healthz"
        return c

    yield from lab_fixture_body(Lab(
        backends=2, workers=1, before_start=_before_start,
        services=lambda t: [
            svc(HTTP_SVC, f"{VIP}:80", [f"{ip}:80" for ip in t.backend_ips], health_check=check("http")),
            svc(TCP_SVC, f"{VIP2}:80", [f"{ip}:80" for ip in t.backend_ips], health_check=check("tcp")),
            svc(CLOSER_SVC, f"{VIP2}:{CLOSER_PORT}", [f"{t.backend_ips[0]}:{CLOSER_PORT}"],
                health_check={**check("http"), "interval_ms": CLOSER_MS, "timeout_ms": CLOSER_MS,
                              "rise": 1, "fall": 1}),
        ]))


def health(lab: Lab, service: str, ip: str) -> str:
    return backends_by_address(lab.sock, service)[f"{ip}:80"]["health"]


def all_up(lab: Lab) -> bool:
    return all(health(lab, s, ip) == "up" for s in (HTTP_SVC, TCP_SVC) for ip in lab.topo.backend_ips)


@pytest.fixture
def healthy(lab):
    """Every backend serving and up in both services, before and after."""
    _make_healthz(lab.topo)
    for n in lab.topo.nginx:
        if n.proc is None or n.proc.poll() is not None:
            n.start(lab.topo.payload_path)
            n.wait_ready()
    wait_for(lambda: all_up(lab), "every backend up", 15, every=0.1)
    yield lab
    _make_healthz(lab.topo)
    for n in lab.topo.nginx:
        if n.proc is None or n.proc.poll() is not None:
            n.start(lab.topo.payload_path)
            n.wait_ready()


def time_until(cond, timeout: float, every: float = 0.05) -> float:
    """Seconds until `cond()` holds (polled every `every` s); raises after `timeout`."""
    t0 = time.monotonic()
    wait_for(cond, "health state change", timeout, every)
    return time.monotonic() - t0


def test_dead_backend_marked_down_gets_no_flows_and_comes_back(healthy, record_property):
    lab = healthy
    b1, b2 = lab.topo.backend_ips
    n2 = lab.topo.nginx[1]

    t0 = time.monotonic()
    n2.stop()
    stop_s = time.monotonic() - t0
    down = {}
    deadline = t0 + DOWN_BOUND_S + 5
    while len(down) < 2 and time.monotonic() < deadline:
        for s in (HTTP_SVC, TCP_SVC):
            if s not in down and health(lab, s, b2) == "down":
                down[s] = time.monotonic() - t0
        time.sleep(0.05)
    assert len(down) == 2, f"{b2} not marked down in {set((HTTP_SVC, TCP_SVC)) - set(down)} " \
                           f"within {DOWN_BOUND_S + 5:.1f}s; log:\n{lab.log_tail()}"
    wait_picked_up(lab.sock)
    flows_at_down = lab.d.metrics().value("strait_backend_flows_total", service=HTTP_SVC, backend=f"{b2}:80")
    assert health(lab, HTTP_SVC, b1) == "up" and health(lab, TCP_SVC, b1) == "up"

    # No new connection reaches the dead backend, none fails.
    s_http = sample_new_connections(lab.topo.client, 30, host=VIP)
    s_tcp = sample_new_connections(lab.topo.client, 30, host=VIP2)
    m = lab.d.metrics()
    assert not s_http.failures and not s_tcp.failures, (s_http.failures[:3], s_tcp.failures[:3])
    assert set(s_http.counts) == {b1} and set(s_tcp.counts) == {b1}, (s_http.counts, s_tcp.counts)
    assert m.value("strait_backend_flows_total", service=HTTP_SVC, backend=f"{b2}:80") == flows_at_down
    assert m.value("strait_backend_up", service=HTTP_SVC, backend=f"{b2}:80") == 0
    assert m.value("strait_service_backends_up", service=HTTP_SVC) == 1
    assert m.value("strait_service_fail_open", service=HTTP_SVC) == 0

    t1 = time.monotonic()
    n2.start(lab.topo.payload_path)
    n2.wait_ready()
    ready_s = time.monotonic() - t1
    up = {}
    deadline = time.monotonic() + UP_BOUND_S + 5
    while len(up) < 2 and time.monotonic() < deadline:
        for s in (HTTP_SVC, TCP_SVC):
            if s not in up and health(lab, s, b2) == "up":
                up[s] = time.monotonic() - t1 - ready_s
        time.sleep(0.05)
    text = (f"health (interval {INTERVAL_MS} ms, timeout {TIMEOUT_MS} ms, fall {FALL}, rise {RISE}): "
            f"nginx stopped in {stop_s:.2f}s; marked down after {down[HTTP_SVC]:.2f}s (http) "
            f"{down[TCP_SVC]:.2f}s (tcp), bound {DOWN_BOUND_S:.2f}s; "
            f"back up {up.get(HTTP_SVC, float('nan')):.2f}s (http) {up.get(TCP_SVC, float('nan')):.2f}s (tcp) "
            f"after nginx answered again, bound {UP_BOUND_S:.2f}s")
    print(text)
    record_property("health_timing", text)
    assert len(up) == 2, f"{b2} not back up within {UP_BOUND_S + 5:.1f}s: {up}; log:\n{lab.log_tail()}"
    for s in (HTTP_SVC, TCP_SVC):
        assert down[s] <= DOWN_BOUND_S, text
        assert up[s] <= UP_BOUND_S, text
    # Down needs FALL failed probes INTERVAL_MS apart: never faster than that.
    assert min(down.values()) >= (FALL - 1) * INTERVAL_MS / 1000 - 0.1, text

    wait_picked_up(lab.sock)
    s = sample_new_connections(lab.topo.client, 40)
    assert not s.failures and set(s.counts) == {b1, b2}, (s.counts, s.failures[:3])


def test_http_status_check_is_per_service(healthy):
    lab = healthy
    b1, b2 = lab.topo.backend_ips
    healthz(lab.topo, 1).unlink()       # nginx answers 404 for it now
    wait_for(lambda: health(lab, HTTP_SVC, b2) == "down", f"{b2} down in {HTTP_SVC}", DOWN_BOUND_S + 2)
    # The TCP check still passes: b2 stays up there (give it the same time).
    time.sleep(FALL * INTERVAL_MS / 1000)
    assert health(lab, TCP_SVC, b2) == "up"
    listed = lab.lbctl("backend", "list", HTTP_SVC).stdout.decode()
    assert any(line.startswith(f"{b2}:80") and " down " in line for line in listed.splitlines()), listed
    served = lab.topo.nginx[1].requests_served()
    wait_picked_up(lab.sock)
    s_http = sample_new_connections(lab.topo.client, 30, host=VIP)
    assert not s_http.failures and set(s_http.counts) == {b1}, (s_http.counts, s_http.failures[:3])
    s_tcp = sample_new_connections(lab.topo.client, 40, host=VIP2)
    assert not s_tcp.failures and set(s_tcp.counts) == {b1, b2}, (s_tcp.counts, s_tcp.failures[:3])
    # b2's nginx served the TCP service's connections and its own health
    # probes, but nothing for the HTTP service's VIP.
    assert lab.topo.nginx[1].requests_served() > served
    healthz(lab.topo, 1).write_text("ok\n")
    wait_for(lambda: health(lab, HTTP_SVC, b2) == "up", f"{b2} up again", UP_BOUND_S + 2)


def test_all_backends_down_fails_open(healthy, record_property):
    lab = healthy
    b1, b2 = lab.topo.backend_ips
    for i in range(2):
        healthz(lab.topo, i).unlink()
    wait_for(lambda: all(health(lab, HTTP_SVC, ip) == "down" for ip in (b1, b2)),
             "both backends down", DOWN_BOUND_S + 2)
    wait_picked_up(lab.sock)
    m = lab.d.metrics()
    assert m.value("strait_service_fail_open", service=HTTP_SVC) == 1
    assert m.value("strait_service_fail_open", service=TCP_SVC) == 0
    assert m.value("strait_service_backends_up", service=HTTP_SVC) == 0
    listed = lab.lbctl("backend", "list", HTTP_SVC).stdout.decode()
    assert "failing open" in listed, listed
    assert lab.d.lbctl_json("backend", "list", HTTP_SVC)["result"]["fail_open"] is True
    services = lab.lbctl("service", "list").stdout.decode()
    web_line = next(line for line in services.splitlines() if line.startswith(HTTP_SVC + " "))
    assert "FAIL OPEN" in web_line, services
    # Failing open: new connections still spread over every backend.
    s = sample_new_connections(lab.topo.client, 40)
    record_property("fail_open", f"all down: 40 new connections -> {dict(s.counts)}, "
                                 f"{len(s.failures)} failed")
    print(f"fail open: 40 new connections with every backend down -> {dict(s.counts)}")
    assert not s.failures and set(s.counts) == {b1, b2}, (s.counts, s.failures[:3])

    healthz(lab.topo, 0).write_text("ok\n")
    wait_for(lambda: health(lab, HTTP_SVC, b1) == "up", f"{b1} up again", UP_BOUND_S + 2)
    wait_picked_up(lab.sock)
    m = lab.d.metrics()
    assert m.value("strait_service_fail_open", service=HTTP_SVC) == 0
    assert lab.d.lbctl_json("backend", "list", HTTP_SVC)["result"]["fail_open"] is False
    s = sample_new_connections(lab.topo.client, 30)
    assert not s.failures and set(s.counts) == {b1}, (s.counts, s.failures[:3])


def test_http_check_fails_at_once_when_the_server_closes_without_answer(lab, record_property):
    server = lab.topo.closer
    addr = f"{lab.topo.backend_ips[0]}:{CLOSER_PORT}"
    state = lambda: backends_by_address(lab.sock, CLOSER_SVC)[addr]["health"]  # noqa: E731
    server.mode = "ok"
    wait_for(lambda: state() == "up", "closer backend up", 10, every=0.1)
    t0 = time.monotonic()
    server.mode = "close"
    try:
        wait_for(lambda: state() == "down", "closer backend down", 3 * CLOSER_MS / 1000 + 5, every=0.02)
        t_down = time.monotonic()
    finally:
        server.mode = "ok"
    probe = min(t for t, mode in server.accepts if t >= t0 and mode == "close")
    took = t_down - probe
    text = (f"HTTP check (fall 1, timeout {CLOSER_MS} ms) against a server that closes without "
            f"answering: down {took:.2f}s after the probe was accepted")
    print(text)
    record_property("health_eof", text)
    # The close is the answer: waiting for the timeout would take 2 s.
    assert took <= 0.7, text
    wait_for(lambda: state() == "up", "closer backend up again", 3 * CLOSER_MS / 1000 + 5, every=0.1)


def test_backend_added_at_runtime_is_checked(healthy, record_property):
    """A backend added by lbctl is probed at once; a dead one is out within
    the same bound, and from then on no new connection fails."""
    lab = healthy
    b1, b2 = lab.topo.backend_ips
    dead = "203.0.113.77"   # nothing there: probes time out
    t0 = time.monotonic()
    lab.lbctl("backend", "add", HTTP_SVC, f"{dead}:80")
    try:
        wait_for(lambda: health(lab, HTTP_SVC, dead) == "down", f"{dead} down", DOWN_BOUND_S + 3)
        took = time.monotonic() - t0
        text = f"dead backend added at runtime: marked down {took:.2f}s after lbctl backend add"
        print(text)
        record_property("health_added", text)
        assert took <= DOWN_BOUND_S, text
        wait_picked_up(lab.sock)
        s = sample_new_connections(lab.topo.client, 30)
        assert not s.failures and set(s.counts) == {b1, b2}, (s.counts, s.failures[:3])
    finally:
        lab.lbctl("backend", "remove", HTTP_SVC, f"{dead}:80", "--flush")
    wait_for(lambda: f"{dead}:80" not in backends_by_address(lab.sock, HTTP_SVC), "dead backend gone", 15)


def test_service_added_by_lbctl_carries_its_health_check(healthy, record_property):
    """`lbctl service add ... --health tcp ...` gives a service added at
    runtime its own check: a dead backend of it goes down, a live one stays
    up, and `config show` renders the check back."""
    lab = healthy
    b1, _ = lab.topo.backend_ips
    dead = "203.0.113.78"   # nothing there: connects time out
    svc = "runtime"
    lab.lbctl("service", "add", svc, "--listen", f"{VIP}:81", "--protocol", "tcp",
              "--health", "tcp", "--health-interval", str(INTERVAL_MS), "--health-timeout", str(TIMEOUT_MS),
              "--health-rise", str(RISE), "--health-fall", str(FALL))
    try:
        t0 = time.monotonic()
        lab.lbctl("backend", "add", svc, f"{b1}:80")
        lab.lbctl("backend", "add", svc, f"{dead}:80")
        wait_for(lambda: health(lab, svc, dead) == "down", f"{dead} down", DOWN_BOUND_S + 3)
        took = time.monotonic() - t0
        text = f"service added by lbctl: dead backend marked down {took:.2f}s after it was added"
        print(text)
        record_property("health_lbctl_service", text)
        assert took <= DOWN_BOUND_S, text
        # A joining backend is `initial` until its first `rise` passes.
        wait_for(lambda: health(lab, svc, b1) == "up", f"{b1} up", UP_BOUND_S + 3)
        shown = lab.lbctl("config", "show").stdout.decode()
        block = shown[shown.index(f'name = "{svc}"'):]
        assert 'type = "tcp"' in block and f"interval_ms = {INTERVAL_MS}" in block, block[:600]
        bad = lab.lbctl("service", "add", "bad", "--listen", f"{VIP}:82", "--protocol", "tcp",
                        "--health", "tcp", "--health-interval", "200", "--health-timeout", "500", check=False)
        err = bad.stderr.decode() if isinstance(bad.stderr, bytes) else (bad.stderr or "")
        out = bad.stdout.decode() if isinstance(bad.stdout, bytes) else (bad.stdout or "")
        assert bad.returncode == 1 and "timeout_ms" in err + out, (bad.returncode, err, out)
    finally:
        lab.lbctl("service", "remove", svc)


def test_joining_backend_is_initial_until_its_checks_pass(healthy, record_property):
    """The case an operator met: a backend added with nothing listening
    used to show `up` and take new connections until `fall` failures had
    passed. Now a backend joining a checked service is `initial`: listed
    as such, strait_backend_initial 1, and out of the Maglev table until
    its first `rise` passing checks. A long interval and a high `fall`
    keep the dead one initial for the whole test."""
    lab = healthy
    b1, _ = lab.topo.backend_ips
    dead = "203.0.113.79"   # nothing there: connects time out
    name, port = "proving", 83
    lab.lbctl("service", "add", name, "--listen", f"{VIP}:{port}", "--protocol", "tcp",
              "--health", "tcp", "--health-interval", "1000", "--health-timeout", "500",
              "--health-rise", "2", "--health-fall", "30")
    try:
        lab.lbctl("backend", "add", name, f"{b1}:80")
        first = backends_by_address(lab.sock, name)[f"{b1}:80"]["health"]
        assert first in ("initial", "up"), first
        t0 = time.monotonic()
        wait_for(lambda: backends_by_address(lab.sock, name)[f"{b1}:80"]["health"] == "up",
                 f"{b1} up after rise", 15, every=0.1)
        rise_s = time.monotonic() - t0
        lab.lbctl("backend", "add", name, f"{dead}:80")
        listed = backends_by_address(lab.sock, name)[f"{dead}:80"]
        assert listed["health"] == "initial", listed
        table = lab.lbctl("backend", "list", name).stdout.decode()
        assert any(f"{dead}:80" in line and "initial" in line for line in table.splitlines()), table
        m = lab.d.metrics()
        assert m.value("strait_backend_initial", service=name, backend=f"{dead}:80") == 1
        assert m.value("strait_backend_initial", service=name, backend=f"{b1}:80") == 0
        assert m.value("strait_backend_up", service=name, backend=f"{dead}:80") == 0
        wait_picked_up(lab.sock)
        s = sample_new_connections(lab.topo.client, 40, port=port)
        after = backends_by_address(lab.sock, name)
        text = (f"initial: {b1} up {rise_s:.2f}s after being listed; 40 new connections with "
                f"{dead} initial -> {dict(s.counts)}, {len(s.failures)} failed, "
                f"{dead} flows_total {after[f'{dead}:80']['flows_total']}")
        print(text)
        record_property("initial_state", text)
        assert not s.failures, s.failures[:3]
        assert set(s.counts) == {b1}, s.counts
        assert after[f"{dead}:80"]["flows_total"] == 0 and after[f"{dead}:80"]["health"] == "initial"
    finally:
        lab.lbctl("service", "remove", name)
