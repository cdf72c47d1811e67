"""DNS-named backends against a real dnsmasq.

dnsmasq runs in a namespace of its own on the backend bridge
(203.0.113.53), answering A records from a hosts file with a 1 s TTL;
straitd reaches it over the management link (`[control] resolver`,
`dns_min_ttl_s = 1`, `dns_max_ttl_s = 2`). Service `app` has one backend,
`app.strait.test:80`. Checked:

* the name's addresses become the service's backends and take traffic;
* when the answer changes (hosts file rewritten, SIGHUP to dnsmasq by
  pid) the backends follow within dns_max_ttl_s + MARGIN_S (measured and
  printed); an address that left drains: its keep-alive connections carry
  on without a failure, it takes no new connection, and it leaves the list
  once its connections are closed;
* a resolver outage keeps the last good answer (the service never empties);
* lbctl adds, re-weights and removes DNS-named backends; an address that
  comes from a name cannot be removed or re-weighted on its own; a name
  that does not resolve is listed as such and harms nothing.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.ctl_helpers import (DNS_IP, ConnPool, Lab, backends_by_address, control,
                                   lab_fixture_body, sample_new_connections, svc, wait_for,
                                   wait_picked_up)
from tests.lib.require import require_lbctl, require_straitd
from tests.lib.topology import VIP, backend_ip

SERVICE = "app"
NAME = "app.strait.test"
OTHER = "other.strait.test"
MAX_TTL_S = 2
MARGIN_S = 1.5
FOLLOW_BOUND_S = MAX_TTL_S + MARGIN_S

B1, B2, B3 = (backend_ip(i) for i in range(3))


@pytest.fixture(scope="module")
def lab():
    require_straitd()
    require_lbctl()
    yield from lab_fixture_body(Lab(
        backends=3, workers=1,
        dns_records={NAME: [B1, B2], OTHER: [B3]},
        control={"resolver": f"{DNS_IP}:53", "dns_min_ttl_s": 1, "dns_max_ttl_s": MAX_TTL_S},
        services=lambda t: [svc(SERVICE, f"{VIP}:80", [f"{NAME}:80"])]))


def active(lab: Lab) -> dict[str, dict]:
    return {a: b for a, b in backends_by_address(lab.sock, SERVICE).items() if b["state"] == "active"}


def set_answer(lab: Lab, records: dict[str, list[str]]) -> float:
    lab.dns.write(records)
    lab.dns.reload()
    return time.monotonic()


@pytest.fixture
def answer_b1_b2(lab):
    """The name answers B1, B2 and the service has exactly those."""
    set_answer(lab, {NAME: [B1, B2], OTHER: [B3]})
    wait_for(lambda: set(backends_by_address(lab.sock, SERVICE)) == {f"{B1}:80", f"{B2}:80"},
             "backends B1, B2 only", 20, every=0.2)
    wait_picked_up(lab.sock)
    return lab


def test_name_resolves_to_backends(answer_b1_b2):
    lab = answer_b1_b2
    r = control(lab.sock, "backend list", service=SERVICE)
    assert r["dns"] == [{"name": f"{NAME}:80", "weight": 1, "addresses": [B1, B2]}], r["dns"]
    for b in r["backends"]:
        assert b["dns_names"] == [f"{NAME}:80"] and b["health"] == "up", b
    table = lab.lbctl("backend", "list", SERVICE).stdout.decode()
    assert f"{NAME}:80" in table and f"{B1},{B2}" in table, table
    s = sample_new_connections(lab.topo.client, 30)
    assert not s.failures and set(s.counts) == {B1, B2}, (s.counts, s.failures[:3])


def test_answer_change_is_followed_and_old_address_drains(answer_b1_b2, record_property):
    lab = answer_b1_b2
    pool = ConnPool(lab.topo.client)
    try:
        pool.fill([B1, B2], per_backend=2)
        t0 = set_answer(lab, {NAME: [B2, B3], OTHER: [B3]})
        wait_for(lambda: set(active(lab)) == {f"{B2}:80", f"{B3}:80"},
                 "backends to follow the new answer", FOLLOW_BOUND_S + 5, every=0.05)
        follow_s = time.monotonic() - t0
        wait_picked_up(lab.sock)
        listed = backends_by_address(lab.sock, SERVICE)
        s = sample_new_connections(lab.topo.client, 60)
        wait_for(lambda: all(c.ok_after(t0 + follow_s) >= 3 or c.failure for c in pool.on(B1)),
                 "connections on the dropped address to be served", 10)
    finally:
        pool.close()
    text = (f"dns: answer changed {B1},{B2} -> {B2},{B3}; backends followed after {follow_s:.2f}s "
            f"(bound {FOLLOW_BOUND_S:.1f}s); new connections {dict(s.counts)}; keep-alive pool "
            f"{ {b: (v['connections'], v['requests_ok'], v['failed']) for b, v in pool.report().items()} } "
            f"(connections, requests, failed)")
    print(text)
    record_property("dns_follow", text)
    assert follow_s <= FOLLOW_BOUND_S, text
    assert listed[f"{B1}:80"]["state"] == "draining", listed
    assert listed[f"{B1}:80"]["active_flows"] >= len(pool.on(B1)), listed
    assert not s.failures and set(s.counts) == {B2, B3}, (s.counts, s.failures[:3], lab.log_tail(30))
    failed = [(c.backend, c.failure) for c in pool.conns if c.failure]
    assert not failed, failed
    wait_for(lambda: f"{B1}:80" not in backends_by_address(lab.sock, SERVICE),
             f"{B1} to leave the list after its connections closed", 20, every=0.2)


def test_resolver_outage_keeps_last_answer(answer_b1_b2):
    lab = answer_b1_b2
    lab.dns.stop()
    try:
        # Several re-resolutions fail meanwhile (TTL 1 s, retried every
        # dns_min_ttl_s).
        time.sleep(3 * MAX_TTL_S)
        assert set(active(lab)) == {f"{B1}:80", f"{B2}:80"}
        assert "event=dns_lookup_failed" in lab.log_tail(200) and "kept_addresses=2" in lab.log_tail(200), lab.log_tail(20)
        s = sample_new_connections(lab.topo.client, 20)
        assert not s.failures and set(s.counts) == {B1, B2}, (s.counts, s.failures[:3])
    finally:
        lab.dns.start()
    # And the watcher picks the resolver up again.
    set_answer(lab, {NAME: [B1], OTHER: [B3]})
    wait_for(lambda: set(active(lab)) == {f"{B1}:80"}, "answer after the outage", 3 * MAX_TTL_S + 5)


def test_lbctl_manages_dns_named_backends(answer_b1_b2):
    lab = answer_b1_b2
    lab.lbctl("backend", "add", SERVICE, f"{OTHER}:80", "--weight", "2")
    wait_for(lambda: f"{B3}:80" in active(lab), f"{OTHER} resolved to {B3}", FOLLOW_BOUND_S + 5)
    b3 = active(lab)[f"{B3}:80"]
    assert b3["weight"] == 2 and b3["dns_names"] == [f"{OTHER}:80"], b3

    # Addresses from a name are managed through the name.
    r = lab.lbctl("backend", "remove", SERVICE, f"{B1}:80", check=False)
    assert r.returncode == 1 and b"comes from DNS name" in r.stderr, r.stderr
    r = lab.lbctl("backend", "set", SERVICE, f"{B1}:80", "--weight", "3", check=False)
    assert r.returncode == 1 and b"comes from DNS name" in r.stderr, r.stderr
    lab.lbctl("backend", "set", SERVICE, f"{NAME}:80", "--weight", "3")
    now = active(lab)
    assert now[f"{B1}:80"]["weight"] == 3 and now[f"{B2}:80"]["weight"] == 3, now

    # A name that does not resolve is listed as such and changes nothing.
    lab.lbctl("backend", "add", SERVICE, "nosuch.strait.test:80")
    time.sleep(MAX_TTL_S)
    wait_picked_up(lab.sock)
    table = lab.lbctl("backend", "list", SERVICE).stdout.decode()
    assert "nosuch.strait.test:80" in table and "(not resolved)" in table, table
    assert set(active(lab)) == {f"{B1}:80", f"{B2}:80", f"{B3}:80"}
    assert "nosuch.strait.test" in lab.log_tail(200)
    s = sample_new_connections(lab.topo.client, 40)
    assert not s.failures and set(s.counts) == {B1, B2, B3}, (s.counts, s.failures[:3])

    lab.lbctl("backend", "remove", SERVICE, "nosuch.strait.test:80")
    lab.lbctl("backend", "remove", SERVICE, f"{OTHER}:80")
    now = backends_by_address(lab.sock, SERVICE)
    assert f"{B3}:80" not in active(lab) and now.get(f"{B3}:80", {}).get("state") in (None, "draining"), now
    lab.lbctl("backend", "set", SERVICE, f"{NAME}:80", "--weight", "1")
    cfg = lab.lbctl("config", "show").stdout.decode()
    assert f'"{NAME}:80"' in cfg and OTHER not in cfg, cfg


def test_answer_with_our_own_address_is_not_used(answer_b1_b2):
    """A DNS answer naming the VIP (or any address of ours) must not make
    straitd send traffic to itself: that address is left out."""
    lab = answer_b1_b2
    set_answer(lab, {NAME: [B1, VIP, "127.0.0.1"], OTHER: [B3]})
    wait_for(lambda: set(active(lab)) == {f"{B1}:80"}, "the answer's usable address only",
             FOLLOW_BOUND_S + 5, every=0.1)
    time.sleep(MAX_TTL_S)   # a few more lookups: still only B1
    wait_picked_up(lab.sock)
    assert set(backends_by_address(lab.sock, SERVICE)) <= {f"{B1}:80", f"{B2}:80"}
    s = sample_new_connections(lab.topo.client, 20)
    assert not s.failures and set(s.counts) == {B1}, (s.counts, s.failures[:3])
