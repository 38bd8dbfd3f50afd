"""The host client's status file and status line, against Debian's OpenVPN 2.6 client writing its
own `status FILE 1` (with `status-version 3`: a client writes the same block for 1, 2 and 3) in the same namespace, to the same server: one parse reads both files, and
they have the same lines in the same order, with counters that move with the traffic."""
from __future__ import annotations

import datetime
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab
from lab.tools import OUR_BIN

PING_COUNT, PING_BYTES = 5, 84          # ICMP echo, 56 bytes of data: 84-byte IPv4 packets


def parse_statistics(text: str) -> list[tuple[str, str]]:
    """A client status file as tools read it: the STATISTICS block of `name,value` rows."""
    lines = text.splitlines()
    assert lines[0] == "OpenVPN STATISTICS" and lines[-1] == "END", text
    rows = [tuple(ln.split(",", 1)) for ln in lines[1:-1]]
    assert rows[0][0] == "Updated"
    datetime.datetime.strptime(rows[0][1], "%Y-%m-%d %H:%M:%S")
    for name, value in rows[1:]:
        assert value.isdigit(), (name, value)
    return rows


def _wait_for_counts(path, key: str, at_least: int, within: float = 15) -> dict[str, int]:
    end = time.monotonic() + within
    while True:
        got = {}
        if path.exists():
            text = path.read_text()
            if text.endswith("END\n"):
                got = {k: int(v) for k, v in parse_statistics(text)[1:]}
                if got.get(key, 0) >= at_least:
                    return got
        if time.monotonic() > end:
            raise AssertionError(f"{path}: {key} did not reach {at_least}: {got}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("clistatus")) as lab:
        lab.openvpn(lab.srv, server_config(lab.pki), "srv")
        yield lab


def _run_and_ping(lab, start, status_file):
    p = start()
    assert lab.ping(lab.cli, TUN_SERVER_IP, count=PING_COUNT) == PING_COUNT
    counts = _wait_for_counts(status_file, "TUN/TAP write bytes", PING_COUNT * PING_BYTES)
    return p, counts


def test_status_file_reads_like_openvpns(lab):
    theirs_file = lab.tmp / "openvpn.status"
    theirs, their_counts = _run_and_ping(
        lab, lambda: lab.openvpn(lab.cli, client_profile(lab.pki, extra=f"status {theirs_file} 1\nstatus-version 3\n"), "ovpn-cli"),
        theirs_file)
    theirs.stop()
    theirs_rows = parse_statistics(theirs_file.read_text())

    ours_file = lab.tmp / "ours.status"
    prof = lab.write("ours.ovpn", client_profile(lab.pki, extra=f"status {ours_file} 1\nstatus-version 2\n"))

    def start():
        p = lab.start(lab.cli, [OUR_BIN, "run", "--status-interval", "1", str(prof)], "ours-cli")
        assert p.wait_for("tunnel up", 30), p.log()[-2000:]
        return p
    ours, our_counts = _run_and_ping(lab, start, ours_file)
    rows = parse_statistics(ours_file.read_text())
    assert [k for k, _ in rows] == [k for k, _ in theirs_rows]
    # both sent and received the pings (and a little more: OpenVPN counts keepalive payload too)
    for c in (their_counts, our_counts):
        assert c["TUN/TAP read bytes"] >= PING_COUNT * PING_BYTES
        assert c["TCP/UDP read bytes"] > c["TUN/TAP write bytes"] and c["TCP/UDP write bytes"] > c["TUN/TAP read bytes"]
        assert c["Auth read bytes"] >= c["TUN/TAP write bytes"]
    assert ours.stop(20) == 0
    final = {k: int(v) for k, v in parse_statistics(ours_file.read_text())[1:]}
    assert all(final[k] >= our_counts[k] for k in final), (final, our_counts)

    log = ours.log()
    lines = [ln.split(" INFO ", 1)[1] for ln in log.splitlines() if " INFO status: " in ln]
    assert lines and lines[0].startswith("status: tunnel up, remote 198.18.0.1:1194/udp, tun0 up 0:00:0")
    assert any(f"renegotiations 0" in ln and int(ln.split("bytes in ")[1].split()[0]) >= PING_COUNT * PING_BYTES
               for ln in lines), lines
