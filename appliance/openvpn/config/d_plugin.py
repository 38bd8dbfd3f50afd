"""`plugin MODULE [ARGS]`: OpenVPN 2.6's auth-pam plugin is done natively (gateway/pam_check.py), and
so is its down-root plugin (plugins.py, host/down_root.py); every other plugin is refused at its
line, never ignored (a plugin may decide who connects).

The plugin's arguments as OpenVPN 2.6 hands them over (plugin.c plugin_option_list_add,
misc.c make_extended_arg_array): with one string after the module, that string split as a
config line (`plugin auth-pam.so "login login USERNAME password PASSWORD"`); with more, the
words as they are. The first is the PAM service; the rest name/value pairs, at most 16, checked
as the plugin checks them at its start (auth-pam.c openvpn_plugin_open_v3).
"""
from __future__ import annotations

import posixpath

from .directives import Registry
from .lexer import LexError, tokenize
from .parser import ParseState
from .plugins import down_root_line, plugin_kind

reg = Registry()

# The module's file names (Debian's and the upstream build's, README.auth-pam's), in any directory:
# the file is not loaded, so where it lies does not matter, nor whether it is there.
AUTH_PAM = frozenset({"openvpn-plugin-auth-pam.so", "openvpn-auth-pam.so"})
N_NAME_VALUE = 16


def auth_pam_args(a: list[str]) -> tuple[str, tuple[tuple[str, str], ...]] | str:
    """(service, pairs) from the words after the module, or why they are refused."""
    if len(a) == 1:
        try:
            words = tokenize(a[0])
        except LexError as e:
            return f"its argument string: {e}"
    else:
        words = list(a)
    if not words or not words[0]:
        return "needs a PAM service name (as OpenVPN's plugin: \"need PAM service parameter\")"
    rest = words[1:]
    if len(rest) % 2 or len(rest) // 2 > N_NAME_VALUE:
        return (f"bad name/value list length ({len(rest)} words after the service; pairs, at most "
                f"{N_NAME_VALUE}), as OpenVPN's plugin refuses it")
    return words[0], tuple((rest[i], rest[i + 1]) for i in range(0, len(rest), 2))


@reg.apply("plugin", why="OpenVPN's auth-pam plugin (server), done natively: each login's username and "
           "password checked through PAM as the plugin does, by a helper kept as root (gateway/pam_check.py); "
           "its down-root plugin: CMD runs as root at the tunnel's end (host/down_root.py); any other plugin "
           "is refused", sets=("auth_pam", "down_root"), used_by="pump", nargs=(1, None), access=True,
           show={"auth_pam": lambda v: v if v is None else
                 f"PAM service {v[0]!r}" + "".join(f", {n!r} -> {x!r}" for n, x in v[1])})
def _plugin(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if plugin_kind(a[0]) == "down-root":
        down_root_line(p, d, a)
        return
    module = posixpath.basename(a[0])
    if module not in AUTH_PAM:
        p.err(d, f"{a[0]}: plugins are not supported (only OpenVPN's auth-pam and down-root plugins are, "
                 "natively)")
        return
    if p.o.auth_pam is not None:
        p.err(d, "a second auth-pam plugin line: one is supported")
        return
    got = auth_pam_args(a[1:])
    if isinstance(got, str):
        p.err(d, f"{a[0]}: {got}")
        return
    p.set("auth_pam", got)
