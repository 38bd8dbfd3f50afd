"""The `switch-vlan` target: the dev tap server's switch (appliance/openvpn/l2switch.py) with
vlan-tagging, three authenticated clients on two VLANs and client-to-client.

The world: a tls-crypt server, `vlan-tagging`, vlan-pvid 10; client 0 on the server's VLAN (no
vlan-pvid of its own), client 1 on VLAN 10 by its ccd, client 2 on VLAN 20. It lives across inputs
(MAC tables, the server side's MACs, broadcast buckets) and is rebuilt when a client is gone.

First byte: bits 0-1 who sends the frame (client 0, 1, 2 sealing it with its own key, or the TAP
device), bits 2-3 vlan-accept (all, tagged, untagged, all), bit 4 the MACs replaced by a few
(byte 1: which destination, byte 2: which source; the TAP's own among them), bit 5 the clock 31 s
on (MOVE_IDLE passes) with the timers, bit 6 learn-address on (a new MAC waits for its verdict),
bit 7 the verdicts on what the inputs before asked: yes (else no).

Oracles beyond "never raises": a frame is never sent back to its sender, never to a client of
another VLAN than the one it came in on (for the TAP device's frames: the VLAN its tag and
vlan-accept say, none when vlan-accept refuses it); what a client gets, opened with its key,
carries no VLAN tag but a priority one; what reaches the TAP device is on the sender's VLAN
(tagged with it, or untagged only for the server's VLAN under all/untagged); every MAC held is
held on its holder's VLAN, by a live client, within its quota; the learn-address and server-side
tables within their bounds.
"""
from __future__ import annotations

from appliance.openvpn import l2switch as sw

from .targets import _dispatcher, established_clients, living_world, settle

ADDRS = [("198.18.9.1", 41001), ("198.18.9.2", 41002), ("198.18.9.3", 41003)]
PVID = 10
CLIENT_VIDS = (None, 10, 20)
ACCEPT = ("all", "tagged", "untagged", "all")
MACS = [bytes([2, 0, 0, 0, 0, i]) for i in range(10)] + [b"\xff" * 6, bytes([1, 0, 0x5e, 0, 0, 1])]
TAP_MAC = MACS[9]


def _world():
    d = _dispatcher("tls-crypt")
    d.st.client_to_client = True
    d.st.layer2 = True
    d.st.max_routes_per_client = 4
    d.st.duplicate_cn = True           # every client holds the harness's one certificate
    d.st.vlan = ("all", PVID)
    clients = established_clients(d, ADDRS, "switch-vlan")
    for (_c, addr), vid in zip(clients, CLIENT_VIDS):
        d.by_addr[addr].vid = vid
    dp = sw.SwitchDataPath(d, lambda cipher, v2: 1400, True)
    dp.server_mac = TAP_MAC
    return dp, clients


def _vlan_of(i: int) -> int:
    return CLIENT_VIDS[i] or PVID


def _tap_vlan(p: bytes, accept: str) -> int | None:
    """The VLAN a frame from the TAP device is on, or None when it goes nowhere."""
    if len(p) < sw.ETH_HLEN:
        return None
    v = sw.tag_vid(p)
    if v is None:
        return None if accept == "tagged" else PVID
    if v < 0 or (v and accept == "untagged"):
        return None
    return v or PVID


