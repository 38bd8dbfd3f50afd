"""The one I/O error that is fatal: our own resource failed, not a peer's doing.

Ports (transport/, tun/) raise it when the TUN device vanished or the listening socket was closed;
the pump stops on it with one line saying why. Everything a peer can cause is counted instead
(gateway/ports.py has the full contract).
"""
from __future__ import annotations


class PortGone(Exception):
    """The TUN device, the listening socket or the link socket of our own failed."""
