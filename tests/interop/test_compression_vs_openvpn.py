"""Real compression (`compress lz4-v2`, `comp-lzo yes`) against Debian's OpenVPN 2.6, with the peer
told `allow-compression yes` so it really compresses toward us. We run such profiles as 2.6 does
by default: what the peer compressed is decompressed, what we send goes uncompressed in the same
framing. What a user checks: pings and TCP transfers of compressible data cross both ways with
every byte intact, and OpenVPN's own counters show that what it sent (or what its client sent)
was compressed on the wire -- so our decompressor, not a fallback, carried it.
"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab, until

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

NBYTES = 1_000_000        # lab.tcp_transfer's pattern (bytes 0..255 repeated): compresses well
BAD = ("Bad LZ4", "Bad LZO", "decompression error", "Bad compression")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("comp30")) as lab:
        yield lab


def _status_fields(path, first: str) -> dict[str, str]:
    """Debian's server status (status-version 2): the first CLIENT_LIST row, by its header."""
    head, row = None, None
    for line in path.read_text().splitlines() if path.exists() else []:
        f = line.split(",")
        if f[:2] == ["HEADER", first]:
            head = f[2:]
        elif f[0] == first and row is None:
            row = f[1:]
    return dict(zip(head or [], row or []))


def _client_stats(path) -> dict[str, int]:
    """Debian's client status file: `name,number` lines (pre-/post-compress bytes among them)."""
    out = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        name, _, value = line.rpartition(",")
        if value.isdigit():
            out[name] = int(value)
    return out


def _traffic_both_ways(lab, srv, cli) -> None:
    why = lambda: cli.log()[-2500:] + "\n----\n" + srv.log()[-2500:]   # noqa: E731
    # 1200-byte pings of 0xff: the echo reply comes back compressed from a compressing peer
    r = lab.cli.run(f"ping -n -q -c 4 -i 0.2 -W 2 -s 1200 -p ff {TUN_SERVER_IP}", check=False, timeout=20)
    assert " 4 received" in r.stdout, r.stdout + why()
    for reverse in (False, True):
        rate, fail = lab.tcp_transfer_why(lab.srv, TUN_SERVER_IP, lab.cli, NBYTES, reverse=reverse)
        assert rate > 0, f"reverse={reverse}: {fail}\n{why()}"
    for p in (srv, cli):
        assert not any(b in p.log() for b in BAD), why()
    assert "does not decompress" not in cli.log() + srv.log(), why()


@pytest.mark.parametrize("comp", ["compress lz4-v2", "comp-lzo yes"])
def test_openvpn_server_compressing_to_our_client(lab, procs, comp):
    status = lab.tmp / f"srv-status-{comp.split()[-1]}.txt"
    conf = server_config(lab.pki, extra=f"{comp}\nallow-compression yes\nstatus {status} 1\nstatus-version 2\n"
                                        "verb 4\n")       # verb 4: the server logs each client's peer info
    srv = lab.openvpn(lab.srv, conf, f"cz-srv-{comp.split()[0]}")
    procs.append(srv)
    cli = lab.ours(lab.cli, client_profile(lab.pki, extra=f"{comp}\n"), f"cz-ours-{comp.split()[0]}")
    procs.append(cli)
    _traffic_both_ways(lab, srv, cli)
    # we announce what 2.6's client announces with this profile line (comp.c)
    for iv in ("IV_LZ4=1", "IV_LZ4v2=1", "IV_LZO=1", "IV_COMP_STUB=1", "IV_COMP_STUBv2=1"):
        assert f"peer info: {iv}" in srv.log(), srv.log()[-3000:]
    # Link bytes the server sent us: far fewer than the megabyte it carried to us (compressed),
    # while what it received (our megabyte, uncompressed as 2.6 sends) is at least that much.
    ok = until(lambda: int(_status_fields(status, "CLIENT_LIST").get("Bytes Received", "0")) > NBYTES, 5)
    row = _status_fields(status, "CLIENT_LIST")
    assert ok, row
    assert int(row["Bytes Sent"]) < NBYTES // 2, row
    mode = {"compress lz4-v2": "lz4-v2", "comp-lzo yes": "lzo"}[comp]
    assert cli.log().count(f"the server compresses what it sends ({mode}): decompressing it") == 1, cli.log()[-2000:]
    cli.stop(8)
    srv.stop(8)


def test_openvpn_client_compressing_to_our_server(lab, procs):
    status = lab.tmp / "cli-status.txt"
    srv = lab.ours(lab.srv, server_config(lab.pki, extra="compress lz4-v2\n"), "cz-oursrv",
                   pattern=r"listening on UDP")
    procs.append(srv)
    prof = client_profile(lab.pki, extra=f"compress lz4-v2\nallow-compression yes\nstatus {status} 1\n")
    cli = lab.openvpn(lab.cli, prof, "cz-ovpncli")
    procs.append(cli)
    _traffic_both_ways(lab, srv, cli)
    # Debian's client counts what it compressed: its megabyte toward us went out much smaller.
    assert until(lambda: _client_stats(status).get("pre-compress bytes", 0) >= NBYTES, 5), _client_stats(status)
    st = _client_stats(status)
    assert st["post-compress bytes"] < st["pre-compress bytes"] // 2, st
    assert srv.log().count(": the client compresses what it sends (lz4-v2): decompressing it") == 1, srv.log()[-2000:]
    cli.stop(8)
    srv.stop(8)


def test_pushed_compression_is_refused_by_a_profile_without_it_like_openvpn(lab, procs):
    """2.6's client without any compression line allows stubs only and drops the connection when
    the server pushes real compression; Debian's client beside ours shows the same verdict."""
    conf = server_config(lab.pki, extra='comp-lzo yes\npush "comp-lzo yes"\n')
    srv = lab.openvpn(lab.srv, conf, "cz-push-srv")
    procs.append(srv)
    theirs = lab.openvpn(lab.cli, client_profile(lab.pki), "cz-push-ovpncli", wait=0)
    procs.append(theirs)
    assert theirs.wait_for("server pushed compression settings that are not allowed", 20), theirs.log()[-2000:]
    theirs.stop(8)
    ours = lab.ours(lab.cli, client_profile(lab.pki), "cz-push-ours", wait=0)
    procs.append(ours)
    assert ours.wait_for("does not allow", 20), ours.log()[-2000:]
    assert "tunnel up" not in ours.log()
    ours.stop(8)
    srv.stop(8)
