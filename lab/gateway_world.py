"""Client and server gateways on in-memory ports (lab/fakes.py): the real pump code, no root, no
kernel. The gateway tests' World (tests/gateway/conftest.py) and the lab's in-memory tools
(lab/reload_stall.py) share it: one place for how such a server and its clients are made."""
from __future__ import annotations

import struct

from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue
from appliance.gateway.auth import AuthChecker
from appliance.gateway.server_files import password_check
from appliance.gateway.client import ClientGateway
from appliance.gateway.server import ServerGateway
from appliance.openvpn.config import parse_config
from appliance.openvpn.settings import server_settings
from lab.fakes import FakeClock, FakeServerNet, FakeTunnelNetwork, MemoryNet, MemoryPorts, MemoryWaiter, run_pumps

SERVER_IP = "198.18.0.1"
CLIENT_IP = "198.18.0.2"
STATIC_KEY = "\n".join(["-----BEGIN OpenVPN Static key V1-----"]
                       + [bytes((i * 16 + j) % 256 for j in range(16)).hex() for i in range(16)]
                       + ["-----END OpenVPN Static key V1-----"])


def _pem(c) -> str:
    return c.public_bytes(serialization.Encoding.PEM).decode()


def _kpem(k) -> str:
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()).decode()


def _blocks(pki: dict, cert: tuple[str, str], protection: str) -> str:
    extra = ""
    if protection == "tls-crypt":
        extra = f"<tls-crypt>\n{STATIC_KEY}\n</tls-crypt>\n"
    return f"<ca>\n{pki['ca']}</ca>\n<cert>\n{cert[0]}</cert>\n<key>\n{cert[1]}</key>\n{extra}"


def server_conf(pki: dict, proto: str = "udp", protection: str = "tls-crypt", extra: str = "",
                nopool: bool = False) -> str:
    """`nopool`: `server` without its own pool (an `ifconfig-pool` line in `extra` gives one, as 2.6 wants)."""
    flag = " nopool" if nopool else ""
    return (f"port 1194\nproto {proto}\ndev tun\ntopology subnet\nserver 198.19.0.0 255.255.255.0{flag}\n"
            f"dh none\nkeepalive 10 60\nclient-to-client\n{extra}\n" + _blocks(pki, pki["server"], protection))


def client_conf(pki: dict, name: str = "client0", proto: str = "udp", protection: str = "tls-crypt",
                extra: str = "", remotes: list[tuple[str, int]] | None = None) -> str:
    rl = "".join(f"remote {h} {p}\n" for h, p in (remotes or [(SERVER_IP, 1194)]))
    return (f"client\ndev tun\nproto {proto}\n{rl}nobind\nremote-cert-tls server\n"
            f"connect-retry 1 4\nserver-poll-timeout 10\n{extra}\n"
            + _blocks(pki, pki["clients"][name], protection))


WALL0 = 1_800_000_000          # 2027-01-15, the fake wall clock's start


