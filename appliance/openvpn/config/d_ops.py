"""Directives for running a server in operation: revocation (crl-verify), the management
interface, the status file, persistent pool addresses and client-connect/-disconnect scripts.

The client's own scripts (`up`, `down`, `route-up`, `route-pre-down`, `ipchange`) are read here
and checked against the rest of the profile once it is read (config/client_scripts.py: the
role, script-security, user/group); gateway/client_scripts.py runs them. The two well-known DNS
helpers that server install scripts put in Linux profiles (update-resolv-conf,
update-systemd-resolved, in any directory, with any arguments) are taken as a request for the
built-in host DNS handling (appliance/host/resolver.py), with a note, and not run;
`vpn-appliance run --no-scripts` skips every other script line.

Kept in their own module (issue 12) so the other directive modules stay as they were. Scripts run
only with `script-security 2`, as in OpenVPN; in the VM image (the appliance is PID 1, or
VPN_APPLIANCE_NO_SCRIPTS is set) they are refused with file:line, since it runs no scripts.
"""
from __future__ import annotations

import ipaddress
import os
import shlex

from ..regular_file import CRL, POOL, named_file_problem
from .directives import Registry
from .lexer import LexError, tokenize
from .parser import ParseState

reg = Registry()


def scripts_forbidden() -> bool:
    """The VM image (PID 1) runs no scripts."""
    return os.getpid() == 1 or bool(os.environ.get("VPN_APPLIANCE_NO_SCRIPTS"))


@reg.apply("crl-verify", why="refuse peer certificates (a server's clients, a client's server) a CRL file "
           "(or `DIR dir` of serial-named files) revokes; re-read when it changes", sets=("crl_verify",), used_by="tls", nargs=(1, 2), access=True, inline=True)
