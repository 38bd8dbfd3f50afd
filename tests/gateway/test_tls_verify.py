"""tls-verify and tls-crypt-v2-verify (gateway/tlsverify.py): the commands' calls, arguments and
environment as OpenVPN 2.6 makes them, what a refusal at each depth leaves behind (nothing), a
hanging command, a flood of held handshakes, renegotiations, both roles, and the config lines."""
from __future__ import annotations

import stat

import pytest

from appliance.gateway import client as client_mod
from appliance.gateway import ops as ops_mod
from appliance.gateway.tlsverify import VerifyRunner
from appliance.openvpn import keyfiles
from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up, ping_both_ways


def _script(tmp_path, name: str, body: str) -> str:
    p = tmp_path / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return str(p)


@pytest.fixture
def inline(monkeypatch):
    """Commands run in the pump's own step (deterministic on the fake clock)."""
    box = {"limit": 10.0, "runners": []}

    def make(opts, inline=False):
        r = VerifyRunner(time_limit=box["limit"], tmp_dir=opts.tmp_dir, inline=True)
        box["runners"].append(r)
        return r
    monkeypatch.setattr(ops_mod, "make_verify_runner", make)
    monkeypatch.setattr(client_mod, "make_verify_runner", make)
    return box


def _verifier(tmp_path, refuse_depth: str | None = None, name: str = "tv.sh", extra: str = "") -> tuple[str, object]:
    """A tls-verify command that logs `script_type depth subject` per call (and its env per depth)."""
    log = tmp_path / f"{name}.log"
    refuse = f'[ "$1" = "{refuse_depth}" ] && exit 1\n' if refuse_depth is not None else ""
    body = (f'echo "$script_type $1 $2" >> {log}\n'
            f'env > {tmp_path}/{name}-env-$1\n{extra}{refuse}exit 0\n')
    return _script(tmp_path, name, body), log


def _calls(log) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _env(tmp_path, depth: int, name: str = "tv.sh") -> dict[str, str]:
    text = (tmp_path / f"{name}-env-{depth}").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_server_accepts_after_a_call_per_depth_deepest_first(pki, tmp_path, inline, proto):
    tv, log = _verifier(tmp_path)
    w = World()
    w.add_server(server_conf(pki, "tcp-server" if proto == "tcp" else "udp", extra=f"script-security 2\ntls-verify {tv}\n"))
    w.add_client(client_conf(pki, proto="tcp-client" if proto == "tcp" else "udp"))
    assert w.run(lambda: _up(w), max_time=30)
    ping_both_ways(w)
    assert _calls(log) == ["tls-verify 1 CN=Gateway test CA", "tls-verify 0 CN=client0"]
    e1, e0 = _env(tmp_path, 1), _env(tmp_path, 0)
    assert e1["X509_1_CN"] == "Gateway test CA" and "X509_0_CN" not in e1 and "common_name" not in e1
    assert e0["X509_0_CN"] == "client0" and e0["X509_1_CN"] == "Gateway test CA"
    assert e0["common_name"] == "client0" and e0["untrusted_ip"] == "198.18.0.2" and e0["script_type"] == "tls-verify"
    assert e0["tls_id_0"] == "CN=client0" and e0["tls_id_1"] == "CN=Gateway test CA"
    for k in ("tls_serial_0", "tls_serial_hex_0", "tls_digest_0", "tls_digest_sha256_0", "tls_serial_1"):
        assert e0[k], k
    assert len(e0["tls_digest_sha256_0"].split(":")) == 32


def _nothing_left(w: World) -> None:
    """A refused peer is nobody here: no client record with a name, no address leased, no status row."""
    gw = w.server
    assert not any(r.common_name for r in gw.d.clients)
    assert all(r.session.peer_certificate is None and r.session.peer_common_name is None for r in gw.d.clients)
    assert gw.st.pool.is_free("198.19.0.2")
    # Its next attempt's handshake, under way, is listed as 2.6 lists it: nobody yet (UNDEF).
    assert all(r.common_name == "UNDEF" and r.username == "UNDEF" and not r.vaddr for r in gw.ops.rows())
    assert gw.ops.rows(established_only=True) == []


