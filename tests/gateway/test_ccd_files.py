"""client-config-dir files the server cannot use (gateway/server_files.py, openvpn/clientpush.py):
a file that does not parse or is a directory refuses that one client with the
file named in the log (a line OpenVPN 2.6 skips is skipped, with a warning: compat45) -- it was an internal error on every push request of that client, which
then hung in its handshake. Other clients get in."""
from __future__ import annotations

from appliance.gateway.server_files import ccd_loader
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up


def test_a_broken_ccd_file_refuses_its_client_and_no_other(pki, tmp_path, caplog):
    caplog.set_level("INFO")
    d = tmp_path / "ccd"
    d.mkdir()
    (d / "client0").mkdir()                               # a directory with the client's name
    (d / "client1").write_bytes(b"push \"route 10.9.0.0 255.255.0.0\"\n\xff\xfe\n")   # no directive at line 2
    (d / "client2").write_text("push \"route 10.9.0.0 255.255.0.0\"\nfrobnicate 1\n")  # unknown at line 2
    (d / "client3").write_text("push \"route 10.8.0.0 255.255.0.0\"\n")
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"client-config-dir {d}\n"))
    gw.st.ccd = ccd_loader(str(d))            # World reads no files; as server_files does at start
    for i in range(4):
        w.add_client(client_conf(pki, f"client{i}"))
    assert w.run(lambda: all(_up(w, i) for i in (1, 2, 3)), max_time=30)
    w.run_for(30)
    # client1's and client2's line 2 is no directive OpenVPN 2.6 knows: skipped with a warning
    # naming it, the client in with the rest of its file, as 2.6 does (compat45; refused before).
    assert [_up(w, i) for i in range(4)] == [False, True, True, True]
    assert "internal error" not in gw.faults.counts
    assert "10.8.0.0" in [r[0] for r in w.client_nets[3].pushed.routes]
    assert "10.9.0.0" in [r[0] for r in w.client_nets[2].pushed.routes]
    assert "client-config-dir file for 'client0': " in caplog.text and "cannot read it" in caplog.text
    for why in (f"{d / 'client1'}:2: \\xff\\xfe: skipped", f"{d / 'client2'}:2: frobnicate: skipped"):
        assert why in caplog.text, why
    assert sorted(r.common_name for r in gw.d.clients if r.session.established) == ["client1", "client2", "client3"]


def test_the_ccd_file_of_a_name_is_openvpns(tmp_path):
    """OpenVPN 2.6's file name for a client (platform_gen_path): `/` made `_`, `.` and `..`
    name no file, a leading dot is a file like any other."""
    for name, text in (("ops_dept", "push-reset\n"), (".hidden", "disable\n"), ("..x", "push-reset\n")):
        (tmp_path / name).write_text(text)
    load = ccd_loader(str(tmp_path))
    assert load("ops/dept").push_reset and load("..x").push_reset and load(".hidden").disable
    assert load("..") is None and load(".") is None and load("") is None and load("/") is None


def test_the_default_file_applies_to_clients_without_their_own(pki, tmp_path):
    """OpenVPN 2.6 reads client-config-dir/DEFAULT for a client without a file of its own; a
    DEFAULT saying `disable` lets only clients with their own file in (a common allow-list). Ours
    ignored DEFAULT: every client got in, with none of its options."""
    d = tmp_path / "ccd"
    d.mkdir()
    (d / "DEFAULT").write_text("disable\n")
    (d / "client0").write_text("push \"route 198.18.77.0 255.255.255.0\"\n")
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"client-config-dir {d}\n"))
    gw.st.ccd = ccd_loader(str(d))
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    w.run_for(20)
    assert [_up(w, i) for i in range(2)] == [True, False]
    assert sorted(r.common_name for r in gw.d.clients if r.session.established) == ["client0"]
    # Without `disable`, DEFAULT's options are the file-less client's.
    (d / "DEFAULT").write_text("push \"route 198.18.88.0 255.255.255.0\"\n")
    w.add_client(client_conf(pki, "client2"))
    assert w.run(lambda: _up(w, 2), max_time=30)
    assert "198.18.88.0" in [r[0] for r in w.client_nets[2].pushed.routes]
    assert "198.18.88.0" not in [r[0] for r in w.client_nets[0].pushed.routes]


