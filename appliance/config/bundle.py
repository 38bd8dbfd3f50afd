"""An appliance TOML with every file it names, as one flat set of files for the VM.

Used twice, so both agree: image/build.py bakes the bundle into /etc/vpn-appliance of the image,
and `vpn-appliance config-disk` writes it onto a config volume. The VM sees neither the operator's
directories nor absolute paths, so the bundle renames every file to a plain name in one directory
and rewrites the lines that name them (the TOML's FILE keys, the profile's file directives).

Which files: found from the parsers' own records, not by re-reading the text by hand:
- TOML keys of kind FILE in the key table (`vpn.config`), at the line the loader recorded;
- every file the OpenVPN parser reads while parsing the profile, a file or inline in the TOML
  (`ca`, `cert`, `key`, `tls-crypt`, `tls-auth`,
  `auth-user-pass`, `pkcs12`, ...: they go through its `read_file` hook, which we wrap to note the
  line being parsed);
- the Options fields that keep a path to read at run time (_runtime_paths: `crl-verify`, `capath`, the
  management password file, `client-config-dir`, the password file, a read-only
  `ifconfig-pool-persist FILE 0`), at the line in `Options.source`; a directory whole or refused.
The bundle is built only from a config that passes `check` (schema + key material), so a broken
config is refused with file:line before anything is written.

Files the config *writes* while it runs (output_paths: `status`, `ifconfig-pool-persist FILE N`
with N > 0, a `management PATH unix` socket) are not carried but pointed at OUTPUT_DIR, the VM's
one writable place (a tmpfs), under their own base name: the VM has no writable disk, its config
volume is read-only, and a directory such as Debian's /var/log/openvpn does not exist there, so
left as written each write failed with a warning (the management socket stopped the start). The
decision is made here, once, so the VM runs the rewritten lines as any others (a reload re-reads
the same ones) and `make image`/`config-disk` print it (Bundle.output_lines); the profile itself,
run on a host, keeps its paths as written.
"""
from __future__ import annotations

import errno
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..openvpn.config.lexer import lines as ovpn_lines
from ..openvpn.config.lexer import split_lines
from ..openvpn.config.parser import ParseState
from ..openvpn.config.table import TABLE
from ..openvpn.errors import ConfigError
from ..openvpn.peernames import file_text, to_bytes
from ..openvpn.regular_file import (CAPATH_ENTRY, CCD, CONFIG, CRL, KEY_MATERIAL, PASSWORD_DB, POOL, FileKind,
                                    read_regular_file)
from .keys import SECTIONS
from .schema import load_appliance_config, validate_runtime
from .table import FILE

TOML_NAME = "appliance.toml"
MAX_FILES = 256              # a directory the config names (ccd, CRL dir): more entries are refused
# A name a directory's entry keeps on the config volume (FAT, mounted by the VM with iocharset=ascii):
# mtools took `a:b` for a drive and wrote `b`, and a name out of ASCII is no name the VM can look up.
_FAT_NAME = re.compile(r"[A-Za-z0-9 !#$%&'()+,.;=@\[\]^_`{}~-]+")
MAX_BYTES = 16 << 20         # all files together: a config volume is small
# Where the VM writes what a config writes while it runs: boot/init.py makes it on the tmpfs it
# mounts on /run (kept in RAM, gone at power-off). A directory of its own: /run/vpn-appliance holds
# the appliance's own records (router/route_record.py), which no name a config picks may replace.
OUTPUT_DIR = "/run/vpn-appliance/openvpn"
# A written file's name there is its base name cut to this many characters (its end kept): the
# rewritten line must stay under OpenVPN's 255-byte line limit, and the directory is longer than
# the relative name it replaces.
MAX_OUTPUT_NAME = 64


