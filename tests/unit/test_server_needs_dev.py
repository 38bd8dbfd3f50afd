"""A server config without `dev`: OpenVPN 2.6 refuses it before start ("--server directive only
makes sense with --dev tun or --dev tap", or "You must define TUN/TAP device (--dev)" for `mode
server` without `server`); `dev-type` alone does not do. Before, ours took tun and came up with a
config 2.6 never runs."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError

HEAD = "tls-server\ndh none\n<ca>\nX\n</ca>\n<cert>\nX\n</cert>\n<key>\nX\n</key>\n"   # 11 lines
CASES = {   # the lines after HEAD -> the line ours names (None: taken)
    "server, no dev": ("server 198.19.0.0 255.255.255.0\n", 12),
    "dev-type alone": ("dev-type tun\nserver 198.19.0.0 255.255.255.0\n", 13),
    "mode server, no dev": ("mode server\nifconfig 198.19.0.1 255.255.255.0\nifconfig-pool 198.19.0.2 198.19.0.9\n",
                            12),
    "dev tun": ("dev tun\nserver 198.19.0.0 255.255.255.0\n", None),
    "dev tap": ("dev tap\nserver 198.19.0.0 255.255.255.0\n", None),
}


def _ours(lines: str) -> int | None:
    """The line of our refusal naming `dev`, None when the config is taken (or refused for something else)."""
    try:
        parse_config(HEAD + lines, "/p/s.conf", lambda p: b"")
    except ConfigError as e:
        for err in getattr(e, "errors", [e]):
            if "`dev`" in str(err):
                assert f"s.conf:{err.line}" in str(err)
                return err.line
    return None


@pytest.mark.parametrize("case", CASES)
def test_ours(case):
    lines, line = CASES[case]
    assert _ours(lines) == line


@pytest.mark.openvpn
@pytest.mark.parametrize("case", CASES)
def test_as_debians_openvpn(case, tmp_path):
    """Debian's 2.6 with the same lines refuses exactly the configs ours refuses for `dev`, before
    it opens any file (the CA here does not exist)."""
    openvpn = shutil.which("openvpn") or "/usr/sbin/openvpn"
    lines, line = CASES[case]
    conf = tmp_path / "s.conf"
    conf.write_text(f"tls-server\ndh none\nca {tmp_path}/none.crt\ncert {tmp_path}/none.crt\n"
                    f"key {tmp_path}/none.key\n" + lines)
    r = subprocess.run([openvpn, "--config", str(conf)], capture_output=True, text=True, timeout=20)
    out = r.stdout + r.stderr
    theirs = ("only makes sense with --dev tun or --dev tap" in out or "You must define TUN/TAP device (--dev)" in out)
    assert r.returncode != 0 and theirs is (line is not None), out
