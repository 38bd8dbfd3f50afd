"""Compatibility shim: the OpenVPN config parser lives in appliance/openvpn/config/ (one directive
table); this module keeps `from appliance.openvpn.options import ...` working."""
from __future__ import annotations

from .config import (DEFAULT_CIPHERS, MSSFIX_DEFAULT, CcdOptions, ConfigErrors, Options, Remote, Route,
                     load_config, parse_ccd, parse_config, render_options)
from .config.table import INLINE_TAGS, NOOP, REFUSE, TABLE

__all__ = ["CcdOptions", "ConfigErrors", "DEFAULT_CIPHERS", "INLINE_TAGS", "MSSFIX_DEFAULT", "NOOP", "Options",
           "REFUSE", "Remote", "Route", "TABLE", "load_config", "parse_ccd", "parse_config", "render_options"]
