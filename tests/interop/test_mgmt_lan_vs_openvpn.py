"""The management interface on a LAN address with a password, against Debian's OpenVPN 2.6 in
namespaces: a management client in another namespace, over a veth, authenticates and reads
`status 2` with the connected Debian client in it, line for line as OpenVPN answers (same config,
same commands, addresses/times/counters masked); a password guesser from one source is throttled
while another source still gets in; and the attacks an exposed port gets (1,000 idle connections,
a guessing loop, 1 MB lines) neither stall the tunnel nor grow the server without bound.

Topology (lab/netns.py, plus two management namespaces): the server namespace holds 198.18.6.1 on
the veth to `m1` (198.18.6.2) and 198.18.7.1 on the veth to `m2` (198.18.7.2); management
listens on 198.18.6.1 only, `m2` reaches it through the server's other interface (local delivery,
no forwarding), as a second LAN host would.
"""
from __future__ import annotations

import json
import sys
import textwrap
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab
from lab.tools import OPENVPN
from tests.interop.test_ops_vs_openvpn import mask

MGMT_IP, MGMT_PORT, PASSWORD = "198.18.6.1", 7505, "c0rrect horse"

# A management client as a tool is, run inside a namespace: connect, answer the prompt, run
# commands; prints a JSON list of what each connection saw. argv: host port json-plan
CLIENT = textwrap.dedent('''
    import json, socket, sys, time
    host, port, plan = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])

    def read(s, until, limit=3.0):
        out, end = b"", time.monotonic() + limit
        s.settimeout(0.2)
        while time.monotonic() < end:
            try:
                d = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return out.decode("utf-8", "replace"), True
            if not d:
                return out.decode("utf-8", "replace"), True
            out += d
            if until(out):
                break
        return out.decode("utf-8", "replace"), False

    results = []
    for conn in plan:
        r = {"prompt": "", "replies": [], "closed": False}
        try:
            s = socket.create_connection((host, port), timeout=5)
        except OSError as e:
            r["error"] = str(e)
            results.append(r)
            continue
        r["prompt"], r["closed"] = read(s, lambda b: b.endswith(b"ENTER PASSWORD:"), 2.0)
        for line in conn:
            if r["closed"]:
                break
            try:
                s.sendall(line.encode() + b"\\n")
            except OSError:
                r["closed"] = True
                break
            if line.startswith("status") or line == "load-stats":
                txt, r["closed"] = read(s, lambda b: b.endswith(b"END\\r\\n") or b.startswith(b"SUCCESS"), 3.0)
            else:
                txt, r["closed"] = read(s, lambda b: b.endswith(b"ENTER PASSWORD:") or b.endswith(b"\\r\\n"), 1.5)
            r["replies"].append(txt)
        if not r["closed"]:
            rest, r["closed"] = read(s, lambda b: False, 0.3)
        s.close()
        results.append(r)
    print(json.dumps(results))
''')


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1"], tmp=tmp_path_factory.mktemp("mgmtlan")) as lab:
        lab.m1 = lab.add_client_ns(5)                     # 198.18.6.2, the server side 198.18.6.1
        lab.m2 = lab.add_client_ns(6)                     # 198.18.7.2
        lab.m2.run(f"ip route add {MGMT_IP}/32 via 198.18.7.1")
        lab.write("mgmt-pw", PASSWORD + "\n")
        lab.write("mgmt-client.py", CLIENT)
        yield lab


@pytest.fixture
def procs(lab):
    started = []
    yield started
    for p in reversed(started):
        p.stop_promptly(8)   # Proc.stop_promptly: no UDP server exit delay


def talk(lab, ns, plan: list[list[str]], timeout: float = 120) -> list[dict]:
    r = ns.run(f"{sys.executable} {lab.tmp / 'mgmt-client.py'} {MGMT_IP} {MGMT_PORT} '{json.dumps(plan)}'",
               timeout=timeout)
    return json.loads(r.stdout)


def _config(lab) -> str:
    return server_config(lab.pki) + f"management {MGMT_IP} {MGMT_PORT} {lab.tmp / 'mgmt-pw'}\n"


def _ours(lab, procs):
    srv = lab.ours(lab.srv, _config(lab), f"oursrv-{len(lab.procs)}", pattern=r"listening on UDP")
    procs.append(srv)
    return srv


def _theirs(lab, procs):
    p = lab.start(lab.srv, [OPENVPN, "--config", str(lab.write(f"ovsrv-{len(lab.procs)}.conf", _config(lab)))],
                  "ovsrv")
    procs.append(p)
    assert p.wait_for("Initialization Sequence Completed", 30), p.log()[-2000:]
    return p


def _session(lab, procs, start) -> list[dict]:
    start(lab, procs)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, client="client1"), f"mcli-{len(lab.procs)}")
    procs.append(cli)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 3) == 3
    # One connection at a time (OpenVPN serves one management client at a time): a miss, then the
    # password and `status 2`; then three misses.
    out = talk(lab, lab.m1, [["wrong", PASSWORD, "status 2", "load-stats"]])
    out += talk(lab, lab.m1, [["a", "b", "c"]])
    for p in reversed(procs):
        p.stop(8)
    procs.clear()
    return out


