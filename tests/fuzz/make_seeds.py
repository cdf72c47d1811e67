#!/usr/bin/python3
"""Writes the seed corpora for the fuzz harnesses: OUTDIR/fuzz_parse/ (one
frame per file) and OUTDIR/fuzz_nat/ (bursts of frames in the layout
tests/fuzz/fuzz_nat.cc documents). Seeds are valid traffic for the
harness's fixed configuration (handshakes, replies, ICMP errors quoting a
flow, echo, ARP, snapshot changes), so the fuzzer starts from packets that
reach deep into the core instead of having to guess addresses. Standard
library only, deterministic output.

Usage: make_seeds.py OUTDIR
"""
import os
import struct
import sys

CLIENT = "198.51.100.7"
IFACE = "192.0.2.10"      # also the TCP service VIP and its SNAT address
DNS_VIP = "192.0.2.20"
DNS_SNAT = "192.0.2.21"
BACKENDS = ["203.0.113.11", "203.0.113.12"]
ROUTER = "203.0.113.1"
FIRST_PORTS = [1024, 1025]  # first SNAT port handed out (single worker, worker 1 of 2)


def addr(a):
    return bytes(int(x) for x in a.split("."))


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ether(ethertype, vlan=None):
    h = bytes.fromhex("020000000001") + bytes.fromhex("020000000002")
    if vlan is not None:
        h += struct.pack("!HH", 0x8100, vlan)
    return h + struct.pack("!H", ethertype)


def ipv4(src, dst, proto, payload, ttl=64, options=b"", frag=0x4000):
    ihl = 5 + len(options) // 4
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(payload), 0x1234, frag, ttl, proto, 0,
                      addr(src), addr(dst)) + options
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + payload


def pseudo(src, dst, proto, length):
    return addr(src) + addr(dst) + struct.pack("!BBH", 0, proto, length)


def tcp(src, dst, sport, dport, flags, seq=1000, ack=0, options=b"", payload=b""):
    doff = 5 + len(options) // 4
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 65535, 0, 0) + options + payload
    c = csum(pseudo(src, dst, 6, len(seg)) + seg)
    seg = seg[:16] + struct.pack("!H", c) + seg[18:]
    return ipv4(src, dst, 6, seg)


def udp(src, dst, sport, dport, payload=b"", zero_csum=False):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    c = 0 if zero_csum else (csum(pseudo(src, dst, 17, len(seg)) + seg) or 0xFFFF)
    seg = seg[:6] + struct.pack("!H", c) + seg[8:]
    return ipv4(src, dst, 17, seg)


def icmp(src, dst, type_, code, rest, body=b"", ttl=64):
    msg = struct.pack("!BBHI", type_, code, 0, rest) + body
    msg = msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]
    return ipv4(src, dst, 1, msg, ttl=ttl)


def arp_request(target):
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + bytes.fromhex("020000000002") + addr(CLIENT) + \
        bytes(6) + addr(target)
    return ether(0x0806) + body


def eth_ip(packet, vlan=None):
    return ether(0x0800, vlan) + packet


SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08
MSS = struct.pack("!BBH", 2, 4, 1460) + b"\x01\x01\x01\x00"  # MSS + NOP NOP NOP EOL


