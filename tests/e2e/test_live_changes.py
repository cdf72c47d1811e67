"""Live reconfiguration that loses no flow, measured per connection.

A straitd with two workers serves `web` from three nginx backends (two
configured at start). While wrk keeps keep-alive connections busy through
the VIP, and while a pool of keep-alive connections (each recording which
backend served every request and its first failure) runs beside it,
backends are added, re-weighted, drained with weight 0, removed without
and with --flush, and re-added while draining. Checked each time:

* no failed request, neither in wrk nor on any pooled connection whose
  backend stays (a removed backend's connections count as staying unless
  it was flushed);
* connections on a backend removed without --flush keep being served;
  with --flush they stop (and only they);
* fresh connections follow the new weights at once: each backend's share
  of N new connections lies within TOLERANCE_SIGMAS binomial standard
  deviations (plus MAGLEV_SLACK for the table's granularity) of
  weight / sum of weights, and a removed or drained backend gets none.

The measured numbers (wrk requests and failures per change, per-backend
shares, per-connection failures) are printed (run pytest with -s) and
attached to the JUnit report as properties.
"""

from __future__ import annotations

import math
import time

import pytest

from tests.e2e.ctl_helpers import (ConnPool, Lab, Wrk, backends_by_address, lab_fixture_body,
                                   sample_new_connections, svc, wait_for, wait_picked_up)
from tests.lib.require import require_lbctl, require_straitd
from tests.lib.topology import VIP

SERVICE = "web"
URL = f"http://{VIP}/"
TOLERANCE_SIGMAS = 4.0
MAGLEV_SLACK = 0.02
WRK_SECONDS = 4
PICKUP: list[float] = []   # seconds from lbctl's answer to every worker running the change


@pytest.fixture(scope="module")
def lab():
    require_straitd()
    require_lbctl()
    yield from lab_fixture_body(Lab(
        backends=3, workers=2,
        services=lambda t: [svc(SERVICE, f"{VIP}:80", [f"{t.backend_ips[0]}:80",
                                                       f"{t.backend_ips[1]}:80"])]))


def ep(ip: str) -> str:
    return f"{ip}:80"


def reset(lab: Lab, weights: dict[str, int]) -> None:
    """Brings `web` to exactly `weights` ({ip: weight}) and waits until
    nothing is left draining from an earlier test (their flows have ended
    and straitd reaped the slots)."""
    listed = backends_by_address(lab.sock, SERVICE)
    for addr, b in listed.items():
        ip = addr.split(":")[0]
        if b["state"] in ("active", "drained") and ip not in weights:
            lab.lbctl("backend", "remove", SERVICE, addr)
    listed = backends_by_address(lab.sock, SERVICE)
    for ip, w in weights.items():
        b = listed.get(ep(ip))
        if b is None or b["state"] not in ("active", "drained"):
            lab.lbctl("backend", "add", SERVICE, ep(ip), "--weight", str(w))
        elif b["weight"] != w:
            lab.lbctl("backend", "set", SERVICE, ep(ip), "--weight", str(w))

    def settled():
        now = backends_by_address(lab.sock, SERVICE)
        return set(now) == {ep(ip) for ip in weights} and all(
            now[ep(ip)]["weight"] == w and now[ep(ip)]["state"] in ("active", "drained")
            for ip, w in weights.items())
    wait_for(settled, f"service {SERVICE} settled at {weights}", 20, every=0.2)
    wait_picked_up(lab.sock)


