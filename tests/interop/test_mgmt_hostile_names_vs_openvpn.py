"""A client whose certificate's common name holds a blank or a quote can still be killed by name
over the management interface, as with OpenVPN 2.6, whose command words are its config syntax
(parse_line: "..." quotes). Ours split the line on blanks, so `kill "evil guy"` looked for
`"evil` and the client could not be named at all. Debian's OpenVPN 2.6 client, in namespaces,
against OpenVPN 2.6's server and ours (the same config)."""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab
from lab.pki import add_cert
from tests.interop.test_ops_vs_openvpn import Mgmt

NAMES = {"blank": ("/CN=evil guy", '"evil guy"', "evil guy"),
         "quote": ('/CN=say "hi"', r'"say \"hi\""', 'say "hi"')}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("mgmtnames")) as lab:
        for cert, (subject, _arg, _cn) in NAMES.items():
            add_cert(lab.pki, cert, subject)
        yield lab


@pytest.mark.parametrize("cert", sorted(NAMES))
@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_kill_names_a_client_whose_name_has_a_blank_or_quote(lab, procs, server, cert):
    _subject, arg, cn = NAMES[cert]
    sock = str(lab.tmp / f"m-{server}-{cert}.sock")
    cfg = server_config(lab.pki) + f"management {sock} unix\n"
    procs.append(lab.udp_server(server, cfg, f"mnsrv-{len(lab.procs)}"))
    m = Mgmt(sock)
    m.lines(0.3)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client=cert), f"mncli-{len(lab.procs)}")
    procs.append(cli)
    try:
        assert m.cmd(f"kill {arg}", 2) == [f"SUCCESS: common name '{cn}' found, 1 client(s) killed"]
    finally:
        m.s.close()
    assert cli.wait_for("SIGUSR1|SIGTERM|restart", 15), cli.log()[-1500:]
