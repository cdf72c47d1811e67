"""The SYN proxy frame by frame, against the "guard" service (syn_proxy =
"on"): the cookie SYN-ACK byte for byte, the backend SYN the cookie ACK
turns into (the client's options carried), the ACK and window update the
backend's SYN-ACK turns into, then sequence, timestamp, window and SACK
translation on data, FIN and RST; RSTs checked against each side's window
in that side's own sequence space; forged, stale and replayed cookies. Every
emitted datagram is compared whole with the one Scapy builds from the
expected fields (checksums recomputed by Scapy), and the counters each case
moves are checked.
"""

from __future__ import annotations

import random
import time

from scapy.layers.inet import IP, TCP

from tests.packet.helpers import (CLIENT, COOKIE_PERIOD_MS, GUARD_BACKEND, TTL_IN, VIP, assert_datagram,
                                  ip_bytes, next_port, tcp_to, to_lb)

VPORT = 443
BIP, BPORT = GUARD_BACKEND
CLIENT_OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (111, 0)), ("NOP", None), ("WScale", 8)]
BACKEND_ISN = 900_000
BACKEND_TS = 9000


def ours(*, src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: str, window: int,
         options) -> bytes:
    """A datagram straitd builds itself: fresh IPv4 header (id 0, DF, TTL 64)."""
    return bytes(IP(src=src, dst=dst, ttl=64, id=0, flags="DF") /
                 TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, window=window,
                     options=options))


def translated(sent, *, src: str, dst: str, sport: int, dport: int, **tcp) -> bytes:
    """`sent` as forwarded: addresses and ports replaced, TTL one less, the
    given TCP fields replaced, checksums recomputed, the rest untouched."""
    ip = IP(ip_bytes(sent))
    ip.src, ip.dst, ip.ttl = src, dst, ip.ttl - 1
    t = ip[TCP]
    t.sport, t.dport = sport, dport
    for k, v in tcp.items():
        setattr(t, k, v)
    del ip.chksum
    del t.chksum
    return bytes(ip)


def flow_state(lb, cport: int) -> str:
    flows = lb.d.lbctl_json("flows", "--limit", "10000")["result"]["flows"]
    mine = [f for f in flows if f["client"] == f"{CLIENT}:{cport}"]
    assert len(mine) == 1, mine
    return mine[0]["state"]


def ts_of(p) -> tuple[int, int]:
    return dict(p[TCP].options)["Timestamp"]


