"""What the lab runs on the host: Debian's OpenVPN, our program from the repository's venv, and the
check that root and the tools are there (interop tests fail, never skip, without them)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

OPENVPN = shutil.which("openvpn") or "/usr/sbin/openvpn"
REPO = Path(__file__).resolve().parents[1]
OUR_BIN = str(REPO / ".venv" / "bin" / "vpn-appliance")


def require_root_and_tools() -> None:
    """Fail (not skip) with a message saying what is missing."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (namespaces and TUN devices)")
    for tool in ("openvpn", "ip", "ping", "iperf3"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            missing.append(tool)
    if not os.path.exists("/dev/net/tun"):
        missing.append("/dev/net/tun")
    if missing:
        raise RuntimeError("interop lab needs: " + ", ".join(missing) + " (run `make setup` as root)")
