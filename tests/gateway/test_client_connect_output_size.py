"""A client-connect script's options file read whole or not at all (gateway/scripts.py): OpenVPN
2.6 reads the file it gave the script to its end (options.c read_config_file, no limit), so a
`disable` (or an `ifconfig-push`, an `iroute`) written after 64 KiB of other lines applies
there. Ours read the first 64 KiB and parsed that, silently: the line past it was never seen --
a client the script disabled was let in, and a line cut at the 65,536th byte was read as
whatever its first part said. Now the file is read up to a ccd file's limit (1 MiB,
regular_file.py CCD), its last line included; a larger one refuses the client, saying why."""
from __future__ import annotations

import stat

import pytest

from appliance.gateway import ops as ops_mod
from appliance.gateway.scripts import ScriptRunner
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up

PADDING = b"# " + b"x" * 100 + b"\n"


@pytest.fixture
def inline(monkeypatch):
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))


def _server_with_output(pki, tmp_path, body: bytes) -> tuple[World, object]:
    out = tmp_path / "cc-options"
    out.write_bytes(body)
    cc = tmp_path / "cc.sh"
    cc.write_text(f'#!/bin/sh\ncat {out} > "$1"\nexit 0\n')
    cc.chmod(cc.stat().st_mode | stat.S_IXUSR)
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"script-security 2\nclient-connect {cc}\n"))
    w.add_client(client_conf(pki, "client0"))
    return w, gw


def test_a_disable_after_64_kib_of_other_lines_refuses_the_client(pki, tmp_path, inline, caplog):
    caplog.set_level("INFO")
    w, gw = _server_with_output(pki, tmp_path, PADDING * 700 + b"disable\n")     # ~71 KiB, then disable
    w.run_for(20)
    assert not _up(w, 0)
    assert "client-connect: disable" in caplog.text


def test_an_ifconfig_push_after_64_kib_applies(pki, tmp_path, inline):
    w, gw = _server_with_output(pki, tmp_path, PADDING * 700 + b"ifconfig-push 198.18.0.77 255.255.255.0\n")
    assert w.run(lambda: _up(w, 0), max_time=30)
    rec = next(r for r in gw.d.clients if r.common_name == "client0")
    assert rec.vaddr == "198.18.0.77"


def test_a_file_over_the_ccd_limit_refuses_the_client_saying_why(pki, tmp_path, inline, caplog):
    caplog.set_level("INFO")
    w, gw = _server_with_output(pki, tmp_path, PADDING * (1024 * 1024 // len(PADDING) + 1))
    w.run_for(20)
    assert not _up(w, 0)
    assert "too large" in caplog.text and "client-connect" in caplog.text


def test_a_pipe_left_at_the_options_path_refuses_the_client_without_blocking(pki, tmp_path, inline, caplog):
    """open() of a FIFO waits for a writer: the worker that read the options file hung for good."""
    caplog.set_level("INFO")
    cc = tmp_path / "cc.sh"
    cc.write_text('#!/bin/sh\nrm -f "$1" && mkfifo "$1"\nexit 0\n')
    cc.chmod(cc.stat().st_mode | stat.S_IXUSR)
    w = World()
    w.add_server(server_conf(pki, extra=f"script-security 2\nclient-connect {cc}\n"))
    w.add_client(client_conf(pki, "client0"))
    w.run_for(20)
    assert not _up(w, 0)
    assert "cannot read its options file" in caplog.text


def test_the_options_file_is_parsed_by_the_worker_not_on_the_loop(tmp_path):
    """Up to 1 MiB of `push` lines took ~0.25 s to parse; the runner's worker parses them now,
    and its verdict carries the options (or why they cannot be used)."""
    from appliance.gateway.scripts import ConnectOutput
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_bytes(b'push "route 10.1.0.0 255.255.0.0"\n' * 3 + b"ifconfig-push 198.18.0.77 255.255.255.0\n")
    bad.write_bytes(b"iroute 10.2.0.\xe9 255.255.255.0\n")
    r = ScriptRunner(inline=True)
    for src in (good, bad):
        cc = tmp_path / f"cc-{src.name}.sh"
        cc.write_text(f'#!/bin/sh\ncat {src} > "$1"\n')
        cc.chmod(cc.stat().st_mode | stat.S_IXUSR)
        assert r.submit(("connect", src.name), [str(cc)], {}, True) is None
    (_k1, ok1, out1, _r1), (_k2, ok2, out2, _r2) = r.take_results()
    r.close()
    assert ok1 and isinstance(out1, ConnectOutput) and out1.error is None
    assert out1.options.ifconfig_push[0] == "198.18.0.77" and len(out1.options.push) == 3
    assert ok2 and out2.options is None and "<client-connect output>:1: iroute" in str(out2.error)
