"""A username that is not UTF-8 goes through the whole server as its bytes: the status file
(every version), ifconfig-pool-persist, a client-connect script's environment, and the log. What
OpenVPN 2.6 writes there is the bytes (tests/interop/test_username_bytes_vs_openvpn.py checks the
status file and the ccd file against it); ours wrote `caf\\ufffd`'s UTF-8. Each of these writes
must also take such a name without an exception: a strict encode there would have failed the
status write, the pool file and the log for every client, at the wish of one."""
from __future__ import annotations

import logging
import stat

from appliance.logsetup import FORMAT, _Formatter
from appliance.openvpn import peernames
from appliance.openvpn.passdb import hash_password
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up

NAME = b"caf\xe9"


def test_status_pool_file_script_and_log_hold_the_bytes(pki, tmp_path, monkeypatch, caplog):
    from appliance.gateway import ops as ops_mod
    from appliance.gateway.scripts import ScriptRunner
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    seen = tmp_path / "seen"
    cc = tmp_path / "cc.sh"
    cc.write_text(f'#!/bin/sh\nprintf "%s|%s\\n" "$username" "$common_name" >> {seen}\n')
    cc.chmod(cc.stat().st_mode | stat.S_IXUSR)
    status, pool = tmp_path / "status", tmp_path / "pool"
    extra = (f"username-as-common-name\nauth-user-pass-verify /mem/passdb passdb\nstatus {status} 1\n"
             f"ifconfig-pool-persist {pool} 1\nscript-security 2\nclient-connect {cc}\n")
    w = World()
    gw = w.add_server(server_conf(pki, extra=extra),
                      peernames.from_peer(NAME + b":" + hash_password("secret").encode() + b"\n"))
    with caplog.at_level(logging.INFO, logger="vpn-appliance"):
        w.add_client(client_conf(pki, "client0", extra="auth-user-pass\n"), username=peernames.from_peer(NAME),
                     password="secret")
        assert w.run(lambda: _up(w, 0), max_time=30)
        w.run_for(3)
    assert [peernames.to_bytes(r.common_name) for r in gw.d.clients] == [NAME]
    assert seen.read_bytes() == NAME + b"|" + NAME + b"\n"
    assert NAME + b"," in status.read_bytes() and b"\xef\xbf\xbd" not in status.read_bytes()
    assert pool.read_bytes().startswith(NAME + b",198.19.0.")
    for v in (1, 2, 3):
        text = "".join(line + "\n" for line in gw.ops.status_lines(v))
        assert NAME in peernames.to_bytes(text), v
    fmt = _Formatter(FORMAT)
    lines = [fmt.format(r) for r in caplog.records if "caf" in r.getMessage()]
    assert lines and all("caf\\xe9" in line and line.isprintable() for line in lines), lines
