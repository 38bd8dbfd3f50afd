"""The options string (OCC) our key-method message carries is the one OpenVPN 2.6 sends for the
same config: Debian's openvpn prints its own ("Local Options String", verb 7) at start, and ours
must be that string, byte for byte (a 2.6 peer with `opt-verify` compares them with strcmp).
Before, ours was one fixed form (link-mtu 1549, no cipher or auth, keysize 256), which Debian's
peer without a `cipher` line (the BF-CBC form, 1541) logged as inconsistent."""
from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest

from appliance.openvpn.config import parse_config
from appliance.openvpn.occstring import OccInputs, link_mtu, options_string, with_comp_lzo
from appliance.openvpn.settings import occ_inputs

CLIENT = "client\nremote 198.18.77.1\nnobind\n"
P2P = "tls-client\nremote 198.18.77.1\nnobind\n"
CASES = {   # name -> the config's own lines
    "tun, no cipher": CLIENT + "dev tun\n",
    "tap, no cipher": CLIENT + "dev tap\n",
    "tun, tun-mtu-extra 32": CLIENT + "dev tun\ntun-mtu-extra 32\n",
    "tap, tun-mtu-extra 10": CLIENT + "dev tap\ntun-mtu-extra 10\n",
    "tls-crypt-v2": CLIENT + "dev tun\ntls-crypt-v2 {pki}/client1.v2.key\n",
    "udp, a tcp remote first": "client\nremote 198.18.77.2 443 tcp\nremote 198.18.77.1\nnobind\ndev tun\n",
    "cipher AES-256-GCM": CLIENT + "dev tun\ncipher AES-256-GCM\n",
    "cipher aes-128-gcm, auth sha256": CLIENT + "dev tun\ncipher aes-128-gcm\nauth sha256\n",
    "CHACHA20-POLY1305": CLIENT + "dev tun\ncipher CHACHA20-POLY1305\n",
    "CBC not in data-ciphers": CLIENT + "dev tun\ncipher AES-256-CBC\n",
    "CBC in data-ciphers, SHA512": CLIENT + "dev tun\ncipher AES-128-CBC\nauth SHA512\ndata-ciphers AES-128-CBC\n",
    "GCM not in data-ciphers": CLIENT + "dev tun\ncipher AES-256-GCM\ndata-ciphers AES-128-GCM\n",
    "tcp": CLIENT + "dev tun\nproto tcp\n",
    "tcp tap cipher": CLIENT + "dev tap\nproto tcp\ncipher AES-256-GCM\n",
    "tls-auth 1": CLIENT + "dev tun\ntls-auth {pki}/static.key 1\n",
    "tls-auth, key-direction 0": CLIENT + "dev tun\ntls-auth {pki}/static.key\nkey-direction 0\n",
    "tls-crypt": CLIENT + "dev tun\ntls-crypt {pki}/static.key\n",
    "fragment": CLIENT + "dev tun\nfragment 1300\n",
    "comp-lzo no": CLIENT + "dev tun\ncomp-lzo no\n",
    "compress": CLIENT + "dev tun\ncompress\n",
    "compress stub-v2": CLIENT + "dev tun\ncompress stub-v2\n",
    "compress lz4-v2, tun-mtu 1400": CLIENT + "dev tun\ncompress lz4-v2\ntun-mtu 1400\n",
    "comp-lzo yes": CLIENT + "dev tun\ncomp-lzo yes\n",
    # link-mtu: the tun-mtu derived from it, the link-mtu figure still from 2.6's default tun-mtu 1500
    "link-mtu 1400": CLIENT + "dev tun\nlink-mtu 1400\n",
    "udp-mtu 1400, tcp, GCM": CLIENT + "dev tun\nudp-mtu 1400\nproto tcp\ncipher AES-256-GCM\n",
    "link-mtu 1500, CBC SHA256": CLIENT + "dev tun\nlink-mtu 1500\ncipher AES-128-CBC\nauth SHA256\n",
    # review42: what else 2.6 counts in its payload (not in the header link-mtu is cut by), and tap
    "link-mtu 1400, comp-lzo yes, fragment": CLIENT + "dev tun\nlink-mtu 1400\ncomp-lzo yes\nfragment 1300\n",
    "link-mtu 1400, compress lz4, tls-crypt": CLIENT + "dev tun\nlink-mtu 1400\ncompress lz4\ntls-crypt {pki}/static.key\n",
    "link-mtu 1400, tap, GCM": CLIENT + "dev tap\nlink-mtu 1400\ncipher AES-256-GCM\n",
    "link-mtu 1400, a tcp remote first": "client\nremote 198.18.77.2 443 tcp\nremote 198.18.77.1\nnobind\ndev tun\nlink-mtu 1400\n",
    "p2p": P2P + "dev tun\nifconfig 198.19.5.2 198.19.5.1\n",
    "p2p subnet, ipv6, cipher": P2P + ("dev tun\ntopology subnet\nifconfig 198.19.5.2 255.255.255.0\n"
                                       "ifconfig-ipv6 fd00::2 fd00::1\ncipher AES-256-GCM\n"),
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from lab.pki import make_pki
    return make_pki(tmp_path_factory.mktemp("occpki"), ["client1"])


def _config(pki, case: str) -> str:
    cert, key = pki.clients["client1"]
    return CASES[case].format(pki=pki.dir) + f"ca {pki.ca}\ncert {cert}\nkey {key}\n"


def _ours(text: str) -> str:
    o = parse_config(text, "/p/c.conf", lambda p: open(p, "rb").read())
    proto = o.remotes[0].proto if o.remotes else o.proto       # the first connection's, as the session's
    return options_string(occ_inputs(o), proto == "tcp", tls_client=True)


def _theirs(text: str, tmp_path) -> str:
    """Debian's openvpn's own string, from its start (it is stopped before it reaches anyone)."""
    openvpn = shutil.which("openvpn") or "/usr/sbin/openvpn"
    conf = tmp_path / "c.conf"
    conf.write_text(text + "verb 7\n")      # D_SHOW_OCC
    p = subprocess.Popen([openvpn, "--config", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    try:
        end = time.monotonic() + 20
        for line in p.stdout:                       # ends when it exits; bounded by the deadline
            out.append(line)
            m = re.search(r"Local Options String \(VER=V4\): '([^']*)'", line)
            if m:
                return m.group(1)
            if time.monotonic() > end:
                break
    finally:
        p.kill()
        p.wait(5)
    raise AssertionError("".join(out)[-3000:])


@pytest.mark.openvpn
@pytest.mark.parametrize("case", CASES)
def test_as_debians_openvpn(case, pki, tmp_path):
    text = _config(pki, case)
    assert _ours(text) == _theirs(text, tmp_path)


def test_the_figures_2_6_sends():
    """Without Debian's openvpn: the forms a user meets most (2.6's own figures)."""
    bf = OccInputs(data_ciphers=("AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"))
    assert options_string(bf, False, True) == ("V4,dev-type tun,link-mtu 1541,tun-mtu 1500,proto UDPv4,auth SHA1,"
                                               "keysize 128,key-method 2,tls-client")
    gcm = OccInputs(cipher="AES-256-GCM", data_ciphers=bf.data_ciphers)
    assert options_string(gcm, True, False) == ("V4,dev-type tun,link-mtu 1551,tun-mtu 1500,proto TCPv4_SERVER,"
                                                "cipher AES-256-GCM,auth [null-digest],keysize 256,key-method 2,"
                                                "tls-server")
    assert link_mtu(OccInputs(dev_type="tap", tun_mtu_extra=32), False) == 1573


def test_migrate_string_is_2_6s_compat_lzo():
    s = "V4,dev-type tun,link-mtu 1541,tun-mtu 1500,proto UDPv4,auth SHA1,keysize 128,key-method 2,tls-server"
    assert with_comp_lzo(s) == ("V4,dev-type tun,link-mtu 1542,tun-mtu 1500,proto UDPv4,auth SHA1,keysize 128,"
                                "key-method 2,tls-server,comp-lzo")
