"""A server written out in full instead of `server NET MASK` (OPNsense's p2p/net30 choice,
EdgeRouter/VyOS, older guides): `mode server` + `tls-server` + `ifconfig` + `ifconfig-pool` + its
own `route` and `push` lines, in topology subnet, net30 and p2p. Debian's 2.6 client gets the same
tunnel address and routes from our server as from Debian's 2.6 server with the same file (its
`ip addr` and `ip route` compared), and pings cross both ways. And `mode server` with no pool: the
client's address from its client-config-dir file only.

One lab for the module: each form runs Debian's server, then ours, with one Debian client each.
"""
from __future__ import annotations

import pytest

from lab.configs import _protection_lines
from lab.netns import BEHIND_IP, Lab

PUSH_BEHIND = f'push "route {BEHIND_IP.rsplit(".", 1)[0]}.0 255.255.255.0"\n'

# form -> (the written-out lines, the server's TUN address, what the first client gets)
FORMS = {
    "subnet": ("topology subnet\nifconfig 198.19.0.1 255.255.255.0\n"
               "ifconfig-pool 198.19.0.2 198.19.0.254 255.255.255.0\n"
               'push "route-gateway 198.19.0.1"\npush "topology subnet"\n', "198.19.0.1", "198.19.0.2"),
    "net30": ("ifconfig 198.19.0.1 198.19.0.2\nifconfig-pool 198.19.0.4 198.19.0.251\n"
              'route 198.19.0.0 255.255.255.0\npush "route 198.19.0.1"\n', "198.19.0.1", "198.19.0.6"),
    "p2p": ("topology p2p\nifconfig 198.19.0.1 198.19.0.2\nifconfig-pool 198.19.0.4 198.19.0.251\n"
            'route 198.19.0.0 255.255.255.0\npush "topology p2p"\n', "198.19.0.1", "198.19.0.4"),
    # no pool at all: the address comes from the client's ccd file only, as 2.6
    "ccd-only": ("topology subnet\nifconfig 198.19.0.1 255.255.255.0\nclient-config-dir {ccd}\n"
                 'push "topology subnet"\npush "route-gateway 198.19.0.1"\n', "198.19.0.1", "198.19.0.77"),
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("srvfull")) as lab:
        yield lab


def _server_conf(lab, form: str) -> str:
    pki = lab.pki
    ccd = lab.tmp / "ccd"
    ccd.mkdir(exist_ok=True)
    (ccd / "client1").write_text("ifconfig-push 198.19.0.77 255.255.255.0\n")
    return ("port 1194\nproto udp\ndev tun\nmode server\ntls-server\n" + FORMS[form][0].format(ccd=ccd) + PUSH_BEHIND
            + f"ca {pki.ca}\ncert {pki.server_cert}\nkey {pki.server_key}\ndh none\nkeepalive 5 30\nverb 3\n"
            "remote-cert-tls client\nexplicit-exit-notify 1\n" + _protection_lines(pki, "tls-crypt", True))


def _client_conf(lab) -> str:
    cert, key = lab.pki.clients["client1"]
    return ("client\ndev tun\nproto udp\nnobind\nremote-cert-tls server\nverb 3\nremote 198.18.0.1 1194 udp\n"
            f"ca {lab.pki.ca}\ncert {cert}\nkey {key}\n" + _protection_lines(lab.pki, "tls-crypt", False))


def _client_view(lab) -> tuple[list[str], list[str]]:
    """The client's tun0 addresses and its IPv4 routing table, as `ip` prints them."""
    addrs = [ln.strip() for ln in lab.cli.run("ip -4 -o addr show dev tun0").stdout.splitlines()]
    addrs = [" ".join(ln.split()[2:]).split(" valid_lft")[0] for ln in addrs]
    routes = sorted(ln.strip() for ln in lab.cli.run("ip -4 route show").stdout.splitlines())
    return addrs, routes


def _run(lab, form: str, ours: bool) -> tuple[list[str], list[str]]:
    conf = _server_conf(lab, form)
    name = f"{'our' if ours else 'deb'}srv-{form}"
    started = []
    try:
        srv = (lab.ours(lab.srv, conf, name, pattern=r"listening on UDP")
               if ours else lab.openvpn(lab.srv, conf, name))
        started.append(srv)
        cli = lab.openvpn(lab.cli, _client_conf(lab), f"debcli-{form}-{int(ours)}", wait=40)
        started.append(cli)
        view = _client_view(lab)
        server_ip, client_ip = FORMS[form][1], FORMS[form][2]
        assert lab.ping(lab.cli, server_ip, 2) == 2, f"{name}: the client cannot reach the server\n{srv.log()[-2000:]}"
        assert lab.ping(lab.srv, client_ip, 2) == 2, f"{name}: the server cannot reach the client\n{srv.log()[-2000:]}"
        return view
    finally:
        for p in reversed(started):
            p.stop(8)


@pytest.mark.parametrize("form", list(FORMS))
def test_written_out_server_gives_debians_client_what_debians_server_does(lab, form):
    theirs = _run(lab, form, ours=False)
    assert any(FORMS[form][2] in a for a in theirs[0]), theirs       # the expected first pool address
    mine = _run(lab, form, ours=True)
    assert mine == theirs, f"ours:   {mine}\nDebian: {theirs}"
