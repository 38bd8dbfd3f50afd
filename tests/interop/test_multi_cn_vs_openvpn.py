"""Certificates with two CNs against Debian's OpenVPN 2.6, in namespaces: the peer's name is the
LAST CN in OpenVPN, and must be in ours too.

- Server side: the same server config (ccd files for both CNs, a client-connect script writing
  $common_name, $tls_id_0 and X509_0_*) run by OpenVPN and by us; OpenVPN's client connects with a
  certificate whose subject ends `/CN=alice/CN=admin`; both servers pick admin's ccd file and
  tell the script `admin` and the same subject string.
- Client side: OpenVPN's server presents `/O=x/CN=vpn-a/CN=vpn-b`; with `verify-x509-name vpn-b
  name` our client connects, with `vpn-a name` (the first CN) it refuses, as OpenVPN's client does.
- A CN in T61String holding UTF-8 bytes is read as OpenSSL reads it (Latin-1): its ccd file and
  script variables are OpenVPN's. The ccd file of a name is OpenVPN's (`/` made `_`, a leading
  dot allowed, DEFAULT for a client without one): a `disable` there refuses the client.
"""
from __future__ import annotations

import re
import time
import warnings

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab
from lab.pki import add_cert
from tests.interop.test_ops_vs_openvpn import Mgmt


# Two CNs, and a multi-valued RDN and an emailAddress for the subject string (tls_id_0).
TWO_CN = "/O=x+OU=y/emailAddress=a@b/CN=alice/CN=admin"


# Last CNs OpenVPN cannot use as they are: none, over its 64 bytes, and a NUL (OpenVPN's name
# stops there: `admin`).
UNUSABLE = {"nocn": "/O=x/OU=no name", "longcn": "/O=x/CN=admin/CN=" + "a" * 65, "nulcn": "/O=x/CN=admin\x00x"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("cnlab")) as lab:
        add_cert(lab.pki, "twocn", TWO_CN)
        for name, spec in UNUSABLE.items():
            with warnings.catch_warnings():          # cryptography's, for the 65-byte CN
                warnings.simplefilter("ignore")
                add_cert(lab.pki, name, spec)
        yield lab


def _tun_ip(ns) -> str:
    m = re.search(r"inet (\S+)/", ns.run("ip -4 -o addr show dev tun0", check=False).stdout)
    return m.group(1) if m else ""


def _server_with_ccd_and_script(lab, tag: str) -> tuple[str, object]:
    ccd = lab.tmp / f"ccd-{tag}"
    ccd.mkdir()
    (ccd / "alice").write_text("ifconfig-push 198.19.0.50 255.255.255.0\n")
    (ccd / "admin").write_text("ifconfig-push 198.19.0.60 255.255.255.0\n")
    seen = lab.tmp / f"connect-{tag}.log"
    fields = '"$common_name" "$tls_id_0" "$X509_0_CN" "$X509_0_CN_1" "$X509_0_emailAddress"'
    script = lab.write(f"connect-{tag}.sh", f"#!/bin/sh\nprintf '%s\\n' {fields} >> {seen}\n")
    script.chmod(0o755)
    extra = f"client-config-dir {ccd}\nscript-security 2\nclient-connect {script}\n"
    return server_config(lab.pki, extra=extra), seen


# The X509_* lines of the >CLIENT:ENV block, as Debian's OpenVPN 2.6 sends them for TWO_CN: the
# peer's fields last one first (its environment lists the newest first), then its CA's (depth 1).
X509_ENV_LINES = ["X509_0_CN_1=admin", "X509_0_CN=alice", "X509_0_emailAddress=a@b", "X509_0_OU=y", "X509_0_O=x",
                  "X509_1_CN=Lab CA"]


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_two_cn_client_is_named_by_its_last_cn(lab, procs, server):
    cfg, seen = _server_with_ccd_and_script(lab, server)
    sock = str(lab.tmp / f"mgmt-cn-{server}.sock")
    cfg += f"management {sock} unix\n"
    procs.append(lab.udp_server(server, cfg, f"cnsrv-{len(lab.procs)}"))
    m = Mgmt(sock)
    m.lines(0.3)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="twocn"), f"cncli-{len(lab.procs)}")
    procs.append(cli)
    assert _tun_ip(lab.cli) == "198.19.0.60", procs[0].log()[-2000:]      # admin's ccd file
    # The name is the last CN; the subject string and X509_0_* variables (X509_0_CN the FIRST
    # CN, X509_0_CN_1 the next) are what OpenVPN gives scripts.
    assert seen.read_text().splitlines() == ["admin", "O=x + OU=y, emailAddress=a@b, CN=alice, CN=admin",
                                             "alice", "admin", "a@b"]
    deadline = time.monotonic() + 10
    while ">CLIENT:ENV,END" not in m.notes and time.monotonic() < deadline:
        m.lines(0.3)
    m.close()
    env = [n.split(",", 1)[1] for n in m.notes if n.startswith(">CLIENT:ENV,X509_")]
    assert env == X509_ENV_LINES, m.notes


