"""The server's RESTART and HALT control messages, read (client) and written (server) here only.

Why a module: the flag syntax is OpenVPN's and both ends must agree on it. OpenVPN 2.6 (push.c
server_pushed_signal) reads `RESTART` or `HALT`, optionally followed by `,` and a text; a text
that starts with `[` holds flags up to `]`: `N` sends the client to its next `remote` (without
it, a client whose tunnel was up tries the same server again first: its `no_advance`), `P` keeps
cached passwords (ours come from the profile and are always kept). Its server sends `RESTART,[N]`
with `explicit-exit-notify 2` and `RESTART` with `explicit-exit-notify 1` when it stops
(multi.c multi_push_restart_schedule_exit); `client-kill CID MSG` sends MSG.
"""
from __future__ import annotations

from ..frozen_record import FrozenRecord


MAX_SHOWN = 100             # of the server's text, in our log line


class PushedSignal(FrozenRecord):
    halt: bool              # HALT: the client stops; RESTART: it reconnects
    text: str               # what followed the comma ("" if nothing did)
    next_remote: bool       # the [N] flag

    def describe(self) -> str:
        """Our log's reason: the message and, for a RESTART, where the client goes."""
        word = "HALT" if self.halt else "RESTART"
        shown = f" ('{self.text[:MAX_SHOWN]}')" if self.text else ""
        return f"server sent {word}{shown}"


def parse_pushed_signal(text: str) -> PushedSignal | None:
    """`text` is one control message (control characters already escaped); None if it is neither
    RESTART nor HALT. As OpenVPN: the keyword is matched as a prefix, and a text counts only
    after a comma; flags are read up to `]` or the end."""
    if text.startswith("RESTART"):
        halt, rest = False, text[7:]
    elif text.startswith("HALT"):
        halt, rest = True, text[4:]
    else:
        return None
    msg = rest[1:] if rest.startswith(",") else ""
    flags = msg[1:].split("]", 1)[0] if msg.startswith("[") else ""
    return PushedSignal(halt, msg, "N" in flags)


def restart_message(next_remote: bool) -> str:
    """What a stopping server sends each client: `RESTART,[N]` for `explicit-exit-notify 2`
    (go to your next remote: this server will not be back at once), `RESTART` for 1."""
    return "RESTART,[N]" if next_remote else "RESTART"
