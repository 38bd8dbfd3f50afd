"""The fuzz targets: every decoder and entry point that takes bytes from a peer, and the config parsers.

Each target is `make()` -> `one(data: bytes)`. `one` catches, at the call that documents it, the one
error the contract allows there: BadPacket from decoders of peer bytes (`*_untrusted`,
StreamFramer.feed), ConfigError from the config parsers. The engine's entry points
(`Session.receive`, `ServerDispatcher.receive`) and the DHCP decoder are documented never to raise
for peer input, so nothing is caught around them. Any exception escaping `one` is a finding (so is
a hang, which the runner detects).

Targets whose bytes would almost never get past authentication take a first "mode" byte: in the
raw mode the bytes go to the wire as they are (exercising the checks before authentication); in
the other modes the harness wraps or seals the fuzzed clear form with the right key, the way a
peer that holds the key (an authenticated client, a malicious server) could, so the fuzzer
reaches the parsing behind the authentication.

The two "deep" targets (key-method-server, push-client) run a fresh in-memory handshake for every
input and replace one message of it with the fuzzed bytes; they use a few private Session methods
to do that (noted where), since there is no public hook for "send these bytes in place of the key
method message".
"""
from __future__ import annotations

import importlib
import ipaddress
from dataclasses import dataclass
from typing import Callable

from appliance.openvpn import keyfiles, wrapping
from appliance.openvpn.errors import BadPacket, ConfigError
from appliance.openvpn.framing import StreamFramer
from appliance.openvpn.keymethod import (KeyMethod2, decode_key_method_2_untrusted, parse_push_reply_untrusted,
                                         split_text_messages_untrusted)
from appliance.openvpn.opcodes import Op
from appliance.openvpn.packet import decode_body_untrusted, encode_body, parse_early_neg_tlvs_untrusted
from appliance.openvpn.session import Role, Session, SessionConfig
from appliance.openvpn.tls import TlsSettings

from . import harness as h

MAX_LEN = 4096          # default -max_len: bigger than any UDP packet we accept in practice


@dataclass
class Target:
    name: str
    make: Callable[[], Callable[[bytes], None]]
    max_len: int = MAX_LEN
    doc: str = ""
    weight: float = 1.0     # share of the run's time, relative to the others


# ------------------------------------------------------------------ control packets and dispatcher
def _dispatcher(protection: str, tcp: bool = False):
    from appliance.openvpn.server import AddressPool, ServerDispatcher, ServerSettings
    p = h.pki()
    stls = TlsSettings(p["ca"], *p["server"], True, remote_cert_tls="client")
    st = ServerSettings(
        session_config=lambda pid: SessionConfig(Role.SERVER, stls, None, peer_id=pid, ping=10, ping_restart=60,
                                                 random_bytes=h.Counter("dispatcher-session")),
        protection="none" if protection == "plain" else protection, static_key=h.STATIC_KEY, key_direction=0,
        auth_digest="SHA256", v2_server_key=h.V2_SERVER_KEY,
        pool=AddressPool("198.19.0.0", "255.255.255.248", "subnet"),
        push=["route 198.18.100.0 255.255.255.0"], tcp=tcp, random_bytes=h.Counter("dispatcher"))
    return ServerDispatcher(st, 0.0)


def _server_unwrap(protection: str, packet: bytes) -> None:
    """The server's unwrap of one client packet, then the body and TLV decoders behind it."""
    if protection == "tls-crypt-v2":
        packet, wkc = wrapping.split_wkc_untrusted(packet)
        kc, mtype, meta = keyfiles.unwrap_client_key_untrusted(wkc, h.V2_SERVER_KEY)
        w = wrapping.TlsCryptWrapper(kc, True)
    else:
        w = h.server_wrapper(protection)
    op_b, _sid, body = w.unwrap_untrusted(packet, 1.0)
    op = op_b >> 3
    cb = decode_body_untrusted(op, body)
    if cb.payload and op == Op.CONTROL_HARD_RESET_SERVER_V2:
        parse_early_neg_tlvs_untrusted(cb.payload)


ADDR = ("198.18.7.7", 40000)


def make_control(protection: str):
    def one(data: bytes) -> None:
        if not data:
            return
        mode, rest = data[0] % 3, data[1:]
        d = _dispatcher(protection)
        if mode == 0:
            packet = rest
        else:
            # The fuzzed clear form `op | sid(8) | body`, wrapped the way a key holder would.
            rest = rest.ljust(10, b"\0")
            op_b, sid, body = rest[0], rest[1:9], rest[9:]
            if mode == 2 and body and 0 < body[0] <= 8 and len(body) >= 1 + 4 * body[0] + 8:
                # Put the right cookie where the ack's peer session id goes: the third-packet path.
                n = body[0]
                cookie = d.cookies.session_id(ADDR, sid, 1.0)
                body = body[:1 + 4 * n] + cookie + body[1 + 4 * n + 8:]
            packet = h.client_wrapper(protection).wrap(op_b, sid, body, 1.0)
        try:
            _server_unwrap(protection, packet)
        except BadPacket:
            pass
        # The dispatcher's first-packet path, fresh state: must never raise.
        d.receive(packet, ADDR, 1.0)
        d.take_outgoing()
        d.handle_timer(2.0)
        d.take_outgoing()
    return one


# ------------------------------------------------------------------ tls-crypt-v2 WKc
def make_wkc():
    from appliance.openvpn.server import V2Key

    def one(data: bytes) -> None:
        if not data:
            return
        mode, rest = data[0] & 1, data[1:]
        if mode == 0:
            wkc = rest
            try:
                wrapping.split_wkc_untrusted(b"\x50" + bytes(60) + wkc)
            except BadPacket:
                pass
        else:
            # A WKc that authenticates (a holder of the server key made it): fuzz Kc, type, metadata.
            rest = rest.ljust(257, b"\0")
            meta = rest[257:257 + keyfiles.METADATA_MAX_LEN - 1]
            try:
                wkc = keyfiles.wrap_client_key(rest[:256], h.V2_SERVER_KEY, meta, rest[256])
            except ConfigError:
                return
        try:
            kc, mtype, meta = keyfiles.unwrap_client_key_untrusted(wkc, h.V2_SERVER_KEY)
        except BadPacket:
            return
        V2Key(kc, mtype, meta).describe()
        wrapping.TlsCryptWrapper(kc, True)
    return one


# ------------------------------------------------------------------ key-method-2, peer-info, push
def make_key_method():
    def one(data: bytes) -> None:
        if not data:
            return
        try:
            km = decode_key_method_2_untrusted(data[1:], from_client=bool(data[0] & 1))
        except BadPacket:
            return
        km.peer_info_dict()
    return one


FILTERS = [("ignore", "route 10."), ("reject", "redirect-gateway"), ("accept", "route")]


def make_push_text():
    def one(data: bytes) -> None:
        texts, _refused = split_text_messages_untrusted(data)
        for text in texts:
            try:
                parse_push_reply_untrusted(text, filters=FILTERS if data[:1] == b"P" else ())
            except BadPacket:
                pass
            KeyMethod2(b"", b"", "", peer_info=text).peer_info_dict()
    return one


def _established_tls_pair(protection="tls-crypt"):
    c, s = h.make_pair(protection)
    h.pump(c, s, lambda: False, max_rounds=200)
    return c, s


def make_key_method_server():
    """The server Session fed a fuzzed key-method-2 message (with peer-info) by a TLS-authenticated
    client: a fresh handshake per input. Uses Session._queue_tls and the ks.tls endpoint (private)."""
    def one(data: bytes) -> None:
        c, s = h.make_pair("plain")

        sent = []

        def send_fuzzed(ks, c=c, data=data):
            ks.sent_km = True
            sent.append(True)
            c._queue_tls(ks, ks.tls.send_message(data))          # private: no public hook
        c._send_key_method = send_fuzzed
        # Must never raise: Session.receive swallows peer errors.
        h.pump(c, s, lambda: s.closed or s.established, max_rounds=40)
        s.handle_timer(100.0)
        if not sent:
            raise RuntimeError("key-method-server: the hook was never called (the fuzzed bytes went nowhere)")
    return one


