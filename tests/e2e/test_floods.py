"""Spoofed floods against a running straitd, bounded in count and time.

The lab is the issue's: default timeouts, two SNAT addresses (192.0.2.10
and .20), three nginx backends, a TCP service on :80 and a UDP echo
service on :5353, with one worker and with two. The flood comes from
`strait-spoofflood` (tests/lib/flood.py) in the client namespace: 450,000
packets at most, 30 s at most, at FLOOD_RATE packets/s, sources cycling
over 60 addresses of the client's own /26 and random ports. Replies to
the spoofed sources die at the router (no such hosts).

* UDP: while and after 450,000 spoofed datagrams, a real client that
  opens a fresh socket (a new flow) for every datagram gets >= 99 % of
  them answered. Without early drop every spoofed datagram held a SNAT
  port (and with this test's backends answering them, for 120 s).
* TCP SYN: during and right after 450,000 spoofed SYNs, >= 99 % of fresh
  connections from the real client succeed and a keep-alive wrk sees 0
  errors: the issue's bar, met by the SYN proxy (syn_proxy = "auto",
  the default, switches the worker to SYN cookies) with early drop.

* TCP SYN on AF_XDP (`port = "xdp:lb0"`, one worker, SYN flood only): the
  same bar in the shared-NIC mode, where the kernel drops some frames
  before straitd sees them and the cookie handshake must recover.

What was measured is printed (packets sent, achieved rate, straitd's rx,
early drops by state, drops by reason) for the notes; the assertions are
on the real client's outcome only, never on time. The iptables relay's
figures for the same floods are in the benchmark (tools/bench), not here.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.ctl_helpers import Lab, Wrk, lab_fixture_body
from tests.lib.flood import Flood, FreshConnections, UdpEcho, UdpProbe
from tests.lib.require import require_lbctl, require_straitd
from tests.lib.straitd import Service
from tests.lib.topology import SNAT2, VIP, io_modes

FLOOD_PACKETS = 450_000
FLOOD_SECONDS = 30
# The offered rate. On the two-core CI machine straitd, the generator,
# three nginx, the Python UDP echoes and the router share two CPUs; this is
# the rate and what they sustain together without the real client
# itself being starved of CPU.
FLOOD_RATE = 40_000
UDP_PORT = 5353
AFTER_S = 5

# The production timeouts for the unassured states (the lab's defaults
# shorten only the closing ones).
TIMEOUTS = {"syn_sent": 30, "syn_recv": 30, "udp_unreplied": 30, "udp": 120,
            "fin_wait": 2, "close_wait": 2, "last_ack": 2, "time_wait": 1, "closed": 1}


@pytest.fixture(scope="module", params=[1, 2], ids=["1worker", "2workers"])
def lab(request):
    require_straitd()
    require_lbctl()
    echoes: list[UdpEcho] = []

    def start_echoes(topo) -> None:
        for ns, ip in zip(topo.backend_ns, topo.backend_ips):
            echoes.append(UdpEcho(ns, ip, UDP_PORT))

    try:
        yield from lab_fixture_body(Lab(
            backends=3, workers=request.param, dataplane={"timeouts": TIMEOUTS}, af_packet_frames=8192,
            before_start=start_echoes,
            services=lambda t: [
                Service("web", f"{VIP}:80", [f"{ip}:80" for ip in t.backend_ips], snat=[VIP, SNAT2]),
                Service("echo", f"{VIP}:{UDP_PORT}", [f"{ip}:{UDP_PORT}" for ip in t.backend_ips],
                        protocol="udp", snat=[VIP, SNAT2]),
            ]))
    finally:
        for e in echoes:
            e.stop()


def report(lab: Lab, what: str, flood, extra: str) -> None:
    m = lab.d.metrics()
    early = {s: int(m.value("strait_flows_early_dropped_total", state=s))
             for s in ("syn_sent", "syn_recv", "udp_unreplied")}
    drops = {r: int(v) for n, labels, v in m.samples if n == "strait_drops_total" and v
             for r in [labels.get("reason", "")]}
    rx = int(sum(v for n, _, v in m.samples if n == "strait_rx_packets_total"))
    cookies = {k: int(m.value(f"strait_syn_cookie{k}_total")) for k in ("s_sent", "s_validated", "_mode_entered")}
    cookies["backend_syn_resent"] = int(m.value("strait_syn_proxy_syn_resent_total"))
    # The port's own losses (the af_packet ring), which straitd's drop
    # counters cannot see.
    xstats = {labels.get("name", ""): int(v) for n, labels, v in m.samples
              if n == "strait_port_xstat" and v and any(k in labels.get("name", "") for k in
                                                        ("drop", "miss", "err", "nombuf"))}
    # On AF_XDP, what the kernel did not deliver to straitd's sockets.
    xstats.update({f"xsk_{labels.get('reason', '')}": int(v) for n, labels, v in m.samples
                   if n == "strait_xdp_socket_drops_total" and v})
    print(f"\n[flood] {what}, {lab.io}, {lab.workers} worker(s): sent {flood.sent} in {flood.seconds:.1f}s "
          f"({flood.rate:.0f}/s, {flood.errors} send retries); straitd rx {rx}; early drops {early}; "
          f"drops {drops}; syn cookies {cookies}; port losses {xstats}; {extra}")


def test_spoofed_udp_flood_real_client_answered(lab):
    # One retry, as a resolver makes: a datagram lost in an overflowing
    # ring on the two shared CPUs is not what this test is about; a flow
    # that finds no port or no table slot fails both tries.
    probe = UdpProbe(lab.topo.client, VIP, UDP_PORT, period=0.05, wait=1.0, tries=2)
    flood = Flood(lab.topo.client, "udp", VIP, UDP_PORT, count=FLOOD_PACKETS, seconds=FLOOD_SECONDS,
                  rate=FLOOD_RATE)
    probe.start()
    result = flood.result()
    probe.stop()
    during = (probe.sent, probe.answered, probe.first_try)
    after = UdpProbe(lab.topo.client, VIP, UDP_PORT, period=0.02, wait=1.0, limit=100, tries=2)
    after.start()
    after.join(timeout=100 * 2.1 + 10)
    report(lab, "UDP", result, f"real client during: {during[1]}/{during[0]} answered "
                               f"({during[2]} on the first try), after: {after.answered}/{after.sent} "
                               f"({after.first_try} on the first try)")
    assert result.sent > 0
    assert during[0] >= 20, f"the probe sent only {during[0]} datagrams during the flood"
    assert during[1] >= 0.99 * during[0], f"during the flood only {during[1]}/{during[0]} answered"
    assert after.sent == 100 and after.answered >= 99, f"after the flood {after.answered}/{after.sent}"


# The web service runs with the default syn_proxy = "auto": once a
# worker's half-open flows pass syn_proxy_half_open_enter it answers SYNs
# with cookies, so the spoofed SYNs take no flow, no port and no backend
# round trip. Early drop alone did not meet the bar at 40,000 SYN/s (every
# spoofed SYN reached a backend and came back as a SYN-ACK through straitd;
# measured: 4/5 and 21/22 fresh connections during the flood, 5 and 6 wrk
# errors).
def test_spoofed_syn_flood_real_client_served(lab):
    syn_flood_case(lab)


# The same SYN flood on the shared-NIC mode (`port = "xdp:lb0"`, AF_XDP copy
# mode on the veth, one worker). Here the kernel loses some frames before
# straitd sees them (the veth's XDP ring, the AF_XDP RX ring); a lost
# packet of a cookie handshake (the client's ACK, our SYN to the backend,
# its SYN-ACK) used to hang the connection until the client gave up, as
# nothing sent it again (measured: 53/55 and 7/8 fresh connections in the
# benchmark). straitd now opens the flow from the client's zero-window
# probe and resends the backend's SYN on the client's repeat.
@pytest.fixture(scope="module")
def xdp_lab():
    if "xdp" not in io_modes():
        pytest.skip("STRAIT_TEST_IO excludes the xdp mode")
    require_straitd()
    require_lbctl()
    yield from lab_fixture_body(Lab(
        backends=3, workers=1, io="xdp", dataplane={"timeouts": TIMEOUTS},
        services=lambda t: [Service("web", f"{VIP}:80", [f"{ip}:80" for ip in t.backend_ips],
                                    snat=[VIP, SNAT2])]))


def test_spoofed_syn_flood_real_client_served_xdp(xdp_lab):
    syn_flood_case(xdp_lab)


def syn_flood_case(lab: Lab) -> None:
    wrk = Wrk(lab.topo.client, f"http://{VIP}/", seconds=FLOOD_SECONDS + AFTER_S + 5, conns=4)
    time.sleep(1)
    fresh = FreshConnections(lab.topo.client, VIP, 80).start()
    flood = Flood(lab.topo.client, "syn", VIP, 80, count=FLOOD_PACKETS, seconds=FLOOD_SECONDS,
                  rate=FLOOD_RATE)
    result = flood.result()
    fresh.stop()
    after = FreshConnections(lab.topo.client, VIP, 80).start()
    time.sleep(AFTER_S)
    after.stop()
    w = wrk.result()
    report(lab, "TCP SYN", result,
           f"fresh connections during: {fresh.ok}/{fresh.total}, after: {after.ok}/{after.total}; "
           f"wrk {w.requests} requests, {w.errors} errors; first failures {fresh.failures[:3]}")
    assert result.sent > 0
    assert fresh.total >= 20 and after.total >= 20
    assert fresh.ok >= 0.99 * fresh.total, f"during: {fresh.ok}/{fresh.total}: {fresh.failures[:5]}"
    assert after.ok >= 0.99 * after.total, f"after: {after.ok}/{after.total}: {after.failures[:5]}"
    assert w.errors == 0, w.output
