"""management-up-down and the down-root command on the client (gateway/updown.py), on in-memory
ports: >UPDOWN:UP once the tunnel is up (before >STATE:CONNECTED), with the up environment (the
server chain's X509_*/tls_* variables, the pushed address and route, dev, ...), >UPDOWN:DOWN at
the end before EXITING; the down-root helper (host/down_root.py, forked here as in cli.py) runs
its command at the end with the UP environment, and not at all when no tunnel was ever up.
tests/interop/test_down_root_vs_openvpn.py compares the same with Debian's client."""
from __future__ import annotations

import os

from appliance.host.down_root import DownRoot
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_client_mgmt import ROUTE, Tap


def _recorder(tmp_path):
    out = tmp_path / "ran"
    script = tmp_path / "down.sh"
    script.write_text(f'#!/bin/sh\n{{ for a in "$@"; do echo "arg=$a"; done; env; }} > {out}.tmp && mv {out}.tmp {out}\n')
    script.chmod(0o755)
    return script, out


def _client(pki, tmp_path, extra: str):
    w = World()
    w.add_server(server_conf(pki, extra=ROUTE))
    c = w.add_client(client_conf(pki, extra=f"management {tmp_path}/c.sock unix\n" + extra))
    tap = Tap()
    c.mgmt.mgr.conns.append(tap)
    tap.state_on = True
    return w, c, tap


def _block(got: list[str], kind: str) -> dict[str, str]:
    i = got.index(f">UPDOWN:{kind}")
    end = got.index(">UPDOWN:ENV,END", i)
    return dict(x[len(">UPDOWN:ENV,"):].split("=", 1) for x in got[i + 1:end])


def test_updown_lines_carry_the_up_environment(pki, tmp_path):
    w, c, tap = _client(pki, tmp_path, "management-up-down\nsetenv FOO bar\n")
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=20)
    w.run_for(1)
    up = _block(tap.got, "UP")
    assert tap.got.index(">UPDOWN:UP") < next(i for i, x in enumerate(tap.got) if ",CONNECTED," in x)
    assert up["X509_0_CN"] == "server" and up["tls_id_0"] == "CN=server" and "tls_digest_sha256_1" in up
    assert up["common_name"] == "server" and up["dev_type"] == "tun" and up["script_context"] == "init"
    assert up["ifconfig_local"] == w.client_addr() and up["redirect_gateway"] == "0"
    assert up["route_network_1"] and up["route_gateway_1"] == up["route_vpn_gateway"]
    assert up["FOO"] == "bar" and up["verb"] and up["proto_1"] == "udp"
    assert "script_type" not in up and "signal" not in up          # as 2.6's: no up script set them
    assert ">UPDOWN:DOWN" not in tap.got
    c._cleanup()
    assert _block(tap.got, "DOWN") == up
    assert tap.got.index(">UPDOWN:DOWN") < next(i for i, x in enumerate(tap.got) if ",EXITING," in x)


def test_without_the_directive_no_updown_lines(pki, tmp_path):
    w, c, tap = _client(pki, tmp_path, "")
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=20)
    c._cleanup()
    assert not [x for x in tap.got if x.startswith(">UPDOWN")]


def test_down_root_runs_at_the_end_with_the_up_environment(pki, tmp_path):
    script, out = _recorder(tmp_path)
    w, c, tap = _client(pki, tmp_path, f"plugin openvpn-plugin-down-root.so \"{script} a 'b c'\"\n")
    c.updown.helper = DownRoot(list(c.opts.down_root))
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=20)
    assert not out.exists()
    c._cleanup()
    assert c.updown.helper is None
    lines = out.read_text().splitlines()
    assert lines[:2] == ["arg=a", "arg=b c"]
    env = dict(x.split("=", 1) for x in lines[2:] if "=" in x)
    assert env["X509_0_CN"] == "server" and env["ifconfig_local"] == w.client_addr()
    assert "redirect_gateway" not in env and "PATH" not in env      # the UP call's set, nothing else


def test_down_root_runs_nothing_without_a_tunnel(pki, tmp_path):
    script, out = _recorder(tmp_path)
    w = World()
    c = w.add_client(client_conf(pki, extra=f"plugin openvpn-plugin-down-root.so {script}\n"))
    c.updown.helper = helper = DownRoot(list(c.opts.down_root))
    w.run_for(2)                                   # no server: never up
    c._cleanup()
    assert not out.exists()
    assert not os.path.exists(f"/proc/{helper.pid}")


class _Mgr:
    """What ops.up_down needs of the server's Management: notify() to its clients."""

    def __init__(self) -> None:
        self.got: list[str] = []

    def notify(self, lines: list[str], flag: str | None = None) -> None:
        self.got += lines

    def notify_env(self, block) -> None:
        self.notify(block.lines(0))

    def close(self) -> None:
        pass


def test_server_down_root_and_updown_down_at_its_end(pki, tmp_path):
    script, out = _recorder(tmp_path)
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"management {tmp_path}/s.sock unix\nmanagement-up-down\n"
                                             f"setenv SITE x\nplugin openvpn-plugin-down-root.so \"{script} s\"\n"))
    gw.down_root = DownRoot(list(gw.opts.down_root), frozenset(gw.opts.setenv))
    gw.ops.mgmt = mgr = _Mgr()
    w.run_for(1)
    gw.ops.up_down("UP")
    up = _block(mgr.got, "UP")
    assert up["dev_type"] == "tun" and up["ifconfig_local"] == "198.19.0.1" and up["redirect_gateway"] == "0"
    # Newest first, the setenv and settings variables last in the order they were set (OpenVPN's
    # connection set inherits the process's one variable at a time).
    assert list(up)[:2] == ["redirect_gateway", "dev_type"]
    assert list(up)[-10:] == ["SITE", "config", "verb", "daemon", "daemon_log_redirect", "daemon_start_time",
                              "daemon_pid", "proto_1", "local_port_1", "remote_port_1"]
    assert not out.exists()
    gw._cleanup()
    assert _block(mgr.got, "DOWN") == up
    lines = out.read_text().splitlines()
    assert lines[0] == "arg=s"
    env = dict(x.split("=", 1) for x in lines[1:] if "=" in x)
    assert env["ifconfig_local"] == "198.19.0.1" and env["SITE"] == "x" and "redirect_gateway" not in env
    assert gw.down_root is None
