"""`capath DIR` against Debian's OpenVPN 2.6, ours beside Debian's with the same directory: the lab
CA and a CRL revoking client2, hashed by `openssl rehash` as a user would. A server with capath
(no `ca`) lets client1 in and refuses client2 ("certificate revoked"); our client with capath
instead of `ca` verifies Debian's server through the directory and comes up. An expired CRL there
refuses everyone, client1 too ("CRL has expired"), with both servers."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.openvpn.crl import make_crl
from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab
from lab.pki import ca_pair, client_serial
from lab.tools import OPENVPN

CLIENTS = ["client1", "client2"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=CLIENTS, tmp=tmp_path_factory.mktemp("capath")) as lab:
        yield lab


def _directory(lab, name: str, crl_days: int) -> Path:
    """The lab CA and a CRL revoking client2 (valid for `crl_days`; negative: expired), hashed."""
    d = lab.tmp / name
    d.mkdir()
    shutil.copy(lab.pki.ca, d / "ca.pem")
    (d / "crl.pem").write_bytes(make_crl(*ca_pair(lab.pki), [client_serial(lab.pki, "client2")], days=crl_days))
    subprocess.run(["openssl", "rehash", str(d)], check=True, capture_output=True)
    assert sorted(p.name.rsplit(".", 1)[1] for p in d.iterdir() if p.is_symlink()) == ["0", "r0"]
    return d


@pytest.fixture(scope="module")
def capath(lab):
    return _directory(lab, "capath", 30)


def _server(lab, cfg: str, server: str):
    if server == "openvpn":
        srv = lab.start(lab.srv, [OPENVPN, "--config", str(lab.write(f"ovcap-{len(lab.procs)}.conf", cfg))], "ovcap")
        assert srv.wait_for("Initialization Sequence Completed", 20), srv.log()[-2000:]
        assert "WARNING: experimental option --capath" in srv.log()
        return srv
    return lab.ours(lab.srv, cfg, f"capath-{len(lab.procs)}", pattern=r"listening on UDP")


def _with_capath(cfg: str, lab, capath) -> str:
    """The config with `capath DIR` where its `ca FILE` was."""
    out = cfg.replace(f"ca {lab.pki.ca}\n", f"capath {capath}\n")
    assert out != cfg
    return out


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_a_capath_server_admits_client1_and_refuses_the_revoked_client2(lab, capath, procs, server):
    srv = _server(lab, _with_capath(server_config(lab.pki), lab, capath), server)
    procs.append(srv)
    c2 = lab.openvpn(lab.cli, client_profile(lab.pki, client="client2"), f"capc2-{server}-{len(lab.procs)}", wait=0)
    procs.append(c2)
    assert srv.wait_for(r"certificate revoked", 20), \
        "\n".join(line for line in srv.log().splitlines() if "VERIFY" in line or "CRL" in line or "TLS" in line)
    assert not c2.wait_for("Initialization Sequence Completed", 2), "the revoked client got in"
    c2.stop(8)
    c1 = lab.openvpn(lab.cli, client_profile(lab.pki, client="client1"), f"capc1-{server}-{len(lab.procs)}", wait=30)
    procs.append(c1)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2
    c1.stop(8)


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_an_expired_crl_in_the_directory_refuses_everyone(lab, procs, server):
    d = _directory(lab, f"expired-{server}", -1)
    srv = _server(lab, _with_capath(server_config(lab.pki), lab, d), server)
    procs.append(srv)
    c1 = lab.openvpn(lab.cli, client_profile(lab.pki, client="client1"), f"capexp-{server}-{len(lab.procs)}", wait=0)
    procs.append(c1)
    assert srv.wait_for(r"CRL has expired", 20), srv.log()[-2000:]
    assert not c1.wait_for("Initialization Sequence Completed", 2), "a client got in past an expired CRL"


def test_our_client_with_capath_verifies_debians_server(lab, capath, procs):
    srv = lab.openvpn(lab.srv, server_config(lab.pki), "ovcapsrv")
    procs.append(srv)
    ours = lab.ours(lab.cli, _with_capath(client_profile(lab.pki, client="client1"), lab, capath), "ourscapcli",
                    wait=30)
    procs.append(ours)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2
