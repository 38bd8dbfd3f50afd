"""Start-up failures a config causes after parsing (cfgerr37): each one a single line naming the
file:line and the directive, before anything runs where OpenVPN 2.6 refuses before it starts, and
as a clean fatal exit (no traceback, no TUN left) where 2.6 too finds it only while starting.

What was found wrong (README "Thirty-fifth session (helper cfgerr37)"): a key file of the wrong
kind, a key not the certificate's, a truncated tls-auth/tls-crypt key said what was wrong but
not where; a server `local` address not on the host ended in a traceback; a client's kept
retrying it for ever; a `dev` name of a non-TUN device, a management socket that could not be
bound, a missing `[wan]` NIC named no line; a status file in a missing directory and a missing
client-config-dir were not refused at all; an auth-user-pass file without a password sent an
empty one."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue
from appliance.gateway.credentials import ask_credentials
from appliance.host.process_files import check_start_paths
from appliance.openvpn import keyfiles
from appliance.openvpn.config import ConfigError, load_config
from appliance.openvpn.settings import check_key_material


def _pem(c) -> bytes:
    return c.public_bytes(serialization.Encoding.PEM)


def _kpem(k) -> bytes:
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cfgerr37")
    ca = issue("Startup CA", None, None)
    srv = issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)
    stranger = issue("stranger", None, None)
    (d / "ca.crt").write_bytes(_pem(ca[0]))
    (d / "server.crt").write_bytes(_pem(srv[0]))
    (d / "server.key").write_bytes(_kpem(srv[1]))
    (d / "other.key").write_bytes(_kpem(stranger[1]))
    static = keyfiles.generate_static_key()
    (d / "static.key").write_text(static)
    (d / "trunc.key").write_text("\n".join(static.splitlines()[:8]) + "\n")
    (d / "v2server.key").write_text(keyfiles.generate_tls_crypt_v2_server_key())
    (d / "one.txt").write_text("onlyuser\n")
    (d / "ccd").mkdir()
    return d


def _server(d: Path, **over: str | None) -> str:
    lines = {"port": "1194", "proto": "udp", "dev": "tun", "topology": "subnet",
             "server": "198.19.0.0 255.255.255.0", "ca": f"{d}/ca.crt", "cert": f"{d}/server.crt",
             "key": f"{d}/server.key", "dh": "none", "tls-crypt": f"{d}/static.key"}
    lines.update(over)
    return "".join(f"{k} {v}\n" for k, v in lines.items() if v is not None)


def _line_of(text: str, directive: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if ln.split()[0] == directive)


# (name, directive blamed, overrides, words the message has)
KEY_MATERIAL = [
    ("key is a certificate", "key", {"key": "{d}/server.crt"}, "private key"),
    ("cert is a key", "cert", {"cert": "{d}/server.key"}, "certificate"),
    ("ca is a key", "ca", {"ca": "{d}/server.key"}, "certificate"),
    ("key of another cert", "key", {"key": "{d}/other.key"}, "not the one of the certificate"),
    ("tls-crypt truncated", "tls-crypt", {"tls-crypt": "{d}/trunc.key"}, "END OpenVPN Static key"),
    ("tls-crypt is a cert", "tls-crypt", {"tls-crypt": "{d}/server.crt"}, "BEGIN OpenVPN Static key"),
    ("tls-auth truncated", "tls-auth", {"tls-crypt": None, "tls-auth": "{d}/trunc.key 0"}, "END OpenVPN Static key"),
    ("tls-crypt-v2 static key on a server", "tls-crypt-v2", {"tls-crypt": None, "tls-crypt-v2": "{d}/static.key"},
     "tls-crypt-v2 server key"),
]


@pytest.mark.parametrize("name,directive,over,words", KEY_MATERIAL, ids=[c[0] for c in KEY_MATERIAL])
def test_key_material_errors_name_file_line_and_directive(files, name, directive, over, words) -> None:
    text = _server(files, **{k: (v.format(d=files) if v else v) for k, v in over.items()})
    conf = files / f"{name.replace(' ', '_')}.conf"
    conf.write_text(text)
    opts = load_config(str(conf))                # the parser takes each value: it is the start that fails
    with pytest.raises(ConfigError) as e:
        check_key_material(opts)
    assert str(e.value).startswith(f"{conf}:{_line_of(text, directive)}: {directive}: "), str(e.value)
    assert words in str(e.value)
    assert "\n" not in str(e.value)


def test_tls_crypt_v2_server_key_on_a_client(files) -> None:
    text = (f"client\ndev tun\nremote 198.18.200.1 1194\nca {files}/ca.crt\ncert {files}/server.crt\n"
            f"key {files}/server.key\ntls-crypt-v2 {files}/v2server.key\n")
    conf = files / "v2client.conf"
    conf.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{conf}:7: tls-crypt-v2: tls-crypt-v2 client key: missing"):
        check_key_material(load_config(str(conf)))


START_PATHS = [
    ("status in a missing directory", "status", {"status": "{d}/missing/x/status.log"}, "does not exist"),
    ("status is a directory", "status", {"status": "{d}/ccd"}, "is a directory"),
    ("client-config-dir missing", "client-config-dir", {"client-config-dir": "{d}/nodir"}, "is not a directory"),
]


@pytest.mark.parametrize("name,directive,over,words", START_PATHS, ids=[c[0] for c in START_PATHS])
def test_start_paths_refused_at_their_line(files, name, directive, over, words) -> None:
    text = _server(files, **{k: v.format(d=files) for k, v in over.items()})
    conf = files / f"{name.replace(' ', '_')}.conf"
    conf.write_text(text)
    with pytest.raises(ConfigError) as e:
        check_start_paths(load_config(str(conf)))
    assert str(e.value).startswith(f"{conf}:{_line_of(text, directive)}: {directive}: ")
    assert words in str(e.value)


def test_start_paths_that_exist_pass(files) -> None:
    conf = files / "fine.conf"
    conf.write_text(_server(files, status=f"{files}/status.log", **{"client-config-dir": f"{files}/ccd"}))
    check_start_paths(load_config(str(conf)))


def test_auth_user_pass_file_without_password_refused_without_terminal(files, monkeypatch) -> None:
    conf = files / "aup.conf"
    conf.write_text(f"client\ndev tun\nremote 198.18.200.1 1194\nca {files}/ca.crt\nauth-user-pass {files}/one.txt\n")
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    with pytest.raises(ConfigError, match=rf"^{conf}:5: auth-user-pass: no terminal to ask for the password"):
        ask_credentials(load_config(str(conf)))


# ------------------------------------------------------------------ the real program, in a netns

VPN = [sys.executable, "-m", "appliance"]
NS = f"cfgerr37-{os.getpid()}"


@pytest.fixture(scope="module")
def netns():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2")
    subprocess.run(["ip", "netns", "add", NS], check=True)
    subprocess.run(["ip", "-n", NS, "link", "set", "lo", "up"], check=True)
    try:
        yield NS
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)


def _run_in(ns: str, conf: Path, hold: socket.socket | None = None) -> tuple[int, str, str]:
    """Run `vpn-appliance run conf` in `ns` (bounded: 60 s); (status, its output, `ip link` after)."""
    argv = ["ip", "netns", "exec", ns, *VPN, "run", str(conf)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                       cwd=Path(__file__).resolve().parents[2])
    links = subprocess.run(["ip", "-n", ns, "-br", "link"], capture_output=True, text=True).stdout
    return p.returncode, p.stdout + p.stderr, links


def _holder(ns: str, kind: int, port: int, reuse: bool = False) -> subprocess.Popen:
    """A process in `ns` holding `port` (UDP or TCP) until its stdin closes; `reuse`: with
    SO_REUSEADDR, as a TCP listener has it and as our UDP server's socket had it (cfg38)."""
    tcp = kind == socket.SOCK_STREAM
    code = (f"import socket,sys;s=socket.socket(socket.AF_INET,{kind});"
            f"{'s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);' if tcp or reuse else ''}"
            f"s.bind(('0.0.0.0',{port}));"
            f"{'s.listen();' if tcp else ''}print('held',flush=True);sys.stdin.read()")
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    return p


