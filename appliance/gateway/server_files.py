"""The files a server config names beside itself (password file, client-config-dir), read into
the dispatcher's settings: one place for the start and for a reload."""
from __future__ import annotations

import os

from ..openvpn.config import Options, parse_ccd
from ..openvpn.errors import ConfigError
from ..openvpn.peernames import file_text, from_peer
from ..openvpn.regular_file import CCD, PASSWORD_DB, read_regular_file
from ..openvpn.server import ServerSettings
from ..openvpn.settings import server_settings
from ..openvpn.tls import TlsSettings
from .authscript import ScriptCheck
from .pam_check import pam_check


def ccd_loader(directory: str):
    """Common name -> parsed ccd file (or None); names that could leave the directory get None.
    A file that is there but cannot be read (a directory, a pipe or device -- read on the event
    loop, a FIFO would have blocked it for good --, no permission) is a
    ConfigError naming it, like one that does not parse: the dispatcher refuses that client
    (clientpush.py) rather than admit it without the options its file holds.

    A file counts only under its exact name, as on the Linux file systems OpenVPN runs on: the
    VM reads client-config-dir from its FAT config volume, whose lookups ignore case, so client
    `alice` (with no file of her own) opened `Alice`'s -- its iroutes, its address, and a pass
    through ccd-exclusive. The names are checked against the directory's listing, kept until a
    name is missing from it (then listed afresh once): a stale listing costs a listing, never a
    wrong answer."""
    listing: set[str] = set()

    def exact(name: str) -> bool:
        if name in listing:
            return True
        try:
            fresh = set(os.listdir(directory))
        except OSError:
            return False
        listing.clear()
        listing.update(fresh)
        return name in listing

    def load(cn: str):
        # The file name as OpenVPN 2.6 makes it (platform_gen_path): a `/` becomes `_`, and only
        # `.` and `..` name no file. Refusing names with `/` or a leading `.` instead left the
        # `disable` an operator wrote in ccd/a_b (or ccd/.x) for the client `a/b` (or `.x`)
        # unread, and that client in.
        name = cn.replace("/", "_")
        if not name or name in (".", "..") or "\0" in name:
            return None
        path = os.path.join(directory, name)
        try:
            text = file_text(read_regular_file(path, CCD))     # its bytes, as OpenVPN reads it
        except FileNotFoundError:
            return None
        except OSError as e:
            if not exact(name):
                return None
            raise ConfigError(f"cannot read it: {getattr(e, 'strerror', None) or e}", path) from None
        if not exact(name):
            return None                 # another name's file (a case-blind file system): not hers
        return parse_ccd(text, path)
    return load


def load_server_settings(opts: Options, tls: TlsSettings | None = None) -> ServerSettings:
    """server_settings with the password file read and the ccd directory attached; password
    checks deferred to the gateway's worker (never in the event loop). `tls`: what
    check_key_material returned for `opts` (its CRL read once)."""
    passdb = None
    if opts.auth_user_pass_verify:
        passdb = from_peer(read_regular_file(opts.auth_user_pass_verify[0], PASSWORD_DB))   # Latin-1 names too
    ccd = ccd_loader(opts.client_config_dir) if opts.client_config_dir else None
    return server_settings(opts, ccd, passdb, defer_auth=True, tls=tls,
                           check_command=pam_check(opts, script_check(opts)))


def script_check(opts: Options) -> ScriptCheck | None:
    """auth-user-pass-verify's command as a check, or None. Its time limit and a deferred
    verdict's: hand-window (the client's key negotiation is over by then anyway)."""
    if not opts.auth_user_pass_verify_script:
        return None
    argv, method = opts.auth_user_pass_verify_script
    return ScriptCheck(argv, method, opts.script_security >= 3, opts.tmp_dir, float(opts.hand_window),
                       blank_ok=opts.auth_user_pass_optional)