def _runtime_paths(o) -> list[tuple[str, str, bool, FileKind]]:
    """(Options field, path, is a directory, what it holds) of every input file read after parsing.
    The password file among them: left out, a server VM with `auth-user-pass-verify FILE passdb`
    booted without it and could not start."""
    out = []
    if o.crl_verify and o.crl_verify[0] in ("file", "dir"):
        out.append(("crl_verify", o.crl_verify[1], o.crl_verify[0] == "dir", CRL))
    if getattr(o, "capath", None):
        # Its CA and CRL files, read by OpenSSL as handshakes need them: left out, the VM kept the
        # host's path (no such directory there: no start; or one of its own by that name).
        out.append(("capath", o.capath, True, CAPATH_ENTRY))
    if o.management and o.management[2]:
        out.append(("management", o.management[2], False, KEY_MATERIAL))
    if getattr(o, "client_config_dir", None):
        out.append(("client_config_dir", o.client_config_dir, True, CCD))
    if getattr(o, "auth_user_pass_verify", None):
        out.append(("auth_user_pass_verify", o.auth_user_pass_verify[0], False, PASSWORD_DB))
    pool = getattr(o, "ifconfig_pool_persist", None)
    if pool and pool[1] == 0 and os.path.isfile(pool[0]):
        # N = 0: the file is only read (OpenVPN's meaning), an operator's fixed addresses per
        # name; left out, the VM's clients got other addresses. (With N > 0 it is the server's
        # own record, written as it runs: not an input to carry.)
        out.append(("ifconfig_pool_persist", pool[0], False, POOL))
    return out


def output_paths(o) -> list[tuple[str, str, str]]:
    """(Options field, directive, path) of every file the config writes while it runs. Not `log`,
    `log-append` or `writepid`: the VM does not apply them (its log is the console, its PID 1;
    a host run does: host/process_files.py)."""
    out = []
    if getattr(o, "status", None):
        out.append(("status", "status", o.status[0]))
    pool = getattr(o, "ifconfig_pool_persist", None)
    if pool and pool[1] > 0:                     # N = 0: only read (an input, _runtime_paths)
        out.append(("ifconfig_pool_persist", "ifconfig-pool-persist", pool[0]))
    if getattr(o, "management", None) and o.management[1] == "unix":
        out.append(("management", "management", o.management[0]))   # its socket, made at start
    return out


@dataclass(frozen=True)
class Output:
    """A file the config writes while it runs, and where the VM writes it instead."""
    directive: str
    written: str          # the path the config names (relative ones resolved against its directory)
    vm_path: str          # under the bundle's output_dir
    where: str            # file:line of the directive


@dataclass
class Bundle:
    """Flat file name -> bytes; `appliance.toml` is the entry point. `origin` says where each came from.
    `outputs`: the files the config writes while it runs, each pointed at `output_dir`."""
    files: dict[str, bytes] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)
    output_dir: str = OUTPUT_DIR

    def output_for(self, src: str, directive: str, where: str) -> str:
        """The VM's path for the written file `src`: `output_dir/BASENAME`, the same one each time
        the same file is named (two directives writing one file still write one), another name
        (`2-BASENAME`) for another file of the same base name."""
        for o in self.outputs:
            if o.written == src:
                vm = o.vm_path
                break
        else:
            stem = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(src.rstrip("/")))[-MAX_OUTPUT_NAME:]
            stem = stem.lstrip(".") or "file"                 # no hidden file, never `.` or `..`
            used = {os.path.basename(o.vm_path) for o in self.outputs}
            name, n = stem, 1
            while name in used:
                n += 1
                name = f"{n}-{stem}"
            vm = os.path.join(self.output_dir, name)
        self.outputs.append(Output(directive, src, vm, where))
        return vm

    def output_lines(self) -> list[str]:
        """What `make image` and `config-disk` print for the written files, one line each."""
        return [f"{o.vm_path} <- {o.directive} {o.written} ({o.where}): written in the VM's memory, "
                "gone at power-off" for o in self.outputs]

    def name_for(self, src: str, taken_by: dict[str, str]) -> str:
        """A plain, FAT-safe name for `src`, the same one each time the same file is named."""
        if src in taken_by:
            return taken_by[src]
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(src.rstrip("/"))) or "file"
        name, n = stem, 1
        # Compared as FAT compares names (case aside): `CA.crt` beside `ca.crt` failed mcopy.
        used = {x.split("/")[0].lower() for x in self.files} | {x.lower() for x in taken_by.values()}
        while name.lower() in used or name.lower() == TOML_NAME:
            n += 1
            name = f"{n}-{stem}"
        taken_by[src] = name
        return name

    def add(self, name: str, data: bytes, origin: str) -> None:
        self.files[name] = data
        self.origin[name] = origin
        if sum(map(len, self.files.values())) > MAX_BYTES:
            raise ConfigError(f"the config and its files exceed {MAX_BYTES >> 20} MiB", origin)


def _lines_keepends(text: str) -> list[str]:
    """The lines of `text` with their LF, numbered as the OpenVPN lexer and TOML count them (LF
    only): str.splitlines also ends lines at VT, FF, U+0085, U+2028..., so a comment holding one
    shifted every later line and the renamed file went onto the wrong one."""
    return re.split(r"(?<=\n)", text)


