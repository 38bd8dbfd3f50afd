"""The script-env fuzz target (wan38): what a peer chooses reaching the environment of the
commands the appliance runs -- the server's (client-connect, auth-user-pass-verify via-env,
tls-verify: gateway/ops.py, authscript.py) and the client's (up, route-up: updown_env.py) -- and
the last step before exec (script_env.fit_env, scripts.run_limited).

Input: sections split at SEP, each optional:
  0. a client's key-method-2 message (decode_key_method_2_untrusted, as the server reads it):
     username, password, peer-info (IV_*/UV_*);
  1. a server's PUSH_REPLY text (parse_push_reply_untrusted, as the client reads it): pushed
     options, dhcp-option (foreign_option_N), setenv-safe, routes, ifconfig;
  2. a certificate subject: pairs (attribute type byte, value) with any characters (the CA's
     to choose, a careless CA's user's): X509_<depth>_<field>, common_name, tls_id_N;
  3. the config's own `setenv NAME VALUE` lines (the operator's: under the peer's values) and
     `x509-track` lines (the X509_* variables are then those fields').

Oracles (OpenVPN 2.6's env_set rules, setenv_str: CC_NAME names, CC_PRINT values):
- nothing escapes but the decoders' documented BadPacket / PushRejected;
- every name is non-empty, of ASCII letters, digits and `_` only (no `=`, so a value can never
  be read as another variable; 2.6 drops any other character from a name);
- no value holds a NUL (execve would fail: a script not run is a client refused or an `up`
  failed) or another control character (2.6's CC_PRINT drops them: a CR/LF in a value reached a
  script's `echo "$x" >> file` as a forged line);
- what fit_env passes is within ENV_MAX bytes and no variable past VAR_MAX;
- run_limited hands the environment to exec as a list of words, no shell (values are data,
  never interpreted): the fake Popen sees `shell` unset and the env encodable as execve takes it.
"""
from __future__ import annotations

import datetime
import re
import subprocess

from . import harness as h

