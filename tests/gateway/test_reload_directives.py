"""A reload (SIGHUP after editing the config) applies what it changes, or says it takes a
restart: nothing accepted and silently ignored. A new tls-crypt / tls-auth key (a key rotation)
applies to the first packets of new clients as well as to their sessions (the stateless
reset/cookie check kept the key of the start, so after a rotation no client could connect);
`client-to-client` taken away stops the forwarding between clients."""
from __future__ import annotations

import os
import re

import pytest

from appliance.openvpn.keyfiles import generate_static_key
from tests.gateway.conftest import STATIC_KEY, World, client_conf, server_conf
from tests.gateway.test_tunnel import _up


@pytest.mark.parametrize("protection", ["tls-crypt", "tls-auth"])
def test_a_reloaded_key_lets_new_clients_in_and_keeps_the_connected_ones(pki, protection):
    def conf(key: str, role: str) -> str:
        if protection == "tls-crypt":
            base = server_conf(pki) if role == "s" else client_conf(pki, "client0" if key == STATIC_KEY else "client1")
            return base.replace(STATIC_KEY, key)
        base = (server_conf(pki, protection="none", extra="key-direction 0\n") if role == "s" else
                client_conf(pki, "client0" if key == STATIC_KEY else "client1", protection="none",
                            extra="key-direction 1\n"))
        return base + f"<tls-auth>\n{key}\n</tls-auth>\n"

    new_key = generate_static_key().strip()
    w = World()
    gw, holder = w.add_reloadable_server(conf(STATIC_KEY, "s"))
    w.add_client(conf(STATIC_KEY, "c"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    old = gw.d.clients[0]
    holder["conf"] = conf(new_key, "s")
    assert gw.ops.reload()
    w.add_client(conf(new_key, "c"))
    assert w.run(lambda: _up(w, 1), max_time=40), "a client with the new key could not connect after the reload"
    assert old.alive, "the connected client lost its session at the reload"


def test_client_to_client_taken_away_by_a_reload_stops_client_to_client(pki):
    """A reload without `client-to-client` (clients to be kept apart) must stop the server
    forwarding between them: the data path kept the value of the start."""
    from tests.gateway.conftest import ipv4_udp
    w = World()
    conf = server_conf(pki)
    gw, holder = w.add_reloadable_server(conf)
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    a, b = w.client_addr(0), w.client_addr(1)
    before = ipv4_udp(a, b, b"c2c-before")
    w.client_nets[0].tun.inject(before)
    assert w.run(lambda: before in w.client_nets[1].tun.written, max_time=5)
    holder["conf"] = conf.replace("client-to-client\n", "")
    assert gw.ops.reload()
    after = ipv4_udp(a, b, b"c2c-after")
    w.client_nets[0].tun.inject(after)
    w.run_for(5)
    assert after not in w.client_nets[1].tun.written, "client-to-client went on after a reload took it away"
    assert gw.d.clients[0].alive and gw.d.clients[1].alive


def test_auth_user_pass_verify_added_by_a_reload_checks_passwords(pki, tmp_path):
    """A reload that adds password logins: the server had no password checker (none was
    needed at start), so every login was refused as 'no password checker' (AUTH_FAILED,TEMP)
    and clients retried for ever. Now the right password gets in, a wrong one does not."""
    from appliance.openvpn.passdb import hash_password
    passdb = tmp_path / "passdb"
    passdb.write_text(f"alice:{hash_password('right', n=2 ** 4)}\n")
    w = World()
    conf = server_conf(pki)
    gw, holder = w.add_reloadable_server(conf)
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    holder["conf"] = conf + f"auth-user-pass-verify {passdb} passdb\n"
    assert gw.ops.reload()
    w.add_client(client_conf(pki, "client1", extra="auth-user-pass\n"), username="alice", password="right")
    w.add_client(client_conf(pki, "client2", extra="auth-user-pass\n"), username="alice", password="wrong")
    assert w.run(lambda: _up(w, 1), max_time=40), "the right password did not get in after the reload"
    w.run_for(10)
    assert not _up(w, 2), "a wrong password got in"
    assert "no password checker" not in gw.faults.counts


# ------------------------------------------------------------------ directives the reload used to keep
def _syn(src: str, dst: str, mss: int) -> bytes:
    from scapy.layers.inet import IP, TCP
    return bytes(IP(src=src, dst=dst) / TCP(sport=40000, dport=443, seq=1, flags="S", options=[("MSS", mss)]))


def _mss_of(pkt: bytes) -> int | None:
    from scapy.layers.inet import IP, TCP
    p = IP(pkt)
    return dict(p[TCP].options).get("MSS") if TCP in p else None


def _syn_through(w: World, tag: int) -> int | None:
    """The MSS the server's side sees of a SYN (asking for 1460) a client sends into its tunnel."""
    src = w.client_addr(0)
    syn = _syn(src, "198.19.0.1", 1460 - tag)        # each SYN unlike the others
    before = len(w.server.tun.written)
    w.client_nets[0].tun.inject(syn)
    assert w.run(lambda: len(w.server.tun.written) > before, max_time=5), "the SYN did not come through"
    return _mss_of(w.server.tun.written[-1])


def _one_client_through_a_reloadable_server(pki):
    """A server whose reload reads holder["conf"], one client up, and the MSS of its first SYN."""
    w = World()
    conf = server_conf(pki)
    gw, holder = w.add_reloadable_server(conf)
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    return w, gw, holder, conf, _syn_through(w, 0)


def test_mssfix_changed_by_a_reload_clamps_syns_to_the_new_size(pki):
    """`mssfix 1000` added by a reload: a TCP connection opened through the tunnel after it must
    get an MSS that fits 1000-byte UDP packets. The data path kept the rule of the start."""
    w, gw, holder, conf, first = _one_client_through_a_reloadable_server(pki)
    assert first is not None and first > 1000, f"the default mssfix gave {first}"
    holder["conf"] = conf + "mssfix 1000\n"
    assert gw.ops.reload()
    after = _syn_through(w, 1)
    # mssfix counts the tunnel's packet (its IP and UDP headers aside, OpenVPN 2.6's meaning): the
    # inner IP and TCP headers and the data channel's overhead fit in 1000 bytes with the MSS.
    assert after is not None and after + 40 < 1000, f"after `mssfix 1000` a SYN still gets MSS {after}"
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 1), max_time=30), "a new client could not connect after the reload"


