"""Lines real OpenVPN 2.6 profiles and server configs carry that 2.6 accepts with no effect (or
checks only): accepted here too, with the reason, instead of "unknown directive" -- a PIA profile
ends with `disable-occ`, tuning guides give servers `hash-size`/`bcast-buffers`/`socket-flags` --
and their bad arguments refused at their line as 2.6 refuses them."""
from __future__ import annotations

import pytest

from appliance.openvpn.config import parse_config
from tests.unit.test_options_compat import BASE, _no_files, _one_error

SERVER = ("port 1194\nproto udp\ndev tun\nserver 198.19.0.0 255.255.255.0\n<ca>\nX\n</ca>\n<cert>\nX\n</cert>\n"
          "<key>\nX\n</key>\ndh none\n")


def test_a_pia_style_profile_with_disable_occ_parses():
    o = parse_config(BASE + "auth-user-pass\ndisable-occ\nsocket-flags TCP_NODELAY\ncomp-lzo no\n", "/p/c.ovpn",
                     _no_files)
    assert o.auth_user_pass_required
    assert any("disable-occ" in n and "nothing to disable" in n for n in o.notes)


def test_server_tuning_lines_parse_with_their_reason():
    o = parse_config(SERVER + "hash-size 1024 1024\nbcast-buffers 512\nkeying-material-exporter EXPORTER-app 32\n",
                     "/p/s.conf", _no_files)
    assert [n for n in o.notes if "keying-material-exporter" in n and "TLS_FINAL plugin" in n]


@pytest.mark.parametrize("line,why", [
    ("socket-flags TCP_CORK", "unknown socket flag: TCP_CORK"),
    ("keying-material-exporter app 32", 'must begin with "EXPORTER"'),
    ("keying-material-exporter EXPORTER-app 4096", "16-4095"),
])
def test_their_bad_arguments_are_refused_at_their_line(line, why):
    e = _one_error(BASE + line + "\n")
    assert e.line == 6 and why in str(e)