def _rewrite_lines(text: str, base: str, renames: dict[int, dict[str, str]]) -> str:
    """Replace, on the given line numbers, every token naming one of the paths by its new name."""
    if not renames:
        return text
    out = _lines_keepends(text)
    by_number = {ln.number: ln for ln in ovpn_lines(text)}
    for number, paths in renames.items():
        ln = by_number.get(number)
        if ln is None or ln.tokens is None or ln.inline is not None:
            continue
        toks = [ln.tokens[0]]                   # the directive: `status status` names a file `status`
        left = dict(paths)
        for t in ln.tokens[1:]:
            p = os.path.normpath(t if os.path.isabs(t) else os.path.join(base, t))
            # Each path once, its first token: in `status 20 20` (a file named 20, every 20 s)
            # the second 20 is the interval, which a rename made a path the VM refused.
            toks.append(left.pop(p, t))
        end = "\n" if out[number - 1].endswith("\n") else ""
        out[number - 1] = " ".join(shlex.quote(t) if re.search(r"[\s'\"\\#;]", t) else t for t in toks) + end
    return "".join(out)


def _no_include(p: str) -> bytes:
    """`config FILE` in a bundled profile: FILE would need bundling, and the lines naming files
    in it rewriting, which is not done yet; refused at its line rather than bundled half."""
    raise OSError(errno.ENOTSUP, "the VM image does not carry `config` includes yet: put the file's lines "
                  "in the profile itself")


def _named_files(b: Bundle, text: str, path: str, taken: dict[str, str], offset: int = 0) -> dict[int, dict[str, str]]:
    """Parse OpenVPN `text` (as if from `path`), noting every file read and its line; add them to the
    bundle; -> {line + offset: {absolute path: new name}} for _rewrite_lines."""
    reads: list[tuple[int, str]] = []
    state: ParseState

    def reader(p: str) -> bytes:
        data = read_regular_file(p, KEY_MATERIAL)
        reads.append((state.line, os.path.normpath(p)))
        return data
    state = ParseState(path, reader, TABLE, read_config=_no_include)
    opts = state.parse(text)
    renames: dict[int, dict[str, str]] = {}
    for line, p in reads:
        name = b.name_for(p, taken)
        b.add(name, read_regular_file(p, KEY_MATERIAL), p)
        renames.setdefault(line + offset, {})[p] = name
    for fld, p, is_dir, kind in _runtime_paths(opts):
        p = os.path.normpath(p)
        name = b.name_for(p, taken)
        src = opts.source.get(fld)
        if is_dir:
            where = (src[0], src[1] + offset) if src is not None and src[1] is not None else (path, None)
            _add_dir(b, p, name, kind, *where, fld.replace("_", "-"))
        else:
            b.add(name, read_regular_file(p, kind), p)
        if src is not None and src[1] is not None:
            renames.setdefault(src[1] + offset, {})[p] = name
    for fld, directive, p in output_paths(opts):
        src = opts.source.get(fld)
        if src is None or src[1] is None:
            raise ConfigError("cannot find the line of this directive to point it at the VM's "
                              f"{b.output_dir}", path, None, directive)
        line = src[1] + offset
        p = os.path.normpath(p)
        renames.setdefault(line, {})[p] = b.output_for(p, directive, f"{src[0]}:{line}")
    return renames


def _add_dir(b: Bundle, p: str, name: str, kind: FileKind, conf: str, line: int | None, directive: str) -> None:
    """Every entry of the directory `p` (client-config-dir, `crl-verify DIR dir`, capath) as `name/ENTRY`,
    each under the name the VM will look up; else ConfigError at the directive's line. Never
    a part of it: the 257th revoked serial of a CRL directory was left out (that certificate got
    into the VM), as was a ccd file's `disable` or iroute, silently."""
    def refuse(why: str) -> ConfigError:
        return ConfigError(f"{p}: {why}", conf, line, directive)
    entries = sorted(Path(p).iterdir())
    if len(entries) > MAX_FILES:
        raise refuse(f"{len(entries)} entries, more than the {MAX_FILES} a config volume takes")
    seen: dict[str, str] = {}
    for e in entries:
        if not _FAT_NAME.fullmatch(e.name) or e.name[-1] in ". ":
            raise refuse(f"the entry {e.name!r} cannot keep its name on the config volume (FAT: ASCII "
                         "letters, digits and few signs; no : * ? \" < > | \\, no trailing dot or blank)")
        other = seen.setdefault(e.name.lower(), e.name)
        if other != e.name:
            raise refuse(f"the entries {other!r} and {e.name!r} are one name on the config volume (FAT "
                         "ignores case)")
        if kind is CRL:
            # Only its name counts (a serial it revokes), whatever it is: not read.
            b.add(f"{name}/{e.name}", b"", str(e))
        elif e.exists():                    # a dangling link is no file here nor at run time
            b.add(f"{name}/{e.name}", read_regular_file(str(e), kind), str(e))


