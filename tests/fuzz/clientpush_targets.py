"""The `client-push` target: what a server pushes to one client (appliance/openvpn/clientpush.py)
from the operator's client-config-dir file and a client-connect script's output.

Both files are text another program or person wrote about a client whose common name the
client's certificate chose; a script's output often carries what the client sent (a username, a
peer-info value). The fuzzed text is parsed as 2.6 reads such a file (`parse_ccd`: ConfigError is
its documented refusal) and the push is built for a client on a fresh dispatcher (pool, IPv6
pool, server pushes, ifconfig-push-constraint) -- `_push_for`/`connect_options` on a stand-in
session, the private path the push request and the client-connect verdict take (there is no
public hook for "push to this client now" without a TLS handshake per input).

First byte: bit 0 the first text is the client's own file (else DEFAULT, the client having none),
bit 1 client-connect (the second text is its output file), bit 2 ccd-exclusive, bit 3 an IPv6
pool, bit 4 another client already holds the pool's first address and the name, bit 5
duplicate-cn, bit 6 `compress migrate` for a client framing for compression. Then the ccd file,
`_SEP`, the client-connect file.

Oracles beyond "never raises" (ConfigError from parse_ccd, ClientRefused from the push):
nothing gets into the push but the server's own push lines, its addressing, the two files' `push`
lines, one `ifconfig` and one `ifconfig-ipv6` line with valid addresses, and the compression
line; no option holds a byte a client refuses a PUSH_REPLY for; a push-remove'd ifconfig is not
pushed; without push-reset the server's own lines stay unless a push-remove took them; the
push's size bounded by its parts, no option longer than a ccd line, every PUSH_REPLY message
within what a client reads and taken by it whole (as sent, in ASCII); the client's iroutes within max-routes-per-client; a
client-connect verdict that fails is counted as our bug.
"""
from __future__ import annotations

import ipaddress
import types

from appliance.openvpn.addresspool import AddressPool6
from appliance.openvpn.config.ccd import parse_ccd
from appliance.openvpn.errors import ClientRefused, ConfigError
from appliance.openvpn.keymethod import (MAX_TEXT_MESSAGE, build_push_reply, refused_in_control_text,
                                         split_text_messages_untrusted)
from appliance.openvpn.peernames import to_bytes
from appliance.openvpn.server_model import ClientRecord

_SEP = b"\xff\xfe"
CN = "client-one"
SERVER_PUSH = ["route 198.18.100.0 255.255.255.0", "dhcp-option DNS 198.18.0.53", "route-ipv6 2001:db8:1::/64"]
MAX_ROUTES = 6
OPTION_LINE_SIZE = 256      # a ccd line's bound (config/lexer.py), so a pushed option's


class _Session:
    """What the push reads of a client's Session."""

    def __init__(self, owner, cn: str, comp: bool) -> None:
        self.owner = owner
        self.peer_username = None
        self.peer_common_name = cn
        self.peer_uses_comp = comp
        self.peer_info = {"IV_COMP_STUBv2": "1"} if comp else {}
        self.peer_occ_cipher = None          # (no options-string cipher: ciphers.occ_cipher)
        self.established = False
        self.restart_sent = False           # (told RESTART/HALT: no push, clientpush.py)
        self.comp = None
        # What a per-client file's session lines set or check (compat45: clientpush._session_options).
        self.ping_interval, self.ping_restart = 10, 60
        self.cipher = "AES-256-GCM"
        self.cfg = types.SimpleNamespace(comp_stub_only=True, data_ciphers=("AES-256-GCM",),
                                         data_ciphers_fallback=None)


def _ok_ifconfig(o: str) -> bool:
    w = o.split(" ")
    try:
        if w[0] == "ifconfig" and len(w) == 3:
            ipaddress.IPv4Address(w[1])
            ipaddress.IPv4Address(w[2])
            return True
        if w[0] == "ifconfig-ipv6" and len(w) == 3:
            ipaddress.IPv6Interface(w[1])
            ipaddress.IPv6Address(w[2])
            return True
    except ValueError:
        return False
    return False


