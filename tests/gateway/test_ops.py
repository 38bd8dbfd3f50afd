"""Running the server in operation (issue 12) on in-memory ports: revocation, reload without
dropping clients, persistent pool addresses, client-connect/-disconnect scripts, and the client
list that the status file and the management interface print, read by openvpn-monitor's parser."""
from __future__ import annotations

import os
import stat
import sys
from datetime import datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue
from appliance.gateway import ops as ops_mod
from appliance.gateway.scripts import ScriptRunner
from appliance.openvpn.config import parse_config
from appliance.openvpn.crl import make_crl
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.session import EXIT_HOLD
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up, ping_both_ways


def _pem(c) -> str:
    return c.public_bytes(serialization.Encoding.PEM).decode()


def _kpem(k) -> str:
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def opki() -> dict:
    ca = issue("Ops test CA", None, None)
    srv = issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)
    clients = {f"client{i}": issue(f"client{i}", ca, ExtendedKeyUsageOID.CLIENT_AUTH) for i in range(4)}
    return {"ca": _pem(ca[0]), "server": (_pem(srv[0]), _kpem(srv[1])), "ca_pair": ca,
            "serials": {n: c.serial_number for n, (c, k) in clients.items()},
            "clients": {n: (_pem(c), _kpem(k)) for n, (c, k) in clients.items()}}


def _cns(gw) -> list:
    return sorted(r.common_name for r in gw.d.clients if r.session.established)


