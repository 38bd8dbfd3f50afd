"""port-share on the server's pump (in memory, fake clock): OpenVPN clients served as before on
the shared port, anything else relayed to the backend; the relay's bounds as a hostile client
would test them (slow reader, endless writer, many connections, a backend down or silent, a
client that sends nothing, half-closes, resets); the journal files of DIR."""
from __future__ import annotations

import os

import pytest

from appliance.gateway import portshare as ps
from appliance.gateway.ports import PortGone
from lab.fakes import MemoryListenSocket, stream_connect
from tests.gateway.conftest import SERVER_IP, World, client_conf, server_conf
from tests.gateway.test_faults import served

BACKEND = (SERVER_IP, 8443)
REQUEST = b"GET / HTTP/1.0\r\nHost: vpn.example\r\n\r\n"


def _server(pki, w: World, extra: str = "", backend: bool = True, conf: str = "") -> MemoryListenSocket | None:
    lst = None
    if backend:
        lst = MemoryListenSocket(w.net, BACKEND)
        lst.bind(BACKEND)
    w.add_server(server_conf(pki, "tcp-server", extra=f"port-share {BACKEND[0]} {BACKEND[1]} {extra}\n{conf}"))
    return lst


def _visit(w: World, ip: str = "198.18.0.50", data: bytes = REQUEST):
    """A web client's connection to the shared port, its first bytes sent."""
    s = stream_connect(w.net, ip, (SERVER_IP, 1194))
    if data:
        s.send(data)
    return s


def _backend_side(w: World, lst: MemoryListenSocket):
    """The backend's end of the oldest relayed connection, once the client's first bytes came."""
    assert w.run(lambda: bool(lst.backlog) and bool(lst.backlog[0].inbox), max_time=5), \
        f"nothing reached the backend: {w.server.faults.counts}"
    return lst.backlog.popleft()


def _tick(w: World) -> None:
    """Run what is due and 10 ms of the fake clock (run_for moves it up to a second at once)."""
    w.run(lambda: False, max_time=0.01)


def _counts(w: World) -> dict:
    return {k: v for k, v in w.server.faults.counts.items() if k.startswith("port-share")}


def test_web_client_gets_the_backends_answer_and_a_vpn_client_its_tunnel(pki, tmp_path):
    w = World()
    lst = _server(pki, w, str(tmp_path))
    web = _visit(w)
    back = _backend_side(w, lst)
    assert w.run(lambda: bytes(back.inbox) == REQUEST, max_time=5), bytes(back.inbox)
    # The journal: named after our end towards the backend, naming the real client (as OpenVPN).
    files = os.listdir(tmp_path)
    assert files == [f"[AF_INET]{back.remote[0]}:{back.remote[1]}"], files
    assert (tmp_path / files[0]).read_text() == f"[AF_INET]{web.local[0]}:{web.local[1]}"
    back.send(b"HTTP/1.0 200 OK\r\n\r\nhello")
    assert w.run(lambda: bytes(web.inbox).endswith(b"hello"), max_time=5)
    w.add_client(client_conf(pki, proto="tcp-client"))       # the same port serves OpenVPN meanwhile
    served(w)
    back.close()                                              # the web server ends its answer
    assert w.run(lambda: web.eof, max_time=5), "the client never saw the end of the answer"
    web.close()
    assert w.run(lambda: not w.server.portshare.relays, max_time=5)
    assert os.listdir(tmp_path) == [], "the journal file outlived its connection"
    assert w.server.d.clients, "the VPN client lost its session"


def test_a_half_closed_request_still_gets_its_whole_answer(pki):
    """The client sends its request and shuts its writing (as `nc -N`): the backend reads EOF
    after the request, and its answer still reaches the client (OpenVPN's proxy closes both)."""
    w = World()
    lst = _server(pki, w)
    web = _visit(w)
    web.shutdown(1)
    back = _backend_side(w, lst)
    assert w.run(lambda: back.eof and bytes(back.inbox) == REQUEST, max_time=5), "EOF not passed on"
    answer = b"x" * (3 * ps.BUFFER)
    back.send(answer)
    back.close()
    assert w.run(lambda: web.eof and len(web.inbox) == len(answer), max_time=5), len(web.inbox)
    assert not w.server.portshare.relays


