"""ICMP at straitd: echo requests to any of its addresses are answered;
errors that quote one of its flows are translated both ways (outer and
quoted headers, quoted checksums included, so PMTU discovery works across
the NAT); errors for no flow and other ICMP types are counted drops.
"""

from __future__ import annotations

import socket
import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.packet import Raw

from tests.lib.wire import inet_checksum
from tests.packet.helpers import (ALT_BACKEND, CLIENT, DNS_BACKEND, SNAT2, TTL_IN, VIP, VIP2,
                                  WEB_BACKEND, assert_datagram, ip_bytes, next_port, tcp_to,
                                  to_lb, udp_to)


def translate_quote(quote: bytes, src: str, dst: str, sport: int, dport: int) -> bytes:
    """A quoted datagram as the other side of the NAT must see it: addresses
    and ports replaced, the quoted IPv4 checksum right, and the quoted L4
    checksum right when the quote holds the whole segment."""
    q = bytearray(quote)
    ihl = (q[0] & 0xF) * 4
    q[12:16] = socket.inet_aton(src)
    q[16:20] = socket.inet_aton(dst)
    q[10:12] = b"\0\0"
    q[10:12] = struct.pack("!H", inet_checksum(bytes(q[:ihl])))
    q[ihl:ihl + 4] = struct.pack("!HH", sport, dport)
    total = struct.unpack_from("!H", q, 2)[0]
    if len(q) >= total:
        ip = IP(bytes(q[:total]))
        del ip.payload.chksum
        q[:total] = bytes(ip)
    return bytes(q)


def icmp_error_out(sent, *, src: str, dst: str, quote: bytes) -> bytes:
    """The error `sent` as straitd must forward it: new outer addresses, TTL
    one less, the translated quote, the ICMP checksum over all of it."""
    ip = IP(ip_bytes(sent))
    ip.src, ip.dst, ip.ttl = src, dst, ip.ttl - 1
    icmp = ip[ICMP]
    icmp.remove_payload()
    icmp.add_payload(Raw(quote))
    del ip.chksum
    del icmp.chksum
    return bytes(ip)


def test_echo_to_every_own_address_answered(lb):
    w = lb.wire
    c = lb.counters()
    for n, addr in enumerate((VIP, VIP2, SNAT2)):
        req = to_lb(IP(src=CLIENT, dst=addr, ttl=TTL_IN, id=300 + n) /
                    ICMP(type=8, id=0x77, seq=n) / (b"ping-payload-" * 4))
        w.send(req)
        out = w.expect(lambda p, a=addr: ICMP in p and p[IP].src == a, f"echo reply from {addr}")
        want = IP(ip_bytes(req))
        want.src, want.dst, want.ttl = addr, CLIENT, 64
        want[ICMP].type = 0
        del want.chksum
        del want[ICMP].chksum
        assert_datagram(out, bytes(want), f"echo reply from {addr}")
    c.assert_delta("strait_icmp_echo_replies_total", 3)
    c.assert_drops(None)


def _open_tcp(lb, vip, vport, backend):
    """A flow: SYN out; returns (the SYN as forwarded, client port)."""
    cport = next_port()
    lb.wire.send(to_lb(IP(src=CLIENT, dst=vip, ttl=TTL_IN) /
                       TCP(sport=cport, dport=vport, flags="S", seq=1) / (b"d" * 100)))
    return lb.wire.expect(tcp_to(*backend), "SYN to the backend"), cport


def test_frag_needed_from_backend_translated_to_client(lb):
    """The backend itself says the SYN (with data) was too big: the client
    gets the error from the VIP, quoting its own packet to the VIP, every
    quoted checksum valid."""
    c = lb.counters()
    fwd, cport = _open_tcp(lb, VIP, 80, WEB_BACKEND)
    snat_port = fwd[TCP].sport
    quote = ip_bytes(fwd)  # what a backend kernel quotes: the whole datagram it got
    err = to_lb(IP(src=WEB_BACKEND[0], dst=VIP, ttl=TTL_IN) /
                ICMP(type=3, code=4, nexthopmtu=1400) / Raw(quote))
    lb.wire.send(err)
    out = lb.wire.expect(lambda p: ICMP in p and p[IP].dst == CLIENT, "frag-needed to the client")
    want_quote = translate_quote(quote, CLIENT, VIP, cport, 80)
    assert_datagram(out, icmp_error_out(err, src=VIP, dst=CLIENT, quote=want_quote), "frag-needed")
    inner = IP(bytes(out[ICMP].payload))
    assert (inner.src, inner.dst, inner[TCP].sport, inner[TCP].dport) == (CLIENT, VIP, cport, 80)
    assert out[ICMP].nexthopmtu == 1400
    assert snat_port != 0
    c.assert_delta("strait_icmp_errors_translated_total", 1)
    c.assert_drops(None)


