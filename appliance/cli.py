"""Command line: `vpn-appliance run|check|bench|import|passwd|config-disk`.

Errors in a config are printed as `file:line: directive: why` and give exit status 2 before
anything starts; a run that ends on an authentication failure or HALT exits 1.
"""
from __future__ import annotations

import argparse
import faulthandler
import getpass
import logging
import os
import sys
import time

from . import gateway, native
from .openvpn.config import load_config, render_options
from .openvpn import settings
from .ioerrors import PortGone
from .openvpn.errors import ConfigError
from .host.workdir import enter_cd_dir

# What only some commands need is imported in them: `run profile.ovpn`'s start-up comes before
# the client's first packet (lab/first_packet.py), and needs neither the TOML schema, the
# benchmark, the profile importer nor the services a profile did not ask for.

log = logging.getLogger("vpn-appliance")


def _load(path: str, ignore_scripts: bool = False, cmdline: list[str] | None = None):
    if cmdline is not None:
        from .openvpn.config import load_command_line
        return load_command_line(cmdline, ignore_scripts)
    return load_config(path, ignore_scripts=ignore_scripts)


def cmd_check(args: argparse.Namespace) -> int:
    if args.file.endswith(".toml"):
        from .config.schema import check_file
        return check_file(args.file)
    try:
        opts = _load(args.file, args.no_scripts)
        _ask_key_password(opts)
        _validate_runtime(opts)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    print(render_options(opts))
    for n in opts.notes:
        print(f"# note: {n}")
    return 0


def _ask_key_password(opts) -> None:
    """An encrypted `key` with no `askpass FILE`: asked on the terminal, as OpenVPN 2.6 asks on its
    console, and the key decrypted now (openvpn/keyunlock.py); with no terminal the key check
    says what is missing."""
    from .openvpn import keyunlock
    if keyunlock.needs_prompt(opts) and sys.stdin.isatty():
        keyunlock.unlock(opts, getpass.getpass(keyunlock.PROMPT))


def _validate_runtime(opts):
    """Checks that need key material decoded (keys, certificates) or this host's users, so
    `check` catches them too; the `user`/`group` to become (host/privileges.py), or None."""
    return _runtime_checked(opts)[0]


def _runtime_checked(opts):
    """_validate_runtime's checks: the `user`/`group` to become, and the TLS settings made on the
    way (a server's start uses them: its CRL read once, not twice; ~0.35 s at 100,000 entries)."""
    tls = settings.check_key_material(opts)
    if opts.role == "server":
        from .gateway.ops import check_scripts
        check_scripts(opts)
    from .host.process_files import check_start_paths
    check_start_paths(opts)
    if opts.user is None and opts.group is None:
        return None, tls
    from .host.privileges import identity_of
    return identity_of(opts), tls


def cmd_run(args: argparse.Namespace) -> int:
    # run_toml loads the netlink library: imported only for a TOML, so neither a server's resident
    # memory (appliance/gateway/server_net.py) nor a client's start-up carries it.
    cmdline = getattr(args, "cmdline", None)
    if cmdline is None and args.file.endswith(".toml"):
        if args.no_scripts or args.dns or args.no_dns or args.status_interval is not None:
            print("--no-scripts, --dns, --no-dns and --status-interval are for an OpenVPN profile; an appliance "
                  "TOML says it with [vpn] ignore_scripts and [appliance] status_interval", file=sys.stderr)
            return 2
        from .run_toml import run_toml
        return run_toml(args.file, args.verbose)
    try:
        opts = _load(args.file, args.no_scripts, cmdline)
        _ask_key_password(opts)
        who, tls = _runtime_checked(opts)
        user, pw = "", ""
        if opts.role != "server" and (opts.auth_user_pass or opts.auth_user_pass_required):
            from .gateway.credentials import ask_credentials     # not run_toml's: gateway/credentials.py
            user, pw = ask_credentials(opts)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    if (why := enter_cd_dir(opts)) is not None:
        print(why, file=sys.stderr)
        return 1
    daemonized = False
    if opts.daemon is not None:
        from .host.daemon import become_daemon, under_systemd
        if not under_systemd():         # (2.6 stays in the foreground under systemd, and tells it)
            become_daemon(keep_output=opts.log_file is not None)
            daemonized = True
    pidfile = None
    if opts.log_file is not None or opts.writepid is not None:
        from .host import process_files
        try:
            pidfile = process_files.start(opts)      # the log file from here on, as the starting user
        except ConfigError as e:
            print(str(e), file=sys.stderr)
            return 1
    if daemonized:
        from .host.daemon import leave_start_directory
        leave_start_directory(opts)                  # to / unless `cd`, as 2.6 once started
    creds = [user, pw]
    del user, pw                 # one holder, emptied once the gateway has them (auth-nocache: no one)
    try:
        return _run_profile(opts, args, who, tls, creds)
    finally:
        if pidfile is not None:
            pidfile.remove()