def check_shares(sample, weights: dict[str, int], what: str) -> list[str]:
    """Each backend's share of the sample against weight / total; returns
    the printable lines, raises on a share outside the tolerance."""
    total = sum(weights.values())
    lines = []
    bad = []
    assert not sample.failures, f"{what}: {len(sample.failures)} of {sample.n} new connections failed: {sample.failures[:5]}"
    assert set(sample.counts) <= {ip for ip, w in weights.items() if w > 0}, \
        f"{what}: new connections reached {dict(sample.counts)}, weights {weights}"
    for ip, w in weights.items():
        p = w / total
        tol = TOLERANCE_SIGMAS * math.sqrt(p * (1 - p) / sample.n) + MAGLEV_SLACK
        got = sample.share(ip)
        ok = abs(got - p) <= tol
        lines.append(f"  {ip}: weight {w}, expected {p:.3f}, got {got:.3f} "
                     f"({sample.counts.get(ip, 0)}/{sample.n}), tolerance +-{tol:.3f}"
                     f"{'' if ok else '  <-- OUT'}")
        if not ok:
            bad.append(ip)
    assert not bad, f"{what}: shares outside tolerance:\n" + "\n".join(lines)
    return lines


def report(record_property, key: str, text: str) -> None:
    print(text)
    record_property(key, text)


def change_under_wrk(lab: Lab, argv: list[str], seconds: int = WRK_SECONDS):
    """Starts wrk for `seconds`, applies `lbctl argv` one second in, and
    returns (time of the change, the running Wrk)."""
    w = Wrk(lab.topo.client, URL, seconds=seconds, conns=8)
    try:
        time.sleep(1)
        t = time.monotonic()
        lab.lbctl(*argv)
        assert w.proc.poll() is None, "wrk ended before the change: the run did not cover it"
        PICKUP.append(wait_picked_up(lab.sock))
        return t, w
    except BaseException:
        w.kill()
        raise


def test_add_reweight_remove_under_load(lab, record_property):
    b1, b2, b3 = lab.topo.backend_ips
    reset(lab, {b1: 1, b2: 1})
    pool = ConnPool(lab.topo.client)
    out = ["live changes under load (2 workers):"]
    try:
        pool.fill([b1, b2], per_backend=4)

        # 1. add a backend
        t_add, w = change_under_wrk(lab, ["backend", "add", SERVICE, ep(b3)])
        s = sample_new_connections(lab.topo.client, 150)
        lines = check_shares(s, {b1: 1, b2: 1, b3: 1}, "after backend add")
        r = w.result()
        out += [f"backend add {b3}: wrk {r.requests} requests, {r.errors} failed "
                f"(connect {r.connect}, read {r.read}, write {r.write}, timeout {r.timeout}, "
                f"non-2xx {r.non2xx}); new connections:"] + lines
        assert r.errors == 0, r.output
        pool.fill([b3], per_backend=4)

        # 2. re-weight
        weights = {b1: 4, b2: 1, b3: 1}
        t_w, w = change_under_wrk(lab, ["backend", "set", SERVICE, ep(b1), "--weight", "4"])
        s = sample_new_connections(lab.topo.client, 300)
        lines = check_shares(s, weights, "after backend set --weight 4")
        r = w.result()
        out += [f"backend set {b1} --weight 4: wrk {r.requests} requests, {r.errors} failed; "
                f"new connections:"] + lines
        assert r.errors == 0, r.output

        # 3. remove without --flush: b2's connections carry on
        t_rm, w = change_under_wrk(lab, ["backend", "remove", SERVICE, ep(b2)])
        s = sample_new_connections(lab.topo.client, 150)
        lines = check_shares(s, {b1: 4, b3: 1}, "after backend remove")
        assert s.counts.get(b2, 0) == 0
        listed = backends_by_address(lab.sock, SERVICE)
        r = w.result()
        out += [f"backend remove {b2} (no flush): wrk {r.requests} requests, {r.errors} failed; "
                f"new connections:"] + lines
        assert r.errors == 0, r.output
        assert listed[ep(b2)]["state"] == "draining", listed
        assert listed[ep(b2)]["active_flows"] >= len(pool.on(b2)), listed[ep(b2)]

        # Every pooled connection on b2 was served after the removal.
        wait_for(lambda: all(c.ok_after(t_rm) >= 5 or c.failure for c in pool.on(b2)),
                 "pooled connections on the removed backend to answer again", 10)
    finally:
        pool.close()
    rep = pool.report()
    out.append(f"workers running each change {max(PICKUP[-3:]) * 1000:.0f} ms or less after lbctl answered")
    out.append("keep-alive pool (per backend: connections, requests answered, connections failed):")
    out += [f"  {b}: {v['connections']} conns, {v['requests_ok']} requests, {v['failed']} failed"
            for b, v in sorted(rep.items())]
    report(record_property, "live_changes", "\n".join(out))
    failed = [(c.backend, c.failure) for c in pool.conns if c.failure]
    assert not failed, f"pooled connections failed: {failed}"
    for c in pool.on(b2):
        assert c.ok_after(t_rm) >= 5, "a connection on the removed backend stopped being served"
    for c in pool.on(b3):
        assert c.ok_after(t_rm) > 0
    assert t_add < t_w < t_rm


