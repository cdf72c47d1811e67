"""Network-namespace plumbing shared by the packet and end-to-end tiers.

Everything here is a thin, checked wrapper over iproute2, ethtool and
setns(2): run a command (in the root namespace or inside a named one), make
a namespace with the sysctls every test namespace wants, open a socket that
lives in another namespace, and remember what was created so that teardown
can undo it in reverse order even when a test failed half-way.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator, Sequence

CLONE_NEWNET = 0x40000000
NS_PREFIX = "strait-t"

_libc = ctypes.CDLL(None, use_errno=True)


class CommandError(RuntimeError):
    """A setup command failed; the message carries the command and its output."""


def sh(args: Sequence[str], *, check: bool = True, timeout: float = 30.0,
       capture: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Runs a command (no shell) and raises CommandError with its output on failure."""
    try:
        proc = subprocess.run(list(args), input=input, timeout=timeout,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE if capture else None)
    except subprocess.TimeoutExpired as e:
        raise CommandError(f"timed out after {timeout}s: {shlex.join(args)}") from e
    if check and proc.returncode != 0:
        out = (proc.stdout or b"").decode(errors="replace")
        err = (proc.stderr or b"").decode(errors="replace")
        raise CommandError(f"exit {proc.returncode}: {shlex.join(args)}\n{out}{err}".rstrip())
    return proc


def ns_cmd(ns: str, args: Sequence[str]) -> list[str]:
    """The argv that runs `args` inside namespace `ns`."""
    return ["ip", "netns", "exec", ns, *args]


def ns_sh(ns: str, args: Sequence[str], **kw) -> subprocess.CompletedProcess:
    return sh(ns_cmd(ns, args), **kw)


@contextlib.contextmanager
def in_netns(ns: str) -> Iterator[None]:
    """Switches the calling thread into namespace `ns` for the block.

    Sockets created inside the block stay in `ns` after it ends, which is
    how the tests talk raw Ethernet on a veth that only exists there while
    the test process itself keeps running in the root namespace.
    """
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({ns}): {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(orig, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                # Staying in a test namespace would make every later step lie.
                print(f"fatal: cannot return to the original netns: {os.strerror(err)}",
                      file=sys.stderr)
                os._exit(70)
    finally:
        os.close(target)
        os.close(orig)


def disable_offloads(ns: str, ifname: str) -> None:
    """Kernel veths hand partial checksums and GSO super-frames to af_packet
    readers; a DPDK port on the other end would forward them as they are, so
    TCP breaks while ping works. Every kernel end gets plain frames."""
    ns_sh(ns, ["ethtool", "-K", ifname, "tx", "off", "rx", "off", "gso", "off",
               "tso", "off", "gro", "off"])


class Cleanup:
    """A stack of undo actions, run last-in first-out; errors are collected
    and reported, never allowed to stop the rest of the teardown."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, fn: Callable[[], None]) -> None:
        self._actions.append((what, fn))

    def run(self) -> list[str]:
        errors = []
        while self._actions:
            what, fn = self._actions.pop()
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - teardown must go on
                errors.append(f"{what}: {e}")
        return errors


def make_netns(name: str, cleanup: Cleanup, *, forwarding: bool = False) -> str:
    """Creates namespace `name` with lo up and IPv6 off (no router
    solicitations or DAD frames to muddy exact packet checks)."""
    sh(["ip", "netns", "add", name])
    cleanup.push(f"netns {name}", lambda: sh(["ip", "netns", "del", name], check=False))
    for key, val in (("net.ipv6.conf.all.disable_ipv6", "1"),
                     ("net.ipv6.conf.default.disable_ipv6", "1"),
                     ("net.ipv4.conf.all.rp_filter", "0"),
                     ("net.ipv4.conf.default.rp_filter", "0"),
                     ("net.ipv4.ip_forward", "1" if forwarding else "0")):
        ns_sh(name, ["sysctl", "-qw", f"{key}={val}"])
    if forwarding:
        # The router sends packets back out of the link they came in on
        # (straitd's replies); a redirect would only confuse captures.
        ns_sh(name, ["sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0"])
        ns_sh(name, ["sysctl", "-qw", "net.ipv4.conf.default.send_redirects=0"])
    ns_sh(name, ["ip", "link", "set", "lo", "up"])
    return name


def make_veth(ns_a: str, if_a: str, ns_b: str, if_b: str, *,
              mac_a: str | None = None, mac_b: str | None = None,
              mtu: int = 1500, queues: int = 1) -> None:
    """A veth pair created directly between two namespaces, so interface
    names only need to be unique inside each namespace (and never touch the
    root namespace). Both ends come up with offloads off. `queues` RX/TX
    queues on each end: an AF_XDP port binds one queue per worker, and the
    peer's TX queue picks the queue a frame arrives on."""
    qargs = ["numtxqueues", str(queues), "numrxqueues", str(queues)] if queues > 1 else []
    args = ["ip", "-n", ns_a, "link", "add", if_a]
    if mac_a:
        args += ["address", mac_a]
    args += ["mtu", str(mtu)] + qargs + ["type", "veth", "peer", "name", if_b, "netns", ns_b]
    if mac_b:
        args += ["address", mac_b]
    args += ["mtu", str(mtu)] + qargs
    sh(args)
    for ns, ifname in ((ns_a, if_a), (ns_b, if_b)):
        disable_offloads(ns, ifname)
        ns_sh(ns, ["ip", "link", "set", ifname, "up"])


def add_addr(ns: str, ifname: str, cidr: str) -> None:
    ns_sh(ns, ["ip", "addr", "add", cidr, "dev", ifname])


def add_route(ns: str, dest: str, via: str) -> None:
    ns_sh(ns, ["ip", "route", "add", dest, "via", via])


def unique_tag() -> str:
    """A per-process, per-call tag for names: the pid keeps concurrent runs
    (several engineers, CI) apart, the counter keeps topologies of one run
    apart."""
    unique_tag.counter += 1  # type: ignore[attr-defined]
    return f"{os.getpid()}-{unique_tag.counter}"  # type: ignore[attr-defined]


unique_tag.counter = 0  # type: ignore[attr-defined]


def remove_stale_namespaces() -> list[str]:
    """Deletes test namespaces left by runs that died (their pid is gone)
    and that hold no process any more; anything still running in one is
    left alone (it is not ours to kill)."""
    removed = []
    run_netns = Path("/run/netns")
    if not run_netns.is_dir():
        return removed
    for entry in run_netns.iterdir():
        name = entry.name
        if not name.startswith(NS_PREFIX):
            continue
        pid = name[len(NS_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        pids = sh(["ip", "netns", "pids", name], check=False).stdout.split()
        if pids:
            continue
        sh(["ip", "netns", "del", name], check=False)
        removed.append(name)
    return removed
