"""straitd as a service: reload, saved configuration, drain on shutdown.

A straitd with one worker serves `web` through the VIP from nginx
backends, as in the other control-plane labs. Checked through that
running daemon:

* SIGHUP re-reads the configuration file and applies the difference (a
  backend replaced by another) while wrk keeps keep-alive connections busy:
  wrk sees 0 errors, new connections go only to the new backend list, the
  removed backend drains;
* a file with a syntax error, one with a bad key and one that changes
  `dataplane.workers` (a restart-only key) are each refused with one log
  line and change nothing; the daemon keeps serving;
* `lbctl config save` after lbctl changes writes a file that reloads to
  the same state (same `service list` / `backend list`, no change applied),
  and that `straitd --check-config` accepts;
* SIGTERM with shutdown_drain_s set: the instance turns `draining` at
  once (lbctl instance), a keep-alive wrk and a rate-limited download
  started before it finish with 0 errors, new connections still work (as
  for an NLB target in deregistration), and straitd exits 0 by itself once
  no flow is left, within shutdown_drain_s;
* `lbctl drain` starts the same drain; a SIGTERM during a drain ends it at
  once (exit 0) even with flows left.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time

import pytest

from tests.e2e.ctl_helpers import (KeepAliveConn, Lab, Wrk, backends_by_address, control,
                                   lab_fixture_body, one_request, sample_new_connections, svc,
                                   wait_for, wait_picked_up)
from tests.lib.require import require_lbctl, require_straitd
from tests.lib.straitd import Straitd, straitd_path, toml_value
from tests.lib.netns import sh
from tests.lib.topology import VIP

SERVICE = "web"
URL = f"http://{VIP}/"
HEALTH = f"{VIP}:8080"      # the instance health endpoint, on the interface address
HEALTH_URL = f"http://{HEALTH}/"


def instance_health(lab: Lab) -> tuple[int, str]:
    """GET the instance health endpoint from the client namespace, through
    the router, as the NLB's health check would: (status, body)."""
    r = lab.topo.client_sh(["curl", "-sS", "--max-time", "3", "-w", "\\n%{http_code}", HEALTH_URL],
                           check=False, timeout=10)
    assert r.returncode == 0, r.stderr
    body, _, code = r.stdout.decode().rpartition("\n")
    return int(code), body


@pytest.fixture(scope="module")
def lab():
    require_straitd()
    require_lbctl()
    yield from lab_fixture_body(Lab(
        backends=3, workers=1, instance={"health_endpoint": HEALTH},
        services=lambda t: [svc(SERVICE, f"{VIP}:80", [f"{t.backend_ips[0]}:80",
                                                       f"{t.backend_ips[1]}:80"])]))


def backends_line(ips: list[str]) -> str:
    return f"backends = {toml_value([f'{ip}:80' for ip in ips])}"


def write_config(lab: Lab, text: str) -> None:
    tmp = lab.d.config_path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(lab.d.config_path)


def log_lines(lab: Lab, needle: str) -> list[str]:
    return [l for l in lab.d.log_path.read_text(errors="replace").splitlines() if needle in l]


def hup_and_wait(lab: Lab, needle: str, before: int) -> str:
    """SIGHUP straitd and wait for one more log line containing `needle`."""
    lab.d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: len(log_lines(lab, needle)) > before, f"log line {needle!r} after SIGHUP", 15, every=0.1)
    return log_lines(lab, needle)[-1]


def state_view(lab: Lab) -> tuple:
    """`service list` and `backend list` without the traffic counters."""
    counters = {"active_flows", "flows_total", "packets", "bytes"}
    services = [{k: v for k, v in s.items() if k not in counters}
                for s in control(lab.sock, "service list")["services"]]
    backends = {}
    for s in services:
        r = control(lab.sock, "backend list", service=s["name"])
        r["backends"] = [{k: v for k, v in b.items() if k not in counters} for b in r["backends"]]
        backends[s["name"]] = r
    return services, backends