def _check_tables(dp, now: float) -> None:
    macs = dp.macs
    by_id = {id(dp.d.by_addr[a]): i for i, a in enumerate(ADDRS) if a in dp.d.by_addr}
    for held in macs.held.values():
        if len(held) > macs.per_client:
            raise AssertionError("a client holds more MACs than its quota")
    if len(macs.owner) > macs.per_client * len(ADDRS):
        raise AssertionError(f"{len(macs.owner)} MACs held by {len(ADDRS)} clients")
    for mac, rec in macs.owner.items():
        if not rec.alive:
            raise AssertionError(f"MAC {mac.hex()} held by a client gone")
        i = by_id.get(id(rec))
        if len(mac) != 8 or i is None or int.from_bytes(mac[6:], "big") != _vlan_of(i):
            raise AssertionError(f"MAC {sw.mac_text(mac)} held off its holder's VLAN")
        if not sw.learnable(mac[:6]) or dp._servers(mac, now):
            raise AssertionError(f"MAC {sw.mac_text(mac)} should be no client's")
    if any(n > sw.LEARN_WAITING for n in dp._asking_of.values()):
        raise AssertionError("a client has more learn-address commands running than LEARN_WAITING")
    if len(dp.asking) > sw.LEARN_WAITING_ALL or len(dp.refused) > sw.LEARN_REFUSED_MAX \
            or len(dp.server_side) > sw.SERVER_SIDE_MAX:
        raise AssertionError("a learn-address or server-side table past its bound")


def make_switch_vlan():
    state: dict = {}
    world = living_world(state, _world, len(ADDRS))

    def one(data: bytes) -> None:
        if len(data) < 2:
            return
        dp, clients = world()
        _LAST["dp"] = dp
        d = dp.d
        sel, frame = data[0], bytearray(data[1:])
        who, accept = sel & 3, ACCEPT[(sel >> 2) & 3]
        dp.vlans.accept = accept
        now = state["t"]
        # learn-address: the verdicts on what the last inputs asked, then the hook on or off.
        asked = state.setdefault("asked", [])
        for rec, mac in asked:
            dp.learn_result(rec, mac, bool(sel & 0x80), now)
        asked.clear()
        dp.ask = (lambda rec, mac: asked.append((rec, mac)) or False) if sel & 0x40 else None
        dp.unlearn = dp.relearn = lambda rec, mac: None
        if sel & 0x10 and len(frame) >= 14:
            frame[0:6] = MACS[frame[0] % len(MACS)]
            frame[6:12] = MACS[frame[6] % len(MACS)]
        frame = bytes(frame)
        sends: dict = {}
        to_tap: list = []
        if who == 3:
            dp.from_tun([frame], now, sends)
            vlan = _tap_vlan(frame, accept)
            sender = None
        else:
            c, addr = clients[who]
            wire = c.encrypt(frame)
            if wire is None:
                return
            dp.from_link(bytes(wire), addr, now, to_tap.append, sends)      # must never raise
            vlan, sender = _vlan_of(who), addr
        if dp.failed:
            raise AssertionError(f"sealing raised: {dp.failed!r}")
        for addr, wires in sends.items():
            if addr == sender:
                raise AssertionError("a frame went back to its sender")
            i = ADDRS.index(addr)
            if vlan is None or _vlan_of(i) != vlan:
                raise AssertionError(f"a frame of VLAN {vlan} reached client {i} on VLAN {_vlan_of(i)}")
            c = clients[i][0]
            for w in wires:
                for got in c.receive(bytes(w), now):
                    if sw.client_tagged(got) or (sw.tag_vid(got) or 0) != 0:
                        raise AssertionError(f"client {i} got a VLAN-tagged frame {bytes(got)[:18].hex()}")
        for q in to_tap:
            tv = sw.tag_vid(q)
            if tv is None or tv == 0:
                if vlan != PVID or accept == "tagged":
                    raise AssertionError(f"a frame of VLAN {vlan} reached the TAP untagged ({accept})")
            elif tv != vlan or accept == "untagged":
                raise AssertionError(f"a frame of VLAN {vlan} reached the TAP tagged {tv} ({accept})")
        _check_tables(dp, now)
        settle(state, d, clients, 31.0 if sel & 0x20 else 0.0)
    return one


def _eth(dst: bytes, src: bytes, rest: bytes, tag: int | None = None) -> bytes:
    t = b"\x81\x00" + tag.to_bytes(2, "big") if tag is not None else b""
    return dst + src + t + rest


