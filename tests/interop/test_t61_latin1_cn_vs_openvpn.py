"""A client certificate whose CN is a T61String holding Latin-1 bytes (`caf\\xe9`, what `openssl
req` with `string_mask nombstr` writes for Latin-1 input), against Debian's OpenVPN 2.6 in
namespaces: OpenSSL reads the bytes as Latin-1, so OpenVPN names the client `café` (its UTF-8):
the ccd file of that name, a client-connect script's $common_name, $X509_0_CN and $tls_id_0. Ours
refused the certificate as unreadable (cryptography reads T61String as UTF-8 and refuses the
name); now the same server config gives the same client the same address and the same names
(openvpn/dername.py)."""
from __future__ import annotations

import re

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab
from lab.pki import add_raw_name_cert


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("t61latin1")) as lab:
        add_raw_name_cert(lab.pki, "latin1", "cafX", b"caf\xe9")
        yield lab


def _tun_ip(ns) -> str:
    m = re.search(r"inet (\S+)/", ns.run("ip -4 -o addr show dev tun0", check=False).stdout)
    return m.group(1) if m else ""


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_a_latin1_t61string_cn_is_the_name_openssl_reads(lab, procs, server):
    ccd = lab.tmp / f"ccd-{server}"
    ccd.mkdir()
    (ccd / "café").write_text("ifconfig-push 198.19.0.78 255.255.255.0\n")
    seen = lab.tmp / f"connect-{server}.log"
    script = lab.write(f"connect-{server}.sh",
                       f"#!/bin/sh\nprintf '%s\\n' \"$common_name\" \"$X509_0_CN\" \"$tls_id_0\" >> {seen}\n")
    script.chmod(0o755)
    cfg = server_config(lab.pki, extra=f"client-config-dir {ccd}\nscript-security 2\nclient-connect {script}\n")
    if server == "openvpn":
        procs.append(lab.openvpn(lab.srv, cfg, f"t61lsrv-{len(lab.procs)}"))
    else:
        procs.append(lab.ours(lab.srv, cfg, f"t61lsrv-{len(lab.procs)}", pattern=r"listening on UDP"))
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="latin1"), f"t61lcli-{len(lab.procs)}", wait=0)
    procs.append(cli)
    assert cli.wait_for("Initialization Sequence Completed", 60), procs[0].log()[-2000:]
    assert _tun_ip(lab.cli) == "198.19.0.78", procs[0].log()[-2000:]
    assert seen.read_bytes().decode("utf-8").splitlines() == ["café", "café", "O=x, CN=café"]
