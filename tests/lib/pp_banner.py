"""A server-speaks-first backend behind a PROXY protocol v2 sender, for the
end-to-end tier: it reads the PROXY v2 header (and nothing else) from each
new connection, greets with "220 <client address>:<port>\\r\\n" at once,
without waiting for the client, then answers one line with "250 <line>"
and closes. A connection whose first bytes are not a valid v2 header gets
"500 bad proxy header <hex>\\r\\n". Runs until killed (by the test, by pid).

    python3 -m tests.lib.pp_banner IP PORT
"""

from __future__ import annotations

import socket
import struct
import sys
import threading

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def read_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def serve(conn: socket.socket) -> None:
    with conn:
        conn.settimeout(20)
        try:
            head = read_exact(conn, 16)
            length = struct.unpack("!H", head[14:16])[0]
            body = read_exact(conn, length)
            if head[:12] != SIGNATURE or head[12] != 0x21 or head[13] != 0x11 or length < 12:
                conn.sendall(b"500 bad proxy header " + (head + body).hex().encode() + b"\r\n")
                return
            src = socket.inet_ntoa(body[0:4])
            sport = struct.unpack("!H", body[8:10])[0]
            conn.sendall(f"220 {src}:{sport}\r\n".encode())
            line = b""
            while not line.endswith(b"\n"):
                chunk = conn.recv(1024)
                if not chunk:
                    return
                line += chunk
            conn.sendall(b"250 " + line)
        except (OSError, EOFError):
            return


def main() -> None:
    ip, port = sys.argv[1], int(sys.argv[2])
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((ip, port))
    ls.listen(256)
    print("ready", flush=True)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