def test_remove_with_flush_under_load(lab, record_property):
    b1, b2, b3 = lab.topo.backend_ips
    reset(lab, {b1: 1, b2: 1, b3: 1})
    pool = ConnPool(lab.topo.client, timeout=2.0)
    flushed_before = lab.d.metrics().value("strait_flows_flushed_total")
    try:
        pool.fill([b1, b2, b3], per_backend=3)
        t_fl, w = change_under_wrk(lab, ["backend", "remove", SERVICE, ep(b3), "--flush"])
        s = sample_new_connections(lab.topo.client, 60)
        assert not s.failures, s.failures[:5]
        assert s.counts.get(b3, 0) == 0, dict(s.counts)
        # The flushed backend's connections die (their packets are dropped,
        # so each times out); nobody else's do.
        wait_for(lambda: all(c.failure for c in pool.on(b3)),
                 "every connection on the flushed backend to fail", 15)
        time.sleep(0.5)
        r = w.result()
    finally:
        pool.close()
    m = lab.d.metrics()
    flushed = m.value("strait_flows_flushed_total") - flushed_before
    listed = backends_by_address(lab.sock, SERVICE)
    rep = pool.report()
    text = "\n".join(
        [f"backend remove {b3} --flush: {flushed:.0f} flows flushed ({len(pool.on(b3))} pooled, "
         f"{flushed - len(pool.on(b3)):.0f} others: wrk's); wrk {r.requests} requests, "
         f"{r.errors} failures reported (connect {r.connect}, read {r.read}, write {r.write}, "
         f"timeout {r.timeout}, non-2xx {r.non2xx}; wrk does not count a request stuck on a "
         f"flushed connection, its connection just stops)",
         "keep-alive pool:"] +
        [f"  {b}: {v['connections']} conns, {v['requests_ok']} requests, {v['failed']} failed"
         for b, v in sorted(rep.items())])
    report(record_property, "flush", text)
    for c in pool.conns:
        if c.backend != b3:
            assert c.failure is None, f"connection on {c.backend} failed: {c.failure}"
            assert c.ok_after(t_fl) > 0
        else:
            assert c.failed_at > t_fl, "a flushed connection failed before the flush"
    assert flushed >= len(pool.on(b3)), f"strait_flows_flushed_total rose by {flushed}"

    assert r.requests > 0
    # A flushed backend's slot is freed as soon as its flows are gone.
    wait_for(lambda: ep(b3) not in backends_by_address(lab.sock, SERVICE),
             f"{b3} (flushed) to leave the backend list", 15, every=0.2)
    assert listed.get(ep(b3), {}).get("state") in (None, "flushing"), listed


