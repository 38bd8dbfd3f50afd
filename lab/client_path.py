"""Our client's upload path per MB, in memory: what a sending client does between system calls.

Two parts, each counted per MB of TCP payload sent (1448-byte segments, as iperf3's stream
through the tunnel carries):
- send: TSO super-packets of 45 segments (what the TUN hands over) cut by offload.gso_split, MSS
  clamped and sealed by ClientDataPath.seal_batch, cut into GSO runs (transport/udp.py `_runs`);
- ACKs: the server's answers, one sealed inner TCP ACK per datagram (OpenVPN's server sends no GSO
  runs; ~200 a MB in lab.bench_tunnel --wire), opened in link batches of 32 and queued to a TUN
  stand-in, as ClientGateway._on_link_read does in the measured tree (one open_batch call, or
  one open per datagram in a tree without it).
No I/O: system calls and the kernel's share are not here (lab.bench_tunnel measures those).

Why instructions: CPU time moves by 1.5-2x with the shared host's load, while `valgrind
--tool=callgrind` counts the same instructions for the same code whatever else runs (as
lab.server_path). `--callgrind` runs each tree with and without the measured work and prints the
difference; without it, CPU time (process time, several rounds, interleaved).

    python -m lab.client_path [--mb 20] [--acks-per-mb 200] [--rounds 3] [--callgrind] [--baseline DIR]

`--baseline DIR`: another checkout's root holding `appliance/` (`git archive <commit> | tar -x -C
DIR`, its native modules built or copied), measured the same way, interleaved, for a before/after.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Runs in a child: argv = root mb acks_per_mb measure(0/1) part(send|acks). Prints "cpu_us_per_mb".
_CHILD = r"""
import socket, struct, sys, time
root, mb, acks_mb, measure, part = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5]
sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in (getattr(f, '__module__', '') or type(f).__module__)]
sys.path.insert(0, root)
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU
from appliance.certs import issue
from appliance.openvpn import wrapping
from appliance.openvpn.datapath import ClientDataPath
from appliance.openvpn.server import AddressPool, ServerDispatcher, ServerSettings
from appliance.openvpn.session import Role, Session, SessionConfig
from appliance.openvpn.tls import TlsSettings
from appliance.tun import offload
from appliance.transport import udp
pem = lambda c: c.public_bytes(serialization.Encoding.PEM)
kpem = lambda k: k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
ca = issue("CA", None, None); srv = issue("server", ca, EKU.SERVER_AUTH); cli = issue("client", ca, EKU.CLIENT_AUTH)
stls = TlsSettings(pem(ca[0]), pem(srv[0]), kpem(srv[1]), True, remote_cert_tls="client")
st = ServerSettings(session_config=lambda pid: SessionConfig(Role.SERVER, stls, None, peer_id=pid, ping=10, ping_restart=60,
                                                             data_ciphers=["AES-256-GCM"]),
                    protection="none", pool=AddressPool("198.19.0.0", "255.255.255.0", "subnet"), push=[])
d = ServerDispatcher(st, 0.0)
c = Session(SessionConfig(Role.CLIENT, TlsSettings(pem(ca[0]), pem(cli[0]), kpem(cli[1]), False, remote_cert_tls="server"),
                          wrapping.PlainWrapper, data_ciphers=["AES-256-GCM"]), 0.0)
c.start(0.0)
addr = ("198.18.0.3", 40000)
for _ in range(60):
    moved = 0
    for p in c.take_outgoing():
        d.receive(p, addr, 0.5); moved += 1
    for p, a in d.take_outgoing():
        c.receive(p, 0.5); moved += 1
    if not moved:
        break
