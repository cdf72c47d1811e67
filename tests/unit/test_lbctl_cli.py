#!/usr/bin/python3
"""lbctl command-line tests: usage errors (exit 2, message and usage on
stderr) caught before any connection, "daemon not running" (exit 1), and a
fake straitd on a temporary Unix socket that records the JSON requests
lbctl sends and answers with canned replies, so the request shapes, the
table output, --json and the exit status of failed requests are checked
without a dataplane.

Usage: test_lbctl_cli.py PATH_TO_LBCTL
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import unittest

LBCTL = None


class FakeDaemon:
    """Answers one JSON line per connection from a canned table."""

    def __init__(self, path):
        self.path = path
        self.requests = []
        self.replies = {}
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                req = json.loads(data.split(b"\n")[0])
                self.requests.append(req)
                reply = self.replies.get(req.get("command"),
                                         {"ok": False, "error": "no canned reply"})
                conn.sendall((json.dumps(reply) + "\n").encode())

    def stop(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()


def run(*args, timeout=20):
    return subprocess.run([LBCTL, *args], capture_output=True, text=True, timeout=timeout)


class UsageErrors(unittest.TestCase):
    """Bad usage exits 2 with a message and the usage text, without connecting."""

    CASES = [
        ([], "missing command"),
        (["frobnicate"], 'unknown command "frobnicate"'),
        (["service"], 'missing subcommand for "service"'),
        (["service", "explode"], 'unknown command "service explode"'),
        (["service", "add", "web"], "--listen IP:PORT is required"),
        (["service", "add", "web", "--listen", "192.0.2.10:80"], "--protocol tcp|udp is required"),
        (["service", "add", "web", "--listen", "192.0.2.10", "--protocol", "tcp"], "expected IP:PORT"),
        (["service", "add", "web", "--listen", "192.0.2.10:80", "--protocol", "sctp"], "expected tcp or udp"),
        (["service", "add", "web", "--listen", "192.0.2.10:80", "--protocol", "tcp", "--snat", "192.0.2.10,nope"],
         '"nope" is not an IPv4 address'),
        (["service", "add", "--listen", "192.0.2.10:80", "--protocol", "tcp"], "missing service NAME"),
        (["service", "add", "web", "--listen", "192.0.2.10:80", "--protocol", "tcp", "--syn-proxy", "yes"],
         '--syn-proxy "yes": expected auto, on or off'),
        (["service", "add", "web", "--listen", "192.0.2.10:80", "--protocol", "tcp", "--proxy-protocol", "v1"],
         '--proxy-protocol "v1": expected v2 or off'),
        (["service", "remove"], "missing service NAME"),
        (["backend", "list"], "missing SERVICE"),
        (["backend", "add", "web"], "missing backend IP:PORT"),
        (["backend", "add", "web", "203.0.113.10:99999"], "port must be 1-65535"),
        (["backend", "add", "web", "203.0.113.300:80"], 'bad IPv4 address "203.0.113.300"'),
        (["backend", "add", "web", "bad_name:80"], "neither an IPv4 address nor a DNS name"),
        (["backend", "add", "web", "203.0.113.10:80", "--weight", "-1"], "--weight"),
        (["backend", "add", "web", "203.0.113.10:80", "--weight", "10001"], "expected an integer 0-10000"),
        (["backend", "add", "web", "203.0.113.10:80", "--weight", "x"], "expected an integer 0-10000"),
        (["backend", "set", "web", "203.0.113.10:80"], "--weight N is required"),
        (["backend", "remove", "web", "203.0.113.10:80", "--weight", "2"], "unrecognised option"),
        (["backend", "list", "web", "extra"], 'unexpected argument "extra"'),
        (["flows", "--limit", "0"], "expected an integer 1-100000"),
        (["flows", "web"], 'unexpected argument "web"'),
        (["stats", "--bogus"], "unrecognised option '--bogus'"),
        # Moved from the e2e tier, where they ran against a live straitd
        # without sending traffic through it.
        (["backend", "frob", "web"], 'unknown command "backend frob"'),
        (["backend", "add", "web", "203.0.113.11:80", "--bogus"], "bogus"),
        (["stats", "now"], 'unexpected argument "now"'),
        (["flows", "--limit", "many"], '--limit "many"'),
        (["flows", "--service", ""], "--service: empty name"),
        (["backend", "add", "web", "203.0.113.11"], "expected IP:PORT or NAME:PORT"),
        (["backend", "add", "web", "203.0.113.11:0"], "port must be 1-65535"),
        (["backend", "add", "web", "203.0.113.11:65536"], "port must be 1-65535"),
        (["backend", "remove", "web", "203.0.113:80"], "bad IPv4 address"),
        (["backend", "set", "web", "bad_name!:80", "--weight", "1"], "neither an IPv4 address nor a DNS name"),
        (["service", "add", "x", "--listen", "192.0.2.999:80", "--protocol", "tcp"], "bad IPv4 address"),
        (["service", "add", "x", "--listen", "alt.example:80", "--protocol", "tcp"], "bad IPv4 address"),
        (["service", "add", "x", "--listen", "192.0.2.21:80", "--protocol", "tcp", "--snat", "192.0.2"],
         "not an IPv4 address"),
        (["backend", "set", "web", "203.0.113.11:80", "--weight", "1.5"], "--weight"),
        (["backend", "set", "web", "203.0.113.11:80", "--weight", ""], "--weight"),
        (["backend", "add", "web", "203.0.113.77:80", "--weight", "abc"], "--weight"),
    ]

    COMMANDS = ["service list", "service add", "service remove", "backend list", "backend add",
                "backend remove", "backend set", "stats", "flows", "config show"]

    def test_usage_errors(self):
        for args, message in self.CASES:
            with self.subTest(args=args):
                # A socket path that cannot exist: a usage error must be
                # reported before any connection attempt.
                r = run("--socket", "/nonexistent/strait.sock", *args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(message, r.stderr)
                self.assertIn("Usage: lbctl", r.stderr)
                self.assertNotIn("cannot connect", r.stderr)
                self.assertEqual(r.stdout, "")

    def test_help(self):
        for args in (["--help"], ["-h"], ["backend", "list", "web", "--help"]):
            r = run(*args)
            self.assertEqual(r.returncode, 0, args)
            self.assertIn("Usage: lbctl", r.stdout)
            self.assertIn("backend remove SERVICE IP:PORT [--flush]", r.stdout)
            for c in self.COMMANDS:
                self.assertIn(f"  {c}", r.stdout, (args, c))

    def test_socket_without_path(self):
        r = run("--socket")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("Usage: lbctl", r.stderr)

    def test_plain_file_as_socket_exits_1(self):
        d = tempfile.mkdtemp(prefix="strait-lbctl-")
        try:
            plain = os.path.join(d, "plain-file")
            with open(plain, "w") as f:
                f.write("not a socket")
            r = run("--socket", plain, "stats")
            self.assertEqual(r.returncode, 1)
            self.assertIn("cannot connect to", r.stderr)
            self.assertNotIn("Usage:", r.stderr)
        finally:
            shutil.rmtree(d)


class DaemonNotRunning(unittest.TestCase):
    def test_exit_1_with_reason(self):
        d = tempfile.mkdtemp(prefix="strait-lbctl-")
        try:
            path = os.path.join(d, "control.sock")
            r = run("--socket", path, "service", "list")
            self.assertEqual(r.returncode, 1)
            self.assertIn(f"cannot connect to {path}: No such file or directory", r.stderr)
            # A socket nobody listens on any more.
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            s.close()
            r = run("--socket", path, "backend", "list", "web")
            self.assertEqual(r.returncode, 1)
            self.assertIn(f"cannot connect to {path}: Connection refused", r.stderr)
        finally:
            shutil.rmtree(d)


class WithFakeDaemon(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="strait-lbctl-")
        self.path = os.path.join(self.dir, "control.sock")
        self.daemon = FakeDaemon(self.path)

    def tearDown(self):
        self.daemon.stop()
        shutil.rmtree(self.dir)

    def lbctl(self, *args):
        return run("--socket", self.path, *args)

    def last(self):
        self.assertTrue(self.daemon.requests, "no request reached the daemon")
        return self.daemon.requests[-1]

    def test_request_shapes(self):
        ok = {"ok": True, "version": 1, "result": {"generation": 2}}
        for cmd in ("backend add", "backend remove", "backend set", "service add", "service remove"):
            self.daemon.replies[cmd] = ok
        cases = [
            (["backend", "add", "web", "203.0.113.10:443"],
             {"command": "backend add", "args": {"service": "web", "backend": "203.0.113.10:443"}}),
            (["backend", "add", "web", "203.0.113.10:443", "--weight", "3"],
             {"command": "backend add", "args": {"service": "web", "backend": "203.0.113.10:443", "weight": 3}}),
            (["backend", "add", "web", "nlb.example.com:443"],
             {"command": "backend add", "args": {"service": "web", "backend": "nlb.example.com:443"}}),
            (["backend", "remove", "web", "203.0.113.10:443"],
             {"command": "backend remove", "args": {"service": "web", "backend": "203.0.113.10:443"}}),
            (["backend", "remove", "web", "203.0.113.10:443", "--flush"],
             {"command": "backend remove", "args": {"service": "web", "backend": "203.0.113.10:443", "flush": True}}),
            (["backend", "set", "web", "203.0.113.10:443", "--weight", "0"],
             {"command": "backend set", "args": {"service": "web", "backend": "203.0.113.10:443", "weight": 0}}),
            (["service", "add", "web", "--listen", "192.0.2.10:80", "--protocol", "udp", "--snat", "192.0.2.11,192.0.2.12"],
             {"command": "service add", "args": {"name": "web", "listen": "192.0.2.10:80", "protocol": "udp",
                                                  "snat": ["192.0.2.11", "192.0.2.12"]}}),
            (["service", "add", "web", "--listen", "192.0.2.10:443", "--protocol", "tcp", "--syn-proxy", "on"],
             {"command": "service add", "args": {"name": "web", "listen": "192.0.2.10:443", "protocol": "tcp",
                                                  "syn_proxy": "on"}}),
            (["service", "add", "web", "--listen", "192.0.2.10:443", "--protocol", "tcp", "--proxy-protocol", "v2"],
             {"command": "service add", "args": {"name": "web", "listen": "192.0.2.10:443", "protocol": "tcp",
                                                  "proxy_protocol": "v2"}}),
            (["service", "remove", "web"], {"command": "service remove", "args": {"name": "web"}}),
        ]
        self.daemon.replies["service add"] = {"ok": True, "version": 1,
                                              "result": {"service": {"listen": "192.0.2.10:80"}, "generation": 2}}
        for args, want in cases:
            with self.subTest(args=args):
                r = self.lbctl(*args)
                self.assertEqual(r.returncode, 0, r.stderr)
                req = self.last()
                self.assertEqual(req["version"], 1)
                self.assertEqual(req["command"], want["command"])
                self.assertEqual(req["args"], want["args"])
                self.assertNotEqual(r.stdout, "")

    def test_options_anywhere(self):
        self.daemon.replies["flows"] = {"ok": True, "version": 1,
                                        "result": {"flows": [], "limit": 5, "active": 0}}
        r = run("flows", "--limit", "5", "--socket", self.path, "--service", "web")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.last()["args"], {"service": "web", "limit": 5})
        r = run("--json", "--socket", self.path, "flows")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.last()["args"], {})
        self.assertEqual(json.loads(r.stdout)["result"]["limit"], 5)

    def test_backend_list_table_and_json(self):
        result = {
            "service": "web", "listen": "192.0.2.10:80", "protocol": "tcp", "fail_open": False,
            "backends": [
                {"address": "203.0.113.11:80", "slot": 0, "weight": 1, "health": "up", "state": "active",
                 "active_flows": 7, "flows_total": 10, "packets": 150, "bytes": 9600},
                {"address": "203.0.113.12:80", "slot": 1, "weight": 0, "health": "draining", "state": "draining",
                 "active_flows": 2, "flows_total": 4, "packets": 8, "bytes": 512,
                 "dns_names": ["nlb.example.com:80"]},
            ],
            "dns": [{"name": "nlb.example.com:80", "weight": 1, "addresses": ["203.0.113.12"]}],
        }
        reply = {"ok": True, "version": 1, "result": result}
        self.daemon.replies["backend list"] = reply
        r = self.lbctl("backend", "list", "web")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.last(), {"version": 1, "command": "backend list", "args": {"service": "web"}})
        lines = r.stdout.splitlines()
        header = next(l for l in lines if l.startswith("ADDRESS"))
        for col in ("WEIGHT", "HEALTH", "STATE", "ACTIVE", "FLOWS", "PACKETS", "BYTES"):
            self.assertIn(col, header)
        row = next(l for l in lines if l.startswith("203.0.113.11:80")).split()
        self.assertEqual(row[:8], ["203.0.113.11:80", "1", "up", "active", "7", "10", "150", "9600"])
        row = next(l for l in lines if l.startswith("203.0.113.12:80")).split()
        self.assertEqual(row[2], "draining")
        self.assertIn("nlb.example.com:80", r.stdout)

        r = self.lbctl("--json", "backend", "list", "web")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), reply)

    def test_stats_and_service_list_tables(self):
        self.daemon.replies["stats"] = {"ok": True, "version": 1, "result": {
            "snapshot_generation": 4, "rx_packets": 30, "tx_packets": 29, "drops_total": 1,
            "handoff_in": 0, "handoff_out": 0, "neighbours": 2,
            "flows": {"active": 3, "capacity": 100, "created": 9, "expired": 6, "flushed": 0},
            "workers": [{"worker": 0, "rx_packets": 30, "tx_packets": 29, "flows_created": 9,
                         "busy_ratio": 0.25, "snapshot_generation": 4}],
            "drops": {"malformed": 1, "no_service": 0},
            "snat": [{"address": "192.0.2.10", "ports_in_use": 3, "ports_capacity": 64512}]}}
        r = self.lbctl("stats")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("25.0%", r.stdout)
        self.assertIn("no_service", r.stdout)
        self.assertIn("64512", r.stdout)
        self.daemon.replies["service list"] = {"ok": True, "version": 1, "result": {"services": [
            {"name": "web", "listen": "192.0.2.10:80", "protocol": "tcp", "snat": ["192.0.2.10"],
             "backends": 2, "backends_available": 0, "backends_draining": 0, "fail_open": True,
             "active_flows": 1, "flows_total": 2, "packets": 3, "bytes": 4}]}}
        r = self.lbctl("service", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("FAIL OPEN", r.stdout)
        self.daemon.replies["config show"] = {"ok": True, "version": 1, "result": {"toml": "[dataplane]\nworkers = 1\n"}}
        r = self.lbctl("config", "show")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "[dataplane]\nworkers = 1\n")
        self.assertEqual(self.last()["command"], "config show")

    def test_failed_request_exits_1(self):
        self.daemon.replies["backend add"] = {"ok": False, "version": 1,
                                              "error": 'backend "203.0.113.10:443" is already in service "web"'}
        for extra in ([], ["--json"]):
            r = self.lbctl(*extra, "backend", "add", "web", "203.0.113.10:443")
            self.assertEqual(r.returncode, 1)
            self.assertIn('lbctl: backend "203.0.113.10:443" is already in service "web"', r.stderr)
            self.assertEqual(r.stdout, "")

    def test_garbage_reply_exits_1(self):
        self.daemon.replies["stats"] = ["not", "an", "object"]
        r = self.lbctl("stats")
        self.assertEqual(r.returncode, 1)
        self.assertIn("malformed reply", r.stderr)


if __name__ == "__main__":
    LBCTL = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
