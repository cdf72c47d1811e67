"""Raw Ethernet on the tester side of the packet-tier topology, and the
checks every frame straitd emits must pass.

`Wire` owns one AF_PACKET socket opened inside the tester namespace: it
sends Scapy frames as they are and returns the frames straitd sent back
(never our own outgoing ones). `checksum_errors` recomputes every IPv4 and
L4 checksum of a frame with Scapy, quoted headers inside ICMP errors
included, and names the ones that differ.
"""

from __future__ import annotations

import select
import socket
import time
from typing import Callable, Iterable

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror  # noqa: F401
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet

from .netns import in_netns

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4

Pred = Callable[[Ether], bool]


def is_gateway_arp(gateway_ip: str) -> Pred:
    """straitd resolving its next hop: background traffic, not a verdict."""
    def pred(p: Ether) -> bool:
        return ARP in p and p[ARP].op == 1 and p[ARP].pdst == gateway_ip
    return pred


class Wire:
    def __init__(self, ns: str, ifname: str, *, ignore: Iterable[Pred] = ()) -> None:
        with in_netns(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((ifname, ETH_P_ALL))
        self.sock.setblocking(False)
        self.ifname = ifname
        self.ignore = list(ignore)
        self.sent = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, *pkts: Packet) -> None:
        for p in pkts:
            self.sock.send(bytes(p))
            self.sent += 1

    def _read(self, timeout: float) -> Ether | None:
        """The next frame straitd sent us, or None when `timeout` passes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                select.select([self.sock], [], [], left)
                continue
            if addr[2] == PACKET_OUTGOING:
                continue
            p = Ether(data)
            if any(f(p) for f in self.ignore):
                continue
            return p

    def drain(self) -> list[Ether]:
        out = []
        while (p := self._read(0)) is not None:
            out.append(p)
        return out

    def collect(self, duration: float) -> list[Ether]:
        """Everything that arrives within `duration` seconds."""
        out = []
        deadline = time.monotonic() + duration
        while (left := deadline - time.monotonic()) > 0:
            p = self._read(left)
            if p is None:
                break
            out.append(p)
        return out

    def expect(self, pred: Pred, what: str, timeout: float = 3.0) -> Ether:
        """The first frame matching `pred`; frames seen before it that do
        not match are reported if none does."""
        seen = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            p = self._read(left)
            if p is None:
                break
            if pred(p):
                return p
            seen.append(p)
        raise AssertionError(f"no frame for {what} within {timeout}s; saw {len(seen)}: "
                             + "; ".join(x.summary() for x in seen[:10]))

    def expect_n(self, pred: Pred, n: int, what: str, timeout: float = 5.0) -> list[Ether]:
        got: list[Ether] = []
        deadline = time.monotonic() + timeout
        while len(got) < n and (left := deadline - time.monotonic()) > 0:
            p = self._read(left)
            if p is None:
                break
            if pred(p):
                got.append(p)
        if len(got) != n:
            raise AssertionError(f"{what}: expected {n} frames, got {len(got)}")
        return got

    def expect_silence(self, duration: float = 0.5) -> None:
        got = self.collect(duration)
        assert not got, f"expected no frames, got {len(got)}: " + "; ".join(
            p.summary() for p in got[:10])


def checksum_errors(frame: Ether) -> list[str]:
    """Every IPv4, TCP, UDP and ICMP checksum in `frame` (inner quoted
    headers of an ICMP error too) recomputed; returns the mismatches.

    Inner L4 checksums of an ICMP quote are only comparable when the quote
    holds the whole inner segment; shorter quotes are skipped for that one
    field, as the receiving host would.
    """
    if IP not in frame:
        return []
    ip_bytes = bytes(frame[IP])
    orig = IP(ip_bytes)
    fresh = IP(ip_bytes)
    layer = fresh
    while layer:
        if any(f.name == "chksum" for f in layer.fields_desc):
            layer.chksum = None
        layer = layer.payload
    fresh = IP(bytes(fresh))
    errors = []
    a, b = orig, fresh
    while a and b:
        if any(f.name == "chksum" for f in a.fields_desc):
            name = a.__class__.__name__
            skip = False
            if isinstance(a, (TCPerror, UDPerror)):
                inner = a.underlayer
                quoted = len(bytes(inner))
                skip = inner.len is None or quoted < inner.len
            if not skip and a.chksum != b.chksum:
                errors.append(f"{name} checksum {a.chksum:#06x}, expected {b.chksum:#06x}")
        a, b = a.payload, b.payload
    return errors