def _check(opts: list[str], d, rec, files: list, sel: int) -> None:
    from_files = [p for c in files for p in c.push]
    allowed = set(SERVER_PUSH) | set(from_files) | {"compress stub-v2", "comp-lzo no"}
    for part in d.st.addressing_push or ((), ()):
        allowed |= set(part)
    n_if = n_if6 = 0
    for o in opts:
        if not isinstance(o, str):
            raise AssertionError(f"a pushed option that is no text: {o!r}")
        if refused_in_control_text(o) or "\0" in o:
            raise AssertionError(f"a pushed option a client refuses the whole push for: {o!r}")
        if o.startswith("ifconfig ") and o not in from_files:
            n_if += 1
        elif o.startswith("ifconfig-ipv6 ") and o not in from_files:
            n_if6 += 1
        elif o not in allowed:
            raise AssertionError(f"pushed, from nowhere: {o!r}")
        if o.startswith(("ifconfig ", "ifconfig-ipv6 ")) and o not in allowed and not _ok_ifconfig(o):
            raise AssertionError(f"a malformed address line pushed: {o!r}")
    if n_if > 1 or n_if6 > 1:
        raise AssertionError(f"{n_if} ifconfig and {n_if6} ifconfig-ipv6 lines pushed")
    # A block holds for the connection (the later file's ifconfig-ipv6 line may lift the IPv6 one)
    # and takes out every such line, a `push "ifconfig ..."` of the files' too.
    blocked6 = False
    for c in files:
        if c.block_ifconfig_ipv6 is not None:
            blocked6 = c.block_ifconfig_ipv6
    if any(c.block_ifconfig for c in files) and any(o.startswith("ifconfig ") for o in opts):
        raise AssertionError("push-remove ifconfig, and an ifconfig pushed")
    if blocked6 and any(o.startswith("ifconfig-ipv6 ") for o in opts):
        raise AssertionError("push-remove ifconfig-ipv6, and an ifconfig-ipv6 pushed")
    if not any(c.push_reset or c.push_remove for c in files):
        for o in SERVER_PUSH:
            if o not in opts:
                raise AssertionError(f"the server's {o!r} lost without push-reset or push-remove")
    if len(opts) > len(SERVER_PUSH) + sum(len(p) for p in (d.st.addressing_push or ())) + len(from_files) + 3:
        raise AssertionError(f"{len(opts)} options pushed")
    for o in opts:
        if len(to_bytes(o)) > OPTION_LINE_SIZE:
            raise AssertionError(f"a pushed option of {len(to_bytes(o))} bytes")
    # What a client reads: every PUSH_REPLY message within its limit, taken whole, as it was sent.
    for m in build_push_reply(opts):
        raw = to_bytes(m)
        if len(raw) > MAX_TEXT_MESSAGE:
            raise AssertionError(f"a PUSH_REPLY of {len(raw)} bytes, a client reads {MAX_TEXT_MESSAGE}")
        got, refused = split_text_messages_untrusted(raw + b"\0")
        # (bytes that are no UTF-8, or U+0080-U+009F, a client of ours escapes: as sent in ASCII)
        if refused or len(got) != 1 or (raw.isascii() and to_bytes(got[0]) != raw):
            raise AssertionError(f"a client does not read the PUSH_REPLY as sent: {refused!r}")
    if len(rec.iroutes) + len(rec.iroutes6) > MAX_ROUTES:
        raise AssertionError(f"{len(rec.iroutes) + len(rec.iroutes6)} iroutes past max-routes-per-client")


def _parse(text: bytes):
    try:
        return parse_ccd(text.decode("utf-8", "surrogateescape"), "<fuzz-ccd>")
    except ConfigError:
        return None


