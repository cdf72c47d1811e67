"""straitd on a memif port (`port = "memif:PATH"`) with strait-memifgen on
the other end: full NAT both ways without a kernel on the path. The
generator opens TCP flows (SYN, SYN-ACK, ACK) or UDP flows from many
clients, sends traffic both ways and checks every rewritten header
(Ethernet addresses, TTL, IP and TCP/UDP checksums, addresses, ports and
sequence numbers against the flow's). This is the kernel-free benchmark
(tools/benchlib/bench_memif.py) at a small size, asserting correctness
only: nothing here looks at a time or a rate."""

from __future__ import annotations

import importlib.util

import pytest

from tests.lib.straitd import REPO, build_dir


def _bench_memif():
    spec = importlib.util.spec_from_file_location("bench_memif", REPO / "tools" / "benchlib" / "bench_memif.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("proto,workers", [("tcp", 1), ("udp", 2)])
def test_memif_full_nat_checked_both_ways(proto, workers, tmp_path):
    if not (build_dir() / "tools" / "strait-memifgen").is_file():
        pytest.fail("strait-memifgen is not built (meson builds it with -Dtests=true)")
    flows = 3000
    r = _bench_memif().run_case(proto, flows, workers, 0.3, tmp_path, latency_samples=500)
    assert r["complete"], r
    assert r["errors"] == 0, r["error_kinds"]
    assert r["new"]["done"] == flows
    if proto == "tcp":
        assert r["handshake"]["done"] == flows
    est = r["established"]
    # Traffic went both ways over every flow's mapping and all of it came back.
    assert est["received"] > 0 and est["lost"] == 0, est
    # One in flight: at most the packets asked for came back (fewer if
    # its 30 s ran out), each a latency sample, and no packet of the
    # loaded run was counted among them (each would let one more be in
    # flight).
    one = r["one_in_flight"]
    assert 0 < one["received"] <= one["wanted"] == 500 and one["received"] == one["latency_samples"], one
    assert one["lost"] == 0 and r["stale"] == 0, (one, r["stale"])
    assert r["checked"] >= flows + est["received"]
    # Nothing dropped from the generator's first packet on; before it,
    # only straitd's own ARP announcements can be lost (tx_full) while the
    # memif link is still coming up.
    assert r["straitd"]["run_drops"] == {}, r["straitd"]["run_drops"]
    assert set(r["straitd"]["setup_drops"]) <= {"tx_full"}, r["straitd"]["setup_drops"]
    if workers > 1:
        # Replies go to the queue of their SNAT port's owner (port modulo
        # without RSS): none needed handing off.
        assert r["straitd"]["established"]["handoff"] == 0
    assert r["exit"] == 0
    # straitd stopped first and cleanly (a SIGSEGV would be -11).
    assert r["straitd_exit"] == 0


def test_memif_syn_cookies_answered_and_checked(tmp_path):
    """With `syn_proxy = "on"` straitd answers every SYN itself: each of
    3,000 clients' SYNs gets one SYN-ACK from the VIP acking its ISN, with
    right checksums and addresses, and nothing reaches a backend."""
    if not (build_dir() / "tools" / "strait-memifgen").is_file():
        pytest.fail("strait-memifgen is not built (meson builds it with -Dtests=true)")
    flows = 3000
    r = _bench_memif().run_case("cookie", flows, 1, 0.3, tmp_path)
    assert r["cookies"] and r["complete"], r
    assert r["errors"] == 0, r["error_kinds"]
    assert r["new"]["done"] == flows
    # (The generator counts any packet towards a backend as an error.)
    assert r["straitd"]["run_drops"] == {}, r["straitd"]["run_drops"]
    assert r["exit"] == 0
    assert r["straitd_exit"] == 0
