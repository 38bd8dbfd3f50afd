"""A router VM whose profile carries `comp-lzo yes` (commercial providers' and old routers' profiles),
against Debian's OpenVPN 2.6 server told `allow-compression yes` so it really compresses toward the
VM; then the same server restarted to push `compress lz4-v2`, which the VM takes at its reconnect.
What a user checks: LAN hosts' traffic crosses the tunnel with every byte intact (a download of
compressible data, checked by SHA-256, and 1200-byte pings), Debian's server counters show it sent
that data compressed (far fewer link bytes than it carried), and the VM's log says it decompressed
what the server compressed. One VM boot; the selftest (tests/vm/test_image.py) loads both libraries.

    [lan ns] 198.18.50.2 ── br ── tap ─ eth1 [VM] eth0 ─ tap ── br ── 198.18.0.1 [wan ns: openvpn]
"""
from __future__ import annotations

import re
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Proc
from lab.vm import OUT, appliance_toml, boot, config_volume, lab_pki, lan_transfer, ping, vm_topology
from tests.vm.test_image import build

NBYTES = 2_000_000       # lan_transfer's pattern (bytes 0..255 repeated): compresses well
BAD = ("does not decompress", "decompression failed", "bad compression framing")


@pytest.fixture(scope="module")
def pki():
    build(OUT)          # makes (or reuses) the default lab PKI in the build cache
    return lab_pki()


def _bytes_sent(status) -> int:
    """Debian's server status (status-version 2): the first client's Bytes Sent (link bytes)."""
    head, row = None, None
    for line in status.read_text().splitlines() if status.exists() else []:
        f = line.split(",")
        if f[:2] == ["HEADER", "CLIENT_LIST"]:
            head = f[2:]
        elif f[0] == "CLIENT_LIST" and row is None:
            row = f[1:]
    fields = dict(zip(head or [], row or []))
    return int(fields.get("Bytes Sent", "0") or 0)


def _server(t: dict, tmp, comp: str, name: str) -> tuple[Proc, object]:
    status = tmp / f"status-{name}.txt"
    cfg = tmp / f"server-{name}.conf"
    cfg.write_text(server_config(lab_pki(), "udp", None, "tls-crypt",
                                 extra=f"{comp}\nallow-compression yes\nstatus {status} 1\nstatus-version 2\n"))
    srv = Proc(t["wan"], ["openvpn", "--config", str(cfg)], tmp / f"server-{name}.log")
    t["procs"].append(srv)
    assert srv.wait_for("Initialization Sequence Completed", 20), srv.log()
    return srv, status


def _lan_traffic_decompressed(t: dict, q: Proc, srv: Proc, status, mode: str, tmp) -> int:
    """LAN -> far side pings and a download through the tunnel; -> the server's link bytes for it."""
    why = lambda: q.log()[-3000:] + "\n----\n" + srv.log()[-2000:]   # noqa: E731
    before = _bytes_sent(status)
    r = t["lan"].run("ping -n -q -c 4 -i 0.3 -W 2 -s 1200 -p ff 198.18.100.1", check=False, timeout=30)
    assert " 4 received" in r.stdout, r.stdout + why()
    assert lan_transfer(t["lan"], t["wan"], tmp, NBYTES, download=True).startswith("198.19.0."), why()
    assert q.wait_for(rf"the server compresses what it sends \({re.escape(mode)}\): decompressing it", 10), why()
    end = time.monotonic() + 5                      # the status file is written every second
    while time.monotonic() < end and _bytes_sent(status) - before < 10_000:
        time.sleep(0.5)
    return _bytes_sent(status) - before


def test_router_vm_decompresses_comp_lzo_and_pushed_lz4_v2(pki, tmp_path, figure):
    prof = client_profile(pki, "udp", None, "tls-crypt", inline=True, extra="comp-lzo yes\nconnect-retry 1 2\n")
    toml = tmp_path / "comp.toml"
    toml.write_text(appliance_toml("client", prof, lan=True))
    vol = config_volume(toml, tmp_path / "config.img")
    with vm_topology(tmp_path) as t:
        srv, status = _server(t, tmp_path, "comp-lzo yes", "lzo")
        q = boot(t, OUT, config_disk=vol)
        assert q.wait_for("tunnel up", 150), q.log()[-4000:]
        rss = re.search(r"tunnel up: .*VmRSS (\S+ \S+)", q.log())
        sent = _lan_traffic_decompressed(t, q, srv, status, "lzo", tmp_path)
        # what Debian's server put on the wire for ~2 MB toward the VM: compressed, so far less
        assert 0 < sent < NBYTES // 2, (sent, srv.log()[-2000:])
        figure(f"router VM, comp-lzo yes: {NBYTES} bytes down in {sent} link bytes; VmRSS at tunnel up "
               f"{rss.group(1) if rss else '?'}")

        # The server comes back pushing `compress lz4-v2` (explicit-exit-notify: the VM hears it go).
        ups = q.log().count("tunnel up")
        srv.stop(10)
        srv, status = _server(t, tmp_path, 'compress lz4-v2\npush "compress lz4-v2"', "lz4")
        assert q.wait_count("tunnel up", ups + 1, 60), q.log()[-3000:]
        assert re.search(r"server pushed: .*compress lz4-v2", q.log()), q.log()[-3000:]
        sent = _lan_traffic_decompressed(t, q, srv, status, "lz4-v2", tmp_path)
        assert 0 < sent < NBYTES // 2, (sent, srv.log()[-2000:])
        assert not any(b in q.log() for b in BAD), q.log()[-3000:]
        assert not any(b in srv.log() for b in ("Bad LZ4", "Bad LZO", "decompression error")), srv.log()[-2000:]
        assert ping(t["lan"], "198.18.100.1", 2) >= 1