# ------------------------------------------------------------------ revocation
def test_revoked_certificate_is_refused_and_a_connected_one_dropped_on_reload(opki, tmp_path, caplog):
    caplog.set_level("INFO")
    crl = tmp_path / "crl.pem"
    ca = opki["ca_pair"]
    crl.write_bytes(make_crl(ca[0], ca[1], []))
    w = World()
    gw, holder = w.add_reloadable_server(server_conf(opki, extra=f"crl-verify {crl}\n"))
    w.add_client(client_conf(opki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    # client1 revoked: the CRL file is re-read at the next handshake (it changed), no reload needed.
    crl.write_bytes(make_crl(ca[0], ca[1], [opki["serials"]["client1"]]))
    os.utime(crl, ns=(os.stat(crl).st_atime_ns, os.stat(crl).st_mtime_ns + 10**9))
    w.add_client(client_conf(opki, "client1"))
    w.run_for(20)
    assert not _up(w, 1), "a revoked certificate got a tunnel"
    assert f"certificate serial {opki['serials']['client1']} (CN=client1) is revoked by the CRL" in caplog.text
    assert _cns(gw) == ["client0"]
    # Now client0 is revoked too; a reload disconnects it, client2 still gets in.
    crl.write_bytes(make_crl(ca[0], ca[1], [opki["serials"]["client1"], opki["serials"]["client0"]]))
    assert gw.ops.reload()
    assert _cns(gw) == [], "a revoked client kept its tunnel after the reload"
    w.add_client(client_conf(opki, "client2"))
    assert w.run(lambda: _up(w, 2), max_time=30)
    w.run_for(15)
    assert _cns(gw) == ["client2"], "a revoked client got back in"


def test_the_server_reads_a_large_changed_crl_off_its_loop_before_and_after_a_reload(opki, tmp_path):
    """The server's CRL checker gets the worker (crl.background_reader): a 100,000-entry file
    that changed was read on the event loop, every client's packets waiting ~0.35 s
    (lab/crl_stall.py). A reload's new checker gets it too."""
    from appliance.openvpn.crl import background_reader
    ca = opki["ca_pair"]
    crl = tmp_path / "crl.pem"
    crl.write_bytes(make_crl(ca[0], ca[1], []))
    w = World()
    gw, holder = w.add_reloadable_server(server_conf(opki, extra=f"crl-verify {crl}\n"))
    checker = gw.st.session_config(0).tls.crl
    assert checker.reader is background_reader
    assert gw.ops.reload()
    assert gw.st.session_config(0).tls.crl is not checker and gw.st.session_config(0).tls.crl.reader is background_reader


@pytest.mark.parametrize("before", ["none", "other-file"])
def test_a_client_kept_by_a_reload_is_checked_against_the_new_crl_at_its_renegotiation(opki, tmp_path, before):
    """A reload that adds crl-verify (or points it at another file) keeps the connected clients
    it does not revoke. The operator then revokes one in the new file, without a reload: as
    documented, it is dropped at its next renegotiation. Its renegotiation was checked with the
    session's settings from before the reload -- no CRL at all, or the old file -- and it kept
    its tunnel for good."""
    ca = opki["ca_pair"]
    old_crl, new_crl = tmp_path / "old.pem", tmp_path / "new.pem"
    old_crl.write_bytes(make_crl(ca[0], ca[1], []))
    new_crl.write_bytes(make_crl(ca[0], ca[1], []))
    w = World()
    extra = "" if before == "none" else f"crl-verify {old_crl}\n"
    gw, holder = w.add_reloadable_server(server_conf(opki, extra=extra))
    w.add_client(client_conf(opki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    holder["conf"] = server_conf(opki, extra=f"crl-verify {new_crl}\n")
    assert gw.ops.reload()
    assert _cns(gw) == ["client0"]
    new_crl.write_bytes(make_crl(ca[0], ca[1], [opki["serials"]["client0"]]))
    os.utime(new_crl, ns=(os.stat(new_crl).st_atime_ns, os.stat(new_crl).st_mtime_ns + 10**9))
    rec = gw.d.clients[0]
    rec.session.renegotiate(w.clock())
    w.run_for(15)
    assert _cns(gw) == [], "a client revoked in the reloaded CRL kept its tunnel through a renegotiation"


@pytest.mark.parametrize("change", ["ca", "verify-x509-name"])
def test_a_reload_that_no_longer_admits_a_certificate_disconnects_its_client(opki, change):
    """"Established clients whose certificate is still valid keep their tunnel": valid under the
    new config, not only against its CRL. A reload that takes a (compromised) CA out of `ca`, or
    adds verify-x509-name, kept every connected client, and their renegotiations went on under
    the old CA store and checks -- where OpenVPN's SIGHUP has them all verified anew. A client
    the new config admits keeps its tunnel and renegotiates under it."""
    w = World()
    conf = server_conf(opki)
    gw, holder = w.add_reloadable_server(conf)
    w.add_client(client_conf(opki, "client0"))
    w.add_client(client_conf(opki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    if change == "ca":
        other = issue("Another CA", None, None)[0].public_bytes(serialization.Encoding.PEM).decode()
        holder["conf"] = conf.replace(opki["ca"], other)
        keep = []
    else:
        holder["conf"] = server_conf(opki, extra="verify-x509-name client1 name\n")
        keep = ["client1"]
    assert gw.ops.reload()
    assert _cns(gw) == keep, "a client the reloaded config refuses kept its tunnel"
    for rec in gw.d.clients:
        rec.session.renegotiate(w.clock())
    w.run_for(15)
    assert _cns(gw) == keep and all(r.session.send_key.key_id >= 1 for r in gw.d.clients)


def _handshake_under_way(gw) -> bool:
    """The server has a session whose TLS handshake started (the client's hello read) and has
    not completed: the client is mid-handshake."""
    return any(ks.tls is not None and not ks.tls.handshake_done
               for rec in list(gw.d.clients) + list(gw.d.pending.values()) for ks in rec.session.keys.values())


@pytest.mark.parametrize("change", ["nothing", "ca", "crl"])
def test_a_handshake_under_way_at_a_reload_completes_under_the_new_config(opki, tmp_path, change):
    """A client paused mid-handshake while a reload takes its CA out of `ca`, or adds a CRL that
    revokes it, then finishing its handshake: refused, as a connected client with that
    certificate is by the reload (README "Reload"). Its TLS had started with the old CA store,
    which verified the chain at completion, so a handshake under way when a compromised CA was
    removed still got a tunnel. A reload that changes nothing lets it in."""
    ca = opki["ca_pair"]
    crl = tmp_path / "crl.pem"
    crl.write_bytes(make_crl(ca[0], ca[1], [opki["serials"]["client0"]]))
    w = World()
    conf = server_conf(opki)
    gw, holder = w.add_reloadable_server(conf)
    w.add_client(client_conf(opki, "client0"))
    assert w.run(lambda: _handshake_under_way(gw), max_time=30), "never caught the handshake under way"
    if change == "ca":
        holder["conf"] = conf.replace(opki["ca"], issue("Another CA", None, None)[0].public_bytes(
            serialization.Encoding.PEM).decode())
    elif change == "crl":
        holder["conf"] = server_conf(opki, extra=f"crl-verify {crl}\n")
    assert _handshake_under_way(gw)
    assert gw.ops.reload()
    if change == "nothing":
        assert w.run(lambda: _up(w, 0), max_time=30), "the reload broke a handshake it did not concern"
        return
    w.run_for(20)
    assert w.client_addr(0) is None and _cns(gw) == [], f"a handshake under way at a reload ({change}) got a tunnel"


def test_crl_directory_mode(opki, tmp_path):
    d = tmp_path / "crl.d"
    d.mkdir()
    (d / str(opki["serials"]["client1"])).write_text("")
    w = World()
    gw, _ = w.add_reloadable_server(server_conf(opki, extra=f"crl-verify {d} dir\n"))
    w.add_client(client_conf(opki, "client0"))
    w.add_client(client_conf(opki, "client1"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    w.run_for(10)
    assert not _up(w, 1) and _cns(gw) == ["client0"]


# ------------------------------------------------------------------ reload
def test_reload_with_a_changed_push_restarts_kept_clients_into_the_new_push(opki, caplog):
    """A changed `push` would give every client other options: as at 2.6's SIGHUP, the kept
    client is told RESTART and reconnects into the new push; new clients get it too."""
    w = World()
    conf = server_conf(opki, extra='push "route 10.1.0.0 255.255.0.0"\n')
    gw, holder = w.add_reloadable_server(conf)
    w.add_client(client_conf(opki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    peer0 = gw.d.clients[0]
    holder["conf"] = conf.replace("route 10.1.0.0", "route 10.2.0.0") + "status /dev/null/x 5\nport 1195\n"
    assert gw.ops.reload()
    assert gw.opts.port == 1194, "a port change needs a restart: kept"
    assert "the push lines changed: told RESTART" in caplog.text
    assert w.run(lambda: not peer0.alive and bool(gw.d.clients) and _up(w, 0)
                 and "10.2.0.0" in [r[0] for r in w.client_nets[0].pushed.routes], max_time=30)
    routes0 = [r[0] for r in w.client_nets[0].pushed.routes]
    assert "10.1.0.0" not in routes0
    for i in range(3):
        ping_both_ways(w, 0, tag=bytes([i]))
    w.add_client(client_conf(opki, "client1"))
    assert w.run(lambda: _up(w, 1), max_time=30)
    routes1 = [r[0] for r in w.client_nets[1].pushed.routes]
    assert "10.2.0.0" in routes1 and "10.1.0.0" not in routes1


def test_a_reload_keeps_the_x509_username_field_the_server_started_with(opki, caplog):
    """The fields name every client (pool, ccd, the CN lock of renegotiations): a reload that
    changes them is told it needs a restart, and new handshakes still read the old fields."""
    w = World()
    conf = server_conf(opki, extra="x509-username-field CN\n")
    gw, holder = w.add_reloadable_server(conf)
    w.add_client(client_conf(opki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    holder["conf"] = conf.replace("x509-username-field CN", "x509-username-field emailAddress")
    assert gw.ops.reload()
    assert "x509-username-field" in caplog.text and "restart" in caplog.text
    assert gw.st.session_config(0).tls.username_field == ("CN",)
    w.add_client(client_conf(opki, "client1"))         # no emailAddress: the new fields would refuse it
    assert w.run(lambda: _up(w, 1), max_time=30) and _cns(gw) == ["client0", "client1"]


def test_a_reload_adding_verify_hash_drops_clients_of_another_ca_and_keeps_the_rest(opki):
    """As OpenVPN's SIGHUP re-verifies every client: a verify-hash the kept clients' CA does not
    match ends their sessions; the CA's own fingerprint keeps them."""
    from cryptography.hazmat.primitives import hashes
    w = World()
    conf = server_conf(opki)
    gw, holder = w.add_reloadable_server(conf)
    w.add_client(client_conf(opki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    right = opki["ca_pair"][0].fingerprint(hashes.SHA256()).hex(":")
    holder["conf"] = conf + f"verify-hash {right} SHA256\n"
    assert gw.ops.reload()
    assert _cns(gw) == ["client0"]
    holder["conf"] = conf + "verify-hash " + ":".join(["00"] * 32) + " SHA256\n"
    assert gw.ops.reload()
    assert _cns(gw) == []


def test_a_reload_that_does_not_parse_leaves_the_server_as_it_was(opki, caplog):
    w = World()
    conf = server_conf(opki, extra='push "route 10.1.0.0 255.255.0.0"\n')
    gw, holder = w.add_reloadable_server(conf)
    w.add_client(client_conf(opki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    st_before = gw.st
    holder["conf"] = conf + "no-such-directive 1\n"
    assert not gw.ops.reload()
    assert gw.st is st_before
    assert "/mem/server.conf:" in caplog.text and "no-such-directive" in caplog.text
    ping_both_ways(w, 0)


# ------------------------------------------------------------------ ifconfig-pool-persist
def test_addresses_persist_across_a_restart(opki, tmp_path):
    pf = tmp_path / "ipp.txt"
    conf = server_conf(opki, extra=f"ifconfig-pool-persist {pf} 1\n")
    w = World()
    gw, _ = w.add_reloadable_server(conf)
    w.add_client(client_conf(opki, "client0"))
    w.add_client(client_conf(opki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    a0, a1 = w.client_addr(0), w.client_addr(1)
    gw.request_stop()
    gw.ops.close()
    lines = pf.read_text().splitlines()
    assert sorted(lines) == sorted([f"client0,{a0},", f"client1,{a1},"]), lines
    # Restart: client1 alone comes first, and still gets its old address (not the first free one).
    w2 = World()
    w2.add_reloadable_server(conf)
    w2.add_client(client_conf(opki, "client1"))
    assert w2.run(lambda: _up(w2, 0), max_time=30)
    assert w2.client_addr(0) == a1 != "198.19.0.2"


def test_pool_file_written_by_openvpn_is_read(opki, tmp_path):
    pf = tmp_path / "ipp.txt"
    pf.write_text("client0,198.19.0.77,\nclient9,198.19.0.2,\n")
    w = World()
    w.add_reloadable_server(server_conf(opki, extra=f"ifconfig-pool-persist {pf}\n"))
    w.add_client(client_conf(opki, "client0"))
    w.add_client(client_conf(opki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    assert w.client_addr(0) == "198.19.0.77"
    assert w.client_addr(1) == "198.19.0.3", "client1 took the address remembered for client9"


# ------------------------------------------------------------------ scripts
def _script(tmp_path, name: str, body: str) -> str:
    p = tmp_path / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return str(p)


def test_client_connect_script_env_refusal_and_options(opki, tmp_path, monkeypatch):
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    log = tmp_path / "env.log"
    cc = _script(tmp_path, "cc.sh", f"""env | sort > {tmp_path}/env-$common_name
[ "$common_name" = client1 ] && exit 1
echo 'push "route 10.9.0.0 255.255.0.0"' > "$1"
echo 'ifconfig-push 198.19.0.99 255.255.255.0' >> "$1"
exit 0
""")
    cd = _script(tmp_path, "cd.sh", f'echo "$common_name $bytes_received $bytes_sent $time_duration '
                                    f'$tls_serial_1 $X509_1_CN" >> {log}\n')
    w = World()
    gw, _ = w.add_reloadable_server(server_conf(opki, extra=f"script-security 2\nclient-connect {cc}\nclient-disconnect {cd}\n"))
    w.add_client(client_conf(opki, "client0", extra='setenv UV_TEST hello\npush-peer-info\nexplicit-exit-notify 1\n'))
    w.add_client(client_conf(opki, "client1"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    w.run_for(10)
    assert not _up(w, 1), "client-connect exit 1 did not refuse the client"
    assert w.client_addr(0) == "198.19.0.99"
    assert "10.9.0.0" in [r[0] for r in w.client_nets[0].pushed.routes]
    env = dict(line.split("=", 1) for line in (tmp_path / "env-client0").read_text().splitlines() if "=" in line)
    assert env["script_type"] == "client-connect" and env["common_name"] == "client0"
    assert env["ifconfig_pool_remote_ip"] == "198.19.0.2"
    assert env["trusted_ip"] == "198.18.0.2" and int(env["trusted_port"]) > 0
    assert "IV_VER" in env and "time_unix" in env
    # OpenVPN's per-depth certificate variables: the client's (0) and its CA's (1).
    ca = opki["ca_pair"][0]
    assert env["tls_serial_0"] == str(opki["serials"]["client0"]) and env["tls_id_0"] == "CN=client0"
    assert env["tls_serial_1"] == str(ca.serial_number) and env["tls_id_1"] == "CN=Ops test CA"
    assert env["X509_1_CN"] == "Ops test CA" and len(env["tls_digest_sha256_1"].split(":")) == 32
    ping_both_ways(w, 0)
    w.clients[0].request_stop()
    w.run_for(5 + EXIT_HOLD)                # (the server holds a client's EXIT, as 2.6)
    # At disconnect (the session's keys released) the chain's variables are still there.
    cn, rx, tx, dur, ca_serial, ca_cn = log.read_text().split(" ", 5)
    assert cn == "client0" and int(rx) > 0 and int(tx) > 0 and int(dur) >= 0
    assert ca_serial == str(ca.serial_number) and ca_cn == "Ops test CA\n"


def test_scripts_need_script_security_2(opki):
    from appliance.openvpn.errors import ConfigError
    w = World()
    with pytest.raises(ConfigError, match="client-connect: scripts run only with `script-security 2`"):
        w.add_server(server_conf(opki, extra="client-connect /bin/true\n"))


def test_a_slow_connect_script_stalls_no_tunnel(opki, tmp_path):
    """Threads for real: while client1's connect script sleeps, client0's tunnel carries packets.

    The script leaves marker files, so the check is "pinged while the script was still running",
    not a wall-clock bound (which a loaded machine breaks)."""
    import time
    started, done = tmp_path / "started", tmp_path / "done"
    slow = _script(tmp_path, "slow.sh",
                   f'[ "$common_name" = client1 ] && {{ touch {started}; sleep 3; touch {done}; }}\nexit 0\n')
    w = World()
    gw, _ = w.add_reloadable_server(server_conf(opki, extra=f"script-security 2\nclient-connect {slow}\n"))
    w.add_client(client_conf(opki, "client0"))
    deadline = time.monotonic() + 30
    while not _up(w, 0) and time.monotonic() < deadline:
        w.run(lambda: _up(w, 0), max_time=1)
    assert _up(w, 0)
    w.add_client(client_conf(opki, "client1"))
    while not started.exists() and time.monotonic() < deadline:
        w.run_for(0.05)
    assert started.exists(), "client1's connect script never ran"
    ping_both_ways(w, 0)
    assert not done.exists(), "client0's tunnel waited for client1's connect script"
    # The fake clock must not run far ahead of the real sleep, or client1's handshake times out
    # while the script still sleeps: a little fake time per real pause.
    while not _up(w, 1) and time.monotonic() < deadline:
        time.sleep(0.02)
        w.run(lambda: _up(w, 1), max_time=0.02)
    assert _up(w, 1)
    assert done.exists()


# ------------------------------------------------------------------ status, management actions
def _monitor_parse(text: str) -> dict:
    """openvpn-monitor 2.0.4's own parser of `status 3` (pinned in the test extras)."""
    pkg = pytest.importorskip("openvpn_monitor")
    root = os.path.dirname(pkg.__file__)
    if root not in sys.path:
        sys.path.insert(0, root)
    import semver
    from vpns.openvpn.data_collector import VPNDataCollector
    c = VPNDataCollector.__new__(VPNDataCollector)
    return c.parse_status(text, semver.Version.parse("2.6.14"), None)


def test_a_status_file_that_cannot_be_written_is_said_once_then_its_recovery(opki, tmp_path, caplog):
    """`status FILE 1` in a missing directory: one warning, not one a second; then it is written."""
    d = tmp_path / "later"
    w = World()
    with caplog.at_level("INFO", logger="vpn-appliance"):
        w.add_reloadable_server(server_conf(opki, extra=f"status {d / 'status.log'} 1\n"))
        w.run_for(6)
        warned = [r for r in caplog.records if "status file" in r.getMessage() and r.levelname == "WARNING"]
        assert len(warned) == 1, [r.getMessage() for r in warned]
        d.mkdir()
        w.run_for(2)
    assert (d / "status.log").read_text().rstrip().endswith("END")
    assert sum("written again" in r.getMessage() for r in caplog.records) == 1


def test_status_is_read_by_openvpn_monitor_and_written_as_a_file(opki, tmp_path):
    sf = tmp_path / "status.log"
    w = World()
    gw, _ = w.add_reloadable_server(server_conf(opki, extra=f"status {sf} 1\nstatus-version 2\n"))
    w.add_client(client_conf(opki, "client0"))
    w.add_client(client_conf(opki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    ping_both_ways(w, 0)
    w.run_for(2)
    sessions = _monitor_parse("\r\n".join(gw.ops.status_lines(3)) + "\r\n")
    assert set(sessions) == {w.client_addr(0), w.client_addr(1)}
    s0 = sessions[w.client_addr(0)]
    assert s0["username"] == "client0" and s0["bytes_recv"] > 0 and s0["bytes_sent"] > 0
    assert str(s0["remote_ip"]) == "198.18.0.2" and s0["port"] > 0 and "last_seen" in s0
    text = sf.read_text()
    assert text.startswith("TITLE,OpenVPN 2.6") and text.endswith("END\n")
    assert sum(1 for line in text.splitlines() if line.startswith("CLIENT_LIST,")) == 2
    v1 = gw.ops.status_lines(1)
    assert v1[0] == "OpenVPN CLIENT LIST" and v1[-1] == "END" and len(v1) == 3 + 2 + 2 + 2 + 3
    datetime.strptime(v1[1].split(",", 1)[1], "%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_kill_by_common_name_and_client_kill(opki, proto):
    w = World()
    gw, _ = w.add_reloadable_server(server_conf(opki, "tcp-server" if proto == "tcp" else "udp"))
    w.add_client(client_conf(opki, "client0", proto="tcp-client" if proto == "tcp" else "udp"))
    w.add_client(client_conf(opki, "client1", proto="tcp-client" if proto == "tcp" else "udp"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    rows = gw.ops.rows()
    # The real address is the client's IP and port on TCP too (the connection's peer).
    assert all(r.real.startswith("198.18.0.") and int(r.real.rsplit(":", 1)[1]) > 0 for r in rows), rows
    assert gw.ops.kill_cn("client0") == 1 and gw.ops.kill_cn("nobody") == 0
    assert _cns(gw) == ["client1"]
    cid, rec = next((i.cid, i.rec) for i in gw.ops.info.values() if i.rec.common_name == "client1")
    assert gw.ops.client_kill(cid, "HALT") and not gw.ops.client_kill(999, "x")
    assert w.run(lambda: not rec.alive, max_time=ops_mod.CLIENT_KILL_WAIT + 1)
    assert _cns(gw) == []
    assert w.clients[1].result == 1, "HALT did not end the client's run"
    n, _bi, _bo = gw.ops.load_stats()
    assert n == 0


def test_a_client_revoked_while_connected_is_dropped_at_its_next_renegotiation(opki, tmp_path):
    crl = tmp_path / "crl.pem"
    ca = opki["ca_pair"]
    crl.write_bytes(make_crl(ca[0], ca[1], []))
    w = World()
    gw, _ = w.add_reloadable_server(server_conf(opki, extra=f"crl-verify {crl}\n"))
    w.add_client(client_conf(opki, "client0"))
    w.add_client(client_conf(opki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    crl.write_bytes(make_crl(ca[0], ca[1], [opki["serials"]["client0"]]))
    os.utime(crl, ns=(os.stat(crl).st_atime_ns, os.stat(crl).st_mtime_ns + 10**9))
    rec0 = next(r for r in gw.d.clients if r.common_name == "client0")
    rec0.session.renegotiate(w.clock())          # as reneg-sec would
    gw.d._collect(rec0)
    w.run_for(10)
    assert not rec0.alive, "a revoked client survived its renegotiation"
    assert "client1" in _cns(gw)
    ping_both_ways(w, 1)


def test_scripts_are_refused_in_the_vm_image(monkeypatch):
    from appliance.openvpn.config import parse_config
    from appliance.openvpn.errors import ConfigError
    monkeypatch.setenv("VPN_APPLIANCE_NO_SCRIPTS", "1")
    with pytest.raises(ConfigError) as e:
        parse_config("mode server\ntls-server\nscript-security 2\nclient-connect /bin/true\n", "/vm/server.conf")
    assert "/vm/server.conf:4: client-connect: the VM image runs no scripts" in str(e.value)


def test_sigusr2_logs_statistics_and_bytecount_lines(opki, caplog):
    import signal
    caplog.set_level("INFO")
    w = World()
    gw, _ = w.add_reloadable_server(server_conf(opki))
    w.add_client(client_conf(opki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    ping_both_ways(w, 0)
    gw.ops.on_signal(signal.SIGUSR2)
    assert "statistics: 1 clients" in caplog.text and "client0" in caplog.text

    class Conn:
        bytecount = 1
        got: list = []

        def send_lines(self, lines):
            self.got.extend(lines)

    class Mgr:
        conns = [Conn()]
    gw.ops.mgmt = Mgr()
    gw.ops._bytecount()                     # the counts seen
    ping_both_ways(w, 0, b"moved")
    w.clock.t += 1
    gw.ops._bytecount()                     # moved since: told
    (line,) = Mgr.conns[0].got
    cid, rx, tx = line.split(":", 1)[1].split(",")
    assert line.startswith(">BYTECOUNT_CLI:") and cid == "0" and int(rx) > 0 and int(tx) > 0
    gw.ops.mgmt = None


def test_another_management_client_repeating_bytecount_does_not_silence_the_first(opki):
    """Each `bytecount` re-armed the tick all management clients share: one sending it every
    half second kept >BYTECOUNT_CLI from every other client that had asked for it."""
    w = World()
    gw, _ = w.add_reloadable_server(server_conf(opki))
    w.add_client(client_conf(opki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)

    class Conn:
        def __init__(self, n: int) -> None:
            self.bytecount, self.got = n, []

        def send_lines(self, lines):
            self.got.extend(lines)

    class Mgr:
        conns = [Conn(1), Conn(5)]
    gw.ops.mgmt = Mgr()
    try:
        for i in range(12):
            gw.ops.bytecount_changed()           # the second client's `bytecount 5`, again and again
            ping_both_ways(w, 0, b"%d" % i)      # (a client is told only when its bytes moved)
            w.run_for(0.5)
        assert len([x for x in Mgr.conns[0].got if x.startswith(">BYTECOUNT_CLI:")]) >= 5, Mgr.conns[0].got
    finally:
        gw.ops.mgmt = None


def test_bytecount_tells_a_client_only_when_its_bytes_moved_at_most_every_n_seconds(opki):
    """helper mgmt42: >BYTECOUNT_CLI as OpenVPN 2.6 sends it (management_bytes_server, at a
    client's packets): an idle client is never told, a busy one at most every N s (before, every
    established client every N s)."""
    w = World()
    gw, _ = w.add_reloadable_server(server_conf(opki))
    w.add_client(client_conf(opki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)

    class Conn:
        def __init__(self, n: int) -> None:
            self.bytecount, self.got = n, []

        def send_lines(self, lines):
            self.got.extend(lines)

    class Mgr:
        conns = [Conn(1), Conn(3)]
    w.run_for(2)                                 # the handshake's last packets
    gw.ops.mgmt = Mgr()
    try:
        gw.ops.bytecount_changed()
        w.run_for(4)                             # (keepalive's first ping comes 10 s after up)
        assert [c.got for c in Mgr.conns] == [[], []], "an idle client was told"
        t0 = w.clock.t
        for i in range(12):                      # traffic every ~0.5 s
            ping_both_ways(w, 0, b"%d" % i)
            w.run_for(0.5)
        took = w.clock.t - t0
        every1, every3 = ([x for x in c.got if x.startswith(">BYTECOUNT_CLI:0,")] for c in Mgr.conns)
        assert took - 2 <= len(every1) <= took + 1 and took / 3 - 1 <= len(every3) <= took / 3 + 1, (took, every1, every3)
        assert len(set(every1)) == len(every1), "told twice with the same counts"
        told = len(every1)
        w.run_for(4)                             # idle again
        assert len([x for x in Mgr.conns[0].got if x.startswith(">BYTECOUNT_CLI:")]) <= told + 1
    finally:
        gw.ops.mgmt = None


def test_a_management_signal_is_not_replaced_by_the_next_one(opki, monkeypatch):
    """Each `signal` armed one shared timer: a SIGTERM answered `thrown` was lost to another
    management client's SIGUSR2 read before the timer fired, and the server ran on."""
    w = World()
    gw, _ = w.add_reloadable_server(server_conf(opki))
    done: list[str] = []
    monkeypatch.setattr(gw, "request_stop", lambda: done.append("stop"))
    monkeypatch.setattr(gw.ops, "log_stats", lambda: done.append("stats"))
    gw.ops.management_signal("SIGTERM")
    gw.ops.management_signal("SIGUSR2")
    w.run_for(0.5)
    assert done == ["stop", "stats"]


def test_a_script_past_its_time_limit_is_killed_and_refuses(tmp_path):
    import time
    slow = _script(tmp_path, "slow.sh", "sleep 5\necho done\n")
    r = ScriptRunner(time_limit=0.3, inline=True)
    t0 = time.monotonic()
    assert r.submit(("connect", None), [slow], {}, True) is None
    (key, ok, text, reason), = r.take_results()
    assert not ok and "limit" in reason and time.monotonic() - t0 < 3
    r.close()


def test_a_script_that_leaves_a_child_behind_is_done_when_it_exits(tmp_path):
    """A client-connect script starting a daemon (or a `... &`) that keeps its error output open:
    its verdict is its own exit, at once. Before, the wait read that output to its end, until
    the time limit, then killed both and refused the client."""
    import time
    pidfile = tmp_path / "child.pid"
    bg = _script(tmp_path, "bg.sh", f"sleep 30 &\necho $! > {pidfile}\nexit 0\n")
    fails = _script(tmp_path, "fails.sh", "echo first >&2\necho 'no seat left' >&2\nexit 3\n")
    r = ScriptRunner(time_limit=10, inline=True)
    t0 = time.monotonic()
    assert r.submit(("connect", None), [bg], {}, True) is None
    (_key, ok, _text, reason), = r.take_results()
    assert ok and time.monotonic() - t0 < 5, reason
    os.kill(int(pidfile.read_text()), 9)
    assert r.submit(("connect", None), [fails], {}, True) is None
    (_key, ok, _text, reason), = r.take_results()
    assert not ok and reason == "fails.sh exited with status 3: no seat left"
    r.close()


@pytest.mark.parametrize("line, why", [
    ("client-connect {s} arg", "expects 1 argument"),
    ("client-connect {d}/missing.sh", "no such file"),
    ("client-disconnect {d}/plain.txt", "not an executable file"),
])
def test_a_script_line_openvpn_would_refuse_fails_at_its_line(opki, tmp_path, line, why):
    s = _script(tmp_path, "cc.sh", "exit 0\n")
    (tmp_path / "plain.txt").write_text("x")
    text = line.format(s=s, d=tmp_path)
    with pytest.raises(ConfigError) as e:
        parse_config(server_conf(opki, extra=f"script-security 2\n{text}\n"), "/mem/s.conf")
    assert why in str(e.value) and ("client-connect" in str(e.value) or "client-disconnect" in str(e.value))


def test_a_quoted_script_with_arguments_gets_them(opki, tmp_path):
    s = _script(tmp_path, "cc.sh", "exit 0\n")
    o = parse_config(server_conf(opki, extra=f"script-security 2\nclient-connect \"{s} --mode 'a b'\"\n"),
                     "/mem/s.conf")
    assert o.client_connect == [str(s), "--mode", "a b"]


def test_status_with_server_ipv6_and_the_pool_file_ipv6_field(opki, tmp_path):
    """As Debian's OpenVPN 2.6 prints them (lab): the IPv6 address in CLIENT_LIST, a ROUTING_TABLE
    row for each address (IPv4 first), and `CN,IPv4,IPv6` in the pool file."""
    pf = tmp_path / "ipp.txt"
    w = World()
    gw, _ = w.add_reloadable_server(server_conf(opki, extra=f"server-ipv6 2001:db8:100::/64\nifconfig-pool-persist {pf} 1\n"))
    w.add_client(client_conf(opki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    lines = gw.ops.status_lines(2)
    row = next(x for x in lines if x.startswith("CLIENT_LIST,"))
    assert row.split(",")[3:5] == ["198.19.0.2", "2001:db8:100::1000"]
    routes = [x.split(",")[1] for x in lines if x.startswith("ROUTING_TABLE,")]
    assert routes == ["198.19.0.2", "2001:db8:100::1000"]
    gw.ops.close()
    assert pf.read_text() == "client0,198.19.0.2,2001:db8:100::1000\n"


def test_signal_sigterm_stops_and_a_management_socket_that_cannot_bind_is_fatal(opki, tmp_path):
    import signal
    from appliance.gateway.ports import PortGone
    w = World()
    gw, _ = w.add_reloadable_server(server_conf(opki))
    gw.ops.on_signal(signal.SIGTERM)
    assert gw.result == 0
    w2 = World()
    with pytest.raises(PortGone, match=r":9: management: cannot open /nonexistent/dir/m.sock: No such file"):
        w2.add_server(server_conf(opki, extra="management /nonexistent/dir/m.sock unix\n"))


def _renewed(ca) -> str:
    """The CA's certificate issued again, as at its renewal: same name, same key (so the same
    key identifiers), another serial and validity. Every certificate it issued stays valid."""
    import datetime as dt
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    cert, key = ca
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650)))
    for ext in cert.extensions:
        b = b.add_extension(ext.value, ext.critical)
    return _pem(b.sign(key, hashes.SHA256()))


@pytest.mark.parametrize("at", ["connected", "handshake"])
def test_a_client_kept_by_a_reload_with_the_ca_certificate_renewed_renegotiates(opki, at):
    """The operator renews the CA's certificate (same name and key) and reloads: the reload
    verifies the connected client (or the handshake under way, at its end) against the new
    `ca` and keeps it. Its renegotiation then must not drop it: the chain OpenSSL verifies now
    ends in the renewed CA certificate, and the chain lock (control.py, the first handshake's
    chain) held the old one -- the client was refused at its next renegotiation ("certs
    unexpectedly changed") for a change of the server's own."""
    w = World()
    conf = server_conf(opki)
    gw, holder = w.add_reloadable_server(conf)
    w.add_client(client_conf(opki, "client0"))
    if at == "connected":
        assert w.run(lambda: _up(w, 0), max_time=30)
    else:
        assert w.run(lambda: _handshake_under_way(gw), max_time=30), "never caught the handshake under way"
    holder["conf"] = conf.replace(opki["ca"], _renewed(opki["ca_pair"]))
    assert gw.ops.reload()
    assert w.run(lambda: _up(w, 0), max_time=30)
    assert _cns(gw) == ["client0"]
    gw.d.clients[0].session.renegotiate(w.clock())
    w.run_for(15)
    assert _cns(gw) == ["client0"] and gw.d.clients[0].session.send_key.key_id >= 1, \
        "a client kept by the reload was dropped at its renegotiation"


def test_a_status_file_that_is_a_pipe_does_not_hang_the_start(opki, tmp_path):
    """`status FILE` is opened at start (held across a `user` drop): a FIFO there without a reader
    blocked that open, and the server never started. Now it starts and the path gets the status."""
    import threading
    fifo = tmp_path / "status.log"
    os.mkfifo(fifo)
    w = World()
    started: list = []
    t = threading.Thread(target=lambda: started.append(w.add_reloadable_server(server_conf(opki, extra=f"status {fifo} 1\n"))),
                         daemon=True)
    t.start()
    t.join(5)
    if t.is_alive():                            # let the blocked open go, then fail
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        t.join(5)
        pytest.fail("the server's start blocked on the status FIFO")
    assert started
    w.run_for(2)
    assert stat.S_ISREG(os.stat(fifo).st_mode) and fifo.read_text().rstrip().endswith("END")


def test_a_handshake_under_way_is_listed_and_numbered_as_openvpn_does(opki):
    """As OpenVPN 2.6 (multi_print_status walks every instance; multi_create_instance gives the
    client ID): a handshake under way is a CLIENT_LIST row (common name UNDEF until the
    certificate is verified, no virtual address) with the client ID it took when its record was
    made, client-kill reaches it, a failed handshake has used its number up, and load-stats
    counts established clients only. We listed established clients only and numbered a client
    at its first script or connect step, so the next client's ID was not 2.6's."""
    w = World()
    gw, _ = w.add_reloadable_server(server_conf(opki, extra="status-version 2\n"))
    w.add_client(client_conf(opki, "client0"))
    assert w.run(lambda: _handshake_under_way(gw), max_time=30), "never caught the handshake under way"
    rows = [x.split(",") for x in gw.ops.status_lines(2) if x.startswith("CLIENT_LIST,")]
    assert len(rows) == 1, rows
    _, cn, real, v4, v6, _bin, _bout, _t, _tt, user, cid, _pid, cipher = rows[0]
    assert (cn, v4, v6, user, cid, cipher) == ("UNDEF", "", "", "UNDEF", "0", "BF-CBC"), rows
    assert real.startswith("198.18.0."), rows
    assert not any(x.startswith("ROUTING_TABLE,") for x in gw.ops.status_lines(2))
    assert gw.ops.load_stats()[0] == 0
    assert gw.ops.client_kill(0, "RESTART"), "client-kill did not reach the handshake under way (CID 0)"
    w.add_client(client_conf(opki, "client1"))
    assert w.run(lambda: _up(w, 1), max_time=30)
    inf = next(i for i in gw.ops.info.values() if i.established)
    assert inf.cid == 1 and gw.ops.load_stats()[0] == 1


def _client_rows(gw) -> list[list[str]]:
    return sorted(x.split(",") for x in gw.ops.status_lines(2) if x.startswith("CLIENT_LIST,"))


def test_a_client_restarting_from_its_address_keeps_its_client_id_and_peer_id_as_openvpn_does(opki):
    """As Debian's OpenVPN 2.6 (seen in the lab; its address's instance takes the new reset): a
    client that restarts from the same address and port (a fixed lport) stays one row with the
    same client ID, peer-id and connected-since, during its new handshake and after it; the next
    client gets the next numbers. We gave the restart a new client ID and peer-id (the next
    ones), so the status and >CLIENT:ESTABLISHED named another client."""
    w = World()
    gw, _ = w.add_reloadable_server(server_conf(opki, extra="status-version 2\n"))
    w.add_client(client_conf(opki, "client0").replace("nobind\n", "lport 40001\n"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    (first,) = _client_rows(gw)
    rec0 = gw.d.clients[0]
    w.run_for(3)
    w.clients[0].user_restart()
    during: list = []

    def restarted() -> bool:
        if gw.d.pending and not during:
            during.append(_client_rows(gw))
        rec = gw.d.record(rec0.addr)
        return rec is not None and rec is not rec0 and rec.session.established
    assert w.run(restarted, max_time=30), "the restart did not complete"
    assert during, "never caught the restart under way"
    (row,) = during[0]
    assert row[1:5] + row[7:] == first[1:5] + first[7:], (first, row)     # the old session's row, as it was
    (after,) = _client_rows(gw)
    assert after[1:5] == first[1:5] and after[7:12] == first[7:12], (first, after)  # CN..., since, user, CID, peer-id
    assert after[10:12] == ["0", "0"]
    w.add_client(client_conf(opki, "client1"))
    assert w.run(lambda: _up(w, 1), max_time=30)
    assert sorted(r[10:12] for r in _client_rows(gw)) == [["0", "0"], ["1", "1"]]


def test_a_tcp_connection_is_numbered_and_listed_at_accept_as_openvpn_does(opki):
    """As Debian's OpenVPN 2.6 over TCP (seen in the lab; multi_create_instance at accept): a
    connection that has sent nothing yet is a row (UNDEF, its address, BF-CBC) with client ID 0
    and peer-id 0, the client after it gets 1 and 1, and the row goes when the connection
    closes. We numbered a TCP client at its first reset and listed nothing before it."""
    from lab.fakes import stream_connect
    from tests.gateway.conftest import SERVER_IP
    w = World()
    gw, _ = w.add_reloadable_server(server_conf(opki, "tcp-server", extra="status-version 2\n"))
    bare = stream_connect(w.net, "198.18.0.50", (SERVER_IP, 1194))
    assert w.run(lambda: len(_client_rows(gw)) == 1, max_time=5), "the bare connection is not listed"
    (row,) = _client_rows(gw)
    assert row[1] == "UNDEF" and row[2].startswith("198.18.0.50:") and row[3:7] == ["", "", "0", "0"], row
    assert row[9:] == ["UNDEF", "0", "0", "BF-CBC"], row
    assert gw.ops.load_stats()[0] == 0
    w.add_client(client_conf(opki, "client0", proto="tcp-client"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    rows = _client_rows(gw)
    assert [(r[1], r[10], r[11]) for r in rows] == [("UNDEF", "0", "0"), ("client0", "1", "1")], rows
    bare.close()
    assert w.run(lambda: len(_client_rows(gw)) == 1, max_time=10), "the closed connection is still listed"
    assert gw.d.peer_ids.holders == {1: 1}


def test_kill_ends_a_client_and_its_restart_under_way_as_one(opki):
    """`kill CN` (and client-kill CID) while a client restarts from its address: both sessions
    go, as OpenVPN 2.6's kill ends the one instance; the restart left behind kept the client's
    row and its peer-id (seen against Debian's 2.6: the next client did not get peer-id 0)."""
    w = World()
    gw, _ = w.add_reloadable_server(server_conf(opki, extra="status-version 2\n"))
    w.add_client(client_conf(opki, "client0").replace("nobind\n", "lport 40001\n"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    rec0 = gw.d.clients[0]
    w.run_for(3)
    w.clients[0].user_restart()
    assert w.run(lambda: bool(gw.d.pending), max_time=30), "never caught the restart under way"
    (heir,) = gw.d.pending.values()
    assert gw.ops.kill_cn("client0") == 1
    assert not rec0.alive and not heir.alive
    assert _client_rows(gw) == [] and len(gw.d.peer_ids) == 0