def make_client_push(grab=None):
    """`grab(dispatcher, record)`: called with the client once its push was checked (client-learn)."""
    from .targets import _dispatcher

    def one(data: bytes) -> None:
        if len(data) < 2:
            return
        sel = data[0]
        first, _, second = data[1:].partition(_SEP)
        own = _parse(first)
        if own is None:
            return
        d = _dispatcher("plain")
        d.st.max_routes_per_client = MAX_ROUTES
        d.st.push = list(SERVER_PUSH)
        d.st.ccd_exclusive = bool(sel & 4)
        d.st.duplicate_cn = bool(sel & 32)
        d.st.ifconfig_push_constraint = (int(ipaddress.IPv4Address("198.19.0.0")), 0xFFFFFFF8)
        if sel & 8:
            d.st.pool6 = AddressPool6("2001:db8:ff::/124")
        files = {CN if sel & 1 else "DEFAULT": own}
        d.st.ccd = files.get
        d.st.defer_connect = bool(sel & 2)
        if sel & 16:
            other = ClientRecord(session=_Session(None, CN, False), addr=("198.18.3.4", 1), peer_id=1)
            other.session.owner = other
            other.common_name = CN
            d.st.pool.lease("198.19.0.2")
            other.vaddr = other.pool_lease = "198.19.0.2"
            d.by_addr[other.addr] = other
        rec = ClientRecord(session=_Session(None, CN, bool(sel & 64)), addr=("198.18.3.5", 2), peer_id=2)
        s = rec.session
        s.owner = rec
        d.pending[rec.addr] = rec
        used = [own]
        try:
            opts = d._push_for(s)
        except ClientRefused:
            return
        except Exception as e:      # PushDeferred: the client-connect verdict comes below
            if type(e).__name__ != "PushDeferred":
                raise
            script = _parse(second)
            if script is not None and d.connect_options(rec, script) is None:
                used.append(script)
            elif script is not None:
                errs = getattr(d, "_internal_errors", [])
                if errs:
                    raise AssertionError(f"client-connect's options failed: {errs!r}")
                return
            rec.connect_state = "done"
            opts = d._push_for(s)
        _check(opts, d, rec, used, sel)
        if grab is not None:
            grab(d, rec)
    return one


def seeds() -> list[bytes]:
    ccds = [
        b"ifconfig-push 198.19.0.5 255.255.255.248\niroute 198.18.50.0 255.255.255.0\npush \"route 198.18.50.0 "
        b"255.255.255.0\"\n",
        b"push-reset\npush \"dhcp-option DNS 198.18.0.1\"\n",
        b"push-remove route\npush \"route 198.18.9.0 255.255.255.0\"\npush-remove dhcp-option\n",
        b"push-remove ifconfig\nifconfig-push 198.19.0.3 255.255.255.248\n",
        b"ifconfig-ipv6-push 2001:db8:ff::5/64 2001:db8:ff::1\niroute-ipv6 2001:db8:5::/64\n",
        b"iroute 198.18.1.0 255.255.255.0\niroute 198.18.2.0 255.255.255.0\niroute 198.18.3.0\n"
        b"iroute 198.18.4.0 255.255.255.0\niroute-ipv6 2001:db8:6::/48\niroute 198.18.5.0 255.255.255.0\n"
        b"iroute 198.18.6.0 255.255.255.0\n",
        b"disable\n",
        b"vlan-pvid 20\npush \"redirect-gateway def1\"\n",
        b"push-remove ifconfig-ipv6\npush \"route-ipv6 2001:db8:7::/64\"\n",
        b"",
    ]
    connects = [b"", b"ifconfig-push 198.18.77.2 255.255.255.0\npush \"route 198.18.77.0 255.255.255.0\"\n",
                b"push-reset\nifconfig-ipv6-push 2001:db8:ff::9/64\n", b"iroute 198.18.40.0 255.255.255.0\n"]
    out = []
    for i, c in enumerate(ccds):
        out.append(bytes((1 | (i & 1) << 3,)) + c)
        out.append(bytes((3 | 8 | 16 * (i & 1),)) + c + _SEP + connects[i % len(connects)])
    out.append(bytes((0,)) + ccds[1])
    out.append(bytes((5,)) + ccds[0])
    out.append(bytes((0x40 | 1,)) + ccds[1])
    return out


