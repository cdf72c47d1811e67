"""PROXY protocol v2 frame by frame, against the "pp" service
(proxy_protocol = "v2", no SYN cookies) and "ppsp" (the same with syn_proxy
= "on"): the header's bytes exactly, riding on the handshake-completing
ACK; sequence and acknowledgement translation by its 28 bytes on data;
the header sent again with a lost header segment, retransmitted first data
and a repeated ACK; SACK blocks; FIN before any data; RST; and with the
SYN proxy, the header on the ACK the dataplane writes to the backend. Every
emitted datagram is compared whole with the one Scapy builds from the
expected fields (checksums recomputed by Scapy), and the counters each case
moves are checked.
"""

from __future__ import annotations

import random
import socket
import struct

from scapy.layers.inet import IP, TCP
from scapy.packet import Raw

from tests.packet.helpers import (CLIENT, PP_BACKEND, PPSP_BACKEND, TTL_IN, VIP, assert_datagram, ip_bytes,
                                  next_port, tcp_to, to_lb)

L = 28
BACKEND_ISN = 700_000


def pp_header(client_port: int, vport: int) -> bytes:
    """The header as the HAProxy specification spells it, built here from
    its parts rather than taken from straitd."""
    return (b"\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A" + bytes([0x21, 0x11]) + struct.pack("!H", 12) +
            socket.inet_aton(CLIENT) + socket.inet_aton(VIP) + struct.pack("!HH", client_port, vport))


def forwarded(sent, *, src, dst, sport, dport, payload=None, **tcp) -> bytes:
    """`sent` as forwarded: addresses and ports replaced, TTL one less, the
    given TCP fields replaced, the payload replaced when given, lengths and
    checksums recomputed, the rest untouched."""
    ip = IP(ip_bytes(sent))
    ip.src, ip.dst, ip.ttl = src, dst, ip.ttl - 1
    t = ip[TCP]
    t.sport, t.dport = sport, dport
    for k, v in tcp.items():
        setattr(t, k, v & 0xffffffff if k in ("seq", "ack") else v)
    if payload is not None:
        t.remove_payload()
        if payload:
            t.add_payload(Raw(payload))
        del ip.len
    del ip.chksum
    del t.chksum
    return bytes(ip)


class Conn:
    """One client connection through a PROXY protocol service, by hand."""

    def __init__(self, lb, vport=25, backend=PP_BACKEND) -> None:
        self.lb = lb
        self.w = lb.wire
        self.vport = vport
        self.bip, self.bport = backend
        self.cport = next_port()
        self.isn = random.randrange(1 << 32)
        self.snat_port = 0
        self.hdr = pp_header(self.cport, vport)

    def client(self, flags, seq, ack=0, payload=b"", options=None, window=502):
        p = to_lb(IP(src=CLIENT, dst=VIP, ttl=TTL_IN, id=random.randrange(1 << 16)) /
                  TCP(sport=self.cport, dport=self.vport, flags=flags, seq=seq & 0xffffffff,
                      ack=ack & 0xffffffff, window=window, options=options or []) / payload)
        self.w.send(p)
        return p

    def backend(self, flags, seq, ack, payload=b"", options=None, window=1000):
        p = to_lb(IP(src=self.bip, dst=VIP, ttl=TTL_IN, id=random.randrange(1 << 16)) /
                  TCP(sport=self.bport, dport=self.snat_port, flags=flags, seq=seq & 0xffffffff,
                      ack=ack & 0xffffffff, window=window, options=options or []) / payload)
        self.w.send(p)
        return p

    def to_client(self, what):
        return self.w.expect(tcp_to(CLIENT, self.cport), what)

    def to_backend(self, what):
        return self.w.expect(lambda p: tcp_to(self.bip, self.bport)(p) and p[TCP].sport == self.snat_port, what)

    def check_backend(self, sent, what, **kw):
        got = self.to_backend(what)
        assert_datagram(got, forwarded(sent, src=VIP, dst=self.bip, sport=self.snat_port, dport=self.bport, **kw),
                        what)
        return got

    def check_client(self, sent, what, **kw):
        got = self.to_client(what)
        assert_datagram(got, forwarded(sent, src=VIP, dst=CLIENT, sport=self.vport, dport=self.cport, **kw), what)
        return got

    def handshake(self):
        """SYN, SYN-ACK (the MSS the client is told lowered by L), then the
        client's ACK, which reaches the backend carrying the header."""
        self.client("S", self.isn, options=[("MSS", 1460), ("SAckOK", b"")], window=64240)
        got = self.w.expect(tcp_to(self.bip, self.bport), "SYN to the backend")
        self.snat_port = got[TCP].sport
        sent = self.backend("SA", BACKEND_ISN, self.isn + 1, options=[("MSS", 1460), ("SAckOK", b"")],
                            window=65160)
        self.check_client(sent, "SYN-ACK", options=[("MSS", 1460 - L), ("SAckOK", b"")])
        sent = self.client("A", self.isn + 1, BACKEND_ISN + 1)
        got = self.check_backend(sent, "ACK with the header", payload=self.hdr)
        assert bytes(got[TCP].payload) == self.hdr

    def backend_acks_header(self):
        sent = self.backend("A", BACKEND_ISN + 1, self.isn + 1 + L)
        self.check_client(sent, "ACK of the header", ack=self.isn + 1)


