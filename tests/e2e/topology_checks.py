"""Checks of the end-to-end topology itself, before straitd starts: the
router reaches every backend, the backends see the client's own address
(the router does no NAT, so a SNAT address in the straitd tests' logs comes
from straitd), the management link reaches the backends, and nothing
answers for the VIP (no kernel interface holds it). The e2e fixture runs
them once per topology; a failure there errors every e2e case with the
reason instead of blaming straitd, and none of them counts as a test.
"""

from __future__ import annotations

from tests.lib.netns import ns_sh
from tests.lib.topology import CLIENT_IP, VIP, Ec2Topology


def check_topology(topo: Ec2Topology) -> None:
    for ip in topo.backend_ips:
        r = topo.client_sh(["curl", "-sS", "--max-time", "5", "-D", "-", f"http://{ip}/"])
        out = r.stdout.decode()
        assert f"X-Backend: {ip}" in out, f"topology: backend {ip} not reached through the router: {out!r}"
        assert out.rstrip().endswith(f"backend {ip}"), out

    ip = topo.backend_ips[-1]
    before = topo.nginx[-1].requests_served()
    topo.client_sh(["curl", "-sS", "--max-time", "5", "-o", "/dev/null", f"http://{ip}/"])
    lines = topo.nginx[-1].log.read_text().splitlines()
    assert len(lines) == before + 1, "topology: the backend did not log the request"
    assert lines[-1].startswith(CLIENT_IP + " "), f"topology: the router rewrote the client address: {lines[-1]}"

    if topo.mgmt:
        ip = topo.backend_ips[0]
        r = ns_sh(topo.lb, ["curl", "-sS", "--max-time", "5", f"http://{ip}/"])
        assert r.stdout.decode().strip() == f"backend {ip}", "topology: management link does not reach the backends"

    r = topo.client_sh(["curl", "-sS", "--max-time", "2", f"http://{VIP}/"], check=False)
    assert r.returncode != 0, "topology: something other than straitd answers for the VIP"
    # The router is still resolving the VIP with that SYN (and its
    # retransmission) queued; once straitd answers the ARP they would reach
    # it before any backend is up and count as no_backend drops. Deleting
    # the unresolved entry discards them.
    ns_sh(topo.router, ["ip", "neigh", "del", VIP, "dev", "lbnet"], check=False)
    left = ns_sh(topo.router, ["ip", "neigh", "show", "to", VIP, "dev", "lbnet"]).stdout.decode()
    assert "INCOMPLETE" not in left, f"topology: the router still resolves the VIP: {left!r}"
