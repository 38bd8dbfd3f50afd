"""Small differences from Debian's OpenVPN 2.6.14 that a 2.6 peer sees, each compared with what
Debian's own client (or server) does with the same lines, one lab:

- the compression lines of a client's peer-info (IV_LZO_STUB, IV_COMP_STUB, IV_COMP_STUBv2 ...)
  for no compression line, `comp-lzo no`, `compress`, `compress stub-v2`, `allow-compression
  no|asym`, as 2.6's server logs them (verb 4+);
- the options string (OCC): the warnings a 2.6 peer logs at verb 7 about ours are the ones it logs
  about Debian's own peer with the same config (none where the configs agree), as a client to its
  server (tun udp tls-crypt, tap tcp tls-auth with a cipher line) and as a server to its client;
- a pushed `block-outside-dns`: an error naming [PUSH-OPTIONS]:N, the tunnel going on.
"""
from __future__ import annotations

import re

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab

UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}
CONNECTED = "Peer Connection Initiated with"
COMP_IV = re.compile(r"peer info: (IV_(?:LZ4|LZ4v2|LZO|LZO_STUB|COMP_STUB|COMP_STUBv2)=\S*)")
OCC_WARNING = re.compile(r"(WARNING: '[^']*' is (?:used inconsistently|present in \w+ config but missing).*)")
UNRECOGNIZED = re.compile(r"Unrecognized option or missing or extra parameter\(s\) in (\[PUSH-OPTIONS\]:\d+): "
                          r"block-outside-dns")
# The profile lines compared; `disable-dco` pins Debian's client to 2.6's non-DCO behaviour (with
# DCO it announces no compression at all), ours has no DCO.
PROFILES = {"none": "", "comp-lzo no": "comp-lzo no\n", "compress": "compress\n",
            "compress stub-v2": "compress stub-v2\n", "allow-compression no": "allow-compression no\n",
            "allow-compression asym": "allow-compression asym\n"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("seen-by-openvpn")) as lab:
        yield lab


def _client(lab, kind: str, profile: str, name: str):
    start = lab.ours if kind == "ours" else lab.openvpn
    return start(lab.cli, profile, f"{name}-{kind}", wait=0)


def _session_lines(srv, cli, after: int) -> str:
    """The server's log of one client's connection (from `after` to its "Peer Connection Initiated")."""
    assert srv.wait_for(CONNECTED, 30, after=after), cli.log()[-2000:] + "\n----\n" + srv.log()[after:][-2000:]
    text = srv.log()[after:]
    return text[:text.index(CONNECTED)]


def test_peer_info_options_string_and_pushed_block_outside_dns_as_openvpns_client(lab, procs):
    conf = (server_config(lab.pki, extra='push "block-outside-dns"\n').replace("verb 3", "verb 7"))
    srv = lab.openvpn(lab.srv, conf, "p31-srv")
    procs.append(srv)
    seen: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for name, lines in PROFILES.items():
        profile = client_profile(lab.pki, extra="disable-dco\n" + lines)
        for kind in ("openvpn", "ours"):
            at = len(srv.log())
            cli = _client(lab, kind, profile, f"pi-{name.replace(' ', '_')}")
            procs.append(cli)
            text = _session_lines(srv, cli, at)
            seen[name, kind] = COMP_IV.findall(text), OCC_WARNING.findall(text)
            if name == "none":
                # the push with block-outside-dns: both log it as unknown, at the same place, and go on
                assert cli.wait_for(UP[kind], 30), cli.log()[-3000:]
                where = UNRECOGNIZED.findall(cli.log())
                assert len(where) == 1, cli.log()[-3000:]
                seen["push", kind] = where, []
            cli.stop(8)
    for name in PROFILES:
        assert seen[name, "ours"] == seen[name, "openvpn"], (name, seen[name, "ours"], seen[name, "openvpn"])
    assert seen["push", "ours"] == seen["push", "openvpn"]
    # what 2.6 sends (comp.c): the stubs whenever only stubs are advertised, the algorithms with asym
    assert seen["none", "ours"][0] == ["IV_LZO_STUB=1", "IV_COMP_STUB=1", "IV_COMP_STUBv2=1"]
    assert seen["allow-compression asym", "ours"][0][:3] == ["IV_LZ4=1", "IV_LZ4v2=1", "IV_LZO=1"]
    # the same config on both ends: no OCC warning (before: link-mtu, auth and keysize, ours 1549/256)
    assert seen["none", "ours"][1] == [] and seen["allow-compression no", "ours"][1] == []
    # a framing the server lacks: 2.6's comp-lzo warning about ours as about its own client
    assert any("'comp-lzo' is present in remote config" in w for w in seen["comp-lzo no", "ours"][1])
    srv.stop(8)


def test_options_string_of_a_tap_tcp_tls_auth_client_with_a_cipher_line(lab, procs):
    tail = "cipher AES-256-GCM\n"
    conf = (server_config(lab.pki, "tcp", protection="tls-auth", port=1195, extra=tail)
            .replace("dev tun", "dev tap").replace("topology subnet\n", "").replace("verb 3", "verb 7"))
    srv = lab.openvpn(lab.srv, conf, "p31-tap-srv")
    procs.append(srv)
    profile = (client_profile(lab.pki, "tcp", protection="tls-auth", remotes=[("198.18.0.1", 1195, "tcp")],
                              extra=tail).replace("dev tun", "dev tap"))
    warnings = {}
    for kind in ("openvpn", "ours"):
        at = len(srv.log())
        cli = _client(lab, kind, profile, "tap")
        procs.append(cli)
        text = _session_lines(srv, cli, at)
        assert "Expected Remote Options String (VER=V4): 'V4,dev-type tap,link-mtu 1583," in text, text[-3000:]
        warnings[kind] = OCC_WARNING.findall(text)
        cli.stop(8)
    assert warnings == {"openvpn": [], "ours": []}
    srv.stop(8)


def test_options_string_of_our_server_as_openvpns_client_expects_it(lab, procs):
    tail = "comp-lzo no\nfragment 1300\ncipher AES-128-GCM\n"
    srv = lab.ours(lab.srv, server_config(lab.pki, protection="tls-auth", port=1196, extra=tail), "p31-oursrv",
                   pattern=r"listening on UDP")
    procs.append(srv)
    profile = (client_profile(lab.pki, protection="tls-auth", remotes=[("198.18.0.1", 1196, "udp")], extra=tail)
               .replace("verb 3", "verb 7"))
    cli = lab.openvpn(lab.cli, profile, "p31-ovpncli")
    procs.append(cli)
    log = cli.log()
    assert ("Expected Remote Options String (VER=V4): 'V4,dev-type tun,link-mtu 1554,tun-mtu 1500,proto UDPv4,"
            "comp-lzo,mtu-dynamic,keydir 0,cipher AES-128-GCM,auth [null-digest],keysize 128,tls-auth,key-method 2,"
            "tls-server'") in log, log[-3000:]
    assert OCC_WARNING.findall(log) == [], log[-3000:]
    cli.stop(8)
    srv.stop(8)
