"""The appliance TOML (one static file baked into the image) → frozen dataclasses.

Why this shape: the OpenVPN part stays a plain OpenVPN 2.6 config (a file beside the TOML, or the
same text inline), so an existing eduVPN/OpenVPN profile drops in unchanged; the TOML only adds
what OpenVPN does not know about: the appliance's own NICs and whether it routes a LAN.

Errors: every problem is a ConfigError whose str is `file:line: key: why`; all problems are
collected and raised together (ConfigErrors). tomllib reports no key positions, so lines are
found by scanning the text (section headers and `key =` lines). Errors inside the OpenVPN config
keep that file's own `file:line`; for an inline config, inline line N is reported as the TOML line
where the string starts + N.
"""
from __future__ import annotations

import ipaddress
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field

from ..openvpn.errors import ConfigError
from ..openvpn.config import ConfigErrors, Options, parse_config
from ..openvpn.settings import check_key_material

LOG_LEVELS = ("error", "warning", "info", "debug")
ROLES = ("client", "server")

_SECTIONS = {
    "appliance": ("hostname", "log_level"),
    "wan": ("name", "mac", "address", "dhcp", "gateway", "dns"),
    "lan": ("name", "mac", "address", "nat"),
    "vpn": ("role", "config", "inline"),
}
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")


@dataclass(frozen=True)
class ApplianceSection:
    hostname: str = "vpn-appliance"
    log_level: str = "info"


@dataclass(frozen=True)
class Wan:
    """The uplink; the VPN transport leaves here and nothing else from the LAN ever does."""
    name: str | None = None
    mac: str | None = None
    address: ipaddress.IPv4Interface | None = None
    dhcp: bool = False
    gateway: ipaddress.IPv4Address | None = None
    dns: tuple[ipaddress.IPv4Address, ...] = ()


@dataclass(frozen=True)
class Lan:
    """The routed side (router mode): its hosts reach the tunnel, never the WAN."""
    name: str | None = None
    mac: str | None = None
    address: ipaddress.IPv4Interface | None = None
    nat: bool = True


@dataclass(frozen=True)
class Vpn:
    role: str = "client"
    config: str | None = None          # absolute path of the OpenVPN config file, or None
    inline: str | None = None          # the inline OpenVPN config text, or None
    inline_line: int | None = None     # TOML line where the inline string starts


@dataclass(frozen=True)
class ApplianceConfig:
    path: str
    appliance: ApplianceSection
    wan: Wan
    lan: Lan | None
    vpn: Vpn
    vpn_options: Options = field(compare=False)

    @property
    def tun_name(self) -> str:
        """A fixed TUN name, so firewall rules written before the tunnel exists match it."""
        dev = self.vpn_options.dev
        return "tun0" if dev in (None, "", "tun") or "%" in dev else dev


# ------------------------------------------------------------------ line finding
class _Lines:
    """Where sections and keys are in the TOML text (tomllib does not say)."""

    _HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\"' -]+?)\s*\]\s*(#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')\s*=\s*(.*)$")

    def __init__(self, text: str) -> None:
        self.sections: dict[str, int] = {}
        self.keys: dict[tuple[str, str], int] = {}
        self.values: dict[tuple[str, str], str] = {}   # the raw text after `=` on the key's line
        section = ""
        in_string: str | None = None
        for n, line in enumerate(text.splitlines(), 1):
            if in_string is not None:
                if in_string in line:
                    in_string = None
                continue
            m = self._HEADER.match(line)
            if m:
                section = m.group(1).strip().strip("\"'")
                self.sections.setdefault(section, n)
                continue
            m = self._KEY.match(line)
            if not m:
                continue
            key = m.group(1).strip("\"'")
            self.keys.setdefault((section, key), n)
            rest = m.group(2)
            self.values.setdefault((section, key), rest)
            for delim in ('"""', "'''"):
                if rest.startswith(delim) and rest.count(delim) == 1:
                    in_string = delim
                    break

    def of(self, section: str, key: str | None = None) -> int | None:
        if key is not None and (section, key) in self.keys:
            return self.keys[(section, key)]
        return self.sections.get(section)