# ------------------------------------------------------------------ client-learn (fuzz34)
def _routes_to(d, rec, key) -> bool:
    """Whether anything of `key` (an address text or an iroute) still leads to `rec`."""
    if isinstance(key, str):
        if d.by_vaddr.get(key) is rec:
            return True
        return ":" not in key and d.by_vaddr4.get(ipaddress.IPv4Address(key).packed) is rec
    six = isinstance(key, ipaddress.IPv6Network)
    table = d.iroutes6 if six else d.iroutes
    return key in (rec.iroutes6 if six else rec.iroutes) or any(n == key and o is rec for n, o in table)


def make_client_learn():
    """client-push, then learn-address's side of it: what `learnable` lists for the client (its
    addresses, then its iroutes, as 2.6 learns them) and the command's verdicts on each (the
    input's second byte: bit i refuses the i-th; the rest is client-push's input), `unlearn` of a refused one with the other client
    as the one that held it before when it did (an ifconfig-push address two share).
    Oracles: each address or iroute listed once, the addresses first and only those routed to the
    client, every text one an address or network; after a refusal nothing of it routes to the
    client (by_vaddr, the packed IPv4 map, the iroute tables and the client's own lists), and an
    address the other client held goes back to it; what was not refused stays routed."""
    seen: dict = {}

    def grab(d, rec) -> None:
        seen["d"], seen["rec"] = d, rec

    push_one = make_client_push(grab)

    def one(data: bytes) -> None:
        if len(data) < 3:
            return
        seen.clear()
        push_one(data[:1] + data[2:])
        d, rec = seen.get("d"), seen.get("rec")
        if d is None:
            return
        keys = d.learnable(rec)
        if len({k for _, k in keys}) != len(keys):
            raise AssertionError(f"learnable lists a key twice: {keys!r}")
        for i, (text, key) in enumerate(keys):
            if isinstance(key, str):
                if i > 1 or d.by_vaddr.get(key) is not rec or key not in (rec.vaddr, rec.vaddr6):
                    raise AssertionError(f"learnable's {text!r} is not the client's address")
            else:
                ipaddress.ip_network(text)
        other = next((r for r in d.by_addr.values() if r is not rec), None)
        mask = data[1]
        for i, (_text, key) in enumerate(keys):
            if not mask >> (i % 8) & 1:
                continue
            prev = other if other is not None and isinstance(key, str) and key == other.vaddr else None
            d.unlearn(rec, key, prev)
            if _routes_to(d, rec, key):
                raise AssertionError(f"learn-address refused {key!r}, and it still routes to the client")
            if prev is not None and d.by_vaddr.get(key) is not prev:
                raise AssertionError(f"{key!r} did not go back to the client that held it")
        for i, (_text, key) in enumerate(keys):
            if not mask >> (i % 8) & 1 and not _routes_to(d, rec, key):
                raise AssertionError(f"{key!r} not refused, and no longer routed to the client")
    return one


def seeds_client_learn() -> list[bytes]:
    shared = b"ifconfig-push 198.19.0.2 255.255.255.248\niroute 198.18.60.0 255.255.255.0\niroute 198.18.60.0 " \
             b"255.255.255.0\niroute-ipv6 2001:db8:6::/48\niroute-ipv6 2001:db8:6::/48\n"
    # the other client's address pushed to this one too (2.6 lets two share it): a refusal gives it back
    return [s[:1] + bytes((m,)) + s[1:] for i, s in enumerate(seeds()) for m in ((0xff, 0x01, 0x06)[i % 3], 0)] \
        + [bytes((sel, m)) + shared for sel in (1 | 16, 1 | 16 | 32, 1 | 8 | 16 | 32) for m in (0xff, 0x01, 0x02)]
