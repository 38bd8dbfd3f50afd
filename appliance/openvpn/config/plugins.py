"""`plugin FILE ARGS...`: no shared object is loaded here; the plugins profiles use are done natively,
told apart by their file name (any directory, as Debian's /usr/lib/x86_64-linux-gnu/openvpn/plugins/
or /usr/lib/openvpn/, or the bare name OpenVPN looks up in its plugin directory). Any other plugin
is refused at its line, never ignored (a plugin may decide who connects).

openvpn-plugin-down-root.so "CMD ARGS" (host/down_root.py): CMD runs as root when the tunnel goes
down. Its words as OpenVPN 2.6 makes them (plugin.c make_extended_arg_array): one argument after the
file name is split as a config line is (so `"./down.sh a 'b c'"` is three words); two or more are
taken as they are. down-root.c runs them with execve, so CMD is a program, checked here as script
programs are (d_ops.command_argv: a missing or non-executable file refuses the config at its line,
where OpenVPN would fail only at the tunnel's end). Without CMD OpenVPN's plugin fails to load
("need down script command"): refused. OpenVPN does not hold plugins to `script-security`, nor do
we. The VM image runs no commands: refused there, skipped with `--no-scripts` like a down script.
"""
from __future__ import annotations

import os

from .lexer import LexError, tokenize
from .parser import ParseState

DOWN_ROOT = "openvpn-plugin-down-root.so"


def plugin_kind(path: str) -> str:
    """Which plugin a `plugin` line names, by its file name ("" if none we know)."""
    name = os.path.basename(path)
    return "down-root" if name in (DOWN_ROOT, "openvpn-down-root.so") else ""


def down_root_line(p: ParseState, d: str, a: list[str]) -> None:
    from .d_ops import scripts_forbidden          # (d_ops imports the parser, as this module)
    if len(a) < 2:
        p.err(d, f"{os.path.basename(a[0])} needs the command to run at down (`plugin {a[0]} \"CMD ARGS\"`)")
        return
    if len(a) == 2:
        try:
            words = tokenize(a[1])      # (at most 16 words, OpenVPN's MAX_PARMS: more is refused)
        except LexError as e:
            p.err(d, f"cannot split the command: {e}")
            return
    else:
        words = a[1:]
    if not words or not words[0]:
        p.err(d, "no command")
        return
    if p.ignore_scripts:
        p.note(d, "down-root command skipped (--no-scripts)")
        return
    if scripts_forbidden():
        p.err(d, "the VM image runs no scripts; `ignore_scripts = true` in [vpn] skips this line")
        return
    prog = p.path_arg(words[0])
    if not os.path.isfile(prog) or not os.access(prog, os.X_OK):
        p.err(d, f"{words[0]}: " + ("not an executable file" if os.path.exists(prog) else "no such file"))
        return
    p.add("down_root", (prog, words))