@pytest.mark.parametrize("depth", ["0", "1"])
def test_server_refusal_at_a_depth_fails_tls_and_leaves_nothing(pki, tmp_path, inline, caplog, depth):
    tv, log = _verifier(tmp_path, refuse_depth=depth)
    w = World()
    w.add_server(server_conf(pki, extra=f"script-security 2\ntls-verify {tv}\n"))
    w.add_client(client_conf(pki))
    assert not w.run(lambda: _up(w), max_time=8)
    calls = _calls(log)
    # OpenVPN's verify callback stops at the first depth refused: depth 1's refusal runs no depth 0.
    one = ["tls-verify 1 CN=Gateway test CA"] + (["tls-verify 0 CN=client0"] if depth == "0" else [])
    assert calls and calls[:len(one)] == one and len(calls) % len(one) == 0 and set(calls) == set(one)
    _nothing_left(w)
    text = caplog.text
    assert "VERIFY SCRIPT ERROR: depth=" + depth in text
    assert "AUTH_FAILED" not in text           # a TLS failure to the client, as OpenVPN's
    assert w.clients[0].counters.connections == 0


def test_a_refusal_is_heard_at_once_both_ways(pki, tmp_path, inline, caplog):
    """tls.REFUSAL_NOTICE: the refused peer learns it within the second (a TLS error that ends its
    handshake), not at hand-window (60 s here); it keeps nothing."""
    tv, log = _verifier(tmp_path, refuse_depth="0")
    w = World()
    w.add_server(server_conf(pki, extra=f"script-security 2\ntls-verify {tv}\n"))
    w.add_client(client_conf(pki))
    assert w.run(lambda: len(_calls(log)) >= 2, max_time=10)
    first = w.clock()
    assert w.run(lambda: len(_calls(log)) >= 4, max_time=3), "the client did not start again at once"
    assert w.clock() - first < 2.5          # connect-retry 1 s and the handshake
    assert "TLS Error: key method message too short" in caplog.text and "AUTH_FAILED" not in caplog.text
    _nothing_left(w)
    # Our client refusing the server: the server drops that handshake at once.
    tv2, log2 = _verifier(tmp_path, refuse_depth="0", name="tv2.sh")
    w2 = World()
    gw2 = w2.add_server(server_conf(pki))
    w2.add_client(client_conf(pki, extra=f"script-security 2\ntls-verify {tv2}\n"))
    assert w2.run(lambda: len(_calls(log2)) >= 2, max_time=10)
    assert w2.run(lambda: not gw2.d.clients, max_time=0.5), "the server kept the refusing client's handshake"
    # No client left (the status lists the client's next handshake, under way, as 2.6 does).
    assert w2.server.ops.rows(established_only=True) == [] and w2.server.st.pool.is_free("198.19.0.2")


def test_client_runs_it_on_the_server_chain_and_refuses(pki, tmp_path, inline, caplog):
    tv, log = _verifier(tmp_path)
    w = World()
    w.add_server(server_conf(pki))
    w.add_client(client_conf(pki, extra=f"script-security 2\ntls-verify {tv}\n"))
    assert w.run(lambda: _up(w), max_time=30)
    ping_both_ways(w)
    assert _calls(log) == ["tls-verify 1 CN=Gateway test CA", "tls-verify 0 CN=server"]
    e0 = _env(tmp_path, 0)
    assert e0["common_name"] == "server" and e0["untrusted_ip"] == "198.18.0.1" and e0["untrusted_port"] == "1194"
    # Refused at depth 0: the client never brings the tunnel up, and the server sees a TLS failure.
    tv2, log2 = _verifier(tmp_path, refuse_depth="0", name="tv2.sh")
    w2 = World()
    w2.add_server(server_conf(pki))
    w2.add_client(client_conf(pki, extra=f"script-security 2\ntls-verify {tv2}\n"))
    assert not w2.run(lambda: _up(w2), max_time=8)
    assert set(_calls(log2)) == {"tls-verify 1 CN=Gateway test CA", "tls-verify 0 CN=server"}
    assert w2.server.ops.rows() == [] and w2.server.st.pool.is_free("198.19.0.2")


