"""fuzz42: targets for what the thirty-seventh and thirty-eighth sessions changed and no target had.

- `connection-block`: a client profile with `<connection>` blocks (connection_entry.py,
  config/parser.py). Oracle: only ConfigError escapes, at a line of the file; and a block's
  connection runs with the same settings whatever the other blocks say -- the entry of block i
  parsed from the whole file equals the one parsed from the file with every other block blanked
  out (same line numbers). That is 2.6's rule as the module's docstring states it: a block starts
  from the global settings at its line, its own lines override them, its keys are its own.
- `mss-tunmtu`: tun-mtu / mssfix / fragment / link-mtu / cipher / transport, globally or in a
  block, then real SYNs clamped with the rule the data path gets (settings.mss_rule). Oracle: the
  documented decision (README "mssfix": a tun-mtu other than 1500 and no mssfix, fragment or
  link-mtu clamps to tun-mtu - 40, the profile's tun-mtu deciding a block's; link-mtu alone clamps
  nothing); a config the start-up check passes leaves TCP an MSS of at least MSS_MIN + 20; each MSS
  option of a SYN comes out as min(its value, the bound), the checksum still right.
- `env-filter`: `env-filter LEVEL` (its number read as libc's atoi reads it: compared with the C
  library's own) and the >CLIENT notifications it filters, against a model of OpenVPN 2.6.14's
  manage.c (env_filter_match, and man_output_peer_info_env: at a level above 0 a CONNECT, REAUTH
  or CR_RESPONSE gives the client's IV_/UV_ peer-info lines first, unfiltered).
- `gso-refusal`: UdpTransport's GSO book-keeping (transport/udp.py) on a fake socket whose kernel
  refuses GSO (EINVAL) for destinations with a small path MTU, on a virtual clock. Oracle: every
  datagram leaves exactly once and in order; a run goes as one GSO send exactly when the model
  says (a destination's refusal holds NO_GSO_FOR seconds; GSO off for everyone for NO_GSO_FOR when
  MAX_NO_GSO refusals are in force at once -- only those still in force count); the table bounded.
"""
from __future__ import annotations

import ctypes
import dataclasses
import errno
import re

from appliance.openvpn.errors import ConfigError

from . import harness as h
from .targets import _fake_files

# ------------------------------------------------------------------ connection-block
_BASE = "client\ndev tun\nca ca.crt\ncert client.crt\nkey client.key\n"


def _reader():
    files = _fake_files()

    def read_file(path: str) -> bytes:
        name = path.rsplit("/", 1)[-1]
        if name in files:
            return files[name]
        raise FileNotFoundError(2, "No such file or directory", path)
    return read_file


_BLOCK = re.compile(r"^[ \t]*<connection>[ \t]*\r?$.*?^[ \t]*</connection>[ \t]*\r?$", re.M | re.S | re.I)


def _entry_view(o) -> dict:
    """What a connection runs with: every field a block may set, its keys, MTU and MSS decision."""
    from appliance.openvpn.config.connection_entry import KEY_FIELDS, entry_fields
    from appliance.openvpn.settings import mssfix_in_force
    names = sorted(entry_fields() | set(KEY_FIELDS) | {"tun_mtu", "link_mtu", "mssfix", "fragment", "global_tun_mtu"})
    view = {n: repr(getattr(o, n, None)) for n in names}
    view["mss"] = repr(mssfix_in_force(o))
    return view


def _errors_of(e: ConfigError) -> list[ConfigError]:
    return list(getattr(e, "errors", None) or [e])


