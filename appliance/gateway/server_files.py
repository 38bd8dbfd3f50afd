"""The files a server config names beside itself (password file, client-config-dir), read into
the dispatcher's settings: one place for the start and for a reload."""
from __future__ import annotations

import os

from ..openvpn.config import Options, parse_ccd
from ..openvpn.server import ServerSettings
from ..openvpn.settings import server_settings


def ccd_loader(directory: str):
    """Common name -> parsed ccd file (or None); names that could leave the directory get None."""

    def load(cn: str):
        if not cn or "/" in cn or cn.startswith("."):
            return None
        path = os.path.join(directory, cn)
        try:
            with open(path, encoding="utf-8") as f:
                return parse_ccd(f.read(), path)
        except FileNotFoundError:
            return None
    return load


def load_server_settings(opts: Options) -> ServerSettings:
    """server_settings with the password file read and the ccd directory attached; password
    checks deferred to the gateway's worker (never in the event loop)."""
    passdb = None
    if opts.auth_user_pass_verify:
        with open(opts.auth_user_pass_verify[0], encoding="utf-8") as f:
            passdb = f.read()
    ccd = ccd_loader(opts.client_config_dir) if opts.client_config_dir else None
    return server_settings(opts, ccd, passdb, defer_auth=True)
