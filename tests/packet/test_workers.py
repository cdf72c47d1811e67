"""Many flows at once, the multi-worker case in particular: with two
workers the NIC (here af_packet's fanout) spreads frames by its own hash,
so a backend's reply often reaches a worker that does not own the flow and
must be handed to the owner. Every SYN must come out, every reply must
reach its client, and with two workers both workers must be used and the
handoff path must have carried some of the replies."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP

from tests.packet.helpers import (CLIENT, TTL_IN, VIP, WEB_BACKEND, assert_clean, next_port,
                                  to_lb)

FLOWS = 64


def test_many_flows_all_replies_reach_their_clients(lb):
    w = lb.wire
    c = lb.counters()
    cports = [next_port() for _ in range(FLOWS)]
    for cp in cports:
        w.send(to_lb(IP(src=CLIENT, dst=VIP, ttl=TTL_IN) / TCP(sport=cp, dport=80, flags="S", seq=cp)))
    syns = w.expect_n(lambda p: TCP in p and p[IP].dst == WEB_BACKEND[0], FLOWS, "SYNs to the backend")
    by_seq = {}
    for p in syns:
        assert_clean(p)
        by_seq[p[TCP].seq] = p[TCP].sport
    assert sorted(by_seq) == sorted(cports), "a SYN was lost, duplicated or altered"
    assert len(set(by_seq.values())) == FLOWS, "two flows share a SNAT port"

    for cp in cports:
        w.send(to_lb(IP(src=WEB_BACKEND[0], dst=VIP, ttl=TTL_IN) /
                     TCP(sport=80, dport=by_seq[cp], flags="SA", seq=7, ack=cp + 1)))
    back = w.expect_n(lambda p: TCP in p and p[IP].dst == CLIENT, FLOWS, "SYN-ACKs to the clients")
    for p in back:
        assert_clean(p)
        assert p[IP].src == VIP and p[TCP].sport == 80
        assert p[TCP].ack == p[TCP].dport + 1, "a reply reached the wrong client port"
    assert sorted(p[TCP].dport for p in back) == sorted(cports)

    c.assert_delta("strait_flows_created_total", FLOWS)
    c.assert_drops(None)
    if lb.workers > 1:
        m = lb.d.metrics()
        per_worker = [m.value("strait_rx_packets_total", worker=str(i)) -
                      c.before.value("strait_rx_packets_total", worker=str(i))
                      for i in range(lb.workers)]
        assert all(n > 0 for n in per_worker), f"frames per worker {per_worker}: one worker idle"
        handed = c.delta("strait_handoff_total", direction="out")
        received = c.delta("strait_handoff_total", direction="in")
        assert handed > 0, "no reply was handed to its owner (128 frames over 2 queues)"
        assert received == handed