def make_connection_block():
    from appliance.openvpn import config as options
    read_file = _reader()
    path = "/fuzz/conn.ovpn"

    def parse(text: str):
        return options.parse_config(text, path, read_file=read_file)

    def one(data: bytes) -> None:
        text = _BASE + data.decode("utf-8", "replace").replace("\0", "")
        nlines = text.count("\n") + 1
        try:
            o = parse(text)
        except ConfigError as e:
            for err in _errors_of(e):
                line = err.line
                if line is not None and getattr(line, "path", path) == path:
                    assert 1 <= int(line) <= nlines, f"error at line {line} of a {nlines}-line file: {err}"
            return
        spans = [m.span() for m in _BLOCK.finditer(text)]
        if len(spans) < 2 or len(spans) != len(o.remotes) or any(r.entry is None for r in o.remotes):
            return                      # (remote lines outside the blocks: not this oracle's case)
        whole = [_entry_view(r.entry) | {"host": r.host, "port": r.port, "proto": r.proto} for r in o.remotes]
        for i in range(len(spans)):
            alone = text
            for j in reversed(range(len(spans))):
                if j != i:
                    a, b = spans[j]
                    alone = alone[:a] + "\n" * text[a:b].count("\n") + alone[b:]
            try:
                o2 = parse(alone)
            except ConfigError as e:
                raise AssertionError(f"block {i} alone refused where the whole file parsed: {e}") from None
            mine = [_entry_view(r.entry) | {"host": r.host, "port": r.port, "proto": r.proto}
                    for r in o2.remotes if r.entry is not None]
            want = whole[i]
            assert mine and mine[0] == want, \
                f"block {i}'s connection differs with the other blocks present:\n{_diff(want, mine[0] if mine else {})}"
    return one