def _run_profile(opts, args: argparse.Namespace, who, tls, creds: list[str]) -> int:
    from .logsetup import setup_verb
    setup_verb(opts.verb, args.verbose)
    if opts.syslog is not None and opts.log_file is None:
        from .host.daemon import log_to_syslog
        log_to_syslog(opts.syslog)
    native.log_data_path(log)
    for n in opts.notes:
        log.debug("%s", n)
    from .host.sdnotify import from_environment
    notify = from_environment()         # under a Type=notify unit: READY=1 now, as OpenVPN 2.6
    if notify is not None:
        notify.ready()
    if who is not None or opts.nice or opts.mlock:
        from .host import privileges
        try:
            privileges.before_start(opts)
        except privileges.PrivilegeError as e:
            log.error("fatal: %s", e)
            return 1
    if opts.role == "server":
        # The server drops after its start-up (TUN configured, port and management socket bound).
        helper = _down_root_helper(opts)       # forked first: root, one thread (host/down_root.py)
        try:
            server = gateway.server_gateway(opts, tls)
        except ConfigError as e:            # what only the start finds (the auth-pam helper not starting)
            log.error("fatal: %s", e)
            return 1
        server.down_root = helper

        def started() -> None:
            if who is not None:
                _drop(opts, who)
            if notify is not None:
                notify.completed()
        return server.run(after_start=started)
    # Debug/interop knob: behave like an OpenVPN 2.4 client (no TLS-EKM offer → PRF key derivation).
    ekm = os.environ.get("VPN_APPLIANCE_KEY_DERIVATION", "").lower() != "prf"
    helper = _down_root_helper(opts)           # forked first: root, one thread (host/down_root.py)
    root_scripts = _script_root_helper(opts, who)
    observers = _host_observers(opts, args) + ((notify,) if notify is not None else ())
    gw = gateway.client_gateway(opts, creds[0], creds[1], advertise_ekm=ekm, observers=observers)
    gw.updown.helper = helper
    if gw.scripts is not None:
        gw.scripts.runner.root = root_scripts
    creds.clear()            # the gateway has them now, or with auth-nocache no one (gateway/credentials.py)
    if who is not None:
        # The client drops before it starts, before any thread exists (host/privileges.py), with
        # what needs root done first: the TUN device open (/dev/net/tun may be root's alone), the
        # files it writes later held open, the resolvectl helper started; addresses and routes
        # need CAP_NET_ADMIN, kept.
        try:
            gw.net.prepare()
            gw.open_management(drops_root=True)     # its socket bound as root, as OpenVPN's
            for o in observers:              # files they write later (resolv.conf, status), opened now
                hold = getattr(o, "before_privilege_drop", None)
                if hold is not None:
                    hold()
            _drop(opts, who)
        except PortGone as e:
            if gw.mgmt is not None:
                gw.mgmt.close()
            gw.net.close()
            log.error("fatal: %s", e)
            return 1
    return gw.run()


def _down_root_helper(opts):
    """The down-root plugin's root helper (host/down_root.py), or None without the plugin line."""
    if not opts.down_root:
        return None
    from .host.down_root import DownRoot
    return DownRoot(list(opts.down_root), frozenset(opts.setenv))


def _script_root_helper(opts, who):
    """With `user`/`group`: the helper that runs as root the scripts OpenVPN 2.6 runs before its
    privilege drop (host/script_root.py), or None."""
    from .openvpn.config.client_scripts import root_commands
    commands = root_commands(opts) if who is not None else {}
    if not commands:
        return None
    from .host.script_root import RootScripts
    return RootScripts(commands, frozenset(opts.setenv))


