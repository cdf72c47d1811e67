"""Test topologies built from network namespaces and veth pairs.

Two shapes, both using only the documentation ranges and only namespaces
they create themselves (see docs/test-topology.md for the diagram):

* Ec2Topology - the one-arm deployment straitd has on EC2: a router
  namespace plays the VPC router (ip_forward on) between a client subnet
  (198.51.100.0/26), the straitd link (192.0.2.0/24) and a bridged backend
  subnet (203.0.113.0/24). straitd's namespace holds `lb0`, the veth that
  DPDK's af_packet PMD binds; it has no kernel address. The VIP and SNAT
  addresses are straitd's own and are never given to a kernel interface:
  the router reaches them by ARP on the straitd link, which straitd answers.
  Optionally a management veth (198.51.100.64/30) gives straitd's kernel
  side a path to the backends, for health checks.
* WireTopology - the packet tier: `lb0` faces a tester namespace whose
  `tap0` plays the gateway (192.0.2.1, answered by the tester's kernel) and
  every host behind it; the tests write and read raw frames there.

Both come in two I/O modes (`io`): "af_packet", where straitd's port is
DPDK's af_packet PMD on `lb0` and lb0 has no kernel address, and "xdp", the
shared-NIC mode (`port = "xdp:lb0"`), where lb0 keeps a kernel address of
its own (LB_KERNEL_IP, management) next to straitd's, lb0 and its peer have
one queue per worker, and in the EC2 shape the kernel reaches the backends
over lb0 itself rather than over a management veth.

Names are unique per process and per topology (the pid and a counter), so
concurrent runs do not collide; every object is undone by `down()` in
reverse order, also after a partial `up()`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from . import netns
from .netns import Cleanup, add_addr, add_route, make_netns, make_veth, ns_sh
from .nginx import BIG_FILE, Nginx, make_payload

# The straitd link (one arm): gateway, straitd's interface address (also the
# default VIP and SNAT address), a second VIP and a separate SNAT address.
LB_NET = "192.0.2.0/24"
GATEWAY_IP = "192.0.2.1"
LB_IP = "192.0.2.10"
VIP = LB_IP
VIP2 = "192.0.2.11"
SNAT2 = "192.0.2.20"
# The kernel's own address on lb0 in the xdp I/O mode (never straitd's).
LB_KERNEL_IP = "192.0.2.5"
LB_MAC = "02:53:00:00:00:0a"   # lb0 (the DPDK port)
GW_MAC = "02:53:00:00:00:01"   # its peer: the router, or the tester
# Clients and the management link share 198.51.100.0/24.
CLIENT_ROUTER_IP = "198.51.100.1"
CLIENT_IP = "198.51.100.2"
CLIENT_PREFIX = 26
MGMT_ROUTER_IP = "198.51.100.65"
MGMT_LB_IP = "198.51.100.66"
MGMT_PREFIX = 30
# Backends behind a bridge in the router namespace.
BACKEND_NET = "203.0.113.0/24"
BACKEND_ROUTER_IP = "203.0.113.1"


IO_MODES = ("af_packet", "xdp")


def io_modes() -> list[str]:
    """The I/O modes the shared fixtures run in: both, unless STRAIT_TEST_IO
    names one (af_packet or xdp) for a quicker run."""
    want = os.environ.get("STRAIT_TEST_IO", "").strip()
    if not want:
        return list(IO_MODES)
    if want not in IO_MODES:
        raise ValueError(f"STRAIT_TEST_IO={want!r}: expected one of {', '.join(IO_MODES)}")
    return [want]


def backend_ip(i: int) -> str:
    """Address of backend i (0-based): 203.0.113.11, .12, ..."""
    return f"203.0.113.{11 + i}"


class _Base:
    def __init__(self, workdir: Path | None, prefix: str | None = None, *,
                 io: str = "af_packet", queues: int = 1) -> None:
        if io not in IO_MODES:
            raise ValueError(f"io={io!r}: expected one of {IO_MODES}")
        self.io = io
        self.queues = queues
        self.tag = netns.unique_tag()
        # Tests name namespaces after their pid (stale ones can be found and
        # cleared); the demo gives fixed, typeable names.
        self.prefix = prefix or f"{netns.NS_PREFIX}{self.tag}"
        self.cleanup = Cleanup()
        self.own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(
            tempfile.mkdtemp(prefix=f"strait-{self.tag}-"))
        self.workdir.chmod(0o755)
        self.namespaces: list[str] = []
        self.is_up = False

    def _lb_link(self, peer_ns: str, peer_if: str) -> None:
        """lb0 in the lb namespace facing `peer_if`; in the xdp mode with one
        queue per worker on both ends and the kernel's own address on lb0."""
        make_veth(self.lb, "lb0", peer_ns, peer_if, mac_a=LB_MAC, mac_b=GW_MAC,
                  queues=self.queues if self.io == "xdp" else 1)
        if self.io == "xdp":
            add_addr(self.lb, "lb0", f"{LB_KERNEL_IP}/24")

    def ns_name(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def _ns(self, role: str, **kw) -> str:
        name = make_netns(self.ns_name(role), self.cleanup, **kw)
        self.namespaces.append(name)
        return name

    def down(self) -> list[str]:
        """Tears everything down; returns the errors met (never raises)."""
        errors = self.cleanup.run()
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.is_up = False
        return errors

    def __enter__(self):
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def up(self):  # pragma: no cover - overridden
        raise NotImplementedError


class Ec2Topology(_Base):
    """Client -> router -> straitd (one arm) -> router -> backends."""

    def __init__(self, backends: int = 2, *, mgmt: bool = False,
                 workdir: Path | None = None, backend_port: int = 80,
                 payload_size: int = 8 << 20, prefix: str | None = None,
                 io: str = "af_packet", queues: int = 1) -> None:
        super().__init__(workdir, prefix, io=io, queues=queues)
        self.n_backends = backends
        self.mgmt = mgmt
        self.backend_port = backend_port
        self.payload_size = payload_size
        self.router = self.lb = self.client = ""
        self.backend_ns: list[str] = []
        self.backend_ips = [backend_ip(i) for i in range(backends)]
        self.nginx: list[Nginx] = []
        self.payload_sha256 = ""
        self.payload_path = self.workdir / BIG_FILE

    def up(self) -> "Ec2Topology":
        self.router = self._ns("router", forwarding=True)
        self.lb = self._ns("lb")
        self.client = self._ns("client")
        self.backend_ns = [self._ns(f"backend{i + 1}") for i in range(self.n_backends)]

        # The straitd link: with af_packet lb0 stays without an address
        # (DPDK owns it); with xdp the kernel keeps one of its own.
        self._lb_link(self.router, "lbnet")
        add_addr(self.router, "lbnet", f"{GATEWAY_IP}/24")

        make_veth(self.client, "eth0", self.router, "clnet")
        add_addr(self.client, "eth0", f"{CLIENT_IP}/{CLIENT_PREFIX}")
        add_addr(self.router, "clnet", f"{CLIENT_ROUTER_IP}/{CLIENT_PREFIX}")
        add_route(self.client, "default", CLIENT_ROUTER_IP)

        ns_sh(self.router, ["ip", "link", "add", "bknet", "type", "bridge"])
        ns_sh(self.router, ["ip", "link", "set", "bknet", "up"])
        add_addr(self.router, "bknet", f"{BACKEND_ROUTER_IP}/24")
        for i, ns in enumerate(self.backend_ns):
            port = f"bk{i + 1}"
            make_veth(ns, "eth0", self.router, port)
            ns_sh(self.router, ["ip", "link", "set", port, "master", "bknet"])
            add_addr(ns, "eth0", f"{self.backend_ips[i]}/24")
            add_route(ns, "default", BACKEND_ROUTER_IP)

        if self.mgmt and self.io == "xdp":
            # Shared NIC: the kernel's address on lb0 is the management
            # path, as on an EC2 instance with one ENI; health checks (and
            # anything else of the kernel's) leave and come back over the
            # link straitd serves.
            add_route(self.lb, "default", GATEWAY_IP)
        elif self.mgmt:
            make_veth(self.lb, "mgmt0", self.router, "mgnet")
            add_addr(self.lb, "mgmt0", f"{MGMT_LB_IP}/{MGMT_PREFIX}")
            add_addr(self.router, "mgnet", f"{MGMT_ROUTER_IP}/{MGMT_PREFIX}")
            # Only the backends: everything else straitd's kernel side has
            # no business reaching.
            add_route(self.lb, BACKEND_NET, MGMT_ROUTER_IP)
        self.is_up = True
        return self

    def start_backends(self, proxy_protocol_port: int | None = None) -> None:
        """nginx in every backend namespace, each serving its name and the
        same random payload (its sha256 is `payload_sha256`); with
        `proxy_protocol_port`, also on that port behind a PROXY header."""
        self.payload_sha256 = make_payload(self.payload_path, self.payload_size)
        for i, ns in enumerate(self.backend_ns):
            n = Nginx(ns=ns, ip=self.backend_ips[i], port=self.backend_port,
                      root=self.workdir / f"nginx-b{i + 1}", proxy_protocol_port=proxy_protocol_port)
            self.nginx.append(n)
            self.cleanup.push(f"nginx {n.ip}", n.stop)
            n.start(self.payload_path)
        for n in self.nginx:
            n.wait_ready()

    def client_sh(self, args, **kw):
        return ns_sh(self.client, args, **kw)


class WireTopology(_Base):
    """straitd's lb0 facing a tester namespace that writes and reads raw
    frames. The tester's kernel holds the gateway address so straitd's ARP
    for its next hop is answered without a responder thread; IPv6 is off
    there, so the kernel sends nothing of its own."""

    TESTER_IF = "tap0"

    def __init__(self, workdir: Path | None = None, *, io: str = "af_packet",
                 queues: int = 1) -> None:
        super().__init__(workdir, io=io, queues=queues)
        self.lb = self.tester = ""

    def up(self) -> "WireTopology":
        self.lb = self._ns("lb")
        self.tester = self._ns("tester")
        self._lb_link(self.tester, self.TESTER_IF)
        add_addr(self.tester, self.TESTER_IF, f"{GATEWAY_IP}/24")
        self.is_up = True
        return self