def test_a_hanging_command_is_killed_at_its_limit_and_refuses(pki, tmp_path, inline):
    import time
    inline["limit"] = 0.5
    tv, log = _verifier(tmp_path, extra=f'touch {tmp_path}/started; exec sleep 30\n')
    w = World()
    w.add_server(server_conf(pki, extra=f"script-security 2\ntls-verify {tv}\n"))
    w.add_client(client_conf(pki))
    t0 = time.monotonic()
    assert not w.run(lambda: _up(w), max_time=3)
    took = time.monotonic() - t0
    calls = _calls(log)
    assert calls and all(c == "tls-verify 1 CN=Gateway test CA" for c in calls)    # killed at depth 1
    assert took < 0.5 * len(calls) + 5, took
    _nothing_left(w)


class HeldRunner(VerifyRunner):
    """A runner whose commands 'hang' until release(): the bounds are the real ones."""

    def __init__(self, **kw) -> None:
        super().__init__(inline=True, **kw)
        self.held: list = []
        self.holding = True

    def _start(self, job) -> None:
        if self.holding:
            self.held.append(job)
        else:
            super()._start(job)

    def release(self, ok: bool = True) -> None:
        held, self.held = self.held, []
        for job in held:
            self.results.append((job.key, job, ok, "" if ok else "released as refused"))


def test_a_flood_of_held_handshakes_is_bounded_and_the_tunnel_goes_on(pki, tmp_path, monkeypatch, caplog):
    tv, log = _verifier(tmp_path)
    runner = HeldRunner(max_pending=6, per_source_pending=4, per_identity_pending=10)   # the total's bound
    runner.holding = False
    monkeypatch.setattr(ops_mod, "make_verify_runner", lambda opts, inline=False: runner)
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"script-security 2\ntls-verify {tv}\n"))
    w.add_client(client_conf(pki))
    assert w.run(lambda: _up(w), max_time=30)
    runner.holding = True
    for i in range(10):
        w.add_client(client_conf(pki, "client1"), ip=f"198.18.1.{10 + i}")
    w.run_for(4)
    # Six handshakes held at most; the rest refused at once (a TLS failure: they retry).
    assert len(runner.held) == 6 and sum(runner.refused.values()) >= 4
    assert sum(runner.pending.values()) == 6
    assert gw.faults.counts.get("TLS handshake refused: tls-verify not run: too many verify commands queued", 0) >= 4
    # Refused for room, unannounced: told, they would be back at once into the full queue.
    assert "key method message too short" not in caplog.text
    ping_both_ways(w)                       # the established client's tunnel is served meanwhile
    held = [r for r in gw.d.clients if r.session.peer_certificate is None and r is not gw.d.clients[0]]
    assert held and not any(r.common_name for r in held)     # held: nobody's identity yet
    assert not any(_up(w, i) for i in range(1, 11))
    runner.holding = False
    runner.release(True)
    # Each client gets in once its verdict came (the refused ones at their retry).
    assert w.run(lambda: all(_up(w, i) for i in range(1, 11)), max_time=60)
    assert runner.pending == {}


def test_one_certificate_from_many_addresses_holds_only_its_share(pki, tmp_path, monkeypatch):
    """One valid certificate (client1) from 10 addresses while the command hangs: it held every
    slot of the queue (8 here), and another client's handshake was refused until it cleared. Now
    it holds PER_IDENTITY_PENDING; the rest of its handshakes are refused, counted; client2 from
    an address of its own is checked meanwhile and gets in."""
    from appliance.gateway.tlsverify import PER_IDENTITY_PENDING
    tv, _log = _verifier(tmp_path)
    runner = HeldRunner(max_pending=8, per_source_pending=4)
    monkeypatch.setattr(ops_mod, "make_verify_runner", lambda opts, inline=False: runner)
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"script-security 2\ntls-verify {tv}\n"))
    for i in range(10):
        w.add_client(client_conf(pki, "client1"), ip=f"198.18.1.{10 + i}")
    w.run_for(3)
    assert len(runner.held) == PER_IDENTITY_PENDING == 4
    refused = "TLS handshake refused: tls-verify not run: too many verify commands queued for one certificate or client key"
    assert gw.faults.counts.get(refused, 0) >= 6
    w.add_client(client_conf(pki, "client2"), ip="198.18.2.10")
    w.run_for(2)
    assert len(runner.held) == 5 and "CN=client2" in str(runner.held[-1].chain[1][0].subject.rfc4514_string())
    runner.holding = False
    runner.release(True)
    assert w.run(lambda: _up(w, 10), max_time=30)
    ping_both_ways(w, 10)