def test_header_bytes_and_translation(lb):
    c = lb.counters()
    conn = Conn(lb)
    conn.handshake()
    # The header exactly as the specification spells it, fixed bytes too.
    assert conn.hdr.hex() == ("0d0a0d0a000d0a515549540a" "2111000c" + socket.inet_aton(CLIENT).hex() +
                              socket.inet_aton(VIP).hex() + struct.pack("!HH", conn.cport, 25).hex())
    c.assert_delta("strait_proxy_protocol_headers_total", 1)
    conn.backend_acks_header()

    # Client data: seq moves up by L, nothing else changes.
    i = conn.isn
    req = b"EHLO client\r\n"
    sent = conn.client("PA", i + 1, BACKEND_ISN + 1, req)
    got = conn.check_backend(sent, "request", seq=i + 1 + L)
    assert bytes(got[TCP].payload) == req
    # Backend data and acks: ack moves down by L.
    resp = bytes(range(100))
    for k in range(2):
        sent = conn.backend("PA", BACKEND_ISN + 1 + k * 100, i + 1 + L + len(req), resp)
        conn.check_client(sent, f"response {k}", ack=i + 1 + len(req))
    # The backend SACKs client bytes: edges move down by L.
    cseq = i + 1 + len(req)
    sent = conn.client("PA", cseq, BACKEND_ISN + 201, b"x" * 50)
    conn.check_backend(sent, "second request", seq=cseq + L)
    sent = conn.client("PA", cseq + 50, BACKEND_ISN + 201, b"y" * 50)
    conn.check_backend(sent, "third request", seq=cseq + 50 + L)
    sack = (cseq + 50 + L, cseq + 100 + L)
    sent = conn.backend("A", BACKEND_ISN + 201, cseq + L,
                        options=[("NOP", None), ("NOP", None), ("SAck", sack)])
    conn.check_client(sent, "SACK", ack=cseq,
                      options=[("NOP", None), ("NOP", None), ("SAck", (cseq + 50, cseq + 100))])
    # The client's SACK names backend bytes: untouched (no SYN proxy here).
    sent = conn.client("A", cseq + 100, BACKEND_ISN + 101,
                       options=[("NOP", None), ("NOP", None), ("SAck", (BACKEND_ISN + 151, BACKEND_ISN + 201))])
    conn.check_backend(sent, "client SACK", seq=cseq + 100 + L)
    # The first data again after the header was acknowledged: no header.
    sent = conn.client("PA", i + 1, BACKEND_ISN + 201, req)
    conn.check_backend(sent, "retransmitted first data", seq=i + 1 + L)
    # Close from the client.
    fin = cseq + 100
    sent = conn.client("FA", fin, BACKEND_ISN + 201)
    conn.check_backend(sent, "FIN", seq=fin + L)
    sent = conn.backend("FA", BACKEND_ISN + 201, fin + 1 + L)
    conn.check_client(sent, "FIN-ACK", ack=fin + 1)
    c.assert_delta("strait_proxy_protocol_headers_total", 1)
    c.assert_drops(None)


def test_lost_header_and_retransmitted_first_data(lb):
    c = lb.counters()
    conn = Conn(lb)
    conn.handshake()  # the header segment is "lost": the backend never acks it
    i = conn.isn
    # The backend's SYN-ACK again (it saw no ACK): the client's ACK again
    # carries the header again.
    sent = conn.backend("SA", BACKEND_ISN, i + 1, options=[("MSS", 1460)], window=65160)
    conn.check_client(sent, "SYN-ACK again", options=[("MSS", 1460 - L)])
    sent = conn.client("A", i + 1, BACKEND_ISN + 1)
    conn.check_backend(sent, "ACK again with the header", payload=conn.hdr)
    # First data before the header is acknowledged: header in front, at the
    # client's own seq.
    req = b"GET / HTTP/1.1\r\n\r\n"
    for what in ("first data", "first data retransmitted"):
        sent = conn.client("PA", i + 1, BACKEND_ISN + 1, req)
        got = conn.check_backend(sent, what, payload=conn.hdr + req)
        assert got[TCP].seq == (i + 1) & 0xffffffff
    c.assert_delta("strait_proxy_protocol_headers_total", 4)
    # Acknowledged at last, header and request together.
    sent = conn.backend("A", BACKEND_ISN + 1, i + 1 + L + len(req))
    conn.check_client(sent, "ACK of header and request", ack=i + 1 + len(req))
    sent = conn.client("PA", i + 1 + len(req), BACKEND_ISN + 1, b"more")
    conn.check_backend(sent, "next data", seq=i + 1 + len(req) + L)
    # An ack inside the header never goes below what the client sent.
    sent = conn.backend("A", BACKEND_ISN + 1, i + 1 + 10)
    conn.check_client(sent, "ack inside the header", ack=i + 1)
    c.assert_delta("strait_proxy_protocol_headers_total", 4)
    c.assert_drops(None)