class Conn:
    """One client connection through the guard service, driven by hand."""

    def __init__(self, lb) -> None:
        self.lb = lb
        self.w = lb.wire
        self.cport = next_port()
        self.isn = random.randrange(1 << 32)
        self.cookie = self.our_ts = self.snat_port = 0

    def client(self, flags, seq, ack=0, payload=b"", options=None, window=502):
        p = to_lb(IP(src=CLIENT, dst=VIP, ttl=TTL_IN, id=random.randrange(1 << 16)) /
                  TCP(sport=self.cport, dport=VPORT, flags=flags, seq=seq & 0xffffffff,
                      ack=ack & 0xffffffff, window=window, options=options or []) / payload)
        self.w.send(p)
        return p

    def backend(self, flags, seq, ack, payload=b"", options=None, window=100):
        p = to_lb(IP(src=BIP, dst=VIP, ttl=TTL_IN, id=random.randrange(1 << 16)) /
                  TCP(sport=BPORT, dport=self.snat_port, flags=flags, seq=seq & 0xffffffff,
                      ack=ack & 0xffffffff, window=window, options=options or []) / payload)
        self.w.send(p)
        return p

    def to_client(self, what):
        return self.w.expect(tcp_to(CLIENT, self.cport), what)

    def to_backend(self, what):
        return self.w.expect(lambda p: tcp_to(BIP, BPORT)(p) and p[TCP].sport == self.snat_port, what)

    def syn(self):
        """SYN -> cookie SYN-ACK, checked byte for byte."""
        self.client("S", self.isn, options=CLIENT_OPTS, window=64240)
        got = self.to_client("cookie SYN-ACK")
        self.cookie = got[TCP].seq
        self.our_ts = ts_of(got)[0]
        want = ours(src=VIP, dst=CLIENT, sport=VPORT, dport=self.cport, seq=self.cookie, ack=self.isn + 1,
                    flags="SA", window=0,
                    options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (self.our_ts, 111)),
                             ("NOP", None), ("WScale", 7)])
        assert_datagram(got, want, "cookie SYN-ACK")
        # The client's window scale (8) and SACK-permitted ride in the low
        # bits of our TSval; the MSS bucket (1460 = index 3) in the cookie.
        assert self.our_ts & 0x3f == 0x18
        assert (self.cookie >> 27) & 3 == 3
        return got

    def ack(self, ack=None, ts_ecr=None):
        return self.client("A", self.isn + 1, self.cookie + 1 if ack is None else ack,
                           options=[("NOP", None), ("NOP", None),
                                    ("Timestamp", (112, self.our_ts if ts_ecr is None else ts_ecr))])

    def open_backend(self):
        """Cookie ACK -> backend SYN with the client's options."""
        self.ack()
        got = self.w.expect(tcp_to(BIP, BPORT), "SYN to the backend")
        self.snat_port = got[TCP].sport
        want = ours(src=VIP, dst=BIP, sport=self.snat_port, dport=BPORT, seq=self.isn, ack=0, flags="S",
                    window=65535,  # 502 at the client's scale 8, capped for the unscaled SYN field
                    options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (112, 0)), ("NOP", None),
                             ("WScale", 8)])
        assert_datagram(got, want, "SYN to the backend")

    def backend_synack(self):
        """Backend SYN-ACK -> ACK to the backend + window update to the client."""
        self.backend("SA", BACKEND_ISN, self.isn + 1, window=65160,
                     options=[("MSS", 1400), ("SAckOK", b""), ("Timestamp", (BACKEND_TS, 112)),
                              ("NOP", None), ("WScale", 6)])
        # Two frames out of one, in either order.
        to_backend = lambda p: tcp_to(BIP, BPORT)(p) and p[TCP].sport == self.snat_port  # noqa: E731
        to_client = tcp_to(CLIENT, self.cport)
        both = self.w.expect_n(lambda p: to_backend(p) or to_client(p), 2, "ACK and window update")
        got = next(p for p in both if to_backend(p))
        assert_datagram(got, ours(src=VIP, dst=BIP, sport=self.snat_port, dport=BPORT, seq=self.isn + 1,
                                  ack=BACKEND_ISN + 1, flags="A", window=502,
                                  options=[("NOP", None), ("NOP", None),
                                           ("Timestamp", (112, BACKEND_TS))]), "ACK to the backend")
        got = next(p for p in both if to_client(p))
        assert_datagram(got, ours(src=VIP, dst=CLIENT, sport=VPORT, dport=self.cport, seq=self.cookie + 1,
                                  ack=self.isn + 1, flags="A", window=510,  # 65160 B at scale 7, rounded up
                                  options=[("NOP", None), ("NOP", None),
                                           ("Timestamp", (self.our_ts, 112))]), "window update")

    @property
    def delta(self) -> int:
        return (self.cookie - BACKEND_ISN) & 0xffffffff

    @property
    def ts_delta(self) -> int:
        return (self.our_ts - BACKEND_TS) & 0xffffffff


def test_cookie_syn_ack_keeps_no_state(lb):
    c = lb.counters()
    conn = Conn(lb)
    conn.syn()
    c.assert_delta("strait_syn_cookies_sent_total", 1)
    assert c.delta("strait_flows_created_total") == 0
    c.assert_drops(None)
    # The client gives up: its RST needs no state and is a plain no_flow drop.
    c = lb.counters()
    conn.client("R", conn.isn + 1)
    lb.wire.expect_silence(0.4)
    c.assert_drops("no_flow")