def test_a_reset_ends_that_relay_only(pki):
    w = World()
    lst = _server(pki, w)
    webs = [_visit(w, f"198.18.0.{50 + i}") for i in range(2)]
    backs = [_backend_side(w, lst) for _ in webs]
    webs[0].abort()                                          # RST from the first client
    assert w.run(lambda: backs[0].eof, max_time=5), "the backend's connection stayed open"
    assert len(w.server.portshare.relays) == 1
    backs[1].send(b"still here")
    assert w.run(lambda: bytes(webs[1].inbox) == b"still here", max_time=5)
    assert any("client connection failed" in k for k in _counts(w)), _counts(w)


def test_a_slow_reader_holds_at_most_one_buffer_of_the_backends_bytes(pki):
    """The client stops reading while the backend sends without end: we stop reading the backend
    (its bytes wait in its own socket: TCP's back-pressure), holding at most BUFFER."""
    w = World()
    lst = _server(pki, w)
    web = _visit(w)
    back = _backend_side(w, lst)
    relay = next(iter(w.server.portshare.relays.values()))
    ours_to_client = web.peer
    ours_to_client.window = 10_000                           # the client takes 10 kB, then nothing
    sent = 0
    for _ in range(40):                                      # 40 x 64 KiB offered, over time
        back.send(b"y" * 65536)
        sent += 65536
        w.run_for(0.5)
    assert len(relay.b2c) <= ps.BUFFER
    assert len(web.inbox) == 10_000
    taken = sent - len(back.peer.inbox)              # what is left unread in our backend socket
    assert taken <= 10_000 + ps.BUFFER, f"read {taken} bytes from the backend for a client that took 10 kB"
    assert w.server.portshare.relays, "a slow reader is no error"


def test_an_endless_writer_to_a_backend_that_does_not_read_costs_one_buffer(pki):
    w = World()
    lst = _server(pki, w)
    web = _visit(w)
    back = _backend_side(w, lst)
    back.peer.window = 5_000                                 # the backend takes 5 kB, then nothing
    relay = next(iter(w.server.portshare.relays.values()))
    ours_from_client = web.peer
    for _ in range(40):
        web.send(b"z" * 65536)
        w.run_for(0.5)
    assert len(relay.c2b) <= ps.BUFFER
    assert len(ours_from_client.inbox) >= 40 * 65536 - 5_000 - ps.BUFFER, \
        "the relay read more from the client than it could pass on plus one buffer"
    # ... and the pump did not spin on the unread socket meanwhile.
    assert relay.spins < 10