def test_fin_before_any_data(lb):
    c = lb.counters()
    conn = Conn(lb)
    conn.handshake()
    i = conn.isn
    # The client closes at once, before the backend acked the header: the
    # FIN carries the header in front of it.
    sent = conn.client("FA", i + 1, BACKEND_ISN + 1)
    got = conn.check_backend(sent, "FIN with the header", payload=conn.hdr)
    assert got[TCP].flags == "FA"
    sent = conn.backend("FA", BACKEND_ISN + 1, i + 2 + L)
    conn.check_client(sent, "FIN-ACK", ack=i + 2)
    sent = conn.client("A", i + 2, BACKEND_ISN + 2)
    conn.check_backend(sent, "last ACK", seq=i + 2 + L)
    c.assert_delta("strait_proxy_protocol_headers_total", 2)
    c.assert_drops(None)


def test_rst(lb):
    c = lb.counters()
    conn = Conn(lb)
    conn.handshake()
    i = conn.isn
    # A reset never carries the header; its seq is in the backend's space.
    sent = conn.client("R", i + 1)
    conn.check_backend(sent, "RST", seq=i + 1 + L)  # the whole datagram: no payload
    c.assert_delta("strait_proxy_protocol_headers_total", 1)
    # And from the backend, on another connection: ack translated.
    conn2 = Conn(lb)
    conn2.handshake()
    sent = conn2.backend("RA", BACKEND_ISN + 1, conn2.isn + 1 + L)
    conn2.check_client(sent, "backend RST", ack=conn2.isn + 1)
    c.assert_drops(None)


def test_with_syn_cookies(lb):
    c = lb.counters()
    conn = Conn(lb, vport=465, backend=PPSP_BACKEND)
    i = conn.isn
    conn.client("S", i, options=[("MSS", 1460), ("SAckOK", b"")], window=64240)
    synack = conn.to_client("cookie SYN-ACK")
    cookie = synack[TCP].seq
    # Room for the header: 1460 - 28 = 1432, whose cookie bucket is 1300.
    assert dict(synack[TCP].options)["MSS"] == 1300
    conn.client("A", i + 1, cookie + 1)
    syn = conn.w.expect(tcp_to(conn.bip, conn.bport), "SYN to the backend")
    conn.snat_port = syn[TCP].sport
    assert syn[TCP].seq == i
    # The backend's SYN-ACK: the ACK straitd writes carries the header.
    to_backend = lambda p: tcp_to(conn.bip, conn.bport)(p) and p[TCP].sport == conn.snat_port  # noqa: E731
    to_client = tcp_to(CLIENT, conn.cport)
    for attempt in range(2):  # the second: the backend saw no ACK and sends its SYN-ACK again
        conn.backend("SA", BACKEND_ISN, i + 1, options=[("MSS", 1460), ("SAckOK", b"")], window=65160)
        if attempt == 0:
            frames = conn.w.expect_n(lambda p: to_backend(p) or to_client(p), 2, "ACK and window update")
            ack = next(p for p in frames if to_backend(p))
            upd = next(p for p in frames if to_client(p))
            assert upd[TCP].ack == (i + 1) & 0xffffffff
        else:
            ack = conn.to_backend("ACK again")
        assert ack[TCP].seq == (i + 1) & 0xffffffff and ack[TCP].ack == BACKEND_ISN + 1
        assert bytes(ack[TCP].payload) == conn.hdr, f"attempt {attempt}: {bytes(ack[TCP].payload).hex()}"
    c.assert_delta("strait_proxy_protocol_headers_total", 2)
    delta = (cookie - BACKEND_ISN) & 0xffffffff
    # Data: both translations at once (client seq +L, client ack -delta;
    # backend seq +delta, backend ack -L).
    sent = conn.backend("A", BACKEND_ISN + 1, i + 1 + L)
    conn.check_client(sent, "ACK of the header", seq=BACKEND_ISN + 1 + delta, ack=i + 1)
    req = b"hello"
    sent = conn.client("PA", i + 1, cookie + 1, req)
    conn.check_backend(sent, "request", seq=i + 1 + L, ack=BACKEND_ISN + 1)
    sent = conn.backend("PA", BACKEND_ISN + 1, i + 1 + L + len(req), b"banner")
    conn.check_client(sent, "response", seq=BACKEND_ISN + 1 + delta, ack=i + 1 + len(req))
    c.assert_delta("strait_proxy_protocol_headers_total", 2)
    c.assert_drops(None)