def tcp_handshake_frames(cport, snat_port):
    """Client SYN, both backends' SYN-ACK (only the picked one matches), ACK, data, FINs."""
    out = [[eth_ip(tcp(CLIENT, IFACE, cport, 80, SYN, options=MSS))]]
    out.append([eth_ip(tcp(b, IFACE, 80, snat_port, SYN | ACK, seq=5000, ack=1001, options=MSS)) for b in BACKENDS])
    out.append([eth_ip(tcp(CLIENT, IFACE, cport, 80, ACK, seq=1001, ack=5001)),
                eth_ip(tcp(CLIENT, IFACE, cport, 80, PSH | ACK, seq=1001, ack=5001, payload=b"GET / HTTP/1.0\r\n\r\n"))])
    out.append([eth_ip(tcp(b, IFACE, 80, snat_port, PSH | ACK, seq=5001, ack=1019, payload=b"HTTP/1.0 200 OK\r\n\r\n"))
                for b in BACKENDS])
    out.append([eth_ip(tcp(CLIENT, IFACE, cport, 80, FIN | ACK, seq=1019, ack=5020))] +
               [eth_ip(tcp(b, IFACE, 80, snat_port, FIN | ACK, seq=5020, ack=1020)) for b in BACKENDS] +
               [eth_ip(tcp(CLIENT, IFACE, cport, 80, ACK, seq=1020, ack=5021))])
    return out


def icmp_error_for(snat_port, backend, mtu=1400):
    quoted = tcp(IFACE, backend, snat_port, 80, ACK, seq=1001, ack=5001, payload=b"x" * 64)[:28]
    return eth_ip(icmp(ROUTER, IFACE, 3, 4, mtu, quoted))


def nat_input(config, bursts):
    """bursts: list of (frames, snapshot, clock_exponent, expire)."""
    out = bytes([config])
    for frames, snap, step, expire in bursts:
        assert 1 <= len(frames) <= 64
        out += bytes([(snap << 6) | (len(frames) - 1), step | (0x20 if expire else 0)])
        for f in frames:
            out += struct.pack("<H", len(f)) + f
    return out


def nat_seeds():
    seeds = {}
    for config, snat_port in ((0, FIRST_PORTS[0]), (1, FIRST_PORTS[1]), (2, FIRST_PORTS[0])):
        hs = tcp_handshake_frames(40000, snat_port)
        seeds["tcp_handshake_c%d" % config] = nat_input(config, [(b, 0, 5, False) for b in hs] +
                                                        [([hs[0][0]], 0, 24, True)])
    # UDP request and replies from both backends, then idle expiry.
    req = eth_ip(udp(CLIENT, DNS_VIP, 5353, 53, b"\x12\x34query"))
    replies = [eth_ip(udp(b, DNS_SNAT, 53, FIRST_PORTS[0], b"\x12\x34answer")) for b in BACKENDS]
    seeds["udp_exchange"] = nat_input(0, [([req], 0, 1, False), (replies, 0, 1, False), ([req], 0, 22, True)])
    seeds["udp_zero_checksum"] = nat_input(0, [([eth_ip(udp(CLIENT, DNS_VIP, 5354, 53, b"q", zero_csum=True))], 0, 0,
                                                False)])
    # ICMP error quoting a flow's packet towards its backend (PMTU discovery).
    syn = eth_ip(tcp(CLIENT, IFACE, 40001, 80, SYN, options=MSS))
    seeds["icmp_frag_needed"] = nat_input(0, [([syn], 0, 1, False),
                                              ([icmp_error_for(FIRST_PORTS[0], b) for b in BACKENDS], 0, 1, False)])
    # Echo to our addresses, ARP, a VLAN-tagged SYN, TTL 1, a fragment.
    seeds["local"] = nat_input(0, [([
        eth_ip(icmp(CLIENT, IFACE, 8, 0, 0x42420001, b"ping" * 8)),
        eth_ip(icmp(CLIENT, DNS_VIP, 8, 0, 0x42420002, b"ping")),
        arp_request(IFACE),
        arp_request(DNS_SNAT),
        eth_ip(tcp(CLIENT, IFACE, 40002, 80, SYN), vlan=100),
        eth_ip(ipv4(CLIENT, IFACE, 6, tcp(CLIENT, IFACE, 40003, 80, SYN)[20:], ttl=1)),
        eth_ip(ipv4(CLIENT, IFACE, 17, b"\0" * 16, frag=0x2000)),
    ], 0, 0, False)])
    # Reconfiguration: flows to both backends, then backend removed, then flushed.
    many = [eth_ip(tcp(CLIENT, IFACE, 41000 + i, 80, SYN)) for i in range(16)]
    seeds["reconfigure"] = nat_input(0, [(many, 0, 1, False), (many, 1, 1, False), (many, 2, 1, True),
                                         (many, 0, 1, False)])
    # More new flows than SNAT ports (16 per pool), then than flow slots (40).
    flood = [eth_ip(tcp(CLIENT, IFACE, 42000 + i, 80, SYN)) for i in range(64)]
    dns_flood = [eth_ip(udp(CLIENT, DNS_VIP, 42000 + i, 53, b"q")) for i in range(64)]
    seeds["exhaust"] = nat_input(0, [(flood, 0, 0, False), (dns_flood, 0, 0, False)])
    # Worker 1 of 2: a reply to an even SNAT port belongs to worker 0.
    seeds["handoff"] = nat_input(1, [([eth_ip(tcp(BACKENDS[0], IFACE, 80, 1024, SYN | ACK, seq=5000, ack=1001)),
                                       eth_ip(udp(BACKENDS[1], DNS_SNAT, 53, 1030, b"late"))], 0, 0, False)])
    # The SYN-cookie service (port 443): SYNs with and without options are
    # answered in place; ACKs carry no cookie of ours (the fuzzer cannot
    # forge one) and are refused.
    ts_opts = struct.pack("!BBH", 2, 4, 1460) + b"\x04\x02\x08\x0a\x00\x00\x00\x01\x00\x00\x00\x00\x01\x03\x03\x07"
    seeds["syn_cookies"] = nat_input(0, [([
        eth_ip(tcp(CLIENT, IFACE, 43000, 443, SYN, options=ts_opts)),
        eth_ip(tcp(CLIENT, IFACE, 43001, 443, SYN)),
        eth_ip(tcp(CLIENT, IFACE, 43000, 443, ACK, seq=1001, ack=0x12345679)),
        eth_ip(tcp(CLIENT, IFACE, 43002, 443, ACK, seq=7, ack=8, payload=b"GET /")),
    ], 0, 1, False)])
    return seeds