def test_ccd_exclusive_counts_no_default_file(tmp_path):
    """ccd-exclusive wants a file of the client's own: DEFAULT does not count, and a client whose
    certificate says CN=DEFAULT is refused (OpenVPN 2.6: "--client-config-dir authentication
    failed"). It got in with the DEFAULT file as its own."""
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from appliance.certs import issue
    from tests.gateway.conftest import _kpem, _pem
    ca = issue("DEFAULT test CA", None, None)
    srv = issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)
    names = ["DEFAULT", "client1", "client2"]
    certs = {n: issue(n, ca, ExtendedKeyUsageOID.CLIENT_AUTH) for n in names}
    p = dict(ca=_pem(ca[0]), server=(_pem(srv[0]), _kpem(srv[1])),
             clients={n: (_pem(c), _kpem(k)) for n, (c, k) in certs.items()})
    d = tmp_path / "ccd"
    d.mkdir()
    (d / "DEFAULT").write_text("push \"route 198.18.88.0 255.255.255.0\"\n")
    (d / "client2").write_text("push \"route 198.18.77.0 255.255.255.0\"\n")
    w = World()
    gw = w.add_server(server_conf(p, extra=f"client-config-dir {d}\nccd-exclusive\n"))
    gw.st.ccd = ccd_loader(str(d))
    for n in names:
        w.add_client(client_conf(p, n))
    assert w.run(lambda: _up(w, 2), max_time=30)
    w.run_for(20)
    assert [_up(w, i) for i in range(3)] == [False, False, True]


LATIN1_OPTIONS = (b"# Caf\xe9 du coin (Latin-1)\n"
                  b"ifconfig-push 198.18.0.%d 255.255.255.0\n"
                  b"push \"setenv-safe MOTD caf\xe9\"\n")


def test_a_latin1_ccd_file_and_client_connect_output_are_pushed_as_their_bytes(pki, tmp_path, monkeypatch):
    """OpenVPN 2.6 reads a client-config-dir file and a client-connect script's options file as
    bytes: a Latin-1 comment changes nothing, a Latin-1 push goes out as its bytes. Ours refused
    the client of a ccd file that is not UTF-8, and pushed a script's `caf\\xe9` as
    `caf\\xef\\xbf\\xbd` (decoded with replacement). Our client now keeps a setenv-safe value's
    bytes for its scripts, as 2.6's (tests/unit/test_pushed_bytes.py): the file's byte end to end."""
    import stat

    from appliance.gateway import ops as ops_mod
    from appliance.gateway.scripts import ScriptRunner
    from appliance.openvpn.peernames import to_bytes
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    d = tmp_path / "ccd"
    d.mkdir()
    (d / "client0").write_bytes(LATIN1_OPTIONS % 70)
    out = tmp_path / "cc-options"
    out.write_bytes(LATIN1_OPTIONS % 71)
    cc = tmp_path / "cc.sh"
    cc.write_text(f'#!/bin/sh\n[ "$common_name" = client1 ] && cat {out} > "$1"\nexit 0\n')
    cc.chmod(cc.stat().st_mode | stat.S_IXUSR)
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"client-config-dir {d}\nscript-security 2\nclient-connect {cc}\n"))
    gw.st.ccd = ccd_loader(str(d))
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    for i in (0, 1):
        rec = next(r for r in gw.d.clients if r.common_name == f"client{i}")
        assert rec.vaddr == f"198.18.0.{70 + i}"
        assert b"setenv-safe MOTD caf\xe9" in [to_bytes(o) for o in rec.connect_opts], i
        assert to_bytes(w.client_nets[i].pushed.setenv_safe["OPENVPN_MOTD"]).startswith(b"caf\xe9"), i


