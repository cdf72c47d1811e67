#!/usr/bin/python3
"""Writes a tools/bench run into docs/benchmarks.md.

The generated part - the run's header (machine, date, commit), the
in-process tables exactly as strait-bench printed them (with the memory
they ran on), the kernel-free (memif) and the end-to-end tables - lives
between `<!-- bench:begin -->` and `<!-- bench:end -->`.
Everything outside the markers is hand-written (the introduction, the
comparison with published figures, the targets) and is kept as it is. A
file without markers gets the block inserted before its first hand-written
analysis section, or at the end; a missing file is created with clearly
marked placeholders for those sections.

Usage: bench_doc.py --doc PATH --mode full|quick --command CMD
         [--inprocess FILE --inprocess-cmd CMD [--inprocess-memory WHAT] | --inprocess-skipped WHY]
         [--memif FILE | --memif-skipped WHY]
         [--e2e FILE | --e2e-skipped WHY]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
REPO = Path(__file__).resolve().parents[2]

SKELETON_HEAD = """\
# Benchmarks

What `sudo tools/bench` measures and the figures of its latest run. The
run's section below is rewritten by the script each time (between the
`bench:begin` / `bench:end` markers); everything outside the markers is
written by hand and kept. Benchmarks are not tests: nothing here asserts a
time. Absolute figures drift on shared machines, so compare figures from
one run (the ratios) rather than figures from different runs.

"""

SKELETON_TAIL = """
## Comparison with published figures

<!-- placeholder: written by hand (the lead); tools/bench does not touch it. -->
_Placeholder: to be written._

## Targets

<!-- placeholder: written by hand (the lead); tools/bench does not touch it. -->
_Placeholder: to be written._
"""


def run(args: list[str]) -> str:
    try:
        return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              cwd=REPO, timeout=30, check=False).stdout.decode(errors="replace").strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine() -> str:
    model = ""
    virt = ""
    for line in run(["lscpu"]).splitlines():
        key, _, val = line.partition(":")
        if key.strip() == "Model name" and not model:
            model = val.strip()
        elif key.strip() == "Hypervisor vendor":
            virt = f", {val.strip()} guest"
    cpus = len(os.sched_getaffinity(0))
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB memory"
    except OSError:
        pass
    return f"{model or platform.processor() or 'unknown CPU'}, {cpus} CPUs, {mem}{virt}, Linux {platform.release()}"


def commit() -> str:
    head = run(["git", "rev-parse", "--short", "HEAD"]) or "unknown"
    # --no-optional-locks: reading the state must not rewrite the index.
    status = run(["git", "--no-optional-locks", "status", "--porcelain"])
    if not status:
        return f"`{head}`, clean tree"
    n = len(status.splitlines())
    return f"`{head}` plus uncommitted changes ({n} paths modified or untracked)"


def block(a: argparse.Namespace) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()
    out = [BEGIN,
           "<!-- Written by tools/bench on every run; edit outside the bench markers. -->",
           "",
           "## Latest run",
           "",
           "| | |",
           "|---|---|",
           f"| machine | {machine()} |",
           f"| date | {now} |",
           f"| commit | {commit()} |",
           f"| command | `{a.command}` ({a.mode}) |",
           f"| load average at the end | {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} |",
           "",
           "## In-process fast path (strait-bench)",
           ""]
    if a.inprocess:
        out += [f"`{a.inprocess_cmd}`, tables as the binary prints them.", ""]
        if a.inprocess_memory:
            out += [f"EAL memory: {a.inprocess_memory}.", ""]
        out += [Path(a.inprocess).read_text().rstrip(), ""]
    else:
        out += [f"Not run: {a.inprocess_skipped or 'no output'}.", ""]
    out += ["## Kernel-free I/O: straitd on net_memif against strait-memifgen", ""]
    if a.memif:
        out += [Path(a.memif).read_text().rstrip(), ""]
    else:
        out += [f"Not run: {a.memif_skipped or 'no output'}.", ""]
    out += ["## End to end: straitd (af_packet and AF_XDP) against iptables DNAT + MASQUERADE", ""]
    if a.e2e:
        out += [Path(a.e2e).read_text().rstrip(), ""]
    else:
        out += [f"Not run: {a.e2e_skipped or 'no output'}.", ""]
    out.append(END)
    return "\n".join(out) + "\n"


def splice(doc: str | None, generated: str) -> str:
    if doc is None:
        return SKELETON_HEAD + generated + SKELETON_TAIL
    b, e = doc.find(BEGIN), doc.find(END)
    if b >= 0 and e > b:
        tail = doc[e + len(END):]
        return doc[:b] + generated.rstrip("\n") + (tail if tail.startswith("\n") else "\n" + tail)
    if (b >= 0) != (e >= 0) or (b >= 0 and e < b):
        raise SystemExit("bench_doc: the bench markers in the document are unbalanced; fix them by hand")
    for heading in ("\n## Comparison with published figures", "\n## Targets"):
        i = doc.find(heading)
        if i >= 0:
            return doc[:i + 1] + generated + "\n" + doc[i + 1:]
    return doc.rstrip("\n") + "\n\n" + generated


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--doc", type=Path, required=True)
    ap.add_argument("--mode", default="full")
    ap.add_argument("--command", default="sudo tools/bench")
    ap.add_argument("--inprocess")
    ap.add_argument("--inprocess-cmd", default="")
    ap.add_argument("--inprocess-memory", default="",
                    help="what memory the in-process part ran on (hugepages or 4 KiB pages, and why)")
    ap.add_argument("--inprocess-skipped")
    ap.add_argument("--memif")
    ap.add_argument("--memif-skipped")
    ap.add_argument("--e2e")
    ap.add_argument("--e2e-skipped")
    a = ap.parse_args()
    generated = block(a)
    old = a.doc.read_text() if a.doc.exists() else None
    new = splice(old, generated)
    tmp = a.doc.with_suffix(a.doc.suffix + ".tmp")
    tmp.write_text(new)
    os.replace(tmp, a.doc)
    print(f"bench: wrote {a.doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