def make_push_client():
    """The client Session fed a fuzzed PUSH_REPLY (and whatever else the bytes hold) by a
    TLS-authenticated server: a fresh handshake per input. Uses Session._queue_tls (private) and
    replaces the server role's send_push_reply. The hook must be called: from the session.py
    split (f207b3d) to fuzz32 it was set on the Session, which no longer calls it, and the real
    PUSH_REPLY went out every time -- the target fuzzed nothing (libFuzzer's coverage stayed flat)."""
    def one(data: bytes) -> None:
        c, s = h.make_pair("plain")
        sent = []

        def send_fuzzed(ks, now, s=s, data=data):
            sent.append(True)
            s._queue_tls(ks, ks.tls.send_message(data + b"\0"))  # private: no public hook
        s.role.send_push_reply = send_fuzzed
        h.pump(c, s, lambda: c.closed or c.established, max_rounds=40)
        if not sent:
            raise RuntimeError("push-client: the hook was never called (the fuzzed bytes went nowhere)")
        c.handle_timer(100.0)
        if c.established:
            w = c.encrypt(b"\x45" + bytes(27))
            if w is not None:
                s.receive(bytes(w), 100.0)
    return one


# ------------------------------------------------------------------ data channel (established pair)
PAIR_KINDS = [
    dict(protection="tls-crypt", cipher="AES-256-GCM"),
    dict(protection="tls-auth", cipher="AES-256-CBC"),
    dict(protection="plain", cipher="CHACHA20-POLY1305", peer_id=None),       # P_DATA_V1
    dict(protection="tls-crypt-v2", cipher="AES-128-GCM", comp="stub-v2"),
    dict(protection="tls-crypt", cipher="AES-256-GCM", comp="lzo-stub"),
]


def _next_msg_id(dst, op_b: int, body: bytes) -> bytes:
    """The body with its message id set to the one `dst` expects next for that key id, so the
    message is delivered at once (as a crasher it then replays on a fresh pair too). Reads the
    reliable layer's next_recv_id (private)."""
    ks = dst.keys.get(op_b & 7)
    if ks is None or not body or body[0] > 8 or op_b >> 3 == Op.ACK_V1:
        return body
    pos = 1 + (4 * body[0] + 8 if body[0] else 0)
    if len(body) < pos + 4:
        return body
    return body[:pos] + ks.reliable.next_recv_id.to_bytes(4, "big") + body[pos + 4:]


def make_data():
    """First byte: bits 0-1 mode (raw / sealed plaintext / wrapped control / sealed with the header
    fuzzed), bit 2 towards the client, bits 3-6 the pair kind (PAIR_KINDS), bit 7 in control mode:
    set the message id to the next expected one. The pair lives across inputs (a handshake costs
    ~4 ms) and is rebuilt when it closes, so a crasher may depend on what came before it; the
    replay test checks that every kept crasher reproduces on a fresh pair."""
    pairs: dict[int, list] = {}

    def pair(i):
        p = pairs.get(i)
        if p is None or p[0].closed or p[1].closed or not (p[0].established and p[1].established) or p[2] > 20000:
            c, s = h.established_pair(**PAIR_KINDS[i])
            p = pairs[i] = [c, s, 0]
        p[2] += 1
        return p

    def one(data: bytes) -> None:
        if len(data) < 2:
            return
        sel, rest = data[0], data[1:]
        c, s, _ = pair(((sel >> 3) & 15) % len(PAIR_KINDS))
        to_client = bool(sel & 4)
        src, dst = (s, c) if to_client else (c, s)
        mode = sel & 3
        if mode == 0:
            wire = rest                                  # raw bytes from anyone
        elif mode == 1:
            wire = src.encrypt(rest)                     # authenticated data: fuzz the plaintext
            if wire is None:
                return
        elif mode == 2:
            # An authenticated control packet with the right session id: fuzz opcode and body.
            body = rest[1:]
            if sel & 0x80:
                body = _next_msg_id(dst, rest[0], body)
            wire = src.wrapper.wrap(rest[0], src.own_sid, body, 1.0)
        else:
            # Authenticated data with the header byte (opcode/key id) and peer-id fuzzed.
            w = src.encrypt(rest[4:])
            if w is None:
                return
            wire = bytes(rest[:min(4, len(rest))]) + bytes(w)[min(4, len(rest)):]
        dst.receive(bytes(wire), 1.0)                    # must never raise
        dst.take_outgoing()
        src.take_outgoing()
    return one


# ------------------------------------------------------------------ the server's data path
SERVER_ADDRS = [("198.18.7.1", 40001), ("198.18.7.2", 40002)]


def established_clients(d, addrs: list, name: str) -> list:
    """Clients (tls-crypt, the harness's one client certificate) at `addrs`, brought up against
    the dispatcher `d` by moving packets until nothing moves; -> [(client session, address)].
    The one handshake the multi-client data-path targets (here and vlan_targets.py) share."""
    p = h.pki()
    clients = []
    for i, addr in enumerate(addrs):
        c = Session(SessionConfig(Role.CLIENT, TlsSettings(p["ca"], *p["client"], False, remote_cert_tls="server"),
                                  lambda: h.client_wrapper("tls-crypt"), proto="udp", auth="SHA256",
                                  random_bytes=h.Counter(f"{name}-client{i}")), 0.0)
        c.start(0.0)
        clients.append((c, addr))
    for _ in range(100):
        moved = 0
        for c, addr in clients:
            for pkt in c.take_outgoing():
                d.receive(pkt, addr, 0.5)
                moved += 1
        for pkt, addr in d.take_outgoing():
            for c, a in clients:
                if a == addr:
                    c.receive(pkt, 0.5)
                    moved += 1
        if not moved:
            break
    if not all(c.established for c, _ in clients):
        raise RuntimeError(f"{name}: the clients did not come up")
    return clients


def living_world(state: dict, build: Callable[[], tuple], n_clients: int) -> Callable[[], tuple]:
    """The world a multi-client data-path target keeps across inputs (its tables are what the
    fuzzer explores): `build()` -> (data path, clients), rebuilt when a client is gone or closed
    or after 20000 inputs, so one input's verdict never rests on a dead world for long. Keeps
    the clock in state["t"]; -> a function giving the world and counting the input."""
    def world() -> tuple:
        w = state.get("w")
        if w is None or any(not c.established or c.closed for c, _ in w[1]) or \
                len(w[0].d.clients) != n_clients or state.get("n", 0) > 20000:
            w = state["w"] = build()
            state["n"], state["t"] = 0, 1.0
        state["n"] += 1
        return w
    return world


def settle(state: dict, d, clients: list, step: float = 0.0) -> None:
    """The end of one input of a multi-client data-path target: the clock `step` s on with the
    dispatcher's timers when `step` (they must record no internal error), then what the server
    and the clients have to say to each other, delivered once."""
    now = state["t"]
    if step:
        state["t"] = now = now + step
        d.handle_timer(now)
        errs = d.take_internal_errors()
        if errs:
            raise RuntimeError(f"timer raised: {errs!r}")
    for pkt, addr in d.take_outgoing():
        for c, a in clients:
            if a == addr:
                c.receive(pkt, now)
    for c, a in clients:
        for pkt in c.take_outgoing():
            d.receive(pkt, a, now)
    d.take_outgoing()