# ------------------------------------------------------------------ loading
class _Loader:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self.base = os.path.dirname(os.path.abspath(path))
        self.lines = _Lines(text)
        self.errors: list[ConfigError] = []

    def err(self, section: str, key: str | None, why: str) -> None:
        name = f"{section}.{key}" if key else f"[{section}]"
        self.errors.append(ConfigError(why, self.path, self.lines.of(section, key), name))

    # -- typed getters: return None (and record an error) on a wrong type
    def get(self, sec: dict, section: str, key: str, kind: type, what: str):
        if key not in sec:
            return None
        v = sec[key]
        if kind is int and isinstance(v, bool) or not isinstance(v, kind):
            self.err(section, key, f"expected {what}, got {_tname(v)} {v!r}")
            return None
        return v

    def ip_if(self, section: str, key: str, v: str | None) -> ipaddress.IPv4Interface | None:
        if v is None:
            return None
        if "/" not in v:
            self.err(section, key, f"{v!r} needs a prefix length, like \"198.18.0.2/24\"")
            return None
        try:
            iface = ipaddress.IPv4Interface(v)
        except ValueError:
            self.err(section, key, f"not an IPv4 address with prefix length: {v!r}")
            return None
        if iface.network.prefixlen < 31 and iface.ip in (iface.network.network_address,
                                                         iface.network.broadcast_address):
            self.err(section, key, f"{iface.ip} is the network or broadcast address of {iface.network}")
            return None
        return iface

    def ip(self, section: str, key: str, v: str) -> ipaddress.IPv4Address | None:
        try:
            return ipaddress.IPv4Address(v)
        except ValueError:
            self.err(section, key, f"not an IPv4 address: {v!r}")
            return None

    def check_keys(self, data: dict) -> None:
        for section, value in data.items():
            if section not in _SECTIONS:
                where = self.lines.of(section) or self.lines.of("", section)
                self.errors.append(ConfigError(
                    f"unknown section (expected one of: {', '.join(_SECTIONS)})", self.path, where, f"[{section}]"))
                continue
            if not isinstance(value, dict):
                self.errors.append(ConfigError("must be a [section], not a value", self.path,
                                               self.lines.of("", section), section))
                continue
            for key in value:
                if key not in _SECTIONS[section]:
                    self.err(section, key, f"unknown key (allowed in [{section}]: {', '.join(_SECTIONS[section])})")

    def nic(self, section: str, sec: dict) -> tuple[str | None, str | None]:
        name = self.get(sec, section, "name", str, "a string")
        mac = self.get(sec, section, "mac", str, "a string")
        if ("name" in sec) == ("mac" in sec):
            self.err(section, None, "give exactly one of `name` (like \"eth0\") or `mac` (like \"52:54:00:12:34:56\")")
        if name is not None and not _IFNAME.match(name):
            self.err(section, "name", f"not an interface name (1-15 letters, digits, . _ - @): {name!r}")
            name = None
        if mac is not None:
            if not _MAC.match(mac.lower()):
                self.err(section, "mac", f"not a MAC address like 52:54:00:12:34:56: {mac!r}")
                mac = None
            else:
                mac = mac.lower()
        return name, mac

    def appliance(self, sec: dict) -> ApplianceSection:
        a = ApplianceSection()
        hostname = self.get(sec, "appliance", "hostname", str, "a string")
        if hostname is not None and not _HOSTNAME.match(hostname):
            self.err("appliance", "hostname", f"not a valid hostname: {hostname!r}")
            hostname = None
        level = self.get(sec, "appliance", "log_level", str, "a string")
        if level is not None and level not in LOG_LEVELS:
            self.err("appliance", "log_level", f"{level!r} is not one of {'|'.join(LOG_LEVELS)}")
            level = None
        return ApplianceSection(hostname or a.hostname, level or a.log_level)

    def wan(self, sec: dict) -> Wan:
        name, mac = self.nic("wan", sec)
        address = self.ip_if("wan", "address", self.get(sec, "wan", "address", str, "a string like \"198.18.0.2/24\""))
        dhcp = self.get(sec, "wan", "dhcp", bool, "true or false")
        if "address" in sec and dhcp:
            self.err("wan", "dhcp", "give either `address` or `dhcp = true`, not both")
        elif "address" not in sec and not dhcp:
            self.err("wan", None, "needs `address = \"A.B.C.D/LEN\"` (with `gateway`) or `dhcp = true`")
        gateway = None
        gw = self.get(sec, "wan", "gateway", str, "a string like \"198.18.0.1\"")
        if gw is not None:
            if dhcp:
                self.err("wan", "gateway", "not used with `dhcp = true` (the DHCP server gives the gateway)")
            gateway = self.ip("wan", "gateway", gw)
            if gateway is not None and address is not None:
                if gateway not in address.network:
                    self.err("wan", "gateway", f"{gateway} is not inside {address.network}")
                elif gateway == address.ip:
                    self.err("wan", "gateway", f"{gateway} is the WAN address itself")
        dns: list[ipaddress.IPv4Address] = []
        raw = self.get(sec, "wan", "dns", list, "a list of addresses like [\"198.18.0.1\"]")
        for d in raw or []:
            if not isinstance(d, str):
                self.err("wan", "dns", f"expected address strings, got {_tname(d)} {d!r}")
                continue
            a = self.ip("wan", "dns", d)
            if a is not None:
                dns.append(a)
        return Wan(name, mac, address, bool(dhcp), gateway, tuple(dns))

    def lan(self, sec: dict) -> Lan:
        name, mac = self.nic("lan", sec)
        raw = self.get(sec, "lan", "address", str, "a string like \"198.18.50.1/24\"")
        if "address" not in sec:
            self.err("lan", None, "needs `address = \"A.B.C.D/LEN\"` (the appliance's address on the LAN)")
        address = self.ip_if("lan", "address", raw)
        nat = self.get(sec, "lan", "nat", bool, "true or false")
        return Lan(name, mac, address, True if nat is None else nat)

    def vpn(self, sec: dict) -> tuple[Vpn, Options | None]:
        role = self.get(sec, "vpn", "role", str, "\"client\" or \"server\"")
        if "role" not in sec:
            self.err("vpn", None, "needs `role = \"client\"` or `role = \"server\"`")
        elif role is not None and role not in ROLES:
            self.err("vpn", "role", f"{role!r} is not one of client|server")
            role = None
        config = self.get(sec, "vpn", "config", str, "a file name")
        inline = self.get(sec, "vpn", "inline", str, "a string (use '''...''' for several lines)")
        if ("config" in sec) == ("inline" in sec):
            self.err("vpn", None, "give exactly one of `config = \"client.ovpn\"` or `inline = '''...'''`")
            return Vpn(role or "client"), None
        opts: Options | None = None
        if config is not None:
            full = config if os.path.isabs(config) else os.path.join(self.base, config)
            try:
                with open(full, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
            except OSError as e:
                self.err("vpn", "config", f"cannot read {config}: {e.strerror or e}")
                return Vpn(role or "client", config=full), None
            opts = self._ovpn(text, full, 0)
            vpn = Vpn(role or "client", config=full)
        elif inline is not None:
            start = self.lines.of("vpn", "inline") or 1
            raw = self.lines.values.get(("vpn", "inline"), "")
            multi = raw.startswith('"""') or raw.startswith("'''")
            # TOML drops a newline right after the opening delimiter, so line 1 is the next line.
            offset = start if multi and raw[3:].strip() == "" else start - 1
            opts = self._ovpn(inline, self.path, offset if multi else None, start)
            vpn = Vpn(role or "client", inline=inline, inline_line=start)
        else:
            return Vpn(role or "client"), None
        if opts is not None and role is not None and opts.role != role:
            self.err("vpn", "role", f"role is {role!r} but the OpenVPN config is a {opts.role} config")
        return vpn, opts

    def _ovpn(self, text: str, path: str, offset: int | None, single_line: int | None = None) -> Options | None:
        """Parse OpenVPN text; for inline text, move its line numbers onto the TOML's."""
        try:
            opts = parse_config(text, path)
        except ConfigError as e:
            errs = e.errors if isinstance(e, ConfigErrors) else [e]
            for x in errs:
                if offset is None and single_line is None:
                    self.errors.append(x)
                    continue
                line = single_line if offset is None else (x.line + offset if x.line is not None else None)
                self.errors.append(ConfigError(x.message, x.path, line, x.directive))
            return None
        if offset is not None or single_line is not None:
            for k, (p, line) in list(opts.source.items()):
                if p == path and line is not None:
                    opts.source[k] = (p, single_line if offset is None else line + offset)
            pat = re.compile(re.escape(path) + r":(\d+):")
            opts.notes[:] = [pat.sub(lambda m: f"{path}:{single_line if offset is None else int(m.group(1)) + offset}:", n, count=1)
                             for n in opts.notes]
        return opts

    def cross_checks(self, wan: Wan, lan: Lan | None) -> None:
        if lan is None:
            return
        if (wan.name and wan.name == lan.name) or (wan.mac and wan.mac == lan.mac):
            self.err("lan", "name" if lan.name else "mac", "the LAN must be a different NIC from the WAN")
        if wan.address and lan.address and wan.address.network.overlaps(lan.address.network):
            self.err("lan", "address", f"{lan.address.network} overlaps the WAN network {wan.address.network}")


def _tname(v) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "table"}.get(type(v), type(v).__name__)


