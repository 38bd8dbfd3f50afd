"""Client-config-dir files: the per-client directives a server reads when a client connects."""
from __future__ import annotations

import ipaddress

from ..errors import ConfigError
from ..keymethod import PUSH_CONTROL_BYTE, refused_in_control_text
from ..peernames import for_display
from .lexer import lines
from .model import CcdOptions, ConfigErrors


def _addresses_error(d: str, a: list[str]) -> str | None:
    """Why the addresses of an ifconfig-push or iroute line are unusable, else None. Checked
    here, as clientpush.py reads them (an IPv4 address and a netmask or peer address; a
    network and its netmask): a file read as its bytes holds anything, and a value that
    ipaddress refused when the client was pushed to was an internal error (a traceback at each
    of its tries) where the file's own line should refuse it."""
    try:
        if d == "ifconfig-push":
            ipaddress.IPv4Address(a[0])
            ipaddress.IPv4Address(a[1])
        else:
            ipaddress.IPv4Network(f"{a[0]}/{a[1] if len(a) > 1 else '255.255.255.255'}", strict=False)
    except ValueError:
        return f"not an IPv4 address and netmask: {for_display(' '.join(a[:2]))!r}"
    return None


def parse_ccd(text: str, path: str = "<ccd>") -> CcdOptions:
    """A client-config-dir file: ifconfig-push, iroute, push, push-reset, disable."""
    c = CcdOptions()
    errors: list[ConfigError] = []
    for ln in lines(text):
        if ln.tokens is None:
            errors.append(ConfigError(ln.error or "cannot parse", path, ln.number, ln.first_word))
            continue
        d, a = ln.tokens[0].lower(), ln.tokens[1:]
        if ln.inline is not None:
            errors.append(ConfigError("inline blocks are not supported in a client-config-dir file",
                                      path, ln.number, d))
        elif d in ("ifconfig-push", "iroute") and len(a) >= (2 if d == "ifconfig-push" else 1) \
                and (why := _addresses_error(d, a)) is not None:
            errors.append(ConfigError(why, path, ln.number, d))
        elif d == "ifconfig-push" and len(a) >= 2:
            c.ifconfig_push = (a[0], a[1])
        elif d == "iroute" and len(a) >= 1:
            c.iroutes.append((a[0], a[1] if len(a) > 1 else "255.255.255.255"))
        elif d == "push" and len(a) == 1 and refused_in_control_text(a[0]):
            errors.append(ConfigError(PUSH_CONTROL_BYTE, path, ln.number, d))
        elif d == "push" and len(a) == 1:
            c.push.append(a[0])
        elif d == "push-reset":
            c.push_reset = True
        elif d == "disable":
            c.disable = True
        else:
            errors.append(ConfigError("not supported in a client-config-dir file", path, ln.number, d))
    if errors:
        raise ConfigErrors(errors) if len(errors) > 1 else errors[0]
    return c
