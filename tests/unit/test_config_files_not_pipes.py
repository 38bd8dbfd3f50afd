"""Files a config names that are no regular file (regular_file.py): a pipe or a device named by
mistake must be refused, with the directive's line, never waited on or read without end. A FIFO's
open() waits for a writer (the start hung without a word; a reload, or a CRL file swapped for a
pipe while running, blocked the event loop for good) and /dev/zero never ends."""
from __future__ import annotations

import os
import re
import threading

import pytest

from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue
from appliance.openvpn.config import ConfigError, parse_config
from appliance.openvpn.crl import CrlChecker, make_crl
from tests.gateway.conftest import server_conf

CA = issue("Pipe CA", None, None)
A = issue("alice", CA, ExtendedKeyUsageOID.CLIENT_AUTH)[0]


def _bounded(fn, fifo) -> tuple[bool, list]:
    """Run fn in a thread for at most 3 s; (whether it was still blocked, [its result or error]).
    A thread stuck on the FIFO is let go by opening and closing its writing end."""
    out: list = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as e:  # noqa: BLE001 - the test looks at it
            out.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(3)
    blocked = t.is_alive()
    for _ in range(50):
        if not t.is_alive():
            break
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
        t.join(0.1)
    return blocked, out


def test_a_ca_naming_a_pipe_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "ca.fifo"
    os.mkfifo(fifo)
    conf = re.sub(r"<ca>.*?</ca>\n", f"ca {fifo}\n", server_conf(_pki()), flags=re.S)
    blocked, out = _bounded(lambda: parse_config(conf, str(tmp_path / "s.conf")), fifo)
    assert not blocked, "the config's reading waited on the pipe named by `ca`"
    assert isinstance(out[0], ConfigError) and "not a regular file" in str(out[0]), out


def test_a_crl_file_swapped_for_a_pipe_while_running_refuses_everyone_at_once(tmp_path):
    f = tmp_path / "crl.pem"
    f.write_bytes(make_crl(*CA, []))
    c = CrlChecker("file", str(f))
    assert c.revoked(A) is None
    fifo = tmp_path / "crl.fifo"
    os.mkfifo(fifo)
    os.replace(fifo, f)
    blocked, out = _bounded(lambda: c.revoked(A), f)
    assert not blocked, "a handshake's CRL check waited on the pipe (the event loop's thread)"
    assert out and "not a regular file" in out[0]


def _pki() -> dict:
    from tests.gateway.conftest import _kpem, _pem
    srv = issue("server", CA, ExtendedKeyUsageOID.SERVER_AUTH)
    return {"ca": _pem(CA[0]), "server": (_pem(srv[0]), _kpem(srv[1])), "clients": {}}


@pytest.mark.parametrize("line", [
    "crl-verify {fifo}",
    "auth-user-pass-verify {fifo} passdb",
    "ifconfig-pool-persist {fifo} 0",            # read at start with open()+read(): a FIFO hung it
    "management 127.0.0.1 7505 {fifo}",           # the management password file, read at start
])
def test_a_file_a_directive_names_that_is_a_pipe_is_refused_at_its_line(tmp_path, line):
    fifo = tmp_path / "named.fifo"
    os.mkfifo(fifo)
    conf = server_conf(_pki(), extra=line.format(fifo=fifo) + "\n")
    blocked, out = _bounded(lambda: parse_config(conf, str(tmp_path / "s.conf")), fifo)
    assert not blocked
    assert isinstance(out[0], ConfigError) and "not a regular file" in str(out[0]), out
    assert line.split()[0] in str(out[0]) and "s.conf:9" in str(out[0])          # the directive's line


def test_a_ccd_file_that_is_a_pipe_refuses_its_client_without_blocking(tmp_path):
    """The ccd file is read on the event loop when its client connects: a FIFO there (an
    operator's slip) blocked the loop for good, every client's packets waiting."""
    from appliance.gateway.server_files import ccd_loader
    (tmp_path / "ccd").mkdir()
    fifo = tmp_path / "ccd" / "alice"
    os.mkfifo(fifo)
    (tmp_path / "ccd" / "bob").write_text("push-reset\n")
    load = ccd_loader(str(tmp_path / "ccd"))
    blocked, out = _bounded(lambda: load("alice"), fifo)
    assert not blocked, "the ccd reading waited on a pipe (the event loop's thread)"
    assert isinstance(out[0], ConfigError) and "not a regular file" in str(out[0]), out
    assert load("bob") is not None and load("carol") is None


def test_the_pool_persist_reading_does_not_wait_on_a_pipe(tmp_path):
    """The reading itself (the file may be swapped between the config's check and the start): a
    FIFO is not waited on (the same check keeps /dev/zero from being read until memory runs out;
    not run here: without the check it would eat the test machine's memory)."""
    from appliance.openvpn.poolfile import PoolMemory
    fifo = tmp_path / "ipp.txt"
    os.mkfifo(fifo)
    blocked, out = _bounded(lambda: PoolMemory(str(fifo), 0).entries, fifo)
    assert not blocked, "the pool file's reading waited on a pipe (the start)"
    assert out == [{}]


def test_the_management_password_reading_does_not_wait_on_a_pipe(tmp_path):
    from appliance.gateway.management import read_password_file
    fifo = tmp_path / "mgmt.pw"
    os.mkfifo(fifo)
    blocked, out = _bounded(lambda: read_password_file(str(fifo)), fifo)
    assert not blocked, "the management password's reading waited on a pipe (the start)"
    assert isinstance(out[0], OSError) and "not a regular file" in str(out[0]), out
