"""fuzz47: the auth-gen-token a client sends as its password (gentoken.TokenPolicy.verify), checked
against a model of OpenVPN 2.6's auth_token.c rules.

Why: with auth-gen-token the server takes a token instead of the password, so a token the server
did not issue, or one past its time, or another session's, is a password bypass. No other
target reaches gentoken (key-method-server's clients send no token).

Input: steps of 12 bytes, `op a b c d e f g h i j k`:
  0 the server issues a token for user a % 3 at wall time `now` (a new session, or, b bit 0, a
    renewal of an earlier token of that user, which keeps its session id and initial time);
  1 time passes: (b c d) seconds, or (a bit 7) backwards (a broken clock);
  2..15 a client sends a candidate, checked for user a % 3, with this connection's first token
    (`initial`) one of those issued (b % (n + 1), the last meaning none): the candidate is an
    issued token (c picks it) as it is, or changed by op: 3 a base64 character replaced (d: where,
    e: by what, from the alphabet and beyond); 4 cut or grown (d); 5 its decoded bytes edited
    (d: where, e: xor) and re-encoded, the HMAC left; 6 forged: its body's times set to
    (now +/- e..h) and the HMAC made with another key; 7 the same with OUR key but another user's
    name (a user the token was not for); 8 another prefix or case; 9 raw bytes from the input;
    10 padding, whitespace or newlines added to the base64; 11 two tokens spliced at d; others:
    the token as it is.
Oracle, for every check (the model is the rules, not the code):
  VALID   iff the candidate is byte for byte a token we issued for that user, its issue time is
          <= now < issue + 2 * renewal, issue >= initial time, now <= initial + lifetime (when
          set), and it carries the session id of `initial` (when given);
  EXPIRED iff the same but its times fail; INVALID otherwise (forged, other user, other session,
          garbled). Nothing but a Verdict may come out.
A policy with lifetime and renewal from the input's first two bytes.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import struct

from appliance.openvpn.gentoken import PREFIX, SESSION_ID_LEN, TOKEN_LEN, TokenPolicy, Verdict

USERS = [b"alice", b"bob", b"caf\xc3\xa9"]
KEY = hashlib.sha256(b"fuzz47 auth-token key").digest()
OTHER_KEY = hashlib.sha256(b"fuzz47 another server").digest()
START = 1_790_000_000
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n\r\t.\x00\xc3"


class _Rand:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, k: int) -> bytes:
        self.n += 1
        return hashlib.sha256(b"sid%d" % self.n).digest()[:k]


def _model(issued: dict[str, tuple[bytes, int, int, bytes]], cand: str, user: bytes, now: int,
           initial: str | None, pol: TokenPolicy) -> Verdict:
    """The rules of 2.6's auth_token.c verify_auth_token and ssl_verify.c's session check, on
    what we know we issued: token -> (user, initial time, issue time, session id)."""
    rec = issued.get(cand)
    if rec is None or rec[0] != user:
        return Verdict.INVALID
    if initial is not None and issued[initial][3] != rec[3]:
        return Verdict.INVALID
    _, first, at = rec[:3]
    bad = not (at <= now < at + 2 * pol.renewal) or at < first or (pol.lifetime and now > first + pol.lifetime)
    return Verdict.EXPIRED if bad else Verdict.VALID


def _forge(body: bytes, user: bytes, key: bytes) -> str:
    return PREFIX + base64.b64encode(body + hmac.new(key, user + body, hashlib.sha256).digest()).decode()


def make_auth_token():
    def one(data: bytes) -> None:
        if len(data) < 2:
            return
        pol = TokenPolicy(KEY, lifetime=(0, 60, 3600, 86400)[data[0] & 3] + (data[0] >> 2),
                          renewal=1 + data[1] * 37)
        rnd = _Rand()
        issued: dict[str, tuple[bytes, int, int, bytes]] = {}
        order: list[str] = []
        now = START
        body = data[2:]
        for i in range(0, min(len(body), 12 * 64), 12):
            st = body[i:i + 12].ljust(12, b"\0")
            op, a, b, c, d, e = st[0] % 16, st[1], st[2], st[3], st[4], st[5]
            user = USERS[a % 3]
            if op == 0:
                olds = [t for t in order if issued[t][0] == user]
                init = olds[b % len(olds)] if (b & 1) and olds else None
                if init is not None and _model(issued, init, user, now, None, pol) is not Verdict.VALID:
                    init = None       # the server renews only a token it just accepted
                tok = pol.issue(user, now, init, rnd)
                assert TokenPolicy.session_id(tok) == (TokenPolicy.session_id(init) if init else tok[len(PREFIX):][:16])
                raw = base64.b64decode(tok[len(PREFIX):])
                first = struct.unpack(">Q", raw[SESSION_ID_LEN:SESSION_ID_LEN + 8])[0]
                assert first == (issued[init][1] if init else now)
                if tok not in issued:
                    issued[tok] = (user, first, now, raw[:SESSION_ID_LEN])
                    order.append(tok)
                continue
            if op == 1:
                dt = int.from_bytes(st[2:5], "big") % (4 * pol.renewal + 10)
                now = now - dt if a & 0x80 else now + dt
                continue
            if not order:
                continue
            initial = order[b % len(order)] if b % (len(order) + 1) < len(order) else None
            if initial is not None and issued[initial][0] != user:
                initial = None        # a connection's first token is that user's
            base = order[c % len(order)]
            cand = base
            if op == 3:
                pos = len(PREFIX) + d % (TOKEN_LEN - len(PREFIX))
                cand = cand[:pos] + chr(_B64[e % len(_B64)]) + cand[pos + 1:]
            elif op == 4:
                n = d % 100
                cand = cand[:n] if n < TOKEN_LEN else cand + "A" * (n - TOKEN_LEN + 1)
            elif op == 5:
                raw = bytearray(base64.b64decode(cand[len(PREFIX):]))
                raw[d % len(raw)] ^= e or 1
                cand = PREFIX + base64.b64encode(bytes(raw)).decode()
            elif op in (6, 7):
                raw = base64.b64decode(cand[len(PREFIX):])
                delta = int.from_bytes(st[6:10], "big", signed=True)
                times = struct.pack(">QQ", max(0, now - abs(delta) if e & 1 else now + (delta % 7)),
                                    max(0, now + delta % (2 * pol.renewal) - pol.renewal))
                fbody = raw[:SESSION_ID_LEN] + (times if d & 1 else raw[SESSION_ID_LEN:60 - 32])
                cand = _forge(fbody, user if op == 6 else USERS[(a + 1) % 3], OTHER_KEY if op == 6 else KEY)
                if op == 7:
                    user = USERS[(a + 1 + 1 + (d >> 1) % 2) % 3]       # checked for a user it was not made for
                    if user == USERS[(a + 1) % 3]:
                        user = USERS[(a + 2) % 3]
            elif op == 8:
                cand = ("sess_id_at_", "SESS_ID_AT", "SESS-ID-AT-", "")[d % 4] + cand[len(PREFIX):]
            elif op == 9:
                cand = st[6:].decode("latin-1") + cand[len(PREFIX) + 6 - d % 7:]
            elif op == 10:
                pos = len(PREFIX) + d % (TOKEN_LEN - len(PREFIX) + 1)
                cand = cand[:pos] + ("=", "\n", " ", "==", "\r\n")[e % 5] + cand[pos:]
            elif op == 11:
                other = order[e % len(order)]
                pos = d % (TOKEN_LEN + 1)
                cand = cand[:pos] + other[pos:]
            got = pol.verify(cand, user, now, initial)
            assert isinstance(got, Verdict), f"verify returned {got!r}"
            want = _model(issued, cand, user, now, initial, pol)
            assert got is want, (f"step {i // 12} op {op}: verify says {got.value}, the rules {want.value} "
                                 f"(token {cand!r:.120}, user {user!r}, now {now - START:+d}, initial "
                                 f"{'given' if initial else 'none'})")
            if got is Verdict.VALID:
                assert cand in issued and issued[cand][0] == user, f"op {op}: a token we never issued was taken"
    return one


def seeds() -> list[bytes]:
    def st(*b: int) -> bytes:
        return bytes(b).ljust(12, b"\0")
    out = []
    base = [st(0, 0), st(0, 1), st(2, 0, 0, 0), st(2, 1, 0, 0)]
    for op in range(2, 12):
        out.append(bytes((1, 20)) + b"".join(base) + st(op, 0, 0, 0, 5, 7, 0, 0, 0, 1))
    out.append(bytes((2, 3)) + st(0, 0) + st(1, 0, 0, 0, 200) + st(2, 0, 0, 0) + st(0, 0, 1) + st(2, 0, 1, 1)
               + st(1, 0x80, 0, 0, 250) + st(2, 0, 2, 0) + st(0, 2) + st(2, 2, 5, 2))
    out.append(bytes((5, 0)) + st(0, 1) + st(1, 0, 0, 1, 0) + st(2, 1, 1, 0) + st(6, 1, 1, 0, 1, 1, 0, 0, 0, 9))
    return out


# ------------------------------------------------------------------ fuzz47: IV_PROTO / IV_NCP from a peer
def make_iv_proto():
    """iv-proto: a peer's peer-info text (its key-method message's last string) read into the
    numbers the server decides by, against glibc's own sscanf as 2.6.14 calls it
    (extract_iv_proto: "IV_PROTO=%d", taken only when > 0; tls_peer_info_ncp_ver: "IV_NCP=%d").

    The model is 2.6.14's own steps with libc's functions: strstr for `NAME=` anywhere in the text
    (a C string: up to its first NUL), then sscanf "NAME=%d" from there (compat48: ours read the
    first line whose key was NAME, key and value stripped; now keymethod.peer_info_var's reading).
    Oracle: iv_proto and peer_info_int equal libc's answer; nothing but an int comes out."""
    import ctypes

    from appliance.openvpn.keymethod import KeyMethod2, iv_proto, peer_info_int
    libc = ctypes.CDLL(None)
    sscanf, strstr = libc.sscanf, libc.strstr
    strstr.restype = ctypes.c_void_p

    def c_read(raw: bytes, name: str) -> int:
        buf = ctypes.create_string_buffer(raw.split(b"\0")[0])
        at = strstr(buf, ctypes.c_char_p(name.encode() + b"="))
        if not at:
            return 0
        out = ctypes.c_int(0)
        r = sscanf(ctypes.c_char_p(at), ctypes.c_char_p(name.encode() + b"=%d"), ctypes.byref(out))
        return out.value if r == 1 else 0

    def one(data: bytes) -> None:
        text = data.decode("utf-8", "surrogateescape")
        info = KeyMethod2(b"r" * 32, b"s" * 32, "V4", peer_info=text).peer_info_dict()
        raw = text.encode("utf-8", "surrogateescape")
        for name in ("IV_PROTO", "IV_NCP", "IV_MTU"):
            got = peer_info_int(info, name)
            assert type(got) is int
            want = c_read(raw, name)
            assert got == want, f"{name} in {raw[:60]!r}: ours {got}, glibc's strstr+sscanf {want}"
        want = c_read(raw, "IV_PROTO")
        assert iv_proto(info) == (want if want > 0 else 0), f"IV_PROTO in {raw[:60]!r}"
    return one


def iv_proto_seeds() -> list[bytes]:
    return [b"IV_VER=2.6.14\nIV_PLAT=linux\nIV_PROTO=990\nIV_NCP=2\nIV_CIPHERS=AES-256-GCM:AES-128-GCM\n",
            b"IV_PROTO=-1\n", b"IV_PROTO=4294967295\nIV_NCP=4294967298\n", b"IV_PROTO=" + b"9" * 40 + b"\n",
            b"IV_PROTO= +6x\nIV_PROTO=7\n", b"IV_PROTO=seven\n", b"IV_MTU=-7\nIV_PROTO=\t\t30\n",
            b"IV_PROTO=0x10\n", b"IV_PROTO=00000000000000000000000000000000000000006\n"]
