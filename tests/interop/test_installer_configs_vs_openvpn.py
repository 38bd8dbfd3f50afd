"""The server configs the most used installers write (PiVPN, angristan's and Nyr's openvpn-install,
kylemanna's docker-openvpn: tests/installer_configs.py) run unchanged in our server, and the
profile each hands out brings Debian's OpenVPN 2.6 client up through it, traffic both ways.

Unchanged but for what only the test host decides: PiVPN's `user openvpn`/`group openvpn` (an
account PiVPN creates) become nobody/nogroup, and every file lives in a 0755 directory nobody can
read, as the installers' /etc/openvpn is. What each installer's own lines bring is checked as the
user would see it: PiVPN's tls-crypt-v2-verify script (its metadata list) lets the client in,
angristan's IPv6 pool gives the client an IPv6 address that answers, docker-openvpn's server-side
`route` is in the server's routing table, Nyr's `local` is where the server listens. And OPNsense's
`compress migrate` both ways: our client with a legacy `comp-lzo no` behind Debian's server with
it, Debian's clients (with and without `comp-lzo no`) behind ours."""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest

from lab.netns import SRV_IP, TUN_SERVER_IP, Lab, readable_python_argv
from lab.tools import OUR_BIN
from tests.installer_configs import INSTALLERS, render


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("installers")) as lab:
        yield lab


@pytest.fixture
def files(request):
    """A directory `user nobody` can read (pytest's tmp is 0700), removed after the test."""
    d = Path(tempfile.mkdtemp(prefix="srvcfg30-"))
    d.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def _run(lab, files: Path, name: str):
    """Our server with the installer's config, then Debian's client with its profile: both up,
    ping and a transfer each way. Returns (server, client) still running."""
    r = render(INSTALLERS[name], files, host=SRV_IP, local=SRV_IP)
    for p in files.rglob("*"):
        p.chmod(0o755 if p.is_dir() or p.suffix == ".sh" or p.name.startswith("client-") else 0o644)
    text = r.server_text.replace("\nuser openvpn\ngroup openvpn\n", "\nuser nobody\ngroup nogroup\n")
    assert "\nuser nobody\n" in text
    r.server.write_text(text)
    # Run from its own directory, where its relative file names point (lab.ours would copy it).
    srv = lab.start(lab.srv, readable_python_argv([OUR_BIN, "run", str(r.server)]), f"{name}-srv")
    if not srv.wait_for(r"listening on (UDP|TCP)", lab.START_WAIT):
        srv.stop(5)
        raise AssertionError(f"{name}: our server did not start:\n{srv.log()[-2500:]}")
    cli = lab.openvpn(lab.cli, r.client_text, f"{name}-cli", wait=0)
    try:
        if not cli.wait_for("Initialization Sequence Completed", 30):
            raise AssertionError(f"{name}: Debian's client did not come up:\n{cli.log()[-2500:]}\n"
                                 f"--- our server:\n{srv.log()[-2500:]}")
        assert lab.ping(lab.cli, TUN_SERVER_IP, 3) == 3, srv.log()[-2000:]
        assert lab.tcp_transfer(lab.srv, TUN_SERVER_IP, lab.cli, 300_000) > 0, srv.log()[-2000:]
        rate, why = lab.tcp_transfer_why(lab.srv, TUN_SERVER_IP, lab.cli, 300_000, reverse=True)
        assert rate > 0, why + "\n" + lab.cli.run("ip -4 addr; ip -4 route").stdout + cli.log()[-1500:]
        assert "privileges dropped" in srv.log()
    except BaseException:
        _stop(cli, srv)           # the next test's server needs the port
        raise
    return srv, cli


def _stop(*procs) -> None:
    for p in procs:
        p.stop(5)


def test_pivpn(lab, files):
    srv, cli = _run(lab, files, "pivpn")
    try:
        # verify-x509-name; tls-crypt-v2 and its verify script (the metadata looked up in its list)
        assert "tls-crypt-v2 user metadata" in srv.log()
        assert re.search(r"VERIFY X509NAME OK: CN=pivpn-server", cli.log()), cli.log()[-1500:]
        # `pivpn -r` revokes by taking the key's metadata off the list its verify script reads:
        # the same profile is then refused before its TLS session.
        cli.stop(5)
        (files / "tc-v2-metadata.txt").write_text("")
        again = lab.openvpn(lab.cli, (files / "pivpn.ovpn").read_text(), "pivpn-cli-revoked", wait=0)
        try:
            assert srv.wait_for("tls-crypt-v2-verify refused the client's key", 15), srv.log()[-1500:]
            assert "Initialization Sequence Completed" not in again.log()
        finally:
            again.stop(5)
    finally:
        _stop(cli, srv)