def seeds() -> list[bytes]:
    arp = b"\x08\x06" + bytes(28)
    ip = b"\x08\x00\x45\x00\x00\x1c" + bytes(22)
    out = []
    for who in range(3):
        src = MACS[who + 1]
        out.append(bytes((who,)) + _eth(b"\xff" * 6, src, arp))
        out.append(bytes((who,)) + _eth(MACS[(who + 1) % 3 + 1], src, ip))
        out.append(bytes((who | 4 * 2,)) + _eth(MACS[(who + 2) % 3 + 1], src, ip, tag=0))
    for accept in range(3):
        for tag in (None, 0, 10, 20, 30):
            out.append(bytes((3 | accept << 2,)) + _eth(MACS[2], MACS[7], ip, tag))
            out.append(bytes((3 | accept << 2,)) + _eth(b"\xff" * 6, MACS[8], arp, tag))
    out.append(bytes((0x33,)) + _eth(MACS[9], MACS[9], ip))
    for who in range(3):
        out.append(bytes((0x40 | who,)) + _eth(b"\xff" * 6, MACS[who + 4], arp))
        out.append(bytes((0xc0 | who,)) + _eth(MACS[who + 1], MACS[who + 4], ip))
    out.append(bytes((0x10,)) + bytes((9, 0, 0, 0, 0, 0, 3)) + bytes(5) + ip)
    return out


# ------------------------------------------------------------------ switch-tables (fuzz34)
SMALL_TABLES = 4      # SERVER_SIDE_MAX and LEARN_REFUSED_MAX while switch-tables runs (65,536 in use)


def make_switch_tables():
    """switch-vlan with the server side's MAC table and learn-address's refusals bounded at
    SMALL_TABLES instead of 65,536: the same trimming code (expired entries go, else all) reached
    with a dozen MACs rather than 65,536 frames; the bounds are the module's globals, read at
    each use, and restored after every input (measure runs every target in one process). The
    oracles are switch-vlan's, _check_tables's bounds the small ones; and a MAC the TAP device
    just sent from is the server side's (no client keeps or takes it) whatever was trimmed."""
    one = make_switch_vlan()

    def run(data: bytes) -> None:
        saved = sw.SERVER_SIDE_MAX, sw.LEARN_REFUSED_MAX
        sw.SERVER_SIDE_MAX = sw.LEARN_REFUSED_MAX = SMALL_TABLES
        try:
            one(data)
            if len(data) >= 15 and data[0] & 3 == 3:
                dp = _LAST.get("dp")
                src = bytes(data[7:13]) if not data[0] & 0x10 else MACS[data[7] % len(MACS)]
                vlan = _tap_vlan(bytes(data[1:]), ACCEPT[(data[0] >> 2) & 3])
                held = dp.macs.owner.get(src + vlan.to_bytes(2, "big")) if dp is not None and vlan else None
                if held is not None and held.alive and sw.learnable(src):
                    raise AssertionError(f"{sw.mac_text(src)} sent from the TAP device, and a client holds it")
        finally:
            sw.SERVER_SIDE_MAX, sw.LEARN_REFUSED_MAX = saved
    return run


_LAST: dict = {}


def seeds_switch_tables() -> list[bytes]:
    arp = b"\x08\x06" + bytes(28)
    ip = b"\x08\x00\x45\x00\x00\x1c" + bytes(22)
    out = seeds()[:6]
    for i in range(9):                               # the TAP side's table past its bound
        out.append(bytes((3,)) + _eth(b"\xff" * 6, MACS[i], arp))
    for rnd in range(3):                             # learn-address refusals past theirs
        for who in range(3):
            for i in range(3):
                out.append(bytes((0x40 | who,)) + _eth(b"\xff" * 6, MACS[3 * rnd + i], arp))
    out.append(bytes((0x20 | 3,)) + _eth(b"\xff" * 6, MACS[5], arp))     # time: they expire
    for i in range(6):
        out.append(bytes((0x40 | i % 3,)) + _eth(MACS[9], MACS[i], ip))
        out.append(bytes((3,)) + _eth(b"\xff" * 6, MACS[i], arp))
    return out
