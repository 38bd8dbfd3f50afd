"""Config and start-up differences from OpenVPN 2.6.14 closed in one go (each checked against
Debian's /usr/sbin/openvpn with the same config): what 2.6 refuses is refused at file:line with its
words, what 2.6 takes is taken the way it takes it."""
from __future__ import annotations

import pytest

from appliance.openvpn.config import ConfigError, parse_config
from appliance.openvpn.config.model import DEFAULT_CIPHERS
from appliance.openvpn.settings import session_config
from appliance.openvpn.session import Role

PEM = "<ca>\nX\n</ca>\n<cert>\nX\n</cert>\n<key>\nX\n</key>\n"       # 9 lines
CLIENT = "client\ndev tun\nremote 198.18.0.1 1194\n" + PEM              # 12 lines
P2P = "dev tun\nremote 198.18.0.1 1194\nifconfig 10.9.0.2 10.9.0.1\ntls-client\n" + PEM   # 13 lines


def _parse(text: str, path: str = "/p/c.ovpn"):
    return parse_config(text, path, lambda p: b"X")


def _err(text: str, path: str = "/p/c.ovpn") -> str:
    with pytest.raises(ConfigError) as e:
        _parse(text, path)
    return str(e.value)


# ---- 3. `cipher X` (options.c options_postprocess_cipher)

def test_a_clients_cipher_is_not_added_to_data_ciphers_nor_a_fallback_and_2_6s_warning_says_so():
    o = _parse(CLIENT + "cipher AES-128-CBC\n")
    assert o.cipher == "AES-128-CBC" and o.data_ciphers == DEFAULT_CIPHERS
    assert o.data_ciphers_fallback is None
    assert session_config(o, Role.CLIENT).data_ciphers_fallback is None
    note = [n for n in o.notes if "DEPRECATED OPTION" in n]
    assert note == ["/p/c.ovpn:13: cipher: DEPRECATED OPTION: --cipher set to 'AES-128-CBC' but missing in "
                    "--data-ciphers (AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305). OpenVPN ignores --cipher "
                    "for cipher negotiations (as 2.6 says)"]


def test_a_cipher_already_in_data_ciphers_says_nothing_and_is_no_fallback():
    o = _parse(CLIENT + "data-ciphers AES-128-CBC:AES-256-GCM\ncipher AES-128-CBC\n")
    assert o.data_ciphers == ["AES-128-CBC", "AES-256-GCM"] and o.data_ciphers_fallback is None
    assert not [n for n in o.notes if "DEPRECATED" in n]


def test_a_servers_cipher_is_left_out_of_negotiation_too():
    o = _parse("dev tun\nserver 198.18.9.0 255.255.255.0\ndh none\n" + PEM + "cipher AES-256-CBC\n", "/p/s.conf")
    assert o.data_ciphers == DEFAULT_CIPHERS and session_config(o, Role.SERVER).data_ciphers_fallback is None
    assert any("DEPRECATED OPTION: --cipher set to 'AES-256-CBC'" in n for n in o.notes)


def test_data_ciphers_fallback_and_cipher_are_one_name_in_2_6_the_later_line_wins():
    o = _parse(CLIENT + "data-ciphers-fallback AES-256-CBC\ncipher AES-128-CBC\n")
    assert o.data_ciphers_fallback == "AES-128-CBC"
    o = _parse(CLIENT + "cipher AES-128-CBC\ndata-ciphers-fallback AES-256-CBC\n")
    assert o.data_ciphers_fallback == "AES-256-CBC"


def test_on_a_p2p_link_cipher_is_the_fallback_for_a_peer_that_does_not_negotiate():
    o = _parse(P2P + "cipher AES-128-CBC\n", "/p/b.ovpn")
    assert o.p2p and o.data_ciphers == DEFAULT_CIPHERS
    assert session_config(o, Role.CLIENT).data_ciphers_fallback == "AES-128-CBC"
    assert not [n for n in o.notes if "DEPRECATED" in n]


# ---- 6. command-line words of 256 characters or more (options.c parse_argv)

def test_a_command_line_word_of_256_characters_or_more_is_taken_whole_as_2_6_takes_it(tmp_path):
    from appliance.openvpn.config import load_command_line
    long = "x" * 300
    (tmp_path / "ca.crt").write_text("X")
    o = load_command_line(["--client", "--dev", "tun", "--remote", "198.18.0.1", "--ca", str(tmp_path / "ca.crt"),
                           "--setenv", "LONG", long, "--setenv", "QUOTED", '"\\' * 200, "--verb", "3"])
    assert o.setenv["LONG"] == long and o.setenv["QUOTED"] == '"\\' * 200


def test_a_config_file_named_on_the_command_line_keeps_a_files_limits(tmp_path):
    from appliance.openvpn.config import load_command_line
    conf = tmp_path / "c.conf"
    conf.write_text("setenv LONG " + "x" * 300 + "\n")
    with pytest.raises(ConfigError) as e:
        load_command_line(["--config", str(conf)])
    assert f"{conf}:1:" in str(e.value) and "too long" in str(e.value)


# ---- 7. a p2p peer's peer-info (ssl.c push_peer_info, init.c push_peer_info_detail)

def _p2p_peer_info(extra: str) -> list[str]:
    from types import SimpleNamespace

    from appliance.openvpn.p2p import _our_peer_info
    from appliance.openvpn.settings import p2p_session_config
    cfg = p2p_session_config(_parse(P2P + extra, "/p/b.ovpn"), "udp")
    return _our_peer_info(SimpleNamespace(cfg=cfg)).splitlines()