def test_cookie_handshake_and_translation(lb):
    c = lb.counters()
    conn = Conn(lb)
    conn.syn()
    conn.open_backend()
    c.assert_delta("strait_syn_cookies_validated_total", 1)
    c.assert_delta("strait_flows_created_total", 1)
    conn.backend_synack()
    c.assert_drops(None)

    # Request: ack and TSecr into the backend's view; the window field (scale
    # 8 both ways) untouched.
    request = b"GET / HTTP/1.1\r\nHost: guard\r\n\r\n"
    sent = conn.client("PA", conn.isn + 1, conn.cookie + 1, request,
                       options=[("NOP", None), ("NOP", None), ("Timestamp", (113, conn.our_ts))])
    got = conn.to_backend("request")
    assert bytes(got[TCP].payload) == request
    assert_datagram(got, translated(sent, src=VIP, dst=BIP, sport=conn.snat_port, dport=BPORT,
                                    ack=BACKEND_ISN + 1,
                                    options=[("NOP", None), ("NOP", None), ("Timestamp", (113, BACKEND_TS))]),
                    "request")

    # Two response segments: seq and TSval into the client's view; window
    # 100 at the backend's scale 6 = 6400 bytes = 50 at our scale 7.
    cseq = conn.isn + 1 + len(request)
    seg = bytes(range(200))
    for i in range(2):
        bseq = BACKEND_ISN + 1 + i * len(seg)
        sent = conn.backend("PA", bseq, cseq, seg,
                            options=[("NOP", None), ("NOP", None), ("Timestamp", (BACKEND_TS + 5 + i, 113))])
        got = conn.to_client(f"response segment {i}")
        assert bytes(got[TCP].payload) == seg
        assert_datagram(got, translated(sent, src=VIP, dst=CLIENT, sport=VPORT, dport=conn.cport,
                                        seq=(bseq + conn.delta) & 0xffffffff, window=50,
                                        options=[("NOP", None), ("NOP", None),
                                                 ("Timestamp", ((BACKEND_TS + 5 + i + conn.ts_delta) & 0xffffffff,
                                                                113))]),
                        f"response segment {i}")

    # The client lost the first segment: a duplicate ACK with a SACK block
    # for the second. Ack and both SACK edges move into the backend's space.
    left, right = conn.cookie + 1 + len(seg), conn.cookie + 1 + 2 * len(seg)
    sent = conn.client("A", cseq, conn.cookie + 1,
                       options=[("NOP", None), ("NOP", None), ("Timestamp", (114, conn.our_ts + 6)),
                                ("NOP", None), ("NOP", None), ("SAck", (left, right))])
    got = conn.to_backend("SACK")
    d = conn.delta
    assert_datagram(got, translated(sent, src=VIP, dst=BIP, sport=conn.snat_port, dport=BPORT,
                                    ack=BACKEND_ISN + 1,
                                    options=[("NOP", None), ("NOP", None),
                                             ("Timestamp", (114, BACKEND_TS + 6)), ("NOP", None),
                                             ("NOP", None), ("SAck", ((left - d) & 0xffffffff,
                                                                      (right - d) & 0xffffffff))]),
                    "SACK")

    # Close: FIN from the backend, FIN-ACK from the client, last ACK.
    bfin = BACKEND_ISN + 1 + 2 * len(seg)
    sent = conn.backend("FA", bfin, cseq)
    got = conn.to_client("FIN")
    assert_datagram(got, translated(sent, src=VIP, dst=CLIENT, sport=VPORT, dport=conn.cport,
                                    seq=(bfin + d) & 0xffffffff, window=50), "FIN")
    sent = conn.client("FA", cseq, bfin + 1 + d)
    got = conn.to_backend("FIN-ACK")
    assert_datagram(got, translated(sent, src=VIP, dst=BIP, sport=conn.snat_port, dport=BPORT,
                                    ack=bfin + 1), "FIN-ACK")
    sent = conn.backend("A", bfin + 1, cseq + 1)
    got = conn.to_client("last ACK")
    assert_datagram(got, translated(sent, src=VIP, dst=CLIENT, sport=VPORT, dport=conn.cport,
                                    seq=(bfin + 1 + d) & 0xffffffff, window=50), "last ACK")
    assert c.delta("strait_flows_created_total") == 1
    c.assert_drops(None)


