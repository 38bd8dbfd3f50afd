"""OpenVPN server configs and client profiles for the lab, the same text for Debian's OpenVPN and
for our program."""
from __future__ import annotations

from .netns import BEHIND_IP, SRV_IP
from .pki import Pki


def _protection_lines(pki: Pki, protection: str, server: bool, client: str = "client1", inline: bool = False) -> str:
    if protection == "none":
        return ""
    if protection == "tls-auth":
        path = pki.dir / "static.key"
        if inline:
            return f"key-direction {0 if server else 1}\n<tls-auth>\n{path.read_text()}</tls-auth>\n"
        return f"tls-auth {path} {0 if server else 1}\n"
    if protection == "tls-crypt":
        path = pki.dir / "static.key"
        return f"<tls-crypt>\n{path.read_text()}</tls-crypt>\n" if inline else f"tls-crypt {path}\n"
    if protection == "tls-crypt-v2":
        path = pki.dir / ("v2server.key" if server else f"{client}.v2.key")
        return f"<tls-crypt-v2>\n{path.read_text()}</tls-crypt-v2>\n" if inline else f"tls-crypt-v2 {path}\n"
    raise ValueError(protection)


def server_config(pki: Pki, proto: str = "udp", cipher: str | None = None, protection: str = "tls-crypt",
                  reneg_sec: int | None = None, extra: str = "", port: int = 1194, auth: str | None = None,
                  topology: str = "subnet", nopool: bool = False) -> str:
    """`nopool`: `server` without its own pool, for an `ifconfig-pool` line in `extra` (2.6 refuses
    the pair otherwise)."""
    lines = [
        f"port {port}", f"proto {'tcp-server' if proto == 'tcp' else 'udp'}", "dev tun", f"topology {topology}",
        "server 198.19.0.0 255.255.255.0" + (" nopool" if nopool else ""), f"ca {pki.ca}", f"cert {pki.server_cert}", f"key {pki.server_key}",
        "dh none", "keepalive 5 30", "verb 3", f'push "route {BEHIND_IP.rsplit(".", 1)[0]}.0 255.255.255.0"',
        "remote-cert-tls client",
    ]
    if proto == "udp":
        lines.append("explicit-exit-notify 1")
    if cipher:
        lines.append(f"data-ciphers {cipher}")
    if auth:
        lines.append(f"auth {auth}")
    if reneg_sec is not None:
        lines.append(f"reneg-sec {reneg_sec}")
    return "\n".join(lines) + "\n" + _protection_lines(pki, protection, True) + extra


def client_profile(pki: Pki, proto: str = "udp", cipher: str | None = None, protection: str = "tls-crypt",
                   client: str = "client1", inline: bool = False, remotes: list[tuple[str, int, str]] | None = None,
                   extra: str = "", auth: str | None = None) -> str:
    cert, key = pki.clients[client]
    lines = ["client", "dev tun", f"proto {proto}", "nobind", "remote-cert-tls server", "verb 3"]
    for host, port, p in remotes or [(SRV_IP, 1194, proto)]:
        lines.append(f"remote {host} {port} {p}")
    if cipher:
        lines.append(f"data-ciphers {cipher}")
    if auth:
        lines.append(f"auth {auth}")
    body = "\n".join(lines) + "\n"
    if inline:
        body += f"<ca>\n{pki.ca.read_text()}</ca>\n<cert>\n{cert.read_text()}</cert>\n<key>\n{key.read_text()}</key>\n"
    else:
        body += f"ca {pki.ca}\ncert {cert}\nkey {key}\n"
    return body + _protection_lines(pki, protection, False, client, inline) + extra
