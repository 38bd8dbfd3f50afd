"""What OpenVPN 2.6.14's auth-pam plugin (src/plugins/auth-pam/auth-pam.c) gives PAM, as pure
functions: the credentials it passes (cut to its buffers, a static-challenge SCRV1 password split
into password and response) and its answer to each PAM prompt.

Why pure and separate: the root helper (pam_helper.py) runs only `answer`, and the server side
prepares the credentials with `plugin_credentials`; both are tested without PAM, and a config
that works with Debian's openvpn must get the same PAM conversation here, quirks included:
- a value holding USERNAME, PASSWORD, COMMONNAME or OTP has the first of these (in that order)
  replaced wherever it occurs; an empty replacement fails the whole conversation (the plugin's
  searchandreplace returns NULL for it), so with name/value pairs an empty password never reaches
  PAM, while the default conversation answers a password prompt with the empty string;
- a prompt matches a name when, after its leading non-alphanumeric characters, it starts with
  the name, ignoring ASCII case ("Password: " matches `password`; "Your password" does not);
- with pairs, every message (even an info text) must match one, or the conversation fails;
- with pairs PAM is started without a user (a module asks for it), without them with the
  username.
"""
from __future__ import annotations

from ..frozen_record import FrozenRecord


# The plugin's struct user_pass: char[128] each (127 bytes and the NUL); remote: INET6_ADDRSTRLEN.
FIELD_MAX = 127
REMOTE_MAX = 45
N_NAME_VALUE = 16            # name/value pairs at most (the plugin refuses more)

# Linux-PAM's message styles (security/_pam_types.h).
PROMPT_ECHO_OFF, PROMPT_ECHO_ON, ERROR_MSG, TEXT_INFO = 1, 2, 3, 4

_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_DECODE_ERROR = 0xFFFFFFFF
_TOKENS = (b"USERNAME", b"PASSWORD", b"COMMONNAME", b"OTP")


class Creds(FrozenRecord):
    """What the plugin's background process holds for one check (bytes, as C strings: no NUL)."""
    username: bytes
    password: bytes
    common_name: bytes = b""
    response: bytes = b""          # the static-challenge response (OTP)
    remote: bytes = b""            # PAM_RHOST ("" : not set)


def cstring(b: bytes, limit: int) -> bytes:
    """As the plugin reads a string into a buffer: up to the first NUL, at most `limit` bytes."""
    return b.split(b"\0", 1)[0][:limit]


def base64_decode(s: bytes, size: int) -> bytes | None:
    """OpenVPN 2.6's openvpn_base64_decode (base64.c) into `size` bytes: None on an error or an
    overflow. Ported, not Python's: it stops at the first character outside the alphabet (and
    not `=`) without an error, and so decodes what a strict decoder refuses."""
    out = bytearray()
    p = 0
    while p < len(s) and (s[p] == 0x3D or s[p] in _B64):
        tok = s[p:p + 4]
        if len(tok) < 4 or 0 in tok:
            return None
        val, marker = 0, 0
        for c in tok:
            val = (val * 64) & 0xFFFFFFFF
            if c == 0x3D:
                marker += 1
            elif marker > 0:
                return None
            else:
                val = (val + (_B64.index(c) if c in _B64 else -1)) & 0xFFFFFFFF
        if marker > 2:
            return None
        val = (marker << 24) | val
        if val == _DECODE_ERROR:
            return None
        for i, shift in enumerate((16, 8, 0)):
            if i > 0 and marker >= 3 - i:
                break
            if len(out) >= size:
                return None
            out.append((val >> shift) & 0xFF)
        p += 4
    return bytes(out)


def split_scrv1(password: bytes) -> tuple[bytes, bytes]:
    """(password, response) from `SCRV1:<base64 password>:<base64 response>` (static-challenge);
    any other password, or one that does not decode, is kept whole with an empty response."""
    if not password.startswith(b"SCRV1:"):
        return password, b""
    rest = password[6:]
    if b":" not in rest:
        return password, b""
    pw64, resp64 = rest.split(b":", 1)
    pw = base64_decode(pw64, FIELD_MAX)
    resp = base64_decode(resp64, FIELD_MAX) if pw is not None else None
    if pw is None or resp is None:
        return password, b""
    return cstring(pw, FIELD_MAX), cstring(resp, FIELD_MAX)


def plugin_credentials(username: bytes, password: bytes, common_name: bytes, remote: str) -> Creds | None:
    """The plugin's view of a login (its strings already made printable by OpenVPN's core:
    keymethod.remap_name). None: refused without asking PAM, as the plugin refuses a login with
    an empty username. The password may be empty: it goes to PAM as it is."""
    u = cstring(username, FIELD_MAX)
    if not u:
        return None
    pw, resp = split_scrv1(cstring(password, FIELD_MAX))
    return Creds(u, pw, cstring(common_name, FIELD_MAX), resp, cstring(remote.encode("ascii", "replace"), REMOTE_MAX))


def name_value_match(query: bytes | None, name: bytes) -> bool:
    """The plugin's name_value_match: `query` past its leading non-alphanumeric characters starts
    with `name`, ASCII case ignored. A prompt of only such characters matches nothing."""
    if query is None:
        return False
    i = 0
    while i < len(query) and not (chr(query[i]).isascii() and chr(query[i]).isalnum()):
        i += 1
    if i == len(query):
        return False
    return query[i:i + len(name)].lower() == name.lower()


def substitute(value: bytes, c: Creds) -> bytes | None:
    """A pair's value with the first special word it holds replaced everywhere by the client's
    string; None (the conversation fails) when that string is empty."""
    for token, repl in zip(_TOKENS, (c.username, c.password, c.common_name, c.response)):
        if token in value:
            return value.replace(token, repl) if repl else None
    return value


class ConvError(Exception):
    """The conversation fails (PAM_CONV_ERR): the module gets no answers at all."""


def answer(pairs: tuple[tuple[bytes, bytes], ...], style: int, msg: bytes | None, c: Creds) -> bytes | None:
    """The plugin's answer to one PAM message (None: no text, for an info or error message).
    Raises ConvError where the plugin's my_conv fails the conversation."""
    if pairs:
        for name, value in pairs:
            if name_value_match(msg, name):
                r = substitute(value, c)
                if r is None:
                    raise ConvError(f"no value for {value.decode('ascii', 'replace')!r}")
                return r
        raise ConvError("no name/value pair matches the prompt")
    if style == PROMPT_ECHO_OFF:
        return c.password
    if style == PROMPT_ECHO_ON:
        return c.username
    if style in (ERROR_MSG, TEXT_INFO):
        return None
    raise ConvError(f"message style {style}")
