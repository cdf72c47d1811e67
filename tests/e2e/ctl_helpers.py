"""Helpers for the control-plane end-to-end tests (live reconfiguration,
health checks, DNS-named backends, lbctl): a lab that owns its own
topology and straitd (so these tests can change services freely without
disturbing the shared `e2e` fixture), a direct client of the control
socket for fast polling, keep-alive HTTP connections that record which
backend served each request and every failure, a sampler of fresh
connections, a bounded wrk run, and a dnsmasq in a namespace of its own.

Everything started here is stopped by pid in `Lab.down()` (through the
topology's cleanup stack), also when a test fails half-way.
"""

from __future__ import annotations

import collections
import json
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.lib.netns import (CommandError, add_addr, add_route, in_netns, make_netns, make_veth,
                             ns_cmd, ns_sh)
from tests.lib.straitd import Service, Straitd, toml_value
from tests.lib.topology import BACKEND_ROUTER_IP, VIP, Ec2Topology

# Short flow timeouts (seconds) so that closed connections leave the flow
# table, and removed backends leave `backend list`, within a test.
SHORT_TIMEOUTS = {"fin_wait": 2, "close_wait": 2, "last_ack": 2, "time_wait": 1, "closed": 1}

# Where the lab's dnsmasq listens: a namespace of its own on the backend
# bridge, reached from straitd's namespace over the management link.
DNS_IP = "203.0.113.53"


def wait_for(cond, what: str, timeout: float, every: float = 0.05):
    """Polls `cond` until it returns something truthy; returns that value
    and raises with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


# --- the control socket, spoken directly ---------------------------------

class ControlError(RuntimeError):
    """straitd refused a request; the message is its error text."""


def control(sock_path: Path, command: str, timeout: float = 10.0, **args) -> dict:
    """One request on straitd's control socket (protocol version 1), the
    way lbctl sends it, without a process per call: polling health every
    50 ms through lbctl would itself load the two-core machine."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(sock_path))
        s.sendall((json.dumps({"version": 1, "command": command, "args": args}) + "\n").encode())
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    reply = json.loads(buf.split(b"\n", 1)[0])
    if not reply.get("ok"):
        raise ControlError(reply.get("error", repr(reply)))
    return reply["result"]


def backends_by_address(sock_path: Path, service: str) -> dict[str, dict]:
    """`backend list SERVICE` as {"IP:PORT": entry} (active and draining)."""
    r = control(sock_path, "backend list", service=service)
    return {b["address"]: b for b in r["backends"]}


def wait_picked_up(sock_path: Path, timeout: float = 10.0) -> float:
    """Waits until every worker runs the snapshot generation published
    last, and returns how long that took. A change is in force for new
    flows from the moment each worker picks its snapshot up at the top of
    its loop; on this overloaded two-core machine a descheduled worker may
    take a while to get there, so tests that check "no new flow goes there"
    wait for it instead of racing it."""
    t0 = time.monotonic()
    gen = control(sock_path, "stats")["snapshot_generation"]
    wait_for(lambda: all(w["snapshot_generation"] >= gen for w in control(sock_path, "stats")["workers"]),
             f"every worker to pick up snapshot generation {gen}", timeout, every=0.01)
    return time.monotonic() - t0


# --- HTTP through the VIP ---------------------------------------------------

_BACKEND_HDR = re.compile(rb"\r\nX-Backend: *([0-9.]+)", re.I)


def _read_response(sock: socket.socket, buf: bytearray) -> tuple[int, str, bytes]:
    """Reads one HTTP/1.1 response (Content-Length bodies, as nginx sends
    for static files) from `sock`; leftover bytes stay in `buf`."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before the response headers")
        buf += chunk
    head, _, _ = bytes(buf).partition(b"\r\n\r\n")
    del buf[:len(head) + 4]
    status_line = head.split(b"\r\n", 1)[0]
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError):
        raise ConnectionError(f"bad status line {status_line!r}") from None
    m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
    length = int(m.group(1)) if m else 0
    while len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed in the middle of the body")
        buf += chunk
    body = bytes(buf[:length])
    del buf[:length]
    b = _BACKEND_HDR.search(head)
    return status, (b.group(1).decode() if b else ""), body


def connect_in(ns: str, host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection made from inside namespace `ns` (the socket stays
    there; the test process does not)."""
    with in_netns(ns):
        return socket.create_connection((host, port), timeout=timeout)