def test_angristan(lab, files):
    srv, cli = _run(lab, files, "angristan")
    try:
        out = lab.cli.run("ip -6 -o addr show dev tun0").stdout
        m = re.search(r"inet6 (fd42:42:42:42::\S+)/112", out)
        assert m, out
        r = lab.cli.run("ping -6 -n -q -c 2 -i 0.2 -W 2 fd42:42:42:42::1", check=False)
        assert " 2 received" in r.stdout, r.stdout + srv.log()[-1500:]
        assert (files / "server.sock").exists()          # its management socket
    finally:
        _stop(cli, srv)


def test_nyr(lab, files):
    srv, cli = _run(lab, files, "nyr")
    try:
        ss = lab.srv.run("ss -Hlun 'sport = :1194'").stdout
        assert f"{SRV_IP}:1194" in ss, ss            # `local`: bound to that address only
    finally:
        _stop(cli, srv)


def test_docker_openvpn(lab, files):
    srv, cli = _run(lab, files, "docker-openvpn")
    try:
        routes = lab.srv.run("ip -4 route show dev tun0").stdout
        assert "198.19.254.0/24" in routes, routes
        # (its pushed `comp-lzo no`: every data packet carries the framing byte both ways, so the
        # traffic in _run went through only with both ends framing; its net30 topology: the
        # client's tun0 is a point-to-point pair)
        assert re.search(r"inet 198\.19\.0\.\d+ peer 198\.19\.0\.\d+/32",
                         lab.cli.run("ip -4 -o addr show dev tun0").stdout)
    finally:
        _stop(cli, srv)


def test_our_client_with_comp_lzo_no_behind_an_opnsense_compress_migrate_server(lab):
    """OPNsense's "migrate" compression writes `compress migrate`: Debian's server then pushes
    `compress stub-v2` (or `comp-lzo no`) to a client whose options string says `comp-lzo`, as
    2.6's does whenever its profile has `comp-lzo no` or `compress`, and nothing to the others.
    Our client with a legacy profile's `comp-lzo no` is told so and frames as pushed: traffic
    passes (without the word in its options string nothing came, it kept its 0xFA byte and the
    server read every packet one byte off)."""
    from lab.configs import client_profile, server_config
    srv = lab.openvpn(lab.srv, server_config(lab.pki, extra="compress migrate\n"), "migrate-srv")
    cli = lab.ours(lab.cli, client_profile(lab.pki, extra="comp-lzo no\n"), "migrate-cli", wait=30)
    try:
        assert "'compress migrate' detected remote peer with compression enabled" in srv.log(), srv.log()[-2000:]
        assert re.search(r"PUSH_REPLY,.*compress stub-v2", srv.log()), srv.log()[-2000:]
        assert lab.ping(lab.cli, TUN_SERVER_IP, 3) == 3, srv.log()[-2000:] + cli.log()[-2000:]
        assert lab.tcp_transfer(lab.srv, TUN_SERVER_IP, lab.cli, 300_000) > 0
    finally:
        _stop(cli, srv)


def test_our_server_with_compress_migrate_and_debians_clients(lab):
    """OPNsense's "migrate" choice in our server: Debian's client with a legacy `comp-lzo no` is
    pushed `compress stub-v2` (it announces IV_COMP_STUBv2) and traffic passes both ways; one
    without compression is pushed nothing about it and passes too."""
    from lab.configs import client_profile, server_config
    srv = lab.ours(lab.srv, server_config(lab.pki, extra="compress migrate\n"), "migrate-ours",
                   pattern=r"listening on UDP")
    try:
        for name, extra in (("legacy", "comp-lzo no\n"), ("plain", "")):
            cli = lab.openvpn(lab.cli, client_profile(lab.pki, extra=extra), f"migrate-{name}", wait=30)
            try:
                pushed = re.search(r"PUSH: Received control message: '([^']*)'", cli.log())
                assert pushed, cli.log()[-1500:]
                assert ("compress stub-v2" in pushed.group(1)) == (name == "legacy"), pushed.group(1)
                assert "comp-lzo" not in pushed.group(1)
                assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2, srv.log()[-1500:] + cli.log()[-1500:]
                assert lab.tcp_transfer(lab.srv, TUN_SERVER_IP, lab.cli, 200_000, reverse=True) > 0
            finally:
                cli.stop(5)
    finally:
        srv.stop(5)