# (name, overrides, directive blamed, words, port held: (kind, port) or None)
RUNS = [
    ("server local not on the host", {"local": "198.18.99.99"}, "local", "Cannot assign requested address", None),
    ("server udp port in use", {}, "port", "Address already in use", (socket.SOCK_DGRAM, 1194)),
    # Another of ours (it set SO_REUSEADDR on UDP until cfg38): both sockets shared the port and the
    # kernel split the clients between them; 2.6 sets it on TCP only and fails to start.
    ("server udp port held with SO_REUSEADDR", {}, "port", "Address already in use",
     (socket.SOCK_DGRAM, 1194, True)),
    ("server management port in use", {"management": "127.0.0.1 7505"}, "management", "Address already in use",
     (socket.SOCK_STREAM, 7505)),
    ("server management socket directory missing", {"management": "{d}/missing/sock unix"}, "management",
     "No such file or directory", None),
    ("server dev names a non-TUN device", {"dev": "lo"}, "dev", "is not a TUN device", None),
]


@pytest.mark.root
@pytest.mark.netns
@pytest.mark.parametrize("name,over,directive,words,hold", RUNS, ids=[c[0] for c in RUNS])
def test_run_fails_with_one_located_line(netns, files, name, over, directive, words, hold) -> None:
    text = _server(files, **{k: v.format(d=files) for k, v in over.items()})
    conf = files / f"{name.replace(' ', '_')}.conf"
    conf.write_text(text)
    holder = _holder(netns, *hold) if hold else None
    try:
        rc, out, links = _run_in(netns, conf)
    finally:
        if holder is not None:
            holder.communicate(timeout=10)
    assert rc == 1, out
    assert "Traceback" not in out
    fatal = [ln for ln in out.splitlines() if f"{conf}:{_line_of(text, directive)}: {directive}: " in ln]
    assert len(fatal) == 1 and words in fatal[0], out
    assert "tun" not in links, links                 # the TUN made before the failure is gone again


@pytest.mark.root
@pytest.mark.netns
def test_client_local_not_on_the_host_ends_the_run(netns, files) -> None:
    """2.6: "Socket bind failed on local address", fatal. Ours retried it as an unreachable
    server, without end by default (no connect-retry-max here: a hang is the 60 s timeout)."""
    text = (f"client\ndev tun\nremote 198.18.200.1 1194\nlocal 198.18.99.99\nca {files}/ca.crt\n"
            f"cert {files}/server.crt\nkey {files}/server.key\nremote-cert-tls server\n")
    conf = files / "client_local.conf"
    conf.write_text(text)
    rc, out, links = _run_in(netns, conf)
    assert rc == 1, out
    assert f"{conf}:4: local: cannot bind 198.18.99.99:1194: Cannot assign requested address" in out
    assert "tun" not in links
