"""`ifconfig-pool-persist FILE [N]`: which common name had which pool address, in OpenVPN 2.6's
file format (pool.c ifconfig_pool_write): one `CN,IPv4[,IPv6]` line per client. Read at start (a
client that comes back gets its old address if it is free), written every N seconds and at exit;
N = 0 reads the file only (OpenVPN's meaning)."""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from ..atomic_file import replace_file
from .config.lexer import split_lines
from .peernames import ERRORS, to_bytes
from .regular_file import POOL, read_regular_file

if TYPE_CHECKING:
    from .addresspool import AddressPool


def read(path: str) -> dict[str, tuple[str | None, str | None]]:
    """The names and addresses in the file; none when it cannot be read. Read at start: a pipe
    or device there is not read (regular_file.py; a FIFO hung the start, /dev/zero grew the
    process without end), as if the file were missing (it is replaced at the first write)."""
    out: dict[str, tuple[str | None, str | None]] = {}
    try:
        lines = split_lines(read_regular_file(path, POOL).decode("utf-8", ERRORS))   # names as OpenVPN wrote them
    except OSError:
        return out
    for line in lines:
        # As 2.6's ifconfig_pool_read: a CR anywhere dropped (status_read), `#` and `;` begin a
        # comment, and each address stands on its own -- a line whose IPv6 field is not an
        # address keeps its IPv4 one and the other way round; a line with neither is skipped.
        parts = line.replace("\r", "").split(",")
        if len(parts) < 2 or not parts[0] or parts[0][0] in "#;":
            continue
        v4 = _address(ipaddress.IPv4Address, parts[1])
        v6 = _address(ipaddress.IPv6Address, parts[2]) if len(parts) > 2 else None
        if v4 is None and v6 is None:
            continue
        out[parts[0]] = (v4, v6)
    return out


def _address(kind, text: str) -> str | None:
    """The field as an address of that kind, or None (empty or not an address: 2.6 warns and
    goes on with the line's other address)."""
    if not text:
        return None
    try:
        return str(kind(text))
    except ValueError:
        return None


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
    replace_file(path, to_bytes(render(entries)))


class PoolMemory:
    """Common name -> the addresses it had; `want(cn)` asks the pools for them again."""

    def __init__(self, path: str | None, interval: int) -> None:
        self.path = path
        self.interval = interval
        self.entries = read(path) if path is not None else {}
        # Address -> the name holding it (one name per address): the lookups at each connect
        # scanned every entry (3.8 ms per connect at 20,000 remembered names).
        self._by_v4: dict[str, str] = {}
        self._by_v6: dict[str, str] = {}
        for cn, (v4, v6) in list(self.entries.items()):
            self._index(cn, v4, v6)
        self.dirty = False

    def _index(self, cn: str, v4: str | None, v6: str | None) -> None:
        """`cn` holds v4 and v6: a name that held either before forgets it (its entry goes)."""
        for addr, by in ((v4, self._by_v4), (v6, self._by_v6)):
            other = by.get(addr) if addr else None
            if other is not None and other != cn:
                self._forget(other)
        self.entries[cn] = (v4, v6)
        if v4:
            self._by_v4[v4] = cn
        if v6:
            self._by_v6[v6] = cn

    def _forget(self, cn: str) -> None:
        v4, v6 = self.entries.pop(cn, (None, None))
        if v4 and self._by_v4.get(v4) == cn:
            del self._by_v4[v4]
        if v6 and self._by_v6.get(v6) == cn:
            del self._by_v6[v6]

    @classmethod
    def in_memory(cls) -> "PoolMemory":
        """Without ifconfig-pool-persist OpenVPN still remembers, while it runs, which common name
        had which pool address, and gives a reconnecting client its address back."""
        return cls(None, 0)

    def want(self, cn: str | None) -> tuple[str | None, str | None]:
        return self.entries.get(cn or "", (None, None)) if cn else (None, None)

    def pick(self, cn: str | None, pool: "AddressPool") -> str | None:
        """The address for `cn`: its own if free, else the first free one no other name holds
        (OpenVPN hands out remembered addresses of other clients only when nothing else is left)."""
        own = self.want(cn)[0]
        if own is not None and pool.is_free(own):
            return own
        by = self._by_v4
        return next((ip for ip in pool.free if by.get(ip, cn) == cn), None)

    def note(self, cn: str | None, v4: str | None, v6: str | None) -> None:
        if not cn or (v4 is None and v6 is None):
            return
        if self.entries.get(cn) != (v4, v6):
            # One name per address, as OpenVPN's pool keeps it (so the memory stays as small as
            # the pool, however many names come and go); the name moves to the end, as it did.
            self._forget(cn)
            self._index(cn, v4, v6)
            self.dirty = True

    def save(self) -> None:
        if self.path is None or self.interval == 0 or not self.dirty:
            return
        write(self.path, self.entries)
        self.dirty = False
