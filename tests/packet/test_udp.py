"""UDP through the VIP both ways, compared byte for byte with what a full
NAT must emit, and a second datagram of the same flow reusing its SNAT
port."""

from __future__ import annotations

from scapy.layers.inet import IP, UDP

from tests.packet.helpers import (CLIENT, DNS_BACKEND, TTL_IN, VIP, assert_datagram, next_port,
                                  rewritten, to_lb, udp_to)


def test_udp_both_ways(lb):
    w = lb.wire
    c = lb.counters()
    cport = next_port()
    bip, bport = DNS_BACKEND
    query = to_lb(IP(src=CLIENT, dst=VIP, ttl=TTL_IN, id=4242) /
                  UDP(sport=cport, dport=53) / (b"\x12\x34\x01\x00" + b"q" * 40))
    w.send(query)
    out = w.expect(udp_to(bip, bport), "query to the backend")
    snat_port = out[UDP].sport
    assert out[IP].src == VIP
    assert_datagram(out, rewritten(query, src=VIP, dst=bip, sport=snat_port, dport=bport), "query")

    answer = to_lb(IP(src=bip, dst=VIP, ttl=TTL_IN, id=777) /
                   UDP(sport=bport, dport=snat_port) / (b"\x12\x34\x81\x80" + b"a" * 300))
    w.send(answer)
    out = w.expect(udp_to(CLIENT, cport), "answer to the client")
    assert_datagram(out, rewritten(answer, src=VIP, dst=CLIENT, sport=53, dport=cport), "answer")

    again = to_lb(IP(src=CLIENT, dst=VIP, ttl=TTL_IN, id=4243) / UDP(sport=cport, dport=53) / b"second")
    w.send(again)
    out = w.expect(udp_to(bip, bport), "second query")
    assert_datagram(out, rewritten(again, src=VIP, dst=bip, sport=snat_port, dport=bport), "second")

    c.assert_delta("strait_flows_created_total", 1)
    assert c.delta("strait_rx_packets_total") >= 3
    c.assert_drops(None)


def test_udp_zero_checksum_stays_zero(lb):
    """A UDP checksum of 0 means "none" (RFC 768); an incremental update
    must not turn it into a wrong non-zero one."""
    w = lb.wire
    c = lb.counters()
    cport = next_port()
    bip, bport = DNS_BACKEND
    query = to_lb(IP(src=CLIENT, dst=VIP, ttl=TTL_IN) / UDP(sport=cport, dport=53, chksum=0) / b"nochecksum")
    w.send(query)
    out = w.expect(udp_to(bip, bport), "query to the backend")
    assert out[UDP].chksum == 0
    assert out[IP].src == VIP and out[IP].dst == bip and out[IP].ttl == TTL_IN - 1
    assert bytes(out[UDP].payload) == b"nochecksum"
    c.assert_delta("strait_flows_created_total", 1)