def parse_seeds():
    quoted_udp = udp(DNS_SNAT, BACKENDS[0], 1024, 53, b"abcdefgh")
    return {
        "tcp_syn": eth_ip(tcp(CLIENT, IFACE, 40000, 80, SYN, options=MSS)),
        "tcp_vlan": eth_ip(tcp(CLIENT, IFACE, 40000, 80, ACK, payload=b"data"), vlan=42),
        "tcp_ip_options": ether(0x0800) + ipv4(CLIENT, IFACE, 6, tcp(CLIENT, IFACE, 1, 2, ACK)[20:],
                                               options=b"\x01" * 8),
        "udp": eth_ip(udp(CLIENT, DNS_VIP, 5353, 53, b"query")),
        "icmp_echo": eth_ip(icmp(CLIENT, IFACE, 8, 0, 0x00010001, b"ping")),
        "icmp_err_tcp": icmp_error_for(1024, BACKENDS[0]),
        "icmp_err_udp": eth_ip(icmp(ROUTER, DNS_SNAT, 11, 0, 0, quoted_udp)),
        "arp": arp_request(IFACE),
        "fragment": eth_ip(ipv4(CLIENT, IFACE, 17, b"\0" * 16, frag=0x2000)),
        "ipv6_ethertype": ether(0x86DD) + bytes(40),
        "padded_udp": (eth_ip(udp(CLIENT, DNS_VIP, 1, 2)) + bytes(60))[:60],
    }


def main():
    if len(sys.argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    root = sys.argv[1]
    for harness, seeds in (("fuzz_parse", parse_seeds()), ("fuzz_nat", nat_seeds())):
        d = os.path.join(root, harness)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(d, "seed_" + name), "wb") as f:
                f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