@pytest.mark.parametrize("extra", ["mssfix 1450\ntun-mtu-extra 1400\n", "mssfix 100\n"])
def test_an_mssfix_leaving_tcp_no_mss_is_refused_at_its_line(pki, extra):
    """`tun-mtu-extra 1400` beside `mssfix 1450` (or a tiny mssfix) leaves TCP no MSS: the figure
    went negative and each SYN through the tunnel raised in the data path (the client it was
    for ended). Refused at its line, at a reload as at start; the running rule stays."""
    from appliance.openvpn.config import ConfigError, parse_config
    from appliance.openvpn.settings import check_key_material
    with pytest.raises(ConfigError, match=r"s\.conf:\d+: (tun-mtu-extra|mssfix): .* leaves TCP an MSS of -?\d+"):
        check_key_material(parse_config(server_conf(pki, extra=extra), "/mem/s.conf"))
    w, gw, holder, conf, first = _one_client_through_a_reloadable_server(pki)
    holder["conf"] = conf + extra
    assert not gw.ops.reload(), "the reload took an mssfix that leaves TCP no MSS"
    assert _syn_through(w, 1) == first and _up(w, 0)
    assert "internal error" not in gw.faults.counts, gw.faults.counts


def test_hand_window_changed_by_a_reload_bounds_the_cookie(pki):
    """`hand-window 10` by a reload: a stateless cookie handed out after it is good for that
    window, not the start's 60 s (the cookie jar kept the window of the start); one handed out
    before the reload keeps its own window, and clients still connect."""
    w = World()
    conf = server_conf(pki)
    gw, holder = w.add_reloadable_server(conf)
    addr, sid, t0 = ("198.18.0.9", 40000), b"\x07" * 8, w.clock()
    before = gw.d.cookies.session_id(addr, sid, t0)
    holder["conf"] = conf + "hand-window 10\n"
    assert gw.ops.reload()
    after = gw.d.cookies.session_id(addr, sid, t0)
    assert gw.d.cookie_valid(addr, sid, after, t0 + 5)
    assert not gw.d.cookie_valid(addr, sid, after, t0 + 30), "a cookie outlived the reloaded hand-window"
    assert gw.d.cookie_valid(addr, sid, before, t0 + 30), "a handshake under way lost its cookie at the reload"
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30), "a client could not connect after the reload"


