"""The router appliance on a host, in namespaces: Debian's OpenVPN server (with a DNS server that
only the VPN side knows) behind the WAN, our `vpn-appliance run appliance.toml` in the middle, and
an unconfigured LAN host that must get everything from the appliance.

    [lan ns] (no address) ── veth ── [app ns] lan 198.18.50.1/24, fd18:50::1/64
                                      wan 198.18.0.2/24, 2001:db8:18::2/64 ── veth ── [wan ns]
    [wan ns]: 198.18.0.1/24 and 2001:db8:18::1/64 on the WAN veth; OpenVPN server (pool 198.19.0.0/24,
              IPv6 pool 2001:db8:19::/64, server 2001:db8:19::1); dnsmasq on the server's tunnel
              addresses 198.19.0.1 / 2001:db8:19::1 that answers `secret.vpn.test` (A 198.18.100.1,
              AAAA 2001:db8:100::1) and nothing from outside; "the host behind the VPN" is
              198.18.100.1 and 2001:db8:100::1 on lo, with a web server on port 8080.

Addresses: IPv4 from 198.18.0.0/15 (the lab rule); IPv6 from the documentation prefix 2001:db8::/32
and a ULA on the LAN. `capture()` runs tcpdump on the WAN veth (in the wan namespace, so it sees
exactly what leaves the appliance) and `wan_leaks()` reads it back: DNS in clear, or any packet
carrying a LAN address. Everything is removed on close (processes by PID, then the namespaces).

The veths carry GSO/TSO batches whole (one skb, one frame in the capture, cut only where they are
received). Nothing here needs them cut: the capture and the nftables counters judge addresses and
ports, which every datagram or segment of a batch shares with the batch's own header. (An
`ethtool -K ... gso off` here was a no-op -- ethtool is not installed -- and was removed.) A test
that judges payloads, or drops single packets, per datagram needs the veth to segment: see
netns.Lab.segment_on_the_wire (`gso_max_segs 1`).
"""
from __future__ import annotations

import hashlib
import ipaddress
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .netns import Netns, Proc, logging_errors
from .pki import Pki, make_pki
from .tools import OPENVPN, OUR_BIN, require_root_and_tools

WAN_SRV, WAN_APP = "198.18.0.1", "198.18.0.2"
WAN6_SRV, WAN6_APP = "2001:db8:18::1", "2001:db8:18::2"
LAN_APP, LAN_NET = "198.18.50.1", "198.18.50.0/24"
LAN6_APP, LAN6_NET = "fd18:50::1", "fd18:50::/64"
TUN_SRV, TUN6_SRV = "198.19.0.1", "2001:db8:19::1"
BEHIND, BEHIND6 = "198.18.100.1", "2001:db8:100::1"
SECRET_NAME = "secret.vpn.test"
WEB_PORT = 8080


def server_config(pki: Pki, proto: str = "udp", ipv6: bool = True, push_dns: bool = True,
                  dns_form: str = "dhcp-option", extra: str = "") -> str:
    """Debian's OpenVPN server for the router lab: net pool 198.19.0.0/24 (+ IPv6 when `ipv6`),
    routes to the host behind it pushed, DNS pushed in either form OpenVPN 2.6 knows
    (`dhcp-option DNS/DNS6` or the 2.6 `dns server` option)."""
    lines = ["port 1194", f"proto {'tcp-server' if proto == 'tcp' else 'udp'}", "dev tun", "topology subnet",
             "server 198.19.0.0 255.255.255.0", "dh none", "keepalive 5 30", "verb 3",
             f"ca {pki.ca}", f"cert {pki.server_cert}", f"key {pki.server_key}",
             f"tls-crypt {pki.dir / 'static.key'}", f'push "route {BEHIND} 255.255.255.255"']
    if ipv6:
        lines += ["server-ipv6 2001:db8:19::/64", f'push "route-ipv6 {BEHIND6}/128"']
    if push_dns:
        if dns_form == "dns":
            lines.append(f'push "dns server 1 address {TUN_SRV}' + (f' {TUN6_SRV}"' if ipv6 else '"'))
            lines.append('push "dns search-domains vpn.test"')
        else:
            lines.append(f'push "dhcp-option DNS {TUN_SRV}"')
            if ipv6:
                lines.append(f'push "dhcp-option DNS6 {TUN6_SRV}"')
            lines.append('push "dhcp-option DOMAIN vpn.test"')
    return "\n".join(lines) + "\n" + extra


