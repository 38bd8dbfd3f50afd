"""http-proxy against Debian's tinyproxy and OpenVPN 2.6, our client beside OpenVPN's own with the
same profile, and against a malicious proxy (tests/interop/hostile_http_proxy.py).

Topology: the proxy has a namespace of its own, between the client and OpenVPN's server
(tcp-server). The remote, 198.18.8.1, is the server's address on the proxy's side, which the
client's namespace has no route to: only a connection through the proxy can reach it (and
tinyproxy's log must show the CONNECT).

    [cli] 198.18.9.2 --- 198.18.9.1 [proxy: tinyproxy, hostile] 198.18.8.2 --- 198.18.8.1 [srv]

Both clients: with the right password they come up and ping; with a wrong one, or none, both are
refused (407) and both keep retrying (OpenVPN 2.6: SIGUSR1 "HTTP proxy error", a soft restart).
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from lab.configs import client_profile, server_config
from lab.netns import BEHIND_IP, Lab

UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}
# What each logs when the proxy ends an attempt.
PROXY_FAILED = {"ours": "HTTP proxy 198.18.9.1:3128 (for", "openvpn": "HTTP proxy error"}
SRV_PROXY_SIDE = "198.18.8.1"
PROXY_IP = "198.18.9.1"
PASSWORD = "Pr0xy-Interop-pw"
HOSTILE = Path(__file__).with_name("hostile_http_proxy.py")


def _tinyproxy_conf(lab: Lab, name: str, port: int, auth: bool) -> tuple[Path, Path]:
    log = lab.tmp / f"{name}.log"
    conf = lab.write(f"{name}.conf", "\n".join([
        f"Port {port}", f"Listen {PROXY_IP}", "Timeout 60", f'LogFile "{log}"', "LogLevel Info", "MaxClients 20",
        "Allow 198.18.9.0/24", "ConnectPort 1194", "DisableViaHeader Yes",
        *([f"BasicAuth alice {PASSWORD}"] if auth else [])]) + "\n")
    return conf, log


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tiny = shutil.which("tinyproxy")
    assert tiny, "tinyproxy is missing (make setup installs it: APT_PKGS)"
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        lab.proxy = lab.add_proxy_ns()          # PROXY_IP; the server SRV_PROXY_SIDE beyond it
        srv = lab.openvpn(lab.srv, server_config(lab.pki, "tcp"), "srv-hproxy")
        procs = []
        lab.tiny_log = {}
        for name, port, auth in (("tiny-auth", 3128, True), ("tiny-open", 3129, False)):
            conf, log = _tinyproxy_conf(lab, name, port, auth)
            p = lab.start(lab.proxy, [tiny, "-d", "-c", str(conf)], name)
            procs.append(p)
            lab.tiny_log[port] = log
        for port in (3128, 3129):
            end = time.monotonic() + 20
            while lab.proxy.run(f"ss -ltn 'sport = :{port}' | grep -q LISTEN", check=False).returncode:
                assert time.monotonic() < end, f"tinyproxy on {port} did not listen:\n{procs[0].log()}"
                time.sleep(0.1)
        yield lab
        for p in procs:
            p.stop()
        srv.stop()


def _connects(lab: Lab, port: int) -> int:
    try:
        return lab.tiny_log[port].read_text(errors="replace").count(f"CONNECT {SRV_PROXY_SIDE}:1194")
    except FileNotFoundError:
        return 0


def _profile(lab: Lab, proxy_lines: str, extra: str = "") -> str:
    return client_profile(lab.pki, "tcp-client", remotes=[(SRV_PROXY_SIDE, 1194, "tcp-client")],
                          extra="connect-retry 1 2\nserver-poll-timeout 8\n" + proxy_lines + extra)


def _start(lab: Lab, kind: str, profile: str, name: str):
    start = lab.ours if kind == "ours" else lab.openvpn
    return start(lab.cli, profile, f"{name}-{kind}", wait=0)


@pytest.mark.parametrize("creds", ["file", "inline"])
@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_both_come_up_through_tinyproxy_with_basic_auth(lab, procs, kind, creds):
    upfile = lab.write("proxy-up.txt", f"alice\n{PASSWORD}\n")
    lines = (f"http-proxy {PROXY_IP} 3128 {upfile} basic\n" if creds == "file" else
             f'http-proxy {PROXY_IP} 3128 "" basic\n<http-proxy-user-pass>\nalice\n{PASSWORD}\n</http-proxy-user-pass>\n')
    before = _connects(lab, 3128)
    cli = _start(lab, kind, _profile(lab, lines), f"hp-up-{creds}")
    procs.append(cli)
    assert cli.wait_count(UP[kind], 1, timeout=40), cli.log()[-3000:]
    assert lab.wait_ping(lab.cli, BEHIND_IP), f"{kind}: no traffic through the tunnel"
    assert _connects(lab, 3128) > before, "tinyproxy's log shows no CONNECT: the connection did not go through it"
    log = cli.log()
    assert PASSWORD not in log and "UHIweHktSW50ZXJvcC1wdw" not in log       # nor its base64
    if kind == "ours":
        assert f"through HTTP proxy {PROXY_IP}:3128" in log and f"CONNECT {SRV_PROXY_SIDE}:1194 accepted" in log
    cli.stop()


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_both_come_up_through_a_proxy_without_auth(lab, procs, kind):
    before = _connects(lab, 3129)
    cli = _start(lab, kind, _profile(lab, f"http-proxy {PROXY_IP} 3129\nhttp-proxy-option VERSION 1.1\n"
                                     "http-proxy-option AGENT interop-agent\n"), "hp-open")
    procs.append(cli)
    assert cli.wait_count(UP[kind], 1, timeout=40), cli.log()[-3000:]
    assert lab.wait_ping(lab.cli, BEHIND_IP)
    assert _connects(lab, 3129) > before
    cli.stop()


@pytest.mark.parametrize("case", ["wrong-password", "no-credentials"])
@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_refused_by_the_proxy_both_keep_retrying(lab, procs, kind, case):
    """407 from tinyproxy: both clients end the attempt and restart (neither exits), as OpenVPN 2.6's
    proxy.c does with basic auth (a second 407 is "HTTP proxy error", SIGUSR1)."""
    if case == "wrong-password":
        bad = lab.write("proxy-bad.txt", "alice\nnot-the-password\n")
        lines = f"http-proxy {PROXY_IP} 3128 {bad}\n"
    else:
        lines = f"http-proxy {PROXY_IP} 3128\n"
    before = _connects(lab, 3128)
    cli = _start(lab, kind, _profile(lab, lines), f"hp-{case}")
    procs.append(cli)
    assert cli.wait_count(PROXY_FAILED[kind], 3, timeout=40), cli.log()[-3000:]
    log = cli.log()
    assert cli.alive(), f"{kind} exited:\n{log[-3000:]}"
    assert UP[kind] not in log
    assert _connects(lab, 3128) >= before + 3
    if kind == "ours":
        # tinyproxy 1.11 answers a request without credentials 407, and wrong ones 401 (both
        # "bad status" for OpenVPN 2.6 too).
        words = "401 Unauthorized', not 200" if case == "wrong-password" else "no credentials are configured"
        assert words in log, log[-3000:]
    assert "not-the-password" not in log
    said = [ln for ln in log.splitlines() if "proxy" in ln.lower() and "connecting" not in ln][:4]
    print(f"\n{kind} {case}: {log.count(PROXY_FAILED[kind])} attempts refused, still retrying:\n  " + "\n  ".join(said))
    cli.stop()


# ------------------------------------------------------------------ a malicious proxy, against our client
def _hostile(lab: Lab, port: int, *modes: str):
    return lab.start(lab.proxy, [sys.executable, str(HOSTILE), PROXY_IP, str(port), SRV_PROXY_SIDE, "1194", *modes],
                     f"hostile-{port}")


def test_our_client_survives_a_hostile_proxy_and_comes_up_when_it_relays(lab, procs):
    modes = ["slow", "endless", "garbage", "407", "502", "close", "half", "glued"]
    hp = _hostile(lab, 8080, *modes)
    procs.append(hp)
    assert hp.wait_for("listening", 20), hp.log()
    profile = client_profile(lab.pki, "tcp-client", remotes=[(SRV_PROXY_SIDE, 1194, "tcp-client")],
                             extra=f"connect-retry 1 1\nserver-poll-timeout 4\nhttp-proxy {PROXY_IP} 8080\n")
    cli = lab.ours(lab.cli, profile, "hp-hostile", wait=0)
    procs.append(cli)
    assert cli.wait_count("tunnel up", 1, timeout=90), cli.log()[-4000:] + hp.log()[-2000:]
    assert lab.wait_ping(lab.cli, BEHIND_IP)
    log = cli.log()
    failures = [ln for ln in log.splitlines() if f"HTTP proxy {PROXY_IP}:8080 (for" in ln]
    expected = ["no complete answer to CONNECT within 4 s", "header longer than 8192 bytes", "not an HTTP answer",
                "requires authentication", "not 200", "closed by peer before its answer ended",
                "closed by peer before its answer ended"]
    assert len(failures) == len(expected), "\n".join(failures)
    for line, words in zip(failures, expected):
        assert words in line, (line, words)
    assert "\x1b" not in log                                  # the proxy's escape sequence, escaped
    assert hp.log().count("request b'CONNECT 198.18.8.1:1194 HTTP/1.0") == len(modes)
    print("hostile proxy: " + "; ".join(f.split(": ", 1)[-1][:60] for f in failures))


def test_a_silent_proxy_does_not_block_a_stop(lab, procs):
    hp = _hostile(lab, 8081, "silent")
    procs.append(hp)
    assert hp.wait_for("listening", 20)
    profile = client_profile(lab.pki, "tcp-client", remotes=[(SRV_PROXY_SIDE, 1194, "tcp-client")],
                             extra=f"server-poll-timeout 120\nhttp-proxy {PROXY_IP} 8081\n")
    cli = lab.ours(lab.cli, profile, "hp-silent", wait=0)
    procs.append(cli)
    assert hp.wait_for("conn 0 silent: request", 30), cli.log()
    time.sleep(1)
    # The client would wait for the proxy's answer until server-poll-timeout (120 s): an exit
    # within a quarter of that did not wait for it. The 5 s bound this had came close to failing
    # under CI's load, with nothing waiting on the proxy.
    t0 = time.monotonic()
    os.killpg(cli.p.pid, signal.SIGTERM)
    assert cli.exit_within(30) is not None, "SIGTERM while the proxy is silent: the client did not stop"
    assert time.monotonic() - t0 < 30


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_a_refusing_proxy_then_the_second_connection_without_proxy(lab, procs, kind):
    hp = _hostile(lab, 8082 if kind == "ours" else 8083, "407")
    procs.append(hp)
    assert hp.wait_for("listening", 20)
    port = 8082 if kind == "ours" else 8083
    base = client_profile(lab.pki, "tcp-client")
    profile = "".join(ln for ln in base.splitlines(keepends=True) if not ln.startswith("remote ")) + (
        "connect-retry 1 1\nserver-poll-timeout 5\n"
        f"<connection>\nremote {SRV_PROXY_SIDE} 1194 tcp-client\nhttp-proxy {PROXY_IP} {port}\n</connection>\n"
        "<connection>\nremote 198.18.0.1 1194 tcp-client\n</connection>\n")
    cli = _start(lab, kind, profile, "hp-second")
    procs.append(cli)
    assert cli.wait_count(UP[kind], 1, timeout=40), cli.log()[-3000:]
    assert lab.wait_ping(lab.cli, BEHIND_IP)
    assert "conn 0 407: request" in hp.log(), f"{kind} did not try the proxy first"
    cli.stop()


def test_a_header_that_never_ends(lab, procs):
    """A proxy that says 200 and then trickles header bytes for ever (a byte every 0.3 s). Ours
    gives up at server-poll-timeout and comes up on the next connection. Debian's OpenVPN 2.6.14
    does not: proxy.c reads that header line with a select() timeout that starts again at each
    byte, and the lines after it with 2 s per line, so it waits as long as the proxy trickles
    (seen: still on its first attempt after 30 s with server-poll-timeout 4; with header lines
    sent without pause, the same). Ours only: the Debian case ran here 15 s asserting nothing,
    a record of the above (helper trim44a removed it; `hostile_http_proxy.py 198.18.9.1 PORT
    198.18.8.1 1194 slow ok` in the lab's proxy namespace shows it again)."""
    hp = _hostile(lab, 8084, "slow", "ok")
    procs.append(hp)
    assert hp.wait_for("listening", 20)
    profile = client_profile(lab.pki, "tcp-client", remotes=[(SRV_PROXY_SIDE, 1194, "tcp-client")],
                             extra=f"connect-retry 1 1\nserver-poll-timeout 4\nhttp-proxy {PROXY_IP} 8084\n")
    cli = _start(lab, "ours", profile, "hp-trickle")
    procs.append(cli)
    up = cli.wait_count(UP["ours"], 1, timeout=15)
    attempts = hp.log().count("request b'CONNECT")
    assert up and attempts == 2, cli.log()[-3000:]
    assert "no complete answer to CONNECT within 4 s" in cli.log()
    cli.stop()
