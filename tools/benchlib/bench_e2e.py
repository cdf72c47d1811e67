#!/usr/bin/python3
"""End-to-end benchmark: straitd against the relay it replaces, side by side.

One topology (tests/lib/topology.py's EC2-like shape: client namespace
198.51.100.2, a VPC-like router, the relay one-armed on its veth `lb0`, two
nginx backends 203.0.113.11/.12 with UDP sinks) and, on the relay's veth in
turn:

* straitd (DPDK net_af_packet on lb0; VIP and SNAT 192.0.2.10, one worker);
* straitd in the shared-NIC mode (`port = "xdp:lb0"`: AF_XDP with Strait's
  XDP program in native mode on the veth; lb0 keeps a kernel address,
  192.0.2.5, as a shared NIC would; same services, one worker);
* the iptables relay as such relays are built today: a kernel namespace
  holding 192.0.2.10 on that same veth, ip_forward=1, `-m statistic --mode
  random` DNAT rules spreading the VIP over the backends, MASQUERADE towards
  them, default conntrack.

Each round runs the same loads against all three (the order rotates per
round, so drift on a shared machine falls on every side): wrk with
keep-alive connections, wrk with a new connection per request, and a
bounded UDP blast (tools/benchlib/udpblast.c) counted where it arrives.
The first round also floods each relay (unless --no-floods): a bounded
spoofed SYN flood and a bounded spoofed UDP flood
(tools/benchlib/spoofflood.c, the same as tests/e2e/test_floods.py),
counting what a real client gets through during and after each.
Figures are medians over rounds; ratios are against iptables (and AF_XDP
against af_packet) from the same run. Nothing here asserts a time: it prints tables and writes them (and the
raw figures as JSON) to files for tools/bench to put in docs/benchmarks.md.

Run it through tools/bench (which installs dependencies and builds first);
it needs root (namespaces) and the build's straitd.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.lib.flood import Flood, FreshConnections, UdpEcho, UdpProbe  # noqa: E402
from tests.lib.netns import (CommandError, add_addr, add_route, make_netns, ns_cmd,  # noqa: E402
                             ns_sh, sh)
from tests.lib.straitd import Service, Straitd, binary_works, eal_memory_args, straitd_path  # noqa: E402
from tests.lib.topology import (BACKEND_NET, GATEWAY_IP, LB_IP, LB_KERNEL_IP, VIP,  # noqa: E402
                                Ec2Topology)

HTTP_PORT = 80
UDP_PORT = 9000
ECHO_PORT = 5353   # the UDP flood's service: an echo on every backend
FLOOD_AFTER_S = 5
UDP_SPORT_BASE = 40000
STRAITD = "straitd"
STRAITD_XDP = "straitd-xdp"
IPTABLES = "iptables"
RELAYS = [STRAITD, STRAITD_XDP, IPTABLES]
LOADS = ["http_keepalive", "http_close", "udp", "syn_flood", "udp_flood"]
RELAY_TITLE = {
    STRAITD: "straitd (af_packet)",
    STRAITD_XDP: "straitd (AF_XDP, xdp:lb0)",
    IPTABLES: "iptables DNAT + MASQUERADE",
}
# The ratio rows: (numerator, denominator).
RATIOS = [(STRAITD, IPTABLES), (STRAITD_XDP, IPTABLES), (STRAITD_XDP, STRAITD)]


def log(msg: str) -> None:
    print(f"bench-e2e: {msg}", file=sys.stderr, flush=True)


# --- the UDP tool --------------------------------------------------------------

def build_udpblast(out_dir: Path) -> Path:
    """Compiles tools/benchlib/udpblast.c into the build directory when the
    binary is missing or older than its source."""
    src = REPO / "tools" / "benchlib" / "udpblast.c"
    exe = out_dir / "strait-udpblast"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        out_dir.mkdir(parents=True, exist_ok=True)
        sh(["cc", "-O2", "-Wall", "-Wextra", "-o", str(exe), str(src)], timeout=120)
    return exe


# --- relays ----------------------------------------------------------------------

class StraitdRelay:
    """straitd on lb0 in the topology's lb namespace, on DPDK's af_packet PMD
    or (io="xdp") in the shared-NIC mode, where lb0 also holds a kernel
    address for the length of the phase."""

    def __init__(self, topo: Ec2Topology, idle_sleep_us: int, flow_capacity: int,
                 io: str = "af_packet") -> None:
        self.io = io
        self.name = STRAITD_XDP if io == "xdp" else STRAITD
        self.topo = topo
        self.idle_sleep_us = idle_sleep_us
        self.flow_capacity = flow_capacity
        self.d: Straitd | None = None

    def describe(self) -> str:
        # What the running instance got (tests/lib picks by free hugepages).
        text = self.d.config_text if self.d else " ".join(eal_memory_args())
        mem = "--no-huge" if "--no-huge" in text else "hugepages"
        poll = ("busy polling (`idle_sleep_us = 0`)" if self.idle_sleep_us == 0 else
                f"polling, sleeping {self.idle_sleep_us} us when a poll finds nothing "
                f"(`idle_sleep_us = {self.idle_sleep_us}`)")
        port = ("`port = \"xdp:lb0\"`: DPDK net_af_xdp on lb0 with Strait's XDP program (native "
                f"XDP on the veth, AF_XDP copy mode), lb0 also holding the kernel address {LB_KERNEL_IP}"
                if self.io == "xdp" else "DPDK net_af_packet on lb0")
        return (f"straitd, `workers = 1`, {poll}, {port}, EAL memory {mem}, "
                f"`flow_capacity = {self.flow_capacity}`; VIP and SNAT address 192.0.2.10")

    def start(self) -> None:
        backends = self.topo.backend_ips
        services = [
            Service("web", f"{VIP}:{HTTP_PORT}", [f"{ip}:{HTTP_PORT}" for ip in backends]),
            Service("blast", f"{VIP}:{UDP_PORT}", [f"{ip}:{UDP_PORT}" for ip in backends],
                    protocol="udp"),
            Service("echo", f"{VIP}:{ECHO_PORT}", [f"{ip}:{ECHO_PORT}" for ip in backends],
                    protocol="udp"),
        ]
        if self.io == "xdp":
            add_addr(self.topo.lb, "lb0", f"{LB_KERNEL_IP}/24")
        self.d = Straitd(self.topo.lb, self.topo.workdir, services=services, workers=1,
                         dataplane={"idle_sleep_us": self.idle_sleep_us,
                                    "flow_capacity": self.flow_capacity},
                         log_level="warn", io=self.io)
        self.d.start()

    def counters(self) -> dict:
        """Packet counts, drops by reason and the port's extended statistics
        (flat, for deltas around a load)."""
        if self.d is None or not self.d.alive():
            return {}
        try:
            m = self.d.metrics()
        except CommandError:
            return {}
        c = {"rx_packets": m.value("strait_rx_packets_total"),
             "tx_packets": m.value("strait_tx_packets_total")}
        for lab, v in m.series("strait_drops_total"):
            c[f"drop:{lab.get('reason', '?')}"] = v
        for lab, v in m.series("strait_flows_early_dropped_total"):
            c[f"early:{lab.get('state', '?')}"] = v
        for lab, v in m.series("strait_port_xstat"):
            c[f"xstat:{lab.get('name', '?')}"] = c.get(f"xstat:{lab.get('name', '?')}", 0) + v
        for lab, v in m.series("strait_xdp_verdicts_total"):
            c[f"xdp:{lab.get('verdict', '?')}"] = v
        for lab, v in m.series("strait_xdp_socket_drops_total"):
            c[f"xsk:{lab.get('reason', '?')}"] = v
        for name in ("strait_syn_cookies_sent_total", "strait_syn_cookies_validated_total",
                     "strait_syn_proxy_syn_resent_total"):
            for _, v in m.series(name):
                c[name.removeprefix("strait_").removesuffix("_total")] = v
        return c

    def stop(self) -> None:
        if self.d is not None:
            rc = self.d.stop()
            if rc not in (0, None):
                log(f"straitd exited {rc}; log tail:\n{self.d.log_tail()}")
            self.d = None
        if self.io == "xdp":
            ns_sh(self.topo.lb, ["ip", "addr", "flush", "dev", "lb0"], check=False)


class IptablesRelay:
    """The relay straitd replaces, in a fresh kernel namespace that takes
    over lb0 (the same veth, MAC and router-facing position) for the length
    of one phase. A fresh namespace each time means no conntrack state or
    netfilter hooks survive into the next straitd phase, where the kernel
    behind lb0 must stay idle."""

    name = IPTABLES

    def __init__(self, topo: Ec2Topology, seq: int) -> None:
        self.topo = topo
        self.ns = f"{topo.prefix}-krelay{seq}"
        self.made = False
        self.moved = False

    def describe(self) -> str:
        return ("Linux kernel forwarding in a namespace holding 192.0.2.10/24 on lb0: "
                "iptables nat PREROUTING DNAT with `-m statistic --mode random --probability 0.5` "
                "(TCP 80, UDP 9000 and 5353 to the two backends), POSTROUTING MASQUERADE towards "
                f"{BACKEND_NET}, ip_forward=1, conntrack defaults")

    def start(self) -> None:
        self.made = True  # before: a half-made namespace must be deleted too
        make_netns(self.ns, _NoCleanup(), forwarding=True)
        sh(["ip", "-n", self.topo.lb, "link", "set", "lb0", "netns", self.ns])
        self.moved = True
        ns_sh(self.ns, ["ip", "link", "set", "lb0", "up"])
        add_addr(self.ns, "lb0", f"{LB_IP}/24")
        add_route(self.ns, "default", GATEWAY_IP)
        b1, b2 = self.topo.backend_ips[:2]
        rules = []
        for proto, port in (("tcp", HTTP_PORT), ("udp", UDP_PORT), ("udp", ECHO_PORT)):
            rules.append(["-A", "PREROUTING", "-d", VIP, "-p", proto, "--dport", str(port),
                          "-m", "statistic", "--mode", "random", "--probability", "0.5",
                          "-j", "DNAT", "--to-destination", f"{b1}:{port}"])
            rules.append(["-A", "PREROUTING", "-d", VIP, "-p", proto, "--dport", str(port),
                          "-j", "DNAT", "--to-destination", f"{b2}:{port}"])
        rules.append(["-A", "POSTROUTING", "-d", BACKEND_NET, "-j", "MASQUERADE"])
        for r in rules:
            ns_sh(self.ns, ["iptables", "-t", "nat", *r])

    def counters(self) -> dict:
        """Packets that took each DNAT rule (the nat table sees a flow's
        first packet only)."""
        r = ns_sh(self.ns, ["iptables", "-t", "nat", "-L", "PREROUTING", "-v", "-x", "-n"],
                  check=False)
        rows = [line.split() for line in r.stdout.decode(errors="replace").splitlines()
                if "DNAT" in line]
        return {f"dnat:{row[-1]}:{i}": int(row[0]) for i, row in enumerate(rows)}

    def stop(self) -> None:
        # lb0 goes back to the lb namespace (straitd's next phase needs it);
        # deleting the namespace then drops its conntrack table and rules.
        if self.moved:
            ns_sh(self.ns, ["ip", "addr", "flush", "dev", "lb0"], check=False)
            sh(["ip", "-n", self.ns, "link", "set", "lb0", "netns", self.topo.lb], check=False)
            ns_sh(self.topo.lb, ["ip", "link", "set", "lb0", "up"], check=False)
            self.moved = False
        if self.made:
            sh(["ip", "netns", "del", self.ns], check=False)
            self.made = False


class _NoCleanup:
    """make_netns wants a Cleanup; IptablesRelay.stop() undoes its own."""

    def push(self, what, fn) -> None:  # noqa: D401 - protocol
        pass


# --- loads -----------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict:
    res: dict = {}
    m = re.search(r"(\d+) requests in ([0-9.]+)(\w+)", out)
    if not m:
        raise CommandError(f"wrk printed no request count:\n{out}")
    res["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        res[f"p{pct}_ms"] = _ms(m.group(1)) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = {k: int(v) for k, v in zip(("connect", "read", "write", "timeout"),
                                                      m.groups())} if m else {}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    return res


def run_wrk(topo: Ec2Topology, args: argparse.Namespace, close: bool) -> dict:
    argv = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s",
            "--timeout", "5s", "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"http://{VIP}/")
    r = topo.client_sh(argv, timeout=args.seconds + 30)
    res = parse_wrk(r.stdout.decode(errors="replace"))
    res["argv"] = shlex.join(argv)
    return res


def _udp_snmp(ns: str) -> dict:
    """The Udp: line of /proc/net/snmp in `ns` (per-namespace counters)."""
    text = ns_sh(ns, ["cat", "/proc/net/snmp"]).stdout.decode()
    rows = [line.split()[1:] for line in text.splitlines() if line.startswith("Udp:")]
    return {k: int(v) for k, v in zip(rows[0], rows[1])}


def run_udp(topo: Ec2Topology, blast: Path, args: argparse.Namespace) -> dict:
    """Sinks on every backend, one bounded blast from the client, then wait
    until the backends stop receiving (at most 5 s) and collect."""
    sinks: list[subprocess.Popen] = []
    before = [_udp_snmp(ns) for ns in topo.backend_ns]
    try:
        for ns, ip in zip(topo.backend_ns, topo.backend_ips):
            p = subprocess.Popen(ns_cmd(ns, [str(blast), "sink", ip, str(UDP_PORT),
                                             str(args.udp_seconds + 30)]),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 start_new_session=True)
            sinks.append(p)
            line = p.stdout.readline()
            if b"ready" not in line:
                raise CommandError(f"UDP sink in {ns} did not start: {p.stderr.read()!r}")
        r = topo.client_sh([str(blast), "send", VIP, str(UDP_PORT), str(args.udp_count),
                            str(args.udp_seconds), str(args.udp_size), str(args.udp_flows),
                            str(UDP_SPORT_BASE)], timeout=args.udp_seconds + 30)
        sent = json.loads(r.stdout)
        # Drain: the relay may still hold packets in its rings.
        total = -1
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = sum(s["InDatagrams"] + s["InErrors"] for s in map(_udp_snmp, topo.backend_ns))
            if now == total:
                break
            total = now
        results = []
        for p in sinks:
            p.send_signal(signal.SIGTERM)
            out, _ = p.communicate(timeout=10)
            results.append(json.loads(out.decode().strip().splitlines()[-1]))
    finally:
        for p in sinks:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    after = [_udp_snmp(ns) for ns in topo.backend_ns]
    sink_drops = sum(a["RcvbufErrors"] - b["RcvbufErrors"] for a, b in zip(after, before))
    received = sum(s["received"] for s in results)
    delivered = received + sink_drops
    last = max((s["last_ns"] for s in results), default=0)
    window = (last - sent["first_ns"]) / 1e9 if last else 0.0
    return {
        "sent": sent["sent"],
        "send_errors": sent["send_errors"],
        "send_seconds": sent["seconds"],
        "offered_pps": sent["sent"] / sent["seconds"] if sent["seconds"] else 0.0,
        "delivered": delivered,
        "per_backend": [s["received"] for s in results],
        "sink_drops": sink_drops,
        "loss_pct": 100.0 * (1 - delivered / sent["sent"]) if sent["sent"] else 0.0,
        "window_seconds": window,
        "delivered_pps": delivered / window if window > 0 else 0.0,
    }


def run_syn_flood(topo: Ec2Topology, args: argparse.Namespace) -> dict:
    """Fresh connections from the real client during a bounded spoofed SYN
    flood and for FLOOD_AFTER_S after it."""
    during = FreshConnections(topo.client, VIP, HTTP_PORT).start()
    flood = Flood(topo.client, "syn", VIP, HTTP_PORT, count=args.flood_count,
                  seconds=args.flood_seconds, rate=args.flood_rate)
    r = flood.result()
    during.stop()
    after = FreshConnections(topo.client, VIP, HTTP_PORT).start()
    time.sleep(FLOOD_AFTER_S)
    after.stop()
    return {"sent": r.sent, "rate": r.rate, "seconds": r.seconds,
            "during_ok": during.ok, "during_total": during.total,
            "after_ok": after.ok, "after_total": after.total,
            "failures": (during.failures + after.failures)[:5]}


def run_udp_flood(topo: Ec2Topology, args: argparse.Namespace) -> dict:
    """A real client's datagrams, each from a fresh socket, answered
    during a bounded spoofed UDP flood and after it (100 datagrams)."""
    probe = UdpProbe(topo.client, VIP, ECHO_PORT, period=0.05, wait=2.0)
    flood = Flood(topo.client, "udp", VIP, ECHO_PORT, count=args.flood_count,
                  seconds=args.flood_seconds, rate=args.flood_rate)
    probe.start()
    r = flood.result()
    probe.stop()
    after = UdpProbe(topo.client, VIP, ECHO_PORT, period=0.02, wait=2.0, limit=100)
    after.start()
    after.join(timeout=100 * 2.1 + 10)
    return {"sent": r.sent, "rate": r.rate, "seconds": r.seconds,
            "during_ok": probe.answered, "during_total": probe.sent,
            "after_ok": after.answered, "after_total": after.sent}


def wait_vip(topo: Ec2Topology, timeout: float = 30.0) -> None:
    """First requests may meet an unresolved neighbour; wait for an answer."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        r = topo.client_sh(["curl", "-sS", "--max-time", "2", f"http://{VIP}/"], check=False,
                           timeout=10)
        if r.returncode == 0 and r.stdout.startswith(b"backend "):
            return
        last = r.stderr.decode(errors="replace").strip()
        time.sleep(0.2)
    raise CommandError(f"no answer through the VIP within {timeout}s ({last})")