def _two_cn_server(lab, procs) -> None:
    crt, key = add_cert(lab.pki, "srv2cn", "/O=x/CN=vpn-a/CN=vpn-b", server=True)
    cfg = server_config(lab.pki).replace(f"cert {lab.pki.server_cert}", f"cert {crt}").replace(
        f"key {lab.pki.server_key}", f"key {key}")
    procs.append(lab.openvpn(lab.srv, cfg, f"srv2cn-{len(lab.procs)}"))


def test_verify_x509_name_is_checked_against_the_last_cn(lab, procs):
    _two_cn_server(lab, procs)
    ok = lab.ours(lab.cli, client_profile(lab.pki, extra="verify-x509-name vpn-b name\n"), f"cnok-{len(lab.procs)}")
    procs.append(ok)
    ok.stop(8)
    for kind, name in (("name", "vpn-a"), ("name-prefix", "vpn-a")):
        prof = client_profile(lab.pki, extra=f"verify-x509-name {name} {kind}\n")
        theirs = lab.openvpn(lab.cli, prof, f"cnref-ovpn-{len(lab.procs)}", wait=0)
        procs.append(theirs)
        assert theirs.wait_for("VERIFY X509NAME ERROR: O=x, CN=vpn-a, CN=vpn-b", 20), theirs.log()[-2000:]
        theirs.stop(8)
        ours = lab.ours(lab.cli, prof, f"cnref-ours-{len(lab.procs)}", wait=0)
        procs.append(ours)
        assert ours.wait_for(f"verify-x509-name {name} {kind}: peer certificate does not match", 20), \
            ours.log()[-2000:]
        assert "tunnel up" not in ours.log()
        ours.stop(8)


@pytest.mark.parametrize("server", ["openvpn", "ours"])
@pytest.mark.parametrize("client", list(UNUSABLE))
def test_a_last_cn_openvpn_cannot_use_as_it_is_gets_no_tunnel(lab, procs, server, client):
    """No CN or one over 64 bytes: OpenVPN refuses ("could not extract CN"), so do we. A NUL:
    OpenVPN names the client `admin` (its C string ends there), impersonating admin; we refuse."""
    cfg, seen = _server_with_ccd_and_script(lab, f"{server}-{client}")
    if server == "openvpn":
        srv = lab.openvpn(lab.srv, cfg, f"unsrv-{len(lab.procs)}")
    else:
        srv = lab.ours(lab.srv, cfg, f"unsrv-{len(lab.procs)}", pattern=r"listening on UDP")
    procs.append(srv)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client=client), f"uncli-{len(lab.procs)}", wait=0)
    procs.append(cli)
    if server == "openvpn" and client == "nulcn":
        assert cli.wait_for("Initialization Sequence Completed", 20), srv.log()[-2000:]
        assert seen.read_text().splitlines()[0] == "admin"          # OpenVPN's name for it
        return
    assert srv.wait_for("could not extract CN", 20), srv.log()[-2000:]
    assert not cli.wait_for("Initialization Sequence Completed", 1)
    assert not seen.exists()