def _diff(a: dict, b: dict) -> str:
    return "\n".join(f"  {k}: {a.get(k)} vs {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))


def seeds_connection_block() -> list[bytes]:
    key = _fake_files()["ta.key"].decode()
    tc = _fake_files()["tc.key"].decode()
    blk = lambda body: "<connection>\n" + body + "</connection>\n"  # noqa: E731
    return [s.encode() for s in (
        blk("remote 198.18.0.1 1194 udp\n") + blk("remote 198.18.0.2 443 tcp\n"),
        "tun-mtu 1400\n" + blk("remote 198.18.0.1 1194 udp\ntun-mtu 1300\n") + blk("remote 198.18.0.2 1194\n"),
        "mssfix 1400\n" + blk("remote 198.18.0.1\nmssfix 1300\n") + blk("remote 198.18.0.2\nproto tcp\n"),
        "tls-auth ta.key 1\n" + blk(f"remote 198.18.0.1\n<tls-crypt>\n{tc}</tls-crypt>\n")
        + blk("remote 198.18.0.2\n"),
        blk(f"remote 198.18.0.1\n<tls-auth>\n{key}</tls-auth>\nkey-direction 1\n")
        + blk(f"remote 198.18.0.2\ntls-auth ta.key 1\n"),
        "link-mtu 1500\n" + blk("remote 198.18.0.1 1194 udp\n") + blk("remote 198.18.0.2 1194 tcp\n"),
        "tun-mtu 1400\n" + blk("remote 198.18.0.1\nlink-mtu 1450\n") + blk("remote 198.18.0.2\nmssfix\n"),
        "connect-retry-max 3\nmssfix 1400\n" + blk("remote 198.18.0.1\nfragment 1300\nmssfix 1300\n")
        + blk("remote 198.18.0.2\nexplicit-exit-notify 2\n"),
        blk("remote 198.18.0.1\nhttp-proxy 198.18.0.9 3128\nproto tcp\n") + blk("remote 198.18.0.2 1194 udp6\n")
        + blk("remote 198.18.0.3\nconnect-timeout 5\nconnect-retry 1 4\n"),
        blk("remote 198.18.0.1\nlocal 198.18.0.5\n") + blk("remote 198.18.0.2\nlport 5000\n"),
        "tls-crypt tc.key\n" + blk("remote 198.18.0.1\n") + blk("remote 198.18.0.2\n"),
    )]


# ------------------------------------------------------------------ mss-tunmtu
_CIPHERS = ("AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305", "AES-256-CBC", "AES-128-CBC")


def _syn(mss_values: list[int], v6: bool) -> bytearray:
    opts = b"".join(bytes((2, 4)) + m.to_bytes(2, "big") for m in mss_values)
    opts += b"\x01" * (-len(opts) % 4)
    tcp = bytearray(b"\x04\xd2\x00\x50" + bytes(8) + bytes((((20 + len(opts)) // 4) << 4, 0x02)) + b"\xff\xff"
                    + bytes(4) + opts)
    if v6:
        src, dst = bytes(15) + b"\x01", bytes(15) + b"\x02"
        ip = bytearray(bytes((0x60, 0, 0, 0)) + len(tcp).to_bytes(2, "big") + bytes((6, 64)) + src + dst)
        pseudo = src + dst + len(tcp).to_bytes(4, "big") + bytes((0, 0, 0, 6))
    else:
        src, dst = bytes((198, 19, 0, 2)), bytes((198, 18, 0, 1))
        ip = bytearray(bytes((0x45, 0)) + (20 + len(tcp)).to_bytes(2, "big") + bytes(4) + bytes((64, 6, 0, 0))
                       + src + dst)
        ip[10:12] = _csum(bytes(ip)).to_bytes(2, "big")
        pseudo = src + dst + bytes((0, 6)) + len(tcp).to_bytes(2, "big")
    tcp[16:18] = _csum(pseudo + bytes(tcp)).to_bytes(2, "big")
    return ip + tcp


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _tcp_ok(pkt: bytes, v6: bool) -> bool:
    if v6:
        tcp = pkt[40:]
        pseudo = pkt[8:40] + len(tcp).to_bytes(4, "big") + bytes((0, 0, 0, 6))
    else:
        tcp = pkt[20:]
        pseudo = pkt[12:20] + bytes((0, 6)) + len(tcp).to_bytes(2, "big")
    return _csum(pseudo + tcp) == 0


def _mss_options(pkt: bytes, v6: bool) -> list[int]:
    tcp = pkt[40:] if v6 else pkt[20:]
    opts, out, i = tcp[20:(tcp[12] >> 4) * 4], [], 0
    while i < len(opts):
        if opts[i] == 0:
            break
        if opts[i] == 1:
            i += 1
            continue
        if i + 1 >= len(opts) or opts[i + 1] < 2:
            break
        if opts[i] == 2 and opts[i + 1] == 4:
            out.append(int.from_bytes(opts[i + 2:i + 4], "big"))
        i += opts[i + 1]
    return out


def make_mss_tunmtu():
    from appliance.openvpn import config as options
    from appliance.openvpn.mss import clamp_mss
    from appliance.openvpn.settings import MSS_MIN, check_mss, mss_rule
    read_file = _reader()

    def one(data: bytes) -> None:
        if len(data) < 8:
            return
        b = data
        tun = 576 + int.from_bytes(b[0:2], "big") % 8500
        msf = int.from_bytes(b[2:4], "big") % 9100
        mode = b[4] % 8
        frag = (b[5] & 3 == 3) and 300 + b[6] * 4
        cipher = _CIPHERS[b[7] % len(_CIPHERS)]
        in_block = b[4] & 0x10
        tcp = b[4] & 0x20
        lines = []
        if b[4] & 0x40:
            lines.append(f"tun-mtu {tun}")
        mss_line = {0: "", 1: "mssfix", 2: f"mssfix {msf}", 3: f"mssfix {msf} mtu", 4: f"mssfix {msf} fixed",
                    5: "mssfix 0", 6: "link-mtu 1500", 7: f"link-mtu {tun}"}[mode]
        block_mtu = 576 + (b[1] * 7) % 8500 if b[4] & 0x80 else None
        glob = "\n".join(lines) + "\n"
        if mss_line and not in_block:
            glob += mss_line + "\n"
        if frag and not tcp:
            glob += f"fragment {frag}\n"
        glob += f"data-ciphers {cipher}\n"
        body = f"remote 198.18.0.1 1194 {'tcp' if tcp else 'udp'}\n"
        if in_block and mss_line:
            body += mss_line + "\n"
        if block_mtu is not None:
            body += f"tun-mtu {block_mtu}\n"
        text = _BASE + glob + "<connection>\n" + body + "</connection>\n"
        try:
            o = options.parse_config(text, "/fuzz/mss.ovpn", read_file=read_file)
        except ConfigError:
            return
        (r,) = o.remotes
        e = r.entry if r.entry is not None else o
        try:
            check_mss(e)
        except ConfigError:
            return
        profile_tun = o.tun_mtu
        bound = mss_rule(e, bool(tcp))(cipher, True)
        # The documented decision (README "mssfix"; settings.mssfix_in_force).
        if e.mssfix is None and not e.fragment:
            if e.link_mtu is not None:
                assert bound is None, f"link-mtu alone clamps nothing, got {bound}: {text}"
            elif profile_tun != 1500:
                assert bound == e.tun_mtu - 40, \
                    f"tun-mtu {profile_tun} (connection's {e.tun_mtu}) should clamp to {e.tun_mtu - 40}, got {bound}"
        if e.mssfix == 0:
            assert bound is None, f"mssfix 0 clamps to {bound}"
        if bound is None:
            return
        assert bound - 20 >= MSS_MIN, f"start-up check passed a config leaving TCP an MSS of {bound}: {text}"
        extra = list(data[8:16])
        for v6 in (False, True):
            mss_in = [(x * 97 + 500) % 65536 for x in extra[:4]] or [65535]
            pkt = _syn(mss_in, v6)
            before = bytes(pkt)
            clamp_mss(pkt, bound)
            lim = bound - 20 if v6 else bound
            want = [min(m, lim) for m in mss_in]
            got = _mss_options(bytes(pkt), v6)
            assert got == want, f"MSS {mss_in} clamped to {lim}: got {got}"
            assert len(pkt) == len(before) and _tcp_ok(bytes(pkt), v6), "checksum broken by the clamp"
    return one


def seeds_mss_tunmtu() -> list[bytes]:
    out = []
    for tun, msf, mode, frag, cipher in ((1400, 0, 0x40, 0, 0), (1300, 0, 0x40 | 0x10, 0, 1),
                                         (1500, 1400, 2, 0, 3), (1400, 1450, 0x40 | 3, 0, 2),
                                         (1200, 1300, 0x40 | 0x80 | 0, 0, 0), (1500, 0, 6, 0, 0),
                                         (1400, 0, 0x40 | 7, 0, 4), (1500, 100, 2, 0, 3),
                                         (1500, 0, 0x40 | 5, 3, 0), (1400, 1300, 0x40 | 0x20 | 4, 0, 1),
                                         (1400, 1300, 0x40 | 0x10 | 2, 0, 0)):
        t = tun - 576
        m = (msf - 0) % 9100
        out.append(t.to_bytes(2, "big") + m.to_bytes(2, "big") + bytes((mode, frag, 200, cipher))
                   + bytes((10, 200, 255, 3)))
    return out


# ------------------------------------------------------------------ env-filter
_ENV_NAMES_26 = ("username=", "password=", "X509_0_CN=", "tls_serial_", "untrusted_ip=", "ifconfig_local=",
                 "ifconfig_netmask=", "daemon_start_time=", "daemon_pid=", "dev=", "ifconfig_pool_remote_ip=",
                 "ifconfig_pool_netmask=", "time_duration=", "bytes_sent=", "bytes_received=", "session_id=",
                 "session_state=")
_PEER_INFO = re.compile(r"(?:IV|UV)_")


def _match_26(var: str, level: int) -> bool:
    """OpenVPN 2.6.14's env_filter_match, read from manage.c (written here from its rules)."""
    if level == 0:
        return True
    if level <= 1 and var.startswith("X509_"):
        return True
    if level <= 2:
        return var.startswith(_ENV_NAMES_26)
    return False


def model_env_filter(head: str, env: list[str], peer_info: list[str], level: int) -> list[str]:
    """What 2.6.14 prints for one >CLIENT notification at `level`: the header; at a level above 0
    for CONNECT, REAUTH and CR_RESPONSE the client's peer-info lines (IV_/UV_, in its own order)
    first, unfiltered (man_output_peer_info_env); then the environment through env_filter_match
    (its IV_ variables are no names it keeps); END."""
    out = [head]
    kind = head[len(">CLIENT:"):].split(",", 1)[0]
    if level > 0 and kind in ("CONNECT", "REAUTH", "CR_RESPONSE"):
        out += [">CLIENT:ENV," + v for v in peer_info]
    out += [">CLIENT:ENV," + v for v in env if _match_26(v, level)]
    return out + [">CLIENT:ENV,END"]


_LIBC = ctypes.CDLL(None)
_LIBC.atoi.argtypes = [ctypes.c_char_p]
_LIBC.atoi.restype = ctypes.c_int


def make_env_filter():
    from appliance.gateway.mgmt_env import EnvBlock
    from appliance.openvpn.catoi import atoi
    heads = (">CLIENT:CONNECT,0,1", ">CLIENT:REAUTH,3,4", ">CLIENT:ESTABLISHED,2", ">CLIENT:DISCONNECT,5",
             ">CLIENT:CR_RESPONSE,1,2,cmVzcG9uc2U=")

    def one(data: bytes) -> None:
        if not data:
            return
        head = heads[data[0] % len(heads)]
        arg, _, rest = data[1:].partition(b"\n")
        arg = arg.split(b"\0", 1)[0]
        # The command reader's number: glibc's atoi itself is the reference.
        try:
            text = arg.decode("ascii")
        except UnicodeDecodeError:
            text = None
        if text is not None:
            want = _LIBC.atoi(arg)
            got = atoi(text)
            assert got == want, f"atoi({text!r}) = {got}, libc says {want}"
            level = got
        else:
            level = (data[0] >> 3) - 8
        env: dict[str, str] = {}
        for v in rest.decode("utf-8", "replace").split("\n")[:64]:
            name, eq, value = v[:1000].partition("=")
            if name and eq and name != "END":
                env.setdefault(name, value)
        login = head.startswith((">CLIENT:CONNECT,", ">CLIENT:REAUTH,", ">CLIENT:CR_RESPONSE,"))
        peer = {k: v for k, v in env.items() if _PEER_INFO.match(k)}
        out = EnvBlock((head,), env, peer_info=peer if login else None).lines(level)
        flat = [f"{k}={v}" for k, v in env.items()]
        want_lines = (model_env_filter(head, flat, [f"{k}={v}" for k, v in peer.items()], level) if level
                      else [head, *(">CLIENT:ENV," + v for v in flat), ">CLIENT:ENV,END"])
        assert out == want_lines, f"env-filter {level} on {head}:\n got {out}\nwant {want_lines}"
    return one


def seeds_env_filter() -> list[bytes]:
    env = (b"IV_VER=2.6.14\nIV_PLAT=linux\nUV_X=1\nusername=u\npassword=p\nX509_0_CN=client\nX509_1_O=org\n"
           b"common_name=client\ntls_serial_0=01\nuntrusted_ip=198.18.0.2\ntime_unix=1\ndev=tun0\n"
           b"ifconfig_pool_remote_ip=198.19.0.2\nbytes_sent=1\nsession_id=abc\nIV_PROTO=990\n")
    return [bytes((k,)) + lv + b"\n" + env for k in range(5)
            for lv in (b"0", b"1", b"2", b"3", b"-1", b" 2", b"+1x", b"99999999999999999999", b"4294967297")]


# ------------------------------------------------------------------ gso-refusal
class _Kernel:
    """A fake unconnected UDP socket: GSO (UDP_SEGMENT) refused with EINVAL for a segment over the
    destination's path MTU, EMSGSIZE for one over 1472 (the device), plain sends always taken."""

    def __init__(self) -> None:
        self.pmtu: dict = {}
        self.wire: list = []            # (destination, datagram) as they left
        self.gso_calls = 0

    def setsockopt(self, *a) -> None:
        pass

    def setblocking(self, flag) -> None:
        pass

    def fileno(self) -> int:
        return -1

    def sendto(self, d, addr) -> int:
        self.wire.append((addr, bytes(d)))
        return len(d)

    def sendmsg(self, bufs, cmsg=(), flags=0, addr=None):
        seg = [c for c in cmsg if c[1] == 103]              # UDP_SEGMENT
        if seg:
            size = int.from_bytes(seg[0][2], "little")
            if size > 1472:
                raise OSError(errno.EMSGSIZE, "Message too long")
            if size > self.pmtu.get(addr, 65535):
                raise OSError(errno.EINVAL, "Invalid argument")
            self.gso_calls += 1
        for d in bufs:
            self.wire.append((addr, bytes(d)))
        return sum(len(d) for d in bufs)


def make_gso_refusal():
    from appliance.transport import udp

    def one(data: bytes) -> None:
        k = _Kernel()
        t = udp.UdpTransport(None, None, gso=True, gro=False, sock=k)
        now = [1000.0]
        t.clock = lambda: now[0]
        blocked: dict = {}          # the model: destination -> refused until
        off_until = None
        sent: list = []
        seq = 0
        i = 0
        while i + 1 < len(data) and i < 600:
            op, arg = data[i], data[i + 1]
            i += 2
            dest = ("198.18.1.%d" % (op & 0x1F), 1194)
            kind = op >> 5
            if kind == 0:                             # time passes
                now[0] += arg * 5.0
            elif kind == 1:                           # the destination's path MTU shrinks / recovers
                k.pmtu[dest] = 576 + arg * 4 if arg < 200 else 65535
            else:                                     # a batch of equal datagrams to dest
                n = 1 + (arg & 7)
                size = 100 + (arg >> 3) * 50
                batch = []
                for _ in range(n):
                    seq += 1
                    # P_DATA_V2 (opcode 9): only data packets share a GSO run (udp.py_runs)
                    batch.append(bytes((0x48,)) + seq.to_bytes(4, "big") + bytes(size - 5))
                # The model's verdict before the send.
                gso_on = off_until is None or now[0] >= off_until
                if gso_on and off_until is not None:
                    off_until = None
                b = blocked.get(dest)
                if b is not None and now[0] >= b:
                    del blocked[dest]
                    b = None
                try_gso = n >= 2 and gso_on and b is None
                calls = k.gso_calls
                t.send_batch(batch, dest)
                sent += [(dest, d) for d in batch]
                if try_gso and size <= 1472 and size > k.pmtu.get(dest, 65535):
                    blocked[dest] = now[0] + udp.NO_GSO_FOR
                    if sum(1 for x in blocked.values() if x > now[0]) >= udp.MAX_NO_GSO:
                        off_until, blocked = now[0] + udp.NO_GSO_FOR, {}
                went_gso = k.gso_calls > calls
                want_gso = try_gso and size <= min(1472, k.pmtu.get(dest, 65535))
                assert went_gso == want_gso, (f"t={now[0]} {dest} {n}x{size}: GSO {went_gso}, the model says "
                                              f"{want_gso} (refused at: {blocked}, off until {off_until})")
            assert len(t.no_gso) < udp.MAX_NO_GSO
            assert k.wire == sent, "a datagram lost, doubled or reordered"
    return one


def seeds_gso_refusal() -> list[bytes]:
    refuse = b"".join(bytes((0x20 | d, 10)) for d in range(17))         # 17 destinations' MTU 616
    sends = b"".join(bytes((0x40 | d, 7 | 8 * 20)) for d in range(17))   # 8 x 1100 bytes to each
    slow = b"".join(bytes((0x20 | d, 10, 0x40 | d, 7 | 8 * 20, 0, 255)) for d in range(17))
    return [refuse + sends, refuse + sends + bytes((0, 121)) + sends, slow,
            bytes((0x21, 10, 0x41, 0xff, 0x41, 0x07, 0, 120, 0x41, 0xff, 0x21, 255, 0, 121, 0x41, 0xff)),
            bytes((0x41, 0xff)) * 4]


# ------------------------------------------------------------------ pull-conn
# What a connection's state may differ in whoever connected before: the server's own numbers.
_PULL_SKIP = {"ifconfig", "ifconfig_ipv6", "peer_id", "auth_token", "auth_token_user", "cipher", "tls_ekm"}


def _pull_state(w, c) -> dict:
    """What the client runs its connection with once up: the pushed options merged with the
    profile (as the tunnel applied them), the inactivity check, session-timeout, shaper, client-nat."""
    p = w.client_nets[0].pushed
    now = w.clock()
    st = {"pushed": None if p is None else {f.name: repr(getattr(p, f.name)) for f in dataclasses.fields(p)
                                             if f.name not in _PULL_SKIP}}
    i = c._inactive
    st["inactive"] = None if i is None else (i.seconds, i.min_bytes)
    for name in ("inactive", "session"):
        at = c.pump.timers._due.get(name)
        st[f"timer {name}"] = None if at is None else round(at[0] - now)
    st["shaper"] = c.shaper.rate if c.shaper is not None else 0
    nat = c.conn.dp.nat if c.conn is not None else None
    st["client-nat"] = None if nat is None else repr(nat.rules)
    return st


def _push_lines(text: str) -> str | None:
    out = []
    for ln in text.split("\n")[:8]:
        ln = ln.strip().replace('"', "").replace("\\", "").replace("\r", "")
        if ln:
            out.append(f'push "{ln}"')
    return "\n".join(out)


def make_pull_conn():
    """Two servers in turn (one server reloaded between, as test_pull_reset.py): the first pushes
    the input's first part, the second its second part. Oracle (README, "Thirty-eighth session
    (helper pull41)": each pushed value lasts the connection whose server pushed it): once the
    client is up on the second, its state equals a fresh client's that only ever met the second."""
    import signal

    from appliance.gateway.loop import Signals
    from lab.gateway_world import World, client_conf, make_pki, server_conf
    pki = make_pki(["client0"])
    profile = "inactive 900\nsession-timeout 1800\nroute-metric 7\n"

    def up(w, c) -> bool:
        return w.run(lambda: c.conn is not None and c.conn.was_up, max_time=60, max_steps=20_000)

    def one(data: bytes) -> None:
        a_text, _, b_text = data.decode("latin-1").partition("\xff")
        pa, pb = _push_lines(a_text), _push_lines(b_text)
        try:
            w = World()
            gw, holder = w.add_reloadable_server(server_conf(pki, extra=pa))
            confb = server_conf(pki, extra=pb)
            from appliance.openvpn import config as options
            options.parse_config(confb, "/mem/server.conf")
        except ConfigError:
            return
        c = w.add_client(client_conf(pki, extra=profile))
        if not up(w, c):
            return                                  # (a push the client refuses: not this oracle's case)
        holder["conf"] = confb
        if not gw.ops.reload():
            return
        before = c.connections
        c.signals = sig = Signals((signal.SIGUSR1,))
        sig.pending.append(signal.SIGUSR1)
        c._on_signal()
        if not w.run(lambda: c.connections == before + 1 and c.conn is not None and c.conn.was_up,
                     max_time=60, max_steps=20_000):
            return
        after_a = _pull_state(w, c)
        w2 = World()
        w2.add_server(confb)
        c2 = w2.add_client(client_conf(pki, extra=profile))
        if not up(w2, c2):
            raise AssertionError("the second server's push brought a fresh client up only after the first's")
        fresh = _pull_state(w2, c2)
        assert after_a == fresh, f"a first server's push outlived its connection:\n{_diff(fresh, after_a)}"
    return one


def seeds_pull_conn() -> list[bytes]:
    return [s.encode("latin-1") for s in (
        "inactive 3600 1000000000\nsession-timeout 7200\xffroute 10.9.0.0 255.255.0.0",
        "route-metric 50\nroute 10.8.0.0 255.255.0.0\xffroute 10.8.0.0 255.255.0.0",
        "shaper 100\xff",
        "client-nat snat 198.19.0.0 255.255.255.0 10.1.0.0\xffping 5\nping-restart 30",
        "block-ipv6\ndhcp-option DNS 198.18.9.9\xffdhcp-option DOMAIN example.org",
        "dns server 1 address 198.18.9.9\ndns search-domains a.example\xffdns server 2 address 198.18.9.8",
        "inactive 20\xffinactive 0",
        "tun-mtu 1400\nroute-delay 5\xffredirect-gateway def1",
    )]


# ------------------------------------------------------------------ mgmt-words
MAX_PARMS = 16                      # options.h
PARM_SIZE = 256                     # options.h OPTION_PARM_SIZE


def _c_space(ch: str) -> bool:
    return ch == "\0" or ch in " \t\n\v\f\r"        # isspace in the C locale, and the NUL


def model_parse_line(line: str) -> list[str] | str:
    """OpenVPN 2.6.14's parse_line (options.c) as the management reader calls it (n = MAX_PARMS,
    file "TCP", line 0), written here from its states: the words, or the error it prints
    (without "ERROR: "). Reference for command_words."""
    INITIAL, QUOTED, UNQUOTED, DONE, SQUOTED = 0, 1, 2, 3, 4
    words: list[str] = []
    state, backslash, parm = INITIAL, False, ""
    chars = line + "\0"
    for in_ in chars:
        out = ""
        if not backslash and in_ == "\\" and state != SQUOTED:
            backslash = True
        else:
            if state == INITIAL:
                if not _c_space(in_):
                    if in_ in ";#":
                        break
                    if not backslash and in_ == '"':
                        state = QUOTED
                    elif not backslash and in_ == "'":
                        state = SQUOTED
                    else:
                        out, state = in_, UNQUOTED
            elif state == UNQUOTED:
                if not backslash and _c_space(in_):
                    state = DONE
                else:
                    out = in_
            elif state == QUOTED:
                if not backslash and in_ == '"':
                    state = DONE
                else:
                    out = in_
            elif state == SQUOTED:
                if in_ == "'":
                    state = DONE
                else:
                    out = in_
            if state == DONE:
                words.append(parm)
                state, parm = INITIAL, ""
            if backslash and out and not (out in '\\"' or _c_space(out)):
                return "bad-backslash"
            backslash = False
        if out and out != "\0":
            if len(parm) >= PARM_SIZE:
                return f"Options error: Parameter at TCP:0 is too long ({PARM_SIZE} chars max): {parm[:PARM_SIZE - 1]}"
            parm += out
        elif out == "\0":
            pass                        # (a C string: the NUL stores nothing readable)
        if len(words) >= MAX_PARMS:
            break
    else:
        pass
    if state == QUOTED:
        return 'Options error: No closing quotation (") in TCP:0'
    if state == SQUOTED:
        return "Options error: No closing single quotation (') in TCP:0"
    if state != INITIAL:
        return f"Options error: Residual parse state ({state}) in TCP:0"
    return words


def make_mgmt_words():
    from appliance.gateway.management import _BAD_BACKSLASH, command_words

    def one(data: bytes) -> None:
        line = data.decode("latin-1").split("\n", 1)[0].replace("\0", "")
        want = model_parse_line(line)
        try:
            got: list[str] | str = command_words(line)
        except ValueError as e:
            got = "bad-backslash" if str(e) == _BAD_BACKSLASH else str(e)
        assert got == want, f"{line!r}: ours {got!r}, 2.6's parse_line {want!r}"
    return one


def seeds_mgmt_words() -> list[bytes]:
    return [s.encode("latin-1") for s in (
        'kill "evil guy"', "kill 'a b'", "\\ pid", "pid\\", 'echo "a\\"b"', "a\\b", "a\\\\b", "#x", "x ;y",
        "w " * 20, "x" * 300, '"' + "y" * 260 + '"', "client-kill 1 'HALT", 'a"b c', "a'b' c", "\\#c",
        "\\\"q", 'x "abc', "\t\vpid\f", "a\\ b", "\xe9t\xe9 \xa0x", "state\\\t1",
    )]
