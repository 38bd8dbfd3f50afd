"""A malicious (or broken) HTTP proxy for tests/interop/test_http_proxy_vs_openvpn.py, run in a
namespace: `python3 hostile_http_proxy.py LISTEN_IP PORT SERVER_IP SERVER_PORT MODE [MODE ...]`.
The n-th connection gets the n-th MODE (the last one repeats). Each connection's mode and the
request it read are printed (flushed) so the test can see what the client sent.

Modes: silent (reads the request, answers nothing), slow (an answer's first line, then one
header byte every 0.3 s, never ending), endless (header lines as fast as the socket takes them,
never ending), garbage (bytes that are not HTTP), 407, 502, close (closes after the request),
half (half a status line, then closes), glued (200, with a junk frame of a valid length in the
same write, then relays), ok (200, then relays to SERVER_IP:SERVER_PORT).
"""
from __future__ import annotations

import socket
import sys
import threading
import time

JUNK_FRAME = b"\x00\x08" + bytes([9 << 3]) + b"\x00\x00\x01" + b"JUNK"   # a P_DATA_V2 for no key


def relay(a: socket.socket, b: socket.socket) -> None:
    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    threading.Thread(target=pump, args=(b, a), daemon=True).start()
    pump(a, b)


def serve(conn: socket.socket, n: int, mode: str, server: tuple[str, int]) -> None:
    buf = b""
    conn.settimeout(30)
    try:
        while b"\r\n\r\n" not in buf:
            data = conn.recv(4096)
            if not data:
                print(f"conn {n} {mode}: closed before the request ended", flush=True)
                return
            buf += data
        print(f"conn {n} {mode}: request {buf!r}", flush=True)
        if mode == "silent":
            conn.settimeout(None)
            while conn.recv(4096):
                pass
        elif mode == "slow":
            conn.sendall(b"HTTP/1.0 200 Connection established\r\n")
            while True:
                conn.sendall(b"X")
                time.sleep(0.3)
        elif mode == "endless":
            conn.sendall(b"HTTP/1.0 200 Connection established\r\n")
            while True:
                conn.sendall(b"X-Pad: " + b"a" * 1000 + b"\r\n")
        elif mode == "garbage":
            conn.sendall(b"\x00\x0e\x38" + bytes(range(256)))
            time.sleep(30)
        elif mode == "407":
            conn.sendall(b"HTTP/1.0 407 Proxy Authentication Required\r\n"
                         b"Proxy-Authenticate: Basic realm=\"hostile\"\r\n\r\n")
        elif mode == "502":
            conn.sendall(b"HTTP/1.1 502 Bad \x1b[31mGateway\r\nContent-Length: 0\r\n\r\n")
        elif mode == "close":
            pass
        elif mode == "half":
            conn.sendall(b"HTTP/1.0 20")
        elif mode in ("glued", "ok"):
            up = socket.create_connection(server, timeout=10)
            up.settimeout(None)
            conn.settimeout(None)
            conn.sendall(b"HTTP/1.0 200 Connection established\r\nProxy-agent: hostile\r\n\r\n"
                         + (JUNK_FRAME if mode == "glued" else b""))
            relay(conn, up)
        print(f"conn {n} {mode}: done", flush=True)
    except OSError as e:
        print(f"conn {n} {mode}: {e}", flush=True)
    finally:
        conn.close()


def main() -> None:
    ip, port, sip, sport, *modes = sys.argv[1:]
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((ip, int(port)))
    lst.listen(16)
    print(f"listening on {ip}:{port}", flush=True)
    n = 0
    while True:
        conn, _ = lst.accept()
        mode = modes[min(n, len(modes) - 1)]
        threading.Thread(target=serve, args=(conn, n, mode, (sip, int(sport))), daemon=True).start()
        n += 1


if __name__ == "__main__":
    main()
