#!/usr/bin/python3
"""The body of tools/demo: Strait for real on a local topology.

Builds the EC2-like namespace topology (client, VPC router, straitd one-armed
on its own veth, two nginx backends), starts straitd with the embedded
config below (in the shared-NIC mode, `port = "xdp:lb0"` with Strait's XDP
program, where the machine allows it; otherwise, with a one-line reason, on
DPDK's af_packet PMD), sends traffic through the VIP (curl over fresh connections,
a download compared by sha256, a short wrk run), shows `lbctl backend list`
and a few lines of /metrics, then tears it all down - or, with --keep,
leaves it running and records what it started so `--down` can remove it.

Run it through tools/demo (which installs dependencies and builds first).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.lib.netns import CommandError, ns_sh, sh  # noqa: E402
from tests.lib.straitd import Service, Straitd, lbctl_path  # noqa: E402
from tests.lib.topology import CLIENT_IP, LB_KERNEL_IP, VIP, Ec2Topology  # noqa: E402

PREFIX = "strait-demo"
STATE = Path("/run/strait-demo.json")
WORKDIR = Path("/tmp/strait-demo")


def banner(text: str) -> None:
    print(f"\n== {text}", flush=True)


def show(cmd: str, out: str) -> None:
    print(f"$ {cmd}")
    print(out.rstrip())


def save_state(topo: Ec2Topology, d: Straitd) -> None:
    procs = []
    for n in topo.nginx:
        if n.proc is not None:
            procs.append({"pid": n.proc.pid, "signal": "SIGQUIT", "what": f"nginx {n.ip}"})
    if d.proc is not None:
        procs.append({"pid": d.proc.pid, "signal": "SIGTERM", "what": "straitd"})
    for p in procs:
        p["cmdline"] = Path(f"/proc/{p['pid']}/cmdline").read_bytes().decode(errors="replace")
    STATE.write_text(json.dumps({"namespaces": topo.namespaces, "processes": procs,
                                 "workdir": str(topo.workdir), "socket": str(d.socket)}, indent=1))


def down_from_state() -> int:
    if not STATE.exists():
        print("demo: nothing to tear down (no kept demo recorded)")
        return 0
    st = json.loads(STATE.read_text())
    for p in st["processes"]:
        pid = p["pid"]
        # Only the process the demo started: a recycled pid has another cmdline.
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cmd != p["cmdline"]:
            continue
        os.kill(pid, getattr(signal, p["signal"]))
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        print(f"demo: stopped {p['what']} (pid {pid})")
    for ns in reversed(st["namespaces"]):
        sh(["ip", "netns", "del", ns], check=False)
    subprocess.run(["rm", "-rf", st["workdir"]], check=False)
    STATE.unlink()
    print(f"demo: removed {len(st['namespaces'])} namespaces")
    return 0


class FellBack(Exception):
    """The xdp mode could not start here; the message is the reason."""


def start_reason(d: Straitd) -> str:
    """straitd's own error line from its log, for a one-line fallback reason."""
    errors = [ln.split(" error: ", 1)[1] for ln in d.log_tail(80).splitlines() if " error: " in ln]
    return errors[-1] if errors else "straitd did not start (see its log)"


def run_demo(workers: int, keep: bool, io: str = "auto") -> int:
    if io == "auto":
        if workers > 1:
            print(f"demo: I/O af_packet, not xdp: a veth offers one AF_XDP queue to DPDK 22.11's "
                  f"net_af_xdp and {workers} workers need {workers}")
            io = "af_packet"
        else:
            try:
                return _run_demo(workers, keep, "xdp", fallback=True)
            except FellBack as e:
                print(f"demo: I/O af_packet, not xdp: {e}")
                io = "af_packet"
    return _run_demo(workers, keep, io, fallback=False)


