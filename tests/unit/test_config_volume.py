"""The config volume and the config bundle, without a VM: which files a config names and how they
are renamed, a broken config refused with file:line (by `config-disk` and by the image build), the
FAT label probe PID 1 uses, and the volume `config-disk` writes (Debian's dosfstools + mtools)."""
from __future__ import annotations

import base64
import datetime
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.boot import config_volume
from appliance.config.bundle import collect, write_dir
from appliance.config.schema import load_appliance_config, validate_runtime
from appliance.fatimage import make_fat
from appliance.openvpn.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _pem(obj) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """ca.crt, client.crt, client.key and a tls-crypt key in their own directory."""
    d = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.timezone.utc)
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # noqa: E731
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("CA")).issuer_name(name("CA")).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    k = ec.generate_private_key(ec.SECP256R1())
    c = (x509.CertificateBuilder().subject_name(name("client")).issuer_name(ca.subject).public_key(k.public_key())
         .serial_number(2).not_valid_before(now - datetime.timedelta(days=1))
         .not_valid_after(now + datetime.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(True, False, False, False, True, False, False, False, False), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
         .sign(ca_key, hashes.SHA256()))
    (d / "ca.crt").write_bytes(_pem(ca))
    (d / "client.crt").write_bytes(_pem(c))
    (d / "client.key").write_bytes(_pem(k))
    hexkey = secrets.token_hex(256)
    (d / "ta.key").write_text("-----BEGIN OpenVPN Static key V1-----\n"
                              + "\n".join(hexkey[i:i + 32] for i in range(0, 512, 32))
                              + "\n-----END OpenVPN Static key V1-----\n")
    (d / "auth.txt").write_text("alice\nsecret\n")
    return d


def _config(tmp: Path, pki: Path, extra: str = "") -> Path:
    conf = tmp / "conf"
    (conf / "profiles").mkdir(parents=True)
    (conf / "profiles/office vpn.ovpn").write_text(
        "client\ndev tun\nproto udp\nremote 198.18.0.1 1194\nremote-cert-tls server\n"
        f"ca ../../pki/ca.crt\ncert {pki}/client.crt\nkey \"{pki}/client.key\"   # quoted\n"
        f"tls-crypt {pki}/ta.key\nauth-user-pass {pki}/auth.txt\n" + extra)
    (tmp / "pki").symlink_to(pki)
    (conf / "appliance.toml").write_text(
        '[appliance]\nhostname = "x"\n\n[wan]\nname = "eth0"\naddress = "198.18.0.2/24"\n'
        'gateway = "198.18.0.1"\n\n[vpn]\nrole = "client"\nconfig = "profiles/office vpn.ovpn"  # office\n')
    return conf / "appliance.toml"


def test_bundle_holds_every_named_file_renamed_and_loads_from_its_own_directory(tmp_path, pki):
    b = collect(_config(tmp_path, pki))
    assert sorted(b.files) == ["appliance.toml", "auth.txt", "ca.crt", "client.crt", "client.key",
                               "office_vpn.ovpn", "ta.key"]
    assert b.files["ca.crt"] == (pki / "ca.crt").read_bytes()
    toml = b.files["appliance.toml"].decode()
    assert 'config = "office_vpn.ovpn"  # office' in toml
    prof = b.files["office_vpn.ovpn"].decode()
    assert "ca ca.crt\ncert client.crt\nkey client.key\ntls-crypt ta.key\nauth-user-pass auth.txt\n" in prof
    assert str(pki) not in prof
    # What the VM does with it: the bundle alone, in another directory, passes `check`.
    target = tmp_path / "etc"
    write_dir(b, target)
    cfg = load_appliance_config(str(target / "appliance.toml"))
    validate_runtime(cfg)
    assert oct((target / "client.key").stat().st_mode & 0o777) == "0o600"


def test_crl_verify_file_is_bundled(tmp_path, pki):
    from cryptography.x509 import CertificateRevocationListBuilder
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    crl = (CertificateRevocationListBuilder().issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA")]))
           .last_update(now).next_update(now + datetime.timedelta(days=1)).sign(ca_key, hashes.SHA256()))
    (tmp_path / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    b = collect(_config(tmp_path, pki, f"crl-verify {tmp_path}/crl.pem\n"))
    assert "crl.pem" in b.files
    assert "crl-verify crl.pem\n" in b.files["office_vpn.ovpn"].decode()


def test_broken_config_is_refused_with_file_line(tmp_path, pki):
    toml = _config(tmp_path, pki)
    toml.write_text(toml.read_text().replace('"198.18.0.2/24"', '"not-an-address"'))
    with pytest.raises(ConfigError) as e:
        collect(toml)
    assert str(e.value).startswith(f"{toml}:6: wan.address: ")
    r = subprocess.run([sys.executable, "-m", "appliance", "config-disk", str(toml), "-o", str(tmp_path / "c.img")],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 2 and f"{toml}:6: wan.address" in r.stderr
    assert not (tmp_path / "c.img").exists()
    # The image build refuses it too, before downloading anything.
    r = subprocess.run([sys.executable, str(REPO / "image/build.py"), "--config", str(toml), "--out",
                        str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and f"{toml}:6: wan.address" in r.stderr, r.stderr
    assert not (tmp_path / "out/initramfs.img").exists()


def test_missing_named_file_is_refused_with_file_line(tmp_path, pki):
    toml = _config(tmp_path, pki)
    prof = toml.parent / "profiles/office vpn.ovpn"
    prof.write_text(prof.read_text().replace("ca ../../pki/ca.crt", "ca ../../pki/nope.crt"))
    with pytest.raises(ConfigError) as e:
        collect(toml)
    assert f"{prof}:6: ca: cannot read" in str(e.value)


def test_fat_label_probe(tmp_path):
    small = tmp_path / "small.img"
    make_fat(small, {"appliance.toml": b"x"}, "VPNCONFIG", "12345678", 1_700_000_000)
    assert config_volume.fat_label(small.read_bytes()[:512]) == "VPNCONFIG"
    big = tmp_path / "big.img"
    make_fat(big, {"a": b"x"}, "VPN-BOOT", "12345678", 1_700_000_000, size_bytes=40 << 20)
    assert config_volume.fat_label(big.read_bytes()[:512]) == "VPN-BOOT"
    assert config_volume.fat_label(b"\0" * 512) is None
    assert config_volume.fat_label(os.urandom(100)) is None
    # find(): the first block device whose boot sector carries the label
    sysb, dev = tmp_path / "sys", tmp_path / "dev"
    sysb.mkdir()
    dev.mkdir()
    for name, img in (("vda", big), ("vda1", None), ("vdb", small), ("loop0", small)):
        (sysb / name).mkdir()
        if img is not None:
            (dev / name).write_bytes(img.read_bytes()[:4096])
    assert config_volume.find(str(sysb), str(dev)) == str(dev / "vdb")
    (dev / "vdb").write_bytes(big.read_bytes()[:4096])
    assert config_volume.find(str(sysb), str(dev)) is None


def test_config_disk_writes_a_reproducible_volume(tmp_path, pki):
    toml = _config(tmp_path, pki)
    outs = []
    for n in ("a.img", "b.img"):
        r = subprocess.run([sys.executable, "-m", "appliance", "config-disk", str(toml), "-o", str(tmp_path / n)],
                           capture_output=True, text=True, cwd=REPO, timeout=60)
        assert r.returncode == 0, r.stderr
        outs.append((tmp_path / n).read_bytes())
    assert outs[0] == outs[1]
    assert config_volume.fat_label(outs[0][:512]) == "VPNCONFIG"
    r = subprocess.run(["mtype", "-i", str(tmp_path / "a.img"), "::/office_vpn.ovpn"], capture_output=True,
                       text=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    assert "tls-crypt ta.key" in r.stdout


def test_inline_profile_naming_files_is_bundled(tmp_path, pki):
    toml = tmp_path / "appliance.toml"
    toml.write_text('[wan]\nname = "eth0"\naddress = "198.18.0.2/24"\n\n[vpn]\nrole = "client"\n'
                    "inline = '''\nclient\ndev tun\nremote 198.18.0.1 1194\nremote-cert-tls server\n"
                    f"ca {pki}/ca.crt\ncert {pki}/client.crt\nkey {pki}/client.key\n'''\n")
    b = collect(toml)
    assert sorted(b.files) == ["appliance.toml", "ca.crt", "client.crt", "client.key"]
    assert "ca ca.crt\ncert client.crt\nkey client.key\n'''" in b.files["appliance.toml"].decode()
    write_dir(b, tmp_path / "etc")
    validate_runtime(load_appliance_config(str(tmp_path / "etc/appliance.toml")))


def test_bundle_counts_lines_at_lf_only(tmp_path, pki):
    """U+2028 (or VT, FF, U+0085...) in a comment ends no line for OpenVPN nor TOML: str.splitlines
    counted one more, so the renamed `ca` went onto the comment's tail, and the profile kept naming
    the original path; in the TOML the `config =` line was missed and the bundle refused."""
    toml = _config(tmp_path, pki)
    prof = toml.parent / "profiles/office vpn.ovpn"
    prof.write_text(prof.read_text().replace("ca ", "# note\u2028tail\x0bmore\nca ", 1))
    toml.write_text(toml.read_text().replace("[vpn]\n", "[vpn]\n# set by\u2028the office\n", 1))
    b = collect(toml)
    assert 'config = "office_vpn.ovpn"  # office' in b.files["appliance.toml"].decode()
    text = b.files["office_vpn.ovpn"].decode()
    assert "# note\u2028tail\x0bmore\nca ca.crt\ncert client.crt\n" in text
    assert str(pki) not in text and "../../pki" not in text


def test_inline_profile_after_a_unicode_line_separator_is_bundled(tmp_path, pki):
    toml = tmp_path / "appliance.toml"
    toml.write_text('# office\u2028vpn\n[wan]\nname = "eth0"\naddress = "198.18.0.2/24"\n\n[vpn]\nrole = "client"\n'
                    "inline = '''\nclient\ndev tun\nremote 198.18.0.1 1194\nremote-cert-tls server\n"
                    f"ca {pki}/ca.crt\ncert {pki}/client.crt\nkey {pki}/client.key\n'''\n")
    b = collect(toml)
    assert "ca ca.crt\ncert client.crt\nkey client.key\n'''" in b.files["appliance.toml"].decode()


def test_a_profile_with_latin1_bytes_is_bundled_as_its_bytes(tmp_path, pki):
    """OpenVPN 2.6 reads a profile as bytes, and so does `run` (a Latin-1 comment or `push` text is
    no error): `config-disk` and the image build must take the same profile, bytes kept, not stop
    on a UnicodeDecodeError traceback."""
    toml = _config(tmp_path, pki, "# caf\xe9 office\n")
    prof = toml.parent / "profiles/office vpn.ovpn"
    prof.write_bytes(prof.read_text().encode("latin-1"))
    b = collect(toml)
    assert b"# caf\xe9 office\n" in b.files["office_vpn.ovpn"]
    target = tmp_path / "etc"
    write_dir(b, target)
    validate_runtime(load_appliance_config(str(target / "appliance.toml")))


def test_a_servers_password_file_is_bundled_and_read_from_the_bundle(tmp_path, pki):
    """`auth-user-pass-verify FILE passdb` is read after parsing (at start and at each reload), so
    no parse-time reader sees it: the bundle left it out, and a server VM booted without it."""
    conf = tmp_path / "conf"
    (conf / "auth").mkdir(parents=True)
    r = subprocess.run([sys.executable, "-m", "appliance", "passwd", "alice"], input="pw\n",
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    (conf / "auth/users.db").write_text(r.stdout)
    (conf / "server.ovpn").write_text(
        "port 1194\nproto udp\ndev tun\ntopology subnet\nserver 198.19.0.0 255.255.255.0\ndh none\n"
        f"ca {pki}/ca.crt\ncert {pki}/client.crt\nkey {pki}/client.key\n"
        "auth-user-pass-verify auth/users.db passdb\nverify-client-cert none\nusername-as-common-name\n")
    toml = conf / "appliance.toml"
    toml.write_text('[wan]\nname = "eth0"\ndhcp = true\n\n[vpn]\nrole = "server"\nconfig = "server.ovpn"\n')
    b = collect(toml)
    assert b.files["users.db"] == (conf / "auth/users.db").read_bytes()
    assert "auth-user-pass-verify users.db passdb\n" in b.files["server.ovpn"].decode()
    target = tmp_path / "etc"
    write_dir(b, target)
    cfg = load_appliance_config(str(target / "appliance.toml"))
    validate_runtime(cfg)
    assert cfg.vpn_options.auth_user_pass_verify[0] == str(target / "users.db")


def test_files_the_bundle_copies_keep_the_size_limits_of_their_kind(tmp_path, pki):
    """config-disk and the image build read what `run` reads with the same limits (regular_file):
    a client-config-dir entry over a ccd file's limit is refused by name, not read whole."""
    from appliance.openvpn.regular_file import CCD
    ccd = tmp_path / "ccd"
    ccd.mkdir()
    with open(ccd / "bob", "wb") as f:
        f.truncate(CCD.limit + 1)                  # sparse: no disk used
    toml = _config(tmp_path, pki)
    prof = toml.parent / "profiles/office vpn.ovpn"
    prof.write_text(prof.read_text().replace("client\n", "").replace("remote 198.18.0.1 1194\n", "")
                    .replace("remote-cert-tls server\n", "").replace(f"auth-user-pass {pki}/auth.txt\n", "")
                    + f"port 1194\ntopology subnet\nserver 198.19.0.0 255.255.255.0\ndh none\nclient-config-dir {ccd}\n")
    toml.write_text(toml.read_text().replace('role = "client"', 'role = "server"'))
    with pytest.raises(OSError) as e:
        collect(toml)
    assert e.value.filename == str(ccd / "bob") and "too large" in e.value.strerror


def _server(tmp_path: Path, pki: Path, extra: str) -> Path:
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "server.ovpn").write_text(
        "port 1194\nproto udp\ndev tun\ntopology subnet\nserver 198.19.0.0 255.255.255.0\ndh none\n"
        f"ca {pki}/ca.crt\ncert {pki}/client.crt\nkey {pki}/client.key\n" + extra)
    toml = conf / "appliance.toml"
    toml.write_text('[wan]\nname = "eth0"\ndhcp = true\n\n[vpn]\nrole = "server"\nconfig = "server.ovpn"\n')
    return toml


def test_a_crl_directory_is_bundled_whole_or_refused_at_its_line(tmp_path, pki):
    """`crl-verify DIR dir` revokes the serials DIR names: the bundle kept the first 256 entries,
    and the 257th revoked certificate got into the VM. Every entry is there (by its name, which
    is what revokes), or the config is refused at the directive's line."""
    from appliance.config.bundle import MAX_FILES
    from appliance.openvpn.crl import CrlChecker
    revoked = tmp_path / "revoked"
    revoked.mkdir()
    for serial in range(1000, 1000 + MAX_FILES):
        (revoked / str(serial)).write_bytes(b"")
    toml = _server(tmp_path, pki, f"crl-verify {revoked} dir\n")
    b = collect(toml)
    assert sorted(n for n in b.files if n.startswith("revoked/")) == sorted(f"revoked/{s}" for s in range(1000, 1000 + MAX_FILES))
    target = tmp_path / "etc"
    write_dir(b, target)
    cfg = load_appliance_config(str(target / "appliance.toml"))
    checker = CrlChecker(*cfg.vpn_options.crl_verify)

    class Cert:
        serial_number = 1000 + MAX_FILES - 1
    assert checker.revoked(Cert()) is not None
    (revoked / str(1000 + MAX_FILES)).write_bytes(b"")
    with pytest.raises(ConfigError) as e:
        collect(toml)
    assert (e.value.path, e.value.line, e.value.directive) == (str(toml.parent / "server.ovpn"), 10, "crl-verify")
    assert f"more than the {MAX_FILES}" in e.value.message


@pytest.mark.parametrize("names", [["a:b"], ["Bob", "bob"], ["jos\u00e9"], ["x."]],
                         ids=["colon", "case", "non-ascii", "trailing-dot"])
def test_a_ccd_entry_the_config_volume_cannot_name_is_refused(tmp_path, pki, names):
    """A ccd file is found by its client's common name: on the config volume (FAT, read by the
    VM with iocharset=ascii) mtools wrote `a:b` as `b` -- the `disable` for client a:b became
    client b's file, and a:b got in --, `Bob` and `bob` are one name, a name out of ASCII none.
    Refused by name at the client-config-dir line, not written under another name."""
    ccd = tmp_path / "ccd"
    ccd.mkdir()
    (ccd / "alice").write_text("push \"route 198.18.7.0 255.255.255.0\"\n")
    for n in names:
        (ccd / n).write_text("disable\n")
    toml = _server(tmp_path, pki, f"client-config-dir {ccd}\n")
    with pytest.raises(ConfigError) as e:
        collect(toml)
    assert (e.value.line, e.value.directive) == (10, "client-config-dir")
    assert repr(names[-1]) in e.value.message
    for n in names:
        (ccd / n).unlink()
    assert sorted(n for n in collect(toml).files if n.startswith("ccd/")) == ["ccd/alice"]


def test_a_read_only_pool_file_is_bundled(tmp_path, pki):
    """`ifconfig-pool-persist FILE 0` is only read (OpenVPN's meaning): the operator's fixed
    address per name. Left out of the bundle, the VM's clients got other addresses."""
    toml = _server(tmp_path, pki, "ifconfig-pool-persist ipp.txt 0\n")
    (toml.parent / "ipp.txt").write_text("bob,198.19.0.50,\n")
    b = collect(toml)
    assert b.files["ipp.txt"] == b"bob,198.19.0.50,\n"
    target = tmp_path / "etc"
    write_dir(b, target)
    from appliance.openvpn.poolfile import read
    cfg = load_appliance_config(str(target / "appliance.toml"))
    assert read(cfg.vpn_options.ifconfig_pool_persist[0]) == {"bob": ("198.19.0.50", None)}


def test_two_files_differing_in_case_get_two_names(tmp_path, pki):
    """FAT ignores case: `CA.crt` and `ca.crt` under one name made mcopy fail (or one file both)."""
    d = tmp_path / "other"
    d.mkdir()
    (d / "CA.crt").write_bytes((pki / "ca.crt").read_bytes())
    toml = _server(tmp_path, pki, f"extra-certs {d}/CA.crt\n")
    b = collect(toml)
    names = [n for n in b.files if n.lower().endswith("ca.crt")]
    assert len(names) == 2 and len({n.lower() for n in names}) == 2, names


def test_an_encrypted_key_its_askpass_file_and_a_nocache_password_file_reach_the_vm(tmp_path, pki):
    """The VM has no terminal: the key's password comes from the bundled askpass file, and with
    auth-nocache the bundled auth-user-pass file is what the client reads at each connection."""
    key = serialization.load_pem_private_key((pki / "client.key").read_bytes(), None)
    (tmp_path / "enc.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"key pw")))
    (tmp_path / "pass.txt").write_text("key pw\n")
    toml = _config(tmp_path, pki, "auth-nocache\n")
    prof = toml.parent / "profiles/office vpn.ovpn"
    prof.write_text(prof.read_text().replace(f'key "{pki}/client.key"   # quoted\n',
                                             f"key {tmp_path}/enc.key\naskpass {tmp_path}/pass.txt\n"))
    b = collect(toml)
    text = b.files["office_vpn.ovpn"].decode()
    assert "key enc.key\naskpass pass.txt\n" in text and "auth-user-pass auth.txt\n" in text
    target = tmp_path / "etc"
    write_dir(b, target)
    cfg = load_appliance_config(str(target / "appliance.toml"))
    validate_runtime(cfg)
    o = cfg.vpn_options
    assert serialization.load_pem_private_key(o.key, None).public_key() == key.public_key()
    assert o.auth_user_pass is None and o.auth_user_pass_file == str(target / "auth.txt")


def test_an_auth_gen_token_secret_reaches_the_server_vm(tmp_path, pki):
    """auth-gen-token-secret: the VM's server must sign with the operator's key (so tokens outlive
    a reboot and pass between servers that share it), not a random one of its own."""
    from appliance.openvpn import gentoken
    raw = bytes(range(128))
    b64 = base64.b64encode(raw).decode()
    (tmp_path / "token.key").write_text(f"-----BEGIN {gentoken.PEM_NAME}-----\n{b64[:64]}\n{b64[64:]}\n"
                                        f"-----END {gentoken.PEM_NAME}-----\n")
    r = subprocess.run([sys.executable, "-m", "appliance", "passwd", "alice"], input="pw\n",
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    (tmp_path / "users.db").write_text(r.stdout)
    toml = _server(tmp_path, pki, f"auth-user-pass-verify {tmp_path}/users.db passdb\n"
                                  f"auth-gen-token 0 600\nauth-gen-token-secret {tmp_path}/token.key\n")
    b = collect(toml)
    assert "auth-gen-token-secret token.key\n" in b.files["server.ovpn"].decode()
    target = tmp_path / "etc"
    write_dir(b, target)
    cfg = load_appliance_config(str(target / "appliance.toml"))
    validate_runtime(cfg)
    assert cfg.vpn_options.auth_gen_token_secret == raw[64:96]
    assert cfg.vpn_options.auth_gen_token == (0, 600)


def test_a_capath_directory_is_bundled_and_read_from_the_bundle(tmp_path, pki):
    """`capath DIR` (pfSense's servers have one): its hashed CA and CRL files go with the config,
    each read as it is (c_rehash's links followed), and the line names the bundled directory.
    Before, the bundle left the line with the host's path: the VM refused to start ("not a
    readable directory") or, worse, used whatever directory of that name its own image holds."""
    from OpenSSL import crypto
    capath = tmp_path / "cadir"
    capath.mkdir()
    (capath / "ca.pem").write_bytes((pki / "ca.crt").read_bytes())
    h = f"{crypto.load_certificate(crypto.FILETYPE_PEM, (pki / 'ca.crt').read_bytes()).subject_name_hash():08x}"
    (capath / f"{h}.0").symlink_to("ca.pem")
    toml = _server(tmp_path, pki, f"capath {capath}\n")
    b = collect(toml)
    assert b.files[f"cadir/{h}.0"] == (pki / "ca.crt").read_bytes()
    assert "capath cadir\n" in b.files["server.ovpn"].decode()
    target = tmp_path / "etc"
    write_dir(b, target)
    for e in capath.iterdir():
        e.unlink()
    capath.rmdir()                                  # the VM has no such directory
    cfg = load_appliance_config(str(target / "appliance.toml"))
    validate_runtime(cfg)
    assert cfg.vpn_options.capath == str(target / "cadir")