def test_renegotiation_runs_it_again_and_a_refusal_then_ends_the_client(pki, tmp_path, inline, caplog):
    marker = tmp_path / "refuse-now"
    tv, log = _verifier(tmp_path, extra=f'[ -e {marker} ] && exit 1\n')
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"script-security 2\ntls-verify {tv}\n"))
    w.add_client(client_conf(pki, extra="reneg-sec 20\n"))
    assert w.run(lambda: _up(w), max_time=30)
    assert len(_calls(log)) == 2
    assert w.run(lambda: len(_calls(log)) >= 4, max_time=30)        # the renegotiation's handshake
    w.run_for(2)
    assert w.clients[0].counters.renegotiations >= 1
    ping_both_ways(w)
    assert [r.common_name for r in gw.ops.rows()] == ["client0"]
    n = len(_calls(log))
    marker.touch()
    # The next renegotiation's chain is refused: that client is gone, and its new tries fail too.
    assert w.run(lambda: gw.ops.rows() == [], max_time=40)
    assert len(_calls(log)) > n
    w.run_for(5)
    _nothing_left(w)
    assert "VERIFY SCRIPT ERROR: depth=1" in caplog.text


def _v2_confs(pki, metadata: bytes):
    server_pem = keyfiles.generate_tls_crypt_v2_server_key()
    client_pem = keyfiles.generate_tls_crypt_v2_client_key(keyfiles.parse_tls_crypt_v2_server_key(server_pem),
                                                           metadata=metadata)
    return (f"<tls-crypt-v2>\n{server_pem}</tls-crypt-v2>\n", f"<tls-crypt-v2>\n{client_pem}</tls-crypt-v2>\n")


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_tls_crypt_v2_verify_accepts_and_refuses_by_metadata(pki, tmp_path, inline, caplog, proto):
    log = tmp_path / "v2.log"
    v2 = _script(tmp_path, "v2.sh", f'echo "$script_type $metadata_type $(cat "$metadata_file") $metadata_file" >> {log}\n'
                                    'grep -q "^alice$" "$metadata_file"\n')
    for who, ok in ((b"alice", True), (b"mallory", False)):
        log.unlink(missing_ok=True)
        s_key, c_key = _v2_confs(pki, who)
        w = World()
        gw = w.add_server(server_conf(pki, "tcp-server" if proto == "tcp" else "udp", protection="none",
                                      extra=f"script-security 2\ntls-crypt-v2-verify {v2}\n{s_key}"))
        w.add_client(client_conf(pki, proto="tcp-client" if proto == "tcp" else "udp", protection="none", extra=c_key))
        assert w.run(lambda: _up(w), max_time=8) is ok
        calls = _calls(log)
        assert calls and calls[0].startswith(f"tls-crypt-v2-verify 0 {who.decode()} ")
        metadata_file = calls[0].split()[-1]
        assert not __import__("os").path.exists(metadata_file)      # removed once the command ended
        if not ok:
            _nothing_left(w)
            assert not gw.d.clients                   # dropped unanswered, before any TLS
            assert gw.d.stats.get("client refused by tls-crypt-v2-verify", 0) >= 1
            assert "TLS CRYPT V2 VERIFY SCRIPT ERROR" in caplog.text