def _crl_verify(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if inline is not None:
        p.set("crl_verify", ("inline", inline))
        return
    if len(a) == 2:
        if a[1] != "dir":
            p.err(d, f"expected `crl-verify FILE` or `crl-verify DIR dir`, got {a[1]!r}")
            return
        path = p.path_arg(a[0])
        if not os.path.isdir(path):
            # Looked up at each handshake (a file named after the serial revokes it): a directory
            # that is not there revoked nothing, and every certificate got in. OpenVPN 2.6
            # refuses it at start ("--crl-verify directory fails with ... No such file").
            why = "no such directory" if not os.path.exists(path) else "not a directory"
            p.err(d, f"cannot read {a[0]}: {why}")
            return
        p.set("crl_verify", ("dir", path))
        return
    path = p.path_arg(a[0])
    if not os.path.exists(path):
        p.err(d, f"cannot read {a[0]}: no such file")
        return
    # Read at each change, on the event loop when small: a pipe blocked it, a device grew
    # the process without end (regular_file.py). Refused here with its line.
    why = named_file_problem(path, CRL)
    if why is not None:
        p.err(d, f"cannot read {a[0]}: {why}")
        return
    p.set("crl_verify", ("file", path))


@reg.apply("management", why="the management interface, server or client (`PATH unix`, `127.0.0.1 PORT [PWFILE]`, or "
           "any other address literal `IP PORT PWFILE`: a password is required off loopback)",
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
    host = management_host(a[0])
    if host is None:
        # OpenVPN resolves a name once at start; we bind literals only, so the address the
        # interface listens on (and the VM's firewall opens) is the one written here.
        p.err(d, f"{a[0]} is not an IPv4 or IPv6 address: give the address to listen on as a literal "
                 "(a host name other than localhost is not resolved here)")
        return
    pw = None
    if len(a) == 3:
        if a[2] == "stdin":
            p.err(d, "a password from stdin is not supported; give a file")
            return
        pw = p.path_arg(a[2])
        why = named_file_problem(pw)            # read at start: a FIFO's open() waited for a writer
        if why is not None:
            p.err(d, f"cannot read {a[2]}: {why}")
            return
    elif not ipaddress.ip_address(host).is_loopback:
        # OpenVPN 2.6 only warns ("management interface ... without a password"). Whoever reaches
        # the port can kill every client and stop the server (`signal SIGTERM`): a security
        # directive here is enforced or refused, so we refuse it.
        p.err(d, f"the management interface on {a[0]} needs a password file (`management {a[0]} {port} FILE`): "
                 "anyone who reaches that address could kill clients and stop the server (OpenVPN only "
                 "warns; this appliance refuses it)")
        return
    p.set("management", (host, port, pw))


def _flag(field: str):
    """A directive without arguments that turns `field` on."""
    def handler(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
        p.set(field, True)
    return handler


for _name, _why in (
        ("management-hold", "client: wait for the management client's `hold release` before the first connection "
                            "and, while the hold flag is on, before each reconnect"),
        ("management-query-passwords", "client: when the profile does not hold the auth-user-pass username and "
                                       "password, they are asked of the management client (>PASSWORD:Need 'Auth' "
                                       "username/password) before the connection that needs them"),
        ("management-signal", "client: when a management client disconnects, the connection restarts (SIGUSR1), "
                              "as OpenVPN 2.6 -- here for an authenticated one only"),
        ("management-up-down", "the management clients hear >UPDOWN:UP when the tunnel is up and >UPDOWN:DOWN "
                               "when it goes, each with the up/down environment (>UPDOWN:ENV,...)"),
        ("management-forget-disconnect", "client: when a management client disconnects, the username/password and "
                                         "the auth-token are forgotten (asked again with management-query-passwords)")):
    _field = _name.replace("-", "_")
    reg.apply(_name, why=_why, sets=(_field,), used_by="pump", nargs=(0, 0))(_flag(_field))


@reg.apply("management-client-user", "management-client-group",
           why="a unix-socket management interface accepts only connections from this user / this (primary) "
           "group, by the kernel's SO_PEERCRED", sets=("management_client_user", "management_client_group"),
           used_by="pump", nargs=(1, 1), access=True)
def _management_client_id(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    # Resolved at start, as OpenVPN does (platform_user_get / platform_group_get): an unknown
    # name fails here, at its line, rather than letting everyone (or no one) in.
    import grp
    import pwd
    try:
        if d == "management-client-user":
            p.set("management_client_user", pwd.getpwnam(a[0]).pw_uid)
        else:
            p.set("management_client_group", grp.getgrnam(a[0]).gr_gid)
    except (KeyError, ValueError):          # ValueError: a NUL in the name (no such name either)
        p.err(d, f"no {'user' if d.endswith('user') else 'group'} named {a[0]!r} on this system")


# The most lines of log history `management-log-cache` may keep: one `log all` reply is queued
# whole (gateway/management.py send_lines), so this bounds what one command can make us hold.
LOG_CACHE_MAX = 10000


@reg.apply("management-log-cache", why="how many log lines the management interface keeps for `log all` "
           f"(1-{LOG_CACHE_MAX})", sets=("management_log_cache",), used_by="pump", nargs=(1, 1))
def _management_log_cache(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], 1, LOG_CACHE_MAX)
    if n is not None:
        p.set("management_log_cache", n)


def management_host(text: str) -> str | None:
    """The address `management HOST PORT` listens on, as a normalised literal ("localhost" is
    127.0.0.1, as before); None for anything else (a host name, an IPv6 scope `%eth0`, which
    would bind one interface's link-local address)."""
    if text == "localhost":
        return "127.0.0.1"
    if "%" in text:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


@reg.apply("status", why="write the client list (server) or the statistics (client) to FILE every N seconds "
           "(default 60)",
           sets=("status",), used_by="pump", nargs=(1, 2))
def _status(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[1], 1, 86400) if len(a) == 2 else 60
    if n is not None:
        p.set("status", (p.path_arg(a[0]), n))


@reg.apply("status-version", why="the server's status file format (1, 2 or 3; a client's file is the same in all)", sets=("status_version",),
           used_by="pump", nargs=(1, 1))
def _status_version(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], 1, 3)
    if n is not None:
        p.set("status_version", n)


@reg.apply("ifconfig-pool-persist", why="server: keep pool addresses per common name in FILE across restarts",
           sets=("ifconfig_pool_persist",), used_by="server", nargs=(1, 2))
def _pool_persist(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[1], 0, 86400) if len(a) == 2 else 600
    path = p.path_arg(a[0])
    # Read at start: a FIFO hung it, /dev/zero grew the process without end (regular_file.py).
    why = named_file_problem(path, POOL)
    if why is not None:
        p.err(d, f"cannot read {a[0]}: {why}")
        return
    if n is not None:
        p.set("ifconfig_pool_persist", (path, n))


@reg.apply("script-security", why="scripts run only at level 2 or more (as OpenVPN)", sets=("script_security",),
           used_by="pump", nargs=(1, 1))
def _script_security(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], 0, 3)
    if n is not None:
        p.set("script_security", n)


@reg.apply("tmp-dir", why="server: where auth-user-pass-verify's via-file file and deferred-auth files are "
           "made (default: $TMPDIR, else /tmp)", sets=("tmp_dir",), used_by="pump", nargs=(1, 1))
def _tmp_dir(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    path = p.path_arg(a[0])
    if not _usable_dir(path):
        p.err(d, f"{a[0]}: not a directory we can read and write")
        return
    p.set("tmp_dir", path)


def _usable_dir(path: str) -> bool:
    """As OpenVPN 2.6 checks the temporary directory at start (check_file_access, rwx)."""
    return os.path.isdir(path) and os.access(path, os.R_OK | os.W_OK | os.X_OK)


def default_tmp_dir(p: ParseState) -> None:
    """A server without tmp-dir: its files go where OpenVPN 2.6 puts them, $TMPDIR, else /tmp
    (init_options), checked at start as tmp-dir is (OpenVPN checks that directory whichever way
    it came). Python's own choice (tempfile.gettempdir) passed over an unusable $TMPDIR in
    silence for /var/tmp or the working directory, and no check saw it. A relative $TMPDIR is the
    process's directory's, after `cd`, as there."""
    env = os.environ.get("TMPDIR")
    path = "/tmp" if env is None else os.path.join(p.o.cd_dir or os.getcwd(), env)
    if not _usable_dir(path):
        p.err("tmp-dir", f"$TMPDIR={env!r} (where temporary files go without tmp-dir): not a directory we can "
                         "read and write; fix TMPDIR or give tmp-dir DIR" if env is not None else
              "/tmp (where temporary files go without tmp-dir or $TMPDIR): not a directory we can read and "
              "write; give tmp-dir DIR", None)
        return
    p.o.tmp_dir = path


def command_argv(p: ParseState, d: str, command: str) -> list[str] | None:
    """A script directive's command (one argument, quoted when it has its own), split as OpenVPN
    2.6 splits it (argv_parse_cmd: a config line's quoting), its program checked now as OpenVPN
    checks it while reading the config (set_user_script, check_cmd_access): a missing or
    non-executable program refuses the config at its line. None (and an error) otherwise."""
    if scripts_forbidden():
        p.err(d, "the VM image runs no scripts")
        return None
    try:
        argv = tokenize(command)
    except LexError as e:
        p.err(d, f"cannot split the command: {e}")
        return None
    if not argv:
        p.err(d, "no command")
        return None
    prog = p.path_arg(argv[0])
    if not os.path.isfile(prog) or not os.access(prog, os.X_OK):
        p.err(d, f"{argv[0]}: " + ("not an executable file" if os.path.exists(prog) else "no such file"))
        return None
    return [prog, *argv[1:]]


def _script(field: str):
    def handler(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
        argv = command_argv(p, d, a[0])
        if argv is not None:
            p.set(field, argv)
    return handler


reg.apply("client-connect", why="server: run a command when a client connects (non-zero exit refuses it; "
          "the file it writes adds options)", sets=("client_connect",), used_by="pump", nargs=(1, 1),
          access=True)(_script("client_connect"))
reg.apply("client-crresponse", why="server: run a command (`CMD FILE`, the file holding the client's answer) when a "
          "client answers a CR_TEXT challenge; its environment has the waiting login's auth_control_file, into "
          "which it writes the verdict; non-zero exit refuses the login", sets=("client_crresponse",),
          used_by="pump", nargs=(1, 1), access=True)(_script("client_crresponse"))
reg.apply("client-disconnect", why="server: run a command when a client disconnects",
          sets=("client_disconnect",), used_by="pump", nargs=(1, 1))(_script("client_disconnect"))
reg.apply("learn-address", why="server: run a command when a client's address (pool, IPv6, iroute) is "
          "added, updated or deleted (non-zero exit: the address is not routed to that client)",
          sets=("learn_address",), used_by="pump", nargs=(1, 1), access=True)(_script("learn_address"))
reg.apply("tls-verify", why="run a command for each certificate of the peer's verified chain, deepest first "
          "(`CMD DEPTH SUBJECT`; non-zero exit refuses the peer: its TLS handshake fails)",
          sets=("tls_verify",), used_by="pump", nargs=(1, 1), access=True)(_script("tls_verify"))
reg.apply("tls-crypt-v2-verify", why="server: run a command on a client's tls-crypt-v2 key metadata before "
          "any TLS (non-zero exit drops the client unanswered)", sets=("tls_crypt_v2_verify",), used_by="pump",
          nargs=(1, 1), access=True)(_script("tls_crypt_v2_verify"))


@reg.apply("tls-export-cert", why="tls-verify's command finds the certificate it is asked about in a file of DIR "
           "named in `peer_cert` (removed after the call)", sets=("tls_export_cert",), used_by="pump", nargs=(1, 1))
def _tls_export_cert(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    path = p.path_arg(a[0])
    # As OpenVPN 2.6 at start (check_file_access ... W_OK, "--tls-export-cert"): a directory
    # we cannot write would refuse every peer later, one handshake at a time.
    if not os.path.isdir(path):
        p.err(d, f"{a[0]} is not a directory")
        return
    if not os.access(path, os.W_OK | os.X_OK):
        p.err(d, f"cannot write to {a[0]}")
        return
    p.set("tls_export_cert", path)


# ------------------------------------------------------------------ client up/down scripts
DNS_HELPERS = ("update-resolv-conf", "update-systemd-resolved")


def dns_helper(command: str) -> str | None:
    """Which well-known DNS helper a script command names (any directory, any arguments), or None."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words:
        return None
    name = os.path.basename(words[0])
    name = name[:-3] if name.endswith(".sh") else name
    return name if name in DNS_HELPERS else None


SCRIPT_FIELDS = {"up": "up_script", "down": "down_script", "route-up": "route_up_script",
                 "route-pre-down": "route_pre_down_script", "ipchange": "ipchange_script"}


@reg.apply("up", "down", "route-up", "route-pre-down", "ipchange",
           why="client: run the command as OpenVPN 2.6 does (up/route-up when the tunnel first comes up, "
               "ipchange at each connection, route-pre-down/down at the end; config/client_scripts.py); "
               "update-resolv-conf / update-systemd-resolved turn on the built-in host DNS handling instead; "
               "skipped with `run --no-scripts`",
           sets=("dns_helper", *SCRIPT_FIELDS.values()), used_by="client", nargs=(1, None))
def _up_down(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    helper = dns_helper(" ".join(shlex.quote(x) for x in a) if len(a) > 1 else a[0])
    if helper is not None and d in ("up", "down", "route-up", "route-pre-down"):
        p.set("dns_helper", helper)
        p.note(d, f"{helper} is not run: the built-in DNS handling applies what the server pushes "
                  "(systemd-resolved per link, else /etc/resolv.conf, restored when the tunnel goes)")
        return
    if p.ignore_scripts:
        p.note(d, "script skipped (--no-scripts)")
        return
    if scripts_forbidden() or p.no_scripts:
        p.err(d, "the VM image runs no scripts; `ignore_scripts = true` in [vpn] skips this line")
        return
    if len(a) > 1:
        # As OpenVPN 2.6 (options.c: no more than one argument): the command and its own
        # arguments are one quoted word.
        p.err(d, f"takes one argument: quote the command with its arguments (`{d} \"{' '.join(a)}\"`)")
        return
    # ipchange's commas stand for spaces, as there (options.c: string_substitute(p[1], ',', ' ')).
    argv = command_argv(p, d, a[0].replace(",", " ") if d == "ipchange" else a[0])
    if argv is not None:
        p.set(SCRIPT_FIELDS[d], argv)


for _name, _field, _why in (
        ("up-restart", "up_restart", "client: the down script (`restart`) at each reconnect and the up script "
                                     "(`restart`) when the tunnel is up again, as OpenVPN 2.6 with persist-tun"),
        ("allow-recursive-routing", "allow_recursive_routing",
         "client: packets from the TUN to the peer's own address are sealed and sent (without it they are "
         "dropped, as OpenVPN 2.6 does: while the route outside the tunnel is gone they would loop)"),
        ("down-pre", "down_pre", "client: the down script runs before the TUN device goes (else after it)"),
        ("persist-tun", "persist_tun", "the TUN device is kept across reconnects anyway; without it a reconnect "
                                       "runs the down side (route-pre-down, down, down-root, >UPDOWN:DOWN) and the "
                                       "next tunnel the up side afresh, as OpenVPN 2.6 closes and reopens its device")):
    reg.apply(_name, why=_why, sets=(_field,), used_by="pump" if _field == "persist_tun" else "client",
              nargs=(0, 0))(_flag(_field))
