"""duplicate-cn off: a second connect under an established client's name that is then refused
for its address must not end the established session (README, batch50). OpenVPN 2.6.14 ends the
sessions of the name first thing at the newcomer's connect (multi.c multi_client_connect_early_
setup -> multi_delete_dup), and refuses nothing for an address after that: a ccd's
`ifconfig-push` of any address, its own included, is admitted there. Ours refuses an
`ifconfig-push` / `ifconfig-ipv6-push` of the server's own address (review49a), a refusal 2.6 does
not have -- so, as 2.6's refusals made before its kill (max-clients at the instance's creation),
it now comes before the end of the name's other sessions: a second holder of the certificate, or
an operator's slip in the file, no longer kicks the working user for a connect that fails."""
from __future__ import annotations

import logging

import pytest

from appliance.gateway.server_files import ccd_loader
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import SERVER_TUN, _up, ping_both_ways

SERVER6 = "fd00:77::1"


@pytest.mark.parametrize("line", [f"ifconfig-push {SERVER_TUN} 255.255.255.0", f"ifconfig-ipv6-push {SERVER6}/64"],
                         ids=["ipv4", "ipv6"])
def test_a_refused_second_connect_of_a_name_leaves_the_established_session(pki, tmp_path, caplog, line):
    w = World()
    w.add_server(server_conf(pki, "udp", extra="server-ipv6 fd00:77::/64\n"))
    d = tmp_path / "ccd"
    d.mkdir()
    ccd = d / "client0"
    ccd.write_text("push \"setenv-safe FIRST 1\"\n")
    w.server.st.ccd = ccd_loader(str(d))
    caplog.set_level(logging.INFO)
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30), "client0 did not come up"
    first = w.clients[0].conn
    addr = w.client_addr(0)
    ccd.write_text(line + "\n")             # the operator's slip, read at the next connect
    w.add_client(client_conf(pki, "client0"))      # the same certificate, from another address
    said = "is the server's own address"
    assert w.run(lambda: said in caplog.text, max_time=30), caplog.text[-3000:]
    w.run_for(3)
    assert not _up(w, 1), "the second connect was admitted"
    assert "another client connected with common name" not in caplog.text, caplog.text[-3000:]
    assert _up(w, 0) and w.clients[0].conn is first and w.client_addr(0) == addr, "the established client was ended"
    ping_both_ways(w, 0, tag=b"still-up", tries=3)


def test_an_admitted_second_connect_still_replaces_the_first(pki, tmp_path, caplog):
    """The control: the same second connect with a file that refuses nothing replaces the first
    session, as with 2.6 (duplicate-cn off)."""
    w = World()
    w.add_server(server_conf(pki, "udp"))
    caplog.set_level(logging.INFO)
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30), "client0 did not come up"
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 1) and "another client connected with common name" in caplog.text, max_time=30), \
        caplog.text[-3000:]
