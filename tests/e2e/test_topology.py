"""The end-to-end topology itself, without straitd: the router reaches every
backend, nginx serves each one's name and the payload intact, and nothing
answers for the VIP while straitd is not running (proof that no kernel
interface holds it). When these fail, the straitd tests are not to blame.
"""

from __future__ import annotations

import hashlib

import pytest

from tests.lib.netns import ns_sh
from tests.lib.topology import CLIENT_IP, VIP, Ec2Topology


@pytest.fixture(scope="module")
def topo():
    t = Ec2Topology(backends=2, mgmt=True, payload_size=4 << 20)
    with t:
        t.start_backends()
        yield t


def test_client_reaches_each_backend_through_router(topo):
    for ip in topo.backend_ips:
        r = topo.client_sh(["curl", "-sS", "--max-time", "5", "-D", "-", f"http://{ip}/"])
        out = r.stdout.decode()
        assert f"X-Backend: {ip}" in out
        assert out.rstrip().endswith(f"backend {ip}")


def test_payload_intact_between_namespaces(topo):
    ip = topo.backend_ips[0]
    r = topo.client_sh(["curl", "-sS", "--max-time", "20", f"http://{ip}/big.bin"], timeout=30)
    assert len(r.stdout) == topo.payload_size
    assert hashlib.sha256(r.stdout).hexdigest() == topo.payload_sha256


def test_backend_sees_client_address_without_nat(topo):
    # The router does no NAT: a backend logs the client's own address, so a
    # SNAT address in the logs of the straitd tests comes from straitd.
    ip = topo.backend_ips[1]
    before = topo.nginx[1].requests_served()
    topo.client_sh(["curl", "-sS", "--max-time", "5", "-o", "/dev/null", f"http://{ip}/"])
    lines = topo.nginx[1].log.read_text().splitlines()
    assert len(lines) == before + 1
    assert lines[-1].startswith(CLIENT_IP + " ")


def test_management_link_reaches_backends(topo):
    # straitd's kernel side (health checks) reaches the backends only over
    # the management veth: lb0 has no address.
    ip = topo.backend_ips[0]
    r = ns_sh(topo.lb, ["curl", "-sS", "--max-time", "5", f"http://{ip}/"])
    assert r.stdout.decode().strip() == f"backend {ip}"


def test_vip_not_answered_by_any_kernel(topo):
    r = topo.client_sh(["curl", "-sS", "--max-time", "2", f"http://{VIP}/"], check=False)
    assert r.returncode != 0