def _client_named(lab, key: str, cn: str, asn1_type: str | None = None) -> None:
    """A client certificate `key` with the subject O=x, CN=`cn` (a name the lab's `/O=x/CN=a`
    spelling cannot hold); `asn1_type`: the CN's string type, e.g. a T61String holding cn's UTF-8
    bytes (what `openssl req` without -utf8 writes), which OpenSSL reads as Latin-1."""
    if key in lab.pki.clients:
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.name import _ASN1Type
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from appliance.certs import issue
    from lab.pki import _write
    ca = x509.load_pem_x509_certificate(lab.pki.ca.read_bytes())
    ca_key = serialization.load_pem_private_key((lab.pki.dir / "ca.key").read_bytes(), None)
    kind = {"_type": getattr(_ASN1Type, asn1_type)} if asn1_type else {}
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn, **kind)])
    lab.pki.clients[key] = _write(lab.pki.dir / key, *issue(key, (ca, ca_key), ExtendedKeyUsageOID.CLIENT_AUTH, name))


@pytest.mark.parametrize("server", ["openvpn", "ours"])
@pytest.mark.parametrize("asn1_type", ["T61String", "NumericString"])
def test_a_t61string_name_is_read_as_openssl_reads_it(lab, procs, server, asn1_type):
    """OpenVPN names that client `cafÃ©` (its bytes one per character): its ccd file is that
    name's, its script sees that name, never the ccd file of the UTF8String `café` another
    certificate holds -- ours read it as `café` and gave it that other client's options (a
    NumericString, which OpenSSL takes with any bytes, too, until ident14)."""
    t61 = asn1_type.lower()
    _client_named(lab, t61, "café", asn1_type)
    ccd = lab.tmp / f"ccd-{t61}-{server}"
    ccd.mkdir()
    (ccd / "café").write_text("ifconfig-push 198.19.0.50 255.255.255.0\n")
    (ccd / "cafÃ©").write_text("ifconfig-push 198.19.0.70 255.255.255.0\n")
    seen = lab.tmp / f"connect-{t61}-{server}.log"
    script = lab.write(f"connect-{t61}-{server}.sh",
                       f"#!/bin/sh\nprintf '%s\\n' \"$common_name\" \"$tls_id_0\" \"$X509_0_CN\" >> {seen}\n")
    script.chmod(0o755)
    cfg = server_config(lab.pki, extra=f"client-config-dir {ccd}\nscript-security 2\nclient-connect {script}\n")
    procs.append(lab.udp_server(server, cfg, f"t61srv-{len(lab.procs)}"))
    procs.append(lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client=t61), f"t61cli-{len(lab.procs)}"))
    assert _tun_ip(lab.cli) == "198.19.0.70", procs[0].log()[-2000:]
    assert seen.read_text(encoding="utf-8").splitlines() == ["cafÃ©", "O=x, CN=cafÃ©", "cafÃ©"]


# The ccd file OpenVPN 2.6 reads for a client (platform_gen_path, multi.c): its name with `/`
# made `_` (`.` and `..` name none); the DEFAULT file when it has none of its own.
CCD_CASES = {"slash": ("ops/dept", "ops_dept"), "dot": (".hidden", ".hidden"), "default": (None, "DEFAULT")}


@pytest.mark.parametrize("server", ["openvpn", "ours"])
@pytest.mark.parametrize("case", list(CCD_CASES))
def test_a_ccd_disable_is_found_where_openvpn_looks_for_it(lab, procs, server, case):
    """The operator disables a client in the file OpenVPN reads for it: ccd/ops_dept for the
    name `ops/dept`, ccd/.hidden for `.hidden`, ccd/DEFAULT for everyone without a file. Ours
    looked for no file for the first two and never read DEFAULT: those clients got in."""
    cn, file = CCD_CASES[case]
    key = f"ccd{case}"
    if cn is not None:
        _client_named(lab, key, cn)
    else:
        key = next(iter(lab.pki.clients))
    ccd = lab.tmp / f"ccd-{case}-{server}"
    ccd.mkdir()
    (ccd / file).write_text("disable\n")
    cfg = server_config(lab.pki, extra=f"client-config-dir {ccd}\n")
    procs.append(lab.udp_server(server, cfg, f"ccdsrv-{len(lab.procs)}"))
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client=key), f"ccdcli-{len(lab.procs)}", wait=0)
    procs.append(cli)
    assert cli.wait_for("AUTH_FAILED", 20), procs[0].log()[-2000:]
    assert "Initialization Sequence Completed" not in cli.log()
