"""`block-outside-dns` as OpenVPN 2.6 on Linux takes it: a plain line is refused ("Unrecognized
option": options.c parses it on Windows only), `setenv opt` / ignore-unknown-option lines -- how
profiles shared with Windows clients carry it -- are ignored. Before, ours accepted a plain line,
a DNS-leak guard passing as accepted while nothing applied it."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError

BASE = "client\ndev tun\nremote 198.18.60.9\n<ca>\nx\n</ca>\n"
CASES = {
    "plain": ("block-outside-dns\n", False),
    "setenv opt": ("setenv opt block-outside-dns\n", True),
    "ignore-unknown-option": ("ignore-unknown-option block-outside-dns\nblock-outside-dns\n", True),
}


def _ours(extra: str) -> bool:
    try:
        parse_config(BASE + extra, "/mem/p.ovpn", read_file=lambda p: b"")
        return True
    except ConfigError as e:
        assert "p.ovpn:7" in str(e) and "block-outside-dns" in str(e) and "setenv opt" in str(e), e
        return False


@pytest.mark.parametrize("case", CASES)
def test_ours(case):
    extra, taken = CASES[case]
    assert _ours(extra) is taken


@pytest.mark.openvpn
@pytest.mark.parametrize("case", CASES)
def test_as_debians_openvpn(case, tmp_path):
    """Debian's 2.6 reads the same lines: it refuses a line as unrecognized, or goes on to stop at
    the missing CA (checked only once every line is read)."""
    openvpn = shutil.which("openvpn") or "/usr/sbin/openvpn"
    extra, _ = CASES[case]
    conf = tmp_path / "p.conf"
    conf.write_text("client\ndev tun\nremote 198.18.60.9\n" + extra)
    r = subprocess.run([openvpn, "--config", str(conf)], capture_output=True, text=True, timeout=20)
    theirs_refused = "Options error: Unrecognized option" in r.stdout + r.stderr
    assert theirs_refused is (not _ours(extra)), r.stdout + r.stderr