def _drop(opts, who) -> None:
    """`user`/`group`: a failure stops the run (PortGone: the gateway cleans up and exits 1)."""
    from .host import privileges
    try:
        privileges.drop_for(opts, who)
    except privileges.PrivilegeError as e:
        raise PortGone(f"cannot drop privileges as `user`/`group` ask: {e}") from None


def _host_observers(opts, args: argparse.Namespace) -> tuple:
    """What follows the tunnel on a host run (the TOML run's are lan_observers):
    - host DNS when the profile names update-resolv-conf/update-systemd-resolved (what OpenVPN
      users write to get it) or `--dns` asks; `--no-dns` wins. Not by default: a profile that
      never asked must not have the host's resolver rewritten (as with OpenVPN itself);
    - the status file when the profile has `status FILE [N]`;
    - the status line only with `--status-interval N`: on a host the event log already has a line
      per tunnel change, and journald does not need a line a minute unless someone asks."""
    out: list = []
    if _host_dns(opts, args):
        from .host.resolver import HostDns
    if opts.status is not None:
        from .gateway.client_status import ClientStatusFile
    if args.status_interval is not None:
        from .lan.status_line import StatusLine
    if _host_dns(opts, args):
        out.append(HostDns(opts.redirect_gateway, redirect_private=opts.redirect_private,
                           redirect_lines=opts.redirect_lines))
    elif not args.no_dns and not opts.p2p:          # a point-to-point peer pushes no DNS
        log.info("host DNS: pushed DNS is not applied to this host's resolver (the profile has no "
                 "update-resolv-conf/update-systemd-resolved line; `run --dns` applies it)")
    if opts.status is not None:
        out.append(ClientStatusFile(opts.status[0], opts.status[1], time.time))
    if args.status_interval is not None:
        out.append(StatusLine(args.status_interval))
    return tuple(out)


def _host_dns(opts, args: argparse.Namespace) -> bool:
    return bool(opts.dns_helper or args.dns) and not args.no_dns


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main
    return bench_main(args.packets, args.ciphers, args.size)


def cmd_import(args: argparse.Namespace) -> int:
    from .config.ovpn_import import import_profile
    try:
        sys.stdout.write(import_profile(args.file))
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    """Print a `user:scrypt$...` line for an `auth-user-pass-verify FILE passdb` file. Control
    characters (tab, U+0001-U+001F, DEL): OpenVPN 2.6's client drops them from what it sends,
    so the password counts without them (passdb.py), and this says so; a username holding one
    is refused (2.6's client drops them, its server and ours make them `_`: no name to match)."""
    from .openvpn.keymethod import credential_as_sent
    from .openvpn.passdb import hash_password, username_problem
    from .openvpn.peernames import from_peer, to_bytes
    problem = username_problem(args.user)
    if problem:
        print(f"username {problem}", file=sys.stderr)
        return 2
    if sys.stdin.isatty():
        pw = getpass.getpass("Password: ")
    else:       # its bytes as they are (a Latin-1 password is the bytes a client sends: peernames)
        buf = getattr(sys.stdin, "buffer", None)
        pw = (from_peer(buf.readline()) if buf is not None else sys.stdin.readline()).rstrip("\n")
    counted = credential_as_sent(pw)
    if counted != pw:
        dropped = ", ".join(sorted({_control_name(c) for c in pw if c not in counted}))
        if not counted:
            print(f"the password holds only control characters ({dropped}), which OpenVPN clients drop "
                  "before sending: nothing would be left to check", file=sys.stderr)
            return 2
        print(f"note: the password holds control characters ({dropped}), which OpenVPN 2.6's client drops "
              f"before sending: they do not count, the server checks the other {len(counted)} characters "
              "(typed with or without them, from any client)", file=sys.stderr)
    line = f"{args.user}:{hash_password(pw)}"
    try:
        print(line)
    except UnicodeEncodeError:      # a username given as bytes that are not UTF-8 (argv keeps them)
        sys.stdout.flush()
        sys.stdout.buffer.write(to_bytes(line) + b"\n")
        sys.stdout.buffer.flush()
    return 0


def _control_name(c: str) -> str:
    return {"\t": "tab", "\r": "CR", "\x7f": "DEL"}.get(c, f"U+{ord(c):04X}")


