"""Sequence-checked RST and SYN, frame by frame through a real straitd.

A live keep-alive connection (handshake with window scaling, a request and
a response) is attacked as the issue describes: three RSTs with sequence
numbers 2^30 apart, spoofed from the backend at the SNAT port, then the
same from the client side. Every one is dropped (`rst_out_of_window`),
nothing reaches either end, the flow stays established and the next
request and response still go through. A RST at the sender's current
sequence number is honoured: passed on, rewritten, and the flow closed.
A SYN with a new sequence number on the established flow is passed on to
the backend without resetting the flow.
"""

from __future__ import annotations

from scapy.layers.inet import IP, TCP

from tests.packet.helpers import (CLIENT, TTL_IN, VIP, WEB_BACKEND, assert_datagram, next_port,
                                  rewritten, tcp_to, to_lb)

OPTS = [("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]


class Conn:
    """One connection client -> VIP:80 -> web backend, driven by hand."""

    def __init__(self, lb) -> None:
        self.lb = lb
        self.w = lb.wire
        self.cport = next_port()
        self.bip, self.bport = WEB_BACKEND
        self.cseq, self.bseq = 1000, 5000
        self.snat_port = 0

    def client(self, flags, seq, ack=0, payload=b"", **kw):
        kw.setdefault("window", 502)
        p = to_lb(IP(src=CLIENT, dst=VIP, ttl=TTL_IN) /
                  TCP(sport=self.cport, dport=80, flags=flags, seq=seq, ack=ack, **kw) / payload)
        self.w.send(p)
        return p

    def backend(self, flags, seq, ack, payload=b"", **kw):
        kw.setdefault("window", 509)
        p = to_lb(IP(src=self.bip, dst=VIP, ttl=TTL_IN) /
                  TCP(sport=self.bport, dport=self.snat_port, flags=flags, seq=seq, ack=ack, **kw) / payload)
        self.w.send(p)
        return p

    def open(self) -> None:
        self.w.send(to_lb(IP(src=CLIENT, dst=VIP, ttl=TTL_IN) /
                          TCP(sport=self.cport, dport=80, flags="S", seq=self.cseq, window=64240,
                              options=OPTS)))
        self.snat_port = self.w.expect(tcp_to(self.bip, self.bport), "SYN to the backend")[TCP].sport
        self.cseq += 1
        self.backend("SA", self.bseq, self.cseq, options=OPTS, window=65160)
        self.w.expect(tcp_to(CLIENT, self.cport), "SYN-ACK to the client")
        self.bseq += 1
        self.client("A", self.cseq, self.bseq)
        self.w.expect(tcp_to(self.bip, self.bport), "ACK to the backend")

    def exchange(self, n: int) -> None:
        """Request n and its response, both through."""
        req = f"GET /{n} HTTP/1.1\r\nHost: strait.test\r\n\r\n".encode()
        self.client("PA", self.cseq, self.bseq, req)
        got = self.w.expect(tcp_to(self.bip, self.bport), f"request {n} to the backend")
        assert bytes(got[TCP].payload) == req
        self.cseq += len(req)
        resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        self.backend("PA", self.bseq, self.cseq, resp)
        got = self.w.expect(tcp_to(CLIENT, self.cport), f"response {n} to the client")
        assert bytes(got[TCP].payload) == resp
        self.bseq += len(resp)

    def state(self) -> str:
        flows = self.lb.d.lbctl_json("flows", "--limit", "10000")["result"]["flows"]
        mine = [f for f in flows if f["client"] == f"{CLIENT}:{self.cport}"]
        assert len(mine) == 1, mine
        return mine[0]["state"]


def test_out_of_window_rsts_do_not_kill_a_live_connection(lb):
    c = lb.counters()
    conn = Conn(lb)
    conn.open()
    conn.exchange(1)
    assert conn.state() == "established"

    # Three RSTs 2^30 apart from the backend side, then from the client side.
    for k in (1, 2, 3):
        conn.backend("R", (conn.bseq + k * (1 << 30)) & 0xffffffff, 0)
    for k in (1, 2, 3):
        conn.client("R", (conn.cseq + k * (1 << 30)) & 0xffffffff, 0)
    lb.wire.expect_silence(0.5)
    c.assert_drops("rst_out_of_window", 6)
    assert conn.state() == "established"
    conn.exchange(2)

    # In window: the backend's RST at its current sequence number.
    rst = conn.backend("R", conn.bseq, 0)
    got = lb.wire.expect(tcp_to(CLIENT, conn.cport), "in-window RST to the client")
    assert_datagram(got, rewritten(rst, src=VIP, dst=CLIENT, sport=80, dport=conn.cport), "RST")
    assert conn.state() == "closed"


def test_in_window_rst_from_the_client_is_honoured(lb):
    c = lb.counters()
    conn = Conn(lb)
    conn.open()
    conn.exchange(1)
    rst = conn.client("R", conn.cseq)
    got = lb.wire.expect(tcp_to(conn.bip, conn.bport), "in-window RST to the backend")
    assert_datagram(got, rewritten(rst, src=VIP, dst=conn.bip, sport=conn.snat_port, dport=conn.bport),
                    "RST")
    assert conn.state() == "closed"
    c.assert_drops(None)


def test_syn_on_established_flow_is_passed_on_without_reset(lb):
    c = lb.counters()
    conn = Conn(lb)
    conn.open()
    conn.exchange(1)
    syn = to_lb(IP(src=CLIENT, dst=VIP, ttl=TTL_IN) /
                TCP(sport=conn.cport, dport=80, flags="S", seq=7_000_000, window=64240, options=OPTS))
    lb.wire.send(syn)
    got = lb.wire.expect(tcp_to(conn.bip, conn.bport), "the new SYN to the backend")
    assert got[TCP].sport == conn.snat_port and got[TCP].seq == 7_000_000
    assert conn.state() == "established"
    c.assert_delta("strait_tcp_syn_on_synchronized_total", 1)
    # The backend still has the connection: the old one carries on.
    conn.exchange(2)
    c.assert_drops(None)