_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def parse_appliance_config(text: str, path: str = "<appliance.toml>") -> ApplianceConfig:
    """Validate TOML text (relative file names are resolved against `path`'s directory)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _TOML_POS.search(msg)
        if m:
            raise ConfigError(f"TOML syntax: {msg[:m.start()]} (column {m.group(2)})", path, int(m.group(1))) from None
        line = text.count("\n") + 1 if "end of document" in msg else None
        raise ConfigError(f"TOML syntax: {msg}", path, line) from None
    ld = _Loader(path, text)
    ld.check_keys(data)
    get = lambda s: data.get(s) if isinstance(data.get(s), dict) else {}  # noqa: E731
    appliance = ld.appliance(get("appliance"))
    if "wan" not in data:
        ld.errors.append(ConfigError("missing [wan] section (the uplink NIC)", path, None, "[wan]"))
    wan = ld.wan(get("wan")) if "wan" in data else Wan()
    lan = ld.lan(get("lan")) if "lan" in data else None
    if "vpn" not in data:
        ld.errors.append(ConfigError("missing [vpn] section (role and OpenVPN config)", path, None, "[vpn]"))
        vpn, opts = Vpn(), None
    else:
        vpn, opts = ld.vpn(get("vpn"))
    ld.cross_checks(wan, lan)
    if ld.errors:
        ld.errors.sort(key=lambda e: (e.path != path, e.line or 0))
        raise ConfigErrors(ld.errors) if len(ld.errors) > 1 else ld.errors[0]
    assert opts is not None
    return ApplianceConfig(path, appliance, wan, lan, vpn, opts)


def load_appliance_config(path: str) -> ApplianceConfig:
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", path) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text: {e.reason} at byte {e.start}", path) from None
    return parse_appliance_config(text, path)


def validate_runtime(cfg: ApplianceConfig) -> None:
    """Checks that need the key material decoded (certificates, keys, tls-crypt keys)."""
    o = cfg.vpn_options
    try:
        check_key_material(o)
    except ConfigError as e:
        if e.path is not None:
            raise
        # Say which file (and, when the directive is known, which line) the bad material came from.
        src = o.source.get((e.directive or "").replace("-", "_"))
        where = cfg.vpn.config or (f"{cfg.path}" if src is None else src[0])
        raise ConfigError(e.message, where, src[1] if src else cfg.vpn.inline_line, e.directive or "vpn") from None


def _nic_text(nic: Wan | Lan) -> str:
    return f"name {nic.name}" if nic.name else f"mac {nic.mac}"


def summary(cfg: ApplianceConfig) -> str:
    """What the appliance will do, in the words of the TOML."""
    o = cfg.vpn_options
    w = cfg.wan
    out = [f"{cfg.path}: ok",
           f"appliance: hostname {cfg.appliance.hostname}, log level {cfg.appliance.log_level}",
           f"wan: {_nic_text(w)}, " + ("dhcp" if w.dhcp else f"address {w.address}, gateway {w.gateway or '-'}")
           + (f", dns {', '.join(map(str, w.dns))}" if w.dns else "")]
    if cfg.lan is not None:
        mode = "nat (LAN masqueraded behind the tunnel address)" if cfg.lan.nat else "routed (the server must iroute the LAN)"
        out.append(f"lan: {_nic_text(cfg.lan)}, address {cfg.lan.address}, {mode}")
    else:
        out.append("lan: none (the appliance itself is the only VPN user)")
    src = cfg.vpn.config or f"inline at {cfg.path}:{cfg.vpn.inline_line}"
    out.append(f"vpn: role {cfg.vpn.role}, OpenVPN config {src}, tun {cfg.tun_name}")
    if o.role == "client":
        for r in o.remotes:
            out.append(f"  remote {r.host} {r.port} {r.proto}")
    else:
        out.append(f"  listen {o.proto} port {o.port}, server {' '.join(o.server) if o.server else '-'}")
    out.append("kill switch: forward policy drop; LAN never reaches the WAN; WAN output only the VPN transport,"
               " DHCP and established")
    for n in o.notes:
        out.append(f"# note: {n}")
    return "\n".join(out)


def check_file(path: str) -> int:
    """`vpn-appliance check appliance.toml`: summary on stdout, or errors on stderr and status 2."""
    try:
        cfg = load_appliance_config(path)
        validate_runtime(cfg)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    print(summary(cfg))
    return 0
