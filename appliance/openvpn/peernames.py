"""A peer's username and password as the bytes it sent, held as str.

OpenVPN 2.6 keeps a username as the bytes of the key-method message (cut at a NUL, control bytes
made `_`): `caf\\xe9` (Latin-1) and `caf\\xe8` are two users there, each with its own ccd file,
status line, duplicate-cn slot, management `kill` name and ifconfig-pool-persist line, and a
verify script sees each one's bytes. Decoded as UTF-8 with replacement, both were `caf\\ufffd` here:
one identity for two users. Decoded with `surrogateescape` (Python's own way to carry OS bytes in
a str), every byte string has its own str and comes back as the same bytes wherever it is
written (os.fsencode does this for file names and a script's environment).

One place for the decision: text that came from the peer as a name goes through `from_peer`, and
everything that writes it out (status file, management socket, pool file, control text, password
hash) encodes with `to_bytes`; log records are made safe by logsetup.NameBytesFilter. A
certificate's common name is Unicode from the start (cryptography refuses a UTF8String that is
not UTF-8, a BMPString with a lone surrogate), so it encodes the same way.
"""
from __future__ import annotations

import re

# The error handler for every conversion of a peer's name between bytes and str.
ERRORS = "surrogateescape"


def from_peer(raw: bytes) -> str:
    """The str for bytes a peer sent as a name or password: one str per byte string."""
    return raw.decode("utf-8", ERRORS)


def to_bytes(text: str) -> bytes:
    """The bytes a name stands for: what OpenVPN would hold, write or compare."""
    return text.encode("utf-8", ERRORS)


def file_text(raw: bytes) -> str:
    """Text OpenVPN 2.6 reads as bytes and passes on as bytes: a client-config-dir file, the file
    a client-connect script writes. Its `push "setenv-safe MOTD caf\\xe9"` (Latin-1) reaches the
    client as those bytes there; read as UTF-8, the file was refused (its client with it) or,
    decoded with replacement, the client got `caf\\xef\\xbf\\xbd`. Held the way a name is, so the
    push goes out (to_bytes) as the bytes the file holds."""
    return raw.decode("utf-8", ERRORS)


_ESCAPED = re.compile("[\udc80-\udcff]")


def for_display(text: str) -> str:
    """A name for a log line or an exception message: each byte that was not UTF-8 as `\\xNN`
    (a stream that encodes strictly would raise on it; stderr would show `\\udcNN`)."""
    return _ESCAPED.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", text) if _ESCAPED.search(text) else text

