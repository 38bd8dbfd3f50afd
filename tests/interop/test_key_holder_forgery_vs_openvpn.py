"""A holder of the shared tls-crypt key forges a control packet into Debian's 2.6.14 client's session
with our server: the client's tunnel goes on, and renegotiations after it succeed (fuzz45's
finding, forge48's fix: Session._contain_tls_failure; the cases in memory:
tests/gateway/test_tls_crypt_holder_forgery.py).

The forger (FORGER below, our own wrapping module) runs in the client's namespace, as anyone on
the client's path or LAN: it reads the client's datagrams to the server off the wire from the
start (AF_PACKET), and when told, wraps one P_CONTROL_V1 in the client's session -- the ids
read through the key, the next message id of the newest key, the packet id after the client's
newest -- whose payload is no TLS record, and sends it from the client's address and port (a
raw socket). Before, our server's TLS failed on it and the session ended: the client's pings
went unanswered until its ping-restart (30 s here) brought it back with a new connection.
"""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import CLI_IP, SRV_IP, TUN_SERVER_IP, Lab
from lab.tools import REPO

# Arguments: the static key file, the trigger file (forge once it exists), the deadline (s).
FORGER = r"""
import os, socket, struct, sys, time
sys.path.insert(0, REPO)
from appliance.openvpn import packet, wrapping
from appliance.openvpn.keyfiles import parse_static_key

key = parse_static_key(open(sys.argv[1]).read())
trigger, deadline = sys.argv[2], time.monotonic() + float(sys.argv[3])
opener = wrapping.TlsCryptWrapper(key, True)          # the server's end opens the client's packets
# ETH_P_ALL: a socket of one protocol (ETH_P_IP) sees no outgoing packets (dev_queue_xmit_nit)
sniff = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0003))
sniff.settimeout(0.2)
print("listening", flush=True)
sid = sport = None
top, newest, pid_top, epoch = {}, None, 0, None
seen = [0, 0, 0]                                     # IPv4 datagrams, the client's to the server, control
while time.monotonic() < deadline:
    try:
        ip, where = sniff.recvfrom(65535)
        if where[1] != 0x0800:
            ip = None
    except socket.timeout:
        ip = None
    if ip is not None:
        seen[0] += 1
    if ip is not None and ip[9] == 17 and ip[12:16] == socket.inet_aton(CLI_IP) \
            and ip[16:20] == socket.inet_aton(SRV_IP):
        seen[1] += 1
        h = (ip[0] & 15) * 4
        sp, dp = struct.unpack("!HH", ip[h:h + 4])
        pkt = ip[h + 8:]
        if dp == 1194 and pkt and pkt[0] >> 3 not in (6, 9):          # control, not data
            seen[2] += 1
            op, psid, raw = opener.unwrap_untrusted(pkt, 0.0, check_replay=False)
            if psid != sid:
                sid, top, newest, pid_top, epoch = psid, {}, None, 0, None
            sport = sp
            pid, t = struct.unpack("!II", pkt[9:17])
            if epoch is None or t > epoch or (t == epoch and pid > pid_top):
                pid_top, epoch = pid, t
            cb = packet.decode_body_untrusted(op >> 3, raw)
            if cb.msg_id is not None:
                top[op & 7] = max(top.get(op & 7, -1), cb.msg_id)
                newest = op & 7
    if os.path.exists(trigger) and newest is not None:
        forger = wrapping.TlsCryptWrapper(key, False)
        forger.send_time, forger.send_pid = epoch, pid_top
        junk = bytes.fromhex("1703030020") + bytes(32)       # a TLS record that is no record of the session
        body = packet.encode_body([], None, top[newest] + 1, junk)
        dgram = forger.wrap((4 << 3) | newest, sid, body, 0.0)
        raw_sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
        raw_sock.bind((CLI_IP, 0))
        raw_sock.sendto(struct.pack("!HHHH", sport, 1194, 8 + len(dgram), 0) + dgram, (SRV_IP, 0))
        print(f"forged key {newest} message {top[newest] + 1} packet id {pid_top + 1} from port {sport}", flush=True)
        sys.exit(0)
print("no forgery: trigger", os.path.exists(trigger), "seen", seen, flush=True)
sys.exit(1)
""".replace("REPO", repr(str(REPO))).replace("CLI_IP", repr(CLI_IP)).replace("SRV_IP", repr(SRV_IP))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def _pings_answered(lab, count: int = 3, within: float = 15) -> bool:
    """`count` pings through the tunnel answered in one round (rounds retried until `within`)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        if lab.ping(lab.cli, TUN_SERVER_IP, count=count, interval=0.2, timeout=5) == count:
            return True
    return False


def test_a_forged_control_packet_leaves_debians_client_connected(lab, procs):
    srv = lab.ours(lab.srv, server_config(lab.pki, "udp", protection="tls-crypt"), "oursrv-forge",
                   pattern=r"listening on UDP")
    procs.append(srv)
    trigger = lab.tmp / "forge-now"
    forger = subprocess.Popen(["ip", "netns", "exec", lab.cli.name, sys.executable, "-c", FORGER,
                               str(lab.pki.dir / "static.key"), str(trigger), "40"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert forger.stdout.readline().strip() == "listening"
        # reneg-sec 8 (2.6's client: a random 70-100% of it): its own renegotiation after ours.
        cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", protection="tls-crypt", extra="reneg-sec 8\n"),
                          "ovpncli-forge", wait=30)
        procs.append(cli)
        assert _pings_answered(lab), "no tunnel before the forgery"
        trigger.write_text("")
        out, _ = forger.communicate(timeout=45)
        assert forger.returncode == 0 and "forged key" in out, out
    finally:
        if forger.poll() is None:
            forger.kill()
            forger.wait(5)
    # The tunnel goes on; the forgery did reach TLS (ours said so).
    assert _pings_answered(lab, within=10), "the client's tunnel ended with the forgery:\n" + srv.log()[-3000:]
    assert srv.wait_for("TLS error on key", timeout=10), srv.log()[-3000:]
    # Our server's renegotiation replacing the broken key, then the client's own at its reneg-sec.
    assert srv.wait_count("key renegotiated", 2, timeout=20), srv.log()[-3000:]
    assert _pings_answered(lab), srv.log()[-3000:]
    assert cli.alive() and cli.log().count("Initialization Sequence Completed") == 1, cli.log()[-3000:]
    assert "disconnected" not in srv.log(), srv.log()[-3000:]