def test_weight_zero_drains_then_restores(lab, record_property):
    b1, b2, _ = lab.topo.backend_ips
    reset(lab, {b1: 1, b2: 1})
    pool = ConnPool(lab.topo.client)
    try:
        pool.fill([b1, b2], per_backend=3)
        t0, w = change_under_wrk(lab, ["backend", "set", SERVICE, ep(b2), "--weight", "0"])
        s = sample_new_connections(lab.topo.client, 60)
        listed = backends_by_address(lab.sock, SERVICE)
        r = w.result()
        assert not s.failures and set(s.counts) == {b1}, (dict(s.counts), s.failures[:3])
        assert listed[ep(b2)]["weight"] == 0 and listed[ep(b2)]["state"] == "drained", listed
        wait_for(lambda: all(c.ok_after(t0) >= 3 or c.failure for c in pool.on(b2)),
                 "drained backend's connections to be served", 10)
        lab.lbctl("backend", "set", SERVICE, ep(b2), "--weight", "1")
        wait_picked_up(lab.sock)
        s2 = sample_new_connections(lab.topo.client, 60)
    finally:
        pool.close()
    report(record_property, "weight_zero",
           f"backend set {b2} --weight 0: wrk {r.requests} requests, {r.errors} failed; "
           f"60 new connections: {dict(s.counts)}; back to weight 1: {dict(s2.counts)}")
    assert r.errors == 0, r.output
    assert all(c.failure is None for c in pool.conns), [c.failure for c in pool.conns if c.failure]
    assert all(c.ok_after(t0) >= 3 for c in pool.on(b2))
    check_shares(s2, {b1: 1, b2: 1}, "after weight back to 1")


def test_readd_while_draining_keeps_flows_and_slot(lab):
    """A backend removed (no flush) and added back while its flows drain
    keeps its slot, so its connections and counters carry on."""
    b1, b2, _ = lab.topo.backend_ips
    reset(lab, {b1: 1, b2: 1})
    slot = backends_by_address(lab.sock, SERVICE)[ep(b2)]["slot"]
    pool = ConnPool(lab.topo.client)
    try:
        pool.fill([b1, b2], per_backend=3)
        lab.lbctl("backend", "remove", SERVICE, ep(b2))
        t_rm = time.monotonic()
        wait_picked_up(lab.sock)
        s = sample_new_connections(lab.topo.client, 30)
        assert set(s.counts) == {b1} and not s.failures, (dict(s.counts), s.failures[:3])
        lab.lbctl("backend", "add", SERVICE, ep(b2))
        t_add = time.monotonic()
        wait_picked_up(lab.sock)
        listed = backends_by_address(lab.sock, SERVICE)
        s2 = sample_new_connections(lab.topo.client, 60)
        wait_for(lambda: all(c.ok_after(t_add) >= 3 or c.failure for c in pool.on(b2)),
                 "connections on the re-added backend to be served", 10)
    finally:
        pool.close()
    assert listed[ep(b2)]["state"] == "active" and listed[ep(b2)]["slot"] == slot, listed
    assert all(c.failure is None for c in pool.conns), [c.failure for c in pool.conns if c.failure]
    assert all(c.ok_after(t_rm) > 0 for c in pool.on(b2))
    check_shares(s2, {b1: 1, b2: 1}, "after re-adding the draining backend")


def test_removed_backend_leaves_list_when_its_flows_end(lab, record_property):
    b1, b2, _ = lab.topo.backend_ips
    reset(lab, {b1: 1, b2: 1})
    pool = ConnPool(lab.topo.client)
    try:
        pool.fill([b2], per_backend=2)
        lab.lbctl("backend", "remove", SERVICE, ep(b2))
        time.sleep(1.0)
        listed = backends_by_address(lab.sock, SERVICE)
        assert listed[ep(b2)]["state"] == "draining" and listed[ep(b2)]["active_flows"] >= 2, listed
        # Still draining while the connections live (reaping waits for them).
        assert all(c.failure is None for c in pool.conns)
    finally:
        pool.close()
    t_close = time.monotonic()
    wait_for(lambda: ep(b2) not in backends_by_address(lab.sock, SERVICE),
             f"{b2} to leave the list after its connections closed", 20, every=0.2)
    report(record_property, "reap",
           f"removed backend left `backend list` {time.monotonic() - t_close:.1f}s after its "
           f"last connection closed (flow timeouts fin_wait 2 s, time_wait 1 s)")
