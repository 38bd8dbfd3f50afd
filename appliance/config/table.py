"""The machinery behind the appliance TOML's key table (the table itself is in keys.py).

Why a table: every TOML key is declared once — section, name, value kind, default, required,
a one-line help — and everything else is derived from that declaration: the frozen dataclass
the rest of the appliance reads, the type/value checks and their `file:line: key: why` errors,
the "allowed keys" lists, `check`'s per-key output and the README's key tables. Rules that tie
several keys together stay small functions beside their section (keys.py).

A Kind is a value type (string, boolean, IPv4 interface, MAC, ...): which TOML type it takes,
how it is checked and converted, how it is shown and documented. Converters raise Invalid(why)
for a bad value; the key then keeps its default and the error is collected.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass, field, make_dataclass
from typing import Any, Callable, Protocol


class Invalid(Exception):
    """A value of the right TOML type that is not acceptable; str is the `why`."""


class Context(Protocol):
    """What a section needs from the loader (schema._Loader): where relative files are, where
    errors go; rules may also use its `path`, `lines` and `parse_ovpn` (the [vpn] rule does)."""
    path: str
    base: str

    def err(self, section: str, key: str | None, why: str) -> None: ...


def _toml_literal(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_toml_literal(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v)
    return str(v)


def _show(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, (tuple, list)):
        return ", ".join(map(str, v)) if v else "-"
    return _toml_literal(v) if isinstance(v, bool) else str(v)


# ------------------------------------------------------------------ kinds
@dataclass(frozen=True)
class Kind:
    name: str                                   # README type column: "string", "boolean", ...
    toml: type                                  # the TOML value type it takes (int excludes bool)
    pytype: Any                                 # the dataclass field's type (always `| None`-able)
    expect: str = "a string"                    # "expected {expect}, got ...": {example} is the key's example
    convert: Callable[[Any, "Got"], Any] | None = None   # checked/converted value; raises Invalid
    show: Callable[[Any], str] = _show          # `check` output ("-" for not set)
    choices: tuple[str, ...] = ()               # for enums: the allowed values

    def accepts(self, v: Any) -> bool:
        return isinstance(v, self.toml) and not (self.toml is int and isinstance(v, bool))

    def expected(self, key: "Key") -> str:
        like = f" like {key.example}" if key.example else ""
        return self.expect.format(like=like, example=key.example or "")


def tname(v: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "table"}.get(type(v), type(v).__name__)


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")


def _hostname(v: str, _: Got) -> str:
    if not _HOSTNAME.match(v):
        raise Invalid(f"not a valid hostname: {v!r}")
    return v


def _ifname(v: str, _: Got) -> str:
    if not _IFNAME.match(v):
        raise Invalid(f"not an interface name (1-15 letters, digits, . _ - @): {v!r}")
    return v


def _mac(v: str, _: Got) -> str:
    if not _MAC.match(v.lower()):
        raise Invalid(f"not a MAC address like 52:54:00:12:34:56: {v!r}")
    return v.lower()


def _ipv4_interface(v: str, _: Got) -> ipaddress.IPv4Interface:
    if "/" not in v:
        raise Invalid(f"{v!r} needs a prefix length, like \"198.18.0.2/24\"")
    try:
        iface = ipaddress.IPv4Interface(v)
    except ValueError:
        raise Invalid(f"not an IPv4 address with prefix length: {v!r}") from None
    if iface.network.prefixlen < 31 and iface.ip in (iface.network.network_address,
                                                     iface.network.broadcast_address):
        raise Invalid(f"{iface.ip} is the network or broadcast address of {iface.network}")
    return iface


def _ipv4(v: str, _: Got) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(v)
    except ValueError:
        raise Invalid(f"not an IPv4 address: {v!r}") from None


def _ipv6_interface(v: str, _: Got) -> ipaddress.IPv6Interface:
    if "/" not in v:
        raise Invalid(f"{v!r} needs a prefix length, like \"2001:db8:18::2/64\"")
    try:
        iface = ipaddress.IPv6Interface(v)
    except ValueError:
        raise Invalid(f"not an IPv6 address with prefix length: {v!r}") from None
    if iface.ip.is_multicast or iface.ip.is_loopback or iface.ip.is_unspecified or iface.ip.is_link_local:
        raise Invalid(f"{iface.ip} is not a unicast address a NIC can be given (multicast, loopback, :: or fe80::/10)")
    if iface.ip.ipv4_mapped is not None:
        raise Invalid(f"{iface.ip} is an IPv4-mapped address")
    return iface


def _ipv6(v: str, _: Got) -> ipaddress.IPv6Address:
    try:
        a = ipaddress.IPv6Address(v.split("%", 1)[0])
    except ValueError:
        raise Invalid(f"not an IPv6 address: {v!r}") from None
    if a.is_multicast or a.is_unspecified or a.is_loopback:
        raise Invalid(f"{a} is not a unicast address")
    return a


def _path(v: str, got: Got) -> str:
    return v if os.path.isabs(v) else os.path.join(got.ctx.base, v)


STRING = Kind("string", str, str)
BOOL = Kind("boolean", bool, bool, "true or false")
HOSTNAME = Kind("string", str, str, convert=_hostname)
IFNAME = Kind("string", str, str, convert=_ifname)
MAC = Kind("string", str, str, convert=_mac)
IPV4 = Kind("string", str, ipaddress.IPv4Address, "a string{like}", convert=_ipv4)
IPV4_INTERFACE = Kind("string", str, ipaddress.IPv4Interface, "a string{like}", convert=_ipv4_interface)
IPV6 = Kind("string", str, ipaddress.IPv6Address, "a string{like}", convert=_ipv6)
IPV6_INTERFACE = Kind("string", str, ipaddress.IPv6Interface, "a string{like}", convert=_ipv6_interface)
FILE = Kind("string", str, str, "a file name", convert=_path)
TEXT = Kind("string", str, str, "a string (use '''...''' for several lines)",
            show=lambda v: "-" if v is None else f"({len(v.splitlines())} lines)")


def _addresses_by_mac(v: dict, got: Got) -> tuple:
    """A TOML table `{ "MAC" = "A.B.C.D", ... }` → ((mac, IPv4Address), ...); each bad entry is
    its own error (like list_of), the good ones are kept."""
    out = []
    for m, a in v.items():
        try:
            if not isinstance(a, str):
                raise Invalid(f"expected an address string for {m!r}, got {tname(a)} {a!r}")
            out.append((_mac(m, got), _ipv4(a, got)))
        except Invalid as e:
            got.err(got.key, str(e))
    return tuple(out)


@dataclass(frozen=True)
class LanRoute:
    """A network reached through the LAN: via `gateway` (a router on the LAN), or on the LAN's
    link itself when `gateway` is None."""
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None

    def __str__(self) -> str:
        return f"{self.network} via {self.gateway}" if self.gateway is not None else str(self.network)


_NOT_ROUTED = tuple((ipaddress.ip_network(n), what) for n, what in (
    ("0.0.0.0/8", "this network"), ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved, broadcast"),
    ("::/127", "unspecified, loopback"), ("fe80::/10", "link-local"), ("ff00::/8", "multicast")))


def _lan_route(v: str, got: Got) -> LanRoute:
    """`"NET"` or `"NET via GW"` (as `ip route` writes it): the network strict (no host bits), not
    the whole address space, not multicast or loopback; the gateway of the network's family."""
    parts = v.split()
    if len(parts) not in (1, 3) or (len(parts) == 3 and parts[1] != "via"):
        raise Invalid(f"{v!r} is not \"NETWORK/LEN\" or \"NETWORK/LEN via GATEWAY\"")
    if "/" not in parts[0]:
        raise Invalid(f"{parts[0]!r} needs a prefix length, like \"198.18.60.0/24\"")
    try:
        net = ipaddress.ip_network(parts[0])
    except ValueError as e:
        raise Invalid(f"not a network: {parts[0]!r} ({e})") from None
    if net.prefixlen == 0:
        raise Invalid(f"{net} is every address: a forged source could not be told from a real one")
    for special, what in _NOT_ROUTED:
        if special.version == net.version and special.overlaps(net):
            raise Invalid(f"{net} overlaps {special} ({what}), which no host behind a router has")
    gw = None
    if len(parts) == 3:
        gw = (_ipv4 if net.version == 4 else _ipv6)(parts[2], got)
    return LanRoute(net, gw)


