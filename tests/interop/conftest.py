"""Interop tests need root, Debian's openvpn, iperf3 and /dev/net/tun: fail (never skip) without."""
import pytest

from lab.tools import require_root_and_tools


@pytest.fixture(scope="session", autouse=True)
def _interop_prerequisites():
    require_root_and_tools()
