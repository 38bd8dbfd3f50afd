"""OpenVPN 2.6's line limit in config files (options.c read_config_file: fgets into
OPTION_LINE_SIZE+1 bytes, "Maximum option line length (256) exceeded" when a read fills 256),
and its UTF-8 byte-order mark skip. A profile OpenVPN refuses is refused at file:line; one it
accepts (long inline certificate lines, a BOM) is accepted. The last test holds the same files
against Debian's openvpn."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from appliance.openvpn.config import parse_ccd, parse_config
from appliance.openvpn.errors import ConfigError

HEAD = "client\ndev tun\nremote 198.18.0.1 1194\n"     # 3 lines


def _no_files(path: str) -> bytes:
    raise FileNotFoundError(2, "No such file or directory", path)


def _long_line_errors(text: str) -> list[str]:
    try:
        parse_config(text, "/p/c.ovpn", _no_files)
    except ConfigError as e:
        return [str(x) for x in getattr(e, "errors", [e]) if "line is too long" in str(x)]
    return []


# (name, line 4 of the file with its end, refused?) -- bytes before the LF as fgets counts them
CASES = [
    ("comment-254", "#" + "x" * 253 + "\n", False),
    ("comment-255", "#" + "x" * 254 + "\n", True),
    ("crlf-254", "#" + "x" * 253 + "\r\n", True),             # the CR is one of the bytes
    ("setenv-255", "setenv X " + "y" * 246 + "\n", True),
    ("blank-300", " " * 300 + "\n", True),
    ("utf8-255-bytes", "#" + "\u00e9" * 127 + "\n", True),     # 128 characters, 255 bytes
    ("last-255-no-lf", "#" + "x" * 254, False),
    ("last-256-no-lf", "#" + "x" * 255, True),
    ("inline-1000", "<ca>\n" + "A" * 1000 + "\n</ca>\n", False),
]


@pytest.mark.parametrize("name, line, refused", CASES, ids=[c[0] for c in CASES])
def test_long_lines_are_refused_at_their_line(name, line, refused):
    errs = _long_line_errors(HEAD + line)
    if refused:
        assert len(errs) == 1 and errs[0].startswith("/p/c.ovpn:4: "), errs
    else:
        assert errs == []


@pytest.mark.parametrize("errors", ["surrogateescape", "replace"])
def test_undecodable_bytes_count_one_each(errors):
    """254 Latin-1 letters are 254 bytes to OpenVPN, however the file was decoded: load_config
    and ccd files keep such bytes (surrogateescape, peernames), other readers replace them."""
    data = (HEAD.encode() + b"#" + b"\xe9" * 253 + b"\n")
    assert _long_line_errors(data.decode("utf-8", errors)) == []
    data = (HEAD.encode() + b"#" + b"\xe9" * 254 + b"\n")
    assert len(_long_line_errors(data.decode("utf-8", errors))) == 1


def test_byte_order_mark_is_skipped():
    o = parse_config("\ufeff" + HEAD + "<ca>\nX\n</ca>\n", "/p/c.ovpn", _no_files)
    assert o.remotes[0].host == "198.18.0.1"


def test_ccd_line_too_long_refuses_that_file():
    """OpenVPN logs the error and reads the line in pieces; a ccd file we cannot read as written
    refuses its client (server_files.ccd_loader)."""
    with pytest.raises(ConfigError, match=r"/ccd/x:2: .*line is too long"):
        parse_ccd("iroute 198.18.50.0 255.255.255.0\npush \"" + "x" * 260 + "\"\n", "/ccd/x")


@pytest.mark.openvpn
@pytest.mark.parametrize("name, line, refused", CASES, ids=[c[0] for c in CASES])
def test_openvpn_refuses_the_same_lines(tmp_path, name, line, refused):
    """Debian's 2.6 on the same file: its "Maximum option line length" error iff ours."""
    path = tmp_path / "c.ovpn"
    path.write_bytes((HEAD + line).encode())
    assert os.path.exists("/usr/sbin/openvpn"), "Debian's openvpn is needed (make setup installs it)"
    r = subprocess.run([shutil.which("openvpn") or "/usr/sbin/openvpn", "--config", str(path)],
                       capture_output=True, timeout=20, cwd=tmp_path)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    assert ("Maximum option line length" in out and "c.ovpn:4:" in out) == refused, out[-500:]