LAN_ROUTE = Kind("string", str, LanRoute, convert=_lan_route)


ADDRESSES_BY_MAC = Kind("table of MAC = IPv4 address", dict, tuple[tuple[str, ipaddress.IPv4Address], ...],
                        "a table of MAC = address{like}", convert=_addresses_by_mac,
                        show=lambda v: ", ".join(f"{m}={a}" for m, a in v) if v else "-")


def enum(*choices: str) -> Kind:
    """One of a few fixed strings."""
    def convert(v: str, _: Got) -> str:
        if v not in choices:
            raise Invalid(f"{v!r} is not one of {'|'.join(choices)}")
        return v
    return Kind("string", str, str, convert=convert, choices=choices)


def integer(lo: int | None = None, hi: int | None = None) -> Kind:
    """An integer, optionally within lo..hi (inclusive)."""
    def convert(v: int, _: Got) -> int:
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise Invalid(f"{v} is not in {lo if lo is not None else '...'}..{hi if hi is not None else '...'}")
        return v
    return Kind("integer", int, int, "an integer", convert=convert)


def list_of(item: Kind, what: str, items: str) -> Kind:
    """A TOML list of `item`s → a tuple; each bad item is its own error, the good ones are kept
    (the config fails anyway, but every problem is reported)."""
    def convert(v: list, got: Got) -> tuple:
        out = []
        for x in v:
            if not item.accepts(x):
                got.err(got.key, f"expected {items}, got {tname(x)} {x!r}")
                continue
            try:
                out.append(item.convert(x, got) if item.convert else x)
            except Invalid as e:
                got.err(got.key, str(e))
        return tuple(out)
    return Kind(f"list of {item.name}s", list, tuple[item.pytype, ...], f"a list of {what}{{like}}",
                convert=convert)