def one_request(ns: str, host: str = VIP, port: int = 80, path: str = "/",
                timeout: float = 5.0) -> str:
    """A fresh connection, one GET, closed: returns the backend that served
    it; raises on any failure (connect, timeout, reset, non-200)."""
    s = connect_in(ns, host, port, timeout)
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        status, backend, body = _read_response(s, bytearray())
    finally:
        s.close()
    if status != 200:
        raise ConnectionError(f"HTTP {status}")
    if body != f"backend {backend}\n".encode():
        raise ConnectionError(f"body {body[:60]!r} does not match X-Backend {backend}")
    return backend


@dataclass
class Sample:
    counts: collections.Counter
    failures: list[str]
    n: int

    def share(self, backend: str) -> float:
        return self.counts.get(backend, 0) / self.n if self.n else 0.0


def sample_new_connections(ns: str, n: int, host: str = VIP, port: int = 80,
                           timeout: float = 5.0, parallel: int = 4) -> Sample:
    """`n` fresh connections (a few at a time): which backend served each,
    and every failure with its reason."""
    counts: collections.Counter = collections.Counter()
    failures: list[str] = []
    lock = threading.Lock()
    todo = list(range(n))

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            try:
                b = one_request(ns, host, port, timeout=timeout)
                with lock:
                    counts[b] += 1
            except (OSError, ConnectionError) as e:
                with lock:
                    failures.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=n * timeout + 10)
    return Sample(counts, failures, n)


class KeepAliveConn(threading.Thread):
    """One keep-alive HTTP connection through the VIP sending a request
    every `period` seconds until stopped. It records the backend of every
    answer and the first failure (after which the connection is dead: a
    timeout, a reset, a close, a wrong status or a different backend)."""

    def __init__(self, ns: str, host: str = VIP, port: int = 80, *, period: float = 0.05,
                 timeout: float = 3.0) -> None:
        super().__init__(daemon=True)
        self.host = host
        self.period = period
        self.sock = connect_in(ns, host, port, timeout)
        self.buf = bytearray()
        self.stop_event = threading.Event()
        self.ok_times: list[float] = []
        self.failure: str | None = None
        self.failed_at: float | None = None
        # The first request, synchronously: which backend holds this flow.
        self.backend = self._request()
        self.ok_times.append(time.monotonic())

    def _request(self) -> str:
        self.sock.sendall(f"GET / HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        status, backend, _ = _read_response(self.sock, self.buf)
        if status != 200:
            raise ConnectionError(f"HTTP {status}")
        return backend

    def run(self) -> None:
        while not self.stop_event.wait(self.period):
            try:
                b = self._request()
            except (OSError, ConnectionError) as e:
                self.failure = f"{type(e).__name__}: {e}"
                self.failed_at = time.monotonic()
                return
            if b != self.backend:
                self.failure = f"answered by {b}, the connection started on {self.backend}"
                self.failed_at = time.monotonic()
                return
            self.ok_times.append(time.monotonic())

    def ok_after(self, t: float) -> int:
        return sum(1 for x in self.ok_times if x > t)

    def close(self) -> None:
        self.stop_event.set()
        if self.is_alive():
            self.join(timeout=10)
        try:
            self.sock.close()
        except OSError:
            pass


class ConnPool:
    """Keep-alive connections opened until every backend of interest holds
    at least `per_backend` of them (bounded), all running at once."""

    def __init__(self, ns: str, **kw) -> None:
        self.ns = ns
        self.kw = kw
        self.conns: list[KeepAliveConn] = []

    def fill(self, backends: list[str], per_backend: int, max_new: int = 60) -> None:
        for _ in range(max_new):
            have = collections.Counter(c.backend for c in self.conns)
            if all(have[b] >= per_backend for b in backends):
                return
            c = KeepAliveConn(self.ns, **self.kw)
            self.conns.append(c)
            c.start()
        have = collections.Counter(c.backend for c in self.conns)
        raise AssertionError(f"{max_new} new connections did not give {per_backend} per backend "
                             f"of {backends}: {dict(have)}")

    def on(self, backend: str) -> list[KeepAliveConn]:
        return [c for c in self.conns if c.backend == backend]

    def close(self) -> None:
        for c in self.conns:
            c.stop_event.set()
        for c in self.conns:
            c.close()

    def report(self) -> dict[str, dict]:
        """Per backend: connections, requests answered, connections failed."""
        out: dict[str, dict] = {}
        for c in self.conns:
            r = out.setdefault(c.backend, {"connections": 0, "requests_ok": 0, "failed": 0})
            r["connections"] += 1
            r["requests_ok"] += len(c.ok_times)
            r["failed"] += c.failure is not None
        return out


class TinyHttpServer:
    """A misbehaving HTTP server for health-check tests, in namespace `ns`:
    in mode "ok" it answers 200 and closes, in mode "close" it reads the
    request and closes the connection (FIN) without a word."""

    def __init__(self, ns: str, ip: str, port: int) -> None:
        with in_netns(ns):
            self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((ip, port))
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        self.mode = "ok"
        self.accepts: list[tuple[float, str]] = []  # (monotonic time, mode it met)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop_event.is_set():
            try:
                c, _ = self.lsock.accept()
            except OSError:
                continue
            self.accepts.append((time.monotonic(), self.mode))
            try:
                # Read the request first: closing with unread data would
                # send a reset, which is a different (and easier) case.
                c.settimeout(1)
                c.recv(4096)
                if self.mode == "ok":
                    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass
            finally:
                c.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)
        self.lsock.close()


