"""The options string a layer-2 (dev tap) session sends, as OpenVPN 2.6 writes it for tap:
`dev-type tap`, and link-mtu 32 above tun's (2.6 counts its tap default tun-mtu-extra in it;
Debian's 2.6 logs 'V4,dev-type tap,link-mtu 1573,...' where tun has 1541 for the same config)."""
from __future__ import annotations

from tests.engine.test_memory_link import make_pair, pki  # noqa: F401 - pki is a fixture


def test_tap_options_string(pki):
    tap = make_pair(pki, dev_type="tap", tun_mtu_extra=32)[1]._options_string()   # as settings.py gives tap
    tun = make_pair(pki)[1]._options_string()
    assert tap.startswith("V4,dev-type tap,") and tun.startswith("V4,dev-type tun,")
    mtu = lambda s: int(s.split("link-mtu ")[1].split(",")[0])  # noqa: E731
    assert mtu(tap) == mtu(tun) + 32
    assert tap.replace("dev-type tap", "dev-type tun").replace(f"link-mtu {mtu(tap)}", f"link-mtu {mtu(tun)}") == tun