def settled(lab: Lab) -> None:
    """Waits until no backend of an earlier test is left draining (its
    flows ended and straitd reaped it), so state comparisons are stable."""
    wait_for(lambda: all(s["backends_draining"] == 0 for s in control(lab.sock, "service list")["services"]),
             "no backend left draining", 30, every=0.2)


def test_sighup_applies_a_changed_backend_list_under_wrk(lab, record_property):
    b1, b2, b3 = lab.topo.backend_ips
    original = lab.d.config_text
    assert backends_line([b1, b2]) in original
    changed = original.replace(backends_line([b1, b2]), backends_line([b2, b3]))
    applied = len(log_lines(lab, "event=reload "))
    w = Wrk(lab.topo.client, URL, seconds=5, conns=8)
    try:
        time.sleep(1)
        write_config(lab, changed)
        line = hup_and_wait(lab, "event=reload ", applied)
        assert w.proc.poll() is None, "wrk ended before the reload: the run did not cover it"
        listed = backends_by_address(lab.sock, SERVICE)
        assert listed[f"{b3}:80"]["state"] == "active" and listed[f"{b2}:80"]["state"] == "active", listed
        assert f"{b1}:80" not in listed or listed[f"{b1}:80"]["state"] == "draining", listed
        wait_picked_up(lab.sock)
        s = sample_new_connections(lab.topo.client, 30)
    finally:
        r = w.result()
    text = (f"SIGHUP reload under wrk: {r.requests} requests, {r.errors} errors; 30 new connections "
            f"after it -> {dict(s.counts)}; log: {line}")
    print(text)
    record_property("reload_under_wrk", text)
    assert r.errors == 0 and r.requests > 0, r.output
    assert not s.failures and set(s.counts) <= {b2, b3}, (s.counts, s.failures[:3])
    changes = log_lines(lab, "event=reload_change")
    assert any(f"backend {b1}:80 removed" in l for l in changes), changes
    assert any(f"backend {b3}:80 added" in l for l in changes), changes
    # Back to the original file for the tests that follow.
    write_config(lab, original)
    hup_and_wait(lab, "event=reload ", len(log_lines(lab, "event=reload ")))
    wait_for(lambda: backends_by_address(lab.sock, SERVICE).get(f"{b1}:80", {}).get("state") == "active",
             "original backends back", 10)


@pytest.mark.parametrize("bad, reason", [
    ("[[service]\nname = 1\n", "TOML syntax error"),
    ("BAD_KEY", "unknown key"),
    ("WORKERS", "dataplane.workers changed: that needs a restart"),
], ids=["syntax", "unknown-key", "restart-only"])
def test_bad_reload_changes_nothing(lab, bad, reason):
    original = lab.d.config_text
    if bad == "BAD_KEY":
        text = original.replace("[[service]]", "[[service]]\nlisten_port = 80", 1)
    elif bad == "WORKERS":
        text = original.replace("workers = 1", "workers = 2", 1)
        assert text != original
    else:
        text = bad
    settled(lab)
    before_state = state_view(lab)
    refused = len(log_lines(lab, "event=reload_refused"))
    try:
        write_config(lab, text)
        line = hup_and_wait(lab, "event=reload_refused", refused)
        assert reason in line and "result=unchanged" in line, line
        assert len(log_lines(lab, "event=reload_refused")) == refused + 1, "one log line per refusal"
        # lbctl gets the same refusal, exit 1.
        r = lab.lbctl("config", "reload", check=False)
        assert r.returncode == 1 and reason in r.stderr.decode(), r.stderr
        assert lab.d.alive()
        assert state_view(lab) == before_state
        one_request(lab.topo.client)
    finally:
        write_config(lab, original)