def delta(before: dict, after: dict) -> dict:
    """Counter increases over one load (only the ones that moved)."""
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def summary(res: dict) -> str:
    if "during_total" in res:
        return (f"{res['sent']} spoofed at {res['rate']:.0f}/s; real client {res['during_ok']}/"
                f"{res['during_total']} during, {res['after_ok']}/{res['after_total']} after")
    if "rps" in res:
        return f"{res['rps']:.0f} req/s, p99 {res['p99_ms']} ms"
    return f"{res['delivered']}/{res['sent']} delivered, {res['delivered_pps']:.0f} pkt/s"


# --- report ----------------------------------------------------------------------

def med(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _sum(dicts) -> dict:
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def round_ratios(per: dict, get, num: str = STRAITD, den: str = IPTABLES) -> str:
    """Each round's num / den, the two measured minutes apart."""
    vals = []
    for a, b in zip(per[num], per[den]):
        x, y = get(a), get(b)
        vals.append(f"{x / y:.2f}" if x is not None and y else "-")
    return "[" + ", ".join(vals) + "]"


def render(results: dict) -> str:
    args = argparse.Namespace(**results["args"])
    rounds = results["rounds"]
    relays = [r for r in RELAYS if all(r in x for x in rounds)]
    ratios = [(a, b) for a, b in RATIOS if a in relays and b in relays]
    per = {r: [x[r] for x in rounds] for r in relays}
    out: list[str] = []
    w = out.append
    cores = os.cpu_count() or 0
    w(f"Topology: client 198.51.100.2 -> router -> relay one-armed on `lb0` (VIP 192.0.2.10) "
      f"-> router -> nginx on 203.0.113.11 and .12 (one worker each, a {results['page_bytes']}-byte "
      f"page) and a UDP sink on each; every hop a veth with offloads off "
      f"(docs/test-topology.md). {len(rounds)} round(s), the order of the relays "
      f"rotating; figures are medians over rounds, per-round values in brackets.")
    w("")
    w("The ratio rows give the ratio of the medians and, in brackets, of each round "
      "(the relays measured back to back). Above 1 is better for the first-named relay in "
      "requests/s and packets/s, below 1 in latency.")
    w("")
    for r in relays:
        w(f"- **{RELAY_TITLE[r]}**: {results['relays'][r]}.")
    w("")
    w(f"On this machine ({cores} cores) the client, the router, the relay, both nginx and the "
      "UDP sink share the same CPUs, and the kernel does most of the work on both sides "
      "(veth and routing everywhere, and for straitd also the af_packet copy, or the XDP "
      "program and the AF_XDP copy, in and out of lb0): these are namespace/veth figures, not NIC line-rate figures. They say how the two "
      "relays compare on the same path, not what straitd does on an ENA.")
    w("")

    for key, title in (("http_keepalive", "HTTP, keep-alive connections"),
                       ("http_close", "HTTP, a new connection per request (`Connection: close`)")):
        argv = rounds[0][STRAITD][key]["argv"]
        w(f"### {title}")
        w("")
        w(f"`{argv}` from the client namespace.")
        w("")
        w("| relay | requests/s | p50 ms | p90 ms | p99 ms | socket errors | non-2xx |")
        w("|---|---|---|---|---|---|---|")
        meds = {}
        for r in relays:
            runs = [x[key] for x in per[r]]
            m = {k: med([x[k] for x in runs]) for k in ("rps", "p50_ms", "p90_ms", "p99_ms")}
            meds[r] = m
            errs = sum(sum(x["socket_errors"].values()) for x in runs)
            non2xx = sum(x["non2xx"] for x in runs)
            spread = ", ".join(f"{x['rps']:.0f}" for x in runs)
            w(f"| {RELAY_TITLE[r]} | {fmt(m['rps'], '.0f')} [{spread}] | {fmt(m['p50_ms'], '.3f')} | "
              f"{fmt(m['p90_ms'], '.3f')} | {fmt(m['p99_ms'], '.3f')} | {errs} | {non2xx} |")
        for num, den in ratios:
            a, b = meds[num], meds[den]
            rr = round_ratios(per, lambda x, k=key: x[k]["rps"], num, den)
            w(f"| **{num} / {den}** | **{ratio(a['rps'], b['rps'])}** {rr} | "
              f"{ratio(a['p50_ms'], b['p50_ms'])} | "
              f"{ratio(a['p90_ms'], b['p90_ms'])} | {ratio(a['p99_ms'], b['p99_ms'])} | | |")
        w("")

    w("### UDP packet rate")
    w("")
    w(f"`strait-udpblast send` (tools/benchlib/udpblast.c) from the client: at most "
      f"{args.udp_count} datagrams of {args.udp_size} bytes of payload over {args.udp_flows} "
      f"flows (source ports {UDP_SPORT_BASE}-{UDP_SPORT_BASE + args.udp_flows - 1}), "
      f"sendmmsg batches of 32 as fast as the sender goes, for at most {args.udp_seconds} s, to "
      f"{VIP}:{UDP_PORT}. Delivered = what reached the backends' UDP sockets (read by the sinks "
      "plus any receive-buffer overflow there); delivered packets/s is delivered over the time "
      "from the first send to the last arrival (kernel receive timestamps).")
    w("")
    w("| relay | sent | offered pkt/s | delivered | loss % | delivered pkt/s |")
    w("|---|---|---|---|---|---|")
    meds = {}
    for r in relays:
        runs = [x["udp"] for x in per[r]]
        m = {k: med([x[k] for x in runs])
             for k in ("sent", "offered_pps", "delivered", "loss_pct", "delivered_pps")}
        meds[r] = m
        spread = ", ".join(f"{x['delivered_pps']:.0f}" for x in runs)
        w(f"| {RELAY_TITLE[r]} | {fmt(m['sent'], '.0f')} | {fmt(m['offered_pps'], '.0f')} | "
          f"{fmt(m['delivered'], '.0f')} | {fmt(m['loss_pct'], '.2f')} | "
          f"{fmt(m['delivered_pps'], '.0f')} [{spread}] |")
    for num, den in ratios:
        a, b = meds[num], meds[den]
        w(f"| **{num} / {den}** | | {ratio(a['offered_pps'], b['offered_pps'])} | "
          f"{ratio(a['delivered'], b['delivered'])} | | "
          f"**{ratio(a['delivered_pps'], b['delivered_pps'])}** "
          f"{round_ratios(per, lambda x: x['udp']['delivered_pps'], num, den)} |")
    w("")
    for r in (x for x in (STRAITD, STRAITD_XDP) if x in relays):
        udp_c = _sum(x["udp"]["relay_counters"] for x in per[r])
        shown = {k: v for k, v in udp_c.items()
                 if k in ("rx_packets", "tx_packets") or k.startswith("drop:")
                 or k.startswith("xdp:")
                 or (k.startswith("xstat:") and re.search(r"miss|err|nombuf|drop|full", k))}
        sent = sum(x["udp"]["sent"] for x in per[r])
        ring = "the AF_XDP socket's ring" if r == STRAITD_XDP else "the af_packet ring"
        w(f"{RELAY_TITLE[r]}'s own counters over its UDP runs (/metrics, summed over rounds; "
          f"{sent} datagrams sent): " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(shown.items())) +
          f". {max(0, sent - udp_c.get('rx_packets', 0)):.0f} datagrams never reached straitd "
          f"(lost in {ring} on lb0 or the router's backlog before it).")
        w("")
    w("Over veth the kernel relay forwards in the sender's own softirq context, so the sender "
      "slows to what the path takes and little is lost; straitd's path has a queue (the "
      "af_packet ring, or the AF_XDP socket's RX ring) between the kernel and the worker, so a "
      "sender faster than the worker shows up as loss rather than as a slower sender. Compare "
      "delivered packets/s.")
    w("")
    if "syn_flood" in rounds[0][STRAITD]:
        w("### Spoofed floods")
        w("")
        w(f"`strait-spoofflood` (tools/benchlib/spoofflood.c) from the client namespace: at most "
          f"{args.flood_count} packets in at most {args.flood_seconds} s at {args.flood_rate}/s "
          "offered, sources cycling over 60 addresses of the client's /26 with random ports "
          "(replies to them die at the router), in the first round only. Meanwhile the real "
          "client (198.51.100.2) opens fresh TCP connections one after another (one HTTP request "
          "each, 5 s timeout), or sends UDP datagrams to an echo service, each from a fresh "
          f"socket (a new flow), and keeps doing so for {FLOOD_AFTER_S} s (TCP) or 100 datagrams "
          "(UDP) after the flood. straitd runs its default timeouts; the kernel relay its "
          "conntrack defaults (which early-drop unassured entries when the table is full).")
        w("")
        w("| relay | flood | spoofed sent (rate/s) | real client during | real client after |")
        w("|---|---|---|---|---|")
        for r in relays:
            for key, name in (("syn_flood", "TCP SYN"), ("udp_flood", "UDP")):
                f = rounds[0][r][key]
                pct = lambda ok, tot: f"{ok}/{tot} ({100.0 * ok / tot:.1f} %)" if tot else "0/0"
                w(f"| {RELAY_TITLE[r]} | {name} | {f['sent']} ({f['rate']:.0f}) | "
                  f"{pct(f['during_ok'], f['during_total'])} | {pct(f['after_ok'], f['after_total'])} |")
        w("")
        for key in ("syn_flood", "udp_flood"):
            c = rounds[0][STRAITD][key]["relay_counters"]
            shown = {k: v for k, v in c.items() if k in ("rx_packets",) or k.startswith(("drop:", "early:"))}
            w(f"straitd's counters over the {'SYN' if key == 'syn_flood' else 'UDP'} flood: " +
              ", ".join(f"{k} {v:.0f}" for k, v in sorted(shown.items())) + ".")
        w("")
    for r in (x for x in (STRAITD, STRAITD_XDP) if x in relays):
        drops = {k: v for k, v in _sum(x[key]["relay_counters"] for x in per[r]
                                       for key in ("http_keepalive", "http_close", "udp")).items()
                 if k.startswith("drop:")}
        if drops:
            w(f"{RELAY_TITLE[r]} drops over all loads: " +
              ", ".join(f"{k[5:]} {v:.0f}" for k, v in sorted(drops.items())) + ".")
        else:
            w(f"{RELAY_TITLE[r]} counted no drops over all loads.")
    w("")
    w(f"Raw figures of this run, per round: `{results['json_path']}` (in the build directory).")
    return "\n".join(out) + "\n"


