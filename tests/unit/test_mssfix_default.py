"""The `mssfix` a config runs with when it gives no `mssfix N` (settings.mssfix_in_force), as
OpenVPN 2.6 decides it (options.c options_postprocess_mutate_ce): `1492 mtu` with tun-mtu 1500,
`<tun-mtu> fixed` (MSS = tun-mtu - 40) with any other, `fragment N` -> `N mtu`, link-mtu -> off.
The `openvpn` tests compare each case with what Debian's 2.6 prints at `--verb 4`."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from appliance.openvpn.config import parse_config
from appliance.openvpn.settings import check_mss, mss_rule, mssfix_in_force, tcp_mss

BASE = "client\ndev tun\nremote 198.18.0.1 1194\n<ca>\n</ca>\n"
HEAD = "client\n<ca>\n</ca>\n"         # ours takes a TLS client profile; Debian's dump is printed without them
OPENVPN = "/usr/sbin/openvpn"
CIPHERS = ("AES-256-GCM", "CHACHA20-POLY1305", "AES-128-CBC")


def _no_files(path: str) -> bytes:
    raise FileNotFoundError(2, "No such file or directory", path)


def _opts(extra: str):
    return parse_config(BASE + extra, "/p/c.ovpn", _no_files)


# (profile lines, 2.6's (mssfix, mssfix_encap, mssfix_fixed) as its --verb 4 prints them)
CASES = [
    ("", (1492, True, False)),
    ("tun-mtu 1500\n", (1492, True, False)),
    ("tun-mtu 1400\n", (1400, True, True)),
    ("tun-mtu 1300\n", (1300, True, True)),
    ("tun-mtu 9000\n", (9000, True, True)),
    ("tun-mtu 1300\nmssfix\n", (1300, True, True)),          # `mssfix` alone: the default
    ("tun-mtu 1300\nmssfix 0\n", (0, None, False)),          # off (encap: nothing to compare)
    ("tun-mtu 1400\nmssfix 1400\n", (1400, False, False)),   # given: not the default
    ("tun-mtu 1400\nmssfix 1300 mtu\n", (1300, True, False)),
    ("tun-mtu 1400\nmssfix 1300 fixed\n", (1300, None, True)),
    ("tun-mtu 1300\nfragment 1200\n", (1200, True, False)),  # fragment wins over tun-mtu
    ("link-mtu 1400\n", (0, None, False)),                   # no tun-mtu: 2.6 clamps nothing
    ("tun-mtu 1400\nmax-packet-size 1300\n", (1300, True, False)),
    ("dev-type tap\ntun-mtu 1400\n", (1400, True, True)),
    # given twice (compat42): a later `mssfix N [mtu]` (or max-packet-size) keeps an earlier `fixed`
    ("mssfix 1300 fixed\nmssfix 1200\n", (1200, False, True)),
    ("mssfix 1300 fixed\nmssfix 1200 mtu\n", (1200, True, True)),
    ("mssfix 1300 fixed\nmax-packet-size 1200\n", (1200, True, True)),
    ("mssfix 1300 fixed\nmssfix 0\n", (0, None, False)),
    ("mssfix 1300 fixed\nmssfix\n", (1492, True, False)),      # only `mssfix` alone clears it
    ("tun-mtu 1400\nmssfix 1300 fixed\nmssfix\n", (1400, True, True)),
    ("mssfix 1300 mtu\nmssfix 1200\n", (1200, False, False)),  # `mtu` is each line's own
    ("mssfix 1300\nmssfix 1200 mtu\n", (1200, True, False)),
    ("mssfix 1200 mtu\nmssfix 1300 fixed\n", (1300, None, True)),
    ("link-mtu 1400\nmssfix 1300\nmssfix\n", (1300, True, False)),  # bare keeps N: link-mtu leaves no default
    ("link-mtu 1400\nmax-packet-size 1300\nmssfix\nmssfix\n", (1300, True, False)),
]


@pytest.mark.parametrize("extra, want", CASES)
def test_mssfix_in_force_is_2_6s(extra, want):
    n, mtu, fixed = mssfix_in_force(_opts(extra))
    assert n == want[0] and fixed == want[2]
    if want[1] is not None:
        assert mtu == want[1]


@pytest.mark.parametrize("tun_mtu", [1400, 1300, 1000, 9000])
def test_fixed_default_mss_is_tun_mtu_less_40_whatever_the_tunnel(tun_mtu):
    """The TUN's MTU bounds the inner packet: no cipher, transport, outer family or tap's
    tun-mtu-extra counts (2.6's frame_calculate_mssfix returns before any of them)."""
    for dev in ("", "dev-type tap\n"):
        o = _opts(f"{dev}tun-mtu {tun_mtu}\n")
        for c in CIPHERS:
            for tcp in (False, True):
                for six in (False, True):
                    assert tcp_mss(o, None, tcp, six, cipher=c) == tun_mtu - 40
        assert mss_rule(o, False)("AES-256-GCM", True) == tun_mtu - 40


def test_tun_mtu_1500_keeps_1492_mtu():
    """With the default tun-mtu the clamp counts the tunnel's headers: below 1460, different per cipher."""
    for text in ("", "tun-mtu 1500\n"):
        o = _opts(text)
        gcm, cbc = (tcp_mss(o, None, False, cipher=c) for c in ("AES-256-GCM", "AES-128-CBC"))
        assert gcm < 1460 and cbc < gcm


@pytest.mark.parametrize("extra", ["tun-mtu 1300\nmssfix 0\n", "link-mtu 1400\n"])
def test_no_clamping(extra):
    assert tcp_mss(_opts(extra), None, False, cipher="AES-256-GCM") is None


def test_smallest_tun_mtu_is_not_refused():
    """tun-mtu 100 (2.6's floor) runs there with MSS 60: its default is not refused here."""
    o = _opts("tun-mtu 100\n")
    check_mss(o)
    assert tcp_mss(o, None, False, cipher="AES-256-GCM") == 60


def test_tiny_explicit_fixed_is_refused():
    with pytest.raises(Exception, match="mssfix 50"):
        check_mss(_opts("mssfix 50 fixed\n"))


BLOCKS = [   # (global lines, first block's lines, 2.6's entry for the block)
    ("", "tun-mtu 1400\n", (1492, True, False)),            # the profile's tun-mtu (1500) decides
    ("tun-mtu 1400\n", "tun-mtu 1300\n", (1300, True, True)),  # ... and N is the block's
    ("tun-mtu 1400\n", "tun-mtu 1500\n", (1500, True, True)),
    ("tun-mtu 1400\n", "", (1400, True, True)),
    ("mssfix 1300 fixed\n", "mssfix 1200\n", (1200, False, True)),  # the block starts from the global flags
]


def _blocks_profile(glob: str, block: str) -> str:
    return (f"{HEAD}dev tun\n{glob}<connection>\nremote 198.18.0.1 1194\n{block}</connection>\n"
            "<connection>\nremote 198.18.0.2 1194\n</connection>\n")


@pytest.mark.parametrize("glob, block, want", BLOCKS)
def test_connection_block_default(glob, block, want):
    o = parse_config(_blocks_profile(glob, block), "/p/c.ovpn", _no_files)
    assert mssfix_in_force(o.remotes[0].entry) == want


# ------------------------------------------------------------------ against Debian's 2.6
def _debian_entries(tmp_path, text: str) -> list[tuple[int, bool, bool]]:
    """(mssfix, mssfix_encap, mssfix_fixed) of each connection profile Debian's openvpn prints."""
    conf = tmp_path / "c.conf"
    conf.write_text(text.replace(HEAD, "").replace("client\n", "").replace("<ca>\n</ca>\n", "")
                    .replace("dev tun\n", "dev null\n", 1) + "verb 4\n")
    proc = subprocess.Popen([OPENVPN, "--config", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    out: list[str] = []
    try:
        for _ in range(2000):                  # it prints its options first, then runs: read them, stop it
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if "Connection profiles END" in line:
                break
    finally:
        proc.kill()
        proc.wait(5)
    text_out = "".join(out)
    got = []
    for block in re.split(r"Connection profiles \[\d+\]:", text_out)[1:]:
        f = dict(re.findall(r"\s(mssfix(?:_encap|_fixed)?) = (\S+)", block))
        got.append((int(f["mssfix"]), f["mssfix_encap"] == "ENABLED", f["mssfix_fixed"] == "ENABLED"))
    assert got, text_out[-2000:]
    return got


needs_openvpn = pytest.mark.skipif(shutil.which(OPENVPN) is None, reason="Debian's openvpn not installed")


def _same(ours: tuple[int, bool, bool], theirs: tuple[int, bool, bool]) -> bool:
    """Equal where it matters: no clamping is alike whatever the flags; `fixed` ignores `mtu`."""
    if ours[0] == 0 or theirs[0] == 0:
        return ours[0] == theirs[0]
    if ours[2] or theirs[2]:
        return ours[0] == theirs[0] and ours[2] == theirs[2]
    return ours == theirs


@pytest.mark.openvpn
@needs_openvpn
@pytest.mark.parametrize("extra", [c[0] for c in CASES])
def test_matches_debian_openvpn(tmp_path, extra):
    theirs = _debian_entries(tmp_path, BASE + extra)
    assert _same(mssfix_in_force(_opts(extra)), theirs[0]), theirs


@pytest.mark.openvpn
@needs_openvpn
@pytest.mark.parametrize("glob, block, want", BLOCKS)
def test_blocks_match_debian_openvpn(tmp_path, glob, block, want):
    text = _blocks_profile(glob, block)
    theirs = _debian_entries(tmp_path, text)
    o = parse_config(text, "/p/c.ovpn", _no_files)
    assert [mssfix_in_force(r.entry or o) for r in o.remotes] == theirs
