"""The appliance TOML (one static file baked into the image) → frozen dataclasses.

Why this shape: the OpenVPN part stays a plain OpenVPN 2.6 config (a file beside the TOML, or the
same text inline), so an existing eduVPN/OpenVPN profile drops in unchanged; the TOML only adds
what OpenVPN does not know about: the appliance's own NICs and whether it routes a LAN.

Keys: each TOML key is declared once, in keys.py (a `Key(...)` in its section's tuple); the
section dataclasses below (ApplianceSection, Wan, Lan, Vpn) and ApplianceConfig are generated from
that table, and this module only reads the TOML, finds lines, and runs the table (table.py).

Errors: every problem is a ConfigError whose str is `file:line: key: why`; all problems are
collected and raised together (ConfigErrors). tomllib reports no key positions, so lines are
found by scanning the text (section headers and `key =` lines). Errors inside the OpenVPN config
keep that file's own `file:line`; for an inline config, inline line N is reported as the TOML line
where the string starts + N.
"""
from __future__ import annotations

import functools
import os
import re
import sys
import tomllib
from dataclasses import field, make_dataclass
from typing import Callable

from ..openvpn.errors import ConfigError
from ..openvpn.config import ConfigErrors, Options, parse_config, render_options
from ..openvpn.config.lexer import split_lines
from ..openvpn.regular_file import CONFIG, read_limited, read_regular_file
from ..openvpn.settings import check_key_material
from ..openvpn.tls import TlsSettings
from .mgmt_listen import management_side
from .keys import APPLIANCE, LAN, LOG_LEVELS, ROLES, SECTIONS, VPN, WAN  # noqa: F401 (LOG_LEVELS, ROLES: re-exported)
from .table import Section, load_sections


@functools.cache
def config_class(sections: tuple[Section, ...] = SECTIONS) -> type:
    """ApplianceConfig: the file's path, one field per section (table order), the OpenVPN options."""
    fields_ = [("path", str)]
    fields_ += [(s.name, s.cls | None if s.absent == "none" else s.cls) for s in sections]
    fields_ += [("vpn_options", Options, field(compare=False)),
                # (section, key) → TOML line it was given on (like Options.source), for `check`
                ("source", dict[tuple[str, str], int], field(default_factory=dict, compare=False, repr=False))]

    def tun_name(self) -> str:
        """A fixed TUN name, so firewall rules written before the tunnel exists match it."""
        dev = self.vpn_options.dev
        return "tun0" if dev in (None, "", "tun") or "%" in dev else dev

    cls = make_dataclass("ApplianceConfig", fields_, frozen=True,
                         namespace={"tun_name": property(tun_name),
                                    "__doc__": "The whole appliance TOML, checked (see keys.py)."})
    cls.__module__ = __name__
    return cls