def test_relays_are_capped_in_all_and_per_source(pki):
    w = World()
    lst = _server(pki, w, conf="max-clients 400")
    clients = []
    for i in range(ps.MAX_RELAYS // ps.PER_SOURCE_RELAYS + 2):      # 10 sources ...
        for _ in range(ps.PER_SOURCE_RELAYS + 4):                # ... 20 connections each
            clients.append(_visit(w, f"198.18.1.{i + 1}"))
            _tick(w)                    # (the server's own limit: 8 undecided connections per source)
    relays = w.server.portshare.relays
    assert len(relays) == ps.MAX_RELAYS
    per = {}
    for r in relays.values():
        per[r.src] = per.get(r.src, 0) + 1
    assert max(per.values()) == ps.PER_SOURCE_RELAYS
    c = _counts(w)
    assert c.get(f"port-share: connection refused ({ps.PER_SOURCE_RELAYS} relayed from one address already)", 0) > 0, c
    assert c.get(f"port-share: connection refused ({ps.MAX_RELAYS} relayed already)", 0) > 0, c
    refused = [s for s in clients if s.eof]
    assert len(refused) == len(clients) - ps.MAX_RELAYS
    w.add_client(client_conf(pki, proto="tcp-client"))       # a full relay table locks no VPN client out
    served(w)


def test_trickling_connections_no_longer_hold_every_relay(pki, caplog):
    """127 connections from 8 sources each trickling a byte every 5 s (under IDLE_TIMEOUT, so
    never closed as idle) and one busy one filled the table for good: every newcomer was refused.
    Now a full table closes the relay quiet the longest (by ACTIVE_BYTES moved) for a newcomer:
    tricklers go, counted and logged once, and the busy relay stays."""
    w = World()
    _server(pki, w, conf="max-clients 400")
    t0 = w.clock.t
    trick = []
    for i in range(ps.MAX_RELAYS - 1):
        trick.append(_visit(w, f"198.18.3.{i // ps.PER_SOURCE_RELAYS + 1}"))
        _tick(w)                    # (the server's own limit: 8 undecided connections per source)
    busy = _visit(w, "198.18.5.1")
    _tick(w)
    assert len(w.server.portshare.relays) == ps.MAX_RELAYS and w.clock.t - t0 < 5
    assert ps.EVICT_QUIET < 25
    for _ in range(5):                                      # 25 s of trickling
        for s in trick:
            s.send(b"x")
        busy.send(b"y" * ps.ACTIVE_BYTES)
        w.run_for(5)
    assert not any(s.eof for s in trick) and not busy.eof
    newcomers = []
    for i in range(10):
        newcomers.append(_visit(w, f"198.18.4.{i + 1}"))
        w.run_for(0.1)
    assert not any(s.eof for s in newcomers), "a newcomer was refused while relays only trickled"
    assert sum(s.eof for s in trick) == 10 and not busy.eof
    assert len(w.server.portshare.relays) == ps.MAX_RELAYS
    assert _counts(w).get("port-share: quiet relay closed to make room") == 10, _counts(w)
    assert caplog.text.count("port-share: all 128 relays taken") == 1, "one line for the burst, not one each"


def test_backend_down_closes_the_client_and_counts(pki):
    w = World()
    _server(pki, w, backend=False)
    web = _visit(w)
    assert w.run(lambda: web.eof, max_time=5), "the client's connection stayed open"
    assert any(k.startswith("port-share: backend unreachable") for k in _counts(w)), _counts(w)
    assert not w.server.portshare.relays and not w.server.conns
    w.add_client(client_conf(pki, proto="tcp-client"))
    served(w)


def test_a_backend_that_never_answers_is_given_up_after_the_connect_timeout(pki):
    w = World()
    lst = _server(pki, w)
    real = w.server.portshare.connect

    def silent(addr):                       # a SYN into the void: never writable
        t = real(addr)
        t.sock.window = 0
        t.sock.peer.close = lambda: None
        return t
    w.server.portshare.connect = silent
    web = _visit(w)
    w.run_for(ps.CONNECT_TIMEOUT - 0.5)
    assert not web.eof
    w.run_for(1.0)
    assert web.eof and not w.server.portshare.relays
    assert _counts(w).get("port-share: backend did not answer in time") == 1, _counts(w)
    del lst


def test_an_idle_relay_is_closed_and_its_journal_removed(pki, tmp_path):
    w = World()
    lst = _server(pki, w, str(tmp_path))
    web = _visit(w)
    _backend_side(w, lst)
    assert len(os.listdir(tmp_path)) == 1
    w.run_for(ps.IDLE_TIMEOUT - 5)
    assert not web.eof
    w.run_for(10)
    assert web.eof and not w.server.portshare.relays
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("first", [b"", b"G"])
def test_a_client_that_sends_too_little_to_decide_is_closed_at_hand_window(pki, first):
    """Nothing, or one byte: OpenVPN waits for 2; so do we, up to hand-window (60 s), and the
    connection is never relayed meanwhile."""
    w = World()
    lst = _server(pki, w)
    web = _visit(w, data=first)
    w.run_for(55)
    assert not web.eof and not lst.backlog and not w.server.portshare.relays
    w.run_for(10)
    assert web.eof and not lst.backlog


def test_two_bytes_that_look_like_an_openvpn_length_are_openvpn(pki):
    """As OpenVPN decides on 2 bytes: a plausible frame length (14..255) is an OpenVPN client,
    never relayed; what follows is judged by the protocol engine."""
    w = World()
    lst = _server(pki, w)
    web = _visit(w, data=b"\x00\x20")
    w.run_for(1)
    web.send(b"GET / HTTP/1.0\r\n\r\n" + bytes(20))
    w.run_for(5)
    assert not lst.backlog and not w.server.portshare.relays


def test_journal_dir_replaced_by_a_symlink_after_start_is_not_followed(pki, tmp_path):
    """The directory is held by a descriptor from the start: renaming it and putting a symlink to
    elsewhere in its place writes nothing elsewhere."""
    jdir, elsewhere = tmp_path / "j", tmp_path / "elsewhere"
    jdir.mkdir()
    elsewhere.mkdir()
    w = World()
    lst = _server(pki, w, str(jdir))
    os.rename(jdir, tmp_path / "j-moved")
    os.symlink(elsewhere, jdir)
    _visit(w)
    _backend_side(w, lst)
    assert os.listdir(elsewhere) == []
    assert len(os.listdir(tmp_path / "j-moved")) == 1


def test_a_reload_keeps_port_share_as_started_and_says_so(pki, caplog):
    """RESTART_ONLY: the target was resolved and DIR opened at start; a reload that changes the
    line warns at it, and relays go on to the old target."""
    w = World()
    lst = _server(pki, w)
    conf = server_conf(pki, "tcp-server", extra=f"port-share {BACKEND[0]} {BACKEND[1]} \n")
    line = conf.splitlines().index(f"port-share {BACKEND[0]} {BACKEND[1]} ") + 1
    w.server.ops.reload_source = lambda: conf.replace(f"port-share {BACKEND[0]} {BACKEND[1]}", "port-share 198.18.0.9 80")
    assert w.server.ops.reload()
    assert f"/mem/server.conf:{line}: port-share: changed; takes effect at restart" in caplog.text, caplog.text
    _visit(w)
    back = _backend_side(w, lst)
    assert bytes(back.inbox) == REQUEST


@pytest.mark.parametrize("local,host", [(SERVER_IP, SERVER_IP), ("", "127.0.0.1")])
def test_port_share_to_our_own_port_is_refused_at_start(pki, local, host):
    """A loop (each relayed connection relayed again); found for a loopback HOST or our own
    `local` address. (With a wildcard listener and another address of this host, the caps end
    the chain.)"""
    w = World()
    extra = f"port-share {host} 1194\n" + (f"local {local}\n" if local else "")
    with pytest.raises(PortGone, match=r"/mem/server.conf:\d+: port-share: .*this server's own port"):
        w.add_server(server_conf(pki, "tcp-server", extra=extra))


def test_an_unresolvable_host_stops_the_start_at_its_line(pki, monkeypatch):
    from lab.fakes import MemoryPorts
    real = MemoryPorts.resolve

    def resolve(self, host, port, proto, family):
        if host == "web.invalid":
            raise OSError("Name or service not known")
        return real(self, host, port, proto, family)
    monkeypatch.setattr(MemoryPorts, "resolve", resolve)
    with pytest.raises(PortGone, match=r"/mem/server.conf:\d+: port-share: cannot resolve web.invalid"):
        World().add_server(server_conf(pki, "tcp-server", extra="port-share web.invalid 443\n"))


@pytest.mark.parametrize("protection", ["none", "tls-crypt", "tls-crypt-v2"])
def test_our_client_is_recognised_with_each_protection(pki, protection):
    """Our own client's first packet passes OpenVPN's rule too (a tls-crypt-v2 hard reset carries
    the wrapped client key: 336..1278 bytes), so it reaches a port-share server, ours or OpenVPN's."""
    from appliance.openvpn import keyfiles
    w = World()
    backend = MemoryListenSocket(w.net, BACKEND)
    backend.bind(BACKEND)
    srv_extra, cli_extra, prot = "", "", protection
    if protection == "tls-crypt-v2":
        skey = keyfiles.generate_tls_crypt_v2_server_key()
        ckey = keyfiles.generate_tls_crypt_v2_client_key(keyfiles.parse_tls_crypt_v2_server_key(skey))
        srv_extra, cli_extra, prot = f"<tls-crypt-v2>\n{skey}</tls-crypt-v2>\n", f"<tls-crypt-v2>\n{ckey}</tls-crypt-v2>\n", "none"
    w.add_server(server_conf(pki, "tcp-server", prot, extra=f"port-share {BACKEND[0]} {BACKEND[1]}\n{srv_extra}"))
    w.add_client(client_conf(pki, proto="tcp-client", protection=prot, extra=cli_extra))
    served(w)
    assert not backend.backlog and not w.server.portshare.relays


_RESET = b"\x38" + bytes.fromhex("0102030405060708") + b"\x00" + bytes(4)   # HARD_RESET_CLIENT_V2, no protection


@pytest.mark.parametrize("how", ["with-more", "1-byte-segments"])
def test_an_openvpn_reset_in_any_split_is_answered_and_never_relayed(pki, how):
    """A client's reset in the same first read as what follows it (here a second copy), or
    trickled one byte per segment (OpenVPN decides at 2 bytes, on the length alone): either way
    the server answers with its own reset and nothing reaches the backend."""
    w = World()
    lst = MemoryListenSocket(w.net, BACKEND)
    lst.bind(BACKEND)
    w.add_server(server_conf(pki, "tcp-server", protection="none", extra=f"port-share {BACKEND[0]} {BACKEND[1]}\n"))
    frame = len(_RESET).to_bytes(2, "big") + _RESET
    if how == "with-more":
        web = _visit(w, data=frame + frame)
    else:
        web = _visit(w, data=b"")
        for i in range(len(frame)):
            web.send(frame[i:i + 1])
            w.run_for(0.05)
    assert w.run(lambda: len(web.inbox) >= 3, max_time=5), "no answer to the reset"
    assert web.inbox[2] >> 3 == 8, bytes(web.inbox[:3])          # P_CONTROL_HARD_RESET_SERVER_V2
    assert not lst.backlog and not w.server.portshare.relays


def test_the_idle_timer_ends_a_relay_whose_deadline_rounds_below_the_timeout(pki):
    """fuzz37 (port-share target, a hang): the idle timer fired at `last + IDLE_TIMEOUT` and
    compared `now - last >= IDLE_TIMEOUT`, which floating point makes false for some `last`
    ((1000.0000000000002 + 300) - 1000.0000000000002 < 300): the timer re-armed itself at the
    same deadline and fired again without end -- under the suite's exact clock for ever, under
    a real one until the clock ticked past. It now compares with the deadline it was armed at."""
    last = next(t for t in (1000 + i / 7 for i in range(1000)) if (t + ps.IDLE_TIMEOUT) - t < ps.IDLE_TIMEOUT)
    w = World()
    lst = _server(pki, w)
    web = _visit(w)
    _backend_side(w, lst)
    share = w.server.portshare
    (rid, relay), = share.relays.items()
    w.clock.t = last
    relay.last = last
    w.server.pump.timers.arm(("port-share", rid), last + ps.IDLE_TIMEOUT, lambda: share._timer(rid))
    assert w.run(lambda: not share.relays, max_time=ps.IDLE_TIMEOUT + 5, max_steps=2000), \
        "the idle relay was not closed (its timer fired again and again at one instant)"
    assert web.eof
