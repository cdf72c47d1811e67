"""A real Prometheus server scrapes a real straitd while traffic goes
through the VIP, and its query API must return the expected series with
the values that traffic implies: one flow per HTTP connection, per-backend
flow counts equal to what each nginx logged, packet counts within the
bounds a short HTTP exchange allows, exact drop counts for datagrams to a
port that has no service and for an unsupported IP protocol, every drop
reason as its own series, and the alerting rules of deploy/prometheus
evaluating cleanly against live data. `lbctl stats` must show the same
numbers as /metrics.

Prometheus runs inside straitd's namespace (straitd's metrics listen on
127.0.0.1 there), with a 1 s scrape interval, its storage in the
topology's temporary directory, and is stopped by pid.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.lib.netns import CommandError, ns_cmd, ns_sh
from tests.lib.straitd import METRICS_PORT, REPO
from tests.lib.topology import LB_IP, VIP

PROM_PORT = 9090          # inside straitd's namespace, so it never collides
SCRAPE_S = 1
REQUESTS = 20
BAD_PACKETS = 7
# A curl GET of the small index page over a fresh connection: client side
# SYN, ACK, request, ACK, FIN, ACK; backend side SYN-ACK, response, FIN
# (+ ACKs). At least 8 packets cross straitd per connection, and with
# delayed or duplicate ACKs and retransmissions on a loaded two-core
# machine not more than 16.
PACKETS_PER_REQUEST = (8, 16)
# Packets straitd may see or send besides the flows in the same window:
# ARP both ways with the router, retransmitted ARP, stray frames.
BACKGROUND_PACKETS = 40


def drop_reasons() -> list[str]:
    """The label values, from the one table that defines them."""
    text = (REPO / "include" / "strait" / "drop_reason.h").read_text()
    return re.findall(r'^\s*X\(k\w+,\s*"([a-z0-9_]+)"\)', text, re.M)


class PrometheusServer:
    """One `prometheus` process in namespace `ns`, scraping straitd."""

    def __init__(self, ns: str, workdir: Path, rules: Path) -> None:
        self.ns = ns
        self.dir = workdir / f"prometheus-{ns}"
        self.rules = rules
        self.url = f"http://127.0.0.1:{PROM_PORT}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "PrometheusServer":
        exe = shutil.which("prometheus") or "/usr/bin/prometheus"
        if not Path(exe).exists():
            pytest.fail("prometheus is not installed (Debian package prometheus; tools/deps installs it)")
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        config = self.dir / "prometheus.yml"
        config.write_text(f"""\
global:
  scrape_interval: {SCRAPE_S}s
  scrape_timeout: {SCRAPE_S}s
  evaluation_interval: {SCRAPE_S}s
rule_files:
  - {self.rules}
scrape_configs:
  - job_name: strait
    static_configs:
      - targets: ["127.0.0.1:{METRICS_PORT}"]
""")
        log = open(self.dir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            ns_cmd(self.ns, [exe, f"--config.file={config}",
                             f"--storage.tsdb.path={self.dir / 'data'}",
                             f"--web.listen-address=127.0.0.1:{PROM_PORT}",
                             "--storage.tsdb.retention.time=1h", "--log.level=warn"]),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise CommandError(f"prometheus exited {self.proc.returncode}:\n{self.log_tail()}")
            r = ns_sh(self.ns, ["curl", "-sf", "--max-time", "2", f"{self.url}/-/ready"], check=False)
            if r.returncode == 0:
                return self
            if time.monotonic() > deadline:
                raise CommandError(f"prometheus not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.3)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.dir / "prometheus.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def api(self, path: str, **params: str) -> dict:
        args = ["curl", "-sS", "--max-time", "5", "-G", f"{self.url}/api/v1/{path}"]
        for k, v in params.items():
            args += ["--data-urlencode", f"{k}={v}"]
        r = ns_sh(self.ns, args, timeout=15)
        reply = json.loads(r.stdout)
        assert reply.get("status") == "success", reply
        return reply["data"]

    def query(self, expr: str) -> list[tuple[dict, float]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return [(s["metric"], float(s["value"][1])) for s in data["result"]]

    def value(self, expr: str) -> float | None:
        """The single value of `expr`, or None when it has no series."""
        res = self.query(expr)
        assert len(res) <= 1, f"{expr}: {res}"
        return res[0][1] if res else None

    def wait_value(self, expr: str, want: float, timeout: float = 15.0) -> float:
        """Polls until `expr` equals `want`; returns the last value seen."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.value(expr)
            if got == want or time.monotonic() > deadline:
                return got
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def prom(e2e):
    p = PrometheusServer(e2e.topo.lb, e2e.topo.workdir, REPO / "deploy" / "prometheus" / "alerts.yml")
    try:
        p.start()
        # The first scrape of straitd has happened.
        deadline = time.monotonic() + 20
        while p.value('up{job="strait"}') != 1:
            assert time.monotonic() < deadline, f"prometheus never scraped straitd:\n{p.log_tail()}"
            time.sleep(0.5)
        yield p
    finally:
        p.stop()