def _server_world(layer2: bool = False):
    """A dispatcher (tls-crypt, client-to-client, one iroute) with two established clients, and
    the ServerDataPath over it (`layer2`: dev tap's SwitchDataPath); -> (data path, [(client
    session, address)])."""
    from appliance.openvpn.datapath import ServerDataPath
    from appliance.openvpn.l2switch import SwitchDataPath
    d = _dispatcher("tls-crypt")
    d.st.client_to_client = True
    d.st.layer2 = layer2
    d.st.max_routes_per_client = 8
    d.st.duplicate_cn = True           # both clients hold the harness's one client certificate
    clients = established_clients(d, SERVER_ADDRS, "server-data")
    rec = d.by_addr[SERVER_ADDRS[0]]
    rec.iroutes = [ipaddress.IPv4Network("198.18.200.0/24")]
    d.iroutes.add(rec.iroutes[0], rec)
    return (SwitchDataPath if layer2 else ServerDataPath)(d, lambda cipher, v2: 1400, True), clients


def make_server_data():
    """ServerDataPath.from_link / from_tun and the dispatcher's timers with two established
    clients. First byte: bits 0-1 mode (raw wire bytes / client 0 seals the fuzzed inner packet /
    the same with its source set to the client's own address and the destination to client 1's
    or an iroute / client 0 seals it and it arrives from another address), bit 2 the packet comes
    in from the TUN instead (destination set to a client's address), bit 3 run the timers 30 s
    on. The world lives across inputs and is rebuilt when a client is gone."""
    state: dict = {}
    world = living_world(state, _server_world, len(SERVER_ADDRS))

    def one(data: bytes) -> None:
        if len(data) < 2:
            return
        dp, clients = world()
        d = dp.d
        sel, rest = data[0], bytearray(data[1:])
        now = state["t"]
        (c0, a0), (c1, a1) = clients
        r0, r1 = d.by_addr.get(a0), d.by_addr.get(a1)
        if sel & 4:
            if len(rest) >= 20 and r1 is not None and r1.vaddr_packed:
                rest[16:20] = r1.vaddr_packed if sel & 16 else bytes([198, 18, 200, rest[19]])
            dp.from_tun([bytes(rest)], now, {})
        else:
            mode = sel & 3
            if mode == 0:
                wire, addr = bytes(rest), a0
            else:
                if mode == 2 and len(rest) >= 20 and r0 is not None and r0.vaddr_packed:
                    rest[12:16] = r0.vaddr_packed
                    if r1 is not None and r1.vaddr_packed:
                        rest[16:20] = r1.vaddr_packed if sel & 16 else bytes([198, 18, 200, rest[19]])
                wire = c0.encrypt(bytes(rest))
                if wire is None:
                    return
                addr = ("198.18.7.9", 40009) if mode == 3 else a0
            dp.from_link(bytes(wire), addr, now, lambda _p: None, {})      # must never raise
        if dp.failed:
            raise RuntimeError(f"sealing raised: {dp.failed!r}")
        settle(state, d, clients, 30.0 if sel & 8 else 0.0)
    return one


def make_switch_data():
    """dev tap: SwitchDataPath.from_link / from_tun (l2switch.py) with two established clients and
    client-to-client. First byte: bits 0-1 mode (raw wire bytes / client 0 seals the fuzzed frame
    / the same with its source MAC one of a few and its destination client 1's MAC, a broadcast or
    one of the few / client 1 seals it), bit 2 the frame comes in from the TAP device instead, bit
    3 run the timers 30 s on. Invariants: nothing escapes, no client holds more MACs than its
    quota, every MAC held is a live client's and none the server side's (the TAP's own, one of
    the few, or a source from the TAP device lately)."""
    state: dict = {}
    macs = [bytes([2, 0, 0, 0, 0, i]) for i in range(12)] + [b"\xff" * 6]

    def build():
        w = _server_world(layer2=True)
        w[0].server_mac = macs[11]          # the TAP device's own: never a client's
        return w
    world = living_world(state, build, len(SERVER_ADDRS))

    def one(data: bytes) -> None:
        if len(data) < 2:
            return
        dp, clients = world()
        d = dp.d
        sel, rest = data[0], bytearray(data[1:])
        now = state["t"]
        if len(rest) >= 12 and sel & 0x30:
            rest[0:6] = macs[(sel >> 4) * 3 % len(macs)]
            rest[6:12] = macs[rest[11] % len(macs)]
        if sel & 4:
            dp.from_tun([bytes(rest)], now, {})
        else:
            mode = sel & 3
            (c, addr) = clients[1] if mode == 3 else clients[0]
            wire = bytes(rest) if mode == 0 else c.encrypt(bytes(rest))
            if wire is None:
                return
            dp.from_link(bytes(wire), addr, now, lambda _p: None, {})      # must never raise
        if dp.failed:
            raise RuntimeError(f"sealing raised: {dp.failed!r}")
        for held in dp.macs.held.values():
            if len(held) > dp.macs.per_client:
                raise RuntimeError("a client holds more MACs than its quota")
        for mac, rec in dp.macs.owner.items():
            if not rec.alive:
                raise RuntimeError(f"MAC {mac.hex()} held by a client gone")
            if dp._servers(mac, now):
                raise RuntimeError(f"MAC {mac.hex()} of the server's side held by a client")
        settle(state, d, clients, 30.0 if sel & 8 else 0.0)
    return one


# ------------------------------------------------------------------ the management interface
def make_management():
    """The management interface's line handling and commands (gateway/management.py) with the
    real Operations of an in-memory server with one client: whatever bytes a local tool sends,
    nothing escapes MgmtConn.on_read (the pump would count it as an internal error)."""
    from tests.fuzz.mgmt_world import management_world
    conn, feed = management_world()

    def one(data: bytes) -> None:
        feed(data)
    return one


# ------------------------------------------------------------------ TCP framing
def make_framing():
    def one(data: bytes) -> None:
        if not data:
            return
        step, rest = data[0] + 1, data[1:]
        whole = StreamFramer()
        try:
            a = whole.feed(rest)
            ea = None
        except BadPacket as e:
            a, ea = None, e
        f = StreamFramer()
        b = []
        eb = None
        try:
            for i in range(0, len(rest), step):
                b += f.feed(memoryview(rest)[i:i + step])
        except BadPacket as e:
            eb = e
        if (ea is None) != (eb is None) or (ea is None and a != b):
            raise AssertionError("StreamFramer gives different packets for the same stream split differently")
    return one


# ------------------------------------------------------------------ DHCP
def dhcp_decoder():
    """The DHCP reply decoder, wherever it lives now (boot/net.py, or boot/dhcp_client.py)."""
    for mod in ("appliance.boot.dhcp_client", "appliance.boot.net", "appliance.boot.dhcp"):
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        for name in ("parse_reply_untrusted", "decode_reply_untrusted", "parse_untrusted"):
            fn = getattr(m, name, None)
            if fn is not None:
                return fn
        for name in dir(m):
            if name.endswith("_untrusted") and callable(getattr(m, name)):
                return getattr(m, name)
    raise ImportError("no DHCP reply decoder found in appliance.boot")


def make_dhcp():
    parse = dhcp_decoder()
    from appliance.boot import dhcp_client
    check = getattr(dhcp_client, "check_reply_untrusted", None)
    lan = [ipaddress.IPv4Network("198.18.50.0/24")]

    def one(data: bytes) -> None:
        r = parse(data)      # documented: "never raises"; None for anything it does not take
        if r is not None and check is not None:
            check(r, lan)    # the lease checks too: a str (why not) or an Offer, never an exception
    return one