# The dataclasses are generated from the key table (keys.py); these names are what the rest of
# the appliance imports.
ApplianceSection = APPLIANCE.cls
Wan = WAN.cls
Lan = LAN.cls
Vpn = VPN.cls
ApplianceConfig = config_class()


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
        for n, line in enumerate(split_lines(text), 1):     # TOML ends lines at LF (CRLF) only
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
    def __init__(self, path: str, text: str, sections: tuple[Section, ...]) -> None:
        self.path = path
        self.sections = {s.name: s for s in sections}
        self.text = text
        self.base = os.path.dirname(os.path.abspath(path))
        self.lines = _Lines(text)
        self.errors: list[ConfigError] = []

    def err(self, section: str, key: str | None, why: str) -> None:
        name = f"{section}.{key}" if key else f"[{section}]"
        self.errors.append(ConfigError(why, self.path, self.lines.of(section, key), name))

    def check_keys(self, data: dict) -> None:
        """Unknown sections and keys, with the allowed ones (from the key table)."""
        for section, value in data.items():
            if section not in self.sections:
                where = self.lines.of(section) or self.lines.of("", section)
                self.errors.append(ConfigError(
                    f"unknown section (expected one of: {', '.join(self.sections)})", self.path, where, f"[{section}]"))
                continue
            if not isinstance(value, dict):
                self.errors.append(ConfigError("must be a [section], not a value", self.path,
                                               self.lines.of("", section), section))
                continue
            allowed = self.sections[section].key_names
            for key in value:
                if key not in allowed:
                    self.err(section, key, f"unknown key (allowed in [{section}]: {', '.join(allowed)})")

    def parse_ovpn(self, text: str, path: str, offset: int | None, single_line: int | None = None,
                   ignore_scripts: bool = False) -> Options | None:
        """Parse OpenVPN text; for inline text, move its line numbers onto the TOML's."""
        try:
            opts = parse_config(text, path, ignore_scripts=ignore_scripts, no_scripts=True)   # the VM runs none
        except ConfigError as e:
            errs = e.errors if isinstance(e, ConfigErrors) else [e]
            for x in errs:
                if (offset is None and single_line is None) or x.path != path:   # or a `config FILE`'s
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
        for f, d in (("client_connect", "client-connect"), ("client_disconnect", "client-disconnect"),
                     ("tls_verify", "tls-verify"), ("tls_crypt_v2_verify", "tls-crypt-v2-verify")):
            if getattr(opts, f, None):      # the appliance image (the TOML's home) runs no scripts
                p, line = opts.source.get(f, (path, None))
                self.errors.append(ConfigError("the VM image runs no scripts", p, line, d))
        for f, why in _TOML_REFUSED:
            if getattr(opts, f, None):
                p, line = opts.source.get(f, (path, None))
                self.errors.append(ConfigError(why, p, line, f))
        if opts.dev_type == "tap":
            # The VM routes (layer 3) between its LAN and the tunnel, and its firewall names a TUN;
            # a tap client or a layer-2 server (openvpn/l2switch.py) runs on a host.
            d = "dev_type" if "dev_type" in opts.source else "dev"
            p, line = opts.source.get(d, (path, None))
            self.errors.append(ConfigError(NO_TAP, p, line, d.replace("_", "-")))
        if opts.auth_pam is not None:       # (gateway/pam_check.py) refused, not left without its check
            p, line = opts.source.get("auth_pam", (path, None))
            self.errors.append(ConfigError(_NO_PAM, p, line, "plugin"))
        return opts


# Process settings an appliance TOML refuses (README "Privileges"); a host run of the profile
# itself (`vpn-appliance run profile.ovpn`) applies them (host/privileges.py).
_DROP = ("not applied by the appliance TOML run (the VM's PID 1): it must stay root to reap and power off, "
         "and its router part (NICs, firewall, LAN DHCP/DNS/RA) needs most network capabilities all along; "
         "remove the line (`vpn-appliance run profile.ovpn` on a host applies it)")
_TOML_REFUSED = (("user", _DROP), ("group", _DROP),
                 ("mlock", "not applied by the appliance TOML run: the VM has no swap (its memory never reaches "
                           "a disk), and locking would pin the libraries the 128 MB VM pages in and out; remove "
                           "the line"))


NO_TAP = ("a tap (layer 2) device is not supported in the VM image: it routes and NATs between its LAN and "
           "a TUN device by IP address (firewall, LAN routes, DNS); use dev tun, or run this config on a host "
           "(`vpn-appliance run FILE`)")


_NO_PAM = ("the auth-pam plugin is not supported in the VM image: it has no user accounts and no PAM stack "
           "to check passwords against; use `auth-user-pass-verify FILE passdb` (a password file) or "
           "management-client-auth, or run the profile on a host (`vpn-appliance run`)")


