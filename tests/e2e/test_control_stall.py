"""Control work against a full flow table, read through the worker-loop
stall metric of a running straitd.

A bounded spoofed UDP flood (tests/lib/flood.py: by default 101,315
datagrams at most, 20 s at most, for about 100,000 flows) fills one
worker's table with unreplied UDP flows that stay (udp_unreplied = 300 s). Then, each after a metrics scrape (which
resets `strait_worker_loop_max_seconds`):

* `lbctl flows --limit 10` (the worker's dump cursor runs until the
  buffer holds 10 matching flows) and a dump filtered to the web service
  (no flooded flow matches, so the cursor walks the whole table);
* `lbctl backend remove --flush` of every backend of the flooded service
  (the flush sweep removes every flooded flow in bounded steps).

What the loop did meanwhile (longest iteration, iterations over 50 us by
the histogram) is printed for docs/benchmarks.md; the assertions are on
the outcome only (the dumps answer, the flush removes the flows), never
on time: this machine's two CPUs are shared with everything else.

STRAIT_TEST_STALL_FLOWS sets how many flows the flood aims at (default
100,000, what the test tier runs): `STRAIT_TEST_STALL_FLOWS=1000000` gives
the figure at a million flows in docs/benchmarks.md (a 30 s flood; the
flow table sized for it, and enough SNAT addresses that the ports of 3
backends hold every flow without early drop).
"""

from __future__ import annotations

import ipaddress
import math
import os
from pathlib import Path

import pytest

from tests.e2e.ctl_helpers import Lab, lab_fixture_body, wait_for
from tests.lib.flood import SPOOF_COUNT, Flood
from tests.lib.require import require_lbctl, require_straitd
from tests.lib.straitd import Service
from tests.lib.topology import SNAT2, VIP