def test_frag_needed_from_router_keeps_router_source(lb):
    """An intermediate router (not the backend) reports with a minimal
    quote (IPv4 header + 8 bytes): the outer source stays the router's, the
    quote is translated; the quoted TCP checksum is not in the quote."""
    c = lb.counters()
    fwd, cport = _open_tcp(lb, VIP2, 8080, ALT_BACKEND)
    router = "203.0.113.1"
    quote = ip_bytes(fwd)[:28]
    err = to_lb(IP(src=router, dst=SNAT2, ttl=TTL_IN) /
                ICMP(type=3, code=4, nexthopmtu=1280) / Raw(quote))
    lb.wire.send(err)
    out = lb.wire.expect(lambda p: ICMP in p and p[IP].dst == CLIENT, "frag-needed to the client")
    want_quote = translate_quote(quote, CLIENT, VIP2, cport, 8080)
    assert_datagram(out, icmp_error_out(err, src=router, dst=CLIENT, quote=want_quote), "frag-needed")
    c.assert_delta("strait_icmp_errors_translated_total", 1)
    c.assert_drops(None)


CLIENT_ERROR_FLOWS = 16


def test_port_unreachable_from_client_translated_to_backend(lb):
    """The client's kernel refuses UDP answers: the backend gets each error
    from the SNAT address, quoting its own datagram to the SNAT port.

    Several flows, because with two workers each flow's owner is the worker
    its first datagram hashed to, while the errors (same addresses, no
    ports) all hash to one worker: with 16 flows, some error meets a worker
    that does not own its flow, except with probability 2^-16."""
    w = lb.wire
    c = lb.counters()
    bip, bport = DNS_BACKEND
    for _ in range(CLIENT_ERROR_FLOWS):
        cport = next_port()
        w.send(to_lb(IP(src=CLIENT, dst=VIP, ttl=TTL_IN) / UDP(sport=cport, dport=53) / b"query"))
        snat_port = w.expect(udp_to(bip, bport), "query to the backend")[UDP].sport
        w.send(to_lb(IP(src=bip, dst=VIP, ttl=TTL_IN) / UDP(sport=bport, dport=snat_port) / b"answer"))
        answer = w.expect(udp_to(CLIENT, cport), "answer to the client")
        quote = ip_bytes(answer)
        err = to_lb(IP(src=CLIENT, dst=VIP, ttl=TTL_IN) / ICMP(type=3, code=3) / Raw(quote))
        w.send(err)
        out = w.expect(lambda p: ICMP in p and p[IP].dst == bip, "port-unreachable to the backend")
        want_quote = translate_quote(quote, bip, VIP, bport, snat_port)
        assert_datagram(out, icmp_error_out(err, src=VIP, dst=bip, quote=want_quote),
                        "port-unreachable")
    c.assert_delta("strait_icmp_errors_translated_total", CLIENT_ERROR_FLOWS)
    c.assert_drops(None)


def test_icmp_error_without_flow_dropped(lb):
    c = lb.counters()
    quote = bytes(IP(src=SNAT2, dst=ALT_BACKEND[0], ttl=63) /
                  TCP(sport=next_port() + 30000, dport=ALT_BACKEND[1], flags="S"))
    lb.wire.send(to_lb(IP(src=ALT_BACKEND[0], dst=SNAT2, ttl=TTL_IN) /
                       ICMP(type=3, code=4, nexthopmtu=1400) / Raw(quote)))
    c.assert_drops("no_flow")
    lb.wire.expect_silence(0.3)


def test_other_icmp_to_vip_dropped(lb):
    c = lb.counters()
    lb.wire.send(to_lb(IP(src=CLIENT, dst=VIP, ttl=TTL_IN) / ICMP(type=13, id=1, seq=1) / (b"\0" * 12)))
    c.assert_drops("icmp_unhandled")
    lb.wire.expect_silence(0.3)
