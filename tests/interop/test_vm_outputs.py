"""The files a server config writes, as the VM runs them, against Debian's OpenVPN 2.6 client in
namespaces: Debian's sample paths (`status /var/log/openvpn/openvpn-status.log`,
`ifconfig-pool-persist`) and an eduVPN-style management socket, bundled as `config-disk` bundles
them, on a read-only volume (a read-only bind mount: EROFS as on the VM's FAT volume; root ignores
file modes), the output directory made by the VM's start-up (boot/init.py prepare_outputs). Our
server, run from the bundled profile, must write the status and pool files where the bundle says,
with the connected client in them, answer on the management socket there, and write nothing
else: no warning, nothing on the volume, nothing at the paths as written."""
from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

from appliance.boot.init import prepare_outputs
from appliance.config.bundle import collect, write_dir
from appliance.config.schema import load_appliance_config
from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab
from lab.tools import OUR_BIN

DEBIAN_STATUS = "/var/log/openvpn/openvpn-status.log"


def _state(p: str):
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _tree(d: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else None) for p in sorted(d.rglob("*"))}


def _until(pred, within: float) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


def _mgmt_status(sock: str) -> list[str]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(sock)
        s.sendall(b"status 2\n")
        buf = b""
        while b"\r\nEND\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                break
            buf += d
    return [x for x in buf.decode().split("\r\n") if x and not x.startswith(">")]


def test_a_bundled_server_on_a_read_only_volume_writes_where_the_bundle_says(tmp_path):
    out = Path(tempfile.mkdtemp(prefix="vo", dir="/tmp")) / "vpn-appliance"   # short: a unix socket's path
    with Lab(clients=["client1"], tmp=tmp_path / "lab") as lab:
        conf = tmp_path / "conf"
        conf.mkdir()
        (conf / "server.ovpn").write_text(
            server_config(lab.pki) + f"status {DEBIAN_STATUS} 1\nstatus-version 2\n"
            "ifconfig-pool-persist ipp.txt 1\nmanagement /run/openvpn-server/default-0.sock unix\n")
        toml = conf / "appliance.toml"
        toml.write_text('[wan]\nname = "eth0"\ndhcp = true\n\n[vpn]\nrole = "server"\nconfig = "server.ovpn"\n')
        b = collect(toml, output_dir=str(out))
        assert [(o.directive, o.vm_path) for o in b.outputs] == [
            ("status", f"{out}/openvpn-status.log"), ("ifconfig-pool-persist", f"{out}/ipp.txt"),
            ("management", f"{out}/default-0.sock")]
        vol = tmp_path / "vol"
        write_dir(b, vol)
        for p in [vol, *vol.rglob("*")]:
            p.chmod(0o500 if p.is_dir() else 0o400)
        before, debian_before = _tree(vol), _state(DEBIAN_STATUS)
        try:
            # The VM's start-up: the TOML from the volume, then the output directory.
            said = prepare_outputs(load_appliance_config(str(vol / "appliance.toml")), str(out))
            assert said[1].startswith(f"ifconfig-pool-persist {out}/ipp.txt: addresses kept for this boot only")
            ro = f"mount --bind {vol} {vol} && mount -o remount,bind,ro {vol} && exec \"$@\""
            srv = lab.start(lab.srv, ["unshare", "-m", "--propagation", "private", "sh", "-c", ro, "sh",
                                      OUR_BIN, "run", str(vol / "server.ovpn")], "vo-srv")
            assert srv.wait_for(r"listening on UDP", 60), srv.log()[-3000:]
            lab.openvpn(lab.cli, client_profile(lab.pki, client="client1"), "vo-cli")
            assert lab.ping(lab.cli, TUN_SERVER_IP, 3) == 3, srv.log()[-3000:]
            vaddr = lab._tun_ip(lab.cli)
            status = out / "openvpn-status.log"
            row = re.compile(rf"^CLIENT_LIST,client1,198\.18\.0\.2:\d+,{re.escape(vaddr)},", re.M)
            assert _until(lambda: status.exists() and row.search(status.read_text()), 10), srv.log()[-3000:]
            lines = status.read_text().splitlines()
            assert lines[0].startswith("TITLE,") and lines[-1] == "END"
            # The management socket answers there, with the file's client row.
            mgmt = _mgmt_status(f"{out}/default-0.sock")
            assert [x for x in mgmt if x.startswith("CLIENT_LIST,")][0].split(",")[:4] == \
                [x for x in lines if x.startswith("CLIENT_LIST,")][0].split(",")[:4]
            pool = out / "ipp.txt"
            assert _until(lambda: pool.exists() and pool.read_text() == f"client1,{vaddr},\n", 10), \
                (pool.read_text() if pool.exists() else "no pool file") + srv.log()[-3000:]
            srv.stop(8)
            assert not re.search(r" (WARNING|ERROR) ", srv.log()), srv.log()[-3000:]     # not one
            assert "END" in status.read_text().splitlines()                 # written once more at exit
        finally:
            vol.chmod(0o700)
            shutil.rmtree(out.parent, ignore_errors=True)
        assert _tree(vol) == before                       # nothing written on the volume
        assert _state(DEBIAN_STATUS) == debian_before     # nor at the path as written
