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
import struct
import time
from typing import Callable, Iterable

from scapy.layers.inet import IP
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


def inet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement sum, folded and inverted."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _zeroed(data: bytes, offset: int) -> bytes:
    return data[:offset] + b"\0\0" + data[offset + 2:]


def _check_ipv4(data: bytes, where: str, errors: list[str]) -> tuple[int, int, bytes, bytes] | None:
    """Verifies the IPv4 header checksum of `data` and, when the whole L4
    part is present, its TCP/UDP/ICMP checksum (recursing into the quote of
    an ICMP error). Returns (proto, ihl, src+dst, l4 bytes) or None."""
    if len(data) < 20 or data[0] >> 4 != 4:
        errors.append(f"{where}: not an IPv4 header")
        return None
    ihl = (data[0] & 0xF) * 4
    hdr = data[:ihl]
    got = struct.unpack_from("!H", hdr, 10)[0]
    want = inet_checksum(_zeroed(hdr, 10))
    if got != want:
        errors.append(f"{where} IPv4 header checksum {got:#06x}, expected {want:#06x}")
    total = struct.unpack_from("!H", data, 2)[0]
    proto = data[9]
    complete = len(data) >= total
    l4 = data[ihl:total] if complete else data[ihl:]
    frag = struct.unpack_from("!H", data, 6)[0] & 0x3FFF
    if not complete or frag:
        return proto, ihl, hdr[12:20], l4  # a quote or a fragment: L4 not checkable
    pseudo = hdr[12:20] + struct.pack("!BBH", 0, proto, len(l4))
    if proto == 6 and len(l4) >= 20:
        got = struct.unpack_from("!H", l4, 16)[0]
        want = inet_checksum(pseudo + _zeroed(l4, 16))
        if got != want:
            errors.append(f"{where} TCP checksum {got:#06x}, expected {want:#06x}")
    elif proto == 17 and len(l4) >= 8:
        got = struct.unpack_from("!H", l4, 6)[0]
        want = inet_checksum(pseudo + _zeroed(l4, 6)) or 0xFFFF
        if got != 0 and got != want:  # 0 = sender computed none
            errors.append(f"{where} UDP checksum {got:#06x}, expected {want:#06x}")
    elif proto == 1 and len(l4) >= 8:
        got = struct.unpack_from("!H", l4, 2)[0]
        want = inet_checksum(_zeroed(l4, 2))
        if got != want:
            errors.append(f"{where} ICMP checksum {got:#06x}, expected {want:#06x}")
        if l4[0] in (3, 4, 5, 11, 12) and len(l4) >= 28:
            _check_ipv4(l4[8:], f"{where} ICMP quote", errors)
    return proto, ihl, hdr[12:20], l4


def checksum_errors(frame: Ether) -> list[str]:
    """Every IPv4, TCP, UDP and ICMP checksum in `frame`, the headers quoted
    in an ICMP error included, recomputed from the raw bytes; returns the
    mismatches (empty when all are right).

    A quoted L4 checksum is only comparable when the quote holds the whole
    inner datagram; shorter quotes are skipped for that field, as the
    receiving host would.
    """
    if IP not in frame:
        return []
    errors: list[str] = []
    _check_ipv4(bytes(frame[IP]), "outer", errors)
    return errors
