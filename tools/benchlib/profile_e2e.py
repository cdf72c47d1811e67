#!/usr/bin/python3
"""Where the CPU goes in the end-to-end keep-alive benchmark: the topology
of bench_e2e.py, one wrk keep-alive run per relay (the iptables DNAT +
MASQUERADE relay and straitd on AF_XDP, or af_packet), each under a
system-wide `perf record` (CPU-clock sampling; Debian's linux-perf) and
with /proc/stat read around it. Prints, per relay, the requests/s, the
machine's CPU time per request split by state (user, system, softirq,
idle) and by process (wrk, nginx, straitd, ksoftirqd, idle, everything
else on the machine), and the kernel's time per request split into the
networking paths it was in (XDP/AF_XDP, veth, netfilter and conntrack,
the TCP/IP stack, scheduling, ...), as Markdown. A profile, not a test
and not a benchmark figure to compare across machines.

Usage: sudo profile_e2e.py [--relays iptables,straitd-xdp] [--seconds S] [--keep DIR]
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_e2e", REPO / "tools" / "benchlib" / "bench_e2e.py")
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)

# Kernel functions by the path they belong to; first match wins.
KERNEL_CLASSES = [
    ("XDP program and AF_XDP", re.compile(r"xsk|xdp|bpf_prog|bpf_|__bpf")),
    ("veth", re.compile(r"veth")),
    ("netfilter, conntrack, NAT", re.compile(r"^nf_|^__nf_|nf_conntrack|^ipt_|^nft_|nf_nat|^hash_conntrack|ct_")),
    ("packet socket (af_packet)", re.compile(r"^packet_|^tpacket|^__packet|prb_")),
    ("TCP", re.compile(r"^tcp_|^__tcp|^inet_csk|^inet_ehash|^sk_stream")),
    ("IP, routing, neighbours", re.compile(r"^ip_|^__ip|^ipv4|^fib_|^inet_|^neigh|^dst_|^rt_|^__neigh")),
    ("device layer, skb", re.compile(r"netif|napi|^dev_|^__dev|skb|^net_rx|^net_tx|^eth_|^validate_xmit|"
                                     r"^qdisc|^sch_|^pfifo|^__qdisc|gro|kfree|kmem|kmalloc|page_frag|"
                                     r"^build_skb|^consume|^sock_|^__sock")),
    ("sockets, epoll, syscalls", re.compile(r"epoll|^sys_|^__x64_sys|^do_sys|^__sys|syscall|^sock|^__fdget|"
                                            r"^fput|^fget|^vfs_|^ksys|^copy_|^_copy|^__copy|iov_|^rw_|"
                                            r"^entry_|^do_syscall|^import_")),
    ("scheduler, wakeups, timers", re.compile(r"sched|^schedule|switch|wake|^try_to|^enqueue|^dequeue|"
                                              r"^pick_|^update_|hrtimer|^timer|tick|^ttwu|^select_task|"
                                              r"nanosleep|futex|^__x2apic|apic")),
    ("idle", re.compile(r"idle|halt|mwait|poll_idle|cpuidle")),
    ("files and memory (nginx's open, stat, read; page faults)",
     re.compile(r"path|d_lookup|dentry|^d_|inode|filemap|file|open|stat|fault|^mm|vma|unmap|page|folio|"
                r"^lru|^mem|^slab|^__slab|^alloc_|^free_|^__free|rmap|^ext4|^xfs|^shmem|^generic_perm|"
                r"^may_|^security|^apparmor|^aa_|^walk_|^lookup|^step_|^terminate_walk")),
    ("copies", re.compile(r"memcpy|memmove|memset|^_copy|^copy|^__copy|csum")),
    ("interrupt and syscall entry/exit", re.compile(r"irqentry|^entry_|^syscall_|^exit_to|^do_syscall|"
                                                    r"^__irq|^irq_|^asm_|^sysvec|^error_entry")),
    ("locks, RCU", re.compile(r"spin|lock|rcu")),
]


def classify(sym: str) -> str:
    for name, rx in KERNEL_CLASSES:
        if rx.search(sym):
            return name
    return "other kernel"


def proc_stat() -> dict:
    f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    keys = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice"]
    return {k: int(v) for k, v in zip(keys, f)}


def comm_group(comm: str, pid: int, ours: set[int]) -> str:
    """Processes of the topology's namespaces by role; the idle task; and
    everything else (other work on a shared machine, and softirq work that
    happened to run while it held the CPU)."""
    if comm.startswith("swapper"):
        return "idle (swapper)"
    if comm.startswith("ksoftirqd"):
        return "ksoftirqd"
    if pid not in ours:
        return "everything else on the machine"
    if comm.startswith("wrk"):
        return "wrk (client)"
    if comm.startswith("nginx"):
        return "nginx (backends)"
    if comm.startswith(("rte-worker", "straitd", "eal-intr", "lcore-")):
        return "straitd"
    return "other processes of the topology"


def namespace_pids(namespaces: list[str]) -> set[int]:
    pids: set[int] = set()
    for ns in namespaces:
        r = subprocess.run(["ip", "netns", "pids", ns], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           check=False)
        pids |= {int(x) for x in r.stdout.split()}
    return pids


def profile(data: Path, ours: set[int]) -> tuple[collections.Counter, collections.Counter, collections.Counter, int]:
    out = subprocess.run(["perf", "script", "-i", str(data), "-F", "pid,comm,ip,sym,dso"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False).stdout.decode(errors="replace")
    by_comm: collections.Counter = collections.Counter()
    by_class: collections.Counter = collections.Counter()
    kernel_in: collections.Counter = collections.Counter()
    total = 0
    for line in out.splitlines():
        m = re.match(r"\s*(.+?)\s+(\d+)\s+([0-9a-f]+)\s+(.*?)\s+\((.*)\)\s*$", line)
        if not m:
            continue
        comm, pid, sym, dso = m.group(1), int(m.group(2)), m.group(4), m.group(5)
        sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
        total += 1
        group = comm_group(comm, pid, ours)
        kernel = "kernel" in dso
        by_comm[(group, "kernel" if kernel else "user")] += 1
        if kernel:
            cls = classify(sym)
            by_class[cls] += 1
            kernel_in[(group, cls)] += 1
    return by_comm, by_class, kernel_in, total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--relays", default=f"{e2e.IPTABLES},{e2e.STRAITD_XDP}")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--keep", type=Path, help="keep the perf data files here")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("profile_e2e: needs root", file=sys.stderr)
        return 2
    args = argparse.Namespace(threads=2, connections=32, seconds=a.seconds)
    work = a.keep or Path(tempfile.mkdtemp(prefix="strait-prof-"))
    work.mkdir(parents=True, exist_ok=True)
    topo = e2e.Ec2Topology(backends=2, mgmt=False, payload_size=64 << 10)
    hz = os.sysconf("SC_CLK_TCK")
    ncpu = len(os.sched_getaffinity(0))
    results = []
    relay = None
    try:
        topo.up()
        topo.start_backends()
        for i, name in enumerate(a.relays.split(",")):
            relay = (e2e.IptablesRelay(topo, i + 1) if name == e2e.IPTABLES else
                     e2e.StraitdRelay(topo, 50, 262143, io="xdp" if name == e2e.STRAITD_XDP else "af_packet"))
            relay.start()
            e2e.wait_vip(topo)
            e2e.run_wrk(topo, argparse.Namespace(threads=2, connections=32, seconds=2), close=False)  # warm
            data = work / f"{name}.data"
            perf = subprocess.Popen(["perf", "record", "-q", "-a", "-F", "1999", "-o", str(data)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            s0, t0 = proc_stat(), time.monotonic()
            ours: set[int] = set()
            # The namespaces' processes (wrk exists only while it runs).
            grab = threading.Timer(2.0, lambda: ours.update(namespace_pids(topo.namespaces)))
            grab.start()
            res = e2e.run_wrk(topo, args, close=False)
            s1, t1 = proc_stat(), time.monotonic()
            grab.join()
            perf.send_signal(2)
            perf.wait(timeout=60)
            relay.stop()
            relay = None
            d = {k: (s1[k] - s0[k]) / hz for k in s0}
            results.append((name, res, d, t1 - t0, profile(data, ours)))
    finally:
        if relay is not None:
            relay.stop()
        topo.down()

    print(f"Keep-alive HTTP (`wrk -t2 -c32 -d{a.seconds}s`) through each relay, {ncpu} CPUs; CPU time per "
          "request in microseconds (all CPUs together).\n")
    for name, res, d, secs, (by_comm, by_class, kernel_in, total) in results:
        rps = res.get("rps") or 0.0
        reqs = res.get("requests") or 0
        busy = sum(v for k, v in d.items() if k not in ("idle", "iowait"))
        print(f"### {e2e.RELAY_TITLE.get(name, name)}\n")
        print(f"{rps:,.0f} requests/s; the machine's CPUs were busy {busy / secs:.2f} of {ncpu} "
              f"(user {d['user'] / secs:.2f}, system {d['system'] / secs:.2f}, softirq {d['softirq'] / secs:.2f}, "
              f"irq {d['irq'] / secs:.2f}, idle {d['idle'] / secs:.2f}, steal {d['steal'] / secs:.2f}).\n")
        if not reqs or not total:
            continue
        per_sample_us = ncpu * secs * 1e6 / total / reqs  # CPU-us per request per sample
        print("| process | user us/request | kernel us/request |\n|---|---|---|")
        groups = sorted({g for g, _ in by_comm}, key=lambda g: -(by_comm[(g, 'user')] + by_comm[(g, 'kernel')]))
        for g in groups:
            print(f"| {g} | {by_comm[(g, 'user')] * per_sample_us:.1f} | {by_comm[(g, 'kernel')] * per_sample_us:.1f} |")
        print("\n| kernel path | us/request | of which in wrk / nginx / straitd / ksoftirqd / idle / other |\n"
              "|---|---|---|")
        for cls, n in by_class.most_common():
            parts = " / ".join(f"{kernel_in[(g, cls)] * per_sample_us:.1f}" for g in
                               ("wrk (client)", "nginx (backends)", "straitd", "ksoftirqd", "idle (swapper)",
                                "everything else on the machine"))
            print(f"| {cls} | {n * per_sample_us:.1f} | {parts} |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
