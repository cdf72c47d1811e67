"""Bounded spoofed floods for the flood tests and the benchmark.

`strait-spoofflood` (tools/benchlib/spoofflood.c) is compiled on first use
into the build directory and run in the client namespace: TCP SYNs or UDP
datagrams whose sources cycle over addresses of the client's own test
subnet, capped in packets and seconds. `UdpEcho` answers datagrams in the
backend namespaces; `UdpProbe` plays a real UDP client that opens a fresh
socket (a new flow) for every datagram and counts the answers;
`FreshConnections` does the same with new TCP connections and one HTTP
request each.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .netns import in_netns, ns_cmd, sh
from .straitd import REPO, build_dir

# Spoofed sources: inside the client's 198.51.100.0/26, clear of the
# router (.1) and the real client (.2).
SPOOF_BASE = "198.51.100.3"
SPOOF_COUNT = 60


def flood_binary() -> Path:
    src = REPO / "tools" / "benchlib" / "spoofflood.c"
    out = build_dir() / "tests"
    out.mkdir(parents=True, exist_ok=True)
    exe = out / "strait-spoofflood"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        sh(["cc", "-O2", "-Wall", "-Wextra", "-o", str(exe), str(src)], timeout=120)
    return exe


@dataclass
class FloodResult:
    sent: int
    errors: int
    seconds: float
    rate: float


class Flood:
    """One bounded flood, running in the background from namespace `ns`."""

    def __init__(self, ns: str, kind: str, dst: str, port: int, *, count: int, seconds: float,
                 rate: int = 0) -> None:
        assert kind in ("syn", "udp")
        self.seconds = seconds
        self.proc = subprocess.Popen(
            ns_cmd(ns, [str(flood_binary()), kind, dst, str(port), SPOOF_BASE, str(SPOOF_COUNT),
                        str(count), str(seconds), str(rate)]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def running(self) -> bool:
        return self.proc.poll() is None

    def result(self) -> FloodResult:
        try:
            out, err = self.proc.communicate(timeout=self.seconds + 30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.returncode != 0:
            raise AssertionError(f"strait-spoofflood exited {self.proc.returncode}: {err.decode(errors='replace')}")
        r = json.loads(out.decode().strip().splitlines()[-1])
        return FloodResult(r["sent"], r["errors"], r["seconds"], r["rate"])


_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
"""


class UdpEcho:
    """Answers every datagram to ip:port in namespace `ns`: a process of
    its own (a flood must not compete with the test for one interpreter),
    stopped by its pid."""

    def __init__(self, ns: str, ip: str, port: int) -> None:
        self.proc = subprocess.Popen(ns_cmd(ns, ["/usr/bin/python3", "-c", _ECHO, ip, str(port)]),
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.stop()
            raise RuntimeError(f"UDP echo on {ip}:{port} in {ns} did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def fresh_request(ns: str, host: str, port: int, timeout: float = 5.0) -> None:
    """One new TCP connection from namespace `ns`, one GET, read to the
    end; raises on any failure (connect, timeout, reset, not HTTP 200)."""
    with in_netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect((host, port))
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    status = data.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        raise ConnectionError(f"status {status[:40]!r}")


class FreshConnections:
    """Fresh connections one after another from a real client until
    stopped: successes, and failures with their reasons."""

    def __init__(self, ns: str, host: str, port: int) -> None:
        self.ns, self.host, self.port = ns, host, port
        self.ok = 0
        self.failures: list[str] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                fresh_request(self.ns, self.host, self.port)
                self.ok += 1
            except (OSError, ConnectionError) as e:
                self.failures.append(f"{type(e).__name__}: {e}")
            self.stop_event.wait(0.02)

    def start(self) -> "FreshConnections":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=15)

    @property
    def total(self) -> int:
        return self.ok + len(self.failures)


class UdpProbe(threading.Thread):
    """A real client in namespace `ns`: every `period` s a fresh socket
    sends one datagram to dst:port and waits up to `wait` s for its echo,
    until stopped or `limit` datagrams were sent. With `tries` > 1 an
    unanswered datagram is sent again from the same socket (same flow), as
    a resolver retries: that tells a lost packet (the shared CPUs' rings
    overflowing under the flood) from a flow that cannot be served (no
    port, no table slot), which is what the flood tests are about.
    `answered` counts datagrams answered on any try, `first_try` those
    answered without a retry."""

    def __init__(self, ns: str, dst: str, port: int, *, period: float = 0.05, wait: float = 2.0,
                 limit: int = 1000, tries: int = 1) -> None:
        super().__init__(daemon=True)
        self.ns, self.dst, self.port = ns, dst, port
        self.period, self.wait, self.limit, self.tries = period, wait, limit, tries
        self.sent = 0
        self.answered = 0
        self.first_try = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set() and self.sent < self.limit:
            with in_netns(self.ns):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.settimeout(self.wait)
                token = f"probe {self.sent} {time.monotonic()}".encode()
                self.sent += 1
                for attempt in range(self.tries):
                    s.sendto(token, (self.dst, self.port))
                    if self._echoed(s, token):
                        self.answered += 1
                        self.first_try += attempt == 0
                        break
            finally:
                s.close()
            self.stop_event.wait(self.period)

    def _echoed(self, s: socket.socket, token: bytes) -> bool:
        deadline = time.monotonic() + self.wait
        while time.monotonic() < deadline:
            try:
                data, _ = s.recvfrom(2048)
            except socket.timeout:
                return False
            if data == token:
                return True
        return False

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=self.wait * self.tries + 5)