def test_max_clients_raised_by_a_reload_raises_the_tcp_connection_cap(pki):
    """`max-clients` raised by a reload: the server holds as many TCP connections as the new
    count allows (the cap stayed the start's max-clients + 64, so connections were evicted)."""
    from lab.fakes import stream_connect
    from tests.gateway.conftest import SERVER_IP
    w = World()
    conf = server_conf(pki, "tcp-server", extra="max-clients 2")
    gw, holder = w.add_reloadable_server(conf)
    holder["conf"] = conf.replace("max-clients 2", "max-clients 100")
    assert gw.ops.reload()
    idle = []
    for i in range(2 + 64 + 10):
        idle.append(stream_connect(w.net, f"198.18.{1 + i // 200}.{1 + i % 200}", (SERVER_IP, 1194)))
        gw.pump.step(block=False)
    assert len(gw.conns) == len(idle), f"{len(gw.conns)} of {len(idle)} connections held after max-clients 100"
    assert not gw.faults.counts.get("TCP connection without handshake evicted (server full)")


@pytest.mark.parametrize("directive,old,new", [
    ("tun-mtu", "tun-mtu 1500\n", "tun-mtu 1400\n"),
    ("route", "", "route 198.18.40.0 255.255.255.0\n"),
    ("port", "", "port 1195\n"),
    ("multihome", "", "multihome\n"),       # the socket's pktinfo is asked for at start
])
def test_what_a_reload_cannot_change_is_named_with_its_line(pki, caplog, directive, old, new):
    """The TUN device's MTU and the kernel routes are set up at start: a reload that changes
    them says so at the directive's line instead of accepting it silently."""
    import logging
    w = World()
    conf = server_conf(pki, extra=old)
    gw, holder = w.add_reloadable_server(conf)
    holder["conf"] = conf + new
    with caplog.at_level(logging.WARNING, logger="vpn-appliance"):
        assert gw.ops.reload()
    line = conf.count("\n") + 1
    assert f"/mem/server.conf:{line}: {directive}: changed; takes effect at restart" in caplog.text


def test_verb_changed_by_a_reload_changes_the_log_level():
    """`verb 4` by a reload logs the debug lines (OpenVPN's SIGHUP applies verb too)."""
    import logging
    from appliance import logsetup
    logger = logging.getLogger("vpn-appliance")
    saved_level, saved_extra = logger.level, logsetup._verb_extra
    try:
        logsetup._verb_extra = 0
        logger.setLevel(logsetup.verb_level(3))
        assert logsetup.apply_verb(5) and logger.level == logging.DEBUG
        assert logsetup.apply_verb(1) and logger.level == logging.INFO     # never below normal events
        logsetup._verb_extra = None
        assert not logsetup.apply_verb(6) and logger.level == logging.INFO
    finally:
        logger.setLevel(saved_level)
        logsetup._verb_extra = saved_extra


def test_the_jar_of_the_hand_window_before_a_reload_is_dropped_once_its_cookies_lapsed(pki, monkeypatch):
    """A wrong cookie costs one MAC (cookie.py: its slot bits name the one to compute); the jar a
    hand-window reload replaced was kept for ever and checked too, so every wrong cookie from
    anybody with the tls-auth/tls-crypt key cost two MACs after such a reload. The old jar goes
    once the cookies it handed out are past their window."""
    from appliance.openvpn import mac
    w = World()
    conf = server_conf(pki)
    gw, holder = w.add_reloadable_server(conf)
    addr, sid, t0 = ("198.18.0.9", 40000), b"\x07" * 8, w.clock()
    before = gw.d.cookies.session_id(addr, sid, t0)
    holder["conf"] = conf + "hand-window 10\n"
    assert gw.ops.reload()
    assert gw.d.cookie_valid(addr, sid, before, t0 + 1), "a handshake under way lost its cookie at the reload"
    calls: list = []
    real = mac.KeyedMac.digest
    monkeypatch.setattr(mac.KeyedMac, "digest", lambda self, msg: calls.append(1) or real(self, msg))
    later = t0 + 3 * 30 + 1                    # the start's 60 s window: 30 s slots, 3 of them
    assert not gw.d.cookie_valid(addr, sid, before, later)
    for first in range(4):                     # every value of the slot bits
        calls.clear()
        assert not gw.d.cookie_valid(addr, sid, bytes((first,)) + bytes(7), later)
        assert len(calls) <= 1, f"a wrong cookie cost {len(calls)} MACs after the hand-window's reload"


def test_a_reload_of_a_config_that_became_a_pipe_is_refused_without_blocking(pki, tmp_path):
    """A reload reads the main config on the event loop: swapped for a FIFO (or started from
    `run /dev/stdin`, whose pipe gives nothing more), its open() or read() waited for a writer
    and every client's packets and SIGTERM with it. The start may still read a pipe; a reload
    reads a regular file only and otherwise runs on as it was."""
    import os
    from tests.unit.test_config_files_not_pipes import _bounded
    fifo = tmp_path / "server.conf"
    os.mkfifo(fifo)
    w = World()
    gw = w.add_server(server_conf(pki))
    gw.opts.path = str(fifo)
    blocked, out = _bounded(gw.ops.reload, fifo)
    assert not blocked, "the reload waited on the config's pipe (the event loop's thread)"
    assert out == [False]


