"""TCP through the VIP, frame by frame: a whole connection (handshake, data
both ways, FIN both ways) with every emitted datagram compared byte for byte
to the one a full NAT must produce (addresses and ports rewritten, TTL one
less, checksums right, sequence numbers, options, IP id and payload
untouched), a service whose SNAT address differs from its VIP, and the
counters each case moves.
"""

from __future__ import annotations

from scapy.layers.inet import IP, TCP

from tests.packet.helpers import (ALT_BACKEND, CLIENT, SNAT2, TTL_IN, VIP, VIP2, WEB_BACKEND,
                                  assert_datagram, next_port, rewritten, tcp_to, to_lb)


def _connection(lb, vip: str, vport: int, backend: tuple[str, int], snat: str) -> None:
    w = lb.wire
    c = lb.counters()
    cport = next_port()
    bip, bport = backend
    sent = 0

    def client(flags, seq, ack=0, payload=b"", **kw):
        nonlocal sent
        p = to_lb(IP(src=CLIENT, dst=vip, ttl=TTL_IN, id=0x1000 + sent) /
                  TCP(sport=cport, dport=vport, flags=flags, seq=seq, ack=ack, window=64240, **kw) /
                  payload)
        w.send(p)
        sent += 1
        return p

    def backend_(flags, seq, ack, payload=b"", **kw):
        nonlocal sent
        p = to_lb(IP(src=bip, dst=snat, ttl=TTL_IN, id=0x2000 + sent) /
                  TCP(sport=bport, dport=snat_port, flags=flags, seq=seq, ack=ack, window=65160, **kw) /
                  payload)
        w.send(p)
        sent += 1
        return p

    # SYN: a new flow, DNAT to the backend and SNAT to the service's address.
    syn = client("S", 1000, options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)])
    out = w.expect(tcp_to(bip, bport), "SYN to the backend")
    snat_port = out[TCP].sport
    assert out[IP].src == snat
    assert 1024 <= snat_port <= 65535
    assert_datagram(out, rewritten(syn, src=snat, dst=bip, sport=snat_port, dport=bport), "SYN")

    # SYN-ACK back to the client, as the VIP.
    synack = backend_("SA", 5000, 1001, options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)])
    out = w.expect(tcp_to(CLIENT, cport), "SYN-ACK to the client")
    assert_datagram(out, rewritten(synack, src=vip, dst=CLIENT, sport=vport, dport=cport), "SYN-ACK")

    ack = client("A", 1001, 5001)
    out = w.expect(tcp_to(bip, bport), "ACK to the backend")
    assert_datagram(out, rewritten(ack, src=snat, dst=bip, sport=snat_port, dport=bport), "ACK")

    request = b"GET / HTTP/1.1\r\nHost: strait.test\r\n\r\n"
    data = client("PA", 1001, 5001, request)
    out = w.expect(tcp_to(bip, bport), "request to the backend")
    assert bytes(out[TCP].payload) == request
    assert_datagram(out, rewritten(data, src=snat, dst=bip, sport=snat_port, dport=bport), "request")

    response = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + bytes(range(256)) * 4
    resp = backend_("PA", 5001, 1001 + len(request), response)
    out = w.expect(tcp_to(CLIENT, cport), "response to the client")
    assert bytes(out[TCP].payload) == response
    assert_datagram(out, rewritten(resp, src=vip, dst=CLIENT, sport=vport, dport=cport), "response")

    # Close: FIN from the client, FIN-ACK from the backend, last ACK.
    cseq, bseq = 1001 + len(request), 5001 + len(response)
    fin = client("FA", cseq, bseq)
    out = w.expect(tcp_to(bip, bport), "FIN to the backend")
    assert_datagram(out, rewritten(fin, src=snat, dst=bip, sport=snat_port, dport=bport), "FIN")
    finack = backend_("FA", bseq, cseq + 1)
    out = w.expect(tcp_to(CLIENT, cport), "FIN-ACK to the client")
    assert_datagram(out, rewritten(finack, src=vip, dst=CLIENT, sport=vport, dport=cport), "FIN-ACK")
    last = client("A", cseq + 1, bseq + 1)
    out = w.expect(tcp_to(bip, bport), "last ACK to the backend")
    assert_datagram(out, rewritten(last, src=snat, dst=bip, sport=snat_port, dport=bport), "last ACK")

    c.assert_delta("strait_flows_created_total", 1)
    assert c.delta("strait_rx_packets_total") >= sent
    assert c.delta("strait_tx_packets_total") >= sent
    c.assert_drops(None)


def test_tcp_connection_through_vip(lb):
    _connection(lb, VIP, 80, WEB_BACKEND, VIP)


def test_tcp_connection_with_separate_snat_address(lb):
    _connection(lb, VIP2, 8080, ALT_BACKEND, SNAT2)


def test_tcp_syn_retransmit_keeps_flow(lb):
    """A retransmitted SYN is the same flow: same SNAT port, one flow."""
    w = lb.wire
    c = lb.counters()
    cport = next_port()
    syn = to_lb(IP(src=CLIENT, dst=VIP, ttl=TTL_IN) / TCP(sport=cport, dport=80, flags="S", seq=77))
    w.send(syn)
    first = w.expect(tcp_to(*WEB_BACKEND), "first SYN")
    w.send(syn)
    second = w.expect(tcp_to(*WEB_BACKEND), "retransmitted SYN")
    assert first[TCP].sport == second[TCP].sport
    assert bytes(first[IP]) == bytes(second[IP])
    c.assert_delta("strait_flows_created_total", 1)
    c.assert_drops(None)


def test_tcp_distinct_clients_get_distinct_snat_ports(lb):
    """Two clients behind one address with the same source port: two flows,
    two SNAT ports, and each reply finds its own client."""
    w = lb.wire
    c = lb.counters()
    cport = next_port()
    clients = ["198.51.100.2", "198.51.100.3"]
    snat_ports = {}
    for cl in clients:
        w.send(to_lb(IP(src=cl, dst=VIP, ttl=TTL_IN) / TCP(sport=cport, dport=80, flags="S", seq=9)))
        out = w.expect(tcp_to(*WEB_BACKEND), f"SYN of {cl}")
        snat_ports[cl] = out[TCP].sport
    assert len(set(snat_ports.values())) == 2
    for cl in reversed(clients):
        w.send(to_lb(IP(src=WEB_BACKEND[0], dst=VIP, ttl=TTL_IN) /
                     TCP(sport=80, dport=snat_ports[cl], flags="SA", seq=1, ack=10)))
        out = w.expect(tcp_to(cl, cport), f"SYN-ACK to {cl}")
        assert out[IP].src == VIP and out[TCP].sport == 80 and out[TCP].ack == 10
    c.assert_delta("strait_flows_created_total", 2)
    c.assert_drops(None)