def test_config_save_reloads_to_the_same_state(lab, tmp_path):
    b1, b2, b3 = lab.topo.backend_ips
    original = lab.d.config_text
    try:
        lab.lbctl("backend", "add", SERVICE, f"{b3}:80", "--weight", "3")
        lab.lbctl("backend", "set", SERVICE, f"{b2}:80", "--weight", "0")
        lab.lbctl("service", "add", "extra", "--listen", f"{VIP}:8081", "--protocol", "tcp",
                  "--health", "tcp", "--health-interval", "1000", "--health-timeout", "500")
        lab.lbctl("backend", "add", "extra", f"{b1}:80")
        wait_for(lambda: backends_by_address(lab.sock, "extra")[f"{b1}:80"]["health"] == "up",
                 "extra backend up", 15, every=0.1)
        settled(lab)
        before = state_view(lab)
        copy = tmp_path / "copy.toml"
        r = lab.lbctl("config", "save", str(copy))
        assert f"written to {copy}" in r.stdout.decode()
        chk = sh([str(straitd_path()), "--config", str(copy), "--check-config"], check=False)
        assert chk.returncode == 0, chk.stdout + chk.stderr
        # Without PATH: the file straitd was started with.
        lab.lbctl("config", "save")
        saved = lab.d.config_path.read_text()
        assert saved == copy.read_text()
        rep = json.loads(lab.lbctl("config", "reload", json_out=True).stdout)["result"]
        assert rep["changes"] == [], rep
        assert state_view(lab) == before
    finally:
        write_config(lab, original)
        lab.lbctl("config", "reload")
    assert control(lab.sock, "service list")["services"][0]["name"] == SERVICE
    wait_for(lambda: len(control(lab.sock, "service list")["services"]) == 1, "extra service gone", 10)


def test_lbctl_capacity_reports_the_formula_and_the_worst_pool(lab, record_property):
    """`lbctl capacity` for the running configuration: one SNAT address (the
    interface's), two backends of weight 1, ports 1024-65535 and the lab's
    time_wait of 1 s give 64512 x 2 / 1 new connections/s; after traffic the
    worst pool is one of web's and the metrics carry the same numbers."""
    settled(lab)
    sample_new_connections(lab.topo.client, 10)
    web = next(c for c in control(lab.sock, "capacity")["services"] if c["service"] == SERVICE)
    assert (web["snat_addresses"], web["backends_offered"], web["port_range"], web["hold_s"]) == (1, 2, 64512, 1), web
    assert web["new_connections_per_s"] == 64512 * 2 / 1, web
    w = web["worst_pool"]
    assert w is not None and w["address"] == VIP and w["ports_capacity"] > 0, web
    assert w["backend"] in {f"{ip}:80" for ip in lab.topo.backend_ips[:2]}, web
    m = lab.d.metrics()
    assert m.value("strait_service_new_connections_capacity", service=SERVICE) == 64512 * 2
    assert 0 <= m.value("strait_service_snat_worst_pool_use", service=SERVICE) <= 1
    table = lab.lbctl("capacity").stdout.decode()
    assert "129024" in table and SERVICE in table, table
    record_property("capacity", table)


def restart(lab: Lab, drain_s: int) -> None:
    """A fresh straitd on the lab's topology with shutdown_drain_s."""
    if lab.d.alive():
        assert lab.d.stop() == 0
    old = lab.d
    lab.d = Straitd(lab.topo.lb, lab.topo.workdir, services=lab.services(lab.topo),
                    workers=lab.workers, instance={"shutdown_drain_s": drain_s, "health_endpoint": HEALTH},
                    dataplane={"timeouts": {"fin_wait": 2, "close_wait": 2, "last_ack": 2,
                                            "time_wait": 1, "closed": 1}})
    assert old.config_path == lab.d.config_path
    lab.d.start()
    lab.wait_vip()


