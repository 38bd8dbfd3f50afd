"""The root helper for the client's scripts 2.6 runs before its privilege drop (host/script_root.py):
it runs the profile's fixed commands with the words and environment asked, in 2.6's order only
(ipchange before up, up once, route-up once, then it ends), and refuses -- ending itself -- any
request of another shape: words that are not what 2.6 passes, an environment name such as
LD_PRELOAD, a kind out of order, a message past its bound. The main process that asks runs as
`user` and handles the network, so each of these is an attack a compromised process could try."""
from __future__ import annotations

import json

import pytest

from appliance.host.script_root import MAX_MESSAGE, RootScripts, words_ok

UP = ["tun0", "1500", "0", "10.8.0.2", "255.255.255.0", "init"]


@pytest.fixture
def rec(tmp_path):
    log = tmp_path / "log"
    s = tmp_path / "s.sh"
    s.write_text(f'#!/bin/sh\n{{ echo "== $*"; env | sort; }} >> {log}\nexit ${{FAIL:-0}}\n')
    s.chmod(0o755)
    return s, log


def _helper(rec, kinds=("ipchange", "up", "route-up")):
    s, _ = rec
    return RootScripts({k: [str(s), k] for k in kinds}, frozenset({"FAIL"}))


def test_runs_in_openvpns_order_then_ends(rec):
    h = _helper(rec)
    try:
        assert h.run("ipchange", ["[AF_INET]198.18.0.1 1194"], {"script_type": "ipchange"})
        assert h.run("ipchange", ["[AF_INET6]2001:db8::1 1194"], {"script_type": "ipchange"})
        assert h.run("up", UP, {"script_type": "up", "dev": "tun0"})
        assert not h.run("route-up", [], {"script_type": "route-up", "FAIL": "3"})     # its status, told
    finally:
        h.close()
    text = rec[1].read_text()
    assert "== ipchange [AF_INET]198.18.0.1 1194" in text and "== up tun0 1500 0 10.8.0.2 255.255.255.0 init" in text
    assert "== route-up\n" in text and "script_type=route-up" in text and "PATH=" in text
    assert not h.run("ipchange", ["[AF_INET]198.18.0.1 1194"], {})      # closed: nothing more


@pytest.mark.parametrize("kind, words, env", [
    ("up", ["tun0", "1500", "0", "10.8.0.2", "255.255.255.0", "restart"], {}),     # not a root context
    ("up", ["tun0;id", "1500", "0", "", "", "init"], {}),
    ("up", ["-x", "1500", "0", "", "", "init"], {}),                    # an option to the script's commands
    ("up", ["tun0", "1500", "0", "x", "", "init"], {}),
    ("ipchange", ["198.18.0.1 1194"], {}),
    ("ipchange", ["[AF_INET]198.18.0.1", "1194"], {}),
    ("route-up", ["extra"], {}),
    ("down", [], {}),                                   # not the helper's
    ("up", UP, {"LD_PRELOAD": "/tmp/x.so"}),
    ("up", UP, {"PATH": "/tmp"}),
    ("route-up", [], {}),                               # before up
])
def test_anything_else_is_refused_and_ends_it(rec, kind, words, env):
    h = _helper(rec)
    try:
        assert not h.run(kind, words, env)
        assert not h.run("up", UP, {})                  # the helper is gone after a refusal
    finally:
        h.close()
    assert not rec[1].exists()


def test_a_hostile_message_is_refused(rec):
    h = _helper(rec)
    try:
        for data in (b"x" * (MAX_MESSAGE + 1), b"[" * 100000, json.dumps({"kind": "up", "words": UP}).encode()):
            h2 = _helper(rec)
            h2.sock.send(data)
            assert h2.sock.recv(16) in (b"2", b"")
            h2.close()
        assert h.run("up", UP, {})
    finally:
        h.close()


def test_up_twice_is_refused(rec):
    h = _helper(rec, kinds=("up",))
    try:
        assert h.run("up", UP, {})
        assert not h.run("up", UP, {})                  # it ended after the one up
    finally:
        h.close()


def test_words_ok_shapes():
    assert words_ok("up", ["tun0", "1500", "0", "", "", "init"])
    assert words_ok("ipchange", ["[AF_INET6]fe80::1%eth0 1194"])
    assert not words_ok("ipchange", ["[AF_INET]198.18.0.1 70000"])


@pytest.mark.parametrize("env", [
    # a server's 1,024-option push (foreign_option_N): encode trims it to MAX_MESSAGE, and the
    # JSON the environment rode in added 5 bytes per variable past it
    {f"foreign_option_{i}": "dhcp-option DOMAIN " + "a" * 100 for i in range(1, 1201)},
    # non-ASCII pushed text: 2 bytes in UTF-8, 6 as a JSON escape
    {"foreign_option_1": "dhcp-option DOMAIN " + "\u00e9" * 30000},
])
def test_a_large_pushed_environment_still_runs_up(rec, env):
    h = _helper(rec, kinds=("up",))
    try:
        assert h.run("up", UP, {**env, "dev": "tun0"})
    finally:
        h.close()
    text = rec[1].read_text()
    assert "== up tun0 1500" in text and "dev=tun0" in text


def test_ipchanges_past_the_bound_are_skipped_and_up_still_runs(rec, monkeypatch):
    """A server failing connection after connection before the tunnel: each an ipchange as root.
    Past the helper's bound they are skipped by the asking side, so the helper is there for up."""
    import appliance.host.script_root as sr
    monkeypatch.setattr(sr, "MAX_IPCHANGE", 3)          # the child forked below has the same
    h = _helper(rec)
    try:
        assert all(h.run("ipchange", ["[AF_INET]198.18.0.1 1194"], {}) for _ in range(3))
        assert not h.run("ipchange", ["[AF_INET]198.18.0.1 1194"], {})
        assert h.run("up", UP, {})
    finally:
        h.close()
    assert rec[1].read_text().count("== ipchange") == 3


def test_a_root_up_still_running_at_the_end_is_killed(tmp_path):
    """SIGTERM while a slow root `up` runs: the client's close (abort) ends it before the end's
    `down` runs -- it finished afterwards, leaving what it set behind the ended tunnel."""
    import time

    from appliance.gateway.client_scripts import ClientScripts
    done = tmp_path / "done"
    s = tmp_path / "slow.sh"
    s.write_text(f"#!/bin/sh\nsleep 3\ntouch {done}\n")
    s.chmod(0o755)
    h = RootScripts({"up": [str(s)]})
    r = ClientScripts(time_limit=10)
    r.root = h
    try:
        r.submit("up", [str(s), *UP], {})
        time.sleep(0.5)
        t0 = time.monotonic()
        r.close()
        assert time.monotonic() - t0 < 2.5
        time.sleep(3.5)
        assert not done.exists()
    finally:
        h.abort()
        h.reap(2.0)