def cmd_config_disk(args: argparse.Namespace) -> int:
    """Write a config volume (FAT, label VPNCONFIG) with the TOML and every file it names: the VM
    reads it at boot instead of its baked config, so a new config needs no image rebuild."""
    import hashlib
    from pathlib import Path

    from .boot.config_volume import LABEL
    from .config.bundle import collect
    from .fatimage import DiskError, make_fat
    try:
        b = collect(args.file)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{e.filename or args.file}: cannot read: {e.strerror or e}", file=sys.stderr)
        return 2
    h = hashlib.sha256(b"".join(n.encode() + b"\0" + d for n, d in sorted(b.files.items())))
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", 1_704_067_200))   # same config -> same bytes
    try:
        make_fat(Path(args.output), b.files, LABEL, h.hexdigest()[:8], epoch)
    except DiskError as e:
        print(f"config-disk: {e}", file=sys.stderr)
        return 1
    for name in sorted(b.files):
        print(f"{name:24} <- {b.origin[name]}")
    for line in b.output_lines():
        print(f"output: {line}")
    print(f"wrote {args.output} (FAT, label {LABEL}): attach it to the VM as a second disk")
    return 0


def cmd_genkey(args: argparse.Namespace) -> int:
    """`openvpn --genkey TYPE [FILE] [METADATA]` (genkey.py)."""
    from .genkey import GenkeyError, run
    if args.metadata is not None and args.type != "tls-crypt-v2-client":
        print(f"genkey {args.type} takes no metadata", file=sys.stderr)
        return 2
    try:
        out = run(args.type, args.file, args.metadata, args.tls_crypt_v2)
    except GenkeyError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(out)
    return 0


_SUBCOMMANDS = ("run", "check", "bench", "import", "passwd", "config-disk", "genkey")


def _openvpn_genkey(words: list[str]) -> int:
    """`openvpn --genkey TYPE [FILE] [METADATA] [--tls-crypt-v2 SERVERKEY]`, and 2.6's deprecated
    `--genkey --secret FILE`, as installers run them (options.c "genkey"; init.c do_genkey)."""
    from .genkey import GenkeyError, run
    opts: dict[str, list[str]] = {}
    current = None
    for w in words:
        if w.startswith("--"):
            current = w[2:]
            if current in opts:
                print(f"--{current} given twice", file=sys.stderr)
                return 2
            opts[current] = []
        elif current is None:
            print(f"I'm trying to parse \"{w}\" as an --option parameter but I don't see a leading '--'",
                  file=sys.stderr)
            return 2
        else:
            opts[current].append(w)
    unknown = set(opts) - {"genkey", "secret", "tls-crypt-v2", "verb"}
    gk, secret, v2 = opts.get("genkey", []), opts.get("secret"), opts.get("tls-crypt-v2")
    if unknown or len(gk) > 3 or (secret is not None and len(secret) != 1) or (v2 is not None and len(v2) != 1):
        print("usage: vpn-appliance --genkey TYPE [FILE] [METADATA] [--tls-crypt-v2 SERVERKEY] "
              f"(or --genkey --secret FILE){': not with --' + ' --'.join(sorted(unknown)) if unknown else ''}",
              file=sys.stderr)
        return 2
    kind = gk[0] if gk else "secret"
    path = gk[1] if len(gk) > 1 else None
    if secret is not None:
        if kind != "secret" or path is not None:
            print("Using --genkey type with --secret filename is not supported.  Use --genkey type filename "
                  "instead." if kind != "secret" else "You must provide a filename to either --genkey or --secret, "
                  "not both", file=sys.stderr)
            return 2
        print("WARNING: Using --genkey --secret filename is DEPRECATED.  Use --genkey secret filename instead.",
              file=sys.stderr)
        path = secret[0]
    try:
        out = run(kind, path, gk[2] if len(gk) > 2 else None, v2[0] if v2 else None)
    except GenkeyError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    if not path:        # the key itself; with a FILE nothing, as 2.6 -- `openvpn --genkey secret
        sys.stdout.write(out)       # /dev/stdout` in $(...) must capture the key alone
    return 0