# --- wrk -------------------------------------------------------------------

@dataclass
class WrkResult:
    requests: int
    connect: int
    read: int
    write: int
    timeout: int
    non2xx: int
    output: str

    @property
    def errors(self) -> int:
        return self.connect + self.read + self.write + self.timeout + self.non2xx


class Wrk:
    """wrk in the client namespace for a bounded time, in the background."""

    def __init__(self, ns: str, url: str, *, seconds: int, conns: int = 8, threads: int = 1,
                 timeout_s: int = 3) -> None:
        self.seconds = seconds
        self.proc = subprocess.Popen(
            ns_cmd(ns, ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s",
                        "--timeout", f"{timeout_s}s", url]),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def result(self) -> WrkResult:
        try:
            out, _ = self.proc.communicate(timeout=self.seconds + 30)
        finally:
            self.kill()
        text = out.decode(errors="replace")
        m = re.search(r"(\d+) requests in", text)
        if not m:
            raise AssertionError(f"wrk gave no summary:\n{text}")
        e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
        n = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        c, r, w, t = (int(x) for x in e.groups()) if e else (0, 0, 0, 0)
        return WrkResult(int(m.group(1)), c, r, w, t, int(n.group(1)) if n else 0, text)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


# --- dnsmasq ---------------------------------------------------------------