def client_profile(pki: Pki, proto: str = "udp", name: str = "client1") -> str:
    """The profile the appliance uses (files by path, as most real profiles do)."""
    cert, key = pki.clients[name]
    return (f"client\ndev tun\nproto {proto}\nremote {WAN_SRV} 1194\nnobind\nremote-cert-tls server\n"
            f"connect-retry 1 2\nverb 3\nca {pki.ca}\ncert {cert}\nkey {key}\n"
            f"tls-crypt {pki.dir / 'static.key'}\n")



def start_dns_server(ns: Netns, start, wait: float = 10, extra: "tuple[str, ...]" = ()) -> Proc:
    """dnsmasq on the server's tunnel addresses (they exist once the OpenVPN server is up): it
    knows SECRET_NAME (and what `extra` options add) and refuses everything else (no upstream,
    no /etc/hosts). `start(ns, argv, name)` starts a Proc the caller cleans up (RouterLab.start,
    or a VM topology's)."""
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    p = start(ns, [dnsmasq, "--keep-in-foreground", "--no-daemon", "--no-resolv", "--no-hosts",
                   "--bind-dynamic", f"--listen-address={TUN_SRV}", f"--listen-address={TUN6_SRV}",
                   "--except-interface=lo", f"--address=/{SECRET_NAME}/{BEHIND}",
                   f"--address=/{SECRET_NAME}/{BEHIND6}", "--log-queries", "--log-facility=-",
                   "--pid-file=", "--user=root", *extra], "dnsmasq")
    end = time.monotonic() + wait
    while time.monotonic() < end:
        r = ns.run(f"ss -lnu 'sport = :53' | grep -c {TUN_SRV}", check=False)
        if r.stdout.strip() not in ("", "0"):
            return p
        time.sleep(0.2)
    raise AssertionError(f"dnsmasq did not listen on {TUN_SRV}:53:\n{p.log()[-2000:]}")


def start_web_server(ns: Netns, tmp: Path, start) -> tuple[Proc, str]:
    """A file behind the VPN: http://198.18.100.1:8080/file and http://[2001:db8:100::1]:8080/file
    (1 MB of a known pattern). Returns the process and the file's SHA-256."""
    root = tmp / "www"
    root.mkdir(exist_ok=True)
    data = bytes(range(256)) * 4096
    (root / "file").write_bytes(data)
    p = start(ns, [sys.executable, "-m", "http.server", "--bind", "::", "--directory", str(root), str(WEB_PORT)],
              "web")
    return p, hashlib.sha256(data).hexdigest()

def start_far_side(ns: Netns, tmp: Path, start, pki: Pki, extra: str = "") -> dict:
    """Everything behind the WAN for a VM topology (lab/vm.py's `wan` namespace, already holding
    198.18.0.1/24 and 198.18.100.1 on lo): Debian's OpenVPN server of this lab (IPv6 pool, DNS
    pushed), dnsmasq and the web server behind it. Returns the processes and the file's digest."""
    ns.run(f"ip -6 addr add {BEHIND6}/128 dev lo && sysctl -qw net.ipv6.conf.all.forwarding=1")
    cfg = tmp / "server.conf"
    cfg.write_text(server_config(pki, extra=extra))
    ovpn = start(ns, [OPENVPN, "--config", str(cfg)], "openvpn-server")
    if not ovpn.wait_for("Initialization Sequence Completed", 30):
        raise AssertionError(f"OpenVPN server did not come up:\n{ovpn.log()[-3000:]}")
    dns = start_dns_server(ns, start)
    web, digest = start_web_server(ns, tmp, start)
    return {"ovpn": ovpn, "dns": dns, "web": web, "digest": digest, "config": cfg}


