#!/usr/bin/python3
"""Kernel-free I/O benchmark: a real straitd on a net_memif port against
strait-memifgen (tools/benchlib/memifgen.c) on the other end.

No kernel is on the packet path: straitd's memif port (`port =
"memif:PATH"`, the client role) and the generator's (the server role)
share memory rings that both poll. The generator is the clients, the
router and the backends; it checks every rewritten header that comes back
(see memifgen.c). For each case this starts the generator, then straitd,
reads straitd's counters at each phase boundary (the generator waits for
us there) and reports:

  * new flows/s: first packets (TCP SYN or UDP) of distinct flows that came
    out SNAT'd, i.e. with a port taken, as fast as straitd takes them;
  * established packets/s over all flows, both directions, and the latency
    of each packet from the generator's TX to its RX (TSC in the payload);
  * the same latency with one packet in flight (no queueing);
  * straitd's own busy cycles per packet in each phase (its worker's busy
    loop cycles over its received packets), which is what a worker would
    forward if it were the only limit, and its busy ratio (below ~95%
    the generator, not straitd, set the rate);
  * every check error and every drop straitd counted.

Usage: bench_memif.py [--quick] [--markdown FILE] [--json FILE]
                      [--cases tcp:65536:1,udp:1000000:1,...] [--seconds S]
Environment: STRAIT_BUILD_DIR (default build); STRAIT_MEMIF_PERF=DIR records
a perf profile of straitd per phase into DIR (perf from linux-perf).
Needs root (EAL memory).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from lib.straitd import Metrics, Service, render_config  # noqa: E402

FULL_CASES = ("tcp:65536:1,tcp:1000000:1,udp:65536:1,udp:1000000:1,tcp:65536:2,udp:65536:2,"
              "cookie:1000000:1")
QUICK_CASES = "tcp:65536:1,udp:65536:1,cookie:65536:1"
GEN_MAC = "02:53:54:00:01:00"   # the generator's side (locally administered)
LB_MAC = "02:53:54:00:00:01"    # straitd's side


def build_dir() -> Path:
    d = Path(os.environ.get("STRAIT_BUILD_DIR", "build"))
    return d if d.is_absolute() else REPO / d


def flow_capacity(flows: int) -> int:
    """2^k - 1 with room for an eighth more flows than the run opens."""
    want = flows + flows // 8 + 1024
    cap = 1
    while cap - 1 < want:
        cap <<= 1
    return cap - 1


def free_hugepages_mb() -> int:
    try:
        n = int(Path("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").read_text())
    except (OSError, ValueError):
        return 0
    return n * 2


def cpu_plan(workers: int) -> tuple[str, int, str]:
    """straitd's --lcores, the generator's CPU, and what was shared."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= workers + 2:
        lc = ",".join(f"{i}@{cpus[i]}" for i in range(workers + 1))
        return f"--lcores={lc}", cpus[workers + 1], "every worker and the generator on a CPU of its own"
    # Too few CPUs: the control thread (mostly asleep) and the generator
    # share the first; the workers share the others. A worker on the
    # generator's CPU would starve it (busy polling against busy polling).
    rest = cpus[1:] or cpus[:1]
    lc = ",".join([f"0@{cpus[0]}"] + [f"{i}@{rest[(i - 1) % len(rest)]}" for i in range(1, workers + 1)])
    shared = f"the generator shares CPU {cpus[0]} with straitd's control thread"
    if workers > len(rest):
        shared += (f"; OVERSUBSCRIBED: {workers} busy-polling workers share "
                   f"{len(rest)} CPU{'s' if len(rest) > 1 else ''}")
    return f"--lcores={lc}", cpus[0], shared


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for straitd's metrics endpoint."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url: str) -> Metrics:
    with urllib.request.urlopen(url, timeout=10) as r:
        return Metrics(r.read().decode(errors="replace"))


