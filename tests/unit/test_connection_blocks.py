"""<connection> blocks in a client profile, as OpenVPN 2.6 reads them (options.c, `connection`):
each block is one server to try, in order; it starts from the global settings as they stand at
its line and its own lines override them; it holds exactly one `remote`. Before, a profile with
them was refused at the first block. Against OpenVPN's client: tests/interop/test_connection_blocks_vs_openvpn.py."""
from __future__ import annotations

import pytest

from appliance.gateway import ClientGateway
from appliance.openvpn.config import ConfigError, Remote, parse_config
from lab.fakes import FakeClock, FakeTunnelNetwork, MemoryNet, MemoryPorts, MemoryWaiter

HEAD = "client\ndev tun\nca ca.crt\n"


def _parse(body: str):
    return parse_config(HEAD + body, "/mem/c.ovpn", read_file=lambda p: b"x")


def _error(body: str) -> str:
    with pytest.raises(ConfigError) as e:
        _parse(body)
    return str(e.value)


def test_each_block_is_a_remote_with_the_settings_at_its_line():
    o = _parse("proto tcp\nport 443\n"
               "<connection>\nremote a.example\n</connection>\n"
               "<connection>\nremote b.example 1194\nproto udp6\n</connection>\n"
               "<connection>\nremote c.example 8443 tcp4\nport 9\n</connection>\n"
               "<connection>\nrport 1195\nproto udp\nremote d.example\nnobind\nfloat\n</connection>\n")
    assert o.remotes == [Remote("a.example", 443, "tcp", None), Remote("b.example", 1194, "udp", "6"),
                         Remote("c.example", 8443, "tcp", "4"), Remote("d.example", 1195, "udp", "")]
    assert [o.family_of(r) for r in o.remotes] == [None, "6", "4", None]


def test_the_client_tries_them_in_order():
    o = _parse("<connection>\nremote 198.18.0.1 1194 udp\n</connection>\n<connection>\nremote 198.18.0.2 443 tcp\n"
               "</connection>\n")
    net = MemoryNet()
    gw = ClientGateway(o, MemoryPorts(net, "198.18.0.9"), FakeTunnelNetwork(net), FakeClock(), MemoryWaiter(net))
    assert [(r.host, r.port, r.proto) for r in gw.remotes] == [("198.18.0.1", 1194, "udp"), ("198.18.0.2", 443, "tcp")]


@pytest.mark.parametrize("body,where,words", [
    # OpenVPN 2.6 drops a remote line beside blocks without a word: refused here
    ("remote x.example\n<connection>\nremote a\n</connection>\n", "c.ovpn:4: remote:", "ignored by OpenVPN"),
    # and warns that connection options after a block are ignored: refused here
    ("<connection>\nremote a\n</connection>\nproto tcp\n", "c.ovpn:7: proto:", "after a <connection> block"),
    ("<connection>\nremote a\n</connection>\ntls-crypt k.key\n", "c.ovpn:7: tls-crypt:", "after a <connection> block"),
    ("<connection>\nremote a\n</connection>\nremote b\n", "c.ovpn:7: remote:", "after a <connection> block"),
    ("<connection>\nproto tcp\n</connection>\n", "c.ovpn:4: connection:", "exactly one `remote`"),
    ("<connection>\nremote a\nremote b\n</connection>\n", "c.ovpn:6: remote:", "exactly one"),
    ("<connection>\nremote a\nmssfix 1300\n</connection>\n", "c.ovpn:6: mssfix:", "not supported inside <connection>"),
    ("<connection>\nremote a 99999\n</connection>\n", "c.ovpn:5: remote:", "out of range"),
    ("<connection>\nremote a\nproto tcp-server\n</connection>\n", "c.ovpn:6: proto:", "client protocol"),
    ("<connection>\nremote a\nport x\n</connection>\n", "c.ovpn:6: port:", "expected a number"),
])
def test_what_openvpn_would_ignore_or_refuse_fails_at_its_line(body, where, words):
    msg = _error(body)
    assert where in msg and words in msg, msg


def test_a_server_config_refuses_a_block():
    conf = ("mode server\ntls-server\nserver 198.19.0.0 255.255.255.0\ndev tun\nca ca.crt\ncert s.crt\nkey s.key\n"
            "dh none\n<connection>\nremote a\n</connection>\n")
    with pytest.raises(ConfigError, match="c.conf:9: connection: a <connection> block is a client's"):
        parse_config(conf, "/mem/c.conf", read_file=lambda p: b"x")