def settled(prom: PrometheusServer, e2e, expr: str, metric: str, **labels: str) -> float:
    """Waits until Prometheus' latest sample of `expr` equals what straitd's
    /metrics says now (`metric` summed over series with `labels`), i.e. it
    has scraped since the last change; returns that value."""
    want = e2e.d.metrics().value(metric, **labels)
    got = prom.wait_value(expr, want)
    assert got == want, f"{expr}: prometheus has {got}, straitd's /metrics {want}"
    return got


def test_prometheus_scrapes_straitd(prom, e2e):
    assert prom.value('up{job="strait"}') == 1
    info = prom.query("strait_build_info")
    assert len(info) == 1 and info[0][0].get("version"), info
    assert prom.value("strait_workers") == e2e.workers
    rx = prom.query("strait_rx_packets_total")
    assert sorted(m["worker"] for m, _ in rx) == [str(w) for w in range(e2e.workers)]
    cap = prom.value("strait_flows_capacity")
    assert cap is not None and cap > 0
    assert prom.value("strait_snapshot_generation") >= 1
    gens = prom.query("strait_worker_snapshot_generation")
    assert len(gens) == e2e.workers
    busy = prom.query("strait_worker_busy_ratio")
    assert len(busy) == e2e.workers and all(0 <= v <= 1 for _, v in busy), busy


def test_every_drop_reason_is_a_series(prom):
    reasons = drop_reasons()
    assert len(reasons) >= 20
    got = {m["reason"] for m, _ in prom.query("strait_drops_total")}
    assert got == set(reasons)


def test_service_backend_and_nic_series_carry_labels(prom, e2e):
    backends = {f"{ip}:80" for ip in e2e.topo.backend_ips}
    up = prom.query('strait_backend_up{service="web"}')
    assert {m["backend"] for m, _ in up} == backends
    assert all(v == 1 for _, v in up), up
    assert prom.value('strait_service_backends{service="web"}') == len(backends)
    assert prom.value(f'strait_service_info{{service="web",listen="{VIP}:80",protocol="tcp"}}') == 1
    port = "net_af_xdp0" if e2e.io == "xdp" else "net_af_packet0"
    xstats = {m["name"] for m, _ in prom.query(f'strait_port_xstat{{port="{port}"}}')}
    assert {"rx_good_packets", "tx_good_packets"} <= xstats, sorted(xstats)
    if e2e.io == "xdp":
        # Strait's XDP program: every verdict a series, traffic steered to
        # straitd and (health checks' replies) passed to the kernel.
        verdicts = {m["verdict"]: v for m, v in prom.query('strait_xdp_verdicts_total{interface="lb0"}')}
        assert len(verdicts) == 11, sorted(verdicts)
        assert verdicts["steer_tcp"] > 0 and verdicts["pass_ipv4"] > 0, verdicts


def served_via_straitd(nginx) -> int:
    """Requests in the backend's access log that came through straitd (from
    its SNAT address; health checks come from the management address)."""
    try:
        lines = nginx.log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return 0
    return sum(1 for line in lines if line.startswith(LB_IP + " "))


def test_counters_agree_with_the_traffic_sent(prom, e2e):
    nginx = e2e.topo.nginx
    ips = e2e.topo.backend_ips
    flows0 = settled(prom, e2e, "strait_flows_created_total", "strait_flows_created_total")
    per_backend0 = {ip: settled(prom, e2e, f'strait_backend_flows_total{{service="web",backend="{ip}:80"}}',
                                "strait_backend_flows_total", service="web", backend=f"{ip}:80")
                    for ip in ips}
    rx0 = settled(prom, e2e, "sum(strait_rx_packets_total)", "strait_rx_packets_total")
    tx0 = prom.value("sum(strait_tx_packets_total)")
    bpk0 = prom.value('sum(strait_backend_packets_total{service="web"})')
    svc0 = prom.value('strait_service_flows_total{service="web"}')
    served0 = [served_via_straitd(n) for n in nginx]

    for _ in range(REQUESTS):
        backend, body = e2e.backend_of("/")
        assert body == f"backend {backend}\n".encode()

    flows = prom.wait_value("strait_flows_created_total", flows0 + REQUESTS)
    assert flows == flows0 + REQUESTS, f"{REQUESTS} connections, {flows - flows0} flows created"
    assert prom.value('strait_service_flows_total{service="web"}') - svc0 == REQUESTS
    # Per backend, exactly the connections that backend's nginx logged.
    served = [served_via_straitd(n) - s for n, s in zip(nginx, served0)]
    assert sum(served) == REQUESTS
    for ip, n in zip(ips, served):
        expr = f'strait_backend_flows_total{{service="web",backend="{ip}:80"}}'
        got = prom.wait_value(expr, per_backend0[ip] + n) - per_backend0[ip]
        assert got == n, f"backend {ip}: nginx served {n}, strait_backend_flows_total rose {got}"

    # Packets: wait until the scrape covers the end of the traffic.
    rx = settled(prom, e2e, "sum(strait_rx_packets_total)", "strait_rx_packets_total") - rx0
    tx = prom.value("sum(strait_tx_packets_total)") - tx0
    bpk = prom.value('sum(strait_backend_packets_total{service="web"})') - bpk0
    logging.info("%d requests: %d flow packets, rx %d, tx %d", REQUESTS, bpk, rx, tx)
    lo, hi = PACKETS_PER_REQUEST
    assert lo * REQUESTS <= bpk <= hi * REQUESTS, f"{bpk} packets for {REQUESTS} requests"
    # Every forwarded packet was received and transmitted once; the rest is
    # the little straitd sees or sends on its own (ARP).
    assert bpk <= rx <= bpk + BACKGROUND_PACKETS, f"rx {rx}, forwarded {bpk}"
    assert bpk <= tx <= bpk + BACKGROUND_PACKETS, f"tx {tx}, forwarded {bpk}"