def _run_demo(workers: int, keep: bool, io: str, fallback: bool) -> int:
    if STATE.exists():
        print(f"demo: a kept demo is still up ({STATE}); run tools/demo --down first", file=sys.stderr)
        return 1
    if any(Path("/run/netns").glob(f"{PREFIX}-*")):
        print(f"demo: namespaces {PREFIX}-* exist already; remove them with "
              f"`ip netns del NAME` first", file=sys.stderr)
        return 1
    subprocess.run(["rm", "-rf", str(WORKDIR)], check=False)
    WORKDIR.mkdir(parents=True)
    topo = Ec2Topology(backends=2, mgmt=True, workdir=WORKDIR, prefix=PREFIX, io=io, queues=workers)
    d = None
    ok = True
    try:
        banner("topology")
        topo.up()
        topo.start_backends()
        print(f"client {CLIENT_IP} ({topo.client}) -> router ({topo.router}) -> "
              f"straitd VIP {VIP}:80 on lb0 ({topo.lb}) -> router -> nginx "
              + ", ".join(f"{ip} ({ns})" for ip, ns in zip(topo.backend_ips, topo.backend_ns)))
        print("(docs/test-topology.md has the diagram)")
        if io == "xdp":
            print(f"shared NIC: lb0 keeps the kernel address {LB_KERNEL_IP} (its default route and "
                  f"the health checks use it); Strait's XDP program steers only straitd's addresses")

        svc = Service("web", f"{VIP}:80", [f"{ip}:80" for ip in topo.backend_ips],
                      extra={"health_check": {"type": "http", "interval_ms": 1000, "http_path": "/"}})
        d = Straitd(topo.lb, topo.workdir, services=[svc], workers=workers, io=io)
        banner(f"straitd config ({d.config_path})")
        print(d.config_text.rstrip())
        try:
            d.start()
        except CommandError:
            if not fallback:
                raise
            reason = start_reason(d)
            d.stop()
            d = None
            topo.down()
            subprocess.run(["rm", "-rf", str(WORKDIR)], check=False)
            raise FellBack(reason) from None
        if io == "xdp":
            r = ns_sh(topo.lb, ["ip", "link", "show", "lb0"])
            print(f"$ ip link show lb0   (Strait's XDP program attached)\n{r.stdout.decode().rstrip()}")
        print(f"straitd running (pid {d.proc.pid}), log {d.log_path}")

        # Health-checked backends are `initial` until their first passing
        # checks; wait for both before the first request.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = sh([str(lbctl_path()), "--socket", str(d.socket), "--json", "backend", "list", "web"], check=False)
            if r.returncode == 0 and all(b["health"] == "up"
                                         for b in json.loads(r.stdout)["result"]["backends"]):
                break
            time.sleep(0.2)

        banner("requests through the VIP, one new connection each")
        deadline = time.monotonic() + 20
        while True:  # the first SYN may wait for straitd's ARP of its gateway
            r = ns_sh(topo.client, ["curl", "-s", "--max-time", "2", f"http://{VIP}/"], check=False)
            if r.returncode == 0 or time.monotonic() > deadline:
                break
        for _ in range(6):
            r = ns_sh(topo.client, ["curl", "-sS", "--max-time", "5", f"http://{VIP}/"])
            print(f"$ curl http://{VIP}/  ->  {r.stdout.decode().strip()}")

        banner(f"{topo.payload_size >> 20} MiB download through the VIP")
        t0 = time.monotonic()
        r = ns_sh(topo.client, ["curl", "-sS", "--max-time", "60", f"http://{VIP}/big.bin"], timeout=70)
        dt = time.monotonic() - t0
        same = hashlib.sha256(r.stdout).hexdigest() == topo.payload_sha256
        print(f"{len(r.stdout)} bytes in {dt:.2f} s, sha256 {'matches' if same else 'DIFFERS'}")
        ok &= same

        banner("wrk through the VIP (3 s, 2 threads, 16 connections)")
        r = ns_sh(topo.client, ["wrk", "-t2", "-c16", "-d3s", "--timeout", "5s", f"http://{VIP}/"],
                  timeout=40)
        show(f"wrk -t2 -c16 -d3s http://{VIP}/", r.stdout.decode())
        served = [n.requests_served() for n in topo.nginx]
        print("requests served per backend (nginx access logs): "
              + ", ".join(f"{n.ip}: {c}" for n, c in zip(topo.nginx, served)))

        banner("lbctl backend list web")
        r = sh([str(lbctl_path()), "--socket", str(d.socket), "backend", "list", "web"], check=False)
        show(f"lbctl --socket {d.socket} backend list web", (r.stdout + r.stderr).decode())
        ok &= r.returncode == 0

        banner("/metrics (a selection)")
        text = d.metrics_text()
        keep_names = ("strait_rx_packets_total", "strait_tx_packets_total", "strait_flows_active",
                      "strait_flows_created_total", "strait_backend_up", "strait_backend_flows_total",
                      "strait_snat_ports_in_use", "strait_snat_ports_capacity")
        lines = [ln for ln in text.splitlines() if ln.startswith(keep_names)]
        lines += [ln for ln in text.splitlines()
                  if ln.startswith("strait_xdp_verdicts_total") and not ln.endswith(" 0")]
        drops = [ln for ln in text.splitlines()
                 if ln.startswith("strait_drops_total") and not ln.endswith(" 0")]
        show(f"ip netns exec {topo.lb} curl -s {d.metrics_url}", "\n".join(lines + drops))

        if keep:
            save_state(topo, d)
            banner("kept running")
            print(f"try:  ip netns exec {topo.client} curl http://{VIP}/")
            print(f"      {lbctl_path()} --socket {d.socket} backend list web")
            print(f"      ip netns exec {topo.lb} curl -s {d.metrics_url}")
            print("tear down with:  tools/demo --down")
            return 0 if ok else 1
    except FellBack:
        raise
    except BaseException as e:  # noqa: BLE001 - Ctrl-C and timeouts tear down too
        print(f"demo: failed: {type(e).__name__}: {e}", file=sys.stderr)
        if d is not None:
            print(f"straitd log tail:\n{d.log_tail()}", file=sys.stderr)
        ok = False
    banner("teardown")
    if d is not None:
        rc = d.stop()
        print(f"straitd exited {rc}")
        ok &= rc == 0
    errors = topo.down()
    for e in errors:
        print(f"teardown: {e}", file=sys.stderr)
    subprocess.run(["rm", "-rf", str(WORKDIR)], check=False)
    print("namespaces and processes removed")
    print("demo: OK" if ok else "demo: FAILED")
    return 0 if ok else 1


def _terminated(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    ap = argparse.ArgumentParser(prog="tools/demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", action="store_true", help="leave the demo running")
    ap.add_argument("--down", action="store_true", help="tear down a demo left by --keep")
    ap.add_argument("--workers", type=int, default=1, help="straitd worker lcores (default 1)")
    ap.add_argument("--io", choices=["auto", "xdp", "af_packet"], default="auto",
                    help="straitd's port: xdp (shared NIC, AF_XDP) where possible, else af_packet "
                         "(default auto)")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, _terminated)
    if a.down:
        return down_from_state()
    return run_demo(a.workers, a.keep, a.io)


if __name__ == "__main__":
    sys.exit(main())
