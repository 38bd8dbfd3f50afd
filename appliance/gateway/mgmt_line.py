"""A management command line longer than OpenVPN 2.6 can hold, read the way 2.6 reads it.

OpenVPN 2.6 keeps a management client's input in one 1,024-byte buffer (manage.c: command_line_new
(1024), command_line_add): control bytes and NULs are dropped as they come, and a byte that finds
the buffer full is lost and empties it, so a line of L bytes (after that cleaning) reaches the
command parser as its last L mod 1025 bytes -- nothing at all when L mod 1025 is 1024 (its line
feed was the byte lost) -- and the connection goes on. A 20 kB `pid yyy...` line is answered
"ERROR: Options error: Parameter at TCP:0 is too long (256 chars max): yyy..." that way.

What we do differently, and why: the tail is parsed but never run. 2.6 runs it as a command, so a
tool that quotes untrusted text (a login's reason in `client-deny CID KID "..."`) into a line
longer than 1 KiB lets that text choose the command (`...signal SIGTERM #` then the tool's closing
quote, which `#` makes a comment). A tail that parses is answered TOO_LONG instead; a tail that
does not parse gets 2.6's own refusal (so the usual case, one long word, reads as there).

The bytes are not kept: `Overlong` holds the count and the last MAX_LINE of them, so a 1 MiB line
costs the same memory as a short one (the connection's buffer bound, management.LINE_LIMIT,
decides when a line without its end is folded in here)."""
from __future__ import annotations

MAX_LINE = 1023             # the longest line 2.6 reads whole (its buffer: 1,024 bytes, the LF included)
_CYCLE = MAX_LINE + 2       # every 1,025th byte of a longer line finds the buffer full and empties it
TOO_LONG = f"ERROR: command line longer than {MAX_LINE} bytes: not run"


class Overlong:
    """The part of one line seen so far once it is past what the connection buffers: its length
    (control bytes not counted, as 2.6 drops them before buffering) and its last bytes."""

    def __init__(self) -> None:
        self.length = 0
        self.tail = b""

    def add(self, cleaned: bytes) -> None:
        self.length += len(cleaned)
        self.tail = (self.tail + cleaned)[-MAX_LINE:]


def what_2_6_reads(length: int, tail: bytes) -> bytes | None:
    """The bytes 2.6's parser gets from a line of `length` cleaned bytes ending in `tail` (at
    least MAX_LINE of them, or the whole line): the line itself when it fits, else its last
    length mod 1025 bytes, None when 2.6 reads nothing (its line feed was lost)."""
    if length <= MAX_LINE:
        return tail[-length:] if length else b""
    keep = length % _CYCLE
    if keep == _CYCLE - 1:
        return None
    return tail[len(tail) - keep:] if keep else b""