# --- main ------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 round, 5 s wrk, 200k datagrams")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--seconds", type=int, help="wrk duration per run (default 10)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--udp-count", type=int)
    ap.add_argument("--udp-seconds", type=int)
    ap.add_argument("--udp-size", type=int, default=64)
    ap.add_argument("--udp-flows", type=int, default=8)
    ap.add_argument("--idle-sleep-us", type=int,
                    help="straitd's idle_sleep_us (default 0 = busy poll with >= 4 cores, "
                         "50 below, where a busy worker would take a core from the load)")
    ap.add_argument("--flow-capacity", type=int, default=262143)
    ap.add_argument("--no-floods", dest="floods", action="store_false",
                    help="skip the spoofed SYN and UDP floods of the first round")
    ap.add_argument("--flood-count", type=int, default=450_000)
    ap.add_argument("--flood-seconds", type=int, default=30)
    ap.add_argument("--flood-rate", type=int, default=40_000)
    ap.add_argument("--relays", default=",".join(RELAYS),
                    help=f"comma-separated relays to run, of {','.join(RELAYS)} (default: all)")
    ap.add_argument("--loads", default=",".join(LOADS),
                    help=f"comma-separated loads to run, of {','.join(LOADS)} (default: all; the floods "
                         "only in the first round and not with --no-floods)")
    ap.add_argument("--markdown", type=Path, help="write the tables here too")
    ap.add_argument("--json", type=Path, help="write the raw figures here")
    ap.add_argument("--render", type=Path, metavar="JSON",
                    help="only print the tables of an earlier run's raw figures")
    args = ap.parse_args()
    if args.render:
        text = render(json.loads(args.render.read_text()))
        if args.markdown:
            args.markdown.write_text(text)
        print(text, end="")
        return 0
    quick = args.quick
    args.rounds = args.rounds or (1 if quick else 3)
    args.seconds = args.seconds or (5 if quick else 10)
    args.udp_count = args.udp_count or (200_000 if quick else 1_000_000)
    args.udp_seconds = args.udp_seconds or (5 if quick else 10)
    if args.idle_sleep_us is None:
        args.idle_sleep_us = 0 if (os.cpu_count() or 1) >= 4 else 50
    for name, v, lo, hi in (("rounds", args.rounds, 1, 20), ("seconds", args.seconds, 1, 120),
                            ("udp-count", args.udp_count, 1, 50_000_000),
                            ("udp-seconds", args.udp_seconds, 1, 60),
                            ("udp-size", args.udp_size, 8, 1472), ("udp-flows", args.udp_flows, 1, 256),
                            ("flood-count", args.flood_count, 1, 5_000_000),
                            ("flood-seconds", args.flood_seconds, 1, 60),
                            ("flood-rate", args.flood_rate, 0, 10_000_000)):
        if not lo <= v <= hi:
            ap.error(f"--{name} must be in [{lo}, {hi}]")

    args.relays = [r.strip() for r in args.relays.split(",") if r.strip()]
    args.loads = [x.strip() for x in args.loads.split(",") if x.strip()]
    for what, got, known in (("relays", args.relays, RELAYS), ("loads", args.loads, LOADS)):
        bad = [x for x in got if x not in known]
        if bad or not got:
            ap.error(f"--{what}: {', '.join(bad) or 'none given'}: expected some of {', '.join(known)}")
    if os.geteuid() != 0:
        log("needs root (network namespaces)")
        return 2
    if not binary_works(straitd_path()):
        log(f"{straitd_path()} is missing or does not run; build it first")
        return 1
    build = straitd_path().parents[1]
    blast = build_udpblast(build / "bench")
    json_path = (args.json or build / "bench" / "e2e.json").resolve()

    # SIGTERM (timeout(1), a CI cancel) unwinds through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    topo = Ec2Topology(backends=2, mgmt=False, payload_size=64 << 10)
    results: dict = {"rounds": [], "relays": {}, "args": vars(args).copy(),
                     "json_path": str(json_path.relative_to(REPO) if json_path.is_relative_to(REPO)
                                      else json_path)}
    results["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in results["args"].items()}
    relay = None
    echoes: list[UdpEcho] = []
    try:
        log("building the topology")
        topo.up()
        topo.start_backends()
        if args.floods:
            echoes = [UdpEcho(ns, ip, ECHO_PORT) for ns, ip in zip(topo.backend_ns, topo.backend_ips)]
        results["page_bytes"] = len(f"backend {topo.backend_ips[0]}\n")
        seq = 0
        for rnd in range(args.rounds):
            order = [r for r in RELAYS[rnd % 3:] + RELAYS[:rnd % 3] if r in args.relays]
            row: dict = {}
            for name in order:
                seq += 1
                relay = (IptablesRelay(topo, seq) if name == IPTABLES else
                         StraitdRelay(topo, args.idle_sleep_us, args.flow_capacity,
                                      io="xdp" if name == STRAITD_XDP else "af_packet"))
                log(f"round {rnd + 1}/{args.rounds}: {name}")
                relay.start()
                results["relays"][name] = relay.describe()
                wait_vip(topo)
                rec: dict = {}
                loads = [("http_keepalive", lambda: run_wrk(topo, args, close=False)),
                         ("http_close", lambda: run_wrk(topo, args, close=True)),
                         ("udp", lambda: run_udp(topo, blast, args))]
                if args.floods and rnd == 0:
                    loads += [("syn_flood", lambda: run_syn_flood(topo, args)),
                              ("udp_flood", lambda: run_udp_flood(topo, args))]
                loads = [(k, fn) for k, fn in loads if k in args.loads]
                for key, load in loads:
                    before = relay.counters()
                    rec[key] = load()
                    rec[key]["relay_counters"] = delta(before, relay.counters())
                    rec[key]["loadavg"] = list(os.getloadavg())
                    log(f"  {key}: {summary(rec[key])} (load average "
                        f"{' '.join(f'{x:.2f}' for x in rec[key]['loadavg'])})")
                relay.stop()
                relay = None
                row[name] = rec
            results["rounds"].append(row)
    except CommandError as e:
        log(f"failed: {e}")
        return 1
    finally:
        if relay is not None:
            try:
                relay.stop()
            except Exception as e:  # noqa: BLE001 - teardown must go on
                log(f"stopping {relay.name}: {e}")
        for e in echoes:
            e.stop()
        errors = topo.down()
        for e in errors:
            log(f"teardown: {e}")

    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    if set(args.relays) != set(RELAYS) or set(args.loads) != set(LOADS):
        # The tables compare every relay on every load; a partial run has
        # its figures in the log lines above and the JSON.
        log(f"partial run (--relays/--loads): no tables; raw figures in {json_path}")
        return 0
    text = render(results)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
