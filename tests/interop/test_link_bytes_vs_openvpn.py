"""A server's status rows against Debian's OpenVPN 2.6 in namespaces, one Debian client each time
(auth-user-pass sent, no keepalive so nothing moves while we read):

- Bytes Received / Bytes Sent are every byte of the client's packets on the link, the handshake's
  control packets included (2.6: c2.link_read_bytes / link_write_bytes), and load-stats says the
  same totals (its global counters), plus over UDP the first reset's answer, sent before the
  client's instance exists (the stateless cookie exchange, counted in no client's row). The
  client's own `status` counts its link bytes from the other end: over UDP what it wrote less
  what the server counted, and what it read less what the server sent, is the same for Debian's
  server and ours (that first exchange); over TCP the gaps are the 2-byte lengths, which 2.6
  counts on writes only (the packet counts of the two servers' handshakes differ a little).
  Ours counted the data channel's payloads: 48 where 2.6 said ~2200.
- Username is UNDEF on a server with no user check, although the client sent one (2.6 reads it
  only to check it, ssl_verify.c tls_lock_username); ours showed the username sent."""
from __future__ import annotations

import re
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab
from tests.interop.test_ops_vs_openvpn import Mgmt


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("linkbytes")) as lab:
        yield lab


def _status_row(m: Mgmt) -> list[str]:
    rows = [x.split(",") for x in m.cmd("status 2") if x.startswith("CLIENT_LIST,")]
    assert len(rows) == 1, rows
    return rows[0]


def _client_link(m: Mgmt) -> tuple[int, int]:
    text = "\n".join(m.cmd("status"))
    r = re.search(r"TCP/UDP read bytes,(\d+)", text)
    w = re.search(r"TCP/UDP write bytes,(\d+)", text)
    assert r and w, text
    return int(r.group(1)), int(w.group(1))


def _load_stats(m: Mgmt) -> tuple[int, int]:
    line = next(x for x in m.cmd("load-stats") if x.startswith("SUCCESS:"))
    got = re.search(r"bytesin=(\d+),bytesout=(\d+)", line)
    assert got, line
    return int(got.group(1)), int(got.group(2))


def _measure(lab, procs, proto: str, who: str, client: str = "theirs") -> dict:
    """`who`: whose server; `client`: whose client."""
    tag = f"{who}-{client}-{proto}-{len(lab.procs)}"
    ssock, csock = str(lab.tmp / f"s-{tag}.sock"), str(lab.tmp / f"c-{tag}.sock")
    cfg = server_config(lab.pki, proto=proto).replace("keepalive 5 30\n", "") + f"management {ssock} unix\n"
    if who == "theirs":
        srv = lab.openvpn(lab.srv, cfg, f"srv-{tag}", wait=0)
        assert srv.wait_for("Initialization Sequence Completed", Lab.START_WAIT), srv.log()[-2000:]
    else:
        srv = lab.ours(lab.srv, cfg, f"srv-{tag}", pattern=r"listening on (UDP|TCP)")
    procs.append(srv)
    sm = Mgmt(ssock, srv)
    creds = lab.write(f"creds-{tag}", "alice\nfirst\n")
    prof = client_profile(lab.pki, proto=proto) + f"auth-user-pass {creds}\nmanagement {csock} unix\n"
    cli = lab.openvpn(lab.cli, prof, f"cli-{tag}") if client == "theirs" else lab.ours(lab.cli, prof, f"cli-{tag}")
    procs.append(cli)
    cm = Mgmt(csock, cli)
    try:
        assert lab.ping(lab.cli, TUN_SERVER_IP, 3) == 3
        # Read both ends until two rounds agree: nothing in flight then (no keepalive).
        last = None
        for _ in range(40):
            time.sleep(0.25)
            row, link, stats = _status_row(sm), _client_link(cm), _load_stats(sm)
            now = (int(row[5]), int(row[6]), link, stats)
            if now == last:
                break
            last = now
        assert now == last, "the counters never settled"
        return {"row": row, "in": now[0], "out": now[1], "client read": link[0], "client write": link[1],
                "load-stats": stats}
    finally:
        cm.close()
        sm.close()
        cli.stop(8)
        srv.stop_promptly(8)
        procs.clear()


_REFERENCE: dict[str, dict] = {}


def _debian_pair(lab, procs, proto: str) -> dict:
    """Debian's server and client, measured once per protocol for both tests."""
    if proto not in _REFERENCE:
        _REFERENCE[proto] = _measure(lab, procs, proto, "theirs")
    return _REFERENCE[proto]


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_status_bytes_and_username_as_openvpn(lab, procs, proto):
    theirs = _debian_pair(lab, procs, proto)
    ours = _measure(lab, procs, proto, "ours")
    gap = {k: (g["client write"] - g["in"], g["client read"] - g["out"]) for k, g in (("theirs", theirs), ("ours", ours))}
    for k, got in (("theirs", theirs), ("ours", ours)):
        assert got["in"] > 1000 and got["out"] > 1000, got            # the handshake counts
        assert got["row"][9] == "UNDEF", got["row"]                    # no user check: no username
        g_in, g_out = gap[k]
        if proto == "udp":
            # load-stats: the row's bytes, and the stateless answer (what the client read uncounted)
            assert got["load-stats"] == (got["in"], got["out"] + g_out), (k, got)
        else:
            assert got["load-stats"] == (got["in"], got["out"]), (k, got)
            # reads without the 2-byte length, writes with it: one each per packet (a handshake: 6-40)
            assert g_in % 2 == 0 and g_out % 2 == 0 and 12 <= g_in <= 80 and -80 <= g_out <= -12, (k, gap)
    if proto == "udp":
        assert gap["ours"] == gap["theirs"], (gap, theirs, ours)
        assert 0 < gap["ours"][0] < 120 and 0 < gap["ours"][1] < 120, gap


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_our_client_counts_its_link_bytes_as_openvpn(lab, procs, proto):
    """Our client's "TCP/UDP read/write bytes" (management `status`, the status file, >BYTECOUNT)
    against Debian's server's row for it, as Debian's client's against the same server: over UDP
    the same gaps (the first exchange), over TCP the 2-byte lengths on what each end writes (ours
    left them out)."""
    theirs = _debian_pair(lab, procs, proto)
    ours = _measure(lab, procs, proto, "theirs", client="ours")
    gap = {k: (g["client write"] - g["in"], g["client read"] - g["out"]) for k, g in (("theirs", theirs), ("ours", ours))}
    if proto == "udp":
        assert gap["ours"] == gap["theirs"], (gap, theirs, ours)
    else:
        g_in, g_out = gap["ours"]
        assert g_in % 2 == 0 and g_out % 2 == 0 and 12 <= g_in <= 80 and -80 <= g_out <= -12, (gap, ours)