def test_config_lines(pki, tmp_path, monkeypatch):
    tv = _script(tmp_path, "tv.sh", "exit 0\n")
    o = parse_config(server_conf(pki, extra=f"script-security 2\ntls-verify \"{tv} --x 'a b'\"\ntls-crypt-v2-verify {tv}\n"),
                     "/m/s.conf")
    assert o.tls_verify == [tv, "--x", "a b"] and o.tls_crypt_v2_verify == [tv]
    with pytest.raises(ConfigError, match="tls-verify: scripts run only with `script-security 2`"):
        World().add_server(server_conf(pki, extra=f"tls-verify {tv}\n"))
    with pytest.raises(ConfigError, match="tls-crypt-v2-verify: scripts run only with `script-security 2`"):
        World().add_server(server_conf(pki, extra=f"tls-crypt-v2-verify {tv}\n"))
    with pytest.raises(ConfigError, match="tls-verify: scripts run only with `script-security 2`"):
        World().add_client(client_conf(pki, extra=f"tls-verify {tv}\n"))
    with pytest.raises(ConfigError, match="tls-crypt-v2-verify: is a server directive"):
        parse_config(client_conf(pki, extra=f"script-security 2\ntls-crypt-v2-verify {tv}\n"), "/m/c.ovpn")
    with pytest.raises(ConfigError, match="tls-verify: .*no such file"):
        parse_config(server_conf(pki, extra=f"tls-verify {tmp_path}/missing\n"), "/m/s.conf")
    monkeypatch.setenv("VPN_APPLIANCE_NO_SCRIPTS", "1")
    for d in ("tls-verify", "tls-crypt-v2-verify"):
        with pytest.raises(ConfigError, match=f"{d}: the VM image runs no scripts"):
            parse_config(server_conf(pki, extra=f"script-security 2\n{d} {tv}\n"), "/vm/s.conf")


def test_a_reload_applies_it_to_new_handshakes_and_kept_clients_renegotiations(pki, tmp_path, inline):
    tv, log = _verifier(tmp_path)
    base = server_conf(pki, extra="script-security 2\n")
    with_tv = server_conf(pki, extra=f"script-security 2\ntls-verify {tv}\n")
    w = World()
    gw, holder = w.add_reloadable_server(base)
    w.add_client(client_conf(pki, "client0", extra="reneg-sec 30\n"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    old0 = next(r for r in gw.d.clients if r.common_name == "client0")
    holder["conf"] = with_tv
    assert gw.ops.reload()
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 1), max_time=30)
    assert _calls(log) == ["tls-verify 1 CN=Gateway test CA", "tls-verify 0 CN=client1"]
    # The kept client is told RESTART (a check it never went through: reload44) and its reconnect
    # runs it (OpenVPN's SIGHUP has every client in anew); before, its next renegotiation did
    # (reneg-sec 30), the session it had kept going: its end before then is what tells them apart
    # (review45b: this test passed with reload44's change taken out).
    assert w.run(lambda: not old0.alive and "tls-verify 0 CN=client0" in _calls(log), max_time=20)
    w.run_for(2)
    ping_both_ways(w, 0)
    holder["conf"] = base
    assert gw.ops.reload()
    n = len(_calls(log))
    w.add_client(client_conf(pki, "client2"))
    assert w.run(lambda: _up(w, 2), max_time=30)
    assert len(_calls(log)) == n


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_tls_crypt_v2_verify_held_for_seconds_then_accepted(pki, tmp_path, monkeypatch, proto):
    """The client's packets while its key's command runs (UDP retransmissions; anything over TCP)
    wait with its first one, and the handshake goes on from them once the verdict is in."""
    runner = HeldRunner()
    monkeypatch.setattr(ops_mod, "make_verify_runner", lambda opts, inline=False: runner)
    s_key, c_key = _v2_confs(pki, b"alice")
    w = World()
    gw = w.add_server(server_conf(pki, "tcp-server" if proto == "tcp" else "udp", protection="none",
                                  extra=f"script-security 2\ntls-crypt-v2-verify /bin/true\n{s_key}"))
    w.add_client(client_conf(pki, proto="tcp-client" if proto == "tcp" else "udp", protection="none", extra=c_key))
    w.run_for(5)
    assert len(runner.held) == 1 and not _up(w)
    [rec] = [r for r in gw.d._records() if r.v2_held is not None]
    # No TLS work yet: the client's hello has not reached OpenSSL.
    assert all(ks.tls is None or ks.tls.conn.get_state_string() == b"before SSL initialization"
               for ks in rec.session.keys.values()), [ks.tls.conn.get_state_string() for ks in rec.session.keys.values()]
    runner.holding = False
    runner.release(True)
    assert w.run(lambda: _up(w), max_time=30)
    ping_both_ways(w)