def _profile(b: Bundle, path: str, taken: dict[str, str]) -> str:
    """The profile file's text with the files it names renamed (and added to the bundle)."""
    # Its bytes as they are (a Latin-1 `push` passes: load_config reads it so), written back the same.
    text = file_text(read_regular_file(path, CONFIG))
    return _rewrite_lines(text, os.path.dirname(os.path.abspath(path)), _named_files(b, text, path, taken))


_MULTILINE_OPEN = re.compile(r"=\s*('''|\"\"\")(.*)$")


def _inline_profile(b: Bundle, cfg, toml_path: str, text: str, taken: dict[str, str]) -> str:
    """A profile inline in the TOML (`vpn.inline`) may name files too (relative to the TOML): rename
    them on the TOML's own lines. Only a multi-line string can hold a file directive on its own line."""
    start = cfg.source.get(("vpn", "inline"))
    m = _MULTILINE_OPEN.search(split_lines(text)[start - 1]) if start else None
    if m is None:
        return text
    offset = start if m.group(2).strip() == "" else start - 1      # TOML drops a newline after the opening
    renames = _named_files(b, cfg.vpn.inline, toml_path, taken, offset)
    return _rewrite_lines(text, os.path.dirname(os.path.abspath(toml_path)), renames)


def _toml_line_set(text: str, line: int, key: str, value: str) -> str:
    """Set `key = "value"` on `line` (1-based) of TOML text, keeping the rest of the line."""
    out = _lines_keepends(text)
    new, n = re.subn(rf'^(\s*{re.escape(key)}\s*=\s*)("(?:[^"\\]|\\.)*"|\'[^\']*\')',
                     lambda m: m.group(1) + '"' + value + '"', out[line - 1], count=1)
    if n != 1:
        raise ConfigError(f"cannot rewrite this line to the file's name in the image ({key} must be "
                          "a plain `key = \"value\"` line)", None, line, key)
    out[line - 1] = new
    return "".join(out)


def collect(toml_path: str | Path, output_dir: str = OUTPUT_DIR) -> Bundle:
    """`check` the TOML (raises ConfigError with file:line), then gather it and every file it names.
    `output_dir`: where the VM writes the files the config writes (tests: a directory of theirs)."""
    toml_path = str(toml_path)
    cfg = load_appliance_config(toml_path)
    validate_runtime(cfg)
    b = Bundle(output_dir=output_dir)
    taken: dict[str, str] = {}
    text = read_regular_file(toml_path, CONFIG).decode("utf-8")
    for sec in SECTIONS:
        obj = getattr(cfg, sec.name, None)
        for k in sec.keys:
            if k.kind is not FILE or obj is None or not getattr(obj, k.name, None):
                continue
            src = os.path.normpath(getattr(obj, k.name))
            name = b.name_for(src, taken)
            if sec.name == "vpn" and k.name == "config":
                b.add(name, to_bytes(_profile(b, src, taken)), src)
            else:
                b.add(name, read_regular_file(src, KEY_MATERIAL), src)
            line = cfg.source.get((sec.name, k.name))
            if line is None:
                raise ConfigError("cannot find the line of this key to rewrite it", toml_path, None,
                                  f"{sec.name}.{k.name}")
            try:
                text = _toml_line_set(text, line, k.name, name)
            except ConfigError as e:
                raise ConfigError(e.message, toml_path, e.line, f"{sec.name}.{k.name}") from None
    if cfg.vpn.inline and not cfg.vpn.config:
        text = _inline_profile(b, cfg, toml_path, text, taken)
    b.add(TOML_NAME, text.encode(), toml_path)
    return b


def write_dir(b: Bundle, target: Path) -> None:
    """Write the bundle under `target` (the image's /etc/vpn-appliance)."""
    for name, data in sorted(b.files.items()):
        p = target / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        p.chmod(0o600)