def _send_from_client(e2e, code: str) -> None:
    ns_sh(e2e.topo.client, ["/usr/bin/python3", "-c", code], timeout=20)


def test_bad_packets_count_under_their_reason(prom, e2e):
    # The VIP is also the SNAT address here (the topology's default), so a
    # datagram to a port no service listens on is taken for a reply and
    # counted as no_flow; a protocol straitd does not handle is refused by
    # the parser whatever the address.
    no_flow = 'strait_drops_total{reason="no_flow"}'
    unsupported = 'strait_drops_total{reason="unsupported_protocol"}'
    nf0 = settled(prom, e2e, no_flow, "strait_drops_total", reason="no_flow")
    up0 = settled(prom, e2e, unsupported, "strait_drops_total", reason="unsupported_protocol")
    _send_from_client(e2e, "import socket\n"
                           "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                           f"for _ in range({BAD_PACKETS}): s.sendto(b'strait-test', ('{VIP}', 9))\n")
    # IP protocol 47 (GRE).
    _send_from_client(e2e, "import socket\n"
                           "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)\n"
                           f"for _ in range({BAD_PACKETS}): s.sendto(b'\\0' * 8, ('{VIP}', 0))\n")
    got = prom.wait_value(no_flow, nf0 + BAD_PACKETS) - nf0
    assert got == BAD_PACKETS, f"{BAD_PACKETS} UDP datagrams to port 9, no_flow rose {got}"
    got = prom.wait_value(unsupported, up0 + BAD_PACKETS) - up0
    assert got == BAD_PACKETS, f"{BAD_PACKETS} GRE packets, unsupported_protocol rose {got}"
    # straitd's own /metrics says the same as Prometheus.
    m = e2e.d.metrics()
    assert m.value("strait_drops_total", reason="no_flow") == nf0 + BAD_PACKETS
    assert m.value("strait_drops_total", reason="unsupported_protocol") == up0 + BAD_PACKETS


def test_lbctl_stats_shows_the_same_numbers(prom, e2e):
    # Quiet now: flows and drops only move with traffic.
    stats = e2e.d.lbctl_json("stats")["result"]
    m = e2e.d.metrics()
    assert stats["flows"]["created"] == m.value("strait_flows_created_total")
    assert stats["flows"]["capacity"] == m.value("strait_flows_capacity")
    for reason in drop_reasons():
        if reason in ("arp_not_ours", "unsupported_l2", "not_local", "neighbour_miss"):
            continue  # background frames may arrive between the two reads
        assert stats["drops"][reason] == m.value("strait_drops_total", reason=reason), reason
    # And Prometheus holds the same as straitd once it has scraped again.
    settled(prom, e2e, "strait_flows_created_total", "strait_flows_created_total")


def test_alert_rules_evaluate_on_live_data(prom):
    rules_file = (REPO / "deploy" / "prometheus" / "alerts.yml").read_text()
    want = len(re.findall(r"^\s*- alert:", rules_file, re.M))
    deadline = time.monotonic() + 15
    while True:
        groups = prom.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        evaluated = [r for r in rules if not r.get("lastEvaluation", "").startswith("0001-")]
        if len(evaluated) == want or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(rules) == want, [r["name"] for r in rules]
    assert len(evaluated) == want, "some rules were never evaluated"
    bad = [(r["name"], r.get("lastError")) for r in rules if r.get("health") != "ok"]
    assert not bad, bad
    # Healthy backends and a healthy daemon: none of these may be firing.
    firing = {a["labels"]["alertname"] for a in prom.api("alerts")["alerts"] if a["state"] == "firing"}
    assert not firing & {"StraitBackendDown", "StraitServiceFailOpen", "StraitDown",
                         "StraitWorkerStalled", "StraitMetricsErrors"}, firing