def test_one_v2_client_key_from_many_addresses_holds_only_its_share(pki, tmp_path, monkeypatch):
    """tls-crypt-v2-verify's queue by client key: one key from 8 addresses while the command
    hangs held all 6 slots here; now 4, and another key -- with the SAME metadata, the cap
    goes by the key itself -- is checked meanwhile and gets in."""
    runner = HeldRunner(max_pending=6, per_source_pending=4)
    monkeypatch.setattr(ops_mod, "make_verify_runner", lambda opts, inline=False: runner)
    server_pem = keyfiles.generate_tls_crypt_v2_server_key()
    key = keyfiles.parse_tls_crypt_v2_server_key(server_pem)
    stolen, own = (keyfiles.generate_tls_crypt_v2_client_key(key, metadata=b"staff") for _ in range(2))
    w = World()
    gw = w.add_server(server_conf(pki, protection="none", extra="script-security 2\ntls-crypt-v2-verify /bin/true\n"
                                                                 f"<tls-crypt-v2>\n{server_pem}</tls-crypt-v2>\n"))
    for i in range(8):
        w.add_client(client_conf(pki, "client1", protection="none", extra=f"<tls-crypt-v2>\n{stolen}</tls-crypt-v2>\n"),
                     ip=f"198.18.1.{10 + i}")
    w.run_for(3)
    assert len(runner.held) == 4
    refused = "client refused: tls-crypt-v2-verify not run: too many verify commands queued for one certificate or client key"
    assert gw.faults.counts.get(refused, 0) >= 4
    w.add_client(client_conf(pki, "client2", protection="none", extra=f"<tls-crypt-v2>\n{own}</tls-crypt-v2>\n"),
                 ip="198.18.2.10")
    w.run_for(2)
    assert len(runner.held) == 5
    runner.holding = False
    runner.release(True)
    assert w.run(lambda: _up(w, 8), max_time=30)
    ping_both_ways(w, 8)


def test_a_stale_or_late_verdict_decides_nothing(pki, tmp_path, monkeypatch):
    """A verdict naming another TLS session (a reused key id) is ignored; a handshake held past
    hand-window ends as any stalled one, and its verdict arriving later changes nothing (its
    slot is freed all the same)."""
    runner = HeldRunner()
    monkeypatch.setattr(ops_mod, "make_verify_runner", lambda opts, inline=False: runner)
    w = World()
    gw = w.add_server(server_conf(pki, extra="script-security 2\ntls-verify /bin/true\nhand-window 20\n"))
    w.add_client(client_conf(pki))
    w.run_for(2)
    [job] = runner.held
    _, rec, key_id, check = job.key
    gw.d.tls_verify_result(rec, key_id, True, w.clock(), check=object())
    w.run_for(2)
    assert not _up(w) and rec.session.peer_common_name is None
    w.run_for(25)                                   # hand-window over: that session is gone
    assert not rec.alive
    runner.release(True)
    w.run_for(1)
    assert runner.pending.get("198.18.0.2", 0) <= len(runner.held) and "internal error" not in gw.faults.counts
    runner.holding = False
    runner.release(True)                            # the client's later tries are decided as they come
    assert w.run(lambda: _up(w), max_time=60)