assert c.established and d.clients and d.clients[0].session.established, "in-memory handshake failed"
srs = d.clients[0].session
src, dst = socket.inet_aton(c.pushed.ifconfig[0]), socket.inet_aton("198.19.0.1")
MSS, SEGS = 1448, 45
dp = ClientDataPath(c, lambda cipher, v2: 1400)
# TCP with timestamps (NOP NOP TS), as Linux sends: 20 + 20 + 12 header bytes
def tcp(sport, dport, seq, ack, flags, payload):
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x80, flags, 502, 0, 0) + b"\x01\x01\x08\x0a" + bytes(8) + payload
def ip(s, t, l4):
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, 64, 6, 0, s, t) + l4
n_bytes = int(mb * 1e6) if measure else 0
if part == "send":
    super_packets = -(-n_bytes // (MSS * SEGS))
    sp = ip(src, dst, tcp(40000, 5201, 1, 1, 0x18, bytes(MSS * SEGS)))
    # as the TUN hands it over: CHECKSUM_PARTIAL, the pseudo-header sum in the TCP checksum field
    l4len = len(sp) - 20
    pseudo = offload.ones_sum(sp[12:20] + struct.pack("!HH", 6, l4len))
    sp = bytearray(sp); struct.pack_into("!H", sp, 36, pseudo or 0xFFFF)
    split, runs, seal = offload.gso_split, udp._runs, dp.seal_batch
    pid0 = c.send_key.send_pid
    t = time.process_time()
    for i in range(super_packets):
        wire = seal(split(sp, offload.GSO_TCPV4, MSS, 20), 1.0)
        for _r in runs(wire):
            pass
    dt = time.process_time() - t
    assert c.send_key.send_pid - pid0 == super_packets * SEGS
    print(f"{dt / max(mb if measure else 1, 1e-9) * 1e6:.1f}")
    sys.exit(0)
n_acks = int(mb * acks_mb) if measure else 0
acks = [bytes(srs.encrypt(ip(dst, src, tcp(5201, 40000, 1, 1 + i * 2 * MSS, 0x10, b"")))) for i in range(n_acks)]
class Tun:
    def __init__(self): self.q = []
    def queue(self, p): self.q.append(bytes(p))
    def queue_many(self, ps): self.q += map(bytes, ps)
tun = Tun()
batched = hasattr(dp, "open_batch")
t = time.process_time()
for b in range(0, n_acks, 32):
    batch = acks[b:b + 32]
    c.begin_batch()
    if batched:
        pts = dp.open_batch(batch, 1.0)
        if pts:
            tun.queue_many(pts)
    else:
        open_ = dp.open
        for p in batch:
            pts = open_(p, 1.0)
            if pts:
                for pt in pts:
                    tun.queue(pt)
    c.end_batch(1.0)
    tun.q.clear()
dt = time.process_time() - t
assert c.data_authenticated >= n_acks
print(f"{dt / max(mb if measure else 1, 1e-9) * 1e6:.1f}")
"""


def _child(root: str, mb: float, acks: int, measure: bool, callgrind: bool, part: str) -> tuple[float, int | None]:
    """-> (CPU us per MB, instructions in the whole run or None)."""
    cmd = [sys.executable, "-c", _CHILD, root, str(mb), str(acks), "1" if measure else "0", part]
    instr = None
    with tempfile.TemporaryDirectory() as tmp:
        if callgrind:
            cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out"] + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=tmp)
        if r.returncode != 0:
            raise RuntimeError(f"child failed ({root}):\n{r.stderr[-3000:]}")
        if callgrind:
            m = re.search(r"Collected : (\d+)", r.stderr)
            if m is None:
                raise RuntimeError(f"no instruction count from callgrind:\n{r.stderr[-2000:]}")
            instr = int(m.group(1))
    return float(r.stdout.strip().splitlines()[-1]), instr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=None, help="MB per run (default 20; 2 with --callgrind)")
    ap.add_argument("--acks-per-mb", type=int, default=200, help="server ACK datagrams per MB sent")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--callgrind", action="store_true", help="count instructions (valgrind), not CPU time")
    ap.add_argument("--baseline", help="another checkout's root (holding appliance/), measured the same way")
    a = ap.parse_args(argv)
    if a.callgrind and shutil.which("valgrind") is None:
        print("--callgrind needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    mb = a.mb or (2.0 if a.callgrind else 20.0)
    trees = [("this tree", str(REPO))] + ([("baseline", os.path.abspath(a.baseline))] if a.baseline else [])
    what = "instructions per MB (callgrind)" if a.callgrind else "CPU us per MB"
    print(f"client upload path in memory, AES-256-GCM, {mb:g} MB of 1448-byte segments in TSO super-packets "
          f"of 45; {a.acks_per_mb} server ACK datagrams per MB in link batches of 32; {what}")
    rounds = 1 if a.callgrind else a.rounds
    for r in range(rounds):
        for name, root in trees:
            parts = []
            for part in ("send", "acks"):
                cpu, total = _child(root, mb, a.acks_per_mb, True, a.callgrind, part)
                if a.callgrind:
                    _, base = _child(root, mb, a.acks_per_mb, False, True, part)
                    assert total is not None and base is not None
                    parts.append((total - base) / mb)
                else:
                    parts.append(cpu)
            unit = "instructions" if a.callgrind else "us"
            fmt = "{:12,.0f}" if a.callgrind else "{:8.1f}"
            print(f"  round {r + 1}: {name:10} send {fmt.format(parts[0])}, ACKs {fmt.format(parts[1])}, "
                  f"both {fmt.format(sum(parts))} {unit} per MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