def test_health_endpoint_follows_the_backends(lab, record_property):
    """200 while every service has a backend up; 503 "degraded" once every
    backend of one service is down (a service whose only backend is a dead
    address, found down by its health check); 200 again when it is gone.
    The responder is the dataplane's: nothing listens on 8080 in any
    kernel."""
    assert instance_health(lab) == (200, "ready\n")
    assert control(lab.sock, "instance")["state"] == "ready"
    dead = "203.0.113.77"
    lab.lbctl("service", "add", "deadsvc", "--listen", f"{VIP}:8082", "--protocol", "tcp",
              "--health", "tcp", "--health-interval", "200", "--health-timeout", "100",
              "--health-fall", "1")
    try:
        # No backend at all: degraded at once.
        assert instance_health(lab) == (503, "degraded\n")
        lab.lbctl("backend", "add", "deadsvc", f"{dead}:80")
        wait_for(lambda: backends_by_address(lab.sock, "deadsvc")[f"{dead}:80"]["health"] == "down",
                 "dead backend down", 15, every=0.1)
        code, body = instance_health(lab)
        st = control(lab.sock, "instance")
        assert (code, body) == (503, "degraded\n"), (code, body)
        assert st["state"] == "degraded" and "deadsvc" in st["reason"], st
    finally:
        lab.lbctl("service", "remove", "deadsvc")
    assert instance_health(lab) == (200, "ready\n")
    record_property("health_endpoint", "200 ready / 503 degraded / 200 ready")
    one_request(lab.topo.client)


def test_sigterm_drains_then_exits_0(lab, record_property):
    drain_s = 25
    restart(lab, drain_s)
    assert control(lab.sock, "instance")["state"] == "ready"
    w = Wrk(lab.topo.client, URL, seconds=5, conns=8)
    dl = subprocess.Popen(["ip", "netns", "exec", lab.topo.client, "curl", "-sS", "-o", "-",
                           "--limit-rate", "16k", "--max-time", "60", f"{URL}big.bin"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1)
        started = len(log_lines(lab, "event=drain_start"))  # the log file is shared with earlier daemons
        t0 = time.monotonic()
        lab.d.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: len(log_lines(lab, "event=drain_start")) > started, "drain to start", 10, every=0.05)
        st = control(lab.sock, "instance")
        assert st["state"] == "draining" and st["healthy"] is False, st
        assert instance_health(lab) == (503, "draining\n")
        # New connections are still served while draining (the front
        # stops sending them once the instance health check fails).
        one_request(lab.topo.client)
        r = w.result()
        out, err = dl.communicate(timeout=90)
        rc = lab.d.proc.wait(timeout=drain_s + 10)
        took = time.monotonic() - t0
    finally:
        w.kill()
        if dl.poll() is None:
            dl.kill()
    text = (f"drain: wrk {r.requests} requests {r.errors} errors; download {len(out)} bytes "
            f"(rc {dl.returncode}); straitd exit {rc} {took:.1f}s after SIGTERM "
            f"(shutdown_drain_s {drain_s}); {log_lines(lab, 'event=shutdown')[-1]}")
    print(text)
    record_property("drain", text)
    assert r.errors == 0 and r.requests > 0, r.output
    assert dl.returncode == 0 and len(out) == lab.topo.payload_size, err
    assert hashlib.sha256(out).hexdigest() == lab.topo.payload_sha256
    assert rc == 0
    assert 'reason="no flow left"' in log_lines(lab, "event=shutdown")[-1]
    restart(lab, 0)


def test_lbctl_drain_then_second_sigterm_exits_at_once(lab):
    restart(lab, 120)
    conn = KeepAliveConn(lab.topo.client, period=0.2)
    conn.start()
    try:
        started = len(log_lines(lab, "event=drain_start"))
        st = json.loads(lab.lbctl("drain", json_out=True).stdout)["result"]
        assert st["state"] == "draining", st
        wait_for(lambda: len(log_lines(lab, "event=drain_start")) > started, "drain to start", 10, every=0.05)
        time.sleep(1)
        assert lab.d.alive(), "a flow is left: straitd keeps draining"
        assert conn.failure is None, conn.failure
        lab.d.proc.send_signal(signal.SIGTERM)
        rc = lab.d.proc.wait(timeout=15)
    finally:
        conn.close()
    assert rc == 0
    assert 'reason="second SIGTERM"' in log_lines(lab, "event=shutdown")[-1]
    restart(lab, 0)
