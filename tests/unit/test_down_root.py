"""The down-root plugin line (openvpn/config/plugins.py) and its root helper (host/down_root.py):
the line's words as OpenVPN 2.6 makes them, what is refused at its line, and the helper's checks
of what the (unprivileged, possibly compromised) main process sends it."""
from __future__ import annotations

import os
import time

import pytest

from appliance.host import down_root
from appliance.host.down_root import DownRoot, decode, encode
from appliance.openvpn.config import ConfigError, parse_config

BASE = "client\nremote 198.18.0.1\ndev tun\nca /etc/hostname\n"
DEBIAN = "/usr/lib/x86_64-linux-gnu/openvpn/plugins/openvpn-plugin-down-root.so"


@pytest.fixture
def script(tmp_path):
    s = tmp_path / "down.sh"
    out = tmp_path / "out"
    s.write_text(f'#!/bin/sh\n{{ echo "uid=$(id -u)"; for a in "$@"; do echo "arg=$a"; done; env; }} > {out}\n')
    s.chmod(0o755)
    return s


@pytest.mark.parametrize("path", [DEBIAN, "/usr/lib/openvpn/openvpn-plugin-down-root.so", "openvpn-plugin-down-root.so"])
def test_one_string_is_split_as_a_config_line(script, path):
    o = parse_config(BASE + f"plugin {path} \"{script} one 'two words' th\\\"ree\"\n")
    assert o.down_root == [(str(script), [str(script), "one", "two words", 'th"ree'])]


def test_several_words_are_taken_as_they_are(script):
    o = parse_config(BASE + f"plugin {DEBIAN} {script} 'a b' c\n")
    assert o.down_root == [(str(script), [str(script), "a b", "c"])]


def test_a_relative_program_is_the_config_directory_s(script):
    o = parse_config(BASE + f"plugin {DEBIAN} \"down.sh x\"\n", path=str(script.parent / "c.ovpn"))
    assert o.down_root == [(str(script), ["down.sh", "x"])]          # argv[0] as given, as execve's


@pytest.mark.parametrize("line, why", [
    (f"plugin {DEBIAN}", "needs the command"),
    (f"plugin {DEBIAN} /nonexistent/x", "no such file"),
    (f"plugin {DEBIAN} \"a 'b\"", "cannot split"),
    (f"plugin {DEBIAN} \"{' '.join(['/bin/true'] * 17)}\"", "too many parameters"),
    ("plugin /usr/lib/openvpn/openvpn-plugin-auth-pam.so login", "is a server directive"),
    ("plugin /x/evil-down-root.so /bin/true", "plugins are not supported"),
])
def test_refused_at_its_line(line, why):
    with pytest.raises(ConfigError, match=why) as e:
        parse_config(BASE + line + "\n", path="/p.ovpn")
    assert "/p.ovpn:5" in str(e.value)


