"""The server's receive path per data packet, in memory: one client's sealed TCP segments through
ServerDataPath.from_link (dispatch, open, replay window, source check, route) into the TUN's
GroBatch (merging on the local-delivery path, as a bulk upload to the server's own address takes),
a batch taken every 32 packets as the pump flushes. No I/O, so it isolates the Python the
receiving server spends per packet from system calls and the kernel's share. `--send`: the
other way, the server's download path -- TUN batches of 32 TCP segments interleaved among three
clients through ServerDataPath.from_tun (route, clamp, seal per client). `--send --tap`: the same
as Ethernet frames (each segment behind a 14-byte header to its client's MAC) through the layer-2
server's SwitchDataPath.from_tun (the switch's checks, the frame clamp, seal per client).

Why instructions: on this shared host CPU time per packet moves run to run by 1.5-2x with other
load and with the host itself (README, issue 11), while `valgrind --tool=callgrind` counts the same
instructions for the same code and input whatever else runs. `--callgrind` runs each tree twice
under it (with and without the measured packets) and prints the difference per packet; without
it, CPU time per packet (process time, several rounds).

    python -m lab.server_path [--packets 20000] [--rounds 3] [--callgrind] [--baseline DIR] [--send [--tap]]

`--baseline DIR`: another checkout's `appliance` (`git archive <commit> appliance | tar -x -C DIR`)
measured the same way, interleaved, for a before/after.
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

# Runs in a child: argv = root packets measure(0/1) send(0/1) tap(0/1). Prints "cpu_us_per_packet".
_CHILD = r"""
import socket, struct, sys, time
root, n, measure, send, tap = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4] == "1", sys.argv[5] == "1"
sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in (getattr(f, '__module__', '') or type(f).__module__)]
sys.path.insert(0, root)
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU
from appliance.certs import issue
from appliance.openvpn import wrapping
from appliance.openvpn.datapath import ServerDataPath
from appliance.openvpn.server import AddressPool, ServerDispatcher, ServerSettings
from appliance.openvpn.session import Role, Session, SessionConfig
from appliance.openvpn.tls import TlsSettings
from appliance.tun.flow_owner import FlowOwners
from appliance.tun.offload import GroBatch
pem = lambda c: c.public_bytes(serialization.Encoding.PEM)
kpem = lambda k: k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
ca = issue("CA", None, None); srv = issue("server", ca, EKU.SERVER_AUTH)
stls = TlsSettings(pem(ca[0]), pem(srv[0]), kpem(srv[1]), True, remote_cert_tls="client")
st = ServerSettings(session_config=lambda pid: SessionConfig(Role.SERVER, stls, None, peer_id=pid, ping=10, ping_restart=60,
                                                             data_ciphers=["AES-256-GCM"]),
                    protection="none", pool=AddressPool("198.19.0.0", "255.255.255.0", "subnet"), push=[])
d = ServerDispatcher(st, 0.0)
clients = []
for i in range(3 if send else 1):
    cli = issue(f"client{i}", ca, EKU.CLIENT_AUTH)
    c = Session(SessionConfig(Role.CLIENT, TlsSettings(pem(ca[0]), pem(cli[0]), kpem(cli[1]), False, remote_cert_tls="server"),
                              wrapping.PlainWrapper, data_ciphers=["AES-256-GCM"]), 0.0)
    c.start(0.0)
    clients.append((c, ("198.18.0.%d" % (3 + i), 40000)))
for _ in range(60):
    moved = 0
    for c, addr in clients:
        for p in c.take_outgoing():
            d.receive(p, addr, 0.5); moved += 1
    for p, a in d.take_outgoing():
        for c, addr in clients:
            if a == addr:
                c.receive(p, 0.5); moved += 1
    if not moved:
        break
assert all(c.established for c, _ in clients) and len(d.clients) == len(clients) and \
    all(r.session.established for r in d.clients), "in-memory handshake failed"
c, addr = clients[0]
src, dst = socket.inet_aton(c.pushed.ifconfig[0]), socket.inet_aton("198.19.0.1")
MSS = 1348
def seg(seq):
    tcp = struct.pack("!HHIIBBHHH", 40000, 5201, seq, 1, 0x50, 0x10, 512, 0, 0) + bytes(MSS)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, src, dst) + tcp
