"""Parser-level directives, logging, and the directives accepted without effect or refused.

Every no-op says why it has no effect here; every refusal says why it is refused. Directives that
change who may connect are never no-ops (table.py checks the `access` flag): plugins and option
checks are refused instead (the commands that may refuse a peer are run: d_ops.py).
"""
from __future__ import annotations

import os
import re

from ..safeenv import NAME_MAX, env_name, safe_env_name, safe_env_value
from .directives import Registry
from .parser import ParseState

reg = Registry()


@reg.apply("verb", why="log detail", sets=("verb",), used_by="pump", nargs=(1, 1))
def _verb(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], 0, 11)
    if n is not None:
        p.set("verb", n)


@reg.apply("ignore-unknown-option", why="later unknown directives with these names only get a note",
           used_by="parser", nargs=(1, None))
def _ignore_unknown_option(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.ignore_unknown.update(a)                  # exact names, as 2.6 compares them (streq)
    p.note(d, f"unknown directives named {' '.join(a)} below are ignored")


# setenv names OpenVPN 2.6 reads as settings (options.c), not as variables: what each is here.
_SETENV_NOOP = {"REMOTE_RANDOM_HOSTNAME": "remote-random-hostname", "PUSH_PEER_INFO": "push-peer-info"}
# The longest name setenv-safe takes (safeenv.py: OpenVPN writes OPENVPN_<name> into 64 bytes).
SETENV_SAFE_NAME_MAX = NAME_MAX


@reg.apply("setenv", why="`setenv NAME [VALUE]`: a variable in the environment of every command the "
           "appliance runs (auth-user-pass-verify, client-connect, learn-address, tls-verify...), as OpenVPN "
           "2.6's global environment; `setenv opt X ...` applies X if known, ignores it if unknown; "
           "SERVER_POLL_TIMEOUT, PUSH_PEER_INFO, REMOTE_RANDOM_HOSTNAME and GENERIC_CONFIG as OpenVPN reads them",
           sets=("setenv",), used_by="pump", nargs=(1, None))
def _setenv(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if a[0] == "opt" and len(a) > 1:            # exactly `opt`, as 2.6 (streq)
        p.ignore_unknown.add(a[1])
        p.dispatch(a[1:], inline)
        return
    if len(a) > 2:
        p.err(d, "takes a name and at most one value (quote a value with blanks)")
        return
    name, value = a[0], a[1] if len(a) > 1 else ""
    if name == "GENERIC_CONFIG":
        p.err(d, "this is a generic configuration and cannot directly be used (OpenVPN 2.6 refuses it too)")
        return
    if name in _SETENV_NOOP and len(a) == 1:
        p.dispatch([_SETENV_NOOP[name]], None)
        return
    if name == "SERVER_POLL_TIMEOUT" and len(a) == 2:
        p.dispatch(["server-poll-timeout", value], None)
        return
    if name == "FORWARD_COMPATIBLE" and value == "1":
        # OpenVPN then only warns about options it does not know; here an unknown or unsupported
        # directive stays an error naming its line (one this appliance ignored could be a
        # security directive): the variable is set, the strictness kept.
        p.note(d, "unknown directives still fail here, each with its line (use ignore-unknown-option NAME)")
    if len(name.encode("utf-8", "surrogateescape")) < 2 or not env_name(name):
        # 2.6.14 stops at start on a name of one byte ("Assertion failed at env_set.c:349 (name
        # && strlen(name) > 1)", seen with Debian's); one of no letter, digit or `_` sets a
        # variable with no name there: a line that can do nothing is refused, with its line.
        p.err(d, f"{name!r} names no variable (OpenVPN 2.6 needs two bytes or more and keeps only letters, "
                 "digits and '_' of them; with one it stops at start)")
        return
    env = dict(p.o.setenv)
    env.pop(env_name(name), None)       # (set again: the newest, as 2.6 deletes and adds it anew)
    env[env_name(name)] = safe_env_value(value)
    p.set("setenv", env)


@reg.apply("socket-flags", why="TCP_NODELAY, the only flag OpenVPN 2.6 knows, is what TCP sockets here always "
           "set", used_by="parser", nargs=(1, None))
def _socket_flags(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    bad = [x for x in a if x != "TCP_NODELAY"]
    if bad:
        p.err(d, f"unknown socket flag: {bad[0]} (OpenVPN 2.6 knows TCP_NODELAY only)")
    else:
        p.note(d, "TCP sockets always set TCP_NODELAY here")


@reg.apply("keying-material-exporter", why="OpenVPN 2.6 hands the exported keying material to a plugin's TLS_FINAL "
           "call only (and no plugin here takes it): checked as it checks it, no effect", used_by="parser",
           nargs=(2, 2))
def _keying_material_exporter(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    m = re.match(r"\s*[+-]?\d+", a[1])
    n = int(m.group()) if m else 0
    if not a[0].startswith("EXPORTER"):
        p.err(d, 'the label must begin with "EXPORTER" (as OpenVPN 2.6)')
    elif not 16 <= n <= 4095:
        p.err(d, "invalid keying material exporter length (16-4095, as OpenVPN 2.6)")
    else:
        p.note(d, "no effect: OpenVPN 2.6 gives the value to a TLS_FINAL plugin only, and no plugin here takes it")


@reg.apply("push-peer-info", why="client: the peer info sent to the server also carries the config's setenv "
           "UV_* variables, IV_PLAT_VER (the kernel release) and IV_SSL, as OpenVPN 2.6 (not IV_HWADDR)",
           sets=("push_peer_info",), used_by="session", nargs=(0, 0))
def _push_peer_info(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("push_peer_info", True)


@reg.apply("setenv-safe", why="`setenv-safe NAME [VALUE]`: OPENVPN_NAME in every command's environment, as "
           "OpenVPN 2.6", sets=("setenv",), used_by="pump", nargs=(1, 2))
def _setenv_safe(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if len(a[0].encode()) > SETENV_SAFE_NAME_MAX:
        # OpenVPN 2.6 warns "name overflow" and sets nothing: a line that does nothing is refused here.
        p.err(d, f"the name is longer than {SETENV_SAFE_NAME_MAX} bytes (OpenVPN sets nothing for it)")
        return
    env = dict(p.o.setenv)
    env.pop(safe_env_name(a[0]) or "", None)
    env[safe_env_name(a[0]) or ""] = safe_env_value(a[1] if len(a) > 1 else "")
    p.set("setenv", env)


# ------------------------------------------------------------------ accepted, no effect (with the reason)
# Each with the argument count OpenVPN 2.6.14 takes (options.c; checked with Debian's openvpn in
# tests/unit/test_directive_values_vs_openvpn.py): `fast-io 1` or `mute` without a number is
# "Unrecognized option or missing or extra parameter(s)" there, so here too.
_NONE, _ONE = (0, 0), (1, 1)
_NOOPS = {
    "persist-key": ("keys are kept across reconnects anyway", _NONE),
    "mute-replay-warnings": ("replayed packets are counted, not logged one by one", _NONE),
    "mute": ("events are logged once each; repeated-message muting is not implemented (it only thins the "
             "log, as in OpenVPN)", _ONE),
    "suppress-timestamps machine-readable-output": ("the log format is fixed", _NONE),
    "fast-io": ("socket I/O is always non-blocking", _NONE),
    "sndbuf rcvbuf": ("socket buffers keep the appliance's sizes", _ONE),
    "txqueuelen": ("the TUN queue length stays the kernel default", _ONE),
    "persist-remote-ip persist-local-ip": ("each reconnect resolves the remote again", _NONE),
    "ifconfig-nowarn": ("no option-consistency warnings are printed", _NONE),
    "remote-random-hostname": ("remote names are resolved as written", _NONE),
    "up-delay": ("a client opens its TUN device once the server's push is in anyway (as OpenVPN 2.6 with pull); "
                 "the up script runs then", _NONE),
    "allow-pull-fqdn": ("pushed routes are taken as addresses", _NONE),
    "tcp-nodelay": ("TCP sockets always set TCP_NODELAY", _NONE),
    "disable-occ": ("(deprecated) OpenVPN 2.6 compares no options between TLS peers either: nothing to disable",
                    _NONE),
    "passtos": ("outer packets keep the default TOS; the inner packets' TOS bits are not copied", _NONE),
}
for _names, (_why, _nargs) in _NOOPS.items():
    reg.noop(_names, _why, nargs=_nargs)


def _block_outside_dns(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """A plain line is refused, as OpenVPN 2.6 on Linux refuses it (options.c parses it on Windows
    only: "Unrecognized option"): a DNS-leak guard this host does not apply must not pass as
    accepted. Through `setenv opt` or ignore-unknown-option -- how profiles shared with Windows
    carry it -- it is ignored, as there."""
    if d not in p.ignore_unknown:
        p.err(d, "Windows only: it blocks DNS outside the tunnel there, and OpenVPN 2.6 on Linux refuses it "
                 "(an unrecognized option); nothing here would do it -- remove it, or keep it for Windows "
                 "clients as `setenv opt block-outside-dns`")


reg.noop("block-outside-dns", "Windows only (through `setenv opt` / ignore-unknown-option, as OpenVPN 2.6 on "
         "Linux ignores it there)", check=_block_outside_dns, nargs=(0, 0))


def _unknown_to_26(why: str):
    """A check for a name OpenVPN 2.6 on Linux does not know ("Unrecognized option", fatal): refused
    at its line with `why`, ignored with a note where 2.6 ignores it (ignore-unknown-option, `setenv
    opt`), as profiles shared with Windows or older versions carry it."""
    def check(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
        if d not in p.ignore_unknown:
            p.err(d, f"OpenVPN 2.6 on Linux refuses it (an unrecognized option): {why}")
    return check


reg.noop("register-dns", "Windows only (through `setenv opt` / ignore-unknown-option, as OpenVPN 2.6 on Linux "
         "ignores it there)", check=_unknown_to_26("Windows only, it registers the DNS name there; remove it, or "
                                                   "keep it for Windows as `setenv opt register-dns`"), nargs=(0, 0))
reg.noop("ncp-disable", "cipher negotiation is always on, as in OpenVPN 2.6 (which ignores it only with "
         "ignore-unknown-option or `setenv opt`)", check=_unknown_to_26(
             "removed in 2.6, where cipher negotiation is always on (as here); remove it"), nargs=(0, 0))


# Any one word: Debian's OpenVPN 2.6.14 on Linux takes `route-method route` too (options.c checks
# the word on Windows only; tests/unit/test_directive_values_vs_openvpn.py runs it). Before, ours
# refused other words than adaptive/ipapi/exe, failing profiles 2.6 starts.
reg.noop("route-method", "Windows only (OpenVPN 2.6 on Linux takes it, whatever the method, and does nothing "
         "with it too)", nargs=(1, 1))


def _hash_size(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """As 2.6: both sizes at least 1, and a size other than the default (256 256) on a client is
    refused at finish (check_client_hash_size): "--hash-size requires --mode server"."""
    sizes = [p.int_arg(d, v, 1) for v in a]
    if None not in sizes:
        p.hash_size_line = p.line if sizes != [256, 256] else None      # the last line counts


reg.noop("hash-size", "the server's client and route tables are hash maps that grow as they fill (sizes of at "
         "least 1 taken, as OpenVPN 2.6; a client refuses other than 256 256, as there)", check=_hash_size,
         nargs=(2, 2))


def _bcast_buffers(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.int_arg(d, a[0], 1)                               # 2.6: "--bcast-buffers parameter must be > 0"


reg.noop("bcast-buffers", "no broadcast queue: a multicast's or broadcast's copies are sealed at once, their rate "
         "held per sending client (a count of at least 1 taken, as OpenVPN 2.6)", check=_bcast_buffers, nargs=(1, 1))


def check_client_hash_size(p: ParseState) -> None:
    """A client's `hash-size` other than the default: 2.6's options_postprocess_verify_ce refuses it."""
    if p.hash_size_line is not None:
        p.err("hash-size", "--hash-size requires --mode server (as OpenVPN 2.6 says): a client has no client "
                           "table; remove it", p.hash_size_line)


# ------------------------------------------------------------------ process settings (host/privileges.py)
@reg.apply("user", "group", why="after start-up the process runs as this user/group, keeping only the "
           "capabilities it still uses (client: CAP_NET_ADMIN)", sets=("user", "group"), used_by="pump",
           nargs=(1, 1))
def _user_group(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set(d, a[0])          # resolved (and an unknown name refused) by host/privileges.py before start


@reg.apply("nice", why="process priority (os.nice) at start", sets=("nice",), used_by="pump", nargs=(1, 1))
def _nice(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], -20, 19)
    if n is not None:
        p.set("nice", n)


@reg.apply("mlock", why="mlockall at start: keys and tunnel data are never swapped", sets=("mlock",),
           used_by="pump", nargs=(0, 0))
def _mlock(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("mlock", True)


@reg.apply("log", "log-append", why="a host run writes its log (stdout and stderr) to this file, truncated "
           "(log) or appended to (log-append), as OpenVPN 2.6; the VM's log is its console (host/process_files.py)",
           sets=("log_file",), used_by="pump", nargs=(1, 1))
def _log(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if p.o.log_file is not None:
        # OpenVPN 2.6 redirects at the first one it reads and ignores the others (error.c std_redir).
        p.note(d, f"a log file was named before ({p.o.log_file[0]}): it stands, as in OpenVPN 2.6")
        return
    p.set("log_file", (os.path.abspath(p.path_arg(a[0])), d == "log-append"))


@reg.apply("daemon", why="a host run goes into the background once the config is read and passwords asked, "
           "as OpenVPN 2.6 (not under systemd, which it tells instead); its log to syslog as NAME (default "
           "openvpn) unless `log` names a file (host/daemon.py); the VM runs in the foreground as PID 1",
           sets=("daemon", "syslog"), used_by="pump", nargs=(0, 1))
def _daemon(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if p.o.daemon is not None:
        # 2.6: "WARNING: Multiple --daemon directives specified, ignoring --daemon NAME" (init scripts add one)
        p.note(d, "a daemon line came before: this one is ignored, as in OpenVPN 2.6")
        return
    p.set("daemon", a[0] if a else "openvpn")
    if p.o.syslog is None:              # (2.6: the first of daemon/syslog opens the log under its name)
        p.set("syslog", a[0] if a else "openvpn")


@reg.apply("syslog", why="a host run logs to syslog as NAME (default openvpn) instead of stderr, as OpenVPN "
           "2.6, unless `log` names a file (host/daemon.py); the VM's log is its console",
           sets=("syslog",), used_by="pump", nargs=(0, 1))
def _syslog(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if p.o.syslog is None:              # (2.6: the first of daemon/syslog opens the log under its name)
        p.set("syslog", a[0] if a else "openvpn")


@reg.apply("writepid", why="a host run writes its PID to this file at start and removes it at the end, as "
           "OpenVPN 2.6 (host/process_files.py)", sets=("writepid",), used_by="pump", nargs=(1, 1))
def _writepid(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("writepid", os.path.abspath(p.path_arg(a[0])))


@reg.apply("askpass", why="the password of an encrypted private key: the first line of FILE, or asked on the "
           "terminal at start; the key is decrypted once, before the start (openvpn/keyunlock.py)",
           sets=("askpass_password",), used_by="tls", nargs=(0, 1))
def _askpass(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if not a:
        # As with no askpass at all: an encrypted key is asked for on the terminal (cli.py).
        p.set("askpass_password", None)
        return
    data = p.file(d, a[0], None)
    if data is None:
        return
    # As OpenVPN 2.6 (misc.c get_user_pass_cr, GET_USER_PASS_PASSWORD_ONLY): the first line, its
    # line end dropped.
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not first:
        p.err(d, f"{a[0]}: no password on its first line")
        return
    p.set("askpass_password", first.decode("utf-8", "surrogateescape"))


reg.refuse("chroot", "not supported: Python imports modules lazily after start-up, which a chroot would "
           "break; use `user`/`group` (or a container) instead")

# ------------------------------------------------------------------ refused (with the reason)
# up/down/route-up/route-pre-down/ipchange/up-restart/down-pre: d_ops.py (the DNS helpers are built in, --no-scripts).
# Commands that decide whether a peer may connect (client-connect, learn-address, tls-verify,
# tls-crypt-v2-verify): d_ops.py. Plugins: d_plugin.py (auth-pam and down-root done natively, any other
# refused).
reg.refuse("opt-verify", "option-string checks of clients are not supported (deprecated in OpenVPN 2.6); "
           "remove it", access=True)
# OpenVPN 2.6 directives that decide who may connect and that we do not implement: declared here
# so that `ignore-unknown-option` / `setenv opt` cannot turn them into silently ignored lines.
reg.refuse("client-cert-not-required", "removed in OpenVPN 2.5; use `verify-client-cert none`", access=True)


@reg.apply("connect-freq", why="server: at most N new client sessions per SEC seconds (OpenVPN's rate limit)",
           sets=("connect_freq",), used_by="server", nargs=(2, 2), access=True)
def _connect_freq(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n, sec = p.int_arg(d, a[0], 1, 2**31), p.int_arg(d, a[1], 1, 2**31)
    if n is not None and sec is not None:
        p.set("connect_freq", (n, sec))


@reg.apply("connect-freq-initial", why="server: at most N stateless answers to first packets per SEC seconds",
           sets=("connect_freq_initial",), used_by="server", nargs=(2, 2), access=True)
def _connect_freq_initial(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n, sec = p.int_arg(d, a[0], 1, 2**31), p.int_arg(d, a[1], 1, 2**31)
    if n is not None and sec is not None:
        p.set("connect_freq_initial", (n, sec))


@reg.apply("management-client-auth", why="server: each login waits for the management client's client-auth or "
           "client-deny (with a password file or auth-user-pass-verify command, both must say yes)",
           sets=("management_client_auth",), used_by="pump", nargs=(0, 0), access=True)
def _management_client_auth(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("management_client_auth", True)


reg.refuse("secret", "static-key mode is not supported (deprecated in OpenVPN 2.6); use TLS", inline=True)
reg.refuse("pkcs11-providers", "PKCS#11 is not supported")
reg.refuse("cryptoapicert", "not supported on this platform")
@reg.apply("lladdr", why="a tap device's MAC address (OpenVPN 2.6: set on the device when it opens)",
           sets=("lladdr",), used_by="pump", nargs=(1, 1))
def _lladdr(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """Six hex octets with colons, a unicast address (the kernel refuses a multicast one); that
    the device is a tap is checked with the whole file (d_network.finish_device)."""
    parts = a[0].split(":")
    if len(parts) != 6 or not all(len(x) in (1, 2) and all(c in "0123456789abcdefABCDEF" for c in x)
                                  for x in parts):
        p.err(d, f"{a[0]!r} is not a MAC address (six hex octets with colons, e.g. 02:00:5e:10:00:01)")
        return
    mac = bytes(int(x, 16) for x in parts)
    if mac[0] & 1 or mac == bytes(6):
        p.err(d, f"{a[0]} is a multicast or all-zero address; a device needs a unicast one")
        return
    p.set("lladdr", ":".join(f"{b:02x}" for b in mac))


@reg.apply("static-challenge", why="client: the server wants a challenge response with the password; the "
           "management client is asked for both (>PASSWORD:Need 'Auth' username/password SC:ECHO,TEXT) and "
           "answers with the SCRV1 password; needs management-query-passwords",
           sets=("static_challenge",), used_by="client", nargs=(2, 2))
def _static_challenge(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    # OpenVPN 2.6 reads the echo flag with atoi: a leading number, non-zero echoes ("x" is 0).
    m = re.match(r"\s*[+-]?\d+", a[1])
    p.set("static_challenge", (a[0], bool(m) and int(m.group()) != 0))


@reg.apply("port-share", why="TCP server: a connection that does not start as an OpenVPN client is relayed to "
           "HOST:PORT (a web server sharing the port); DIR: a file per relayed connection naming its client",
           sets=("port_share",), used_by="server", nargs=(2, 3))
def _port_share(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    # Where OpenVPN refuses it (UDP, a client): parser.finish(), which knows the role and protocol.
    port = p.int_arg(d, a[1], 1, 65535)
    if not a[0]:
        p.err(d, "HOST is empty")
        return
    jdir = None
    if len(a) > 2:
        jdir = os.path.abspath(p.path_arg(a[2]))
        if not os.path.isdir(jdir):
            p.err(d, f"DIR {a[2]!r} is not a directory (the journal files of relayed connections go there)")
            return
    if port is not None:
        p.set("port_share", (a[0], port, jdir))
