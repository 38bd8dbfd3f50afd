"""Directives for running a server in operation: revocation (crl-verify), the management
interface, the status file, persistent pool addresses and client-connect/-disconnect scripts.

Kept in their own module (issue 12) so the other directive modules stay as they were. Scripts run
only with `script-security 2`, as in OpenVPN; in the VM image (the appliance is PID 1, or
VPN_APPLIANCE_NO_SCRIPTS is set) they are refused with file:line, since it runs no scripts.
"""
from __future__ import annotations

import os

from .directives import Registry
from .parser import ParseState

reg = Registry()


def scripts_forbidden() -> bool:
    """The VM image (PID 1) runs no scripts."""
    return os.getpid() == 1 or bool(os.environ.get("VPN_APPLIANCE_NO_SCRIPTS"))


@reg.apply("crl-verify", why="server: refuse certificates a CRL file (or `DIR dir` of serial-named files) revokes; "
           "re-read when it changes", sets=("crl_verify",), used_by="tls", nargs=(1, 2), access=True, inline=True)
def _crl_verify(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if inline is not None:
        p.set("crl_verify", ("inline", inline))
        return
    if len(a) == 2:
        if a[1] != "dir":
            p.err(d, f"expected `crl-verify FILE` or `crl-verify DIR dir`, got {a[1]!r}")
            return
        p.set("crl_verify", ("dir", p.path_arg(a[0])))
        return
    path = p.path_arg(a[0])
    if not os.path.exists(path):
        p.err(d, f"cannot read {a[0]}: no such file")
        return
    p.set("crl_verify", ("file", path))


@reg.apply("management", why="server: the management interface (`PATH unix`, or 127.0.0.1 PORT [PWFILE])",
           sets=("management",), used_by="pump", nargs=(2, 3))
def _management(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if a[1] == "unix":
        if len(a) == 3:
            p.err(d, "a unix socket takes no password file here (use file permissions)")
            return
        p.set("management", (p.path_arg(a[0]), "unix", None))
        return
    port = p.int_arg(d, a[1], 1, 65535)
    if port is None:
        return
    if a[0] not in ("127.0.0.1", "localhost", "::1"):
        p.err(d, f"the management interface listens on localhost only, not {a[0]}")
        return
    pw = None
    if len(a) == 3:
        if a[2] == "stdin":
            p.err(d, "a password from stdin is not supported; give a file")
            return
        pw = p.path_arg(a[2])
    p.set("management", ("127.0.0.1" if a[0] == "localhost" else a[0], port, pw))


@reg.apply("status", why="server: write the client list to FILE every N seconds (default 60)",
           sets=("status",), used_by="pump", nargs=(1, 2))
def _status(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[1], 1, 86400) if len(a) == 2 else 60
    if n is not None:
        p.set("status", (p.path_arg(a[0]), n))


@reg.apply("status-version", why="server: the status file's format (1, 2 or 3)", sets=("status_version",),
           used_by="pump", nargs=(0, 1))
def _status_version(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], 1, 3) if a else 1
    if n is not None:
        p.set("status_version", n)


@reg.apply("ifconfig-pool-persist", why="server: keep pool addresses per common name in FILE across restarts",
           sets=("ifconfig_pool_persist",), used_by="server", nargs=(1, 2))
def _pool_persist(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[1], 0, 86400) if len(a) == 2 else 600
    if n is not None:
        p.set("ifconfig_pool_persist", (p.path_arg(a[0]), n))


@reg.apply("script-security", why="scripts run only at level 2 or more (as OpenVPN)", sets=("script_security",),
           used_by="pump", nargs=(1, 1))
def _script_security(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], 0, 3)
    if n is not None:
        p.set("script_security", n)


def _script(field: str):
    def handler(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
        if scripts_forbidden():
            p.err(d, "the VM image runs no scripts")
            return
        p.set(field, [p.path_arg(a[0])] + a[1:])
    return handler


reg.apply("client-connect", why="server: run a command when a client connects (non-zero exit refuses it; "
          "the file it writes adds options)", sets=("client_connect",), used_by="pump", nargs=(1, None),
          access=True)(_script("client_connect"))
reg.apply("client-disconnect", why="server: run a command when a client disconnects",
          sets=("client_disconnect",), used_by="pump", nargs=(1, None))(_script("client_disconnect"))