_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def parse_appliance_config(text: str, path: str = "<appliance.toml>",
                           sections: tuple[Section, ...] = SECTIONS) -> ApplianceConfig:
    """Validate TOML text (relative file names are resolved against `path`'s directory).

    `sections` is the key table (keys.SECTIONS); tests pass an extended one."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _TOML_POS.search(msg)
        if m:
            raise ConfigError(f"TOML syntax: {msg[:m.start()]} (column {m.group(2)})", path, int(m.group(1))) from None
        line = text.count("\n") + 1 if "end of document" in msg else None
        raise ConfigError(f"TOML syntax: {msg}", path, line) from None
    ld = _Loader(path, text, sections)
    ld.check_keys(data)
    gots = load_sections(sections, data, ld)
    built = {}
    for sec in sections:
        if sec.name in data:
            built[sec.name] = gots[sec.name].build()
            continue
        if sec.required:
            ld.errors.append(ConfigError(f"missing [{sec.name}] section ({sec.help})", path, None, f"[{sec.name}]"))
        built[sec.name] = None if sec.absent == "none" else sec.cls()
    opts = gots["vpn"].extra.get("options") if "vpn" in gots else None
    if opts is not None and opts.management and opts.role != "server":
        # The VM's firewall and outputs know a server's management port only (mgmt_listen.py):
        # a client VM's would be bound and unreachable, or reachable where nothing was decided.
        p, line = opts.source.get("management", (path, None))
        ld.errors.append(ConfigError("the appliance VM's client does not serve the management interface "
                                     "(a host run, `vpn-appliance run PROFILE`, does)", p, line, "management"))
    elif opts is not None and opts.management:
        # The VM opens the management port on the interface holding its address (mgmt_listen.py).
        try:
            management_side(built.get("wan"), built.get("lan"), opts.management)
        except ValueError as e:
            p, line = opts.source.get("management", (path, None))
            ld.errors.append(ConfigError(str(e), p, line, "management"))
    if ld.errors:
        ld.errors.sort(key=lambda e: (e.path != path, e.line or 0))
        raise ConfigErrors(ld.errors) if len(ld.errors) > 1 else ld.errors[0]
    assert opts is not None
    return config_class(sections)(path=path, vpn_options=opts, source=dict(ld.lines.keys), **built)


def load_appliance_config(path: str, again: bool = False) -> ApplianceConfig:
    """`again`: read by a server's reload, on its event loop: a regular file only (a FIFO's open()
    would wait for a writer, every client's packets waiting behind it)."""
    try:
        if again:
            text = read_regular_file(path, CONFIG).decode("utf-8")
        else:
            with open(path, "rb") as f:           # a pipe too, at start (its size unknown)
                text = read_limited(f, CONFIG, path).decode("utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", path) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text: {e.reason} at byte {e.start}", path) from None
    return parse_appliance_config(text, path)


def vpn_options_again(path: str) -> Options:
    """A reload of a server run from the appliance TOML at `path`: the TOML read again and its
    [vpn] profile (inline or a file) parsed as at start, `ignore_scripts` included; the TUN keeps
    the fixed name run_toml gave it. The other sections take effect at a restart."""
    cfg = load_appliance_config(path, again=True)
    cfg.vpn_options.dev = cfg.tun_name
    return cfg.vpn_options


def server_reload(path: str, started: ApplianceConfig,
                  crl_reader: Callable | None = None) -> tuple[Options, TlsSettings, list[str]]:
    """A reload of a server run from the appliance TOML at `path` (run_toml sets it as
    Operations.reload_options): its [vpn] profile as vpn_options_again reads it, its key material
    checked as at start (an error at the TOML's line, as validate_runtime says it: raised from
    check_key_material at a reload, it named no file), and, as warnings, what else `started` (the
    TOML the appliance runs on) differs in: [wan], [lan] and [appliance] are applied once at
    start (addresses, firewall, hostname), and an edit there was ignored without a word."""
    cfg = load_appliance_config(path, again=True)
    if cfg.vpn.role != "server":
        line = cfg.source.get(("vpn", "role"))
        raise ConfigError("changed; a server becomes a client at a restart only (the server runs on)",
                          cfg.path, line, "vpn.role")
    cfg.vpn_options.dev = cfg.tun_name
    return cfg.vpn_options, check_vpn_key_material(cfg, crl_reader), restart_only_sections(started, cfg)