def test_cookie_connection_reset_by_client(lb):
    c = lb.counters()
    conn = Conn(lb)
    conn.syn()
    conn.open_backend()
    conn.backend_synack()
    sent = conn.client("RA", conn.isn + 1, conn.cookie + 1)
    got = conn.to_backend("RST")
    assert_datagram(got, translated(sent, src=VIP, dst=BIP, sport=conn.snat_port, dport=BPORT,
                                    ack=BACKEND_ISN + 1), "RST")
    assert flow_state(lb, conn.cport) == "closed"
    c.assert_drops(None)


def test_cookie_flow_rsts_are_checked_against_the_window(lb):
    """The tracker follows the backend's connection of a cookie flow: the
    client's RSTs in the client's sequence space, the backend's in the
    backend's. Out of window from either side: dropped, the flow lives on.
    In window: honoured, and the backend's reaches the client translated."""
    c = lb.counters()
    conn = Conn(lb)
    conn.syn()
    conn.open_backend()
    conn.backend_synack()
    assert flow_state(lb, conn.cport) == "established"

    conn.backend("R", BACKEND_ISN + 1 + (1 << 30), 0, window=0)
    conn.client("R", conn.isn + 1 + (1 << 30))
    lb.wire.expect_silence(0.5)
    c.assert_drops("rst_out_of_window", 2)
    assert flow_state(lb, conn.cport) == "established"

    # Still alive: a request goes through, translated.
    request = b"GET /alive HTTP/1.1\r\nHost: guard\r\n\r\n"
    sent = conn.client("PA", conn.isn + 1, conn.cookie + 1, request)
    got = conn.to_backend("request after the spoofed RSTs")
    assert_datagram(got, translated(sent, src=VIP, dst=BIP, sport=conn.snat_port, dport=BPORT,
                                    ack=BACKEND_ISN + 1), "request")

    # The backend's RST at its own next sequence number: in window.
    c = lb.counters()
    sent = conn.backend("RA", BACKEND_ISN + 1, conn.isn + 1 + len(request), window=0)
    got = conn.to_client("in-window RST")
    assert_datagram(got, translated(sent, src=VIP, dst=CLIENT, sport=VPORT, dport=conn.cport,
                                    seq=(conn.cookie + 1) & 0xffffffff), "RST")
    assert flow_state(lb, conn.cport) == "closed"
    c.assert_drops(None)


def test_backend_refusal_resets_the_client(lb):
    c = lb.counters()
    conn = Conn(lb)
    conn.syn()
    conn.open_backend()
    # Before its SYN-ACK the backend's RST must acknowledge the SYN exactly.
    conn.backend("RA", 0, conn.isn + 5, window=0)
    lb.wire.expect_silence(0.4)
    c.assert_drops("rst_out_of_window")
    c = lb.counters()
    sent = conn.backend("RA", 0, conn.isn + 1, window=0)
    got = conn.to_client("RST")
    # The client is told in its own sequence space: our ISN + 1.
    assert_datagram(got, translated(sent, src=VIP, dst=CLIENT, sport=VPORT, dport=conn.cport,
                                    seq=(conn.cookie + 1) & 0xffffffff), "RST")
    c.assert_drops(None)