SEP = b"\xff\xfe"
_NAME = re.compile(r"[A-Za-z0-9_]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

CLIENT_CONF = """client
dev tun
proto udp
remote 198.18.0.1 1194
ca ca.crt
cert client.crt
key client.key
setenv-safe KEEP mine
"""


def _subject_oids():
    from cryptography.x509.oid import NameOID
    return [NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME,
            NameOID.EMAIL_ADDRESS, NameOID.COUNTRY_NAME, NameOID.LOCALITY_NAME, NameOID.SERIAL_NUMBER,
            NameOID.DOMAIN_COMPONENT]


def _check_env(env: dict[str, str], where: str) -> None:
    for k, v in env.items():
        assert isinstance(k, str) and isinstance(v, str), (where, k)
        assert _NAME.fullmatch(k), f"{where}: variable name {k!r} is not as 2.6 cleans names"
        assert "\0" not in v, f"{where}: NUL in {k}"
        assert not _CONTROL.search(v), f"{where}: control character in {k}={v[:80]!r}"


class _FakePopen:
    seen: list[tuple] = []

    def __init__(self, args, **kw) -> None:
        assert isinstance(args, list) and all(isinstance(a, str) for a in args), args
        assert not kw.get("shell"), "a script run through a shell"
        env = kw["env"]
        for k, v in env.items():       # what os.execve takes (subprocess raises ValueError otherwise)
            kb, vb = k.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape")
            assert kb and b"=" not in kb and b"\0" not in kb and b"\0" not in vb, k
        self.pid = 0

    def wait(self, timeout=None) -> int:
        return 0


def make_script_env():
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from appliance.gateway import scripts
    from appliance.gateway.ops import peer_info_env
    from appliance.gateway.script_env import ENV_MAX, VAR_MAX, fit_env, with_globals
    from appliance.gateway.updown_env import up_env
    from appliance.openvpn import config as options
    from appliance.openvpn.errors import BadPacket
    from appliance.openvpn.keymethod import (PushRejected, decode_key_method_2_untrusted, parse_push_reply_untrusted,
                                             remap_name, split_text_messages_untrusted)
    from appliance.openvpn.tls import cert_env, common_name

    from .targets import _fake_files
    files = _fake_files()
    base = options.parse_config(CLIENT_CONF, "/fuzz/client.ovpn", read_file=lambda p: files[p.rsplit("/", 1)[-1]])
    key = ed25519.Ed25519PrivateKey.generate()
    oids = _subject_oids()
    t0 = datetime.datetime(2026, 1, 1)

    def cert_of(raw: bytes):
        attrs = []
        for part in raw.split(b"\0\1")[:12]:
            if not part:
                continue
            value = part[1:].decode("utf-8", "replace")
            if not value:
                continue
            attrs.append(x509.NameAttribute(oids[part[0] % len(oids)], value, _validate=False))
        if not attrs:
            return None
        name = x509.Name(attrs)
        try:
            return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                    .serial_number(1).not_valid_before(t0).not_valid_after(t0 + datetime.timedelta(days=1))
                    .sign(key, None))
        except ValueError:
            return None            # cryptography refuses it (a country code of the wrong length...)

    def one(data: bytes) -> None:
        parts = data.split(SEP, 3) + [b""] * 4
        km_raw, push_raw, subject_raw, setenv_raw = parts[:4]
        opts = base
        if setenv_raw:
            lines = []
            for line in setenv_raw.decode("utf-8", "replace").splitlines()[:8]:
                if line.startswith("x509-track "):      # the X509_* variables of those fields only
                    lines.append(line)
                    continue
                word = line.split(" ", 1)
                if len(word) == 2 and word[0].strip():
                    lines.append(f"setenv {word[0]} {word[1]}")
            try:
                opts = options.parse_config(CLIENT_CONF + "\n".join(lines) + "\n", "/fuzz/client.ovpn",
                                            read_file=lambda p: files[p.rsplit("/", 1)[-1]])
            except options.ConfigError:
                opts = base
        server_env = {"dev": "tun0", "script_type": "client-connect", "config": "/fuzz/server.conf"}
        # --- the server's view of a client: key-method-2, certificate
        e: dict[str, str] = {}
        if km_raw:
            try:
                km = decode_key_method_2_untrusted(km_raw, True)
            except BadPacket:
                km = None
            if km is not None:
                e["username"], e["password"] = remap_name(km.username), remap_name(km.password)
                e.update(peer_info_env(km.peer_info_dict()))
        cert = cert_of(subject_raw) if subject_raw else None
        chain = []
        if cert is not None:
            cn = common_name(cert)
            e["common_name"] = cn or ""
            e.update(cert_env(cert, 0, opts.x509_track))
            chain = [cert]
        env = with_globals(e, server_env, opts.setenv)
        _check_env(env, "server")
        # --- the client's view of a server: its push and its certificate
        pushed = None
        if push_raw:
            # As the client reads it: the control channel's split (a message with a control
            # byte refused whole, as 2.6.14), then the push parsed.
            msgs, _refused = split_text_messages_untrusted(push_raw + b"\0")
            for text in msgs[:1]:
                try:
                    pushed = parse_push_reply_untrusted(text)
                except (PushRejected, BadPacket):
                    pushed = None
        try:
            up = up_env(opts, pushed, remote=("198.18.0.1", 1194), chain=chain,
                        common_name=common_name(cert) or "" if cert is not None else "server", dev="tun0",
                        net_gateway="198.18.0.254", started=1.0, redirect=False)
        except ValueError as ex:
            raise AssertionError(f"up_env raised on a push the parser took: {ex}") from None
        _check_env(up, "client up")
        for where, full in (("server", env), ("client up", up)):
            fitted = fit_env(full, where)
            size = sum(len(k.encode("utf-8", "surrogateescape")) + len(v.encode("utf-8", "surrogateescape")) + 2
                       for k, v in fitted.items())
            assert size <= ENV_MAX, f"{where}: {size} bytes of environment"
            assert all(len(k) + len(v) + 1 <= VAR_MAX for k, v in fitted.items())
            real = scripts.subprocess.Popen
            scripts.subprocess.Popen = _FakePopen
            try:
                assert scripts.run_limited(["/fuzz/script", "arg"], fitted, 1.0) == 0
            finally:
                scripts.subprocess.Popen = real
    return one


def seeds() -> list[bytes]:
    from appliance.openvpn.keymethod import KeyMethod2, encode_key_method_2

    def km(user: str, pw: str, info: str) -> bytes:
        return encode_key_method_2(KeyMethod2(bytes(range(32)), bytes(32), "V4,dev-type tun", bytes(48),
                                              user, pw, info), True)
    subj = b"\0\1".join([bytes([0]) + b"alice", bytes([1]) + b"Example; rm -rf /", bytes([2]) + b"$(id)`x`"])
    return [
        km("alice", "secret", "IV_VER=2.6.14\nIV_PLAT=linux\nUV_X=$(reboot)\n") + SEP
        + b"PUSH_REPLY,route 10.0.0.0 255.0.0.0,dhcp-option DNS 10.0.0.1,setenv-safe MOTD hi there,ifconfig 10.8.0.2 "
          b"255.255.255.0,topology subnet" + SEP + subj + SEP + b"my-var.x v1\nPlain v2",
        km("bob\r\nforged=1", "pw\0x", "IV_A\x01=1\nIV_B=\x1b[31m\n") + SEP + b"PUSH_REPLY,setenv-safe a-b.c x\x7fy",
        km("x" * 300, "", "UV_" + "A" * 250 + "=" + "v" * 300) + SEP + b"PUSH_REPLY," + b",".join(
            b"dhcp-option DOMAIN d%d.example" % i for i in range(40)) + SEP + subj * 3,
        SEP + SEP + b"\0\1".join(bytes([i]) + "caf\u00e9 \u0085 \u2028".encode() for i in range(8)),
        SEP + b"PUSH_REPLY,echo $(x),setenv-safe PATH /tmp,setenv-safe =x y,dhcp-option DNS 10.0.0.1\"",
        SEP + SEP + subj + SEP + b"x509-track CN\nx509-track +OU\nx509-track emailAddress\nTAB \"a\tb\"",
    ]