def test_an_address_that_is_none_in_a_ccd_file_or_client_connect_output_refuses_its_client(pki, tmp_path, monkeypatch,
                                                                                          caplog):
    """ifconfig-push and iroute read as the file's bytes hold anything: `10.0.0.\\xe9` (Latin-1),
    a netmask with holes. They went unchecked to the push, where ipaddress raised: an
    internal error at each of the client's tries (a ccd file), a client left waiting for its push
    (a client-connect script's output). Now the line refuses its client, named with its file and
    line; the others get in."""
    import stat

    from appliance.gateway import ops as ops_mod
    from appliance.gateway.scripts import ScriptRunner
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    caplog.set_level("INFO")
    d = tmp_path / "ccd"
    d.mkdir()
    (d / "client0").write_bytes(b"push \"route 10.9.0.0 255.255.0.0\"\niroute 10.0.0.\xe9\n")
    (d / "client1").write_bytes(b"ifconfig-push 198.18.0.9 255.255.255.0\niroute 10.1.0.0 255.0.255.0\n")
    out = tmp_path / "cc-options"
    out.write_bytes(b"iroute 10.2.0.\xe9 255.255.255.0\n")
    cc = tmp_path / "cc.sh"
    cc.write_text(f'#!/bin/sh\n[ "$common_name" = client2 ] && cat {out} > "$1"\nexit 0\n')
    cc.chmod(cc.stat().st_mode | stat.S_IXUSR)
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"client-config-dir {d}\nscript-security 2\nclient-connect {cc}\n"))
    gw.st.ccd = ccd_loader(str(d))
    for i in range(4):
        w.add_client(client_conf(pki, f"client{i}"))
    assert w.run(lambda: _up(w, 3), max_time=30)
    w.run_for(30)
    assert [_up(w, i) for i in range(4)] == [False, False, False, True]
    assert "internal error" not in gw.faults.counts, gw.faults.counts
    for name, why in (("client0", f"{d / 'client0'}:2: iroute: "), ("client1", f"{d / 'client1'}:2: iroute: "),
                      ("client2", "<client-connect output>:1: iroute: ")):
        assert why in caplog.text, name


def test_a_ccd_file_counts_under_its_exact_name_on_a_case_blind_file_system(tmp_path, monkeypatch):
    """The VM reads client-config-dir from its FAT config volume, whose lookups ignore case: client
    `alice` (no file of her own) opened `Alice`'s -- her iroutes and address, and a pass through
    ccd-exclusive. (vfat cannot be mounted in the test host; its lookup is imitated here.)"""
    import os

    from appliance.gateway import server_files
    real = server_files.read_regular_file

    def case_blind(path, kind):
        d, n = os.path.split(path)
        for entry in os.listdir(d):
            if entry.lower() == n.lower():
                return real(os.path.join(d, entry), kind)
        return real(path, kind)
    monkeypatch.setattr(server_files, "read_regular_file", case_blind)
    (tmp_path / "Alice").write_text("iroute 198.18.90.0 255.255.255.0\n")
    load = ccd_loader(str(tmp_path))
    assert load("Alice").iroutes and load("alice") is None
    (tmp_path / "bob").write_text("push-reset\n")             # made after the listing was taken
    assert load("bob") is not None and load("BOB") is None


def test_a_push_before_push_reset_in_the_same_file_is_reset_too(pki, tmp_path):
    """OpenVPN 2.6 reads a ccd file line by line into the client's options: `push-reset` empties
    the push list as it is then (push.c push_reset), the file's own earlier `push` lines
    included; only the later ones go out (as this README says). Ours kept the earlier ones: a
    route the file meant to take back was pushed."""
    d = tmp_path / "ccd"
    d.mkdir()
    (d / "client0").write_text('push "route 198.18.55.0 255.255.255.0"\npush-remove "route 198.18.1"\n'
                               'push-reset\npush "topology subnet"\npush "route 198.18.66.0 255.255.255.0"\n')
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"client-config-dir {d}\n"))
    gw.st.ccd = ccd_loader(str(d))
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    routes = [r[0] for r in w.client_nets[0].pushed.routes]
    assert "198.18.66.0" in routes and "198.18.55.0" not in routes, routes
