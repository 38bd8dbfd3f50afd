"""The pool-persist fuzz target: `ifconfig-pool-persist FILE`'s file read at start (poolfile.read,
PoolMemory), the names clients choose noted in it, written back and read again, and the pools
asking it for an address (pick, want) -- the path a hostile or corrupt file, and a client that
picks its own common name (a certificate's CN, a username under username-as-common-name), take.

Why a target: no target read the file (fuzz36's report). What 2.6 does with a line is the oracle,
restated below from its source (pool.c ifconfig_pool_read, status.c status_read, buffer.c
buf_parse): lines end at LF, every CR is dropped, empty lines and those starting with `#` or `;`
are skipped, the first three comma-separated fields are the name, the IPv4 and the IPv6 address,
and each address counts on its own (a line with neither is skipped; never an error).

Input: the file's bytes, then SEP and steps `op b0 body`, op % 4:
  0 a client named body (bytes as a peer sends them) is noted with POOL4[b0 % 8] (bit 3: none)
    and POOL6[(b0 >> 4) % 8] (bit 7: none);
  1 the memory saved and the file read again;
  2 the pool (some addresses leased by b0's bits) picks an address for the name body;
  3 the file's bytes replaced by body and read again (a new start).

Oracles:
- reading never raises, whatever the bytes (a FIFO, a device and the size bound are
  regular_file.py's and tested there);
- every name remembered comes from a line 2.6 takes, with that line's addresses as 2.6 reads
  them; a name whose last line 2.6 takes, none of whose addresses a later line of another name
  claims, is remembered with them (lines 2.6 would read otherwise -- longer than its buffers, a
  NUL, an IPv4 spelling inet_aton takes and ipaddress does not, an IPv6 /bits -- make the file
  checked only by the first rule);
- one name per address: the indexes are exactly the entries' inverse;
- after a note, the name wants exactly what was noted; what is written reads back as the
  entries, but names 2.6 would not read back (a comma, CR or LF; `#` or `;` first), byte for byte;
- a pick is a free address of the pool, the name's own when free, never one another name holds.
"""
from __future__ import annotations

import ipaddress
import os
import socket

from tests.fuzz.scratch import scratch_dir

SEP = b"\xfe\xfd"
POOL4 = tuple(f"198.19.0.{i}" for i in (2, 3, 4, 5, 6, 14, 200, 9))   # .200: outside the pool
POOL6 = tuple(f"2001:db8::{i:x}" for i in (0x1000, 0x1001, 0x1002, 0x2000, 1, 0xffff, 0x1003, 0x1004))


def _v4_26(text: str):
    """(address or None, certain): 2.6's numeric getaddr against ipaddress's reading."""
    if not text:
        return None, True
    try:
        ours = str(ipaddress.IPv4Address(text))
    except ValueError:
        ours = None
    try:
        socket.inet_aton(text)
        aton = True
    except (OSError, ValueError):
        aton = False
    if ours is not None:
        return ours, True
    return None, not aton          # inet_aton takes "1.2.3", "010.0.0.1", trailing junk: 2.6 might


def _v6_26(text: str):
    if not text:
        return None, True
    if "/" in text or "%" in text:
        try:
            ipaddress.IPv6Address(text)
            return None, False     # get_ipv6_addr takes /bits; ipaddress takes %scope: not compared
        except ValueError:
            return None, "/" not in text
    try:
        socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return None, True
    return str(ipaddress.IPv6Address(text)), True


def lines_26(raw: bytes):
    """[(name, v4, v6)] as 2.6 takes them, and whether the whole file is read for certain."""
    out, certain = [], True
    parts = raw.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    for line in parts:
        line = line.replace(b"\r", b"")
        if not line or line[:1] in (b"#", b";"):
            continue
        if len(line) > 120 or b"\0" in line:
            certain = False
            continue
        f = line.decode("utf-8", "surrogateescape").split(",")
        if len(f) < 2 or not f[0]:
            continue                      # 2.6 would take an empty name; no client has one
        v4, ok4 = _v4_26(f[1])
        v6, ok6 = _v6_26(f[2]) if len(f) > 2 else (None, True)
        if not (ok4 and ok6):
            certain = False
            continue
        if v4 is None and v6 is None:
            continue
        out.append((f[0], v4, v6))
    return out, certain


def _check_file(raw: bytes, mem) -> None:
    taken, certain = lines_26(raw)
    entries = mem.entries
    if certain:
        for cn, v in entries.items():
            assert (cn, *v) in taken, f"{cn!r} -> {v} from no line 2.6 takes"
        for i, (cn, v4, v6) in enumerate(taken):
            later = taken[i + 1:]
            if any(c == cn for c, _, _ in later):
                continue
            if any(c != cn and ((v4 and a4 == v4) or (v6 and a6 == v6)) for c, a4, a6 in later):
                continue
            assert entries.get(cn) == (v4, v6), f"line {cn},{v4},{v6}: remembered as {entries.get(cn)}"
    _check_index(mem)