class World:
    """One MemoryNet, one clock, a server and any number of clients, stepped together."""

    def __init__(self, seed: int = 1) -> None:
        self.net = MemoryNet(seed)
        self.clock = FakeClock()
        self.server: ServerGateway | None = None
        self.server_net: FakeServerNet | None = None
        self.clients: list[ClientGateway] = []
        self.client_nets: list[FakeTunnelNetwork] = []
        self.client_ports: list[MemoryPorts] = []

    def add_server(self, conf: str, passdb: str | None = None, path: str = "/mem/server.conf",
                   ignore_scripts: bool = False, opts=None, also: tuple[str, ...] = (),
                   **auth_limits) -> ServerGateway:
        """`opts`: already parsed (an appliance TOML's [vpn] profile), instead of `conf`; `also`:
        the server host's further addresses besides SERVER_IP (multihome)."""
        opts = opts or parse_config(conf, path, ignore_scripts=ignore_scripts)
        # Tokens (auth-gen-token) carry wall-clock seconds: the fake clock's, from a fixed date.
        st = server_settings(opts, None, passdb, defer_auth=True, wall_clock=lambda: WALL0 + self.clock(),
                             check_command=password_check(opts))
        self.server_net = FakeServerNet(self.net)
        self.server_ports = MemoryPorts(self.net, SERVER_IP)
        self.server_ports.also = tuple(also)
        auth = AuthChecker(st.verify_user, self.clock, inline=True, **auth_limits) if st.verify_user else None
        self.server = ServerGateway(opts, st, self.server_ports, self.server_net, self.clock,
                                    MemoryWaiter(self.net), auth=auth)
        self.server.make_auth = lambda verify: AuthChecker(verify, self.clock, inline=True, **auth_limits)
        # A reload's reading in the caller, at once (its worker: tests/gateway/test_reload_offloop.py).
        self.server.ops.reload_inline = True
        self.server.start()
        return self.server

    def add_reloadable_server(self, conf: str) -> tuple[ServerGateway, dict]:
        """add_server(conf), its reload (SIGHUP) reading holder["conf"]: the file as the test
        edits it since. (server, holder)."""
        gw = self.add_server(conf)
        holder = {"conf": conf}
        gw.ops.reload_source = lambda: holder["conf"]
        return gw, holder

    def add_client(self, conf: str, ip: str | None = None, username: str = "", password: str = "",
                   observers: tuple = (), names: dict[str, list[str]] | None = None,
                   credentials=None, advertise_ekm: bool = True) -> ClientGateway:
        """`names`: host names of `remote` lines and their addresses (the client's DNS);
        `credentials`: a callable (opts -> gateway/credentials.Credentials or None), as the CLI's;
        `advertise_ekm` False: a client that derives its keys the pre-2.6 way (as the CLI with VPN_APPLIANCE_KEY_DERIVATION=prf)."""
        opts = parse_config(conf, "/mem/client.ovpn")
        n = len(self.clients)
        ports = MemoryPorts(self.net, ip or f"198.18.0.{2 + n}")
        ports.names = dict(names or {})
        tnet = FakeTunnelNetwork(self.net)
        c = ClientGateway(opts, ports, tnet, self.clock, MemoryWaiter(self.net), username, password,
                          observers=observers, credentials=credentials(opts) if credentials else None,
                          advertise_ekm=advertise_ekm)
        self.clients.append(c)
        self.client_nets.append(tnet)
        self.client_ports.append(ports)
        c.start()
        return c

    def pumps(self) -> list:
        return ([self.server.pump] if self.server else []) + [c.pump for c in self.clients]

    def run(self, until, max_time: float = 120.0, max_steps: int = 50_000) -> bool:
        return run_pumps(self.clock, self.pumps(), until, max_steps=max_steps, max_time=max_time)

    def run_for(self, seconds: float) -> None:
        end = self.clock.t + seconds
        self.run(lambda: self.clock.t >= end, max_time=seconds + 1)

    def client_addr(self, i: int = 0) -> str | None:
        p = self.client_nets[i].pushed
        return p.ifconfig[0] if p is not None and p.ifconfig else None


def ipv4_udp(src: str, dst: str, payload: bytes, sport: int = 5000, dport: int = 6000) -> bytes:
    """A well-formed IPv4/UDP packet (header checksum set; UDP checksum 0, allowed in IPv4)."""
    def a(s: str) -> bytes:
        return bytes(int(x) for x in s.split("."))
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, a(src), a(dst)))
    s = sum(struct.unpack("!10H", hdr))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    hdr[10:12] = struct.pack("!H", ~s & 0xFFFF)
    return bytes(hdr) + udp


def make_pki(clients: list[str], ca_name: str = "Gateway test CA") -> dict:
    """A CA, the server's certificate and one client certificate per name, as PEM text (the
    gateway tests' `pki` fixture: client0..client3)."""
    ca = issue(ca_name, None, None)
    srv = issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)
    made = {n: issue(n, ca, ExtendedKeyUsageOID.CLIENT_AUTH) for n in clients}
    return {"ca": _pem(ca[0]), "server": (_pem(srv[0]), _kpem(srv[1])),
            "clients": {n: (_pem(c), _kpem(k)) for n, (c, k) in made.items()}}


def client_up(w: World, i: int = 0) -> bool:
    """Client i's tunnel is up (its connection pushed and established)."""
    return w.clients[i].conn is not None and w.clients[i].conn.was_up