# ------------------------------------------------------------------ ICMPv6 from the LAN (router solicitations)
def make_icmpv6():
    """First byte: the hop limit the packet arrived with (bit 0: 255 or the byte itself) and its
    source (bit 1: link-local or ::); the rest is the ICMPv6 message. The codec's parsers and the
    RA sender's receive path (advertising, so a valid RS schedules an answer) must never raise."""
    import ipaddress
    import socket
    import struct

    from appliance.gateway.loop import Faults, TimerHeap
    from appliance.gateway.observers import ClientCounters, TunnelState
    from appliance.lan.icmpv6 import parse_ra_untrusted, parse_rs_untrusted
    from appliance.lan.ra import RouterAdvertiser
    from appliance.openvpn.keymethod import PushedOptions

    class Sock:
        def sendmsg(self, bufs, anc, flags, addr):
            return len(bufs[0])

        def close(self):
            pass

    class Pump:
        timers, faults = TimerHeap(), Faults()

        def clock(self):
            return 1000.0

        def watch(self, *a):
            pass

    adv = RouterAdvertiser("fuzz0", ipaddress.IPv6Interface("fd18:50::1/64"), open_socket=lambda _n: (Sock(), 1),
                           source=lambda _n: "fe80::1")
    adv.attach(Pump(), ClientCounters)
    adv.tunnel_changed(TunnelState(True, "x", None, PushedOptions(ifconfig_ipv6=("2001:db8:19::1000/64", None))))

    def one(data: bytes) -> None:
        if not data:
            return
        hop = 255 if data[0] & 1 else data[0]
        src = "fe80::2%fuzz0" if data[0] & 2 else "::"
        pkt = data[1:]
        parse_rs_untrusted(pkt, hop, ipaddress.IPv6Address(src.split("%")[0]))
        parse_ra_untrusted(pkt)
        adv.receive(pkt, [(socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, struct.pack("@i", hop))], (src, 0, 0, 1))
    return one


def make_dhcp_server():
    """The LAN's DHCP server (appliance/lan/dhcp_server.py): `DhcpServer.handle` never raises.

    First byte: mode. Even: the bytes after it are the datagram as it came from the LAN. Odd: a valid
    BOOTREQUEST header (chaddr from bytes 1..6) is put in front and the rest are the options, and
    the rest is split at b"\\xfe\\xfe" into several messages from that client, fed to one server at
    growing times from IP sources picked by the first byte, so the fuzzer reaches the lease states
    (offer, bind, decline, expiry) and both rate limits."""
    import struct
    from ipaddress import IPv4Address, IPv4Interface
    from appliance.lan.dhcp_codec import MAGIC
    from appliance.lan.dhcp_server import DhcpServer
    from appliance.openvpn.keymethod import PushedOptions

    pushed = PushedOptions(dns=["198.19.0.1"], dhcp_options=[("DOMAIN", "vpn.test"), ("DOMAIN-SEARCH", "a.vpn.test")])
    # The IP source of each message (bound leases' addresses have their own rate limit)
    sources = [None, IPv4Address(0), IPv4Address("198.18.50.100"), IPv4Address("198.18.50.101"),
               IPv4Address("198.18.50.10")]

    def one(data: bytes) -> None:
        s = DhcpServer(IPv4Interface("198.18.50.1/24"), IPv4Address("198.18.50.100"), IPv4Address("198.18.50.103"),
                       600, [("52:54:00:aa:bb:cc", IPv4Address("198.18.50.10"))], max_leases=3)
        if data[:1] and data[0] & 1:
            s.set_pushed(pushed)
            mac = data[1:7].ljust(6, b"\0")
            hdr = struct.pack("!BBBBIHH4s4s4s4s16s", 1, 1, 6, 0, 7, 0, 0, bytes(4), bytes(4), bytes(4), bytes(4),
                              mac.ljust(16, b"\0")) + bytes(192) + MAGIC
            s.link_mtu = (1500, 576, 1280, 9000, 300)[(data[0] >> 4) % 5]      # the LAN NIC's MTU
            for i, opts in enumerate(data[7:].split(b"\xfe\xfe")[:16]):
                for r in s.handle(hdr + opts, 1.0 + 200.0 * i, sources[((data[0] >> 1) + i) % len(sources)]):
                    assert len(r.data) <= max(s.link_mtu - 28, 250), "a reply over the NIC's MTU"
                held = set(s.by_addr) | set(s.declined) | s.static_addrs | {int(s.server)}
                assert all(a in s.taken for a in held) and len(s.taken) == len(held), "taken set out of step"
                assert all(s.by_mac.get(x.mac) is x and x.name == n for n, x in s.names.items()), "names out of step"
        else:
            s.handle(data[1:], 1.0)
    return one


# ------------------------------------------------------------------ the LAN DNS forwarder
DNS_SEP = b"\xff\xfe"


def make_dns():
    """The forwarder's sans-I/O core (appliance/lan/dns_core.py), documented never to raise: the
    input is a script of steps split at DNS_SEP, each an op byte and bytes. Ops: 0/1 a query from
    a LAN host over UDP/TCP; 2 the bytes as an answer to the oldest outstanding query from its
    server; 3 the same with the expected ID patched in (to get past the ID check); 4 that query's
    attempt fails; 5 tunnel down; 6 tunnel up; 7 a TCP client goes away. After every step the
    bounds must hold, and no answer passed to the LAN gives a LAN, own or loopback address
    (AssertionError is a finding); an answer passed (not an allowed domain's) has at most
    dns_rebind.MAX_RECORDS records and the check walks it whole, and one of more records is
    answered SERVFAIL (or TC only, too large for a UDP client) -- lanatk38's cap (fuzz38)."""
    import ipaddress
    from appliance.lan import dns_wire
    from appliance.lan.dns_core import ForwarderCore, Limits, Reply, Send
    from appliance.lan.dns_local import LocalZones
    servers = [("198.19.0.1", 53), ("2001:db8:19::1", 53)]
    class Leases:
        """Two DHCP leases' host names (dns_local's lease answers; fuzz35)."""
        names = {"printer": ipaddress.IPv4Address("198.18.50.20"), "nas": ipaddress.IPv4Address("198.18.51.7")}

        def address_of(self, name: str) -> ipaddress.IPv4Address | None:
            return self.names.get(name)

        def name_of(self, addr: ipaddress.IPv4Address) -> str | None:
            return next((n for n, a in self.names.items() if a == addr), None)
    zones = LocalZones([ipaddress.ip_network("198.18.50.0/23"), ipaddress.ip_network("fd18:50::/64")], Leases())
    zones.set_vpn_networks([ipaddress.ip_network("10.8.0.0/16"), ipaddress.ip_network("fd00:8::/32")])
    import struct
    from appliance.lan.dns_rebind import MAX_RECORDS, RebindFilter
    rebind = RebindFilter([ipaddress.ip_network("198.18.50.0/23"), ipaddress.ip_network("fd18:50::/64")], ["ok.test"])
    rebind.set_own(["198.19.0.2", "2001:db8:19::1000"])

    def one(data: bytes) -> None:
        c = ForwarderCore(Limits(max_outstanding=4, max_per_source=2, max_attempts=2), random_id=lambda: 0x1234,
                          local=zones, rebind=rebind)
        c.set_servers(servers)
        now = 0.0
        for step in data.split(DNS_SEP)[:64]:
            op, body = (step[0] & 7, step[1:]) if step else (0, b"")
            now += 0.5
            first = next(iter(c.pending.items()), None)
            if op in (0, 1):
                out = c.query(body[:1], body[:1], body, now, tcp=op == 1)
                # A question dns_local answers never goes to the VPN's servers (fuzz35).
                try:
                    q = dns_wire.parse_untrusted(body).question
                except dns_wire.BadDns:
                    q = None
                if q is not None and zones.answer(q.name, q.qtype, q.qclass) is not None:
                    assert not any(isinstance(a, Send) for a in out), f"a locally answered {q!r} was forwarded"
            elif op in (2, 3) and first is not None:
                tok, p = first
                if op == 3 and len(body) >= 2:
                    body = p.upstream_id.to_bytes(2, "big") + body[2:]
                out = c.answer(tok, p.server, body, now)
                # No answer from upstream hands a LAN host a LAN, own or loopback address
                # (dns_rebind.py), but for an allowed domain.
                for a in out:
                    if isinstance(a, Reply) and not rebind.allowed(p.question.name):
                        try:
                            m = dns_wire.parse_untrusted(a.data)
                            hit = rebind.offending(a.data, m, limit=None)
                        except dns_wire.BadDns:
                            hit = None
                        assert hit is None, f"{hit!r} reached the LAN"
                        # lanatk38: an answer over the check's cap is SERVFAIL, never passed; one
                        # passed is one the check walked whole (not unread for its size or form).
                        counts = sum(struct.unpack_from("!HHH", a.data, 6)) if len(a.data) >= 12 else 0
                        assert counts <= MAX_RECORDS, f"an answer of {counts} records passed unchecked"
                        if counts:
                            rebind.offending(a.data, dns_wire.parse_untrusted(a.data))   # raises if not walkable
                    if isinstance(a, Reply) and not rebind.allowed(p.question.name) and len(body) >= 12 \
                            and sum(struct.unpack_from("!HHH", body, 6)) > MAX_RECORDS:
                        # SERVFAIL, or (too large for a UDP client) header and question with TC only
                        tc_only = len(a.data) >= 12 and a.data[2] & 2 and not any(struct.unpack_from("!HHH", a.data, 6))
                        assert len(a.data) >= 4 and (a.data[3] & 15 == 2 or tc_only), \
                            f"an answer of more than {MAX_RECORDS} records answered other than SERVFAIL or TC"
            elif op == 4 and first is not None:
                out = c.failed(first[0], now)
            elif op == 5:
                out = c.set_servers([])
            elif op == 6:
                out = c.set_servers(servers)
            elif op == 7:
                out = c.client_gone(body[:1])
            else:
                out = []
            for a in out:
                if isinstance(a, Reply):
                    assert len(a.data) >= 12, a
            assert len(c.pending) <= 4 and sum(c.per_source.values()) == len(c.pending)
            assert all(0 < n <= 2 for n in c.per_source.values())
    return one


