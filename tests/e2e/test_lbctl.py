"""lbctl against a running straitd: every command in table and --json form,
with its effect checked through the VIP where it has one, and its errors:
exit 1 with the reason on stderr when the request fails (unknown service
or backend, an address the daemon refuses, straitd not running), exit 2
with the usage when the command line is wrong (bad address, bad weight,
missing or unknown arguments). `config show` prints a configuration that
`straitd --check-config` accepts and that carries the runtime changes.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.e2e.ctl_helpers import (KeepAliveConn, Lab, backends_by_address, lab_fixture_body,
                                   one_request, sample_new_connections, svc, wait_for,
                                   wait_picked_up)
from tests.lib.require import require_lbctl, require_straitd
from tests.lib.straitd import lbctl_path, straitd_path
from tests.lib.topology import LB_IP, SNAT2, VIP, VIP2, backend_ip

SERVICE = "web"
B1, B2 = backend_ip(0), backend_ip(1)


@pytest.fixture(scope="module")
def lab():
    require_straitd()
    require_lbctl()
    yield from lab_fixture_body(Lab(
        backends=2, workers=1,
        services=lambda t: [svc(SERVICE, f"{VIP}:80", [f"{ip}:80" for ip in t.backend_ips])]))


def lbctl(lab: Lab | None, *args: str, socket: str | None = None) -> subprocess.CompletedProcess:
    sock = socket if socket is not None else str(lab.sock)
    return subprocess.run([str(lbctl_path()), "--socket", sock, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=30)


def ok(lab: Lab, *args: str) -> str:
    r = lbctl(lab, *args)
    assert r.returncode == 0, f"lbctl {' '.join(args)} exited {r.returncode}: {r.stderr.decode()}"
    return r.stdout.decode()


def ok_json(lab: Lab, *args: str) -> dict:
    reply = json.loads(ok(lab, "--json", *args))
    assert reply["ok"] is True and reply["version"] == 1, reply
    return reply["result"]


def fails(lab: Lab | None, code: int, needle: str, *args: str, socket: str | None = None) -> str:
    r = lbctl(lab, *args, socket=socket)
    err = r.stderr.decode()
    assert r.returncode == code, f"lbctl {' '.join(args)}: exit {r.returncode}, wanted {code}; stderr {err!r}"
    assert needle in err, f"lbctl {' '.join(args)}: {needle!r} not in stderr {err!r}"
    assert err.startswith("lbctl: "), err
    if code == 2:
        assert "Usage: lbctl" in err, err
    else:
        assert "Usage:" not in err, err
    return err


# Usage errors (exit 2), --help and an absent daemon (exit 1) are checked
# in the unit tier (tests/unit/test_lbctl_cli.py): they need no daemon and
# send no traffic.


# --- errors the daemon reports -------------------------------------------

@pytest.mark.parametrize("argv,needle", [
    (["backend", "list", "nosuch"], 'no service named "nosuch"'),
    (["backend", "add", "nosuch", f"{B1}:80"], 'no service named "nosuch"'),
    (["backend", "set", "nosuch", f"{B1}:80", "--weight", "2"], 'no service named "nosuch"'),
    (["backend", "remove", "nosuch", f"{B1}:80"], 'no service named "nosuch"'),
    (["service", "remove", "nosuch"], 'no service named "nosuch"'),
    (["flows", "--service", "nosuch"], 'no service named "nosuch"'),
    (["backend", "remove", "web", "203.0.113.99:80"], 'has no backend "203.0.113.99:80"'),
    (["backend", "set", "web", "203.0.113.99:80", "--weight", "2"], 'has no backend "203.0.113.99:80"'),
    (["backend", "add", "web", f"{B1}:80"], "already in service"),
    (["backend", "add", "web", f"{VIP}:80"], "interface address"),
    (["backend", "add", "web", f"{VIP2}:80"], None),  # accepted: not (yet) a VIP; removed below
    (["service", "add", "web", "--listen", f"{VIP2}:80", "--protocol", "tcp"], 'service "web" already exists'),
    (["service", "add", "x", "--listen", f"{VIP}:80", "--protocol", "tcp"], "already used by service"),
    (["service", "add", "x", "--listen", "198.51.100.50:80", "--protocol", "tcp"], "198.51.100.50"),
    (["service", "add", "x", "--listen", "192.0.2.1:80", "--protocol", "tcp"], "192.0.2.1"),
    (["service", "add", "x", "--listen", f"{VIP2}:81", "--protocol", "tcp", "--snat", "198.51.100.9"],
     "198.51.100.9"),
    (["service", "add", "bad/name", "--listen", f"{VIP2}:81", "--protocol", "tcp"], "bad/name"),
])
def test_refused_requests_exit_1(lab, argv, needle):
    before = backends_by_address(lab.sock, SERVICE)
    if needle is None:
        ok(lab, *argv)
        ok(lab, "backend", "remove", SERVICE, argv[-1], "--flush")
        wait_for(lambda: set(backends_by_address(lab.sock, SERVICE)) == set(before),
                 "the flushed backend to be reaped", 10, every=0.1)
        return
    fails(lab, 1, needle, *argv)
    # Nothing was half-done: the backends and the services are unchanged.
    after = backends_by_address(lab.sock, SERVICE)
    assert {a: (b["weight"], b["state"]) for a, b in after.items()} == \
        {a: (b["weight"], b["state"]) for a, b in before.items()}
    names = [s["name"] for s in ok_json(lab, "service", "list")["services"]]
    assert names == [SERVICE], names


def test_json_errors_go_to_stderr(lab):
    r = lbctl(lab, "--json", "backend", "list", "nosuch")
    assert r.returncode == 1 and r.stdout == b"" and b'no service named "nosuch"' in r.stderr


# --- every command ------------------------------------------------------------

def test_service_list(lab):
    out = ok(lab, "service", "list")
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "LISTEN", "PROTO", "SNAT", "BACKENDS", "ACTIVE", "FLOWS", "PACKETS", "BYTES"]
    assert rows[0].split()[:5] == [SERVICE, f"{VIP}:80", "tcp", LB_IP, "2/2"], rows
    services = ok_json(lab, "service", "list")["services"]
    assert len(services) == 1
    s = services[0]
    assert (s["name"], s["listen"], s["protocol"], s["snat"], s["backends"], s["backends_available"],
            s["fail_open"]) == (SERVICE, f"{VIP}:80", "tcp", [LB_IP], 2, 2, False), s
    assert s["flows_total"] > 0 and s["packets"] > 0 and s["bytes"] > 0, s


def test_backend_list(lab):
    one_request(lab.topo.client)
    out = ok(lab, "backend", "list", SERVICE)
    lines = out.splitlines()
    assert lines[0] == f"service {SERVICE} {VIP}:80/tcp", lines
    assert lines[1].split() == ["ADDRESS", "WEIGHT", "HEALTH", "STATE", "ACTIVE", "FLOWS", "PACKETS", "BYTES", "DNS"]
    rows = {line.split()[0]: line.split() for line in lines[2:] if line.strip()}
    assert set(rows) == {f"{B1}:80", f"{B2}:80"}, out
    for r in rows.values():
        assert r[1:4] == ["1", "up", "active"], r
    res = ok_json(lab, "backend", "list", SERVICE)
    assert res["service"] == SERVICE and res["fail_open"] is False and res["dns"] == []
    total = 0
    for b in res["backends"]:
        assert set(b) >= {"address", "weight", "health", "state", "active_flows", "flows_total", "packets", "bytes"}
        total += b["flows_total"]
        # The table shows the same numbers (FLOWS column; counters only grow).
        assert int(rows[b["address"]][5]) <= b["flows_total"]
    assert total > 0


def test_backend_add_set_remove(lab):
    b3 = "203.0.113.77"  # not serving: weight 0 keeps every connection off it
    out = ok(lab, "backend", "add", SERVICE, f"{b3}:80", "--weight", "0")
    assert out == f"backend {b3}:80 added to {SERVICE} (weight 0)\n", out
    listed = backends_by_address(lab.sock, SERVICE)
    assert listed[f"{b3}:80"]["weight"] == 0 and listed[f"{b3}:80"]["state"] == "drained"
    wait_picked_up(lab.sock)
    s = sample_new_connections(lab.topo.client, 20)
    assert not s.failures and set(s.counts) <= {B1, B2}, (s.counts, s.failures[:3])

    res = ok_json(lab, "backend", "set", SERVICE, f"{B2}:80", "--weight", "10000")
    assert res["backend"]["weight"] == 10000 and res["generation"] > 0, res
    out = ok(lab, "backend", "set", SERVICE, f"{B2}:80", "--weight", "0")
    assert out == f"backend {B2}:80 of {SERVICE}: weight 0 (draining: no new flows)\n", out
    wait_picked_up(lab.sock)
    s = sample_new_connections(lab.topo.client, 20)
    assert not s.failures and set(s.counts) == {B1}, (s.counts, s.failures[:3])
    assert ok(lab, "backend", "set", SERVICE, f"{B2}:80", "--weight", "1") == \
        f"backend {B2}:80 of {SERVICE}: weight 1\n"

    out = ok(lab, "backend", "remove", SERVICE, f"{b3}:80")
    assert out == f"backend {b3}:80 removed from {SERVICE}; its flows drain\n", out
    wait_for(lambda: f"{b3}:80" not in backends_by_address(lab.sock, SERVICE),
             "the unused removed backend to be reaped", 10, every=0.1)
    res = ok_json(lab, "backend", "add", SERVICE, f"{b3}:80", "--weight", "0")
    assert res["backend"]["address"] == f"{b3}:80" and res["backend"]["weight"] == 0, res
    out = ok(lab, "backend", "remove", SERVICE, f"{b3}:80", "--flush")
    assert out == f"backend {b3}:80 removed from {SERVICE}; its flows are dropped\n", out
    wait_for(lambda: f"{b3}:80" not in backends_by_address(lab.sock, SERVICE),
             "the flushed backend to be reaped", 10, every=0.1)
    ok(lab, "backend", "add", SERVICE, f"{b3}:80", "--weight", "0")
    gen = ok_json(lab, "stats")["snapshot_generation"]
    res = ok_json(lab, "backend", "remove", SERVICE, f"{b3}:80")
    assert res["generation"] > gen, res
    res = ok_json(lab, "backend", "list", SERVICE)
    assert {b["address"] for b in res["backends"] if b["state"] == "active"} == {f"{B1}:80", f"{B2}:80"}


def test_remove_draining_backend_again(lab):
    conn = KeepAliveConn(lab.topo.client)
    conn.start()
    addr = f"{conn.backend}:80"
    try:
        ok(lab, "backend", "remove", SERVICE, addr)
        fails(lab, 1, "already removed and draining", "backend", "remove", SERVICE, addr)
        fails(lab, 1, "was removed", "backend", "set", SERVICE, addr, "--weight", "2")
        assert backends_by_address(lab.sock, SERVICE)[addr]["state"] == "draining"
        ok(lab, "backend", "remove", SERVICE, addr, "--flush")
        wait_for(lambda: conn.failure, "the flushed connection to fail", 10)
    finally:
        conn.close()
        if addr not in {a for a, b in backends_by_address(lab.sock, SERVICE).items() if b["state"] == "active"}:
            wait_for(lambda: addr not in backends_by_address(lab.sock, SERVICE), "flushed backend reaped", 15)
            ok(lab, "backend", "add", SERVICE, addr)


def test_service_add_and_remove_through_the_vip(lab):
    nginx1 = lab.topo.nginx[0]
    out = ok(lab, "service", "add", "alt", "--listen", f"{VIP2}:8080", "--protocol", "tcp", "--snat", SNAT2)
    assert out == f"service alt added: {VIP2}:8080/tcp\n", out
    try:
        res = ok_json(lab, "backend", "add", "alt", f"{B1}:80")
        assert res["backend"]["address"] == f"{B1}:80"
        before = nginx1.requests_served()
        wait_for(lambda: _answers(lab, VIP2, 8080), "an answer through the new service", 15, every=0.2)
        assert one_request(lab.topo.client, VIP2, 8080) == B1
        lines = nginx1.log.read_text().splitlines()[before:]
        assert lines and all(line.startswith(SNAT2 + " ") for line in lines), lines[:3]
        s = [x for x in ok_json(lab, "service", "list")["services"] if x["name"] == "alt"][0]
        assert s["listen"] == f"{VIP2}:8080" and s["snat"] == [SNAT2] and s["flows_total"] >= 1, s
        udp = ok_json(lab, "service", "add", "dns", "--listen", f"{VIP}:53", "--protocol", "udp")
        assert udp["service"]["protocol"] == "udp" and udp["service"]["snat"] == [LB_IP], udp
        assert "dns" in ok(lab, "service", "list")
        assert ok_json(lab, "service", "remove", "dns")["generation"] > udp["generation"]
    finally:
        out = ok(lab, "service", "remove", "alt")
    assert out == "service alt removed; its flows are flushed\n", out
    assert [s["name"] for s in ok_json(lab, "service", "list")["services"]] == [SERVICE]
    assert not _answers(lab, VIP2, 8080)
    fails(lab, 1, 'no service named "alt"', "backend", "list", "alt")


def _answers(lab: Lab, host: str, port: int) -> bool:
    try:
        one_request(lab.topo.client, host, port, timeout=2)
        return True
    except (OSError, ConnectionError):
        return False


def test_stats(lab):
    one_request(lab.topo.client)
    out = ok(lab, "stats")
    for label in ("snapshot generation", "rx packets", "tx packets", "flows active", "flows created",
                  "drops total", "WORKER", "DROP REASON", "SNAT ADDRESS", "no_flow"):
        assert label in out, (label, out)
    st = ok_json(lab, "stats")
    assert st["rx_packets"] > 0 and st["tx_packets"] > 0 and st["flows"]["created"] > 0, st
    assert len(st["workers"]) == 1 and st["workers"][0]["worker"] == 0
    assert st["drops_total"] == sum(st["drops"].values())
    # SNAT pools are made on first use and kept (192.0.2.20 may be there
    # from the removed service `alt`).
    snat = {x["address"]: x for x in st["snat"]}
    assert LB_IP in snat and snat[LB_IP]["ports_capacity"] > 0, st["snat"]
    assert set(snat) <= {LB_IP, SNAT2}, st["snat"]
    m = lab.d.metrics()
    assert st["flows"]["capacity"] == m.value("strait_flows_capacity")


def test_flows(lab):
    conns = [KeepAliveConn(lab.topo.client) for _ in range(3)]
    try:
        res = ok_json(lab, "flows", "--service", SERVICE, "--limit", "100")
        mine = {c.sock.getsockname()[1]: c for c in conns}
        seen = {}
        for f in res["flows"]:
            ip, port = f["client"].rsplit(":", 1)
            if ip == "198.51.100.2" and int(port) in mine:
                seen[int(port)] = f
        assert set(seen) == set(mine), (res, list(mine))
        for port, f in seen.items():
            assert f["vip"] == f"{VIP}:80" and f["service"] == SERVICE and f["protocol"] == "tcp"
            assert f["backend"] == f"{mine[port].backend}:80" and f["snat"].startswith(LB_IP + ":")
            assert f["state"] == "established", f
        assert len(ok_json(lab, "flows", "--limit", "2")["flows"]) == 2
        out = ok(lab, "flows", "--service", SERVICE)
        assert out.splitlines()[0].split() == ["WORKER", "PROTO", "CLIENT", "VIP", "SNAT", "BACKEND",
                                              "SERVICE", "STATE", "IDLE"]
        for port in mine:
            assert f"198.51.100.2:{port}" in out
        assert "flows shown (limit" in out.splitlines()[-1]
    finally:
        for c in conns:
            c.close()


def test_config_show_is_accepted_by_check_config(lab, tmp_path):
    ok(lab, "backend", "set", SERVICE, f"{B2}:80", "--weight", "7")
    ok(lab, "backend", "add", SERVICE, "203.0.113.88:8080", "--weight", "0")
    try:
        text = ok(lab, "config", "show")
        assert ok_json(lab, "config", "show")["toml"] == text
    finally:
        ok(lab, "backend", "remove", SERVICE, "203.0.113.88:8080")
        ok(lab, "backend", "set", SERVICE, f"{B2}:80", "--weight", "1")
    path = tmp_path / "shown.toml"
    path.write_text(text)
    r = subprocess.run([str(straitd_path()), "--config", str(path), "--check-config"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 0, f"--check-config refused `lbctl config show`:\n{r.stderr.decode()}\n{text}"
    # The running state, not the file straitd started from.
    assert "203.0.113.88" in text and "7" in text, text
    assert "203.0.113.88" not in lab.d.config_text
    # A broken copy is refused, naming the file (the check is real).
    bad = tmp_path / "broken.toml"
    bad.write_text(text.replace("[[service]]", "[[service]]\nbogus_key = 1", 1))
    r = subprocess.run([str(straitd_path()), "--config", str(bad), "--check-config"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 1 and str(bad) in r.stderr.decode() and "bogus_key" in r.stderr.decode()