def main(argv: list[str] | None = None) -> int:
    # A crash in native code (OpenSSL through the bindings, cffi) prints the Python stack on
    # stderr instead of ending the process without a word (not where stderr is no file: tests).
    try:
        faulthandler.enable()
    except (OSError, ValueError, AttributeError):       # io.UnsupportedOperation is both of the first two
        pass
    words = sys.argv[1:] if argv is None else argv
    if words == ["--version"]:
        from . import __version__
        print(f"vpn-appliance {__version__} (reads OpenVPN 2.6 configs and speaks its protocol)")
        return 0
    if "--genkey" in words:
        return _openvpn_genkey(words)
    if len(words) == 1 and words[0] not in _SUBCOMMANDS and not words[0].startswith("-") and os.path.isfile(words[0]):
        words = ["run", words[0]]                # `openvpn FILE` is `openvpn --config FILE` (2.6 options.c)
    argv = words
    if words and words[0].startswith("--") and words[0] != "--help":
        # OpenVPN's own command line (`vpn-appliance --config NAME.conf --status ...`): `run` with
        # those directives, so a unit or script written for /usr/sbin/openvpn works (config/cmdline.py).
        return cmd_run(argparse.Namespace(file=None, cmdline=list(words), verbose=0, no_scripts=False, dns=False,
                                          no_dns=False, status_interval=None))
    p = argparse.ArgumentParser(prog="vpn-appliance", description="OpenVPN-compatible VPN gateway",
                                epilog="vpn-appliance --config FILE [--DIRECTIVE ARGS ...] runs as `openvpn` with "
                                       "that command line does (as `run`).")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run an OpenVPN client/server config (or an appliance TOML)")
    r.add_argument("file")
    r.add_argument("-v", "--verbose", action="count", default=0, help="more log detail (repeatable)")
    r.add_argument("--no-scripts", action="store_true",
                   help="skip a profile's up/down/... scripts (a host client runs them otherwise)")
    r.add_argument("--dns", action="store_true",
                   help="apply pushed DNS to this host's resolver (also implied by an update-resolv-conf or "
                        "update-systemd-resolved line in the profile)")
    r.add_argument("--no-dns", action="store_true", help="never touch this host's resolver")
    r.add_argument("--status-interval", type=int, metavar="N", default=None,
                   help="a status line on stderr at every tunnel change and every N seconds (0: on change only)")
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("check", help="validate a config and print the resolved settings")
    c.add_argument("file")
    c.add_argument("--no-scripts", action="store_true", help="as `run --no-scripts`")
    c.set_defaults(func=cmd_check)
    b = sub.add_parser("bench", help="in-memory data-channel benchmark (no I/O)")
    b.add_argument("--packets", type=int, default=50000)
    b.add_argument("--size", type=int, default=1400)
    b.add_argument("--ciphers", default="AES-128-GCM,AES-256-GCM,CHACHA20-POLY1305")
    b.set_defaults(func=cmd_bench)
    i = sub.add_parser("import", help="write an appliance TOML around an OpenVPN profile")
    i.add_argument("file")
    i.set_defaults(func=cmd_import)
    pw = sub.add_parser("passwd", help="hash a password for an auth-user-pass-verify passdb file")
    pw.add_argument("user")
    pw.set_defaults(func=cmd_passwd)
    cd = sub.add_parser("config-disk", help="write a config volume (FAT, label VPNCONFIG) for the VM image")
    cd.add_argument("file", help="appliance TOML")
    cd.add_argument("-o", "--output", required=True, help="image file to write (raw)")
    cd.set_defaults(func=cmd_config_disk)
    gk = sub.add_parser("genkey", help="write a key file as `openvpn --genkey` does (static, tls-crypt-v2, auth-token)")
    gk.add_argument("type", help="secret | tls-auth | tls-crypt | tls-crypt-v2-server | tls-crypt-v2-client | auth-token")
    gk.add_argument("file", nargs="?", default=None, help="where to write it (none: standard output)")
    gk.add_argument("metadata", nargs="?", default=None,
                    help="tls-crypt-v2-client: base64 metadata (default: the current time)")
    gk.add_argument("--tls-crypt-v2", metavar="SERVERKEY", default=None,
                    help="tls-crypt-v2-client: the server key that wraps the client key")
    gk.set_defaults(func=cmd_genkey)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