def restart_only_sections(old: ApplianceConfig, new: ApplianceConfig,
                          sections: tuple[Section, ...] = SECTIONS) -> list[str]:
    """Each key of a section other than [vpn] that `new` changes, as a `file:line: section.key:`
    warning (the line that sets it now, or the old one for a key taken out)."""
    out = []
    for sec in sections:
        if sec.name == "vpn":
            continue
        was, now = getattr(old, sec.name), getattr(new, sec.name)
        if was == now:
            continue
        if was is None or now is None:
            line = new.source.get((sec.name, sec.keys[0].name)) if now is not None else None
            out.append(str(ConfigError(f"{'added' if now is not None else 'taken out'}; takes effect at restart "
                                       "(the appliance runs on as it started until then)", new.path, line,
                                       f"[{sec.name}]")))
            continue
        for k in sec.keys:
            if getattr(was, k.name) != getattr(now, k.name):
                line = new.source.get((sec.name, k.name)) or old.source.get((sec.name, k.name))
                out.append(str(ConfigError("changed; takes effect at restart (the appliance runs on as it "
                                           "started until then)", new.path, line, f"{sec.name}.{k.name}")))
    return out


def check_vpn_key_material(cfg: ApplianceConfig, crl_reader: Callable | None = None) -> TlsSettings:
    """check_key_material for the [vpn] profile, an error located in the TOML (or the profile's
    file): the one place for the start (validate_runtime) and a reload (server_reload)."""
    o = cfg.vpn_options
    try:
        return check_key_material(o, crl_reader=crl_reader)
    except ConfigError as e:
        if e.path is not None:
            raise
        # Say which file (and, when the directive is known, which line) the bad material came from.
        src = o.source.get((e.directive or "").replace("-", "_"))
        where = cfg.vpn.config or (f"{cfg.path}" if src is None else src[0])
        raise ConfigError(e.message, where, src[1] if src else cfg.vpn.inline_line, e.directive or "vpn") from None


def validate_runtime(cfg: ApplianceConfig) -> TlsSettings:
    """Checks that need the key material decoded (certificates, keys, tls-crypt keys). Returns
    the TLS settings made on the way: a server's start uses them (its CRL read once, not twice)."""
    return check_vpn_key_material(cfg)


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
        out.append(f"  listen {o.proto} port {o.local_port}, server {' '.join(o.server) if o.server else '-'}")
    out.append("kill switch: forward policy drop; LAN never reaches the WAN; WAN output only the VPN transport,"
               " DHCP and established")
    for n in o.notes:
        out.append(f"# note: {n}")
    return "\n".join(out)


def resolved_keys(cfg: ApplianceConfig, sections: tuple[Section, ...] = SECTIONS) -> str:
    """Every TOML key as resolved: `section.key = value   # file:line` or `# (default)`, then its help."""
    out = []
    for sec in sections:
        obj = getattr(cfg, sec.name)
        if obj is None:
            out.append(f"[{sec.name}]: not given ({sec.help} off)")
            continue
        for k in sec.keys:
            line = cfg.source.get((sec.name, k.name))
            where = f"{cfg.path}:{line}" if line is not None else "(default)" if k.default is not None else "(not set)"
            out.append(f"{sec.name}.{k.name} = {k.kind.show(getattr(obj, k.name))}   # {where}: {k.help}")
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
    print(f"\n# {cfg.path}: every key, with the line it came from")
    print(resolved_keys(cfg))
    print(f"\n# OpenVPN config ({cfg.vpn.config or f'inline at {cfg.path}:{cfg.vpn.inline_line}'})")
    print(render_options(cfg.vpn_options))
    return 0