if send:
    recs = [d.by_addr[a] for _c, a in clients]
    def down(i):
        rec = recs[i % 3]
        tcp = struct.pack("!HHIIBBHHH", 5201, 40000, 1 + i * MSS, 1, 0x50, 0x10, 512, 0, 0) + bytes(MSS)
        return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, dst, rec.vaddr_packed) + tcp
    tun = [bytearray(down(i)) for i in range(32)]
    dp = ServerDataPath(d, lambda cipher, v2: 1400, True)
    if tap:
        from appliance.openvpn.l2switch import SwitchDataPath
        dp = SwitchDataPath(d, lambda cipher, v2: 1400, True)
        macs = [bytes([2, 0, 0, 0, 0, 10 + i]) for i in range(3)]
        for mac, rec in zip(macs, recs):
            assert dp.macs.learn(mac, rec, 0.0)
        tun = [bytearray(macs[i % 3] + bytes([2, 0, 0, 0, 0, 1]) + b"\x08\x00" + down(i)) for i in range(32)]
    rounds = n // 32 if measure else 0
    pids = [r.session.send_key.send_pid for r in recs]
    ft = dp.from_tun
    t = time.process_time()
    for _ in range(rounds):
        sends = {}
        ft(tun, 1.0, sends)
    dt = time.process_time() - t
    if measure:
        assert [r.session.send_key.send_pid - p for r, p in zip(recs, pids)] == [rounds * len(tun[i::3]) for i in range(3)]
    print(f"{dt / max(rounds * 32, 1) * 1e6:.3f}")
    sys.exit(0)
wires = [bytes(c.encrypt(seg(1 + i * MSS))) for i in range(n)]
dp = ServerDataPath(d, lambda cipher, v2: None, True)
fo = FlowOwners()
fo.cache[src + dst + struct.pack("!HH", 40000, 5201)] = (True, float("inf"))   # owned: as the bench's iperf3 flow
batch = GroBatch(local=frozenset([dst]), owner=fo.owned)
sends = {}
frm, add = dp.from_link, batch.add
if not measure:
    wires = []
t = time.process_time()
for i, w in enumerate(wires):
    frm(w, addr, 1.0, add, sends)
    if i & 31 == 31:
        batch.take()
dt = time.process_time() - t
if measure:
    assert d.clients[0].session.data_authenticated == n and not d.stats.get("inner packet with a source the client does not own")
print(f"{dt / max(n, 1) * 1e6:.3f}")
"""


def _child(root: str, packets: int, measure: bool, callgrind: bool, send: bool = False,
           tap: bool = False) -> tuple[float, int | None]:
    """-> (CPU us per packet, instructions in the whole run or None)."""
    cmd = [sys.executable, "-c", _CHILD, root, str(packets), "1" if measure else "0", "1" if send else "0",
           "1" if tap else "0"]
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
    ap.add_argument("--packets", type=int, default=None, help="per run (default 20000; 2000 with --callgrind)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--callgrind", action="store_true", help="count instructions (valgrind), not CPU time")
    ap.add_argument("--baseline", help="another checkout's root (holding appliance/), measured the same way")
    ap.add_argument("--send", action="store_true", help="the download path (from_tun, three clients), not the receive path")
    ap.add_argument("--tap", action="store_true", help="with --send: Ethernet frames through the layer-2 server's switch")
    a = ap.parse_args(argv)
    if a.tap and not a.send:
        ap.error("--tap goes with --send (the layer-2 download path)")
    if a.callgrind and shutil.which("valgrind") is None:
        print("--callgrind needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    n = a.packets or (2000 if a.callgrind else 20000)
    if a.send:
        n = max(32, n - n % 32)         # whole TUN batches, so the per-packet division is exact
    trees = [("this tree", str(REPO))] + ([("baseline", os.path.abspath(a.baseline))] if a.baseline else [])
    what = "instructions per packet (callgrind)" if a.callgrind else "CPU us per packet"
    if a.send:
        print(f"server send path in memory: {n} AES-256-GCM TCP segments of 1400 bytes from the "
              f"{'TAP (Ethernet frames, dev tap)' if a.tap else 'TUN'} in batches of 32, "
              f"three clients interleaved, {what}")
    else:
        print(f"server receive path in memory: {n} AES-256-GCM TCP segments of 1400 bytes, one client, {what}")
    rounds = 1 if a.callgrind else a.rounds
    for r in range(rounds):
        for name, root in trees:
            cpu, total = _child(root, n, True, a.callgrind, a.send, a.tap)
            if a.callgrind:
                _, base = _child(root, n, False, True, a.send, a.tap)
                assert total is not None and base is not None
                print(f"  {name:10} {(total - base) / n:10,.0f} instructions per packet")
            else:
                print(f"  round {r + 1}: {name:10} {cpu:8.2f} us per packet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