UDP_PORT = 5353
FLOWS = int(os.environ.get("STRAIT_TEST_STALL_FLOWS", "100000"))
# The flood draws source ports at random (1024-65535) over SPOOF_COUNT
# addresses: some datagrams repeat a flow, so it sends enough for about
# FLOWS distinct ones (-N ln(1 - FLOWS/N) draws from N tuples).
SOURCES = SPOOF_COUNT * 64_512
FLOOD_PACKETS = math.ceil(-SOURCES * math.log(1 - FLOWS / SOURCES))
FLOOD_RATE = 40_000
FLOOD_SECONDS = max(20, 2 * FLOOD_PACKETS // FLOOD_RATE)
# A power of two with a quarter to spare: 131,072 for the default flood.
CAPACITY = 1 << (FLOWS + FLOWS // 4 - 1).bit_length()
# Each SNAT address has 64,512 ports per backend: 193,536 flows over the 3
# backends. Beyond that, more addresses (from SNAT2 on, in the straitd
# link's subnet), else early drop would recycle the flooded flows.
SNAT_ADDRESSES = -(-FLOWS // 150_000)
SNAT = None if SNAT_ADDRESSES == 1 else [
    str(ipaddress.IPv4Address(SNAT2) + i) for i in range(SNAT_ADDRESSES)]


@pytest.fixture(scope="module")
def lab():
    require_straitd()
    require_lbctl()
    yield from lab_fixture_body(Lab(
        backends=3, workers=1, af_packet_frames=8192,
        dataplane={"flow_capacity": CAPACITY,
                   "timeouts": {"udp_unreplied": 300, "fin_wait": 2, "close_wait": 2, "last_ack": 2,
                                "time_wait": 1, "closed": 1}},
        services=lambda t: [
            Service("web", f"{VIP}:80", [f"{ip}:80" for ip in t.backend_ips]),
            Service("echo", f"{VIP}:{UDP_PORT}", [f"{ip}:{UDP_PORT}" for ip in t.backend_ips],
                    protocol="udp", snat=SNAT),
        ]))


def worker_sched(lab: Lab) -> tuple[float, int]:
    """How the kernel scheduled straitd's worker threads (DPDK names them
    rte-worker-N): seconds spent runnable but not running, involuntary
    switches. A worker preempted by another thread shows a loop iteration
    of milliseconds that says nothing about the work it was doing."""
    wait_ns, switches = 0, 0
    if lab.d.proc is None:
        return 0.0, 0
    for task in Path(f"/proc/{lab.d.proc.pid}/task").iterdir():
        try:
            if not (task / "comm").read_text().startswith(("rte-worker", "lcore-worker")):
                continue
            wait_ns += int((task / "schedstat").read_text().split()[1])
            for line in (task / "status").read_text().splitlines():
                if line.startswith("nonvoluntary_ctxt_switches:"):
                    switches += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return wait_ns / 1e9, switches


def steal_seconds() -> float:
    """Time the hypervisor ran something else instead of this VM's CPUs."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def loop_figures(lab: Lab) -> dict:
    """Scrapes once: the longest iteration since the previous scrape (the
    scrape resets it) and the cumulative histogram buckets of worker 0;
    with them the worker threads' scheduling and the machine's steal time."""
    wait_s, switches = worker_sched(lab)
    m = lab.d.metrics()
    buckets = {float(labels["le"]): v for n, labels, v in m.samples
               if n == "strait_worker_loop_seconds_bucket" and labels.get("worker") == "0"}
    at_50us = next(v for le, v in buckets.items() if abs(le - 50e-6) < 1e-9)
    return {"max_s": m.value("strait_worker_loop_max_seconds", worker="0"),
            "loops": m.value("strait_worker_loops_total", worker="0"),
            "over_50us": buckets[float("inf")] - at_50us,
            "flows": m.value("strait_flows_active"),
            "wait_s": wait_s, "switches": switches, "steal_s": steal_seconds(),
            "flushed": m.value("strait_flows_flushed_total")}


def between(before: dict, after: dict) -> str:
    return (f"{after['loops'] - before['loops']:.0f} iterations, {after['over_50us'] - before['over_50us']:.0f} "
            f"over 50 us, longest {after['max_s'] * 1e6:.0f} us; worker thread runnable but not running "
            f"{(after['wait_s'] - before['wait_s']) * 1e3:.1f} ms, {after['switches'] - before['switches']} "
            f"involuntary switches; steal {(after['steal_s'] - before['steal_s']) * 1e3:.0f} ms")


def test_dump_and_flush_over_a_full_table(lab):
    flood = Flood(lab.topo.client, "udp", VIP, UDP_PORT, count=FLOOD_PACKETS, seconds=FLOOD_SECONDS,
                  rate=FLOOD_RATE).result()
    assert flood.sent > 0
    # Every flow the flood made stays in the table (none expires for 300 s).
    idle0 = loop_figures(lab)
    flows = idle0["flows"]
    assert flows > 1000, f"the flood left only {flows:.0f} flows"
    idle = loop_figures(lab)  # an idle interval, for reference

    first = lab.d.lbctl_json("flows", "--limit", "10")["result"]["flows"]
    after_dump = loop_figures(lab)
    assert len(first) == 10, first
    none = lab.d.lbctl_json("flows", "--service", "web", "--limit", "10")["result"]["flows"]
    after_scan = loop_figures(lab)
    assert none == [], none  # no flooded flow belongs to web: the cursor walked the whole table

    for ip in lab.topo.backend_ips:
        lab.lbctl("backend", "remove", "echo", f"{ip}:{UDP_PORT}", "--flush")
    # Waiting reads `lbctl stats`, not the metrics: a scrape would reset the maximum.
    wait_for(lambda: lab.d.lbctl_json("stats")["result"]["flows"]["active"] == 0, "the flush to remove every flow",
             max(30, FLOWS // 10_000),
             every=0.2)
    after_flush = loop_figures(lab)
    assert after_flush["flushed"] - after_scan["flushed"] >= flows

    print(f"\n[control-stall] {lab.workers} worker, {flows:.0f} flows in the table "
          f"(flood: {flood.sent} datagrams in {flood.seconds:.1f}s):\n"
          f"  idle interval: {between(idle0, idle)}\n"
          f"  lbctl flows --limit 10: {between(idle, after_dump)}\n"
          f"  lbctl flows --service web (whole table, nothing matches): {between(after_dump, after_scan)}\n"
          f"  backend remove --flush x3 until the table is empty: {between(after_scan, after_flush)}")