def test_a_reload_that_changes_cd_runs_the_scripts_in_the_new_directory(pki, tmp_path, monkeypatch):
    """`cd DIR`: the profile's relative names are read from DIR and the process runs there (its
    scripts start there), as OpenVPN. A reload with another DIR moves the process there too (it
    stayed where it started, its client-connect script reading another directory's files than
    the new config's), one without the line goes back to where it started, as a restart would;
    a DIR the process cannot enter refuses the reload."""
    from appliance.gateway import ops as ops_mod
    from appliance.gateway.scripts import ScriptRunner
    from appliance.host import workdir
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(workdir, "_started_in", str(tmp_path))
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    cc = tmp_path / "cc.sh"
    cc.write_text(f"#!/bin/sh\npwd > {tmp_path}/cwd.$common_name\n")
    cc.chmod(0o755)

    def conf(cd: str) -> str:
        return server_conf(pki, extra=f"{cd}script-security 2\nclient-connect {cc}\n")

    w = World()
    gw, holder = w.add_reloadable_server(conf(f"cd {a}\n"))
    assert workdir.enter_cd_dir(gw.opts) is None            # as the entry points do at start
    holder["conf"] = conf(f"cd {b}\n")
    assert gw.ops.reload()
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    assert (tmp_path / "cwd.client0").read_text().strip() == str(b)
    holder["conf"] = conf("")
    assert gw.ops.reload() and os.getcwd() == str(tmp_path)
    holder["conf"] = conf(f"cd {a}\n")
    monkeypatch.setattr(workdir.os, "chdir", lambda d: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    assert not gw.ops.reload() and gw.opts.cd_dir is None, "a reload into a directory it cannot enter went on"


@pytest.mark.parametrize("edit", ["disable", "removed"])
def test_a_reload_ends_a_client_its_ccd_file_now_refuses(pki, tmp_path, edit):
    """2.6's SIGHUP has every client connect again through its client-config-dir file as it is
    then: a `disable` written, or (ccd-exclusive) the file removed, keeps that client out. Ours
    keeps clients across a reload: such a client was kept with its tunnel; now it is ended,
    and a client the file still admits is kept."""
    ccd = tmp_path / "ccd"
    ccd.mkdir()
    for cn in ("client0", "client1"):
        (ccd / cn).write_text('push "route 198.18.77.0 255.255.255.0"\n')
    w = World()
    gw, holder = w.add_reloadable_server(server_conf(pki, extra=f"client-config-dir {ccd}\nccd-exclusive\n"))
    from appliance.gateway import ccd_loader
    gw.d.st.ccd = ccd_loader(str(ccd))      # (World's start attaches none; the reload's settings do)
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30), (gw.d.drop_counters(), [
        (r.common_name, r.session.stats) for r in gw.d.clients])
    by_cn = {r.common_name: r for r in gw.d.clients}
    if edit == "disable":
        (ccd / "client0").write_text("disable\n")
    else:
        (ccd / "client0").unlink()
    assert gw.ops.reload()
    assert w.run(lambda: not by_cn["client0"].alive, max_time=10), "the client its ccd file refuses was kept"
    assert by_cn["client1"].alive


@pytest.mark.parametrize("before, after, why", [
    ("server 198.19.0.0 255.255.255.0", "server 198.19.0.0 255.0.0.0", "allows for too many host addresses"),
    ("server 198.19.0.0 255.255.255.0", "server 198.19.0.0 255.255.255.0\nserver-ipv6 fd00:77::/32",
     "between /64 and /124 (not /32)"),
])
def test_a_reload_that_widens_the_pool_past_2_6s_bounds_is_refused_at_its_line(pki, caplog, before, after, why):
    """review49d: the bounds (fuzz49's /16, 2.6's /64..124 for server-ipv6) hold at a reload as at
    the start -- the widened config is refused naming its file and line, and the server runs on
    with the pool it had (a /8 built 16.7 million addresses at start before fuzz49)."""
    import logging
    w = World()
    gw, holder = w.add_reloadable_server(server_conf(pki))
    pool = gw.d.st.pool
    holder["conf"] = server_conf(pki).replace(before, after)
    with caplog.at_level(logging.ERROR):
        assert gw.ops.reload() is False
    text = caplog.text
    assert "the new config is not used" in text and why in text, text
    assert re.search(r"/mem/server\.conf:\d+: server(-ipv6)?: ", text), text
    assert gw.d.st.pool is pool and pool.size == 253
