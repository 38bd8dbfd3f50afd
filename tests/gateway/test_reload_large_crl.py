"""A reload with a large `crl-verify` file (gateway/ops.py, openvpn/crl.py): the CRL is read once,
and a large one by the CRL worker, the loop serving clients meanwhile; the new config applies
whole when the reading is in. At 100,000 entries the reload read the file twice on the loop
(check_key_material, then load_server_settings: ~0.35 s each, every client's packets waiting;
`python -m lab.crl_live --reload`)."""
from __future__ import annotations

import os

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue
from appliance.gateway import ops as ops_mod
from appliance.openvpn import crl as crl_mod
from appliance.openvpn.crl import make_crl
from tests.gateway.conftest import World, _kpem, _pem, client_conf, server_conf
from tests.gateway.test_tunnel import _up
from tests.unit.test_crl_background import HeldReader   # the CRL worker, its jobs run when the test says

FILLER = list(range(10**6, 10**6 + 3000))          # > READ_INLINE_MAX: a large file


@pytest.fixture(scope="module")
def pki() -> dict:
    """The gateway tests' PKI, with the CA's key (to sign CRLs) and the clients' serials."""
    ca = issue("Reload CRL CA", None, None)
    srv = issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)
    clients = {f"client{i}": issue(f"client{i}", ca, ExtendedKeyUsageOID.CLIENT_AUTH) for i in range(2)}
    return {"ca": _pem(ca[0]), "server": (_pem(srv[0]), _kpem(srv[1])), "ca_pair": ca,
            "clients": {n: (_pem(c), _kpem(k)) for n, (c, k) in clients.items()},
            "serials": {n: c.serial_number for n, (c, _) in clients.items()}}


def _write(path, ca, serials) -> None:
    path.with_suffix(".new").write_bytes(make_crl(*ca, FILLER + serials))
    os.replace(path.with_suffix(".new"), path)      # a new inode: seen as a change whatever the clock


def _setup(pki, tmp_path, monkeypatch, ca):
    crl = tmp_path / "crl.pem"
    _write(crl, ca, [])
    assert os.path.getsize(crl) > crl_mod.READ_INLINE_MAX
    reads = []
    real = crl_mod.read_crl_file
    monkeypatch.setattr(crl_mod, "read_crl_file", lambda *a: reads.append(a[0]) or real(*a))
    reader = HeldReader()
    monkeypatch.setattr(ops_mod, "background_reader", reader, raising=False)
    w = World()
    conf = server_conf(pki, extra=f"crl-verify {crl}\n")
    gw = w.add_server(conf)
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    return w, gw, crl, reader, reads, conf


def test_a_reload_reads_a_large_crl_once_in_the_worker_and_applies_whole_when_it_is_in(pki, tmp_path, monkeypatch):
    ca = pki["ca_pair"]
    w, gw, crl, reader, reads, conf = _setup(pki, tmp_path, monkeypatch, ca)
    recs = {r.common_name: r for r in gw.d.clients}
    _write(crl, ca, [pki["serials"]["client0"]])
    gw.ops.reload_source = lambda: conf + "push \"route 198.18.99.0 255.255.255.0\"\n"
    old_opts = gw.opts
    del reads[:]
    assert gw.ops.reload()
    assert reads == [] and len(reader.jobs) == 1, "the reload read the large CRL on the loop, not in the worker"
    # Meanwhile the loop runs on under the old config, whole: nothing of the new one applied.
    w.run_for(0.5)
    assert gw.opts is old_opts and recs["client0"].alive and recs["client1"].alive
    reader.finish()
    assert w.run(lambda: gw.opts is not old_opts, max_time=2), "the reload did not go on once its CRL was read"
    assert reads == [str(crl)], f"the CRL was read {len(reads)} times for one reload"
    assert not recs["client0"].alive, "a kept client the new CRL revokes was not disconnected"
    assert recs["client1"].alive
    assert any("198.18.99.0" in p for p in gw.st.push)


def test_a_reload_whose_large_crl_turns_out_to_be_another_cas_keeps_the_old_settings(pki, tmp_path, monkeypatch):
    ca = pki["ca_pair"]
    w, gw, crl, reader, reads, conf = _setup(pki, tmp_path, monkeypatch, ca)
    recs = {r.common_name: r for r in gw.d.clients}
    other = issue("Another CA", None, None)
    _write(crl, other, [pki["serials"]["client0"]])
    gw.ops.reload_source = lambda: conf + "push \"route 198.18.99.0 255.255.255.0\"\n"
    old_opts, old_st = gw.opts, gw.st
    assert gw.ops.reload() and len(reader.jobs) == 1
    reader.finish()
    w.run_for(0.5)
    assert gw.opts is old_opts and gw.st is old_st, "a reload refused for its CRL applied part of the new config"
    assert recs["client0"].alive and recs["client1"].alive


def test_a_reload_asked_for_while_one_reads_its_crl_follows_it(pki, tmp_path, monkeypatch):
    ca = pki["ca_pair"]
    w, gw, crl, reader, reads, conf = _setup(pki, tmp_path, monkeypatch, ca)
    confs = [conf, conf + "push \"route 198.18.99.0 255.255.255.0\"\n"]
    gw.ops.reload_source = lambda: confs.pop(0)
    assert gw.ops.reload() and len(reader.jobs) == 1
    assert gw.ops.reload() and len(reader.jobs) == 1, "two readings at once"
    reader.finish()
    assert w.run(lambda: len(reader.jobs) == 1, max_time=2), "the second reload did not follow the first"
    assert gw.ops.reloads == 1 and not confs
    reader.finish()
    assert w.run(lambda: gw.ops.reloads == 2, max_time=2), "the second reload was not applied"
    assert any("198.18.99.0" in p for p in gw.st.push)
    assert all(r.alive for r in gw.d.clients) and len(gw.d.clients) == 2


def test_the_start_reads_the_crl_once(pki, tmp_path, monkeypatch):
    """check_key_material (the start's checks) and the server's settings read the file once
    between them, not once each (~0.35 s a reading at 100,000 entries)."""
    from appliance.gateway.server_files import load_server_settings
    from appliance.openvpn.config import parse_config
    from appliance.openvpn.settings import check_key_material
    crl = tmp_path / "crl.pem"
    _write(crl, pki["ca_pair"], [pki["serials"]["client0"]])
    reads = []
    real = crl_mod.read_crl_file
    monkeypatch.setattr(crl_mod, "read_crl_file", lambda *a: reads.append(a[0]) or real(*a))
    opts = parse_config(server_conf(pki, extra=f"crl-verify {crl}\n"), str(tmp_path / "s.conf"))
    st = load_server_settings(opts, check_key_material(opts))
    assert reads == [str(crl)], f"the CRL was read {len(reads)} times at start"
    assert st.session_config(0).tls.crl.revoked(pki["ca_pair"][0]) is None