@pytest.mark.parametrize("who, gets_in", [("client0", False), ("client1", True)])
def test_a_reload_while_held_checks_the_held_chain_under_the_new_config(pki, tmp_path, monkeypatch, who, gets_in):
    """A handshake held for tls-verify when a reload makes the checks stricter (here
    verify-x509-name; a CRL revoking it, a CA taken out alike) is checked under the new config
    at its verdict: OpenVPN's SIGHUP has that client verified anew, and a command's "yes" must
    not carry in a certificate the reloaded config refuses (it did: the checks had run before
    the hold, and the reload passed over a session with no finished handshake)."""
    runner = HeldRunner()
    monkeypatch.setattr(ops_mod, "make_verify_runner", lambda opts, inline=False: runner)
    base = server_conf(pki, extra="script-security 2\ntls-verify /bin/true\n")
    w = World()
    gw, holder = w.add_reloadable_server(base)
    w.add_client(client_conf(pki, who))
    w.run_for(2)
    assert len(runner.held) == 1 and not _up(w)
    holder["conf"] = server_conf(pki, extra="script-security 2\ntls-verify /bin/true\nverify-x509-name client1 name\n")
    assert gw.ops.reload()
    runner.holding = False
    runner.release(True)
    assert w.run(lambda: _up(w), max_time=10) is gets_in
    if not gets_in:
        _nothing_left(w)


def test_common_name_is_the_x509_username_field_name_as_everywhere_else(tmp_path, inline):
    """With x509-username-field, OpenVPN 2.6's tls-verify gets that field's value as
    `common_name` (verify_cert: the username it extracts), the name the session then goes by.
    Ours gave the subject's CN: a certificate `CN=alice@example.org, emailAddress=mallory@...`
    was alice to an allow-list command and mallory to the pool, status and scripts after it."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from appliance.certs import issue
    from tests.gateway.conftest import _kpem, _pem
    ca = issue("Name CA", None, None)
    srv = issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice@example.org"),
                         x509.NameAttribute(NameOID.EMAIL_ADDRESS, "mallory@example.org")])
    cli = issue("x", ca, ExtendedKeyUsageOID.CLIENT_AUTH, name=subject)
    pki = {"ca": _pem(ca[0]), "server": (_pem(srv[0]), _kpem(srv[1])),
           "clients": {"client0": (_pem(cli[0]), _kpem(cli[1]))}}
    tv, log = _verifier(tmp_path)
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"script-security 2\ntls-verify {tv}\nx509-username-field emailAddress\n"))
    w.add_client(client_conf(pki))
    assert w.run(lambda: _up(w), max_time=30)
    assert _env(tmp_path, 0)["common_name"] == "mallory@example.org"
    assert [r.common_name for r in gw.ops.rows()] == ["mallory@example.org"]


@pytest.mark.parametrize("refuses", [True, False])
def test_a_reload_adding_tls_crypt_v2_verify_runs_it_on_connected_clients_keys(pki, tmp_path, inline, caplog,
                                                                              refuses):
    """The command runs on a client's key at its first packet, and OpenVPN's SIGHUP has every
    client connect again through it: a reload that adds it runs it on the keys of the clients
    it keeps, and one it refuses is disconnected (an operator revoking a key that way expects
    it gone). Before, the kept clients stayed, with a warning."""
    import logging
    s_key, c_key = _v2_confs(pki, b"mallory")
    v2 = _script(tmp_path, "v2.sh", 'echo "$metadata_type $(cat "$metadata_file")" >> "$0.log"\n'
                 + ("exit 1\n" if refuses else "exit 0\n"))
    base = server_conf(pki, protection="none", extra=f"script-security 2\n{s_key}")
    w = World()
    gw, holder = w.add_reloadable_server(base)
    w.add_client(client_conf(pki, protection="none", extra=c_key))
    assert w.run(lambda: _up(w), max_time=30)
    holder["conf"] = server_conf(pki, protection="none", extra=f"script-security 2\ntls-crypt-v2-verify {v2}\n{s_key}")
    with caplog.at_level(logging.WARNING):
        assert gw.ops.reload()
        w.run_for(1.0)
    assert open(v2 + ".log").read().split() == ["0", "mallory"]      # type 0 (user), the key's metadata
    if refuses:
        assert "tls-crypt-v2-verify refused its key at a reload" in caplog.text, caplog.text
        assert not gw.d.clients
    else:
        assert len(gw.d.clients) == 1 and "refused its key" not in caplog.text