def test_a_p2p_peer_sends_2_6s_detail_1_only_even_with_setenv_gui_lines():
    # Debian's 2.6.14 p2p peers log each other's: IV_CIPHERS=... and IV_PROTO=746 (234 + its
    # dynamic tls-crypt bit); no version, platform, MTU, NCP, compression or GUI lines
    assert _p2p_peer_info("setenv IV_GUI_VER mygui\nsetenv UV_SITE b\n") == [
        "IV_CIPHERS=AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305", "IV_PROTO=234"]


def test_a_p2p_peer_with_push_peer_info_sends_2_6s_detail_3_without_a_clients_mtu_or_ncp():
    info = _p2p_peer_info("push-peer-info\nsetenv IV_GUI_VER mygui\nsetenv UV_SITE b\n")
    assert info[:5] == ["IV_VER=2.6.0", "IV_PLAT=linux", "IV_TCPNL=1",
                        "IV_CIPHERS=AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305", "IV_PROTO=234"]
    assert "IV_COMP_STUBv2=1" in info and "UV_SITE=b" in info and "IV_GUI_VER=mygui" in info
    assert any(x.startswith("IV_SSL=") for x in info) and any(x.startswith("IV_PLAT_VER=") for x in info)
    assert not [x for x in info if x.startswith(("IV_MTU=", "IV_NCP="))]


# ---- 2. `server` + `ifconfig-pool` without `nopool` (helper.c helper_client_server)

SERVER = "dev {dev}\nserver 198.19.0.0 255.255.255.0{flag}\ndh none\n" + PEM       # 12 lines


@pytest.mark.parametrize("dev", ["tun", "tap"])
def test_server_and_ifconfig_pool_without_nopool_is_refused_at_the_pool_line_in_2_6s_words(dev):
    # Debian's 2.6.14: "Options error: --server already defines an ifconfig-pool, so you can't
    # also specify --ifconfig-pool explicitly", exit 1
    text = SERVER.format(dev=dev, flag="") + "topology subnet\nifconfig-pool 198.19.0.10 198.19.0.20 255.255.255.0\n"
    e = _err(text, "/p/s.conf")
    assert e.startswith("/p/s.conf:14: ifconfig-pool: --server already defines an ifconfig-pool, so you can't "
                        "also specify --ifconfig-pool explicitly"), e


def test_with_nopool_the_ifconfig_pool_is_the_servers():
    from appliance.openvpn.serveraddressing import server_addressing
    o = _parse(SERVER.format(dev="tun", flag=" nopool") + "topology subnet\nifconfig-pool 198.19.0.10 198.19.0.20\n",
               "/p/s.conf")
    pool = server_addressing(o).make_pool()
    assert pool.size == 11 and pool.in_range("198.19.0.10") and not pool.in_range("198.19.0.21")


def test_a_tap_server_with_nopool_and_no_ifconfig_pool_has_no_pool():
    """helper.c: `server NET MASK nopool` with dev tap sets no ifconfig-pool (addresses come from
    ccd's ifconfig-push), still pushes route-gateway NET+1; ours built NET+2.. as without nopool."""
    from appliance.openvpn.layer2 import layer2_pool
    o = _parse(SERVER.format(dev="tap", flag=" nopool"), "/p/s.conf")
    assert layer2_pool(o, []) == (None, ["route-gateway 198.19.0.1"])
    o = _parse(SERVER.format(dev="tap", flag=" nopool") + "ifconfig-pool 198.19.0.10 198.19.0.20\n", "/p/s.conf")
    pool, push = layer2_pool(o, [])
    assert pool is not None and pool.size == 11 and push == ["route-gateway 198.19.0.1"]
    pool, _push = layer2_pool(_parse(SERVER.format(dev="tap", flag=""), "/p/s.conf"), [])
    assert pool is not None and pool.in_range("198.19.0.2") and pool.in_range("198.19.0.254")


# ---- 1. a config without `dev` (options.c options_postprocess_verify_ce: notnull(options->dev))

@pytest.mark.parametrize("text", [
    "client\nremote 198.18.0.1 1194\n" + PEM,
    "client\ndev-type tun\nremote 198.18.0.1 1194\n" + PEM,           # dev-type alone: 2.6 refuses too
    "remote 198.18.0.1 1194\nifconfig 10.9.0.2 10.9.0.1\ntls-client\n" + PEM,
])
def test_a_client_or_p2p_config_without_dev_is_refused_in_2_6s_words(text):
    # Debian's 2.6.14: "Options error: You must define TUN/TAP device (--dev)", exit 1
    e = _err(text)
    assert e.startswith("/p/c.ovpn: dev: You must define TUN/TAP device (--dev)"), e


def test_a_refused_dev_line_is_the_only_dev_error():
    e = _err("client\ndev null\nremote 198.18.0.1 1194\n" + PEM)
    assert e.startswith("/p/c.ovpn:2: dev: ") and "You must define" not in e, e


def test_a_command_line_without_dev_is_refused_too(tmp_path):
    from appliance.openvpn.config import load_command_line
    (tmp_path / "ca.crt").write_text("X")
    with pytest.raises(ConfigError) as e:
        load_command_line(["--client", "--remote", "198.18.0.1", "--ca", str(tmp_path / "ca.crt")])
    assert "<command line>: dev: You must define TUN/TAP device (--dev)" in str(e.value)