# ------------------------------------------------------------------ keys and sections
@dataclass(frozen=True)
class Key:
    """One TOML key. `help` is one line (check output, "needs ..." errors); `doc` is the README's
    meaning column when it says more than `help`; `example` is TOML text, like '"198.18.0.2/24"'."""
    name: str
    kind: Kind
    help: str
    default: Any = None
    required: bool = False
    example: str | None = None
    doc: str | None = None

    def missing(self) -> str:
        if self.kind.choices:
            return "needs " + " or ".join(f'`{self.name} = "{c}"`' for c in self.kind.choices)
        return f"needs `{self.name} = {self.example or '...'}` ({self.help})"


Rule = Callable[["Got"], None]


@dataclass(frozen=True)
class Section:
    """One [section]: its keys, its cross-key rules, and the frozen dataclass it loads into.

    absent: what ApplianceConfig holds when the section is left out: "defaults" (an instance with
    every default) or "none" (None: the feature is off). derived: fields that are not TOML keys
    but are filled in by a rule (name, type, default)."""
    name: str
    cls_name: str
    help: str
    keys: tuple[Key, ...]
    rules: tuple[Rule, ...] = ()
    required: bool = False
    absent: str = "defaults"
    derived: tuple[tuple[str, Any, Any], ...] = ()
    doc: str | None = None
    cls: type = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        assert self.absent in ("defaults", "none")
        names = [k.name for k in self.keys] + [d[0] for d in self.derived]
        assert len(names) == len(set(names)), f"[{self.name}]: a key declared twice"
        fields = [(k.name, k.kind.pytype if k.default is not None else k.kind.pytype | None,
                   field(default=k.default)) for k in self.keys]
        fields += [(n, t, field(default=d)) for n, t, d in self.derived]
        cls = make_dataclass(self.cls_name, fields, frozen=True,
                             namespace={"__doc__": self.doc or f"[{self.name}]: {self.help}"})
        cls.__module__ = "appliance.config.schema"
        object.__setattr__(self, "cls", cls)

    def key(self, name: str) -> Key:
        return next(k for k in self.keys if k.name == name)

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keys)


