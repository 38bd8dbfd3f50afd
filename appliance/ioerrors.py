"""The one I/O error that is fatal: our own resource failed, not a peer's doing.

Ports (transport/, tun/) raise it when the TUN device vanished or the listening socket was closed;
the pump stops on it with one line saying why. Everything a peer can cause is counted instead
(gateway/ports.py has the full contract).
"""
from __future__ import annotations

import errno


class PortGone(Exception):
    """The TUN device, the listening socket or the link socket of our own failed."""


def start_failed(opts, directive: str, message: str) -> PortGone:
    """A start-up failure a config value caused (a port in use, `local` not on this host, a `dev`
    name another device holds, a management socket's directory missing): fatal like PortGone,
    its one line `file:line: directive: why` (errors.located), as every config error."""
    from .openvpn.errors import ConfigError, located
    return PortGone(str(located(opts, ConfigError(message, directive=directive))))


def tun_open_failed(opts, kind: str, name: str, e: OSError) -> PortGone:
    """The TUN/TAP device could not be made: at `dev`'s line. EINVAL from TUNSETIFF is a device of
    that name that is no TUN/TAP device (`dev lo`, `dev eth0`), which the kernel words no better."""
    why = e.strerror or str(e)
    if e.errno == errno.EINVAL:
        why = f"a device named {name} exists and is not a {kind.upper()} device ({why})"
    elif e.errno == errno.EBUSY:
        why = f"{name} is in use by another process ({why})"
    return start_failed(opts, "dev", f"cannot create the {kind.upper()} device {name}: {why}")


IFNAMSIZ = 16           # the kernel's interface name buffer: 15 characters and the NUL


def dev_name_cut(opts, asked: str, made: str) -> str | None:
    """The warning, at `dev`'s line, when the kernel cut a `dev` name longer than it takes: its
    tun driver keeps the first 15 bytes and says nothing, and so does OpenVPN 2.6 (the device
    is `tun-abcdefghijk` for `dev tun-abcdefghijklmnop`). Kept so, as a config written for 2.6
    names the device it gets there; said, so that scripts or firewall rules written with the
    long name are not a mystery. None when the name was taken whole."""
    if len(asked.encode()) < IFNAMSIZ:
        return None
    from .openvpn.errors import ConfigError, located
    return str(located(opts, ConfigError(
        f"{asked!r} is longer than the {IFNAMSIZ - 1} characters a device name may have: the kernel cut it, "
        f"the device is {made} (as with OpenVPN 2.6)", directive="dev")))
