"""Size limits of the files a config names (regular_file.py SIZE_LIMITS): a regular file far
larger than its kind holds (a disk image or a log named by mistake) was read whole, at start or
on the event loop at a connect, a CRL change or a reload, until memory ran out. Refused now:
before start at the directive's line; while running, only what needed the file fails. The
files are sparse, one byte over the limit (nothing is written to disk)."""
from __future__ import annotations

import io
import os
import re

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue
from appliance.openvpn.config import ConfigError, load_config, parse_config
from appliance.openvpn.crl import CrlChecker, make_crl
from appliance.openvpn.regular_file import (CCD, CONFIG, CRL, KEY_MATERIAL, PASSWORD_DB, POOL, read_limited,
                                            read_regular_file, size_problem)
from tests.gateway.conftest import server_conf

CA = issue("Size CA", None, None)
A = issue("alice", CA, ExtendedKeyUsageOID.CLIENT_AUTH)[0]


def _sparse(path, size: int):
    """`path` made `size` bytes long, what it held kept (NUL bytes after it)."""
    with open(path, "ab") as f:
        f.truncate(size)
    return path


def _pki() -> dict:
    from tests.gateway.conftest import _kpem, _pem
    srv = issue("server", CA, ExtendedKeyUsageOID.SERVER_AUTH)
    return {"ca": _pem(CA[0]), "server": (_pem(srv[0]), _kpem(srv[1])), "clients": {}}


def test_a_file_at_its_limit_is_read_one_byte_more_is_not(tmp_path):
    f = _sparse(tmp_path / "f", CCD.limit)
    assert size_problem(str(f), CCD) is None and len(read_regular_file(str(f), CCD)) == CCD.limit
    _sparse(f, CCD.limit + 1)
    assert "too large" in (size_problem(str(f), CCD) or "")
    with pytest.raises(OSError, match="too large"):
        read_regular_file(str(f), CCD)


def test_a_pipe_or_a_growing_file_is_read_no_further_than_its_limit():
    """A config from a pipe at start (`run /dev/stdin`) has no size to check first."""
    f = io.BytesIO(b"x" * (CCD.limit + 10))
    with pytest.raises(OSError, match="too large"):
        read_limited(f, CCD, "<pipe>")
    assert f.tell() == CCD.limit + 1


@pytest.mark.parametrize("line, kind", [
    ("crl-verify {f}", CRL),
    ("auth-user-pass-verify {f} passdb", PASSWORD_DB),
    ("ifconfig-pool-persist {f} 0", POOL),
    ("extra-certs {f}", KEY_MATERIAL),
])
def test_a_file_a_directive_names_that_is_too_large_is_refused_at_its_line(tmp_path, line, kind):
    f = _sparse(tmp_path / "named", kind.limit + 1)
    conf = server_conf(_pki(), extra=line.format(f=f) + "\n")
    with pytest.raises(ConfigError) as ei:
        parse_config(conf, str(tmp_path / "s.conf"))
    errs = [str(e) for e in getattr(ei.value, "errors", [ei.value])]
    mine = [e for e in errs if "too large" in e]
    assert len(mine) == 1, errs
    assert re.search(rf"s\.conf:9: {line.split()[0]}: cannot read .*too large", mine[0]), mine


def test_a_config_file_too_large_is_refused(tmp_path):
    f = tmp_path / "big.ovpn"
    f.write_bytes(b"client\nremote 198.18.0.1\n")
    _sparse(f, CONFIG.limit + 1)
    for again in (False, True):
        with pytest.raises(ConfigError, match="too large"):
            load_config(str(f), again=again)


def test_an_appliance_toml_too_large_is_refused(tmp_path):
    from appliance.config.schema import load_appliance_config
    f = _sparse(tmp_path / "big.toml", CONFIG.limit + 1)
    for again in (False, True):
        with pytest.raises(ConfigError, match="too large"):
            load_appliance_config(str(f), again=again)


def test_a_ccd_file_too_large_refuses_its_client_only(tmp_path):
    """Read on the event loop at its client's connect."""
    from appliance.gateway.server_files import ccd_loader
    (tmp_path / "ccd").mkdir()
    _sparse(tmp_path / "ccd" / "alice", CCD.limit + 1)
    (tmp_path / "ccd" / "bob").write_text("push-reset\n")
    load = ccd_loader(str(tmp_path / "ccd"))
    with pytest.raises(ConfigError, match="too large"):
        load("alice")
    assert load("bob") is not None and load("carol") is None


def test_a_crl_file_grown_too_large_while_running_is_not_read(tmp_path):
    """As for an unreadable CRL file, every handshake it checks is refused (never a revoked
    certificate let in), until the file is fixed."""
    f = tmp_path / "crl.pem"
    f.write_bytes(make_crl(*CA, []))
    c = CrlChecker("file", str(f))
    assert c.revoked(A) is None
    _sparse(f, CRL.limit + 1)
    why = c.revoked(A)
    assert why is not None and "too large" in why, why


def test_a_password_file_too_large_at_a_reload_refuses_the_reload(tmp_path):
    """The reload reads it (ops.reload catches the OSError: the server runs on as it was)."""
    from appliance.gateway.server_files import load_server_settings
    pw = tmp_path / "passdb"
    pw.write_text("")
    opts = parse_config(server_conf(_pki(), extra=f"auth-user-pass-verify {pw} passdb\n"), str(tmp_path / "s.conf"))
    _sparse(pw, PASSWORD_DB.limit + 1)
    with pytest.raises(OSError, match="too large"):
        load_server_settings(opts)


def test_the_pool_file_read_at_start_is_bounded_too(tmp_path):
    """Grown past its limit after the config's check: read as missing (replaced at the first write)."""
    from appliance.openvpn.poolfile import read
    f = tmp_path / "ipp.txt"
    f.write_text("alice,198.18.8.5\n")
    assert read(str(f)) == {"alice": ("198.18.8.5", None)}
    _sparse(f, POOL.limit + 1)
    assert read(str(f)) == {}