def on_cpu_ns(pid: int, worker_threads: bool) -> float:
    """Nanoseconds on a CPU so far (/proc schedstat) of straitd's worker
    threads (DPDK 22.11 names them rte-worker-N) or of a whole process. On a
    shared machine a busy-polling thread is preempted, and TSC cycles then
    count time it was not running; this says how much it really ran."""
    total = 0.0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                if worker_threads and not (task / "comm").read_text().startswith(("rte-worker", "lcore-worker")):
                    continue
                total += float((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    except OSError:
        pass
    return total


def counters(m: Metrics, lb_pid: int = 0, gen_pid: int = 0) -> dict:
    drops = {lab.get("reason", "?"): v for lab, v in m.series("strait_drops_total") if v}
    return {
        "wall_ns": time.monotonic_ns(),
        "lb_cpu_ns": on_cpu_ns(lb_pid, True) if lb_pid else 0.0,
        "gen_cpu_ns": on_cpu_ns(gen_pid, False) if gen_pid else 0.0,
        "rx": m.value("strait_rx_packets_total"),
        "tx": m.value("strait_tx_packets_total"),
        "busy": m.value("strait_worker_busy_cycles_total"),
        "busy_loops": m.value("strait_worker_busy_loops_total"),
        "cycles": m.value("strait_worker_cycles_total"),
        "handoff": m.value("strait_handoff_total", direction="out"),
        "drops": drops,
    }


def delta(a: dict, b: dict) -> dict:
    d = {k: b[k] - a[k] for k in ("rx", "tx", "busy", "busy_loops", "cycles", "handoff", "wall_ns", "lb_cpu_ns", "gen_cpu_ns")}
    # Shares of one CPU over the phase (straitd: all its workers together).
    d["lb_on_cpu"] = d["lb_cpu_ns"] / d["wall_ns"] if d["wall_ns"] else 0.0
    d["gen_on_cpu"] = d["gen_cpu_ns"] / d["wall_ns"] if d["wall_ns"] else 0.0
    d["drops"] = {k: v - a["drops"].get(k, 0) for k, v in b["drops"].items() if v - a["drops"].get(k, 0)}
    d["cycles_per_packet"] = d["busy"] / d["rx"] if d["rx"] else 0.0
    d["busy_ratio"] = d["busy"] / d["cycles"] if d["cycles"] else 0.0
    # Packets per poll that found any: small when the generator, not
    # straitd, is the limit (each poll's fixed cost is then shared by few).
    d["packets_per_busy_poll"] = d["rx"] / d["busy_loops"] if d["busy_loops"] else 0.0
    return d


class Unsupported(RuntimeError):
    """The straitd under test cannot run this case (its configuration lacks
    a key the case needs)."""


def accepts(straitd: Path, cfg: str, work: Path, force: bool) -> tuple[bool, str]:
    """Whether straitd takes this configuration (`--check-config`)."""
    probe = work / "probe.toml"
    probe.write_text(cfg)
    argv = [str(straitd), "--config", str(probe), "--check-config"] + (["--force"] if force else [])
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30, check=False)
    return r.returncode == 0, r.stdout.decode(errors="replace")


def run_case(proto: str, flows: int, workers: int, seconds: float, work: Path, port: int = 0,
             latency_samples: int = 0) -> dict:
    """One case; proto "tcp", "udp", or "cookie" (TCP with straitd's SYN
    proxy on: SYN cookie answers per second, nothing else).
    `latency_samples`: packets sent one at a time for the one-in-flight
    latency (0: the generator's default, 20,000; at most 30 s)."""
    port = port or free_port()
    cookies = proto == "cookie"
    if cookies:
        proto = "tcp"
    build = build_dir()
    gen = build / "tools" / "strait-memifgen"
    straitd = build / "controlplane" / "straitd"
    for exe in (gen, straitd):
        if not exe.is_file():
            raise SystemExit(f"bench_memif: {exe} not built")
    sock = work / "memif.sock"
    if sock.exists():
        sock.unlink()
    lcores, gen_cpu, sharing = cpu_plan(workers)
    tag = f"{os.getpid()}-{proto}-{flows}-{workers}"
    gen_argv = [str(gen), "-l", str(gen_cpu), "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
                "--no-telemetry", f"--file-prefix=memifgen-{tag}", "--log-level=lib.eal:error",
                "--log-level=pmd.net.memif:error",
                f"--vdev=net_memif0,role=server,socket={sock},socket-abstract=no,mac={GEN_MAC}",
                "--", "--proto", proto, "--flows", str(flows), "--queues", str(workers),
                "--seconds", str(seconds), "--sync"] + (["--cookies"] if cookies else []) + \
               (["--latency-samples", str(latency_samples)] if latency_samples else [])
    cap = flow_capacity(flows)
    # Flow table, both keys and records: ~200 bytes a flow, plus mbufs.
    need_mb = cap * 220 // (1 << 20) + 256 * workers + 256
    if free_hugepages_mb() >= need_mb:
        mem, mem_note = ["--in-memory"], "hugepages"
    else:
        mem, mem_note = ["--in-memory", "--no-huge", "-m", str(need_mb)], "no hugepages (plain memory)"
    eal = ["--no-pci", f"--file-prefix=straitd-{tag}", "--log-level=pmd.net.memif:error"] + mem + [lcores]
    timeouts = {"syn_sent": 600, "syn_recv": 600, "established": 3600, "udp": 600, "udp_unreplied": 600}
    backends = lambda p: [f"203.0.113.{i}:{p}" for i in range(1, 33)]  # noqa: E731
    # The benchmark opens up to a million half-open TCP flows on purpose: a
    # SYN proxy in "auto" mode would answer them with cookies instead, so
    # it is off, except in the cookie case, where it is on for every SYN.
    # A straitd without a SYN proxy refuses the key: then there is none.
    tcp = Service("tcp", "192.0.2.10:80", backends(8080), "tcp", snat=["192.0.2.10"],
                  extra={"syn_proxy": "on" if cookies else "off"})
    services = [tcp, Service("udp", "192.0.2.10:9000", backends(9000), "udp", snat=["192.0.2.10"])]
    force = workers + 1 > len(os.sched_getaffinity(0))

    def render() -> str:
        return render_config(eal=eal, workers=workers, address="192.0.2.2/24", gateway="192.0.2.1",
                             services=services, port=f"memif:{sock}",
                             dataplane={"flow_capacity": cap, "idle_sleep_us": 0, "timeouts": timeouts},
                             instance={"shutdown_drain_s": 0})
    cfg = render()
    ok, why = accepts(straitd, cfg, work, force)
    if not ok and "syn_proxy" in why:
        if cookies:
            raise Unsupported("this straitd has no SYN proxy (its configuration refuses syn_proxy)")
        tcp.extra = {}
        cfg = render()
    # straitd writes its own MAC for a memif port; the generator checks
    # the Ethernet source against what straitd's ARP reply said.
    (work / "straitd.toml").write_text(cfg)
    argv = [str(straitd), "--config", str(work / "straitd.toml"), "--control-socket", str(work / "ctl.sock"),
            "--metrics-listen", f"127.0.0.1:{port}", "--log-level", "warn"]
    if force:
        argv.append("--force")
    url = f"http://127.0.0.1:{port}/metrics"

    genp = subprocess.Popen(gen_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    lines: list[str] = []
    marks: dict[str, dict] = {}
    lp = None

    def stop_straitd() -> None:
        """SIGTERM and wait: straitd stops its workers, then its port, which
        tells the generator it is leaving. The order matters: DPDK's memif
        PMD (22.11, and upstream as of 2026) unmaps a link's rings from its
        interrupt thread when the peer leaves, under a thread that may be
        polling them, so whichever side still polls when the other
        disconnects can die of SIGSEGV. The generator waits, not polling,
        at its "done" mark while straitd goes (--sync)."""
        if lp is None or lp.poll() is not None:
            return
        lp.send_signal(signal.SIGTERM)
        try:
            lp.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lp.kill()
            lp.wait()
    try:
        # The server must listen before straitd (the client) starts.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = genp.stderr.readline().decode(errors="replace")
            if not line:
                break
            lines.append(line)
            if "listening" in line:
                break
        if not sock.exists():
            raise RuntimeError("generator did not start:\n" + "".join(lines[-20:]))
        log = open(work / "straitd.log", "wb")
        lp = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              start_new_session=True)
        log.close()

        perf_dir = os.environ.get("STRAIT_MEMIF_PERF")
        recorder: list[subprocess.Popen] = []

        def reader() -> None:
            for raw in genp.stderr:
                line = raw.decode(errors="replace")
                lines.append(line)
                parts = line.split()
                if len(parts) == 4 and parts[1] == "phase":
                    try:
                        marks[f"{parts[2]}:{parts[3]}"] = counters(scrape(url), lp.pid, genp.pid)
                    except OSError as e:
                        lines.append(f"bench_memif: scrape failed: {e}\n")
                    # STRAIT_MEMIF_PERF=DIR: a perf profile of straitd per
                    # phase (DIR/CASE-PHASE.data), for docs/benchmarks.md.
                    if perf_dir and parts[3] == "end" and recorder:
                        recorder.pop().send_signal(signal.SIGINT)
                    if parts[2] == "done":
                        stop_straitd()
                    if perf_dir and parts[3] == "begin" and parts[2] != "done":
                        out_file = Path(perf_dir) / f"{proto}-{flows}-{workers}w-{parts[2]}.data"
                        recorder.append(subprocess.Popen(
                            ["perf", "record", "-q", "-F", "2999", "-g", "-p", str(lp.pid), "-o", str(out_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                        time.sleep(0.3)  # perf attached before the phase's traffic
                    try:
                        genp.stdin.write(b"go\n")
                        genp.stdin.flush()
                    except OSError:
                        pass

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        # The generator's own bounds: 60 s for straitd to connect, 30 s for
        # ARP, 20 s + flows / 20000 per flow phase, the established time
        # and 5 s for what is in flight at its end, 30 s with one packet in
        # flight; then straitd's stop (20 s) and the generator's 5 s wait
        # for the link to go down. And a margin.
        limit = 60 + 30 + 2 * (20 + flows / 20_000) + seconds + 5 + 30 + 20 + 5 + 30
        # Its stdout is one JSON object at the end: it cannot fill the pipe.
        try:
            genp.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(genp.pid, signal.SIGTERM)
            genp.wait(timeout=30)
        out = genp.stdout.read()
        t.join(timeout=5)
        # straitd's counters before the generator left: once the memif peer
        # is gone, whatever straitd sends (an ARP refresh) counts as tx_full.
        final = marks.get("done:begin")
    finally:
        if genp.poll() is None:
            os.killpg(genp.pid, signal.SIGKILL)
            genp.wait()
        stop_straitd()
        if sock.exists():
            sock.unlink()
    try:
        res = json.loads(out.decode(errors="replace"))
    except (ValueError, IndexError):
        log_tail = (work / "straitd.log").read_text(errors="replace")[-3000:] if (work / "straitd.log").exists() else ""
        raise RuntimeError(f"generator gave no result (exit {genp.returncode}):\n" + "".join(lines[-20:]) +
                           "\nstraitd log:\n" + log_tail)
    res["workers"] = workers
    res["case"] = "cookie" if cookies else proto
    res["memory"] = mem_note
    res["cpus"] = sharing
    res["flow_capacity"] = cap
    res["straitd"] = {}
    for ph in ("new", "handshake", "established"):
        a, b = marks.get(f"{ph}:begin"), marks.get(f"{ph}:end")
        if a and b:
            d = delta(a, b)
            # Worker cycles while it was on a CPU, per packet: an upper
            # bound of its cost (idle polls while on CPU count too), not
            # inflated by time other processes had the CPU.
            d["on_cpu_cycles_per_packet"] = d["lb_cpu_ns"] * res["tsc_hz"] / 1e9 / d["rx"] if d["rx"] else 0.0
            res["straitd"][ph] = d
    if final is not None:
        res["straitd"]["total_drops"] = final["drops"]
    # Before the generator's first packet straitd sends only its own ARP
    # (announcements, the gateway's resolution); one sent while the memif
    # link is still coming up counts as tx_full. Kept apart from the run.
    if marks.get("new:begin") is not None:
        res["straitd"]["setup_drops"] = marks["new:begin"]["drops"]
        if final is not None:
            res["straitd"]["run_drops"] = {k: v - marks["new:begin"]["drops"].get(k, 0)
                                           for k, v in final["drops"].items()
                                           if v - marks["new:begin"]["drops"].get(k, 0)}
    res["exit"] = genp.returncode
    # straitd's own exit: 0 after the SIGTERM above; a negative number is
    # the signal that killed it.
    res["straitd_exit"] = lp.returncode if lp is not None else None
    return res


def fmt_us(x: float) -> str:
    """Microseconds; the generator reports a latency beyond its histogram
    (2^28 cycles, 103 ms at 2.6 GHz) as the negated bound."""
    return f"> {-x:.0f}" if x < 0 else f"{x:.1f}"


def fmt_rate(x: float) -> str:
    return f"{x / 1e6:.3f} M" if x >= 1e6 else f"{x / 1e3:.1f} K"


def markdown(results: list[dict], cmd: str, seconds: float, skipped: list[str] | None = None) -> str:
    cookies = [r for r in results if r.get("cookies")]
    results = [r for r in results if not r.get("cookies")]
    hz = results[0]["tsc_hz"] if results else 0
    out = [f"`{cmd}` (tools/benchlib/bench_memif.py): straitd (`port = \"memif:PATH\"`, "
           "`idle_sleep_us = 0`, busy polling) and strait-memifgen (tools/benchlib/memifgen.c) on the two "
           "ends of a net_memif link, no kernel on the packet path. The generator is the clients "
           "(198.51.100.0/24), the router and 32 backends (203.0.113.1-32); straitd does full NAT (VIP and "
           "SNAT address 192.0.2.10). Frames are 70 bytes (TCP, 16 bytes of payload) or 60 bytes (UDP). "
           f"TSC {hz / 1e9:.3f} GHz. Every packet that came back was checked (Ethernet addresses, TTL, IP and "
           "TCP/UDP checksums, rewritten addresses and ports against the flow's, sequence numbers).", "",
           "- **new flows/s**: first packets (TCP SYN, or UDP) of distinct flows that came out SNAT'd with "
           "a port taken, at most 512 in flight;",
           f"- **established**: {seconds:g} s over all flows in a scattered order, alternately client -> VIP "
           "and backend -> SNAT address, at most 512 packets in flight: packets/s that came back (after a "
           "10% warm-up), and each packet's time from the generator's TX to its RX (TSC in the payload: "
           "memif both ways, straitd's poll loop and NAT, and the wait behind up to 511 other packets) as "
           "p50 / p99;",
           "- **one in flight**: the latency added per packet: the same TX-to-RX time with exactly one packet "
           "outstanding, the next sent when it came back (20,000 packets or 30 s, after every packet of the loaded "
           "run came back or was given up; packets carry their run's number, and one of another run is "
           "never counted), so no queueing: two memif copies each way, straitd's poll loop and NAT, and "
           "whatever time either busy-polling process was off its CPU (the p99, on a shared machine). "
           + (f"Histogram: {32e9 / hz:.0f} ns buckets to {(1 << 23) * 1e3 / hz:.1f} ms, "
              f"{16384e6 / hz:.1f} us buckets to {(1 << 28) * 1e3 / hz:.0f} ms;" if hz else ""),
           "- **straitd cycles/pkt**: straitd's worker threads' time on a CPU (/proc schedstat) in TSC "
           "cycles over the packets they received in the phase: an upper bound of the cost with I/O "
           "(memif RX copy, NAT, TX copy; idle polls while on the CPU count too) that time other processes "
           "held the CPU does not inflate; **pkts/poll**: packets per poll that found any (few: the "
           "generator, not straitd, set the rate, and each poll's fixed cost is shared by few packets);",
           "- **on CPU**: the share of a CPU straitd's workers and the generator each had in the "
           "established phase.", ""]
    out += ["| proto | flows | workers | new flows/s | straitd cycles/new flow | established pkt/s "
            "| latency, 512 in flight: p50 / p99 us | latency, one in flight: p50 / p99 us | straitd cycles/pkt | pkts/poll "
            "| on CPU straitd / generator | check errors | straitd drops |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        st = r.get("straitd", {})
        new, est = st.get("new", {}), st.get("established", {})
        drops = st.get("run_drops", st.get("total_drops", {}))
        dtext = ", ".join(f"{k} {int(v)}" for k, v in sorted(drops.items())) or "0"
        e, o = r["established"], r["one_in_flight"]
        out.append(
            f"| {r['proto']} | {r['flows']:,} | {r['workers']} | {fmt_rate(r['new']['per_s'])} "
            f"| {new.get('on_cpu_cycles_per_packet', 0):,.0f} | {fmt_rate(e['pps'])} "
            f"| {fmt_us(e['p50_us'])} / {fmt_us(e['p99_us'])} | {fmt_us(o['p50_us'])} / {fmt_us(o['p99_us'])} "
            f"| {est.get('on_cpu_cycles_per_packet', 0):,.0f} | {est.get('packets_per_busy_poll', 0):.1f} "
            f"| {100 * est.get('lb_on_cpu', 0):.0f}% / {100 * est.get('gen_on_cpu', 0):.0f}% "
            f"| {r['errors']} of {r['checked']:,} | {dtext} |")
    out.append("")
    if cookies:
        out += ["", "SYN cookies (`syn_proxy = \"on\"`): the generator sends the SYNs of distinct clients as "
                "above and counts the SYN-ACKs straitd answers itself (to the client, acking its ISN; nothing "
                "reaches a backend):", "",
                "| flows | workers | SYN cookie answers/s | straitd cycles/answer | check errors | straitd drops |",
                "|---|---|---|---|---|---|"]
        for r in cookies:
            st = r.get("straitd", {})
            drops = st.get("run_drops", st.get("total_drops", {}))
            dtext = ", ".join(f"{k} {int(v)}" for k, v in sorted(drops.items())) or "0"
            out.append(f"| {r['flows']:,} | {r['workers']} | {fmt_rate(r['new']['per_s'])} "
                       f"| {st.get('new', {}).get('on_cpu_cycles_per_packet', 0):,.0f} "
                       f"| {r['errors']} of {r['checked']:,} | {dtext} |")
        out.append("")
    for sk in skipped or []:
        out.append(f"- not run: {sk}")
    setup = collections.Counter()
    for r in results + cookies:
        setup.update(r.get("straitd", {}).get("setup_drops", {}))
    if setup:
        out.append("- straitd drops column: from the generator's first packet on. Before it, over all cases: " +
                   ", ".join(f"{k} {int(v)}" for k, v in sorted(setup.items())) +
                   " (straitd's own ARP announcements sent while the memif link was still coming up)")
    results_all = results + cookies
    notes = sorted({f"{r['workers']} worker(s): {r['cpus']}; straitd EAL memory: {r['memory']}" for r in results_all})
    out += [f"- {n}" for n in notes]
    for r in results_all:
        name = f"{r.get('case', r['proto'])} {r['flows']:,} flows {r['workers']} worker(s)"
        if not r.get("complete"):
            out.append(f"- **incomplete**: {name}: {r['new']['done']} new flows done, "
                       f"{r.get('handshake', {}).get('done', 0)} handshakes")
        if r["established"]["lost"] or r["one_in_flight"]["lost"]:
            out.append(f"- {name}: {r['established']['lost']} packets never came back under load, "
                       f"{r['one_in_flight']['lost']} with one in flight")
        one = r["one_in_flight"]
        if one.get("wanted") and one["received"] < one["wanted"]:
            out.append(f"- {name}: one in flight: {one['received']:,} of {one['wanted']:,} packets "
                       "came back within its 30 s (the figures are over those)")
        if r.get("stale"):
            out.append(f"- {name}: {r['stale']} packets of an earlier run came back late (not counted)")
        if r.get("straitd_exit") not in (0, None):
            out.append(f"- **straitd exit {r['straitd_exit']}**: {name}")
        if r["new"].get("resent"):
            out.append(f"- {name}: {r['new']['resent']} first packets sent again after a quiet 100 ms")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cases")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--metrics-port", type=int, default=0, help="straitd's metrics port (default: a free one)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_memif: needs root (EAL memory)", file=sys.stderr)
        return 2
    cases = a.cases or (QUICK_CASES if a.quick else FULL_CASES)
    seconds = a.seconds or (2.0 if a.quick else 5.0)
    results = []
    skipped: list[str] = []
    failed = 0
    work = Path(tempfile.mkdtemp(prefix="strait-memif-"))
    try:
        for c in cases.split(","):
            proto, flows, workers = c.split(":")
            print(f"bench_memif: {proto} {flows} flows, {workers} worker(s)", file=sys.stderr)
            try:
                r = run_case(proto, int(flows), int(workers), seconds, work, a.metrics_port)
            except Unsupported as e:
                print(f"bench_memif: case {c} not run: {e}", file=sys.stderr)
                skipped.append(f"{c}: {e}")
                continue
            except RuntimeError as e:
                print(f"bench_memif: case {c} failed: {e}", file=sys.stderr)
                failed = 1
                continue
            print(json.dumps(r), file=sys.stderr)
            if r["exit"] != 0 or r["straitd_exit"] != 0:
                print(f"bench_memif: case {c}: generator exit {r['exit']}, straitd exit {r['straitd_exit']}",
                      file=sys.stderr)
                failed = 1
            results.append(r)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cmd = "sudo tools/bench" + (" --quick" if a.quick else "")
    md = markdown(results, cmd, seconds, skipped)
    print(md)
    if a.markdown:
        a.markdown.write_text(md)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1) + "\n")
    return failed


if __name__ == "__main__":
    sys.exit(main())