def _check_index(mem) -> None:
    want4 = {v4: cn for cn, (v4, _v6) in mem.entries.items() if v4}
    want6 = {v6: cn for cn, (_v4, v6) in mem.entries.items() if v6}
    assert len(want4) == sum(1 for v in mem.entries.values() if v[0]), "two names hold one IPv4 address"
    assert len(want6) == sum(1 for v in mem.entries.values() if v[1]), "two names hold one IPv6 address"
    assert mem._by_v4 == want4 and mem._by_v6 == want6, "the indexes are not the entries' inverse"


def _reads_back(cn: str) -> bool:
    return bool(cn) and not set(",\r\n") & set(cn) and cn[0] not in "#;"


def make_pool_persist():
    from appliance.openvpn import poolfile
    from appliance.openvpn.addresspool import AddressPool
    from appliance.openvpn.peernames import from_peer

    d = scratch_dir("fuzz-pool-persist-")
    path = os.path.join(d, "ipp.txt")

    def start(raw: bytes):
        with open(path, "wb") as f:
            f.write(raw)
        mem = poolfile.PoolMemory(path, 60)
        _check_file(raw, mem)
        return mem

    def one(data: bytes) -> None:
        head, *steps = data.split(SEP)
        mem = start(head[:4096])
        for step in steps[:32]:
            if not step:
                continue
            op, b0, body = step[0] % 4, (step[1] if len(step) > 1 else 0), step[2:]
            name = from_peer(body[:80])
            if op == 0:
                v4 = None if b0 & 8 else POOL4[b0 % 8]
                v6 = None if b0 & 0x80 else POOL6[(b0 >> 4) % 8]
                mem.note(name, v4, v6)
                if name and (v4 or v6):
                    assert mem.want(name) == (v4, v6), f"{name!r} noted {v4} {v6}, wants {mem.want(name)}"
                _check_index(mem)
            elif op == 1:
                mem.dirty = True
                mem.save()
                back = poolfile.read(path)
                want = {cn: v for cn, v in mem.entries.items() if _reads_back(cn)}
                assert back == want, f"written {want}, read back {back}"
                with open(path, "rb") as f:
                    raw = f.read()
                mem2 = poolfile.PoolMemory(path, 60)
                _check_file(raw, mem2)
            elif op == 2:
                pool = AddressPool("198.19.0.0", "255.255.255.240")
                for i, ip in enumerate(list(pool.free)[:8]):
                    if b0 >> i & 1:
                        pool.lease_free(ip)
                own = mem.want(name)[0]
                got = mem.pick(name, pool)
                if got is not None:
                    assert pool.is_free(got), f"picked {got}, not free"
                    holder = mem._by_v4.get(got)
                    assert holder in (None, name), f"picked {got} for {name!r}, held by {holder!r}"
                if own is not None and pool.is_free(own):
                    assert got == own, f"{name!r}'s own {own} is free, picked {got}"
            else:
                mem = start(body[:4096])
    return one


def seeds() -> list[bytes]:
    def s(head: bytes, *steps: bytes) -> bytes:
        return SEP.join((head,) + steps)
    good = b"alice,198.19.0.2,2001:db8::1000\nbob,198.19.0.3,\ncarol,,2001:db8::1001\n"
    return [
        s(good, b"\x02\x00alice", b"\x02\x01alice", b"\x02\x00dave"),
        s(good, b"\x00\x00dave", b"\x01\x00", b"\x00\x88x,,2001:db8::ff", b"\x01\x00"),
        s(b"alice,198.19.0.2,not-v6\r\nbob,198.19.0.300,2001:db8::1002\n#c,198.19.0.4,\n;d,198.19.0.5\n",
          b"\x01\x00"),
        s(b"a,198.19.0.2,\nb,198.19.0.2,\na,198.19.0.3,\n", b"\x02\x00b", b"\x01\x00"),
        s(b"a,010.0.0.1,\nb,198.19.3,\nc,198.19.0.4 x,\nd,,fe80::1%eth0\ne,,2001:db8::/64\n", b"\x01\x00"),
        s(b"caf\xe9,198.19.0.6,\n\xff\xfe,198.19.0.7,\n" + b"n" * 200 + b",198.19.0.8,\nz\0y,198.19.0.9,\n",
          b"\x00\x01caf\xe9", b"\x01\x00", b"\x00\x02#hash", b"\x00\x03;semi", b"\x01\x00"),
        s(b"", b"\x00\x00a", b"\x00\x00b", b"\x00\x10c", b"\x02\xffa", b"\x03\x00x,198.19.0.2\n"),
        s(b"alice\n,,\nbob,\nbob,,\n,198.19.0.2,\n\n\r\n"),
    ]