# ------------------------------------------------------------------ config parsers
def _fake_files() -> dict[str, bytes]:
    p = h.pki()
    return {"ca.crt": p["ca"], "client.crt": p["client"][0], "client.key": p["client"][1],
            "server.crt": p["server"][0], "server.key": p["server"][1],
            "ta.key": keyfiles.generate_static_key().encode(),
            "tc.key": keyfiles.generate_static_key().encode(),
            "v2.key": keyfiles.generate_tls_crypt_v2_client_key(h.V2_SERVER_KEY).encode(),
            "v2server.key": keyfiles.generate_tls_crypt_v2_server_key().encode()}


def make_ovpn_config():
    import ipaddress

    from appliance.openvpn import config as options
    from appliance.openvpn.peernames import file_text
    files = _fake_files()

    def read_file(path: str) -> bytes:
        # Never touch the real file system: a fuzzed `ca /dev/zero` must not read the machine.
        name = path.rsplit("/", 1)[-1]
        if name in files:
            return files[name]
        raise FileNotFoundError(2, "No such file or directory", path)

    def one(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        try:
            o = options.parse_config(text, "/fuzz/profile.ovpn", read_file=read_file)
        except ConfigError:
            o = None
        if o is not None and hasattr(options, "render_options"):
            options.render_options(o)
        try:
            # As the server reads a ccd file or a client-connect script's output: its bytes.
            ccd = options.parse_ccd(file_text(data), "/fuzz/ccd/client")
        except ConfigError:
            return
        # What parses is what the push can use (clientpush.py): no ValueError there.
        if ccd.ifconfig_push is not None:
            ipaddress.IPv4Address(ccd.ifconfig_push[0])
            ipaddress.IPv4Address(ccd.ifconfig_push[1])
        for n, m in ccd.iroutes:
            ipaddress.IPv4Network(f"{n}/{m}", strict=False)
    return one


def make_toml_config():
    from appliance.config import schema

    def one(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        try:
            cfg = schema.parse_appliance_config(text, "/nonexistent-fuzz-dir/appliance.toml")
        except ConfigError:
            return
        schema.summary(cfg)
    return one


TARGETS: dict[str, Target] = {}


def _lazy(module: str, maker: str):
    """A target made by a module of its own (tests/fuzz/<module>.py), imported when it runs."""
    return getattr(importlib.import_module(f"tests.fuzz.{module}"), maker)()


def _add(t: Target) -> None:
    TARGETS[t.name] = t


for _p in h.PROTECTIONS:
    _add(Target(f"control-{_p}", (lambda p: lambda: make_control(p))(_p), MAX_LEN,
                doc=f"{_p}: server-side unwrap + body/TLV decoders (BadPacket), then a fresh "
                    "ServerDispatcher.receive (nothing may escape)", weight=1.25))
_add(Target("wkc", make_wkc, 1200, "tls-crypt-v2 WKc split and unwrap (BadPacket)", 0.5))
_add(Target("key-method", make_key_method, doc="decode_key_method_2_untrusted + peer-info (BadPacket)",
            weight=0.5))
_add(Target("push-text", make_push_text, doc="text messages, PUSH_REPLY with pull-filters, peer-info"))
_add(Target("key-method-server", make_key_method_server, 2048,
            "server Session fed a fuzzed key-method message + peer-info after TLS (nothing may escape)", 1.5))
_add(Target("push-client", make_push_client, 2048,
            "client Session fed a fuzzed PUSH_REPLY after TLS (nothing may escape)", 1.5))
_add(Target("data", make_data, 2048, "Session.receive of an established pair, both ways (nothing may escape)",
            1.5))
_add(Target("server-data", make_server_data, 2048,
            "ServerDataPath from_link/from_tun + timers, two established clients, c2c, iroute (nothing may escape)",
            1.0))
_add(Target("switch-data", make_switch_data, 2048,
            "dev tap: SwitchDataPath from_link/from_tun + timers, two clients, c2c (nothing may escape; MAC quota)",
            0.5))
_add(Target("management", make_management, 4096, "management lines and commands with a live server (nothing "
            "may escape on_read)", 0.5))
_add(Target("tcp-framing", make_framing, 8192, "StreamFramer.feed in any split (BadPacket)", 0.5))
_add(Target("dhcp", make_dhcp, 1500, "DHCP reply decoder (never raises)", 0.25))
_add(Target("icmpv6", make_icmpv6, 1500, "RS/RA parsers and the LAN RA sender's receive path (never raise)", 0.25))


_add(Target("dhcp-server", make_dhcp_server, 1500, "the LAN's DHCP server, DhcpServer.handle (never raises)",
            0.5))
_add(Target("dns", make_dns, 2048, "LAN DNS forwarder core: queries, answers, timeouts, tunnel changes (never raises)",
            0.5))
_add(Target("ovpn-config", make_ovpn_config, 4096, "parse_config / parse_ccd / render_options (ConfigError)",
            1.25))
_add(Target("toml-config", make_toml_config, 8192, "parse_appliance_config / summary (ConfigError)"))
_add(Target("compress", lambda: _lazy("compress_targets", "make_compress"), 4096,
            "real compression received: decompress (DecompressError) and its framing in Session.receive "
            "(never raises; bounded; what a real compressor made comes back)", 1.5))
_add(Target("client-nat", lambda: _lazy("frame_targets", "make_client_nat"), 2048,
            "client-nat rewriting of packets and tap frames (never raises; checksums verify whenever they did)", 1.0))
_add(Target("tap-client", lambda: _lazy("frame_targets", "make_tap_client"), 2048,
            "dev tap client data path: MSS clamp and client-nat inside Ethernet/802.1Q frames (never raises; "
            "checksums, MSS bound, untouched headers)", 1.0))
_add(Target("dhcp-router-area", lambda: _lazy("dhcp_router_targets", "make_dhcp_router"), 1600,
            "route-gateway dhcp on a tap client: extract_router over server replies (never raises; no Router "
            "left where a DHCP client reads; changes only in the option areas, checksum verifies)", 0.5))
_add(Target("p2p-listen", lambda: _lazy("p2p_targets", "make_p2p_listen"), 2048,
            "p2p tls-server's UDP port: P2PListenLink intake, float, TakeOver candidates (never raises; "
            "the live peer only moves by authentication)", 1.5))
_add(Target("p2p-key-method", lambda: _lazy("p2p_targets", "make_p2p_key_method"), 2048,
            "a p2p handshake with one side's key-method message (peer-info: IV_PROTO, IV_CIPHERS) fuzzed "
            "(nothing may escape either Session)", 1.0))
_add(Target("control-script", lambda: _lazy("control_targets", "make_control_script"), 2048,
            "a script of control messages both ways, renegotiations, exits and operator actions with an "
            "authenticated client (nothing escapes; the bystander untouched; output bounded per step)", 1.5))
_add(Target("dhcp-router", lambda: _lazy("control_targets", "make_dhcp_router"), 2048,
            "route-gateway dhcp: extract_router on the server side's frames (no Router option or classless "
            "default left as a client reads it; checksum; idempotent)", 0.5))
_add(Target("push-merge", lambda: _lazy("push_targets", "make_push_merge"), 4096,
            "a PUSH_REPLY under the profile's pull-filter/route-nopull, merged with its network options "
            "(route-nopull, filters, block-ipv6, route-ipv6 order, dns, metrics hold; the merge mutates nothing)", 0.75))
_add(Target("fragment", lambda: _lazy("fragment_targets", "make_fragment"), 4096,
            "`fragment N`: split, and reassembly of an authenticated peer's parts (what comes out is what was "
            "split; bounded slots and sizes)", 0.5))
_add(Target("switch-vlan", lambda: _lazy("vlan_targets", "make_switch_vlan"), 2048,
            "dev tap + vlan-tagging: SwitchDataPath with three clients on two VLANs (no frame to its sender or "
            "another VLAN, no tag to a client, the TAP side's tags as vlan-accept says; MAC tables bounded)", 0.75))
_add(Target("client-push", lambda: _lazy("clientpush_targets", "make_client_push"), 4096,
            "a client's push from its ccd file and client-connect output (only the ccd grammar's pushes, the "
            "server's, valid address lines; sizes and iroutes bounded)", 0.75))
# fuzz34: what fuzz32/33 left unreached -- tls.py, the management interface with a login waiting,
# learn-address on a tun server's client, the switch's tables at their bound.
_add(Target("tls-endpoint", lambda: _lazy("tls_targets", "make_tls_endpoint"), 2048,
            "a TlsEndpoint (client or server, TLS 1.2/1.3, tls-verify) against a peer whose records a script "
            "forwards, cuts, corrupts or replaces (only RemoteProtocolError; a handshake only with the real peer; "
            "what is read is exactly what the peer sent)", 1.0))
_add(Target("tls-session", lambda: _lazy("tls_targets", "make_tls_session"), 2048,
            "a tls-auth Session pair, one side hostile: its TLS output replaced, cut, corrupted, dropped, with "
            "renegotiations at odd times (Session.receive never raises; up only with the real certificate)", 1.0))
_add(Target("management-auth", lambda: _lazy("mgmt_world", "make_management_auth"), 4096,
            "management commands, cut anywhere, against a server whose client's login waits "
            "(management-client-auth; nothing escapes on_read, no internal error)", 0.75))
_add(Target("switch-tables", lambda: _lazy("vlan_targets", "make_switch_tables"), 2048,
            "switch-vlan with the server side's and learn-address's tables bounded at 4: their trimming "
            "(bounds hold; a MAC the TAP just used is no client's)", 0.5))
_add(Target("client-learn", lambda: _lazy("clientpush_targets", "make_client_learn"), 4096,
            "client-push, then learn-address's list and verdicts for the client (each key once; a refused "
            "one routes nowhere near it, a shared address goes back; the rest stays)", 0.5))
# fuzz35: the day's new peer-facing code -- peer-id reuse, tls-crypt-v2's kept client keys, the WAN
# DHCP client's reading of replies.
_add(Target("peer-ids", lambda: _lazy("peer_targets", "make_peer_ids"), 2048,
            "clients connecting, leaving, restarting, going silent, killed, sending data and late data in any "
            "order (no two live clients share a peer-id; the lowest free one is given; data reaches only "
            "its sealer's record; no peer-id leaks)", 1.0))
_add(Target("v2-keycache", lambda: _lazy("peer_targets", "make_v2_keycache"), 4096,
            "tls-crypt-v2 resets and WKC_V1 packets, valid and forged, from 8 addresses with the cache's bounds "
            "at 4/6/1 (only authenticated WKcs kept, within the size; builds within the budget; a kept key "
            "never refused; no answer to a forgery)", 0.75))
_add(Target("wan-dhcp", lambda: _lazy("wan_dhcp_targets", "make_wan_dhcp"), 4096,
            "the WAN DHCP client's Transaction/_replies/_wait over a fake socket running its BPF filter: "
            "datagrams from 16 sources, floods (refused sources at most MAX_BLOCKED and earned; the real "
            "server's ACK taken unless it was refused; the paced reading's sleeps bounded)", 0.75))
_add(Target("tls-config", lambda: _lazy("tlsconf_targets", "make_tls_config"), 2048,
            "TLS directives (cipher/suite/group lists, cert profile, certificate checks, CRLs, capath) in a "
            "profile read by both config parsers and the start-up check (only ConfigError, at the directive's "
            "file:line; the parsers agree; nothing accepted is ignored; an unreadable CRL refuses the peer)", 0.75))
_add(Target("wan-dhcp-loop", lambda: _lazy("wan_dhcp_loop_targets", "make_wan_dhcp_loop"), 1024,
            "the WAN DHCP client's state machine (_Client: INIT, BOUND, RENEWING, REBINDING, NAK rounds, expiry) "
            "on a virtual clock against a real server and a rogue (no spin; the NIC holds the lease's address "
            "while it holds; REQUESTs where RFC 2131 sends them; timers bounded; held terms kept; back on the "
            "real server's lease when the rogue stops)", 0.75))
_add(Target("ops-reload", lambda: _lazy("ops_reload_targets", "make_ops_reload"), 2048,
            "a running server's status file and SIGHUP reloads with a client connected: the status path made a "
            "directory, a FIFO, /dev/full, removed; configs changed, refused, status taken away; ccd files "
            "changing (no internal error; a refused config never applied; clients kept; the status file whole "
            "whenever it can be written; a failure logged once)", 0.5))
# fuzz44: reload restarts (reload42, review44b/d): what a kept client was given vs what the new config gives.
_add(Target("reload-restart", lambda: _lazy("reload_restart_targets", "make_reload_restart"), 1024,
            "2-4 clients (duplicate-cn sharing certificates, a 3-address pool) and a script of ccd files written, "
            "edited, broken, removed, push/keepalive/ifconfig-pool/ccd-exclusive/client-connect changes, SIGHUPs, "
            "time across the 30 s hold-off, clients leaving, coming back, restarting in place (no internal error; "
            "the loop's run bounded; one session per pool address and peer-id; no RESTART for unchanged options; "
            "one reload restart per client per hold-off; settled, each client has what a fresh connect gives)",
            0.75))
_add(Target("peer-ids-tcp", lambda: _lazy("tcp_peer_targets", "make_peer_ids_tcp"), 2048,
            "the dispatcher over TCP: connections numbered at accept and closed, restarts on new connections, "
            "a second reset on one, framing errors, bytes cut anywhere, kills, time (no peer-id shared or leaked; "
            "the lowest free number at accept; nothing sent on a closed connection; data only to its sealer)",
            0.75))
_add(Target("port-share", lambda: _lazy("portshare_targets", "make_port_share"), 2048,
            "port-share on a TCP server: first bytes cut anywhere, web clients and a hostile web server "
            "(half-closes, resets, huge writes, slow readers), floods, a real VPN client (2.6's verdict; bytes "
            "relayed in order, a FIN after them; caps and buffers held; only quiet relays evicted, never the "
            "authenticated client; one journal file per relay)", 0.75))
_add(Target("pool-persist", lambda: _lazy("poolfile_targets", "make_pool_persist"), 4096,
            "ifconfig-pool-persist's file read at start, names noted, written back and read again, picks "
            "(every line taken as 2.6's ifconfig_pool_read takes it; one name per address; a written file "
            "reads back byte for byte; a pick free and never another name's)", 0.5))
_add(Target("capath", lambda: _lazy("capath_targets", "make_capath"), 1024,
            "capath DIR laid out and changed by the input (CAs, a same-subject twin, CRLs revoking, empty, "
            "expired, foreign-signed, junk, odd names, symlinks): a new handshake and a reload's re-check of a "
            "connected peer agree; a stranger never in; a revoking CRL never passed", 0.5))
_add(Target("wan-dhcp-stop", lambda: _lazy("wan_dhcp_stop_targets", "make_wan_dhcp_stop"), 1024,
            "the WAN DHCP client stopped mid-transaction (Lease.stop) and its NIC vanishing and coming back, "
            "the real _apply/_remove on a fake netlink (nothing added after stop, the NIC empty, the loop ends "
            "by itself within one wait; no spin; failures logged once per retry_min)", 0.5))
_add(Target("script-env", lambda: _lazy("script_env_targets", "make_script_env"), 4096,
            "peer-chosen values (key-method-2 username/password/peer-info, a PUSH_REPLY, certificate subjects) "
            "and the config's setenv in the server's and the client's script environments: names as 2.6's "
            "CC_NAME, no NUL or control character in a value, within ENV_MAX, exec'd with no shell", 0.5))
# fuzz38: the day's new peer/kernel-facing code -- the client's TLS flight read once per batch (fp38),
# multicast through a tun server (mcast38), the rtnetlink hints (flap38, wan38).
_add(Target("flight-batch", lambda: _lazy("tls_targets", "make_flight_batch"), 1024,
            "a hostile server's control packets in batches to a client whose TLS is driven once per batch: the "
            "real flight in any order, duplicates, ACK-only, ids beyond the window, garbage and corrupted records, "
            "thousands in one batch (nothing escapes; ends only as the peer's error; the BIO within one batch's "
            "bytes; up only with the real server; valid packets end up as when fed one per batch)", 0.75))
_add(Target("netlink", lambda: _lazy("netlink_targets", "make_netlink"), 8192,
            "rtnetlink datagrams (any lengths, user ports, ENOBUFS, endless queues) to the route keeper's "
            "RouteWatch.changed and the relink thread's _drain (bounded reads; verdicts as netlink(7)'s walk)", 0.25))
_add(Target("mcast-tun", lambda: _lazy("mcast_targets", "make_mcast_tun"), 4096,
            "a tun server with four clients, client-to-client on or off: multicast and unicast from the TUN and "
            "from clients, bursts past the replication budget (each client gets each multicast at most once, "
            "never the sender; unicast routed as route_packet says; counters add up)", 0.5))
# fuzz40: the thirty-sixth session's new decisions and parsers -- the route keeper (flap38's
# RouteKeeper, RouteSet.restore), the static WAN and [lan] routes relink, client-connect's options
# with client-auth's lines after them, large ccd files read by the worker, `dh` files, the
# multicast replication budget.
_add(Target("route-keeper", lambda: _lazy("route_keep_targets", "make_route_keeper"), 2048,
            "the client's RouteKeeper on a fake pump and the real RouteSet.restore on a fake kernel: hints, "
            "time, flushes, links down/up, renumbering, EEXIST, a NIC gone (each route tried once in order; "
            "forgotten exactly when on-link and off every network of its NIC; checks MIN_GAP apart, a hint "
            "checked within SETTLE, a failure retried within RETRY_MAX and said once per LOG_EVERY)", 0.5))
_add(Target("wan-lan-relink", lambda: _lazy("route_keep_targets", "make_relink"), 512,
            "static_wan.missing and LanRouteKeeper.reapply (addresses the NIC lost, gateways of a family "
            "without a default; [lan] routes restored exactly when due; warned once per change)", 0.2))
_add(Target("connect-output", lambda: _lazy("ccd40_targets", "make_connect_output"), 4096,
            "client-connect's options file then client-auth's lines (scripts._parsed), against the parts "
            "parsed alone (fails exactly when a part does, lines offset; else the first part with the "
            "second's over it, as 2.6 imports them)", 0.5))
_add(Target("ccd-reader", lambda: _lazy("ccd40_targets", "make_ccd_reader"), 1024,
            "a ccd file around INLINE_MAX read on the loop, by an inline CcdReader and by the worker "
            "(the same answer three ways; CcdPending exactly over INLINE_MAX; answers forgotten)", 0.3))
_add(Target("dh-file", lambda: _lazy("dh_budget_targets", "make_dh_file"), 4096,
            "`dh` file bytes (raw, PEM around fuzzed DER, a real group patched, EC blocks, headers): "
            "modulus_bits agrees with OpenSSL, never takes what OpenSSL cannot load as a group; a server "
            "config refuses exactly those, at the dh line", 0.3))
_add(Target("mcast-budget", lambda: _lazy("dh_budget_targets", "make_mcast_budget"), 4096,
            "ReplicationBudget.allow/forget over clients, names coming back, copies, time (buckets within "
            "0..burst; a name's packets and copies within burst + rate x time; over-rate counted); "
            "is_multicast against ipaddress", 0.3))
_add(Target("native", lambda: __import__("tests.fuzz.native_targets", fromlist=["make_native"]).make_native(), 4096,
            "the C data path (aead/gro/gso) against its Python twins: the unit tests' differential properties", 0.5))
_add(Target("connection-block", lambda: _lazy("conn42_targets", "make_connection_block"), 4096,
            "a client profile with <connection> blocks (ConfigError at a line of the file); each block's "
            "connection the same with the other blocks blanked out", 0.6))
_add(Target("mss-tunmtu", lambda: _lazy("conn42_targets", "make_mss_tunmtu"), 64,
            "tun-mtu/mssfix/fragment/link-mtu globally or in a block, SYNs clamped by settings.mss_rule: "
            "tun-mtu - 40 when the profile's tun-mtu decides, min(MSS, bound) for each option, checksums", 0.4))
_add(Target("env-filter", lambda: _lazy("conn42_targets", "make_env_filter"), 2048,
            "env-filter's level (catoi against libc's atoi) and mgmt_env.EnvBlock against 2.6.14's manage.c", 0.4))
_add(Target("gso-refusal", lambda: _lazy("conn42_targets", "make_gso_refusal"), 1200,
            "UdpTransport's GSO refusals on a fake kernel and clock: each datagram once, in order; GSO "
            "exactly when the model says; the table bounded", 0.5))
_add(Target("pull-conn", lambda: _lazy("conn42_targets", "make_pull_conn"), 1024,
            "a client up on a second server after a first pushed the input's first part: its pushed "
            "options, timers, shaper and client-nat as a fresh client's that met the second only", 0.8))
_add(Target("mgmt-words", lambda: _lazy("conn42_targets", "make_mgmt_words"), 1024,
            "a management command line's words (command_words) against 2.6.14's parse_line: the same "
            "words, or the same error", 0.4))

# fuzz45: one peer's bytes end at most its own session, with legitimate peers connected and pinging.
_add(Target("contain", lambda: _lazy("contain_targets", "make_contain"), 1024,
            "a UDP tls-crypt server with three legitimate clients (certificate and password) and hostile "
            "actors: a keyless sender (random, replayed, cut, bit-flipped, spoofed datagrams), tls-crypt key "
            "holders without a certificate (handshakes, floods, spoofed resets, forged control packets), an "
            "authenticated client (PUSH_REQUEST floods, TLS junk and oversized records, renegotiation storms, "
            "data on others' peer-ids, forged inner sources, restarts), time (no internal error; the loop "
            "bounded; each legitimate client keeps its connection, record, address and peer-id, and its "
            "pings reach the LAN, it and the next client; nothing forged reaches a TUN; books and the log "
            "bounded)", 0.75))

# fuzz47: bytes from a malicious proxy (a peer with no key), a token a client sends as its password.
_add(Target("http-proxy-reply", lambda: _lazy("proxy_targets", "make_http_proxy_reply"), 16384,
            "httpproxy.ConnectReply fed a hostile proxy's answer whole and in reads of any size: only "
            "ProxyRefused (one printable line), the same outcome either way, the model's (200 with a "
            "bounded NUL-free header opens, every later byte the tunnel's), memory within MAX_HEADER", 0.3))
_add(Target("socks-reply", lambda: _lazy("proxy_targets", "make_socks_reply"), 2048,
            "socksproxy.SocksHandshake fed a hostile SOCKS5 proxy's answers: only ProxyRefused, the same "
            "outcome whole or in reads, the model's bytes sent (the password only after method 2 was "
            "chosen) and tunnel bytes", 0.3))
_add(Target("auth-token", lambda: _lazy("authtoken_targets", "make_auth_token"), 1024,
            "gentoken.TokenPolicy.verify on issued, renewed, garbled, cut, re-encoded, forged (other key, "
            "other user) and spliced tokens over time: its verdict is 2.6's auth_token.c rules' on what "
            "we issued (VALID only for our token, that user, that session, in its window)", 0.3))
_add(Target("proxy-client", lambda: _lazy("proxy_targets", "make_proxy_client"), 4096,
            "a client gateway whose proxy (HTTP without or with basic auth, SOCKS5) answers with the input's "
            "chunks over time, closing when told: nothing escapes, a failure per attempt at most, the client "
            "tries again; on each connection it sent only what the exchange allowed (credentials only in a "
            "basic request, nothing after the request before 200 or the SOCKS reply); the log bounded and "
            "without the password", 0.4))
_add(Target("iv-proto", lambda: _lazy("authtoken_targets", "make_iv_proto"), 1024,
            "a peer's peer-info: IV_PROTO / IV_NCP / IV_MTU as peer_info_int and iv_proto read them, against "
            "glibc's sscanf as 2.6.14 calls it (IV_PROTO taken only above 0)", 0.2))
_add(Target("refusal-remnant", lambda: _lazy("refusal_targets", "make_refusal_remnant"), 2048,
            "a refused UDP login's remnant (refusals.py) under random, shaped, replayed, spoofed and "
            "flooded packets and time: it sends only its own messages, to its own address, within "
            "REFUSAL_HOLD and a count per message; reads acks only; no session comes of it", 0.3))
# fuzz48: the LAN DNS forwarder's sockets (no target imported dns_forwarder.py).
_add(Target("dns-tcp", lambda: _lazy("dns_tcp_targets", "make_dns_tcp"), 8192,
            "the LAN DNS forwarder's socket layer on fake sockets: LAN hosts' TCP streams (split anywhere, "
            "bad lengths, pipelined past a batch, not reading their answers), upstream datagrams and a "
            "truncated answer's TCP retry stream, time and tunnel changes: queries taken are the stream's "
            "messages in order (all of them while open, closed at a bad length), answers whole frames of the "
            "host's query IDs, buffers and sockets bounded", 0.3))
# fuzz48: a hostile server's pushes applied to the host (no target reached gateway/tunnel.py).
_add(Target("tunnel-push", lambda: _lazy("tunnel_targets", "make_tunnel_push"), 4096,
            "PUSH_REPLY texts applied in turn by the client's TunnelNetwork on a fake kernel (six profiles, "
            "client or router mode, two servers, route-delay's routes): only the errors the client takes "
            "as a push it cannot set up escape; the server never routed into the TUN, no LAN host either, the "
            "TUN holding exactly the push's addresses; after close the host's addresses and routes as before", 0.3))
# fuzz48: the kernel's replies to our rtnetlink requests (rtnl.py's request and its readers).
_add(Target("rtnl-reply", lambda: _lazy("rtnl_targets", "make_rtnl_reply"), 4096,
            "the kernel's answers (ACKs, errors, dumps; cut, of other sequence numbers, without their end) to "
            "Rtnl's addrs / addr_flush / route_get / default_routes / route_add: only NetlinkError or the "
            "timeout escape, no read past the datagrams, every answer well-formed and of the link asked", 0.2))

# fuzz49: the management interface before its password (TCP off loopback: the prompt, the login
# throttle, over-long lines), and the modules no target took (crresponse.py, layer2.py).
_add(Target("mgmt-login", lambda: _lazy("mgmt_login_targets", "make_mgmt_login"), 4096,
            "scripts of management connections from 6 addresses (an IPv4 host also as ::ffff:, an IPv6 /64) "
            "to a password-protected, throttled interface: lines, the password, over-long lines, EOF, slow "
            "readers, time: authenticated only by the password, nothing but prompts before it, wrong "
            "passwords within the throttle's per-source and global promise, no command run from an over-long "
            "line, slots, buffers and warnings bounded", 0.4))
_add(Target("cr-runs", lambda: _lazy("crresponse_targets", "make_cr_runs"), 512,
            "client-crresponse's slots (crresponse.py) under the answers of 6 waiting logins and the ends of "
            "their runs: at most the limit running, one per login, one waiting per login (the newest), none "
            "started twice or after it was no longer wanted, oldest first, no answer waiting with room to run", 0.1))
_add(Target("cr-response", lambda: _lazy("crresponse_targets", "make_cr_response"), 4096,
            "CR_RESPONSE texts (any bytes, cut, several a record) from a client whose login waits for the "
            "management client: no internal error, what the management client reads is printable lines only, "
            "each >CLIENT:CR_RESPONSE of the waiting CID/KID, at most 8 per key", 0.3))
_add(Target("layer2-config", lambda: _lazy("layer2_targets", "make_layer2_config"), 1024,
            "a dev tap server's server / server-bridge / ifconfig-pool / nopool / push lines: only ConfigError, "
            "and for what the parser takes the pool (layer2.py) within 2.6's 65,536 addresses and its subnet, "
            "never the device's own address, the pushes the config's plus the one route-gateway 2.6 adds", 0.2))
_add(Target("client-control", lambda: _lazy("client_control_targets", "make_client_control"), 4096,
            "a hostile server's control texts (PUSH_REPLY, AUTH_PENDING, INFO/INFO_PRE, RESTART, HALT, "
            "AUTH_FAILED, EXIT), raw TLS plaintext, renegotiations, kills and time, to an established client "
            "gateway (client.py): no internal error on either side, the client's log bounded per step", 0.4))

# fuzz50: what fuzz49's measure left untaken: the client-crresponse command path in ops.py, the
# login throttle's table trimming past 4,096 sources.
_add(Target("cr-command", lambda: _lazy("cr_command_targets", "make_cr_command"), 4096,
            "CR_RESPONSE answers and raw control plaintext from two clients whose logins wait for a deferred "
            "auth-user-pass-verify, to a server with client-crresponse (commands recorded, ended by the input: "
            "ok, failed, after the login or its client went away): no internal error, commands only for a "
            "waiting login with its control file, username and the answer in a file, one per login and "
            "crresponse.RUNNING in all, a failed command refuses its login", 0.3))
_add(Target("mgmt-throttle", lambda: _lazy("mgmt_throttle_targets", "make_mgmt_throttle"), 1024,
            "the management login throttle (mgmt_throttle.py) as management.py drives it, its tables' bound made "
            "64, under sweeps of up to 200 IPv4/IPv6/::ffff: sources, logins and time: both tables within it, the one "
            "forgotten the least recently missed, misses per source and from untrusted sources within the "
            "documented buckets, the refusal warning at most every 10 s, is_trusted of any text False", 0.2))


def _make_selftest():
    """Only with FUZZ_SELFTEST=1: a target that raises on b"K..." and hangs on b"H...", to check
    that the runner reports both (tests/fuzz/test_fuzz_short.py)."""
    import time

    def one(data: bytes) -> None:
        if data[:1] == b"K":
            raise KeyError("selftest")
        if data[:1] == b"H":
            time.sleep(3600)
    return one


if __import__("os").environ.get("FUZZ_SELFTEST") == "1":
    _add(Target("selftest", _make_selftest, 64, "runner self-test"))