class Dnsmasq:
    """A real dnsmasq answering A records for names in a hosts file with a
    1 s TTL, in its own namespace on the backend bridge (DNS_IP). The
    answer changes by rewriting the file and sending SIGHUP by pid."""

    def __init__(self, topo: Ec2Topology) -> None:
        self.topo = topo
        self.ns = ""
        self.hosts = topo.workdir / "dns-hosts"
        self.log = topo.workdir / "dnsmasq.log"
        self.proc: subprocess.Popen | None = None

    def up(self, records: dict[str, list[str]]) -> "Dnsmasq":
        t = self.topo
        self.ns = make_netns(t.ns_name("dns"), t.cleanup)
        t.namespaces.append(self.ns)
        make_veth(self.ns, "eth0", t.router, "bkdns")
        ns_sh(t.router, ["ip", "link", "set", "bkdns", "master", "bknet"])
        add_addr(self.ns, "eth0", f"{DNS_IP}/24")
        add_route(self.ns, "default", BACKEND_ROUTER_IP)
        self.write(records)
        self.start()
        return self

    def write(self, records: dict[str, list[str]]) -> None:
        lines = [f"{ip} {name}" for name, ips in records.items() for ip in ips]
        tmp = self.hosts.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.chmod(0o644)
        tmp.replace(self.hosts)

    def start(self) -> None:
        out = open(self.log, "ab")
        # `ip netns exec` execs dnsmasq, so the pid is dnsmasq's own.
        self.proc = subprocess.Popen(
            ns_cmd(self.ns, ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                             "--no-resolv", "--no-hosts", f"--addn-hosts={self.hosts}",
                             "--local-ttl=1", "--local=/strait.test/", "--bind-interfaces",
                             f"--listen-address={DNS_IP}", "--port=53", "--pid-file=",
                             "--user=root", "--log-facility=-", "--log-queries"]),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        self.topo.cleanup.push("dnsmasq", self.stop)
        wait_for(self._answers, f"dnsmasq answering on {DNS_IP}", 10, every=0.1)

    def _answers(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise CommandError(f"dnsmasq exited: {self.log.read_text(errors='replace')}")
        probe = bytes.fromhex("abcd01000001000000000000") + b"\x04test\x00\x00\x01\x00\x01"
        with in_netns(self.ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.settimeout(0.5)
            s.sendto(probe, (DNS_IP, 53))
            s.recv(512)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def reload(self) -> None:
        """SIGHUP: dnsmasq re-reads the hosts file and clears its cache."""
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


# --- the lab ---------------------------------------------------------------

@dataclass
class Lab:
    """An Ec2Topology with `backends` nginx backends, a management link, and
    a straitd of its own serving `services(topo)`."""

    backends: int = 2
    workers: int = 1
    services: object = None          # callable(topo) -> list[Service]
    dataplane: dict = field(default_factory=dict)
    control: dict = field(default_factory=dict)
    instance: dict = field(default_factory=dict)
    dns_records: dict | None = None  # start a dnsmasq with these records
    before_start: object = None      # callable(topo), run before straitd starts
    af_packet_frames: int = 0        # the af_packet PMD's ring per queue (0: its default)
    io: str = "af_packet"            # or "xdp": the shared-NIC mode on lb0 (tests/lib/topology.py)
    topo: Ec2Topology | None = None
    d: Straitd | None = None
    dns: Dnsmasq | None = None

    def up(self) -> "Lab":
        self.topo = Ec2Topology(backends=self.backends, mgmt=True, payload_size=64 << 10, io=self.io)
        try:
            self.topo.up()
            self.topo.start_backends()
            if self.dns_records is not None:
                self.dns = Dnsmasq(self.topo).up(self.dns_records)
            if self.before_start is not None:
                self.before_start(self.topo)
            self.d = Straitd(self.topo.lb, self.topo.workdir, services=self.services(self.topo),
                             workers=self.workers, instance=self.instance,
                             dataplane={"timeouts": SHORT_TIMEOUTS, **self.dataplane},
                             af_packet_frames=self.af_packet_frames, io=self.io)
            if self.control:
                # tests/lib/straitd.py renders no [control] section; a table
                # after the [[service]] array is still valid TOML.
                self.d.config_text += "\n[control]\n" + "".join(
                    f"{k} = {toml_value(v)}\n" for k, v in self.control.items())
            self.d.start()
            self.wait_vip()
        except BaseException:
            self.down()
            raise
        return self

    def wait_vip(self, host: str = VIP, port: int = 80, timeout: float = 30.0) -> None:
        """The first SYN may meet an unresolved gateway (a counted drop) and
        be retransmitted a second later: wait until a request goes through."""
        last = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                one_request(self.topo.client, host, port, timeout=3)
                return
            except (OSError, ConnectionError) as e:
                last = str(e)
        raise AssertionError(f"no answer through {host}:{port} within {timeout}s ({last}); "
                             f"straitd log:\n{self.d.log_tail()}")

    def down(self) -> int | None:
        rc = None
        if self.d is not None:
            rc = self.d.stop()
        if self.topo is not None:
            self.topo.down()
        return rc

    # Shorthands.
    @property
    def sock(self) -> Path:
        return self.d.socket

    def ip(self, i: int) -> str:
        return self.topo.backend_ips[i]

    def lbctl(self, *args: str, check: bool = True, json_out: bool = False):
        return self.d.lbctl(*args, check=check, json_out=json_out)

    def log_tail(self, n: int = 40) -> str:
        return self.d.log_tail(n)


def lab_fixture_body(lab: Lab):
    """Generator body for module fixtures: up, yield, and straitd must exit
    0 on SIGTERM at the end."""
    lab.up()
    rc, log = None, ""
    try:
        yield lab
    finally:
        if lab.d is not None:
            rc = lab.d.stop()
            log = lab.d.log_tail(60)
        lab.down()
    assert rc == 0, f"straitd exited {rc} on SIGTERM; log:\n{log}"


def svc(name: str, listen: str, backends: list[str], **extra) -> Service:
    return Service(name, listen, backends, extra=extra)