def test_status_2_read_from_another_namespace_answers_like_openvpn(lab, procs):
    theirs = _session(lab, procs, _theirs)
    ours = _session(lab, procs, _ours)
    for o, t in ((ours, theirs), (theirs, theirs)):
        assert o[0]["prompt"] == "ENTER PASSWORD:", o
        assert o[0]["replies"][0] == "ENTER PASSWORD:", o             # a miss: asked again
    assert ours[0]["replies"][1].startswith("SUCCESS: password is correct\r\n")
    status = {who: [mask(x) for x in r[0]["replies"][2].split("\r\n") if x]
              for who, r in (("ours", ours), ("theirs", theirs))}
    assert any(x.startswith("CLIENT_LIST,client1,<ADDR>,198.19.0.") for x in status["ours"]), status["ours"]
    assert status["ours"] == status["theirs"], status
    assert [mask(x) for x in ours[0]["replies"][3].split("\r\n")] == \
        [mask(x) for x in theirs[0]["replies"][3].split("\r\n")]
    # Three misses: asked twice more, then the connection is closed, by both.
    for r in (ours[1], theirs[1]):
        assert r["replies"][:2] == ["ENTER PASSWORD:", "ENTER PASSWORD:"] and r["closed"], r


def test_a_guesser_is_throttled_while_another_source_gets_in(lab, procs):
    from appliance.gateway.mgmt_throttle import SOURCE_BURST
    srv = _ours(lab, procs)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, client="client1"), f"mcli-{len(lab.procs)}")
    procs.append(cli)
    guesses = talk(lab, lab.m2, [["guess1", "guess2", "guess3"] for _ in range(12)])
    prompted = [bool(r["prompt"]) for r in guesses]
    # The first SOURCE_BURST misses are asked for (two connections of three), then each new
    # connection from that source is closed at once, before any prompt.
    assert prompted[:SOURCE_BURST // 3] == [True] * (SOURCE_BURST // 3), guesses[:3]
    assert not any(prompted[SOURCE_BURST // 3:]), prompted
    # ... even with the right password: it is not compared any more.
    again = talk(lab, lab.m2, [[PASSWORD, "load-stats"]])
    assert again[0]["prompt"] == "" and again[0]["closed"], again
    # Another source is not held by it.
    ok = talk(lab, lab.m1, [[PASSWORD, "status 2"]])
    assert ok[0]["replies"][0].startswith("SUCCESS: password is correct"), ok
    assert "CLIENT_LIST,client1," in ok[0]["replies"][1], ok
    # One log line for the ten refused connections, not ten.
    assert srv.wait_for("connection\\(s\\) closed at once", 5), srv.log()[-2000:]
    assert srv.log().count("closed at once") == 1, srv.log()[-3000:]


def _rss_kb(proc) -> int:
    with open(f"/proc/{proc.p.pid}/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))


ATTACK = textwrap.dedent('''
    import os, socket, sys, time
    host, port, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    socks, refused = [], 0
    t0 = time.monotonic()
    if what == "slowloris":           # 1,000 connections that never send the password, held 8 s
        for _ in range(1000):
            if time.monotonic() - t0 > 40:
                break
            try:
                s = socket.create_connection((host, port), timeout=2)
                s.setblocking(False)
                socks.append(s)
            except OSError:
                refused += 1
        time.sleep(8)
    elif what == "bigline":           # 1 MB lines without a line end, 20 connections: each cut off
        for _ in range(20):
            try:
                s = socket.create_connection((host, port), timeout=2)
                s.settimeout(2)
                s.sendall(b"x" * (1 << 20))
                s.recv(100)
            except OSError:
                refused += 1          # reset: cut off (or closed at once) before the megabyte was in
    print(what, len(socks), refused, round(time.monotonic() - t0, 1), flush=True)
''')


def test_attacks_on_the_exposed_port_do_not_stall_the_tunnel_or_grow_the_server(lab, procs):
    srv = _ours(lab, procs)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, client="client1"), f"mcli-{len(lab.procs)}")
    procs.append(cli)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 3) == 3
    lab.write("mgmt-attack.py", ATTACK)
    before = _rss_kb(srv)
    for what in ("slowloris", "bigline"):
        att = lab.start(lab.m2, [sys.executable, str(lab.tmp / "mgmt-attack.py"), MGMT_IP, str(MGMT_PORT), what],
                        f"attack-{what}")
        procs.append(att)
        time.sleep(1)
        # The tunnel passes traffic all along: 20 pings within the attack, none lost.
        assert lab.ping(lab.cli, TUN_SERVER_IP, 20, interval=0.2) == 20, what
        # A tool from the other source still gets in during the attack.
        ok = talk(lab, lab.m1, [[PASSWORD, "load-stats"]])
        assert ok[0]["replies"][0].startswith("SUCCESS: password is correct"), (what, ok)
        att.p.wait(90)
        made, cut, _secs = att.log().split()[1:4]
        if what == "slowloris":       # the flood happened: the kernel completed every connection
            assert int(made) == 1000, att.log()
        else:
            assert int(cut) == 20, att.log()
    guesses = talk(lab, lab.m2, [["x", "y", "z"] for _ in range(200)], timeout=180)
    assert sum(1 for r in guesses if r["prompt"]) <= 3, "the guessing loop was not throttled"
    assert lab.ping(lab.cli, TUN_SERVER_IP, 5) == 5
    after = _rss_kb(srv)
    print(f"management attacks: server RSS {before} -> {after} kB")
    assert after - before < 20 * 1024, (before, after)
    assert srv.alive()
    ok = talk(lab, lab.m1, [[PASSWORD, "status 2"]])
    assert "CLIENT_LIST,client1," in ok[0]["replies"][1], ok