def test_a_program_that_cannot_run_is_refused(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("x")
    f.chmod(0o644)
    with pytest.raises(ConfigError, match="not an executable file"):
        parse_config(BASE + f"plugin {DEBIAN} {f}\n")


def test_vm_image_refuses_it_and_no_scripts_skips_it(script, monkeypatch):
    line = BASE + f"plugin {DEBIAN} {script}\n"
    assert parse_config(line, ignore_scripts=True).down_root == []
    monkeypatch.setenv("VPN_APPLIANCE_NO_SCRIPTS", "1")
    with pytest.raises(ConfigError, match="VM image runs no scripts"):
        parse_config(line)


def test_a_server_takes_it_and_a_reload_cannot_change_it(script):
    from appliance.gateway.ops import RESTART_ONLY
    srv = ("port 1194\ndev tun\nserver 198.19.0.0 255.255.255.0\nca /etc/hostname\ncert /etc/hostname\n"
           "key /etc/hostname\ndh none\nmanagement /tmp/x.sock unix\nmanagement-up-down\n")
    o = parse_config(srv + f"plugin {DEBIAN} {script}\n")
    assert o.down_root == [(str(script), [str(script)])] and o.management_up_down
    assert "down_root" in RESTART_ONLY


# ---------------------------------------------------------------- the helper's checks
@pytest.mark.parametrize("env", [{"LD_PRELOAD": "/tmp/x.so"}, {"PATH": "/tmp"}, {"BASH_ENV": "/tmp/x"},
                                 {"IFS": "x"}, {"X509_": "x"}, {"dev": "tun0", "PYTHONPATH": "/tmp"},
                                 {"https_proxy": "http://198.18.6.6:3128"}, {"all_proxy": "socks5://x"},
                                 {"socks_proxy": "198.18.6.6:1080"}, {"grpc_proxy": "http://x"}, {"wss_proxy": "x"}])
def test_names_other_than_openvpns_are_refused(env):
    assert decode(encode(env), frozenset()) is None


def test_openvpns_names_and_the_configs_setenv_names_pass():
    assert decode(encode({"https_proxy": "http://p"}), frozenset({"https_proxy"})) is not None   # setenv'd
    env = {"dev": "tun0", "X509_0_CN": "a=b", "X509_1_emailAddress": "x", "tls_digest_sha256_0": "ab", "MY_VAR": "1"}
    got = decode(encode(env), frozenset({"MY_VAR"}))
    assert got == {k.encode(): v.encode() for k, v in env.items()}
    assert decode(encode({}), frozenset()) == {}


def test_a_nul_in_a_value_cannot_add_a_variable():
    """A value from the network (a pushed option, a certificate field) with a NUL in it must not
    become a second entry the helper would read as its own variable (`dev=eth0` for a root command)."""
    got = decode(encode({"foreign_option_1": "dhcp-option DOMAIN x\0dev=eth0", "dev": "tun0", "a=b": "c"}),
                 frozenset())
    assert got == {b"foreign_option_1": b"dhcp-option DOMAIN x_dev=eth0", b"dev": b"tun0"}


def test_bounds():
    assert decode(b"R" + b"a=" + b"x" * down_root.MAX_MESSAGE, frozenset()) is None
    assert decode(b"R" + b"\0".join([b"a=1"] * (down_root.MAX_VARS + 1)), frozenset()) is None
    assert decode(b"dev=tun0", frozenset()) is None                 # no RUN mark
    assert decode(b"R\xff=1", frozenset()) is None
    assert decode(b"R=x", frozenset()) is None and decode(b"Rdev", frozenset()) is None


def test_a_server_cannot_keep_the_command_from_running_by_a_big_environment(script, tmp_path, caplog):
    """1,024 pushed dhcp-options of ~250 bytes (what keymethod takes) made a message past
    MAX_MESSAGE, refused whole by the helper: the client's root down command did not run. Now
    what does not fit is left out (said), and what comes after it still goes (the settings)."""
    env = {"dev": "tun0", **{f"foreign_option_{i}": "dhcp-option DOMAIN " + "d" * 230 for i in range(1, 1025)},
           **{f"route_network_{i}": "198.19.0.0" for i in range(1, 5000)}, "config": "/etc/c.ovpn"}
    msg = encode(env)
    got = decode(msg, frozenset())
    assert got is not None and len(msg) <= down_root.MAX_MESSAGE and len(got) <= down_root.MAX_VARS
    assert got[b"dev"] == b"tun0" and got[b"config"] == b"/etc/c.ovpn"
    assert "left out of the command's environment" in caplog.text
    h = DownRoot([(str(script), ["down"])])
    try:
        assert h.run(env)
    finally:
        h.close()
    seen = dict(x.split("=", 1) for x in (tmp_path / "out").read_text().splitlines()[1:] if "=" in x)
    assert seen["dev"] == "tun0" and seen["config"] == "/etc/c.ovpn"


def test_runs_at_each_call_as_the_forking_user_with_exactly_that_environment(script, tmp_path):
    h = DownRoot([(str(script), ["down", "x"])])
    try:
        assert h.run({"dev": "tun0", "X509_0_CN": "srv"})
        lines = (tmp_path / "out").read_text().splitlines()
        assert lines[:2] == [f"uid={os.getuid()}", "arg=x"]
        env = dict(x.split("=", 1) for x in lines[2:])
        assert {k: env[k] for k in ("dev", "X509_0_CN")} == {"dev": "tun0", "X509_0_CN": "srv"}
        assert "PATH" not in env
        # Again at the next DOWN (a reconnect without persist-tun), with that call's environment.
        assert h.run({"dev": "tun1"})
        env = dict(x.split("=", 1) for x in (tmp_path / "out").read_text().splitlines()[2:])
        assert env["dev"] == "tun1" and "X509_0_CN" not in env
    finally:
        h.close()
    assert not os.path.exists(f"/proc/{h.pid}")


def test_a_refused_environment_runs_nothing_and_ends_the_helper(script, tmp_path):
    h = DownRoot([(str(script), ["down"])])
    assert not h.run({"LD_PRELOAD": "/tmp/evil.so"})
    h.close()
    assert not (tmp_path / "out").exists()


def test_the_main_process_going_ends_the_helper_without_running(script, tmp_path):
    h = DownRoot([(str(script), ["down"])])
    h.sock.close()                       # what the process's exit (or SIGKILL) does
    h.sock = None
    end = time.monotonic() + 5
    while os.path.exists(f"/proc/{h.pid}") and time.monotonic() < end:
        try:
            os.waitpid(h.pid, os.WNOHANG)
        except ChildProcessError:
            break
        time.sleep(0.02)
    assert not (tmp_path / "out").exists()


def test_a_failing_or_hanging_command_is_reported(tmp_path, monkeypatch):
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/sh\nexit 3\n")
    bad.chmod(0o755)
    h = DownRoot([(str(bad), ["bad"])])
    assert not h.run({})
    h.close()
    slow = tmp_path / "slow.sh"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    monkeypatch.setattr(down_root, "TIME_LIMIT", 0.3)          # (read by the forked child)
    h = DownRoot([(str(slow), ["slow"])])
    t = time.monotonic()
    assert not h.run({}, within=5)
    assert time.monotonic() - t < 3
    h.close()


def test_each_plugin_line_s_command_runs_though_an_earlier_one_failed(script, tmp_path):
    """OpenVPN 2.6's plugin_call calls every plugin at DOWN, whatever an earlier one returned (it
    counts the error): a second down-root line (the firewall's undoing after the DNS's) ran even
    when the first command failed. Ours stopped at the first failure, so the later root commands
    never ran."""
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/sh\nexit 3\n")
    bad.chmod(0o755)
    h = DownRoot([(str(bad), ["bad"]), (str(script), ["down", "second"])])
    try:
        assert not h.run({"dev": "tun0"})           # the call failed, as 2.6's
        assert "arg=second" in (tmp_path / "out").read_text()
    finally:
        h.close()


def test_the_main_process_waits_for_every_command_s_time_limit(tmp_path, monkeypatch):
    """The helper runs its commands one after the other, each up to TIME_LIMIT: the main process
    gave up after one command's limit (and ended the helper, so the end's DOWN ran nothing) while
    a second, still bounded, command ran."""
    h = DownRoot([("/bin/true", ["true"])] * 3)
    try:
        assert h.answer_within() >= 3 * down_root.TIME_LIMIT
        monkeypatch.setattr(down_root, "TIME_LIMIT", 1.0)
        assert 3.0 <= h.answer_within() < 3 * 30
    finally:
        h.close()


@pytest.mark.parametrize("dev", ["../../etc/cron.d/x", "tun0/../x", "-f", "..", ".", "a b", "tun:0", "x" * 16])
def test_a_dev_that_is_no_device_name_is_refused(dev):
    """The root helpers take the environment from the unprivileged process, so a compromised one
    chose `dev` freely: root scripts build paths and commands from it (update-resolv-conf's
    `resolvconf -a "${dev}.inet"`, `ip link set "$dev"`), and script_root checked the up's DEV
    word but not the variable the same script reads. Now a `dev` the kernel could not name a
    device (or one an `ip` command would read as an option) is refused as a forged name is."""
    assert decode(encode({"dev": dev, "script_type": "up"}), frozenset()) is None


@pytest.mark.parametrize("dev", ["tun0", "tap-vpn.1", "wg_0", "vpn+1", "x" * 15])
def test_device_names_pass(dev):
    assert decode(encode({"dev": dev}), frozenset()) == {b"dev": dev.encode()}
