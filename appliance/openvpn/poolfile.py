"""`ifconfig-pool-persist FILE [N]`: which common name had which pool address, in OpenVPN 2.6's
file format (pool.c ifconfig_pool_write): one `CN,IPv4[,IPv6]` line per client. Read at start (a
client that comes back gets its old address if it is free), written every N seconds and at exit;
N = 0 reads the file only (OpenVPN's meaning)."""
from __future__ import annotations

import ipaddress

from ..atomic_file import replace_file
from .config.lexer import split_lines


def read(path: str) -> dict[str, tuple[str | None, str | None]]:
    out: dict[str, tuple[str | None, str | None]] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = split_lines(f.read())
    except OSError:
        return out
    for line in lines:
        parts = line.strip().split(",")
        if len(parts) < 2 or not parts[0]:
            continue
        v4 = v6 = None
        try:
            if parts[1]:
                v4 = str(ipaddress.IPv4Address(parts[1]))
            if len(parts) > 2 and parts[2]:
                v6 = str(ipaddress.IPv6Address(parts[2]))
        except ValueError:
            continue
        out[parts[0]] = (v4, v6)
    return out


# What a name in the file may not hold: the field and line separators. The client's certificate
# (or its username, under username-as-common-name) chooses its name, and CC_PRINT keeps a comma:
# `x,,2001:db8::ff:ffff:ffff` was read back at the next start as name `x` with that address.
_NOT_IN_NAME = frozenset(",\n\r")


def render(entries: dict[str, tuple[str | None, str | None]]) -> str:
    """The file's text; a name that would not read back as itself is left out (remembered
    while the server runs, not across a restart)."""
    lines = []
    for cn, (v4, v6) in entries.items():
        if _NOT_IN_NAME.intersection(cn):
            continue
        lines.append(f"{cn},{v4 or ''},{v6 or ''}")
    return "".join(line + "\n" for line in lines)


def write(path: str, entries: dict[str, tuple[str | None, str | None]]) -> None:
    replace_file(path, render(entries).encode())


class PoolMemory:
    """Common name -> the addresses it had; `want(cn)` asks the pools for them again."""

    def __init__(self, path: str | None, interval: int) -> None:
        self.path = path
        self.interval = interval
        self.entries = read(path) if path is not None else {}
        self.dirty = False

    @classmethod
    def in_memory(cls) -> "PoolMemory":
        """Without ifconfig-pool-persist OpenVPN still remembers, while it runs, which common name
        had which pool address, and gives a reconnecting client its address back."""
        return cls(None, 0)

    def want(self, cn: str | None) -> tuple[str | None, str | None]:
        return self.entries.get(cn or "", (None, None)) if cn else (None, None)

    def pick(self, cn: str | None, free: list[str]) -> str | None:
        """The address for `cn`: its own if free, else the first free one no other name holds
        (OpenVPN hands out remembered addresses of other clients only when nothing else is left)."""
        own = self.want(cn)[0]
        if own is not None and own in free:
            return own
        held = {v4 for name, (v4, _v6) in self.entries.items() if name != cn and v4}
        return next((ip for ip in free if ip not in held), None)

    def note(self, cn: str | None, v4: str | None, v6: str | None) -> None:
        if not cn or (v4 is None and v6 is None):
            return
        if self.entries.get(cn) != (v4, v6):
            # One name per address, as OpenVPN's pool keeps it (so the memory stays as small as
            # the pool, however many names come and go).
            for other in [n for n, (a4, a6) in self.entries.items() if n != cn and
                          ((v4 and a4 == v4) or (v6 and a6 == v6))]:
                del self.entries[other]
            self.entries.pop(cn, None)
            self.entries[cn] = (v4, v6)
            self.dirty = True

    def save(self) -> None:
        if self.path is None or self.interval == 0 or not self.dirty:
            return
        write(self.path, self.entries)
        self.dirty = False