def test_forged_cookie_is_dropped(lb):
    c = lb.counters()
    conn = Conn(lb)
    conn.syn()
    conn.ack(ack=conn.cookie + 2)
    lb.wire.expect_silence(0.4)
    c.assert_drops("syn_cookie_invalid")
    assert c.delta("strait_flows_created_total") == 0
    # An ACK out of nowhere (no SYN ever sent) is no cookie either.
    c = lb.counters()
    stray = Conn(lb)
    stray.client("A", 1, random.randrange(1 << 32),
                 options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))])
    lb.wire.expect_silence(0.4)
    c.assert_drops("syn_cookie_invalid")
    assert c.delta("strait_flows_created_total") == 0


def test_stale_cookie_is_dropped(lb):
    conn = Conn(lb)
    conn.syn()
    # Two whole cookie periods later at least (the cookie may have been
    # made at the very start of its period).
    time.sleep(2 * COOKIE_PERIOD_MS / 1000 + 0.5)
    c = lb.counters()
    conn.ack()
    lb.wire.expect_silence(0.4)
    c.assert_drops("syn_cookie_stale")
    assert c.delta("strait_flows_created_total") == 0


def test_lost_handshake_packets_are_recovered_from_probes(lb):
    """The client believes it is connected after our SYN-ACK and only
    probes our zero window (Linux: its ISN as sequence number, no data).
    A lost cookie ACK: the probe opens the flow. A lost SYN to the backend:
    a later probe sends it again. Either used to hang the connection."""
    c = lb.counters()
    conn = Conn(lb)
    conn.syn()
    probe_opts = [("NOP", None), ("NOP", None), ("Timestamp", (300, conn.our_ts))]
    # The cookie ACK never arrived; the first probe opens the backend.
    conn.client("A", conn.isn, conn.cookie + 1, options=probe_opts)
    got = conn.w.expect(tcp_to(BIP, BPORT), "SYN to the backend from the probe")
    conn.snat_port = got[TCP].sport
    syn = ours(src=VIP, dst=BIP, sport=conn.snat_port, dport=BPORT, seq=conn.isn, ack=0, flags="S",
               window=65535, options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (300, 0)),
                                      ("NOP", None), ("WScale", 8)])
    assert_datagram(got, syn, "SYN to the backend from the probe")
    # That SYN is lost too; the client's next probe, after its backoff,
    # sends it again.
    time.sleep(0.3)
    conn.client("A", conn.isn, conn.cookie + 1,
                options=[("NOP", None), ("NOP", None), ("Timestamp", (600, conn.our_ts))])
    got = conn.to_backend("SYN to the backend again")
    assert_datagram(got, ours(src=VIP, dst=BIP, sport=conn.snat_port, dport=BPORT, seq=conn.isn, ack=0,
                              flags="S", window=65535,
                              options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (600, 0)),
                                       ("NOP", None), ("WScale", 8)]), "SYN to the backend again")
    c.assert_delta("strait_syn_proxy_syn_resent_total", 1)
    c.assert_delta("strait_flows_created_total", 1)
    c.assert_delta("strait_syn_cookies_validated_total", 1)
    c.assert_drops(None)


def test_replayed_cookie_opens_one_flow(lb):
    c = lb.counters()
    conn = Conn(lb)
    conn.syn()
    conn.open_backend()
    # The same ACK again before the backend has answered: counted, dropped.
    conn.ack()
    lb.wire.expect_silence(0.4)
    c.assert_drops("syn_cookie_replayed")
    conn.backend_synack()
    # And once the flow is up, it is just a duplicate ACK of that flow.
    sent = conn.ack()
    got = conn.to_backend("duplicate ACK")
    assert_datagram(got, translated(sent, src=VIP, dst=BIP, sport=conn.snat_port, dport=BPORT,
                                    ack=BACKEND_ISN + 1,
                                    options=[("NOP", None), ("NOP", None), ("Timestamp", (112, BACKEND_TS))]),
                    "duplicate ACK")
    c.assert_delta("strait_flows_created_total", 1)
    c.assert_delta("strait_syn_cookies_validated_total", 1)