class RouterLab:
    """Three namespaces and the processes in them; `with RouterLab() as lab: ...`."""

    def __init__(self, tmp: Path | None = None) -> None:
        require_root_and_tools()
        self.tag = secrets.token_hex(3)
        self.tmp = Path(tmp or tempfile.mkdtemp(prefix="routerlab-"))
        self.procs: list[Proc] = []
        self.ours_procs: list[Proc] = []       # checked at close (netns.logging_errors)
        self.spaces: list[Netns] = []
        try:
            self.wan = self._ns("w")
            self.app = self._ns("a")
            self.lan = self._ns("l")
            self.wan_if, self.wan_peer_if = f"aw{self.tag}", f"ww{self.tag}"   # app side, server side
            self.lan_if, self.lan_host_if = f"al{self.tag}", f"ll{self.tag}"   # app side, LAN host side
            self._veth(self.app, self.wan_if, self.wan, self.wan_peer_if)
            self._veth(self.app, self.lan_if, self.lan, self.lan_host_if)
            self.wan.run(f"ip addr add {WAN_SRV}/24 dev {self.wan_peer_if} && "
                         f"ip -6 addr add {WAN6_SRV}/64 dev {self.wan_peer_if} nodad && "
                         f"ip link set {self.wan_peer_if} up && "
                         f"ip addr add {BEHIND}/32 dev lo && ip -6 addr add {BEHIND6}/128 dev lo && "
                         "sysctl -qw net.ipv6.conf.all.forwarding=1")
            self.lan.run(f"ip link set {self.lan_host_if} up")
            self.pki = make_pki(self.tmp / "pki", ["client1"])
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------- building
    def _ns(self, role: str) -> Netns:
        ns = Netns(f"rl{role}{self.tag}")
        self.spaces.append(ns)
        return ns

    @staticmethod
    def _veth(a: Netns, a_if: str, b: Netns, b_if: str) -> None:
        subprocess.run(["ip", "link", "add", a_if, "netns", a.name, "type", "veth", "peer", "name", b_if,
                        "netns", b.name], check=True)

    def write(self, name: str, text: str) -> Path:
        p = self.tmp / name
        p.write_text(text)
        return p

    def start(self, ns: Netns, argv: list[str], name: str, env: dict | None = None) -> Proc:
        p = Proc(ns, argv, self.tmp / f"{name}-{len(self.procs)}.log", env)
        self.procs.append(p)
        if any(OUR_BIN in str(a) for a in argv):
            self.ours_procs.append(p)
        return p

    # ---------------------------------------------------------------- the VPN side
    def openvpn_server(self, config_text: str | None = None, wait: float = 30) -> Proc:
        cfg = self.write("server.conf", config_text or server_config(self.pki))
        p = self.start(self.wan, [OPENVPN, "--config", str(cfg)], "openvpn-server")
        if wait and not p.wait_for("Initialization Sequence Completed", wait):
            raise AssertionError(f"OpenVPN server did not come up:\n{p.log()[-3000:]}")
        return p

    def dns_server(self, wait: float = 10, extra: "tuple[str, ...]" = ()) -> Proc:
        """dnsmasq on the server's tunnel addresses (see `start_dns_server`)."""
        return start_dns_server(self.wan, self.start, wait, extra)

    def web_server(self) -> Proc:
        """A file behind the VPN (see `start_web_server`); its SHA-256 is `self.web_digest`."""
        p, self.web_digest = start_web_server(self.wan, self.tmp, self.start)
        return p

    # ---------------------------------------------------------------- the appliance
    def appliance_toml(self, profile: str, lan_extra: str = "", wan_extra: str = "", appliance_extra: str = "",
                       nat: bool = True) -> Path:
        """An appliance.toml for this topology: WAN static 198.18.0.2/24 via 198.18.0.1, LAN
        198.18.50.1/24, the profile in a file beside it. `*_extra` are appended to the sections."""
        prof = self.write("client.ovpn", profile)
        text = (f'[appliance]\nlog_level = "info"\n{appliance_extra}\n'
                f'[wan]\nname = "{self.wan_if}"\naddress = "{WAN_APP}/24"\ngateway = "{WAN_SRV}"\n{wan_extra}\n'
                f'[lan]\nname = "{self.lan_if}"\naddress = "{LAN_APP}/24"\nnat = {"true" if nat else "false"}\n'
                f'{lan_extra}\n'
                f'[vpn]\nrole = "client"\nconfig = "{prof.name}"\n')
        return self.write("appliance.toml", text)

    def appliance(self, toml: Path, wait: float = 40, pattern: str = "tunnel up") -> Proc:
        p = self.start(self.app, [OUR_BIN, "run", str(toml)], "appliance")
        if wait and not p.wait_for(pattern, wait):
            raise AssertionError(f"vpn-appliance did not reach {pattern!r}:\n{p.log()[-4000:]}")
        return p

    # ---------------------------------------------------------------- the WAN capture
    def capture(self, name: str = "wan") -> Proc:
        """tcpdump on the server side of the WAN veth: every frame that left (or reached) the
        appliance's WAN. Stop it with `stop_capture` before reading."""
        pcap = self.tmp / f"{name}.pcap"
        p = self.start(self.wan, ["tcpdump", "-i", self.wan_peer_if, "-n", "-U", "-w", str(pcap)], f"tcpdump-{name}")
        p.pcap = pcap  # type: ignore[attr-defined]
        end = time.monotonic() + 10
        while time.monotonic() < end and "listening on" not in p.log():
            time.sleep(0.1)
        return p

    @staticmethod
    def stop_capture(p: Proc) -> Path:
        time.sleep(0.5)
        p.stop(5)
        return p.pcap  # type: ignore[attr-defined]

    @staticmethod
    def wan_leaks(pcap: Path) -> list[str]:
        """What must never be on the WAN: DNS in clear (port 53/853 over UDP or TCP, or anything
        scapy decodes as DNS) and any packet with a LAN address (IPv4 or IPv6) as source or
        destination. Returns one line per offending packet (empty = clean)."""
        from scapy.all import DNS, IP, TCP, UDP, IPv6, rdpcap  # tests' dependency, imported late
        lan4 = ipaddress.ip_network(LAN_NET)
        lan6 = ipaddress.ip_network(LAN6_NET)
        out = []
        for i, pkt in enumerate(rdpcap(str(pcap))):
            for layer, net in ((IP, lan4), (IPv6, lan6)):
                if layer in pkt:
                    src, dst = ipaddress.ip_address(pkt[layer].src), ipaddress.ip_address(pkt[layer].dst)
                    if src in net or dst in net:
                        out.append(f"#{i} LAN address on the WAN: {pkt.summary()}")
            for layer in (UDP, TCP):
                if layer in pkt and {pkt[layer].sport, pkt[layer].dport} & {53, 853, 5353}:
                    out.append(f"#{i} DNS port on the WAN: {pkt.summary()}")
            if DNS in pkt:
                out.append(f"#{i} DNS on the WAN: {pkt.summary()}")
        return out

    # ---------------------------------------------------------------- teardown
    def close(self) -> None:
        for p in reversed(self.procs):
            try:
                p.stop(5)
            except Exception:  # noqa: BLE001 - teardown goes on
                pass
        for ns in reversed(self.spaces):
            ns.delete()
        self.spaces = []
        bad = logging_errors(self.ours_procs)
        if bad:
            raise AssertionError(bad)

    def __enter__(self) -> "RouterLab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
