"""The options string of the key-method message says `comp-lzo` whenever compression framing is
configured, as OpenVPN 2.6's options_string does (after `proto`, before fragment's `mtu-dynamic`):
a `compress migrate` server (OPNsense's "migrate" choice) decides from it alone whether to push
its uncompressed framing (tests/interop/test_installer_configs_vs_openvpn.py runs one)."""
from __future__ import annotations

import pytest

from tests.engine.test_memory_link import make_pair, pki  # noqa: F401 - pki is a fixture


@pytest.mark.parametrize("comp", ["lzo-stub", "stub", "stub-v2"])
def test_comp_lzo_in_the_options_string_with_any_framing(pki, comp):
    c, s, _ = make_pair(pki, comp=comp, fragment_room=1300)
    for end in (c, s):
        o = end._options_string()
        assert ",proto UDPv4,comp-lzo,mtu-dynamic," in o, o


def test_no_comp_lzo_without_framing(pki):
    c, s, _ = make_pair(pki)
    assert ",comp-lzo" not in c._options_string() and ",comp-lzo" not in s._options_string()