class Got:
    """One section as read: the raw TOML values, the checked ones, and what rules add."""

    def __init__(self, section: Section, raw: dict, ctx: Context, others: dict[str, "Got"],
                 present: bool = True) -> None:
        self.section = section
        self.raw = raw
        self.ctx = ctx
        self.present = present
        self.values: dict[str, Any] = {}     # only keys that were given and are valid (+ derived)
        self.extra: dict[str, Any] = {}      # rule results that are not dataclass fields
        self.others = others
        self.key: str | None = None          # the key being converted (for list items' errors)

    def has(self, key: str) -> bool:
        """Given in the TOML (whether or not its value is valid)."""
        return key in self.raw

    def __getitem__(self, key: str) -> Any:
        """The checked value; the key's default when not given (None for a required key); None
        when given but invalid (so a rule does not pile a second error onto a bad value)."""
        if key in self.values:
            return self.values[key]
        k = next((k for k in self.section.keys if k.name == key), None)
        if k is None or k.name in self.raw or k.required:
            return None
        return k.default

    def other(self, name: str) -> "Got":
        return self.others[name]

    def err(self, key: str | None, why: str) -> None:
        self.ctx.err(self.section.name, key, why)

    def drop(self, key: str) -> None:
        """A rule found the key unusable: the dataclass gets its default."""
        self.values.pop(key, None)

    def convert(self) -> None:
        for k in self.section.keys:
            if k.name not in self.raw:
                if k.required:
                    self.err(None, k.missing())
                continue
            v = self.raw[k.name]
            if not k.kind.accepts(v):
                self.err(k.name, f"expected {k.kind.expected(k)}, got {tname(v)} {v!r}")
                continue
            self.key = k.name
            try:
                self.values[k.name] = k.kind.convert(v, self) if k.kind.convert else v
            except Invalid as e:
                self.err(k.name, str(e))
            self.key = None

    def build(self) -> Any:
        names = set(self.section.key_names) | {d[0] for d in self.section.derived}
        return self.section.cls(**{n: v for n, v in self.values.items() if n in names})


def load_sections(sections: tuple[Section, ...], data: dict, ctx: Context) -> dict[str, Got]:
    """Check and convert every section (unknown sections/keys are the caller's), then run each
    present section's rules in table order (rules may look at other sections)."""
    gots: dict[str, Got] = {}
    for s in sections:
        raw = data.get(s.name)
        present = isinstance(raw, dict)
        gots[s.name] = Got(s, raw if present else {}, ctx, gots, present)
        if present:
            gots[s.name].convert()
    for s in sections:
        if gots[s.name].present:
            for rule in s.rules:
                rule(gots[s.name])
    return gots


# ------------------------------------------------------------------ documentation
def markdown_table(section: Section) -> str:
    """The README table for one section: | key | type | default | meaning |."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for k in section.keys:
        if k.required:
            default = "(required)"
        elif k.default is None:
            default = ""
        else:
            default = f"`{_toml_literal(k.default)}`"
        rows.append(f"| `{k.name}` | {k.kind.name} | {default} | {k.doc or k.help} |")
    return "\n".join(rows)


_BLOCK = re.compile(r"^(<!-- keys \[([a-z0-9_]+)\][^\n]*-->\n)(.*?)^(<!-- /keys -->)$", re.S | re.M)


def readme_tables(text: str) -> dict[str, str]:
    """The generated key tables in README text, by section name."""
    return {m.group(2): m.group(3).rstrip("\n") for m in _BLOCK.finditer(text)}


def update_readme(text: str, sections: tuple[Section, ...]) -> str:
    """README text with each marked key table replaced by the one generated from the table."""
    by_name = {s.name: s for s in sections}
    return _BLOCK.sub(lambda m: m.group(1) + markdown_table(by_name[m.group(2)]) + "\n" + m.group(4)
                      if m.group(2) in by_name else m.group(0), text)
