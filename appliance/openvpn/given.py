"""What a client was given at its connect from the server's config, kept on its record, so a reload
can tell whether the config it brings would now give that client something else.

Why: OpenVPN 2.6's SIGHUP restarts the whole server, so every client connects again and gets its
client-config-dir file, client-connect script and push lines as they are now. Ours keeps clients
across a reload (gateway/ops.py); a kept client whose file or push would now differ would keep
what it was given before -- an edited `ifconfig-push` or `iroute` never applying -- so the
reload's pass restarts exactly those (ops.py `_verdicts_in`), and keeps the others untouched.

Only what the config decides goes in: the effective ccd file's parsed options (its own, else
DEFAULT; parsed, so a comment or blank line changes nothing), the server's `push` lines, the
addressing pushes (`server`'s route-gateway/topology), and the client-connect command line (a
script added, changed or taken away would give other options; the script's own output is not
re-run -- it may differ from run to run). The pools, `topology`, `server` and `route` apply only
at a restart (ops.py RESTART_ONLY): a reload never takes a kept client's pool address away.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Given:
    ccd: object                             # the effective ccd file's CcdOptions (None: no file)
    push: tuple[str, ...]                   # the server's push lines
    addressing: tuple                       # `server`'s pushes before and after the ifconfig
    connect: tuple[str, ...]                # client-connect's command line (empty: none)


def given_under(st, ccd) -> Given:
    """What the settings `st` (a ServerSettings) and the effective ccd file `ccd` give a client."""
    return Given(ccd, tuple(st.push), tuple(tuple(x) for x in (st.addressing_push or ((), ()))),
                 tuple(getattr(st, "connect_command", ()) or ()))


def what_differs(was: Given, now: Given) -> str | None:
    """Why a client given `was` would now be given something else (for the log), else None."""
    if was.ccd != now.ccd:
        if was.ccd is None:
            return "its client-config-dir file is new"
        if now.ccd is None:
            return "its client-config-dir file is gone"
        return "its client-config-dir file changed"
    if was.connect != now.connect:
        return "the client-connect line changed"
    if was.push != now.push:
        return "the push lines changed"
    if was.addressing != now.addressing:
        return "the server's addressing pushes changed"
    return None
